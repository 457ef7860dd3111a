//! The store's face to the hub: load a user's state at once, commit what a batch changed in
//! one transaction, compact the document.

use std::path::Path;
use std::sync::Arc;

pub use crate::docs::DocStats;
use crate::keys::{key, segments};
use crate::kv::{Batch, Kv, MemKv, SledKv, Tree};
use crate::records::{AttemptRecord, ContactRecord, ContactRecordV2, IntentRecord};
use crate::{codec, docs, Result, StoreError};

/// Everything stored for one user, as loaded at the start of a run.
#[derive(Clone, Debug, Default)]
pub struct UserState {
    /// The document: snapshot and chunks, ready for `Automerge::load` (empty: no document).
    pub doc: Vec<u8>,
    /// Where the document stands.
    pub doc_stats: DocStats,
    /// (hub id, record), the contact's pending intents included.
    pub contacts: Vec<(String, ContactRecord)>,
    /// (side, cursor).
    pub cursors: Vec<(String, String)>,
    /// (side, hub id, intent): intents a store of format version 2 kept under keys of their
    /// own. The reader moves them into the contact records
    /// ([`UserWrite::drop_legacy_intent`]).
    pub legacy_intents: Vec<(String, String, IntentRecord)>,
    /// (side, mark, attempt mark).
    pub attempts: Vec<(String, String, AttemptRecord)>,
    /// The pending count as stored ([`UserWrite::pending`]; 0 when none is): the reader
    /// compares it with the intents it found and writes the true count where they differ.
    pub pending: u64,
}

impl UserState {
    /// Every pending intent as (side, hub id, intent): those in the contact records, then
    /// the legacy ones.
    pub fn intents(&self) -> Vec<(String, String, IntentRecord)> {
        let in_records = self.contacts.iter().flat_map(|(hub, record)| {
            record.intents.iter().map(move |(side, intent)| (side.clone(), hub.clone(), intent.clone()))
        });
        in_records.chain(self.legacy_intents.iter().cloned()).collect()
    }
}

/// Records per batch when copying a store.
const COPY_PAGE: usize = 4_096;

/// A user's cursors and pending pushes ([`Store::user_marks`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserMarks {
    /// (side, cursor).
    pub cursors: Vec<(String, String)>,
    /// Intents stored (pushes planned or attempted and not yet confirmed).
    pub intents: usize,
    /// Attempt marks stored: push batches a crash or a failed write left unsettled.
    pub attempts: usize,
}

/// What one batch of a run changed for a user; [`Store::commit`] writes it atomically.
#[derive(Clone, Debug, Default)]
pub struct UserWrite {
    doc_chunk: Option<Vec<u8>>,
    contacts: Vec<(String, Option<ContactRecord>)>,
    cursors: Vec<(String, Option<String>)>,
    pending: Option<u64>,
    legacy_intents: Vec<(String, String)>,
    attempts: Vec<(String, String, Option<AttemptRecord>)>,
    journal: Vec<(String, i64, Vec<u8>)>,
}

impl UserWrite {
    /// Nothing yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Append the changes made since the last commit (`save_after` bytes).
    pub fn doc_chunk(&mut self, bytes: Vec<u8>) {
        if !bytes.is_empty() {
            self.doc_chunk.get_or_insert_with(Vec::new).extend_from_slice(&bytes);
        }
    }

    /// Set (or, with `None` or an empty record, remove) a contact's record.
    pub fn contact(&mut self, hub: &str, record: Option<ContactRecord>) {
        self.contacts.push((hub.to_string(), record.filter(|r| !r.is_empty())));
    }

    /// Set how many intents the user's contact records hold, once this write is applied
    /// ([`Store::user_marks`]).
    pub fn pending(&mut self, intents: u64) {
        self.pending = Some(intents);
    }

    /// Set or clear a side's cursor.
    pub fn cursor(&mut self, side: &str, cursor: Option<String>) {
        self.cursors.push((side.to_string(), cursor));
    }

    /// Remove an intent kept under a key of its own (format version 2), once the contact's
    /// record, written in the same batch, holds it or it is done.
    pub fn drop_legacy_intent(&mut self, side: &str, hub: &str) {
        self.legacy_intents.push((side.to_string(), hub.to_string()));
    }

    /// Set or clear an attempt mark (see [`AttemptRecord`]).
    pub fn attempt(&mut self, side: &str, mark: &str, record: Option<AttemptRecord>) {
        self.attempts.push((side.to_string(), mark.to_string(), record));
    }

    /// Append a journal record of `kind` (e.g. `conflict`) at `at_ms`.
    pub fn journal(&mut self, kind: &str, at_ms: i64, record: Vec<u8>) {
        self.journal.push((kind.to_string(), at_ms, record));
    }

    /// Whether there is nothing to write.
    pub fn is_empty(&self) -> bool {
        self.doc_chunk.is_none()
            && self.contacts.is_empty()
            && self.cursors.is_empty()
            && self.pending.is_none()
            && self.legacy_intents.is_empty()
            && self.attempts.is_empty()
            && self.journal.is_empty()
    }
}

/// The hub's store.
#[derive(Clone)]
pub struct Store {
    kv: Arc<dyn Kv>,
    /// Serialises writers: a commit reads the document's stats before its transaction, so
    /// two writers must not interleave.
    writer: Arc<std::sync::Mutex<()>>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

impl Store {
    /// Open (or create) the sled store in `dir`.
    pub fn open(dir: &Path) -> Result<Store> {
        Ok(Store::with_kv(Arc::new(SledKv::open(dir)?)))
    }

    /// A store over the in-memory adapter (clones of `kv` share its data).
    pub fn in_memory(kv: MemKv) -> Store {
        Store::with_kv(Arc::new(kv))
    }

    /// A store over any adapter.
    pub fn with_kv(kv: Arc<dyn Kv>) -> Store {
        Store { kv, writer: Arc::new(std::sync::Mutex::new(())) }
    }

    pub(crate) fn kv(&self) -> &dyn Kv {
        self.kv.as_ref()
    }

    pub(crate) fn write_lock(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.writer.lock().map_err(|_| StoreError::Transaction("a writer panicked while holding the store".into()))
    }

    /// Load everything stored for `user`.
    pub fn load_user(&self, user: &str) -> Result<UserState> {
        let kv = self.kv.as_ref();
        let doc_stats = docs::stats(kv, user)?;
        let doc = docs::load(kv, user, &doc_stats)?;
        let prefix = key(&[user.as_bytes()]);
        let mut contacts = Vec::new();
        for (k, v) in kv.scan_prefix(Tree::Contacts, &prefix)? {
            let segs = segments(&k).ok_or_else(|| corrupt(Tree::Contacts, "bad key"))?;
            let [_, hub] = segs.as_slice() else { return Err(corrupt(Tree::Contacts, "key is not (user, hub)")) };
            contacts.push((utf8(Tree::Contacts, hub)?, decode_contact(&v)?));
        }
        let legacy_intents = scan_records(kv, Tree::Intents, &prefix)?;
        let attempts = scan_records(kv, Tree::Attempts, &prefix)?;
        let pending = stored_pending(kv, &prefix)?;
        Ok(UserState { doc, doc_stats, contacts, cursors: cursors(kv, &prefix)?, legacy_intents, attempts, pending })
    }

    /// Copy every record into a fresh store in `dir` (made if missing; it must not hold a
    /// store): the live data alone, without the dead space sled keeps after rewrites.
    /// `synchub compact` swaps the copy in for the original.
    pub fn copy_into(&self, dir: &Path) -> Result<Store> {
        let target = SledKv::open(dir)?;
        let kv = self.kv.as_ref();
        for tree in Tree::ALL.iter().copied() {
            let Some((mut end, _)) = kv.last(tree)? else { continue };
            end.push(0);
            let mut start = Vec::new();
            loop {
                let page = kv.scan_range(tree, &start, &end, COPY_PAGE)?;
                let Some((last, _)) = page.last() else { break };
                start = last.clone();
                start.push(0);
                let mut batch = Batch::new();
                for (k, v) in page {
                    batch.put(tree, k, v);
                }
                target.apply_deferred(&batch)?;
            }
        }
        target.flush()?;
        Ok(Store::with_kv(Arc::new(target)))
    }

    /// A user's cursors and how many pushes they have pending, without the rest: enough to
    /// pull before deciding whether the user needs loading at all.
    pub fn user_marks(&self, user: &str) -> Result<UserMarks> {
        let kv = self.kv.as_ref();
        let prefix = key(&[user.as_bytes()]);
        let pending = stored_pending(kv, &prefix)?;
        let legacy = kv.scan_prefix(Tree::Intents, &prefix)?.len() as u64;
        let intents = usize::try_from(pending.saturating_add(legacy)).unwrap_or(usize::MAX);
        let attempts = kv.scan_prefix(Tree::Attempts, &prefix)?.len();
        Ok(UserMarks { cursors: cursors(kv, &prefix)?, intents, attempts })
    }

    /// Only the user's document (snapshot and chunks), for readers that need nothing else.
    pub fn load_doc(&self, user: &str) -> Result<Vec<u8>> {
        let kv = self.kv.as_ref();
        docs::load(kv, user, &docs::stats(kv, user)?)
    }

    /// Write one batch of a user's changes in one transaction; durable on return.
    pub fn commit(&self, user: &str, write: UserWrite) -> Result<DocStats> {
        self.commit_as(user, write, true)
    }

    /// The same as [`Store::commit`], atomic but durable only with the next durable commit
    /// or [`Store::flush`]: for what a crash may lose because it can be found again (a
    /// push's outcome, read back from the side when its intent is still attempted).
    pub fn commit_deferred(&self, user: &str, write: UserWrite) -> Result<DocStats> {
        self.commit_as(user, write, false)
    }

    /// Make every deferred commit durable.
    pub fn flush(&self) -> Result<()> {
        self.kv.flush()
    }

    fn commit_as(&self, user: &str, write: UserWrite, durable: bool) -> Result<DocStats> {
        let _writer = self.write_lock()?;
        let kv = self.kv.as_ref();
        let mut batch = Batch::new();
        let mut stats = docs::stats(kv, user)?;
        if let Some(chunk) = &write.doc_chunk {
            stats = if stats.generation == 0 && stats.chunks == 0 {
                // The user's first document bytes: kept as the snapshot (the same bytes load
                // either way), not as a chunk that at once calls for compacting.
                docs::replace(kv, &mut batch, user, stats, chunk)?
            } else {
                docs::append_chunk(&mut batch, user, stats, chunk)?
            };
        }
        for (hub, record) in &write.contacts {
            set(&mut batch, Tree::Contacts, key(&[user.as_bytes(), hub.as_bytes()]), record.as_ref())?;
        }
        for (side, cursor) in &write.cursors {
            set(&mut batch, Tree::Cursors, key(&[user.as_bytes(), side.as_bytes()]), cursor.as_ref())?;
        }
        if let Some(pending) = write.pending {
            let k = key(&[user.as_bytes()]);
            set(&mut batch, Tree::Pending, k, (pending > 0).then_some(&pending))?;
        }
        for (side, hub) in &write.legacy_intents {
            batch.delete(Tree::Intents, key(&[user.as_bytes(), side.as_bytes(), hub.as_bytes()]));
        }
        for (side, mark, attempt) in &write.attempts {
            set(
                &mut batch,
                Tree::Attempts,
                key(&[user.as_bytes(), side.as_bytes(), mark.as_bytes()]),
                attempt.as_ref(),
            )?;
        }
        for (kind, at, record) in &write.journal {
            // Time, then an id the store never handed out before: in order, and unique.
            let id = kv.next_id()?;
            let k = key(&[user.as_bytes(), kind.as_bytes(), &at.to_be_bytes(), &id.to_be_bytes()]);
            batch.put(Tree::Journal, k, codec::wrap(record));
        }
        if durable {
            kv.apply(&batch)?;
        } else {
            kv.apply_deferred(&batch)?;
        }
        Ok(stats)
    }

    /// A user's journal records of `kind`, oldest first.
    pub fn journal(&self, user: &str, kind: &str) -> Result<Vec<Vec<u8>>> {
        let prefix = key(&[user.as_bytes(), kind.as_bytes()]);
        self.kv
            .scan_prefix(Tree::Journal, &prefix)?
            .into_iter()
            .map(|(_, v)| codec::payload(Tree::Journal.name(), &v).map(<[u8]>::to_vec))
            .collect()
    }

    /// Replace the user's snapshot and chunks with `snapshot` (a full `save()`), in one
    /// transaction.
    pub fn compact(&self, user: &str, snapshot: &[u8]) -> Result<DocStats> {
        let _writer = self.write_lock()?;
        let kv = self.kv.as_ref();
        let mut batch = Batch::new();
        let old = docs::stats(kv, user)?;
        let stats = docs::replace(kv, &mut batch, user, old, snapshot)?;
        kv.apply(&batch)?;
        tracing::debug!(user, bytes = snapshot.len(), parts = stats.parts, "document compacted");
        Ok(stats)
    }

    /// A setting; `user` `None` is the global scope.
    pub fn setting(&self, user: Option<&str>, name: &str) -> Result<Option<Vec<u8>>> {
        let k = key(&[user.unwrap_or("").as_bytes(), name.as_bytes()]);
        match self.kv.get(Tree::Settings, &k)? {
            Some(v) => Ok(Some(codec::payload(Tree::Settings.name(), &v)?.to_vec())),
            None => Ok(None),
        }
    }

    /// Set a setting; `user` `None` is the global scope.
    pub fn set_setting(&self, user: Option<&str>, name: &str, value: &[u8]) -> Result<()> {
        let _writer = self.write_lock()?;
        let mut batch = Batch::new();
        batch.put(Tree::Settings, key(&[user.unwrap_or("").as_bytes(), name.as_bytes()]), codec::wrap(value));
        self.kv.apply(&batch)
    }
}

/// The bytes of the files under `dir` (a store's directory), subdirectories included; what
/// cannot be read counts 0.
pub fn disk_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| match e.metadata() {
                    Ok(m) if m.is_dir() => disk_bytes(&e.path()),
                    Ok(m) => m.len(),
                    Err(_) => 0,
                })
                .sum()
        })
        .unwrap_or(0)
}

/// The user's pending count as stored (0 when none is).
fn stored_pending(kv: &dyn Kv, prefix: &[u8]) -> Result<u64> {
    match kv.get(Tree::Pending, prefix)? {
        Some(v) => codec::decode::<u64>(Tree::Pending.name(), &v),
        None => Ok(0),
    }
}

/// (side, cursor) of the user whose key prefix is `prefix`.
fn cursors(kv: &dyn Kv, prefix: &[u8]) -> Result<Vec<(String, String)>> {
    let mut cursors = Vec::new();
    for (k, v) in kv.scan_prefix(Tree::Cursors, prefix)? {
        let segs = segments(&k).ok_or_else(|| corrupt(Tree::Cursors, "bad key"))?;
        let side = segs.get(1).ok_or_else(|| corrupt(Tree::Cursors, "short key"))?;
        cursors.push((utf8(Tree::Cursors, side)?, codec::decode::<String>(Tree::Cursors.name(), &v)?));
    }
    Ok(cursors)
}

/// Put `record` under `k` in `tree`, or delete `k` when there is none.
fn set<T: serde::Serialize>(batch: &mut Batch, tree: Tree, k: Vec<u8>, record: Option<&T>) -> Result<()> {
    match record {
        Some(r) => batch.put(tree, k, codec::encode(tree.name(), r)?),
        None => batch.delete(tree, k),
    }
    Ok(())
}

fn scan_records<T: serde::de::DeserializeOwned>(
    kv: &dyn Kv,
    tree: Tree,
    prefix: &[u8],
) -> Result<Vec<(String, String, T)>> {
    let mut out = Vec::new();
    for (k, v) in kv.scan_prefix(tree, prefix)? {
        let segs = segments(&k).ok_or_else(|| corrupt(tree, "bad key"))?;
        let [_, side, hub] = segs.as_slice() else {
            return Err(corrupt(tree, "key is not (user, side, hub)"));
        };
        out.push((utf8(tree, side)?, utf8(tree, hub)?, codec::decode(tree.name(), &v)?));
    }
    Ok(out)
}

/// A contact record of either format version this build reads.
fn decode_contact(bytes: &[u8]) -> Result<ContactRecord> {
    let tree = Tree::Contacts.name();
    let malformed = |e: postcard::Error| StoreError::Corrupt { tree, detail: e.to_string() };
    match codec::versioned(tree, bytes)? {
        (2, payload) => postcard::from_bytes::<ContactRecordV2>(payload).map(ContactRecord::from).map_err(malformed),
        (_, payload) => postcard::from_bytes(payload).map_err(malformed),
    }
}

fn utf8(tree: Tree, bytes: &[u8]) -> Result<String> {
    String::from_utf8(bytes.to_vec()).map_err(|_| corrupt(tree, "key is not UTF-8"))
}

fn corrupt(tree: Tree, detail: &str) -> StoreError {
    StoreError::Corrupt { tree: tree.name(), detail: detail.to_string() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(item: &str) -> ContactRecord {
        let side = crate::SideRecord {
            item: Some(item.into()),
            etag: None,
            base: vec![[7; 32]],
            shadow: vec![1, 2, 3],
            stamped: true,
            previous: None,
        };
        ContactRecord { sides: vec![("crm".into(), side)], intents: Vec::new() }
    }

    fn intent(op: &str) -> IntentRecord {
        IntentRecord { op: op.into(), heads: vec![[3; 32]], fields: vec![9], attempted: false }
    }

    fn stores() -> Vec<(Store, Option<tempfile::TempDir>)> {
        let dir = tempfile::tempdir().expect("tempdir");
        vec![(Store::in_memory(MemKv::new()), None), (Store::open(dir.path()).expect("open"), Some(dir))]
    }

    #[test]
    fn commit_then_load_round_trips() {
        for (store, _dir) in stores() {
            let mut w = UserWrite::new();
            w.doc_chunk(b"abc".to_vec());
            w.contact("h1", Some(record("c-1")));
            w.cursor("crm", Some("cur-1".into()));
            w.attempt("exchange", "3", Some(AttemptRecord { hubs: vec!["h1".into()] }));
            store.commit("u1", w).expect("commit");

            let mut w = UserWrite::new();
            w.doc_chunk(b"def".to_vec());
            let mut pending = record("c-2");
            pending.intents.push(("exchange".into(), intent("create")));
            w.contact("h1", Some(pending.clone()));
            w.pending(1);
            store.commit("u1", w).expect("commit");

            let state = store.load_user("u1").expect("load");
            assert_eq!(state.doc, b"abcdef");
            assert_eq!(store.load_doc("u1").expect("load doc"), b"abcdef");
            assert_eq!(state.contacts, vec![("h1".into(), pending)]);
            assert_eq!(state.cursors, vec![("crm".into(), "cur-1".into())]);
            let marks = store.user_marks("u1").expect("marks");
            assert_eq!((marks.intents, marks.attempts), (1, 1));
            assert_eq!(
                state.attempts,
                vec![("exchange".into(), "3".into(), AttemptRecord { hubs: vec!["h1".into()] })]
            );
            assert_eq!(store.load_user("u2").expect("load").doc, b"");

            let mut w = UserWrite::new();
            w.contact("h1", Some(ContactRecord::default()));
            w.pending(0);
            w.attempt("exchange", "3", None);
            w.cursor("crm", None);
            store.commit("u1", w).expect("commit");
            let mut w = UserWrite::new();
            w.journal("conflict", 5, b"second".to_vec());
            w.journal("conflict", 2, b"first".to_vec());
            store.commit("u1", w).expect("commit");
            assert_eq!(store.journal("u1", "conflict").expect("journal"), vec![b"first".to_vec(), b"second".to_vec()]);
            assert!(store.journal("u2", "conflict").expect("journal").is_empty());
            let state = store.load_user("u1").expect("load");
            assert!(state.contacts.is_empty() && state.legacy_intents.is_empty() && state.cursors.is_empty());
            assert!(state.attempts.is_empty());
            assert_eq!(store.user_marks("u1").expect("marks").intents, 0);
        }
    }

    /// A store of format version 2: contact records without intents, each intent under a
    /// key of its own. Both read; the legacy intents count as pending until dropped.
    #[test]
    fn format_2_records_and_intents_read() {
        #[derive(serde::Serialize)]
        struct V2 {
            sides: Vec<(String, crate::SideRecord)>,
        }
        for (store, _dir) in stores() {
            let old = record("c-1");
            let mut contact = vec![2u8];
            contact.extend(postcard::to_stdvec(&V2 { sides: old.sides.clone() }).expect("encode"));
            let mut intent_bytes = vec![2u8];
            intent_bytes.extend(postcard::to_stdvec(&intent("update")).expect("encode"));
            let mut batch = Batch::new();
            batch.put(Tree::Contacts, key(&[b"u1", b"h1"]), contact);
            batch.put(Tree::Intents, key(&[b"u1", b"crm", b"h1"]), intent_bytes);
            store.kv().apply(&batch).expect("apply");

            let state = store.load_user("u1").expect("load");
            assert_eq!(state.contacts, vec![("h1".into(), old.clone())]);
            assert_eq!(state.legacy_intents, vec![("crm".into(), "h1".into(), intent("update"))]);
            assert_eq!(store.user_marks("u1").expect("marks").intents, 1);

            // The reader moves the intent into the record and drops the old key, in one batch.
            let mut moved = old;
            moved.intents.push(("crm".into(), intent("update")));
            let mut w = UserWrite::new();
            w.contact("h1", Some(moved.clone()));
            w.drop_legacy_intent("crm", "h1");
            w.pending(1);
            store.commit("u1", w).expect("commit");
            let state = store.load_user("u1").expect("load");
            assert_eq!(state.contacts, vec![("h1".into(), moved)]);
            assert!(state.legacy_intents.is_empty());
            assert_eq!(store.user_marks("u1").expect("marks").intents, 1);
        }
    }

    #[test]
    fn compaction_replaces_chunks_with_a_snapshot_in_parts() {
        for (store, _dir) in stores() {
            for i in 0..3u8 {
                let mut w = UserWrite::new();
                w.doc_chunk(vec![i; 10]);
                store.commit("u", w).expect("commit");
            }
            let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
            let stats = store.compact("u", &big).expect("compact");
            assert_eq!((stats.parts, stats.chunks, stats.generation), (4, 0, 2), "the first bytes made generation 1");
            assert_eq!(store.load_user("u").expect("load").doc, big);
            let mut w = UserWrite::new();
            w.doc_chunk(vec![1, 2]);
            let stats = store.commit("u", w).expect("commit");
            assert_eq!(stats.chunks, 1);
            let mut expect = big.clone();
            expect.extend([1, 2]);
            assert_eq!(store.load_user("u").expect("load").doc, expect);
            let stats = store.compact("u", b"small").expect("compact");
            assert_eq!((stats.parts, stats.generation), (1, 3));
            assert_eq!(store.load_user("u").expect("load").doc, b"small");
        }
    }

    /// A user's first document bytes are kept as the snapshot, so the first commit (a whole
    /// document at a user's initial sync) does not at once call for compacting; what follows
    /// is appended as chunks, and the document loads as the same bytes.
    #[test]
    fn the_first_document_bytes_are_the_snapshot() {
        for (store, _dir) in stores() {
            let whole: Vec<u8> = (0..100_000u32).map(|i| (i % 241) as u8).collect();
            let mut w = UserWrite::new();
            w.doc_chunk(whole.clone());
            let stats = store.commit("u", w).expect("commit");
            assert_eq!((stats.generation, stats.parts, stats.chunks), (1, 2, 0));
            assert_eq!(stats.snapshot_bytes, whole.len() as u64);
            assert!(!stats.needs_compaction());
            let mut w = UserWrite::new();
            w.doc_chunk(vec![7; 10]);
            let stats = store.commit("u", w).expect("commit");
            assert_eq!((stats.generation, stats.chunks, stats.chunk_bytes), (1, 1, 10));
            let mut expect = whole.clone();
            expect.extend([7; 10]);
            assert_eq!(store.load_user("u").expect("load").doc, expect);
        }
    }

    #[test]
    fn settings_are_scoped_globally_and_per_user() {
        for (store, _dir) in stores() {
            store.set_setting(None, "calendar_sync", b"true").expect("set");
            store.set_setting(Some("u1"), "contact_sync", b"false").expect("set");
            assert_eq!(store.setting(None, "calendar_sync").expect("get"), Some(b"true".to_vec()));
            assert_eq!(store.setting(Some("u1"), "calendar_sync").expect("get"), None);
            assert_eq!(store.setting(Some("u1"), "contact_sync").expect("get"), Some(b"false".to_vec()));
        }
    }

    #[test]
    fn compaction_threshold() {
        let s = DocStats { snapshot_bytes: 1_000_000, chunks: 3, chunk_bytes: 100_000, ..DocStats::default() };
        assert!(!s.needs_compaction());
        assert!(DocStats { chunks: 64, ..s }.needs_compaction());
        assert!(DocStats { chunk_bytes: 600_000, ..s }.needs_compaction());
    }
}
