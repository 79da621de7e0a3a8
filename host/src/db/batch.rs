//! A `Batch` of writes, and record encoding.
//!
//! A batch is the ops one commit writes (puts and deletes of encoded records under their
//! `keys`, and component bytes) and the executions whose watchers are told once it is
//! applied. Records are one format byte (`FORMAT`) followed by postcard; `decode` refuses a
//! record it cannot read as `Error::Corrupt`, naming its key.
//!
//! Architecture invariant: a batch only collects writes; nothing here touches sled or the
//! log (the commit thread applies a batch as a whole, in one group).

use serde::{de::DeserializeOwned, Serialize};

use super::records::{
    ApiKeyRecord, CallbackRecord, DeliveryRecord, ExecutionRecord, ExpiryRecord, FunctionRecord,
    JobRecord, LogRecord, OutboxRecord, StopRecord, TenantRecord, TimerRecord, VersionRecord,
    WebhookRecord,
};
use super::records::{ScheduleDueRecord, ScheduleRecord};
use super::{keys, wal, Error, ExecId, Result};
use crate::journal::Event;

/// Record encoding: one format byte, then postcard. The byte lets a later release read
/// records written by this one.
const FORMAT: u8 = 1;

pub(super) fn encode<T: Serialize>(v: &T) -> Vec<u8> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_stdvec(v).expect("records always serialize"));
    out
}

pub(super) fn decode<T: DeserializeOwned>(key: &[u8], bytes: &[u8]) -> Result<T> {
    let corrupt = |reason: String| Error::Corrupt {
        key: String::from_utf8_lossy(key).into_owned(),
        reason,
    };
    match bytes.split_first() {
        Some((&FORMAT, rest)) => postcard::from_bytes(rest).map_err(|e| corrupt(e.to_string())),
        Some((v, _)) => Err(corrupt(format!("unknown format {v}"))),
        None => Err(corrupt("empty".into())),
    }
}

/// Writes applied together, atomically.
#[derive(Default)]
pub struct Batch {
    pub(super) ops: Vec<wal::Op>,
    /// Executions whose history or record this batch changes: their watchers are told.
    pub(super) touched: Vec<ExecId>,
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn is_empty(&self) -> bool {
        self.ops.is_empty()
    }

    pub(super) fn put<T: Serialize>(&mut self, key: Vec<u8>, v: &T) {
        self.ops.push(wal::Op::Put(key, encode(v)));
    }

    pub(super) fn del(&mut self, key: Vec<u8>) {
        self.ops.push(wal::Op::Del(key));
    }

    /// Component bytes under their sha256 (content-addressed, so writing twice is harmless).
    /// Store a component's bytes (taken, not copied: a component may be tens of MiB).
    pub fn put_component(&mut self, sha256: &str, bytes: Vec<u8>) {
        self.ops
            .push(wal::Op::PutComponent(sha256.as_bytes().to_vec(), bytes));
    }

    pub fn put_event(&mut self, id: &ExecId, e: &Event) {
        self.put(keys::history(id, e.seq), e);
        self.touch(id);
    }

    pub fn put_execution(&mut self, rec: &ExecutionRecord) {
        self.put(keys::execution(&rec.tenant, &rec.id), rec);
        self.touch(&rec.id);
    }

    pub(super) fn touch(&mut self, id: &ExecId) {
        if !self.touched.contains(id) {
            self.touched.push(*id);
        }
    }

    pub fn put_function(&mut self, tenant: &str, rec: &FunctionRecord) {
        self.put(keys::function(tenant, &rec.name), rec);
    }

    pub fn put_version(&mut self, tenant: &str, name: &str, rec: &VersionRecord) {
        self.put(keys::version(tenant, name, rec.version), rec);
    }

    pub fn put_timer(&mut self, due_ms: u64, id: &ExecId, op_id: &str, rec: &TimerRecord) {
        self.put(keys::timer(due_ms, id, op_id), rec);
    }

    pub fn del_timer(&mut self, due_ms: u64, id: &ExecId, op_id: &str) {
        self.del(keys::timer(due_ms, id, op_id));
    }

    pub fn put_callback(&mut self, callback_id: &str, rec: &CallbackRecord) {
        self.put(keys::callback(callback_id), rec);
    }

    /// A stop request: who asked, for the `ExecutionStopped` event.
    pub fn put_stop(&mut self, id: &ExecId, rec: &StopRecord) {
        self.put(keys::stop(id), rec);
    }

    pub fn del_stop(&mut self, id: &ExecId) {
        self.del(keys::stop(id));
    }

    /// Delete the finished execution `id` at `at_ms` (its retention).
    pub fn put_expiry(&mut self, at_ms: u64, id: &ExecId, rec: &ExpiryRecord) {
        self.put(keys::expiry(at_ms, id), rec);
    }

    /// Delete a finished execution's expiry entry (it runs again: `recovery::redrive`).
    pub fn del_expiry(&mut self, at_ms: u64, id: &ExecId) {
        self.del(keys::expiry(at_ms, id));
    }

    pub fn put_job(&mut self, rec: &JobRecord) {
        self.put(keys::job(&rec.tenant, &rec.id), rec);
    }

    pub fn put_job_item(&mut self, tenant: &str, job: &str, n: u32, id: &ExecId) {
        self.put(keys::job_item(tenant, job, n), id);
    }

    pub fn put_log(&mut self, id: &ExecId, seq: u32, rec: &LogRecord) {
        self.put(keys::log(id, seq), rec);
        self.ops
            .push(wal::Op::Put(keys::log_seen(id, &rec.position), Vec::new()));
    }

    pub fn put_tenant(&mut self, rec: &TenantRecord) {
        self.put(keys::tenant(&rec.name), rec);
    }

    pub fn del_tenant(&mut self, name: &str) {
        self.del(keys::tenant(name));
    }

    pub fn put_api_key(&mut self, rec: &ApiKeyRecord) {
        self.put(keys::api_key(&rec.key_id), rec);
    }

    pub fn del_api_key(&mut self, key_id: &str) {
        self.del(keys::api_key(key_id));
    }

    pub fn put_webhook(&mut self, rec: &WebhookRecord) {
        self.put(keys::webhook(&rec.tenant, &rec.id), rec);
    }

    pub fn del_webhook(&mut self, tenant: &str, id: &str) {
        self.del(keys::webhook(tenant, id));
    }

    /// A delivery, with its outbox entry when it is pending (`next_attempt_ms`).
    pub fn put_delivery(&mut self, rec: &DeliveryRecord) {
        self.put(keys::delivery(&rec.tenant, &rec.webhook, &rec.id), rec);
        if let (super::DeliveryStatus::Pending, Some(due)) = (rec.status, rec.next_attempt_ms) {
            let entry = OutboxRecord {
                tenant: rec.tenant.clone(),
                webhook: rec.webhook.clone(),
                delivery: rec.id.clone(),
            };
            self.put(keys::outbox(due, &rec.id), &entry);
        }
    }

    pub fn del_delivery(&mut self, tenant: &str, webhook: &str, id: &str) {
        self.del(keys::delivery(tenant, webhook, id));
    }

    pub fn del_outbox(&mut self, due_ms: u64, delivery: &str) {
        self.del(keys::outbox(due_ms, delivery));
    }

    /// A schedule, with its due entry moved from `stored_due` (where the stored version
    /// had it) to `rec.due_ms`.
    pub fn put_schedule(&mut self, rec: &ScheduleRecord, stored_due: Option<u64>) {
        self.put(keys::schedule(&rec.tenant, &rec.name), rec);
        if let Some(old) = stored_due.filter(|d| Some(*d) != rec.due_ms) {
            self.del(keys::schedule_due(old, &rec.tenant, &rec.name));
        }
        if let Some(due) = rec.due_ms {
            let entry = ScheduleDueRecord {
                tenant: rec.tenant.clone(),
                name: rec.name.clone(),
            };
            self.put(keys::schedule_due(due, &rec.tenant, &rec.name), &entry);
        }
    }

    /// Delete a schedule and its due entry (`rec` as stored).
    pub fn del_schedule(&mut self, rec: &ScheduleRecord) {
        self.del(keys::schedule(&rec.tenant, &rec.name));
        if let Some(due) = rec.due_ms {
            self.del(keys::schedule_due(due, &rec.tenant, &rec.name));
        }
    }

    /// A due entry alone (one its schedule does not name).
    pub fn del_schedule_due(&mut self, due_ms: u64, tenant: &str, name: &str) {
        self.del(keys::schedule_due(due_ms, tenant, name));
    }
}
