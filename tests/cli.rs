//! The command-line client end to end: the real `durable-host` binary run as a client
//! process against a real server (real guests, real HTTP on loopback), checking its output,
//! its `--json` documents and its exit codes (0 done, 1 the execution failed, 2 an error).

mod support;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// The longest one client command may run in these tests.
const CLI_TIMEOUT: Duration = Duration::from_secs(120);

/// What a client process did.
struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

impl Run {
    /// The stdout as one JSON document.
    fn json(&self) -> Value {
        serde_json::from_str(&self.stdout)
            .unwrap_or_else(|e| panic!("stdout is not one JSON document ({e}): {self:?}"))
    }

    fn ok(self) -> Run {
        assert_eq!(self.code, 0, "{self:?}");
        self
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The client's environment variables: unset for every run, so that only what a test
/// gives reaches the client.
const CLIENT_ENV: [&str; 4] = [
    "DURABLE_SERVER",
    "DURABLE_API_KEY",
    "DURABLE_DATA_DIR",
    "DURABLE_TENANT",
];

/// An empty directory the client runs in, so that no `./durable-data/admin.key` is found
/// by chance.
fn empty_dir() -> &'static std::path::Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().unwrap()).path()
}

/// Run the client with `args`, optional stdin and `env` (with the [`CLIENT_ENV`] variables
/// unset otherwise), in an empty directory; bounded by [`CLI_TIMEOUT`].
fn run_client(args: &[&str], stdin: Option<&str>, env: &[(&str, &str)]) -> Run {
    run_client_in(empty_dir(), args, stdin, env)
}

/// [`run_client`] in the directory `cwd`.
fn run_client_in(
    cwd: &std::path::Path,
    args: &[&str],
    stdin: Option<&str>,
    env: &[(&str, &str)],
) -> Run {
    let mut cmd = Command::new(BIN);
    cmd.args(args).current_dir(cwd);
    for var in CLIENT_ENV {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("spawn the client");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(text.as_bytes()).unwrap();
    }
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        out.read_to_string(&mut s).unwrap();
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        err.read_to_string(&mut s).unwrap();
        s
    });
    let deadline = Instant::now() + CLI_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("durable-host {args:?} still running after {CLI_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    Run {
        code: status.code().expect("exited, not killed"),
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    }
}

/// Run the client against `s`, with its admin key in `DURABLE_API_KEY`.
fn cli(s: &Server, args: &[&str]) -> Run {
    cli_as(s, &s.admin_key, args)
}

/// Run the client against `s` with the API key `key` (in `DURABLE_API_KEY`).
fn cli_as(s: &Server, key: &str, args: &[&str]) -> Run {
    let mut all = vec!["--server", &s.url];
    all.extend_from_slice(args);
    run_client(&all, None, &[("DURABLE_API_KEY", key)])
}

/// Run the client against `s` with `stdin`.
fn cli_stdin(s: &Server, args: &[&str], stdin: &str) -> Run {
    let mut all = vec!["--server", &s.url];
    all.extend_from_slice(args);
    run_client(&all, Some(stdin), &[("DURABLE_API_KEY", &s.admin_key)])
}

fn path(guest_name: &str) -> String {
    guest(guest_name).display().to_string()
}

/// The value of `key` in a key/value view (`key  value` lines).
fn kv<'a>(stdout: &'a str, key: &str) -> &'a str {
    stdout
        .lines()
        .find_map(|l| {
            l.strip_prefix(key)
                .filter(|rest| rest.starts_with(' '))
                .map(str::trim)
        })
        .unwrap_or_else(|| panic!("no {key:?} line in:\n{stdout}"))
}

/// Poll `history --json` until a `CallbackStarted` event appears; its callback id.
fn callback_id(s: &Server, id: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let events = cli(s, &["--json", "history", id]).ok().json()["events"].clone();
        let started = events
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event_type"] == "CallbackStarted")
            .map(|e| e["details"]["callback_id"].as_str().unwrap().to_string());
        if let Some(cb) = started {
            return cb;
        }
        assert!(Instant::now() < deadline, "no CallbackStarted: {events:#}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn event_types(lines: &[Value]) -> Vec<&str> {
    lines
        .iter()
        .map(|e| e["event_type"].as_str().unwrap())
        .collect()
}

/// The parsed lines of a JSON Lines output.
fn json_lines(stdout: &str) -> Vec<Value> {
    stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

const HELLO_EVENTS: [&str; 10] = [
    "ExecutionStarted",
    "StepStarted",
    "StepSucceeded",
    "WaitStarted",
    "InvocationCompleted",
    "WaitSucceeded",
    "StepStarted",
    "StepSucceeded",
    "InvocationCompleted",
    "ExecutionSucceeded",
];

#[test]
fn approval_round_trip_deploy_invoke_history_callback_get() {
    let s = Server::start();
    let approval = path("approval");

    let r = cli(&s, &["deploy", "approval", &approval]).ok();
    assert!(
        r.stdout
            .starts_with("deployed approval version 1 (new version)\n"),
        "{r:?}"
    );
    assert_eq!(kv(&r.stdout, "sha256").len(), 64, "{r:?}");
    assert!(kv(&r.stdout, "size").ends_with(" bytes"), "{r:?}");
    let r = cli(&s, &["deploy", "approval", &approval]).ok();
    assert!(
        r.stdout.starts_with(
            "deployed approval version 1 (unchanged: same bytes as the latest version)\n"
        ),
        "{r:?}"
    );

    // The callback is never answered within half a second: 202, exit 0.
    let r = cli(
        &s,
        &[
            "--json",
            "invoke",
            "approval",
            r#"{"request": {"amount": 100}}"#,
            "--wait",
            "0.5",
        ],
    )
    .ok();
    let ex = r.json();
    assert!(
        ["running", "suspended"].contains(&ex["status"].as_str().unwrap()),
        "{ex}"
    );
    assert_eq!(ex["input"], json!({"request": {"amount": 100}}));
    let id = ex["execution_id"].as_str().unwrap().to_string();

    let cb = callback_id(&s, &id);
    assert!(cb.starts_with("cb_"), "{cb}");
    let r = cli(&s, &["history", &id]).ok();
    let mut lines = r.stdout.lines();
    let header: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["EVENT", "TIMESTAMP", "TYPE", "ID", "NAME", "DETAILS"]
    );
    let started = lines
        .find(|l| l.contains("CallbackStarted"))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert!(
        started.contains(&format!("callback_id=\"{cb}\"")),
        "{started}"
    );

    let r = cli(&s, &["callback", "succeed", &cb, r#"{"approved": true}"#]).ok();
    assert_eq!(r.stdout, format!("callback {cb} succeeded\n"));
    s.wait_done(&id);

    let r = cli(&s, &["get", &id]).ok();
    assert_eq!(kv(&r.stdout, "execution_id"), id);
    assert_eq!(kv(&r.stdout, "function"), "approval");
    assert_eq!(kv(&r.stdout, "status"), "succeeded");
    assert!(r.stdout.contains("\"approved\": true"), "{r:?}");
    let ex = cli(&s, &["--json", "get", &id]).ok().json();
    assert_eq!(
        ex["output"],
        json!({"request": {"amount": 100}, "approval": {"approved": true}})
    );

    // A second answer is the API's 409, on one line.
    let r = cli(&s, &["callback", "succeed", &cb, "false"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stdout.is_empty(), "{r:?}");
    assert!(r.stderr.starts_with("error: 409 conflict: "), "{r:?}");
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
}

#[test]
fn invoke_wait_shows_the_output_of_hello_and_logs_show_its_lines_once() {
    let s = Server::start();
    cli(&s, &["deploy", "hello", &path("hello")]).ok();
    let r = cli(&s, &["invoke", "hello", "--wait", "30"]).ok();
    assert_eq!(kv(&r.stdout, "status"), "succeeded", "{r:?}");
    assert_eq!(kv(&r.stdout, "function"), "hello");
    assert_eq!(kv(&r.stdout, "version"), "1");
    assert_eq!(kv(&r.stdout, "input"), "null");
    assert!(
        r.stdout
            .contains(r#""body": "\"Hello from Durable Lambda!\"""#),
        "{r:?}"
    );
    assert!(r.stdout.contains(r#""statusCode": 200"#), "{r:?}");
    // No terminal: no progress line.
    assert!(r.stderr.is_empty(), "{r:?}");
    let id = kv(&r.stdout, "execution_id").to_string();

    let r = cli(&s, &["logs", &id]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{r:?}");
    assert!(
        lines[0].ends_with(" info [log] Hello from step #1"),
        "{r:?}"
    );
    assert!(
        lines[1].ends_with(" info [log] Waited for 1 second"),
        "{r:?}"
    );
    assert!(
        lines[0].starts_with("20") && lines[0].contains('T'),
        "{r:?}"
    );

    let r = cli(&s, &["executions"]).ok();
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows[0],
        ["ID", "FUNCTION", "VERSION", "STATUS", "CREATED", "UPDATED", "ENDED", "ERROR"]
    );
    assert_eq!(rows[1][..4], [id.as_str(), "hello", "1", "succeeded"]);
    assert_eq!(rows.len(), 2, "{r:?}");
}

#[test]
fn an_execution_that_fails_or_is_stopped_exits_1_and_stop_twice_is_a_conflict() {
    let s = Server::start();
    cli(&s, &["deploy", "conf", &path("conformance_guest")]).ok();
    let fail = scenario("fail", json!({"error_type": "Boom", "message": "bad"})).to_string();

    let r = cli(&s, &["invoke", "conf", &fail, "--wait", "30"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(kv(&r.stdout, "status"), "failed");
    assert!(r.stdout.contains(r#""error_type": "Boom""#), "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");
    let r = cli(&s, &["--json", "invoke", "conf", &fail, "--wait", "30"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(r.json()["error"]["error_message"], "bad");

    // Waiting for a callback: running or suspended is exit 0, then stopped.
    let waits = scenario("callback", json!({})).to_string();
    let r = cli(&s, &["invoke", "conf", &waits]).ok();
    assert_eq!(r.stdout.lines().count(), 2, "{r:?}");
    let id = kv(&r.stdout, "execution_id").to_string();
    assert!(
        ["running", "suspended"].contains(&kv(&r.stdout, "status")),
        "{r:?}"
    );
    let r = cli(&s, &["stop", &id]).ok();
    assert_eq!(kv(&r.stdout, "status"), "stopped", "{r:?}");
    let r = cli(&s, &["stop", &id]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.stderr,
        format!("error: 409 conflict: execution {id} has already ended (stopped)\n")
    );
    // The same invocation again with an idempotency key reports the stopped execution.
    let key_args = ["invoke", "conf", &waits, "--idempotency-key", "k1"];
    let first = cli(&s, &key_args).ok();
    let id2 = kv(&first.stdout, "execution_id").to_string();
    cli(&s, &["stop", &id2]).ok();
    let again = cli(&s, &key_args);
    assert_eq!(again.code, 1, "{again:?}");
    assert_eq!(kv(&again.stdout, "execution_id"), id2);
    assert_eq!(kv(&again.stdout, "status"), "stopped");
}

#[test]
fn an_unknown_execution_is_one_error_line_and_exit_2() {
    let s = Server::start();
    let unknown = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    for args in [
        vec!["get", unknown],
        vec!["history", unknown],
        vec!["logs", unknown],
        vec!["stop", unknown],
        vec!["--json", "get", unknown],
        vec!["history", "--follow", unknown],
    ] {
        let r = cli(&s, &args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty(), "{args:?}: {r:?}");
        assert_eq!(
            r.stderr,
            format!("error: 404 not_found: execution \"{unknown}\" not found\n"),
            "{args:?}"
        );
    }
    let r = cli(&s, &["invoke", "nobody"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.stderr,
        "error: 404 not_found: function \"nobody\" not found\n"
    );
}

#[test]
fn an_unreachable_server_is_one_error_line_and_exit_2() {
    // A loopback port nobody listens on: bound, then released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    let expected =
        format!("error: cannot reach the server at {url}: is `durable-host serve` running?\n");
    for args in [
        vec!["functions"],
        vec!["invoke", "hello", "--wait", "5"],
        // Following does not retry a server it never reached.
        vec!["history", "01ARZ3NDEKTSV4RRFFQ69G5FAV", "--follow"],
    ] {
        let mut all = vec!["--server", &url];
        all.extend(args);
        let started = Instant::now();
        let r = run_client(&all, None, &[]);
        assert_eq!(r.code, 2, "{r:?}");
        assert_eq!(r.stderr, expected);
        assert!(r.stdout.is_empty());
        assert!(started.elapsed() < Duration::from_secs(5), "{r:?}");
    }
    // DURABLE_SERVER is the default for --server.
    let r = run_client(
        &["get", "01ARZ3NDEKTSV4RRFFQ69G5FAV"],
        None,
        &[("DURABLE_SERVER", &url)],
    );
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(r.stderr, expected);

    let r = run_client(&["--server", "127.0.0.1:7700", "functions"], None, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.starts_with("error: --server \"127.0.0.1:7700\""),
        "{r:?}"
    );
}

#[test]
fn input_is_checked_locally_and_read_from_a_file_or_stdin() {
    let s = Server::start();
    cli(&s, &["deploy", "conf", &path("conformance_guest")]).ok();

    let r = cli(&s, &["invoke", "conf", "{bad"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.starts_with("error: the input is not valid JSON: "),
        "{r:?}"
    );
    let listed = cli(&s, &["--json", "executions"]).ok().json();
    assert_eq!(listed["executions"], json!([]), "nothing was sent");

    let echo = scenario("echo", json!({"value": {"from": "file"}}));
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("input.json");
    std::fs::write(&file, echo.to_string()).unwrap();
    let at = format!("@{}", file.display());
    let r = cli(&s, &["--json", "invoke", "conf", &at, "--wait", "30"]).ok();
    assert_eq!(r.json()["output"], json!({"from": "file"}));

    let echo = scenario("echo", json!({"value": "from stdin"}));
    let r = cli_stdin(
        &s,
        &["--json", "invoke", "conf", "-", "--wait", "30"],
        &echo.to_string(),
    )
    .ok();
    assert_eq!(r.json()["output"], "from stdin");
}

#[test]
fn executions_all_follows_the_cursor_through_every_page() {
    let s = Server::start();
    cli(&s, &["deploy", "conf", &path("conformance_guest")]).ok();
    let mut ids = Vec::new();
    for n in 0..5 {
        let input = scenario("echo", json!({ "value": n })).to_string();
        let r = cli(&s, &["--json", "invoke", "conf", &input, "--wait", "30"]).ok();
        ids.push(r.json()["execution_id"].as_str().unwrap().to_string());
    }
    ids.reverse(); // newest first

    let all = cli(&s, &["--json", "executions", "--limit", "2", "--all"])
        .ok()
        .json();
    let listed: Vec<&str> = all["executions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, ids);
    assert_eq!(all["next_cursor"], Value::Null);

    let page = cli(&s, &["--json", "executions", "--limit", "2"])
        .ok()
        .json();
    assert_eq!(page["executions"].as_array().unwrap().len(), 2);
    assert!(page["next_cursor"].is_string(), "{page}");

    let r = cli(&s, &["executions", "--limit", "2"]).ok();
    assert_eq!(r.stdout.lines().count(), 3, "{r:?}");
    assert!(r.stderr.contains("--all"), "{r:?}");
    let r = cli(&s, &["executions", "--limit", "2", "--all"]).ok();
    assert_eq!(r.stdout.lines().count(), 6, "{r:?}");
    assert!(r.stderr.is_empty(), "{r:?}");

    let r = cli(&s, &["executions", "--function", "other"]).ok();
    assert_eq!(r.stdout, "no executions\n");
    let r = cli(
        &s,
        &["--json", "executions", "--status", "succeeded", "--all"],
    )
    .ok();
    assert_eq!(r.json()["executions"].as_array().unwrap().len(), 5);
    // A status the API does not have is a usage error: no request is made.
    let r = cli(&s, &["executions", "--status", "sleeping"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("invalid value 'sleeping'"), "{r:?}");
}

#[test]
fn executions_lists_dead_letters_by_status_error_type_and_end_time() {
    let s = Server::start();
    cli(&s, &["deploy", "conf", &path("conformance_guest")]).ok();
    let run = |input: Value| {
        let r = cli(
            &s,
            &[
                "--json",
                "invoke",
                "conf",
                &input.to_string(),
                "--wait",
                "30",
            ],
        );
        r.json()["execution_id"].as_str().unwrap().to_string()
    };
    let fail = |ty: &str| {
        run(scenario(
            "fail",
            json!({"error_type": ty, "message": "down"}),
        ))
    };
    run(scenario("echo", json!({"value": 1})));
    let before = cli(&s, &["--json", "executions", "--all"]).ok().json();
    let first_end = before["executions"][0]["ended_at"]
        .as_str()
        .unwrap()
        .to_string();
    let a = fail("Api.Unavailable");
    fail("Api.BadRequest");
    let b = fail("Api.Unavailable");

    let ids = |args: &[&str]| -> Vec<String> {
        let mut all = vec!["--json", "executions", "--all"];
        all.extend_from_slice(args);
        let v = cli(&s, &all).ok().json();
        v["executions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["execution_id"].as_str().unwrap().to_string())
            .collect()
    };
    let dead = ids(&["--status", "failed", "--error-type", "Api.Unavailable"]);
    assert_eq!(dead, [b.clone(), a.clone()]);
    let after_first = ids(&["--status", "failed", "--ended-after", &first_end]);
    assert_eq!(after_first.len(), 3, "{after_first:?}");
    assert!(ids(&["--ended-before", &first_end]).is_empty());

    // The table names how each ended.
    let r = cli(
        &s,
        &[
            "executions",
            "--status",
            "failed",
            "--error-type",
            "Api.Unavailable",
        ],
    )
    .ok();
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 3, "{r:?}");
    assert_eq!(rows[1][0], b);
    assert_eq!(rows[1][3], "failed");
    assert_eq!(rows[1].last(), Some(&"Api.Unavailable"), "{r:?}");
    assert_eq!(rows[1].len(), 8, "ended_at is shown: {r:?}");

    let r = cli(&s, &["executions", "--ended-after", "last tuesday"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.contains("is not an RFC 3339 time"), "{r:?}");

    // A delayed invoke: suspended at first, then it runs.
    let input = scenario("echo", json!({"value": "late"})).to_string();
    let r = cli(&s, &["invoke", "conf", &input, "--delay", "0.5"]).ok();
    assert_eq!(kv(&r.stdout, "status"), "suspended", "{r:?}");
    let r = cli(
        &s,
        &[
            "--json", "invoke", "conf", &input, "--delay", "0.5", "--wait", "30",
        ],
    )
    .ok();
    assert_eq!(r.json()["output"], "late", "{r:?}");
}

#[test]
fn history_follow_json_prints_each_event_as_a_line_until_the_end() {
    let s = Server::start();
    cli(&s, &["deploy", "hello", &path("hello")]).ok();
    let r = cli(&s, &["--json", "invoke", "hello"]).ok();
    let id = r.json()["execution_id"].as_str().unwrap().to_string();

    // Started while the execution runs: the stream ends with its end.
    let r = cli(&s, &["--json", "history", &id, "--follow"]).ok();
    let events = json_lines(&r.stdout);
    assert_eq!(event_types(&events), HELLO_EVENTS, "{r:?}");
    let event_ids: Vec<u64> = events
        .iter()
        .map(|e| e["event_id"].as_u64().unwrap())
        .collect();
    assert_eq!(event_ids, (1..=10).collect::<Vec<_>>());
    assert_eq!(events[7]["details"]["result"], "Hello from Durable Lambda!");

    // Once it has ended: everything, then the ending, as a table.
    let r = cli(&s, &["history", &id, "-f"]).ok();
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 12, "{r:?}");
    assert!(lines[0].starts_with("EVENT  TIMESTAMP"), "{r:?}");
    assert!(lines[10].contains("ExecutionSucceeded"), "{r:?}");
    assert_eq!(lines[11], format!("execution {id} succeeded"));
}

#[test]
fn history_follow_exits_1_when_the_execution_fails_after_a_callback_failure() {
    let s = Server::start();
    cli(&s, &["deploy", "conf", &path("conformance_guest")]).ok();
    let input = scenario("callback", json!({"heartbeat_timeout_ms": 60_000})).to_string();
    let r = cli(&s, &["--json", "invoke", "conf", &input]).ok();
    let id = r.json()["execution_id"].as_str().unwrap().to_string();
    let cb = callback_id(&s, &id);

    let r = cli(&s, &["callback", "heartbeat", &cb]).ok();
    assert_eq!(r.stdout, format!("callback {cb} pending\n"));

    // Follow from another thread while the callback fails.
    let url = s.url.clone();
    let key = s.admin_key.clone();
    let follow = {
        let id = id.clone();
        std::thread::spawn(move || {
            run_client(
                &["--server", &url, "--json", "history", "--follow", &id],
                None,
                &[("DURABLE_API_KEY", &key)],
            )
        })
    };
    let r = cli(
        &s,
        &[
            "callback",
            "fail",
            &cb,
            "--type",
            "Rejected",
            "--message",
            "no",
            "--data",
            r#"{"by": "ann"}"#,
        ],
    )
    .ok();
    assert_eq!(r.stdout, format!("callback {cb} failed\n"));

    let r = follow.join().unwrap();
    assert_eq!(r.code, 1, "{r:?}");
    let events = json_lines(&r.stdout);
    let last = events.last().unwrap();
    assert_eq!(last["event_type"], "ExecutionFailed", "{r:?}");
    assert_eq!(last["details"]["error"]["error_type"], "Rejected");
    let failed = events
        .iter()
        .find(|e| e["event_type"] == "CallbackFailed")
        .unwrap();
    assert_eq!(
        failed["details"]["error"]["error_data"],
        json!({"by": "ann"})
    );
}

#[test]
fn functions_are_listed_described_and_deleted() {
    let s = Server::start();
    let r = cli(&s, &["functions"]).ok();
    assert_eq!(r.stdout, "no functions deployed\n");
    cli(&s, &["deploy", "hello", &path("hello")]).ok();
    let r = cli(&s, &["deploy", "hello", &path("approval")]).ok();
    assert!(
        r.stdout
            .starts_with("deployed hello version 2 (new version)\n"),
        "{r:?}"
    );

    let r = cli(&s, &["functions"]).ok();
    let rows: Vec<Vec<&str>> = r
        .stdout
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows[0], ["NAME", "LATEST", "VERSIONS", "CREATED"]);
    assert_eq!(rows[1][..3], ["hello", "2", "2"]);
    assert_eq!(rows.len(), 2);

    let r = cli(&s, &["functions", "hello"]).ok();
    assert_eq!(kv(&r.stdout, "name"), "hello");
    assert_eq!(kv(&r.stdout, "latest_version"), "2");
    let table: Vec<&str> = r.stdout.split("\n\n").nth(1).unwrap().lines().collect();
    assert!(table[0].starts_with("VERSION  SHA256"), "{r:?}");
    assert_eq!(table.len(), 3, "{r:?}");
    let listed = cli(&s, &["--json", "functions"]).ok().json();
    assert_eq!(listed["functions"][0]["name"], "hello");
    let described = cli(&s, &["--json", "functions", "hello"]).ok().json();
    assert_eq!(described["versions"].as_array().unwrap().len(), 2);

    let r = cli(&s, &["delete", "hello"]).ok();
    assert_eq!(r.stdout, "deleted function hello\n");
    let r = cli(&s, &["--json", "delete", "hello"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert_eq!(
        r.stderr,
        "error: 404 not_found: function \"hello\" not found\n"
    );
    assert_eq!(
        cli(&s, &["functions"]).ok().stdout,
        "no functions deployed\n"
    );

    let r = cli(&s, &["deploy", "broken", "/nonexistent/file.wasm"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr
            .starts_with("error: cannot read /nonexistent/file.wasm: "),
        "{r:?}"
    );
}

/// A one-route SSE server on loopback for `history --follow`: connection `n` is answered
/// with `bodies[n]` (then closed; past the list, with the last one); returns its URL and
/// the request lines it received.
fn sse_server(bodies: Vec<String>) -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::{BufRead, BufReader};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let requests = seen.clone();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { return };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut request_line = String::new();
            let _ = reader.read_line(&mut request_line);
            // The rest of the request head.
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 2) {
                line.clear();
            }
            requests
                .lock()
                .unwrap()
                .push(request_line.trim().to_string());
            let body = &bodies[n.min(bodies.len() - 1)];
            let _ = write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\
                 connection: close\r\n\r\n{body}"
            );
        }
    });
    (url, seen)
}

fn history_frame(event_id: u64, event_type: &str) -> String {
    let e = json!({"event_id": event_id, "event_type": event_type, "sub_type": null,
                   "id": null, "parent_id": null, "name": null,
                   "timestamp": "2025-01-01T00:00:00.000Z", "details": {}});
    format!("id: {event_id}\nevent: history\ndata: {e}\n\n")
}

#[test]
fn history_follow_reconnects_after_the_last_event_and_prints_no_event_twice() {
    let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let end = json!({"execution_id": id, "status": "failed",
                     "error": {"error_type": "Boom", "error_message": "bad"}});
    let (url, requests) = sse_server(vec![
        // Dropped after two events.
        format!(
            ": keep-alive\n\n{}{}",
            history_frame(1, "ExecutionStarted"),
            history_frame(2, "InvocationCompleted")
        ),
        // The second connection repeats event 2, then ends.
        format!(
            "{}{}event: end\ndata: {end}\n\n",
            history_frame(2, "InvocationCompleted"),
            history_frame(3, "ExecutionFailed")
        ),
    ]);
    let r = run_client(
        &["--server", &url, "--json", "history", id, "--follow"],
        None,
        &[],
    );
    assert_eq!(r.code, 1, "{r:?}");
    let events = json_lines(&r.stdout);
    assert_eq!(
        event_types(&events),
        ["ExecutionStarted", "InvocationCompleted", "ExecutionFailed"]
    );
    let requests = requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            format!("GET /v1/executions/{id}/events HTTP/1.1"),
            format!("GET /v1/executions/{id}/events?after=2 HTTP/1.1"),
        ]
    );

    // The same as a table, ending with the execution's error.
    let r = run_client(&["--server", &url, "history", id, "--follow"], None, &[]);
    assert_eq!(r.code, 1, "{r:?}");
    assert_eq!(
        r.stdout.lines().last(),
        Some(format!("execution {id} failed: Boom: bad").as_str())
    );
}

#[test]
fn history_follow_gives_up_on_a_stream_that_keeps_dropping() {
    let id = "01ARZ3NDEKTSV4RRFFQ69G5FAV";
    let (url, requests) = sse_server(vec![": nothing to say\n\n".to_string()]);
    let r = run_client(&["--server", &url, "history", id, "--follow"], None, &[]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.starts_with(&format!(
            "error: the event stream of execution {id} kept dropping before the execution ended"
        )),
        "{r:?}"
    );
    assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    // The first connection and five reconnections.
    assert_eq!(requests.lock().unwrap().len(), 6);
}

#[test]
fn serve_takes_a_config_file_under_env_and_flags_and_refuses_a_bad_one_by_file_and_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "max_resident = 8\nmax_residnet = 9\n").unwrap();
    let bad = bad.to_str().unwrap();
    let (status, stderr) = try_serve_with(&data, &["--config", bad], &[]).unwrap_err();
    assert_eq!(status.code(), Some(2), "{stderr}");
    assert_eq!(
        stderr.trim(),
        format!(
            "error: config file {bad}, line 2: unknown key `max_residnet`: \
             `durable-host serve` has no flag --max_residnet"
        )
    );
    assert!(
        !data.exists(),
        "nothing is opened before the configuration is checked"
    );

    // A good file starts the host; its value is checked like the flag's (`serve` refuses a
    // depth over 127), so each layer shows which one won.
    let good = dir.path().join("good.toml");
    let text = "max_json_depth = 500\nallow_outbound = [\"a.internal:80\", \"b.internal:80\"]\n";
    std::fs::write(&good, text).unwrap();
    let good = good.to_str().unwrap();
    let depth = "--max-json-depth must be 1 to 127";
    let from_file = try_serve_with(&data, &["--config", good], &[]).unwrap_err();
    assert!(from_file.1.contains(depth), "{from_file:?}");
    let env = [("DURABLE_CONFIG", good), ("DURABLE_MAX_JSON_DEPTH", "10")];
    try_serve_with(&data, &[], &env).expect("the environment beats the file");
    let env = [("DURABLE_CONFIG", good), ("DURABLE_MAX_JSON_DEPTH", "300")];
    let from_env = try_serve_with(&data, &[], &env).unwrap_err();
    assert!(from_env.1.contains(depth), "{from_env:?}");
    try_serve_with(&data, &["--max-json-depth", "20"], &env).expect("the flag beats both");
}

/// The row of `quota` in a tenant view's quota table, split on whitespace.
fn quota_row(stdout: &str, quota: &str) -> Vec<String> {
    stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(quota))
        .unwrap_or_else(|| panic!("no {quota} row in:\n{stdout}"))
        .split_whitespace()
        .map(str::to_string)
        .collect()
}

#[test]
fn tenants_are_created_listed_shown_updated_and_deleted() {
    let s = Server::start();
    let r = cli(
        &s,
        &[
            "tenants",
            "create",
            "acme",
            "--quota",
            "max_functions=2",
            "--quota",
            "invocations_per_second=2.5",
            "--quota",
            r#"outbound_allowlist=["a.internal:80"]"#,
        ],
    )
    .ok();
    assert!(
        r.stdout
            .starts_with("created tenant acme\n\nname        acme\ncreated_at  "),
        "{r:?}"
    );
    assert_eq!(
        quota_row(&r.stdout, "max_functions"),
        ["max_functions", "2", "0"]
    );
    assert_eq!(
        quota_row(&r.stdout, "outbound_allowlist"),
        ["outbound_allowlist", "a.internal:80"]
    );

    let t = cli(&s, &["--json", "tenants", "get", "acme"]).ok().json();
    assert_eq!(t["name"], "acme");
    assert_eq!(t["quotas"]["max_functions"], 2);
    assert_eq!(t["quotas"]["invocations_per_second"], 2.5);
    assert_eq!(t["quotas"]["outbound_allowlist"], json!(["a.internal:80"]));
    assert_eq!(t["usage"]["max_functions"], 0);

    let listed = cli(&s, &["--json", "tenants", "list"]).ok().json();
    let mut names: Vec<&str> = listed["tenants"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["acme", "default"]);

    // An admin key acts in acme with --tenant; usage counts there, and default sees nothing.
    cli(&s, &["--tenant", "acme", "deploy", "hello", &path("hello")]).ok();
    let r = cli(&s, &["tenants", "get", "acme"]).ok();
    assert_eq!(
        quota_row(&r.stdout, "max_functions"),
        ["max_functions", "2", "1"]
    );
    let r = cli(&s, &["tenants", "list"]).ok();
    let acme = r.stdout.lines().find(|l| l.starts_with("acme ")).unwrap();
    assert_eq!(acme.split_whitespace().nth(1), Some("1/2"), "{r:?}");
    assert_eq!(
        cli(&s, &["functions"]).ok().stdout,
        "no functions deployed\n"
    );

    // null returns a quota to the server's default, the one `default` has.
    let r = cli(
        &s,
        &[
            "tenants",
            "update",
            "acme",
            "--quota",
            "max_functions=5",
            "--quota",
            "invocations_per_second=null",
        ],
    )
    .ok();
    assert!(r.stdout.starts_with("updated tenant acme\n\n"), "{r:?}");
    assert_eq!(
        quota_row(&r.stdout, "max_functions"),
        ["max_functions", "5", "1"]
    );
    let acme = cli(&s, &["--json", "tenants", "get", "acme"]).ok().json();
    let default = cli(&s, &["--json", "tenants", "get", "default"])
        .ok()
        .json();
    assert_eq!(
        acme["quotas"]["invocations_per_second"],
        default["quotas"]["invocations_per_second"]
    );
    // The server knows the quotas' names.
    let r = cli(&s, &["tenants", "update", "acme", "--quota", "max_fns=1"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.starts_with("error: 400 ") && r.stderr.contains("max_fns"),
        "{r:?}"
    );

    // Not while it owns a function.
    let r = cli(&s, &["tenants", "delete", "acme"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: 409 conflict: "), "{r:?}");
    cli(&s, &["--tenant", "acme", "delete", "hello"]).ok();
    let r = cli(&s, &["tenants", "delete", "acme"]).ok();
    assert_eq!(r.stdout, "deleted tenant acme\n");
    let r = cli(&s, &["tenants", "get", "acme"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: 404 not_found: "), "{r:?}");
}

/// The key's id: the 12 hex characters between `dh_` and the secret.
fn key_id(key: &str) -> &str {
    assert!(key.starts_with("dh_") && key.len() > 16, "not a key");
    &key[3..15]
}

#[test]
fn keys_are_created_listed_and_revoked_and_a_revoked_key_is_refused() {
    let s = Server::start();
    cli(&s, &["tenants", "create", "acme"]).ok();

    // The global --tenant chooses the tenant of `keys create` for an admin key.
    let r = cli(
        &s,
        &[
            "keys", "create", "--tenant", "acme", "--role", "owner", "--name", "acme ops",
        ],
    )
    .ok();
    let owner = kv(&r.stdout, "key").to_string();
    let owner_id = key_id(&owner).to_string();
    assert!(
        r.stdout.starts_with(&format!(
            "created owner key {owner_id} (\"acme ops\") in tenant acme\n"
        )),
        "{r:?}"
    );
    assert_eq!(kv(&r.stdout, "expires_at"), "never");
    assert!(
        r.stdout.contains("This is the only time the key is shown"),
        "{r:?}"
    );

    let who = cli_as(&s, &owner, &["--json", "whoami"]).ok().json();
    assert_eq!(
        who,
        json!({"tenant": "acme", "role": "owner", "key_id": owner_id})
    );
    let r = cli_as(&s, &owner, &["whoami"]).ok();
    assert_eq!(kv(&r.stdout, "role"), "owner");
    assert_eq!(kv(&r.stdout, "key_from"), "DURABLE_API_KEY");

    // Without a tenant, an owner's keys commands act in its own (from whoami).
    let before = time::OffsetDateTime::now_utc();
    let created = cli_as(
        &s,
        &owner,
        &[
            "--json",
            "keys",
            "create",
            "--role",
            "invoker",
            "--name",
            "ci",
            "--expires-in",
            "30d",
        ],
    )
    .ok()
    .json();
    assert_eq!(created["tenant"], "acme", "{created}");
    assert_eq!(created["role"], "invoker");
    let invoker = created["key"].as_str().unwrap().to_string();
    let invoker_id = key_id(&invoker).to_string();
    let expires = time::OffsetDateTime::parse(
        created["expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    let in_30d = before + time::Duration::days(30);
    assert!(
        expires >= in_30d - time::Duration::seconds(1)
            && expires <= in_30d + time::Duration::seconds(60),
        "{created}"
    );

    // Listed by an admin with TENANT, and by the owner in its own: never a secret.
    let r = cli(&s, &["--json", "keys", "list", "acme"]).ok();
    let listed = r.json();
    let keys = listed["keys"].as_array().unwrap();
    assert!(keys.iter().all(|k| k.get("key").is_none()), "{r:?}");
    let ids: Vec<&str> = keys.iter().map(|k| k["key_id"].as_str().unwrap()).collect();
    assert_eq!(ids, [owner_id.as_str(), invoker_id.as_str()], "{r:?}");
    assert!(!r.stdout.contains(&owner[16..]), "a secret was listed");
    let r = cli_as(&s, &owner, &["keys", "list"]).ok();
    assert!(r.stdout.starts_with("KEY_ID "), "{r:?}");
    let row = r
        .stdout
        .lines()
        .find(|l| l.starts_with(&invoker_id))
        .unwrap_or_else(|| panic!("{r:?}"));
    assert_eq!(row.split_whitespace().nth(1), Some("invoker"), "{r:?}");
    assert_eq!(row.split_whitespace().nth(2), Some("ci"), "{r:?}");

    // What an owner may not do: the server's 403, and where to look.
    for args in [
        &["keys", "create", "--role", "admin", "--name", "x"][..],
        &["tenants", "list"],
        &["--tenant", "default", "functions"],
    ] {
        let r = cli_as(&s, &owner, args);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(
            r.stderr.starts_with("error: 403 forbidden: "),
            "{args:?}: {r:?}"
        );
        assert!(
            r.stderr
                .ends_with("; `durable-host whoami` shows this key's tenant and role\n"),
            "{r:?}"
        );
        assert_eq!(r.stderr.lines().count(), 1, "{r:?}");
    }

    // Revoked: refused from the next request on, through the CLI, without quoting the key.
    let r = cli_as(&s, &owner, &["keys", "revoke", &invoker_id]).ok();
    assert_eq!(
        r.stdout,
        format!("revoked key {invoker_id} of tenant acme\n")
    );
    let r = cli_as(&s, &invoker, &["executions"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: 401 unauthorized: "), "{r:?}");
    assert!(
        r.stderr
            .contains("the API key from DURABLE_API_KEY was refused (unknown, expired or revoked)"),
        "{r:?}"
    );
    assert!(
        !r.stderr.contains(&invoker[3..]),
        "the key was quoted: {r:?}"
    );

    // An admin revokes in any tenant, named by TENANT; a second revoke is a 404.
    let r = cli(&s, &["--json", "keys", "revoke", &owner_id, "acme"]).ok();
    assert_eq!(r.stdout, "");
    let r = cli_as(&s, &owner, &["whoami"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: 401 unauthorized: "), "{r:?}");
    let r = cli(&s, &["keys", "revoke", &owner_id, "acme"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(r.stderr.starts_with("error: 404 not_found: "), "{r:?}");
}

#[test]
fn the_key_comes_from_the_admin_key_file_unless_one_is_given() {
    let s = Server::start();
    let url = s.url.as_str();
    let invoker = cli(
        &s,
        &[
            "--json", "keys", "create", "--role", "invoker", "--name", "ci",
        ],
    )
    .ok()
    .json()["key"]
        .as_str()
        .unwrap()
        .to_string();
    let data = s.data.path().to_str().unwrap();

    // ./durable-data/admin.key where the client runs: what `serve` writes by default.
    let cwd = tempfile::tempdir().unwrap();
    std::fs::create_dir(cwd.path().join("durable-data")).unwrap();
    std::fs::copy(
        s.data.path().join("admin.key"),
        cwd.path().join("durable-data/admin.key"),
    )
    .unwrap();
    let whoami = |cwd: &std::path::Path, args: &[&str], env: &[(&str, &str)]| {
        let mut all = vec!["--server", url];
        all.extend_from_slice(args);
        all.push("whoami");
        run_client_in(cwd, &all, None, env)
    };
    let r = whoami(cwd.path(), &[], &[]).ok();
    assert_eq!(kv(&r.stdout, "role"), "admin", "{r:?}");
    assert_eq!(kv(&r.stdout, "tenant"), "default", "{r:?}");
    assert_eq!(kv(&r.stdout, "key_from"), "./durable-data/admin.key");

    // DURABLE_DATA_DIR names the server's data directory, from anywhere.
    let r = whoami(empty_dir(), &[], &[("DURABLE_DATA_DIR", data)]).ok();
    assert_eq!(kv(&r.stdout, "role"), "admin", "{r:?}");
    assert_eq!(kv(&r.stdout, "key_from"), format!("{data}/admin.key"));

    // --api-key and DURABLE_API_KEY beat the file, the flag beats the variable.
    let r = whoami(cwd.path(), &["--api-key", &invoker], &[]).ok();
    assert_eq!(kv(&r.stdout, "role"), "invoker", "{r:?}");
    assert_eq!(kv(&r.stdout, "key_from"), "--api-key");
    let r = whoami(cwd.path(), &[], &[("DURABLE_API_KEY", &invoker)]).ok();
    assert_eq!(kv(&r.stdout, "role"), "invoker", "{r:?}");
    assert_eq!(kv(&r.stdout, "key_from"), "DURABLE_API_KEY");
    let r = whoami(
        empty_dir(),
        &["--api-key", &s.admin_key],
        &[("DURABLE_API_KEY", &invoker)],
    )
    .ok();
    assert_eq!(kv(&r.stdout, "role"), "admin", "{r:?}");

    // An admin key acts in another tenant with --tenant (or DURABLE_TENANT).
    cli(&s, &["tenants", "create", "acme"]).ok();
    let r = whoami(cwd.path(), &["--tenant", "acme"], &[]).ok();
    assert_eq!(kv(&r.stdout, "tenant"), "acme", "{r:?}");
    let r = whoami(cwd.path(), &[], &[("DURABLE_TENANT", "acme")]).ok();
    assert_eq!(kv(&r.stdout, "tenant"), "acme", "{r:?}");

    // No key anywhere (DURABLE_DATA_DIR set means that directory's file only): the 401
    // says how to give one.
    let how = "give one with --api-key KEY, with DURABLE_API_KEY, or in the admin.key file \
               of the server's data directory";
    for (dir, env) in [
        (empty_dir(), vec![]),
        (
            cwd.path(),
            vec![("DURABLE_DATA_DIR", empty_dir().to_str().unwrap())],
        ),
    ] {
        let r = whoami(dir, &[], &env);
        assert_eq!(r.code, 2, "{r:?}");
        assert!(
            r.stderr.starts_with("error: 401 unauthorized: ")
                && r.stderr.contains(&format!("; no API key was sent: {how}")),
            "{r:?}"
        );
    }

    // A key file with a key the server does not know: the file is named, the key is not.
    let stale = tempfile::tempdir().unwrap();
    let bogus = format!("dh_000000000000_{}", "0".repeat(64));
    std::fs::write(stale.path().join("admin.key"), format!("{bogus}\n")).unwrap();
    let stale_dir = stale.path().to_str().unwrap();
    let r = whoami(empty_dir(), &[], &[("DURABLE_DATA_DIR", stale_dir)]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains(&format!(
            "; the API key from {stale_dir}/admin.key was refused (unknown, expired or revoked): {how}"
        )),
        "{r:?}"
    );
    assert!(!r.stderr.contains(&bogus[3..]), "{r:?}");
}

#[test]
fn bad_tenant_and_key_arguments_fail_before_any_request() {
    // Nobody listens here: an error other than "cannot reach" was found before sending.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("http://127.0.0.1:{port}");
    for (args, want) in [
        (
            &["tenants", "create", "acme", "--quota", "max_functions"][..],
            "is not KEY=VALUE",
        ),
        (
            &["tenants", "create", "acme", "--quota", "max_functions="],
            "no value for max_functions",
        ),
        (
            &[
                "tenants",
                "create",
                "acme",
                "--quota",
                "max_functions=1",
                "--quota",
                "max_functions=2",
            ],
            "--quota max_functions is given more than once",
        ),
        (&["tenants", "update", "acme"], "--quota <KEY=VALUE>"),
        (
            &["keys", "create", "--role", "superuser", "--name", "x"],
            "invalid value 'superuser' for '--role <ROLE>'",
        ),
        (
            &[
                "keys",
                "create",
                "--role",
                "reader",
                "--name",
                "x",
                "--expires-in",
                "1y",
            ],
            "\"1y\" is not a duration",
        ),
        (
            &[
                "keys",
                "create",
                "--role",
                "reader",
                "--name",
                "x",
                "--expires-in",
                "0m",
            ],
            "no time at all",
        ),
        (
            &[
                "keys",
                "create",
                "--role",
                "reader",
                "--name",
                "x",
                "--expires-at",
                "tomorrow",
            ],
            "is not an RFC 3339 time",
        ),
        (
            &["--api-key", "", "whoami"],
            "the API key from --api-key is empty",
        ),
    ] {
        let mut all = vec!["--server", url.as_str()];
        all.extend_from_slice(args);
        let r = run_client(&all, None, &[]);
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stderr.contains(want), "{args:?}: {r:?}");
        assert!(!r.stderr.contains("cannot reach"), "{args:?}: {r:?}");
    }
}
