"""The headless agent: the engine in a plain loop, until a signal stops it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ironpost_tui.config.watch import ConfigSource, reload_into
from ironpost_tui.detectors import AlertChange, ChangeKind
from ironpost_tui.engine.engine import Engine
from ironpost_tui.errors import ExitStatus, InterfaceGone
from ironpost_tui.kernel.host import InterfaceState
from ironpost_tui.rules.audit import Actor

log = logging.getLogger("ironpost")


class Flag:
    """threading.Event's set/clear/is_set without its lock, for signal handlers to set.

    A Python signal handler runs in the main thread between two bytecodes, possibly in the
    middle of the loop's own Event.clear(), which holds the Event's non-reentrant lock: an
    Event.set() there waits for that lock forever, and the agent no longer reloads, panics or
    stops.  A plain attribute write is atomic under the GIL and never blocks.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


@dataclass
class Controls:
    """What signal handlers ask of the loop: stop (INT/TERM/HUP), reload (USR1), panic (USR2)."""

    stop: Flag = field(default_factory=Flag)
    reload: Flag = field(default_factory=Flag)
    panic: Flag = field(default_factory=Flag)


def reload_config(engine: Engine, source: ConfigSource, why: str) -> None:
    """Reload the file; on an error the rules in force stay as they are."""
    result = reload_into(engine, source, why)
    if result.error is not None:
        errors = result.error.splitlines()
        refused = {"event": "reload_refused", "path": str(source.path), "errors": errors}
        log.error("reload of %s refused, the previous rules stay in force:", source.path, extra=refused)
        for line in errors:
            log.error("  %s", line, extra={"event": "reload_refused"})
        return
    if result.changed:
        log.info(
            "reloaded %s (%s): %d rules in force",
            source.path,
            why,
            result.rules,
            extra={"event": "reload", "path": str(source.path), "why": why, "rules": result.rules},
        )


def log_alert(change: AlertChange) -> None:
    a = change.alert
    if change.kind == ChangeKind.UPDATED:
        log.debug("alert %d %s updated: %s", a.id, a.detector, a.summary)
        return
    level = logging.INFO if change.kind == ChangeKind.RESOLVED else logging.WARNING
    log.log(
        level,
        "alert %d %s %s: %s -> %s: %s (severity %s)",
        a.id,
        a.detector,
        change.kind,
        a.source,
        a.target,
        a.summary,
        a.severity,
        extra={"alert": a, "change": change.kind},
    )


def panic(engine: Engine, source: ConfigSource | None) -> None:
    cleared = engine.control.panic(Actor.current("signal"))
    if source is not None:
        source.mark()
    log.warning(
        "panic: cleared %d drop rule(s): %s",
        len(cleared),
        ", ".join(r.id for r in cleared) or "none",
        extra={"event": "panic", "cleared": [r.id for r in cleared]},
    )


def run(engine: Engine, controls: Controls, source: ConfigSource | None = None) -> ExitStatus:
    report = engine.start()
    if source is not None:
        source.mark()
    how = "adopted the pinned program on" if report.adopted else "attached ironpost_xdp to"
    log.info(
        "ready: %s %s (%s mode, prog id %d) in %.2f s%s",
        how,
        report.iface,
        report.mode,
        report.prog_id,
        report.seconds,
        f"; pinned under {report.pin_dir}" if report.pin_dir else "",
        extra={
            "event": "ready",
            "iface": report.iface,
            "mode": report.mode,
            "prog_id": report.prog_id,
            "seconds": round(report.seconds, 3),
            "adopted": report.adopted,
            "pin_dir": str(report.pin_dir) if report.pin_dir else None,
        },
    )
    protected = engine.control.protected
    if protected:
        log.info(
            "protected from drops: %s",
            ", ".join(p.describe() for p in protected),
            extra={"event": "protected", "networks": [str(p.network) for p in protected]},
        )
    if source is not None:
        n_rules = len(engine.control.rules())
        log.info("rules: %s (%d in force)", source.path, n_rules, extra={"event": "rules", "rules": n_rules})
    state = InterfaceState.UP
    try:
        while not controls.stop.is_set():
            if controls.panic.is_set():
                controls.panic.clear()
                panic(engine, source)
            if source is not None and (controls.reload.is_set() or source.changed()):
                why = "signal" if controls.reload.is_set() else "file change"
                controls.reload.clear()
                reload_config(engine, source, why)
            tick = engine.tick(timeout_ms=100, events=False)  # alerts, stats and state; events go unused
            for change in tick.alerts:
                log_alert(change)
            if tick.interface_state != state:
                state = tick.interface_state
                if state == InterfaceState.GONE:
                    raise InterfaceGone(f"interface {report.iface} disappeared: the program went with it; exiting")
                log.warning("interface %s is %s", report.iface, state,
                            extra={"event": "interface_state", "iface": report.iface, "state": state})  # fmt: skip
    finally:
        engine.close()
    log.info(
        "stopped: %s",
        "left the pinned program enforcing" if report.pin_dir else f"detached from {report.iface}",
        extra={"event": "stopped", "iface": report.iface, "persisted": report.pin_dir is not None},
    )
    return ExitStatus.OK
