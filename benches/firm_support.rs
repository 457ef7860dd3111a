//! Shared set-up for the firm-scale benches: users with 1,000 Outlook contacts and 1,000 in
//! their CRM list, 500 of them the same people (same e-mail, matched by identity), the Graph
//! and CRM emulators, and a hub over a sled store on local disk.
#![allow(dead_code)] // each bench uses part of the set-up

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use synchub::calendar::CalendarSettings;
use synchub::connect::{crm as crm_map, graph as graph_map};
use synchub::engine::sample;
use synchub::hub::{ContactSettings, Hub, UserPair};
use synchub::model::{Field, FieldValue};
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::crm::wire::{Contact as CrmContact, User as CrmUser};
use synchub_connectors::emulators::crm::{CrmEmulator, CrmState};
use synchub_connectors::emulators::graph::{GraphEmulator, GraphState};
use synchub_connectors::graph::wire::Contact as GraphContact;
use synchub_connectors::graph::{Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};
use synchub_store::Store;

pub const PER_SIDE: usize = 1_000;
pub const SHARED: usize = 500;

/// User `u`: mailbox `m<u>` and CRM user `u<u>`, both `u<u>@firm.example`.
pub fn add_user(graph: &mut GraphState, crm: &mut CrmState, u: usize) {
    graph.add_user(&format!("m{u}"), &format!("User {u}"), &format!("u{u}@firm.example"));
    crm.put_user(CrmUser {
        id: format!("u{u}"),
        login: format!("user{u}"),
        email: format!("u{u}@firm.example"),
        display_name: format!("User {u}"),
    });
}

/// The emulators' state for `users` such users.
pub fn seed(users: usize) -> (GraphState, CrmState) {
    let start = Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("time");
    let mut graph = GraphState::new("firm", "synchub", "secret", start);
    let mut crm = CrmState::new("2026-11-25T10:00:00Z");
    for u in 1..=users {
        add_user(&mut graph, &mut crm, u);
        let base = u * 10_000;
        for i in 0..PER_SIDE {
            let c = graph_map::apply_fields(GraphContact::default(), &sample::contact(base + i), |_| true);
            let body = serde_json::to_value(&c).expect("json");
            graph.create_contact(&format!("m{u}"), "contacts", &body).expect("seed outlook");
        }
        for i in (PER_SIDE - SHARED)..(2 * PER_SIDE - SHARED) {
            let fields = sample::contact(base + i);
            let mut c = crm_map::apply_firm(CrmContact::default(), &fields, |_| true);
            c.entry = Some(Default::default());
            crm.create_in_list(&format!("u{u}"), c).expect("seed crm");
        }
    }
    (graph, crm)
}

pub fn pair(u: usize) -> UserPair {
    UserPair {
        key: format!("u{u}"),
        mailbox: format!("m{u}"),
        address: format!("u{u}@firm.example"),
        crm_user: format!("u{u}"),
    }
}

/// A hub talking to the emulators at these URLs, its store in `dir`.
pub fn hub(graph_url: &str, crm_url: &str, dir: &std::path::Path, rt: tokio::runtime::Handle) -> Arc<Hub> {
    hub_with(graph_url, crm_url, dir, rt, CalendarSettings::default())
}

/// The same, with calendar `calendar` settings.
pub fn hub_with(
    graph_url: &str,
    crm_url: &str,
    dir: &std::path::Path,
    rt: tokio::runtime::Handle,
    calendar: CalendarSettings,
) -> Arc<Hub> {
    let store = Store::open(dir).expect("store");
    let (graph, crm) = clients(graph_url, crm_url);
    let settings = ContactSettings::default();
    let hub = Hub::new(store, graph, crm, rt, settings, BTreeMap::new()).with_calendar(calendar).expect("calendar");
    Arc::new(hub)
}

/// The hub's Graph and CRM clients for the emulators at these URLs.
pub fn clients(graph_url: &str, crm_url: &str) -> (GraphClient, CrmClient) {
    let mut config = GraphConfig::new(Credentials::new(graph_url, "firm", "synchub", Secret::new("secret")));
    config.base = format!("{graph_url}/v1.0");
    config.retry = RetryPolicy { attempts: 3, base: Duration::from_millis(5), max_wait: Duration::from_secs(1) };
    let graph = GraphClient::new(config).expect("graph client");
    let crm = CrmClient::new(crm_url, Secret::new("crm-token"), RetryPolicy::default()).expect("crm client");
    (graph, crm)
}

/// Emulators over `state`, served by `rt`; their URLs.
pub fn serve(
    rt: &tokio::runtime::Runtime,
    (graph, crm): (GraphState, CrmState),
) -> (GraphEmulator, CrmEmulator, String, String) {
    let graph = GraphEmulator::new(graph);
    let crm = CrmEmulator::new(crm, "crm-token");
    let graph_url = rt.block_on(graph.start("127.0.0.1:0")).expect("graph emulator");
    let crm_url = rt.block_on(crm.start("127.0.0.1:0")).expect("crm emulator");
    (graph, crm, graph_url, crm_url)
}

/// A user's edit of one Outlook contact (a different job title each time).
pub fn outlook_edit(graph: &mut GraphState, mailbox: &str, id: &str, n: usize) {
    let body = serde_json::json!({"jobTitle": format!("Partner {n}")});
    graph.update_contact(mailbox, id, &body, None).expect("edit");
}

/// Someone's edit of one CRM firm contact.
pub fn crm_edit(crm: &mut CrmState, cid: &str, n: usize) {
    let current = crm.contact(cid).expect("contact").clone();
    let mut fields = synchub::model::ContactFields::new();
    fields.set(Field::Department, Some(FieldValue::Text(format!("Dept {n}"))));
    let next = crm_map::apply_firm(current.clone(), &fields, |f| f == Field::Department);
    crm.update_contact(cid, current.version, next).expect("edit");
}

/// The binary's allocator settings ([`synchub::alloc::tune`]); `SYNCHUB_BENCH_NO_TUNE=1`
/// measures mimalloc's defaults instead.
pub fn tune() {
    if std::env::var_os("SYNCHUB_BENCH_NO_TUNE").is_none() {
        synchub::alloc::tune();
    }
}

/// CPU seconds process `pid` (`self`: this one) has used, user and system, all threads:
/// `/proc/<pid>/stat` counts them in USER_HZ, 100 a second on Linux. `None`: no such
/// process, or no `/proc`.
pub fn cpu_seconds_of(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses: utime and stime are
    // the 14th and 15th of the line, the 12th and 13th after it.
    let (_, rest) = stat.rsplit_once(')')?;
    let mut fields = rest.split_whitespace().skip(11);
    let (user, system) = (fields.next()?.parse::<u64>().ok()?, fields.next()?.parse::<u64>().ok()?);
    Some((user + system) as f64 / 100.0)
}
