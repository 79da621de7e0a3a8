//! Map and parallel on separate instances (DESIGN 11): the execution's own instance hands
//! an open batch to branch instances, each running one branch, at most `max_concurrency`
//! at once, and is unloaded until the batch is complete.
//!
//! How it goes:
//! 1. The execution's instance reaches `batch-start` of a batch that is not complete: the
//!    host journals the batch's `ContextStarted` (if new) and suspends the instance. When
//!    its activation has ended, a [`FanOut`] is registered for the execution and the first
//!    branches are queued, each as its own scheduler key (`ExecKey::branch`).
//! 2. A branch's instance replays the execution up to that `batch-start`, which answers it
//!    `run([i])`: the guest runs branch `i` only and calls `batch-finish`, which ends the
//!    instance (nothing is recorded for it: the branch's own events are its record). A wait,
//!    callback or retry inside the branch suspends that instance alone; its wake-up reaches
//!    it directly (`wake_op`).
//! 3. Each branch end updates the tallies; the completion policy decides whether more
//!    branches start. Once the batch is complete (or a branch ran into something that ends
//!    the execution, or a stop or the deadline came) and no branch instance is resident,
//!    the execution's instance is woken: it replays, its `batch-start` answers `run([])`,
//!    and its `batch-finish` records the batch's summary.
//!
//! Invariants:
//! - While a fan-out is registered, the execution's own instance never runs its guest:
//!   every event is written by a branch instance, numbered from the fan-out's one counter
//!   (`Counters`, held from the journal decision until its commit is applied), so the
//!   history's sequence numbers are unique and in commit order.
//! - The execution's instance runs again only when no branch instance is resident, and a
//!   branch instance starts only while its batch is incomplete, so the two never overlap.
//! - Nothing here is durable: after a restart the execution's instance replays to the
//!   open batch and fans out again; branches already finished are not run again, branches
//!   started and unfinished run again (from their own journal), the rest start in order.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use crate::db::ExecId;
use crate::journal::{child_id, in_scope, BatchSpec, BranchStatus, ErrorObject, Journal};
use crate::scheduler::{ExecKey, Scheduler};

/// The numbers an execution's next event and log line take while it is fanned out.
#[derive(Debug)]
pub struct Counters {
    pub event: u32,
    pub log: u32,
}

/// Where a branch is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Queued in the scheduler (or about to be).
    Queued,
    /// Its instance is running.
    Resident,
    /// Suspended inside the branch (a wait, callback, retry): its wake-up queues it.
    Parked,
}

#[derive(Debug, Default)]
struct State {
    /// Branches never started, in index order.
    pending: VecDeque<u32>,
    /// Branches started (or queued to start) whose branch has not ended.
    in_flight: BTreeMap<u32, Phase>,
    succeeded: u32,
    failed: u32,
    /// The completion policy is met: no branch starts any more.
    complete: bool,
    /// What ends the execution, met by a branch instance (a protocol violation, a trap
    /// outside any step): the execution's instance fails with it.
    failure: Option<ErrorObject>,
    /// A stop or the deadline: no branch starts any more.
    stopping: bool,
}

impl State {
    fn resident(&self) -> bool {
        self.in_flight.values().any(|p| *p == Phase::Resident)
    }

    fn over(&self) -> bool {
        self.complete || self.failure.is_some() || self.stopping
    }
}

/// A batch of one execution, running on branch instances.
pub struct FanOut {
    /// The execution's own instance.
    pub key: ExecKey,
    /// The batch's operation id.
    pub batch: String,
    pub spec: BatchSpec,
    pub counters: Arc<tokio::sync::Mutex<Counters>>,
    state: Mutex<State>,
}

/// How a branch's activation ended, as the fan-out counts it.
#[derive(Debug)]
pub enum BranchEnd {
    /// Its branch ended (it succeeded or failed).
    Done { succeeded: bool },
    /// Suspended inside its branch.
    Parked,
    /// Its instance found the batch complete before its branch started (and so skipped it).
    Skipped,
    /// It runs again at once (the scheduler queues it again).
    Again,
    /// A stop or the deadline reached it.
    Stopping,
    /// It met what ends the execution.
    Failure(ErrorObject),
}

/// What a branch's activation should do when it begins.
#[derive(Debug, PartialEq, Eq)]
pub enum Begin {
    Run,
    /// The batch needs it no more: it ends at once, writing nothing.
    Leave,
}

/// What the execution's own activation should do while a fan-out is registered.
#[derive(Debug)]
pub enum ParentTurn {
    /// Branches still run: it ends at once, writing nothing (the last one wakes it).
    Wait,
    /// The fan-out is over and unregistered: run (failing with the error, if one).
    Proceed(Option<ErrorObject>),
}

impl FanOut {
    /// The fan-out of batch `batch` as `journal` (the execution's, as its instance ended)
    /// leaves it: finished branches counted, started ones queued to run again.
    pub fn new(
        key: ExecKey,
        batch: String,
        spec: BatchSpec,
        journal: &Journal,
        next_log_seq: u32,
    ) -> Self {
        let outcome = journal.batch_outcome(&batch, &spec);
        let mut state = State::default();
        let mut seen = vec![false; spec.count as usize];
        for item in &outcome.items {
            seen[item.index as usize] = true;
            match item.status {
                BranchStatus::Succeeded(_) => state.succeeded += 1,
                BranchStatus::Failed(_) => state.failed += 1,
                BranchStatus::Started => {
                    state.in_flight.insert(item.index, Phase::Queued);
                }
            }
        }
        state.pending = (0..spec.count).filter(|i| !seen[*i as usize]).collect();
        state.complete = spec
            .policy
            .evaluate(spec.count, state.succeeded, state.failed)
            .is_some();
        Self {
            key,
            batch,
            spec,
            counters: Arc::new(tokio::sync::Mutex::new(Counters {
                event: journal.next_seq(),
                log: next_log_seq,
            })),
            state: Mutex::new(state),
        }
    }

    /// The operation id of branch `index`.
    pub fn branch_id(&self, index: u32) -> String {
        child_id(Some(&self.batch), index + 1)
    }

    /// Queue the branches that may run now: those queued and not yet in the scheduler,
    /// then new ones in index order while fewer than `max_concurrency` are in flight; or,
    /// once the batch is over and no branch is resident, the execution's own instance.
    fn drive(&self, state: &mut State, scheduler: &Scheduler, requeue: bool) {
        if state.over() {
            if !state.resident() {
                scheduler.wake(self.key.clone());
            }
            return;
        }
        let max = self.spec.max_concurrency.map_or(usize::MAX, |m| m as usize);
        let mut wake: Vec<u32> = if requeue {
            state
                .in_flight
                .iter()
                .filter(|(_, p)| **p == Phase::Queued)
                .map(|(i, _)| *i)
                .collect()
        } else {
            Vec::new()
        };
        while state.in_flight.len() < max {
            let Some(i) = state.pending.pop_front() else {
                break;
            };
            state.in_flight.insert(i, Phase::Queued);
            wake.push(i);
        }
        for i in wake {
            scheduler.wake(self.key.branch(i));
        }
    }

    /// Queue the first branches (after the execution's instance has ended).
    pub fn start(&self, scheduler: &Scheduler) {
        let mut state = self.state.lock().expect("fan-out");
        self.drive(&mut state, scheduler, true);
    }

    /// A branch's activation begins.
    pub fn begin(&self, index: u32) -> Begin {
        let mut state = self.state.lock().expect("fan-out");
        if state.over() || index >= self.spec.count {
            return Begin::Leave;
        }
        match state.in_flight.get_mut(&index) {
            Some(phase) => *phase = Phase::Resident,
            // Done, or never started: a stale wake.
            None => return Begin::Leave,
        }
        Begin::Run
    }

    /// A branch's activation ended.
    pub fn end(&self, index: u32, end: BranchEnd, scheduler: &Scheduler) {
        let mut state = self.state.lock().expect("fan-out");
        match end {
            BranchEnd::Done { succeeded } => {
                if state.in_flight.remove(&index).is_some() {
                    if succeeded {
                        state.succeeded += 1;
                    } else {
                        state.failed += 1;
                    }
                }
                let (count, ok, failed) = (self.spec.count, state.succeeded, state.failed);
                state.complete = self.spec.policy.evaluate(count, ok, failed).is_some();
            }
            BranchEnd::Parked => {
                state.in_flight.insert(index, Phase::Parked);
            }
            BranchEnd::Skipped => {
                state.in_flight.remove(&index);
                if !state.over() {
                    state.pending.push_front(index);
                }
            }
            BranchEnd::Again => {
                state.in_flight.insert(index, Phase::Queued);
            }
            BranchEnd::Stopping => {
                state.stopping = true;
                state.in_flight.insert(index, Phase::Parked);
            }
            BranchEnd::Failure(error) => {
                state.failure.get_or_insert(error);
                state.in_flight.insert(index, Phase::Parked);
            }
        }
        self.drive(&mut state, scheduler, false);
    }

    /// The branch that operation `op_id` runs in, queued for its wake-up; `None`: not a
    /// branch in flight (the execution's instance takes the wake).
    fn route(&self, op_id: &str) -> Option<u32> {
        if !in_scope(op_id, &self.batch) || op_id == self.batch {
            return None;
        }
        let rest = &op_id[self.batch.len() + 1..];
        let n: u32 = rest.split('.').next()?.parse().ok()?;
        let index = n.checked_sub(1)?;
        let mut state = self.state.lock().expect("fan-out");
        if state.over() {
            return None;
        }
        let phase = state.in_flight.get_mut(&index)?;
        if *phase == Phase::Parked {
            *phase = Phase::Queued;
        }
        Some(index)
    }

    /// The execution's own activation begins while this fan-out is registered.
    /// `stopping`: a stop was requested or the deadline passed.
    fn parent_turn(&self, stopping: bool, scheduler: &Scheduler) -> ParentTurn {
        let mut state = self.state.lock().expect("fan-out");
        state.stopping |= stopping;
        if state.over() {
            if state.resident() {
                return ParentTurn::Wait;
            }
            return ParentTurn::Proceed(state.failure.clone());
        }
        // A wake that no branch took (an invoke's end inside a branch, a stray timer):
        // every parked branch looks again at what it waits on.
        for phase in state.in_flight.values_mut() {
            if *phase == Phase::Parked {
                *phase = Phase::Queued;
            }
        }
        self.drive(&mut state, scheduler, true);
        ParentTurn::Wait
    }
}

/// The fan-outs in progress, by execution.
#[derive(Default)]
pub struct FanOuts(Mutex<HashMap<ExecId, Arc<FanOut>>>);

impl FanOuts {
    pub fn get(&self, id: &ExecId) -> Option<Arc<FanOut>> {
        self.0.lock().expect("fan-outs").get(id).cloned()
    }

    /// Register `fan` and queue its first branches.
    pub fn start(&self, fan: FanOut, scheduler: &Scheduler) {
        let fan = Arc::new(fan);
        self.0
            .lock()
            .expect("fan-outs")
            .insert(fan.key.id, fan.clone());
        fan.start(scheduler);
    }

    /// The execution's own activation begins: `None` if no fan-out is registered (run as
    /// usual); else what to do.
    pub fn parent_turn(
        &self,
        key: &ExecKey,
        stopping: bool,
        scheduler: &Scheduler,
    ) -> Option<ParentTurn> {
        let mut map = self.0.lock().expect("fan-outs");
        let fan = map.get(&key.id)?.clone();
        let turn = fan.parent_turn(stopping, scheduler);
        if matches!(turn, ParentTurn::Proceed(_)) {
            map.remove(&key.id);
        }
        Some(turn)
    }

    /// Drop the fan-out of an execution that ended.
    pub fn remove(&self, id: &ExecId) {
        self.0.lock().expect("fan-outs").remove(id);
    }

    /// Wake whichever instance of `key`'s execution operation `op_id` (a timer's, a
    /// callback's) runs in: its branch's, while that branch is in flight, else the
    /// execution's own.
    pub fn wake_op(&self, scheduler: &Scheduler, key: ExecKey, op_id: &str) {
        let branch = self.get(&key.id).and_then(|f| f.route(op_id));
        match branch {
            Some(i) => scheduler.wake(key.branch(i)),
            None => scheduler.wake(key),
        }
    }
}
