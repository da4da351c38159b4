"""The agent loop, written once: start, then one step at a time (panic, reload, tick).

Textual-free.  Both front ends drive a Supervisor: the headless agent logs each step's
result, the console's LiveSource turns it into an Update and notices.  Neither decides
again what a panic, a reload or an interface that went away means for the engine.
"""

from __future__ import annotations

import logging
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.control_socket.desk import Desk, RemoteChange
from ironpost_tui.engine.control_socket.protocol import socket_path
from ironpost_tui.engine.control_socket.server import SocketServer
from ironpost_tui.engine.engine import Engine, StartReport, Tick
from ironpost_tui.engine.reload import ReloadResult, reload_into
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import FilterRule
from ironpost_tui.rules.audit import Actor

log = logging.getLogger("ironpost")
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
    interface: str | None = None  # the interface's new state (up down gone detached) when it changed in this step
    remote: tuple[RemoteChange, ...] = ()  # rule changes the command line made since the last step


class Supervisor:
    """One engine and the configuration file it follows (None: no file to follow), and, with
    ``command_line``, the socket through which ``ironpost-tui block|unblock|rules|alerts IFACE``
    reach it (served from a thread of its own; see control_socket).

    One thread steps it.  The engine's lock keeps a step's panic, reload and tick apart from rule
    changes made from other threads (the command line; the console's edits, which LiveSource
    also keeps in turn with its polls)."""

    def __init__(self, engine: Engine, config: ConfigSource | None, command_line: bool = False) -> None:
        self.engine = engine
        self.config = config
        self.command_line = command_line
        self._interface = "up"
        self._server: SocketServer | None = None
        self._remote: deque[RemoteChange] = deque()  # appended by the socket's threads, taken by step()

    def start(self) -> StartReport:
        """Compile and attach (seconds); from here on the file as it is counts as loaded."""
        report = self.engine.start()
        self._mark()
        if self.command_line:
            self._open_socket()
        return report

    def _open_socket(self) -> None:
        """Serve the command line; when the socket cannot be made safely, say why and run on without it."""
        iface = self.engine.options.iface
        path = socket_path(iface)
        server = SocketServer(path, Desk(self.engine, self._remote.append).answer)
        try:
            server.start()
        except (OSError, IronpostError) as exc:
            why = exc.message if isinstance(exc, IronpostError) else f"{exc.strerror or exc} ({path})"
            log.error("command line off: %s", why, extra={"event": "command_line", "socket": None})
            return
        self._server = server
        log.info(
            "command line on %s (root only): ironpost-tui block|unblock|rules|alerts %s",
            path,
            iface,
            extra={"event": "command_line", "socket": str(path)},
        )

    def close(self) -> None:
        """Stop serving the command line, then close the engine (detached unless persisted)."""
        try:
            if self._server is not None:
                self._server.close()
                self._server = None
        finally:
            self.engine.close()

    def panic(self, via: str) -> tuple[FilterRule, ...]:
        """Clear every drop rule; the panic's own write to the file is not a change to reload."""
        cleared = self.engine.control.panic(Actor.current(via))
        self._mark()
        return tuple(cleared)

    def step(self, pending: Pending = Pending(), timeout_ms: int = 100, events: bool = True) -> Step:
        """A panic if asked, a reload if asked or the file changed, then one engine tick.

        A step that changed the rules (or may have) publishes the table in its tick."""
        with self.engine.lock:  # a command-line edit saves and marks the file before this looks at it
            cleared = self.panic(pending.panic) if pending.panic is not None else None
            reloaded = None
            config = self.config
            if config is not None and (pending.reload is not None or config.changed()):
                why = pending.reload or FILE_CHANGE
                reloaded = Reloaded(config.path, why, reload_into(self.engine, config, why))
        remote = self._take_remote()
        publish = pending.publish or cleared is not None or reloaded is not None or bool(remote)
        tick = self.engine.tick(timeout_ms=timeout_ms, events=events, publish=publish)
        interface = None
        if tick.interface_state != self._interface:
            self._interface = interface = tick.interface_state
        return Step(tick, cleared, reloaded, interface, remote)

    def _take_remote(self) -> tuple[RemoteChange, ...]:
        taken = []
        while self._remote:
            taken.append(self._remote.popleft())
        return tuple(taken)

    def _mark(self) -> None:
        if self.config is not None:
            self.config.mark()
