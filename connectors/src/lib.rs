//! synchub's connectors: the Microsoft Graph (Exchange) and CRM clients, each speaking its
//! own wire types, and (feature `emulators`) emulators of both services.
//!
//! This crate knows nothing of Automerge or of the hub's canonical model. What it shares
//! with the engine is the error vocabulary: every client maps its failures to an
//! [`ErrorKind`] the engine branches on (retry after a wait, resync from scratch, read back,
//! give up for this run), the way vstorage does.
//!
//! Here: the error vocabulary, what both clients share ([`http`]), the CRM client
//! ([`crm`]), the Microsoft Graph client ([`graph`]) and, behind the feature, both emulators.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod crm;
#[cfg(feature = "emulators")]
pub mod emulators;
pub mod graph;
pub mod http;

use std::fmt;
use std::time::Duration;

/// What kind of failure a connector met; the engine decides by kind, never by message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// 429/503: wait (at least `retry_after` when the service said so) and retry.
    Throttled { retry_after: Option<Duration> },
    /// The cursor/delta token expired (410): list everything again.
    ResyncRequired,
    /// A conditional write found a newer version (412): pull again, never overwrite.
    PreconditionFailed,
    /// The item does not exist.
    NotFound,
    /// The service failed or could not be reached; the write may or may not have happened.
    Unavailable,
    /// The service sent, or refused, data that does not fit its contract.
    InvalidData,
    /// Credentials or permissions are wrong.
    AccessDenied,
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ErrorKind::Throttled { retry_after: Some(d) } => {
                write!(f, "throttled (retry after {:.1} s)", d.as_secs_f64())
            }
            ErrorKind::Throttled { retry_after: None } => f.write_str("throttled"),
            ErrorKind::ResyncRequired => f.write_str("resync required"),
            ErrorKind::PreconditionFailed => f.write_str("precondition failed"),
            ErrorKind::NotFound => f.write_str("not found"),
            ErrorKind::Unavailable => f.write_str("unavailable"),
            ErrorKind::InvalidData => f.write_str("invalid data"),
            ErrorKind::AccessDenied => f.write_str("access denied"),
        }
    }
}

/// A connector failure: its kind and what happened.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{kind}: {message}")]
pub struct ConnectorError {
    /// What the engine branches on.
    pub kind: ErrorKind,
    /// What happened, for logs and reports.
    pub message: String,
}

impl ConnectorError {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ConnectorError { kind, message: message.into() }
    }

    /// Whether the write may have been applied although it failed (read back first).
    pub fn outcome_unknown(&self) -> bool {
        matches!(self.kind, ErrorKind::Unavailable | ErrorKind::Throttled { .. })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_say_their_kind_and_message() {
        let e = ConnectorError::new(
            ErrorKind::Throttled { retry_after: Some(Duration::from_millis(1500)) },
            "mailbox busy",
        );
        assert_eq!(e.to_string(), "throttled (retry after 1.5 s): mailbox busy");
        assert!(e.outcome_unknown());
        assert!(!ConnectorError::new(ErrorKind::PreconditionFailed, "etag").outcome_unknown());
    }
}
