//! The durable [`Context`]: steps (with the attempt loop), waits, callbacks, child contexts
//! and wait-for-callback, each a short sequence of host imports. Owns the parent id that
//! every operation inside a child context passes to the host. Holds no journal: replay is
//! the host's job; this module only follows what `step-start` / `context-start` answer.

use std::borrow::Cow;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::callback::{Callback, CallbackConfig, WaitForCallbackConfig};
use crate::condition::{unit_random, Decision, WaitStrategy};
use crate::error::{Error, SERIALIZATION_ERROR};
use crate::host;
use crate::log::Logger;
use crate::step::{millis, StepConfig, StepContext};
use crate::wit::{ConditionState, ContextKind, ContextState, StepState};

/// The name of the submitter step inside a wait-for-callback context.
const SUBMITTER_STEP: &str = "submitter";

/// An optional operation name. Names are recorded in history and compared on replay.
///
/// Anything string-like converts into a name (`"validate"`, `format!("poll-{n}")`,
/// `&some_string`); `None` means no name.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Name<'a>(Option<Cow<'a, str>>);

impl Name<'_> {
    pub(crate) fn as_deref(&self) -> Option<&str> {
        self.0.as_deref()
    }
}

impl<'a> From<&'a str> for Name<'a> {
    fn from(name: &'a str) -> Self {
        Self(Some(Cow::Borrowed(name)))
    }
}

impl<'a> From<&'a String> for Name<'a> {
    fn from(name: &'a String) -> Self {
        Self(Some(Cow::Borrowed(name.as_str())))
    }
}

impl From<String> for Name<'static> {
    fn from(name: String) -> Self {
        Self(Some(Cow::Owned(name)))
    }
}

impl<'a> From<Option<&'a str>> for Name<'a> {
    fn from(name: Option<&'a str>) -> Self {
        Self(name.map(Cow::Borrowed))
    }
}

/// The handle a durable function uses to run durable operations.
///
/// The handler receives the top-level context; [`run_in_child_context`](Self::run_in_child_context)
/// hands its body a child context. Operations must be called in the same order on every run:
/// the host identifies them by position and fails the execution with
/// `NonDeterministicExecution` when a replay diverges. Anything non-deterministic (clocks,
/// randomness, HTTP, reading the environment) belongs inside a step.
#[derive(Debug)]
pub struct Context {
    /// The id of the child context this is, `None` at the top level.
    parent: Option<String>,
}

impl Context {
    pub(crate) fn root() -> Self {
        Self { parent: None }
    }

    /// The context of a child (a branch of a map or parallel, ...) with this id.
    pub(crate) fn child(id: String) -> Self {
        Self { parent: Some(id) }
    }

    pub(crate) fn parent(&self) -> Option<&str> {
        self.parent.as_deref()
    }

    /// The operation id of this child context, `None` for the top-level context.
    pub fn id(&self) -> Option<&str> {
        self.parent()
    }

    /// A replay-aware logger: each line is recorded once, not again when replayed.
    pub fn logger(&self) -> Logger {
        Logger::new()
    }

    /// Runs `body` as a step with the default [`StepConfig`] (at-least-once per retry, the
    /// host's default retry policy) and checkpoints its result.
    ///
    /// On replay the recorded result (or failure) is returned and `body` does not run. The
    /// result must round-trip through JSON: the value returned on the first run is the one
    /// deserialized from the checkpoint, exactly as on replay.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// let total: u32 = ctx.step("add", |_| Ok(1 + 2))?;
    /// let unnamed: String = ctx.step(None, |s| Ok(format!("attempt {}", s.attempt())))?;
    /// # let _ = (total, unnamed); Ok(()) }
    /// ```
    pub fn step<'n, T, F>(&mut self, name: impl Into<Name<'n>>, body: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut StepContext) -> Result<T, Error>,
    {
        self.step_with(name, StepConfig::default(), body)
    }

    /// Runs `body` as a step with the given semantics and retry strategy.
    ///
    /// The attempt loop: the host says whether to run the body (and which attempt this is)
    /// or returns the recorded outcome. A failed attempt is reported to the host, which
    /// applies the retry policy: it either suspends the execution for the retry delay (the
    /// next attempt happens after a replay), asks for another attempt at once, or records
    /// the failure as final, in which case this returns the body's error.
    pub fn step_with<'n, T, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        config: StepConfig,
        mut body: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&mut StepContext) -> Result<T, Error>,
    {
        let name = name.into();
        let (id, state) = host::step_start(self.parent(), name.as_deref(), &config.to_wit());
        let mut attempt = match state {
            StepState::Succeeded(json) => return decode(&json, "step result"),
            StepState::Failed(e) => return Err(e.into()),
            StepState::Run(attempt) => attempt,
        };
        loop {
            let mut step = StepContext {
                operation_id: id.clone(),
                attempt,
            };
            match body(&mut step).and_then(|value| round_trip(&value, "step result")) {
                Ok((json, value)) => {
                    return match host::step_succeed(&id, &json) {
                        Ok(()) => Ok(value),
                        // The host recorded a failure instead (e.g. `PayloadTooLarge`).
                        Err(e) => Err(e.into()),
                    };
                }
                Err(error) => match host::step_fail(&id, &error.to_wit()) {
                    Some(next) => attempt = next,
                    None => return Err(error),
                },
            }
        }
    }

    /// Pauses the execution for `duration` (rounded up to whole milliseconds). The guest is
    /// unloaded while it waits; a zero wait is recorded and returns at once.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) {
    /// use std::time::Duration;
    /// ctx.wait("cool-down", Duration::from_secs(60));
    /// ctx.wait(None, Duration::from_secs(1));
    /// # }
    /// ```
    pub fn wait<'n>(&mut self, name: impl Into<Name<'n>>, duration: Duration) {
        let name = name.into();
        host::wait(self.parent(), name.as_deref(), millis(duration));
    }

    /// Creates a callback whose result will be deserialized into `T`. The callback id is
    /// durable when this returns; hand it to an external system (from a step), then await
    /// [`Callback::result`].
    ///
    /// Prefer [`wait_for_callback`](Self::wait_for_callback), which runs the hand-off as a
    /// step for you.
    pub fn create_callback<'n, T: DeserializeOwned>(
        &mut self,
        name: impl Into<Name<'n>>,
        config: CallbackConfig,
    ) -> Result<Callback<T>, Error> {
        let name = name.into();
        let (operation_id, callback_id) =
            host::create_callback(self.parent(), name.as_deref(), config.to_wit());
        Ok(Callback::new(operation_id, callback_id))
    }

    /// Creates a callback, runs `submitter` (as a step, with the host's default retry
    /// policy) to hand its id to an external system, and waits for the result.
    ///
    /// Composed like AWS's `waitForCallback`: a child context of kind `wait-for-callback`
    /// (named `name`) containing an unnamed callback and a step named `submitter`. On replay
    /// a completed wait-for-callback returns its recorded result without running anything
    /// inside. A failed submitter, a failed callback or a timeout fails the operation with
    /// that error.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use durable_sdk::{http, CallbackConfig};
    /// let approved: bool = ctx.wait_for_callback("approval", CallbackConfig::default(), |id, _| {
    ///     http::post_json("https://approvals.example.com/requests", &serde_json::json!({"callback_id": id}))?;
    ///     Ok(())
    /// })?;
    /// # let _ = approved; Ok(()) }
    /// ```
    pub fn wait_for_callback<'n, T, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        config: CallbackConfig,
        submitter: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&str, &mut StepContext) -> Result<(), Error>,
    {
        let config = WaitForCallbackConfig {
            callback: config,
            ..WaitForCallbackConfig::default()
        };
        self.wait_for_callback_with(name, config, submitter)
    }

    /// [`wait_for_callback`](Self::wait_for_callback) with a retry strategy for the
    /// submitter step.
    pub fn wait_for_callback_with<'n, T, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        config: WaitForCallbackConfig,
        mut submitter: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnMut(&str, &mut StepContext) -> Result<(), Error>,
    {
        let WaitForCallbackConfig {
            callback,
            submitter_retry,
        } = config;
        self.run_context(name.into(), ContextKind::WaitForCallback, |ctx| {
            let callback = ctx.create_callback::<T>(None, callback)?;
            let callback_id = callback.id().to_string();
            ctx.step_with(
                SUBMITTER_STEP,
                StepConfig::default().retry(submitter_retry),
                |step| submitter(&callback_id, step),
            )?;
            callback.result()
        })
    }

    /// Polls: runs `check` on the state until `strategy` says the state is done, and returns
    /// the final state. The first check gets `initial_state`; each later one gets the state
    /// the one before returned. Between checks the execution is suspended for the delay the
    /// strategy computes (the guest is unloaded), so a poll may last hours at no cost.
    ///
    /// One operation in history (sub type `WaitForCondition`): each check is a
    /// `StepStarted` / `StepSucceeded` pair carrying the new state (and, when another check
    /// follows, `next_attempt_delay_ms`). On replay a finished condition returns its final
    /// state without running `check`. An error from `check` fails the operation at once
    /// (checks are not retried: the next poll is the retry); so does running out of
    /// `max_attempts` (`WaitForCondition.MaxAttemptsExceeded`). Like a step body, `check`
    /// must not run durable operations. The state round-trips through JSON (serde) at
    /// every check, so a custom `Serialize` / `Deserialize` is the state's serdes.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// use std::time::Duration;
    /// use durable_sdk::{http, Error, WaitStrategy};
    /// let strategy = WaitStrategy::until(|status: &String| status == "READY")
    ///     .initial_delay(Duration::from_secs(2))
    ///     .max_attempts(20);
    /// let status = ctx.wait_for_condition("ready", String::new(), |_, _| {
    ///     let response = http::get("https://jobs.example.com/42/status")?;
    ///     String::from_utf8(response.body).map_err(|e| Error::from_display("BadStatus", e))
    /// }, strategy)?;
    /// # let _ = status; Ok(()) }
    /// ```
    pub fn wait_for_condition<'n, S, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        initial_state: S,
        mut check: F,
        strategy: WaitStrategy<S>,
    ) -> Result<S, Error>
    where
        S: Serialize + DeserializeOwned,
        F: FnMut(S, &mut StepContext) -> Result<S, Error>,
    {
        let name = name.into();
        let (id, state) = host::condition_start(self.parent(), name.as_deref());
        let (mut attempt, recorded) = match state {
            ConditionState::Succeeded(json) => return decode(&json, "condition state"),
            ConditionState::Failed(e) => return Err(e.into()),
            ConditionState::Check(c) => (c.attempt, c.state),
        };
        let mut state = match recorded {
            Some(json) => decode(&json, "condition state"),
            None => round_trip(&initial_state, "condition state").map(|(_, s)| s),
        };
        loop {
            let mut step = StepContext {
                operation_id: id.clone(),
                attempt,
            };
            let checked = state
                .and_then(|s| check(s, &mut step))
                .and_then(|s| round_trip(&s, "condition state"));
            let (json, next) = match checked {
                Ok(v) => v,
                Err(error) => {
                    host::condition_fail(&id, &error.to_wit());
                    return Err(error);
                }
            };
            match strategy.decide(&next, attempt, unit_random()) {
                Decision::Stop => {
                    return host::condition_succeed(&id, &json)
                        .map(|()| next)
                        .map_err(Into::into);
                }
                Decision::GiveUp(error) => {
                    host::condition_fail(&id, &error.to_wit());
                    return Err(error);
                }
                // Suspends unless the delay is zero: then the next check runs now.
                Decision::Again(ms) => match host::condition_continue(&id, &json, ms) {
                    Ok(n) => {
                        attempt = n;
                        state = Ok(next);
                    }
                    Err(e) => return Err(e.into()),
                },
            }
        }
    }

    /// Runs `body` in a child context: a group of operations checkpointed as one. Operations
    /// inside carry the child's id as their parent. On replay a completed child context
    /// returns its recorded result (or failure) without running `body`.
    ///
    /// ```no_run
    /// # fn demo(ctx: &mut durable_sdk::Context) -> Result<(), durable_sdk::Error> {
    /// let sum: u32 = ctx.run_in_child_context("pair", |child| {
    ///     let a: u32 = child.step("a", |_| Ok(1))?;
    ///     let b: u32 = child.step("b", |_| Ok(2))?;
    ///     Ok(a + b)
    /// })?;
    /// # let _ = sum; Ok(()) }
    /// ```
    pub fn run_in_child_context<'n, T, F>(
        &mut self,
        name: impl Into<Name<'n>>,
        body: F,
    ) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&mut Context) -> Result<T, Error>,
    {
        self.run_context(name.into(), ContextKind::RunInChildContext, body)
    }

    /// context-start; then either the recorded outcome, or the body in a child context
    /// followed by context-succeed / context-fail.
    fn run_context<T, F>(&mut self, name: Name<'_>, kind: ContextKind, body: F) -> Result<T, Error>
    where
        T: Serialize + DeserializeOwned,
        F: FnOnce(&mut Context) -> Result<T, Error>,
    {
        let (id, state) = host::context_start(self.parent(), name.as_deref(), kind);
        match state {
            ContextState::Succeeded(json) => decode(&json, "child context result"),
            ContextState::Failed(e) => Err(e.into()),
            ContextState::Run => {
                let mut child = Context {
                    parent: Some(id.clone()),
                };
                match body(&mut child).and_then(|v| round_trip(&v, "child context result")) {
                    Ok((json, value)) => match host::context_succeed(&id, &json) {
                        Ok(()) => Ok(value),
                        Err(e) => Err(e.into()),
                    },
                    Err(error) => {
                        host::context_fail(&id, &error.to_wit());
                        Err(error)
                    }
                }
            }
        }
    }
}

/// Deserializes a recorded JSON value.
pub(crate) fn decode<T: DeserializeOwned>(json: &str, what: &str) -> Result<T, Error> {
    serde_json::from_str(json).map_err(|e| {
        Error::new(
            SERIALIZATION_ERROR,
            format!("could not deserialize the {what} {}: {e}", excerpt(json)),
        )
    })
}

/// Serializes a value to JSON and reads it back, so that the first run sees exactly what a
/// replay will see.
pub(crate) fn round_trip<T: Serialize + DeserializeOwned>(
    value: &T,
    what: &str,
) -> Result<(String, T), Error> {
    let json = serde_json::to_string(value).map_err(|e| {
        Error::new(
            SERIALIZATION_ERROR,
            format!("could not serialize the {what}: {e}"),
        )
    })?;
    let value = decode(&json, what)?;
    Ok((json, value))
}

/// The start of a JSON text, for error messages.
fn excerpt(json: &str) -> String {
    const MAX: usize = 80;
    match json.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}...", &json[..cut]),
        None => json.to_string(),
    }
}
