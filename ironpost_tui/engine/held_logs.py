"""Log records held back while nothing may write to the terminal yet, then handed on.

The console starts the engine in a thread before its interface has loaded (engine/live.py's begin()):
what the start logs meanwhile must neither be written over the terminal the console is about to own
nor be lost.  HeldLogs keeps the records, in order, until forward_to() hands them to the console's
handler, which takes every record from then on.
"""

from __future__ import annotations

import logging
import threading


class HeldLogs(logging.Handler):
    """Keeps every record until forward_to(); from then on passes each one to that handler."""

    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self._held: list[logging.LogRecord] = []
        self._target: logging.Handler | None = None
        self._guard = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        with self._guard:
            if self._target is None:
                self._held.append(record)
                return
            target = self._target
        _pass(target, record)

    def forward_to(self, target: logging.Handler) -> None:
        """Hand the records held so far to ``target`` (those at its level or above), then every later one."""
        with self._guard:
            held, self._held, self._target = self._held, [], target
            for record in held:
                _pass(target, record)

    def held(self) -> list[logging.LogRecord]:
        with self._guard:
            return list(self._held)


def _pass(target: logging.Handler, record: logging.LogRecord) -> None:
    if record.levelno >= target.level:
        target.handle(record)
