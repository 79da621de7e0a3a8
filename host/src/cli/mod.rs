//! The command-line client: the `durable-host` subcommands other than `serve` (`deploy`,
//! `invoke`, `executions`, `get`, `history`, `logs`, `callback`, `stop`, `tenants`, `keys`,
//! `whoami`, `webhooks`, `schedules`, `redrive`, `fork`, `jobs`, ...), each one or a few HTTP requests to a running server, authenticated by an
//! API key (`auth`: `--api-key`, `DURABLE_API_KEY` or the server's `admin.key` file).
//!
//! Owns argument shapes, exit codes and output formats; knows the API only through its
//! HTTP contract (no `durable_host` types but the pure webhook signature check). Runs
//! without a tokio runtime (`reqwest::blocking` brings its own), except `webhooks listen`,
//! the one command that serves (a local receiver, on a runtime of its own). Output: tables and key/value views for people; with `--json`, the
//! response bodies as they came, one JSON document per command (JSON Lines when following).
//!
//! Exit codes: 0 done; 1 the execution ended `failed`, `timed_out` or `stopped` (`invoke`,
//! `history --follow`); 2 an error, reported as one `error: ...` line on stderr.

mod auth;
mod callbacks;
mod client;
mod executions;
mod functions;
mod history;
mod input;
mod keys;
mod listen;
mod recovery;
mod render;
mod schedules;
mod spinner;
mod sse;
mod table;
mod tenants;
mod webhooks;

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use auth::Credentials;
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
    /// The API key, sent as `Authorization: Bearer KEY`. Default: DURABLE_API_KEY, else
    /// the admin key the server wrote, $DURABLE_DATA_DIR/admin.key when that variable is
    /// set, else ./durable-data/admin.key. (Other users can see arguments in the process
    /// list: prefer the variable or the file.)
    #[arg(
        long,
        global = true,
        help_heading = "Client options",
        value_name = "KEY"
    )]
    pub api_key: Option<String>,
    /// Act in this tenant (an admin key acting in another tenant): sends
    /// `Durable-Tenant: NAME`. Also the tenant of the `keys` commands.
    #[arg(
        long,
        global = true,
        help_heading = "Client options",
        env = "DURABLE_TENANT",
        value_name = "NAME"
    )]
    pub tenant: Option<String>,
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
    /// Create, list, show, change and delete tenants and their quotas (admin keys).
    #[command(subcommand)]
    Tenants(tenants::Command),
    /// Create, list and revoke API keys.
    #[command(subcommand)]
    Keys(keys::Command),
    /// Show the tenant, role and id of the API key in use, and where it was found.
    Whoami,
    /// Create, list, show and delete webhooks; list, retry and test their deliveries;
    /// receive them locally (`listen`).
    #[command(subcommand)]
    Webhooks(webhooks::Command),
    /// Create, list, show, pause, resume, trigger and delete cron schedules.
    #[command(subcommand)]
    Schedules(schedules::Command),
    /// Send a failed, timed-out or stopped execution back to running (what succeeded
    /// replays); with --function and --status instead of an id, every one that matches
    /// (a bulk job).
    Redrive(recovery::RedriveArgs),
    /// Start a new execution from a checkpoint of one: its operations before --from replay.
    Fork(recovery::ForkArgs),
    /// List bulk redrive jobs, or show one and its progress.
    #[command(subcommand)]
    Jobs(recovery::JobsCommand),
}

/// A client command's failure. Every one is printed as `error: {self}` and exits with 2.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("cannot reach the server at {server}: is `durable-host serve` running?")]
    Unreachable { server: String },
    /// The API's `{"error": {"code", "message"}}` (or what came instead of it), and what
    /// the client can add (how to give a key after a 401).
    #[error("{status} {code}: {message}{}", hint.as_ref().map(|h| format!("; {h}")).unwrap_or_default())]
    Api {
        status: u16,
        code: String,
        message: String,
        hint: Option<String>,
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

/// The state of a command: the API client, the output mode, the chosen tenant and stdout.
pub struct Ctx {
    client: Client,
    json: bool,
    /// `--tenant`: the tenant acted in, when not the key's own.
    tenant: Option<String>,
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

/// The body as it came with `--json`, else `text()`.
pub(crate) fn show(ctx: &Ctx, body: &str, text: impl FnOnce() -> String) -> Result<Exit, Error> {
    if ctx.json {
        ctx.print_json(body)?;
    } else {
        ctx.print(&text())?;
    }
    Ok(Exit::Success)
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
    let credentials = Credentials::from_env(opts.api_key.as_deref())?;
    let ctx = Ctx {
        client: Client::new(&opts.server, credentials, opts.tenant.as_deref())?,
        json: opts.json,
        tenant: opts.tenant.clone(),
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
        Command::Tenants(c) => tenants::run(&ctx, c),
        Command::Keys(c) => keys::run(&ctx, c),
        Command::Whoami => keys::whoami(&ctx),
        Command::Webhooks(c) => webhooks::run(&ctx, c),
        Command::Schedules(c) => schedules::run(&ctx, c),
        Command::Redrive(a) => recovery::redrive(&ctx, a),
        Command::Fork(a) => recovery::fork(&ctx, a),
        Command::Jobs(c) => recovery::jobs(&ctx, c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, Parser};

    /// The client's part of the `durable-host` command line.
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        opts: Options,
        #[command(subcommand)]
        command: Command,
    }

    fn parse(args: &[&str]) -> Result<Cli, String> {
        let mut argv = vec!["durable-host"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv).map_err(|e| e.to_string())
    }

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    /// The global --tenant reaches every subcommand, beside the keys commands' own TENANT.
    #[test]
    fn the_tenant_is_global_and_the_keys_commands_take_their_own() {
        type Case<'a> = (&'a [&'a str], Option<&'a str>, Option<&'a str>);
        let cases: [Case; 6] = [
            (&["keys", "list"], None, None),
            (&["keys", "list", "acme"], None, Some("acme")),
            (&["keys", "list", "--tenant", "beta"], Some("beta"), None),
            (
                &["--tenant", "beta", "keys", "list", "acme"],
                Some("beta"),
                Some("acme"),
            ),
            (
                &["keys", "revoke", "0123456789ab", "acme"],
                None,
                Some("acme"),
            ),
            (
                &["keys", "revoke", "--tenant", "b", "0123456789ab"],
                Some("b"),
                None,
            ),
        ];
        for (args, global, own) in cases {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.opts.tenant.as_deref(), global, "{args:?}");
            let got = match cli.command {
                Command::Keys(keys::Command::List { tenant }) => tenant,
                Command::Keys(keys::Command::Revoke { key_id, tenant }) => {
                    assert_eq!(key_id, "0123456789ab");
                    tenant
                }
                _ => panic!("{args:?}: not a keys command"),
            };
            assert_eq!(got.as_deref(), own, "{args:?}");
        }
    }

    #[test]
    fn the_api_key_flag_goes_anywhere_on_the_line() {
        for args in [
            &["--api-key", "dh_x", "whoami"][..],
            &["whoami", "--api-key", "dh_x"],
            &["tenants", "list", "--api-key=dh_x"],
        ] {
            let cli = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert_eq!(cli.opts.api_key.as_deref(), Some("dh_x"), "{args:?}");
        }
    }

    /// Bad quotas, roles and durations are clap's usage errors: no request is made.
    #[test]
    fn bad_arguments_fail_while_parsing() {
        for (args, want) in [
            (
                &["tenants", "create", "acme", "--quota", "max_functions"][..],
                "is not KEY=VALUE",
            ),
            (&["tenants", "update", "acme"], "--quota <KEY=VALUE>"),
            (
                &["tenants", "update", "acme", "--quota", "x="],
                "no value for x",
            ),
            (
                &["keys", "create", "--role", "god", "--name", "n"],
                "invalid value 'god'",
            ),
            (
                &[
                    "keys",
                    "create",
                    "--role",
                    "reader",
                    "--name",
                    "n",
                    "--expires-in",
                    "3y",
                ],
                "is not a duration",
            ),
        ] {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
