//! The CRM's JSON types, field for field as CRM_API.md names them, and the parser every
//! CRM answer goes through: a body that does not fit gets [`ErrorKind::InvalidData`]
//! naming the field (never a panic). Fields the contract does not name are kept in
//! `extra` and written back as read, since the CRM keeps data beyond the contract and a
//! client writes contacts back whole (read-modify-write).

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::ConnectorError;
#[cfg(test)]
use crate::ErrorKind;

/// Fields the contract does not name, kept as read.
pub type Extra = serde_json::Map<String, serde_json::Value>;

/// A contact's name parts.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Name {
    pub prefix: String,
    pub first: String,
    pub middle: String,
    pub last: String,
    pub suffix: String,
    pub nickname: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// An e-mail address of a kind (`business`, `home`, `other`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Email {
    pub kind: String,
    pub address: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A phone number of a kind (`business`, `business2`, `home`, `home2`, `mobile`,
/// `business_fax`, `home_fax`, `other`, `assistant`, `pager`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Phone {
    pub kind: String,
    pub number: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A postal address of a kind (`business`, `home`, `other`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Address {
    pub kind: String,
    pub street: String,
    pub city: String,
    pub region: String,
    pub postcode: String,
    pub country: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A user's own entry for a contact in their list (list-level fields, SPEC C11).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Entry {
    pub user_id: String,
    pub version: u64,
    pub external_ref: Option<String>,
    pub notes: String,
    pub categories: Vec<String>,
    pub private: bool,
    pub updated_at: String,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A firm contact, with the requesting user's entry when read from a list.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Contact {
    #[serde(skip_serializing_if = "String::is_empty")]
    pub contact_id: String,
    pub version: u64,
    pub owner_user_id: Option<String>,
    pub name: Name,
    pub company: String,
    pub department: String,
    pub job_title: String,
    pub emails: Vec<Email>,
    pub phones: Vec<Phone>,
    pub addresses: Vec<Address>,
    pub web_site: String,
    pub birth_date: Option<String>,
    pub assistant: String,
    pub spouse: String,
    pub updated_at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One change of a user's list feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Change {
    pub contact_id: String,
    pub op: ChangeOp,
    pub contact: Option<Contact>,
}

/// What happened to a contact in the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeOp {
    /// Added or changed: `contact` holds it, with the user's entry.
    Upsert,
    /// Taken out of the list.
    Remove,
}

/// A page of a user's list feed.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FeedPage {
    pub changes: Vec<Change>,
    pub cursor: String,
    pub more: bool,
}

/// A CRM user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub id: String,
    pub login: String,
    pub email: String,
    pub display_name: String,
}

/// A proxy of a user.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Proxy {
    pub user_id: String,
}

/// An appointment attendee.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Attendee {
    pub email: String,
    pub name: String,
    pub contact_id: Option<String>,
    pub user_id: Option<String>,
}

/// A firm-level appointment.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Appointment {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub appointment_id: String,
    #[serde(default)]
    pub version: u64,
    pub external_ref: String,
    pub organizer_user_id: String,
    pub subject: String,
    pub start: String,
    pub end: String,
    pub all_day: bool,
    pub location: String,
    pub status: AppointmentStatus,
    pub attendees: Vec<Attendee>,
    pub flagged_by: Vec<String>,
    #[serde(default)]
    pub updated_at: String,
}

/// An appointment's status.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AppointmentStatus {
    Scheduled,
    Held,
    Cancelled,
}

/// The CRM's error body.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// Code and message of a CRM error.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// The largest body the client accepts from the CRM (the CRM's own limit, CRM_API.md).
pub const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Parse a CRM answer of type `T`; what does not fit is [`ErrorKind::InvalidData`] with the
/// path of the offending field.
pub fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ConnectorError> {
    crate::http::parse_json(what, body, MAX_BODY_BYTES)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const FEED: &str = r#"{
      "changes": [
        {"contact_id": "c-1", "op": "upsert", "contact": {
          "contact_id": "c-1", "version": 3, "owner_user_id": "u-1",
          "name": {"prefix": "Ms.", "first": "Jane", "middle": "", "last": "Tarnoff", "suffix": "", "nickname": "J"},
          "company": "Acme", "department": "Legal", "job_title": "Partner",
          "emails": [{"kind": "business", "address": "jane@acme.com"}],
          "phones": [{"kind": "mobile", "number": "+1 917 555 0100"}],
          "addresses": [{"kind": "business", "street": "1 Main St", "city": "New York", "region": "NY",
                         "postcode": "10001", "country": "US"}],
          "web_site": "https://acme.com", "birth_date": "1970-02-01", "assistant": "", "spouse": "",
          "updated_at": "2026-11-25T10:00:00Z",
          "crm_only_rating": 5,
          "entry": {"user_id": "u-1", "version": 2, "external_ref": "hub-1", "notes": "met in 2019",
                    "categories": ["Clients"], "private": true, "updated_at": "2026-11-25T10:00:00Z"}}},
        {"contact_id": "c-2", "op": "remove", "contact": null}
      ],
      "cursor": "42", "more": false
    }"#;

    #[test]
    fn a_feed_page_parses_and_keeps_fields_beyond_the_contract() {
        let page: FeedPage = parse("feed", FEED.as_bytes()).unwrap();
        assert_eq!(page.cursor, "42");
        assert!(!page.more);
        let c = page.changes[0].contact.as_ref().unwrap();
        assert_eq!(c.name.last, "Tarnoff");
        assert_eq!(c.entry.as_ref().unwrap().external_ref.as_deref(), Some("hub-1"));
        assert!(c.entry.as_ref().unwrap().private);
        assert_eq!(c.extra.get("crm_only_rating"), Some(&serde_json::json!(5)));
        assert_eq!(page.changes[1].op, ChangeOp::Remove);
        let written = serde_json::to_value(c).unwrap();
        assert_eq!(written["crm_only_rating"], 5, "written back as read");
    }

    #[test]
    fn a_body_that_does_not_fit_names_the_field() {
        let bad = FEED.replace(r#""version": 3"#, r#""version": "three""#);
        let err = parse::<FeedPage>("feed", bad.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidData);
        assert!(err.message.contains("changes[0].contact.version"), "{}", err.message);
        let err = parse::<FeedPage>("feed", br#"{"changes": [], "more": false}"#).unwrap_err();
        assert!(err.message.contains("missing field `cursor`"), "{}", err.message);
        let err = parse::<FeedPage>("feed", &vec![b' '; MAX_BODY_BYTES + 1]).unwrap_err();
        assert!(err.message.contains("over the"), "{}", err.message);
    }

    #[test]
    fn unnamed_fields_are_kept_at_every_level_and_named_ones_checked() {
        let body = br#"{"name": {"first": "Jo", "title": "Dr"}, "emails": [{"kind": "home", "address": "a@b.c", "primary": true}],
            "phones": [{"kind": "mobile", "number": "1", "ext": "2"}], "addresses": [{"city": "Oslo", "geo": [1, 2]}],
            "entry": {"notes": "n", "pinned": true}, "rating": null}"#;
        let c: Contact = parse("contact", body).unwrap();
        assert_eq!((c.name.first.as_str(), c.name.extra["title"].as_str()), ("Jo", Some("Dr")));
        assert_eq!(c.emails[0].extra["primary"], serde_json::json!(true));
        assert_eq!(c.phones[0].extra["ext"], serde_json::json!("2"));
        assert_eq!(c.addresses[0].extra["geo"], serde_json::json!([1, 2]));
        assert_eq!(c.entry.as_ref().unwrap().extra["pinned"], serde_json::json!(true));
        assert_eq!(c.extra["rating"], serde_json::Value::Null);
        assert_eq!(c.version, 0, "a missing field takes its default");
        let err = parse::<Contact>("contact", br#"{"emails": [{"kind": "home"}]}"#).unwrap_err();
        assert!(
            err.message.contains("emails[0]") && err.message.contains("missing field `address`"),
            "{}",
            err.message
        );
        let err = parse::<Contact>("contact", br#"{"company": "A", "company": "B"}"#).unwrap_err();
        assert!(err.message.contains("duplicate field `company`"), "{}", err.message);
        let err = parse::<Contact>("contact", br#"{"name": {"last": 7}}"#).unwrap_err();
        assert!(err.message.contains("name.last"), "{}", err.message);
    }

    fn text() -> impl Strategy<Value = String> {
        prop_oneof![Just(String::new()), "[a-zA-Z0-9 .@\\\"é]{1,12}"]
    }

    /// Fields beyond the contract: keys no contract field has.
    fn extra() -> impl Strategy<Value = Extra> {
        let value = prop_oneof![
            Just(serde_json::Value::Null),
            any::<i64>().prop_map(serde_json::Value::from),
            text().prop_map(serde_json::Value::from),
            prop::collection::vec(text(), 0..3).prop_map(serde_json::Value::from),
        ];
        prop::collection::btree_map("x_[a-z]{1,6}", value, 0..3).prop_map(|m| m.into_iter().collect())
    }

    prop_compose! {
        fn contact()(
            names in prop::collection::vec(text(), 6), texts in prop::collection::vec(text(), 8),
            version in any::<u64>(), owner in prop::option::of(text()), birth in prop::option::of(text()),
            emails in prop::collection::vec((text(), text(), extra()), 0..3),
            phones in prop::collection::vec((text(), text(), extra()), 0..3),
            addresses in prop::collection::vec((prop::collection::vec(text(), 6), extra()), 0..2),
            entry in prop::option::of((text(), any::<u64>(), prop::option::of(text()), prop::collection::vec(text(), 0..3), any::<bool>(), extra())),
            extras in prop::collection::vec(extra(), 3),
        ) -> Contact {
            let [prefix, first, middle, last, suffix, nickname] = names.try_into().unwrap();
            let [contact_id, company, department, job_title, web_site, assistant, spouse, updated_at] = texts.try_into().unwrap();
            let [name_extra, contact_extra, _] = extras.try_into().unwrap();
            Contact {
                contact_id, version, owner_user_id: owner, company, department, job_title, web_site,
                birth_date: birth, assistant, spouse, updated_at: updated_at.clone(),
                name: Name { prefix, first, middle, last, suffix, nickname, extra: name_extra },
                emails: emails.into_iter().map(|(kind, address, extra)| Email { kind, address, extra }).collect(),
                phones: phones.into_iter().map(|(kind, number, extra)| Phone { kind, number, extra }).collect(),
                addresses: addresses.into_iter().map(|(parts, extra)| {
                    let [kind, street, city, region, postcode, country] = parts.try_into().unwrap();
                    Address { kind, street, city, region, postcode, country, extra }
                }).collect(),
                entry: entry.map(|(user_id, version, external_ref, categories, private, extra)| Entry {
                    user_id, version, external_ref, notes: String::new(), categories, private, updated_at: updated_at.clone(), extra,
                }),
                extra: contact_extra,
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
        /// What the client writes, the CRM's answer as the emulator writes it, reads back
        /// the same: every named field and every field beyond the contract.
        #[test]
        fn a_contact_reads_back_as_written(c in contact()) {
            let body = serde_json::to_vec(&c).unwrap();
            let back: Contact = parse("contact", &body).unwrap();
            prop_assert_eq!(back, c);
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
        /// Arbitrary bytes never panic the parser: a page or a clear error.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse::<FeedPage>("feed", &body);
        }

        /// A valid feed with one byte changed parses or fails with InvalidData, never panics.
        #[test]
        fn mutated_feeds_parse_or_fail_cleanly(at in 0..FEED.len(), byte in any::<u8>()) {
            let mut body = FEED.as_bytes().to_vec();
            body[at] = byte;
            if let Err(e) = parse::<FeedPage>("feed", &body) {
                prop_assert_eq!(e.kind, ErrorKind::InvalidData);
            }
        }
    }
}
