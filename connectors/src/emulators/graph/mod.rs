//! The Microsoft Graph emulator: real per-mailbox state ([`state`]) behind Graph's wire
//! format ([`server`]), with fault injection.

pub mod server;
pub mod state;

pub use server::{Fault, GraphEmulator, Stats};
pub use state::{GraphError, GraphState};
