//! Callback records from the outside: completion (succeed / fail), heartbeat and timeout.
//!
//! A resolution is a compare-and-swap of the callback record from `Pending`, fsynced before
//! the caller is answered, then a wake of the execution; the execution's next activation
//! journals it (`CallbackSucceeded` / `CallbackFailed` / `CallbackTimedOut`). Exactly one
//! resolution wins; every later one gets `AlreadyCompleted`.

use crate::db::{
    self, Batch, CallbackRecord, CallbackState, Durability, Store, TimerKind, TimerRecord,
};
use crate::host_api::callback_timer_op;
use crate::journal::{error_types, ErrorObject};
use crate::scheduler::{ExecKey, Scheduler};
use crate::timer::Timers;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("callback {0:?} not found")]
    NotFound(String),
    #[error("callback {0:?} was already completed or timed out")]
    AlreadyCompleted(String),
    #[error("the execution waiting on callback {0:?} has already finished")]
    ExecutionFinished(String),
    #[error(transparent)]
    Storage(#[from] db::Error),
}

/// What an external system (or a timer) says about a callback.
pub enum Completion {
    Succeeded(String),
    Failed(ErrorObject),
    TimedOut(ErrorObject),
}

pub struct Callbacks<'a> {
    pub db: &'a Store,
    pub scheduler: &'a Scheduler,
    pub timers: &'a Timers,
    /// Where a completion inside a fanned-out branch wakes that branch's instance.
    pub fan_outs: &'a crate::runtime::fanout::FanOuts,
}

impl Callbacks<'_> {
    /// The pending record of `callback_id`, owned by `tenant`.
    fn pending(&self, tenant: &str, callback_id: &str) -> Result<CallbackRecord, Error> {
        let rec = self
            .db
            .callback(callback_id)?
            .filter(|r| r.tenant == tenant)
            .ok_or_else(|| Error::NotFound(callback_id.to_string()))?;
        if rec.state != CallbackState::Pending {
            return Err(Error::AlreadyCompleted(callback_id.to_string()));
        }
        let exec = self.db.execution(&rec.tenant, &rec.execution)?;
        if exec.is_none_or(|e| e.status.is_terminal()) {
            return Err(Error::ExecutionFinished(callback_id.to_string()));
        }
        Ok(rec)
    }

    pub async fn complete(
        &self,
        tenant: &str,
        callback_id: &str,
        completion: Completion,
    ) -> Result<(), Error> {
        let rec = self.pending(tenant, callback_id)?;
        let mut new = rec.clone();
        new.state = match completion {
            Completion::Succeeded(v) => CallbackState::Succeeded(v),
            Completion::Failed(e) => CallbackState::Failed(e),
            Completion::TimedOut(e) => CallbackState::TimedOut(e),
        };
        if !self
            .db
            .swap_callback(callback_id, &rec, &new, Durability::Sync)
            .await?
        {
            return Err(Error::AlreadyCompleted(callback_id.to_string()));
        }
        let key = ExecKey::new(rec.tenant.as_str().into(), rec.execution);
        self.fan_outs.wake_op(self.scheduler, key, &rec.op_id);
        Ok(())
    }

    /// Push the heartbeat deadline out by the callback's heartbeat timeout.
    pub async fn heartbeat(
        &self,
        tenant: &str,
        callback_id: &str,
        now_ms: u64,
    ) -> Result<(), Error> {
        let rec = self.pending(tenant, callback_id)?;
        let Some(every) = rec.heartbeat_timeout_ms else {
            return Ok(()); // no heartbeat timeout: nothing to extend
        };
        let mut new = rec.clone();
        let due = now_ms.saturating_add(every);
        new.heartbeat_deadline_ms = Some(due);
        // Durable with the timer batch below.
        if !self
            .db
            .swap_callback(callback_id, &rec, &new, Durability::Lazy)
            .await?
        {
            return Err(Error::AlreadyCompleted(callback_id.to_string()));
        }
        let kind = TimerKind::HeartbeatTimeout {
            callback_id: callback_id.to_string(),
        };
        let op = callback_timer_op(&rec.op_id, &kind);
        let timer = TimerRecord {
            tenant: rec.tenant.clone(),
            kind,
        };
        let mut batch = Batch::new();
        batch.put_timer(due, &rec.execution, &op, &timer);
        if let Some(old) = rec.heartbeat_deadline_ms {
            batch.del_timer(old, &rec.execution, &op);
            self.timers.remove(old, rec.execution, &op);
        }
        self.db.commit(batch, Durability::Sync).await?;
        self.timers.add(due, rec.execution, op, timer);
        Ok(())
    }

    /// A callback timer came due: time the callback out if it is still pending and its
    /// deadline has really passed (a heartbeat may have moved it). Deletes the timer record.
    pub async fn timer_fired(
        &self,
        due_ms: u64,
        execution: db::ExecId,
        op: &str,
        record: &TimerRecord,
    ) -> Result<(), Error> {
        let (callback_id, heartbeat) = match &record.kind {
            TimerKind::CallbackTimeout { callback_id } => (callback_id, false),
            TimerKind::HeartbeatTimeout { callback_id } => (callback_id, true),
            TimerKind::Wake | TimerKind::Deadline | TimerKind::Redrive { .. } => return Ok(()),
        };
        if let Some(rec) = self.db.callback(callback_id)? {
            let deadline = if heartbeat {
                rec.heartbeat_deadline_ms
            } else {
                rec.timeout_deadline_ms
            };
            if rec.state == CallbackState::Pending && deadline == Some(due_ms) {
                let error = if heartbeat {
                    ErrorObject::new(
                        error_types::CALLBACK_HEARTBEAT_TIMEOUT,
                        format!(
                            "callback {callback_id} got no heartbeat for {} ms",
                            rec.heartbeat_timeout_ms.unwrap_or(0)
                        ),
                    )
                } else {
                    ErrorObject::new(
                        error_types::CALLBACK_TIMEOUT,
                        format!("callback {callback_id} was not completed in time"),
                    )
                };
                match self
                    .complete(&rec.tenant, callback_id, Completion::TimedOut(error))
                    .await
                {
                    Ok(()) | Err(Error::AlreadyCompleted(_)) | Err(Error::ExecutionFinished(_)) => {
                    }
                    Err(e) => return Err(e),
                }
            }
        }
        let mut batch = Batch::new();
        batch.del_timer(due_ms, &execution, op);
        self.db.commit(batch, Durability::Lazy).await?;
        Ok(())
    }
}
