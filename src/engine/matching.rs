//! Identity matching (SPEC C3, X1): items that appear new on both sides in one run are
//! paired when they are the same person: the same normalised primary e-mail, or else the
//! same normalised (given name, surname, company) held by exactly one item on each side.
//! Ambiguous candidates are never paired; they are reported as possible duplicates.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::merge::{ItemChange, Observed, PushKind, SideItem, UserReplica};
use crate::model::{ContactFields, Field, FieldValue, HubContactId, ItemId, Side};

/// How items new on both sides are treated (`initial_match`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InitialMatch {
    /// Pair by identity (X1, the default).
    #[default]
    Identity,
    /// Never pair: both become contacts on both sides, as the original product does.
    None,
}

/// Items that may be the same person but were not paired (ambiguous), for review.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PossibleDuplicate {
    /// What they share (`email:…` or `name:…`).
    pub key: String,
    /// The Outlook items.
    pub exchange: Vec<ItemId>,
    /// The CRM items.
    pub crm: Vec<ItemId>,
}

fn text(fields: &ContactFields, f: Field) -> String {
    match fields.get(f) {
        Some(FieldValue::Text(s)) => s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase(),
        _ => String::new(),
    }
}

fn email_key(item: &ContactFields) -> Option<String> {
    let e = text(item, Field::Email1);
    (!e.is_empty()).then(|| format!("email:{e}"))
}

fn name_key(item: &ContactFields) -> Option<String> {
    let (given, surname) = (text(item, Field::GivenName), text(item, Field::Surname));
    if given.is_empty() || surname.is_empty() {
        return None;
    }
    Some(format!("name:{given}|{surname}|{}", text(item, Field::Company)))
}

/// Items of `observed` that are new: not linked, and carrying no hub id (a stamped item is
/// re-linked by its stamp instead, SPEC X9).
fn new_items<'a>(replica: &UserReplica, side: Side, observed: &'a [Observed]) -> Vec<(&'a ItemId, &'a SideItem)> {
    observed
        .iter()
        .filter_map(|o| match &o.change {
            ItemChange::Upsert(item) if item.stamp.is_none() && replica.side(side).hub_for(&o.item).is_none() => {
                Some((&o.item, item))
            }
            _ => None,
        })
        .collect()
}

/// Pairs of (Outlook item, CRM item) that are the same person, and the ambiguous groups.
pub fn find_pairs(
    replica: &UserReplica,
    exchange: &[Observed],
    crm: &[Observed],
) -> (Vec<(ItemId, ItemId)>, Vec<PossibleDuplicate>) {
    let sides = [new_items(replica, Side::Exchange, exchange), new_items(replica, Side::Crm, crm)];
    let mut pairs = Vec::new();
    let mut duplicates = Vec::new();
    // `taken`: paired, or ambiguous by e-mail (never paired by name after that).
    let mut taken: [HashSet<&ItemId>; 2] = [HashSet::new(), HashSet::new()];
    for key_of in [email_key as fn(&ContactFields) -> Option<String>, name_key] {
        let mut groups: BTreeMap<String, [Vec<(&ItemId, &SideItem)>; 2]> = BTreeMap::new();
        for (i, items) in sides.iter().enumerate() {
            for (id, item) in items.iter().filter(|(id, _)| !taken[i].contains(id)) {
                if let Some(key) = key_of(&item.fields) {
                    groups.entry(key).or_default()[i].push((id, item));
                }
            }
        }
        for (key, [e, c]) in groups {
            match (e.as_slice(), c.as_slice()) {
                ([], _) | (_, []) => {}
                ([(e, ei)], [(c, ci)]) => {
                    // By name only when the e-mails do not say they are different people.
                    let (ee, ce) = (email_key(&ei.fields), email_key(&ci.fields));
                    if key.starts_with("name:") && ee.is_some() && ce.is_some() && ee != ce {
                        duplicates.push(PossibleDuplicate {
                            key,
                            exchange: vec![(*e).clone()],
                            crm: vec![(*c).clone()],
                        });
                        continue;
                    }
                    taken[0].insert(e);
                    taken[1].insert(c);
                    pairs.push(((*e).clone(), (*c).clone()));
                }
                (e, c) => {
                    taken[0].extend(e.iter().map(|(id, _)| *id));
                    taken[1].extend(c.iter().map(|(id, _)| *id));
                    duplicates.push(PossibleDuplicate {
                        key,
                        exchange: e.iter().map(|(id, _)| (*id).clone()).collect(),
                        crm: c.iter().map(|(id, _)| (*id).clone()).collect(),
                    })
                }
            }
        }
    }
    (pairs, duplicates)
}

/// Items new on `side` that are the same person as a contact the hub has yet to create on
/// that side: the other side's item came in an earlier run whose create here has not been
/// made (this side's pull failed then, say). They are linked instead of both being kept
/// (SPEC C3 "whenever a contact appears new on both sides"). `taken`: items already paired.
pub fn find_awaiting(
    replica: &mut UserReplica,
    side: Side,
    observed: &[Observed],
    taken: &HashSet<ItemId>,
) -> (Vec<(ItemId, HubContactId)>, Vec<PossibleDuplicate>) {
    let awaiting: Vec<HubContactId> = replica
        .side(side)
        .intents
        .iter()
        .filter(|(_, i)| i.kind == PushKind::Create && !i.attempted)
        .map(|(hub, _)| *hub)
        .collect();
    if awaiting.is_empty() {
        return (Vec::new(), Vec::new());
    }
    let mut contacts: Vec<(HubContactId, ContactFields)> = Vec::new();
    for hub in awaiting {
        let Some(obj) = replica.doc.contact_obj(hub) else { continue };
        let view = replica.doc.read(&obj, None);
        if !view.deleted {
            contacts.push((hub, view.fields));
        }
    }
    let items: Vec<(&ItemId, &SideItem)> =
        new_items(replica, side, observed).into_iter().filter(|(id, _)| !taken.contains(*id)).collect();
    let mut pairs = Vec::new();
    let mut duplicates = Vec::new();
    let mut used_items: HashSet<&ItemId> = HashSet::new();
    let mut used_hubs: HashSet<HubContactId> = HashSet::new();
    for key_of in [email_key as fn(&ContactFields) -> Option<String>, name_key] {
        let mut groups: BTreeMap<String, (Vec<&ItemId>, Vec<HubContactId>)> = BTreeMap::new();
        for (id, item) in items.iter().filter(|(id, _)| !used_items.contains(id)) {
            if let Some(key) = key_of(&item.fields) {
                groups.entry(key).or_default().0.push(id);
            }
        }
        for (hub, fields) in contacts.iter().filter(|(h, _)| !used_hubs.contains(h)) {
            if let Some(key) = key_of(fields) {
                groups.entry(key).or_default().1.push(*hub);
            }
        }
        for (key, (ids, hubs)) in groups {
            match (ids.as_slice(), hubs.as_slice()) {
                ([], _) | (_, []) => {}
                ([id], [hub]) => {
                    used_items.insert(id);
                    used_hubs.insert(*hub);
                    pairs.push(((*id).clone(), *hub));
                }
                (ids, _) => duplicates.push(PossibleDuplicate {
                    key,
                    exchange: if side == Side::Exchange {
                        ids.iter().map(|i| (*i).clone()).collect()
                    } else {
                        Vec::new()
                    },
                    crm: if side == Side::Crm { ids.iter().map(|i| (*i).clone()).collect() } else { Vec::new() },
                }),
            }
        }
    }
    (pairs, duplicates)
}

#[cfg(test)]
mod tests {
    use chrono::Utc;

    use super::*;
    use crate::model::ContactFields;

    fn item(id: &str, given: &str, surname: &str, company: &str, email: &str) -> Observed {
        let mut fields = ContactFields::new()
            .with_text(Field::GivenName, given)
            .with_text(Field::Surname, surname)
            .with_text(Field::Company, company);
        if !email.is_empty() {
            fields = fields.with_text(Field::Email1, email);
        }
        let item = SideItem { fields, modified: Utc::now(), etag: None, stamp: None };
        Observed { item: ItemId::from_trusted(id), change: ItemChange::Upsert(item) }
    }

    #[test]
    fn c3_pairs_by_email_then_by_unique_name_and_reports_the_ambiguous() {
        let replica = UserReplica::new();
        let exchange = [
            item("e1", "Jane", "Tarnoff", "Acme", "Jane@Acme.com "),
            item("e2", "Joe", "Smith", "Initech", ""),
            item("e3", "Ann", "Lee", "Globex", ""),
            item("e4", "Ann", "Lee", "Globex", ""),
            item("e5", "Bo", "Diaz", "Umbrella", "bo@one.example"),
        ];
        let crm = [
            item("c1", "J.", "Tarnoff", "Acme Corp", "jane@acme.com"),
            item("c2", "joe", "SMITH", " initech", "joe@initech.example"),
            item("c3", "Ann", "Lee", "Globex", ""),
            item("c5", "Bo", "Diaz", "Umbrella", "bo@two.example"),
        ];
        let (pairs, duplicates) = find_pairs(&replica, &exchange, &crm);
        let pairs: Vec<(&str, &str)> = pairs.iter().map(|(e, c)| (e.as_str(), c.as_str())).collect();
        assert_eq!(pairs, [("e1", "c1"), ("e2", "c2")], "e-mail first (case and space aside), then the unique name");
        assert_eq!(duplicates.len(), 2, "{duplicates:?}");
        assert!(duplicates.iter().any(|d| d.exchange.len() == 2 && d.crm.len() == 1), "two Ann Lees: never paired");
        assert!(duplicates.iter().any(|d| d.key == "name:bo|diaz|umbrella"), "same name, different e-mails");
    }

    #[test]
    fn c3_items_ambiguous_by_email_are_not_paired_by_name_either() {
        let replica = UserReplica::new();
        let exchange = [
            item("e1", "Ann", "Lee", "Globex", "ann@globex.com"),
            item("e2", "Ann", "Lee", "Globex", "ann@globex.com"),
        ];
        let crm = [item("c1", "Ann", "Lee", "Globex", "ann@globex.com")];
        let (pairs, duplicates) = find_pairs(&replica, &exchange, &crm);
        assert!(pairs.is_empty(), "{pairs:?}");
        assert_eq!(duplicates.len(), 1);
    }
}
