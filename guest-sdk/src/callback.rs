//! Callbacks: the configuration types and the typed [`Callback`] handle returned by
//! [`Context::create_callback`](crate::Context::create_callback). Awaiting a callback is the
//! one operation here that may suspend the execution (the guest never observes it).

use std::marker::PhantomData;
use std::time::Duration;

use serde::de::DeserializeOwned;

use crate::context::decode;
use crate::error::Error;
use crate::host;
use crate::step::{millis, RetryStrategy};
use crate::wit;

/// Timeouts of a callback. Both are optional; without them a callback waits until it is
/// completed (or the execution is stopped).
///
/// ```
/// use std::time::Duration;
/// use durable_sdk::CallbackConfig;
///
/// let config = CallbackConfig::default()
///     .timeout(Duration::from_secs(24 * 3600))
///     .heartbeat_timeout(Duration::from_secs(600));
/// # let _ = config;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CallbackConfig {
    /// The callback fails with `Callback.Timeout` this long after it was created.
    pub timeout: Option<Duration>,
    /// The callback fails with `Callback.HeartbeatTimeout` when no heartbeat or completion
    /// arrives for this long.
    pub heartbeat_timeout: Option<Duration>,
}

impl CallbackConfig {
    /// Sets the overall timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Sets the heartbeat timeout.
    pub fn heartbeat_timeout(mut self, heartbeat_timeout: Duration) -> Self {
        self.heartbeat_timeout = Some(heartbeat_timeout);
        self
    }

    pub(crate) fn to_wit(self) -> wit::CallbackOptions {
        wit::CallbackOptions {
            timeout_ms: self.timeout.map(millis),
            heartbeat_timeout_ms: self.heartbeat_timeout.map(millis),
        }
    }
}

/// Configuration of [`Context::wait_for_callback_with`](crate::Context::wait_for_callback_with):
/// the callback's timeouts and the retry strategy of the submitter step.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WaitForCallbackConfig {
    /// Timeouts of the inner callback.
    pub callback: CallbackConfig,
    /// Retry strategy of the submitter step (the host's default when not set).
    pub submitter_retry: RetryStrategy,
}

/// A created callback whose result is a `T` (deserialized from the JSON the external system
/// sends).
///
/// Hand [`id`](Self::id) to the external system (typically from inside a step), then call
/// [`result`](Self::result). The external system completes it with
/// `POST /v1/callbacks/{id}/succeed` (body: JSON) or `/fail`.
#[derive(Debug)]
#[must_use = "a callback does nothing until its result is awaited"]
pub struct Callback<T> {
    operation_id: String,
    callback_id: String,
    _result: PhantomData<fn() -> T>,
}

impl<T: DeserializeOwned> Callback<T> {
    pub(crate) fn new(operation_id: String, callback_id: String) -> Self {
        Self {
            operation_id,
            callback_id,
            _result: PhantomData,
        }
    }

    /// The callback id the external system uses to complete the callback.
    pub fn id(&self) -> &str {
        &self.callback_id
    }

    /// Waits for the callback's outcome: its JSON result deserialized into `T`, or the error
    /// it failed with (`Callback.Timeout`, `Callback.HeartbeatTimeout`, or the error an
    /// external system reported). Suspends the execution while the callback is pending.
    pub fn result(self) -> Result<T, Error> {
        match host::await_callback(&self.operation_id) {
            Ok(json) => decode(&json, "callback result"),
            Err(e) => Err(e.into()),
        }
    }
}
