"""`durable`: write durable functions in Python and build them into a WebAssembly component
for the durable-functions host.

A durable function is a plain function of `(ctx, event)`. Inside it, `Context` runs
durable operations, each checkpointed by the host:

- `ctx.step(name, fn, retry=..., semantics=...)`: run code once and checkpoint its result;
- `ctx.wait(name, seconds=...)`: pause without holding memory or CPU;
- `ctx.create_callback` / `ctx.wait_for_callback`: pause until an external system
  completes a callback over HTTP;
- `ctx.run_in_child_context(name, fn)`: group operations into one checkpointed unit;
- `ctx.map(name, items, fn)` / `ctx.parallel(name, branches)`: each item or branch in a
  child context, with `max_concurrency` and a `CompletionConfig`; a `BatchResult` back;
- `ctx.now()`, `ctx.random()`, `ctx.uuid()`: a clock reading, a random float in [0, 1) or
  a v4 UUID, recorded once (as a step) and the same on every replay;
- `ctx.invoke(function, input, name=...)`: call another durable function of the tenant
  and wait for its result, unloaded meanwhile.

When the function resumes (after a wait, a callback, a retry delay or a host crash) the host
runs it again from the start and answers every operation already done with its recorded
outcome, so completed steps are not re-run. Hence the one rule: **the sequence of durable
operations must be the same on every run**; anything non-deterministic (clocks, random
numbers, `durable.http`) goes inside a step.

Example (`greet.py`)::

    import durable

    @durable.handler
    def main(ctx: durable.Context, event):
        name = ctx.step("validate", lambda _: event["name"].strip())
        ctx.wait("cool-down", seconds=5)      # unloaded meanwhile, replayed afterwards
        return ctx.step("greet", lambda step: f"Hello, {name}! (attempt {step.attempt})")

Build it with `python -m durable.build greet -o greet.wasm` (componentize-py, pinned).
"""

from .batch import BatchItem, BatchResult, CompletionConfig
from .context import Callback, Context, StepContext
from .condition import MaxAttemptsExceeded, Serdes, WaitStrategy
from ._entry import WitWorld, handler
from .errors import (
    CallbackHeartbeatTimeout,
    CallbackTimeout,
    DurableError,
    HttpError,
    InvalidInput,
    InvalidPayload,
    LimitExceeded,
    PayloadTooLarge,
    SerializationError,
    StepInterrupted,
)
from .log import LogHandler, Logger
from .retry import AT_LEAST_ONCE, AT_MOST_ONCE, Jitter, RetryStrategy, StepSemantics
from . import http

__all__ = [
    "AT_LEAST_ONCE",
    "AT_MOST_ONCE",
    "BatchItem",
    "BatchResult",
    "CompletionConfig",
    "Callback",
    "CallbackHeartbeatTimeout",
    "CallbackTimeout",
    "Context",
    "DurableError",
    "HttpError",
    "InvalidInput",
    "InvalidPayload",
    "Jitter",
    "LimitExceeded",
    "LogHandler",
    "MaxAttemptsExceeded",
    "Logger",
    "PayloadTooLarge",
    "RetryStrategy",
    "SerializationError",
    "Serdes",
    "StepContext",
    "StepInterrupted",
    "StepSemantics",
    "WaitStrategy",
    "WitWorld",
    "handler",
    "http",
]
