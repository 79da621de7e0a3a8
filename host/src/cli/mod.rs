//! The command-line client: the `durable-host` subcommands other than `serve` (`deploy`,
//! `invoke`, `executions`, `get`, `history`, `logs`, `callback`, `stop`, ...), each one
//! or a few HTTP requests to a running server.
//!
//! Owns argument shapes, exit codes and output formats; knows the API only through its
//! HTTP contract (no `durable_host` types). Runs without a tokio runtime (`reqwest::blocking`
//! brings its own). Output: tables and key/value views for people; with `--json`, the
//! response bodies as they came, one JSON document per command (JSON Lines when following).
//!
//! Exit codes: 0 done; 1 the execution ended `failed`, `timed_out` or `stopped` (`invoke`,
//! `history --follow`); 2 an error, reported as one `error: ...` line on stderr.

mod callbacks;
mod client;
mod executions;
mod functions;
mod history;
mod input;
mod render;
mod spinner;
mod sse;
mod table;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use client::Client;

/// Where the server is when neither `--server` nor `DURABLE_SERVER` says.
pub const DEFAULT_SERVER: &str = "http://127.0.0.1:7700";

/// Options shared by every client command.
#[derive(Args)]
pub struct Options {
    /// Base URL of the durable-host server.
    #[arg(
        long,
        global = true,
        help_heading = "Client options",
        env = "DURABLE_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub server: String,
    /// Print the raw JSON response bodies instead of tables.
    #[arg(long, global = true, help_heading = "Client options")]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum Command {
    /// Upload a component: a new version, or the latest one if the bytes are the same.
    Deploy {
        /// The function's name (1-64 of letters, digits, '_', '-', '.').
        name: String,
        /// The wasm component file.
        file: PathBuf,
    },
    /// List the functions, or describe one with its versions.
    Functions {
        /// Describe this function instead.
        name: Option<String>,
    },
    /// Delete a function: no new invocations; running executions finish on their version.
    Delete {
        /// The function's name.
        name: String,
    },
    /// Start an execution; with --wait, wait for its end.
    Invoke(executions::InvokeArgs),
    /// List executions, newest first.
    Executions(executions::ListArgs),
    /// Show one execution: status, input, output, error.
    Get {
        /// The execution id.
        id: String,
    },
    /// Show an execution's history events; --follow streams them until it ends.
    History {
        /// The execution id.
        id: String,
        /// Stream new events as they happen, until the execution ends.
        #[arg(long, short)]
        follow: bool,
    },
    /// Show an execution's log lines and stdout/stderr.
    Logs {
        /// The execution id.
        id: String,
    },
    /// Complete or heartbeat a callback an execution is waiting for.
    #[command(subcommand)]
    Callback(callbacks::Command),
    /// Stop a running or suspended execution.
    Stop {
        /// The execution id.
        id: String,
    },
}

/// A client command's failure. Every one is printed as `error: {self}` and exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the server at {server}: is `durable-host serve` running?")]
    Unreachable { server: String },
    /// The API's `{"error": {"code", "message"}}` (or what came instead of it).
    #[error("{status} {code}: {message}")]
    Api {
        status: u16,
        code: String,
        message: String,
    },
    /// Something wrong with the arguments that only shows once they are read.
    #[error("{0}")]
    Usage(String),
    /// The connection failed after it was made, or timed out.
    #[error("{0}")]
    Http(String),
    #[error("unexpected answer from the server: {0}")]
    Response(String),
    #[error("writing the output: {0}")]
    Output(#[from] io::Error),
}

/// How a command that completed should exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success,
    /// The execution it reports on ended failed, timed out or stopped.
    ExecutionFailed,
}

/// The state of a command: the API client, the output mode and stdout.
pub struct Ctx {
    client: Client,
    json: bool,
    out: io::Stdout,
}

impl Ctx {
    /// Write `text` as is.
    fn print(&self, text: &str) -> Result<(), Error> {
        let mut out = self.out.lock();
        out.write_all(text.as_bytes())?;
        out.flush()?;
        Ok(())
    }

    /// Write one JSON document (or JSON Lines record) on a line of its own.
    fn print_json(&self, text: &str) -> Result<(), Error> {
        self.print(&format!("{}\n", text.trim_end()))
    }
}

/// Run a client command and report how it went on stderr and in the exit code.
pub fn run(opts: &Options, command: Command) -> ExitCode {
    match dispatch(opts, command) {
        Ok(Exit::Success) => ExitCode::SUCCESS,
        Ok(Exit::ExecutionFailed) => ExitCode::from(1),
        // A closed pipe (`| head`): the reader has gone, there is no one to tell.
        Err(Error::Output(e)) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::from(2),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn dispatch(opts: &Options, command: Command) -> Result<Exit, Error> {
    let ctx = Ctx {
        client: Client::new(&opts.server)?,
        json: opts.json,
        out: io::stdout(),
    };
    match command {
        Command::Deploy { name, file } => functions::deploy(&ctx, &name, &file),
        Command::Functions { name: None } => functions::list(&ctx),
        Command::Functions { name: Some(name) } => functions::describe(&ctx, &name),
        Command::Delete { name } => functions::delete(&ctx, &name),
        Command::Invoke(args) => executions::invoke(&ctx, args),
        Command::Executions(args) => executions::list(&ctx, &args),
        Command::Get { id } => executions::get(&ctx, &id),
        Command::History { id, follow: false } => history::show(&ctx, &id),
        Command::History { id, follow: true } => history::follow(&ctx, &id),
        Command::Logs { id } => executions::logs(&ctx, &id),
        Command::Callback(c) => callbacks::run(&ctx, c),
        Command::Stop { id } => executions::stop(&ctx, &id),
    }
}
