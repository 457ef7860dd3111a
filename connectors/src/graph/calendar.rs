//! The calendar, read only: `calendarView/delta` over a window from the held-meeting
//! window before now (at least 7 days, SPEC K10) to a horizon (default 365 days), in UTC.
//! A delta chain's window is fixed when it starts, so the chain is renewed by a fresh full
//! round once a day. Events are mapped to [`CalendarItem`]s carrying what SPEC K2–K5 need.

use chrono::{DateTime, Duration as Days, NaiveDateTime, SecondsFormat, Utc};
use serde::{Deserialize, Serialize};

use super::client::GraphClient;
use super::wire::{Attendee, EmailAddress, Event};
use crate::http::seg;
use crate::{ConnectorError, ErrorKind};

/// The window's shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    /// Days before now the window starts (never fewer than 7: SPEC K10).
    pub past_days: i64,
    /// Days after now it ends.
    pub horizon_days: i64,
    /// How long a delta chain lives before a fresh full round.
    pub renew_after: Days,
}

impl Default for Window {
    fn default() -> Self {
        Window { past_days: 7, horizon_days: 365, renew_after: Days::days(1) }
    }
}

/// Where a mailbox's calendar chain stands (stored by the hub, opaque to it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarCursor {
    /// The chain's delta link.
    pub delta_link: String,
    /// The chain's window.
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// When the chain's full round ran.
    pub started_at: DateTime<Utc>,
}

/// `singleInstance`, `occurrence`, `exception` or `seriesMaster`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    SingleInstance,
    Occurrence,
    Exception,
    SeriesMaster,
}

impl EventKind {
    /// Whether the item belongs to a series (SPEC K2 never sends these).
    pub fn is_recurring(self) -> bool {
        self != EventKind::SingleInstance
    }
}

/// `normal`, `personal`, `private` or `confidential`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sensitivity {
    Normal,
    Personal,
    Private,
    Confidential,
}

/// Someone on a meeting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    pub name: String,
    /// The address as Exchange holds it (compare case-insensitively).
    pub email: String,
}

/// An attendee: who, and how they were invited and answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeetingAttendee {
    pub person: Person,
    /// `required`, `optional` or `resource`.
    pub kind: String,
    /// `none`, `accepted`, `declined`, `tentativelyAccepted`, …
    pub response: String,
}

/// One version of a calendar item, as synchub records it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct CalendarItem {
    /// The event's (immutable) id in this mailbox.
    pub id: String,
    /// The meeting's id across calendars (SPEC K12).
    pub ical_uid: Option<String>,
    pub subject: String,
    pub categories: Vec<String>,
    pub kind: EventKind,
    pub sensitivity: Sensitivity,
    pub cancelled: bool,
    pub all_day: bool,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub location: String,
    pub organizer: Option<Person>,
    pub attendees: Vec<MeetingAttendee>,
    pub last_modified: Option<DateTime<Utc>>,
}

/// A calendar delta item: a version, or gone: deleted, or (`deleted: false`, Graph's
/// reason `changed`) still there but moved out of the window.
#[derive(Clone, Debug, PartialEq)]
pub enum EventChange {
    Upsert(Box<CalendarItem>),
    Removed { id: String, deleted: bool },
}

/// A whole calendar round.
#[derive(Clone, Debug, PartialEq)]
pub struct CalendarRound {
    pub changes: Vec<EventChange>,
    pub cursor: CalendarCursor,
    /// Whether this round listed the whole window (items not in it are not in the window).
    pub full: bool,
    /// Events that did not fit (no start, an unknown type, …): left out of `changes` and
    /// reported, so one bad item never stops the others (SPEC N2).
    pub rejected: Vec<ConnectorError>,
    /// The ids of the rejected events: listed, so a full round does not take them for gone.
    pub rejected_ids: Vec<String>,
}

fn invalid(message: String) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidData, message)
}

/// A `dateTimeTimeZone` asked for in UTC (`2026-11-26T10:00:00.0000000`, or with an offset).
fn utc(id: &str, what: &str, value: Option<&super::wire::DateTimeTimeZone>) -> Result<DateTime<Utc>, ConnectorError> {
    let value = value.ok_or_else(|| invalid(format!("event {id}: no {what}")))?;
    if !value.time_zone.eq_ignore_ascii_case("UTC") && !value.time_zone.eq_ignore_ascii_case("Etc/UTC") {
        return Err(invalid(format!("event {id}: {what} is in `{}`, not the UTC asked for", value.time_zone)));
    }
    if let Ok(t) = DateTime::parse_from_rfc3339(&value.date_time) {
        return Ok(t.with_timezone(&Utc));
    }
    NaiveDateTime::parse_from_str(&value.date_time, "%Y-%m-%dT%H:%M:%S%.f")
        .map(|t| t.and_utc())
        .map_err(|e| invalid(format!("event {id}: {what} `{}`: {e}", value.date_time)))
}

fn person(address: &EmailAddress) -> Person {
    Person { name: address.name.clone().unwrap_or_default(), email: address.address.clone().unwrap_or_default() }
}

fn attendee(a: &Attendee) -> MeetingAttendee {
    MeetingAttendee { person: person(&a.email_address), kind: a.kind.clone(), response: a.status.response.clone() }
}

impl TryFrom<&Event> for CalendarItem {
    type Error = ConnectorError;

    /// Map a Graph event; what does not fit (no start, an unknown type, a zone other than
    /// UTC) is [`ErrorKind::InvalidData`] naming the event.
    fn try_from(e: &Event) -> Result<CalendarItem, ConnectorError> {
        let id = e.id.as_str();
        let kind = match e.kind.as_deref().unwrap_or("singleInstance") {
            "singleInstance" => EventKind::SingleInstance,
            "occurrence" => EventKind::Occurrence,
            "exception" => EventKind::Exception,
            "seriesMaster" => EventKind::SeriesMaster,
            other => return Err(invalid(format!("event {id}: unknown type `{other}`"))),
        };
        let sensitivity = match e.sensitivity.as_deref().unwrap_or("normal") {
            "normal" => Sensitivity::Normal,
            "personal" => Sensitivity::Personal,
            "private" => Sensitivity::Private,
            "confidential" => Sensitivity::Confidential,
            other => return Err(invalid(format!("event {id}: unknown sensitivity `{other}`"))),
        };
        let (start, end) = (utc(id, "start", e.start.as_ref())?, utc(id, "end", e.end.as_ref())?);
        if end < start {
            return Err(invalid(format!("event {id}: ends before it starts")));
        }
        let last_modified = match &e.last_modified_date_time {
            Some(t) => Some(
                DateTime::parse_from_rfc3339(t)
                    .map_err(|err| invalid(format!("event {id}: lastModifiedDateTime `{t}`: {err}")))?
                    .with_timezone(&Utc),
            ),
            None => None,
        };
        Ok(CalendarItem {
            id: id.to_string(),
            ical_uid: e.ical_uid.clone(),
            subject: e.subject.clone().unwrap_or_default(),
            categories: e.categories.clone().unwrap_or_default(),
            kind,
            sensitivity,
            cancelled: e.is_cancelled,
            all_day: e.is_all_day,
            start,
            end,
            location: e.location.as_ref().and_then(|l| l.display_name.clone()).unwrap_or_default(),
            organizer: e.organizer.as_ref().map(|o| person(&o.email_address)),
            attendees: e.attendees.iter().flatten().map(attendee).collect(),
            last_modified,
        })
    }
}

fn stamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

impl GraphClient {
    /// One calendar round for `user` at `now`: continue the chain in `cursor`, or start a
    /// fresh full round over a new window when there is none, when it is older than
    /// `window.renew_after`, or when Graph says its state expired.
    pub async fn pull_calendar(
        &self,
        user: &str,
        cursor: Option<&CalendarCursor>,
        now: DateTime<Utc>,
        window: Window,
    ) -> Result<CalendarRound, ConnectorError> {
        if let Some(c) = cursor.filter(|c| now - c.started_at < window.renew_after && now >= c.started_at) {
            match self.calendar_delta(user, c.delta_link.clone()).await {
                Ok((changes, rejected, rejected_ids, delta_link)) => {
                    let cursor = CalendarCursor { delta_link, ..c.clone() };
                    return Ok(CalendarRound { changes, cursor, full: false, rejected, rejected_ids });
                }
                Err(e) if e.kind == ErrorKind::ResyncRequired => {}
                Err(e) => return Err(e),
            }
        }
        let start = now - Days::days(window.past_days.max(7));
        let end = now + Days::days(window.horizon_days.max(1));
        let url = format!(
            "{}/users/{}/calendarView/delta?startDateTime={}&endDateTime={}",
            self.base(),
            seg(user),
            seg(&stamp(start)),
            seg(&stamp(end))
        );
        let (changes, rejected, rejected_ids, delta_link) = self.calendar_delta(user, url).await?;
        let cursor = CalendarCursor { delta_link, start, end, started_at: now };
        Ok(CalendarRound { changes, cursor, full: true, rejected, rejected_ids })
    }

    async fn calendar_delta(
        &self,
        user: &str,
        url: String,
    ) -> Result<(Vec<EventChange>, Vec<ConnectorError>, Vec<String>, String), ConnectorError> {
        let prefer = ["outlook.timezone=\"UTC\""];
        let (events, delta) = self.follow::<Event>(Some(user), "calendar delta", url, &prefer).await?;
        let delta = delta.ok_or_else(|| invalid("calendar delta: the last page has no @odata.deltaLink".into()))?;
        let mut changes: Vec<EventChange> = Vec::with_capacity(events.len());
        let mut rejected = Vec::new();
        let mut rejected_ids = Vec::new();
        for event in &events {
            if event.id.is_empty() {
                rejected.push(invalid("calendar delta: an event without an id".into()));
                continue;
            }
            changes.retain(|c| match c {
                EventChange::Upsert(i) => i.id != event.id,
                EventChange::Removed { id, .. } => *id != event.id,
            });
            match &event.removed {
                Some(r) => {
                    let deleted = !r.reason.eq_ignore_ascii_case("changed");
                    changes.push(EventChange::Removed { id: event.id.clone(), deleted });
                }
                None => match CalendarItem::try_from(event) {
                    Ok(item) => changes.push(EventChange::Upsert(Box::new(item))),
                    Err(e) => {
                        rejected.push(e);
                        rejected_ids.push(event.id.clone());
                    }
                },
            }
        }
        Ok((changes, rejected, rejected_ids, delta))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::wire::{self, Page};

    /// An event as Graph's reference shows one, with `Prefer: outlook.timezone="UTC"`.
    const PAGE: &str = r##"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(event)",
      "@odata.deltaLink": "https://graph.microsoft.com/v1.0/users/u1/calendarView/delta?$deltatoken=R0usmci39OQxqJrxK4",
      "value": [
        {
          "@odata.type": "#microsoft.graph.event",
          "@odata.etag": "W/\"EZ9r3czxY0m2jz8c45czkwAAFXcvIw==\"",
          "id": "AAMkAGI2TG93AAA=",
          "iCalUId": "040000008200E00074C5B7101A82E008",
          "subject": "Acme deal review",
          "categories": ["CRM"],
          "type": "singleInstance",
          "sensitivity": "normal",
          "isCancelled": false,
          "isAllDay": false,
          "isOnlineMeeting": true,
          "start": {"dateTime": "2026-12-01T15:00:00.0000000", "timeZone": "UTC"},
          "end": {"dateTime": "2026-12-01T16:00:00.0000000", "timeZone": "UTC"},
          "location": {"displayName": "Room 4", "locationType": "default"},
          "organizer": {"emailAddress": {"name": "Ana Ortiz", "address": "ana@firm.example"}},
          "attendees": [
            {"type": "required", "status": {"response": "accepted", "time": "2026-11-20T10:00:00Z"},
             "emailAddress": {"name": "Jane Tarnoff", "address": "Jane@Acme.com"}}
          ],
          "lastModifiedDateTime": "2026-11-20T09:58:17.4415Z"
        },
        {"@odata.type": "#microsoft.graph.event", "id": "AAMkAGI2TG94AAA=", "@removed": {"reason": "deleted"}}
      ]
    }"##;

    #[test]
    fn a_documented_event_maps_to_an_item() {
        let page: Page<Event> = wire::parse("calendar delta", PAGE.as_bytes()).unwrap();
        assert!(page.delta_link.is_some());
        let item = CalendarItem::try_from(&page.value[0]).unwrap();
        assert_eq!(item.subject, "Acme deal review");
        assert_eq!(item.categories, ["CRM"]);
        assert_eq!(item.kind, EventKind::SingleInstance);
        assert!(!item.kind.is_recurring());
        assert_eq!(stamp(item.start), "2026-12-01T15:00:00Z");
        assert_eq!(item.location, "Room 4");
        assert_eq!(item.organizer.as_ref().unwrap().email, "ana@firm.example");
        assert_eq!(item.attendees[0].person.email, "Jane@Acme.com");
        assert_eq!(item.attendees[0].response, "accepted");
        assert!(page.value[1].removed.is_some());
    }

    #[test]
    fn events_that_do_not_fit_are_named() {
        let mut page: Page<Event> = wire::parse("calendar delta", PAGE.as_bytes()).unwrap();
        let e = &mut page.value[0];
        e.kind = Some("weekly".into());
        assert!(CalendarItem::try_from(&*e).unwrap_err().message.contains("unknown type `weekly`"));
        e.kind = None;
        e.start.as_mut().unwrap().time_zone = "Pacific Standard Time".into();
        assert!(CalendarItem::try_from(&*e).unwrap_err().message.contains("not the UTC"));
        e.start = None;
        assert!(CalendarItem::try_from(&*e).unwrap_err().message.contains("no start"));
    }
}
