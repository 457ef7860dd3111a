//! Two-way contact sync end to end (issue 5): the hub drives the real Graph and CRM clients
//! against both emulators over loopback, through the merge core and a sled store on disk.
//! Each test is named after the SPEC rule it shows.

use synchub::engine::matching::InitialMatch;
use synchub::hub::ContactSettings;
use synchub::model::{Field, FieldValue};
use synchub_connectors::graph::props::HUB_ID;

use crate::firm::{person, text, Firm};

fn identity() -> ContactSettings {
    ContactSettings::default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c1_c3_first_sync_pairs_the_same_person_and_unions_the_rest() {
    let firm = Firm::start(1, identity()).await;
    let mut jane_outlook = person("Jane", "Tarnoff", "Acme", "jane@acme.com");
    jane_outlook.set(Field::MobilePhone, Some(synchub::model::FieldValue::Text("+1 917 555 0100".into())));
    firm.outlook_add(1, &jane_outlook);
    firm.outlook_add(1, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    let mut jane_crm = person("Jane", "Tarnoff", "Acme Corp", "Jane@Acme.com");
    jane_crm.set(Field::JobTitle, Some(synchub::model::FieldValue::Text("General Counsel".into())));
    firm.crm_add(1, &jane_crm);
    firm.crm_add(1, &person("Cy", "Oh", "Globex", "cy@globex.example"));

    let report = firm.sync(1).await;
    assert_eq!(report.log.matched.len(), 1, "Jane is one person (same e-mail)");
    assert!(report.errors.is_empty(), "{:?}", report.errors);
    firm.sync(1).await;
    firm.assert_mirrored(1);
    let (outlook, _) = firm.sides(1);
    assert_eq!(outlook.len(), 3, "Jane, Bob and Cy; no duplicate Jane");
    let jane = outlook.iter().find(|f| text(f, Field::Surname).as_deref() == Some("Tarnoff")).expect("Jane");
    assert_eq!(text(jane, Field::MobilePhone).as_deref(), Some("+1 917 555 0100"), "Outlook's phone kept");
    assert_eq!(text(jane, Field::JobTitle).as_deref(), Some("General Counsel"), "the CRM's title kept");
    assert_eq!(text(jane, Field::Company).as_deref(), Some("Acme Corp"), "where they differ, the firm record's");

    let quiet = firm.sync(1).await;
    assert_eq!(quiet.counts.iter().map(|c| c.created + c.updated + c.deleted).sum::<u32>(), 0, "echoes never bounce");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_initial_match_none_keeps_the_originals_duplicates() {
    let settings = ContactSettings { initial_match: InitialMatch::None, ..identity() };
    let firm = Firm::start(1, settings).await;
    firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    let report = firm.sync(1).await;
    assert!(report.log.matched.is_empty());
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.outlook(1).len(), 2, "two Janes, as the original product makes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_ambiguous_candidates_are_reported_never_paired() {
    let firm = Firm::start(1, identity()).await;
    firm.outlook_add(1, &person("Ann", "Lee", "Globex", ""));
    firm.outlook_add(1, &person("Ann", "Lee", "Globex", ""));
    firm.crm_add(1, &person("Ann", "Lee", "Globex", ""));
    let report = firm.sync(1).await;
    assert!(report.log.matched.is_empty());
    assert_eq!(report.possible_duplicates.len(), 1, "{:?}", report.possible_duplicates);
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.outlook(1).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_creates_edits_and_deletes_flow_both_ways() {
    let firm = Firm::start(1, identity()).await;
    let o = firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    let c = firm.crm_add(1, &person("Cy", "Oh", "Globex", "cy@globex.example"));
    firm.sync(1).await;
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    firm.crm_edit(&c, Field::Department, Some("Tax"));
    let report = firm.sync(1).await;
    assert_eq!((report.counts[0].updated, report.counts[1].updated), (1, 1), "{report:?}");
    firm.assert_mirrored(1);
    let cy_in_outlook = firm
        .outlook(1)
        .into_iter()
        .find(|x| x.surname.as_deref() == Some("Oh"))
        .and_then(|x| x.id)
        .expect("Cy in Outlook");
    firm.outlook_delete(1, &cy_in_outlook);
    let jane_in_crm =
        firm.crm_list(1).into_iter().find(|x| x.name.last == "Tarnoff").map(|x| x.contact_id).expect("Jane in the CRM");
    firm.crm_remove(1, &jane_in_crm);
    let report = firm.sync(1).await;
    assert_eq!((report.counts[0].deleted, report.counts[1].deleted), (1, 1), "{report:?}");
    assert!(firm.outlook(1).is_empty() && firm.crm_list(1).is_empty());
    assert!(firm.crm.state().contact(&jane_in_crm).is_some(), "the firm record stays; only the list entry goes");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c5_concurrent_edits_merge_field_by_field_and_same_field_conflicts_are_recorded() {
    let firm = Firm::start(1, identity()).await;
    let o = firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.sync(1).await;
    let c = firm.crm_list(1)[0].contact_id.clone();
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    firm.crm_edit(&c, Field::Department, Some("Tax"));
    firm.outlook_edit(1, &o, Field::Company, Some("Acme Outlook"));
    firm.crm_edit(&c, Field::Company, Some("Acme CRM"));
    let report = firm.sync(1).await;
    assert_eq!(report.log.conflicts.len(), 1, "{:?}", report.log.conflicts);
    firm.assert_mirrored(1);
    let (outlook, _) = firm.sides(1);
    assert_eq!(text(&outlook[0], Field::JobTitle).as_deref(), Some("Partner"));
    assert_eq!(text(&outlook[0], Field::Department).as_deref(), Some("Tax"));
    let conflicts = synchub::engine::conflicts(firm.hub.store(), "u1").expect("conflicts");
    assert_eq!(conflicts.len(), 1, "recorded for the API (X2)");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c11_a_shared_firm_contact_converges_in_every_list_and_mailbox() {
    let firm = Firm::start(2, identity()).await;
    let c = firm.crm_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.crm.state().add_to_list("u2", &c).expect("share");
    firm.sync(1).await;
    firm.sync(2).await;
    let o1 = firm.outlook(1)[0].id.clone().expect("id");
    firm.outlook_edit(1, &o1, Field::JobTitle, Some("Partner"));
    firm.sync(1).await;
    firm.sync(2).await;
    for i in [1, 2] {
        firm.assert_mirrored(i);
        let (outlook, _) = firm.sides(i);
        assert_eq!(text(&outlook[0], Field::JobTitle).as_deref(), Some("Partner"), "user {i}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x9_a_lost_store_relinks_by_stamps_without_duplicates() {
    let mut firm = Firm::start(1, identity()).await;
    for i in 0..5 {
        firm.outlook_add(1, &person(&format!("O{i}"), "Out", "Acme", &format!("o{i}@acme.com")));
        firm.crm_add(1, &person(&format!("C{i}"), "Crm", "Acme", &format!("c{i}@acme.com")));
    }
    firm.sync(1).await;
    firm.sync(1).await;
    firm.assert_mirrored(1);
    firm.lose_store();
    let report = firm.sync(1).await;
    assert_eq!(report.counts.iter().map(|c| c.created).sum::<u32>(), 0, "nothing re-created: {report:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.outlook(1).len(), 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c6_contact_sync_off_leaves_both_sides_and_on_again_resumes_without_duplicates() {
    let mut firm = Firm::start(1, identity()).await;
    firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.sync(1).await;
    let off = ContactSettings { disabled_users: vec!["u1@firm.example".into()], ..identity() };
    firm.restart(off);
    firm.outlook_add(1, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    let e = firm.try_sync(1).await.unwrap_err();
    assert!(e.to_string().contains("contact sync is off"), "{e}");
    assert_eq!(firm.crm_list(1).len(), 1, "nothing moves while off");
    firm.restart(identity());
    firm.sync(1).await;
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.outlook(1).len(), 2, "resumed from the stored state, no duplicate Jane");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c8_notes_off_never_travel_and_are_never_blanked() {
    let settings = ContactSettings { sync_notes: false, ..identity() };
    let firm = Firm::start(1, settings).await;
    let mut jane = person("Jane", "Tarnoff", "Acme", "jane@acme.com");
    jane.set(Field::Notes, Some(synchub::model::FieldValue::Text("met at the dinner".into())));
    let o = firm.outlook_add(1, &jane);
    firm.sync(1).await;
    let entry = firm.crm_list(1)[0].entry.clone().expect("entry");
    assert_eq!(entry.notes, "", "Outlook notes stay in Outlook");
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    firm.sync(1).await;
    let item = firm.graph.state().contact("m1", &o).expect("item");
    assert_eq!(item.personal_notes.as_deref(), Some("met at the dinner"), "never blanked by a push");
    assert_eq!(firm.crm_list(1)[0].job_title, "Partner");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c8_notes_switched_off_over_the_api_are_never_blanked_by_the_next_pushes() {
    let firm = Firm::start(1, identity()).await;
    let mut jane = person("Jane", "Tarnoff", "Acme", "jane@acme.com");
    jane.set(Field::Notes, Some(FieldValue::Text("met at the dinner".into())));
    let o = firm.outlook_add(1, &jane);
    firm.sync(1).await;
    firm.sync(1).await;
    let cid = firm.crm_list(1)[0].contact_id.clone();
    assert_eq!(firm.crm_list(1)[0].entry.as_ref().map(|e| e.notes.as_str()), Some("met at the dinner"));

    // Switched off while the hub keeps the user's sides from the runs before.
    let off = synchub::hub::SettingsUpdate { sync_notes: Some(false), ..Default::default() };
    firm.hub.update_settings(&off).expect("settings");
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    firm.crm_edit(&cid, Field::Department, Some("Tax"));
    let report = firm.sync(1).await;
    assert_eq!((report.counts[0].updated, report.counts[1].updated), (1, 1), "{report:?}");
    let crm = firm.crm_list(1).remove(0);
    assert_eq!(crm.job_title, "Partner");
    assert_eq!(crm.entry.map(|e| e.notes), Some("met at the dinner".to_string()), "CRM notes never blanked");
    let item = firm.graph.state().contact("m1", &o).expect("item");
    assert_eq!(item.department.as_deref(), Some("Tax"));
    assert_eq!(item.personal_notes.as_deref(), Some("met at the dinner"), "Outlook notes never blanked");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a1_mailboxes_match_crm_users_by_address_and_the_rest_is_reported() {
    let firm = Firm::start(2, identity()).await;
    firm.graph.state().add_user("m9", "Temp", "temp@firm.example");
    firm.crm.state().put_user(synchub_connectors::crm::wire::User {
        id: "u7".into(),
        login: "user7".into(),
        email: "u7@firm.example".into(),
        display_name: "User 7".into(),
    });
    let hub = firm.hub.clone();
    let matched = tokio::task::spawn_blocking(move || hub.match_users()).await.expect("task").expect("match");
    let pairs: Vec<(&str, &str)> = matched.pairs.iter().map(|p| (p.mailbox.as_str(), p.crm_user.as_str())).collect();
    assert_eq!(pairs, [("m1", "u1"), ("m2", "u2")], "by address, case-insensitively");
    assert_eq!(matched.unmatched_mailboxes, ["temp@firm.example"]);
    assert_eq!(matched.unmatched_crm_users, ["u7"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_deleting_a_shared_contact_in_outlook_takes_it_off_that_users_list_only() {
    let firm = Firm::start(2, identity()).await;
    let c = firm.crm_add(1, &person("Firm", "Shared", "Acme", "shared@acme.example"));
    firm.crm.state().add_to_list("u2", &c).expect("share");
    // A second contact, so the delete does not empty the side (which X5 holds).
    firm.outlook_add(2, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    firm.sync(2).await;
    let o =
        firm.outlook(2).into_iter().find(|x| x.surname.as_deref() == Some("Shared")).and_then(|x| x.id).expect("id");
    firm.outlook_delete(2, &o);
    let r = firm.sync(2).await;
    eprintln!("{r:?}");
    let r = firm.sync(2).await;
    eprintln!("{r:?}");
    assert!(firm.crm_list(2).iter().all(|x| x.contact_id != c), "off user 2's list");
    assert_eq!(firm.crm_list(1).len(), 1, "still on user 1's");
    firm.sync(1).await;
    firm.assert_mirrored(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_a_contact_put_back_on_the_crm_list_after_its_outlook_delete_is_kept() {
    // Between two runs: the contact is taken off user 2's list, its Outlook item deleted,
    // then the contact put back on the list (a new list entry, without synchub's stamp).
    // Putting it back came last, so the contact stays on both sides (SPEC X3, C11).
    let firm = Firm::start(2, identity()).await;
    let c = firm.crm_add(1, &person("Firm", "Shared", "Acme", "shared@acme.example"));
    firm.crm.state().add_to_list("u2", &c).expect("share");
    firm.outlook_add(2, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    firm.sync(2).await;
    let shared = |firm: &Firm| firm.outlook(2).into_iter().find(|x| x.surname.as_deref() == Some("Shared"));
    let o = shared(&firm).and_then(|x| x.id).expect("id");
    firm.crm_remove(2, &c);
    firm.outlook_delete(2, &o);
    firm.crm.state().add_to_list("u2", &c).expect("put back");
    firm.sync(2).await;
    firm.sync(2).await;
    assert!(firm.crm_list(2).iter().any(|x| x.contact_id == c), "still on user 2's list");
    assert!(shared(&firm).is_some(), "back in user 2's Outlook");
    firm.assert_mirrored(2);
    let entry = firm.crm_list(2).into_iter().find(|x| x.contact_id == c).and_then(|x| x.entry).expect("entry");
    assert!(entry.external_ref.is_some(), "the new entry is stamped again (X9)");

    // Put back with the Outlook item untouched: the entry is stamped again, the Outlook
    // item stays the same item, and the user's notes, which the new entry lacks, are not
    // taken as cleared: they go back into the entry (C11: the user's own fields).
    let o = shared(&firm).and_then(|x| x.id).expect("id");
    firm.outlook_edit(2, &o, Field::Notes, Some("Met at the Paris offsite"));
    firm.sync(2).await;
    firm.crm_remove(2, &c);
    firm.crm.state().add_to_list("u2", &c).expect("put back");
    firm.sync(2).await;
    firm.sync(2).await;
    let item = shared(&firm).expect("the Outlook item");
    assert_eq!(item.id, Some(o), "the same Outlook item");
    assert_eq!(item.personal_notes.as_deref(), Some("Met at the Paris offsite"), "the notes stay in Outlook");
    let entry = firm.crm_list(2).into_iter().find(|x| x.contact_id == c).and_then(|x| x.entry).expect("entry");
    assert!(entry.external_ref.is_some(), "stamped again");
    assert_eq!(entry.notes, "Met at the Paris offsite", "and go back into the new entry");
    firm.assert_mirrored(2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_a_contact_the_hub_made_in_the_crm_put_back_after_its_outlook_delete_is_kept() {
    // The hub made the CRM contact (its entry at version 1, as a put-back entry is too):
    // the put-back entry is no echo of the hub's create, so it keeps the contact (SPEC X3).
    let firm = Firm::start(1, identity()).await;
    firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.outlook_add(1, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    firm.sync(1).await;
    let c = firm.crm_list(1).into_iter().find(|x| x.name.last == "Tarnoff").expect("made").contact_id;
    let o = firm.outlook(1).into_iter().find(|x| x.surname.as_deref() == Some("Tarnoff")).and_then(|x| x.id);
    firm.crm_remove(1, &c);
    firm.outlook_delete(1, &o.expect("id"));
    firm.crm.state().add_to_list("u1", &c).expect("put back");
    firm.sync(1).await;
    firm.sync(1).await;
    assert!(firm.crm_list(1).iter().any(|x| x.contact_id == c), "still on the list");
    assert!(firm.outlook(1).iter().any(|x| x.surname.as_deref() == Some("Tarnoff")), "back in Outlook");
    firm.assert_mirrored(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_a4_the_scheduler_runs_every_user_and_a_throttled_side_is_waited_out() {
    use std::sync::Arc;
    use synchub::hub::scheduler::{Schedule, Scheduler};
    use synchub::hub::HubJobs;
    use synchub_connectors::emulators::crm::Fault;

    let firm = Firm::start(3, identity()).await;
    for u in 1..=3 {
        firm.outlook_add(u, &person("Jane", &format!("User{u}"), "Acme", &format!("jane{u}@acme.com")));
    }
    // The CRM throttles the first requests: Retry-After is honoured, and the run retried.
    firm.crm.inject((0..8).map(|_| Fault::Throttle { retry_after_secs: 0.01 }));
    let schedule = Schedule { concurrency: 2, backoff_secs: 0, ..Schedule::default() };
    let scheduler = Scheduler::new(Arc::new(HubJobs::new(firm.hub.clone())), schedule);
    let report = scheduler.run_now(None).await;
    assert_eq!(report.users.len(), 3, "{report:?}");
    assert_eq!(report.failed().count(), 0, "{report:?}");
    scheduler.run_now(Some("u2")).await;
    for u in 1..=3 {
        firm.assert_mirrored(u);
    }
    let history = firm.hub.history("u2").expect("history");
    assert_eq!(history.len(), 2, "each run is kept with its counts (A2)");
    assert_eq!(history[0].counts[1][0], 1, "the first run created Jane in the CRM");
    // A5: the throttling waits show in the metrics.
    let text = firm.hub.metrics().render();
    let waits: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("synchub_throttle_waits_total "))
        .and_then(|v| v.trim().parse().ok())
        .expect("a throttle wait counter");
    assert!(waits >= 1.0, "{text}");
    assert!(text.contains(r#"synchub_runs_total{outcome="ok"}"#), "{text}");
}

/// One Outlook save replacing given name, surname and primary e-mail (SPEC C10).
fn rename_joe_to_jane(firm: &Firm, item: &str) {
    let edits = [
        (Field::GivenName, Some("Jane")),
        (Field::Surname, Some("Rogers")),
        (Field::Email1, Some("jane@rogers.example")),
    ];
    firm.outlook_edit_many(1, item, &edits);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c10_renamed_contact_is_split_and_the_old_crm_record_is_untouched() {
    let firm = Firm::start(1, identity()).await;
    let o = firm.outlook_add(1, &person("Joe", "Smith", "Acme", "joe@acme.com"));
    firm.sync(1).await;
    let joe = firm.crm_list(1)[0].contact_id.clone();
    let old_stamp = firm.graph.state().contact("m1", &o).expect("item").extended(HUB_ID).map(str::to_string);
    rename_joe_to_jane(&firm, &o);
    let report = firm.sync(1).await;
    assert_eq!(report.log.split.len(), 1, "{report:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    let list = firm.crm_list(1);
    assert_eq!(list.len(), 1);
    assert_ne!(list[0].contact_id, joe, "Jane is a new CRM contact");
    assert_eq!(list[0].name.first, "Jane");
    let old = firm.crm.state().contact(&joe).cloned().expect("Joe's firm record stays");
    assert_eq!((old.name.first.as_str(), old.name.last.as_str()), ("Joe", "Smith"), "and is not renamed");
    let new_stamp = firm.graph.state().contact("m1", &o).expect("the same item").extended(HUB_ID).map(str::to_string);
    assert_ne!(new_stamp, old_stamp, "the Outlook item is stamped again");
    let splits = synchub::engine::identity_splits(firm.hub.store(), "u1").expect("journal");
    assert_eq!(splits.len(), 1, "the event is recorded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c10_reuse_policy_follow_keeps_the_original_behaviour() {
    let settings = ContactSettings { reuse_policy: synchub::hub::ReusePolicy::Follow, ..identity() };
    let firm = Firm::start(1, settings).await;
    let o = firm.outlook_add(1, &person("Joe", "Smith", "Acme", "joe@acme.com"));
    firm.sync(1).await;
    let joe = firm.crm_list(1)[0].contact_id.clone();
    rename_joe_to_jane(&firm, &o);
    let report = firm.sync(1).await;
    assert!(report.log.split.is_empty());
    let list = firm.crm_list(1);
    assert_eq!((list.len(), list[0].contact_id.as_str(), list[0].name.first.as_str()), (1, joe.as_str(), "Jane"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c10_changing_only_a_name_is_an_edit_not_a_new_person() {
    let firm = Firm::start(1, identity()).await;
    let o = firm.outlook_add(1, &person("Joe", "Smith", "Acme", "joe@acme.com"));
    firm.sync(1).await;
    let joe = firm.crm_list(1)[0].contact_id.clone();
    firm.outlook_edit_many(1, &o, &[(Field::GivenName, Some("Joseph")), (Field::Surname, Some("Smyth"))]);
    let report = firm.sync(1).await;
    assert!(report.log.split.is_empty());
    assert_eq!(firm.crm_list(1)[0].contact_id, joe);
    assert_eq!(firm.crm_list(1)[0].name.first, "Joseph");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x3_x9_a_contact_edited_in_outlook_while_taken_off_the_crm_list_comes_back_as_the_same_firm_record() {
    let firm = Firm::start(2, identity()).await;
    let c = firm.crm_add(1, &person("Firm", "Shared", "Acme", "shared@acme.example"));
    firm.crm.state().add_to_list("u2", &c).expect("share");
    firm.crm_add(1, &person("Bob", "Ng", "Initech", "bob@initech.example"));
    firm.sync(1).await;
    firm.crm_remove(1, &c);
    let o =
        firm.outlook(1).into_iter().find(|x| x.surname.as_deref() == Some("Shared")).and_then(|x| x.id).expect("id");
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    let report = firm.sync(1).await;
    assert_eq!(report.log.resurrected.len(), 1, "the edit beats the removal (X3): {report:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    let list = firm.crm_list(1);
    assert_eq!(list.len(), 2);
    let back = list.iter().find(|x| x.name.last == "Shared").expect("back on the list");
    assert_eq!(back.contact_id, c, "the firm record is added back, not made again");
    assert_eq!(back.job_title, "Partner");
    assert_eq!(firm.crm_list(2)[0].job_title, "Partner", "a firm field: user 2's list sees it too (C11)");
}

async fn synced_with(n: usize) -> (Firm, Vec<String>) {
    let firm = Firm::start(1, identity()).await;
    let ids = (0..n)
        .map(|i| firm.outlook_add(1, &person(&format!("G{i}"), "Person", "Acme", &format!("p{i}@acme.com"))))
        .collect();
    firm.sync(1).await;
    firm.sync(1).await;
    (firm, ids)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x5_a_mass_delete_is_held_and_discarding_it_restores_outlook() {
    let (firm, ids) = synced_with(30).await;
    for id in ids.iter().take(15) {
        firm.outlook_delete(1, id);
    }
    let report = firm.sync(1).await;
    let held = report.held.expect("15 deletes of 30 is more than 10 and 10 %");
    assert_eq!(held.sides, [synchub::model::Side::Exchange], "{}", held.reason);
    assert_eq!(firm.crm_list(1).len(), 30, "nothing written");
    let stored = firm.hub.held("u1").expect("read").expect("the held plan is stored for review");
    assert_eq!(stored.plan.iter().filter(|p| p.op == "delete").count(), 15);
    let e = firm.try_sync(1).await.unwrap_err();
    assert!(e.to_string().contains("held for review"), "{e}");

    firm.hub.discard("u1").expect("discard");
    let report = firm.sync(1).await;
    assert_eq!(report.counts[0].created, 15, "Outlook restored from the document: {report:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.crm_list(1).len(), 30, "nothing of the held run was applied");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x5_releasing_a_held_run_carries_it_out() {
    let (firm, ids) = synced_with(30).await;
    for id in ids.iter().take(15) {
        firm.outlook_delete(1, id);
    }
    assert!(firm.sync(1).await.held.is_some());
    let hub = firm.hub.clone();
    let report =
        tokio::task::spawn_blocking(move || hub.release(&Firm::pair(1))).await.expect("task").expect("release");
    assert_eq!(report.counts[1].deleted, 15);
    assert!(firm.hub.held("u1").expect("read").is_none());
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!(firm.crm_list(1).len(), 15);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x5_a_side_suddenly_empty_is_held_even_under_the_thresholds() {
    let (firm, ids) = synced_with(4).await;
    for id in &ids {
        firm.outlook_delete(1, id);
    }
    let report = firm.sync(1).await;
    let held = report.held.expect("an emptied side");
    assert!(held.reason.contains("now shows none"));
    assert_eq!(held.sides, [synchub::model::Side::Exchange], "the emptied side is the one to restore");
    assert_eq!(firm.crm_list(1).len(), 4);
    firm.hub.discard("u1").expect("discard");
    let restored = firm.sync(1).await;
    assert!(restored.held.is_none(), "a restore the administrator asked for is not held again");
    assert_eq!(restored.counts[0].created, 4);
    firm.sync(1).await;
    firm.assert_mirrored(1);
    let (firm, ids) = synced_with(30).await;
    for id in ids.iter().take(3) {
        firm.outlook_delete(1, id);
    }
    assert!(firm.sync(1).await.held.is_none(), "3 of 30 is a normal run");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn x6_a_dry_run_lists_every_planned_write_and_writes_nothing() {
    let firm = Firm::start(1, identity()).await;
    firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.crm_add(1, &person("Cy", "Oh", "Globex", "cy@globex.example"));
    let hub = firm.hub.clone();
    let report =
        tokio::task::spawn_blocking(move || hub.dry_run(&Firm::pair(1))).await.expect("task").expect("dry run");
    let ops: Vec<(String, String)> = report.plan.iter().map(|p| (p.side.to_string(), p.op.clone())).collect();
    assert_eq!(ops.len(), 4, "{ops:?}");
    assert!(ops.contains(&("crm".into(), "create".into())) && ops.contains(&("exchange".into(), "create".into())));
    assert_eq!((firm.outlook(1).len(), firm.crm_list(1).len()), (1, 1), "neither side written");
    assert!(firm.hub.history("u1").expect("history").is_empty(), "nor the store");
    let real = firm.sync(1).await;
    assert_eq!(real.plan.len(), 4, "the real run does what the dry run said");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_the_same_person_seen_on_each_side_in_different_runs_is_still_one_contact() {
    use synchub_connectors::emulators::crm::Fault;
    let firm = Firm::start(1, identity()).await;
    firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    firm.crm_add(1, &person("Jane", "Tarnoff", "Acme Corp", "jane@acme.com"));
    // The CRM cannot be read in the first run: Jane is made from Outlook alone, and her
    // create in the CRM waits.
    firm.crm.inject((0..12).map(|_| Fault::Status(503)));
    let first = firm.sync(1).await;
    assert_eq!(first.errors.len(), 1, "{first:?}");
    firm.crm.clear_faults();
    let second = firm.sync(1).await;
    assert_eq!(second.log.matched.len(), 1, "the CRM's Jane joins the waiting contact: {second:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    assert_eq!((firm.outlook(1).len(), firm.crm_list(1).len()), (1, 1), "one Jane on each side");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c3_an_outlook_copy_joining_a_contact_the_crm_made_keeps_the_crms_values() {
    use synchub_connectors::emulators::graph::Fault;
    let firm = Firm::start(1, identity()).await;
    let mut outlook = person("Jane", "Tarnoff", "Acme (old)", "jane@acme.com");
    outlook.set(Field::MobilePhone, Some(synchub::model::FieldValue::Text("+1 917 555 0100".into())));
    firm.outlook_add(1, &outlook);
    firm.crm_add(1, &person("Jane", "Tarnoff", "Acme Corp", "jane@acme.com"));
    // Outlook cannot be read in the first run: Jane is made from the CRM alone.
    firm.graph.inject(Some("/contacts/delta"), (0..12).map(|_| Fault::Status(503)));
    firm.sync(1).await;
    firm.graph.clear_faults();
    let second = firm.sync(1).await;
    assert_eq!(second.log.matched.len(), 1, "{second:?}");
    firm.sync(1).await;
    firm.assert_mirrored(1);
    let (outlook, _) = firm.sides(1);
    assert_eq!(outlook.len(), 1);
    assert_eq!(text(&outlook[0], Field::Company).as_deref(), Some("Acme Corp"), "the firm record's value kept");
    assert_eq!(text(&outlook[0], Field::MobilePhone).as_deref(), Some("+1 917 555 0100"), "what it lacked added");
}

/// SPEC A2 at firm scale: a user not kept in memory is pulled before it is loaded; a run
/// with nothing new ends without loading it, a run with changes loads it and syncs them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a2_a_user_not_kept_in_memory_is_pulled_before_it_is_loaded() {
    let mut firm = Firm::start(1, identity()).await;
    let o = firm.outlook_add(1, &person("Jane", "Tarnoff", "Acme", "jane@acme.com"));
    let c = firm.crm_add(1, &person("Cy", "Oh", "Globex", "cy@globex.example"));
    firm.sync(1).await;
    firm.sync(1).await;
    firm.restart_with_cache(0);
    let loads = |firm: &Firm| firm.hub.metrics().loads();

    let quiet = firm.sync(1).await;
    assert_eq!(quiet.counts, [synchub::engine::Counts::default(); 2], "{quiet:?}");
    assert_eq!(loads(&firm), (0, 1), "nothing new: the user is not loaded");

    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    firm.crm_edit(&c, Field::Department, Some("Tax"));
    let report = firm.sync(1).await;
    assert_eq!((report.counts[0].updated, report.counts[1].updated), (1, 1), "{report:?}");
    assert_eq!(loads(&firm), (1, 1), "changes: loaded once, with the pulls already made");
    firm.assert_mirrored(1);
    let jane = firm.crm_list(1).into_iter().find(|x| x.name.last == "Tarnoff").expect("Jane in the CRM");
    assert_eq!(jane.job_title, "Partner");

    // The echoes of that run's pushes are known to each side (their etags): the next run
    // finds nothing new and loads nothing.
    let quiet = firm.sync(1).await;
    assert_eq!(quiet.counts, [synchub::engine::Counts::default(); 2], "{quiet:?}");
    assert_eq!(loads(&firm), (1, 2), "echoes are not news");
    // An edit someone makes in the CRM is news.
    firm.crm_edit(&c, Field::Department, Some("Tax law"));
    let report = firm.sync(1).await;
    assert_eq!(report.counts[0].updated, 1, "{report:?}");
    assert_eq!(loads(&firm), (2, 2));

    // Kept in memory (the default budget): a run with changes loads nothing.
    firm.restart_with_cache(synchub::hub::DEFAULT_CACHE_MIB);
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Counsel"));
    firm.sync(1).await;
    let before = loads(&firm);
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Senior Counsel"));
    let report = firm.sync(1).await;
    assert_eq!(report.counts[1].updated, 1, "{report:?}");
    assert_eq!(loads(&firm), before, "the kept replica is used");
    firm.assert_mirrored(1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn c4_an_update_finds_the_crm_contact_by_email_without_reading_the_whole_list() {
    let firm = Firm::start(1, identity()).await;
    let mut jane = person("Jane", "Tarnoff", "Acme", "jane@acme.com");
    jane.set(Field::Notes, Some(FieldValue::Text("Met at the fair".into())));
    let o = firm.outlook_add(1, &jane);
    let cy = firm.outlook_add(1, &person("Cy", "Oh", "Globex", ""));
    firm.sync(1).await;
    // The CRM keeps something of Jane's firm record beyond the contract.
    let cid = firm.crm_list(1).into_iter().find(|x| x.name.last == "Tarnoff").expect("Jane in the CRM").contact_id;
    {
        let mut crm = firm.crm.state();
        let mut c = crm.contact(&cid).expect("firm record").clone();
        c.extra.insert("crm_only_rating".into(), serde_json::json!(5));
        let version = c.version;
        crm.update_contact(&cid, version, c).expect("CRM-side edit");
    }
    firm.sync(1).await;
    firm.sync(1).await;
    let jane_in_crm = |firm: &Firm| firm.crm_list(1).into_iter().find(|x| x.contact_id == cid).expect("Jane");
    let entry_before = jane_in_crm(&firm).entry.expect("entry");
    let listings = firm.crm.full_listings();

    // A firm field edited in Outlook: Jane's firm record is read by her e-mail address.
    firm.outlook_edit(1, &o, Field::JobTitle, Some("Partner"));
    let report = firm.sync(1).await;
    assert_eq!(report.counts[1].updated, 1, "{report:?}");
    assert_eq!(firm.crm.full_listings(), listings, "found by e-mail: the list is not read");
    let now = jane_in_crm(&firm);
    assert_eq!(now.job_title, "Partner");
    assert_eq!(now.extra.get("crm_only_rating"), Some(&serde_json::json!(5)), "what synchub does not map is kept");
    let entry = now.entry.expect("entry");
    assert_eq!(entry.version, entry_before.version, "the entry was not written: it had nothing to change");
    assert_eq!(entry.external_ref, entry_before.external_ref);
    firm.assert_mirrored(1);

    // A list-level field: the entry as last seen tells what to patch.
    firm.outlook_edit(1, &o, Field::Notes, Some("Call back in May"));
    firm.sync(1).await;
    assert_eq!(firm.crm.full_listings(), listings);
    let entry = jane_in_crm(&firm).entry.expect("entry");
    assert_eq!(entry.notes, "Call back in May");
    assert_eq!(entry.external_ref, entry_before.external_ref);
    firm.assert_mirrored(1);

    // Cy has no e-mail address: the list is read.
    firm.outlook_edit(1, &cy, Field::JobTitle, Some("Clerk"));
    let report = firm.sync(1).await;
    assert_eq!(report.counts[1].updated, 1, "{report:?}");
    assert_eq!(firm.crm.full_listings(), listings + 1);
    firm.assert_mirrored(1);
}
