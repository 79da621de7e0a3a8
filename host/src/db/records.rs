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
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FunctionSettings {
    pub memory_limit_mb: Option<u64>,
    pub activation_timeout_secs: Option<u64>,
    pub execution_timeout_secs: Option<u64>,
    pub retention_secs: Option<u64>,
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

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
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
