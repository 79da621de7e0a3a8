"""Fan-out, in Python: a map over the input's items. Each item waits `work_ms` (the guest is
unloaded meanwhile), then a step `work` returns `{"item": x}`; the output is the results in
item order. Input: `{"items": [...], "max_concurrency": n, "work_ms": m}` (the last two
optional). It records exactly the history of the Rust `examples/fan-out`.
"""

import durable


@durable.handler
def main(ctx: durable.Context, event):
    work_ms = event.get("work_ms", 0)

    def item(c, x, _index):
        if work_ms:
            c.wait(seconds=work_ms / 1000)
        return c.step("work", lambda _: {"item": x})

    batch = ctx.map("fan-out", event["items"], item, max_concurrency=event.get("max_concurrency"))
    # Every item succeeds, or the first failure fails the execution.
    return batch.get_results()
