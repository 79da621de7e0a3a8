//! The executions resource: invoke (with `Idempotency-Key` and `?wait=`), list, get,
//! history (pages and the live Server-Sent Events stream), logs and stop. An invoke takes a
//! token of its tenant's rate (429 `rate_limited`), answers an idempotent replay, holds a
//! place in the function's backlog (`max_queued`: 429 `backlog_full`), reserves
//! an active execution and its input's bytes within the tenant's quotas (429
//! `quota_exceeded`), then writes the execution, its first event and its deadline in one
//! batch and wakes the scheduler; running it is the scheduler's and the runtime's job, not
//! this file's.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{
    body, check_name, effective, json_text, views, ApiError, ApiQuery, ApiResult, AppState, Path,
};
use crate::db::{
    Batch, Durability, ExecId, ExecutionRecord, IdempotencyRecord, Status, StopRecord,
};
use crate::runtime::create::{input_sha256, NewExecution, Refusal};
use crate::scheduler::ExecKey;
use crate::tenants::usage::ExecBytes;
use crate::tenants::{Action, Caller};
use crate::{ids, Host};

fn exec_id(s: &str) -> ApiResult<ExecId> {
    ids::parse_execution_id(s)
        .ok_or_else(|| ApiError::NotFound(format!("execution {s:?} not found")))
}

fn load_execution(host: &Host, caller: &Caller, id: &str) -> ApiResult<ExecutionRecord> {
    caller.require(Action::ReadExecutions)?;
    let eid = exec_id(id)?;
    host.db
        .execution(&caller.tenant, &eid)?
        .ok_or_else(|| ApiError::NotFound(format!("execution {id:?} not found")))
}

/// The longest `?wait=` honoured: a client that wants longer polls again.
pub const MAX_WAIT: Duration = Duration::from_secs(300);

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct InvokeQuery {
    /// Seconds to wait for the end (longer waits are cut to 300): 200 if it ended, else 202.
    #[param(value_type = Option<f64>, minimum = 0)]
    wait: Option<String>,
    /// Start after this many seconds (at most the function's execution timeout, which
    /// counts from the invoke): the execution is created at once, `suspended` until then.
    /// Not with `start_at`.
    // The maximum is the longest execution timeout a function can have (366 days,
    // `settings::MAX_EXECUTION_TIMEOUT_SECS`, checked by a test).
    #[param(value_type = Option<f64>, minimum = 0, maximum = 31_622_400)]
    delay: Option<String>,
    /// Start at this time (RFC 3339; one in the past starts at once; at most the execution
    /// timeout away): the execution is created at once, `suspended` until then. Not with
    /// `delay`.
    #[param(value_type = Option<String>, format = DateTime)]
    start_at: Option<String>,
}

/// Parse an RFC 3339 time of query parameter `what` into unix milliseconds (a time before
/// 1970 is 0).
pub(super) fn rfc3339_ms(what: &str, s: &str) -> ApiResult<u64> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|e| {
            ApiError::BadRequest(format!(
                "{what}={s:?}: expected an RFC 3339 time such as 2026-01-31T09:30:00Z ({e})"
            ))
        })?;
    Ok(u64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(0))
}

/// When a delayed invoke starts (unix ms), from `?delay=` or `?start_at=`; `None` to start
/// at once (neither given, or a time not after `now`). At most `timeout` past `now`.
fn start_time(q: &InvokeQuery, now: u64, timeout: Duration) -> ApiResult<Option<u64>> {
    let start = match (q.delay.as_deref(), q.start_at.as_deref()) {
        (None, None) => return Ok(None),
        (Some(_), Some(_)) => {
            return Err(ApiError::BadRequest(
                "delay and start_at: give one or the other, not both".into(),
            ))
        }
        (Some(d), None) => {
            let secs: f64 = d
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("delay={d:?}: expected a number of seconds"))
                })?;
            if secs > timeout.as_secs_f64() {
                return Err(ApiError::BadRequest(format!(
                    "delay={d}: at most the function's execution timeout, {} s",
                    timeout.as_secs()
                )));
            }
            now.saturating_add((secs * 1000.0).round() as u64)
        }
        (None, Some(t)) => {
            let at = rfc3339_ms("start_at", t)?;
            if at.saturating_sub(now) > timeout.as_millis() as u64 {
                return Err(ApiError::BadRequest(format!(
                    "start_at={t}: at most the function's execution timeout ({} s) from now",
                    timeout.as_secs()
                )));
            }
            at
        }
    };
    Ok((start > now).then_some(start))
}

/// The headers `invoke` reads (for the description only: `idempotency_key` reads them).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct InvokeHeaders {
    /// Same key and input: the same execution; a different input: 409.
    #[param(
        rename = "Idempotency-Key",
        min_length = 1,
        max_length = 256,
        pattern = "^[!-~]([ -~]*[!-~])?$"
    )]
    idempotency_key: Option<String>,
    /// A W3C trace context: the execution's OTLP trace continues it (`--otlp-endpoint`).
    /// An invalid value is ignored, as the specification says.
    #[param(
        rename = "traceparent",
        example = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    )]
    traceparent: Option<String>,
}

/// The longest `Idempotency-Key` accepted.
const MAX_IDEMPOTENCY_KEY: usize = 256;

fn idempotency_key(headers: &HeaderMap) -> ApiResult<Option<String>> {
    let Some(v) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = v
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= MAX_IDEMPOTENCY_KEY)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} visible ASCII characters"
            ))
        })?;
    Ok(Some(key.to_string()))
}

/// Start an execution of the function's latest version.
#[utoipa::path(post, path = "/v1/functions/{name}/invoke", tag = "executions",
    params(("name" = String, Path, description = "Function name: 1-64 of [A-Za-z0-9_.-]", pattern = "^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"), InvokeQuery, InvokeHeaders),
    request_body(content = Option<Value>, description = "The input (JSON; empty means null)"),
    responses(
        (status = 202, description = "Started (or still running after ?wait)", body = views::Execution),
        (status = 200, description = "Ended within ?wait", body = views::Execution),
        (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody), (status = 413, description = "Too large", body = views::ErrorBody),
        (status = 429, description = "Over the tenant's invocation rate (code rate_limited, with Retry-After), or its max_active_executions or max_stored_bytes (code quota_exceeded), or the function's max_queued (code backlog_full, with Retry-After); nothing was written", body = views::ErrorBody)))]
pub(super) async fn invoke(
    State(host): AppState,
    caller: Caller,
    Path(name): Path<String>,
    ApiQuery(q): ApiQuery<InvokeQuery>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> ApiResult {
    caller.require(Action::Invoke)?;
    check_name(&name)?;
    let wait = match q.wait.as_deref() {
        None => None,
        Some(s) => {
            let secs: f64 = s
                .parse()
                .ok()
                .filter(|v: &f64| v.is_finite() && *v >= 0.0)
                .ok_or_else(|| {
                    ApiError::BadRequest(format!("wait={s:?}: expected a number of seconds"))
                })?;
            // Capped before the conversion, which panics past u64::MAX seconds.
            Some(Duration::from_secs_f64(secs.min(MAX_WAIT.as_secs_f64())))
        }
    };
    let key = idempotency_key(&headers)?;
    let b = body(b)?;
    let input = json_text(&host, &b, "input")?;
    let f = host
        .db
        .function(&caller.tenant, &name)?
        .filter(|f| !f.deleted)
        .ok_or_else(|| ApiError::NotFound(format!("function {name:?} not found")))?;
    let input_sha256 = key.as_ref().map(|_| input_sha256(&input));
    // A bad ?delay= or ?start_at= is refused before it takes a rate token or a quota.
    start_time(
        &q,
        host.clock.now_ms(),
        effective(&host, &f).execution_timeout,
    )?;
    let quotas = host.tenants.quotas(&caller.tenant);
    let now = host.clock.now_ms();
    host.tenants.rates.take(
        &caller.tenant,
        quotas.invocations_per_second,
        quotas.invocation_burst,
        now,
    )?;
    // An idempotent replay starts nothing, so no count quota refuses it.
    if let (Some(key), Some(sha)) = (&key, &input_sha256) {
        if let Some(held) = host.db.idempotency(&caller.tenant, &name, key)? {
            if let Some(resp) = replay(&host, &caller, &name, key, &held, sha, wait).await? {
                return Ok(resp);
            }
        }
    }
    // A place in the function's backlog (`max_queued`, 429 `backlog_full`), held until the
    // execution is queued (a delayed start waits on its timer, not in the queue), and the
    // quota reservation, held until the execution is written (then it counts) or this
    // request fails.
    let queued = start_time(&q, now, effective(&host, &f).execution_timeout)?.is_none();
    let admission = crate::runtime::create::admit(
        &host.tenants,
        &host.scheduler,
        &caller.tenant,
        &name,
        f.settings.max_queued,
        queued,
        input.len() as u64,
        &quotas,
    );
    let (backlog, reserved) = match admission {
        Ok(a) => (a.backlog, a.reserved),
        Err(Refusal::Backlog(e)) => return Err(e.into()),
        Err(Refusal::Quota(e)) => return Err(e.into()),
    };
    // A second try only if the key's holder was deleted (its retention ended) between our
    // claim and our read of it: the key was released with it.
    let mut stale: Option<IdempotencyRecord> = None;
    for _ in 0..3 {
        let now = host.clock.now_ms();
        let timeout = effective(&host, &f).execution_timeout;
        let deadline = now.saturating_add(timeout.as_millis() as u64);
        // A delayed start: suspended on a start timer (written with it) until then.
        let start = start_time(&q, now, timeout)?;
        let id = ids::new_execution_id();
        let created = NewExecution {
            id,
            tenant: caller.tenant.to_string(),
            function: name.clone(),
            version: f.latest_version,
            input: input.clone(),
            now_ms: now,
            deadline_ms: deadline,
            idempotency_key: key.clone(),
            start_ms: start,
            fork: None,
            trace: headers
                .get("traceparent")
                .and_then(|v| v.to_str().ok())
                .and_then(crate::otlp::parse_traceparent),
            parent: None,
        }
        .write();
        let (rec, batch, timers) = (created.record, created.batch, created.timers);
        let written = batch.written_for(&caller.tenant, &id);
        match (&key, &input_sha256) {
            (Some(key), Some(input_sha256)) => {
                let claim = IdempotencyRecord {
                    execution: id,
                    input_sha256: input_sha256.clone(),
                };
                // The claim, the execution, its first event and its deadline: one group.
                let held = host
                    .db
                    .claim_idempotency(&caller.tenant, &name, key, &claim, batch, stale.as_ref())
                    .await?;
                if let Some(held) = held {
                    let sha = &claim.input_sha256;
                    match replay(&host, &caller, &name, key, &held, sha, wait).await? {
                        Some(resp) => return Ok(resp),
                        // Its execution was deleted by retention just now (which releases
                        // the key), or the claim was left without its execution by an
                        // older release: take the key over, atomically.
                        None => {
                            stale = Some(held);
                            continue;
                        }
                    }
                }
            }
            // Not awaited on disk: the response is an output, so it waits (api::serve).
            _ => host.db.commit(batch, Durability::Lazy).await?,
        }
        reserved.invoked(id, ExecBytes::from(written));
        timers.add(&host.timers);
        host.metrics.created(&caller.tenant);
        let finished = wait.map(|_| host.scheduler.on_finished(id));
        let exec = ExecKey {
            tenant: caller.tenant.as_ref().into(),
            id,
            branch: None,
        };
        // The scheduler learns its class now, so that no wake of it reads the store.
        let class = crate::settings::class(&name, &f.settings, &input, true);
        host.scheduler.classify(&exec, class);
        match start {
            Some(_) => host
                .metrics
                .tenant(&caller.tenant)
                .transition(Status::Running, Status::Suspended),
            None => host.scheduler.wake(exec),
        }
        drop(backlog);
        return match (wait, finished) {
            (Some(wait), Some(rx)) => {
                let _ = tokio::time::timeout(wait, rx).await;
                let rec = host.db.execution(&caller.tenant, &id)?.unwrap_or(rec);
                Ok(execution_response(&rec))
            }
            _ => Ok(execution_response(&rec)),
        };
    }
    // A takeover lost to a concurrent one names the winner's execution, which exists; a
    // key that keeps naming missing executions is a damaged store.
    Err(ApiError::Internal(format!(
        "Idempotency-Key {:?} of {name} names an execution that does not exist",
        key.unwrap_or_default()
    )))
}

/// The answer to an invocation whose `Idempotency-Key` is `held`: its execution (waited
/// for up to `wait`), or 409 if the key came with another input; `None` if the execution
/// the key names is gone.
async fn replay(
    host: &Host,
    caller: &Caller,
    name: &str,
    key: &str,
    held: &IdempotencyRecord,
    input_sha256: &str,
    wait: Option<Duration>,
) -> ApiResult<Option<Response>> {
    match host.db.execution(&caller.tenant, &held.execution)? {
        Some(_) if held.input_sha256 != input_sha256 => Err(ApiError::Conflict(format!(
            "Idempotency-Key {key:?} was used for {name} with a different input"
        ))),
        Some(rec) => respond(host, caller, rec, wait).await.map(Some),
        None => Ok(None),
    }
}

/// An execution as the answer to an invoke: 200 once it has ended, else 202.
fn execution_response(rec: &ExecutionRecord) -> Response {
    let status = if rec.status.is_terminal() {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    (status, Json(views::execution(rec))).into_response()
}

/// Answer with an existing execution, waiting for its end up to `wait`.
async fn respond(
    host: &Host,
    caller: &Caller,
    rec: ExecutionRecord,
    wait: Option<Duration>,
) -> ApiResult {
    let Some(wait) = wait.filter(|_| !rec.status.is_terminal()) else {
        return Ok(execution_response(&rec));
    };
    let rx = host.scheduler.on_finished(rec.id);
    // It may have ended between the read above and registering.
    let now = host.db.execution(&caller.tenant, &rec.id)?.unwrap_or(rec);
    if !now.status.is_terminal() {
        let _ = tokio::time::timeout(wait, rx).await;
    }
    let rec = host.db.execution(&caller.tenant, &now.id)?.unwrap_or(now);
    Ok(execution_response(&rec))
}

/// The most executions one page holds.
pub const MAX_EXECUTION_PAGE: usize = 1000;

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct ListQuery {
    /// Only this function's executions.
    function: Option<String>,
    /// Only executions in this status (running, suspended, succeeded, failed, timed_out,
    /// stopped).
    #[param(pattern = "^(running|suspended|succeeded|failed|timed_out|stopped)$")]
    status: Option<String>,
    /// Only executions whose error has exactly this `error_type` (e.g. `Runtime.LoadError`).
    error_type: Option<String>,
    /// Only executions that ended (reached a terminal status) at or after this time
    /// (RFC 3339).
    #[param(value_type = Option<String>, format = DateTime)]
    ended_after: Option<String>,
    /// Only executions that ended before this time (RFC 3339): with `ended_after`, windows
    /// that meet never share an execution.
    #[param(value_type = Option<String>, format = DateTime)]
    ended_before: Option<String>,
    /// Executions per page (1-1000, default 50).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")]
    cursor: Option<String>,
}

#[utoipa::path(get, path = "/v1/executions", tag = "executions",
    params(ListQuery),
    responses((status = 200, description = "A page of executions, newest first", body = views::ExecutionPage), (status = 400, description = "Bad input", body = views::ErrorBody)))]
pub(super) async fn list_executions(
    State(host): AppState,
    caller: Caller,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> ApiResult {
    caller.require(Action::ReadExecutions)?;
    let status = match q.status.as_deref() {
        None => None,
        Some(s) => Some(Status::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status={s:?}: expected one of running, suspended, succeeded, failed, timed_out, stopped"
            ))
        })?),
    };
    let ended_after = q
        .ended_after
        .as_deref()
        .map(|t| rfc3339_ms("ended_after", t))
        .transpose()?;
    let ended_before = q
        .ended_before
        .as_deref()
        .map(|t| rfc3339_ms("ended_before", t))
        .transpose()?;
    let limit = page_limit(q.limit, 50, MAX_EXECUTION_PAGE)?;
    let cursor = match q.cursor.as_deref() {
        None => None,
        Some(c) => Some(ids::parse_execution_id(c).ok_or_else(|| {
            ApiError::BadRequest(format!("cursor={c:?} is not a cursor from this API"))
        })?),
    };
    let mut out = Vec::new();
    let mut next = None;
    for rec in host.db.executions(&caller.tenant) {
        let rec = rec?;
        if cursor.is_some_and(|c| rec.id >= c) {
            continue;
        }
        let ended = rec.end_ms();
        if q.function.as_deref().is_some_and(|f| f != rec.function)
            || status.is_some_and(|s| s != rec.status)
            || q.error_type
                .as_deref()
                .is_some_and(|t| rec.error.as_ref().map(|e| e.error_type.as_str()) != Some(t))
            || ended_after.is_some_and(|t| ended.is_none_or(|e| e < t))
            || ended_before.is_some_and(|t| ended.is_none_or(|e| e >= t))
        {
            continue;
        }
        if out.len() == limit {
            next = out
                .last()
                .map(|v: &views::Execution| v.execution_id.clone());
            break;
        }
        out.push(views::execution(&rec));
    }
    let page = views::ExecutionPage {
        executions: out,
        next_cursor: next,
    };
    Ok(Json(page).into_response())
}

#[utoipa::path(get, path = "/v1/executions/{id}", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    responses((status = 200, description = "The execution", body = views::Execution), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn get_execution(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    let rec = load_execution(&host, &caller, &id)?;
    Ok(Json(views::execution(&rec)).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct HistoryQuery {
    /// Events per page (1-1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page (an `event_id`).
    #[param(pattern = "^[0-9]{1,9}$")]
    cursor: Option<String>,
}

/// The most events one history page holds (and the default page size).
pub const MAX_HISTORY_PAGE: usize = 1000;

/// A page size: `default` when absent, else 1 to `max` (what the spec declares).
fn page_limit(limit: Option<u64>, default: usize, max: usize) -> ApiResult<usize> {
    match limit {
        None => Ok(default),
        Some(n) if (1..=max as u64).contains(&n) => Ok(n as usize),
        Some(n) => Err(ApiError::BadRequest(format!(
            "limit={n}: expected 1 to {max}"
        ))),
    }
}

/// An event id from a query or header: the position to continue after.
fn event_position(what: &str, s: &str) -> ApiResult<u32> {
    position(what, s, "an event_id")
}

/// A sequence number from a query or header (`expected` names what it should have been).
fn position(what: &str, s: &str, expected: &str) -> ApiResult<u32> {
    s.trim().parse().map_err(|_| {
        ApiError::BadRequest(format!("{what}={s:?}: expected {expected} from this API"))
    })
}

/// History in pages of up to `limit` events; `next_cursor` (the last `event_id` sent) is
/// null on the last page, so a client pages until it is null.
#[utoipa::path(get, path = "/v1/executions/{id}/history", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), HistoryQuery),
    responses((status = 200, description = "A page of history events, oldest first", body = views::HistoryPage), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn history(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<HistoryQuery>,
) -> ApiResult {
    let rec = load_execution(&host, &caller, &id)?;
    let limit = page_limit(q.limit, MAX_HISTORY_PAGE, MAX_HISTORY_PAGE)?;
    let after = match q.cursor.as_deref() {
        Some(c) => event_position("cursor", c)?,
        None => 0,
    };
    // One more than asked for tells whether another page follows.
    let mut events = host.db.history_after(&rec.id, after, limit + 1)?;
    let next = (events.len() > limit).then(|| {
        events.truncate(limit);
        events.last().map(|e| e.seq.to_string())
    });
    let page = views::HistoryPage {
        events: events.iter().map(views::event).collect(),
        next_cursor: next.flatten(),
    };
    Ok(Json(page).into_response())
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct EventsQuery {
    /// Send only events after this event_id.
    #[param(pattern = "^[0-9]{1,9}$")]
    after: Option<String>,
}

/// History as Server-Sent Events, live: every event with `event_id` past `?after=` (or the
/// `Last-Event-ID` header of a reconnecting client), in order, each as `event: history` with
/// its `event_id` as the SSE id; once the execution has ended and everything is sent, one
/// `event: end` carrying the execution, and the stream closes.
#[utoipa::path(get, path = "/v1/executions/{id}/events", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), EventsQuery, EventsHeaders),
    responses((status = 200, description = "text/event-stream: `event: history` frames (data: a history event, id: its event_id), then one `event: end` (data: the execution)", content_type = "text/event-stream"), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn events(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<EventsQuery>,
    headers: HeaderMap,
) -> ApiResult {
    let rec = load_execution(&host, &caller, &id)?;
    // Both are checked; `?after=` wins.
    let header = match headers.get("last-event-id") {
        Some(h) => Some(event_position("Last-Event-ID", h.to_str().unwrap_or("?"))?),
        None => None,
    };
    let after = match q.after.as_deref() {
        Some(a) => event_position("after", a)?,
        None => header.unwrap_or(0),
    };
    let watch = host.db.watch(&rec.id);
    let state = LiveHistory {
        host,
        tenant: caller.tenant,
        id: rec.id,
        after,
        watch,
        queue: std::collections::VecDeque::new(),
        opened: false,
        ended: false,
    };
    let stream = futures::stream::unfold(state, |mut s| async move {
        let frame = s.next_frame().await?;
        Some((Ok::<_, std::convert::Infallible>(frame), s))
    });
    Ok(Sse::new(stream)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// The headers `events` reads (for the description only).
#[derive(IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code)]
struct EventsHeaders {
    /// Resume after this event_id (what a reconnecting EventSource sends).
    #[param(rename = "Last-Event-ID", value_type = String, required = false, pattern = "^[0-9]{1,9}$")]
    last_event_id: Option<String>,
}

/// The state of one live history stream.
struct LiveHistory {
    host: Arc<Host>,
    tenant: Arc<str>,
    id: ExecId,
    after: u32,
    watch: crate::db::Watch,
    queue: std::collections::VecDeque<crate::journal::Event>,
    /// The first frame is a comment, so a client (and any proxy) sees the stream open at
    /// once even when nothing happens for a while.
    opened: bool,
    ended: bool,
}

impl LiveHistory {
    /// The next frame, waiting for the execution to change if nothing is new; `None` once
    /// the end has been sent (or the store fails: the client reconnects with its last id).
    async fn next_frame(&mut self) -> Option<SseEvent> {
        if !self.opened {
            self.opened = true;
            return Some(SseEvent::default().comment("history of this execution follows"));
        }
        loop {
            if let Some(e) = self.queue.pop_front() {
                self.after = e.seq;
                let data = serde_json::to_string(&views::event(&e)).ok()?;
                return Some(
                    SseEvent::default()
                        .id(e.seq.to_string())
                        .event("history")
                        .data(data),
                );
            }
            if self.ended {
                return None;
            }
            self.watch.mark_seen();
            // The record first: when it is terminal, every event is already written.
            let rec = self.host.db.execution(&self.tenant, &self.id).ok()??;
            let batch = self
                .host
                .db
                .history_after(&self.id, self.after, MAX_HISTORY_PAGE)
                .ok()?;
            // Durability at the point of output: a frame shows only what is on disk.
            if !batch.is_empty() || rec.status.is_terminal() {
                self.host.db.durable_barrier().await.ok()?;
            }
            if !batch.is_empty() {
                self.queue.extend(batch);
                continue;
            }
            if rec.status.is_terminal() {
                self.ended = true;
                let data = serde_json::to_string(&views::execution(&rec)).ok()?;
                return Some(SseEvent::default().event("end").data(data));
            }
            self.watch.changed().await;
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(super) struct LogsQuery {
    /// Lines per page (1-1000, default 1000).
    #[param(minimum = 1, maximum = 1000)]
    limit: Option<u64>,
    /// `next_cursor` of the previous page.
    #[param(pattern = "^[0-9]{1,9}$")]
    cursor: Option<String>,
}

/// The most lines one log page holds (and the default page size).
pub const MAX_LOG_PAGE: usize = 1000;
/// A page ends after the line that brings its messages to this many bytes, so one response
/// stays small whatever the lines' length (1,000 lines of 16 KiB would be 16 MiB).
pub const MAX_LOG_PAGE_BYTES: usize = 1024 * 1024;

/// Logs in pages of up to `limit` lines (and about 1 MiB); `next_cursor` is null on the
/// last page, so a client pages until it is null.
#[utoipa::path(get, path = "/v1/executions/{id}/logs", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$"), LogsQuery),
    responses((status = 200, description = "A page of the guest's log lines and stdout/stderr, once each, oldest first", body = views::Logs), (status = 400, description = "Bad input", body = views::ErrorBody), (status = 404, description = "Unknown", body = views::ErrorBody)))]
pub(super) async fn logs(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> ApiResult {
    let rec = load_execution(&host, &caller, &id)?;
    let limit = page_limit(q.limit, MAX_LOG_PAGE, MAX_LOG_PAGE)?;
    let after = match q.cursor.as_deref() {
        Some(c) => position("cursor", c, "a next_cursor")?,
        None => 0,
    };
    // One more than asked for tells whether another page follows.
    let mut lines = host.db.logs_after(&rec.id, after, limit + 1)?;
    let mut bytes = 0;
    let keep = lines
        .iter()
        .position(|(_, l)| {
            bytes += l.message.len();
            bytes >= MAX_LOG_PAGE_BYTES
        })
        .map_or(limit, |i| (i + 1).min(limit));
    let next = (lines.len() > keep).then(|| {
        lines.truncate(keep);
        lines.last().map(|(seq, _)| seq.to_string())
    });
    let page = views::Logs {
        logs: lines.iter().map(|(_, l)| views::log(l)).collect(),
        next_cursor: next.flatten(),
    };
    Ok(Json(page).into_response())
}

/// How long `stop` waits for a resident guest to be interrupted before answering 202.
const STOP_WAIT: Duration = Duration::from_secs(5);

/// Stop a running or suspended execution: the request is durable (it survives a crash) and
/// the execution's next activation carries it out, or its activation in progress at once
/// (also when its guest waits in a host call, such as an HTTP request or a sleep, or the
/// activation waits for memory). 200 with the stopped execution, 202 if it is still
/// stopping, 409 if it had already ended.
#[utoipa::path(post, path = "/v1/executions/{id}/stop", tag = "executions",
    params(("id" = String, Path, description = "Execution id", pattern = "^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$")),
    responses(
        (status = 200, description = "Stopped", body = views::Execution),
        (status = 202, description = "Still stopping (the stop is durable)", body = views::Execution),
        (status = 404, description = "Unknown", body = views::ErrorBody), (status = 409, description = "Conflict", body = views::ErrorBody)))]
pub(super) async fn stop(
    State(host): AppState,
    caller: Caller,
    Path(id): Path<String>,
) -> ApiResult {
    caller.require(Action::ControlExecutions)?;
    let rec = load_execution(&host, &caller, &id)?;
    if rec.status.is_terminal() {
        return Err(ApiError::Conflict(format!(
            "execution {id} has already ended ({})",
            rec.status.as_str()
        )));
    }
    let mut batch = Batch::new();
    batch.put_stop(
        &rec.id,
        &StopRecord {
            tenant: caller.tenant.to_string(),
            requested_ms: host.clock.now_ms(),
        },
    );
    host.db.commit(batch, Durability::Sync).await?;
    host.runtime.shared.request_stop(rec.id);
    let rx = host.scheduler.on_finished(rec.id);
    host.scheduler.wake(ExecKey {
        tenant: caller.tenant.as_ref().into(),
        id: rec.id,
        branch: None,
    });
    let _ = tokio::time::timeout(STOP_WAIT, rx).await;
    let rec = host.db.execution(&caller.tenant, &rec.id)?.unwrap_or(rec);
    Ok(execution_response(&rec))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(delay: Option<&str>, start_at: Option<&str>) -> InvokeQuery {
        InvokeQuery {
            wait: None,
            delay: delay.map(str::to_string),
            start_at: start_at.map(str::to_string),
        }
    }

    /// 2026-01-31T09:30:00Z in unix milliseconds.
    const NOW: u64 = 1_769_851_800_000;

    #[test]
    fn a_delayed_start_is_parsed_bounded_by_the_timeout_and_refused_naming_the_parameter() {
        let minute = Duration::from_secs(60);
        let ok: [(Option<&str>, Option<&str>, Option<u64>); 9] = [
            (None, None, None),
            (Some("0"), None, None),
            (Some("1"), None, Some(NOW + 1000)),
            (Some("0.25"), None, Some(NOW + 250)),
            (Some("60"), None, Some(NOW + 60_000)),
            (None, Some("2026-01-31T09:30:30Z"), Some(NOW + 30_000)),
            (
                None,
                Some("2026-01-31T11:30:30.5+02:00"),
                Some(NOW + 30_500),
            ),
            // In the past, or now: at once.
            (None, Some("2026-01-31T09:30:00Z"), None),
            (None, Some("1999-12-31T23:59:59Z"), None),
        ];
        for (d, t, want) in ok {
            let got = start_time(&query(d, t), NOW, minute)
                .unwrap_or_else(|e| panic!("{d:?} {t:?}: {e:?}"));
            assert_eq!(got, want, "{d:?} {t:?}");
        }
        let bad: [(Option<&str>, Option<&str>, &str); 8] = [
            (Some("-1"), None, "delay="),
            (Some("abc"), None, "delay="),
            (Some("inf"), None, "delay="),
            (Some("60.001"), None, "execution timeout"),
            (None, Some("soon"), "start_at="),
            (None, Some("2026-01-31 09:30:00"), "start_at="),
            (None, Some("2026-01-31T09:31:00.001Z"), "execution timeout"),
            (Some("1"), Some("2026-01-31T09:30:01Z"), "not both"),
        ];
        for (d, t, want) in bad {
            match start_time(&query(d, t), NOW, minute) {
                Err(ApiError::BadRequest(m)) => assert!(m.contains(want), "{d:?} {t:?}: {m}"),
                other => panic!("{d:?} {t:?}: {:?}", other.map_err(|e| e.to_string())),
            }
        }
    }

    #[test]
    fn the_described_maximum_delay_is_the_longest_execution_timeout() {
        assert_eq!(crate::settings::MAX_EXECUTION_TIMEOUT_SECS, 31_622_400);
    }
}
