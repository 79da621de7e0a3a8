//! `schedules create|list|get|delete|pause|resume|trigger`: the tenant's cron schedules
//! over HTTP (`/v1/schedules`), with their renderings. `create` replaces a schedule of the
//! same name; `pause` and `resume` are `PATCH {"paused": ...}`.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Request;
use super::input::json_arg;
use super::render::{cell_json, field};
use super::table::{key_values, truncate, Table};
use super::{show, Ctx, Error, Exit};

#[derive(Subcommand)]
pub enum Command {
    /// Create a schedule, or replace the one of that name.
    Create(CreateArgs),
    /// List the tenant's schedules.
    List,
    /// Show a schedule, its next fire times and its latest firings.
    Get {
        /// The schedule's name.
        name: String,
    },
    /// Delete a schedule (its executions stay).
    Delete {
        /// The schedule's name.
        name: String,
    },
    /// Stop firing from the cron (a trigger still fires).
    Pause {
        /// The schedule's name.
        name: String,
    },
    /// Fire again from the next fire time (what was missed while paused is not caught up).
    Resume {
        /// The schedule's name.
        name: String,
    },
    /// Fire now, once.
    Trigger {
        /// The schedule's name.
        name: String,
    },
}

#[derive(Args)]
pub struct CreateArgs {
    /// The schedule's name.
    name: String,
    /// The function each firing invokes (its latest version).
    #[arg(long)]
    function: String,
    /// 5 fields (minute hour day month weekday), or 6 with seconds first: `* * * * * *`
    /// fires every second.
    #[arg(long)]
    cron: String,
    /// IANA time zone the cron is read in (default UTC).
    #[arg(long)]
    timezone: Option<String>,
    /// Each firing's input: JSON inline, @file, or - for stdin (default null).
    #[arg(long)]
    input: Option<String>,
    /// A firing while the previous execution runs: skip it, allow it, or buffer_one (fire
    /// once when it ends).
    #[arg(long, default_value = "skip", value_parser = ["skip", "allow", "buffer_one"])]
    overlap: String,
    /// Fire times missed while the host was down: none, latest (once) or all (at most 100).
    #[arg(long = "catch-up", default_value = "none", value_parser = ["none", "latest", "all"])]
    catch_up: String,
    /// Create it paused.
    #[arg(long)]
    paused: bool,
}

/// The body of `PUT /v1/schedules/{name}`.
fn create_body(args: &CreateArgs) -> Result<Value, Error> {
    let input: Value = serde_json::from_str(&json_arg(args.input.as_deref(), "input")?)
        .expect("json_arg checked it");
    let mut body = json!({
        "function": args.function,
        "cron": args.cron,
        "input": input,
        "overlap": args.overlap,
        "catch_up": args.catch_up,
        "paused": args.paused,
    });
    if let Some(tz) = &args.timezone {
        body["timezone"] = json!(tz);
    }
    Ok(body)
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Exit, Error> {
    match command {
        Command::Create(args) => {
            let body = create_body(&args)?.to_string();
            let path = ["v1", "schedules", args.name.as_str()];
            let reply = ctx
                .client
                .send(Request::new(Method::PUT, &path).json(body))?;
            show(ctx, &reply.text, || {
                format!("saved schedule {}\n{}", args.name, schedule(&reply.body))
            })
        }
        Command::List => {
            let reply = ctx.client.send(Request::get(&["v1", "schedules"]))?;
            let text = match reply.array("schedules")? {
                all if all.is_empty() => "no schedules\n".to_string(),
                all => schedules_table(all),
            };
            show(ctx, &reply.text, || text.clone())
        }
        Command::Get { name } => {
            let reply = ctx.client.send(Request::get(&["v1", "schedules", &name]))?;
            show(ctx, &reply.text, || schedule(&reply.body))
        }
        Command::Delete { name } => {
            ctx.client
                .send(Request::new(Method::DELETE, &["v1", "schedules", &name]))?;
            if !ctx.json {
                ctx.print(&format!("deleted schedule {name}\n"))?;
            }
            Ok(Exit::Success)
        }
        Command::Pause { name } => set_paused(ctx, &name, true),
        Command::Resume { name } => set_paused(ctx, &name, false),
        Command::Trigger { name } => {
            let path = ["v1", "schedules", name.as_str(), "trigger"];
            let reply = ctx.client.send(Request::post(&path))?;
            show(ctx, &reply.text, || {
                format!(
                    "fired schedule {name}: execution {}\n",
                    field(&reply.body, "execution_id")
                )
            })
        }
    }
}

fn set_paused(ctx: &Ctx, name: &str, paused: bool) -> Result<Exit, Error> {
    let path = ["v1", "schedules", name];
    let body = json!({ "paused": paused }).to_string();
    let reply = ctx
        .client
        .send(Request::new(Method::PATCH, &path).json(body))?;
    let done = if paused { "paused" } else { "resumed" };
    show(ctx, &reply.text, || {
        format!("{done} schedule {name}\n{}", schedule(&reply.body))
    })
}

fn state(s: &Value) -> String {
    if s["paused"] == true {
        "paused".into()
    } else {
        "active".into()
    }
}

fn schedules_table(all: &[Value]) -> String {
    let mut t = Table::new(&[
        "NAME",
        "STATE",
        "FUNCTION",
        "CRON",
        "TIMEZONE",
        "NEXT_FIRE",
        "LAST_ERROR",
    ]);
    for s in all {
        t.push(vec![
            field(s, "name"),
            state(s),
            field(s, "function"),
            field(s, "cron"),
            field(s, "timezone"),
            field(s, "next_fire_at"),
            truncate(&field(s, "last_error"), 40),
        ]);
    }
    t.render()
}

fn schedule(s: &Value) -> String {
    let mut pairs = vec![
        ("name", field(s, "name")),
        ("state", state(s)),
        ("function", field(s, "function")),
        ("cron", field(s, "cron")),
        ("timezone", field(s, "timezone")),
        ("input", cell_json(&s["input"])),
        ("overlap", field(s, "overlap")),
        ("catch_up", field(s, "catch_up")),
        ("created_at", field(s, "created_at")),
        ("updated_at", field(s, "updated_at")),
    ];
    for (key, label) in [
        ("buffered_fire_at", "buffered"),
        ("last_error", "last_error"),
        ("last_error_at", "last_error_at"),
    ] {
        let v = field(s, key);
        if !v.is_empty() {
            pairs.push((label, v));
        }
    }
    let mut out = key_values(&pairs);
    if let Some(next) = s["next_fire_times"].as_array().filter(|n| !n.is_empty()) {
        out.push_str("\nnext fire times:\n");
        for t in next {
            out.push_str(&format!("  {}\n", t.as_str().unwrap_or("")));
        }
    }
    if let Some(firings) = s["firings"].as_array().filter(|f| !f.is_empty()) {
        out.push('\n');
        out.push_str(&firings_table(firings));
    }
    out
}

fn firings_table(firings: &[Value]) -> String {
    let mut t = Table::new(&["FIRE_TIME", "RESULT", "EXECUTION", "HOW", "NOTE"]);
    for f in firings {
        let how = match (f["manual"] == true, f["missed"] == true) {
            (true, _) => "trigger",
            (false, true) => "catch-up",
            (false, false) => "cron",
        };
        t.push(vec![
            field(f, "fire_time"),
            field(f, "result"),
            field(f, "execution_id"),
            how.to_string(),
            truncate(&field(f, "note"), 60),
        ]);
    }
    t.render()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: CreateArgs,
    }

    #[test]
    fn create_bodies_from_arguments() {
        let parse = |args: &[&str]| {
            let mut argv = vec!["schedules-create"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv)
                .map_err(|e| e.to_string())
                .and_then(|c| create_body(&c.args).map_err(|e| e.to_string()))
        };
        assert_eq!(
            parse(&["nightly", "--function", "f", "--cron", "0 3 * * *"]).unwrap(),
            json!({"function": "f", "cron": "0 3 * * *", "input": null, "overlap": "skip",
                   "catch_up": "none", "paused": false})
        );
        assert_eq!(
            parse(&[
                "s",
                "--function",
                "f",
                "--cron",
                "* * * * * *",
                "--timezone",
                "Europe/Berlin",
                "--input",
                "{\"a\":1}",
                "--overlap",
                "buffer_one",
                "--catch-up",
                "all",
                "--paused"
            ])
            .unwrap(),
            json!({"function": "f", "cron": "* * * * * *", "timezone": "Europe/Berlin",
                   "input": {"a": 1}, "overlap": "buffer_one", "catch_up": "all", "paused": true})
        );
        assert!(parse(&["s", "--function", "f", "--cron", "x", "--overlap", "queue"]).is_err());
        assert!(parse(&["s", "--function", "f", "--cron", "x", "--input", "{"]).is_err());
        assert!(parse(&["s", "--cron", "x"]).is_err());
    }
}
