//! The replica model test (issue 2, DESIGN "The core idea"), SPEC C1, C4, C5, N1, X2, X3.
//!
//! Property: for any interleaving of user creates, field edits, deletes and restores of
//! deleted items (a new id, the old stamps) on both sides,
//! sync runs with failed pushes and lost acknowledgements, crashes at any push (before or
//! after the side applied it, dropping everything in memory and reopening the store) and
//! expired cursors, two quiet runs bring both sides and the document to the same contacts:
//! - each live contact of the document is held exactly once by each side, with the
//!   document's values, and each side holds nothing else (no duplicate);
//! - the second quiet run changes nothing;
//! - no field keeps concurrent values;
//! - no edit is lost: where a field's final value is not its last edit, a conflict was
//!   recorded for that contact and field;
//! - no contact disappears unless some side deleted it, and a delete made by a side that
//!   had seen every edit (and after which the other side did not edit) stands;
//! - a contact deleted and live again has a recorded resurrection.
//!
//! An edit is what changed an item relative to what the hub last knew the side held; an
//! edit the side itself deleted before any run pulled it is superseded by that delete.

use std::collections::{HashMap, HashSet};

use automerge::ReadDoc;
use proptest::prelude::*;
use synchub::engine::conflicts;
use synchub::engine::memory::Fault;
use synchub::model::{equivalent, ContactFields, Field, FieldValue, HubContactId, ItemId, Side};

use super::world::{World, USER};

const FIELDS: [Field; 6] =
    [Field::GivenName, Field::Surname, Field::Email1, Field::Company, Field::Categories, Field::Private];

#[derive(Clone, Debug)]
enum Op {
    Create {
        side: Side,
        values: Vec<(usize, u8)>,
    },
    Edit {
        side: Side,
        pick: usize,
        field: usize,
        value: Option<u8>,
    },
    Delete {
        side: Side,
        pick: usize,
    },
    /// The user brings back an item they deleted, with its stamps, under a new id.
    Restore {
        side: Side,
        pick: usize,
    },
    Run {
        faults: [Vec<Option<Fault>>; 2],
    },
    Crash {
        side: Side,
        at: usize,
        after: bool,
    },
    SideDown {
        side: Side,
    },
    ExpireCursor {
        side: Side,
    },
}

fn value(field: Field, v: u8) -> FieldValue {
    match field {
        Field::Private => FieldValue::Flag(v.is_multiple_of(2)),
        Field::Categories => FieldValue::List(vec![format!("cat{}", v % 3)]),
        Field::Email1 => FieldValue::Text(format!("{}@Example.com", ["a", "b", "c"][usize::from(v % 3)])),
        _ => FieldValue::Text(["Ann", "Bob", "Cy"][usize::from(v % 3)].to_string()),
    }
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Exchange), Just(Side::Crm)]
}

fn faults() -> impl Strategy<Value = Vec<Option<Fault>>> {
    prop::collection::vec(
        prop_oneof![6 => Just(None), 2 => Just(Some(Fault::Fail)), 2 => Just(Some(Fault::LostAck))],
        0..6,
    )
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (side(), prop::collection::vec((0..FIELDS.len(), any::<u8>()), 1..4)).prop_map(|(side, values)| Op::Create { side, values }),
        6 => (side(), any::<usize>(), 0..FIELDS.len(), prop::option::weighted(0.8, any::<u8>()))
            .prop_map(|(side, pick, field, value)| Op::Edit { side, pick, field, value }),
        2 => (side(), any::<usize>()).prop_map(|(side, pick)| Op::Delete { side, pick }),
        1 => (side(), any::<usize>()).prop_map(|(side, pick)| Op::Restore { side, pick }),
        4 => (faults(), faults()).prop_map(|(a, b)| Op::Run { faults: [a, b] }),
        1 => (side(), 0..4usize, any::<bool>()).prop_map(|(side, at, after)| Op::Crash { side, at, after }),
        1 => side().prop_map(|side| Op::SideDown { side }),
        1 => side().prop_map(|side| Op::ExpireCursor { side }),
    ]
}

struct Edit {
    side: Side,
    item: ItemId,
    field: Field,
    value: Option<FieldValue>,
    at: i64,
    /// The contact the hub linked the item to when it pulled the edit.
    hub: Option<HubContactId>,
}

struct Delete {
    /// The contact, by the item's stamp or the hub's link at the time of the delete.
    hub: Option<HubContactId>,
    side: Side,
    /// The item as it was, for a restore.
    gone: Option<synchub::engine::memory::MemItem>,
    restored: bool,
}

struct Harness {
    world: World,
    /// Edits no run has pulled yet.
    pending: Vec<Edit>,
    /// Edits a run pulled.
    edits: Vec<Edit>,
    deletes: Vec<Delete>,
    /// Items users brought back: one restored while the hub had re-created its contact is
    /// a second copy the user made, and gets a hub id of its own.
    restored_items: HashSet<(Side, ItemId)>,
    /// Deletes judged informed, by contact; voided when the other side edits it later.
    informed: HashMap<HubContactId, Side>,
}

impl Harness {
    fn pick(&self, side: Side, pick: usize) -> Option<ItemId> {
        let items = self.world.sides[side.index()].items();
        (!items.is_empty()).then(|| items.keys().nth(pick % items.len()).cloned()).flatten()
    }

    fn now(&self) -> i64 {
        self.world.now().timestamp_millis()
    }

    fn apply(&mut self, op: Op) {
        match op {
            Op::Create { side, values } => {
                let fields: ContactFields = values.iter().map(|(f, v)| (FIELDS[*f], value(FIELDS[*f], *v))).collect();
                let item = self.world.side(side).user_create(fields.clone());
                let at = self.now();
                for (f, v) in fields.iter() {
                    self.pending.push(Edit {
                        side,
                        item: item.clone(),
                        field: f,
                        value: Some(v.clone()),
                        at,
                        hub: None,
                    });
                }
            }
            Op::Edit { side, pick, field, value: v } => {
                let Some(item) = self.pick(side, pick) else { return };
                let field = FIELDS[field];
                let v = v.map(|v| value(field, v)).and_then(FieldValue::normalise);
                let before = self.world.sides[side.index()].items()[&item].fields.get(field).cloned();
                self.world.side(side).user_edit(&item, field, v.clone());
                if equivalent(field, before.as_ref(), v.as_ref()) {
                    return; // no change of value: nothing for the hub to see
                }
                let at = self.now();
                if let Some(hub) = self.world.sides[side.index()].items()[&item].stamp {
                    self.informed.retain(|h, deleter| !(*h == hub && *deleter != side));
                }
                self.pending.push(Edit { side, item, field, value: v, at, hub: None });
            }
            Op::Delete { side, pick } => {
                let Some(item) = self.pick(side, pick) else { return };
                let informed = self.is_informed(side, &item);
                let hub = self.hub_of(side, &item);
                let gone = self.world.side(side).user_delete(&item);
                // The side's own edits of the item that no run pulled are superseded by its
                // delete: the hub never saw them.
                self.pending.retain(|e| !(e.side == side && e.item == item));
                if std::env::var("DEBUG_CASE").is_ok() {
                    eprintln!("   delete {side} {item} hub {:?} informed {informed}", hub.map(|h| h.to_string()));
                }
                if let (true, Some(hub)) = (informed, hub) {
                    self.informed.insert(hub, side);
                }
                self.deletes.push(Delete { hub, side, gone, restored: false });
            }
            Op::Restore { side, pick } => {
                // Only a true restore: no other item of the side carries the contact's stamp
                // (restoring a second copy of a live contact is out of this model).
                let stamps: HashSet<HubContactId> =
                    self.world.sides[side.index()].items().values().filter_map(|it| it.stamp).collect();
                let candidates: Vec<usize> = (0..self.deletes.len())
                    .filter(|i| {
                        let d = &self.deletes[*i];
                        let stamp = d.gone.as_ref().and_then(|g| g.stamp);
                        d.side == side && !d.restored && stamp.is_some_and(|s| !stamps.contains(&s))
                    })
                    .collect();
                if candidates.is_empty() {
                    return;
                }
                let d = &mut self.deletes[candidates[pick % candidates.len()]];
                d.restored = true;
                let (hub, gone) = (d.hub, d.gone.clone());
                if let Some(gone) = gone {
                    // What the restored item holds beyond what the hub last knew of the
                    // contact on this side counts as the user's edits, made now.
                    // (That is what the side last held of it; a side that never held it is
                    // compared with the document as it stands.)
                    let known = hub.and_then(|h| {
                        let replica = self.world.replica();
                        match replica.entry(side, h) {
                            Some(e) if !e.base.is_empty() => Some(e.shadow.fields()),
                            _ => replica.doc.contact_obj(h).map(|obj| replica.doc.read(&obj, None).fields),
                        }
                    });
                    let fields = gone.fields.clone();
                    let id = self.world.side(side).user_restore(gone);
                    let at = self.now();
                    for f in FIELDS {
                        let was = known.as_ref().and_then(|k| k.get(f));
                        if !equivalent(f, fields.get(f), was) {
                            self.pending.push(Edit {
                                side,
                                item: id.clone(),
                                field: f,
                                value: fields.get(f).cloned(),
                                at,
                                hub: None,
                            });
                        }
                    }
                    self.restored_items.insert((side, id));
                }
                // Bringing the contact back is an edit after any delete of it.
                if let Some(hub) = hub {
                    self.informed.remove(&hub);
                }
            }
            Op::Run { faults } => {
                for (s, f) in Side::BOTH.into_iter().zip(faults) {
                    self.world.side(s).script(f);
                }
                self.observe(&Side::BOTH);
                self.world.run();
                self.link_observed();
            }
            Op::Crash { side, at, after } => {
                // Crashes strike at pushes, after the observations were committed.
                self.observe(&Side::BOTH);
                self.world.crash_run(side, at, after);
                self.link_observed();
            }
            Op::SideDown { side } => {
                self.observe(&[side.other()]);
                self.world.side(side).down = true;
                self.world.run();
                self.world.side(side).down = false;
                self.link_observed();
            }
            Op::ExpireCursor { side } => self.world.side(side).expire_cursors(),
        }
    }

    /// After a run: the contact each pulled edit landed in, by the hub's link (a restored copy
    /// may still carry the stamp of the contact it was copied from).
    fn link_observed(&mut self) {
        let mut edits = std::mem::take(&mut self.edits);
        for e in edits.iter_mut().filter(|e| e.hub.is_none()) {
            e.hub = self.hub_of(e.side, &e.item);
        }
        self.edits = edits;
    }

    /// A run is about to pull `sides`: their users' edits become visible to the hub, as far
    /// as they changed what the hub believes the item holds (an edit undone before the run
    /// is no edit).
    fn observe(&mut self, sides: &[Side]) {
        let (now, later): (Vec<_>, Vec<_>) =
            std::mem::take(&mut self.pending).into_iter().partition(|e| sides.contains(&e.side));
        self.pending = later;
        for e in now {
            let Some(item) = self.world.sides[e.side.index()].items().get(&e.item).cloned() else { continue };
            let current = item.fields.get(e.field).cloned();
            let live_items: HashSet<ItemId> = self.world.sides[e.side.index()].items().keys().cloned().collect();
            let replica = self.world.replica();
            // What the hub believes the item holds: its shadow when linked; for an unlinked
            // item carrying a stamp (a restored one), what the side last held of that contact.
            let hub = replica.side(e.side).hub_for(&e.item);
            let believed = match hub {
                Some(h) => replica.entry(e.side, h).map(|en| en.shadow.fields().get(e.field).cloned()),
                None => {
                    // The contact the stamp names, unless its item still exists on this side
                    // (then this is a copy, and new).
                    item.stamp
                        .and_then(|h| replica.entry(e.side, h))
                        .filter(|en| !en.base.is_empty() && en.item.as_ref().is_none_or(|i| !live_items.contains(i)))
                        .map(|en| en.shadow.fields().get(e.field).cloned())
                }
            };
            let visible = match believed {
                Some(b) => !equivalent(e.field, b.as_ref(), current.as_ref()),
                None => true,
            };
            if visible && equivalent(e.field, current.as_ref(), e.value.as_ref()) {
                self.edits.push(e);
            }
        }
    }

    /// Whether the deleting side had seen every edit of the contact: its base shows every
    /// current op of the contact, and the other side holds no edit the hub has not pulled.
    fn is_informed(&mut self, side: Side, item: &ItemId) -> bool {
        let Some(hub) = self.world.sides[side.index()].items()[item].stamp else { return false };
        // Another item of this side carrying the same stamp (a restored copy) lives on as
        // the contact: deleting this one does not delete the contact.
        if self.world.sides[side.index()].items().iter().any(|(id, it)| id != item && it.stamp == Some(hub)) {
            return false;
        }
        // Every item of the other side carrying the contact's stamp: exactly the one the hub
        // links, unchanged since the hub pulled it (a second one, such as a restored copy the
        // hub has not seen, is a change it has not seen either).
        let others: Vec<(ItemId, ContactFields)> = self.world.sides[side.other().index()]
            .items()
            .iter()
            .filter(|(_, it)| it.stamp == Some(hub))
            .map(|(id, it)| (id.clone(), it.fields.clone()))
            .collect();
        let replica = self.world.replica();
        let Some(obj) = replica.doc.contact_obj(hub) else { return false };
        let (Some(entry), Some(other_entry)) = (replica.entry(side, hub), replica.entry(side.other(), hub)) else {
            return false;
        };
        if entry.item.as_ref() != Some(item)
            || !replica.side(side).intents.is_empty()
            || !replica.side(side.other()).intents.is_empty()
        {
            return false;
        }
        let [(other_id, other_item)] = others.as_slice() else { return false };
        if other_entry.item.as_ref() != Some(other_id)
            || !other_item.equivalent_on(&other_entry.shadow.fields(), synchub::model::FieldSet::all())
        {
            return false;
        }
        let doc = replica.doc.automerge();
        let keys: Vec<String> = doc.map_range(&obj, ..).map(|i| i.key.to_string()).collect();
        keys.iter().all(|k| {
            let seen: HashSet<_> = doc
                .get_all_at(&obj, k.as_str(), &entry.base)
                .unwrap_or_default()
                .into_iter()
                .map(|(_, id)| id)
                .collect();
            doc.get_all(&obj, k.as_str()).unwrap_or_default().into_iter().all(|(_, id)| seen.contains(&id))
        })
    }

    /// The contact an item belongs to: the hub's link to it, else its stamp (a restored copy
    /// carries the stamp of the contact it was copied from until the hub links it anew).
    fn hub_of(&mut self, side: Side, item: &ItemId) -> Option<HubContactId> {
        let linked = self.world.replica().side(side).hub_for(item);
        linked.or_else(|| self.world.sides[side.index()].stamp_history.get(item).and_then(|h| h.last().copied()))
    }

    fn check(mut self) -> Result<(), TestCaseError> {
        self.observe(&Side::BOTH);
        self.world.run();
        self.link_observed();
        self.world.run();
        let heads = self.world.replica().doc.heads();
        let quiet = self.world.run();
        prop_assert_eq!(quiet.counts, [synchub::engine::Counts::default(); 2], "the second quiet run pushed something");
        prop_assert_eq!(&self.world.replica().doc.heads(), &heads, "the second quiet run changed the document");

        let live = self.world.live();
        for side in Side::BOTH {
            let mut held: HashMap<HubContactId, usize> = HashMap::new();
            for (id, item) in self.world.sides[side.index()].items() {
                let hub =
                    item.stamp.ok_or_else(|| TestCaseError::fail(format!("{side} item {id} was never linked")))?;
                *held.entry(hub).or_default() += 1;
                let doc = live
                    .get(&hub)
                    .ok_or_else(|| TestCaseError::fail(format!("{side} item {id} holds {hub}, which is not live")))?;
                prop_assert!(
                    item.fields.equivalent_on(doc, synchub::model::FieldSet::all()),
                    "{side} {id}: {:?} != doc {:?}",
                    item.fields,
                    doc
                );
            }
            for hub in live.keys() {
                prop_assert_eq!(
                    held.get(hub).copied(),
                    Some(1),
                    "{} holds live {} {:?} times",
                    side,
                    hub,
                    held.get(hub)
                );
            }
            for (item, stamps) in &self.world.sides[side.index()].stamp_history {
                if self.restored_items.contains(&(side, item.clone())) {
                    continue;
                }
                prop_assert!(stamps.len() == 1, "{side} item {item} was stamped with several hub ids: a duplicate");
            }
        }

        let replica = self.world.replica();
        let objs: Vec<_> =
            replica.doc.contact_ids().into_iter().map(|h| (h, replica.doc.contact_obj(h).expect("object"))).collect();
        let doc = replica.doc.automerge();
        for (hub, obj) in objs {
            for item in doc.map_range(&obj, ..) {
                prop_assert!(!item.conflict, "{hub}.{} keeps concurrent values", item.key);
            }
        }

        let conflicts: HashSet<(HubContactId, Field)> =
            conflicts(&self.world.store, USER).expect("conflicts").into_iter().map(|c| (c.contact, c.field)).collect();
        let edits = std::mem::take(&mut self.edits);
        let hubs: Vec<_> = edits.iter().map(|e| e.hub.or_else(|| self.hub_of(e.side, &e.item))).collect();
        let mut last: HashMap<(HubContactId, Field), &Edit> = HashMap::new();
        for (e, hub) in edits.iter().zip(hubs) {
            let Some(hub) = hub else { continue };
            let slot = last.entry((hub, e.field)).or_insert(e);
            if e.at >= slot.at {
                *slot = e;
            }
        }
        let deleted: HashSet<HubContactId> = self.deletes.iter().filter_map(|d| d.hub).collect();
        let unrestored: HashSet<HubContactId> =
            self.deletes.iter().filter(|d| !d.restored).filter_map(|d| d.hub).collect();
        let restored: HashSet<HubContactId> =
            self.deletes.iter().filter(|d| d.restored).filter_map(|d| d.hub).collect();
        for ((hub, field), e) in &last {
            match live.get(hub) {
                Some(fields) => {
                    let kept = equivalent(*field, fields.get(*field), e.value.as_ref());
                    prop_assert!(
                        kept || conflicts.contains(&(*hub, *field)),
                        "edit of {hub}.{field} to {:?} on {} lost without a conflict (final {:?})",
                        e.value,
                        e.side,
                        fields.get(*field)
                    );
                }
                None => prop_assert!(deleted.contains(hub), "{hub} disappeared without a delete"),
            }
        }
        for side in Side::BOTH {
            for hubs in self.world.sides[side.index()].stamp_history.values() {
                for hub in hubs {
                    prop_assert!(live.contains_key(hub) || deleted.contains(hub), "{hub} disappeared without a delete");
                }
            }
        }
        let resurrected: HashSet<HubContactId> = synchub::engine::resurrections(&self.world.store, USER)
            .expect("resurrections")
            .into_iter()
            .map(|r| r.contact)
            .collect();
        for hub in live.keys().filter(|h| unrestored.contains(h) && !restored.contains(h)) {
            prop_assert!(
                resurrected.contains(hub),
                "{hub} was deleted and is live again, but no resurrection was recorded"
            );
        }
        for (hub, deleter) in &self.informed {
            prop_assert!(
                !live.contains_key(hub),
                "{hub} was deleted on {deleter} after seeing every edit, yet came back"
            );
        }
        Ok(())
    }
}

fn run_case(on_disk: bool, ops: Vec<Op>) -> Result<(), TestCaseError> {
    let mut h = Harness {
        world: World::new(on_disk),
        pending: Vec::new(),
        edits: Vec::new(),
        deletes: Vec::new(),
        informed: HashMap::new(),
        restored_items: HashSet::new(),
    };
    for op in ops {
        h.apply(op);
    }
    h.check()
}

fn config(cases: u32) -> ProptestConfig {
    ProptestConfig { cases, max_shrink_time: 60_000, max_shrink_iters: 2_000, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config(10_000))]
    /// 10,000 cases against the in-memory store adapter.
    #[test]
    fn replicas_converge_in_memory(ops in prop::collection::vec(op(), 1..40)) {
        run_case(false, ops)?;
    }
}

proptest! {
    #![proptest_config(config(300))]
    /// 300 cases against sled on disk (crashes reopen the directory).
    #[test]
    fn replicas_converge_on_sled(ops in prop::collection::vec(op(), 1..40)) {
        run_case(true, ops)?;
    }
}

// Cases the property test found, kept as named, deterministic regressions.

/// The same value typed on both sides (here: an e-mail the CRM set and later cleared, typed
/// again in Outlook after the clear) is an edit like any other, not an echo: the later
/// Outlook edit wins (SPEC C5).
#[test]
fn c5_a_value_typed_again_after_the_other_side_cleared_it_is_kept() {
    use Op::*;
    let (e, c) = (Side::Exchange, Side::Crm);
    run_case(
        false,
        vec![
            Create { side: c, values: vec![(0, 0)] },
            Run { faults: [vec![None], vec![Some(Fault::Fail)]] },
            Create { side: e, values: vec![(0, 0)] },
            Create { side: c, values: vec![(0, 0)] },
            Create { side: e, values: vec![(0, 0)] },
            Run { faults: [vec![], vec![None]] },
            Create { side: e, values: vec![(0, 0)] },
            Delete { side: e, pick: 3359089824053624305 },
            Delete { side: c, pick: 109866128708966632 },
            Edit { side: c, pick: 8620777476899980403, field: 2, value: Some(232) },
            SideDown { side: e },
            Edit { side: c, pick: 6678007761330892046, field: 2, value: None },
            Create { side: e, values: vec![(0, 0)] },
            Edit { side: e, pick: 183678549541252190, field: 2, value: Some(112) },
        ],
    )
    .unwrap();
}

/// A side that was down may hold edits older than the document's latest changes: its base
/// must not move up, so those edits stay concurrent (and the conflict is recorded).
#[test]
fn x2_an_edit_held_by_a_side_that_was_down_stays_concurrent() {
    use Op::*;
    let (e, c) = (Side::Exchange, Side::Crm);
    run_case(
        false,
        vec![
            Create { side: e, values: vec![(0, 0)] },
            Edit { side: e, pick: 0, field: 3, value: Some(0) },
            Create { side: c, values: vec![(0, 0)] },
            Edit { side: e, pick: 0, field: 0, value: None },
            Run { faults: [vec![], vec![None]] },
            Edit { side: e, pick: 7285118094484223312, field: 3, value: None },
            Run { faults: [vec![], vec![Some(Fault::Fail)]] },
            Create { side: c, values: vec![(0, 0)] },
            Edit { side: e, pick: 225721062663927104, field: 3, value: Some(0) },
            Edit { side: c, pick: 12069976642444020547, field: 3, value: None },
            Create { side: e, values: vec![(0, 0)] },
            SideDown { side: e },
            Create { side: e, values: vec![(0, 0)] },
        ],
    )
    .unwrap();
}

/// The hub's own resurrection is no edit a later delete could have missed: a side that
/// deletes after seeing every field edit deletes for good (SPEC X3).
#[test]
fn x3_a_delete_after_a_resurrection_stands() {
    use Op::*;
    let (e, c) = (Side::Exchange, Side::Crm);
    run_case(
        false,
        vec![
            Create { side: e, values: vec![(0, 0)] },
            Run { faults: [vec![], vec![None]] },
            Create { side: c, values: vec![(0, 0)] },
            Delete { side: c, pick: 902695870379321185 },
            Delete { side: e, pick: 0 },
            Edit { side: c, pick: 0, field: 0, value: None },
            Run { faults: [vec![], vec![]] },
            Delete { side: e, pick: 0 },
            Delete { side: c, pick: 0 },
            Create { side: e, values: vec![(0, 0)] },
            Create { side: e, values: vec![(0, 0)] },
            SideDown { side: e },
            Delete { side: e, pick: 0 },
        ],
    )
    .unwrap();
}
