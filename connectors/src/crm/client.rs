//! The CRM's HTTP client (CRM_API.md): bearer auth, every call synchub makes, errors mapped
//! to [`ErrorKind`]s, and retries with exponential backoff on 429/503 (honouring
//! `Retry-After`) and on transient network errors.

use std::time::Duration;

use reqwest::{Method, RequestBuilder, StatusCode};
use serde::Serialize;

use super::wire::{self, Appointment, Change, Contact, FeedPage, Proxy, User};
use crate::http::{retry_after, seg};
pub use crate::http::{RetryPolicy, Secret};
use crate::{ConnectorError, ErrorKind};

/// The CRM client.
#[derive(Clone, Debug)]
pub struct CrmClient {
    http: reqwest::Client,
    base: String,
    token: Secret,
    retry: RetryPolicy,
}

/// Filters of the appointment search.
#[derive(Clone, Debug, Default, Serialize)]
pub struct AppointmentQuery {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub contact_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organizer_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendee_user_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
}

fn error_kind(status: StatusCode, retry_after: Option<Duration>) -> ErrorKind {
    match status.as_u16() {
        401 | 403 => ErrorKind::AccessDenied,
        404 => ErrorKind::NotFound,
        410 => ErrorKind::ResyncRequired,
        412 => ErrorKind::PreconditionFailed,
        429 | 503 => ErrorKind::Throttled { retry_after },
        400 | 413 | 422 => ErrorKind::InvalidData,
        _ => ErrorKind::Unavailable,
    }
}

impl CrmClient {
    /// A client for the CRM at `base` (e.g. `https://crm.firm.example`).
    pub fn new(base: &str, token: Secret, retry: RetryPolicy) -> Result<CrmClient, ConnectorError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ConnectorError::new(ErrorKind::Unavailable, format!("building the HTTP client: {e}")))?;
        Ok(CrmClient { http, base: base.trim_end_matches('/').to_string(), token, retry })
    }

    /// Send with retries; the body of a 2xx answer.
    async fn send(
        &self,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<(StatusCode, Vec<u8>), ConnectorError> {
        let url = format!("{}{path}", self.base);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let request = build(self.http.request(method.clone(), &url).bearer_auth(self.token.expose()));
            let outcome = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let wait = retry_after(response.headers());
                    let body = response.bytes().await.map(|b| b.to_vec());
                    match body {
                        Ok(body) if status.is_success() => return Ok((status, body)),
                        Ok(body) => {
                            let message = wire::parse::<wire::ErrorBody>("error", &body)
                                .map(|e| format!("{} {}: {}", status.as_u16(), e.error.code, e.error.message))
                                .unwrap_or_else(|_| format!("{} from {method} {path}", status.as_u16()));
                            ConnectorError::new(error_kind(status, wait), message)
                        }
                        Err(e) => ConnectorError::new(ErrorKind::Unavailable, format!("reading the answer: {e}")),
                    }
                }
                Err(e) => ConnectorError::new(ErrorKind::Unavailable, format!("{method} {path}: {e}")),
            };
            if !self.retry.retries(&outcome.kind, attempt) {
                return Err(outcome);
            }
            tokio::time::sleep(self.retry.wait(&outcome.kind, attempt)).await;
        }
    }

    async fn json<T: serde::de::DeserializeOwned>(
        &self,
        what: &str,
        method: Method,
        path: &str,
        build: impl Fn(RequestBuilder) -> RequestBuilder,
    ) -> Result<T, ConnectorError> {
        let (_, body) = self.send(method, path, build).await?;
        wire::parse(what, &body)
    }

    /// `GET /api/users`.
    pub async fn users(&self) -> Result<Vec<User>, ConnectorError> {
        self.json("users", Method::GET, "/api/users", |r| r).await
    }

    /// `GET /api/users/{uid}/proxies`.
    pub async fn proxies(&self, user: &str) -> Result<Vec<Proxy>, ConnectorError> {
        self.json("proxies", Method::GET, &format!("/api/users/{}/proxies", seg(user)), |r| r).await
    }

    /// Every change of `user`'s list since `cursor` (everything without one), following
    /// pages; returns the changes and the cursor to start from next time. An expired cursor
    /// is [`ErrorKind::ResyncRequired`].
    pub async fn list_changes(
        &self,
        user: &str,
        cursor: Option<&str>,
    ) -> Result<(Vec<Change>, String), ConnectorError> {
        let path = format!("/api/users/{}/list/changes", seg(user));
        let mut cursor = cursor.map(str::to_string);
        let mut changes = Vec::new();
        loop {
            let c = cursor.clone();
            let page: FeedPage = self
                .json("list feed", Method::GET, &path, |r| match &c {
                    Some(c) => r.query(&[("cursor", c.as_str()), ("limit", "500")]),
                    None => r.query(&[("limit", "500")]),
                })
                .await?;
            changes.extend(page.changes);
            cursor = Some(page.cursor.clone());
            if !page.more {
                return Ok((changes, page.cursor));
            }
        }
    }

    /// `POST /api/users/{uid}/list`: idempotent on `entry.external_ref`.
    pub async fn create_in_list(&self, user: &str, contact: &Contact) -> Result<Contact, ConnectorError> {
        self.json("contact", Method::POST, &format!("/api/users/{}/list", seg(user)), |r| r.json(contact)).await
    }

    /// `PUT /api/contacts/{cid}` with `If-Match: contact.version`: the firm fields, sent
    /// whole as read (read-modify-write keeps what synchub does not map).
    pub async fn update_contact(&self, contact: &Contact) -> Result<Contact, ConnectorError> {
        let path = format!("/api/contacts/{}", seg(&contact.contact_id));
        let version = contact.version.to_string();
        self.json("contact", Method::PUT, &path, |r| r.header("if-match", version.as_str()).json(contact)).await
    }

    /// `PATCH /api/users/{uid}/list/{cid}` with `If-Match: <entry version>`.
    pub async fn patch_entry(
        &self,
        user: &str,
        cid: &str,
        version: u64,
        patch: &serde_json::Value,
    ) -> Result<Contact, ConnectorError> {
        let path = format!("/api/users/{}/list/{}", seg(user), seg(cid));
        let version = version.to_string();
        self.json("contact", Method::PATCH, &path, |r| r.header("if-match", version.as_str()).json(patch)).await
    }

    /// `PUT /api/users/{uid}/list/{cid}`: add an existing firm contact to the list.
    pub async fn add_to_list(&self, user: &str, cid: &str) -> Result<(), ConnectorError> {
        self.send(Method::PUT, &format!("/api/users/{}/list/{}", seg(user), seg(cid)), |r| r).await.map(drop)
    }

    /// `DELETE /api/users/{uid}/list/{cid}` (idempotent).
    pub async fn remove_from_list(&self, user: &str, cid: &str) -> Result<(), ConnectorError> {
        self.send(Method::DELETE, &format!("/api/users/{}/list/{}", seg(user), seg(cid)), |r| r).await.map(drop)
    }

    /// `GET /api/contacts?email=`.
    pub async fn contacts_by_email(&self, email: &str) -> Result<Vec<Contact>, ConnectorError> {
        self.json("contacts", Method::GET, "/api/contacts", |r| r.query(&[("email", email)])).await
    }

    /// `POST /api/appointments`: idempotent on `external_ref`.
    pub async fn create_appointment(&self, appt: &Appointment) -> Result<Appointment, ConnectorError> {
        self.json("appointment", Method::POST, "/api/appointments", |r| r.json(appt)).await
    }

    /// `PUT /api/appointments/{aid}` with `If-Match: appt.version`.
    pub async fn update_appointment(&self, appt: &Appointment) -> Result<Appointment, ConnectorError> {
        let path = format!("/api/appointments/{}", seg(&appt.appointment_id));
        let version = appt.version.to_string();
        self.json("appointment", Method::PUT, &path, |r| r.header("if-match", version.as_str()).json(appt)).await
    }

    /// `GET /api/appointments/{aid}`.
    pub async fn appointment(&self, aid: &str) -> Result<Appointment, ConnectorError> {
        self.json("appointment", Method::GET, &format!("/api/appointments/{}", seg(aid)), |r| r).await
    }

    /// `GET /api/appointments?…`.
    pub async fn appointments(&self, query: &AppointmentQuery) -> Result<Vec<Appointment>, ConnectorError> {
        self.json("appointments", Method::GET, "/api/appointments", |r| r.query(query)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_map_to_kinds() {
        assert_eq!(error_kind(StatusCode::GONE, None), ErrorKind::ResyncRequired);
        assert_eq!(error_kind(StatusCode::PRECONDITION_FAILED, None), ErrorKind::PreconditionFailed);
    }
}
