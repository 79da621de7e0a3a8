//! `webhooks create|list|get|delete|deliveries|retry|test` (and `listen`, in `listen.rs`): the tenant's webhooks over
//! HTTP (`/v1/webhooks`), with their renderings. The secret is printed by `create` only,
//! the one answer that holds it.

use clap::{Args, Subcommand};
use reqwest::Method;
use serde_json::{json, Value};

use super::client::Request;
use super::render::field;
use super::table::{key_values, truncate, Table};
use super::{show, Ctx, Error, Exit};

/// The events a webhook may receive (DESIGN.md section 9).
pub const EVENTS: [&str; 5] = [
    "execution.succeeded",
    "execution.failed",
    "execution.timed_out",
    "execution.stopped",
    "execution.redriven",
];

#[derive(Subcommand)]
pub enum Command {
    /// Create a webhook and print its signing secret: the only time it is shown.
    Create(CreateArgs),
    /// List the tenant's webhooks.
    List,
    /// Show one webhook.
    Get {
        /// The webhook's id (wh_...).
        id: String,
    },
    /// Delete a webhook with its deliveries (pending ones are not sent).
    Delete {
        /// The webhook's id.
        id: String,
    },
    /// List a webhook's deliveries, newest first.
    Deliveries {
        /// The webhook's id.
        id: String,
        /// Only deliveries in this status.
        #[arg(long, value_parser = ["pending", "delivered", "failed"])]
        status: Option<String>,
        /// At most this many (1-1000).
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1000))]
        limit: Option<u64>,
    },
    /// Send a delivery (failed or delivered) once more, now.
    Retry {
        /// The webhook's id.
        id: String,
        /// The delivery's id (msg_...).
        delivery: String,
    },
    /// Send a `webhook.test` event to the webhook.
    Test {
        /// The webhook's id.
        id: String,
    },
    /// Receive webhook messages on this machine and check their signatures (development).
    Listen(super::listen::ListenArgs),
}

#[derive(Args)]
pub struct CreateArgs {
    /// Where to POST: http:// or https://, in the tenant's outbound allowlist.
    #[arg(long)]
    url: String,
    /// An event to send (repeatable). Default: execution.failed and execution.timed_out.
    #[arg(long = "event", value_name = "EVENT", value_parser = clap::builder::PossibleValuesParser::new(EVENTS))]
    events: Vec<String>,
    /// Only executions of this function (repeatable). Default: every function.
    #[arg(long = "function", value_name = "NAME")]
    functions: Vec<String>,
    /// standard (Standard Webhooks, signed) or slack (an incoming-webhook message).
    #[arg(long, default_value = "standard", value_parser = ["standard", "slack"])]
    format: String,
}

/// The body of `POST /v1/webhooks`.
fn create_body(args: &CreateArgs) -> Value {
    let events = if args.events.is_empty() {
        vec![
            "execution.failed".to_string(),
            "execution.timed_out".to_string(),
        ]
    } else {
        args.events.clone()
    };
    let mut body = json!({"url": args.url, "events": events, "format": args.format});
    if !args.functions.is_empty() {
        body["functions"] = json!(args.functions);
    }
    body
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Exit, Error> {
    match command {
        Command::Listen(args) => super::listen::listen(args, ctx.json),
        Command::Create(args) => {
            let reply = ctx
                .client
                .send(Request::post(&["v1", "webhooks"]).json(create_body(&args).to_string()))?;
            show(ctx, &reply.text, || created(&reply.body))
        }
        Command::List => {
            let reply = ctx.client.send(Request::get(&["v1", "webhooks"]))?;
            let text = match reply.array("webhooks")? {
                hooks if hooks.is_empty() => "no webhooks\n".to_string(),
                hooks => webhooks_table(hooks),
            };
            show(ctx, &reply.text, || text.clone())
        }
        Command::Get { id } => {
            let reply = ctx.client.send(Request::get(&["v1", "webhooks", &id]))?;
            show(ctx, &reply.text, || webhook(&reply.body))
        }
        Command::Delete { id } => {
            ctx.client
                .send(Request::new(Method::DELETE, &["v1", "webhooks", &id]))?;
            if !ctx.json {
                ctx.print(&format!("deleted webhook {id}\n"))?;
            }
            Ok(Exit::Success)
        }
        Command::Deliveries { id, status, limit } => {
            let path = ["v1", "webhooks", id.as_str(), "deliveries"];
            let req = Request::get(&path)
                .query("status", status)
                .query("limit", limit.map(|n| n.to_string()));
            let reply = ctx.client.send(req)?;
            let text = match reply.array("deliveries")? {
                ds if ds.is_empty() => format!("webhook {id} has no deliveries\n"),
                ds => deliveries_table(ds),
            };
            show(ctx, &reply.text, || text.clone())
        }
        Command::Retry { id, delivery } => {
            let path = [
                "v1",
                "webhooks",
                id.as_str(),
                "deliveries",
                delivery.as_str(),
                "retry",
            ];
            let reply = ctx.client.send(Request::post(&path))?;
            show(ctx, &reply.text, || {
                format!("delivery {delivery} is pending: one more attempt, now\n")
            })
        }
        Command::Test { id } => {
            let path = ["v1", "webhooks", id.as_str(), "test"];
            let reply = ctx.client.send(Request::post(&path))?;
            show(ctx, &reply.text, || {
                format!(
                    "sent a webhook.test event: delivery {} (see `durable-host webhooks deliveries {id}`)\n",
                    field(&reply.body, "id")
                )
            })
        }
    }
}

fn list_of(v: &Value, key: &str) -> String {
    match v.get(key).and_then(Value::as_array) {
        Some(items) => items
            .iter()
            .map(|i| i.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
            .join(","),
        None => "*".to_string(),
    }
}

fn state(w: &Value) -> String {
    if w["enabled"] == true {
        "enabled".into()
    } else {
        "disabled".into()
    }
}

fn webhooks_table(hooks: &[Value]) -> String {
    let mut t = Table::new(&["ID", "STATE", "FORMAT", "EVENTS", "FUNCTIONS", "URL"]);
    for w in hooks {
        t.push(vec![
            field(w, "id"),
            state(w),
            field(w, "format"),
            list_of(w, "events"),
            list_of(w, "functions"),
            truncate(&field(w, "url"), 60),
        ]);
    }
    t.render()
}

fn webhook(w: &Value) -> String {
    let mut pairs = vec![
        ("id", field(w, "id")),
        ("url", field(w, "url")),
        ("state", state(w)),
        ("format", field(w, "format")),
        ("events", list_of(w, "events")),
        ("functions", list_of(w, "functions")),
        ("created_at", field(w, "created_at")),
        ("updated_at", field(w, "updated_at")),
    ];
    let reason = field(w, "disabled_reason");
    if !reason.is_empty() {
        pairs.push(("disabled_reason", reason));
    }
    key_values(&pairs)
}

fn created(w: &Value) -> String {
    let mut out = format!("created webhook {}\n", field(w, "id"));
    out.push_str(&webhook(w));
    out.push_str(&key_values(&[("secret", field(w, "secret"))]));
    out.push_str(
        "\nThis is the only time the secret is shown. Receivers verify webhook-signature \
         with it (Standard Webhooks: HMAC-SHA256 of \"id.timestamp.body\").\n",
    );
    out
}

fn deliveries_table(ds: &[Value]) -> String {
    let mut t = Table::new(&[
        "ID",
        "EVENT",
        "EXECUTION",
        "STATUS",
        "ATTEMPTS",
        "LAST_CODE",
        "NEXT_ATTEMPT",
        "DELIVERED",
        "LAST_ERROR",
    ]);
    for d in ds {
        t.push(vec![
            field(d, "id"),
            field(d, "event"),
            field(d, "execution_id"),
            field(d, "status"),
            field(d, "attempts"),
            field(d, "last_status_code"),
            field(d, "next_attempt_at"),
            field(d, "delivered_at"),
            truncate(&field(d, "last_error"), 40),
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
            let mut argv = vec!["webhooks-create"];
            argv.extend_from_slice(args);
            Cli::try_parse_from(argv).map(|c| create_body(&c.args))
        };
        assert_eq!(
            parse(&["--url", "http://h:1/x"]).unwrap(),
            json!({"url": "http://h:1/x", "events": ["execution.failed", "execution.timed_out"], "format": "standard"})
        );
        assert_eq!(
            parse(&[
                "--url",
                "u",
                "--event",
                "execution.stopped",
                "--function",
                "f",
                "--format",
                "slack"
            ])
            .unwrap(),
            json!({"url": "u", "events": ["execution.stopped"], "functions": ["f"], "format": "slack"})
        );
        assert!(parse(&["--url", "u", "--event", "execution.exploded"]).is_err());
        assert!(parse(&["--url", "u", "--format", "xml"]).is_err());
    }
}
