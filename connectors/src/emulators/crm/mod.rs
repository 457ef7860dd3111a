//! The CRM emulator (shared/CRM_API.md).

mod server;
mod state;

pub use server::{CrmEmulator, Fault};
pub use state::{AppointmentFilter, CrmError, CrmState, EntryPatch};
