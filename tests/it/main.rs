//! synchub's integration tests: one binary, one module per area (STYLE.md 11).

mod api;
mod calendar;
mod calendar_prop;
mod convergence;
mod crash;
mod durability;
mod firm;
mod sync;
mod sync_prop;
mod world;
