//! The HTTP API over loopback (issue 7), a bench binary: a user with about 2,000 merged
//! contacts (the sandbox's sample firm with one user), the hub and its API in this process,
//! the emulators too.
//!
//! Figures:
//! - `GET /api/v1/users/{u}/contacts/{c}`: median latency (≤ 1 ms) and requests/s with 32
//!   concurrent connections for 10 s (≥ 5,000/s);
//! - a 500-contact page of `GET /api/v1/users/{u}/contacts` (≤ 10 ms);
//! - `synchub sandbox` ready (seeded and first sync done) from start (≤ 10 s), the real
//!   binary, median of 5.
//!
//! Run: `cargo bench --bench api`.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use synchub::api::{token_digest, Api, Role, TokenConfig};
use synchub::hub::Hub;
use synchub::sandbox::{self, Endpoints, Size};
use synchub_connectors::emulators::crm::CrmEmulator;
use synchub_connectors::emulators::graph::GraphEmulator;

/// The allocator the binary uses (see `src/main.rs`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const TOKEN: &str = "bench-user-token";
const CONNECTIONS: usize = 32;

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    synchub::alloc::tune();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("dir");
    let (graph_state, crm_state, seeded) = sandbox::seed(Size { users: 1, contacts: 2_000 }, chrono::Utc::now(), "s");
    let graph = GraphEmulator::new(graph_state);
    let crm = CrmEmulator::new(crm_state, "t");
    let graph_url = rt.block_on(graph.start("127.0.0.1:0")).expect("graph");
    let crm_url = rt.block_on(crm.start("127.0.0.1:0")).expect("crm");
    let endpoints = Endpoints { graph: graph_url, crm: crm_url, graph_secret: "s".into(), crm_token: "t".into() };
    let tokens = vec![TokenConfig { sha256: token_digest(TOKEN), role: Role::User, user: Some("u1".into()) }];
    let config = sandbox::config(&endpoints, dir.path().join("store"), "127.0.0.1:0".into(), tokens.clone());
    let hub = Arc::new(Hub::from_config(&config, rt.handle().clone()).expect("hub"));
    let pair = hub.match_users().expect("users").pairs.remove(0);
    hub.sync_user(&pair).expect("first sync");
    let api = Arc::new(Api::new(hub.clone(), &tokens).expect("api"));
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind");
    let base = format!("http://{}/api/v1", listener.local_addr().expect("addr"));
    rt.spawn(async move { axum::serve(listener, synchub::api::router(api)).await });
    let client = reqwest::Client::builder().pool_max_idle_per_host(CONNECTIONS).build().expect("client");
    let contacts = hub.contacts("u1").expect("contacts");
    println!(
        "user u1: {} merged contacts ({} Outlook, {} CRM entries seeded)",
        contacts.len(),
        seeded.outlook_contacts,
        seeded.crm_entries
    );
    let ids: Vec<String> = contacts.iter().map(|c| c.id.clone()).collect();
    let get = |path: String| {
        let client = client.clone();
        async move {
            let resp = client.get(path).bearer_auth(TOKEN).send().await.expect("request");
            assert!(resp.status().is_success(), "{}", resp.status());
            resp.bytes().await.expect("body").len()
        }
    };

    // One contact, one request at a time.
    let mut one = Vec::new();
    for i in 0..2_000 {
        let path = format!("{base}/users/u1/contacts/{}", ids[i % ids.len()]);
        let t = Instant::now();
        rt.block_on(get(path));
        one.push(t.elapsed());
    }
    println!("GET one contact: median {:.3} ms (2,000 requests, one at a time)", median(one).as_secs_f64() * 1e3);

    // 32 connections for 10 s.
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    rt.block_on(async {
        let mut tasks = tokio::task::JoinSet::new();
        for w in 0..CONNECTIONS {
            let (client, base, ids, done, stop) =
                (client.clone(), base.clone(), ids.clone(), done.clone(), stop.clone());
            tasks.spawn(async move {
                let mut i = w;
                while !stop.load(Ordering::Relaxed) {
                    let path = format!("{base}/users/u1/contacts/{}", ids[i % ids.len()]);
                    let resp = client.get(path).bearer_auth(TOKEN).send().await.expect("request");
                    assert!(resp.status().is_success());
                    resp.bytes().await.expect("body");
                    done.fetch_add(1, Ordering::Relaxed);
                    i += CONNECTIONS;
                }
            });
        }
        tokio::time::sleep(Duration::from_secs(10)).await;
        stop.store(true, Ordering::Relaxed);
        while tasks.join_next().await.is_some() {}
    });
    let n = done.load(Ordering::Relaxed);
    println!(
        "GET one contact, {CONNECTIONS} connections: {:.0} requests/s ({n} in {:.1} s; client, server and emulators on these 2 cores)",
        n as f64 / started.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );

    // A 500-contact page.
    let mut pages = Vec::new();
    let mut bytes = 0;
    for _ in 0..50 {
        let t = Instant::now();
        bytes = rt.block_on(get(format!("{base}/users/u1/contacts?limit=500")));
        pages.push(t.elapsed());
    }
    println!("GET a 500-contact page: median {:.2} ms ({bytes} bytes, 50 requests)", median(pages).as_secs_f64() * 1e3);
    drop((graph, crm));

    // The sandbox, start to ready, the real binary.
    let mut ready = Vec::new();
    for _ in 0..5 {
        let data = tempfile::tempdir().expect("dir");
        let t = Instant::now();
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_synchub"))
            .args(["sandbox", "--listen", "127.0.0.1:0", "--data"])
            .arg(data.path().join("d"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("sandbox");
        let out = child.stdout.take().expect("stdout");
        let line = std::io::BufRead::lines(std::io::BufReader::new(out))
            .map_while(Result::ok)
            .find(|l| l.starts_with("ready in"))
            .expect("ready");
        ready.push(t.elapsed());
        let _ = child.kill();
        let _ = child.wait();
        eprintln!("  {line}");
    }
    println!(
        "synchub sandbox ready (25 users, seeded, two sync cycles): median {:.2} s of 5",
        median(ready).as_secs_f64()
    );
}
