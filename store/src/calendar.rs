//! The calendar's part of the store (SPEC K8, K9): the append-only log of observed versions,
//! per-item records, per-meeting records and the secondary index.
//!
//! The log is append-only by construction: [`CalendarWrite::append`] is the only way to
//! write it, each entry gets the next sequence number under the store's writer lock, and no
//! method rewrites or removes an entry. Items, meetings and index values are opaque bytes
//! the hub encodes; the store only keys them.

use serde::{Deserialize, Serialize};

use crate::keys::key;
use crate::kv::{Batch, Tree};
use crate::user::Store;
use crate::{codec, Result, StoreError};

/// One observed version of a sent calendar item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Assigned by the store when the entry is committed: 1, 2, 3, … in commit order.
    pub seq: u64,
    /// The user whose calendar held the item.
    pub user: String,
    /// The Outlook item id.
    pub item: String,
    /// The meeting the item belongs to (the hub's appointment id).
    pub meeting: String,
    /// When the hub observed the version (ms since the epoch).
    pub observed_ms: i64,
    /// The content hash of `body`.
    pub hash: [u8; 32],
    /// What happened: `sent`, `updated`, `unflagged`, `deleted`, … (the hub's names).
    pub change: String,
    /// The mapped item, encoded by the hub.
    pub body: Vec<u8>,
}

/// What one calendar step writes, in one transaction.
#[derive(Clone, Debug, Default)]
pub struct CalendarWrite {
    appends: Vec<LogEntry>,
    items: Vec<(String, String, Option<Vec<u8>>)>,
    meetings: Vec<(String, Option<Vec<u8>>)>,
    index: Vec<(Vec<u8>, Option<Vec<u8>>)>,
}

impl CalendarWrite {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append an entry to the log (its `seq` is assigned on commit).
    pub fn append(&mut self, entry: LogEntry) {
        self.appends.push(entry);
    }

    /// Set or remove a (user, item) record.
    pub fn item(&mut self, user: &str, item: &str, record: Option<Vec<u8>>) {
        self.items.push((user.to_string(), item.to_string(), record));
    }

    /// Set or remove a meeting record.
    pub fn meeting(&mut self, meeting: &str, record: Option<Vec<u8>>) {
        self.meetings.push((meeting.to_string(), record));
    }

    /// Set (or, with `None`, remove) an index key.
    pub fn index(&mut self, key: Vec<u8>, value: Option<Vec<u8>>) {
        self.index.push((key, value));
    }

    /// Entries to append.
    pub fn appends(&self) -> usize {
        self.appends.len()
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.appends.is_empty() && self.items.is_empty() && self.meetings.is_empty() && self.index.is_empty()
    }
}

const LOG: &str = "calendar_log";

fn history_key(meeting: &str, seq: u64) -> Vec<u8> {
    key(&[b"h", meeting.as_bytes(), &seq.to_be_bytes()])
}

fn unwrap_opaque(tree: Tree, bytes: &[u8]) -> Result<Vec<u8>> {
    codec::payload(tree.name(), bytes).map(<[u8]>::to_vec)
}

fn seq_of(k: &[u8]) -> Result<u64> {
    let bytes: [u8; 8] = k
        .try_into()
        .map_err(|_| StoreError::Corrupt { tree: LOG, detail: "a log key is not a sequence number".into() })?;
    Ok(u64::from_be_bytes(bytes))
}

impl Store {
    /// Write a calendar step in one transaction, durable on return; the log entries'
    /// sequence numbers, in the order they were appended.
    pub fn calendar_commit(&self, write: CalendarWrite) -> Result<Vec<u64>> {
        if write.is_empty() {
            return Ok(Vec::new());
        }
        let _writer = self.write_lock()?;
        let kv = self.kv();
        let first = match kv.last(Tree::CalLog)? {
            Some((k, _)) => seq_of(&k)? + 1,
            None => 1,
        };
        let mut batch = Batch::new();
        let mut seqs = Vec::with_capacity(write.appends.len());
        for (seq, mut entry) in (first..).zip(write.appends) {
            entry.seq = seq;
            batch.put(Tree::CalIndex, history_key(&entry.meeting, seq), Vec::new());
            batch.put(Tree::CalLog, seq.to_be_bytes().to_vec(), codec::encode(LOG, &entry)?);
            seqs.push(seq);
        }
        for (user, item, record) in write.items {
            let k = key(&[user.as_bytes(), item.as_bytes()]);
            match record {
                Some(r) => batch.put(Tree::CalItems, k, codec::wrap(&r)),
                None => batch.delete(Tree::CalItems, k),
            }
        }
        for (meeting, record) in write.meetings {
            match record {
                Some(r) => batch.put(Tree::Meetings, meeting.into_bytes(), codec::wrap(&r)),
                None => batch.delete(Tree::Meetings, meeting.into_bytes()),
            }
        }
        for (k, v) in write.index {
            match v {
                Some(v) => batch.put(Tree::CalIndex, k, v),
                None => batch.delete(Tree::CalIndex, k),
            }
        }
        kv.apply(&batch)?;
        Ok(seqs)
    }

    /// The log entry `seq`.
    pub fn log_entry(&self, seq: u64) -> Result<Option<LogEntry>> {
        match self.kv().get(Tree::CalLog, &seq.to_be_bytes())? {
            Some(v) => Ok(Some(codec::decode(LOG, &v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` log entries from `from` on, in order.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>> {
        self.kv()
            .scan_range(Tree::CalLog, &from.to_be_bytes(), &u64::MAX.to_be_bytes(), limit)?
            .into_iter()
            .map(|(_, v)| codec::decode(LOG, &v))
            .collect()
    }

    /// The last sequence number handed out (0: the log is empty).
    pub fn last_seq(&self) -> Result<u64> {
        match self.kv().last(Tree::CalLog)? {
            Some((k, _)) => seq_of(&k),
            None => Ok(0),
        }
    }

    /// Every log entry of `meeting`, oldest first.
    pub fn meeting_history(&self, meeting: &str) -> Result<Vec<LogEntry>> {
        let prefix = key(&[b"h", meeting.as_bytes()]);
        let mut out = Vec::new();
        for (k, _) in self.kv().scan_prefix(Tree::CalIndex, &prefix)? {
            let seq = seq_of(k.get(prefix.len() + 2..).unwrap_or_default())?;
            let entry = self
                .log_entry(seq)?
                .ok_or_else(|| StoreError::Corrupt { tree: LOG, detail: format!("entry {seq} indexed but missing") })?;
            out.push(entry);
        }
        Ok(out)
    }

    /// The record of `user`'s item.
    pub fn cal_item(&self, user: &str, item: &str) -> Result<Option<Vec<u8>>> {
        match self.kv().get(Tree::CalItems, &key(&[user.as_bytes(), item.as_bytes()]))? {
            Some(v) => Ok(Some(unwrap_opaque(Tree::CalItems, &v)?)),
            None => Ok(None),
        }
    }

    /// Every item record of `user`: (item id, record).
    pub fn cal_items(&self, user: &str) -> Result<Vec<(String, Vec<u8>)>> {
        let prefix = key(&[user.as_bytes()]);
        let mut out = Vec::new();
        for (k, v) in self.kv().scan_prefix(Tree::CalItems, &prefix)? {
            let segs = crate::keys::segments(&k)
                .ok_or_else(|| StoreError::Corrupt { tree: "calendar_items", detail: "bad key".into() })?;
            let [_, item] = segs.as_slice() else {
                return Err(StoreError::Corrupt { tree: "calendar_items", detail: "key is not (user, item)".into() });
            };
            let item = String::from_utf8(item.to_vec())
                .map_err(|_| StoreError::Corrupt { tree: "calendar_items", detail: "item id is not UTF-8".into() })?;
            out.push((item, unwrap_opaque(Tree::CalItems, &v)?));
        }
        Ok(out)
    }

    /// A meeting's record.
    pub fn meeting(&self, meeting: &str) -> Result<Option<Vec<u8>>> {
        match self.kv().get(Tree::Meetings, meeting.as_bytes())? {
            Some(v) => Ok(Some(unwrap_opaque(Tree::Meetings, &v)?)),
            None => Ok(None),
        }
    }

    /// Up to `limit` index entries with `start <= key < end`.
    pub fn cal_index_range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.kv().scan_range(Tree::CalIndex, start, end, limit)
    }

    /// Every index entry under `prefix`.
    pub fn cal_index_prefix(&self, prefix: &[u8]) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.kv().scan_prefix(Tree::CalIndex, prefix)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemKv;

    fn entry(meeting: &str, body: &[u8]) -> LogEntry {
        LogEntry {
            seq: 0,
            user: "u1".into(),
            item: "e1".into(),
            meeting: meeting.into(),
            observed_ms: 1,
            hash: [7; 32],
            change: "sent".into(),
            body: body.to_vec(),
        }
    }

    #[test]
    fn the_log_numbers_entries_in_order_and_indexes_them_by_meeting() {
        for store in
            [Store::in_memory(MemKv::new()), Store::open(tempfile::tempdir().unwrap().keep().as_path()).unwrap()]
        {
            let mut w = CalendarWrite::new();
            w.append(entry("m1", b"a"));
            w.append(entry("m2", b"b"));
            w.item("u1", "e1", Some(b"rec".to_vec()));
            w.meeting("m1", Some(b"meet".to_vec()));
            assert_eq!(store.calendar_commit(w).unwrap(), vec![1, 2]);
            let mut w = CalendarWrite::new();
            w.append(entry("m1", b"c"));
            assert_eq!(store.calendar_commit(w).unwrap(), vec![3]);
            assert_eq!(store.last_seq().unwrap(), 3);
            let history: Vec<Vec<u8>> = store.meeting_history("m1").unwrap().into_iter().map(|e| e.body).collect();
            assert_eq!(history, vec![b"a".to_vec(), b"c".to_vec()]);
            assert_eq!(store.log(2, 10).unwrap().len(), 2);
            assert_eq!(store.log_entry(2).unwrap().unwrap().body, b"b");
            assert_eq!(store.cal_item("u1", "e1").unwrap().unwrap(), b"rec");
            assert_eq!(store.cal_items("u1").unwrap(), vec![("e1".to_string(), b"rec".to_vec())]);
            assert_eq!(store.meeting("m1").unwrap().unwrap(), b"meet");
            assert!(store.cal_items("u2").unwrap().is_empty());
        }
    }
}
