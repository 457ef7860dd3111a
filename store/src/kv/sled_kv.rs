//! The sled adapter: every [`Tree`] lives in one sled tree under its own prefix byte, so a
//! batch is one `apply_batch`, which sled applies atomically at a fraction of a multi-tree
//! transaction's cost per write. `apply` flushes before it returns so a committed batch
//! survives a process kill (`apply_deferred` leaves the flush to the next `apply` or
//! `flush`).

use std::path::Path;

use super::{Batch, Kv, Tree};
use crate::{Result, StoreError};

/// sled segment size (sled's default is 512 KiB).
pub(super) const SEGMENT_BYTES: usize = 64 * 1024;

/// sled's page cache (its default is 1 GiB, which it grows into): the hub keeps each user's
/// replica in memory itself and reads the store mostly at start, so a small cache is enough.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// The sled tree that holds every [`Tree`].
const RECORDS: &str = "records";

/// Records copied per batch when moving a store of the earlier layout.
const MIGRATE_PAGE: usize = 4_096;

/// sled-backed key-value store. sled locks its directory: one process at a time.
#[derive(Clone, Debug)]
pub struct SledKv {
    db: sled::Db,
    records: sled::Tree,
}

/// The prefix byte of `tree`'s keys in the records tree. The calendar's four kept the bytes
/// they had when they shared a sled tree of their own.
fn prefix(tree: Tree) -> u8 {
    match tree {
        Tree::Docs => b'd',
        Tree::Contacts => b'c',
        Tree::Cursors => b'u',
        Tree::Intents => b'n',
        Tree::Settings => b's',
        Tree::Journal => b'j',
        Tree::CalLog => b'l',
        Tree::CalItems => b'i',
        Tree::Meetings => b'm',
        Tree::CalIndex => b'x',
        Tree::Attempts => b'a',
        Tree::Pending => b'p',
    }
}

/// The earlier layout: one sled tree per [`Tree`] (the calendar's four sharing the
/// `calendar` tree, already under their prefix bytes). `None`: copied as is.
const LEGACY: [(&str, Option<Tree>); 7] = [
    ("docs", Some(Tree::Docs)),
    ("contacts", Some(Tree::Contacts)),
    ("cursors", Some(Tree::Cursors)),
    ("intents", Some(Tree::Intents)),
    ("settings", Some(Tree::Settings)),
    ("journal", Some(Tree::Journal)),
    ("calendar", None),
];

fn prefixed(tree: Tree, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(prefix(tree));
    k.extend_from_slice(key);
    k
}

fn strip(key: &[u8]) -> Vec<u8> {
    key.get(1..).unwrap_or_default().to_vec()
}

impl SledKv {
    /// Open (or create) the database in `dir`. A store of the earlier layout (a sled tree
    /// per [`Tree`]) is moved into the records tree first.
    pub fn open(dir: &Path) -> Result<Self> {
        // Batches are flushed by `apply` and `flush`, so sled needs no background
        // flusher. A store closed a moment ago in this process may still be held by one of
        // sled's I/O threads: its directory lock is asked for again for up to a second.
        let config =
            sled::Config::new().path(dir).flush_every_ms(None).segment_size(SEGMENT_BYTES).cache_capacity(CACHE_BYTES);
        let mut tries = 0;
        let db = loop {
            match config.open() {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::Other && tries < 20 && e.to_string().contains("lock") =>
                {
                    tries += 1;
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                other => break other?,
            }
        };
        let records = db.open_tree(RECORDS)?;
        let kv = SledKv { db, records };
        kv.migrate()?;
        Ok(kv)
    }

    /// Move the trees of the earlier layout into the records tree: copied, flushed, then
    /// dropped. A crash part way leaves some of them to be copied again at the next open,
    /// which writes the same values (nothing else writes before `open` returns).
    fn migrate(&self) -> Result<()> {
        let names = self.db.tree_names();
        for (name, tree) in LEGACY {
            if !names.iter().any(|n| n.as_ref() == name.as_bytes()) {
                continue;
            }
            let old = self.db.open_tree(name)?;
            let mut batch = sled::Batch::default();
            let mut copied = 0usize;
            for kv in old.iter() {
                let (k, v) = kv?;
                batch.insert(tree.map_or_else(|| k.to_vec(), |t| prefixed(t, &k)), v);
                copied += 1;
                if copied.is_multiple_of(MIGRATE_PAGE) {
                    self.records.apply_batch(std::mem::take(&mut batch))?;
                }
            }
            self.records.apply_batch(batch)?;
            self.db.flush()?;
            drop(old);
            self.db.drop_tree(name)?;
            self.db.flush()?;
            tracing::info!(
                tree = name,
                records = copied,
                "store: moved a tree of the earlier layout into one sled tree"
            );
        }
        Ok(())
    }

    fn collect(iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        iter.map(|kv| kv.map(|(k, v)| (strip(&k), v.to_vec())).map_err(StoreError::from)).collect()
    }

    /// sled's own estimate of its size on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Kv for SledKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.records.get(prefixed(tree, key))?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, key_prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        SledKv::collect(self.records.scan_prefix(prefixed(tree, key_prefix)))
    }

    fn scan_range(&self, tree: Tree, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        SledKv::collect(self.records.range(prefixed(tree, start)..prefixed(tree, end)).take(limit))
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let p = prefix(tree);
        let found = self.records.range(vec![p]..vec![p + 1]).next_back().transpose()?;
        Ok(found.map(|(k, v)| (strip(&k), v.to_vec())))
    }

    fn last_below(&self, tree: Tree, end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let found = self.records.range(vec![prefix(tree)]..prefixed(tree, end)).next_back().transpose()?;
        Ok(found.map(|(k, v)| (strip(&k), v.to_vec())))
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        self.apply_deferred(batch)?;
        self.db.flush()?;
        Ok(())
    }

    fn flush(&self) -> Result<()> {
        self.db.flush()?;
        Ok(())
    }

    fn apply_deferred(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // One sled tree: its batch is atomic on its own. Writes to one key keep their order
        // (sled's batch keeps the last).
        let mut b = sled::Batch::default();
        for (tree, key, value) in batch.ops() {
            let k = prefixed(tree, key);
            match value {
                Some(v) => b.insert(k, v),
                None => b.remove(k),
            }
        }
        self.records.apply_batch(b)?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }
}
