//! Microsoft Graph v1.0's JSON, as its published reference shapes it: contacts (with
//! single-value extended properties), contact folders, users, events, delta pages with
//! `@odata.nextLink` / `@odata.deltaLink` and `@removed`, JSON batching, the token
//! endpoint's answer and the error body. Properties synchub does not read are ignored on
//! the way in (Graph adds properties over time); on the way out only what is set is sent.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::ConnectorError;

/// The largest body the client reads from Graph (a delta page of the largest size
/// synchub asks for, with long notes, fits many times over).
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;

/// Parse a Graph answer of type `T`; what does not fit is [`crate::ErrorKind::InvalidData`]
/// with the path of the offending field.
pub fn parse<T: DeserializeOwned>(what: &str, body: &[u8]) -> Result<T, ConnectorError> {
    crate::http::parse_json(what, body, MAX_BODY_BYTES)
}

fn is_false(b: &bool) -> bool {
    !*b
}

/// `emailAddress`: a name and an address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct EmailAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub address: Option<String>,
}

/// `physicalAddress`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct PhysicalAddress {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub street: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub postal_code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub country_or_region: Option<String>,
}

impl PhysicalAddress {
    /// Whether no part is set.
    pub fn is_empty(&self) -> bool {
        [&self.street, &self.city, &self.state, &self.postal_code, &self.country_or_region]
            .iter()
            .all(|p| p.as_deref().is_none_or(str::is_empty))
    }
}

/// `singleValueLegacyExtendedProperty`: a MAPI property by id, its value as a string.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExtendedProperty {
    pub id: String,
    pub value: String,
}

/// `@removed` on a delta item: the item left the collection.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Removed {
    /// `deleted` or `changed` (moved out of scope).
    pub reason: String,
}

/// A `contact`. Every property is optional: delta and `$select` return subsets, and a
/// PATCH sends only what changes.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Contact {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(rename = "@odata.etag", skip_serializing_if = "Option::is_none")]
    pub etag: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub change_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_folder_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_as: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub given_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub middle_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub surname: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub generation: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nick_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job_title: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub company_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub department: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email_addresses: Option<Vec<EmailAddress>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_phones: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_phones: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mobile_phone: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_address: Option<PhysicalAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub home_address: Option<PhysicalAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub other_address: Option<PhysicalAddress>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub business_home_page: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub birthday: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spouse_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub personal_notes: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub single_value_extended_properties: Option<Vec<ExtendedProperty>>,
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// The properties a contact may be written with (Graph refuses others): those [`Contact`]
/// maps, and some it leaves alone.
pub const CONTACT_PROPERTIES: [&str; 31] = [
    "displayName",
    "fileAs",
    "title",
    "givenName",
    "middleName",
    "surname",
    "generation",
    "nickName",
    "jobTitle",
    "companyName",
    "department",
    "assistantName",
    "emailAddresses",
    "businessPhones",
    "homePhones",
    "mobilePhone",
    "businessAddress",
    "homeAddress",
    "otherAddress",
    "businessHomePage",
    "birthday",
    "spouseName",
    "personalNotes",
    "categories",
    "singleValueExtendedProperties",
    "initials",
    "officeLocation",
    "profession",
    "manager",
    "imAddresses",
    "children",
];

/// A value of the writable contact property `key`, of its type, for property tests: `pick`
/// 0 is none, 1 an empty one (where the type has one), 2 and up told apart by the number.
#[cfg(test)]
pub(crate) fn sample_property(key: &str, pick: usize) -> Option<serde_json::Value> {
    use serde_json::{json, Value};
    Some(match (key, pick) {
        (_, 0) => return None,
        ("emailAddresses", n) => json!([{"address": format!("a{n}@x.example")}]),
        ("businessPhones" | "homePhones" | "categories", n) => json!(vec![format!("v{n}"); n - 1]),
        ("businessAddress" | "homeAddress" | "otherAddress", n) => json!({"city": format!("c{n}")}),
        ("singleValueExtendedProperties", n) => json!([{"id": super::props::HUB_ID, "value": format!("h{n}")}]),
        (_, 1) => Value::String(String::new()),
        (_, n) => Value::String(format!("v{n}")),
    })
}

impl Contact {
    /// The value of the extended property `id` (ids compare case-insensitively, as
    /// Exchange compares them).
    pub fn extended(&self, id: &str) -> Option<&str> {
        self.single_value_extended_properties
            .as_ref()?
            .iter()
            .find(|p| p.id.eq_ignore_ascii_case(id))
            .map(|p| p.value.as_str())
    }

    /// Set (or replace) the extended property `id`.
    pub fn set_extended(&mut self, id: &str, value: impl Into<String>) {
        let props = self.single_value_extended_properties.get_or_insert_with(Vec::new);
        let value = value.into();
        match props.iter_mut().find(|p| p.id.eq_ignore_ascii_case(id)) {
            Some(p) => p.value = value,
            None => props.push(ExtendedProperty { id: id.to_string(), value }),
        }
    }
}

/// A `contactFolder`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ContactFolder {
    pub id: String,
    pub display_name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent_folder_id: Option<String>,
}

/// A `user` (the properties synchub selects).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct User {
    pub id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mail: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub user_principal_name: Option<String>,
}

/// `dateTimeTimeZone`: a wall-clock time and its zone (synchub asks for UTC).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct DateTimeTimeZone {
    pub date_time: String,
    pub time_zone: String,
}

/// A `location` (the part synchub uses).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Location {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
}

/// `recipient`: an organizer.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Recipient {
    pub email_address: EmailAddress,
}

/// `responseStatus`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct ResponseStatus {
    pub response: String,
}

/// An `attendee`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Attendee {
    /// `required`, `optional` or `resource`.
    #[serde(rename = "type")]
    pub kind: String,
    pub status: ResponseStatus,
    pub email_address: EmailAddress,
}

/// An `event` (the properties SPEC K2–K5 need), or a delta's `@removed` stub.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub struct Event {
    pub id: String,
    #[serde(rename = "iCalUId", skip_serializing_if = "Option::is_none")]
    pub ical_uid: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
    /// `singleInstance`, `occurrence`, `exception` or `seriesMaster`.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// `normal`, `personal`, `private` or `confidential`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<String>,
    #[serde(skip_serializing_if = "is_false")]
    pub is_cancelled: bool,
    #[serde(skip_serializing_if = "is_false")]
    pub is_all_day: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTimeTimeZone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTimeTimeZone>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organizer: Option<Recipient>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attendees: Option<Vec<Attendee>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub series_master_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub last_modified_date_time: Option<String>,
    #[serde(rename = "@removed", skip_serializing_if = "Option::is_none")]
    pub removed: Option<Removed>,
}

/// A page of a collection or of a delta round.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Page<T> {
    #[serde(default = "Vec::new")]
    pub value: Vec<T>,
    #[serde(rename = "@odata.nextLink", default, skip_serializing_if = "Option::is_none")]
    pub next_link: Option<String>,
    #[serde(rename = "@odata.deltaLink", default, skip_serializing_if = "Option::is_none")]
    pub delta_link: Option<String>,
}

/// One request of a JSON batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchRequest {
    pub id: String,
    pub method: String,
    /// Relative to the version root, e.g. `/users/{id}/contacts/{id}`.
    pub url: String,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The body as JSON text, passed through as it is (never parsed into a tree and
    /// written again on the way).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<Box<RawValue>>,
    /// Requests that must run first (Graph runs the others in parallel); when one of them
    /// fails this one is not run and answers 424.
    #[serde(rename = "dependsOn", default, skip_serializing_if = "Vec::is_empty")]
    pub depends_on: Vec<String>,
}

/// A JSON batch (`POST /$batch`), at most [`MAX_BATCH`] requests.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Batch {
    pub requests: Vec<BatchRequest>,
}

/// Graph's limit on requests in one batch.
pub const MAX_BATCH: usize = 20;

/// One answer of a JSON batch (answers may come in any order; `id` pairs them).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchResponse {
    pub id: String,
    pub status: u16,
    #[serde(default)]
    pub headers: serde_json::Map<String, serde_json::Value>,
    /// The body as JSON text, read by whoever asked for it into the type it expects.
    #[serde(default)]
    pub body: Option<Box<RawValue>>,
}

/// The answer to a JSON batch.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct BatchAnswer {
    pub responses: Vec<BatchResponse>,
}

/// The token endpoint's answer (client-credentials grant).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenAnswer {
    pub token_type: String,
    pub expires_in: u64,
    pub access_token: String,
}

/// The token endpoint's error (`{"error": "invalid_client", "error_description": …}`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TokenError {
    pub error: String,
    #[serde(default)]
    pub error_description: String,
}

/// Graph's error body: `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// The inside of [`ErrorBody`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    pub code: String,
    #[serde(default)]
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ErrorKind;
    use proptest::prelude::*;

    /// A contact delta page as Graph's reference shows one: `@odata` annotations, properties
    /// synchub does not map (which are ignored), and a removed item.
    const DELTA: &str = r##"{
      "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Collection(contact)",
      "@odata.nextLink": "https://graph.microsoft.com/v1.0/users/u1/contactFolders/AQMk/contacts/delta?$skiptoken=R0usmcCM996",
      "value": [
        {
          "@odata.type": "#microsoft.graph.contact",
          "@odata.etag": "W/\"EQAAABYAAAAT3PQP0XSBRYhRmpsZ6/uwAAAhd8bg\"",
          "id": "AAMkADAwATM0MDAAMS0yMDkyLWU3YjYtMDACLTAwCgBGAAAD",
          "createdDateTime": "2026-11-20T09:15:00Z",
          "lastModifiedDateTime": "2026-11-24T16:20:05Z",
          "changeKey": "EQAAABYAAAAT3PQP0XSBRYhRmpsZ6/uwAAAhd8bg",
          "categories": ["Clients"],
          "parentFolderId": "AQMkADAwATM0MDAAMS0yMDkyLWU3YjYtMDACLTAwCgAuAAAD",
          "birthday": "1974-05-12T11:59:00Z",
          "fileAs": "Tarnoff, Jane",
          "displayName": "Jane Tarnoff",
          "givenName": "Jane",
          "initials": "J.T.",
          "middleName": null,
          "nickName": "JT",
          "surname": "Tarnoff",
          "title": "Ms.",
          "yomiGivenName": null,
          "generation": null,
          "imAddresses": ["jane@acme.example"],
          "jobTitle": "General Counsel",
          "companyName": "Acme",
          "department": "Legal",
          "officeLocation": "12th floor",
          "profession": null,
          "businessHomePage": "https://acme.example",
          "assistantName": "Sam",
          "manager": "",
          "homePhones": [],
          "mobilePhone": "+1 917 555 0100",
          "businessPhones": ["+1 212 555 0100", "+1 212 555 0199"],
          "spouseName": "",
          "personalNotes": "Met at the\r\nannual dinner",
          "children": [],
          "emailAddresses": [
            {"name": "Jane Tarnoff", "address": "Jane@Acme.example"},
            {"name": "jane.home@example.com", "address": "jane.home@example.com"}
          ],
          "homeAddress": {},
          "businessAddress": {"street": "1 Main St", "city": "New York", "state": "NY", "countryOrRegion": "United States", "postalCode": "10001"},
          "otherAddress": {},
          "flag": {"flagStatus": "notFlagged"}
        },
        {"@odata.type": "#microsoft.graph.contact", "id": "AAMkADAwATM0MDAAMS0yMDkyLWU3YjYtMDACLTAwCgBGAAAE", "@removed": {"reason": "deleted"}}
      ]
    }"##;

    #[test]
    fn a_documented_delta_page_parses_and_ignores_what_synchub_does_not_map() {
        let page: Page<Contact> = parse("contact delta", DELTA.as_bytes()).unwrap();
        assert!(page.next_link.as_deref().unwrap().contains("$skiptoken="));
        assert_eq!(page.delta_link, None);
        let jane = &page.value[0];
        assert_eq!(jane.given_name.as_deref(), Some("Jane"));
        assert_eq!(jane.middle_name, None, "null is absent");
        assert_eq!(jane.business_phones.as_ref().unwrap().len(), 2);
        assert_eq!(jane.email_addresses.as_ref().unwrap()[0].address.as_deref(), Some("Jane@Acme.example"));
        assert_eq!(jane.business_address.as_ref().unwrap().postal_code.as_deref(), Some("10001"));
        assert!(jane.home_address.as_ref().unwrap().is_empty());
        assert_eq!(jane.etag.as_deref(), Some("W/\"EQAAABYAAAAT3PQP0XSBRYhRmpsZ6/uwAAAhd8bg\""));
        assert!(jane.removed.is_none());
        assert_eq!(page.value[1].removed.as_ref().unwrap().reason, "deleted");
    }

    #[test]
    fn expanded_extended_properties_and_batches_parse() {
        let item = r#"{"id": "AAMk1", "singleValueExtendedProperties": [
            {"id": "String {6B3F2C1E-8A4D-4F0B-9E57-2C1D8A6F4B39} Name HubId", "value": "hub-1"},
            {"id": "String 0x3A21", "value": "555-0101"}]}"#;
        let c: Contact = parse("contact", item.as_bytes()).unwrap();
        assert_eq!(c.extended("string {6b3f2c1e-8a4d-4f0b-9e57-2c1d8a6f4b39} name hubid"), Some("hub-1"));
        let answer = r#"{"responses": [
            {"id": "2", "status": 429, "headers": {"Retry-After": "3"}, "body": {"error": {"code": "TooManyRequests", "message": "slow down"}}},
            {"id": "1", "status": 200, "headers": {"Content-Type": "application/json"}, "body": {"id": "AAMk1"}},
            {"id": "3", "status": 204}]}"#;
        let a: BatchAnswer = parse("batch", answer.as_bytes()).unwrap();
        assert_eq!(a.responses[0].headers["Retry-After"], "3");
        assert!(a.responses[2].body.is_none());
        let body = a.responses[1].body.as_ref().unwrap();
        assert_eq!(parse::<Contact>("contact", body.get().as_bytes()).unwrap().id.as_deref(), Some("AAMk1"));
        let token =
            r#"{"token_type": "Bearer", "expires_in": 3599, "ext_expires_in": 3599, "access_token": "eyJ0eXAi"}"#;
        assert_eq!(parse::<TokenAnswer>("token", token.as_bytes()).unwrap().expires_in, 3599);
        let err = r#"{"error": {"code": "SyncStateNotFound", "message": "gone", "innerError": {"date": "2026-11-25T10:00:00", "request-id": "x"}}}"#;
        assert_eq!(parse::<ErrorBody>("error", err.as_bytes()).unwrap().error.code, "SyncStateNotFound");
    }

    #[test]
    fn a_body_that_does_not_fit_names_the_field() {
        let bad = DELTA.replace(r#""businessPhones": ["+1 212 555 0100""#, r#""businessPhones": [12"#);
        let err = parse::<Page<Contact>>("contact delta", bad.as_bytes()).unwrap_err();
        assert_eq!(err.kind, ErrorKind::InvalidData);
        assert!(err.message.contains("value[0].businessPhones[0]"), "{}", err.message);
        let err = parse::<Page<Contact>>("contact delta", br#"{"value": {}}"#).unwrap_err();
        assert!(err.message.contains("`value`"), "{}", err.message);
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2_000, ..ProptestConfig::default() })]
        /// Arbitrary bytes never panic any Graph parser: a value or a clear error.
        #[test]
        fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
            for result in [
                parse::<Page<Contact>>("contact delta", &body).err(),
                parse::<Page<Event>>("calendar delta", &body).err(),
                parse::<BatchAnswer>("batch", &body).err(),
                parse::<TokenAnswer>("token", &body).err(),
            ].into_iter().flatten() {
                prop_assert_eq!(result.kind, ErrorKind::InvalidData);
            }
        }

        /// A documented delta page with one byte changed parses or fails with InvalidData.
        #[test]
        fn mutated_delta_pages_parse_or_fail_cleanly(at in 0..DELTA.len(), byte in any::<u8>()) {
            let mut body = DELTA.as_bytes().to_vec();
            body[at] = byte;
            if let Err(e) = parse::<Page<Contact>>("contact delta", &body) {
                prop_assert_eq!(e.kind, ErrorKind::InvalidData);
            }
        }

        /// Mutated JSON values (any property replaced by any JSON value) never panic.
        #[test]
        fn retyped_properties_parse_or_fail_cleanly(key in "[a-zA-Z@.]{1,20}", value in json_value()) {
            let mut page: serde_json::Value = serde_json::from_str(DELTA).unwrap();
            page["value"][0][key.as_str()] = value;
            let body = serde_json::to_vec(&page).unwrap();
            if let Err(e) = parse::<Page<Contact>>("contact delta", &body) {
                prop_assert_eq!(e.kind, ErrorKind::InvalidData);
            }
        }
    }

    fn json_value() -> impl Strategy<Value = serde_json::Value> {
        let leaf = prop_oneof![
            Just(serde_json::Value::Null),
            any::<bool>().prop_map(serde_json::Value::from),
            any::<i64>().prop_map(serde_json::Value::from),
            ".{0,8}".prop_map(serde_json::Value::from),
        ];
        leaf.prop_recursive(3, 16, 4, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::from),
                prop::collection::btree_map("[a-z]{1,6}", inner, 0..4)
                    .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
            ]
        })
    }
}
