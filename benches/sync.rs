//! One user's sync end to end (issue 5): the hub drives the real Graph and CRM clients
//! against in-process emulators over loopback, with a sled store on local disk. The user
//! has 1,000 Outlook contacts and 1,000 in the CRM list, 500 of them the same people.
//! Figures: the initial sync (≤ 300 ms) and a run carrying a single change (≤ 20 ms).
//! Beside the initial sync, in the same run, its wire work alone: the same two pulls and
//! the same writes (recorded from a real initial sync) through the same sides, clients and
//! emulators, without the merge, the document or the store. It bounds from below what any
//! hub can reach with these connectors and emulators.
//! Run: `cargo bench --bench sync`.

use std::time::Duration;

use chrono::Utc;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion};
use synchub::connect::{crm::CrmSide, graph::GraphSide};
use synchub::engine::{pull_all, run_user, ContactReplica, Pull, RunOptions};
use synchub::merge::{PushOp, PushOutcome, RunCtx, SideItem, UserReplica};
use synchub::model::{FieldSet, ItemId, Side};
use synchub_connectors::ConnectorError;
use synchub_store::Store;

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "firm_support.rs"]
mod firm_support;
use firm_support::*;

/// The CPU this process (the hub and the in-process emulators, all threads) used in the
/// timed part of a bench's runs, warm-up included: on 2 cores, a run cannot take less wall
/// time than half its CPU.
#[derive(Default)]
struct CpuTally {
    seconds: f64,
    runs: u32,
}

impl CpuTally {
    fn measure<T>(&mut self, run: impl FnOnce() -> T) -> T {
        let before = cpu_seconds_of("self");
        let out = run();
        self.seconds += cpu_seconds_of("self") - before;
        self.runs += 1;
        out
    }

    fn report(&self, bench: &str) {
        let per_run = 1e3 * self.seconds / f64::from(self.runs.max(1));
        println!("{bench}: process CPU per run {per_run:.0} ms (mean of {} runs)", self.runs);
    }
}

fn one_user(c: &mut Criterion) {
    tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut cpu = CpuTally::default();
    c.bench_function("sync_initial_one_user_1000_plus_1000", |b| {
        b.iter_batched(
            || {
                let (graph, crm, g, c) = serve(&rt, seed(1));
                let dir = tempfile::tempdir().expect("dir");
                let hub = hub(&g, &c, dir.path(), rt.handle().clone());
                (graph, crm, dir, hub)
            },
            |(graph, crm, dir, hub)| {
                let report = cpu.measure(|| hub.sync_user(&pair(1))).expect("initial sync");
                assert_eq!(report.log.matched.len(), SHARED);
                assert!(report.errors.is_empty(), "{:?}", report.errors);
                (graph, crm, dir, hub)
            },
            BatchSize::PerIteration,
        )
    });
    cpu.report("sync_initial_one_user_1000_plus_1000");

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

/// A side that keeps every batch of writes made through it.
struct Recording<S> {
    side: S,
    batches: Vec<Vec<PushOp>>,
}

impl<S: ContactReplica> ContactReplica for Recording<S> {
    fn side(&self) -> Side {
        self.side.side()
    }
    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        self.side.pull(cursor)
    }
    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        self.batches.push(vec![op.clone()]);
        self.side.push(op)
    }
    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        self.batches.push(ops.to_vec());
        self.side.push_batch(ops)
    }
    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        self.side.read_back(op)
    }
}

/// Make `batches`' writes through `side`, checking every answer.
fn replay(side: &mut dyn ContactReplica, batches: &[Vec<PushOp>]) {
    for batch in batches {
        for answer in side.push_batch(batch) {
            answer.expect("write");
        }
    }
}

/// The user's two sides over fresh clients for the emulators at these URLs.
fn sides(graph_url: &str, crm_url: &str, rt: &tokio::runtime::Runtime) -> (GraphSide, CrmSide) {
    let (graph, crm) = clients(graph_url, crm_url);
    let set = FieldSet::all();
    (GraphSide::new(graph, rt.handle().clone(), "m1", set), CrmSide::new(crm, rt.handle().clone(), "u1", set))
}

/// The initial sync's wire work alone, beside the whole initial sync (the first bench).
/// The emulators' ids, versions and change keys depend only on the seed and the order of
/// requests, so the recorded writes apply to every fresh pair of emulators; each answer
/// is checked.
fn wire_only(c: &mut Criterion) {
    tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (_graph, _crm, graph_url, crm_url) = serve(&rt, seed(1));
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let (graph, crm) = sides(&graph_url, &crm_url, &rt);
    let mut graph = Recording { side: graph, batches: Vec::new() };
    let mut crm = Recording { side: crm, batches: Vec::new() };
    let replica = UserReplica::load(&store, "u1").expect("replica");
    let opts = RunOptions::new(RunCtx::all_fields(Utc::now()));
    let (_, report) = run_user(&store, "u1", replica, [&mut graph, &mut crm], opts).expect("initial sync");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let writes = [&graph.batches, &crm.batches].map(|b| b.iter().map(Vec::len).sum::<usize>());
    assert_eq!(writes, [1_500, 1_500], "the initial sync's writes per side");
    let batches = [graph.batches, crm.batches];
    let mut cpu = CpuTally::default();

    c.bench_function("sync_initial_wire_only_one_user", |b| {
        b.iter_batched(
            || {
                let (graph, crm, graph_url, crm_url) = serve(&rt, seed(1));
                (graph, crm, sides(&graph_url, &crm_url, &rt))
            },
            |(graph, crm, (mut g, mut c))| {
                cpu.measure(|| {
                    let mut both: [&mut dyn ContactReplica; 2] = [&mut g, &mut c];
                    for (side, pull) in pull_all(&mut both, &[None, None]) {
                        assert_eq!(pull.expect("pull").items.len(), PER_SIDE, "{side}");
                    }
                    std::thread::scope(|scope| {
                        let crm_side = scope.spawn(|| replay(&mut c, &batches[1]));
                        replay(&mut g, &batches[0]);
                        crm_side.join().expect("CRM writes");
                    });
                });
                (graph, crm)
            },
            BatchSize::PerIteration,
        )
    });
    cpu.report("sync_initial_wire_only_one_user");
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(20));
    targets = one_user, wire_only
}
criterion_main!(benches);
