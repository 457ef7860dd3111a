//! The `synchub` binary. `sync --config FILE` runs one sync of every matched user against
//! the configured Graph and CRM. Until the service lands (issue 7), the default job is
//! `demo`: two in-memory sides seeded with sample contacts, the real merge core and the real
//! sled store on local disk, showing a first sync, edits on both sides, a same-field
//! conflict and a delete that loses to a concurrent edit.

use std::path::PathBuf;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;

use anyhow::{Context, Result};
use chrono::Utc;
use clap::{Parser, Subcommand};
use synchub::engine::memory::MemorySide;
use synchub::engine::{conflicts, run_user, sample, RunOptions, RunReport};
use synchub::hub::{Config, Hub};
use synchub::merge::{RunCtx, UserReplica};
use synchub::model::{Field, FieldValue, Side};
use synchub::sandbox::Endpoints;
use synchub_connectors::emulators::crm::CrmEmulator;
use synchub_connectors::emulators::graph::GraphEmulator;
use synchub_store::Store;

/// mimalloc: about a fifth faster than the system allocator on a firm's initial sync
/// (`cargo bench --bench firm`), where many threads allocate and free JSON and documents.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "synchub", version, about = "Contact sync between Exchange/Outlook and a relationship CRM")]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Sync two in-memory sides through the real merge core and sled store (the default).
    Demo {
        /// Where sled keeps the store (made if missing; emptied first).
        #[arg(long, default_value = "synchub-data/demo")]
        data: PathBuf,
        /// Contacts to seed on each side.
        #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u32).range(1..=100_000))]
        contacts: u32,
    },
    /// The embedded default: the Graph and CRM emulators in this process, seeded with a
    /// sample firm, a store on local disk, the scheduler and the API on localhost.
    Sandbox {
        /// Where the API listens (port 0: any free port).
        #[arg(long, default_value = "127.0.0.1:8080")]
        listen: String,
        /// Where sled keeps the store (emptied first: the emulators start afresh too).
        #[arg(long, default_value = "synchub-data/sandbox")]
        data: PathBuf,
        /// Users in the sample firm.
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        users: u32,
        /// Contacts per user (over both sides).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        contacts: u32,
    },
    /// Run the Graph and CRM emulators alone, seeded with the sample firm, for a `serve` (or
    /// any client) to point at, until Ctrl-C.
    Emulators {
        /// The address both listen on.
        #[arg(long, default_value = "127.0.0.1")]
        host: String,
        /// The Graph emulator's port (0: any free port).
        #[arg(long, default_value_t = 0)]
        graph_port: u16,
        /// The CRM emulator's port (0: any free port).
        #[arg(long, default_value_t = 0)]
        crm_port: u16,
        /// Users in the sample firm.
        #[arg(long, default_value_t = 25, value_parser = clap::value_parser!(u32).range(1..=1_000))]
        users: u32,
        /// Contacts per user: over both sides (`sample`), or on each side (`load`).
        #[arg(long, default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..=20_000))]
        contacts: u32,
        /// What to seed: the sandbox's sample firm, or the benchmarks' synthetic firm (half
        /// of each user's contacts on both sides, a fifth of each CRM list shared with two
        /// colleagues, 5 flagged meetings a week; see `synchub::loadgen`).
        #[arg(long, value_enum, default_value_t = Shape::Sample)]
        shape: Shape,
    },
    /// Print a documented example configuration.
    DefaultConfig,
    /// Users, their last runs and held runs. While a `serve` holds the store, asks its API
    /// (an administrator's token in SYNCHUB_ADMIN_TOKEN).
    Status {
        #[arg(long)]
        config: PathBuf,
    },
    /// Serve the HTTP API and run the scheduler until SIGTERM or Ctrl-C.
    Serve {
        /// The configuration file (TOML; see README).
        #[arg(long)]
        config: PathBuf,
        /// Listen here instead of the configuration's `api.listen` (port 0: any free port).
        #[arg(long)]
        listen: Option<String>,
    },
    /// Run one sync of every matched, enabled user (or one user) and exit: non-zero when a
    /// user's run failed.
    Sync {
        /// The configuration file (TOML; see README "Configuration").
        #[arg(long)]
        config: PathBuf,
        /// Only this user (CRM user id or mailbox address).
        #[arg(long)]
        user: Option<String>,
        /// Plan the runs and print every write they would make, writing nothing (SPEC X6).
        #[arg(long)]
        plan: bool,
    },
    /// Rewrite the store with its live records only (sled keeps the space of rewritten
    /// records until it reuses it): run while `serve` is stopped.
    Compact {
        /// The configuration file (TOML; see README "Configuration").
        #[arg(long)]
        config: PathBuf,
    },
}

fn main() -> Result<()> {
    synchub::alloc::tune();
    // RUST_LOG filters (default `warn`); SYNCHUB_LOG_FORMAT=json writes one JSON object a line.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into());
    if std::env::var("SYNCHUB_LOG_FORMAT").is_ok_and(|f| f.eq_ignore_ascii_case("json")) {
        tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).init();
    } else {
        tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).init();
    }
    let default = Command::Sandbox {
        listen: "127.0.0.1:8080".into(),
        data: "synchub-data/sandbox".into(),
        users: 25,
        contacts: 120,
    };
    match Cli::parse().command.unwrap_or(default) {
        Command::Sandbox { listen, data, users, contacts } => {
            sandbox(&listen, &data, synchub::sandbox::Size { users: users as usize, contacts: contacts as usize })
        }
        Command::Demo { data, contacts } => demo(&data, contacts as usize),
        Command::Sync { config, user, plan } => sync(&config, user.as_deref(), plan),
        Command::Compact { config } => compact(&config),
        Command::Serve { config, listen } => serve(&config, listen),
        Command::Emulators { host, graph_port, crm_port, users, contacts, shape } => {
            let (users, contacts) = (users as usize, contacts as usize);
            let firm = match shape {
                Shape::Sample => Firm::Sample(synchub::sandbox::Size { users, contacts }),
                Shape::Load => Firm::Load(synchub::loadgen::Load { users, contacts }),
            };
            emulators(&host, graph_port, crm_port, firm)
        }
        Command::DefaultConfig => {
            print!("{}", synchub::hub::config::EXAMPLE);
            Ok(())
        }
        Command::Status { config } => status(&config),
    }
}

/// Requests larger than this are refused with 413 (API.md).
const BODY_LIMIT: usize = 1024 * 1024;
/// How long a shutdown waits for the sync cycle under way.
const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(20);
/// A request that takes longer is answered 503.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

fn serve(path: &std::path::Path, listen: Option<String>) -> Result<()> {
    let config = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let hub = Arc::new(Hub::from_config(&config, rt.handle().clone())?);
    let api = synchub::api::Api::new(hub.clone(), &config.api.tokens)
        .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    if config.api.tokens.is_empty() {
        tracing::warn!("api.tokens is empty: every /api/ request will be refused (401)");
    }
    let addr = listen.unwrap_or_else(|| config.api.listen.clone());
    let result = rt.block_on(async move {
        let shutdown = shutdown_signal()?;
        let listener = tokio::net::TcpListener::bind(&addr).await.with_context(|| format!("listening on {addr}"))?;
        let local = listener.local_addr()?;
        println!("synchub API on http://{local}/api/v1 (OpenAPI: http://{local}/api/v1/openapi.json)");
        run_service(listener, hub, api, config.schedule, shutdown, 1, |_| {}).await
    });
    // Runs still going on blocking threads get a bounded wait; cut short, they resume
    // from their last commit (SPEC N1).
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// Both emulators seeded with the sample firm, serving on `host` (port 0: any free one).
/// What `synchub emulators` seeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Shape {
    Sample,
    Load,
}

/// A firm to seed the emulators with.
#[derive(Clone, Copy, Debug)]
enum Firm {
    Sample(synchub::sandbox::Size),
    Load(synchub::loadgen::Load),
}

async fn start_emulators(
    host: &str,
    graph_port: u16,
    crm_port: u16,
    firm: Firm,
) -> Result<(GraphEmulator, CrmEmulator, Endpoints, synchub::sandbox::Seeded)> {
    let graph_secret = random_token();
    let crm_token = random_token();
    let (graph_state, crm_state, seeded) = match firm {
        Firm::Sample(size) => synchub::sandbox::seed(size, Utc::now(), &graph_secret),
        Firm::Load(load) => synchub::loadgen::seed(load, Utc::now(), &graph_secret),
    };
    let graph = GraphEmulator::new(graph_state);
    let crm = CrmEmulator::new(crm_state, &crm_token);
    let graph_url = graph.start(&format!("{host}:{graph_port}")).await.context("starting the Graph emulator")?;
    let crm_url = crm.start(&format!("{host}:{crm_port}")).await.context("starting the CRM emulator")?;
    Ok((graph, crm, Endpoints { graph: graph_url, crm: crm_url, graph_secret, crm_token }, seeded))
}

fn emulators(host: &str, graph_port: u16, crm_port: u16, firm: Firm) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    rt.block_on(async move {
        let shutdown = shutdown_signal()?;
        // Kept (not dropped) until shutdown: they serve while they live.
        let (_graph, _crm, endpoints, seeded) = start_emulators(host, graph_port, crm_port, firm).await?;
        let Endpoints { graph: graph_url, crm: crm_url, graph_secret: secret, crm_token } = endpoints.clone();
        println!("Graph emulator on {graph_url}");
        println!("CRM emulator on {crm_url}");
        println!(
            "firm: {} users, {} Outlook contacts, {} CRM list entries ({} firm contacts shared), {} meetings ({} flagged)",
            seeded.users, seeded.outlook_contacts, seeded.crm_entries, seeded.shared_firm_contacts, seeded.events, seeded.flagged
        );
        println!("configuration for `synchub serve --config FILE`:\n");
        println!("[graph]\nauthority = \"{graph_url}\"\ntenant = \"{}\"\nclient_id = \"{}\"\nclient_secret = \"{secret}\"\nbase = \"{graph_url}/v1.0\"\n", synchub::sandbox::TENANT, synchub::sandbox::CLIENT_ID);
        println!("[crm]\nbase = \"{crm_url}\"\ntoken = \"{crm_token}\"\n");
        println!("(Ctrl-C stops; the emulators keep their state in memory only.)");
        shutdown.await;
        Ok(())
    })
}

/// `synchub compact`: copy the store's live records into a fresh store beside it, then
/// swap it in. A crash leaves either the old store in place (the copy is made again) or
/// the old one beside it as `<path>.pre-compact` (put back at the next `compact`).
fn compact(path: &std::path::Path) -> Result<()> {
    let config = Config::load(path)?;
    let dir = config.store.path.clone();
    let with = |suffix: &str| {
        let mut name = dir.as_os_str().to_os_string();
        name.push(suffix);
        PathBuf::from(name)
    };
    let (copy, old) = (with(".compacting"), with(".pre-compact"));
    if old.exists() {
        if dir.exists() {
            std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
        } else {
            std::fs::rename(&old, &dir).with_context(|| format!("putting {} back", old.display()))?;
            println!("an interrupted compaction left the store at {}; it is back in place", old.display());
        }
    }
    anyhow::ensure!(dir.exists(), "no store at {}", dir.display());
    if copy.exists() {
        std::fs::remove_dir_all(&copy).with_context(|| format!("removing {}", copy.display()))?;
    }
    let before = synchub_store::disk_bytes(&dir);
    {
        let store = synchub_store::Store::open(&dir).with_context(|| {
            format!("opening the store at {} (is `synchub serve` running? stop it first)", dir.display())
        })?;
        let copied = store.copy_into(&copy).context("copying the live records")?;
        copied.flush()?;
    }
    std::fs::rename(&dir, &old).with_context(|| format!("moving {} aside", dir.display()))?;
    std::fs::rename(&copy, &dir).with_context(|| format!("moving the copy to {}", dir.display()))?;
    std::fs::remove_dir_all(&old).with_context(|| format!("removing {}", old.display()))?;
    let after = synchub_store::disk_bytes(&dir);
    println!(
        "store at {} compacted: {:.1} MiB -> {:.1} MiB",
        dir.display(),
        before as f64 / 1048576.0,
        after as f64 / 1048576.0
    );
    Ok(())
}

fn status(path: &std::path::Path) -> Result<()> {
    let config = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    match Hub::from_config(&config, rt.handle().clone()) {
        Ok(hub) => {
            let matched = hub.match_users()?;
            println!("{:<32} {:<8} {:<26} {:<8} held", "user", "contacts", "last run", "result");
            for p in &matched.pairs {
                let last = hub.history(&p.key)?.pop();
                let (at, result) = match &last {
                    Some(r) => (
                        r.finished.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
                        if r.errors.is_empty() { "ok" } else { "failed" },
                    ),
                    None => ("never".to_string(), "-"),
                };
                let held = hub.held(&p.key)?.map(|h| h.held.reason).unwrap_or_else(|| "-".into());
                let sync = if hub.enabled(p) { "on" } else { "off" };
                println!("{:<32} {sync:<8} {at:<26} {result:<8} {held}", p.address);
            }
            for m in &matched.unmatched_mailboxes {
                println!("{m:<32} unmatched mailbox (SPEC A1)");
            }
            for u in &matched.unmatched_crm_users {
                println!("{u:<32} CRM user without a mailbox");
            }
            Ok(())
        }
        Err(synchub::hub::HubError::Store(e)) => {
            // A `serve` holds the store: ask it.
            let token = std::env::var("SYNCHUB_ADMIN_TOKEN").with_context(|| {
                format!("the store is in use ({e}); set SYNCHUB_ADMIN_TOKEN to ask the running service")
            })?;
            let base = format!("http://{}/api/v1", config.api.listen);
            rt.block_on(async move {
                let client = reqwest::Client::new();
                for route in ["users?limit=5000", "held"] {
                    let resp = client
                        .get(format!("{base}/{route}"))
                        .bearer_auth(&token)
                        .send()
                        .await
                        .with_context(|| format!("asking {base}/{route}"))?;
                    let status = resp.status();
                    let body: serde_json::Value = resp.json().await.context("reading the answer")?;
                    anyhow::ensure!(status.is_success(), "{base}/{route}: {status} {body}");
                    println!("{}", serde_json::to_string_pretty(&body)?);
                }
                Ok(())
            })
        }
        Err(e) => Err(e.into()),
    }
}

fn random_token() -> String {
    format!("sbx-{}", uuid::Uuid::new_v4().simple())
}

fn sandbox(listen: &str, data: &std::path::Path, size: synchub::sandbox::Size) -> Result<()> {
    use synchub::api::{Role, TokenConfig};
    let started = std::time::Instant::now();
    if data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("emptying {}", data.display()))?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let result = rt.block_on(async move {
        let shutdown = shutdown_signal()?;
        let (graph, crm, endpoints, seeded) = start_emulators("127.0.0.1", 0, 0, Firm::Sample(size)).await?;
        let (graph_url, crm_url) = (endpoints.graph.clone(), endpoints.crm.clone());
        let listener = tokio::net::TcpListener::bind(listen).await.with_context(|| format!("listening on {listen}"))?;
        let local = listener.local_addr()?;
        let tokens = [("admin", Role::Admin, None), ("u1", Role::User, Some("u1")), ("u2", Role::User, Some("u2")), ("service", Role::Service, None)]
            .map(|(name, role, user)| (name, random_token(), role, user.map(str::to_string)));
        let token_configs = tokens
            .iter()
            .map(|(_, t, role, user)| TokenConfig {
                sha256: synchub::api::token_digest(t),
                role: role.clone(),
                user: user.clone(),
            })
            .collect();
        let config = synchub::sandbox::config(&endpoints, data.join("store"), local.to_string(), token_configs);
        let hub = Arc::new(Hub::from_config(&config, tokio::runtime::Handle::current())?);
        let api = synchub::api::Api::new(hub.clone(), &config.api.tokens)
            .map_err(|e| anyhow::anyhow!(e))?;
        let base = format!("http://{local}/api/v1");
        println!("synchub sandbox API on {base} (OpenAPI: {base}/openapi.json)");
        println!("Graph emulator on {graph_url}");
        println!("CRM emulator on {crm_url}");
        println!("store in {}", data.display());
        println!(
            "sample firm: {} users, {} Outlook contacts, {} CRM list entries ({} Private, {} firm contacts in several lists), {} meetings ({} flagged)",
            seeded.users, seeded.outlook_contacts, seeded.crm_entries, seeded.private, seeded.shared_firm_contacts, seeded.events, seeded.flagged
        );
        println!("tokens (this run only):");
        for (name, token, _, _) in &tokens {
            let what = match *name {
                "admin" => "administrator",
                "u1" => "user u1",
                "u2" => "user u2, a proxy (delegate) of u1",
                _ => "integration service (read-only)",
            };
            println!("  {name:<8} {token}   {what}");
        }
        let admin = &tokens[0].1;
        let u1 = &tokens[1].1;
        let u2 = &tokens[2].1;
        let service = &tokens[3].1;
        println!("try:");
        println!("  curl -s -H 'Authorization: Bearer {admin}' {base}/users");
        println!("  curl -s -H 'Authorization: Bearer {u1}' '{base}/users/u1/contacts?limit=5'");
        println!("  curl -s -H 'Authorization: Bearer {u2}' '{base}/users/u1/contacts?limit=5'   # no Private contacts");
        println!("  curl -s -H 'Authorization: Bearer {service}' {base}/appointments");
        println!("  curl -s -H 'Authorization: Bearer {u1}' {base}/users/u1/calendar/skipped");
        println!("  curl -s http://{local}/metrics");
        println!("first sync running (the API answers meanwhile)…");
        let ready = move |report: &synchub::hub::scheduler::CycleReport| {
            let failed = report.failed().count();
            println!(
                "ready in {:.1} s: first sync of {} users done{}, flagged meetings sent. Ctrl-C stops.",
                started.elapsed().as_secs_f64(),
                report.users.len(),
                if failed > 0 { format!(", {failed} failed (see the log)") } else { String::new() }
            );
        };
        // Two cycles: the first complete calendar pass (SPEC K7), then the one that sends.
        let served = run_service(listener, hub, api, config.schedule, shutdown, 2, ready).await;
        drop((graph, crm));
        served
    });
    // Runs still going on blocking threads get a bounded wait; cut short, they resume
    // from their last commit (SPEC N1).
    rt.shutdown_timeout(SHUTDOWN_GRACE);
    result
}

/// Serve the API on `listener` and run the scheduler until `shutdown`: `warm_up` cycles at
/// once, then `first` (the sandbox says it is ready), then a cycle every interval.
async fn run_service(
    listener: tokio::net::TcpListener,
    hub: Arc<Hub>,
    api: synchub::api::Api,
    schedule: synchub::hub::scheduler::Schedule,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    warm_up: usize,
    first: impl FnOnce(&synchub::hub::scheduler::CycleReport) + Send + 'static,
) -> Result<()> {
    use synchub::hub::scheduler::Scheduler;
    use synchub::hub::HubJobs;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let timeout = tower_http::timeout::TimeoutLayer::with_status_code(
        axum::http::StatusCode::SERVICE_UNAVAILABLE,
        REQUEST_TIMEOUT,
    );
    let app = synchub::api::router(Arc::new(api))
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(timeout)
        // A span per request (method, path); its status and latency are logged at debug.
        .layer(tower_http::trace::TraceLayer::new_for_http());
    let server = tokio::spawn(async move { axum::serve(listener, app).with_graceful_shutdown(shutdown).await });
    let interval = hub.interval_secs();
    let scheduler = Scheduler::new(Arc::new(HubJobs::new(hub)), schedule);
    let cycles = tokio::spawn(async move {
        let mut report = scheduler.run_now(None).await;
        for _ in 1..warm_up {
            report = scheduler.run_now(None).await;
        }
        first(&report);
        let mut early = stopped.clone();
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(interval.max(1))) => {}
            _ = early.changed() => return,
        }
        scheduler.run(stopped, None).await;
    });
    let served = server.await.context("the API task")?;
    let _ = stop.send(true);
    // The cycle under way gets a while to finish; past that the process exits anyway, which
    // is safe: a run stopped anywhere resumes from its last commit (SPEC N1).
    if tokio::time::timeout(SHUTDOWN_GRACE, cycles).await.is_err() {
        tracing::warn!("a sync cycle was still running at exit; its runs resume from their last commit (SPEC N1)");
    }
    served.context("serving the API")?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGTERM or Ctrl-C. The handlers are installed when this is called (before the address
/// is printed), so a signal that comes early is not lost.
fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
        let mut int = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
        Ok(async move {
            tokio::select! {
                _ = term.recv() => {}
                _ = int.recv() => {}
            }
            tracing::info!("shutting down: the API stops taking requests, the run in flight finishes");
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("shutting down: the API stops taking requests, the run in flight finishes");
        })
    }
}

fn sync(path: &std::path::Path, only: Option<&str>, plan: bool) -> Result<()> {
    use std::io::IsTerminal;
    let config = Config::load(path)?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().context("starting the runtime")?;
    let hub = match Hub::from_config(&config, rt.handle().clone()) {
        Ok(hub) => hub,
        Err(synchub::hub::HubError::Store(e)) => {
            anyhow::bail!(
                "the store is in use ({e}): a `synchub serve` holds it; start runs through its API instead \
                 (POST /api/v1/runs, or POST /api/v1/runs/plan for a plan)"
            )
        }
        Err(e) => return Err(e.into()),
    };
    let matched = hub.match_users()?;
    for m in &matched.unmatched_mailboxes {
        println!("unmatched mailbox {m}");
    }
    for u in &matched.unmatched_crm_users {
        println!("unmatched CRM user {u}");
    }
    let pairs: Vec<_> = matched
        .pairs
        .iter()
        .filter(|p| only.is_none_or(|u| u.eq_ignore_ascii_case(&p.crm_user) || u.eq_ignore_ascii_case(&p.address)))
        .collect();
    // A progress bar on a terminal; plain lines otherwise (logs, CI).
    let bar = std::io::stdout().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(pairs.len() as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template("{bar:30} {pos}/{len} users  {msg}") {
            bar.set_style(style);
        }
        bar
    });
    let say = |line: String| match &bar {
        Some(b) => b.println(line),
        None => println!("{line}"),
    };
    let mut failed = 0;
    for pair in pairs {
        if let Some(b) = &bar {
            b.set_message(pair.address.clone());
        }
        if !hub.enabled(pair) {
            say(format!("{:<32} contact sync off", pair.address));
        } else if plan {
            match hub.dry_run(pair) {
                Ok(r) => {
                    say(format!("{:<32} {} planned writes (nothing written)", pair.address, r.plan.len()));
                    for p in &r.plan {
                        say(format!(
                            "  {:<8} {:<7} {} {:?}",
                            p.side.name(),
                            p.op,
                            p.contact,
                            p.fields.iter().map(|(f, _)| f.name()).collect::<Vec<_>>()
                        ));
                    }
                }
                Err(e) => {
                    say(format!("{:<32} planning failed: {e}", pair.address));
                    failed += 1;
                }
            }
        } else {
            match hub.sync_user(pair) {
                Ok(r) => {
                    let [ex, crm] = r.counts;
                    say(format!(
                        "{:<32} outlook {ex} | crm {crm} | conflicts {} | matched {} | possible duplicates {} | errors {}",
                        pair.address,
                        r.log.conflicts.len(),
                        r.log.matched.len(),
                        r.possible_duplicates.len(),
                        r.errors.len()
                    ));
                    failed += usize::from(!r.errors.is_empty());
                }
                Err(e) => {
                    say(format!("{:<32} failed: {e}", pair.address));
                    failed += 1;
                }
            }
        }
        if let Some(b) = &bar {
            b.inc(1);
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    anyhow::ensure!(failed == 0, "{failed} user(s) did not sync cleanly");
    Ok(())
}

fn report(step: &str, r: &RunReport) {
    let [ex, crm] = r.counts;
    println!(
        "{step:<44} exchange {ex} | crm {crm} | conflicts {} | resurrected {}",
        r.log.conflicts.len(),
        r.log.resurrected.len()
    );
}

fn demo(data: &std::path::Path, n: usize) -> Result<()> {
    if data.exists() {
        std::fs::remove_dir_all(data).with_context(|| format!("emptying {}", data.display()))?;
    }
    std::fs::create_dir_all(data).with_context(|| format!("creating {}", data.display()))?;
    let store = Store::open(data).with_context(|| format!("opening the store in {}", data.display()))?;
    let clock = Arc::new(AtomicI64::new(Utc::now().timestamp_millis()));
    let mut ex = MemorySide::new(Side::Exchange, clock.clone());
    let mut crm = MemorySide::new(Side::Crm, clock.clone());
    for i in 0..n {
        ex.user_create(sample::contact(i));
        crm.user_create(sample::contact(n + i));
    }
    println!("synchub demo: {n} contacts in Outlook, {n} in the CRM list, store in {}\n", data.display());
    let mut slot = Some(UserReplica::load(&store, "demo-user")?);
    let run = |ex: &mut MemorySide, crm: &mut MemorySide, slot: &mut Option<UserReplica>| -> Result<RunReport> {
        let opts = RunOptions::new(RunCtx::all_fields(Utc::now()));
        let replica = match slot.take() {
            Some(r) => r,
            None => UserReplica::load(&store, "demo-user")?,
        };
        let (replica, report) = run_user(&store, "demo-user", replica, [ex, crm], opts)?;
        *slot = Some(replica);
        Ok(report)
    };
    report("first sync (each side gets the other's)", &run(&mut ex, &mut crm, &mut slot)?);

    let first_ex = ex.items().keys().next().cloned().context("no Exchange item")?;
    let hub = ex.items()[&first_ex].stamp.context("the item was not stamped")?;
    let crm_item =
        crm.items().iter().find(|(_, it)| it.stamp == Some(hub)).map(|(id, _)| id.clone()).context("no twin")?;
    let text = |s: &str| Some(FieldValue::Text(s.to_string()));
    ex.user_edit(&first_ex, Field::JobTitle, text("Managing Partner"));
    crm.user_edit(&crm_item, Field::MobilePhone, text("+44 20 7946 0000"));
    report("different fields edited on each side", &run(&mut ex, &mut crm, &mut slot)?);

    crm.user_edit(&crm_item, Field::Company, text("Acme (CRM spelling)"));
    ex.user_edit(&first_ex, Field::Company, text("ACME Holdings plc"));
    report("same field edited on both (Outlook later)", &run(&mut ex, &mut crm, &mut slot)?);

    let second = ex.items().keys().nth(1).cloned().context("no second item")?;
    let hub2 = ex.items()[&second].stamp.context("not stamped")?;
    let crm2 =
        crm.items().iter().find(|(_, it)| it.stamp == Some(hub2)).map(|(id, _)| id.clone()).context("no twin")?;
    ex.user_delete(&second);
    crm.user_edit(&crm2, Field::Department, text("Restructuring"));
    report("deleted in Outlook, edited in the CRM", &run(&mut ex, &mut crm, &mut slot)?);
    report("a quiet run", &run(&mut ex, &mut crm, &mut slot)?);

    let show = |side: &MemorySide, id: &synchub::model::ItemId| {
        let f = &side.items()[id].fields;
        let get = |field| f.get(field).and_then(FieldValue::as_text).unwrap_or("-").to_string();
        format!(
            "{} | {} | {} | {}",
            f.display_name(),
            get(Field::Company),
            get(Field::JobTitle),
            get(Field::MobilePhone)
        )
    };
    println!("\nthe first contact, Outlook: {}", show(&ex, &first_ex));
    println!("the first contact, CRM:     {}", show(&crm, &crm_item));
    for c in conflicts(&store, "demo-user")? {
        let v = |v: &Option<FieldValue>| v.as_ref().and_then(FieldValue::as_text).unwrap_or("-").to_string();
        println!(
            "conflict on {}: exchange {:?} vs crm {:?}, {} won",
            c.field,
            v(&c.exchange_value),
            v(&c.crm_value),
            c.winner
        );
    }
    println!(
        "\nboth sides hold {} / {} contacts; the contact deleted in Outlook came back there because the CRM edit was concurrent (SPEC X3)",
        ex.items().len(),
        crm.items().len()
    );
    Ok(())
}
