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
use crate::journal::{
    child_id, in_scope, Activation, BatchSpec, BranchStatus, ErrorObject, Event, Journal,
};
use crate::scheduler::{ExecKey, Scheduler};

/// The numbers an execution's next event and log line take while it is fanned out.
#[derive(Debug)]
pub struct Counters {
    pub event: u32,
    pub log: u32,
}

impl Counters {
    /// `act` numbers what it records next after everything its siblings recorded.
    pub fn number(&self, act: &mut Activation) {
        act.journal_mut().set_next_seq(self.event);
    }

    /// Past what `act` recorded.
    pub fn advance(&mut self, act: &Activation) {
        self.event = self.event.max(act.journal().next_seq());
    }
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
    /// What a branch's instance replays: the history outside the batch's branches (read
    /// once, at the fan-out) and each branch's own events (kept as they are committed), so
    /// that a branch's activation costs its own branch, not every sibling's history.
    prefix: Vec<Event>,
    branches: Mutex<HashMap<u32, Vec<Event>>>,
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
        history: Vec<Event>,
        next_log_seq: u32,
    ) -> Self {
        let journal = Journal::from_events(&history);
        let outcome = journal.batch_outcome(&batch, &spec);
        let mut state = State::default();
        (state.succeeded, state.failed) = outcome.tally();
        let mut seen = vec![false; spec.count as usize];
        for item in &outcome.items {
            seen[item.index as usize] = true;
            if item.status == BranchStatus::Started {
                state.in_flight.insert(item.index, Phase::Queued);
            }
        }
        state.pending = (0..spec.count).filter(|i| !seen[*i as usize]).collect();
        state.complete = spec
            .policy
            .evaluate(spec.count, state.succeeded, state.failed)
            .is_some();
        let mut prefix = Vec::new();
        let mut branches: HashMap<u32, Vec<Event>> = HashMap::new();
        for e in history {
            match e.kind.op().and_then(|op| branch_of(&batch, &op.id)) {
                Some(i) => branches.entry(i).or_default().push(e),
                None => prefix.push(e),
            }
        }
        Self {
            key,
            batch,
            spec,
            counters: Arc::new(tokio::sync::Mutex::new(Counters {
                event: journal.next_seq(),
                log: next_log_seq,
            })),
            state: Mutex::new(state),
            prefix,
            branches: Mutex::new(branches),
        }
    }

    /// The history branch `index`'s instance replays: everything outside the batch's
    /// branches, then that branch's own events.
    pub fn history_of(&self, index: u32) -> Vec<Event> {
        let branches = self.branches.lock().expect("fan-out branches");
        let own = branches.get(&index).map_or(&[][..], Vec::as_slice);
        let mut h = Vec::with_capacity(self.prefix.len() + own.len());
        h.extend_from_slice(&self.prefix);
        h.extend_from_slice(own);
        h
    }

    /// Branch `index`'s instance committed `events` (all inside its branch).
    pub fn recorded(&self, index: u32, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        self.branches
            .lock()
            .expect("fan-out branches")
            .entry(index)
            .or_default()
            .extend_from_slice(events);
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

    /// The last `n` events `recorded` for branch `index` were not written after all.
    pub fn unrecord(&self, index: u32, n: usize) {
        if let Some(own) = self
            .branches
            .lock()
            .expect("fan-out branches")
            .get_mut(&index)
        {
            own.truncate(own.len().saturating_sub(n));
        }
    }

    /// The branch that operation `op_id` runs in, queued for its wake-up; `None`: not a
    /// branch in flight (the execution's instance takes the wake).
    fn route(&self, op_id: &str) -> Option<u32> {
        let index = branch_of(&self.batch, op_id)?;
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

/// The index of the branch of batch `batch` that operation `op_id` is or runs in.
fn branch_of(batch: &str, op_id: &str) -> Option<u32> {
    if !in_scope(op_id, batch) || op_id == batch {
        return None;
    }
    let rest = &op_id[batch.len() + 1..];
    let n: u32 = rest.split('.').next()?.parse().ok()?;
    n.checked_sub(1)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{BatchKind, CompletionPolicy, ContextKind, EventKind, OpRef};

    fn key() -> ExecKey {
        ExecKey::new("t".into(), [7; 16])
    }

    /// A fan-out of `count` branches at most `max` at a time, over a history that has just
    /// started the batch (or, with `done`, has those branches finished, succeeded).
    fn fan(count: u32, max: Option<u32>, policy: CompletionPolicy, done: &[u32]) -> FanOut {
        let mut j = Journal::from_events(&[]);
        let mut h = vec![j.record(0, EventKind::ExecutionStarted { input: "{}".into() })];
        let op = |id: String, parent: Option<&str>| OpRef {
            id,
            parent: parent.map(str::to_string),
            name: None,
        };
        h.push(j.record(
            0,
            EventKind::ContextStarted {
                op: op("1".into(), None),
                kind: ContextKind::Map,
            },
        ));
        for i in done {
            let branch = op(format!("1.{}", i + 1), Some("1"));
            let kind = ContextKind::MapIteration;
            h.push(j.record(
                0,
                EventKind::ContextStarted {
                    op: branch.clone(),
                    kind,
                },
            ));
            h.push(j.record(
                0,
                EventKind::ContextSucceeded {
                    op: branch,
                    kind,
                    result: "1".into(),
                },
            ));
        }
        let spec = BatchSpec {
            kind: BatchKind::Map,
            count,
            max_concurrency: max,
            policy,
        };
        FanOut::new(key(), "1".into(), spec, h, 1)
    }

    #[tokio::test]
    async fn branches_start_within_max_concurrency_and_the_parent_wakes_when_all_are_done() {
        let s = Scheduler::new();
        let f = fan(4, Some(2), CompletionPolicy::default(), &[]);
        f.start(&s);
        assert_eq!(s.queued(), 2, "two at a time");
        for i in 0..2 {
            assert_eq!(f.begin(i), Begin::Run);
        }
        // A branch that parks keeps its place: no third starts.
        f.end(0, BranchEnd::Parked, &s);
        assert_eq!(s.queued(), 2);
        // Its wake-up queues it (it is routed to its branch), a sibling's op is not its.
        assert_eq!(f.route("1.1.3"), Some(0));
        assert_eq!(f.route("1"), None);
        assert_eq!(f.route("2.1"), None);
        assert_eq!(f.route("1.4.1"), None, "branch 3 has not started");
        // One ends: the next starts.
        f.end(1, BranchEnd::Done { succeeded: true }, &s);
        assert_eq!(s.queued(), 3);
        for (i, begin) in [(0, Begin::Run), (2, Begin::Run), (1, Begin::Leave)] {
            assert_eq!(f.begin(i), begin, "branch {i}");
        }
        for i in [0, 2] {
            f.end(i, BranchEnd::Done { succeeded: true }, &s);
        }
        assert_eq!(f.begin(3), Begin::Run);
        f.end(3, BranchEnd::Done { succeeded: false }, &s);
        // Over: its own instance is queued, and no branch begins any more.
        assert_eq!(s.queued(), 4 + 1);
        assert_eq!(f.begin(3), Begin::Leave);
    }

    #[tokio::test]
    async fn early_completion_and_a_restart_start_only_what_is_needed() {
        let s = Scheduler::new();
        // After a restart two branches had finished: with min_successful 3 one more runs.
        let policy = CompletionPolicy {
            min_successful: Some(3),
            ..Default::default()
        };
        let f = fan(6, Some(1), policy, &[0, 1]);
        f.start(&s);
        assert_eq!(s.queued(), 1);
        assert_eq!(f.begin(2), Begin::Run);
        // Its instance found the batch complete and skipped the branch: it goes back.
        f.end(2, BranchEnd::Skipped, &s);
        assert_eq!(f.begin(2), Begin::Run);
        f.end(2, BranchEnd::Done { succeeded: true }, &s);
        // Complete: no fourth branch, the execution's instance is woken.
        assert_eq!(f.begin(3), Begin::Leave);
        let fans = FanOuts::default();
        fans.start(fan(2, None, CompletionPolicy::default(), &[0, 1]), &s);
        assert!(matches!(
            fans.parent_turn(&key(), false, &s),
            Some(ParentTurn::Proceed(None))
        ));
        assert!(fans.get(&key().id).is_none(), "unregistered once over");
    }

    #[tokio::test]
    async fn a_branch_that_meets_a_failure_or_a_stop_ends_the_fan_out_once_none_runs() {
        let s = Scheduler::new();
        let fans = FanOuts::default();
        fans.start(fan(3, None, CompletionPolicy::default(), &[]), &s);
        let f = fans.get(&key().id).unwrap();
        for i in 0..3 {
            assert_eq!(f.begin(i), Begin::Run);
        }
        let error = ErrorObject::new("Durable.NonDeterministic", "changed");
        f.end(1, BranchEnd::Failure(error.clone()), &s);
        // Two still run: the execution's instance waits.
        assert!(matches!(
            fans.parent_turn(&key(), false, &s),
            Some(ParentTurn::Wait)
        ));
        f.end(0, BranchEnd::Stopping, &s);
        f.end(2, BranchEnd::Parked, &s);
        match fans.parent_turn(&key(), false, &s) {
            Some(ParentTurn::Proceed(Some(e))) => assert_eq!(e, error),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn the_prefix_and_each_branch_s_own_events_are_what_a_branch_replays() {
        let f = fan(3, None, CompletionPolicy::default(), &[0, 2]);
        let ids = |h: Vec<Event>| -> Vec<Option<String>> {
            h.iter()
                .map(|e| e.kind.op().map(|o| o.id.clone()))
                .collect()
        };
        let prefix = vec![None, Some("1".to_string())];
        assert_eq!(ids(f.history_of(1)), prefix);
        let mut with_own = prefix.clone();
        with_own.extend([Some("1.3".to_string()), Some("1.3".to_string())]);
        assert_eq!(ids(f.history_of(2)), with_own);
        // What it commits is kept; what failed to be written is dropped again.
        let more = f.history_of(2)[2..].to_vec();
        f.recorded(1, &more);
        assert_eq!(f.history_of(1).len(), 4);
        f.unrecord(1, 1);
        assert_eq!(f.history_of(1).len(), 3);
    }
}
