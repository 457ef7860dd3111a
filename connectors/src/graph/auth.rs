//! OAuth2 client credentials against the Microsoft identity platform (or any endpoint of
//! its shape): one token per client, cached and renewed before it expires.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use tokio::sync::Mutex;

use super::wire::{self, TokenAnswer, TokenError};
use crate::http::{retry_after, RetryPolicy, Secret};
use crate::{ConnectorError, ErrorKind};

/// The Microsoft identity platform of the global cloud.
pub const DEFAULT_AUTHORITY: &str = "https://login.microsoftonline.com";

/// Who synchub is to the identity platform.
#[derive(Clone, Debug)]
pub struct Credentials {
    /// The token endpoint, e.g. `https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token`.
    pub token_url: String,
    /// The application (client) id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The scope, `https://graph.microsoft.com/.default` for the global cloud.
    pub scope: String,
}

impl Credentials {
    /// Credentials for `tenant` at `authority` ([`DEFAULT_AUTHORITY`], or a national
    /// cloud's, or an emulator's).
    pub fn new(authority: &str, tenant: &str, client_id: &str, client_secret: Secret) -> Credentials {
        Credentials {
            token_url: format!("{}/{tenant}/oauth2/v2.0/token", authority.trim_end_matches('/')),
            client_id: client_id.to_string(),
            client_secret,
            scope: "https://graph.microsoft.com/.default".to_string(),
        }
    }
}

struct Cached {
    token: Secret,
    renew_at: Instant,
}

/// A token source: asks the endpoint once, then hands out the cached token until shortly
/// before it expires (a tenth of its life, at most five minutes, early).
pub(crate) struct Tokens {
    credentials: Credentials,
    cached: Mutex<Option<Cached>>,
}

impl Tokens {
    pub(crate) fn new(credentials: Credentials) -> Tokens {
        Tokens { credentials, cached: Mutex::new(None) }
    }

    /// A valid token, from the cache or fresh.
    pub(crate) async fn get(&self, http: &reqwest::Client, retry: &RetryPolicy) -> Result<Secret, ConnectorError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref().filter(|c| Instant::now() < c.renew_at) {
            return Ok(c.token.clone());
        }
        let mut attempt = 0;
        let answer = loop {
            attempt += 1;
            match self.request(http).await {
                Ok(answer) => break answer,
                Err(e) if retry.retries(&e.kind, attempt) => tokio::time::sleep(retry.wait(&e.kind, attempt)).await,
                Err(e) => return Err(e),
            }
        };
        // A lifetime from the network is trusted only up to a day.
        let life = Duration::from_secs(answer.expires_in.min(86_400));
        let early = (life / 10).min(Duration::from_secs(300));
        let token = Secret::new(answer.access_token);
        let now = Instant::now();
        let renew_at = now.checked_add(life - early).unwrap_or(now);
        *cached = Some(Cached { token: token.clone(), renew_at });
        Ok(token)
    }

    /// Forget the cached token if it is `refused` (Graph answered 401 to it); a token
    /// another request fetched since is kept.
    pub(crate) async fn invalidate(&self, refused: &Secret) {
        let mut cached = self.cached.lock().await;
        if cached.as_ref().is_some_and(|c| c.token.expose() == refused.expose()) {
            *cached = None;
        }
    }

    async fn request(&self, http: &reqwest::Client) -> Result<TokenAnswer, ConnectorError> {
        let c = &self.credentials;
        let form = [
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose()),
            ("scope", c.scope.as_str()),
        ];
        let response = http
            .post(&c.token_url)
            .form(&form)
            .send()
            .await
            .map_err(|e| ConnectorError::new(ErrorKind::Unavailable, format!("token endpoint: {e}")))?;
        let status = response.status();
        let wait = retry_after(response.headers());
        let body = response
            .bytes()
            .await
            .map_err(|e| ConnectorError::new(ErrorKind::Unavailable, format!("token endpoint: {e}")))?;
        if status.is_success() {
            let answer: TokenAnswer = wire::parse("token", &body)?;
            if !answer.token_type.eq_ignore_ascii_case("bearer") {
                return Err(ConnectorError::new(
                    ErrorKind::InvalidData,
                    format!("token: type `{}` is not Bearer", answer.token_type),
                ));
            }
            return Ok(answer);
        }
        let detail = wire::parse::<TokenError>("token error", &body)
            .map(|e| format!("{}: {}", e.error, e.error_description))
            .unwrap_or_else(|_| "no error body".to_string());
        let kind = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ErrorKind::AccessDenied,
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => {
                ErrorKind::Throttled { retry_after: wait }
            }
            _ => ErrorKind::Unavailable,
        };
        Err(ConnectorError::new(kind, format!("token endpoint answered {}: {detail}", status.as_u16())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_token_url_follows_the_authority_and_secrets_do_not_print() {
        let c = Credentials::new("https://login.microsoftonline.us/", "contoso", "app", Secret::new("hush"));
        assert_eq!(c.token_url, "https://login.microsoftonline.us/contoso/oauth2/v2.0/token");
        assert!(!format!("{c:?}").contains("hush"));
    }
}
