//! The local test runner (feature `testing`, native target only): run a durable handler
//! under `cargo test`, in-process, with no wasm and no server.
//!
//! [`Runner`] plays the host's part: an in-memory journal, a manual clock, callbacks the
//! test completes. Its replay rules are the host's own: every operation asks the same
//! `durable_journal::Activation` the host asks, and the runner performs the effects as the
//! host's `host_api::context` and `runtime` do (history events, callback records,
//! `InvocationCompleted` and the terminal event). Only the clock differs: waits and retry
//! delays are skipped, not slept.
//!
//! What a test controls: the input ([`Runner::invoke`]), callbacks
//! ([`Runner::succeed_callback`], [`Runner::fail_callback`], [`Runner::heartbeat_callback`],
//! timeouts through [`Runner::advance`]), failures ([`Runner::fail_step`],
//! [`Runner::fail_step_times`]), a host crash in the middle of a step
//! ([`Runner::crash_in_step`]: everything recorded before it is kept, as if on disk),
//! outbound HTTP ([`Runner::on_http`]), the clock's start and the random seed. What it
//! reads: [`Runner::history`] / [`Runner::shape`] (the host's event types),
//! [`Runner::output`], [`Runner::logs`], [`Runner::callback_ids`], [`Runner::elapsed`]
//! (virtual time). Not simulated: execution timeouts, stop requests, redrives, payload
//! limits other than the host's defaults.
//!
//! Every `durable:function/context` import is answered here, map and parallel included
//! ([`Context::map`](crate::Context::map), [`Context::parallel`](crate::Context::parallel)):
//! the journal's `batch_start` / `branch_start` / `batch_finish` decide which branches run
//! and when the completion policy is met, as on the host, and the history holds the host's
//! events (a context of sub type `Map` / `Parallel`, one `MapIteration` / `ParallelBranch`
//! per item or branch, operations inside it under the branch's id `<batch>.<index + 1>`).
//! The runner runs the branches one after another in the one instance (the host runs each
//! on an instance of its own, at once; the protocol lets either choose), so its history is
//! the host's at `max_concurrency` 1; with more, the host's branches' events interleave.
//! A wait inside a branch unloads the execution and its time is skipped like any other.
//!
//! An `invoke` (`Context::invoke`) reaches the test's stand-in for that function
//! ([`Runner::on_invoke`]). An import the WIT gains later panics natively with the
//! bindings' "unreachable" until it is added to `imports.rs` and to the list in `host.rs`.
//!
//! A suspension ends the activation as on the host: the host call never returns. Here it
//! unwinds the handler (`std::panic::resume_unwind` with a private payload, which the runner
//! catches; any other panic is the test's and is resumed as is), so the handler's stack is
//! dropped like an unloaded instance, on the test's own thread. (A thread per activation,
//! blocked for ever on suspension, would leak a thread and its stack per suspension and
//! could not be dropped.) Then the runner moves its clock to the next timer and activates
//! the handler again from the start, replaying what the journal holds.
//!
//! # Determinism checks
//!
//! On by default ([`Runner::check_determinism`]). Two kinds of divergence are caught:
//! - a replay that calls another operation than the journal holds at a position (the
//!   host's own check: the execution fails with `NonDeterministicExecution`);
//! - after every activation (each suspension point, and the end) the runner replays the
//!   handler once more over the history as it stands, at the same instant: it must visit
//!   only recorded operations, record nothing, call as many operations in each context it
//!   runs as the first run did (so a skipped operation is seen too; a map's or parallel's
//!   branches count as operations of it), and end the same way
//!   (suspended at the same operation for the same reason, or with the same output or
//!   error). A handler whose
//!   path or output depends on something not recorded (a global counter, the real clock, a
//!   random number outside a step) is caught there even when no later activation would
//!   have noticed.
//!
//! A map or parallel over another number of items on replay is caught when that changes
//! what the replay records or how it ends: fewer items than a finished map recorded give
//! another outcome (seen when the output or the path depends on it); a replay that would
//! finish a map the first run was still inside would record its end. Like the host, the runner does not see a finished map replayed over more items:
//! the count is not journaled (the outcome is rebuilt from the branches' events).
//!
//! A divergence of either kind is reported as a [`NonDeterminism`] naming the activation,
//! the operation and what differed: [`Runner::invoke`] panics with it,
//! [`Runner::try_invoke`] returns it.
//! The check replays run the handler's code outside steps once more per activation (step
//! bodies never run in a check replay). `println!` is not recorded here: it reaches the
//! test's output on every run; log with [`Context::logger`](crate::Context::logger) to
//! see lines once ([`Runner::logs`]).
//!
//! # Example
//!
//! In the guest crate's `Cargo.toml`:
//!
//! ```toml
//! [dev-dependencies]
//! durable-sdk = { path = "../guest-sdk", features = ["testing"] }
//! ```
//!
//! and a test beside the handler:
//!
//! ```
//! use std::time::Duration;
//!
//! use durable_sdk::testing::{Runner, Status};
//! use durable_sdk::{CallbackConfig, Context, Error, RetryStrategy, StepConfig};
//! use serde_json::json;
//!
//! fn handler(ctx: &mut Context, name: String) -> Result<String, Error> {
//!     let greeting: String = ctx.step_with(
//!         "greet",
//!         StepConfig::default().retry(RetryStrategy::fixed(3, Duration::from_secs(30))),
//!         |_| Ok(format!("Hello, {name}!")),
//!     )?;
//!     ctx.wait("pause", Duration::from_secs(3600));
//!     let approved: bool =
//!         ctx.wait_for_callback("approval", CallbackConfig::default(), |_id, _step| Ok(()))?;
//!     Ok(if approved { greeting } else { "denied".into() })
//! }
//!
//! let mut run = Runner::new(handler);
//! // The first attempt of "greet" fails; its retry 30 s later succeeds.
//! run.fail_step_times("greet", 1, Error::new("Flaky", "injected"));
//! let started = std::time::Instant::now();
//!
//! // Runs until it blocks on the callback: the hour's wait and the retry delay are skipped.
//! let status = run.invoke("Ada");
//! assert!(matches!(status, Status::Waiting { .. }));
//! assert!(started.elapsed() < Duration::from_secs(5));
//! assert!(run.elapsed() >= Duration::from_secs(3630));
//!
//! let id = run.callback_ids().remove(0);
//! assert_eq!(run.succeed_callback(&id, true), Status::Succeeded(json!("Hello, Ada!")));
//!
//! // The history holds the host's event types.
//! let types: Vec<&str> = run.history().iter().map(|e| e.kind.event_type()).collect();
//! assert_eq!(types.iter().filter(|t| **t == "StepFailed").count(), 1);
//! assert_eq!(run.shape()[1], ("StepStarted", Some("1"), Some("greet")));
//! ```

pub(crate) mod imports;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use durable_journal::{
    error_types, Activation, ErrorObject, Journal, Limits, Resolution, SuspendReason,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

pub use durable_journal::{Event, EventKind, OpRef};
pub use imports::LogLine;

use crate::http::Response;
use crate::{Context, Error};
use imports::{Driver, Exec, Injection, Stop, Unwind};

/// Where the manual clock starts unless [`Runner::start_time`] says otherwise:
/// 2026-01-01T00:00:00Z.
pub const DEFAULT_START_MS: u64 = 1_767_225_600_000;

/// An execution that keeps activating past this many is taken for a loop (a handler that
/// never ends and never blocks on a callback) and the runner panics.
pub const MAX_ACTIVATIONS: u32 = 10_000;

/// How the execution stands when the runner hands control back to the test.
#[derive(Debug, Clone, PartialEq)]
pub enum Status {
    /// It ended with this output.
    Succeeded(Value),
    /// It ended with this error.
    Failed(Error),
    /// It is suspended until a callback is completed ([`Runner::succeed_callback`],
    /// [`Runner::fail_callback`]) or times out ([`Runner::advance`]): its pending callbacks.
    Waiting {
        /// The ids of its pending callbacks, in creation order.
        callbacks: Vec<String>,
    },
}

/// A handler that did not do the same on replay as on its first run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NonDeterminism {
    /// The activation (1-based) that diverged, or after which the check replay diverged.
    pub activation: u32,
    /// The operation id where it diverged, when known.
    pub operation: Option<String>,
    /// What differed.
    pub message: String,
}

impl fmt::Display for NonDeterminism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "non-deterministic handler (activation {}",
            self.activation
        )?;
        if let Some(op) = &self.operation {
            write!(f, ", operation {op}")?;
        }
        write!(f, "): {}", self.message)
    }
}

impl std::error::Error for NonDeterminism {}

/// An outbound HTTP request as the test's stand-in sees it ([`Runner::on_http`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpRequest {
    /// The method, upper case.
    pub method: String,
    /// The URL as the handler gave it.
    pub url: String,
    /// The headers, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl HttpRequest {
    /// The URL's path (and query), e.g. `/check-status/job-1`.
    pub fn path(&self) -> &str {
        let rest = self
            .url
            .split_once("://")
            .map_or(self.url.as_str(), |(_, r)| r);
        rest.find('/').map_or("/", |i| &rest[i..])
    }

    /// The body deserialized from JSON.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
}

/// How an activation ended, as the host's runtime maps it.
#[derive(Debug, Clone, PartialEq)]
enum End {
    Succeeded(String),
    Failed {
        error: ErrorObject,
        invocation_error: bool,
    },
    Suspended {
        reason: SuspendReason,
        op: Option<String>,
    },
    /// Cut short by a simulated host crash: it runs again at once (after the "restart").
    Crashed,
}

type Handler = Box<dyn Fn(&str) -> Result<String, Error>>;

/// Runs a durable handler in-process, as the host would, with a manual clock.
///
/// See the [module documentation](self) for an example.
pub struct Runner {
    handler: Handler,
    /// `None` only while a driver holds it.
    exec: Option<Exec>,
    clock_ms: u64,
    started_ms: u64,
    check: bool,
    activations: u32,
    status: Option<Status>,
}

impl Runner {
    /// A runner for `handler`, the function a crate exports with
    /// [`export_handler!`](crate::export_handler). Its input and output go through JSON
    /// exactly as on the host.
    pub fn new<I, O, F>(handler: F) -> Self
    where
        I: DeserializeOwned,
        O: Serialize,
        F: Fn(&mut Context, I) -> Result<O, Error> + 'static,
    {
        Self {
            handler: Box::new(move |event| crate::__private::run(event, &handler)),
            exec: Some(Exec {
                history: Vec::new(),
                callbacks: BTreeMap::new(),
                logs: Vec::new(),
                log_keys: HashSet::new(),
                callbacks_created: 0,
                rng: 0x5eed,
                injections: Vec::new(),
                crashes: Vec::new(),
                http: None,
                invokes: HashMap::new(),
                callees: HashMap::new(),
                limits: Limits::default(),
                max_payload_bytes: 1024 * 1024,
            }),
            clock_ms: DEFAULT_START_MS,
            started_ms: DEFAULT_START_MS,
            check: true,
            activations: 0,
            status: None,
        }
    }

    fn exec(&self) -> &Exec {
        self.exec.as_ref().expect("not inside a run")
    }

    fn exec_mut(&mut self) -> &mut Exec {
        self.exec.as_mut().expect("not inside a run")
    }

    /// Turns the determinism check replays on (the default) or off.
    pub fn check_determinism(&mut self, on: bool) -> &mut Self {
        self.check = on;
        self
    }

    /// Starts the manual clock at `time` (before [`invoke`](Self::invoke)).
    pub fn start_time(&mut self, time: SystemTime) -> &mut Self {
        let ms = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        self.clock_ms = ms;
        self.started_ms = ms;
        self
    }

    /// Seeds the random source ([`Context::random`], [`Context::uuid`], retry jitter).
    pub fn seed(&mut self, seed: u64) -> &mut Self {
        self.exec_mut().rng = seed;
        self
    }

    /// Answers the handler's outbound HTTP requests ([`crate::http`]) with `stand_in`
    /// instead of the network. Without one, every request fails with `HttpError`.
    pub fn on_http(
        &mut self,
        stand_in: impl FnMut(&HttpRequest) -> Result<Response, Error> + 'static,
    ) -> &mut Self {
        self.exec_mut().http = Some(Box::new(stand_in));
        self
    }

    /// Stands in for the function named `function` when the handler invokes it
    /// (`Context::invoke`): called once per invoke with the input, its output or error is
    /// the callee's end. As on the host the caller suspends until the callee ends, and its
    /// next activation records `ChainedInvokeSucceeded` / `ChainedInvokeFailed`. Invoking a
    /// function with no stand-in fails with `Invoke.FunctionNotFound`, as on the host. The
    /// invoke's `timeout` never fires: a stand-in answers at once.
    pub fn on_invoke<I, O>(
        &mut self,
        function: &str,
        mut stand_in: impl FnMut(I) -> Result<O, Error> + 'static,
    ) -> &mut Self
    where
        I: DeserializeOwned,
        O: Serialize,
    {
        let function_name = function.to_string();
        let handler = move |input: &str| {
            let input: I = serde_json::from_str(input).map_err(|e| {
                ErrorObject::new(
                    crate::error::SERIALIZATION_ERROR,
                    format!("the input of {function_name:?} does not decode: {e}"),
                )
            })?;
            let output = stand_in(input).map_err(to_object)?;
            serde_json::to_string(&output)
                .map_err(|e| ErrorObject::new(crate::error::SERIALIZATION_ERROR, e.to_string()))
        };
        self.exec_mut()
            .invokes
            .insert(function.to_string(), Box::new(handler));
        self
    }

    /// Makes every attempt of the step named `step` fail with `error`, as if its body had
    /// returned it (the body does not run); its retry policy applies as usual.
    pub fn fail_step(&mut self, step: &str, error: Error) -> &mut Self {
        self.inject(step, None, error)
    }

    /// Makes the next `attempts` attempts of the step named `step` fail with `error`; later
    /// attempts run the body.
    pub fn fail_step_times(&mut self, step: &str, attempts: u32, error: Error) -> &mut Self {
        self.inject(step, Some(attempts), error)
    }

    /// Simulates a host crash (`kill -9`) during the next attempt of the step named `step`:
    /// the attempt's start is recorded, its body does not run, the activation ends with
    /// `InvocationCompleted` (`Runtime.HostRestarted`) and the execution resumes at once,
    /// as after a restart. The host's rules decide the rest: an at-least-once step runs
    /// the attempt again; an at-most-once one fails it with `StepInterrupted` and its retry
    /// policy applies.
    pub fn crash_in_step(&mut self, step: &str) -> &mut Self {
        self.exec_mut().crashes.push(step.to_string());
        self
    }

    fn inject(&mut self, step: &str, remaining: Option<u32>, error: Error) -> &mut Self {
        self.exec_mut().injections.push(Injection {
            step: step.to_string(),
            error: to_object(error),
            remaining,
        });
        self
    }

    /// Starts the execution with `input` (serialized to JSON) and runs it until it ends or
    /// waits for a callback; waits and retry delays on the way are skipped.
    ///
    /// # Panics
    ///
    /// When the handler is not deterministic (see [`try_invoke`](Self::try_invoke)), when
    /// it panics (its panic, resumed), or when invoked twice.
    pub fn invoke(&mut self, input: impl Serialize) -> Status {
        self.try_invoke(input).unwrap_or_else(|e| panic!("{e}"))
    }

    /// [`invoke`](Self::invoke), returning a divergence instead of panicking.
    pub fn try_invoke(&mut self, input: impl Serialize) -> Result<Status, NonDeterminism> {
        assert!(
            self.exec().history.is_empty(),
            "the runner's execution was invoked already"
        );
        let input = serde_json::to_string(&input).expect("the input serializes to JSON");
        let now = self.clock_ms;
        let mut journal = Journal::from_events(&[]);
        let e = journal.record(now, EventKind::ExecutionStarted { input });
        self.exec_mut().history.push(e);
        self.run_on()
    }

    /// Completes a pending callback with `result` (serialized to JSON) and runs on.
    ///
    /// # Panics
    ///
    /// When `callback_id` is not a pending callback of the execution, or as `invoke`.
    pub fn succeed_callback(&mut self, callback_id: &str, result: impl Serialize) -> Status {
        let json = serde_json::to_string(&result).expect("the result serializes to JSON");
        self.complete(callback_id, Resolution::Succeeded(json))
    }

    /// Fails a pending callback with `error` and runs on.
    ///
    /// # Panics
    ///
    /// As [`succeed_callback`](Self::succeed_callback).
    pub fn fail_callback(&mut self, callback_id: &str, error: Error) -> Status {
        self.complete(callback_id, Resolution::Failed(to_object(error)))
    }

    /// A heartbeat for a pending callback: its heartbeat timeout counts again from now.
    ///
    /// # Panics
    ///
    /// When `callback_id` is not a pending callback of the execution.
    pub fn heartbeat_callback(&mut self, callback_id: &str) {
        let now = self.clock_ms;
        match self.exec_mut().callbacks.get_mut(callback_id) {
            Some(r) if r.resolution.is_none() => {
                r.heartbeat_deadline_ms = r.heartbeat_timeout_ms.map(|h| now.saturating_add(h));
            }
            _ => panic!("{callback_id} is not a pending callback of this execution"),
        }
    }

    fn complete(&mut self, callback_id: &str, resolution: Resolution) -> Status {
        let record = self.exec_mut().callbacks.get_mut(callback_id);
        match record {
            Some(r) if r.resolution.is_none() => r.resolution = Some(resolution),
            Some(_) => panic!("callback {callback_id} is completed already"),
            None => panic!("{callback_id} is not a callback of this execution"),
        }
        self.resume()
    }

    /// Moves the clock on by `by` (callback timeouts and heartbeat timeouts that pass
    /// fire) and, if the execution waits, runs on.
    pub fn advance(&mut self, by: Duration) -> Status {
        let to = self.clock_ms.saturating_add(by.as_millis() as u64);
        self.advance_to(to);
        self.resume()
    }

    fn resume(&mut self) -> Status {
        match &self.status {
            Some(Status::Waiting { .. }) => self.run_on().unwrap_or_else(|e| panic!("{e}")),
            Some(done) => done.clone(),
            None => panic!("the execution was not invoked yet"),
        }
    }

    /// The status after the latest run; `None` before [`invoke`](Self::invoke).
    pub fn status(&self) -> Option<&Status> {
        self.status.as_ref()
    }

    /// The output, once the execution succeeded.
    pub fn output(&self) -> Option<Value> {
        match &self.status {
            Some(Status::Succeeded(v)) => Some(v.clone()),
            _ => None,
        }
    }

    /// The error, once the execution failed.
    pub fn error(&self) -> Option<&Error> {
        match &self.status {
            Some(Status::Failed(e)) => Some(e),
            _ => None,
        }
    }

    /// The history: the events the host would record, in order (`event_id` is `seq`).
    pub fn history(&self) -> &[Event] {
        &self.exec().history
    }

    /// The history in short: (event type, operation id, operation name) per event, the
    /// shape the host's history API shows in `event_type`, `id` and `name`.
    pub fn shape(&self) -> Vec<(&'static str, Option<&str>, Option<&str>)> {
        self.history()
            .iter()
            .map(|e| {
                let op = e.kind.op();
                (
                    e.kind.event_type(),
                    op.map(|o| o.id.as_str()),
                    op.and_then(|o| o.name.as_deref()),
                )
            })
            .collect()
    }

    /// The replay-aware log lines, each once.
    pub fn logs(&self) -> &[LogLine] {
        &self.exec().logs
    }

    /// The ids of the pending callbacks, in creation order.
    pub fn callback_ids(&self) -> Vec<String> {
        self.exec()
            .callbacks
            .iter()
            .filter(|(_, r)| r.resolution.is_none())
            .map(|(id, _)| id.clone())
            .collect()
    }

    /// How many activations (instantiate, run, suspend or end) the execution has had.
    pub fn activations(&self) -> u32 {
        self.activations
    }

    /// The manual clock's time.
    pub fn now(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_millis(self.clock_ms)
    }

    /// How far the manual clock moved since the start: the time the execution would have
    /// taken on a host.
    pub fn elapsed(&self) -> Duration {
        Duration::from_millis(self.clock_ms.saturating_sub(self.started_ms))
    }

    /// Activates until the execution ends or waits for a callback.
    fn run_on(&mut self) -> Result<Status, NonDeterminism> {
        loop {
            assert!(
                self.activations < MAX_ACTIVATIONS,
                "the execution did not end within {MAX_ACTIVATIONS} activations"
            );
            let status = match self.activate()? {
                End::Succeeded(output) => Status::Succeeded(
                    serde_json::from_str(&output).expect("the output was checked as JSON"),
                ),
                End::Failed { error, .. } => Status::Failed(Error {
                    error_type: error.error_type,
                    error_message: error.error_message,
                    error_data: error.error_data,
                }),
                End::Suspended {
                    reason: SuspendReason::Callback,
                    ..
                } => Status::Waiting {
                    callbacks: self.callback_ids(),
                },
                // Recovery re-queues it at once.
                End::Crashed => continue,
                // A stand-in answered at once: its end is recorded by the next activation.
                End::Suspended {
                    reason: SuspendReason::Invoke,
                    ..
                } => continue,
                End::Suspended { .. } => {
                    let journal = Journal::from_events(&self.exec().history);
                    let next = journal.live_timers().into_iter().map(|(due, _)| due).min();
                    let next = next.expect("a suspended wait or retry holds a timer");
                    self.advance_to(next.max(self.clock_ms));
                    continue;
                }
            };
            self.status = Some(status.clone());
            return Ok(status);
        }
    }

    /// Moves the clock to `to_ms`; callbacks whose timeouts pass time out (the host's
    /// callback timers).
    fn advance_to(&mut self, to_ms: u64) {
        self.clock_ms = to_ms;
        for (id, r) in self.exec_mut().callbacks.iter_mut() {
            if r.resolution.is_some() {
                continue;
            }
            let timeout = r.timeout_deadline_ms.filter(|&d| d <= to_ms);
            let heartbeat = r.heartbeat_deadline_ms.filter(|&d| d <= to_ms);
            let error = match (timeout, heartbeat) {
                (None, None) => continue,
                (Some(t), Some(h)) if t <= h => timed_out(id),
                (Some(_), None) => timed_out(id),
                _ => ErrorObject::new(
                    error_types::CALLBACK_HEARTBEAT_TIMEOUT,
                    format!(
                        "callback {id} got no heartbeat for {} ms",
                        r.heartbeat_timeout_ms.unwrap_or(0)
                    ),
                ),
            };
            r.resolution = Some(Resolution::TimedOut(error));
        }
    }

    /// One activation, as `runtime::try_activate` runs it: fold the history, ingest due
    /// waits and resolved callbacks, run the handler, map its end, then (checks on) replay
    /// it once more, then record `InvocationCompleted` and the terminal event.
    fn activate(&mut self) -> Result<End, NonDeterminism> {
        let now = self.clock_ms;
        let mut exec = self.exec.take().expect("not inside a run");
        let mut act = Activation::new(Journal::from_events(&exec.history), now);
        act.set_limits(exec.limits.clone());
        let (events, _) = act.complete_due_waits(now);
        exec.history.extend(events);
        for (op, cb) in act.journal().pending_callbacks() {
            let Some(resolution) = exec.callbacks.get(&cb).and_then(|r| r.resolution.clone())
            else {
                continue;
            };
            if let Some(e) = act.resolve_callback(now, &op, resolution) {
                exec.history.push(e);
            }
        }
        // Callees that ended (their stand-ins answered when invoked).
        for (op, callee) in act.journal().pending_invokes() {
            let Some(end) = exec.callees.get(&callee).cloned() else {
                continue;
            };
            if let Some(e) = act.invoke_ended(now, &op, end) {
                exec.history.push(e);
            }
        }
        self.activations += 1;
        let activation = self.activations;
        let input = act.journal().input().to_string();

        let (end, driver) = self.run_handler(exec, act, now, false, &input);
        let Driver {
            mut exec,
            mut act,
            calls,
            ..
        } = driver;
        let mut divergence = match &end {
            Err(Stop::Violation(v @ durable_journal::Violation::NonDeterministic(_))) => {
                Some(NonDeterminism {
                    activation,
                    operation: operation_in(&v.to_string()),
                    message: v.to_string(),
                })
            }
            _ => None,
        };
        let end = self.end_of(&exec, end);

        // A crash is not a suspension point: a replay from there runs the cut attempt again.
        if self.check && divergence.is_none() && end != End::Crashed {
            let mut replay = Activation::new(Journal::from_events(&exec.history), now);
            replay.set_limits(exec.limits.clone());
            let (again, driver) = self.run_handler(exec, replay, now, true, &input);
            divergence = self
                .compare(activation, &end, again, &driver.exec)
                .or_else(|| skipped(activation, &calls, &driver));
            exec = driver.exec;
        }

        let (started_ms, invocation_error) = match &end {
            End::Failed {
                error,
                invocation_error: true,
            } => (act.started_ms(), Some(error.clone())),
            // What the host's recovery records for an activation a crash cut short.
            End::Crashed => (
                now,
                Some(ErrorObject::new(
                    error_types::HOST_RESTARTED,
                    "the host stopped while this activation ran; it resumes from its last checkpoint",
                )),
            ),
            _ => (act.started_ms(), None),
        };
        let ic = act.journal_mut().record(
            now,
            EventKind::InvocationCompleted {
                started_ms,
                error: invocation_error,
            },
        );
        exec.history.push(ic);
        let terminal = match &end {
            End::Succeeded(output) => Some(EventKind::ExecutionSucceeded {
                output: output.clone(),
            }),
            End::Failed { error, .. } => Some(EventKind::ExecutionFailed {
                error: error.clone(),
            }),
            End::Suspended { .. } | End::Crashed => None,
        };
        if let Some(kind) = terminal {
            let e = act.journal_mut().record(now, kind);
            exec.history.push(e);
        }
        self.exec = Some(exec);
        match divergence {
            Some(d) => Err(d),
            None => Ok(end),
        }
    }

    /// Runs the handler once on a driver; a panic that is not the runner's is resumed after
    /// the execution is put back.
    fn run_handler(
        &mut self,
        exec: Exec,
        act: Activation,
        now: u64,
        check: bool,
        input: &str,
    ) -> (Result<Result<String, Error>, Stop>, Driver) {
        let driver = Driver::new(exec, act, now, check);
        let handler = &self.handler;
        let (mut driver, result) = imports::run_with(driver, || handler(input));
        match result {
            Ok(r) => (Ok(r), driver),
            Err(payload) if payload.is::<Unwind>() => {
                let stop = driver.stop.take().expect("an unwinding call says why");
                (Err(stop), driver)
            }
            Err(payload) => {
                self.exec = Some(driver.exec);
                std::panic::resume_unwind(payload)
            }
        }
    }

    /// The runtime's mapping of how the guest's run ended.
    fn end_of(&self, exec: &Exec, run: Result<Result<String, Error>, Stop>) -> End {
        match run {
            Ok(Ok(output)) => {
                match durable_journal::check_payload("output", &output, exec.max_payload_bytes) {
                    Ok(()) => End::Succeeded(output),
                    Err(error) => End::Failed {
                        error,
                        invocation_error: false,
                    },
                }
            }
            Ok(Err(e)) => End::Failed {
                error: exec.limits.bound_error(to_object(e)),
                invocation_error: false,
            },
            Err(Stop::Suspend { reason, op }) => End::Suspended { reason, op },
            Err(Stop::Violation(v)) => End::Failed {
                error: v.to_error(),
                invocation_error: true,
            },
            Err(Stop::Crash) => End::Crashed,
            Err(Stop::Diverged { .. }) => unreachable!("only a check replay diverges"),
        }
    }

    /// Whether the check replay after activation `activation` ended as the activation did.
    fn compare(
        &self,
        activation: u32,
        first: &End,
        again: Result<Result<String, Error>, Stop>,
        exec: &Exec,
    ) -> Option<NonDeterminism> {
        let report = |operation: Option<String>, message: String| NonDeterminism {
            activation,
            operation,
            message: format!("on replay from the end of this activation: {message}"),
        };
        let again = match again {
            Err(Stop::Diverged { op, what }) => {
                return Some(report(
                    op,
                    format!(
                        "the handler called an operation the journal does not hold there                          (it would record {what}); the first run {}",
                        describe(first)
                    ),
                ))
            }
            Err(Stop::Violation(v @ durable_journal::Violation::NonDeterministic(_))) => {
                return Some(report(operation_in(&v.to_string()), v.to_string()))
            }
            other => self.end_of(exec, other),
        };
        if again == *first {
            return None;
        }
        let op = match (&again, first) {
            (End::Suspended { op, .. }, _) | (_, End::Suspended { op, .. }) => op.clone(),
            _ => None,
        };
        Some(report(
            op,
            format!(
                "the first run {}; the replay {}",
                describe(first),
                describe(&again)
            ),
        ))
    }
}

/// Whether the check replay called fewer (or more) operations than the first run in a
/// context both ran: the top level, and each child context the replay entered (one that
/// replayed as a whole is not entered). A skipped operation is never compared with the
/// journal, so only this count sees it.
fn skipped(
    activation: u32,
    first: &HashMap<Option<String>, u32>,
    replay: &Driver,
) -> Option<NonDeterminism> {
    let mut contexts: Vec<Option<String>> = vec![None];
    contexts.extend(replay.entered.iter().cloned().map(Some));
    contexts.sort();
    contexts.into_iter().find_map(|parent| {
        let a = first.get(&parent).copied().unwrap_or(0);
        let b = replay.calls.get(&parent).copied().unwrap_or(0);
        (a != b).then(|| {
            let n = a.min(b) + 1;
            let (operation, place) = match &parent {
                None => (n.to_string(), "at the top level".to_string()),
                Some(p) => (format!("{p}.{n}"), format!("in child context {p}")),
            };
            NonDeterminism {
                activation,
                operation: Some(operation),
                message: format!(
                    "on replay from the end of this activation: the first run called {a} \
                     operations {place}, the replay {b}"
                ),
            }
        })
    })
}

fn to_object(e: Error) -> ErrorObject {
    ErrorObject {
        error_type: e.error_type,
        error_message: e.error_message,
        error_data: e.error_data,
    }
}

fn timed_out(id: &str) -> ErrorObject {
    ErrorObject::new(
        error_types::CALLBACK_TIMEOUT,
        format!("callback {id} was not completed in time"),
    )
}

/// The operation id a journal violation names (`operation 3: ...`).
fn operation_in(message: &str) -> Option<String> {
    let rest = message.strip_prefix("operation ")?;
    rest.split_once(':').map(|(id, _)| id.to_string())
}

fn describe(end: &End) -> String {
    match end {
        End::Succeeded(output) => format!("returned {output}"),
        End::Failed { error, .. } => format!("failed with {error}"),
        End::Crashed => "was cut short by a crash".to_string(),
        End::Suspended { reason, op } => {
            let why = match reason {
                SuspendReason::Wait => "a wait",
                SuspendReason::RetryDelay => "a retry delay",
                SuspendReason::Callback => "a callback",
                SuspendReason::Invoke => "an invoked function",
                SuspendReason::Batch => "a map or parallel",
            };
            match op {
                Some(op) => format!("suspended at operation {op} for {why}"),
                None => format!("suspended for {why}"),
            }
        }
    }
}
