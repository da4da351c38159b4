"""The agent loop, written once: start, then one step at a time (panic, reload, tick).

Textual-free.  Both front ends drive a Supervisor: the headless agent logs each step's
result, the console's LiveSource turns it into an Update and notices.  Neither decides
again what a panic, a reload or an interface that went away means for the engine.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.engine import Engine, StartReport, Tick
from ironpost_tui.engine.reload import ReloadResult, reload_into
from ironpost_tui.model import FilterRule
from ironpost_tui.rules.audit import Actor

FILE_CHANGE = "file change"  # why a reload nobody asked for happened


@dataclass(frozen=True)
class Pending:
    """What a front end asks of the next step.  A changed configuration file the step sees itself."""

    reload: str | None = None  # who asked for a reload ("signal", "console"); None: only if the file changed
    panic: str | None = None  # who asked for a panic ("signal"); None: no panic
    publish: bool = False  # the rules were edited since the last step: publish the table now


@dataclass(frozen=True)
class Reloaded:
    """A reload that was attempted: the file, its cause and what came of it."""

    path: Path
    why: str  # the Pending's reload, or FILE_CHANGE
    result: ReloadResult


@dataclass(frozen=True)
class Step:
    """What one step did; None where nothing of that kind happened."""

    tick: Tick
    cleared: tuple[FilterRule, ...] | None = None  # a panic: the drop rules it cleared
    reload: Reloaded | None = None
    interface: str | None = None  # the interface's new state (up down gone) when it changed in this step


class Supervisor:
    """One engine and the configuration file it follows (None: no file to follow).

    Not thread-safe: a front end that edits rules from another thread holds its own lock
    around step() and its edits (LiveSource does)."""

    def __init__(self, engine: Engine, config: ConfigSource | None) -> None:
        self.engine = engine
        self.config = config
        self._interface = "up"

    def start(self) -> StartReport:
        """Compile and attach (seconds); from here on the file as it is counts as loaded."""
        report = self.engine.start()
        self._mark()
        return report

    def panic(self, via: str) -> tuple[FilterRule, ...]:
        """Clear every drop rule; the panic's own write to the file is not a change to reload."""
        cleared = self.engine.control.panic(Actor.current(via))
        self._mark()
        return tuple(cleared)

    def step(self, pending: Pending = Pending(), timeout_ms: int = 100, events: bool = True) -> Step:
        """A panic if asked, a reload if asked or the file changed, then one engine tick.

        A step that changed the rules (or may have) publishes the table in its tick."""
        cleared = self.panic(pending.panic) if pending.panic is not None else None
        reloaded = None
        config = self.config
        if config is not None and (pending.reload is not None or config.changed()):
            why = pending.reload or FILE_CHANGE
            reloaded = Reloaded(config.path, why, reload_into(self.engine, config, why))
        publish = pending.publish or cleared is not None or reloaded is not None
        tick = self.engine.tick(timeout_ms=timeout_ms, events=events, publish=publish)
        interface = None
        if tick.interface_state != self._interface:
            self._interface = interface = tick.interface_state
        return Step(tick, cleared, reloaded, interface)

    def _mark(self) -> None:
        if self.config is not None:
            self.config.mark()
