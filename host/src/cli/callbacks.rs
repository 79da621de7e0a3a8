//! `callback succeed|fail|heartbeat ID`: answering a callback an execution waits for.

use clap::Subcommand;
use serde_json::{Map, Value};

use super::client::Request;
use super::{input, render, Ctx, Error, Exit};

#[derive(Subcommand)]
pub enum Command {
    /// Complete the callback with a result.
    Succeed {
        /// The callback id (`details.callback_id` of its `CallbackStarted` event).
        id: String,
        /// The result: JSON, `@path` for a file, or `-` for stdin (default: null).
        #[arg(allow_hyphen_values = true)]
        result: Option<String>,
    },
    /// Complete the callback with an error.
    Fail {
        /// The callback id.
        id: String,
        /// The error type (the server's default is `CallbackFailed`).
        #[arg(long = "type", value_name = "TYPE")]
        error_type: Option<String>,
        /// The error message.
        #[arg(long = "message", value_name = "MESSAGE")]
        error_message: Option<String>,
        /// Error data: JSON, `@path` for a file, or `-` for stdin.
        #[arg(long = "data", value_name = "JSON", allow_hyphen_values = true)]
        error_data: Option<String>,
    },
    /// Report that the work behind the callback is alive (pushes out its heartbeat timeout).
    Heartbeat {
        /// The callback id.
        id: String,
    },
}

pub fn run(ctx: &Ctx, command: Command) -> Result<Exit, Error> {
    let (id, action, body) = match command {
        Command::Succeed { id, result } => {
            let body = input::json_arg(result.as_deref(), "callback result")?;
            (id, "succeed", Some(body))
        }
        Command::Fail {
            id,
            error_type,
            error_message,
            error_data,
        } => {
            let body = failure(error_type, error_message, error_data.as_deref())?;
            (id, "fail", Some(body))
        }
        Command::Heartbeat { id } => (id, "heartbeat", None),
    };
    let path = ["v1", "callbacks", id.as_str(), action];
    let mut request = Request::post(&path);
    if let Some(body) = body {
        request = request.json(body);
    }
    let reply = ctx.client.send(request)?;
    if ctx.json {
        ctx.print_json(&reply.text)?;
    } else {
        let status = render::field(&reply.body, "status");
        ctx.print(&format!("callback {id} {status}\n"))?;
    }
    Ok(Exit::Success)
}

/// The body of `fail`: `{error_type?, error_message?, error_data?}`, the absent ones left
/// to the server's defaults.
fn failure(
    error_type: Option<String>,
    error_message: Option<String>,
    error_data: Option<&str>,
) -> Result<String, Error> {
    let mut body = Map::new();
    if let Some(t) = error_type {
        body.insert("error_type".into(), Value::String(t));
    }
    if let Some(m) = error_message {
        body.insert("error_message".into(), Value::String(m));
    }
    if let Some(d) = error_data {
        let text = input::json_arg(Some(d), "error data")?;
        let data = serde_json::from_str(&text)
            .map_err(|e| Error::Usage(format!("the error data is not valid JSON: {e}")))?;
        body.insert("error_data".into(), data);
    }
    Ok(Value::Object(body).to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_body_has_only_what_was_given() {
        assert_eq!(failure(None, None, None).unwrap(), "{}");
        assert_eq!(
            failure(
                Some("Rejected".into()),
                Some("no".into()),
                Some(r#"{"by": "ann"}"#)
            )
            .unwrap(),
            r#"{"error_data":{"by":"ann"},"error_message":"no","error_type":"Rejected"}"#
        );
        assert!(failure(None, None, Some("{")).is_err());
    }
}
