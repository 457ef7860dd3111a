//! The sandbox's sample firm: mailboxes and CRM users, their contacts on each side (some
//! the same people, some Private, some firm contacts shared across lists), proxies, and
//! calendars with flagged and unflagged, recurring and private meetings. Deterministic for
//! a given size and start time.

use chrono::{DateTime, Duration, Utc};
use synchub_connectors::crm::wire::{Contact as CrmContact, Entry, User as CrmUser};
use synchub_connectors::emulators::crm::CrmState;
use synchub_connectors::emulators::graph::GraphState;
use synchub_connectors::graph::wire::{
    Attendee, Contact as GraphContact, DateTimeTimeZone, EmailAddress, Event, Location, Recipient, ResponseStatus,
};

use crate::connect::{crm as crm_map, graph as graph_map};
use crate::engine::sample;
use crate::model::Field;

/// The firm's domain.
pub const DOMAIN: &str = "lawfirm.example";
/// The tenant and app the Graph emulator knows.
pub const TENANT: &str = "lawfirm";
pub const CLIENT_ID: &str = "synchub-sandbox";

/// Where the emulators are and the credentials they take.
#[derive(Clone, Debug)]
pub struct Endpoints {
    pub graph: String,
    pub crm: String,
    pub graph_secret: String,
    pub crm_token: String,
}

/// The configuration of a hub against the emulators at `e`: calendar sync on, a cycle a
/// minute, the store in `store`, the API on `listen` with `tokens`.
pub fn config(
    e: &Endpoints,
    store: std::path::PathBuf,
    listen: String,
    tokens: Vec<crate::api::TokenConfig>,
) -> crate::hub::Config {
    use crate::hub::config::{ApiSection, CrmSection, GraphSection, StoreConfig};
    crate::hub::Config {
        store: StoreConfig { path: store, ..StoreConfig::default() },
        graph: GraphSection {
            authority: e.graph.clone(),
            tenant: TENANT.into(),
            client_id: CLIENT_ID.into(),
            client_secret: Some(e.graph_secret.clone()),
            client_secret_file: None,
            base: format!("{}/v1.0", e.graph),
            page_size: 500,
        },
        crm: CrmSection { base: e.crm.clone(), token: Some(e.crm_token.clone()), token_file: None },
        contacts: Default::default(),
        users: Default::default(),
        calendar: crate::calendar::CalendarSettings { enabled: true, ..Default::default() },
        schedule: crate::hub::scheduler::Schedule { interval_secs: 60, ..Default::default() },
        api: ApiSection { listen, tokens },
    }
}

/// The sample firm's size.
#[derive(Clone, Copy, Debug)]
pub struct Size {
    pub users: usize,
    /// Contacts per user, over both sides.
    pub contacts: usize,
}

/// What was seeded, for the banner.
#[derive(Clone, Debug, Default)]
pub struct Seeded {
    pub users: usize,
    pub outlook_contacts: usize,
    pub crm_entries: usize,
    pub private: usize,
    pub shared_firm_contacts: usize,
    pub events: usize,
    pub flagged: usize,
}

fn when(t: DateTime<Utc>) -> DateTimeTimeZone {
    DateTimeTimeZone { date_time: format!("{}.0000000", t.format("%Y-%m-%dT%H:%M:%S")), time_zone: "UTC".into() }
}

fn address(name: &str, email: &str) -> EmailAddress {
    EmailAddress { name: Some(name.to_string()), address: Some(email.to_string()) }
}

pub(crate) fn event(subject: String, start: DateTime<Utc>, organizer: &str, attendees: &[(String, String)]) -> Event {
    Event {
        subject: Some(subject),
        categories: Some(vec!["CRM".into()]),
        kind: Some("singleInstance".into()),
        sensitivity: Some("normal".into()),
        start: Some(when(start)),
        end: Some(when(start + Duration::hours(1))),
        location: Some(Location { display_name: Some("Conference room 2".into()) }),
        organizer: Some(Recipient { email_address: address(organizer, organizer) }),
        attendees: Some(
            attendees
                .iter()
                .map(|(name, email)| Attendee {
                    kind: "required".into(),
                    status: ResponseStatus { response: "accepted".into() },
                    email_address: address(name, email),
                })
                .collect(),
        ),
        ..Event::default()
    }
}

/// The user ids: `u1`, `u2`, …; their mailboxes `m1`, …; addresses `user1@lawfirm.example`.
pub fn email(u: usize) -> String {
    format!("user{u}@{DOMAIN}")
}

/// Seed both emulators' states for a firm of `size` at `now`.
pub fn seed(size: Size, now: DateTime<Utc>, secret: &str) -> (GraphState, CrmState, Seeded) {
    let mut graph = GraphState::new(TENANT, CLIENT_ID, secret, now);
    let mut crm = CrmState::new(&now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    let mut seeded = Seeded { users: size.users, ..Seeded::default() };
    for u in 1..=size.users {
        let name = format!(
            "{} {}",
            ["Alex", "Sam", "Robin", "Jordan", "Casey"][u % 5],
            ["Reed", "Moss", "Hale", "Lane"][u % 4]
        );
        graph.add_user(&format!("m{u}"), &name, &email(u));
        crm.put_user(CrmUser { id: format!("u{u}"), login: format!("user{u}"), email: email(u), display_name: name });
        // Every even user is a proxy (delegate) of the user before them.
        if u % 2 == 0 {
            crm.add_proxy(&format!("u{}", u - 1), &format!("u{u}"));
        }
    }
    // Firm contacts in many lists (SPEC C11): created in user 1's list, shared with every
    // third user.
    let shared: Vec<String> = (0..size.contacts.min(40))
        .filter_map(|i| {
            let c = crm_map::apply_firm(CrmContact::default(), &sample::contact(900_000 + i), |_| true);
            crm.create_in_list("u1", CrmContact { entry: Some(Entry::default()), ..c }).ok().map(|(c, _)| c.contact_id)
        })
        .collect();
    seeded.shared_firm_contacts = shared.len();
    seeded.crm_entries += shared.len();
    for u in 1..=size.users {
        let user = format!("u{u}");
        if u > 1 && u % 3 == 0 {
            for cid in &shared {
                if crm.add_to_list(&user, cid).is_ok() {
                    seeded.crm_entries += 1;
                }
            }
        }
        let base = u * 10_000;
        for i in 0..size.contacts {
            let fields = sample::contact(base + i);
            // A third only in Outlook, a third only in the CRM, a third on both sides.
            if i % 3 != 1 {
                let item = graph_map::apply_fields(GraphContact::default(), &fields, |_| true);
                if let Ok(body) = serde_json::to_value(&item) {
                    if graph.create_contact(&format!("m{u}"), "contacts", &body).is_ok() {
                        seeded.outlook_contacts += 1;
                    }
                }
            }
            if i % 3 != 0 {
                let private = i % 11 == 1;
                let c = crm_map::apply_firm(CrmContact::default(), &fields, |_| true);
                let entry = Entry { private, ..Entry::default() };
                if crm.create_in_list(&user, CrmContact { entry: Some(entry), ..c }).is_ok() {
                    seeded.crm_entries += 1;
                    seeded.private += usize::from(private);
                }
            }
        }
        // One person each side knows by another address: not paired, listed as a possible
        // duplicate for review (SPEC C3), the tour's merge.
        let quinn = |email: &str| {
            crate::model::ContactFields::new()
                .with_text(Field::GivenName, "Morgan")
                .with_text(Field::Surname, "Quinn")
                .with_text(Field::Company, "Quinn & Partners")
                .with_text(Field::Email1, email)
        };
        let item = graph_map::apply_fields(GraphContact::default(), &quinn("morgan.quinn@home.example"), |_| true);
        if let Ok(body) = serde_json::to_value(&item) {
            if graph.create_contact(&format!("m{u}"), "contacts", &body).is_ok() {
                seeded.outlook_contacts += 1;
            }
        }
        let c = crm_map::apply_firm(CrmContact::default(), &quinn("morgan@quinnpartners.example"), |_| true);
        if crm.create_in_list(&user, CrmContact { entry: Some(Entry::default()), ..c }).is_ok() {
            seeded.crm_entries += 1;
        }
        // The calendar: flagged future meetings with a client, a colleague and an outsider;
        // one shared with the next user (one appointment, SPEC K12); and what must be
        // skipped: unflagged, recurring, private and past meetings.
        let mailbox = format!("m{u}");
        let me = email(u);
        let next = u % size.users + 1;
        let client = sample::contact(900_000 + u % shared.len().max(1));
        let client = (
            client.get(Field::GivenName).and_then(|v| v.as_text()).unwrap_or("Client").to_string(),
            client.get(Field::Email1).and_then(|v| v.as_text()).unwrap_or("client@example.com").to_string(),
        );
        let colleague = (format!("User {next}"), email(next));
        let outsider = (format!("Guest {u}"), format!("guest{u}@newclient.example"));
        for k in 0..6i64 {
            let start = now + Duration::days(1 + k * 3) + Duration::hours(k % 4);
            let attendees = [client.clone(), colleague.clone(), outsider.clone()];
            let mut e = event(format!("Matter review {u}.{k}"), start, &me, &attendees);
            e.ical_uid = Some(format!("sandbox-{u}-{k}"));
            if k == 0 && next != u {
                let _ = graph.put_event(&format!("m{next}"), e.clone());
                seeded.events += 1;
                seeded.flagged += 1;
            }
            if graph.put_event(&mailbox, e).is_ok() {
                seeded.events += 1;
                seeded.flagged += 1;
            }
        }
        let later = now + Duration::days(2);
        let mut plain = event(format!("Lunch {u}"), later, &me, &[]);
        plain.categories = Some(vec![]);
        let mut weekly = event(format!("Weekly team call {u}"), later, &me, std::slice::from_ref(&colleague));
        weekly.kind = Some("occurrence".into());
        let mut private = event(format!("Doctor {u}"), later, &me, &[]);
        private.sensitivity = Some("private".into());
        let past = event(format!("Last week's pitch {u}"), now - Duration::days(3), &me, std::slice::from_ref(&client));
        for e in [plain, weekly, private, past] {
            if graph.put_event(&mailbox, e).is_ok() {
                seeded.events += 1;
            }
        }
        seeded.flagged += 3;
    }
    (graph, crm, seeded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sample_firm_has_every_kind_of_data() {
        let (graph, crm, seeded) = seed(Size { users: 25, contacts: 60 }, Utc::now(), "s");
        assert_eq!(seeded.users, 25);
        assert_eq!(crm.users().len(), 25);
        assert!(seeded.outlook_contacts >= 25 * 40 && seeded.crm_entries >= 25 * 40, "{seeded:?}");
        assert!(seeded.private > 0 && seeded.shared_firm_contacts > 0, "{seeded:?}");
        assert_eq!(crm.proxies("u1").unwrap().len(), 1);
        assert!(graph.contacts("m1", None).unwrap().len() >= 40);
        assert_eq!(seeded.events, 25 * 11, "{seeded:?}");
    }
}
