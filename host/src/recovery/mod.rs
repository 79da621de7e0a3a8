//! Recovery of failed work (DESIGN 9): redrive in place, fork from a checkpoint, the
//! function's automatic `redrive_policy`, and bulk redrive jobs (`jobs`).
//!
//! A redrive appends `ExecutionRedriven` to a failed, timed-out or stopped execution and
//! sends it back to `running`, in one fsynced batch with everything that goes with it: the
//! record (status, target version, `redrive_count`, a fresh deadline), the deadline timer,
//! the deletion of its expiry entry and of a stop request left over, its
//! `execution.redriven` webhook deliveries, and whatever the caller adds (a job's
//! progress). The journal's fold (`journal::Journal::apply`) then forgets what had failed,
//! so the next activation replays what succeeded and runs the failed operations again with
//! a fresh attempt budget. On another version the same journal replays; a divergence fails
//! it with `NonDeterministicExecution`, as any replay does.
//!
//! A fork (`fork::copy`) writes a new execution whose history is a copy of the original's
//! whole operations before a cut; the original is not touched.
//!
//! Must not: write to an execution an activation may be writing to (only finished ones are
//! redriven, one redrive of an execution at a time: `Recovery::in_flight`), or count an
//! execution as active without its tenant's quota (`max_active_executions`) allowing it.

pub mod fork;
pub mod jobs;

use std::collections::HashSet;
use std::sync::Mutex;

use crate::db::{self, Batch, Durability, ExecId, ExecutionRecord, Status, TimerKind, TimerRecord};
use crate::ids::execution_id_to_string;
use crate::journal::{error_types, ErrorObject, EventKind, Journal, RedriveTrigger};
use crate::runtime::create::NewExecution;
use crate::scheduler::ExecKey;
use crate::tenants::usage::ExecBytes;
use crate::Host;

/// The timer op id of an automatic redrive (op ids are digits and dots).
pub const REDRIVE_OP: &str = "redrive";

/// A finished execution within this long of the end of its retention is not redriven:
/// the sweep that deletes it (every second) could be under way.
const RETENTION_MARGIN_MS: u64 = 5_000;

/// The state of a pending callback a redrive replaced (completing it is then 409).
pub const CALLBACK_SUPERSEDED: &str = "Callback.Superseded";

/// The most failures a job keeps the reasons of (it counts them all).
pub const MAX_JOB_ERRORS: usize = 20;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Conflict(String),
    /// Over the tenant's `max_active_executions`: nothing was written.
    #[error("{0}")]
    Quota(String),
    #[error(transparent)]
    Storage(#[from] db::Error),
}

/// Which version a redrive or fork runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The version it ran on.
    Pinned,
    /// The function's latest version.
    Latest,
    Version(u32),
}

impl Target {
    /// `pinned`, `latest` or a version number.
    pub fn parse(s: &str) -> Result<Target, Error> {
        match s {
            "pinned" => Ok(Target::Pinned),
            "latest" => Ok(Target::Latest),
            n => n
                .parse::<u32>()
                .ok()
                .filter(|&n| n > 0)
                .map(Target::Version)
                .ok_or_else(|| {
                    Error::BadRequest(format!(
                        "version {s:?}: expected \"pinned\", \"latest\" or a version number"
                    ))
                }),
        }
    }

    pub fn as_string(&self) -> String {
        match self {
            Target::Pinned => "pinned".into(),
            Target::Latest => "latest".into(),
            Target::Version(n) => n.to_string(),
        }
    }
}

/// Who asked for a redrive.
#[derive(Clone, Debug)]
pub struct Requester {
    pub key_id: Option<String>,
    pub trigger: RedriveTrigger,
}

/// State of the recovery service: which executions are being redriven right now, and
/// which jobs have a worker.
#[derive(Default)]
pub struct Recovery {
    in_flight: Mutex<HashSet<ExecId>>,
    jobs_running: Mutex<HashSet<String>>,
}

/// Held while one execution is redriven: a second redrive of it is refused meanwhile.
struct InFlight<'a> {
    set: &'a Mutex<HashSet<ExecId>>,
    id: ExecId,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.set.lock().expect("in flight").remove(&self.id);
    }
}

impl Recovery {
    fn claim(&self, id: ExecId) -> Result<InFlight<'_>, Error> {
        if !self.in_flight.lock().expect("in flight").insert(id) {
            return Err(Error::Conflict(format!(
                "execution {} is being redriven by another request",
                execution_id_to_string(&id)
            )));
        }
        Ok(InFlight {
            set: &self.in_flight,
            id,
        })
    }
}

/// The version `target` names for `exec` (it must exist), with its function's record.
fn target_version(
    host: &Host,
    exec: &ExecutionRecord,
    target: Target,
) -> Result<(u32, db::FunctionRecord), Error> {
    let f = host
        .db
        .function(&exec.tenant, &exec.function)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| {
            Error::Conflict(format!(
                "function {:?} was deleted: its executions cannot run again",
                exec.function
            ))
        })?;
    let v = match target {
        Target::Pinned => exec.version,
        Target::Latest => f.latest_version,
        Target::Version(n) => n,
    };
    if host.db.version(&exec.tenant, &exec.function, v)?.is_none() {
        return Err(Error::BadRequest(format!(
            "function {:?} has no version {v} (its latest is {})",
            exec.function, f.latest_version
        )));
    }
    Ok((v, f))
}

/// When an execution of `f` that (re)starts at `now_ms` times out: its execution timeout,
/// within its tenant's ceilings, from now.
fn fresh_deadline(
    host: &Host,
    f: &db::FunctionRecord,
    quotas: &crate::tenants::Quotas,
    now_ms: u64,
) -> u64 {
    let own = crate::settings::resolve(&f.settings, &host.opts.runtime.defaults);
    let timeout = quotas.ceil(own).execution_timeout;
    now_ms.saturating_add(timeout.as_millis() as u64)
}

/// Redrive the finished execution `id` of `tenant` on `target`: see the module comment.
/// `extra` adds to the redrive's batch (a job's progress). Returns the record as written.
pub async fn redrive(
    host: &Host,
    tenant: &str,
    id: &ExecId,
    target: Target,
    by: &Requester,
    extra: impl FnOnce(&mut Batch),
) -> Result<ExecutionRecord, Error> {
    let _claim = host.recovery.claim(*id)?;
    let name = execution_id_to_string(id);
    let mut exec = host
        .db
        .execution(tenant, id)?
        .ok_or_else(|| Error::NotFound(format!("execution {name:?} not found")))?;
    if !matches!(
        exec.status,
        Status::Failed | Status::TimedOut | Status::Stopped
    ) {
        return Err(Error::Conflict(format!(
            "execution {name} is {}: only a failed, timed_out or stopped execution can be redriven",
            exec.status.as_str()
        )));
    }
    let (version, f) = target_version(host, &exec, target)?;
    let quotas = host.tenants.quotas(tenant);
    let reserved = host
        .tenants
        .usage
        .reserve_execution(tenant, 0, &quotas)
        .map_err(|e| Error::Quota(e.0))?;
    let before = ExecBytes::measure(&host.db, tenant, id)?.unwrap_or_default();
    let now = host.clock.now_ms();
    let deadline = fresh_deadline(host, &f, &quotas, now);

    let mut journal = Journal::from_events(&host.db.history(id)?);
    let pending_before = journal.pending_callbacks();
    let from = exec.status;
    let redriven = journal.record(
        now,
        EventKind::ExecutionRedriven {
            key_id: by.key_id.clone(),
            trigger: by.trigger.clone(),
            from_version: exec.version,
            to_version: version,
            redrive_count: exec.redrive_count + 1,
        },
    );
    let mut batch = Batch::new();
    batch.put_event(id, &redriven);
    // Callbacks the fold forgot while they were pending (inside a failed wait-for-callback)
    // are replaced by new ones: the old ids are refused from now on, not silently ignored.
    let pending_after = journal.pending_callbacks();
    for (_, cb) in pending_before.iter().filter(|p| !pending_after.contains(p)) {
        if let Some(mut rec) = host.db.callback(cb)? {
            if rec.state == db::CallbackState::Pending {
                rec.state = db::CallbackState::Failed(ErrorObject::new(
                    CALLBACK_SUPERSEDED,
                    "the execution was redriven and created a new callback instead of this one",
                ));
                batch.put_callback(cb, &rec);
            }
        }
    }
    let expiry = match exec.expires_ms {
        Some(at) => Some(at),
        None => host.db.expiry_of(id)?,
    };
    if let Some(at) = expiry {
        // The retention sweep may be deleting it right now (it reads, then deletes).
        if at <= now.saturating_add(RETENTION_MARGIN_MS) {
            return Err(Error::Conflict(format!(
                "execution {name}'s retention has ended: it is being deleted"
            )));
        }
        batch.del_expiry(at, id);
    }
    // A stop request that came after it ended must not stop it again.
    batch.del_stop(id);
    let deadline_timer = TimerRecord {
        tenant: tenant.to_string(),
        kind: TimerKind::Deadline,
    };
    batch.put_timer(deadline, id, crate::runtime::DEADLINE_OP, &deadline_timer);
    exec.status = Status::Running;
    exec.version = version;
    exec.error = None;
    exec.output = None;
    exec.updated_ms = now;
    exec.ended_ms = None;
    exec.expires_ms = None;
    exec.deadline_ms = Some(deadline);
    exec.redrive_count += 1;
    let deliveries = host.runtime.webhooks.add_event(
        &host.db,
        &exec,
        crate::webhooks::REDRIVEN_EVENT,
        now,
        &mut batch,
    )?;
    batch.put_execution(&exec);
    extra(&mut batch);
    host.db.commit(batch, Durability::Sync).await?;

    let after = ExecBytes::measure(&host.db, tenant, id)?.unwrap_or_default();
    reserved.redriven(*id, before, after);
    host.runtime.shared.clear_stop(id);
    host.timers.add(
        deadline,
        *id,
        crate::runtime::DEADLINE_OP.to_string(),
        deadline_timer,
    );
    host.metrics
        .tenant(tenant)
        .transition(from, Status::Running);
    if deliveries > 0 {
        host.runtime.webhooks.wake();
    }
    tracing::info!(tenant, execution_id = %name, from = from.as_str(), version, redrive_count = exec.redrive_count, trigger = by.trigger.as_str(), "redriven");
    host.scheduler.wake(ExecKey {
        tenant: tenant.into(),
        id: *id,
        branch: None,
    });
    Ok(exec)
}

/// Error types a redrive on the same version cannot cure: the function's code decides them
/// (a changed code path, a broken protocol) or its component is gone. An automatic redrive
/// skips them (a person may still redrive onto another version).
pub const NOT_AUTOMATICALLY_REDRIVEN: [&str; 3] = [
    error_types::NON_DETERMINISTIC,
    error_types::PROTOCOL_VIOLATION,
    error_types::LOAD_ERROR,
];

/// Whether the function's `redrive_policy` redrives `exec`, which has just failed, and
/// when: `Some(due)` if it does. Only `failed` executions are (not `timed_out`: each
/// redrive would give it another whole execution timeout, and a timeout is usually a hung
/// dependency or a callback nobody answers, for a person to look at; not `stopped`: a
/// person asked for it).
pub fn automatic_redrive_due(
    policy: Option<db::RedrivePolicy>,
    exec: &ExecutionRecord,
    now_ms: u64,
) -> Option<u64> {
    let p = policy?;
    let error_type = exec.error.as_ref().map(|e| e.error_type.as_str());
    if exec.status != Status::Failed
        || exec.redrive_count >= p.max_redrives
        || error_type.is_some_and(|t| NOT_AUTOMATICALLY_REDRIVEN.contains(&t))
    {
        return None;
    }
    Some(now_ms.saturating_add(p.delay_secs.saturating_mul(1000)))
}

/// The timer of an automatic redrive, written with the failure (`runtime::finish`).
pub fn automatic_redrive_timer(exec: &ExecutionRecord) -> TimerRecord {
    TimerRecord {
        tenant: exec.tenant.clone(),
        kind: TimerKind::Redrive {
            after: exec.redrive_count,
        },
    }
}

/// An automatic redrive's timer came due: redrive the execution if it is still the failure
/// the timer was written for (no redrive since), and delete the timer. A tenant over its
/// `max_active_executions` is tried again a second later.
pub async fn automatic_redrive_fired(
    host: &Host,
    due_ms: u64,
    id: ExecId,
    record: &TimerRecord,
) -> Result<(), Error> {
    let TimerKind::Redrive { after } = record.kind else {
        return Ok(());
    };
    let tenant = record.tenant.as_str();
    let current = host.db.execution(tenant, &id)?;
    let due = current.filter(|e| e.status == Status::Failed && e.redrive_count == after);
    let mut done = Batch::new();
    done.del_timer(due_ms, &id, REDRIVE_OP);
    if due.is_none() {
        host.db.commit(done, Durability::Lazy).await?;
        return Ok(());
    }
    let by = Requester {
        key_id: None,
        trigger: RedriveTrigger::Policy,
    };
    let consumed = |b: &mut Batch| b.del_timer(due_ms, &id, REDRIVE_OP);
    match redrive(host, tenant, &id, Target::Pinned, &by, consumed).await {
        Ok(_) => Ok(()),
        Err(Error::Quota(m)) => {
            // The timer moves a second on (durably, so that a restart keeps it).
            tracing::warn!(execution_id = %execution_id_to_string(&id), reason = %m, "automatic redrive postponed by 1 s");
            let later = host.clock.now_ms().saturating_add(1000);
            done.put_timer(later, &id, REDRIVE_OP, record);
            host.db.commit(done, Durability::Sync).await?;
            host.timers
                .add(later, id, REDRIVE_OP.to_string(), record.clone());
            Ok(())
        }
        Err(e) => {
            // It cannot be redriven after all (its function was deleted, ...): its failure,
            // held back for the redrive, is notified now, so that it is not silent.
            let mut deliveries = 0;
            if let Some(exec) = host.db.execution(tenant, &id)? {
                if exec.status == Status::Failed && exec.redrive_count == after {
                    let now = host.clock.now_ms();
                    deliveries = host.runtime.webhooks.add(&host.db, &exec, now, &mut done)?;
                }
            }
            host.db.commit(done, Durability::Sync).await?;
            if deliveries > 0 {
                host.runtime.webhooks.wake();
            }
            Err(e)
        }
    }
}

/// Fork `id` of `tenant`: a new execution whose history is the original's whole operations
/// before `from_operation` (default: the operation that failed), on `target`, with `input`
/// (default: the original's). The original is not touched.
pub async fn fork(
    host: &Host,
    tenant: &str,
    id: &ExecId,
    from_operation: Option<&str>,
    target: Target,
    input: Option<String>,
) -> Result<ExecutionRecord, Error> {
    let name = execution_id_to_string(id);
    let orig = host
        .db
        .execution(tenant, id)?
        .ok_or_else(|| Error::NotFound(format!("execution {name:?} not found")))?;
    let (version, f) = target_version(host, &orig, target)?;
    let history = host.db.history(id)?;
    let input = input.unwrap_or_else(|| orig.input.clone());
    let now = host.clock.now_ms();
    let events = fork::copy(
        &history,
        from_operation,
        &input,
        now,
        crate::ids::callback_id,
    )
    .map_err(|e| Error::BadRequest(format!("execution {name}: {e}")))?;
    let quotas = host.tenants.quotas(tenant);
    let deadline = fresh_deadline(host, &f, &quotas, now);
    let copied = events.len() - 1;
    let new_id = crate::ids::new_execution_id();
    let created = NewExecution {
        id: new_id,
        tenant: tenant.to_string(),
        function: orig.function.clone(),
        version,
        input,
        now_ms: now,
        deadline_ms: deadline,
        idempotency_key: None,
        start_ms: None,
        fork: Some((*id, events)),
        trace: None,
        parent: None,
    }
    .write();
    let (rec, batch, timers) = (created.record, created.batch, created.timers);
    let written = batch.written_for(tenant, &new_id);
    let reserved = host
        .tenants
        .usage
        .reserve_execution(tenant, ExecBytes::from(written).total(), &quotas)
        .map_err(|e| Error::Quota(e.0))?;
    host.db.commit(batch, Durability::Sync).await?;
    reserved.invoked(new_id, ExecBytes::from(written));
    timers.add(&host.timers);
    host.metrics.created(tenant);
    tracing::info!(tenant, execution_id = %execution_id_to_string(&new_id), forked_from = %name, copied, "forked");
    host.scheduler.wake(ExecKey {
        tenant: tenant.into(),
        id: new_id,
        branch: None,
    });
    Ok(rec)
}
