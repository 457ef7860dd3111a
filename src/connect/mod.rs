//! The real sides: [`graph::GraphSide`] (a mailbox's default Contacts folder over Microsoft
//! Graph) and [`crm::CrmSide`] (a user's CRM contact list), each a
//! [`crate::engine::ContactReplica`] mapping its wire format through FIELDS.md. The engine is
//! synchronous; these wait on the tokio runtime they are given, so a run is started from a
//! blocking task.

pub mod crm;
pub mod graph;
