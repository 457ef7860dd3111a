//! A committed batch survives a process kill (issue 2; SPEC N1): a child process commits to
//! sled and is killed with SIGKILL; the parent reopens the directory and finds the batch.
//! A store write that fails mid-run leaves a store the next run carries on from (issue 5).

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

use synchub::merge::UserReplica;
use synchub::model::{ContactFields, Field, FieldValue, Side};
use synchub_store::{Batch, Kv, MemKv, Store, StoreError, Tree, UserWrite};

use super::world::{World, USER};

const CHILD: &str = "SYNCHUB_KILL_TEST_DIR";

/// Run by the child process: commit, say so, then wait to be killed.
#[test]
fn kill_child_commits_then_waits() {
    let Ok(dir) = std::env::var(CHILD) else { return }; // only as the child
    let store = Store::open(std::path::Path::new(&dir)).expect("open");
    let mut w = UserWrite::new();
    w.cursor("crm", Some("cursor-after-kill".into()));
    let mut replica = UserReplica::new();
    replica.set_cursor(synchub::model::Side::Exchange, Some("delta-link".into()));
    let replica_write = replica.take_write().expect("write");
    store.commit("u1", w).expect("commit");
    store.commit("u2", replica_write).expect("commit");
    println!("committed");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_committed_batch_survives_sigkill_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "durability::kill_child_commits_then_waits", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let committed = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("committed"));
    assert!(committed, "the child reported its commit");
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap");

    let store = Store::open(dir.path()).expect("reopen after kill");
    let u1 = store.load_user("u1").expect("load");
    assert_eq!(u1.cursors, vec![("crm".to_string(), "cursor-after-kill".to_string())]);
    let u2 = UserReplica::load(&store, "u2").expect("load replica");
    assert_eq!(u2.side(synchub::model::Side::Exchange).cursor.as_deref(), Some("delta-link"));
}

/// The in-memory store, whose `fail_at`-th write (from 1; 0: none) fails unapplied; the
/// writes after it succeed, as after a passing I/O error.
struct FailingKv {
    inner: MemKv,
    writes: AtomicUsize,
    fail_at: usize,
    injected: AtomicBool,
}

impl FailingKv {
    fn new(inner: MemKv, fail_at: usize) -> FailingKv {
        FailingKv { inner, writes: AtomicUsize::new(0), fail_at, injected: AtomicBool::new(false) }
    }

    fn write(&self, batch: &Batch, deferred: bool) -> synchub_store::Result<()> {
        if self.writes.fetch_add(1, Ordering::SeqCst) + 1 == self.fail_at {
            self.injected.store(true, Ordering::SeqCst);
            return Err(StoreError::Transaction("injected write failure".into()));
        }
        if deferred {
            self.inner.apply_deferred(batch)
        } else {
            self.inner.apply(batch)
        }
    }
}

impl Kv for FailingKv {
    fn get(&self, tree: Tree, key: &[u8]) -> synchub_store::Result<Option<Vec<u8>>> {
        self.inner.get(tree, key)
    }
    fn scan_prefix(&self, tree: Tree, prefix: &[u8]) -> synchub_store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_prefix(tree, prefix)
    }
    fn scan_range(
        &self,
        tree: Tree,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> synchub_store::Result<Vec<(Vec<u8>, Vec<u8>)>> {
        self.inner.scan_range(tree, start, end, limit)
    }
    fn last(&self, tree: Tree) -> synchub_store::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.last(tree)
    }
    fn last_below(&self, tree: Tree, end: &[u8]) -> synchub_store::Result<Option<(Vec<u8>, Vec<u8>)>> {
        self.inner.last_below(tree, end)
    }
    fn apply(&self, batch: &Batch) -> synchub_store::Result<()> {
        self.write(batch, false)
    }
    fn apply_deferred(&self, batch: &Batch) -> synchub_store::Result<()> {
        self.write(batch, true)
    }
    fn flush(&self) -> synchub_store::Result<()> {
        self.inner.flush()
    }
    fn next_id(&self) -> synchub_store::Result<u64> {
        self.inner.next_id()
    }
}

/// 300 people only in Outlook and 300 only in the CRM: two push batches and more per side.
fn seeded() -> World {
    let mut world = World::new(false);
    for (side, tag) in [(Side::Exchange, "out"), (Side::Crm, "crm")] {
        for i in 0..300 {
            let mut fields = ContactFields::new();
            fields.set(Field::GivenName, Some(FieldValue::Text(format!("Given{i}"))));
            fields.set(Field::Surname, Some(FieldValue::Text(format!("{tag}{i}"))));
            fields.set(Field::Email1, Some(FieldValue::Text(format!("{tag}{i}@acme.example"))));
            world.side(side).user_create(fields);
        }
    }
    world
}

fn emails(world: &World, side: Side) -> Vec<String> {
    let items = world.sides[side.index()].items().values();
    items.filter_map(|i| i.fields.get(Field::Email1).and_then(FieldValue::as_text)).map(str::to_string).collect()
}

/// SPEC N1: a store write that fails in the middle of a run ends the run, and no write the
/// run took after it lands. So the stored pending count stays the number of intents the
/// contact records hold (the quiet-cycle fast path trusts it to skip loading a user), and
/// the next runs end with both sides holding every person once. Each write of the initial
/// sync is failed in turn.
#[test]
fn n1_a_failed_store_write_keeps_the_pending_count_true_and_the_next_runs_converge() {
    let mut clean = seeded();
    let counting = Arc::new(FailingKv::new(MemKv::new(), 0));
    clean.store = Store::with_kv(counting.clone());
    clean.run();
    let writes = counting.writes.load(Ordering::SeqCst);
    assert!(writes >= 6, "the initial sync writes at least a plan and two batches a side ({writes} writes)");
    let union: BTreeSet<String> = emails(&clean, Side::Exchange).into_iter().collect();
    assert_eq!(union.len(), 600);

    let mut failures = 0;
    for fail_at in 1..=writes {
        let mut world = seeded();
        let kv = MemKv::new();
        let failing = Arc::new(FailingKv::new(kv.clone(), fail_at));
        world.store = Store::with_kv(failing.clone());
        let outcome = world.try_run();
        let injected = failing.injected.load(Ordering::SeqCst);
        // The interleaving of the two push workers may take a write more or fewer.
        assert_eq!(outcome.is_err(), injected, "write {fail_at}: the run fails exactly when a write does");
        failures += usize::from(injected);

        let state = world.store.load_user(USER).expect("load after the failed run");
        let held = state.intents().len();
        assert_eq!(state.pending, held as u64, "write {fail_at}: the stored pending count");
        assert_eq!(world.store.user_marks(USER).expect("marks").intents, held);

        world.store = Store::in_memory(kv);
        world.restart();
        world.run();
        let quiet = world.run();
        assert_eq!(quiet.failed_pushes, 0, "write {fail_at}");
        for side in Side::BOTH {
            let held = emails(&world, side);
            let once: BTreeSet<String> = held.iter().cloned().collect();
            assert_eq!(held.len(), once.len(), "write {fail_at}: {side} holds a person twice");
            assert_eq!(once, union, "write {fail_at}: {side} holds every person");
        }
        assert_eq!(world.store.user_marks(USER).expect("marks").intents, 0, "write {fail_at}: nothing pending");
    }
    // The workers' interleaving may take a write or two fewer than the counting run did.
    assert!(failures * 2 >= writes, "{failures} of {writes} writes were failed");
}
