//! The in-memory adapter: the same contract as sled, for fast property tests. Clones share
//! the data, so dropping a hub and "reopening" a clone models a restart.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use super::{Batch, Kv, Tree};
use crate::{Result, StoreError};

type Data = BTreeMap<(Tree, Vec<u8>), Vec<u8>>;

/// In-memory key-value store.
#[derive(Clone, Debug, Default)]
pub struct MemKv {
    data: Arc<Mutex<Data>>,
    ids: Arc<std::sync::atomic::AtomicU64>,
}

impl MemKv {
    /// An empty store.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<MutexGuard<'_, Data>> {
        self.data.lock().map_err(|_| StoreError::Transaction("in-memory store poisoned".into()))
    }

    /// Bytes held (keys and values), the in-memory counterpart of a directory's size.
    pub fn bytes(&self) -> Result<u64> {
        Ok(self.lock()?.iter().map(|((_, k), v)| (k.len() + v.len()) as u64).sum())
    }
}

impl Kv for MemKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(self.lock()?.get(&(tree, key.to_vec())).cloned())
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let data = self.lock()?;
        Ok(data
            .range((tree, prefix.to_vec())..)
            .take_while(|((t, k), _)| *t == tree && k.starts_with(prefix))
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn scan_range(&self, tree: Tree, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let data = self.lock()?;
        Ok(data
            .range((tree, start.to_vec())..(tree, end.to_vec()))
            .take(limit)
            .map(|((_, k), v)| (k.clone(), v.clone()))
            .collect())
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let data = self.lock()?;
        let after = Tree::ALL.iter().copied().find(|t| *t > tree);
        let found = match after {
            Some(next) => data.range(..(next, Vec::new())).next_back(),
            None => data.iter().next_back(),
        };
        Ok(found.filter(|((t, _), _)| *t == tree).map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn last_below(&self, tree: Tree, end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let data = self.lock()?;
        let found = data.range((tree, Vec::new())..(tree, end.to_vec())).next_back();
        Ok(found.map(|((_, k), v)| (k.clone(), v.clone())))
    }

    fn apply(&self, batch: &Batch) -> Result<()> {
        let mut data = self.lock()?;
        for (tree, key, value) in batch.ops() {
            match value {
                Some(v) => data.insert((tree, key.to_vec()), v.to_vec()),
                None => data.remove(&(tree, key.to_vec())),
            };
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64> {
        Ok(self.ids.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }
}
