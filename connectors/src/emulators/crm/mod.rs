//! The CRM emulator (shared/CRM_API.md).

mod state;

pub use state::{AppointmentFilter, CrmError, CrmState, EntryPatch};
