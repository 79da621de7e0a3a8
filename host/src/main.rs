//! The `durable-host` binary: `serve` runs the host on its embedded store; the other
//! subcommands are the command-line client (`cli`), which talks to a server over HTTP.

mod cli;
mod config;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "durable-host",
    version,
    about = "A WebAssembly host for sandboxed durable functions"
)]
struct Cli {
    #[command(flatten)]
    client: cli::Options,
    #[command(subcommand)]
    command: Command,
}

// Built once per process: boxing `serve`'s arguments would save nothing worth the noise.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the host: HTTP API, scheduler and timers over the sled store in --data-dir.
    #[command(
        after_help = "Every flag can also be set by an environment variable, DURABLE_ \
        and the flag's name in capitals (--max-resident: DURABLE_MAX_RESIDENT), or by a key \
        of the --config file, the flag's name (max_resident = 512). A flag beats the \
        environment, which beats the file. Repeatable flags: a TOML array in the file, a \
        comma-separated list in the environment."
    )]
    Serve(ServeArgs),
    #[command(flatten)]
    Client(cli::Command),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Also serve `GET /metrics`, without authentication, on this address (a loopback
    /// address only; the API's own /metrics needs an admin key).
    #[arg(long, value_name = "ADDR")]
    metrics_listen: Option<SocketAddr>,
    /// Where the database and compiled artifacts live.
    #[arg(long, default_value = "./durable-data")]
    data_dir: PathBuf,
    /// HOST:PORT guests may reach over HTTP (repeatable). Nothing else is reachable.
    #[arg(long = "allow-outbound", value_name = "HOST:PORT")]
    allow_outbound: Vec<String>,
    /// Linear memory limit per instance, in MiB: the default, and the most a function's
    /// settings may ask for.
    #[arg(long, default_value_t = 128)]
    memory_limit_mb: usize,
    /// Longest one activation may run, in seconds (default for functions).
    #[arg(long, default_value_t = 300.0)]
    activation_timeout_secs: f64,
    /// Execution timeout, in seconds, for functions that set none (default: 366 days).
    #[arg(long, default_value_t = durable_host::settings::MAX_EXECUTION_TIMEOUT_SECS)]
    execution_timeout_secs: u64,
    /// How long finished executions are kept, in seconds, for functions that set none
    /// (default: 14 days).
    #[arg(long, default_value_t = 14 * 24 * 3600)]
    retention_secs: u64,
    /// Activations running at once (more wait in the queue).
    #[arg(long, default_value_t = 256)]
    max_resident: usize,
    /// Largest step result, callback result, input or output, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_payload_bytes: usize,
    /// How far ahead, in seconds, timers are held in memory (later ones wait on disk and
    /// are loaded as they come near).
    #[arg(long, default_value_t = durable_host::timer::HORIZON.as_secs(), hide = true)]
    timer_horizon_secs: u64,
    /// Memory for sled's page cache, in MiB (what the store keeps of records it read or
    /// wrote; the largest part of the host's memory growth under load).
    #[arg(long, default_value_t = 64)]
    db_cache_mb: u64,
    /// Largest component upload, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_upload_bytes: usize,
    /// Disk the compiled artifacts may take, in MiB (default: unbounded). Beyond it the
    /// least recently used are removed; one is compiled again at its next load.
    #[arg(long)]
    artifact_cache_mb: Option<u64>,
    /// Export OTLP/HTTP (protobuf) traces to this collector: a base URL
    /// (`http://127.0.0.1:4318`, spans go to `/v1/traces`) or the full traces URL. One
    /// trace per execution, a span per activation, step attempt, wait and callback.
    #[arg(long, value_name = "URL")]
    otlp_endpoint: Option<String>,
    /// Linear memory all resident instances may reserve together, in MiB: each reserves
    /// its function's memory limit before it starts, and waits in line until that fits.
    /// At least --memory-limit-mb. Default: half of this machine's memory.
    #[arg(long)]
    memory_budget_mb: Option<u64>,
    /// Bytes of log one execution keeps (log import and stdout/stderr); then one marker
    /// line, and later lines are dropped.
    #[arg(long, default_value_t = durable_host::host_api::PayloadLimits::default().max_log_bytes_per_execution)]
    max_log_bytes_per_execution: u64,
    /// Log lines one execution keeps; then one marker line, and later lines are dropped.
    #[arg(long, default_value_t = durable_host::host_api::PayloadLimits::default().max_log_lines_per_execution)]
    max_log_lines_per_execution: u32,
    /// How deep child contexts may nest (deeper fails with Durable.LimitExceeded).
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_context_depth)]
    max_context_depth: u32,
    /// Bytes of an operation name (longer fails with Durable.LimitExceeded).
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_name_bytes)]
    max_name_bytes: usize,
    /// Callbacks one execution may have waiting at once (more fails with
    /// Durable.LimitExceeded).
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_pending_callbacks)]
    max_pending_callbacks: usize,
    /// History events after which an execution may start no new operation or attempt
    /// (Durable.LimitExceeded).
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_history_events)]
    max_history_events: u32,
    /// Bytes kept of a recorded error's type; longer is cut with a marker.
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_error_type_bytes)]
    max_error_type_bytes: usize,
    /// Bytes kept of a recorded error's message; longer is cut with a marker.
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_error_message_bytes)]
    max_error_message_bytes: usize,
    /// Bytes of a recorded error's data; larger data is dropped (the message says so).
    #[arg(long, default_value_t = durable_host::journal::Limits::default().max_error_data_bytes)]
    max_error_data_bytes: usize,
    /// Seconds a connection may take to send a complete request head, counted from when it
    /// opens or its previous response ends: slow or idle connections are closed after it.
    #[arg(long, default_value_t = 10.0)]
    header_read_timeout_secs: f64,
    /// Deepest nesting of arrays and objects in an input or callback result (at most 127:
    /// the guest SDK's JSON parser refuses 128 levels).
    #[arg(long, default_value_t = durable_host::api::MAX_JSON_DEPTH)]
    max_json_depth: usize,
    /// Serve without API keys: every request acts as an admin, in tenant `default` or the
    /// one its Durable-Tenant header names. For development on one machine: refused unless
    /// --listen is a loopback address.
    #[arg(long)]
    insecure_no_auth: bool,
    /// Functions a tenant may have, for tenants that set no max_functions.
    #[arg(long, default_value_t = 1000)]
    tenant_max_functions: u64,
    /// Bytes a tenant may store (its components' versions, and its executions' records,
    /// histories and logs), for tenants that set no max_stored_bytes. Default: no limit.
    #[arg(long)]
    tenant_max_stored_bytes: Option<u64>,
    /// Executions running or suspended a tenant may have, for tenants that set no
    /// max_active_executions.
    #[arg(long, default_value_t = 1_000_000)]
    tenant_max_active_executions: u64,
    /// Activations a tenant may have in progress at once (its share of --max-resident), for
    /// tenants that set no max_concurrent_activations. Default: all of --max-resident.
    #[arg(long)]
    tenant_max_concurrent_activations: Option<u64>,
    /// Invocations per second a tenant may make (a token bucket), for tenants that set no
    /// invocations_per_second. Default: no limit.
    #[arg(long)]
    tenant_invocations_per_second: Option<f64>,
    /// Invocations a tenant may make at once after being idle (the bucket's size), for
    /// tenants that set no invocation_burst. Default: twice the rate, at least 1.
    #[arg(long)]
    tenant_invocation_burst: Option<u64>,
    /// Delays between the attempts of a failing webhook delivery, comma-separated, with
    /// units ms, s, m, h; after the last one the delivery is `failed`.
    #[arg(long, value_name = "DELAYS", default_value = "5s,5m,30m,2h,5h,10h,10h", value_parser = schedule_arg)]
    webhook_retry_schedule: String,
    /// Webhook deliveries in flight at once; more wait until one ends.
    #[arg(long, default_value_t = durable_host::webhooks::DEFAULT_CONCURRENCY, value_parser = clap::builder::TypedValueParser::map(clap::value_parser!(u16).range(1..=1024), usize::from))]
    webhook_concurrency: usize,
    /// TOML file of serve settings: keys are the flags' names (`max_resident = 512`);
    /// flags and DURABLE_* variables override it. Also DURABLE_CONFIG.
    #[arg(long, value_name = "PATH")]
    config: Option<PathBuf>,
}

/// Why the command line cannot be used.
#[derive(Debug)]
enum ParseError {
    /// clap's own (also `--help`, `--version`): it prints and exits itself.
    Clap(clap::Error),
    /// The config file or a `DURABLE_*` variable.
    Config(config::Error),
}

/// The command line `args` with `env` (the `DURABLE_*` variables): for `serve`, the config
/// file and the variables become the defaults of its flags before clap parses again.
fn parse_cli(args: &[OsString], env: &BTreeMap<String, String>) -> Result<Cli, ParseError> {
    let cmd = Cli::command();
    let first = cmd
        .clone()
        .try_get_matches_from(args)
        .map_err(ParseError::Clap)?;
    let matches = match first.subcommand() {
        Some(("serve", serve)) => {
            let flag = serve.get_one::<PathBuf>(config::CONFIG_ARG);
            let path = config::config_path(flag.map(PathBuf::as_path), env);
            let text = match &path {
                Some(p) => Some(std::fs::read_to_string(p).map_err(|source| {
                    ParseError::Config(config::Error::Read {
                        path: p.clone(),
                        source,
                    })
                })?),
                None => None,
            };
            let file = path.as_deref().zip(text.as_deref());
            let serve = cmd
                .find_subcommand("serve")
                .expect("serve is a subcommand")
                .clone();
            let serve = config::layer(serve, file, env).map_err(ParseError::Config)?;
            cmd.mut_subcommand("serve", |_| serve)
                .try_get_matches_from(args)
                .map_err(ParseError::Clap)?
        }
        _ => first,
    };
    Cli::from_arg_matches(&matches).map_err(ParseError::Clap)
}

/// The process's `DURABLE_*` variables (those that are valid UTF-8).
fn durable_env() -> BTreeMap<String, String> {
    std::env::vars_os()
        .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
        .filter(|(k, _)| k.starts_with(config::ENV_PREFIX))
        .collect()
}

fn main() -> anyhow::Result<ExitCode> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let argv: Vec<OsString> = std::env::args_os().collect();
    let args = match parse_cli(&argv, &durable_env()) {
        Ok(args) => args,
        Err(ParseError::Clap(e)) => e.exit(),
        Err(ParseError::Config(e)) => {
            eprintln!("error: {e}");
            return Ok(ExitCode::from(2));
        }
    };
    match args.command {
        Command::Serve(a) => {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            rt.block_on(serve(a))?;
            Ok(ExitCode::SUCCESS)
        }
        // No tokio runtime here: the client's blocking HTTP must not run inside one.
        Command::Client(c) => Ok(cli::run(&args.client, c)),
    }
}

/// The quotas of tenants that set none, from the `--tenant-*` flags (checked here, so that
/// a bad one is refused at start naming the flag).
fn tenant_quotas(a: &ServeArgs) -> anyhow::Result<durable_host::tenants::Quotas> {
    if let Some(n) = a.tenant_max_concurrent_activations {
        if !(1..=a.max_resident as u64).contains(&n) {
            anyhow::bail!(
                "--tenant-max-concurrent-activations {n}: expected 1 to --max-resident ({})",
                a.max_resident
            );
        }
    }
    if let Some(r) = a.tenant_invocations_per_second {
        if !(r.is_finite() && r > 0.0) {
            anyhow::bail!("--tenant-invocations-per-second {r}: expected a positive number");
        }
    }
    if a.tenant_invocation_burst == Some(0) {
        anyhow::bail!("--tenant-invocation-burst 0: expected at least 1");
    }
    Ok(durable_host::tenants::Quotas {
        max_functions: Some(a.tenant_max_functions),
        max_stored_bytes: a.tenant_max_stored_bytes,
        max_active_executions: Some(a.tenant_max_active_executions),
        max_concurrent_activations: a.tenant_max_concurrent_activations,
        invocations_per_second: a.tenant_invocations_per_second,
        invocation_burst: a.tenant_invocation_burst,
        ..Default::default()
    })
}

/// `--webhook-retry-schedule`, checked by clap (and so for the config file and the
/// environment too).
fn schedule_arg(s: &str) -> Result<String, String> {
    durable_host::webhooks::parse_schedule(s).map(|_| s.to_string())
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if let Some(path) = &a.config {
        tracing::info!(config = %path.display(), "serve settings from a config file");
    }
    if !a.activation_timeout_secs.is_finite() || a.activation_timeout_secs <= 0.0 {
        anyhow::bail!("--activation-timeout-secs must be a positive number");
    }
    if a.insecure_no_auth {
        if !a.listen.ip().is_loopback() {
            anyhow::bail!(
                "--insecure-no-auth serves every request as an admin, so it is refused on {}: \
                 listen on a loopback address (127.0.0.1, ::1), or drop the flag and use API \
                 keys (the admin key is in <data-dir>/admin.key)",
                a.listen
            );
        }
        tracing::warn!(
            listen = %a.listen,
            "--insecure-no-auth: API keys are not checked; every request acts as an admin"
        );
    }
    let memory_limit_bytes = (a.memory_limit_mb as u64).saturating_mul(1024 * 1024);
    let memory_budget_bytes = match a.memory_budget_mb {
        Some(mb) if mb < a.memory_limit_mb as u64 => anyhow::bail!(
            "--memory-budget-mb {mb} is smaller than --memory-limit-mb {}: no instance could \
             ever start; give a budget of at least the per-instance limit",
            a.memory_limit_mb
        ),
        Some(mb) => mb.saturating_mul(1024 * 1024),
        None => {
            durable_host::host_api::memory::default_bytes(memory_limit_bytes, a.max_resident as u64)
        }
    };
    if !(a.header_read_timeout_secs.is_finite() && a.header_read_timeout_secs > 0.0) {
        anyhow::bail!("--header-read-timeout-secs must be a positive number");
    }
    if !(1..=durable_host::api::MAX_JSON_DEPTH_LIMIT).contains(&a.max_json_depth) {
        anyhow::bail!(
            "--max-json-depth must be 1 to {}",
            durable_host::api::MAX_JSON_DEPTH_LIMIT
        );
    }
    if let Some(addr) = a.metrics_listen {
        if !addr.ip().to_canonical().is_loopback() {
            anyhow::bail!(
                "--metrics-listen {addr}: it serves /metrics without authentication, so it \
                 must be a loopback address (127.0.0.1, ::1)"
            );
        }
    }
    // Bound before the host opens: guests may not reach these addresses through an
    // allowlisted name (`Options::api_listen`).
    let listener = tokio::net::TcpListener::bind(a.listen)
        .await
        .with_context(|| format!("--listen {}", a.listen))?;
    let metrics_listener = match a.metrics_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-listen {addr}"))?,
        ),
        None => None,
    };
    let mut api_listen = vec![listener.local_addr()?];
    if let Some(l) = &metrics_listener {
        api_listen.push(l.local_addr()?);
    }
    let tenant_quotas = tenant_quotas(&a)?;
    let mut opts = durable_host::Options {
        data_dir: a.data_dir,
        allow_outbound: a.allow_outbound,
        max_upload_bytes: a.max_upload_bytes,
        artifact_cache_bytes: a.artifact_cache_mb.map(|mb| mb * 1024 * 1024),
        otlp_endpoint: a.otlp_endpoint,
        max_resident: a.max_resident,
        timer_horizon: Duration::from_secs(a.timer_horizon_secs.max(1)),
        db_cache_bytes: a.db_cache_mb.max(1) * 1024 * 1024,
        memory_budget_bytes,
        header_read_timeout: Duration::from_secs_f64(a.header_read_timeout_secs),
        max_json_depth: a.max_json_depth,
        insecure_no_auth: a.insecure_no_auth,
        api_listen,
        tenant_quotas,
        webhooks: durable_host::webhooks::Options {
            schedule: durable_host::webhooks::parse_schedule(&a.webhook_retry_schedule)
                .map_err(anyhow::Error::msg)?,
            concurrency: a.webhook_concurrency,
            timeout: durable_host::webhooks::ATTEMPT_TIMEOUT,
            retention: Duration::from_secs(a.retention_secs.max(1)),
        },
        ..Default::default()
    };
    opts.runtime.defaults = durable_host::settings::Defaults {
        memory_limit_bytes: a.memory_limit_mb * 1024 * 1024,
        activation_timeout: Duration::from_secs_f64(a.activation_timeout_secs),
        execution_timeout: Duration::from_secs(a.execution_timeout_secs.max(1)),
        retention: Duration::from_secs(a.retention_secs.max(1)),
    };
    opts.runtime.max_instances = (a.max_resident as u32).saturating_add(16).max(64);
    opts.payload.max_payload_bytes = a.max_payload_bytes;
    opts.payload.max_log_bytes_per_execution = a.max_log_bytes_per_execution;
    opts.payload.max_log_lines_per_execution = a.max_log_lines_per_execution;
    let j = &mut opts.payload.journal;
    j.max_context_depth = a.max_context_depth;
    j.max_name_bytes = a.max_name_bytes;
    j.max_pending_callbacks = a.max_pending_callbacks;
    j.max_history_events = a.max_history_events;
    j.max_error_type_bytes = a.max_error_type_bytes;
    j.max_error_message_bytes = a.max_error_message_bytes;
    j.max_error_data_bytes = a.max_error_data_bytes;
    let host = durable_host::Host::open(opts)?;
    let tracer = host.tracer.clone();
    host.start().await?;
    // Ctrl-C stops both listeners.
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _ = tokio::signal::ctrl_c().await;
        let _ = stop_tx.send(true);
    });
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tracing::info!(listen = %listener.local_addr()?, "durable-host serving");
    // The line tests and scripts wait for.
    eprintln!(
        "durable-host listening on http://{}",
        listener.local_addr()?
    );
    let metrics = match metrics_listener {
        Some(l) => {
            tracing::info!(listen = %l.local_addr()?, "serving /metrics without authentication");
            eprintln!("durable-host metrics on http://{}/metrics", l.local_addr()?);
            let serve = durable_host::api::serve_metrics(l, host.clone(), stopped(stop_rx.clone()));
            Some(tokio::spawn(serve))
        }
        None => None,
    };
    durable_host::api::serve(listener, host, stopped(stop_rx)).await?;
    if let Some(m) = metrics {
        m.await??;
    }
    if let Some(t) = tracer {
        // The exporter's own thread sends what it buffers; not on a runtime worker.
        tokio::task::spawn_blocking(move || t.shutdown()).await?;
    }
    Ok(())
}
