//! The CRM side as the engine drives it: a user's contact list over the CRM client, mapped
//! through FIELDS.md. Firm fields are written whole (read-modify-write, so what synchub
//! does not map is kept) with `If-Match` on the firm version; the user's own entry (notes,
//! categories, Private, and the hub id as `external_ref`, SPEC X9) is PATCHed with
//! `If-Match` on the entry version. An item's etag is `{firm version}.{entry version}`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::crm::wire::{Address, ChangeOp, Contact, Email, Entry, Phone};
use synchub_connectors::{ConnectorError, ErrorKind};
use tokio::runtime::Handle;

use crate::engine::{ContactReplica, Pull};
use crate::merge::{ItemChange, Observed, PushKind, PushOp, PushOutcome, SideItem};
use crate::model::{ContactFields, Field, FieldSet, FieldValue, HubContactId, ItemId, Side};

/// Requests in flight at once for one user's pushes.
const PARALLEL: usize = 16;

/// Up to this many updates of contacts not read this run are looked up by e-mail address,
/// one request each; more, and the whole list is read once instead.
const LOOKUPS: usize = 50;

/// One user's CRM contact list.
pub struct CrmSide {
    client: CrmClient,
    rt: Handle,
    user: String,
    set: FieldSet,
    /// Contacts as last read (with the user's entry), for read-modify-write.
    seen: Seen,
    /// The etag each of this side's own writes left (ContactID → `{firm}.{entry}`): the
    /// next feed shows them again, and they are known already (as the Graph side does).
    written: HashMap<String, String>,
}

/// The contacts read during a run, for read-modify-write, kept as their JSON (about a third
/// of the parsed size: a first listing holds every contact of the list).
#[derive(Default)]
struct Seen(HashMap<String, Box<[u8]>>);

impl Seen {
    fn insert(&mut self, c: &Contact) {
        match serde_json::to_vec(c) {
            Ok(bytes) => {
                self.0.insert(c.contact_id.clone(), bytes.into_boxed_slice());
            }
            // Not kept: the next write of it reads the list again.
            Err(e) => {
                tracing::warn!(contact = %c.contact_id, error = %e, "a CRM contact could not be kept");
                self.remove(&c.contact_id);
            }
        }
    }

    fn get(&self, id: &str) -> Option<Contact> {
        self.0.get(id).and_then(|bytes| serde_json::from_slice(bytes).ok())
    }

    fn contains_key(&self, id: &str) -> bool {
        self.0.contains_key(id)
    }

    fn remove(&mut self, id: &str) {
        self.0.remove(id);
    }

    fn clear(&mut self) {
        *self = Seen::default();
    }

    fn contacts(&self) -> impl Iterator<Item = Contact> + '_ {
        self.0.values().filter_map(|bytes| serde_json::from_slice(bytes).ok())
    }
}

impl CrmSide {
    /// The side for CRM user `user`. Call from outside the runtime (a blocking task).
    /// `set`: the fields this side carries (SPEC C8); the others are left as they are.
    pub fn new(client: CrmClient, rt: Handle, user: &str, set: FieldSet) -> CrmSide {
        CrmSide { client, rt, user: user.to_string(), set, seen: Seen::default(), written: HashMap::new() }
    }

    /// Carry `set` from now on (the settings changed: SPEC C8).
    pub fn set_fields(&mut self, set: FieldSet) {
        self.set = set;
    }

    /// Forget the contacts read (a later update of one looks it up by e-mail address, or
    /// reads the list again).
    pub fn forget_items(&mut self) {
        self.seen.clear();
    }

    /// Read the whole list again (the CRM has no single-contact read): for items not seen
    /// since the hub started, and for read-backs.
    fn relist(&mut self) -> Result<(), ConnectorError> {
        let (changes, _) = self.rt.block_on(self.client.list_changes(&self.user, None))?;
        self.seen.clear();
        for change in changes {
            if let (ChangeOp::Upsert, Some(c)) = (change.op, change.contact) {
                self.seen.insert(&c);
            }
        }
        Ok(())
    }
}

const EMAILS: [(Field, &str); 3] = [(Field::Email1, "business"), (Field::Email2, "home"), (Field::Email3, "other")];
const PHONES: [(Field, &str); 10] = [
    (Field::BusinessPhone, "business"),
    (Field::BusinessPhone2, "business2"),
    (Field::HomePhone, "home"),
    (Field::HomePhone2, "home2"),
    (Field::MobilePhone, "mobile"),
    (Field::BusinessFax, "business_fax"),
    (Field::HomeFax, "home_fax"),
    (Field::OtherPhone, "other"),
    (Field::AssistantPhone, "assistant"),
    (Field::Pager, "pager"),
];
const ADDRESSES: [(&str, [Field; 5]); 3] = [
    (
        "business",
        [
            Field::BusinessStreet,
            Field::BusinessCity,
            Field::BusinessState,
            Field::BusinessPostalCode,
            Field::BusinessCountry,
        ],
    ),
    ("home", [Field::HomeStreet, Field::HomeCity, Field::HomeState, Field::HomePostalCode, Field::HomeCountry]),
    ("other", [Field::OtherStreet, Field::OtherCity, Field::OtherState, Field::OtherPostalCode, Field::OtherCountry]),
];

fn simple(c: &mut Contact, f: Field) -> Option<&mut String> {
    Some(match f {
        Field::Title => &mut c.name.prefix,
        Field::GivenName => &mut c.name.first,
        Field::MiddleName => &mut c.name.middle,
        Field::Surname => &mut c.name.last,
        Field::Suffix => &mut c.name.suffix,
        Field::Nickname => &mut c.name.nickname,
        Field::JobTitle => &mut c.job_title,
        Field::Company => &mut c.company,
        Field::Department => &mut c.department,
        Field::AssistantName => &mut c.assistant,
        Field::WebPage => &mut c.web_site,
        Field::SpouseName => &mut c.spouse,
        _ => return None,
    })
}

fn text(s: &str) -> Option<FieldValue> {
    Some(FieldValue::Text(s.to_string()))
}

/// A CRM contact's canonical fields (FIELDS.md); the entry's fields when it has one.
pub fn to_fields(c: &Contact) -> ContactFields {
    let mut fields = ContactFields::new();
    let mut c = c.clone();
    for f in crate::model::Field::ALL {
        if let Some(v) = simple(&mut c, *f) {
            let v = v.clone();
            fields.set(*f, text(&v));
        }
    }
    for (f, kind) in EMAILS {
        fields.set(f, c.emails.iter().find(|e| e.kind == kind).and_then(|e| text(&e.address)));
    }
    for (f, kind) in PHONES {
        fields.set(f, c.phones.iter().find(|p| p.kind == kind).and_then(|p| text(&p.number)));
    }
    for (kind, [street, city, region, postcode, country]) in ADDRESSES {
        if let Some(a) = c.addresses.iter().find(|a| a.kind == kind) {
            fields.set(street, text(&a.street));
            fields.set(city, text(&a.city));
            fields.set(region, text(&a.region));
            fields.set(postcode, text(&a.postcode));
            fields.set(country, text(&a.country));
        }
    }
    fields.set(Field::Birthday, c.birth_date.as_deref().and_then(text));
    if let Some(e) = &c.entry {
        fields.set(Field::Notes, text(&e.notes));
        fields.set(Field::Categories, Some(FieldValue::List(e.categories.clone())));
        fields.set(Field::Private, Some(FieldValue::Flag(e.private)));
    }
    fields
}

fn value_text(fields: &ContactFields, f: Field) -> String {
    match fields.get(f) {
        Some(FieldValue::Text(s)) => s.clone(),
        _ => String::new(),
    }
}

/// `c` with the canonical firm `fields` written over what FIELDS.md maps (kinds and
/// properties it does not map are kept as read). The entry is left alone.
pub fn apply_firm(mut c: Contact, fields: &ContactFields, carried: impl Fn(Field) -> bool) -> Contact {
    for f in crate::model::Field::ALL.iter().copied().filter(|f| carried(*f)) {
        if let Some(target) = simple(&mut c, f) {
            *target = value_text(fields, f);
        }
    }
    for (f, kind) in EMAILS.into_iter().filter(|(f, _)| carried(*f)) {
        let address = value_text(fields, f);
        match c.emails.iter_mut().position(|e| e.kind == kind) {
            Some(i) if address.is_empty() => {
                c.emails.remove(i);
            }
            Some(i) => c.emails[i].address = address,
            None if !address.is_empty() => c.emails.push(Email { kind: kind.into(), address, extra: Map::new() }),
            None => {}
        }
    }
    for (f, kind) in PHONES.into_iter().filter(|(f, _)| carried(*f)) {
        let number = value_text(fields, f);
        match c.phones.iter_mut().position(|p| p.kind == kind) {
            Some(i) if number.is_empty() => {
                c.phones.remove(i);
            }
            Some(i) => c.phones[i].number = number,
            None if !number.is_empty() => c.phones.push(Phone { kind: kind.into(), number, extra: Map::new() }),
            None => {}
        }
    }
    for (kind, parts) in ADDRESSES {
        let i = match c.addresses.iter().position(|a| a.kind == kind) {
            Some(i) => i,
            None => {
                c.addresses.push(Address { kind: kind.into(), ..Address::default() });
                c.addresses.len() - 1
            }
        };
        let a = &mut c.addresses[i];
        let [street, city, region, postcode, country] = parts;
        for (f, target) in [
            (street, &mut a.street),
            (city, &mut a.city),
            (region, &mut a.region),
            (postcode, &mut a.postcode),
            (country, &mut a.country),
        ] {
            if carried(f) {
                *target = value_text(fields, f);
            }
        }
        let empty = [&a.street, &a.city, &a.region, &a.postcode, &a.country].iter().all(|s| s.is_empty());
        if empty && a.extra.is_empty() {
            c.addresses.remove(i);
        }
    }
    if carried(Field::Birthday) {
        c.birth_date = Some(value_text(fields, Field::Birthday)).filter(|d| !d.is_empty());
    }
    c
}

/// The entry PATCH that takes `entry` to the canonical list-level `fields` and stamps
/// `hub`; `None` when nothing changes.
pub fn entry_patch(
    entry: Option<&Entry>,
    fields: &ContactFields,
    hub: &str,
    carried: impl Fn(Field) -> bool,
) -> Option<Value> {
    let empty = Entry::default();
    let entry = entry.unwrap_or(&empty);
    let mut patch = Map::new();
    if entry.external_ref.as_deref() != Some(hub) {
        patch.insert("external_ref".into(), json!(hub));
    }
    if carried(Field::Notes) && entry.notes != value_text(fields, Field::Notes) {
        patch.insert("notes".into(), json!(value_text(fields, Field::Notes)));
    }
    if carried(Field::Categories) {
        let categories = fields.categories();
        if entry.categories != categories {
            patch.insert("categories".into(), json!(categories));
        }
    }
    if carried(Field::Private) {
        let private = fields.is_private();
        if entry.private != private {
            patch.insert("private".into(), json!(private));
        }
    }
    (!patch.is_empty()).then_some(Value::Object(patch))
}

fn etag(c: &Contact) -> String {
    format!("{}.{}", c.version, c.entry.as_ref().map_or(0, |e| e.version))
}

fn versions(etag: Option<&str>) -> Option<(u64, u64)> {
    let (firm, entry) = etag?.split_once('.')?;
    Some((firm.parse().ok()?, entry.parse().ok()?))
}

fn modified(c: &Contact) -> DateTime<Utc> {
    let at = |t: &str| DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc));
    let firm = at(&c.updated_at);
    let entry = c.entry.as_ref().and_then(|e| at(&e.updated_at));
    firm.max(entry).unwrap_or(DateTime::<Utc>::MIN_UTC)
}

fn side_item(c: &Contact) -> SideItem {
    SideItem {
        fields: to_fields(c),
        modified: modified(c),
        etag: Some(etag(c)),
        stamp: c.entry.as_ref().and_then(|e| e.external_ref.as_deref()).and_then(|s| s.parse::<HubContactId>().ok()),
    }
}

fn firm_part(c: &Contact) -> Contact {
    Contact { entry: None, version: 0, updated_at: String::new(), ..c.clone() }
}

/// What a push did, and the contact as the CRM answered it.
type Pushed = Result<(PushOutcome, Option<Contact>), ConnectorError>;

/// One push, as a future over owned data.
#[allow(clippy::too_many_arguments)]
async fn push_one(
    set: FieldSet,
    client: CrmClient,
    user: String,
    kind: PushKind,
    hub: String,
    seen: Option<Contact>,
    fields: ContactFields,
    etag: Option<String>,
) -> Pushed {
    match kind {
        PushKind::Create => {
            let mut c = apply_firm(Contact::default(), &fields, |f| set.contains(f));
            let entry = Entry { external_ref: Some(hub.clone()), ..Entry::default() };
            let patch = entry_patch(Some(&entry), &fields, &hub, |f| set.contains(f)).unwrap_or(Value::Null);
            let mut entry = entry;
            if let Some(n) = patch.get("notes").and_then(Value::as_str) {
                entry.notes = n.to_string();
            }
            if let Some(cats) = patch.get("categories").and_then(Value::as_array) {
                entry.categories = cats.iter().filter_map(|v| v.as_str().map(str::to_string)).collect();
            }
            entry.private = patch.get("private").and_then(Value::as_bool).unwrap_or(false);
            c.entry = Some(entry);
            let made = client.create_in_list(&user, &c).await?;
            let item = made.contact_id.parse::<ItemId>().map_err(|e| {
                ConnectorError::new(ErrorKind::InvalidData, format!("the CRM answered a create with {e}"))
            })?;
            Ok((PushOutcome::Created { item, etag: Some(etag_of(&made)) }, Some(made)))
        }
        PushKind::Update => {
            let Some(seen) = seen else {
                return Err(ConnectorError::new(ErrorKind::NotFound, "the contact is no longer in the list"));
            };
            let (firm_version, entry_version) =
                versions(etag.as_deref()).unwrap_or((seen.version, seen.entry.as_ref().map_or(0, |e| e.version)));
            let mut current = seen.clone();
            let wanted = apply_firm(seen.clone(), &fields, |f| set.contains(f));
            if firm_part(&wanted) != firm_part(&seen) {
                let mut put = wanted;
                put.version = firm_version;
                put.entry = None;
                let written = client.update_contact(&put).await?;
                current = Contact { entry: seen.entry.clone(), ..written };
            }
            if let Some(patch) = entry_patch(seen.entry.as_ref(), &fields, &hub, |f| set.contains(f)) {
                current = client.patch_entry(&user, &seen.contact_id, entry_version, &patch).await?;
            }
            Ok((PushOutcome::Updated { etag: Some(etag_of(&current)) }, Some(current)))
        }
        PushKind::Delete => Ok((PushOutcome::Deleted, None)),
    }
}

fn etag_of(c: &Contact) -> String {
    etag(c)
}

/// The list entry a contact's shadow describes: its list-level fields, stamped with `hub`
/// when the copy carries the stamps, at entry version `version`.
fn known_entry(shadow: &ContactFields, stamped: bool, hub: &str, version: u64) -> Entry {
    Entry {
        version,
        external_ref: stamped.then(|| hub.to_string()),
        notes: value_text(shadow, Field::Notes),
        categories: shadow.categories(),
        private: shadow.is_private(),
        ..Entry::default()
    }
}

impl CrmSide {
    /// Find the firm records of contacts to update that were not read this run by one of
    /// their e-mail addresses (as the CRM last showed them, then as they are to be): the
    /// CRM has no single-contact read, and reading the whole list for a few updates costs
    /// the list. Those not found are left to the caller (which reads the list).
    fn look_up(&mut self, ops: &[&PushOp]) {
        let emails = |fields: &ContactFields| -> Vec<String> {
            [Field::Email1, Field::Email2, Field::Email3]
                .into_iter()
                .filter_map(|f| fields.get(f).and_then(FieldValue::as_text).map(str::to_string))
                .collect()
        };
        let wanted: Vec<(String, Vec<String>)> = ops
            .iter()
            // The entry is then the one the shadow describes, at the version last seen: without
            // both, the list is read instead.
            .filter(|op| op.shadow.is_some() && versions(op.etag.as_deref()).is_some())
            .filter_map(|op| {
                let cid = op.item.as_ref()?.as_str().to_string();
                let mut addresses = op.shadow.as_ref().map(|(s, _)| emails(&s.fields())).unwrap_or_default();
                for a in emails(&op.fields) {
                    if !addresses.contains(&a) {
                        addresses.push(a);
                    }
                }
                (!addresses.is_empty()).then_some((cid, addresses))
            })
            .collect();
        let client = self.client.clone();
        let found = self.rt.block_on(async move {
            let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            let mut tasks = tokio::task::JoinSet::new();
            for (cid, addresses) in wanted {
                let (client, semaphore) = (client.clone(), semaphore.clone());
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    for address in addresses {
                        match client.contacts_by_email(&address).await {
                            Ok(found) => {
                                if let Some(c) = found.into_iter().find(|c| c.contact_id == cid) {
                                    return Some(c);
                                }
                            }
                            Err(e) => {
                                tracing::debug!(contact = %cid, error = %e, "look-up by e-mail failed; the list is read instead");
                                return None;
                            }
                        }
                    }
                    None
                });
            }
            let mut found = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                if let Ok(Some(c)) = joined {
                    found.push(c);
                }
            }
            found
        });
        for c in found {
            self.seen.insert(&Contact { entry: None, ..c });
        }
    }

    /// Add the firm record `op.previous` back to the list and write `op.fields` over it; a
    /// record that is gone is created anew.
    fn readd(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        let Some(previous) = op.previous.as_ref().map(|p| p.as_str().to_string()) else {
            return Err(ConnectorError::new(ErrorKind::InvalidData, "no earlier item to add back"));
        };
        match self.rt.block_on(self.client.add_to_list(&self.user, &previous)) {
            Ok(()) => {}
            Err(e) if e.kind == ErrorKind::NotFound => {
                let fresh = PushOp { previous: None, ..op.clone() };
                return self
                    .push_batch(std::slice::from_ref(&fresh))
                    .pop()
                    .unwrap_or_else(|| Err(ConnectorError::new(ErrorKind::Unavailable, "no answer")));
            }
            Err(e) => return Err(e),
        }
        self.relist()?;
        let Some(back) = self.seen.get(&previous) else {
            return Err(ConnectorError::new(ErrorKind::Unavailable, "the record added back is not in the list"));
        };
        let update = PushOp {
            kind: PushKind::Update,
            item: op.previous.clone(),
            etag: Some(etag(&back)),
            previous: None,
            ..op.clone()
        };
        match self.push_batch(std::slice::from_ref(&update)).pop() {
            Some(Ok(PushOutcome::Updated { etag })) => {
                Ok(PushOutcome::Created { item: ItemId::from_trusted(previous), etag })
            }
            Some(Ok(other)) => Ok(other),
            Some(Err(e)) => Err(e),
            None => Err(ConnectorError::new(ErrorKind::Unavailable, "no answer")),
        }
    }
}

impl ContactReplica for CrmSide {
    fn side(&self) -> Side {
        Side::Crm
    }

    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        let (changes, next) = self.rt.block_on(self.client.list_changes(&self.user, cursor))?;
        // Echoes of this side's own writes are left out of a feed round (a full listing
        // keeps them: what it does not list is gone).
        let written = if cursor.is_some() { std::mem::take(&mut self.written) } else { HashMap::new() };
        self.written.clear();
        let mut items = Vec::with_capacity(changes.len());
        for change in changes {
            let Ok(item) = change.contact_id.parse::<ItemId>() else {
                tracing::warn!(id = %change.contact_id, "the CRM sent a ContactID the hub cannot keep; left out (N2)");
                continue;
            };
            match (change.op, change.contact) {
                (ChangeOp::Upsert, Some(c)) => {
                    // An entry without our stamp is no echo even at the version we wrote: it
                    // was made anew (taken off the list and put back starts again at 1).
                    let stamped = c.entry.as_ref().is_some_and(|e| e.external_ref.is_some());
                    if !stamped || written.get(&c.contact_id).is_none_or(|w| *w != etag(&c)) {
                        items.push(Observed { item, change: ItemChange::Upsert(side_item(&c)) });
                    }
                    self.seen.insert(&c);
                }
                (ChangeOp::Upsert, None) => {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidData,
                        format!("list feed: an upsert of {} without its contact", change.contact_id),
                    ))
                }
                (ChangeOp::Remove, _) => {
                    self.seen.remove(&change.contact_id);
                    items.push(Observed { item, change: ItemChange::Removed });
                }
            }
        }
        Ok(Pull { items, cursor: next, full: cursor.is_none() })
    }

    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        self.push_batch(std::slice::from_ref(op))
            .pop()
            .unwrap_or_else(|| Err(ConnectorError::new(ErrorKind::Unavailable, "no answer")))
    }

    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        // A contact coming back to a list it left: the firm record is added back (X9: one
        // firm record per person, its history kept), then brought up to date.
        type Indexed<'a> = Vec<(usize, &'a PushOp)>;
        let (readds, rest): (Indexed, Indexed) =
            ops.iter().enumerate().partition(|(_, op)| op.kind == PushKind::Create && op.previous.is_some());
        if !readds.is_empty() {
            let mut answers: Vec<Option<Result<PushOutcome, ConnectorError>>> = (0..ops.len()).map(|_| None).collect();
            for (i, op) in readds {
                answers[i] = Some(self.readd(op));
            }
            let rest_ops: Vec<PushOp> = rest.iter().map(|(_, op)| (*op).clone()).collect();
            for ((i, _), answer) in rest.iter().zip(self.push_batch(&rest_ops)) {
                answers[*i] = Some(answer);
            }
            return answers
                .into_iter()
                .map(|a| a.unwrap_or_else(|| Err(ConnectorError::new(ErrorKind::Unavailable, "no answer"))))
                .collect();
        }
        let unseen = |seen: &Seen| -> Vec<&PushOp> {
            ops.iter()
                .filter(|op| {
                    op.kind == PushKind::Update && op.item.as_ref().is_some_and(|i| !seen.contains_key(i.as_str()))
                })
                .collect()
        };
        let few = unseen(&self.seen);
        if !few.is_empty() && few.len() <= LOOKUPS {
            self.look_up(&few);
        }
        if !unseen(&self.seen).is_empty() {
            if let Err(e) = self.relist() {
                return vec![Err(e); ops.len()];
            }
        }
        let client = self.client.clone();
        let user = self.user.clone();
        let set = self.set;
        let seen = &self.seen;
        let answers = self.rt.block_on(async {
            let semaphore = std::sync::Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            let mut tasks = tokio::task::JoinSet::new();
            for (i, op) in ops.iter().enumerate() {
                let item = op.item.as_ref().map(|i| i.as_str().to_string());
                let (client, user, semaphore) = (client.clone(), user.clone(), semaphore.clone());
                let (kind, hub, fields, etag) = (op.kind, op.hub.to_string(), op.fields.clone(), op.etag.clone());
                let before = item.as_ref().and_then(|i| seen.get(i)).map(|mut c| {
                    if c.entry.is_none() {
                        // Found by e-mail address (no entry): the entry as last seen.
                        c.entry = op.shadow.as_ref().map(|(s, stamped)| {
                            let version = versions(etag.as_deref()).map_or(0, |(_, e)| e);
                            known_entry(&s.fields(), *stamped, &hub, version)
                        });
                    }
                    c
                });
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    let result = match (kind, &item) {
                        (PushKind::Delete, Some(cid)) => {
                            client.remove_from_list(&user, cid).await.map(|()| (PushOutcome::Deleted, None))
                        }
                        (PushKind::Delete, None) | (PushKind::Update, None) => {
                            Err(ConnectorError::new(ErrorKind::InvalidData, "an update or delete without an item"))
                        }
                        _ => push_one(set, client, user, kind, hub, before, fields, etag).await,
                    };
                    (i, result)
                });
            }
            let mut answers: Vec<Option<Pushed>> = (0..ops.len()).map(|_| None).collect();
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, result)) = joined {
                    answers[i] = Some(result);
                }
            }
            answers
        });
        answers
            .into_iter()
            .zip(ops)
            .map(|(answer, op)| {
                let (outcome, written) = answer
                    .unwrap_or_else(|| Err(ConnectorError::new(ErrorKind::Unavailable, "the push task failed")))?;
                match written {
                    Some(c) => {
                        self.written.insert(c.contact_id.clone(), etag(&c));
                        self.seen.insert(&c);
                    }
                    None => {
                        if let Some(item) = &op.item {
                            self.seen.remove(item.as_str());
                        }
                    }
                }
                Ok(outcome)
            })
            .collect()
    }

    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        self.relist()?;
        let hub = op.hub.to_string();
        let found = match (&op.item, op.kind) {
            (Some(item), kind) if kind != PushKind::Create => self.seen.get(item.as_str()),
            _ => self.seen.contacts().find(|c| c.entry.as_ref().and_then(|e| e.external_ref.as_deref()) == Some(&hub)),
        };
        Ok(found.and_then(|c| Some((c.contact_id.parse::<ItemId>().ok()?, side_item(&c)))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn c9_fields_round_trip_through_the_crm_and_keep_what_is_not_mapped() {
        let mut fields = ContactFields::new()
            .with_text(Field::GivenName, "Jane")
            .with_text(Field::Surname, "Tarnoff")
            .with_text(Field::Email2, "jane@home.example")
            .with_text(Field::Pager, "555")
            .with_text(Field::HomeCity, "Boston")
            .with_text(Field::Birthday, "1974-05-12")
            .with_text(Field::Notes, "mine");
        fields.set(Field::Private, Some(FieldValue::Flag(true)));
        let mut read = Contact::default();
        read.phones.push(Phone { kind: "satellite".into(), number: "1".into(), extra: Map::new() });
        read.extra.insert("crm_only_rating".into(), json!(5));
        let mut c = apply_firm(read, &fields, |_| true);
        let patch = entry_patch(None, &fields, "hub-1", |_| true).unwrap();
        c.entry = Some(Entry {
            notes: patch["notes"].as_str().unwrap().into(),
            private: patch["private"].as_bool().unwrap(),
            external_ref: Some("hub-1".into()),
            ..Entry::default()
        });
        assert!(to_fields(&c).equivalent_on(&fields, FieldSet::all()));
        assert!(c.phones.iter().any(|p| p.kind == "satellite"), "kinds synchub does not map are kept");
        assert_eq!(c.extra["crm_only_rating"], 5);
        assert_eq!(entry_patch(c.entry.as_ref(), &fields, "hub-1", |_| true), None, "nothing left to patch");
    }

    #[test]
    fn etags_carry_both_versions() {
        assert_eq!(versions(Some("3.7")), Some((3, 7)));
        assert_eq!(versions(Some("3")), None);
        assert_eq!(versions(None), None);
    }
}
