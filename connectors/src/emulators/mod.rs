//! Emulators of the services synchub talks to (feature `emulators`), for tests, benches,
//! the sandbox and `synchub emulators`. Each keeps real state behind its wire contract and
//! can inject faults: the CRM ([`crm`]) and Microsoft Graph ([`graph`]).

pub mod crm;
pub mod graph;
