"""Map and parallel: `Context.map` runs a function over items, `Context.parallel` a list of
branches, each item or branch in a child context of its own, under a concurrency bound and
a `CompletionConfig`; both return a `BatchResult`. The same call sequence as the Rust SDK
(wit/README.md, "Map and parallel"): `batch-start`, then for each branch the host names
`branch-start`, the branch and `context-succeed` / `context-fail`, then `batch-finish`.
Evaluates no policy: the host says which branches run and when the batch is complete.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional, Sequence

from . import _bindings as b
from .errors import DurableError

#: The error type of an invalid map or parallel configuration.
INVALID_CONFIG = "InvalidConfig"

SUCCEEDED = "SUCCEEDED"
FAILED = "FAILED"
STARTED = "STARTED"


@dataclass(frozen=True)
class CompletionConfig:
    """When a map or parallel completes before every item ran (AWS `CompletionConfig`).
    The default runs every item and tolerates every failure."""

    min_successful: Optional[int] = None
    tolerated_failure_count: Optional[int] = None
    tolerated_failure_percentage: Optional[float] = None

    @staticmethod
    def all_completed() -> "CompletionConfig":
        return CompletionConfig()

    @staticmethod
    def all_successful() -> "CompletionConfig":
        """Complete at the first failure."""
        return CompletionConfig(tolerated_failure_count=0)

    @staticmethod
    def first_successful() -> "CompletionConfig":
        """Complete at the first success."""
        return CompletionConfig(min_successful=1)


@dataclass
class BatchItem:
    """One item (or branch) that started: its index, status (`SUCCEEDED`, `FAILED`,
    `STARTED`), result or error."""

    index: int
    status: str
    result: Any = None
    error: Optional[DurableError] = None


@dataclass
class BatchResult:
    """What a map or parallel returns: each item that started, in index order, and why the
    batch completed (`ALL_COMPLETED`, `MIN_SUCCESSFUL_REACHED`,
    `FAILURE_TOLERANCE_EXCEEDED`)."""

    items: list = field(default_factory=list)
    completion_reason: str = "ALL_COMPLETED"

    def results(self) -> list:
        """The results of the items that succeeded, in index order."""
        return [i.result for i in self.items if i.status == SUCCEEDED]

    def errors(self) -> list:
        """The errors of the items that failed, in index order."""
        return [i.error for i in self.items if i.status == FAILED]

    def succeeded(self) -> list:
        return [i for i in self.items if i.status == SUCCEEDED]

    def failed(self) -> list:
        return [i for i in self.items if i.status == FAILED]

    def started(self) -> list:
        return [i for i in self.items if i.status == STARTED]

    @property
    def has_failure(self) -> bool:
        return any(i.status == FAILED for i in self.items)

    @property
    def status(self) -> str:
        """`FAILED` when any item failed, else `SUCCEEDED`."""
        return FAILED if self.has_failure else SUCCEEDED

    @property
    def success_count(self) -> int:
        return len(self.succeeded())

    @property
    def failure_count(self) -> int:
        return len(self.failed())

    @property
    def started_count(self) -> int:
        return len(self.started())

    @property
    def total_count(self) -> int:
        """How many items started."""
        return len(self.items)

    def throw_if_error(self) -> None:
        """Raise the first failed item's error (by index), if any."""
        errors = self.errors()
        if errors:
            raise errors[0]

    def get_results(self) -> list:
        """The results in index order, after `throw_if_error`."""
        self.throw_if_error()
        return self.results()


_STATUS = {"SUCCEEDED": SUCCEEDED, "FAILED": FAILED, "STARTED": STARTED}
_REASON = {
    "ALL_COMPLETED": "ALL_COMPLETED",
    "MIN_SUCCESSFUL_REACHED": "MIN_SUCCESSFUL_REACHED",
    "FAILURE_TOLERANCE_EXCEEDED": "FAILURE_TOLERANCE_EXCEEDED",
}


def _check(max_concurrency: Optional[int], completion: CompletionConfig) -> None:
    if max_concurrency is not None and max_concurrency < 1:
        raise DurableError.of(INVALID_CONFIG, "max_concurrency must be at least 1")
    p = completion.tolerated_failure_percentage
    if p is not None and not 0 <= p <= 100:
        raise DurableError.of(
            INVALID_CONFIG, f"tolerated_failure_percentage {p} is not between 0 and 100"
        )


def run_batch(
    parent: Optional[str],
    name: Optional[str],
    kind: str,
    count: int,
    names: Sequence[Optional[str]],
    max_concurrency: Optional[int],
    completion: CompletionConfig,
    run: Callable[[str, int], Any],
    decode: Callable[[str, str], Any],
) -> BatchResult:
    """The call sequence; `kind` is `MAP` or `PARALLEL`; `run(branch_id, index)` runs a
    branch and ends its context."""
    _check(max_concurrency, completion)
    options = b.BatchOptions(
        kind=getattr(b.BatchKind, kind),
        count=count,
        max_concurrency=max_concurrency,
        completion=b.CompletionConfig(
            min_successful=completion.min_successful,
            tolerated_failure_count=completion.tolerated_failure_count,
            tolerated_failure_percentage=(
                None
                if completion.tolerated_failure_percentage is None
                else float(completion.tolerated_failure_percentage)
            ),
        ),
    )
    op, state = b.host.batch_start(parent, name, options)
    if isinstance(state, b.BatchState_Completed):
        outcome = state.value
    else:
        for index in state.value:
            branch, st = b.host.branch_start(op, index, names[index] if index < len(names) else None)
            if isinstance(st, b.BranchState_Run):
                run(branch, index)
        outcome = b.host.batch_finish(op)
    items = []
    for item in outcome.items:
        status = _STATUS[item.status.name]
        out = BatchItem(index=item.index, status=status)
        if status == SUCCEEDED:
            out.result = decode(item.result if item.result is not None else "null", "branch result")
        if item.error is not None:
            e = item.error
            out.error = DurableError.of(e.error_type, e.error_message, e.error_data)
        items.append(out)
    return BatchResult(items=items, completion_reason=_REASON[outcome.reason.name])
