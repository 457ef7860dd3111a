//! The real binary killed mid-sync (issue 5; SPEC N1, X9): `synchub sync --config FILE`
//! runs a large initial sync against both emulators in this process and is killed with
//! SIGKILL at seeded random points, again and again; then it runs to the end. Both sides
//! must end as mirror images with every person exactly once.

use std::collections::BTreeSet;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use synchub::model::{Field, FieldValue};

use crate::firm::{person, Firm, CRM_TOKEN};

/// A small seeded generator (xorshift64*), so kill points replay.
struct Seeded(u64);

impl Seeded {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// `synchub sync`'s configuration against the firm's emulators, the store in `store`.
pub(crate) fn config(firm: &Firm, store: &std::path::Path) -> String {
    format!(
        r#"
[store]
path = "{store}"

[graph]
authority = "{graph}"
tenant = "firm"
client_id = "synchub"
client_secret = "secret"
base = "{graph}/v1.0"

[crm]
base = "{crm}"
token = "{CRM_TOKEN}"
"#,
        store = store.display(),
        graph = firm.graph_url,
        crm = firm.crm_url,
    )
}

fn emails(fields: &[synchub::model::ContactFields]) -> BTreeSet<String> {
    fields.iter().filter_map(|f| f.get(Field::Email1).and_then(FieldValue::as_text)).map(str::to_lowercase).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_the_binary_killed_at_random_points_of_a_large_initial_sync_ends_mirrored_without_duplicates() {
    let firm = Firm::start(1, Default::default()).await;
    for i in 0..600 {
        firm.outlook_add(1, &person(&format!("Given{i}"), &format!("Out{i}"), "Acme", &format!("p{i}@acme.example")));
    }
    for i in 300..900 {
        // 300 of them the same people (same e-mail), 300 only in the CRM.
        firm.crm_add(1, &person(&format!("Given{i}"), &format!("Crm{i}"), "Acme", &format!("P{i}@acme.example")));
    }
    firm.graph.set_latency(Duration::from_millis(1));
    firm.crm.set_latency(Duration::from_millis(1));
    let store = tempfile::tempdir().expect("store dir");
    let file = store.path().join("synchub.toml");
    std::fs::write(&file, config(&firm, &store.path().join("store"))).expect("config");
    let run = move || {
        Command::new(env!("CARGO_BIN_EXE_synchub"))
            .args(["sync", "--config"])
            .arg(file.clone())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start synchub")
    };

    let mut seed = Seeded(0x5EED_C0FF_EE15_600D);
    let mut kills = 0;
    let mut window = 600u64;
    let deadline = Instant::now() + Duration::from_secs(240);
    while kills < 24 && Instant::now() < deadline {
        let mut child = run();
        let wait = Duration::from_millis(40 + seed.next() % window);
        tokio::time::sleep(wait).await;
        if child.try_wait().expect("status").is_none() {
            child.kill().expect("SIGKILL");
            kills += 1;
        } else {
            // It finished before the kill: later kills come sooner.
            window = (window / 2).max(20);
        }
        child.wait().expect("reaped");
    }
    assert!(kills >= 20, "only {kills} kills landed mid-run");
    eprintln!("{kills} kills landed mid-run (kill window down to {window} ms)");

    firm.graph.set_latency(Duration::ZERO);
    firm.crm.set_latency(Duration::ZERO);
    for _ in 0..2 {
        let mut child = run();
        let status = tokio::task::spawn_blocking(move || child.wait()).await.expect("task").expect("exit");
        assert!(status.success(), "a clean run after the kills: {status}");
    }
    let (outlook, crm) = firm.sides(1);
    assert_eq!(outlook.len(), 900, "every person once in Outlook");
    assert_eq!(crm.len(), 900, "and once in the CRM list");
    assert_eq!(emails(&outlook).len(), 900, "no duplicates in Outlook");
    assert_eq!(emails(&crm).len(), 900, "no duplicates in the CRM list");
    firm.assert_mirrored(1);
}

/// `synchub compact` (issue 8): the store rewritten with its live records is smaller, and a
/// run after it finds everything linked (nothing pushed again, SPEC N1, X9). While another
/// process holds the store, it refuses with a clear error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn n1_the_compacted_store_is_smaller_and_runs_on_from_where_it_was() {
    let firm = Firm::start(1, Default::default()).await;
    for i in 0..300 {
        let mut p = person("Ann", &format!("Lee{i}"), "Globex", &format!("ann{i}@globex.example"));
        p.set(Field::JobTitle, Some(FieldValue::Text(format!("Counsel {i}"))));
        if i % 2 == 0 {
            firm.outlook_add(1, &p);
        } else {
            firm.crm_add(1, &p);
        }
    }
    let dir = tempfile::tempdir().expect("dir");
    let store = dir.path().join("store");
    let file = dir.path().join("synchub.toml");
    std::fs::write(&file, config(&firm, &store)).expect("config");
    let synchub = move |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_synchub"))
            .args(args)
            .arg("--config")
            .arg(&file)
            .stdin(Stdio::null())
            .output()
            .expect("synchub");
        (out.status.success(), String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr))
    };
    let run = |args: &'static [&'static str]| {
        let synchub = synchub.clone();
        tokio::task::spawn_blocking(move || synchub(args))
    };
    for _ in 0..3 {
        let (ok, out) = run(&["sync"]).await.expect("task");
        assert!(ok, "{out}");
    }
    let size = |p: &std::path::Path| -> u64 {
        walk(p).iter().filter_map(|f| std::fs::metadata(f).ok()).map(|m| m.len()).sum()
    };
    let before = size(&store);
    let (ok, out) = run(&["compact"]).await.expect("task");
    assert!(ok && out.contains("compacted"), "{out}");
    let after = size(&store);
    assert!(after < before, "{after} bytes after, {before} before");
    assert!(!dir.path().join("store.compacting").exists() && !dir.path().join("store.pre-compact").exists());

    let pushes_before = (firm.graph.state().contacts("m1", None).expect("m1").len(), firm.crm.state().list("u1").len());
    let (ok, out) = run(&["sync"]).await.expect("task");
    assert!(ok, "{out}");
    assert_eq!(
        (firm.graph.state().contacts("m1", None).expect("m1").len(), firm.crm.state().list("u1").len()),
        pushes_before
    );
    assert_eq!(pushes_before, (300, 300), "every person once on each side");
    firm.assert_mirrored(1);

    // Held by another process: refused, and the store is left as it is.
    let held = synchub_store::Store::open(&store).expect("open");
    let (ok, out) = run(&["compact"]).await.expect("task");
    assert!(!ok && out.contains("stop it first"), "{out}");
    drop(held);
    assert!(store.exists());
}

fn walk(p: &std::path::Path) -> Vec<std::path::PathBuf> {
    match std::fs::read_dir(p) {
        Ok(entries) => {
            entries.flatten().flat_map(|e| if e.path().is_dir() { walk(&e.path()) } else { vec![e.path()] }).collect()
        }
        Err(_) => Vec::new(),
    }
}
