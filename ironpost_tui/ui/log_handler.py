"""Log records as notices while the console owns the terminal.

The CLI logs to stdout; under Textual that would write over the screen.  While
the console runs, the root logger's handlers are swapped for one that posts
warnings and errors to the app (thread-safe), and put back afterwards.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from textual.app import App

from ironpost_tui.engine.held_logs import HeldLogs
from ironpost_tui.ui.messages import NoticePosted


class NoticeHandler(logging.Handler):
    def __init__(self, app: App[Any], level: int = logging.WARNING) -> None:
        super().__init__(level)
        self.app = app

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage().splitlines()[0] if record.getMessage() else record.levelname
            self.app.post_message(NoticePosted(f"{record.levelname.lower()}: {text}"))
        except Exception:  # a handler must never raise into the code that logged
            self.handleError(record)


@contextmanager
def logging_to(app: App[Any], held: HeldLogs | None = None) -> Iterator[None]:
    """The root logger's records to ``app``; ``held``'s too (records logged before the app existed)."""
    root = logging.getLogger()
    saved = root.handlers[:]
    notices = NoticeHandler(app)
    root.handlers = [notices]
    if held is not None:
        held.forward_to(notices)
    try:
        yield
    finally:
        root.handlers = saved
