//! Calendar sync, one way (SPEC K1–K12): flagged Outlook items become firm-level CRM
//! appointments through an append-only log.
//!
//! A user's calendar step runs after their contact run: pull the calendarView delta, filter
//! (K2, K7, C7), append every new observed version of a sent item to the log (K8) and note
//! the user as a flagger of the meeting (one meeting per iCalUId, K12), all in one store
//! transaction; then project each touched meeting's source version to its CRM appointment
//! (K3, K5, K10), linking attendees, and record the projection, its search keys (K9) and its
//! unmatched attendees (K4) in a second transaction. A meeting whose projection did not
//! reach the CRM stays pending and is projected by the next step of any user.

pub mod index;
pub mod model;

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use synchub_connectors::crm::client::{AppointmentQuery, CrmClient};
use synchub_connectors::crm::wire::{
    Appointment, AppointmentStatus, Attendee, Contact as CrmContact, Email, User as CrmUser,
};
use synchub_connectors::graph::calendar::{
    CalendarCursor, CalendarItem, CalendarRound, EventChange, Sensitivity, Window,
};
use synchub_connectors::graph::GraphClient;
use synchub_connectors::{ConnectorError, ErrorKind};
use synchub_store::{CalendarWrite, LogEntry, Store};
use tokio::runtime::Handle;

use index::Dim;
use model::{
    decode, encode, flagged, meeting_id, refusal, CrmRef, Flagger, ItemRecord, ItemState, Linked, MeetingRecord,
    Projected, SkipReason, Span, Status, Version,
};

/// The calendar settings (config `[calendar]`).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CalendarSettings {
    /// Turn calendar sync on for everyone (SPEC K1). Once on in the store it stays on.
    #[serde(default)]
    pub enabled: bool,
    /// The Outlook category that flags an item for the CRM (K2).
    #[serde(default = "default_category")]
    pub category: String,
    /// Days after a meeting ended in which Outlook changes still update it (K10).
    #[serde(default = "default_held_window")]
    pub held_window_days: i64,
    /// How far ahead the calendar is read.
    #[serde(default = "default_horizon")]
    pub horizon_days: i64,
}

fn default_category() -> String {
    "CRM".into()
}
fn default_held_window() -> i64 {
    7
}
fn default_horizon() -> i64 {
    365
}

impl Default for CalendarSettings {
    fn default() -> Self {
        CalendarSettings {
            enabled: false,
            category: default_category(),
            held_window_days: default_held_window(),
            horizon_days: default_horizon(),
        }
    }
}

impl CalendarSettings {
    /// Check the values; the error names the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.category.trim().is_empty() {
            return Err("calendar.category must not be empty".into());
        }
        if !(0..=365).contains(&self.held_window_days) {
            return Err(format!("calendar.held_window_days must be 0 to 365, not {}", self.held_window_days));
        }
        if !(1..=3650).contains(&self.horizon_days) {
            return Err(format!("calendar.horizon_days must be 1 to 3650, not {}", self.horizon_days));
        }
        Ok(())
    }

    fn window(&self) -> Window {
        Window { past_days: self.held_window_days.max(7), horizon_days: self.horizon_days, ..Window::default() }
    }
}

/// What goes wrong in the calendar.
#[derive(Debug, thiserror::Error)]
pub enum CalendarError {
    #[error("calendar sync cannot be turned off once it is on (SPEC K1)")]
    Irreversible,
    #[error(transparent)]
    Store(#[from] synchub_store::StoreError),
    #[error("{0}")]
    Connector(#[from] ConnectorError),
    #[error("a calendar record does not read: {0}")]
    Corrupt(String),
    #[error("no appointment {0}")]
    NotFound(String),
    #[error("{email} is not an unmatched attendee of {user}'s appointments")]
    NotUnmatched { user: String, email: String },
}

/// Counts of appointment writes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppointmentCounts {
    pub created: u32,
    pub updated: u32,
    pub cancelled: u32,
}

/// What one calendar step did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct CalendarReport {
    /// Calendar items the round listed (versions and removals).
    pub observed: u32,
    /// Log entries appended.
    pub logged: u32,
    /// Items sent for the first time.
    pub sent: u32,
    /// Flagged items not sent (waiting ones included).
    pub skipped: u32,
    /// Flagged items waiting for the first complete pass (K7).
    pub waiting: u32,
    pub appointments: AppointmentCounts,
    /// Events that did not read, and projections that did not reach the CRM (retried).
    pub errors: Vec<String>,
    /// Whether this step finished the user's part of the first complete pass (K7).
    pub ready_pass: bool,
}

/// An appointment as the hub shows it (API.md "Appointment").
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AppointmentView {
    pub id: String,
    pub crm_id: Option<String>,
    pub organizer: String,
    pub subject: String,
    pub start: String,
    pub end: String,
    pub all_day: bool,
    pub location: String,
    pub status: Status,
    pub attendees: Vec<AttendeeView>,
    pub flagged_by: Vec<String>,
    pub version: u64,
    pub updated_at: String,
}

/// An attendee as the hub shows it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttendeeView {
    pub email: String,
    pub name: String,
    pub contact: Option<String>,
    pub user: Option<String>,
}

/// One logged version (SPEC K8).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct HistoryEntry {
    pub seq: u64,
    pub user: String,
    pub item: String,
    pub observed_at: DateTime<Utc>,
    pub change: String,
    /// SHA-256 of the logged version, hex.
    pub hash: String,
    pub version: Version,
}

/// A flagged item that was not sent, and why (SPEC K11).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedItem {
    pub item: String,
    pub subject: String,
    pub start: DateTime<Utc>,
    pub reason: SkipReason,
}

/// An attendee who is neither a firm user nor a CRM contact (SPEC K4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnmatchedAttendee {
    pub email: String,
    pub name: String,
    pub appointments: Vec<String>,
}

/// A search (SPEC K9): any of the filters, and the start in [from, to).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Search {
    pub contact: Option<String>,
    pub company: Option<String>,
    pub attendee: Option<String>,
    pub organizer: Option<String>,
    pub from: Option<DateTime<Utc>>,
    pub to: Option<DateTime<Utc>>,
    pub limit: usize,
}

/// The mailbox and CRM user a step runs for.
#[derive(Clone, Debug)]
pub struct CalUser {
    /// CRM user id (the store's key for the user).
    pub user: String,
    /// Graph user id.
    pub mailbox: String,
    /// Primary SMTP address.
    pub address: String,
}

/// The firm's users as the calendar needs them: to link attendees who are users (K12) and to
/// know when the first pass is complete (K7).
#[derive(Clone, Debug, Default)]
struct Directory {
    /// Lower-case address → CRM user id.
    by_email: HashMap<String, String>,
    /// Users whose contact sync is on: every one must finish a pass before K7 readiness.
    active: Vec<String>,
}

/// A cached look-up of an attendee address among CRM contacts.
#[derive(Clone, Debug)]
struct Found {
    contact: Option<(String, String)>,
    at: DateTime<Utc>,
}

/// How long a contact look-up is trusted.
const LOOKUP_TTL_MINUTES: i64 = 10;
/// CRM requests in flight at once for one step.
const PARALLEL: usize = 8;

const SETTING_ON: &str = "calendar_sync";
const SETTING_READY: &str = "calendar_ready";
const SETTING_PASS: &str = "calendar_pass";
const SETTING_CATEGORY: &str = "calendar_category";
const CURSOR: &str = "calendar_cursor";

/// The calendar pipeline.
pub struct Calendar {
    store: Store,
    graph: GraphClient,
    crm: CrmClient,
    rt: Handle,
    settings: CalendarSettings,
    /// The flag category: the configuration's, or the one set over the API (stored).
    category: Mutex<String>,
    clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    directory: Mutex<Option<Directory>>,
    lookups: Mutex<HashMap<String, Found>>,
    /// Serialises the record-keeping of steps (meetings are shared between users, K12).
    apply: Mutex<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Calendar {
    pub fn new(
        store: Store,
        graph: GraphClient,
        crm: CrmClient,
        rt: Handle,
        settings: CalendarSettings,
        clock: Arc<dyn Fn() -> DateTime<Utc> + Send + Sync>,
    ) -> Calendar {
        let category = match store.setting(None, SETTING_CATEGORY) {
            Ok(Some(v)) if !v.is_empty() => String::from_utf8_lossy(&v).into_owned(),
            _ => settings.category.clone(),
        };
        Calendar {
            store,
            graph,
            crm,
            rt,
            category: Mutex::new(category),
            settings,
            clock,
            directory: Mutex::new(None),
            lookups: Mutex::new(HashMap::new()),
            apply: Mutex::new(()),
        }
    }

    pub fn settings(&self) -> &CalendarSettings {
        &self.settings
    }

    /// The category that flags a meeting (SPEC K2).
    pub fn category(&self) -> String {
        lock(&self.category).clone()
    }

    /// Change the flag category (stored; it wins over the configuration from now on).
    pub fn set_category(&self, category: &str) -> Result<(), CalendarError> {
        let category = category.trim();
        self.store.set_setting(None, SETTING_CATEGORY, category.as_bytes())?;
        *lock(&self.category) = category.to_string();
        tracing::info!(category, "calendar flag category changed over the API");
        Ok(())
    }

    /// Whether calendar sync is on (SPEC K1).
    pub fn enabled(&self) -> Result<bool, CalendarError> {
        Ok(self.store.setting(None, SETTING_ON)?.is_some_and(|v| v == b"on"))
    }

    /// Turn calendar sync on, or refuse to turn it off once on (SPEC K1).
    pub fn set_enabled(&self, on: bool) -> Result<(), CalendarError> {
        match (self.enabled()?, on) {
            (true, false) => Err(CalendarError::Irreversible),
            (true, true) => Ok(()),
            (false, false) => Ok(()),
            (false, true) => {
                self.store.set_setting(None, SETTING_ON, b"on")?;
                tracing::info!(
                    "calendar sync turned on for the firm; items wait for the first complete pass (SPEC K7)"
                );
                Ok(())
            }
        }
    }

    /// Whether the first complete pass after enabling has finished (SPEC K7).
    pub fn ready(&self) -> Result<bool, CalendarError> {
        Ok(self.store.setting(None, SETTING_READY)?.is_some_and(|v| v == b"yes"))
    }

    /// Tell the calendar who the firm's users are (CRM users) and whose contact sync is on.
    pub fn set_directory(&self, users: &[CrmUser], active: Vec<String>) {
        let by_email = users.iter().map(|u| (u.email.to_lowercase(), u.id.clone())).collect();
        *lock(&self.directory) = Some(Directory { by_email, active });
    }

    /// Whether the hub told the calendar who the firm's users are.
    pub fn has_directory(&self) -> bool {
        lock(&self.directory).is_some()
    }

    fn directory(&self) -> Result<Directory, CalendarError> {
        if let Some(d) = lock(&self.directory).clone() {
            return Ok(d);
        }
        let users = self.rt.block_on(self.crm.users())?;
        let by_email = users.iter().map(|u| (u.email.to_lowercase(), u.id.clone())).collect();
        // Who is active is known once the hub matched users; until then nobody completes K7.
        Ok(Directory { by_email, active: Vec::new() })
    }

    // The calendar cursor is a user setting: the user's contact cursors belong to the
    // replica, which knows only its two sides.
    fn cursor(&self, user: &str) -> Result<Option<CalendarCursor>, CalendarError> {
        let state = self.store.setting(Some(user), CURSOR)?;
        Ok(state.and_then(|c| serde_json::from_slice(&c).ok()))
    }

    fn save_cursor(&self, user: &str, cursor: Option<&CalendarCursor>) -> Result<(), CalendarError> {
        let bytes = cursor.and_then(|c| serde_json::to_vec(c).ok()).unwrap_or_default();
        self.store.set_setting(Some(user), CURSOR, &bytes)?;
        Ok(())
    }

    /// One calendar step for `who`. `contact_sync`: whether the user's contact sync is on
    /// (SPEC C7: when off, nothing of theirs is sent and their flagged items say why).
    pub fn step(&self, who: &CalUser, contact_sync: bool) -> Result<CalendarReport, CalendarError> {
        let now = (self.clock)();
        let on = self.enabled()?;
        let ready = on && self.ready()?;
        let blocked = if !on {
            Some(SkipReason::CalendarSyncOff)
        } else if !contact_sync {
            Some(SkipReason::ContactSyncOff)
        } else if !ready {
            Some(SkipReason::NotReady)
        } else {
            None
        };
        // While calendar sync is on but items cannot go, every round is a full one, so that
        // what waited is seen again once they can.
        let keep_cursor = !on || blocked.is_none();
        let cursor = if keep_cursor { self.cursor(&who.user)? } else { None };
        let window = self.settings.window();
        let round = match self.rt.block_on(self.graph.pull_calendar(&who.mailbox, cursor.as_ref(), now, window)) {
            Ok(r) => r,
            Err(e) if !on => {
                // Calendar sync is off: the calendar is read only to say why items wait, and
                // a tenant that granted no calendar access is not an error.
                tracing::debug!(user = %who.user, error = %e, "calendar not read while calendar sync is off");
                return Ok(CalendarReport::default());
            }
            Err(e) => return Err(e.into()),
        };
        let mut report = CalendarReport::default();
        for e in &round.rejected {
            tracing::warn!(user = %who.user, error = %e, "a calendar item does not read; skipped (SPEC N2)");
            report.errors.push(e.to_string());
        }
        let directory = self.directory()?;
        let _apply = lock(&self.apply);
        let touched = self.observe(who, &round, blocked, now, &mut report)?;
        self.save_cursor(&who.user, if keep_cursor { Some(&round.cursor) } else { None })?;
        if on && contact_sync && !ready {
            self.store.set_setting(Some(&who.user), SETTING_PASS, b"done")?;
            report.ready_pass = true;
            self.check_ready(&directory)?;
        }
        if blocked.is_some() {
            return Ok(report);
        }
        let mut due: BTreeMap<String, bool> = touched.into_iter().map(|m| (m, false)).collect();
        for (k, _) in self.store.cal_index_prefix(&index::pending_prefix())? {
            if let Some(m) = index::last_segment(&k) {
                due.entry(m).or_insert(false);
            }
        }
        let (lo, hi) = index::transitions_due(now);
        for (k, _) in self.store.cal_index_range(&lo, &hi, usize::MAX)? {
            if let Some(m) = index::last_segment(&k) {
                due.entry(m).or_insert(false);
            }
        }
        match self.drifted(who, now) {
            Ok(drifted) => {
                for m in drifted {
                    due.insert(m, true);
                }
            }
            Err(e) => report.errors.push(format!("checking appointments for CRM-side edits: {e}")),
        }
        self.project(&due, &directory, now, &mut report)?;
        Ok(report)
    }

    /// The K7 pass is complete once every active user finished theirs.
    fn check_ready(&self, directory: &Directory) -> Result<(), CalendarError> {
        if directory.active.is_empty() {
            return Ok(());
        }
        for user in &directory.active {
            if self.store.setting(Some(user), SETTING_PASS)?.is_none_or(|v| v != b"done") {
                return Ok(());
            }
        }
        self.store.set_setting(None, SETTING_READY, b"yes")?;
        tracing::info!(
            users = directory.active.len(),
            "calendar sync ready: the first complete pass finished (SPEC K7)"
        );
        Ok(())
    }

    fn load_meeting(&self, id: &str) -> Result<Option<MeetingRecord>, CalendarError> {
        load_meeting(&self.store, id)
    }

    /// Record what the round shows: log entries, item records, flaggers. Returns the
    /// meetings to project.
    fn observe(
        &self,
        who: &CalUser,
        round: &CalendarRound,
        blocked: Option<SkipReason>,
        now: DateTime<Utc>,
        report: &mut CalendarReport,
    ) -> Result<BTreeSet<String>, CalendarError> {
        let (changes, full) = (&round.changes, round.full);
        if changes.is_empty() && !full {
            return Ok(BTreeSet::new());
        }
        let user = who.user.as_str();
        let mut known: HashMap<String, ItemRecord> = HashMap::new();
        for (item, bytes) in self.store.cal_items(user)? {
            known.insert(item, decode("calendar item", &bytes)?);
        }
        // K10: after the held window, Outlook changes (removals included) no longer count.
        let window_start = now - Duration::days(self.settings.held_window_days);
        let mut w = CalendarWrite::new();
        let mut meetings: HashMap<String, MeetingRecord> = HashMap::new();
        // Events that did not read are still there: never taken for gone (SPEC N2).
        let mut seen: HashSet<&str> = round.rejected_ids.iter().map(String::as_str).collect();
        let now_ms = now.timestamp_millis();
        let category = self.category();
        let category = category.as_str();

        // What changes a meeting: its flaggers. Loaded once per meeting per step.
        let meeting =
            |id: &str, ext: &str, meetings: &mut HashMap<String, MeetingRecord>| -> Result<(), CalendarError> {
                if !meetings.contains_key(id) {
                    let record = self.load_meeting(id)?.unwrap_or_else(|| MeetingRecord {
                        id: id.to_string(),
                        external_ref: ext.to_string(),
                        flaggers: Vec::new(),
                        last: None,
                        crm: None,
                        projected: None,
                        index: Vec::new(),
                        due: true,
                        history: Vec::new(),
                    });
                    meetings.insert(id.to_string(), record);
                }
                Ok(())
            };
        // Sequence numbers follow the log's last one: steps record under `apply`, so no
        // other writer appends meanwhile (the store checks them on commit).
        let next_seq = std::cell::Cell::new(self.store.last_seq()? + 1);
        let log = |w: &mut CalendarWrite, item: &str, m: &mut MeetingRecord, change: &str, version: &Version| {
            let (body, hash) = version.encode();
            let seq = next_seq.get();
            next_seq.set(seq + 1);
            m.history.push(seq);
            w.append(LogEntry {
                seq,
                user: user.to_string(),
                item: item.to_string(),
                meeting: m.id.clone(),
                observed_ms: now_ms,
                hash,
                change: change.to_string(),
                body,
            });
            hash
        };
        if blocked == Some(SkipReason::ContactSyncOff) {
            // C7: the user's copies stop counting as sources until contact sync is on again.
            for (item, record) in &known {
                let ItemState::Sent { hash, end, suspended: false } = record.state else { continue };
                if !meetings.contains_key(&record.meeting) {
                    let Some(m) = self.load_meeting(&record.meeting)? else { continue };
                    meetings.insert(record.meeting.clone(), m);
                }
                let m = meetings.get_mut(&record.meeting).ok_or_else(|| CalendarError::Corrupt("meeting".into()))?;
                for f in m.flaggers.iter_mut().filter(|f| f.user == user && f.item == *item) {
                    f.suspended = true;
                }
                m.due = true;
                let state = ItemState::Sent { hash, end, suspended: true };
                let next = ItemRecord { meeting: record.meeting.clone(), state, observed_ms: now_ms };
                w.item(user, item, Some(encode(&next)));
            }
        }
        let mut removed: Vec<String> = Vec::new();
        for change in changes {
            report.observed += 1;
            let item = match change {
                EventChange::Upsert(item) => item.as_ref(),
                EventChange::Removed { id, deleted } => {
                    seen.insert(id.as_str());
                    // Moved out of the window (Graph's `changed`) is not a withdrawal.
                    if *deleted {
                        removed.push(id.clone());
                    }
                    continue;
                }
            };
            seen.insert(item.id.as_str());
            let record = known.get(&item.id);
            let is_flagged = flagged(item, category);
            let external_ref = item.ical_uid.clone().unwrap_or_else(|| format!("outlook:{user}:{}", item.id));
            let sent = record.and_then(|r| match &r.state {
                ItemState::Sent { hash, suspended, .. } => Some((r.meeting.clone(), *hash, *suspended)),
                ItemState::Skipped { .. } => None,
            });
            if let Some((meeting_id, old_hash, suspended)) = sent {
                if blocked.is_some() {
                    // C7: a user whose contact sync is off sends nothing, changes included
                    // (their copies were suspended above).
                    continue;
                }
                let version = Version::of(item);
                let private = item.sensitivity == Sensitivity::Private;
                let recurring = item.kind.is_recurring();
                let (_, hash) = version.encode();
                if is_flagged && !private && !recurring && hash == old_hash && !suspended {
                    continue;
                }
                meeting(&meeting_id, &external_ref, &mut meetings)?;
                let m = meetings.get_mut(&meeting_id).ok_or_else(|| CalendarError::Corrupt("meeting".into()))?;
                if !is_flagged || private || recurring {
                    // K5: one user withdrawing their flag takes them off `flagged_by`; a
                    // copy turned Private or into a series is withdrawn too (K2).
                    let change = if private {
                        "private"
                    } else if recurring {
                        "recurring"
                    } else {
                        "unflagged"
                    };
                    log(&mut w, &item.id, m, change, &version);
                    report.logged += 1;
                    // What the CRM keeps of a withdrawn copy is its last sent version, never
                    // the new one (a copy made Private must not reach the CRM, P1/K2).
                    let sent =
                        m.flaggers.iter().find(|f| f.user == user && f.item == item.id).map(|f| f.version.clone());
                    m.flaggers.retain(|f| !(f.user == user && f.item == item.id));
                    if sent.is_some() {
                        m.last = sent;
                    }
                    m.due = true;
                    let reason = if private { SkipReason::Private } else { SkipReason::Recurring };
                    let next = (is_flagged && (private || recurring)).then(|| ItemRecord {
                        meeting: meeting_id.clone(),
                        state: skipped_state(item, reason),
                        observed_ms: now_ms,
                    });
                    w.item(user, &item.id, next.as_ref().map(encode));
                    continue;
                }
                if hash != old_hash {
                    log(&mut w, &item.id, m, "updated", &version);
                    report.logged += 1;
                }
                w.item(user, &item.id, Some(encode(&ItemRecord::sent(&m.id, &version, hash, now_ms))));
                flag(m, who, &item.id, now_ms, version);
                continue;
            }
            if !is_flagged {
                if record.is_some() {
                    w.item(user, &item.id, None);
                }
                continue;
            }
            let meeting_id = meeting_id(&external_ref);
            if let Some(reason) = refusal(item, now).or(blocked) {
                report.skipped += 1;
                if reason == SkipReason::NotReady {
                    report.waiting += 1;
                }
                let next = ItemRecord { meeting: meeting_id, state: skipped_state(item, reason), observed_ms: now_ms };
                if record.map(|r| &r.state) != Some(&next.state) {
                    w.item(user, &item.id, Some(encode(&next)));
                }
                continue;
            }
            let version = Version::of(item);
            meeting(&meeting_id, &external_ref, &mut meetings)?;
            let m = meetings.get_mut(&meeting_id).ok_or_else(|| CalendarError::Corrupt("meeting".into()))?;
            let hash = log(&mut w, &item.id, m, "sent", &version);
            report.logged += 1;
            report.sent += 1;
            w.item(user, &item.id, Some(encode(&ItemRecord::sent(&m.id, &version, hash, now_ms))));
            flag(m, who, &item.id, now_ms, version);
        }
        if full {
            // A full round lists the whole window: what it does not list is gone from it.
            removed.extend(known.keys().filter(|k| !seen.contains(k.as_str())).cloned());
        }
        for id in removed {
            let Some(record) = known.get(&id) else { continue };
            match &record.state {
                ItemState::Skipped { .. } => w.item(user, &id, None),
                ItemState::Sent { end, .. } => {
                    if blocked.is_some() || *end <= window_start {
                        // C7 sends nothing; an item that aged out of the window has ended
                        // long ago and is not withdrawn.
                        continue;
                    }
                    if !meetings.contains_key(&record.meeting) {
                        match self.load_meeting(&record.meeting)? {
                            Some(m) => {
                                meetings.insert(record.meeting.clone(), m);
                            }
                            None => {
                                w.item(user, &id, None);
                                continue;
                            }
                        }
                    }
                    let m =
                        meetings.get_mut(&record.meeting).ok_or_else(|| CalendarError::Corrupt("meeting".into()))?;
                    let Some(pos) = m.flaggers.iter().position(|f| f.user == user && f.item == id) else {
                        w.item(user, &id, None);
                        continue;
                    };
                    let gone = m.flaggers.remove(pos);
                    log(&mut w, &id, m, "deleted", &gone.version);
                    report.logged += 1;
                    m.last = Some(gone.version);
                    m.due = true;
                    w.item(user, &id, None);
                }
            }
        }
        let touched: BTreeSet<String> = meetings.keys().cloned().collect();
        for (id, m) in &meetings {
            w.meeting(id, Some(encode(m)));
            w.index(index::pending(id), Some(Vec::new()));
        }
        self.store.calendar_commit(w)?;
        Ok(touched)
    }

    /// The meetings of `who` whose CRM appointment changed behind synchub's back (SPEC K6).
    fn drifted(&self, who: &CalUser, now: DateTime<Utc>) -> Result<Vec<String>, CalendarError> {
        let from =
            (now - Duration::days(self.settings.held_window_days)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let queries = [
            AppointmentQuery {
                attendee_user_id: Some(who.user.clone()),
                from: Some(from.clone()),
                ..Default::default()
            },
            AppointmentQuery { organizer_user_id: Some(who.user.clone()), from: Some(from), ..Default::default() },
        ];
        let mut out = Vec::new();
        for q in &queries {
            for a in self.rt.block_on(self.crm.appointments(q))? {
                let id = meeting_id(&a.external_ref);
                let Some(record) = self.load_meeting(&id)? else { continue };
                if record.crm.as_ref().is_some_and(|c| c.id == a.appointment_id && c.version != a.version) {
                    tracing::info!(appointment = %a.appointment_id, "appointment edited in the CRM; the Outlook version is written back (SPEC K6)");
                    out.push(id);
                }
            }
        }
        Ok(out)
    }

    /// Look up attendee addresses among CRM contacts (cached for a few minutes). An address
    /// whose look-up failed is missing from the answer.
    fn look_up(&self, emails: BTreeSet<String>, now: DateTime<Utc>) -> HashMap<String, Option<(String, String)>> {
        let mut out = HashMap::new();
        let mut missing = Vec::new();
        {
            let cache = lock(&self.lookups);
            for e in emails {
                match cache.get(&e).filter(|f| now - f.at < Duration::minutes(LOOKUP_TTL_MINUTES) && now >= f.at) {
                    Some(f) => {
                        out.insert(e, f.contact.clone());
                    }
                    None => missing.push(e),
                }
            }
        }
        if missing.is_empty() {
            return out;
        }
        let crm = self.crm.clone();
        let found = self.rt.block_on(async move {
            let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            let mut tasks = tokio::task::JoinSet::new();
            for email in missing {
                let (crm, semaphore) = (crm.clone(), semaphore.clone());
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    let found = crm.contacts_by_email(&email).await;
                    (email, found)
                });
            }
            let mut found = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                if let Ok(r) = joined {
                    found.push(r);
                }
            }
            found
        });
        let mut cache = lock(&self.lookups);
        for (email, result) in found {
            match result {
                Ok(mut contacts) => {
                    // Several firm contacts with one address: the oldest (lowest id) is linked.
                    contacts.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
                    let hit = contacts.first().map(|c| (c.contact_id.clone(), c.company.clone()));
                    cache.insert(email.clone(), Found { contact: hit.clone(), at: now });
                    out.insert(email, hit);
                }
                Err(e) => {
                    // Left out: the meetings it attends wait for the next step.
                    tracing::warn!(%email, error = %e, "looking up an attendee in the CRM failed");
                }
            }
        }
        out
    }

    /// Project `due` meetings (id → whether to rewrite even if unchanged: CRM drift) to the
    /// CRM and record the projections.
    fn project(
        &self,
        due: &BTreeMap<String, bool>,
        directory: &Directory,
        now: DateTime<Utc>,
        report: &mut CalendarReport,
    ) -> Result<(), CalendarError> {
        if due.is_empty() {
            return Ok(());
        }
        let mut records = Vec::new();
        for (id, force) in due {
            if let Some(r) = self.load_meeting(id)? {
                records.push((r, *force));
            }
        }
        let mut emails = BTreeSet::new();
        for (r, _) in &records {
            if let Some(v) = source(r).map(|f| &f.version).or(r.last.as_ref()) {
                for who in v.attendees.iter().chain(v.organizer.as_ref()) {
                    let e = who.email.to_lowercase();
                    if !e.is_empty() && !directory.by_email.contains_key(&e) {
                        emails.insert(e);
                    }
                }
            }
        }
        let contacts = self.look_up(emails.clone(), now);
        let unknown: HashSet<&String> = emails.iter().filter(|e| !contacts.contains_key(*e)).collect();
        let window = Duration::days(self.settings.held_window_days);
        let mut writes = Vec::new();
        let mut w = CalendarWrite::new();
        for (mut r, force) in records {
            let attends_unknown = source(&r).map(|f| &f.version).or(r.last.as_ref()).is_some_and(|v| {
                v.attendees.iter().chain(v.organizer.as_ref()).any(|a| unknown.contains(&a.email.to_lowercase()))
            });
            if attends_unknown {
                // An attendee could not be looked up: projecting now would unlink them.
                report.errors.push(format!("appointment {}: an attendee look-up failed; retried next run", r.id));
                w.index(index::pending(&r.id), Some(Vec::new()));
                continue;
            }
            let next = match plan(&r, directory, &contacts, now, window) {
                Some(p) => p,
                None => {
                    // Nothing to project (no version was ever sent): not pending any more.
                    r.due = false;
                    w.meeting(&r.id, Some(encode(&r)));
                    w.index(index::pending(&r.id), None);
                    continue;
                }
            };
            if !force && r.crm.is_some() && r.projected.as_ref() == Some(&next) {
                if r.due {
                    r.due = false;
                    w.meeting(&r.id, Some(encode(&r)));
                }
                w.index(index::pending(&r.id), None);
                continue;
            }
            writes.push((r, next));
        }
        let crm = self.crm.clone();
        let jobs: Vec<(usize, Appointment, Option<CrmRef>)> = writes
            .iter()
            .enumerate()
            .map(|(i, (r, next))| (i, wire(next, &r.external_ref, r.crm.as_ref()), r.crm.clone()))
            .collect();
        let answers = self.rt.block_on(async move {
            let semaphore = Arc::new(tokio::sync::Semaphore::new(PARALLEL));
            let mut tasks = tokio::task::JoinSet::new();
            for (i, appt, known) in jobs {
                let (crm, semaphore) = (crm.clone(), semaphore.clone());
                tasks.spawn(async move {
                    let _permit = semaphore.acquire_owned().await;
                    (i, write_appointment(&crm, appt, known).await)
                });
            }
            let mut answers: Vec<Option<Result<Appointment, ConnectorError>>> = Vec::new();
            while let Some(joined) = tasks.join_next().await {
                if let Ok((i, result)) = joined {
                    if answers.len() <= i {
                        answers.resize_with(i + 1, || None);
                    }
                    answers[i] = Some(result);
                }
            }
            answers
        });
        for (i, (mut r, next)) in writes.into_iter().enumerate() {
            match answers.get(i).and_then(Option::as_ref) {
                Some(Ok(a)) => {
                    let before = r.projected.as_ref().map(|p| p.status);
                    if r.crm.is_none() {
                        report.appointments.created += 1;
                    } else if next.status == Status::Cancelled && before != Some(Status::Cancelled) {
                        report.appointments.cancelled += 1;
                    } else {
                        report.appointments.updated += 1;
                    }
                    let entries = index::entries(&r, &next);
                    let old: HashSet<&Vec<u8>> = entries.iter().map(|(k, _)| k).collect();
                    for (k, _) in &r.index {
                        if !old.contains(k) {
                            w.index(k.clone(), None);
                        }
                    }
                    for (k, v) in &entries {
                        w.index(k.clone(), Some(v.clone()));
                    }
                    r.index = entries;
                    r.crm = Some(CrmRef {
                        id: a.appointment_id.clone(),
                        version: a.version,
                        updated_at: a.updated_at.clone(),
                    });
                    r.last = source(&r).map(|f| f.version.clone()).or(r.last.take());
                    r.projected = Some(next);
                    r.due = false;
                    w.meeting(&r.id, Some(encode(&r)));
                    w.index(index::pending(&r.id), None);
                }
                Some(Err(e)) => {
                    tracing::warn!(meeting = %r.id, error = %e, "the appointment did not reach the CRM; retried next run");
                    report.errors.push(format!("appointment {}: {e}", r.id));
                }
                None => report.errors.push(format!("appointment {}: the write did not finish", r.id)),
            }
        }
        self.store.calendar_commit(w)?;
        Ok(())
    }

    /// An appointment as the hub shows it.
    pub fn appointment(&self, id: &str) -> Result<AppointmentView, CalendarError> {
        let r = self.load_meeting(id)?.ok_or_else(|| CalendarError::NotFound(id.to_string()))?;
        view(&r).ok_or_else(|| CalendarError::NotFound(id.to_string()))
    }

    /// Every logged version of an appointment, oldest first (SPEC K8).
    pub fn history(&self, id: &str) -> Result<Vec<HistoryEntry>, CalendarError> {
        let r = self.load_meeting(id)?.ok_or_else(|| CalendarError::NotFound(id.to_string()))?;
        self.store.log_entries(&r.history)?.into_iter().map(history_entry).collect()
    }

    /// Search appointments (SPEC K9), ordered by start, served from the index.
    pub fn search(&self, q: &Search) -> Result<Vec<AppointmentView>, CalendarError> {
        search_store(&self.store, q)
    }

    /// The flagged items of `user` that were not sent, and why (SPEC K11).
    pub fn skipped(&self, user: &str) -> Result<Vec<SkippedItem>, CalendarError> {
        let mut out = Vec::new();
        for (item, bytes) in self.store.cal_items(user)? {
            let r: ItemRecord = decode("calendar item", &bytes)?;
            if let ItemState::Skipped { reason, subject, start, .. } = r.state {
                out.push(SkippedItem { item, subject, start, reason });
            }
        }
        out.sort_by(|a, b| a.start.cmp(&b.start).then(a.item.cmp(&b.item)));
        Ok(out)
    }

    /// The attendees of `user`'s appointments who are neither firm users nor CRM contacts
    /// (SPEC K4).
    pub fn unmatched(&self, user: &str) -> Result<Vec<UnmatchedAttendee>, CalendarError> {
        let mut by_email: BTreeMap<String, UnmatchedAttendee> = BTreeMap::new();
        for (k, v) in self.store.cal_index_prefix(&index::unmatched_user_prefix(user, None))? {
            let (Some(email), Some(meeting)) = (index::segment(&k, 2), index::segment(&k, 3)) else { continue };
            let entry = by_email.entry(email.clone()).or_insert_with(|| UnmatchedAttendee {
                email,
                name: String::from_utf8_lossy(&v).into_owned(),
                appointments: Vec::new(),
            });
            entry.appointments.push(meeting);
        }
        Ok(by_email.into_values().collect())
    }

    /// Add an unmatched attendee to `who`'s CRM list (the firm's existing contact with that
    /// address, or a new one) and link them to every appointment they attend (SPEC K4).
    /// Returns the CRM ContactID.
    pub fn add_attendee(&self, who: &CalUser, email: &str) -> Result<String, CalendarError> {
        let email = email.trim().to_lowercase();
        let _apply = lock(&self.apply);
        let mine = self.store.cal_index_prefix(&index::unmatched_user_prefix(&who.user, Some(&email)))?;
        let Some((_, name)) = mine.first() else {
            return Err(CalendarError::NotUnmatched { user: who.user.clone(), email });
        };
        let name = String::from_utf8_lossy(name).into_owned();
        let mut existing = self.rt.block_on(self.crm.contacts_by_email(&email))?;
        existing.sort_by(|a, b| a.contact_id.cmp(&b.contact_id));
        let (cid, company) = match existing.first() {
            Some(c) => {
                self.rt.block_on(self.crm.add_to_list(&who.user, &c.contact_id))?;
                (c.contact_id.clone(), c.company.clone())
            }
            None => {
                let mut contact = CrmContact::default();
                let name = if name.trim().is_empty() { email.clone() } else { name.trim().to_string() };
                match name.rsplit_once(' ') {
                    Some((first, last)) => {
                        contact.name.first = first.trim().to_string();
                        contact.name.last = last.trim().to_string();
                    }
                    None => contact.name.last = name,
                }
                contact.emails.push(Email {
                    kind: "business".into(),
                    address: email.clone(),
                    extra: Default::default(),
                });
                let made = self.rt.block_on(self.crm.create_in_list(&who.user, &contact))?;
                (made.contact_id, made.company)
            }
        };
        tracing::info!(user = %who.user, %email, contact = %cid, "unmatched attendee added to the CRM (SPEC K4)");
        let now = (self.clock)();
        lock(&self.lookups).insert(email.clone(), Found { contact: Some((cid.clone(), company)), at: now });
        let mut due = BTreeMap::new();
        for (k, _) in self.store.cal_index_prefix(&index::unmatched_email_prefix(&email))? {
            if let Some(m) = index::segment(&k, 2) {
                due.insert(m, false);
            }
        }
        // Pending first: a relink the CRM does not take now is done by the next step.
        let mut pending = CalendarWrite::new();
        for m in due.keys() {
            pending.index(index::pending(m), Some(Vec::new()));
        }
        self.store.calendar_commit(pending)?;
        let directory = self.directory()?;
        let mut report = CalendarReport::default();
        self.project(&due, &directory, now, &mut report)?;
        if let Some(e) = report.errors.first() {
            tracing::warn!(error = %e, "relinking after adding an attendee left work for the next run");
        }
        Ok(cid)
    }
}

/// Search the appointments recorded in `store` (SPEC K9), ordered by start: one range of
/// the index for the most selective filter given, the others checked on the records.
pub fn search_store(store: &Store, q: &Search) -> Result<Vec<AppointmentView>, CalendarError> {
    let company = q.company.as_ref().map(|c| c.trim().to_lowercase());
    let (dim, value) = if let Some(c) = &q.contact {
        (Dim::Contact, c.clone())
    } else if let Some(a) = &q.attendee {
        (Dim::Attendee, a.clone())
    } else if let Some(o) = &q.organizer {
        (Dim::Organizer, o.clone())
    } else if let Some(c) = &company {
        (Dim::Company, c.clone())
    } else {
        (Dim::All, String::new())
    };
    let from = q.from.unwrap_or(DateTime::<Utc>::MIN_UTC);
    let to = q.to.unwrap_or(DateTime::<Utc>::MAX_UTC);
    let (lo, hi) = (index::search_bound(dim, &value, from), index::search_bound(dim, &value, to));
    let limit = if q.limit == 0 { 100 } else { q.limit };
    let mut out = Vec::new();
    let mut start = lo;
    'scan: loop {
        let keys = store.cal_index_range(&start, &hi, 256)?;
        let Some((last, _)) = keys.last() else { break };
        let mut next_start = last.clone();
        next_start.push(0);
        for (k, _) in &keys {
            let Some(id) = index::last_segment(k) else { continue };
            let Some(r) = load_meeting(store, &id)? else { continue };
            let Some(p) = &r.projected else { continue };
            let linked = |f: &dyn Fn(&Linked) -> bool| p.attendees.iter().any(f);
            let keep = q.contact.as_ref().is_none_or(|c| linked(&|a| a.contact.as_ref() == Some(c)))
                && q.attendee.as_ref().is_none_or(|u| linked(&|a| a.user.as_ref() == Some(u)))
                && q.organizer.as_ref().is_none_or(|o| &p.organizer == o)
                && company
                    .as_ref()
                    .is_none_or(|c| linked(&|a| a.company.as_ref().is_some_and(|x| x.trim().to_lowercase() == *c)));
            if keep {
                if let Some(v) = view(&r) {
                    out.push(v);
                }
                if out.len() >= limit {
                    break 'scan;
                }
            }
        }
        if keys.len() < 256 {
            break;
        }
        start = next_start;
    }
    Ok(out)
}

/// Note `who`'s copy `item` as a flagged copy of `m` at `version` (its first sighting kept)
/// and mark the meeting for projection.
fn flag(m: &mut MeetingRecord, who: &CalUser, item: &str, now_ms: i64, version: Version) {
    match m.flaggers.iter_mut().find(|f| f.user == who.user && f.item == item) {
        Some(f) => {
            f.version = version;
            f.suspended = false;
        }
        None => m.flaggers.push(Flagger {
            user: who.user.clone(),
            address: who.address.clone(),
            item: item.to_string(),
            first_ms: now_ms,
            version,
            suspended: false,
        }),
    }
    m.due = true;
}

fn load_meeting(store: &Store, id: &str) -> Result<Option<MeetingRecord>, CalendarError> {
    store.meeting(id)?.map(|b| decode::<MeetingRecord>("meeting", &b)).transpose()
}

fn skipped_state(item: &CalendarItem, reason: SkipReason) -> ItemState {
    ItemState::Skipped {
        reason,
        subject: item.subject.clone(),
        start: Span::of(item).start(),
        recurring: item.kind.is_recurring(),
    }
}

/// The copy that is the source (SPEC K12): the organizer's when the organizer flagged it,
/// else the earliest flagger's.
/// Copies of users whose contact sync is off count only when no other copy is left (C7).
fn source(r: &MeetingRecord) -> Option<&Flagger> {
    let active = r.flaggers.iter().any(|f| !f.suspended);
    let candidates = || r.flaggers.iter().filter(move |f| !active || !f.suspended);
    let organizer = |f: &&Flagger| {
        f.version.organizer.as_ref().is_some_and(|o| !o.email.is_empty() && o.email.eq_ignore_ascii_case(&f.address))
    };
    candidates()
        .find(organizer)
        .or_else(|| candidates().min_by(|a, b| (a.first_ms, &a.user).cmp(&(b.first_ms, &b.user))))
}

/// What the meeting's appointment should be now (SPEC K3, K5, K10, K12); `None` when no
/// version was ever sent.
fn plan(
    r: &MeetingRecord,
    directory: &Directory,
    contacts: &HashMap<String, Option<(String, String)>>,
    now: DateTime<Utc>,
    window: Duration,
) -> Option<Projected> {
    let src = source(r);
    let version = src.map(|f| &f.version).or(r.last.as_ref())?;
    if let Some(p) = &r.projected {
        // K10: changes more than the window after a meeting ended no longer update it.
        if p.span.end() + window < now && version.span.end() + window < now {
            // What still changes: who flags it, and a scheduled meeting becoming held.
            let mut same = p.clone();
            same.flagged_by = flagged_by(r);
            if r.flaggers.is_empty() {
                same.status = Status::Cancelled;
            } else if same.status == Status::Scheduled {
                same.status = Status::Held;
            }
            return Some(same);
        }
    }
    let status = if r.flaggers.is_empty() || version.cancelled {
        Status::Cancelled
    } else if version.span.end() <= now {
        Status::Held
    } else {
        Status::Scheduled
    };
    let user_of = |email: &str| directory.by_email.get(&email.to_lowercase()).cloned();
    let organizer_user = version.organizer.as_ref().and_then(|o| user_of(&o.email));
    let earliest = r.flaggers.iter().min_by(|a, b| (a.first_ms, &a.user).cmp(&(b.first_ms, &b.user)));
    let organizer = organizer_user
        .clone()
        .or_else(|| earliest.map(|f| f.user.clone()))
        .or_else(|| r.projected.as_ref().map(|p| p.organizer.clone()))
        .unwrap_or_default();
    let mut attendees: Vec<Linked> = Vec::new();
    let mut seen = HashSet::new();
    let outside_organizer = version.organizer.iter().filter(|_| organizer_user.is_none());
    for who in version.attendees.iter().chain(outside_organizer) {
        let email = who.email.to_lowercase();
        if email.is_empty() || !seen.insert(email.clone()) {
            continue;
        }
        let user = user_of(&email);
        if user.is_some() && user == organizer_user {
            continue;
        }
        let found = if user.is_none() { contacts.get(&email).cloned().flatten() } else { None };
        attendees.push(Linked {
            email: who.email.clone(),
            name: who.name.clone(),
            contact: found.as_ref().map(|(c, _)| c.clone()),
            company: found.map(|(_, company)| company),
            user,
        });
    }
    Some(Projected {
        organizer,
        subject: version.subject.clone(),
        span: version.span.clone(),
        location: version.location.clone(),
        status,
        attendees,
        flagged_by: flagged_by(r),
    })
}

fn flagged_by(r: &MeetingRecord) -> Vec<String> {
    let mut users: Vec<String> = r.flaggers.iter().map(|f| f.user.clone()).collect();
    users.sort();
    users.dedup();
    users
}

/// The CRM appointment for a projection.
fn wire(p: &Projected, external_ref: &str, known: Option<&CrmRef>) -> Appointment {
    let (start, end) = p.span.wire();
    Appointment {
        appointment_id: known.map(|k| k.id.clone()).unwrap_or_default(),
        version: known.map(|k| k.version).unwrap_or_default(),
        external_ref: external_ref.to_string(),
        organizer_user_id: p.organizer.clone(),
        subject: p.subject.clone(),
        start,
        end,
        all_day: p.span.all_day(),
        location: p.location.clone(),
        status: match p.status {
            Status::Scheduled => AppointmentStatus::Scheduled,
            Status::Held => AppointmentStatus::Held,
            Status::Cancelled => AppointmentStatus::Cancelled,
        },
        attendees: p
            .attendees
            .iter()
            .map(|a| Attendee {
                email: a.email.clone(),
                name: a.name.clone(),
                contact_id: a.contact.clone(),
                user_id: a.user.clone(),
            })
            .collect(),
        flagged_by: p.flagged_by.clone(),
        updated_at: String::new(),
    }
}

/// Whether the CRM's appointment carries what synchub would write.
fn same_content(a: &Appointment, b: &Appointment) -> bool {
    let strip = |x: &Appointment| Appointment {
        appointment_id: String::new(),
        version: 0,
        updated_at: String::new(),
        ..x.clone()
    };
    strip(a) == strip(b)
}

/// Create (idempotent on `external_ref`) or update (conditional; a CRM-side edit is
/// overwritten, SPEC K6) one appointment.
async fn write_appointment(
    crm: &CrmClient,
    mut appt: Appointment,
    known: Option<CrmRef>,
) -> Result<Appointment, ConnectorError> {
    if known.is_none() {
        let made = crm.create_appointment(&appt).await?;
        if same_content(&made, &appt) {
            return Ok(made);
        }
        // It existed (a run stopped after creating it, or another flagger's step): write
        // this projection over it.
        appt.appointment_id = made.appointment_id.clone();
        appt.version = made.version;
    }
    for _ in 0..3 {
        match crm.update_appointment(&appt).await {
            Ok(a) => return Ok(a),
            Err(e) if e.kind == ErrorKind::PreconditionFailed => {
                let current = crm.appointment(&appt.appointment_id).await?;
                appt.version = current.version;
            }
            Err(e) if e.kind == ErrorKind::NotFound => {
                appt.appointment_id.clear();
                appt.version = 0;
                return crm.create_appointment(&appt).await;
            }
            Err(e) => return Err(e),
        }
    }
    Err(ConnectorError::new(
        ErrorKind::PreconditionFailed,
        "the appointment kept changing in the CRM while being written",
    ))
}

fn view(r: &MeetingRecord) -> Option<AppointmentView> {
    let p = r.projected.as_ref()?;
    let (start, end) = p.span.wire();
    Some(AppointmentView {
        id: r.id.clone(),
        crm_id: r.crm.as_ref().map(|c| c.id.clone()),
        organizer: p.organizer.clone(),
        subject: p.subject.clone(),
        start,
        end,
        all_day: p.span.all_day(),
        location: p.location.clone(),
        status: p.status,
        attendees: p
            .attendees
            .iter()
            .map(|a| AttendeeView {
                email: a.email.clone(),
                name: a.name.clone(),
                contact: a.contact.clone(),
                user: a.user.clone(),
            })
            .collect(),
        flagged_by: p.flagged_by.clone(),
        version: r.crm.as_ref().map(|c| c.version).unwrap_or_default(),
        updated_at: r.crm.as_ref().map(|c| c.updated_at.clone()).unwrap_or_default(),
    })
}

fn history_entry(e: LogEntry) -> Result<HistoryEntry, CalendarError> {
    let version =
        Version::decode(&e.body).map_err(|err| CalendarError::Corrupt(format!("log entry {}: {err}", e.seq)))?;
    Ok(HistoryEntry {
        seq: e.seq,
        user: e.user,
        item: e.item,
        observed_at: DateTime::from_timestamp_millis(e.observed_ms).unwrap_or_default(),
        change: e.change,
        hash: hex(&e.hash),
        version,
    })
}

/// Record projected meetings and their index entries directly, in one transaction, as a
/// step records them (the search benchmark fills a store this way).
pub fn record_projections(store: &Store, records: &[MeetingRecord]) -> Result<(), CalendarError> {
    let mut w = CalendarWrite::new();
    for record in records {
        if let Some(p) = &record.projected {
            for (k, v) in index::entries(record, p) {
                w.index(k, Some(v));
            }
        }
        w.meeting(&record.id, Some(encode(record)));
    }
    store.calendar_commit(w)?;
    Ok(())
}
