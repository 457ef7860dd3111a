//! A user's replica state in memory: the document, and per side the links, shadows, base
//! heads, intents and cursor. Loaded from and written back to the store; changed entries are
//! tracked so a batch writes only what moved.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use automerge::ChangeHash;
use synchub_store::{AttemptRecord, ContactRecord, IntentRecord, SideRecord, Store, UserWrite};

use super::doc::{ContactDoc, Heads};
use super::MergeError;
use crate::model::{ContactFields, HubContactId, ItemId, Side};

/// What synchub knows of one contact on one side. Invariant: the document read at `base`
/// equals `shadow` (on that side's fields).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct SideEntry {
    /// The side's item, while the side holds the contact.
    pub item: Option<ItemId>,
    /// Its etag/version as last seen.
    pub etag: Option<String>,
    /// The mapped values the side holds.
    pub shadow: Shadow,
    /// The document heads the side's copy corresponds to.
    pub base: Heads,
    /// Whether the item carries synchub's stamps (hub id, link) (SPEC X9).
    pub stamped: bool,
    /// The item the side held before it let the contact go (see `SideRecord::previous`).
    pub previous: Option<ItemId>,
}

/// A side's shadow, kept encoded (postcard) and shared by its copies: a few hundred bytes
/// instead of a map of strings several times that size, and a synced contact's two sides
/// (whose shadows are usually equal) share one. Encoded by [`Shadow::new`] or checked when
/// loaded, so it always decodes.
#[derive(Clone, PartialEq, Eq)]
pub struct Shadow(Arc<[u8]>);

impl Shadow {
    /// The shadow holding `fields`.
    pub fn new(fields: &ContactFields) -> Shadow {
        match postcard::to_allocvec(fields) {
            Ok(bytes) => Shadow(bytes.into()),
            // Not reachable (a map of plain values always encodes). Were it reached, the
            // side's copy would look edited in every field it holds at its next pull.
            Err(e) => {
                tracing::error!(error = %e, "a shadow could not be encoded; kept empty");
                Shadow::default()
            }
        }
    }

    /// A shadow as the store kept it, checked.
    fn stored(bytes: &[u8]) -> Result<Shadow, MergeError> {
        decode_fields(bytes)?;
        Ok(Shadow(bytes.into()))
    }

    /// The values.
    pub fn fields(&self) -> ContactFields {
        decode_fields(&self.0).unwrap_or_else(|e| {
            tracing::error!(error = %e, "a checked shadow did not decode; read as empty");
            ContactFields::new()
        })
    }

    /// The encoding, as stored.
    pub fn bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Default for Shadow {
    fn default() -> Shadow {
        Shadow::new(&ContactFields::new())
    }
}

impl std::fmt::Debug for Shadow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.fields().fmt(f)
    }
}

impl From<&ContactFields> for Shadow {
    fn from(fields: &ContactFields) -> Shadow {
        Shadow::new(fields)
    }
}

/// What a push does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PushKind {
    /// Create the contact on the side.
    Create,
    /// Update the side's item.
    Update,
    /// Delete the side's item.
    Delete,
}

impl PushKind {
    /// The name used in stores, logs and the API.
    pub fn name(self) -> &'static str {
        match self {
            PushKind::Create => "create",
            PushKind::Update => "update",
            PushKind::Delete => "delete",
        }
    }

    fn parse(s: &str) -> Option<PushKind> {
        [PushKind::Create, PushKind::Update, PushKind::Delete].into_iter().find(|k| k.name() == s)
    }
}

/// A planned push, kept until its outcome is known (survives crashes). Planned intents are
/// the durable to-do list; an *attempted* one may have reached the side without the hub
/// hearing back.
#[derive(Clone, Debug, PartialEq)]
pub struct Intent {
    /// What the push does.
    pub kind: PushKind,
    /// The heads the pushed values were read at.
    pub heads: Heads,
    /// The pushed values, encoded as a shadow is (written to the store as they are, and
    /// cloned and compared without a map of strings).
    pub fields: Shadow,
    /// The push was started; its outcome may be unknown.
    pub attempted: bool,
}

impl Intent {
    fn from_record(rec: &IntentRecord) -> Result<Intent, MergeError> {
        let kind =
            PushKind::parse(&rec.op).ok_or_else(|| MergeError::Malformed(format!("unknown push `{}`", rec.op)))?;
        Ok(Intent { kind, heads: hashes(&rec.heads), fields: Shadow::stored(&rec.fields)?, attempted: rec.attempted })
    }

    fn to_record(&self) -> IntentRecord {
        IntentRecord {
            op: self.kind.name().into(),
            heads: raw(&self.heads),
            fields: self.fields.bytes().to_vec(),
            attempted: self.attempted,
        }
    }
}

/// One side's bookkeeping.
#[derive(Clone, Debug, Default)]
pub struct SideState {
    /// Per contact.
    pub entries: HashMap<HubContactId, SideEntry>,
    /// Reverse links.
    pub by_item: HashMap<ItemId, HubContactId>,
    /// Pushes whose outcome is not known yet.
    pub intents: HashMap<HubContactId, Intent>,
    /// The side's change-feed cursor (Graph delta link, CRM cursor), opaque.
    pub cursor: Option<String>,
}

impl SideState {
    /// The contact linked to `item`.
    pub fn hub_for(&self, item: &ItemId) -> Option<HubContactId> {
        self.by_item.get(item).copied()
    }
}

/// A user's replica state.
#[derive(Clone)]
pub struct UserReplica {
    /// The merged document.
    pub doc: ContactDoc,
    sides: [SideState; 2],
    saved_heads: Heads,
    dirty_entries: HashSet<HubContactId>,
    dirty_intents: HashSet<(Side, HubContactId)>,
    /// Intents read from keys of their own (a store of format version 2): the keys go with
    /// the next write, which puts the intents in their contacts' records.
    legacy_intents: HashSet<(Side, HubContactId)>,
    /// How many intents the store's contact records hold (the user's pending count).
    saved_pending: usize,
    dirty_cursors: HashSet<Side>,
    /// Attempt marks not yet released: per (side, mark), the contacts whose intents count
    /// as attempted through the mark alone (their stored records still say planned).
    marks: HashMap<(Side, u64), Vec<HubContactId>>,
    dirty_marks: HashSet<(Side, u64)>,
    next_mark: u64,
}

fn hashes(heads: &[[u8; 32]]) -> Heads {
    heads.iter().map(|h| ChangeHash(*h)).collect()
}

fn raw(heads: &[ChangeHash]) -> Vec<[u8; 32]> {
    heads.iter().map(|h| h.0).collect()
}

fn decode_fields(bytes: &[u8]) -> Result<ContactFields, MergeError> {
    postcard::from_bytes(bytes).map_err(|e| MergeError::Malformed(format!("decoding a shadow: {e}")))
}

/// A shadow as stored in a contact record: once synced, both sides' shadows are usually
/// equal, so a later side's shadow equal to an earlier one's is stored as [`SAME_SHADOW`].
const SAME_SHADOW: &[u8] = &[0xff];

fn encode_shadow(shadow: &Shadow, earlier: Option<&Shadow>) -> Vec<u8> {
    if earlier == Some(shadow) {
        return SAME_SHADOW.to_vec();
    }
    shadow.bytes().to_vec()
}

fn decode_shadow(bytes: &[u8], earlier: Option<&Shadow>) -> Result<Shadow, MergeError> {
    match (bytes, earlier) {
        (SAME_SHADOW, Some(e)) => Ok(e.clone()),
        (SAME_SHADOW, None) => Err(MergeError::Malformed("a shadow refers to a missing earlier one".into())),
        _ => Shadow::stored(bytes),
    }
}

fn parse_side(name: &str) -> Result<Side, MergeError> {
    Side::BOTH
        .into_iter()
        .find(|s| s.name() == name)
        .ok_or_else(|| MergeError::Malformed(format!("unknown side `{name}` in the store")))
}

impl UserReplica {
    /// A fresh user: an empty document, no links.
    pub fn new() -> UserReplica {
        let doc = ContactDoc::new();
        UserReplica {
            doc,
            sides: Default::default(),
            saved_heads: Vec::new(),
            dirty_entries: HashSet::new(),
            dirty_intents: HashSet::new(),
            legacy_intents: HashSet::new(),
            saved_pending: 0,
            dirty_cursors: HashSet::new(),
            marks: HashMap::new(),
            dirty_marks: HashSet::new(),
            next_mark: 0,
        }
    }

    /// Load a user's state from the store (a fresh state when the store has none).
    pub fn load(store: &Store, user: &str) -> Result<UserReplica, MergeError> {
        let stored = store.load_user(user)?;
        let mut replica = UserReplica::new();
        // The count as stored, not as found: where they differ (a format 2 store's intents,
        // or a count a failed write left behind), the next write stores the true one.
        replica.saved_pending = usize::try_from(stored.pending).unwrap_or(usize::MAX);
        if !stored.doc.is_empty() {
            replica.doc = ContactDoc::load(&stored.doc)?;
            replica.saved_heads = replica.doc.heads();
        }
        for (hub, record) in stored.contacts {
            let hub: HubContactId = hub.parse()?;
            let mut earlier: Option<Shadow> = None;
            for (side, rec) in record.sides {
                let side = parse_side(&side)?;
                let item = rec.item.map(|i| i.parse::<ItemId>()).transpose()?;
                let shadow = decode_shadow(&rec.shadow, earlier.as_ref())?;
                earlier = Some(shadow.clone());
                let previous = rec.previous.map(ItemId::from_trusted);
                let entry =
                    SideEntry { item, etag: rec.etag, shadow, base: hashes(&rec.base), stamped: rec.stamped, previous };
                replica.side_mut(side).put_entry(hub, entry);
            }
            for (side, rec) in record.intents {
                replica.side_mut(parse_side(&side)?).intents.insert(hub, Intent::from_record(&rec)?);
            }
        }
        for (side, hub, rec) in stored.legacy_intents {
            let (side, hub) = (parse_side(&side)?, hub.parse()?);
            // Held twice (never written so; a record and a key of the same contact are
            // written in one batch): an attempted one wins, as its push may have happened.
            let legacy = Intent::from_record(&rec)?;
            let intents = &mut replica.side_mut(side).intents;
            match intents.get(&hub) {
                Some(held) if held.attempted || !legacy.attempted => {}
                _ => {
                    intents.insert(hub, legacy);
                }
            }
            replica.legacy_intents.insert((side, hub));
            replica.dirty_intents.insert((side, hub));
        }
        // A stored attempt mark is a batch a crash interrupted: its intents are attempted.
        // The mark is dissolved into them with the next write.
        for (side, mark, rec) in stored.attempts {
            let side = parse_side(&side)?;
            let mark: u64 =
                mark.parse().map_err(|_| MergeError::Malformed(format!("attempt mark `{mark}` is not a number")))?;
            for hub in rec.hubs {
                let hub: HubContactId = hub.parse()?;
                if let Some(intent) = replica.side_mut(side).intents.get_mut(&hub) {
                    intent.attempted = true;
                    replica.dirty_intents.insert((side, hub));
                }
            }
            replica.dirty_marks.insert((side, mark));
            replica.next_mark = replica.next_mark.max(mark.saturating_add(1));
        }
        for (side, cursor) in stored.cursors {
            replica.side_mut(parse_side(&side)?).cursor = Some(cursor);
        }
        Ok(replica)
    }

    /// About how much resident memory keeping the replica costs, from its counts. A freshly
    /// loaded user of 1,500 contacts with 3,000 side entries is 2.4–2.6 MiB of live heap (a
    /// counting allocator: 1.05 MiB the document, about 450 bytes a side entry with its
    /// encoded shadow), one kept after a run with a change 2.2–2.4 MiB; counted here as
    /// 3.4 MiB (1,400 bytes a contact, 500 a side entry), for what the allocator holds
    /// beyond the live bytes (a firm of 1,000 users peaked above its budget even so).
    pub fn approx_bytes(&self) -> usize {
        let [a, b] = &self.sides;
        let contacts = a.entries.len().max(b.entries.len());
        contacts * 1_400 + (a.entries.len() + b.entries.len()) * 500
    }

    /// One side's bookkeeping.
    pub fn side(&self, side: Side) -> &SideState {
        &self.sides[side.index()]
    }

    fn side_mut(&mut self, side: Side) -> &mut SideState {
        &mut self.sides[side.index()]
    }

    /// The entry of `hub` on `side`.
    pub fn entry(&self, side: Side, hub: HubContactId) -> Option<&SideEntry> {
        self.side(side).entries.get(&hub)
    }

    /// Set the entry of `hub` on `side`, keeping the reverse links.
    pub fn set_entry(&mut self, side: Side, hub: HubContactId, mut entry: SideEntry) {
        self.dirty_entries.insert(hub);
        // Both sides of a synced contact usually hold the same values: they share a shadow.
        if let Some(other) = self.entry(side.other(), hub).filter(|o| o.shadow == entry.shadow) {
            entry.shadow = other.shadow.clone();
        }
        self.side_mut(side).put_entry(hub, entry);
    }

    /// Give `a` and `b` new entries on `side` at once (a join swaps their links): the
    /// reverse links follow, whichever items they held before.
    pub fn swap_entries(
        &mut self,
        side: Side,
        a: HubContactId,
        a_entry: Option<SideEntry>,
        b: HubContactId,
        b_entry: Option<SideEntry>,
    ) {
        let state = self.side_mut(side);
        for hub in [a, b] {
            if let Some(item) = state.entries.remove(&hub).and_then(|e| e.item) {
                state.by_item.remove(&item);
            }
        }
        for (hub, entry) in [(a, a_entry), (b, b_entry)] {
            if let Some(entry) = entry {
                state.put_entry(hub, entry);
            }
        }
        self.dirty_entries.extend([a, b]);
    }

    /// Set or clear the intent of `hub` on `side`.
    pub fn set_intent(&mut self, side: Side, hub: HubContactId, intent: Option<Intent>) {
        let intents = &mut self.side_mut(side).intents;
        let changed = match intent {
            Some(i) => intents.insert(hub, i.clone()).as_ref() != Some(&i),
            None => intents.remove(&hub).is_some(),
        };
        if changed {
            self.dirty_intents.insert((side, hub));
        }
    }

    /// Mark `intents` (one side's push batch, each `attempted`) as attempted. An intent stored
    /// as planned with the same push only has its flag turned, and one attempt mark listing
    /// them all is written instead of each intent; any other is written whole. Returns the
    /// mark, to be released once the batch's outcomes are recorded.
    pub fn attempt_all(&mut self, side: Side, intents: Vec<(HubContactId, Intent)>) -> Option<u64> {
        let mut marked = Vec::new();
        for (hub, intent) in intents {
            let clean = !self.dirty_intents.contains(&(side, hub));
            match self.side_mut(side).intents.get_mut(&hub) {
                Some(i)
                    if clean
                        && !i.attempted
                        && i.kind == intent.kind
                        && i.heads == intent.heads
                        && i.fields == intent.fields =>
                {
                    i.attempted = true;
                    marked.push(hub);
                }
                _ => self.set_intent(side, hub, Some(intent)),
            }
        }
        if marked.is_empty() {
            return None;
        }
        let mark = self.next_mark;
        self.next_mark += 1;
        self.marks.insert((side, mark), marked);
        self.dirty_marks.insert((side, mark));
        Some(mark)
    }

    /// Release an attempt mark once its batch's outcomes are recorded: an intent still
    /// attempted (its outcome unknown) is written whole, in the same write that removes the
    /// mark.
    pub fn release_attempts(&mut self, side: Side, mark: u64) {
        let Some(hubs) = self.marks.remove(&(side, mark)) else { return };
        for hub in hubs {
            if self.side(side).intents.get(&hub).is_some_and(|i| i.attempted) {
                self.dirty_intents.insert((side, hub));
            }
        }
        self.dirty_marks.insert((side, mark));
    }

    /// Set a side's cursor.
    pub fn set_cursor(&mut self, side: Side, cursor: Option<String>) {
        if self.side(side).cursor != cursor {
            self.side_mut(side).cursor = cursor;
            self.dirty_cursors.insert(side);
        }
    }

    /// Everything changed since the last call, as one store write (the document as the
    /// changes since the heads last written).
    pub fn take_write(&mut self) -> Result<UserWrite, MergeError> {
        let mut w = UserWrite::new();
        let heads = self.doc.heads();
        if heads != self.saved_heads {
            w.doc_chunk(if self.saved_heads.is_empty() {
                self.doc.save()
            } else {
                self.doc.save_after(&self.saved_heads)
            });
            self.saved_heads = heads;
        }
        let mut dirty = std::mem::take(&mut self.dirty_entries);
        dirty.extend(std::mem::take(&mut self.dirty_intents).into_iter().map(|(_, hub)| hub));
        for hub in dirty {
            let mut record = ContactRecord::default();
            let mut earlier: Option<&Shadow> = None;
            for side in Side::BOTH {
                if let Some(e) = self.entry(side, hub) {
                    let rec = SideRecord {
                        item: e.item.as_ref().map(ToString::to_string),
                        etag: e.etag.clone(),
                        base: raw(&e.base),
                        shadow: encode_shadow(&e.shadow, earlier),
                        stamped: e.stamped,
                        previous: e.previous.as_ref().map(ToString::to_string),
                    };
                    earlier = Some(&e.shadow);
                    record.sides.push((side.name().to_string(), rec));
                }
                if let Some(i) = self.side(side).intents.get(&hub) {
                    record.intents.push((side.name().to_string(), i.to_record()));
                }
            }
            w.contact(&hub.to_string(), Some(record));
        }
        for (side, hub) in std::mem::take(&mut self.legacy_intents) {
            w.drop_legacy_intent(side.name(), &hub.to_string());
        }
        let pending = self.sides.iter().map(|s| s.intents.len()).sum();
        if pending != self.saved_pending {
            w.pending(pending as u64);
            self.saved_pending = pending;
        }
        for (side, mark) in std::mem::take(&mut self.dirty_marks) {
            let record = self
                .marks
                .get(&(side, mark))
                .map(|hubs| AttemptRecord { hubs: hubs.iter().map(ToString::to_string).collect() });
            w.attempt(side.name(), &mark.to_string(), record);
        }
        for side in std::mem::take(&mut self.dirty_cursors) {
            w.cursor(side.name(), self.side(side).cursor.clone());
        }
        Ok(w)
    }

    /// Mark every contact's entries as written, so the next write carries all of them
    /// (used after building a document from scratch, and by the discard path).
    pub fn mark_all_dirty(&mut self) {
        for side in Side::BOTH {
            let hubs: Vec<_> = self.side(side).entries.keys().copied().collect();
            self.dirty_entries.extend(hubs);
        }
    }
}

impl Default for UserReplica {
    fn default() -> Self {
        UserReplica::new()
    }
}

impl SideState {
    fn put_entry(&mut self, hub: HubContactId, entry: SideEntry) {
        if let Some(old) = self.entries.get(&hub).and_then(|e| e.item.clone()) {
            if Some(&old) != entry.item.as_ref() {
                self.by_item.remove(&old);
            }
        }
        if let Some(item) = &entry.item {
            self.by_item.insert(item.clone(), hub);
        }
        self.entries.insert(hub, entry);
    }
}
