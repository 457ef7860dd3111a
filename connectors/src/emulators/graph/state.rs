//! The Graph emulator's state: per-mailbox contact folders and contacts (ids, change keys,
//! extended properties), events, and an append-only change log per mailbox from which
//! contact delta and calendarView delta rounds are served, page by page, with delta
//! tokens that a test can expire (410 `SyncStateNotFound`). Also the tenant's users, the
//! app registration the token endpoint accepts, and a clock a test sets.

use std::collections::{BTreeMap, HashMap};

use chrono::{DateTime, Duration as Days, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use crate::graph::props;
use crate::graph::wire::{Contact, Event, ExtendedProperty, User, CONTACT_PROPERTIES};

/// An error as Graph answers it: status, code, message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct GraphError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl GraphError {
    pub(crate) fn invalid(message: impl Into<String>) -> GraphError {
        GraphError { status: 400, code: "RequestBodyRead", message: message.into() }
    }
    pub(crate) fn query(message: impl Into<String>) -> GraphError {
        GraphError { status: 400, code: "BadRequest", message: message.into() }
    }
    fn not_found(what: &str) -> GraphError {
        GraphError { status: 404, code: "ErrorItemNotFound", message: format!("{what} not found in the store") }
    }
    fn expired() -> GraphError {
        GraphError { status: 410, code: "SyncStateNotFound", message: "the sync state is no longer valid".into() }
    }
}

struct StoredContact {
    folder: String,
    contact: Contact,
    version: u64,
    deleted: bool,
    /// The mailbox sequence number of its last change.
    seq: u64,
}

struct StoredEvent {
    event: Event,
    deleted: bool,
    seq: u64,
}

struct Mailbox {
    user: User,
    default_folder: String,
    folders: BTreeMap<String, String>,
    contacts: BTreeMap<String, StoredContact>,
    events: BTreeMap<String, StoredEvent>,
    seq: u64,
    contact_log: Vec<(u64, String)>,
    event_log: Vec<(u64, String)>,
    epoch: u64,
}

/// Where a delta round stands, carried in its `$skiptoken` / `$deltatoken`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeltaToken {
    pub epoch: u64,
    /// A first round, listing everything live (not the changes since a token).
    pub full: bool,
    pub from: u64,
    pub to: u64,
    pub offset: usize,
    /// calendarView's window (unix seconds); zero for contacts.
    pub start: i64,
    pub end: i64,
}

impl DeltaToken {
    fn encode(&self) -> String {
        let full = u8::from(self.full);
        format!("{}.{full}.{}.{}.{}.{}.{}", self.epoch, self.from, self.to, self.offset, self.start, self.end)
    }

    fn decode(s: &str) -> Result<DeltaToken, GraphError> {
        let parts: Vec<&str> = s.split('.').collect();
        let bad = || GraphError { status: 400, code: "InvalidDeltaToken", message: format!("bad token `{s}`") };
        if parts.len() != 7 {
            return Err(bad());
        }
        let n = |i: usize| parts[i].parse::<u64>().map_err(|_| bad());
        let t = |i: usize| parts[i].parse::<i64>().map_err(|_| bad());
        Ok(DeltaToken {
            epoch: n(0)?,
            full: n(1)? == 1,
            from: n(2)?,
            to: n(3)?,
            offset: n(4)? as usize,
            start: t(5)?,
            end: t(6)?,
        })
    }
}

/// Which round a delta request asks for.
#[derive(Clone, Debug, Default)]
pub struct DeltaQuery {
    pub skip_token: Option<String>,
    pub delta_token: Option<String>,
    pub page_size: usize,
    /// calendarView's window, on the first request of a chain.
    pub window: Option<(DateTime<Utc>, DateTime<Utc>)>,
}

/// A page of a delta round: the items, and the token of the next page or of the next
/// round.
pub struct DeltaPage {
    pub value: Vec<Value>,
    pub next: Result<String, String>,
}

/// The emulated tenant.
pub struct GraphState {
    now: DateTime<Utc>,
    pub(crate) tenant: String,
    pub(crate) client_id: String,
    pub(crate) client_secret: String,
    token_life: u64,
    tokens: HashMap<String, DateTime<Utc>>,
    mailboxes: BTreeMap<String, Mailbox>,
    next_id: u64,
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl GraphState {
    /// A tenant whose app registration is `client_id` / `client_secret`, its clock at `now`.
    pub fn new(tenant: &str, client_id: &str, client_secret: &str, now: DateTime<Utc>) -> GraphState {
        GraphState {
            now,
            tenant: tenant.to_string(),
            client_id: client_id.to_string(),
            client_secret: client_secret.to_string(),
            token_life: 3599,
            tokens: HashMap::new(),
            mailboxes: BTreeMap::new(),
            next_id: 1,
        }
    }

    /// The clock.
    pub fn now(&self) -> DateTime<Utc> {
        self.now
    }

    /// Set the clock.
    pub fn set_now(&mut self, now: DateTime<Utc>) {
        self.now = now;
    }

    /// Tokens issued from now on live this long.
    pub fn set_token_life(&mut self, secs: u64) {
        self.token_life = secs;
    }

    pub(crate) fn issue_token(&mut self) -> (String, u64) {
        let token = format!("emu-token-{}", self.fresh_id());
        self.tokens.insert(token.clone(), self.now + Days::seconds(self.token_life as i64));
        (token, self.token_life)
    }

    /// How many tokens the token endpoint issued.
    pub fn tokens_issued(&self) -> usize {
        self.tokens.len()
    }

    pub(crate) fn token_valid(&self, token: &str) -> bool {
        self.tokens.get(token).is_some_and(|expiry| self.now < *expiry)
    }

    fn fresh_id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// Add a mailbox for `user` (id, display name, mail), with its default contacts folder.
    pub fn add_user(&mut self, id: &str, display_name: &str, mail: &str) {
        let folder = format!("AAMkFolder{}", self.fresh_id());
        let mut folders = BTreeMap::new();
        folders.insert(folder.clone(), "Contacts".to_string());
        let user = User {
            id: id.to_string(),
            display_name: Some(display_name.to_string()),
            mail: Some(mail.to_string()),
            user_principal_name: Some(mail.to_string()),
        };
        self.mailboxes.insert(
            id.to_ascii_lowercase(),
            Mailbox {
                user,
                default_folder: folder,
                folders,
                contacts: BTreeMap::new(),
                events: BTreeMap::new(),
                seq: 0,
                contact_log: Vec::new(),
                event_log: Vec::new(),
                epoch: 1,
            },
        );
    }

    /// Add a contact folder under the default one; its id.
    pub fn add_folder(&mut self, user: &str, name: &str) -> Result<String, GraphError> {
        let id = format!("AAMkFolder{}", self.fresh_id());
        self.mailbox_mut(user)?.folders.insert(id.clone(), name.to_string());
        Ok(id)
    }

    /// The tenant's users, in id order.
    pub fn users(&self) -> Vec<User> {
        self.mailboxes.values().map(|m| m.user.clone()).collect()
    }

    fn mailbox(&self, user: &str) -> Result<&Mailbox, GraphError> {
        self.mailboxes
            .get(&user.to_ascii_lowercase())
            .or_else(|| {
                self.mailboxes
                    .values()
                    .find(|m| m.user.user_principal_name.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(user)))
            })
            .ok_or_else(|| GraphError::not_found(&format!("user {user}")))
    }

    fn mailbox_mut(&mut self, user: &str) -> Result<&mut Mailbox, GraphError> {
        let key = self.mailbox(user)?.user.id.to_ascii_lowercase();
        self.mailboxes.get_mut(&key).ok_or_else(|| GraphError::not_found(&format!("user {user}")))
    }

    /// A folder's real id (`contacts` is the default folder's well-known name).
    pub fn folder_id(&self, user: &str, folder: &str) -> Result<String, GraphError> {
        let m = self.mailbox(user)?;
        if folder.eq_ignore_ascii_case("contacts") {
            return Ok(m.default_folder.clone());
        }
        m.folders.contains_key(folder).then(|| folder.to_string()).ok_or_else(|| GraphError::not_found("folder"))
    }

    /// A folder as Graph shows it.
    pub fn folder(&self, user: &str, folder: &str) -> Result<Value, GraphError> {
        let id = self.folder_id(user, folder)?;
        let m = self.mailbox(user)?;
        let mut v = json!({"id": id, "displayName": m.folders.get(&id), "parentFolderId": "AAMkRoot"});
        if id == m.default_folder {
            v["wellKnownName"] = json!("contacts");
        }
        Ok(v)
    }

    /// The folders under the default one.
    pub fn child_folders(&self, user: &str) -> Result<Vec<Value>, GraphError> {
        let m = self.mailbox(user)?;
        let ids: Vec<String> = m.folders.keys().filter(|id| **id != m.default_folder).cloned().collect();
        ids.iter().map(|id| self.folder(user, id)).collect()
    }

    /// Create a contact in `folder` from a write body (unknown properties refused).
    pub fn create_contact(&mut self, user: &str, folder: &str, body: &Value) -> Result<Contact, GraphError> {
        let mut contact = writable(body)?;
        let folder = self.folder_id(user, folder)?;
        let id = format!("AAMkContact{}", self.fresh_id());
        let now = stamp(self.now);
        contact.id = Some(id.clone());
        contact.parent_folder_id = Some(folder.clone());
        if contact.display_name.as_deref().is_none_or(str::is_empty) {
            contact.display_name = Some(props::display_name(&contact));
        }
        let m = self.mailbox_mut(user)?;
        let stored = StoredContact { folder, contact, version: 0, deleted: false, seq: 0 };
        m.contacts.insert(id.clone(), stored);
        Ok(touch_contact(m, &id, now))
    }

    /// PATCH a contact: properties set, `null` clears, extended properties set one by one;
    /// conditional on `if_match` (the `@odata.etag`) when given.
    pub fn update_contact(
        &mut self,
        user: &str,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
    ) -> Result<Contact, GraphError> {
        let patch = writable(body)?;
        let Value::Object(changes) = body else { return Err(GraphError::invalid("the body is not a JSON object")) };
        let now = stamp(self.now);
        let m = self.mailbox_mut(user)?;
        let stored = m.contacts.get_mut(id).filter(|c| !c.deleted).ok_or_else(|| GraphError::not_found("contact"))?;
        if let Some(expected) = if_match.filter(|e| e.trim() != "*") {
            if stored.contact.etag.as_deref() != Some(expected.trim()) {
                return Err(GraphError {
                    status: 412,
                    code: "ErrorIrresolvableConflict",
                    message: "the change key passed in the request does not match the current change key".into(),
                });
            }
        }
        apply_patch(&mut stored.contact, changes, patch);
        Ok(touch_contact(m, id, now))
    }

    /// Delete a contact.
    pub fn delete_contact(&mut self, user: &str, id: &str) -> Result<(), GraphError> {
        let m = self.mailbox_mut(user)?;
        let stored = m.contacts.get_mut(id).filter(|c| !c.deleted).ok_or_else(|| GraphError::not_found("contact"))?;
        stored.deleted = true;
        stored.seq = log_change(&mut m.seq, &mut m.contact_log, id);
        Ok(())
    }

    /// A contact as stored (with every extended property), for tests and GETs.
    pub fn contact(&self, user: &str, id: &str) -> Result<Contact, GraphError> {
        let m = self.mailbox(user)?;
        m.contacts
            .get(id)
            .filter(|c| !c.deleted)
            .map(|c| c.contact.clone())
            .ok_or_else(|| GraphError::not_found("contact"))
    }

    /// The live contacts of `folder` (all folders with `None`), in id order.
    pub fn contacts(&self, user: &str, folder: Option<&str>) -> Result<Vec<Contact>, GraphError> {
        Ok(self.contacts_in(user, folder)?.cloned().collect())
    }

    /// The same, borrowed.
    pub fn contacts_in<'a>(
        &'a self,
        user: &str,
        folder: Option<&str>,
    ) -> Result<impl Iterator<Item = &'a Contact> + 'a, GraphError> {
        let folder = folder.map(|f| self.folder_id(user, f)).transpose()?;
        let m = self.mailbox(user)?;
        Ok(m.contacts
            .values()
            .filter(move |c| !c.deleted && folder.as_ref().is_none_or(|f| *f == c.folder))
            .map(|c| &c.contact))
    }

    /// Make every delta and skip token of `user` stale (the next use answers 410).
    pub fn expire_delta_tokens(&mut self, user: &str) -> Result<(), GraphError> {
        self.mailbox_mut(user)?.epoch += 1;
        Ok(())
    }

    /// A page of a contact delta round of `folder`.
    pub fn contact_delta(&self, user: &str, folder: &str, q: &DeltaQuery) -> Result<DeltaPage, GraphError> {
        let folder = self.folder_id(user, folder)?;
        let m = self.mailbox(user)?;
        let token = round(m, q, &m.contact_log)?;
        // A full round lists what was live when it started (`to`): an item deleted since
        // stays a member (served as removed), so the pages never shift under a reader.
        let full = token.full;
        let members: Vec<&String> = changed(&m.contact_log, token.from, token.to)
            .into_iter()
            .filter(|id| {
                m.contacts.get(*id).is_some_and(|c| c.folder == folder && !(full && c.deleted && c.seq <= token.to))
            })
            .collect();
        let value = page(&members, token.offset, q.page_size)
            .iter()
            .map(|id| match m.contacts.get(*id).filter(|c| !c.deleted) {
                Some(c) => without_extended(&c.contact),
                None => removed("contact", id),
            })
            .collect();
        Ok(DeltaPage { value, next: next(token, members.len(), q.page_size) })
    }

    /// Add or replace an event in `user`'s calendar (synchub never writes events).
    pub fn put_event(&mut self, user: &str, mut event: Event) -> Result<Event, GraphError> {
        if event.id.is_empty() {
            event.id = format!("AAMkEvent{}", self.fresh_id());
        }
        if event.ical_uid.is_none() {
            event.ical_uid = Some(format!("040000008200E00074C5B7101A82E008{:016X}", self.fresh_id()));
        }
        event.last_modified_date_time = Some(stamp(self.now));
        let m = self.mailbox_mut(user)?;
        let seq = log_change(&mut m.seq, &mut m.event_log, &event.id);
        m.events.insert(event.id.clone(), StoredEvent { event: event.clone(), deleted: false, seq });
        Ok(event)
    }

    /// An event as stored (deleted ones are gone).
    pub fn event(&self, user: &str, id: &str) -> Result<Event, GraphError> {
        let m = self.mailbox(user)?;
        m.events.get(id).filter(|e| !e.deleted).map(|e| e.event.clone()).ok_or_else(|| GraphError::not_found("event"))
    }

    /// Delete an event.
    pub fn delete_event(&mut self, user: &str, id: &str) -> Result<(), GraphError> {
        let m = self.mailbox_mut(user)?;
        let stored = m.events.get_mut(id).filter(|e| !e.deleted).ok_or_else(|| GraphError::not_found("event"))?;
        stored.deleted = true;
        stored.seq = log_change(&mut m.seq, &mut m.event_log, id);
        Ok(())
    }

    /// A page of a calendarView delta round: events overlapping the chain's window.
    pub fn calendar_delta(&self, user: &str, q: &DeltaQuery) -> Result<DeltaPage, GraphError> {
        let m = self.mailbox(user)?;
        let mut token = round(m, q, &m.event_log)?;
        if q.skip_token.is_none() && q.delta_token.is_none() {
            let (start, end) =
                q.window.ok_or_else(|| GraphError::query("startDateTime and endDateTime are required"))?;
            if end <= start {
                return Err(GraphError::query("endDateTime must be after startDateTime"));
            }
            (token.start, token.end) = (start.timestamp(), end.timestamp());
        }
        let in_window = |e: &StoredEvent| !e.deleted && overlaps(&e.event, token.start, token.end);
        let full = token.full;
        // Membership of a full round is fixed by the state at `to`: an event changed since
        // is kept (served as it is now, or as removed) so the pages never shift.
        let members: Vec<&String> = changed(&m.event_log, token.from, token.to)
            .into_iter()
            .filter(|id| m.events.get(*id).is_some_and(|e| !full || e.seq > token.to || in_window(e)))
            .collect();
        let value = page(&members, token.offset, q.page_size)
            .iter()
            .map(|id| match m.events.get(*id) {
                Some(e) if in_window(e) => serde_json::to_value(&e.event).unwrap_or(Value::Null),
                // Still there, but out of the window: "changed" (moved out of scope).
                Some(e) if !e.deleted => removed_as("event", id, "changed"),
                _ => removed("event", id),
            })
            .collect();
        Ok(DeltaPage { value, next: next(token, members.len(), q.page_size) })
    }
}

/// A write body as a contact; properties Graph does not know are refused, naming them.
fn writable(body: &Value) -> Result<Contact, GraphError> {
    let Value::Object(map) = body else { return Err(GraphError::invalid("the body is not a JSON object")) };
    if let Some(key) = map.keys().find(|k| !CONTACT_PROPERTIES.contains(&k.as_str()) && !k.starts_with("@odata")) {
        return Err(GraphError::invalid(format!(
            "the property '{key}' does not exist on type 'microsoft.graph.contact'"
        )));
    }
    // The path is tracked only when reading again a body that failed.
    let contact = match <Contact as serde::Deserialize>::deserialize(body) {
        Ok(c) => c,
        Err(_) => serde_path_to_error::deserialize::<_, Contact>(body.clone())
            .map_err(|e| GraphError::invalid(format!("at `{}`: {}", e.path(), e.inner())))?,
    };
    for p in contact.single_value_extended_properties.iter().flatten() {
        let ExtendedProperty { id, .. } = p;
        if !(id.starts_with("String ") || id.starts_with("Boolean ")) {
            return Err(GraphError::invalid(format!("extended property id `{id}` is not a single-value id")));
        }
    }
    Ok(contact)
}

/// Set each property a PATCH body names from `patch` (the same body read as a contact): a
/// value sets it, `null` clears it; the extended properties are set one by one. Writable
/// properties the emulator does not model are accepted and not kept.
fn apply_patch(stored: &mut Contact, body: &Map<String, Value>, mut patch: Contact) {
    for p in patch.single_value_extended_properties.take().unwrap_or_default() {
        stored.set_extended(&p.id, p.value);
    }
    macro_rules! properties {
        ($key:expr; $($name:literal => $field:ident),* $(,)?) => {
            match $key {
                $($name => stored.$field = patch.$field.take(),)*
                _ => {}
            }
        };
    }
    for key in body.keys() {
        properties!(key.as_str();
            "displayName" => display_name,
            "fileAs" => file_as,
            "title" => title,
            "givenName" => given_name,
            "middleName" => middle_name,
            "surname" => surname,
            "generation" => generation,
            "nickName" => nick_name,
            "jobTitle" => job_title,
            "companyName" => company_name,
            "department" => department,
            "assistantName" => assistant_name,
            "emailAddresses" => email_addresses,
            "businessPhones" => business_phones,
            "homePhones" => home_phones,
            "mobilePhone" => mobile_phone,
            "businessAddress" => business_address,
            "homeAddress" => home_address,
            "otherAddress" => other_address,
            "businessHomePage" => business_home_page,
            "birthday" => birthday,
            "spouseName" => spouse_name,
            "personalNotes" => personal_notes,
            "categories" => categories,
        );
    }
}

/// Append a change of `id` to a mailbox's log under the next sequence number; that number.
fn log_change(seq: &mut u64, log: &mut Vec<(u64, String)>, id: &str) -> u64 {
    *seq += 1;
    log.push((*seq, id.to_string()));
    *seq
}

fn touch_contact(m: &mut Mailbox, id: &str, now: String) -> Contact {
    let seq = log_change(&mut m.seq, &mut m.contact_log, id);
    let Some(stored) = m.contacts.get_mut(id) else { return Contact::default() };
    stored.seq = seq;
    stored.version += 1;
    let key = format!("EQAAABYAAAD{:08}", stored.version * 7 + seq);
    stored.contact.etag = Some(format!("W/\"{key}\""));
    stored.contact.change_key = Some(key);
    stored.contact.last_modified_date_time = Some(now);
    stored.contact.clone()
}

/// The contact as delta shows it: no extended properties.
fn without_extended(c: &Contact) -> Value {
    let mut v = serde_json::to_value(c).unwrap_or(Value::Null);
    if let Value::Object(map) = &mut v {
        map.remove("singleValueExtendedProperties");
        map.insert("@odata.type".into(), json!("#microsoft.graph.contact"));
    }
    v
}

fn removed(kind: &str, id: &str) -> Value {
    removed_as(kind, id, "deleted")
}

fn removed_as(kind: &str, id: &str, reason: &str) -> Value {
    json!({"@odata.type": format!("#microsoft.graph.{kind}"), "id": id, "@removed": {"reason": reason}})
}

/// The round a query belongs to: a page of a running round, the next round after a delta
/// token, or a first round. Tokens of an earlier epoch are expired.
fn round(m: &Mailbox, q: &DeltaQuery, log: &[(u64, String)]) -> Result<DeltaToken, GraphError> {
    let to = log.last().map_or(0, |(seq, _)| *seq);
    let token = match (&q.skip_token, &q.delta_token) {
        (Some(skip), _) => DeltaToken::decode(skip)?,
        (None, Some(delta)) => {
            let d = DeltaToken::decode(delta)?;
            DeltaToken { full: false, from: d.to, to, offset: 0, ..d }
        }
        (None, None) => DeltaToken { epoch: m.epoch, full: true, from: 0, to, offset: 0, start: 0, end: 0 },
    };
    if token.epoch != m.epoch {
        return Err(GraphError::expired());
    }
    Ok(token)
}

/// Ids changed in `(from, to]`, each once, ordered by its last change.
fn changed(log: &[(u64, String)], from: u64, to: u64) -> Vec<&String> {
    let start = log.partition_point(|(seq, _)| *seq <= from);
    let end = log.partition_point(|(seq, _)| *seq <= to);
    let mut last: HashMap<&String, usize> = HashMap::new();
    for (i, (_, id)) in log[start..end].iter().enumerate() {
        last.insert(id, i);
    }
    log[start..end].iter().enumerate().filter(|(i, (_, id))| last.get(id) == Some(i)).map(|(_, (_, id))| id).collect()
}

fn page<'a>(members: &'a [&'a String], offset: usize, size: usize) -> &'a [&'a String] {
    let start = offset.min(members.len());
    &members[start..(start + size.max(1)).min(members.len())]
}

fn next(token: DeltaToken, total: usize, size: usize) -> Result<String, String> {
    let offset = token.offset + size.max(1);
    if offset < total {
        Ok(DeltaToken { offset, ..token }.encode())
    } else {
        Err(DeltaToken { full: false, from: token.to, offset: 0, ..token }.encode())
    }
}

fn overlaps(e: &Event, start: i64, end: i64) -> bool {
    let at = |t: &Option<crate::graph::wire::DateTimeTimeZone>| {
        t.as_ref().and_then(|t| {
            chrono::NaiveDateTime::parse_from_str(&t.date_time, "%Y-%m-%dT%H:%M:%S%.f")
                .ok()
                .map(|t| t.and_utc().timestamp())
        })
    };
    match (at(&e.start), at(&e.end)) {
        (Some(s), Some(e)) => s < end && e > start,
        _ => false,
    }
}

/// The extended properties `$expand=singleValueExtendedProperties($filter=id eq '…' or …)`
/// asks for; `None` when the expand is not of that shape.
pub fn expanded_ids(expand: &str) -> Option<Vec<String>> {
    let inner = expand.trim().strip_prefix("singleValueExtendedProperties")?;
    let filter = inner.trim().strip_prefix('(')?.strip_suffix(')')?.trim().strip_prefix("$filter=")?;
    let ids = literals(filter)?;
    (!ids.is_empty()).then_some(ids)
}

/// The hub id `$filter=singleValueExtendedProperties/Any(ep: ep/id eq '…' and ep/value eq '…')`
/// looks for: (property id, value).
pub fn stamp_filter(filter: &str) -> Option<(String, String)> {
    let inner = filter.trim().strip_prefix("singleValueExtendedProperties/Any(")?.strip_suffix(')')?;
    match literals(inner)?.as_slice() {
        [id, value] => Some((id.clone(), value.clone())),
        _ => None,
    }
}

/// The OData string literals in `s`, in order (`''` inside one is a quote).
fn literals(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut lit = String::new();
        loop {
            match chars.next()? {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    lit.push('\'');
                }
                '\'' => break,
                c => lit.push(c),
            }
        }
        out.push(lit);
    }
    Some(out)
}

/// Keep only the extended properties in `ids` (none without an expand).
pub fn with_extended(mut c: Contact, ids: Option<&[String]>) -> Contact {
    c.single_value_extended_properties = match ids {
        Some(ids) => Some(
            c.single_value_extended_properties
                .unwrap_or_default()
                .into_iter()
                .filter(|p| ids.iter().any(|id| id.eq_ignore_ascii_case(&p.id)))
                .collect(),
        ),
        None => None,
    };
    c
}

/// Keep only the `$select`ed properties (and the id and etag, which Graph always sends).
pub fn select(v: Value, select: Option<&str>) -> Value {
    let (Some(select), Value::Object(map)) = (select, &v) else { return v };
    let keep: Vec<&str> = select.split(',').map(str::trim).collect();
    let map: Map<String, Value> = map
        .iter()
        .filter(|(k, _)| {
            keep.contains(&k.as_str()) || ["id", "@odata.etag", "singleValueExtendedProperties"].contains(&k.as_str())
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    Value::Object(map)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use chrono::TimeZone;
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    fn state() -> GraphState {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().unwrap();
        let mut s = GraphState::new("firm", "app", "secret", now);
        s.add_user("u1", "Ana", "ana@firm.example");
        s
    }

    /// What a PATCH did before [`apply_patch`]: the stored contact as JSON, the body's
    /// properties merged in (`null` removing), read back; the extended properties set after.
    fn merged_as_json(stored: &Contact, body: &Value) -> Contact {
        let (Ok(Value::Object(mut current)), Value::Object(changes)) = (serde_json::to_value(stored), body) else {
            panic!("objects")
        };
        for (key, value) in changes {
            if key == "singleValueExtendedProperties" {
                continue;
            }
            match value {
                Value::Null => current.remove(key),
                v => current.insert(key.clone(), v.clone()),
            };
        }
        let mut merged: Contact = serde_json::from_value(Value::Object(current)).unwrap();
        for p in writable(body).unwrap().single_value_extended_properties.unwrap_or_default() {
            merged.set_extended(&p.id, p.value);
        }
        merged
    }

    /// A body over every writable property: each left out, `null`, or a value.
    fn body_of(choices: &[Option<Option<u8>>]) -> Value {
        let map: Map<String, Value> = CONTACT_PROPERTIES
            .iter()
            .zip(choices)
            .filter_map(|(name, choice)| {
                let value = match choice {
                    None => return None,
                    Some(None) => Value::Null,
                    Some(Some(n)) => crate::graph::wire::sample_property(name, 1 + usize::from(*n) % 4)?,
                };
                Some((name.to_string(), value))
            })
            .collect();
        Value::Object(map)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        /// The field-by-field PATCH keeps exactly what the JSON merge it replaced kept, for
        /// every writable property: a property `apply_patch` left out would differ here.
        #[test]
        fn a_patch_keeps_what_the_json_merge_kept(
            first in proptest::collection::vec(proptest::option::of(any::<u8>()), CONTACT_PROPERTIES.len()),
            second in proptest::collection::vec(proptest::option::of(proptest::option::of(any::<u8>())), CONTACT_PROPERTIES.len()),
        ) {
            let created = body_of(&first.iter().map(|c| c.map(Some)).collect::<Vec<_>>());
            let stored = writable(&created).unwrap();
            let body = body_of(&second);
            let Value::Object(changes) = &body else { unreachable!() };
            let mut patched = stored.clone();
            apply_patch(&mut patched, changes, writable(&body).unwrap());
            prop_assert_eq!(patched, merged_as_json(&stored, &body));
        }
    }

    /// Follow a whole round from `token` (a first round without one).
    fn follow(s: &mut GraphState, delta: Option<String>, size: usize) -> Result<(Vec<Value>, String), GraphError> {
        follow_while(s, delta, size, &mut |_| {})
    }

    /// Follow a round, letting `between` change the mailbox between pages.
    fn follow_while(
        s: &mut GraphState,
        delta: Option<String>,
        size: usize,
        between: &mut dyn FnMut(&mut GraphState),
    ) -> Result<(Vec<Value>, String), GraphError> {
        let mut q = DeltaQuery { delta_token: delta, page_size: size, ..DeltaQuery::default() };
        let mut items = Vec::new();
        loop {
            let page = s.contact_delta("u1", "contacts", &q)?;
            items.extend(page.value);
            match page.next {
                Ok(skip) => q = DeltaQuery { skip_token: Some(skip), delta_token: None, ..q },
                Err(delta) => return Ok((items, delta)),
            }
            between(s);
        }
    }

    #[test]
    fn writes_are_checked_and_versioned() {
        let mut s = state();
        let err = s.create_contact("u1", "contacts", &json!({"givenName": "A", "favouriteColour": "red"})).unwrap_err();
        assert!(err.message.contains("'favouriteColour' does not exist"), "{err}");
        let err = s.create_contact("u1", "contacts", &json!({"givenName": 7})).unwrap_err();
        assert!(err.message.contains("givenName"), "{err}");
        let c = s.create_contact("u1", "contacts", &json!({"givenName": "Jane", "surname": "Roe"})).unwrap();
        assert_eq!(c.display_name.as_deref(), Some("Jane Roe"), "Exchange derives a missing displayName");
        let id = c.id.clone().unwrap();
        let err = s.update_contact("u1", &id, &json!({"surname": "Doe"}), Some("W/\"stale\"")).unwrap_err();
        assert_eq!(err.status, 412);
        let d = s.update_contact("u1", &id, &json!({"surname": null}), c.etag.as_deref()).unwrap();
        assert_eq!(d.surname, None, "null clears");
        assert_ne!(d.etag, c.etag, "every write changes the change key");
        assert_eq!(s.folder_id("u1", "CONTACTS").unwrap(), d.parent_folder_id.unwrap());
        assert_eq!(s.contact("U1", &id).unwrap().given_name.as_deref(), Some("Jane"), "user ids are case-insensitive");
    }

    #[test]
    fn expired_tokens_answer_410() {
        let mut s = state();
        s.create_contact("u1", "contacts", &json!({"givenName": "A"})).unwrap();
        let (_, delta) = follow(&mut s, None, 10).unwrap();
        s.expire_delta_tokens("u1").unwrap();
        let err = follow(&mut s, Some(delta), 10).unwrap_err();
        assert_eq!((err.status, err.code), (410, "SyncStateNotFound"));
        assert_eq!(follow(&mut s, None, 10).unwrap().0.len(), 1, "a fresh round still works");
    }

    #[test]
    fn odata_literals_and_filters_parse() {
        let expand = "singleValueExtendedProperties($filter=id eq 'String 0x3A24' or id eq 'it''s')";
        assert_eq!(expanded_ids(expand).unwrap(), ["String 0x3A24", "it's"]);
        assert_eq!(expanded_ids("attachments"), None);
        let filter = "singleValueExtendedProperties/Any(ep: ep/id eq 'String {x} Name HubId' and ep/value eq 'h1')";
        assert_eq!(stamp_filter(filter).unwrap(), ("String {x} Name HubId".to_string(), "h1".to_string()));
        assert_eq!(stamp_filter("startswith(displayName,'a')"), None);
        assert_eq!(literals("'unterminated"), None);
    }

    #[derive(Clone, Debug)]
    enum Op {
        Create,
        Edit(usize),
        Delete(usize),
        Sync(usize),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            Just(Op::Create),
            any::<usize>().prop_map(Op::Edit),
            any::<usize>().prop_map(Op::Delete),
            (1usize..6).prop_map(Op::Sync),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
        /// A reader that follows the delta chain, page by page at any page size, mirrors the
        /// folder after every round. Fails if a change skips the log or paging drops items.
        #[test]
        fn a_delta_reader_mirrors_the_folder(ops in prop::collection::vec(op(), 1..60)) {
            let mut s = state();
            let mut mirror: BTreeMap<String, Value> = BTreeMap::new();
            let mut delta = None;
            let mut n = 0;
            for op in ops {
                let live: Vec<String> = s.contacts("u1", None).unwrap().into_iter().filter_map(|c| c.id).collect();
                match op {
                    Op::Create => {
                        n += 1;
                        s.create_contact("u1", "contacts", &json!({"givenName": format!("g{n}")})).unwrap();
                    }
                    Op::Edit(i) if !live.is_empty() => {
                        n += 1;
                        s.update_contact("u1", &live[i % live.len()], &json!({"jobTitle": format!("t{n}")}), None).unwrap();
                    }
                    Op::Delete(i) if !live.is_empty() => s.delete_contact("u1", &live[i % live.len()]).unwrap(),
                    Op::Sync(size) => {
                        // Between pages the user deletes the newest live contact: a round
                        // must never skip an item because of it.
                        let mut between = |s: &mut GraphState| {
                            let live = s.contacts("u1", None).unwrap();
                            if let Some(id) = live.last().and_then(|c| c.id.clone()) {
                                s.delete_contact("u1", &id).unwrap();
                            }
                        };
                        let (mut items, next) = follow_while(&mut s, delta.take(), size, &mut between).unwrap();
                        // What changed during that round comes in the next one.
                        let (more, next) = follow(&mut s, Some(next), size).unwrap();
                        items.extend(more);
                        for item in items {
                            let id = item["id"].as_str().unwrap().to_string();
                            if item.get("@removed").is_some() {
                                mirror.remove(&id);
                            } else {
                                prop_assert!(item.get("singleValueExtendedProperties").is_none());
                                mirror.insert(id, item["jobTitle"].clone());
                            }
                        }
                        delta = Some(next);
                        let truth: BTreeMap<String, Value> = s.contacts("u1", None).unwrap().into_iter()
                            .map(|c| (c.id.clone().unwrap(), json!(c.job_title))).collect();
                        prop_assert_eq!(&mirror, &truth);
                    }
                    _ => {}
                }
            }
        }
    }
}
