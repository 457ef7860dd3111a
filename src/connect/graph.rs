//! The Exchange side as the engine drives it: a user's default Contacts folder over the
//! Graph client (SPEC C2), mapped through FIELDS.md.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use synchub_connectors::graph::props::{self, CRM_CONTACT_ID, HUB_ID};
use synchub_connectors::graph::wire::{Contact, EmailAddress, PhysicalAddress};
use synchub_connectors::graph::{ContactChange, ContactWrite, GraphClient};
use synchub_connectors::{ConnectorError, ErrorKind};
use tokio::runtime::Handle;

use crate::engine::{ContactReplica, Pull};
use crate::merge::{ItemChange, Observed, PushKind, PushOp, PushOutcome, SideItem};
use crate::model::{ContactFields, Field, FieldSet, FieldValue, HubContactId, ItemId, Side};

/// One mailbox's default Contacts folder.
pub struct GraphSide {
    client: GraphClient,
    rt: Handle,
    mailbox: String,
    set: FieldSet,
    folder: Option<String>,
    /// Items as last read, for PATCHes that send only what changed.
    seen: HashMap<String, Contact>,
    /// The etag each of this side's own writes left (id → etag): the next delta round
    /// shows them again, and they are known already.
    written: HashMap<String, String>,
}

impl GraphSide {
    /// The side for `mailbox` (its Graph user id). Call from outside the runtime (a blocking
    /// task): the engine is synchronous and each call waits on `rt`.
    /// `set`: the fields this side carries (SPEC C8); the others are left as they are.
    pub fn new(client: GraphClient, rt: Handle, mailbox: &str, set: FieldSet) -> GraphSide {
        GraphSide {
            client,
            rt,
            mailbox: mailbox.to_string(),
            set,
            folder: None,
            seen: HashMap::new(),
            written: HashMap::new(),
        }
    }

    /// Carry `set` from now on (the settings changed: SPEC C8).
    pub fn set_fields(&mut self, set: FieldSet) {
        self.set = set;
    }

    /// Forget the items read this run (a later update reads its item again, in a batch):
    /// between runs the hub keeps only the folder and its own writes' etags.
    pub fn forget_items(&mut self) {
        self.seen = HashMap::new();
    }

    fn folder(&mut self) -> Result<String, ConnectorError> {
        if let Some(f) = &self.folder {
            return Ok(f.clone());
        }
        let folder = self.rt.block_on(self.client.default_folder(&self.mailbox))?.id;
        self.folder = Some(folder.clone());
        Ok(folder)
    }

    /// The items as last read (reading those not seen yet).
    fn before(&mut self, ids: &[String]) -> Result<(), ConnectorError> {
        let missing: Vec<String> = ids.iter().filter(|id| !self.seen.contains_key(*id)).cloned().collect();
        if missing.is_empty() {
            return Ok(());
        }
        let fresh = self.rt.block_on(self.client.read_items(&self.mailbox, &missing));
        for (id, item) in missing.into_iter().zip(fresh) {
            match item {
                Ok(c) => {
                    self.seen.insert(id, c);
                }
                Err(e) if e.kind == ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

fn text(v: &Option<String>) -> Option<FieldValue> {
    v.as_ref().map(|s| FieldValue::Text(s.clone()))
}

fn set_text(fields: &mut ContactFields, f: Field, v: Option<&str>) {
    fields.set(f, v.map(|s| FieldValue::Text(s.to_string())));
}

const ADDRESSES: [(Field, Field, Field, Field, Field); 3] = [
    (
        Field::BusinessStreet,
        Field::BusinessCity,
        Field::BusinessState,
        Field::BusinessPostalCode,
        Field::BusinessCountry,
    ),
    (Field::HomeStreet, Field::HomeCity, Field::HomeState, Field::HomePostalCode, Field::HomeCountry),
    (Field::OtherStreet, Field::OtherCity, Field::OtherState, Field::OtherPostalCode, Field::OtherCountry),
];

const EXTENDED: [(Field, &str); 5] = [
    (Field::BusinessFax, props::BUSINESS_FAX),
    (Field::HomeFax, props::HOME_FAX),
    (Field::OtherPhone, props::OTHER_PHONE),
    (Field::AssistantPhone, props::ASSISTANT_PHONE),
    (Field::Pager, props::PAGER),
];

const SIMPLE: [Field; 13] = [
    Field::Title,
    Field::GivenName,
    Field::MiddleName,
    Field::Surname,
    Field::Suffix,
    Field::Nickname,
    Field::JobTitle,
    Field::Company,
    Field::Department,
    Field::AssistantName,
    Field::MobilePhone,
    Field::WebPage,
    Field::SpouseName,
];

fn simple(c: &mut Contact, f: Field) -> &mut Option<String> {
    match f {
        Field::Title => &mut c.title,
        Field::GivenName => &mut c.given_name,
        Field::MiddleName => &mut c.middle_name,
        Field::Surname => &mut c.surname,
        Field::Suffix => &mut c.generation,
        Field::Nickname => &mut c.nick_name,
        Field::JobTitle => &mut c.job_title,
        Field::Company => &mut c.company_name,
        Field::Department => &mut c.department,
        Field::AssistantName => &mut c.assistant_name,
        Field::MobilePhone => &mut c.mobile_phone,
        Field::WebPage => &mut c.business_home_page,
        _ => &mut c.spouse_name,
    }
}

fn address(c: &mut Contact, i: usize) -> &mut Option<PhysicalAddress> {
    match i {
        0 => &mut c.business_address,
        1 => &mut c.home_address,
        _ => &mut c.other_address,
    }
}

/// A Graph contact's canonical fields (FIELDS.md), normalised.
pub fn to_fields(c: &Contact) -> ContactFields {
    let mut fields = ContactFields::new();
    let mut c = c.clone();
    for f in SIMPLE {
        fields.set(f, text(simple(&mut c, f)));
    }
    let emails = c.email_addresses.clone().unwrap_or_default();
    for (i, f) in [Field::Email1, Field::Email2, Field::Email3].into_iter().enumerate() {
        set_text(&mut fields, f, emails.get(i).and_then(|e| e.address.as_deref()));
    }
    let business = c.business_phones.clone().unwrap_or_default();
    set_text(&mut fields, Field::BusinessPhone, business.first().map(String::as_str));
    set_text(&mut fields, Field::BusinessPhone2, business.get(1).map(String::as_str));
    let home = c.home_phones.clone().unwrap_or_default();
    set_text(&mut fields, Field::HomePhone, home.first().map(String::as_str));
    set_text(&mut fields, Field::HomePhone2, home.get(1).map(String::as_str));
    for (f, id) in EXTENDED {
        set_text(&mut fields, f, c.extended(id));
    }
    for (i, (street, city, state, postal, country)) in ADDRESSES.into_iter().enumerate() {
        let a = address(&mut c, i).clone().unwrap_or_default();
        fields.set(street, text(&a.street));
        fields.set(city, text(&a.city));
        fields.set(state, text(&a.state));
        fields.set(postal, text(&a.postal_code));
        fields.set(country, text(&a.country_or_region));
    }
    // Graph's birthday is a DateTimeOffset; FIELDS.md keeps its date part.
    set_text(&mut fields, Field::Birthday, c.birthday.as_deref().map(|b| b.get(..10).unwrap_or(b)));
    fields.set(Field::Notes, text(&c.personal_notes));
    fields.set(Field::Categories, c.categories.clone().map(FieldValue::List));
    let private = c.extended(props::PRIVATE).is_some_and(|v| v.eq_ignore_ascii_case("true"));
    fields.set(Field::Private, Some(FieldValue::Flag(private)));
    fields
}

fn value_text(fields: &ContactFields, f: Field) -> Option<String> {
    match fields.get(f) {
        Some(FieldValue::Text(s)) => Some(s.clone()),
        _ => None,
    }
}

/// `c` with the canonical `fields` written over the properties FIELDS.md maps (only the
/// fields in `carried`; the rest of `c` is kept as it is).
pub fn apply_fields(mut c: Contact, fields: &ContactFields, carried: impl Fn(Field) -> bool) -> Contact {
    for f in SIMPLE.into_iter().filter(|f| carried(*f)) {
        *simple(&mut c, f) = value_text(fields, f);
    }
    let slots = |c: Option<Vec<String>>, fs: &[Field]| -> Option<Vec<String>> {
        let mut out = c.unwrap_or_default();
        for (i, f) in fs.iter().enumerate() {
            if !carried(*f) {
                continue;
            }
            while out.len() <= i {
                out.push(String::new());
            }
            out[i] = value_text(fields, *f).unwrap_or_default();
        }
        while out.last().is_some_and(String::is_empty) {
            out.pop();
        }
        Some(out)
    };
    let emails: Vec<String> =
        c.email_addresses.clone().unwrap_or_default().into_iter().map(|e| e.address.unwrap_or_default()).collect();
    let emails = slots(Some(emails), &[Field::Email1, Field::Email2, Field::Email3]).unwrap_or_default();
    c.email_addresses = Some(
        emails
            .into_iter()
            .map(|a| EmailAddress { name: (!a.is_empty()).then(|| a.clone()), address: Some(a) })
            .collect(),
    );
    c.business_phones = slots(c.business_phones.take(), &[Field::BusinessPhone, Field::BusinessPhone2]);
    c.home_phones = slots(c.home_phones.take(), &[Field::HomePhone, Field::HomePhone2]);
    for (f, id) in EXTENDED.into_iter().filter(|(f, _)| carried(*f)) {
        match value_text(fields, f) {
            Some(v) => c.set_extended(id, v),
            None if c.extended(id).is_some() => c.set_extended(id, ""),
            None => {}
        }
    }
    for (i, (street, city, state, postal, country)) in ADDRESSES.into_iter().enumerate() {
        let slot = address(&mut c, i);
        let mut a = slot.clone().unwrap_or_default();
        let put = |f: Field, target: &mut Option<String>| {
            if carried(f) {
                *target = value_text(fields, f);
            }
        };
        put(street, &mut a.street);
        put(city, &mut a.city);
        put(state, &mut a.state);
        put(postal, &mut a.postal_code);
        put(country, &mut a.country_or_region);
        *slot = Some(a);
    }
    if carried(Field::Birthday) {
        // Noon UTC keeps the date the same in every time zone Outlook shows it in.
        c.birthday = value_text(fields, Field::Birthday).map(|d| format!("{d}T11:59:00Z"));
    }
    if carried(Field::Notes) {
        c.personal_notes = value_text(fields, Field::Notes);
    }
    if carried(Field::Categories) {
        c.categories = Some(fields.categories());
    }
    if carried(Field::Private) {
        c.set_extended(props::PRIVATE, if fields.is_private() { "true" } else { "false" });
    }
    c
}

fn modified(c: &Contact) -> DateTime<Utc> {
    c.last_modified_date_time
        .as_deref()
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map_or(DateTime::<Utc>::MIN_UTC, |t| t.with_timezone(&Utc))
}

fn side_item(c: &Contact) -> SideItem {
    SideItem {
        fields: to_fields(c),
        modified: modified(c),
        etag: c.etag.clone(),
        stamp: c.extended(HUB_ID).and_then(|s| s.parse::<HubContactId>().ok()),
    }
}

/// An item id from Graph, if it is one the hub can keep (N2: a bad one is logged and left
/// out, affecting nothing else).
fn item_id(id: Option<&str>) -> Option<ItemId> {
    match id.map(str::parse::<ItemId>) {
        Some(Ok(item)) => Some(item),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "Graph sent an item id the hub cannot keep; item left out");
            None
        }
        None => None,
    }
}

fn invalid(message: &str) -> ConnectorError {
    ConnectorError::new(ErrorKind::InvalidData, message.to_string())
}

impl ContactReplica for GraphSide {
    fn side(&self) -> Side {
        Side::Exchange
    }

    fn pull(&mut self, cursor: Option<&str>) -> Result<Pull, ConnectorError> {
        let folder = self.folder()?;
        let written = std::mem::take(&mut self.written);
        let round = self.rt.block_on(self.client.pull_contacts_except(&self.mailbox, &folder, cursor, &written))?;
        let mut items = Vec::with_capacity(round.changes.len());
        for change in round.changes {
            match change {
                ContactChange::Upsert(c) => {
                    let Some(item) = item_id(c.id.as_deref()) else { continue };
                    items.push(Observed { item: item.clone(), change: ItemChange::Upsert(side_item(&c)) });
                    self.seen.insert(item.as_str().to_string(), *c);
                }
                ContactChange::Removed { id } => {
                    self.seen.remove(&id);
                    let Some(item) = item_id(Some(&id)) else { continue };
                    items.push(Observed { item, change: ItemChange::Removed });
                }
            }
        }
        Ok(Pull { items, cursor: round.delta_link, full: round.full })
    }

    fn push(&mut self, op: &PushOp) -> Result<PushOutcome, ConnectorError> {
        self.push_batch(std::slice::from_ref(op)).pop().unwrap_or_else(|| Err(invalid("no answer")))
    }

    fn push_batch(&mut self, ops: &[PushOp]) -> Vec<Result<PushOutcome, ConnectorError>> {
        let folder = match self.folder() {
            Ok(f) => f,
            Err(e) => return vec![Err(e); ops.len()],
        };
        let updates: Vec<String> = ops
            .iter()
            .filter(|op| op.kind == PushKind::Update)
            .filter_map(|op| op.item.as_ref().map(|i| i.as_str().to_string()))
            .collect();
        if let Err(e) = self.before(&updates) {
            return vec![Err(e); ops.len()];
        }
        let set = self.set;
        let mut writes = Vec::with_capacity(ops.len());
        for op in ops {
            let hub = op.hub.to_string();
            let peer = op.peer.as_ref().map(|p| p.as_str().to_string());
            let write = match (op.kind, &op.item) {
                (PushKind::Create, _) => ContactWrite::Create {
                    hub_id: hub,
                    crm_contact_id: peer,
                    contact: Box::new(apply_fields(Contact::default(), &op.fields, |f| set.contains(f))),
                    retry: false,
                },
                (PushKind::Update, Some(item)) => {
                    let before = self.seen.get(item.as_str()).cloned().unwrap_or_default();
                    let mut after = apply_fields(before.clone(), &op.fields, |f| set.contains(f));
                    after.set_extended(HUB_ID, hub);
                    if let Some(peer) = peer {
                        after.set_extended(CRM_CONTACT_ID, peer);
                    }
                    ContactWrite::Update {
                        id: item.as_str().to_string(),
                        etag: op.etag.clone(),
                        before: Box::new(before),
                        after: Box::new(after),
                    }
                }
                (PushKind::Delete, Some(item)) => ContactWrite::Delete { id: item.as_str().to_string() },
                (_, None) => ContactWrite::Delete { id: String::new() },
            };
            writes.push(write);
        }
        let answers = self.rt.block_on(self.client.write(&self.mailbox, &folder, writes));
        ops.iter()
            .zip(answers)
            .map(|(op, answer)| {
                if op.item.is_none() && op.kind != PushKind::Create {
                    return Err(invalid("an update or delete without an item"));
                }
                let written = answer?;
                let Some(item) = item_id(written.id.as_deref()) else {
                    return Err(invalid("Graph answered a write without a usable item id"));
                };
                let id = item.as_str().to_string();
                if let Some(etag) = &written.etag {
                    self.written.insert(id.clone(), etag.clone());
                }
                Ok(match op.kind {
                    PushKind::Create => {
                        self.seen.insert(id.clone(), written.clone());
                        PushOutcome::Created { item, etag: written.etag }
                    }
                    PushKind::Update => {
                        self.seen.remove(&id);
                        PushOutcome::Updated { etag: written.etag }
                    }
                    PushKind::Delete => {
                        self.seen.remove(&id);
                        PushOutcome::Deleted
                    }
                })
            })
            .collect()
    }

    fn read_back(&mut self, op: &PushOp) -> Result<Option<(ItemId, SideItem)>, ConnectorError> {
        let found = match (&op.item, op.kind) {
            (_, PushKind::Create) | (None, _) => {
                let folder = self.folder()?;
                self.rt.block_on(self.client.find_stamped(&self.mailbox, &folder, &op.hub.to_string()))?
            }
            (Some(item), _) => {
                let read = self.rt.block_on(self.client.read_items(&self.mailbox, &[item.as_str().to_string()]));
                match read.into_iter().next() {
                    Some(Ok(c)) => Some(c),
                    Some(Err(e)) if e.kind == ErrorKind::NotFound => None,
                    Some(Err(e)) => return Err(e),
                    None => None,
                }
            }
        };
        Ok(found.and_then(|c| {
            let id = item_id(c.id.as_deref())?;
            let item = side_item(&c);
            self.seen.insert(id.as_str().to_string(), c);
            Some((id, item))
        }))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn arb_fields() -> impl Strategy<Value = ContactFields> {
        let value = |f: Field| -> BoxedStrategy<Option<FieldValue>> {
            match f {
                Field::Private => any::<bool>().prop_map(|b| Some(FieldValue::Flag(b))).boxed(),
                Field::Categories => {
                    prop::collection::vec("[A-Za-z ]{1,8}", 0..3).prop_map(|v| Some(FieldValue::List(v))).boxed()
                }
                Field::Birthday => prop_oneof![Just(None), Just(Some(FieldValue::Text("1974-05-12".into())))].boxed(),
                _ => prop_oneof![Just(None), "[A-Za-z0-9@. ]{0,12}".prop_map(|s| Some(FieldValue::Text(s)))].boxed(),
            }
        };
        let strategies: Vec<_> = Field::ALL.iter().map(|f| value(*f)).collect();
        strategies.prop_map(|values| {
            let mut fields = ContactFields::new();
            for (f, v) in Field::ALL.iter().zip(values) {
                fields.set(*f, v);
            }
            fields
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 500, ..ProptestConfig::default() })]
        /// Canonical fields survive the trip through a Graph contact (SPEC C9), over any
        /// earlier item, so nothing is lost or invented by the mapping.
        #[test]
        fn c9_fields_round_trip_through_graph(fields in arb_fields(), earlier in arb_fields()) {
            let before = apply_fields(Contact::default(), &earlier, |_| true);
            let c = apply_fields(before, &fields, |_| true);
            let back = to_fields(&c);
            prop_assert!(back.equivalent_on(&fields, FieldSet::all()), "{:?}\n!=\n{:?}", back, fields);
        }
    }

    #[test]
    fn c9_fields_not_carried_are_left_alone() {
        let mut outlook = ContactFields::new();
        outlook.set(Field::Notes, Some(FieldValue::Text("my own notes".into())));
        outlook.set(Field::GivenName, Some(FieldValue::Text("Jane".into())));
        let c = apply_fields(Contact::default(), &outlook, |_| true);
        let incoming = ContactFields::new().with_text(Field::GivenName, "Janet");
        let c = apply_fields(c, &incoming, |f| f != Field::Notes);
        assert_eq!(c.personal_notes.as_deref(), Some("my own notes"), "C8: notes off never blanks them");
        assert_eq!(c.given_name.as_deref(), Some("Janet"));
    }
}
