"""The headless agent: the engine in a plain loop, until a signal stops it."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.alert_lines import AlertLines
from ironpost_tui.engine.engine import Engine
from ironpost_tui.engine.feed import log_panic
from ironpost_tui.engine.service_notify import Notifier
from ironpost_tui.engine.signal_flags import Flag
from ironpost_tui.engine.supervisor import Pending, Reloaded, Step, Supervisor
from ironpost_tui.errors import ExitStatus, InterfaceGone, ProgramDetached, detached_message
from ironpost_tui.kernel.host import InterfaceState

log = logging.getLogger("ironpost")


@dataclass
class Controls:
    """What signal handlers ask of the loop: stop (INT/TERM/HUP), reload (USR1), panic (USR2)."""

    stop: Flag = field(default_factory=Flag)
    reload: Flag = field(default_factory=Flag)
    panic: Flag = field(default_factory=Flag)

    def take(self) -> Pending:
        """What the signals asked since the last step, for the next one (the flags cleared)."""
        return Pending(
            reload="signal" if self.reload.take() else None,
            panic="signal" if self.panic.take() else None,
        )


def log_reload(reloaded: Reloaded) -> None:
    """A reload's outcome; on an error the rules in force stay as they are."""
    path, why, result = reloaded.path, reloaded.why, reloaded.result
    if result.error is not None:
        errors = result.error.splitlines()
        refused = {"event": "reload_refused", "path": str(path), "errors": errors}
        log.error("reload of %s refused, the previous rules stay in force:", path, extra=refused)
        for line in errors:
            log.error("  %s", line, extra={"event": "reload_refused"})
        return
    if result.changed:
        log.info(
            "reloaded %s (%s): %d rules in force",
            path,
            why,
            result.rules,
            extra={"event": "reload", "path": str(path), "why": why, "rules": result.rules},
        )


def log_step(step: Step, iface: str, alerts: AlertLines) -> None:
    """What a step did, as log lines (the alerts' through ``alerts``: at most so many a minute); InterfaceGone when
    the interface went away, ProgramDetached when another process detached the program's link."""
    if step.cleared is not None:
        log_panic(log, step.cleared)
    if step.reload is not None:
        log_reload(step.reload)
    for change in step.tick.alerts:
        alerts.log(change)
    alerts.roll()
    if step.interface == InterfaceState.GONE:
        raise InterfaceGone(f"interface {iface} disappeared: the program went with it; exiting")
    if step.interface == InterfaceState.DETACHED:
        raise ProgramDetached(detached_message(iface) + "; exiting")
    if step.interface is not None:
        log.warning("interface %s is %s", iface, step.interface,
                    extra={"event": "interface_state", "iface": iface, "state": step.interface})  # fmt: skip


def run(
    engine: Engine, controls: Controls, source: ConfigSource | None = None, notifier: Notifier | None = None
) -> ExitStatus:
    """Start, then step until a signal stops it; ``notifier`` (a service manager's, ``Type=notify``) hears that
    the agent is ready once the program filters, and that it stops when it leaves."""
    supervisor = Supervisor(engine, source, command_line=True)
    report = supervisor.start()
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
    if engine.auto_blocking:
        infra = engine.infrastructure()
        log.info(
            "infrastructure, never blocked by a detector: %s",
            ", ".join(a.describe() for a in infra) or "nothing found",
            extra={"event": "infrastructure", "networks": [str(a.network) for a in infra]},
        )
    n_rules = len(engine.control.rules())
    if source is not None:
        log.info("rules: %s (%d in force)", source.path, n_rules, extra={"event": "rules", "rules": n_rules})
    filtering = f"filtering on {report.iface} ({report.mode} mode, prog id {report.prog_id})"
    if notifier is not None:
        notifier.ready_soon(f"{filtering}, {n_rules} rules")
    alert_lines = AlertLines(report.iface)
    try:
        while not controls.stop.is_set():
            # alerts, stats and state; the events go unused
            step = supervisor.step(controls.take(), timeout_ms=100, events=False)
            log_step(step, report.iface, alert_lines)
            if notifier is not None and (step.cleared is not None or step.reload is not None):
                notifier.status(f"{filtering}, {len(engine.control.rules())} rules")  # what systemctl status shows
    finally:
        alert_lines.flush()
        if notifier is not None:
            notifier.stopping("leaving: " + ("the pinned program stays" if report.pin_dir else "detaching"))
        supervisor.close()
    log.info(
        "stopped: %s",
        "left the pinned program enforcing" if report.pin_dir else f"detached from {report.iface}",
        extra={"event": "stopped", "iface": report.iface, "persisted": report.pin_dir is not None},
    )
    return ExitStatus.OK
