//! A user's document as a snapshot (cut into parts of at most [`PART_BYTES`]) plus
//! incremental chunks appended after it. Loading concatenates both; Automerge reads a
//! document chunk followed by change chunks.

use serde::{Deserialize, Serialize};

use crate::codec;
use crate::keys::key;
use crate::kv::{Batch, Kv, Tree};
use crate::Result;

/// Snapshot parts are at most this large: sled keeps dead space for large values.
pub const PART_BYTES: usize = 64 * 1024;
/// Compact once this many chunks follow the snapshot...
pub const MAX_CHUNKS: u32 = 64;
/// ...or once the chunks weigh more than half the snapshot (and at least this much).
pub const MIN_CHUNK_BYTES_TO_COMPACT: u64 = 64 * 1024;

const TREE: &str = "docs";

/// Where a user's document stands in the store.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocStats {
    /// Generation of the current snapshot (0: none yet).
    pub generation: u64,
    /// How many parts the snapshot has.
    pub parts: u32,
    /// Size of the snapshot.
    pub snapshot_bytes: u64,
    /// Sequence number the next chunk gets.
    pub next_chunk: u64,
    /// Chunks after the snapshot.
    pub chunks: u32,
    /// Their total size.
    pub chunk_bytes: u64,
}

impl DocStats {
    /// Whether the chunks now outweigh the snapshot enough to fold them in.
    pub fn needs_compaction(&self) -> bool {
        self.chunks >= MAX_CHUNKS
            || (self.chunk_bytes >= MIN_CHUNK_BYTES_TO_COMPACT && self.chunk_bytes * 2 > self.snapshot_bytes)
    }
}

fn meta_key(user: &str) -> Vec<u8> {
    key(&[user.as_bytes(), b"meta"])
}

fn part_key(user: &str, part: u32) -> Vec<u8> {
    key(&[user.as_bytes(), b"snap", &part.to_be_bytes()])
}

fn chunk_key(user: &str, seq: u64) -> Vec<u8> {
    key(&[user.as_bytes(), b"chunk", &seq.to_be_bytes()])
}

pub fn stats(kv: &dyn Kv, user: &str) -> Result<DocStats> {
    match kv.get(Tree::Docs, &meta_key(user))? {
        Some(bytes) => codec::decode(TREE, &bytes),
        None => Ok(DocStats::default()),
    }
}

/// The document's bytes: snapshot parts then chunks, in order.
pub fn load(kv: &dyn Kv, user: &str, stats: &DocStats) -> Result<Vec<u8>> {
    // Sized from the stored stats, but never trusted beyond 64 MiB up front.
    let expected = stats.snapshot_bytes.saturating_add(stats.chunk_bytes).min(64 << 20);
    let mut out = Vec::with_capacity(expected as usize);
    if stats.generation > 0 {
        for part in 0..stats.parts {
            let v = kv.get(Tree::Docs, &part_key(user, part))?.ok_or_else(|| crate::StoreError::Corrupt {
                tree: TREE,
                detail: format!("snapshot part {part} of {} is missing", stats.parts),
            })?;
            out.extend_from_slice(codec::payload(TREE, &v)?);
        }
    }
    for (_, v) in kv.scan_prefix(Tree::Docs, &key(&[user.as_bytes(), b"chunk"]))? {
        out.extend_from_slice(codec::payload(TREE, &v)?);
    }
    Ok(out)
}

/// Add an incremental chunk to `batch`; returns the stats after it.
pub fn append_chunk(batch: &mut Batch, user: &str, mut stats: DocStats, chunk: &[u8]) -> Result<DocStats> {
    batch.put(Tree::Docs, chunk_key(user, stats.next_chunk), codec::wrap(chunk));
    stats.next_chunk += 1;
    stats.chunks += 1;
    stats.chunk_bytes += chunk.len() as u64;
    batch.put(Tree::Docs, meta_key(user), codec::encode(TREE, &stats)?);
    Ok(stats)
}

/// Replace snapshot and chunks with `snapshot` in `batch`; returns the stats after it.
pub fn replace(kv: &dyn Kv, batch: &mut Batch, user: &str, old: DocStats, snapshot: &[u8]) -> Result<DocStats> {
    let new_parts = snapshot.len().div_ceil(PART_BYTES) as u32;
    // Parts are rewritten in place (stable keys keep sled's tree from churning); extra
    // old parts go.
    for part in new_parts..old.parts {
        batch.delete(Tree::Docs, part_key(user, part));
    }
    for (k, _) in kv.scan_prefix(Tree::Docs, &key(&[user.as_bytes(), b"chunk"]))? {
        batch.delete(Tree::Docs, k);
    }
    let generation = old.generation + 1;
    let mut parts = 0u32;
    for (i, part) in snapshot.chunks(PART_BYTES).enumerate() {
        batch.put(Tree::Docs, part_key(user, i as u32), codec::wrap(part));
        parts += 1;
    }
    let stats = DocStats {
        generation,
        parts,
        snapshot_bytes: snapshot.len() as u64,
        next_chunk: old.next_chunk,
        chunks: 0,
        chunk_bytes: 0,
    };
    batch.put(Tree::Docs, meta_key(user), codec::encode(TREE, &stats)?);
    Ok(stats)
}
