//! `webhooks listen`: a local webhook receiver for development, as payment providers ship
//! one in their CLIs. It answers every POST, checks the Standard Webhooks signature with
//! the webhook's secret (when given), prints one line per message (the body with `--json`)
//! and answers 204, or 401 when the signature does not verify; `--answer CODE` makes it
//! answer another status instead, to watch retries (500) or a disabled webhook (410).
//!
//! The one client command that serves: it runs its own single-threaded tokio runtime for
//! the time it listens. The signature check is the host's own pure function
//! (`webhooks::sign::verify`), so what this accepts is exactly what the host signs.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use clap::Args;
use durable_host::webhooks::sign;
use serde_json::Value;
use tokio::sync::Notify;

use super::render::field;
use super::{Error, Exit};

#[derive(Args)]
pub struct ListenArgs {
    /// The address to listen on (e.g. 127.0.0.1:9000; port 0 picks a free one, printed).
    #[arg(long, default_value = "127.0.0.1:9000", value_name = "ADDR")]
    listen: SocketAddr,
    /// The webhook's signing secret (whsec_..., printed by `webhooks create`); also
    /// DURABLE_WEBHOOK_SECRET. Without it, signatures are not checked (and the line says so).
    #[arg(long, env = "DURABLE_WEBHOOK_SECRET", value_name = "SECRET")]
    secret: Option<String>,
    /// Answer every message with this status instead (e.g. 500: watch the retries; 410:
    /// watch the host disable the webhook).
    #[arg(long, value_name = "CODE", value_parser = clap::value_parser!(u16).range(200..=599))]
    answer: Option<u16>,
    /// Exit after this many messages that verified (or, without a secret, were received).
    #[arg(long, value_name = "N")]
    count: Option<u64>,
}

struct Receiver {
    secret: Option<Vec<u8>>,
    answer: Option<StatusCode>,
    json: bool,
    count: Option<u64>,
    accepted: AtomicU64,
    done: Notify,
}

pub fn listen(args: ListenArgs, json: bool) -> Result<Exit, Error> {
    let secret = args
        .secret
        .as_deref()
        .map(|s| sign::parse_secret(s.trim()))
        .transpose()
        .map_err(|e| Error::Usage(format!("--secret: {e}")))?;
    let answer = args
        .answer
        .map(|c| StatusCode::from_u16(c).expect("clap checked the range"));
    let receiver = Arc::new(Receiver {
        secret,
        answer,
        json,
        count: args.count,
        accepted: AtomicU64::new(0),
        done: Notify::new(),
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| Error::Http(format!("cannot start the receiver: {e}")))?;
    runtime.block_on(serve(args.listen, receiver))?;
    Ok(Exit::Success)
}

async fn serve(addr: SocketAddr, receiver: Arc<Receiver>) -> Result<(), Error> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    let local = listener
        .local_addr()
        .map_err(|e| Error::Http(format!("listening on {addr}: {e}")))?;
    let checking = if receiver.secret.is_some() {
        "checking signatures"
    } else {
        "NOT checking signatures (no --secret)"
    };
    eprintln!("listening on http://{local}/ for webhook messages, {checking}; Ctrl-C stops");
    let r = receiver.clone();
    let app = axum::Router::new().fallback(axum::routing::post(
        move |headers: HeaderMap, body: Bytes| {
            let r = r.clone();
            async move { r.receive(&headers, &body) }
        },
    ));
    let stop = async move {
        tokio::select! {
            _ = receiver.done.notified() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    };
    axum::serve(listener, app)
        .with_graceful_shutdown(stop)
        .await
        .map_err(|e| Error::Http(format!("serving on {local}: {e}")))
}

impl Receiver {
    fn receive(&self, headers: &HeaderMap, body: &[u8]) -> StatusCode {
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
        };
        let text = String::from_utf8_lossy(body);
        let verdict = match &self.secret {
            None => Ok("unsigned check skipped"),
            Some(secret) => sign::verify(
                secret,
                header("webhook-id"),
                header("webhook-timestamp"),
                header("webhook-signature"),
                &text,
                now_secs(),
            )
            .map(|()| "signature ok"),
        };
        if self.json {
            println!("{}", text.trim_end());
        } else {
            println!("{}", summary(header("webhook-id"), &text, &verdict));
        }
        if verdict.is_err() {
            return StatusCode::UNAUTHORIZED;
        }
        let n = self.accepted.fetch_add(1, Ordering::SeqCst) + 1;
        if self.count.is_some_and(|count| n >= count) {
            self.done.notify_one();
        }
        self.answer.unwrap_or(StatusCode::NO_CONTENT)
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// One line: the event, the execution, its function and status, its error, the verdict.
fn summary(id: &str, body: &str, verdict: &Result<&str, sign::VerifyError>) -> String {
    let verdict = match verdict {
        Ok(v) => (*v).to_string(),
        Err(e) => format!("REFUSED: {e}"),
    };
    let msg = match serde_json::from_str::<Value>(body) {
        Ok(msg) if msg.get("type").is_some() || msg.get("text").is_some() => msg,
        Ok(_) => {
            return format!(
                "{id} (JSON that is not a webhook message, {} bytes) {verdict}",
                body.len()
            )
        }
        Err(_) => {
            return format!(
                "{id} (a body that is not JSON, {} bytes) {verdict}",
                body.len()
            )
        }
    };
    // A Slack-format message is `{"text": ...}`.
    if let Some(text) = msg.get("text").and_then(Value::as_str) {
        return format!("slack: {text}  [{verdict}]");
    }
    let data = &msg["data"];
    let mut line = format!(
        "{} {} {} {}",
        field(&msg, "type"),
        field(data, "execution_id"),
        field(data, "function"),
        field(data, "status"),
    );
    if let Some(err) = data.get("error").filter(|e| !e.is_null()) {
        line.push_str(&format!(
            " {}: {}",
            field(err, "error_type"),
            field(err, "error_message")
        ));
    }
    line.push_str(&format!("  [{verdict}]"));
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summarises_each_kind_of_message() {
        let failed = r#"{"type":"execution.failed","data":{"execution_id":"01K","function":"f","status":"failed","error":{"error_type":"E","error_message":"boom"}}}"#;
        let cases = [
            (failed, Ok("signature ok"), "execution.failed 01K f failed E: boom  [signature ok]"),
            (
                r#"{"text":"f failed"}"#,
                Ok("signature ok"),
                "slack: f failed  [signature ok]",
            ),
            (
                "<html>",
                Err(sign::VerifyError::NoMatch),
                "m (a body that is not JSON, 6 bytes) REFUSED: no v1 signature in webhook-signature matches",
            ),
        ];
        for (body, verdict, want) in cases {
            assert_eq!(summary("m", body, &verdict), want);
        }
    }
}
