//! An in-memory side with a change feed, idempotent stamped creates, versions for
//! conditional writes and scriptable faults: the stand-in for Exchange or the CRM in the
//! demo, the property tests and the benches. Users edit it directly; the engine drives it
//! through [`ContactReplica`].

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

use chrono::DateTime;
use synchub_connectors::{ConnectorError, ErrorKind};

use super::{ContactReplica, Pull};
use crate::merge::{ItemChange, Observed, PushKind, PushOp, PushOutcome, SideItem};
use crate::model::{ContactFields, Field, FieldValue, HubContactId, ItemId, Side};

/// A fault for the next push.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Answer an error without applying the write.
    Fail,
    /// Apply the write, then answer an error (the acknowledgement is lost).
    LostAck,
    /// Apply the write, then die (panic): a crash between the push and its bookkeeping.
    CrashAfter,
    /// Die before applying the write.
    CrashBefore,
}

/// One item.
#[derive(Clone, Debug, PartialEq)]
pub struct MemItem {
    /// The mapped fields.
    pub fields: ContactFields,
    /// Bumped on every change (the etag).
    pub version: u64,
    /// Last modification time (ms on the shared clock).
    pub modified: i64,
    /// synchub's stamp.
    pub stamp: Option<HubContactId>,
}

/// An in-memory side.
#[derive(Debug)]
pub struct MemorySide {
    side: Side,
    items: BTreeMap<ItemId, MemItem>,
    feed: Vec<ItemId>,
    /// Feed positions before this one are forgotten (cursors below it expire).
    feed_floor: usize,
    next_id: u64,
    clock: Arc<AtomicI64>,
    faults: VecDeque<Option<Fault>>,
    /// Every stamp each item ever carried (for checks: a restamp means a duplicate).
    pub stamp_history: HashMap<ItemId, Vec<HubContactId>>,
    /// Pull attempts fail while this is set.
    pub down: bool,
}

impl MemorySide {
    /// An empty side on a clock shared with the other side (so modification times compare).
    pub fn new(side: Side, clock: Arc<AtomicI64>) -> MemorySide {
        MemorySide {
            side,
            items: BTreeMap::new(),
            feed: Vec::new(),
            feed_floor: 0,
            next_id: 1,
            clock,
            faults: VecDeque::new(),
            stamp_history: HashMap::new(),
            down: false,
        }
    }

    fn tick(&self) -> i64 {
        self.clock.fetch_add(1, Ordering::SeqCst) + 1
    }

    /// The items.
    pub fn items(&self) -> &BTreeMap<ItemId, MemItem> {
        &self.items
    }

    /// A user creates an item.
    pub fn user_create(&mut self, fields: ContactFields) -> ItemId {
        let id = self.new_id();
        let modified = self.tick();
        self.items.insert(id.clone(), MemItem { fields, version: 1, modified, stamp: None });
        self.feed.push(id.clone());
        id
    }

    /// A user sets (or clears) a field.
    pub fn user_edit(&mut self, item: &ItemId, field: Field, value: Option<FieldValue>) -> bool {
        let modified = self.tick();
        let Some(it) = self.items.get_mut(item) else { return false };
        it.fields.set(field, value);
        it.version += 1;
        it.modified = modified;
        self.feed.push(item.clone());
        true
    }

    /// A user deletes an item.
    pub fn user_delete(&mut self, item: &ItemId) -> Option<MemItem> {
        self.tick();
        let gone = self.items.remove(item)?;
        self.feed.push(item.clone());
        Some(gone)
    }

    /// A user restores a deleted item (as from Outlook's Deleted Items): it comes back
    /// under a new id with its fields and synchub's stamps.
    pub fn user_restore(&mut self, gone: MemItem) -> ItemId {
        let id = self.new_id();
        let modified = self.tick();
        if let Some(hub) = gone.stamp {
            self.stamp_history.entry(id.clone()).or_default().push(hub);
        }
        self.items.insert(id.clone(), MemItem { modified, version: 1, ..gone });
        self.feed.push(id.clone());
        id
    }

    /// Queue faults for the next pushes (`None`: that push succeeds).
    pub fn script(&mut self, faults: impl IntoIterator<Item = Option<Fault>>) {
        self.faults.extend(faults);
    }

    /// Drop faults not used by the last run.
    pub fn clear_faults(&mut self) {
        self.faults.clear();
    }

    /// Forget the feed so far: every cursor expires (HTTP 410 on the real services).
    pub fn expire_cursors(&mut self) {
        self.feed_floor = self.feed.len();
    }

    fn new_id(&mut self) -> ItemId {
        let id = format!("{}-{}", self.side.name(), self.next_id);
        self.next_id += 1;
        ItemId::from_trusted(id)
    }

    fn snapshot(&self, id: &ItemId) -> Option<SideItem> {
        self.items.get(id).map(|it| SideItem {
            fields: it.fields.clone(),
            modified: DateTime::from_timestamp_millis(it.modified).unwrap_or_default(),
            etag: Some(it.version.to_string()),
            stamp: it.stamp,
        })
    }

    /// The item carrying `hub`'s stamp.
    fn stamped(&self, hub: HubContactId) -> Option<ItemId> {
        self.items.iter().find(|(_, it)| it.stamp == Some(hub)).map(|(id, _)| id.clone())
    }

    fn stamp(&mut self, id: &ItemId, hub: HubContactId) {
        if let Some(it) = self.items.get_mut(id) {
            it.stamp = Some(hub);
        }
        let history = self.stamp_history.entry(id.clone()).or_default();
        if history.last() != Some(&hub) {
            history.push(hub);
        }
    }

    fn apply(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        let modified = self.tick();
        match op.kind {
            PushKind::Create => {
                if let Some(id) = self.stamped(op.hub) {
                    return Ok(PushOutcome::Created { etag: self.snapshot(&id).and_then(|s| s.etag), item: id });
                }
                let id = self.new_id();
                self.items.insert(id.clone(), MemItem { fields: op.fields.clone(), version: 1, modified, stamp: None });
                self.stamp(&id, op.hub);
                self.feed.push(id.clone());
                Ok(PushOutcome::Created { item: id, etag: Some("1".into()) })
            }
            PushKind::Update => {
                let id = op
                    .item
                    .clone()
                    .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidData, "update without item"))?;
                let it =
                    self.items.get_mut(&id).ok_or_else(|| ConnectorError::new(ErrorKind::NotFound, id.to_string()))?;
                if op.etag.as_deref().is_some_and(|e| e != it.version.to_string()) {
                    return Err(ConnectorError::new(ErrorKind::PreconditionFailed, "version moved on"));
                }
                it.fields = op.fields.clone();
                it.version += 1;
                it.modified = modified;
                let etag = Some(it.version.to_string());
                self.stamp(&id, op.hub);
                self.feed.push(id);
                Ok(PushOutcome::Updated { etag })
            }
            PushKind::Delete => {
                let id = op
                    .item
                    .clone()
                    .ok_or_else(|| ConnectorError::new(ErrorKind::InvalidData, "delete without item"))?;
                if self.items.remove(&id).is_some() {
                    self.feed.push(id);
                }
                Ok(PushOutcome::Deleted)
            }
        }
    }
}

impl ContactReplica for MemorySide {
    fn side(&self) -> Side {
        self.side
    }

    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        if self.down {
            return Err(ConnectorError::new(ErrorKind::Unavailable, "side is down"));
        }
        let ids: Vec<ItemId> = match cursor {
            None => self.items.keys().cloned().collect(),
            Some(c) => {
                let from: usize =
                    c.parse().map_err(|_| ConnectorError::new(ErrorKind::ResyncRequired, "unknown cursor"))?;
                if from < self.feed_floor || from > self.feed.len() {
                    return Err(ConnectorError::new(ErrorKind::ResyncRequired, "cursor expired"));
                }
                self.feed[from..].to_vec()
            }
        };
        let items = ids
            .into_iter()
            .map(|id| {
                let change = self.snapshot(&id).map_or(ItemChange::Removed, ItemChange::Upsert);
                Observed { item: id, change }
            })
            .collect();
        Ok(Pull { items, cursor: self.feed.len().to_string(), full: cursor.is_none() })
    }

    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        let lost = || ConnectorError::new(ErrorKind::Unavailable, "connection reset");
        match self.faults.pop_front().flatten() {
            None => self.apply(op),
            Some(Fault::Fail) => Err(lost()),
            Some(Fault::LostAck) => self.apply(op).and(Err(lost())),
            Some(Fault::CrashBefore) => panic!("simulated crash before a push"),
            Some(Fault::CrashAfter) => {
                let _ = self.apply(op);
                panic!("simulated crash after a push")
            }
        }
    }

    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        let id = match (&op.item, op.kind) {
            (Some(id), PushKind::Update | PushKind::Delete) => Some(id.clone()),
            _ => self.stamped(op.hub),
        };
        Ok(id.and_then(|id| self.snapshot(&id).map(|s| (id, s))))
    }
}
