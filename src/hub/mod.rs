//! The hub: the two real connectors, the store and the settings, running users' syncs.
//! Mailboxes are matched to CRM users (SPEC A1), each matched and enabled user's run goes
//! through the engine with a [`GraphSide`] and a [`CrmSide`], one run per user at a time,
//! and every run leaves a record in the user's history (A2, A5).

pub mod config;
pub mod metrics;
pub mod scheduler;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use synchub_connectors::crm::client::CrmClient;
use synchub_connectors::graph::GraphClient;
use synchub_connectors::ConnectorError;
use synchub_store::{Store, UserWrite};
use tokio::runtime::Handle;

use crate::calendar::{CalUser, Calendar, CalendarError, CalendarReport, CalendarSettings};
use crate::connect::crm::CrmSide;
use crate::connect::graph::GraphSide;
use crate::engine::{
    encode_record, pull_all, read_journal, run_user, ContactReplica, EarlyPull, EngineError, Held, Planned, Prefetched,
    RunOptions, RunReport,
};
use crate::merge::join::JoinError;
use crate::merge::{RunCtx, UserReplica};
use crate::model::{Field, FieldSet, ItemId, Side};
pub use config::{Config, ContactSettings, ReusePolicy};

/// A mailbox and the CRM user whose list mirrors it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserPair {
    /// The key of the user's state in the store (the CRM user id).
    pub key: String,
    /// The Graph user id of the mailbox.
    pub mailbox: String,
    /// The mailbox's primary SMTP address, for reports.
    pub address: String,
    /// The CRM user id.
    pub crm_user: String,
}

/// The outcome of matching mailboxes to CRM users (SPEC A1).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserMatch {
    pub pairs: Vec<UserPair>,
    /// Mailboxes with no CRM user (by address, UPN or override).
    pub unmatched_mailboxes: Vec<String>,
    /// CRM users with no mailbox.
    pub unmatched_crm_users: Vec<String>,
}

/// A run as the history keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub user: String,
    pub started: DateTime<Utc>,
    pub finished: DateTime<Utc>,
    /// Created / updated / deleted, Outlook then CRM.
    pub counts: [[u32; 3]; 2],
    pub conflicts: u32,
    pub matched: u32,
    pub possible_duplicates: u32,
    pub failed_pushes: u32,
    /// What went wrong (side failures; the run error, if it stopped).
    pub errors: Vec<String>,
    /// Appointments created / updated / cancelled by the run's calendar step.
    pub appointments: [u32; 3],
}

/// A merged contact as the API shows it.
#[derive(Clone, Debug, PartialEq)]
pub struct ContactView {
    /// The hub id.
    pub id: String,
    /// Marked Private (SPEC P1).
    pub private: bool,
    /// The linked item per side (Exchange, CRM).
    pub links: [Option<String>; 2],
    pub fields: crate::model::ContactFields,
}

/// The journal kind of run records.
pub const RUN: &str = "run";

/// What stops a user's run.
#[derive(Debug, thiserror::Error)]
pub enum HubError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Store(#[from] synchub_store::StoreError),
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    #[error("contact sync is off for {0} (SPEC C6)")]
    Disabled(String),
    #[error("{0}'s last run is held for review (SPEC X5): {1}")]
    Held(String, String),
    #[error("{0} has no held run")]
    NotHeld(String),
    #[error("a stored setting does not read: {0}")]
    Setting(String),
    #[error(transparent)]
    Calendar(#[from] CalendarError),
    #[error("{0}")]
    Join(Box<JoinError>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Invalid(String),
}

/// How a run is made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum RunMode {
    Sync,
    DryRun,
    Release,
}

/// A run the mass-change guard held, kept for review (SPEC X5).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HeldRun {
    pub at: DateTime<Utc>,
    pub held: Held,
    /// Every write it would have made.
    pub plan: Vec<Planned>,
}

/// What the hub keeps in memory for a user between runs.
#[derive(Default)]
struct UserCache {
    replica: Option<UserReplica>,
    sides: Option<(GraphSide, CrmSide)>,
}

/// The users whose replica is kept in memory between runs, within a budget of bytes. When
/// the budget is full, a user who does not fit is not kept (loaded again at its next run
/// with changes: see `Hub::pull_early`), and those kept stay: the scheduler runs every user
/// in turn, and dropping the one who ran longest ago would drop each just before its next
/// run (none would be found kept). A kept user leaves the count while its run is in flight,
/// so with runs in parallel another user finishing then may take its place. A kept user not
/// kept again for twice as many keeps as there are known users is stale, and makes room.
struct Kept {
    budget: usize,
    used: usize,
    tick: u64,
    /// User → (last kept at tick, bytes).
    users: HashMap<String, (u64, usize)>,
}

impl Kept {
    /// Keep `user`, taking `bytes`, if it fits once stale users (not kept again for twice as
    /// many keeps as there are `known` users) are dropped. Returns whether it is kept, and
    /// the users dropped.
    fn admit(&mut self, user: &str, bytes: usize, known: u64) -> (bool, Vec<String>) {
        self.tick += 1;
        let tick = self.tick;
        self.remove(user);
        let mut dropped = Vec::new();
        if self.used + bytes > self.budget {
            let stale: Vec<String> =
                self.users.iter().filter(|(_, (last, _))| tick - last > 2 * known).map(|(u, _)| u.clone()).collect();
            for u in stale {
                self.remove(&u);
                dropped.push(u);
            }
        }
        if self.used + bytes > self.budget {
            return (false, dropped);
        }
        self.users.insert(user.to_string(), (tick, bytes));
        self.used += bytes;
        (true, dropped)
    }

    /// `user` leaves the count (if it was kept); whether it was.
    fn remove(&mut self, user: &str) -> bool {
        match self.users.remove(user) {
            Some((_, bytes)) => {
                self.used -= bytes;
                true
            }
            None => false,
        }
    }
}

/// The default budget for users kept in memory between runs (`[store] cache_mib`).
pub const DEFAULT_CACHE_MIB: usize = 300;

/// What pulling a user before loading it found (see `Hub::pull_early`).
enum Early {
    /// Nothing new on either side and nothing pending: nothing to do.
    Quiet,
    /// The pulls' answers (Exchange, CRM), for the run.
    Pulled([Option<EarlyPull>; 2]),
}

/// Runs writing more than this many items do not keep their replica in memory.
const BIG_RUN: u32 = 200;

/// The user setting switching contact sync on or off over the API (SPEC C6).
const CONTACT_SYNC: &str = "contact_sync";

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// When a run ends, even by a panic: its user's kept contacts are dropped (the store may
/// have changed) and, if it claimed the user, the claim is released.
struct RunDone<'a> {
    hub: &'a Hub,
    user: &'a str,
    claimed: bool,
}

impl Drop for RunDone<'_> {
    fn drop(&mut self) {
        self.hub.changed(self.user);
        if self.claimed {
            lock(&self.hub.in_flight).remove(self.user);
        }
    }
}

/// The global setting holding contact settings changed over the API.
const SETTINGS: &str = "contact_settings";
/// The global setting holding the scheduler interval set over the API.
const INTERVAL: &str = "interval_secs";

/// Contact settings an administrator changed over the API (they win over the configuration).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettingsUpdate {
    pub sync_notes: Option<bool>,
    pub initial_match: Option<crate::engine::matching::InitialMatch>,
    pub reuse_policy: Option<ReusePolicy>,
}

impl SettingsUpdate {
    fn apply(&self, s: &mut ContactSettings) {
        if let Some(v) = self.sync_notes {
            s.sync_notes = v;
        }
        if let Some(v) = self.initial_match {
            s.initial_match = v;
        }
        if let Some(v) = self.reuse_policy {
            s.reuse_policy = v;
        }
    }
}

/// The configuration's contact settings with the stored changes applied (logged where they
/// differ from the configuration).
fn apply_stored_settings(store: &Store, mut settings: ContactSettings) -> ContactSettings {
    match store.setting(None, SETTINGS) {
        Ok(Some(v)) if !v.is_empty() => match serde_json::from_slice::<SettingsUpdate>(&v) {
            Ok(update) => {
                let before = settings.clone();
                update.apply(&mut settings);
                if before.sync_notes != settings.sync_notes
                    || before.initial_match != settings.initial_match
                    || before.reuse_policy != settings.reuse_policy
                {
                    tracing::info!(?update, "settings changed over the API win over the configuration's");
                }
            }
            Err(e) => tracing::warn!(error = %e, "stored contact settings do not read; the configuration's are used"),
        },
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "reading stored contact settings failed; the configuration's are used"),
    }
    settings
}

/// The user setting holding the last run's possible duplicates.
const DUPLICATES: &str = "possible_duplicates";

/// The user setting holding the keys of dismissed possible duplicates.
const DISMISSED: &str = "dismissed_duplicates";

/// The user setting holding a held run.
const HELD: &str = "held_run";
/// The user setting naming the sides the next run restores.
const RESTORE: &str = "restore_sides";

/// The hub.
pub struct Hub {
    store: Store,
    graph: GraphClient,
    crm: CrmClient,
    rt: Handle,
    /// The contact settings: the configuration's, then what was changed over the API.
    settings: std::sync::RwLock<ContactSettings>,
    /// Seconds between scheduler cycles (the configuration's, or the API's).
    interval: std::sync::atomic::AtomicU64,
    overrides: BTreeMap<String, String>,
    /// Per user: the replica and the two sides as the last normal run left them (kept in
    /// memory so a run need not load the document or re-read items), behind the user's
    /// run lock.
    users: Mutex<HashMap<String, Arc<Mutex<UserCache>>>>,
    clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    calendar: Calendar,
    metrics: metrics::Metrics,
    /// The last matching of users.
    matched: Mutex<Option<UserMatch>>,
    /// Users whose run is in flight, and since when.
    in_flight: Mutex<HashMap<String, DateTime<Utc>>>,
    /// Users' merged contacts for the API, dropped when a run changes them.
    views: Mutex<Views>,
    /// Which users' replicas are kept, within the memory budget.
    kept: Mutex<Kept>,
}

#[derive(Default)]
struct Views {
    /// Bumped whenever a user's contacts may have changed.
    generation: u64,
    users: HashMap<String, Arc<ContactsView>>,
}

/// A user's merged contacts, in hub id order, and where each id is.
#[derive(Debug, Default)]
pub struct ContactsView {
    pub list: Vec<ContactView>,
    pub by_id: HashMap<String, usize>,
}

impl Hub {
    /// A hub over `store` and the two clients; `rt` runs the clients' requests. Runs are
    /// made from blocking threads (`spawn_blocking`), never on the runtime's own workers.
    pub fn new(
        store: Store,
        graph: GraphClient,
        crm: CrmClient,
        rt: Handle,
        settings: ContactSettings,
        overrides: BTreeMap<String, String>,
    ) -> Hub {
        let clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync> = Arc::new(Utc::now);
        let calendar = Calendar::new(
            store.clone(),
            graph.clone(),
            crm.clone(),
            rt.clone(),
            CalendarSettings::default(),
            clock.clone(),
        );
        let settings = apply_stored_settings(&store, settings);
        let interval = match store.setting(None, INTERVAL) {
            Ok(Some(v)) => String::from_utf8_lossy(&v).parse().unwrap_or(300),
            _ => 300,
        };
        Hub {
            store,
            graph,
            crm,
            rt,
            settings: std::sync::RwLock::new(settings),
            interval: std::sync::atomic::AtomicU64::new(interval),
            overrides: overrides.into_iter().map(|(k, v)| (k.to_lowercase(), v)).collect(),
            users: Mutex::new(HashMap::new()),
            clock,
            calendar,
            metrics: metrics::Metrics::new(),
            matched: Mutex::new(None),
            in_flight: Mutex::new(HashMap::new()),
            views: Mutex::new(Views::default()),
            kept: Mutex::new(Kept { budget: DEFAULT_CACHE_MIB << 20, used: 0, tick: 0, users: HashMap::new() }),
        }
    }

    /// Keep at most about `mib` MiB of users' state in memory between runs (0: none; every
    /// run with changes loads its user from the store).
    pub fn with_cache_mib(self, mib: usize) -> Hub {
        lock(&self.kept).budget = mib.saturating_mul(1 << 20);
        self
    }

    /// Keep `user`'s replica for the next run, if it fits in
    /// the budget (after dropping stale users, see [`Kept`]).
    fn keep(&self, user: &str, cache: &mut UserCache, replica: UserReplica) {
        let bytes = replica.approx_bytes();
        let known = lock(&self.users).len() as u64;
        let (admitted, dropped) = lock(&self.kept).admit(user, bytes, known);
        if admitted {
            cache.replica = Some(replica);
        }
        self.drop_kept(dropped);
    }

    /// Drop the replicas of users no longer kept.
    fn drop_kept(&self, dropped: Vec<String>) {
        for other in dropped {
            let Some(cell) = lock(&self.users).get(&other).cloned() else { continue };
            // A user whose run is in flight has taken its replica out already.
            let mut other = match cell.try_lock() {
                Ok(c) => c,
                Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
                Err(std::sync::TryLockError::WouldBlock) => continue,
            };
            other.replica = None;
        }
    }

    /// `user`'s kept replica was taken (by its run).
    fn unkeep(&self, user: &str) {
        lock(&self.kept).remove(user);
    }

    /// The hub's metrics (SPEC A5).
    pub fn metrics(&self) -> &metrics::Metrics {
        &self.metrics
    }

    /// The CRM client (for the API's proxy look-ups).
    pub fn crm(&self) -> &CrmClient {
        &self.crm
    }

    /// Use `settings` for calendar sync; with `enabled`, turn it on in the store (it stays
    /// on: a config saying off later is logged and ignored, SPEC K1).
    pub fn with_calendar(mut self, settings: CalendarSettings) -> Result<Hub, HubError> {
        let enable = settings.enabled;
        self.calendar = self.new_calendar(settings);
        if enable {
            self.calendar.set_enabled(true)?;
        } else if self.calendar.enabled()? {
            tracing::info!(
                "calendar sync is on in the store; the configuration's `enabled = false` cannot turn it off (SPEC K1)"
            );
        }
        Ok(self)
    }

    /// A calendar over the hub's store, clients and clock.
    fn new_calendar(&self, settings: CalendarSettings) -> Calendar {
        Calendar::new(
            self.store.clone(),
            self.graph.clone(),
            self.crm.clone(),
            self.rt.clone(),
            settings,
            self.clock.clone(),
        )
    }

    /// The calendar: settings, appointments, history, search, skipped items (SPEC K1–K12).
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Turn calendar sync on; turning it off once on is refused (SPEC K1).
    pub fn set_calendar_sync(&self, on: bool) -> Result<(), HubError> {
        Ok(self.calendar.set_enabled(on)?)
    }

    fn cal_user(pair: &UserPair) -> CalUser {
        CalUser { user: pair.crm_user.clone(), mailbox: pair.mailbox.clone(), address: pair.address.clone() }
    }

    /// The calendar step alone (the scheduler runs it for a user whose contact sync is off:
    /// nothing is sent, and their flagged items say why, SPEC C7, K11).
    pub fn calendar_step(&self, pair: &UserPair) -> Result<CalendarReport, HubError> {
        let cell = self.user_cell(&pair.key);
        let _running = cell.lock().unwrap_or_else(|p| p.into_inner());
        if !self.calendar.has_directory() {
            self.match_users()?;
        }
        Ok(self.calendar.step(&Hub::cal_user(pair), self.enabled(pair))?)
    }

    /// The calendar step that follows a contact run.
    fn calendar_after(&self, pair: &UserPair) -> Result<CalendarReport, CalendarError> {
        if !self.calendar.has_directory() {
            // The calendar links firm users and waits for every user's first pass (K7,
            // K12): it needs the matched users once.
            if let Err(e) = self.match_users() {
                tracing::warn!(error = %e, "matching users for the calendar failed");
            }
        }
        self.calendar.step(&Hub::cal_user(pair), true)
    }

    /// Add an unmatched attendee of `pair`'s appointments to their CRM list and link them
    /// (SPEC K4); the CRM ContactID.
    pub fn add_attendee(&self, pair: &UserPair, email: &str) -> Result<String, HubError> {
        Ok(self.calendar.add_attendee(&Hub::cal_user(pair), email)?)
    }

    /// A hub as `config` describes it, its store opened (made if missing).
    pub fn from_config(config: &Config, rt: Handle) -> Result<Hub, HubError> {
        use synchub_connectors::graph::{Credentials, GraphConfig};
        use synchub_connectors::http::{RetryPolicy, Secret};
        std::fs::create_dir_all(&config.store.path).map_err(|e| {
            HubError::Connector(ConnectorError::new(
                synchub_connectors::ErrorKind::Unavailable,
                format!("creating {}: {e}", config.store.path.display()),
            ))
        })?;
        let store = Store::open(&config.store.path)?;
        let g = &config.graph;
        let secret = Secret::new(g.client_secret.clone().unwrap_or_default());
        let mut graph = GraphConfig::new(Credentials::new(&g.authority, &g.tenant, &g.client_id, secret));
        graph.base = g.base.clone();
        graph.page_size = g.page_size;
        let graph = GraphClient::new(graph)?;
        let token = Secret::new(config.crm.token.clone().unwrap_or_default());
        let crm = CrmClient::new(&config.crm.base, token, RetryPolicy::default())?;
        let hub = Hub::new(store, graph, crm, rt, config.contacts.clone(), config.users.clone())
            .with_calendar(config.calendar.clone())?
            .with_cache_mib(config.store.cache_mib);
        hub.default_interval(config.schedule.interval_secs)?;
        Ok(hub)
    }

    /// Use `clock` for run times (tests set time).
    pub fn with_clock(mut self, clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>) -> Hub {
        self.clock = clock;
        self.calendar = self.new_calendar(self.calendar.settings().clone());
        self
    }

    /// The store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The contact settings.
    pub fn settings(&self) -> ContactSettings {
        self.settings.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Change contact settings over the API: stored, so they win over the configuration from
    /// now on (DESIGN.md "settings"); each run reads them when it starts.
    pub fn update_settings(&self, update: &SettingsUpdate) -> Result<(), HubError> {
        let mut stored: SettingsUpdate = match self.store.setting(None, SETTINGS)? {
            Some(v) if !v.is_empty() => serde_json::from_slice(&v).map_err(|e| HubError::Setting(e.to_string()))?,
            _ => SettingsUpdate::default(),
        };
        stored.sync_notes = update.sync_notes.or(stored.sync_notes);
        stored.initial_match = update.initial_match.or(stored.initial_match);
        stored.reuse_policy = update.reuse_policy.or(stored.reuse_policy);
        let json = serde_json::to_vec(&stored).map_err(|e| HubError::Setting(e.to_string()))?;
        self.store.set_setting(None, SETTINGS, &json)?;
        let mut settings = self.settings.write().unwrap_or_else(|p| p.into_inner());
        stored.apply(&mut settings);
        tracing::info!(?update, "contact settings changed over the API");
        Ok(())
    }

    /// Seconds between scheduler cycles.
    pub fn interval_secs(&self) -> u64 {
        self.interval.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Use the configuration's interval unless one was set over the API.
    pub fn default_interval(&self, secs: u64) -> Result<(), HubError> {
        if self.store.setting(None, INTERVAL)?.is_none() {
            self.interval.store(secs, std::sync::atomic::Ordering::Relaxed);
        }
        Ok(())
    }

    /// Set the interval between cycles (from the next cycle on), stored.
    pub fn set_interval(&self, secs: u64) -> Result<(), HubError> {
        self.store.set_setting(None, INTERVAL, secs.to_string().as_bytes())?;
        self.interval.store(secs, std::sync::atomic::Ordering::Relaxed);
        tracing::info!(secs, "scheduler interval changed over the API");
        Ok(())
    }

    /// Match the tenant's mailboxes to the CRM's users: by override first, then by primary
    /// SMTP address or UPN against the CRM user's e-mail or login, case-insensitively.
    /// Nothing is guessed: the rest is reported unmatched.
    pub fn match_users(&self) -> Result<UserMatch, HubError> {
        let mailboxes = self.rt.block_on(self.graph.users())?;
        let crm_users = self.rt.block_on(self.crm.users())?;
        let mut out = UserMatch::default();
        let mut used = std::collections::HashSet::new();
        for m in &mailboxes {
            let names: Vec<String> = [Some(&m.id), m.mail.as_ref(), m.user_principal_name.as_ref()]
                .into_iter()
                .flatten()
                .map(|s| s.to_lowercase())
                .collect();
            let address = m.mail.clone().or_else(|| m.user_principal_name.clone()).unwrap_or_else(|| m.id.clone());
            let by_override = names.iter().find_map(|n| self.overrides.get(n));
            let found = match by_override {
                Some(id) => crm_users.iter().find(|u| u.id == *id),
                None => crm_users
                    .iter()
                    .find(|u| names.iter().any(|n| u.email.eq_ignore_ascii_case(n) || u.login.eq_ignore_ascii_case(n))),
            };
            match found {
                Some(u) if used.insert(u.id.clone()) => out.pairs.push(UserPair {
                    key: u.id.clone(),
                    mailbox: m.id.clone(),
                    address,
                    crm_user: u.id.clone(),
                }),
                _ => out.unmatched_mailboxes.push(address),
            }
        }
        out.unmatched_crm_users = crm_users.iter().filter(|u| !used.contains(&u.id)).map(|u| u.id.clone()).collect();
        for m in &out.unmatched_mailboxes {
            tracing::warn!(mailbox = %m, "no CRM user for this mailbox; not synced (SPEC A1)");
        }
        let active = out.pairs.iter().filter(|p| self.enabled(p)).map(|p| p.crm_user.clone()).collect();
        self.calendar.set_directory(&crm_users, active);
        *lock(&self.matched) = Some(out.clone());
        Ok(out)
    }

    /// Whether contact sync is on for `pair` (SPEC C6).
    pub fn enabled(&self, pair: &UserPair) -> bool {
        // A switch made over the API (stored) wins over the configuration.
        match self.store.setting(Some(&pair.key), CONTACT_SYNC) {
            Ok(Some(v)) if v == b"on" => return true,
            Ok(Some(v)) if v == b"off" => return false,
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(user = %pair.key, error = %e, "reading the contact sync switch failed; the configuration decides")
            }
        }
        !self.settings().disabled_users.iter().any(|d| {
            d.eq_ignore_ascii_case(&pair.crm_user) || d.eq_ignore_ascii_case(&pair.address) || *d == pair.mailbox
        })
    }

    /// Switch `user`'s contact sync on or off (SPEC C6); stored, so it outlives restarts and
    /// wins over the configuration. Waits for the user's run in flight.
    pub fn set_contact_sync(&self, user: &str, on: bool) -> Result<(), HubError> {
        let cell = self.user_cell(user);
        let _running = cell.lock().unwrap_or_else(|p| p.into_inner());
        self.store.set_setting(Some(user), CONTACT_SYNC, if on { b"on" } else { b"off" })?;
        tracing::info!(user, on, "contact sync switched (SPEC C6)");
        Ok(())
    }

    /// The matched pair of CRM user `user` (from the last matching, else matching now).
    pub fn pair_for(&self, user: &str) -> Result<Option<UserPair>, HubError> {
        let known = lock(&self.matched).as_ref().and_then(|m| m.pairs.iter().find(|p| p.crm_user == user).cloned());
        if known.is_some() {
            return Ok(known);
        }
        Ok(self.match_users()?.pairs.into_iter().find(|p| p.crm_user == user))
    }

    /// When `user`'s run in flight started, if one is.
    pub fn running(&self, user: &str) -> Option<DateTime<Utc>> {
        lock(&self.in_flight).get(user).copied()
    }

    /// Claim `user` for a run starting now, unless one is in flight: `Ok(started)` for the
    /// caller to pass to [`Hub::sync_claimed`], `Err(started)` of the run in flight.
    pub fn claim(&self, user: &str) -> Result<DateTime<Utc>, DateTime<Utc>> {
        let mut in_flight = lock(&self.in_flight);
        if let Some(at) = in_flight.get(user) {
            return Err(*at);
        }
        let now = (self.clock)();
        in_flight.insert(user.to_string(), now);
        Ok(now)
    }

    /// Run `pair` as claimed at `started` (see [`Hub::claim`]).
    pub fn sync_claimed(&self, pair: &UserPair, started: DateTime<Utc>) -> Result<RunReport, HubError> {
        let _done = RunDone { hub: self, user: &pair.key, claimed: true };
        self.run_at(pair, RunMode::Sync, Some(started))
    }

    /// The fields both sides carry (SPEC C8: notes only when `sync_notes`).
    pub fn fields(&self) -> FieldSet {
        if self.settings().sync_notes {
            FieldSet::all()
        } else {
            FieldSet::all().without(Field::Notes)
        }
    }

    /// Run `pair`'s sync once (one run per user at a time: a second caller waits), and
    /// record it in the user's history. A user with a held run is not run until the run is
    /// released or discarded (SPEC X5).
    pub fn sync_user(&self, pair: &UserPair) -> Result<RunReport, HubError> {
        self.run(pair, RunMode::Sync)
    }

    /// Plan `pair`'s run without writing anything anywhere (SPEC X6): the report's `plan`
    /// lists every create, update and delete per side.
    pub fn dry_run(&self, pair: &UserPair) -> Result<RunReport, HubError> {
        self.run(pair, RunMode::DryRun)
    }

    /// Release `pair`'s held run: it is planned again once with the guard off and carried
    /// out (SPEC X5).
    pub fn release(&self, pair: &UserPair) -> Result<RunReport, HubError> {
        if self.held(&pair.key)?.is_none() {
            return Err(HubError::NotHeld(pair.key.clone()));
        }
        self.run(pair, RunMode::Release)
    }

    /// Discard `user`'s held run: nothing of it is applied, and the next run restores the
    /// sides whose changes tripped the guard from the document (SPEC X5).
    pub fn discard(&self, user: &str) -> Result<(), HubError> {
        let cell = self.user_cell(user);
        let _running = cell.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = self.held(user)? else { return Err(HubError::NotHeld(user.to_string())) };
        let restore = Side::BOTH.map(|s| held.held.sides.contains(&s));
        let json = serde_json::to_vec(&restore).map_err(|e| HubError::Setting(e.to_string()))?;
        self.store.set_setting(Some(user), RESTORE, &json)?;
        self.store.set_setting(Some(user), HELD, b"")?;
        tracing::info!(user, "held run discarded; the next run restores {:?} from the document", held.held.sides);
        Ok(())
    }

    /// Merge possible duplicate `key` of `user` (SPEC C3): its Outlook item and its CRM
    /// item become one contact, their fields resolved as a run resolves a same-field
    /// conflict (the conflicts are recorded), and the copies the hub made of each are
    /// deleted by the next run. A group with more than one item on a side needs `exchange`
    /// and `crm` to say which two. The rest of the group stays listed while it still has
    /// items on both sides.
    pub fn merge_duplicate(
        &self,
        user: &str,
        key: &str,
        exchange: Option<&str>,
        crm: Option<&str>,
    ) -> Result<crate::merge::join::Joined, HubError> {
        let cell = self.user_cell(user);
        let mut cache = cell.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.possible_duplicates(user)?;
        let Some(at) = all.iter().position(|d| d.key == key) else {
            return Err(HubError::NotFound(format!("{user} has no possible duplicate {key}")));
        };
        let pick = |side: Side, items: &[ItemId], chosen: Option<&str>| -> Result<ItemId, HubError> {
            match (chosen, items) {
                (Some(c), _) => items.iter().find(|i| i.as_str() == c).cloned().ok_or_else(|| {
                    HubError::Invalid(format!(
                        "`{}`: {c} is not one of this possible duplicate's {side} items",
                        side.name()
                    ))
                }),
                (None, [one]) => Ok(one.clone()),
                (None, []) => Err(HubError::Invalid(format!("this possible duplicate has no {side} item to merge"))),
                (None, _) => Err(HubError::Invalid(format!(
                    "this possible duplicate has {} {side} items: say which one in `{}`",
                    items.len(),
                    side.name()
                ))),
            }
        };
        let group = &all[at];
        let (e, c) = (pick(Side::Exchange, &group.exchange, exchange)?, pick(Side::Crm, &group.crm, crm)?);
        // A kept replica equals the store (only a run that committed keeps one); after an
        // error below it is dropped, and the next run loads the user again.
        let mut replica = match cache.replica.take() {
            Some(r) => {
                self.unkeep(user);
                r
            }
            None => UserReplica::load(&self.store, user).map_err(EngineError::from)?,
        };
        let now = (self.clock)();
        let joined = match crate::merge::join::join(&mut replica, &e, &c, [self.fields(); 2], now) {
            Ok(j) => j,
            Err(err @ (JoinError::AlreadyOne(..) | JoinError::NotLinked { .. })) => {
                // Stale (merged before, or an item went since the run that listed it): the
                // group leaves the list, and the caller is told why.
                all.remove(at);
                self.set_duplicates(user, &all)?;
                return Err(HubError::Join(Box::new(err)));
            }
            Err(err) => return Err(HubError::Join(Box::new(err))),
        };
        let mut write = replica.take_write().map_err(EngineError::from)?;
        for conflict in &joined.conflicts {
            write.journal(crate::engine::CONFLICT, now.timestamp_millis(), crate::engine::encode_record(conflict)?);
        }
        self.store.commit(user, write)?;
        self.changed(user);
        self.keep(user, &mut cache, replica);
        let group = &mut all[at];
        group.exchange.retain(|i| *i != e);
        group.crm.retain(|i| *i != c);
        if group.exchange.is_empty() || group.crm.is_empty() {
            all.remove(at);
        }
        self.set_duplicates(user, &all)?;
        tracing::info!(user, key, exchange = %e, crm = %c, contact = %joined.keep, removed = %joined.gone,
            conflicts = joined.conflicts.len(), "possible duplicate merged (SPEC C3); the next run writes it out");
        Ok(joined)
    }

    /// `user`'s held run, if any.
    pub fn held(&self, user: &str) -> Result<Option<HeldRun>, HubError> {
        match self.store.setting(Some(user), HELD)? {
            Some(bytes) if !bytes.is_empty() => {
                serde_json::from_slice(&bytes).map(Some).map_err(|e| HubError::Setting(format!("held run: {e}")))
            }
            _ => Ok(None),
        }
    }

    /// The user's cell: what the hub keeps of them, behind their run lock.
    fn user_cell(&self, user: &str) -> Arc<Mutex<UserCache>> {
        let mut users = self.users.lock().unwrap_or_else(|p| p.into_inner());
        users.entry(user.to_string()).or_insert_with(|| Arc::new(Mutex::new(UserCache::default()))).clone()
    }

    /// Pull both sides of a user who is not in memory, from the stored cursors. A user with
    /// a cursor missing (never synced, or restoring) or pushes pending is left to the run.
    /// With nothing new on either side, the new cursors are written (deferred: a crash
    /// leaves the old ones, from which the pull is made again) and the run is over.
    fn pull_early(&self, user: &str, graph: &mut GraphSide, crm: &mut CrmSide) -> Result<Option<Early>, HubError> {
        let marks = self.store.user_marks(user)?;
        let stored = Side::BOTH
            .map(|side| marks.cursors.iter().find(|(s, _)| s.as_str() == side.name()).map(|(_, c)| c.clone()));
        // A stored attempt mark is settled by loading the user, even were the pending count
        // too low (as a failed write could leave it before such writes were refused).
        if marks.intents > 0 || marks.attempts > 0 || stored.iter().any(Option::is_none) {
            return Ok(None);
        }
        let pulls = pull_all(&mut [graph as &mut dyn ContactReplica, crm], &stored);
        let quiet = pulls.iter().all(|(_, p)| p.as_ref().is_ok_and(|p| !p.full && p.items.is_empty()));
        if !quiet {
            let mut early: [Option<EarlyPull>; 2] = [None, None];
            for (side, answer) in pulls {
                early[side.index()] = Some((stored[side.index()].clone(), answer));
            }
            return Ok(Some(Early::Pulled(early)));
        }
        let mut write = UserWrite::new();
        for (side, answer) in pulls {
            if let Ok(p) = answer {
                if stored[side.index()].as_deref() != Some(p.cursor.as_str()) {
                    write.cursor(side.name(), Some(p.cursor));
                }
            }
        }
        if !write.is_empty() {
            self.store.commit_deferred(user, write)?;
        }
        Ok(Some(Early::Quiet))
    }

    fn run(&self, pair: &UserPair, mode: RunMode) -> Result<RunReport, HubError> {
        if mode == RunMode::DryRun {
            return self.run_at(pair, mode, None);
        }
        // With a run in flight (the API's, or the scheduler's), this one waits for it on the
        // user's lock and is not the one the API reports.
        let claimed = self.claim(&pair.key).ok();
        let _done = RunDone { hub: self, user: &pair.key, claimed: claimed.is_some() };
        self.run_at(pair, mode, claimed)
    }

    fn run_at(&self, pair: &UserPair, mode: RunMode, claimed: Option<DateTime<Utc>>) -> Result<RunReport, HubError> {
        // One span per run (SPEC A5): every log line of the run names the user and the mode.
        let span = tracing::info_span!("run", user = %pair.key, mode = ?mode);
        let _entered = span.enter();
        if !self.enabled(pair) {
            if mode == RunMode::Sync {
                if let Err(e) = self.calendar_step(pair) {
                    tracing::warn!(user = %pair.key, error = %e, "calendar step of a user with contact sync off failed");
                }
            }
            return Err(HubError::Disabled(pair.address.clone()));
        }
        let cell = self.user_cell(&pair.key);
        let mut cache = cell.lock().unwrap_or_else(|p| p.into_inner());
        // Switched off while this run waited for the one before it (SPEC C6).
        if !self.enabled(pair) {
            return Err(HubError::Disabled(pair.address.clone()));
        }
        if mode == RunMode::Sync {
            if let Some(held) = self.held(&pair.key)? {
                // The calendar does not wait for the contact review (K7 readiness, K5
                // cancellations): its step runs on its own.
                if let Err(e) = self.calendar_after(pair) {
                    tracing::warn!(user = %pair.key, error = %e, "calendar step failed; retried next run");
                }
                return Err(HubError::Held(pair.key.clone(), held.held.reason));
            }
        }
        let restore: [bool; 2] = match self.store.setting(Some(&pair.key), RESTORE)? {
            Some(bytes) if !bytes.is_empty() && mode != RunMode::DryRun => {
                serde_json::from_slice(&bytes).map_err(|e| HubError::Setting(format!("restore: {e}")))?
            }
            _ => [false; 2],
        };
        let started = claimed.unwrap_or_else(|| (self.clock)());
        let settings = self.settings();
        let set = self.fields();
        let sides = cache.sides.take();
        let (mut graph, mut crm) = sides.unwrap_or_else(|| {
            (
                GraphSide::new(self.graph.clone(), self.rt.clone(), &pair.mailbox, set),
                CrmSide::new(self.crm.clone(), self.rt.clone(), &pair.crm_user, set),
            )
        });
        // Sides kept from an earlier run carry the fields of the settings now (`sync_notes`
        // may have changed over the API): a push never writes a field no longer carried.
        graph.set_fields(set);
        crm.set_fields(set);
        let ctx = RunCtx {
            fields: [set; 2],
            now: started,
            deterministic_ids: false,
            split_identity: settings.reuse_policy == ReusePolicy::Split,
        };
        let opts = RunOptions {
            matching: settings.initial_match,
            dry_run: mode == RunMode::DryRun,
            // A release, and a restore the administrator asked for by discarding, are not
            // held again.
            guard: (mode != RunMode::Release && !restore.iter().any(|r| *r)).then_some(settings.guard),
            restore,
            ..RunOptions::new(ctx)
        };
        // A dry run plans on a copy loaded from the store; the kept replica stays as it is.
        let kept = if mode == RunMode::DryRun { None } else { cache.replica.take() };
        if kept.is_some() {
            self.unkeep(&pair.key);
        }
        // A user not kept in memory is pulled before being loaded: with nothing new on
        // either side and nothing pending, the run is over without loading anything.
        let early = match &kept {
            None if mode == RunMode::Sync && !restore.iter().any(|r| *r) => {
                self.pull_early(&pair.key, &mut graph, &mut crm)?
            }
            _ => None,
        };
        let result = match early {
            Some(Early::Quiet) => {
                self.metrics.quiet_unloaded();
                Ok((None, RunReport::default()))
            }
            early => {
                let [early_graph, early_crm] = match early {
                    Some(Early::Pulled(pulls)) => pulls,
                    _ => [None, None],
                };
                let replica = match kept {
                    Some(r) => Ok(r),
                    None => {
                        self.metrics.user_loaded();
                        UserReplica::load(&self.store, &pair.key).map_err(EngineError::from)
                    }
                };
                replica.and_then(|mut replica| {
                    for side in Side::BOTH.into_iter().filter(|s| restore[s.index()]) {
                        // A restore needs the side's whole listing.
                        replica.set_cursor(side, None);
                    }
                    let mut graph = Prefetched::new(&mut graph, early_graph);
                    let mut crm = Prefetched::new(&mut crm, early_crm);
                    run_user(&self.store, &pair.key, replica, [&mut graph, &mut crm], opts)
                        .map(|(replica, report)| (Some(replica), report))
                })
            }
        };
        let result = result.map(|(replica, report)| {
            // Only a run that wrote what it observed leaves a replica equal to the store:
            // a held run's or a dry run's is dropped, and loaded again next time.
            // A run that wrote many contacts (a first sync) leaves Automerge's in-memory
            // structures several times the size of a fresh load: it is dropped and loaded
            // compactly next time.
            let written: u32 = report.counts.iter().map(|c| c.created + c.updated + c.deleted).sum();
            // What the sides read is not kept: the next run's pull brings what changed, and
            // the CRM side finds what else it updates by e-mail address.
            graph.forget_items();
            crm.forget_items();
            cache.sides = Some((graph, crm));
            if let Some(replica) =
                replica.filter(|_| mode != RunMode::DryRun && report.held.is_none() && written <= BIG_RUN)
            {
                self.keep(&pair.key, &mut cache, replica);
            }
            report
        });
        if mode == RunMode::DryRun {
            return Ok(result?);
        }
        // The calendar step follows the contact run (DESIGN.md "Calendar pipeline"); its
        // failure is recorded with the run and retried next run.
        let calendar = self.calendar_after(pair);
        let (appointments, calendar_errors) = match &calendar {
            Ok(c) => {
                let a = c.appointments;
                ([a.created, a.updated, a.cancelled], c.errors.iter().map(|e| format!("calendar: {e}")).collect())
            }
            Err(e) => {
                tracing::warn!(user = %pair.key, error = %e, "calendar step failed; retried next run");
                ([0; 3], vec![format!("calendar: {e}")])
            }
        };
        let finished = (self.clock)();
        let record = match &result {
            Ok(report) => RunRecord {
                user: pair.key.clone(),
                started,
                finished,
                counts: [Side::Exchange, Side::Crm].map(|s| {
                    let c = report.counts[s.index()];
                    [c.created, c.updated, c.deleted]
                }),
                conflicts: report.log.conflicts.len() as u32,
                matched: report.log.matched.len() as u32,
                possible_duplicates: report.possible_duplicates.len() as u32,
                failed_pushes: report.failed_pushes,
                errors: report
                    .errors
                    .iter()
                    .map(|(side, e)| format!("{side}: {e}"))
                    .chain(calendar_errors.clone())
                    .collect(),
                appointments,
            },
            Err(e) => RunRecord {
                user: pair.key.clone(),
                started,
                finished,
                counts: [[0; 3]; 2],
                conflicts: 0,
                matched: 0,
                possible_duplicates: 0,
                failed_pushes: 0,
                errors: std::iter::once(e.to_string()).chain(calendar_errors).collect(),
                appointments,
            },
        };
        let outcome = match &result {
            Ok(r) if r.held.is_some() => "held",
            Ok(r) if r.errors.is_empty() && record.errors.is_empty() => "ok",
            _ => "failed",
        };
        let seconds = (finished - started).num_milliseconds().max(0) as f64 / 1000.0;
        self.metrics.run(outcome, seconds, &record.counts, record.conflicts, record.appointments);
        match &result {
            Ok(r) => {
                for (_, e) in &r.errors {
                    self.metrics.error(error_kind(e));
                }
            }
            Err(_) => self.metrics.error("run"),
        }
        if calendar.is_err() || calendar.as_ref().is_ok_and(|c| !c.errors.is_empty()) {
            self.metrics.error("calendar");
        }
        let mut write = UserWrite::new();
        write.journal(RUN, finished.timestamp_millis(), encode_record(&record)?);
        self.store.commit(&pair.key, write)?;
        let report = result?;
        // The candidates the identity match would not pair (SPEC C3) stay listed for review.
        if report.held.is_none() && !report.possible_duplicates.is_empty() {
            let mut all = self.possible_duplicates(&pair.key)?;
            let dismissed = self.dismissed(&pair.key)?;
            for d in report.possible_duplicates.iter().filter(|d| !dismissed.contains(&d.key)) {
                all.retain(|known| known.key != d.key);
                all.push(d.clone());
            }
            self.set_duplicates(&pair.key, &all)?;
        }
        if let Some(held) = &report.held {
            let run = HeldRun { at: started, held: held.clone(), plan: report.plan.clone() };
            let json = serde_json::to_vec(&run).map_err(|e| HubError::Setting(e.to_string()))?;
            self.store.set_setting(Some(&pair.key), HELD, &json)?;
        } else {
            // A restore whose side could not be read is tried again next run.
            if restore.iter().any(|r| *r) && report.errors.is_empty() {
                self.store.set_setting(Some(&pair.key), RESTORE, b"")?;
            }
            if mode == RunMode::Release {
                self.store.set_setting(Some(&pair.key), HELD, b"")?;
            }
        }
        Ok(report)
    }

    /// `user`'s merged contacts as the store holds them (the document and each side's
    /// link), deleted ones left out, ordered by hub id. Read from the store, so a run in
    /// flight is not waited for.
    pub fn contacts(&self, user: &str) -> Result<Vec<ContactView>, HubError> {
        Ok(self.contacts_view(user)?.list.clone())
    }

    /// `user`'s merged contacts, kept in memory between runs (a run drops them), with an
    /// index by hub id: the API's reads.
    pub fn contacts_view(&self, user: &str) -> Result<Arc<ContactsView>, HubError> {
        if let Some(view) = self.cached_contacts(user) {
            return Ok(view);
        }
        let generation = lock(&self.views).generation;
        let list = self.load_contacts(user)?;
        let by_id = list.iter().enumerate().map(|(i, c)| (c.id.clone(), i)).collect();
        let view = Arc::new(ContactsView { list, by_id });
        let mut views = lock(&self.views);
        // A run that committed meanwhile may have changed what was read: keep it only if not.
        if views.generation == generation {
            views.users.insert(user.to_string(), view.clone());
        }
        Ok(view)
    }

    /// The contacts of `user` kept in memory, if they are.
    pub fn cached_contacts(&self, user: &str) -> Option<Arc<ContactsView>> {
        lock(&self.views).users.get(user).cloned()
    }

    /// Drop what is kept of `user`'s contacts (their store state changed).
    fn changed(&self, user: &str) {
        let mut views = lock(&self.views);
        views.generation += 1;
        views.users.remove(user);
    }

    fn load_contacts(&self, user: &str) -> Result<Vec<ContactView>, HubError> {
        let replica = UserReplica::load(&self.store, user).map_err(EngineError::from)?;
        let mut doc = replica.doc.clone();
        let mut out = Vec::new();
        for hub in doc.contact_ids() {
            let Some(obj) = doc.contact_obj(hub) else { continue };
            let c = doc.read(&obj, None);
            if c.deleted {
                continue;
            }
            let link = |side| replica.entry(side, hub).and_then(|e| e.item.as_ref()).map(|i| i.as_str().to_string());
            out.push(ContactView {
                id: hub.to_string(),
                private: c.fields.is_private(),
                links: [link(Side::Exchange), link(Side::Crm)],
                fields: c.fields,
            });
        }
        out.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(out)
    }

    /// The field-level history of `user`'s contact `id`, oldest first (SPEC X8); `None`
    /// when there is no such contact.
    pub fn contact_history(
        &self,
        user: &str,
        id: &str,
    ) -> Result<Option<Vec<crate::merge::history::FieldChange>>, HubError> {
        let Ok(hub) = id.parse::<crate::model::HubContactId>() else { return Ok(None) };
        let replica = UserReplica::load(&self.store, user).map_err(EngineError::from)?;
        let mut doc = replica.doc.clone();
        if doc.contact_obj(hub).is_none() {
            return Ok(None);
        }
        Ok(Some(crate::merge::history::field_history(&mut doc, hub)))
    }

    /// `user`'s recorded conflicts, oldest first (SPEC C5).
    pub fn conflicts(&self, user: &str) -> Result<Vec<crate::merge::Conflict>, HubError> {
        Ok(crate::engine::conflicts(&self.store, user)?)
    }

    /// The possible duplicates `user`'s last run left unpaired (SPEC C3).
    pub fn possible_duplicates(&self, user: &str) -> Result<Vec<crate::engine::matching::PossibleDuplicate>, HubError> {
        match self.store.setting(Some(user), DUPLICATES)? {
            Some(bytes) if !bytes.is_empty() => {
                serde_json::from_slice(&bytes).map_err(|e| HubError::Setting(format!("possible duplicates: {e}")))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Store `user`'s list of possible duplicates.
    fn set_duplicates(&self, user: &str, all: &[crate::engine::matching::PossibleDuplicate]) -> Result<(), HubError> {
        let json = serde_json::to_vec(all).map_err(|e| HubError::Setting(e.to_string()))?;
        Ok(self.store.set_setting(Some(user), DUPLICATES, &json)?)
    }

    /// The keys of `user`'s possible duplicates dismissed for good.
    fn dismissed(&self, user: &str) -> Result<Vec<String>, HubError> {
        match self.store.setting(Some(user), DISMISSED)? {
            Some(bytes) if !bytes.is_empty() => {
                serde_json::from_slice(&bytes).map_err(|e| HubError::Setting(format!("dismissed duplicates: {e}")))
            }
            _ => Ok(Vec::new()),
        }
    }

    /// Keep a possible duplicate (by its key, SPEC C3) apart for good: it leaves the list and
    /// is not listed again. `false` when `user` has no such candidate.
    pub fn dismiss_duplicate(&self, user: &str, key: &str) -> Result<bool, HubError> {
        let cell = self.user_cell(user);
        let _running = cell.lock().unwrap_or_else(|p| p.into_inner());
        let mut all = self.possible_duplicates(user)?;
        let before = all.len();
        all.retain(|d| d.key != key);
        if all.len() == before {
            return Ok(false);
        }
        let mut dismissed = self.dismissed(user)?;
        dismissed.push(key.to_string());
        let json = serde_json::to_vec(&dismissed).map_err(|e| HubError::Setting(e.to_string()))?;
        self.store.set_setting(Some(user), DISMISSED, &json)?;
        self.set_duplicates(user, &all)?;
        tracing::info!(user, key, "possible duplicate dismissed: kept apart for good (SPEC C3)");
        Ok(true)
    }

    /// `user`'s run history, oldest first.
    pub fn history(&self, user: &str) -> Result<Vec<RunRecord>, HubError> {
        Ok(read_journal(&self.store, user, RUN)?)
    }
}

/// The hub's users as the scheduler's jobs: each cycle matches mailboxes to CRM users again
/// (new staff are picked up) and runs every enabled pair on a blocking thread.
pub struct HubJobs {
    hub: Arc<Hub>,
    pairs: Mutex<HashMap<String, UserPair>>,
}

impl HubJobs {
    pub fn new(hub: Arc<Hub>) -> HubJobs {
        HubJobs { hub, pairs: Mutex::new(HashMap::new()) }
    }
}

/// A metric label for a connector error's kind.
fn error_kind(e: &ConnectorError) -> &'static str {
    use synchub_connectors::ErrorKind as K;
    match e.kind {
        K::Throttled { .. } => "throttled",
        K::ResyncRequired => "resync_required",
        K::PreconditionFailed => "precondition_failed",
        K::NotFound => "not_found",
        K::Unavailable => "unavailable",
        K::InvalidData => "invalid_data",
        K::AccessDenied => "access_denied",
    }
}

fn job_error(message: String, errors: &[&ConnectorError]) -> scheduler::JobError {
    let retry_after = errors
        .iter()
        .filter_map(|e| match e.kind {
            synchub_connectors::ErrorKind::Throttled { retry_after } => retry_after,
            _ => None,
        })
        .max();
    scheduler::JobError { message, retry_after }
}

impl scheduler::Jobs for HubJobs {
    fn interval(&self) -> Option<std::time::Duration> {
        Some(std::time::Duration::from_secs(self.hub.interval_secs()))
    }

    fn users(&self) -> scheduler::BoxFuture<'_, Result<Vec<String>, scheduler::JobError>> {
        Box::pin(async move {
            let hub = self.hub.clone();
            let matched = tokio::task::spawn_blocking(move || hub.match_users())
                .await
                .map_err(|e| job_error(format!("matching users: {e}"), &[]))?
                .map_err(|e| job_error(format!("matching users: {e}"), &[]))?;
            // With calendar sync on, users whose contact sync is off still get a calendar
            // step that says why their flagged items are not sent (SPEC C7, K11).
            let calendar_on = self.hub.calendar().enabled().unwrap_or(false);
            let enabled: Vec<UserPair> =
                matched.pairs.into_iter().filter(|p| calendar_on || self.hub.enabled(p)).collect();
            let keys = enabled.iter().map(|p| p.key.clone()).collect();
            let mut pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
            *pairs = enabled.into_iter().map(|p| (p.key.clone(), p)).collect();
            Ok(keys)
        })
    }

    fn run<'a>(&'a self, user: &'a str) -> scheduler::BoxFuture<'a, Result<(), scheduler::JobError>> {
        Box::pin(async move {
            let pair = {
                let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
                pairs.get(user).cloned()
            };
            let pair = match pair {
                Some(p) => p,
                None => {
                    self.users().await?;
                    let pairs = self.pairs.lock().unwrap_or_else(|p| p.into_inner());
                    pairs
                        .get(user)
                        .cloned()
                        .ok_or_else(|| job_error(format!("no matched, enabled user {user}"), &[]))?
                }
            };
            let hub = self.hub.clone();
            if !hub.enabled(&pair) {
                return tokio::task::spawn_blocking(move || hub.calendar_step(&pair))
                    .await
                    .map_err(|e| job_error(format!("the calendar step of {user} stopped: {e}"), &[]))?
                    .map(|_| ())
                    .map_err(|e| job_error(e.to_string(), &[]));
            }
            let result = tokio::task::spawn_blocking(move || hub.sync_user(&pair))
                .await
                .map_err(|e| job_error(format!("the run of {user} stopped: {e}"), &[]))?;
            match result {
                Ok(report) if report.errors.iter().all(|(_, e)| !e.outcome_unknown()) => {
                    // Done, or failed on what a retry cannot change (a value a side refuses,
                    // SPEC N2): reported in the run's history, retried next cycle.
                    Ok(())
                }
                Ok(report) => {
                    let errors: Vec<&ConnectorError> = report.errors.iter().map(|(_, e)| e).collect();
                    let message = report.errors.iter().map(|(s, e)| format!("{s}: {e}")).collect::<Vec<_>>().join("; ");
                    Err(job_error(message, &errors))
                }
                Err(HubError::Connector(e)) => Err(job_error(e.to_string(), &[&e])),
                // Held for review or switched off: retrying cannot help this cycle, and the
                // report says why (a wait longer than any max_wait ends the retries).
                Err(e @ (HubError::Held(..) | HubError::Disabled(_))) => {
                    Err(scheduler::JobError { message: e.to_string(), retry_after: Some(std::time::Duration::MAX) })
                }
                Err(e) => Err(job_error(e.to_string(), &[])),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kept(budget: usize) -> Kept {
        Kept { budget, used: 0, tick: 0, users: HashMap::new() }
    }

    /// Runs every user in turn, each taken out of the kept set when its run starts and
    /// offered back when it ends (as `Hub::run_user` does); how many runs found their user
    /// kept.
    fn rounds(k: &mut Kept, users: &[&str], rounds: usize) -> usize {
        let mut hits = 0;
        for _ in 0..rounds {
            for u in users {
                if k.remove(u) {
                    hits += 1;
                }
                k.admit(u, 10, users.len() as u64);
            }
        }
        hits
    }

    #[test]
    fn a2_users_run_in_turn_keep_those_that_fit_instead_of_each_dropping_the_next() {
        let users: Vec<String> = (0..10).map(|i| format!("u{i}")).collect();
        let users: Vec<&str> = users.iter().map(String::as_str).collect();
        let mut k = kept(40);
        // The first round fills the budget with the first four; every later round finds
        // them kept. Dropping whoever ran longest ago would find none kept.
        assert_eq!(rounds(&mut k, &users, 5), 4 * 4);
        assert_eq!(k.used, 40);
        let mut names: Vec<_> = k.users.keys().cloned().collect();
        names.sort();
        assert_eq!(names, ["u0", "u1", "u2", "u3"]);
    }

    #[test]
    fn a2_a_kept_user_who_stopped_running_makes_room_after_two_rounds() {
        let mut k = kept(20);
        assert_eq!(k.admit("gone", 10, 3), (true, vec![]));
        assert_eq!(k.admit("a", 10, 3), (true, vec![]));
        // "b" does not fit while "gone" ran recently.
        assert_eq!(k.admit("b", 10, 3), (false, vec![]));
        for _ in 0..6 {
            k.remove("a");
            k.admit("a", 10, 3);
        }
        // "gone" has not run for more than two rounds of the 3 known users: it is dropped.
        assert_eq!(k.admit("b", 10, 3), (true, vec!["gone".to_string()]));
        assert_eq!(k.used, 20);
    }

    #[test]
    fn a2_a_user_bigger_than_the_budget_is_not_kept() {
        let mut k = kept(5);
        assert_eq!(k.admit("a", 10, 1), (false, vec![]));
        assert_eq!(k.used, 0);
    }
}
