"""The replay-aware logger: a thin handle over the host's `log` import. The host records
each line once and drops it when the same code runs again during replay, so guest code logs
freely without duplicates. Owns no state.

`print()` also reaches the execution's logs: the host captures stdout (level info) and
stderr (level warn) line by line and keys each line by the replay position exactly as it
keys `log` lines, so a print
is recorded once too (the SDK makes both streams line-buffered, so a line is written
before the next durable operation). `LogHandler` routes the standard `logging` module here.
"""

from __future__ import annotations

import logging


class Logger:
    """Writes replay-aware lines into the execution's logs (`ctx.logger`, `step.logger`).

    Lines logged outside steps are recorded once although that code runs again on every
    replay; lines logged inside a step body are recorded once per attempt.
    """

    __slots__ = ()

    def debug(self, message: object) -> None:
        _log("DEBUG", message)

    def info(self, message: object) -> None:
        _log("INFO", message)

    def warn(self, message: object) -> None:
        _log("WARN", message)

    warning = warn

    def error(self, message: object) -> None:
        _log("ERROR", message)


def _log(level: str, message: object) -> None:
    from . import _bindings as b

    b.host.log(getattr(b.LogLevel, level), str(message))


class LogHandler(logging.Handler):
    """A `logging.Handler` that writes records through the replay-aware logger::

    logging.getLogger().addHandler(durable.LogHandler())
    """

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= logging.ERROR:
            level = "ERROR"
        elif record.levelno >= logging.WARNING:
            level = "WARN"
        elif record.levelno >= logging.INFO:
            level = "INFO"
        else:
            level = "DEBUG"
        _log(level, self.format(record))


LOGGER = Logger()
