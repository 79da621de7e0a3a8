//! `invoke` (DESIGN 11): a durable call of another function of the caller's tenant. The
//! callee is an execution of its own (`parent_execution_id` on its record), admitted like
//! any invocation and started exactly once: its record, first event and deadline timer are
//! written in the same fsynced batch as the caller's `ChainedInvokeStarted`, so a crash
//! leaves either both or neither. The caller suspends; the callee's end wakes it, and its
//! next activation records the callee's outcome (`ChainedInvokeSucceeded` / `Failed` /
//! `TimedOut` / `Stopped`). A caller that ends (stopped, timed out) stops the callees it
//! still waits on, in its terminal batch.
//!
//! Architecture invariant: the callee's end is never appended to the caller's journal by
//! anyone but the caller's own activation (ingestion at its start, or the `invoke` call),
//! like callbacks; a lost wake is found again by start-up recovery (`parent_to_wake`).

use crate::db::{Batch, ExecId, ExecutionRecord, Status, StopRecord, Store};
use crate::host_api::Shared;
use crate::journal::{error_types, ErrorObject, InvokeEnd, Journal};
use crate::scheduler::{ExecKey, Reserved};
use crate::tenants::usage::{ExecBytes, Reservation};

use super::create::{Admission, NewExecution, PendingTimers};

/// A callee ready to start: its batch (record, `ExecutionStarted`, deadline timer) and
/// the admissions it holds until that batch is durable.
pub struct Prepared<'a> {
    pub id: ExecId,
    pub version: u32,
    pub batch: Batch,
    key: ExecKey,
    class: crate::scheduler::Class,
    timers: PendingTimers,
    written: ExecBytes,
    reserved: Reservation<'a>,
    backlog: Option<Reserved>,
}

/// Why a callee was not started, as the caller's `ChainedInvokeFailed` records it.
fn refused(ty: &str, message: String) -> ErrorObject {
    ErrorObject::new(ty, message)
}

/// Admit and prepare `function`'s callee for `caller` (of `tenant`): the function must be
/// the tenant's (and `tenant_id`, if named, the tenant itself); then the same admission as
/// `POST /v1/functions/{name}/invoke`: the tenant's invocation rate, the function's
/// `max_queued`, the tenant's `max_active_executions` and `max_stored_bytes`. Nothing is
/// written here; `Err` is the invoke's failure.
pub fn prepare<'a>(
    shared: &'a Shared,
    tenant: &str,
    caller: ExecId,
    function: &str,
    input: &str,
    tenant_id: Option<&str>,
    now: u64,
) -> crate::db::Result<Result<Prepared<'a>, ErrorObject>> {
    if let Some(t) = tenant_id.filter(|t| *t != tenant) {
        return Ok(Err(refused(
            error_types::INVOKE_TENANT_MISMATCH,
            format!("invoke {function:?}: tenant {t:?} is not this execution's tenant; a function only invokes functions of its own tenant"),
        )));
    }
    let Some(f) = shared.db.function(tenant, function)?.filter(|f| !f.deleted) else {
        return Ok(Err(refused(
            error_types::INVOKE_FUNCTION_NOT_FOUND,
            format!("invoke: function {function:?} not found"),
        )));
    };
    let quotas = shared.tenants.quotas(tenant);
    let rate = (quotas.invocations_per_second, quotas.invocation_burst);
    if let Err(l) = shared.tenants.rates.take(tenant, rate.0, rate.1, now) {
        return Ok(Err(refused(
            error_types::INVOKE_REFUSED,
            format!("invoke {function:?}: {}", l.message),
        )));
    }
    let admission = super::create::admit(
        &shared.tenants,
        &shared.scheduler,
        tenant,
        function,
        f.settings.max_queued,
        true,
        input.len() as u64,
        &quotas,
    );
    let Admission { backlog, reserved } = match admission {
        Ok(a) => a,
        Err(e) => {
            return Ok(Err(refused(
                error_types::INVOKE_REFUSED,
                format!("invoke {function:?}: {e}"),
            )))
        }
    };
    let timeout = crate::settings::resolve(&f.settings, &shared.defaults).execution_timeout;
    let id = crate::ids::new_execution_id();
    let created = NewExecution {
        id,
        tenant: tenant.to_string(),
        function: function.to_string(),
        version: f.latest_version,
        input: input.to_string(),
        now_ms: now,
        deadline_ms: now.saturating_add(timeout.as_millis() as u64),
        idempotency_key: None,
        start_ms: None,
        fork: None,
        // Its own trace (OTLP): not linked to its caller's yet.
        trace: None,
        parent: Some(caller),
    }
    .write();
    let written = ExecBytes::from(created.batch.written_for(tenant, &id));
    Ok(Ok(Prepared {
        id,
        version: f.latest_version,
        batch: created.batch,
        key: ExecKey {
            tenant: tenant.into(),
            id,
            branch: None,
        },
        class: crate::settings::class(function, &f.settings, input, true),
        timers: created.timers,
        written,
        reserved,
        backlog,
    }))
}

impl Prepared<'_> {
    /// Its batch, for the caller's commit (which adds its own events to it).
    pub fn take_batch(&mut self) -> Batch {
        std::mem::replace(&mut self.batch, Batch::new())
    }

    /// Once its batch is durable: counted, timers indexed, queued.
    pub fn launched(self, shared: &Shared) {
        self.reserved.invoked(self.id, self.written);
        self.timers.add(&shared.timers);
        shared.metrics.created(&self.key.tenant);
        shared.scheduler.classify(&self.key, self.class);
        shared.scheduler.wake(self.key);
        drop(self.backlog);
    }
}

/// How a callee ended, from its record: `None` while it runs. A record that is gone (its
/// retention ended before its caller looked) fails the invoke.
pub fn callee_end(callee: &str, rec: Option<&ExecutionRecord>) -> Option<InvokeEnd> {
    let Some(rec) = rec else {
        return Some(InvokeEnd::Failed(ErrorObject::new(
            error_types::INVOKE_CALLEE_GONE,
            format!("the callee {callee} no longer exists"),
        )));
    };
    let error = || {
        rec.error.clone().unwrap_or_else(|| {
            ErrorObject::new(error_types::TRAP, format!("the callee {callee} ended"))
        })
    };
    Some(match rec.status {
        Status::Running | Status::Suspended => return None,
        Status::Succeeded => {
            InvokeEnd::Succeeded(rec.output.clone().unwrap_or_else(|| "null".into()))
        }
        Status::Failed => InvokeEnd::Failed(error()),
        Status::TimedOut => InvokeEnd::TimedOut(error()),
        Status::Stopped => InvokeEnd::Stopped(error()),
    })
}

/// Read the callee of a pending invoke and say how it ended, if it did.
pub fn read_callee_end(
    db: &Store,
    tenant: &str,
    callee: &str,
) -> crate::db::Result<Option<InvokeEnd>> {
    let rec = match crate::ids::parse_execution_id(callee) {
        Some(id) => db.execution(tenant, &id)?,
        None => None,
    };
    Ok(callee_end(callee, rec.as_ref()))
}

/// For the terminal batch of an execution whose journal still waits on callees: a stop
/// request for each that still runs. Returns them, for `after_terminal`.
pub fn stop_callees(
    db: &Store,
    tenant: &str,
    journal: &Journal,
    now: u64,
    batch: &mut Batch,
) -> crate::db::Result<Vec<ExecId>> {
    let mut stopped = Vec::new();
    for (_, callee) in journal.pending_invokes() {
        let Some(id) = crate::ids::parse_execution_id(&callee) else {
            continue;
        };
        if db
            .execution(tenant, &id)?
            .is_some_and(|r| !r.status.is_terminal())
        {
            let rec = StopRecord {
                tenant: tenant.to_string(),
                requested_ms: now,
            };
            batch.put_stop(&id, &rec);
            stopped.push(id);
        }
    }
    Ok(stopped)
}

/// Once an execution's terminal batch is durable: the callees it stopped get their stop
/// (flag, signal, wake), and its caller, if it has one, is woken to record its end.
pub fn after_terminal(shared: &Shared, exec: &ExecutionRecord, stopped: Vec<ExecId>) {
    for id in stopped {
        shared.request_stop(id);
        shared.scheduler.wake(ExecKey {
            tenant: exec.tenant.as_str().into(),
            id,
            branch: None,
        });
    }
    if let Some(parent) = exec.parent_execution_id {
        shared.scheduler.wake(ExecKey {
            tenant: exec.tenant.as_str().into(),
            id: parent,
            branch: None,
        });
    }
}

/// At start-up: a finished callee whose caller is still suspended may have ended just
/// before a crash, before its wake: the caller to wake, if so.
pub fn parent_to_wake(db: &Store, rec: &ExecutionRecord) -> crate::db::Result<Option<ExecKey>> {
    let Some(parent) = rec.parent_execution_id.filter(|_| rec.status.is_terminal()) else {
        return Ok(None);
    };
    let suspended = db
        .execution(&rec.tenant, &parent)?
        .is_some_and(|p| p.status == Status::Suspended);
    Ok(suspended.then(|| ExecKey {
        tenant: rec.tenant.as_str().into(),
        id: parent,
        branch: None,
    }))
}
