//! The schedules resource (DESIGN 10): create or replace (`PUT`), list, get (with the next
//! fire times and the latest firings), pause and resume (`PATCH {"paused": bool}`, or a
//! `PUT` with `paused`), delete, and fire now (`POST .../trigger`). What they do is
//! `crate::schedules`'; this file parses bodies and renders records.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::{is_name, object_body, views, ApiError, ApiResult, AppState, Path};
use crate::db::{self, FiringOutcome, FiringRecord, ScheduleRecord};
use crate::ids::execution_id_to_string;
use crate::schedules::{self, Definition, NEXT_SHOWN};
use crate::tenants::{Action, Caller};
use crate::Host;

impl From<schedules::Error> for ApiError {
    fn from(e: schedules::Error) -> Self {
        use schedules::Error as E;
        match e {
            E::BadRequest(m) => ApiError::BadRequest(m),
            E::NotFound(m) => ApiError::NotFound(m),
            E::Conflict(m) => ApiError::Conflict(m),
            E::Quota(m) => ApiError::QuotaExceeded(m),
            E::RateLimited(l) => l.into(),
            E::BacklogFull(b) => b.into(),
            E::Storage(e) => e.into(),
        }
    }
}

/// What a firing does while the previous firing's execution has not ended.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Overlap {
    /// Do not fire (recorded as a skipped firing).
    Skip,
    /// Fire anyway.
    Allow,
    /// Keep one firing; fire it once the running execution ends.
    BufferOne,
}

/// What happens to fire times missed while the host was down (or over a minute late).
#[derive(Clone, Copy, Debug, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum CatchUp {
    /// Skip them: the next firing is the next fire time in the future.
    None,
    /// Fire the most recent missed one, once.
    Latest,
    /// Fire every missed one, oldest first: at most the 100 most recent.
    All,
}

impl From<Overlap> for db::Overlap {
    fn from(o: Overlap) -> Self {
        match o {
            Overlap::Skip => db::Overlap::Skip,
            Overlap::Allow => db::Overlap::Allow,
            Overlap::BufferOne => db::Overlap::BufferOne,
        }
    }
}

impl From<db::Overlap> for Overlap {
    fn from(o: db::Overlap) -> Self {
        match o {
            db::Overlap::Skip => Overlap::Skip,
            db::Overlap::Allow => Overlap::Allow,
            db::Overlap::BufferOne => Overlap::BufferOne,
        }
    }
}

impl From<CatchUp> for db::CatchUp {
    fn from(c: CatchUp) -> Self {
        match c {
            CatchUp::None => db::CatchUp::None,
            CatchUp::Latest => db::CatchUp::Latest,
            CatchUp::All => db::CatchUp::All,
        }
    }
}

impl From<db::CatchUp> for CatchUp {
    fn from(c: db::CatchUp) -> Self {
        match c {
            db::CatchUp::None => CatchUp::None,
            db::CatchUp::Latest => CatchUp::Latest,
            db::CatchUp::All => CatchUp::All,
        }
    }
}

/// One firing of a schedule.
#[derive(Serialize, ToSchema)]
pub struct Firing {
    /// The cron fire time (or the time of a manual trigger); with the schedule's name, the
    /// execution's idempotency key `schedule:<name>:<fire_time>`.
    pub fire_time: String,
    /// When the host handled it.
    pub handled_at: String,
    /// fired, skipped or refused.
    pub result: String,
    pub execution_id: Option<String>,
    /// Fired by `POST /v1/schedules/{name}/trigger`.
    pub manual: bool,
    /// Missed while the host was down: fired (or skipped) by the catch-up policy.
    pub missed: bool,
    /// Why it was skipped or refused.
    pub note: Option<String>,
}

/// A schedule.
#[derive(Serialize, ToSchema)]
pub struct Schedule {
    pub name: String,
    pub function: String,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first.
    pub cron: String,
    /// IANA time zone name the cron is read in.
    pub timezone: String,
    /// Each firing's input.
    pub input: Value,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub paused: bool,
    /// The next cron fire time (null while paused).
    pub next_fire_at: Option<String>,
    /// A firing held by `buffer_one` until the running execution ends.
    pub buffered_fire_at: Option<String>,
    /// The latest refused firing's reason (rate, quotas, function gone), and when.
    pub last_error: Option<String>,
    pub last_error_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// A schedule with its next fire times and latest firings.
#[derive(Serialize, ToSchema)]
pub struct ScheduleDetail {
    #[serde(flatten)]
    pub schedule: Schedule,
    /// The next 5 fire times (none while paused).
    pub next_fire_times: Vec<String>,
    /// The latest firings (at most 50), newest first.
    pub firings: Vec<Firing>,
}

#[derive(Serialize, ToSchema)]
pub struct ScheduleList {
    pub schedules: Vec<Schedule>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct ScheduleRequest {
    /// A function of the tenant (fired on its latest version at each firing).
    function: String,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first (`* * * * * *`:
    /// every second); names, ranges, steps, `L`, `W`, `#`, `@daily` ...
    #[schema(max_length = 256)]
    cron: String,
    /// IANA time zone name (default UTC).
    timezone: Option<String>,
    /// Each firing's input (default null).
    input: Option<Value>,
    overlap: Overlap,
    catch_up: CatchUp,
    /// Default false.
    paused: Option<bool>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
struct SchedulePatch {
    /// true pauses (no firing from the cron), false resumes from the next fire time.
    paused: bool,
}

fn firing_view(f: &FiringRecord) -> Firing {
    Firing {
        fire_time: views::timestamp(f.fire_ms),
        handled_at: views::timestamp(f.at_ms),
        result: match f.outcome {
            FiringOutcome::Fired => "fired",
            FiringOutcome::Skipped => "skipped",
            FiringOutcome::Refused => "refused",
        }
        .to_string(),
        execution_id: f.execution.as_ref().map(execution_id_to_string),
        manual: f.manual,
        missed: f.missed,
        note: f.note.clone(),
    }
}

fn schedule_view(s: &ScheduleRecord) -> Schedule {
    Schedule {
        name: s.name.clone(),
        function: s.function.clone(),
        cron: s.cron.clone(),
        timezone: s.timezone.clone(),
        input: serde_json::from_str(&s.input).unwrap_or(Value::Null),
        overlap: s.overlap.into(),
        catch_up: s.catch_up.into(),
        paused: s.paused,
        next_fire_at: s.next_fire_ms.map(views::timestamp),
        buffered_fire_at: s.buffered_ms.map(views::timestamp),
        last_error: s.last_error.clone(),
        last_error_at: s.last_error_ms.map(views::timestamp),
        created_at: views::timestamp(s.created_ms),
        updated_at: views::timestamp(s.updated_ms),
    }
}

fn detail(host: &Host, s: &ScheduleRecord) -> ScheduleDetail {
    ScheduleDetail {
        schedule: schedule_view(s),
        next_fire_times: host
            .schedules
            .upcoming(s, NEXT_SHOWN)
            .into_iter()
            .map(views::timestamp)
            .collect(),
        firings: s.firings.iter().rev().map(firing_view).collect(),
    }
}

/// A JSON object body of type `T`; an error names the field it is about.
fn parse<T: serde::de::DeserializeOwned>(
    host: &Host,
    b: Result<Bytes, BytesRejection>,
    what: &str,
) -> ApiResult<T> {
    let text = object_body(host, b, what)?;
    let mut de = serde_json::Deserializer::from_str(&text);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let at = if path == "." {
            String::new()
        } else {
            format!("{path}: ")
        };
        ApiError::BadRequest(format!("the {what}: {at}{}", e.into_inner()))
    })
}

#[utoipa::path(put, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$")),
    request_body(content = ScheduleRequest, description = "What to fire, when, and the overlap and catch-up policies"),
    responses((status = 201, description = "Created", body = ScheduleDetail),
        (status = 200, description = "Replaced: it keeps its firings, and counts from now", body = ScheduleDetail),
        (status = 400, description = "Bad input: a bad cron or time zone, a cron that never fires, an unknown function", body = views::ErrorBody),
        (status = 429, description = "The tenant has as many schedules as it may (100)", body = views::ErrorBody)))]
pub(super) async fn put_schedule(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    if !is_name(&name) {
        return Err(ApiError::BadRequest(format!(
            "invalid schedule name {name:?}: use 1-64 letters, digits, '_', '-' or '.'"
        )));
    }
    let req: ScheduleRequest = parse(&host, b, "schedule")?;
    let def = Definition {
        function: req.function,
        cron: req.cron,
        timezone: req
            .timezone
            .unwrap_or_else(|| schedules::DEFAULT_TIMEZONE.to_string()),
        input: req.input.unwrap_or(Value::Null).to_string(),
        overlap: req.overlap.into(),
        catch_up: req.catch_up.into(),
        paused: req.paused.unwrap_or(false),
    };
    let (rec, created) = host.schedules.put(&caller.tenant, &name, def).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(detail(&host, &rec))).into_response())
}

#[utoipa::path(get, path = "/v1/schedules", tag = "schedules",
    responses((status = 200, description = "The tenant's schedules, by name", body = ScheduleList)))]
pub(super) async fn list_schedules(State(host): AppState, caller: Caller) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    let all = host.schedules.list(&caller.tenant)?;
    Ok(Json(ScheduleList {
        schedules: all.iter().map(schedule_view).collect(),
    })
    .into_response())
}

#[utoipa::path(get, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 200, description = "The schedule, its next fire times and latest firings", body = ScheduleDetail),
        (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_schedule(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    let rec = host.schedules.get(&caller.tenant, &name)?;
    Ok(Json(detail(&host, &rec)).into_response())
}

#[utoipa::path(patch, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    request_body(content = SchedulePatch, description = "Pause or resume"),
    responses((status = 200, description = "The schedule", body = ScheduleDetail),
        (status = 400, description = "Bad input", body = views::ErrorBody),
        (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn patch_schedule(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    let req: SchedulePatch = parse(&host, b, "schedule change")?;
    let rec = host
        .schedules
        .set_paused(&caller.tenant, &name, req.paused)
        .await?;
    Ok(Json(detail(&host, &rec)).into_response())
}

#[utoipa::path(delete, path = "/v1/schedules/{name}", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 204, description = "Deleted (its executions are not touched)"),
        (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn delete_schedule(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    host.schedules.delete(&caller.tenant, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[utoipa::path(post, path = "/v1/schedules/{name}/trigger", tag = "schedules",
    params(("name" = String, Path, description = "Schedule name")),
    responses((status = 202, description = "Fired now (paused or not, whatever the overlap policy)", body = Firing),
        (status = 404, description = "Unknown", body = views::ErrorBody),
        (status = 409, description = "The schedule's function is gone (recorded on the schedule)", body = views::ErrorBody),
        (status = 429, description = "The tenant's rate or quotas, or the function's max_queued, refused the firing (recorded on the schedule)", body = views::ErrorBody)))]
pub(super) async fn trigger_schedule(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
) -> ApiResult {
    caller.require(Action::ManageSchedules)?;
    let f = host.schedules.trigger(&caller.tenant, &name).await?;
    Ok((StatusCode::ACCEPTED, Json(firing_view(&f))).into_response())
}
