//! `durable-host redrive`, `fork` and `jobs`: send failed work back to running (one
//! execution, or every one a filter matches, as a bulk job), start a new execution from a
//! checkpoint of one, and follow bulk jobs.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{Reply, Request};
use super::input::json_arg;
use super::render::field;
use super::table::{key_values, Table};
use super::{Ctx, Error, Exit};

/// How often `--wait` asks for a job's progress.
const POLL: Duration = Duration::from_millis(500);

#[derive(Args)]
pub struct RedriveArgs {
    /// The execution to redrive. Without it: a bulk redrive of the executions that
    /// --function and --status match (a durable job; prints its id).
    #[arg(required_unless_present = "function")]
    pub id: Option<String>,
    /// The version to run on: pinned (the one it ran on; the default), latest, or a number.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// Bulk: the function whose executions to redrive.
    #[arg(long, conflicts_with = "id", requires = "status", value_name = "NAME")]
    pub function: Option<String>,
    /// Bulk: the status they ended in.
    #[arg(long, conflicts_with = "id", value_parser = ["failed", "timed_out", "stopped"])]
    pub status: Option<String>,
    /// Bulk: only those whose error has this type.
    #[arg(long, conflicts_with = "id", value_name = "TYPE")]
    pub error_type: Option<String>,
    /// Bulk: only those that ended at or after this time (RFC 3339).
    #[arg(long, conflicts_with = "id", value_name = "TIME")]
    pub ended_after: Option<String>,
    /// Bulk: only those that ended before this time (RFC 3339).
    #[arg(long, conflicts_with = "id", value_name = "TIME")]
    pub ended_before: Option<String>,
    /// Bulk: at most this many redrives a second.
    #[arg(long, conflicts_with = "id", value_name = "N")]
    pub per_second: Option<f64>,
    /// Bulk: follow the job's progress until it ends.
    #[arg(long, conflicts_with = "id")]
    pub wait: bool,
}

#[derive(Args)]
pub struct ForkArgs {
    /// The execution to fork.
    pub id: String,
    /// The operation id to run again from (e.g. 2, 3.1); default: the one that failed.
    #[arg(long = "from", value_name = "OP")]
    pub from_operation: Option<String>,
    /// The version to run on: pinned (default), latest, or a number.
    #[arg(long, value_name = "VERSION")]
    pub version: Option<String>,
    /// The fork's input (JSON, @FILE or - for stdin); default: the original's.
    #[arg(long, value_name = "JSON")]
    pub input: Option<String>,
}

#[derive(Subcommand)]
pub enum JobsCommand {
    /// List the tenant's bulk redrive jobs, newest first.
    List,
    /// Show a job and its progress.
    Get {
        /// The job's id (job_...).
        id: String,
        /// Follow its progress until it ends.
        #[arg(long)]
        wait: bool,
    },
}

/// `--version` as the API takes it: a number, or `pinned` / `latest`.
fn version(v: &Option<String>) -> Option<Value> {
    v.as_deref()
        .map(|s| s.parse::<u32>().map_or_else(|_| json!(s), |n| json!(n)))
}

fn body(fields: Vec<(&str, Option<Value>)>) -> String {
    let map: Map<String, Value> = fields
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_string(), v)))
        .collect();
    Value::Object(map).to_string()
}

/// The reply as it came (`--json`) or rendered by `view`.
fn show(ctx: &Ctx, reply: &Reply, view: fn(&Value) -> String) -> Result<Exit, Error> {
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        ctx.print(&view(&reply.body))?;
    }
    Ok(Exit::Success)
}

fn redriven(v: &Value) -> String {
    key_values(&[
        ("execution_id", field(v, "execution_id")),
        ("status", field(v, "status")),
        ("version", field(v, "version")),
        ("redrive_count", field(v, "redrive_count")),
        ("forked_from", field(v, "forked_from")),
    ])
}

pub fn redrive(ctx: &Ctx, a: RedriveArgs) -> Result<Exit, Error> {
    let Some(id) = &a.id else {
        return bulk(ctx, a);
    };
    let text = body(vec![("version", version(&a.version))]);
    let reply = ctx
        .client
        .send(Request::post(&["v1", "executions", id, "redrive"]).json(text))?;
    show(ctx, &reply, redriven)
}

fn bulk(ctx: &Ctx, a: RedriveArgs) -> Result<Exit, Error> {
    let text = body(vec![
        ("function", a.function.map(Value::from)),
        ("status", a.status.map(Value::from)),
        ("error_type", a.error_type.map(Value::from)),
        ("ended_after", a.ended_after.map(Value::from)),
        ("ended_before", a.ended_before.map(Value::from)),
        ("version", version(&a.version)),
        ("per_second", a.per_second.map(Value::from)),
    ]);
    let reply = ctx
        .client
        .send(Request::post(&["v1", "executions", "redrive"]).json(text))?;
    let id = field(&reply.body, "job_id");
    if !a.wait {
        return show(ctx, &reply, job);
    }
    follow(ctx, &id)
}

/// Poll a job until it ends, with its progress on stderr; print it at the end.
fn follow(ctx: &Ctx, id: &str) -> Result<Exit, Error> {
    let mut last = String::new();
    loop {
        let reply = ctx.client.send(Request::get(&["v1", "jobs", id]))?;
        let j = &reply.body;
        let progress = format!(
            "{}: {} of {} redriven, {} failed",
            field(j, "job_id"),
            field(j, "done"),
            field(j, "matched"),
            field(j, "failed")
        );
        if progress != last && !ctx.json {
            eprintln!("{progress}");
            last = progress;
        }
        if j["status"] != "running" {
            return show(ctx, &reply, job);
        }
        std::thread::sleep(POLL);
    }
}

fn job(j: &Value) -> String {
    let f = &j["filter"];
    let mut pairs = vec![
        ("job_id", field(j, "job_id")),
        ("status", field(j, "status")),
        ("function", field(f, "function")),
        ("matched_status", field(f, "status")),
        ("error_type", field(f, "error_type")),
        ("ended_after", field(f, "ended_after")),
        ("ended_before", field(f, "ended_before")),
        ("version", field(j, "version")),
        ("matched", field(j, "matched")),
        ("done", field(j, "done")),
        ("failed", field(j, "failed")),
        ("created_at", field(j, "created_at")),
        ("finished_at", field(j, "finished_at")),
    ];
    let errors: Vec<String> = j["errors"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| format!("{}: {}", field(e, "execution_id"), field(e, "message")))
                .collect()
        })
        .unwrap_or_default();
    if !errors.is_empty() {
        pairs.push(("errors", errors.join("\n")));
    }
    key_values(&pairs)
}

pub fn fork(ctx: &Ctx, a: ForkArgs) -> Result<Exit, Error> {
    let input = match a.input.as_deref() {
        None => None,
        Some(arg) => {
            let text = json_arg(Some(arg), "input")?;
            Some(serde_json::from_str::<Value>(&text).map_err(|e| Error::Usage(e.to_string()))?)
        }
    };
    let text = body(vec![
        ("from_operation", a.from_operation.map(Value::from)),
        ("version", version(&a.version)),
        ("input", input),
    ]);
    let reply = ctx
        .client
        .send(Request::post(&["v1", "executions", &a.id, "fork"]).json(text))?;
    show(ctx, &reply, redriven)
}

pub fn jobs(ctx: &Ctx, c: JobsCommand) -> Result<Exit, Error> {
    match c {
        JobsCommand::Get { id, wait: true } => follow(ctx, &id),
        JobsCommand::Get { id, wait: false } => {
            let reply = ctx.client.send(Request::get(&["v1", "jobs", &id]))?;
            show(ctx, &reply, job)
        }
        JobsCommand::List => {
            let reply = ctx.client.send(Request::get(&["v1", "jobs"]))?;
            if ctx.json {
                ctx.print_json(&reply.text)?;
                return Ok(Exit::Success);
            }
            let mut t = Table::new(&[
                "JOB", "STATUS", "FUNCTION", "MATCHED", "DONE", "FAILED", "CREATED",
            ]);
            for j in reply.array("jobs")? {
                t.push(vec![
                    field(j, "job_id"),
                    field(j, "status"),
                    field(&j["filter"], "function"),
                    field(j, "matched"),
                    field(j, "done"),
                    field(j, "failed"),
                    field(j, "created_at"),
                ]);
            }
            ctx.print(&t.render())?;
            Ok(Exit::Success)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        redrive: RedriveArgs,
    }

    #[test]
    fn a_redrive_names_an_execution_or_a_bulk_filter_not_both() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["redrive"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|c| c.redrive)
        };
        let one = parse(&["01ARZ3NDEKTSV4RRFFQ69G5FAV", "--version", "latest"]).unwrap();
        assert_eq!(version(&one.version), Some(json!("latest")));
        let bulk = parse(&["--function", "f", "--status", "failed", "--version", "3"]).unwrap();
        assert_eq!((bulk.id, version(&bulk.version)), (None, Some(json!(3))));
        for bad in [
            &[][..],
            &["--function", "f"],
            &["ID", "--function", "f", "--status", "failed"],
            &["ID", "--wait"],
            &["--function", "f", "--status", "running"],
        ] {
            assert!(parse(bad).is_err(), "{bad:?}");
        }
    }
}
