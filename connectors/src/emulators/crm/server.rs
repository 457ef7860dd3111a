//! The CRM emulator's HTTP face: CRM_API.md's routes over [`CrmState`], bearer-token auth,
//! the contract's body limit, errors as `{"error": {"code", "message"}}`, and faults a
//! test can queue (an error status, 429 with `Retry-After`, latency).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};

use super::state::{AppointmentFilter, CrmError, CrmState, EntryPatch};
use crate::crm::wire::{self, Appointment, Contact, ErrorBody, ErrorDetail, MAX_BODY_BYTES};

/// Bodies up to this size are read and, past CRM_API.md's 1 MiB, refused by the parser
/// with a 400 in the contract's error shape; anything larger is cut off by the server.
const BODY_CUTOFF: usize = 2 * MAX_BODY_BYTES;

/// A fault for the next request.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// Answer this status (e.g. 503) without doing anything.
    Status(u16),
    /// Answer 429 with `Retry-After` in seconds.
    Throttle { retry_after_secs: f64 },
    /// Wait, then serve the request.
    Delay(Duration),
    /// Do the request, then answer 503 as if the answer were lost on the way back.
    LostAnswer,
    /// Drop the connection before doing the request (the answer's body is cut short).
    Drop,
}

/// The emulator: its state, the token it accepts and the queued faults.
#[derive(Clone)]
pub struct CrmEmulator {
    state: Arc<Mutex<CrmState>>,
    faults: Arc<Mutex<VecDeque<Fault>>>,
    token: Arc<String>,
    latency: Arc<Mutex<Duration>>,
    /// List feeds read from the start (no cursor), for tests of what a client reads.
    full_listings: Arc<std::sync::atomic::AtomicUsize>,
}

impl CrmEmulator {
    /// An emulator over `state`, accepting `Authorization: Bearer <token>`.
    pub fn new(state: CrmState, token: &str) -> CrmEmulator {
        CrmEmulator {
            state: Arc::new(Mutex::new(state)),
            faults: Arc::new(Mutex::new(VecDeque::new())),
            token: Arc::new(token.to_string()),
            latency: Arc::new(Mutex::new(Duration::ZERO)),
            full_listings: Arc::default(),
        }
    }

    /// The state, for seeding and for side-channel edits in tests.
    pub fn state(&self) -> MutexGuard<'_, CrmState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Forget every queued fault.
    pub fn clear_faults(&self) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).clear();
    }

    /// Queue faults for the next requests, in order.
    pub fn inject(&self, faults: impl IntoIterator<Item = Fault>) {
        self.faults.lock().unwrap_or_else(|p| p.into_inner()).extend(faults);
    }

    /// How many list feeds were read from the start (no cursor) so far.
    pub fn full_listings(&self) -> usize {
        self.full_listings.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Every request waits this long first.
    pub fn set_latency(&self, latency: Duration) {
        *self.latency.lock().unwrap_or_else(|p| p.into_inner()) = latency;
    }

    /// Serve on `addr` (port 0: any free port) in the background; returns the base URL.
    pub async fn start(&self, addr: &str) -> std::io::Result<String> {
        super::super::serve_in_background(self.router(), addr, "CRM").await
    }

    /// The router; serve it with `axum::serve`.
    pub fn router(&self) -> Router {
        let api = Router::new()
            .route("/api/users", get(users))
            .route("/api/users/{uid}/proxies", get(proxies))
            .route("/api/users/{uid}/list/changes", get(list_changes))
            .route("/api/users/{uid}/list", post(create_in_list))
            .route("/api/users/{uid}/list/{cid}", put(add_to_list).patch(patch_entry).delete(remove_from_list))
            .route("/api/contacts", get(contacts_by_email))
            .route("/api/contacts/{cid}", put(update_contact))
            .route("/api/appointments", post(create_appointment).get(list_appointments))
            .route("/api/appointments/{aid}", put(update_appointment).get(get_appointment))
            .layer(middleware::from_fn_with_state(self.clone(), gate))
            .layer(DefaultBodyLimit::max(BODY_CUTOFF));
        api.with_state(self.clone())
    }
}

fn error(status: u16, code: &str, message: impl Into<String>) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = ErrorBody { error: ErrorDetail { code: code.to_string(), message: message.into() } };
    (status, Json(body)).into_response()
}

impl IntoResponse for CrmError {
    fn into_response(self) -> Response {
        error(self.status, self.code, self.message)
    }
}

/// Auth first, then any queued fault.
async fn gate(State(emu): State<CrmEmulator>, req: Request, next: Next) -> Response {
    let expected = format!("Bearer {}", emu.token);
    let authorized = req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    if !authorized {
        return error(401, "unauthenticated", "a valid bearer token is required");
    }
    let fault = emu.faults.lock().unwrap_or_else(|p| p.into_inner()).pop_front();
    let latency = *emu.latency.lock().unwrap_or_else(|p| p.into_inner());
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Status(status)) => return error(status, "injected", "injected fault"),
        Some(Fault::Throttle { retry_after_secs }) => {
            let mut response = error(429, "throttled", "too many requests");
            if let Ok(v) = HeaderValue::from_str(&format!("{retry_after_secs}")) {
                response.headers_mut().insert("retry-after", v);
            }
            return response;
        }
        Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
        Some(Fault::LostAnswer) => {
            let _done = next.run(req).await;
            return error(503, "unavailable", "the answer was lost");
        }
        Some(Fault::Drop) => return crate::emulators::graph::server::dropped(),
        None => {}
    }
    next.run(req).await
}

fn invalid(message: impl Into<String>) -> CrmError {
    CrmError { status: 400, code: "invalid_request", message: message.into() }
}

fn body<T: serde::de::DeserializeOwned>(what: &str, bytes: &Bytes) -> Result<T, CrmError> {
    wire::parse(what, bytes).map_err(|e| invalid(e.message))
}

fn if_match(headers: &HeaderMap) -> Result<u64, CrmError> {
    let raw = headers.get("if-match").and_then(|v| v.to_str().ok()).ok_or_else(|| invalid("`If-Match` is required"))?;
    raw.trim_matches('"').parse().map_err(|_| invalid(format!("`If-Match` `{raw}` is not a version")))
}

/// Run a handler body written with `?`: its value, or its error in the contract's shape.
fn respond<T: IntoResponse>(f: impl FnOnce() -> Result<T, CrmError>) -> Response {
    match f() {
        Ok(t) => t.into_response(),
        Err(e) => e.into_response(),
    }
}

/// 201 for a new record, 200 for the existing one an idempotent create found.
fn created<T: Serialize>((value, new): (T, bool)) -> Response {
    let status = if new { StatusCode::CREATED } else { StatusCode::OK };
    (status, Json(value)).into_response()
}

async fn users(State(emu): State<CrmEmulator>) -> Response {
    Json(emu.state().users()).into_response()
}

async fn proxies(State(emu): State<CrmEmulator>, Path(uid): Path<String>) -> Response {
    respond(|| emu.state().proxies(&uid).map(Json))
}

#[derive(Deserialize)]
struct ChangesQuery {
    cursor: Option<String>,
    limit: Option<usize>,
}

async fn list_changes(
    State(emu): State<CrmEmulator>,
    Path(uid): Path<String>,
    Query(q): Query<ChangesQuery>,
) -> Response {
    let limit = q.limit.unwrap_or(super::state::MAX_LIMIT);
    if q.cursor.is_none() {
        emu.full_listings.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    respond(|| emu.state().list_changes(&uid, q.cursor.as_deref(), limit).map(Json))
}

async fn create_in_list(State(emu): State<CrmEmulator>, Path(uid): Path<String>, bytes: Bytes) -> Response {
    respond(|| emu.state().create_in_list(&uid, body::<Contact>("contact", &bytes)?).map(created))
}

async fn update_contact(
    State(emu): State<CrmEmulator>,
    Path(cid): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    respond(|| {
        let (version, contact) = (if_match(&headers)?, body::<Contact>("contact", &bytes)?);
        emu.state().update_contact(&cid, version, contact).map(Json)
    })
}

async fn add_to_list(State(emu): State<CrmEmulator>, Path((uid, cid)): Path<(String, String)>) -> Response {
    respond(|| emu.state().add_to_list(&uid, &cid).map(|()| StatusCode::NO_CONTENT))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchBody {
    #[serde(default, deserialize_with = "some")]
    external_ref: Option<Option<String>>,
    notes: Option<String>,
    categories: Option<Vec<String>>,
    private: Option<bool>,
}

/// `null` is "clear", absent is "leave".
fn some<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

async fn patch_entry(
    State(emu): State<CrmEmulator>,
    Path((uid, cid)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    respond(|| {
        let (version, p) = (if_match(&headers)?, body::<PatchBody>("entry patch", &bytes)?);
        let patch =
            EntryPatch { external_ref: p.external_ref, notes: p.notes, categories: p.categories, private: p.private };
        emu.state().patch_entry(&uid, &cid, version, patch).map(Json)
    })
}

async fn remove_from_list(State(emu): State<CrmEmulator>, Path((uid, cid)): Path<(String, String)>) -> Response {
    emu.state().remove_from_list(&uid, &cid);
    StatusCode::NO_CONTENT.into_response()
}

#[derive(Deserialize)]
struct EmailQuery {
    email: String,
}

async fn contacts_by_email(State(emu): State<CrmEmulator>, Query(q): Query<EmailQuery>) -> Response {
    Json(emu.state().contacts_by_email(&q.email)).into_response()
}

async fn create_appointment(State(emu): State<CrmEmulator>, bytes: Bytes) -> Response {
    respond(|| emu.state().create_appointment(body::<Appointment>("appointment", &bytes)?).map(created))
}

async fn update_appointment(
    State(emu): State<CrmEmulator>,
    Path(aid): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Response {
    respond(|| {
        let (version, appt) = (if_match(&headers)?, body::<Appointment>("appointment", &bytes)?);
        emu.state().update_appointment(&aid, version, appt).map(Json)
    })
}

async fn get_appointment(State(emu): State<CrmEmulator>, Path(aid): Path<String>) -> Response {
    respond(|| emu.state().appointment(&aid).map(Json))
}

#[derive(Deserialize)]
struct AppointmentQuery {
    contact_id: Option<String>,
    organizer_user_id: Option<String>,
    attendee_user_id: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

async fn list_appointments(State(emu): State<CrmEmulator>, Query(q): Query<AppointmentQuery>) -> Response {
    let filter = AppointmentFilter {
        contact_id: q.contact_id,
        organizer_user_id: q.organizer_user_id,
        attendee_user_id: q.attendee_user_id,
        from: q.from,
        to: q.to,
    };
    Json(emu.state().appointments(&filter)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const TOKEN: &str = "test-token";

    async fn start() -> (CrmEmulator, String) {
        let emu = CrmEmulator::new(CrmState::new("2026-11-25T10:00:00Z"), TOKEN);
        let url = emu.start("127.0.0.1:0").await.unwrap();
        (emu, url)
    }

    fn client() -> reqwest::Client {
        reqwest::Client::new()
    }

    fn jane(external_ref: &str) -> serde_json::Value {
        json!({"name": {"first": "Jane", "last": "Tarnoff"}, "company": "Acme",
               "emails": [{"kind": "business", "address": "jane@acme.com"}],
               "entry": {"external_ref": external_ref}})
    }

    #[tokio::test]
    async fn every_route_wants_the_bearer_token() {
        let (_, url) = start().await;
        let r = client().get(format!("{url}/api/users")).send().await.unwrap();
        assert_eq!(r.status(), 401);
        let body: ErrorBody = r.json().await.unwrap();
        assert_eq!(body.error.code, "unauthenticated");
        let r = client().get(format!("{url}/api/users")).bearer_auth("wrong").send().await.unwrap();
        assert_eq!(r.status(), 401);
    }

    #[tokio::test]
    async fn contacts_over_http_create_idempotently_list_and_update_conditionally() {
        let (_, url) = start().await;
        let c = client();
        let r =
            c.post(format!("{url}/api/users/u1/list")).bearer_auth(TOKEN).json(&jane("hub-1")).send().await.unwrap();
        assert_eq!(r.status(), 201);
        let created: Contact = r.json().await.unwrap();
        let r =
            c.post(format!("{url}/api/users/u1/list")).bearer_auth(TOKEN).json(&jane("hub-1")).send().await.unwrap();
        assert_eq!(r.status(), 200, "the same external_ref creates nothing");
        assert_eq!(r.json::<Contact>().await.unwrap().contact_id, created.contact_id);

        let page: wire::FeedPage = c
            .get(format!("{url}/api/users/u1/list/changes?limit=10"))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(page.changes.len(), 1);

        let put = format!("{url}/api/contacts/{}", created.contact_id);
        let r = c.put(&put).bearer_auth(TOKEN).header("if-match", "7").json(&jane("x")).send().await.unwrap();
        assert_eq!(r.status(), 412);
        let r = c.put(&put).bearer_auth(TOKEN).header("if-match", "1").json(&jane("x")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.json::<Contact>().await.unwrap().version, 2);

        let patch = format!("{url}/api/users/u1/list/{}", created.contact_id);
        let r = c
            .patch(&patch)
            .bearer_auth(TOKEN)
            .header("if-match", "1")
            .json(&json!({"private": true}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.json::<Contact>().await.unwrap().entry.unwrap().private);
        let r = c.delete(&patch).bearer_auth(TOKEN).send().await.unwrap();
        assert_eq!(r.status(), 204);
    }

    #[tokio::test]
    async fn bad_bodies_are_refused_naming_the_field() {
        let (_, url) = start().await;
        let c = client();
        let post = format!("{url}/api/users/u1/list");
        let r = c.post(&post).bearer_auth(TOKEN).body("{not json").send().await.unwrap();
        assert_eq!(r.status(), 400);
        let wrong = json!({"name": {"first": 5}});
        let r = c.post(&post).bearer_auth(TOKEN).json(&wrong).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.json::<ErrorBody>().await.unwrap().error.message.contains("name.first"));
        let mut long = jane("h");
        long["company"] = json!("x".repeat(5000));
        let r = c.post(&post).bearer_auth(TOKEN).json(&long).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.json::<ErrorBody>().await.unwrap().error.message.contains("`company`"));
        let r = c.post(&post).bearer_auth(TOKEN).body(vec![b' '; MAX_BODY_BYTES + 10]).send().await.unwrap();
        assert_eq!(r.status(), 400);
        assert!(r.json::<ErrorBody>().await.unwrap().error.message.contains("limit"));
        let r = c
            .patch(format!("{url}/api/users/u1/list/C1"))
            .bearer_auth(TOKEN)
            .header("if-match", "1")
            .json(&json!({"colour": "red"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400);
    }

    #[tokio::test]
    async fn queued_faults_throttle_fail_and_delay() {
        let (emu, url) = start().await;
        emu.inject([
            Fault::Throttle { retry_after_secs: 1.5 },
            Fault::Status(503),
            Fault::Delay(Duration::from_millis(50)),
        ]);
        let get = || client().get(format!("{url}/api/users")).bearer_auth(TOKEN).send();
        let r = get().await.unwrap();
        assert_eq!(r.status(), 429);
        assert_eq!(r.headers().get("retry-after").and_then(|v| v.to_str().ok()), Some("1.5"));
        assert_eq!(get().await.unwrap().status(), 503);
        let started = std::time::Instant::now();
        assert_eq!(get().await.unwrap().status(), 200);
        assert!(started.elapsed() >= Duration::from_millis(50));
    }
}
