//! The sled adapter: one sled tree per [`Tree`], batches as multi-tree transactions,
//! flushed before `apply` returns so a committed batch survives a process kill.

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Batch, Kv, Tree};
use crate::{Result, StoreError};

/// sled segment size (sled's default is 512 KiB).
const SEGMENT_BYTES: usize = 64 * 1024;

/// sled's page cache (its default is 1 GiB, which it grows into): the hub keeps each user's
/// replica in memory itself and reads the store mostly at start, so a small cache is enough.
const CACHE_BYTES: u64 = 64 * 1024 * 1024;

/// sled-backed key-value store. sled locks its directory: one process at a time.
#[derive(Clone, Debug)]
pub struct SledKv {
    db: sled::Db,
    trees: Vec<sled::Tree>,
}

impl SledKv {
    /// Open (or create) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self> {
        // Every batch is flushed before `apply` returns, so sled needs no background
        // flusher (and closing the store releases its directory lock at once).
        let db = sled::Config::new()
            .path(dir)
            .flush_every_ms(None)
            .segment_size(SEGMENT_BYTES)
            .cache_capacity(CACHE_BYTES)
            .open()?;
        let trees = Tree::ALL.iter().map(|t| db.open_tree(t.name())).collect::<Result<Vec<_>, _>>()?;
        Ok(SledKv { db, trees })
    }

    fn tree(&self, tree: Tree) -> &sled::Tree {
        &self.trees[tree as usize]
    }

    /// sled's own estimate of its size on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Kv for SledKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.tree(tree)
            .scan_prefix(prefix)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
            .collect()
    }

    fn scan_range(&self, tree: Tree, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        self.tree(tree)
            .range(start..end)
            .take(limit)
            .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).map_err(StoreError::from))
            .collect()
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        Ok(self.tree(tree).last()?.map(|(k, v)| (k.to_vec(), v.to_vec())))
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        // The closure may be re-run on conflict: it only replays the batch.
        let outcome = self.trees[..].transaction(|views| {
            for (tree, key, value) in batch.ops() {
                let view = &views[tree as usize];
                match value {
                    Some(v) => view.insert(key, v)?,
                    None => view.remove(key)?,
                };
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => return Err(StoreError::Transaction("aborted".into())),
        }
        self.db.flush()?;
        Ok(())
    }

    fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }
}
