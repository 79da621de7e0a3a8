"""The hello-world durable function from the AWS Lambda Durable Functions launch sample, in
Python: step "Step #1" logs, an unnamed one-second wait, a replay-aware log line, step
"Step #2" returns the greeting, and the output is an API-Gateway-style response. Input is
ignored. It records exactly the history of the Rust `examples/hello`.
"""

import json

import durable


@durable.handler
def main(ctx: durable.Context, event):
    ctx.step("Step #1", lambda step: step.logger.info("Hello from step #1"))

    # Pause for 1 second: the guest is unloaded meanwhile and resumed afterwards.
    ctx.wait(seconds=1)

    # The context logger is replay aware: this line is recorded once.
    ctx.logger.info("Waited for 1 second")

    message = ctx.step("Step #2", lambda _: "Hello from Durable Lambda!")

    return {"statusCode": 200, "body": json.dumps(message)}
