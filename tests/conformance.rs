//! The conformance kit: the AWS durable-functions conformance suites for steps, waits,
//! callbacks, wait-for-callback, child contexts, wait-for-condition, map, parallel and invoke
//! (`shared/reference/aws-durable-conformance/{step,wait,callback,wait_for_callback,child,wait_for_condition,map,parallel,invoke}/*.yaml`),
//! ported to this host: real server, real HTTP, run against every SDK's conformance guest
//! ([`GUESTS`]: the Rust and the Python one, scenarios in `tests/guests/README.md`). Each
//! case is a function listed in `kit!` at the end, which makes one test per (guest, case):
//! `rust::step_1_1_...`, `python::step_1_1_...`.
//!
//! Every test asserts the exact event sequence of the history (type, sub type, id, parent
//! id, name, attempt, error type, retry delay, durations and timeouts; see [`line`]), the
//! results recorded in it, and the final status and output.
//!
//! # How the YAML maps onto this host
//!
//! * The YAML lists history from event 2; ours starts with `ExecutionStarted` (event 1) and
//!   ends with `ExecutionSucceeded` / `ExecutionFailed`, which the tests assert too.
//! * Durations are milliseconds and small: `duration_ms` (YAML `Duration` in seconds),
//!   `next_attempt_delay_ms` (`NextAttemptDelaySeconds`), `timeout_ms` /
//!   `heartbeat_timeout_ms` on `CallbackStarted` (`Timeout` / `HeartbeatTimeout`).
//! * `RetryDetails.CurrentAttempt` is `details.attempt`, recorded on every step event.
//! * A Lambda crash (`Runtime.ExitError`) is a wasm trap here. The host notices it itself:
//!   the activation's `InvocationCompleted` carries `Runtime.Trap`, and the host records the
//!   interrupted attempt at once as `StepFailed` with error type `Runtime.Trap` (AWS: a
//!   re-invocation records `StepInterrupted`-like failure). With a retry delay there is
//!   therefore no extra `InvocationCompleted` between that `StepFailed` and the retry.
//! * A heartbeat timeout is `Callback.HeartbeatTimeout` (AWS: `Callback.Heartbeat`).
//! * Errors are not wrapped: an uncaught callback or child failure fails the execution with
//!   the original error type (AWS wraps it in `CallbackError` / `ChildContextError`).
//! * A host crash is a `kill -9` of the server; the restart records `InvocationCompleted`
//!   with `Runtime.HostRestarted` for the activation that was cut short.
//!
//! # Applicability table
//!
//! | YAML | requirement | here |
//! |---|---|---|
//! | 1-1 | step basic | ported: `step_1_1_basic_step_succeeds_on_first_attempt` |
//! | 1-2 | step with name | ported: `step_1_2_step_with_name` |
//! | 1-3 | sequential steps, second uses first | differs: `step_1_3_sequential_steps` (scenario `steps`: two independent steps) |
//! | 1-4 | complex object result | differs: `step_1_4_step_returns_a_complex_object` (the step runs inside a child context: the guest's only step returning arbitrary JSON is `child-basic`'s) |
//! | 1-5 | null result | differs: `step_1_5_step_returns_null` (scenario `stdout`: the step is followed by a 50 ms wait) |
//! | 1-6 | custom serdes | not applicable: no serdes hook; results are plain JSON |
//! | 1-7 | step context logger | differs: `step_1_7_step_logger_logs_once` (one line, not two) |
//! | 1-8 | step and wait with replay | ported: `step_1_8_1_9_steps_then_wait_replay_without_re_running_the_steps` |
//! | 1-9 | replay skips succeeded step | ported: same test (a mock counts step bodies: each ran once) |
//! | 1-10 | replay re-throws failed step | ported: `step_1_10_replay_rethrows_the_failed_step` |
//! | 1-11 | retry, fails then succeeds | ported: `step_1_11_retry_fails_then_succeeds` |
//! | 1-12 | retry exhaustion | ported: `step_1_12_retry_exhaustion_fails_the_execution` |
//! | 1-13 | default retry strategy | not applicable: 5 s initial delay with full jitter makes the test slow and its delays random (the policy's arithmetic is unit-tested in `crates/journal/src/retry.rs`) |
//! | 1-14 | custom backoff | ported: `step_1_14_retry_with_custom_backoff` (20 ms x3) |
//! | 1-15 | retry a specific error | ported: `step_1_15_retry_on_a_specific_error_type` |
//! | 1-16 | non-retryable error | ported: `step_1_16_non_retryable_error_fails_without_retry` (`never_retry_on`, and an error outside `retry_on`) |
//! | 1-17 | at-most-once, crash, no retry | differs: `step_1_17_at_most_once_interrupted_without_retry` (trap, `Runtime.Trap`) |
//! | 1-18 | at-most-once, crash, retry | differs: `step_1_18_at_most_once_interrupted_then_retried` (trap; no `InvocationCompleted` between `StepFailed` and the retry) |
//! | 1-19 | step fails permanently | ported: `step_1_19_step_fails_permanently` |
//! | 1-20 | error caught | ported: `step_1_20_error_caught_and_handled` |
//! | 2-1 | wait basic | ported: `wait_2_1_basic_wait` |
//! | 2-2 | wait with name | ported: `wait_2_2_named_wait` |
//! | 2-3 | sequential waits | differs: `wait_2_3_sequential_waits` (unnamed waits; output is the count) |
//! | 2-4 | one-minute wait (async) | ported: `wait_2_4_one_minute_wait_suspends` (only the start is checked, as in the YAML) |
//! | 2-5 | one-hour wait (async) | ported: `wait_2_5_one_hour_wait_suspends` |
//! | 4-1 | callback success | ported: `callback_4_1_success` (+ a second completion is 409) |
//! | 4-2 | callback with explicit name | ported: `callback_4_2_explicit_name` |
//! | 4-3 | callback timeout | ported: `callback_4_3_timeout` |
//! | 4-4 | heartbeat timeout | differs: `callback_4_4_heartbeat_timeout` (`Callback.HeartbeatTimeout`) |
//! | 4-5 | heartbeat then success | ported: `callback_4_5_heartbeats_keep_it_alive_then_success` (heartbeats carry it well past its heartbeat timeout) |
//! | 4-6 | external failure | ported: `callback_4_6_failure_fails_the_execution` |
//! | 4-7 | callback, step, await (failure) | differs: covered by `wait_for_callback_7_4_failure_uncaught` (same create, step, await order inside the wait-for-callback context); no top-level scenario |
//! | 4-8 | callback, step, await (timeout) | differs: covered by `wait_for_callback_7_5_timeout_uncaught`, as 4-7 |
//! | 4-9 | callback, wait, await (success) | ported: `callback_4_9_completed_during_a_wait_before_it_is_awaited` |
//! | 4-10 | callback, wait, await (failure) | ported: `callback_4_10_failed_during_a_wait_before_it_is_awaited` |
//! | 4-11 | callback, wait, await (timeout) | not applicable: no scenario with a callback timeout and a wait |
//! | 4-12 | callback success, then wait | not applicable: no scenario waits after awaiting a callback |
//! | 4-13 | failure caught, then wait | differs: `callback_4_13_failure_caught` (no wait after) |
//! | 4-14 | timeout caught, then wait | differs: `callback_4_14_timeout_caught` (no wait after) |
//! | 4-15 | custom serdes (object) | not applicable: no serdes hook (JSON object results: 4-2, 7-11) |
//! | 4-16 | custom serdes (number) | not applicable: no serdes hook |
//! | 4-17 | two callbacks created and awaited one after the other | not applicable: no such scenario (`callback-two` creates both first) |
//! | 4-18 | two callbacks, awaited in order | ported: `callback_4_18_two_callbacks_completed_in_order` |
//! | 4-19 | two callbacks, awaited in reverse | differs: `callback_4_19_two_callbacks_completed_in_reverse_order` (awaited a then b, completed b then a: the first completion is again of the callback not awaited) |
//! | 7-1 | wait-for-callback basic | ported: `wait_for_callback_7_1_basic` (the submitter hands the id to a mock) |
//! | 7-2 | static name | ported: `wait_for_callback_7_2_static_name` |
//! | 7-3 | anonymous | not applicable: the guest's scenario always names the operation |
//! | 7-4 | external failure, uncaught | ported: `wait_for_callback_7_4_failure_uncaught` |
//! | 7-5 | timeout, uncaught | ported: `wait_for_callback_7_5_timeout_uncaught` |
//! | 7-6 | external failure, caught | differs: `wait_for_callback_7_6_failure_caught` (returns the caught error, not `"recovered"`) |
//! | 7-7 | submitter retry exhaustion | ported: `wait_for_callback_7_7_submitter_retry_exhaustion` |
//! | 7-8 | inside a child context | not applicable: no such scenario |
//! | 7-9 | two sequential | not applicable: no such scenario |
//! | 7-10 | mixed with wait and step | not applicable: no such scenario |
//! | 7-11 | JSON object result | differs: `wait_for_callback_7_11_json_object_result` (returns the whole object) |
//! | 7-12 | heartbeat timeout | differs: `wait_for_callback_7_12_heartbeat_timeout` (`Callback.HeartbeatTimeout`) |
//! | 7-13 | heartbeat then success | ported: `wait_for_callback_7_13_heartbeat_then_success` |
//! | 7-14 | timeout caught | differs: `wait_for_callback_7_14_timeout_caught` (returns the caught error) |
//! | 7-15 | empty payload | ported: `wait_for_callback_7_15_empty_payload_is_null` |
//! | 3-1 | child basic | ported: `child_3_1_basic` |
//! | 3-2 | child with name | differs: `child_3_2_named` (the name is fixed, `child`) |
//! | 3-3 | sequential steps in a child | differs: covered by `child_3_10_3_18_step_and_wait_inside_then_step_after` (two steps in the child, a wait between) |
//! | 3-4 | child error, uncaught | not applicable: the guest only has the caught form (3-5) |
//! | 3-5 | child error caught | differs: `child_3_5_error_caught` (no recovery step after) |
//! | 3-6 | nested children | differs: `child_3_6_nested` (no step in the outer child) |
//! | 3-7 | step retry inside a child | not applicable: no such scenario |
//! | 3-8 | retry exhaustion inside a child | not applicable: no such scenario |
//! | 3-9 | completed child replayed from the journal | not applicable: no scenario suspends after a completed child |
//! | 3-10 | step and wait inside a child | differs: `child_3_10_3_18_step_and_wait_inside_then_step_after` (a second step in the child) |
//! | 3-11 | large result, ReplayChildren | not applicable: no ReplayChildren mode; a result over the payload limit fails with `PayloadTooLarge` |
//! | 3-12 | interrupted and re-executed | differs: `child_3_12_interrupted_step_is_re_executed_after_a_host_crash` (top-level steps; the crash is `kill -9` of the host; the re-run attempt records a new `StepStarted`) |
//! | 3-13 | only a wait inside a child | differs: `child_3_13_3_17_wait_inside_a_child_and_its_log_line_once` (no step after) |
//! | 3-14 | custom serdes | not applicable: no serdes hook |
//! | 3-15 | error without a step | not applicable: no such scenario |
//! | 3-16 | child returning null | differs: `child_3_16_returning_null` (null comes from a step inside) |
//! | 3-17 | logger only, log once | differs: `child_3_13_3_17_wait_inside_a_child_and_its_log_line_once` (the wait is inside the child, so the child body does run again on replay; the replay-aware logger keeps the line once) |
//! | 3-18 | step and wait inside, step and wait after | differs: `child_3_10_3_18_step_and_wait_inside_then_step_after` (no wait after) |
//! | 6-1 | polls until a threshold | ported: `reference_cases` (and `wait_for_condition_6_1_6_5_unloaded_between_checks_and_survives_a_crash`, with a `kill -9` between checks) |
//! | 6-2 | condition met on the first check | ported: `reference_cases` |
//! | 6-3 | explicit name | ported: `reference_cases` |
//! | 6-4 | custom initial state | ported: `reference_cases` |
//! | 6-5 | fixed-delay strategy | ported: `reference_cases` (delays in ms; presence checked there, values in the crash test) |
//! | 6-6 | max attempts exceeded | ported: `reference_cases` (error type `WaitForCondition.MaxAttemptsExceeded`) |
//! | 6-7 | check raises, uncaught | ported: `reference_cases` (the check's own error type, not wrapped) |
//! | 6-8 | check raises, caught | ported: `reference_cases` |
//! | 6-9 | object state | ported: `reference_cases` |
//! | 6-10 | null state | ported: `reference_cases` |
//! | 6-11 | custom state serdes | ported: `reference_cases` (Rust: a `Serialize`/`Deserialize` of its own; Python: `serdes=`) |
//! | 6-12 | then a step | ported: `reference_cases` |
//! | 6-13 | two sequential conditions | ported: `reference_cases` |
//! | 9-1 | map basic, a step per item | ported: `reference_cases` |
//! | 9-2 | items-only form (no name) | ported: `reference_cases` |
//! | 9-3 | item and index | ported: `reference_cases` |
//! | 9-4 | empty items | ported: `reference_cases` |
//! | 9-5 | fail fast (tolerated count 0) | ported: `reference_cases` (projection compared by its keys) |
//! | 9-6 | throw-if-error fails the execution | ported: `reference_cases` (the item's own error type, `ItemError`) |
//! | 9-7 | min-successful early completion | ported: `reference_cases` |
//! | 9-8 | tolerated count within tolerance | ported: `reference_cases` |
//! | 9-9 | tolerated count exceeded | ported: `reference_cases` |
//! | 9-10 | tolerated percentage exceeded | ported: `reference_cases` |
//! | 9-11 | max-concurrency 2, index-ordered results | ported: `map_9_11_parallel_8_11_concurrency_keeps_index_order` (two branches at a time, each on its own instance, so their events interleave as the YAML allows; it checks only the first event, this test each branch once and the results in index order) |
//! | 9-12 | FLAT nesting (virtual iteration contexts) | not applicable: no nesting mode; every item is a `MapIteration` context (the host fixes branch ids as `<batch>.<i+1>` so that branches can run on separate instances) |
//! | 9-13 | custom item namer | ported: `reference_cases` (`MapConfig::item_namer` / `item_namer=`) |
//! | 9-14 | custom per-item serdes | not applicable: no serdes hook (a result type's own `Serialize` is its serdes) |
//! | 9-15 | suspension inside an iteration, replay skips the finished one | ported: `reference_cases` |
//! | 9-16 | large aggregate result | differs: `reference_cases` (4 x 70 KB; the batch's `ContextSucceeded` never carries the results, only a summary, so there is no ReplayChildren mode: the outcome is always rebuilt from the iterations' events) |
//! | 9-17 | suspension after a successful map | ported: `reference_cases` |
//! | 9-18 | suspension after a map with a failure | ported: `reference_cases` |
//! | 9-19 | operation-level serdes, serialize | not applicable: no serdes hook |
//! | 9-20 | operation-level serdes, deserialize on replay | not applicable: no serdes hook |
//! | 8-1 | parallel basic, a step per branch | ported: `reference_cases` |
//! | 8-2 | branches-only form | ported: `reference_cases` |
//! | 8-3 | named branches | ported: `reference_cases` (`Branch::named` / `(name, fn)`) |
//! | 8-4 | heterogeneous results | ported: `reference_cases` (Rust: `serde_json::Value`) |
//! | 8-5 | empty branches | ported: `reference_cases` |
//! | 8-6 | fail fast | ported: `reference_cases` |
//! | 8-7 | throw-if-error | ported: `reference_cases` |
//! | 8-8 | min-successful | ported: `reference_cases` |
//! | 8-9 | tolerated count within tolerance | ported: `reference_cases` |
//! | 8-10 | tolerated count exceeded | ported: `reference_cases` |
//! | 8-11 | max-concurrency 2 | ported: as 9-11, same test |
//! | 8-12 | FLAT nesting | not applicable: as 9-12 |
//! | 8-13 | tolerated percentage exceeded | ported: `reference_cases` |
//! | 8-14 | replay skips succeeded branches across a wait | ported: `reference_cases` |
//! | 8-15 | custom per-branch serdes | not applicable: no serdes hook |
//! | 8-16 | all branches fail within tolerance | ported: `reference_cases` |
//! | 8-17 | min-successful not reached | ported: `reference_cases` |
//! | 8-18 | min-successful and tolerated count | ported: `reference_cases` |
//! | 8-19 | max-concurrency 0 is a validation error | ported: `reference_cases` (error type `InvalidConfig`, raised before `batch-start`) |
//! | 8-20 | BatchResult accessors | ported: `reference_cases` |
//! | 8-21 | nested parallel | ported: `reference_cases` |
//! | 8-22 | tolerated percentage at the boundary | ported: `reference_cases` |
//! | 5-1 | invoke basic (echo target) | ported: `reference_cases` (the callee is `echo-target`, tests/guests/README.md) |
//! | 5-2 | invoke with name | ported: `reference_cases` |
//! | 5-3 | complex object | ported: `reference_cases` |
//! | 5-4 | null payload and result | ported: `reference_cases` |
//! | 5-5 | target fails | ported: `reference_cases` (the caller fails with the callee's own error type, not wrapped in an `InvokeError`) |
//! | 5-6 | target fails, caught | ported: `reference_cases` (returns the caught error) |
//! | 5-7 | large payload | ported: `reference_cases` (a 1,000,000-byte string; the host's payload limit is 1 MiB) |
//! | 5-8 | with tenantId | differs: `reference_cases` (`tenant_id` can only name the caller's own tenant, `default`: a tenant is this host's isolation boundary, another one fails with `Invoke.TenantMismatch`) |
//! | 5-9 | replay skips the invoke | ported: `reference_cases` (a 50 ms wait after it) |
//! | 5-10 | replay re-throws the failed invoke | ported: `reference_cases` |
//! | 5-11 | step then invoke | ported: `reference_cases` (the step's result is the invoke's input) |
//! | 5-12 | invoke then step | ported: `reference_cases` |
//! | 5-13 | invoke inside a child context | ported: `reference_cases` |
//! | 5-14 | two sequential invokes | ported: `reference_cases` (the same target twice) |
//! | 5-15 | custom payload serdes | differs: `reference_cases` (no serdes hook: the guest uppercases the input before the invoke) |
//! | 5-16 | custom result serdes | differs: `reference_cases` (no serdes hook: the guest uppercases the result) |
//!
//! The cases as data: `reference_cases` runs the rows of [`CASES`] (1-1, 1-2, 1-10, 1-11,
//! 1-12, 1-14, 1-15, 1-16, 1-19, 1-20, 2-1, 2-2, 3-1, 6-1 to 6-13, and of map/ and
//! parallel/ every case the table above calls ported or differs but 9-11 and 8-11, and invoke/ 5-1 to 5-16) and compares each execution with the
//! reference YAML itself (`ExpectedResult`, and every event of `ExpectedExecutionHistory`:
//! type, sub type, id and parent-id placeholders, names, attempts, error types and
//! messages, results, and the presence of delays and durations), read at run time from
//! `../shared/`. A new SDK's guest that passes it and the tests above is conformant.
//!
//! Besides the YAML: `map_after_a_host_crash_runs_no_finished_item_again` (DESIGN 11: a
//! `kill -9` in the middle of a map; finished items record nothing again),
//! `callback_api_unknown_ids_are_404` (and 409 for second completions in
//! 4-1 and 4-18), and `deterministic_values_are_recorded_once_and_replayed` (DESIGN.md
//! section 11: `now`, `random`, `uuid` as steps `durable.*`, the same after a replay).

mod support;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use support::*;

const FUNCTION: &str = "conf";

/// The conformance guests the kit runs against: (SDK, component). Each test below runs
/// once per guest, as `<sdk>::<test>` (`rust::step_1_1_...`, `python::step_1_1_...`).
const GUESTS: [(&str, &str); 2] = [
    ("rust", "conformance_guest"),
    ("python", "python/conformance_guest"),
];

thread_local! {
    /// The component under test on this test's thread (libtest runs each test on its own).
    static GUEST: std::cell::Cell<&'static str> = const { std::cell::Cell::new("") };
}

/// The component the running test deploys.
fn guest() -> &'static str {
    let g = GUEST.with(|g| g.get());
    assert!(!g.is_empty(), "a kit test runs through kit!");
    g
}

/// Run `case` against the guest of `sdk`.
fn against(sdk: &str, case: fn()) {
    let (_, component) = GUESTS
        .iter()
        .find(|(s, _)| *s == sdk)
        .unwrap_or_else(|| panic!("no conformance guest for {sdk}"));
    GUEST.with(|g| g.set(component));
    case();
}

/// One `#[test]` per (guest, case): `mod rust` and `mod python`, each with every case.
macro_rules! kit {
    ($($case:ident),* $(,)?) => {
        mod rust {
            $(#[test] fn $case() { super::against("rust", super::$case) })*
        }
        mod python {
            $(#[test] fn $case() { super::against("python", super::$case) })*
        }
    };
}

/// A server with the conformance guest deployed as [`FUNCTION`].
fn server() -> Server {
    let s = Server::start();
    s.deploy_precompiled(FUNCTION, guest());
    s
}

/// A server that may call `mock`, with the guest deployed.
fn server_for(mock: &Mock) -> Server {
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy_precompiled(FUNCTION, guest());
    s
}

/// Start a scenario; returns the execution id.
fn start(s: &Server, name: &str, params: Value) -> String {
    s.invoke(FUNCTION, &scenario(name, params))
}

/// Run a scenario to its end: (execution, history). The history starts with the input.
fn run(s: &Server, name: &str, params: Value) -> (Value, Vec<Value>) {
    let input = scenario(name, params);
    let id = s.invoke(FUNCTION, &input);
    let ex = s.wait_done(&id);
    let h = s.history(&id);
    assert_eq!(h[0]["event_type"], "ExecutionStarted");
    assert_eq!(h[0]["details"]["input"], input);
    (ex, h)
}

/// A fresh string (names, payloads, log markers).
fn unique(prefix: &str) -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{prefix}-{nanos:08x}-{}", N.fetch_add(1, Ordering::SeqCst))
}

/// One event as a line: `event_type` and, for an operation, `sub_type id parent_id name`
/// (`-` for none); then, when the details have them, ` #attempt`, ` !error_type`,
/// ` +next_attempt_delay_ms`, ` duration_ms`, ` timeout=` and ` heartbeat=`.
fn line(e: &Value) -> String {
    let t = e["event_type"].as_str().expect("event_type");
    let mut s = t.to_string();
    if !e["id"].is_null() {
        let f = |k: &str| e[k].as_str().unwrap_or("-").to_string();
        s = format!(
            "{t} {} {} {} {}",
            f("sub_type"),
            f("id"),
            f("parent_id"),
            f("name")
        );
    }
    let d = &e["details"];
    if let Some(a) = d["attempt"].as_u64() {
        s += &format!(" #{a}");
    }
    if let Some(ty) = d["error"]["error_type"].as_str() {
        s += &format!(" !{ty}");
    }
    if let Some(ms) = d["next_attempt_delay_ms"].as_u64() {
        s += &format!(" +{ms}ms");
    }
    if let Some(ms) = d["duration_ms"].as_u64() {
        s += &format!(" {ms}ms");
    }
    if let Some(ms) = d["timeout_ms"].as_u64() {
        s += &format!(" timeout={ms}ms");
    }
    if let Some(ms) = d["heartbeat_timeout_ms"].as_u64() {
        s += &format!(" heartbeat={ms}ms");
    }
    s
}

/// The history is exactly `expected` (see [`line`]), numbered 1..=n, in time order.
fn assert_history<S: AsRef<str>>(h: &[Value], expected: &[S]) {
    let got: Vec<String> = h.iter().map(line).collect();
    let want: Vec<String> = expected.iter().map(|s| s.as_ref().to_string()).collect();
    assert_eq!(got, want, "history");
    let ids: Vec<u64> = h.iter().map(|e| e["event_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=h.len() as u64).collect::<Vec<_>>(), "event ids");
    let times: Vec<i64> = h.iter().map(ts).collect();
    assert!(
        times.windows(2).all(|w| w[0] <= w[1]),
        "timestamps go back: {times:?}"
    );
}

/// An RFC 3339 timestamp in unix milliseconds.
fn ms_of(text: &str) -> i64 {
    let t = time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|e| panic!("timestamp {text:?}: {e}"));
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

/// The event's timestamp in unix milliseconds.
fn ts(e: &Value) -> i64 {
    ms_of(e["timestamp"].as_str().expect("timestamp"))
}

/// Milliseconds from event `a` to event `b`.
fn gap(h: &[Value], a: usize, b: usize) -> i64 {
    ts(&h[b]) - ts(&h[a])
}

/// `details` has the key (a recorded `null` is not a missing value).
fn has(details: &Value, key: &str) -> bool {
    details.as_object().is_some_and(|d| d.contains_key(key))
}

fn count(h: &[Value], event_type: &str) -> usize {
    h.iter().filter(|e| e["event_type"] == event_type).count()
}

/// Wait until the execution has ended exactly `n` activations and is suspended; returns
/// the history.
fn suspended_after(s: &Server, id: &str, n: usize) -> Vec<Value> {
    s.wait_history(id, |h| count(h, "InvocationCompleted") >= n);
    s.wait_status(id, &["suspended"], Duration::from_secs(30));
    let h = s.history(id);
    assert_eq!(count(&h, "InvocationCompleted"), n, "{:#?}", lines(&h));
    h
}

fn lines(h: &[Value]) -> Vec<String> {
    h.iter().map(line).collect()
}

fn succeed(s: &Server, cb: &str, value: &Value) {
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), value);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["callback_id"], cb);
}

fn fail(s: &Server, cb: &str, error_type: &str, error_message: &str) {
    let (st, v) = s.post(
        &format!("/v1/callbacks/{cb}/fail"),
        &json!({"error_type": error_type, "error_message": error_message}),
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "failed");
}

fn heartbeat(s: &Server, cb: &str) {
    let (st, v) = s.req("POST", &format!("/v1/callbacks/{cb}/heartbeat"), None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "pending");
}

/// A completion the API must refuse with `status` and `code`.
fn refused(s: &Server, cb: &str, action: &str, body: &Value, status: u16, code: &str) {
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/{action}"), body);
    assert_eq!(st, status, "{action} {cb}: {v}");
    assert_eq!(v["error"]["code"], code, "{v}");
}

fn error_of(ex: &Value) -> (&str, &str) {
    (
        ex["error"]["error_type"].as_str().unwrap_or("<none>"),
        ex["error"]["error_message"].as_str().unwrap_or("<none>"),
    )
}

// ---------------------------------------------------------------------------------------
// Steps (1-x)
// ---------------------------------------------------------------------------------------

fn step_1_1_basic_step_succeeds_on_first_attempt() {
    let s = server();
    let (ex, h) = run(&s, "step-basic", json!({"name": "World"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Hello, World!");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - - #1",
            "StepSucceeded Step 1 - - #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[2]["details"]["result"], "Hello, World!");
    assert_eq!(h[4]["details"]["result"], "Hello, World!");
}

fn step_1_2_step_with_name() {
    let s = server();
    let (ex, h) = run(&s, "step-named", json!({"name": "World"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Hello, World!");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - custom_step_name #1",
            "StepSucceeded Step 1 - custom_step_name #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[2]["details"]["result"], "Hello, World!");
}

fn step_1_3_sequential_steps() {
    let s = server();
    let (ex, h) = run(&s, "steps", json!({"count": 2}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 2);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - - #1",
            "StepSucceeded Step 1 - - #1",
            "StepStarted Step 2 - - #1",
            "StepSucceeded Step 2 - - #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[2]["details"]["result"], 0);
    assert_eq!(h[4]["details"]["result"], 1);
}

fn step_1_4_step_returns_a_complex_object() {
    let s = server();
    let value = json!({"user": {"name": "Alice", "tags": ["admin", "active"]}, "count": 2});
    let (ex, h) = run(&s, "child-basic", json!({ "value": value }));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], value);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted RunInChildContext 1 - -",
            "StepStarted Step 1.1 1 - #1",
            "StepSucceeded Step 1.1 1 - #1",
            "ContextSucceeded RunInChildContext 1 - -",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[3]["details"]["result"], value);
    assert_eq!(h[4]["details"]["result"], value);
}

fn step_1_5_step_returns_null() {
    let s = server();
    let (ex, h) = run(&s, "stdout", json!({"text": unique("out")}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "printed");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - - #1",
            "StepSucceeded Step 1 - - #1",
            "WaitStarted Wait 2 - - 50ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 2 - - 50ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert!(has(&h[2]["details"], "result"), "{}", h[2]);
    assert_eq!(h[2]["details"]["result"], Value::Null);
}

fn step_1_7_step_logger_logs_once() {
    let s = server();
    let marker = unique("greeting");
    let input = json!({"marker": marker, "crash_attempts": 0, "max_attempts": 1, "delay_ms": 10});
    let id = start(&s, "at-most-once", input);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "succeeded on second attempt");
    assert_history(
        &s.history(&id),
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - at_most_once_flaky_step #1",
            "StepSucceeded Step 1 - at_most_once_flaky_step #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    let logs = s.logs(&id);
    let mine: Vec<&Value> = logs.iter().filter(|l| l["message"] == marker).collect();
    assert_eq!(mine.len(), 1, "{logs:#?}");
    assert_eq!(mine[0]["level"], "info");
    assert_eq!(mine[0]["stream"], "log");
    assert_eq!(mine[0]["operation_id"], "1");
    assert!(
        !logs.iter().any(|l| l["level"] == "error"),
        "no error lines: {logs:#?}"
    );
}

fn step_1_8_1_9_steps_then_wait_replay_without_re_running_the_steps() {
    let mock = Mock::start();
    mock.release_slow();
    let s = server_for(&mock);
    let (ex, h) = run(&s, "crash-probe", json!({"url": mock.url()}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"before": 200, "slow": 200, "after": 200})
    );
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - before #1",
            "StepSucceeded Step 1 - before #1",
            "StepStarted Step 2 - slow #1",
            "StepSucceeded Step 2 - slow #1",
            "WaitStarted Wait 3 - - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 3 - - 100ms",
            "StepStarted Step 4 - after #1",
            "StepSucceeded Step 4 - after #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert!(gap(&h, 5, 7) >= 100, "the wait lasted {} ms", gap(&h, 5, 7));
    // The function ran twice; the replay took both steps' results from the journal.
    assert_eq!(mock.count("/hit/before"), 1);
    assert_eq!(mock.count("/slow"), 1);
    assert_eq!(mock.count("/hit/after"), 1);
}

fn step_1_10_replay_rethrows_the_failed_step() {
    let s = server();
    let (ex, h) = run(&s, "step-fail-then-wait", json!({"wait_ms": 100}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "done");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - failing #1",
            "StepFailed Step 1 - failing #1 !StepError",
            "WaitStarted Wait 2 - - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 2 - - 100ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[2]["details"]["error"]["error_message"], "step failed");
    assert!(!has(&h[2]["details"], "next_attempt_delay_ms"));
}

fn step_1_11_retry_fails_then_succeeds() {
    let s = server();
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 1, "max_attempts": 3, "delay_ms": 50}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Operation succeeded");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !TransientError +50ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #2",
            "StepSucceeded Step 1 - flaky #2",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(
        h[2]["details"]["error"]["error_message"],
        "attempt 1 failed"
    );
    assert!(gap(&h, 2, 4) >= 50, "retried after {} ms", gap(&h, 2, 4));
    assert_eq!(h[5]["details"]["result"], "Operation succeeded");
}

fn step_1_12_retry_exhaustion_fails_the_execution() {
    let s = server();
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 99, "max_attempts": 4, "delay_ms": 20}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("TransientError", "attempt 4 failed"));
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !TransientError +20ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #2",
            "StepFailed Step 1 - flaky #2 !TransientError +20ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #3",
            "StepFailed Step 1 - flaky #3 !TransientError +20ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #4",
            "StepFailed Step 1 - flaky #4 !TransientError",
            "InvocationCompleted",
            "ExecutionFailed !TransientError",
        ],
    );
    for (failed, next) in [(2, 4), (5, 7), (8, 10)] {
        assert!(gap(&h, failed, next) >= 20, "{}", gap(&h, failed, next));
    }
    assert_eq!(
        h[11]["details"]["error"]["error_message"],
        "attempt 4 failed"
    );
}

fn step_1_14_retry_with_custom_backoff() {
    let s = server();
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 2, "max_attempts": 5, "delay_ms": 20, "backoff_rate": 3.0}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Operation succeeded");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !TransientError +20ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #2",
            "StepFailed Step 1 - flaky #2 !TransientError +60ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #3",
            "StepSucceeded Step 1 - flaky #3",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert!(gap(&h, 2, 4) >= 20, "{}", gap(&h, 2, 4));
    assert!(gap(&h, 5, 7) >= 60, "{}", gap(&h, 5, 7));
}

fn step_1_15_retry_on_a_specific_error_type() {
    let s = server();
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 1, "max_attempts": 3, "delay_ms": 20,
               "retry_on": ["TransientError"]}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "Operation succeeded");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !TransientError +20ms",
            "InvocationCompleted",
            "StepStarted Step 1 - flaky #2",
            "StepSucceeded Step 1 - flaky #2",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert!(gap(&h, 2, 4) >= 20, "{}", gap(&h, 2, 4));
}

fn step_1_16_non_retryable_error_fails_without_retry() {
    let s = server();
    // Listed in never_retry_on.
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 1, "max_attempts": 3, "delay_ms": 20,
               "never_retry_on": ["TransientError"]}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("TransientError", "attempt 1 failed"));
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !TransientError",
            "InvocationCompleted",
            "ExecutionFailed !TransientError",
        ],
    );
    // Not listed in retry_on.
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 1, "max_attempts": 3, "delay_ms": 20,
               "retry_on": ["TransientError"], "error_type": "PermanentError"}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("PermanentError", "attempt 1 failed"));
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !PermanentError",
            "InvocationCompleted",
            "ExecutionFailed !PermanentError",
        ],
    );
}

fn step_1_17_at_most_once_interrupted_without_retry() {
    let s = server();
    let marker = unique("amo");
    let input = json!({"marker": marker, "crash_attempts": 1, "max_attempts": 1, "delay_ms": 10});
    let id = start(&s, "at-most-once", input);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    let (ty, message) = error_of(&ex);
    assert_eq!(ty, "Runtime.Trap", "{ex}");
    assert!(message.contains("unreachable"), "{message}");
    let h = s.history(&id);
    // The trapped activation, the host's record of the interrupted attempt, then a
    // replay that sees the step failed for good.
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - at_most_once_flaky_step #1",
            "InvocationCompleted !Runtime.Trap",
            "StepFailed Step 1 - at_most_once_flaky_step #1 !Runtime.Trap",
            "InvocationCompleted",
            "ExecutionFailed !Runtime.Trap",
        ],
    );
    let logs = s.logs(&id);
    let hits = logs.iter().filter(|l| l["message"] == marker).count();
    assert_eq!(hits, 1, "the body ran once: {logs:#?}");
}

fn step_1_18_at_most_once_interrupted_then_retried() {
    let s = server();
    let marker = unique("amo");
    let input = json!({"marker": marker, "crash_attempts": 1, "max_attempts": 3, "delay_ms": 50});
    let id = start(&s, "at-most-once", input);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "succeeded on second attempt");
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - at_most_once_flaky_step #1",
            "InvocationCompleted !Runtime.Trap",
            "StepFailed Step 1 - at_most_once_flaky_step #1 !Runtime.Trap +50ms",
            "StepStarted Step 1 - at_most_once_flaky_step #2",
            "StepSucceeded Step 1 - at_most_once_flaky_step #2",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert!(gap(&h, 3, 4) >= 50, "retried after {} ms", gap(&h, 3, 4));
    assert_eq!(h[5]["details"]["result"], "succeeded on second attempt");
    let logs = s.logs(&id);
    let hits = logs.iter().filter(|l| l["message"] == marker).count();
    assert_eq!(hits, 2, "once per attempt: {logs:#?}");
}

fn step_1_19_step_fails_permanently() {
    let s = server();
    let (ex, h) = run(
        &s,
        "step-retry",
        json!({"fail_times": 1, "max_attempts": 1, "delay_ms": 10, "error_type": "StepError"}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("StepError", "attempt 1 failed"));
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - flaky #1",
            "StepFailed Step 1 - flaky #1 !StepError",
            "InvocationCompleted",
            "ExecutionFailed !StepError",
        ],
    );
    assert_eq!(
        h[2]["details"]["error"]["error_message"],
        "attempt 1 failed"
    );
}

fn step_1_20_error_caught_and_handled() {
    let s = server();
    let (ex, h) = run(&s, "step-fail-caught", Value::Null);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "fallback_result");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - failing #1",
            "StepFailed Step 1 - failing #1 !StepError",
            "StepStarted Step 2 - fallback #1",
            "StepSucceeded Step 2 - fallback #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[2]["details"]["error"]["error_message"], "always fails");
    assert_eq!(h[4]["details"]["result"], "fallback_result");
}

// ---------------------------------------------------------------------------------------
// Waits (2-x)
// ---------------------------------------------------------------------------------------

/// The wait at `started` ends exactly `duration` after it started, and its
/// `WaitSucceeded` at `done` is not early.
fn assert_wait_timing(h: &[Value], started: usize, done: usize, duration: i64) {
    let end = ms_of(h[started]["details"]["scheduled_end"].as_str().unwrap());
    assert_eq!(end - ts(&h[started]), duration, "{}", h[started]);
    assert!(ts(&h[done]) >= end, "completed early: {}", h[done]);
}

fn wait_2_1_basic_wait() {
    let s = server();
    let (ex, h) = run(&s, "wait", json!({"ms": 100}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "waited");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "WaitStarted Wait 1 - - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 1 - - 100ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_wait_timing(&h, 1, 3, 100);
}

fn wait_2_2_named_wait() {
    let s = server();
    let (ex, h) = run(&s, "wait", json!({"ms": 100, "name": "custom_wait_name"}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "waited");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "WaitStarted Wait 1 - custom_wait_name 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 1 - custom_wait_name 100ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_wait_timing(&h, 1, 3, 100);
}

fn wait_2_3_sequential_waits() {
    let s = server();
    let (ex, h) = run(&s, "waits", json!({"ms": [60, 80]}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 2);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "WaitStarted Wait 1 - - 60ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 1 - - 60ms",
            "WaitStarted Wait 2 - - 80ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 2 - - 80ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_wait_timing(&h, 1, 3, 60);
    assert_wait_timing(&h, 4, 6, 80);
}

/// A long wait: recorded with its duration, the execution suspends with nothing resident.
fn long_wait_suspends(ms: u64) {
    let s = server();
    let id = start(&s, "wait", json!({ "ms": ms }));
    let h = suspended_after(&s, &id, 1);
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("WaitStarted Wait 1 - - {ms}ms"),
            "InvocationCompleted".to_string(),
        ],
    );
    let end = ms_of(h[1]["details"]["scheduled_end"].as_str().unwrap());
    assert_eq!(end - ts(&h[1]), ms as i64);
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
    let ex = s.execution(&id);
    assert_eq!(ex["status"], "suspended", "{ex}");
    assert_eq!(ex["output"], Value::Null);
}

fn wait_2_4_one_minute_wait_suspends() {
    long_wait_suspends(60_000);
}

fn wait_2_5_one_hour_wait_suspends() {
    long_wait_suspends(3_600_000);
}

// ---------------------------------------------------------------------------------------
// Wait for condition (6-x): the YAML cases run in `reference_cases`; this one shows the
// guest unloaded between checks (a durable timer), a host crash meanwhile, and the exact
// history with its delays.
// ---------------------------------------------------------------------------------------

/// Whether `text` is an RFC 9562 version 4 UUID in lowercase hyphenated form.
fn is_uuid_v4(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.iter().map(|p| p.len()).collect::<Vec<_>>() == [8, 4, 4, 4, 12]
        && text
            .chars()
            .all(|c| c == '-' || c.is_ascii_digit() || ('a'..='f').contains(&c))
        && parts[2].starts_with('4')
        && parts[3].starts_with(['8', '9', 'a', 'b'])
}

/// Deterministic values (DESIGN.md section 11): `now`, `random` and `uuid` read before a
/// wait are recomputed by the replay after it from the journal, identical to what the first
/// run read (checkpointed in step `seen`); each is an ordinary step with its reserved name.
fn deterministic_values_are_recorded_once_and_replayed() {
    let s = server();
    let before = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let (ex, h) = run(&s, "deterministic", json!({"wait_ms": 100}));
    let after = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let out = &ex["output"];
    let seen = &out["seen"];
    assert_eq!(
        out["replayed"], *seen,
        "the replay returned other values: {out}"
    );
    let now = seen["now_ms"].as_u64().expect("now_ms");
    assert!(
        (before..=after).contains(&now),
        "now {now} not in [{before}, {after}]"
    );
    let later = out["later_ms"].as_u64().expect("later_ms");
    assert!(
        later >= now + 100,
        "now after the 100 ms wait: {later} vs {now}"
    );
    assert!(
        seen["random_n"].as_u64().expect("random_n") < 1 << 53,
        "{seen}"
    );
    let uuid = seen["uuid"].as_str().expect("uuid");
    assert!(is_uuid_v4(uuid), "not a v4 UUID: {uuid}");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - durable.now #1",
            "StepSucceeded Step 1 - durable.now #1",
            "StepStarted Step 2 - durable.random #1",
            "StepSucceeded Step 2 - durable.random #1",
            "StepStarted Step 3 - durable.uuid #1",
            "StepSucceeded Step 3 - durable.uuid #1",
            "StepStarted Step 4 - seen #1",
            "StepSucceeded Step 4 - seen #1",
            "WaitStarted Wait 5 - - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 5 - - 100ms",
            "StepStarted Step 6 - durable.now #1",
            "StepSucceeded Step 6 - durable.now #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    // The journal holds the raw values: milliseconds, the 53-bit integer, the UUID text.
    assert_eq!(h[2]["details"]["result"], seen["now_ms"]);
    assert_eq!(h[4]["details"]["result"], seen["random_n"]);
    assert_eq!(h[6]["details"]["result"], seen["uuid"]);
    assert_eq!(h[13]["details"]["result"], out["later_ms"]);
    // Two runs draw different values.
    let (again, _) = run(&s, "deterministic", json!({"wait_ms": 0}));
    assert_ne!(again["output"]["seen"]["uuid"], seen["uuid"], "{again}");
}

fn wait_for_condition_6_1_6_5_unloaded_between_checks_and_survives_a_crash() {
    let mut s = server();
    let params = json!({"kind": "count", "threshold": 3, "delay_ms": 1500, "name": "poll"});
    let want = [
        "ExecutionStarted",
        "StepStarted WaitForCondition 1 - poll #1",
        "StepSucceeded WaitForCondition 1 - poll #1 +1500ms",
        "InvocationCompleted",
        "StepStarted WaitForCondition 1 - poll #2",
        "StepSucceeded WaitForCondition 1 - poll #2 +1500ms",
        "InvocationCompleted",
        "StepStarted WaitForCondition 1 - poll #3",
        "StepSucceeded WaitForCondition 1 - poll #3",
        "InvocationCompleted",
        "ExecutionSucceeded",
    ];
    let id = start(&s, "wait-for-condition", params);
    let h = suspended_after(&s, &id, 1);
    assert_history(&h, &want[..4]);
    assert_eq!(h[2]["details"]["result"], 1, "the new state is recorded");
    assert_eq!(s.metric("durable_resident_instances"), 0.0, "unloaded");
    // The next check's timer is durable: it fires after a kill -9 and restart.
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 3);
    let h = s.history(&id);
    assert_history(&h, &want);
    let results: Vec<&Value> = h
        .iter()
        .filter(|e| e["event_type"] == "StepSucceeded")
        .map(|e| &e["details"]["result"])
        .collect();
    assert_eq!(results, [&json!(1), &json!(2), &json!(3)]);
    // Each check waited out its delay.
    assert!(ts(&h[4]) - ts(&h[2]) >= 1500, "{:#?}", lines(&h));
    assert!(ts(&h[7]) - ts(&h[5]) >= 1500, "{:#?}", lines(&h));
}

// ---------------------------------------------------------------------------------------
// Callbacks (4-x)
// ---------------------------------------------------------------------------------------

/// Start the `callback` scenario, wait for its first suspension: (execution id,
/// callback id).
fn start_callback(s: &Server, params: Value) -> (String, String) {
    let id = start(s, "callback", params);
    suspended_after(s, &id, 1);
    let cb = s.callback_ids(&id, 1).remove(0);
    assert!(!cb.is_empty());
    (id, cb)
}

fn callback_4_1_success() {
    let s = server();
    let name = unique("cb");
    let payload = json!(unique("payload"));
    let (id, cb) = start_callback(&s, json!({ "name": name }));
    assert_history(
        &s.history(&id),
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
        ],
    );
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
            format!("CallbackSucceeded Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
            "ExecutionSucceeded".to_string(),
        ],
    );
    assert_eq!(h[1]["details"]["callback_id"], cb.as_str());
    assert_eq!(h[3]["details"]["result"], payload);
    // A completed callback cannot be completed again, either way.
    refused(&s, &cb, "succeed", &json!("again"), 409, "conflict");
    refused(
        &s,
        &cb,
        "fail",
        &json!({"error_type": "X", "error_message": "y"}),
        409,
        "conflict",
    );
    assert_eq!(s.history(&id).len(), h.len(), "nothing more was recorded");
}

fn callback_4_2_explicit_name() {
    let s = server();
    let payload = json!({"approved": true, "by": unique("user")});
    let (id, cb) = start_callback(&s, json!({"name": "approval"}));
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "CallbackStarted Callback 1 - approval",
            "InvocationCompleted",
            "CallbackSucceeded Callback 1 - approval",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[3]["details"]["result"], payload);
}

fn callback_4_3_timeout() {
    let s = server();
    let name = unique("cb");
    let (ex, h) = run(&s, "callback", json!({"name": name, "timeout_ms": 200}));
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex).0, "Callback.Timeout", "{ex}");
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name} timeout=200ms"),
            "InvocationCompleted".to_string(),
            format!("CallbackTimedOut Callback 1 - {name} !Callback.Timeout"),
            "InvocationCompleted".to_string(),
            "ExecutionFailed !Callback.Timeout".to_string(),
        ],
    );
    assert!(gap(&h, 1, 3) >= 200, "timed out after {} ms", gap(&h, 1, 3));
    let cb = h[1]["details"]["callback_id"].as_str().unwrap();
    refused(&s, cb, "succeed", &json!(1), 409, "conflict");
}

fn callback_4_4_heartbeat_timeout() {
    let s = server();
    let name = unique("cb");
    let (ex, h) = run(
        &s,
        "callback",
        json!({"name": name, "heartbeat_timeout_ms": 200}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex).0, "Callback.HeartbeatTimeout", "{ex}");
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name} heartbeat=200ms"),
            "InvocationCompleted".to_string(),
            format!("CallbackTimedOut Callback 1 - {name} !Callback.HeartbeatTimeout"),
            "InvocationCompleted".to_string(),
            "ExecutionFailed !Callback.HeartbeatTimeout".to_string(),
        ],
    );
    assert!(gap(&h, 1, 3) >= 200, "timed out after {} ms", gap(&h, 1, 3));
}

fn callback_4_5_heartbeats_keep_it_alive_then_success() {
    let s = server();
    let name = unique("cb");
    let payload = json!(unique("payload"));
    let (id, cb) = start_callback(&s, json!({"name": name, "heartbeat_timeout_ms": 600}));
    // Twice the heartbeat timeout, with a heartbeat every 100 ms.
    for _ in 0..12 {
        std::thread::sleep(Duration::from_millis(100));
        heartbeat(&s, &cb);
    }
    let h = s.history(&id);
    assert_eq!(count(&h, "CallbackTimedOut"), 0, "{:#?}", lines(&h));
    assert_eq!(s.execution(&id)["status"], "suspended");
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name} heartbeat=600ms"),
            "InvocationCompleted".to_string(),
            format!("CallbackSucceeded Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
            "ExecutionSucceeded".to_string(),
        ],
    );
    assert!(
        gap(&h, 1, 3) > 600,
        "alive past its heartbeat timeout: {} ms",
        gap(&h, 1, 3)
    );
    assert_eq!(h[3]["details"]["result"], payload);
}

fn callback_4_6_failure_fails_the_execution() {
    let s = server();
    let name = unique("cb");
    let (id, cb) = start_callback(&s, json!({ "name": name }));
    fail(&s, &cb, "RejectedError", "not approved");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("RejectedError", "not approved"));
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
            format!("CallbackFailed Callback 1 - {name} !RejectedError"),
            "InvocationCompleted".to_string(),
            "ExecutionFailed !RejectedError".to_string(),
        ],
    );
    assert_eq!(h[3]["details"]["error"]["error_message"], "not approved");
}

/// `callback-then-wait` with the callback resolved by `complete` while the wait runs.
fn callback_during_wait(complete: impl FnOnce(&Server, &str)) -> (Value, Vec<Value>) {
    let s = server();
    // Long enough that the completion is journaled by its own activation first.
    let id = start(&s, "callback-then-wait", json!({"wait_ms": 800}));
    suspended_after(&s, &id, 1);
    let cb = s.callback_ids(&id, 1).remove(0);
    complete(&s, &cb);
    let ex = s.wait_done(&id);
    let h = s.history(&id);
    (ex, h)
}

fn callback_4_9_completed_during_a_wait_before_it_is_awaited() {
    let payload = json!({"ok": unique("v")});
    let p = payload.clone();
    let (ex, h) = callback_during_wait(move |s, cb| succeed(s, cb, &p));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], payload);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "CallbackStarted Callback 1 - cb",
            "WaitStarted Wait 2 - - 800ms",
            "InvocationCompleted",
            "CallbackSucceeded Callback 1 - cb",
            "InvocationCompleted",
            "WaitSucceeded Wait 2 - - 800ms",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(h[4]["details"]["result"], payload);
    assert_wait_timing(&h, 2, 6, 800);
}

fn callback_4_10_failed_during_a_wait_before_it_is_awaited() {
    let (ex, h) = callback_during_wait(|s, cb| fail(s, cb, "RejectedError", "not approved"));
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("RejectedError", "not approved"));
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "CallbackStarted Callback 1 - cb",
            "WaitStarted Wait 2 - - 800ms",
            "InvocationCompleted",
            "CallbackFailed Callback 1 - cb !RejectedError",
            "InvocationCompleted",
            "WaitSucceeded Wait 2 - - 800ms",
            "InvocationCompleted",
            "ExecutionFailed !RejectedError",
        ],
    );
    assert_wait_timing(&h, 2, 6, 800);
}

fn callback_4_13_failure_caught() {
    let s = server();
    let name = unique("cb");
    let (id, cb) = start_callback(&s, json!({"name": name, "catch": true}));
    fail(&s, &cb, "RejectedError", "not approved");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"caught": {"error_type": "RejectedError", "error_message": "not approved"}})
    );
    assert_history(
        &s.history(&id),
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name}"),
            "InvocationCompleted".to_string(),
            format!("CallbackFailed Callback 1 - {name} !RejectedError"),
            "InvocationCompleted".to_string(),
            "ExecutionSucceeded".to_string(),
        ],
    );
}

fn callback_4_14_timeout_caught() {
    let s = server();
    let name = unique("cb");
    let (ex, h) = run(
        &s,
        "callback",
        json!({"name": name, "timeout_ms": 200, "catch": true}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["caught"]["error_type"], "Callback.Timeout");
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("CallbackStarted Callback 1 - {name} timeout=200ms"),
            "InvocationCompleted".to_string(),
            format!("CallbackTimedOut Callback 1 - {name} !Callback.Timeout"),
            "InvocationCompleted".to_string(),
            "ExecutionSucceeded".to_string(),
        ],
    );
    assert_eq!(
        ex["output"]["caught"]["error_message"],
        h[3]["details"]["error"]["error_message"]
    );
}

/// `callback-two` (awaits a, then b), completed in the order given.
fn two_callbacks(a_first: bool) {
    let s = server();
    let (a, b) = (unique("a"), unique("b"));
    let (pa, pb) = (json!(unique("pa")), json!(unique("pb")));
    let id = start(&s, "callback-two", json!({"a": a, "b": b}));
    suspended_after(&s, &id, 1);
    let ids = s.callback_ids(&id, 2);
    let (cb_a, cb_b) = (ids[0].clone(), ids[1].clone());
    assert_ne!(cb_a, cb_b);
    let started = [
        "ExecutionStarted".to_string(),
        format!("CallbackStarted Callback 1 - {a}"),
        format!("CallbackStarted Callback 2 - {b}"),
        "InvocationCompleted".to_string(),
    ];
    assert_history(&s.history(&id), &started);
    let done_a = format!("CallbackSucceeded Callback 1 - {a}");
    let done_b = format!("CallbackSucceeded Callback 2 - {b}");
    let (first, first_value, second, second_value, first_line, second_line) = if a_first {
        (&cb_a, &pa, &cb_b, &pb, done_a, done_b)
    } else {
        (&cb_b, &pb, &cb_a, &pa, done_b, done_a)
    };
    succeed(&s, first, first_value);
    // The activation it caused ends (the other callback is still pending) before the
    // second completion.
    suspended_after(&s, &id, 2);
    // Completing it again is a conflict while the execution still runs.
    refused(&s, first, "succeed", &json!("again"), 409, "conflict");
    succeed(&s, second, second_value);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!([pa, pb]));
    let h = s.history(&id);
    let mut want = started.to_vec();
    want.extend([
        first_line,
        "InvocationCompleted".to_string(),
        second_line,
        "InvocationCompleted".to_string(),
        "ExecutionSucceeded".to_string(),
    ]);
    assert_history(&h, &want);
    assert_eq!(h[4]["details"]["result"], *first_value);
    assert_eq!(h[6]["details"]["result"], *second_value);
}

fn callback_4_18_two_callbacks_completed_in_order() {
    two_callbacks(true);
}

fn callback_4_19_two_callbacks_completed_in_reverse_order() {
    two_callbacks(false);
}

fn callback_api_unknown_ids_are_404() {
    let s = server();
    let unknown = "cb_00000000000000000000000000000000";
    refused(&s, unknown, "succeed", &json!(1), 404, "not_found");
    refused(
        &s,
        unknown,
        "fail",
        &json!({"error_type": "X", "error_message": "y"}),
        404,
        "not_found",
    );
    let (st, v) = s.req("POST", &format!("/v1/callbacks/{unknown}/heartbeat"), None);
    assert_eq!(st, 404, "{v}");
    assert_eq!(v["error"]["code"], "not_found");
    // A real one is still accepted afterwards.
    let (id, cb) = start_callback(&s, json!({}));
    succeed(&s, &cb, &json!(7));
    assert_eq!(s.wait_done(&id)["output"], json!({"result": 7}));
}

// ---------------------------------------------------------------------------------------
// Wait for callback (7-x)
// ---------------------------------------------------------------------------------------

/// The first activation of a `wait-for-callback` named `name`.
fn wfc_started(name: &str, callback_extra: &str) -> Vec<String> {
    vec![
        "ExecutionStarted".to_string(),
        format!("ContextStarted WaitForCallback 1 - {name}"),
        format!("CallbackStarted Callback 1.1 1 -{callback_extra}"),
        "StepStarted Step 1.2 1 submitter #1".to_string(),
        "StepSucceeded Step 1.2 1 submitter #1".to_string(),
        "InvocationCompleted".to_string(),
    ]
}

/// Start `wait-for-callback`, wait for its first suspension: (execution id, callback id).
fn start_wfc(s: &Server, params: Value) -> (String, String) {
    let id = start(s, "wait-for-callback", params);
    suspended_after(s, &id, 1);
    let cb = s.callback_ids(&id, 1).remove(0);
    (id, cb)
}

fn with(mut base: Vec<String>, more: &[String]) -> Vec<String> {
    base.extend_from_slice(more);
    base
}

fn wait_for_callback_7_1_basic() {
    let mock = Mock::start();
    let s = server_for(&mock);
    let name = unique("wfc");
    let payload = json!(unique("payload"));
    let notify = format!("{}/notify", mock.url());
    let (id, cb) = start_wfc(&s, json!({"name": name, "notify_url": notify}));
    assert_history(&s.history(&id), &wfc_started(&name, ""));
    // The submitter handed the callback id to the external system.
    assert_eq!(mock.count("/notify"), 1);
    assert_eq!(mock.bodies("/notify")[0], json!({ "callback_id": cb }));
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started(&name, ""),
            &[
                "CallbackSucceeded Callback 1.1 1 -".to_string(),
                format!("ContextSucceeded WaitForCallback 1 - {name}"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
    assert_eq!(h[6]["details"]["result"], payload);
    assert_eq!(h[7]["details"]["result"], payload);
    assert_eq!(mock.count("/notify"), 1, "the submitter did not run again");
}

fn wait_for_callback_7_2_static_name() {
    let s = server();
    let payload = json!(unique("payload"));
    let (id, cb) = start_wfc(&s, json!({}));
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started("approval", ""),
            &[
                "CallbackSucceeded Callback 1.1 1 -".to_string(),
                "ContextSucceeded WaitForCallback 1 - approval".to_string(),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
    assert_eq!(h[6]["details"]["result"], payload);
}

fn wait_for_callback_7_4_failure_uncaught() {
    let s = server();
    let name = unique("wfc");
    let (id, cb) = start_wfc(&s, json!({ "name": name }));
    fail(&s, &cb, "RejectedError", "not approved");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex), ("RejectedError", "not approved"));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started(&name, ""),
            &[
                "CallbackFailed Callback 1.1 1 - !RejectedError".to_string(),
                format!("ContextFailed WaitForCallback 1 - {name} !RejectedError"),
                "InvocationCompleted".to_string(),
                "ExecutionFailed !RejectedError".to_string(),
            ],
        ),
    );
    assert_eq!(h[6]["details"]["error"]["error_message"], "not approved");
    assert_eq!(h[7]["details"]["error"]["error_message"], "not approved");
}

fn wait_for_callback_7_5_timeout_uncaught() {
    let s = server();
    let name = unique("wfc");
    let (ex, h) = run(
        &s,
        "wait-for-callback",
        json!({"name": name, "timeout_ms": 200}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex).0, "Callback.Timeout");
    assert_history(
        &h,
        &with(
            wfc_started(&name, " timeout=200ms"),
            &[
                "CallbackTimedOut Callback 1.1 1 - !Callback.Timeout".to_string(),
                format!("ContextFailed WaitForCallback 1 - {name} !Callback.Timeout"),
                "InvocationCompleted".to_string(),
                "ExecutionFailed !Callback.Timeout".to_string(),
            ],
        ),
    );
    assert!(gap(&h, 2, 6) >= 200, "timed out after {} ms", gap(&h, 2, 6));
}

fn wait_for_callback_7_6_failure_caught() {
    let s = server();
    let name = unique("wfc");
    let (id, cb) = start_wfc(&s, json!({"name": name, "catch": true}));
    fail(&s, &cb, "RejectedError", "not approved");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"caught": {"error_type": "RejectedError", "error_message": "not approved"}})
    );
    assert_history(
        &s.history(&id),
        &with(
            wfc_started(&name, ""),
            &[
                "CallbackFailed Callback 1.1 1 - !RejectedError".to_string(),
                format!("ContextFailed WaitForCallback 1 - {name} !RejectedError"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
}

fn wait_for_callback_7_7_submitter_retry_exhaustion() {
    let s = server();
    let (ex, h) = run(
        &s,
        "wait-for-callback-submitter-fails",
        json!({"max_attempts": 2, "delay_ms": 30}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(
        error_of(&ex),
        ("SubmitterError", "submitter failed on attempt 2")
    );
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted WaitForCallback 1 - approval",
            "CallbackStarted Callback 1.1 1 -",
            "StepStarted Step 1.2 1 submitter #1",
            "StepFailed Step 1.2 1 submitter #1 !SubmitterError +30ms",
            "InvocationCompleted",
            "StepStarted Step 1.2 1 submitter #2",
            "StepFailed Step 1.2 1 submitter #2 !SubmitterError",
            "ContextFailed WaitForCallback 1 - approval !SubmitterError",
            "InvocationCompleted",
            "ExecutionFailed !SubmitterError",
        ],
    );
    assert!(gap(&h, 4, 6) >= 30, "retried after {} ms", gap(&h, 4, 6));
    // The callback was never completed, and cannot be once the execution is over.
    let cb = h[2]["details"]["callback_id"].as_str().unwrap();
    refused(&s, cb, "succeed", &json!(1), 409, "conflict");
}

fn wait_for_callback_7_11_json_object_result() {
    let s = server();
    let name = unique("wfc");
    let (id, cb) = start_wfc(&s, json!({ "name": name }));
    succeed(&s, &cb, &json!({"status": "approved"}));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({"result": {"status": "approved"}}));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started(&name, ""),
            &[
                "CallbackSucceeded Callback 1.1 1 -".to_string(),
                format!("ContextSucceeded WaitForCallback 1 - {name}"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
    assert_eq!(h[6]["details"]["result"], json!({"status": "approved"}));
}

fn wait_for_callback_7_12_heartbeat_timeout() {
    let s = server();
    let name = unique("wfc");
    let (ex, h) = run(
        &s,
        "wait-for-callback",
        json!({"name": name, "heartbeat_timeout_ms": 200}),
    );
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(error_of(&ex).0, "Callback.HeartbeatTimeout");
    assert_history(
        &h,
        &with(
            wfc_started(&name, " heartbeat=200ms"),
            &[
                "CallbackTimedOut Callback 1.1 1 - !Callback.HeartbeatTimeout".to_string(),
                format!("ContextFailed WaitForCallback 1 - {name} !Callback.HeartbeatTimeout"),
                "InvocationCompleted".to_string(),
                "ExecutionFailed !Callback.HeartbeatTimeout".to_string(),
            ],
        ),
    );
    assert!(gap(&h, 2, 6) >= 200, "timed out after {} ms", gap(&h, 2, 6));
}

fn wait_for_callback_7_13_heartbeat_then_success() {
    let s = server();
    let name = unique("wfc");
    let payload = json!(unique("payload"));
    let (id, cb) = start_wfc(&s, json!({"name": name, "heartbeat_timeout_ms": 2000}));
    heartbeat(&s, &cb);
    // A heartbeat records nothing.
    assert_eq!(s.history(&id).len(), 6);
    succeed(&s, &cb, &payload);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": payload }));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started(&name, " heartbeat=2000ms"),
            &[
                "CallbackSucceeded Callback 1.1 1 -".to_string(),
                format!("ContextSucceeded WaitForCallback 1 - {name}"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
    assert_eq!(h[6]["details"]["result"], payload);
    // Heartbeats after the completion are refused.
    let (st, _) = s.req("POST", &format!("/v1/callbacks/{cb}/heartbeat"), None);
    assert_eq!(st, 409);
}

fn wait_for_callback_7_14_timeout_caught() {
    let s = server();
    let name = unique("wfc");
    let (ex, h) = run(
        &s,
        "wait-for-callback",
        json!({"name": name, "timeout_ms": 200, "catch": true}),
    );
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["caught"]["error_type"], "Callback.Timeout");
    assert_history(
        &h,
        &with(
            wfc_started(&name, " timeout=200ms"),
            &[
                "CallbackTimedOut Callback 1.1 1 - !Callback.Timeout".to_string(),
                format!("ContextFailed WaitForCallback 1 - {name} !Callback.Timeout"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
}

fn wait_for_callback_7_15_empty_payload_is_null() {
    let s = server();
    let name = unique("wfc");
    let (id, cb) = start_wfc(&s, json!({ "name": name }));
    // No body at all.
    let (st, v) = s.req("POST", &format!("/v1/callbacks/{cb}/succeed"), None);
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!({ "result": null }));
    let h = s.history(&id);
    assert_history(
        &h,
        &with(
            wfc_started(&name, ""),
            &[
                "CallbackSucceeded Callback 1.1 1 -".to_string(),
                format!("ContextSucceeded WaitForCallback 1 - {name}"),
                "InvocationCompleted".to_string(),
                "ExecutionSucceeded".to_string(),
            ],
        ),
    );
    assert!(has(&h[6]["details"], "result"), "{}", h[6]);
    assert_eq!(h[6]["details"]["result"], Value::Null);
    assert_eq!(h[7]["details"]["result"], Value::Null);
}

// ---------------------------------------------------------------------------------------
// Child contexts (3-x)
// ---------------------------------------------------------------------------------------

/// A child context (named `name`, `-` for none) with one unnamed step returning `value`.
fn child_with_step(scenario_name: &str, name: &str, value: Value) {
    let s = server();
    let (ex, h) = run(&s, scenario_name, json!({ "value": value }));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], value);
    assert_history(
        &h,
        &[
            "ExecutionStarted".to_string(),
            format!("ContextStarted RunInChildContext 1 - {name}"),
            "StepStarted Step 1.1 1 - #1".to_string(),
            "StepSucceeded Step 1.1 1 - #1".to_string(),
            format!("ContextSucceeded RunInChildContext 1 - {name}"),
            "InvocationCompleted".to_string(),
            "ExecutionSucceeded".to_string(),
        ],
    );
    assert!(has(&h[3]["details"], "result"), "{}", h[3]);
    assert_eq!(h[3]["details"]["result"], value);
    assert!(has(&h[4]["details"], "result"), "{}", h[4]);
    assert_eq!(h[4]["details"]["result"], value);
}

fn child_3_1_basic() {
    child_with_step("child-basic", "-", json!(unique("input")));
}

fn child_3_2_named() {
    child_with_step("child-named", "child", json!(unique("input")));
}

fn child_3_5_error_caught() {
    let s = server();
    let (ex, h) = run(&s, "child-error-caught", Value::Null);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "recovered");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted RunInChildContext 1 - -",
            "StepStarted Step 1.1 1 bad #1",
            "StepFailed Step 1.1 1 bad #1 !ChildError",
            "ContextFailed RunInChildContext 1 - - !ChildError",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(
        h[4]["details"]["error"]["error_message"],
        h[3]["details"]["error"]["error_message"]
    );
}

fn child_3_6_nested() {
    let s = server();
    let (ex, h) = run(&s, "child-nested", Value::Null);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "deep");
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted RunInChildContext 1 - outer",
            "ContextStarted RunInChildContext 1.1 1 inner",
            "StepStarted Step 1.1.1 1.1 deep #1",
            "StepSucceeded Step 1.1.1 1.1 deep #1",
            "ContextSucceeded RunInChildContext 1.1 1 inner",
            "ContextSucceeded RunInChildContext 1 - outer",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    for i in [4, 5, 6] {
        assert_eq!(h[i]["details"]["result"], "deep", "{}", h[i]);
    }
}

fn child_3_10_3_18_step_and_wait_inside_then_step_after() {
    let s = server();
    let (ex, h) = run(&s, "child-wait", json!({"wait_ms": 100}));
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 6);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted RunInChildContext 1 - -",
            "StepStarted Step 1.1 1 inner-1 #1",
            "StepSucceeded Step 1.1 1 inner-1 #1",
            "WaitStarted Wait 1.2 1 - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 1.2 1 - 100ms",
            "StepStarted Step 1.3 1 inner-2 #1",
            "StepSucceeded Step 1.3 1 inner-2 #1",
            "ContextSucceeded RunInChildContext 1 - -",
            "StepStarted Step 2 - after #1",
            "StepSucceeded Step 2 - after #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_wait_timing(&h, 4, 6, 100);
    assert_eq!(h[3]["details"]["result"], 1);
    assert_eq!(h[8]["details"]["result"], 2);
    assert_eq!(h[9]["details"]["result"], 3);
    assert_eq!(h[11]["details"]["result"], 3);
}

fn child_3_12_interrupted_step_is_re_executed_after_a_host_crash() {
    let mock = Mock::start(); // `/slow` is held until released
    let mut s = server_for(&mock);
    let id = start(&s, "crash-probe", json!({"url": mock.url()}));
    mock.wait_count("/slow", 1);
    // The step's start is written without an fsync; the next fsync (any execution's end)
    // makes it durable, so the crash below always finds it.
    let other = start(&s, "echo", json!({"value": 1}));
    assert_eq!(s.wait_done(&other)["status"], "succeeded");
    s.crash_and_restart();
    // After the restart the interrupted (at-least-once) step runs again.
    mock.wait_count("/slow", 2);
    mock.release_slow();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"before": 200, "slow": 200, "after": 200})
    );
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "StepStarted Step 1 - before #1",
            "StepSucceeded Step 1 - before #1",
            "StepStarted Step 2 - slow #1",
            "InvocationCompleted !Runtime.HostRestarted",
            "StepStarted Step 2 - slow #1",
            "StepSucceeded Step 2 - slow #1",
            "WaitStarted Wait 3 - - 100ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 3 - - 100ms",
            "StepStarted Step 4 - after #1",
            "StepSucceeded Step 4 - after #1",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_eq!(
        mock.count("/hit/before"),
        1,
        "a completed step never runs again"
    );
    assert_eq!(mock.count("/slow"), 2);
    assert_eq!(mock.count("/hit/after"), 1);
}

fn child_3_13_3_17_wait_inside_a_child_and_its_log_line_once() {
    let s = server();
    let marker = unique("child-log");
    let id = start(&s, "child-log", json!({ "marker": marker }));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], "ok");
    let h = s.history(&id);
    assert_history(
        &h,
        &[
            "ExecutionStarted",
            "ContextStarted RunInChildContext 1 - -",
            "WaitStarted Wait 1.1 1 - 50ms",
            "InvocationCompleted",
            "WaitSucceeded Wait 1.1 1 - 50ms",
            "ContextSucceeded RunInChildContext 1 - -",
            "InvocationCompleted",
            "ExecutionSucceeded",
        ],
    );
    assert_wait_timing(&h, 2, 4, 50);
    assert_eq!(h[5]["details"]["result"], "ok");
    // The child body ran twice (before and after the wait); its line is logged once.
    let logs = s.logs(&id);
    let mine: Vec<&Value> = logs.iter().filter(|l| l["message"] == marker).collect();
    assert_eq!(mine.len(), 1, "{logs:#?}");
    assert_eq!(mine[0]["level"], "info");
    assert_eq!(mine[0]["operation_id"], Value::Null);
}

fn child_3_16_returning_null() {
    child_with_step("child-basic", "-", Value::Null);
}

/// 9-11 and 8-11: with `max_concurrency` 2 the results are still in index order; the YAML
/// asserts only the batch's `ContextStarted` (branch events may interleave under real
/// concurrency). Here each branch is one iteration context, whatever the order.
fn map_9_11_parallel_8_11_concurrency_keeps_index_order() {
    let s = server();
    let specs = json!([{"value": "r0"}, {"step": "r1"}, {"value": "r2"}]);
    for (scenario_name, key, sub, branch) in [
        ("map", "items", "Map", "MapIteration"),
        ("parallel", "branches", "Parallel", "ParallelBranch"),
    ] {
        let mut params = json!({"name": "concurrent", "max_concurrency": 2});
        params[key] = specs.clone();
        let (ex, h) = run(&s, scenario_name, params);
        assert_eq!(ex["status"], "succeeded", "{scenario_name}: {ex}");
        assert_eq!(ex["output"], json!(["r0", "r1", "r2"]), "{scenario_name}");
        assert_eq!(h[1]["event_type"], "ContextStarted");
        assert_eq!(h[1]["sub_type"], sub);
        let mut started: Vec<&str> = h
            .iter()
            .filter(|e| e["event_type"] == "ContextStarted" && e["sub_type"] == branch)
            .map(|e| e["id"].as_str().unwrap_or(""))
            .collect();
        started.sort();
        assert_eq!(
            started,
            ["1.1", "1.2", "1.3"],
            "{scenario_name}: {:#?}",
            lines(&h)
        );
    }
}

/// DESIGN 11: a host crash (`kill -9`) in the middle of a map whose items wait then run a
/// step: after the restart the map completes with every result in order, and no item that
/// had finished records anything again.
fn map_after_a_host_crash_runs_no_finished_item_again() {
    let mut s = server();
    let items: Vec<Value> = (0..8)
        .map(|i| json!({"wait_ms": 150, "then": {"step": i}}))
        .collect();
    // Two at a time on their own instances, so the crash comes with some finished, some
    // running and some not started.
    let id = start(
        &s,
        "map",
        json!({"name": "crash", "items": items, "max_concurrency": 2}),
    );
    let before = s.wait_history(&id, |h| finished_branches(h).len() >= 2);
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], json!((0..8).collect::<Vec<_>>()));
    let h = s.history(&id);
    let finished = assert_finished_branches_not_rerun(&before, &h);
    assert!(
        finished < 8,
        "the crash came in the middle: {:#?}",
        lines(&h)
    );
    assert_eq!(finished_branches(&h).len(), 8);
}

// ---------------------------------------------------------------------------------------
// The reference cases as data: each row runs a scenario and checks the execution against the
// AWS case's own YAML (its ExpectedResult and ExpectedExecutionHistory), read from
// `shared/reference/aws-durable-conformance/`.
// ---------------------------------------------------------------------------------------

/// Where the reference cases are: `shared/` beside the checkout (the CI's layout too).
fn reference_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference/aws-durable-conformance")
}

/// One reference case: its YAML, the scenario (and params) that implements it here, and
/// the values its `${INPUT_n}` variables take.
struct Case {
    yaml: &'static str,
    scenario: &'static str,
    params: &'static str,
    inputs: &'static [&'static str],
}

/// The cases whose YAML applies as written (durations aside: the YAML's are seconds, ours
/// milliseconds, so only their presence is checked). The other cases of the applicability
/// table are tests of their own above, because they need an external actor (callbacks,
/// crashes) or differ from the YAML.
const CASES: &[Case] = &[
    Case {
        yaml: "step/1-1.yaml",
        scenario: "step-basic",
        params: r#"{"name": "World"}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-2.yaml",
        scenario: "step-named",
        params: r#"{"name": "World"}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-10.yaml",
        scenario: "step-fail-then-wait",
        params: r#"{"wait_ms": 100}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-11.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 1, "max_attempts": 3, "delay_ms": 50}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-12.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 99, "max_attempts": 4, "delay_ms": 20}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-14.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 2, "max_attempts": 5, "delay_ms": 20, "backoff_rate": 3.0}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-15.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 1, "max_attempts": 3, "delay_ms": 20, "retry_on": ["TransientError"]}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-16.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 1, "max_attempts": 3, "delay_ms": 20, "never_retry_on": ["TransientError"]}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-19.yaml",
        scenario: "step-retry",
        params: r#"{"fail_times": 1, "max_attempts": 1, "delay_ms": 10, "error_type": "StepError"}"#,
        inputs: &[],
    },
    Case {
        yaml: "step/1-20.yaml",
        scenario: "step-fail-caught",
        params: "{}",
        inputs: &[],
    },
    Case {
        yaml: "wait/2-1.yaml",
        scenario: "wait",
        params: r#"{"ms": 100}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait/2-2.yaml",
        scenario: "wait",
        params: r#"{"ms": 100, "name": "custom_wait_name"}"#,
        inputs: &[],
    },
    Case {
        yaml: "child/3-1.yaml",
        scenario: "child-basic",
        params: r#"{"value": "k3Lw9x2Q"}"#,
        inputs: &["k3Lw9x2Q"],
    },
    Case {
        yaml: "wait_for_condition/6-1.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 3}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-2.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "initial": 5, "threshold": 5, "increment": 0}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-3.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 2, "name": "poll-status"}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-4.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "initial": 5, "threshold": 8}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-5.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 3, "delay_ms": 40}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-6.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 1000, "max_attempts": 3}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-7.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "raise"}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-8.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "raise", "catch": true}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-9.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "object", "threshold": 2}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-10.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "null"}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-11.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "string", "threshold": 2}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-12.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 2, "then": "step"}"#,
        inputs: &[],
    },
    Case {
        yaml: "wait_for_condition/6-13.yaml",
        scenario: "wait-for-condition",
        params: r#"{"kind": "count", "threshold": 2, "then": "again", "second_threshold": 4}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-1.yaml",
        scenario: "map",
        params: r#"{"name": "map", "items": ["World", "Kiro"], "body": "greet", "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-2.yaml",
        scenario: "map",
        params: r#"{"items": [1, 2], "body": "double", "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-3.yaml",
        scenario: "map",
        params: r#"{"name": "indexed", "items": [10, 20, 30], "body": "add-index", "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-4.yaml",
        scenario: "map",
        params: r#"{"name": "empty", "items": []}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-5.yaml",
        scenario: "map",
        params: r#"{"name": "failfast", "items": [{"value": "ok"}, {"fail": "boom"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 0, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-6.yaml",
        scenario: "map",
        params: r#"{"name": "throw", "items": [{"fail": "boom"}, {"value": "b"}], "max_concurrency": 1, "tolerated_failure_count": 0, "output": "throw"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-7.yaml",
        scenario: "map",
        params: r#"{"name": "min-successful", "items": [{"value": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "min_successful": 2, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-8.yaml",
        scenario: "map",
        params: r#"{"name": "tolerated", "items": [{"value": "a"}, {"fail": "boom"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 1, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-9.yaml",
        scenario: "map",
        params: r#"{"name": "tolerated", "items": [{"fail": "a"}, {"fail": "b"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 1, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-10.yaml",
        scenario: "map",
        params: r#"{"name": "tolerated-pct", "items": [{"fail": "a"}, {"fail": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "tolerated_failure_percentage": 25, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-13.yaml",
        scenario: "map",
        params: r#"{"name": "named-items", "items": [1, 2], "body": "times10", "item_names": true, "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-15.yaml",
        scenario: "map",
        params: r#"{"name": "suspend", "items": [{"step": "r0"}, {"wait_ms": 100, "then": {"step": "r1"}}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-16.yaml",
        scenario: "map",
        params: r#"{"name": "large", "items": [{"bytes": 70000}, {"bytes": 70000}, {"bytes": 70000}, {"bytes": 70000}], "max_concurrency": 1, "output": "counts"}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-17.yaml",
        scenario: "map",
        params: r#"{"name": "then-wait", "items": [{"value": "A"}, {"value": "B"}], "max_concurrency": 1, "then_wait_ms": 100}"#,
        inputs: &[],
    },
    Case {
        yaml: "map/9-18.yaml",
        scenario: "map",
        params: r#"{"name": "fail-then-wait", "items": [{"value": "ok"}, {"fail": "boom"}], "max_concurrency": 1, "tolerated_failure_count": 1, "then_wait_ms": 100, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-1.yaml",
        scenario: "parallel",
        params: r#"{"name": "parallel", "branches": [{"step": "task-1"}, {"step": "task-2"}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-2.yaml",
        scenario: "parallel",
        params: r#"{"branches": [{"value": "alpha"}, {"value": "beta"}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-3.yaml",
        scenario: "parallel",
        params: r#"{"name": "named", "branches": [{"value": "one"}, {"value": "two"}], "branch_names": ["first", "second"], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-4.yaml",
        scenario: "parallel",
        params: r#"{"name": "mixed", "branches": [{"value": "hello"}, {"value": 42}, {"value": {"k": "v"}}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-5.yaml",
        scenario: "parallel",
        params: r#"{"name": "empty", "branches": []}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-6.yaml",
        scenario: "parallel",
        params: r#"{"name": "failfast", "branches": [{"value": "ok"}, {"fail": "boom"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 0, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-7.yaml",
        scenario: "parallel",
        params: r#"{"name": "throw", "branches": [{"fail": "boom"}, {"value": "b"}], "max_concurrency": 1, "tolerated_failure_count": 0, "output": "throw"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-8.yaml",
        scenario: "parallel",
        params: r#"{"name": "min-successful", "branches": [{"value": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "min_successful": 2, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-9.yaml",
        scenario: "parallel",
        params: r#"{"name": "tolerated", "branches": [{"value": "a"}, {"fail": "boom"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 1, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-10.yaml",
        scenario: "parallel",
        params: r#"{"name": "tolerated", "branches": [{"fail": "a"}, {"fail": "b"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 1, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-13.yaml",
        scenario: "parallel",
        params: r#"{"name": "tolerated-pct", "branches": [{"fail": "a"}, {"fail": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "tolerated_failure_percentage": 25, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-14.yaml",
        scenario: "parallel",
        params: r#"{"name": "suspend", "branches": [{"step": "b0"}, {"wait_ms": 100, "then": {"value": "b1"}}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-16.yaml",
        scenario: "parallel",
        params: r#"{"name": "all-fail", "branches": [{"fail": "a"}, {"fail": "b"}, {"fail": "c"}], "max_concurrency": 1, "tolerated_failure_count": 3, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-17.yaml",
        scenario: "parallel",
        params: r#"{"name": "min-not-reached", "branches": [{"value": "a"}, {"fail": "b"}, {"value": "c"}], "max_concurrency": 1, "min_successful": 3, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-18.yaml",
        scenario: "parallel",
        params: r#"{"name": "combined", "branches": [{"fail": "a"}, {"fail": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "min_successful": 3, "tolerated_failure_count": 1, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-19.yaml",
        scenario: "parallel",
        params: r#"{"name": "bad-concurrency", "branches": [{"value": "a"}, {"value": "b"}], "max_concurrency": 0}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-20.yaml",
        scenario: "parallel",
        params: r#"{"name": "accessors", "branches": [{"value": "a"}, {"fail": "b"}, {"value": "c"}], "max_concurrency": 1, "tolerated_failure_count": 1, "output": "accessors"}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-21.yaml",
        scenario: "parallel",
        params: r#"{"name": "outer", "branches": [{"parallel": {"name": "inner", "branches": [{"step": "i1"}, {"step": "i2"}], "max_concurrency": 1}}], "max_concurrency": 1}"#,
        inputs: &[],
    },
    Case {
        yaml: "parallel/8-22.yaml",
        scenario: "parallel",
        params: r#"{"name": "pct-boundary", "branches": [{"fail": "a"}, {"value": "b"}, {"value": "c"}, {"value": "d"}], "max_concurrency": 1, "tolerated_failure_percentage": 25, "output": "summary"}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-1.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "k3Lw9x2Q"}"#,
        inputs: &["k3Lw9x2Q"],
    },
    Case {
        yaml: "invoke/5-2.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "p4yL0ad1", "name": "nm7Q2x"}"#,
        inputs: &["p4yL0ad1"],
    },
    Case {
        yaml: "invoke/5-3.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": {"nested": {"key": "value", "items": [1, 2, 3]}, "source": "test"}}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-4.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target"}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-5.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": {"fail": "TargetError"}}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-6.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": {"fail": "TargetError"}, "catch": true}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-7.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input_bytes": 1000000}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-8.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "t3nAnt0p", "tenant_id": "default"}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-9.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "then": "wait", "wait_ms": 50}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-10.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": {"fail": "TargetError"}, "catch": true, "then": "wait", "wait_ms": 50}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-11.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "from-step", "step_first": true}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-12.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "to-step", "then": "step"}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-13.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "in-child", "child": true}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-14.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "twice", "times": 2}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-15.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "hello", "transform": "upper-input"}"#,
        inputs: &[],
    },
    Case {
        yaml: "invoke/5-16.yaml",
        scenario: "invoke",
        params: r#"{"function": "echo-target", "input": "hello", "transform": "upper-result"}"#,
        inputs: &[],
    },
];

/// `text` with `${INPUT_n}` replaced by the case's inputs.
fn substitute(text: &str, inputs: &[&str]) -> String {
    let mut out = text.to_string();
    for (i, v) in inputs.iter().enumerate() {
        out = out.replace(&format!("${{INPUT_{}}}", i + 1), v);
    }
    out
}

/// Whether our `value` matches the YAML's `want`: `*` is anything present; `${/.*X$/}` a
/// suffix; `${NAME}` a placeholder bound to the first value it meets (and no two
/// placeholders to one value); anything else equal, after substitution.
fn matches(
    want: &str,
    value: Option<String>,
    binds: &mut std::collections::HashMap<String, String>,
    inputs: &[&str],
) -> Result<(), String> {
    let want = substitute(want, inputs);
    let Some(value) = value else {
        return Err(format!("missing, expected {want:?}"));
    };
    if want == "*" {
        return Ok(());
    }
    if let Some(re) = want.strip_prefix("${/").and_then(|w| w.strip_suffix("/}")) {
        let suffix = re.trim_start_matches(".*").trim_end_matches('$');
        return if value.ends_with(suffix) {
            Ok(())
        } else {
            Err(format!("{value:?} does not match /{re}/"))
        };
    }
    if let Some(name) = want.strip_prefix("${").and_then(|w| w.strip_suffix('}')) {
        if let Some(bound) = binds.get(name) {
            return if *bound == value {
                Ok(())
            } else {
                Err(format!("{value:?}, but {name} is {bound:?}"))
            };
        }
        if let Some((other, _)) = binds.iter().find(|(_, v)| **v == value) {
            return Err(format!("{value:?} is already {other}, not {name}"));
        }
        binds.insert(name.to_string(), value);
        return Ok(());
    }
    if want == value {
        Ok(())
    } else {
        Err(format!("{value:?}, expected {want:?}"))
    }
}

/// A YAML scalar as text.
fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Our JSON value as the YAML would write it: strings bare, the rest as JSON.
fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

/// The differences between one of our events and the YAML's.
fn event_diff(
    want: &serde_yaml::Value,
    got: &Value,
    binds: &mut std::collections::HashMap<String, String>,
    inputs: &[&str],
) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: &str, want: Option<String>, got: Option<String>| {
        if let Some(w) = want {
            if let Err(e) = matches(&w, got, binds, inputs) {
                diffs.push(format!("{what}: {e}"));
            }
        }
    };
    let field = |k: &str| want.get(k).and_then(scalar);
    let ours = |k: &str| got[k].as_str().map(str::to_string);
    check("EventType", field("EventType"), ours("event_type"));
    check("SubType", field("SubType"), ours("sub_type"));
    check("Id", field("Id"), ours("id"));
    check("ParentId", field("ParentId"), ours("parent_id"));
    check("Name", field("Name"), ours("name"));
    let event_type = field("EventType").unwrap_or_default();
    let details = want.get(format!("{event_type}Details").as_str());
    let d = &got["details"];
    let at = |path: &[&str]| -> Option<String> {
        let mut v = details?;
        for k in path {
            v = v.get(*k)?;
        }
        scalar(v)
    };
    check(
        "ErrorType",
        at(&["Error", "Payload", "ErrorType"]),
        d["error"]["error_type"].as_str().map(str::to_string),
    );
    check(
        "ErrorMessage",
        at(&["Error", "Payload", "ErrorMessage"]),
        d["error"]["error_message"].as_str().map(str::to_string),
    );
    check(
        "CurrentAttempt",
        at(&["RetryDetails", "CurrentAttempt"]),
        d["attempt"].as_u64().map(|n| n.to_string()),
    );
    // Seconds there, milliseconds here: present or not.
    let present = |b: bool| Some(if b { "yes" } else { "no" }.to_string());
    if at(&["RetryDetails", "NextAttemptDelaySeconds"]).is_some() {
        check(
            "NextAttemptDelay",
            Some("yes".into()),
            present(has(d, "next_attempt_delay_ms")),
        );
    }
    if at(&["Duration"]).is_some() {
        check(
            "Duration",
            Some("yes".into()),
            present(has(d, "duration_ms")),
        );
    }
    if let Some(payload) = at(&["Result", "Payload"]) {
        if let Some(e) = payload_diff(&payload, d, "result", binds, inputs) {
            diffs.push(format!("Result: {e}"));
        }
    }
    // Chained invokes (invoke/): the callee's function, input, version and execution id.
    let ours_text = |k: &str| match &d[k] {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    };
    for (theirs, key) in [
        ("FunctionName", "function_name"),
        ("ExecutedVersion", "executed_version"),
        ("DurableExecutionArn", "durable_execution_id"),
        ("TenantId", "tenant_id"),
    ] {
        if let Some(w) = at(&[theirs]) {
            if let Err(e) = matches(&w, ours_text(key), binds, inputs) {
                diffs.push(format!("{theirs}: {e}"));
            }
        }
    }
    for (theirs, key) in [("Input", "input"), ("Error", "error"), ("Result", "result")] {
        if at(&[theirs]).as_deref() == Some("*") && !has(d, key) {
            diffs.push(format!("{theirs}: missing"));
        }
    }
    if let Some(payload) = at(&["Input", "Payload"]) {
        if let Some(e) = payload_diff(&payload, d, "input", binds, inputs) {
            diffs.push(format!("Input: {e}"));
        }
    }
    diffs
}

/// A YAML `Payload` (JSON text; `*` is anything present, `"${NAME}"` a placeholder for a
/// string) against our `details[key]`: the difference, if any.
fn payload_diff(
    want: &str,
    d: &Value,
    key: &str,
    binds: &mut std::collections::HashMap<String, String>,
    inputs: &[&str],
) -> Option<String> {
    let want = substitute(want, inputs);
    let got = &d[key];
    if want == "*" {
        return (!has(d, key)).then(|| "missing".to_string());
    }
    if let Some(inner) = want
        .strip_prefix('"')
        .and_then(|w| w.strip_suffix('"'))
        .filter(|w| w.starts_with("${"))
    {
        return matches(inner, got.as_str().map(str::to_string), binds, inputs).err();
    }
    let expected: Value = serde_json::from_str(&want).unwrap_or(Value::String(want));
    (*got != expected).then(|| format!("{got}, expected {expected}"))
}

/// Run every case of [`CASES`] on one server (concurrently) and compare each with its YAML.
fn reference_cases() {
    let dir = reference_dir();
    let s = server();
    // The callee of the invoke/ cases (tests/guests/README.md).
    s.deploy_precompiled("echo-target", "echo_target");
    let started: Vec<(&Case, String)> = CASES
        .iter()
        .map(|c| {
            let params: Value = serde_json::from_str(c.params).expect("params are JSON");
            (c, start(&s, c.scenario, params))
        })
        .collect();
    let mut failures = Vec::new();
    for (case, id) in started {
        let text = std::fs::read_to_string(dir.join(case.yaml))
            .unwrap_or_else(|e| panic!("{}: {e} (shared/ must be beside the checkout)", case.yaml));
        let yaml: serde_yaml::Value =
            serde_yaml::from_str(&text).expect("the reference YAML parses");
        let ex = s.wait_done(&id);
        let h = s.history(&id);
        let mut diffs = Vec::new();
        let expected = &yaml["ExpectedResult"];
        let status = scalar(&expected["ExecutionStatus"])
            .unwrap_or_default()
            .to_lowercase();
        if ex["status"] != status.as_str() {
            diffs.push(format!("status {}, expected {status}", ex["status"]));
        }
        if let Some(result) = scalar(&expected["Result"]) {
            let want = substitute(&result, case.inputs);
            // As text (`Hello, World!`), or as JSON (`'"HELLO"'`).
            let as_json = serde_json::from_str::<Value>(&want).ok();
            if text_of(&ex["output"]).as_deref() != Some(want.as_str())
                && as_json.as_ref() != Some(&ex["output"])
            {
                diffs.push(format!("output {}, expected {want:?}", ex["output"]));
            }
        } else if expected["Result"].is_sequence() || expected["Result"].is_mapping() {
            // A list exactly; an object's keys (a projection may have more).
            let want: Value = serde_json::to_value(&expected["Result"]).expect("YAML as JSON");
            if !contains(&ex["output"], &want) {
                diffs.push(format!("output {}, expected {want}", ex["output"]));
            }
        }
        let theirs = yaml["ExpectedExecutionHistory"]
            .as_sequence()
            .cloned()
            .unwrap_or_default();
        // The YAML's history starts after ExecutionStarted and ends before the terminal
        // event, or (wait_for_condition/) with it, leaving out the InvocationCompleted of the
        // last activation (its EventId skips that one).
        let ends_terminal = theirs
            .last()
            .and_then(|e| e.get("EventType").and_then(scalar))
            .is_some_and(|t| t.starts_with("Execution"));
        // (map/ and parallel/ list that InvocationCompleted too: then all of ours is compared.)
        let lists_last_invocation = ends_terminal
            && theirs.len() >= 2
            && theirs[theirs.len() - 2]
                .get("EventType")
                .and_then(scalar)
                .is_some_and(|t| t == "InvocationCompleted");
        let ours: Vec<Value> = if lists_last_invocation {
            h[1..].to_vec()
        } else if ends_terminal && h.len() >= 3 {
            if h[h.len() - 2]["event_type"] != "InvocationCompleted" {
                diffs.push(format!(
                    "no InvocationCompleted before the end: {:#?}",
                    lines(&h)
                ));
            }
            let mut v = h[1..h.len() - 2].to_vec();
            v.push(h[h.len() - 1].clone());
            v
        } else {
            h[1..h.len().saturating_sub(1)].to_vec()
        };
        if ours.len() != theirs.len() {
            diffs.push(format!(
                "{} events, expected {}: {:#?}",
                ours.len(),
                theirs.len(),
                lines(&h)
            ));
        } else {
            let mut binds = std::collections::HashMap::new();
            for (i, (want, got)) in theirs.iter().zip(&ours).enumerate() {
                for d in event_diff(want, got, &mut binds, case.inputs) {
                    diffs.push(format!("event {}: {d}", i + 2));
                }
            }
        }
        if !diffs.is_empty() {
            failures.push(format!(
                "{} ({}): {}",
                case.yaml,
                case.scenario,
                diffs.join("; ")
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} reference cases differ:\n{}",
        failures.len(),
        CASES.len(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------
// What every SDK must get right beyond the reference cases, as data: replay-aware output
// (prints and log lines recorded once although the code before a wait runs twice),
// non-determinism caught, errors kept verbatim, traps, limits and bad input.
// ---------------------------------------------------------------------------------------

/// One behaviour: a scenario, its params, the status it ends in, then the output (when it
/// succeeds) or the error type (when it fails), and the log lines `(stream, message)` it
/// must leave, each once.
struct Behaviour {
    scenario: &'static str,
    params: &'static str,
    status: &'static str,
    outcome: &'static str,
    logs: &'static [(&'static str, &'static str)],
}

const BEHAVIOURS: &[Behaviour] = &[
    Behaviour {
        scenario: "echo",
        params: r#"{"value": {"a": [1, 2.5, "é", null]}}"#,
        status: "succeeded",
        outcome: r#"{"a": [1, 2.5, "é", null]}"#,
        logs: &[],
    },
    Behaviour {
        scenario: "stdout",
        params: r#"{"text": "printed-line"}"#,
        status: "succeeded",
        outcome: r#""printed""#,
        logs: &[("stdout", "printed-line"), ("stderr", "err:printed-line")],
    },
    Behaviour {
        scenario: "log-replay",
        params: r#"{"marker": "mk", "wait_ms": 50}"#,
        status: "succeeded",
        outcome: r#""logged""#,
        logs: &[("log", "mk-before"), ("log", "mk-after")],
    },
    Behaviour {
        scenario: "child-log",
        params: r#"{"marker": "ck"}"#,
        status: "succeeded",
        outcome: r#""ok""#,
        logs: &[("log", "ck")],
    },
    Behaviour {
        scenario: "nondeterministic",
        params: "{}",
        status: "failed",
        outcome: "NonDeterministicExecution",
        logs: &[],
    },
    Behaviour {
        scenario: "fail",
        params: r#"{"error_type": "Custom.Thing", "message": "it broke"}"#,
        status: "failed",
        outcome: "Custom.Thing",
        logs: &[],
    },
    Behaviour {
        scenario: "panic",
        params: "{}",
        status: "failed",
        outcome: "Runtime.Trap",
        logs: &[],
    },
    Behaviour {
        scenario: "big-output",
        params: r#"{"bytes": 10000}"#,
        status: "failed",
        outcome: "PayloadTooLarge",
        logs: &[],
    },
    Behaviour {
        scenario: "big-step-result",
        params: r#"{"bytes": 10000}"#,
        status: "succeeded",
        outcome: r#"{"caught": {"error_type": "PayloadTooLarge"}}"#,
        logs: &[],
    },
    Behaviour {
        scenario: "loop-in-step",
        params: "{}",
        status: "failed",
        outcome: "Runtime.ActivationTimeout",
        logs: &[],
    },
    Behaviour {
        scenario: "deterministic",
        params: "{}",
        status: "failed",
        outcome: "InvalidInput",
        logs: &[],
    },
    Behaviour {
        scenario: "no-such-scenario",
        params: "{}",
        status: "failed",
        outcome: "UnknownScenario",
        logs: &[],
    },
    Behaviour {
        scenario: "step-basic",
        params: r#"{"nom": "World"}"#,
        status: "failed",
        outcome: "InvalidInput",
        logs: &[],
    },
];

/// Whether `got` has everything `want` has (objects: these keys, recursively).
fn contains(got: &Value, want: &Value) -> bool {
    match (got, want) {
        (Value::Object(g), Value::Object(w)) => w
            .iter()
            .all(|(k, v)| g.get(k).is_some_and(|gv| contains(gv, v))),
        _ => got == want,
    }
}

/// Run every [`BEHAVIOURS`] row on one server (payloads over 4 KiB refused, activations cut
/// at 2 s) and check each.
fn behaviours() {
    let s = Server::start_with(&[
        "--activation-timeout-secs",
        "2",
        "--max-payload-bytes",
        "4096",
    ]);
    s.deploy_precompiled(FUNCTION, guest());
    let started: Vec<(&Behaviour, String)> = BEHAVIOURS
        .iter()
        .map(|b| {
            (
                b,
                start(
                    &s,
                    b.scenario,
                    serde_json::from_str(b.params).expect("JSON"),
                ),
            )
        })
        .collect();
    let mut failures = Vec::new();
    for (b, id) in started {
        let ex = s.wait_done(&id);
        let mut diffs = Vec::new();
        if ex["status"] != b.status {
            diffs.push(format!(
                "status {}, expected {}: {ex}",
                ex["status"], b.status
            ));
        } else if b.status == "succeeded" {
            let want: Value = serde_json::from_str(b.outcome).expect("JSON");
            if !contains(&ex["output"], &want) {
                diffs.push(format!("output {}, expected {want}", ex["output"]));
            }
        } else if ex["error"]["error_type"] != b.outcome {
            diffs.push(format!("error {}, expected {}", ex["error"], b.outcome));
        }
        let logs: Vec<(String, String)> = s
            .logs(&id)
            .iter()
            .map(|l| {
                (
                    l["stream"].as_str().unwrap_or("").to_string(),
                    l["message"].as_str().unwrap_or("").to_string(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = b
            .logs
            .iter()
            .map(|(a, m)| (a.to_string(), m.to_string()))
            .collect();
        if b.status == "succeeded" && logs != want {
            diffs.push(format!("logs {logs:?}, expected {want:?}"));
        }
        if !diffs.is_empty() {
            failures.push(format!("{} {}: {}", b.scenario, b.params, diffs.join("; ")));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} behaviours differ:\n{}",
        failures.len(),
        BEHAVIOURS.len(),
        failures.join("\n")
    );
    assert_eq!(s.metric("durable_resident_instances"), 0.0);
}

kit! {
    reference_cases,
    behaviours,
    step_1_1_basic_step_succeeds_on_first_attempt,
    step_1_2_step_with_name,
    step_1_3_sequential_steps,
    step_1_4_step_returns_a_complex_object,
    step_1_5_step_returns_null,
    step_1_7_step_logger_logs_once,
    step_1_8_1_9_steps_then_wait_replay_without_re_running_the_steps,
    step_1_10_replay_rethrows_the_failed_step,
    deterministic_values_are_recorded_once_and_replayed,
    step_1_11_retry_fails_then_succeeds,
    step_1_12_retry_exhaustion_fails_the_execution,
    step_1_14_retry_with_custom_backoff,
    step_1_15_retry_on_a_specific_error_type,
    step_1_16_non_retryable_error_fails_without_retry,
    step_1_17_at_most_once_interrupted_without_retry,
    step_1_18_at_most_once_interrupted_then_retried,
    step_1_19_step_fails_permanently,
    step_1_20_error_caught_and_handled,
    wait_2_1_basic_wait,
    wait_2_2_named_wait,
    wait_2_3_sequential_waits,
    wait_2_4_one_minute_wait_suspends,
    wait_2_5_one_hour_wait_suspends,
    callback_4_1_success,
    callback_4_2_explicit_name,
    callback_4_3_timeout,
    callback_4_4_heartbeat_timeout,
    callback_4_5_heartbeats_keep_it_alive_then_success,
    callback_4_6_failure_fails_the_execution,
    callback_4_9_completed_during_a_wait_before_it_is_awaited,
    callback_4_10_failed_during_a_wait_before_it_is_awaited,
    callback_4_13_failure_caught,
    callback_4_14_timeout_caught,
    callback_4_18_two_callbacks_completed_in_order,
    callback_4_19_two_callbacks_completed_in_reverse_order,
    callback_api_unknown_ids_are_404,
    wait_for_callback_7_1_basic,
    wait_for_callback_7_2_static_name,
    wait_for_callback_7_4_failure_uncaught,
    wait_for_callback_7_5_timeout_uncaught,
    wait_for_callback_7_6_failure_caught,
    wait_for_callback_7_7_submitter_retry_exhaustion,
    wait_for_callback_7_11_json_object_result,
    wait_for_callback_7_12_heartbeat_timeout,
    wait_for_callback_7_13_heartbeat_then_success,
    wait_for_callback_7_14_timeout_caught,
    wait_for_callback_7_15_empty_payload_is_null,
    child_3_1_basic,
    child_3_2_named,
    child_3_5_error_caught,
    child_3_6_nested,
    child_3_10_3_18_step_and_wait_inside_then_step_after,
    child_3_12_interrupted_step_is_re_executed_after_a_host_crash,
    child_3_13_3_17_wait_inside_a_child_and_its_log_line_once,
    child_3_16_returning_null,
    wait_for_condition_6_1_6_5_unloaded_between_checks_and_survives_a_crash,
    map_9_11_parallel_8_11_concurrency_keeps_index_order,
    map_after_a_host_crash_runs_no_finished_item_again,
}
