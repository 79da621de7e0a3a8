"""Deterministic values (wit/README.md, "Deterministic values"): `ctx.now()`, `ctx.random()`
and `ctx.uuid()` are ordinary steps with reserved names, at-least-once and never retried,
whose bodies read the guest's clock or random source (WASI). The step's checkpoint records
the value once per position; every replay returns it. This module holds the names and the
pure conversions (recorded JSON value <-> Python value), the same as the Rust SDK's."""

from __future__ import annotations

import datetime
import os
import time
import uuid

NOW_STEP = "durable.now"
RANDOM_STEP = "durable.random"
UUID_STEP = "durable.uuid"

#: `random()` records an integer in [0, 2**53) and divides it by 2**53: exact in JSON and in
#: every SDK.
RANDOM_BITS = 53

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)


def read_now() -> int:
    """The step body of `now`: the wall clock in whole Unix milliseconds."""
    return time.time_ns() // 1_000_000


def to_datetime(millis: int) -> datetime.datetime:
    """A recorded `now` as an aware UTC datetime (exact: no float on the way)."""
    return _EPOCH + datetime.timedelta(milliseconds=millis)


def read_random() -> int:
    """The step body of `random`: RANDOM_BITS random bits as an integer."""
    return int.from_bytes(os.urandom(8), "big") >> (64 - RANDOM_BITS)


def to_float(n: int) -> float:
    """A recorded `random` as a float in [0, 1)."""
    return n / (1 << RANDOM_BITS)


def read_uuid() -> str:
    """The step body of `uuid`: a version 4 UUID, lowercase hyphenated."""
    return str(uuid.UUID(bytes=os.urandom(16), version=4))
