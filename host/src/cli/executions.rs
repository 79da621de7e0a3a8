//! `invoke`, `executions`, `get`, `logs` and `stop`: executions over HTTP.

use std::time::Duration;

use serde_json::{json, Value};

use super::client::Request;
use super::spinner::Spinner;
use super::{input, render, Ctx, Error, Exit};

/// How much longer than `--wait` an invoke request may take before the client gives up
/// (the server answers by then; this is for a server that does not).
const WAIT_SLACK: Duration = Duration::from_secs(60);

#[derive(clap::Args)]
pub struct InvokeArgs {
    /// The function's name.
    name: String,
    /// The input: JSON, `@path` for a file, or `-` for stdin (default: null).
    #[arg(allow_hyphen_values = true)]
    input: Option<String>,
    /// Wait up to this many seconds for the execution to end (the server caps it at 300).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds)]
    wait: Option<f64>,
    /// The same key with the same input returns the same execution (per function).
    #[arg(long, value_name = "KEY")]
    idempotency_key: Option<String>,
    /// Start after this many seconds (the execution is `suspended` until then).
    #[arg(long, value_name = "SECONDS", value_parser = parse_seconds, conflicts_with = "start_at")]
    delay: Option<f64>,
    /// Start at this time (RFC 3339, e.g. 2026-01-31T09:30:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    start_at: Option<String>,
}

fn parse_seconds(s: &str) -> Result<f64, String> {
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v >= 0.0)
        .ok_or_else(|| format!("{s:?} is not a number of seconds"))
}

/// `invoke NAME [JSON]`: 202 prints the execution's id and status; 200 (ended within
/// `--wait`) the whole execution. Exits 1 if it ended failed, timed out or stopped.
pub fn invoke(ctx: &Ctx, args: InvokeArgs) -> Result<Exit, Error> {
    let body = input::json_arg(args.input.as_deref(), "input")?;
    let path = ["v1", "functions", args.name.as_str(), "invoke"];
    let timeout = Duration::from_secs_f64(args.wait.unwrap_or(0.0)) + WAIT_SLACK;
    let request = Request::post(&path)
        .query("wait", args.wait.map(|w| w.to_string()))
        .query("delay", args.delay.map(|d| d.to_string()))
        .query("start_at", args.start_at)
        .header("idempotency-key", args.idempotency_key)
        .json(body)
        .timeout(Some(timeout));
    let reply = {
        let _spinner = args
            .wait
            .map(|w| Spinner::start(format!("waiting up to {w} s for {}", args.name)));
        ctx.client.send(request)?
    };
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else if is_terminal(&reply.body) {
        ctx.print(&render::execution(&reply.body))?;
    } else {
        ctx.print(&render::execution_brief(&reply.body))?;
    }
    Ok(render::exit_for(&reply.body))
}

/// Whether an execution has ended (an idempotent invoke may answer with one that has).
fn is_terminal(execution: &Value) -> bool {
    !matches!(
        execution.get("status").and_then(Value::as_str),
        Some("running" | "suspended") | None
    )
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Only this function's executions.
    #[arg(long, value_name = "NAME")]
    function: Option<String>,
    /// Only executions with this status (running, suspended, succeeded, failed,
    /// timed_out, stopped).
    #[arg(long, value_parser = STATUSES)]
    status: Option<String>,
    /// Only executions whose error has exactly this type (e.g. Runtime.LoadError).
    #[arg(long, value_name = "TYPE")]
    error_type: Option<String>,
    /// Only executions that ended at or after this time (RFC 3339, e.g.
    /// 2026-01-31T09:30:00Z).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    ended_after: Option<String>,
    /// Only executions that ended before this time (RFC 3339).
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    ended_before: Option<String>,
    /// How many per page (the server's default is 50).
    #[arg(long, value_name = "N")]
    limit: Option<u32>,
    /// Follow `next_cursor` through every page.
    #[arg(long)]
    all: bool,
}

/// What `--status` takes: the API's execution statuses.
const STATUSES: [&str; 6] = [
    "running",
    "suspended",
    "succeeded",
    "failed",
    "timed_out",
    "stopped",
];

/// An RFC 3339 time, checked here so that a typo is a usage error, sent as given.
fn parse_time(s: &str) -> Result<String, String> {
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(|_| s.to_string())
        .map_err(|e| format!("{s:?} is not an RFC 3339 time such as 2026-01-31T09:30:00Z ({e})"))
}

/// `executions`: one page, or every page with `--all` (then `--json` prints them as one
/// document with a null `next_cursor`).
pub fn list(ctx: &Ctx, args: &ListArgs) -> Result<Exit, Error> {
    let mut executions = Vec::new();
    let mut cursor = None;
    loop {
        let reply = ctx.client.send(
            Request::get(&["v1", "executions"])
                .query("function", args.function.clone())
                .query("status", args.status.clone())
                .query("error_type", args.error_type.clone())
                .query("ended_after", args.ended_after.clone())
                .query("ended_before", args.ended_before.clone())
                .query("limit", args.limit.map(|n| n.to_string()))
                .query("cursor", cursor.take()),
        )?;
        if !args.all && ctx.json {
            ctx.print_json(&reply.text)?;
            return Ok(Exit::Success);
        }
        executions.extend(reply.array("executions")?.iter().cloned());
        cursor = reply.next_cursor();
        if cursor.is_none() || !args.all {
            break;
        }
    }
    if ctx.json {
        let doc = json!({"executions": executions, "next_cursor": null});
        ctx.print_json(&doc.to_string())?;
    } else if executions.is_empty() {
        ctx.print("no executions\n")?;
    } else {
        ctx.print(&render::executions_table(&executions))?;
        if cursor.is_some() {
            eprintln!("(more executions: --all lists every page)");
        }
    }
    Ok(Exit::Success)
}

/// `get ID`: one execution, in full.
pub fn get(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let reply = ctx.client.send(Request::get(&["v1", "executions", id]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::execution(&reply.body))?;
    }
    Ok(Exit::Success)
}

/// `logs ID`: `timestamp level [stream] message` per line, every page (`--json`: one
/// document with every line and a null `next_cursor`). Lines are printed page by page, so
/// a long log is never held whole.
pub fn logs(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let mut all = Vec::new();
    let mut cursor = None;
    loop {
        let reply = ctx
            .client
            .send(Request::get(&["v1", "executions", id, "logs"]).query("cursor", cursor.take()))?;
        if ctx.json {
            all.extend(reply.array("logs")?.iter().cloned());
        } else {
            let lines: String = reply.array("logs")?.iter().map(render::log_line).collect();
            ctx.print(&lines)?;
        }
        cursor = reply.next_cursor();
        if cursor.is_none() {
            break;
        }
    }
    if ctx.json {
        let doc = json!({"logs": all, "next_cursor": null});
        ctx.print_json(&doc.to_string())?;
    }
    Ok(Exit::Success)
}

/// `stop ID`: 200 when stopped, 202 while it is still stopping; an execution that had
/// already ended is the API's 409.
pub fn stop(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let reply = ctx
        .client
        .send(Request::post(&["v1", "executions", id, "stop"]))?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&render::execution_brief(&reply.body))?;
        if reply.status == 202 {
            eprintln!("the stop is recorded; the execution has not finished stopping yet");
        }
    }
    Ok(Exit::Success)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        list: ListArgs,
    }

    #[derive(Parser)]
    struct InvokeCli {
        #[command(flatten)]
        invoke: InvokeArgs,
    }

    #[test]
    fn a_delayed_invoke_takes_a_delay_or_a_start_time_not_both() {
        let ok: [(&[&str], Option<f64>, Option<&str>); 3] = [
            (&["f"], None, None),
            (&["f", "--delay", "1.5"], Some(1.5), None),
            (
                &["f", "{}", "--start-at", "2026-01-31T09:30:00Z"],
                None,
                Some("2026-01-31T09:30:00Z"),
            ),
        ];
        for (args, delay, start_at) in ok {
            let a = InvokeCli::try_parse_from([&["invoke"][..], args].concat())
                .unwrap_or_else(|e| panic!("{args:?}: {e}"))
                .invoke;
            assert_eq!(
                (a.delay, a.start_at.as_deref()),
                (delay, start_at),
                "{args:?}"
            );
        }
        let bad: [(&[&str], &str); 3] = [
            (&["f", "--delay", "-1"], "is not a number of seconds"),
            (&["f", "--start-at", "noon"], "is not an RFC 3339 time"),
            (
                &["f", "--delay", "1", "--start-at", "2026-01-31T09:30:00Z"],
                "cannot be used with",
            ),
        ];
        for (args, want) in bad {
            let e = InvokeCli::try_parse_from([&["invoke"][..], args].concat())
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"))
                .to_string();
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }

    fn parse(args: &[&str]) -> Result<ListArgs, String> {
        let mut argv = vec!["executions"];
        argv.extend_from_slice(args);
        Cli::try_parse_from(argv)
            .map(|c| c.list)
            .map_err(|e| e.to_string())
    }

    /// The dead-letter filters: what each line sends, or the usage error it is.
    #[test]
    fn the_dead_letter_filters_parse_or_are_refused_while_parsing() {
        type Sent<'a> = (
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
            Option<&'a str>,
        );
        let ok: [(&[&str], Sent); 6] = [
            (&[], (None, None, None, None)),
            (&["--status", "failed"], (Some("failed"), None, None, None)),
            (
                &["--status", "timed_out", "--error-type", "Runtime.LoadError"],
                (Some("timed_out"), Some("Runtime.LoadError"), None, None),
            ),
            (
                &["--ended-after", "2026-01-31T09:30:00Z"],
                (None, None, Some("2026-01-31T09:30:00Z"), None),
            ),
            (
                &["--ended-before=2026-01-31T09:30:00.250+02:00"],
                (None, None, None, Some("2026-01-31T09:30:00.250+02:00")),
            ),
            (
                &[
                    "--status",
                    "failed",
                    "--error-type",
                    "X",
                    "--ended-after",
                    "2026-01-01T00:00:00Z",
                    "--ended-before",
                    "2026-02-01T00:00:00Z",
                ],
                (
                    Some("failed"),
                    Some("X"),
                    Some("2026-01-01T00:00:00Z"),
                    Some("2026-02-01T00:00:00Z"),
                ),
            ),
        ];
        for (args, want) in ok {
            let a = parse(args).unwrap_or_else(|e| panic!("{args:?}: {e}"));
            let got = (
                a.status.as_deref(),
                a.error_type.as_deref(),
                a.ended_after.as_deref(),
                a.ended_before.as_deref(),
            );
            assert_eq!(got, want, "{args:?}");
        }
        let bad: [(&[&str], &str); 5] = [
            (&["--status", "dead"], "invalid value 'dead'"),
            (&["--ended-after", "yesterday"], "is not an RFC 3339 time"),
            (&["--ended-before", "2026-01-31"], "is not an RFC 3339 time"),
            (
                &["--ended-after", "2026-01-31T09:30:00"],
                "is not an RFC 3339 time",
            ),
            (&["--error-type"], "a value is required"),
        ];
        for (args, want) in bad {
            let e = parse(args)
                .err()
                .unwrap_or_else(|| panic!("{args:?} parsed"));
            assert!(e.contains(want), "{args:?}: {e}");
        }
    }
}
