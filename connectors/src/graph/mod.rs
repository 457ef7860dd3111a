//! The Exchange side over Microsoft Graph v1.0: auth ([`auth`]), the wire types and their
//! parser ([`wire`]), the extended properties and PATCH rules ([`props`]), the client with
//! contact delta, JSON batching and writes ([`client`]), and the read-only calendar
//! ([`calendar`]).

pub mod auth;
pub mod calendar;
pub mod client;
pub mod props;
pub mod wire;

pub use auth::Credentials;
pub use client::{ContactChange, ContactRound, ContactWrite, GraphClient, GraphConfig};
