//! The CRM emulator (shared/CRM_API.md).

mod state;

pub use state::{CrmError, CrmState, EntryPatch};
