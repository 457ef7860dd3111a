//! Calendar sync at firm scale (issue 6; SPEC K1–K12). The hub drives the real Graph and CRM
//! clients against in-process emulators over loopback, with a sled store on local disk.
//!
//! Figures:
//! - `calendar_first_sending_cycle_100_users`: after the first complete pass (SPEC K7), the
//!   cycle that sends: 100 users, each with 50 flagged future meetings (5 of them shared with
//!   the next user: one appointment each, K12) and 150 that must be skipped (50 unflagged,
//!   50 recurring occurrences, 50 private); attendees are a CRM contact, a colleague and an
//!   outside guest. ≤ 2 s.
//! - `calendar_quiet_cycle_100_users`: the same users with nothing changed. ≤ 0.3 s.
//! - `calendar_search_contact_month_100k`: appointments of one contact in one month, among
//!   100,000 indexed appointments. ≤ 5 ms.
//! - `calendar_log_append_10k`: 10,000 log entries appended in one run's commit, durable on
//!   return. ≥ 50,000 entries/s.
//!
//! Cycles run the users' calendar steps four at a time, as the scheduler does.
//! Run: `cargo bench --bench calendar`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Duration as Days, TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use synchub::calendar::model::{
    meeting_id, CrmRef, Flagger, Linked, MeetingRecord, Projected, Span, Status, Version, Who,
};
use synchub::calendar::{record_projections, CalendarReport, CalendarSettings, Search};
use synchub::hub::Hub;
use synchub_connectors::crm::wire::{Contact as CrmContact, Email};
use synchub_connectors::emulators::crm::CrmState;
use synchub_connectors::emulators::graph::GraphState;
use synchub_connectors::graph::wire::{
    Attendee, DateTimeTimeZone, EmailAddress, Event, Location, Recipient, ResponseStatus,
};
use synchub_store::{CalendarWrite, LogEntry, Store};

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "firm_support.rs"]
mod firm_support;
use firm_support::{add_user, hub_with, pair, serve};

const USERS: usize = 100;
const FLAGGED: usize = 50;
const SHARED: usize = 5;
const CLIENTS: usize = 500;
const CONCURRENCY: usize = 4;

fn utc(t: DateTime<Utc>) -> DateTimeTimeZone {
    DateTimeTimeZone { date_time: format!("{}.0000000", t.format("%Y-%m-%dT%H:%M:%S")), time_zone: "UTC".into() }
}

fn person(email: String) -> EmailAddress {
    EmailAddress { name: Some(email.split('@').next().unwrap_or_default().to_string()), address: Some(email) }
}

fn event(subject: String, start: DateTime<Utc>, organizer: String, attendees: Vec<String>) -> Event {
    Event {
        subject: Some(subject),
        categories: Some(vec!["CRM".into()]),
        kind: Some("singleInstance".into()),
        sensitivity: Some("normal".into()),
        start: Some(utc(start)),
        end: Some(utc(start + Days::hours(1))),
        location: Some(Location { display_name: Some("Room 1".into()) }),
        organizer: Some(Recipient { email_address: person(organizer) }),
        attendees: Some(
            attendees
                .into_iter()
                .map(|a| Attendee {
                    kind: "required".into(),
                    status: ResponseStatus { response: "accepted".into() },
                    email_address: person(a),
                })
                .collect(),
        ),
        ..Event::default()
    }
}

/// The emulators' state: users, their calendars, and the firm's client contacts.
fn seed(now: DateTime<Utc>) -> (GraphState, CrmState) {
    let mut graph = GraphState::new("firm", "synchub", "secret", now);
    let mut crm = CrmState::new(&now.to_rfc3339());
    for u in 1..=USERS {
        add_user(&mut graph, &mut crm, u);
    }
    for n in 0..CLIENTS {
        let mut c = CrmContact::default();
        c.name.first = format!("Client{n}");
        c.name.last = "Person".into();
        c.company = format!("Company {}", n % 50);
        c.emails.push(Email {
            kind: "business".into(),
            address: format!("client{n}@clients.example"),
            extra: Default::default(),
        });
        crm.create_in_list("u1", c).expect("seed contact");
    }
    for u in 1..=USERS {
        let me = format!("u{u}@firm.example");
        let next = u % USERS + 1;
        let mailbox = format!("m{u}");
        for k in 0..FLAGGED {
            let start = now + Days::days(1 + (k as i64 % 60)) + Days::hours((k % 8) as i64);
            let attendees = vec![
                format!("client{}@clients.example", (u * 7 + k) % CLIENTS),
                format!("u{next}@firm.example"),
                format!("guest{}@guests.example", (u * 13 + k) % 1000),
            ];
            let mut e = event(format!("Meeting {u}-{k}"), start, me.clone(), attendees);
            e.ical_uid = Some(format!("ical-{u}-{k}"));
            if k < SHARED {
                // The colleague flags the same meeting in their calendar (SPEC K12).
                graph.put_event(&format!("m{next}"), e.clone()).expect("shared copy");
            }
            graph.put_event(&mailbox, e).expect("flagged");
            let later = start + Days::minutes(30);
            let mut plain = event(format!("Unflagged {u}-{k}"), later, me.clone(), vec![]);
            plain.categories = Some(vec!["Blue".into()]);
            graph.put_event(&mailbox, plain).expect("unflagged");
            let mut occurrence = event(format!("Weekly {u}-{k}"), later, me.clone(), vec![]);
            occurrence.kind = Some("occurrence".into());
            graph.put_event(&mailbox, occurrence).expect("recurring");
            let mut private = event(format!("Private {u}-{k}"), later, me.clone(), vec![]);
            private.sensitivity = Some("private".into());
            graph.put_event(&mailbox, private).expect("private");
        }
    }
    (graph, crm)
}

/// One calendar cycle of every user, four at a time; the steps' reports summed.
fn cycle(hub: &Arc<Hub>) -> CalendarReport {
    let next = AtomicUsize::new(1);
    let total = std::sync::Mutex::new(CalendarReport::default());
    std::thread::scope(|s| {
        for _ in 0..CONCURRENCY {
            s.spawn(|| loop {
                let u = next.fetch_add(1, Ordering::SeqCst);
                if u > USERS {
                    break;
                }
                let r = hub.calendar_step(&pair(u)).expect("calendar step");
                assert!(r.errors.is_empty(), "{:?}", r.errors);
                let mut t = total.lock().expect("total");
                t.observed += r.observed;
                t.sent += r.sent;
                t.skipped += r.skipped;
                t.waiting += r.waiting;
                t.appointments.created += r.appointments.created;
                t.appointments.updated += r.appointments.updated;
            });
        }
    });
    total.into_inner().expect("total")
}

/// A firm whose calendar sync is on and ready (its first complete pass done).
struct Ready {
    _emulators: (synchub_connectors::emulators::graph::GraphEmulator, synchub_connectors::emulators::crm::CrmEmulator),
    _dir: tempfile::TempDir,
    hub: Arc<Hub>,
}

fn ready(rt: &tokio::runtime::Runtime) -> Ready {
    let (graph, crm, g, c) = serve(rt, seed(Utc::now()));
    let dir = tempfile::tempdir().expect("dir");
    let hub = hub_with(&g, &c, dir.path(), rt.handle().clone(), CalendarSettings::default());
    hub.match_users().expect("users");
    hub.set_calendar_sync(true).expect("on");
    let pass = cycle(&hub);
    assert_eq!(pass.waiting as usize, USERS * (FLAGGED + SHARED), "{pass:?}");
    assert_eq!(pass.skipped as usize, USERS * (FLAGGED + SHARED + 2 * FLAGGED), "{pass:?}");
    assert!(hub.calendar().ready().expect("ready"));
    Ready { _emulators: (graph, crm), _dir: dir, hub }
}

fn cycles(c: &mut Criterion) {
    synchub::alloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let mut group = c.benchmark_group("calendar");
    group.sample_size(10).measurement_time(Duration::from_secs(30));
    group.bench_function("calendar_first_sending_cycle_100_users", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let firm = ready(&rt);
                let started = Instant::now();
                let sent = cycle(&firm.hub);
                spent += started.elapsed();
                assert_eq!(sent.appointments.created as usize, USERS * FLAGGED, "{sent:?}");
                assert_eq!(sent.sent as usize, USERS * (FLAGGED + SHARED));
            }
            spent
        })
    });
    let firm = ready(&rt);
    cycle(&firm.hub);
    group.bench_function("calendar_quiet_cycle_100_users", |b| {
        b.iter(|| {
            let quiet = cycle(&firm.hub);
            assert_eq!(quiet.sent + quiet.appointments.updated + quiet.appointments.created, 0, "{quiet:?}");
        })
    });
    group.finish();
}

fn search(c: &mut Criterion) {
    const APPOINTMENTS: usize = 100_000;
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(dir.path()).expect("store");
    let year = Utc.with_ymd_and_hms(2027, 1, 1, 0, 0, 0).single().expect("time");
    let mut batch = Vec::new();
    for n in 0..APPOINTMENTS {
        let start = year + Days::minutes(((n as u64 * 2_654_435_761) % (365 * 24 * 60)) as i64);
        let span = Span::Timed { start, end: start + Days::hours(1) };
        let linked = |k: usize| Linked {
            email: format!("client{k}@clients.example"),
            name: format!("Client {k}"),
            contact: Some(format!("C{k:06}")),
            company: Some(format!("Company {}", k % 200)),
            user: None,
        };
        let version = Version {
            ical_uid: Some(format!("ical-{n}")),
            subject: format!("Meeting {n}"),
            span: span.clone(),
            location: "Room".into(),
            organizer: Some(Who { email: format!("u{}@firm.example", n % 1000), name: "User".into() }),
            attendees: vec![],
            cancelled: false,
        };
        let id = meeting_id(&format!("ical-{n}"));
        batch.push(MeetingRecord {
            id,
            external_ref: format!("ical-{n}"),
            flaggers: vec![Flagger {
                user: format!("u{}", n % 1000),
                address: format!("u{}@firm.example", n % 1000),
                item: format!("e{n}"),
                first_ms: 0,
                version: version.clone(),
                suspended: false,
            }],
            last: Some(version),
            crm: Some(CrmRef { id: format!("A{n:06}"), version: 1, updated_at: String::new() }),
            projected: Some(Projected {
                organizer: format!("u{}", n % 1000),
                subject: format!("Meeting {n}"),
                span,
                location: "Room".into(),
                status: Status::Scheduled,
                attendees: vec![linked(n % 2000), linked((n * 7 + 3) % 2000)],
                flagged_by: vec![format!("u{}", n % 1000)],
            }),
            index: vec![],
            due: false,
            history: vec![],
        });
        if batch.len() == 10_000 {
            record_projections(&store, &batch).expect("record");
            batch.clear();
        }
    }
    let hub_search = synchub::calendar::search_store;
    let march = Search {
        contact: Some("C000042".into()),
        from: Some(Utc.with_ymd_and_hms(2027, 3, 1, 0, 0, 0).single().expect("time")),
        to: Some(Utc.with_ymd_and_hms(2027, 4, 1, 0, 0, 0).single().expect("time")),
        ..Search::default()
    };
    let found = hub_search(&store, &march).expect("search");
    assert!(!found.is_empty() && found.len() < 50, "{} found", found.len());
    eprintln!("search: {} appointments of C000042 in March", found.len());
    c.bench_function("calendar_search_contact_month_100k", |b| b.iter(|| hub_search(&store, &march).expect("search")));

    let mut group = c.benchmark_group("calendar_log");
    const ENTRIES: usize = 10_000;
    group.throughput(Throughput::Elements(ENTRIES as u64));
    let body = Version {
        ical_uid: Some("040000008200E00074C5B7101A82E0080000000000000001".into()),
        subject: "Quarterly review with the client's general counsel".into(),
        span: Span::Timed { start: year, end: year + Days::hours(1) },
        location: "Meeting room 4, 10th floor".into(),
        organizer: Some(Who { email: "u1@firm.example".into(), name: "User 1".into() }),
        attendees: (0..4)
            .map(|k| Who { email: format!("client{k}@clients.example"), name: format!("Client {k}") })
            .collect(),
        cancelled: false,
    };
    let (bytes, hash) = body.encode();
    group.bench_function("calendar_log_append_10k", |b| {
        b.iter(|| {
            let mut w = CalendarWrite::new();
            let first = store.last_seq().expect("last") + 1;
            for n in 0..ENTRIES {
                w.append(LogEntry {
                    seq: first + n as u64,
                    user: format!("u{}", n % 100),
                    item: format!("AAMkEvent{n}"),
                    meeting: meeting_id(&format!("ical-{n}")),
                    observed_ms: 0,
                    hash,
                    change: "sent".into(),
                    body: bytes.clone(),
                });
            }
            store.calendar_commit(w).expect("append")
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10);
    targets = search, cycles
}
criterion_main!(benches);
