//! Storage figures (a bench binary: one-shot measurements, not sampled): the sled directory
//! after compaction per contact (≤ 1.5 KiB: document, links, shadows, bases), and the
//! directory after rewriting the user's document 1,000 times (≤ 3× its compacted size).
//! Run: `cargo bench --bench storage`.

use synchub::merge::{Merge, RunCtx, UserReplica};
use synchub::model::Side;
use synchub_store::Store;

#[path = "support.rs"]
mod support;

const N: usize = 2_000;

/// The sled directory a fresh store needs for `replica`: every record written once and the
/// document as one compacted snapshot.
fn fresh_size(replica: &UserReplica) -> u64 {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let store = Store::open(dir.path()).expect("open");
        let mut r = replica.clone();
        r.mark_all_dirty();
        store.commit("u", r.take_write().expect("write")).expect("commit");
        store.compact("u", &r.doc.save()).expect("compact");
    }
    synchub_store::disk_bytes(dir.path())
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks benches to list their tests
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let mut replica = support::synced(N);
    replica.mark_all_dirty();
    let snapshot = replica.doc.save();
    {
        let store = Store::open(dir.path()).expect("open");
        store.commit("u", replica.take_write().expect("write")).expect("commit");
        store.compact("u", &snapshot).expect("compact");
    }
    let compacted = synchub_store::disk_bytes(dir.path());
    {
        let kv = synchub_store::MemKv::new();
        let mem = Store::in_memory(kv.clone());
        let mut r = replica.clone();
        r.mark_all_dirty();
        mem.commit("u", r.take_write().expect("write")).expect("commit");
        mem.compact("u", &snapshot).expect("compact");
        println!(
            "logical bytes (keys + values): {} = {:.2} KiB per contact",
            kv.bytes().expect("bytes"),
            kv.bytes().expect("bytes") as f64 / N as f64 / 1024.0
        );
    }
    println!(
        "contacts: {N}, document snapshot: {} bytes ({:.0} B/contact)",
        snapshot.len(),
        snapshot.len() as f64 / N as f64
    );
    println!(
        "sled directory after compaction: {compacted} bytes = {:.2} KiB per contact (target <= 1.5)",
        compacted as f64 / N as f64 / 1024.0
    );

    // 1,000 runs, each changing fields of a few contacts on both sides: the document grows
    // by a chunk a run and is compacted into a new snapshot whenever the chunks call for it,
    // as the engine does.
    let store = Store::open(dir.path()).expect("reopen");
    let mut compactions = 0;
    for round in 0..1_000usize {
        let [ex, crm] = support::changes_round(&replica, 4, round);
        let ctx = RunCtx::all_fields(support::now());
        let mut merge = Merge::new(&mut replica, ctx);
        merge.observe(Side::Exchange, ex).expect("observe");
        merge.observe(Side::Crm, crm).expect("observe");
        merge.resolve().expect("resolve");
        drop(merge);
        let stats = store.commit("u", replica.take_write().expect("write")).expect("commit");
        if stats.needs_compaction() {
            store.compact("u", &replica.doc.save()).expect("compact");
            compactions += 1;
        }
    }
    store.compact("u", &replica.doc.save()).expect("compact");
    drop(store);
    let after_runs = synchub_store::disk_bytes(dir.path());
    let fresh = fresh_size(&replica);
    println!(
        "after 1,000 runs writing the document ({compactions} compactions on the way, one at the end): {after_runs} bytes = {:.2}x the {fresh} bytes a fresh store needs for the same state (target <= 3)",
        after_runs as f64 / fresh as f64
    );

    // The harshest case: the whole snapshot rewritten 1,000 times in a row.
    let snapshot = replica.doc.save();
    let store = Store::open(dir.path()).expect("reopen");
    for _ in 0..1_000 {
        store.compact("u", &snapshot).expect("rewrite");
    }
    drop(store);
    let after = synchub_store::disk_bytes(dir.path());
    println!(
        "after rewriting the whole snapshot 1,000 times more: {after} bytes = {:.2}x the fresh size (target <= 3)",
        after as f64 / fresh as f64
    );
    let store = Store::open(dir.path()).expect("reopen");
    let loaded = UserReplica::load(&store, "u").expect("load");
    assert_eq!(loaded.doc.heads(), replica.doc.heads(), "the rewritten document loads back");
}
