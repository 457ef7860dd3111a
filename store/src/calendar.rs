//! The calendar's part of the store (SPEC K8, K9): the append-only log of observed versions,
//! per-item records, per-meeting records and the secondary index.
//!
//! The log is append-only by construction: [`CalendarWrite::append`] is the only way to
//! write it, a commit is refused unless its entries carry exactly the next sequence numbers
//! (checked under the store's writer lock), and no method rewrites or removes an entry.
//! Entries are stored in chunks of up to 64 KiB, each written once under the key (first
//! seq, last seq): a run's appends cost one write per chunk, not one per entry. Items,
//! meetings and index values are opaque bytes the hub encodes; the store only keys them.

use serde::{Deserialize, Serialize};

use crate::keys::key;
use crate::kv::{Batch, Tree};
use crate::user::Store;
use crate::{codec, Result, StoreError};

/// One observed version of a sent calendar item.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// 1, 2, 3, … in commit order: the writer takes the next ones from [`Store::last_seq`]
    /// (under its own lock) and the store checks them.
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

    /// Append an entry to the log (its `seq` must follow the last one's).
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

/// A chunk's size limit (sled handles values of this size well; see the docs' parts).
const CHUNK_BYTES: usize = 64 * 1024;

fn chunk_key(first: u64, last: u64) -> Vec<u8> {
    let mut k = Vec::with_capacity(16);
    k.extend_from_slice(&first.to_be_bytes());
    k.extend_from_slice(&last.to_be_bytes());
    k
}

fn chunk_range(k: &[u8]) -> Result<(u64, u64)> {
    let bad = || StoreError::Corrupt { tree: LOG, detail: "a log key is not (first, last) sequence numbers".into() };
    let (first, last) = k.split_at_checked(8).ok_or_else(bad)?;
    let first: [u8; 8] = first.try_into().map_err(|_| bad())?;
    let last: [u8; 8] = last.try_into().map_err(|_| bad())?;
    Ok((u64::from_be_bytes(first), u64::from_be_bytes(last)))
}

fn unwrap_opaque(tree: Tree, bytes: &[u8]) -> Result<Vec<u8>> {
    codec::payload(tree.name(), bytes).map(<[u8]>::to_vec)
}

impl Store {
    /// Write a calendar step in one transaction, durable on return. Refused, writing
    /// nothing, unless the appended entries carry the sequence numbers that follow the log's
    /// last one, in order.
    pub fn calendar_commit(&self, write: CalendarWrite) -> Result<()> {
        if write.is_empty() {
            return Ok(());
        }
        let _writer = self.write_lock()?;
        let kv = self.kv();
        for (expected, e) in (self.last_seq_unlocked()? + 1..).zip(&write.appends) {
            if e.seq != expected {
                return Err(StoreError::Transaction(format!(
                    "calendar log entries must follow the log: expected sequence number {expected}, got {}",
                    e.seq
                )));
            }
        }
        let mut batch = Batch::new();
        let mut chunk: Vec<&LogEntry> = Vec::new();
        let mut bytes = 0;
        let flush = |batch: &mut Batch, chunk: &mut Vec<&LogEntry>| -> Result<()> {
            if let (Some(first), Some(last)) = (chunk.first(), chunk.last()) {
                batch.put(Tree::CalLog, chunk_key(first.seq, last.seq), codec::encode(LOG, &*chunk)?);
            }
            chunk.clear();
            Ok(())
        };
        for e in &write.appends {
            let size = e.body.len() + e.user.len() + e.item.len() + e.meeting.len() + e.change.len() + 48;
            if bytes + size > CHUNK_BYTES && !chunk.is_empty() {
                flush(&mut batch, &mut chunk)?;
                bytes = 0;
            }
            chunk.push(e);
            bytes += size;
        }
        flush(&mut batch, &mut chunk)?;
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
        kv.apply(&batch)
    }

    fn last_seq_unlocked(&self) -> Result<u64> {
        match self.kv().last(Tree::CalLog)? {
            Some((k, _)) => Ok(chunk_range(&k)?.1),
            None => Ok(0),
        }
    }

    /// The last sequence number in the log (0: the log is empty). A writer that takes the
    /// next numbers from it must keep other writers of the log out until it commits.
    pub fn last_seq(&self) -> Result<u64> {
        self.last_seq_unlocked()
    }

    /// The chunk holding `seq`, decoded.
    fn chunk_of(&self, seq: u64) -> Result<Option<(u64, Vec<LogEntry>)>> {
        let below = chunk_key(seq.saturating_add(1), 0);
        match self.kv().last_below(Tree::CalLog, &below)? {
            Some((k, v)) => {
                let (first, last) = chunk_range(&k)?;
                if seq > last {
                    return Ok(None);
                }
                Ok(Some((first, codec::decode(LOG, &v)?)))
            }
            None => Ok(None),
        }
    }

    /// The log entry `seq`.
    pub fn log_entry(&self, seq: u64) -> Result<Option<LogEntry>> {
        Ok(self.chunk_of(seq)?.and_then(|(first, entries)| {
            usize::try_from(seq - first).ok().and_then(|i| entries.into_iter().nth(i)).filter(|e| e.seq == seq)
        }))
    }

    /// The log entries `seqs` (ascending), each chunk read once.
    pub fn log_entries(&self, seqs: &[u64]) -> Result<Vec<LogEntry>> {
        let mut out = Vec::with_capacity(seqs.len());
        let mut chunk: Option<(u64, Vec<LogEntry>)> = None;
        for &seq in seqs {
            let cached =
                chunk.as_ref().is_some_and(|(first, entries)| seq >= *first && seq < first + entries.len() as u64);
            if !cached {
                chunk = self.chunk_of(seq)?;
            }
            let found = chunk.as_ref().and_then(|(first, entries)| {
                usize::try_from(seq - first).ok().and_then(|i| entries.get(i)).filter(|e| e.seq == seq).cloned()
            });
            out.push(
                found.ok_or_else(|| StoreError::Corrupt { tree: LOG, detail: format!("entry {seq} is missing") })?,
            );
        }
        Ok(out)
    }

    /// Up to `limit` log entries from `from` on, in order.
    pub fn log(&self, from: u64, limit: usize) -> Result<Vec<LogEntry>> {
        let start = match self.kv().last_below(Tree::CalLog, &chunk_key(from.saturating_add(1), 0))? {
            Some((k, _)) => k,
            None => chunk_key(0, 0),
        };
        let mut out = Vec::new();
        for (_, v) in self.kv().scan_range(Tree::CalLog, &start, &chunk_key(u64::MAX, u64::MAX), usize::MAX)? {
            let entries: Vec<LogEntry> = codec::decode(LOG, &v)?;
            out.extend(entries.into_iter().filter(|e| e.seq >= from));
            if out.len() >= limit {
                out.truncate(limit);
                break;
            }
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

    fn entry(seq: u64, meeting: &str, body: &[u8]) -> LogEntry {
        LogEntry {
            seq,
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
    fn the_log_takes_only_the_next_numbers_and_reads_back_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        for store in [Store::in_memory(MemKv::new()), Store::open(dir.path()).unwrap()] {
            let mut w = CalendarWrite::new();
            w.append(entry(1, "m1", b"a"));
            w.append(entry(2, "m2", b"b"));
            w.item("u1", "e1", Some(b"rec".to_vec()));
            w.meeting("m1", Some(b"meet".to_vec()));
            store.calendar_commit(w).unwrap();
            let mut w = CalendarWrite::new();
            w.append(entry(2, "m1", b"again"));
            let refused = store.calendar_commit(w).unwrap_err().to_string();
            assert!(refused.contains("expected sequence number 3, got 2"), "{refused}");
            // Big bodies: one commit spans several chunks.
            let mut w = CalendarWrite::new();
            for seq in 3..=40 {
                w.append(entry(seq, "m1", &vec![seq as u8; 10_000]));
            }
            store.calendar_commit(w).unwrap();
            assert_eq!(store.last_seq().unwrap(), 40);
            assert_eq!(store.log_entry(2).unwrap().unwrap().body, b"b");
            assert_eq!(store.log_entry(17).unwrap().unwrap().body, vec![17u8; 10_000]);
            assert_eq!(store.log_entry(41).unwrap(), None);
            let all = store.log(1, usize::MAX).unwrap();
            assert_eq!(all.iter().map(|e| e.seq).collect::<Vec<_>>(), (1..=40).collect::<Vec<_>>());
            assert_eq!(store.log(20, 3).unwrap().iter().map(|e| e.seq).collect::<Vec<_>>(), vec![20, 21, 22]);
            let picked = store.log_entries(&[1, 3, 4, 39]).unwrap();
            assert_eq!(picked.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![1, 3, 4, 39]);
            assert!(store.log_entries(&[41]).is_err());
            assert_eq!(store.cal_item("u1", "e1").unwrap().unwrap(), b"rec");
            assert_eq!(store.cal_items("u1").unwrap(), vec![("e1".to_string(), b"rec".to_vec())]);
            assert_eq!(store.meeting("m1").unwrap().unwrap(), b"meet");
            assert!(store.cal_items("u2").unwrap().is_empty());
        }
    }
}
