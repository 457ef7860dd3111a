//! The merge core: each side is a replica of the user's Automerge document (DESIGN.md
//! "The core idea"). No I/O here: a driver pulls, calls these functions, pushes.
//!
//! A run: [`Merge::observe`] each side's changes (diff against the shadow, write only the
//! differing fields at the contact's base heads), [`Merge::resolve`] (deletes with the
//! resurrect rule, then one winner for every field written with concurrent values),
//! [`materialise::plan`] the pushes per side, [`materialise::record`] each outcome.

mod doc;
pub mod history;
pub mod join;
pub mod materialise;
mod observe;
mod run;
mod state;

use chrono::{DateTime, Utc};

pub use doc::{Author, ContactDoc, DocContact, Heads};
pub use materialise::{PushOp, PushOutcome};
pub use run::{Conflict, Merge, RunCtx, RunLog, Slot};
pub use state::{Intent, PushKind, Shadow, SideEntry, SideState, UserReplica};

use crate::model::{ContactFields, HubContactId, ItemId, ModelError};

/// An item as a side reports it, mapped to canonical fields.
#[derive(Clone, Debug, PartialEq)]
pub struct SideItem {
    /// The mapped fields.
    pub fields: ContactFields,
    /// When the side last modified it (decides same-field conflicts between sides).
    pub modified: DateTime<Utc>,
    /// Its etag / version.
    pub etag: Option<String>,
    /// The hub id stamped on it, if any (SPEC X9).
    pub stamp: Option<HubContactId>,
}

/// What happened to an item.
#[derive(Clone, Debug, PartialEq)]
pub enum ItemChange {
    /// Created or changed: its current state.
    Upsert(SideItem),
    /// Deleted (or removed from the list / folder).
    Removed,
}

/// One entry of a side's change feed.
#[derive(Clone, Debug, PartialEq)]
pub struct Observed {
    /// The side's item id.
    pub item: ItemId,
    /// What happened.
    pub change: ItemChange,
}

/// What can go wrong in the merge core.
#[derive(Debug, thiserror::Error)]
pub enum MergeError {
    /// Automerge refused an operation or a document.
    #[error("automerge: {0}")]
    Automerge(#[from] automerge::AutomergeError),
    /// The store failed.
    #[error("store: {0}")]
    Store(#[from] synchub_store::StoreError),
    /// Stored state that does not make sense.
    #[error("malformed state: {0}")]
    Malformed(String),
    /// A stored id that does not parse.
    #[error("bad id in the store: {0}")]
    Id(#[from] ModelError),
}

#[cfg(test)]
mod tests;
