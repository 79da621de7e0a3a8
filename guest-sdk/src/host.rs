//! The one seam between the SDK's operations and the host: every durable operation, log
//! line, clock reading, random draw and outbound HTTP request of the SDK goes through
//! `crate::host`. On wasm (and natively without the `testing` feature) these are the
//! `durable:function/context` imports and WASI, as generated; natively with `testing` the
//! calls the local test runner implements go to it (`testing::imports`), in-process.
//!
//! The functions keep the WIT signatures, so operation code calls `host::step_start(..)`
//! alike on both targets. An import added to the WIT later is re-exported here by the
//! glob below on every target; until the runner implements it (an explicit `use` of the
//! same name below shadows the glob), calling it under the runner panics with the
//! bindings' "unreachable" on the native target.

#[cfg(not(all(feature = "testing", not(target_arch = "wasm32"))))]
mod dispatch {
    pub(crate) use crate::__bindings::durable::function::context::*;

    /// Wall-clock time in milliseconds since the Unix epoch (WASI wall clock).
    pub(crate) fn wall_clock_ms() -> u64 {
        let now = wasip2::clocks::wall_clock::now();
        now.seconds * 1000 + u64::from(now.nanoseconds / 1_000_000)
    }

    /// 64 random bits (WASI random).
    pub(crate) fn random_u64() -> u64 {
        wasip2::random::random::get_random_u64()
    }

    /// An answer to an HTTP request from somewhere else than `wasi:http`: never here.
    pub(crate) fn http_send(
        _request: &crate::http::Request,
    ) -> Option<Result<crate::http::Response, crate::Error>> {
        None
    }
}

#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
mod dispatch {
    // The runner implements the imports listed below: all of the WIT's. One the WIT gains
    // later stays the generated one (unreachable natively) until the runner has it.
    #[allow(unused_imports)]
    pub(crate) use crate::__bindings::durable::function::context::*;
    pub(crate) use crate::testing::imports::{
        await_callback, batch_finish, batch_start, branch_start, condition_continue,
        condition_fail, condition_start, condition_succeed, context_fail, context_start,
        context_succeed, create_callback, http_send, invoke, log, random_u64, step_fail,
        step_start, step_succeed, wait, wall_clock_ms,
    };
}

pub(crate) use dispatch::*;
