//! The hello-world durable function from the AWS Lambda Durable Functions launch sample:
//! step "Step #1" logs, an unnamed one-second wait, a replay-aware log line, step "Step #2"
//! returns the greeting, and the output is an API-Gateway-style response. Input is ignored.

use std::time::Duration;

use durable_sdk::{Context, Error};
use serde::de::IgnoredAny;
use serde::Serialize;

/// The function's output: `{"statusCode": 200, "body": "\"Hello from Durable Lambda!\""}`.
#[derive(Serialize)]
struct Response {
    #[serde(rename = "statusCode")]
    status_code: u16,
    /// The message as JSON text.
    body: String,
}

fn handler(ctx: &mut Context, _event: IgnoredAny) -> Result<Response, Error> {
    ctx.step("Step #1", |step| {
        step.logger().info("Hello from step #1");
        Ok(())
    })?;

    // Pause for 1 second: the guest is unloaded meanwhile and resumed afterwards.
    ctx.wait(None, Duration::from_secs(1));

    // The context logger is replay aware: this line is recorded once.
    ctx.logger().info("Waited for 1 second");

    let message: String = ctx.step("Step #2", |_| Ok("Hello from Durable Lambda!".to_string()))?;

    Ok(Response {
        status_code: 200,
        body: serde_json::to_string(&message)?,
    })
}

durable_sdk::export_handler!(handler);

// The local test runner runs natively only (`cargo test -p <crate>`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
