//! What creating an execution writes, whoever creates it (an invoke, a schedule's firing,
//! a fork): its record, its first history events and its timers, as one batch for the
//! caller to commit (alone, with an idempotency claim, or with records of its own), and the
//! timers to add in memory once that commit is durable.
//!
//! One place, so that every execution starts alike: `running` (or `suspended` until a
//! delayed start), with its execution deadline timer written in the same batch as the
//! record, which is what lets the deadline hold across crashes.

use crate::db::{Batch, ExecId, ExecutionRecord, Status, TimerKind, TimerRecord, TraceRef};
use crate::journal::{Event, EventKind, Journal};
use crate::timer::Timers;

use super::{DEADLINE_OP, START_OP};

/// What a new execution holds from before anything is written until it is written and
/// queued: a place in its function's backlog (`max_queued`; none for a delayed start, which
/// waits on its timer, not in the queue) and the tenant's quota reservation (an active
/// execution and its input's bytes). Every creator of a new execution takes it through
/// `admit` (an invoke, a schedule's firing, a chained invoke), after the tenant's rate token.
pub struct Admission<'a> {
    pub backlog: Option<crate::scheduler::Reserved>,
    pub reserved: crate::tenants::usage::Reservation<'a>,
}

/// Why `admit` refused: nothing was written or held.
#[derive(Debug)]
pub enum Refusal {
    Backlog(crate::scheduler::BacklogFull),
    Quota(crate::tenants::usage::Exceeded),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::Backlog(e) => write!(f, "{e}"),
            Refusal::Quota(e) => f.write_str(&e.0),
        }
    }
}

/// Admit a new execution of `function` (`queued`: it goes to the run queue now, not to a
/// delayed start): the backlog place, then the quota reservation.
#[allow(clippy::too_many_arguments)]
pub fn admit<'a>(
    tenants: &'a crate::tenants::Tenants,
    scheduler: &crate::scheduler::Scheduler,
    tenant: &str,
    function: &str,
    max_queued: Option<u32>,
    queued: bool,
    input_bytes: u64,
    quotas: &crate::tenants::Quotas,
) -> Result<Admission<'a>, Refusal> {
    let backlog = match queued {
        true => scheduler
            .reserve_backlog(tenant, function, max_queued)
            .map_err(Refusal::Backlog)?,
        false => None,
    };
    let reserved = tenants
        .usage
        .reserve_execution(tenant, input_bytes, quotas)
        .map_err(Refusal::Quota)?;
    Ok(Admission { backlog, reserved })
}

/// The sha256 an idempotency claim keeps of an execution's input: of its canonical JSON,
/// so the same value with other spacing or key order is the same input.
pub fn input_sha256(input: &str) -> String {
    let canonical = serde_json::from_str::<serde_json::Value>(input)
        .map(|v| v.to_string())
        .unwrap_or_else(|_| input.to_string());
    crate::registry::sha256_hex(canonical.as_bytes())
}

/// An execution to create.
pub struct NewExecution {
    pub id: ExecId,
    pub tenant: String,
    pub function: String,
    pub version: u32,
    /// JSON text.
    pub input: String,
    pub now_ms: u64,
    pub deadline_ms: u64,
    pub idempotency_key: Option<String>,
    /// A delayed start (`?delay=`, `?start_at=`): suspended on a start timer until then.
    pub start_ms: Option<u64>,
    /// A fork's copied history (starting with its `ExecutionStarted`) instead of a fresh
    /// `ExecutionStarted`, and the execution it was forked from.
    pub fork: Option<(ExecId, Vec<Event>)>,
    /// The trace it continues (`traceparent` on invoke).
    pub trace: Option<TraceRef>,
    /// The caller whose `invoke` creates it (`runtime::invoke`), if any.
    pub parent: Option<ExecId>,
}

/// The batch that creates it, and what to do in memory once the batch is durable.
pub struct Created {
    pub record: ExecutionRecord,
    pub batch: Batch,
    pub timers: PendingTimers,
}

/// The new execution's timers, for the in-memory index once its batch is durable.
pub struct PendingTimers {
    id: ExecId,
    timers: Vec<(u64, &'static str, TimerRecord)>,
}

impl NewExecution {
    pub fn write(self) -> Created {
        let (forked_from, events) = match self.fork {
            Some((from, events)) => (Some(from), events),
            None => {
                let kind = match self.start_ms {
                    None => EventKind::ExecutionStarted {
                        input: self.input.clone(),
                    },
                    Some(start_ms) => EventKind::ExecutionStartedAt {
                        input: self.input.clone(),
                        start_ms,
                    },
                };
                (
                    None,
                    vec![Journal::from_events(&[]).record(self.now_ms, kind)],
                )
            }
        };
        let record = ExecutionRecord {
            id: self.id,
            tenant: self.tenant.clone(),
            function: self.function,
            version: self.version,
            status: match self.start_ms {
                Some(_) => Status::Suspended,
                None => Status::Running,
            },
            input: self.input,
            output: None,
            error: None,
            created_ms: self.now_ms,
            updated_ms: self.now_ms,
            deadline_ms: Some(self.deadline_ms),
            idempotency_key: self.idempotency_key,
            ended_ms: None,
            redrive_count: 0,
            forked_from,
            expires_ms: None,
            trace: self.trace,
            parent_execution_id: self.parent,
        };
        let mut batch = Batch::new();
        batch.put_execution(&record);
        for e in &events {
            batch.put_event(&self.id, e);
        }
        let timer = |kind| TimerRecord {
            tenant: self.tenant.clone(),
            kind,
        };
        let mut timers = vec![(self.deadline_ms, DEADLINE_OP, timer(TimerKind::Deadline))];
        if let Some(start) = self.start_ms {
            timers.push((start, START_OP, timer(TimerKind::Wake)));
        }
        for (due, op, t) in &timers {
            batch.put_timer(*due, &self.id, op, t);
        }
        Created {
            timers: PendingTimers {
                id: record.id,
                timers,
            },
            record,
            batch,
        }
    }
}

impl PendingTimers {
    /// Once the batch is durable: the timers join the in-memory index.
    pub fn add(self, index: &Timers) {
        for (due, op, t) in self.timers {
            index.add(due, self.id, op.to_string(), t);
        }
    }
}
