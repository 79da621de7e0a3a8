//! Large components (issue 14): a background upload (`PUT ...?async=true` or
//! `Prefer: respond-async`) answers 202 at once and compiles behind a status the client
//! polls; the artifact cache is bounded (`--artifact-cache-mb`) and an evicted artifact is
//! compiled again at its next load. Real server, real HTTP, real guests.

mod support;

use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::*;

/// `PUT /v1/functions/{name}{query}` with `bytes` and `headers`: status, Location, body.
fn put(
    s: &Server,
    name: &str,
    query: &str,
    headers: &[(&str, &str)],
    bytes: Vec<u8>,
) -> (u16, Option<String>, Value) {
    let mut r = s
        .client()
        .put(format!("{}/v1/functions/{name}{query}", s.url))
        .header("content-type", "application/wasm")
        .body(bytes);
    for (k, v) in headers {
        r = r.header(*k, *v);
    }
    let resp = r.send().unwrap();
    let status = resp.status().as_u16();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_string());
    (status, location, resp.json().unwrap_or(Value::Null))
}

/// Poll an upload until it is no longer compiling.
fn wait_upload(s: &Server, location: &str, timeout: Duration) -> Value {
    let until = Instant::now() + timeout;
    loop {
        let (code, v) = s.get(location);
        assert_eq!(code, 200, "{v}");
        if v["status"] != "compiling" {
            return v;
        }
        assert!(
            Instant::now() < until,
            "still compiling after {timeout:?}: {v}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn a_background_upload_answers_at_once_compiles_behind_a_status_and_then_runs() {
    let s = Server::start();
    let bytes = guest_bytes("python/hello");
    let t = Instant::now();
    let (code, location, v) = put(&s, "py", "?async=true", &[], bytes.clone());
    let answered = t.elapsed();
    assert_eq!(code, 202, "{v}");
    assert!(
        answered < Duration::from_secs(1),
        "answered after {answered:?}"
    );
    let location = location.expect("a Location to poll");
    assert_eq!(v["status"], "compiling", "{v}");
    assert_eq!(v["location"], location.as_str());
    assert_eq!(
        location,
        format!(
            "/v1/functions/py/uploads/{}",
            v["upload_id"].as_str().unwrap()
        )
    );
    assert_eq!(v["size_bytes"], bytes.len() as u64);
    // No version before the component compiled and linked.
    let (code, f) = s.get("/v1/functions/py");
    assert_eq!(code, 404, "a version record before the compile ended: {f}");

    let done = wait_upload(&s, &location, Duration::from_secs(180));
    eprintln!(
        "python hello: 202 after {answered:?}, ready after {:?}",
        t.elapsed()
    );
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(
        (done["version"].as_u64(), done["created"].as_bool()),
        (Some(1), Some(true))
    );
    assert!(
        done["finished_at"].is_string() && done.get("error").is_none(),
        "{done}"
    );
    let id = s.invoke("py", &json!({}));
    assert_eq!(s.wait_done(&id)["status"], "succeeded");

    // The same bytes under another name share the artifact: no second compile (a sync PUT).
    let compiles = s.metric("durable_compiles_total");
    let t = Instant::now();
    let (code, _, v) = put(&s, "py2", "", &[], bytes.clone());
    assert_eq!(code, 201, "{v}");
    assert_eq!(
        s.metric("durable_compiles_total"),
        compiles,
        "compiled again"
    );
    eprintln!("python hello under a second name: {:?}", t.elapsed());
    let (_, artifacts) = artifacts(&s);
    assert!(
        artifacts < 2 * 30_000_000,
        "one artifact each: {artifacts} bytes"
    );

    // The same bytes again, through the Prefer header: ready, not a new version.
    let (code, location, v) = put(&s, "py", "", &[("prefer", "respond-async")], bytes);
    assert_eq!(code, 202, "{v}");
    let again = wait_upload(&s, &location.unwrap(), Duration::from_secs(30));
    assert_eq!(
        (again["version"].as_u64(), again["created"].as_bool()),
        (Some(1), Some(false)),
        "{again}"
    );
    // Another function's path, or an unknown id: 404.
    for path in [
        format!(
            "/v1/functions/other/uploads/{}",
            v["upload_id"].as_str().unwrap()
        ),
        "/v1/functions/py/uploads/nope".into(),
    ] {
        let (code, body) = s.get(&path);
        assert_eq!(
            (code, body["error"]["code"].as_str()),
            (404, Some("not_found")),
            "{path}"
        );
    }
}

#[test]
fn a_bad_component_uploaded_in_the_background_ends_failed_with_the_reason() {
    let s = Server::start();
    type Headers = &'static [(&'static str, &'static str)];
    let cases: [(&str, Headers, &[u8], &str); 3] = [
        (
            "?async=true",
            &[],
            b"hello world",
            "not a WebAssembly binary",
        ),
        (
            "",
            &[("prefer", "wait=5, respond-async")],
            b"\0asm\x01\0\0\0",
            "core WebAssembly module",
        ),
        (
            "?async=true",
            &[],
            b"\0asm\x0d\0\x01\0garbage",
            "invalid component",
        ),
    ];
    for (query, headers, bytes, reason) in cases {
        let (code, location, v) = put(&s, "bad", query, headers, bytes.to_vec());
        assert_eq!(code, 202, "{reason}: {v}");
        let done = wait_upload(&s, &location.unwrap(), Duration::from_secs(30));
        assert_eq!(done["status"], "failed", "{done}");
        assert_eq!(done["error"]["code"], "invalid_component", "{done}");
        let message = done["error"]["message"].as_str().unwrap();
        assert!(message.contains(reason), "{reason:?} not in {message:?}");
        assert!(done.get("version").is_none(), "{done}");
    }
    assert_eq!(s.get("/v1/functions/bad").0, 404, "nothing was stored");
    // What is refused before the body is read is refused at once, as without async.
    let (code, location, v) = put(
        &s,
        "bad",
        "?async=true&memory_limit_mb=lots",
        &[],
        b"x".to_vec(),
    );
    assert_eq!((code, location), (400, None), "{v}");
}

#[test]
fn a_background_upload_cut_short_by_a_crash_is_failed_after_the_restart() {
    let mut s = Server::start();
    let (code, location, v) = put(&s, "py", "?async=true", &[], guest_bytes("python/hello"));
    assert_eq!(code, 202, "{v}");
    // The Python component compiles for seconds: kill -9 under it.
    s.crash_and_restart();
    let (code, v) = s.get(&location.unwrap());
    assert_eq!(code, 200, "{v}");
    assert_eq!(
        (v["status"].as_str(), v["error"]["code"].as_str()),
        (Some("failed"), Some("interrupted")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("upload again"),
        "{v}"
    );
    assert_eq!(s.get("/v1/functions/py").0, 404, "nothing was stored");
}

/// The `*.cwasm` files of the server's artifact directory: count and bytes.
fn artifacts(s: &Server) -> (usize, u64) {
    std::fs::read_dir(s.data.path().join("artifacts"))
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".cwasm"))
        .fold((0, 0), |(n, b), e| (n + 1, b + e.metadata().unwrap().len()))
}

#[test]
fn the_artifact_bound_evicts_the_least_recently_used_and_an_evicted_one_is_compiled_again() {
    const BOUND: u64 = 1024 * 1024;
    let mut s = Server::start_with(&["--artifact-cache-mb", "1"]);
    let hello = guest_bytes("hello");
    let names = ["h0", "h1", "h2", "h3"];
    for (i, name) in names.iter().enumerate() {
        // Distinct bytes (a custom section), so distinct artifacts of about 350 kB each.
        let (code, _, v) = put(&s, name, "", &[], padded_component(&hello, 16, i as u8));
        assert_eq!(code, 201, "{v}");
        let (n, bytes) = artifacts(&s);
        assert!(
            bytes <= BOUND || n == 1,
            "{n} artifacts, {bytes} bytes over {BOUND}"
        );
        assert_eq!(s.metric("durable_artifact_cache_bytes") as u64, bytes);
    }
    let (kept, _) = artifacts(&s);
    assert!(kept < names.len(), "nothing was evicted: {kept} artifacts");
    // A new process has nothing in memory: each function loads from its artifact or, evicted,
    // compiles again from the stored bytes.
    s.crash_and_restart();
    let ids: Vec<_> = names.iter().map(|n| s.invoke(n, &json!({}))).collect();
    for id in &ids {
        assert_eq!(s.wait_done(id)["status"], "succeeded");
    }
    let compiles = s.metric("durable_compiles_total") as usize;
    assert!(
        compiles >= names.len() - kept,
        "{compiles} compiles for {} evicted",
        names.len() - kept
    );
    let (_, bytes) = artifacts(&s);
    assert!(bytes <= BOUND, "{bytes} bytes after the reloads");
}

/// `durable-host --server URL ARGS` with the admin key: exit code, stdout, stderr.
fn cli(s: &Server, args: &[&str]) -> (i32, String, String) {
    let out = std::process::Command::new(BIN)
        .args(["--server", &s.url])
        .args(args)
        .env("DURABLE_API_KEY", &s.admin_key)
        .env_remove("DURABLE_TENANT")
        .output()
        .unwrap();
    let text = |b: Vec<u8>| String::from_utf8(b).unwrap();
    (
        out.status.code().unwrap(),
        text(out.stdout),
        text(out.stderr),
    )
}

#[test]
fn deploy_uploads_a_large_file_in_the_background_and_prints_what_a_synchronous_upload_does() {
    let s = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // Over the CLI's 4 MiB background threshold (a custom section: it compiles like hello).
    let large = dir.path().join("large.wasm");
    std::fs::write(&large, padded_component(&guest_bytes("hello"), 5 << 20, 1)).unwrap();
    let bad = dir.path().join("bad.wasm");
    std::fs::write(&bad, [&b"\0asm\x0d\0\x01\0"[..], &[7u8; 5 << 20]].concat()).unwrap();
    let large = large.to_str().unwrap();

    let (code, out, err) = cli(&s, &["deploy", "big", large]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(
        out.starts_with("deployed big version 1 (new version)\n"),
        "{out}"
    );
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("compiled in the background: upload "))
        .unwrap_or_else(|| panic!("not a background upload: {out}"));
    let (code, up) = s.get(&format!("/v1/functions/big/uploads/{id}"));
    assert_eq!((code, up["status"].as_str()), (200, Some("ready")), "{up}");
    let (code, out, err) = cli(&s, &["--json", "deploy", "big", large]);
    assert_eq!(code, 0, "{out}{err}");
    let v: Value = serde_json::from_str(&out).unwrap();
    let (_, sync) = s.get("/v1/functions/big");
    assert_eq!(
        (v["version"].as_u64(), v["created"].as_bool()),
        (Some(1), Some(false)),
        "{v}"
    );
    assert_eq!(v["settings"], sync["settings"]);
    assert_eq!(v["size_bytes"], sync["versions"][0]["size_bytes"]);
    let id = s.invoke("big", &json!({}));
    assert_eq!(s.wait_done(&id)["status"], "succeeded");

    let (code, out, err) = cli(&s, &["deploy", "bad", bad.to_str().unwrap()]);
    assert_eq!(code, 2, "{out}{err}");
    assert!(
        err.contains("400 invalid_component: invalid component"),
        "{err}"
    );
}
