//! Materialise: map the document's live contacts back to a side and push what differs from
//! that side's shadow. A successful push moves the contact's shadow to the pushed values and
//! its base to the heads they were read at; a failed one leaves both as they were.

use super::doc::Heads;
use super::state::{Intent, PushKind, SideEntry, UserReplica};
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
    /// The heads `fields` were read at.
    pub heads: Heads,
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
    let heads = replica.doc.heads();
    let mut ops = Vec::new();
    for hub in candidates {
        let Some(obj) = replica.doc.contact_obj(hub) else { continue };
        let view = replica.doc.read(&obj, None);
        let entry = replica.entry(side, hub);
        let linked = entry.and_then(|e| e.item.clone());
        let kind = match (view.deleted, &linked, entry) {
            (false, None, _) => PushKind::Create,
            (false, Some(_), Some(e)) if !e.stamped || !view.fields.equivalent_on(&e.shadow, set) => PushKind::Update,
            (true, Some(_), _) => PushKind::Delete,
            _ => continue,
        };
        let etag = entry.and_then(|e| e.etag.clone());
        let fields = if kind == PushKind::Delete { ContactFields::new() } else { view.fields.restricted(set) };
        ops.push(PushOp { side, hub, kind, item: linked, etag, fields, heads: heads.clone() });
    }
    ops
}

/// Every contact with a pending intent on `side`.
pub fn pending(replica: &UserReplica, side: Side) -> Vec<HubContactId> {
    replica.side(side).intents.keys().copied().collect()
}

/// Record that `op` is about to be pushed (written before the push).
pub fn intend(replica: &mut UserReplica, op: &PushOp) {
    let intent = Intent { kind: op.kind, heads: op.heads.clone(), fields: op.fields.clone() };
    replica.set_intent(op.side, op.hub, Some(intent));
}

/// Apply a push's outcome to the bookkeeping.
pub fn record(replica: &mut UserReplica, op: &PushOp, outcome: PushOutcome) {
    let stamped_entry = |item: Option<ItemId>, etag: Option<String>| SideEntry {
        item,
        etag,
        shadow: op.fields.clone(),
        base: op.heads.clone(),
        stamped: true,
    };
    let entry = match outcome {
        PushOutcome::NotApplied => return,
        PushOutcome::Created { item, etag } => stamped_entry(Some(item), etag),
        PushOutcome::Updated { etag } => stamped_entry(op.item.clone(), etag),
        PushOutcome::Deleted => {
            SideEntry { item: None, etag: None, shadow: ContactFields::new(), base: op.heads.clone(), stamped: false }
        }
    };
    replica.set_entry(op.side, op.hub, entry);
    replica.set_intent(op.side, op.hub, None);
}
