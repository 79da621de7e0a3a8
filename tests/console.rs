//! The web console (`/ui`, `console/`): the embedded files as HTTP serves them, and the
//! console itself end to end in real headless Chromium (`console/e2e/console.mjs`, driven
//! by playwright-core): sign in, deploy hello.wasm by upload, invoke it and watch its
//! timeline live through the wait, complete approval's callback from the console, a reader
//! key with no action buttons and its direct actions refused (403), and an execution of
//! 10,000 history events opening in under 2 s. Screenshots of every page go to
//! `target/console-screenshots/`.
//!
//! Needs the console built (`scripts/build-console.sh`, which `scripts/test.sh` runs before
//! cargo), node, and `/usr/bin/chromium` (`scripts/test.sh` installs it). Without node or
//! chromium the browser test is skipped with a loud message, except under CI (`CI=true`),
//! where it fails.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

fn under_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

/// A raw GET: status, the named headers, the body.
fn get(url: &str, headers: &[&str]) -> (u16, Vec<String>, String) {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap();
    let r = client.get(url).send().expect("GET");
    let status = r.status().as_u16();
    let h = headers
        .iter()
        .map(|n| {
            r.headers()
                .get(*n)
                .map(|v| v.to_str().unwrap().to_string())
                .unwrap_or_default()
        })
        .collect();
    (status, h, r.text().unwrap())
}

/// `/ui` serves the embedded build with no key: the app's routes get index.html (never
/// cached), hashed assets are immutable with their content types, a missing asset is a 404,
/// and the API keeps its own 404s and its keys.
#[test]
fn the_console_is_served_from_the_binary() {
    let s = Server::start();
    let (status, h, _) = get(&format!("{}/ui", s.url), &["location"]);
    assert_eq!((status, h[0].as_str()), (308, "/ui/"));
    let heads = ["content-type", "cache-control", "content-security-policy"];
    let (status, h, index) = get(&format!("{}/ui/", s.url), &heads);
    assert_eq!(status, 200);
    assert_eq!(h[0], "text/html; charset=utf-8");
    assert_eq!(h[1], "no-cache");
    assert!(h[2].contains("default-src 'self'"), "{}", h[2]);
    if index.contains("The console was not built") {
        assert!(
            !under_ci(),
            "the binary embeds the placeholder page: scripts/build-console.sh did not run before cargo"
        );
        eprintln!(
            "\n!!! console not built (run scripts/build-console.sh): asset checks skipped !!!\n"
        );
        return;
    }
    // The SPA's own routes (a reload on any page) get the same index.
    for route in [
        "/ui/executions",
        "/ui/executions/01ABC",
        "/ui/functions/hello",
    ] {
        let (status, h, body) = get(&format!("{}{route}", s.url), &heads);
        assert_eq!((status, h[1].as_str()), (200, "no-cache"), "{route}");
        assert_eq!(body, index, "{route}");
    }
    // Every asset the index names, with its type; nothing from another origin.
    let assets: Vec<&str> = index
        .split(['"', '\''])
        .filter(|p| p.starts_with("/ui/assets/"))
        .collect();
    assert!(
        assets.iter().any(|a| a.ends_with(".js")) && assets.iter().any(|a| a.ends_with(".css")),
        "{index}"
    );
    assert!(
        !index.contains("http://") && !index.contains("https://"),
        "{index}"
    );
    for a in &assets {
        let (status, h, _) = get(&format!("{}{a}", s.url), &heads);
        assert_eq!(status, 200, "{a}");
        let want = if a.ends_with(".js") {
            "text/javascript; charset=utf-8"
        } else {
            "text/css; charset=utf-8"
        };
        assert_eq!(h[0], want, "{a}");
        assert_eq!(h[1], "public, max-age=31536000, immutable", "{a}");
    }
    let (status, _, _) = get(&format!("{}/ui/assets/index-gone.js", s.url), &[]);
    assert_eq!(status, 404);
    // The API around it is as before: unknown routes are the JSON 404, keys are required.
    let (status, _, body) = get(&format!("{}/v1/nope", s.url), &[]);
    assert_eq!(status, 404);
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["error"]["code"],
        "not_found"
    );
    let (status, _, _) = get(&format!("{}/v1/functions", s.url), &[]);
    assert_eq!(status, 401);
}

/// Whether node, the console's node_modules and (with `browser`) chromium are missing.
/// Under CI a missing one fails the test; elsewhere the test is skipped, loudly.
fn missing(test: &str, browser: Option<&str>) -> bool {
    let node = Command::new("node").arg("--version").output().is_ok();
    let modules = repo().join("console/node_modules/playwright-core").is_dir();
    let chromium = browser.is_none_or(|c| Path::new(c).exists());
    if node && modules && chromium {
        return false;
    }
    let found = |ok: bool| if ok { "found" } else { "missing" };
    let why = format!(
        "node {}, console/node_modules {} (scripts/build-console.sh), chromium {} \
         (scripts/test.sh installs it)",
        found(node),
        found(modules),
        found(chromium),
    );
    assert!(!under_ci(), "{test} cannot run under CI: {why}");
    eprintln!("\n!!! SKIPPED {test}: {why} !!!\n");
    true
}

/// Run a node script in `console/`: its stdout; its stderr is passed on, and both are in
/// the panic if it fails.
fn node(cmd: &mut Command) -> String {
    let out = cmd
        .current_dir(repo().join("console"))
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    eprintln!("{stderr}");
    // The program and arguments only: the environment holds keys.
    let args: Vec<_> = cmd.get_args().collect();
    assert!(
        out.status.success(),
        "node {args:?}: {}\n{stdout}\n{stderr}",
        out.status
    );
    stdout
}

/// The timeline's fold of history events into rows (`console/src/timeline.ts`), unit-tested
/// on synthetic histories (`console/e2e/timeline.test.mjs`, node's test runner).
#[test]
fn the_timeline_fold_passes_its_unit_tests() {
    if missing("the timeline unit tests", None) {
        return;
    }
    let stdout = node(Command::new("node").args(["--test", "e2e/timeline.test.mjs"]));
    assert!(
        stdout.contains("# fail 0") && !stdout.contains("# pass 0"),
        "{stdout}"
    );
}

/// The whole console in headless Chromium; see `console/e2e/console.mjs` for the checks.
#[test]
fn the_console_works_in_a_browser() {
    let chromium = std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    if missing("the console browser test", Some(&chromium)) {
        return;
    }
    // An outbound allowance for the webhook's destination (nothing listens there).
    let s = Server::start_with(&["--allow-outbound", "127.0.0.1:9"]);
    let (status, _, index) = get(&format!("{}/ui/", s.url), &[]);
    assert_eq!(status, 200);
    assert!(
        !index.contains("The console was not built"),
        "the binary embeds the placeholder: run scripts/build-console.sh before cargo"
    );
    let (st, reader) = s.post(
        "/v1/tenants/default/keys",
        &json!({"role": "reader", "name": "console reader"}),
    );
    assert_eq!(st, 201, "{reader}");
    s.deploy("approval", "approval");
    s.deploy("conformance", "conformance_guest");
    // 5,000 steps: 10,000 step events and a few more.
    let big = s.invoke("conformance", &scenario("steps", json!({"count": 5000})));
    // A dead letter, a schedule and a webhook for their pages.
    let failed = s.invoke("conformance", &scenario("no-such-scenario", json!({})));
    let (st, v) = s.req(
        "PUT",
        "/v1/schedules/nightly",
        Some(
            json!({"function": "conformance", "cron": "0 3 * * *", "timezone": "Europe/Paris",
                   "input": scenario("echo", json!({"value": 1})), "overlap": "skip", "catch_up": "none"})
            .to_string()
            .into_bytes(),
        ),
    );
    assert!(st == 200 || st == 201, "{st} {v}");
    let (st, v) = s.post(
        "/v1/webhooks",
        &json!({"url": "http://127.0.0.1:9/hook", "events": ["execution.failed"]}),
    );
    assert_eq!(st, 201, "{v}");
    // A map's branches and a step's retries for the timeline.
    let map = s.invoke(
        "conformance",
        &scenario(
            "map",
            json!({"items": ["a", "b", "c"], "name": "greetings", "body": "greet"}),
        ),
    );
    let retried = s.invoke(
        "conformance",
        &scenario(
            "step-retry",
            json!({"fail_times": 2, "max_attempts": 3, "delay_ms": 200}),
        ),
    );
    // A long wait to stop (and redrive) from the console.
    let long = s.invoke("conformance", &scenario("wait", json!({"ms": 600_000})));
    assert_eq!(s.wait_done(&failed)["status"], "failed");
    assert_eq!(s.wait_done(&map)["status"], "succeeded");
    assert_eq!(s.wait_done(&retried)["status"], "succeeded");
    let done = s.wait_status(&big, &["succeeded"], Duration::from_secs(120));
    assert_eq!(done["output"], 5000);
    let shots = repo().join("target/console-screenshots");
    let _ = std::fs::remove_dir_all(&shots);
    let started = Instant::now();
    let stdout = node(
        Command::new("node")
            .arg(repo().join("console/e2e/console.mjs"))
            .env("CONSOLE_URL", &s.url)
            .env("ADMIN_KEY", &s.admin_key)
            .env("READER_KEY", reader["key"].as_str().unwrap())
            .env("HELLO_WASM", guest("hello"))
            .env("BIG_EXECUTION", &big)
            .env("MAP_EXECUTION", &map)
            .env("RETRIED_EXECUTION", &retried)
            .env("LONG_EXECUTION", &long)
            .env("SCREENSHOTS", &shots)
            .env("CHROMIUM", &chromium),
    );
    let figures: Value = serde_json::from_str(stdout.trim().lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("the figures line: {e}: {stdout}"));
    eprintln!(
        "console e2e passed in {:?}: {figures}; screenshots in {}",
        started.elapsed(),
        shots.display()
    );
    assert!(figures["big_open_ms"].as_u64().unwrap() < 2000, "{figures}");
    let pngs = std::fs::read_dir(&shots).unwrap().count();
    assert!(pngs >= 18, "{pngs} screenshots in {}", shots.display());
    // What the browser did is what the server has: the console's approval succeeded with
    // the result typed into its form, and hello ran from the uploaded component.
    let (_, list) = s.get("/v1/executions?function=approval");
    let approval = &list["executions"][0];
    assert_eq!(approval["status"], "succeeded", "{approval}");
    assert_eq!(
        approval["output"]["approval"],
        json!({"approved": true, "by": "console"})
    );
    // hello's runs (one, or up to three on a loaded machine) and the fork of the last one
    // (the newest), all succeeded.
    let (_, list) = s.get("/v1/executions?function=hello");
    let hellos = list["executions"].as_array().unwrap();
    assert!((2..=4).contains(&hellos.len()), "{list}");
    assert!(hellos.iter().all(|x| x["status"] == "succeeded"), "{list}");
    assert_eq!(
        hellos[0]["forked_from"], hellos[1]["execution_id"],
        "{list}"
    );
    // The long wait was stopped, then redriven: waiting again, redriven once.
    let x = s.execution(&long);
    assert_eq!(
        (x["status"].as_str(), x["redrive_count"].as_u64()),
        (Some("suspended"), Some(1)),
        "{x}"
    );
}
