"""Step configuration: semantics and retry strategies, mirroring the Rust SDK
(`durable_sdk::{RetryStrategy, Jitter, StepSemantics}`) with the same defaults. Owns the
mapping onto the WIT `retry-policy`; does no IO.

Durations are seconds (`int` or `float`) or `datetime.timedelta`; the host works in whole
milliseconds and a sub-millisecond remainder rounds up, so a non-zero duration never
becomes zero.
"""

from __future__ import annotations

import dataclasses
import datetime
import enum
from typing import Iterable, Optional, Union

Duration = Union[int, float, datetime.timedelta]


class StepSemantics(enum.Enum):
    """When the host records the start of a step attempt."""

    #: The default. The start is recorded without waiting for disk; after a crash
    #: mid-attempt the attempt runs again, so the body may run more than once per retry.
    AT_LEAST_ONCE_PER_RETRY = "at-least-once-per-retry"
    #: The start is on disk before the body runs; after a crash mid-attempt the attempt
    #: counts as failed with `StepInterrupted` and the retry policy decides.
    AT_MOST_ONCE_PER_RETRY = "at-most-once-per-retry"


AT_LEAST_ONCE = StepSemantics.AT_LEAST_ONCE_PER_RETRY
AT_MOST_ONCE = StepSemantics.AT_MOST_ONCE_PER_RETRY


class Jitter(enum.Enum):
    """Randomisation applied to a computed retry delay."""

    NONE = "none"  #: exactly the computed delay
    FULL = "full"  #: uniform in [0, delay] (the default, as in AWS)
    HALF = "half"  #: uniform in [delay/2, delay]


def millis(d: Duration) -> int:
    """Whole milliseconds in `d`, rounding a sub-millisecond remainder up."""
    if isinstance(d, datetime.timedelta):
        micros = (d.days * 86_400 + d.seconds) * 1_000_000 + d.microseconds
    else:
        if d < 0:
            raise ValueError(f"a duration cannot be negative: {d}")
        micros = round(d * 1_000_000)
    if micros < 0:
        raise ValueError(f"a duration cannot be negative: {d}")
    return -(-micros // 1000)


@dataclasses.dataclass(frozen=True)
class _Policy:
    max_attempts: int
    initial_delay_ms: int
    max_delay_ms: int
    # ("exponential", rate) or ("linear", increment_ms)
    backoff: tuple
    jitter: Jitter
    retry_on: tuple = ()
    never_retry_on: tuple = ()

    @staticmethod
    def host_default() -> "_Policy":
        """The host's default policy, spelled out: 6 attempts, 5 s initial delay, 2x
        backoff, 60 s max delay, full jitter (as in AWS durable functions)."""
        return _Policy(6, 5_000, 60_000, ("exponential", 2.0), Jitter.FULL)


def _error_types(types: Iterable) -> tuple:
    """Error type names; an exception class stands for its `error_type` (a `DurableError`
    subclass) or its name."""
    out = []
    for t in types:
        if not isinstance(t, str):
            declared = getattr(t, "error_type", None)
            t = declared if isinstance(declared, str) else t.__name__
        out.append(t)
    return tuple(out)


class RetryStrategy:
    """How the host retries a failed step.

    Attempt `n` (1-based) that fails is followed, if the policy allows another attempt, by a
    delay of `initial * rate**(n-1)` (exponential) or `initial + increment * (n-1)`
    (linear), capped at `max_delay`, then jittered. Between attempts the execution is
    suspended, not sleeping in memory. Instances are immutable: the modifiers return a new
    strategy::

        RetryStrategy.exponential(5, initial=1, rate=2.0, max_delay=30) \\
            .jitter(Jitter.NONE).retry_on(["TransientError"])
    """

    __slots__ = ("_policy",)

    def __init__(self, policy: Optional[_Policy] = None) -> None:
        # None: the host's default policy (the WIT `retry: none`).
        self._policy = policy

    @classmethod
    def default(cls) -> "RetryStrategy":
        """The host's default policy (6 attempts, 5 s, 2x, 60 s, full jitter)."""
        return cls()

    @classmethod
    def none(cls) -> "RetryStrategy":
        """No retry: one attempt; the first failure is final."""
        return cls(_Policy(1, 0, 0, ("exponential", 1.0), Jitter.NONE))

    @classmethod
    def exponential(
        cls, max_attempts: int, initial: Duration, rate: float, max_delay: Duration
    ) -> "RetryStrategy":
        """Up to `max_attempts` attempts in total (the first included); the delay after
        attempt `n` is `initial * rate**(n-1)`, capped at `max_delay`. Full jitter."""
        return cls(
            _Policy(max_attempts, millis(initial), millis(max_delay), ("exponential", float(rate)), Jitter.FULL)
        )

    @classmethod
    def linear(
        cls, max_attempts: int, initial: Duration, increment: Duration, max_delay: Duration
    ) -> "RetryStrategy":
        """Up to `max_attempts` attempts; the delay after attempt `n` is
        `initial + increment * (n-1)`, capped at `max_delay`. Full jitter."""
        return cls(
            _Policy(max_attempts, millis(initial), millis(max_delay), ("linear", millis(increment)), Jitter.FULL)
        )

    @classmethod
    def fixed(cls, max_attempts: int, delay: Duration) -> "RetryStrategy":
        """The same delay between every attempt, without jitter."""
        return cls.exponential(max_attempts, delay, 1.0, delay).jitter(Jitter.NONE)

    def _with(self, **changes) -> "RetryStrategy":
        base = self._policy or _Policy.host_default()
        return RetryStrategy(dataclasses.replace(base, **changes))

    def jitter(self, jitter: Jitter) -> "RetryStrategy":
        """This strategy with that jitter (on the default: the host's default policy
        spelled out, with this jitter)."""
        return self._with(jitter=jitter)

    def retry_on(self, error_types: Iterable) -> "RetryStrategy":
        """Retry only errors of these types (names or error classes); empty retries all."""
        return self._with(retry_on=_error_types(error_types))

    def never_retry_on(self, error_types: Iterable) -> "RetryStrategy":
        """Never retry errors of these types (checked after `retry_on`)."""
        return self._with(never_retry_on=_error_types(error_types))

    @property
    def max_attempts(self) -> int:
        """Attempts in all, the first included."""
        return (self._policy or _Policy.host_default()).max_attempts

    def __eq__(self, other: object) -> bool:
        return isinstance(other, RetryStrategy) and self._policy == other._policy

    def __repr__(self) -> str:
        return f"RetryStrategy({self._policy!r})" if self._policy else "RetryStrategy.default()"

    def to_wit(self):
        """The WIT `option<retry-policy>` (`None`: the host default)."""
        if self._policy is None:
            return None
        from . import _bindings as b

        p = self._policy
        kind, value = p.backoff
        backoff = b.Backoff_Exponential(value) if kind == "exponential" else b.Backoff_Linear(value)
        return b.RetryPolicy(
            max_attempts=p.max_attempts,
            initial_delay_ms=p.initial_delay_ms,
            max_delay_ms=p.max_delay_ms,
            backoff=backoff,
            jitter=getattr(b.Jitter, p.jitter.name),
            retry_on=list(p.retry_on),
            never_retry_on=list(p.never_retry_on),
        )
