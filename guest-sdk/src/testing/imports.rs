//! The in-process host of the local test runner: the `durable:function/context` imports
//! (same signatures as the WIT bindings, dispatched here by `crate::host`), each answered
//! the way `host_api::context` answers it: ask the `durable_journal::Activation` what to do,
//! then perform its effects on the in-memory execution (`Exec`) and reply or suspend.
//!
//! A suspension does not return, as on the host: the call unwinds the handler with the
//! private payload `Unwind` through `std::panic::resume_unwind` (which skips the panic hook,
//! so nothing is printed), after leaving why in the driver (`Stop`). The runner catches it.
//! In a check replay (`Driver::check`) nothing is written: an effect that would record an
//! event means the replay left the journal, and unwinds as `Stop::Diverged`.
//!
//! Only code run by the runner on its thread reaches a driver; outside one, durable
//! operations panic with a message that says so.

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap, HashSet};

use durable_journal::{
    error_types, Activation, Backoff, BatchKind, BatchOutcome, BatchSpec, BatchStart, BranchStart,
    BranchStatus, CallbackPoll, CompletionPolicy, CompletionReason, ConditionStart, ContextKind,
    ContextStart, Effects, ErrorObject, Event, InvokeEnd, InvokePoll, InvokeStart, Jitter, Limits,
    Reply, Resolution, RetryPolicy, StepSemantics, StepStart, SuspendReason, Violation,
};

use crate::http::{Request, Response};
use crate::wit;
use crate::Error;

/// The stand-in for an invoked function (`Runner::on_invoke`): its input as JSON text to
/// its output as JSON text, or its error.
pub(crate) type InvokeHandler = Box<dyn FnMut(&str) -> Result<String, ErrorObject>>;

/// The outbound HTTP stand-in a test installs (`Runner::on_http`).
pub(crate) type HttpHandler = Box<dyn FnMut(&super::HttpRequest) -> Result<Response, Error>>;

/// A callback as the host's callback record holds it.
#[derive(Debug, Clone)]
pub(crate) struct CallbackRecord {
    /// `None` while pending.
    pub resolution: Option<Resolution>,
    pub timeout_deadline_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    pub heartbeat_deadline_ms: Option<u64>,
}

/// A failure injected into a step's attempts (`Runner::fail_step`).
#[derive(Debug, Clone)]
pub(crate) struct Injection {
    pub step: String,
    pub error: ErrorObject,
    /// Attempts still to fail; `None`: every attempt.
    pub remaining: Option<u32>,
}

/// A log line recorded by the replay-aware logger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    /// `debug`, `info`, `warn` or `error`.
    pub level: &'static str,
    /// The line.
    pub message: String,
    /// The step whose body logged it, if any.
    pub operation_id: Option<String>,
}

/// The in-memory execution: what the host keeps in its store for one execution.
pub(crate) struct Exec {
    pub history: Vec<Event>,
    /// By callback id, in creation order of their ids.
    pub callbacks: BTreeMap<String, CallbackRecord>,
    pub logs: Vec<LogLine>,
    /// The replay positions already logged (the host's `K` markers).
    pub log_keys: HashSet<String>,
    pub callbacks_created: u64,
    /// splitmix64 state: the runner's seeded random source.
    pub rng: u64,
    pub injections: Vec<Injection>,
    /// Steps whose next live attempt is cut short by a host crash (`Runner::crash_in_step`).
    pub crashes: Vec<String>,
    pub http: Option<HttpHandler>,
    /// The stand-ins of invoked functions, by name (`Runner::on_invoke`).
    pub invokes: HashMap<String, InvokeHandler>,
    /// Each callee's end, by its (made-up) execution id, as its stand-in answered.
    pub callees: HashMap<String, InvokeEnd>,
    pub limits: Limits,
    /// The host's `max_payload_bytes` default.
    pub max_payload_bytes: usize,
}

impl Exec {
    pub fn next_random(&mut self) -> u64 {
        // splitmix64 (public domain constants): enough for jitter and test values.
        self.rng = self.rng.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// The error to fail this attempt of step `name` with, if a test injected one.
    fn injected(&mut self, name: Option<&str>) -> Option<ErrorObject> {
        let name = name?;
        let i = self
            .injections
            .iter_mut()
            .find(|i| i.step == name && i.remaining.is_none_or(|n| n > 0))?;
        if let Some(n) = &mut i.remaining {
            *n -= 1;
        }
        Some(i.error.clone())
    }

    /// The host's `check_payload`: JSON text within the payload limit.
    pub fn check_payload(&self, value: &str) -> Result<(), ErrorObject> {
        durable_journal::check_payload("value", value, self.max_payload_bytes)
    }
}

/// Why the handler was unwound.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Stop {
    /// The host would suspend here: the operation (when known) and why.
    Suspend {
        reason: SuspendReason,
        op: Option<String>,
    },
    /// The journal refused the call (non-determinism, protocol, limit).
    Violation(Violation),
    /// A check replay was about to record something the first run did not.
    Diverged { op: Option<String>, what: String },
    /// The host "crashed" once the step's attempt had started (its body did not run).
    Crash,
}

/// The private panic payload of an unwinding host call.
pub(crate) struct Unwind;

/// One activation's host state: the execution, its `Activation`, the clock reading.
pub(crate) struct Driver {
    pub exec: Exec,
    pub act: Activation,
    pub now: u64,
    /// A check replay: write nothing, unwind at the first effect that would.
    pub check: bool,
    pub stop: Option<Stop>,
    /// Operations called per parent context (`None`: the top level) in this run.
    pub calls: HashMap<Option<String>, u32>,
    /// The child contexts this run entered (their bodies ran, live or replayed).
    pub entered: HashSet<String>,
}

thread_local! {
    static CURRENT: RefCell<Option<Driver>> = const { RefCell::new(None) };
}

/// Runs `f` with `driver` as this thread's host; returns the driver and what `f` returned,
/// or the panic it raised (`Unwind` included: the driver's `stop` says why).
pub(crate) fn run_with<T>(
    driver: Driver,
    f: impl FnOnce() -> T,
) -> (Driver, std::thread::Result<T>) {
    CURRENT.with(|c| *c.borrow_mut() = Some(driver));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    let driver = CURRENT
        .with(|c| c.borrow_mut().take())
        .expect("the driver is still installed");
    (driver, result)
}

fn installed() -> bool {
    CURRENT.with(|c| c.borrow().is_some())
}

/// Runs one host call on the current driver; a `Stop` unwinds the handler.
fn with<T>(call: &str, f: impl FnOnce(&mut Driver) -> Result<T, Stop>) -> T {
    let outcome = CURRENT.with(|c| {
        let mut slot = c.borrow_mut();
        let Some(d) = slot.as_mut() else {
            panic!(
                "durable-sdk: `{call}` called outside durable_sdk::testing::Runner; natively, \
                 durable operations run only inside the test runner"
            );
        };
        match f(d) {
            Ok(t) => Ok(t),
            Err(stop) => {
                d.stop = Some(stop);
                Err(())
            }
        }
    });
    match outcome {
        Ok(t) => t,
        // The borrow is released: unwinding reaches the runner's `catch_unwind`.
        Err(()) => std::panic::resume_unwind(Box::new(Unwind)),
    }
}

/// The operation an effect is about: its first event's, else its timer's.
fn effect_op<T>(fx: &Effects<T>) -> Option<String> {
    fx.events
        .iter()
        .find_map(|e| e.kind.op().map(|o| o.id.clone()))
        .or_else(|| fx.timers.first().map(|t| t.op_id.clone()))
        .or_else(|| fx.timers_done.first().map(|t| t.op_id.clone()))
}

impl Driver {
    pub fn new(exec: Exec, act: Activation, now: u64, check: bool) -> Self {
        Self {
            exec,
            act,
            now,
            check,
            stop: None,
            calls: HashMap::new(),
            entered: HashSet::new(),
        }
    }

    /// Counts an operation called under `parent`.
    fn called(&mut self, parent: Option<&str>) {
        *self.calls.entry(parent.map(str::to_string)).or_default() += 1;
    }

    /// The draw handed to the journal for jitter. A check replay draws nothing, so that a
    /// run is the same with checks on or off.
    fn unit_random(&mut self) -> f64 {
        if self.check {
            return 0.5;
        }
        (self.exec.next_random() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Performs a journal decision on the in-memory execution, then replies or stops.
    fn perform<T>(&mut self, fx: Effects<T>) -> Result<T, Stop> {
        let op = effect_op(&fx);
        if self.check && !fx.events.is_empty() {
            let what: Vec<String> = fx
                .events
                .iter()
                .map(|e| {
                    let name = e.kind.op().and_then(|o| o.name.as_deref());
                    match name {
                        Some(n) => format!("{} {n:?}", e.kind.event_type()),
                        None => e.kind.event_type().to_string(),
                    }
                })
                .collect();
            return Err(Stop::Diverged {
                op,
                what: what.join(", "),
            });
        }
        self.exec.history.extend(fx.events);
        if let Some(cb) = fx.callback {
            self.exec.callbacks.insert(
                cb.callback_id,
                CallbackRecord {
                    resolution: None,
                    timeout_deadline_ms: cb.timeout_deadline_ms,
                    heartbeat_timeout_ms: cb.heartbeat_timeout_ms,
                    heartbeat_deadline_ms: cb
                        .heartbeat_timeout_ms
                        .map(|h| self.now.saturating_add(h)),
                },
            );
        }
        match fx.reply {
            Reply::Return(t) => Ok(t),
            Reply::Suspend(reason) => Err(Stop::Suspend { reason, op }),
        }
    }

    /// `host_api`'s `end_with_value`: a JSON value that is not JSON or too large fails the
    /// operation for good with `refuse`; otherwise `record` it.
    fn end_with_value<T>(
        &mut self,
        value: &str,
        refuse: impl FnOnce(&mut Activation, u64, ErrorObject) -> Result<Effects<()>, Violation>,
        record: impl FnOnce(&mut Activation, u64, String) -> Result<Effects<T>, Violation>,
    ) -> Result<Result<T, wit::ErrorObject>, Stop> {
        let now = self.now;
        if let Err(error) = self.exec.check_payload(value) {
            let fx = refuse(&mut self.act, now, error.clone()).map_err(Stop::Violation)?;
            self.perform(fx)?;
            return Ok(Err(to_wit(error)));
        }
        let fx = record(&mut self.act, now, value.to_string()).map_err(Stop::Violation)?;
        Ok(Ok(self.perform(fx)?))
    }
}

fn to_journal(e: &wit::ErrorObject) -> ErrorObject {
    ErrorObject {
        error_type: e.error_type.clone(),
        error_message: e.error_message.clone(),
        error_data: e.error_data.clone(),
    }
}

fn to_wit(e: ErrorObject) -> wit::ErrorObject {
    wit::ErrorObject {
        error_type: e.error_type,
        error_message: e.error_message,
        error_data: e.error_data,
    }
}

/// The WIT retry policy as the journal's (the host's `policy`).
fn policy(p: Option<&wit::RetryPolicy>) -> RetryPolicy {
    let Some(p) = p else {
        return RetryPolicy::default();
    };
    RetryPolicy {
        max_attempts: p.max_attempts.max(1),
        initial_delay_ms: p.initial_delay_ms,
        max_delay_ms: p.max_delay_ms,
        backoff: match p.backoff {
            wit::Backoff::Exponential(rate) => Backoff::Exponential(rate),
            wit::Backoff::Linear(inc) => Backoff::Linear(inc),
        },
        jitter: match p.jitter {
            wit::Jitter::None => Jitter::None,
            wit::Jitter::Full => Jitter::Full,
            wit::Jitter::Half => Jitter::Half,
        },
        retry_on: p.retry_on.clone(),
        never_retry_on: p.never_retry_on.clone(),
    }
}

/// The WIT batch options as the journal's (the host's `batch_spec`).
fn batch_spec(o: wit::BatchOptions) -> BatchSpec {
    BatchSpec {
        kind: match o.kind {
            wit::BatchKind::Map => BatchKind::Map,
            wit::BatchKind::Parallel => BatchKind::Parallel,
        },
        count: o.count,
        max_concurrency: o.max_concurrency,
        policy: CompletionPolicy {
            min_successful: o.completion.min_successful,
            tolerated_failure_count: o.completion.tolerated_failure_count,
            tolerated_failure_percentage: o.completion.tolerated_failure_percentage,
        },
    }
}

/// The journal's batch outcome as the WIT's (the host's `batch_outcome`).
fn batch_outcome(o: BatchOutcome) -> wit::BatchOutcome {
    let items = o
        .items
        .into_iter()
        .map(|item| {
            let (status, result, error) = match item.status {
                BranchStatus::Succeeded(r) => (wit::BatchItemStatus::Succeeded, Some(r), None),
                BranchStatus::Failed(e) => (wit::BatchItemStatus::Failed, None, Some(to_wit(e))),
                BranchStatus::Started => (wit::BatchItemStatus::Started, None, None),
            };
            wit::BatchItem {
                index: item.index,
                status,
                result,
                error,
            }
        })
        .collect();
    let reason = match o.reason {
        CompletionReason::AllCompleted => wit::CompletionReason::AllCompleted,
        CompletionReason::MinSuccessfulReached => wit::CompletionReason::MinSuccessfulReached,
        CompletionReason::FailureToleranceExceeded => {
            wit::CompletionReason::FailureToleranceExceeded
        }
    };
    wit::BatchOutcome { items, reason }
}

pub(crate) fn step_start(
    parent: Option<&str>,
    name: Option<&str>,
    options: &wit::StepOptions,
) -> (String, wit::StepState) {
    with("step-start", |d| {
        d.called(parent);
        let semantics = match options.semantics {
            wit::StepSemantics::AtLeastOncePerRetry => StepSemantics::AtLeastOncePerRetry,
            wit::StepSemantics::AtMostOncePerRetry => StepSemantics::AtMostOncePerRetry,
        };
        let random = d.unit_random();
        let fx = d
            .act
            .step_start(
                d.now,
                parent,
                name,
                semantics,
                policy(options.retry.as_ref()),
                random,
            )
            .map_err(Stop::Violation)?;
        let (id, mut state) = d.perform(fx)?;
        // An injected failure: the attempt fails as if its body had returned the error.
        while let StepStart::Run(_) = state {
            let Some(error) = d.exec.injected(name) else {
                break;
            };
            let random = d.unit_random();
            let recorded = d.act.limits().bound_error(error.clone());
            let fx = d
                .act
                .step_fail(d.now, &id, error, random)
                .map_err(Stop::Violation)?;
            state = match d.perform(fx)? {
                Some(next) => StepStart::Run(next),
                None => StepStart::Failed(recorded),
            };
        }
        if let (StepStart::Run(_), Some(name)) = (&state, name) {
            if let Some(i) = d.exec.crashes.iter().position(|c| c == name) {
                d.exec.crashes.remove(i);
                return Err(Stop::Crash);
            }
        }
        let state = match state {
            StepStart::Succeeded(v) => wit::StepState::Succeeded(v),
            StepStart::Failed(e) => wit::StepState::Failed(to_wit(e)),
            StepStart::Run(n) => wit::StepState::Run(n),
        };
        Ok((id, state))
    })
}

pub(crate) fn step_succeed(id: &str, value: &str) -> Result<(), wit::ErrorObject> {
    with("step-succeed", |d| {
        d.end_with_value(
            value,
            |act, now, e| act.step_fail_final(now, id, e),
            |act, now, v| act.step_succeed(now, id, v),
        )
    })
}

pub(crate) fn step_fail(id: &str, error: &wit::ErrorObject) -> Option<u32> {
    with("step-fail", |d| {
        let random = d.unit_random();
        let fx = d
            .act
            .step_fail(d.now, id, to_journal(error), random)
            .map_err(Stop::Violation)?;
        d.perform(fx)
    })
}

pub(crate) fn wait(parent: Option<&str>, name: Option<&str>, millis: u64) {
    with("wait", |d| {
        d.called(parent);
        let fx = d
            .act
            .wait(d.now, parent, name, millis)
            .map_err(Stop::Violation)?;
        d.perform(fx)
    })
}

pub(crate) fn create_callback(
    parent: Option<&str>,
    name: Option<&str>,
    options: wit::CallbackOptions,
) -> (String, String) {
    with("create-callback", |d| {
        d.called(parent);
        let exec = &mut d.exec;
        let fx = d
            .act
            .create_callback(
                d.now,
                parent,
                name,
                options.timeout_ms,
                options.heartbeat_timeout_ms,
                || {
                    exec.callbacks_created += 1;
                    format!("cb_test_{}", exec.callbacks_created)
                },
            )
            .map_err(Stop::Violation)?;
        d.perform(fx)
    })
}

pub(crate) fn await_callback(id: &str) -> Result<String, wit::ErrorObject> {
    with("await-callback", |d| {
        let callback_id = match d.act.await_callback(id).map_err(Stop::Violation)? {
            CallbackPoll::Ready(r) => return Ok(r.map_err(to_wit)),
            CallbackPoll::Pending { callback_id } => callback_id,
        };
        let resolution = d
            .exec
            .callbacks
            .get(&callback_id)
            .and_then(|r| r.resolution.clone());
        let Some(resolution) = resolution else {
            return Err(Stop::Suspend {
                reason: SuspendReason::Callback,
                op: Some(id.to_string()),
            });
        };
        // The guest sees what history records, so that a replay sees the same.
        let resolution = d.act.limits().bound_resolution(resolution);
        let outcome = match &resolution {
            Resolution::Succeeded(v) => Ok(v.clone()),
            Resolution::Failed(e) | Resolution::TimedOut(e) => Err(to_wit(e.clone())),
        };
        if let Some(event) = d.act.resolve_callback(d.now, id, resolution) {
            let mut fx = Effects::new(Reply::Return(()));
            fx.events.push(event);
            d.perform(fx)?;
        }
        Ok(outcome)
    })
}

/// `invoke`: the callee is the test's stand-in for `function` (`Runner::on_invoke`), which
/// answers at once; the caller suspends as on the host, and its next activation records
/// the callee's end. A function without a stand-in is not found, as on the host.
pub(crate) fn invoke(
    parent: Option<&str>,
    name: Option<&str>,
    function: &str,
    input: &str,
    options: &wit::InvokeOptions,
) -> Result<String, wit::ErrorObject> {
    with("invoke", |d| {
        let op = match d
            .act
            .invoke_position(parent, name)
            .map_err(Stop::Violation)?
        {
            InvokePoll::Ready(r) => return Ok(r.map_err(to_wit)),
            InvokePoll::Pending { op, .. } => {
                return Err(Stop::Suspend {
                    reason: SuspendReason::Invoke,
                    op: Some(op.id),
                })
            }
            InvokePoll::New(op) => op,
        };
        let callee = match d.exec.check_payload(input) {
            Err(e) => Err(e),
            Ok(()) => match d.exec.invokes.get_mut(function) {
                None => Err(ErrorObject::new(
                    error_types::INVOKE_FUNCTION_NOT_FOUND,
                    format!("no function named {function:?} (Runner::on_invoke installs one)"),
                )),
                Some(stand_in) => {
                    let end = match stand_in(input) {
                        Ok(output) => InvokeEnd::Succeeded(output),
                        Err(e) => InvokeEnd::Failed(e),
                    };
                    let id = format!("callee-{}", d.exec.callees.len() + 1);
                    d.exec.callees.insert(id.clone(), end);
                    Ok((id, 1))
                }
            },
        };
        let start = InvokeStart {
            function: function.to_string(),
            input: input.to_string(),
            tenant_id: options.tenant_id.clone(),
            callee,
        };
        let fx = d.act.invoke_started(d.now, op, start);
        match d.perform(fx)? {
            InvokePoll::Ready(r) => Ok(r.map_err(to_wit)),
            _ => unreachable!("a started invoke suspends"),
        }
    })
}

pub(crate) fn context_start(
    parent: Option<&str>,
    name: Option<&str>,
    kind: wit::ContextKind,
) -> (String, wit::ContextState) {
    with("context-start", |d| {
        d.called(parent);
        let kind = match kind {
            wit::ContextKind::RunInChildContext => ContextKind::RunInChildContext,
            wit::ContextKind::WaitForCallback => ContextKind::WaitForCallback,
        };
        let fx = d
            .act
            .context_start(d.now, parent, name, kind)
            .map_err(Stop::Violation)?;
        let (id, state) = d.perform(fx)?;
        if state == ContextStart::Run {
            d.entered.insert(id.clone());
        }
        let state = match state {
            ContextStart::Succeeded(v) => wit::ContextState::Succeeded(v),
            ContextStart::Failed(e) => wit::ContextState::Failed(to_wit(e)),
            ContextStart::Run => wit::ContextState::Run,
        };
        Ok((id, state))
    })
}

pub(crate) fn context_succeed(id: &str, value: &str) -> Result<(), wit::ErrorObject> {
    with("context-succeed", |d| {
        let (outcome, reply) = match d.exec.check_payload(value) {
            Ok(()) => (Ok(value.to_string()), Ok(())),
            Err(e) => (Err(e.clone()), Err(to_wit(e))),
        };
        let fx = d
            .act
            .context_end(d.now, id, outcome)
            .map_err(Stop::Violation)?;
        d.perform(fx)?;
        Ok(reply)
    })
}

pub(crate) fn context_fail(id: &str, error: &wit::ErrorObject) {
    with("context-fail", |d| {
        let fx = d
            .act
            .context_end(d.now, id, Err(to_journal(error)))
            .map_err(Stop::Violation)?;
        d.perform(fx)
    })
}

pub(crate) fn condition_start(
    parent: Option<&str>,
    name: Option<&str>,
) -> (String, wit::ConditionState) {
    with("condition-start", |d| {
        d.called(parent);
        let fx = d
            .act
            .condition_start(d.now, parent, name)
            .map_err(Stop::Violation)?;
        let (id, state) = d.perform(fx)?;
        let state = match state {
            ConditionStart::Succeeded(v) => wit::ConditionState::Succeeded(v),
            ConditionStart::Failed(e) => wit::ConditionState::Failed(to_wit(e)),
            ConditionStart::Check { attempt, state } => {
                wit::ConditionState::Check(wit::ConditionCheck { attempt, state })
            }
        };
        Ok((id, state))
    })
}

pub(crate) fn condition_continue(
    id: &str,
    state: &str,
    delay_ms: u64,
) -> Result<u32, wit::ErrorObject> {
    with("condition-continue", |d| {
        let ended = d.end_with_value(
            state,
            |act, now, e| act.condition_fail(now, id, e),
            |act, now, v| act.condition_continue(now, id, v, delay_ms),
        )?;
        Ok(ended.and_then(|r| r.map_err(to_wit)))
    })
}

pub(crate) fn condition_succeed(id: &str, state: &str) -> Result<(), wit::ErrorObject> {
    with("condition-succeed", |d| {
        d.end_with_value(
            state,
            |act, now, e| act.condition_fail(now, id, e),
            |act, now, v| act.condition_succeed(now, id, v),
        )
    })
}

pub(crate) fn condition_fail(id: &str, error: &wit::ErrorObject) {
    with("condition-fail", |d| {
        let fx = d
            .act
            .condition_fail(d.now, id, to_journal(error))
            .map_err(Stop::Violation)?;
        d.perform(fx)
    })
}

pub(crate) fn batch_start(
    parent: Option<&str>,
    name: Option<&str>,
    options: wit::BatchOptions,
) -> (String, wit::BatchState) {
    with("batch-start", |d| {
        d.called(parent);
        let fx = d
            .act
            .batch_start(d.now, parent, name, batch_spec(options))
            .map_err(Stop::Violation)?;
        let (id, state) = d.perform(fx)?;
        let state = match state {
            BatchStart::Completed(o) => wit::BatchState::Completed(batch_outcome(o)),
            BatchStart::Run(indices) => {
                // Its branches are the operations called in it.
                d.entered.insert(id.clone());
                wit::BatchState::Run(indices)
            }
        };
        Ok((id, state))
    })
}

pub(crate) fn branch_start(
    batch: &str,
    index: u32,
    name: Option<&str>,
) -> (String, wit::BranchState) {
    with("branch-start", |d| {
        d.called(Some(batch));
        let fx = d
            .act
            .branch_start(d.now, batch, index, name)
            .map_err(Stop::Violation)?;
        let (id, state) = d.perform(fx)?;
        let state = match state {
            BranchStart::Succeeded(v) => wit::BranchState::Succeeded(v),
            BranchStart::Failed(e) => wit::BranchState::Failed(to_wit(e)),
            BranchStart::Run => {
                d.entered.insert(id.clone());
                wit::BranchState::Run
            }
            BranchStart::Skip => wit::BranchState::Skip,
        };
        Ok((id, state))
    })
}

pub(crate) fn batch_finish(id: &str) -> wit::BatchOutcome {
    with("batch-finish", |d| {
        let fx = d.act.batch_finish(d.now, id).map_err(Stop::Violation)?;
        Ok(batch_outcome(d.perform(fx)?))
    })
}

pub(crate) fn log(level: wit::LogLevel, message: &str) {
    with("log", |d| {
        if d.check {
            return Ok(());
        }
        let key = d.act.next_log_key();
        if d.exec.log_keys.insert(key) {
            let level = match level {
                wit::LogLevel::Debug => "debug",
                wit::LogLevel::Info => "info",
                wit::LogLevel::Warn => "warn",
                wit::LogLevel::Error => "error",
            };
            let operation_id = d.act.live_step().map(|(id, _)| id.to_string());
            d.exec.logs.push(LogLine {
                level,
                message: message.to_string(),
                operation_id,
            });
        }
        Ok(())
    })
}

/// The runner's manual clock inside a run (the system clock outside one).
pub(crate) fn wall_clock_ms() -> u64 {
    if installed() {
        return with("wall-clock", |d| Ok(d.now));
    }
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// The runner's seeded random source inside a run (the platform's outside one).
pub(crate) fn random_u64() -> u64 {
    if installed() {
        return with("random", |d| Ok(d.exec.next_random()));
    }
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// Outbound HTTP goes to the test's stand-in (`Runner::on_http`), never to the network.
pub(crate) fn http_send(request: &Request) -> Option<Result<Response, Error>> {
    let no_handler = || {
        Error::new(
            "HttpError",
            format!(
                "{} {} failed: no HTTP stand-in in this test (Runner::on_http)",
                request.method, request.url
            ),
        )
    };
    if !installed() {
        return Some(Err(no_handler()));
    }
    // Taken out while it runs, so that it may be anything, even re-entrant.
    let Some(mut handler) = with("http", |d| Ok(d.exec.http.take())) else {
        return Some(Err(no_handler()));
    };
    let view = super::HttpRequest {
        method: request.method.to_ascii_uppercase(),
        url: request.url.clone(),
        headers: request.headers.clone(),
        body: request.body.clone(),
    };
    let answer = handler(&view);
    with("http", |d| {
        d.exec.http = Some(handler);
        Ok(())
    });
    Some(answer)
}
