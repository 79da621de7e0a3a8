"""The component's export: `WitWorld.handle`, which componentize-py calls for the world's
`handle` export. Parses the event, runs the function registered with `@handler`, serializes
its output and maps any exception to the `err` result (componentize-py turns a raised
`Err(error-object)` into it). Not part of the API beyond `handler` and `WitWorld`.
"""

from __future__ import annotations

import json
import sys
from typing import Any, Callable, Optional

from . import _bindings as b
from .context import Context, _wit_error
from .errors import DurableError, InvalidInput, SerializationError, _dumps

_HANDLER: Optional[Callable[[Context, Any], Any]] = None


def handler(fn: Callable[[Context, Any], Any]) -> Callable[[Context, Any], Any]:
    """Register `fn(ctx, event)` as the durable function (one per component). `event` is the
    invocation input parsed from JSON (`None` when empty); the return value is the output
    and must be JSON; an exception fails the execution with that error (a `DurableError`
    as it is; any other exception with its class name as the error type)."""
    global _HANDLER
    if _HANDLER is not None and _HANDLER is not fn:
        raise RuntimeError(f"@durable.handler used twice: {_HANDLER.__qualname__} and {fn.__qualname__}")
    _HANDLER = fn
    return fn


def _line_buffered() -> None:
    """Prints reach the host line by line, before the next durable operation (a suspension
    is a trap: a buffer not yet flushed would be lost)."""
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.reconfigure(line_buffering=True)
        except (AttributeError, ValueError):
            pass


def run(event: str) -> str:
    """The whole export without the WIT: parse, call, serialize. Raises `DurableError`."""
    if _HANDLER is None:
        raise DurableError("no function registered: decorate one with @durable.handler", error_type="Runtime.NoHandler")
    text = event.strip()
    try:
        value = json.loads(text) if text else None
    except ValueError as e:
        raise InvalidInput(f"the input is not JSON: {e}") from None
    try:
        output = _HANDLER(Context(), value)
    except Exception as e:  # noqa: BLE001 - the execution fails with it
        raise DurableError.from_exception(e) from None
    try:
        return _dumps(output)
    except (TypeError, ValueError) as e:
        raise SerializationError(f"could not serialize the function's output: {e}") from None


class WitWorld:
    """The export componentize-py binds to the world `durable-function-http`."""

    def handle(self, event: str) -> str:
        _line_buffered()
        try:
            return run(event)
        except DurableError as e:
            raise b.Err(_wit_error(e)) from None
