//! Webhooks (DESIGN 9): a tenant's subscriptions to execution events, the outbox of
//! deliveries written with each terminal event, and the worker that sends them with
//! Standard Webhooks signatures, retries them on a schedule and records every attempt.
//!
//! `outbox` runs inside the batch that ends an execution (the runtime calls it), so a
//! delivery exists exactly when its event does: a crash loses none. A pending delivery has
//! an outbox entry (`db::keys::outbox`) under its next attempt's time; the worker
//! (`deliver::Service`) sends what is due, at most `Options::concurrency` at once, and
//! replaces the entry in the same batch as the attempt's result. Delivery is at-least-once:
//! a crash after the receiver answered and before the result was written sends it again.
//!
//! Must not: send to a destination outside its tenant's outbound allowlist (checked when a
//! webhook is created or changed, and again, with name resolution, at every attempt); log
//! or show a secret after creation; log a whole URL (a Slack URL holds a token): the host
//! only.

pub mod deliver;
pub mod manage;
pub mod sign;

use std::time::Duration;

use crate::db::{
    self, Batch, DeliveryRecord, DeliveryStatus, ExecutionRecord, Status, Store, WebhookFormat,
    WebhookRecord,
};
use crate::ids::execution_id_to_string;
use crate::timer::rfc3339 as timestamp;

pub use deliver::{Outbox, Service};

/// The events a webhook may ask for.
pub const EVENTS: [&str; 5] = [
    "execution.succeeded",
    "execution.failed",
    "execution.timed_out",
    "execution.stopped",
    REDRIVEN_EVENT,
];

/// The event of a redrive (`recovery`): written with its `ExecutionRedriven` event.
pub const REDRIVEN_EVENT: &str = "execution.redriven";

/// The event type of `POST /v1/webhooks/{id}/test`.
pub const TEST_EVENT: &str = "webhook.test";

/// DESIGN 9's retry schedule: the delays before the 2nd, 3rd, ... attempt.
pub const DEFAULT_SCHEDULE: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// How long one attempt may take, connection included (DESIGN 9).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(15);

/// Deliveries in flight at once by default (`--webhook-concurrency`): enough that one slow
/// receiver does not hold up the others, few enough that a burst of failures does not open
/// hundreds of connections.
pub const DEFAULT_CONCURRENCY: usize = 16;

/// The most webhooks one tenant may have: each terminal event reads them all, inside the
/// batch that ends the execution.
pub const MAX_WEBHOOKS_PER_TENANT: usize = 64;

/// The most finished deliveries one webhook keeps (the newest): a receiver that fails for
/// days must not fill the disk with its history.
pub const MAX_FINISHED_DELIVERIES: usize = 1000;

/// How often finished deliveries past their retention are deleted.
pub const PRUNE_INTERVAL: Duration = Duration::from_secs(60);

/// The longest URL accepted.
pub const MAX_URL_BYTES: usize = 2048;

/// The most bytes of a receiver's error kept on a delivery (`last_error`).
const MAX_ERROR_BYTES: usize = 512;

#[derive(Clone, Debug)]
pub struct Options {
    /// Delays between attempts; a delivery fails after `schedule.len() + 1` attempts.
    pub schedule: Vec<Duration>,
    pub concurrency: usize,
    pub timeout: Duration,
    /// How long a finished (delivered or failed) delivery is kept (the server's
    /// `--retention-secs`); a webhook also keeps at most `MAX_FINISHED_DELIVERIES`.
    pub retention: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            schedule: DEFAULT_SCHEDULE.to_vec(),
            concurrency: DEFAULT_CONCURRENCY,
            timeout: ATTEMPT_TIMEOUT,
            retention: crate::settings::Defaults::default().retention,
        }
    }
}

/// `--webhook-retry-schedule`: comma-separated durations (`5s,5m,30m,2h`; units `ms`, `s`,
/// `m`, `h`), at least one.
pub fn parse_schedule(s: &str) -> Result<Vec<Duration>, String> {
    let parse_one = |part: &str| -> Result<Duration, String> {
        let part = part.trim();
        let (num, unit) = part
            .find(|c: char| !c.is_ascii_digit())
            .map_or((part, ""), |at| part.split_at(at));
        let n: u64 = num
            .parse()
            .map_err(|_| format!("{part:?}: expected a number and a unit, e.g. 5s or 100ms"))?;
        let ms = match unit {
            "ms" => n,
            "s" => n.saturating_mul(1000),
            "m" => n.saturating_mul(60_000),
            "h" => n.saturating_mul(3_600_000),
            _ => return Err(format!("{part:?}: the unit must be ms, s, m or h")),
        };
        Ok(Duration::from_millis(ms))
    };
    let out = s.split(',').map(parse_one).collect::<Result<Vec<_>, _>>()?;
    if out.is_empty() {
        return Err("at least one delay".into());
    }
    Ok(out)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    /// Over `MAX_WEBHOOKS_PER_TENANT`.
    #[error("{0}")]
    Limit(String),
    #[error(transparent)]
    Storage(#[from] db::Error),
}

/// The event an execution that ended in `status` raises, if any.
pub fn event_of(status: Status) -> Option<&'static str> {
    match status {
        Status::Succeeded => Some(EVENTS[0]),
        Status::Failed => Some(EVENTS[1]),
        Status::TimedOut => Some(EVENTS[2]),
        Status::Stopped => Some(EVENTS[3]),
        Status::Running | Status::Suspended => None,
    }
}

/// `wh_<ULID>` / `msg_<ULID>`.
pub fn new_webhook_id() -> String {
    format!("wh_{}", ulid::Ulid::new())
}

pub fn new_delivery_id() -> String {
    format!(
        "msg_{}",
        execution_id_to_string(&crate::ids::new_execution_id())
    )
}

/// The Standard Webhooks body of an execution's terminal event.
pub fn execution_payload(event: &str, exec: &ExecutionRecord) -> String {
    let parse = |text: &str| {
        serde_json::from_str::<serde_json::Value>(text).unwrap_or(serde_json::Value::Null)
    };
    let error = exec.error.as_ref().map(|e| {
        serde_json::json!({
            "error_type": e.error_type,
            "error_message": e.error_message,
            "error_data": e.error_data.as_deref().map(parse),
        })
    });
    serde_json::json!({
        "type": event,
        "timestamp": timestamp(exec.updated_ms),
        "data": {
            "execution_id": execution_id_to_string(&exec.id),
            "function": exec.function,
            "version": exec.version,
            "status": exec.status.as_str(),
            "error": error,
            "output": exec.output.as_deref().map(parse),
            "created_at": timestamp(exec.created_ms),
            "ended_at": exec.end_ms().map(timestamp),
            "redrive_count": exec.redrive_count,
        }
    })
    .to_string()
}

/// Whether `hook` wants `event` of an execution of `function`.
pub fn wants(hook: &WebhookRecord, event: &str, function: &str) -> bool {
    hook.enabled
        && hook.events.iter().any(|e| e == event)
        && hook
            .functions
            .as_ref()
            .is_none_or(|fs| fs.iter().any(|f| f == function))
}

/// A new pending delivery, due at `now_ms`.
pub fn new_delivery(
    hook: &WebhookRecord,
    event: &str,
    execution: Option<String>,
    payload: String,
    schedule_len: usize,
    now_ms: u64,
) -> DeliveryRecord {
    DeliveryRecord {
        id: new_delivery_id(),
        tenant: hook.tenant.clone(),
        webhook: hook.id.clone(),
        event: event.to_string(),
        execution,
        payload,
        status: DeliveryStatus::Pending,
        attempts: 0,
        max_attempts: schedule_len as u32 + 1,
        last_status_code: None,
        last_error: None,
        next_attempt_ms: Some(now_ms),
        delivered_ms: None,
        created_ms: now_ms,
    }
}

/// The outbox: add to `batch` (the one that records `exec`'s terminal status) a pending
/// delivery for every webhook of its tenant that wants its event. Returns how many.
pub fn outbox(
    db: &Store,
    exec: &ExecutionRecord,
    schedule_len: usize,
    now_ms: u64,
    batch: &mut Batch,
) -> db::Result<usize> {
    let Some(event) = event_of(exec.status) else {
        return Ok(0);
    };
    outbox_event(db, exec, event, schedule_len, now_ms, batch)
}

/// The outbox for `event` of `exec` (a terminal event, or `REDRIVEN_EVENT`), added to the
/// batch that records it. Returns how many deliveries it added.
pub fn outbox_event(
    db: &Store,
    exec: &ExecutionRecord,
    event: &str,
    schedule_len: usize,
    now_ms: u64,
    batch: &mut Batch,
) -> db::Result<usize> {
    let mut n = 0;
    for hook in db.webhooks(&exec.tenant)? {
        if !wants(&hook, event, &exec.function) {
            continue;
        }
        let payload = execution_payload(event, exec);
        let d = new_delivery(
            &hook,
            event,
            Some(execution_id_to_string(&exec.id)),
            payload,
            schedule_len,
            now_ms,
        );
        batch.put_delivery(&d);
        n += 1;
    }
    Ok(n)
}

/// The Slack incoming-webhook message for a Standard Webhooks body.
pub fn slack_message(payload: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(payload).unwrap_or_default();
    let d = &v["data"];
    let s = |x: &serde_json::Value| x.as_str().unwrap_or("?").to_string();
    let text = if v["type"] == TEST_EVENT {
        format!(
            "durable-host: a test event for webhook {}",
            s(&d["webhook_id"])
        )
    } else if v["type"] == REDRIVEN_EVENT {
        format!(
            ":repeat: durable-host: execution `{}` of function `{}` was redriven (version {}, redrive {})",
            s(&d["execution_id"]),
            s(&d["function"]),
            d["version"],
            d["redrive_count"],
        )
    } else {
        let status = s(&d["status"]);
        let icon = match status.as_str() {
            "succeeded" => ":white_check_mark:",
            "stopped" => ":octagonal_sign:",
            _ => ":x:",
        };
        let mut text = format!(
            "{icon} durable-host: execution `{}` of function `{}` (version {}) ended *{status}*",
            s(&d["execution_id"]),
            s(&d["function"]),
            d["version"],
        );
        if let Some(e) = d["error"].as_object() {
            text.push_str(&format!(
                "\n*{}*: {}",
                e.get("error_type").and_then(|t| t.as_str()).unwrap_or("?"),
                e.get("error_message")
                    .and_then(|t| t.as_str())
                    .unwrap_or("")
            ));
        }
        text
    };
    serde_json::json!({ "text": text }).to_string()
}

/// The body a webhook of `format` is sent for `payload`.
pub fn body_for(format: WebhookFormat, payload: &str) -> String {
    match format {
        WebhookFormat::Standard => payload.to_string(),
        WebhookFormat::Slack => slack_message(payload),
    }
}

/// `s` cut to at most `max` bytes, at a character boundary.
fn bounded(mut s: String, max: usize) -> String {
    if s.len() > max {
        let mut at = max;
        while !s.is_char_boundary(at) {
            at -= 1;
        }
        s.truncate(at);
    }
    s
}

/// What one attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptResult {
    /// A 2xx answer.
    Delivered(u16),
    /// 410 Gone: the receiver asks to be forgotten; the webhook is disabled.
    Gone,
    /// Any other answer.
    Status(u16),
    /// No answer: refused by the allowlist, a connection error, a timeout.
    Error(String),
}

/// A delivery after one attempt ended in `result` at `now_ms`: its new state, and whether
/// the webhook is to be disabled. Pure, so the schedule is tested without a network.
pub fn after_attempt(
    mut d: DeliveryRecord,
    result: &AttemptResult,
    schedule: &[Duration],
    now_ms: u64,
) -> (DeliveryRecord, bool) {
    d.attempts = d.attempts.saturating_add(1);
    d.next_attempt_ms = None;
    let mut disable = false;
    match result {
        AttemptResult::Delivered(code) => {
            d.status = DeliveryStatus::Delivered;
            d.last_status_code = Some(*code);
            d.last_error = None;
            d.delivered_ms = Some(now_ms);
            return (d, false);
        }
        AttemptResult::Gone => {
            d.last_status_code = Some(410);
            d.last_error = Some("410 Gone: the webhook is disabled".into());
            d.status = DeliveryStatus::Failed;
            disable = true;
            return (d, disable);
        }
        AttemptResult::Status(code) => {
            d.last_status_code = Some(*code);
            d.last_error = Some(format!("the receiver answered {code}"));
        }
        AttemptResult::Error(e) => {
            d.last_status_code = None;
            d.last_error = Some(bounded(e.clone(), MAX_ERROR_BYTES));
        }
    }
    if d.attempts >= d.max_attempts || schedule.is_empty() {
        d.status = DeliveryStatus::Failed;
    } else {
        let i = (d.attempts as usize - 1).min(schedule.len() - 1);
        d.status = DeliveryStatus::Pending;
        d.next_attempt_ms = Some(now_ms.saturating_add(schedule[i].as_millis() as u64));
    }
    (d, disable)
}

/// Of a webhook's deliveries (newest first), the finished ones to delete: those that ended
/// before `cutoff_ms`, and those beyond the newest `max` finished. Pending ones stay.
pub fn to_prune(deliveries: &[DeliveryRecord], cutoff_ms: u64, max: usize) -> Vec<&str> {
    let mut finished = 0;
    let mut out = Vec::new();
    for d in deliveries {
        if d.status == DeliveryStatus::Pending {
            continue;
        }
        finished += 1;
        let ended = d.delivered_ms.unwrap_or(d.created_ms);
        if finished > max || ended < cutoff_ms {
            out.push(d.id.as_str());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook() -> WebhookRecord {
        WebhookRecord {
            id: "wh_1".into(),
            tenant: "t".into(),
            url: "http://127.0.0.1:9/".into(),
            events: vec!["execution.failed".into()],
            functions: Some(vec!["f".into()]),
            format: WebhookFormat::Standard,
            secret: [7; 32],
            enabled: true,
            disabled_reason: None,
            created_ms: 0,
            updated_ms: 0,
        }
    }

    #[test]
    fn a_failing_delivery_follows_the_schedule_then_fails() {
        let schedule = parse_schedule("100ms,200ms,1s").unwrap();
        let mut d = new_delivery(&hook(), "execution.failed", None, "{}".into(), 3, 0);
        let mut dues = Vec::new();
        let mut now = 0;
        loop {
            let (next, disable) = after_attempt(d, &AttemptResult::Status(500), &schedule, now);
            assert!(!disable);
            d = next;
            match d.next_attempt_ms {
                Some(due) => {
                    dues.push(due - now);
                    now = due;
                }
                None => break,
            }
        }
        assert_eq!(dues, [100, 200, 1000]);
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 4));
        assert_eq!(d.last_status_code, Some(500));
    }

    #[test]
    fn two_hundreds_deliver_and_410_disables() {
        let d = new_delivery(&hook(), "execution.failed", None, "{}".into(), 7, 0);
        let (ok, _) = after_attempt(
            d.clone(),
            &AttemptResult::Delivered(204),
            &DEFAULT_SCHEDULE,
            9,
        );
        assert_eq!(
            (ok.status, ok.delivered_ms),
            (DeliveryStatus::Delivered, Some(9))
        );
        let (gone, disable) = after_attempt(d, &AttemptResult::Gone, &DEFAULT_SCHEDULE, 9);
        assert!(disable);
        assert_eq!(gone.status, DeliveryStatus::Failed);
    }

    #[test]
    fn pruning_keeps_pending_and_recent_deliveries() {
        let mk = |id: &str, status, created_ms| {
            let mut d = new_delivery(
                &hook(),
                "execution.failed",
                None,
                "{}".into(),
                7,
                created_ms,
            );
            d.id = id.into();
            d.status = status;
            d
        };
        use DeliveryStatus::*;
        // Newest first, as the store lists them.
        let ds = [
            mk("new", Delivered, 100),
            mk("pending-old", Pending, 1),
            mk("mid", Failed, 60),
            mk("old", Delivered, 10),
        ];
        assert_eq!(to_prune(&ds, 50, 10), ["old"]);
        assert_eq!(to_prune(&ds, 0, 1), ["mid", "old"]);
        assert!(to_prune(&ds, 0, 10).is_empty());
    }

    #[test]
    fn schedules_parse_with_units() {
        assert_eq!(
            parse_schedule("5s, 5m,2h,100ms").unwrap(),
            [
                Duration::from_secs(5),
                Duration::from_secs(300),
                Duration::from_secs(7200),
                Duration::from_millis(100)
            ]
        );
        assert!(parse_schedule("5").is_err());
        assert!(parse_schedule("5d").is_err());
        assert!(parse_schedule("").is_err());
    }

    #[test]
    fn webhooks_match_event_and_function() {
        let mut h = hook();
        assert!(wants(&h, "execution.failed", "f"));
        assert!(!wants(&h, "execution.failed", "g"));
        assert!(!wants(&h, "execution.succeeded", "f"));
        h.functions = None;
        assert!(wants(&h, "execution.failed", "g"));
        h.enabled = false;
        assert!(!wants(&h, "execution.failed", "g"));
    }

    #[test]
    fn slack_messages_name_function_execution_and_error() {
        let exec = ExecutionRecord {
            id: [1; 16],
            tenant: "t".into(),
            function: "signup".into(),
            version: 2,
            status: Status::Failed,
            input: "{}".into(),
            output: None,
            error: Some(crate::journal::ErrorObject::new(
                "ApiDown",
                "the mail API answered 500",
            )),
            created_ms: 1,
            updated_ms: 2,
            deadline_ms: None,
            idempotency_key: None,
            ended_ms: Some(2),
            redrive_count: 0,
            forked_from: None,
            expires_ms: None,
            trace: None,
            parent_execution_id: None,
        };
        let payload = execution_payload("execution.failed", &exec);
        let v: serde_json::Value = serde_json::from_str(&payload).unwrap();
        assert_eq!(v["type"], "execution.failed");
        assert_eq!(v["data"]["error"]["error_type"], "ApiDown");
        assert_eq!(v["data"]["redrive_count"], 0);
        let slack: serde_json::Value = serde_json::from_str(&slack_message(&payload)).unwrap();
        let text = slack["text"].as_str().unwrap();
        for part in [
            "signup",
            &execution_id_to_string(&exec.id),
            "failed",
            "ApiDown",
            "answered 500",
        ] {
            assert!(text.contains(part), "{text} names {part}");
        }
    }
}
