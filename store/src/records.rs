//! The records the store keeps per (user, side, contact).

use serde::{Deserialize, Serialize};

/// What synchub knows of one contact on one side: the link to that side's item, the shadow
/// (the mapped values that side holds, encoded by the hub) and the base heads (the
/// document heads the side's copy corresponds to). Invariant kept by the hub: the document
/// read at `base` equals `shadow`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SideRecord {
    /// The side's item id, when the side holds the contact.
    pub item: Option<String>,
    /// The item's etag / version as last seen, for conditional updates.
    pub etag: Option<String>,
    /// Document heads (32-byte change hashes).
    pub base: Vec<[u8; 32]>,
    /// The shadow, opaque to the store.
    pub shadow: Vec<u8>,
    /// Whether the side's item carries synchub's stamps.
    pub stamped: bool,
    /// The item the side held before it let the contact go (a CRM list entry removed while
    /// the firm record stays): a re-create adds that record back instead of making another.
    pub previous: Option<String>,
}

/// Everything stored for one contact of a user: its record on each side that has one
/// (side name, record) and the pushes pending on each side. One key per contact keeps
/// sled's per-key overhead down: a run's plan and each push's answer write the contact's
/// one record, not a record and an intent.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactRecord {
    /// (side, record).
    pub sides: Vec<(String, SideRecord)>,
    /// (side, intent): the pushes planned or attempted and not yet confirmed.
    pub intents: Vec<(String, IntentRecord)>,
}

impl ContactRecord {
    /// Whether there is nothing to keep (the record is deleted instead).
    pub fn is_empty(&self) -> bool {
        self.sides.is_empty() && self.intents.is_empty()
    }
}

/// A contact record of format version 2, which kept intents under keys of their own.
#[derive(Deserialize)]
pub(crate) struct ContactRecordV2 {
    sides: Vec<(String, SideRecord)>,
}

impl From<ContactRecordV2> for ContactRecord {
    fn from(old: ContactRecordV2) -> Self {
        ContactRecord { sides: old.sides, intents: Vec::new() }
    }
}

/// The contacts of one push batch about to be made: their intents count as attempted while
/// the mark is stored, so a batch is marked with one write instead of one per intent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttemptRecord {
    /// The contacts' hub ids.
    pub hubs: Vec<String>,
}

/// A push the hub is about to make, written before it is made so that a crash between the
/// push and its bookkeeping can be told apart on the next run (SPEC N1). Kept in the
/// contact's record; a store of format version 2 has them under keys of their own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IntentRecord {
    /// `create`, `update` or `delete`, as the hub names them.
    pub op: String,
    /// The document heads the pushed values were read at.
    pub heads: Vec<[u8; 32]>,
    /// The pushed values, opaque to the store.
    pub fields: Vec<u8>,
    /// Whether the push was started (its outcome may be unknown) or only planned. A planned
    /// intent whose contact an [`AttemptRecord`] of the same side lists counts as attempted.
    pub attempted: bool,
}
