//! A test world: two in-memory sides on one clock, a store (in memory or sled on disk) and
//! the hub's replica, which a "crash" drops.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use synchub::engine::matching::InitialMatch;
use synchub::engine::memory::{Fault, MemorySide};
use synchub::engine::{run_user, EngineError, RunOptions, RunReport};
use synchub::merge::{RunCtx, UserReplica};
use synchub::model::{ContactFields, HubContactId, Side};
use synchub_store::{MemKv, Store};

pub const USER: &str = "u1";

/// Reopen sled as a restarted process would: sled's own I/O threads may hold the directory
/// lock for a moment after the old handle is dropped, so wait for it (at most 5 s).
fn reopen(dir: &std::path::Path) -> Store {
    let mut tries = 0;
    loop {
        match Store::open(dir) {
            Ok(store) => return store,
            Err(e) if tries < 500 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("reopen sled: {e}"),
        }
    }
}

/// Simulated crashes panic on purpose; keep them out of the output, and every other panic in.
fn quiet_simulated_crashes() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let msg = info.payload().downcast_ref::<&str>().copied().unwrap_or("");
            if !msg.starts_with("simulated crash") {
                default(info);
            }
        }));
    });
}

pub enum Backend {
    Memory,
    Sled(tempfile::TempDir),
}

pub struct World {
    pub clock: Arc<AtomicI64>,
    pub sides: [MemorySide; 2],
    pub backend: Backend,
    pub store: Store,
    pub replica: Option<UserReplica>,
}

impl World {
    pub fn new(on_disk: bool) -> World {
        let clock = Arc::new(AtomicI64::new(1_700_000_000_000));
        let (backend, store) = if on_disk {
            let dir = tempfile::tempdir().expect("tempdir");
            let store = Store::open(dir.path()).expect("open sled");
            (Backend::Sled(dir), store)
        } else {
            let kv = MemKv::new();
            (Backend::Memory, Store::in_memory(kv))
        };
        let sides = [MemorySide::new(Side::Exchange, clock.clone()), MemorySide::new(Side::Crm, clock.clone())];
        World { clock, sides, backend, store, replica: None }
    }

    pub fn side(&mut self, side: Side) -> &mut MemorySide {
        &mut self.sides[side.index()]
    }

    pub fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.clock.load(std::sync::atomic::Ordering::SeqCst)).unwrap_or_default()
    }

    fn options(&self) -> RunOptions {
        // The model's property is the union of both sides; pairing by identity is tested on
        // its own (tests/it/sync.rs).
        // The model has its own mass changes; the guard is tested in tests/it/sync.rs.
        RunOptions {
            matching: InitialMatch::None,
            guard: None,
            ..RunOptions::new(RunCtx { deterministic_ids: true, ..RunCtx::all_fields(self.now()) })
        }
    }

    /// One run for the user; the replica is loaded from the store when a crash dropped it.
    pub fn run(&mut self) -> RunReport {
        self.try_run().expect("run")
    }

    /// One run that may fail; a failed run's replica is dropped, as the hub drops it.
    pub fn try_run(&mut self) -> Result<RunReport, EngineError> {
        let opts = self.options();
        let replica = self.take_replica();
        let [ex, crm] = &mut self.sides;
        let outcome = run_user(&self.store, USER, replica, [ex, crm], opts);
        for s in &mut self.sides {
            s.clear_faults();
        }
        let (replica, report) = outcome?;
        self.replica = Some(replica);
        Ok(report)
    }

    /// A run that dies at the `at`-th push to `side` (before or after the side applied it):
    /// everything in memory is dropped, the store is reopened from disk, and the hub starts
    /// again (settling what the crash left unconfirmed, as it does at start-up).
    pub fn crash_run(&mut self, side: Side, at: usize, after: bool) {
        let fault = if after { Fault::CrashAfter } else { Fault::CrashBefore };
        let mut script = vec![None; at];
        script.push(Some(fault));
        self.side(side).script(script);
        let opts = self.options();
        let replica = self.take_replica();
        let [ex, crm] = &mut self.sides;
        quiet_simulated_crashes();
        let outcome = catch_unwind(AssertUnwindSafe(|| run_user(&self.store, USER, replica, [ex, crm], opts)));
        if let Ok(r) = outcome {
            r.expect("run");
        }
        for s in &mut self.sides {
            s.clear_faults();
        }
        self.restart();
    }

    /// Drop every in-memory structure and reopen the store.
    pub fn restart(&mut self) {
        self.replica = None;
        if let Backend::Sled(dir) = &self.backend {
            // Close the old handle before reopening (sled locks the directory).
            self.store = Store::in_memory(MemKv::new());
            self.store = reopen(dir.path());
        }
        let opts = self.options();
        let [ex, crm] = &mut self.sides;
        let mut sides: [&mut dyn synchub::engine::ContactReplica; 2] = [ex, crm];
        let replica = synchub::engine::open_user(&self.store, USER, &mut sides, &opts.ctx).expect("open user");
        self.replica = Some(replica);
    }

    /// The replica in memory, or the user loaded from the store after a crash.
    fn take_replica(&mut self) -> UserReplica {
        match self.replica.take() {
            Some(r) => r,
            None => UserReplica::load(&self.store, USER).expect("load replica"),
        }
    }

    pub fn replica(&mut self) -> &mut UserReplica {
        self.replica.get_or_insert_with(|| UserReplica::load(&self.store, USER).expect("load replica"))
    }

    /// The document's live contacts.
    pub fn live(&mut self) -> HashMap<HubContactId, ContactFields> {
        let replica = self.replica();
        let mut out = HashMap::new();
        for hub in replica.doc.contact_ids() {
            let obj = replica.doc.contact_obj(hub).expect("listed contact has an object");
            let c = replica.doc.read(&obj, None);
            if !c.deleted {
                out.insert(hub, c.fields);
            }
        }
        out
    }
}
