//! The Microsoft Graph v1.0 client: client-credentials auth, at most four requests in
//! flight per mailbox, `Retry-After`-honouring retries, delta rounds that follow
//! `@odata.nextLink` to `@odata.deltaLink`, JSON batching for extended properties and
//! writes, and every failure mapped to an [`ErrorKind`].

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde::de::DeserializeOwned;
use serde_json::value::RawValue;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::auth::{Credentials, Tokens};
use super::props;
use super::wire::{self, BatchAnswer, BatchRequest, Contact, ContactFolder, ErrorBody, Page, User, MAX_BATCH};
use crate::http::{retry_after, seg, RetryPolicy};
use crate::{ConnectorError, ErrorKind};

/// Graph's ceiling on concurrent requests to one mailbox.
pub const MAILBOX_CONCURRENCY: usize = 4;

/// Every request asks for immutable ids, so ids survive moves between folders.
const IMMUTABLE_IDS: &str = "IdType=\"ImmutableId\"";

/// How to reach Graph.
#[derive(Clone, Debug)]
pub struct GraphConfig {
    /// The version root, `https://graph.microsoft.com/v1.0` (or a national cloud's).
    pub base: String,
    /// Client-credentials auth.
    pub credentials: Credentials,
    /// Retries on 429/503 and network errors.
    pub retry: RetryPolicy,
    /// `Prefer: odata.maxpagesize` for delta rounds and listings.
    pub page_size: u32,
    /// Requests in flight per mailbox (at most [`MAILBOX_CONCURRENCY`]).
    pub mailbox_concurrency: usize,
    /// Timeout of one request.
    pub timeout: Duration,
}

impl GraphConfig {
    /// The global cloud's defaults for `tenant` and an app registration.
    pub fn new(credentials: Credentials) -> GraphConfig {
        GraphConfig {
            base: "https://graph.microsoft.com/v1.0".to_string(),
            credentials,
            retry: RetryPolicy::default(),
            page_size: 500,
            mailbox_concurrency: MAILBOX_CONCURRENCY,
            timeout: Duration::from_secs(100),
        }
    }
}

/// A contact delta round's item: changed (or new), or gone.
#[derive(Clone, Debug, PartialEq)]
pub enum ContactChange {
    /// Created or changed; with its extended properties once [`GraphClient::pull_contacts`] read them.
    Upsert(Box<Contact>),
    /// Deleted, or moved out of the folder.
    Removed { id: String },
}

impl ContactChange {
    /// The item's id.
    pub fn id(&self) -> &str {
        match self {
            ContactChange::Upsert(c) => c.id.as_deref().unwrap_or_default(),
            ContactChange::Removed { id } => id,
        }
    }
}

/// A whole contact delta round.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactRound {
    /// Each item once, in the order of its last appearance.
    pub changes: Vec<ContactChange>,
    /// Where the next round starts (opaque).
    pub delta_link: String,
    /// Whether this round listed the whole folder (first round, or a resync after 410):
    /// items not in it are gone.
    pub full: bool,
}

/// A contact write, sent in a JSON batch.
#[derive(Clone, Debug)]
pub enum ContactWrite {
    /// Create in the folder, stamped with the hub id (and the CRM ContactID when linked).
    /// `retry`: an earlier attempt's outcome is unknown, so look for the stamp first.
    Create { hub_id: String, crm_contact_id: Option<String>, contact: Box<Contact>, retry: bool },
    /// Take the item from `before` (as last read) to `after`; conditional on `etag` when given.
    Update { id: String, etag: Option<String>, before: Box<Contact>, after: Box<Contact> },
    /// Delete (already gone counts as done).
    Delete { id: String },
}

/// The Graph client. Cheap to clone; clones share the token and the mailbox limits.
#[derive(Clone)]
pub struct GraphClient {
    inner: Arc<Inner>,
}

struct Inner {
    http: reqwest::Client,
    base: String,
    tokens: Tokens,
    retry: RetryPolicy,
    page_size: u32,
    concurrency: usize,
    mailboxes: Mutex<HashMap<String, Arc<Semaphore>>>,
}

impl std::fmt::Debug for GraphClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphClient").field("base", &self.inner.base).finish_non_exhaustive()
    }
}

/// What kind a Graph failure is: by error code first (an expired sync state is a resync
/// whatever the status), then by status.
pub fn error_kind(status: StatusCode, code: &str, retry_after: Option<Duration>) -> ErrorKind {
    let code = code.to_ascii_lowercase();
    if ["syncstatenotfound", "syncstateinvalid", "resyncrequired"].contains(&code.as_str()) {
        return ErrorKind::ResyncRequired;
    }
    match status.as_u16() {
        401 | 403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        409 | 412 => ErrorKind::PreconditionFailed,
        410 => ErrorKind::ResyncRequired,
        429 | 503 => ErrorKind::Throttled { retry_after },
        400 | 413 | 415 | 422 => ErrorKind::InvalidData,
        _ => ErrorKind::Unavailable,
    }
}

fn unavailable(what: impl std::fmt::Display) -> ConnectorError {
    ConnectorError::new(ErrorKind::Unavailable, what.to_string())
}

fn failure(status: StatusCode, wait: Option<Duration>, body: &[u8], what: &str) -> ConnectorError {
    let detail = wire::parse::<ErrorBody>("error", body).ok().map(|e| e.error);
    let code = detail.as_ref().map_or("", |d| d.code.as_str());
    let message = match &detail {
        Some(d) => format!("{} {}: {} ({what})", status.as_u16(), d.code, d.message),
        None => format!("{} from {what}", status.as_u16()),
    };
    ConnectorError::new(error_kind(status, code, wait), message)
}

impl GraphClient {
    /// A client for `config`.
    pub fn new(config: GraphConfig) -> Result<GraphClient, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .build()
            .map_err(|e| unavailable(format!("building the HTTP client: {e}")))?;
        Ok(GraphClient {
            inner: Arc::new(Inner {
                http,
                base: config.base.trim_end_matches('/').to_string(),
                tokens: Tokens::new(config.credentials),
                retry: config.retry,
                page_size: config.page_size.clamp(1, 1000),
                concurrency: config.mailbox_concurrency.clamp(1, MAILBOX_CONCURRENCY),
                mailboxes: Mutex::new(HashMap::new()),
            }),
        })
    }

    fn mailbox(&self, user: &str) -> Arc<Semaphore> {
        let mut map = self.inner.mailboxes.lock().unwrap_or_else(|p| p.into_inner());
        // Ids and UPNs are case-insensitive: "U1" and "u1" are one mailbox.
        let key = user.to_ascii_lowercase();
        map.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.inner.concurrency))).clone()
    }

    /// One request, with retries: at most the mailbox's share in flight, a fresh token
    /// after a 401, waits on 429/503 and network errors. The body of a 2xx answer.
    /// A request that is not `idempotent` (a batch holding a create) is retried only after
    /// a 429, which Graph answers without doing anything: after a 503 or a lost connection
    /// its outcome is unknown, and repeating it could create twice (SPEC N1).
    #[allow(clippy::too_many_arguments)]
    async fn send(
        &self,
        user: Option<&str>,
        method: Method,
        url: &str,
        prefer: &[&str],
        if_match: Option<&str>,
        body: Option<&[u8]>,
        idempotent: bool,
        permits: u32,
    ) -> Result<(StatusCode, Vec<u8>), ConnectorError> {
        if !url.starts_with(&self.inner.base) {
            return Err(ConnectorError::new(
                ErrorKind::InvalidData,
                format!("refusing to follow a link outside Graph's base: {url}"),
            ));
        }
        let semaphore = user.map(|u| self.mailbox(u));
        let what = format!("{method} {}", url.split('?').next().unwrap_or_default());
        let mut prefer_header = vec![IMMUTABLE_IDS.to_string()];
        prefer_header.extend(prefer.iter().map(|p| p.to_string()));
        let prefer_header = prefer_header.join(", ");
        let mut attempt = 0;
        let mut reauthenticated = false;
        loop {
            attempt += 1;
            let token = self.inner.tokens.get(&self.inner.http, &self.inner.retry).await?;
            let mut refused = false;
            let outcome = {
                let _permit = match &semaphore {
                    Some(s) => Some(
                        s.acquire_many(permits.clamp(1, self.inner.concurrency as u32))
                            .await
                            .map_err(|e| unavailable(format!("mailbox limiter: {e}")))?,
                    ),
                    None => None,
                };
                let mut request = self
                    .inner
                    .http
                    .request(method.clone(), url)
                    .bearer_auth(token.expose())
                    .header("prefer", &prefer_header);
                if let Some(etag) = if_match {
                    request = request.header("if-match", etag);
                }
                if let Some(body) = body {
                    request = request.header(reqwest::header::CONTENT_TYPE, "application/json").body(body.to_vec());
                }
                match request.send().await {
                    Ok(response) => {
                        let status = response.status();
                        let wait = retry_after(response.headers());
                        refused = status == StatusCode::TOO_MANY_REQUESTS;
                        if status == StatusCode::UNAUTHORIZED && !reauthenticated {
                            // The token was refused (expired or revoked early): one fresh try.
                            reauthenticated = true;
                            self.inner.tokens.invalidate(&token).await;
                            continue;
                        }
                        match response.bytes().await {
                            Ok(bytes) if status.is_success() => return Ok((status, bytes.to_vec())),
                            Ok(bytes) => failure(status, wait, &bytes, &what),
                            Err(e) => unavailable(format!("{what}: reading the answer: {e}")),
                        }
                    }
                    Err(e) => unavailable(format!("{what}: {e}")),
                }
            };
            if !self.inner.retry.retries(&outcome.kind, attempt) || !(idempotent || refused) {
                return Err(outcome);
            }
            tokio::time::sleep(self.inner.retry.wait(&outcome.kind, attempt)).await;
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        user: Option<&str>,
        what: &str,
        url: &str,
        prefer: &[&str],
    ) -> Result<T, ConnectorError> {
        let (_, body) = self.send(user, Method::GET, url, prefer, None, None, true, 1).await?;
        wire::parse(what, &body)
    }

    /// Follow `@odata.nextLink` from `url` to the end; every item and the delta link, if any.
    pub(crate) async fn follow<T: DeserializeOwned>(
        &self,
        user: Option<&str>,
        what: &str,
        url: String,
        prefer: &[&str],
    ) -> Result<(Vec<T>, Option<String>), ConnectorError> {
        let page_size = format!("odata.maxpagesize={}", self.inner.page_size);
        let mut prefer = prefer.to_vec();
        prefer.push(&page_size);
        let mut items = Vec::new();
        let mut url = url;
        let mut visited = std::collections::HashSet::new();
        loop {
            let page: Page<T> = self.get(user, what, &url, &prefer).await?;
            items.extend(page.value);
            visited.insert(url);
            match (page.next_link, page.delta_link) {
                (Some(next), _) if visited.contains(&next) => {
                    return Err(ConnectorError::new(
                        ErrorKind::InvalidData,
                        format!("{what}: a nextLink leads back to a page already read"),
                    ));
                }
                (Some(next), _) => url = next,
                (None, delta) => return Ok((items, delta)),
            }
        }
    }

    /// The version root (`…/v1.0`).
    pub fn base(&self) -> &str {
        &self.inner.base
    }

    /// The tenant's users (`GET /users`, application permission User.Read.All), for
    /// matching mailboxes to CRM users (SPEC A1).
    pub async fn users(&self) -> Result<Vec<User>, ConnectorError> {
        let url = format!("{}/users?$select=id,displayName,mail,userPrincipalName", self.inner.base);
        Ok(self.follow(None, "users", url, &[]).await?.0)
    }

    /// The user's default contacts folder (well-known name `contacts`), with its real id.
    pub async fn default_folder(&self, user: &str) -> Result<ContactFolder, ConnectorError> {
        let url = format!("{}/users/{}/contactFolders/contacts", self.inner.base, seg(user));
        self.get(Some(user), "contact folder", &url, &[]).await
    }

    /// One contact delta round of `folder`: from `delta_link`, or the whole folder without
    /// one. Items are folded (each once, its last state). An expired link is
    /// [`ErrorKind::ResyncRequired`]. Delta carries no extended properties.
    pub async fn contact_delta(
        &self,
        user: &str,
        folder: &str,
        delta_link: Option<&str>,
    ) -> Result<(Vec<ContactChange>, String), ConnectorError> {
        let url = match delta_link {
            Some(link) => link.to_string(),
            None => format!("{}/users/{}/contactFolders/{}/contacts/delta", self.inner.base, seg(user), seg(folder)),
        };
        let (items, delta) = self.follow::<Contact>(Some(user), "contact delta", url, &[]).await?;
        let delta = delta.ok_or_else(|| {
            ConnectorError::new(ErrorKind::InvalidData, "contact delta: the last page has no @odata.deltaLink")
        })?;
        Ok((fold(items), delta))
    }

    /// A whole round for the engine: the delta (from scratch when the link expired), and
    /// the extended properties of every changed item. A round from scratch lists them a page
    /// at a time while the delta pages come in (it waits for the listing even when the delta
    /// fails); a resync after an expired link lists them after the delta when more than one
    /// batch's worth changed; an incremental round reads its items in JSON batches. An item
    /// gone between the two reads counts as removed.
    pub async fn pull_contacts(
        &self,
        user: &str,
        folder: &str,
        delta_link: Option<&str>,
    ) -> Result<ContactRound, ConnectorError> {
        self.pull_contacts_except(user, folder, delta_link, &HashMap::new()).await
    }

    /// [`GraphClient::pull_contacts`], leaving out of an incremental round the items whose
    /// etag is in `echoes` (id → etag): the caller's own writes, which it knows already, so
    /// their extended properties are not read again. A full round leaves nothing out.
    pub async fn pull_contacts_except(
        &self,
        user: &str,
        folder: &str,
        delta_link: Option<&str>,
        echoes: &HashMap<String, String>,
    ) -> Result<ContactRound, ConnectorError> {
        // A round from scratch lists the extended properties while the delta pages come in
        // (two of the mailbox's four concurrent requests): the listing does not depend on
        // the delta, and what it misses is read item by item below.
        let (delta, early) = if delta_link.is_none() {
            let (delta, listed) =
                tokio::join!(self.contact_delta(user, folder, None), self.list_extended(user, folder));
            (delta, Some(listed))
        } else {
            (self.contact_delta(user, folder, delta_link).await, None)
        };
        let (mut changes, delta_link, full) = match delta {
            Ok((changes, link)) => (changes, link, delta_link.is_none()),
            Err(e) if e.kind == ErrorKind::ResyncRequired && delta_link.is_some() => {
                let (changes, link) = self.contact_delta(user, folder, None).await?;
                (changes, link, true)
            }
            Err(e) => return Err(e),
        };
        if !full && !echoes.is_empty() {
            changes.retain(|c| match c {
                ContactChange::Upsert(c) => {
                    c.id.as_ref().and_then(|id| echoes.get(id)).is_none_or(|etag| c.etag.as_ref() != Some(etag))
                }
                ContactChange::Removed { .. } => true,
            });
        }
        let ids: Vec<String> = changes
            .iter()
            .filter_map(|c| match c {
                ContactChange::Upsert(c) => c.id.clone(),
                ContactChange::Removed { .. } => None,
            })
            .collect();
        let listed = match early {
            Some(Ok(listed)) => Some(listed),
            // A round this small is read in one batch anyway: a failed listing costs nothing.
            Some(Err(_)) if ids.len() <= MAX_BATCH => None,
            Some(Err(e)) => return Err(e),
            None if full && ids.len() > MAX_BATCH => Some(self.list_extended(user, folder).await?),
            None => None,
        };
        let mut extended: HashMap<String, Result<Contact, ConnectorError>> = match listed {
            Some(mut listed) => {
                let wanted: HashSet<&str> = ids.iter().map(String::as_str).collect();
                listed.retain(|id, _| wanted.contains(id.as_str()));
                // A listing pages by position, so a delete between its pages can hide a live item
                // from it: what it did not show is read item by item (a 404 there is a delete).
                let missing: Vec<String> = ids.iter().filter(|id| !listed.contains_key(*id)).cloned().collect();
                listed.extend(missing.iter().cloned().zip(self.read_extended(user, &missing).await));
                listed
            }
            None => ids.iter().cloned().zip(self.read_extended(user, &ids).await).collect(),
        };
        let mut out = Vec::with_capacity(changes.len());
        for change in changes {
            match change {
                ContactChange::Upsert(mut c) => {
                    let id = c.id.clone().unwrap_or_default();
                    match extended.remove(&id) {
                        Some(Ok(read)) => {
                            c.single_value_extended_properties =
                                Some(read.single_value_extended_properties.unwrap_or_default());
                            out.push(ContactChange::Upsert(c));
                        }
                        Some(Err(e)) if e.kind == ErrorKind::NotFound => out.push(ContactChange::Removed { id }),
                        Some(Err(e)) => return Err(e),
                        None => return Err(unavailable(format!("no extended properties read for {id}"))),
                    }
                }
                removed => out.push(removed),
            }
        }
        Ok(ContactRound { changes: out, delta_link, full })
    }

    /// The extended properties synchub reads of every item a listing of `folder` shows, by
    /// id (delta cannot expand them; a listing can, a page at a time instead of an item at a
    /// time).
    async fn list_extended(
        &self,
        user: &str,
        folder: &str,
    ) -> Result<HashMap<String, Result<Contact, ConnectorError>>, ConnectorError> {
        let url = format!(
            "{}/users/{}/contactFolders/{}/contacts?$select=id&$expand={}",
            self.inner.base,
            seg(user),
            seg(folder),
            seg(&props::expand())
        );
        let (listed, _) = self.follow::<Contact>(Some(user), "contacts' extended properties", url, &[]).await?;
        Ok(listed.into_iter().filter_map(|c| c.id.clone().map(|id| (id, Ok(c)))).collect())
    }

    /// The extended properties synchub reads ([`props::READ`]) of each item, in JSON
    /// batches; one result per id, in order.
    pub async fn read_extended(&self, user: &str, ids: &[String]) -> Vec<Result<Contact, ConnectorError>> {
        self.read(user, ids, "$select=id&").await
    }

    /// Whole items with the extended properties synchub reads, in JSON batches; one result
    /// per id, in order.
    pub async fn read_items(&self, user: &str, ids: &[String]) -> Vec<Result<Contact, ConnectorError>> {
        self.read(user, ids, "").await
    }

    async fn read(&self, user: &str, ids: &[String], select: &str) -> Vec<Result<Contact, ConnectorError>> {
        let expand = seg(&props::expand());
        let requests = ids
            .iter()
            .map(|id| BatchRequest {
                id: String::new(),
                method: "GET".into(),
                url: format!("/users/{}/contacts/{}?{select}$expand={expand}", seg(user), seg(id)),
                headers: Default::default(),
                body: None,
                depends_on: Vec::new(),
            })
            .collect();
        self.batch(user, requests)
            .await
            .into_iter()
            .map(|r| r.and_then(|body| body.parse::<Contact>("contact")))
            .collect()
    }

    /// The contact in `folder` stamped with `hub_id`, if any (SPEC N1, X9).
    pub async fn find_stamped(
        &self,
        user: &str,
        folder: &str,
        hub_id: &str,
    ) -> Result<Option<Contact>, ConnectorError> {
        let url = format!(
            "{}/users/{}/contactFolders/{}/contacts?$filter={}&$expand={}",
            self.inner.base,
            seg(user),
            seg(folder),
            seg(&props::stamped_with(hub_id)),
            seg(&props::expand())
        );
        let (found, _) = self.follow::<Contact>(Some(user), "stamped contacts", url, &[]).await?;
        Ok(found.into_iter().next())
    }

    /// Apply `writes` to `user`'s `folder` in JSON batches; one result per write, in order:
    /// the item as Graph answered (a delete answers an item with only its id).
    pub async fn write(
        &self,
        user: &str,
        folder: &str,
        writes: Vec<ContactWrite>,
    ) -> Vec<Result<Contact, ConnectorError>> {
        let mut results: Vec<Option<Result<Contact, ConnectorError>>> = vec![None; writes.len()];
        let mut requests = Vec::new();
        let mut sent = Vec::new();
        for (i, write) in writes.into_iter().enumerate() {
            let request = match write {
                ContactWrite::Create { hub_id, crm_contact_id, contact, retry } => {
                    if retry {
                        match self.find_stamped(user, folder, &hub_id).await {
                            Ok(Some(found)) => {
                                results[i] = Some(Ok(found));
                                continue;
                            }
                            Ok(None) => {}
                            Err(e) => {
                                results[i] = Some(Err(e));
                                continue;
                            }
                        }
                    }
                    let body = props::for_create(&contact, &hub_id, crm_contact_id.as_deref());
                    match serde_json::value::to_raw_value(&body) {
                        Ok(body) => inner(
                            "POST",
                            format!("/users/{}/contactFolders/{}/contacts", seg(user), seg(folder)),
                            None,
                            Some(body),
                        ),
                        Err(e) => {
                            results[i] = Some(Err(ConnectorError::new(ErrorKind::InvalidData, e.to_string())));
                            continue;
                        }
                    }
                }
                ContactWrite::Update { id, etag, before, after } => match props::patch(&before, &after) {
                    Some(body) => match serde_json::value::to_raw_value(&body) {
                        Ok(body) => inner(
                            "PATCH",
                            format!("/users/{}/contacts/{}", seg(user), seg(&id)),
                            etag.as_deref(),
                            Some(body),
                        ),
                        Err(e) => {
                            results[i] = Some(Err(ConnectorError::new(ErrorKind::InvalidData, e.to_string())));
                            continue;
                        }
                    },
                    None => {
                        results[i] = Some(Ok(Contact { id: Some(id), ..*before }));
                        continue;
                    }
                },
                ContactWrite::Delete { id } => {
                    sent_delete(&mut results, i, &id);
                    inner("DELETE", format!("/users/{}/contacts/{}", seg(user), seg(&id)), None, None)
                }
            };
            sent.push(i);
            requests.push(request);
        }
        for (i, answer) in sent.into_iter().zip(self.batch(user, requests).await) {
            let deleted = results[i].take();
            results[i] = Some(match (answer, deleted) {
                (Ok(_), Some(done)) => done,
                (Err(e), Some(done)) if e.kind == ErrorKind::NotFound => done,
                (Ok(body), None) => body.parse("contact"),
                (Err(e), _) => Err(e),
            });
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(unavailable("write not answered")))).collect()
    }

    /// Send `requests` (all to `user`'s mailbox) as JSON batches of at most 20, batches in
    /// parallel within the mailbox's limit; an inner 429/503 is retried on its own after
    /// its `Retry-After`. One result per request, in order: the answer's body.
    pub async fn batch(&self, user: &str, requests: Vec<BatchRequest>) -> Vec<Result<Answer, ConnectorError>> {
        let total = requests.len();
        let mut tasks = tokio::task::JoinSet::new();
        let mut chunk = Vec::new();
        for (i, mut request) in requests.into_iter().enumerate() {
            request.id = i.to_string();
            chunk.push(request);
            if chunk.len() == MAX_BATCH {
                let client = self.clone();
                let (user, requests) = (user.to_string(), std::mem::take(&mut chunk));
                tasks.spawn(async move { client.one_batch(&user, requests).await });
            }
        }
        if !chunk.is_empty() {
            let client = self.clone();
            let user = user.to_string();
            tasks.spawn(async move { client.one_batch(&user, chunk).await });
        }
        let mut results: Vec<Option<Result<Answer, ConnectorError>>> = vec![None; total];
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(answers) => {
                    for (i, answer) in answers {
                        if let Some(slot) = results.get_mut(i) {
                            *slot = Some(answer);
                        }
                    }
                }
                Err(e) => return vec![Err(unavailable(format!("batch task failed: {e}"))); total],
            }
        }
        results.into_iter().map(|r| r.unwrap_or_else(|| Err(unavailable("batch request not answered")))).collect()
    }

    async fn one_batch(&self, user: &str, requests: Vec<BatchRequest>) -> Vec<(usize, Result<Answer, ConnectorError>)> {
        let url = format!("{}/$batch", self.inner.base);
        let mut pending = requests;
        let mut done = Vec::new();
        let mut attempt = 0;
        while !pending.is_empty() {
            attempt += 1;
            // Graph runs a batch's requests in parallel and counts each against the
            // mailbox's limit: chain them into as many lanes as the permits this batch holds.
            let lanes = pending.len().min(self.inner.concurrency);
            for k in 0..pending.len() {
                pending[k].depends_on = if k >= lanes { vec![pending[k - lanes].id.clone()] } else { Vec::new() };
            }
            let body = match serde_json::to_vec(&BatchOf { requests: &pending }) {
                Ok(body) => body,
                Err(e) => {
                    let e = ConnectorError::new(ErrorKind::InvalidData, e.to_string());
                    return pending.iter().map(|r| (index(&r.id), Err(e.clone()))).collect();
                }
            };
            let idempotent = pending.iter().all(|r| r.method != "POST");
            let lanes = pending.len().min(self.inner.concurrency) as u32;
            let answer =
                match self.send(Some(user), Method::POST, &url, &[], None, Some(&body[..]), idempotent, lanes).await {
                    Ok((_, bytes)) => wire::parse::<BatchAnswer>("batch", &bytes),
                    Err(e) => Err(e),
                };
            let answer = match answer {
                Ok(answer) => answer,
                Err(e) => {
                    done.extend(pending.iter().map(|r| (index(&r.id), Err(e.clone()))));
                    return done;
                }
            };
            let mut retry = Vec::new();
            let mut wait = Duration::ZERO;
            for response in answer.responses {
                let Some(pos) = pending.iter().position(|r| r.id == response.id) else { continue };
                let request = pending.swap_remove(pos);
                let status = StatusCode::from_u16(response.status).unwrap_or(StatusCode::BAD_GATEWAY);
                if status.is_success() {
                    done.push((index(&request.id), Ok(Answer(response.body))));
                    continue;
                }
                if status == StatusCode::FAILED_DEPENDENCY && attempt < self.inner.retry.attempts {
                    // Not run, because an earlier request of its lane failed: send it again.
                    retry.push(request);
                    continue;
                }
                let header = response.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case("retry-after"));
                let after = header.and_then(|(_, v)| v.as_str()).and_then(crate::http::parse_retry_after);
                let bytes = response.body.as_ref().map_or(&b""[..], |b| b.get().as_bytes());
                let error = failure(status, after, bytes, &format!("{} {}", request.method, request.url));
                let unknown_if_repeated = request.method == "POST" && status != StatusCode::TOO_MANY_REQUESTS;
                if self.inner.retry.retries(&error.kind, attempt) && !unknown_if_repeated {
                    wait = wait.max(self.inner.retry.wait(&error.kind, attempt));
                    retry.push(request);
                } else {
                    done.push((index(&request.id), Err(error)));
                }
            }
            let unanswered = std::mem::replace(&mut pending, retry);
            done.extend(
                unanswered.iter().map(|r| (index(&r.id), Err(unavailable("the batch answer left a request out")))),
            );
            if !pending.is_empty() {
                tokio::time::sleep(wait).await;
            }
        }
        done
    }
}

fn index(id: &str) -> usize {
    id.parse().unwrap_or(usize::MAX)
}

fn inner(method: &str, url: String, if_match: Option<&str>, body: Option<Box<RawValue>>) -> BatchRequest {
    let mut headers = serde_json::Map::new();
    headers.insert("Prefer".into(), Value::String(IMMUTABLE_IDS.into()));
    if body.is_some() {
        headers.insert("Content-Type".into(), Value::String("application/json".into()));
    }
    if let Some(etag) = if_match {
        headers.insert("If-Match".into(), Value::String(etag.into()));
    }
    BatchRequest { id: String::new(), method: method.into(), url, headers, body, depends_on: Vec::new() }
}

fn sent_delete(results: &mut [Option<Result<Contact, ConnectorError>>], i: usize, id: &str) {
    results[i] = Some(Ok(Contact { id: Some(id.to_string()), ..Contact::default() }));
}

/// A successful batch request's answer: its body as JSON text (`None`: it had none).
#[derive(Clone, Debug)]
pub struct Answer(Option<Box<RawValue>>);

impl Answer {
    /// The body read as `T` (a missing body reads as `null`), straight from its text.
    pub fn parse<T: DeserializeOwned>(&self, what: &str) -> Result<T, ConnectorError> {
        wire::parse(what, self.0.as_ref().map_or(&b"null"[..], |b| b.get().as_bytes()))
    }
}

/// A batch as sent: its requests borrowed, serialised once per attempt.
#[derive(serde::Serialize)]
struct BatchOf<'a> {
    requests: &'a [BatchRequest],
}

/// Fold a round's items: each id once, at its last position, with its last state. An item
/// without an id cannot be linked to anything and is left out (N2: it affects nothing else).
fn fold(items: Vec<Contact>) -> Vec<ContactChange> {
    let mut last: HashMap<String, usize> = HashMap::new();
    let mut changes = Vec::with_capacity(items.len());
    for item in items {
        let Some(id) = item.id.clone().filter(|id| !id.is_empty()) else { continue };
        let change = if item.removed.is_some() {
            ContactChange::Removed { id: id.clone() }
        } else {
            ContactChange::Upsert(Box::new(item))
        };
        last.insert(id, changes.len());
        changes.push(Some(change));
    }
    let mut out = Vec::with_capacity(last.len());
    for (i, change) in changes.into_iter().enumerate() {
        if let Some(change) = change.filter(|c| last.get(c.id()) == Some(&i)) {
            out.push(change);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_map_by_code_first_then_status() {
        assert_eq!(error_kind(StatusCode::GONE, "", None), ErrorKind::ResyncRequired);
        assert_eq!(error_kind(StatusCode::BAD_REQUEST, "SyncStateNotFound", None), ErrorKind::ResyncRequired);
        assert_eq!(error_kind(StatusCode::GONE, "syncStateNotFound", None), ErrorKind::ResyncRequired);
        assert_eq!(error_kind(StatusCode::NOT_FOUND, "ErrorItemNotFound", None), ErrorKind::NotFound);
        assert_eq!(error_kind(StatusCode::PRECONDITION_FAILED, "", None), ErrorKind::PreconditionFailed);
        assert_eq!(error_kind(StatusCode::FORBIDDEN, "ErrorAccessDenied", None), ErrorKind::AccessDenied);
        assert_eq!(error_kind(StatusCode::BAD_REQUEST, "RequestBodyRead", None), ErrorKind::InvalidData);
        assert_eq!(error_kind(StatusCode::BAD_GATEWAY, "", None), ErrorKind::Unavailable);
        let wait = Some(Duration::from_millis(1500));
        assert_eq!(error_kind(StatusCode::SERVICE_UNAVAILABLE, "", wait), ErrorKind::Throttled { retry_after: wait });
    }

    fn item(id: &str, name: &str) -> Contact {
        Contact { id: Some(id.into()), given_name: Some(name.into()), ..Contact::default() }
    }

    #[test]
    fn a_round_is_folded_to_each_items_last_state() {
        let gone = Contact { id: Some("b".into()), removed: Some(Default::default()), ..Contact::default() };
        let folded = fold(vec![item("a", "1"), item("b", "1"), item("a", "2"), gone, item("c", "1")]);
        assert_eq!(folded.len(), 3);
        assert_eq!(folded[0], ContactChange::Upsert(Box::new(item("a", "2"))));
        assert_eq!(folded[1], ContactChange::Removed { id: "b".into() });
        assert_eq!(folded[2].id(), "c");
        assert_eq!(fold(vec![Contact::default(), item("d", "1")]).len(), 1, "an item without an id is left out");
    }
}
