//! The HTTP API v1 (issue 7; shared/API.md; SPEC P1–P3, K8, K9, K11, X8) of the real binary:
//! `synchub serve` against both emulators in this process, on port 0, its scheduler syncing
//! every second. One firm, one server, every route of this version exercised with each role.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use synchub::model::Field;
use synchub_connectors::crm::wire::{Contact as CrmContact, Entry};
use synchub_connectors::graph::props::CRM_CONTACT_ID;

use crate::calendar::{at, meeting, put, t0};
use crate::firm::{person, Firm};

const ADMIN: &str = "admin-token";
const U1: &str = "u1-token";
const U2: &str = "u2-token"; // a proxy of u1
const U3: &str = "u3-token";
const SERVICE: &str = "service-token";

/// The binary serving, killed when dropped.
struct Served {
    child: Child,
    base: String,
    _dir: tempfile::TempDir,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn digest(token: &str) -> String {
    synchub::api::token_digest(token)
}

/// The configuration of `crash.rs`, with calendar sync on, the schedule, and a token per
/// principal.
fn config(firm: &Firm, store: &std::path::Path, interval_secs: u64) -> String {
    let mut text = crate::crash::config(firm, store);
    text.push_str(&format!(
        "\n[calendar]\nenabled = true\n\n[schedule]\ninterval_secs = {interval_secs}\nretries = 0\n"
    ));
    for (token, role, user) in [
        (ADMIN, "admin", None),
        (U1, "user", Some("u1")),
        (U2, "user", Some("u2")),
        (U3, "user", Some("u3")),
        (SERVICE, "service", None),
    ] {
        text.push_str(&format!("\n[[api.tokens]]\nsha256 = \"{}\"\nrole = \"{role}\"\n", digest(token)));
        if let Some(u) = user {
            text.push_str(&format!("user = \"{u}\"\n"));
        }
    }
    text
}

/// Start `synchub serve` on port 0, syncing every second; its first line of output names
/// the address.
async fn serve(firm: &Firm) -> Served {
    serve_every(firm, 1).await
}

async fn serve_every(firm: &Firm, interval_secs: u64) -> Served {
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("synchub.toml");
    std::fs::write(&file, config(firm, &dir.path().join("store"), interval_secs)).expect("config");
    let mut child = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["serve", "--listen", "127.0.0.1:0", "--config"])
        .arg(&file)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start synchub serve");
    let stdout = child.stdout.take().expect("stdout");
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map(|_| line)
    })
    .await
    .expect("task")
    .expect("first line");
    let base = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .and_then(|w| w.strip_suffix("/api/v1"))
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    Served { child, base, _dir: dir }
}

/// A client that opens a connection per request: the server closes one after refusing a
/// body unread (413), which a pooled connection would only find out on its next request.
fn client() -> reqwest::Client {
    reqwest::Client::builder().pool_max_idle_per_host(0).build().expect("client")
}

struct Client {
    http: reqwest::Client,
    base: String,
}

impl Client {
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.expect("request");
        let status = resp.status();
        let text = resp.text().await.expect("body");
        (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
    }

    async fn get(&self, path: &str, token: Option<&str>) -> (StatusCode, Value) {
        self.call(reqwest::Method::GET, path, token, None).await
    }
}

/// An error answer has the shape of API.md "Errors", with this status and code.
fn error(answer: &(StatusCode, Value), status: StatusCode, code: &str) {
    assert_eq!(answer.0, status, "{answer:?}");
    assert_eq!(answer.1["error"]["code"], code, "{answer:?}");
    assert!(answer.1["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{answer:?}");
}

async fn eventually(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("{what} did not happen within 60 s");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p1_p3_every_route_answers_each_role_as_api_md_says() {
    let firm = Firm::start(3, Default::default()).await;
    firm.set_time(t0());
    firm.crm.state().add_proxy("u1", "u2");
    firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.example"));
    // Private is the user's own flag on their list entry (SPEC C11, P1).
    let fields = person("Dana", "Secret", "Hidden", "dana@hidden.example");
    let mut secret = synchub::connect::crm::apply_firm(CrmContact::default(), &fields, |_| true);
    secret.entry = Some(Entry { private: true, ..Entry::default() });
    firm.crm.state().create_in_list("u1", secret).expect("a private contact");
    let now = chrono::Utc::now();
    put(
        &firm,
        1,
        meeting(
            "Acme review",
            now + chrono::Duration::days(3),
            "u1@firm.example",
            &["jane@acme.example", "pat@newco.example"],
        ),
    );
    let mut doctor = meeting("Doctor", now + chrono::Duration::days(4), "u1@firm.example", &[]);
    doctor.sensitivity = Some("private".into());
    put(&firm, 1, doctor);
    let mut recurring = meeting("Weekly", now + chrono::Duration::days(3), "u1@firm.example", &[]);
    recurring.kind = Some("occurrence".into());
    put(&firm, 1, recurring);
    let _ = at;
    let served = serve(&firm).await;
    let c = Client { http: client(), base: served.base.clone() };

    // No token needed.
    let health = c.get("/healthz", None).await;
    assert_eq!((health.0, health.1["status"].as_str()), (StatusCode::OK, Some("ok")));
    let doc = c.get("/api/v1/openapi.json", None).await;
    assert_eq!(doc.0, StatusCode::OK);

    // The scheduler syncs everyone; calendar sync readies and then sends.
    eventually("the appointment", async || {
        c.get("/api/v1/appointments", Some(ADMIN)).await.1["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let metrics = c.get("/metrics", None).await;
    assert!(metrics.1.as_str().is_some_and(|m| m.contains("synchub_runs_total")), "{metrics:?}");

    // Authentication.
    error(&c.get("/api/v1/settings", None).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    error(&c.get("/api/v1/settings", Some("wrong")).await, StatusCode::UNAUTHORIZED, "unauthenticated");
    error(&c.get("/api/v1/nothing-here", Some(ADMIN)).await, StatusCode::NOT_FOUND, "not_found");

    // Settings: administrators only; calendar sync cannot be turned off (K1).
    for t in [U1, SERVICE] {
        error(&c.get("/api/v1/settings", Some(t)).await, StatusCode::FORBIDDEN, "forbidden");
    }
    let settings = c.get("/api/v1/settings", Some(ADMIN)).await;
    assert_eq!((settings.0, settings.1["calendar_sync"].as_bool()), (StatusCode::OK, Some(true)));
    assert_eq!(settings.1["calendar_category"], "CRM");
    let patch = |body: Value| c.call(reqwest::Method::PATCH, "/api/v1/settings", Some(ADMIN), Some(body));
    error(
        &patch(serde_json::json!({"calendar_sync": false})).await,
        StatusCode::CONFLICT,
        "calendar_sync_irreversible",
    );
    error(&patch(serde_json::json!({"colour": "red"})).await, StatusCode::BAD_REQUEST, "invalid_request");
    error(
        &patch(serde_json::json!({"initial_match": "fuzzy"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    error(
        &patch(serde_json::json!({"interval_seconds": 1})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    error(
        &patch(serde_json::json!({"calendar_category": " "})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let changed =
        patch(serde_json::json!({"reuse_policy": "follow", "interval_seconds": 3600, "calendar_category": "CRM"}))
            .await;
    assert_eq!(changed.0, StatusCode::OK, "{changed:?}");
    assert_eq!(
        (&changed.1["reuse_policy"], &changed.1["interval_seconds"]),
        (&Value::from("follow"), &Value::from(3600))
    );
    let again = c.get("/api/v1/settings", Some(ADMIN)).await;
    assert_eq!(again.1["reuse_policy"], "follow", "stored: {again:?}");
    // The skipped list shows an administrator a Private meeting's subject as ***.
    let admin_view = c.get("/api/v1/users/u1/calendar/skipped", Some(ADMIN)).await;
    let doctor =
        admin_view.1["items"].as_array().unwrap().iter().find(|i| i["reason"] == "private").expect("private").clone();
    assert_eq!(doctor["subject"], "***", "{admin_view:?}");
    let own_view = c.get("/api/v1/users/u1/calendar/skipped", Some(U1)).await;
    assert!(own_view.1["items"].as_array().unwrap().iter().any(|i| i["subject"] == "Doctor"), "the owner sees it");
    let ok = patch(serde_json::json!({"calendar_sync": true})).await;
    assert_eq!(ok.0, StatusCode::OK, "{ok:?}");
    let big = serde_json::json!({"calendar_category": "x".repeat(2 * 1024 * 1024)});
    error(&patch(big).await, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");

    // Users, runs and held runs.
    let users = c.get("/api/v1/users", Some(ADMIN)).await;
    assert_eq!(users.1["items"].as_array().map(Vec::len), Some(3), "{users:?}");
    error(&c.get("/api/v1/users", Some(U1)).await, StatusCode::FORBIDDEN, "forbidden");
    let runs = c.get("/api/v1/runs?user=u1", Some(U1)).await;
    assert!(runs.1["items"][0]["counts"]["exchange"]["created"].is_u64(), "{runs:?}");
    error(&c.get("/api/v1/runs?user=u2", Some(U1)).await, StatusCode::FORBIDDEN, "forbidden");
    assert_eq!(c.get("/api/v1/runs", Some(ADMIN)).await.0, StatusCode::OK);
    let held = c.get("/api/v1/held", Some(ADMIN)).await;
    assert_eq!(held.1["items"], serde_json::json!([]), "{held:?}");
    error(&c.get("/api/v1/held", Some(SERVICE)).await, StatusCode::FORBIDDEN, "forbidden");

    // Contacts: the owner sees all; a proxy and a service not the Private one (P1, P2);
    // another user and an administrator nothing (P3).
    eventually("the contacts synced", async || {
        c.get("/api/v1/users/u1/contacts", Some(U1)).await.1["items"].as_array().is_some_and(|a| a.len() >= 2)
    })
    .await;
    let names = |v: &Value| {
        let mut n: Vec<String> = v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["fields"]["surname"].as_str())
            .map(str::to_string)
            .collect();
        n.sort();
        n
    };
    let own = c.get("/api/v1/users/u1/contacts", Some(U1)).await;
    assert!(names(&own.1).contains(&"Secret".to_string()), "{own:?}");
    let private = own.1["items"].as_array().unwrap().iter().find(|c| c["private"] == true).expect("private").clone();
    assert!(private["links"]["crm"].is_string() && private["links"]["exchange"].is_string(), "{private}");
    for t in [U2, SERVICE] {
        let seen = c.get("/api/v1/users/u1/contacts", Some(t)).await;
        assert_eq!(seen.0, StatusCode::OK);
        assert!(!names(&seen.1).contains(&"Secret".to_string()), "Private hidden from {t}: {seen:?}");
        assert!(names(&seen.1).contains(&"Tarnoff".to_string()));
        let path = format!("/api/v1/users/u1/contacts/{}", private["id"].as_str().unwrap());
        error(&c.get(&path, Some(t)).await, StatusCode::NOT_FOUND, "not_found");
    }
    error(&c.get("/api/v1/users/u1/contacts", Some(U3)).await, StatusCode::FORBIDDEN, "forbidden");
    error(&c.get("/api/v1/users/u1/contacts", Some(ADMIN)).await, StatusCode::FORBIDDEN, "forbidden");
    let one = c.get(&format!("/api/v1/users/u1/contacts/{}", private["id"].as_str().unwrap()), Some(U1)).await;
    assert_eq!((one.0, &one.1["fields"]["given_name"]), (StatusCode::OK, &Value::from("Dana")));
    let history =
        c.get(&format!("/api/v1/users/u1/contacts/{}/history", private["id"].as_str().unwrap()), Some(U1)).await;
    let changes = history.1["items"].as_array().expect("history");
    assert!(
        changes.iter().any(|h| h["field"] == "surname" && h["value"] == "Secret" && h["side"] == "crm"),
        "{history:?}"
    );

    // Paging.
    let first = c.get("/api/v1/users/u1/contacts?limit=1", Some(U1)).await;
    assert_eq!(first.1["items"].as_array().map(Vec::len), Some(1));
    let next = first.1["next"].as_str().expect("a next page").to_string();
    let second = c.get(&format!("/api/v1/users/u1/contacts?limit=1&after={next}"), Some(U1)).await;
    assert_ne!(second.1["items"][0]["id"], first.1["items"][0]["id"]);
    error(&c.get("/api/v1/users/u1/contacts?limit=0", Some(U1)).await, StatusCode::BAD_REQUEST, "invalid_request");
    error(&c.get("/api/v1/users/u1/contacts?limit=5001", Some(U1)).await, StatusCode::BAD_REQUEST, "invalid_request");
    error(&c.get("/api/v1/users/u1/contacts?after=junk", Some(U1)).await, StatusCode::BAD_REQUEST, "invalid_request");
    error(&c.get("/api/v1/users/u1/contacts?limit=many", Some(U1)).await, StatusCode::BAD_REQUEST, "invalid_request");

    // Calendar: appointments for administrators, users and services (K9), their history
    // (K8); skipped items for the user and administrators (K11); unmatched attendees for
    // the user (K4).
    let jane = own.1["items"].as_array().unwrap().iter().find(|c| c["fields"]["surname"] == "Tarnoff").unwrap().clone();
    let jane_crm = jane["links"]["crm"].as_str().unwrap();
    for t in [ADMIN, U3, SERVICE] {
        let found = c.get(&format!("/api/v1/appointments?contact={jane_crm}"), Some(t)).await;
        assert_eq!(found.1["items"][0]["subject"], "Acme review", "{t}: {found:?}");
    }
    let appt = c.get("/api/v1/appointments?company=acme", Some(U1)).await.1["items"][0].clone();
    assert_eq!(appt["status"], "scheduled");
    let id = appt["id"].as_str().unwrap();
    assert_eq!(c.get(&format!("/api/v1/appointments/{id}"), Some(SERVICE)).await.1["subject"], "Acme review");
    let log = c.get(&format!("/api/v1/appointments/{id}/history"), Some(U1)).await;
    assert_eq!(log.1["items"][0]["change"], "sent", "{log:?}");
    error(&c.get("/api/v1/appointments/apnothing", Some(U1)).await, StatusCode::NOT_FOUND, "not_found");
    error(&c.get("/api/v1/appointments?from=yesterday", Some(U1)).await, StatusCode::BAD_REQUEST, "invalid_request");
    let skipped = c.get("/api/v1/users/u1/calendar/skipped", Some(U1)).await;
    assert_eq!(skipped.1["items"][0]["reason"], "recurring", "{skipped:?}");
    assert_eq!(c.get("/api/v1/users/u1/calendar/skipped", Some(ADMIN)).await.0, StatusCode::OK);
    error(&c.get("/api/v1/users/u1/calendar/skipped", Some(U2)).await, StatusCode::FORBIDDEN, "forbidden");
    let unmatched = c.get("/api/v1/users/u1/unmatched-attendees", Some(U1)).await;
    assert_eq!(unmatched.1["items"][0]["email"], "pat@newco.example", "{unmatched:?}");
    error(&c.get("/api/v1/users/u1/unmatched-attendees", Some(ADMIN)).await, StatusCode::FORBIDDEN, "forbidden");
    let add = "/api/v1/users/u1/unmatched-attendees/pat@newco.example";
    error(&c.call(reqwest::Method::POST, add, Some(ADMIN), None).await, StatusCode::FORBIDDEN, "forbidden");
    let added = c.call(reqwest::Method::POST, add, Some(U1), None).await;
    assert_eq!(
        (added.0, &added.1["fields"]["email1"]),
        (StatusCode::CREATED, &Value::from("pat@newco.example")),
        "{added:?}"
    );
    let cid = added.1["links"]["crm"].as_str().expect("in the CRM list").to_string();
    let linked = c.get(&format!("/api/v1/appointments?contact={cid}"), Some(U1)).await;
    assert_eq!(linked.1["items"][0]["subject"], "Acme review", "linked (K4): {linked:?}");
    assert_eq!(c.get("/api/v1/users/u1/unmatched-attendees", Some(U1)).await.1["items"], serde_json::json!([]));
    error(
        &c.call(reqwest::Method::POST, "/api/v1/users/u1/unmatched-attendees/nobody@x.example", Some(U1), None).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// SPEC C3, X2, X9: a possible duplicate merged on review becomes one contact on both
/// sides: the Outlook original and the CRM original are kept, linked and re-stamped, the
/// copies the hub made of each are deleted, and a same-field conflict is resolved and
/// recorded as a run would.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_a_possible_duplicate_merged_over_the_api_is_one_contact_on_both_sides() {
    let firm = Firm::start(1, Default::default()).await;
    // The same name, two addresses: the identity match does not pair them.
    let mut max = person("Max", "Mustermann", "Acme", "max@home.example");
    max.set(Field::JobTitle, Some(synchub::model::FieldValue::Text("Counsel".into())));
    let outlook_max = firm.outlook_add(1, &max);
    let crm_max = firm.crm_add(1, &person("Max", "Mustermann", "Acme", "max@acme.example"));
    // Two Outlook items and one CRM item with one address: which two must be said.
    let twins: Vec<String> = ["Twin", "Twain"]
        .iter()
        .map(|surname| firm.outlook_add(1, &person("Tess", surname, "Acme", "twin@acme.example")))
        .collect();
    let crm_twin = firm.crm_add(1, &person("Tess", "Twin", "Acme", "twin@acme.example"));
    let served = serve_every(&firm, 3600).await;
    let c = Client { http: client(), base: served.base.clone() };
    eventually("the first cycle", async || {
        c.get("/api/v1/runs?user=u1", Some(ADMIN)).await.1["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    assert_eq!((firm.outlook(1).len(), firm.crm_list(1).len()), (5, 5), "both kept apart, copied across");
    let dupes = c.get("/api/v1/users/u1/possible-duplicates", Some(U1)).await.1["items"].clone();
    let id_of = |needle: &str| {
        dupes
            .as_array()
            .and_then(|a| a.iter().find(|d| d["reason"].as_str().is_some_and(|r| r.contains(needle))))
            .and_then(|d| d["id"].as_str())
            .unwrap_or_else(|| panic!("no possible duplicate for {needle}: {dupes:?}"))
            .to_string()
    };
    let (max_id, twin_id) = (id_of("mustermann"), id_of("twin@acme.example"));
    let merge = |id: &str| format!("/api/v1/users/u1/possible-duplicates/{id}/merge");
    let post = async |path: &str, token: &str, body: Option<Value>| {
        c.call(reqwest::Method::POST, path, Some(token), body).await
    };

    // Who may, and what is refused: the group of three needs the two named.
    error(&post(&merge(&max_id), U3, None).await, StatusCode::FORBIDDEN, "forbidden");
    error(&post(&merge(&max_id), U2, None).await, StatusCode::FORBIDDEN, "forbidden");
    error(&post(&merge("nope"), U1, None).await, StatusCode::NOT_FOUND, "not_found");
    error(&post(&merge(&twin_id), U1, None).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let bogus = serde_json::json!({"exchange": "not-an-item", "crm": crm_twin});
    error(&post(&merge(&twin_id), U1, Some(bogus)).await, StatusCode::UNPROCESSABLE_ENTITY, "validation_failed");
    let unknown = serde_json::json!({"outlook": twins[0]});
    error(&post(&merge(&twin_id), U1, Some(unknown)).await, StatusCode::BAD_REQUEST, "invalid_request");

    let merged = post(&merge(&max_id), U1, None).await;
    assert_eq!(merged.0, StatusCode::OK, "{merged:?}");
    let contact = &merged.1["contact"];
    assert_eq!(
        (contact["links"]["exchange"].as_str(), contact["links"]["crm"].as_str()),
        (Some(&*outlook_max), Some(&*crm_max))
    );
    // Both written in the first run, a tie: the CRM's address wins (X2); the title only
    // Outlook had is kept.
    assert_eq!(contact["fields"]["email1"], "max@acme.example", "{merged:?}");
    assert_eq!(contact["fields"]["job_title"], "Counsel");
    assert_eq!(merged.1["conflicts"], 1);
    let done = finished(&c, merged.1["run"]["id"].as_str().expect("a run writes it out")).await;
    assert_eq!(done["status"], "ok", "{done:?}");
    for side in ["exchange", "crm"] {
        assert_eq!(
            (done["counts"][side]["updated"].as_u64(), done["counts"][side]["deleted"].as_u64()),
            (Some(1), Some(1)),
            "{side}: {done:?}"
        );
    }

    firm.assert_mirrored(1);
    let outlook: Vec<_> = firm.outlook(1).into_iter().filter(|i| i.surname.as_deref() == Some("Mustermann")).collect();
    let crm: Vec<_> = firm.crm_list(1).into_iter().filter(|i| i.name.last == "Mustermann").collect();
    assert_eq!((outlook.len(), crm.len()), (1, 1), "one Max on each side");
    assert_eq!(outlook[0].id.as_deref(), Some(&*outlook_max), "the Outlook original is kept");
    assert_eq!(crm[0].contact_id, crm_max, "the CRM original is kept");
    assert_eq!(outlook[0].extended(CRM_CONTACT_ID), Some(crm_max.as_str()), "stamped with its new peer (X9)");
    let hub = contact["id"].as_str().expect("hub id");
    assert_eq!(crm[0].entry.as_ref().and_then(|e| e.external_ref.as_deref()), Some(hub));
    let conflicts = c.get("/api/v1/users/u1/conflicts", Some(U1)).await.1["items"].clone();
    assert!(
        conflicts.as_array().is_some_and(|a| a.iter().any(|x| x["field"] == "email1" && x["winner"] == "crm")),
        "{conflicts:?}"
    );
    // Merged once: gone from the list, and a second merge finds nothing.
    error(&post(&merge(&max_id), U1, None).await, StatusCode::NOT_FOUND, "not_found");

    // The group of three, with the two named: what is left of it is one-sided, not listed.
    let named = serde_json::json!({"exchange": twins[0], "crm": crm_twin});
    let merged = post(&merge(&twin_id), ADMIN, Some(named)).await;
    assert_eq!(merged.0, StatusCode::OK, "{merged:?}");
    // An administrator is told the ids and links, not the contact's values (SPEC P3).
    assert_eq!((merged.1["contact"].is_null(), &merged.1["links"]["crm"]), (true, &Value::from(crm_twin.clone())));
    finished(&c, merged.1["run"]["id"].as_str().expect("a run")).await;
    assert_eq!(c.get("/api/v1/users/u1/possible-duplicates", Some(U1)).await.1["items"], serde_json::json!([]));
    firm.assert_mirrored(1);
    assert_eq!((firm.outlook(1).len(), firm.crm_list(1).len()), (3, 3), "Max, Tess Twin and Tess Twain");
    // Equal values, so only the stamps were written: each names the other and the contact.
    let tess = firm.outlook(1).into_iter().find(|i| i.id.as_deref() == Some(&*twins[0])).expect("kept");
    assert_eq!(tess.extended(CRM_CONTACT_ID), Some(crm_twin.as_str()));
    let tess = firm.crm_list(1).into_iter().find(|i| i.contact_id == crm_twin).expect("kept");
    assert_eq!(tess.entry.and_then(|e| e.external_ref), merged.1["id"].as_str().map(str::to_string));
    // Nothing bounces back afterwards.
    let quiet = post("/api/v1/runs", U1, Some(serde_json::json!({}))).await;
    let quiet = finished(&c, quiet.1["runs"][0]["id"].as_str().expect("run")).await;
    for side in ["exchange", "crm"] {
        for n in ["created", "updated", "deleted"] {
            assert_eq!(quiet["counts"][side][n], 0, "{side} {n}: {quiet:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_served_openapi_document_lists_every_route_of_this_version() {
    let firm = Firm::start(1, Default::default()).await;
    let served = serve(&firm).await;
    let c = Client { http: client(), base: served.base.clone() };
    let (status, doc) = c.get("/api/v1/openapi.json", None).await;
    assert_eq!(status, StatusCode::OK);
    let routes = [
        ("get", "/healthz"),
        ("get", "/metrics"),
        ("get", "/api/v1/openapi.json"),
        ("get", "/api/v1/settings"),
        ("patch", "/api/v1/settings"),
        ("get", "/api/v1/users"),
        ("get", "/api/v1/runs"),
        ("post", "/api/v1/runs"),
        ("get", "/api/v1/runs/{run}"),
        ("post", "/api/v1/runs/plan"),
        ("get", "/api/v1/held"),
        ("post", "/api/v1/held/{run}/release"),
        ("post", "/api/v1/held/{run}/discard"),
        ("patch", "/api/v1/users/{user}"),
        ("post", "/api/v1/users/{user}/unmatched-attendees/{email}"),
        ("get", "/api/v1/users/{user}/conflicts"),
        ("get", "/api/v1/users/{user}/possible-duplicates"),
        ("post", "/api/v1/users/{user}/possible-duplicates/{id}/merge"),
        ("post", "/api/v1/users/{user}/possible-duplicates/{id}/dismiss"),
        ("get", "/api/v1/users/{user}/contacts"),
        ("get", "/api/v1/users/{user}/contacts/{contact}"),
        ("get", "/api/v1/users/{user}/contacts/{contact}/history"),
        ("get", "/api/v1/users/{user}/calendar/skipped"),
        ("get", "/api/v1/users/{user}/unmatched-attendees"),
        ("get", "/api/v1/appointments"),
        ("get", "/api/v1/appointments/{appt}"),
        ("get", "/api/v1/appointments/{appt}/history"),
    ];
    for (method, path) in routes {
        assert!(doc["paths"][path][method].is_object(), "{method} {path} is not in the document");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_stops_cleanly_on_sigterm() {
    let firm = Firm::start(1, Default::default()).await;
    let mut served = serve(&firm).await;
    let c = Client { http: client(), base: served.base.clone() };
    assert_eq!(c.get("/healthz", None).await.0, StatusCode::OK);
    let pid = served.child.id().to_string();
    let sent = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
    assert!(sent.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(status) = served.child.try_wait().expect("status") {
            assert!(status.success(), "exits 0 after SIGTERM: {status}");
            break;
        }
        assert!(Instant::now() < deadline, "still running 30 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The sandbox (the README's first command): seeded, synced, serving, with tokens printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sandbox_serves_a_seeded_synced_firm_and_prints_how_to_reach_it() {
    let dir = tempfile::tempdir().expect("dir");
    let data = dir.path().join("data");
    let data = data.to_str().expect("a path");
    let (child, lines) = start_until(
        &["sandbox", "--listen", "127.0.0.1:0", "--users", "25", "--contacts", "30", "--data", data],
        "ready in",
    )
    .await;
    let served = Served { child, base: String::new(), _dir: dir };
    assert!(lines[0].starts_with("synchub sandbox API on http://127.0.0.1:"), "the API's URL first: {lines:?}");
    assert!(lines[1].starts_with("Graph emulator on http://") && lines[2].starts_with("CRM emulator on http://"));
    assert!(lines.last().is_some_and(|l| l.starts_with("ready in")), "{lines:?}");
    let token = |name: &str| {
        lines
            .iter()
            .find_map(|l| l.trim_start().strip_prefix(name).filter(|_| l.starts_with("  ")))
            .and_then(|rest| rest.split_whitespace().next())
            .unwrap_or_else(|| panic!("no {name} token in {lines:?}"))
            .to_string()
    };
    let base =
        lines[0].split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches("/api/v1").to_string();
    let c = Client { http: client(), base };
    let (admin, u1, u2, service) = (token("admin "), token("u1 "), token("u2 "), token("service "));
    let users = c.get("/api/v1/users", Some(&admin)).await;
    assert_eq!(users.1["items"].as_array().map(Vec::len), Some(25), "{users:?}");
    let own = c.get("/api/v1/users/u1/contacts?limit=5000", Some(&u1)).await.1["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let proxy = c.get("/api/v1/users/u1/contacts?limit=5000", Some(&u2)).await.1["items"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(own.iter().any(|c| c["private"] == true), "the sample has Private contacts");
    assert_eq!(proxy.len(), own.iter().filter(|c| c["private"] == false).count(), "the proxy sees the others");
    let appointments = c.get("/api/v1/appointments", Some(&service)).await;
    assert!(appointments.1["items"].as_array().is_some_and(|a| !a.is_empty()), "meetings sent: {appointments:?}");
    drop(served);
}

async fn finished(c: &Client, id: &str) -> Value {
    let mut last = Value::Null;
    eventually("the run to finish", async || {
        last = c.get(&format!("/api/v1/runs/{id}"), Some(ADMIN)).await.1;
        last["status"] != "running"
    })
    .await;
    last
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a4_x5_x6_c6_runs_plans_held_runs_and_switches_over_the_api() {
    let firm = Firm::start(2, Default::default()).await;
    // Two Outlook contacts and one CRM contact with one address: not paired (SPEC C3).
    for surname in ["Twin", "Twain"] {
        firm.outlook_add(1, &person("Tess", surname, "Acme", "twin@acme.example"));
    }
    firm.crm_add(1, &person("Tess", "Twin", "Acme", "twin@acme.example"));
    let ids: Vec<String> = (0..30)
        .map(|i| {
            firm.outlook_add(1, &person(&format!("P{i}"), &format!("Person{i}"), "Acme", &format!("p{i}@acme.example")))
        })
        .collect();
    // Syncing only on demand after the first cycle.
    let served = serve_every(&firm, 3600).await;
    let c = Client { http: client(), base: served.base.clone() };
    eventually("the first cycle", async || {
        c.get("/api/v1/runs?user=u1", Some(ADMIN)).await.1["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    let post = |path: &'static str, token: &'static str, body: Value| {
        c.call(reqwest::Method::POST, path, Some(token), Some(body))
    };

    // A4: a manual run for one user; the run is reported running, then done.
    firm.outlook_edit(1, &ids[0], Field::JobTitle, Some("Counsel"));
    let started = post("/api/v1/runs", U1, serde_json::json!({"user": "u1"})).await;
    assert_eq!(started.0, StatusCode::ACCEPTED, "{started:?}");
    let run = started.1["runs"][0].clone();
    assert_eq!(run["status"], "running");
    let done = finished(&c, run["id"].as_str().unwrap()).await;
    assert_eq!((done["status"].as_str(), done["counts"]["crm"]["updated"].as_u64()), (Some("ok"), Some(1)), "{done:?}");
    error(&post("/api/v1/runs", U1, serde_json::json!({"user": "u2"})).await, StatusCode::FORBIDDEN, "forbidden");
    error(
        &post("/api/v1/runs", U1, serde_json::json!({"users": "u1"})).await,
        StatusCode::BAD_REQUEST,
        "invalid_request",
    );
    error(&c.get("/api/v1/runs/u1.1", Some(ADMIN)).await, StatusCode::NOT_FOUND, "not_found");
    let all = post("/api/v1/runs", ADMIN, serde_json::json!({})).await;
    assert_eq!(all.1["runs"].as_array().map(Vec::len), Some(2), "every enabled user: {all:?}");
    for r in all.1["runs"].as_array().unwrap() {
        finished(&c, r["id"].as_str().unwrap()).await;
    }

    let dupes = c.get("/api/v1/users/u1/possible-duplicates", Some(U1)).await;
    assert!(dupes.1["items"][0]["reason"].as_str().is_some_and(|r| r.contains("twin@acme.example")), "{dupes:?}");
    assert_eq!(dupes.1["items"][0]["exchange"].as_array().map(Vec::len), Some(2));
    error(&c.get("/api/v1/users/u1/possible-duplicates", Some(U2)).await, StatusCode::FORBIDDEN, "forbidden");
    // Dismissed: kept apart for good, not listed again by later runs.
    let dupe = dupes.1["items"][0]["id"].as_str().unwrap().to_string();
    let path = format!("/api/v1/users/u1/possible-duplicates/{dupe}/dismiss");
    error(&c.call(reqwest::Method::POST, &path, Some(U2), None).await, StatusCode::FORBIDDEN, "forbidden");
    let dismissed = c.call(reqwest::Method::POST, &path, Some(U1), None).await;
    assert_eq!((dismissed.0, &dismissed.1["status"]), (StatusCode::OK, &Value::from("dismissed")), "{dismissed:?}");
    error(&c.call(reqwest::Method::POST, &path, Some(U1), None).await, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(c.get("/api/v1/users/u1/possible-duplicates", Some(U1)).await.1["items"], serde_json::json!([]));

    // C5: the same field edited on both sides is a recorded conflict.
    let crm_id = firm.crm_list(1).iter().find(|c| c.name.last == "Person2").expect("synced").contact_id.clone();
    firm.outlook_edit(1, &ids[2], Field::JobTitle, Some("Outlook title"));
    firm.crm_edit(&crm_id, Field::JobTitle, Some("CRM title"));
    let r = post("/api/v1/runs", U1, serde_json::json!({})).await.1["runs"][0]["id"].as_str().unwrap().to_string();
    finished(&c, &r).await;
    let conflicts = c.get("/api/v1/users/u1/conflicts", Some(ADMIN)).await;
    let conflict = conflicts.1["items"].as_array().and_then(|a| a.last()).expect("a conflict").clone();
    assert_eq!(conflict["field"], "job_title", "{conflicts:?}");
    assert!(conflict["winner"] == "exchange" || conflict["winner"] == "crm");
    assert_eq!(c.get("/api/v1/users/u1/conflicts", Some(U1)).await.0, StatusCode::OK);
    error(&c.get("/api/v1/users/u1/conflicts", Some(SERVICE)).await, StatusCode::FORBIDDEN, "forbidden");

    // X6: a plan lists the writes and makes none.
    firm.outlook_edit(1, &ids[1], Field::JobTitle, Some("Partner emeritus"));
    let plan = post("/api/v1/runs/plan", U1, serde_json::json!({})).await;
    let crm_ops = plan.1["crm"].as_array().expect("crm ops");
    assert!(crm_ops.iter().any(|o| o["op"] == "update" && o["fields"]["job_title"] == "Partner emeritus"), "{plan:?}");
    assert!(firm.crm_list(1).iter().all(|c| c.job_title != "Partner emeritus"), "nothing written");

    // X5: a mass delete in Outlook is held; the administrator sees it and discards it, and
    // the next run restores Outlook.
    let before = firm.outlook(1).len();
    for id in &ids[5..25] {
        firm.outlook_delete(1, id);
    }
    let r = post("/api/v1/runs", ADMIN, serde_json::json!({"user": "u1"})).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    finished(&c, &r).await;
    let held = c.get("/api/v1/held", Some(ADMIN)).await;
    let entry = held.1["items"][0].clone();
    assert_eq!(entry["user"], "u1", "{held:?}");
    assert!(entry["crm"].as_array().is_some_and(|o| o.iter().filter(|o| o["op"] == "delete").count() == 20), "{entry}");
    let held_id = entry["id"].as_str().unwrap().to_string();
    error(&post("/api/v1/held/u1.1/discard", ADMIN, Value::Null).await, StatusCode::NOT_FOUND, "not_found");
    let release_path = format!("/api/v1/held/{held_id}/discard");
    let forbidden = c.call(reqwest::Method::POST, &release_path, Some(U1), None).await;
    error(&forbidden, StatusCode::FORBIDDEN, "forbidden");
    let discarded = c.call(reqwest::Method::POST, &release_path, Some(ADMIN), None).await;
    assert_eq!((discarded.0, &discarded.1["status"]), (StatusCode::OK, &Value::from("discarded")), "{discarded:?}");
    assert_eq!(c.get("/api/v1/held", Some(ADMIN)).await.1["items"], serde_json::json!([]));
    let r = post("/api/v1/runs", ADMIN, serde_json::json!({"user": "u1"})).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    finished(&c, &r).await;
    assert_eq!(firm.outlook(1).len(), before, "Outlook restored from the document");

    // Held again, and this time released: the deletes are carried out on the CRM side.
    let restored: Vec<String> = firm.outlook(1).iter().filter_map(|c| c.id.clone()).take(20).collect();
    for id in &restored {
        firm.outlook_delete(1, id);
    }
    let crm_before = firm.crm_list(1).len();
    let r = post("/api/v1/runs", ADMIN, serde_json::json!({"user": "u1"})).await.1["runs"][0]["id"]
        .as_str()
        .unwrap()
        .to_string();
    finished(&c, &r).await;
    let held = c.get("/api/v1/held", Some(ADMIN)).await.1["items"][0]["id"].as_str().expect("held again").to_string();
    assert_eq!(firm.crm_list(1).len(), crm_before, "nothing written while held");
    let released = c.call(reqwest::Method::POST, &format!("/api/v1/held/{held}/release"), Some(ADMIN), None).await;
    assert_eq!((released.0, &released.1["status"]), (StatusCode::OK, &Value::from("ok")), "{released:?}");
    assert_eq!(released.1["counts"]["crm"]["deleted"], 20, "{released:?}");
    assert_eq!(firm.crm_list(1).len(), crm_before - 20, "the release carried the deletes out");
    assert_eq!(c.get("/api/v1/held", Some(ADMIN)).await.1["items"], serde_json::json!([]));

    // C6: contact sync switched off for a user over the API; runs are refused until on again.
    let off = c
        .call(reqwest::Method::PATCH, "/api/v1/users/u2", Some(ADMIN), Some(serde_json::json!({"contact_sync": false})))
        .await;
    assert_eq!((off.0, &off.1["contact_sync"]), (StatusCode::OK, &Value::from(false)), "{off:?}");
    error(
        &post("/api/v1/runs", ADMIN, serde_json::json!({"user": "u2"})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "validation_failed",
    );
    let users = c.get("/api/v1/users", Some(ADMIN)).await;
    let u2 = users.1["items"].as_array().unwrap().iter().find(|u| u["id"] == "u2").unwrap().clone();
    assert_eq!(u2["contact_sync"], false);
    error(
        &c.call(reqwest::Method::PATCH, "/api/v1/users/u2", Some(U1), Some(serde_json::json!({"contact_sync": true})))
            .await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    let on = c
        .call(reqwest::Method::PATCH, "/api/v1/users/u2", Some(ADMIN), Some(serde_json::json!({"contact_sync": true})))
        .await;
    assert_eq!(on.1["contact_sync"], true);
    error(
        &c.call(reqwest::Method::PATCH, "/api/v1/users/nobody", Some(ADMIN), Some(serde_json::json!({}))).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

/// Start the binary with `args`; its standard output's lines until one starts with `until`.
async fn start_until(args: &[&str], until: &'static str) -> (Child, Vec<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("start synchub");
    let stdout = child.stdout.take().expect("stdout");
    let lines = tokio::task::spawn_blocking(move || {
        let mut out = Vec::new();
        for line in BufReader::new(stdout).lines() {
            let line = line.expect("a line");
            let done = line.starts_with(until);
            out.push(line);
            if done {
                break;
            }
        }
        out
    })
    .await
    .expect("task");
    (child, lines)
}

/// `synchub emulators` stands in for a tenant and a CRM; `synchub serve` configured from what
/// it prints syncs against it, and `synchub status` asks the running service.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emulators_serve_and_status_work_together_as_an_integration_developer_would_use_them() {
    let (emulators, lines) = start_until(&["emulators", "--users", "3", "--contacts", "12"], "(Ctrl-C").await;
    let _emulators = Served { child: emulators, base: String::new(), _dir: tempfile::tempdir().expect("dir") };
    assert!(lines[0].starts_with("Graph emulator on http://127.0.0.1:"), "{lines:?}");
    assert!(lines[1].starts_with("CRM emulator on http://127.0.0.1:"), "{lines:?}");
    let start = lines.iter().position(|l| l == "[graph]").expect("a configuration");
    let snippet = lines[start..lines.len() - 1].join("\n");
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("synchub.toml");
    let config = format!(
        "[store]\npath = {:?}\n\n{snippet}\n[schedule]\ninterval_secs = 3600\n\n[api]\nlisten = \"127.0.0.1:0\"\n[[api.tokens]]\nsha256 = \"{}\"\nrole = \"admin\"\n",
        dir.path().join("store").display().to_string(),
        digest(ADMIN)
    );
    std::fs::write(&file, &config).expect("config");
    let (serve, lines) = start_until(&["serve", "--config", file.to_str().expect("path")], "synchub API").await;
    let _serve = Served { child: serve, base: String::new(), _dir: dir };
    let base =
        lines[0].split_whitespace().find(|w| w.starts_with("http://")).unwrap().trim_end_matches("/api/v1").to_string();
    let c = Client { http: client(), base: base.clone() };
    eventually("the first cycle", async || {
        let users = c.get("/api/v1/users", Some(ADMIN)).await.1;
        users["items"].as_array().is_some_and(|a| a.len() == 3 && a.iter().all(|u| u["last_run"]["status"] == "ok"))
    })
    .await;
    // status goes through the API while serve holds the store.
    let listen = base.trim_start_matches("http://").to_string();
    let with_listen = config.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"{listen}\""));
    let status_file = _serve._dir.path().join("status.toml");
    std::fs::write(&status_file, with_listen).expect("config");
    let out = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["status", "--config"])
        .arg(&status_file)
        .env("SYNCHUB_ADMIN_TOKEN", ADMIN)
        .output()
        .expect("status");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text} {}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("user1@lawfirm.example") && text.contains("\"items\""), "{text}");
    let refused = Command::new(env!("CARGO_BIN_EXE_synchub"))
        .args(["status", "--config"])
        .arg(&status_file)
        .output()
        .expect("status");
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("SYNCHUB_ADMIN_TOKEN"), "a clear error");
    // The documented example is what `default-config` prints.
    let example = Command::new(env!("CARGO_BIN_EXE_synchub")).arg("default-config").output().expect("default-config");
    assert_eq!(String::from_utf8_lossy(&example.stdout), synchub::hub::config::EXAMPLE);
}

/// `synchub sync --plan` writes nothing and lists what a run would write (SPEC X6); a plain
/// `sync` then writes it; while a `serve` holds the store, `sync` says to use its API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_sync_plan_lists_writes_without_writing_and_a_held_store_points_to_the_api() {
    let firm = Firm::start(1, Default::default()).await;
    firm.outlook_add(1, &person("Nina", "Planned", "Acme", "nina@acme.example"));
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("synchub.toml");
    std::fs::write(&file, config(&firm, &dir.path().join("store"), 3600)).expect("config");
    let run = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_synchub")).args(args).arg(&file).output().expect("synchub");
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (ok, out, err) = run(&["sync", "--plan", "--config"]);
    assert!(ok, "{out}{err}");
    assert!(out.contains("planned writes (nothing written)") && out.contains("crm      create"), "{out}");
    assert!(firm.crm_list(1).is_empty(), "a plan writes nothing");
    let (ok, out, err) = run(&["sync", "--config"]);
    assert!(ok, "{out}{err}");
    assert_eq!(firm.crm_list(1).len(), 1, "the run wrote it");
    let (serve, _) =
        start_until(&["serve", "--listen", "127.0.0.1:0", "--config", file.to_str().expect("path")], "synchub API")
            .await;
    let _serve = Served { child: serve, base: String::new(), _dir: dir };
    let (ok, _, err) = run(&["sync", "--config"]);
    assert!(!ok && err.contains("POST /api/v1/runs"), "{err}");
}

/// Each role against each route (API.md "Routes", SPEC P1–P3): 401 without a token, 403 for a
/// known token the route does not allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn p3_the_authorization_matrix_of_every_role_and_route() {
    let firm = Firm::start(3, Default::default()).await;
    firm.crm.state().add_proxy("u1", "u2");
    firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.example"));
    let served = serve_every(&firm, 3600).await;
    let c = Client { http: client(), base: served.base.clone() };
    eventually("the first cycle", async || {
        c.get("/api/v1/runs?user=u1", Some(ADMIN)).await.1["items"].as_array().is_some_and(|a| !a.is_empty())
    })
    .await;
    const OK: u16 = 200;
    const NO: u16 = 403;
    const NONE: u16 = 404;
    let jane =
        c.get("/api/v1/users/u1/contacts", Some(U1)).await.1["items"][0]["id"].as_str().expect("Jane").to_string();
    let contact = format!("/api/v1/users/u1/contacts/{jane}");
    let history = format!("{contact}/history");
    // (method, path, body, [admin, u1 (owner), u2 (proxy of u1), u3, service]); 404 where
    // the principal may ask but there is no such thing.
    let routes: Vec<(&str, &str, Option<Value>, [u16; 5])> = vec![
        ("POST", "/api/v1/runs", Some(serde_json::json!({"user": "u1"})), [202, 202, NO, NO, NO]),
        ("GET", "/api/v1/runs/u1.1", None, [NONE, NONE, NO, NO, NO]),
        ("POST", "/api/v1/held/u1.1/release", None, [NONE, NO, NO, NO, NO]),
        ("POST", "/api/v1/held/u1.1/discard", None, [NONE, NO, NO, NO, NO]),
        ("GET", &contact, None, [NO, OK, OK, NO, OK]),
        ("GET", &history, None, [NO, OK, OK, NO, OK]),
        ("POST", "/api/v1/users/u1/unmatched-attendees/nobody@x.example", None, [NO, NONE, NO, NO, NO]),
        ("GET", "/api/v1/appointments/nope", None, [NONE; 5]),
        ("GET", "/api/v1/appointments/nope/history", None, [NONE; 5]),
        ("GET", "/api/v1/settings", None, [OK, NO, NO, NO, NO]),
        ("GET", "/api/v1/users", None, [OK, NO, NO, NO, NO]),
        ("GET", "/api/v1/runs", None, [OK, OK, OK, OK, NO]),
        ("GET", "/api/v1/runs?user=u1", None, [OK, OK, NO, NO, NO]),
        ("GET", "/api/v1/held", None, [OK, NO, NO, NO, NO]),
        ("POST", "/api/v1/runs/plan", Some(serde_json::json!({"user": "u1"})), [OK, OK, NO, NO, NO]),
        ("PATCH", "/api/v1/users/u1", Some(serde_json::json!({})), [OK, NO, NO, NO, NO]),
        ("PATCH", "/api/v1/settings", Some(serde_json::json!({})), [OK, NO, NO, NO, NO]),
        ("GET", "/api/v1/users/u1/contacts", None, [NO, OK, OK, NO, OK]),
        ("GET", "/api/v1/users/u1/conflicts", None, [OK, OK, NO, NO, NO]),
        ("GET", "/api/v1/users/u1/possible-duplicates", None, [OK, OK, NO, NO, NO]),
        ("POST", "/api/v1/users/u1/possible-duplicates/none/merge", None, [404, 404, NO, NO, NO]),
        ("POST", "/api/v1/users/u1/possible-duplicates/none/dismiss", None, [404, 404, NO, NO, NO]),
        ("GET", "/api/v1/users/u1/calendar/skipped", None, [OK, OK, NO, NO, NO]),
        ("GET", "/api/v1/users/u1/unmatched-attendees", None, [NO, OK, NO, NO, NO]),
        ("GET", "/api/v1/appointments", None, [OK, OK, OK, OK, OK]),
    ];
    let tokens = [ADMIN, U1, U2, U3, SERVICE];
    for (method, path, body, expected) in &routes {
        let m = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        error(&c.call(m.clone(), path, None, body.clone()).await, StatusCode::UNAUTHORIZED, "unauthenticated");
        for (token, want) in tokens.iter().zip(expected) {
            let got = c.call(m.clone(), path, Some(token), body.clone()).await;
            assert_eq!(got.0.as_u16(), *want, "{method} {path} as {token}: {got:?}");
            if *want == NO {
                error(&got, StatusCode::FORBIDDEN, "forbidden");
            }
        }
    }
    for open in ["/healthz", "/metrics", "/api/v1/openapi.json"] {
        assert_eq!(c.get(open, None).await.0, StatusCode::OK, "{open} needs no token");
    }
}
