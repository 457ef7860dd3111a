//! A committed batch survives a process kill (issue 2; SPEC N1): a child process commits to
//! sled and is killed with SIGKILL; the parent reopens the directory and finds the batch.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use synchub::merge::UserReplica;
use synchub_store::{Store, UserWrite};

const CHILD: &str = "SYNCHUB_KILL_TEST_DIR";

/// Run by the child process: commit, say so, then wait to be killed.
#[test]
fn kill_child_commits_then_waits() {
    let Ok(dir) = std::env::var(CHILD) else { return }; // only as the child
    let store = Store::open(std::path::Path::new(&dir)).expect("open");
    let mut w = UserWrite::new();
    w.cursor("crm", Some("cursor-after-kill".into()));
    let mut replica = UserReplica::new();
    replica.set_cursor(synchub::model::Side::Exchange, Some("delta-link".into()));
    let replica_write = replica.take_write().expect("write");
    store.commit("u1", w).expect("commit");
    store.commit("u2", replica_write).expect("commit");
    println!("committed");
    std::thread::sleep(std::time::Duration::from_secs(60));
}

#[test]
fn a_committed_batch_survives_sigkill_and_reopens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let exe = std::env::current_exe().expect("test binary");
    let mut child = Command::new(exe)
        .args(["--exact", "durability::kill_child_commits_then_waits", "--nocapture", "--test-threads=1"])
        .env(CHILD, dir.path())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let committed = BufReader::new(stdout).lines().map_while(Result::ok).any(|l| l.contains("committed"));
    assert!(committed, "the child reported its commit");
    child.kill().expect("SIGKILL the child");
    child.wait().expect("reap");

    let store = Store::open(dir.path()).expect("reopen after kill");
    let u1 = store.load_user("u1").expect("load");
    assert_eq!(u1.cursors, vec![("crm".to_string(), "cursor-after-kill".to_string())]);
    let u2 = UserReplica::load(&store, "u2").expect("load replica");
    assert_eq!(u2.side(synchub::model::Side::Exchange).cursor.as_deref(), Some("delta-link"));
}
