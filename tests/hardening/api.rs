//! Idempotency under concurrency and the API's edges (findings 1 and 13).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

/// One invoke with an `Idempotency-Key` and a raw body: (status, answer).
fn keyed_invoke(
    client: &reqwest::blocking::Client,
    url: &str,
    key: &str,
    body: &str,
) -> (u16, Value) {
    let resp = client
        .post(format!("{url}/v1/functions/conf/invoke"))
        .header("Idempotency-Key", key)
        .body(body.to_string())
        .send()
        .expect("invoke");
    let status = resp.status().as_u16();
    (status, resp.json().expect("a JSON answer"))
}

/// Every execution of the server, through every page.
fn all_executions(s: &Server) -> Vec<Value> {
    let mut out = Vec::new();
    let mut path = "/v1/executions?limit=1000".to_string();
    loop {
        let (st, page) = s.get(&path);
        assert_eq!(st, 200, "{page}");
        out.extend(page["executions"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(c) => path = format!("/v1/executions?limit=1000&cursor={c}"),
            None => return out,
        }
    }
}

/// `rounds` rounds; in each, `at_once` threads send their invoke for the round's key
/// together (a barrier per round). `body(round, thread)` is the raw body each sends (any
/// spacing). Returns, per key, every thread's (thread, status, answer).
fn race(
    s: &Server,
    prefix: &str,
    rounds: usize,
    at_once: usize,
    body: impl Fn(usize, usize) -> String + Sync,
) -> BTreeMap<String, Vec<(usize, u16, Value)>> {
    let barrier = Barrier::new(at_once);
    let answers = std::sync::Mutex::new(BTreeMap::<String, Vec<(usize, u16, Value)>>::new());
    std::thread::scope(|scope| {
        for t in 0..at_once {
            let (barrier, answers, body) = (&barrier, &answers, &body);
            scope.spawn(move || {
                let client = s.client();
                for round in 0..rounds {
                    let key = format!("{prefix}-{round}");
                    barrier.wait();
                    let (st, v) = keyed_invoke(client, &s.url, &key, &body(round, t));
                    answers
                        .lock()
                        .unwrap()
                        .entry(key)
                        .or_default()
                        .push((t, st, v));
                }
            });
        }
    });
    answers.into_inner().unwrap()
}

/// Same key, same JSON value (spacing varies by thread): every answer is a 2xx naming the
/// same execution, and exactly one execution exists per key. Before the fix a claim whose
/// execution was not written yet was taken over as a crash leftover: 159 of 200 keys got
/// two executions with 2 at once, up to 24 for one key with 50 at once.
#[test]
fn finding_01_concurrent_invokes_with_one_key_create_exactly_one_execution() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let body = |round: usize, t: usize| {
        let space = " ".repeat(t % 3);
        format!(r#"{{"scenario":{space}"echo", "value":{space}{round}}}"#)
    };
    let mut keys = BTreeMap::new();
    for (prefix, rounds, at_once) in [("eight", 100, 8), ("fifty", 1, 50)] {
        let answers = race(&s, prefix, rounds, at_once, body);
        assert_eq!(answers.len(), rounds);
        for (key, answers) in answers {
            assert_eq!(answers.len(), at_once);
            let ids: BTreeSet<&str> = answers
                .iter()
                .map(|(_, st, v)| {
                    assert!(*st == 200 || *st == 202, "{key}: {st} {v}");
                    v["execution_id"].as_str().unwrap()
                })
                .collect();
            assert_eq!(ids.len(), 1, "{key}: {} executions: {ids:?}", ids.len());
            keys.insert(key, ids.into_iter().next().unwrap().to_string());
        }
    }
    // Nothing else was created: one execution per key, the one every answer named.
    let listed: BTreeSet<String> = all_executions(&s)
        .iter()
        .map(|e| e["execution_id"].as_str().unwrap().to_string())
        .collect();
    let named: BTreeSet<String> = keys.values().cloned().collect();
    assert_eq!(listed.len(), 101);
    assert_eq!(listed, named);
    // Each ran once, with its own input.
    let id = &keys["eight-7"];
    let ex = s.wait_done(id);
    assert_eq!(
        (&ex["status"], &ex["output"]),
        (&json!("succeeded"), &json!(7))
    );
    let started = types(&s.history(id))
        .iter()
        .filter(|t| *t == "ExecutionStarted")
        .count();
    assert_eq!(started, 1);
}

/// Same key, two different inputs raced: one input wins; every request with it is answered
/// with the one execution, every request with the other gets 409, and nothing else is
/// created.
#[test]
fn finding_01_concurrent_invokes_with_one_key_and_different_inputs_get_409() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let (rounds, at_once) = (30, 8);
    let input =
        |round: usize, t: usize| format!(r#"{{"scenario":"echo","value":[{round},{}]}}"#, t % 2);
    let answers = race(&s, "mixed", rounds, at_once, input);
    let mut ids = BTreeSet::new();
    for (key, answers) in answers {
        assert_eq!(answers.len(), at_once);
        let created: BTreeSet<(&str, u64)> = answers
            .iter()
            .filter(|(_, st, _)| *st == 200 || *st == 202)
            .map(|(_, _, v)| {
                let input = v["input"]["value"][1].as_u64().unwrap();
                (v["execution_id"].as_str().unwrap(), input)
            })
            .collect();
        assert_eq!(created.len(), 1, "{key}: {answers:?}");
        let (id, won) = created.into_iter().next().unwrap();
        // Exactly the requests with the winning input were answered with its execution.
        for (t, st, v) in &answers {
            if (t % 2) as u64 == won {
                assert!(*st == 200 || *st == 202, "{key}: {st} {v}");
            } else {
                assert_eq!(
                    (*st, &v["error"]["code"]),
                    (409, &json!("conflict")),
                    "{key}: {v}"
                );
            }
        }
        ids.insert(id.to_string());
    }
    assert_eq!(ids.len(), rounds);
    assert_eq!(all_executions(&s).len(), rounds);
}

/// A raw HTTP/1.1 exchange: send `bytes`, read until the server closes the connection or
/// `within` passes. Returns what was read and whether the server closed it.
fn raw_exchange(url: &str, bytes: &[u8], within: Duration) -> (String, bool, Duration) {
    let addr = url.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).unwrap();
    conn.set_read_timeout(Some(within)).unwrap();
    let started = Instant::now();
    conn.write_all(bytes).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match conn.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break true,
            Err(_) => break false, // the read timeout: still open
        }
    };
    (
        String::from_utf8_lossy(&out).into_owned(),
        closed,
        started.elapsed(),
    )
}

/// (method, path, body, status, error code: `None` for a success)
type Case<'a> = (&'a str, String, Option<String>, u16, Option<&'a str>);

/// A JSON value nested `depth` levels deep: `[[[...]]]`.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Bad requests of every shape answer in the JSON envelope with the right status and
/// code. Before: query-string errors (`?limit=abc`, a repeated `?wait=`) and undecodable
/// paths were text/plain; JSON nested past the SDK's limit was accepted (202) and failed
/// in the guest; `PATCH` with `[]` answered 200; whole-number floats in a `PATCH` and
/// `limit=0` disagreed with the spec.
#[test]
fn finding_13_bad_requests_answer_in_the_json_envelope() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let id = s.invoke("conf", &scenario("echo", json!({"value": 1})));
    s.wait_done(&id);
    let cb = s.invoke("conf", &scenario("callback", json!({})));
    let cb_id = s.callback_ids(&cb, 1).remove(0);
    // The object is one level, its value the others.
    let deep_input = format!(r#"{{"scenario":"echo","value":{}}}"#, nested(63));
    let deeper = format!(r#"{{"scenario":"echo","value":{}}}"#, nested(64));
    // Brackets inside strings do not count.
    let in_string = format!(r#"{{"scenario":"echo","value":"{}"}}"#, nested(200));
    let h = format!("/v1/executions/{id}/history");
    let invoke = "/v1/functions/conf/invoke";
    let succeed = format!("/v1/callbacks/{cb_id}/succeed");
    let fail = format!("/v1/callbacks/{cb_id}/fail");
    let cases: Vec<Case> = vec![
        (
            "GET",
            "/v1/executions?limit=abc".into(),
            None,
            400,
            Some("bad_request"),
        ),
        (
            "GET",
            "/v1/executions?limit=0".into(),
            None,
            400,
            Some("bad_request"),
        ),
        (
            "GET",
            "/v1/executions?limit=1001".into(),
            None,
            400,
            Some("bad_request"),
        ),
        ("GET", "/v1/executions?limit=1000".into(), None, 200, None),
        (
            "GET",
            format!("/v1/executions?cursor={id}"),
            None,
            200,
            None,
        ),
        (
            "GET",
            format!("{h}?limit=-1"),
            None,
            400,
            Some("bad_request"),
        ),
        (
            "GET",
            format!("{h}?limit=x&cursor=1"),
            None,
            400,
            Some("bad_request"),
        ),
        ("GET", format!("{h}?cursor=1&limit=1"), None, 200, None),
        (
            "GET",
            format!("/v1/executions/{id}/events?after=x"),
            None,
            400,
            Some("bad_request"),
        ),
        (
            "POST",
            format!("{invoke}?wait=1&wait=2"),
            Some("{}".into()),
            400,
            Some("bad_request"),
        ),
        (
            "POST",
            format!("{invoke}?wait=1e300"),
            Some(r#"{"scenario":"echo","value":1}"#.into()),
            200,
            None,
        ),
        (
            "GET",
            "/v1/executions/%FF".into(),
            None,
            404,
            Some("not_found"),
        ),
        (
            "GET",
            "/v1/functions/%FF%FE".into(),
            None,
            404,
            Some("not_found"),
        ),
        (
            "POST",
            invoke.into(),
            Some(deeper.clone()),
            400,
            Some("bad_request"),
        ),
        (
            "POST",
            invoke.into(),
            Some(nested(100_000)),
            400,
            Some("bad_request"),
        ),
        ("POST", invoke.into(), Some(deep_input), 202, None),
        ("POST", invoke.into(), Some(in_string), 202, None),
        (
            "POST",
            succeed.clone(),
            Some(nested(65)),
            400,
            Some("bad_request"),
        ),
        (
            "POST",
            fail.clone(),
            Some(format!(r#"{{"error_data":{}}}"#, nested(65))),
            400,
            Some("bad_request"),
        ),
        (
            "POST",
            fail.clone(),
            Some("[]".into()),
            400,
            Some("invalid_json"),
        ),
        (
            "PATCH",
            "/v1/functions/conf".into(),
            Some("[]".into()),
            400,
            Some("invalid_json"),
        ),
        (
            "PATCH",
            "/v1/functions/conf".into(),
            Some("[1, 2]".into()),
            400,
            Some("invalid_json"),
        ),
        (
            "PATCH",
            "/v1/functions/conf".into(),
            Some("7".into()),
            400,
            Some("invalid_json"),
        ),
        (
            "PATCH",
            "/v1/functions/conf".into(),
            Some(r#"{"memory_limit_mb": 0}"#.into()),
            400,
            Some("bad_request"),
        ),
        (
            "PATCH",
            "/v1/functions/conf".into(),
            Some(r#"{"memory_limit_mb": 64.0}"#.into()),
            200,
            None,
        ),
    ];
    let client = s.client();
    for (method, path, body, status, code) in cases {
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut req = client.request(m, format!("{}{path}", s.url));
        if let Some(b) = body {
            req = req.body(b);
        }
        let resp = req.send().unwrap();
        let got = resp.status().as_u16();
        let ctype = resp
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let text = resp.text().unwrap();
        let what = format!(
            "{method} {}: {got} {ctype} {text:.300}",
            &path[..path.len().min(120)]
        );
        assert_eq!(got, status, "{what}");
        assert!(ctype.starts_with("application/json"), "{what}");
        let v: Value = serde_json::from_str(&text).unwrap();
        match code {
            Some(code) => assert_eq!(v["error"]["code"], code, "{what}"),
            None => assert!(v["error"].is_null(), "{what}"),
        }
    }
    // The nesting limit is named in the answer, and the callback is still pending.
    let (_, v) = s.req("POST", invoke, Some(deeper.into_bytes()));
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(
        msg.contains("65 levels") && msg.contains("64 levels"),
        "{msg}"
    );
    assert_eq!(s.execution(&cb)["status"], "suspended");

    // The limit is a flag.
    let s = Server::start_with(&["--max-json-depth", "3"]);
    s.deploy("conf", "conformance_guest");
    for (value, status) in [(nested(2), 202), (nested(3), 400)] {
        let body = format!(r#"{{"scenario":"echo","value":{value}}}"#);
        let (st, v) = s.req("POST", invoke, Some(body.into_bytes()));
        assert_eq!(st, status, "{value}: {v}");
    }
}

/// A connection that never completes its request head, or sits idle after a response, is
/// closed after --header-read-timeout-secs. Before: both stayed open for ever (a read
/// timed out after 5 s with the connection still open).
#[test]
fn finding_13_slow_and_idle_connections_are_closed() {
    let s = Server::start_with(&["--header-read-timeout-secs", "1"]);
    let cases: [(&str, &[u8], bool); 3] = [
        (
            "half a head",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
            false,
        ),
        (
            "a head one byte short",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r",
            false,
        ),
        (
            "idle after a response",
            b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n",
            true,
        ),
    ];
    for (what, bytes, answered) in cases {
        let (out, closed, took) = raw_exchange(&s.url, bytes, Duration::from_secs(5));
        assert!(closed, "{what}: still open after {took:?}");
        assert!(
            took >= Duration::from_millis(900),
            "{what}: closed after {took:?}"
        );
        assert_eq!(out.starts_with("HTTP/1.1 200"), answered, "{what}: {out}");
    }
    // The server still serves.
    assert_eq!(s.get("/healthz").0, 200);
}

/// A head with both Content-Length and Transfer-Encoding (either order, any case) is
/// refused with 400 and the connection closed; nothing is executed. Before: hyper dropped
/// Content-Length and the invoke was served (202).
#[test]
fn finding_13_a_request_with_both_content_length_and_chunked_is_refused() {
    let s = Server::start();
    s.deploy("conf", "conformance_guest");
    let body = r#"{"scenario":"echo","value":1}"#;
    let chunked = format!("{:x}\r\n{body}\r\n0\r\n\r\n", body.len());
    let heads = [
        format!(
            "Content-Length: {}\r\nTransfer-Encoding: chunked",
            body.len()
        ),
        format!(
            "transfer-encoding: chunked\r\ncontent-length: {}",
            body.len()
        ),
        "Transfer-Encoding: chunked\r\nContent-Length: 3".to_string(),
    ];
    for framing in heads {
        let req = format!(
            "POST /v1/functions/conf/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n{framing}\r\n\r\n{chunked}", s.auth()
        );
        let (out, closed, _) = raw_exchange(&s.url, req.as_bytes(), Duration::from_secs(10));
        assert!(out.starts_with("HTTP/1.1 400"), "{framing:?}: {out}");
        assert!(out.contains(r#""code":"bad_request""#), "{out}");
        assert!(closed, "{framing:?}: the connection stayed open");
    }
    // Chunked alone is served.
    let req = format!("POST /v1/functions/conf/invoke HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n{chunked}", s.auth());
    let (out, _, _) = raw_exchange(&s.url, req.as_bytes(), Duration::from_secs(10));
    assert!(out.starts_with("HTTP/1.1 202"), "{out}");
    assert_eq!(all_executions(&s).len(), 1);
}

/// The server's end of a connection has TCP_NODELAY (read from the server process's own
/// socket through pidfd_getfd). Before: unset, and each SSE frame after the first waited
/// ~40 ms for the client's delayed ACK.
#[test]
fn finding_13_accepted_sockets_have_tcp_nodelay() {
    let s = Server::start();
    // One answered request on a kept-alive connection: the server has accepted it.
    let mut conn = TcpStream::connect(s.url.trim_start_matches("http://")).unwrap();
    conn.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    assert!(conn.read(&mut buf).unwrap() > 0);
    let ours = conn.local_addr().unwrap();
    let pid = s.pid() as libc::pid_t;
    // SAFETY: plain syscalls on descriptors this test owns; every one is closed.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid, 0) as libc::c_int;
        assert!(
            pidfd >= 0,
            "pidfd_open: {}",
            std::io::Error::last_os_error()
        );
        let mut found = None;
        for entry in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap() {
            let entry = entry.unwrap();
            let target = std::fs::read_link(entry.path()).unwrap_or_default();
            if !target.to_string_lossy().starts_with("socket:") {
                continue;
            }
            let theirs: libc::c_int = entry.file_name().to_str().unwrap().parse().unwrap();
            let fd = libc::syscall(libc::SYS_pidfd_getfd, pidfd, theirs, 0) as libc::c_int;
            if fd < 0 {
                continue;
            }
            let mut addr: libc::sockaddr_in = std::mem::zeroed();
            let mut len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
            let peer = libc::getpeername(fd, &mut addr as *mut _ as *mut libc::sockaddr, &mut len);
            if peer == 0
                && addr.sin_family as i32 == libc::AF_INET
                && u16::from_be(addr.sin_port) == ours.port()
            {
                let mut on: libc::c_int = 0;
                let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
                let r = libc::getsockopt(
                    fd,
                    libc::IPPROTO_TCP,
                    libc::TCP_NODELAY,
                    &mut on as *mut _ as *mut libc::c_void,
                    &mut len,
                );
                assert_eq!(r, 0);
                found = Some(on != 0);
            }
            libc::close(fd);
        }
        libc::close(pidfd);
        assert_eq!(found, Some(true), "the server's socket for {ours}: nodelay");
    }
    drop(conn);
}

/// `/v1/openapi.json` declares the handlers' real bounds (what schemathesis checks in CI,
/// scripts/schemathesis.sh). Before: no minimum, maximum or pattern anywhere.
#[test]
fn finding_13_the_spec_declares_the_handlers_bounds() {
    let s = Server::start_with(&["--memory-limit-mb", "96"]);
    let (_, spec) = s.get("/v1/openapi.json");
    let param = |path: &str, method: &str, name: &str| -> Value {
        spec["paths"][path][method]["parameters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("{method} {path}: no parameter {name}"))["schema"]
            .clone()
    };
    let ulid = json!("^[0-7][0-9A-HJKMNP-TV-Za-hjkmnp-tv-z]{25}$");
    let event = json!("^[0-9]{1,9}$");
    let cases = [
        ("/v1/executions", "get", "limit", "minimum", json!(1)),
        ("/v1/executions", "get", "limit", "maximum", json!(1000)),
        ("/v1/executions", "get", "cursor", "pattern", ulid.clone()),
        ("/v1/executions/{id}", "get", "id", "pattern", ulid),
        (
            "/v1/executions/{id}/history",
            "get",
            "limit",
            "maximum",
            json!(1000),
        ),
        (
            "/v1/executions/{id}/history",
            "get",
            "cursor",
            "pattern",
            event.clone(),
        ),
        (
            "/v1/executions/{id}/events",
            "get",
            "after",
            "pattern",
            event.clone(),
        ),
        (
            "/v1/executions/{id}/events",
            "get",
            "Last-Event-ID",
            "pattern",
            event,
        ),
        (
            "/v1/functions/{name}/invoke",
            "post",
            "wait",
            "minimum",
            json!(0.0),
        ),
        (
            "/v1/functions/{name}/invoke",
            "post",
            "Idempotency-Key",
            "maxLength",
            json!(256),
        ),
        (
            "/v1/functions/{name}",
            "get",
            "name",
            "pattern",
            json!("^[A-Za-z0-9_-][A-Za-z0-9_.-]{0,63}$"),
        ),
        (
            "/v1/callbacks/{id}/succeed",
            "post",
            "id",
            "pattern",
            json!("^cb_[0-9a-f]{32}$"),
        ),
    ];
    for (path, method, name, key, expected) in cases {
        let schema = param(path, method, name);
        let same = match expected.as_f64() {
            Some(n) => schema[key].as_f64() == Some(n),
            None => schema[key] == expected,
        };
        assert!(same, "{method} {path} {name}: {key} {expected} in {schema}");
    }
    let patch = &spec["components"]["schemas"]["Patch"]["properties"];
    for (field, max) in [
        ("memory_limit_mb", 96),
        ("activation_timeout_secs", 3600),
        ("retention_secs", 366 * 24 * 3600),
    ] {
        assert_eq!(
            (&patch[field]["minimum"], &patch[field]["maximum"]),
            (&json!(1), &json!(max)),
            "{field}"
        );
    }
}
