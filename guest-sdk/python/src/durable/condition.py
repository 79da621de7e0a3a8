"""`WaitStrategy`: when a `wait_for_condition` checks again and when it gives up, mirroring
the Rust SDK's `durable_sdk::WaitStrategy` with the same defaults (AWS's: 60 attempts, 5 s
initial delay, 1.5x backoff, 300 s max delay, full jitter). The strategy runs in the guest
after each check; the host journals what it decided. Does no IO.
"""

from __future__ import annotations

import dataclasses
import random
from typing import Any, Callable, Optional, Union

from .errors import DurableError
from .retry import Duration, Jitter, millis


class MaxAttemptsExceeded(DurableError):
    """The wait strategy ran out of attempts before the condition was met."""

    error_type = "WaitForCondition.MaxAttemptsExceeded"


@dataclasses.dataclass(frozen=True)
class WaitStrategy:
    """Poll until `done(state)` is true. After check `n` (1-based) that is not done, the
    next check follows `initial_delay * backoff_rate**(n-1)` seconds, capped at
    `max_delay`, then jittered; the execution is suspended meanwhile. When check
    `max_attempts` is not done either, the operation fails with `MaxAttemptsExceeded`.

    `WaitStrategy(lambda s: s["status"] == "READY", initial_delay=2, max_attempts=10)`
    """

    done: Callable[[Any], bool]
    max_attempts: int = 60
    initial_delay: Duration = 5
    max_delay: Duration = 300
    backoff_rate: float = 1.5
    jitter: Jitter = Jitter.FULL

    @classmethod
    def fixed(cls, done: Callable[[Any], bool], delay: Duration, max_attempts: int = 60):
        """The same `delay` between every two checks: no backoff, no jitter."""
        return cls(done, max_attempts, delay, delay, 1.0, Jitter.NONE)

    def decide(self, state: Any, attempt: int, unit_random: Optional[float] = None) -> Union[None, int, DurableError]:
        """After check `attempt` returned `state`: `None` to stop, the delay in ms before
        the next check, or the error to fail with."""
        if self.done(state):
            return None
        if attempt >= max(1, self.max_attempts):
            return MaxAttemptsExceeded(
                f"the condition was not met after {attempt} checks "
                f"(max_attempts = {self.max_attempts})"
            )
        base = millis(self.initial_delay) * max(0.0, self.backoff_rate) ** (attempt - 1)
        capped = min(base, millis(self.max_delay))
        r = random.random() if unit_random is None else unit_random
        if self.jitter is Jitter.FULL:
            capped *= r
        elif self.jitter is Jitter.HALF:
            capped = capped / 2 + capped / 2 * r
        return int(round(capped))


class Serdes:
    """How a `wait_for_condition` state is checkpointed: `serialize(value) -> JSON text`
    and `deserialize(text) -> value`. The default is JSON (`json.dumps` / `json.loads`)."""

    def serialize(self, value: Any) -> str:  # pragma: no cover - overridden
        raise NotImplementedError

    def deserialize(self, text: str) -> Any:  # pragma: no cover - overridden
        raise NotImplementedError
