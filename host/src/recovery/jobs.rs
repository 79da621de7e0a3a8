//! Bulk redrive jobs: `POST /v1/executions/redrive` matches a tenant's finished executions
//! by function, status, error type and end time, stores the job with the ids it matched
//! (one key each, in order) in one fsynced batch, and a worker redrives them one by one.
//!
//! Exactly once per execution, across crashes: each redrive's batch also writes the job
//! record with its position (`next`) moved past that execution, so the redrive and the
//! progress are on disk together or not at all; a failure to redrive one (it is no longer
//! failed, it was deleted) is counted with its reason in a batch of its own. At start-up,
//! `resume` starts a worker for every job still running, from its position. One worker per
//! job (`Recovery::jobs_running`). A tenant at its `max_active_executions` holds the job
//! until there is room, a second at a time, rather than failing its executions.

use std::sync::Arc;
use std::time::Duration;

use super::{redrive, Error, Requester, Target, MAX_JOB_ERRORS};
use crate::db::{Batch, Durability, JobRecord, JobState, Status};
use crate::ids::execution_id_to_string;
use crate::journal::RedriveTrigger;
use crate::Host;

/// The most executions one job may match: its ids are written in the batch that creates
/// it (about 50 bytes each). A wider filter is refused: narrow it (e.g. by `ended_before`).
pub const MAX_JOB_MATCHES: usize = 100_000;

/// The slowest and fastest pace a job may be given (`per_second`): one redrive every 100 s
/// at the slowest; faster than the fastest is no limit at all.
pub const MIN_PER_SECOND: f64 = 0.01;
pub const MAX_PER_SECOND: f64 = 100_000.0;

/// How long a job waits before trying again when its tenant is at its
/// `max_active_executions`, or the store refused a write.
const HOLD: Duration = Duration::from_secs(1);

/// What a bulk redrive matches and how it runs.
#[derive(Clone, Debug)]
pub struct Spec {
    pub function: String,
    pub status: Status,
    pub error_type: Option<String>,
    pub ended_after_ms: Option<u64>,
    pub ended_before_ms: Option<u64>,
    pub target: Target,
    /// Redrives per second at most; `None`: as fast as they go.
    pub per_second: Option<f64>,
}

pub fn new_job_id() -> String {
    format!("job_{}", ulid::Ulid::new())
}

/// Create a job for `spec` in `tenant` and start its worker. Returns the job as stored.
pub async fn create(
    host: &Arc<Host>,
    tenant: &str,
    key_id: Option<String>,
    spec: Spec,
) -> Result<JobRecord, Error> {
    if !matches!(
        spec.status,
        Status::Failed | Status::TimedOut | Status::Stopped
    ) {
        return Err(Error::BadRequest(format!(
            "status {:?}: only failed, timed_out or stopped executions can be redriven",
            spec.status.as_str()
        )));
    }
    if host.db.function(tenant, &spec.function)?.is_none() {
        return Err(Error::NotFound(format!(
            "function {:?} not found",
            spec.function
        )));
    }
    let mut matched = Vec::new();
    // Oldest first (ids are time-ordered; the scan is newest first).
    for rec in host.db.executions(tenant) {
        let rec = rec?;
        let ended = rec.end_ms();
        let error_type = rec.error.as_ref().map(|e| e.error_type.as_str());
        if rec.function != spec.function
            || rec.status != spec.status
            || spec
                .error_type
                .as_deref()
                .is_some_and(|t| error_type != Some(t))
            || spec
                .ended_after_ms
                .is_some_and(|t| ended.is_none_or(|e| e < t))
            || spec
                .ended_before_ms
                .is_some_and(|t| ended.is_none_or(|e| e >= t))
        {
            continue;
        }
        if matched.len() == MAX_JOB_MATCHES {
            return Err(Error::BadRequest(format!(
                "more than {MAX_JOB_MATCHES} executions match: narrow the filter (e.g. with \
                 ended_before)"
            )));
        }
        matched.push(rec.id);
    }
    matched.reverse();
    let now = host.clock.now_ms();
    let done = matched.is_empty();
    let job = JobRecord {
        id: new_job_id(),
        tenant: tenant.to_string(),
        function: spec.function,
        status_filter: spec.status,
        error_type: spec.error_type,
        ended_after_ms: spec.ended_after_ms,
        ended_before_ms: spec.ended_before_ms,
        version: spec.target.as_string(),
        key_id,
        per_second: spec.per_second,
        state: if done {
            JobState::Succeeded
        } else {
            JobState::Running
        },
        matched: matched.len() as u32,
        next: 0,
        done: 0,
        failed: 0,
        errors: Vec::new(),
        created_ms: now,
        updated_ms: now,
        finished_ms: done.then_some(now),
    };
    let mut batch = Batch::new();
    batch.put_job(&job);
    for (n, id) in matched.iter().enumerate() {
        batch.put_job_item(tenant, &job.id, n as u32, id);
    }
    host.db.commit(batch, Durability::Sync).await?;
    tracing::info!(tenant, job_id = %job.id, matched = job.matched, "bulk redrive job created");
    if !done {
        tokio::spawn(run(host.clone(), tenant.to_string(), job.id.clone()));
    }
    Ok(job)
}

/// Start a worker for every job still running (at start-up).
pub fn resume(host: &Arc<Host>) -> anyhow::Result<usize> {
    let mut n = 0;
    for t in host.tenants.list() {
        for job in host.db.jobs(&t.name) {
            let job = job?;
            if job.state == JobState::Running {
                tokio::spawn(run(host.clone(), job.tenant, job.id));
                n += 1;
            }
        }
    }
    Ok(n)
}

/// A job's worker: redrive its executions from its position to the end.
pub async fn run(host: Arc<Host>, tenant: String, id: String) {
    if !host
        .recovery
        .jobs_running
        .lock()
        .expect("jobs")
        .insert(id.clone())
    {
        return;
    }
    if let Err(e) = work(&host, &tenant, &id).await {
        tracing::error!(job_id = %id, error = %e, "bulk redrive job stopped; it resumes at the next start");
    }
    host.recovery.jobs_running.lock().expect("jobs").remove(&id);
}

async fn work(host: &Host, tenant: &str, id: &str) -> Result<(), Error> {
    loop {
        let Some(mut job) = host.db.job(tenant, id)? else {
            return Ok(()); // deleted with its tenant
        };
        if job.state != JobState::Running {
            return Ok(());
        }
        let now = host.clock.now_ms();
        job.updated_ms = now;
        if job.next >= job.matched {
            job.state = JobState::Succeeded;
            job.finished_ms = Some(now);
            let mut batch = Batch::new();
            batch.put_job(&job);
            host.db.del_job_items(tenant, id, &mut batch)?;
            host.db.commit(batch, Durability::Sync).await?;
            tracing::info!(job_id = %id, done = job.done, failed = job.failed, "bulk redrive job finished");
            return Ok(());
        }
        if let Some(rate) = job.per_second.filter(|r| *r >= MIN_PER_SECOND) {
            tokio::time::sleep(Duration::from_secs_f64(1.0 / rate)).await;
        }
        let target = Target::parse(&job.version)?;
        let by = Requester {
            key_id: job.key_id.clone(),
            trigger: RedriveTrigger::Job(id.to_string()),
        };
        let mut advanced = job.clone();
        advanced.next += 1;
        let result = match host.db.job_item(tenant, id, job.next)? {
            Some(exec) => {
                let mut succeeded = advanced.clone();
                succeeded.done += 1;
                redrive(host, tenant, &exec, target, &by, |b| b.put_job(&succeeded))
                    .await
                    .map(|_| ())
                    .map_err(|e| (execution_id_to_string(&exec), e))
            }
            None => Err((
                format!("position {}", job.next),
                Error::NotFound("the job's record of this execution is missing".into()),
            )),
        };
        match result {
            Ok(()) => {}
            Err((_, Error::Quota(_))) => tokio::time::sleep(HOLD).await,
            Err((_, Error::Storage(e))) if e.is_full() => {
                tokio::time::sleep(HOLD).await;
            }
            Err((exec, e)) => {
                advanced.failed += 1;
                if advanced.errors.len() < MAX_JOB_ERRORS {
                    advanced.errors.push((exec, e.to_string()));
                }
                let mut batch = Batch::new();
                batch.put_job(&advanced);
                host.db.commit(batch, Durability::Sync).await?;
            }
        }
    }
}
