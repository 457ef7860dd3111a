//! Observe: turn what a side reports into document changes. Each changed item is diffed
//! against its shadow; only differing fields are written, at that contact's base heads, so
//! the write is concurrent with exactly what the side had not yet seen. Contacts sharing
//! base heads go into one change.

use std::collections::{BTreeMap, HashMap};

use automerge::{ObjId, ScalarValue};

use super::doc::{encode, write_at, Author, Heads, DELETED};
use super::run::{Merge, Slot};
use super::state::{Intent, PushKind, Shadow, SideEntry};
use super::{ItemChange, MergeError, Observed, SideItem};
use crate::model::{equivalent, ContactFields, Field, FieldSet, HubContactId, ItemId, Side};

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
        self.relink_moved_items(side, &observed, &last);
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
                        Some(hub) if self.is_new_person(side, hub, &item) => {
                            // SPEC C10: the old person leaves (their CRM record and history
                            // untouched); the item becomes a new contact, stamped again.
                            self.observe_removed(side, &o.item, &mut groups);
                            let new = self.new_id(side, &o.item, &SideItem { stamp: None, ..item.clone() }, &creates);
                            self.log.split.push((hub, new));
                            creates.push((new, o.item, item));
                            continue;
                        }
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

    /// Whether an Outlook edit replaced the person (SPEC C10): given name, surname and
    /// primary e-mail all changed, beyond case and white space, from values that were set.
    fn is_new_person(&mut self, side: Side, hub: HubContactId, item: &SideItem) -> bool {
        if !self.ctx.split_identity || side != Side::Exchange || self.replica.side(side).intents.contains_key(&hub) {
            // With a push of ours pending or unconfirmed, the new name may be our own write.
            return false;
        }
        let Some(obj) = self.replica.doc.contact_obj(hub) else { return false };
        let current = self.replica.doc.read(&obj, None).fields;
        let Some(shadow) = self.replica.entry(side, hub).map(|e| e.shadow.fields()) else { return false };
        let norm = |f: &ContactFields, field: Field| -> String {
            f.get(field)
                .and_then(|v| v.as_text())
                .map(|s| s.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase())
                .unwrap_or_default()
        };
        let identity = [Field::GivenName, Field::Surname, Field::Email1];
        // The item showing the document's own identity is the document's rename reaching it.
        if identity.iter().all(|f| norm(&current, *f) == norm(&item.fields, *f)) {
            return false;
        }
        identity.into_iter().all(|field| {
            let (old, new) = (norm(&shadow, field), norm(&item.fields, field));
            !old.is_empty() && !new.is_empty() && old != new
        })
    }

    fn observe_removed(&mut self, side: Side, item: &ItemId, groups: &mut BTreeMap<Heads, Vec<Pending>>) {
        let Some(hub) = self.replica.side(side).hub_for(item) else { return };
        let (Some(obj), Some(entry)) = (self.replica.doc.contact_obj(hub), self.replica.entry(side, hub).cloned())
        else {
            return;
        };
        self.replica.set_intent(side, hub, None);
        self.touched.insert(hub);
        // The link goes; the shadow and base stay as the side's last knowledge of the
        // contact, the baseline if the user brings the item back.
        let after = SideEntry { item: None, etag: None, stamped: false, previous: entry.item.clone(), ..entry.clone() };
        let pending = Pending {
            hub,
            obj,
            puts: vec![(Slot::Deleted, ScalarValue::Boolean(true))],
            modified: self.ctx.now_ms(),
            after,
        };
        groups.entry(entry.base).or_default().push(pending);
    }

    /// An item whose id changed (removed under its old id, reported under a new one
    /// carrying the same hub id in the same batch, as a move or an export/import does) is
    /// the same contact: the link moves to the new id instead of a delete plus a new contact
    /// (SPEC X9).
    fn relink_moved_items(&mut self, side: Side, observed: &[Observed], last: &HashMap<ItemId, usize>) {
        let removed: HashMap<HubContactId, ItemId> = observed
            .iter()
            .enumerate()
            .filter(|(i, o)| last.get(&o.item) == Some(i) && o.change == ItemChange::Removed)
            .filter_map(|(_, o)| self.replica.side(side).hub_for(&o.item).map(|h| (h, o.item.clone())))
            .collect();
        if removed.is_empty() {
            return;
        }
        for (i, o) in observed.iter().enumerate() {
            let ItemChange::Upsert(item) = &o.change else { continue };
            let Some(hub) = item.stamp else { continue };
            if last.get(&o.item) != Some(&i) || removed.get(&hub).is_none_or(|old| *old == o.item) {
                continue;
            }
            if self.replica.side(side).hub_for(&o.item).is_some() {
                continue;
            }
            if let Some(mut entry) = self.replica.entry(side, hub).cloned() {
                entry.item = Some(o.item.clone());
                self.replica.set_entry(side, hub, entry);
                self.log.adopted.push((side, hub));
            }
        }
    }

    /// An unlinked item that carries a hub id the document knows (and that the side has not
    /// linked to another item) is adopted, never re-created (SPEC N1, X9).
    fn adopt(&mut self, side: Side, item_id: &ItemId, item: &SideItem, set: FieldSet) -> Option<HubContactId> {
        if let Some(hub) = self.assigned.get(&(side, item_id.clone())).copied() {
            return self.adopt_pair(side, item_id, hub, item, set);
        }
        let hub = item.stamp?;
        let obj = self.replica.doc.contact_obj(hub)?;
        let mut entry = self.replica.entry(side, hub).cloned().unwrap_or_default();
        if entry.item.is_some() {
            return None; // a copy of a linked item: a new contact
        }
        match self.replica.side(side).intents.get(&hub) {
            // Our create reached the side: the item was made with these values.
            Some(Intent { kind: PushKind::Create, heads, fields, attempted: true }) => {
                entry.shadow = fields.clone();
                entry.base = heads.clone();
            }
            // The side held the contact before (a restored item): what it held then is the
            // baseline, so only what differs from that counts as the side's edit.
            _ if !entry.base.is_empty() => {}
            // No record of our push: the item is taken to hold the contact as the run found
            // it (what it shows beyond that is the side's edit, concurrent with this run's
            // other writes). A contact made earlier in this run is read as it is now.
            _ if self.created.contains(&hub) || self.start_heads.is_empty() => {
                entry.shadow = Shadow::new(&self.replica.doc.read(&obj, None).fields.restricted(set));
                entry.base = self.replica.doc.heads();
            }
            _ => {
                entry.shadow =
                    Shadow::new(&self.replica.doc.read(&obj, Some(&self.start_heads)).fields.restricted(set));
                entry.base = self.start_heads.clone();
            }
        }
        entry.item = Some(item_id.clone());
        entry.stamped = true;
        self.replica.set_entry(side, hub, entry);
        self.log.adopted.push((side, hub));
        if self.replica.doc.read(&obj, None).deleted {
            // The user brought back an item the hub had deleted (restored from Deleted
            // Items, say): that is an edit after the delete, so the contact lives again.
            self.restores.insert(hub);
        }
        Some(hub)
    }

    /// The second item of a pair joins the contact the first one made: what it holds is
    /// written over the first's values, what it lacks is kept from them (SPEC C3: both
    /// sides end with the union). The first item of a pair is not adopted: it makes the
    /// contact under the pair's id.
    fn adopt_pair(
        &mut self,
        side: Side,
        item_id: &ItemId,
        hub: HubContactId,
        item: &SideItem,
        set: FieldSet,
    ) -> Option<HubContactId> {
        let obj = self.replica.doc.contact_obj(hub)?;
        // Where the two differ the CRM's value is kept: a CRM item's shadow is the contact's
        // values of the synced fields the item holds, so what differs is written (the item
        // joins at the document's heads: nothing is concurrent with it) and what is the same
        // is not written again. An Outlook item joining a contact the CRM made adds only what
        // the contact lacks (its shadow claims the rest as seen).
        let current = self.replica.doc.read(&obj, None).fields;
        let shadow = match side {
            Side::Crm => {
                let mut shadow = ContactFields::new();
                for (f, _) in item.fields.iter().filter(|(f, _)| set.contains(*f)) {
                    shadow.set(f, current.get(f).cloned());
                }
                shadow
            }
            Side::Exchange => {
                let mut shadow = item.fields.clone();
                for f in Field::ALL {
                    if current.get(*f).is_none() {
                        shadow.set(*f, None);
                    }
                }
                shadow
            }
        };
        let entry = crate::merge::SideEntry {
            item: Some(item_id.clone()),
            etag: None,
            shadow: Shadow::new(&shadow),
            base: self.replica.doc.heads(),
            stamped: false,
            previous: None,
        };
        self.replica.set_entry(side, hub, entry);
        Some(hub)
    }

    /// The id a new item gets: its pair's, its stamp when the document does not know it (a
    /// rebuild re-links by stamps, SPEC X9), else a fresh one.
    fn new_id(
        &mut self,
        side: Side,
        item_id: &ItemId,
        item: &SideItem,
        creates: &[(HubContactId, ItemId, SideItem)],
    ) -> HubContactId {
        if let Some(hub) = self.assigned.get(&(side, item_id.clone())) {
            return *hub;
        }
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
        if side == Side::Crm && entry.stamped && item.stamp.is_none() {
            // The list entry carrying our stamp was made anew: the contact was taken off the
            // user's list and put back (C11), which is how the CRM drops it. The entry is
            // stamped again by the next push, and putting the contact back is the user's act
            // after any delete this run meets (SPEC X3), so it keeps the contact. The new
            // entry is empty: its list-level fields are no edit of the user's, so the next
            // push writes the contact's values back into it.
            let mut shadow = entry.shadow.fields();
            for f in Field::ALL.iter().copied().filter(|f| f.is_list_level()) {
                shadow.set(f, fields.get(f).cloned());
            }
            entry.shadow = Shadow::new(&shadow);
            entry.stamped = false;
            self.touched.insert(hub);
            if self.replica.doc.read(&obj, None).deleted {
                self.restores.insert(hub);
            }
        }
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
        let mut diff: Vec<Slot> = fields.differing(&entry.shadow.fields(), set).into_iter().map(Slot::Field).collect();
        if self.restores.contains(&hub) {
            diff.push(Slot::Deleted);
            self.log.resurrected.push(hub);
        }
        if diff.is_empty() {
            self.replica.set_entry(side, hub, entry);
            return;
        }
        let puts = diff
            .iter()
            .map(|slot| match slot {
                Slot::Field(f) => (*slot, encode(fields.get(*f))),
                Slot::Deleted => (*slot, ScalarValue::Boolean(false)),
            })
            .collect();
        let base = entry.base.clone();
        entry.shadow = Shadow::new(&fields);
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
            let entry = SideEntry {
                item: Some(item_id),
                etag,
                shadow: Shadow::new(&fields),
                base: vec![hash],
                stamped,
                previous: None,
            };
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
    let fields = intent.fields.fields();
    let pushed = fields.differing(&entry.shadow.fields(), set);
    let applied = item.equivalent_on(&fields, set)
        || (!pushed.is_empty() && pushed.iter().all(|f| equivalent(*f, item.get(*f), fields.get(*f))));
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
