//! The deterministic replay core: `(journal, call) -> effects`. No IO, no clock, no wasm.
//!
//! A `Journal` is the fold of an execution's history events. An `Activation` wraps it for one
//! run of the guest: it assigns positional operation ids, compares each call with the journal
//! (replay) or decides what a new operation records (live), and returns `Effects`: the events
//! to append, the timers and callback records to persist, whether the write must be fsynced
//! before the guest continues, and whether the guest continues or suspends. The driver
//! (`host_api`) performs the effects.
//!
//! Architecture invariant: nothing here performs IO or reads a clock; time and randomness are
//! parameters, so every decision is reproducible in a unit test.

mod batch;
mod event;
pub mod retry;

use std::collections::HashMap;

pub use batch::{
    BatchItem, BatchKind, BatchOutcome, BatchSpec, BatchStart, BranchStart, BranchStatus,
    CompletionPolicy, CompletionReason,
};
pub use event::{ContextKind, ErrorObject, Event, EventKind, OpRef, RedriveTrigger};
pub use retry::{Backoff, Jitter, RetryPolicy};

/// A guest may record at most this many operations in one execution, so a runaway loop of
/// durable calls cannot grow a journal (and every later replay) without bound.
pub const MAX_OPERATIONS: usize = 100_000;

/// The longest an execution may run (366 days, as AWS allows); waits and callback timeouts
/// are bounded by it (`Limits::max_wait_ms`). The host's settings use the same bound.
pub const MAX_EXECUTION_TIMEOUT_SECS: u64 = 366 * 24 * 3600;

/// Limits on what a guest may record, handed in by the driver (the journal reads no
/// configuration). Over a count limit the call is a `Violation::Limit`
/// (`Durable.LimitExceeded`, naming the limit and its value); an error over a size limit is
/// cut with a marker instead (see `bound_error`), because a failure must still be recorded.
#[derive(Clone, Debug, PartialEq)]
pub struct Limits {
    /// Operations one execution may record (`MAX_OPERATIONS`).
    pub max_operations: usize,
    /// History events after which no new operation or attempt starts. Every replay loads
    /// the whole history, so this bounds each activation's load; events that close what is
    /// already open (ends, completions) are still recorded, so the total can pass this by
    /// at most the number of open operations.
    pub max_history_events: u32,
    /// How deep child contexts may nest. Positional ids grow with depth (`1.1.1...`) and
    /// every event carries its id and its parent's, so a chain of depth d costs O(d) per
    /// level; the bound keeps that constant.
    pub max_context_depth: u32,
    /// Bytes of an operation's name (names are stored in every event of the operation).
    pub max_name_bytes: usize,
    /// Callbacks created and not yet resolved, per execution (each holds a record, a
    /// history entry and up to two timers).
    pub max_pending_callbacks: usize,
    /// The longest wait, callback timeout or heartbeat timeout, in ms. Longer could never
    /// end before the execution's own timeout, and `now + ms` must not overflow.
    pub max_wait_ms: u64,
    /// Bytes kept of an error's type; longer is cut with a marker.
    pub max_error_type_bytes: usize,
    /// Bytes kept of an error's message; longer is cut with a marker.
    pub max_error_message_bytes: usize,
    /// Bytes of an error's data (JSON); larger data is dropped (cut JSON is not JSON) and
    /// the message says so.
    pub max_error_data_bytes: usize,
    /// Checks one `wait_for_condition` may run. The guest's wait strategy decides when to
    /// stop; this bounds a strategy that never does (each check costs three history events
    /// and an activation).
    pub max_condition_checks: u32,
}

/// The defaults, with why:
impl Default for Limits {
    fn default() -> Self {
        Self {
            max_operations: MAX_OPERATIONS,
            // Room for MAX_OPERATIONS steps with a start and an end each, plus retries and
            // activation records; every activation loads and folds them all (about half a
            // second at this size).
            max_history_events: 250_000,
            // Far deeper than structured code nests (an SDK's map or parallel adds one or
            // two levels); a deep chain stays under 1 MB of ids.
            max_context_depth: 128,
            // AWS durable functions accept operation names of up to 256 characters.
            max_name_bytes: 256,
            // A fan-out wider than this belongs in separate executions; 10,000 pending
            // callbacks cost about 25 MB of records.
            max_pending_callbacks: 10_000,
            // The longest execution timeout (366 days, as AWS allows).
            max_wait_ms: MAX_EXECUTION_TIMEOUT_SECS * 1000,
            // Types are identifiers that retry filters match; 256 bytes like names.
            max_error_type_bytes: 256,
            // A message with a stack trace fits; 64 KiB x every recorded failure stays small.
            max_error_message_bytes: 64 * 1024,
            max_error_data_bytes: 64 * 1024,
            // A check a minute for a week; the SDKs' default strategy stops after 60.
            max_condition_checks: 10_080,
        }
    }
}

/// Cut `s` to at most `max` bytes (on a char boundary), ending with a marker that says how
/// long it was (no marker when `max` is too small to hold one).
pub fn cut_with_marker(s: &mut String, max: usize) {
    if s.len() <= max {
        return;
    }
    let total = s.len();
    let mut marker = format!(" …[cut: {total} bytes in all]");
    if marker.len() > max {
        marker.clear();
    }
    let mut cut = max - marker.len();
    while !s.is_char_boundary(cut) {
        cut -= 1;
    }
    s.truncate(cut);
    s.push_str(&marker);
}

impl Limits {
    /// An error within the size limits: type and message cut with a marker, data over its
    /// limit dropped (the message says so). Deterministic, so a replay records the same.
    pub fn bound_error(&self, mut e: ErrorObject) -> ErrorObject {
        if e.error_data
            .as_ref()
            .is_some_and(|d| d.len() > self.max_error_data_bytes)
        {
            let n = e.error_data.take().map_or(0, |d| d.len());
            let note = format!(
                " [error_data dropped: {n} bytes, over the limit max_error_data_bytes = {}]",
                self.max_error_data_bytes
            );
            cut_with_marker(
                &mut e.error_message,
                self.max_error_message_bytes.saturating_sub(note.len()),
            );
            e.error_message.push_str(&note);
        }
        cut_with_marker(&mut e.error_type, self.max_error_type_bytes);
        cut_with_marker(&mut e.error_message, self.max_error_message_bytes);
        e
    }

    /// A callback resolution with its error bounded (what history records and the guest
    /// sees, on the first run and on replay alike).
    pub fn bound_resolution(&self, r: Resolution) -> Resolution {
        match r {
            Resolution::Failed(e) => Resolution::Failed(self.bound_error(e)),
            other => other,
        }
    }

    fn exceeded(name: &str, value: impl std::fmt::Display, what: String) -> Violation {
        Violation::Limit(format!("{what}: over the limit {name} = {value}"))
    }
}

/// Error types the host itself records.
pub mod error_types {
    pub const NON_DETERMINISTIC: &str = "NonDeterministicExecution";
    pub const PROTOCOL_VIOLATION: &str = "Durable.ProtocolViolation";
    pub const LIMIT_EXCEEDED: &str = "Durable.LimitExceeded";
    pub const PAYLOAD_TOO_LARGE: &str = "PayloadTooLarge";
    pub const INVALID_PAYLOAD: &str = "InvalidPayload";
    pub const STEP_INTERRUPTED: &str = "StepInterrupted";
    pub const CALLBACK_TIMEOUT: &str = "Callback.Timeout";
    pub const CALLBACK_HEARTBEAT_TIMEOUT: &str = "Callback.HeartbeatTimeout";
    pub const TRAP: &str = "Runtime.Trap";
    /// The host cannot run the execution: its component is gone or no longer loads.
    pub const LOAD_ERROR: &str = "Runtime.LoadError";
    pub const ACTIVATION_TIMEOUT: &str = "Runtime.ActivationTimeout";
    pub const HOST_RESTARTED: &str = "Runtime.HostRestarted";
    pub const STOPPED: &str = "Execution.Stopped";
    pub const EXECUTION_TIMEOUT: &str = "Execution.Timeout";
    /// An `invoke` named a function its tenant does not have.
    pub const INVOKE_FUNCTION_NOT_FOUND: &str = "Invoke.FunctionNotFound";
    /// An `invoke` whose callee was not admitted (rate, quota, backlog): nothing started.
    pub const INVOKE_REFUSED: &str = "Invoke.Refused";
    /// An `invoke` named another tenant.
    pub const INVOKE_TENANT_MISMATCH: &str = "Invoke.TenantMismatch";
    /// An `invoke` whose callee's record is gone (deleted before its end was recorded).
    pub const INVOKE_CALLEE_GONE: &str = "Invoke.CalleeGone";
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepSemantics {
    AtLeastOncePerRetry,
    AtMostOncePerRetry,
}

/// The kind of an operation, compared on replay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpKind {
    Step,
    Wait,
    Callback,
    Context(ContextKind),
    /// A `wait_for_condition`: a step whose check runs again after a delay, with the
    /// state the previous check returned.
    Condition,
    /// An `invoke`: another execution (the callee) whose end is this operation's.
    Invoke,
}

impl std::fmt::Display for OpKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpKind::Step => f.write_str("step"),
            OpKind::Wait => f.write_str("wait"),
            OpKind::Callback => f.write_str("callback"),
            OpKind::Context(ContextKind::RunInChildContext) => f.write_str("child context"),
            OpKind::Context(ContextKind::WaitForCallback) => f.write_str("wait-for-callback"),
            OpKind::Context(ContextKind::Map) => f.write_str("map"),
            OpKind::Context(ContextKind::MapIteration) => f.write_str("map iteration"),
            OpKind::Context(ContextKind::Parallel) => f.write_str("parallel"),
            OpKind::Context(ContextKind::ParallelBranch) => f.write_str("parallel branch"),
            OpKind::Condition => f.write_str("wait-for-condition"),
            OpKind::Invoke => f.write_str("invoke"),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum StepProgress {
    /// An attempt started and has no outcome yet.
    Started {
        attempt: u32,
    },
    /// An attempt failed (or, for a `wait_for_condition`, a check asked to check again)
    /// and the next one is due at `retry_at_ms`.
    RetryScheduled {
        failed_attempt: u32,
        retry_at_ms: u64,
    },
    Succeeded {
        result: String,
    },
    Failed {
        error: ErrorObject,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum OpState {
    Step(StepProgress),
    Wait {
        duration_ms: u64,
        scheduled_end_ms: u64,
        done: bool,
    },
    Callback {
        callback_id: String,
        outcome: Option<Result<String, ErrorObject>>,
    },
    Context {
        outcome: Option<Result<String, ErrorObject>>,
    },
    /// An `invoke`: its callee (none if it never started) and, once ended, its outcome.
    Invoke {
        callee: Option<String>,
        outcome: Option<Result<String, ErrorObject>>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub struct Op {
    pub kind: OpKind,
    pub op: OpRef,
    pub state: OpState,
}

/// Why an execution cannot go on: the guest broke the protocol, diverged from its journal,
/// or hit a limit. Each fails the execution with its own error type.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum Violation {
    #[error("{0}")]
    NonDeterministic(String),
    #[error("{0}")]
    Protocol(String),
    #[error("{0}")]
    Limit(String),
}

impl Violation {
    pub fn to_error(&self) -> ErrorObject {
        let ty = match self {
            Violation::NonDeterministic(_) => error_types::NON_DETERMINISTIC,
            Violation::Protocol(_) => error_types::PROTOCOL_VIOLATION,
            Violation::Limit(_) => error_types::LIMIT_EXCEEDED,
        };
        ErrorObject::new(ty, self.to_string())
    }
}

/// The fold of an execution's history.
#[derive(Clone, Debug, Default)]
pub struct Journal {
    ops: HashMap<String, Op>,
    next_seq: u32,
    input: String,
    /// When a delayed execution starts (`EventKind::ExecutionStartedAt`).
    start_ms: Option<u64>,
    last_kind: Option<&'static str>,
    terminal: bool,
    /// Callbacks started and not yet resolved (kept by `apply`, so no scan is needed).
    pending_callbacks: usize,
    /// Operations a redrive forgot, with how many times (their log positions differ).
    reruns: HashMap<String, u32>,
    /// When it was last redriven.
    redriven_ms: Option<u64>,
    /// The event that failed each failed operation for good (its `seq`).
    failed_at: HashMap<String, u32>,
    /// Per parent context (`None`: the top level), the first event of the latest operation
    /// started in it: an operation failed before that was handled by the guest.
    latest_start: HashMap<Option<String>, u32>,
    /// The state the latest check of each `wait_for_condition` returned.
    condition_states: HashMap<String, String>,
    /// Each batch's journaled options (`BatchStarted`): count, max concurrency, policy.
    batch_options: HashMap<String, (u32, Option<u32>, batch::CompletionPolicy)>,
}

impl Journal {
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Self {
        let mut j = Journal {
            next_seq: 1,
            ..Default::default()
        };
        for e in events {
            j.apply(e);
        }
        j
    }

    /// Fold one event into the state.
    pub fn apply(&mut self, e: &Event) {
        self.next_seq = self.next_seq.max(e.seq + 1);
        self.last_kind = Some(e.kind.event_type());
        if e.kind.is_terminal() {
            self.terminal = true;
        }
        let kind_of = |k: &EventKind| match k {
            EventKind::StepStarted { .. }
            | EventKind::StepSucceeded { .. }
            | EventKind::StepFailed { .. } => OpKind::Step,
            EventKind::ConditionStarted { .. }
            | EventKind::ConditionSucceeded { .. }
            | EventKind::ConditionFailed { .. } => OpKind::Condition,
            EventKind::WaitStarted { .. } | EventKind::WaitSucceeded { .. } => OpKind::Wait,
            EventKind::ContextStarted { kind, .. }
            | EventKind::BatchStarted { kind, .. }
            | EventKind::ContextSucceeded { kind, .. }
            | EventKind::ContextFailed { kind, .. } => OpKind::Context(*kind),
            EventKind::ChainedInvokeStarted { .. }
            | EventKind::ChainedInvokeSucceeded { .. }
            | EventKind::ChainedInvokeFailed { .. }
            | EventKind::ChainedInvokeTimedOut { .. }
            | EventKind::ChainedInvokeStopped { .. } => OpKind::Invoke,
            _ => OpKind::Callback,
        };
        match &e.kind {
            EventKind::StepFailed {
                op,
                next_attempt_delay_ms: None,
                ..
            }
            | EventKind::CallbackFailed { op, .. }
            | EventKind::CallbackTimedOut { op, .. }
            | EventKind::ContextFailed { op, .. }
            | EventKind::ConditionFailed { op, .. }
            | EventKind::ChainedInvokeFailed { op, .. }
            | EventKind::ChainedInvokeTimedOut { op, .. }
            | EventKind::ChainedInvokeStopped { op, .. } => {
                self.failed_at.insert(op.id.clone(), e.seq);
            }
            _ => {}
        }
        let state = match &e.kind {
            EventKind::ExecutionStarted { input } => {
                self.input = input.clone();
                return;
            }
            EventKind::ExecutionStartedAt { input, start_ms } => {
                self.input = input.clone();
                self.start_ms = Some(*start_ms);
                return;
            }
            EventKind::StepStarted { attempt, .. } => {
                OpState::Step(StepProgress::Started { attempt: *attempt })
            }
            EventKind::StepSucceeded { result, .. } => OpState::Step(StepProgress::Succeeded {
                result: result.clone(),
            }),
            EventKind::StepFailed {
                error,
                attempt,
                next_attempt_delay_ms,
                ..
            } => OpState::Step(match next_attempt_delay_ms {
                Some(d) => StepProgress::RetryScheduled {
                    failed_attempt: *attempt,
                    retry_at_ms: e.at_ms.saturating_add(*d),
                },
                None => StepProgress::Failed {
                    error: error.clone(),
                },
            }),
            EventKind::ConditionStarted { attempt, .. } => {
                OpState::Step(StepProgress::Started { attempt: *attempt })
            }
            EventKind::ConditionSucceeded {
                op,
                state,
                attempt,
                next_attempt_delay_ms,
            } => OpState::Step(match next_attempt_delay_ms {
                Some(d) => {
                    self.condition_states.insert(op.id.clone(), state.clone());
                    StepProgress::RetryScheduled {
                        failed_attempt: *attempt,
                        retry_at_ms: e.at_ms.saturating_add(*d),
                    }
                }
                None => StepProgress::Succeeded {
                    result: state.clone(),
                },
            }),
            EventKind::ConditionFailed { error, .. } => OpState::Step(StepProgress::Failed {
                error: error.clone(),
            }),
            EventKind::WaitStarted {
                duration_ms,
                scheduled_end_ms,
                ..
            } => OpState::Wait {
                duration_ms: *duration_ms,
                scheduled_end_ms: *scheduled_end_ms,
                done: false,
            },
            EventKind::WaitSucceeded { duration_ms, .. } => OpState::Wait {
                duration_ms: *duration_ms,
                scheduled_end_ms: e.at_ms,
                done: true,
            },
            EventKind::CallbackStarted { callback_id, .. } => {
                self.pending_callbacks += 1;
                OpState::Callback {
                    callback_id: callback_id.clone(),
                    outcome: None,
                }
            }
            EventKind::CallbackSucceeded { op, result } => {
                self.set_callback_outcome(&op.id, Ok(result.clone()));
                return;
            }
            EventKind::CallbackFailed { op, error } | EventKind::CallbackTimedOut { op, error } => {
                self.set_callback_outcome(&op.id, Err(error.clone()));
                return;
            }
            EventKind::ContextStarted { .. } => OpState::Context { outcome: None },
            EventKind::BatchStarted {
                op,
                count,
                max_concurrency,
                policy,
                ..
            } => {
                let options = (*count, *max_concurrency, policy.clone());
                self.batch_options.insert(op.id.clone(), options);
                OpState::Context { outcome: None }
            }
            EventKind::ContextSucceeded { result, .. } => OpState::Context {
                outcome: Some(Ok(result.clone())),
            },
            EventKind::ContextFailed { error, .. } => OpState::Context {
                outcome: Some(Err(error.clone())),
            },
            EventKind::ChainedInvokeStarted { callee, .. } => OpState::Invoke {
                callee: callee.clone(),
                outcome: None,
            },
            EventKind::ChainedInvokeSucceeded { op, result } => {
                self.set_invoke_outcome(&op.id, Ok(result.clone()));
                return;
            }
            EventKind::ChainedInvokeFailed { op, error }
            | EventKind::ChainedInvokeTimedOut { op, error }
            | EventKind::ChainedInvokeStopped { op, error } => {
                self.set_invoke_outcome(&op.id, Err(error.clone()));
                return;
            }
            EventKind::ExecutionRedriven { .. } => {
                self.redriven_ms = Some(e.at_ms);
                self.redriven();
                return;
            }
            EventKind::InvocationCompleted { .. }
            | EventKind::ExecutionSucceeded { .. }
            | EventKind::ExecutionFailed { .. }
            | EventKind::ExecutionTimedOut { .. }
            | EventKind::ExecutionStopped { .. } => return,
        };
        let op = e.kind.op().expect("operation event").clone();
        let kind = kind_of(&e.kind);
        if !self.ops.contains_key(&op.id) {
            self.latest_start.insert(op.parent.clone(), e.seq);
        }
        self.ops.insert(op.id.clone(), Op { kind, op, state });
    }

    /// `ExecutionRedriven`: the execution runs again. What failed is forgotten, so that it
    /// runs again as if new (attempts counted from 1, a fresh retry budget); what succeeded
    /// stays and replays; what was under way stays as it was (a wait keeps its end, an
    /// interrupted attempt is handled as after a crash, a pending callback may still be
    /// resolved). In detail:
    /// - a step that failed for good, or was waiting for a retry, is forgotten;
    /// - a `wait_for_condition` that failed is forgotten (it starts again from its initial
    ///   state); one waiting for its next check stays, with its state and timer;
    /// - a callback that failed or timed out is forgotten: the guest creates a new one
    ///   (a new callback id);
    /// - a failed `WaitForCallback` context is forgotten with everything inside it, so the
    ///   callback is created again and its submitter runs again with the new id (the AWS
    ///   behaviour: a failed callback is recreated on redrive);
    /// - a failed child context (`RunInChildContext`) is open again: its operations that
    ///   succeeded replay, its failed ones follow these rules;
    /// - a delayed start that never came starts at once.
    ///
    /// A failure the guest handled (it went on to start another operation in the same
    /// context after it, e.g. a caught error and a fallback) is not what failed the
    /// execution: it stays, and replays as the failure the guest handled, so that the
    /// guest takes the same path again.
    fn redriven(&mut self) {
        self.terminal = false;
        self.start_ms = None;
        let mut forget: Vec<String> = Vec::new();
        let mut forgotten_contexts: Vec<String> = Vec::new();
        for (id, op) in self.ops.iter_mut() {
            let handled = self.failed_at.get(id).is_some_and(|failed| {
                self.latest_start
                    .get(&op.op.parent)
                    .is_some_and(|started| started > failed)
            });
            if handled {
                continue;
            }
            match &mut op.state {
                OpState::Step(StepProgress::RetryScheduled { .. })
                    if op.kind == OpKind::Condition => {}
                OpState::Step(StepProgress::Failed { .. })
                | OpState::Step(StepProgress::RetryScheduled { .. })
                | OpState::Callback {
                    outcome: Some(Err(_)),
                    ..
                }
                // An invoke that failed, or whose callee the execution's end stopped (one
                // still waiting): it runs again with a new callee.
                | OpState::Invoke {
                    outcome: None | Some(Err(_)),
                    ..
                } => forget.push(id.clone()),
                OpState::Context {
                    outcome: outcome @ Some(Err(_)),
                } => match op.kind {
                    OpKind::Context(ContextKind::WaitForCallback) => {
                        forgotten_contexts.push(id.clone())
                    }
                    // A branch's failure is part of its batch's outcome, which is recorded.
                    OpKind::Context(ContextKind::MapIteration | ContextKind::ParallelBranch) => {}
                    _ => *outcome = None,
                },
                _ => {}
            }
        }
        if !forgotten_contexts.is_empty() {
            let prefixes: Vec<String> =
                forgotten_contexts.iter().map(|c| format!("{c}.")).collect();
            forget.extend(
                self.ops
                    .keys()
                    .filter(|id| prefixes.iter().any(|p| id.starts_with(p.as_str())))
                    .cloned(),
            );
            forget.extend(forgotten_contexts);
        }
        for id in forget {
            *self.reruns.entry(id.clone()).or_default() += 1;
            self.condition_states.remove(&id);
            if let Some(Op {
                state: OpState::Callback { outcome: None, .. },
                ..
            }) = self.ops.remove(&id)
            {
                self.pending_callbacks = self.pending_callbacks.saturating_sub(1);
            }
        }
    }

    fn set_invoke_outcome(&mut self, id: &str, outcome: Result<String, ErrorObject>) {
        if let Some(Op {
            state: OpState::Invoke { outcome: o, .. },
            ..
        }) = self.ops.get_mut(id)
        {
            *o = Some(outcome);
        }
    }

    /// Invokes whose callee started and has not ended in the journal: (operation id,
    /// callee execution id), in operation id order.
    pub fn pending_invokes(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .ops
            .values()
            .filter_map(|op| match &op.state {
                OpState::Invoke {
                    callee: Some(callee),
                    outcome: None,
                } => Some((op.op.id.clone(), callee.clone())),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    fn set_callback_outcome(&mut self, id: &str, outcome: Result<String, ErrorObject>) {
        if let Some(Op {
            state: OpState::Callback { outcome: o, .. },
            ..
        }) = self.ops.get_mut(id)
        {
            if o.is_none() {
                self.pending_callbacks = self.pending_callbacks.saturating_sub(1);
            }
            *o = Some(outcome);
        }
    }

    /// Callbacks created and not yet resolved in the journal.
    pub fn pending_callback_count(&self) -> usize {
        self.pending_callbacks
    }

    pub fn op(&self, id: &str) -> Option<&Op> {
        self.ops.get(id)
    }

    pub fn operation_count(&self) -> usize {
        self.ops.len()
    }

    pub fn next_seq(&self) -> u32 {
        self.next_seq
    }

    /// Number the next event `n` or later: an execution whose batch runs on several
    /// instances at once numbers its events from one shared counter (the host's fan-out),
    /// so each instance's journal takes the counter before it records.
    pub fn set_next_seq(&mut self, n: u32) {
        self.next_seq = self.next_seq.max(n);
    }

    pub fn input(&self) -> &str {
        &self.input
    }

    /// When a delayed execution starts (`?delay=`, `?start_at=`); `None` if it started at
    /// once.
    pub fn start_ms(&self) -> Option<u64> {
        self.start_ms
    }

    pub fn is_terminal(&self) -> bool {
        self.terminal
    }

    /// When the execution was last redriven (its `ExecutionRedriven`), if ever.
    pub fn redriven_ms(&self) -> Option<u64> {
        self.redriven_ms
    }

    /// The type of the last event, if any.
    pub fn last_event_type(&self) -> Option<&'static str> {
        self.last_kind
    }

    /// Callbacks created and not yet resolved in the journal: (operation id, callback id).
    pub fn pending_callbacks(&self) -> Vec<(String, String)> {
        let mut v: Vec<_> = self
            .ops
            .values()
            .filter_map(|op| match &op.state {
                OpState::Callback {
                    callback_id,
                    outcome: None,
                } => Some((op.op.id.clone(), callback_id.clone())),
                _ => None,
            })
            .collect();
        v.sort();
        v
    }

    /// Every callback id this execution ever created.
    pub fn callback_ids(&self) -> Vec<String> {
        self.ops
            .values()
            .filter_map(|op| match &op.state {
                OpState::Callback { callback_id, .. } => Some(callback_id.clone()),
                _ => None,
            })
            .collect()
    }

    /// Timers this execution still holds: (due, operation id).
    pub fn live_timers(&self) -> Vec<(u64, String)> {
        self.ops
            .values()
            .filter_map(|op| match &op.state {
                OpState::Wait {
                    scheduled_end_ms,
                    done: false,
                    ..
                } => Some((*scheduled_end_ms, op.op.id.clone())),
                OpState::Step(StepProgress::RetryScheduled { retry_at_ms, .. }) => {
                    Some((*retry_at_ms, op.op.id.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// Append an event produced at `now_ms`: assigns the sequence number and folds it in.
    fn push(&mut self, now_ms: u64, kind: EventKind, out: &mut Vec<Event>) {
        let e = Event {
            seq: self.next_seq,
            at_ms: now_ms,
            kind,
        };
        self.apply(&e);
        out.push(e);
    }

    /// Events produced outside a guest call (activation boundaries, completions).
    pub fn record(&mut self, now_ms: u64, kind: EventKind) -> Event {
        let mut v = Vec::with_capacity(1);
        self.push(now_ms, kind, &mut v);
        v.pop().expect("one event")
    }
}

/// A durable timer the driver must persist (or, in `Effects::timers_done`, delete).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TimerRef {
    pub due_ms: u64,
    pub op_id: String,
}

/// A callback record the driver must persist before the guest continues.
#[derive(Clone, Debug, PartialEq)]
pub struct NewCallback {
    pub callback_id: String,
    pub op_id: String,
    pub timeout_deadline_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SuspendReason {
    Wait,
    RetryDelay,
    Callback,
    /// An `invoke` waits for its callee to end.
    Invoke,
    /// A map or parallel runs on branch instances (the host's choice; a host that runs
    /// every branch in one instance never suspends for it).
    Batch,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Reply<T> {
    Return(T),
    Suspend(SuspendReason),
}

/// What a guest call requires of the driver, in order: append `events`, put `timers`,
/// delete `timers_done`, create `callback`, fsync if `sync`, then reply or suspend.
#[derive(Clone, Debug, PartialEq)]
pub struct Effects<T> {
    pub events: Vec<Event>,
    pub timers: Vec<TimerRef>,
    pub timers_done: Vec<TimerRef>,
    pub callback: Option<NewCallback>,
    pub sync: bool,
    pub reply: Reply<T>,
}

impl<T> Effects<T> {
    pub fn new(reply: Reply<T>) -> Self {
        Self {
            events: Vec::new(),
            timers: Vec::new(),
            timers_done: Vec::new(),
            callback: None,
            sync: false,
            reply,
        }
    }
}

/// What the guest should do for a step (mirrors the WIT `step-state`).
#[derive(Clone, Debug, PartialEq)]
pub enum StepStart {
    Succeeded(String),
    Failed(ErrorObject),
    Run(u32),
}

/// What the guest should do for a `wait_for_condition` (mirrors the WIT `condition-state`).
#[derive(Clone, Debug, PartialEq)]
pub enum ConditionStart {
    Succeeded(String),
    Failed(ErrorObject),
    /// Run check number `attempt` on `state` (`None`: the guest's initial state).
    Check {
        attempt: u32,
        state: Option<String>,
    },
}

#[derive(Clone, Debug, PartialEq)]
pub enum ContextStart {
    Succeeded(String),
    Failed(ErrorObject),
    Run,
}

/// A callback's state as `await-callback` sees it in the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum CallbackPoll {
    Ready(Result<String, ErrorObject>),
    /// Not resolved in the journal: the driver looks at the callback record.
    Pending {
        callback_id: String,
    },
}

/// An `invoke` as the journal has it at its position.
#[derive(Clone, Debug, PartialEq)]
pub enum InvokePoll {
    /// Not in the journal: start the callee (`Activation::invoke_started`).
    New(OpRef),
    /// The callee is running: the driver looks at its record.
    Pending { op: OpRef, callee: String },
    /// Ended before (or never started): its outcome.
    Ready(Result<String, ErrorObject>),
}

/// How a callee ended, as its caller records it.
#[derive(Clone, Debug, PartialEq)]
pub enum InvokeEnd {
    Succeeded(String),
    Failed(ErrorObject),
    TimedOut(ErrorObject),
    Stopped(ErrorObject),
}

/// What `invoke_started` records.
#[derive(Clone, Debug, PartialEq)]
pub struct InvokeStart {
    pub function: String,
    pub input: String,
    pub tenant_id: Option<String>,
    /// The callee started: (its execution id, the version it runs); `Err` when none
    /// could be started, with why (recorded as `ChainedInvokeFailed` at once).
    pub callee: Result<(String, u32), ErrorObject>,
}

/// How an external system resolved a callback.
#[derive(Clone, Debug, PartialEq)]
pub enum Resolution {
    Succeeded(String),
    Failed(ErrorObject),
    TimedOut(ErrorObject),
}

#[derive(Clone, Debug)]
struct LiveStep {
    id: String,
    attempt: u32,
    policy: RetryPolicy,
    /// `Step`, or `Condition` for the check of a `wait_for_condition` (never retried).
    kind: OpKind,
}

/// One run of the guest over a journal.
pub struct Activation {
    journal: Journal,
    limits: Limits,
    counters: HashMap<Option<String>, u32>,
    /// Open child contexts: their depth and the open contexts started inside them, so that
    /// closing one closes its descendants without scanning every open context.
    open_contexts: HashMap<String, OpenContext>,
    live_step: Option<LiveStep>,
    /// Where the guest is, for replay-aware log dedup: (last op id, attempt, lines since).
    cursor: (String, u32, u32),
    started_ms: u64,
    /// Maps and parallels open in this activation (`batch-start` without `batch-finish`).
    batches: batch::OpenBatches,
}

#[derive(Debug, Default)]
struct OpenContext {
    depth: u32,
    children: Vec<String>,
}

/// Whether the next attempt of `id`, due at `retry_at_ms`, is due at `now_ms`: if so its
/// timer is done; if not it is kept (put again) and the caller suspends.
fn retry_due<T>(now_ms: u64, id: &str, retry_at_ms: u64, fx: &mut Effects<T>) -> bool {
    let timer = TimerRef {
        due_ms: retry_at_ms,
        op_id: id.to_string(),
    };
    let due = now_ms >= retry_at_ms;
    if due {
        fx.timers_done.push(timer);
    } else {
        fx.timers.push(timer);
    }
    due
}

/// Whether operation `id` is `scope` or runs under it (ids are dotted paths).
pub fn in_scope(id: &str, scope: &str) -> bool {
    id.strip_prefix(scope)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.'))
}

/// The id of the n-th operation under `parent`.
pub fn child_id(parent: Option<&str>, n: u32) -> String {
    match parent {
        None => n.to_string(),
        Some(p) => format!("{p}.{n}"),
    }
}

impl Activation {
    pub fn new(journal: Journal, started_ms: u64) -> Self {
        Self {
            journal,
            limits: Limits::default(),
            counters: HashMap::new(),
            open_contexts: HashMap::new(),
            live_step: None,
            cursor: (String::new(), 0, 0),
            started_ms,
            batches: batch::OpenBatches::new(),
        }
    }

    /// Run under these limits instead of the defaults.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    pub fn journal_mut(&mut self) -> &mut Journal {
        &mut self.journal
    }

    pub fn started_ms(&self) -> u64 {
        self.started_ms
    }

    /// The step whose body is running now, if any: (id, attempt).
    pub fn live_step(&self) -> Option<(&str, u32)> {
        self.live_step.as_ref().map(|s| (s.id.as_str(), s.attempt))
    }

    /// A key that names this log line's position in the guest's deterministic run.
    pub fn next_log_key(&mut self) -> String {
        let (op, attempt, n) = &mut self.cursor;
        // An operation a redrive made run again logs at new positions (its attempts count
        // from 1 again): its lines are not taken for those of its first run.
        let key = match self.journal.reruns.get(op.as_str()) {
            Some(g) => format!("{op}~{g}#{attempt}#{n}"),
            None => format!("{op}#{attempt}#{n}"),
        };
        *n += 1;
        key
    }

    fn touch(&mut self, id: &str, attempt: u32) {
        self.cursor = (id.to_string(), attempt, 0);
    }

    /// Assign the next id under `parent` and check the journal entry at that position.
    fn position(
        &mut self,
        call: &'static str,
        parent: Option<&str>,
        name: Option<&str>,
        kind: OpKind,
    ) -> Result<(OpRef, Option<Op>), Violation> {
        if let Some(live) = &self.live_step {
            return Err(Violation::Protocol(format!(
                "{call} called inside the body of step {}: durable operations cannot be nested in a step",
                live.id
            )));
        }
        if let Some(p) = parent {
            if !self.open_contexts.contains_key(p) {
                return Err(Violation::Protocol(format!(
                    "{call}: parent {p:?} is not an open child context"
                )));
            }
            if self.batches.contains_key(p) {
                return Err(Violation::Protocol(format!(
                    "{call}: parent {p:?} is a map or parallel: operations run in its branches"
                )));
            }
        }
        let n = self.counters.entry(parent.map(str::to_string)).or_insert(0);
        *n += 1;
        let id = child_id(parent, *n);
        let op = OpRef {
            id: id.clone(),
            parent: parent.map(str::to_string),
            name: name.map(str::to_string),
        };
        let existing = self.journal.ops.get(&id).cloned();
        match &existing {
            Some(e) if e.kind != kind || e.op.name != op.name => {
                return Err(Violation::NonDeterministic(format!(
                    "operation {id}: the journal has {} {:?} but the function now calls {} {:?}; \
                     the function's code path changed between runs",
                    e.kind, e.op.name, kind, op.name
                )));
            }
            None if self.journal.ops.len() >= self.limits.max_operations => {
                return Err(Limits::exceeded(
                    "max_operations",
                    self.limits.max_operations,
                    format!(
                        "{call}: the execution has recorded {} operations",
                        self.journal.ops.len()
                    ),
                ));
            }
            None => {
                // Only new operations are checked: what is journaled already replays, even
                // after an operator lowered a limit.
                if let Some(name) = name.filter(|n| n.len() > self.limits.max_name_bytes) {
                    return Err(Limits::exceeded(
                        "max_name_bytes",
                        self.limits.max_name_bytes,
                        format!("{call}: the operation name is {} bytes", name.len()),
                    ));
                }
                self.check_history_room(call)?
            }
            _ => {}
        }
        self.touch(&id, 0);
        Ok((op, existing))
    }

    /// Whether the history has room for another operation or attempt.
    fn check_history_room(&self, call: &str) -> Result<(), Violation> {
        let events = self.journal.next_seq.saturating_sub(1);
        if events >= self.limits.max_history_events {
            return Err(Limits::exceeded(
                "max_history_events",
                self.limits.max_history_events,
                format!("{call}: the execution's history holds {events} events"),
            ));
        }
        Ok(())
    }

    /// A duration the guest asked for, within `max_wait_ms`.
    fn check_duration(&self, call: &str, what: &str, ms: Option<u64>) -> Result<(), Violation> {
        match ms {
            Some(ms) if ms > self.limits.max_wait_ms => Err(Limits::exceeded(
                "max_wait_ms",
                self.limits.max_wait_ms,
                format!("{call}: the {what} is {ms} ms"),
            )),
            _ => Ok(()),
        }
    }

    /// `position` for an operation folded as a step (a step or a condition): its progress.
    fn step_position(
        &mut self,
        call: &'static str,
        parent: Option<&str>,
        name: Option<&str>,
        kind: OpKind,
    ) -> Result<(OpRef, Option<StepProgress>), Violation> {
        let (op, existing) = self.position(call, parent, name, kind)?;
        let progress = match existing {
            None => None,
            Some(Op {
                state: OpState::Step(p),
                ..
            }) => Some(p),
            Some(_) => unreachable!("kind checked by position"),
        };
        Ok((op, progress))
    }

    pub fn step_start(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
        semantics: StepSemantics,
        policy: RetryPolicy,
        unit_random: f64,
    ) -> Result<Effects<(String, StepStart)>, Violation> {
        let (op, progress) = self.step_position("step-start", parent, name, OpKind::Step)?;
        let id = op.id.clone();
        let mut fx = Effects::new(Reply::Suspend(SuspendReason::RetryDelay));
        let start_attempt = |this: &mut Self, fx: &mut Effects<_>, attempt: u32| {
            this.journal.push(
                now_ms,
                EventKind::StepStarted {
                    op: op.clone(),
                    attempt,
                },
                &mut fx.events,
            );
            fx.sync = semantics == StepSemantics::AtMostOncePerRetry;
            this.live_step = Some(LiveStep {
                id: id.clone(),
                attempt,
                policy: policy.clone(),
                kind: OpKind::Step,
            });
            this.touch(&id, attempt);
            Reply::Return((id.clone(), StepStart::Run(attempt)))
        };
        fx.reply = match progress {
            None => start_attempt(self, &mut fx, 1),
            Some(StepProgress::Succeeded { result }) => {
                Reply::Return((id.clone(), StepStart::Succeeded(result)))
            }
            Some(StepProgress::Failed { error }) => {
                Reply::Return((id.clone(), StepStart::Failed(error)))
            }
            Some(StepProgress::RetryScheduled {
                failed_attempt,
                retry_at_ms,
            }) => match retry_due(now_ms, &id, retry_at_ms, &mut fx) {
                true => start_attempt(self, &mut fx, failed_attempt + 1),
                false => Reply::Suspend(SuspendReason::RetryDelay),
            },
            Some(StepProgress::Started { attempt }) => match semantics {
                // The attempt was cut short (crash or trap) before it recorded anything:
                // run it again.
                StepSemantics::AtLeastOncePerRetry => start_attempt(self, &mut fx, attempt),
                StepSemantics::AtMostOncePerRetry => {
                    let error = ErrorObject::new(
                        error_types::STEP_INTERRUPTED,
                        format!(
                            "attempt {attempt} of at-most-once step {id} started but never finished"
                        ),
                    );
                    self.live_step = Some(LiveStep {
                        id: id.clone(),
                        attempt,
                        policy: policy.clone(),
                        kind: OpKind::Step,
                    });
                    let failed = self.fail_live(now_ms, error.clone(), unit_random, &mut fx);
                    match failed {
                        Reply::Return(Some(next)) => {
                            Reply::Return((id.clone(), StepStart::Run(next)))
                        }
                        Reply::Return(None) => {
                            Reply::Return((id.clone(), StepStart::Failed(error)))
                        }
                        Reply::Suspend(r) => Reply::Suspend(r),
                    }
                }
            },
        };
        Ok(fx)
    }

    fn take_live(&mut self, call: &str, id: &str, kind: OpKind) -> Result<LiveStep, Violation> {
        match &self.live_step {
            Some(s) if s.id == id && s.kind == kind => Ok(self.live_step.take().expect("checked")),
            _ => Err(Violation::Protocol(format!(
                "{call}: {kind} {id:?} is not the {kind} running now"
            ))),
        }
    }

    pub fn step_succeed(
        &mut self,
        now_ms: u64,
        id: &str,
        value: String,
    ) -> Result<Effects<()>, Violation> {
        self.end_live(now_ms, "step-succeed", id, OpKind::Step, |op, attempt| {
            EventKind::StepSucceeded {
                op,
                result: value,
                attempt,
            }
        })
    }

    /// Record the final event of the running step's attempt (fsynced).
    fn end_live(
        &mut self,
        now_ms: u64,
        call: &str,
        id: &str,
        kind: OpKind,
        event: impl FnOnce(OpRef, u32) -> EventKind,
    ) -> Result<Effects<()>, Violation> {
        let live = self.take_live(call, id, kind)?;
        let op = self.journal.ops[id].op.clone();
        let mut fx = Effects::new(Reply::Return(()));
        self.journal
            .push(now_ms, event(op, live.attempt), &mut fx.events);
        fx.sync = true;
        Ok(fx)
    }

    /// A failed attempt of the running step, decided by its retry policy. Replies
    /// `Some(next attempt)` to run again at once, `None` when the step failed for good, or
    /// suspends for the retry delay.
    pub fn step_fail(
        &mut self,
        now_ms: u64,
        id: &str,
        error: ErrorObject,
        unit_random: f64,
    ) -> Result<Effects<Option<u32>>, Violation> {
        if !matches!(&self.live_step, Some(s) if s.id == id && s.kind == OpKind::Step) {
            return Err(Violation::Protocol(format!(
                "step-fail: step {id:?} is not the step running now"
            )));
        }
        let mut fx = Effects::new(Reply::Return(None));
        let error = self.limits.bound_error(error);
        fx.reply = self.fail_live(now_ms, error, unit_random, &mut fx);
        Ok(fx)
    }

    /// A failure of the running step that must not be retried (e.g. its result was too
    /// large: running it again would not help).
    pub fn step_fail_final(
        &mut self,
        now_ms: u64,
        id: &str,
        error: ErrorObject,
    ) -> Result<Effects<()>, Violation> {
        self.end_live(now_ms, "step-succeed", id, OpKind::Step, |op, attempt| {
            EventKind::StepFailed {
                op,
                error,
                attempt,
                next_attempt_delay_ms: None,
            }
        })
    }

    /// The running step's attempt ended by a trap or timeout of the whole activation.
    /// Returns `None` when no step was running.
    pub fn interrupt_live_step(
        &mut self,
        now_ms: u64,
        error: ErrorObject,
        unit_random: f64,
    ) -> Option<Effects<Option<u32>>> {
        self.live_step.as_ref()?;
        let mut fx = Effects::new(Reply::Return(None));
        fx.reply = self.fail_live(now_ms, error, unit_random, &mut fx);
        // The guest is gone: an immediate retry happens in the next activation.
        if let Reply::Return(Some(_)) = fx.reply {
            self.live_step = None;
        }
        Some(fx)
    }

    fn fail_live<T>(
        &mut self,
        now_ms: u64,
        error: ErrorObject,
        unit_random: f64,
        fx: &mut Effects<T>,
    ) -> Reply<Option<u32>> {
        let live = self.live_step.take().expect("a live step");
        let op = self.journal.ops[&live.id].op.clone();
        let mut error = error;
        let mut delay = live
            .policy
            .next_delay_ms(live.attempt, &error.error_type, unit_random)
            .map(|d| d.min(self.limits.max_wait_ms));
        if delay.is_some() {
            if let Err(v) = self.check_history_room("step retry") {
                // No room for another attempt: the step fails for good, saying why.
                let message = format!("{v}; attempt {} failed with {error}", live.attempt);
                error = self
                    .limits
                    .bound_error(ErrorObject::new(error_types::LIMIT_EXCEEDED, message));
                delay = None;
            }
        }
        let event = match live.kind {
            OpKind::Condition => EventKind::ConditionFailed {
                op: op.clone(),
                error,
                attempt: live.attempt,
            },
            _ => EventKind::StepFailed {
                op: op.clone(),
                error,
                attempt: live.attempt,
                next_attempt_delay_ms: delay,
            },
        };
        self.journal.push(now_ms, event, &mut fx.events);
        fx.sync = true;
        match delay {
            None => Reply::Return(None),
            Some(0) => {
                let next = live.attempt + 1;
                self.journal.push(
                    now_ms,
                    EventKind::StepStarted { op, attempt: next },
                    &mut fx.events,
                );
                self.touch(&live.id, next);
                self.live_step = Some(LiveStep {
                    attempt: next,
                    ..live
                });
                Reply::Return(Some(next))
            }
            Some(d) => {
                fx.timers.push(TimerRef {
                    due_ms: now_ms.saturating_add(d),
                    op_id: live.id,
                });
                Reply::Suspend(SuspendReason::RetryDelay)
            }
        }
    }

    /// Begin (or replay) a `wait_for_condition`. Replies its id and what to do: its
    /// recorded end, or a check to run with its number and the state the previous check
    /// returned (`None`: the guest's initial state). Suspends while the next check is not
    /// due. The check runs like a step body (no durable call inside it) and is never
    /// retried: it ends with `condition_continue`, `condition_succeed` or `condition_fail`.
    pub fn condition_start(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
    ) -> Result<Effects<(String, ConditionStart)>, Violation> {
        let (op, progress) =
            self.step_position("condition-start", parent, name, OpKind::Condition)?;
        let id = op.id.clone();
        let mut fx = Effects::new(Reply::Suspend(SuspendReason::RetryDelay));
        fx.reply = match progress {
            None => self.start_check(now_ms, op, 1, &mut fx),
            Some(StepProgress::Succeeded { result }) => {
                Reply::Return((id, ConditionStart::Succeeded(result)))
            }
            Some(StepProgress::Failed { error }) => {
                Reply::Return((id, ConditionStart::Failed(error)))
            }
            Some(StepProgress::RetryScheduled {
                failed_attempt,
                retry_at_ms,
            }) => match retry_due(now_ms, &id, retry_at_ms, &mut fx) {
                true => self.start_check(now_ms, op, failed_attempt + 1, &mut fx),
                false => Reply::Suspend(SuspendReason::RetryDelay),
            },
            // The check was cut short (crash) before it recorded anything: run it again.
            Some(StepProgress::Started { attempt }) => {
                self.live_check(&id, attempt);
                let state = self.journal.condition_states.get(&id).cloned();
                Reply::Return((id, ConditionStart::Check { attempt, state }))
            }
        };
        Ok(fx)
    }

    fn live_check(&mut self, id: &str, attempt: u32) {
        self.live_step = Some(LiveStep {
            id: id.to_string(),
            attempt,
            policy: RetryPolicy {
                max_attempts: 1,
                ..RetryPolicy::default()
            },
            kind: OpKind::Condition,
        });
        self.touch(id, attempt);
    }

    /// Record `ConditionStarted` for check `attempt` and make it the running one.
    fn start_check<T>(
        &mut self,
        now_ms: u64,
        op: OpRef,
        attempt: u32,
        fx: &mut Effects<T>,
    ) -> Reply<(String, ConditionStart)> {
        let id = op.id.clone();
        self.journal.push(
            now_ms,
            EventKind::ConditionStarted { op, attempt },
            &mut fx.events,
        );
        self.live_check(&id, attempt);
        let state = self.journal.condition_states.get(&id).cloned();
        Reply::Return((id, ConditionStart::Check { attempt, state }))
    }

    /// The running check returned `state` and the wait strategy asked for another check
    /// after `delay_ms`. Records `ConditionSucceeded` with the delay (fsynced) and suspends
    /// until it is due; a zero delay starts the next check at once and replies its number.
    /// Over `max_condition_checks` or `max_history_events` the condition fails for good
    /// instead, with `Durable.LimitExceeded`, replied as `Err`.
    pub fn condition_continue(
        &mut self,
        now_ms: u64,
        id: &str,
        state: String,
        delay_ms: u64,
    ) -> Result<Effects<Result<u32, ErrorObject>>, Violation> {
        self.check_duration("condition-continue", "delay", Some(delay_ms))?;
        let live = self.take_live("condition-continue", id, OpKind::Condition)?;
        let op = self.journal.ops[id].op.clone();
        let mut fx = Effects::new(Reply::Return(Ok(live.attempt + 1)));
        fx.sync = true;
        let room = if live.attempt >= self.limits.max_condition_checks {
            Err(Limits::exceeded(
                "max_condition_checks",
                self.limits.max_condition_checks,
                format!(
                    "condition-continue: check {} of {id} asked for another",
                    live.attempt
                ),
            ))
        } else {
            self.check_history_room("condition-continue")
        };
        if let Err(v) = room {
            let error = self.limits.bound_error(v.to_error());
            self.journal.push(
                now_ms,
                EventKind::ConditionFailed {
                    op,
                    error: error.clone(),
                    attempt: live.attempt,
                },
                &mut fx.events,
            );
            fx.reply = Reply::Return(Err(error));
            return Ok(fx);
        }
        self.journal.push(
            now_ms,
            EventKind::ConditionSucceeded {
                op: op.clone(),
                state,
                attempt: live.attempt,
                next_attempt_delay_ms: Some(delay_ms),
            },
            &mut fx.events,
        );
        if delay_ms == 0 {
            let next = live.attempt + 1;
            match self.start_check(now_ms, op, next, &mut fx) {
                Reply::Return(_) => fx.reply = Reply::Return(Ok(next)),
                Reply::Suspend(r) => fx.reply = Reply::Suspend(r),
            }
        } else {
            fx.timers.push(TimerRef {
                due_ms: now_ms.saturating_add(delay_ms),
                op_id: live.id,
            });
            fx.reply = Reply::Suspend(SuspendReason::RetryDelay);
        }
        Ok(fx)
    }

    /// The running check returned the final `state`: the condition succeeded (fsynced).
    pub fn condition_succeed(
        &mut self,
        now_ms: u64,
        id: &str,
        state: String,
    ) -> Result<Effects<()>, Violation> {
        self.end_live(
            now_ms,
            "condition-succeed",
            id,
            OpKind::Condition,
            |op, attempt| EventKind::ConditionSucceeded {
                op,
                state,
                attempt,
                next_attempt_delay_ms: None,
            },
        )
    }

    /// The running check raised, or the wait strategy gave up: the condition failed for
    /// good (fsynced).
    pub fn condition_fail(
        &mut self,
        now_ms: u64,
        id: &str,
        error: ErrorObject,
    ) -> Result<Effects<()>, Violation> {
        let error = self.limits.bound_error(error);
        self.end_live(
            now_ms,
            "condition-fail",
            id,
            OpKind::Condition,
            |op, attempt| EventKind::ConditionFailed { op, error, attempt },
        )
    }

    pub fn wait(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
        millis: u64,
    ) -> Result<Effects<()>, Violation> {
        let (op, existing) = self.position("wait", parent, name, OpKind::Wait)?;
        if existing.is_none() {
            self.check_duration("wait", "wait", Some(millis))?;
        }
        let mut fx = Effects::new(Reply::Return(()));
        match existing.map(|e| e.state) {
            None => {
                let end = now_ms.saturating_add(millis);
                self.journal.push(
                    now_ms,
                    EventKind::WaitStarted {
                        op: op.clone(),
                        duration_ms: millis,
                        scheduled_end_ms: end,
                    },
                    &mut fx.events,
                );
                if millis == 0 {
                    self.journal.push(
                        now_ms,
                        EventKind::WaitSucceeded { op, duration_ms: 0 },
                        &mut fx.events,
                    );
                } else {
                    fx.timers.push(TimerRef {
                        due_ms: end,
                        op_id: op.id,
                    });
                    fx.reply = Reply::Suspend(SuspendReason::Wait);
                }
            }
            Some(OpState::Wait { done: true, .. }) => {}
            Some(OpState::Wait {
                scheduled_end_ms,
                done: false,
                ..
            }) => {
                let timer = TimerRef {
                    due_ms: scheduled_end_ms,
                    op_id: op.id.clone(),
                };
                if now_ms >= scheduled_end_ms {
                    self.complete_wait(now_ms, &op.id, &mut fx.events);
                    fx.timers_done.push(timer);
                } else {
                    fx.timers.push(timer);
                    fx.reply = Reply::Suspend(SuspendReason::Wait);
                }
            }
            Some(_) => unreachable!("kind checked by position"),
        }
        Ok(fx)
    }

    fn complete_wait(&mut self, now_ms: u64, id: &str, out: &mut Vec<Event>) {
        if let Some(Op {
            op,
            state:
                OpState::Wait {
                    duration_ms,
                    done: false,
                    ..
                },
            ..
        }) = self.journal.ops.get(id).cloned()
        {
            self.journal
                .push(now_ms, EventKind::WaitSucceeded { op, duration_ms }, out);
        }
    }

    /// Waits whose time has come, completed now (at activation start, like the AWS service
    /// does when a timer fires). Returns the events and the timers they consumed.
    pub fn complete_due_waits(&mut self, now_ms: u64) -> (Vec<Event>, Vec<TimerRef>) {
        self.complete_due_waits_in(now_ms, None)
    }

    /// `complete_due_waits` for the waits inside `scope` only (an operation and what runs
    /// under it; `None`: all): a branch's instance completes its own branch's waits.
    pub fn complete_due_waits_in(
        &mut self,
        now_ms: u64,
        scope: Option<&str>,
    ) -> (Vec<Event>, Vec<TimerRef>) {
        let mut due: Vec<(u64, String)> = self
            .journal
            .ops
            .values()
            .filter(|op| scope.is_none_or(|s| in_scope(&op.op.id, s)))
            .filter_map(|op| match op.state {
                OpState::Wait {
                    scheduled_end_ms,
                    done: false,
                    ..
                } if scheduled_end_ms <= now_ms => Some((scheduled_end_ms, op.op.id.clone())),
                _ => None,
            })
            .collect();
        due.sort();
        let mut events = Vec::new();
        let mut timers = Vec::new();
        for (due_ms, id) in due {
            self.complete_wait(now_ms, &id, &mut events);
            timers.push(TimerRef { due_ms, op_id: id });
        }
        (events, timers)
    }

    pub fn create_callback(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
        timeout_ms: Option<u64>,
        heartbeat_timeout_ms: Option<u64>,
        new_callback_id: impl FnOnce() -> String,
    ) -> Result<Effects<(String, String)>, Violation> {
        let (op, existing) = self.position("create-callback", parent, name, OpKind::Callback)?;
        if existing.is_none() {
            self.check_duration("create-callback", "timeout", timeout_ms)?;
            self.check_duration("create-callback", "heartbeat timeout", heartbeat_timeout_ms)?;
        }
        if existing.is_none() && self.journal.pending_callbacks >= self.limits.max_pending_callbacks
        {
            return Err(Limits::exceeded(
                "max_pending_callbacks",
                self.limits.max_pending_callbacks,
                format!(
                    "create-callback: the execution has {} callbacks waiting",
                    self.journal.pending_callbacks
                ),
            ));
        }
        let mut fx = Effects::new(Reply::Return((String::new(), String::new())));
        let callback_id = match existing.map(|e| e.state) {
            Some(OpState::Callback { callback_id, .. }) => callback_id,
            None => {
                let callback_id = new_callback_id();
                self.journal.push(
                    now_ms,
                    EventKind::CallbackStarted {
                        op: op.clone(),
                        callback_id: callback_id.clone(),
                        timeout_ms,
                        heartbeat_timeout_ms,
                    },
                    &mut fx.events,
                );
                fx.callback = Some(NewCallback {
                    callback_id: callback_id.clone(),
                    op_id: op.id.clone(),
                    timeout_deadline_ms: timeout_ms.map(|t| now_ms.saturating_add(t)),
                    heartbeat_timeout_ms,
                });
                fx.sync = true;
                callback_id
            }
            Some(_) => unreachable!("kind checked by position"),
        };
        fx.reply = Reply::Return((op.id, callback_id));
        Ok(fx)
    }

    pub fn await_callback(&mut self, id: &str) -> Result<CallbackPoll, Violation> {
        if let Some(live) = &self.live_step {
            return Err(Violation::Protocol(format!(
                "await-callback called inside the body of step {}",
                live.id
            )));
        }
        match self.journal.ops.get(id) {
            Some(Op {
                state:
                    OpState::Callback {
                        callback_id,
                        outcome,
                    },
                ..
            }) => Ok(match outcome {
                Some(o) => CallbackPoll::Ready(o.clone()),
                None => CallbackPoll::Pending {
                    callback_id: callback_id.clone(),
                },
            }),
            _ => Err(Violation::Protocol(format!(
                "await-callback: {id:?} is not a callback of this execution"
            ))),
        }
    }

    /// Record how a pending callback was resolved.
    pub fn resolve_callback(
        &mut self,
        now_ms: u64,
        op_id: &str,
        resolution: Resolution,
    ) -> Option<Event> {
        let op = match self.journal.ops.get(op_id) {
            Some(Op {
                op,
                state: OpState::Callback { outcome: None, .. },
                ..
            }) => op.clone(),
            _ => return None,
        };
        let kind = match self.limits.bound_resolution(resolution) {
            Resolution::Succeeded(result) => EventKind::CallbackSucceeded { op, result },
            Resolution::Failed(error) => EventKind::CallbackFailed { op, error },
            Resolution::TimedOut(error) => EventKind::CallbackTimedOut { op, error },
        };
        Some(self.journal.record(now_ms, kind))
    }

    /// Begin (or replay) an `invoke` of another function: what the journal has at this
    /// position. A new one is recorded by `invoke_started` once the driver knows whether
    /// its callee started.
    pub fn invoke_position(
        &mut self,
        parent: Option<&str>,
        name: Option<&str>,
    ) -> Result<InvokePoll, Violation> {
        let (op, existing) = self.position("invoke", parent, name, OpKind::Invoke)?;
        Ok(match existing.map(|e| e.state) {
            None => InvokePoll::New(op),
            Some(OpState::Invoke {
                outcome: Some(o), ..
            }) => InvokePoll::Ready(o),
            Some(OpState::Invoke {
                callee: Some(callee),
                outcome: None,
            }) => InvokePoll::Pending { op, callee },
            // Started without a callee and without an end: not written by this host (the
            // failure is in the same batch); treated as failed.
            Some(OpState::Invoke {
                callee: None,
                outcome: None,
            }) => InvokePoll::Ready(Err(ErrorObject::new(
                error_types::INVOKE_REFUSED,
                format!("invoke {}: no callee was started", op.id),
            ))),
            Some(_) => unreachable!("kind checked by position"),
        })
    }

    /// Record a new invoke (`ChainedInvokeStarted`, fsynced with the callee's creation);
    /// when no callee started, its `ChainedInvokeFailed` too, replied as `Ready`. Otherwise
    /// the guest suspends until the callee ends (`Pending`).
    pub fn invoke_started(
        &mut self,
        now_ms: u64,
        op: OpRef,
        start: InvokeStart,
    ) -> Effects<InvokePoll> {
        let mut fx = Effects::new(Reply::Suspend(SuspendReason::Invoke));
        fx.sync = true;
        let (callee, version) = match &start.callee {
            Ok((c, v)) => (Some(c.clone()), Some(*v)),
            Err(_) => (None, None),
        };
        self.journal.push(
            now_ms,
            EventKind::ChainedInvokeStarted {
                op: op.clone(),
                function: start.function,
                input: start.input,
                version,
                callee,
                tenant_id: start.tenant_id,
            },
            &mut fx.events,
        );
        if let Err(error) = start.callee {
            let error = self.limits.bound_error(error);
            self.journal.push(
                now_ms,
                EventKind::ChainedInvokeFailed {
                    op,
                    error: error.clone(),
                },
                &mut fx.events,
            );
            fx.reply = Reply::Return(InvokePoll::Ready(Err(error)));
        }
        fx
    }

    /// Record how a pending invoke's callee ended (what the guest sees, on the first run
    /// and on replay alike). `None` when the invoke is not pending.
    pub fn invoke_ended(&mut self, now_ms: u64, op_id: &str, end: InvokeEnd) -> Option<Event> {
        let op = match self.journal.ops.get(op_id) {
            Some(Op {
                op,
                state: OpState::Invoke { outcome: None, .. },
                ..
            }) => op.clone(),
            _ => return None,
        };
        let kind = match end {
            InvokeEnd::Succeeded(result) => EventKind::ChainedInvokeSucceeded { op, result },
            InvokeEnd::Failed(e) => EventKind::ChainedInvokeFailed {
                op,
                error: self.limits.bound_error(e),
            },
            InvokeEnd::TimedOut(e) => EventKind::ChainedInvokeTimedOut {
                op,
                error: self.limits.bound_error(e),
            },
            InvokeEnd::Stopped(e) => EventKind::ChainedInvokeStopped {
                op,
                error: self.limits.bound_error(e),
            },
        };
        Some(self.journal.record(now_ms, kind))
    }

    pub fn context_start(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
        kind: ContextKind,
    ) -> Result<Effects<(String, ContextStart)>, Violation> {
        let depth = parent.map_or(0, |p| self.open_contexts.get(p).map_or(0, |c| c.depth)) + 1;
        let (op, existing) = self.position("context-start", parent, name, OpKind::Context(kind))?;
        if existing.is_none() && depth > self.limits.max_context_depth {
            return Err(Limits::exceeded(
                "max_context_depth",
                self.limits.max_context_depth,
                format!("context-start: a child context at depth {depth}"),
            ));
        }
        let mut fx = Effects::new(Reply::Return((op.id.clone(), ContextStart::Run)));
        match existing.map(|e| e.state) {
            None => {
                self.journal.push(
                    now_ms,
                    EventKind::ContextStarted {
                        op: op.clone(),
                        kind,
                    },
                    &mut fx.events,
                );
                self.open_context(parent, op.id, depth);
            }
            Some(OpState::Context { outcome: None }) => {
                self.open_context(parent, op.id, depth);
            }
            Some(OpState::Context {
                outcome: Some(Ok(r)),
            }) => fx.reply = Reply::Return((op.id, ContextStart::Succeeded(r))),
            Some(OpState::Context {
                outcome: Some(Err(e)),
            }) => fx.reply = Reply::Return((op.id, ContextStart::Failed(e))),
            Some(_) => unreachable!("kind checked by position"),
        }
        Ok(fx)
    }

    fn open_context(&mut self, parent: Option<&str>, id: String, depth: u32) {
        if let Some(p) = parent.and_then(|p| self.open_contexts.get_mut(p)) {
            p.children.push(id.clone());
        }
        self.open_contexts.insert(
            id,
            OpenContext {
                depth,
                children: Vec::new(),
            },
        );
    }

    /// Operations inside a finished context cannot be called again: close its open
    /// descendants (each context is closed once, so this is linear overall).
    fn close_descendants(&mut self, closed: OpenContext) {
        let mut stack = closed.children;
        while let Some(c) = stack.pop() {
            if let Some(open) = self.open_contexts.remove(&c) {
                stack.extend(open.children);
            }
        }
    }

    pub fn context_end(
        &mut self,
        now_ms: u64,
        id: &str,
        outcome: Result<String, ErrorObject>,
    ) -> Result<Effects<()>, Violation> {
        if let Some(live) = &self.live_step {
            return Err(Violation::Protocol(format!(
                "context completed inside the body of step {}",
                live.id
            )));
        }
        if self.batches.contains_key(id) {
            return Err(Violation::Protocol(format!(
                "context {id:?} is a map or parallel: it ends with batch-finish"
            )));
        }
        let Some(closed) = self.open_contexts.remove(id) else {
            return Err(Violation::Protocol(format!(
                "context {id:?} is not an open child context"
            )));
        };
        let Some(Op {
            op,
            kind: OpKind::Context(kind),
            ..
        }) = self.journal.ops.get(id).cloned()
        else {
            return Err(Violation::Protocol(format!(
                "context {id:?} is not a child context"
            )));
        };
        self.close_descendants(closed);
        self.branch_ended(op.parent.as_deref(), outcome.is_ok());
        let mut fx = Effects::new(Reply::Return(()));
        let kind = match outcome {
            Ok(result) => EventKind::ContextSucceeded { op, kind, result },
            Err(error) => EventKind::ContextFailed {
                op,
                kind,
                error: self.limits.bound_error(error),
            },
        };
        self.journal.push(now_ms, kind, &mut fx.events);
        fx.sync = true;
        self.touch(id, 0);
        Ok(fx)
    }
}

/// A JSON payload the guest hands over (a step result, a context result, a condition state,
/// the output), as the host checks it: within `max_bytes`, and JSON. `what` names it in the
/// error (`value`, `output`): `PayloadTooLarge` or `InvalidPayload`.
pub fn check_payload(what: &str, value: &str, max_bytes: usize) -> Result<(), ErrorObject> {
    if value.len() > max_bytes {
        return Err(ErrorObject::new(
            error_types::PAYLOAD_TOO_LARGE,
            format!(
                "the {what} is {} bytes; the limit is {max_bytes} bytes",
                value.len()
            ),
        ));
    }
    serde_json::from_str::<serde::de::IgnoredAny>(value).map_err(|e| {
        ErrorObject::new(
            error_types::INVALID_PAYLOAD,
            format!("the {what} is not JSON: {e}"),
        )
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
