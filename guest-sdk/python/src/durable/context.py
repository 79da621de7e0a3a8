"""The durable `Context`: steps (with the attempt loop), waits, callbacks, child contexts and
wait-for-callback, each a short sequence of host imports (wit/README.md sections 5-6). Owns
the parent id that every operation inside a child context passes to the host. Holds no
journal: replay is the host's job; this module only follows what `step-start` and
`context-start` answer.

A suspending host call never returns: the host traps, drops the instance and replays later.
No Python code runs after it (no `finally`, no `except`), so nothing here or in user code
can observe it.
"""

from __future__ import annotations

import datetime
import inspect
import json
from typing import Any, Callable, Optional

from . import _bindings as b
from .errors import DurableError, SerializationError, _dumps
from .log import LOGGER, Logger
from .retry import AT_LEAST_ONCE, Duration, RetryStrategy, StepSemantics, millis
from .condition import Serdes, WaitStrategy
from . import deterministic as det
from .batch import BatchResult, CompletionConfig, run_batch

#: The name of the submitter step inside a wait-for-callback context.
SUBMITTER_STEP = "submitter"


def _wants_arg(fn: Callable, n: int) -> bool:
    """Whether `fn` takes at least `n` positional arguments (a step body may take its
    `StepContext` or nothing)."""
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    count = 0
    for p in sig.parameters.values():
        if p.kind == p.VAR_POSITIONAL:
            return True
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            count += 1
    return count >= n


def _error(e: "b.ErrorObject") -> DurableError:
    return DurableError.of(e.error_type, e.error_message, e.error_data)


def _wit_error(e: DurableError) -> "b.ErrorObject":
    return b.ErrorObject(str(e.error_type), str(e.error_message), e.error_data)


def decode(text: str, what: str) -> Any:
    """A recorded JSON value."""
    try:
        return json.loads(text)
    except ValueError as e:
        excerpt = text if len(text) <= 80 else text[:80] + "..."
        raise SerializationError(f"could not deserialize the {what} {excerpt}: {e}") from None


def round_trip(value: Any, what: str) -> tuple[str, Any]:
    """Serialize a value and read it back, so the first run sees exactly what a replay will
    see (tuples become lists, dict keys strings)."""
    try:
        text = _dumps(value)
    except (TypeError, ValueError) as e:
        raise SerializationError(f"could not serialize the {what}: {e}") from None
    return text, json.loads(text)


class StepContext:
    """What a step body receives: the attempt number, the step's operation id and a logger.
    Durable operations cannot be nested in a step (the host fails the execution with
    `Durable.ProtocolViolation`); group operations with `run_in_child_context`."""

    __slots__ = ("operation_id", "attempt")

    def __init__(self, operation_id: str, attempt: int) -> None:
        #: Stable across attempts and replays of this execution (not unique across
        #: executions): part of an idempotency key, for example.
        self.operation_id = operation_id
        #: The attempt number, starting at 1.
        self.attempt = attempt

    @property
    def logger(self) -> Logger:
        """A replay-aware logger."""
        return LOGGER


class Callback:
    """A created callback. Hand `id` to the external system (from a step), then call
    `result()`. The external system completes it with `POST /v1/callbacks/{id}/succeed`
    (body: JSON) or `/fail`."""

    __slots__ = ("operation_id", "id")

    def __init__(self, operation_id: str, callback_id: str) -> None:
        self.operation_id = operation_id
        #: The callback id the external system uses.
        self.id = callback_id

    def result(self) -> Any:
        """The callback's JSON result, or raises the error it failed with
        (`CallbackTimeout`, `CallbackHeartbeatTimeout`, or the error the external system
        reported). Suspends the execution while the callback is pending."""
        try:
            text = b.host.await_callback(self.operation_id)
        except b.Err as e:
            raise _error(e.value) from None
        return decode(text, "callback result")


def _callback_options(timeout: Optional[Duration], heartbeat_timeout: Optional[Duration]):
    return b.CallbackOptions(
        timeout_ms=None if timeout is None else millis(timeout),
        heartbeat_timeout_ms=None if heartbeat_timeout is None else millis(heartbeat_timeout),
    )


class Context:
    """The handle a durable function uses to run durable operations.

    Operations must be called in the same order on every run: the host identifies them by
    position and fails the execution with `NonDeterministicExecution` when a replay
    diverges. Anything non-deterministic (clocks, randomness, HTTP) belongs inside a step.
    """

    __slots__ = ("_parent",)

    def __init__(self, parent: Optional[str] = None) -> None:
        self._parent = parent

    @property
    def id(self) -> Optional[str]:
        """The operation id of this child context, `None` at the top level."""
        return self._parent

    @property
    def logger(self) -> Logger:
        """A replay-aware logger: each line is recorded once, not again when replayed."""
        return LOGGER

    def step(
        self,
        name: Optional[str],
        fn: Callable[..., Any],
        *,
        retry: Optional[RetryStrategy] = None,
        semantics: StepSemantics = AT_LEAST_ONCE,
    ) -> Any:
        """Run `fn` as a step and checkpoint its result (which must be JSON: it is returned
        as read back from JSON, on the first run as on replay). `fn` takes a
        `StepContext`, or nothing.

        On replay the recorded result is returned, or the recorded failure raised, and `fn`
        does not run. A failed attempt (any exception) goes to the host, which applies the
        retry policy (`retry`; the host default when `None`): it suspends the execution for
        the delay, asks for another attempt at once, or records the failure as final, which
        is then raised as a `DurableError`.
        """
        options = b.StepOptions(
            semantics=getattr(b.StepSemantics, semantics.name),
            retry=(retry or RetryStrategy()).to_wit(),
        )
        op, state = b.host.step_start(self._parent, name, options)
        if isinstance(state, b.StepState_Succeeded):
            return decode(state.value, "step result")
        if isinstance(state, b.StepState_Failed):
            raise _error(state.value)
        attempt = state.value
        with_step = _wants_arg(fn, 1)
        while True:
            try:
                value = fn(StepContext(op, attempt)) if with_step else fn()
                text, value = round_trip(value, "step result")
            except Exception as e:  # noqa: BLE001 - any failure is an attempt's failure
                error = DurableError.from_exception(e)
                nxt = b.host.step_fail(op, _wit_error(error))
                if nxt is None:
                    raise error from (None if error is e else e)
                attempt = nxt
                continue
            try:
                b.host.step_succeed(op, text)
            except b.Err as e:  # the host recorded a failure instead (PayloadTooLarge)
                raise _error(e.value) from None
            return value

    def wait(
        self,
        name: Optional[str] | Duration = None,
        *,
        seconds: Duration = 0,
    ) -> None:
        """Pause the execution for `seconds` (a number or a `timedelta`, in whole
        milliseconds, rounded up): `ctx.wait(seconds=5)`, `ctx.wait("cool-down",
        seconds=5)`, or `ctx.wait(5)` for an unnamed one. The guest is unloaded while it
        waits; a zero wait is recorded and returns at once."""
        if not isinstance(name, (str, type(None))):
            name, seconds = None, name  # ctx.wait(5): the duration, unnamed
        b.host.wait(self._parent, name, millis(seconds))

    def create_callback(
        self,
        name: Optional[str] = None,
        *,
        timeout: Optional[Duration] = None,
        heartbeat_timeout: Optional[Duration] = None,
    ) -> Callback:
        """Create a callback; its id is durable when this returns. Hand it to an external
        system from a step, then await `Callback.result()`. Prefer `wait_for_callback`,
        which runs the hand-off as a step for you."""
        op, callback_id = b.host.create_callback(
            self._parent, name, _callback_options(timeout, heartbeat_timeout)
        )
        return Callback(op, callback_id)

    def wait_for_callback(
        self,
        name: Optional[str],
        submitter: Callable[..., Any],
        *,
        timeout: Optional[Duration] = None,
        heartbeat_timeout: Optional[Duration] = None,
        submitter_retry: Optional[RetryStrategy] = None,
    ) -> Any:
        """Create a callback, run `submitter(callback_id[, step])` as the step `submitter`
        (retried by `submitter_retry`, the host default when `None`) to hand the id to an
        external system, and wait for the result, all inside a child context of kind
        wait-for-callback (the history AWS records)."""
        with_step = _wants_arg(submitter, 2)

        def body(ctx: Context) -> Any:
            cb = ctx.create_callback(None, timeout=timeout, heartbeat_timeout=heartbeat_timeout)

            def submit(step: StepContext) -> None:
                if with_step:
                    submitter(cb.id, step)
                else:
                    submitter(cb.id)

            ctx.step(SUBMITTER_STEP, submit, retry=submitter_retry)
            return cb.result()

        return self._run_context(name, b.ContextKind.WAIT_FOR_CALLBACK, body)

    def wait_for_condition(
        self,
        name: Optional[str],
        initial_state: Any,
        check: Callable[..., Any],
        strategy: WaitStrategy,
        *,
        serdes: Optional[Serdes] = None,
    ) -> Any:
        """Poll: run `check(state[, step])` until `strategy` says the state is done, and
        return the final state. The first check gets `initial_state`, each later one the
        state the one before returned. Between checks the execution is suspended for the
        strategy's delay (the guest is unloaded).

        One operation in history (sub type `WaitForCondition`): each check is a
        `StepStarted` / `StepSucceeded` pair carrying the new state. On replay a finished
        condition returns its final state without running `check`. An exception from
        `check` fails the operation at once (checks are not retried), as does running out
        of attempts (`MaxAttemptsExceeded`). The state is checkpointed as JSON, or with
        `serdes`; the first run sees it as read back, like a replay.
        """
        def dump(value: Any) -> tuple[str, Any]:
            if serdes is None:
                return round_trip(value, "condition state")
            text = serdes.serialize(value)
            return text, serdes.deserialize(text)

        def load(text: str) -> Any:
            if serdes is None:
                return decode(text, "condition state")
            return serdes.deserialize(text)

        op, start = b.host.condition_start(self._parent, name)
        if isinstance(start, b.ConditionState_Succeeded):
            return load(start.value)
        if isinstance(start, b.ConditionState_Failed):
            raise _error(start.value)
        attempt = start.value.attempt
        recorded = start.value.state
        with_step = _wants_arg(check, 2)
        try:
            state = dump(initial_state)[1] if recorded is None else load(recorded)
        except Exception as e:  # noqa: BLE001
            state, failure = None, e
        else:
            failure = None
        while True:
            try:
                if failure is not None:
                    raise failure
                value = check(state, StepContext(op, attempt)) if with_step else check(state)
                text, value = dump(value)
                decision = strategy.decide(value, attempt)
            except Exception as e:  # noqa: BLE001 - a failed check fails the operation
                error = DurableError.from_exception(e)
                b.host.condition_fail(op, _wit_error(error))
                raise error from (None if error is e else e)
            if isinstance(decision, DurableError):
                b.host.condition_fail(op, _wit_error(decision))
                raise decision
            try:
                if decision is None:
                    b.host.condition_succeed(op, text)
                    return value
                # Suspends unless the delay is zero: then the next check runs now.
                attempt = b.host.condition_continue(op, text, decision)
            except b.Err as e:  # the host failed the condition instead
                raise _error(e.value) from None
            state = value

    def now(self) -> "datetime.datetime":
        """The wall-clock time (an aware UTC `datetime`, whole milliseconds), recorded once
        at this position in a step named `durable.now`: the first run reads the clock, every
        replay returns the recorded instant. Use it instead of `time.time()`::

            started = ctx.now()
            ctx.wait(seconds=60)
            ctx.step("audit", lambda _: {"started": started.isoformat()})  # same on replay
        """
        millis = self.step(det.NOW_STEP, lambda _: det.read_now(), retry=RetryStrategy.none())
        return det.to_datetime(millis)

    def random(self) -> float:
        """A random float in [0, 1), recorded once at this position in a step named
        `durable.random` (as an integer n in [0, 2**53); the value is n / 2**53, as in the
        Rust SDK): the same number on every replay. `dice = 1 + int(ctx.random() * 6)`."""
        n = self.step(det.RANDOM_STEP, lambda _: det.read_random(), retry=RetryStrategy.none())
        return det.to_float(n)

    def uuid(self) -> str:
        """A random version 4 UUID (lowercase hyphenated text), recorded once at this
        position in a step named `durable.uuid`: the same on every replay, so it can serve
        as an idempotency key. `order_id = ctx.uuid()`."""
        return self.step(det.UUID_STEP, lambda _: det.read_uuid(), retry=RetryStrategy.none())

    def invoke(
        self,
        function: str,
        input: Any = None,
        name: Optional[str] = None,
        tenant_id: Optional[str] = None,
    ) -> Any:
        """Invoke the durable function `function` (of this execution's tenant, its latest
        version) with `input` (JSON) and return its output; raises its error when it failed
        (`Execution.Timeout` / `Execution.Stopped` when it timed out or was stopped), or
        `Invoke.FunctionNotFound` / `Invoke.Refused` (rate, quotas, `max_queued`) when no
        callee started. The callee is an execution of its own, started exactly once; this
        one is unloaded until it ends, and on replay gets the recorded outcome.
        `tenant_id` may only name this execution's own tenant (recorded in history).
        `receipt = ctx.invoke("payment", {"order": "o-1"}, name="charge")`."""
        text, _ = round_trip(input, "invoke input")
        options = b.InvokeOptions(tenant_id=tenant_id)
        try:
            output = b.host.invoke(self._parent, name, function, text, options)
        except b.Err as e:
            raise _error(e.value) from None
        return decode(output, "invoke result")

    def run_in_child_context(self, name: Optional[str], fn: Callable[["Context"], Any]) -> Any:
        """Run `fn(child)` in a child context: a group of operations checkpointed as one,
        each inside carrying the child's id as parent. On replay a completed child returns
        its recorded result (or raises its failure) without running `fn`."""
        return self._run_context(name, b.ContextKind.RUN_IN_CHILD_CONTEXT, fn)

    def _run_context(self, name: Optional[str], kind: Any, fn: Callable[["Context"], Any]) -> Any:
        op, state = b.host.context_start(self._parent, name, kind)
        if isinstance(state, b.ContextState_Succeeded):
            return decode(state.value, "child context result")
        if isinstance(state, b.ContextState_Failed):
            raise _error(state.value)
        try:
            text, value = round_trip(fn(Context(op)), "child context result")
        except Exception as e:  # noqa: BLE001
            error = DurableError.from_exception(e)
            b.host.context_fail(op, _wit_error(error))
            raise error from (None if error is e else e)
        try:
            b.host.context_succeed(op, text)
        except b.Err as e:
            raise _error(e.value) from None
        return value

    def map(
        self,
        name: Optional[str],
        items: Any,
        fn: Callable[["Context", Any, int], Any],
        *,
        max_concurrency: Optional[int] = None,
        completion: Optional[CompletionConfig] = None,
        item_namer: Optional[Callable[[Any, int], str]] = None,
    ) -> BatchResult:
        """Run `fn(ctx, item, index)` over `items`, each item in a child context of its own
        (history: a `Map` context, a `MapIteration` per item), and return a `BatchResult`
        with every started item's status and result or error, in item order. An exception
        from `fn` fails that item only; `completion` decides when the map completes early
        (default: every item runs). On replay finished items are not run again::

            batch = ctx.map("welcome", users, lambda c, user, i: c.step("send", lambda _: user),
                            max_concurrency=10,
                            completion=CompletionConfig(tolerated_failure_count=1))
            sent = batch.get_results()  # raises the first item's error, if any
        """
        items = list(items)
        names = [item_namer(item, i) for i, item in enumerate(items)] if item_namer else []

        def run(branch: str, index: int) -> None:
            _run_branch(branch, lambda ctx: fn(ctx, items[index], index))

        return run_batch(
            self._parent, name, "MAP", len(items), names, max_concurrency,
            completion or CompletionConfig(), run, decode,
        )

    def parallel(
        self,
        name: Optional[str],
        branches: Any,
        *,
        max_concurrency: Optional[int] = None,
        completion: Optional[CompletionConfig] = None,
    ) -> BatchResult:
        """Run `branches` (each `fn(ctx)`, or a `(name, fn)` pair), each in a child context
        of its own (history: a `Parallel` context, a `ParallelBranch` per branch), and
        return a `BatchResult` in branch order; completion and replay as for `map`::

            batch = ctx.parallel("lookups", [("price", lambda c: c.step("fetch", lambda _: 42)),
                                             lambda c: c.step("fetch", lambda _: 7)])
        """
        pairs = [b_ if isinstance(b_, tuple) else (None, b_) for b_ in branches]

        def run(branch: str, index: int) -> None:
            _run_branch(branch, pairs[index][1])

        return run_batch(
            self._parent, name, "PARALLEL", len(pairs), [n for n, _ in pairs],
            max_concurrency, completion or CompletionConfig(), run, decode,
        )


def _run_branch(branch: str, fn: Callable[[Context], Any]) -> None:
    """Run one branch in its context and end the context with its result or error."""
    try:
        text, _ = round_trip(fn(Context(branch)), "branch result")
    except Exception as e:  # noqa: BLE001 - a failed branch is that item's failure
        b.host.context_fail(branch, _wit_error(DurableError.from_exception(e)))
        return
    try:
        b.host.context_succeed(branch, text)
    except b.Err:  # the host recorded a failure instead (PayloadTooLarge)
        pass
