//! The CRM's wire contract (shared/CRM_API.md). Today: its types and a strict parser for
//! everything the CRM sends; the HTTP client and the emulator follow (issue 4).

pub mod wire;
