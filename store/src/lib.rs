//! synchub's store: everything the hub must remember between runs, per user.
//!
//! A run for one user reads its state once ([`Store::load_user`]), works in memory, and
//! writes back what changed in batches ([`Store::commit`]): an incremental chunk of the
//! user's Automerge document, each contact's record (per side: link, shadow, base heads),
//! cursors, push intents and journal records — all of one batch in one transaction, durable
//! when `commit` returns. The document grows as chunks; once they outweigh the snapshot,
//! [`Store::compact`] replaces both with a fresh snapshot, cut into ≤ 64 KiB values so sled
//! can reclaim the space of old ones.
//!
//! Boundary: the store knows documents as bytes and ids as opaque strings; it never touches
//! the network and knows nothing of Automerge or of the canonical contact model.
//! Every persisted value starts with a format-version byte ([`codec`]).
//!
//! The key-value layer is a small trait ([`Kv`]) with a sled adapter and an in-memory
//! adapter; one test suite runs against both.

#![forbid(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

mod calendar;
pub mod codec;
mod docs;
mod keys;
mod kv;
mod records;
mod user;

pub use calendar::{CalendarWrite, LogEntry};
pub use keys::{key, segments};
pub use kv::{Batch, Kv, MemKv, SledKv, Tree};
pub use records::{AttemptRecord, ContactRecord, IntentRecord, SideRecord};
pub use user::{disk_bytes, DocStats, Store, UserMarks, UserState, UserWrite};

/// What can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The sled database failed (I/O, corruption, lock held by another process).
    #[error("sled: {0}")]
    Sled(#[from] sled::Error),
    /// A transaction could not be applied.
    #[error("transaction failed: {0}")]
    Transaction(String),
    /// A value written by a newer or unknown format.
    #[error("value in tree `{tree}` has unknown format version {version}")]
    UnknownFormat { tree: &'static str, version: u8 },
    /// A value that does not decode.
    #[error("corrupt value in tree `{tree}`: {detail}")]
    Corrupt { tree: &'static str, detail: String },
}

/// Result with [`StoreError`].
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
