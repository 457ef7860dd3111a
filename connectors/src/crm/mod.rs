//! The CRM connector (shared/CRM_API.md): its wire types with a strict parser, and the
//! HTTP client.

pub mod client;
pub mod wire;
