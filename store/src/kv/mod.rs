//! The key-value layer: named trees, point reads, prefix scans and atomic batches.
//! One adapter per engine ([`SledKv`], [`MemKv`]); [`tests::suite`] runs against both.

mod mem;
mod sled_kv;
#[cfg(test)]
mod tests;

pub use mem::MemKv;
pub use sled_kv::SledKv;

use crate::Result;

/// The named trees.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tree {
    /// Document snapshot parts, incremental chunks and the per-user document meta.
    Docs,
    /// Contact records per (user, hub id): per side, the link, shadow and base heads.
    Contacts,
    /// Cursors per (user, side).
    Cursors,
    /// Push intents per (user, side, hub id), as format version 2 kept them (they are now in
    /// the contact records); read and removed as a user's records are rewritten.
    Intents,
    /// Settings, global and per user.
    Settings,
    /// Append-only records per (user, kind, time): conflicts, events.
    Journal,
    /// The calendar log (SPEC K8): one entry per observed version, keyed by sequence number,
    /// never rewritten.
    CalLog,
    /// Per (user, Outlook item): what the hub did with the item (sent, skipped and why).
    CalItems,
    /// Per meeting: its flaggers, its CRM appointment and what was projected to it.
    Meetings,
    /// Secondary keys: search (SPEC K9), a meeting's history, unmatched attendees.
    CalIndex,
    /// Attempt marks per (user, side, mark): the contacts of one push batch, whose
    /// intents count as attempted while the mark is stored.
    Attempts,
    /// Per user: how many push intents the user's contact records hold, so a cycle can tell
    /// whether a user has pushes pending without reading the records.
    Pending,
}

impl Tree {
    /// Every tree.
    pub const ALL: [Tree; 12] = [
        Tree::Docs,
        Tree::Contacts,
        Tree::Cursors,
        Tree::Intents,
        Tree::Settings,
        Tree::Journal,
        Tree::CalLog,
        Tree::CalItems,
        Tree::Meetings,
        Tree::CalIndex,
        Tree::Attempts,
        Tree::Pending,
    ];

    /// The tree's name (error messages, codec tags; the sled tree of the earlier layout).
    pub fn name(self) -> &'static str {
        match self {
            Tree::Docs => "docs",
            Tree::Contacts => "contacts",
            Tree::Cursors => "cursors",
            Tree::Intents => "intents",
            Tree::Settings => "settings",
            Tree::Journal => "journal",
            Tree::CalLog => "calendar_log",
            Tree::CalItems => "calendar_items",
            Tree::Meetings => "meetings",
            Tree::CalIndex => "calendar_index",
            Tree::Attempts => "attempts",
            Tree::Pending => "pending",
        }
    }
}

/// Writes that belong together: applied atomically, in order, by [`Kv::apply`].
#[derive(Clone, Debug, Default)]
pub struct Batch {
    ops: Vec<(Tree, Vec<u8>, Option<Vec<u8>>)>,
}

impl Batch {
    /// An empty batch.
    pub fn new() -> Self {
        Self::default()
    }

    /// Set `key` in `tree` to `value`.
    pub fn put(&mut self, tree: Tree, key: Vec<u8>, value: Vec<u8>) {
        self.ops.push((tree, key, Some(value)));
    }

    /// Remove `key` from `tree`.
    pub fn delete(&mut self, tree: Tree, key: Vec<u8>) {
        self.ops.push((tree, key, None));
    }

    /// Whether the batch writes nothing.
    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    /// How many writes the batch holds.
    pub fn len(&self) -> usize {
        self.ops.len()
    }

    /// The writes, in order.
    pub fn ops(&self) -> impl Iterator<Item = (Tree, &[u8], Option<&[u8]>)> {
        self.ops.iter().map(|(t, k, v)| (*t, k.as_slice(), v.as_deref()))
    }
}

/// A key-value engine. `apply` is atomic across trees and durable when it returns (it
/// survives a process kill); `apply_deferred` is atomic, and durable with the next `apply`
/// or `flush` (a kill before that loses it whole, never part of it).
pub trait Kv: Send + Sync + 'static {
    /// One value.
    fn get(&self, tree: Tree, key: &[u8]) -> Result<Option<Vec<u8>>>;
    /// Every (key, value) whose key starts with `prefix`, in key order.
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// Up to `limit` (key, value) pairs with `start <= key < end`, in key order.
    fn scan_range(&self, tree: Tree, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>>;
    /// The last (key, value) of a tree.
    fn last(&self, tree: Tree) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// The (key, value) with the greatest key below `end`.
    fn last_below(&self, tree: Tree, end: &[u8]) -> Result<Option<(Vec<u8>, Vec<u8>)>>;
    /// Apply a batch atomically and durably.
    fn apply(&self, batch: &Batch) -> Result<()>;
    /// Apply a batch atomically; durable with the next `apply` or `flush`.
    fn apply_deferred(&self, batch: &Batch) -> Result<()> {
        self.apply(batch)
    }
    /// Make every batch applied so far durable.
    fn flush(&self) -> Result<()> {
        Ok(())
    }
    /// A number never handed out before by this store, also across restarts.
    fn next_id(&self) -> Result<u64>;
}
