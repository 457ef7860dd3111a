//! Calendar sync end to end over loopback (SPEC K1–K12, C7): flagged Outlook events in the
//! Graph emulator become appointments in the CRM emulator, through the real clients, the
//! hub and its sled store.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use synchub::calendar::model::{SkipReason, Status};
use synchub::calendar::{CalendarError, CalendarSettings, Search};
use synchub::hub::{ContactSettings, HubError};
use synchub_connectors::crm::wire::{Appointment, AppointmentStatus};
use synchub_connectors::emulators::crm::AppointmentFilter;
use synchub_connectors::graph::wire::{
    Attendee, DateTimeTimeZone, EmailAddress, Event, Location, Recipient, ResponseStatus,
};

use crate::firm::{person, Firm};

pub fn at(y: i32, m: u32, d: u32, h: u32, min: u32) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(y, m, d, h, min, 0).single().expect("a time")
}

/// The hub's time when the tests start.
pub fn t0() -> DateTime<Utc> {
    at(2026, 11, 25, 10, 0)
}

fn utc(t: DateTime<Utc>) -> DateTimeTimeZone {
    DateTimeTimeZone { date_time: format!("{}.0000000", t.format("%Y-%m-%dT%H:%M:%S")), time_zone: "UTC".into() }
}

fn address(name: &str, email: &str) -> EmailAddress {
    EmailAddress { name: Some(name.into()), address: Some(email.into()) }
}

/// A flagged single meeting organised by `organizer`, with `attendees`.
pub fn meeting(subject: &str, start: DateTime<Utc>, organizer: &str, attendees: &[&str]) -> Event {
    Event {
        subject: Some(subject.into()),
        categories: Some(vec!["CRM".into()]),
        kind: Some("singleInstance".into()),
        sensitivity: Some("normal".into()),
        start: Some(utc(start)),
        end: Some(utc(start + Duration::hours(1))),
        location: Some(Location { display_name: Some("Room 4".into()) }),
        organizer: Some(Recipient { email_address: address(organizer, organizer) }),
        attendees: Some(
            attendees
                .iter()
                .map(|a| Attendee {
                    kind: "required".into(),
                    status: ResponseStatus { response: "none".into() },
                    email_address: address(&a.replace('@', " at "), a),
                })
                .collect(),
        ),
        ..Event::default()
    }
}

/// User `i` puts `event` in their calendar; its id.
pub fn put(firm: &Firm, i: usize, event: Event) -> String {
    firm.graph.state().put_event(&format!("m{i}"), event).expect("event").id
}

/// User `i` changes their event `id`.
pub fn edit(firm: &Firm, i: usize, id: &str, change: impl FnOnce(&mut Event)) {
    let mut state = firm.graph.state();
    let mut event = state.event(&format!("m{i}"), id).expect("the event");
    change(&mut event);
    state.put_event(&format!("m{i}"), event).expect("edit");
}

pub fn appointments(firm: &Firm) -> Vec<Appointment> {
    firm.crm.state().appointments(&AppointmentFilter::default())
}

fn only(firm: &Firm) -> Appointment {
    let all = appointments(firm);
    assert_eq!(all.len(), 1, "one appointment: {all:#?}");
    all.into_iter().next().expect("one")
}

pub async fn match_users(firm: &Firm) {
    let hub = firm.hub.clone();
    tokio::task::spawn_blocking(move || hub.match_users()).await.expect("task").expect("matched");
}

/// A firm of `users` with calendar sync on and its first complete pass done (SPEC K7).
pub async fn ready_firm(users: usize) -> Firm {
    let firm = Firm::start(users, ContactSettings::default()).await;
    firm.set_time(t0());
    match_users(&firm).await;
    firm.hub.set_calendar_sync(true).expect("on");
    for i in 1..=users {
        firm.sync(i).await;
    }
    assert!(firm.hub.calendar().ready().expect("ready"), "the first pass made calendar sync ready");
    firm
}

fn reasons(firm: &Firm, i: usize) -> Vec<(String, SkipReason)> {
    firm.hub.calendar().skipped(&format!("u{i}")).expect("skipped").into_iter().map(|s| (s.subject, s.reason)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k1_calendar_sync_is_off_by_default_and_once_on_cannot_be_turned_off() {
    let mut firm = Firm::start(1, ContactSettings::default()).await;
    firm.set_time(t0());
    match_users(&firm).await;
    put(&firm, 1, meeting("Acme review", at(2026, 12, 1, 15, 0), "u1@firm.example", &["jane@acme.example"]));
    firm.sync(1).await;
    assert!(!firm.hub.calendar().enabled().unwrap(), "off by default");
    assert!(appointments(&firm).is_empty(), "nothing is sent while calendar sync is off");
    assert_eq!(reasons(&firm, 1), vec![("Acme review".to_string(), SkipReason::CalendarSyncOff)], "K11");

    firm.hub.set_calendar_sync(true).unwrap();
    let refused = firm.hub.set_calendar_sync(false).unwrap_err();
    assert!(matches!(refused, HubError::Calendar(CalendarError::Irreversible)), "{refused}");
    assert!(refused.to_string().contains("cannot be turned off"), "a clear error: {refused}");
    // A restart whose configuration says off does not turn it off either.
    firm.restart_calendar(CalendarSettings { enabled: false, ..CalendarSettings::default() });
    assert!(firm.hub.calendar().enabled().unwrap(), "still on after a restart configured off");
    firm.sync(1).await;
    firm.sync(1).await;
    assert_eq!(only(&firm).subject, "Acme review", "sent once ready");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k7_flagged_items_wait_until_the_first_complete_pass_has_run() {
    let firm = Firm::start(2, ContactSettings::default()).await;
    firm.set_time(t0());
    match_users(&firm).await;
    put(&firm, 1, meeting("Kick-off", at(2026, 12, 2, 9, 0), "u1@firm.example", &[]));
    firm.hub.set_calendar_sync(true).unwrap();
    firm.sync(1).await;
    assert!(appointments(&firm).is_empty(), "not accepted before the pass is complete");
    assert_eq!(reasons(&firm, 1), vec![("Kick-off".to_string(), SkipReason::NotReady)], "reported as waiting");
    assert!(!firm.hub.calendar().ready().unwrap(), "user 2 has not had their pass");
    firm.sync(2).await;
    assert!(firm.hub.calendar().ready().unwrap());
    firm.sync(1).await;
    assert_eq!(only(&firm).subject, "Kick-off");
    assert!(reasons(&firm, 1).is_empty(), "no longer waiting");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k2_k11_only_flagged_future_single_non_private_items_are_sent_and_the_rest_say_why() {
    let firm = ready_firm(1).await;
    let day = at(2026, 12, 3, 10, 0);
    put(&firm, 1, meeting("Sent", day, "u1@firm.example", &[]));
    let mut unflagged = meeting("Unflagged", day, "u1@firm.example", &[]);
    unflagged.categories = Some(vec!["Red".into()]);
    put(&firm, 1, unflagged);
    let mut occurrence = meeting("Weekly", day, "u1@firm.example", &[]);
    occurrence.kind = Some("occurrence".into());
    put(&firm, 1, occurrence);
    let mut master = meeting("Series", day, "u1@firm.example", &[]);
    master.kind = Some("seriesMaster".into());
    put(&firm, 1, master);
    let mut private = meeting("Doctor", day, "u1@firm.example", &[]);
    private.sensitivity = Some("private".into());
    put(&firm, 1, private);
    put(&firm, 1, meeting("Yesterday", t0() - Duration::days(1), "u1@firm.example", &[]));
    let mut lower = meeting("Lower-case flag", day, "u1@firm.example", &[]);
    lower.categories = Some(vec!["crm".into()]);
    put(&firm, 1, lower);
    firm.sync(1).await;

    let mut sent: Vec<String> = appointments(&firm).into_iter().map(|a| a.subject).collect();
    sent.sort();
    assert_eq!(sent, ["Lower-case flag", "Sent"]);
    let mut why = reasons(&firm, 1);
    why.sort();
    assert_eq!(
        why,
        vec![
            ("Doctor".to_string(), SkipReason::Private),
            ("Series".to_string(), SkipReason::Recurring),
            ("Weekly".to_string(), SkipReason::Recurring),
            ("Yesterday".to_string(), SkipReason::InThePast),
        ],
        "every flagged item not sent says why; unflagged ones are not listed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k3_an_appointment_carries_the_meeting_and_links_attendees_who_are_crm_contacts() {
    let firm = ready_firm(1).await;
    let jane = firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.example"));
    let start = at(2026, 12, 1, 15, 0);
    put(
        &firm,
        1,
        meeting("Acme deal review", start, "u1@firm.example", &["Jane@Acme.example", "bob@elsewhere.example"]),
    );
    let report = firm.sync(1).await;
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    let a = only(&firm);
    assert_eq!(a.subject, "Acme deal review");
    assert_eq!(a.organizer_user_id, "u1");
    assert_eq!((a.start.as_str(), a.end.as_str()), ("2026-12-01T15:00:00Z", "2026-12-01T16:00:00Z"));
    assert!(!a.all_day);
    assert_eq!(a.location, "Room 4");
    assert_eq!(a.status, AppointmentStatus::Scheduled);
    assert_eq!(a.flagged_by, ["u1"]);
    let by_email = |e: &str| a.attendees.iter().find(|t| t.email.eq_ignore_ascii_case(e)).expect("attendee").clone();
    assert_eq!(by_email("jane@acme.example").contact_id.as_deref(), Some(jane.as_str()), "matched by e-mail");
    assert_eq!(by_email("bob@elsewhere.example").contact_id, None);
    let history = firm.hub.history("u1").unwrap();
    assert_eq!(history.last().unwrap().appointments, [1, 0, 0], "the run counts the appointment");
    // A quiet run writes nothing.
    let version = a.version;
    firm.sync(1).await;
    assert_eq!(only(&firm).version, version, "nothing rewritten when nothing changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k4_an_unmatched_attendee_is_reported_and_once_added_linked_everywhere_and_synced_to_outlook() {
    let firm = ready_firm(1).await;
    put(&firm, 1, meeting("First", at(2026, 12, 1, 15, 0), "u1@firm.example", &["pat@newco.example"]));
    put(&firm, 1, meeting("Second", at(2026, 12, 8, 15, 0), "u1@firm.example", &["pat@newco.example"]));
    firm.sync(1).await;
    let unmatched = firm.hub.calendar().unmatched("u1").unwrap();
    assert_eq!(unmatched.len(), 1, "{unmatched:?}");
    assert_eq!(unmatched[0].email, "pat@newco.example");
    assert_eq!(unmatched[0].name, "pat at newco.example");
    assert_eq!(unmatched[0].appointments.len(), 2);

    let hub = firm.hub.clone();
    let refused = tokio::task::spawn_blocking(move || hub.add_attendee(&Firm::pair(1), "nobody@x.example"))
        .await
        .unwrap()
        .unwrap_err();
    assert!(refused.to_string().contains("not an unmatched attendee"), "{refused}");
    let hub = firm.hub.clone();
    let cid = tokio::task::spawn_blocking(move || hub.add_attendee(&Firm::pair(1), "Pat@NewCo.example"))
        .await
        .unwrap()
        .expect("added");
    for a in appointments(&firm) {
        let pat = a.attendees.iter().find(|t| t.email == "pat@newco.example").expect("pat");
        assert_eq!(pat.contact_id.as_deref(), Some(cid.as_str()), "linked in {}", a.subject);
    }
    assert!(firm.hub.calendar().unmatched("u1").unwrap().is_empty());
    assert!(firm.crm_list(1).iter().any(|c| c.contact_id == cid), "in the user's CRM list");
    firm.sync(1).await;
    let in_outlook = firm
        .outlook(1)
        .iter()
        .any(|c| c.email_addresses.iter().flatten().any(|e| e.address.as_deref() == Some("pat@newco.example")));
    assert!(in_outlook, "contact sync brought the new contact to Outlook");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k5_outlook_changes_update_the_appointment_and_cancelling_cancels_it() {
    let firm = ready_firm(1).await;
    let jane = firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.example"));
    let id = put(&firm, 1, meeting("Review", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| {
        e.subject = Some("Review (moved)".into());
        e.start = Some(utc(at(2026, 12, 2, 11, 0)));
        e.end = Some(utc(at(2026, 12, 2, 12, 30)));
        e.location = Some(Location { display_name: Some("Their office".into()) });
        e.attendees = Some(vec![Attendee {
            kind: "required".into(),
            status: ResponseStatus::default(),
            email_address: address("Jane", "jane@acme.example"),
        }]);
    });
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!(a.subject, "Review (moved)");
    assert_eq!((a.start.as_str(), a.end.as_str()), ("2026-12-02T11:00:00Z", "2026-12-02T12:30:00Z"));
    assert_eq!(a.location, "Their office");
    assert_eq!(a.attendees[0].contact_id.as_deref(), Some(jane.as_str()));
    assert_eq!(firm.hub.history("u1").unwrap().last().unwrap().appointments, [0, 1, 0]);

    edit(&firm, 1, &id, |e| e.is_cancelled = true);
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Cancelled);
    assert_eq!(firm.hub.history("u1").unwrap().last().unwrap().appointments, [0, 0, 1]);

    let deleted = put(&firm, 1, meeting("Lunch", at(2026, 12, 4, 12, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    firm.graph.state().delete_event("m1", &deleted).unwrap();
    firm.sync(1).await;
    let lunch = appointments(&firm).into_iter().find(|a| a.subject == "Lunch").unwrap();
    assert_eq!(lunch.status, AppointmentStatus::Cancelled, "deleting the meeting cancels it");
    assert!(lunch.flagged_by.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k5_one_flagger_unflagging_leaves_the_others_and_the_last_one_cancels() {
    let firm = ready_firm(2).await;
    let mut shared =
        meeting("Board", at(2026, 12, 5, 9, 0), "client@acme.example", &["u1@firm.example", "u2@firm.example"]);
    shared.ical_uid = Some("ical-board".into());
    let one = put(&firm, 1, shared.clone());
    let two = put(&firm, 2, shared);
    firm.sync(1).await;
    firm.sync(2).await;
    assert_eq!(only(&firm).flagged_by, ["u1", "u2"]);
    edit(&firm, 1, &one, |e| e.categories = Some(vec![]));
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!(a.flagged_by, ["u2"]);
    assert_eq!(a.status, AppointmentStatus::Scheduled, "still flagged by user 2");
    firm.graph.state().delete_event("m2", &two).unwrap();
    firm.sync(2).await;
    let a = only(&firm);
    assert!(a.flagged_by.is_empty());
    assert_eq!(a.status, AppointmentStatus::Cancelled, "cancelled once no flagging user remains");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k6_a_crm_side_edit_is_overwritten_on_the_next_run() {
    let firm = ready_firm(1).await;
    put(&firm, 1, meeting("Pitch", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    let a = only(&firm);
    firm.crm.state().drift_appointment(&a.appointment_id, "Edited in the CRM").unwrap();
    firm.sync(1).await;
    let after = only(&firm);
    assert_eq!(after.subject, "Pitch", "the Outlook version wins");
    assert!(after.version > a.version + 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k8_every_observed_version_is_logged_and_the_history_is_readable() {
    let firm = ready_firm(1).await;
    let id = put(&firm, 1, meeting("v1", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| e.subject = Some("v2".into()));
    firm.sync(1).await;
    // An attendee's answer alone is not a new version; a re-save with no change neither.
    edit(&firm, 1, &id, |e| {
        e.attendees = Some(vec![Attendee {
            kind: "required".into(),
            status: ResponseStatus { response: "accepted".into() },
            email_address: address("Jane", "jane@acme.example"),
        }])
    });
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| {
        if let Some(a) = e.attendees.as_mut() {
            a[0].status.response = "declined".into();
        }
    });
    firm.sync(1).await;
    edit(&firm, 1, &id, |_| {});
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| e.categories = Some(vec![]));
    firm.sync(1).await;
    let view = firm.hub.calendar().search(&Search::default()).unwrap();
    assert_eq!(view.len(), 1);
    let history = firm.hub.calendar().history(&view[0].id).unwrap();
    let changes: Vec<(&str, &str)> = history.iter().map(|h| (h.change.as_str(), h.version.subject.as_str())).collect();
    assert_eq!(
        changes,
        [("sent", "v1"), ("updated", "v2"), ("updated", "v2"), ("unflagged", "v2")],
        "the attendee added is a version, the answers are not"
    );
    assert!(history.windows(2).all(|w| w[0].seq < w[1].seq), "oldest first");
    assert!(history.iter().all(|h| h.user == "u1" && h.item == id && h.hash.len() == 64));
    let log = firm.hub.store().log(1, usize::MAX).unwrap();
    assert_eq!(log.len(), 4, "the log holds exactly those versions");
    assert!(matches!(firm.hub.calendar().history("ap-none"), Err(CalendarError::NotFound(_))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k9_appointments_are_found_by_contact_company_attendee_organizer_and_dates() {
    let firm = ready_firm(2).await;
    let jane = firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.example"));
    firm.crm_add(1, &person("Raj", "Patel", "Globex", "raj@globex.example"));
    put(
        &firm,
        1,
        meeting("Acme December", at(2026, 12, 10, 9, 0), "u1@firm.example", &["jane@acme.example", "u2@firm.example"]),
    );
    put(&firm, 1, meeting("Acme January", at(2027, 1, 12, 9, 0), "u1@firm.example", &["jane@acme.example"]));
    put(&firm, 2, meeting("Globex December", at(2026, 12, 11, 9, 0), "u2@firm.example", &["raj@globex.example"]));
    firm.sync(1).await;
    firm.sync(2).await;
    let find = |q: Search| {
        let mut s: Vec<String> = firm.hub.calendar().search(&q).unwrap().into_iter().map(|a| a.subject).collect();
        s.sort();
        s
    };
    let december = (Some(at(2026, 12, 1, 0, 0)), Some(at(2027, 1, 1, 0, 0)));
    assert_eq!(find(Search { contact: Some(jane.clone()), ..Search::default() }), ["Acme December", "Acme January"]);
    assert_eq!(
        find(Search { contact: Some(jane), from: december.0, to: december.1, ..Search::default() }),
        ["Acme December"],
        "which colleagues meet this client next month"
    );
    assert_eq!(find(Search { company: Some("ACME".into()), ..Search::default() }), ["Acme December", "Acme January"]);
    assert_eq!(find(Search { attendee: Some("u2".into()), ..Search::default() }), ["Acme December"]);
    assert_eq!(find(Search { organizer: Some("u2".into()), ..Search::default() }), ["Globex December"]);
    assert_eq!(
        find(Search { from: december.0, to: december.1, ..Search::default() }),
        ["Acme December", "Globex December"]
    );
    assert_eq!(
        find(Search { company: Some("globex".into()), organizer: Some("u1".into()), ..Search::default() }),
        Vec::<String>::new(),
        "filters combine"
    );
    let one = firm.hub.calendar().search(&Search { limit: 1, ..Search::default() }).unwrap();
    assert_eq!(one.len(), 1, "limit");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k10_an_ended_meeting_is_held_updated_within_the_window_and_scheduled_again_when_moved_ahead() {
    let firm = ready_firm(1).await;
    let start = at(2026, 11, 26, 9, 0);
    let id = put(&firm, 1, meeting("Negotiation", start, "u1@firm.example", &[]));
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Scheduled);
    firm.set_time(at(2026, 11, 27, 9, 0));
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Held, "recorded as held once it ended");
    edit(&firm, 1, &id, |e| e.location = Some(Location { display_name: Some("Moved room".into()) }));
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!((a.status, a.location.as_str()), (AppointmentStatus::Held, "Moved room"), "updated within the window");
    edit(&firm, 1, &id, |e| {
        e.start = Some(utc(at(2026, 12, 3, 9, 0)));
        e.end = Some(utc(at(2026, 12, 3, 10, 0)));
    });
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Scheduled, "moved to the future: scheduled again");
    // Ended, then out of the calendar window: it stays held, never cancelled.
    firm.set_time(at(2026, 12, 20, 9, 0));
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Held);
    firm.set_time(at(2027, 1, 5, 9, 0));
    firm.sync(1).await;
    firm.sync(1).await;
    assert_eq!(only(&firm).status, AppointmentStatus::Held, "aging out of the window is not a deletion");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k12_one_meeting_in_several_calendars_is_one_appointment_sourced_from_the_organizers_copy() {
    let firm = ready_firm(3).await;
    let mut copy =
        meeting("Strategy", at(2026, 12, 7, 14, 0), "u1@firm.example", &["u2@firm.example", "jane@acme.example"]);
    copy.ical_uid = Some("ical-strategy".into());
    let mut attendee_copy = copy.clone();
    attendee_copy.subject = Some("Strategy (my copy)".into());
    put(&firm, 2, attendee_copy);
    firm.sync(2).await;
    assert_eq!(only(&firm).subject, "Strategy (my copy)", "the only flagger's copy so far");
    put(&firm, 1, copy);
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!(a.subject, "Strategy", "the organizer flagged it: their copy is the source");
    assert_eq!(a.organizer_user_id, "u1");
    assert_eq!(a.flagged_by, ["u1", "u2"]);
    let u2 = a.attendees.iter().find(|t| t.email == "u2@firm.example").expect("u2 attends");
    assert_eq!(
        (u2.user_id.as_deref(), u2.contact_id.as_deref()),
        (Some("u2"), None),
        "a firm user is linked as a user"
    );

    // Organised outside the firm: the earliest flagger is the CRM organizer and the outside
    // organizer stays an attendee.
    let mut outside =
        meeting("Client call", at(2026, 12, 9, 16, 0), "ceo@client.example", &["u2@firm.example", "u3@firm.example"]);
    outside.ical_uid = Some("ical-client".into());
    put(&firm, 3, outside.clone());
    firm.sync(3).await;
    firm.set_time(t0() + Duration::minutes(5));
    put(&firm, 2, outside);
    firm.sync(2).await;
    let call = appointments(&firm).into_iter().find(|a| a.subject == "Client call").expect("one appointment");
    assert_eq!(appointments(&firm).len(), 2, "one per meeting, not per calendar");
    assert_eq!(call.organizer_user_id, "u3", "the earliest flagger");
    assert_eq!(call.flagged_by, ["u2", "u3"]);
    assert!(call.attendees.iter().any(|t| t.email == "ceo@client.example" && t.user_id.is_none()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_a_user_whose_contact_sync_is_off_sends_no_calendar_items() {
    let settings = ContactSettings { disabled_users: vec!["u2".into()], ..ContactSettings::default() };
    let firm = Firm::start(2, settings).await;
    firm.set_time(t0());
    match_users(&firm).await;
    firm.hub.set_calendar_sync(true).unwrap();
    put(&firm, 2, meeting("Off", at(2026, 12, 1, 9, 0), "u2@firm.example", &[]));
    firm.sync(1).await;
    assert!(firm.hub.calendar().ready().unwrap(), "a user with contact sync off is not waited for");
    let refused = firm.try_sync(2).await.unwrap_err();
    assert!(matches!(refused, HubError::Disabled(_)));
    assert!(appointments(&firm).is_empty());
    assert_eq!(reasons(&firm, 2), vec![("Off".to_string(), SkipReason::ContactSyncOff)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn times_are_utc_instants_across_a_dst_change_and_all_day_items_are_dates() {
    let firm = Firm::start(1, ContactSettings::default()).await;
    firm.set_time(at(2026, 10, 1, 9, 0));
    match_users(&firm).await;
    firm.hub.set_calendar_sync(true).unwrap();
    firm.sync(1).await;
    // London leaves summer time at 02:00 BST (01:00 UTC) on Sunday 25 October 2026.
    // 09:00 in London on Friday 23 October is 08:00 UTC; on Tuesday 27 October, 09:00 UTC.
    put(&firm, 1, meeting("Before", at(2026, 10, 23, 8, 0), "u1@firm.example", &[]));
    put(&firm, 1, meeting("After", at(2026, 10, 27, 9, 0), "u1@firm.example", &[]));
    // From 22:00 BST Saturday (21:00 UTC) to 10:00 GMT Sunday: thirteen hours, not twelve.
    let mut across = meeting("Overnight", at(2026, 10, 24, 21, 0), "u1@firm.example", &[]);
    across.end = Some(utc(at(2026, 10, 25, 10, 0)));
    put(&firm, 1, across);
    // An all-day item on the day of the change: Graph gives its floating dates.
    let mut day = meeting("Offsite", at(2026, 10, 25, 0, 0), "u1@firm.example", &[]);
    day.is_all_day = true;
    day.end = Some(utc(at(2026, 10, 26, 0, 0)));
    put(&firm, 1, day);
    firm.sync(1).await;
    let get = |s: &str| appointments(&firm).into_iter().find(|a| a.subject == s).expect(s);
    assert_eq!(get("Before").start, "2026-10-23T08:00:00Z");
    assert_eq!(get("After").start, "2026-10-27T09:00:00Z");
    let o = get("Overnight");
    let len = DateTime::parse_from_rfc3339(&o.end).unwrap() - DateTime::parse_from_rfc3339(&o.start).unwrap();
    assert_eq!(len, Duration::hours(13));
    let d = get("Offsite");
    assert!(d.all_day);
    assert_eq!((d.start.as_str(), d.end.as_str()), ("2026-10-25T00:00:00Z", "2026-10-26T00:00:00Z"), "exclusive end");
    let view = firm.hub.calendar().search(&Search {
        from: Some(at(2026, 10, 25, 0, 0)),
        to: Some(at(2026, 10, 26, 0, 0)),
        ..Search::default()
    });
    let history = firm.hub.calendar().history(&view.unwrap()[0].id).unwrap();
    let span = &history[0].version.span;
    let date = |d| NaiveDate::from_ymd_opt(2026, 10, d).unwrap();
    assert_eq!(*span, synchub::calendar::model::Span::AllDay { start: date(25), end: date(26) }, "stored as dates");
    assert_eq!(Status::Scheduled, firm.hub.calendar().search(&Search::default()).unwrap()[0].status);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_an_appointment_that_did_not_reach_the_crm_is_written_by_a_later_run_once() {
    use synchub_connectors::emulators::crm::Fault;
    let firm = ready_firm(2).await;
    put(&firm, 1, meeting("Retried", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.crm.inject((0..40).map(|_| Fault::Status(500)));
    let hub = firm.hub.clone();
    let failed = tokio::task::spawn_blocking(move || hub.calendar_step(&Firm::pair(1))).await.unwrap().unwrap();
    assert_eq!(failed.logged, 1, "the version is logged even though the CRM is down");
    assert!(!failed.errors.is_empty(), "the failure is reported");
    assert!(appointments(&firm).is_empty());
    firm.crm.clear_faults();
    // A lost answer: the CRM made it, the hub did not hear. User 2's step asks the CRM for
    // drifted appointments twice, then writes what is pending.
    let pass = || Fault::Delay(std::time::Duration::ZERO);
    firm.crm.inject([pass(), pass(), Fault::LostAnswer]);
    let hub = firm.hub.clone();
    let lost = tokio::task::spawn_blocking(move || hub.calendar_step(&Firm::pair(2))).await.unwrap().unwrap();
    firm.crm.clear_faults();
    // The client asks again; the CRM answers with the appointment it made (idempotent on
    // external_ref), and the step records it.
    assert_eq!(lost.appointments.created, 1, "{lost:?}");
    assert_eq!(appointments(&firm).len(), 1, "made once");
    // Any user's next step projects what is pending.
    firm.sync(2).await;
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!((a.subject.as_str(), a.flagged_by.clone()), ("Retried", vec!["u1".to_string()]));
    assert_eq!(firm.hub.store().log(1, usize::MAX).unwrap().len(), 1, "logged once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n2_an_event_that_does_not_read_never_cancels_its_appointment() {
    let firm = ready_firm(1).await;
    let id = put(&firm, 1, meeting("Keeps", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| e.sensitivity = Some("topSecret".into()));
    firm.sync(1).await;
    // The next day's full round lists it again, still unreadable.
    firm.set_time(t0() + Duration::days(1) + Duration::hours(1));
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!((a.status, a.flagged_by.as_slice()), (AppointmentStatus::Scheduled, &["u1".to_string()][..]));
    let errors = firm.hub.history("u1").unwrap().last().unwrap().errors.clone();
    assert!(errors.iter().any(|e| e.contains("topSecret")), "reported: {errors:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k5_a_meeting_moved_out_of_the_window_is_not_cancelled_but_a_copy_turned_into_a_series_is() {
    let firm = ready_firm(1).await;
    let far = put(&firm, 1, meeting("Far", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    let series = put(&firm, 1, meeting("Series", at(2026, 12, 2, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    edit(&firm, 1, &far, |e| {
        e.start = Some(utc(at(2028, 3, 1, 15, 0)));
        e.end = Some(utc(at(2028, 3, 1, 16, 0)));
    });
    edit(&firm, 1, &series, |e| e.kind = Some("seriesMaster".into()));
    firm.sync(1).await;
    let get = |s: &str| appointments(&firm).into_iter().find(|a| a.subject == s).expect(s);
    assert_eq!(get("Far").status, AppointmentStatus::Scheduled, "out of the window is not a deletion");
    assert_eq!(get("Series").status, AppointmentStatus::Cancelled, "a series is never sent (K2)");
    assert_eq!(reasons(&firm, 1), vec![("Series".to_string(), SkipReason::Recurring)]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c7_k12_an_organizer_whose_contact_sync_is_turned_off_is_no_longer_the_source() {
    let mut firm = ready_firm(2).await;
    let mut copy = meeting("Review", at(2026, 12, 7, 14, 0), "u1@firm.example", &["u2@firm.example"]);
    copy.ical_uid = Some("ical-review".into());
    put(&firm, 1, copy.clone());
    let theirs = put(&firm, 2, copy);
    firm.sync(1).await;
    firm.sync(2).await;
    firm.restart(ContactSettings { disabled_users: vec!["u1".into()], ..ContactSettings::default() });
    let _ = firm.try_sync(1).await;
    edit(&firm, 2, &theirs, |e| e.location = Some(Location { display_name: Some("Moved".into()) }));
    firm.sync(2).await;
    assert_eq!(only(&firm).location, "Moved", "the other flagger's copy is the source now");
    // Contact sync on again: the organizer's copy is the source again.
    firm.restart(ContactSettings::default());
    firm.sync(1).await;
    assert_eq!(only(&firm).location, "Room 4");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn k2_p1_a_copy_made_private_after_it_was_sent_is_withdrawn_and_its_new_content_never_reaches_the_crm() {
    let firm = ready_firm(1).await;
    let id = put(&firm, 1, meeting("Board prep", at(2026, 12, 1, 15, 0), "u1@firm.example", &[]));
    firm.sync(1).await;
    edit(&firm, 1, &id, |e| {
        e.subject = Some("Confidential: merger talks".into());
        e.sensitivity = Some("private".into());
    });
    firm.sync(1).await;
    let a = only(&firm);
    assert_eq!((a.status, a.subject.as_str()), (AppointmentStatus::Cancelled, "Board prep"), "{a:?}");
    assert_eq!(reasons(&firm, 1), vec![("Confidential: merger talks".to_string(), SkipReason::Private)]);
}
