//! Map and parallel ("batches"): the completion policy, the outcome of a batch and the
//! replay decisions of `batch-start`, `branch-start` and `batch-finish`. Pure like the rest
//! of the crate, so the host and a local test runner decide the same way.
//!
//! A batch is a context (`ContextStarted` / `ContextSucceeded`, sub type `Map` or
//! `Parallel`); branch `i` is a child context of it with the fixed id `<batch>.<i + 1>`
//! (sub type `MapIteration` / `ParallelBranch`), so a branch's id does not depend on the
//! order branches start in, and branches run on separate instances. Operations inside a
//! branch have the branch as parent. The batch's options (count, concurrency, policy) come
//! from the guest on every run and are journaled in its start (`BatchStarted`, history
//! `ContextStarted`): a replay that passes other ones is non-deterministic. The outcome is
//! rebuilt from the branches' own events, and the batch's `ContextSucceeded` carries a
//! summary (counts and completion reason, no results: they are in the branches' events).

use std::collections::HashMap;

use crate::{
    child_id, ContextKind, Effects, ErrorObject, EventKind, Limits, OpKind, OpRef, OpState, Reply,
    Violation,
};

/// Which batch operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BatchKind {
    Map,
    Parallel,
}

impl BatchKind {
    /// The sub type of the batch's own context.
    pub fn context(self) -> ContextKind {
        match self {
            BatchKind::Map => ContextKind::Map,
            BatchKind::Parallel => ContextKind::Parallel,
        }
    }

    /// The sub type of its branches.
    pub fn branch(self) -> ContextKind {
        match self {
            BatchKind::Map => ContextKind::MapIteration,
            BatchKind::Parallel => ContextKind::ParallelBranch,
        }
    }
}

/// When a batch completes before every branch ran (AWS `CompletionConfig`). All `None`:
/// every branch runs and failures are tolerated.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CompletionPolicy {
    pub min_successful: Option<u32>,
    pub tolerated_failure_count: Option<u32>,
    /// 0 to 100.
    pub tolerated_failure_percentage: Option<f64>,
}

/// Why a batch completed (AWS `completionReason`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompletionReason {
    AllCompleted,
    MinSuccessfulReached,
    FailureToleranceExceeded,
}

impl CompletionReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CompletionReason::AllCompleted => "ALL_COMPLETED",
            CompletionReason::MinSuccessfulReached => "MIN_SUCCESSFUL_REACHED",
            CompletionReason::FailureToleranceExceeded => "FAILURE_TOLERANCE_EXCEEDED",
        }
    }
}

impl CompletionPolicy {
    /// Whether the failures exceed the tolerance (never without a tolerance).
    fn tolerance_exceeded(&self, count: u32, failed: u32) -> bool {
        let by_count = self.tolerated_failure_count.is_some_and(|t| failed > t);
        let by_share = self
            .tolerated_failure_percentage
            .is_some_and(|p| count > 0 && f64::from(failed) * 100.0 / f64::from(count) > p);
        by_count || by_share
    }

    /// Whether a batch of `count` branches of which `succeeded` succeeded and `failed`
    /// failed is complete, and why; `None`: start more branches. As AWS: a tolerance
    /// exceeded first, then every branch done, then enough successes.
    pub fn evaluate(&self, count: u32, succeeded: u32, failed: u32) -> Option<CompletionReason> {
        if failed > 0 && self.tolerance_exceeded(count, failed) {
            Some(CompletionReason::FailureToleranceExceeded)
        } else if succeeded + failed >= count {
            Some(CompletionReason::AllCompleted)
        } else if self.min_successful.is_some_and(|m| succeeded >= m) {
            Some(CompletionReason::MinSuccessfulReached)
        } else {
            None
        }
    }

    /// The reason a completed batch gives: what `evaluate` says, or, for a batch that
    /// finished with branches never completed (none of the rules met), all completed.
    pub fn reason(&self, count: u32, succeeded: u32, failed: u32) -> CompletionReason {
        self.evaluate(count, succeeded, failed)
            .unwrap_or(CompletionReason::AllCompleted)
    }
}

/// What the guest asks for: a batch of `count` branches.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchSpec {
    pub kind: BatchKind,
    pub count: u32,
    pub max_concurrency: Option<u32>,
    pub policy: CompletionPolicy,
}

impl BatchSpec {
    fn check(&self) -> Result<(), Violation> {
        if self.max_concurrency == Some(0) {
            return Err(Violation::Protocol(
                "batch-start: max-concurrency must be at least 1".into(),
            ));
        }
        if let Some(p) = self.policy.tolerated_failure_percentage {
            if !(0.0..=100.0).contains(&p) {
                return Err(Violation::Protocol(format!(
                    "batch-start: tolerated-failure-percentage {p} is not between 0 and 100"
                )));
            }
        }
        Ok(())
    }
}

/// A branch's status in an outcome.
#[derive(Clone, Debug, PartialEq)]
pub enum BranchStatus {
    Succeeded(String),
    Failed(ErrorObject),
    /// Started, not completed.
    Started,
}

/// One branch that started.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchItem {
    pub index: u32,
    pub status: BranchStatus,
}

/// A batch's outcome: every branch that started, in index order, and why it completed.
#[derive(Clone, Debug, PartialEq)]
pub struct BatchOutcome {
    pub items: Vec<BatchItem>,
    pub reason: CompletionReason,
}

impl BatchOutcome {
    fn count(&self, f: impl Fn(&BranchStatus) -> bool) -> usize {
        self.items.iter().filter(|i| f(&i.status)).count()
    }

    /// Its branches that succeeded and that failed: what the completion policy counts.
    pub fn tally(&self) -> (u32, u32) {
        let succeeded = self.count(|s| matches!(s, BranchStatus::Succeeded(_)));
        let failed = self.count(|s| matches!(s, BranchStatus::Failed(_)));
        (succeeded as u32, failed as u32)
    }

    /// The summary the batch's `ContextSucceeded` records (JSON text): counts and reason.
    pub fn summary(&self, kind: BatchKind) -> String {
        let succeeded = self.count(|s| matches!(s, BranchStatus::Succeeded(_)));
        let failed = self.count(|s| matches!(s, BranchStatus::Failed(_)));
        let started = self.count(|s| matches!(s, BranchStatus::Started));
        let ty = match kind {
            BatchKind::Map => "MapResult",
            BatchKind::Parallel => "ParallelResult",
        };
        let status = if failed > 0 { "FAILED" } else { "SUCCEEDED" };
        format!(
            r#"{{"type":"{ty}","completionReason":"{}","status":"{status}","totalCount":{},"successCount":{succeeded},"failureCount":{failed},"startedCount":{started}}}"#,
            self.reason.as_str(),
            self.items.len(),
        )
    }
}

/// What the guest should do for a batch (mirrors the WIT `batch-state`).
#[derive(Clone, Debug, PartialEq)]
pub enum BatchStart {
    Completed(BatchOutcome),
    /// Run these branches, in this order.
    Run(Vec<u32>),
}

/// What the guest should do for a branch (mirrors the WIT `branch-state`).
#[derive(Clone, Debug, PartialEq)]
pub enum BranchStart {
    Succeeded(String),
    Failed(ErrorObject),
    Run,
    Skip,
}

/// A batch open in this activation: what the guest asked for and its branches' tallies.
#[derive(Clone, Debug)]
pub(crate) struct OpenBatch {
    spec: BatchSpec,
    depth: u32,
    succeeded: u32,
    failed: u32,
}

impl crate::Journal {
    /// A replay of batch `id` passes the options its first run journaled (batches
    /// journaled before the options were are not checked).
    fn check_batch_options(&self, id: &str, spec: &BatchSpec) -> Result<(), Violation> {
        let Some((count, max_concurrency, policy)) = self.batch_options.get(id) else {
            return Ok(());
        };
        let what = if *count != spec.count {
            format!("{count} branches, the function now passes {}", spec.count)
        } else if *max_concurrency != spec.max_concurrency {
            format!(
                "max_concurrency {max_concurrency:?}, the function now passes {:?}",
                spec.max_concurrency
            )
        } else if *policy != spec.policy {
            format!(
                "completion {policy:?}, the function now passes {:?}",
                spec.policy
            )
        } else {
            return Ok(());
        };
        Err(Violation::NonDeterministic(format!(
            "operation {id}: the journal has a batch of {what}; the function's code path \
             changed between runs"
        )))
    }

    /// The outcome of batch `id` as its branches' events tell it.
    pub fn batch_outcome(&self, id: &str, spec: &BatchSpec) -> BatchOutcome {
        let mut items = Vec::new();
        let (mut succeeded, mut failed) = (0, 0);
        for index in 0..spec.count {
            let status = match self.ops.get(&child_id(Some(id), index + 1)) {
                Some(crate::Op {
                    state: OpState::Context { outcome },
                    ..
                }) => match outcome {
                    None => BranchStatus::Started,
                    Some(Ok(r)) => {
                        succeeded += 1;
                        BranchStatus::Succeeded(r.clone())
                    }
                    Some(Err(e)) => {
                        failed += 1;
                        BranchStatus::Failed(e.clone())
                    }
                },
                _ => continue,
            };
            items.push(BatchItem { index, status });
        }
        BatchOutcome {
            items,
            reason: spec.policy.reason(spec.count, succeeded, failed),
        }
    }
}

impl crate::Activation {
    /// `batch-start`: a map or parallel at the next position under `parent`.
    pub fn batch_start(
        &mut self,
        now_ms: u64,
        parent: Option<&str>,
        name: Option<&str>,
        spec: BatchSpec,
    ) -> Result<Effects<(String, BatchStart)>, Violation> {
        spec.check()?;
        // Each branch is an operation: a count past the bound could never finish, and the
        // host would hold a list of that many indices.
        if spec.count as usize > self.limits.max_operations {
            return Err(Limits::exceeded(
                "max_operations",
                self.limits.max_operations,
                format!("batch-start: a batch of {} branches", spec.count),
            ));
        }
        let depth = parent.map_or(0, |p| self.open_contexts.get(p).map_or(0, |c| c.depth)) + 1;
        let kind = spec.kind.context();
        let (op, existing) = self.position("batch-start", parent, name, OpKind::Context(kind))?;
        if existing.is_none() && depth > self.limits.max_context_depth {
            return Err(Limits::exceeded(
                "max_context_depth",
                self.limits.max_context_depth,
                format!("batch-start: a batch at depth {depth}"),
            ));
        }
        if existing.is_some() {
            self.journal.check_batch_options(&op.id, &spec)?;
        }
        let run = BatchStart::Run((0..spec.count).collect());
        let mut fx = Effects::new(Reply::Return((op.id.clone(), run)));
        match existing.map(|e| e.state) {
            None => {
                self.journal.push(
                    now_ms,
                    EventKind::BatchStarted {
                        op: op.clone(),
                        kind,
                        count: spec.count,
                        max_concurrency: spec.max_concurrency,
                        policy: spec.policy.clone(),
                    },
                    &mut fx.events,
                );
                self.open_batch(parent, op.id, depth, spec);
            }
            Some(OpState::Context { outcome: None }) => self.open_batch(parent, op.id, depth, spec),
            Some(OpState::Context { outcome: Some(_) }) => {
                let outcome = self.journal.batch_outcome(&op.id, &spec);
                fx.reply = Reply::Return((op.id, BatchStart::Completed(outcome)));
            }
            Some(_) => unreachable!("kind checked by position"),
        }
        Ok(fx)
    }

    fn open_batch(&mut self, parent: Option<&str>, id: String, depth: u32, spec: BatchSpec) {
        let (succeeded, failed) = self.journal.batch_outcome(&id, &spec).tally();
        let open = OpenBatch {
            succeeded,
            failed,
            spec,
            depth,
        };
        self.open_context(parent, id.clone(), depth);
        self.batches.insert(id, open);
    }

    /// A batch call is not made inside a step body.
    fn outside_steps(&self, call: &str) -> Result<(), Violation> {
        match &self.live_step {
            Some(live) => Err(Violation::Protocol(format!(
                "{call} called inside the body of step {}",
                live.id
            ))),
            None => Ok(()),
        }
    }

    /// `branch-start`: branch `index` of the open batch `batch`.
    pub fn branch_start(
        &mut self,
        now_ms: u64,
        batch: &str,
        index: u32,
        name: Option<&str>,
    ) -> Result<Effects<(String, BranchStart)>, Violation> {
        self.outside_steps("branch-start")?;
        let Some(open) = self.batches.get(batch) else {
            return Err(Violation::Protocol(format!(
                "branch-start: {batch:?} is not an open map or parallel"
            )));
        };
        let (count, kind, depth) = (open.spec.count, open.spec.kind.branch(), open.depth + 1);
        let complete = open
            .spec
            .policy
            .evaluate(count, open.succeeded, open.failed)
            .is_some();
        if index >= count {
            return Err(Violation::Protocol(format!(
                "branch-start: index {index} of a batch of {count}"
            )));
        }
        let id = child_id(Some(batch), index + 1);
        let op = OpRef {
            id: id.clone(),
            parent: Some(batch.to_string()),
            name: name.map(str::to_string),
        };
        let existing = self.journal.ops.get(&id).cloned();
        let mut fx = Effects::new(Reply::Return((id.clone(), BranchStart::Run)));
        match existing {
            Some(e) if e.kind != OpKind::Context(kind) || e.op.name != op.name => {
                return Err(Violation::NonDeterministic(format!(
                    "operation {id}: the journal has {} {:?} but the function now calls {} {:?}; \
                     the function's code path changed between runs",
                    e.kind,
                    e.op.name,
                    OpKind::Context(kind),
                    op.name
                )));
            }
            Some(crate::Op {
                state: OpState::Context { outcome },
                ..
            }) => match outcome {
                None => self.open_context(Some(batch), id.clone(), depth),
                Some(Ok(r)) => fx.reply = Reply::Return((id.clone(), BranchStart::Succeeded(r))),
                Some(Err(e)) => fx.reply = Reply::Return((id.clone(), BranchStart::Failed(e))),
            },
            Some(_) => unreachable!("kind checked above"),
            None => {
                if complete {
                    fx.reply = Reply::Return((id, BranchStart::Skip));
                    return Ok(fx);
                }
                if self.journal.ops.len() >= self.limits.max_operations {
                    return Err(Limits::exceeded(
                        "max_operations",
                        self.limits.max_operations,
                        format!(
                            "branch-start: the execution has recorded {} operations",
                            self.journal.ops.len()
                        ),
                    ));
                }
                if let Some(name) = name.filter(|n| n.len() > self.limits.max_name_bytes) {
                    return Err(Limits::exceeded(
                        "max_name_bytes",
                        self.limits.max_name_bytes,
                        format!("branch-start: the branch name is {} bytes", name.len()),
                    ));
                }
                if depth > self.limits.max_context_depth {
                    return Err(Limits::exceeded(
                        "max_context_depth",
                        self.limits.max_context_depth,
                        format!("branch-start: a branch at depth {depth}"),
                    ));
                }
                self.check_history_room("branch-start")?;
                self.journal.push(
                    now_ms,
                    EventKind::ContextStarted { op, kind },
                    &mut fx.events,
                );
                self.open_context(Some(batch), id.clone(), depth);
            }
        }
        self.touch(&id, 0);
        Ok(fx)
    }

    /// Count a branch's end in its open batch (called by `context_end`).
    pub(crate) fn branch_ended(&mut self, parent: Option<&str>, succeeded: bool) {
        if let Some(open) = parent.and_then(|p| self.batches.get_mut(p)) {
            if succeeded {
                open.succeeded += 1;
            } else {
                open.failed += 1;
            }
        }
    }

    /// `batch-finish`: record the open batch's summary and return its outcome.
    pub fn batch_finish(
        &mut self,
        now_ms: u64,
        id: &str,
    ) -> Result<Effects<BatchOutcome>, Violation> {
        self.outside_steps("batch-finish")?;
        let Some(open) = self.batches.remove(id) else {
            return Err(Violation::Protocol(format!(
                "batch-finish: {id:?} is not an open map or parallel"
            )));
        };
        if let Some(closed) = self.open_contexts.remove(id) {
            self.close_descendants(closed);
        }
        let outcome = self.journal.batch_outcome(id, &open.spec);
        let op = self
            .journal
            .ops
            .get(id)
            .map(|o| o.op.clone())
            .expect("an open batch is journaled");
        let mut fx = Effects::new(Reply::Return(outcome.clone()));
        let kind = EventKind::ContextSucceeded {
            op,
            kind: open.spec.kind.context(),
            result: outcome.summary(open.spec.kind),
        };
        self.journal.push(now_ms, kind, &mut fx.events);
        fx.sync = true;
        self.touch(id, 0);
        Ok(fx)
    }
}

/// Open batches by id.
pub(crate) type OpenBatches = HashMap<String, OpenBatch>;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Activation, Event, Journal};

    fn policy(min: Option<u32>, count: Option<u32>, pct: Option<f64>) -> CompletionPolicy {
        CompletionPolicy {
            min_successful: min,
            tolerated_failure_count: count,
            tolerated_failure_percentage: pct,
        }
    }

    /// The completion rules, as the AWS requirements state them (map 9-x, parallel 8-x).
    #[test]
    fn completion_policy_table() {
        use CompletionReason::*;
        type Row = (
            &'static str,
            CompletionPolicy,
            u32,
            u32,
            u32,
            Option<CompletionReason>,
        );
        let rows: Vec<Row> = vec![
            (
                "empty batch",
                policy(None, None, None),
                0,
                0,
                0,
                Some(AllCompleted),
            ),
            (
                "no policy tolerates failures",
                policy(None, None, None),
                3,
                0,
                2,
                None,
            ),
            (
                "no policy: all done",
                policy(None, None, None),
                3,
                1,
                2,
                Some(AllCompleted),
            ),
            (
                "fail fast (9-5)",
                policy(None, Some(0), None),
                3,
                1,
                1,
                Some(FailureToleranceExceeded),
            ),
            (
                "within count (9-8)",
                policy(None, Some(1), None),
                3,
                1,
                1,
                None,
            ),
            (
                "count exceeded (9-9)",
                policy(None, Some(1), None),
                3,
                0,
                2,
                Some(FailureToleranceExceeded),
            ),
            (
                "all fail, tolerated (8-16)",
                policy(None, Some(3), None),
                3,
                0,
                3,
                Some(AllCompleted),
            ),
            (
                "percentage at the boundary (8-22)",
                policy(None, None, Some(25.0)),
                4,
                0,
                1,
                None,
            ),
            (
                "percentage boundary, all done",
                policy(None, None, Some(25.0)),
                4,
                3,
                1,
                Some(AllCompleted),
            ),
            (
                "percentage exceeded (9-10)",
                policy(None, None, Some(25.0)),
                4,
                0,
                2,
                Some(FailureToleranceExceeded),
            ),
            (
                "min successful (9-7)",
                policy(Some(2), None, None),
                4,
                2,
                0,
                Some(MinSuccessfulReached),
            ),
            (
                "min successful not yet",
                policy(Some(2), None, None),
                4,
                1,
                1,
                None,
            ),
            (
                "min unreachable runs all (8-17)",
                policy(Some(3), None, None),
                3,
                2,
                1,
                Some(AllCompleted),
            ),
            (
                "tolerance before min (8-18)",
                policy(Some(2), Some(1), None),
                4,
                0,
                2,
                Some(FailureToleranceExceeded),
            ),
            (
                "all done before min",
                policy(Some(2), None, None),
                2,
                2,
                0,
                Some(AllCompleted),
            ),
        ];
        for (what, p, count, ok, failed, want) in rows {
            assert_eq!(p.evaluate(count, ok, failed), want, "{what}");
        }
    }

    fn fresh() -> (Activation, Vec<Event>) {
        let mut j = Journal::from_events(&[]);
        let e = j.record(0, EventKind::ExecutionStarted { input: "{}".into() });
        (Activation::new(j, 0), vec![e])
    }

    fn spec(kind: BatchKind, count: u32, policy: CompletionPolicy) -> BatchSpec {
        BatchSpec {
            kind,
            count,
            max_concurrency: Some(1),
            policy,
        }
    }

    fn reply<T>(fx: Effects<T>, log: &mut Vec<Event>) -> T {
        log.extend(fx.events);
        match fx.reply {
            Reply::Return(t) => t,
            Reply::Suspend(r) => panic!("suspended: {r:?}"),
        }
    }

    /// Run a batch whose branch i fails when `fails[i]`, with one step each: returns the
    /// outcome and the activation's events.
    fn run(
        a: &mut Activation,
        log: &mut Vec<Event>,
        spec: BatchSpec,
        fails: &[bool],
    ) -> BatchOutcome {
        let (id, state) = reply(a.batch_start(1, None, Some("b"), spec).unwrap(), log);
        let indices = match state {
            BatchStart::Run(v) => v,
            BatchStart::Completed(o) => return o,
        };
        for i in indices {
            let (bid, st) = reply(a.branch_start(2, &id, i, None).unwrap(), log);
            if st != BranchStart::Run {
                continue;
            }
            let (sid, _) = reply(
                a.step_start(
                    3,
                    Some(&bid),
                    None,
                    crate::StepSemantics::AtLeastOncePerRetry,
                    Default::default(),
                    0.0,
                )
                .unwrap(),
                log,
            );
            reply(a.step_succeed(4, &sid, format!("{i}")).unwrap(), log);
            let outcome = if fails[i as usize] {
                Err(ErrorObject::new("E", "failed"))
            } else {
                Ok(format!("\"r{i}\""))
            };
            reply(a.context_end(5, &bid, outcome).unwrap(), log);
        }
        reply(a.batch_finish(6, &id).unwrap(), log)
    }

    fn shape(log: &[Event]) -> Vec<String> {
        log.iter()
            .map(|e| {
                let op = e
                    .kind
                    .op()
                    .map(|o| format!(" {} <{}>", o.id, o.parent.clone().unwrap_or_default()));
                format!(
                    "{} {}{}",
                    e.kind.event_type(),
                    e.kind.sub_type().unwrap_or(""),
                    op.unwrap_or_default()
                )
                .trim_end()
                .to_string()
            })
            .collect()
    }

    #[test]
    fn a_replay_with_other_batch_options_is_non_deterministic() {
        let (mut a, mut log) = fresh();
        let base = spec(BatchKind::Map, 3, policy(None, None, None));
        run(&mut a, &mut log, base.clone(), &[false, false, false]);
        let changed = [
            (
                "more items",
                BatchSpec {
                    count: 4,
                    ..base.clone()
                },
            ),
            (
                "another concurrency",
                BatchSpec {
                    max_concurrency: Some(2),
                    ..base.clone()
                },
            ),
            (
                "another policy",
                BatchSpec {
                    policy: policy(Some(1), None, None),
                    ..base.clone()
                },
            ),
        ];
        for (what, spec) in changed {
            let mut replay = Activation::new(Journal::from_events(&log), 9);
            match replay.batch_start(9, None, Some("b"), spec) {
                Err(Violation::NonDeterministic(m)) => assert!(m.contains("operation 1"), "{m}"),
                other => panic!("{what}: {other:?}"),
            }
        }
        // The same options replay the finished batch.
        let mut replay = Activation::new(Journal::from_events(&log), 9);
        let fx = replay
            .batch_start(9, None, Some("b"), base.clone())
            .unwrap();
        assert!(matches!(
            fx.reply,
            Reply::Return((_, BatchStart::Completed(_)))
        ));
        // A batch journaled before its options were (a plain ContextStarted) is not checked.
        let old: Vec<Event> = log
            .iter()
            .map(|e| match &e.kind {
                EventKind::BatchStarted { op, kind, .. } => Event {
                    kind: EventKind::ContextStarted {
                        op: op.clone(),
                        kind: *kind,
                    },
                    ..e.clone()
                },
                _ => e.clone(),
            })
            .collect();
        let mut replay = Activation::new(Journal::from_events(&old), 9);
        let more = BatchSpec { count: 4, ..base };
        assert!(replay.batch_start(9, None, Some("b"), more).is_ok());
    }

    #[test]
    fn fail_fast_skips_the_rest_and_records_a_summary() {
        let (mut a, mut log) = fresh();
        let p = policy(None, Some(0), None);
        let out = run(
            &mut a,
            &mut log,
            spec(BatchKind::Map, 3, p.clone()),
            &[false, true, false],
        );
        assert_eq!(out.reason, CompletionReason::FailureToleranceExceeded);
        assert_eq!(out.items.len(), 2, "item 2 never started");
        assert_eq!(
            out.items[0].status,
            BranchStatus::Succeeded("\"r0\"".into())
        );
        assert!(matches!(out.items[1].status, BranchStatus::Failed(_)));
        assert_eq!(
            shape(&log),
            [
                "ExecutionStarted",
                "ContextStarted Map 1 <>",
                "ContextStarted MapIteration 1.1 <1>",
                "StepStarted Step 1.1.1 <1.1>",
                "StepSucceeded Step 1.1.1 <1.1>",
                "ContextSucceeded MapIteration 1.1 <1>",
                "ContextStarted MapIteration 1.2 <1>",
                "StepStarted Step 1.2.1 <1.2>",
                "StepSucceeded Step 1.2.1 <1.2>",
                "ContextFailed MapIteration 1.2 <1>",
                "ContextSucceeded Map 1 <>",
            ]
        );
        let EventKind::ContextSucceeded { result, .. } = &log.last().unwrap().kind else {
            panic!("summary");
        };
        assert_eq!(
            result,
            r#"{"type":"MapResult","completionReason":"FAILURE_TOLERANCE_EXCEEDED","status":"FAILED","totalCount":2,"successCount":1,"failureCount":1,"startedCount":0}"#
        );

        // Replay: the completed batch answers its outcome, records nothing, runs nothing.
        let mut r = Activation::new(Journal::from_events(&log), 10);
        let mut more = Vec::new();
        let again = run(
            &mut r,
            &mut more,
            spec(BatchKind::Map, 3, p),
            &[true, true, true],
        );
        assert_eq!(again, out);
        assert!(more.is_empty());
    }

    #[test]
    fn an_interrupted_batch_replays_finished_branches_and_runs_the_rest() {
        let (mut a, mut log) = fresh();
        let s = spec(BatchKind::Parallel, 3, CompletionPolicy::default());
        let (id, _) = reply(a.batch_start(1, None, None, s.clone()).unwrap(), &mut log);
        let (b0, _) = reply(a.branch_start(2, &id, 0, Some("first")).unwrap(), &mut log);
        reply(a.context_end(3, &b0, Ok("0".into())).unwrap(), &mut log);
        let (b1, st) = reply(a.branch_start(4, &id, 1, None).unwrap(), &mut log);
        assert_eq!((b1.as_str(), st), ("1.2", BranchStart::Run));
        // The instance ends here (a crash, or a wait inside branch 1).

        let mut r = Activation::new(Journal::from_events(&log), 10);
        let mut more = Vec::new();
        let (id, st) = reply(r.batch_start(11, None, None, s.clone()).unwrap(), &mut more);
        assert_eq!(st, BatchStart::Run(vec![0, 1, 2]));
        let (_, st) = reply(
            r.branch_start(12, &id, 0, Some("first")).unwrap(),
            &mut more,
        );
        assert_eq!(
            st,
            BranchStart::Succeeded("0".into()),
            "branch 0 does not run again"
        );
        let (b1, st) = reply(r.branch_start(13, &id, 1, None).unwrap(), &mut more);
        assert_eq!(
            st,
            BranchStart::Run,
            "branch 1 is open: it runs (replaying inside)"
        );
        assert!(more.is_empty());
        reply(r.context_end(14, &b1, Ok("1".into())).unwrap(), &mut more);
        let (b2, _) = reply(r.branch_start(15, &id, 2, None).unwrap(), &mut more);
        assert_eq!(b2, "1.3");
        reply(
            r.context_end(16, &b2, Err(ErrorObject::new("E", "x")))
                .unwrap(),
            &mut more,
        );
        let out = reply(r.batch_finish(17, &id).unwrap(), &mut more);
        assert_eq!(out.reason, CompletionReason::AllCompleted);
        assert_eq!(out.items.len(), 3);

        // A different branch name at a recorded position is a non-determinism.
        let mut r = Activation::new(Journal::from_events(&log), 20);
        let (id, _) = reply(r.batch_start(21, None, None, s).unwrap(), &mut Vec::new());
        assert!(matches!(
            r.branch_start(22, &id, 0, Some("renamed")),
            Err(Violation::NonDeterministic(_))
        ));
    }

    /// Waits, callbacks, child contexts and nested batches inside a branch: their parent
    /// is the branch, and a suspension inside one resumes in the same branch.
    #[test]
    fn operations_inside_a_branch_have_it_as_parent() {
        let (mut a, mut log) = fresh();
        let s = spec(BatchKind::Parallel, 2, CompletionPolicy::default());
        let (id, _) = reply(a.batch_start(1, None, None, s.clone()).unwrap(), &mut log);
        let (b0, _) = reply(a.branch_start(2, &id, 0, None).unwrap(), &mut log);
        let (cb, _) = reply(
            a.create_callback(3, Some(&b0), None, None, None, || "cb-1".into())
                .unwrap(),
            &mut log,
        );
        assert_eq!(cb, "1.1.1");
        let (child, _) = reply(
            a.context_start(4, Some(&b0), None, ContextKind::RunInChildContext)
                .unwrap(),
            &mut log,
        );
        assert_eq!(child, "1.1.2");
        reply(a.context_end(5, &child, Ok("1".into())).unwrap(), &mut log);
        let inner = spec(BatchKind::Map, 1, CompletionPolicy::default());
        let (nested, _) = reply(a.batch_start(6, Some(&b0), None, inner).unwrap(), &mut log);
        assert_eq!(nested, "1.1.3");
        let (item, _) = reply(a.branch_start(7, &nested, 0, None).unwrap(), &mut log);
        assert_eq!(item, "1.1.3.1");
        reply(a.context_end(8, &item, Ok("2".into())).unwrap(), &mut log);
        reply(a.batch_finish(9, &nested).unwrap(), &mut log);
        let fx = a.wait(10, Some(&b0), None, 1_000).unwrap();
        assert_eq!(fx.reply, Reply::Suspend(crate::SuspendReason::Wait));
        log.extend(fx.events);
        let parents: Vec<(String, Option<String>)> = log
            .iter()
            .filter_map(|e| e.kind.op())
            .map(|o| (o.id.clone(), o.parent.clone()))
            .collect();
        assert!(
            parents.contains(&("1.1.4".into(), Some("1.1".into()))),
            "{parents:?}"
        );

        // After the wait: branch 0 runs again and replays what is inside; branch 1 is new.
        let (done, _) =
            Activation::new(Journal::from_events(&log), 2_000).complete_due_waits(2_000);
        log.extend(done);
        let mut r = Activation::new(Journal::from_events(&log), 2_000);
        let mut more = Vec::new();
        let (id, _) = reply(r.batch_start(2_001, None, None, s).unwrap(), &mut more);
        let (b0, st) = reply(r.branch_start(2_002, &id, 0, None).unwrap(), &mut more);
        assert_eq!(st, BranchStart::Run);
        reply(
            r.create_callback(2_003, Some(&b0), None, None, None, || unreachable!())
                .unwrap(),
            &mut more,
        );
        assert_eq!(
            reply(
                r.context_start(2_004, Some(&b0), None, ContextKind::RunInChildContext)
                    .unwrap(),
                &mut more
            )
            .1,
            crate::ContextStart::Succeeded("1".into())
        );
        let inner = spec(BatchKind::Map, 1, CompletionPolicy::default());
        let (_, st) = reply(
            r.batch_start(2_005, Some(&b0), None, inner).unwrap(),
            &mut more,
        );
        assert!(matches!(st, BatchStart::Completed(o) if o.items.len() == 1));
        reply(r.wait(2_006, Some(&b0), None, 1_000).unwrap(), &mut more);
        assert!(more.is_empty(), "everything so far replays: {more:?}");
        reply(
            r.context_end(2_007, &b0, Ok("0".into())).unwrap(),
            &mut more,
        );
        let (_, st) = reply(r.branch_start(2_008, &id, 1, None).unwrap(), &mut more);
        assert_eq!(st, BranchStart::Run);
    }

    #[test]
    fn misuse_is_a_protocol_violation() {
        let (mut a, mut log) = fresh();
        let bad = BatchSpec {
            max_concurrency: Some(0),
            ..spec(BatchKind::Map, 1, CompletionPolicy::default())
        };
        assert!(matches!(
            a.batch_start(1, None, None, bad),
            Err(Violation::Protocol(_))
        ));
        let huge = spec(BatchKind::Map, u32::MAX, CompletionPolicy::default());
        assert!(matches!(
            a.batch_start(1, None, None, huge),
            Err(Violation::Limit(_))
        ));
        let bad = spec(BatchKind::Map, 1, policy(None, None, Some(101.0)));
        assert!(matches!(
            a.batch_start(1, None, None, bad),
            Err(Violation::Protocol(_))
        ));
        let (id, _) = reply(
            a.batch_start(
                1,
                None,
                None,
                spec(BatchKind::Map, 1, CompletionPolicy::default()),
            )
            .unwrap(),
            &mut log,
        );
        assert!(
            matches!(a.branch_start(2, &id, 1, None), Err(Violation::Protocol(_))),
            "index out of range"
        );
        assert!(
            matches!(a.branch_start(2, "9", 0, None), Err(Violation::Protocol(_))),
            "not a batch"
        );
        assert!(
            matches!(a.wait(2, Some(&id), None, 1), Err(Violation::Protocol(_))),
            "an op directly in the batch"
        );
        assert!(matches!(
            a.context_end(2, &id, Ok("1".into())),
            Err(Violation::Protocol(_))
        ));
        reply(a.batch_finish(3, &id).unwrap(), &mut log);
        assert!(
            matches!(a.batch_finish(4, &id), Err(Violation::Protocol(_))),
            "finished twice"
        );
    }
}
