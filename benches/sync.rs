//! One user's sync end to end (issue 5): the hub drives the real Graph and CRM clients
//! against in-process emulators over loopback, with a sled store on local disk. The user
//! has 1,000 Outlook contacts and 1,000 in the CRM list, 500 of them the same people.
//! Figures: the initial sync (≤ 300 ms) and a run carrying a single change (≤ 20 ms).
//! Run: `cargo bench --bench sync`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion};

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "firm_support.rs"]
mod firm_support;
use firm_support::*;

fn one_user(c: &mut Criterion) {
    tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    c.bench_function("sync_initial_one_user_1000_plus_1000", |b| {
        b.iter_batched(
            || {
                let (graph, crm, g, c) = serve(&rt, seed(1));
                let dir = tempfile::tempdir().expect("dir");
                let hub = hub(&g, &c, dir.path(), rt.handle().clone());
                (graph, crm, dir, hub)
            },
            |(graph, crm, dir, hub)| {
                let report = hub.sync_user(&pair(1)).expect("initial sync");
                assert_eq!(report.log.matched.len(), SHARED);
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                (graph, crm, dir, hub)
            },
            BatchSize::PerIteration,
        )
    });

    let (graph, crm, graph_url, crm_url) = serve(&rt, seed(1));
    let dir = tempfile::tempdir().expect("dir");
    let hub = hub(&graph_url, &crm_url, dir.path(), rt.handle().clone());
    hub.sync_user(&pair(1)).expect("initial");
    hub.sync_user(&pair(1)).expect("settle");
    let id = graph.state().contacts("m1", None).expect("contacts")[0].id.clone().expect("id");
    let mut n = 0;
    c.bench_function("sync_one_user_single_change", |b| {
        b.iter_batched(
            || {
                n += 1;
                outlook_edit(&mut graph.state(), "m1", &id, n);
            },
            |()| {
                let report = hub.sync_user(&pair(1)).expect("run");
                assert_eq!(report.counts[1].updated, 1);
            },
            BatchSize::PerIteration,
        )
    });
    drop(crm);
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(20));
    targets = one_user
}
criterion_main!(benches);
