//! Shared end-to-end test harness: builds the guests once, runs the real `durable-host`
//! binary on a loopback port over a temporary sled directory, talks real HTTP to it, and
//! provides a local mock of external HTTP APIs. Every wait is bounded.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const BIN: &str = env!("CARGO_BIN_EXE_durable-host");

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// Build every guest once per test binary (cargo makes repeated builds no-ops) and return
/// the path of `name`'s component (`hello`, `user_registration`, `approval`,
/// `conformance_guest`; the Python ones as `python/hello`, ..., `python/conformance_guest`,
/// under `target/wasm/python/`).
/// A loopback port that is free now (bound, then released): for a `--listen` that an
/// allowlist entry must name before the host starts.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn guest(name: &str) -> PathBuf {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new("bash")
            .arg(repo_root().join("scripts/build-guests.sh"))
            .stdout(Stdio::null())
            .status()
            .expect("run scripts/build-guests.sh");
        assert!(status.success(), "building guests failed");
    });
    let p = match name.strip_prefix("python/") {
        Some(_) => repo_root().join(format!("target/wasm/{name}.wasm")),
        None => repo_root().join(format!("target/wasm/wasm32-wasip2/release/{name}.wasm")),
    };
    assert!(p.exists(), "{} missing", p.display());
    p
}

pub fn guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(guest(name)).unwrap()
}

/// `durable-host serve` over `data`, with `args`, on a free loopback port unless `args`
/// give `--listen`; stderr piped (the harness reads the "listening on" line from it).
fn serve_command(data: &Path, args: &[String]) -> Command {
    let mut c = Command::new(BIN);
    c.arg("serve");
    if !args.iter().any(|a| a == "--listen") {
        c.arg("--listen").arg("127.0.0.1:0");
    }
    c.arg("--data-dir")
        .arg(data)
        .args(args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    c
}

/// The admin key a server wrote to `data/admin.key` at its first start ("" if none).
pub fn admin_key(data: &Path) -> String {
    std::fs::read_to_string(data.join("admin.key"))
        .map(|k| k.trim().to_string())
        .unwrap_or_default()
}

/// A client that sends `key` (if any) on every request.
pub fn authed_client(key: &str) -> reqwest::blocking::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    if !key.is_empty() {
        let mut v = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}")).unwrap();
        v.set_sensitive(true);
        headers.insert(reqwest::header::AUTHORIZATION, v);
    }
    reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(120))
        .default_headers(headers)
        .build()
        .unwrap()
}

/// Send `r` with `body`: the status and the body as JSON (as a string if it is not JSON).
fn send(r: reqwest::blocking::RequestBuilder, body: Option<Vec<u8>>) -> (u16, Value) {
    let r = match body {
        Some(b) => r.body(b),
        None => r,
    };
    let resp = r.send().expect("request");
    let status = resp.status().as_u16();
    let text = resp.text().unwrap();
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
}

/// A running `durable-host serve` with its own data directory.
pub struct Server {
    child: Option<Child>,
    pub url: String,
    pub data: Arc<tempfile::TempDir>,
    args: Vec<String>,
    client: reqwest::blocking::Client,
    /// The bootstrap admin key (`<data>/admin.key`), which `req` and `client` send.
    pub admin_key: String,
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(&[])
    }

    /// Start with extra `serve` flags.
    pub fn start_with(args: &[&str]) -> Server {
        let data = Arc::new(tempfile::tempdir().unwrap());
        Self::spawn(data, args.iter().map(|s| s.to_string()).collect())
    }

    fn spawn(data: Arc<tempfile::TempDir>, args: Vec<String>) -> Server {
        let mut child = serve_command(data.path(), &args)
            .spawn()
            .expect("spawn durable-host");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if !sent {
                    if let Some(url) = line.strip_prefix("durable-host listening on ") {
                        let _ = tx.send(url.to_string());
                        sent = true;
                        continue;
                    }
                }
                eprintln!("[host] {line}");
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(60))
            .expect("durable-host did not start within 60 s");
        let admin_key = admin_key(data.path());
        Server {
            child: Some(child),
            url,
            data,
            args,
            client: authed_client(&admin_key),
            admin_key,
        }
    }

    /// The client `req` uses: it sends the admin key.
    pub fn client(&self) -> &reqwest::blocking::Client {
        &self.client
    }

    /// `Authorization` header value of the admin key.
    pub fn auth(&self) -> String {
        format!("Bearer {}", self.admin_key)
    }

    /// `method` on `path` with `key` (or no key at all): status, headers and body.
    pub fn req_as(
        &self,
        key: Option<&str>,
        method: &str,
        path: &str,
        body: Option<Vec<u8>>,
    ) -> (u16, Value) {
        let url = format!("{}{}", self.url, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(120))
            .build()
            .unwrap();
        let mut r = client.request(m, url);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        send(r, body)
    }

    /// SIGKILL the process (no shutdown of any kind).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            c.kill().unwrap(); // SIGKILL on Unix
            c.wait().unwrap();
        }
    }

    /// Kill -9 and start again on the same data directory (a new port).
    pub fn crash_and_restart(&mut self) {
        self.kill9();
        let next = Server::spawn(self.data.clone(), self.args.clone());
        *self = next;
    }

    pub fn req(&self, method: &str, path: &str, body: Option<Vec<u8>>) -> (u16, Value) {
        let url = format!("{}{}", self.url, path);
        let m = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        send(self.client.request(m, url), body)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.req("GET", path, None)
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.req("POST", path, Some(body.to_string().into_bytes()))
    }

    pub fn deploy(&self, name: &str, guest_name: &str) -> Value {
        let (s, v) = self.req(
            "PUT",
            &format!("/v1/functions/{name}"),
            Some(guest_bytes(guest_name)),
        );
        assert!(s == 201 || s == 200, "deploy {name}: {s} {v}");
        v
    }

    /// `deploy`, reusing the artifact an earlier server (of any test binary or run) compiled
    /// for the same bytes: the cache `target/tmp/artifact-cache/` is linked into this
    /// server's `artifacts/` before the upload and gets what it compiled after. A Python
    /// component takes seconds to compile; a suite that starts a server per test would
    /// spend most of its time compiling the same bytes again. The artifact's name carries
    /// the sha256 of the bytes and the engine's hash, and the host verifies it.
    pub fn deploy_precompiled(&self, name: &str, guest_name: &str) -> Value {
        let cache = repo_root().join("target/tmp/artifact-cache");
        let mine = self.data.path().join("artifacts");
        let _ = std::fs::create_dir_all(&cache);
        let _ = std::fs::create_dir_all(&mine);
        share_artifacts(&cache, &mine);
        let v = self.deploy(name, guest_name);
        share_artifacts(&mine, &cache);
        v
    }

    /// Invoke and return the execution id (async invoke).
    pub fn invoke(&self, name: &str, input: &Value) -> String {
        let (s, v) = self.post(&format!("/v1/functions/{name}/invoke"), input);
        assert_eq!(s, 202, "invoke {name}: {v}");
        v["execution_id"].as_str().unwrap().to_string()
    }

    pub fn execution(&self, id: &str) -> Value {
        let (s, v) = self.get(&format!("/v1/executions/{id}"));
        assert_eq!(s, 200, "{v}");
        v
    }

    pub fn history(&self, id: &str) -> Vec<Value> {
        let (s, v) = self.get(&format!("/v1/executions/{id}/history"));
        assert_eq!(s, 200, "{v}");
        v["events"].as_array().unwrap().clone()
    }

    /// Every log line, following `next_cursor` through the pages.
    pub fn logs(&self, id: &str) -> Vec<Value> {
        let mut all = Vec::new();
        let mut path = format!("/v1/executions/{id}/logs");
        loop {
            let (s, v) = self.get(&path);
            assert_eq!(s, 200, "{v}");
            all.extend(v["logs"].as_array().unwrap().iter().cloned());
            match v["next_cursor"].as_str() {
                Some(c) => path = format!("/v1/executions/{id}/logs?cursor={c}"),
                None => return all,
            }
        }
    }

    /// Poll until the execution's status is one of `statuses` (bounded).
    pub fn wait_status(&self, id: &str, statuses: &[&str], timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.execution(id);
            if statuses.contains(&v["status"].as_str().unwrap()) {
                return v;
            }
            assert!(
                Instant::now() < deadline,
                "execution {id} still {} after {timeout:?}; history: {:#?}",
                v["status"],
                self.history(id)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn wait_done(&self, id: &str) -> Value {
        self.wait_status(
            id,
            &["succeeded", "failed", "timed_out", "stopped"],
            Duration::from_secs(60),
        )
    }

    /// Poll until `pred` holds for the history (bounded); return the history.
    pub fn wait_history(&self, id: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let h = self.history(id);
            if pred(&h) {
                return h;
            }
            assert!(Instant::now() < deadline, "history never matched: {h:#?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The callback ids of the execution's `CallbackStarted` events, in order (waits for
    /// `n` of them).
    pub fn callback_ids(&self, id: &str, n: usize) -> Vec<String> {
        let h = self.wait_history(id, |h| {
            h.iter()
                .filter(|e| e["event_type"] == "CallbackStarted")
                .count()
                >= n
        });
        h.iter()
            .filter(|e| e["event_type"] == "CallbackStarted")
            .map(|e| e["details"]["callback_id"].as_str().unwrap().to_string())
            .collect()
    }

    /// A gauge or counter from /metrics: `name` is a metric with the labels to match, if
    /// any (`durable_executions{status="running"}`); the answer is the sum of its series that
    /// carry those labels, so a per-tenant metric reads as its total over tenants. Panics when
    /// the metric is not exported at all.
    pub fn metric(&self, name: &str) -> f64 {
        let text = self
            .client
            .get(format!("{}/metrics", self.url))
            .send()
            .unwrap()
            .text()
            .unwrap();
        metric_in(&text, name).unwrap_or_else(|| panic!("metric {name} not in:\n{text}"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A metric name and its `label="value"` pairs.
fn series(s: &str) -> (&str, Vec<&str>) {
    match s.split_once('{') {
        Some((name, labels)) => (
            name,
            labels
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .collect(),
        ),
        None => (s, Vec::new()),
    }
}

/// `Server::metric` over the Prometheus text `text`: `None` when the metric is not there
/// (neither a `# TYPE` line nor a series).
pub fn metric_in(text: &str, name: &str) -> Option<f64> {
    let (metric, want) = series(name);
    let mut found = text
        .lines()
        .any(|l| l.strip_prefix("# TYPE ").and_then(|t| t.split(' ').next()) == Some(metric));
    let mut sum = 0.0;
    for line in text.lines().filter(|l| !l.starts_with('#')) {
        let Some((s, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let (m, labels) = series(s);
        if m == metric && want.iter().all(|w| labels.contains(w)) {
            sum += value.parse::<f64>().unwrap_or_else(|_| panic!("{line}"));
            found = true;
        }
    }
    found.then_some(sum)
}

/// `(event_type, id, name)` of each event, for compact exact comparisons.
pub fn shape(history: &[Value]) -> Vec<(String, Option<String>, Option<String>)> {
    history
        .iter()
        .map(|e| {
            (
                e["event_type"].as_str().unwrap().to_string(),
                e["id"].as_str().map(str::to_string),
                e["name"].as_str().map(str::to_string),
            )
        })
        .collect()
}

/// Just the event types.
pub fn types(history: &[Value]) -> Vec<String> {
    history
        .iter()
        .map(|e| e["event_type"].as_str().unwrap().to_string())
        .collect()
}

pub fn ev(
    t: &str,
    id: Option<&str>,
    name: Option<&str>,
) -> (String, Option<String>, Option<String>) {
    (
        t.to_string(),
        id.map(str::to_string),
        name.map(str::to_string),
    )
}

/// A local mock of an external HTTP API, on a loopback port. Records every request;
/// answers by path through `respond`; `/slow` is held until `release_slow()`.
pub struct Mock {
    pub addr: String,
    pub hits: Arc<Mutex<Vec<(String, String, String)>>>,
    routes: Arc<Mutex<HashMap<String, (u16, String)>>>,
    slow_gate: Arc<tokio::sync::Notify>,
    slow_released: Arc<std::sync::atomic::AtomicBool>,
    in_flight: Arc<Mutex<InFlight>>,
    _rt: tokio::runtime::Runtime,
}

/// Requests the mock is answering now, and the most at once: in all, and per request body
/// (a test tells executions apart by the body their step sends).
#[derive(Default)]
pub struct InFlight {
    now: usize,
    peak: usize,
    by_body: HashMap<String, (usize, usize)>,
}

impl InFlight {
    fn enter(&mut self, body: &str) {
        self.now += 1;
        self.peak = self.peak.max(self.now);
        let (now, peak) = self.by_body.entry(body.to_string()).or_default();
        *now += 1;
        *peak = (*peak).max(*now);
    }

    fn leave(&mut self, body: &str) {
        self.now -= 1;
        if let Some((now, _)) = self.by_body.get_mut(body) {
            *now -= 1;
        }
    }
}

impl Mock {
    pub fn start() -> Mock {
        use axum::extract::State;
        use axum::http::{Method, StatusCode, Uri};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let hits = Arc::new(Mutex::new(Vec::new()));
        let routes: Arc<Mutex<HashMap<String, (u16, String)>>> = Arc::default();
        let slow_gate = Arc::new(tokio::sync::Notify::new());
        let slow_released = Arc::new(std::sync::atomic::AtomicBool::new(false));
        type S = (
            Arc<Mutex<Vec<(String, String, String)>>>,
            Arc<Mutex<HashMap<String, (u16, String)>>>,
            Arc<tokio::sync::Notify>,
            Arc<std::sync::atomic::AtomicBool>,
            Arc<Mutex<InFlight>>,
        );
        /// Leaves the in-flight count however the handler ends (a client gone included).
        struct Leave(Arc<Mutex<InFlight>>, String);
        impl Drop for Leave {
            fn drop(&mut self) {
                self.0.lock().unwrap().leave(&self.1);
            }
        }
        async fn handle(
            State((hits, routes, gate, released, in_flight)): State<S>,
            method: Method,
            uri: Uri,
            body: String,
        ) -> (StatusCode, String) {
            let path = uri.path().to_string();
            hits.lock()
                .unwrap()
                .push((method.to_string(), path.clone(), body.clone()));
            in_flight.lock().unwrap().enter(&body);
            let _leave = Leave(in_flight.clone(), body);
            if path == "/slow" {
                while !released.load(std::sync::atomic::Ordering::SeqCst) {
                    let _ = tokio::time::timeout(Duration::from_millis(50), gate.notified()).await;
                }
            }
            // `/delay/<ms>[/...]`: answered after that long.
            if let Some(ms) = path
                .strip_prefix("/delay/")
                .and_then(|rest| rest.split('/').next()?.parse::<u64>().ok())
            {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            let found = routes.lock().unwrap().get(&path).cloned();
            match found {
                Some((s, b)) => (StatusCode::from_u16(s).unwrap(), b),
                None => (StatusCode::OK, "{}".to_string()),
            }
        }
        let in_flight: Arc<Mutex<InFlight>> = Arc::default();
        let state: S = (
            hits.clone(),
            routes.clone(),
            slow_gate.clone(),
            slow_released.clone(),
            in_flight.clone(),
        );
        let listener = rt
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let app = axum::Router::new().fallback(handle).with_state(state);
        rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock {
            addr,
            hits,
            routes,
            slow_gate,
            slow_released,
            in_flight,
            _rt: rt,
        }
    }

    /// Requests being answered now.
    pub fn in_flight(&self) -> usize {
        self.in_flight.lock().unwrap().now
    }

    /// The most requests answered at once since the start (or `reset_peaks`): in all, and
    /// with this request body.
    pub fn peak(&self) -> usize {
        self.in_flight.lock().unwrap().peak
    }

    pub fn peak_of(&self, body: &str) -> usize {
        let f = self.in_flight.lock().unwrap();
        f.by_body.get(body).map_or(0, |(_, peak)| *peak)
    }

    /// Start counting peaks again from what is in flight now.
    pub fn reset_peaks(&self) {
        let mut f = self.in_flight.lock().unwrap();
        f.peak = f.now;
        for (now, peak) in f.by_body.values_mut() {
            *peak = *now;
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The `--allow-outbound` value for this mock.
    pub fn allow(&self) -> String {
        self.addr.clone()
    }

    pub fn respond(&self, path: &str, status: u16, body: &str) {
        self.routes
            .lock()
            .unwrap()
            .insert(path.to_string(), (status, body.to_string()));
    }

    pub fn count(&self, path: &str) -> usize {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p == path)
            .count()
    }

    pub fn bodies(&self, path: &str) -> Vec<Value> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|(_, p, _)| p == path)
            .map(|(_, _, b)| serde_json::from_str(b).unwrap_or(Value::String(b.clone())))
            .collect()
    }

    /// Wait until `path` was requested `n` times (bounded).
    pub fn wait_count(&self, path: &str, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.count(path) < n {
            assert!(
                Instant::now() < deadline,
                "{path} requested {} times, expected {n}",
                self.count(path)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn release_slow(&self) {
        self.slow_released
            .store(true, std::sync::atomic::Ordering::SeqCst);
        self.slow_gate.notify_waiters();
    }

    pub fn hold_slow(&self) {
        self.slow_released
            .store(false, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Input for the conformance guest.
pub fn scenario(name: &str, params: Value) -> Value {
    let mut v = params;
    if v.is_null() {
        v = json!({});
    }
    v["scenario"] = json!(name);
    v
}

impl Server {
    /// The server process's id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// A field of `/proc/<pid>/status` in MiB (`VmRSS` now, `VmHWM` the peak so far).
    pub fn proc_mib(&self, field: &str) -> f64 {
        self.proc_status_bytes(field) as f64 / (1024.0 * 1024.0)
    }

    /// Bytes under the data directory (store, write-ahead log, artifacts).
    pub fn data_bytes(&self) -> u64 {
        fn walk(p: &Path) -> u64 {
            std::fs::read_dir(p).map_or(0, |rd| {
                rd.filter_map(Result::ok)
                    .map(|e| match e.metadata() {
                        Ok(m) if m.is_dir() => walk(&e.path()),
                        Ok(m) => m.len(),
                        Err(_) => 0,
                    })
                    .sum()
            })
        }
        walk(self.data.path())
    }
}

// ---- for tests/hardening/store.rs: data directories on small filesystems, clean stops,
// starts that must fail ----

/// A tmpfs of `size_mb` mounted on a fresh directory for the test's life (root only);
/// unmounted on drop.
pub struct Tmpfs {
    pub dir: tempfile::TempDir,
}

impl Tmpfs {
    pub fn mount(size_mb: u64) -> Tmpfs {
        let dir = tempfile::tempdir().unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount")
            .success();
        assert!(ok, "mount -t tmpfs failed (the store tests need root)");
        Tmpfs { dir }
    }

    pub fn path(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// Fill the filesystem to the last byte with `name`; returns its path.
    pub fn fill(&self, name: &str) -> PathBuf {
        use std::io::Write;
        let path = self.path().join(name);
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0xa5u8; 1 << 20];
        let mut size = chunk.len();
        // Full megabytes first, then smaller and smaller pieces: every last block taken.
        while size > 0 {
            match f.write(&chunk[..size]) {
                Ok(0) => size /= 2,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => size /= 2,
                Err(e) => panic!("filling {}: {e}", path.display()),
            }
        }
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process that still holds a file there cannot keep it mounted.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

impl Server {
    /// Start on an existing data directory (e.g. one on a `Tmpfs`).
    pub fn start_in(data: Arc<tempfile::TempDir>, args: &[&str]) -> Server {
        Self::spawn(data, args.iter().map(|s| s.to_string()).collect())
    }

    /// Stop cleanly (SIGINT, as Ctrl-C) and wait for the process to exit.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let deadline = Instant::now() + Duration::from_secs(30);
            while c.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the host did not stop on SIGINT");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// `serve` on `data`, which must refuse to start: its exit status and stderr.
pub fn serve_must_fail(data: &std::path::Path) -> (std::process::ExitStatus, String) {
    match try_serve(data) {
        Err(refused) => refused,
        Ok(text) => panic!("the host started, but it was expected to refuse:\n{text}"),
    }
}

/// Run `serve` on `data`: `Ok(stderr)` if it started (it is then stopped again),
/// `Err((exit status, stderr))` if it refused to.
pub fn try_serve(data: &std::path::Path) -> Result<String, (std::process::ExitStatus, String)> {
    try_serve_with(data, &[], &[])
}

/// `try_serve` with extra `serve` arguments and environment variables.
pub fn try_serve_with(
    data: &std::path::Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Result<String, (std::process::ExitStatus, String)> {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let mut child = serve_command(data, &args)
        .envs(env.iter().copied())
        .spawn()
        .expect("spawn durable-host");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut text = String::new();
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.starts_with("durable-host listening on ") {
                let _ = tx.send(Ok(text.clone()));
                return;
            }
            text.push_str(&line);
            text.push('\n');
        }
        let _ = tx.send(Err(text));
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Err(_) => {
            let _ = child.kill();
            panic!("the host neither started nor exited within 60 s")
        }
        Ok(Err(text)) => Err((child.wait().unwrap(), text)),
        Ok(Ok(text)) => {
            // SAFETY: signalling our own child by its pid.
            unsafe { libc::kill(child.id() as i32, libc::SIGINT) };
            child.wait().unwrap();
            Ok(text)
        }
    }
}

// ---- process and data-directory helpers (hardening: artifacts) ----

impl Server {
    /// A field of the server's `/proc/<pid>/status` given in kB (`VmHWM`, `VmRSS`), in bytes.
    pub fn proc_status_bytes(&self, field: &str) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
            .unwrap_or_else(|| panic!("{field} not in /proc/<pid>/status"))
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .unwrap();
        kb * 1024
    }

    /// Kill -9, let `change` alter the data directory, and start again (a new port).
    pub fn restart_after(&mut self, change: impl FnOnce(&Path)) {
        self.kill9();
        change(self.data.path());
        let next = Server::spawn(self.data.clone(), self.args.clone());
        *self = next;
    }
}

/// `bytes` (a component) with a custom section of `padding` bytes appended: a larger valid
/// component (wasmtime skips custom sections). `tag` makes the bytes (and sha256) distinct.
pub fn padded_component(bytes: &[u8], padding: usize, tag: u8) -> Vec<u8> {
    fn leb128(mut n: usize, out: &mut Vec<u8>) {
        loop {
            let byte = (n & 0x7f) as u8;
            n >>= 7;
            if n == 0 {
                out.push(byte);
                return;
            }
            out.push(byte | 0x80);
        }
    }
    let name = b"padding";
    let mut section = Vec::with_capacity(padding + 16);
    leb128(name.len(), &mut section);
    section.extend_from_slice(name);
    section.resize(section.len() + padding, tag);
    let mut out = bytes.to_vec();
    out.push(0);
    leb128(section.len(), &mut out);
    out.extend_from_slice(&section);
    out
}

/// Every `*.cwasm` of `from` that `to` lacks, hard-linked (or copied, then renamed into
/// place, across filesystems) into `to`. Best effort: a file that cannot be shared is
/// compiled again.
fn share_artifacts(from: &Path, to: &Path) {
    let Ok(entries) = std::fs::read_dir(from) else {
        return;
    };
    for e in entries.filter_map(Result::ok) {
        let name = e.file_name();
        if !name.to_string_lossy().ends_with(".cwasm") || to.join(&name).exists() {
            continue;
        }
        if std::fs::hard_link(e.path(), to.join(&name)).is_err() {
            let tmp = to.join(format!(
                ".{}.{}.part",
                name.to_string_lossy(),
                std::process::id()
            ));
            if std::fs::copy(e.path(), &tmp).is_ok() {
                let _ = std::fs::rename(&tmp, to.join(&name));
            }
            let _ = std::fs::remove_file(&tmp);
        }
    }
}

/// The ids of the branches (`MapIteration` / `ParallelBranch`) of a map or parallel that
/// ended (`ContextSucceeded` / `ContextFailed`) in history `h`.
pub fn finished_branches(h: &[Value]) -> Vec<String> {
    h.iter()
        .filter(|e| {
            (e["event_type"] == "ContextSucceeded" || e["event_type"] == "ContextFailed")
                && (e["sub_type"] == "MapIteration" || e["sub_type"] == "ParallelBranch")
        })
        .map(|e| e["id"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// After a crash: no event of `h` past the `before` snapshot belongs to a branch that had
/// finished in `before`, or to an operation inside one (finished branches never run
/// again); and every branch started once. Returns how many branches had finished.
pub fn assert_finished_branches_not_rerun(before: &[Value], h: &[Value]) -> usize {
    let finished = finished_branches(before);
    for e in h.iter().skip(before.len()) {
        let op = e["id"].as_str().unwrap_or("");
        let rerun = finished
            .iter()
            .any(|f| op == f || op.starts_with(&format!("{f}.")));
        assert!(
            !rerun,
            "a finished branch recorded again after the crash: {e}"
        );
    }
    let mut started: Vec<&str> = h
        .iter()
        .filter(|e| {
            e["event_type"] == "ContextStarted"
                && (e["sub_type"] == "MapIteration" || e["sub_type"] == "ParallelBranch")
        })
        .map(|e| e["id"].as_str().unwrap_or_default())
        .collect();
    let n = started.len();
    started.sort();
    started.dedup();
    assert_eq!(started.len(), n, "a branch started twice: {started:?}");
    finished.len()
}
