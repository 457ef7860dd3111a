//! One test suite, run against every adapter (garage's `db/test.rs`).

use super::*;

pub fn suite(kv: &dyn Kv) {
    let mut b = Batch::new();
    b.put(Tree::Contacts, b"u1/a".to_vec(), b"1".to_vec());
    b.put(Tree::Contacts, b"u1/b".to_vec(), b"2".to_vec());
    b.put(Tree::Contacts, b"u2/a".to_vec(), b"3".to_vec());
    b.put(Tree::Journal, b"u1/a".to_vec(), b"other tree".to_vec());
    kv.apply(&b).expect("apply");
    assert_eq!(kv.get(Tree::Contacts, b"u1/a").expect("get"), Some(b"1".to_vec()));
    assert_eq!(kv.get(Tree::Journal, b"u1/a").expect("get"), Some(b"other tree".to_vec()));
    assert_eq!(kv.get(Tree::Cursors, b"u1/a").expect("get"), None);

    let scan = kv.scan_prefix(Tree::Contacts, b"u1/").expect("scan");
    assert_eq!(scan, vec![(b"u1/a".to_vec(), b"1".to_vec()), (b"u1/b".to_vec(), b"2".to_vec())]);

    // Later writes in one batch win; deletes apply.
    let mut b = Batch::new();
    b.put(Tree::Contacts, b"u1/a".to_vec(), b"x".to_vec());
    b.put(Tree::Contacts, b"u1/a".to_vec(), b"y".to_vec());
    b.delete(Tree::Contacts, b"u1/b".to_vec());
    assert_eq!(b.len(), 3);
    kv.apply(&b).expect("apply");
    assert_eq!(kv.get(Tree::Contacts, b"u1/a").expect("get"), Some(b"y".to_vec()));
    assert_eq!(kv.get(Tree::Contacts, b"u1/b").expect("get"), None);
    assert_eq!(kv.scan_prefix(Tree::Contacts, b"u3").expect("scan"), vec![]);
    kv.apply(&Batch::new()).expect("empty batch is fine");

    // Ranges are half-open and bounded; the last key of a tree is its own.
    let mut b = Batch::new();
    for k in [b"r1", b"r2", b"r3", b"r4"] {
        b.put(Tree::CalIndex, k.to_vec(), k.to_vec());
    }
    b.put(Tree::Meetings, b"zz".to_vec(), b"m".to_vec());
    kv.apply(&b).expect("apply");
    let keys = |v: Vec<(Vec<u8>, Vec<u8>)>| v.into_iter().map(|(k, _)| k).collect::<Vec<_>>();
    assert_eq!(
        keys(kv.scan_range(Tree::CalIndex, b"r2", b"r4", 10).expect("range")),
        vec![b"r2".to_vec(), b"r3".to_vec()]
    );
    assert_eq!(keys(kv.scan_range(Tree::CalIndex, b"r1", b"r9", 1).expect("range")), vec![b"r1".to_vec()]);
    assert!(kv.scan_range(Tree::CalIndex, b"r4", b"r2", 10).expect("range").is_empty());
    assert_eq!(kv.last(Tree::CalIndex).expect("last").map(|(k, _)| k), Some(b"r4".to_vec()));
    assert_eq!(kv.last(Tree::Contacts).expect("last").map(|(k, _)| k), Some(b"u2/a".to_vec()));
    assert_eq!(kv.last(Tree::CalLog).expect("last"), None);
    assert_eq!(kv.last_below(Tree::CalIndex, b"r3").expect("below").map(|(k, _)| k), Some(b"r2".to_vec()));
    assert_eq!(kv.last_below(Tree::CalIndex, b"r1").expect("below"), None);
    assert_eq!(kv.last_below(Tree::CalIndex, b"zz").expect("below").map(|(k, _)| k), Some(b"r4".to_vec()));

    // A batch across plain and calendar trees applies as one.
    let mut b = Batch::new();
    b.put(Tree::Contacts, b"mixed".to_vec(), b"c".to_vec());
    b.put(Tree::CalLog, b"mixed".to_vec(), b"l".to_vec());
    b.delete(Tree::CalIndex, b"r1".to_vec());
    kv.apply(&b).expect("apply");
    assert_eq!(kv.get(Tree::Contacts, b"mixed").expect("get"), Some(b"c".to_vec()));
    assert_eq!(kv.get(Tree::CalLog, b"mixed").expect("get"), Some(b"l".to_vec()));
    assert_eq!(kv.get(Tree::CalItems, b"mixed").expect("get"), None, "trees stay apart");
    assert_eq!(kv.scan_prefix(Tree::CalIndex, b"r").expect("scan").len(), 3);
    assert_eq!(kv.last(Tree::Meetings).expect("last").map(|(k, _)| k), Some(b"zz".to_vec()));

    let (a, b) = (kv.next_id().expect("id"), kv.next_id().expect("id"));
    assert!(b > a, "ids increase");
}

#[test]
fn mem_adapter_passes_the_suite() {
    suite(&MemKv::new());
}

#[test]
fn sled_adapter_passes_the_suite() {
    let dir = tempfile::tempdir().expect("tempdir");
    suite(&SledKv::open(dir.path()).expect("open"));
}

#[test]
fn sled_keeps_committed_batches_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let kv = SledKv::open(dir.path()).expect("open");
        let mut b = Batch::new();
        b.put(Tree::Settings, b"k".to_vec(), b"v".to_vec());
        kv.apply(&b).expect("apply");
    }
    let kv = reopened(|| SledKv::open(dir.path()));
    assert_eq!(kv.get(Tree::Settings, b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn sled_ids_keep_increasing_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let kv = SledKv::open(dir.path()).expect("open");
        (0..10).map(|_| kv.next_id().expect("id")).max().expect("ten ids")
    };
    let kv = reopened(|| SledKv::open(dir.path()));
    assert!(kv.next_id().expect("id") > first);
}

#[test]
fn a_store_of_the_earlier_layout_is_moved_into_one_tree_and_keeps_every_record() {
    // The layout before: a sled tree per tree, the calendar's four in `calendar` under
    // their prefix bytes. 5,000 contacts span more than one copy batch.
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let db = raw(dir.path());
        let contacts = db.open_tree("contacts").expect("tree");
        for i in 0..5_000u32 {
            contacts.insert(format!("u1/{i:05}"), format!("record {i}").as_bytes()).expect("insert");
        }
        db.open_tree("settings").expect("tree").insert(b"/calendar_sync", b"true").expect("insert");
        db.open_tree("docs").expect("tree").insert(b"u1/meta", b"meta").expect("insert");
        db.open_tree("calendar").expect("tree").insert(b"mmeeting-1", b"flaggers").expect("insert");
        db.open_tree("calendar").expect("tree").insert(b"l0001", b"entry").expect("insert");
        db.flush().expect("flush");
    }
    {
        let kv = reopened(|| SledKv::open(dir.path()));
        let contacts = kv.scan_prefix(Tree::Contacts, b"u1/").expect("scan");
        assert_eq!(contacts.len(), 5_000);
        assert_eq!(contacts[4_999], (b"u1/04999".to_vec(), b"record 4999".to_vec()));
        assert_eq!(kv.get(Tree::Settings, b"/calendar_sync").expect("get"), Some(b"true".to_vec()));
        assert_eq!(kv.get(Tree::Docs, b"u1/meta").expect("get"), Some(b"meta".to_vec()));
        assert_eq!(kv.get(Tree::Meetings, b"meeting-1").expect("get"), Some(b"flaggers".to_vec()));
        assert_eq!(kv.last(Tree::CalLog).expect("last"), Some((b"0001".to_vec(), b"entry".to_vec())));
        assert_eq!(kv.get(Tree::Intents, b"u1/00001").expect("get"), None, "trees stay apart");
        let mut b = Batch::new();
        b.put(Tree::Contacts, b"u1/00000".to_vec(), b"changed".to_vec());
        kv.apply(&b).expect("apply");
    }
    // The old trees are gone: opening again copies nothing over what was written since.
    let db = raw(dir.path());
    let names: Vec<_> = db.tree_names();
    for old in ["contacts", "settings", "docs", "calendar"] {
        assert!(!names.iter().any(|n| n.as_ref() == old.as_bytes()), "{old} still there");
    }
    drop(db);
    let kv = reopened(|| SledKv::open(dir.path()));
    assert_eq!(kv.get(Tree::Contacts, b"u1/00000").expect("get"), Some(b"changed".to_vec()));
}

/// The sled database in `dir`, opened as the adapter opens it but without the adapter.
fn raw(dir: &std::path::Path) -> sled::Db {
    reopened(|| sled::Config::new().path(dir).segment_size(super::sled_kv::SEGMENT_BYTES).open())
}

/// Open what a dropped handle held: sled's own I/O threads may keep the directory's lock
/// a moment after the handle is dropped, so a failed open is tried again (5 s at most).
fn reopened<T, E: std::fmt::Debug>(mut open: impl FnMut() -> Result<T, E>) -> T {
    for _ in 0..500 {
        if let Ok(opened) = open() {
            return opened;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    open().expect("open sled")
}
