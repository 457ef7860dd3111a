//! The Graph emulator's HTTP face: the token endpoint, `/v1.0` routes over [`GraphState`]
//! with bearer auth, JSON batching (each inner request goes through the same routes, so
//! faults and throttling apply to it on its own), a per-mailbox concurrency cap that is
//! counted, and faults set over `/_emulator` admin routes or the handle.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Form, Json, Router};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tower::ServiceExt;

use super::state::{expanded_ids, select, stamp_filter, with_extended, DeltaPage, DeltaQuery, GraphError, GraphState};
use crate::graph::wire::{Batch, BatchAnswer, BatchRequest, BatchResponse, Contact, MAX_BATCH};
use crate::http::seg;

/// Graph's request size limit.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

/// A fault for a coming request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Fault {
    /// Answer this status (e.g. 503) without doing anything.
    Status(u16),
    /// Answer 429 with `Retry-After` in (decimal) seconds.
    Throttle { retry_after_secs: f64 },
    /// Wait this many milliseconds, then serve the request.
    DelayMs(u64),
    /// Answer 200 with a body cut off mid-JSON.
    Malformed,
    /// Do the request, then answer 503 as if the answer were lost on the way back.
    LostAnswer,
    /// Drop the connection before doing the request (the answer's body is cut short).
    Drop,
}

#[derive(Clone, Debug, Deserialize)]
struct QueuedFault {
    /// Only requests whose path contains this (e.g. `/contacts/`, `$batch`).
    #[serde(default)]
    path: Option<String>,
    fault: Fault,
}

/// What the emulator counted.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Stats {
    /// Requests served, by mailbox (lower-cased id), inner batch requests included.
    pub requests: HashMap<String, u64>,
    /// The most requests that were ever in flight at once, by mailbox.
    pub max_in_flight: HashMap<String, usize>,
    /// Requests refused by the concurrency cap.
    pub refused: u64,
    /// `$batch` requests served.
    pub batches: u64,
    /// Requests refused for a missing, unknown or expired token.
    pub unauthorized: u64,
}

struct Control {
    faults: VecDeque<QueuedFault>,
    latency: Duration,
    cap: usize,
    in_flight: HashMap<String, usize>,
    stats: Stats,
}

/// The emulator: its state, faults, and the counters.
#[derive(Clone)]
pub struct GraphEmulator {
    state: Arc<Mutex<GraphState>>,
    control: Arc<Mutex<Control>>,
    router: Arc<OnceLock<Router>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl GraphEmulator {
    /// An emulator over `state`, its concurrency cap at Graph's 4 per mailbox.
    pub fn new(state: GraphState) -> GraphEmulator {
        let control = Control {
            faults: VecDeque::new(),
            latency: Duration::ZERO,
            cap: 4,
            in_flight: HashMap::new(),
            stats: Stats::default(),
        };
        GraphEmulator {
            state: Arc::new(Mutex::new(state)),
            control: Arc::new(Mutex::new(control)),
            router: Arc::new(OnceLock::new()),
        }
    }

    /// The state, for seeding and side-channel edits.
    pub fn state(&self) -> MutexGuard<'_, GraphState> {
        lock(&self.state)
    }

    /// Forget every queued fault.
    pub fn clear_faults(&self) {
        lock(&self.control).faults.clear();
    }

    /// Queue faults for the next requests whose path and query contain `path` (any with
    /// `None`), inner requests of a `$batch` included.
    pub fn inject(&self, path: Option<&str>, faults: impl IntoIterator<Item = Fault>) {
        let mut control = lock(&self.control);
        control.faults.extend(faults.into_iter().map(|fault| QueuedFault { path: path.map(str::to_string), fault }));
    }

    /// Every request waits this long (while counted as in flight).
    pub fn set_latency(&self, latency: Duration) {
        lock(&self.control).latency = latency;
    }

    /// Requests beyond `cap` in flight to one mailbox are refused with 429.
    pub fn set_concurrency_cap(&self, cap: usize) {
        lock(&self.control).cap = cap;
    }

    /// How many requests to `mailbox` are in flight now (lower-cased id, as in [`Stats`]).
    pub fn in_flight(&self, mailbox: &str) -> usize {
        lock(&self.control).in_flight.get(mailbox).copied().unwrap_or(0)
    }

    /// What was counted so far.
    pub fn stats(&self) -> Stats {
        lock(&self.control).stats.clone()
    }

    /// Serve on `addr` (port 0: any free port) in the background; returns the base URL
    /// (the authority; Graph's version root is `{url}/v1.0`).
    pub async fn start(&self, addr: &str) -> std::io::Result<String> {
        super::super::serve_in_background(self.router(), addr, "Graph").await
    }

    /// The router; serve it with `axum::serve`.
    pub fn router(&self) -> Router {
        self.router.get_or_init(|| self.build()).clone()
    }

    fn build(&self) -> Router {
        let graph = Router::new()
            .route("/v1.0/users", get(users))
            .route("/v1.0/users/{uid}/contactFolders", get(child_folders))
            .route("/v1.0/users/{uid}/contactFolders/{fid}", get(folder))
            .route("/v1.0/users/{uid}/contactFolders/{fid}/contacts", get(list_in_folder).post(create_in_folder))
            .route("/v1.0/users/{uid}/contactFolders/{fid}/contacts/delta", get(contact_delta))
            .route("/v1.0/users/{uid}/contacts", get(list_default).post(create_default))
            .route("/v1.0/users/{uid}/contacts/{id}", get(get_contact).patch(patch_contact).delete(delete_contact))
            .route("/v1.0/users/{uid}/calendarView/delta", get(calendar_delta))
            .route("/v1.0/$batch", post(batch))
            .layer(middleware::from_fn_with_state(self.clone(), gate));
        let admin = Router::new()
            .route("/_emulator/faults", post(admin_faults))
            .route("/_emulator/latency", put(admin_latency))
            .route("/_emulator/concurrency-cap", put(admin_cap))
            .route("/_emulator/stats", get(admin_stats))
            .route("/_emulator/users/{uid}/expire-delta", post(admin_expire))
            .route("/_emulator/users/{uid}/events", post(admin_put_event));
        Router::new()
            .route("/{tenant}/oauth2/v2.0/token", post(token))
            .merge(graph)
            .merge(admin)
            .layer(DefaultBodyLimit::max(MAX_REQUEST_BYTES))
            .with_state(self.clone())
    }
}

impl IntoResponse for GraphError {
    fn into_response(self) -> Response {
        error(self.status, self.code, &self.message)
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

/// The mailbox a `/v1.0/users/{id}/…` path addresses, lower-cased.
fn mailbox_of(path: &str) -> Option<String> {
    let rest = path.strip_prefix("/v1.0/users/")?;
    let id = rest.split('/').next()?;
    rest.contains('/').then(|| decode(id).to_ascii_lowercase())
}

fn decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

struct InFlight {
    control: Arc<Mutex<Control>>,
    mailbox: String,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some(n) = lock(&self.control).in_flight.get_mut(&self.mailbox) {
            *n = n.saturating_sub(1);
        }
    }
}

/// Auth, then the concurrency cap, then any queued fault and the latency.
async fn gate(State(emu): State<GraphEmulator>, req: Request, next: Next) -> Response {
    let token =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
    if !token.is_some_and(|t| emu.state().token_valid(t)) {
        lock(&emu.control).stats.unauthorized += 1;
        return error(401, "InvalidAuthenticationToken", "Access token is empty, invalid or expired.");
    }
    let path = req.uri().path().to_string();
    let mailbox = mailbox_of(&path);
    let (fault, latency, _guard) = {
        let mut control = lock(&emu.control);
        let guard = match &mailbox {
            Some(m) => {
                let cap = control.cap;
                let n = control.in_flight.entry(m.clone()).or_insert(0);
                if *n >= cap {
                    control.stats.refused += 1;
                    drop(control);
                    let mut response =
                        error(429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit.");
                    response.headers_mut().insert("retry-after", HeaderValue::from_static("1"));
                    return response;
                }
                *n += 1;
                let now = *n;
                let max = control.stats.max_in_flight.entry(m.clone()).or_insert(0);
                *max = (*max).max(now);
                *control.stats.requests.entry(m.clone()).or_insert(0) += 1;
                Some(InFlight { control: emu.control.clone(), mailbox: m.clone() })
            }
            None => None,
        };
        if path.ends_with("/$batch") {
            control.stats.batches += 1;
        }
        let target = req.uri().path_and_query().map_or(path.as_str(), |p| p.as_str());
        let at = control.faults.iter().position(|f| f.path.as_deref().is_none_or(|p| target.contains(p)));
        let fault = at.and_then(|i| control.faults.remove(i)).map(|f| f.fault);
        (fault, control.latency, guard)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match fault {
        Some(Fault::Status(status)) => error(status, "InjectedFault", "injected fault"),
        Some(Fault::Throttle { retry_after_secs }) => {
            let mut response = error(429, "TooManyRequests", "Please retry again later.");
            if let Ok(v) = HeaderValue::from_str(&format!("{retry_after_secs}")) {
                response.headers_mut().insert("retry-after", v);
            }
            response
        }
        Some(Fault::Malformed) => {
            let mut response = Response::new(Body::from(r#"{"value": [{"id": "AAMk"#));
            response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
            response
        }
        Some(Fault::LostAnswer) => {
            let _done = next.run(req).await;
            error(503, "ServiceUnavailable", "the answer was lost")
        }
        Some(Fault::Drop) => dropped(),
        Some(Fault::DelayMs(ms)) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            next.run(req).await
        }
        None => next.run(req).await,
    }
}

/// The version root as the caller reached it, for links.
fn base(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("localhost");
    format!("http://{host}/v1.0")
}

/// `Prefer: odata.maxpagesize=N`, else `$top`, else Graph's default of 10.
fn page_size(headers: &HeaderMap, top: Option<&str>) -> usize {
    let preferred = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix("odata.maxpagesize=").and_then(|n| n.trim().parse::<usize>().ok()));
    preferred.or_else(|| top.and_then(|t| t.parse().ok())).unwrap_or(10).clamp(1, 1000)
}

fn param<'a>(q: &'a HashMap<String, String>, name: &str) -> Option<&'a str> {
    q.get(name).map(String::as_str)
}

fn parse_body(bytes: &Bytes) -> Result<Value, GraphError> {
    serde_json::from_slice(bytes).map_err(|e| GraphError::invalid(format!("the body is not valid JSON: {e}")))
}

/// The page of `items` that the query `q` (its `$skiptoken` and page size) asks for, each
/// written by `to_json`; the next link carries the rest of the query, as Graph's does.
fn paged<T>(
    base: String,
    path: &str,
    q: &HashMap<String, String>,
    headers: &HeaderMap,
    items: &[T],
    to_json: impl Fn(&T) -> Value,
) -> Json<Value> {
    let offset = param(q, "$skiptoken").and_then(|s| s.parse::<usize>().ok()).unwrap_or(0);
    let end = (offset.saturating_add(page_size(headers, param(q, "$top")))).min(items.len());
    let page: Vec<Value> = items.get(offset.min(end)..end).unwrap_or_default().iter().map(to_json).collect();
    let mut body = json!({ "value": page });
    if end < items.len() {
        let mut query: Vec<(&String, &String)> = q.iter().filter(|(k, _)| k.as_str() != "$skiptoken").collect();
        query.sort();
        let kept: String = query.iter().map(|(k, v)| format!("{}={}&", seg(k), seg(v))).collect();
        body["@odata.nextLink"] = json!(format!("{base}{path}?{kept}$skiptoken={end}"));
    }
    Json(body)
}

async fn token(
    State(emu): State<GraphEmulator>,
    Path(tenant): Path<String>,
    Form(form): Form<HashMap<String, String>>,
) -> Response {
    let mut state = emu.state();
    let field = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if !tenant.eq_ignore_ascii_case(&state.tenant) {
        return (StatusCode::BAD_REQUEST, Json(json!({"error": "invalid_request", "error_description": format!("AADSTS90002: Tenant '{tenant}' not found.")}))).into_response();
    }
    if field("grant_type") != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "unsupported_grant_type", "error_description": "only client_credentials"})),
        )
            .into_response();
    }
    if !field("scope").ends_with("/.default") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({"error": "invalid_scope", "error_description": "the scope must end in /.default"})),
        )
            .into_response();
    }
    if field("client_id") != state.client_id || field("client_secret") != state.client_secret {
        return (StatusCode::UNAUTHORIZED, Json(json!({"error": "invalid_client", "error_description": "AADSTS7000215: Invalid client secret provided."}))).into_response();
    }
    let (token, life) = state.issue_token();
    Json(json!({"token_type": "Bearer", "expires_in": life, "ext_expires_in": life, "access_token": token}))
        .into_response()
}

async fn users(
    State(emu): State<GraphEmulator>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let users = emu.state().users();
    paged(base(&headers), "/users", &q, &headers, &users, |u| serde_json::to_value(u).unwrap_or(Value::Null))
        .into_response()
}

async fn child_folders(State(emu): State<GraphEmulator>, Path(uid): Path<String>) -> Result<Json<Value>, GraphError> {
    Ok(Json(json!({"value": emu.state().child_folders(&uid)?})))
}

async fn folder(
    State(emu): State<GraphEmulator>,
    Path((uid, fid)): Path<(String, String)>,
) -> Result<Json<Value>, GraphError> {
    Ok(Json(emu.state().folder(&uid, &fid)?))
}

fn list(
    emu: &GraphEmulator,
    uid: &str,
    fid: &str,
    headers: &HeaderMap,
    q: &HashMap<String, String>,
) -> Result<Response, GraphError> {
    let expand = param(q, "$expand")
        .map(|e| expanded_ids(e).ok_or_else(|| GraphError::query(format!("unsupported $expand `{e}`"))))
        .transpose()?;
    let stamp = param(q, "$filter")
        .map(|f| stamp_filter(f).ok_or_else(|| GraphError::query(format!("unsupported $filter `{f}`"))))
        .transpose()?;
    // The page's contacts only are cloned, under the lock.
    let state = emu.state();
    let items: Vec<&Contact> = state
        .contacts_in(uid, Some(fid))?
        .filter(|c| stamp.as_ref().is_none_or(|(id, value)| c.extended(id) == Some(value.as_str())))
        .collect();
    let path = format!("/users/{uid}/contactFolders/{fid}/contacts");
    let json = |c: &&Contact| {
        let value = serde_json::to_value(with_extended((*c).clone(), expand.as_deref())).unwrap_or(Value::Null);
        select(value, param(q, "$select"))
    };
    Ok(paged(base(headers), &path, q, headers, &items, json).into_response())
}

async fn list_in_folder(
    State(emu): State<GraphEmulator>,
    Path((uid, fid)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, GraphError> {
    list(&emu, &uid, &fid, &headers, &q)
}

async fn list_default(
    State(emu): State<GraphEmulator>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Response, GraphError> {
    list(&emu, &uid, "contacts", &headers, &q)
}

fn created(emu: &GraphEmulator, uid: &str, fid: &str, bytes: &Bytes) -> Result<Response, GraphError> {
    let contact = emu.state().create_contact(uid, fid, &parse_body(bytes)?)?;
    Ok((StatusCode::CREATED, Json(with_extended(contact, None))).into_response())
}

async fn create_in_folder(
    State(emu): State<GraphEmulator>,
    Path((uid, fid)): Path<(String, String)>,
    bytes: Bytes,
) -> Result<Response, GraphError> {
    created(&emu, &uid, &fid, &bytes)
}

async fn create_default(
    State(emu): State<GraphEmulator>,
    Path(uid): Path<String>,
    bytes: Bytes,
) -> Result<Response, GraphError> {
    created(&emu, &uid, "contacts", &bytes)
}

async fn get_contact(
    State(emu): State<GraphEmulator>,
    Path((uid, id)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, GraphError> {
    let expand = param(&q, "$expand")
        .map(|e| expanded_ids(e).ok_or_else(|| GraphError::query(format!("unsupported $expand `{e}`"))))
        .transpose()?;
    let contact = with_extended(emu.state().contact(&uid, &id)?, expand.as_deref());
    Ok(Json(select(serde_json::to_value(contact).unwrap_or(Value::Null), param(&q, "$select"))))
}

async fn patch_contact(
    State(emu): State<GraphEmulator>,
    Path((uid, id)): Path<(String, String)>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Contact>, GraphError> {
    let if_match = headers.get("if-match").and_then(|v| v.to_str().ok());
    let contact = emu.state().update_contact(&uid, &id, &parse_body(&bytes)?, if_match)?;
    Ok(Json(with_extended(contact, None)))
}

async fn delete_contact(
    State(emu): State<GraphEmulator>,
    Path((uid, id)): Path<(String, String)>,
) -> Result<StatusCode, GraphError> {
    emu.state().delete_contact(&uid, &id)?;
    Ok(StatusCode::NO_CONTENT)
}

fn delta_query(headers: &HeaderMap, q: &HashMap<String, String>) -> Result<DeltaQuery, GraphError> {
    let time = |name: &str| -> Result<Option<chrono::DateTime<chrono::Utc>>, GraphError> {
        param(q, name)
            .map(|t| {
                chrono::DateTime::parse_from_rfc3339(t)
                    .map(|t| t.with_timezone(&chrono::Utc))
                    .or_else(|_| chrono::NaiveDateTime::parse_from_str(t, "%Y-%m-%dT%H:%M:%S%.f").map(|t| t.and_utc()))
                    .map_err(|_| GraphError::query(format!("{name} `{t}` is not a date and time")))
            })
            .transpose()
    };
    let window = match (time("startDateTime")?, time("endDateTime")?) {
        (Some(s), Some(e)) => Some((s, e)),
        _ => None,
    };
    Ok(DeltaQuery {
        skip_token: param(q, "$skiptoken").map(str::to_string),
        delta_token: param(q, "$deltatoken").map(str::to_string),
        page_size: page_size(headers, None),
        window,
    })
}

fn delta_answer(base: String, path: &str, page: DeltaPage) -> Json<Value> {
    // The page's items are moved in (`json!` would copy them, a third of a listing's cost).
    let mut body = serde_json::Map::new();
    body.insert("@odata.context".into(), Value::String(format!("{base}/$metadata#Collection")));
    body.insert("value".into(), Value::Array(page.value));
    match page.next {
        Ok(skip) => body.insert("@odata.nextLink".into(), Value::String(format!("{base}{path}?$skiptoken={skip}"))),
        Err(delta) => {
            body.insert("@odata.deltaLink".into(), Value::String(format!("{base}{path}?$deltatoken={delta}")))
        }
    };
    Json(Value::Object(body))
}

async fn contact_delta(
    State(emu): State<GraphEmulator>,
    Path((uid, fid)): Path<(String, String)>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, GraphError> {
    let page = emu.state().contact_delta(&uid, &fid, &delta_query(&headers, &q)?)?;
    Ok(delta_answer(base(&headers), &format!("/users/{uid}/contactFolders/{fid}/contacts/delta"), page))
}

async fn calendar_delta(
    State(emu): State<GraphEmulator>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, GraphError> {
    let utc = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("outlook.timezone=\"UTC\""));
    if !utc {
        return Err(GraphError::query(
            "this emulator serves events in UTC only: send Prefer: outlook.timezone=\"UTC\"",
        ));
    }
    let page = emu.state().calendar_delta(&uid, &delta_query(&headers, &q)?)?;
    Ok(delta_answer(base(&headers), &format!("/users/{uid}/calendarView/delta"), page))
}

/// `POST /$batch`: each inner request through the same routes (and gate), so faults and
/// the mailbox concurrency count apply to each. As Graph does, requests run in parallel
/// except along `dependsOn` chains; a request whose dependency failed is not run (424).
async fn batch(
    State(emu): State<GraphEmulator>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<BatchAnswer>, GraphError> {
    let batch: Batch = serde_json::from_slice(&bytes)
        .map_err(|e| GraphError::invalid(format!("the batch body does not parse: {e}")))?;
    if batch.requests.len() > MAX_BATCH {
        return Err(GraphError::invalid(format!("Maximum number of requests in a batch is {MAX_BATCH}.")));
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(dup) = batch.requests.iter().find(|r| !seen.insert(r.id.as_str())) {
        return Err(GraphError::invalid(format!("Request id '{}' is used more than once.", dup.id)));
    }
    // Chains: a request depends on at most one earlier request, the tail of its chain.
    let mut chains: Vec<Vec<BatchRequest>> = Vec::new();
    for inner in batch.requests {
        match inner.depends_on.as_slice() {
            [] => chains.push(vec![inner]),
            [dep] => {
                let Some(chain) = chains.iter_mut().find(|c| c.last().is_some_and(|r| r.id == *dep)) else {
                    return Err(GraphError::invalid(format!(
                        "request '{}' depends on '{dep}', which is not the end of a chain before it",
                        inner.id
                    )));
                };
                chain.push(inner);
            }
            _ => {
                return Err(GraphError::invalid(format!(
                    "request '{}': this emulator takes one dependency per request",
                    inner.id
                )))
            }
        }
    }
    // One router for the batch's requests (building it per request cost more than serving).
    let router = emu.router();
    let mut lanes = tokio::task::JoinSet::new();
    for chain in chains {
        let (router, headers) = (router.clone(), headers.clone());
        lanes.spawn(async move {
            let mut answers = Vec::with_capacity(chain.len());
            let mut failed = false;
            for inner in chain {
                let answer = if failed {
                    let body =
                        json!({"error": {"code": "FailedDependency", "message": "a request it depends on failed"}});
                    BatchResponse { id: inner.id, status: 424, headers: Default::default(), body: raw(&body) }
                } else {
                    run_inner(&router, &headers, inner).await
                };
                failed |= answer.status >= 400;
                answers.push(answer);
            }
            answers
        });
    }
    let mut responses = Vec::new();
    while let Some(done) = lanes.join_next().await {
        responses.extend(done.map_err(|e| GraphError::invalid(format!("batch lane: {e}")))?);
    }
    Ok(Json(BatchAnswer { responses }))
}

async fn run_inner(router: &Router, headers: &HeaderMap, inner: BatchRequest) -> BatchResponse {
    let bad = |id: String, message: String| BatchResponse {
        id,
        status: 400,
        headers: Default::default(),
        body: raw(&json!({"error": {"code": "BadRequest", "message": message}})),
    };
    if !inner.url.starts_with('/') {
        return bad(inner.id, "relative urls only".into());
    }
    let mut builder = axum::http::Request::builder().method(inner.method.as_str()).uri(format!("/v1.0{}", inner.url));
    for name in ["authorization", "host"] {
        if let Some(v) = headers.get(name) {
            builder = builder.header(name, v);
        }
    }
    for (k, v) in &inner.headers {
        if let Some(v) = v.as_str() {
            builder = builder.header(k.as_str(), v);
        }
    }
    let body = inner.body.map(|b| Body::from(String::from(Box::<str>::from(b)))).unwrap_or_else(Body::empty);
    let request = match builder.body(body) {
        Ok(r) => r,
        Err(e) => return bad(inner.id, e.to_string()),
    };
    let response = match router.clone().oneshot(request).await {
        Ok(r) => r,
        Err(e) => return bad(inner.id, e.to_string()),
    };
    let status = response.status().as_u16();
    let mut out_headers = serde_json::Map::new();
    for (name, value) in response.headers() {
        if let Ok(v) = value.to_str() {
            out_headers.insert(name.as_str().to_string(), json!(v));
        }
    }
    let body = axum::body::to_bytes(response.into_body(), MAX_REQUEST_BYTES * 8).await.unwrap_or_default();
    // The answer's JSON goes into the batch's answer as it is; what is not JSON, as a string.
    let body = if body.is_empty() {
        None
    } else {
        match String::from_utf8(body.to_vec()).map(RawValue::from_string) {
            Ok(Ok(json)) => Some(json),
            _ => raw(&json!(String::from_utf8_lossy(&body))),
        }
    };
    BatchResponse { id: inner.id, status, headers: out_headers, body }
}

/// `value` as JSON text for a batch answer.
fn raw(value: &Value) -> Option<Box<RawValue>> {
    serde_json::value::to_raw_value(value).ok()
}

async fn admin_faults(State(emu): State<GraphEmulator>, Json(faults): Json<Vec<QueuedFault>>) -> StatusCode {
    lock(&emu.control).faults.extend(faults);
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Millis {
    ms: u64,
}

/// Put an event in a user's calendar (Graph's API has no write the hub uses; the
/// benchmarks and tests add meetings to a running emulator this way).
async fn admin_put_event(
    State(emu): State<GraphEmulator>,
    Path(uid): Path<String>,
    Json(event): Json<crate::graph::wire::Event>,
) -> Result<(StatusCode, Json<crate::graph::wire::Event>), GraphError> {
    let made = emu.state().put_event(&uid, event)?;
    Ok((StatusCode::CREATED, Json(made)))
}

async fn admin_latency(State(emu): State<GraphEmulator>, Json(m): Json<Millis>) -> StatusCode {
    emu.set_latency(Duration::from_millis(m.ms));
    StatusCode::NO_CONTENT
}

#[derive(Deserialize)]
struct Cap {
    cap: usize,
}

async fn admin_cap(State(emu): State<GraphEmulator>, Json(c): Json<Cap>) -> StatusCode {
    emu.set_concurrency_cap(c.cap);
    StatusCode::NO_CONTENT
}

async fn admin_stats(State(emu): State<GraphEmulator>) -> Json<Stats> {
    Json(emu.stats())
}

async fn admin_expire(State(emu): State<GraphEmulator>, Path(uid): Path<String>) -> Result<StatusCode, GraphError> {
    emu.state().expire_delta_tokens(&uid)?;
    Ok(StatusCode::NO_CONTENT)
}

/// A response whose body fails at once: the server drops the connection mid-answer, as a
/// dropped connection looks to a client (before the request was done).
pub(crate) fn dropped() -> Response {
    let mut response = Response::new(Body::new(FailingBody));
    response.headers_mut().insert("content-type", HeaderValue::from_static("application/json"));
    response
}

struct FailingBody;

impl http_body::Body for FailingBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(Some(Err(std::io::Error::other("connection dropped (injected)"))))
    }
}
