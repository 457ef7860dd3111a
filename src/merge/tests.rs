//! Unit tests of the merge rules on a replica with no I/O (SPEC C4, C5, X2, X3).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};

use super::*;
use crate::model::{Field, FieldSet, FieldValue, ItemId, Side};

fn at(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000 + secs, 0).unwrap_or_default()
}

fn item(side: Side) -> ItemId {
    ItemId::from_trusted(format!("{side}-1"))
}

fn upsert(side: Side, fields: ContactFields, modified: DateTime<Utc>) -> Observed {
    Observed { item: item(side), change: ItemChange::Upsert(SideItem { fields, modified, etag: None, stamp: None }) }
}

/// `o` as the side shows it after synchub stamped the item with `hub` (SPEC X9).
fn stamped(mut o: Observed, hub: HubContactId) -> Observed {
    if let ItemChange::Upsert(item) = &mut o.change {
        item.stamp = Some(hub);
    }
    o
}

fn jane() -> ContactFields {
    ContactFields::new()
        .with_text(Field::GivenName, "Jane")
        .with_text(Field::Surname, "Tarnoff")
        .with_text(Field::Company, "Acme")
}

/// One contact made on Exchange and pushed to the CRM: both sides in step.
fn synced() -> (UserReplica, HubContactId) {
    let mut replica = UserReplica::new();
    let ctx = RunCtx::all_fields(at(0));
    let mut merge = Merge::new(&mut replica, ctx);
    merge.observe(Side::Exchange, vec![upsert(Side::Exchange, jane(), at(0))]).unwrap();
    merge.resolve().unwrap();
    let hub = *merge.touched().iter().next().unwrap();
    drop(merge);
    for side in Side::BOTH {
        for op in materialise::plan(&mut replica, side, ctx.fields[side.index()], [hub]) {
            let outcome = match op.kind {
                PushKind::Create => PushOutcome::Created { item: item(side), etag: None },
                _ => PushOutcome::Updated { etag: None },
            };
            materialise::record(&mut replica, &op, outcome);
        }
    }
    (replica, hub)
}

/// Observe the given changes in the given side order, resolve, and return the contact as
/// the document shows it, with the run's log.
fn run(replica: &mut UserReplica, hub: HubContactId, changes: &[(Side, Observed)], now: i64) -> (DocContact, RunLog) {
    let mut merge = Merge::new(replica, RunCtx::all_fields(at(now)));
    for (side, o) in changes {
        merge.observe(*side, vec![o.clone()]).unwrap();
    }
    merge.resolve().unwrap();
    let log = merge.finish();
    let obj = replica.doc.contact_obj(hub).unwrap();
    (replica.doc.read(&obj, None), log)
}

fn company(c: &DocContact) -> Option<&str> {
    c.fields.get(Field::Company).and_then(FieldValue::as_text)
}

#[test]
fn c5_different_fields_edited_on_both_sides_both_survive() {
    let (mut replica, hub) = synced();
    let ex = upsert(Side::Exchange, jane().with_text(Field::JobTitle, "Partner"), at(10));
    let crm = upsert(Side::Crm, jane().with_text(Field::Department, "Litigation"), at(11));
    let (c, log) = run(&mut replica, hub, &[(Side::Exchange, ex), (Side::Crm, crm)], 20);
    assert_eq!(c.fields.get(Field::JobTitle).and_then(FieldValue::as_text), Some("Partner"));
    assert_eq!(c.fields.get(Field::Department).and_then(FieldValue::as_text), Some("Litigation"));
    assert!(log.conflicts.is_empty());
}

#[test]
fn x2_same_field_conflict_resolves_the_same_in_either_order_and_is_recorded() {
    for (ex_time, crm_time, winner) in [(12, 11, "Exchange Co"), (11, 12, "Crm Co"), (11, 11, "Crm Co")] {
        let ex = upsert(Side::Exchange, jane().with_text(Field::Company, "Exchange Co"), at(ex_time));
        let crm = upsert(Side::Crm, jane().with_text(Field::Company, "Crm Co"), at(crm_time));
        let mut results = Vec::new();
        for order in [
            [(Side::Exchange, ex.clone()), (Side::Crm, crm.clone())],
            [(Side::Crm, crm.clone()), (Side::Exchange, ex.clone())],
        ] {
            let (mut replica, hub) = synced();
            let (c, log) = run(&mut replica, hub, &order, 20);
            assert_eq!(company(&c), Some(winner), "later-modified item wins, a tie goes to the CRM");
            assert_eq!(log.conflicts.len(), 1);
            let conflict = &log.conflicts[0];
            assert_eq!(conflict.field, Field::Company);
            assert_eq!(conflict.exchange_value.as_ref().and_then(FieldValue::as_text), Some("Exchange Co"));
            assert_eq!(conflict.crm_value.as_ref().and_then(FieldValue::as_text), Some("Crm Co"));
            let obj = replica.doc.contact_obj(hub).unwrap();
            assert!(automerge::ReadDoc::get_all(replica.doc.automerge(), &obj, "company").unwrap().len() == 1);
            results.push(company(&c).map(str::to_string));
        }
        assert_eq!(results[0], results[1]);
    }
}

#[test]
fn c5_the_same_value_on_both_sides_is_no_conflict() {
    let (mut replica, hub) = synced();
    let ex = upsert(Side::Exchange, jane().with_text(Field::Company, "Same LLP"), at(10));
    let crm = upsert(Side::Crm, jane().with_text(Field::Company, "Same LLP"), at(11));
    let (c, log) = run(&mut replica, hub, &[(Side::Exchange, ex), (Side::Crm, crm)], 20);
    assert_eq!(company(&c), Some("Same LLP"));
    assert!(log.conflicts.is_empty());
}

#[test]
fn x3_delete_concurrent_with_an_edit_keeps_the_edited_contact() {
    let (mut replica, hub) = synced();
    let removed = Observed { item: item(Side::Exchange), change: ItemChange::Removed };
    let edit = upsert(Side::Crm, jane().with_text(Field::Company, "Moved On Ltd"), at(11));
    let (c, log) = run(&mut replica, hub, &[(Side::Exchange, removed), (Side::Crm, edit)], 20);
    assert!(!c.deleted, "the edit the deleter never saw beats the delete");
    assert_eq!(log.resurrected, vec![hub]);
    assert_eq!(company(&c), Some("Moved On Ltd"));
    let ops = materialise::plan(&mut replica, Side::Exchange, FieldSet::all(), [hub]);
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].kind, PushKind::Create, "Exchange gets the contact back");
}

#[test]
fn c4_delete_after_seeing_every_edit_stands_and_reaches_the_other_side() {
    let (mut replica, hub) = synced();
    let removed = Observed { item: item(Side::Exchange), change: ItemChange::Removed };
    let (c, log) = run(&mut replica, hub, &[(Side::Exchange, removed)], 20);
    assert!(c.deleted);
    assert!(log.resurrected.is_empty());
    let ops = materialise::plan(&mut replica, Side::Crm, FieldSet::all(), [hub]);
    assert_eq!(ops.iter().map(|o| o.kind).collect::<Vec<_>>(), vec![PushKind::Delete]);
    assert!(materialise::plan(&mut replica, Side::Exchange, FieldSet::all(), [hub]).is_empty());
}

#[test]
fn an_echo_of_the_hubs_own_write_is_no_change() {
    let (mut replica, hub) = synced();
    let heads = replica.doc.heads();
    let echo = stamped(upsert(Side::Crm, jane(), at(30)), hub);
    let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(31)));
    merge.observe(Side::Crm, vec![echo]).unwrap();
    merge.resolve().unwrap();
    assert!(merge.touched().is_empty());
    drop(merge);
    assert_eq!(replica.doc.heads(), heads, "nothing was written");
    let _ = hub;
}

#[test]
fn x8_field_history_names_side_and_time_of_each_change() {
    let (mut replica, hub) = synced();
    let ex = upsert(Side::Exchange, jane().with_text(Field::JobTitle, "Partner"), at(10));
    run(&mut replica, hub, &[(Side::Exchange, ex)], 40);
    let history = history::field_history(&mut replica.doc, hub);
    let given = history.iter().find(|c| c.field == Some(Field::GivenName)).unwrap();
    assert_eq!((given.author, given.at), (Author::Side(Side::Exchange), at(0)));
    let title = history.iter().find(|c| c.field == Some(Field::JobTitle)).unwrap();
    assert_eq!((title.author, title.at), (Author::Side(Side::Exchange), at(40)));
    assert_eq!(title.value.as_ref().and_then(FieldValue::as_text), Some("Partner"));
}

#[test]
fn compaction_round_trip_keeps_document_and_bookkeeping() {
    let store = synchub_store::Store::in_memory(synchub_store::MemKv::new());
    let (mut replica, hub) = synced();
    store.commit("u", replica.take_write().unwrap()).unwrap();
    for i in 0..5 {
        let ex = upsert(Side::Exchange, jane().with_text(Field::JobTitle, &format!("Title {i}")), at(10 + i));
        run(&mut replica, hub, &[(Side::Exchange, ex)], 10 + i);
        store.commit("u", replica.take_write().unwrap()).unwrap();
    }
    let before = UserReplica::load(&store, "u").unwrap();
    assert_eq!(before.doc.heads(), replica.doc.heads(), "snapshot plus chunks load back");
    let stats = store.compact("u", &replica.doc.save()).unwrap();
    assert_eq!(stats.chunks, 0);
    let mut after = UserReplica::load(&store, "u").unwrap();
    assert_eq!(after.doc.heads(), replica.doc.heads());
    let obj = after.doc.contact_obj(hub).unwrap();
    assert_eq!(after.doc.read(&obj, None).fields.get(Field::JobTitle).and_then(FieldValue::as_text), Some("Title 4"));
    assert_eq!(after.entry(Side::Crm, hub), replica.entry(Side::Crm, hub));
    assert_eq!(after.entry(Side::Exchange, hub), replica.entry(Side::Exchange, hub));
    let touched: BTreeSet<_> = [hub].into();
    let ops = materialise::plan(&mut after, Side::Crm, FieldSet::all(), touched);
    assert_eq!(
        ops.iter().map(|o| o.kind).collect::<Vec<_>>(),
        vec![PushKind::Update],
        "the CRM still lacks the new title"
    );
}

fn stamped_upsert(id: &str, hub: HubContactId, fields: ContactFields, modified: DateTime<Utc>) -> Observed {
    Observed {
        item: ItemId::from_trusted(id),
        change: ItemChange::Upsert(SideItem { fields, modified, etag: None, stamp: Some(hub) }),
    }
}

#[test]
fn x9_an_item_whose_id_changed_keeps_its_contact() {
    let (mut replica, hub) = synced();
    let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(20)));
    let moved = vec![
        Observed { item: item(Side::Exchange), change: ItemChange::Removed },
        stamped_upsert("exchange-moved", hub, jane().with_text(Field::JobTitle, "Partner"), at(19)),
    ];
    merge.observe(Side::Exchange, moved).unwrap();
    merge.resolve().unwrap();
    let log = merge.finish();
    assert!(log.minted.is_empty(), "no new contact for a moved item");
    let entry = replica.entry(Side::Exchange, hub).unwrap();
    assert_eq!(entry.item.as_ref().map(ItemId::as_str), Some("exchange-moved"));
    let obj = replica.doc.contact_obj(hub).unwrap();
    let c = replica.doc.read(&obj, None);
    assert!(!c.deleted);
    assert_eq!(c.fields.get(Field::JobTitle).and_then(FieldValue::as_text), Some("Partner"));
    let ops = materialise::plan(&mut replica, Side::Crm, FieldSet::all(), [hub]);
    assert_eq!(ops.iter().map(|o| o.kind).collect::<Vec<_>>(), vec![PushKind::Update], "the CRM contact is kept");
}

#[test]
fn c4_an_item_restored_after_its_delete_brings_the_contact_back() {
    let (mut replica, hub) = synced();
    let removed = Observed { item: item(Side::Exchange), change: ItemChange::Removed };
    let (c, _) = run(&mut replica, hub, &[(Side::Exchange, removed)], 20);
    assert!(c.deleted);
    for op in materialise::plan(&mut replica, Side::Crm, FieldSet::all(), [hub]) {
        materialise::record(&mut replica, &op, PushOutcome::Deleted);
    }
    // The user restores the Outlook item (a new id, the same stamps).
    let restored = stamped_upsert("exchange-restored", hub, jane(), at(30));
    let (c, log) = run(&mut replica, hub, &[(Side::Exchange, restored)], 40);
    assert!(!c.deleted, "restoring is an edit after the delete");
    assert_eq!(log.resurrected, vec![hub]);
    let ops = materialise::plan(&mut replica, Side::Crm, FieldSet::all(), [hub]);
    assert_eq!(ops.iter().map(|o| o.kind).collect::<Vec<_>>(), vec![PushKind::Create]);
}

/// Two contacts made on Exchange, their CRM creates planned and stored, then marked
/// attempted as one batch and committed: (store, replica, the creates, the mark).
fn marked_batch() -> (synchub_store::Store, UserReplica, Vec<PushOp>, u64) {
    let store = synchub_store::Store::in_memory(synchub_store::MemKv::new());
    let mut replica = UserReplica::new();
    let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(0)));
    let joan = Observed {
        item: ItemId::from_trusted("exchange-2"),
        ..upsert(Side::Exchange, jane().with_text(Field::GivenName, "Joan"), at(0))
    };
    merge.observe(Side::Exchange, vec![upsert(Side::Exchange, jane(), at(0)), joan]).unwrap();
    merge.resolve().unwrap();
    let touched = merge.touched().clone();
    drop(merge);
    let ops = materialise::plan(&mut replica, Side::Crm, FieldSet::all(), touched);
    assert_eq!(ops.len(), 2);
    for op in &ops {
        materialise::intend(&mut replica, op);
    }
    store.commit("u", replica.take_write().unwrap()).unwrap();
    let mark = materialise::attempt(&mut replica, Side::Crm, &ops).expect("planned intents are marked");
    store.commit("u", replica.take_write().unwrap()).unwrap();
    (store, replica, ops, mark)
}

/// SPEC N1: a batch about to be pushed is marked attempted with one stored mark, its
/// intents left as stored; a crash while the mark is stored finds them attempted.
#[test]
fn n1_an_attempt_mark_stands_for_its_batch_after_a_crash() {
    let (store, _, ops, _) = marked_batch();
    let stored = store.load_user("u").unwrap();
    assert_eq!(stored.attempts.len(), 1, "one mark for the batch");
    assert_eq!(stored.attempts[0].2.hubs.len(), 2);
    assert!(stored.intents().iter().all(|(_, _, i)| !i.attempted), "the intents are not rewritten");

    let mut reloaded = UserReplica::load(&store, "u").unwrap();
    let unconfirmed: BTreeSet<_> = materialise::unconfirmed(&reloaded, Side::Crm).into_iter().collect();
    assert_eq!(unconfirmed, ops.iter().map(|o| o.hub).collect(), "both pushes may have been made");
    // The next write dissolves the mark into the intents themselves.
    store.commit("u", reloaded.take_write().unwrap()).unwrap();
    let stored = store.load_user("u").unwrap();
    assert!(stored.attempts.is_empty());
    assert_eq!(stored.intents().len(), 2);
    assert!(stored.intents().iter().all(|(_, _, i)| i.attempted));
    let again: BTreeSet<_> =
        materialise::unconfirmed(&UserReplica::load(&store, "u").unwrap(), Side::Crm).into_iter().collect();
    assert_eq!(again, unconfirmed);
}

/// SPEC N1: releasing the mark once the answers are recorded removes it, and keeps as
/// attempted (written whole) only the push whose outcome is still unknown.
#[test]
fn n1_a_released_attempt_mark_keeps_only_the_unknown_outcome_attempted() {
    let (store, mut replica, ops, mark) = marked_batch();
    materialise::record(&mut replica, &ops[0], PushOutcome::Created { item: item(Side::Crm), etag: None });
    // (ops[1]'s answer was lost and its read-back failed: it stays attempted.)
    replica.release_attempts(Side::Crm, mark);
    store.commit("u", replica.take_write().unwrap()).unwrap();
    let stored = store.load_user("u").unwrap();
    assert!(stored.attempts.is_empty(), "the mark is gone");
    let intents = stored.intents();
    assert_eq!(intents.len(), 1);
    assert_eq!(intents[0].1, ops[1].hub.to_string());
    assert!(intents[0].2.attempted, "its outcome is unknown: settled by reading back");
    let reloaded = UserReplica::load(&store, "u").unwrap();
    assert_eq!(materialise::unconfirmed(&reloaded, Side::Crm), vec![ops[1].hub]);
}

/// SPEC N1 across an upgrade: a store of format version 2 kept each intent under a key of
/// its own. Its intents load as pending, and the next write moves them into the contact
/// records and drops the old keys, with nothing lost.
#[test]
fn n1_intents_of_a_format_2_store_move_into_the_contact_records() {
    use synchub_store::{key, Batch, ContactRecord, Kv, MemKv, Store, Tree};
    let (store, replica, _, _) = marked_batch();
    let planned = |r: &UserReplica| -> BTreeMap<HubContactId, PushKind> {
        r.side(Side::Crm).intents.iter().map(|(h, i)| (*h, i.kind)).collect()
    };
    assert_eq!(planned(&replica).len(), 2);
    // The same state as version 2 wrote it: records without intents, an intent a key.
    let kv = MemKv::new();
    let mut batch = Batch::new();
    for (hub, record) in store.load_user("u").unwrap().contacts {
        let mut v2 = vec![2u8];
        v2.extend(postcard::to_stdvec(&(record.sides,)).unwrap());
        batch.put(Tree::Contacts, key(&[b"u", hub.as_bytes()]), v2);
        for (side, intent) in record.intents {
            let mut v2 = vec![2u8];
            v2.extend(postcard::to_stdvec(&intent).unwrap());
            batch.put(Tree::Intents, key(&[b"u", side.as_bytes(), hub.as_bytes()]), v2);
        }
    }
    // The batch's attempt mark, as a crash left it (SPEC N1).
    for (side, mark, record) in store.load_user("u").unwrap().attempts {
        let mut v2 = vec![2u8];
        v2.extend(postcard::to_stdvec(&record).unwrap());
        batch.put(Tree::Attempts, key(&[b"u", side.as_bytes(), mark.as_bytes()]), v2);
    }
    kv.apply(&batch).unwrap();
    let old = Store::in_memory(kv);
    let stored = old.load_user("u").unwrap();
    assert_eq!(stored.legacy_intents.len(), 2);
    assert_eq!(stored.attempts.len(), 1);
    assert!(stored.contacts.iter().all(|(_, r)| r.intents.is_empty()));
    assert_eq!(old.user_marks("u").unwrap().intents, 2, "pending before the move");

    let mut loaded = UserReplica::load(&old, "u").unwrap();
    assert_eq!(planned(&loaded), planned(&replica));
    assert!(loaded.side(Side::Crm).intents.values().all(|i| i.attempted), "the mark's intents are attempted");
    old.commit("u", loaded.take_write().unwrap()).unwrap();
    let moved = old.load_user("u").unwrap();
    assert!(moved.legacy_intents.is_empty(), "the old keys are gone");
    assert_eq!(moved.intents().len(), 2);
    assert!(moved.contacts.iter().all(|(_, r): &(String, ContactRecord)| r.intents.len() == 1));
    assert_eq!(old.user_marks("u").unwrap().intents, 2, "pending after the move");
    assert!(moved.attempts.is_empty(), "the mark is dissolved into the intents");
    let reloaded = UserReplica::load(&old, "u").unwrap();
    assert_eq!(planned(&reloaded), planned(&replica));
    assert!(reloaded.side(Side::Crm).intents.values().all(|i| i.attempted), "still attempted: read back next");
}

/// A pending count that disagrees with the contact records (a store written before writes
/// after a failed one were refused) is put right by the next write: the count is what the
/// quiet-cycle fast path reads to skip loading a user, so a count too low would leave the
/// pushes pending for good (SPEC N1).
#[test]
fn n1_a_stored_pending_count_the_records_contradict_is_rewritten() {
    use synchub_store::{key, Batch, Kv, MemKv, Store, Tree};
    let (store, _, _, _) = marked_batch();
    let kv = MemKv::new();
    let mut batch = Batch::new();
    for (hub, record) in store.load_user("u").unwrap().contacts {
        batch.put(
            Tree::Contacts,
            key(&[b"u", hub.as_bytes()]),
            synchub_store::codec::encode(Tree::Contacts.name(), &record).unwrap(),
        );
    }
    kv.apply(&batch).unwrap();
    let drifted = Store::in_memory(kv);
    assert_eq!(drifted.load_user("u").unwrap().intents().len(), 2);
    assert_eq!(drifted.user_marks("u").unwrap().intents, 0, "the count lost");

    let mut loaded = UserReplica::load(&drifted, "u").unwrap();
    drifted.commit("u", loaded.take_write().unwrap()).unwrap();
    assert_eq!(drifted.user_marks("u").unwrap().intents, 2, "the count put right");
    assert_eq!(drifted.load_user("u").unwrap().pending, 2);
    let mut again = UserReplica::load(&drifted, "u").unwrap();
    assert!(again.take_write().unwrap().is_empty(), "a true count is not written again");
}

/// A plan large enough to be read in two threads gives the pushes, in the order, and the
/// base moves that reading it in one thread gives.
#[test]
fn a_large_plan_read_in_two_threads_equals_the_plan_read_in_one() {
    let mut replica = UserReplica::new();
    let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(0)));
    let items: Vec<Observed> = (0..700)
        .map(|i| Observed {
            item: ItemId::from_trusted(format!("exchange-{i}")),
            ..upsert(Side::Exchange, jane().with_text(Field::GivenName, &format!("Jane {i}")), at(0))
        })
        .collect();
    merge.observe(Side::Exchange, items).unwrap();
    merge.resolve().unwrap();
    let touched = merge.touched().clone();
    drop(merge);
    // Half of them already on the CRM side as they are now, linked but with an old base
    // (their base moves up), a tenth of those with another company (an update).
    let hubs: Vec<HubContactId> = touched.iter().copied().collect();
    for (i, hub) in hubs.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        let obj = replica.doc.contact_obj(*hub).unwrap();
        let mut fields = replica.doc.read(&obj, None).fields;
        if i % 20 == 0 {
            fields = fields.with_text(Field::Company, "Elsewhere");
        }
        let entry = SideEntry {
            item: Some(ItemId::from_trusted(format!("crm-{i}"))),
            shadow: Shadow::new(&fields),
            stamped: true,
            ..SideEntry::default()
        };
        replica.set_entry(Side::Crm, *hub, entry);
    }
    let requests: Vec<materialise::SidePlan> = Side::BOTH
        .into_iter()
        .map(|side| materialise::SidePlan { side, set: FieldSet::all(), candidates: touched.clone(), pulled: true })
        .collect();
    let mut serial = replica.clone();
    let in_two = materialise::plan_sides(&mut replica, &requests);
    let in_one = materialise::plan_sides_in_one(&mut serial, &requests);
    assert_eq!(in_two, in_one);
    let crm: Vec<PushKind> = in_two[1].iter().map(|op| op.kind).collect();
    assert_eq!(crm.iter().filter(|k| **k == PushKind::Update).count(), 35, "{crm:?}");
    assert_eq!(crm.iter().filter(|k| **k == PushKind::Create).count(), 350);
    for (i, hub) in hubs.iter().enumerate().filter(|(i, _)| i % 2 == 0) {
        assert_eq!(replica.entry(Side::Crm, *hub), serial.entry(Side::Crm, *hub));
        let moved = replica.entry(Side::Crm, *hub).unwrap().base == replica.doc.heads();
        assert_eq!(moved, i % 20 != 0, "the base of a copy matching the document moves up");
    }
}
