//! An approval workflow: hand a request to an approver through a callback and wait
//! (suspended, for as long as it takes or until the timeout) for the decision.
//!
//! Input: `{request: <any JSON>, notify_url?: string, timeout_seconds?: number}`. When
//! `notify_url` is given, the submitter step POSTs `{"callback_id", "request"}` to it; the
//! approver completes the callback with `POST /v1/callbacks/{callback_id}/succeed` (any JSON)
//! or `/fail`. Output: `{"request": .., "approval": <the callback's result>}`.

use std::time::Duration;

use durable_sdk::{http, CallbackConfig, Context, Error, RetryStrategy, WaitForCallbackConfig};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

#[derive(Deserialize)]
struct Input {
    #[serde(default)]
    request: Value,
    notify_url: Option<String>,
    timeout_seconds: Option<u64>,
}

#[derive(Serialize)]
struct Output {
    request: Value,
    approval: Value,
}

fn handler(ctx: &mut Context, input: Input) -> Result<Output, Error> {
    let config = WaitForCallbackConfig {
        callback: CallbackConfig {
            timeout: input.timeout_seconds.map(Duration::from_secs),
            heartbeat_timeout: None,
        },
        // A notification that fails is retried twice, a second apart.
        submitter_retry: RetryStrategy::fixed(3, Duration::from_secs(1)),
    };

    // A failed or timed-out callback fails the execution with that error, as is.
    let approval: Value = ctx.wait_for_callback_with("approval", config, |callback_id, step| {
        let Some(url) = &input.notify_url else {
            step.logger().info(format!(
                "approval requested: complete callback {callback_id} to decide"
            ));
            return Ok(());
        };
        let body = json!({ "callback_id": callback_id, "request": input.request });
        let response = http::post_json(url, &body)?;
        if !response.is_success() {
            return Err(Error::new(
                "NotifyError",
                format!("POST {url} returned status {}", response.status),
            ));
        }
        step.logger()
            .info(format!("approver notified: callback {callback_id}"));
        Ok(())
    })?;

    Ok(Output {
        request: input.request,
        approval,
    })
}

durable_sdk::export_handler!(handler);

// The local test runner runs natively only (`cargo test -p <crate>`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
