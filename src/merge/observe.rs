//! Observe: turn what a side reports into document changes. Each changed item is diffed
//! against its shadow; only differing fields are written, at that contact's base heads, so
//! the write is concurrent with exactly what the side had not yet seen. Contacts sharing
//! base heads go into one change.

use std::collections::{BTreeMap, HashMap};

use automerge::{ObjId, ScalarValue};

use super::doc::{encode, write_at, Author, Heads, DELETED};
use super::run::{Merge, Slot};
use super::state::{Intent, PushKind, SideEntry};
use super::{ItemChange, MergeError, Observed, SideItem};
use crate::model::{equivalent, ContactFields, FieldSet, HubContactId, ItemId, Side};

struct Pending {
    hub: HubContactId,
    obj: ObjId,
    puts: Vec<(Slot, ScalarValue)>,
    modified: i64,
    after: SideEntry,
}

impl Merge<'_> {
    /// Observe one side's changes since its cursor. Duplicates of an item within the batch
    /// are folded (the last one counts).
    pub fn observe(&mut self, side: Side, observed: Vec<Observed>) -> Result<(), MergeError> {
        let set = self.ctx.fields[side.index()];
        let mut last: HashMap<ItemId, usize> = HashMap::new();
        for (i, o) in observed.iter().enumerate() {
            last.insert(o.item.clone(), i);
        }
        let mut groups: BTreeMap<Heads, Vec<Pending>> = BTreeMap::new();
        let mut creates: Vec<(HubContactId, ItemId, SideItem)> = Vec::new();
        for (i, o) in observed.into_iter().enumerate() {
            if last.get(&o.item) != Some(&i) {
                continue;
            }
            match o.change {
                ItemChange::Removed => self.observe_removed(side, &o.item, &mut groups),
                ItemChange::Upsert(item) => {
                    let hub = match self.replica.side(side).hub_for(&o.item) {
                        Some(hub) if self.replica.doc.contact_obj(hub).is_some() => hub,
                        _ => match self.adopt(side, &o.item, &item, set) {
                            Some(hub) => hub,
                            None => {
                                let hub = self.new_id(side, &o.item, &item, &creates);
                                creates.push((hub, o.item, item));
                                continue;
                            }
                        },
                    };
                    self.observe_linked(side, hub, item, set, &mut groups);
                }
            }
        }
        self.commit_groups(side, groups)?;
        self.create(side, creates, set)
    }

    fn observe_removed(&mut self, side: Side, item: &ItemId, groups: &mut BTreeMap<Heads, Vec<Pending>>) {
        let Some(hub) = self.replica.side(side).hub_for(item) else { return };
        let (Some(obj), Some(entry)) = (self.replica.doc.contact_obj(hub), self.replica.entry(side, hub).cloned())
        else {
            return;
        };
        self.replica.set_intent(side, hub, None);
        self.touched.insert(hub);
        let after = SideEntry {
            item: None,
            etag: None,
            shadow: ContactFields::new(),
            base: entry.base.clone(),
            stamped: false,
        };
        let pending = Pending {
            hub,
            obj,
            puts: vec![(Slot::Deleted, ScalarValue::Boolean(true))],
            modified: self.ctx.now_ms(),
            after,
        };
        groups.entry(entry.base).or_default().push(pending);
    }

    /// An unlinked item that carries a hub id the document knows (and that the side has not
    /// linked to another item) is adopted, never re-created (SPEC N1, X9).
    fn adopt(&mut self, side: Side, item_id: &ItemId, item: &SideItem, set: FieldSet) -> Option<HubContactId> {
        let hub = item.stamp?;
        let obj = self.replica.doc.contact_obj(hub)?;
        let mut entry = self.replica.entry(side, hub).cloned().unwrap_or_default();
        if entry.item.is_some() {
            return None; // a copy of a linked item: a new contact
        }
        match self.replica.side(side).intents.get(&hub) {
            Some(Intent { kind: PushKind::Create, heads, fields, .. }) => {
                entry.shadow = fields.clone();
                entry.base = heads.clone();
            }
            _ => {
                entry.shadow = self.replica.doc.read(&obj, None).fields.restricted(set);
                entry.base = self.replica.doc.heads();
            }
        }
        entry.item = Some(item_id.clone());
        entry.stamped = true;
        self.replica.set_entry(side, hub, entry);
        self.log.adopted.push((side, hub));
        Some(hub)
    }

    /// The id a new item gets: its stamp when the document does not know it (a rebuild
    /// re-links by stamps, SPEC X9), else a fresh one.
    fn new_id(
        &mut self,
        side: Side,
        item_id: &ItemId,
        item: &SideItem,
        creates: &[(HubContactId, ItemId, SideItem)],
    ) -> HubContactId {
        match item.stamp {
            Some(h) if self.replica.doc.contact_obj(h).is_none() && !creates.iter().any(|(c, _, _)| *c == h) => h,
            _ if self.ctx.deterministic_ids => {
                use std::hash::{Hash, Hasher};
                let mut hasher = std::hash::DefaultHasher::new();
                (self.ctx.now_ms(), side, item_id.as_str(), creates.len()).hash(&mut hasher);
                let high = hasher.finish();
                item_id.as_str().len().hash(&mut hasher);
                HubContactId::from_u128((u128::from(high) << 64) | u128::from(hasher.finish()))
            }
            _ => HubContactId::mint(),
        }
    }

    fn observe_linked(
        &mut self,
        side: Side,
        hub: HubContactId,
        item: SideItem,
        set: FieldSet,
        groups: &mut BTreeMap<Heads, Vec<Pending>>,
    ) {
        let Some(obj) = self.replica.doc.contact_obj(hub) else { return };
        let mut entry = self.replica.entry(side, hub).cloned().unwrap_or_default();
        entry.etag = item.etag.clone();
        let fields = item.fields.restricted(set);
        if let Some(intent) = self.replica.side(side).intents.get(&hub).cloned() {
            // What the item shows now supersedes the intent; the contact is planned again.
            reconcile(&mut entry, &intent, &fields, item.stamp == Some(hub), set);
            self.replica.set_intent(side, hub, None);
            self.touched.insert(hub);
        }
        // No shortcut for an item that happens to equal the document: the same value typed
        // on both sides is written at the side's base like any edit, so a later change by
        // the other side still meets it as a concurrent value (echoes of our own pushes
        // equal the shadow and write nothing; crashed pushes are settled by their intents).
        let diff = fields.differing(&entry.shadow, set);
        if diff.is_empty() {
            self.replica.set_entry(side, hub, entry);
            return;
        }
        let puts = diff.iter().map(|f| (Slot::Field(*f), encode(fields.get(*f)))).collect();
        let base = entry.base.clone();
        entry.shadow = fields;
        let pending = Pending { hub, obj, puts, modified: item.modified.timestamp_millis(), after: entry };
        groups.entry(base).or_default().push(pending);
    }

    fn commit_groups(&mut self, side: Side, groups: BTreeMap<Heads, Vec<Pending>>) -> Result<(), MergeError> {
        let time = self.ctx.now_ms();
        for (base, pendings) in groups {
            let puts: Vec<(ObjId, &str, ScalarValue)> = pendings
                .iter()
                .flat_map(|p| p.puts.iter().map(|(slot, v)| (p.obj.clone(), slot.key(), v.clone())))
                .collect();
            let hash = write_at(self.replica.doc.automerge_mut(), Some(&base), Author::Side(side), time, &puts)?;
            if let Some(h) = hash {
                self.hashes.insert(h, side);
            }
            for mut p in pendings {
                if let Some(h) = hash {
                    p.after.base = vec![h];
                }
                for (slot, _) in &p.puts {
                    self.written.entry((p.hub, *slot)).or_default()[side.index()] = Some(p.modified);
                }
                self.touched.insert(p.hub);
                self.replica.set_entry(side, p.hub, p.after);
            }
        }
        Ok(())
    }

    fn create(
        &mut self,
        side: Side,
        creates: Vec<(HubContactId, ItemId, SideItem)>,
        set: FieldSet,
    ) -> Result<(), MergeError> {
        let mut contacts: Vec<(HubContactId, ContactFields)> = Vec::with_capacity(creates.len());
        let mut rest = Vec::with_capacity(creates.len());
        for (hub, item_id, item) in creates {
            let fields = if set == FieldSet::all() { item.fields } else { item.fields.restricted(set) };
            contacts.push((hub, fields));
            rest.push((item_id, item.etag, item.stamp));
        }
        let Some(hash) = self.replica.doc.create(Author::Side(side), &contacts, self.ctx.now_ms())? else {
            return Ok(());
        };
        self.hashes.insert(hash, side);
        for ((hub, fields), (item_id, etag, stamp)) in contacts.into_iter().zip(rest) {
            let stamped = stamp == Some(hub);
            let entry = SideEntry { item: Some(item_id), etag, shadow: fields, base: vec![hash], stamped };
            self.replica.set_entry(side, hub, entry);
            self.created.insert(hub);
            self.touched.insert(hub);
            self.log.minted.push((side, hub));
        }
        Ok(())
    }
}

/// An attempted push may or may not have reached the side before a crash (a planned one
/// never did). Updates are
/// atomic: when the item shows every value the push changed, the push was applied, and the
/// side's copy corresponds to the intent's heads.
fn reconcile(entry: &mut SideEntry, intent: &Intent, item: &ContactFields, stamped: bool, set: FieldSet) {
    if !intent.attempted || intent.kind == PushKind::Delete || !stamped {
        return;
    }
    let pushed = intent.fields.differing(&entry.shadow, set);
    let applied = item.equivalent_on(&intent.fields, set)
        || (!pushed.is_empty() && pushed.iter().all(|f| equivalent(*f, item.get(*f), intent.fields.get(*f))));
    if applied {
        entry.shadow = intent.fields.clone();
        entry.base = intent.heads.clone();
        entry.stamped = true;
    }
}

impl Slot {
    /// The key in the contact's map.
    pub fn key(self) -> &'static str {
        match self {
            Slot::Field(f) => f.name(),
            Slot::Deleted => DELETED,
        }
    }
}
