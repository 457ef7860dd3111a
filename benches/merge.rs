//! Merge-core figures for one user with 2,000 contacts of 15–25 fields (issue 2):
//! build the document from one side's listing (≤ 40 ms), plan a run with 100 changed
//! fields per side (≤ 10 ms), open the user from sled (≤ 25 ms).
//! Run: `cargo bench --bench merge`.

use std::collections::BTreeSet;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use synchub::merge::{materialise, ContactDoc, Merge, RunCtx, UserReplica};
use synchub::model::Side;
use synchub_store::Store;

#[path = "support.rs"]
mod support;

const N: usize = 2_000;

fn build(c: &mut Criterion) {
    let listing = support::listing(Side::Exchange, N);
    c.bench_function("build_document_2000_contacts", |b| {
        b.iter_batched(
            || (UserReplica::new(), listing.clone()),
            |(mut replica, items)| {
                let mut merge = Merge::new(&mut replica, RunCtx::all_fields(support::now()));
                merge.observe(Side::Exchange, items).expect("observe");
                merge.resolve().expect("resolve");
                drop(merge);
                replica
            },
            BatchSize::LargeInput,
        )
    });
}

fn plan_run(c: &mut Criterion) {
    let base = support::synced(N);
    let changes = support::changes(&base, 100);
    c.bench_function("plan_run_100_changed_fields_per_side", |b| {
        b.iter_batched(
            || (base.clone(), changes.clone()),
            |(mut replica, [ex, crm])| {
                let ctx = RunCtx::all_fields(support::now());
                let mut merge = Merge::new(&mut replica, ctx);
                merge.observe(Side::Exchange, ex).expect("observe");
                merge.observe(Side::Crm, crm).expect("observe");
                merge.resolve().expect("resolve");
                let touched: BTreeSet<_> = merge.touched().clone();
                drop(merge);
                let requests: Vec<_> = Side::BOTH
                    .iter()
                    .map(|s| materialise::SidePlan {
                        side: *s,
                        set: ctx.fields[s.index()],
                        candidates: touched.clone(),
                        pulled: true,
                    })
                    .collect();
                let ops: usize = materialise::plan_sides(&mut replica, &requests).iter().map(Vec::len).sum();
                assert_eq!(ops, 100, "50 contacts changed on each side are pushed to the other");
                replica
            },
            BatchSize::LargeInput,
        )
    });
}

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Store::open(dir.path()).expect("open");
    let mut replica = support::synced(N);
    replica.mark_all_dirty();
    store.commit("u", replica.take_write().expect("write")).expect("commit");
    store.compact("u", &replica.doc.save()).expect("compact");
    c.bench_function("open_user_from_sled_2000_contacts", |b| {
        b.iter(|| UserReplica::load(&store, "u").expect("load"));
    });
    c.bench_function("open_document_only_from_sled_2000_contacts", |b| {
        b.iter(|| ContactDoc::load(&store.load_doc("u").expect("load")).expect("doc"));
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = build, plan_run, open
}
criterion_main!(benches);
