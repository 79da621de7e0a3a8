"""An approval workflow in Python (the same operations as the Rust `examples/approval`): hand
a request to an approver through a callback and wait (suspended, for as long as it takes or
until the timeout) for the decision.

Input: `{request: <any JSON>, notify_url?: string, timeout_seconds?: number}`. When
`notify_url` is given, the submitter step POSTs `{"callback_id", "request"}` to it; the
approver completes the callback with `POST /v1/callbacks/{callback_id}/succeed` (any JSON)
or `/fail`. Output: `{"request": .., "approval": <the callback's result>}`.
"""

import durable
from durable import DurableError, RetryStrategy, http


class NotifyError(DurableError):
    """The approver's endpoint answered with a non-2xx status (retried)."""


@durable.handler
def main(ctx: durable.Context, event):
    event = event or {}
    request = event.get("request")
    notify_url = event.get("notify_url")

    def submit(callback_id, step):
        if notify_url is None:
            step.logger.info(f"approval requested: complete callback {callback_id} to decide")
            return
        response = http.post_json(notify_url, {"callback_id": callback_id, "request": request})
        if not response.ok:
            raise NotifyError(f"POST {notify_url} returned status {response.status}")
        step.logger.info(f"approver notified: callback {callback_id}")

    # A failed or timed-out callback fails the execution with that error, as is.
    approval = ctx.wait_for_callback(
        "approval",
        submit,
        timeout=event.get("timeout_seconds"),
        # A notification that fails is retried twice, a second apart.
        submitter_retry=RetryStrategy.fixed(3, 1),
    )
    return {"request": request, "approval": approval}
