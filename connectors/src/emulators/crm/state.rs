//! The CRM's state, as CRM_API.md describes it: firm contacts referenced by users' lists,
//! each user's own entry per contact (notes, categories, Private, external_ref), versions
//! for conditional writes, and one change feed per list. A change to a firm field shows in
//! the feed of every list that holds the contact; a change to an entry only in its user's
//! (SPEC C11). Limits are enforced with errors that name the field.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use crate::crm::wire::{Appointment, Contact, Entry, FeedPage, Proxy, User};
use crate::crm::wire::{Change, ChangeOp};

/// Longest string the CRM takes, but notes.
pub const MAX_STRING: usize = 4 * 1024;
/// Longest notes.
pub const MAX_NOTES: usize = 64 * 1024;
/// Largest feed page.
pub const MAX_LIMIT: usize = 500;

/// An error as the CRM answers it: HTTP status, code, message.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{status} {code}: {message}")]
pub struct CrmError {
    /// HTTP status.
    pub status: u16,
    /// Error code (`invalid_request`, `not_found`, `version_mismatch`, `cursor_expired`).
    pub code: &'static str,
    /// What is wrong.
    pub message: String,
}

impl CrmError {
    fn invalid(message: impl Into<String>) -> Self {
        CrmError { status: 400, code: "invalid_request", message: message.into() }
    }
    fn not_found(what: &str) -> Self {
        CrmError { status: 404, code: "not_found", message: format!("{what} not found") }
    }
    fn version(current: u64) -> Self {
        CrmError { status: 412, code: "version_mismatch", message: format!("the version is now {current}") }
    }
}

/// A `PATCH` of a user's entry: any of its fields.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct EntryPatch {
    /// `external_ref`.
    pub external_ref: Option<Option<String>>,
    /// `notes`.
    pub notes: Option<String>,
    /// `categories`.
    pub categories: Option<Vec<String>>,
    /// `private`.
    pub private: Option<bool>,
}

/// The emulated CRM.
#[derive(Debug, Default)]
pub struct CrmState {
    contacts: BTreeMap<String, Contact>,
    lists: BTreeMap<String, BTreeMap<String, Entry>>,
    feeds: BTreeMap<String, Vec<String>>,
    feed_floor: BTreeMap<String, usize>,
    users: BTreeMap<String, User>,
    /// user -> the users who are its proxies.
    proxies: BTreeMap<String, BTreeSet<String>>,
    appointments: BTreeMap<String, Appointment>,
    next_id: u64,
    now: String,
    /// Indexes, so that a firm of thousands of lists answers as fast as a small one:
    /// lowercase e-mail → firm contacts with it; firm contact → the lists holding it.
    by_email: HashMap<String, BTreeSet<String>>,
    holders: HashMap<String, BTreeSet<String>>,
}

impl CrmState {
    /// An empty CRM whose clock reads `now` (RFC 3339).
    pub fn new(now: &str) -> CrmState {
        CrmState { now: now.to_string(), next_id: 1, ..CrmState::default() }
    }

    /// Set the clock.
    pub fn set_now(&mut self, now: &str) {
        self.now = now.to_string();
    }

    fn touch_lists_holding(&mut self, cid: &str) {
        let holders: Vec<String> = self.holders.get(cid).map(|h| h.iter().cloned().collect()).unwrap_or_default();
        for user in holders {
            self.feeds.entry(user).or_default().push(cid.to_string());
        }
    }

    fn touch_list(&mut self, user: &str, cid: &str) {
        self.feeds.entry(user.to_string()).or_default().push(cid.to_string());
    }

    fn with_entry(&self, user: &str, cid: &str) -> Option<Contact> {
        let mut c = self.contacts.get(cid)?.clone();
        c.entry = self.lists.get(user).and_then(|l| l.get(cid)).cloned();
        Some(c)
    }

    /// Every contact in `user`'s list, with the user's entry, in id order (for tests and
    /// the sandbox).
    pub fn list(&self, user: &str) -> Vec<Contact> {
        let ids: Vec<String> = self.lists.get(user).map(|l| l.keys().cloned().collect()).unwrap_or_default();
        ids.iter().filter_map(|cid| self.with_entry(user, cid)).collect()
    }

    /// `GET /api/users/{uid}/list/changes?cursor=&limit=`. Without a cursor: every contact
    /// of the list, paged (cursors `L<feed position>.<offset>`); then the feed from where the
    /// listing began (cursors `F<feed position>`).
    pub fn list_changes(&self, user: &str, cursor: Option<&str>, limit: usize) -> Result<FeedPage, CrmError> {
        if limit == 0 || limit > MAX_LIMIT {
            return Err(CrmError::invalid(format!("`limit` must be 1 to {MAX_LIMIT}")));
        }
        let feed = self.feeds.get(user).map(Vec::as_slice).unwrap_or(&[]);
        let expired = || CrmError {
            status: 410,
            code: "cursor_expired",
            message: "cursor expired; list again without one".into(),
        };
        let round = match cursor {
            None => Round::Listing { from: feed.len(), offset: 0 },
            Some(c) => parse_cursor(c).ok_or_else(expired)?,
        };
        let floor = self.feed_floor.get(user).copied().unwrap_or(0);
        let (ids, next): (Vec<String>, Round) = match round {
            Round::Listing { from, offset } => {
                if from < floor || from > feed.len() {
                    return Err(expired());
                }
                let all: Vec<String> = self.lists.get(user).map(|l| l.keys().cloned().collect()).unwrap_or_default();
                let end = (offset + limit).min(all.len());
                let page = all.get(offset.min(end)..end).unwrap_or(&[]).to_vec();
                let next = if end < all.len() { Round::Listing { from, offset: end } } else { Round::Feed { from } };
                (page, next)
            }
            Round::Feed { from } => {
                if from < floor || from > feed.len() {
                    return Err(expired());
                }
                let end = (from + limit).min(feed.len());
                let mut seen = BTreeSet::new();
                let page = feed[from..end].iter().filter(|id| seen.insert((*id).clone())).cloned().collect();
                (page, Round::Feed { from: end })
            }
        };
        let changes = ids
            .iter()
            .map(|cid| match self.with_entry(user, cid).filter(|c| c.entry.is_some()) {
                Some(contact) => Change { contact_id: cid.clone(), op: ChangeOp::Upsert, contact: Some(contact) },
                None => Change { contact_id: cid.clone(), op: ChangeOp::Remove, contact: None },
            })
            .collect();
        let more = match next {
            Round::Listing { .. } => true,
            Round::Feed { from } => from < feed.len(),
        };
        Ok(FeedPage { changes, cursor: next.to_string(), more })
    }

    /// Forget a user's feed so far: every cursor of that list expires (410).
    pub fn expire_cursors(&mut self, user: &str) {
        let len = self.feeds.get(user).map_or(0, Vec::len);
        self.feed_floor.insert(user.to_string(), len);
    }

    /// `POST /api/users/{uid}/list`: create a firm contact owned by `user` in their list;
    /// idempotent on `entry.external_ref` (`false`: it existed).
    pub fn create_in_list(&mut self, user: &str, mut contact: Contact) -> Result<(Contact, bool), CrmError> {
        validate(&contact)?;
        let entry = contact.entry.take().unwrap_or_default();
        if let Some(r) = entry.external_ref.as_deref() {
            let existing =
                self.lists.get(user).and_then(|l| l.iter().find(|(_, e)| e.external_ref.as_deref() == Some(r)));
            if let Some((cid, _)) = existing {
                let cid = cid.clone();
                return Ok((self.with_entry(user, &cid).ok_or_else(|| CrmError::not_found("contact"))?, false));
            }
        }
        let cid = format!("C{:06}", self.next_id);
        self.next_id += 1;
        contact.contact_id = cid.clone();
        contact.version = 1;
        contact.owner_user_id = Some(user.to_string());
        contact.updated_at = self.now.clone();
        self.index_emails(&cid, None, Some(&contact));
        self.contacts.insert(cid.clone(), contact);
        let entry = Entry { user_id: user.to_string(), version: 1, updated_at: self.now.clone(), ..entry };
        self.lists.entry(user.to_string()).or_default().insert(cid.clone(), entry);
        self.holders.entry(cid.clone()).or_default().insert(user.to_string());
        self.touch_list(user, &cid);
        Ok((self.with_entry(user, &cid).ok_or_else(|| CrmError::not_found("contact"))?, true))
    }

    /// `PUT /api/contacts/{cid}` with `If-Match`: replace the firm fields.
    pub fn update_contact(&mut self, cid: &str, if_match: u64, mut contact: Contact) -> Result<Contact, CrmError> {
        validate(&contact)?;
        let current = self.contacts.get(cid).ok_or_else(|| CrmError::not_found("contact"))?;
        if current.version != if_match {
            return Err(CrmError::version(current.version));
        }
        contact.contact_id = cid.to_string();
        contact.version = current.version + 1;
        contact.owner_user_id = current.owner_user_id.clone();
        contact.updated_at = self.now.clone();
        contact.entry = None;
        let old = self.contacts.get(cid).cloned();
        self.index_emails(cid, old.as_ref(), Some(&contact));
        self.contacts.insert(cid.to_string(), contact.clone());
        self.touch_lists_holding(cid);
        Ok(contact)
    }

    /// `PUT /api/users/{uid}/list/{cid}`: add an existing firm contact to a list.
    pub fn add_to_list(&mut self, user: &str, cid: &str) -> Result<(), CrmError> {
        if !self.contacts.contains_key(cid) {
            return Err(CrmError::not_found("contact"));
        }
        self.holders.entry(cid.to_string()).or_default().insert(user.to_string());
        let list = self.lists.entry(user.to_string()).or_default();
        if !list.contains_key(cid) {
            let entry =
                Entry { user_id: user.to_string(), version: 1, updated_at: self.now.clone(), ..Entry::default() };
            list.insert(cid.to_string(), entry);
            self.touch_list(user, cid);
        }
        Ok(())
    }

    /// `PATCH /api/users/{uid}/list/{cid}` with `If-Match` (the entry's version).
    pub fn patch_entry(
        &mut self,
        user: &str,
        cid: &str,
        if_match: u64,
        patch: EntryPatch,
    ) -> Result<Contact, CrmError> {
        if let Some(n) = &patch.notes {
            check_len("entry.notes", n, MAX_NOTES)?;
        }
        for (i, c) in patch.categories.iter().flatten().enumerate() {
            check_len(&format!("entry.categories[{i}]"), c, MAX_STRING)?;
        }
        let now = self.now.clone();
        let entry =
            self.lists.get_mut(user).and_then(|l| l.get_mut(cid)).ok_or_else(|| CrmError::not_found("list entry"))?;
        if entry.version != if_match {
            return Err(CrmError::version(entry.version));
        }
        if let Some(r) = patch.external_ref {
            entry.external_ref = r;
        }
        if let Some(n) = patch.notes {
            entry.notes = n;
        }
        if let Some(c) = patch.categories {
            entry.categories = c;
        }
        if let Some(p) = patch.private {
            entry.private = p;
        }
        entry.version += 1;
        entry.updated_at = now;
        self.touch_list(user, cid);
        self.with_entry(user, cid).ok_or_else(|| CrmError::not_found("contact"))
    }

    /// `DELETE /api/users/{uid}/list/{cid}`: take the contact out of the list (idempotent;
    /// the firm record stays).
    pub fn remove_from_list(&mut self, user: &str, cid: &str) {
        if let Some(h) = self.holders.get_mut(cid) {
            h.remove(user);
        }
        if self.lists.get_mut(user).is_some_and(|l| l.remove(cid).is_some()) {
            self.touch_list(user, cid);
        }
    }

    /// `GET /api/contacts?email=`: firm contacts with that address, case-insensitively.
    pub fn contacts_by_email(&self, email: &str) -> Vec<Contact> {
        let Some(ids) = self.by_email.get(&email.to_lowercase()) else { return Vec::new() };
        ids.iter().filter_map(|cid| self.contacts.get(cid)).cloned().collect()
    }

    /// Move firm contact `cid` in the e-mail index from `old`'s addresses to `new`'s.
    fn index_emails(&mut self, cid: &str, old: Option<&Contact>, new: Option<&Contact>) {
        for e in old.iter().flat_map(|c| &c.emails) {
            let key = e.address.to_lowercase();
            if let Some(ids) = self.by_email.get_mut(&key) {
                ids.remove(cid);
                if ids.is_empty() {
                    self.by_email.remove(&key);
                }
            }
        }
        for e in new.iter().flat_map(|c| &c.emails) {
            self.by_email.entry(e.address.to_lowercase()).or_default().insert(cid.to_string());
        }
    }

    /// A firm contact without entry.
    pub fn contact(&self, cid: &str) -> Option<&Contact> {
        self.contacts.get(cid)
    }

    /// Add (or replace) a CRM user.
    pub fn put_user(&mut self, user: User) {
        self.users.insert(user.id.clone(), user);
    }

    /// Make `proxy` a proxy of `user` (read-only access to `user`'s non-Private contacts).
    pub fn add_proxy(&mut self, user: &str, proxy: &str) {
        self.proxies.entry(user.to_string()).or_default().insert(proxy.to_string());
    }

    /// `GET /api/users`.
    pub fn users(&self) -> Vec<User> {
        self.users.values().cloned().collect()
    }

    /// `GET /api/users/{uid}/proxies`.
    pub fn proxies(&self, user: &str) -> Result<Vec<Proxy>, CrmError> {
        if !self.users.contains_key(user) {
            return Err(CrmError::not_found("user"));
        }
        Ok(self.proxies.get(user).into_iter().flatten().map(|p| Proxy { user_id: p.clone() }).collect())
    }

    /// `POST /api/appointments`: idempotent on `external_ref` (`false`: it existed).
    pub fn create_appointment(&mut self, mut appt: Appointment) -> Result<(Appointment, bool), CrmError> {
        validate_appointment(&appt)?;
        if let Some(existing) = self.appointments.values().find(|a| a.external_ref == appt.external_ref) {
            return Ok((existing.clone(), false));
        }
        appt.appointment_id = format!("A{:06}", self.next_id);
        self.next_id += 1;
        appt.version = 1;
        appt.updated_at = self.now.clone();
        self.appointments.insert(appt.appointment_id.clone(), appt.clone());
        Ok((appt, true))
    }

    /// `PUT /api/appointments/{aid}` with `If-Match`.
    pub fn update_appointment(
        &mut self,
        aid: &str,
        if_match: u64,
        mut appt: Appointment,
    ) -> Result<Appointment, CrmError> {
        validate_appointment(&appt)?;
        let current = self.appointments.get(aid).ok_or_else(|| CrmError::not_found("appointment"))?;
        if current.version != if_match {
            return Err(CrmError::version(current.version));
        }
        appt.appointment_id = aid.to_string();
        appt.version = current.version + 1;
        appt.updated_at = self.now.clone();
        self.appointments.insert(aid.to_string(), appt.clone());
        Ok(appt)
    }

    /// `GET /api/appointments/{aid}`.
    pub fn appointment(&self, aid: &str) -> Result<Appointment, CrmError> {
        self.appointments.get(aid).cloned().ok_or_else(|| CrmError::not_found("appointment"))
    }

    /// `GET /api/appointments?contact_id=&organizer_user_id=&attendee_user_id=&from=&to=`
    /// (`from`/`to` compare RFC 3339 instants as text: the appointment overlaps [from, to)).
    pub fn appointments(&self, filter: &AppointmentFilter) -> Vec<Appointment> {
        self.appointments
            .values()
            .filter(|a| {
                filter.contact_id.as_ref().is_none_or(|c| a.attendees.iter().any(|t| t.contact_id.as_ref() == Some(c)))
            })
            .filter(|a| filter.organizer_user_id.as_ref().is_none_or(|o| &a.organizer_user_id == o))
            .filter(|a| {
                filter
                    .attendee_user_id
                    .as_ref()
                    .is_none_or(|u| a.attendees.iter().any(|t| t.user_id.as_ref() == Some(u)))
            })
            .filter(|a| filter.from.as_ref().is_none_or(|f| a.end.as_str() > f.as_str()))
            .filter(|a| filter.to.as_ref().is_none_or(|t| a.start.as_str() < t.as_str()))
            .cloned()
            .collect()
    }

    /// An edit made inside the CRM, bypassing the API (appointments cannot be edited there;
    /// this is the drift synchub must overwrite, SPEC K6).
    pub fn drift_appointment(&mut self, aid: &str, subject: &str) -> Result<(), CrmError> {
        let a = self.appointments.get_mut(aid).ok_or_else(|| CrmError::not_found("appointment"))?;
        a.subject = subject.to_string();
        a.version += 1;
        Ok(())
    }
}

/// Filters of the appointment list.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AppointmentFilter {
    /// An attendee's CRM contact.
    pub contact_id: Option<String>,
    /// The organizer.
    pub organizer_user_id: Option<String>,
    /// An attendee who is a user.
    pub attendee_user_id: Option<String>,
    /// Ends after this instant.
    pub from: Option<String>,
    /// Starts before this instant.
    pub to: Option<String>,
}

fn validate_appointment(a: &Appointment) -> Result<(), CrmError> {
    check_lens(
        &[
            ("external_ref", &a.external_ref),
            ("organizer_user_id", &a.organizer_user_id),
            ("subject", &a.subject),
            ("start", &a.start),
            ("end", &a.end),
            ("location", &a.location),
        ],
        MAX_STRING,
    )?;
    if a.external_ref.is_empty() {
        return Err(CrmError::invalid("`external_ref` is required"));
    }
    if a.end < a.start {
        return Err(CrmError::invalid("`end` is before `start`"));
    }
    for (i, t) in a.attendees.iter().enumerate() {
        check_len(&format!("attendees[{i}].email"), &t.email, MAX_STRING)?;
        check_len(&format!("attendees[{i}].name"), &t.name, MAX_STRING)?;
    }
    Ok(())
}

/// Where a feed reader stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Round {
    /// Listing the whole list, begun when the feed was at `from`.
    Listing { from: usize, offset: usize },
    /// Reading the feed from `from`.
    Feed { from: usize },
}

impl std::fmt::Display for Round {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Round::Listing { from, offset } => write!(f, "L{from}.{offset}"),
            Round::Feed { from } => write!(f, "F{from}"),
        }
    }
}

fn parse_cursor(c: &str) -> Option<Round> {
    if let Some(rest) = c.strip_prefix('L') {
        let (from, offset) = rest.split_once('.')?;
        return Some(Round::Listing { from: from.parse().ok()?, offset: offset.parse().ok()? });
    }
    Some(Round::Feed { from: c.strip_prefix('F')?.parse().ok()? })
}

/// Every `(field, value)` within `max` bytes.
fn check_lens(fields: &[(&str, &String)], max: usize) -> Result<(), CrmError> {
    fields.iter().try_for_each(|(field, value)| check_len(field, value, max))
}

fn check_len(field: &str, value: &str, max: usize) -> Result<(), CrmError> {
    if value.len() > max {
        return Err(CrmError::invalid(format!("`{field}` is {} bytes, more than {max}", value.len())));
    }
    Ok(())
}

/// Every string within its limit, and kinds from the contract.
fn validate(c: &Contact) -> Result<(), CrmError> {
    let n = &c.name;
    check_lens(
        &[
            ("name.prefix", &n.prefix),
            ("name.first", &n.first),
            ("name.middle", &n.middle),
            ("name.last", &n.last),
            ("name.suffix", &n.suffix),
            ("name.nickname", &n.nickname),
            ("company", &c.company),
            ("department", &c.department),
            ("job_title", &c.job_title),
            ("web_site", &c.web_site),
            ("assistant", &c.assistant),
            ("spouse", &c.spouse),
        ],
        MAX_STRING,
    )?;
    for (i, e) in c.emails.iter().enumerate() {
        check_kind(&format!("emails[{i}].kind"), &e.kind, &["business", "home", "other"])?;
        check_len(&format!("emails[{i}].address"), &e.address, MAX_STRING)?;
    }
    let phone_kinds =
        ["business", "business2", "home", "home2", "mobile", "business_fax", "home_fax", "other", "assistant", "pager"];
    for (i, p) in c.phones.iter().enumerate() {
        check_kind(&format!("phones[{i}].kind"), &p.kind, &phone_kinds)?;
        check_len(&format!("phones[{i}].number"), &p.number, MAX_STRING)?;
    }
    for (i, a) in c.addresses.iter().enumerate() {
        check_kind(&format!("addresses[{i}].kind"), &a.kind, &["business", "home", "other"])?;
        for (part, v) in [
            ("street", &a.street),
            ("city", &a.city),
            ("region", &a.region),
            ("postcode", &a.postcode),
            ("country", &a.country),
        ] {
            check_len(&format!("addresses[{i}].{part}"), v, MAX_STRING)?;
        }
    }
    if let Some(d) = &c.birth_date {
        let ok = d.len() == 10
            && d.as_bytes()[4] == b'-'
            && d.as_bytes()[7] == b'-'
            && d.bytes().filter(u8::is_ascii_digit).count() == 8;
        if !ok {
            return Err(CrmError::invalid(format!("`birth_date` `{d}` is not YYYY-MM-DD")));
        }
    }
    if let Some(e) = &c.entry {
        check_len("entry.notes", &e.notes, MAX_NOTES)?;
        for (i, cat) in e.categories.iter().enumerate() {
            check_len(&format!("entry.categories[{i}]"), cat, MAX_STRING)?;
        }
    }
    Ok(())
}

fn check_kind(field: &str, kind: &str, allowed: &[&str]) -> Result<(), CrmError> {
    if allowed.contains(&kind) {
        Ok(())
    } else {
        Err(CrmError::invalid(format!("`{field}` `{kind}` is not one of {}", allowed.join(", "))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crm::wire::{Email, Name};

    fn jane(external_ref: Option<&str>) -> Contact {
        Contact {
            name: Name { first: "Jane".into(), last: "Tarnoff".into(), ..Name::default() },
            company: "Acme".into(),
            emails: vec![Email { kind: "business".into(), address: "Jane@Acme.com".into(), extra: Default::default() }],
            entry: Some(Entry { external_ref: external_ref.map(str::to_string), ..Entry::default() }),
            ..Contact::default()
        }
    }

    fn all_changes(crm: &CrmState, user: &str, cursor: Option<&str>) -> (Vec<Change>, String) {
        let (mut out, mut cursor) = (Vec::new(), cursor.map(str::to_string));
        loop {
            let page = crm.list_changes(user, cursor.as_deref(), 2).unwrap();
            out.extend(page.changes);
            cursor = Some(page.cursor);
            if !page.more {
                return (out, cursor.unwrap_or_default());
            }
        }
    }

    #[test]
    fn first_listing_pages_then_the_feed_shows_only_changes() {
        let mut crm = CrmState::new("2026-11-25T10:00:00Z");
        for i in 0..5 {
            crm.create_in_list("u1", jane(Some(&format!("hub-{i}")))).unwrap();
        }
        let (changes, cursor) = all_changes(&crm, "u1", None);
        assert_eq!(changes.len(), 5, "paged by 2, all five listed");
        let (changes, _) = all_changes(&crm, "u1", Some(&cursor));
        assert!(changes.is_empty());
        let cid = crm.list_changes("u1", None, 1).unwrap().changes[0].contact_id.clone();
        crm.remove_from_list("u1", &cid);
        let (changes, _) = all_changes(&crm, "u1", Some(&cursor));
        assert_eq!(changes.len(), 1);
        assert_eq!(changes[0].op, ChangeOp::Remove);
    }

    #[test]
    fn c11_a_firm_change_shows_in_every_list_an_entry_change_in_one() {
        let mut crm = CrmState::new("t0");
        let (c, created) = crm.create_in_list("u1", jane(Some("hub-1"))).unwrap();
        assert!(created);
        crm.add_to_list("u2", &c.contact_id).unwrap();
        let (_, cur1) = all_changes(&crm, "u1", None);
        let (_, cur2) = all_changes(&crm, "u2", None);
        let mut firm = crm.contact(&c.contact_id).unwrap().clone();
        firm.job_title = "Partner".into();
        crm.update_contact(&c.contact_id, 1, firm).unwrap();
        assert_eq!(all_changes(&crm, "u1", Some(&cur1)).0.len(), 1);
        assert_eq!(all_changes(&crm, "u2", Some(&cur2)).0.len(), 1);
        let (_, cur1) = all_changes(&crm, "u1", Some(&cur1));
        let (_, cur2) = all_changes(&crm, "u2", Some(&cur2));
        crm.patch_entry("u1", &c.contact_id, 1, EntryPatch { private: Some(true), ..EntryPatch::default() }).unwrap();
        let (u1, _) = all_changes(&crm, "u1", Some(&cur1));
        assert!(u1[0].contact.as_ref().unwrap().entry.as_ref().unwrap().private);
        assert!(all_changes(&crm, "u2", Some(&cur2)).0.is_empty(), "u1's entry is u1's own");
    }

    #[test]
    fn creates_are_idempotent_by_external_ref_and_writes_are_conditional() {
        let mut crm = CrmState::new("t0");
        let (a, _) = crm.create_in_list("u1", jane(Some("hub-1"))).unwrap();
        let (b, created) = crm.create_in_list("u1", jane(Some("hub-1"))).unwrap();
        assert!(!created);
        assert_eq!(a.contact_id, b.contact_id);
        let err = crm.update_contact(&a.contact_id, 7, jane(None)).unwrap_err();
        assert_eq!((err.status, err.code), (412, "version_mismatch"));
        assert_eq!(crm.update_contact("nope", 1, jane(None)).unwrap_err().status, 404);
        assert_eq!(crm.contacts_by_email("jane@acme.com").len(), 1);
    }

    #[test]
    fn limits_and_expired_cursors_answer_clear_errors() {
        let mut crm = CrmState::new("t0");
        let mut big = jane(None);
        big.company = "x".repeat(MAX_STRING + 1);
        let err = crm.create_in_list("u1", big).unwrap_err();
        assert_eq!(err.status, 400);
        assert!(err.message.contains("`company`"), "{}", err.message);
        let mut odd = jane(None);
        odd.phones.push(crate::crm::wire::Phone { kind: "fax".into(), number: "1".into(), extra: Default::default() });
        assert!(crm.create_in_list("u1", odd).unwrap_err().message.contains("phones[0].kind"));
        assert!(crm.list_changes("u1", None, 501).is_err());
        crm.create_in_list("u1", jane(Some("h"))).unwrap();
        let (_, cursor) = all_changes(&crm, "u1", None);
        crm.create_in_list("u1", jane(Some("h2"))).unwrap();
        crm.expire_cursors("u1");
        assert_eq!(crm.list_changes("u1", Some(&cursor), 10).unwrap_err().status, 410);
        assert_eq!(crm.list_changes("u1", Some("garbage"), 10).unwrap_err().code, "cursor_expired");
    }

    fn meeting(external_ref: &str) -> Appointment {
        Appointment {
            appointment_id: String::new(),
            version: 0,
            external_ref: external_ref.into(),
            organizer_user_id: "u1".into(),
            subject: "Quarterly review".into(),
            start: "2026-12-01T10:00:00Z".into(),
            end: "2026-12-01T11:00:00Z".into(),
            all_day: false,
            location: "Room 4".into(),
            status: crate::crm::wire::AppointmentStatus::Scheduled,
            attendees: vec![crate::crm::wire::Attendee {
                email: "jane@acme.com".into(),
                name: "Jane".into(),
                contact_id: Some("C000001".into()),
                user_id: None,
            }],
            flagged_by: vec!["u1".into()],
            updated_at: String::new(),
        }
    }

    #[test]
    fn appointments_are_idempotent_conditional_searchable_and_can_drift() {
        let mut crm = CrmState::new("t0");
        let (a, created) = crm.create_appointment(meeting("ical-1")).unwrap();
        assert!(created);
        let (b, created) = crm.create_appointment(meeting("ical-1")).unwrap();
        assert!(!created);
        assert_eq!(a.appointment_id, b.appointment_id);
        let mut moved = meeting("ical-1");
        moved.location = "Room 5".into();
        assert_eq!(crm.update_appointment(&a.appointment_id, 9, moved.clone()).unwrap_err().status, 412);
        let updated = crm.update_appointment(&a.appointment_id, 1, moved).unwrap();
        assert_eq!((updated.version, updated.location.as_str()), (2, "Room 5"));
        crm.drift_appointment(&a.appointment_id, "Edited in the CRM").unwrap();
        assert_eq!(crm.appointment(&a.appointment_id).unwrap().subject, "Edited in the CRM");
        let by_contact = AppointmentFilter { contact_id: Some("C000001".into()), ..AppointmentFilter::default() };
        assert_eq!(crm.appointments(&by_contact).len(), 1);
        let december = AppointmentFilter {
            from: Some("2026-12-01T00:00:00Z".into()),
            to: Some("2026-12-02T00:00:00Z".into()),
            ..AppointmentFilter::default()
        };
        assert_eq!(crm.appointments(&december).len(), 1);
        let january = AppointmentFilter { from: Some("2027-01-01T00:00:00Z".into()), ..AppointmentFilter::default() };
        assert!(crm.appointments(&january).is_empty());
        let mut backwards = meeting("ical-2");
        backwards.end = "2026-11-30T00:00:00Z".into();
        assert!(crm.create_appointment(backwards).unwrap_err().message.contains("before"));
    }

    #[test]
    fn users_and_proxies() {
        let mut crm = CrmState::new("t0");
        for id in ["u1", "u2"] {
            crm.put_user(User {
                id: id.into(),
                login: id.into(),
                email: format!("{id}@firm.example"),
                display_name: id.to_uppercase(),
            });
        }
        crm.add_proxy("u1", "u2");
        assert_eq!(crm.users().len(), 2);
        assert_eq!(crm.proxies("u1").unwrap(), vec![Proxy { user_id: "u2".into() }]);
        assert!(crm.proxies("u2").unwrap().is_empty());
        assert_eq!(crm.proxies("nobody").unwrap_err().status, 404);
    }

    mod feed_property {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Clone, Debug)]
        enum Op {
            Create(u8),
            Share(u8, usize),
            EditFirm(usize, u8),
            EditEntry(u8, usize, bool),
            Remove(u8, usize),
            Read(u8, usize),
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                (0..2u8).prop_map(Op::Create),
                (0..2u8, any::<usize>()).prop_map(|(u, i)| Op::Share(u, i)),
                (any::<usize>(), any::<u8>()).prop_map(|(i, v)| Op::EditFirm(i, v)),
                (0..2u8, any::<usize>(), any::<bool>()).prop_map(|(u, i, p)| Op::EditEntry(u, i, p)),
                (0..2u8, any::<usize>()).prop_map(|(u, i)| Op::Remove(u, i)),
                (0..2u8, 1..4usize).prop_map(|(u, l)| Op::Read(u, l)),
            ]
        }

        /// A reader that applies each page of a user's feed to a mirror.
        fn read(
            crm: &CrmState,
            user: &str,
            cursor: &mut Option<String>,
            mirror: &mut BTreeMap<String, Contact>,
            limit: usize,
        ) {
            loop {
                let page = crm.list_changes(user, cursor.as_deref(), limit).unwrap();
                for c in page.changes {
                    match c.contact {
                        Some(contact) => mirror.insert(c.contact_id, contact),
                        None => mirror.remove(&c.contact_id),
                    };
                }
                *cursor = Some(page.cursor);
                if !page.more {
                    return;
                }
            }
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
            /// Property: whatever happens to the lists (creates, shares, firm and entry edits,
            /// removals) between reads of any page size, a reader that starts with no cursor
            /// and follows the feed ends with exactly the user's list, each contact with its
            /// firm fields and that user's own entry (SPEC C11).
            #[test]
            fn a_feed_reader_mirrors_the_list(ops in prop::collection::vec(op(), 1..40)) {
                let users = ["u0", "u1"];
                let mut crm = CrmState::new("t0");
                let mut cursors: [Option<String>; 2] = [None, None];
                let mut mirrors: [BTreeMap<String, Contact>; 2] = [BTreeMap::new(), BTreeMap::new()];
                let ids = |crm: &CrmState| crm.contacts.keys().cloned().collect::<Vec<_>>();
                for (n, op) in ops.into_iter().enumerate() {
                    match op {
                        Op::Create(u) => {
                            crm.create_in_list(users[u as usize], jane(Some(&format!("hub-{n}")))).unwrap();
                        }
                        Op::Share(u, i) => {
                            let all = ids(&crm);
                            if let Some(cid) = all.get(i % all.len().max(1)) {
                                crm.add_to_list(users[u as usize], cid).unwrap();
                            }
                        }
                        Op::EditFirm(i, v) => {
                            let all = ids(&crm);
                            if let Some(cid) = all.get(i % all.len().max(1)) {
                                let mut c = crm.contact(cid).unwrap().clone();
                                c.job_title = format!("title {v}");
                                let version = c.version;
                                crm.update_contact(cid, version, c).unwrap();
                            }
                        }
                        Op::EditEntry(u, i, private) => {
                            let user = users[u as usize];
                            let listed: Vec<String> = crm.lists.get(user).map(|l| l.keys().cloned().collect()).unwrap_or_default();
                            if let Some(cid) = listed.get(i % listed.len().max(1)) {
                                let version = crm.lists[user][cid].version;
                                crm.patch_entry(user, cid, version, EntryPatch { private: Some(private), ..EntryPatch::default() }).unwrap();
                            }
                        }
                        Op::Remove(u, i) => {
                            let user = users[u as usize];
                            let listed: Vec<String> = crm.lists.get(user).map(|l| l.keys().cloned().collect()).unwrap_or_default();
                            if let Some(cid) = listed.get(i % listed.len().max(1)) {
                                crm.remove_from_list(user, cid);
                            }
                        }
                        Op::Read(u, limit) => read(&crm, users[u as usize], &mut cursors[u as usize], &mut mirrors[u as usize], limit),
                    }
                }
                for (i, user) in users.iter().enumerate() {
                    read(&crm, user, &mut cursors[i], &mut mirrors[i], 3);
                    let expected: BTreeMap<String, Contact> = crm
                        .lists
                        .get(*user)
                        .map(|l| l.keys().map(|cid| (cid.clone(), crm.with_entry(user, cid).unwrap())).collect())
                        .unwrap_or_default();
                    prop_assert_eq!(&mirrors[i], &expected);
                }
            }
        }
    }
}
