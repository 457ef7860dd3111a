//! synchub: keeps each user's Outlook contacts and CRM contact list mirror images, with the
//! user's Automerge document in between (DESIGN.md).
//!
//! The workflow of a run, and where it lives:
//! 1. [`engine`] loads the user's [`merge::UserReplica`] from the store, recovers pushes a
//!    crash left unconfirmed, and pulls each side's changes since its cursor;
//! 2. [`merge`] observes them (only differing fields, at each contact's base heads), resolves
//!    conflicts and deletes, and plans the pushes that make each side match the document;
//! 3. [`engine`] pushes in batches (intent first, outcome after, each a store transaction),
//!    reads back after any error, and advances cursors once observations are durable.
//!
//! [`connect`] makes the Graph and CRM clients the engine's sides; [`hub`] matches users,
//! runs them (one at a time each, on a schedule) and keeps their history; after each contact
//! run, [`calendar`] sends the user's flagged meetings one way to the CRM. [`model`] is the
//! canonical contact (FIELDS.md); `synchub-store` keeps bytes; `synchub-connectors` speaks
//! to the outside.

// No unsafe code but `alloc`'s two calls into the allocator's options.
#![deny(unsafe_code)]
#![deny(clippy::unwrap_used)]
#![cfg_attr(test, allow(clippy::unwrap_used))]

pub mod alloc;
pub mod api;
pub mod calendar;
pub mod connect;
pub mod engine;
pub mod hub;
pub mod loadgen;
pub mod merge;
pub mod model;
pub mod sandbox;
