//! Field history (SPEC X8), read from the document's own change log: every change the hub
//! commits names its author (exchange, crm, hub) and carries its time.

use automerge::legacy::{Key, ObjectId, OpType};
use automerge::{ObjId, ScalarValue};
use chrono::{DateTime, Utc};

use super::doc::{author_of, decode, Author, ContactDoc, DELETED};
use crate::model::{Field, FieldValue, HubContactId};

/// One field change of a contact.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// When the change was committed.
    pub at: DateTime<Utc>,
    /// Who made it.
    pub author: Author,
    /// The field, or `None` for the tombstone.
    pub field: Option<Field>,
    /// The new value (`None`: cleared; for the tombstone, `Flag(true)` is deleted).
    pub value: Option<FieldValue>,
}

/// Every change of `hub`'s fields, oldest first (in causal order, then by time).
pub fn field_history(doc: &mut ContactDoc, hub: HubContactId) -> Vec<FieldChange> {
    let Some(ObjId::Id(counter, actor, _)) = doc.contact_obj(hub) else { return Vec::new() };
    let mut out = Vec::new();
    for change in doc.automerge().get_changes(&[]) {
        let author = author_of(&change);
        let at = DateTime::from_timestamp_millis(change.timestamp()).unwrap_or_default();
        for op in change.decode().operations {
            let ObjectId::Id(id) = &op.obj else { continue };
            if id.0 != counter || id.1 != actor {
                continue;
            }
            if let (Key::Map(key), OpType::Put(value)) = (&op.key, &op.action) {
                out.push(change_of(at, author, key, value));
            }
        }
    }
    out.sort_by_key(|c| c.at);
    out
}

fn change_of(at: DateTime<Utc>, author: Author, key: &str, value: &ScalarValue) -> FieldChange {
    if key == DELETED {
        let deleted = matches!(value, ScalarValue::Boolean(true));
        return FieldChange { at, author, field: None, value: deleted.then_some(FieldValue::Flag(true)) };
    }
    let field = key.parse::<Field>().ok();
    let value = field.and_then(|f| decode(f, &automerge::Value::Scalar(std::borrow::Cow::Borrowed(value))));
    FieldChange { at, author, field, value }
}
