//! The sled adapter: one sled tree per [`Tree`], batches as multi-tree transactions,
//! flushed before `apply` returns so a committed batch survives a process kill
//! (`apply_deferred` leaves the flush to the next `apply` or `flush`).

use std::path::Path;

use sled::transaction::{ConflictableTransactionError, TransactionError, Transactional};

use super::{Batch, Kv, Tree};
use crate::{Result, StoreError};

/// sled segment size (sled's default is 512 KiB).
const SEGMENT_BYTES: usize = 64 * 1024;

/// sled's page cache (its default is 1 GiB, which it grows into): the hub keeps each user's
/// replica in memory itself and reads the store mostly at start, so a small cache is enough.
const CACHE_BYTES: u64 = 32 * 1024 * 1024;

/// sled-backed key-value store. sled locks its directory: one process at a time.
///
/// The calendar's four trees share one sled tree, each under its own prefix byte: a
/// calendar step's writes are then one tree's batch, which sled applies atomically
/// (`apply_batch`) at a fraction of a multi-tree transaction's cost per write.
#[derive(Clone, Debug)]
pub struct SledKv {
    db: sled::Db,
    trees: Vec<sled::Tree>,
    calendar: sled::Tree,
}

/// The physical sled tree name of the calendar's trees.
const CALENDAR: &str = "calendar";

/// The prefix byte of a calendar tree inside the shared sled tree.
fn calendar_prefix(tree: Tree) -> Option<u8> {
    match tree {
        Tree::CalLog => Some(b'l'),
        Tree::CalItems => Some(b'i'),
        Tree::Meetings => Some(b'm'),
        Tree::CalIndex => Some(b'x'),
        _ => None,
    }
}

fn prefixed(p: u8, key: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(key.len() + 1);
    k.push(p);
    k.extend_from_slice(key);
    k
}

impl SledKv {
    /// Open (or create) the database in `dir`.
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
        let trees = Tree::ALL
            .iter()
            .map(|t| db.open_tree(if calendar_prefix(*t).is_some() { CALENDAR } else { t.name() }))
            .collect::<Result<Vec<_>, _>>()?;
        let calendar = db.open_tree(CALENDAR)?;
        Ok(SledKv { db, trees, calendar })
    }

    /// The sled tree holding `tree`, and the prefix its keys carry there.
    fn tree(&self, tree: Tree) -> (&sled::Tree, Option<u8>) {
        match calendar_prefix(tree) {
            Some(p) => (&self.calendar, Some(p)),
            None => (&self.trees[tree as usize], None),
        }
    }

    fn key(p: Option<u8>, key: &[u8]) -> Vec<u8> {
        match p {
            Some(p) => prefixed(p, key),
            None => key.to_vec(),
        }
    }

    fn strip(p: Option<u8>, key: &[u8]) -> Vec<u8> {
        match p {
            Some(_) => key.get(1..).unwrap_or_default().to_vec(),
            None => key.to_vec(),
        }
    }

    fn collect(
        p: Option<u8>,
        iter: impl Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>,
    ) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        iter.map(|kv| kv.map(|(k, v)| (SledKv::strip(p, &k), v.to_vec())).map_err(StoreError::from)).collect()
    }

    /// sled's own estimate of its size on disk.
    pub fn size_on_disk(&self) -> Result<u64> {
        Ok(self.db.size_on_disk()?)
    }
}

impl Kv for SledKv {
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>> {
        let (t, p) = self.tree(tree);
        Ok(t.get(SledKv::key(p, key))?.map(|v| v.to_vec()))
    }

    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        let (t, p) = self.tree(tree);
        SledKv::collect(p, t.scan_prefix(SledKv::key(p, prefix)))
    }

    fn scan_range(&self, tree: Tree, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        if start >= end {
            return Ok(Vec::new());
        }
        let (t, p) = self.tree(tree);
        SledKv::collect(p, t.range(SledKv::key(p, start)..SledKv::key(p, end)).take(limit))
    }

    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let (t, p) = self.tree(tree);
        let found = match p {
            Some(p) => t.range(vec![p]..vec![p + 1]).next_back().transpose()?,
            None => t.last()?,
        };
        Ok(found.map(|(k, v)| (SledKv::strip(p, &k), v.to_vec())))
    }

    fn last_below(&self, tree: Tree, end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>> {
        let (t, p) = self.tree(tree);
        let start = SledKv::key(p, &[]);
        let found = t.range(start..SledKv::key(p, end)).next_back().transpose()?;
        Ok(found.map(|(k, v)| (SledKv::strip(p, &k), v.to_vec())))
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
        if batch.ops().all(|(tree, _, _)| calendar_prefix(tree).is_some()) {
            // One sled tree: its batch is atomic on its own.
            let mut b = sled::Batch::default();
            for (tree, key, value) in batch.ops() {
                let k = SledKv::key(calendar_prefix(tree), key);
                match value {
                    Some(v) => b.insert(k, v),
                    None => b.remove(k),
                }
            }
            self.calendar.apply_batch(b)?;
            return Ok(());
        }
        // The closure may be re-run on conflict: it only replays the batch.
        // Each sled tree once: the plain trees in `Tree::ALL` order, then the calendar's.
        let plain: Vec<Tree> = Tree::ALL.iter().copied().filter(|t| calendar_prefix(*t).is_none()).collect();
        let mut views_of: Vec<&sled::Tree> = plain.iter().map(|t| &self.trees[*t as usize]).collect();
        views_of.push(&self.calendar);
        let calendar_view = plain.len();
        let view_of = |tree: Tree| plain.iter().position(|t| *t == tree).unwrap_or(calendar_view);
        let outcome = views_of[..].transaction(|views| {
            for (tree, key, value) in batch.ops() {
                let (view, k) = match calendar_prefix(tree) {
                    Some(p) => (&views[calendar_view], prefixed(p, key)),
                    None => (&views[view_of(tree)], key.to_vec()),
                };
                match value {
                    Some(v) => view.insert(k, v)?,
                    None => view.remove(k)?,
                };
            }
            Ok::<(), ConflictableTransactionError<()>>(())
        });
        match outcome {
            Ok(()) => {}
            Err(TransactionError::Storage(e)) => return Err(e.into()),
            Err(TransactionError::Abort(())) => return Err(StoreError::Transaction("aborted".into())),
        }
        Ok(())
    }

    fn next_id(&self) -> Result<u64> {
        Ok(self.db.generate_id()?)
    }
}
