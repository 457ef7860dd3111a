//! A firm on loopback: the Graph and CRM emulators, a hub over a sled store on disk driving
//! the real clients, and readers of both sides through FIELDS.md.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};
use synchub::calendar::CalendarSettings;
use synchub::connect::{crm as crm_map, graph as graph_map};
use synchub::engine::RunReport;
use synchub::hub::{ContactSettings, Hub, UserPair};
use synchub::model::{ContactFields, Field, FieldSet, FieldValue};
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::crm::wire::{Contact as CrmContact, User as CrmUser};
use synchub_connectors::emulators::crm::{CrmEmulator, CrmState};
use synchub_connectors::emulators::graph::{GraphEmulator, GraphState};
use synchub_connectors::graph::props::{CRM_CONTACT_ID, HUB_ID};
use synchub_connectors::graph::wire::Contact as GraphContact;
use synchub_connectors::graph::{Credentials, GraphClient, GraphConfig};
use synchub_connectors::http::{RetryPolicy, Secret};
use synchub_store::Store;

pub const CRM_TOKEN: &str = "crm-token";

pub fn start_time() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 25, 10, 0, 0).single().expect("a time")
}

/// The firm: users `u1…un` with mailboxes `m1…mn` (`uN@firm.example`).
pub struct Firm {
    pub graph: GraphEmulator,
    pub crm: CrmEmulator,
    pub hub: Arc<Hub>,
    pub graph_url: String,
    pub crm_url: String,
    pub dir: tempfile::TempDir,
    settings: ContactSettings,
    calendar: CalendarSettings,
    /// The hub's time when set (else the wall clock).
    clock: Arc<Mutex<Option<DateTime<Utc>>>>,
    /// The hub's `[store] cache_mib`.
    cache_mib: usize,
}

pub fn retry() -> RetryPolicy {
    RetryPolicy { attempts: 6, base: Duration::from_millis(1), max_wait: Duration::from_millis(200) }
}

impl Firm {
    pub async fn start(users: usize, settings: ContactSettings) -> Firm {
        let mut graph_state = GraphState::new("firm", "synchub", "secret", start_time());
        let mut crm_state = CrmState::new("2026-11-25T10:00:00Z");
        for i in 1..=users {
            graph_state.add_user(&format!("m{i}"), &format!("User {i}"), &format!("u{i}@firm.example"));
            crm_state.put_user(CrmUser {
                id: format!("u{i}"),
                login: format!("user{i}"),
                email: format!("U{i}@firm.example"),
                display_name: format!("User {i}"),
            });
        }
        let graph = GraphEmulator::new(graph_state);
        let crm = CrmEmulator::new(crm_state, CRM_TOKEN);
        let graph_url = graph.start("127.0.0.1:0").await.expect("graph emulator");
        let crm_url = crm.start("127.0.0.1:0").await.expect("crm emulator");
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(dir.path()).expect("store");
        let clock = Arc::new(Mutex::new(None));
        let calendar = CalendarSettings::default();
        let cache_mib = synchub::hub::DEFAULT_CACHE_MIB;
        let hub =
            Firm::hub_over(&graph_url, &crm_url, store, settings.clone(), calendar.clone(), clock.clone(), cache_mib);
        Firm { graph, crm, hub, graph_url, crm_url, dir, settings, calendar, clock, cache_mib }
    }

    fn hub_over(
        graph_url: &str,
        crm_url: &str,
        store: Store,
        settings: ContactSettings,
        calendar: CalendarSettings,
        clock: Arc<Mutex<Option<DateTime<Utc>>>>,
        cache_mib: usize,
    ) -> Arc<Hub> {
        let mut config = GraphConfig::new(Credentials::new(graph_url, "firm", "synchub", Secret::new("secret")));
        config.base = format!("{graph_url}/v1.0");
        config.retry = retry();
        let graph = GraphClient::new(config).expect("graph client");
        let crm = CrmClient::new(crm_url, Secret::new(CRM_TOKEN), retry()).expect("crm client");
        let time = move || clock.lock().expect("clock").unwrap_or_else(Utc::now);
        let hub = Hub::new(store, graph, crm, tokio::runtime::Handle::current(), settings, BTreeMap::new())
            .with_clock(Arc::new(time))
            .with_calendar(calendar)
            .expect("calendar settings")
            .with_cache_mib(cache_mib);
        Arc::new(hub)
    }

    fn rebuild(&mut self, store: Store) {
        self.hub = Firm::hub_over(
            &self.graph_url,
            &self.crm_url,
            store,
            self.settings.clone(),
            self.calendar.clone(),
            self.clock.clone(),
            self.cache_mib,
        );
    }

    /// A new hub over a fresh, empty store (the old one lost), same sides.
    pub fn lose_store(&mut self) {
        self.dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(self.dir.path()).expect("store");
        self.rebuild(store);
    }

    /// A new hub over the same store (a restart), with `settings`.
    pub fn restart(&mut self, settings: ContactSettings) {
        self.settings = settings;
        let store = self.hub.store().clone();
        self.rebuild(store);
    }

    /// A new hub over the same store (a restart) keeping at most `mib` MiB of users' state
    /// in memory between runs (0: every run with changes loads its user from the store).
    pub fn restart_with_cache(&mut self, mib: usize) {
        self.cache_mib = mib;
        let store = self.hub.store().clone();
        self.rebuild(store);
    }

    /// A new hub over the same store (a restart), with calendar `settings`.
    pub fn restart_calendar(&mut self, settings: CalendarSettings) {
        self.calendar = settings;
        let store = self.hub.store().clone();
        self.rebuild(store);
    }

    /// Set the time of the hub and both emulators.
    pub fn set_time(&self, t: DateTime<Utc>) {
        *self.clock.lock().expect("clock") = Some(t);
        self.graph.state().set_now(t);
        self.crm.state().set_now(&t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }

    /// The hub's time.
    pub fn now(&self) -> DateTime<Utc> {
        self.clock.lock().expect("clock").unwrap_or_else(Utc::now)
    }

    pub fn pair(i: usize) -> UserPair {
        UserPair {
            key: format!("u{i}"),
            mailbox: format!("m{i}"),
            address: format!("u{i}@firm.example"),
            crm_user: format!("u{i}"),
        }
    }

    /// One run of user `i`.
    pub async fn sync(&self, i: usize) -> RunReport {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || hub.sync_user(&Firm::pair(i))).await.expect("run task").expect("run")
    }

    /// One run of user `i`, its error kept.
    pub async fn try_sync(&self, i: usize) -> Result<RunReport, synchub::hub::HubError> {
        let hub = self.hub.clone();
        tokio::task::spawn_blocking(move || hub.sync_user(&Firm::pair(i))).await.expect("run task")
    }

    /// A contact the user makes in Outlook; its id.
    pub fn outlook_add(&self, i: usize, fields: &ContactFields) -> String {
        let c = graph_map::apply_fields(GraphContact::default(), fields, |_| true);
        let body = serde_json::to_value(&c).expect("json");
        self.graph.state().create_contact(&format!("m{i}"), "contacts", &body).expect("create").id.expect("id")
    }

    /// The user edits one field in Outlook.
    pub fn outlook_edit(&self, i: usize, id: &str, field: Field, value: Option<&str>) {
        self.outlook_edit_many(i, id, &[(field, value)]);
    }

    /// The user edits several fields in Outlook in one save.
    pub fn outlook_edit_many(&self, i: usize, id: &str, edits: &[(Field, Option<&str>)]) {
        let mut state = self.graph.state();
        let mailbox = format!("m{i}");
        let before = state.contact(&mailbox, id).expect("the item");
        let mut fields = ContactFields::new();
        for (field, value) in edits {
            fields.set(*field, value.map(|v| FieldValue::Text(v.to_string())));
        }
        let after = graph_map::apply_fields(before.clone(), &fields, |f| edits.iter().any(|(e, _)| *e == f));
        let patch = synchub_connectors::graph::props::patch(&before, &after).unwrap_or_default();
        state.update_contact(&mailbox, id, &serde_json::Value::Object(patch), None).expect("edit");
    }

    pub fn outlook_delete(&self, i: usize, id: &str) {
        self.graph.state().delete_contact(&format!("m{i}"), id).expect("delete");
    }

    /// A contact the user adds to their CRM list; its ContactID.
    pub fn crm_add(&self, i: usize, fields: &ContactFields) -> String {
        let c = crm_map::apply_firm(CrmContact::default(), fields, |_| true);
        self.crm.state().create_in_list(&format!("u{i}"), c).expect("create").0.contact_id
    }

    /// Someone edits a firm field of a CRM contact.
    pub fn crm_edit(&self, cid: &str, field: Field, value: Option<&str>) {
        let mut state = self.crm.state();
        let current = state.contact(cid).expect("the contact").clone();
        let mut fields = ContactFields::new();
        fields.set(field, value.map(|v| FieldValue::Text(v.to_string())));
        let next = crm_map::apply_firm(current.clone(), &fields, |f| f == field);
        state.update_contact(cid, current.version, next).expect("edit");
    }

    pub fn crm_remove(&self, i: usize, cid: &str) {
        self.crm.state().remove_from_list(&format!("u{i}"), cid);
    }

    pub fn outlook(&self, i: usize) -> Vec<GraphContact> {
        self.graph.state().contacts(&format!("m{i}"), None).expect("contacts")
    }

    pub fn crm_list(&self, i: usize) -> Vec<CrmContact> {
        self.crm.state().list(&format!("u{i}"))
    }

    /// What user `i` holds on each side, as canonical fields keyed by a person's e-mail or
    /// name, sorted: the two must be equal for mirror images (SPEC C1).
    pub fn sides(&self, i: usize) -> (Vec<ContactFields>, Vec<ContactFields>) {
        let set = FieldSet::all();
        let norm = |f: ContactFields| f.restricted(set);
        let mut outlook: Vec<ContactFields> = self.outlook(i).iter().map(graph_map::to_fields).map(norm).collect();
        let mut crm: Vec<ContactFields> = self.crm_list(i).iter().map(crm_map::to_fields).map(norm).collect();
        let key = |f: &ContactFields| format!("{:?}", f.iter().collect::<Vec<_>>());
        outlook.sort_by_key(key);
        crm.sort_by_key(key);
        (outlook, crm)
    }

    /// Assert user `i`'s Outlook and CRM list are mirror images, every item stamped (X9).
    pub fn assert_mirrored(&self, i: usize) {
        let (outlook, crm) = self.sides(i);
        assert_eq!(outlook.len(), crm.len(), "as many contacts on each side");
        for (o, c) in outlook.iter().zip(&crm) {
            assert!(o.equivalent_on(c, FieldSet::all()), "Outlook {o:?}\n!= CRM {c:?}");
        }
        for item in self.outlook(i) {
            assert!(item.extended(HUB_ID).is_some(), "every Outlook item carries its hub id");
            assert!(item.extended(CRM_CONTACT_ID).is_some(), "and its CRM ContactID");
        }
        for c in self.crm_list(i) {
            assert!(c.entry.and_then(|e| e.external_ref).is_some(), "every CRM entry carries its hub id");
        }
    }
}

pub fn person(given: &str, surname: &str, company: &str, email: &str) -> ContactFields {
    let mut f = ContactFields::new()
        .with_text(Field::GivenName, given)
        .with_text(Field::Surname, surname)
        .with_text(Field::Company, company);
    if !email.is_empty() {
        f = f.with_text(Field::Email1, email);
    }
    f
}

pub fn text(f: &ContactFields, field: Field) -> Option<String> {
    f.get(field).and_then(FieldValue::as_text).map(str::to_string)
}
