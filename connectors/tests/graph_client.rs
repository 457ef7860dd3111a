//! The Graph client against the Graph emulator over loopback (issue 3; SPEC N1, X9, K10, A1).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::json;
use synchub_connectors::emulators::graph::{Fault, GraphEmulator, GraphState};
use synchub_connectors::graph::calendar::{CalendarCursor, EventChange, EventKind, Window};
use synchub_connectors::graph::props::{self, HUB_ID, PAGER};
use synchub_connectors::graph::wire::{Contact, DateTimeTimeZone, EmailAddress, Event};
use synchub_connectors::graph::{ContactChange, ContactWrite, Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};
use synchub_connectors::ErrorKind;

const USER: &str = "u1";

fn now() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("a valid time")
}

fn config(url: &str, secret: &str, page_size: u32) -> GraphConfig {
    let mut config = GraphConfig::new(Credentials::new(url, "firm", "synchub-app", Secret::new(secret)));
    config.base = format!("{url}/v1.0");
    config.retry = RetryPolicy { attempts: 6, base: Duration::from_millis(2), max_wait: Duration::from_secs(2) };
    config.page_size = page_size;
    config
}

async fn start(page_size: u32) -> (GraphEmulator, GraphClient, String) {
    let mut state = GraphState::new("firm", "synchub-app", "s3cret", now());
    state.add_user(USER, "Ana Ortiz", "ana@firm.example");
    let emu = GraphEmulator::new(state);
    let url = emu.start("127.0.0.1:0").await.expect("start the emulator");
    let graph = GraphClient::new(config(&url, "s3cret", page_size)).expect("client");
    let folder = graph.default_folder(USER).await.expect("default folder").id;
    (emu, graph, folder)
}

fn person(i: usize) -> Contact {
    Contact {
        given_name: Some(format!("Given{i}")),
        surname: Some(format!("Surname{i}")),
        company_name: Some("Acme".into()),
        email_addresses: Some(vec![EmailAddress { name: None, address: Some(format!("p{i}@acme.com")) }]),
        ..Contact::default()
    }
}

/// A user's own edit in Outlook, beside synchub.
fn outlook_create(emu: &GraphEmulator, c: &Contact) -> String {
    let body = serde_json::to_value(c).expect("json");
    emu.state().create_contact(USER, "contacts", &body).expect("create").id.expect("an id")
}

fn upserts(changes: &[ContactChange]) -> Vec<&Contact> {
    changes
        .iter()
        .filter_map(|c| match c {
            ContactChange::Upsert(c) => Some(&**c),
            ContactChange::Removed { .. } => None,
        })
        .collect()
}

#[tokio::test]
async fn full_then_incremental_delta_across_pages_with_deletions() {
    let (emu, graph, folder) = start(7).await;
    let ids: Vec<String> = (0..30).map(|i| outlook_create(&emu, &person(i))).collect();

    let round = graph.pull_contacts(USER, &folder, None).await.expect("full round");
    assert!(round.full);
    assert_eq!(round.changes.len(), 30, "every contact once, across 5 pages of 7");
    assert_eq!(emu.stats().requests[USER], 1 + 5 + 5, "the folder, 5 delta pages, 5 pages of stamps");
    assert_eq!(emu.stats().batches, 0, "a full round lists the stamps instead of reading each item");
    let seen: BTreeSet<&str> = round.changes.iter().map(ContactChange::id).collect();
    assert_eq!(seen, ids.iter().map(String::as_str).collect());

    let quiet = graph.pull_contacts(USER, &folder, Some(&round.delta_link)).await.expect("quiet round");
    assert!(quiet.changes.is_empty() && !quiet.full);

    emu.state().update_contact(USER, &ids[3], &json!({"jobTitle": "Partner"}), None).expect("edit");
    emu.state().update_contact(USER, &ids[3], &json!({"department": "Tax"}), None).expect("edit again");
    emu.state().delete_contact(USER, &ids[4]).expect("delete");
    let new = outlook_create(&emu, &person(99));
    let round = graph.pull_contacts(USER, &folder, Some(&quiet.delta_link)).await.expect("incremental round");
    assert_eq!(round.changes.len(), 3, "an item changed twice is folded to one: {:?}", round.changes);
    let edited = upserts(&round.changes).into_iter().find(|c| c.id.as_deref() == Some(&ids[3])).expect("edited");
    assert_eq!(edited.job_title.as_deref(), Some("Partner"));
    assert_eq!(edited.department.as_deref(), Some("Tax"));
    assert!(round.changes.contains(&ContactChange::Removed { id: ids[4].clone() }));
    assert!(round.changes.iter().any(|c| c.id() == new));
}

#[tokio::test]
async fn extended_properties_and_stamps_are_listed_in_a_full_round_and_read_in_batches_after() {
    let (emu, graph, folder) = start(10).await;
    let ids: Vec<String> = (2..45).map(|i| outlook_create(&emu, &person(i))).collect();
    // Last, so the listing shows it on its fifth page: the next links keep the expansion.
    let mut stamped = person(1);
    stamped.set_extended(HUB_ID, "hub-1");
    stamped.set_extended(PAGER, "555-0101");
    stamped.set_extended("String 0x0037", "not synchub's");
    let id = outlook_create(&emu, &stamped);
    let round = graph.pull_contacts(USER, &folder, None).await.expect("round");
    assert_eq!(emu.stats().batches, 0, "a full round lists the stamps, 5 pages of 10");
    let c = upserts(&round.changes).into_iter().find(|c| c.id.as_deref() == Some(&id)).expect("the stamped one");
    assert_eq!(c.extended(HUB_ID), Some("hub-1"));
    assert_eq!(c.extended(PAGER), Some("555-0101"));
    assert_eq!(c.extended("String 0x0037"), None, "only the properties synchub reads");
    assert!(upserts(&round.changes).iter().all(|c| c.single_value_extended_properties.is_some()));

    emu.state().update_contact(USER, &id, &json!({"jobTitle": "Partner"}), None).expect("edit");
    for other in &ids[..24] {
        emu.state().update_contact(USER, other, &json!({"jobTitle": "Associate"}), None).expect("edit");
    }
    let round = graph.pull_contacts(USER, &folder, Some(&round.delta_link)).await.expect("incremental round");
    assert_eq!(emu.stats().batches, 2, "25 changed items read in batches of at most 20");
    let c = upserts(&round.changes).into_iter().find(|c| c.id.as_deref() == Some(&id)).expect("the stamped one");
    assert_eq!(c.extended(HUB_ID), Some("hub-1"));
    assert!(upserts(&round.changes).iter().all(|c| c.single_value_extended_properties.is_some()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_item_a_delete_hides_from_the_listing_is_read_not_taken_as_deleted() {
    // A listing pages by position: a delete on page 1 while page 2 is asked for moves the
    // first item of page 2 onto page 1, so no page shows it. It is alive and must not come
    // out of the round as removed.
    let (emu, graph, folder) = start(10).await;
    for i in 0..30 {
        outlook_create(&emu, &person(i));
    }
    let order: Vec<String> =
        emu.state().contacts(USER, Some(&folder)).expect("list").into_iter().filter_map(|c| c.id).collect();
    // The round: 3 delta pages and, at the same time, the listing; its second page waits.
    emu.inject(Some("expand="), [Fault::DelayMs(0), Fault::DelayMs(2_000)]);
    let before = emu.stats().requests[USER];
    let round = tokio::spawn({
        let (graph, folder) = (graph.clone(), folder.clone());
        async move { graph.pull_contacts(USER, &folder, None).await }
    });
    let started = Instant::now();
    // Every delta page answered, the listing's first page too; its second page waiting.
    while emu.stats().requests[USER] < before + 5 || emu.in_flight(USER) != 1 {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the listing's second page never came: {} requests, {} in flight",
            emu.stats().requests[USER] - before,
            emu.in_flight(USER)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    emu.state().delete_contact(USER, &order[0]).expect("delete on page 1");
    let round = round.await.expect("task").expect("round");
    let hidden = &order[10];
    let item = upserts(&round.changes).into_iter().find(|c| c.id.as_ref() == Some(hidden)).cloned();
    assert!(item.is_some_and(|c| c.single_value_extended_properties.is_some()), "the hidden item is read");
    assert!(!round.changes.contains(&ContactChange::Removed { id: hidden.clone() }));
    assert_eq!(upserts(&round.changes).len(), 30, "every item the delta showed");
}

#[tokio::test]
async fn an_expired_delta_link_resyncs_in_full_without_duplicates() {
    let (emu, graph, folder) = start(10).await;
    let written = graph
        .write(
            USER,
            &folder,
            (0..12)
                .map(|i| ContactWrite::Create {
                    hub_id: format!("hub-{i}"),
                    crm_contact_id: Some(format!("crm-{i}")),
                    contact: Box::new(person(i)),
                    retry: false,
                })
                .collect(),
        )
        .await;
    assert!(written.iter().all(Result::is_ok), "{written:?}");
    let first = graph.pull_contacts(USER, &folder, None).await.expect("round");
    emu.state().expire_delta_tokens(USER).expect("expire");

    let direct = graph.contact_delta(USER, &folder, Some(&first.delta_link)).await.unwrap_err();
    assert_eq!(direct.kind, ErrorKind::ResyncRequired, "410 SyncStateNotFound: {direct}");
    let again = graph.pull_contacts(USER, &folder, Some(&first.delta_link)).await.expect("resync");
    assert!(again.full, "the engine is told the listing is whole");
    let before: BTreeSet<&str> = first.changes.iter().map(ContactChange::id).collect();
    let after: BTreeSet<&str> = again.changes.iter().map(ContactChange::id).collect();
    assert_eq!(before, after, "the same items, nothing new");
    assert_eq!(emu.state().contacts(USER, None).expect("contacts").len(), 12, "no duplicates in the mailbox");
    let hubs: BTreeSet<&str> = upserts(&again.changes).iter().filter_map(|c| c.extended(HUB_ID)).collect();
    assert_eq!(hubs.len(), 12, "every item carries its hub id for re-linking (X9)");
    let next = graph.pull_contacts(USER, &folder, Some(&again.delta_link)).await.expect("the new chain works");
    assert!(next.changes.is_empty());
}

#[tokio::test]
async fn a_429_storm_is_waited_out_honouring_retry_after() {
    let (emu, graph, folder) = start(10).await;
    outlook_create(&emu, &person(1));
    let storm = (0..4).map(|_| Fault::Throttle { retry_after_secs: 0.15 });
    emu.inject(Some("/contacts/delta"), storm);
    let started = Instant::now();
    let round = graph.pull_contacts(USER, &folder, None).await.expect("survives the storm");
    assert_eq!(round.changes.len(), 1);
    assert!(started.elapsed() >= Duration::from_millis(600), "waited Retry-After each time: {:?}", started.elapsed());

    emu.inject(Some("/contacts/delta"), (0..10).map(|_| Fault::Throttle { retry_after_secs: 0.0 }));
    let e = graph.pull_contacts(USER, &folder, None).await.unwrap_err();
    assert!(matches!(e.kind, ErrorKind::Throttled { .. }), "bounded retries end in Throttled: {e}");
}

#[tokio::test]
async fn an_inner_429_is_retried_on_its_own() {
    let (emu, graph, folder) = start(10).await;
    let ids: Vec<String> = (0..5).map(|i| outlook_create(&emu, &person(i))).collect();
    emu.inject(Some(&format!("/contacts/{}", ids[2])), [Fault::Throttle { retry_after_secs: 0.05 }]);
    emu.inject(Some(&format!("/contacts/{}", ids[4])), [Fault::Status(503)]);
    let sent_before = emu.stats().requests[USER];
    let read = graph.read_extended(USER, &ids).await;
    assert!(read.iter().all(Result::is_ok), "{read:?}");
    assert_eq!(emu.stats().batches, 2, "one batch, then one with only the throttled requests");
    assert_eq!(emu.stats().requests[USER] - sent_before, 5 + 2, "the other three were not sent twice");
    let _ = folder;
}

#[tokio::test]
async fn never_more_than_four_requests_in_flight_per_mailbox() {
    let (emu, graph, folder) = start(10).await;
    let ids: Vec<String> = (0..120).map(|i| outlook_create(&emu, &person(i))).collect();
    emu.set_latency(Duration::from_millis(20));
    let singles = (0..12).map(|_| graph.default_folder(USER));
    let (read, folders) = tokio::join!(graph.read_extended(USER, &ids), futures_join(singles));
    assert!(read.iter().all(Result::is_ok) && folders.iter().all(Result::is_ok));
    let stats = emu.stats();
    assert_eq!(stats.max_in_flight[USER], 4, "the limit is used, never passed");
    assert_eq!(stats.refused, 0, "the emulator's cap of 4 never had to refuse");

    // The emulator's count can fail the assertion above: eight raw requests at once pass 4.
    let url = graph.base().to_string();
    let token = reqwest::Client::new()
        .post(url.replace("/v1.0", "/firm/oauth2/v2.0/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "synchub-app"),
            ("client_secret", "s3cret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ])
        .send()
        .await
        .expect("token")
        .json::<serde_json::Value>()
        .await
        .expect("json")["access_token"]
        .as_str()
        .expect("a token")
        .to_string();
    let http = reqwest::Client::new();
    let raw =
        (0..8).map(|_| http.get(format!("{url}/users/{USER}/contactFolders/{folder}")).bearer_auth(&token).send());
    let statuses: Vec<u16> =
        futures_join(raw).await.into_iter().map(|r| r.expect("answer").status().as_u16()).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    assert!(emu.stats().refused > 0);
}

/// Run futures concurrently on this task (a tiny join_all).
async fn futures_join<F: std::future::Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut set = Vec::new();
    for f in futures {
        set.push(Box::pin(f));
    }
    let mut out: Vec<Option<F::Output>> = (0..set.len()).map(|_| None).collect();
    std::future::poll_fn(|cx| {
        let mut pending = false;
        for (i, f) in set.iter_mut().enumerate() {
            if out[i].is_none() {
                match f.as_mut().poll(cx) {
                    std::task::Poll::Ready(v) => out[i] = Some(v),
                    std::task::Poll::Pending => pending = true,
                }
            }
        }
        if pending {
            std::task::Poll::Pending
        } else {
            std::task::Poll::Ready(())
        }
    })
    .await;
    out.into_iter().flatten().collect()
}

#[tokio::test]
async fn n1_a_create_retried_after_a_crash_finds_the_first() {
    let (emu, graph, folder) = start(10).await;
    let create = |retry| ContactWrite::Create {
        hub_id: "hub-7".into(),
        crm_contact_id: Some("crm-7".into()),
        contact: Box::new(person(7)),
        retry,
    };
    let first = graph.write(USER, &folder, vec![create(false)]).await.remove(0).expect("POST");
    // The hub crashed here: the item exists but its link was never stored.
    let second = graph.write(USER, &folder, vec![create(true)]).await.remove(0).expect("retried create");
    assert_eq!(second.id, first.id, "found by its stamp, not made again");
    let all = emu.state().contacts(USER, None).expect("contacts");
    assert_eq!(all.len(), 1);
    assert_eq!(all[0].extended(HUB_ID), Some("hub-7"));
    assert_eq!(all[0].extended(props::CRM_CONTACT_ID), Some("crm-7"));
    assert_eq!(all[0].display_name.as_deref(), Some("Given7 Surname7"));
    assert_eq!(all[0].file_as.as_deref(), Some("Surname7, Given7"));
    let found = graph.find_stamped(USER, &folder, "hub-8").await.expect("search");
    assert_eq!(found, None);
}

#[tokio::test]
async fn updates_are_conditional_and_keep_a_users_file_as() {
    let (emu, graph, folder) = start(10).await;
    let mut own = person(1);
    own.file_as = Some("Acme — outside counsel".into());
    own.job_title = Some("Associate".into());
    let id = outlook_create(&emu, &own);
    let before = emu.state().contact(USER, &id).expect("read");
    let mut after = before.clone();
    after.surname = Some("Smith".into());
    after.set_extended(PAGER, "555");
    let update = |etag: Option<String>| ContactWrite::Update {
        id: id.clone(),
        etag,
        before: Box::new(before.clone()),
        after: Box::new(after.clone()),
    };
    emu.state().update_contact(USER, &id, &json!({"jobTitle": "CEO"}), None).expect("the user edits first");
    let stale = graph.write(USER, &folder, vec![update(before.etag.clone())]).await.remove(0).unwrap_err();
    assert_eq!(stale.kind, ErrorKind::PreconditionFailed, "412 never overwrites: {stale}");

    let current = emu.state().contact(USER, &id).expect("read").etag;
    graph.write(USER, &folder, vec![update(current)]).await.remove(0).expect("fresh etag");
    let stored = emu.state().contact(USER, &id).expect("read");
    assert_eq!(stored.surname.as_deref(), Some("Smith"));
    assert_eq!(stored.display_name.as_deref(), Some("Given1 Smith"));
    assert_eq!(stored.file_as.as_deref(), Some("Acme — outside counsel"), "the user's own fileAs stays");
    assert_eq!(stored.job_title.as_deref(), Some("CEO"), "a PATCH sends only what changed, not the stale title");
    assert_eq!(stored.extended(PAGER), Some("555"));

    let gone = graph.write(USER, &folder, vec![ContactWrite::Delete { id: id.clone() }]).await;
    assert!(gone[0].is_ok());
    let again = graph.write(USER, &folder, vec![ContactWrite::Delete { id: id.clone() }]).await;
    assert!(again[0].is_ok(), "deleting what is gone is done");
    assert!(emu.state().contacts(USER, None).expect("contacts").is_empty());
}

#[tokio::test]
async fn a_token_is_renewed_before_it_expires() {
    let (emu, graph, _) = start(10).await;
    emu.state().set_token_life(1);
    // The token fetched by start() lives an hour; a refused one forces a one-second token.
    emu.state().set_now(now() + chrono::Duration::hours(2));
    graph.users().await.expect("users");
    let issued = emu.state().tokens_issued();
    let refused = emu.stats().unauthorized;
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    graph.users().await.expect("users");
    assert_eq!(emu.state().tokens_issued(), issued + 1, "renewed a tenth of its life early");
    assert_eq!(emu.stats().unauthorized, refused, "so Graph never had to refuse it");
}

#[tokio::test]
async fn n1_a_create_whose_answer_was_lost_is_found_by_its_stamp() {
    let (emu, graph, folder) = start(10).await;
    let create = |retry| ContactWrite::Create {
        hub_id: "hub-lost".into(),
        crm_contact_id: None,
        contact: Box::new(person(3)),
        retry,
    };
    emu.inject(Some("/contacts"), [Fault::LostAnswer]);
    let e = graph.write(USER, &folder, vec![create(false)]).await.remove(0).unwrap_err();
    assert!(e.outcome_unknown(), "applied, but the answer was lost: {e}");
    assert_eq!(emu.state().contacts(USER, None).expect("contacts").len(), 1, "not repeated blind");
    let found = graph.write(USER, &folder, vec![create(true)]).await.remove(0).expect("retried create");
    assert_eq!(found.extended(HUB_ID), Some("hub-lost"));
    assert_eq!(emu.state().contacts(USER, None).expect("contacts").len(), 1, "no duplicate");
}

#[tokio::test]
async fn tokens_are_cached_renewed_and_refused_cleanly() {
    let (emu, graph, _) = start(10).await;
    graph.users().await.expect("users");
    graph.users().await.expect("users");
    assert_eq!(emu.state().tokens_issued(), 1, "one token for many requests");
    let later = now() + chrono::Duration::hours(2);
    emu.state().set_now(later);
    graph.users().await.expect("a refused token is renewed once");
    assert_eq!(emu.state().tokens_issued(), 2);

    let url = graph.base().trim_end_matches("/v1.0").to_string();
    let wrong = GraphClient::new(config(&url, "wrong", 10)).expect("client");
    let e = wrong.users().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied);
    assert!(e.message.contains("invalid_client"), "{e}");
    assert!(!format!("{:?}", config(&url, "wrong", 10)).contains("wrong"), "secrets are redacted");
}

#[tokio::test]
async fn a1_users_are_listed_across_pages() {
    let (emu, graph, _) = start(2).await;
    for i in 2..6 {
        emu.state().add_user(&format!("u{i}"), &format!("User {i}"), &format!("u{i}@firm.example"));
    }
    let users = graph.users().await.expect("users");
    assert_eq!(users.len(), 5);
    assert_eq!(users[1].mail.as_deref(), Some("u2@firm.example"));
}

#[tokio::test]
async fn a_small_round_from_scratch_survives_a_failed_listing() {
    // The listing runs beside the delta; a round of one batch's worth reads the extended
    // properties in a batch when it fails, as it did before the listing ran at all.
    let (emu, graph, folder) = start(10).await;
    let ids: Vec<String> = (0..5).map(|i| outlook_create(&emu, &person(i))).collect();
    emu.inject(Some("expand="), [Fault::Status(403)]);
    let round = graph.pull_contacts(USER, &folder, None).await.expect("round");
    let read: BTreeSet<&str> = upserts(&round.changes)
        .iter()
        .filter(|c| c.single_value_extended_properties.is_some())
        .filter_map(|c| c.id.as_deref())
        .collect();
    assert_eq!(read, ids.iter().map(String::as_str).collect());

    // A larger round needs the listing: its failure is the round's.
    for i in 5..30 {
        outlook_create(&emu, &person(i));
    }
    emu.inject(Some("expand="), [Fault::Status(403)]);
    let e = graph.pull_contacts(USER, &folder, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::AccessDenied, "{e}");
}

#[tokio::test]
async fn malformed_and_failing_answers_map_to_kinds() {
    let (emu, graph, folder) = start(10).await;
    emu.inject(Some("/contacts/delta"), [Fault::Malformed]);
    let e = graph.pull_contacts(USER, &folder, None).await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidData, "{e}");
    emu.inject(Some("/contactFolders"), [Fault::Status(403)]);
    assert_eq!(graph.default_folder(USER).await.unwrap_err().kind, ErrorKind::AccessDenied);
    assert_eq!(graph.default_folder("nobody").await.unwrap_err().kind, ErrorKind::NotFound);
    emu.inject(Some("/contactFolders"), (0..6).map(|_| Fault::Status(502)));
    assert_eq!(graph.default_folder(USER).await.unwrap_err().kind, ErrorKind::Unavailable);
    let bad = ContactWrite::Update {
        id: "AAMkContact-missing".into(),
        etag: None,
        before: Box::new(Contact::default()),
        after: Box::new(person(1)),
    };
    assert_eq!(graph.write(USER, &folder, vec![bad]).await[0].as_ref().unwrap_err().kind, ErrorKind::NotFound);
}

fn event(subject: &str, start: DateTime<Utc>, hours: i64, kind: &str) -> Event {
    let at = |t: DateTime<Utc>| DateTimeTimeZone {
        date_time: t.format("%Y-%m-%dT%H:%M:%S.0000000").to_string(),
        time_zone: "UTC".into(),
    };
    Event {
        subject: Some(subject.into()),
        categories: Some(vec!["CRM".into()]),
        kind: Some(kind.into()),
        sensitivity: Some("normal".into()),
        start: Some(at(start)),
        end: Some(at(start + chrono::Duration::hours(hours))),
        ..Event::default()
    }
}

#[tokio::test]
async fn k10_calendar_delta_over_a_window_renewed_daily() {
    let (emu, graph, _) = start(2).await;
    let day = chrono::Duration::days(1);
    let (review, old, series, far) = {
        let mut s = emu.state();
        (
            s.put_event(USER, event("Deal review", now() + day * 3, 1, "singleInstance")).expect("event"),
            s.put_event(USER, event("Held last week", now() - day * 5, 1, "singleInstance")).expect("event"),
            s.put_event(USER, event("Weekly", now() + day, 1, "seriesMaster")).expect("event"),
            s.put_event(USER, event("Beyond the horizon", now() + day * 400, 1, "singleInstance")).expect("event"),
        )
    };
    emu.state().put_event(USER, event("Long ago", now() - day * 30, 1, "singleInstance")).expect("event");

    let round = graph.pull_calendar(USER, None, now(), Window::default()).await.expect("full round");
    assert!(round.full);
    let ids: BTreeSet<&str> = round
        .changes
        .iter()
        .map(|c| match c {
            EventChange::Upsert(i) => i.id.as_str(),
            EventChange::Removed { id, .. } => id.as_str(),
        })
        .collect();
    assert_eq!(
        ids,
        BTreeSet::from([review.id.as_str(), old.id.as_str(), series.id.as_str()]),
        "7 days back to 365 ahead"
    );
    let item = round.changes.iter().find_map(|c| match c {
        EventChange::Upsert(i) if i.id == series.id => Some(i),
        _ => None,
    });
    assert_eq!(item.expect("series").kind, EventKind::SeriesMaster);
    assert_eq!(round.cursor.start, now() - day * 7);
    let _ = far;

    let mut moved = review.clone();
    moved.subject = Some("Deal review (moved)".into());
    emu.state().put_event(USER, moved).expect("edit");
    emu.state().delete_event(USER, &old.id).expect("delete");
    let mut out = series.clone();
    out.start = event("", now() + day * 500, 1, "").start;
    out.end = event("", now() + day * 500, 2, "").end;
    emu.state().put_event(USER, out).expect("moved out of the window");
    let next = graph
        .pull_calendar(USER, Some(&round.cursor), now() + chrono::Duration::hours(1), Window::default())
        .await
        .expect("delta");
    assert!(!next.full);
    assert_eq!(next.cursor.started_at, now(), "the chain keeps its window");
    assert_eq!(next.changes.len(), 3);
    assert!(next.changes.contains(&EventChange::Removed { id: old.id.clone(), deleted: true }));
    assert!(
        next.changes.contains(&EventChange::Removed { id: series.id.clone(), deleted: false }),
        "left the window: `changed`, not deleted"
    );

    let tomorrow = now() + day + chrono::Duration::hours(1);
    let renewed = graph.pull_calendar(USER, Some(&next.cursor), tomorrow, Window::default()).await.expect("renewal");
    assert!(renewed.full, "a day-old chain is renewed by a fresh full round");
    assert_eq!(renewed.cursor.started_at, tomorrow);

    emu.state().expire_delta_tokens(USER).expect("expire");
    let cursor = CalendarCursor { started_at: tomorrow, ..renewed.cursor.clone() };
    let resynced = graph.pull_calendar(USER, Some(&cursor), tomorrow, Window::default()).await.expect("resync");
    assert!(resynced.full);
}

/// The emulator's own face: auth, batch limits, refused properties, and faults set over
/// its admin routes rather than the handle.
#[tokio::test]
async fn the_emulator_checks_requests_and_takes_faults_over_http() {
    let (emu, graph, folder) = start(10).await;
    let root = graph.base().trim_end_matches("/v1.0").to_string();
    let http = reqwest::Client::new();
    let status = |r: reqwest::Response| r.status().as_u16();
    let anon = http.get(format!("{root}/v1.0/users")).send().await.expect("answer");
    assert_eq!(status(anon), 401);

    let token = emu.state().tokens_issued();
    assert_eq!(token, 1);
    let faults = json!([
        {"path": "/contactFolders/", "fault": {"status": 503}},
        {"path": "/contactFolders/", "fault": {"throttle": {"retry_after_secs": 0.01}}}
    ]);
    let put = http.post(format!("{root}/_emulator/faults")).json(&faults).send().await.expect("admin");
    assert_eq!(status(put), 204);
    graph.default_folder(USER).await.expect("503 then 429 then served");
    let malformed = json!([{"fault": "malformed"}]);
    http.post(format!("{root}/_emulator/faults")).json(&malformed).send().await.expect("admin");
    let e = graph.users().await.unwrap_err();
    assert_eq!(e.kind, ErrorKind::InvalidData, "the malformed body: {e}");

    let expire = http.post(format!("{root}/_emulator/users/{USER}/expire-delta")).send().await.expect("admin");
    assert_eq!(status(expire), 204);
    let event = json!({"subject": "Added over the admin route", "iCalUId": "admin-1"});
    let put = http.post(format!("{root}/_emulator/users/{USER}/events")).json(&event).send().await.expect("admin");
    assert_eq!(put.status().as_u16(), 201);
    let made: serde_json::Value = put.json().await.expect("the event made");
    let id = made["id"].as_str().expect("an id");
    let stored = emu.state().event(USER, id).expect("in the calendar");
    assert_eq!(stored.subject.as_deref(), Some("Added over the admin route"));
    let bad = http.post(format!("{root}/_emulator/users/nobody/events")).json(&event).send().await.expect("admin");
    assert_eq!(status(bad), 404);
    let cap =
        http.put(format!("{root}/_emulator/concurrency-cap")).json(&json!({"cap": 2})).send().await.expect("admin");
    assert_eq!(status(cap), 204);
    let stats: serde_json::Value =
        http.get(format!("{root}/_emulator/stats")).send().await.expect("admin").json().await.expect("json");
    assert!(stats["requests"][USER].as_u64().expect("counted") >= 3);

    let c = Contact { given_name: Some("x".into()), ..Contact::default() };
    let written = graph
        .write(
            USER,
            &folder,
            vec![ContactWrite::Create { hub_id: "h".into(), crm_contact_id: None, contact: Box::new(c), retry: false }],
        )
        .await;
    assert!(written[0].is_ok());
    let raw_token = {
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", "synchub-app"),
            ("client_secret", "s3cret"),
            ("scope", "https://graph.microsoft.com/.default"),
        ];
        let answer: serde_json::Value = http
            .post(format!("{root}/firm/oauth2/v2.0/token"))
            .form(&form)
            .send()
            .await
            .expect("token")
            .json()
            .await
            .expect("json");
        answer["access_token"].as_str().expect("token").to_string()
    };
    let too_many: Vec<serde_json::Value> =
        (0..21).map(|i| json!({"id": i.to_string(), "method": "GET", "url": "/users"})).collect();
    let r = http
        .post(format!("{root}/v1.0/$batch"))
        .bearer_auth(&raw_token)
        .json(&json!({"requests": too_many}))
        .send()
        .await
        .expect("batch");
    assert_eq!(status(r), 400);
    let unknown = json!({"givenName": "a", "favouriteColour": "red"});
    let r = http
        .post(format!("{root}/v1.0/users/{USER}/contacts"))
        .bearer_auth(&raw_token)
        .json(&unknown)
        .send()
        .await
        .expect("create");
    assert_eq!(status(r), 400);
    let r = http
        .get(format!("{root}/v1.0/users/{USER}/calendarView/delta?startDateTime=2026-11-01T00:00:00Z&endDateTime=2026-12-01T00:00:00Z"))
        .bearer_auth(&raw_token)
        .send()
        .await
        .expect("calendar");
    assert_eq!(status(r), 400, "events are served in UTC only when asked for");
}

#[tokio::test]
async fn transient_failures_are_retried_but_a_create_is_never_repeated_blind() {
    let (emu, _, _) = start(10).await;
    let url = graph_root(&emu).await;
    let mut config = config(&url, "s3cret", 10);
    config.timeout = Duration::from_millis(300);
    let graph = GraphClient::new(config).expect("client");
    let folder = graph.default_folder(USER).await.expect("folder").id;
    emu.inject(Some("/contactFolders/"), [Fault::DelayMs(1_000)]);
    graph.default_folder(USER).await.expect("a timed-out read is retried");
    emu.inject(Some("/contactFolders/"), [Fault::Drop]);
    graph.default_folder(USER).await.expect("a dropped connection is retried");

    let create = ContactWrite::Create {
        hub_id: "hub-1".into(),
        crm_contact_id: None,
        contact: Box::new(person(1)),
        retry: false,
    };
    emu.inject(Some("$batch"), [Fault::Status(503)]);
    let e = graph.write(USER, &folder, vec![create.clone()]).await.remove(0).unwrap_err();
    assert!(e.outcome_unknown(), "a 503 leaves a create's outcome unknown: {e}");
    emu.inject(Some("/contacts"), [Fault::Status(503)]);
    let e = graph.write(USER, &folder, vec![create.clone()]).await.remove(0).unwrap_err();
    assert!(e.outcome_unknown(), "so does an inner 503: {e}");
    emu.inject(Some("/contacts"), [Fault::Throttle { retry_after_secs: 0.01 }]);
    graph.write(USER, &folder, vec![create]).await.remove(0).expect("a 429 did nothing, so it is sent again");
    assert_eq!(emu.state().contacts(USER, None).expect("contacts").len(), 1);
}

async fn graph_root(emu: &GraphEmulator) -> String {
    emu.start("127.0.0.1:0").await.expect("a second listener on the same emulator")
}
