//! The user-registration durable function from the AWS Lambda Durable Functions launch blog:
//! validate the input, ask an external API to start a job, poll the job's status with
//! `wait_for_condition` (durable waits in between), then send (here: build) a welcome
//! message.
//!
//! Input: `{username, email, api_base_url, poll_interval_seconds = 5, max_attempts = 10}`.
//! The API answers `POST {api_base_url}/start-job` with `{"job_id": "..."}` and
//! `GET {api_base_url}/check-status/{job_id}` with 200 once the job is done.

use std::time::Duration;

use durable_sdk::{
    http, Context, Error, RetryStrategy, StepConfig, WaitStrategy, MAX_ATTEMPTS_EXCEEDED,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Deserialize)]
struct Input {
    username: Option<String>,
    email: Option<String>,
    api_base_url: String,
    #[serde(default = "default_poll_interval_seconds")]
    poll_interval_seconds: u64,
    #[serde(default = "default_max_attempts")]
    max_attempts: u32,
}

fn default_poll_interval_seconds() -> u64 {
    5
}

fn default_max_attempts() -> u32 {
    10
}

/// The result of step "validate".
#[derive(Serialize, Deserialize)]
struct User {
    username: String,
    email: String,
    status: String,
}

/// The result of step "start-job".
#[derive(Serialize, Deserialize)]
struct Job {
    job_id: String,
}

/// The state of the condition "check-status": the result of its latest check.
#[derive(Serialize, Deserialize)]
struct StatusCheck {
    completed: bool,
    status: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<JobData>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<String>,
}

#[derive(Serialize, Deserialize)]
struct JobData {
    username: String,
    email: String,
    /// The status response's body: its JSON, or its text when it is not JSON.
    body: Value,
}

/// The result of step "welcome".
#[derive(Serialize, Deserialize)]
struct Welcome {
    username: String,
    email: String,
    message: String,
    status: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Output {
    status: String,
    username: String,
    email: String,
    message: String,
    job_result: StatusCheck,
    attempts: u32,
    total_wait_seconds: u64,
}

/// The error type of a start-job response that cannot be used; not worth retrying.
const INVALID_RESPONSE: &str = "InvalidResponse";

fn handler(ctx: &mut Context, input: Input) -> Result<Output, Error> {
    let log = ctx.logger();
    let name = input.username.clone().unwrap_or_default();
    log.info(format!("Starting user registration: {name}"));

    // Step 1: validate the user. A validation error is final: no retry.
    let user: User = ctx.step_with(
        "validate",
        StepConfig::default().retry(RetryStrategy::none()),
        |step| {
            step.logger().info(format!("Validating user: {name}"));
            let username = input.username.as_deref().unwrap_or("").trim();
            let email = input.email.as_deref().unwrap_or("").trim();
            let missing: Vec<&str> = [("username", username), ("email", email)]
                .into_iter()
                .filter(|(_, value)| value.is_empty())
                .map(|(field, _)| field)
                .collect();
            if !missing.is_empty() {
                return Err(Error::new(
                    "ValidationError",
                    format!(
                        "username and email are required; missing: {}",
                        missing.join(", ")
                    ),
                ));
            }
            Ok(User {
                username: username.to_string(),
                email: email.to_string(),
                status: "validated".to_string(),
            })
        },
    )?;
    log.info(format!("Validation complete: {}", to_json(&user)));

    // Step 2: ask the external API to start the job.
    let base = input.api_base_url.trim_end_matches('/').to_string();
    let start = StepConfig::default().retry(
        RetryStrategy::exponential(3, Duration::from_secs(1), 2.0, Duration::from_secs(10))
            .never_retry_on([INVALID_RESPONSE]),
    );
    let job: Job = ctx.step_with("start-job", start, |step| {
        let url = format!("{base}/start-job");
        let body = serde_json::json!({
            "username": user.username,
            "email": user.email,
            "message": "Starting asynchronous processing",
        });
        let response = http::post_json(&url, &body)?;
        step.logger()
            .info(format!("Start request sent: {}", response.status));
        if !response.is_success() {
            return Err(Error::new(
                "StartJobError",
                format!("POST {url} returned status {}", response.status),
            ));
        }
        let reply: Value = response
            .json()
            .map_err(|e| Error::new(INVALID_RESPONSE, e.error_message))?;
        match reply.get("job_id").and_then(Value::as_str) {
            Some(job_id) => Ok(Job {
                job_id: job_id.to_string(),
            }),
            None => Err(Error::new(
                INVALID_RESPONSE,
                format!("POST {url} answered without a \"job_id\" string: {reply}"),
            )),
        }
    })?;
    log.info(format!("Job ID: {} - starting to poll", job.job_id));

    // Step 3: give the job one poll interval, then poll its status with wait_for_condition:
    // each check is a journaled step, each wait between checks unloads the guest.
    //
    // Before this operation existed, the loop was written by hand: `for attempt in
    // 1..=max_attempts { ctx.wait(poll); ctx.step("check-status-{attempt}", ..) }`, one
    // named wait and one named step per attempt (2 x max_attempts operations in history).
    // Now it is one operation, "check-status", whose checks and delays history records
    // as attempts of that operation, and the strategy says when to stop.
    let poll = input.poll_interval_seconds;
    let max_attempts = input.max_attempts.max(1);
    ctx.wait("initial-delay", Duration::from_secs(poll));
    let pending = StatusCheck {
        completed: false,
        status: "pending".to_string(),
        data: None,
        attempt: None,
        error: None,
    };
    let strategy = WaitStrategy::until(|check: &StatusCheck| check.completed)
        .fixed_delay(Duration::from_secs(poll))
        .max_attempts(max_attempts);
    let polled = ctx.wait_for_condition(
        "check-status",
        pending,
        |_, step| {
            let attempt = step.attempt();
            step.logger()
                .info(format!("Polling attempt {attempt}/{max_attempts}"));
            Ok(check_status(step, &base, &job.job_id, &user, attempt))
        },
        strategy,
    );

    // Step 4: give up when the job never completed.
    let (job_result, attempts) = match polled {
        Ok(check) => {
            let attempts = check.attempt.unwrap_or(1);
            log.info(format!("Job completed (attempt {attempts})"));
            (check, attempts)
        }
        Err(e) if e.error_type == MAX_ATTEMPTS_EXCEEDED => {
            return Err(Error::new(
                "TimeoutError",
                format!(
                    "timed out: job {} did not complete within {} checks {} seconds apart",
                    job.job_id, max_attempts, poll
                ),
            ))
        }
        Err(e) => return Err(e),
    };

    // Step 5: send the welcome message.
    let welcome: Welcome = ctx.step("welcome", |step| {
        step.logger()
            .info(format!("Sending welcome message: {}", user.email));
        Ok(Welcome {
            username: user.username.clone(),
            email: user.email.clone(),
            message: format!("Welcome, {}! Registration is complete.", user.username),
            status: "sent".to_string(),
        })
    })?;
    log.info(format!("Welcome message sent: {}", to_json(&welcome)));

    Ok(Output {
        status: "completed".to_string(),
        username: welcome.username,
        email: welcome.email,
        message: welcome.message,
        job_result,
        attempts,
        // The initial delay, then one poll interval between every two checks.
        total_wait_seconds: u64::from(attempts) * poll,
    })
}

/// Check number `attempt` of the job's status. Never fails: a transport error is reported in
/// the result, as in the original sample, so that polling goes on.
fn check_status(
    step: &durable_sdk::StepContext,
    base: &str,
    job_id: &str,
    user: &User,
    attempt: u32,
) -> StatusCheck {
    let url = format!("{base}/check-status/{job_id}");
    match http::get(&url) {
        Ok(response) => {
            step.logger()
                .info(format!("Status check: {}", response.status));
            if response.status == 200 {
                let body = response
                    .json::<Value>()
                    .unwrap_or_else(|_| Value::String(response.text()));
                StatusCheck {
                    completed: true,
                    status: "success".to_string(),
                    data: Some(JobData {
                        username: user.username.clone(),
                        email: user.email.clone(),
                        body,
                    }),
                    attempt: Some(attempt),
                    error: None,
                }
            } else {
                StatusCheck {
                    completed: false,
                    status: "processing".to_string(),
                    data: None,
                    attempt: Some(attempt),
                    error: None,
                }
            }
        }
        Err(e) => {
            step.logger().error(format!("Status check error: {e}"));
            StatusCheck {
                completed: false,
                status: "error".to_string(),
                data: None,
                attempt: Some(attempt),
                error: Some(e.error_message),
            }
        }
    }
}

fn to_json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).unwrap_or_default()
}

durable_sdk::export_handler!(handler);

// The local test runner runs natively only (`cargo test -p <crate>`).
#[cfg(all(test, not(target_arch = "wasm32")))]
mod tests;
