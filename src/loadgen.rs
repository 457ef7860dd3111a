//! The load generator of the firm-scale benchmarks (issue 8): a synthetic firm of `users`
//! users for the emulators, each with `contacts` contacts in Outlook and as many in their
//! CRM list.
//!
//! - Half of each user's contacts are the same people on both sides (same e-mail: paired
//!   by the first sync, SPEC C3); the rest are only in Outlook or only in the CRM.
//! - A fifth of each CRM list are firm contacts shared with the other users of the user's
//!   group of three (SPEC C11): one firm record in several lists, and the same person in
//!   each of those users' Outlook.
//! - Fields are filled as [`sample::contact`] fills them (15–25 of FIELDS.md's fields).
//! - Calendars: 5 flagged meetings a week for the next 4 weeks (a client, a colleague and
//!   an outsider attend), and one unflagged meeting a week, which is skipped.
//!
//! Deterministic for a given size and start time. `synchub emulators --shape load` serves
//! it; `benches/firm.rs` drives the hub against that process.

use chrono::{DateTime, Duration, Utc};
use synchub_connectors::crm::wire::{Contact as CrmContact, Entry, User as CrmUser};
use synchub_connectors::emulators::crm::CrmState;
use synchub_connectors::emulators::graph::GraphState;
use synchub_connectors::graph::wire::Contact as GraphContact;

use crate::connect::{crm as crm_map, graph as graph_map};
use crate::engine::sample;
use crate::model::{ContactFields, Field};
use crate::sandbox::{email, event, Seeded, CLIENT_ID, TENANT};

/// Flagged meetings per user per week.
pub const MEETINGS_PER_WEEK: usize = 5;
/// Weeks of meetings ahead.
pub const WEEKS: usize = 4;
/// Users per group sharing firm contacts.
pub const GROUP: usize = 3;

/// The firm's size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Load {
    pub users: usize,
    /// Contacts per user on each side.
    pub contacts: usize,
}

impl Load {
    /// People on both sides of a user (paired by the first sync).
    pub fn matched(&self) -> usize {
        self.contacts / 2
    }

    /// Of those, the firm contacts shared with the user's group.
    pub fn shared(&self) -> usize {
        self.contacts / 5
    }

    /// The contacts each user ends with after the first sync (the union of both sides).
    pub fn merged(&self) -> usize {
        2 * self.contacts - self.matched()
    }
}

/// User `u`'s own person `i`.
fn own(load: &Load, u: usize, i: usize) -> ContactFields {
    sample::contact(1_000_000 + u * 4 * load.contacts.max(1) + i)
}

/// Group `g`'s shared person `j`.
fn shared(u_group: usize, j: usize) -> ContactFields {
    sample::contact(500_000_000 + u_group * 10_000 + j)
}

/// Seed both emulators' states for `load` at `now`.
pub fn seed(load: Load, now: DateTime<Utc>, secret: &str) -> (GraphState, CrmState, Seeded) {
    let mut graph = GraphState::new(TENANT, CLIENT_ID, secret, now);
    let mut crm = CrmState::new(&now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut seeded = Seeded { users: load.users, ..Seeded::default() };
    let (c, m, s) = (load.contacts, load.matched(), load.shared().min(load.matched()));
    for u in 1..=load.users {
        let name = format!("User {u}");
        graph.add_user(&format!("m{u}"), &name, &email(u));
        crm.put_user(CrmUser { id: format!("u{u}"), login: format!("user{u}"), email: email(u), display_name: name });
    }
    let mut group_contacts: Vec<String> = Vec::new();
    for u in 1..=load.users {
        let (mailbox, user) = (format!("m{u}"), format!("u{u}"));
        let group = (u - 1) / GROUP;
        let mut outlook = |fields: &ContactFields| {
            let item = graph_map::apply_fields(GraphContact::default(), fields, |_| true);
            if let Ok(body) = serde_json::to_value(&item) {
                if graph.create_contact(&mailbox, "contacts", &body).is_ok() {
                    seeded.outlook_contacts += 1;
                }
            }
        };
        // Outlook: its own people only there, then the people it shares with the CRM.
        for i in 0..c {
            let fields = if i < c - s { own(&load, u, i) } else { shared(group, i - (c - s)) };
            outlook(&fields);
        }
        // The group's firm contacts: made by its first user, added to the others' lists.
        if (u - 1) % GROUP == 0 {
            group_contacts = (0..s)
                .filter_map(|j| {
                    let firm = crm_map::apply_firm(CrmContact::default(), &shared(group, j), |_| true);
                    let firm = CrmContact { entry: Some(Entry::default()), ..firm };
                    crm.create_in_list(&user, firm).ok().map(|(made, _)| made.contact_id)
                })
                .collect();
            seeded.shared_firm_contacts += group_contacts.len();
            seeded.crm_entries += group_contacts.len();
        } else {
            for cid in &group_contacts {
                if crm.add_to_list(&user, cid).is_ok() {
                    seeded.crm_entries += 1;
                }
            }
        }
        // The CRM list: the people it shares with Outlook (own ones), then its own only.
        for i in (c - m)..(c - s) {
            let firm = crm_map::apply_firm(CrmContact::default(), &own(&load, u, i), |_| true);
            if crm.create_in_list(&user, CrmContact { entry: Some(Entry::default()), ..firm }).is_ok() {
                seeded.crm_entries += 1;
            }
        }
        for i in c..(2 * c - m) {
            let firm = crm_map::apply_firm(CrmContact::default(), &own(&load, u, i), |_| true);
            if crm.create_in_list(&user, CrmContact { entry: Some(Entry::default()), ..firm }).is_ok() {
                seeded.crm_entries += 1;
            }
        }
        meetings(&mut graph, &load, u, now, &mut seeded);
    }
    (graph, crm, seeded)
}

/// User `u`'s calendar: 5 flagged meetings a week and one unflagged.
fn meetings(graph: &mut GraphState, load: &Load, u: usize, now: DateTime<Utc>, seeded: &mut Seeded) {
    let mailbox = format!("m{u}");
    let me = email(u);
    let next = u % load.users + 1;
    let colleague = (format!("User {next}"), email(next));
    let outsider = (format!("Guest {u}"), format!("guest{u}@newclient.example"));
    for w in 0..WEEKS {
        for k in 0..MEETINGS_PER_WEEK {
            let n = w * MEETINGS_PER_WEEK + k;
            let client = own(load, u, load.contacts - load.matched() + n % load.matched().max(1));
            let client = (
                client.get(Field::GivenName).and_then(|v| v.as_text()).unwrap_or("Client").to_string(),
                client.get(Field::Email1).and_then(|v| v.as_text()).unwrap_or("client@example.com").to_string(),
            );
            let start = now + Duration::days((w * 7 + 1 + k) as i64) + Duration::hours((9 + k % 6) as i64);
            let attendees = [client, colleague.clone(), outsider.clone()];
            let mut e = event(format!("Client meeting {u}.{n}"), start, &me, &attendees);
            e.ical_uid = Some(format!("load-{u}-{n}"));
            if graph.put_event(&mailbox, e).is_ok() {
                seeded.events += 1;
                seeded.flagged += 1;
            }
        }
        let start = now + Duration::days((w * 7 + 2) as i64) + Duration::hours(12);
        let mut lunch = event(format!("Lunch {u}.{w}"), start, &me, &[]);
        lunch.categories = Some(vec![]);
        if graph.put_event(&mailbox, lunch).is_ok() {
            seeded.events += 1;
        }
    }
}

/// One more flagged meeting for user `u` (the calendar benchmark's new work), `n` apart
/// from the seeded ones.
pub fn extra_meeting(users: usize, u: usize, n: usize, now: DateTime<Utc>) -> synchub_connectors::graph::wire::Event {
    let next = u % users + 1;
    let attendees =
        [(format!("User {next}"), email(next)), (format!("Guest {u}"), format!("guest{u}@newclient.example"))];
    let start = now + Duration::days(3) + Duration::minutes(n as i64);
    let mut e = event(format!("Added meeting {u}.{n}"), start, &email(u), &attendees);
    e.ical_uid = Some(format!("load-extra-{u}-{n}"));
    e
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_user_has_the_shape_the_benchmarks_state() {
        let load = Load { users: 7, contacts: 100 };
        let (graph, crm, seeded) = seed(load, Utc::now(), "s");
        let mut lists = std::collections::BTreeMap::<String, usize>::new();
        for u in 1..=load.users {
            let outlook = graph.contacts(&format!("m{u}"), None).expect("mailbox");
            let list = crm.list(&format!("u{u}"));
            assert_eq!((outlook.len(), list.len()), (100, 100), "user {u}");
            let o: std::collections::BTreeSet<String> = outlook
                .iter()
                .filter_map(|c| c.email_addresses.as_ref()?.first()?.address.as_ref().map(|a| a.to_lowercase()))
                .collect();
            let c: std::collections::BTreeSet<String> =
                list.iter().filter_map(|c| c.emails.first().map(|e| e.address.to_lowercase())).collect();
            assert_eq!((o.len(), c.len()), (100, 100), "one person each, user {u}");
            assert_eq!(o.intersection(&c).count(), 50, "half the same people, user {u}");
            for contact in list {
                *lists.entry(contact.contact_id).or_default() += 1;
            }
        }
        // Users 1–3 share 20 firm contacts, 4–6 another 20; user 7's group is itself.
        assert_eq!(seeded.shared_firm_contacts, 60);
        assert_eq!(lists.values().filter(|n| **n == 3).count(), 40);
        assert_eq!(lists.values().filter(|n| **n == 2).count(), 0);
        assert_eq!(seeded.crm_entries, 700);
        assert_eq!(seeded.flagged, 7 * MEETINGS_PER_WEEK * WEEKS);
        assert_eq!(seeded.events, 7 * (MEETINGS_PER_WEEK + 1) * WEEKS);
        assert_eq!(load.merged(), 150);
    }
}
