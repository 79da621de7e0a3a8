//! History events: the one durable record of what an execution did.
//!
//! The journal state used for replay is a fold of these events (see `journal::Journal`), so
//! history and replay can never disagree. Event types follow the AWS durable-execution
//! vocabulary so that the public conformance requirements can be checked against them.
//! Payloads (results, input, output) are JSON text, stored as given.

use serde::{Deserialize, Serialize};

/// An error as recorded in history and shown to users.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorObject {
    pub error_type: String,
    pub error_message: String,
    /// Optional JSON text.
    pub error_data: Option<String>,
}

impl ErrorObject {
    pub fn new(error_type: impl Into<String>, error_message: impl Into<String>) -> Self {
        Self {
            error_type: error_type.into(),
            error_message: error_message.into(),
            error_data: None,
        }
    }
}

impl std::fmt::Display for ErrorObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.error_type, self.error_message)
    }
}

/// Which operation an event is about: its positional id, its parent context and its name.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpRef {
    pub id: String,
    pub parent: Option<String>,
    pub name: Option<String>,
}

/// The sub-type a child context shows in history. Stored: new kinds go last.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ContextKind {
    RunInChildContext,
    WaitForCallback,
    /// A map (`batch-start`); its summary is its `ContextSucceeded` result.
    Map,
    /// One item of a map (`branch-start`), child of its `Map`.
    MapIteration,
    /// A parallel (`batch-start`).
    Parallel,
    /// One branch of a parallel (`branch-start`), child of its `Parallel`.
    ParallelBranch,
}

impl ContextKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ContextKind::RunInChildContext => "RunInChildContext",
            ContextKind::WaitForCallback => "WaitForCallback",
            ContextKind::Map => "Map",
            ContextKind::MapIteration => "MapIteration",
            ContextKind::Parallel => "Parallel",
            ContextKind::ParallelBranch => "ParallelBranch",
        }
    }
}

/// One history event. `seq` is the 1-based `event_id`; `at_ms` is wall-clock unix millis.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub seq: u32,
    pub at_ms: u64,
    pub kind: EventKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EventKind {
    ExecutionStarted {
        input: String,
    },
    StepStarted {
        op: OpRef,
        attempt: u32,
    },
    StepSucceeded {
        op: OpRef,
        result: String,
        attempt: u32,
    },
    StepFailed {
        op: OpRef,
        error: ErrorObject,
        attempt: u32,
        /// Set when the step will be retried after this delay.
        next_attempt_delay_ms: Option<u64>,
    },
    WaitStarted {
        op: OpRef,
        duration_ms: u64,
        scheduled_end_ms: u64,
    },
    WaitSucceeded {
        op: OpRef,
        duration_ms: u64,
    },
    CallbackStarted {
        op: OpRef,
        callback_id: String,
        timeout_ms: Option<u64>,
        heartbeat_timeout_ms: Option<u64>,
    },
    CallbackSucceeded {
        op: OpRef,
        result: String,
    },
    CallbackFailed {
        op: OpRef,
        error: ErrorObject,
    },
    CallbackTimedOut {
        op: OpRef,
        error: ErrorObject,
    },
    ContextStarted {
        op: OpRef,
        kind: ContextKind,
    },
    ContextSucceeded {
        op: OpRef,
        kind: ContextKind,
        result: String,
    },
    ContextFailed {
        op: OpRef,
        kind: ContextKind,
        error: ErrorObject,
    },
    /// One per activation (instantiate → run → suspend or finish).
    InvocationCompleted {
        started_ms: u64,
        error: Option<ErrorObject>,
    },
    ExecutionSucceeded {
        output: String,
    },
    ExecutionFailed {
        error: ErrorObject,
    },
    ExecutionTimedOut {
        error: ErrorObject,
    },
    ExecutionStopped {
        error: ErrorObject,
    },
    /// `ExecutionStarted` of an execution invoked with `?delay=` or `?start_at=`: the same
    /// event type, whose details also carry when it starts (`start_at`). A variant of its
    /// own, and the last, so that stored events keep their encoding.
    ExecutionStartedAt {
        input: String,
        start_ms: u64,
    },
    /// A failed, timed-out or stopped execution was sent back to `running`
    /// (`recovery::redrive`). The fold forgets what failed before it (see
    /// `Journal::apply`), so those operations run again with a fresh attempt budget; what
    /// succeeded replays. Last, so that stored events keep their encoding.
    ExecutionRedriven {
        /// The API key that asked; `None` for an automatic redrive (`redrive_policy`) or
        /// with authentication off.
        key_id: Option<String>,
        /// What asked: a request, a bulk job, the function's `redrive_policy`.
        trigger: RedriveTrigger,
        from_version: u32,
        to_version: u32,
        /// This is the execution's n-th redrive (1 for the first).
        redrive_count: u32,
    },
    /// A check of a `wait_for_condition` began (history: `StepStarted`, sub type
    /// `WaitForCondition`). The condition variants are last, so that stored events keep
    /// their encoding.
    ConditionStarted {
        op: OpRef,
        attempt: u32,
    },
    /// A check ended with a new state (JSON text). With `next_attempt_delay_ms` the wait
    /// strategy asked for another check after that delay; without, this is the final state
    /// (history: `StepSucceeded`, sub type `WaitForCondition`).
    ConditionSucceeded {
        op: OpRef,
        state: String,
        attempt: u32,
        next_attempt_delay_ms: Option<u64>,
    },
    /// The condition failed for good: its check raised, or the wait strategy gave up
    /// (history: `StepFailed`, sub type `WaitForCondition`).
    ConditionFailed {
        op: OpRef,
        error: ErrorObject,
        attempt: u32,
    },
    /// An `invoke` (DESIGN 11) started its callee: another execution of the caller's
    /// tenant, written in the same batch as this event (so a crash can never start two).
    /// `callee` and `version` are `None` when no callee was started (an unknown function,
    /// a refused admission): a `ChainedInvokeFailed` follows in the same batch. The invoke
    /// variants are last, so that stored events keep their encoding.
    ChainedInvokeStarted {
        op: OpRef,
        /// The function invoked (of the caller's tenant).
        function: String,
        /// The callee's input (JSON text).
        input: String,
        /// The version the callee runs (the function's latest when it started).
        version: Option<u32>,
        /// The callee's execution id.
        callee: Option<String>,
        /// The tenant the guest named, if it named one (it can only be its own).
        tenant_id: Option<String>,
    },
    /// The callee succeeded with this output (JSON text).
    ChainedInvokeSucceeded {
        op: OpRef,
        result: String,
    },
    /// The callee failed (its error), or could not be started.
    ChainedInvokeFailed {
        op: OpRef,
        error: ErrorObject,
    },
    /// The callee ran past its execution timeout.
    ChainedInvokeTimedOut {
        op: OpRef,
        error: ErrorObject,
    },
    /// The callee was stopped.
    ChainedInvokeStopped {
        op: OpRef,
        error: ErrorObject,
    },
    /// `ContextStarted` of a map or parallel (history: `ContextStarted`, sub type `Map` /
    /// `Parallel`), with the options the guest gave, so that a replay that passes other
    /// ones (more items, another policy) is caught as non-deterministic. Last, so that
    /// stored events keep their encoding (batches journaled before it have a plain
    /// `ContextStarted` and are not checked).
    BatchStarted {
        op: OpRef,
        kind: ContextKind,
        count: u32,
        max_concurrency: Option<u32>,
        policy: crate::batch::CompletionPolicy,
    },
}

/// What asked for a redrive.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedriveTrigger {
    /// `POST /v1/executions/{id}/redrive`.
    Request,
    /// A bulk redrive job (`POST /v1/executions/redrive`), by its id.
    Job(String),
    /// The function's `redrive_policy`, after the execution failed.
    Policy,
}

impl RedriveTrigger {
    pub fn as_str(&self) -> &'static str {
        match self {
            RedriveTrigger::Request => "request",
            RedriveTrigger::Job(_) => "job",
            RedriveTrigger::Policy => "redrive_policy",
        }
    }
}

impl EventKind {
    /// The AWS-vocabulary event type.
    pub fn event_type(&self) -> &'static str {
        match self {
            EventKind::ExecutionStarted { .. } | EventKind::ExecutionStartedAt { .. } => {
                "ExecutionStarted"
            }
            EventKind::StepStarted { .. } | EventKind::ConditionStarted { .. } => "StepStarted",
            EventKind::StepSucceeded { .. } | EventKind::ConditionSucceeded { .. } => {
                "StepSucceeded"
            }
            EventKind::StepFailed { .. } | EventKind::ConditionFailed { .. } => "StepFailed",
            EventKind::WaitStarted { .. } => "WaitStarted",
            EventKind::WaitSucceeded { .. } => "WaitSucceeded",
            EventKind::CallbackStarted { .. } => "CallbackStarted",
            EventKind::CallbackSucceeded { .. } => "CallbackSucceeded",
            EventKind::CallbackFailed { .. } => "CallbackFailed",
            EventKind::CallbackTimedOut { .. } => "CallbackTimedOut",
            EventKind::ContextStarted { .. } | EventKind::BatchStarted { .. } => "ContextStarted",
            EventKind::ContextSucceeded { .. } => "ContextSucceeded",
            EventKind::ContextFailed { .. } => "ContextFailed",
            EventKind::InvocationCompleted { .. } => "InvocationCompleted",
            EventKind::ExecutionSucceeded { .. } => "ExecutionSucceeded",
            EventKind::ExecutionFailed { .. } => "ExecutionFailed",
            EventKind::ExecutionTimedOut { .. } => "ExecutionTimedOut",
            EventKind::ExecutionStopped { .. } => "ExecutionStopped",
            EventKind::ExecutionRedriven { .. } => "ExecutionRedriven",
            EventKind::ChainedInvokeStarted { .. } => "ChainedInvokeStarted",
            EventKind::ChainedInvokeSucceeded { .. } => "ChainedInvokeSucceeded",
            EventKind::ChainedInvokeFailed { .. } => "ChainedInvokeFailed",
            EventKind::ChainedInvokeTimedOut { .. } => "ChainedInvokeTimedOut",
            EventKind::ChainedInvokeStopped { .. } => "ChainedInvokeStopped",
        }
    }

    /// The sub-type (`Step`, `Wait`, `Callback`, `RunInChildContext`, `WaitForCallback`,
    /// `WaitForCondition`, `ChainedInvoke`), for operation events.
    pub fn sub_type(&self) -> Option<&'static str> {
        match self {
            EventKind::StepStarted { .. }
            | EventKind::StepSucceeded { .. }
            | EventKind::StepFailed { .. } => Some("Step"),
            EventKind::ConditionStarted { .. }
            | EventKind::ConditionSucceeded { .. }
            | EventKind::ConditionFailed { .. } => Some("WaitForCondition"),
            EventKind::WaitStarted { .. } | EventKind::WaitSucceeded { .. } => Some("Wait"),
            EventKind::CallbackStarted { .. }
            | EventKind::CallbackSucceeded { .. }
            | EventKind::CallbackFailed { .. }
            | EventKind::CallbackTimedOut { .. } => Some("Callback"),
            EventKind::ContextStarted { kind, .. }
            | EventKind::BatchStarted { kind, .. }
            | EventKind::ContextSucceeded { kind, .. }
            | EventKind::ContextFailed { kind, .. } => Some(kind.as_str()),
            EventKind::ChainedInvokeStarted { .. }
            | EventKind::ChainedInvokeSucceeded { .. }
            | EventKind::ChainedInvokeFailed { .. }
            | EventKind::ChainedInvokeTimedOut { .. }
            | EventKind::ChainedInvokeStopped { .. } => Some("ChainedInvoke"),
            _ => None,
        }
    }

    /// The operation this event is about, if any.
    pub fn op(&self) -> Option<&OpRef> {
        match self {
            EventKind::StepStarted { op, .. }
            | EventKind::StepSucceeded { op, .. }
            | EventKind::StepFailed { op, .. }
            | EventKind::WaitStarted { op, .. }
            | EventKind::WaitSucceeded { op, .. }
            | EventKind::CallbackStarted { op, .. }
            | EventKind::CallbackSucceeded { op, .. }
            | EventKind::CallbackFailed { op, .. }
            | EventKind::CallbackTimedOut { op, .. }
            | EventKind::ContextStarted { op, .. }
            | EventKind::BatchStarted { op, .. }
            | EventKind::ContextSucceeded { op, .. }
            | EventKind::ContextFailed { op, .. }
            | EventKind::ConditionStarted { op, .. }
            | EventKind::ConditionSucceeded { op, .. }
            | EventKind::ConditionFailed { op, .. }
            | EventKind::ChainedInvokeStarted { op, .. }
            | EventKind::ChainedInvokeSucceeded { op, .. }
            | EventKind::ChainedInvokeFailed { op, .. }
            | EventKind::ChainedInvokeTimedOut { op, .. }
            | EventKind::ChainedInvokeStopped { op, .. } => Some(op),
            _ => None,
        }
    }

    /// Whether this event ends the execution.
    pub fn is_terminal(&self) -> bool {
        matches!(
            self,
            EventKind::ExecutionSucceeded { .. }
                | EventKind::ExecutionFailed { .. }
                | EventKind::ExecutionTimedOut { .. }
                | EventKind::ExecutionStopped { .. }
        )
    }
}
