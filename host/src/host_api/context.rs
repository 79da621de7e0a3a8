//! The `durable:function/context` interface: each call asks the journal what to do, then
//! performs the effects (append events, put/delete timers, create callback records; none
//! waits for the disk: what depends on them leaves the host after `Store::durable_barrier`)
//! before replying to the guest or suspending it.

use super::bindings::{context, types};
use super::{HostFailure, HostState, Suspend};
use crate::db::{
    Batch, CallbackRecord, CallbackState, Durability, LogLevel, LogStream, TimerKind, TimerRecord,
};
use crate::journal::{
    in_scope, Activation, Backoff, BatchKind, BatchOutcome, BatchSpec, BatchStart, BranchStart,
    BranchStatus, CallbackPoll, CompletionPolicy, CompletionReason, ConditionStart, ContextKind,
    ContextStart, Effects, ErrorObject, InvokePoll, InvokeStart, Jitter, Reply, Resolution,
    RetryPolicy, StepSemantics, StepStart, SuspendReason, Violation,
};

fn trap<E: std::error::Error + Send + Sync + 'static>(e: E) -> wasmtime::Error {
    wasmtime::Error::new(e)
}

impl From<types::ErrorObject> for ErrorObject {
    fn from(e: types::ErrorObject) -> Self {
        ErrorObject {
            error_type: e.error_type,
            error_message: e.error_message,
            error_data: e.error_data,
        }
    }
}

impl From<ErrorObject> for types::ErrorObject {
    fn from(e: ErrorObject) -> Self {
        types::ErrorObject {
            error_type: e.error_type,
            error_message: e.error_message,
            error_data: e.error_data,
        }
    }
}

fn policy(p: Option<types::RetryPolicy>) -> RetryPolicy {
    let Some(p) = p else {
        return RetryPolicy::default();
    };
    RetryPolicy {
        max_attempts: p.max_attempts.max(1),
        initial_delay_ms: p.initial_delay_ms,
        max_delay_ms: p.max_delay_ms,
        backoff: match p.backoff {
            types::Backoff::Exponential(rate) => Backoff::Exponential(rate),
            types::Backoff::Linear(inc) => Backoff::Linear(inc),
        },
        jitter: match p.jitter {
            types::Jitter::None => Jitter::None,
            types::Jitter::Full => Jitter::Full,
            types::Jitter::Half => Jitter::Half,
        },
        retry_on: p.retry_on,
        never_retry_on: p.never_retry_on,
    }
}

fn context_kind(k: types::ContextKind) -> ContextKind {
    match k {
        types::ContextKind::RunInChildContext => ContextKind::RunInChildContext,
        types::ContextKind::WaitForCallback => ContextKind::WaitForCallback,
    }
}

fn batch_spec(o: types::BatchOptions) -> BatchSpec {
    BatchSpec {
        kind: match o.kind {
            types::BatchKind::Map => BatchKind::Map,
            types::BatchKind::Parallel => BatchKind::Parallel,
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

fn batch_outcome(o: BatchOutcome) -> types::BatchOutcome {
    let items = o
        .items
        .into_iter()
        .map(|item| {
            let (status, result, error) = match item.status {
                BranchStatus::Succeeded(r) => (types::BatchItemStatus::Succeeded, Some(r), None),
                BranchStatus::Failed(e) => (types::BatchItemStatus::Failed, None, Some(e.into())),
                BranchStatus::Started => (types::BatchItemStatus::Started, None, None),
            };
            types::BatchItem {
                index: item.index,
                status,
                result,
                error,
            }
        })
        .collect();
    let reason = match o.reason {
        CompletionReason::AllCompleted => types::CompletionReason::AllCompleted,
        CompletionReason::MinSuccessfulReached => types::CompletionReason::MinSuccessfulReached,
        CompletionReason::FailureToleranceExceeded => {
            types::CompletionReason::FailureToleranceExceeded
        }
    };
    types::BatchOutcome { items, reason }
}

/// Suffixes that keep a callback's two timers apart from each other.
const TIMEOUT_SUFFIX: &str = "#timeout";
const HEARTBEAT_SUFFIX: &str = "#heartbeat";

/// The timer key suffix of a callback timer kind.
pub fn callback_timer_op(op_id: &str, kind: &TimerKind) -> String {
    match kind {
        TimerKind::Wake | TimerKind::Deadline | TimerKind::Redrive { .. } => op_id.to_string(),
        TimerKind::CallbackTimeout { .. } => format!("{op_id}{TIMEOUT_SUFFIX}"),
        TimerKind::HeartbeatTimeout { .. } => format!("{op_id}{HEARTBEAT_SUFFIX}"),
    }
}

impl HostState {
    /// Check a JSON payload the guest hands over: valid JSON, within the size limit.
    fn check_payload(&self, value: &str) -> Result<(), ErrorObject> {
        crate::journal::check_payload("value", value, self.shared.limits.max_payload_bytes)
    }

    /// An ending call that hands over a JSON `value`: `record` it, or, when the value is
    /// not JSON or too large, fail the operation for good with `refuse` and give the guest
    /// that error.
    async fn end_with_value<T>(
        &mut self,
        value: String,
        refuse: impl FnOnce(&mut Activation, u64, ErrorObject) -> Result<Effects<()>, Violation>,
        record: impl FnOnce(&mut Activation, u64, String) -> Result<Effects<T>, Violation>,
    ) -> wasmtime::Result<Result<T, types::ErrorObject>> {
        let now = self.enter().await?;
        if let Err(error) = self.check_payload(&value) {
            let fx = refuse(&mut self.act, now, error.clone()).map_err(trap)?;
            self.perform(fx).await?;
            return Ok(Err(error.into()));
        }
        let fx = record(&mut self.act, now, value).map_err(trap)?;
        Ok(Ok(self.perform(fx).await?))
    }

    /// Perform a journal decision: persist, then reply or suspend.
    async fn perform<T>(&mut self, fx: Effects<T>) -> wasmtime::Result<T> {
        self.perform_with(fx, Batch::new()).await
    }

    /// `perform`, with `batch` (writes of the same decision: an invoke's callee) in the
    /// same commit.
    async fn perform_with<T>(&mut self, fx: Effects<T>, mut batch: Batch) -> wasmtime::Result<T> {
        for e in &fx.events {
            batch.put_event(&self.execution, e);
        }
        let wake = TimerRecord {
            tenant: self.tenant.to_string(),
            kind: TimerKind::Wake,
        };
        for t in &fx.timers {
            batch.put_timer(t.due_ms, &self.execution, &t.op_id, &wake);
        }
        for t in &fx.timers_done {
            batch.del_timer(t.due_ms, &self.execution, &t.op_id);
        }
        let mut callback_timers = Vec::new();
        if let Some(cb) = &fx.callback {
            let now = self.now_ms();
            let heartbeat_deadline_ms = cb.heartbeat_timeout_ms.map(|h| now.saturating_add(h));
            batch.put_callback(
                &cb.callback_id,
                &CallbackRecord {
                    tenant: self.tenant.to_string(),
                    execution: self.execution,
                    op_id: cb.op_id.clone(),
                    state: CallbackState::Pending,
                    created_ms: now,
                    timeout_deadline_ms: cb.timeout_deadline_ms,
                    heartbeat_timeout_ms: cb.heartbeat_timeout_ms,
                    heartbeat_deadline_ms,
                },
            );
            let kinds = [
                (
                    cb.timeout_deadline_ms,
                    TimerKind::CallbackTimeout {
                        callback_id: cb.callback_id.clone(),
                    },
                ),
                (
                    heartbeat_deadline_ms,
                    TimerKind::HeartbeatTimeout {
                        callback_id: cb.callback_id.clone(),
                    },
                ),
            ];
            for (due, kind) in kinds {
                if let Some(due) = due {
                    let op = callback_timer_op(&cb.op_id, &kind);
                    let rec = TimerRecord {
                        tenant: self.tenant.to_string(),
                        kind,
                    };
                    batch.put_timer(due, &self.execution, &op, &rec);
                    callback_timers.push((due, op, rec));
                }
            }
        }
        self.flush_logs_into(&mut batch);
        let db = self.shared.db.clone();
        // Durability at the point of output: nothing the guest goes on past waits for the
        // disk (an at-most-once step's start included); what depends on it leaves the host
        // only after `Store::durable_barrier` (responses, outbound requests, webhooks).
        let unawaited =
            !fx.sync && fx.timers.is_empty() && fx.timers_done.is_empty() && fx.callback.is_none();
        // Unawaited: nothing reads it before a later write (an at-least-once step's start,
        // log lines): the guest goes on at once. Else it waits until the write is applied.
        let durability = (!unawaited).then_some(Durability::Lazy);
        if let Some(focus) = &self.focus {
            focus.fan.recorded(focus.index, &fx.events);
        }
        let committed = match durability {
            None => db.commit_unawaited(batch),
            Some(durability) => {
                let mut commit = std::pin::pin!(db.commit(batch, durability));
                // Queued by its first poll (`Store::commit` sends before it awaits): a
                // branch's siblings may number and queue their own writes from then on (the
                // commit thread applies them in that order), so the fan-out's counters are
                // not held while this one waits to be applied.
                let first = std::future::poll_fn(|cx| {
                    std::task::Poll::Ready(std::future::Future::poll(commit.as_mut(), cx))
                })
                .await;
                match first {
                    std::task::Poll::Ready(done) => done,
                    std::task::Poll::Pending => {
                        self.unlock_journal();
                        commit.await
                    }
                }
            }
        };
        self.unlock_journal();
        if committed.is_err() {
            if let Some(focus) = &self.focus {
                focus.fan.unrecord(focus.index, fx.events.len());
            }
        }
        committed.map_err(|e| trap(HostFailure(e)))?;
        let timers = &self.shared.timers;
        for t in fx.timers {
            timers.add(t.due_ms, self.execution, t.op_id, wake.clone());
        }
        for t in fx.timers_done {
            timers.remove(t.due_ms, self.execution, &t.op_id);
        }
        for (due, op, rec) in callback_timers {
            timers.add(due, self.execution, op, rec);
        }
        match fx.reply {
            Reply::Return(t) => Ok(t),
            Reply::Suspend(reason) => Err(trap(Suspend(reason))),
        }
    }

    /// Common prologue of every call: captured output belongs before this call's position.
    /// In a branch's instance it first takes the fan-out's counters, given back when this
    /// call's commit is applied (`perform_with`) or, for a call that records nothing,
    /// before it returns.
    async fn enter(&mut self) -> wasmtime::Result<u64> {
        self.lock_journal().await;
        if self.shared.stop_requested(&self.execution) {
            return Err(trap(super::Stopped));
        }
        self.drain_stdio(false).map_err(trap)?;
        Ok(self.now_ms())
    }
}

impl types::Host for HostState {}

impl context::Host for HostState {
    async fn step_start(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        options: types::StepOptions,
    ) -> wasmtime::Result<(String, types::StepState)> {
        let now = self.enter().await?;
        let semantics = match options.semantics {
            types::StepSemantics::AtLeastOncePerRetry => StepSemantics::AtLeastOncePerRetry,
            types::StepSemantics::AtMostOncePerRetry => StepSemantics::AtMostOncePerRetry,
        };
        let fx = self
            .act
            .step_start(
                now,
                parent.as_deref(),
                name.as_deref(),
                semantics,
                policy(options.retry),
                rand::random::<f64>(),
            )
            .map_err(trap)?;
        // A replay: the journal answers with the step's recorded end and records nothing.
        let replayed = fx.events.is_empty()
            && matches!(
                fx.reply,
                Reply::Return((_, StepStart::Succeeded(_) | StepStart::Failed(_)))
            );
        let (id, state) = self.perform(fx).await?;
        self.steps_replayed += u64::from(replayed);
        let state = match state {
            StepStart::Succeeded(v) => types::StepState::Succeeded(v),
            StepStart::Failed(e) => types::StepState::Failed(e.into()),
            StepStart::Run(n) => {
                self.step_timer.started(&id);
                types::StepState::Run(n)
            }
        };
        Ok((id, state))
    }

    async fn step_succeed(
        &mut self,
        id: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::ErrorObject>> {
        self.step_timer.ended(&id);
        self.end_with_value(
            value,
            |act, now, e| act.step_fail_final(now, &id, e),
            |act, now, v| act.step_succeed(now, &id, v),
        )
        .await
    }

    async fn step_fail(
        &mut self,
        id: String,
        error: types::ErrorObject,
    ) -> wasmtime::Result<Option<u32>> {
        self.step_timer.ended(&id);
        let now = self.enter().await?;
        let fx = self
            .act
            .step_fail(now, &id, error.into(), rand::random::<f64>())
            .map_err(trap)?;
        self.perform(fx).await
    }

    async fn wait(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        millis: u64,
    ) -> wasmtime::Result<()> {
        let now = self.enter().await?;
        let fx = self
            .act
            .wait(now, parent.as_deref(), name.as_deref(), millis)
            .map_err(trap)?;
        self.perform(fx).await
    }

    async fn create_callback(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        options: types::CallbackOptions,
    ) -> wasmtime::Result<(String, String)> {
        let now = self.enter().await?;
        let fx = self
            .act
            .create_callback(
                now,
                parent.as_deref(),
                name.as_deref(),
                options.timeout_ms,
                options.heartbeat_timeout_ms,
                crate::ids::callback_id,
            )
            .map_err(trap)?;
        self.perform(fx).await
    }

    async fn await_callback(
        &mut self,
        id: String,
    ) -> wasmtime::Result<Result<String, types::ErrorObject>> {
        let now = self.enter().await?;
        let callback_id = match self.act.await_callback(&id).map_err(trap)? {
            CallbackPoll::Ready(r) => {
                self.unlock_journal();
                return Ok(r.map_err(Into::into));
            }
            CallbackPoll::Pending { callback_id } => callback_id,
        };
        let record = self
            .shared
            .db
            .callback(&callback_id)
            .map_err(|e| trap(HostFailure(e)))?;
        let resolution = match record.map(|r| r.state) {
            Some(CallbackState::Succeeded(v)) => Resolution::Succeeded(v),
            Some(CallbackState::Failed(e)) => Resolution::Failed(e),
            Some(CallbackState::TimedOut(e)) => Resolution::TimedOut(e),
            Some(CallbackState::Pending) | None => {
                let fx = Effects::<()>::new(Reply::Suspend(SuspendReason::Callback));
                self.perform(fx).await?;
                unreachable!("perform suspends");
            }
        };
        // The guest sees what history records, so that a replay sees the same.
        let resolution = self.act.limits().bound_resolution(resolution);
        let outcome = match &resolution {
            Resolution::Succeeded(v) => Ok(v.clone()),
            Resolution::Failed(e) | Resolution::TimedOut(e) => Err(e.clone().into()),
        };
        if let Some(event) = self.act.resolve_callback(now, &id, resolution) {
            let mut fx = Effects::new(Reply::Return(()));
            fx.events.push(event);
            self.perform(fx).await?;
        }
        Ok(outcome)
    }

    async fn context_start(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        kind: types::ContextKind,
    ) -> wasmtime::Result<(String, types::ContextState)> {
        let now = self.enter().await?;
        let fx = self
            .act
            .context_start(now, parent.as_deref(), name.as_deref(), context_kind(kind))
            .map_err(trap)?;
        let (id, state) = self.perform(fx).await?;
        let state = match state {
            ContextStart::Succeeded(v) => types::ContextState::Succeeded(v),
            ContextStart::Failed(e) => types::ContextState::Failed(e.into()),
            ContextStart::Run => types::ContextState::Run,
        };
        Ok((id, state))
    }

    async fn context_succeed(
        &mut self,
        id: String,
        value: String,
    ) -> wasmtime::Result<Result<(), types::ErrorObject>> {
        let now = self.enter().await?;
        let (outcome, reply) = match self.check_payload(&value) {
            Ok(()) => (Ok(value), Ok(())),
            Err(e) => (Err(e.clone()), Err(e.into())),
        };
        let fx = self.act.context_end(now, &id, outcome).map_err(trap)?;
        self.perform(fx).await?;
        Ok(reply)
    }

    async fn context_fail(
        &mut self,
        id: String,
        error: types::ErrorObject,
    ) -> wasmtime::Result<()> {
        let now = self.enter().await?;
        let fx = self
            .act
            .context_end(now, &id, Err(error.into()))
            .map_err(trap)?;
        self.perform(fx).await
    }

    async fn condition_start(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
    ) -> wasmtime::Result<(String, types::ConditionState)> {
        let now = self.enter().await?;
        let fx = self
            .act
            .condition_start(now, parent.as_deref(), name.as_deref())
            .map_err(trap)?;
        let replayed = fx.events.is_empty()
            && matches!(
                fx.reply,
                Reply::Return((_, ConditionStart::Succeeded(_) | ConditionStart::Failed(_)))
            );
        let (id, state) = self.perform(fx).await?;
        self.steps_replayed += u64::from(replayed);
        let state = match state {
            ConditionStart::Succeeded(v) => types::ConditionState::Succeeded(v),
            ConditionStart::Failed(e) => types::ConditionState::Failed(e.into()),
            ConditionStart::Check { attempt, state } => {
                types::ConditionState::Check(types::ConditionCheck { attempt, state })
            }
        };
        Ok((id, state))
    }

    async fn condition_continue(
        &mut self,
        id: String,
        state: String,
        delay_ms: u64,
    ) -> wasmtime::Result<Result<u32, types::ErrorObject>> {
        let ended = self
            .end_with_value(
                state,
                |act, now, e| act.condition_fail(now, &id, e),
                |act, now, v| act.condition_continue(now, &id, v, delay_ms),
            )
            .await?;
        Ok(ended.and_then(|r| r.map_err(Into::into)))
    }

    async fn condition_succeed(
        &mut self,
        id: String,
        state: String,
    ) -> wasmtime::Result<Result<(), types::ErrorObject>> {
        self.end_with_value(
            state,
            |act, now, e| act.condition_fail(now, &id, e),
            |act, now, v| act.condition_succeed(now, &id, v),
        )
        .await
    }

    async fn condition_fail(
        &mut self,
        id: String,
        error: types::ErrorObject,
    ) -> wasmtime::Result<()> {
        let now = self.enter().await?;
        let fx = self
            .act
            .condition_fail(now, &id, error.into())
            .map_err(trap)?;
        self.perform(fx).await
    }

    async fn batch_start(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        options: types::BatchOptions,
    ) -> wasmtime::Result<(String, types::BatchState)> {
        let now = self.enter().await?;
        let spec = batch_spec(options);
        let fx = self
            .act
            .batch_start(now, parent.as_deref(), name.as_deref(), spec.clone())
            .map_err(trap)?;
        let (id, state) = self.perform(fx).await?;
        let indices = match state {
            BatchStart::Completed(o) => {
                return Ok((id, types::BatchState::Completed(batch_outcome(o))))
            }
            BatchStart::Run(indices) => indices,
        };
        // Which branches this instance runs (`runtime::fanout`).
        let indices = match &self.focus {
            // A branch's instance at its batch: that branch only.
            Some(focus) if focus.fan.batch == id => vec![focus.index],
            // A batch inside its branch: every branch, here, one after another.
            Some(focus) if in_scope(&id, &focus.fan.branch_id(focus.index)) => indices,
            Some(focus) => {
                return Err(trap(Violation::NonDeterministic(format!(
                    "batch-start: the instance of branch {} of batch {} reached batch {id}, \
                     which its execution's instance did not open; the function's code path \
                     changed between runs",
                    focus.index, focus.fan.batch
                ))))
            }
            // The execution's own instance: a batch already complete is closed here (the
            // guest's `batch-finish` records its summary); else its branches run on
            // instances of their own while this one is unloaded.
            None => {
                let (ok, failed) = self.act.journal().batch_outcome(&id, &spec).tally();
                if spec.policy.evaluate(spec.count, ok, failed).is_some() {
                    Vec::new()
                } else {
                    self.fan_out = Some((id, spec));
                    return Err(trap(Suspend(SuspendReason::Batch)));
                }
            }
        };
        Ok((id, types::BatchState::Run(indices)))
    }

    async fn branch_start(
        &mut self,
        batch: String,
        index: u32,
        name: Option<String>,
    ) -> wasmtime::Result<(String, types::BranchState)> {
        let now = self.enter().await?;
        let fx = self
            .act
            .branch_start(now, &batch, index, name.as_deref())
            .map_err(trap)?;
        let (id, state) = self.perform(fx).await?;
        let state = match state {
            BranchStart::Succeeded(v) => types::BranchState::Succeeded(v),
            BranchStart::Failed(e) => types::BranchState::Failed(e.into()),
            BranchStart::Run => types::BranchState::Run,
            BranchStart::Skip => types::BranchState::Skip,
        };
        Ok((id, state))
    }

    async fn batch_finish(&mut self, id: String) -> wasmtime::Result<types::BatchOutcome> {
        let now = self.enter().await?;
        if self.focus.as_ref().is_some_and(|f| f.fan.batch == id) {
            // A branch's instance: its branch is recorded; the batch is not its to close.
            self.unlock_journal();
            self.branch_done = true;
            return Err(trap(Suspend(SuspendReason::Batch)));
        }
        let fx = self.act.batch_finish(now, &id).map_err(trap)?;
        Ok(batch_outcome(self.perform(fx).await?))
    }

    async fn invoke(
        &mut self,
        parent: Option<String>,
        name: Option<String>,
        function: String,
        input: String,
        options: types::InvokeOptions,
    ) -> wasmtime::Result<Result<String, types::ErrorObject>> {
        let now = self.enter().await?;
        let op = match self
            .act
            .invoke_position(parent.as_deref(), name.as_deref())
            .map_err(trap)?
        {
            InvokePoll::Ready(r) => return Ok(r.map_err(Into::into)),
            InvokePoll::Pending { op, callee } => {
                // Ended since this activation began? Then its end is recorded now.
                let end =
                    crate::runtime::invoke::read_callee_end(&self.shared.db, &self.tenant, &callee)
                        .map_err(|e| trap(HostFailure(e)))?;
                let Some(end) = end else {
                    let fx = Effects::<()>::new(Reply::Suspend(SuspendReason::Invoke));
                    self.perform(fx).await?;
                    unreachable!("perform suspends");
                };
                let event = self.act.invoke_ended(now, &op.id, end).expect("pending");
                let outcome = match &event.kind {
                    crate::journal::EventKind::ChainedInvokeSucceeded { result, .. } => {
                        Ok(result.clone())
                    }
                    crate::journal::EventKind::ChainedInvokeFailed { error, .. }
                    | crate::journal::EventKind::ChainedInvokeTimedOut { error, .. }
                    | crate::journal::EventKind::ChainedInvokeStopped { error, .. } => {
                        Err(error.clone().into())
                    }
                    _ => unreachable!("an invoke's end"),
                };
                let mut fx = Effects::new(Reply::Return(()));
                fx.events.push(event);
                self.perform(fx).await?;
                return Ok(outcome);
            }
            InvokePoll::New(op) => op,
        };
        let shared = self.shared.clone();
        let prepared = match self.check_payload(&input) {
            Err(e) => Err(e),
            Ok(()) => crate::runtime::invoke::prepare(
                &shared,
                &self.tenant,
                self.execution,
                &function,
                &input,
                options.tenant_id.as_deref(),
                now,
            )
            .map_err(|e| trap(HostFailure(e)))?,
        };
        let (callee, batch, launch) = match prepared {
            Ok(mut p) => {
                let callee = Ok((crate::ids::execution_id_to_string(&p.id), p.version));
                (callee, p.take_batch(), Some(p))
            }
            Err(e) => (Err(e), Batch::new(), None),
        };
        let start = InvokeStart {
            function,
            input,
            tenant_id: options.tenant_id,
            callee,
        };
        let fx = self.act.invoke_started(now, op, start);
        // The callee's record and the caller's start: one fsynced batch. The callee is
        // queued only once that is durable, and the caller suspends after that.
        let Effects {
            events,
            timers,
            timers_done,
            callback,
            sync,
            reply,
        } = fx;
        let commit = Effects {
            events,
            timers,
            timers_done,
            callback,
            sync,
            reply: Reply::Return(()),
        };
        self.perform_with(commit, batch).await?;
        if let Some(p) = launch {
            p.launched(&shared);
        }
        match reply {
            Reply::Return(InvokePoll::Ready(r)) => Ok(r.map_err(Into::into)),
            Reply::Return(_) => unreachable!("a started invoke suspends"),
            Reply::Suspend(reason) => Err(trap(Suspend(reason))),
        }
    }

    async fn log(&mut self, level: types::LogLevel, message: String) -> wasmtime::Result<()> {
        self.enter().await?;
        let level = match level {
            types::LogLevel::Debug => LogLevel::Debug,
            types::LogLevel::Info => LogLevel::Info,
            types::LogLevel::Warn => LogLevel::Warn,
            types::LogLevel::Error => LogLevel::Error,
        };
        let logged = self.log_line(level, LogStream::Log, message).map_err(trap);
        // Its line is numbered; it is written with this instance's next commit.
        self.unlock_journal();
        logged
    }
}
