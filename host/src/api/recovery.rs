//! Recovery routes (DESIGN 9): redrive an execution in place, fork one from a checkpoint,
//! bulk redrive jobs and their progress. What they do is `crate::recovery`'s; this file
//! parses bodies and renders records.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::executions::rfc3339_ms;
use super::{body, object_body, views, ApiError, ApiResult, AppState, Path};
use crate::db::{JobRecord, Status};
use crate::ids;
use crate::journal::RedriveTrigger;
use crate::recovery::{self, jobs, Requester, Target};
use crate::tenants::{Action, Caller};
use crate::timer::rfc3339 as timestamp;
use crate::Host;

/// The most jobs `GET /v1/jobs` lists (the newest).
pub const MAX_JOB_LIST: usize = 1000;

pub(super) fn routes() -> OpenApiRouter<Arc<Host>> {
    OpenApiRouter::new()
        .routes(routes!(redrive))
        .routes(routes!(fork))
        .routes(routes!(bulk_redrive))
        .routes(routes!(list_jobs))
        .routes(routes!(get_job))
}

/// Which version to run on: `"pinned"` (the one it ran on, the default), `"latest"`, or a
/// version number.
#[derive(Deserialize, ToSchema)]
#[serde(untagged)]
pub enum Version {
    Number(u32),
    Name(String),
}

impl Version {
    fn target(v: Option<&Version>) -> ApiResult<Target> {
        match v {
            None => Ok(Target::Pinned),
            Some(Version::Number(0)) => Err(ApiError::BadRequest(
                "version 0: versions are numbered from 1".into(),
            )),
            Some(Version::Number(n)) => Ok(Target::Version(*n)),
            Some(Version::Name(s)) => Ok(Target::parse(s)?),
        }
    }
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveRequest {
    version: Option<Version>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ForkRequest {
    /// The operation id to run again from (e.g. `"2"`, `"3.1"`): the fork copies the
    /// whole operations before it. Default: the operation that failed.
    from_operation: Option<String>,
    version: Option<Version>,
    /// The fork's input (any JSON); default (absent or null): the original's.
    input: Option<Value>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BulkRedriveRequest {
    function: String,
    /// failed, timed_out or stopped.
    #[schema(pattern = "^(failed|timed_out|stopped)$")]
    status: String,
    /// Only executions whose error has exactly this type.
    error_type: Option<String>,
    /// Only executions that ended at or after this time (RFC 3339).
    ended_after: Option<String>,
    /// Only executions that ended before this time (RFC 3339).
    ended_before: Option<String>,
    version: Option<Version>,
    /// Redrives per second at most (0.01-100000; default: as fast as they go), to spare
    /// what the executions call.
    #[schema(minimum = 0.01, maximum = 100000)]
    per_second: Option<f64>,
}

/// One failure of a bulk redrive.
#[derive(Serialize, ToSchema)]
pub struct JobError {
    /// The execution (or, if its record in the job is missing, its position).
    pub execution_id: String,
    pub message: String,
}

/// What a bulk redrive matched.
#[derive(Serialize, ToSchema)]
pub struct JobFilter {
    pub function: String,
    pub status: &'static str,
    pub error_type: Option<String>,
    pub ended_after: Option<String>,
    pub ended_before: Option<String>,
}

/// A bulk redrive job and its progress.
#[derive(Serialize, ToSchema)]
pub struct Job {
    pub job_id: String,
    /// running or succeeded (every matched execution was handled: `done` + `failed` =
    /// `matched`).
    pub status: &'static str,
    pub filter: JobFilter,
    /// pinned, latest or a version number.
    pub version: String,
    pub per_second: Option<f64>,
    /// Executions the filter matched when the job was created.
    pub matched: u32,
    /// Redriven.
    pub done: u32,
    /// Could not be redriven (no longer in that status, deleted, ...).
    pub failed: u32,
    /// The first failures, with why.
    pub errors: Vec<JobError>,
    pub created_at: String,
    pub updated_at: String,
    pub finished_at: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct JobList {
    /// Newest first.
    pub jobs: Vec<Job>,
}

fn job_view(j: &JobRecord) -> Job {
    Job {
        job_id: j.id.clone(),
        status: j.state.as_str(),
        filter: JobFilter {
            function: j.function.clone(),
            status: j.status_filter.as_str(),
            error_type: j.error_type.clone(),
            ended_after: j.ended_after_ms.map(timestamp),
            ended_before: j.ended_before_ms.map(timestamp),
        },
        version: j.version.clone(),
        per_second: j.per_second,
        matched: j.matched,
        done: j.done,
        failed: j.failed,
        errors: j
            .errors
            .iter()
            .map(|(e, m)| JobError {
                execution_id: e.clone(),
                message: m.clone(),
            })
            .collect(),
        created_at: timestamp(j.created_ms),
        updated_at: timestamp(j.updated_ms),
        finished_at: j.finished_ms.map(timestamp),
    }
}

/// A JSON object body of `T`; an empty body is `T`'s default.
fn parse<T: serde::de::DeserializeOwned>(
    host: &Host,
    b: Result<Bytes, BytesRejection>,
    what: &str,
    empty: Option<&str>,
) -> ApiResult<T> {
    let text = match empty {
        Some(default) => {
            let b = body(b)?;
            if b.iter().all(u8::is_ascii_whitespace) {
                default.to_string()
            } else {
                object_body(host, Ok(b), what)?
            }
        }
        None => object_body(host, b, what)?,
    };
    serde_json::from_str(&text).map_err(|e| ApiError::BadRequest(format!("the {what}: {e}")))
}

fn exec_id(s: &str) -> ApiResult<crate::db::ExecId> {
    ids::parse_execution_id(s)
        .ok_or_else(|| ApiError::NotFound(format!("execution {s:?} not found")))
}

/// Send a failed, timed-out or stopped execution back to `running`: it replays what
/// succeeded and runs what failed again with a fresh attempt budget (and a fresh execution
/// timeout). On another version (`latest`, a number) its journal replays against that
/// version first; a divergence fails it with `NonDeterministicExecution`.
#[utoipa::path(post, path = "/v1/executions/{id}/redrive", tag = "recovery",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    request_body(content = Option<RedriveRequest>, description = "Which version (default: pinned); may be empty"),
    responses(
        (status = 200, description = "Redriven: running again", body = views::Execution),
        (status = 400, description = "Bad input (e.g. no such version)", body = views::ErrorBody),
        (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "Not failed, timed_out or stopped, or its function was deleted", body = views::ErrorBody),
        (status = 429, description = "Over the tenant's max_active_executions (code quota_exceeded); nothing was written", body = views::ErrorBody)))]
pub(super) async fn redrive(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ControlExecutions)?;
    let eid = exec_id(&id)?;
    let req: RedriveRequest = parse(&host, b, "redrive request", Some("{}"))?;
    let target = Version::target(req.version.as_ref())?;
    let by = Requester {
        key_id: caller.key_id.clone(),
        trigger: RedriveTrigger::Request,
    };
    let rec = recovery::redrive(&host, &caller.tenant, &eid, target, &by, |_| {}).await?;
    Ok(Json(views::execution(&rec)).into_response())
}

/// Start a new execution from a checkpoint of this one: its history starts with a copy of
/// the original's whole operations before `from_operation` (default: the operation that
/// failed), which replay; the rest runs. The original is not touched.
#[utoipa::path(post, path = "/v1/executions/{id}/fork", tag = "recovery",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    request_body(content = Option<ForkRequest>, description = "Where to cut, which version, which input; may be empty"),
    responses(
        (status = 201, description = "The new execution (forked_from names the original)", body = views::Execution),
        (status = 400, description = "Bad input (e.g. an operation not in its history)", body = views::ErrorBody),
        (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "Its function was deleted", body = views::ErrorBody),
        (status = 429, description = "Over the tenant's max_active_executions or max_stored_bytes (code quota_exceeded); nothing was written", body = views::ErrorBody)))]
pub(super) async fn fork(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ControlExecutions)?;
    let eid = exec_id(&id)?;
    let req: ForkRequest = parse(&host, b, "fork request", Some("{}"))?;
    let target = Version::target(req.version.as_ref())?;
    let input = req.input.map(|v| v.to_string());
    let rec = recovery::fork(
        &host,
        &caller.tenant,
        &eid,
        req.from_operation.as_deref(),
        target,
        input,
    )
    .await?;
    Ok((StatusCode::CREATED, Json(views::execution(&rec))).into_response())
}

/// Redrive every execution of a function that matches: a durable job, which survives
/// restarts and redrives each matched execution exactly once. Follow it with
/// `GET /v1/jobs/{job_id}`.
#[utoipa::path(post, path = "/v1/executions/redrive", tag = "recovery",
    request_body(content = BulkRedriveRequest, description = "Which executions, which version"),
    responses(
        (status = 202, description = "The job, started", body = Job),
        (status = 400, description = "Bad input", body = views::ErrorBody),
        (status = 404, description = "Unknown function", body = views::ErrorBody)))]
pub(super) async fn bulk_redrive(
    State(host): AppState,
    caller: Caller,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ControlExecutions)?;
    let req: BulkRedriveRequest = parse(&host, b, "bulk redrive request", None)?;
    let status = Status::parse(&req.status).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "status {:?}: expected failed, timed_out or stopped",
            req.status
        ))
    })?;
    if let Some(r) = req
        .per_second
        .filter(|r| !(jobs::MIN_PER_SECOND..=jobs::MAX_PER_SECOND).contains(r))
    {
        return Err(ApiError::BadRequest(format!(
            "per_second = {r}: expected {} to {}",
            jobs::MIN_PER_SECOND,
            jobs::MAX_PER_SECOND
        )));
    }
    let spec = jobs::Spec {
        function: req.function,
        status,
        error_type: req.error_type,
        ended_after_ms: req
            .ended_after
            .as_deref()
            .map(|t| rfc3339_ms("ended_after", t))
            .transpose()?,
        ended_before_ms: req
            .ended_before
            .as_deref()
            .map(|t| rfc3339_ms("ended_before", t))
            .transpose()?,
        target: Version::target(req.version.as_ref())?,
        per_second: req.per_second,
    };
    let job = jobs::create(&host, &caller.tenant, caller.key_id.clone(), spec).await?;
    Ok((StatusCode::ACCEPTED, Json(job_view(&job))).into_response())
}

#[utoipa::path(get, path = "/v1/jobs", tag = "recovery",
    responses((status = 200, description = "The tenant's bulk redrive jobs, newest first (the newest 1000)", body = JobList)))]
pub(super) async fn list_jobs(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::ReadExecutions)?;
    let mut out = Vec::new();
    for j in host.db.jobs(&caller.tenant).rev().take(MAX_JOB_LIST) {
        out.push(job_view(&j?));
    }
    Ok(Json(JobList { jobs: out }).into_response())
}

#[utoipa::path(get, path = "/v1/jobs/{job_id}", tag = "recovery",
    params(("job_id" = String, Path, description = "Job id", pattern = "^job_[0-9A-HJKMNP-TV-Z]{26}$")),
    responses((status = 200, description = "The job and its progress", body = Job), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_job(
    State(host): AppState,
    caller: Caller,
    Path(job_id): Path<String>,
) -> ApiResult {
    caller.require(Action::ReadExecutions)?;
    let job = host
        .db
        .job(&caller.tenant, &job_id)?
        .ok_or_else(|| ApiError::NotFound(format!("job {job_id:?} not found")))?;
    Ok(Json(job_view(&job)).into_response())
}
