//! The calendar's secondary keys in the store's `calendar_index` tree: search (SPEC K9),
//! pending projections, scheduled → held transitions (K10) and unmatched attendees (K4).
//! Every key is built from length-prefixed segments; times are sortable 8-byte values, so
//! a date range is one key range.

use chrono::{DateTime, Utc};
use synchub_store::key;

use super::model::{MeetingRecord, Projected, Status};

/// A time as 8 bytes that sort as the times do (also before 1970).
pub fn ts(t: DateTime<Utc>) -> [u8; 8] {
    ((t.timestamp_millis() as u64) ^ (1 << 63)).to_be_bytes()
}

/// A search dimension (SPEC K9).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dim {
    /// A linked CRM contact.
    Contact,
    /// The company of a linked contact (lower case).
    Company,
    /// An attendee who is a firm user.
    Attendee,
    /// The CRM organizer.
    Organizer,
    /// Every appointment (date range only).
    All,
}

impl Dim {
    fn tag(self) -> &'static [u8] {
        match self {
            Dim::Contact => b"c",
            Dim::Company => b"o",
            Dim::Attendee => b"a",
            Dim::Organizer => b"g",
            Dim::All => b"d",
        }
    }
}

/// The search key of `meeting` starting at `start` under (dim, value).
pub fn search(dim: Dim, value: &str, start: DateTime<Utc>, meeting: &str) -> Vec<u8> {
    key(&[b"s", dim.tag(), value.as_bytes(), &ts(start), meeting.as_bytes()])
}

/// The bound of a search range: every key of (dim, value) starting before `at` sorts below it.
pub fn search_bound(dim: Dim, value: &str, at: DateTime<Utc>) -> Vec<u8> {
    key(&[b"s", dim.tag(), value.as_bytes(), &ts(at)])
}

/// A meeting that must be projected again (a run stopped before the CRM had it).
pub fn pending(meeting: &str) -> Vec<u8> {
    key(&[b"p", meeting.as_bytes()])
}

/// The prefix of every pending key.
pub fn pending_prefix() -> Vec<u8> {
    key(&[b"p"])
}

/// A scheduled meeting that becomes held at `end` (SPEC K10).
pub fn transition(end: DateTime<Utc>, meeting: &str) -> Vec<u8> {
    key(&[b"t", &ts(end), meeting.as_bytes()])
}

/// The range of transitions due at `now`: [start, end).
pub fn transitions_due(now: DateTime<Utc>) -> (Vec<u8>, Vec<u8>) {
    (key(&[b"t"]), key(&[b"t", &ts(now)]))
}

/// An unmatched attendee of a meeting, reported to a flagging user (SPEC K4).
pub fn unmatched_by_user(user: &str, email: &str, meeting: &str) -> Vec<u8> {
    key(&[b"u", user.as_bytes(), email.as_bytes(), meeting.as_bytes()])
}

/// The prefix of a user's unmatched attendees (and of one e-mail's, with `email`).
pub fn unmatched_user_prefix(user: &str, email: Option<&str>) -> Vec<u8> {
    match email {
        Some(e) => key(&[b"u", user.as_bytes(), e.as_bytes()]),
        None => key(&[b"u", user.as_bytes()]),
    }
}

/// The same, by e-mail first: every meeting an address attends unmatched.
pub fn unmatched_by_email(email: &str, meeting: &str, user: &str) -> Vec<u8> {
    key(&[b"e", email.as_bytes(), meeting.as_bytes(), user.as_bytes()])
}

pub fn unmatched_email_prefix(email: &str) -> Vec<u8> {
    key(&[b"e", email.as_bytes()])
}

/// Every index entry a projection owns: search keys, the held transition while scheduled,
/// and the unmatched attendees per flagging user.
pub fn entries(meeting: &MeetingRecord, p: &Projected) -> Vec<(Vec<u8>, Vec<u8>)> {
    let id = meeting.id.as_str();
    let start = p.span.start();
    let mut out = vec![
        (search(Dim::All, "", start, id), Vec::new()),
        (search(Dim::Organizer, &p.organizer, start, id), Vec::new()),
    ];
    for a in &p.attendees {
        if let Some(c) = &a.contact {
            out.push((search(Dim::Contact, c, start, id), Vec::new()));
        }
        if let Some(company) = a.company.as_deref().filter(|c| !c.trim().is_empty()) {
            out.push((search(Dim::Company, &company.trim().to_lowercase(), start, id), Vec::new()));
        }
        if let Some(u) = &a.user {
            out.push((search(Dim::Attendee, u, start, id), Vec::new()));
        }
        if a.user.is_none() && a.contact.is_none() {
            let email = a.email.to_lowercase();
            for f in &meeting.flaggers {
                out.push((unmatched_by_user(&f.user, &email, id), a.name.clone().into_bytes()));
                out.push((unmatched_by_email(&email, id, &f.user), a.name.clone().into_bytes()));
            }
        }
    }
    if p.status == Status::Scheduled {
        out.push((transition(p.span.end(), id), Vec::new()));
    }
    out.sort();
    out.dedup();
    out
}

/// The last segment of a key (the meeting id of search keys).
pub fn last_segment(k: &[u8]) -> Option<String> {
    synchub_store::segments(k)?.last().and_then(|s| String::from_utf8(s.to_vec()).ok())
}

/// The segment `n` of a key.
pub fn segment(k: &[u8], n: usize) -> Option<String> {
    synchub_store::segments(k)?.get(n).and_then(|s| String::from_utf8(s.to_vec()).ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn a_date_range_is_a_key_range() {
        let t = |d| Utc.with_ymd_and_hms(2026, 12, d, 9, 0, 0).unwrap();
        let inside = search(Dim::Contact, "C1", t(10), "ap1");
        let before = search(Dim::Contact, "C1", t(1), "ap1");
        let at_end = search(Dim::Contact, "C1", t(20), "ap1");
        let (lo, hi) = (search_bound(Dim::Contact, "C1", t(5)), search_bound(Dim::Contact, "C1", t(20)));
        assert!(lo <= inside && inside < hi);
        assert!(before < lo);
        assert!(at_end >= hi, "the range is half-open");
        let other = search(Dim::Contact, "C10", t(10), "ap1");
        assert!(!(lo <= other && other < hi), "another contact's keys are outside");
        let early = Utc.with_ymd_and_hms(1960, 1, 1, 0, 0, 0).unwrap();
        assert!(ts(early) < ts(t(1)));
        assert_eq!(last_segment(&inside).as_deref(), Some("ap1"));
    }
}
