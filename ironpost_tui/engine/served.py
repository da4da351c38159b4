"""The engine process of the console: a LiveSource, answering the console over a socket (engine/wire.py).

``ironpost-tui IFACE`` forks before it reads the configuration (cli): this process loads it, compiles,
attaches and runs the engine; the console's process imports Textual and draws meanwhile, on the other
core, and asks this one for what LiveSource gives (engine/remote.py).  One request at a time, in
order, as LiveSource's lock had them.

It never outlives the console in control of the interface: when the console's end of the socket
closes, however the console ended (quit, a signal, ``kill -9``), this process closes the source
(the program detached, unless it was kept enforcing) and exits.  The terminal's signals (SIGINT,
SIGHUP, SIGQUIT) are the console's to act on: this process ignores them and waits for the console
to close it.  SIGTERM (``kill`` of this pid, which the interface's lock names) is passed to the
console, which detaches and closes this process as for its own; with no console left, this process
closes the source and exits.  Once serving, its standard input is /dev/null and what Python writes
to its standard output or error, or an uncaught error in a thread, is logged to the console (never
written over the console's screen).
"""

from __future__ import annotations

import io
import logging
import os
import select
import signal
import socket
import sys
import threading
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ironpost_tui.engine import wire
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.engine.wire import Call, Configured, Raised, Said
from ironpost_tui.errors import IronpostError

log = logging.getLogger(__name__)
IGNORED_SIGNALS = (signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)

_CALLS: dict[Call, Callable[..., Any]] = {
    Call.START: LiveSource.start,
    Call.POLL: LiveSource.poll,
    Call.ADD_RULE: LiveSource.add_rule,
    Call.UPDATE_RULE: LiveSource.update_rule,
    Call.DELETE_RULE: LiveSource.delete_rule,
    Call.PANIC: LiveSource.panic,
    Call.RELOAD: LiveSource.reload,
    Call.KEEP_ENFORCING: LiveSource.keep_enforcing,
}  # Call.CLOSE: serve() itself


class Served:
    """This process's end of the socket: frames sent whole, from any thread."""

    def __init__(self, sock: socket.socket, console_pid: int) -> None:
        self.sock = sock
        self.console_pid = console_pid  # what the pid file names: the process the operator signals
        self._send_lock = threading.Lock()
        self._closed = False
        self._live: LiveSource | None = None  # from will_serve() until the close: what a panic or a reload reaches

    def take_signals(self) -> None:
        """The terminal's signals ignored; SIGTERM to the console (or, with none left, the end of this run); SIGUSR2,
        the panic (``ironpost-tui cleanup IFACE`` signals the interface lock's holder: this process), here."""
        for sig in IGNORED_SIGNALS:
            signal.signal(sig, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, self._on_term)
        signal.signal(signal.SIGUSR2, self._on_panic)
        signal.signal(signal.SIGUSR1, self._on_reload)

    def _on_panic(self, _signum: int, _frame: object) -> None:
        """Every drop rule cleared at once, whatever the console is doing (a dialog open, or stuck): in a thread of
        its own, which waits for the engine's lock as an edit does (the handler runs between two bytecodes of
        the main thread, which may hold it).  Its default action killed this process until session 24: the
        program detached and the console lost its engine mid-incident."""
        live = self._live
        if live is None:
            return  # no engine yet: nothing attached, nothing to clear
        live.panic_soon("signal")

    def _on_reload(self, _signum: int, _frame: object) -> None:
        """SIGUSR1: the configuration reloaded at the next tick, as the console's r asks (its default action killed
        this process until session 24).  A flag: what a handler may set."""
        if self._live is not None:
            self._live.reload()

    def will_serve(self, live: LiveSource) -> None:
        """``live``, about to start: a panic from now on clears its rules (one during its start waits for it)."""
        self._live = live

    def _on_term(self, signum: int, _frame: object) -> None:
        if os.getppid() == self.console_pid:
            os.kill(self.console_pid, signum)  # the console detaches, then closes this process
            return
        raise SystemExit(f"{signal.Signals(signum).name} with no console left: closing the engine")

    def pending(self) -> bool:
        """Whether the console has already asked something, or gone, before the engine starts (it was
        stopped while the configuration loaded): then nothing is started."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def refuse_start(self) -> None:
        """Answer the console's close (or see it gone) without starting anything."""
        request = wire.recv(self.sock)
        if request is not None and Call(request[0]) == Call.CLOSE:
            self.say(Said.RETURNED, None)

    def say(self, said: Said, value: object) -> None:
        with self._send_lock:
            if self._closed:
                return
            try:
                wire.send(self.sock, (said, value))
            except OSError:  # the console is gone: the serve loop sees its end closed
                self._closed = True

    def failed(self, exc: BaseException) -> None:
        """The run ended before the console could be served (a refused configuration, a pid file)."""
        self.say(Said.FAILED, Raised.of(exc))

    def serve(self, live: LiveSource, configured: Configured) -> None:
        """Answer the console until it asks to close or its end of the socket closes; the source is
        closed in either case (a close is answered once done).  The root logger's records go to the
        console from now on."""
        logging.getLogger().handlers = [_ToConsole(self)]
        _quiet_stdio()
        self._live = live
        asked = False
        table = wire.TableSender()
        try:
            self.say(Said.CONFIGURED, configured)
            while True:
                request = wire.recv(self.sock)
                if request is None:
                    log.warning("the console ended without closing the engine: closing it")
                    return
                call, args = Call(request[0]), request[1]
                if call == Call.CLOSE:
                    asked = True
                    return
                try:
                    value = _CALLS[call](live, *args)
                    if call == Call.POLL:
                        value = replace(value, rules=table.encode(value.rules))  # a wire.Table
                except Exception as exc:  # said to the console, which raises it where it asked
                    if not isinstance(exc, IronpostError):
                        log.exception("%s failed", call)
                    self.say(Said.RAISED, Raised.of(exc))
                else:
                    self.say(Said.RETURNED, value)
        finally:
            self._live = None  # a panic from now on: the close detaches (or keeps) on its own
            live.close()
            if asked:
                self.say(Said.RETURNED, None)


def _quiet_stdio() -> None:
    """Nothing of this process reaches the console's terminal but through the socket (the module's doc)."""
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    sys.stdout = _LogWriter(logging.INFO)
    sys.stderr = _LogWriter(logging.WARNING)

    def hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            exc_info = (args.exc_type, args.exc_value or args.exc_type(), args.exc_traceback)
            name = args.thread.name if args.thread else "?"
            log.error("thread %s failed", name, exc_info=exc_info)

    threading.excepthook = hook


class _LogWriter(io.TextIOBase):
    """A standard stream whose lines are logged."""

    def __init__(self, level: int) -> None:
        self.level, self._part = level, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        lines = (self._part + text).split("\n")
        self._part = lines.pop()
        for line in lines:
            if line.strip():
                log.log(self.level, "%s", line)
        return len(text)


class _ToConsole(logging.Handler):
    """Each record to the console's process, which handles it as its own (the notice line, stdout)."""

    def __init__(self, served: Served) -> None:
        super().__init__(logging.NOTSET)
        self.served = served

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.served.say(Said.LOG, wire.record_attrs(record))
        except Exception:  # a record that cannot be sent is lost, never the engine with it
            pass
