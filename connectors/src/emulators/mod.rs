//! Emulators of the services synchub talks to (feature `emulators`), for tests, benches,
//! the sandbox and `synchub emulators`. Each keeps real state behind its wire contract.
//! Today: the CRM's state machine ([`crm::CrmState`]); its HTTP face and the Graph
//! emulator come with issues 3 and 4.

pub mod crm;
