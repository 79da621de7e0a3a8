//! The examples end to end: real server, real guests from `examples/`, real HTTP, a local
//! mock for the external API.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::*;

#[test]
fn hello_suspends_during_its_wait_with_nothing_resident_and_ends_with_the_seed_output() {
    let s = Server::start();
    let v = s.deploy("hello", "hello");
    assert_eq!(v["version"], 1);
    let id = s.invoke("hello", &json!({}));

    // During the 1 s wait: suspended, and no instance is alive.
    let ex = s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    assert_eq!(ex["status"], "suspended");
    assert_eq!(s.metric("durable_resident_instances"), 0.0);

    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"statusCode": 200, "body": "\"Hello from Durable Lambda!\""})
    );
    let h = s.history(&id);
    assert_eq!(
        shape(&h),
        vec![
            ev("ExecutionStarted", None, None),
            ev("StepStarted", Some("1"), Some("Step #1")),
            ev("StepSucceeded", Some("1"), Some("Step #1")),
            ev("WaitStarted", Some("2"), None),
            ev("InvocationCompleted", None, None),
            ev("WaitSucceeded", Some("2"), None),
            ev("StepStarted", Some("3"), Some("Step #2")),
            ev("StepSucceeded", Some("3"), Some("Step #2")),
            ev("InvocationCompleted", None, None),
            ev("ExecutionSucceeded", None, None),
        ]
    );
    let ids: Vec<u64> = h.iter().map(|e| e["event_id"].as_u64().unwrap()).collect();
    assert_eq!(ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(h[3]["details"]["duration_ms"], 1000);
    assert_eq!(h[7]["details"]["result"], "Hello from Durable Lambda!");
    assert_eq!(h[2]["sub_type"], "Step");
    assert_eq!(h[3]["sub_type"], "Wait");

    // Replay-aware logging: each line once, although the first part ran twice.
    let logs: Vec<String> = s
        .logs(&id)
        .iter()
        .map(|l| l["message"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(logs, ["Hello from step #1", "Waited for 1 second"]);
    assert_eq!(s.metric("durable_executions{status=\"succeeded\"}"), 1.0);
}

#[test]
fn invoke_with_wait_returns_200_when_done_and_202_when_not() {
    let s = Server::start();
    s.deploy("hello", "hello");
    let (st, v) = s.post("/v1/functions/hello/invoke?wait=0.2", &json!(null));
    assert_eq!(st, 202, "the 1 s wait cannot finish in 0.2 s: {v}");
    assert!(["running", "suspended"].contains(&v["status"].as_str().unwrap()));
    let (st, v) = s.post("/v1/functions/hello/invoke?wait=30", &json!(null));
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["function"], "hello");
    assert_eq!(v["version"], 1);
    assert!(v["created_at"].as_str().unwrap().ends_with('Z'));
}

fn registration_input(mock: &Mock, extra: serde_json::Value) -> serde_json::Value {
    let mut v = json!({
        "username": "taro",
        "email": "taro@example.com",
        "api_base_url": mock.url(),
        "poll_interval_seconds": 1,
        "max_attempts": 3,
    });
    for (k, x) in extra.as_object().unwrap() {
        v[k] = x.clone();
    }
    v
}

#[test]
fn user_registration_polls_with_durable_waits_until_the_job_completes() {
    let mock = Mock::start();
    mock.respond("/start-job", 200, r#"{"job_id": "job-42"}"#);
    mock.respond("/check-status/job-42", 202, r#"{"state": "running"}"#);
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy("user-registration", "user_registration");
    let id = s.invoke("user-registration", &registration_input(&mock, json!({})));

    // The first poll answers 202; then the job is done.
    mock.wait_count("/check-status/job-42", 1);
    mock.respond("/check-status/job-42", 200, r#"{"state": "done"}"#);
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let out = &ex["output"];
    assert_eq!(out["status"], "completed");
    assert_eq!(out["username"], "taro");
    assert_eq!(out["email"], "taro@example.com");
    assert_eq!(out["jobResult"]["completed"], true);
    assert_eq!(out["jobResult"]["status"], "success");
    assert!(out["message"].as_str().unwrap().contains("taro"));

    // Each external call happened exactly once: replays never re-ran a checkpointed step.
    assert_eq!(mock.count("/start-job"), 1);
    assert_eq!(mock.count("/check-status/job-42"), 2);
    let body = &mock.bodies("/start-job")[0];
    assert_eq!(body["username"], "taro");
    assert_eq!(out["attempts"], 2, "{out}");
    assert_eq!(out["totalWaitSeconds"], 2, "{out}");
    // One durable wait before the first poll, then one operation for the polling: its two
    // checks are attempts of "check-status" (a wait between them), not separate steps.
    let h = s.history(&id);
    let count = |ty: &str, name: &str| {
        h.iter()
            .filter(|e| e["event_type"] == ty && e["name"] == name)
            .count()
    };
    assert_eq!(count("WaitStarted", "initial-delay"), 1, "{h:#?}");
    assert_eq!(count("StepStarted", "check-status"), 2, "{h:#?}");
    let checks: Vec<&Value> = h
        .iter()
        .filter(|e| e["event_type"] == "StepSucceeded" && e["name"] == "check-status")
        .collect();
    assert_eq!(checks.len(), 2, "{h:#?}");
    assert!(checks.iter().all(|e| e["sub_type"] == "WaitForCondition"));
    // The first check was not done: it recorded the poll interval as the next delay; the
    // second was final.
    assert_eq!(
        checks[0]["details"]["next_attempt_delay_ms"], 1000,
        "{:#}",
        checks[0]
    );
    assert!(
        checks[1]["details"]["next_attempt_delay_ms"].is_null(),
        "{:#}",
        checks[1]
    );
}

#[test]
fn user_registration_fails_clearly_on_missing_fields_and_on_timeout() {
    let mock = Mock::start();
    mock.respond("/start-job", 200, r#"{"job_id": "j"}"#);
    mock.respond("/check-status/j", 503, "busy");
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy("reg", "user_registration");

    let bad = s.invoke(
        "reg",
        &json!({"username": "taro", "api_base_url": mock.url()}),
    );
    let ex = s.wait_done(&bad);
    assert_eq!(ex["status"], "failed");
    assert!(
        ex["error"]["error_message"]
            .as_str()
            .unwrap()
            .contains("email"),
        "{ex}"
    );

    let slow = s.invoke(
        "reg",
        &registration_input(&mock, json!({"max_attempts": 2})),
    );
    let ex = s.wait_done(&slow);
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["error"]["error_type"], "TimeoutError", "{ex}");
    assert_eq!(mock.count("/check-status/j"), 2);
}

#[test]
fn approval_hands_out_a_callback_id_and_returns_the_approvers_answer() {
    let mock = Mock::start();
    let s = Server::start_with(&["--allow-outbound", &mock.allow()]);
    s.deploy("approval", "approval");
    let id = s.invoke(
        "approval",
        &json!({"request": {"amount": 100}, "notify_url": format!("{}/notify", mock.url())}),
    );
    mock.wait_count("/notify", 1);
    let note = &mock.bodies("/notify")[0];
    assert_eq!(note["request"], json!({"amount": 100}));
    let cb = note["callback_id"].as_str().unwrap().to_string();
    s.wait_status(&id, &["suspended"], Duration::from_secs(30));
    assert_eq!(s.metric("durable_resident_instances"), 0.0);

    let (st, v) = s.post(
        &format!("/v1/callbacks/{cb}/succeed"),
        &json!({"approved": true}),
    );
    assert_eq!(st, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["approval"], json!({"approved": true}));
    assert_eq!(ex["output"]["request"], json!({"amount": 100}));
    // A second completion is a conflict.
    let (st, v) = s.post(&format!("/v1/callbacks/{cb}/succeed"), &json!(1));
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict");
    let h = s.history(&id);
    let ctx: Vec<_> = h
        .iter()
        .filter(|e| e["sub_type"] == "WaitForCallback")
        .map(|e| e["event_type"].as_str().unwrap())
        .collect();
    assert_eq!(ctx, ["ContextStarted", "ContextSucceeded"]);
    assert_eq!(mock.count("/notify"), 1, "the submitter ran once");
}

#[test]
fn approval_fails_when_the_callback_fails_or_times_out() {
    let s = Server::start();
    s.deploy("approval", "approval");
    let rejected = s.invoke("approval", &json!({"request": "r"}));
    let cb = s.callback_ids(&rejected, 1).remove(0);
    let (st, _) = s.post(
        &format!("/v1/callbacks/{cb}/fail"),
        &json!({"error_type": "Rejected", "error_message": "no budget"}),
    );
    assert_eq!(st, 200);
    let ex = s.wait_done(&rejected);
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["error"]["error_type"], "Rejected");
    assert_eq!(ex["error"]["error_message"], "no budget");

    let timed = s.invoke("approval", &json!({"request": "r", "timeout_seconds": 1}));
    let ex = s.wait_done(&timed);
    assert_eq!(ex["status"], "failed");
    assert_eq!(ex["error"]["error_type"], "Callback.Timeout", "{ex}");
    let h = s.history(&timed);
    assert!(types(&h).contains(&"CallbackTimedOut".to_string()));
}

/// The invokes of an order saga, in its history: (operation name, event types of its end).
fn saga_invokes(h: &[Value]) -> Vec<(String, String)> {
    h.iter()
        .filter(|e| e["sub_type"] == "ChainedInvoke" && e["event_type"] != "ChainedInvokeStarted")
        .map(|e| {
            (
                e["name"].as_str().unwrap_or_default().to_string(),
                e["event_type"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[test]
fn order_saga_charges_and_reserves_or_refunds_when_the_reservation_fails() {
    let s = Server::start();
    for (name, guest) in [
        ("payment", "payment"),
        ("inventory", "inventory"),
        ("order-saga", "order_saga"),
    ] {
        s.deploy(name, guest);
    }
    let ok = s.invoke(
        "order-saga",
        &json!({"order_id": "o-1", "amount_cents": 1250, "items": ["book"]}),
    );
    let sold_out = s.invoke(
        "order-saga",
        &json!({"order_id": "o-2", "amount_cents": 990, "items": ["pen", "sold-out-lamp"]}),
    );
    let ex = s.wait_done(&ok);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(
        ex["output"],
        json!({"status": "confirmed", "payment_id": "pay-o-1", "reservation_id": "res-o-1"})
    );
    assert_eq!(
        saga_invokes(&s.history(&ok)),
        [
            ("charge".to_string(), "ChainedInvokeSucceeded".to_string()),
            ("reserve".to_string(), "ChainedInvokeSucceeded".to_string()),
        ]
    );

    // The reservation fails: the charge is compensated by a refund.
    let ex = s.wait_done(&sold_out);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"]["status"], "refunded", "{ex}");
    assert_eq!(ex["output"]["payment_id"], "pay-o-2");
    assert_eq!(ex["output"]["reason"]["error_type"], "OutOfStock");
    let h = s.history(&sold_out);
    assert_eq!(
        saga_invokes(&h),
        [
            ("charge".to_string(), "ChainedInvokeSucceeded".to_string()),
            ("reserve".to_string(), "ChainedInvokeFailed".to_string()),
            ("refund".to_string(), "ChainedInvokeSucceeded".to_string()),
        ]
    );
    // Each callee is an execution of its own, of the function it names, and ended as
    // its caller recorded.
    for e in h
        .iter()
        .filter(|e| e["event_type"] == "ChainedInvokeStarted")
    {
        let callee = e["details"]["durable_execution_id"].as_str().unwrap();
        let c = s.execution(callee);
        assert_eq!(c["function"], e["details"]["function_name"], "{c}");
        assert_eq!(c["parent_execution_id"], sold_out.as_str());
    }
    let refund = h
        .iter()
        .find(|e| e["event_type"] == "ChainedInvokeSucceeded" && e["name"] == "refund")
        .unwrap();
    assert_eq!(refund["details"]["result"], json!({"refunded": "pay-o-2"}));

    // A declined charge fails the saga with the payment's error: nothing to compensate.
    let declined = s.invoke(
        "order-saga",
        &json!({"order_id": "o-3", "amount_cents": 0, "items": ["book"]}),
    );
    let ex = s.wait_done(&declined);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "PaymentDeclined");
    assert_eq!(
        saga_invokes(&s.history(&declined)),
        [("charge".to_string(), "ChainedInvokeFailed".to_string())]
    );
}

/// The README's walk-through, as written: its first lines (the key, the deploy, the
/// invoke) run by bash in a directory laid out like the checkout after
/// `bash scripts/run.sh` (`target/` and `durable-data/`), against a server whose data
/// directory is that `durable-data/`. A README line that no longer works fails here.
#[test]
fn the_readme_walk_through_runs_as_written() {
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md")).unwrap();
    let walk = readme
        .split("## Five-minute walk-through")
        .nth(1)
        .and_then(|s| s.split("```sh\n").nth(1))
        .and_then(|s| s.split("```").next())
        .expect("the walk-through's code block");
    // Up to the invoke: every line until the first one that needs an id from an answer.
    let script: String = walk
        .split("\n\n")
        .take_while(|part| !part.contains('<'))
        .collect::<Vec<_>>()
        .join("\n\n");
    assert!(
        script.contains("admin.key") && script.contains("/invoke?wait="),
        "{script}"
    );
    let s = Server::start();
    let cwd = tempfile::tempdir().unwrap();
    let target = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target");
    std::os::unix::fs::symlink(target, cwd.path().join("target")).unwrap();
    std::os::unix::fs::symlink(s.data.path(), cwd.path().join("durable-data")).unwrap();
    let script = script.replace("http://127.0.0.1:7700", &s.url);
    let out = std::process::Command::new("bash")
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(cwd.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{script}\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains(r#""version":1"#) && stdout.contains(r#""status":"succeeded""#),
        "{stdout}"
    );
    assert!(stdout.contains("Hello from Durable Lambda!"), "{stdout}");
}

/// A long-running child of this test, killed when dropped, whose stdout lines are collected.
struct Child {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Child {
    fn spawn(cmd: &mut std::process::Command) -> Child {
        use std::io::BufRead;
        let mut child = cmd
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let out = child.stdout.take().unwrap();
        let sink = lines.clone();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
                sink.lock().unwrap().push(line);
            }
        });
        Child { child, lines }
    }

    /// Waits (at most 30 s) for a line containing `needle`, and returns every line so far.
    fn wait_line(&self, needle: &str) -> Vec<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let lines = self.lines.lock().unwrap().clone();
            if lines.iter().any(|l| l.contains(needle)) {
                return lines;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "no {needle:?} in {lines:#?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// README's "When a job fails": the job's API is down, so `user-registration` fails; the
/// signed `execution.failed` message reaches `durable-host webhooks listen`; the API comes
/// back; a redrive completes the job, and `validate` (which had succeeded) is not run again
/// while `start-job` is. The same binaries and commands as the README, on free ports.
#[test]
fn the_failed_job_story_works() {
    let (api_port, hook_port) = (free_port(), free_port());
    let api_bin = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../target/debug/examples/registration-api");
    assert!(
        api_bin.exists(),
        "{} is built by `cargo test -p durable-host` (all targets) or `cargo build -p durable-host --examples`",
        api_bin.display()
    );
    let api_addr = format!("127.0.0.1:{api_port}");
    let api =
        Child::spawn(std::process::Command::new(&api_bin).args(["--listen", &api_addr, "--down"]));
    api.wait_line("registration API on");
    let hook_addr = format!("127.0.0.1:{hook_port}");
    let s = Server::start_with(&[
        "--allow-outbound",
        &api_addr,
        "--allow-outbound",
        &hook_addr,
    ]);
    let cli = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_durable-host"))
            .args(args)
            .env("DURABLE_SERVER", &s.url)
            .env("DURABLE_API_KEY", &s.admin_key)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        (
            out.status.code(),
            stdout + &String::from_utf8_lossy(&out.stderr),
        )
    };
    let wasm = guest("user_registration");
    let (code, out) = cli(&["deploy", "user-registration", wasm.to_str().unwrap()]);
    assert_eq!(code, Some(0), "{out}");
    let url = format!("http://{hook_addr}/hooks");
    let (code, out) = cli(&[
        "webhooks",
        "create",
        "--url",
        &url,
        "--function",
        "user-registration",
    ]);
    assert_eq!(code, Some(0), "{out}");
    let secret = out
        .lines()
        .find_map(|l| l.strip_prefix("secret").map(|s| s.trim().to_string()))
        .unwrap_or_else(|| panic!("no secret in {out}"));
    let listener = Child::spawn(
        std::process::Command::new(env!("CARGO_BIN_EXE_durable-host")).args([
            "webhooks", "listen", "--listen", &hook_addr, "--secret", &secret,
        ]),
    );
    std::thread::sleep(Duration::from_millis(300));

    let input = json!({"username": "ada", "email": "ada@example.com",
        "api_base_url": format!("http://{api_addr}"), "poll_interval_seconds": 1})
    .to_string();
    let (code, out) = cli(&[
        "--json",
        "invoke",
        "user-registration",
        "--wait",
        "30",
        &input,
    ]);
    assert_eq!(code, Some(1), "the job fails while the API is down: {out}");
    let ex: serde_json::Value = serde_json::from_str(out.lines().next().unwrap()).unwrap();
    let id = ex["execution_id"].as_str().unwrap().to_string();
    assert_eq!(ex["error"]["error_type"], "StartJobError", "{ex}");

    let heard = listener.wait_line(&id);
    let line = heard.iter().find(|l| l.contains(&id)).unwrap();
    assert!(
        line.starts_with("execution.failed")
            && line.contains("StartJobError")
            && line.ends_with("[signature ok]"),
        "{line}"
    );
    let (_, out) = cli(&[
        "executions",
        "--status",
        "failed",
        "--error-type",
        "StartJobError",
    ]);
    assert!(out.contains(&id), "the dead letters list it: {out}");

    let fixed = reqwest::blocking::Client::new()
        .post(format!("http://{api_addr}/admin/up"))
        .send()
        .unwrap();
    assert!(fixed.status().is_success());
    let (code, out) = cli(&["redrive", &id]);
    assert_eq!(code, Some(0), "{out}");
    let (code, out) = cli(&["history", &id, "--follow"]);
    assert_eq!(code, Some(0), "the redriven job succeeds: {out}");
    let done = s.wait_done(&id);
    assert_eq!(done["status"], "succeeded", "{done}");
    assert_eq!(done["redrive_count"], 1, "{done}");

    let h = s.history(&id);
    let names = |ty: &str| -> Vec<String> {
        h.iter()
            .filter(|e| e["event_type"] == ty)
            .map(|e| e["name"].as_str().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(
        names("StepSucceeded")
            .iter()
            .filter(|n| *n == "validate")
            .count(),
        1,
        "validate ran once"
    );
    assert!(
        names("StepSucceeded").contains(&"welcome".to_string()),
        "{h:#?}"
    );
    assert!(
        types(&h).contains(&"ExecutionRedriven".to_string()),
        "{h:#?}"
    );
    let calls = api.wait_line("GET /check-status");
    assert_eq!(
        calls
            .iter()
            .filter(|l| l.starts_with("POST /start-job"))
            .count(),
        4,
        "three attempts while down, one after the redrive: {calls:#?}"
    );
}

/// The items of `fan-out`'s output, in order (`{"item": x}` each).
fn fan_out_items(output: &Value) -> Vec<Value> {
    output
        .as_array()
        .unwrap_or_else(|| panic!("fan-out output is a list: {output}"))
        .iter()
        .map(|r| r["item"].clone())
        .collect()
}

#[test]
fn fan_out_maps_every_item_once_in_order_and_a_crash_reruns_no_finished_item() {
    let mut s = Server::start();
    s.deploy("fan-out", "fan_out");
    let items: Vec<Value> = (0..20).map(|i| json!(format!("item-{i}"))).collect();

    // 20 items, each a 20 ms wait then a step: every item once, in item order.
    let id = s.invoke(
        "fan-out",
        &json!({"items": items, "max_concurrency": 10, "work_ms": 20}),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(fan_out_items(&ex["output"]), items);
    let h = s.history(&id);
    for (event_type, sub_type, per_item) in [
        ("ContextStarted", "MapIteration", 1),
        ("ContextSucceeded", "MapIteration", 1),
        ("StepSucceeded", "Step", 1),
        ("WaitStarted", "Wait", 1),
    ] {
        let n = h
            .iter()
            .filter(|e| e["event_type"] == event_type && e["sub_type"] == sub_type)
            .count();
        assert_eq!(n, 20 * per_item, "{event_type} {sub_type}");
    }
    assert_eq!(h[1]["sub_type"], "Map");
    assert_eq!(h[1]["name"], "fan-out");
    let summary: Value = serde_json::from_str(
        h.iter()
            .rev()
            .find(|e| e["event_type"] == "ContextSucceeded" && e["sub_type"] == "Map")
            .expect("the map's summary")["details"]["result"]
            .to_string()
            .as_str(),
    )
    .unwrap();
    assert_eq!(summary["successCount"], 20, "{summary}");
    assert_eq!(summary["completionReason"], "ALL_COMPLETED");

    // kill -9 in the middle: afterwards, no finished iteration records anything again.
    let id = s.invoke(
        "fan-out",
        &json!({"items": items, "max_concurrency": 2, "work_ms": 150}),
    );
    let before = s.wait_history(&id, |h| finished_branches(h).len() >= 5);
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(fan_out_items(&ex["output"]), items, "complete and ordered");
    let h = s.history(&id);
    let finished = assert_finished_branches_not_rerun(&before, &h);
    assert!(finished < 20, "the crash came in the middle");
    for i in 1..=20 {
        let branch = format!("1.{i}");
        let starts = h
            .iter()
            .filter(|e| e["event_type"] == "ContextStarted" && e["id"] == branch.as_str())
            .count();
        assert_eq!(starts, 1, "iteration {branch} started once");
    }
}
