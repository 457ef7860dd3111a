//! The CRM connector through the emulator over loopback (issue 4): a full listing of a
//! 2,000-contact list (≤ 100 ms) and an incremental feed with 20 changes (≤ 10 ms).
//! Run: `cargo bench --bench crm`.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use synchub_connectors::crm::client::{CrmClient, RetryPolicy, Secret};
use synchub_connectors::crm::wire::{Contact, Email, Entry, Name, Phone};
use synchub_connectors::emulators::crm::{CrmEmulator, CrmState, EntryPatch};

fn contact(i: usize) -> Contact {
    Contact {
        name: Name { prefix: "Ms.".into(), first: format!("Given{i}"), last: format!("Surname{i}"), ..Name::default() },
        company: format!("Company {}", i % 50),
        department: "Legal".into(),
        job_title: "Partner".into(),
        emails: vec![Email {
            kind: "business".into(),
            address: format!("p{i}@firm{}.example", i % 50),
            extra: Default::default(),
        }],
        phones: vec![
            Phone {
                kind: "business".into(),
                number: format!("+1 212 555 {:04}", i % 10_000),
                extra: Default::default(),
            },
            Phone { kind: "mobile".into(), number: format!("+1 917 555 {:04}", i % 10_000), extra: Default::default() },
        ],
        web_site: "https://firm.example".into(),
        entry: Some(Entry {
            external_ref: Some(format!("hub-{i}")),
            notes: "met at a conference".into(),
            ..Entry::default()
        }),
        ..Contact::default()
    }
}

fn listing(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let emu = CrmEmulator::new(CrmState::new("2026-11-25T10:00:00Z"), "t");
    let ids: Vec<String> = {
        let mut state = emu.state();
        (0..2_000).map(|i| state.create_in_list("u1", contact(i)).expect("seed").0.contact_id).collect()
    };
    let url = rt.block_on(emu.start("127.0.0.1:0")).expect("start");
    let retry = RetryPolicy { attempts: 1, base: Duration::from_millis(1), max_wait: Duration::from_millis(1) };
    let crm = CrmClient::new(&url, Secret::new("t"), retry).expect("client");
    c.bench_function("crm_full_listing_2000_contacts", |b| {
        b.iter(|| {
            let (changes, _) = rt.block_on(crm.list_changes("u1", None)).expect("list");
            assert_eq!(changes.len(), 2_000);
        })
    });
    let (_, cursor) = rt.block_on(crm.list_changes("u1", None)).expect("list");
    {
        let mut state = emu.state();
        for cid in ids.iter().take(20) {
            state
                .patch_entry("u1", cid, 1, EntryPatch { private: Some(true), ..EntryPatch::default() })
                .expect("patch");
        }
    }
    c.bench_function("crm_incremental_feed_20_changes", |b| {
        b.iter(|| {
            let (changes, _) = rt.block_on(crm.list_changes("u1", Some(&cursor))).expect("feed");
            assert_eq!(changes.len(), 20);
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30);
    targets = listing
}
criterion_main!(benches);
