//! The per-tenant sandbox and its observability (issue 9): guests never reach the host's
//! own listeners through an allowlisted name; metrics carry a `tenant` label; the
//! `--metrics-listen` listener serves `/metrics` alone, on loopback only.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// Run the conformance guest's `step-http` GET of `url` to its end; its output.
fn get_from_guest(s: &Server, url: &str) -> Value {
    let id = s.invoke(
        "conf",
        &scenario("step-http", json!({"url": url, "method": "GET"})),
    );
    let ex = s.wait_done(&id);
    assert_eq!(ex["status"], "succeeded", "{ex}");
    ex["output"].clone()
}

fn denied(output: &Value) -> bool {
    output["error"]
        .as_str()
        .is_some_and(|e| e.contains("HttpRequestDenied"))
}

/// `127.1` is no IP literal (Rust's parser and so the allowlist read it as a name), but the
/// system resolver answers 127.0.0.1 for it: an alias of the loopback address, standing in
/// for a DNS name or an /etc/hosts entry that points at this host.
#[test]
fn sandbox_a_guest_reaches_the_hosts_own_listeners_only_through_an_entry_that_names_them() {
    let api = free_port();
    let metrics = free_port();
    let mock = Mock::start();
    mock.respond("/hello", 200, "hi from the mock");
    let mock_port = mock.addr.rsplit_once(':').unwrap().1.to_string();
    let allow = [
        format!("localhost:{api}"),
        format!("127.1:{api}"),
        format!("127.1:{metrics}"),
        format!("127.1:{mock_port}"),
    ];
    let mut args = vec![
        "--listen".to_string(),
        format!("127.0.0.1:{api}"),
        "--metrics-listen".to_string(),
        format!("127.0.0.1:{metrics}"),
    ];
    for a in &allow {
        args.extend(["--allow-outbound".to_string(), a.clone()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let s = Server::start_with(&args);
    assert_eq!(s.url, format!("http://127.0.0.1:{api}"));
    s.deploy("conf", "conformance_guest");

    // `localhost` names this machine on purpose: the operator allowlisted the API port.
    let out = get_from_guest(&s, &format!("http://localhost:{api}/healthz"));
    assert_eq!(out["status"], 200, "{out}");
    assert!(out["body"].as_str().unwrap().contains("ok"), "{out}");

    // The alias resolves to the same address: refused, for the API and the metrics listener.
    let out = get_from_guest(&s, &format!("http://127.1:{api}/healthz"));
    assert!(denied(&out), "{out}");
    let out = get_from_guest(&s, &format!("http://127.1:{metrics}/metrics"));
    assert!(denied(&out), "{out}");

    // The control: the same alias, allowlisted with a port no listener of the host has,
    // resolves and connects (to the address the check saw), so the refusals above are the
    // rule's and not a failed lookup.
    let out = get_from_guest(&s, &format!("http://127.1:{mock_port}/hello"));
    assert_eq!(
        out,
        json!({"status": 200, "body": "hi from the mock"}),
        "{out}"
    );
    assert_eq!(mock.count("/hello"), 1);
}

#[test]
fn sandbox_metrics_listen_serves_metrics_alone_and_stops_with_the_host() {
    let port = free_port();
    let mut s = Server::start_with(&["--metrics-listen", &format!("127.0.0.1:{port}")]);
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("echo", json!({"value": 1})));
    assert_eq!(s.wait_done(&id)["status"], "succeeded");

    let client = reqwest::blocking::Client::new();
    let resp = client
        .get(format!("http://127.0.0.1:{port}/metrics"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().unwrap();
    assert_eq!(
        metric_in(&text, "durable_executions{status=\"succeeded\"}"),
        Some(1.0),
        "{text}"
    );
    // Without a key, the API's own /metrics answers 401: only this listener is open.
    let resp = client.get(format!("{}/metrics", s.url)).send().unwrap();
    assert_eq!(resp.status(), 401);
    for path in ["/healthz", "/v1/functions", "/v1/executions"] {
        let resp = client
            .get(format!("http://127.0.0.1:{port}{path}"))
            .send()
            .unwrap();
        assert_eq!(resp.status(), 404, "{path}");
    }

    // Ctrl-C stops both listeners, and the process exits.
    s.stop();
    let refused = std::net::TcpStream::connect(("127.0.0.1", port));
    assert!(refused.is_err(), "the metrics listener outlived the host");
}

#[test]
fn sandbox_metrics_listen_is_refused_unless_loopback() {
    let data = tempfile::tempdir().unwrap();
    for addr in ["0.0.0.0:0", "[::]:0"] {
        let out = std::process::Command::new(BIN)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(["--metrics-listen", addr])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "started with {addr}: {stderr}");
        for needle in ["--metrics-listen", "loopback"] {
            assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
        }
    }
}

/// Poll /metrics until `name` reads `want` (counters are bumped just after the status
/// the test waits for is written).
fn wait_metric(s: &Server, name: &str, want: f64) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let v = s.metric(name);
        if v == want {
            return;
        }
        assert!(Instant::now() < deadline, "{name} is {v}, not {want}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn sandbox_metrics_carry_a_tenant_label() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    // A step (replayed after the wait), a wait (one suspension), two activations.
    let id = s.invoke("conf", &scenario("child-wait", json!({"wait_ms": 50})));
    assert_eq!(s.wait_done(&id)["output"], json!(6));
    // A caught failure, replayed after its wait: failed steps count as replayed too.
    let id = s.invoke(
        "conf",
        &scenario("step-fail-then-wait", json!({"wait_ms": 50})),
    );
    assert_eq!(s.wait_done(&id)["output"], json!("done"));
    let t = "{tenant=\"default\"}";
    wait_metric(&s, &format!("durable_activations_total{t}"), 4.0);
    wait_metric(&s, &format!("durable_suspensions_total{t}"), 2.0);
    wait_metric(&s, &format!("durable_steps_replayed_total{t}"), 2.0);
    wait_metric(&s, &format!("durable_traps_total{t}"), 0.0);
    wait_metric(&s, &format!("durable_host_failures_total{t}"), 0.0);
    wait_metric(
        &s,
        "durable_executions{tenant=\"default\",status=\"succeeded\"}",
        2.0,
    );
    wait_metric(
        &s,
        "durable_executions{tenant=\"default\",status=\"running\"}",
        0.0,
    );
    // Host-wide series carry no tenant.
    let (status, text) = s.get("/metrics");
    assert_eq!(status, 200, "{text}");
    let text = text.as_str().unwrap().to_string();
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let per_tenant = [
            "durable_executions{",
            "durable_activations_total{",
            "durable_suspensions_total{",
            "durable_traps_total{",
            "durable_steps_replayed_total{",
            "durable_host_failures_total{",
            "durable_webhook_deliveries_total{",
            "durable_schedule_firings_total{",
            "durable_queue_depth{",
            "durable_queue_oldest_seconds{",
            "durable_throttled_total{",
            "durable_backlog_refused_total{",
            "durable_activation_duration_seconds_",
            "durable_step_attempt_duration_seconds_",
            "durable_queue_wait_seconds_",
            "durable_instantiate_duration_seconds_",
        ]
        .iter()
        .any(|p| line.starts_with(p));
        assert_eq!(
            per_tenant,
            line.contains("tenant=\"default\""),
            "{line}\n{text}"
        );
    }
    assert!(text.contains("\ndurable_resident_instances 0\n"), "{text}");
}

#[test]
fn sandbox_the_metric_helper_sums_the_series_that_match() {
    let text = "# TYPE a gauge\n\
                a{tenant=\"x\",status=\"running\"} 2\n\
                a{tenant=\"y\",status=\"running\"} 3\n\
                a{tenant=\"y\",status=\"failed\"} 7\n\
                # TYPE b counter\n\
                # TYPE c gauge\n\
                c 4\n";
    assert_eq!(metric_in(text, "a{status=\"running\"}"), Some(5.0));
    assert_eq!(metric_in(text, "a{tenant=\"y\"}"), Some(10.0));
    assert_eq!(metric_in(text, "a"), Some(12.0));
    assert_eq!(metric_in(text, "b"), Some(0.0), "declared, no series yet");
    assert_eq!(metric_in(text, "c"), Some(4.0));
    assert_eq!(metric_in(text, "d"), None);
}

/// A tenant's `outbound_allowlist` narrows the server's `--allow-outbound` for its guests
/// only, and can never widen it: each row is a tenant's list and whether its guest reaches
/// the mock (allowlisted by the server) and the other mock (not allowlisted by the server).
#[test]
fn sandbox_a_tenants_outbound_allowlist_narrows_the_servers_for_its_guests_only() {
    let allowed = Mock::start();
    allowed.respond("/x", 200, "allowed");
    let other = Mock::start();
    other.respond("/x", 200, "other");
    let s = Server::start_with(&["--allow-outbound", &allowed.allow()]);
    let cases: [(&str, Value, bool, bool); 4] = [
        ("wide", Value::Null, true, false),
        ("narrow", json!([]), false, false),
        ("same", json!([allowed.allow()]), true, false),
        (
            "wider",
            json!([allowed.allow(), other.allow()]),
            true,
            false,
        ),
    ];
    for (tenant, list, reaches_allowed, reaches_other) in cases {
        let (st, v) = s.post(
            "/v1/tenants",
            &json!({"name": tenant, "quotas": {"outbound_allowlist": list}}),
        );
        assert_eq!(st, 201, "{v}");
        let (st, key) = s.post(
            &format!("/v1/tenants/{tenant}/keys"),
            &json!({"role": "owner", "name": "t"}),
        );
        assert_eq!(st, 201, "{key}");
        let key = key["key"].as_str().unwrap();
        let (st, v) = s.req_as(
            Some(key),
            "PUT",
            "/v1/functions/conf",
            Some(guest_bytes("conformance_guest")),
        );
        assert_eq!(st, 201, "{v}");
        for (mock, expected) in [(&allowed, reaches_allowed), (&other, reaches_other)] {
            let input = scenario(
                "step-http",
                json!({"url": format!("{}/x", mock.url()), "method": "GET"}),
            );
            let (st, ex) = s.req_as(
                Some(key),
                "POST",
                "/v1/functions/conf/invoke?wait=30",
                Some(input.to_string().into_bytes()),
            );
            assert_eq!(st, 200, "{ex}");
            assert_eq!(ex["status"], "succeeded", "{ex}");
            let out = &ex["output"];
            assert_eq!(
                !denied(out),
                expected,
                "tenant {tenant}, {}: {out}",
                mock.url()
            );
        }
    }
}
