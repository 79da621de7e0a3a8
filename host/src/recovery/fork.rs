//! The history of a fork: which of the original's events it starts with. No IO.
//!
//! The cut is the first event of `from_operation`. Whole operations before it are copied:
//! an operation is copied when it had finished before the cut (a step that succeeded or
//! failed for good, a wait that ended, a callback that was resolved, a child context that
//! ended) and its parent context is copied too; the open child contexts that contain
//! `from_operation` are copied as started (their `ContextStarted`), so that the operations
//! in them before the cut replay. Nothing of `from_operation` or after it is copied, nor
//! what was under way at the cut (it runs again), nor activation records
//! (`InvocationCompleted`), nor a failure that a redrive of the original had forgotten.
//! Copied callbacks get new ids (their outcome is in the copy; the original's callback
//! records stay the original's).

use std::collections::{BTreeMap, HashMap};

use crate::journal::{Event, EventKind, Journal, OpState, StepProgress};

/// The operation that failed, for a fork with no `from_operation`: of the failed
/// operations (a step that failed for good, a wait_for_condition whose check failed, a
/// callback that failed or timed out, a child context that failed, an invoke whose callee
/// failed), the last to fail at the top level, then inside it the last of its
/// failed children, and so on down to the innermost. `None` if nothing failed.
pub fn failed_operation(history: &[Event]) -> Option<String> {
    let journal = Journal::from_events(history);
    let mut failed_at: HashMap<String, u32> = HashMap::new();
    for e in history {
        let failure = matches!(
            &e.kind,
            EventKind::StepFailed {
                next_attempt_delay_ms: None,
                ..
            } | EventKind::ConditionFailed { .. }
                | EventKind::CallbackFailed { .. }
                | EventKind::CallbackTimedOut { .. }
                | EventKind::ContextFailed { .. }
                | EventKind::ChainedInvokeFailed { .. }
                | EventKind::ChainedInvokeTimedOut { .. }
                | EventKind::ChainedInvokeStopped { .. }
        );
        if let (true, Some(op)) = (failure, e.kind.op()) {
            failed_at.insert(op.id.clone(), e.seq);
        }
    }
    // Only what is failed still (a redrive may have run it again since).
    let candidates: Vec<(String, Option<String>, u32)> = failed_at
        .into_iter()
        .filter_map(|(id, seq)| {
            let op = journal.op(&id)?;
            let failed = matches!(
                &op.state,
                OpState::Step(StepProgress::Failed { .. })
                    | OpState::Callback {
                        outcome: Some(Err(_)),
                        ..
                    }
                    | OpState::Context {
                        outcome: Some(Err(_)),
                    }
                    | OpState::Invoke {
                        outcome: Some(Err(_)),
                        ..
                    }
            );
            failed.then(|| (id, op.op.parent.clone(), seq))
        })
        .collect();
    let last = |parent: Option<&str>| {
        candidates
            .iter()
            .filter(|(_, p, _)| p.as_deref() == parent)
            .max_by_key(|(_, _, seq)| *seq)
            .map(|(id, _, _)| id.clone())
    };
    let mut current = last(None).or_else(|| {
        candidates
            .iter()
            .max_by_key(|(_, _, seq)| *seq)
            .map(|(id, _, _)| id.clone())
    })?;
    while let Some(child) = last(Some(&current)) {
        current = child;
    }
    Some(current)
}

fn finished(state: &OpState) -> bool {
    match state {
        OpState::Step(p) => matches!(
            p,
            StepProgress::Succeeded { .. } | StepProgress::Failed { .. }
        ),
        OpState::Wait { done, .. } => *done,
        OpState::Callback { outcome, .. }
        | OpState::Context { outcome }
        | OpState::Invoke { outcome, .. } => outcome.is_some(),
    }
}

/// `id` is `of` or inside it.
fn within(id: &str, of: &str) -> bool {
    id == of
        || id
            .strip_prefix(of)
            .is_some_and(|rest| rest.starts_with('.'))
}

/// The fork's history: `ExecutionStarted` with `input` at `now_ms`, then the copied events
/// (see the module comment), numbered from 2. `from_operation` `None`: the operation that
/// failed (`failed_operation`), or, if none did, everything that finished.
pub fn copy(
    history: &[Event],
    from_operation: Option<&str>,
    input: &str,
    now_ms: u64,
    mut new_callback_id: impl FnMut() -> String,
) -> Result<Vec<Event>, String> {
    let from = match from_operation {
        Some(f) => Some(f.to_string()),
        None => failed_operation(history),
    };
    let cut = match &from {
        None => u32::MAX,
        Some(f) => history
            .iter()
            .find(|e| e.kind.op().is_some_and(|op| op.id == *f))
            .map(|e| e.seq)
            .ok_or_else(|| format!("operation {f:?} is not in its history"))?,
    };
    let mut journal = Journal::from_events(&[]);
    let mut events: BTreeMap<String, Vec<Event>> = BTreeMap::new();
    for e in history.iter().filter(|e| e.seq < cut) {
        journal.apply(e);
        if let Some(op) = e.kind.op() {
            events.entry(op.id.clone()).or_default().push(e.clone());
        }
        if let EventKind::ExecutionRedriven { .. } = e.kind {
            // What the redrive forgot is not copied; a child context it opened again
            // loses its failure.
            events.retain(|id, evs| match journal.op(id) {
                None => false,
                Some(op) => {
                    if let OpState::Context { outcome: None } = op.state {
                        evs.retain(|e| !matches!(e.kind, EventKind::ContextFailed { .. }));
                    }
                    true
                }
            });
        }
    }
    let ancestor = |id: &str| from.as_deref().is_some_and(|f| f != id && within(f, id));
    let mut kept: HashMap<String, bool> = HashMap::new();
    // Parents sort before their children ("3" < "3.1"), so a parent is decided first.
    for id in events.keys() {
        let Some(op) = journal.op(id) else { continue };
        let parent_kept = op
            .op
            .parent
            .as_deref()
            .is_none_or(|p| kept.get(p).copied().unwrap_or(false));
        let keep = parent_kept
            && !from.as_deref().is_some_and(|f| within(id, f))
            && (ancestor(id) || finished(&op.state));
        kept.insert(id.clone(), keep);
    }
    let mut copied: Vec<Event> = events
        .into_iter()
        .filter(|(id, _)| kept.get(id).copied().unwrap_or(false))
        .flat_map(|(_, evs)| evs)
        .collect();
    copied.sort_by_key(|e| e.seq);
    let mut out = Vec::with_capacity(copied.len() + 1);
    out.push(Event {
        seq: 1,
        at_ms: now_ms,
        kind: EventKind::ExecutionStarted {
            input: input.to_string(),
        },
    });
    for (n, mut e) in copied.into_iter().enumerate() {
        e.seq = n as u32 + 2;
        if let EventKind::CallbackStarted { callback_id, .. } = &mut e.kind {
            *callback_id = new_callback_id();
        }
        out.push(e);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{ContextKind, ErrorObject, OpRef, RedriveTrigger};

    fn op(id: &str) -> OpRef {
        OpRef {
            id: id.into(),
            parent: id.rsplit_once('.').map(|(p, _)| p.to_string()),
            name: None,
        }
    }

    fn err() -> ErrorObject {
        ErrorObject::new("E", "m")
    }

    /// A history from compact steps: "S1+" a step that succeeded, "S1-" one that failed for
    /// good, "S1~" an attempt started, "C1(" a child context started, "C1)" it succeeded,
    /// "C1!" it failed, "W1" a wait that ended, "I1+" / "I1-" / "I1~" an invoke whose callee
    /// succeeded / failed / still runs, "R" a redrive, "F" the execution failed.
    fn history(spec: &str) -> Vec<Event> {
        let mut out = vec![EventKind::ExecutionStarted { input: "1".into() }];
        let ctx = ContextKind::RunInChildContext;
        for t in spec.split_whitespace() {
            let (kind, id) = (&t[..1], &t[1..t.len().saturating_sub(1).max(1)]);
            let last = &t[t.len() - 1..];
            let o = || op(id);
            match (kind, last) {
                ("S", "+") => out.extend([
                    EventKind::StepStarted {
                        op: o(),
                        attempt: 1,
                    },
                    EventKind::StepSucceeded {
                        op: o(),
                        result: "0".into(),
                        attempt: 1,
                    },
                ]),
                ("S", "-") => out.extend([
                    EventKind::StepStarted {
                        op: o(),
                        attempt: 1,
                    },
                    EventKind::StepFailed {
                        op: o(),
                        error: err(),
                        attempt: 1,
                        next_attempt_delay_ms: None,
                    },
                ]),
                ("Q", "-") => out.extend([
                    EventKind::ConditionStarted {
                        op: o(),
                        attempt: 1,
                    },
                    EventKind::ConditionFailed {
                        op: o(),
                        error: err(),
                        attempt: 1,
                    },
                ]),
                ("I", end) => {
                    out.push(EventKind::ChainedInvokeStarted {
                        op: o(),
                        function: "f".into(),
                        input: "1".into(),
                        version: Some(1),
                        callee: Some(format!("callee-{id}")),
                        tenant_id: None,
                    });
                    match end {
                        "+" => out.push(EventKind::ChainedInvokeSucceeded {
                            op: o(),
                            result: "0".into(),
                        }),
                        "-" => out.push(EventKind::ChainedInvokeFailed {
                            op: o(),
                            error: err(),
                        }),
                        _ => {}
                    }
                }
                ("S", "~") => out.push(EventKind::StepStarted {
                    op: o(),
                    attempt: 1,
                }),
                ("C", "(") => out.push(EventKind::ContextStarted { op: o(), kind: ctx }),
                ("C", ")") => out.push(EventKind::ContextSucceeded {
                    op: o(),
                    kind: ctx,
                    result: "0".into(),
                }),
                ("C", "!") => out.push(EventKind::ContextFailed {
                    op: o(),
                    kind: ctx,
                    error: err(),
                }),
                ("W", _) => {
                    let id = &t[1..];
                    out.extend([
                        EventKind::WaitStarted {
                            op: op(id),
                            duration_ms: 1,
                            scheduled_end_ms: 1,
                        },
                        EventKind::WaitSucceeded {
                            op: op(id),
                            duration_ms: 1,
                        },
                    ])
                }
                ("R", _) => out.push(EventKind::ExecutionRedriven {
                    key_id: None,
                    trigger: RedriveTrigger::Request,
                    from_version: 1,
                    to_version: 1,
                    redrive_count: 1,
                }),
                ("F", _) => out.extend([
                    EventKind::InvocationCompleted {
                        started_ms: 0,
                        error: None,
                    },
                    EventKind::ExecutionFailed { error: err() },
                ]),
                _ => panic!("bad token {t}"),
            }
        }
        out.into_iter()
            .enumerate()
            .map(|(n, kind)| Event {
                seq: n as u32 + 1,
                at_ms: n as u64,
                kind,
            })
            .collect()
    }

    /// The copy as compact (event type, op id) pairs after `ExecutionStarted`.
    fn shape(events: &[Event]) -> Vec<String> {
        assert_eq!(events[0].kind.event_type(), "ExecutionStarted");
        let seqs: Vec<u32> = events.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, (1..=events.len() as u32).collect::<Vec<_>>());
        events[1..]
            .iter()
            .map(|e| format!("{} {}", e.kind.event_type(), e.kind.op().unwrap().id))
            .collect()
    }

    #[test]
    fn a_fork_copies_whole_finished_operations_before_the_cut() {
        /// (history, from_operation, the failed operation found, what is copied)
        type Case = (
            &'static str,
            Option<&'static str>,
            Option<&'static str>,
            &'static [&'static str],
        );
        let cases: [Case; 10] = [
            (
                // An invoke whose callee failed is the operation that failed; one that
                // succeeded is copied whole (it replays its callee's output).
                "I1+ I2- F",
                None,
                Some("2"),
                &["ChainedInvokeStarted 1", "ChainedInvokeSucceeded 1"],
            ),
            (
                // An invoke still waiting at the cut is not copied: the fork starts its own.
                "S1+ I2~ F",
                None,
                None,
                &["StepStarted 1", "StepSucceeded 1"],
            ),
            (
                "S1+ S2- F",
                None,
                Some("2"),
                &["StepStarted 1", "StepSucceeded 1"],
            ),
            (
                // A wait_for_condition whose check failed is the operation that failed.
                "S1+ Q2- F",
                None,
                Some("2"),
                &["StepStarted 1", "StepSucceeded 1"],
            ),
            ("S1+ S2- F", Some("1"), Some("2"), &[]),
            (
                // Inside a failed child context: the context is copied as started, its
                // operations before the failed one replay.
                "W1 C2( S2.1+ S2.2- C2! F",
                None,
                Some("2.2"),
                &[
                    "WaitStarted 1",
                    "WaitSucceeded 1",
                    "ContextStarted 2",
                    "StepStarted 2.1",
                    "StepSucceeded 2.1",
                ],
            ),
            (
                // An attempt under way at the cut is not copied; what follows is not.
                "S1~ S2+ S3- F",
                Some("3"),
                Some("3"),
                &["StepStarted 2", "StepSucceeded 2"],
            ),
            (
                // A child context that ended before the cut is copied whole.
                "C1( S1.1+ C1) S2- F",
                None,
                Some("2"),
                &[
                    "ContextStarted 1",
                    "StepStarted 1.1",
                    "StepSucceeded 1.1",
                    "ContextSucceeded 1",
                ],
            ),
            (
                // A failure a redrive forgot is not copied; the new run of it is.
                "S1- F R S1+ S2- F",
                None,
                Some("2"),
                &["StepStarted 1", "StepSucceeded 1"],
            ),
            (
                // Nothing failed: everything that finished.
                "S1+ S2+",
                None,
                None,
                &[
                    "StepStarted 1",
                    "StepSucceeded 1",
                    "StepStarted 2",
                    "StepSucceeded 2",
                ],
            ),
        ];
        for (spec, from, failed, expected) in cases {
            let h = history(spec);
            assert_eq!(failed_operation(&h).as_deref(), failed, "{spec}");
            let copy = copy(&h, from, "2", 99, || "cb_new".into()).unwrap();
            assert_eq!(shape(&copy), expected, "{spec} from {from:?}");
            assert_eq!(
                copy[0].kind,
                EventKind::ExecutionStarted { input: "2".into() }
            );
            // The copy folds into a journal that replays what it copied.
            let j = Journal::from_events(&copy);
            assert!(!j.is_terminal());
        }
    }

    #[test]
    fn a_fork_from_an_operation_not_in_the_history_is_refused() {
        let h = history("S1+ S2- F");
        let e = copy(&h, Some("7"), "1", 0, String::new).unwrap_err();
        assert_eq!(e, "operation \"7\" is not in its history");
    }

    #[test]
    fn copied_callbacks_get_new_ids() {
        let cb = |kind| Event {
            seq: 0,
            at_ms: 0,
            kind,
        };
        let mut h = vec![
            cb(EventKind::ExecutionStarted { input: "1".into() }),
            cb(EventKind::CallbackStarted {
                op: op("1"),
                callback_id: "cb_old".into(),
                timeout_ms: None,
                heartbeat_timeout_ms: None,
            }),
            cb(EventKind::CallbackSucceeded {
                op: op("1"),
                result: "5".into(),
            }),
        ];
        for (n, e) in h.iter_mut().enumerate() {
            e.seq = n as u32 + 1;
        }
        let copy = copy(&h, None, "1", 0, || "cb_new".into()).unwrap();
        assert!(matches!(
            &copy[1].kind,
            EventKind::CallbackStarted { callback_id, .. } if callback_id == "cb_new"
        ));
        let j = Journal::from_events(&copy);
        assert_eq!(j.pending_callback_count(), 0);
    }
}
