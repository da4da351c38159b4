"""engine/held_logs.py: records logged before the console's handler exists are held, in order, then
handed to it (at its level); later records go straight through."""

from __future__ import annotations

import logging
import threading

from ironpost_tui.engine.held_logs import HeldLogs


class Collect(logging.Handler):
    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.seen.append(record.getMessage())


def test_held_then_forwarded_in_order_at_the_targets_level() -> None:
    log = logging.getLogger("test_held_logs.order")
    log.setLevel(logging.DEBUG)
    log.propagate = False
    held = HeldLogs()
    log.addHandler(held)
    try:
        log.info("info before")
        log.warning("warning before")
        worker = threading.Thread(target=lambda: log.error("error from a thread"))
        worker.start()
        worker.join()
        assert [r.getMessage() for r in held.held()] == ["info before", "warning before", "error from a thread"]
        target = Collect(logging.WARNING)
        assert target.seen == []  # nothing passed on before forward_to
        held.forward_to(target)
        assert target.seen == ["warning before", "error from a thread"]  # the info record is below its level
        assert held.held() == []
        log.warning("warning after")
        log.debug("debug after")
        assert target.seen == ["warning before", "error from a thread", "warning after"]
    finally:
        log.removeHandler(held)
