//! One run's merge over a user's replica: observe each side, then resolve. The run keeps
//! which fields each side wrote (and when the item was modified), and which change hashes
//! it committed for which side: resolution attributes values by those hashes, never by
//! actor id (Automerge derives extra actor ids at old heads).

use std::collections::{BTreeSet, HashMap, HashSet};

use automerge::{ChangeHash, ObjId, ReadDoc, ScalarValue, ScalarValueRef, Value, ValueRef};
use chrono::{DateTime, Utc};

use super::doc::{decode, write_at, Author, Heads, DELETED};
use super::state::UserReplica;
use super::MergeError;
use crate::model::{equivalent, Field, FieldSet, FieldValue, HubContactId, ItemId, Side};

/// What a run needs to know beyond the replica.
#[derive(Clone, Copy, Debug)]
pub struct RunCtx {
    /// The fields each side carries (indexed by [`Side::index`]).
    pub fields: [FieldSet; 2],
    /// The run's clock.
    pub now: DateTime<Utc>,
    /// Mint hub ids from (time, side, item) instead of at random: reproducible runs for
    /// tests and benches. Production leaves it off.
    pub deterministic_ids: bool,
    /// An Outlook edit that replaces given name, surname and primary e-mail is a new person
    /// (SPEC C10 `reuse_policy = "split"`); off, the contact follows the item.
    pub split_identity: bool,
}

impl RunCtx {
    /// Every field on both sides, at `now`.
    pub fn all_fields(now: DateTime<Utc>) -> RunCtx {
        RunCtx { fields: [FieldSet::all(); 2], now, deterministic_ids: false, split_identity: false }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.now.timestamp_millis()
    }
}

/// A key of a contact's map that a run can write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Slot {
    /// A field.
    Field(Field),
    /// The tombstone.
    Deleted,
}

/// A same-field conflict, recorded and visible over the API (SPEC C5, X2).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Conflict {
    /// The contact.
    pub contact: HubContactId,
    /// The field.
    pub field: Field,
    /// Exchange's value.
    pub exchange_value: Option<FieldValue>,
    /// The CRM's value.
    pub crm_value: Option<FieldValue>,
    /// Whose value won.
    pub winner: Side,
    /// When.
    pub at: DateTime<Utc>,
}

/// What a run did besides writing fields: minted, adopted and resurrected contacts.
#[derive(Clone, Debug, Default)]
pub struct RunLog {
    /// Contacts created from a side's new item.
    pub minted: Vec<(Side, HubContactId)>,
    /// Unknown items carrying a hub id, linked instead of re-created (SPEC X9).
    pub adopted: Vec<(Side, HubContactId)>,
    /// Contacts brought back because an edit beat a delete (SPEC X3).
    pub resurrected: Vec<HubContactId>,
    /// Same-field conflicts.
    pub conflicts: Vec<Conflict>,
    /// Items new on both sides paired as one person (SPEC C3, X1): (contact, Outlook item,
    /// CRM item).
    pub matched: Vec<(HubContactId, ItemId, ItemId)>,
    /// Outlook items renamed to a different person (SPEC C10): (old contact, new contact).
    pub split: Vec<(HubContactId, HubContactId)>,
}

/// One run's merge.
pub struct Merge<'a> {
    pub(crate) replica: &'a mut UserReplica,
    pub(crate) ctx: RunCtx,
    /// (contact, slot) -> per side, the modification time of the item that wrote it.
    pub(crate) written: HashMap<(HubContactId, Slot), [Option<i64>; 2]>,
    /// Change hashes this run committed, by the side whose observation they carry.
    pub(crate) hashes: HashMap<ChangeHash, Side>,
    pub(crate) created: HashSet<HubContactId>,
    /// Contacts a side brought back (an adopted item onto a tombstone).
    pub(crate) restores: HashSet<HubContactId>,
    pub(crate) touched: BTreeSet<HubContactId>,
    pub(crate) log: RunLog,
    /// The document's heads when the run began.
    pub(crate) start_heads: Heads,
    /// Items paired before observing (SPEC C3): the contact each is to be.
    pub(crate) assigned: HashMap<(Side, ItemId), HubContactId>,
    /// Contacts made from a pair: the second item of the pair adds what it holds and blanks
    /// nothing (both sides end with the union; see `adopt_pair`).
    pub(crate) matched: HashSet<HubContactId>,
}

impl<'a> Merge<'a> {
    /// Start a run's merge.
    pub fn new(replica: &'a mut UserReplica, ctx: RunCtx) -> Merge<'a> {
        let start_heads = replica.doc.heads();
        Merge {
            start_heads,
            replica,
            ctx,
            written: HashMap::new(),
            hashes: HashMap::new(),
            created: HashSet::new(),
            restores: HashSet::new(),
            touched: BTreeSet::new(),
            log: RunLog::default(),
            assigned: HashMap::new(),
            matched: HashSet::new(),
        }
    }

    /// Link items new on a side to contacts the hub had yet to create there (found by
    /// identity, SPEC C3): the item joins the contact instead of making a second one.
    pub fn pair_existing(&mut self, side: Side, pairs: Vec<(ItemId, HubContactId)>) {
        for (item, hub) in pairs {
            self.assigned.insert((side, item.clone()), hub);
            self.matched.insert(hub);
            let (exchange, crm) = match side {
                Side::Exchange => (item, ItemId::from_trusted("")),
                Side::Crm => (ItemId::from_trusted(""), item),
            };
            self.log.matched.push((hub, exchange, crm));
        }
    }

    /// Pair items new on both sides (found by identity, SPEC C3/X1) before they are
    /// observed: each pair becomes one contact. Where the two differ, the CRM's value is
    /// kept (the firm record); what only one side holds is kept from it.
    pub fn pair(&mut self, pairs: Vec<(ItemId, ItemId)>) {
        for (exchange, crm) in pairs {
            let hub = if self.ctx.deterministic_ids {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                (self.ctx.now_ms(), exchange.as_str(), crm.as_str()).hash(&mut hasher);
                let high = hasher.finish();
                "pair".hash(&mut hasher);
                HubContactId::from_u128((u128::from(high) << 64) | u128::from(hasher.finish()))
            } else {
                HubContactId::mint()
            };
            self.assigned.insert((Side::Exchange, exchange.clone()), hub);
            self.assigned.insert((Side::Crm, crm.clone()), hub);
            self.matched.insert(hub);
            self.log.matched.push((hub, exchange, crm));
        }
    }

    /// Contacts this run wrote (the only ones materialise needs to plan, with the pending
    /// intents).
    pub fn touched(&self) -> &BTreeSet<HubContactId> {
        &self.touched
    }

    /// The replica being merged into.
    pub fn replica(&self) -> &UserReplica {
        self.replica
    }

    /// End the merge, returning what it recorded.
    pub fn finish(self) -> RunLog {
        self.log
    }

    /// Resolve what this run wrote: deletes first (on the ops as observed), then every
    /// field left with concurrent values gets its winner written, so none survives the run.
    pub fn resolve(&mut self) -> Result<(), MergeError> {
        let mut contacts: BTreeSet<HubContactId> = self.written.keys().map(|(h, _)| *h).collect();
        contacts.retain(|h| !self.created.contains(h));
        let mut puts: Vec<(ObjId, &'static str, ScalarValue)> = Vec::new();
        let mut deleted_decisions = Vec::new();
        let mut conflicted: Vec<(HubContactId, ObjId, Field)> = Vec::new();
        for hub in &contacts {
            let Some(obj) = self.replica.doc.contact_obj(*hub) else { continue };
            // One pass over the contact says which keys hold concurrent values and whether
            // the tombstone may be set; only those need the closer look.
            let (mut tombstone, mut tombstone_conflict) = (false, false);
            for item in self.replica.doc.automerge().map_range(&obj, ..) {
                if item.key == DELETED {
                    tombstone_conflict = item.conflict;
                    tombstone = item.conflict || matches!(item.value, ValueRef::Scalar(ScalarValueRef::Boolean(true)));
                } else if item.conflict {
                    if let Ok(field) = item.key.parse::<Field>() {
                        if self.written.contains_key(&(*hub, Slot::Field(field))) {
                            conflicted.push((*hub, obj.clone(), field));
                        }
                    }
                }
            }
            if self.restores.contains(hub) {
                // A side brought the contact back this run: its `deleted = false` wins over
                // any delete it is concurrent with.
                if tombstone {
                    puts.push((obj, DELETED, ScalarValue::Boolean(false)));
                }
            } else if tombstone {
                if let Some(keep_deleted) = self.delete_decision(&obj)? {
                    deleted_decisions.push((*hub, obj, keep_deleted, tombstone_conflict));
                }
            }
        }
        for (hub, obj, field) in conflicted {
            if let Some(winner) = self.resolve_field(hub, &obj, field)? {
                puts.push((obj, field.name(), winner));
            }
        }
        for (hub, obj, keep_deleted, multi) in deleted_decisions {
            if !keep_deleted {
                self.log.resurrected.push(hub);
                puts.push((obj, DELETED, ScalarValue::Boolean(false)));
            } else if multi {
                puts.push((obj, DELETED, ScalarValue::Boolean(true)));
            }
        }
        write_at(self.replica.doc.automerge_mut(), None, Author::Hub, self.ctx.now_ms(), &puts)?;
        Ok(())
    }

    /// For a contact whose tombstone is set: `Some(true)` when the delete stands, `Some(false)`
    /// when some current op is not visible at the union of the delete ops (an edit the
    /// deleter never saw, SPEC X3); `None` when the contact is not deleted.
    fn delete_decision(&self, obj: &ObjId) -> Result<Option<bool>, MergeError> {
        let doc = self.replica.doc.automerge();
        let deletes: Vec<ChangeHash> = doc
            .get_all(obj, DELETED)?
            .into_iter()
            .filter(|(v, _)| matches!(v, Value::Scalar(s) if matches!(s.as_ref(), ScalarValue::Boolean(true))))
            .filter_map(|(_, id)| doc.hash_for_opid(&id))
            .collect();
        if deletes.is_empty() {
            return Ok(None);
        }
        // Field ops only: the tombstone's own history (an earlier resurrection written by the
        // hub) is no edit a deleter could have missed.
        let keys: Vec<String> = doc.map_range(obj, ..).map(|i| i.key.to_string()).filter(|k| k != DELETED).collect();
        for key in keys {
            let seen: HashSet<_> = doc.get_all_at(obj, key.as_str(), &deletes)?.into_iter().map(|(_, id)| id).collect();
            if doc.get_all(obj, key.as_str())?.into_iter().any(|(_, id)| !seen.contains(&id)) {
                return Ok(Some(false));
            }
        }
        Ok(Some(true))
    }

    /// The winner of a field with concurrent values, recording the conflict; `None` when
    /// the field holds one value.
    fn resolve_field(
        &mut self,
        hub: HubContactId,
        obj: &ObjId,
        field: Field,
    ) -> Result<Option<ScalarValue>, MergeError> {
        let doc = self.replica.doc.automerge();
        let values = doc.get_all(obj, field.name())?;
        if values.len() <= 1 {
            return Ok(None);
        }
        let writers = self.written.get(&(hub, Slot::Field(field))).copied().unwrap_or_default();
        let winner_side = match (writers[0], writers[1]) {
            (Some(e), Some(c)) => {
                if e > c {
                    Side::Exchange
                } else {
                    Side::Crm
                }
            }
            (Some(_), None) => Side::Exchange,
            _ => Side::Crm,
        };
        let mut by_side: [Option<Option<FieldValue>>; 2] = [None, None];
        let mut winner: Option<ScalarValue> = None;
        let mut others = Vec::new();
        for (value, id) in &values {
            let side = doc.hash_for_opid(id).and_then(|h| self.hashes.get(&h).copied());
            let decoded = decode(field, value);
            if side == Some(winner_side) && winner.is_none() {
                winner = Some(scalar(value));
                by_side[winner_side.index()] = Some(decoded);
            } else {
                others.push(decoded);
            }
        }
        let winner = match winner {
            Some(w) => w,
            // The winning side's op is gone (should not happen): keep the document's pick.
            None => match doc.get(obj, field.name())? {
                Some((v, _)) => {
                    by_side[winner_side.index()] = Some(decode(field, &v));
                    scalar(&v)
                }
                None => ScalarValue::Null,
            },
        };
        let won = by_side[winner_side.index()].clone().flatten();
        let lost: Vec<_> = others.into_iter().filter(|o| !equivalent(field, o.as_ref(), won.as_ref())).collect();
        if let Some(loser) = lost.into_iter().next() {
            let loser_side = winner_side.other();
            by_side[loser_side.index()] = Some(loser);
            let [exchange_value, crm_value] = by_side.map(Option::flatten);
            self.log.conflicts.push(Conflict {
                contact: hub,
                field,
                exchange_value,
                crm_value,
                winner: winner_side,
                at: self.ctx.now,
            });
        }
        Ok(Some(winner))
    }
}

fn scalar(value: &Value<'_>) -> ScalarValue {
    match value {
        Value::Scalar(s) => s.as_ref().clone(),
        Value::Object(_) => ScalarValue::Null,
    }
}
