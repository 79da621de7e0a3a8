"""The user-registration durable function from the AWS Lambda Durable Functions launch blog,
in Python (the same operations as the Rust `examples/user-registration`): validate the input,
ask an external API to start a job, poll the job's status with `wait_for_condition` (durable
waits in between),
then send (here: build) a welcome message.

Input: `{username, email, api_base_url, poll_interval_seconds = 5, max_attempts = 10}`. The
API answers `POST {api_base_url}/start-job` with `{"job_id": "..."}` and
`GET {api_base_url}/check-status/{job_id}` with 200 once the job is done.
"""

import json

import durable
from durable import DurableError, MaxAttemptsExceeded, RetryStrategy, WaitStrategy, http


class ValidationError(DurableError):
    """Missing username or email: final, not retried."""


class InvalidResponse(DurableError):
    """A start-job answer that cannot be used: not worth retrying."""


class StartJobError(DurableError):
    """The start-job request answered with a non-2xx status."""


class TimeoutError_(DurableError):
    error_type = "TimeoutError"


@durable.handler
def main(ctx: durable.Context, event):
    log = ctx.logger
    username = event.get("username") or ""
    email = event.get("email") or ""
    base = event["api_base_url"].rstrip("/")
    poll = event.get("poll_interval_seconds", 5)
    max_attempts = event.get("max_attempts", 10)
    log.info(f"Starting user registration: {username}")

    # Step 1: validate the user. A validation error is final: no retry.
    def validate(step):
        step.logger.info(f"Validating user: {username}")
        missing = [f for f, v in (("username", username.strip()), ("email", email.strip())) if not v]
        if missing:
            raise ValidationError(f"username and email are required; missing: {', '.join(missing)}")
        return {"username": username.strip(), "email": email.strip(), "status": "validated"}

    user = ctx.step("validate", validate, retry=RetryStrategy.none())
    log.info(f"Validation complete: {compact(user)}")

    # Step 2: ask the external API to start the job.
    def start_job(step):
        url = f"{base}/start-job"
        body = {"username": user["username"], "email": user["email"], "message": "Starting asynchronous processing"}
        response = http.post_json(url, body)
        step.logger.info(f"Start request sent: {response.status}")
        if not response.ok:
            raise StartJobError(f"POST {url} returned status {response.status}")
        try:
            reply = response.json()
        except DurableError as e:
            raise InvalidResponse(e.error_message) from None
        job_id = reply.get("job_id") if isinstance(reply, dict) else None
        if not isinstance(job_id, str):
            raise InvalidResponse(f'POST {url} answered without a "job_id" string: {compact(reply)}')
        return {"job_id": job_id}

    job = ctx.step(
        "start-job",
        start_job,
        retry=RetryStrategy.exponential(3, initial=1, rate=2.0, max_delay=10).never_retry_on([InvalidResponse]),
    )
    log.info(f"Job ID: {job['job_id']} - starting to poll")

    # Step 3: give the job one poll interval, then poll its status with wait_for_condition:
    # each check is a journaled step, each wait between checks unloads the guest (the
    # hand-written loop of one wait and one "check-status-{attempt}" step per attempt
    # became this one operation, as in the Rust example).
    max_attempts = max(max_attempts, 1)
    ctx.wait("initial-delay", seconds=poll)

    def check(_state, step):
        step.logger.info(f"Polling attempt {step.attempt}/{max_attempts}")
        return check_status(step, base, job["job_id"], user, step.attempt)

    pending = {"completed": False, "status": "pending"}
    strategy = WaitStrategy.fixed(lambda c: c["completed"], poll, max_attempts=max_attempts)

    # Step 4: give up when the job never completed.
    try:
        job_result = ctx.wait_for_condition("check-status", pending, check, strategy)
    except MaxAttemptsExceeded:
        raise TimeoutError_(
            f"timed out: job {job['job_id']} did not complete within {max_attempts} checks {poll} seconds apart"
        ) from None
    attempts = job_result.get("attempt", 1)
    log.info(f"Job completed (attempt {attempts})")

    # Step 5: send the welcome message.
    def welcome(step):
        step.logger.info(f"Sending welcome message: {user['email']}")
        return {
            "username": user["username"],
            "email": user["email"],
            "message": f"Welcome, {user['username']}! Registration is complete.",
            "status": "sent",
        }

    sent = ctx.step("welcome", welcome)
    log.info(f"Welcome message sent: {compact(sent)}")

    return {
        "status": "completed",
        "username": sent["username"],
        "email": sent["email"],
        "message": sent["message"],
        "jobResult": job_result,
        "attempts": attempts,
        "totalWaitSeconds": attempts * poll,
    }


def check_status(step, base, job_id, user, attempt):
    """Check number `attempt` of the job's status. Never fails: a transport error is
    reported in the result, as in the original sample, so that polling goes on. The keys
    are in the order of the Rust example's `StatusCheck`, so both record the same JSON."""
    url = f"{base}/check-status/{job_id}"
    try:
        response = http.get(url)
    except DurableError as e:
        step.logger.error(f"Status check error: {e}")
        return {"completed": False, "status": "error", "attempt": attempt, "error": e.error_message}
    step.logger.info(f"Status check: {response.status}")
    if response.status == 200:
        try:
            body = response.json()
        except DurableError:
            body = response.text()
        data = {"username": user["username"], "email": user["email"], "body": body}
        return {"completed": True, "status": "success", "data": data, "attempt": attempt}
    return {"completed": False, "status": "processing", "attempt": attempt}


def compact(value):
    return json.dumps(value, separators=(",", ":"))
