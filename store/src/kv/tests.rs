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
    let kv = SledKv::open(dir.path()).expect("reopen");
    assert_eq!(kv.get(Tree::Settings, b"k").expect("get"), Some(b"v".to_vec()));
}

#[test]
fn sled_ids_keep_increasing_across_reopen() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = {
        let kv = SledKv::open(dir.path()).expect("open");
        (0..10).map(|_| kv.next_id().expect("id")).max().expect("ten ids")
    };
    let kv = SledKv::open(dir.path()).expect("reopen");
    assert!(kv.next_id().expect("id") > first);
}
