//! Benchmark of the durable host. It is an example (not a `cargo bench` target) so that it
//! reuses the dev profile's optimised wasmtime build:
//!
//! ```text
//! cargo run -p durable-host --example bench                 # full counts, under a minute
//! BENCH_QUICK=1 cargo run -p durable-host --example bench   # smaller counts (or `-- --quick`)
//! BENCH_ONLY=3 cargo run -p durable-host --example bench    # one figure (or `-- --only 3`)
//! BENCH_DB_CACHE_MB=4 cargo run -p durable-host --example bench  # sled cache as `serve --db-cache-mb`
//! ```
//!
//! Everything runs in this process against a real host (`Host::open` + `Host::start`) over a
//! temporary sled directory, with the guests built by `scripts/build-guests.sh`. Each figure
//! is printed beside its target and beside a baseline measured in the same run (as a ratio:
//! these machines are noisy). A missed target is reported, not an error; the exit status is
//! non-zero only when a figure could not be measured at all.
//!
//! 1. Compile vs restart: `Registry::upload` of `hello.wasm` under a new name (validate,
//!    `Component::new`, link, write the artifact, fsync) vs `Registry::pre_by_hash` after
//!    `Registry::clear_cache` (deserialize the artifact file, link): what a restart pays.
//! 2. Resume: what `Runtime::activate` does from `Registry::pre` on (version record, cached
//!    `InstancePre`): a new `Store` with its `HostState` (WASI context, limits, epoch deadline),
//!    `instantiate_async` and the `handle` call over a journal of one finished step, so the
//!    guest's first host call (`step-start`) is answered from the journal and the guest
//!    returns. The store setup is replicated here (the runtime has no entry point for it);
//!    the execution's storage reads and the activation's closing commit are not included
//!    (figure 3 shows whole activations). Printed with a per-phase split. Baseline: the same
//!    after `clear_cache` (deserialize, link, instantiate, call).
//! 3. Replay: `Runtime::activate` of a copy of a finished `steps {count: 1000}` execution
//!    without its last two events (it replays 1000 steps from storage, then finishes live),
//!    minus the same for `count: 0`, per step (one step is two events), split into the history
//!    load and the guest's run without storage. Baseline: the pure journal
//!    (`Journal::from_events` + `Activation::step_start` x 1000: no wasm, no storage).
//! 4. Checkpoints: durable steps/s of `steps {count: N}` run by 1 and by 64 concurrent
//!    executions (each step waits for its commit to be applied, not for an fsync: durability
//!    at the point of output leaves the fsync to whatever output follows; group commit),
//!    with the host's syncs counted by `Store::sync_stats`. Baseline: one fsync of this disk
//!    (append 4 KiB + `File::sync_all` in the data directory, median), also set beside the
//!    host's own `Sync` commit of a 4 KiB event (write-ahead log write + fdatasync, then sled).
//! 5. HTTP: `bench-hello` (two steps and a 0 s wait) end to end with `POST .../invoke?wait=30`
//!    on a loopback listener served by `api::router`: the write-ahead log's fdatasyncs per
//!    hello at 1 client (target 1: durability at the point of output), latency at 1 client
//!    (target: within 1.5x of one fsync plus echo's p50), executions/s at 64. Baseline:
//!    `echo` (nothing durable) over the same path, one fsync of this disk, and the figures
//!    of the build before durability at the point of output (`BEFORE_HELLO`).
//! 6. Memory: VmRSS growth (and glibc heap in use) after 10,000 `wait {ms: 3600000}`
//!    executions have suspended, with no instance resident. Baseline: the growth for 10,000
//!    `echo` executions that finished (what storing an execution costs anyway).
//! 7. Authentication: what checking API keys costs per request. Fresh hosts alike but for
//!    `Options.insecure_no_auth`, taking turns: figure 5's hello at 1 client (p50) and at
//!    64 (executions/s), with a key on every request vs with none, and a second host with
//!    keys as the noise floor (two identical hosts differ by that much on this machine);
//!    and `Tenants::authenticate` alone (key lookup, SHA-256 of the secret, constant-time
//!    compare) beside the CPU time one hello execution takes. Target: under 2% of hello.
//! 8. Fairness between tenants: on a host with `max_resident = 2`, tenant B's 1-step
//!    executions one after another (p50), alone and while tenant A has 2,000 executions of
//!    `steps {count: 10}` queued. Baseline: B alone; the added delay is set beside one of
//!    A's activations (what a fair queue may cost B; first come, first served would cost
//!    A's whole backlog).
//! 9. Flow control: what a function's flow control costs when it does not bind. Figure 5's
//!    hello at 64 clients (executions/s) on a function with `max_concurrency: 100000` (set
//!    through `PATCH /v1/functions/{name}`: every activation is classified, counted in its
//!    lane and checked) vs the same component under another name without settings, on one
//!    host, taking turns for `flow_rounds` rounds. Printed: the median of each, the
//!    ratio of medians and the spread of the per-round ratios (the noise).
//! 10. Python vs Rust activations: the Python conformance guest
//!     (`target/wasm/python/conformance_guest.wasm`) beside the Rust one, each over the same
//!     journal of one finished step: figure 2's resume (cached pre) with its per-phase split,
//!     and whole activations end to end (`waits` with 20 one-millisecond waits: 21
//!     activations, each a wake, an instantiation, a replay and a commit), per activation;
//!     and the minor page faults per resume (`getrusage`: the pages of the memory image an
//!     activation touches). Baseline: the Rust figure of the same run.
//! 11. Fan-out: a map of 1,000 items (a small step each: the conformance guest's `map`)
//!     at `max_concurrency` 1, 2 and 64, wall time and items/s. Baseline: the same work as
//!     1,000 sequential steps in one execution (`steps`), same run.
//! 12. Activation cost per language: the Python and the Rust conformance guests on this
//!     host (pool slots keep the pages an instance wrote resident, reset from the memory
//!     image: `runtime::Options::keep_resident_bytes`) and on a second host that returns
//!     every page to the kernel at each drop (`keep_resident_bytes: 0`, the host before),
//!     taking turns: figure 2's resume (instantiate alone, and instantiate + call; wall p50,
//!     thread CPU time p50 and min), minor page faults per resume, and whole activations end to
//!     end (figure 10's 20 one-millisecond waits), per activation, p50 and mean. Baseline:
//!     the second host, same run.

use std::fmt::Write as _;
use std::future::{Future, IntoFuture};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context as _};
use durable_host::db::{Batch, Durability, ExecutionRecord, Status};
use durable_host::host_api::HostState;
use durable_host::journal::{
    Activation, Event, EventKind, Journal, Reply, RetryPolicy, StepSemantics, StepStart,
};
use durable_host::registry::Pre;
use durable_host::scheduler::{ExecKey, Outcome};
use durable_host::{api, ids, Host, Options, DEFAULT_TENANT};
use futures::future::BoxFuture;
use serde_json::{json, Value};
use wasmtime::StoreLimitsBuilder;

/// The conformance guest is deployed under this name.
const FUNCTION: &str = "conformance";
/// Concurrent executions (figure 4) and HTTP clients (figures 5 and 6).
const CLIENTS: usize = 64;
/// Steps in the journal that figure 3 replays.
const REPLAY_STEPS: u64 = 1000;
/// How long one suspended execution of figure 6 waits: longer than the benchmark.
const LONG_WAIT_MS: u64 = 3_600_000;
const MIB: f64 = 1024.0 * 1024.0;

/// How many times each thing is measured; `quick` shrinks the counts.
#[derive(Clone, Copy, Debug)]
struct Counts {
    compiles: usize,
    cold_loads: usize,
    resumes: usize,
    cold_resumes: usize,
    replay_runs: usize,
    journal_runs: usize,
    fsyncs: usize,
    steps_single: u64,
    steps_each: u64,
    warmup: usize,
    requests_single: usize,
    requests_total: usize,
    suspended: usize,
    auth_calls: u32,
    backlog: usize,
    flow_rounds: usize,
}

impl Counts {
    fn new(quick: bool) -> Self {
        let pick = |full: usize, quick_n: usize| if quick { quick_n } else { full };
        Self {
            compiles: pick(3, 1),
            cold_loads: pick(20, 5),
            resumes: pick(2_000, 200),
            cold_resumes: pick(20, 5),
            replay_runs: pick(15, 5),
            journal_runs: pick(50, 10),
            fsyncs: pick(200, 50),
            steps_single: pick(300, 50) as u64,
            steps_each: pick(200, 30) as u64,
            warmup: pick(50, 10),
            requests_single: pick(200, 40),
            requests_total: pick(3_000, 500),
            suspended: pick(10_000, 2_000),
            auth_calls: pick(200_000, 20_000) as u32,
            backlog: pick(2_000, 500),
            flow_rounds: pick(6, 4),
        }
    }
}

/// What to run: `BENCH_QUICK=1` or `--quick` shrinks the counts; `BENCH_ONLY=3` or
/// `--only 3` runs one figure (figure 6 expects a host warmed up by the others).
struct Settings {
    quick: bool,
    only: Option<String>,
}

impl Settings {
    fn from_env() -> Self {
        let args: Vec<String> = std::env::args().skip(1).collect();
        let arg_after = |flag: &str| {
            let i = args.iter().position(|a| a == flag)?;
            args.get(i + 1).cloned()
        };
        let quick = std::env::var("BENCH_QUICK").is_ok_and(|v| !v.is_empty() && v != "0")
            || args.iter().any(|a| a == "--quick");
        let only = arg_after("--only").or_else(|| std::env::var("BENCH_ONLY").ok());
        Settings { quick, only }
    }

    fn runs(&self, figure: &str) -> bool {
        self.only.as_deref().is_none_or(|o| o == figure)
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let settings = Settings::from_env();
    print_header(&settings);
    let bench = Bench::start(Counts::new(settings.quick)).await?;
    let mut report = Report::default();
    let b = &bench;
    let figures: [(&str, BoxFuture<'_, _>); 12] = [
        ("1", Box::pin(compile_vs_restart(b))),
        ("2", Box::pin(resume(b))),
        ("3", Box::pin(replay(b))),
        ("4", Box::pin(checkpoints(b))),
        ("5", Box::pin(http_hello(b))),
        ("6", Box::pin(suspended_memory(b))),
        ("7", Box::pin(auth_cost(b))),
        ("8", Box::pin(fairness(b))),
        ("9", Box::pin(flow_control(b))),
        ("10", Box::pin(python_activations(b))),
        ("11", Box::pin(fan_out(b))),
        ("12", Box::pin(activation_cost(b))),
    ];
    for (id, figure) in figures {
        if settings.runs(id) {
            report.add(id, figure.await);
        }
    }
    let others = std::mem::take(&mut *bench.others.lock().unwrap());
    for h in others.iter().chain([&bench]) {
        h.host.stopped.store(true, Relaxed);
        h.host.shutdown.notify_waiters();
    }
    print!("{report}");
    println!("\nload average at the end: {}", load_average());
    if report.failed {
        std::process::exit(1);
    }
    Ok(())
}

/// /proc/loadavg's first three fields: how busy the machine was (it is shared).
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn print_header(settings: &Settings) {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let env: String = ["BENCH_QUICK", "BENCH_ONLY", "BENCH_DB_CACHE_MB"]
        .iter()
        .filter_map(|k| Some(format!("{k}={} ", std::env::var(k).ok()?)))
        .collect();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let extra = if args.is_empty() {
        String::new()
    } else {
        format!(" -- {}", args.join(" "))
    };
    println!("durable-host benchmark");
    println!("command: {env}cargo run -p durable-host --example bench{extra}");
    println!(
        "machine: {cores} cores, load average {} (shared: other work skews figures); counts: {}",
        load_average(),
        if settings.quick { "quick" } else { "full" }
    );
    println!();
}

// ---------------------------------------------------------------------------------------
// The host under test

/// A started host, its HTTP listener, and a client for it.
struct Bench {
    host: Arc<Host>,
    url: String,
    http: reqwest::Client,
    counts: Counts,
    /// Where the sled directory and the artifacts live; removed at exit.
    data: tempfile::TempDir,
    /// The hosts other figures started (7, 8), kept until the end like this one.
    others: std::sync::Mutex<Vec<Arc<Bench>>>,
}

impl Bench {
    async fn start(counts: Counts) -> anyhow::Result<Arc<Bench>> {
        Self::start_with(counts, |_| {}).await
    }

    /// A host with `change` made to its options; its client sends the admin key unless
    /// the host runs with `insecure_no_auth`.
    async fn start_with(
        counts: Counts,
        change: impl FnOnce(&mut Options),
    ) -> anyhow::Result<Arc<Bench>> {
        let data = tempfile::tempdir()?;
        let mut opts = Options {
            data_dir: data.path().to_path_buf(),
            ..Default::default()
        };
        change(&mut opts);
        let send_key = !opts.insecure_no_auth;
        // `BENCH_DB_CACHE_MB` as `serve --db-cache-mb` (sled's page cache, default 64 MiB).
        if let Some(mb) = std::env::var("BENCH_DB_CACHE_MB")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
        {
            opts.db_cache_bytes = mb.max(1) << 20;
        }
        // As `durable-host serve` sizes the instance pool.
        opts.runtime.max_instances = (opts.max_resident as u32).saturating_add(16).max(64);
        let host = Host::open(opts)?;
        host.start().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        tokio::spawn(axum::serve(listener, api::router(host.clone())).into_future());
        // Every request carries the bootstrap admin key, as a client of a real server does.
        let key = std::fs::read_to_string(data.path().join("admin.key"))?;
        let mut headers = reqwest::header::HeaderMap::new();
        if send_key {
            headers.insert(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {}", key.trim()).parse()?,
            );
        }
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .no_proxy()
            .pool_max_idle_per_host(CLIENTS)
            .timeout(Duration::from_secs(600))
            .build()?;
        let bench = Bench {
            host,
            url,
            http,
            counts,
            data,
            others: Default::default(),
        };
        let bytes = std::fs::read(guest("conformance_guest")?)?;
        bench
            .host
            .registry
            .upload(DEFAULT_TENANT, FUNCTION, bytes, &Default::default())
            .await?;
        Ok(Arc::new(bench))
    }

    /// `POST /v1/functions/conformance/invoke` (with `?wait=` when given) in `tenant` (the
    /// admin key acting there with `Durable-Tenant`), or in the admin key's own; the
    /// response body.
    async fn invoke_in(
        &self,
        tenant: Option<&str>,
        input: &Value,
        wait_secs: Option<u32>,
    ) -> anyhow::Result<Value> {
        self.invoke_function(FUNCTION, tenant, input, wait_secs)
            .await
    }

    /// `invoke_in` of another function.
    async fn invoke_function(
        &self,
        function: &str,
        tenant: Option<&str>,
        input: &Value,
        wait_secs: Option<u32>,
    ) -> anyhow::Result<Value> {
        let mut url = format!("{}/v1/functions/{function}/invoke", self.url);
        if let Some(w) = wait_secs {
            write!(url, "?wait={w}")?;
        }
        let mut req = self.http.post(url).json(input);
        if let Some(t) = tenant {
            req = req.header("durable-tenant", t);
        }
        let resp = req.send().await?;
        let status = resp.status();
        let body: Value = resp.json().await?;
        ensure!(status.is_success(), "invoke {input}: {status} {body}");
        Ok(body)
    }

    /// Invoke and wait until the execution succeeded; its id.
    async fn run(&self, input: &Value, wait_secs: u32) -> anyhow::Result<ExecKey> {
        self.run_function(FUNCTION, input, wait_secs).await
    }

    /// `run` of another function.
    async fn run_function(
        &self,
        function: &str,
        input: &Value,
        wait_secs: u32,
    ) -> anyhow::Result<ExecKey> {
        let body = self
            .invoke_function(function, None, input, Some(wait_secs))
            .await?;
        ensure!(
            body["status"] == "succeeded",
            "{input} did not succeed: {body}"
        );
        let id = body["execution_id"].as_str().context("execution_id")?;
        Ok(ExecKey {
            tenant: DEFAULT_TENANT.into(),
            id: ids::parse_execution_id(id).context("execution id")?,
            branch: None,
        })
    }

    fn fsyncs(&self) -> u64 {
        self.host.db.sync_stats().fsyncs.load(Relaxed)
    }
}

/// A conformance-guest input.
fn scenario(name: &str, params: Value) -> Value {
    let mut v = params;
    v["scenario"] = json!(name);
    v
}

fn steps_input(count: u64) -> Value {
    scenario("steps", json!({ "count": count }))
}

/// The path of a guest component, building the guests first if it is missing.
fn guest(name: &str) -> anyhow::Result<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("repository root")?;
    let path = match name.strip_prefix("python/") {
        Some(_) => root.join(format!("target/wasm/{name}.wasm")),
        None => root.join(format!("target/wasm/wasm32-wasip2/release/{name}.wasm")),
    };
    if !path.exists() {
        eprintln!("building the guests (scripts/build-guests.sh)...");
        let status = std::process::Command::new("bash")
            .arg(root.join("scripts/build-guests.sh"))
            .stdout(std::process::Stdio::null())
            .status()?;
        ensure!(status.success(), "scripts/build-guests.sh failed");
    }
    Ok(path)
}

// ---------------------------------------------------------------------------------------
// Measuring

/// Durations of repeated runs of one thing.
struct Samples(Vec<Duration>);

impl Samples {
    fn new(mut v: Vec<Duration>) -> Self {
        v.sort();
        Samples(v)
    }

    /// The `p`-th percentile (0..=100), nearest rank.
    fn pct(&self, p: f64) -> Duration {
        if self.0.is_empty() {
            return Duration::ZERO;
        }
        let rank = ((p / 100.0) * (self.0.len() - 1) as f64).round() as usize;
        self.0[rank.min(self.0.len() - 1)]
    }

    fn median(&self) -> Duration {
        self.pct(50.0)
    }
}

/// Time `n` sequential runs of `f`.
async fn sample<F, Fut>(n: usize, mut f: F) -> anyhow::Result<Samples>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        f().await?;
        v.push(t.elapsed());
    }
    Ok(Samples::new(v))
}

/// One request of a load test, callable from many tasks.
type Call = Arc<dyn Fn() -> BoxFuture<'static, anyhow::Result<()>> + Send + Sync>;

/// CPU time this process has used (user + system, every thread).
fn cpu_time() -> Duration {
    // SAFETY: getrusage fills the struct it is given.
    let u = unsafe {
        let mut u = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// A load test's outcome.
struct Load {
    elapsed: Duration,
    latencies: Samples,
    /// CPU time the whole process (host and clients) used meanwhile.
    cpu: Duration,
}

impl Load {
    /// Cores kept busy on average: near the core count means CPU-bound, well below means
    /// the work waited (on the disk or on locks).
    fn cores(&self) -> f64 {
        self.cpu.as_secs_f64() / self.elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    }
}

/// Run `call` `total` times from `clients` concurrent tasks.
async fn drive(clients: usize, total: usize, call: &Call) -> anyhow::Result<Load> {
    let next = Arc::new(AtomicUsize::new(0));
    let (start, cpu) = (Instant::now(), cpu_time());
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (call, next) = (call.clone(), next.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while next.fetch_add(1, Relaxed) < total {
                    let t = Instant::now();
                    call().await?;
                    latencies.push(t.elapsed());
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut all = Vec::with_capacity(total);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(Load {
        elapsed: start.elapsed(),
        latencies: Samples::new(all),
        cpu: cpu_time() - cpu,
    })
}

fn per_sec(n: f64, d: Duration) -> f64 {
    n / d.as_secs_f64().max(f64::MIN_POSITIVE)
}

/// `a / b`, written as `1/n` when it is small (e.g. a restart vs a compile).
fn ratio(a: f64, b: f64) -> String {
    if a <= 0.0 || b <= 0.0 {
        "n/a".into()
    } else if a / b < 0.1 {
        format!("1/{:.0}", b / a)
    } else {
        format!("{:.2}x", a / b)
    }
}

fn fmt_dur(d: Duration) -> String {
    let us = d.as_secs_f64() * 1e6;
    if us < 10.0 {
        format!("{us:.2} us")
    } else if us < 1_000.0 {
        format!("{us:.1} us")
    } else if us < 1_000_000.0 {
        format!("{:.2} ms", us / 1e3)
    } else {
        format!("{:.2} s", us / 1e6)
    }
}

fn fmt_rate(r: f64) -> String {
    format!("{r:.0}/s")
}

// ---------------------------------------------------------------------------------------
// The report

#[derive(Clone, Copy, PartialEq)]
enum Verdict {
    Met,
    Missed,
    Info,
    Error,
}

struct Row {
    what: String,
    measured: String,
    target: String,
    verdict: Verdict,
    baseline: String,
    ratio: String,
}

impl Row {
    /// A figure without a target.
    fn info(what: impl Into<String>, measured: impl Into<String>) -> Self {
        Row {
            what: what.into(),
            measured: measured.into(),
            target: "-".into(),
            verdict: Verdict::Info,
            baseline: String::new(),
            ratio: String::new(),
        }
    }

    fn target(mut self, target: impl Into<String>, met: bool) -> Self {
        self.target = target.into();
        self.verdict = if met { Verdict::Met } else { Verdict::Missed };
        self
    }

    fn baseline(mut self, baseline: impl Into<String>, ratio: impl Into<String>) -> Self {
        self.baseline = baseline.into();
        self.ratio = ratio.into();
        self
    }
}

#[derive(Default)]
struct Report {
    rows: Vec<(&'static str, Row)>,
    failed: bool,
}

impl Report {
    /// Record a figure's rows (also printed at once to stderr, as progress).
    fn add(&mut self, id: &'static str, rows: anyhow::Result<Vec<Row>>) {
        let rows = rows.unwrap_or_else(|e| {
            self.failed = true;
            vec![Row {
                verdict: Verdict::Error,
                ..Row::info("could not be measured", format!("{e:#}"))
            }]
        });
        for r in rows {
            eprintln!("[{id}] {}: {}", r.what, r.measured);
            self.rows.push((id, r));
        }
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let header = [
            "#",
            "figure",
            "measured",
            "target",
            "met",
            "baseline (same run)",
            "measured/baseline",
        ];
        let cells: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|(id, r)| {
                let met = match r.verdict {
                    Verdict::Met => "yes",
                    Verdict::Missed => "NO",
                    Verdict::Info => "",
                    Verdict::Error => "ERROR",
                };
                [
                    id.to_string(),
                    r.what.clone(),
                    r.measured.clone(),
                    r.target.clone(),
                    met.to_string(),
                    r.baseline.clone(),
                    r.ratio.clone(),
                ]
            })
            .collect();
        let mut widths = header.map(|h| h.chars().count());
        for row in &cells {
            for (w, c) in widths.iter_mut().zip(row) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |f: &mut std::fmt::Formatter<'_>, row: &[String]| {
            let padded: Vec<String> = row
                .iter()
                .zip(widths)
                .map(|(c, w)| format!("{c:<w$}"))
                .collect();
            writeln!(f, "| {} |", padded.join(" | "))
        };
        line(f, &header.map(String::from))?;
        let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
        writeln!(f, "|-{}-|", rule.join("-|-"))?;
        for row in &cells {
            line(f, row)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------
// Figure 1: compile vs restart

async fn compile_vs_restart(b: &Bench) -> anyhow::Result<Vec<Row>> {
    let bytes = std::fs::read(guest("hello")?)?;
    let sha = durable_host::registry::sha256_hex(&bytes);
    let registry = &b.host.registry;
    let mut n = 0;
    let compile = sample(b.counts.compiles, || {
        n += 1;
        let (name, bytes) = (format!("hello-{n}"), bytes.clone());
        async move {
            // A new name is a new version: compiled again although the bytes are the same.
            let up = registry
                .upload(DEFAULT_TENANT, &name, bytes, &Default::default())
                .await?;
            ensure!(up.created, "{name} was not compiled");
            Ok(())
        }
    })
    .await?;
    let restart = sample(b.counts.cold_loads, || async {
        registry.clear_cache();
        registry.pre_by_hash(&sha).await?;
        Ok(())
    })
    .await?;
    let (c, r) = (compile.median(), restart.median());
    let kib = bytes.len() / 1024;
    Ok(vec![
        Row::info(
            format!("compile hello.wasm ({kib} KiB) via upload, median"),
            fmt_dur(c),
        ),
        Row::info("restart: deserialize artifact + link, median", fmt_dur(r))
            .target("no recompile (<= compile/10)", r * 10 <= c)
            .baseline(
                format!("compile {}", fmt_dur(c)),
                ratio(r.as_secs_f64(), c.as_secs_f64()),
            ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 2: resume

/// `wasmtime::Error` is its own type; keep its whole chain in the message.
fn wasm_error(e: wasmtime::Error) -> anyhow::Error {
    anyhow::anyhow!("{e:#}")
}

/// A finished execution as it stood just before its last activation ended: the record, and
/// the history without the closing `InvocationCompleted` and `ExecutionSucceeded`.
struct Unfinished {
    record: ExecutionRecord,
    history: Vec<Event>,
}

impl Unfinished {
    fn load(b: &Bench, key: &ExecKey) -> anyhow::Result<Self> {
        let record = b
            .host
            .db
            .execution(&key.tenant, &key.id)?
            .context("execution record")?;
        let mut history = b.host.db.history(&key.id)?;
        let tail: Vec<&str> = history
            .iter()
            .rev()
            .take(2)
            .map(|e| e.kind.event_type())
            .collect();
        ensure!(
            tail == ["ExecutionSucceeded", "InvocationCompleted"],
            "unexpected end of history: {tail:?}"
        );
        history.truncate(history.len() - 2);
        Ok(Unfinished { record, history })
    }

    fn key(&self) -> ExecKey {
        ExecKey {
            tenant: self.record.tenant.as_str().into(),
            id: self.record.id,
            branch: None,
        }
    }

    /// Resume the guest over this journal as `Runtime::activate` does from `Registry::pre`
    /// on, up to and including `upto`. Nothing is written (a replayed step records nothing).
    async fn resume(&self, host: &Host, upto: Phase) -> anyhow::Result<()> {
        let rec = &self.record;
        let pre: Arc<Pre> = host
            .registry
            .pre(&rec.tenant, &rec.function, rec.version)
            .await?;
        if upto == Phase::Lookup {
            return Ok(());
        }
        let mut store = self.new_store(host);
        if upto == Phase::Store {
            return Ok(());
        }
        let instance = pre
            .instantiate_async(&mut store)
            .await
            .map_err(wasm_error)?;
        if upto == Phase::Instantiate {
            return Ok(());
        }
        let output = match instance.call_handle(&mut store, &rec.input).await {
            Ok(Ok(output)) => output,
            Ok(Err(e)) => bail!("{}: {}", e.error_type, e.error_message),
            Err(e) => return Err(wasm_error(e)),
        };
        ensure!(
            Some(&output) == rec.output.as_ref(),
            "resumed to {output}, not {:?}",
            rec.output
        );
        Ok(())
    }

    /// The store of one activation: host state over the journal, limits, epoch deadline.
    fn new_store(&self, host: &Host) -> wasmtime::Store<HostState> {
        let act = Activation::new(Journal::from_events(&self.history), host.clock.now_ms());
        let limits = StoreLimitsBuilder::new()
            .memory_size(host.opts.runtime.defaults.memory_limit_bytes)
            .trap_on_grow_failure(true)
            .build();
        let key = self.key();
        let shared = host.runtime.shared.clone();
        let state = HostState::new(shared, key.tenant, key.id, act, 1, limits);
        let mut store = wasmtime::Store::new(&host.runtime.engine, state);
        store.limiter(|s| &mut s.limits);
        // As the runtime: yield at every epoch tick (its time-limit check is left out).
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(|_| Ok(wasmtime::UpdateDeadline::Yield(1)));
        store
    }
}

/// How far `Unfinished::resume` goes; each phase includes the ones before it.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    /// `Registry::pre`: the version record and the cached `InstancePre`.
    Lookup,
    /// `HostState` (WASI and HTTP contexts, journal fold) and `Store`.
    Store,
    Instantiate,
    /// `handle` until the guest returns (its host calls answered from the journal).
    Call,
}

/// Time each prefix of the resume path `n` times, interleaved so that drift in the machine's
/// load affects every phase alike.
async fn sample_phases<F, Fut>(n: usize, mut resume: F) -> anyhow::Result<Vec<Samples>>
where
    F: FnMut(Phase) -> Fut,
    Fut: Future<Output = anyhow::Result<()>>,
{
    let all = [Phase::Lookup, Phase::Store, Phase::Instantiate, Phase::Call];
    let mut times = vec![Vec::with_capacity(n); all.len()];
    for _ in 0..n {
        for (phase, v) in all.iter().zip(&mut times) {
            let t = Instant::now();
            resume(*phase).await?;
            v.push(t.elapsed());
        }
    }
    Ok(times.into_iter().map(Samples::new).collect())
}

async fn resume(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let key = b.run(&steps_input(1), 300).await?;
    let exec = Unfinished::load(b, &key)?;
    let host = &b.host;
    let n = b.counts.resumes;
    sample(b.counts.warmup, || exec.resume(host, Phase::Call)).await?;
    let phases = sample_phases(n, |p| exec.resume(host, p)).await?;
    let warm = sample(n, || exec.resume(host, Phase::Call)).await?;
    let cold = sample(b.counts.cold_resumes, || async {
        host.registry.clear_cache();
        exec.resume(host, Phase::Call).await
    })
    .await?;
    let (w, c) = (warm.median(), cold.median());
    let step = |i: usize| match i {
        0 => phases[0].median(),
        _ => phases[i].median().saturating_sub(phases[i - 1].median()),
    };
    Ok(vec![
        Row::info(
            "resume: cached pre, instantiate + 1st host call, p50 (p99)",
            format!("{} ({})", fmt_dur(w), fmt_dur(warm.pct(99.0))),
        )
        .target("<= 50 us", w <= Duration::from_micros(50))
        .baseline(
            format!("uncached: load + link + same {}", fmt_dur(c)),
            ratio(w.as_secs_f64(), c.as_secs_f64()),
        ),
        Row::info(
            "of which: lookup / store + contexts / instantiate / call",
            format!(
                "{} / {} / {} / {}",
                fmt_dur(step(0)),
                fmt_dur(step(1)),
                fmt_dur(step(2)),
                fmt_dur(step(3))
            ),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 3: replay

impl Unfinished {
    /// Store a copy under a new id, status running, as a crash would have left it.
    async fn write_copy(&self, b: &Bench) -> anyhow::Result<ExecKey> {
        let id = ids::new_execution_id();
        let copy = ExecutionRecord {
            id,
            status: Status::Running,
            output: None,
            ..self.record.clone()
        };
        let mut batch = Batch::new();
        batch.put_execution(&copy);
        for e in &self.history {
            batch.put_event(&id, e);
        }
        b.host.db.commit(batch, Durability::Sync).await?;
        Ok(ExecKey {
            tenant: copy.tenant.as_str().into(),
            id,
            branch: None,
        })
    }

    /// Time `Runtime::activate` of a fresh copy: replay, then finish live (one fsync).
    async fn time_activation(&self, b: &Bench) -> anyhow::Result<Duration> {
        let key = self.write_copy(b).await?;
        let t = Instant::now();
        let outcome = b.host.runtime.activate(key.clone()).await;
        let elapsed = t.elapsed();
        ensure!(outcome == Outcome::Finished, "activation ended {outcome:?}");
        let done = b.host.db.execution(&key.tenant, &key.id)?;
        let output = done.and_then(|r| r.output);
        ensure!(
            output == self.record.output,
            "the replay ended with {output:?}, not {:?}",
            self.record.output
        );
        Ok(elapsed)
    }
}

/// The pure journal's share of a replay: fold the history, answer `steps` step-starts.
fn replay_journal(history: &[Event], steps: u64) -> anyhow::Result<()> {
    let mut act = Activation::new(Journal::from_events(history), 0);
    for _ in 0..steps {
        let fx = act.step_start(
            0,
            None,
            None,
            StepSemantics::AtLeastOncePerRetry,
            RetryPolicy::default(),
            0.5,
        )?;
        ensure!(
            matches!(fx.reply, Reply::Return((_, StepStart::Succeeded(_)))),
            "a step was not replayed"
        );
    }
    Ok(())
}

async fn replay(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let long = Unfinished::load(b, &b.run(&steps_input(REPLAY_STEPS), 300).await?)?;
    let empty = Unfinished::load(b, &b.run(&steps_input(0), 300).await?)?;
    let (mut t_long, mut t_empty) = (Vec::new(), Vec::new());
    for _ in 0..b.counts.replay_runs {
        t_empty.push(empty.time_activation(b).await?);
        t_long.push(long.time_activation(b).await?);
    }
    let (l, e) = (
        Samples::new(t_long).median(),
        Samples::new(t_empty).median(),
    );
    let steps = REPLAY_STEPS as u32;
    let per_step = l.saturating_sub(e) / steps;
    let runs = b.counts.journal_runs;
    let journal = sample(runs, || async {
        replay_journal(&long.history, REPLAY_STEPS)
    })
    .await?;
    let pure = journal.median() / steps;
    let host = &b.host;
    let guest_long = sample(runs, || long.resume(host, Phase::Call)).await?;
    let guest_empty = sample(runs, || empty.resume(host, Phase::Call)).await?;
    let guest = guest_long.median().saturating_sub(guest_empty.median()) / steps;
    let load = sample(runs, || async {
        host.db.history(&long.record.id)?;
        Ok(())
    })
    .await?;
    let load = load.median() / steps;
    let vs_pure = |d: Duration| ratio(d.as_secs_f64(), pure.as_secs_f64());
    let baseline = format!("pure journal {}/step", fmt_dur(pure));
    Ok(vec![
        Row::info(
            "replay per step (2 events): activate(1000) - activate(0)",
            format!("{} ({}/event)", fmt_dur(per_step), fmt_dur(per_step / 2)),
        )
        .target("<= 1 us/entry", per_step <= Duration::from_micros(1))
        .baseline(&baseline, vs_pure(per_step)),
        Row::info(
            "of which history load (sled scan + decode)",
            format!("{}/step", fmt_dur(load)),
        )
        .baseline(&baseline, vs_pure(load)),
        Row::info(
            "of which guest + host calls + journal",
            format!("{}/step", fmt_dur(guest)),
        )
        .baseline(&baseline, vs_pure(guest)),
        Row::info(
            "whole activation, 1000-step journal (+1 commit)",
            fmt_dur(l),
        )
        .baseline(
            format!("0 steps {}", fmt_dur(e)),
            ratio(l.as_secs_f64(), e.as_secs_f64()),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 4: checkpoint throughput

impl Bench {
    /// A load-test call: invoke `input`; with `wait_secs`, wait until it succeeded.
    fn call(self: &Arc<Self>, input: Value, wait_secs: Option<u32>) -> Call {
        self.call_in(None, input, wait_secs)
    }

    /// `call` in `tenant` (see `invoke_in`).
    fn call_in(
        self: &Arc<Self>,
        tenant: Option<&'static str>,
        input: Value,
        wait_secs: Option<u32>,
    ) -> Call {
        let b = self.clone();
        Arc::new(move || {
            let (b, input) = (b.clone(), input.clone());
            Box::pin(async move {
                let body = b.invoke_in(tenant, &input, wait_secs).await?;
                ensure!(
                    wait_secs.is_none() || body["status"] == "succeeded",
                    "{input} did not succeed: {body}"
                );
                Ok(())
            })
        })
    }
}

/// The latency of one fsync on the data directory's disk: append 4 KiB, `sync_all`.
async fn measure_fsync(dir: &Path, n: usize) -> anyhow::Result<Samples> {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    tokio::task::spawn_blocking(move || {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        let block = [0x5a_u8; 4096];
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            let t = Instant::now();
            f.write_all(&block)?;
            f.sync_all()?;
            v.push(t.elapsed());
        }
        std::fs::remove_file(&path)?;
        Ok(Samples::new(v))
    })
    .await?
}

/// The host's own checkpoint: a 4 KiB history event committed with `Durability::Sync`
/// (write-ahead log write + fdatasync, then applied to sled), under an id no execution has.
async fn measure_commit(b: &Bench, n: usize) -> anyhow::Result<Samples> {
    let input = serde_json::to_string(&"x".repeat(4000))?;
    sample(n, || async {
        let event = Event {
            seq: 1,
            at_ms: 0,
            kind: EventKind::ExecutionStarted {
                input: input.clone(),
            },
        };
        let mut batch = Batch::new();
        batch.put_event(&ids::new_execution_id(), &event);
        b.host.db.commit(batch, Durability::Sync).await?;
        Ok(())
    })
    .await
}

/// Durable steps done by some executions of `steps`, and the fsyncs they took.
struct StepRun {
    steps: u64,
    load: Load,
    fsyncs: u64,
}

impl StepRun {
    async fn measure(b: &Arc<Bench>, executions: usize, each: u64) -> anyhow::Result<Self> {
        let before = b.fsyncs();
        let call = b.call(steps_input(each), Some(300));
        let load = drive(executions, executions, &call).await?;
        Ok(StepRun {
            steps: executions as u64 * each,
            load,
            fsyncs: b.fsyncs() - before,
        })
    }

    fn rate(&self) -> f64 {
        per_sec(self.steps as f64, self.load.elapsed)
    }

    fn per_step(&self) -> Duration {
        self.load.elapsed / self.steps as u32
    }

    fn summary(&self) -> String {
        format!(
            "{}, {:.1} steps/fsync, CPU {:.2} cores",
            fmt_rate(self.rate()),
            self.steps as f64 / self.fsyncs.max(1) as f64,
            self.load.cores()
        )
    }
}

async fn checkpoints(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let fsync = measure_fsync(b.data.path(), b.counts.fsyncs).await?;
    let f = fsync.median();
    let commit = measure_commit(b, b.counts.fsyncs).await?.median();
    let one = StepRun::measure(b, 1, b.counts.steps_single).await?;
    let many = StepRun::measure(b, CLIENTS, b.counts.steps_each).await?;
    let per_step = one.per_step();
    let limit = f.mul_f64(1.5);
    Ok(vec![
        Row::info(
            "one fsync: append 4 KiB + sync_all, p50 (p90)",
            format!("{} ({})", fmt_dur(f), fmt_dur(fsync.pct(90.0))),
        ),
        Row::info(
            "host Sync commit, 4 KiB event (log + fdatasync), p50",
            fmt_dur(commit),
        )
        .baseline(
            format!("fsync {}", fmt_dur(f)),
            ratio(commit.as_secs_f64(), f.as_secs_f64()),
        ),
        Row::info(
            format!("durable step, 1 execution x {}", one.steps),
            format!("{}/step = {}", fmt_dur(per_step), one.summary()),
        )
        .target(
            format!("<= 1.5 fsync = {}", fmt_dur(limit)),
            per_step <= limit,
        )
        .baseline(
            format!("fsync {}", fmt_dur(f)),
            ratio(per_step.as_secs_f64(), f.as_secs_f64()),
        ),
        Row::info(
            format!(
                "durable steps/s, {CLIENTS} executions x {}",
                b.counts.steps_each
            ),
            many.summary(),
        )
        .target(">= 20000/s", many.rate() >= 20_000.0)
        .baseline(
            format!("1 execution {}", fmt_rate(one.rate())),
            ratio(many.rate(), one.rate()),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 5: hello over HTTP

/// `total` executions of `input` over HTTP from `clients` clients, after a warm-up.
async fn invocations(
    b: &Arc<Bench>,
    input: &Value,
    clients: usize,
    total: usize,
) -> anyhow::Result<Load> {
    let call = b.call(input.clone(), Some(30));
    drive(clients, b.counts.warmup, &call).await?;
    drive(clients, total, &call).await
}

/// Figure 5's figures on main before durability at the point of output (4971449 and
/// 178c711, this machine, two runs interleaved with runs of the change, load averages 7-8
/// from other work): printed beside today's, since a baseline from another build cannot be
/// measured in the same run.
const BEFORE_HELLO: [(&str, &str); 3] = [
    ("fsyncs per hello", "4.00"),
    ("p50", "3.93-7.52 ms"),
    ("64 clients", "1167-1311/s"),
];

fn before(what: &str) -> String {
    let v = BEFORE_HELLO
        .iter()
        .find(|(w, _)| *w == what)
        .map_or("?", |(_, v)| *v);
    format!("before: {v}")
}

async fn http_hello(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let hello = scenario("bench-hello", json!({}));
    let echo = scenario("echo", json!({ "value": "hi" }));
    let (single, total) = (b.counts.requests_single, b.counts.requests_total);
    // The fsyncs of the measured hellos at 1 client only (not the warm-up's).
    let call = b.call(hello.clone(), Some(30));
    drive(1, b.counts.warmup, &call).await?;
    let fsyncs_before = b.fsyncs();
    let hello_1 = drive(1, single, &call).await?.latencies;
    let per_hello = (b.fsyncs() - fsyncs_before) as f64 / single as f64;
    let echo_1 = invocations(b, &echo, 1, single).await?.latencies;
    let hello_t = invocations(b, &hello, CLIENTS, total).await?;
    let echo_t = invocations(b, &echo, CLIENTS, total).await?;
    let fsync = measure_fsync(b.data.path(), b.counts.fsyncs)
        .await?
        .median();
    let (h, e) = (hello_1.median(), echo_1.median());
    // The issue's floor: one fsync plus the round trip of a request that writes nothing.
    let floor = fsync + e;
    let (hr, er) = (
        per_sec(total as f64, hello_t.elapsed),
        per_sec(total as f64, echo_t.elapsed),
    );
    Ok(vec![
        Row::info("fsyncs per hello, 1 client", format!("{per_hello:.2}"))
            .target("<= 1", per_hello <= 1.0 + 1e-9)
            .baseline(before("fsyncs per hello"), ""),
        Row::info(
            "hello latency, 1 client, p50 (p99)",
            format!("{} ({})", fmt_dur(h), fmt_dur(hello_1.pct(99.0))),
        )
        .target(
            format!("<= 1.5 x (fsync + echo) = {}", fmt_dur(floor.mul_f64(1.5))),
            h.as_secs_f64() <= 1.5 * floor.as_secs_f64(),
        )
        .baseline(
            format!(
                "fsync {} + echo p50 {} = {}; {}",
                fmt_dur(fsync),
                fmt_dur(e),
                fmt_dur(floor),
                before("p50")
            ),
            ratio(h.as_secs_f64(), floor.as_secs_f64()),
        ),
        Row::info(
            format!("hello executions/s, {CLIENTS} clients x {total}"),
            format!("{}, CPU {:.2} cores", fmt_rate(hr), hello_t.cores()),
        )
        .target(">= 3500/s", hr >= 3_500.0)
        .baseline(
            format!(
                "echo {}, CPU {:.2} cores; {}",
                fmt_rate(er),
                echo_t.cores(),
                before("64 clients")
            ),
            ratio(hr, er),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 6: memory of suspended executions

/// This process's resident set, from /proc/self/status.
fn rss_bytes() -> anyhow::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .context("no VmRSS in /proc/self/status")?;
    let kib: u64 = line.trim().trim_end_matches("kB").trim().parse()?;
    Ok(kib * 1024)
}

/// Heap bytes in use (glibc `mallinfo2`: small chunks plus mmapped ones), to tell live data
/// from memory the allocator keeps after a burst.
fn heap_in_use() -> u64 {
    // SAFETY: mallinfo2 only reads the allocator's statistics.
    let m = unsafe { libc::mallinfo2() };
    (m.uordblks + m.hblkhd) as u64
}

/// How much memory grew: resident set and heap in use.
struct Growth {
    rss: u64,
    heap: u64,
}

/// Wait (bounded) until `n` executions have `status` and nothing is queued or runs.
async fn settle(b: &Bench, status: Status, n: i64) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(300);
    let s = &b.host.scheduler;
    loop {
        let now = b.host.metrics.count(status);
        if now >= n && s.active() == 0 && s.queued() == 0 {
            return Ok(());
        }
        ensure!(
            Instant::now() < deadline,
            "only {now} of {n} executions {} after 300 s",
            status.as_str()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The memory growth while `n` executions of `input` are invoked (64 clients, no `?wait`)
/// and reach `status`; and the invocation rate.
async fn growth(
    b: &Arc<Bench>,
    input: Value,
    n: usize,
    status: Status,
) -> anyhow::Result<(Growth, f64)> {
    let already = b.host.metrics.count(status);
    let (rss, heap) = (rss_bytes()?, heap_in_use());
    let invoked = drive(CLIENTS, n, &b.call(input, None)).await?.elapsed;
    settle(b, status, already + n as i64).await?;
    let grown = Growth {
        rss: rss_bytes()?.saturating_sub(rss),
        heap: heap_in_use().saturating_sub(heap),
    };
    Ok((grown, per_sec(n as f64, invoked)))
}

async fn suspended_memory(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let n = b.counts.suspended;
    let echo = scenario("echo", json!({ "value": "hi" }));
    let (finished, _) = growth(b, echo, n, Status::Succeeded).await?;
    let wait = scenario("wait", json!({ "ms": LONG_WAIT_MS }));
    let (suspended, rate) = growth(b, wait, n, Status::Suspended).await?;
    let resident = b.host.resident_instances();
    // The target is for 10,000 executions; a quick run scales it down.
    let limit = 10.0 * MIB * n as f64 / 10_000.0;
    let mib = |v: u64| format!("{:.1} MiB", v as f64 / MIB);
    Ok(vec![Row::info(
        format!("RSS growth, {n} suspended executions"),
        format!(
            "+{} ({} B/execution; heap +{}; invoked at {}), {resident} resident",
            mib(suspended.rss),
            suspended.rss / n as u64,
            mib(suspended.heap),
            fmt_rate(rate)
        ),
    )
    .target(
        format!("< {}, 0 resident", mib(limit as u64)),
        (suspended.rss as f64) < limit && resident == 0,
    )
    .baseline(
        format!(
            "{n} finished (echo): RSS +{}, heap +{}",
            mib(finished.rss),
            mib(finished.heap)
        ),
        ratio(suspended.rss as f64, finished.rss as f64),
    )])
}

// ---------------------------------------------------------------------------------------
// Figure 7: the cost of authentication

/// Figure 7's 64-client loads go round its three hosts this many times (which goes first
/// rotates too), so that a change in the machine's load falls on all alike.
const AUTH_ROUNDS: usize = 8;

/// Figure 5's hello on one host, as figure 7 measures it.
#[derive(Default)]
struct HelloRuns {
    /// Latencies at 1 client.
    single: Vec<Duration>,
    /// The 64-client loads: requests, time taken, CPU time of the process.
    requests: usize,
    elapsed: Duration,
    cpu: Duration,
    /// Executions/s of each round's 64-client load.
    rates: Vec<f64>,
}

impl HelloRuns {
    /// One execution at 1 client.
    async fn one(&mut self, call: &Call) -> anyhow::Result<()> {
        let t = Instant::now();
        call().await?;
        self.single.push(t.elapsed());
        Ok(())
    }

    /// One round of the 64-client load.
    async fn load(&mut self, call: &Call, total: usize) -> anyhow::Result<()> {
        let load = drive(CLIENTS, total, call).await?;
        self.requests += total;
        self.elapsed += load.elapsed;
        self.cpu += load.cpu;
        self.rates.push(per_sec(total as f64, load.elapsed));
        Ok(())
    }

    fn p50(&self) -> Duration {
        Samples::new(self.single.clone()).median()
    }

    fn rate(&self) -> f64 {
        per_sec(self.requests as f64, self.elapsed)
    }

    /// CPU time (host and clients) per execution under load.
    fn cpu_each(&self) -> Duration {
        self.cpu / self.requests.max(1) as u32
    }
}

/// The median of `v` (not empty).
fn median_f64(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `a` relative to `b`, in percent: "+1.2%".
fn pct_diff(a: f64, b: f64) -> String {
    if b <= 0.0 {
        return "n/a".into();
    }
    format!("{:+.1}%", (a / b - 1.0) * 100.0)
}

/// The mean time of one `authenticate` call, over `n`.
fn time_authenticate(
    host: &Host,
    authorization: Option<&[u8]>,
    n: u32,
) -> anyhow::Result<Duration> {
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(host.tenants.authenticate(authorization, None)?);
    }
    Ok(t.elapsed() / n)
}

async fn auth_cost(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    // A host with keys, one without, and a second one with keys: how far two identical
    // hosts differ is the noise floor the first two are read against.
    let keyed = Bench::start(b.counts).await?;
    let open = Bench::start_with(b.counts, |o| o.insecure_no_auth = true).await?;
    let twin = Bench::start(b.counts).await?;
    b.others
        .lock()
        .unwrap()
        .extend([keyed.clone(), open.clone(), twin.clone()]);
    let hello = scenario("bench-hello", json!({}));
    let calls = [&keyed, &open, &twin].map(|h| h.call(hello.clone(), Some(30)));
    for call in &calls {
        drive(CLIENTS, b.counts.warmup * 4, call).await?;
    }
    let mut runs: [HelloRuns; 3] = Default::default();
    // Each host in turn, the first of each turn rotating, so that all see the machine
    // alike: at 1 client request by request, at 64 clients round by round.
    for i in 0..b.counts.requests_single {
        for k in 0..3 {
            let h = (i + k) % 3;
            runs[h].one(&calls[h]).await?;
        }
    }
    let total = (b.counts.requests_total / AUTH_ROUNDS).max(CLIENTS);
    for round in 0..AUTH_ROUNDS {
        for k in 0..3 {
            let h = (round + k) % 3;
            runs[h].load(&calls[h], total).await?;
        }
    }
    let [with, without, same] = runs;
    // The check alone: what each request pays before its handler runs.
    let key = std::fs::read_to_string(keyed.data.path().join("admin.key"))?;
    let header = format!("Bearer {}", key.trim());
    let n = b.counts.auth_calls;
    let checked = time_authenticate(&keyed.host, Some(header.as_bytes()), n)?;
    let unchecked = time_authenticate(&open.host, None, n)?;
    let cost = checked.saturating_sub(unchecked);
    let hello_cpu = with.cpu_each();
    let share = cost.as_secs_f64() / hello_cpu.as_secs_f64().max(f64::MIN_POSITIVE);
    let (p_with, p_without) = (with.p50(), without.p50());
    let (r_with, r_without) = (with.rate(), without.rate());
    // Each round's ratio: its median is what the load's drift does not move.
    let median_round = |a: &HelloRuns, b: &HelloRuns| {
        median_f64(a.rates.iter().zip(&b.rates).map(|(a, b)| a / b).collect())
    };
    let mid = median_round(&with, &without);
    let twin_mid = median_round(&same, &with);
    let p_same = same.p50();
    Ok(vec![
        Row::info(
            "authenticate(): lookup + SHA-256 + compare, per request",
            format!(
                "{} ({} more than no auth's {})",
                fmt_dur(checked),
                fmt_dur(cost),
                fmt_dur(unchecked)
            ),
        )
        .target("< 2% of a hello's CPU", share < 0.02)
        .baseline(
            format!("hello CPU {}/execution", fmt_dur(hello_cpu)),
            format!("{:.3}%", share * 100.0),
        ),
        Row::info(
            "hello p50, 1 client, with a key on every request",
            format!(
                "{} ({})",
                fmt_dur(p_with),
                pct_diff(p_with.as_secs_f64(), p_without.as_secs_f64())
            ),
        )
        .baseline(
            format!("--insecure-no-auth {}", fmt_dur(p_without)),
            ratio(p_with.as_secs_f64(), p_without.as_secs_f64()),
        ),
        Row::info(
            format!(
                "hello executions/s, {CLIENTS} clients x {}, with a key",
                total * AUTH_ROUNDS
            ),
            format!(
                "{} ({}; median of {AUTH_ROUNDS} rounds' ratios {})",
                fmt_rate(r_with),
                pct_diff(r_with, r_without),
                pct_diff(mid, 1.0),
            ),
        )
        .target("within 2% of no auth (median round)", mid >= 0.98)
        .baseline(
            format!("--insecure-no-auth {}", fmt_rate(r_without)),
            ratio(r_with, r_without),
        ),
        Row::info(
            "noise floor: a second host with keys vs the first",
            format!(
                "p50 {} ({}), executions/s {} (median round {})",
                fmt_dur(p_same),
                pct_diff(p_same.as_secs_f64(), p_with.as_secs_f64()),
                fmt_rate(same.rate()),
                pct_diff(twin_mid, 1.0)
            ),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 8: fairness between tenants

/// The tenant with the backlog (B is the admin key's own, `default`).
const BACKLOG_TENANT: &str = "backlog";
/// Durable steps of each of A's executions: one activation of about this many commits.
const BACKLOG_STEPS: u64 = 10;
/// B's runs, alone and behind the backlog.
const FAIR_RUNS: usize = 50;
/// Resident slots of the fairness host: few, so that the backlog waits in the queue.
const FAIR_RESIDENT: usize = 2;

async fn fairness(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    use durable_host::tenants::{Caller, Role};
    let f = Bench::start_with(b.counts, |o| o.max_resident = FAIR_RESIDENT).await?;
    b.others.lock().unwrap().push(f.clone());
    let admin = Caller {
        tenant: DEFAULT_TENANT.into(),
        role: Role::Admin,
        key_id: None,
    };
    f.host
        .tenants
        .create(&admin, BACKLOG_TENANT, &Default::default())
        .await?;
    let bytes = std::fs::read(guest("conformance_guest")?)?;
    f.host
        .registry
        .upload(BACKLOG_TENANT, FUNCTION, bytes, &Default::default())
        .await?;
    let backlog_input = steps_input(BACKLOG_STEPS);
    f.invoke_in(Some(BACKLOG_TENANT), &backlog_input, Some(30))
        .await?;
    let one_step = f.call(scenario("step-basic", json!({"name": "b"})), Some(30));
    drive(1, 5, &one_step).await?;
    let alone = drive(1, FAIR_RUNS, &one_step).await?.latencies;

    let n = b.counts.backlog;
    let a_call = f.call_in(Some(BACKLOG_TENANT), backlog_input, None);
    let invoked = drive(CLIENTS, n, &a_call).await?.elapsed;
    let before = f.host.scheduler.queued();
    let done_before = f.host.metrics.count(Status::Succeeded);
    let behind = drive(1, FAIR_RUNS, &one_step).await?;
    let after = f.host.scheduler.queued();
    let done = f.host.metrics.count(Status::Succeeded) - done_before;
    ensure!(
        after > 0,
        "A's backlog ran out while B ran ({before} queued before): nothing was measured"
    );
    // A's activations held the slots while B did not: their mean length.
    let a_done = (done - FAIR_RUNS as i64).max(1) as u32;
    let slot_time = behind.elapsed * FAIR_RESIDENT as u32;
    let a_activation = slot_time.saturating_sub(alone.median() * FAIR_RUNS as u32) / a_done;
    let (p_alone, p_behind) = (alone.median(), behind.latencies.median());
    let limit = p_alone + a_activation * 2;
    // First come, first served: B's next activation behind every queued one of A's.
    let fifo = a_activation * before as u32 / FAIR_RESIDENT as u32;
    Ok(vec![
        Row::info(
            format!("tenant B p50 (1 step), behind A's {n} queued executions"),
            format!(
                "{} (p90 {}, max {})",
                fmt_dur(p_behind),
                fmt_dur(behind.latencies.pct(90.0)),
                fmt_dur(behind.latencies.pct(100.0))
            ),
        )
        .target(
            format!("<= alone + 2 of A's activations = {}", fmt_dur(limit)),
            p_behind <= limit,
        )
        .baseline(
            format!("B alone p50 {}", fmt_dur(p_alone)),
            ratio(p_behind.as_secs_f64(), p_alone.as_secs_f64()),
        ),
        Row::info(
            format!("A's backlog ({BACKLOG_STEPS} steps each, {FAIR_RESIDENT} slots)"),
            format!(
                "invoked in {}; {before} queued before B's runs, {after} after; one activation {}",
                fmt_dur(invoked),
                fmt_dur(a_activation)
            ),
        )
        .baseline(
            format!("first come, first served: B waits ~{}", fmt_dur(fifo)),
            ratio(p_behind.as_secs_f64(), fifo.as_secs_f64()),
        ),
    ])
}

// ---------------------------------------------------------------------------------------
// Figure 9: the cost of flow control that does not bind

/// The conformance guest again, under a name whose settings have a `max_concurrency`.
const FLOW_FUNCTION: &str = "conformance-limited";

/// `bench-hello` invoked (and waited for) on `function` over HTTP.
fn call_function(b: &Arc<Bench>, function: &'static str) -> Call {
    let b = b.clone();
    let input = scenario("bench-hello", json!({}));
    Arc::new(move || {
        let (b, input) = (b.clone(), input.clone());
        Box::pin(async move {
            let url = format!("{}/v1/functions/{function}/invoke?wait=30", b.url);
            let resp = b.http.post(url).json(&input).send().await?;
            let status = resp.status();
            let body: Value = resp.json().await?;
            ensure!(
                status.is_success() && body["status"] == "succeeded",
                "{function}: {status} {body}"
            );
            Ok(())
        })
    })
}

async fn flow_control(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let bytes = std::fs::read(guest("conformance_guest")?)?;
    b.host
        .registry
        .upload(DEFAULT_TENANT, FLOW_FUNCTION, bytes, &Default::default())
        .await?;
    let resp = b
        .http
        .patch(format!("{}/v1/functions/{FLOW_FUNCTION}", b.url))
        .json(&json!({"max_concurrency": 100_000}))
        .send()
        .await?;
    ensure!(resp.status().is_success(), "PATCH: {}", resp.text().await?);
    let (plain, limited) = (call_function(b, FUNCTION), call_function(b, FLOW_FUNCTION));
    let total = b.counts.requests_total;
    drive(CLIENTS, b.counts.warmup, &plain).await?;
    drive(CLIENTS, b.counts.warmup, &limited).await?;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for round in 0..b.counts.flow_rounds {
        // Taking turns, and the first of each pair alternating, so drift hits both alike.
        let order = if round % 2 == 0 {
            [(&plain, false), (&limited, true)]
        } else {
            [(&limited, true), (&plain, false)]
        };
        for (call, is_limited) in order {
            let r = per_sec(total as f64, drive(CLIENTS, total, call).await?.elapsed);
            if is_limited {
                with.push(r)
            } else {
                without.push(r)
            }
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let mut ratios: Vec<f64> = with.iter().zip(&without).map(|(w, o)| w / o).collect();
    ratios.sort_by(f64::total_cmp);
    let list = |v: &[f64]| v.iter().map(|r| fmt_rate(*r)).collect::<Vec<_>>().join(" ");
    let (mw, mo) = (median(&with), median(&without));
    Ok(vec![Row::info(
        format!(
            "hello executions/s with a max_concurrency that does not bind, {CLIENTS} clients x {total}, {} rounds: median (each round)",
            with.len()
        ),
        format!("{} ({})", fmt_rate(mw), list(&with)),
    )
    .baseline(
        format!(
            "no flow control {} ({}); per-round ratio {:.3} to {:.3}",
            fmt_rate(mo),
            list(&without),
            ratios[0],
            ratios[ratios.len() - 1]
        ),
        ratio(mw, mo),
    )])
}

// ---------------------------------------------------------------------------------------
// Figure 10: Python vs Rust activations

/// The Python conformance guest is deployed under this name (figure 10).
const PYTHON_FUNCTION: &str = "conformance-python";
/// One-millisecond waits per end-to-end run: 21 activations.
const PYTHON_WAITS: usize = 20;

async fn python_activations(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let bytes = std::fs::read(guest("python/conformance_guest")?)?;
    let size = bytes.len();
    let t = Instant::now();
    b.host
        .registry
        .upload(DEFAULT_TENANT, PYTHON_FUNCTION, bytes, &Default::default())
        .await?;
    let compile = t.elapsed();
    let host = &b.host;
    let n = (b.counts.resumes / 4).max(50);
    let mut resumes = Vec::new();
    for function in [FUNCTION, PYTHON_FUNCTION] {
        let key = b.run_function(function, &steps_input(1), 300).await?;
        let exec = Unfinished::load(b, &key)?;
        sample(b.counts.warmup, || exec.resume(host, Phase::Call)).await?;
        resumes.push(exec);
    }
    // Interleaved, so that the machine's load weighs on both alike.
    let mut phases = [Vec::new(), Vec::new()];
    for _ in 0..n {
        for (exec, out) in resumes.iter().zip(&mut phases) {
            out.push(sample_phases(1, |p| exec.resume(host, p)).await?);
        }
    }
    let median_of = |runs: &[Vec<Samples>], phase: usize| -> Duration {
        Samples::new(runs.iter().map(|r| r[phase].median()).collect()).median()
    };
    let split = |runs: &[Vec<Samples>]| -> String {
        let step = |i: usize| match i {
            0 => median_of(runs, 0),
            _ => median_of(runs, i).saturating_sub(median_of(runs, i - 1)),
        };
        format!(
            "{} / {} / {} / {}",
            fmt_dur(step(0)),
            fmt_dur(step(1)),
            fmt_dur(step(2)),
            fmt_dur(step(3))
        )
    };
    let (rust, python) = (median_of(&phases[0], 3), median_of(&phases[1], 3));
    // Minor page faults per resume: the pages of the memory image an activation touches.
    let mut faults = [0.0; 2];
    for (exec, out) in resumes.iter().zip(&mut faults) {
        let before = minor_faults();
        for _ in 0..n {
            exec.resume(host, Phase::Call).await?;
        }
        *out = (minor_faults() - before) as f64 / n as f64;
    }

    // End to end: whole activations, woken by timers, committed.
    let waits = json!(vec![1; PYTHON_WAITS]);
    let runs = b.counts.replay_runs.max(5);
    let mut per_activation = [Vec::new(), Vec::new()];
    for _ in 0..runs {
        for (function, out) in [FUNCTION, PYTHON_FUNCTION].iter().zip(&mut per_activation) {
            let t = Instant::now();
            b.run_function(function, &scenario("waits", json!({ "ms": waits })), 300)
                .await?;
            out.push(t.elapsed() / (PYTHON_WAITS as u32 + 1));
        }
    }
    let [rust_e2e, python_e2e] = per_activation.map(Samples::new);
    let spread = |s: &Samples| format!("{}-{}", fmt_dur(s.pct(10.0)), fmt_dur(s.pct(90.0)));
    Ok(vec![
        Row::info(
            "Python component: size, upload (compile, link, artifact)",
            format!("{:.1} MB, {}", size as f64 / 1e6, fmt_dur(compile)),
        ),
        Row::info(
            "Python resume: cached pre, instantiate + 1st host call, p50",
            fmt_dur(python),
        )
        .target("<= 1.5 ms", python <= Duration::from_micros(1500))
        .baseline(
            format!("Rust, same run: {}", fmt_dur(rust)),
            ratio(python.as_secs_f64(), rust.as_secs_f64()),
        ),
        Row::info(
            "of which (Python): lookup / store + contexts / instantiate / call",
            split(&phases[1]),
        ),
        Row::info(
            "of which (Rust): lookup / store + contexts / instantiate / call",
            split(&phases[0]),
        ),
        Row::info(
            "minor page faults per resume, Python / Rust",
            format!("{:.0} / {:.0}", faults[1], faults[0]),
        ),
        Row::info(
            format!("Python activation end to end ({PYTHON_WAITS} 1 ms waits), p50 (p10-p90)"),
            format!("{} ({})", fmt_dur(python_e2e.median()), spread(&python_e2e)),
        )
        .baseline(
            format!(
                "Rust, same run: {} ({})",
                fmt_dur(rust_e2e.median()),
                spread(&rust_e2e)
            ),
            ratio(
                python_e2e.median().as_secs_f64(),
                rust_e2e.median().as_secs_f64(),
            ),
        ),
    ])
}

/// The process's minor page faults so far (`getrusage`).
fn minor_faults() -> i64 {
    // SAFETY: `getrusage` writes the struct it is given; all zeroes is a valid `rusage`.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: a valid pointer to a `rusage` owned by this frame.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    usage.ru_minflt
}

// ---------------------------------------------------------------------------------------
// Figure 11: fan-out (map) vs sequential steps

/// Items of the fan-out figure.
const FAN_OUT_ITEMS: u64 = 1_000;

/// One execution of `input` to its end: wall time.
async fn timed_run(b: &Arc<Bench>, input: &Value) -> anyhow::Result<Duration> {
    let t = Instant::now();
    b.run(input, 600).await?;
    Ok(t.elapsed())
}

/// A map over 1,000 items, each a small step (the conformance guest's `map` scenario,
/// item `{"step": i}`), at `max_concurrency` 1, 2 and 64, beside the same work as 1,000
/// sequential steps in one execution. Today every branch of a map runs in the one
/// instance, one after another, so the bound changes nothing and each item costs what a
/// step costs plus its iteration context (started, then succeeded with a second fsync).
async fn fan_out(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let n = FAN_OUT_ITEMS;
    let sequential = timed_run(b, &steps_input(n)).await?;
    let items: Vec<Value> = (0..n).map(|i| json!({ "step": i })).collect();
    let mut rows = vec![Row::info(
        format!("{n} sequential steps, 1 execution"),
        format!(
            "{} = {}",
            fmt_dur(sequential),
            fmt_rate(per_sec(n as f64, sequential))
        ),
    )];
    for concurrency in [1u32, 2, 64] {
        let input = scenario(
            "map",
            json!({ "name": "fan-out", "items": items, "max_concurrency": concurrency }),
        );
        let took = timed_run(b, &input).await?;
        rows.push(
            Row::info(
                format!("fan-out of {n} items (a step each), max_concurrency {concurrency}"),
                format!("{} = {}", fmt_dur(took), fmt_rate(per_sec(n as f64, took))),
            )
            .baseline(
                format!("sequential {}", fmt_dur(sequential)),
                ratio(took.as_secs_f64(), sequential.as_secs_f64()),
            ),
        );
    }
    Ok(rows)
}

// ---------------------------------------------------------------------------------------
// Figure 12: activation cost per language, pool slots kept resident or not

/// The calling thread's CPU time (user and system: its page faults count). The resumes of
/// figure 12 run on the bench's own thread (instantiation and the guest's fiber included),
/// so this is what one costs, whatever else the machine is doing.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `clock_gettime` writes the timespec it is given, owned by this frame.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Wall and thread CPU times of repeated runs of one thing.
#[derive(Default)]
struct Cost {
    wall: Vec<Duration>,
    cpu: Vec<Duration>,
}

impl Cost {
    async fn measure(
        &mut self,
        run: impl Future<Output = anyhow::Result<()>>,
    ) -> anyhow::Result<()> {
        let (t, cpu) = (Instant::now(), thread_cpu_time());
        run.await?;
        self.wall.push(t.elapsed());
        self.cpu.push(thread_cpu_time().saturating_sub(cpu));
        Ok(())
    }

    fn wall_p50(&self) -> Duration {
        Samples::new(self.wall.clone()).median()
    }

    /// `p50 wall (CPU: p50, min)`: on a loaded machine the least CPU time a run took is
    /// the closest to what it costs.
    fn summary(&self) -> String {
        let cpu = Samples::new(self.cpu.clone());
        format!(
            "{} (CPU {}, min {})",
            fmt_dur(self.wall_p50()),
            fmt_dur(cpu.median()),
            fmt_dur(cpu.pct(0.0))
        )
    }
}

/// Per activation of whole executions: p50 and mean over runs.
fn per_activation(runs: &[Duration]) -> (Duration, Duration) {
    let mean = runs.iter().sum::<Duration>() / runs.len().max(1) as u32;
    (Samples::new(runs.to_vec()).median(), mean)
}

/// What one activation costs in Python and in Rust (the conformance guests), on this host
/// (pool slots keep the pages an instance wrote: `keep_resident_bytes`) beside a host that
/// returns every page to the kernel at each drop (`keep_resident_bytes: 0`, what the host
/// did before), taking turns: a resume from the cached pre over a one-step journal
/// (instantiate alone, and instantiate + the replayed call; wall p50, thread CPU p50 and min),
/// the minor page faults of one resume, and whole activations end to end (`waits` with 20
/// one-millisecond waits: 21 activations, each a timer wake, an instantiation, a replay and
/// a commit), per activation.
async fn activation_cost(b: &Arc<Bench>) -> anyhow::Result<Vec<Row>> {
    let before = Bench::start_with(b.counts, |o| o.runtime.keep_resident_bytes = 0).await?;
    b.others.lock().unwrap().push(before.clone());
    let python = std::fs::read(guest("python/conformance_guest")?)?;
    let hosts = [b, &before];
    for h in hosts {
        h.host
            .registry
            .upload(
                DEFAULT_TENANT,
                PYTHON_FUNCTION,
                python.clone(),
                &Default::default(),
            )
            .await?;
    }
    // [host][guest]: host 0 keeps slots resident, 1 does not; guest 0 Python, 1 Rust.
    let guests = [PYTHON_FUNCTION, FUNCTION];
    let mut execs = Vec::new();
    for h in hosts {
        let mut per_guest = Vec::new();
        for function in guests {
            let key = h.run_function(function, &steps_input(1), 300).await?;
            let exec = Unfinished::load(h, &key)?;
            sample(b.counts.warmup, || exec.resume(&h.host, Phase::Call)).await?;
            per_guest.push(exec);
        }
        execs.push(per_guest);
    }
    let mut instantiate: [[Cost; 2]; 2] = Default::default();
    let mut resume: [[Cost; 2]; 2] = Default::default();
    let mut faults = [[0.0; 2]; 2];
    let n = (b.counts.resumes / 4).max(50);
    // Taking turns, the hosts' order alternating from round to round.
    let order = |round: usize| if round % 2 == 0 { [0, 1] } else { [1, 0] };
    for round in 0..n {
        for h in order(round) {
            let host = hosts[h];
            for (g, exec) in execs[h].iter().enumerate() {
                instantiate[h][g]
                    .measure(exec.resume(&host.host, Phase::Instantiate))
                    .await?;
                let before_faults = minor_faults();
                resume[h][g]
                    .measure(exec.resume(&host.host, Phase::Call))
                    .await?;
                faults[h][g] += (minor_faults() - before_faults) as f64 / n as f64;
            }
        }
    }
    let waits = scenario("waits", json!({ "ms": vec![1; PYTHON_WAITS] }));
    let mut e2e: [[Vec<Duration>; 2]; 2] = Default::default();
    for round in 0..b.counts.replay_runs.max(6) {
        for h in order(round) {
            let host = hosts[h];
            for (g, function) in guests.iter().enumerate() {
                let t = Instant::now();
                host.run_function(function, &waits, 300).await?;
                e2e[h][g].push(t.elapsed() / (PYTHON_WAITS as u32 + 1));
            }
        }
    }
    let mut rows = Vec::new();
    for (g, language) in ["Python", "Rust"].iter().enumerate() {
        let (now, old) = (&resume[0][g], &resume[1][g]);
        let mut row = Row::info(
            format!("{language} resume (cached pre, 1-step journal): instantiate + call, p50"),
            now.summary(),
        );
        if g == 0 {
            row = row.target("<= 1.5 ms", now.wall_p50() <= Duration::from_micros(1500));
        }
        rows.push(row.baseline(
            format!("pages to the kernel: {}", old.summary()),
            ratio(now.wall_p50().as_secs_f64(), old.wall_p50().as_secs_f64()),
        ));
        let (now, old) = (&instantiate[0][g], &instantiate[1][g]);
        rows.push(
            Row::info(
                format!("of which {language}: instantiate, p50"),
                now.summary(),
            )
            .baseline(
                format!("pages to the kernel: {}", old.summary()),
                ratio(now.wall_p50().as_secs_f64(), old.wall_p50().as_secs_f64()),
            ),
        );
        rows.push(
            Row::info(
                format!("{language}: minor page faults per resume"),
                format!("{:.0}", faults[0][g]),
            )
            .baseline(
                format!("pages to the kernel: {:.0}", faults[1][g]),
                ratio(faults[0][g], faults[1][g]),
            ),
        );
        let ((now_p50, now_mean), (old_p50, old_mean)) =
            (per_activation(&e2e[0][g]), per_activation(&e2e[1][g]));
        rows.push(
            Row::info(
                format!("{language} activation end to end ({PYTHON_WAITS} 1 ms waits): p50 / mean"),
                format!("{} / {}", fmt_dur(now_p50), fmt_dur(now_mean)),
            )
            .baseline(
                format!(
                    "pages to the kernel: {} / {}",
                    fmt_dur(old_p50),
                    fmt_dur(old_mean)
                ),
                ratio(now_p50.as_secs_f64(), old_p50.as_secs_f64()),
            ),
        );
    }
    Ok(rows)
}
