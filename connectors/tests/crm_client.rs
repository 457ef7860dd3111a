//! The CRM client against the CRM emulator over loopback (issue 4; SPEC C11, N1, N2).

use std::time::{Duration, Instant};

use serde_json::json;
use synchub_connectors::crm::client::{AppointmentQuery, CrmClient, RetryPolicy, Secret};
use synchub_connectors::crm::wire::{Appointment, AppointmentStatus, ChangeOp, Contact, Email, Entry, Name};
use synchub_connectors::emulators::crm::{CrmEmulator, CrmState, Fault};
use synchub_connectors::ErrorKind;

const TOKEN: &str = "crm-token";

async fn start() -> (CrmEmulator, CrmClient) {
    let emu = CrmEmulator::new(CrmState::new("2026-11-25T10:00:00Z"), TOKEN);
    let url = emu.start("127.0.0.1:0").await.expect("start the emulator");
    let retry = RetryPolicy { attempts: 4, base: Duration::from_millis(5), max_wait: Duration::from_secs(1) };
    (emu, CrmClient::new(&url, Secret::new(TOKEN), retry).expect("client"))
}

fn person(first: &str, external_ref: &str) -> Contact {
    Contact {
        name: Name { first: first.into(), last: "Tarnoff".into(), ..Name::default() },
        company: "Acme".into(),
        emails: vec![Email {
            kind: "business".into(),
            address: format!("{first}@acme.com"),
            extra: Default::default(),
        }],
        entry: Some(Entry { external_ref: Some(external_ref.into()), ..Entry::default() }),
        ..Contact::default()
    }
}

#[tokio::test]
async fn initial_listing_then_incremental_feed() {
    let (_, crm) = start().await;
    for i in 0..3 {
        crm.create_in_list("u1", &person(&format!("p{i}"), &format!("hub-{i}"))).await.expect("create");
    }
    let (changes, cursor) = crm.list_changes("u1", None).await.expect("list");
    assert_eq!(changes.len(), 3);
    assert!(changes.iter().all(|c| c.op == ChangeOp::Upsert));
    let (changes, cursor) = crm.list_changes("u1", Some(&cursor)).await.expect("feed");
    assert!(changes.is_empty());
    crm.create_in_list("u1", &person("p3", "hub-3")).await.expect("create");
    let (changes, _) = crm.list_changes("u1", Some(&cursor)).await.expect("feed");
    assert_eq!(changes.len(), 1);
}

#[tokio::test]
async fn c11_a_shared_contact_changes_in_every_list_and_private_stays_with_its_user() {
    let (_, crm) = start().await;
    let jane = crm.create_in_list("u1", &person("jane", "hub-1")).await.expect("create");
    crm.add_to_list("u2", &jane.contact_id).await.expect("share");
    let (_, c1) = crm.list_changes("u1", None).await.expect("list");
    let (_, c2) = crm.list_changes("u2", None).await.expect("list");

    let mut firm = jane.clone();
    firm.entry = None;
    firm.job_title = "Partner".into();
    crm.update_contact(&firm).await.expect("update");
    let (u1, c1) = crm.list_changes("u1", Some(&c1)).await.expect("feed");
    let (u2, c2) = crm.list_changes("u2", Some(&c2)).await.expect("feed");
    assert_eq!(u1[0].contact.as_ref().map(|c| c.job_title.as_str()), Some("Partner"));
    assert_eq!(u2[0].contact.as_ref().map(|c| c.job_title.as_str()), Some("Partner"));

    let entry_version = jane.entry.as_ref().map_or(1, |e| e.version);
    crm.patch_entry("u1", &jane.contact_id, entry_version, &json!({"private": true})).await.expect("patch");
    let (u1, _) = crm.list_changes("u1", Some(&c1)).await.expect("feed");
    assert!(u1[0].contact.as_ref().and_then(|c| c.entry.as_ref()).is_some_and(|e| e.private));
    let (u2, _) = crm.list_changes("u2", Some(&c2)).await.expect("feed");
    assert!(u2.is_empty(), "u1's Private flag is u1's own");
}

#[tokio::test]
async fn a_stale_version_is_precondition_failed_never_an_overwrite() {
    let (_, crm) = start().await;
    let jane = crm.create_in_list("u1", &person("jane", "hub-1")).await.expect("create");
    let mut first = jane.clone();
    first.department = "Tax".into();
    crm.update_contact(&first).await.expect("first update");
    let mut stale = jane.clone();
    stale.department = "Litigation".into();
    let err = crm.update_contact(&stale).await.expect_err("stale");
    assert_eq!(err.kind, ErrorKind::PreconditionFailed);
    let (changes, _) = crm.list_changes("u1", None).await.expect("list");
    assert_eq!(changes[0].contact.as_ref().map(|c| c.department.as_str()), Some("Tax"));
}

#[tokio::test]
async fn n1_a_create_retried_after_a_crash_finds_the_first_one() {
    let (_, crm) = start().await;
    let a = crm.create_in_list("u1", &person("jane", "hub-1")).await.expect("create");
    // The hub crashed before storing the link; it creates again with the same hub id.
    let b = crm.create_in_list("u1", &person("jane", "hub-1")).await.expect("create again");
    assert_eq!(a.contact_id, b.contact_id);
    assert_eq!(crm.list_changes("u1", None).await.expect("list").0.len(), 1);
}

#[tokio::test]
async fn an_expired_cursor_asks_for_a_relist_that_duplicates_nothing() {
    let (emu, crm) = start().await;
    crm.create_in_list("u1", &person("jane", "hub-1")).await.expect("create");
    let (_, cursor) = crm.list_changes("u1", None).await.expect("list");
    crm.create_in_list("u1", &person("joe", "hub-2")).await.expect("create");
    emu.state().expire_cursors("u1");
    let err = crm.list_changes("u1", Some(&cursor)).await.expect_err("expired");
    assert_eq!(err.kind, ErrorKind::ResyncRequired);
    let (all, _) = crm.list_changes("u1", None).await.expect("relist");
    let refs: Vec<_> = all.iter().filter_map(|c| c.contact.as_ref()?.entry.as_ref()?.external_ref.clone()).collect();
    assert_eq!(refs, vec!["hub-1".to_string(), "hub-2".to_string()], "each contact once, re-linkable by external_ref");
}

#[tokio::test]
async fn throttling_is_waited_out_and_persistent_failure_is_reported() {
    let (emu, crm) = start().await;
    emu.inject([Fault::Throttle { retry_after_secs: 0.05 }, Fault::Throttle { retry_after_secs: 0.05 }]);
    let started = Instant::now();
    crm.users().await.expect("users after two 429s");
    assert!(started.elapsed() >= Duration::from_millis(100), "Retry-After honoured");
    emu.inject([Fault::Status(503), Fault::Status(503), Fault::Status(503), Fault::Status(503)]);
    let err = crm.users().await.expect_err("four 503s exhaust four attempts");
    assert!(matches!(err.kind, ErrorKind::Throttled { .. }), "{err}");
    assert!(crm.users().await.is_ok(), "the next call goes through");
}

#[tokio::test]
async fn wrong_token_and_bad_data_map_to_their_kinds() {
    let (_, crm) = start().await;
    let mut bad = person("jane", "hub-1");
    bad.company = "x".repeat(5000);
    let err = crm.create_in_list("u1", &bad).await.expect_err("too long");
    assert_eq!(err.kind, ErrorKind::InvalidData);
    assert!(err.message.contains("company"), "{err}");
    let err = crm.appointment("A999").await.expect_err("missing");
    assert_eq!(err.kind, ErrorKind::NotFound);
}

#[tokio::test]
async fn appointments_are_idempotent_and_searchable() {
    let (_, crm) = start().await;
    let appt = Appointment {
        appointment_id: String::new(),
        version: 0,
        external_ref: "ical-1".into(),
        organizer_user_id: "u1".into(),
        subject: "Review".into(),
        start: "2026-12-01T10:00:00Z".into(),
        end: "2026-12-01T11:00:00Z".into(),
        all_day: false,
        location: "Room 4".into(),
        status: AppointmentStatus::Scheduled,
        attendees: vec![],
        flagged_by: vec!["u1".into()],
        updated_at: String::new(),
    };
    let a = crm.create_appointment(&appt).await.expect("create");
    let b = crm.create_appointment(&appt).await.expect("create again");
    assert_eq!(a.appointment_id, b.appointment_id);
    let mut moved = a.clone();
    moved.location = "Room 5".into();
    let moved = crm.update_appointment(&moved).await.expect("update");
    assert_eq!(moved.version, 2);
    let found = crm
        .appointments(&AppointmentQuery { organizer_user_id: Some("u1".into()), ..Default::default() })
        .await
        .expect("search");
    assert_eq!(found.len(), 1);
}
