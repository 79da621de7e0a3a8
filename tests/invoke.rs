//! Chained invokes (DESIGN 11) on a real server: the callee is an execution of its own
//! (`parent_execution_id`), started exactly once across a `kill -9`; a failing callee, an
//! unknown function, another tenant or a refused admission fail the caller's invoke with a
//! recorded error; stopping the caller stops the callee it waits on; a redrive of the
//! caller starts a new callee. The caller is the conformance guest's `invoke` scenario
//! (tests/guests/README.md), the callees the conformance guest itself and the echo target.

mod support;

use serde_json::{json, Value};
use support::*;

const CALLER: &str = "conf";

fn server_for(mock: Option<&Mock>) -> Server {
    let s = match mock {
        Some(m) => Server::start_with(&["--allow-outbound", &m.allow()]),
        None => Server::start(),
    };
    s.deploy_precompiled(CALLER, "conformance_guest");
    s.deploy_precompiled("echo-target", "echo_target");
    s
}

fn invoke(s: &Server, params: Value) -> String {
    s.invoke(CALLER, &scenario("invoke", params))
}

/// The events of `event_type` in a history.
fn events<'a>(h: &'a [Value], event_type: &str) -> Vec<&'a Value> {
    h.iter().filter(|e| e["event_type"] == event_type).collect()
}

/// The callee the caller's (only) `ChainedInvokeStarted` names, once it is recorded.
fn callee_of(s: &Server, caller: &str) -> String {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let h = s.history(caller);
        if let Some(e) = events(&h, "ChainedInvokeStarted").first() {
            return e["details"]["durable_execution_id"]
                .as_str()
                .expect("a started callee")
                .to_string();
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no invoke started: {h:#?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// Executions of the tenant whose parent is `caller`.
fn children_of(s: &Server, caller: &str) -> Vec<Value> {
    let (status, page) = s.get("/v1/executions?limit=1000");
    assert_eq!(status, 200, "{page}");
    page["executions"]
        .as_array()
        .expect("a page")
        .iter()
        .filter(|e| e["parent_execution_id"] == caller)
        .cloned()
        .collect()
}

#[test]
fn a_callee_is_started_once_across_a_kill_9_and_its_end_resumes_the_caller() {
    let mock = Mock::start(); // `/slow` is held until released
    let mut s = server_for(Some(&mock));
    let callee_input = scenario("crash-probe", json!({"url": mock.url()}));
    let caller = invoke(&s, json!({"function": CALLER, "input": callee_input}));
    // The callee is in its slow step; its caller is suspended on it.
    mock.wait_count("/slow", 1);
    let callee = callee_of(&s, &caller);
    assert_eq!(s.execution(&caller)["status"], "suspended");
    // A fsync after the slow step's (unawaited) start, so the crash always finds it.
    let other = s.invoke("echo-target", &json!(1));
    assert_eq!(s.wait_done(&other)["status"], "succeeded");
    s.crash_and_restart();
    mock.wait_count("/slow", 2);
    mock.release_slow();

    let ex = s.wait_done(&caller);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let probe = json!({"before": 200, "slow": 200, "after": 200});
    assert_eq!(ex["output"], probe);
    let h = s.history(&caller);
    assert_eq!(
        types(&h),
        [
            "ExecutionStarted",
            "ChainedInvokeStarted",
            "InvocationCompleted",
            "ChainedInvokeSucceeded",
            "InvocationCompleted",
            "ExecutionSucceeded"
        ],
        "{h:#?}"
    );
    assert_eq!(h[1]["sub_type"], "ChainedInvoke");
    assert_eq!(h[1]["details"]["function_name"], CALLER);
    assert_eq!(h[1]["details"]["input"], callee_input);
    assert_eq!(h[1]["details"]["executed_version"], 1);
    assert_eq!(h[3]["details"]["result"], probe);
    // One callee, whatever the crash: it names its caller, and ran its steps once each
    // (the interrupted at-least-once step twice).
    let children = children_of(&s, &caller);
    assert_eq!(children.len(), 1, "{children:#?}");
    assert_eq!(children[0]["execution_id"], callee.as_str());
    assert_eq!(s.execution(&callee)["parent_execution_id"], caller.as_str());
    assert_eq!(s.execution(&caller)["parent_execution_id"], Value::Null);
    assert_eq!(mock.count("/hit/before"), 1);
    assert_eq!(mock.count("/slow"), 2);
    assert_eq!(mock.count("/hit/after"), 1);
}

/// An invoke that fails: the caller's params, then the error type its
/// `ChainedInvokeFailed` records and the caller fails with, and whether a callee started.
const FAILURES: &[(&str, &str, bool)] = &[
    (
        r#"{"function": "echo-target", "input": {"fail": "PaymentDeclined"}}"#,
        "PaymentDeclined",
        true,
    ),
    (
        r#"{"function": "no-such-function"}"#,
        "Invoke.FunctionNotFound",
        false,
    ),
    (
        r#"{"function": "echo-target", "tenant_id": "someone-else"}"#,
        "Invoke.TenantMismatch",
        false,
    ),
];

#[test]
fn a_failed_invoke_fails_the_caller_with_the_callees_error_and_records_why() {
    let s = server_for(None);
    let started: Vec<_> = FAILURES
        .iter()
        .map(|(p, ty, callee)| {
            let id = invoke(&s, serde_json::from_str(p).unwrap());
            (id, *p, *ty, *callee)
        })
        .collect();
    for (id, params, ty, callee) in started {
        let ex = s.wait_done(&id);
        assert_eq!(ex["status"], "failed", "{params}: {ex}");
        assert_eq!(ex["error"]["error_type"], ty, "{params}: {ex}");
        let h = s.history(&id);
        let failed = events(&h, "ChainedInvokeFailed");
        assert_eq!(failed.len(), 1, "{params}: {h:#?}");
        assert_eq!(failed[0]["details"]["error"]["error_type"], ty, "{params}");
        let started = events(&h, "ChainedInvokeStarted");
        assert_eq!(
            started[0]["details"].get("durable_execution_id").is_some(),
            callee,
            "{params}: {h:#?}"
        );
        assert_eq!(children_of(&s, &id).len(), usize::from(callee), "{params}");
    }
    // Caught, the same failure is the guest's to handle.
    let id = invoke(
        &s,
        json!({"function": "echo-target", "input": {"fail": "PaymentDeclined"}, "catch": true}),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["caught"]["error_type"], "PaymentDeclined");
    assert_eq!(ex["output"]["caught"]["error_message"], "the target failed");
}

#[test]
fn a_callee_over_the_tenants_quota_is_refused_and_nothing_is_started() {
    let s = server_for(None);
    // Room for the caller only: its callee would be a second active execution.
    let (status, body) = s.req(
        "PATCH",
        "/v1/tenants/default",
        Some(
            json!({"quotas": {"max_active_executions": 1}})
                .to_string()
                .into_bytes(),
        ),
    );
    assert_eq!(status, 200, "{body}");
    let id = invoke(&s, json!({"function": "echo-target", "input": 1}));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "Invoke.Refused", "{ex}");
    let message = ex["error"]["error_message"].as_str().unwrap_or_default();
    assert!(message.contains("max_active_executions"), "{message}");
    assert!(children_of(&s, &id).is_empty());
}

#[test]
fn stopping_the_caller_stops_its_callee_and_a_redrive_starts_a_new_one() {
    let s = server_for(None);
    // The callee waits for a callback nobody completes.
    let caller = invoke(
        &s,
        json!({"function": CALLER, "input": scenario("callback", json!({}))}),
    );
    let callee = callee_of(&s, &caller);
    s.wait_status(&callee, &["suspended"], std::time::Duration::from_secs(30));
    let (status, body) = s.post(&format!("/v1/executions/{caller}/stop"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.wait_done(&caller)["status"], "stopped");
    let ex = s.wait_done(&callee);
    assert_eq!(ex["status"], "stopped", "{ex}");
    assert_eq!(ex["parent_execution_id"], caller.as_str());

    // A redrive runs the invoke again: a second callee, the first one left as it ended.
    let (status, body) = s.post(&format!("/v1/executions/{caller}/redrive"), &json!({}));
    assert!(status == 200 || status == 202, "{status} {body}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while children_of(&s, &caller).len() < 2 {
        assert!(std::time::Instant::now() < deadline, "no second callee");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let h = s.history(&caller);
    assert_eq!(events(&h, "ChainedInvokeStarted").len(), 2, "{h:#?}");
    let (status, body) = s.post(&format!("/v1/executions/{caller}/stop"), &json!({}));
    assert_eq!(status, 200, "{body}");
    assert_eq!(s.wait_done(&caller)["status"], "stopped");
    for child in children_of(&s, &caller) {
        let id = child["execution_id"].as_str().unwrap();
        assert_eq!(s.wait_done(id)["status"], "stopped", "{child}");
    }
}

#[test]
fn a_function_reaches_only_functions_of_its_own_tenant() {
    let s = server_for(None);
    // Tenant `other` has a function `secret`; `default` has none of that name.
    let (st, v) = s.post("/v1/tenants", &json!({"name": "other"}));
    assert_eq!(st, 201, "{v}");
    let (st, v) = s.post(
        "/v1/tenants/other/keys",
        &json!({"role": "developer", "name": "invoke tests"}),
    );
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().unwrap().to_string();
    let (st, v) = s.req_as(
        Some(&key),
        "PUT",
        "/v1/functions/secret",
        Some(guest_bytes("echo_target")),
    );
    assert!(st == 201 || st == 200, "{st} {v}");

    let id = invoke(&s, json!({"function": "secret", "input": 1}));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "Invoke.FunctionNotFound", "{ex}");
    // Nothing ran in the other tenant.
    let (st, v) = s.req_as(Some(&key), "GET", "/v1/executions", None);
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["executions"], json!([]), "{v}");
}

#[test]
fn a_caller_that_times_out_stops_its_callee_and_a_callee_that_times_out_fails_the_invoke() {
    let s = server_for(None);
    let (st, v) = s.req(
        "PUT",
        "/v1/functions/short?execution_timeout_secs=1",
        Some(guest_bytes("conformance_guest")),
    );
    assert!(st == 201 || st == 200, "{st} {v}");
    // The caller times out while its callee (of a function without that timeout) waits.
    let waiting = scenario("wait", json!({"ms": 60_000}));
    let caller = s.invoke(
        "short",
        &scenario("invoke", json!({"function": CALLER, "input": waiting})),
    );
    let callee = callee_of(&s, &caller);
    assert_eq!(s.wait_done(&caller)["status"], "timed_out");
    assert_eq!(s.wait_done(&callee)["status"], "stopped");
    // The callee times out: its caller records ChainedInvokeTimedOut and catches it.
    let caller = invoke(
        &s,
        json!({"function": "short", "input": waiting, "catch": true}),
    );
    let ex = s.wait_done(&caller);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["caught"]["error_type"], "Execution.Timeout");
    let h = s.history(&caller);
    assert_eq!(events(&h, "ChainedInvokeTimedOut").len(), 1, "{h:#?}");
    assert_eq!(s.wait_done(&callee_of(&s, &caller))["status"], "timed_out");
}
