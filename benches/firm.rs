//! The firm-scale figures of issue 5, as a bench binary (minutes long, so not criterion's
//! sampling): 100 users, each with 1,000 Outlook contacts and 1,000 in the CRM list, 500 of
//! them the same people. The emulators run in a child process (this binary again, with
//! `SYNCHUB_BENCH_EMULATORS=1`), so the peak RSS measured is the hub's alone. The hub runs
//! the users through the scheduler (4 at a time) against a sled store on local disk.
//!
//! Figures: the initial sync of all users (≤ 30 s, peak RSS ≤ 400 MB), an incremental
//! cycle with 1 % of each side changed (≤ 2 s), a quiet cycle (≤ 0.5 s); the cycles are
//! repeated and their medians printed.
//! Run: `cargo bench --bench firm` (users: `SYNCHUB_BENCH_USERS`, default 100).

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synchub::hub::scheduler::{Schedule, Scheduler};
use synchub::hub::HubJobs;
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::graph::wire::Contact;
use synchub_connectors::graph::{ContactWrite, Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "firm_support.rs"]
mod firm_support;
use firm_support::*;

fn users() -> usize {
    std::env::var("SYNCHUB_BENCH_USERS").ok().and_then(|v| v.parse().ok()).unwrap_or(100)
}

/// The child: seed, serve, print the URLs, serve until stdin closes.
fn emulators() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let (_graph, _crm, g, c) = serve(&rt, seed(users()));
    println!("READY {g} {c}");
    let _ = std::io::stdout().flush();
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

fn peak_rss_mib() -> f64 {
    status_mib("VmHWM")
}

fn rss_mib() -> f64 {
    status_mib("VmRSS")
}

fn status_mib(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kib: f64 = status
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0);
    kib / 1024.0
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    tune();
    if std::env::var_os("SYNCHUB_BENCH_EMULATORS").is_some() {
        return emulators();
    }
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of benchmarks
    }
    let n = users();
    let mut child = Command::new(std::env::current_exe().expect("own path"))
        .env("SYNCHUB_BENCH_EMULATORS", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("emulator process");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout")).read_line(&mut ready).expect("READY");
    let parts: Vec<&str> = ready.split_whitespace().collect();
    let (graph_url, crm_url) = (parts[1].to_string(), parts[2].to_string());
    println!("firm bench: {n} users × ({PER_SIDE} Outlook + {PER_SIDE} CRM, {SHARED} the same people)");

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("store dir");
    let hub = hub(&graph_url, &crm_url, dir.path(), rt.handle().clone());
    let scheduler = Scheduler::new(Arc::new(HubJobs::new(hub.clone())), Schedule::default());
    let cycle = |what: &str| {
        let t = Instant::now();
        let report = rt.block_on(scheduler.run_now(None));
        let took = t.elapsed();
        assert_eq!(report.users.len(), n, "{what}: {:?}", report.error);
        assert_eq!(report.failed().count(), 0, "{what}: {:?}", report.failed().collect::<Vec<_>>());
        took
    };
    let initial = cycle("initial");
    let initial_peak = peak_rss_mib();
    let settle = cycle("settle");
    println!(
        "initial sync of {n} users: {:.2} s (then the echo cycle: {:.2} s)",
        initial.as_secs_f64(),
        settle.as_secs_f64()
    );
    println!(
        "peak RSS of the hub process during the initial sync: {initial_peak:.0} MiB; after the echo cycle: {:.0} MiB (now {:.0} MiB)",
        peak_rss_mib(),
        rss_mib()
    );

    // The users' own edits, through the services' APIs: 1 % of each side per user.
    let mut config = GraphConfig::new(Credentials::new(&graph_url, "firm", "synchub", Secret::new("secret")));
    config.base = format!("{graph_url}/v1.0");
    let graph = GraphClient::new(config).expect("graph");
    let crm = CrmClient::new(&crm_url, Secret::new("crm-token"), RetryPolicy::default()).expect("crm");
    let mut items = Vec::new();
    for u in 1..=n {
        let folder = rt.block_on(graph.default_folder(&format!("m{u}"))).expect("folder").id;
        let (changes, _) = rt.block_on(graph.contact_delta(&format!("m{u}"), &folder, None)).expect("delta");
        let ids: Vec<String> = changes.iter().take(PER_SIDE / 100).map(|c| c.id().to_string()).collect();
        let (list, _) = rt.block_on(crm.list_changes(&format!("u{u}"), None)).expect("list");
        let cids: Vec<String> = list.iter().rev().take(PER_SIDE / 100).map(|c| c.contact_id.clone()).collect();
        items.push((folder, ids, cids));
    }
    let (mut incremental, mut quiet) = (Vec::new(), Vec::new());
    for round in 0..3 {
        for (u, (folder, ids, cids)) in items.iter().enumerate() {
            let mailbox = format!("m{}", u + 1);
            let writes = ids
                .iter()
                .map(|id| ContactWrite::Update {
                    id: id.clone(),
                    etag: None,
                    before: Box::new(Contact::default()),
                    after: Box::new(Contact { job_title: Some(format!("Partner {round}")), ..Contact::default() }),
                })
                .collect();
            for w in rt.block_on(graph.write(&mailbox, folder, writes)) {
                w.expect("outlook edit");
            }
            let (list, _) = rt.block_on(crm.list_changes(&format!("u{}", u + 1), None)).expect("list");
            for c in list.into_iter().filter_map(|c| c.contact).filter(|c| cids.contains(&c.contact_id)) {
                let mut edited = c.clone();
                edited.department = format!("Dept {round}");
                edited.entry = None;
                rt.block_on(crm.update_contact(&edited)).expect("crm edit");
            }
        }
        incremental.push(cycle("incremental"));
        quiet.push(cycle("quiet"));
    }
    println!(
        "incremental cycle (1 % of each side changed), median of 3: {:.3} s; runs: {:?}",
        median(incremental.clone()).as_secs_f64(),
        incremental
    );
    println!("quiet cycle, median of 3: {:.3} s; runs: {:?}", median(quiet.clone()).as_secs_f64(), quiet);
    println!("peak RSS of the hub process: {:.0} MiB", peak_rss_mib());
    drop(child.stdin.take());
    let _ = child.wait();
}
