//! The run driver: the thin I/O shell around the merge core (STYLE.md 6). It pulls, hands
//! observations to [`crate::merge`], pushes in batches and keeps the store in step:
//!
//! - observations and the cursors that produced them are committed in one transaction
//!   (a cursor advances only once its observations are durable);
//! - every planned push is written as an intent in that same transaction, and outcomes are
//!   committed per batch of [`PUSH_BATCH`], so a crash between a push and its bookkeeping
//!   is recognised on restart (the intent says what was pushed) instead of duplicating or
//!   losing anything;
//! - after a push error the item is read back before anything is decided.
//!
//! Sides are [`ContactReplica`]s; [`memory::MemorySide`] is an in-memory one for the demo,
//! tests and benches. The Graph and CRM connectors implement the same contract.

pub mod matching;
pub mod memory;
pub mod sample;

use std::collections::{BTreeSet, HashSet};

use synchub_connectors::{ConnectorError, ErrorKind};
use synchub_store::{Store, UserWrite};

use crate::merge::{
    materialise, ItemChange, Merge, MergeError, Observed, PushKind, PushOp, PushOutcome, RunCtx, RunLog, Shadow,
    SideItem, UserReplica,
};
use crate::model::{FieldSet, HubContactId, ItemId, Side};

/// Pushes per store transaction (DESIGN "Durability").
pub const PUSH_BATCH: usize = 200;

/// What a pull returned.
#[derive(Clone, Debug, Default)]
pub struct Pull {
    /// Changed items since the cursor.
    pub items: Vec<Observed>,
    /// Where the next pull starts.
    pub cursor: String,
    /// Whether this was a full listing (no cursor, or a resync): linked items missing from
    /// it are gone.
    pub full: bool,
}

/// One side as the engine drives it.
pub trait ContactReplica: Send {
    /// Which side this is.
    fn side(&self) -> Side;
    /// Changes since `cursor` (everything when `None`). A cursor the side no longer knows
    /// fails with [`ErrorKind::ResyncRequired`].
    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError>;
    /// Make one write, idempotent by the op's hub id (a create stamps it on the item).
    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError>;
    /// Make several writes (a side may send them together or in parallel); one result per
    /// op, in order.
    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        ops.iter().map(|op| self.push(op)).collect()
    }
    /// The item `op` concerns as the side holds it now: by item id, or for a create by the
    /// hub id stamped on it. `None`: no such item.
    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError>;
}

/// A pull made before the run (the hub pulls before loading a user): the cursor it was
/// made from and its answer.
pub type EarlyPull = (Option<String>, Result<Pull, ConnectorError>);

/// A side whose first pull was already made: the run's pull from the same cursor gets that
/// answer; everything else goes to the side.
pub struct Prefetched<'a> {
    side: &'a mut dyn ContactReplica,
    early: Option<EarlyPull>,
}

impl<'a> Prefetched<'a> {
    /// `side`, with the answer of a pull already made (`None`: none was).
    pub fn new(side: &'a mut dyn ContactReplica, early: Option<EarlyPull>) -> Prefetched<'a> {
        Prefetched { side, early }
    }
}

impl ContactReplica for Prefetched<'_> {
    fn side(&self) -> Side {
        self.side.side()
    }

    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        match self.early.take() {
            Some((from, answer)) if from.as_deref() == cursor => answer,
            _ => self.side.pull(cursor),
        }
    }

    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        self.side.push(op)
    }

    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        self.side.push_batch(ops)
    }

    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        self.side.read_back(op)
    }
}

/// Pull every side from its cursor, each in its own thread (the services answer at the
/// same time); the answers in the order of `sides`.
pub fn pull_all(
    sides: &mut [&mut dyn ContactReplica],
    cursors: &[Option<String>; 2],
) -> Vec<(Side, Result<Pull, ConnectorError>)> {
    in_parallel(sides.iter_mut().collect(), |s| {
        let side = s.side();
        (side, pull(*s, cursors[side.index()].as_deref()))
    })
}

/// `work(item)` for each item, the first on this thread and each other in a thread of its
/// own, with the run's span (its user, SPEC A5); the results in the order of `items`. A
/// panic in any of them goes on in the caller.
fn in_parallel<T: Send, R: Send>(items: Vec<T>, work: impl Fn(T) -> R + Sync) -> Vec<R> {
    let mut items = items.into_iter();
    let Some(first) = items.next() else { return Vec::new() };
    std::thread::scope(|scope| {
        let work = &work;
        let handles: Vec<_> = items
            .map(|item| {
                let span = tracing::Span::current();
                scope.spawn(move || span.in_scope(|| work(item)))
            })
            .collect();
        let mut results = vec![work(first)];
        for h in handles {
            results.push(h.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)));
        }
        results
    })
}

/// Created / updated / deleted on one side.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Items created.
    pub created: u32,
    /// Items updated.
    pub updated: u32,
    /// Items deleted.
    pub deleted: u32,
}

impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "+{} ~{} -{}", self.created, self.updated, self.deleted)
    }
}

/// What a run did.
#[derive(Debug, Default)]
pub struct RunReport {
    /// Per side (indexed by [`Side::index`]).
    pub counts: [Counts; 2],
    /// Pushes that did not apply (they stay pending and are retried next run).
    pub failed_pushes: u32,
    /// Side failures met (pull errors, push errors after read-back).
    pub errors: Vec<(Side, ConnectorError)>,
    /// Minted, adopted, resurrected, matched contacts and conflicts.
    pub log: RunLog,
    /// Items new on both sides that may be the same person but were not paired (SPEC C3).
    pub possible_duplicates: Vec<matching::PossibleDuplicate>,
    /// Every write the run planned (all of them for a dry run or a held run).
    pub plan: Vec<Planned>,
    /// Set when the guard held the run: nothing was written.
    pub held: Option<Held>,
}

/// What stops a run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The merge core or the store failed; nothing uncommitted is kept.
    #[error(transparent)]
    Merge(#[from] MergeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] synchub_store::StoreError),
    /// A store write of this run failed, so this later one was not applied ([`Turn`]).
    #[error("store: not written, an earlier write of this run failed")]
    EarlierWriteFailed,
}

/// The per-run settings.
#[derive(Clone, Copy, Debug)]
pub struct RunOptions {
    /// Fields per side and the clock.
    pub ctx: RunCtx,
    /// Plan every contact instead of only the touched ones (after a rebuild or discard).
    pub full: bool,
    /// How items new on both sides are paired (SPEC C3, X1).
    pub matching: matching::InitialMatch,
    /// Plan only: nothing is written to the store or either side (SPEC X6). The replica
    /// handed back holds the plan's bookkeeping and must be dropped.
    pub dry_run: bool,
    /// The mass-change guard (SPEC X5); `None` when a held run is released.
    pub guard: Option<Guard>,
    /// Restore these sides from the document (a held run was discarded, SPEC X5): what
    /// they hold is not taken as edits; where they differ from the document they are
    /// written back, and what they lost is made again. Needs a full listing of the side.
    pub restore: [bool; 2],
}

impl RunOptions {
    /// A normal run: identity matching, the default guard.
    pub fn new(ctx: RunCtx) -> RunOptions {
        RunOptions {
            ctx,
            full: false,
            matching: matching::InitialMatch::Identity,
            dry_run: false,
            guard: Some(Guard::default()),
            restore: [false; 2],
        }
    }
}

/// SPEC X5: a run is held before anything is written when it would update or delete more
/// of a side's contacts than both `max_changes` and `max_percent` of that side's list
/// (first-sync creates do not count), or when a side that held contacts shows none.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Guard {
    pub max_changes: usize,
    pub max_percent: usize,
}

impl Default for Guard {
    fn default() -> Self {
        Guard { max_changes: 10, max_percent: 10 }
    }
}

/// One write a run planned, for dry runs and held runs (SPEC X5, X6).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Planned {
    pub side: Side,
    /// `create`, `update` or `delete`.
    pub op: String,
    pub contact: HubContactId,
    pub item: Option<ItemId>,
    /// The values the side is to hold (create, update).
    pub fields: crate::model::ContactFields,
}

/// Why a run was held (SPEC X5).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Held {
    /// The sides whose changes tripped the guard.
    pub sides: Vec<Side>,
    /// What, in words.
    pub reason: String,
}

/// Run one user's sync: recover, pull, observe, resolve, materialise, advance.
///
/// The replica is taken by value and handed back only when the run succeeds: after an
/// error, what it holds in memory may be ahead of the store (or half-changed), so it is
/// dropped, and the next run loads the user again from the store, which is always
/// consistent.
pub fn run_user(
    store: &Store,
    user: &str,
    mut replica: UserReplica,
    sides: [&mut dyn ContactReplica; 2],
    opts: RunOptions,
) -> Result<(UserReplica, RunReport), EngineError> {
    match run(store, user, &mut replica, sides, opts) {
        Ok(report) => Ok((replica, report)),
        Err(e) => {
            tracing::error!(user, error = %e, "run failed; the user's state is reloaded from the store next time");
            Err(e)
        }
    }
}

/// Load a user from the store and settle what a crash left unconfirmed, as the hub does
/// before a user's first run after a start.
pub fn open_user(
    store: &Store,
    user: &str,
    sides: &mut [&mut dyn ContactReplica; 2],
    ctx: &RunCtx,
) -> Result<UserReplica, EngineError> {
    let mut replica = UserReplica::load(store, user)?;
    recover(store, user, &mut replica, sides, ctx)?;
    Ok(replica)
}

fn run(
    store: &Store,
    user: &str,
    replica: &mut UserReplica,
    sides: [&mut dyn ContactReplica; 2],
    opts: RunOptions,
) -> Result<RunReport, EngineError> {
    let mut report = RunReport::default();
    let [exchange, crm] = sides;
    let mut sides: [&mut dyn ContactReplica; 2] = [exchange, crm];
    if !opts.dry_run {
        recover(store, user, replica, &mut sides, &opts.ctx)?;
    }
    // What the guard weighs changes against: the contacts each side held, less those with a
    // write already planned by an earlier run (it passed the guard then; a resumed run is
    // not a mass change).
    let linked_before: [HashSet<crate::model::HubContactId>; 2] = Side::BOTH.map(|s| {
        let state = replica.side(s);
        state.by_item.values().copied().filter(|hub| !state.intents.contains_key(hub)).collect()
    });
    let held_before = Side::BOTH.map(|s| replica.side(s).by_item.len());

    // Both sides are pulled at the same time, each in its own thread.
    let cursors = Side::BOTH.map(|side| replica.side(side).cursor.clone());
    let pulls = pull_all(&mut sides, &cursors);
    let mut pulled: Vec<(Side, Pull)> = Vec::new();
    for (side, result) in pulls {
        match result {
            Ok(p) => pulled.push((side, p)),
            Err(e) => {
                tracing::warn!(user, %side, error = %e, "pull failed; that side is skipped this run");
                report.errors.push((side, e));
            }
        }
    }

    for (side, p) in &mut pulled {
        if opts.restore[side.index()] {
            restore(replica, *side, p, opts.ctx.fields[side.index()]);
        }
    }
    let plan_all = opts.full || opts.restore.iter().any(|r| *r);

    let mut pairs = Vec::new();
    let mut awaiting = Vec::new();
    if opts.matching == matching::InitialMatch::Identity {
        if let [(Side::Exchange, e), (Side::Crm, c)] = pulled.as_slice() {
            let (found, duplicates) = matching::find_pairs(replica, &e.items, &c.items);
            report.possible_duplicates = duplicates;
            pairs = found;
        }
        let taken: HashSet<ItemId> = pairs.iter().flat_map(|(e, c)| [e.clone(), c.clone()]).collect();
        for (side, p) in &pulled {
            let (found, duplicates) = matching::find_awaiting(replica, *side, &p.items, &taken);
            report.possible_duplicates.extend(duplicates);
            awaiting.push((*side, found));
        }
        for d in &report.possible_duplicates {
            tracing::info!(user, key = %d.key, exchange = d.exchange.len(), crm = d.crm.len(), "possible duplicates, not paired");
        }
    }
    let mut merge = Merge::new(replica, opts.ctx);
    merge.pair(pairs);
    for (side, found) in awaiting {
        merge.pair_existing(side, found);
    }
    for (side, p) in &mut pulled {
        let mut items = std::mem::take(&mut p.items);
        if p.full {
            items.extend(vanished(merge.replica(), *side, &items));
        }
        merge.observe(*side, items)?;
    }
    merge.resolve()?;
    let touched: BTreeSet<_> = merge.touched().clone();
    report.log = merge.finish();
    for (side, p) in &pulled {
        replica.set_cursor(*side, Some(p.cursor.clone()));
    }

    // Plan both sides now and write every planned push as an intent, in the same
    // transaction as the observations, their cursors and the conflicts they raised: a crash
    // anywhere after this leaves a complete to-do list.
    // A side whose pull failed gets its intents too (its to-do list), but no pushes: an
    // update could overwrite an edit the hub has not seen.
    let mut requests = Vec::new();
    for side in Side::BOTH {
        let mut candidates: BTreeSet<_> = touched.clone();
        candidates.extend(materialise::pending(replica, side));
        let pull = pulled.iter().find(|(s, _)| *s == side).map(|(_, p)| p);
        if plan_all || pull.is_some_and(|p| p.full) {
            candidates.extend(replica.doc.contact_ids());
        }
        let set = opts.ctx.fields[side.index()];
        requests.push(materialise::SidePlan { side, set, candidates, pulled: pull.is_some() });
    }
    let mut plans = Vec::new();
    for (request, ops) in requests.iter().zip(materialise::plan_sides(replica, &requests)) {
        for op in &ops {
            materialise::intend(replica, op);
        }
        // Never push over an attempt whose outcome is still unknown (its read-back failed
        // at start-up): the side may hold that attempt's values, and a second push would
        // make the shadow lie about them. It is settled first, on a later run.
        let (ops, unknown): (Vec<_>, Vec<_>) =
            ops.into_iter().partition(|op| !replica.side(op.side).intents.get(&op.hub).is_some_and(|i| i.attempted));
        for op in &unknown {
            tracing::warn!(user, side = %op.side, contact = %op.hub, "an earlier push is unconfirmed; this one waits");
        }
        if pulled.iter().any(|(s, _)| *s == request.side) {
            plans.push((request.side, ops));
        }
    }
    report.plan = plans
        .iter()
        .flat_map(|(_, ops)| ops)
        .map(|op| Planned {
            side: op.side,
            op: op.kind.name().to_string(),
            contact: op.hub,
            item: op.item.clone(),
            fields: op.fields.clone(),
        })
        .collect();
    if opts.dry_run {
        return Ok(report);
    }
    if let Some(held) = opts.guard.and_then(|g| guard(&g, replica, &plans, &linked_before, held_before)) {
        tracing::warn!(user, reason = %held.reason, "mass-change guard: the run is held, nothing written (SPEC X5)");
        report.held = Some(held);
        return Ok(report);
    }
    let mut write = replica.take_write()?;
    for c in &report.log.conflicts {
        write.journal(CONFLICT, c.at.timestamp_millis(), encode_record(c)?);
    }
    for (old, new) in &report.log.split {
        let event = IdentitySplit { old: *old, new: *new, at: opts.ctx.now };
        write.journal(IDENTITY_SPLIT, opts.ctx.now.timestamp_millis(), encode_record(&event)?);
    }
    for hub in &report.log.resurrected {
        let event = Resurrection { contact: *hub, at: opts.ctx.now };
        write.journal(RESURRECTION, opts.ctx.now.timestamp_millis(), encode_record(&event)?);
    }
    store_write(store, user, replica, write)?;

    push_sides(store, user, replica, &mut sides, plans, opts.ctx.fields, &mut report)?;
    store.flush()?;
    Ok(report)
}

/// Whether `plans` trip the guard (SPEC X5), and why.
fn guard(
    g: &Guard,
    replica: &UserReplica,
    plans: &[(Side, Vec<PushOp>)],
    before: &[HashSet<crate::model::HubContactId>; 2],
    held_before: [usize; 2],
) -> Option<Held> {
    let mut sides = Vec::new();
    let mut reasons = Vec::new();
    for side in Side::BOTH {
        let list = held_before[side.index()];
        if list > 0 && replica.side(side).by_item.is_empty() {
            // The emptied side is the one to restore if the run is discarded.
            sides.push(side);
            reasons.push(format!("{side} held {list} contacts and now shows none"));
            continue;
        }
        let changes = plans
            .iter()
            .filter(|(s, _)| *s == side)
            .flat_map(|(_, ops)| ops)
            // Deletes, and updates that change values, of contacts the side held before this
            // run: creates, and stamps written on items whose values stay, are not mass
            // changes.
            .filter(|op| before[side.index()].contains(&op.hub))
            .filter(|op| match op.kind {
                PushKind::Create => false,
                PushKind::Delete => true,
                PushKind::Update => replica
                    .entry(side, op.hub)
                    .is_none_or(|e| !e.shadow.fields().equivalent_on(&op.fields, FieldSet::all())),
            })
            .count();
        if changes > g.max_changes && changes * 100 > g.max_percent * list.max(1) {
            sides.push(side.other());
            reasons.push(format!(
                "{changes} updates and deletes to {side}, more than {} and {}% of its {list}",
                g.max_changes, g.max_percent
            ));
        }
    }
    sides.sort();
    sides.dedup();
    (!reasons.is_empty()).then(|| Held { sides, reason: reasons.join("; ") })
}

/// Restore `side` from the document (a discarded held run): linked items it still lists
/// get their current values as shadow (so where they differ from the document, the
/// document's values are pushed); linked items it no longer lists are unlinked (so they
/// are made again). Only new, unlinked items are observed.
fn restore(replica: &mut UserReplica, side: Side, pull: &mut Pull, set: FieldSet) {
    let listed: std::collections::HashMap<ItemId, crate::merge::SideItem> = pull
        .items
        .iter()
        .filter_map(|o| match &o.change {
            ItemChange::Upsert(item) => Some((o.item.clone(), item.clone())),
            ItemChange::Removed => None,
        })
        .collect();
    let heads = replica.doc.heads();
    let linked: Vec<(crate::model::HubContactId, ItemId)> =
        replica.side(side).by_item.iter().map(|(item, hub)| (*hub, item.clone())).collect();
    for (hub, item) in &linked {
        let Some(mut entry) = replica.entry(side, *hub).cloned() else { continue };
        match listed.get(item) {
            Some(found) => {
                entry.shadow = Shadow::new(&found.fields.restricted(set));
                entry.etag = found.etag.clone();
                entry.stamped = found.stamp == Some(*hub);
            }
            None => {
                entry.previous = entry.item.take();
                entry.etag = None;
                entry.stamped = false;
            }
        }
        entry.base = heads.clone();
        replica.set_entry(side, *hub, entry);
    }
    let was_linked: HashSet<&ItemId> = linked.iter().map(|(_, item)| item).collect();
    pull.items.retain(|o| !was_linked.contains(&o.item));
    pull.full = false;
}

/// Linked items a full listing no longer shows: they were deleted.
fn vanished(replica: &UserReplica, side: Side, listed: &[Observed]) -> Vec<Observed> {
    let seen: HashSet<&ItemId> = listed.iter().map(|o| &o.item).collect();
    replica
        .side(side)
        .by_item
        .keys()
        .filter(|item| !seen.contains(item))
        .map(|item| Observed { item: item.clone(), change: ItemChange::Removed })
        .collect()
}

fn pull(side: &mut dyn ContactReplica, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
    match side.pull(cursor) {
        Err(e) if e.kind == ErrorKind::ResyncRequired => {
            tracing::info!(side = %side.side(), "cursor expired; listing everything again");
            let mut p = side.pull(None)?;
            p.full = true;
            Ok(p)
        }
        Ok(mut p) => {
            p.full |= cursor.is_none();
            Ok(p)
        }
        Err(e) => Err(e),
    }
}

/// The journal kind of conflict records.
pub const CONFLICT: &str = "conflict";

/// The journal kind of identity-split records (SPEC C10).
pub const IDENTITY_SPLIT: &str = "identity_split";

/// An Outlook contact renamed to a different person, split from the old one (SPEC C10:
/// "the event is recorded").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct IdentitySplit {
    /// The old person's contact (gone from the user's lists; the CRM record stays).
    pub old: HubContactId,
    /// The new person's contact, linked to the Outlook item.
    pub new: HubContactId,
    /// When.
    pub at: chrono::DateTime<chrono::Utc>,
}

/// Every identity split recorded for `user`, oldest first (SPEC C10).
pub fn identity_splits(store: &Store, user: &str) -> Result<Vec<IdentitySplit>, EngineError> {
    read_journal(store, user, IDENTITY_SPLIT)
}

/// The journal kind of resurrection records.
pub const RESURRECTION: &str = "resurrection";

/// A contact brought back because an edit beat a delete, or a side restored it (SPEC X3:
/// "the event is recorded").
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Resurrection {
    /// The contact.
    pub contact: crate::model::HubContactId,
    /// When the run decided it.
    pub at: chrono::DateTime<chrono::Utc>,
}

pub(crate) fn encode_record<T: serde::Serialize>(record: &T) -> Result<Vec<u8>, EngineError> {
    postcard::to_allocvec(record).map_err(|e| MergeError::Malformed(format!("encoding a journal record: {e}")).into())
}

pub(crate) fn read_journal<T: serde::de::DeserializeOwned>(
    store: &Store,
    user: &str,
    kind: &str,
) -> Result<Vec<T>, EngineError> {
    store
        .journal(user, kind)?
        .iter()
        .map(|b| {
            postcard::from_bytes(b).map_err(|e| MergeError::Malformed(format!("decoding a {kind} record: {e}")).into())
        })
        .collect()
}

/// Every conflict recorded for `user`, oldest first (SPEC X2).
pub fn conflicts(store: &Store, user: &str) -> Result<Vec<crate::merge::Conflict>, EngineError> {
    read_journal(store, user, CONFLICT)
}

/// Every resurrection recorded for `user`, oldest first (SPEC X3).
pub fn resurrections(store: &Store, user: &str) -> Result<Vec<Resurrection>, EngineError> {
    read_journal(store, user, RESURRECTION)
}

fn commit(store: &Store, user: &str, replica: &mut UserReplica) -> Result<(), EngineError> {
    let write = replica.take_write()?;
    store_write(store, user, replica, write)
}

/// Commit `write`, durable on return, compacting the document when its chunks call for it.
fn store_write(
    store: &Store,
    user: &str,
    replica: &UserReplica,
    write: synchub_store::UserWrite,
) -> Result<(), EngineError> {
    if !write.is_empty() {
        let stats = store.commit(user, write)?;
        if stats.needs_compaction() {
            store.compact(user, &replica.doc.save())?;
        }
    }
    Ok(())
}

/// What both sides' push workers share: the replica, the report, and the contacts whose
/// CRM create has not been answered yet (their Outlook push waits for the ContactID).
struct PushShared<'a> {
    replica: &'a mut UserReplica,
    report: &'a mut RunReport,
    awaiting_crm: HashSet<HubContactId>,
    /// A worker failed: the other stops at its next batch.
    failed: bool,
}

/// Push both sides' plans, each side in its own thread (the two services work at the same
/// time), one batch of [`PUSH_BATCH`] at a time per side. The CRM's creates are awaited by
/// the Outlook pushes of the same contacts (SPEC X9: the Outlook item is stamped with the
/// CRM ContactID), and by nothing else. Each side's pushes go in [`push_order`].
fn push_sides(
    store: &Store,
    user: &str,
    replica: &mut UserReplica,
    sides: &mut [&mut dyn ContactReplica; 2],
    plans: Vec<(Side, Vec<PushOp>)>,
    fields: [FieldSet; 2],
    report: &mut RunReport,
) -> Result<(), EngineError> {
    let awaiting_crm: HashSet<HubContactId> = plans
        .iter()
        .filter(|(side, _)| *side == Side::Crm)
        .flat_map(|(_, ops)| ops.iter().filter(|op| op.kind == PushKind::Create).map(|op| op.hub))
        .collect();
    let mut plans = plans;
    let mut work: Vec<(&mut dyn ContactReplica, Vec<PushOp>)> = Vec::new();
    for s in sides.iter_mut() {
        let side = s.side();
        let Some(at) = plans.iter().position(|(p, _)| *p == side) else { continue };
        let (_, mut ops) = plans.swap_remove(at);
        ops.sort_by_key(|op| push_order(replica, op, &awaiting_crm));
        if !ops.is_empty() {
            work.push((&mut **s, ops));
        }
    }
    let shared = std::sync::Mutex::new(PushShared { replica, report, awaiting_crm, failed: false });
    let answered = std::sync::Condvar::new();
    let order = std::sync::Mutex::new(false);
    let meet = Meet { shared: &shared, answered: &answered, order: &order };
    let worker = |side: &mut dyn ContactReplica, ops: Vec<PushOp>| {
        let set = fields[side.side().index()];
        let mut finished = Finished { meet: &meet, crm: side.side() == Side::Crm, ok: false };
        let result = push_worker(store, user, &meet, side, ops, set);
        finished.ok = result.is_ok();
        result
    };
    let results = in_parallel(work, |(side, ops)| worker(side, ops));
    results.into_iter().collect()
}

/// Where `op` goes in its side's pushes (lowest first). Deletes and updates go before the
/// creates of contacts the side held before, so such a create never meets a copy that still
/// carries its hub id (a retried create adopts the item carrying it). A contact the side
/// never held has no copy there to meet: its create goes first on the CRM side (the Outlook
/// pushes of the same contact wait for its ContactID, SPEC X9), and on the Outlook side
/// before the updates that wait for a CRM create, so the Outlook worker works while the CRM
/// makes them.
fn push_order(replica: &UserReplica, op: &PushOp, awaiting_crm: &HashSet<HubContactId>) -> u8 {
    let never_held = || replica.entry(op.side, op.hub).is_none_or(|e| e.item.is_none() && e.previous.is_none());
    match (op.side, op.kind) {
        (Side::Crm, PushKind::Create) if never_held() => 0,
        (Side::Crm, PushKind::Create) => 2,
        (Side::Crm, _) => 1,
        (Side::Exchange, PushKind::Create) if never_held() => 1,
        (Side::Exchange, PushKind::Create) => 3,
        (Side::Exchange, _) if awaiting_crm.contains(&op.hub) => 2,
        (Side::Exchange, _) => 0,
    }
}

/// A push worker's end, also by a panic (a simulated crash): when the CRM's worker ends,
/// nothing more will be answered by the CRM, so whoever waits goes on (without the
/// ContactID if the create failed; the next run stamps it); when a worker fails, the other
/// stops at its next batch.
struct Finished<'m, 's, 'a> {
    meet: &'m Meet<'s, 'a>,
    crm: bool,
    ok: bool,
}

impl Drop for Finished<'_, '_, '_> {
    fn drop(&mut self) {
        if self.crm || !self.ok {
            let mut s = lock(self.meet.shared);
            s.failed |= !self.ok;
            s.awaiting_crm.clear();
            self.meet.answered.notify_all();
        }
    }
}

/// Where the two push workers meet: what they share, the signal that the CRM answered,
/// and the turn to commit (see [`Turn`]).
struct Meet<'s, 'a> {
    shared: &'s std::sync::Mutex<PushShared<'a>>,
    answered: &'s std::sync::Condvar,
    order: &'s std::sync::Mutex<bool>,
}

fn lock<'m, 'a>(shared: &'m std::sync::Mutex<PushShared<'a>>) -> std::sync::MutexGuard<'m, PushShared<'a>> {
    // A panic while holding it is a bug that unwinds the run anyway; the state is dropped.
    shared.lock().unwrap_or_else(|p| p.into_inner())
}

/// One side's pushes, batch by batch: mark the batch's intents attempted with one attempt
/// mark (durable), push, record the answers and release the mark (durable with the next
/// commit or flush: a crash before leaves the mark, whose intents are then attempted and
/// settled by reading back). The store commits run outside the
/// replica's lock, in turn (see [`Turn`]); they add no document changes, so they never
/// call for compacting it.
fn push_worker(
    store: &Store,
    user: &str,
    meet: &Meet<'_, '_>,
    side: &mut dyn ContactReplica,
    ops: Vec<PushOp>,
    set: FieldSet,
) -> Result<(), EngineError> {
    let Meet { shared, answered, order } = *meet;
    let mut rest: std::collections::VecDeque<PushOp> = ops.into();
    while !rest.is_empty() {
        let mut batch = Vec::new();
        let mark;
        {
            let mut s = lock(shared);
            loop {
                if s.failed {
                    return Ok(());
                }
                while batch.len() < PUSH_BATCH {
                    match rest.front() {
                        Some(op) if op.side == Side::Crm || !s.awaiting_crm.contains(&op.hub) => {
                            batch.extend(rest.pop_front());
                        }
                        _ => break,
                    }
                }
                if !batch.is_empty() {
                    break;
                }
                s = answered.wait(s).unwrap_or_else(|p| p.into_inner());
            }
            let replica = &mut *s.replica;
            mark = materialise::attempt(replica, side.side(), &batch);
            for op in &mut batch {
                op.peer = replica.entry(op.side.other(), op.hub).and_then(|e| e.item.clone());
            }
            let (write, turn) = (replica.take_write()?, Turn::take(order));
            drop(s);
            turn.commit(store, user, write, Durable::Now)?;
        }
        let answers = side.push_batch(&batch);
        let mut s = lock(shared);
        let PushShared { replica, report, awaiting_crm, .. } = &mut *s;
        for (op, answer) in batch.iter().zip(answers) {
            let outcome = match answer {
                Ok(outcome) => materialise::record(replica, op, outcome),
                Err(e) if e.kind == ErrorKind::PreconditionFailed => {
                    // The item moved on since the pull: never overwrite; the next pull sees it.
                    tracing::info!(user, side = %op.side, contact = %op.hub, "item changed since the pull; pushed next run");
                    materialise::not_applied(replica, op.side, op.hub);
                    PushOutcome::NotApplied
                }
                Err(e) => {
                    tracing::warn!(user, side = %op.side, contact = %op.hub, op = op.kind.name(), error = %e, "push failed; reading back");
                    let outcome = apply_settled(replica, op, settle(side, op, set));
                    if outcome == PushOutcome::NotApplied {
                        report.errors.push((op.side, e));
                    }
                    outcome
                }
            };
            count(report, op, &outcome);
            if op.side == Side::Crm {
                awaiting_crm.remove(&op.hub);
            }
        }
        if let Some(mark) = mark {
            replica.release_attempts(side.side(), mark);
        }
        let (write, turn) = (replica.take_write()?, Turn::take(order));
        drop(s);
        answered.notify_all();
        turn.commit(store, user, write, Durable::WithNext)?;
    }
    Ok(())
}

/// The turn to commit what was taken from the replica: taken while the replica's lock is
/// held and kept until the commit returns, so writes reach the store in the order they were
/// taken (a contact's record is written whole; an older one must never land last), while
/// the other worker goes on with the replica. Nobody waits for the replica holding it.
///
/// Once a write fails, no later one is applied: each write was taken after the ones before
/// it (the pending count it carries counts their intents), so the store must hold the run's
/// writes up to some point, never a later one without an earlier. The failed run's replica
/// is dropped and the next run loads what the store holds.
struct Turn<'o>(std::sync::MutexGuard<'o, bool>);

/// When a committed write must be durable.
#[derive(Clone, Copy)]
enum Durable {
    /// On return (an attempt mark, written before its pushes).
    Now,
    /// With the next durable write or flush (what the pushes' answers settled).
    WithNext,
}

impl<'o> Turn<'o> {
    fn take(order: &'o std::sync::Mutex<bool>) -> Turn<'o> {
        // A panic while a commit held the turn: whether it wrote is unknown, so nothing after.
        Turn(order.lock().unwrap_or_else(|p| {
            let mut failed = p.into_inner();
            *failed = true;
            failed
        }))
    }

    fn commit(mut self, store: &Store, user: &str, write: UserWrite, durable: Durable) -> Result<(), EngineError> {
        if *self.0 {
            return Err(EngineError::EarlierWriteFailed);
        }
        let result = match durable {
            Durable::Now => store.commit(user, write),
            Durable::WithNext => store.commit_deferred(user, write),
        };
        if let Err(e) = &result {
            // Logged here: the run may report the other worker's refusal instead.
            tracing::error!(user, error = %e, "store write failed; the run's later writes are refused");
        }
        *self.0 = result.is_err();
        result.map(drop).map_err(EngineError::from)
    }
}

fn count(report: &mut RunReport, op: &PushOp, outcome: &PushOutcome) {
    let c = &mut report.counts[op.side.index()];
    match outcome {
        PushOutcome::Created { .. } => c.created += 1,
        PushOutcome::Updated { .. } => c.updated += 1,
        PushOutcome::Deleted => c.deleted += 1,
        PushOutcome::NotApplied => report.failed_pushes += 1,
    }
}

/// What reading an item back says of a push whose answer was lost or an error.
#[derive(Debug, PartialEq)]
enum Settled {
    /// The side holds the push's result.
    Applied(PushOutcome),
    /// The side does not hold it.
    NotApplied,
    /// The read-back failed too: nobody knows.
    Unknown,
}

/// Decide a push whose answer was lost or an error, from what the side holds now.
fn settle(side: &mut dyn ContactReplica, op: &PushOp, set: FieldSet) -> Settled {
    match side.read_back(op) {
        Ok(Some((item, found))) => match op.kind {
            // An item carrying our hub id exists: our create went through with op.fields.
            PushKind::Create => {
                let etag = found.fields.equivalent_on(&op.fields, set).then_some(found.etag).flatten();
                Settled::Applied(PushOutcome::Created { item, etag })
            }
            // An update writes the values and the stamps: both must show.
            PushKind::Update if found.stamp == Some(op.hub) && found.fields.equivalent_on(&op.fields, set) => {
                Settled::Applied(PushOutcome::Updated { etag: found.etag })
            }
            _ => Settled::NotApplied,
        },
        Ok(None) if op.kind == PushKind::Delete => Settled::Applied(PushOutcome::Deleted),
        Ok(None) => Settled::NotApplied,
        Err(e) => {
            tracing::warn!(side = %op.side, contact = %op.hub, error = %e, "read-back failed; the push stays unconfirmed");
            Settled::Unknown
        }
    }
}

/// Apply what a read-back said.
fn apply_settled(replica: &mut UserReplica, op: &PushOp, settled: Settled) -> PushOutcome {
    match settled {
        Settled::Applied(outcome) => materialise::record(replica, op, outcome),
        Settled::NotApplied => {
            materialise::not_applied(replica, op.side, op.hub);
            PushOutcome::NotApplied
        }
        Settled::Unknown => PushOutcome::NotApplied,
    }
}

/// Settle pushes a crash left unconfirmed (their intents), by reading each item back.
fn recover(
    store: &Store,
    user: &str,
    replica: &mut UserReplica,
    sides: &mut [&mut dyn ContactReplica; 2],
    ctx: &RunCtx,
) -> Result<(), EngineError> {
    for s in sides.iter_mut() {
        let side = s.side();
        let set = ctx.fields[side.index()];
        let hubs = materialise::unconfirmed(replica, side);
        if hubs.is_empty() {
            continue;
        }
        for hub in hubs {
            let Some(intent) = replica.side(side).intents.get(&hub).cloned() else { continue };
            let entry = replica.entry(side, hub).cloned().unwrap_or_default();
            let op = PushOp {
                side,
                hub,
                kind: intent.kind,
                item: entry.item,
                etag: entry.etag,
                fields: intent.fields.fields(),
                encoded: intent.fields,
                heads: intent.heads,
                peer: replica.entry(side.other(), hub).and_then(|e| e.item.clone()),
                previous: entry.previous.clone(),
                shadow: Some((entry.shadow.clone(), entry.stamped)),
            };
            let settled = settle(*s, &op, set);
            tracing::info!(user, %side, contact = %hub, op = op.kind.name(), ?settled, "settled a push a crash left unconfirmed");
            apply_settled(replica, &op, settled);
        }
        commit(store, user, replica)?;
    }
    Ok(())
}
