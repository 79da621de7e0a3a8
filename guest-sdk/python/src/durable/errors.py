"""Typed errors: what a step, a callback, a child context or the whole execution fails with,
in the shape the host records in history (`error_type`, `error_message`, optional
`error_data`). Owns the conversion to and from the WIT `error-object`; does no IO.

`DurableError` is the base. A subclass is an error type of its own: its `error_type` is
the class name unless it sets one, and it is registered, so a failure recorded with that
type comes back (on the first run and on every replay) as an instance of that class::

    class ValidationError(DurableError):
        pass

    raise ValidationError("username is required")   # error_type "ValidationError"

Any other exception a step body or the handler raises is recorded with its class name as
the error type (`ValueError`, `KeyError`) and its traceback in `error_data`.
"""

from __future__ import annotations

import json
import traceback
from typing import Any, ClassVar, Optional

# error type -> the class that represents it (filled by DurableError.__init_subclass__).
_REGISTRY: dict[str, type["DurableError"]] = {}


class DurableError(Exception):
    """An error as the host records it: `error_type`, `error_message`, `error_data`.

    `DurableError("message")` in a subclass takes the class's error type;
    `DurableError("message", error_type="Other")` names one. `data` is any JSON value
    (kept as JSON text in `error_data`).
    """

    error_type: str = "Error"
    _fixed_type: ClassVar[Optional[str]] = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # A subclass that does not set error_type is named after itself.
        if "error_type" not in cls.__dict__:
            cls.error_type = cls.__name__
        _REGISTRY.setdefault(cls.error_type, cls)

    def __init__(
        self,
        message: str = "",
        *,
        error_type: Optional[str] = None,
        data: Any = None,
        error_data: Optional[str] = None,
    ) -> None:
        super().__init__(message)
        if error_type is not None:
            self.error_type = error_type
        self.error_message = message
        if error_data is None and data is not None:
            try:
                error_data = _dumps(data)
            except (TypeError, ValueError):
                error_data = None  # optional, and must be JSON for the host to take it
        self.error_data = error_data

    @property
    def data(self) -> Any:
        """`error_data` parsed as JSON (`None` when absent or not JSON)."""
        if self.error_data is None:
            return None
        try:
            return json.loads(self.error_data)
        except ValueError:
            return None

    def is_type(self, error_type: str) -> bool:
        """Whether this error has the given type."""
        return self.error_type == error_type

    def __str__(self) -> str:
        return f"{self.error_type}: {self.error_message}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}(error_type={self.error_type!r}, error_message={self.error_message!r})"

    @staticmethod
    def of(error_type: str, message: str, error_data: Optional[str] = None) -> "DurableError":
        """The error of this type, as the class registered for it (or `DurableError`)."""
        cls = _REGISTRY.get(error_type, DurableError)
        err = cls.__new__(cls)
        DurableError.__init__(err, message, error_type=error_type, error_data=error_data)
        return err

    @staticmethod
    def from_exception(e: BaseException) -> "DurableError":
        """Any exception as a `DurableError`: itself, or one typed after its class with its
        traceback as data."""
        if isinstance(e, DurableError):
            return e
        tb = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        err = DurableError(str(e), error_type=type(e).__name__, data={"traceback": tb})
        err.__cause__ = e
        return err


class InvalidInput(DurableError):
    """The event is not JSON (an empty event is `None`)."""


class SerializationError(DurableError):
    """A value does not round-trip through JSON."""


class HttpError(DurableError):
    """An outbound HTTP request failed (the message names the wasi error code, e.g.
    `HttpRequestDenied`). A non-2xx status is not an error."""


class PayloadTooLarge(DurableError):
    """The host refused a value over its payload limit."""


class InvalidPayload(DurableError):
    """The host refused a value that is not JSON."""


class StepInterrupted(DurableError):
    """An at-most-once attempt was cut short by a crash or a trap."""


class CallbackTimeout(DurableError):
    """The callback's `timeout` elapsed."""

    error_type = "Callback.Timeout"


class CallbackHeartbeatTimeout(DurableError):
    """No heartbeat or completion arrived within the callback's `heartbeat_timeout`."""

    error_type = "Callback.HeartbeatTimeout"


class LimitExceeded(DurableError):
    """A host limit on what a guest may record (names, depth, history size, ...)."""

    error_type = "Durable.LimitExceeded"


def _dumps(value: Any) -> str:
    """JSON text as the host and the Rust SDK write it: compact, UTF-8, no NaN."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
