//! What both HTTP clients share: secrets that never print, the retry policy and its
//! backoff, `Retry-After` parsing, path-segment encoding and the JSON parser every answer
//! from outside goes through (a body that does not fit is [`ErrorKind::InvalidData`]
//! naming the field, never a panic).

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::{ConnectorError, ErrorKind};

/// A secret that never prints.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wrap a secret.
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }

    /// The secret itself, for the one place that sends it.
    pub(crate) fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("****")
    }
}

/// How often and how long to retry.
#[derive(Clone, Copy, Debug)]
pub struct RetryPolicy {
    /// Attempts in all (1: no retry).
    pub attempts: u32,
    /// The first backoff; doubled each retry, with jitter.
    pub base: Duration,
    /// The longest wait, whatever `Retry-After` says.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { attempts: 5, base: Duration::from_millis(200), max_wait: Duration::from_secs(60) }
    }
}

impl RetryPolicy {
    /// Whether a failure of `kind` after `attempt` attempts is worth another. A service that
    /// asks for a longer wait than `max_wait` is not retried early: the caller gets the
    /// error (and its `retry_after`) and comes back later.
    pub fn retries(&self, kind: &ErrorKind, attempt: u32) -> bool {
        match kind {
            ErrorKind::Throttled { retry_after: Some(d) } if *d > self.max_wait => false,
            ErrorKind::Throttled { .. } | ErrorKind::Unavailable => attempt < self.attempts,
            _ => false,
        }
    }

    /// How long to wait after failed attempt number `attempt` (1-based): the service's
    /// `Retry-After` when it sent one, else exponential backoff with jitter; never longer
    /// than `max_wait`.
    pub fn wait(&self, kind: &ErrorKind, attempt: u32) -> Duration {
        let wait = match kind {
            ErrorKind::Throttled { retry_after: Some(d) } => *d,
            _ => jitter(self.base.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))),
        };
        let wait = wait.min(self.max_wait);
        if matches!(kind, ErrorKind::Throttled { .. }) {
            THROTTLE_WAITS.fetch_add(1, Ordering::Relaxed);
            THROTTLE_MICROS.fetch_add(u64::try_from(wait.as_micros()).unwrap_or(u64::MAX), Ordering::Relaxed);
        }
        wait
    }
}

static THROTTLE_WAITS: AtomicU64 = AtomicU64::new(0);
static THROTTLE_MICROS: AtomicU64 = AtomicU64::new(0);

/// The waits throttling services asked of this process's clients so far (429 or 503, SPEC
/// A2), and their total length: for the hub's metrics.
pub fn throttle_waits() -> (u64, Duration) {
    (THROTTLE_WAITS.load(Ordering::Relaxed), Duration::from_micros(THROTTLE_MICROS.load(Ordering::Relaxed)))
}

/// `Retry-After` in (possibly decimal) seconds.
pub fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get("retry-after")?.to_str().ok()?)
}

/// A `Retry-After` value in (possibly decimal) seconds, capped at a day.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let secs: f64 = value.trim().parse().ok()?;
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(86_400.0)))
}

/// A little jitter without a random-number crate: up to a quarter more, from the clock.
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |t| t.subsec_nanos());
    d + d.mul_f64(f64::from(nanos % 1000) / 4000.0)
}

/// A path segment, percent-encoded where it must be.
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parse a JSON body of at most `limit` bytes into `T`; `what` names it in the error.
pub fn parse_json<T: DeserializeOwned>(what: &str, body: &[u8], limit: usize) -> Result<T, ConnectorError> {
    if body.len() > limit {
        return Err(ConnectorError::new(
            ErrorKind::InvalidData,
            format!("{what}: body of {} bytes is over the {limit}-byte limit", body.len()),
        ));
    }
    // Tracking the path costs an allocation per key: only a body that failed is read again
    // with it, for an error that says where.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConnectorError::new(ErrorKind::InvalidData, format!("{what}: at `{path}`: {}", e.inner()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print_and_segments_are_encoded() {
        assert_eq!(format!("{:?}", Secret::new("s3cret")), "****");
        assert_eq!(seg("a b/c"), "a%20b%2Fc");
    }

    #[test]
    fn retry_after_takes_decimal_seconds_and_wins_over_backoff() {
        assert_eq!(parse_retry_after("1.5"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after(" 2 "), Some(Duration::from_secs(2)));
        assert_eq!(parse_retry_after("-1"), None);
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
        let policy = RetryPolicy { attempts: 3, base: Duration::from_millis(100), max_wait: Duration::from_secs(5) };
        let throttled = ErrorKind::Throttled { retry_after: Some(Duration::from_secs(2)) };
        assert_eq!(policy.wait(&throttled, 1), Duration::from_secs(2));
        assert_eq!(
            policy.wait(&ErrorKind::Throttled { retry_after: Some(Duration::from_secs(60)) }, 1),
            policy.max_wait
        );
        let third = policy.wait(&ErrorKind::Unavailable, 3);
        assert!(third >= Duration::from_millis(400) && third <= Duration::from_millis(500), "{third:?}");
        assert!(policy.retries(&ErrorKind::Unavailable, 2));
        assert!(!policy.retries(&ErrorKind::Unavailable, 3));
        assert!(!policy.retries(&ErrorKind::NotFound, 1));
    }
}
