//! The user's Automerge document: `contacts: { <hub id>: { <field>: value, "deleted": bool } }`.
//! Every field is a last-writer-wins register; "not set" is `null`, so a clear and a
//! concurrent edit meet as two values instead of the clear vanishing.

use std::collections::HashMap;
use std::ops::RangeFull;

use automerge::transaction::{CommitOptions, Transactable};
use automerge::{
    hydrate, Automerge, ChangeHash, ObjId, ObjType, PatchLog, ReadDoc, ScalarValue, Value, ValueRef, ROOT,
};

use super::MergeError;
use crate::model::{ContactFields, Field, FieldKind, FieldValue, HubContactId, Side};

/// Document heads.
pub type Heads = Vec<ChangeHash>;

/// The key of the tombstone flag in a contact's map.
pub const DELETED: &str = "deleted";
const CONTACTS: &str = "contacts";

/// Who made a change, recorded as the change's message (SPEC X8).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Author {
    /// Observed on a side.
    Side(Side),
    /// Written by the hub itself (genesis, conflict winners, resurrections).
    Hub,
}

impl Author {
    /// The name stored in the change message and shown by the history API.
    pub fn name(self) -> &'static str {
        match self {
            Author::Side(s) => s.name(),
            Author::Hub => "hub",
        }
    }

    fn parse(message: Option<&str>) -> Author {
        match message {
            Some("exchange") => Author::Side(Side::Exchange),
            Some("crm") => Author::Side(Side::Crm),
            _ => Author::Hub,
        }
    }
}

/// A contact as the document shows it at some heads.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocContact {
    /// The set fields.
    pub fields: ContactFields,
    /// The tombstone.
    pub deleted: bool,
}

/// The document with its `contacts` map and a cache of contact object ids.
#[derive(Clone)]
pub struct ContactDoc {
    doc: Automerge,
    /// The `contacts` map; `None` until the first contact is created.
    contacts: Option<ObjId>,
    objs: HashMap<HubContactId, ObjId>,
}

/// A field value as the document stores it.
pub fn encode(value: Option<&FieldValue>) -> ScalarValue {
    match value {
        None => ScalarValue::Null,
        Some(FieldValue::Text(s)) => ScalarValue::Str(s.as_str().into()),
        Some(FieldValue::Flag(b)) => ScalarValue::Boolean(*b),
        Some(FieldValue::List(items)) => {
            ScalarValue::Str(serde_json::to_string(items).unwrap_or_else(|_| "[]".into()).into())
        }
    }
}

fn decode_str(field: Field, s: &str) -> Option<FieldValue> {
    let v = match field.kind() {
        FieldKind::List => FieldValue::List(serde_json::from_str(s).unwrap_or_else(|_| vec![s.to_string()])),
        FieldKind::Flag => FieldValue::Flag(s == "true"),
        _ => FieldValue::Text(s.to_string()),
    };
    v.normalise()
}

/// A document value read back as a field value (`None`: not set).
pub fn decode(field: Field, value: &Value<'_>) -> Option<FieldValue> {
    match value {
        Value::Scalar(s) => match s.as_ref() {
            ScalarValue::Str(s) => decode_str(field, s),
            ScalarValue::Boolean(b) => FieldValue::Flag(*b).normalise(),
            _ => None,
        },
        Value::Object(_) => None,
    }
}

fn decode_ref(field: Field, value: &ValueRef<'_>) -> Option<FieldValue> {
    match value {
        ValueRef::Scalar(automerge::ScalarValueRef::Str(s)) => decode_str(field, s),
        ValueRef::Scalar(automerge::ScalarValueRef::Boolean(b)) => FieldValue::Flag(*b).normalise(),
        _ => None,
    }
}

impl ContactDoc {
    /// A new, empty document. Its first change (the genesis) creates the `contacts` map
    /// together with the first contacts, in one batch.
    pub fn new() -> ContactDoc {
        ContactDoc { doc: Automerge::new(), contacts: None, objs: HashMap::new() }
    }

    /// Load a saved document (snapshot followed by incremental chunks).
    pub fn load(bytes: &[u8]) -> Result<ContactDoc, MergeError> {
        if bytes.is_empty() {
            return Ok(ContactDoc::new());
        }
        let doc = Automerge::load(bytes)?;
        let contacts = match doc.get(ROOT, CONTACTS)? {
            Some((Value::Object(ObjType::Map), id)) => Some(id),
            None => None,
            Some(_) => return Err(MergeError::Malformed("the document's `contacts` is not a map".into())),
        };
        Ok(ContactDoc { doc, contacts, objs: HashMap::new() })
    }

    /// The whole document, compressed (a snapshot).
    pub fn save(&self) -> Vec<u8> {
        self.doc.save()
    }

    /// The changes since `heads`, as incremental bytes.
    pub fn save_after(&self, heads: &[ChangeHash]) -> Vec<u8> {
        self.doc.save_after(heads)
    }

    /// The current heads.
    pub fn heads(&self) -> Heads {
        self.doc.get_heads()
    }

    /// The Automerge document, read-only.
    pub fn automerge(&self) -> &Automerge {
        &self.doc
    }

    /// The Automerge document, for transactions. Callers commit with an [`Author`] message.
    pub fn automerge_mut(&mut self) -> &mut Automerge {
        &mut self.doc
    }

    /// The object of contact `hub`, if the document has it.
    pub fn contact_obj(&mut self, hub: HubContactId) -> Option<ObjId> {
        if let Some(obj) = self.objs.get(&hub) {
            return Some(obj.clone());
        }
        match self.doc.get(self.contacts.as_ref()?, hub.to_string()) {
            Ok(Some((Value::Object(ObjType::Map), obj))) => {
                self.objs.insert(hub, obj.clone());
                Some(obj)
            }
            _ => None,
        }
    }

    /// Every contact's hub id (live and deleted).
    pub fn contact_ids(&self) -> Vec<HubContactId> {
        let Some(contacts) = &self.contacts else { return Vec::new() };
        self.doc.map_range(contacts, ..).filter_map(|item| item.key.parse().ok()).collect()
    }

    /// A contact as the document shows it at `heads` (`None`: now).
    pub fn read(&self, obj: &ObjId, heads: Option<&[ChangeHash]>) -> DocContact {
        let range = match heads {
            Some(h) => self.doc.map_range_at(obj, RangeFull, h),
            None => self.doc.map_range(obj, RangeFull),
        };
        let mut out = DocContact::default();
        for item in range {
            if item.key == DELETED {
                out.deleted = matches!(item.value, ValueRef::Scalar(automerge::ScalarValueRef::Boolean(true)));
            } else if let Ok(field) = item.key.parse::<Field>() {
                out.fields.set(field, decode_ref(field, &item.value));
            }
        }
        out
    }

    /// Create contacts in one change made by `author`; returns the change's hash (none when
    /// `contacts` is empty).
    pub fn create(
        &mut self,
        author: Author,
        contacts: &[(HubContactId, ContactFields)],
        time: i64,
    ) -> Result<Option<ChangeHash>, MergeError> {
        if contacts.is_empty() {
            return Ok(None);
        }
        let mut tx = self.doc.transaction();
        let contact = |fields: &ContactFields| {
            let mut map = hydrate::Map::default();
            map.reserve(fields.len());
            for (f, v) in fields.iter() {
                let value = hydrate::Value::Scalar(encode(Some(v)));
                map.insert(f.name().to_string(), hydrate::MapValue { value, conflict: false });
            }
            hydrate::Value::Map(map)
        };
        let mut made = Vec::new();
        match &self.contacts {
            Some(parent) => {
                for (hub, fields) in contacts {
                    made.push((*hub, tx.batch_create_object(parent, hub.to_string(), &contact(fields), false)?));
                }
            }
            None => {
                // The genesis: the map and every first contact in one batch (much faster than
                // one batch per contact); their object ids are looked up when first needed.
                let mut all = hydrate::Map::default();
                all.reserve(contacts.len());
                for (hub, fields) in contacts {
                    all.insert(hub.to_string(), hydrate::MapValue { value: contact(fields), conflict: false });
                }
                let map = hydrate::Value::Map(all);
                self.contacts = Some(tx.batch_create_object(ROOT, CONTACTS, &map, false)?);
            }
        }
        let (hash, _) = tx.commit_with(CommitOptions::default().with_message(author.name()).with_time(time));
        self.objs.extend(made);
        Ok(hash)
    }
}

impl Default for ContactDoc {
    fn default() -> Self {
        ContactDoc::new()
    }
}

/// Write `(contact, key, value)` puts at `heads` as one change by `author`. Returns the
/// change hash, or `None` when every put equalled what was visible at `heads` (no op).
pub fn write_at(
    doc: &mut Automerge,
    heads: Option<&[ChangeHash]>,
    author: Author,
    time: i64,
    puts: &[(ObjId, &str, ScalarValue)],
) -> Result<Option<ChangeHash>, MergeError> {
    if puts.is_empty() {
        return Ok(None);
    }
    let mut tx = match heads {
        Some(h) => doc.transaction_at(PatchLog::null(), h).map_err(|e| MergeError::Malformed(e.to_string()))?,
        None => doc.transaction(),
    };
    for (obj, key, value) in puts {
        tx.put(obj, *key, value.clone())?;
    }
    Ok(tx.commit_with(CommitOptions::default().with_message(author.name()).with_time(time)).0)
}

/// The author recorded for a change.
pub fn author_of(change: &automerge::Change) -> Author {
    Author::parse(change.message())
}
