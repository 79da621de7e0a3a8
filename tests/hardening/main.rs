//! Hardening regression tests: one test per finding of the hostile and fault testing
//! (issue 8), named after the finding it pins (`finding_NN_...`). Each drives the real
//! server on a loopback port over a real data directory; floods and faults are bounded in
//! count and time.
//!
//! One test binary, one module per area, so the suites share a build.

#[path = "../support/mod.rs"]
mod support;

mod api;
mod artifacts;
mod limits;
mod sandbox;
mod stop_memory;
mod store;
