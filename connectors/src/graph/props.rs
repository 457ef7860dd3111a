//! The extended properties synchub reads and writes (FIELDS.md), its link stamps (SPEC X9),
//! and how a contact's changes become a PATCH: only what changed, `displayName` whenever a
//! name part changes, and `fileAs` only while it is still the one Outlook would derive (a
//! user's own filing name is never overwritten).

use serde_json::{Map, Value};

use super::wire::Contact;

/// Business fax (`PidTagBusinessFaxNumber`).
pub const BUSINESS_FAX: &str = "String 0x3A24";
/// Home fax (`PidTagHomeFaxNumber`).
pub const HOME_FAX: &str = "String 0x3A25";
/// Other telephone (`PidTagOtherTelephoneNumber`).
pub const OTHER_PHONE: &str = "String 0x3A1F";
/// Assistant's telephone (`PidTagAssistantTelephoneNumber`).
pub const ASSISTANT_PHONE: &str = "String 0x3A2E";
/// Pager (`PidTagPagerTelephoneNumber`).
pub const PAGER: &str = "String 0x3A21";
/// Outlook's Private flag (`PidLidPrivate`).
pub const PRIVATE: &str = "Boolean {00062008-0000-0000-C000-000000000046} Id 0x8506";
/// synchub's property set: one fixed GUID for its named properties.
pub const PROPERTY_SET: &str = "{6B3F2C1E-8A4D-4F0B-9E57-2C1D8A6F4B39}";
/// The hub id stamped on every Outlook contact synchub links (SPEC X9).
pub const HUB_ID: &str = "String {6B3F2C1E-8A4D-4F0B-9E57-2C1D8A6F4B39} Name HubId";
/// The linked CRM ContactID stamped beside it (SPEC X9).
pub const CRM_CONTACT_ID: &str = "String {6B3F2C1E-8A4D-4F0B-9E57-2C1D8A6F4B39} Name CrmContactId";

/// Every extended property synchub reads: the FIELDS.md fields and the two stamps.
pub const READ: [&str; 8] =
    [BUSINESS_FAX, HOME_FAX, OTHER_PHONE, ASSISTANT_PHONE, PAGER, PRIVATE, HUB_ID, CRM_CONTACT_ID];

/// The `$expand` that reads [`READ`] with an item.
pub fn expand() -> String {
    let ids: Vec<String> = READ.iter().map(|id| format!("id eq '{}'", odata_string(id))).collect();
    format!("singleValueExtendedProperties($filter={})", ids.join(" or "))
}

/// The `$filter` that finds the contact stamped with `hub_id`.
pub fn stamped_with(hub_id: &str) -> String {
    format!(
        "singleValueExtendedProperties/Any(ep: ep/id eq '{}' and ep/value eq '{}')",
        odata_string(HUB_ID),
        odata_string(hub_id)
    )
}

/// An OData string literal's inside: single quotes doubled.
pub fn odata_string(s: &str) -> String {
    s.replace('\'', "''")
}

fn part(p: &Option<String>) -> Option<&str> {
    p.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The display name Outlook derives: the full name, else the company, else the first
/// e-mail address.
pub fn display_name(c: &Contact) -> String {
    let name: Vec<&str> =
        [&c.given_name, &c.middle_name, &c.surname, &c.generation].into_iter().filter_map(part).collect();
    if !name.is_empty() {
        return name.join(" ");
    }
    if let Some(company) = part(&c.company_name) {
        return company.to_string();
    }
    c.email_addresses.as_ref().and_then(|e| e.iter().find_map(|a| part(&a.address))).unwrap_or_default().to_string()
}

/// The filing name Outlook derives by default: "Surname, Given", else the company.
pub fn file_as(c: &Contact) -> String {
    match (part(&c.surname), part(&c.given_name)) {
        (Some(s), Some(g)) => format!("{s}, {g}"),
        (Some(one), None) | (None, Some(one)) => one.to_string(),
        (None, None) => part(&c.company_name).unwrap_or_default().to_string(),
    }
}

/// What a create sends: the contact with its derived names (FIELDS.md) and its stamps.
pub fn for_create(contact: &Contact, hub_id: &str, crm_contact_id: Option<&str>) -> Contact {
    let mut c = contact.clone();
    c.id = None;
    c.etag = None;
    c.change_key = None;
    c.removed = None;
    c.display_name = Some(display_name(contact));
    if part(&c.file_as).is_none() {
        c.file_as = Some(file_as(contact));
    }
    c.set_extended(HUB_ID, hub_id);
    if let Some(crm) = crm_contact_id {
        c.set_extended(CRM_CONTACT_ID, crm);
    }
    c
}

/// Properties that are the item's own bookkeeping or derived, never diffed.
const NOT_DIFFED: [&str; 9] = [
    "id",
    "@odata.etag",
    "changeKey",
    "parentFolderId",
    "lastModifiedDateTime",
    "displayName",
    "fileAs",
    "singleValueExtendedProperties",
    "@removed",
];

/// The PATCH body that takes the item from `before` (as last read, with its `fileAs`) to
/// `after`; `None` when nothing changes. A property absent from `after` means "clear it":
/// callers build `after` from `before` and overwrite only what they carry. Cleared
/// properties are sent as `null`, cleared string extended properties as empty strings
/// (Graph cannot remove one by PATCH), the Private flag always as `"true"`/`"false"`.
/// Stamps that `after` carries are written when they differ (SPEC X9: stamped on the first
/// push); stamps are never cleared.
pub fn patch(before: &Contact, after: &Contact) -> Option<Map<String, Value>> {
    let mut body = Map::new();
    if !same_diffed(before, after) {
        diff_properties(before, after, &mut body)?;
    }
    let mut props = Vec::new();
    for id in READ {
        let (o, n) = (before.extended(id).unwrap_or(""), after.extended(id).unwrap_or(""));
        if id == PRIVATE {
            // A Boolean property: unset and "false" are the same, and only a Boolean is sent.
            let (o, n) = (o.eq_ignore_ascii_case("true"), n.eq_ignore_ascii_case("true"));
            if o != n {
                props.push(serde_json::json!({"id": id, "value": if n { "true" } else { "false" }}));
            }
        } else if (id == HUB_ID || id == CRM_CONTACT_ID) && n.is_empty() {
            // Stamps are only ever written, never cleared (SPEC X9: a rebuild re-links by them).
        } else if o != n {
            props.push(serde_json::json!({"id": id, "value": n}));
        }
    }
    if !props.is_empty() {
        body.insert("singleValueExtendedProperties".into(), Value::Array(props));
    }
    if body.is_empty() {
        return None;
    }
    let names = ["givenName", "middleName", "surname", "generation", "companyName", "emailAddresses"];
    if names.iter().any(|k| body.contains_key(*k)) {
        body.insert("displayName".into(), Value::String(display_name(after)));
        let current = part(&before.file_as);
        if current.is_none() || current == Some(file_as(before).as_str()) {
            body.insert("fileAs".into(), Value::String(file_as(after)));
        }
    }
    Some(body)
}

/// Put into `body` every diffed property that `after` changes, as Graph takes it; `None`
/// when either contact does not serialize to an object.
fn diff_properties(before: &Contact, after: &Contact, body: &mut Map<String, Value>) -> Option<()> {
    let (Ok(Value::Object(old)), Ok(Value::Object(new))) = (serde_json::to_value(before), serde_json::to_value(after))
    else {
        return None;
    };
    for key in old.keys().chain(new.keys()) {
        if NOT_DIFFED.contains(&key.as_str()) || body.contains_key(key) {
            continue;
        }
        let (o, n) = (old.get(key), new.get(key));
        if o != n && !(o.is_none() && is_empty(n)) && !(n.is_none() && is_empty(o)) {
            body.insert(key.clone(), n.cloned().unwrap_or(Value::Null));
        }
    }
    Some(())
}

/// Whether `a` and `b` hold the same value in every diffed property, compared as structs:
/// then their JSON forms agree too, and [`diff_properties`] would find nothing (a stamp-only
/// update, the most common one, skips building them). Every property is named, so one
/// added to [`Contact`] fails to compile here until it is placed, and one left out of the
/// comparison is an unused variable, denied.
#[deny(unused_variables)]
fn same_diffed(a: &Contact, b: &Contact) -> bool {
    let Contact {
        // Never diffed (NOT_DIFFED).
        id: _,
        etag: _,
        change_key: _,
        parent_folder_id: _,
        last_modified_date_time: _,
        display_name: _,
        file_as: _,
        single_value_extended_properties: _,
        removed: _,
        // Diffed.
        title,
        given_name,
        middle_name,
        surname,
        generation,
        nick_name,
        job_title,
        company_name,
        department,
        assistant_name,
        email_addresses,
        business_phones,
        home_phones,
        mobile_phone,
        business_address,
        home_address,
        other_address,
        business_home_page,
        birthday,
        spouse_name,
        personal_notes,
        categories,
    } = a;
    *title == b.title
        && *given_name == b.given_name
        && *middle_name == b.middle_name
        && *surname == b.surname
        && *generation == b.generation
        && *nick_name == b.nick_name
        && *job_title == b.job_title
        && *company_name == b.company_name
        && *department == b.department
        && *assistant_name == b.assistant_name
        && *email_addresses == b.email_addresses
        && *business_phones == b.business_phones
        && *home_phones == b.home_phones
        && *mobile_phone == b.mobile_phone
        && *business_address == b.business_address
        && *home_address == b.home_address
        && *other_address == b.other_address
        && *business_home_page == b.business_home_page
        && *birthday == b.birthday
        && *spouse_name == b.spouse_name
        && *personal_notes == b.personal_notes
        && *categories == b.categories
}

fn is_empty(v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Array(a)) => a.is_empty(),
        Some(Value::Object(o)) => o.values().all(|v| is_empty(Some(v))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::graph::wire::EmailAddress;

    fn jane() -> Contact {
        Contact {
            given_name: Some("Jane".into()),
            surname: Some("Tarnoff".into()),
            company_name: Some("Acme".into()),
            email_addresses: Some(vec![EmailAddress { name: None, address: Some("jane@acme.com".into()) }]),
            ..Contact::default()
        }
    }

    #[test]
    fn derived_names_follow_outlook() {
        assert_eq!(display_name(&jane()), "Jane Tarnoff");
        assert_eq!(file_as(&jane()), "Tarnoff, Jane");
        let company_only = Contact { company_name: Some("Acme".into()), ..Contact::default() };
        assert_eq!(display_name(&company_only), "Acme");
        assert_eq!(file_as(&company_only), "Acme");
        let mail_only = Contact { email_addresses: jane().email_addresses, ..Contact::default() };
        assert_eq!(display_name(&mail_only), "jane@acme.com");
    }

    #[test]
    fn x9_a_create_carries_the_stamps_and_derived_names() {
        let c = for_create(&jane(), "hub-1", Some("crm-9"));
        assert_eq!(c.extended(HUB_ID), Some("hub-1"));
        assert_eq!(c.extended(&CRM_CONTACT_ID.to_lowercase()), Some("crm-9"), "ids compare case-insensitively");
        assert_eq!(c.display_name.as_deref(), Some("Jane Tarnoff"));
        assert_eq!(c.file_as.as_deref(), Some("Tarnoff, Jane"));
    }

    #[test]
    fn a_patch_sends_only_what_changed_and_renames_when_names_change() {
        let mut before = for_create(&jane(), "hub-1", None);
        before.id = Some("AAMk1".into());
        assert_eq!(patch(&before, &before), None, "nothing changed");

        let mut after = before.clone();
        after.job_title = Some("Partner".into());
        let body = patch(&before, &after).unwrap();
        assert_eq!(body.keys().collect::<Vec<_>>(), ["jobTitle"], "no displayName without a name change");

        after.surname = Some("Smith".into());
        after.company_name = None;
        after.set_extended(PAGER, "555");
        let body = patch(&before, &after).unwrap();
        assert_eq!(body["surname"], "Smith");
        assert_eq!(body["companyName"], Value::Null, "cleared properties are sent as null");
        assert_eq!(body["displayName"], "Jane Smith");
        assert_eq!(body["fileAs"], "Smith, Jane", "a derived fileAs follows the name");
        assert_eq!(body["singleValueExtendedProperties"][0]["id"], PAGER);

        let mut linked = after.clone();
        linked.set_extended(CRM_CONTACT_ID, "crm-9");
        let body = patch(&after, &linked).unwrap();
        assert_eq!(body.len(), 1, "X9: a contact linked on first sync gets its stamps on the first push");
        assert_eq!(body["singleValueExtendedProperties"][0]["value"], "crm-9");
    }

    #[test]
    fn a_users_own_file_as_is_never_overwritten() {
        let mut before = for_create(&jane(), "hub-1", None);
        before.file_as = Some("Jane (Acme counsel)".into());
        let mut after = before.clone();
        after.surname = Some("Smith".into());
        let body = patch(&before, &after).unwrap();
        assert_eq!(body["displayName"], "Jane Smith");
        assert!(!body.contains_key("fileAs"));
    }

    #[test]
    fn x9_stamps_are_never_cleared_and_private_is_always_a_boolean() {
        let before = for_create(&jane(), "hub-1", Some("crm-9"));
        let mut after = jane();
        after.set_extended(PRIVATE, "true");
        let body = patch(&before, &after).unwrap();
        let props = body["singleValueExtendedProperties"].as_array().unwrap();
        assert_eq!(props.len(), 1, "{props:?}");
        assert_eq!(props[0]["value"], "true");
        let mut unset = after.clone();
        unset.single_value_extended_properties = None;
        let body = patch(&after, &unset).unwrap();
        assert_eq!(body["singleValueExtendedProperties"][0]["value"], "false", "never an empty Boolean");
    }

    #[test]
    fn empty_and_absent_are_the_same() {
        let before = jane();
        let mut after = jane();
        after.department = Some(String::new());
        after.home_phones = Some(Vec::new());
        after.set_extended(PRIVATE, "false");
        assert_eq!(patch(&before, &after), None);
    }

    #[test]
    fn filters_quote_their_literals() {
        assert!(stamped_with("a'b").contains("ep/value eq 'a''b'"));
        assert!(expand().starts_with("singleValueExtendedProperties($filter=id eq 'String 0x3A24' or "));
    }

    /// Properties and values the comparison test draws from: few values, so a changed
    /// property often ends as it began; the bookkeeping and derived ones change too.
    fn property() -> impl proptest::strategy::Strategy<Value = (&'static str, Option<Value>)> {
        use proptest::prelude::*;
        let keys = crate::graph::wire::CONTACT_PROPERTIES.iter().copied().chain(["id"]).collect::<Vec<_>>();
        let key = prop::sample::select(keys);
        (key, 0..4usize).prop_map(|(key, pick)| (key, crate::graph::wire::sample_property(key, pick)))
    }

    fn contact(props: &[(&'static str, Option<Value>)]) -> Contact {
        let mut map = Map::new();
        for (key, value) in props {
            match value {
                Some(v) => map.insert((*key).to_string(), v.clone()),
                None => map.remove(*key),
            };
        }
        serde_json::from_value(Value::Object(map)).expect("the drawn properties make a contact")
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 2_000, ..Default::default() })]
        /// The struct comparison that lets a patch skip the JSON diff agrees with the JSON
        /// diff: two contacts are the same in every diffed property exactly when the diff
        /// finds nothing, so the patch body is the same either way.
        #[test]
        fn the_struct_comparison_agrees_with_the_json_diff(
            start in proptest::collection::vec(property(), 0..8),
            changes in proptest::collection::vec(property(), 0..3),
        ) {
            let before = contact(&start);
            let after = contact(&start.iter().cloned().chain(changes).collect::<Vec<_>>());
            let mut body = Map::new();
            diff_properties(&before, &after, &mut body).expect("contacts serialize to objects");
            let exact = {
                let (Ok(Value::Object(o)), Ok(Value::Object(n))) = (serde_json::to_value(&before), serde_json::to_value(&after))
                else { unreachable!("contacts serialize to objects") };
                let diffed = |m: &Map<String, Value>| -> Vec<(String, Value)> {
                    m.iter().filter(|(k, _)| !NOT_DIFFED.contains(&k.as_str())).map(|(k, v)| (k.clone(), v.clone())).collect()
                };
                diffed(&o) == diffed(&n)
            };
            proptest::prop_assert_eq!(same_diffed(&before, &after), exact);
            if exact {
                proptest::prop_assert!(body.is_empty(), "the same contacts diff to nothing: {:?}", body);
            }
        }
    }
}
