//! What the calendar pipeline records: the mapped version of an Outlook item that the log
//! keeps (SPEC K8), the filter of SPEC K2/K7/K11, and the per-item and per-meeting records.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use synchub_connectors::graph::calendar::{CalendarItem, EventKind, Sensitivity};

/// When a meeting happens: UTC instants, or (all day) dates with an exclusive end.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Span {
    Timed { start: DateTime<Utc>, end: DateTime<Utc> },
    AllDay { start: NaiveDate, end: NaiveDate },
}

impl Span {
    /// From an item asked for in UTC: an all-day item's dates are its floating dates, and its
    /// end is exclusive (a one-day item on the 25th ends on the 26th).
    pub fn of(item: &CalendarItem) -> Span {
        if item.all_day {
            let start = item.start.date_naive();
            let end = item.end.date_naive().max(start.succ_opt().unwrap_or(start));
            Span::AllDay { start, end }
        } else {
            Span::Timed { start: item.start, end: item.end }
        }
    }

    /// The start as an instant (an all-day item: midnight UTC of its first day).
    pub fn start(&self) -> DateTime<Utc> {
        match self {
            Span::Timed { start, .. } => *start,
            Span::AllDay { start, .. } => start.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }

    /// The end as an instant (exclusive).
    pub fn end(&self) -> DateTime<Utc> {
        match self {
            Span::Timed { end, .. } => *end,
            Span::AllDay { end, .. } => end.and_time(chrono::NaiveTime::MIN).and_utc(),
        }
    }

    /// Start and end as the CRM's RFC 3339 strings.
    pub fn wire(&self) -> (String, String) {
        let s = |t: DateTime<Utc>| t.to_rfc3339_opts(SecondsFormat::Secs, true);
        (s(self.start()), s(self.end()))
    }

    pub fn all_day(&self) -> bool {
        matches!(self, Span::AllDay { .. })
    }
}

/// Someone on a meeting, as the log keeps them.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Who {
    pub email: String,
    pub name: String,
}

/// One observed version of a sent Outlook item: what SPEC K3/K5 carry to the CRM, nothing
/// else (an attendee's answer is not a new version).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Version {
    pub ical_uid: Option<String>,
    pub subject: String,
    pub span: Span,
    pub location: String,
    pub organizer: Option<Who>,
    pub attendees: Vec<Who>,
    pub cancelled: bool,
}

impl Version {
    pub fn of(item: &CalendarItem) -> Version {
        let who =
            |p: &synchub_connectors::graph::calendar::Person| Who { email: p.email.clone(), name: p.name.clone() };
        Version {
            ical_uid: item.ical_uid.clone(),
            subject: item.subject.clone(),
            span: Span::of(item),
            location: item.location.clone(),
            organizer: item.organizer.as_ref().map(who),
            attendees: item.attendees.iter().map(|a| who(&a.person)).collect(),
            cancelled: item.cancelled,
        }
    }

    /// The version's bytes as the log keeps them, and their SHA-256.
    pub fn encode(&self) -> (Vec<u8>, [u8; 32]) {
        // postcard cannot fail on these types (no maps with non-string keys, no unsized
        // sequences); an empty body would still hash and be logged.
        let body = postcard::to_allocvec(self).unwrap_or_default();
        let hash: [u8; 32] = Sha256::digest(&body).into();
        (body, hash)
    }

    pub fn decode(body: &[u8]) -> Result<Version, postcard::Error> {
        postcard::from_bytes(body)
    }
}

/// Why a flagged Outlook item was not sent (SPEC K11, X7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SkipReason {
    /// A series master, occurrence or exception (K2).
    Recurring,
    /// Marked Private in Outlook (K2).
    Private,
    /// Not in the future when it was first seen flagged (K2).
    InThePast,
    /// Calendar sync is off for the firm (K1).
    CalendarSyncOff,
    /// Calendar sync was enabled but its first complete pass has not finished (K7): waiting.
    NotReady,
    /// The user's contact sync is off (C7).
    ContactSyncOff,
}

impl SkipReason {
    pub fn as_str(self) -> &'static str {
        match self {
            SkipReason::Recurring => "recurring",
            SkipReason::Private => "private",
            SkipReason::InThePast => "in_the_past",
            SkipReason::CalendarSyncOff => "calendar_sync_off",
            SkipReason::NotReady => "not_ready",
            SkipReason::ContactSyncOff => "contact_sync_off",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether an item carries the flag category (case-insensitively, as Outlook compares).
pub fn flagged(item: &CalendarItem, category: &str) -> bool {
    item.categories.iter().any(|c| c.trim().eq_ignore_ascii_case(category.trim()))
}

/// What the item's own properties say about sending it, for an item not sent before
/// (SPEC K2): `None` when it may be sent. `Private` is Outlook's Private flag; personal and
/// confidential items are not Private.
pub fn refusal(item: &CalendarItem, now: DateTime<Utc>) -> Option<SkipReason> {
    if item.kind != EventKind::SingleInstance {
        Some(SkipReason::Recurring)
    } else if item.sensitivity == Sensitivity::Private {
        Some(SkipReason::Private)
    } else if Span::of(item).start() <= now {
        Some(SkipReason::InThePast)
    } else {
        None
    }
}

/// What the hub did with one of a user's Outlook items.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ItemState {
    /// Sent: the version last logged. `suspended`: the user's contact sync is off, so
    /// their copy no longer counts as the source (SPEC C7) until it is on again.
    Sent { hash: [u8; 32], end: DateTime<Utc>, suspended: bool },
    /// Flagged but not sent, and why.
    Skipped { reason: SkipReason, subject: String, start: DateTime<Utc>, recurring: bool },
}

/// A (user, Outlook item) record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ItemRecord {
    /// The meeting (hub appointment id) it belongs to.
    pub meeting: String,
    pub state: ItemState,
    /// When the hub last looked at it (ms).
    pub observed_ms: i64,
}

impl ItemRecord {
    /// The record of a copy of `meeting` just sent at `version` (hashed `hash`).
    pub fn sent(meeting: &str, version: &Version, hash: [u8; 32], observed_ms: i64) -> ItemRecord {
        ItemRecord {
            meeting: meeting.to_string(),
            state: ItemState::Sent { hash, end: version.span.end(), suspended: false },
            observed_ms,
        }
    }
}

/// A user who flagged a meeting, and their copy's latest version.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flagger {
    /// CRM user id.
    pub user: String,
    /// The mailbox's address (to tell the organizer's copy).
    pub address: String,
    pub item: String,
    /// When the hub first saw the copy flagged (ms): the earliest flagger's copy is the
    /// source unless the organizer flagged (SPEC K12).
    pub first_ms: i64,
    pub version: Version,
    /// The user's contact sync is off (SPEC C7): their copy is the source only when no
    /// other flagger's can be.
    pub suspended: bool,
}

/// The CRM's appointment for a meeting, as last written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CrmRef {
    pub id: String,
    pub version: u64,
    pub updated_at: String,
}

/// An attendee as projected: linked to a firm user or a CRM contact, or neither.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Linked {
    pub email: String,
    pub name: String,
    pub contact: Option<String>,
    pub company: Option<String>,
    pub user: Option<String>,
}

/// What was last projected to the CRM (SPEC K3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Projected {
    pub organizer: String,
    pub subject: String,
    pub span: Span,
    pub location: String,
    pub status: Status,
    pub attendees: Vec<Linked>,
    pub flagged_by: Vec<String>,
}

/// An appointment's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Scheduled,
    Held,
    Cancelled,
}

/// Everything the hub keeps of one meeting (one appointment, SPEC K12).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingRecord {
    pub id: String,
    /// The CRM's idempotency key: the iCalUId, or the item's own id when it has none.
    pub external_ref: String,
    /// Users whose flagged copy is live.
    pub flaggers: Vec<Flagger>,
    /// The source version last projected (kept when every flagger has gone).
    pub last: Option<Version>,
    pub crm: Option<CrmRef>,
    pub projected: Option<Projected>,
    /// Index entries (key, value) written for the projection, removed when it changes.
    pub index: Vec<(Vec<u8>, Vec<u8>)>,
    /// Whether it must be projected again (cleared when the CRM has the projection).
    pub due: bool,
    /// Its log entries' sequence numbers, oldest first (SPEC K8).
    pub history: Vec<u64>,
}

/// The meeting id for an external reference: short, URL-safe and stable.
pub fn meeting_id(external_ref: &str) -> String {
    let hash = Sha256::digest(external_ref.as_bytes());
    let mut id = String::from("ap");
    for b in &hash[..8] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Encode a record for the store.
pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

/// Decode a record from the store.
pub fn decode<T: serde::de::DeserializeOwned>(what: &str, bytes: &[u8]) -> Result<T, super::CalendarError> {
    postcard::from_bytes(bytes).map_err(|e| super::CalendarError::Corrupt(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use synchub_connectors::graph::calendar::{MeetingAttendee, Person};

    fn item() -> CalendarItem {
        CalendarItem {
            id: "e1".into(),
            ical_uid: Some("uid".into()),
            subject: "Review".into(),
            categories: vec!["crm ".into()],
            kind: EventKind::SingleInstance,
            sensitivity: Sensitivity::Normal,
            cancelled: false,
            all_day: false,
            start: Utc.with_ymd_and_hms(2026, 12, 1, 9, 0, 0).unwrap(),
            end: Utc.with_ymd_and_hms(2026, 12, 1, 10, 0, 0).unwrap(),
            location: "Room 1".into(),
            organizer: None,
            attendees: vec![MeetingAttendee {
                person: Person { name: "Jane".into(), email: "jane@acme.example".into() },
                kind: "required".into(),
                response: "none".into(),
            }],
            last_modified: None,
        }
    }

    #[test]
    fn k2_the_filter_names_each_reason() {
        let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).unwrap();
        let mut i = item();
        assert!(flagged(&i, "CRM"));
        assert_eq!(refusal(&i, now), None);
        i.kind = EventKind::Occurrence;
        assert_eq!(refusal(&i, now), Some(SkipReason::Recurring));
        i.kind = EventKind::SingleInstance;
        i.sensitivity = Sensitivity::Private;
        assert_eq!(refusal(&i, now), Some(SkipReason::Private));
        i.sensitivity = Sensitivity::Confidential;
        assert_eq!(refusal(&i, now), None);
        i.start = now;
        assert_eq!(refusal(&i, now), Some(SkipReason::InThePast));
        i.categories = vec!["Other".into()];
        assert!(!flagged(&i, "CRM"));
    }

    #[test]
    fn an_attendees_answer_is_not_a_new_version_but_a_move_is() {
        let a = item();
        let mut b = item();
        b.attendees[0].response = "accepted".into();
        assert_eq!(Version::of(&a).encode().1, Version::of(&b).encode().1);
        b.start += chrono::Duration::hours(1);
        assert_ne!(Version::of(&a).encode().1, Version::of(&b).encode().1);
        let (body, _) = Version::of(&b).encode();
        assert_eq!(Version::decode(&body).unwrap(), Version::of(&b));
    }

    #[test]
    fn all_day_items_are_dates_with_an_exclusive_end() {
        let mut i = item();
        i.all_day = true;
        i.start = Utc.with_ymd_and_hms(2026, 10, 25, 0, 0, 0).unwrap();
        i.end = Utc.with_ymd_and_hms(2026, 10, 26, 0, 0, 0).unwrap();
        let span = Span::of(&i);
        let day = |d| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
        assert_eq!(span, Span::AllDay { start: day(25), end: day(26) });
        assert_eq!(span.wire(), ("2026-10-25T00:00:00Z".to_string(), "2026-10-26T00:00:00Z".to_string()));
        // An all-day item Graph gives with no length still covers its day.
        i.end = i.start;
        assert_eq!(Span::of(&i), Span::AllDay { start: day(25), end: day(26) });
    }

    #[test]
    fn meeting_ids_are_stable_and_short() {
        assert_eq!(meeting_id("uid-1"), meeting_id("uid-1"));
        assert_ne!(meeting_id("uid-1"), meeting_id("uid-2"));
        assert_eq!(meeting_id("x").len(), 18);
    }
}
