//! The firm-scale benchmarks (issues 5 and 8), as a bench binary (minutes long, so not
//! criterion's sampling). The emulators run in their own process, `synchub emulators
//! --shape load` (the load generator of `synchub::loadgen`: each user has N Outlook contacts
//! and N in their CRM list, half of them the same people, a fifth of each list shared with
//! two colleagues, 5 flagged meetings a week), so the peak RSS measured is the hub's alone.
//! The hub runs every user through the scheduler (4 at a time) against a sled store on
//! local disk, talking to the emulators over loopback.
//!
//! Figures, in order: the initial sync of all users (and the peak RSS and the CPU seconds meanwhile), the echo
//! cycle after it, an incremental cycle with 1 % of each side changed, the cycle after it
//! (what reached shared firm contacts going on to the other lists holding them) and a quiet
//! cycle (3 of each, medians), the first calendar cycle (every flagged meeting sent) and a
//! calendar cycle with one new flagged meeting per user, the latency of a single change
//! from an Outlook edit to the CRM with the scheduler running at its shortest interval
//! (10 s; median of 5), and the store's bytes on disk per contact after compaction.
//! Each run appends its figures as a JSON line to `target/perf/firm.jsonl` (or
//! `SYNCHUB_BENCH_OUT`); `cargo bench --bench plot` draws them.
//!
//! Run: `cargo bench --bench firm` (users: `SYNCHUB_BENCH_USERS`, default 100; contacts
//! per side: `SYNCHUB_BENCH_CONTACTS`, default 1,000; the hub's `[store] cache_mib`:
//! `SYNCHUB_BENCH_CACHE_MIB`; `SYNCHUB_BENCH_CONTACTS_ONLY=1` skips the calendar and the
//! latency; `SYNCHUB_BENCH_EMULATORS`: the `synchub` binary that runs the emulators);
//! `benches/growth.sh` runs the sizes of the README's growth table.

use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synchub::hub::scheduler::{Schedule, Scheduler};
use synchub::hub::{Hub, HubJobs};
use synchub::merge::UserReplica;
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::crm::wire::Contact as CrmContact;
use synchub_connectors::graph::wire::Contact;
use synchub_connectors::graph::{ContactWrite, Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};
use synchub_store::Store;

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[path = "firm_support.rs"]
mod firm_support;
use firm_support::cpu_seconds_of;

fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The emulators' process and how to reach it.
struct Emulators {
    child: Child,
    graph: String,
    crm: String,
    secret: String,
    token: String,
}

impl Drop for Emulators {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `SYNCHUB_BENCH_EMULATORS`, when set and not empty: another build's `synchub` binary, to
/// compare emulators in one session. It must be the binary itself: a wrapper script's CPU
/// would be counted instead of the emulators'.
fn emulators_binary() -> Option<String> {
    std::env::var("SYNCHUB_BENCH_EMULATORS").ok().filter(|b| !b.trim().is_empty())
}

/// Start `synchub emulators --shape load` and read its banner.
fn emulators(users: usize, contacts: usize) -> Emulators {
    let binary = emulators_binary().unwrap_or_else(|| env!("CARGO_BIN_EXE_synchub").to_string());
    let mut child = Command::new(binary)
        .args(["emulators", "--shape", "load", "--users", &users.to_string(), "--contacts", &contacts.to_string()])
        .env("RUST_LOG", "error")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("synchub emulators");
    let out = BufReader::new(child.stdout.take().expect("stdout"));
    let (mut graph, mut crm, mut secret, mut token) = (None, None, None, None);
    let quoted = |l: &str| l.split('"').nth(1).map(str::to_string);
    for line in out.lines() {
        let line = line.expect("banner");
        if let Some(url) = line.strip_prefix("Graph emulator on ") {
            graph = Some(url.to_string());
        } else if let Some(url) = line.strip_prefix("CRM emulator on ") {
            crm = Some(url.to_string());
        } else if line.starts_with("client_secret = ") {
            secret = quoted(&line);
        } else if line.starts_with("token = ") {
            token = quoted(&line);
        } else if let Some(firm) = line.strip_prefix("firm: ") {
            println!("emulators: {firm}");
        } else if line.starts_with("(Ctrl-C stops") {
            break;
        }
    }
    let missing = || panic!("the emulators' banner changed");
    Emulators {
        child,
        graph: graph.unwrap_or_else(missing),
        crm: crm.unwrap_or_else(missing),
        secret: secret.unwrap_or_else(missing),
        token: token.unwrap_or_else(missing),
    }
}

fn graph_client(e: &Emulators) -> GraphClient {
    let mut config = GraphConfig::new(Credentials::new(
        &e.graph,
        synchub::sandbox::TENANT,
        synchub::sandbox::CLIENT_ID,
        Secret::new(&e.secret),
    ));
    config.base = format!("{}/v1.0", e.graph);
    config.retry = RetryPolicy { attempts: 3, base: Duration::from_millis(5), max_wait: Duration::from_secs(1) };
    GraphClient::new(config).expect("graph client")
}

fn crm_client(e: &Emulators) -> CrmClient {
    CrmClient::new(&e.crm, Secret::new(&e.token), RetryPolicy::default()).expect("crm client")
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

/// CPU seconds this process (the hub; the emulators run in their own) has used, user and
/// system, all threads: `/proc/self/stat` counts them in USER_HZ, 100 a second on Linux.
/// A figure the machine's noise moves much less than wall time. NaN without `/proc`.
fn cpu_seconds() -> f64 {
    cpu_seconds_of("self").unwrap_or(f64::NAN)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// One user's items the benchmark edits: Outlook item ids, and CRM contacts as last read.
struct Edits {
    mailbox: String,
    user: String,
    folder: String,
    items: Vec<String>,
    contacts: Vec<CrmContact>,
}

fn main() {
    firm_support::tune();
    if std::env::args().any(|a| a == "--list") {
        return; // cargo test --benches asks for the list of benchmarks
    }
    let n = env_or("SYNCHUB_BENCH_USERS", 100);
    let c = env_or("SYNCHUB_BENCH_CONTACTS", 1_000);
    let load = synchub::loadgen::Load { users: n, contacts: c };
    println!(
        "firm bench: {n} users × ({c} Outlook + {c} CRM, {} the same people, {} of them shared in groups of {})",
        load.matched(),
        load.shared(),
        synchub::loadgen::GROUP
    );
    let t0 = Instant::now();
    let t = Instant::now();
    let emu = emulators(n, c);
    let seeding = t.elapsed();
    println!("emulators seeded and serving in their own process after {:.1} s", secs(seeding));

    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("store dir");
    let store = Store::open(dir.path()).expect("store");
    let cache_mib = env_or("SYNCHUB_BENCH_CACHE_MIB", synchub::hub::DEFAULT_CACHE_MIB);
    let hub = Arc::new(
        Hub::new(
            store.clone(),
            graph_client(&emu),
            crm_client(&emu),
            rt.handle().clone(),
            Default::default(),
            Default::default(),
        )
        .with_cache_mib(cache_mib),
    );
    println!("the hub keeps users in memory within [store] cache_mib = {cache_mib}");
    let pairs = hub.match_users().expect("users").pairs;
    assert_eq!(pairs.len(), n, "every mailbox matched to its CRM user");
    let scheduler = Scheduler::new(Arc::new(HubJobs::new(hub.clone())), Schedule::default());
    let cycle = |what: &str| {
        let t = Instant::now();
        let report = rt.block_on(scheduler.run_now(None));
        let took = t.elapsed();
        assert_eq!(report.users.len(), n, "{what}: {:?}", report.error);
        assert_eq!(report.failed().count(), 0, "{what}: {:?}", report.failed().collect::<Vec<_>>());
        eprintln!("[{:>5.0} s] {what} cycle: {:.2} s", t0.elapsed().as_secs_f64(), took.as_secs_f64());
        took
    };

    let emulators_pid = emu.child.id().to_string();
    let emulators_cpu_seconds = || cpu_seconds_of(&emulators_pid).unwrap_or(f64::NAN);
    let (cpu_before, emulators_before) = (cpu_seconds(), emulators_cpu_seconds());
    let initial = cycle("initial");
    let initial_cpu = cpu_seconds() - cpu_before;
    let emulators_cpu = emulators_cpu_seconds() - emulators_before;
    let initial_peak = status_mib("VmHWM");
    let echo = cycle("echo");
    println!("initial sync of {n} users: {:.2} s (then the echo cycle: {:.2} s)", secs(initial), secs(echo));
    println!("peak RSS of the hub process during the initial sync: {initial_peak:.0} MiB");
    println!("CPU of the hub process during the initial sync: {initial_cpu:.1} s (user and system, all threads)");
    println!("CPU of the emulators' process meanwhile: {emulators_cpu:.1} s");

    // The users' own edits, through the services' APIs: 1 % of each side per user.
    let graph = graph_client(&emu);
    let crm = crm_client(&emu);
    let per_user = (c / 100).max(1);
    let mut edits: Vec<Edits> = pairs
        .iter()
        .map(|p| {
            let folder = rt.block_on(graph.default_folder(&p.mailbox)).expect("folder").id;
            let (changes, _) = rt.block_on(graph.contact_delta(&p.mailbox, &folder, None)).expect("delta");
            let items = changes.iter().take(per_user).map(|c| c.id().to_string()).collect();
            let (list, _) = rt.block_on(crm.list_changes(&p.crm_user, None)).expect("list");
            let contacts = list.into_iter().rev().filter_map(|c| c.contact).take(per_user).collect();
            Edits { mailbox: p.mailbox.clone(), user: p.crm_user.clone(), folder, items, contacts }
        })
        .collect();
    // After an incremental cycle, the next one carries what the first wrote to shared firm
    // contacts to the other lists holding them and their mailboxes (SPEC C11): only the
    // cycle after that has nothing to do.
    let (mut incremental, mut settle, mut quiet) = (Vec::new(), Vec::new(), Vec::new());
    for round in 0..3 {
        rt.block_on(edit_all(&graph, &crm, &mut edits, round));
        incremental.push(cycle("incremental"));
        settle.push(cycle("shared contacts settling"));
        quiet.push(cycle("quiet"));
    }
    let (incremental_m, quiet_m) = (median(incremental.clone()), median(quiet.clone()));
    println!(
        "incremental cycle (1 % of each side changed), median of 3: {:.3} s; runs: {incremental:?}",
        secs(incremental_m)
    );
    let settle_m = median(settle.clone());
    println!("the cycle after (shared firm contacts reaching the other lists), median of 3: {:.3} s", secs(settle_m));
    println!("quiet cycle, median of 3: {:.3} s; runs: {quiet:?}", secs(quiet_m));
    let contacts_peak = status_mib("VmHWM");

    let contacts_only = std::env::var("SYNCHUB_BENCH_CONTACTS_ONLY").is_ok_and(|v| v == "1");
    let (calendar_pass, calendar_send, calendar_new, latency) = if contacts_only {
        (Duration::ZERO, Duration::ZERO, Duration::ZERO, Duration::ZERO)
    } else {
        calendar_and_latency(&rt, &hub, &scheduler, &cycle, &emu, &pairs, &edits, &graph, &crm)
    };

    // Disk: every user's document compacted into one snapshot, the store closed.
    let peak = status_mib("VmHWM");
    let merged = n * load.merged();
    for p in &pairs {
        let replica = UserReplica::load(&store, &p.key).expect("load");
        store.compact(&p.key, &replica.doc.save()).expect("compact");
    }
    drop(scheduler);
    drop(hub);
    let in_place = synchub_store::disk_bytes(dir.path());
    // `synchub compact`: the live records copied into a fresh store.
    let copy = tempfile::tempdir().expect("copy dir");
    drop(store.copy_into(copy.path()).expect("copy"));
    drop(store);
    {
        // Where the bytes go: each tree's keys and values.
        use synchub_store::Kv;
        let kv = synchub_store::SledKv::open(copy.path()).expect("the copy");
        let mut parts = Vec::new();
        for tree in synchub_store::Tree::ALL.iter().copied() {
            let records = kv.scan_prefix(tree, &[]).expect("scan");
            let (k, v): (usize, usize) = records.iter().fold((0, 0), |(k, v), (a, b)| (k + a.len(), v + b.len()));
            if !records.is_empty() {
                parts.push(format!(
                    "{}: {} records, {:.0} B/contact",
                    tree.name(),
                    records.len(),
                    (k + v) as f64 / merged as f64
                ));
            }
        }
        println!("live data: {}", parts.join("; "));
    }
    let bytes = synchub_store::disk_bytes(copy.path());
    let per_contact = bytes as f64 / merged as f64;
    println!(
        "store: {:.1} MiB in place after compacting every document ({:.0} bytes per contact); \
         copied by `synchub compact` {:.1} MiB for {merged} contacts = {per_contact:.0} bytes per contact",
        in_place as f64 / 1048576.0,
        in_place as f64 / merged as f64,
        bytes as f64 / 1048576.0
    );
    println!("peak RSS of the hub process: {contacts_peak:.0} MiB through the contact cycles, {peak:.0} MiB in all");

    let record = serde_json::json!({
        "users": n, "contacts": c, "cache_mib": cache_mib, "seed_s": secs(seeding),
        "initial_s": secs(initial), "initial_cpu_s": initial_cpu,
        "emulators_cpu_s": emulators_cpu, "emulators_bin": emulators_binary(), "echo_s": secs(echo),
        "incremental_s": secs(incremental_m), "settle_s": secs(settle_m), "quiet_s": secs(quiet_m),
        "calendar_pass_s": secs(calendar_pass), "calendar_send_s": secs(calendar_send),
        "calendar_cycle_s": secs(calendar_new),
        "latency_s": secs(latency),
        "peak_rss_initial_mib": initial_peak, "peak_rss_contacts_mib": contacts_peak, "peak_rss_mib": peak,
        "store_bytes": bytes, "bytes_per_contact": per_contact, "store_bytes_in_place": in_place,
        "at": chrono::Utc::now().to_rfc3339(),
    });
    let out = std::env::var("SYNCHUB_BENCH_OUT")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/target/perf/firm.jsonl").to_string());
    if let Some(parent) = std::path::Path::new(&out).parent() {
        let _ = std::fs::create_dir_all(parent);
    }
    let mut file = std::fs::OpenOptions::new().create(true).append(true).open(&out).expect("results file");
    writeln!(file, "{record}").expect("results written");
    println!("figures appended to {out}");
}

/// The calendar cycles and a single change's latency: (first pass, sending cycle, cycle
/// with one new meeting per user, latency).
#[allow(clippy::too_many_arguments)]
fn calendar_and_latency(
    rt: &tokio::runtime::Runtime,
    hub: &Arc<Hub>,
    scheduler: &Scheduler,
    cycle: &dyn Fn(&str) -> Duration,
    emu: &Emulators,
    pairs: &[synchub::hub::UserPair],
    edits: &[Edits],
    graph: &GraphClient,
    crm: &CrmClient,
) -> (Duration, Duration, Duration, Duration) {
    let n = pairs.len();
    // The calendar: switched on, a first pass records every user's flagged meetings (they
    // go once every user has had one, SPEC K7/K12), the next cycle sends them; then one new
    // meeting per user.
    hub.set_calendar_sync(true).expect("calendar on");
    let calendar_pass = cycle("calendar, first pass");
    let calendar_send = cycle("calendar, sending");
    let http = reqwest::Client::new();
    let now = chrono::Utc::now();
    rt.block_on(async {
        for (u, p) in pairs.iter().enumerate() {
            let event = synchub::loadgen::extra_meeting(n, u + 1, u, now);
            let r = http
                .post(format!("{}/_emulator/users/{}/events", emu.graph, p.mailbox))
                .json(&event)
                .send()
                .await
                .expect("a meeting added");
            assert!(r.status().is_success(), "{}", r.status());
        }
    });
    let calendar_new = cycle("calendar, one new meeting per user");
    println!(
        "calendar: first pass {:.2} s; the cycle sending every user's {} flagged meetings {:.2} s; a cycle with one new meeting per user {:.2} s",
        secs(calendar_pass),
        synchub::loadgen::MEETINGS_PER_WEEK * synchub::loadgen::WEEKS,
        secs(calendar_send),
        secs(calendar_new)
    );

    // A single change's latency, the scheduler running at its shortest interval: each edit
    // made 1, 3, 5, 7 or 9 s after a cycle ended (a change comes at any time).
    hub.set_interval(10).expect("interval");
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let (ended_tx, mut ended) = tokio::sync::mpsc::channel(4);
    let running = {
        let scheduler = scheduler.clone();
        rt.spawn(async move { scheduler.run(stopped, Some(ended_tx)).await })
    };
    let mut latencies = Vec::new();
    for k in 0..5 {
        let e = &edits[(k * n / 5).min(n - 1)];
        let (_, cursor) = rt.block_on(crm.list_changes(&e.user, None)).expect("cursor");
        while ended.try_recv().is_ok() {}
        rt.block_on(ended.recv()).expect("a cycle ended");
        std::thread::sleep(Duration::from_secs(1 + 2 * k as u64));
        let title = format!("Latency {k}");
        let t = Instant::now();
        let write = ContactWrite::Update {
            id: e.items[0].clone(),
            etag: None,
            before: Box::new(Contact::default()),
            after: Box::new(Contact { job_title: Some(title.clone()), ..Contact::default() }),
        };
        for w in rt.block_on(graph.write(&e.mailbox, &e.folder, vec![write])) {
            w.expect("outlook edit");
        }
        let mut cursor = cursor;
        loop {
            let (changes, next) = rt.block_on(crm.list_changes(&e.user, Some(&cursor))).expect("feed");
            cursor = next;
            if changes.iter().filter_map(|c| c.contact.as_ref()).any(|c| c.job_title == title) {
                break;
            }
            assert!(t.elapsed() < Duration::from_secs(600), "the change never arrived");
            std::thread::sleep(Duration::from_millis(20));
        }
        latencies.push(t.elapsed());
    }
    let _ = stop.send(true);
    let _ = rt.block_on(running);
    let latency = median(latencies.clone());
    println!(
        "a single change, Outlook edit to CRM, 10 s interval: median of 5 {:.2} s; runs: {latencies:?}",
        secs(latency)
    );
    (calendar_pass, calendar_send, calendar_new, latency)
}

/// Round `round`'s edits: a new job title on 1 % of each user's Outlook items, a new
/// department on 1 % of each CRM list (a contact that moved on since it was read is read
/// again).
async fn edit_all(graph: &GraphClient, crm: &CrmClient, edits: &mut [Edits], round: usize) {
    for e in edits.iter_mut() {
        let writes = e
            .items
            .iter()
            .map(|id| ContactWrite::Update {
                id: id.clone(),
                etag: None,
                before: Box::new(Contact::default()),
                after: Box::new(Contact { job_title: Some(format!("Partner {round}")), ..Contact::default() }),
            })
            .collect();
        for w in graph.write(&e.mailbox, &e.folder, writes).await {
            w.expect("outlook edit");
        }
        for i in 0..e.contacts.len() {
            let mut edited = e.contacts[i].clone();
            edited.department = format!("Dept {round}");
            edited.entry = None;
            let written = match crm.update_contact(&edited).await {
                Ok(w) => w,
                Err(_) => {
                    let (list, _) = crm.list_changes(&e.user, None).await.expect("list");
                    let id = &e.contacts[i].contact_id;
                    let fresh = list.into_iter().filter_map(|c| c.contact).find(|c| &c.contact_id == id);
                    let mut fresh = fresh.expect("still listed");
                    fresh.department = format!("Dept {round}");
                    fresh.entry = None;
                    crm.update_contact(&fresh).await.expect("crm edit")
                }
            };
            e.contacts[i] = written;
        }
    }
}
