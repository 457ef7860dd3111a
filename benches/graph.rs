//! The Graph connector through the emulator over loopback (issue 3): a full contact delta
//! round of a 2,000-contact mailbox (≤ 150 ms) and an incremental round with 20 changes
//! (≤ 10 ms). A round is what the engine gets: the delta pages and the extended properties
//! of every changed item (listed a page at a time in a full round, read in JSON batches in
//! an incremental one). The bare delta is measured beside it.
//! Run: `cargo bench --bench graph`.

use std::time::Duration;

use chrono::{TimeZone, Utc};
use criterion::{criterion_group, criterion_main, Criterion};
use serde_json::json;
use synchub_connectors::emulators::graph::{GraphEmulator, GraphState};
use synchub_connectors::graph::props::{HUB_ID, PAGER};
use synchub_connectors::graph::wire::{Contact, EmailAddress, PhysicalAddress};
use synchub_connectors::graph::{Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};

fn contact(i: usize) -> Contact {
    let mut c = Contact {
        title: Some("Ms.".into()),
        given_name: Some(format!("Given{i}")),
        surname: Some(format!("Surname{i}")),
        company_name: Some(format!("Company {}", i % 50)),
        department: Some("Legal".into()),
        job_title: Some("Partner".into()),
        email_addresses: Some(vec![EmailAddress { name: None, address: Some(format!("p{i}@firm{}.example", i % 50)) }]),
        business_phones: Some(vec![format!("+1 212 555 {:04}", i % 10_000)]),
        mobile_phone: Some(format!("+1 917 555 {:04}", i % 10_000)),
        business_address: Some(PhysicalAddress {
            street: Some(format!("{i} Main St")),
            city: Some("New York".into()),
            state: Some("NY".into()),
            postal_code: Some("10001".into()),
            country_or_region: Some("United States".into()),
        }),
        business_home_page: Some("https://firm.example".into()),
        personal_notes: Some("met at a conference".into()),
        categories: Some(vec!["Clients".into()]),
        ..Contact::default()
    };
    c.set_extended(HUB_ID, format!("hub-{i}"));
    c.set_extended(PAGER, format!("555-{i:04}"));
    c
}

fn delta(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let now = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time");
    let mut state = GraphState::new("firm", "app", "secret", now);
    state.add_user("u1", "Ana Ortiz", "ana@firm.example");
    let ids: Vec<String> = (0..2_000)
        .map(|i| {
            let body = serde_json::to_value(contact(i)).expect("json");
            state.create_contact("u1", "contacts", &body).expect("seed").id.expect("id")
        })
        .collect();
    let emu = GraphEmulator::new(state);
    let url = rt.block_on(emu.start("127.0.0.1:0")).expect("start");
    let mut config = GraphConfig::new(Credentials::new(&url, "firm", "app", Secret::new("secret")));
    config.base = format!("{url}/v1.0");
    config.retry = RetryPolicy { attempts: 1, base: Duration::from_millis(1), max_wait: Duration::from_millis(1) };
    let graph = GraphClient::new(config).expect("client");
    let folder = rt.block_on(graph.default_folder("u1")).expect("folder").id;

    c.bench_function("graph_full_round_2000_contacts", |b| {
        b.iter(|| {
            let round = rt.block_on(graph.pull_contacts("u1", &folder, None)).expect("round");
            assert_eq!(round.changes.len(), 2_000);
        })
    });
    c.bench_function("graph_full_delta_only_2000_contacts", |b| {
        b.iter(|| {
            let (changes, _) = rt.block_on(graph.contact_delta("u1", &folder, None)).expect("delta");
            assert_eq!(changes.len(), 2_000);
        })
    });
    let link = rt.block_on(graph.pull_contacts("u1", &folder, None)).expect("round").delta_link;
    {
        let mut state = emu.state();
        for id in ids.iter().step_by(100) {
            state.update_contact("u1", id, &json!({"jobTitle": "Of Counsel"}), None).expect("edit");
        }
    }
    c.bench_function("graph_incremental_round_20_changes", |b| {
        b.iter(|| {
            let round = rt.block_on(graph.pull_contacts("u1", &folder, Some(&link))).expect("round");
            assert_eq!(round.changes.len(), 20);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(8));
    targets = delta
}
criterion_main!(benches);
