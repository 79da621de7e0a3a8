//! Sizes a guest controls: log volume, nesting depth, names, errors, callbacks (findings 4, 6, 9).
//!
//! Each flood runs against the real server while a probe invokes another function over and
//! over: the flood must end bounded (a clear `Durable.LimitExceeded` naming the limit, or a
//! cut with a marker), the store and the server's peak RSS must grow by a bounded amount,
//! and the probe's p99 must stay within a generous bound of its own baseline, measured in
//! the same run.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[allow(unused_imports)]
use crate::support::*;

const MIB: f64 = 1024.0 * 1024.0;

/// Latencies of sync `echo` invokes of the function `probe`, in ms, sorted.
fn probe_once(s: &Server) -> f64 {
    let t = Instant::now();
    let (status, v) = s.post(
        "/v1/functions/probe/invoke?wait=60",
        &scenario("echo", json!({"value": 1})),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["status"], "succeeded", "{v}");
    t.elapsed().as_secs_f64() * 1000.0
}

fn p99(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() as f64 * 0.99).ceil() as usize).clamp(1, v.len()) - 1]
}

/// A server with the conformance guest deployed as `conf` (the floods) and `probe`, and the
/// probe's baseline p99.
fn start(flags: &[&str]) -> (Server, f64) {
    let s = Server::start_with(flags);
    s.deploy("conf", "conformance_guest");
    s.deploy("probe", "conformance_guest");
    for _ in 0..5 {
        probe_once(&s); // warm up
    }
    let baseline = p99((0..40).map(|_| probe_once(&s)).collect());
    (s, baseline)
}

/// Run `flood` while another thread probes; return its result and the probe's p99.
fn probed<T>(s: &Server, flood: impl FnOnce() -> T) -> (T, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let url = s.url.clone();
    let key = s.admin_key.clone();
    let prober = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let client = authed_client(&key);
            let body = scenario("echo", json!({"value": 1})).to_string();
            let mut lat = Vec::new();
            while !stop.load(Ordering::SeqCst) || lat.len() < 10 {
                let t = Instant::now();
                let r = client
                    .post(format!("{url}/v1/functions/probe/invoke?wait=60"))
                    .body(body.clone())
                    .send()
                    .unwrap();
                assert_eq!(r.status().as_u16(), 200);
                lat.push(t.elapsed().as_secs_f64() * 1000.0);
            }
            lat
        })
    };
    let out = flood();
    stop.store(true, Ordering::SeqCst);
    let lat = prober.join().expect("probe thread");
    (out, p99(lat))
}

/// The probe's p99 during a flood stays within a generous bound of its baseline.
fn assert_p99(what: &str, baseline: f64, during: f64) {
    let bound = (baseline * 20.0).max(baseline + 1500.0);
    assert!(
        during <= bound,
        "{what}: the other function's p99 went from {baseline:.1} ms to {during:.1} ms (bound {bound:.0} ms)"
    );
    eprintln!("{what}: probe p99 {baseline:.1} ms -> {during:.1} ms");
}

/// Store and peak-RSS growth of `run`, in MiB.
fn growth<T>(s: &Server, run: impl FnOnce() -> T) -> (T, f64, f64) {
    let (disk, hwm) = (s.data_bytes() as f64, s.proc_mib("VmHWM"));
    let out = run();
    let disk = ((s.data_bytes() as f64 - disk) / MIB).max(0.0);
    let rss = s.proc_mib("VmHWM") - hwm;
    eprintln!("store +{disk:.1} MiB, peak RSS +{rss:.1} MiB");
    (out, disk, rss)
}

fn errors_of(h: &[Value], event_type: &str) -> Vec<Value> {
    h.iter()
        .filter(|e| e["event_type"] == event_type)
        .map(|e| e["details"]["error"].clone())
        .collect()
}

/// Finding 4: four executions each try to log 24 MiB over three activations (through the
/// `log` import); each keeps at most `--max-log-bytes-per-execution`, says once how much it
/// dropped, still succeeds, and its logs come in pages.
#[test]
fn finding_04_log_floods_are_bounded_per_execution_paged_and_do_not_starve_others() {
    let (s, baseline) = start(&["--max-log-bytes-per-execution", "2097152"]);
    let flood = scenario(
        "log-flood",
        json!({"lines": 2000, "bytes": 4096, "activations": 3}),
    );
    let ((ids, execs), disk_mib, rss_mib) = growth(&s, || {
        probed(&s, || {
            let ids: Vec<String> = (0..4).map(|_| s.invoke("conf", &flood)).collect();
            let execs: Vec<Value> = ids.iter().map(|id| s.wait_done(id)).collect();
            (ids, execs)
        })
    });
    let ((ids, execs), p99) = (ids, execs);
    for ex in &execs {
        assert_eq!(
            ex["status"], "succeeded",
            "logging past the limit fails nothing: {ex}"
        );
    }
    for id in &ids {
        // Paged: more than one page, each small.
        let (status, first) = s.get(&format!("/v1/executions/{id}/logs"));
        assert_eq!(status, 200, "{first}");
        assert!(first["next_cursor"].is_string(), "a 2 MiB log is paged");
        assert!(
            first.to_string().len() < 2 * 1024 * 1024,
            "a page stays near 1 MiB"
        );
        let (status, bad) = s.get(&format!("/v1/executions/{id}/logs?cursor=nope"));
        assert_eq!(status, 400, "{bad}");

        let logs = s.logs(id);
        let bytes: usize = logs
            .iter()
            .map(|l| l["message"].as_str().unwrap().len())
            .sum();
        let markers: Vec<&str> = logs
            .iter()
            .filter_map(|l| l["message"].as_str())
            .filter(|m| m.starts_with("log limit reached:"))
            .collect();
        assert!(bytes <= 2 * 1024 * 1024 + 1024, "{bytes} bytes of log kept");
        assert!(
            bytes >= 2 * 1024 * 1024 - 8192,
            "the log is filled up to the limit: {bytes}"
        );
        assert_eq!(markers.len(), 1, "one marker line: {markers:?}");
        assert!(
            markers[0].contains("max_log_bytes_per_execution") && markers[0].contains("dropped"),
            "{}",
            markers[0]
        );
        assert!(
            logs.last().unwrap()["message"]
                .as_str()
                .unwrap()
                .starts_with("log limit reached:"),
            "nothing is logged after the marker"
        );
    }
    // The CLI follows the pages: every line, the marker last.
    let out = std::process::Command::new(BIN)
        .args(["--server", &s.url, "logs", &ids[0]])
        .env("DURABLE_API_KEY", &s.admin_key)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        stdout.lines().count(),
        s.logs(&ids[0]).len(),
        "the CLI prints every page"
    );
    assert!(stdout
        .lines()
        .last()
        .unwrap()
        .contains("log limit reached:"));
    // 96 MiB attempted, 8 MiB kept; sled and its write-ahead log may hold it twice.
    assert!(disk_mib < 40.0, "the store grew by {disk_mib:.1} MiB");
    assert!(rss_mib < 150.0, "peak RSS grew by {rss_mib:.1} MiB");
    assert_p99("log flood", baseline, p99);
}

/// Finding 6: a guest nesting child contexts 10,000 deep fails at the depth limit with
/// `Durable.LimitExceeded` naming it, quickly and with bounded growth; at the limit it
/// succeeds.
#[test]
fn finding_06_context_nesting_is_bounded_by_max_context_depth() {
    let (s, baseline) = start(&[]);
    let ((ex, took), disk_mib, rss_mib) = growth(&s, || {
        probed(&s, || {
            let t = Instant::now();
            let id = s.invoke("conf", &scenario("nest", json!({"depth": 10_000})));
            (s.wait_done(&id), t.elapsed())
        })
    });
    let ((ex, took), p99) = (ex, took);
    assert_eq!(ex["status"], "failed", "{ex}");
    assert_eq!(ex["error"]["error_type"], "Durable.LimitExceeded", "{ex}");
    let msg = ex["error"]["error_message"].as_str().unwrap();
    assert!(msg.contains("max_context_depth = 128"), "{msg}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
    assert!(disk_mib < 10.0, "the store grew by {disk_mib:.1} MiB");
    assert!(rss_mib < 100.0, "peak RSS grew by {rss_mib:.1} MiB");
    assert_p99("nesting", baseline, p99);

    let id = s.invoke("conf", &scenario("nest", json!({"depth": 128})));
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    assert_eq!(ex["output"], 128);
    let deepest = s
        .history(&id)
        .iter()
        .filter_map(|e| e["id"].as_str().map(str::len))
        .max()
        .unwrap();
    assert!(
        deepest < 128 * 4,
        "ids at the limit stay small: {deepest} bytes"
    );
}

/// What one oversized value must come to.
enum Expect {
    /// The execution fails with `Durable.LimitExceeded` naming this.
    Limit(&'static str),
    /// It succeeds; its history's errors are within the error size limits.
    Bounded,
    /// It fails with its own error, cut to the size limits.
    CutError,
}

/// Finding 9 (and the `u64::MAX` wait of finding 13): each guest-sized value over its limit,
/// one table; each gives a clear outcome, bounded store and RSS growth, and leaves another
/// function's p99 near its baseline.
#[test]
fn finding_09_oversized_names_errors_callbacks_and_events_are_bounded() {
    let (s, baseline) = start(&[
        "--max-pending-callbacks",
        "100",
        "--max-history-events",
        "500",
    ]);
    let cases = [
        (
            "1 MiB step names x 50",
            scenario("big-names", json!({"bytes": 1 << 20, "count": 50})),
            Expect::Limit("max_name_bytes = 256"),
        ),
        (
            "8 MiB step errors x 10",
            scenario("big-step-errors", json!({"bytes": 8 << 20, "count": 10})),
            Expect::Bounded,
        ),
        (
            "a 20 MiB execution error with 2 MiB of data",
            scenario(
                "big-error",
                json!({"type_bytes": 4096, "message_bytes": 20 << 20, "data_bytes": 2 << 20}),
            ),
            Expect::CutError,
        ),
        (
            "1,000 pending callbacks",
            scenario("callback-flood", json!({"count": 1000})),
            Expect::Limit("max_pending_callbacks = 100"),
        ),
        (
            "1,000 steps",
            scenario("steps", json!({"count": 1000})),
            Expect::Limit("max_history_events = 500"),
        ),
        (
            "finding 13: a u64::MAX wait",
            scenario("wait", json!({"ms": u64::MAX})),
            Expect::Limit("max_wait_ms = 31622400000"),
        ),
    ];
    for (what, input, expect) in cases {
        let ((id, ex), disk_mib, rss_mib) = growth(&s, || {
            probed(&s, || {
                let id = s.invoke("conf", &input);
                let ex = s.wait_done(&id);
                (id, ex)
            })
        });
        let ((id, ex), p99) = (id, ex);
        let history = s.history(&id);
        match expect {
            Expect::Limit(limit) => {
                assert_eq!(ex["status"], "failed", "{what}: {ex}");
                assert_eq!(
                    ex["error"]["error_type"], "Durable.LimitExceeded",
                    "{what}: {ex}"
                );
                let msg = ex["error"]["error_message"].as_str().unwrap();
                assert!(msg.contains(limit), "{what}: {msg}");
            }
            Expect::Bounded => {
                assert_eq!(ex["status"], "succeeded", "{what}: {ex}");
                assert_eq!(ex["output"]["error_type"], "BigError", "{what}: {ex}");
                let errors = errors_of(&history, "StepFailed");
                assert_eq!(errors.len(), 10, "{what}");
                for e in errors {
                    let m = e["error_message"].as_str().unwrap();
                    assert!(m.len() <= 64 * 1024, "{what}: {} bytes", m.len());
                    assert!(m.contains("[cut: 8388608 bytes in all]"), "{what}");
                }
            }
            Expect::CutError => {
                assert_eq!(ex["status"], "failed", "{what}: {ex}");
                let e = &ex["error"];
                let (ty, m) = (
                    e["error_type"].as_str().unwrap(),
                    e["error_message"].as_str().unwrap(),
                );
                assert!(ty.len() <= 256 && ty.starts_with("TTT"), "{what}: {ty}");
                assert!(m.len() <= 64 * 1024, "{what}: {} bytes", m.len());
                assert!(m.contains("error_data dropped: 2097154 bytes"), "{what}");
                assert!(e["error_data"].is_null(), "{what}: {e}");
            }
        }
        let json_bytes = serde_json::to_string(&history).unwrap().len();
        assert!(json_bytes < 2 << 20, "{what}: a {json_bytes}-byte history");
        assert!(
            disk_mib < 20.0,
            "{what}: the store grew by {disk_mib:.1} MiB"
        );
        assert!(rss_mib < 150.0, "{what}: peak RSS grew by {rss_mib:.1} MiB");
        assert_p99(what, baseline, p99);
    }
}

/// Finding 9, callback failures: an external system fails a callback with a near-1 MiB
/// error; history records it cut to the error limits, and the guest sees the same cut error
/// on its first run as on any replay.
#[test]
fn finding_09_a_callback_failure_is_bounded_in_history_and_for_the_guest() {
    let (s, _) = start(&[]);
    let id = s.invoke("conf", &scenario("callback", json!({"catch": true})));
    let cb = s.callback_ids(&id, 1).remove(0);
    let failure = json!({
        "error_type": "T".repeat(1000),
        "error_message": "m".repeat(900_000),
        "error_data": serde_json::to_string(&"d".repeat(100_000)).unwrap(),
    });
    let (status, v) = s.post(&format!("/v1/callbacks/{cb}/fail"), &failure);
    assert_eq!(status, 200, "{v}");
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let seen = &ex["output"]["caught"];
    let recorded = &errors_of(&s.history(&id), "CallbackFailed")[0];
    for e in [seen, recorded] {
        let (ty, m) = (
            e["error_type"].as_str().unwrap(),
            e["error_message"].as_str().unwrap(),
        );
        assert!(ty.len() <= 256 && ty.starts_with("TTT"), "{ty}");
        assert!(m.len() <= 64 * 1024, "{} bytes", m.len());
        assert!(
            m.contains("error_data dropped: "),
            "{}",
            &m[m.len() - 200..]
        );
    }
    assert_eq!(
        seen["error_message"], recorded["error_message"],
        "first run = replay"
    );
}

/// Finding 4, across a restart: the host forgets what it knew of an execution's log, and
/// must find out from the store that the log is full (its last line is the marker), so the
/// next activation adds nothing, not even a second marker.
#[test]
fn finding_04_a_full_log_stays_full_across_a_restart() {
    let mut s = Server::start_with(&["--max-log-bytes-per-execution", "65536"]);
    s.deploy("conf", "conformance_guest");
    let flood = scenario(
        "log-flood",
        json!({"lines": 100, "bytes": 1024, "activations": 2, "wait_ms": 1500}),
    );
    let id = s.invoke("conf", &flood);
    s.wait_status(&id, &["suspended"], Duration::from_secs(60));
    let before = s.logs(&id);
    s.crash_and_restart();
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    let after = s.logs(&id);
    assert_eq!(after, before, "nothing logged after the restart");
    let last = after.last().unwrap()["message"].as_str().unwrap();
    assert!(last.starts_with("log limit reached: 36 lines"), "{last}");
}
