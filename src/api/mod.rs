//! The hub's HTTP API v1 (shared/API.md): bearer tokens stored as SHA-256 digests, roles,
//! the error shape, paging, and the routes, with the OpenAPI document generated from the
//! handlers' annotations (utoipa).
//!
//! Handlers never block the runtime: the hub's calls go to blocking threads.

mod shapes;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use utoipa::OpenApi;

use crate::calendar::{CalendarError, Search};
use crate::hub::{Hub, HubError, UserPair};
use crate::merge::join::JoinError;
pub use shapes::*;

/// Who a token speaks for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    User,
    Service,
}

/// A token as the configuration holds it: its SHA-256 (hex) and its principal.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub sha256: String,
    pub role: Role,
    /// The user a `user` token acts for.
    #[serde(default)]
    pub user: Option<String>,
}

/// The principal of a request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Principal {
    Admin,
    User(String),
    Service,
}

/// An API error: status, code and message, as `{"error": {"code", "message"}}`.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError { status, code, message: message.into() }
    }
    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }
    fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }
    fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", message)
    }
    fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, code = self.code, message = %self.message, "API error");
        } else {
            tracing::info!(status = %self.status, code = self.code, message = %self.message, "API request refused");
        }
        let body = ErrorBody { error: ErrorDetail { code: self.code.to_string(), message: self.message } };
        (self.status, Json(body)).into_response()
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> ApiError {
        match e {
            HubError::Calendar(c) => c.into(),
            HubError::Connector(c) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", c.to_string()),
            e @ HubError::Disabled(_) => {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", e.to_string())
            }
            e @ HubError::Held(..) => ApiError::new(StatusCode::CONFLICT, "run_held", e.to_string()),
            e @ (HubError::NotHeld(_) | HubError::NotFound(_)) => ApiError::not_found(e.to_string()),
            HubError::Invalid(m) => ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", m),
            HubError::Join(j) => match *j {
                JoinError::Pending(_) => ApiError::new(StatusCode::CONFLICT, "write_pending", j.to_string()),
                JoinError::NotLinked { .. } | JoinError::AlreadyOne(..) => {
                    ApiError::new(StatusCode::CONFLICT, "duplicate_changed", j.to_string())
                }
                JoinError::Merge(_) => ApiError::internal(j.to_string()),
            },
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<CalendarError> for ApiError {
    fn from(e: CalendarError) -> ApiError {
        match e {
            CalendarError::Irreversible => {
                ApiError::new(StatusCode::CONFLICT, "calendar_sync_irreversible", e.to_string())
            }
            CalendarError::NotFound(_) => ApiError::not_found(e.to_string()),
            CalendarError::NotUnmatched { .. } => ApiError::not_found(e.to_string()),
            CalendarError::Connector(c) => ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", c.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

type ApiResult<T> = Result<T, ApiError>;

/// The default and largest page (API.md "Lists").
const DEFAULT_LIMIT: usize = 500;
const MAX_LIMIT: usize = 5_000;
/// How long a user's proxies are trusted before they are asked of the CRM again.
const PROXY_TTL: Duration = Duration::from_secs(60);

/// The API's state.
pub struct Api {
    hub: Arc<Hub>,
    tokens: HashMap<String, Principal>,
    proxies: Mutex<HashMap<String, (Instant, Vec<String>)>>,
}

/// The SHA-256 of a token, lower-case hex (how the configuration stores tokens).
pub fn token_digest(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

impl Api {
    /// The API over `hub` with these tokens; a token that is not a SHA-256 hex digest, or a
    /// `user` token without its user, is an error naming it.
    pub fn new(hub: Arc<Hub>, tokens: &[TokenConfig]) -> Result<Api, String> {
        let mut map = HashMap::new();
        for (i, t) in tokens.iter().enumerate() {
            let digest = t.sha256.trim().to_lowercase();
            if digest.len() != 64 || !digest.chars().all(|c| c.is_ascii_hexdigit()) {
                return Err(format!("api.tokens[{i}].sha256 is not a SHA-256 hex digest (64 hex characters)"));
            }
            let principal = match (&t.role, &t.user) {
                (Role::Admin, None) => Principal::Admin,
                (Role::Service, None) => Principal::Service,
                (Role::User, Some(u)) if !u.trim().is_empty() => Principal::User(u.trim().to_string()),
                (Role::User, _) => return Err(format!("api.tokens[{i}]: a `user` token needs `user`")),
                (_, Some(_)) => return Err(format!("api.tokens[{i}]: only a `user` token names a user")),
            };
            map.insert(digest, principal);
        }
        Ok(Api { hub, tokens: map, proxies: Mutex::new(HashMap::new()) })
    }

    fn principal(&self, headers: &HeaderMap) -> ApiResult<Principal> {
        let unauthenticated = |m: &str| ApiError::new(StatusCode::UNAUTHORIZED, "unauthenticated", m);
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| unauthenticated("no Authorization header: send `Authorization: Bearer <token>`"))?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauthenticated("the Authorization header is not `Bearer <token>`"))?;
        self.tokens.get(&token_digest(token)).cloned().ok_or_else(|| unauthenticated("unknown token"))
    }

    fn admin(&self, headers: &HeaderMap) -> ApiResult<()> {
        match self.principal(headers)? {
            Principal::Admin => Ok(()),
            _ => Err(ApiError::forbidden("administrators only")),
        }
    }

    /// The users `user` is a proxy of (SPEC P2), from the CRM, cached for a minute.
    async fn proxied_by(&self, owner: &str) -> ApiResult<Vec<String>> {
        if let Some((at, list)) = lock(&self.proxies).get(owner) {
            if at.elapsed() < PROXY_TTL {
                return Ok(list.clone());
            }
        }
        let list: Vec<String> = self
            .hub
            .crm()
            .proxies(owner)
            .await
            .map_err(|e| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("asking the CRM for proxies: {e}"),
                )
            })?
            .into_iter()
            .map(|p| p.user_id)
            .collect();
        lock(&self.proxies).insert(owner.to_string(), (Instant::now(), list.clone()));
        Ok(list)
    }

    /// What the principal may read of `owner`'s contacts: everything (the owner), the
    /// non-Private ones (a proxy, a service), nothing (an administrator: SPEC P3).
    async fn contact_scope(&self, headers: &HeaderMap, owner: &str) -> ApiResult<Scope> {
        match self.principal(headers)? {
            Principal::User(u) if u == owner => Ok(Scope::All),
            Principal::User(u) => {
                if self.proxied_by(owner).await?.contains(&u) {
                    Ok(Scope::NotPrivate)
                } else {
                    Err(ApiError::forbidden(format!("{u} may not read {owner}'s contacts")))
                }
            }
            Principal::Service => Ok(Scope::NotPrivate),
            Principal::Admin => Err(ApiError::forbidden("administrators do not read users' contacts (SPEC P3)")),
        }
    }

    /// The owner or an administrator.
    fn owner_or_admin(&self, headers: &HeaderMap, owner: &str) -> ApiResult<()> {
        match self.principal(headers)? {
            Principal::Admin => Ok(()),
            Principal::User(u) if u == owner => Ok(()),
            _ => Err(ApiError::forbidden(format!("only {owner} or an administrator"))),
        }
    }

    /// The owner only.
    fn owner(&self, headers: &HeaderMap, owner: &str) -> ApiResult<()> {
        match self.principal(headers)? {
            Principal::User(u) if u == owner => Ok(()),
            _ => Err(ApiError::forbidden(format!("only {owner}"))),
        }
    }

    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(Arc<Hub>) -> Result<T, ApiError> + Send + 'static,
    ) -> ApiResult<T> {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || f(hub))
            .await
            .map_err(|e| ApiError::internal(format!("the request's work stopped: {e}")))?
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Scope {
    All,
    NotPrivate,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// `?limit=&after=`.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct Paging {
    /// Items per page: 1 to 5,000 (default 500).
    pub limit: Option<usize>,
    /// The `next` of the previous page.
    pub after: Option<String>,
}

impl Paging {
    /// One page of `items` (already in their stable order).
    fn page<T>(&self, items: Vec<T>) -> ApiResult<Page<T>> {
        let limit = self.limit.unwrap_or(DEFAULT_LIMIT);
        if !(1..=MAX_LIMIT).contains(&limit) {
            return Err(ApiError::invalid(format!("limit must be 1 to {MAX_LIMIT}, not {limit}")));
        }
        let start = match &self.after {
            None => 0,
            Some(c) => decode_cursor(c)
                .ok_or_else(|| ApiError::invalid(format!("`after` is not a cursor of this list: {c}")))?,
        };
        let total = items.len();
        let items: Vec<T> = items.into_iter().skip(start).take(limit).collect();
        let end = start + items.len();
        Ok(Page { items, next: (end < total).then(|| encode_cursor(end)) })
    }
}

fn encode_cursor(offset: usize) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("o:{offset}"))
}

fn decode_cursor(c: &str) -> Option<usize> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(c).ok()?;
    String::from_utf8(bytes).ok()?.strip_prefix("o:")?.parse().ok()
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(q)| q).map_err(|e| ApiError::invalid(e.body_text()))
}

/// The router with every route of this API.
pub fn router(api: Arc<Api>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/settings", get(get_settings).patch(patch_settings))
        .route("/api/v1/users", get(users))
        .route("/api/v1/runs", get(runs).post(start_runs))
        .route("/api/v1/runs/plan", post(plan))
        .route("/api/v1/runs/{run}", get(run))
        .route("/api/v1/held", get(held))
        .route("/api/v1/held/{run}/release", post(release))
        .route("/api/v1/held/{run}/discard", post(discard))
        .route("/api/v1/users/{user}", axum::routing::patch(patch_user))
        .route("/api/v1/users/{user}/contacts", get(contacts))
        .route("/api/v1/users/{user}/contacts/{contact}", get(contact))
        .route("/api/v1/users/{user}/contacts/{contact}/history", get(contact_history))
        .route("/api/v1/users/{user}/calendar/skipped", get(skipped))
        .route("/api/v1/users/{user}/unmatched-attendees", get(unmatched))
        .route("/api/v1/users/{user}/unmatched-attendees/{email}", post(add_attendee))
        .route("/api/v1/users/{user}/conflicts", get(conflicts))
        .route("/api/v1/users/{user}/possible-duplicates", get(possible_duplicates))
        .route("/api/v1/users/{user}/possible-duplicates/{id}/merge", post(merge_duplicate))
        .route("/api/v1/users/{user}/possible-duplicates/{id}/dismiss", post(dismiss_duplicate))
        .route("/api/v1/appointments", get(appointments))
        .route("/api/v1/appointments/{appt}", get(appointment))
        .route("/api/v1/appointments/{appt}/history", get(appointment_history))
        .fallback(|| async { ApiError::not_found("no such route") })
        .with_state(api)
}

/// The OpenAPI document of this API.
#[derive(OpenApi)]
#[openapi(
    info(title = "synchub HTTP API", version = "1"),
    paths(
        healthz,
        metrics,
        openapi,
        get_settings,
        patch_settings,
        users,
        patch_user,
        runs,
        start_runs,
        run,
        plan,
        held,
        release,
        discard,
        contacts,
        contact,
        contact_history,
        skipped,
        unmatched,
        add_attendee,
        conflicts,
        possible_duplicates,
        merge_duplicate,
        dismiss_duplicate,
        appointments,
        appointment,
        appointment_history
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        Health,
        Settings,
        SettingsPatch,
        UserView,
        RunView,
        RunCounts,
        SideCounts,
        AppointmentCountsView,
        HeldView,
        ContactShape,
        Links,
        FieldChangeView,
        SkippedView,
        UnmatchedView,
        AppointmentShape,
        AttendeeShape,
        HistoryView,
        OpView,
        RunRequest,
        RunsStarted,
        PlanView,
        UserPatch,
        Discarded,
        ConflictView,
        DuplicateView,
        MergeRequest,
        Merged
    ))
)]
pub struct ApiDoc;

#[utoipa::path(get, path = "/healthz", responses((status = 200, body = Health)))]
async fn healthz(State(api): State<Arc<Api>>) -> ApiResult<Json<Health>> {
    api.blocking(|hub| {
        hub.store().setting(None, "health").map_err(|e| {
            ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", format!("the store does not answer: {e}"))
        })?;
        Ok(Json(Health { status: "ok".into() }))
    })
    .await
}

#[utoipa::path(get, path = "/metrics", responses((status = 200, description = "Prometheus text", body = String)))]
async fn metrics(State(api): State<Arc<Api>>) -> Response {
    let text = api.hub.metrics().render();
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], text).into_response()
}

#[utoipa::path(get, path = "/api/v1/openapi.json", responses((status = 200, description = "This document")))]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

fn settings_of(hub: &Hub) -> ApiResult<Settings> {
    let s = hub.settings();
    let name = |v: serde_json::Result<serde_json::Value>| {
        v.ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
    };
    Ok(Settings {
        calendar_sync: hub.calendar().enabled()?,
        sync_notes: s.sync_notes,
        initial_match: name(serde_json::to_value(s.initial_match)),
        reuse_policy: name(serde_json::to_value(s.reuse_policy)),
        calendar_category: hub.calendar().category(),
        interval_seconds: hub.interval_secs(),
    })
}

fn unprocessable(message: String) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "validation_failed", message)
}

#[utoipa::path(get, path = "/api/v1/settings", responses((status = 200, body = Settings), (status = 403, body = ErrorBody)))]
async fn get_settings(State(api): State<Arc<Api>>, headers: HeaderMap) -> ApiResult<Json<Settings>> {
    api.admin(&headers)?;
    api.blocking(move |hub| settings_of(&hub).map(Json)).await
}

#[utoipa::path(
    patch, path = "/api/v1/settings", request_body = SettingsPatch,
    responses((status = 200, body = Settings), (status = 409, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn patch_settings(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<SettingsPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Settings>> {
    api.admin(&headers)?;
    let patch = json_body(body)?;
    let update = crate::hub::SettingsUpdate {
        sync_notes: patch.sync_notes,
        initial_match: patch
            .initial_match
            .as_deref()
            .map(|v| serde_json::from_value(serde_json::Value::from(v)))
            .transpose()
            .map_err(|_| unprocessable("initial_match must be \"identity\" or \"none\"".into()))?,
        reuse_policy: patch
            .reuse_policy
            .as_deref()
            .map(|v| serde_json::from_value(serde_json::Value::from(v)))
            .transpose()
            .map_err(|_| unprocessable("reuse_policy must be \"split\" or \"follow\"".into()))?,
    };
    if let Some(c) = &patch.calendar_category {
        if c.trim().is_empty() || c.len() > 255 {
            return Err(unprocessable("calendar_category must be 1 to 255 characters".into()));
        }
    }
    if let Some(i) = patch.interval_seconds {
        if !(10..=86_400).contains(&i) {
            return Err(unprocessable(format!("interval_seconds must be 10 to 86400, not {i}")));
        }
    }
    api.blocking(move |hub| {
        // The irreversible switch first: a refused request changes nothing.
        if let Some(on) = patch.calendar_sync {
            hub.set_calendar_sync(on)?;
        }
        if update != crate::hub::SettingsUpdate::default() {
            hub.update_settings(&update)?;
        }
        if let Some(c) = &patch.calendar_category {
            hub.calendar().set_category(c)?;
        }
        if let Some(i) = patch.interval_seconds {
            hub.set_interval(i)?;
        }
        settings_of(&hub).map(Json)
    })
    .await
}

#[utoipa::path(get, path = "/api/v1/users", params(Paging), responses((status = 200, body = Page<UserView>)))]
async fn users(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<UserView>>> {
    api.admin(&headers)?;
    let paging = query(paging)?;
    let list = api
        .blocking(|hub| {
            let matched = hub.match_users()?;
            let mut out = Vec::new();
            for p in &matched.pairs {
                out.push(UserView::of(&hub, p)?);
            }
            for m in &matched.unmatched_mailboxes {
                out.push(UserView::unmatched(m));
            }
            for u in &matched.unmatched_crm_users {
                out.push(UserView::unmatched(u));
            }
            Ok(out)
        })
        .await?;
    Ok(Json(paging.page(list)?))
}

/// `?user=` of the run list.
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct RunQuery {
    /// Only this user's runs.
    pub user: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/runs", params(RunQuery), responses((status = 200, body = Page<RunView>)))]
async fn runs(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    q: Result<Query<RunQuery>, QueryRejection>,
) -> ApiResult<Json<Page<RunView>>> {
    let q = query(q)?;
    let principal = api.principal(&headers)?;
    let users: Vec<String> = match (&principal, &q.user) {
        (Principal::Admin, Some(u)) => vec![u.clone()],
        (Principal::Admin, None) => {
            api.blocking(|hub| Ok(hub.match_users()?.pairs.into_iter().map(|p| p.key).collect())).await?
        }
        (Principal::User(me), None) => vec![me.clone()],
        (Principal::User(me), Some(u)) if u == me => vec![me.clone()],
        _ => return Err(ApiError::forbidden("administrators, or a user for their own runs")),
    };
    let mut list = api
        .blocking(move |hub| {
            let mut out = Vec::new();
            for u in users {
                out.extend(hub.history(&u)?.iter().map(RunView::of));
            }
            Ok(out)
        })
        .await?;
    list.sort_by(|a, b| b.started_at.cmp(&a.started_at).then(b.id.cmp(&a.id)));
    Ok(Json(Paging { limit: q.limit, after: q.after }.page(list)?))
}

#[utoipa::path(get, path = "/api/v1/held", params(Paging), responses((status = 200, body = Page<HeldView>)))]
async fn held(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<HeldView>>> {
    api.admin(&headers)?;
    let paging = query(paging)?;
    let list = api
        .blocking(|hub| {
            let mut out = Vec::new();
            for p in hub.match_users()?.pairs {
                if let Some(h) = hub.held(&p.key)? {
                    out.push(HeldView::of(&p.key, &h));
                }
            }
            Ok(out)
        })
        .await?;
    Ok(Json(paging.page(list)?))
}

/// `owner`'s contacts, from memory when the hub keeps them.
async fn contacts_of(api: &Arc<Api>, owner: &str) -> ApiResult<Arc<crate::hub::ContactsView>> {
    if let Some(view) = api.hub.cached_contacts(owner) {
        return Ok(view);
    }
    let owner = owner.to_string();
    api.blocking(move |hub| Ok(hub.contacts_view(&owner)?)).await
}

async fn visible_contacts(
    api: &Arc<Api>,
    headers: &HeaderMap,
    user: &str,
) -> ApiResult<(Scope, Arc<crate::hub::ContactsView>)> {
    let scope = api.contact_scope(headers, user).await?;
    Ok((scope, contacts_of(api, user).await?))
}

/// One contact the principal may see.
async fn visible_contact(api: &Arc<Api>, headers: &HeaderMap, user: &str, id: &str) -> ApiResult<ContactShape> {
    let (scope, view) = visible_contacts(api, headers, user).await?;
    view.by_id
        .get(id)
        .and_then(|i| view.list.get(*i))
        .filter(|c| scope == Scope::All || !c.private)
        .map(ContactShape::of)
        .ok_or_else(|| ApiError::not_found(format!("{user} has no contact {id}")))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/contacts", params(("user" = String, Path), Paging),
    responses((status = 200, body = Page<ContactShape>), (status = 403, body = ErrorBody))
)]
async fn contacts(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<ContactShape>>> {
    let paging = query(paging)?;
    let (scope, view) = visible_contacts(&api, &headers, &user).await?;
    let visible: Vec<&crate::hub::ContactView> =
        view.list.iter().filter(|c| scope == Scope::All || !c.private).collect();
    let page = paging.page(visible)?;
    Ok(Json(Page { items: page.items.into_iter().map(ContactShape::of).collect(), next: page.next }))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/contacts/{contact}",
    params(("user" = String, Path), ("contact" = String, Path)),
    responses((status = 200, body = ContactShape), (status = 404, body = ErrorBody))
)]
async fn contact(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<ContactShape>> {
    Ok(Json(visible_contact(&api, &headers, &user, &id).await?))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/contacts/{contact}/history",
    params(("user" = String, Path), ("contact" = String, Path), Paging),
    responses((status = 200, body = Page<FieldChangeView>), (status = 404, body = ErrorBody))
)]
async fn contact_history(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<FieldChangeView>>> {
    let paging = query(paging)?;
    visible_contact(&api, &headers, &user, &id).await?;
    let history = api
        .blocking(move |hub| {
            hub.contact_history(&user, &id)?.ok_or_else(|| ApiError::not_found(format!("{user} has no contact {id}")))
        })
        .await?;
    Ok(Json(paging.page(history.iter().map(FieldChangeView::of).collect())?))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/calendar/skipped", params(("user" = String, Path), Paging),
    responses((status = 200, body = Page<SkippedView>))
)]
async fn skipped(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<SkippedView>>> {
    api.owner_or_admin(&headers, &user)?;
    let paging = query(paging)?;
    let redact = api.principal(&headers)? == Principal::Admin;
    let list = api.blocking(move |hub| Ok(hub.calendar().skipped(&user)?)).await?;
    Ok(Json(paging.page(list.iter().map(|s| SkippedView::of(s, redact)).collect())?))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/unmatched-attendees", params(("user" = String, Path), Paging),
    responses((status = 200, body = Page<UnmatchedView>))
)]
async fn unmatched(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<UnmatchedView>>> {
    api.owner(&headers, &user)?;
    let paging = query(paging)?;
    let list = api.blocking(move |hub| Ok(hub.calendar().unmatched(&user)?)).await?;
    Ok(Json(paging.page(list.iter().map(UnmatchedView::of).collect())?))
}

#[utoipa::path(
    post, path = "/api/v1/users/{user}/unmatched-attendees/{email}",
    params(("user" = String, Path), ("email" = String, Path)),
    responses((status = 201, body = ContactShape), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn add_attendee(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((user, email)): Path<(String, String)>,
) -> ApiResult<(StatusCode, Json<ContactShape>)> {
    api.owner(&headers, &user)?;
    let pair = pair_of(&api, &user).await?;
    wait_idle(&api.hub, &pair.key).await?;
    let contact = api
        .blocking(move |hub| {
            let cid = hub.add_attendee(&pair, &email)?;
            // The contact sync brings the new contact into the user's document (and Outlook).
            if let Err(e) = hub.sync_user(&pair) {
                tracing::warn!(user = %pair.key, error = %e, "the run after adding an attendee failed");
            }
            let view = hub.contacts_view(&pair.key)?;
            let found = view.list.iter().find(|c| c.links[1].as_deref() == Some(cid.as_str())).cloned();
            found.ok_or_else(|| {
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    format!("{email} was added to the CRM as {cid}; it joins the contacts with the next run"),
                )
            })
        })
        .await?;
    Ok((StatusCode::CREATED, Json(ContactShape::of(&contact))))
}

/// Whether `owner`'s contact `id` is Private (their operational views hide its values).
fn private_ids(hub: &Hub, owner: &str) -> ApiResult<std::collections::HashSet<String>> {
    Ok(hub.contacts_view(owner)?.list.iter().filter(|c| c.private).map(|c| c.id.clone()).collect())
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/conflicts", params(("user" = String, Path), Paging),
    responses((status = 200, body = Page<ConflictView>))
)]
async fn conflicts(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<ConflictView>>> {
    api.owner_or_admin(&headers, &user)?;
    let paging = query(paging)?;
    let redact = api.principal(&headers)? == Principal::Admin;
    let list = api
        .blocking(move |hub| {
            let private = if redact { private_ids(&hub, &user)? } else { Default::default() };
            Ok(hub
                .conflicts(&user)?
                .iter()
                .map(|c| ConflictView::of(c, private.contains(&c.contact.to_string())))
                .collect())
        })
        .await?;
    Ok(Json(paging.page(list)?))
}

#[utoipa::path(
    get, path = "/api/v1/users/{user}/possible-duplicates", params(("user" = String, Path), Paging),
    responses((status = 200, body = Page<DuplicateView>))
)]
async fn possible_duplicates(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<DuplicateView>>> {
    api.owner_or_admin(&headers, &user)?;
    let paging = query(paging)?;
    let admin = api.principal(&headers)? == Principal::Admin;
    let list = api
        .blocking(move |hub| {
            // The items of Private contacts, whose address or name an administrator must not see.
            let private: std::collections::HashSet<String> = if admin {
                hub.contacts_view(&user)?
                    .list
                    .iter()
                    .filter(|c| c.private)
                    .flat_map(|c| c.links.iter().flatten().cloned())
                    .collect()
            } else {
                Default::default()
            };
            Ok(hub
                .possible_duplicates(&user)?
                .iter()
                .map(|d| {
                    let redact = d.exchange.iter().chain(&d.crm).any(|i| private.contains(i.as_str()));
                    DuplicateView::of(d, redact)
                })
                .collect::<Vec<_>>())
        })
        .await?;
    Ok(Json(paging.page(list)?))
}

#[utoipa::path(
    post, path = "/api/v1/users/{user}/possible-duplicates/{id}/merge",
    params(("user" = String, Path), ("id" = String, Path)), request_body(content = Option<MergeRequest>),
    responses(
        (status = 200, body = Merged), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody),
        (status = 422, body = ErrorBody)
    )
)]
async fn merge_duplicate(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Merged>> {
    api.owner_or_admin(&headers, &user)?;
    // The body is optional: it names the two items when the group has more than one on a side.
    let req: MergeRequest = if body.iter().all(u8::is_ascii_whitespace) {
        MergeRequest::default()
    } else {
        serde_json::from_slice(&body).map_err(|e| ApiError::invalid(format!("the body: {e}")))?
    };
    let pair = pair_of(&api, &user).await?;
    wait_idle(&api.hub, &user).await?;
    let ident = id.clone();
    let u = user.clone();
    let joined = api
        .blocking(move |hub| {
            let key = duplicate_key(&hub, &u, &ident)?
                .ok_or_else(|| ApiError::not_found(format!("no possible duplicate {ident}")))?;
            Ok(hub.merge_duplicate(&u, &key, req.exchange.as_deref(), req.crm.as_deref())?)
        })
        .await?;
    // The next run writes the merge out to both sides: it starts now.
    let run = match api.hub.enabled(&pair) {
        true => Some(RunView::running(&pair.key, spawn_run(&api, &pair))),
        false => None,
    };
    let id = joined.keep.to_string();
    // The owner sees the merged contact; an administrator, who does not read users' contacts
    // (SPEC P3), sees the ids and links only.
    let contact = match api.principal(&headers)? {
        Principal::User(_) => Some(visible_contact(&api, &headers, &user, &id).await?),
        _ => None,
    };
    let [exchange, crm] = joined.links.map(|l| l.map(|i| i.as_str().to_string()));
    Ok(Json(Merged {
        id,
        links: Links { exchange, crm },
        contact,
        removed: joined.gone.to_string(),
        conflicts: joined.conflicts.len(),
        run,
    }))
}

#[utoipa::path(
    post, path = "/api/v1/users/{user}/possible-duplicates/{id}/dismiss",
    params(("user" = String, Path), ("id" = String, Path)),
    responses((status = 200, body = Discarded), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn dismiss_duplicate(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path((user, id)): Path<(String, String)>,
) -> ApiResult<Json<Discarded>> {
    api.owner_or_admin(&headers, &user)?;
    wait_idle(&api.hub, &user).await?;
    let ident = id.clone();
    let done = api
        .blocking(move |hub| {
            let key = duplicate_key(&hub, &user, &ident)?;
            match key {
                Some(k) => Ok(hub.dismiss_duplicate(&user, &k)?),
                None => Ok(false),
            }
        })
        .await?;
    if !done {
        return Err(ApiError::not_found(format!("no possible duplicate {id}")));
    }
    Ok(Json(Discarded { id, status: "dismissed".into() }))
}

/// The appointment search's filters (SPEC K9).
#[derive(Clone, Debug, Default, Deserialize, utoipa::IntoParams)]
pub struct AppointmentQuery {
    /// A CRM ContactID among the attendees.
    pub contact: Option<String>,
    /// The company of a linked attendee contact.
    pub company: Option<String>,
    /// A firm user among the attendees.
    pub attendee: Option<String>,
    /// The CRM organizer (a user id).
    pub organizer: Option<String>,
    /// Starting at or after (RFC 3339).
    pub from: Option<String>,
    /// Starting before (RFC 3339).
    pub to: Option<String>,
    pub limit: Option<usize>,
    pub after: Option<String>,
}

fn instant(name: &str, value: &Option<String>) -> ApiResult<Option<chrono::DateTime<chrono::Utc>>> {
    value
        .as_deref()
        .map(|v| {
            chrono::DateTime::parse_from_rfc3339(v)
                .map(|t| t.with_timezone(&chrono::Utc))
                .map_err(|e| ApiError::invalid(format!("`{name}` is not an RFC 3339 time ({v}): {e}")))
        })
        .transpose()
}

fn appointment_reader(api: &Api, headers: &HeaderMap) -> ApiResult<()> {
    api.principal(headers).map(|_| ())
}

#[utoipa::path(get, path = "/api/v1/appointments", params(AppointmentQuery), responses((status = 200, body = Page<AppointmentShape>)))]
async fn appointments(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    q: Result<Query<AppointmentQuery>, QueryRejection>,
) -> ApiResult<Json<Page<AppointmentShape>>> {
    appointment_reader(&api, &headers)?;
    let q = query(q)?;
    let search = Search {
        contact: q.contact.clone(),
        company: q.company.clone(),
        attendee: q.attendee.clone(),
        organizer: q.organizer.clone(),
        from: instant("from", &q.from)?,
        to: instant("to", &q.to)?,
        limit: usize::MAX,
    };
    let list = api.blocking(move |hub| Ok(hub.calendar().search(&search)?)).await?;
    let paging = Paging { limit: q.limit, after: q.after };
    Ok(Json(paging.page(list.iter().map(AppointmentShape::of).collect())?))
}

#[utoipa::path(
    get, path = "/api/v1/appointments/{appt}", params(("appt" = String, Path)),
    responses((status = 200, body = AppointmentShape), (status = 404, body = ErrorBody))
)]
async fn appointment(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<AppointmentShape>> {
    appointment_reader(&api, &headers)?;
    let a = api.blocking(move |hub| Ok(hub.calendar().appointment(&id)?)).await?;
    Ok(Json(AppointmentShape::of(&a)))
}

#[utoipa::path(
    get, path = "/api/v1/appointments/{appt}/history", params(("appt" = String, Path), Paging),
    responses((status = 200, body = Page<HistoryView>), (status = 404, body = ErrorBody))
)]
async fn appointment_history(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
    paging: Result<Query<Paging>, QueryRejection>,
) -> ApiResult<Json<Page<HistoryView>>> {
    appointment_reader(&api, &headers)?;
    let paging = query(paging)?;
    let list = api.blocking(move |hub| Ok(hub.calendar().history(&id)?)).await?;
    Ok(Json(paging.page(list.iter().map(HistoryView::of).collect())?))
}

fn json_body<T>(body: Result<Json<T>, axum::extract::rejection::JsonRejection>) -> ApiResult<T> {
    body.map(|Json(b)| b).map_err(|e| match e.status() {
        StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the body is over the 1 MiB limit")
        }
        _ => ApiError::invalid(e.body_text()),
    })
}

/// How long a request that changes a user's state waits for their run (API.md "Concurrency").
const RUN_WAIT: Duration = Duration::from_secs(30);

/// Wait until `user` has no run in flight (at most 30 s, then 409 `run_in_progress`).
async fn wait_idle(hub: &Hub, user: &str) -> ApiResult<()> {
    let deadline = Instant::now() + RUN_WAIT;
    while hub.running(user).is_some() {
        if Instant::now() >= deadline {
            return Err(ApiError::new(
                StatusCode::CONFLICT,
                "run_in_progress",
                format!("{user}'s run is still in flight"),
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

async fn pair_of(api: &Api, user: &str) -> ApiResult<crate::hub::UserPair> {
    let u = user.to_string();
    api.blocking(move |hub| hub.pair_for(&u)?.ok_or_else(|| ApiError::not_found(format!("no matched user {u}")))).await
}

/// A run id: `<user>.<start in ms>`.
fn parse_run(id: &str) -> ApiResult<(String, i64)> {
    id.rsplit_once('.')
        .and_then(|(u, ms)| ms.parse().ok().map(|ms| (u.to_string(), ms)))
        .ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

#[utoipa::path(
    post, path = "/api/v1/runs", request_body = RunRequest,
    responses((status = 202, body = RunsStarted), (status = 403, body = ErrorBody), (status = 422, body = ErrorBody))
)]
async fn start_runs(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<RunsStarted>)> {
    let req = json_body(body)?;
    let principal = api.principal(&headers)?;
    let users: Vec<String> = match (&principal, req.user) {
        (Principal::Admin, Some(u)) => vec![u],
        (Principal::Admin, None) => {
            api.blocking(|hub| {
                let m = hub.match_users()?;
                Ok(m.pairs.iter().filter(|p| hub.enabled(p)).map(|p| p.crm_user.clone()).collect())
            })
            .await?
        }
        (Principal::User(me), Some(u)) if *me == u => vec![u],
        (Principal::User(me), None) => vec![me.clone()],
        _ => return Err(ApiError::forbidden("administrators, or a user for their own run")),
    };
    let mut started = Vec::new();
    for user in users {
        let pair = pair_of(&api, &user).await?;
        if !api.hub.enabled(&pair) {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "validation_failed",
                format!("contact sync is off for {user} (SPEC C6)"),
            ));
        }
        started.push(RunView::running(&pair.key, spawn_run(&api, &pair)));
    }
    Ok((StatusCode::ACCEPTED, Json(RunsStarted { runs: started })))
}

/// The key of `user`'s possible duplicate whose API id is `id`, if there is one.
fn duplicate_key(hub: &Hub, user: &str, id: &str) -> Result<Option<String>, HubError> {
    Ok(hub.possible_duplicates(user)?.into_iter().find(|d| DuplicateView::of(d, false).id == id).map(|d| d.key))
}

/// Start `pair`'s run in the background; one run per user, so a run in flight is the answer
/// (API.md "Concurrency"). Returns when the run (started, or in flight) began.
fn spawn_run(api: &Api, pair: &UserPair) -> chrono::DateTime<chrono::Utc> {
    match api.hub.claim(&pair.key) {
        Ok(at) => {
            let hub = api.hub.clone();
            let p = pair.clone();
            tokio::task::spawn_blocking(move || {
                if let Err(e) = hub.sync_claimed(&p, at) {
                    tracing::warn!(user = %p.key, error = %e, "a run started over the API failed");
                }
            });
            at
        }
        Err(at) => at,
    }
}

#[utoipa::path(
    get, path = "/api/v1/runs/{run}", params(("run" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody))
)]
async fn run(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<RunView>> {
    let (user, ms) = parse_run(&id)?;
    api.owner_or_admin(&headers, &user)?;
    if api.hub.running(&user).is_some_and(|at| at.timestamp_millis() == ms) {
        return Ok(Json(RunView::running(&user, api.hub.running(&user).unwrap_or_default())));
    }
    let u = user.clone();
    let found =
        api.blocking(move |hub| Ok(hub.history(&u)?.into_iter().find(|r| r.started.timestamp_millis() == ms))).await?;
    found.map(|r| Json(RunView::of(&r))).ok_or_else(|| ApiError::not_found(format!("no run {id}")))
}

#[utoipa::path(
    post, path = "/api/v1/runs/plan", request_body = RunRequest,
    responses((status = 200, body = PlanView), (status = 403, body = ErrorBody))
)]
async fn plan(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<PlanView>> {
    let req = json_body(body)?;
    let principal = api.principal(&headers)?;
    let user = match (&principal, req.user) {
        (Principal::Admin, Some(u)) => u,
        (Principal::User(me), Some(u)) if *me == u => u,
        (Principal::User(me), None) => me.clone(),
        (Principal::Admin, None) => return Err(ApiError::invalid("`user` is required")),
        _ => return Err(ApiError::forbidden("administrators, or a user for their own plan")),
    };
    let pair = pair_of(&api, &user).await?;
    // Administrators see Private contacts' values as `***` (API.md "Privacy").
    let redact = principal == Principal::Admin;
    let report = api.blocking(move |hub| Ok(hub.dry_run(&pair)?)).await?;
    Ok(Json(PlanView::of(&report.plan, redact)))
}

#[utoipa::path(
    post, path = "/api/v1/held/{run}/release", params(("run" = String, Path)),
    responses((status = 200, body = RunView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn release(State(api): State<Arc<Api>>, headers: HeaderMap, Path(id): Path<String>) -> ApiResult<Json<RunView>> {
    api.admin(&headers)?;
    let (user, pair) = held_run(&api, &id).await?;
    wait_idle(&api.hub, &user).await?;
    let record = api
        .blocking(move |hub| {
            hub.release(&pair)?;
            hub.history(&pair.key)?.pop().ok_or_else(|| ApiError::internal("the released run left no record"))
        })
        .await?;
    Ok(Json(RunView::of(&record)))
}

#[utoipa::path(
    post, path = "/api/v1/held/{run}/discard", params(("run" = String, Path)),
    responses((status = 200, body = Discarded), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn discard(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> ApiResult<Json<Discarded>> {
    api.admin(&headers)?;
    let (user, _) = held_run(&api, &id).await?;
    wait_idle(&api.hub, &user).await?;
    api.blocking(move |hub| Ok(hub.discard(&user)?)).await?;
    Ok(Json(Discarded { id, status: "discarded".into() }))
}

/// The held run `id`: its user and pair; 404 when that run is not the user's held one.
async fn held_run(api: &Api, id: &str) -> ApiResult<(String, crate::hub::UserPair)> {
    let (user, ms) = parse_run(id)?;
    let u = user.clone();
    let held = api.blocking(move |hub| Ok(hub.held(&u)?)).await?;
    if held.is_none_or(|h| h.at.timestamp_millis() != ms) {
        return Err(ApiError::not_found(format!("no held run {id}")));
    }
    let pair = pair_of(api, &user).await?;
    Ok((user, pair))
}

#[utoipa::path(
    patch, path = "/api/v1/users/{user}", params(("user" = String, Path)), request_body = UserPatch,
    responses((status = 200, body = UserView), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody))
)]
async fn patch_user(
    State(api): State<Arc<Api>>,
    headers: HeaderMap,
    Path(user): Path<String>,
    body: Result<Json<UserPatch>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<UserView>> {
    api.admin(&headers)?;
    let patch = json_body(body)?;
    let pair = pair_of(&api, &user).await?;
    if let Some(on) = patch.contact_sync {
        wait_idle(&api.hub, &pair.key).await?;
        let key = pair.key.clone();
        api.blocking(move |hub| Ok(hub.set_contact_sync(&key, on)?)).await?;
    }
    api.blocking(move |hub| Ok(Json(UserView::of(&hub, &pair)?))).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_junk_is_refused() {
        assert_eq!(decode_cursor(&encode_cursor(1234)), Some(1234));
        assert_eq!(decode_cursor("not a cursor"), None);
        let p = Paging { limit: Some(2), after: None }.page(vec![1, 2, 3]).unwrap();
        assert_eq!(p.items, vec![1, 2]);
        let next = Paging { limit: Some(2), after: p.next }.page(vec![1, 2, 3]).unwrap();
        assert_eq!((next.items, next.next), (vec![3], None));
        assert!(Paging { limit: Some(0), after: None }.page(vec![1]).is_err());
        assert!(Paging { limit: Some(5_001), after: None }.page(vec![1]).is_err());
    }

    #[test]
    fn token_digests_are_sha256_hex() {
        assert_eq!(token_digest("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }

    #[test]
    fn the_openapi_document_names_its_routes() {
        let doc = serde_json::to_value(ApiDoc::openapi()).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        for p in ["/healthz", "/api/v1/appointments/{appt}/history", "/api/v1/users/{user}/contacts"] {
            assert!(paths.contains_key(p), "{p}");
        }
    }
}
