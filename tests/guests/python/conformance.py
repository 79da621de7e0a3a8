"""The Python conformance guest: the scenarios of tests/guests/README.md (the kit's table),
written with the Python SDK exactly as the Rust guest (tests/guests/conformance) writes them:
same operation names, kinds, order, policies and outputs, so that one runner
(tests/conformance.rs) checks both against the same expected histories. Durations in params
are milliseconds. The floods and blocking tables are Rust-only (they test host limits, not
an SDK).
"""

import json
import os
import sys

import durable
from durable import AT_MOST_ONCE, DurableError, Jitter, RetryStrategy, http

NO_RETRY = RetryStrategy.none()


def ms(n):
    """Milliseconds as the seconds the SDK takes."""
    return n / 1000


def steady(max_attempts, delay_ms):
    """An exponential policy with rate 1 and no jitter: `delay_ms` between attempts."""
    return RetryStrategy.exponential(max_attempts, ms(delay_ms), 1.0, max(60, ms(delay_ms))).jitter(Jitter.NONE)


def caught(e):
    return {"caught": {"error_type": e.error_type, "error_message": e.error_message}}


def fails(error_type, message):
    return DurableError(message, error_type=error_type)


# ---- steps ----


def step_basic(ctx, p):
    return ctx.step(None, lambda _: f"Hello, {p['name']}!")


def step_named(ctx, p):
    return ctx.step("custom_step_name", lambda _: f"Hello, {p['name']}!")


def step_retry(ctx, p):
    strategy = RetryStrategy.exponential(p["max_attempts"], ms(p["delay_ms"]), p.get("backoff_rate", 1.0), 60).jitter(
        Jitter.NONE
    )
    if p.get("retry_on") is not None:
        strategy = strategy.retry_on(p["retry_on"])
    if p.get("never_retry_on") is not None:
        strategy = strategy.never_retry_on(p["never_retry_on"])
    error_type = p.get("error_type", "TransientError")

    def flaky(step):
        if step.attempt <= p["fail_times"]:
            raise fails(error_type, f"attempt {step.attempt} failed")
        return "Operation succeeded"

    return ctx.step("flaky", flaky, retry=strategy)


def step_fail_caught(ctx, p):
    def failing(_):
        raise fails("StepError", "always fails")

    try:
        ctx.step("failing", failing, retry=NO_RETRY)
    except DurableError:
        return ctx.step("fallback", lambda _: "fallback_result")
    raise fails("Unexpected", 'step "failing" succeeded')


def step_fail_then_wait(ctx, p):
    def failing(step):
        step.logger.info("step executed")
        raise fails("StepError", "step failed")

    try:
        ctx.step("failing", failing, retry=NO_RETRY)
    except DurableError:
        pass
    ctx.wait(seconds=ms(p["wait_ms"]))
    return "done"


def at_most_once(ctx, p):
    def body(step):
        step.logger.info(p["marker"])
        if step.attempt <= p["crash_attempts"]:
            os.abort()  # a trap: the instance dies mid-attempt
        return "succeeded on second attempt"

    return ctx.step(
        "at_most_once_flaky_step", body, retry=steady(p["max_attempts"], p["delay_ms"]), semantics=AT_MOST_ONCE
    )


def steps(ctx, p):
    for i in range(p["count"]):
        ctx.step(None, lambda _, i=i: i)
    return p["count"]


def bench_hello(ctx, p):
    ctx.step("Step #1", lambda step: step.logger.info("Hello from step #1"))
    ctx.wait(seconds=0)
    ctx.logger.info("Waited for 0 seconds")
    message = ctx.step("Step #2", lambda _: "Hello from Durable Lambda!")
    return {"statusCode": 200, "body": durable.errors._dumps(message)}


# ---- probes (HTTP from steps) ----


def step_http(ctx, p):
    def body(_):
        try:
            kwargs = {"json": p["body"]} if p.get("body") is not None else {}
            response = http.request(p["method"], p["url"], **kwargs)
        except DurableError as e:
            return {"error": e.error_message}
        return {"status": response.status, "body": response.text()}

    return ctx.step(p.get("name") or "http", body, retry=NO_RETRY)


def post(url):
    return http.request("POST", url).status


def crash_probe(ctx, p):
    base = p["url"].rstrip("/")
    before = ctx.step("before", lambda _: post(f"{base}/hit/before"), retry=NO_RETRY)
    slow = ctx.step("slow", lambda _: post(f"{base}/slow"), retry=NO_RETRY)
    ctx.wait(seconds=ms(100))
    after = ctx.step("after", lambda _: post(f"{base}/hit/after"), retry=NO_RETRY)
    return {"before": before, "slow": slow, "after": after}


def at_most_once_probe(ctx, p):
    base = p["url"].rstrip("/")
    return ctx.step(
        "guarded",
        lambda _: post(f"{base}/slow"),
        retry=steady(p["max_attempts"], p["delay_ms"]),
        semantics=AT_MOST_ONCE,
    )


# ---- waits and logs ----


def wait(ctx, p):
    ctx.wait(p.get("name"), seconds=ms(p["ms"]))
    return "waited"


def deterministic(ctx, p):
    values = {
        "now_ms": int(ctx.now().timestamp() * 1000 + 0.5),
        "random_n": int(ctx.random() * 2**53),
        "uuid": ctx.uuid(),
    }
    seen = ctx.step("seen", lambda _: values)
    ctx.wait(seconds=ms(p["wait_ms"]))
    later = ctx.now()
    return {"seen": seen, "replayed": values, "later_ms": int(later.timestamp() * 1000 + 0.5)}


def waits(ctx, p):
    for n in p["ms"]:
        ctx.wait(seconds=ms(n))
    return len(p["ms"])


def log_replay(ctx, p):
    ctx.logger.info(f"{p['marker']}-before")
    ctx.wait(seconds=ms(p["wait_ms"]))
    ctx.logger.info(f"{p['marker']}-after")
    return "logged"


def stdout(ctx, p):
    print(p["text"])
    print(f"err:{p['text']}", file=sys.stderr)
    ctx.step(None, lambda _: None)
    ctx.wait(seconds=ms(50))
    return "printed"


# ---- callbacks ----


def outcome(get, catch):
    try:
        return {"result": get()}
    except DurableError as e:
        if catch:
            return caught(e)
        raise


def timeouts(p):
    t, h = p.get("timeout_ms"), p.get("heartbeat_timeout_ms")
    return {"timeout": None if t is None else ms(t), "heartbeat_timeout": None if h is None else ms(h)}


def callback(ctx, p):
    cb = ctx.create_callback(p.get("name"), **timeouts(p))
    return outcome(cb.result, p.get("catch", False))


def callback_two(ctx, p):
    a = ctx.create_callback(p["a"])
    b = ctx.create_callback(p["b"])
    result_a = a.result()
    result_b = b.result()
    return [result_a, result_b]


def callback_then_wait(ctx, p):
    cb = ctx.create_callback("cb")
    ctx.wait(seconds=ms(p["wait_ms"]))
    return cb.result()


def wait_for_callback(ctx, p):
    url = p.get("notify_url")

    def submit(callback_id):
        if url is not None:
            response = http.post_json(url, {"callback_id": callback_id})
            if not response.ok:
                raise fails("NotifyError", f"POST {url} returned status {response.status}")

    return outcome(
        lambda: ctx.wait_for_callback(p.get("name") or "approval", submit, **timeouts(p)),
        p.get("catch", False),
    )


def wait_for_callback_submitter_fails(ctx, p):
    def submit(_, step):
        raise fails("SubmitterError", f"submitter failed on attempt {step.attempt}")

    return ctx.wait_for_callback("approval", submit, submitter_retry=steady(p["max_attempts"], p["delay_ms"]))


# ---- child contexts ----


def child_basic(ctx, p, name=None):
    value = p.get("value")
    return ctx.run_in_child_context(name, lambda child: child.step(None, lambda _: value))


def child_wait(ctx, p):
    def body(child):
        one = child.step("inner-1", lambda _: 1)
        child.wait(seconds=ms(p["wait_ms"]))
        two = child.step("inner-2", lambda _: 2)
        return one + two

    inner = ctx.run_in_child_context(None, body)
    return inner + ctx.step("after", lambda _: 3)


def child_error_caught(ctx, p):
    def bad(_):
        raise fails("ChildError", "the child's step failed")

    try:
        ctx.run_in_child_context(None, lambda child: child.step("bad", bad, retry=NO_RETRY))
    except DurableError:
        return "recovered"
    raise fails("Unexpected", "the child context succeeded")


def child_nested(ctx, p):
    return ctx.run_in_child_context(
        "outer", lambda outer: outer.run_in_child_context("inner", lambda inner: inner.step("deep", lambda _: "deep"))
    )


def child_log(ctx, p):
    def body(child):
        child.logger.info(p["marker"])
        child.wait(seconds=ms(50))
        return "ok"

    return ctx.run_in_child_context(None, body)


# ---- wait for condition ----


class Reversed(durable.Serdes):
    """A string state checkpointed as {"encoded": <reversed>} (the Rust guest's `Encoded`)."""

    def serialize(self, value):
        return json.dumps({"encoded": value[::-1]}, separators=(",", ":"))

    def deserialize(self, text):
        return json.loads(text)["encoded"][::-1]


def poll_count(ctx, p, initial, threshold):
    increment = p.get("increment", 1)
    return ctx.wait_for_condition(
        p.get("name"), initial, lambda n: n + increment, condition_strategy(p, lambda n: n >= threshold)
    )


def condition_strategy(p, done):
    return durable.WaitStrategy.fixed(done, ms(p.get("delay_ms", 10)), p.get("max_attempts", 60))


def wait_for_condition(ctx, p):
    kind, threshold, name = p["kind"], p.get("threshold", 0), p.get("name")

    def check_raises(_):
        raise fails("CheckError", "the check failed")

    def job(j):
        attempts = j["attempts"] + 1
        return {"status": "DONE" if attempts >= threshold else "PENDING", "attempts": attempts}

    try:
        if kind == "count":
            value = poll_count(ctx, p, p.get("initial", 0), threshold)
        elif kind == "object":
            initial = {"status": "PENDING", "attempts": 0}
            value = ctx.wait_for_condition(name, initial, job, condition_strategy(p, lambda j: j["status"] == "DONE"))
        elif kind == "null":
            value = ctx.wait_for_condition(name, None, lambda _: None, condition_strategy(p, lambda _: True))
        elif kind == "string":
            strategy = condition_strategy(p, lambda s: len(s) >= threshold)
            value = ctx.wait_for_condition(name, "", lambda s: s + "x", strategy, serdes=Reversed())
        elif kind == "raise":
            value = ctx.wait_for_condition(name, 0, check_raises, condition_strategy(p, lambda _: True))
        else:
            raise fails("InvalidInput", f"unknown kind {kind!r}")
    except DurableError:
        if p.get("catch", False):
            return "recovered"
        raise
    then = p.get("then")
    if then == "step":
        return ctx.step(None, lambda _: value * 10)
    if then == "again":
        return poll_count(ctx, p, value, p.get("second_threshold", 0))
    return value


# ---- misbehaving guests ----


def spin():
    n = 0
    while True:
        n += 1


def loop_in_step(ctx, p):
    return ctx.step("spin", lambda _: spin(), retry=NO_RETRY)


def memory_bomb(ctx, p):
    hoard = []
    while True:
        hoard.append(bytearray(b"\x01" * (1 << 20)))


def big_step_result(ctx, p):
    try:
        return ctx.step("big", lambda _: "x" * p["bytes"], retry=NO_RETRY)
    except DurableError as e:
        return caught(e)


def nondeterministic(ctx, p):
    # Drawn from wasi:random at each call.
    first = int.from_bytes(os.urandom(8), "little")
    ctx.step(f"random-{first}", lambda _: first)
    ctx.wait(seconds=ms(10))
    second = int.from_bytes(os.urandom(8), "little")
    return ctx.step(f"random-{second}", lambda _: second)


def fail(ctx, p):
    raise fails(p["error_type"], p["message"])


def panic(ctx, p):
    os.abort()  # the closest thing to a Rust panic: the instance traps


# ---- map and parallel ----


def run_spec(ctx, spec):
    """A branch described as data, as the Rust guest's `batches::run_spec`."""
    if not isinstance(spec, dict):
        return spec
    if "value" in spec:
        return spec["value"]
    if "step" in spec:
        v = spec["step"]
        return ctx.step(None, lambda _: v)
    if "fail" in spec:
        raise fails("ItemError", spec["fail"] if isinstance(spec["fail"], str) else "failed")
    if "bytes" in spec:
        return "x" * spec["bytes"]
    if "wait_ms" in spec:
        ctx.wait(ms(spec["wait_ms"]))
        return run_spec(ctx, spec.get("then"))
    if "parallel" in spec:
        return parallel(ctx, spec["parallel"])
    return spec


def batch_completion(p):
    return durable.CompletionConfig(
        min_successful=p.get("min_successful"),
        tolerated_failure_count=p.get("tolerated_failure_count"),
        tolerated_failure_percentage=p.get("tolerated_failure_percentage"),
    )


def map_scenario(ctx, p):
    body = p.get("body") or "spec"

    def fn(c, item, index):
        if body == "greet":
            return c.step(None, lambda _: f"Hello, {item}!")
        if body == "double":
            return item * 2
        if body == "times10":
            return item * 10
        if body == "add-index":
            return item + index
        return run_spec(c, item)

    namer = (lambda item, _: f"item-{json.dumps(item)}") if p.get("item_names") else None
    batch = ctx.map(
        p.get("name"), p.get("items", []), fn,
        max_concurrency=p.get("max_concurrency"), completion=batch_completion(p), item_namer=namer,
    )
    return batch_output(ctx, p, batch)


def parallel(ctx, p):
    names = p.get("branch_names", [])
    branches = []
    for i, spec in enumerate(p.get("branches", [])):
        fn = (lambda s: lambda c: run_spec(c, s))(spec)
        branches.append((names[i], fn) if i < len(names) else fn)
    batch = ctx.parallel(
        p.get("name"), branches, max_concurrency=p.get("max_concurrency"), completion=batch_completion(p)
    )
    return batch_output(ctx, p, batch)


def batch_output(ctx, p, batch):
    if p.get("then_wait_ms") is not None:
        ctx.wait(ms(p["then_wait_ms"]))
    out = p.get("output") or "results"
    if out == "summary":
        return {
            "completionReason": batch.completion_reason,
            "status": batch.status,
            "successCount": batch.success_count,
            "failureCount": batch.failure_count,
            "startedCount": batch.started_count,
            "totalCount": batch.total_count,
        }
    if out == "accessors":
        return {
            "hasFailure": batch.has_failure,
            "successCount": len(batch.succeeded()),
            "failureCount": len(batch.failed()),
            "errorCount": len(batch.errors()),
        }
    if out == "counts":
        return {"successCount": batch.success_count, "totalCount": batch.total_count}
    if out == "throw":
        return batch.get_results()
    return batch.results()


# ---- invokes ----


def upper(v):
    return v.upper() if isinstance(v, str) else v


def invoke(ctx, p):
    value = "x" * p["input_bytes"] if p.get("input_bytes") is not None else p.get("input")
    if p.get("step_first", False):
        value = ctx.step(None, lambda _: value)
    if p.get("transform") == "upper-input":
        value = upper(value)

    def invokes(c):
        result = None
        for _ in range(p.get("times", 1)):
            result = c.invoke(p["function"], value, name=p.get("name"), tenant_id=p.get("tenant_id"))
        return result

    try:
        if p.get("child", False):
            out = ctx.run_in_child_context(None, invokes)
        else:
            out = invokes(ctx)
    except DurableError as e:
        if not p.get("catch", False):
            raise
        out = caught(e)
    then = p.get("then")
    if then == "wait":
        ctx.wait(None, seconds=ms(p.get("wait_ms", 10)))
    elif then == "step":
        result = out
        out = ctx.step(None, lambda _: result)
    if p.get("transform") == "upper-result":
        out = upper(out)
    return out


SCENARIOS = {
    "echo": lambda ctx, p: p.get("value"),
    "invoke": invoke,
    "step-basic": step_basic,
    "step-named": step_named,
    "step-retry": step_retry,
    "step-fail-caught": step_fail_caught,
    "step-fail-then-wait": step_fail_then_wait,
    "at-most-once": at_most_once,
    "steps": steps,
    "bench-hello": bench_hello,
    "step-http": step_http,
    "crash-probe": crash_probe,
    "at-most-once-probe": at_most_once_probe,
    "wait": wait,
    "waits": waits,
    "log-replay": log_replay,
    "stdout": stdout,
    "callback": callback,
    "callback-two": callback_two,
    "callback-then-wait": callback_then_wait,
    "wait-for-callback": wait_for_callback,
    "wait-for-callback-submitter-fails": wait_for_callback_submitter_fails,
    "child-basic": child_basic,
    "wait-for-condition": wait_for_condition,
    "child-named": lambda ctx, p: child_basic(ctx, p, "child"),
    "child-wait": child_wait,
    "child-error-caught": child_error_caught,
    "child-nested": child_nested,
    "child-log": child_log,
    "loop-forever": lambda ctx, p: spin(),
    "deterministic": deterministic,
    "loop-in-step": loop_in_step,
    "memory-bomb": memory_bomb,
    "big-output": lambda ctx, p: "x" * p["bytes"],
    "big-step-result": big_step_result,
    "nondeterministic": nondeterministic,
    "fail": fail,
    "panic": panic,
    "map": map_scenario,
    "parallel": parallel,
}


# The params each scenario cannot do without: checked before anything durable runs, so a
# missing one fails with InvalidInput (as the Rust guest's typed params do), not later inside
# a step.
REQUIRED = {
    "step-basic": ["name"],
    "step-named": ["name"],
    "step-retry": ["fail_times", "max_attempts", "delay_ms"],
    "step-fail-then-wait": ["wait_ms"],
    "at-most-once": ["marker", "crash_attempts", "max_attempts", "delay_ms"],
    "steps": ["count"],
    "step-http": ["url", "method"],
    "crash-probe": ["url"],
    "at-most-once-probe": ["url", "max_attempts", "delay_ms"],
    "wait": ["ms"],
    "wait-for-condition": ["kind"],
    "waits": ["ms"],
    "deterministic": ["wait_ms"],
    "log-replay": ["marker", "wait_ms"],
    "stdout": ["text"],
    "callback-two": ["a", "b"],
    "callback-then-wait": ["wait_ms"],
    "wait-for-callback-submitter-fails": ["max_attempts", "delay_ms"],
    "child-wait": ["wait_ms"],
    "child-log": ["marker"],
    "big-output": ["bytes"],
    "big-step-result": ["bytes"],
    "fail": ["error_type", "message"],
    "invoke": ["function"],
}


@durable.handler
def main(ctx, event):
    if not isinstance(event, dict) or not isinstance(event.get("scenario"), str):
        raise fails("InvalidInput", 'the input needs a "scenario" string')
    name = event["scenario"]
    run = SCENARIOS.get(name)
    if run is None:
        raise fails("UnknownScenario", f"unknown scenario {name!r}")
    missing = [k for k in REQUIRED.get(name, []) if k not in event]
    if missing:
        raise fails("InvalidInput", f"bad parameters for scenario {name!r}: missing {', '.join(missing)}")
    try:
        return run(ctx, event)
    except (KeyError, TypeError) as e:
        # A missing or mistyped param, as the Rust guest's serde error.
        raise fails("InvalidInput", f"bad parameters for scenario {name!r}: {e!r}") from None
