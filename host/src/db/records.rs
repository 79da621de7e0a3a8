//! Stored records (other than history events, which `journal` owns).

use serde::{Deserialize, Serialize};

use super::ExecId;
use crate::journal::ErrorObject;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FunctionRecord {
    pub name: String,
    pub created_ms: u64,
    pub latest_version: u32,
    /// Deleted functions refuse new invocations; their versions stay for running executions.
    pub deleted: bool,
    pub settings: FunctionSettings,
}

/// A function's own limits; `None` takes the server's default (see `crate::settings`).
/// Fields added after the first four are read as absent from records written before them
/// (see the `Deserialize` below): append new ones at the end, each read with `later`.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FunctionSettings {
    pub memory_limit_mb: Option<u64>,
    pub activation_timeout_secs: Option<u64>,
    pub execution_timeout_secs: Option<u64>,
    pub retention_secs: Option<u64>,
    // Flow control (DESIGN 10; `None`: no limit).
    /// Activations of this function at once (per `concurrency_key` value when set).
    pub max_concurrency: Option<u32>,
    /// A JSON pointer into the input: `max_concurrency` applies per value found there.
    pub concurrency_key: Option<String>,
    /// New executions start at most at this rate.
    pub throttle: Option<Throttle>,
    /// Executions waiting in the run queue beyond which invoke answers 429 `backlog_full`.
    pub max_queued: Option<u32>,
    /// Redrive a failed execution automatically (`recovery`); `None`: never.
    pub redrive_policy: Option<RedrivePolicy>,
}

/// A function's automatic recovery: a failed execution is redriven `delay_secs` after it
/// failed, at most `max_redrives` times (counting every redrive it had).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedrivePolicy {
    pub max_redrives: u32,
    pub delay_secs: u64,
}

/// A start rate: `per_second` on average, up to `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct Throttle {
    pub per_second: f64,
    pub burst: u32,
}

/// By hand, for one reason: `FunctionSettings` ends its function record, so a record
/// written before a field existed ends where that field would begin. Postcard is not
/// self-describing (a missing trailing field is the end of the input), so every field after
/// the first four reads as `None` when the input ends before it (as `ExecutionRecord` does
/// for `ended_ms`).
impl<'de> Deserialize<'de> for FunctionSettings {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{SeqAccess, Visitor};
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = FunctionSettings;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("function settings")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<FunctionSettings, A::Error> {
                let first = |s: &mut A, n| -> Result<Option<u64>, A::Error> {
                    s.next_element()?
                        .ok_or_else(|| serde::de::Error::invalid_length(n, &self))
                };
                // A field added later: absent where an older record's input ends.
                fn later<'de, T: Deserialize<'de>, A: SeqAccess<'de>>(s: &mut A) -> Option<T> {
                    s.next_element().ok().flatten().flatten()
                }
                Ok(FunctionSettings {
                    memory_limit_mb: first(&mut s, 0)?,
                    activation_timeout_secs: first(&mut s, 1)?,
                    execution_timeout_secs: first(&mut s, 2)?,
                    retention_secs: first(&mut s, 3)?,
                    max_concurrency: later(&mut s),
                    concurrency_key: later(&mut s),
                    throttle: later(&mut s),
                    max_queued: later(&mut s),
                    redrive_policy: later(&mut s),
                })
            }
        }
        const FIELDS: &[&str] = &[
            "memory_limit_mb",
            "activation_timeout_secs",
            "execution_timeout_secs",
            "retention_secs",
            "max_concurrency",
            "concurrency_key",
            "throttle",
            "max_queued",
            "redrive_policy",
        ];
        d.deserialize_struct("FunctionSettings", FIELDS, Fields)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct VersionRecord {
    pub version: u32,
    pub sha256: String,
    pub size_bytes: u64,
    pub created_ms: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Status {
    /// Queued or resident.
    Running,
    /// Waiting on a timer, a callback or a retry delay; nothing resident.
    Suspended,
    Succeeded,
    Failed,
    TimedOut,
    Stopped,
}

impl Status {
    pub const ALL: [Status; 6] = [
        Status::Running,
        Status::Suspended,
        Status::Succeeded,
        Status::Failed,
        Status::TimedOut,
        Status::Stopped,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Suspended => "suspended",
            Status::Succeeded => "succeeded",
            Status::Failed => "failed",
            Status::TimedOut => "timed_out",
            Status::Stopped => "stopped",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        !matches!(self, Status::Running | Status::Suspended)
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ExecutionRecord {
    pub id: ExecId,
    pub tenant: String,
    pub function: String,
    pub version: u32,
    pub status: Status,
    /// JSON text.
    pub input: String,
    /// JSON text, once succeeded.
    pub output: Option<String>,
    pub error: Option<ErrorObject>,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// When the execution times out (`timed_out`), fixed at invocation.
    pub deadline_ms: Option<u64>,
    /// The `Idempotency-Key` it was invoked with: released when the execution is deleted.
    pub idempotency_key: Option<String>,
    /// When it reached its terminal status. `None` while it runs, and on records written
    /// before this field existed (their `updated_ms` is their end: `ended_or_updated_ms`).
    /// Last, so that such records still decode (see the `Deserialize` below).
    pub ended_ms: Option<u64>,
    /// How many times it was redriven (`recovery`); 0 on records written before.
    pub redrive_count: u32,
    /// The execution it was forked from (`recovery::fork`), if any.
    pub forked_from: Option<ExecId>,
    /// When its retention ends, while it is finished: the time of its expiry entry, which a
    /// redrive deletes. `None` on records written before (a redrive then looks for it).
    pub expires_ms: Option<u64>,
    /// The W3C trace it continues (`traceparent` on invoke), for its OTLP spans; `None`:
    /// its trace id is its own id (`otlp`).
    pub trace: Option<TraceRef>,
    /// The execution whose `invoke` started this one (DESIGN 11), if any: its end wakes
    /// that caller. `None` on records written before.
    pub parent_execution_id: Option<ExecId>,
}

/// A trace an execution continues: the `traceparent` it was invoked with.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TraceRef {
    pub trace_id: [u8; 16],
    pub parent_span_id: [u8; 8],
    /// The trace flags (bit 0: sampled).
    pub flags: u8,
}

impl ExecutionRecord {
    /// When a terminal execution ended: `ended_ms`, else (a record written before it
    /// existed, whose last write was its terminal status) `updated_ms`. `None` while it runs.
    pub fn end_ms(&self) -> Option<u64> {
        self.status
            .is_terminal()
            .then(|| self.ended_ms.unwrap_or(self.updated_ms))
    }
}

/// By hand, for one reason: a record written before `ended_ms` existed ends where that
/// field would begin. Postcard is not self-describing (a missing trailing field is the end
/// of the input, not an absent one), so the last field reads as `None` when the input ends
/// there; every other field is read as the derive would.
impl<'de> Deserialize<'de> for ExecutionRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, SeqAccess, Visitor};
        struct Fields;
        impl<'de> Visitor<'de> for Fields {
            type Value = ExecutionRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("an execution record")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut s: A) -> Result<ExecutionRecord, A::Error> {
                let mut n = 0;
                macro_rules! field {
                    () => {{
                        n += 1;
                        s.next_element()?
                            .ok_or_else(|| A::Error::invalid_length(n - 1, &self))?
                    }};
                }
                Ok(ExecutionRecord {
                    id: field!(),
                    tenant: field!(),
                    function: field!(),
                    version: field!(),
                    status: field!(),
                    input: field!(),
                    output: field!(),
                    error: field!(),
                    created_ms: field!(),
                    updated_ms: field!(),
                    deadline_ms: field!(),
                    idempotency_key: field!(),
                    // The end of an older record's input (or a format with no such field).
                    ended_ms: s.next_element().ok().flatten().flatten(),
                    // Fields added later: absent (the input ended) on older records.
                    redrive_count: s.next_element().ok().flatten().unwrap_or_default(),
                    forked_from: s.next_element().ok().flatten().flatten(),
                    expires_ms: s.next_element().ok().flatten().flatten(),
                    trace: s.next_element().ok().flatten().flatten(),
                    parent_execution_id: s.next_element().ok().flatten().flatten(),
                })
            }
        }
        const FIELDS: &[&str] = &[
            "id",
            "tenant",
            "function",
            "version",
            "status",
            "input",
            "output",
            "error",
            "created_ms",
            "updated_ms",
            "deadline_ms",
            "idempotency_key",
            "ended_ms",
            "redrive_count",
            "forked_from",
            "expires_ms",
            "trace",
            "parent_execution_id",
        ];
        d.deserialize_struct("ExecutionRecord", FIELDS, Fields)
    }
}

/// What a timer does when due.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum TimerKind {
    /// Wake the execution (a wait or a retry delay is over).
    Wake,
    /// Time out a pending callback.
    CallbackTimeout { callback_id: String },
    /// Time out a pending callback that got no heartbeat in time.
    HeartbeatTimeout { callback_id: String },
    /// The execution's timeout: wake it so that its owner records `timed_out`.
    Deadline,
    /// Redrive the failed execution (its function's `redrive_policy`), if it has had
    /// `after` redrives and still failed (a redrive meanwhile makes this one moot).
    Redrive { after: u32 },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TimerRecord {
    pub tenant: String,
    pub kind: TimerKind,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CallbackState {
    Pending,
    Succeeded(String),
    Failed(ErrorObject),
    TimedOut(ErrorObject),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallbackRecord {
    pub tenant: String,
    pub execution: ExecId,
    pub op_id: String,
    pub state: CallbackState,
    pub created_ms: u64,
    pub timeout_deadline_ms: Option<u64>,
    pub heartbeat_timeout_ms: Option<u64>,
    /// When the callback times out for lack of a heartbeat.
    pub heartbeat_deadline_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            LogLevel::Debug => "debug",
            LogLevel::Info => "info",
            LogLevel::Warn => "warn",
            LogLevel::Error => "error",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum LogStream {
    /// The replay-aware `log` import.
    Log,
    Stdout,
    Stderr,
}

impl LogStream {
    pub fn as_str(self) -> &'static str {
        match self {
            LogStream::Log => "log",
            LogStream::Stdout => "stdout",
            LogStream::Stderr => "stderr",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LogRecord {
    pub at_ms: u64,
    pub level: LogLevel,
    pub stream: LogStream,
    pub message: String,
    /// The operation the guest was in (its id), if any.
    pub op_id: Option<String>,
    /// The replay position this line was written at; a replay that writes at a position
    /// already seen is not recorded again.
    pub position: String,
}

/// What an `Idempotency-Key` was first used for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyRecord {
    pub execution: ExecId,
    /// sha256 of the input in canonical JSON (sorted keys, no spaces).
    pub input_sha256: String,
}

/// A finished execution due for deletion (its retention is over).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpiryRecord {
    pub tenant: String,
}

/// A user asked to stop an execution; its owner (the next activation) carries it out.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StopRecord {
    pub tenant: String,
    pub requested_ms: u64,
}

/// A tenant: its name is its key. `quotas` holds only what an admin set; the rest takes the
/// server's defaults (`crate::tenants::quota`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TenantRecord {
    pub name: String,
    pub created_ms: u64,
    pub quotas: crate::tenants::Quotas,
}

/// An API key, under its public `key_id`. Only the SHA-256 of the secret is stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKeyRecord {
    pub key_id: String,
    pub tenant: String,
    pub role: crate::tenants::Role,
    pub name: String,
    pub secret_sha256: [u8; 32],
    pub created_ms: u64,
    pub expires_ms: Option<u64>,
}

/// What a webhook sends: the Standard Webhooks body, or a Slack incoming-webhook message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum WebhookFormat {
    Standard,
    Slack,
}

/// A tenant's webhook (`crate::webhooks`). `secret` signs its deliveries: it is stored
/// because signing needs it, never logged, and shown only when the webhook is created.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookRecord {
    /// `wh_<ULID>`.
    pub id: String,
    pub tenant: String,
    pub url: String,
    /// Event types it receives (`execution.failed`, ...).
    pub events: Vec<String>,
    /// Only executions of these functions; `None`: every function.
    pub functions: Option<Vec<String>>,
    pub format: WebhookFormat,
    pub secret: [u8; 32],
    pub enabled: bool,
    /// Why it was disabled (its destination answered 410), if it was.
    pub disabled_reason: Option<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
}

impl std::fmt::Debug for WebhookRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRecord")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("url", &self.url)
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .finish_non_exhaustive()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    /// Waiting for its next attempt (an outbox entry names it).
    Pending,
    Delivered,
    /// Its last attempt failed, or its webhook was disabled.
    Failed,
}

impl DeliveryStatus {
    pub const ALL: [DeliveryStatus; 3] = [
        DeliveryStatus::Pending,
        DeliveryStatus::Delivered,
        DeliveryStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// One event for one webhook: written in the same batch as the event (the outbox), with an
/// `OutboxRecord` under its next attempt's time while it is pending.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryRecord {
    /// `msg_<ULID>`: the `webhook-id` header, the same on every attempt.
    pub id: String,
    pub tenant: String,
    pub webhook: String,
    pub event: String,
    pub execution: Option<String>,
    /// The Standard Webhooks body (JSON text), fixed when the event happened.
    pub payload: String,
    pub status: DeliveryStatus,
    pub attempts: u32,
    /// After this many attempts a failing delivery is `Failed`.
    pub max_attempts: u32,
    pub last_status_code: Option<u16>,
    pub last_error: Option<String>,
    pub next_attempt_ms: Option<u64>,
    pub delivered_ms: Option<u64>,
    pub created_ms: u64,
}

/// A pending delivery's place in the outbox, keyed by its next attempt's time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutboxRecord {
    pub tenant: String,
    pub webhook: String,
    pub delivery: String,
}

/// What a schedule does when a firing comes due while its previous firing's execution
/// has not ended (`crate::schedules`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Overlap {
    /// Do not fire (the firing is recorded as skipped).
    Skip,
    /// Fire anyway.
    Allow,
    /// Keep one firing and fire it once the running execution ends.
    BufferOne,
}

/// What a schedule does with the fire times it missed while the host was down.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CatchUp {
    /// Skip them: the next firing is the next one in the future.
    None,
    /// Fire the most recent one, once.
    Latest,
    /// Fire each (at most `schedules::MAX_CATCH_UP`, the most recent ones).
    All,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum FiringOutcome {
    /// An execution was created.
    Fired,
    /// Not fired: the overlap policy, or missed firings the catch-up policy skips.
    Skipped,
    /// Refused: the tenant's rate or quotas, or the function is gone.
    Refused,
}

/// One firing of a schedule (the record keeps the latest `schedules::MAX_FIRINGS`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FiringRecord {
    /// The fire time (cron time, or the time of a manual trigger).
    pub fire_ms: u64,
    /// When the host handled it.
    pub at_ms: u64,
    pub outcome: FiringOutcome,
    pub execution: Option<ExecId>,
    /// `POST /v1/schedules/{name}/trigger`.
    pub manual: bool,
    /// Fired (or skipped) by the catch-up policy: the host was down at its fire time.
    pub missed: bool,
    /// Why it was skipped or refused.
    pub note: Option<String>,
}

/// A tenant's schedule (`crate::schedules`), under its name. While it is not paused and
/// will fire again, a due entry (`keys::schedule_due`) under `due_ms` names it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleRecord {
    pub tenant: String,
    pub name: String,
    pub function: String,
    pub cron: String,
    /// An IANA time zone name (`UTC` by default).
    pub timezone: String,
    /// JSON text: each firing's input.
    pub input: String,
    pub overlap: Overlap,
    pub catch_up: CatchUp,
    pub paused: bool,
    pub created_ms: u64,
    pub updated_ms: u64,
    /// The earliest cron fire time not handled yet; `None` while paused, or when the cron
    /// never fires again.
    pub next_fire_ms: Option<u64>,
    /// When the service looks at this schedule next (its due entry's time).
    pub due_ms: Option<u64>,
    /// `BufferOne`: a fire time held until the running execution ends.
    pub buffered_ms: Option<u64>,
    /// The execution of the latest firing (the overlap policy looks at it).
    pub last_execution: Option<ExecId>,
    /// The latest refusal, and when it happened.
    pub last_error: Option<String>,
    pub last_error_ms: Option<u64>,
    /// The latest firings, oldest first.
    pub firings: Vec<FiringRecord>,
}

/// A schedule's due entry: which schedule to look at.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ScheduleDueRecord {
    pub tenant: String,
    pub name: String,
}

/// A bulk redrive (`recovery::jobs`): the executions it matched are stored beside it, one
/// key each, in order; `next` is the position of the first not yet handled. Each redrive
/// writes the record with `next` moved on in its own batch, so that a crash neither skips
/// nor repeats one.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JobRecord {
    /// `job_<ULID>`.
    pub id: String,
    pub tenant: String,
    /// What it matched (the request, for the view).
    pub function: String,
    pub status_filter: Status,
    pub error_type: Option<String>,
    pub ended_after_ms: Option<u64>,
    pub ended_before_ms: Option<u64>,
    /// `pinned`, `latest` or a version number (`recovery::Target`'s text).
    pub version: String,
    /// The API key that created it.
    pub key_id: Option<String>,
    /// Redrives per second at most (`None`: as fast as they go).
    pub per_second: Option<f64>,
    pub state: JobState,
    pub matched: u32,
    pub next: u32,
    pub done: u32,
    pub failed: u32,
    /// The first failures: (execution id, why), at most `recovery::MAX_JOB_ERRORS`.
    pub errors: Vec<(String, String)>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub finished_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JobState {
    Running,
    Succeeded,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An execution record as stored before `ended_ms` existed.
    #[derive(Serialize)]
    struct Before {
        id: ExecId,
        tenant: String,
        function: String,
        version: u32,
        status: Status,
        input: String,
        output: Option<String>,
        error: Option<ErrorObject>,
        created_ms: u64,
        updated_ms: u64,
        deadline_ms: Option<u64>,
        idempotency_key: Option<String>,
    }

    fn record(ended_ms: Option<u64>) -> ExecutionRecord {
        ExecutionRecord {
            id: [7; 16],
            tenant: "default".into(),
            function: "hello".into(),
            version: 3,
            status: Status::Failed,
            input: "{}".into(),
            output: None,
            error: Some(ErrorObject::new("E", "m")),
            created_ms: 10,
            updated_ms: 20,
            deadline_ms: Some(30),
            idempotency_key: Some("k".into()),
            ended_ms,
            redrive_count: 0,
            forked_from: None,
            expires_ms: None,
            trace: None,
            parent_execution_id: None,
        }
    }

    /// Function settings as stored before the flow-control fields existed, at the end of
    /// their function record.
    #[derive(Serialize)]
    struct SettingsBefore {
        memory_limit_mb: Option<u64>,
        activation_timeout_secs: Option<u64>,
        execution_timeout_secs: Option<u64>,
        retention_secs: Option<u64>,
    }

    #[derive(Serialize)]
    struct FunctionBefore {
        name: String,
        created_ms: u64,
        latest_version: u32,
        deleted: bool,
        settings: SettingsBefore,
    }

    #[test]
    fn function_settings_round_trip_and_older_records_read_without_flow_control() {
        let full = FunctionRecord {
            name: "f".into(),
            created_ms: 1,
            latest_version: 2,
            deleted: false,
            settings: FunctionSettings {
                memory_limit_mb: Some(64),
                max_concurrency: Some(2),
                concurrency_key: Some("/user_id".into()),
                throttle: Some(Throttle {
                    per_second: 2.5,
                    burst: 3,
                }),
                max_queued: Some(100),
                ..Default::default()
            },
        };
        let bytes = postcard::to_stdvec(&full).unwrap();
        assert_eq!(
            postcard::from_bytes::<FunctionRecord>(&bytes).unwrap(),
            full
        );
        let before = FunctionBefore {
            name: "f".into(),
            created_ms: 1,
            latest_version: 2,
            deleted: false,
            settings: SettingsBefore {
                memory_limit_mb: Some(64),
                activation_timeout_secs: None,
                execution_timeout_secs: Some(9),
                retention_secs: None,
            },
        };
        let old =
            postcard::from_bytes::<FunctionRecord>(&postcard::to_stdvec(&before).unwrap()).unwrap();
        assert_eq!(
            old.settings,
            FunctionSettings {
                memory_limit_mb: Some(64),
                execution_timeout_secs: Some(9),
                ..Default::default()
            }
        );
    }

    #[test]
    fn an_execution_record_round_trips_with_and_without_its_end() {
        for ended in [None, Some(0), Some(25), Some(u64::MAX)] {
            let rec = record(ended);
            let bytes = postcard::to_stdvec(&rec).unwrap();
            assert_eq!(
                postcard::from_bytes::<ExecutionRecord>(&bytes).unwrap(),
                rec
            );
        }
    }

    #[test]
    fn an_execution_record_keeps_its_parent_and_one_written_before_parents_reads_without() {
        let mut rec = record(Some(25));
        rec.parent_execution_id = Some([9; 16]);
        let bytes = postcard::to_stdvec(&rec).unwrap();
        assert_eq!(
            postcard::from_bytes::<ExecutionRecord>(&bytes).unwrap(),
            rec
        );
        // Written before the field existed: the input ends after `expires_ms` (postcard
        // writes the `None` as the one last byte).
        rec.parent_execution_id = None;
        let bytes = postcard::to_stdvec(&rec).unwrap();
        let older = &bytes[..bytes.len() - 1];
        assert_eq!(postcard::from_bytes::<ExecutionRecord>(older).unwrap(), rec);
    }

    #[test]
    fn an_execution_record_written_before_ended_ms_reads_as_ended_at_its_last_update() {
        let r = record(None);
        let before = Before {
            id: r.id,
            tenant: r.tenant.clone(),
            function: r.function.clone(),
            version: r.version,
            status: r.status,
            input: r.input.clone(),
            output: r.output.clone(),
            error: r.error.clone(),
            created_ms: r.created_ms,
            updated_ms: r.updated_ms,
            deadline_ms: r.deadline_ms,
            idempotency_key: r.idempotency_key.clone(),
        };
        let bytes = postcard::to_stdvec(&before).unwrap();
        let read = postcard::from_bytes::<ExecutionRecord>(&bytes).unwrap();
        assert_eq!(read, r);
        assert_eq!(read.end_ms(), Some(20));
        // A record cut short elsewhere is still refused.
        assert!(postcard::from_bytes::<ExecutionRecord>(&bytes[..bytes.len() - 3]).is_err());
    }

    #[test]
    fn only_a_terminal_execution_has_an_end() {
        let mut r = record(Some(25));
        assert_eq!(r.end_ms(), Some(25));
        r.status = Status::Suspended;
        assert_eq!(r.end_ms(), None);
    }

    /// The variant index postcard writes first, as a varint (every index here is < 128).
    fn tag<T: Serialize>(value: &T) -> u8 {
        let bytes = postcard::to_stdvec(value).unwrap();
        assert!(bytes[0] < 0x80, "a one-byte variant index");
        bytes[0]
    }

    /// Postcard stores an enum as its variant's position, so the order of every stored
    /// enum is part of the format: a variant inserted in the middle, or two swapped, would
    /// make the host misread every record written before. New variants go last; this
    /// table pins each position (append a row with a new variant, never renumber).
    #[test]
    fn stored_enum_variants_keep_their_positions() {
        use crate::journal::{ContextKind, ErrorObject, EventKind, OpRef, RedriveTrigger};
        let op = || OpRef {
            id: "1".into(),
            parent: None,
            name: None,
        };
        let err = || ErrorObject {
            error_type: "E".into(),
            error_message: "m".into(),
            error_data: None,
        };
        let events: Vec<(u8, EventKind)> = vec![
            (0, EventKind::ExecutionStarted { input: "{}".into() }),
            (
                1,
                EventKind::StepStarted {
                    op: op(),
                    attempt: 1,
                },
            ),
            (
                2,
                EventKind::StepSucceeded {
                    op: op(),
                    result: "1".into(),
                    attempt: 1,
                },
            ),
            (
                3,
                EventKind::StepFailed {
                    op: op(),
                    error: err(),
                    attempt: 1,
                    next_attempt_delay_ms: None,
                },
            ),
            (
                4,
                EventKind::WaitStarted {
                    op: op(),
                    duration_ms: 1,
                    scheduled_end_ms: 1,
                },
            ),
            (
                5,
                EventKind::WaitSucceeded {
                    op: op(),
                    duration_ms: 1,
                },
            ),
            (
                6,
                EventKind::CallbackStarted {
                    op: op(),
                    callback_id: "c".into(),
                    timeout_ms: None,
                    heartbeat_timeout_ms: None,
                },
            ),
            (
                7,
                EventKind::CallbackSucceeded {
                    op: op(),
                    result: "1".into(),
                },
            ),
            (
                8,
                EventKind::CallbackFailed {
                    op: op(),
                    error: err(),
                },
            ),
            (
                9,
                EventKind::CallbackTimedOut {
                    op: op(),
                    error: err(),
                },
            ),
            (
                10,
                EventKind::ContextStarted {
                    op: op(),
                    kind: ContextKind::RunInChildContext,
                },
            ),
            (
                11,
                EventKind::ContextSucceeded {
                    op: op(),
                    kind: ContextKind::RunInChildContext,
                    result: "1".into(),
                },
            ),
            (
                12,
                EventKind::ContextFailed {
                    op: op(),
                    kind: ContextKind::RunInChildContext,
                    error: err(),
                },
            ),
            (
                13,
                EventKind::InvocationCompleted {
                    started_ms: 1,
                    error: None,
                },
            ),
            (14, EventKind::ExecutionSucceeded { output: "1".into() }),
            (15, EventKind::ExecutionFailed { error: err() }),
            (16, EventKind::ExecutionTimedOut { error: err() }),
            (17, EventKind::ExecutionStopped { error: err() }),
            (
                18,
                EventKind::ExecutionStartedAt {
                    input: "{}".into(),
                    start_ms: 1,
                },
            ),
            (
                19,
                EventKind::ExecutionRedriven {
                    key_id: None,
                    trigger: RedriveTrigger::Request,
                    from_version: 1,
                    to_version: 1,
                    redrive_count: 1,
                },
            ),
            (
                20,
                EventKind::ConditionStarted {
                    op: op(),
                    attempt: 1,
                },
            ),
            (
                21,
                EventKind::ConditionSucceeded {
                    op: op(),
                    state: "1".into(),
                    attempt: 1,
                    next_attempt_delay_ms: None,
                },
            ),
            (
                22,
                EventKind::ConditionFailed {
                    op: op(),
                    error: err(),
                    attempt: 1,
                },
            ),
            (
                23,
                EventKind::ChainedInvokeStarted {
                    op: op(),
                    function: "f".into(),
                    input: "1".into(),
                    version: Some(1),
                    callee: Some("c".into()),
                    tenant_id: None,
                },
            ),
            (
                24,
                EventKind::ChainedInvokeSucceeded {
                    op: op(),
                    result: "1".into(),
                },
            ),
            (
                25,
                EventKind::ChainedInvokeFailed {
                    op: op(),
                    error: err(),
                },
            ),
            (
                26,
                EventKind::ChainedInvokeTimedOut {
                    op: op(),
                    error: err(),
                },
            ),
            (
                27,
                EventKind::ChainedInvokeStopped {
                    op: op(),
                    error: err(),
                },
            ),
            (
                28,
                EventKind::BatchStarted {
                    op: op(),
                    kind: ContextKind::Map,
                    count: 2,
                    max_concurrency: None,
                    policy: Default::default(),
                },
            ),
        ];
        for (want, event) in &events {
            assert_eq!(tag(event), *want, "{event:?}");
        }

        let cases: Vec<(u8, u8, &str)> = vec![
            (
                tag(&ContextKind::RunInChildContext),
                0,
                "ContextKind::RunInChildContext",
            ),
            (
                tag(&ContextKind::WaitForCallback),
                1,
                "ContextKind::WaitForCallback",
            ),
            (tag(&ContextKind::Map), 2, "ContextKind::Map"),
            (
                tag(&ContextKind::MapIteration),
                3,
                "ContextKind::MapIteration",
            ),
            (tag(&ContextKind::Parallel), 4, "ContextKind::Parallel"),
            (
                tag(&ContextKind::ParallelBranch),
                5,
                "ContextKind::ParallelBranch",
            ),
            (tag(&RedriveTrigger::Request), 0, "RedriveTrigger::Request"),
            (
                tag(&RedriveTrigger::Job("j".into())),
                1,
                "RedriveTrigger::Job",
            ),
            (tag(&RedriveTrigger::Policy), 2, "RedriveTrigger::Policy"),
            (tag(&TimerKind::Wake), 0, "TimerKind::Wake"),
            (
                tag(&TimerKind::CallbackTimeout {
                    callback_id: "c".into(),
                }),
                1,
                "TimerKind::CallbackTimeout",
            ),
            (
                tag(&TimerKind::HeartbeatTimeout {
                    callback_id: "c".into(),
                }),
                2,
                "TimerKind::HeartbeatTimeout",
            ),
            (tag(&TimerKind::Deadline), 3, "TimerKind::Deadline"),
            (
                tag(&TimerKind::Redrive { after: 1 }),
                4,
                "TimerKind::Redrive",
            ),
            (tag(&Status::Running), 0, "Status::Running"),
            (tag(&Status::Suspended), 1, "Status::Suspended"),
            (tag(&Status::Succeeded), 2, "Status::Succeeded"),
            (tag(&Status::Failed), 3, "Status::Failed"),
            (tag(&Status::TimedOut), 4, "Status::TimedOut"),
            (tag(&Status::Stopped), 5, "Status::Stopped"),
            (tag(&CallbackState::Pending), 0, "CallbackState::Pending"),
            (
                tag(&CallbackState::Succeeded("1".into())),
                1,
                "CallbackState::Succeeded",
            ),
            (
                tag(&CallbackState::Failed(err())),
                2,
                "CallbackState::Failed",
            ),
            (
                tag(&CallbackState::TimedOut(err())),
                3,
                "CallbackState::TimedOut",
            ),
            (tag(&LogLevel::Debug), 0, "LogLevel::Debug"),
            (tag(&LogLevel::Info), 1, "LogLevel::Info"),
            (tag(&LogLevel::Warn), 2, "LogLevel::Warn"),
            (tag(&LogLevel::Error), 3, "LogLevel::Error"),
            (tag(&LogStream::Log), 0, "LogStream::Log"),
            (tag(&LogStream::Stdout), 1, "LogStream::Stdout"),
            (tag(&LogStream::Stderr), 2, "LogStream::Stderr"),
            (tag(&WebhookFormat::Standard), 0, "WebhookFormat::Standard"),
            (tag(&WebhookFormat::Slack), 1, "WebhookFormat::Slack"),
            (tag(&DeliveryStatus::Pending), 0, "DeliveryStatus::Pending"),
            (
                tag(&DeliveryStatus::Delivered),
                1,
                "DeliveryStatus::Delivered",
            ),
            (tag(&DeliveryStatus::Failed), 2, "DeliveryStatus::Failed"),
            (tag(&Overlap::Skip), 0, "Overlap::Skip"),
            (tag(&Overlap::Allow), 1, "Overlap::Allow"),
            (tag(&Overlap::BufferOne), 2, "Overlap::BufferOne"),
            (tag(&CatchUp::None), 0, "CatchUp::None"),
            (tag(&CatchUp::Latest), 1, "CatchUp::Latest"),
            (tag(&CatchUp::All), 2, "CatchUp::All"),
            (tag(&FiringOutcome::Fired), 0, "FiringOutcome::Fired"),
            (tag(&FiringOutcome::Skipped), 1, "FiringOutcome::Skipped"),
            (tag(&FiringOutcome::Refused), 2, "FiringOutcome::Refused"),
            (tag(&JobState::Running), 0, "JobState::Running"),
            (tag(&JobState::Succeeded), 1, "JobState::Succeeded"),
        ];
        for (got, want, name) in cases {
            assert_eq!(got, want, "{name} moved");
        }
    }
}
