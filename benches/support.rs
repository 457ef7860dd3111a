//! Shared set-up for the benches: a user with N sample contacts, synced to both sides.
#![allow(dead_code)] // each bench uses part of the set-up

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use synchub::engine::sample;
use synchub::merge::{materialise, ItemChange, Merge, Observed, PushKind, PushOutcome, RunCtx, SideItem, UserReplica};
use synchub::model::{ContactFields, Field, FieldValue, ItemId, Side};

pub fn now() -> DateTime<Utc> {
    DateTime::from_timestamp(1_764_000_000, 0).unwrap_or_default()
}

pub fn item_id(side: Side, i: usize) -> ItemId {
    ItemId::from_trusted(format!("{}-{i:06}", side.name()))
}

/// One side's initial listing of `n` sample contacts.
pub fn listing(side: Side, n: usize) -> Vec<Observed> {
    (0..n)
        .map(|i| Observed {
            item: item_id(side, i),
            change: ItemChange::Upsert(SideItem {
                fields: sample::contact(i),
                modified: now(),
                etag: None,
                stamp: None,
            }),
        })
        .collect()
}

/// A user whose `n` contacts came from Exchange and were pushed to the CRM.
pub fn synced(n: usize) -> UserReplica {
    let mut replica = UserReplica::new();
    let ctx = RunCtx::all_fields(now());
    let mut merge = Merge::new(&mut replica, ctx);
    merge.observe(Side::Exchange, listing(Side::Exchange, n)).expect("observe");
    merge.resolve().expect("resolve");
    let touched: BTreeSet<_> = merge.touched().clone();
    drop(merge);
    for side in Side::BOTH {
        let ops = materialise::plan(&mut replica, side, ctx.fields[side.index()], touched.iter().copied());
        for (i, op) in ops.iter().enumerate() {
            let outcome = match op.kind {
                PushKind::Create => PushOutcome::Created { item: item_id(side, i), etag: Some("1".into()) },
                _ => PushOutcome::Updated { etag: Some("2".into()) },
            };
            materialise::record(&mut replica, op, outcome);
        }
    }
    replica
}

/// `fields_per_side` changed fields on each side, two per contact, on distinct contacts.
pub fn changes(replica: &UserReplica, fields_per_side: usize) -> [Vec<Observed>; 2] {
    changes_round(replica, fields_per_side, 0)
}

/// Like [`changes`], on other contacts and with other values in each `round`.
pub fn changes_round(replica: &UserReplica, fields_per_side: usize, round: usize) -> [Vec<Observed>; 2] {
    Side::BOTH.map(|side| {
        let mut entries: Vec<_> = replica.side(side).entries.iter().collect();
        entries.sort_by_key(|(h, _)| **h);
        let n = entries.len().max(1);
        let offset = (round * fields_per_side + if side == Side::Exchange { 0 } else { fields_per_side / 2 }) % n;
        entries
            .iter()
            .skip(offset)
            .take(fields_per_side / 2)
            .map(|(_, e)| {
                let mut fields: ContactFields = e.shadow.fields();
                fields.set(Field::JobTitle, Some(FieldValue::Text(format!("Counsel ({side} {round})"))));
                fields.set(Field::BusinessCity, Some(FieldValue::Text(format!("Boston ({side} {round})"))));
                Observed {
                    item: e.item.clone().expect("linked"),
                    change: ItemChange::Upsert(SideItem { fields, modified: now(), etag: None, stamp: None }),
                }
            })
            .collect()
    })
}
