//! Materialise: map the document's live contacts back to a side and push what differs from
//! that side's shadow. A successful push moves the contact's shadow to the pushed values and
//! its base to the heads they were read at; a failed one leaves both as they were.

use std::collections::BTreeSet;

use automerge::ObjId;

use super::doc::Heads;
use super::state::{Intent, PushKind, Shadow, SideEntry, UserReplica};
use crate::model::{ContactFields, FieldSet, HubContactId, ItemId, Side};

/// One planned write to a side.
#[derive(Clone, Debug, PartialEq)]
pub struct PushOp {
    /// The side written to.
    pub side: Side,
    /// The contact (stamped on the item, SPEC X9).
    pub hub: HubContactId,
    /// What to do.
    pub kind: PushKind,
    /// The side's item (update, delete).
    pub item: Option<ItemId>,
    /// The etag seen at pull, for conditional writes.
    pub etag: Option<String>,
    /// The full mapped values the item must hold (create, update).
    pub fields: ContactFields,
    /// `fields`, encoded as a shadow is: made once with them, then kept as the push's
    /// intent and, once the side holds them, as its shadow.
    pub encoded: Shadow,
    /// The heads `fields` were read at.
    pub heads: Heads,
    /// The other side's item linked to the same contact, filled in just before the push
    /// (Outlook items are stamped with the linked CRM ContactID, SPEC X9).
    pub peer: Option<ItemId>,
    /// For a create: the item this side held before it let the contact go, which a side
    /// that keeps it (a CRM firm record off the user's list) takes back instead of making
    /// another.
    pub previous: Option<ItemId>,
    /// The side's copy as last seen (its shadow), and whether it carries the stamps: a side
    /// with no single-item read that finds the item another way (the CRM, by e-mail
    /// address) knows from these what its list-level fields held.
    pub shadow: Option<(Shadow, bool)>,
}

/// What came of a push, after reading back when the answer was an error.
#[derive(Clone, Debug, PartialEq)]
pub enum PushOutcome {
    /// The side made the item.
    Created { item: ItemId, etag: Option<String> },
    /// The side holds the pushed values.
    Updated { etag: Option<String> },
    /// The side no longer holds the item.
    Deleted,
    /// Not applied (error, precondition failed, unknown): shadow and base stay.
    NotApplied,
}

/// Plan the pushes to `side` for `candidates` (contacts written this run, contacts with a
/// pending intent; every contact for a full pass).
pub fn plan(
    replica: &mut UserReplica,
    side: Side,
    set: FieldSet,
    candidates: impl IntoIterator<Item = HubContactId>,
) -> Vec<PushOp> {
    let request = SidePlan { side, set, candidates: candidates.into_iter().collect(), pulled: false };
    plan_sides(replica, std::slice::from_ref(&request)).pop().unwrap_or_default()
}

/// What to plan for one side.
#[derive(Clone, Debug)]
pub struct SidePlan {
    /// The side.
    pub side: Side,
    /// The fields it carries.
    pub set: FieldSet,
    /// The contacts to look at.
    pub candidates: BTreeSet<HubContactId>,
    /// The side was pulled this run, so it holds no edit the hub has not seen: where its copy
    /// matches the document, its base may move up to the current heads. (A side that was
    /// not pulled may hold older edits, which must stay concurrent with newer changes.)
    pub pulled: bool,
}

/// Plan several sides at once, reading each contact from the document once.
pub fn plan_sides(replica: &mut UserReplica, requests: &[SidePlan]) -> Vec<Vec<PushOp>> {
    plan_sides_with(replica, requests, PARALLEL_PLAN)
}

/// [`plan_sides`], read in one thread whatever its size.
#[cfg(test)]
pub fn plan_sides_in_one(replica: &mut UserReplica, requests: &[SidePlan]) -> Vec<Vec<PushOp>> {
    plan_sides_with(replica, requests, usize::MAX)
}

fn plan_sides_with(replica: &mut UserReplica, requests: &[SidePlan], parallel_from: usize) -> Vec<Vec<PushOp>> {
    let heads = replica.doc.heads();
    let all: BTreeSet<HubContactId> = requests.iter().flat_map(|r| r.candidates.iter().copied()).collect();
    let all: Vec<(HubContactId, ObjId)> =
        all.into_iter().filter_map(|hub| replica.doc.contact_obj(hub).map(|obj| (hub, obj))).collect();
    // Reading the document is most of it: a large plan is read in two halves at once.
    let replica_now: &UserReplica = replica;
    let read = |hubs: &[(HubContactId, ObjId)]| plan_some(replica_now, requests, &heads, hubs);
    let planned: Vec<Planned> = if all.len() >= parallel_from {
        let (first, second) = all.split_at(all.len() / 2);
        std::thread::scope(|scope| {
            let other = scope.spawn(|| read(second));
            let mine = read(first);
            vec![mine, other.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic))]
        })
    } else {
        vec![read(&all)]
    };
    let mut out = vec![Vec::new(); requests.len()];
    for part in planned {
        for (ops, more) in out.iter_mut().zip(part.ops) {
            ops.extend(more);
        }
        // Nothing to push: the side's copy matches the document now, so its base moves up
        // to the current heads (it has, in effect, seen everything).
        for (side, hub) in part.seen_all {
            if let Some(mut e) = replica.entry(side, hub).cloned() {
                e.base = heads.clone();
                replica.set_entry(side, hub, e);
            }
        }
    }
    out
}

/// How many contacts a plan must look at before it is read in two threads.
const PARALLEL_PLAN: usize = 512;

/// What planning some contacts found: per request, the pushes; and the (side, contact)
/// whose base moves up to the current heads.
struct Planned {
    ops: Vec<Vec<PushOp>>,
    seen_all: Vec<(Side, HubContactId)>,
}

fn plan_some(replica: &UserReplica, requests: &[SidePlan], heads: &Heads, hubs: &[(HubContactId, ObjId)]) -> Planned {
    let mut planned = Planned { ops: vec![Vec::new(); requests.len()], seen_all: Vec::new() };
    for (hub, obj) in hubs {
        let hub = *hub;
        let view = replica.doc.read(obj, None);
        for (request, ops) in requests.iter().zip(planned.ops.iter_mut()) {
            if !request.candidates.contains(&hub) {
                continue;
            }
            let (side, set) = (request.side, request.set);
            let entry = replica.entry(side, hub);
            let linked = entry.and_then(|e| e.item.clone());
            let kind = match (view.deleted, &linked, entry) {
                (false, None, _) => PushKind::Create,
                (false, Some(_), Some(e)) if !e.stamped || !view.fields.equivalent_on(&e.shadow.fields(), set) => {
                    PushKind::Update
                }
                (true, Some(_), _) => PushKind::Delete,
                (false, Some(_), Some(e)) => {
                    if request.pulled && &e.base != heads {
                        planned.seen_all.push((side, hub));
                    }
                    continue;
                }
                _ => continue,
            };
            let etag = entry.and_then(|e| e.etag.clone());
            let fields = if kind == PushKind::Delete { ContactFields::new() } else { view.fields.restricted(set) };
            let previous = entry.and_then(|e| e.previous.clone());
            let shadow = entry.map(|e| (e.shadow.clone(), e.stamped));
            ops.push(PushOp {
                side,
                hub,
                kind,
                item: linked,
                etag,
                encoded: Shadow::new(&fields),
                fields,
                heads: heads.clone(),
                peer: None,
                previous,
                shadow,
            });
        }
    }
    planned
}

/// Every contact with a pending intent on `side`.
pub fn pending(replica: &UserReplica, side: Side) -> Vec<HubContactId> {
    replica.side(side).intents.keys().copied().collect()
}

/// Every contact whose push to `side` was attempted with an unknown outcome.
pub fn unconfirmed(replica: &UserReplica, side: Side) -> Vec<HubContactId> {
    replica.side(side).intents.iter().filter(|(_, i)| i.attempted).map(|(h, _)| *h).collect()
}

/// Record that `op` is planned (the durable to-do list). An attempted intent already there
/// is kept: its push may have reached the side, and that is what must be reconciled.
pub fn intend(replica: &mut UserReplica, op: &PushOp) {
    if replica.side(op.side).intents.get(&op.hub).is_some_and(|i| i.attempted) {
        return;
    }
    let intent = Intent { kind: op.kind, heads: op.heads.clone(), fields: op.encoded.clone(), attempted: false };
    replica.set_intent(op.side, op.hub, Some(intent));
}

/// Record that `ops`, one batch of `side`'s pushes, are about to be made (committed before
/// they are): one attempt mark for the intents stored as planned (see
/// [`UserReplica::attempt_all`]). The mark, if any, is released with
/// [`UserReplica::release_attempts`] once the outcomes are recorded.
pub fn attempt(replica: &mut UserReplica, side: Side, ops: &[PushOp]) -> Option<u64> {
    let intents = ops
        .iter()
        .map(|op| {
            (op.hub, Intent { kind: op.kind, heads: op.heads.clone(), fields: op.encoded.clone(), attempted: true })
        })
        .collect();
    replica.attempt_all(side, intents)
}

/// Record that the side is known not to have applied the attempted push of `hub`: it is
/// only planned again.
pub fn not_applied(replica: &mut UserReplica, side: Side, hub: HubContactId) {
    if let Some(mut intent) = replica.side(side).intents.get(&hub).cloned() {
        intent.attempted = false;
        replica.set_intent(side, hub, Some(intent));
    }
}

/// Apply a push's outcome to the bookkeeping; returns the outcome as recorded. A create the
/// side answered with an item already linked to another contact (a copy still carrying this
/// contact's hub id, its idempotent create found) is not linked: one item never serves two
/// contacts, and the create stays planned for the next run.
pub fn record(replica: &mut UserReplica, op: &PushOp, outcome: PushOutcome) -> PushOutcome {
    if let PushOutcome::Created { item, .. } = &outcome {
        if replica.side(op.side).hub_for(item).is_some_and(|other| other != op.hub) {
            tracing::warn!(side = %op.side, contact = %op.hub, %item, "create matched a copy linked elsewhere; retried next run");
            not_applied(replica, op.side, op.hub);
            return PushOutcome::NotApplied;
        }
    }
    let stamped_entry = |item: Option<ItemId>, etag: Option<String>| SideEntry {
        item,
        etag,
        shadow: op.encoded.clone(),
        base: op.heads.clone(),
        stamped: true,
        previous: None,
    };
    let entry = match &outcome {
        PushOutcome::NotApplied => return outcome,
        PushOutcome::Created { item, etag } => stamped_entry(Some(item.clone()), etag.clone()),
        PushOutcome::Updated { etag } => stamped_entry(op.item.clone(), etag.clone()),
        // The link goes; the shadow and base stay as the side's last knowledge (see observe).
        PushOutcome::Deleted => match replica.entry(op.side, op.hub) {
            Some(e) => SideEntry { item: None, etag: None, stamped: false, previous: e.item.clone(), ..e.clone() },
            None => SideEntry::default(),
        },
    };
    replica.set_entry(op.side, op.hub, entry);
    replica.set_intent(op.side, op.hub, None);
    if let (PushOutcome::Created { .. }, Side::Crm) = (&outcome, op.side) {
        // A new CRM item: the Outlook copy's CrmContactId stamp is now stale (SPEC X9), so it
        // is stamped again on its next push.
        if let Some(e) = replica.entry(Side::Exchange, op.hub).filter(|e| e.item.is_some() && e.stamped) {
            let e = SideEntry { stamped: false, ..e.clone() };
            replica.set_entry(Side::Exchange, op.hub, e);
        }
    }
    outcome
}
