//! One user's sync end to end (issue 5): the hub drives the real Graph and CRM clients
//! against in-process emulators over loopback, with a sled store on local disk. The user
//! has 1,000 Outlook contacts and 1,000 in the CRM list, 500 of them the same people.
//! Figures: the initial sync (≤ 300 ms) and a run carrying a single change (≤ 20 ms).
//! Beside the initial sync, in the same run, its wire work alone: the same two pulls and
//! the same writes (recorded from a real initial sync) through the same sides, clients and
//! emulators, without the merge, the document or the store: a floor under what this hub's
//! write plan costs on the wire (see `wire_only`).
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
/// timed part of each of a bench's runs, warm-up included: on 2 cores, a run cannot take
/// less wall time than half its CPU. `/proc` counts in ticks of 10 ms.
#[derive(Default)]
struct CpuTally {
    runs: Vec<f64>,
}

impl CpuTally {
    fn measure<T>(&mut self, run: impl FnOnce() -> T) -> T {
        let before = cpu_seconds_of("self");
        let out = run();
        if let (Some(before), Some(after)) = (before, cpu_seconds_of("self")) {
            self.runs.push(after - before);
        }
        out
    }

    /// The median run's CPU, and the mean (nothing when no run was measured: the bench
    /// was filtered out, or `/proc` is not there).
    fn report(&mut self, bench: &str) {
        if self.runs.is_empty() {
            return;
        }
        self.runs.sort_by(f64::total_cmp);
        let median = 1e3 * self.runs[self.runs.len() / 2];
        let mean = 1e3 * self.runs.iter().sum::<f64>() / self.runs.len() as f64;
        println!("{bench}: process CPU per run {median:.0} ms (median of {} runs; mean {mean:.0} ms)", self.runs.len());
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

/// What kind of answer a write got (created, updated, deleted, not applied).
type AnswerKind = std::mem::Discriminant<PushOutcome>;

/// One batch of writes as recorded: the ops, and the kind of answer each got.
type Batch = (Vec<PushOp>, Vec<Option<AnswerKind>>);

/// A side that keeps every batch of writes made through it, with the kind of answer each
/// write got.
struct Recording<S> {
    side: S,
    batches: Vec<Batch>,
}

fn kind(answer: &Result<PushOutcome, ConnectorError>) -> Option<AnswerKind> {
    answer.as_ref().ok().map(std::mem::discriminant)
}

impl<S: ContactReplica> ContactReplica for Recording<S> {
    fn side(&self) -> Side {
        self.side.side()
    }
    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        self.side.pull(cursor)
    }
    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        let answer = self.side.push(op);
        self.batches.push((vec![op.clone()], vec![kind(&answer)]));
        answer
    }
    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        let answers = self.side.push_batch(ops);
        self.batches.push((ops.to_vec(), answers.iter().map(kind).collect()));
        answers
    }
    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        self.side.read_back(op)
    }
}

/// Make `batches`' writes through `side`; each must get the kind of answer it got when
/// recorded (a precondition failure or an idempotent replay would not).
fn replay(side: &mut dyn ContactReplica, batches: &[Batch]) {
    for (ops, kinds) in batches {
        let answers = side.push_batch(ops);
        for ((op, answer), recorded) in ops.iter().zip(&answers).zip(kinds) {
            assert_eq!(kind(answer), *recorded, "{} {}: {answer:?}", op.side, op.hub);
        }
    }
}

/// The initial sync's writes as the hub made them through the two sides, in its batches:
/// recorded from a real initial sync against emulators of the same seed.
fn record_initial_sync(rt: &tokio::runtime::Runtime) -> [Vec<Batch>; 2] {
    let (_graph, _crm, graph_url, crm_url) = serve(rt, seed(1));
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let (graph, crm) = sides(&graph_url, &crm_url, rt);
    let mut graph = Recording { side: graph, batches: Vec::new() };
    let mut crm = Recording { side: crm, batches: Vec::new() };
    let replica = UserReplica::load(&store, "u1").expect("replica");
    let opts = RunOptions::new(RunCtx::all_fields(Utc::now()));
    let (_, report) = run_user(&store, "u1", replica, [&mut graph, &mut crm], opts).expect("initial sync");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    assert_eq!(report.failed_pushes, 0, "the recorded initial sync had failed pushes");
    let recorded = [graph.batches, crm.batches];
    let writes = recorded.each_ref().map(|b| b.iter().map(|(ops, _)| ops.len()).sum::<usize>());
    assert_eq!(writes, [1_500, 1_500], "the initial sync's writes per side");
    let answered = recorded.each_ref().map(|b| b.iter().flat_map(|(_, kinds)| kinds).all(Option::is_some));
    assert_eq!(answered, [true, true], "every recorded write was answered");
    recorded
}

/// The user's two sides over fresh clients for the emulators at these URLs.
fn sides(graph_url: &str, crm_url: &str, rt: &tokio::runtime::Runtime) -> (GraphSide, CrmSide) {
    let (graph, crm) = clients(graph_url, crm_url);
    let set = FieldSet::all();
    (GraphSide::new(graph, rt.handle().clone(), "m1", set), CrmSide::new(crm, rt.handle().clone(), "u1", set))
}

/// The initial sync's wire work alone, beside the whole initial sync (the first bench): the
/// same two full pulls, then the writes the hub made, in its batches, through the same
/// sides, clients and emulators, with no matching, merge, document or store. It bounds
/// from below what this hub's write plan costs on the wire; it is a little lower than what
/// the hub must do, as the Outlook writes here do not wait for the CRM's creates (SPEC X9)
/// and no attempt marks are committed between batches. The recorded writes apply to fresh
/// emulators of the same seed because each updates a seeded item, whose ids, versions and
/// change keys come from the seed, and none refers to an item made during the run (a
/// created item's id also depends on the order of concurrent requests and token fetches).
fn wire_only(c: &mut Criterion) {
    tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let recorded = record_initial_sync(&rt);
    let mut cpu = CpuTally::default();
    c.bench_function("sync_initial_wire_only_one_user", |b| {
        b.iter_batched(
            || {
                let (graph, crm, graph_url, crm_url) = serve(&rt, seed(1));
                (graph, crm, sides(&graph_url, &crm_url, &rt))
            },
            |(graph, crm, (mut graph_side, mut crm_side))| {
                cpu.measure(|| {
                    let mut both: [&mut dyn ContactReplica; 2] = [&mut graph_side, &mut crm_side];
                    for (side, pull) in pull_all(&mut both, &[None, None]) {
                        assert_eq!(pull.expect("pull").items.len(), PER_SIDE, "{side}");
                    }
                    std::thread::scope(|scope| {
                        let crm_writes = scope.spawn(|| replay(&mut crm_side, &recorded[1]));
                        replay(&mut graph_side, &recorded[0]);
                        crm_writes.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                    });
                });
                // Dropped after the timing, as the first bench drops its hub.
                (graph, crm, graph_side, crm_side)
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
