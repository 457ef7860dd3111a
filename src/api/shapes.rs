//! The API's JSON shapes (shared/API.md "Shapes"), with their OpenAPI schemas.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::calendar::model::Status;
use crate::calendar::{AppointmentView, HistoryEntry, SkippedItem, UnmatchedAttendee};
use crate::hub::{ContactView, HeldRun, RunRecord};
use crate::merge::history::FieldChange;
use crate::model::{ContactFields, FieldValue, Side};

/// `{"error": {"code", "message"}}`.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ErrorDetail {
    pub code: String,
    pub message: String,
}

/// A page of a list: the items, and the cursor of the next page (`null`: the last).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next: Option<String>,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
}

/// The hub's settings.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Settings {
    pub calendar_sync: bool,
    pub sync_notes: bool,
    /// `identity` or `none`.
    pub initial_match: String,
    /// `split` or `follow`.
    pub reuse_policy: String,
    pub calendar_category: String,
    pub interval_seconds: u64,
}

/// A change of settings: any of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    pub calendar_sync: Option<bool>,
    pub sync_notes: Option<bool>,
    pub initial_match: Option<String>,
    pub reuse_policy: Option<String>,
    pub calendar_category: Option<String>,
    pub interval_seconds: Option<u64>,
}

/// A user, matched or not.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UserView {
    pub id: String,
    pub email: String,
    pub display_name: String,
    pub contact_sync: bool,
    pub mailbox_matched: bool,
    pub last_run: Option<RunView>,
}

impl UserView {
    /// A matched user, with their last run.
    pub fn of(hub: &crate::hub::Hub, pair: &crate::hub::UserPair) -> Result<UserView, crate::hub::HubError> {
        Ok(UserView {
            id: pair.crm_user.clone(),
            email: pair.address.clone(),
            display_name: pair.address.clone(),
            contact_sync: hub.enabled(pair),
            mailbox_matched: true,
            last_run: hub.history(&pair.key)?.pop().map(|r| RunView::of(&r)),
        })
    }

    /// A mailbox with no CRM user, or a CRM user with no mailbox.
    pub fn unmatched(name: &str) -> UserView {
        UserView {
            id: name.to_string(),
            email: name.to_string(),
            display_name: name.to_string(),
            contact_sync: false,
            mailbox_matched: false,
            last_run: None,
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SideCounts {
    pub created: u32,
    pub updated: u32,
    pub deleted: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AppointmentCountsView {
    pub created: u32,
    pub updated: u32,
    pub cancelled: u32,
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunCounts {
    pub exchange: SideCounts,
    pub crm: SideCounts,
    pub conflicts: u32,
    pub appointments: AppointmentCountsView,
}

/// A run.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunView {
    pub id: String,
    pub user: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// `running`, `ok`, `failed` or `held`.
    pub status: String,
    pub error: Option<String>,
    pub counts: RunCounts,
}

fn stamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl RunView {
    /// A run in flight.
    pub fn running(user: &str, started: chrono::DateTime<chrono::Utc>) -> RunView {
        let zero = || SideCounts { created: 0, updated: 0, deleted: 0 };
        RunView {
            id: format!("{user}.{}", started.timestamp_millis()),
            user: user.to_string(),
            started_at: stamp(started),
            finished_at: None,
            status: "running".into(),
            error: None,
            counts: RunCounts {
                exchange: zero(),
                crm: zero(),
                conflicts: 0,
                appointments: AppointmentCountsView { created: 0, updated: 0, cancelled: 0 },
            },
        }
    }

    pub fn of(r: &RunRecord) -> RunView {
        let side = |c: [u32; 3]| SideCounts { created: c[0], updated: c[1], deleted: c[2] };
        RunView {
            id: format!("{}.{}", r.user, r.started.timestamp_millis()),
            user: r.user.clone(),
            started_at: stamp(r.started),
            finished_at: Some(stamp(r.finished)),
            status: if r.errors.is_empty() { "ok" } else { "failed" }.to_string(),
            error: (!r.errors.is_empty()).then(|| r.errors.join("; ")),
            counts: RunCounts {
                exchange: side(r.counts[0]),
                crm: side(r.counts[1]),
                conflicts: r.conflicts,
                appointments: AppointmentCountsView {
                    created: r.appointments[0],
                    updated: r.appointments[1],
                    cancelled: r.appointments[2],
                },
            },
        }
    }
}

/// The value of a field as text (`true`/`false` for the flag, `;`-joined categories).
fn text(v: &FieldValue) -> String {
    match v {
        FieldValue::Text(s) => s.clone(),
        FieldValue::Flag(b) => b.to_string(),
        FieldValue::List(l) => l.join(";"),
    }
}

fn fields_json(fields: &ContactFields, redact: bool) -> serde_json::Map<String, serde_json::Value> {
    fields
        .iter()
        .map(|(f, v)| (f.name().to_string(), serde_json::Value::String(if redact { "***".into() } else { text(v) })))
        .collect()
}

/// An operation a run plans (SPEC X6).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct OpView {
    /// `create`, `update` or `delete`.
    pub op: String,
    pub contact: String,
    /// Field values; a Private contact's are `***` (API.md "Privacy in operational views").
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

/// `{"user"}`, or `{}` for every enabled user.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    pub user: Option<String>,
}

/// The runs started (or already in flight).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct RunsStarted {
    pub runs: Vec<RunView>,
}

/// `{"contact_sync": bool}` (SPEC C6).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UserPatch {
    pub contact_sync: Option<bool>,
}

/// Which two items of a possible duplicate to merge (needed when it has more than one on a
/// side).
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MergeRequest {
    /// The Outlook item.
    pub exchange: Option<String>,
    /// The CRM item.
    pub crm: Option<String>,
}

/// A possible duplicate merged (SPEC C3).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Merged {
    /// The hub id of the contact that holds both items now.
    pub id: String,
    /// Its Outlook and CRM items.
    pub links: Links,
    /// The contact, for its owner (administrators do not read users' contacts, SPEC P3).
    pub contact: Option<ContactShape>,
    /// The hub id of the contact merged into it (its copies are deleted by the run).
    pub removed: String,
    /// Same-field conflicts resolved by the merge (listed with the user's conflicts).
    pub conflicts: usize,
    /// The run that writes the merge to both sides (none while contact sync is off).
    pub run: Option<RunView>,
}

/// A held run dropped.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Discarded {
    pub id: String,
    pub status: String,
}

fn ops(plan: &[crate::engine::Planned], side: Side, redact: bool) -> Vec<OpView> {
    plan.iter()
        .filter(|p| p.side == side)
        .map(|p| OpView {
            op: p.op.clone(),
            contact: p.contact.to_string(),
            fields: fields_json(&p.fields, redact && p.fields.is_private()),
        })
        .collect()
}

/// A dry run's plan (SPEC X6): every write per side.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct PlanView {
    pub exchange: Vec<OpView>,
    pub crm: Vec<OpView>,
}

impl PlanView {
    pub fn of(plan: &[crate::engine::Planned], redact: bool) -> PlanView {
        PlanView { exchange: ops(plan, Side::Exchange, redact), crm: ops(plan, Side::Crm, redact) }
    }
}

/// A held run (SPEC X5) and its plan.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HeldView {
    pub id: String,
    pub user: String,
    pub at: String,
    pub reason: String,
    pub exchange: Vec<OpView>,
    pub crm: Vec<OpView>,
}

impl HeldView {
    pub fn of(user: &str, h: &HeldRun) -> HeldView {
        HeldView {
            id: format!("{user}.{}", h.at.timestamp_millis()),
            user: user.to_string(),
            at: stamp(h.at),
            reason: h.held.reason.clone(),
            exchange: ops(&h.plan, Side::Exchange, true),
            crm: ops(&h.plan, Side::Crm, true),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct Links {
    pub exchange: Option<String>,
    pub crm: Option<String>,
}

/// A merged contact.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ContactShape {
    pub id: String,
    pub private: bool,
    pub links: Links,
    /// Canonical field name → value (FIELDS.md); absent fields are left out.
    #[schema(value_type = Object)]
    pub fields: serde_json::Map<String, serde_json::Value>,
}

impl ContactShape {
    pub fn of(c: &ContactView) -> ContactShape {
        ContactShape {
            id: c.id.clone(),
            private: c.private,
            links: Links { exchange: c.links[0].clone(), crm: c.links[1].clone() },
            fields: fields_json(&c.fields, false),
        }
    }
}

/// One field change (SPEC X8).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct FieldChangeView {
    pub at: String,
    /// `exchange`, `crm` or `hub`.
    pub side: String,
    /// The field, or `deleted` for the contact's tombstone.
    pub field: String,
    pub value: Option<String>,
}

impl FieldChangeView {
    pub fn of(c: &FieldChange) -> FieldChangeView {
        FieldChangeView {
            at: stamp(c.at),
            side: c.author.name().to_string(),
            field: c.field.map_or("deleted", |f| f.name()).to_string(),
            value: c.value.as_ref().map(text),
        }
    }
}

/// A flagged Outlook item not sent, and why (SPEC K11).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct SkippedView {
    pub item: String,
    pub subject: String,
    pub start: String,
    /// `recurring`, `private`, `in_the_past`, `calendar_sync_off`, `not_ready` (waiting) or
    /// `contact_sync_off`.
    pub reason: String,
}

impl SkippedView {
    /// `redact`: shown to an administrator, a Private meeting's subject is `***`.
    pub fn of(s: &SkippedItem, redact: bool) -> SkippedView {
        let private = s.reason == crate::calendar::model::SkipReason::Private;
        SkippedView {
            item: s.item.clone(),
            subject: if redact && private { "***".into() } else { s.subject.clone() },
            start: stamp(s.start),
            reason: s.reason.to_string(),
        }
    }
}

/// An attendee who is neither a firm user nor a CRM contact (SPEC K4).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UnmatchedView {
    pub email: String,
    pub name: String,
    pub appointments: Vec<String>,
}

impl UnmatchedView {
    pub fn of(u: &UnmatchedAttendee) -> UnmatchedView {
        UnmatchedView { email: u.email.clone(), name: u.name.clone(), appointments: u.appointments.clone() }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AttendeeShape {
    pub email: String,
    pub name: String,
    pub contact: Option<String>,
}

/// A firm-level appointment.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AppointmentShape {
    pub id: String,
    pub crm_id: Option<String>,
    pub organizer: String,
    pub subject: String,
    pub start: String,
    pub end: String,
    pub all_day: bool,
    pub location: String,
    /// `scheduled`, `held` or `cancelled`.
    pub status: String,
    pub attendees: Vec<AttendeeShape>,
    pub version: u64,
    pub updated_at: String,
}

impl AppointmentShape {
    pub fn of(a: &AppointmentView) -> AppointmentShape {
        AppointmentShape {
            id: a.id.clone(),
            crm_id: a.crm_id.clone(),
            organizer: a.organizer.clone(),
            subject: a.subject.clone(),
            start: a.start.clone(),
            end: a.end.clone(),
            all_day: a.all_day,
            location: a.location.clone(),
            status: match a.status {
                Status::Scheduled => "scheduled",
                Status::Held => "held",
                Status::Cancelled => "cancelled",
            }
            .to_string(),
            attendees: a
                .attendees
                .iter()
                .map(|t| AttendeeShape { email: t.email.clone(), name: t.name.clone(), contact: t.contact.clone() })
                .collect(),
            version: a.version,
            updated_at: a.updated_at.clone(),
        }
    }
}

/// One logged version of an appointment (SPEC K8).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct HistoryView {
    pub seq: u64,
    pub user: String,
    pub item: String,
    pub observed_at: String,
    /// `sent`, `updated`, `unflagged`, `private`, `recurring` or `deleted`.
    pub change: String,
    /// SHA-256 of the logged version.
    pub hash: String,
    pub subject: String,
    pub start: String,
    pub end: String,
    pub location: String,
    pub cancelled: bool,
}

impl HistoryView {
    /// A version logged because its copy was made Private shows `***` for its subject and
    /// location (the appointment's readers are not its owner, API.md "Privacy").
    pub fn of(h: &HistoryEntry) -> HistoryView {
        let (start, end) = h.version.span.wire();
        let private = h.change == "private";
        let text = |v: &str| if private { "***".to_string() } else { v.to_string() };
        HistoryView {
            seq: h.seq,
            user: h.user.clone(),
            item: h.item.clone(),
            observed_at: stamp(h.observed_at),
            change: h.change.clone(),
            hash: h.hash.clone(),
            subject: text(&h.version.subject),
            start,
            end,
            location: text(&h.version.location),
            cancelled: h.version.cancelled,
        }
    }
}

/// A same-field conflict and how it was resolved (SPEC C5).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct ConflictView {
    pub contact: String,
    pub field: String,
    pub exchange_value: Option<String>,
    pub crm_value: Option<String>,
    /// `exchange` or `crm`.
    pub winner: String,
    pub at: String,
}

impl ConflictView {
    /// `redact`: a Private contact shown to an administrator (values are `***`).
    pub fn of(c: &crate::merge::Conflict, redact: bool) -> ConflictView {
        let value = |v: &Option<FieldValue>| v.as_ref().map(|v| if redact { "***".to_string() } else { text(v) });
        ConflictView {
            contact: c.contact.to_string(),
            field: c.field.name().to_string(),
            exchange_value: value(&c.exchange_value),
            crm_value: value(&c.crm_value),
            winner: c.winner.name().to_string(),
            at: stamp(c.at),
        }
    }
}

/// Items the identity match left apart because the match was ambiguous (SPEC C3).
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct DuplicateView {
    pub id: String,
    /// The Outlook items.
    pub exchange: Vec<String>,
    /// The CRM items.
    pub crm: Vec<String>,
    /// What they share (`email:…` or `name:…`).
    pub reason: String,
}

impl DuplicateView {
    /// `redact`: shown to an administrator with a Private contact among the items, the
    /// shared address or name is `***`.
    pub fn of(d: &crate::engine::matching::PossibleDuplicate, redact: bool) -> DuplicateView {
        let items = |v: &[crate::model::ItemId]| v.iter().map(|i| i.as_str().to_string()).collect::<Vec<_>>();
        let (exchange, crm) = (items(&d.exchange), items(&d.crm));
        let mut id = exchange.clone();
        id.extend(crm.iter().cloned());
        let reason = if redact { "***".to_string() } else { d.key.clone() };
        DuplicateView { id: id.join("+"), exchange, crm, reason }
    }
}
