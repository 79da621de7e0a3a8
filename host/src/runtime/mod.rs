//! Activations: one wasmtime `Store` per activation with its limits (the engine and linker
//! are in `engine`), and the mapping of how a guest run ended (output, error, `Suspend`
//! trap, protocol violation, trap, timeout) to history events and a status.
//!
//! Architecture invariant: a `Store` lives exactly as long as one activation; when it ends
//! (finished or suspended) the store and its linear memory are dropped, so a suspended
//! execution holds no wasm resources.

pub mod create;
mod engine;
pub mod fanout;
pub mod invoke;

pub use engine::{engine, linker, Options, EPOCH_TICK};

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::Duration;

use wasmtime::{Engine, Store, StoreLimitsBuilder};

use crate::db::{Batch, Durability, ExecutionRecord, Status};
use crate::host_api::{HostFailure, HostState, Shared, Stopped, Suspend};
use crate::journal::{
    error_types, Activation, ErrorObject, EventKind, Journal, Reply, Resolution, Violation,
};
use crate::metrics::{Metrics, TenantMetrics};
use crate::registry::Registry;
use crate::scheduler::{ExecKey, Outcome};
use crate::settings::{self, Limits};

/// The trap that stops a guest whose activation ran past its time limit.
#[derive(Debug, thiserror::Error)]
#[error("activation time limit exceeded")]
struct ActivationTimedOut;

/// The trap that stops a guest whose execution ran past its timeout.
#[derive(Debug, thiserror::Error)]
#[error("execution timeout exceeded")]
struct ExecutionTimedOut;

/// The timer operation id of an execution's deadline (op ids are digits and dots, so this
/// never collides with a journal timer).
pub const DEADLINE_OP: &str = "deadline";

/// The timer operation id of a delayed start (`?delay=`, `?start_at=`): written by invoke
/// with the execution, deleted by the activation that starts it (or ends it first).
pub const START_OP: &str = "start";

/// The in-memory timer op id of a retry after a host failure (op ids are digits and dots).
const HOST_RETRY_OP: &str = "host-retry";

/// The delay before an execution whose activation failed in the host runs again: 1 s,
/// doubling with each failure in a row, at most 30 s (well inside the timer horizon, so
/// the in-memory timer is always indexed).
fn host_retry_delay(failures: u32) -> Duration {
    let secs = 1u64 << failures.saturating_sub(1).min(5);
    Duration::from_secs(secs.min(30))
}

/// Runs activations.
pub struct Runtime {
    /// Where a terminal event's webhook deliveries go (in its batch).
    pub webhooks: crate::webhooks::Outbox,
    pub engine: Engine,
    /// Host failures in a row per execution (reset by an activation that ends normally),
    /// for the retry delay, with the last one's message: an execution whose deadline
    /// passes while they go on times out naming it.
    pub host_failures:
        std::sync::Mutex<std::collections::HashMap<crate::db::ExecId, (u32, String)>>,
    pub registry: Arc<Registry>,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub opts: Options,
}

/// How the guest's run ended, before it is recorded.
enum End {
    Succeeded(String),
    /// Failed; `trap` is also recorded on the `InvocationCompleted` event.
    Failed {
        error: ErrorObject,
        invocation_error: bool,
    },
    Suspended,
    /// A trap or timeout inside a step: recorded as a failed attempt; run again.
    Again,
    /// A user stopped it.
    Stopped,
    /// It ran past its execution timeout.
    TimedOut,
}

/// An activation error that is the store refusing a write for lack of space.
fn is_storage_full(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<crate::db::Error>()
            .is_some_and(crate::db::Error::is_full)
    })
}

fn activation_timeout_error(limit: Duration) -> ErrorObject {
    ErrorObject::new(
        error_types::ACTIVATION_TIMEOUT,
        format!("the activation ran longer than {limit:?} and was stopped"),
    )
}

impl Runtime {
    /// Activate an execution: replay it from its journal and run it until it finishes or
    /// suspends. Never panics on guest behaviour; a failure in the host (storage, loading)
    /// leaves the execution as its journal left it and runs it again after a growing delay.
    #[tracing::instrument(skip(self), fields(tenant = %key.tenant, execution_id = %crate::ids::execution_id_to_string(&key.id)))]
    pub async fn activate(&self, key: ExecKey) -> Outcome {
        // Looked up once: the activation counts into its tenant's atomics from here on.
        let metrics = self.metrics.tenant(&key.tenant);
        let mut trace = None;
        let result = self.try_activate(&key, &metrics, &mut trace).await;
        if let Some(trace) = trace {
            // Spans leave the host: what they describe is on disk first (durability at the
            // point of output), so no exported span is taken back by a crash.
            if let Err(e) = self.shared.db.durable_barrier().await {
                tracing::warn!(error = %e, "the activation's spans are not exported");
            } else {
                self.end_trace(&key, trace, &result);
            }
        }
        let outcome = match result {
            Ok(o) => o,
            // The store refused a write for lack of space: nothing of it was written, so
            // the execution runs again (from its journal) once space returns.
            Err(e) if is_storage_full(&e) => {
                tracing::warn!(error = %e, "activation stopped: storage full; it runs again once space returns");
                self.shared.db.space_available().await;
                return Outcome::Again;
            }
            Err(e) => {
                // Not the guest's fault, and maybe not lasting (a storage read, a component
                // that could not be loaded for now): the execution stays as its journal left
                // it and runs again after a growing delay, rather than waiting for a restart.
                let failures = {
                    let mut map = self.host_failures.lock().expect("host failures");
                    let (n, last) = map.entry(key.id).or_default();
                    *n = n.saturating_add(1);
                    *last = format!("{e:#}");
                    *n
                };
                let delay = host_retry_delay(failures);
                metrics.host_failures.fetch_add(1, Relaxed);
                tracing::error!(error = %e, failures, retry_in_ms = delay.as_millis() as u64, "activation failed in the host; it runs again");
                let due = self
                    .shared
                    .timers
                    .clock()
                    .now_ms()
                    .saturating_add(delay.as_millis() as u64);
                let wake = crate::db::TimerRecord {
                    tenant: key.tenant.to_string(),
                    kind: crate::db::TimerKind::Wake,
                };
                // In memory only: after a restart, recovery runs it again anyway.
                self.shared
                    .timers
                    .add(due, key.id, HOST_RETRY_OP.to_string(), wake);
                return Outcome::Suspended;
            }
        };
        self.host_failures
            .lock()
            .expect("host failures")
            .remove(&key.id);
        outcome
    }

    /// Export the spans of an activation that ended with `result` (`otlp`).
    fn end_trace(
        &self,
        key: &ExecKey,
        trace: crate::otlp::ActivationTrace,
        result: &anyhow::Result<Outcome>,
    ) {
        let Some(tracer) = &self.shared.tracer else {
            return;
        };
        let outcome = match result {
            Ok(Outcome::Finished) => "finished",
            Ok(Outcome::Suspended) => "suspended",
            Ok(Outcome::Again) => "again",
            Err(_) => "host failure",
        };
        match self
            .shared
            .db
            .history_after(&key.id, trace.after_seq, usize::MAX)
        {
            Ok(new) => tracer.end(trace, &new, outcome),
            Err(e) => tracing::warn!(error = %e, "the activation's spans are not exported"),
        }
    }

    /// `trace` is set once the activation is past its first reads, with `--otlp-endpoint`.
    /// The phases: load and check, ingest what happened while it was away, load the
    /// component and reserve memory, run the guest (`run_guest`), record how it ended.
    async fn try_activate(
        &self,
        key: &ExecKey,
        metrics: &TenantMetrics,
        trace: &mut Option<crate::otlp::ActivationTrace>,
    ) -> anyhow::Result<Outcome> {
        if let Some(index) = key.branch {
            return self.activate_branch(key, index, metrics).await;
        }
        let db = &self.shared.db;
        let Some(exec) = db.execution(&key.tenant, &key.id)? else {
            return Ok(Outcome::Finished);
        };
        if exec.status.is_terminal() {
            self.shared.fan_outs.remove(&key.id);
            return Ok(Outcome::Finished);
        }
        let clock = self.shared.timers.clock().clone();
        let now = clock.now_ms();
        let stop_requested = db.stop_request(&key.id)?.is_some();
        let past_deadline = exec.deadline_ms.is_some_and(|d| now >= d);
        // A batch on branch instances: this instance runs only once they are done.
        let failure = match self.shared.fan_outs.parent_turn(
            key,
            stop_requested || past_deadline,
            &self.shared.scheduler,
        ) {
            Some(fanout::ParentTurn::Wait) => return Ok(Outcome::Suspended),
            Some(fanout::ParentTurn::Proceed(failure)) => failure,
            None => None,
        };
        let history = db.history(&key.id)?;
        if let Some(tracer) = &self.shared.tracer {
            let ids = crate::otlp::Ids::of(key.id, exec.trace.as_ref(), exec.created_ms);
            *trace = Some(tracer.begin(ids, &key.tenant, &exec.function, &history));
        }
        let mut act = Activation::new(Journal::from_events(&history), now);
        act.set_limits(self.shared.journal_limits(&key.tenant));
        if stop_requested {
            self.shared.request_stop(key.id);
            return self
                .finish(key, metrics, exec, &mut act, End::Stopped, None)
                .await;
        }
        if past_deadline {
            return self
                .finish(key, metrics, exec, &mut act, End::TimedOut, None)
                .await;
        }
        if let Some(error) = failure {
            let end = End::Failed {
                error,
                invocation_error: true,
            };
            return self.finish(key, metrics, exec, &mut act, end, None).await;
        }
        // A delayed start not yet due: woken early (a restart's recovery, a stray wake), it
        // stays suspended on its start timer, which wakes it when due.
        let start_ms = act.journal().start_ms();
        if let Some(start) = start_ms.filter(|&t| now < t) {
            // Indexed again in case this wake was its timer, fired by a clock that has
            // since stepped back (the index holds one entry per timer, so this adds none).
            let wake = crate::db::TimerRecord {
                tenant: key.tenant.to_string(),
                kind: crate::db::TimerKind::Wake,
            };
            self.shared
                .timers
                .add(start, key.id, START_OP.to_string(), wake);
            return Ok(Outcome::Suspended);
        }
        let limits = self.limits(&key.tenant, &exec.function)?;

        let mut batch = Batch::new();
        if let Some(t) =
            start_ms.filter(|_| act.journal().last_event_type() == Some("ExecutionStarted"))
        {
            // Its first activation: the start timer is consumed.
            batch.del_timer(t, &key.id, START_OP);
        }
        let mut exec = exec;
        let resumed = exec.status == Status::Suspended;
        if resumed {
            exec.status = Status::Running;
            exec.updated_ms = now;
            batch.put_execution(&exec);
        }
        self.ingest(key, &mut act, None, now, batch).await?;
        if resumed {
            metrics.transition(Status::Suspended, Status::Running);
        }

        let pre = match self.load(key, &exec).await? {
            Ok(pre) => pre,
            Err(error) => {
                let end = End::Failed {
                    error,
                    invocation_error: true,
                };
                return self.finish(key, metrics, exec, &mut act, end, None).await;
            }
        };
        // From here until the store is gone, a stop reaches this activation even while it
        // waits for memory or its guest awaits a host future (the race around the run).
        let stop = self.shared.watch_stop(key.id);
        let memory = match self
            .reserve_memory(limits.memory_limit_bytes as u64, exec.deadline_ms, &stop)
            .await
        {
            Ok(memory) => memory,
            Err(end) => return self.finish(key, metrics, exec, &mut act, end, None).await,
        };
        let parent = trace.as_ref().map(|t| t.parent());
        let run = self
            .run_guest(
                key, &exec, act, &limits, pre, memory, &stop, None, parent, metrics,
            )
            .await?;
        drop(stop);
        let Run {
            ended,
            mut act,
            fan_out,
            ..
        } = run;
        if let (Some((batch, spec)), Done(End::Suspended)) = (fan_out, &ended) {
            // Its batch goes to branch instances: nothing is recorded for this activation
            // (the batch's events are its record); the execution stays running.
            let fan = fanout::FanOut::new(
                key.clone(),
                batch,
                spec,
                db.history(&key.id)?,
                db.next_log_seq(&key.id)?,
            );
            self.shared.fan_outs.start(fan, &self.shared.scheduler);
            return Ok(Outcome::Suspended);
        }
        let now = clock.now_ms();
        let (end, ic_error) = match ended {
            Done(end) => (end, None),
            Trapped(error) => {
                let (end, recorded) = self.settle_trap(key, &mut act, error, now).await?;
                (end, recorded.into_iter().next())
            }
        };
        self.finish(key, metrics, exec, &mut act, end, ic_error)
            .await
    }

    /// Record what happened while the guest was away: due waits, resolved callbacks,
    /// callees that ended (their end woke it), with `batch`; within `scope` only (a
    /// branch's instance: its branch).
    async fn ingest(
        &self,
        key: &ExecKey,
        act: &mut Activation,
        scope: Option<&str>,
        now: u64,
        mut batch: Batch,
    ) -> anyhow::Result<Vec<crate::journal::Event>> {
        let db = &self.shared.db;
        let (mut events, consumed) = act.complete_due_waits_in(now, scope);
        for e in &events {
            batch.put_event(&key.id, e);
        }
        for t in &consumed {
            batch.del_timer(t.due_ms, &key.id, &t.op_id);
        }
        let mine = |op: &str| scope.is_none_or(|s| crate::journal::in_scope(op, s));
        for (op, cb) in act.journal().pending_callbacks() {
            if !mine(&op) {
                continue;
            }
            let resolution = match db.callback(&cb)?.map(|r| r.state) {
                Some(crate::db::CallbackState::Succeeded(v)) => Resolution::Succeeded(v),
                Some(crate::db::CallbackState::Failed(e)) => Resolution::Failed(e),
                Some(crate::db::CallbackState::TimedOut(e)) => Resolution::TimedOut(e),
                _ => continue,
            };
            if let Some(e) = act.resolve_callback(now, &op, resolution) {
                batch.put_event(&key.id, &e);
                events.push(e);
            }
        }
        for (op, callee) in act.journal().pending_invokes() {
            if !mine(&op) {
                continue;
            }
            if let Some(end) = invoke::read_callee_end(db, &key.tenant, &callee)? {
                if let Some(e) = act.invoke_ended(now, &op, end) {
                    batch.put_event(&key.id, &e);
                    events.push(e);
                }
            }
        }
        db.commit(batch, Durability::Lazy).await?;
        for t in consumed {
            self.shared.timers.remove(t.due_ms, key.id, &t.op_id);
        }
        Ok(events)
    }

    /// The execution's component, pre-linked; `Err(error)`: it cannot be loaded for good
    /// (the execution fails with it). A storage failure is a host failure.
    async fn load(
        &self,
        key: &ExecKey,
        exec: &ExecutionRecord,
    ) -> anyhow::Result<Result<Arc<crate::registry::Pre>, ErrorObject>> {
        match self
            .registry
            .pre(&key.tenant, &exec.function, exec.version)
            .await
        {
            Ok(p) => Ok(Ok(p)),
            // A storage failure is not the component's: leave the execution as it is, like
            // any other host failure here (`activate` runs it again after a delay).
            Err(e) if e.is_transient() => Err(e.into()),
            // For good: the version record or the component's bytes are gone, or the bytes
            // no longer compile or link against this host. The execution fails with the
            // reason, like any other failure (a deleted function's executions included).
            Err(e) => {
                let deleted = match self.shared.db.function(&key.tenant, &exec.function) {
                    Ok(Some(f)) if !f.deleted => "",
                    _ => " (the function was deleted)",
                };
                tracing::warn!(error = %e, deleted = !deleted.is_empty(), "the execution fails: its component cannot be loaded");
                let error = ErrorObject::new(
                    error_types::LOAD_ERROR,
                    format!(
                        "version {} of {:?} could not be loaded{deleted}: {e}",
                        exec.version, exec.function
                    ),
                );
                Ok(Err(error))
            }
        }
    }

    /// Instantiate the guest over `act` and run it until it returns, suspends, traps or
    /// runs out of time; its captured output is written; the store is dropped.
    #[allow(clippy::too_many_arguments)]
    async fn run_guest(
        &self,
        key: &ExecKey,
        exec: &ExecutionRecord,
        act: Activation,
        limits: &Limits,
        pre: Arc<crate::registry::Pre>,
        memory: crate::host_api::memory::Reservation,
        stop: &crate::host_api::StopWatch,
        focus: Option<crate::host_api::Focus>,
        trace: Option<crate::otlp::Parent>,
        metrics: &TenantMetrics,
    ) -> anyhow::Result<Run> {
        let db = &self.shared.db;
        let clock = self.shared.timers.clock().clone();
        // The wait for memory may have taken a while: the deadline counts from now.
        let now = clock.now_ms();
        let next_log_seq = db.next_log_seq(&key.id)?;
        let store_limits = StoreLimitsBuilder::new()
            .memory_size(limits.memory_limit_bytes)
            .trap_on_grow_failure(true)
            .build();
        let mut state = HostState::new(
            self.shared.clone(),
            key.tenant.clone(),
            key.id,
            act,
            next_log_seq,
            store_limits,
        )
        .with_memory(memory);
        state.trace = trace;
        state.focus = focus;
        let function_metrics = metrics.function(&exec.function);
        state.step_timer = crate::metrics::StepTimer::new(function_metrics.clone());
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limits);
        // Every epoch tick the guest yields to the executor, and the activation limit is
        // checked here, inside the guest's own time slice: a spinning guest is stopped even
        // when every executor thread is busy running guests.
        // The activation ends at its own limit or at the execution's deadline, if sooner.
        let started = std::time::Instant::now();
        let to_deadline = exec
            .deadline_ms
            .map(|d| Duration::from_millis(d.saturating_sub(now)));
        let deadline_first = to_deadline.is_some_and(|t| t <= limits.activation_timeout);
        let limit = to_deadline.map_or(limits.activation_timeout, |t| {
            t.min(limits.activation_timeout)
        });
        store.set_epoch_deadline(1);
        let (shared, id) = (self.shared.clone(), key.id);
        store.epoch_deadline_callback(move |_| {
            if shared.stop_requested(&id) {
                Err(wasmtime::Error::new(Stopped))
            } else if started.elapsed() >= limit {
                Err(if deadline_first {
                    wasmtime::Error::new(ExecutionTimedOut)
                } else {
                    wasmtime::Error::new(ActivationTimedOut)
                })
            } else {
                Ok(wasmtime::UpdateDeadline::Yield(1))
            }
        });
        metrics.activations.fetch_add(1, Relaxed);
        // Observed on every way out from here (as many as `durable_activations_total`).
        let timer = crate::metrics::ActivationTimer::start(function_metrics);

        let input = exec.input.clone();
        let guest = tokio::time::timeout(limit, async {
            let instance = timer.instantiate(pre.instantiate_async(&mut store)).await?;
            instance.call_handle(&mut store, &input).await
        });
        let run = tokio::select! {
            biased;
            run = guest => run,
            // A guest awaiting a host future (an HTTP response, a sleep, a body read) neither
            // ticks nor calls `context`, so the checks there never run: the stop signal ends
            // it instead. Dropping `guest` cancels the host work it awaits (the request and
            // its connection, the timer). A `context` call cut short this way had already
            // queued its commit (`db::Store::commit` sends before it awaits), so the journal
            // on disk and the one `finish` extends agree.
            () = stop.stopped() => Ok(Err(wasmtime::Error::new(Stopped))),
        };

        let state = store.data_mut();
        metrics
            .steps_replayed
            .fetch_add(state.steps_replayed, Relaxed);
        state.lock_journal().await;
        let stdio = state.drain_stdio(true);
        let mut batch = Batch::new();
        state.flush_logs_into(&mut batch);
        let committed = db.commit(batch, Durability::Lazy).await;
        state.unlock_journal();
        committed?;
        // Whatever it queued without awaiting is applied before another instance of its
        // execution (a branch's, or its own after a fan-out) reads its history.
        if state.focus.is_some() || state.fan_out.is_some() {
            db.applied().await?;
        }
        stdio?;
        let max_payload = self.shared.limits.max_payload_bytes;

        let ended = match run {
            Err(_elapsed) if deadline_first => Done(End::TimedOut),
            Err(_elapsed) => {
                metrics.traps.fetch_add(1, Relaxed);
                Trapped(activation_timeout_error(limits.activation_timeout))
            }
            Ok(Ok(Ok(output))) => {
                match crate::journal::check_payload("output", &output, max_payload) {
                    Ok(()) => Done(End::Succeeded(output)),
                    Err(error) => Done(End::Failed {
                        error,
                        invocation_error: false,
                    }),
                }
            }
            Ok(Ok(Err(e))) => Done(End::Failed {
                // The guest sized this error: bounded like every error it records.
                error: self.shared.limits.journal.bound_error(e.into()),
                invocation_error: false,
            }),
            Ok(Err(err)) => {
                if err.downcast_ref::<Stopped>().is_some() {
                    Done(End::Stopped)
                } else if err.downcast_ref::<Suspend>().is_some() {
                    Done(End::Suspended)
                } else if err.downcast_ref::<ExecutionTimedOut>().is_some() {
                    Done(End::TimedOut)
                } else if err.downcast_ref::<ActivationTimedOut>().is_some() {
                    metrics.traps.fetch_add(1, Relaxed);
                    Trapped(activation_timeout_error(limits.activation_timeout))
                } else if let Some(v) = err.downcast_ref::<Violation>() {
                    Done(End::Failed {
                        error: v.to_error(),
                        invocation_error: true,
                    })
                } else if let Some(h) = err.downcast_ref::<HostFailure>() {
                    if let crate::db::Error::Full(m) = &h.0 {
                        return Err(crate::db::Error::Full(m.clone()).into());
                    }
                    anyhow::bail!("{h}");
                } else {
                    metrics.traps.fetch_add(1, Relaxed);
                    let message = match err.downcast_ref::<wasmtime::Trap>() {
                        Some(trap) => trap.to_string(),
                        None => format!("{}", err.root_cause()),
                    };
                    Trapped(ErrorObject::new(error_types::TRAP, message))
                }
            }
        };
        let now = clock.now_ms();
        let state = store.data_mut();
        let act = std::mem::replace(&mut state.act, Activation::new(Journal::default(), now));
        let run = Run {
            ended,
            act,
            fan_out: state.fan_out.take(),
            branch_done: state.branch_done,
        };
        drop(store); // unload: the instance and its memory are gone from here on
        Ok(run)
    }

    /// A trap outside the guest's control: `InvocationCompleted` with the error is recorded
    /// first (as AWS records the failed invocation before the step), then the live step's
    /// attempt fails (retried, or failed for good); with no step live the execution fails.
    async fn settle_trap(
        &self,
        key: &ExecKey,
        act: &mut Activation,
        error: ErrorObject,
        now: u64,
    ) -> anyhow::Result<(End, Vec<crate::journal::Event>)> {
        let db = &self.shared.db;
        let started_ms = act.started_ms();
        let ic = act.journal_mut().record(
            now,
            EventKind::InvocationCompleted {
                started_ms,
                error: Some(error.clone()),
            },
        );
        let mut batch = Batch::new();
        batch.put_event(&key.id, &ic);
        let Some(fx) = act.interrupt_live_step(now, error.clone(), rand::random::<f64>()) else {
            db.commit(batch, Durability::Lazy).await?;
            let end = End::Failed {
                error,
                invocation_error: false,
            };
            return Ok((end, vec![ic]));
        };
        let wake = crate::db::TimerRecord {
            tenant: key.tenant.to_string(),
            kind: crate::db::TimerKind::Wake,
        };
        for e in &fx.events {
            batch.put_event(&key.id, e);
        }
        for t in &fx.timers {
            batch.put_timer(t.due_ms, &key.id, &t.op_id, &wake);
        }
        db.commit(batch, Durability::Lazy).await?;
        for t in fx.timers {
            self.shared
                .timers
                .add(t.due_ms, key.id, t.op_id, wake.clone());
        }
        let end = match fx.reply {
            Reply::Suspend(_) => End::Suspended,
            Reply::Return(_) => End::Again,
        };
        let mut recorded = vec![ic];
        recorded.extend(fx.events);
        Ok((end, recorded))
    }

    /// An activation of branch `index` of the execution's fanned-out batch: it replays the
    /// execution, runs that branch only and records nothing beyond it. What would end the
    /// execution (a stop, the deadline, a protocol violation, a trap outside any step) is
    /// left to the execution's own instance, which the fan-out wakes once no branch runs.
    async fn activate_branch(
        &self,
        key: &ExecKey,
        index: u32,
        metrics: &TenantMetrics,
    ) -> anyhow::Result<Outcome> {
        let Some(fan) = self.shared.fan_outs.get(&key.id) else {
            return Ok(Outcome::Finished); // a stale wake: the batch is over
        };
        if fan.begin(index) == fanout::Begin::Leave {
            return Ok(Outcome::Finished);
        }
        let scheduler = &self.shared.scheduler;
        let (end, result) = match self.run_branch(key, &fan, index, metrics).await {
            Ok((end, outcome)) => (end, Ok(outcome)),
            // A host failure: `activate` retries it through the execution's own instance
            // (its in-memory retry timer wakes that one, which requeues parked branches).
            Err(e) => (fanout::BranchEnd::Parked, Err(e)),
        };
        fan.end(index, end, scheduler);
        result
    }

    async fn run_branch(
        &self,
        key: &ExecKey,
        fan: &Arc<fanout::FanOut>,
        index: u32,
        metrics: &TenantMetrics,
    ) -> anyhow::Result<(fanout::BranchEnd, Outcome)> {
        use fanout::BranchEnd;
        let db = &self.shared.db;
        let Some(exec) = db.execution(&key.tenant, &key.id)? else {
            return Ok((BranchEnd::Stopping, Outcome::Finished));
        };
        let now = self.shared.timers.clock().now_ms();
        if exec.status.is_terminal()
            || self.shared.stop_requested(&key.id)
            || exec.deadline_ms.is_some_and(|d| now >= d)
        {
            return Ok((BranchEnd::Stopping, Outcome::Finished));
        }
        let limits = self.limits(&key.tenant, &exec.function)?;
        let branch = fan.branch_id(index);
        let mut act = Activation::new(Journal::from_events(&fan.history_of(index)), now);
        act.set_limits(self.shared.journal_limits(&key.tenant));
        {
            let mut counters = fan.counters.lock().await;
            counters.number(&mut act);
            let ingested = self
                .ingest(key, &mut act, Some(&branch), now, Batch::new())
                .await;
            counters.advance(&act);
            fan.recorded(index, &ingested?);
        }
        let pre = match self.load(key, &exec).await? {
            Ok(pre) => pre,
            Err(error) => return Ok((BranchEnd::Failure(error), Outcome::Finished)),
        };
        let stop = self.shared.watch_stop(key.id);
        let memory = match self
            .reserve_memory(limits.memory_limit_bytes as u64, exec.deadline_ms, &stop)
            .await
        {
            Ok(memory) => memory,
            Err(_) => return Ok((BranchEnd::Stopping, Outcome::Finished)),
        };
        let focus = crate::host_api::Focus {
            fan: fan.clone(),
            index,
        };
        let run = self
            .run_guest(
                key,
                &exec,
                act,
                &limits,
                pre,
                memory,
                &stop,
                Some(focus),
                None,
                metrics,
            )
            .await?;
        drop(stop);
        let Run {
            ended,
            mut act,
            branch_done,
            ..
        } = run;
        let branch_outcome = |act: &Activation| match act.journal().op(&branch).map(|o| &o.state) {
            Some(crate::journal::OpState::Context {
                outcome: Some(outcome),
            }) => Some(outcome.is_ok()),
            _ => None,
        };
        let protocol = |what: &str| {
            Violation::Protocol(format!(
                "the instance of branch {index} of batch {} {what} instead of ending at its \
                 batch-finish",
                fan.batch
            ))
            .to_error()
        };
        let end = match ended {
            Done(End::Suspended) if branch_done => match branch_outcome(&act) {
                Some(succeeded) => BranchEnd::Done { succeeded },
                // Its instance saw the batch complete and skipped the branch.
                None if act.journal().op(&branch).is_none() => BranchEnd::Skipped,
                None => BranchEnd::Failure(protocol("finished the batch with its branch open")),
            },
            Done(End::Suspended) => {
                metrics.suspensions.fetch_add(1, Relaxed);
                self.record_branch_suspension(key, fan, index, &mut act)
                    .await?;
                BranchEnd::Parked
            }
            Done(End::Stopped) | Done(End::TimedOut) => BranchEnd::Stopping,
            Done(End::Again) => BranchEnd::Again,
            Done(End::Succeeded(_)) => BranchEnd::Failure(protocol("returned from the handler")),
            Done(End::Failed {
                error,
                invocation_error: true,
            }) => BranchEnd::Failure(error),
            Done(End::Failed { .. }) => BranchEnd::Failure(protocol("failed the handler")),
            Trapped(error) => {
                let now = self.shared.timers.clock().now_ms();
                let mut counters = fan.counters.lock().await;
                counters.number(&mut act);
                let settled = self.settle_trap(key, &mut act, error, now).await;
                counters.advance(&act);
                let (end, recorded) = settled?;
                fan.recorded(index, &recorded);
                match end {
                    End::Suspended => BranchEnd::Parked,
                    End::Again => BranchEnd::Again,
                    End::Failed { error, .. } => BranchEnd::Failure(error),
                    _ => unreachable!("a trap settles as suspended, again or failed"),
                }
            }
        };
        let outcome = match end {
            BranchEnd::Again => Outcome::Again,
            _ => Outcome::Finished,
        };
        Ok((end, outcome))
    }

    /// A branch's instance suspended inside its branch (a wait, callback, retry, invoke):
    /// its `InvocationCompleted`, as the execution's own instance records one when it
    /// suspends.
    async fn record_branch_suspension(
        &self,
        key: &ExecKey,
        fan: &fanout::FanOut,
        index: u32,
        act: &mut Activation,
    ) -> anyhow::Result<()> {
        let now = self.shared.timers.clock().now_ms();
        let mut counters = fan.counters.lock().await;
        counters.number(act);
        let started_ms = act.started_ms();
        let e = act.journal_mut().record(
            now,
            EventKind::InvocationCompleted {
                started_ms,
                error: None,
            },
        );
        let mut batch = Batch::new();
        batch.put_event(&key.id, &e);
        let committed = self.shared.db.commit(batch, Durability::Lazy).await;
        counters.advance(act);
        committed?;
        fan.recorded(index, std::slice::from_ref(&e));
        Ok(())
    }

    /// Reserve `bytes` of the memory budget for this activation's instance, waiting in line
    /// until they fit; a stop or the execution's deadline ends the wait (and the
    /// activation) instead. Waiting holds no instance and no memory, only the scheduler's
    /// slot, and every holder of memory is a running activation bounded by its own time
    /// limit, so the line always moves.
    async fn reserve_memory(
        &self,
        bytes: u64,
        deadline_ms: Option<u64>,
        stop: &crate::host_api::StopWatch,
    ) -> Result<crate::host_api::memory::Reservation, End> {
        let clock = self.shared.timers.clock();
        let to_deadline =
            deadline_ms.map(|d| Duration::from_millis(d.saturating_sub(clock.now_ms())));
        let deadline = async {
            match to_deadline {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            () = stop.stopped() => Err(End::Stopped),
            () = deadline => Err(End::TimedOut),
            memory = self.shared.memory.reserve(bytes) => Ok(memory),
        }
    }

    /// The limits a function runs with now (its settings and its tenant's ceilings may
    /// change between activations): its own, within its tenant's ceilings.
    fn limits(&self, tenant: &str, function: &str) -> anyhow::Result<Limits> {
        let settings = self
            .shared
            .db
            .function(tenant, function)?
            .map(|f| f.settings)
            .unwrap_or_default();
        let own = settings::resolve(&settings, &self.opts.defaults);
        Ok(self.shared.tenants.quotas(tenant).ceil(own))
    }

    /// Record the end of an activation: `InvocationCompleted` (unless already recorded),
    /// the terminal event and status; fsync; release timers of a finished execution.
    async fn finish(
        &self,
        key: &ExecKey,
        metrics: &TenantMetrics,
        mut exec: ExecutionRecord,
        act: &mut Activation,
        end: End,
        ic_recorded: Option<crate::journal::Event>,
    ) -> anyhow::Result<Outcome> {
        let now = self.shared.timers.clock().now_ms();
        let mut batch = Batch::new();
        if ic_recorded.is_none() {
            let error = match &end {
                End::Failed {
                    error,
                    invocation_error: true,
                } => Some(error.clone()),
                _ => None,
            };
            let started_ms = act.started_ms();
            let e = act
                .journal_mut()
                .record(now, EventKind::InvocationCompleted { started_ms, error });
            batch.put_event(&key.id, &e);
        }
        let (status, outcome) = match end {
            End::Succeeded(output) => {
                let e = act.journal_mut().record(
                    now,
                    EventKind::ExecutionSucceeded {
                        output: output.clone(),
                    },
                );
                batch.put_event(&key.id, &e);
                exec.output = Some(output);
                (Status::Succeeded, Outcome::Finished)
            }
            End::Failed { error, .. } => {
                let e = act.journal_mut().record(
                    now,
                    EventKind::ExecutionFailed {
                        error: error.clone(),
                    },
                );
                batch.put_event(&key.id, &e);
                exec.error = Some(error);
                (Status::Failed, Outcome::Finished)
            }
            End::Suspended => {
                metrics.suspensions.fetch_add(1, Relaxed);
                (Status::Suspended, Outcome::Suspended)
            }
            End::Again => (Status::Running, Outcome::Again),
            End::Stopped => {
                let error = ErrorObject::new(
                    error_types::STOPPED,
                    "the execution was stopped by a request",
                );
                let e = act.journal_mut().record(
                    now,
                    EventKind::ExecutionStopped {
                        error: error.clone(),
                    },
                );
                batch.put_event(&key.id, &e);
                exec.error = Some(error);
                (Status::Stopped, Outcome::Finished)
            }
            End::TimedOut => {
                // Counted from its invocation, or from its last redrive (a fresh timeout).
                let start = act.journal().redriven_ms().unwrap_or(exec.created_ms);
                let limit = exec.deadline_ms.unwrap_or(now).saturating_sub(start);
                let mut message =
                    format!("the execution did not finish within its timeout of {limit} ms");
                // It could not run for a reason that may pass (a storage failure): say so.
                if let Some((n, last)) = self
                    .host_failures
                    .lock()
                    .expect("host failures")
                    .get(&key.id)
                {
                    message.push_str(&format!(
                        "; its last {n} activation(s) failed in the host, the last with: {last}"
                    ));
                }
                let error = ErrorObject::new(error_types::EXECUTION_TIMEOUT, message);
                let e = act.journal_mut().record(
                    now,
                    EventKind::ExecutionTimedOut {
                        error: error.clone(),
                    },
                );
                batch.put_event(&key.id, &e);
                exec.error = Some(error);
                (Status::TimedOut, Outcome::Finished)
            }
        };
        let mut redrive_policy = None;
        let mut stopped_callees = Vec::new();
        if status.is_terminal() {
            self.shared.fan_outs.remove(&key.id);
            batch.del_stop(&key.id);
            // The callees it still waits on can no longer be heard: stopped with it.
            stopped_callees =
                invoke::stop_callees(&self.shared.db, &key.tenant, act.journal(), now, &mut batch)?;
            for (due, op) in act.journal().live_timers() {
                batch.del_timer(due, &key.id, &op);
                self.shared.timers.remove(due, key.id, &op);
            }
            if let Some(due) = exec.deadline_ms {
                batch.del_timer(due, &key.id, DEADLINE_OP);
                self.shared.timers.remove(due, key.id, DEADLINE_OP);
            }
            // A delayed start's timer, if it ended (stopped, timed out) before it was due.
            if let Some(due) = act.journal().start_ms() {
                batch.del_timer(due, &key.id, START_OP);
                self.shared.timers.remove(due, key.id, START_OP);
            }
            let limits = self.limits(&key.tenant, &exec.function)?;
            redrive_policy = limits.redrive_policy;
            let expires = now.saturating_add(limits.retention.as_millis() as u64);
            exec.expires_ms = Some(expires);
            batch.put_expiry(
                expires,
                &key.id,
                &crate::db::ExpiryRecord {
                    tenant: key.tenant.to_string(),
                },
            );
        }
        let before = exec.status;
        exec.status = status;
        exec.updated_ms = now;
        if status.is_terminal() {
            exec.ended_ms = Some(now);
        }
        // A failure its function's redrive_policy redrives: a durable timer in this batch,
        // and no `execution.failed` (its redrive is notified instead, when it happens).
        let auto_redrive = crate::recovery::automatic_redrive_due(redrive_policy, &exec, now);
        if let Some(due) = auto_redrive {
            let timer = crate::recovery::automatic_redrive_timer(&exec);
            batch.put_timer(due, &key.id, crate::recovery::REDRIVE_OP, &timer);
        }
        // The outbox: its webhook deliveries are written with the terminal event.
        let deliveries = if status.is_terminal() && auto_redrive.is_none() {
            self.webhooks.add(&self.shared.db, &exec, now, &mut batch)?
        } else {
            0
        };
        batch.put_execution(&exec);
        // Not awaited on disk: whoever is shown the end (a response, a webhook) waits for it.
        self.shared.db.commit(batch, Durability::Lazy).await?;
        // Counted once it is applied: a reader that sees the count sees the record, and a
        // refused write (a full disk) counts nothing.
        metrics.transition(before, status);
        if deliveries > 0 {
            self.webhooks.wake();
        }
        if status.is_terminal() {
            self.shared.clear_stop(&key.id);
            invoke::after_terminal(&self.shared, &exec, stopped_callees);
        }
        if let Some(due) = auto_redrive {
            let timer = crate::recovery::automatic_redrive_timer(&exec);
            let op = crate::recovery::REDRIVE_OP.to_string();
            self.shared.timers.add(due, key.id, op, timer);
        }
        Ok(outcome)
    }
}

/// What `run_guest` leaves: how the guest ended, the journal as it left it, and what its
/// instance set for a batch (`runtime::fanout`).
struct Run {
    ended: Ended,
    act: Activation,
    /// The execution's own instance handed this batch to branch instances.
    fan_out: Option<(String, crate::journal::BatchSpec)>,
    /// A branch's instance reached its batch's `batch-finish`.
    branch_done: bool,
}

/// How the guest call ended, before a trap is attributed to a step.
enum Ended {
    Done(End),
    Trapped(ErrorObject),
}
use Ended::{Done, Trapped};

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_failure_is_retried_after_a_delay_that_doubles_up_to_30_s() {
        let delays: Vec<u64> = (1..=8).map(|n| host_retry_delay(n).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        // Far inside the timer horizon, so the in-memory wake is always indexed.
        assert!(host_retry_delay(u32::MAX) < crate::timer::HORIZON);
    }
}
