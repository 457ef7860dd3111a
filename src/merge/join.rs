//! Joining two contacts the identity match left apart (SPEC C3: a possible duplicate merged
//! on review). Before: contact `keep` holds the Outlook original and a CRM copy the hub made
//! of it; contact `gone` holds the CRM original and an Outlook copy. After: `keep` holds both
//! originals, with each field resolved as a run resolves a same-field conflict (the value
//! written later wins, a tie goes to the CRM, SPEC X2; the conflict is recorded), and `gone`
//! is a tombstone linked to the two copies, so the next run deletes them and nothing else.
//!
//! The pushes this needs are written as planned intents, so they are carried out by the
//! next run even when it follows a restart, and they are not weighed by the mass-change
//! guard (they were reviewed: a person asked for them).

use std::collections::HashMap;

use automerge::{ObjId, ScalarValue};
use chrono::{DateTime, Utc};

use super::doc::{encode, write_at, Author, DELETED};
use super::history::field_history;
use super::materialise;
use super::run::Conflict;
use super::state::{SideEntry, UserReplica};
use super::MergeError;
use crate::model::{equivalent, ContactFields, Field, FieldSet, HubContactId, ItemId, Side};

/// Why two contacts cannot be joined.
#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    /// An item is not linked to a live contact.
    #[error("{side} item {item} is not linked to a contact")]
    NotLinked { side: Side, item: ItemId },
    /// Both items belong to one contact already.
    #[error("{0} and {1} are already one contact")]
    AlreadyOne(ItemId, ItemId),
    /// A write to one of the contacts is still pending (a run must settle it first).
    #[error("a write to contact {0} is still pending; try again after the next run")]
    Pending(HubContactId),
    /// The merge core failed.
    #[error(transparent)]
    Merge(#[from] MergeError),
}

/// What a join did.
#[derive(Clone, Debug, PartialEq)]
pub struct Joined {
    /// The contact that holds both originals now.
    pub keep: HubContactId,
    /// The contact tombstoned with the two copies.
    pub gone: HubContactId,
    /// The same-field conflicts, resolved and to be journaled.
    pub conflicts: Vec<Conflict>,
    /// The merged values.
    pub fields: ContactFields,
    /// The Outlook and CRM items `keep` is linked to now.
    pub links: [Option<ItemId>; 2],
}

/// The time each field of `hub` was last written (`None`: never).
fn written_at(replica: &mut UserReplica, hub: HubContactId) -> HashMap<Field, DateTime<Utc>> {
    let mut out = HashMap::new();
    for change in field_history(&mut replica.doc, hub) {
        if let Some(field) = change.field {
            out.insert(field, change.at);
        }
    }
    out
}

/// Join the contact of Outlook item `exchange` with the contact of CRM item `crm` (see the
/// module's doc). `sets`: the fields each side carries, for planning the pushes.
pub fn join(
    replica: &mut UserReplica,
    exchange: &ItemId,
    crm: &ItemId,
    sets: [FieldSet; 2],
    now: DateTime<Utc>,
) -> Result<Joined, JoinError> {
    let live = |replica: &mut UserReplica, side: Side, item: &ItemId| -> Result<(HubContactId, ObjId), JoinError> {
        let not_linked = || JoinError::NotLinked { side, item: item.clone() };
        let hub = replica.side(side).hub_for(item).ok_or_else(not_linked)?;
        let obj = replica.doc.contact_obj(hub).ok_or_else(not_linked)?;
        if replica.doc.read(&obj, None).deleted {
            return Err(not_linked());
        }
        Ok((hub, obj))
    };
    let (keep, keep_obj) = live(replica, Side::Exchange, exchange)?;
    let (gone, gone_obj) = live(replica, Side::Crm, crm)?;
    if keep == gone {
        return Err(JoinError::AlreadyOne(exchange.clone(), crm.clone()));
    }
    for hub in [keep, gone] {
        if Side::BOTH.iter().any(|s| replica.side(*s).intents.contains_key(&hub)) {
            return Err(JoinError::Pending(hub));
        }
    }

    // The merged values: a field set on one only is kept; one set differently on both is
    // a same-field conflict, resolved by which was written later (a tie goes to the CRM).
    let (a, b) = (replica.doc.read(&keep_obj, None).fields, replica.doc.read(&gone_obj, None).fields);
    let (a_at, b_at) = (written_at(replica, keep), written_at(replica, gone));
    let mut fields = a.clone();
    let mut conflicts = Vec::new();
    for field in a.differing(&b, FieldSet::all()) {
        let (ours, theirs) = (a.get(field), b.get(field));
        let winner = match (ours, theirs) {
            (Some(_), None) => Side::Exchange,
            (None, Some(_)) => Side::Crm,
            _ if a_at.get(&field) > b_at.get(&field) => Side::Exchange,
            _ => Side::Crm,
        };
        if ours.is_some() && theirs.is_some() {
            conflicts.push(Conflict {
                contact: keep,
                field,
                exchange_value: ours.cloned(),
                crm_value: theirs.cloned(),
                winner,
                at: now,
            });
        }
        if winner == Side::Crm {
            fields.set(field, theirs.cloned());
        }
    }
    let mut puts: Vec<(ObjId, &str, ScalarValue)> = fields
        .iter()
        .filter(|(f, v)| !equivalent(*f, a.get(*f), Some(v)))
        .map(|(f, v)| (keep_obj.clone(), f.name(), encode(Some(v))))
        .collect();
    puts.push((gone_obj, DELETED, ScalarValue::Boolean(true)));
    write_at(replica.doc.automerge_mut(), None, Author::Hub, now.timestamp_millis(), &puts)?;
    let heads = replica.doc.heads();

    // The CRM links change places: `keep` takes the CRM original, `gone` the copy. Both
    // originals are written again (merged values, and stamps naming `keep` and its peer,
    // SPEC X9); the moved entry's base is the join, so a later CRM edit comes after it.
    let keep_crm =
        replica.entry(Side::Crm, gone).cloned().map(|e| SideEntry { stamped: false, base: heads.clone(), ..e });
    let gone_crm = replica.entry(Side::Crm, keep).cloned().map(|e| SideEntry { base: heads.clone(), ..e });
    replica.swap_entries(Side::Crm, keep, keep_crm, gone, gone_crm);
    if let Some(e) = replica.entry(Side::Exchange, keep).cloned() {
        replica.set_entry(Side::Exchange, keep, SideEntry { stamped: false, ..e });
    }
    let requests = Side::BOTH.map(|side| materialise::SidePlan {
        side,
        set: sets[side.index()],
        candidates: [keep, gone].into(),
        pulled: false,
    });
    for op in materialise::plan_sides(replica, &requests).iter().flatten() {
        materialise::intend(replica, op);
    }
    Ok(Joined { keep, gone, conflicts, fields, links: [Some(exchange.clone()), Some(crm.clone())] })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::merge::{ItemChange, Merge, Observed, PushKind, RunCtx, SideItem};

    fn item(id: &str, fields: ContactFields, at: i64) -> Observed {
        Observed {
            item: ItemId::from_trusted(id),
            change: ItemChange::Upsert(SideItem {
                fields,
                modified: DateTime::from_timestamp_millis(at).unwrap_or_default(),
                etag: None,
                stamp: None,
            }),
        }
    }

    fn tess(title: &str, phone: Option<&str>) -> ContactFields {
        let mut f = ContactFields::new()
            .with_text(Field::GivenName, "Tess")
            .with_text(Field::Surname, "Twin")
            .with_text(Field::JobTitle, title);
        if let Some(p) = phone {
            f = f.with_text(Field::BusinessPhone, p);
        }
        f
    }

    /// Two contacts, each linked to an original on one side and a copy on the other, as a
    /// run leaves an unpaired possible duplicate.
    fn two(t_exchange: i64, t_crm: i64) -> (UserReplica, [HubContactId; 2]) {
        let mut replica = UserReplica::new();
        let at = |ms| DateTime::from_timestamp_millis(ms).unwrap_or_default();
        let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(t_exchange)));
        merge.observe(Side::Exchange, vec![item("E1", tess("Counsel", Some("+1 555 0100")), t_exchange)]).unwrap();
        merge.finish();
        let mut merge = Merge::new(&mut replica, RunCtx::all_fields(at(t_crm)));
        merge.observe(Side::Crm, vec![item("C1", tess("Partner", None), t_crm)]).unwrap();
        merge.finish();
        let e = replica.side(Side::Exchange).hub_for(&ItemId::from_trusted("E1")).unwrap();
        let c = replica.side(Side::Crm).hub_for(&ItemId::from_trusted("C1")).unwrap();
        // The copies each run made on the other side.
        for (side, hub, copy) in [(Side::Crm, e, "X1"), (Side::Exchange, c, "Y1")] {
            for op in materialise::plan(&mut replica, side, FieldSet::all(), [hub]) {
                let outcome = crate::merge::PushOutcome::Created { item: ItemId::from_trusted(copy), etag: None };
                materialise::record(&mut replica, &op, outcome);
            }
        }
        (replica, [e, c])
    }

    fn ops(replica: &UserReplica, side: Side) -> Vec<(HubContactId, PushKind)> {
        let mut out: Vec<_> = replica.side(side).intents.iter().map(|(h, i)| (*h, i.kind)).collect();
        out.sort_by_key(|(h, _)| *h);
        out
    }

    #[test]
    fn c3_join_keeps_both_originals_and_deletes_the_copies() {
        let (mut replica, [e, c]) = two(1_000, 2_000);
        let joined = join(
            &mut replica,
            &ItemId::from_trusted("E1"),
            &ItemId::from_trusted("C1"),
            [FieldSet::all(); 2],
            DateTime::from_timestamp_millis(3_000).unwrap_or_default(),
        )
        .unwrap();
        assert_eq!((joined.keep, joined.gone), (e, c));
        // The title was written later in the CRM: it wins (X2); the phone only Outlook had.
        assert_eq!(joined.fields, tess("Partner", Some("+1 555 0100")));
        assert_eq!(joined.conflicts.len(), 1);
        assert_eq!((joined.conflicts[0].field, joined.conflicts[0].winner), (Field::JobTitle, Side::Crm));
        let crm = replica.side(Side::Crm);
        assert_eq!(crm.hub_for(&ItemId::from_trusted("C1")), Some(e));
        assert_eq!(crm.hub_for(&ItemId::from_trusted("X1")), Some(c));
        assert_eq!(replica.side(Side::Exchange).hub_for(&ItemId::from_trusted("E1")), Some(e));
        // Both originals updated (values and stamps), both copies deleted.
        let mut want = vec![(e, PushKind::Update), (c, PushKind::Delete)];
        want.sort_by_key(|(h, _)| *h);
        assert_eq!(ops(&replica, Side::Exchange), want);
        assert_eq!(ops(&replica, Side::Crm), want);
        let keep = replica.doc.contact_obj(e).unwrap();
        assert_eq!(replica.doc.read(&keep, None).fields, joined.fields);
        let gone = replica.doc.contact_obj(c).unwrap();
        assert!(replica.doc.read(&gone, None).deleted);
    }

    #[test]
    fn x2_a_field_written_later_in_outlook_wins_and_a_tie_goes_to_the_crm() {
        let (mut replica, _) = two(5_000, 2_000);
        let (e1, c1) = (ItemId::from_trusted("E1"), ItemId::from_trusted("C1"));
        let now = DateTime::from_timestamp_millis(9_000).unwrap_or_default();
        let joined = join(&mut replica.clone(), &e1, &c1, [FieldSet::all(); 2], now).unwrap();
        assert_eq!(joined.fields.get(Field::JobTitle), tess("Counsel", None).get(Field::JobTitle));
        let (mut tie, _) = two(2_000, 2_000);
        let joined = join(&mut tie, &e1, &c1, [FieldSet::all(); 2], now).unwrap();
        assert_eq!(joined.fields.get(Field::JobTitle), tess("Partner", None).get(Field::JobTitle));
        // Joined once, they are one contact: a second join is refused, as is an unknown item.
        assert!(matches!(join(&mut tie, &e1, &c1, [FieldSet::all(); 2], now), Err(JoinError::AlreadyOne(..))));
        let unknown = ItemId::from_trusted("nope");
        assert!(matches!(
            join(&mut replica, &unknown, &c1, [FieldSet::all(); 2], now),
            Err(JoinError::NotLinked { side: Side::Exchange, .. })
        ));
    }
}
