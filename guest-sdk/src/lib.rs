//! `durable-sdk`: write durable functions in Rust and compile them to a WebAssembly
//! component for the durable-functions host.
//!
//! A durable function is an ordinary function of `(&mut Context, Input) -> Result<Output,
//! Error>`. Inside it, [`Context`] runs durable operations, each checkpointed by the host:
//!
//! - [`Context::step`]: run code once and checkpoint its result (with retries);
//! - [`Context::wait`]: pause for a duration without holding memory or CPU;
//! - [`Context::create_callback`] / [`Context::wait_for_callback`]: pause until an external
//!   system completes a callback over HTTP;
//! - [`Context::run_in_child_context`]: group operations into one checkpointed unit;
//! - [`Context::wait_for_condition`]: poll a check with a [`WaitStrategy`] until it is done,
//!   unloaded between checks;
//! - [`Context::map`] / [`Context::parallel`]: run a function over items, or a list of
//!   branches, each in a child context, with a concurrency bound and a
//!   [`CompletionConfig`]; the [`BatchResult`] lists each item's status and result or error;
//! - [`Context::now`], [`Context::random`], [`Context::uuid`]: a clock reading, a random
//!   number or a UUID, recorded once (as a step) and the same on every replay.
//! - [`Context::invoke`]: call another durable function of the same tenant and wait for
//!   its result, unloaded meanwhile.
//!
//! When the function resumes (after a wait, a callback, a retry delay or a host crash) the
//! host runs it again from the start and answers every operation already done with its
//! recorded outcome, so completed steps are not re-run. Hence the one rule: **the sequence of
//! durable operations must be the same on every run**. Put anything non-deterministic
//! (clocks, randomness, [`http`] calls) inside a step.
//!
//! Payloads (the input, step results, callback results, the output) are JSON, through
//! `serde`. A step's result is deserialized from its checkpoint even on the first run, so
//! the first run and every replay see the same value.
//!
//! # Example
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [lib]
//! crate-type = ["cdylib"]
//!
//! [dependencies]
//! durable-sdk = { path = "../guest-sdk" }
//! serde = { version = "1", features = ["derive"] }
//! ```
//!
//! `src/lib.rs`:
//!
//! ```no_run
//! use std::time::Duration;
//!
//! use durable_sdk::{Context, Error, RetryStrategy, StepConfig};
//! use serde::{Deserialize, Serialize};
//!
//! #[derive(Deserialize)]
//! struct Input {
//!     name: String,
//! }
//!
//! #[derive(Serialize)]
//! struct Output {
//!     greeting: String,
//! }
//!
//! fn handler(ctx: &mut Context, input: Input) -> Result<Output, Error> {
//!     ctx.logger().info(format!("greeting {}", input.name));
//!
//!     // Runs once; on replay its checkpointed result is returned.
//!     let greeting: String = ctx.step("greet", |step| {
//!         step.logger().info(format!("attempt {}", step.attempt()));
//!         Ok(format!("Hello, {}!", input.name))
//!     })?;
//!
//!     // The guest is unloaded for the duration and resumed afterwards.
//!     ctx.wait("pause", Duration::from_secs(5));
//!
//!     // A step that must not run twice for the same attempt, and is never retried.
//!     let config = StepConfig::default().at_most_once().retry(RetryStrategy::none());
//!     ctx.step_with("charge", config, |_| {
//!         if input.name.is_empty() {
//!             return Err(Error::new("ValidationError", "empty name"));
//!         }
//!         Ok(())
//!     })?;
//!
//!     Ok(Output { greeting })
//! }
//!
//! durable_sdk::export_handler!(handler);
//! ```
//!
//! Build it with `cargo build --release --target wasm32-wasip2`: the `.wasm` file under
//! `target/wasm32-wasip2/release/` is the component to upload.
//!
//! # Testing locally
//!
//! With the `testing` feature (as a dev-dependency: `durable-sdk = { path = "...",
//! features = ["testing"] }`), `durable_sdk::testing::Runner` runs a handler under
//! `cargo test`, in-process on the native target: no wasm, no server. It replays by the
//! host's own rules (the same `durable-journal` core), on a manual clock, so a day's wait
//! takes no real time:
//!
//! ```
//! # use std::time::Duration;
//! # use durable_sdk::{Context, Error};
//! # fn handler(ctx: &mut Context, input: serde_json::Value) -> Result<String, Error> {
//! #     let greeting: String = ctx.step("greet", |_| Ok(format!("Hello, {}!", input["name"].as_str().unwrap_or("?"))))?;
//! #     ctx.wait("pause", Duration::from_secs(5));
//! #     Ok(greeting)
//! # }
//! // In a #[test]:
//! let mut run = durable_sdk::testing::Runner::new(handler);
//! let status = run.invoke(serde_json::json!({"name": "Ada"}));
//! assert_eq!(status, durable_sdk::testing::Status::Succeeded("Hello, Ada!".into()));
//! assert_eq!(run.elapsed(), Duration::from_secs(5)); // on the manual clock
//! assert_eq!(run.shape()[1], ("StepStarted", Some("1"), Some("greet")));
//! ```
//!
//! The test reads the history (the host's event types), completes, fails or times out
//! callbacks, makes steps fail on purpose, answers [`http`] requests with a stand-in, and
//! every suspension point is replayed once more, so a handler that is not deterministic
//! fails its test naming the operation where it diverged. The `testing` module has the
//! full API and a complete example; `examples/*/src/tests.rs` use it.
//!
//! # Errors
//!
//! Every fallible operation returns [`Error`] (`error_type`, `error_message`, optional
//! `error_data`), which is also what the execution fails with when the handler returns it.
//! Error types produced by this SDK: `InvalidInput` (the event does not deserialize into the
//! handler's input type), `SerializationError` (a value does not round-trip through JSON),
//! `HttpError` ([`http`]). The host adds its own, such as `PayloadTooLarge`,
//! `Callback.Timeout`, `Callback.HeartbeatTimeout` and `StepInterrupted`.

#![warn(missing_docs)]

// Lets the generated bindings name this crate as `durable_sdk` from inside it as well as from
// the user crates that expand `export_handler!`.
extern crate self as durable_sdk;

mod batch;
mod callback;
mod condition;
mod context;
mod deterministic;
mod error;
mod host;
pub mod http;
mod invoke;
mod log;
mod step;
#[cfg(all(feature = "testing", not(target_arch = "wasm32")))]
pub mod testing;

pub use batch::{
    BatchItem, BatchItemStatus, BatchResult, Branch, CompletionConfig, CompletionReason, MapConfig,
    ParallelConfig, INVALID_CONFIG,
};
pub use callback::{Callback, CallbackConfig, WaitForCallbackConfig};
pub use condition::{WaitStrategy, MAX_ATTEMPTS_EXCEEDED};
pub use context::{Context, Name};
pub use deterministic::{NOW_STEP, RANDOM_STEP, UUID_STEP};
pub use error::{Error, ResultExt};
pub use invoke::InvokeConfig;
pub use log::Logger;
pub use step::{Jitter, RetryStrategy, StepConfig, StepContext, StepSemantics};

/// Generated bindings of the `durable:function` WIT package (world `durable-function`).
/// Not part of the API: used by [`export_handler!`].
#[doc(hidden)]
#[allow(missing_docs, clippy::all)]
pub mod __bindings {
    wit_bindgen::generate!({
        world: "durable-function",
        path: "../wit",
        // The export macro is expanded in user crates, which depend on this crate only.
        pub_export_macro: true,
        export_macro_name: "__export",
        default_bindings_module: "durable_sdk::__bindings",
        runtime_path: "durable_sdk::__bindings::__rt",
    });

    pub use wit_bindgen::rt as __rt;
}

use __bindings::durable::function::types as wit;

/// Exports a handler function as the component's `handle` export.
///
/// The handler is any `fn(&mut Context, I) -> Result<O, Error>` where `I: DeserializeOwned`
/// and `O: Serialize`. The event (JSON text) is deserialized into `I`; an event that does not
/// fit fails the execution with error type `InvalidInput` (an empty event counts as `null`,
/// so `I = ()` or `serde::de::IgnoredAny` accept "no input"). The output is serialized to
/// JSON; an error fails the execution with that error.
///
/// Use it once per crate, at module level:
///
/// ```no_run
/// fn handler(_ctx: &mut durable_sdk::Context, name: String) -> Result<String, durable_sdk::Error> {
///     Ok(format!("Hello, {name}!"))
/// }
/// durable_sdk::export_handler!(handler);
/// ```
#[macro_export]
macro_rules! export_handler {
    ($handler:expr) => {
        const _: () = {
            struct DurableHandler;

            impl $crate::__bindings::Guest for DurableHandler {
                fn handle(
                    event: $crate::__private::String,
                ) -> ::core::result::Result<
                    $crate::__private::String,
                    $crate::__bindings::ErrorObject,
                > {
                    $crate::__private::handle(event, $handler)
                }
            }

    $crate::__bindings::__export!(DurableHandler with_types_in $crate::__bindings);
        };
    };
}

/// Support code for [`export_handler!`]. Not part of the API.
#[doc(hidden)]
pub mod __private {
    use serde::de::DeserializeOwned;
    use serde::Serialize;

    use crate::error::{INVALID_INPUT, SERIALIZATION_ERROR};
    use crate::{Context, Error};

    pub use std::string::String;

    /// Runs a handler on an event: deserialize, call, serialize.
    pub fn handle<I, O, F>(event: String, handler: F) -> Result<String, crate::wit::ErrorObject>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: FnOnce(&mut Context, I) -> Result<O, Error>,
    {
        run(&event, handler).map_err(Error::into_wit)
    }

    pub(crate) fn run<I, O, F>(event: &str, handler: F) -> Result<String, Error>
    where
        I: DeserializeOwned,
        O: Serialize,
        F: FnOnce(&mut Context, I) -> Result<O, Error>,
    {
        let event = if event.trim().is_empty() {
            "null"
        } else {
            event
        };
        let input: I = serde_json::from_str(event).map_err(|e| {
            Error::new(
                INVALID_INPUT,
                format!("the input does not match what the function expects: {e}"),
            )
        })?;
        let output = handler(&mut Context::root(), input)?;
        serde_json::to_string(&output).map_err(|e| {
            Error::new(
                SERIALIZATION_ERROR,
                format!("could not serialize the function's output: {e}"),
            )
        })
    }
}
