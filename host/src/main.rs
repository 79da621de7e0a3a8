//! The `durable-host` binary: `serve` runs the host on its embedded store.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "durable-host",
    version,
    about = "A WebAssembly host for sandboxed durable functions"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: HTTP API, scheduler and timers over the sled store in --data-dir.
    Serve(ServeArgs),
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:7700")]
    listen: SocketAddr,
    /// Where the database and compiled artifacts live.
    #[arg(long, default_value = "./durable-data")]
    data_dir: PathBuf,
    /// HOST:PORT guests may reach over HTTP (repeatable). Nothing else is reachable.
    #[arg(long = "allow-outbound", value_name = "HOST:PORT")]
    allow_outbound: Vec<String>,
    /// Linear memory limit per instance, in MiB.
    #[arg(long, default_value_t = 128)]
    memory_limit_mb: usize,
    /// Longest one activation may run, in seconds.
    #[arg(long, default_value_t = 300.0)]
    activation_timeout_secs: f64,
    /// Activations running at once (more wait in the queue).
    #[arg(long, default_value_t = 256)]
    max_resident: usize,
    /// Largest step result, callback result, input or output, in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_payload_bytes: usize,
    /// Largest component upload, in bytes.
    #[arg(long, default_value_t = 64 * 1024 * 1024)]
    max_upload_bytes: usize,
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "info,wasmtime=warn,cranelift=warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve(a) => rt.block_on(serve(a)),
    }
}

async fn serve(a: ServeArgs) -> anyhow::Result<()> {
    if !a.activation_timeout_secs.is_finite() || a.activation_timeout_secs <= 0.0 {
        anyhow::bail!("--activation-timeout-secs must be a positive number");
    }
    let mut opts = durable_host::Options {
        data_dir: a.data_dir,
        allow_outbound: a.allow_outbound,
        max_upload_bytes: a.max_upload_bytes,
        max_resident: a.max_resident,
        ..Default::default()
    };
    opts.runtime.memory_limit_bytes = a.memory_limit_mb * 1024 * 1024;
    opts.runtime.activation_timeout = Duration::from_secs_f64(a.activation_timeout_secs);
    opts.runtime.max_instances = (a.max_resident as u32).saturating_add(16).max(64);
    opts.payload.max_payload_bytes = a.max_payload_bytes;
    let host = durable_host::Host::open(opts)?;
    host.start().await?;
    let listener = tokio::net::TcpListener::bind(a.listen).await?;
    tracing::info!(listen = %listener.local_addr()?, "durable-host serving");
    // The line tests and scripts wait for.
    eprintln!(
        "durable-host listening on http://{}",
        listener.local_addr()?
    );
    axum::serve(listener, durable_host::api::router(host))
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
