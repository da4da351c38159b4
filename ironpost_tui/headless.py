"""The headless agent: the engine in a plain loop, until a signal stops it."""

from __future__ import annotations

import logging
import threading

from .engine import Engine
from .errors import ExitStatus, InterfaceGone

log = logging.getLogger("ironpost")


def run(engine: Engine, stop: threading.Event) -> ExitStatus:
    report = engine.start()
    how = "adopted the pinned program on" if report.adopted else "attached ironpost_xdp to"
    log.info(
        "ready: %s %s (%s mode, prog id %d) in %.2f s%s",
        how,
        report.iface,
        report.mode,
        report.prog_id,
        report.seconds,
        f"; pinned under {report.pin_dir}" if report.pin_dir else "",
    )
    state = "up"
    try:
        while not stop.is_set():
            tick = engine.tick(timeout_ms=100)
            if tick.interface_state != state:
                state = tick.interface_state
                if state == "gone":
                    raise InterfaceGone(f"interface {report.iface} disappeared: the program went with it; exiting")
                log.warning("interface %s is %s", report.iface, state)
    finally:
        engine.close()
    log.info("stopped: %s", "left the pinned program enforcing" if report.pin_dir else f"detached from {report.iface}")
    return ExitStatus.OK
