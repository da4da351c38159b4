"""The console's side of its engine process (engine/served.py): a Source whose calls cross a socket.

``spawn(run)`` forks; the child runs ``run(served)`` (the configuration, the engine, then
``Served.serve``) and exits with its status; the parent gets a RemoteSource.  A reader thread takes
every frame from the engine process: its log records are handled here as this process's own, the
rest are the answers to the calls, which go one at a time (as LiveSource's lock had them).

If the engine process ends without being asked (killed), the call under way and every later one
raise EngineGone: the console says so and exits.  The kernel detached the program with it (its
link went with its last descriptor), unless it was pinned to outlive the process (--persist, or
kept enforcing).
"""

from __future__ import annotations

import logging
import os
import queue
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from ironpost_tui.engine import wire
from ironpost_tui.engine.feed import SILENT_SECS, OnExit, RulesHead, SourceInfo, Update
from ironpost_tui.engine.served import Served
from ironpost_tui.engine.wire import Call, Configured, Raised, Said
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.model import FilterRule

log = logging.getLogger(__name__)
CLOSE_WAIT_SECS = 30.0  # for the engine process to detach and exit once asked; then it is killed
# How long each call may wait for its answer before the engine process is said silent (stopped, stuck) and,
# on the console's way out, before the call is abandoned: a poll waits a quarter second for events; an
# edit, a panic or a keep with 10,000 rules saves the file and checks the anti-lockout (about 2 s here); a
# start compiles (seconds on a first start, the starting screen counting them).
EDIT_SILENT_SECS = 15.0
START_SILENT_SECS = 30.0
# A silent engine process is not asked to close (it serves one call at a time): its socket is closed, it is
# sent SIGCONT (stopped, it can then see that and close), and killed unless it exits within this long.
SILENT_CLOSE_SECS = 5.0
_GONE = object()
_ABANDONED = object()  # end_wait: the call in flight is not waited for any more


class EngineGone(IronpostError):
    title = "Engine ended"


def spawn(run: Callable[[Served], int]) -> RemoteSource:
    """Fork the engine process; call before any thread is started in this one."""
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    console_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # the engine process: never returns
        status = int(ExitStatus.ERROR)
        try:
            ours.close()
            served = Served(theirs, console_pid)
            served.take_signals()
            status = run(served)
        except BaseException:  # noqa: BLE001 - said by run(); an exit status, whatever happened
            pass
        finally:
            os._exit(status)
    theirs.close()
    return RemoteSource(ours, pid)


class RemoteSource:
    """Source, StartableSource and KeepableSource, answered by the engine process."""

    def __init__(self, sock: socket.socket, pid: int) -> None:
        self.sock, self.pid = sock, pid
        self.info = SourceInfo(iface="", mode="", attached=False, started_at=time.time(), config_path="",
                               blocklist_capacity=0, title="starting", on_exit=OnExit.REMOVE)  # fmt: skip
        self._answers: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._gone = False
        self._table = wire.TableReceiver()
        self._status: int | None = None  # the engine process's wait status, once reaped
        self._asked: tuple[Call, float] | None = None  # the call in flight and when it was sent (monotonic)
        self._state = threading.Lock()  # _asked and _leaving, between the callers and end_wait
        self._leaving = False  # end_wait: no call is sent any more (close's excepted)
        self._closed = False
        self._abandoned: float | None = None  # end_wait: how long the call it abandoned had waited
        self._reader = threading.Thread(target=self._read, name="engine-reader", daemon=True)
        self._reader.start()

    # --- the reader ------------------------------------------------------------------------
    def _read(self) -> None:
        try:
            while (frame := wire.recv(self.sock)) is not None:
                said, value = Said(frame[0]), frame[1]
                if said == Said.LOG:
                    try:
                        record = logging.makeLogRecord(value)
                        logging.getLogger(record.name).handle(record)
                    except Exception:  # a record that cannot be handled is lost, never the reader with it
                        log.exception("a log record from the engine process could not be handled")
                else:
                    self._answers.put((said, value))
        except Exception:
            log.exception("a frame from the engine process could not be read: stopping")
        finally:
            self._answers.put(_GONE)  # every call waiting or to come: EngineGone

    def _answer(self, timeout: float | None = None) -> tuple[Said, Any]:
        try:
            answer = self._answers.get(timeout=timeout)
        except queue.Empty:
            raise EngineGone(f"the engine process (pid {self.pid}) did not answer within {timeout:.0f} s") from None
        if answer is _GONE:
            self._gone = True
            raise EngineGone(self._ended())
        if answer is _ABANDONED:
            raise EngineGone(f"the engine process (pid {self.pid}) did not answer: the console is leaving")
        said, value = answer
        return Said(said), value

    def _ended(self) -> str:
        status = self._reap(timeout=2.0)
        if status is None:
            how = "its socket closed"
        elif os.WIFSIGNALED(status):
            how = f"killed by {signal.Signals(os.WTERMSIG(status)).name}"
        else:
            how = f"exit status {os.WEXITSTATUS(status)}"
        return f"the engine process (pid {self.pid}) ended ({how}): its program was detached, unless pinned"

    # --- calls ------------------------------------------------------------------------------
    def configured(self) -> Configured:
        """Wait for the engine process to load the configuration: what the console needs of it, or the
        error the run ended on (raised here, with its exit status, as a one-process run raises it)."""
        with self._lock:
            said, value = self._answer()
        if said == Said.CONFIGURED and isinstance(value, Configured):
            self.info = value.info
            return value
        if said == Said.FAILED and isinstance(value, Raised):
            self._gone = True  # the engine process is ending: nothing to close
            raise value.error()
        raise IronpostError(f"the engine process said {said} before its configuration")

    @staticmethod
    def _budget(call: Call) -> float:
        """How long ``call`` may wait for its answer before the engine process is silent."""
        if call == Call.POLL:
            return SILENT_SECS
        return START_SILENT_SECS if call == Call.START else EDIT_SILENT_SECS

    def silent_for(self, now: float) -> float:
        """How long the call in flight has waited for its answer, once past its budget (0: none is in
        flight, or it is within it)."""
        asked = self._asked
        if asked is None:
            return 0.0
        waited = now - asked[1]
        return waited if waited >= self._budget(asked[0]) else 0.0

    def end_wait(self) -> None:
        """On the console's way out (its poll worker cancelled; in a thread): no call is sent from now on
        (one queued behind the call in flight gets EngineGone), and the call in flight is given until its
        budget (_budget) to be answered, then abandoned: the thread waiting for it gets EngineGone.  asyncio
        waits for those threads before the console's process can end, and so before this source's close,
        which then neither asks a silent engine process nor waits long for it (close's doc)."""
        with self._state:
            self._leaving = True
        while True:
            with self._state:
                asked = self._asked
                if asked is None:
                    return
                waited = time.monotonic() - asked[1]
                if waited >= self._budget(asked[0]):
                    self._abandoned = waited
                    self._answers.put(_ABANDONED)  # the call is still in flight: its caller takes this
                    return
            time.sleep(0.02)

    def _call(self, call: Call, *args: object, timeout: float | None = None, lock_wait: float | None = None) -> Any:
        """``timeout``: for the answer, and for the call before it unless ``lock_wait`` says otherwise."""
        wait = timeout if lock_wait is None else lock_wait
        if not self._lock.acquire(timeout=-1 if wait is None else wait):
            raise EngineGone(f"the engine process (pid {self.pid}) is busy with another request: not waiting")
        try:
            if self._gone:
                raise EngineGone(self._ended())
            with self._state:
                if self._leaving and call != Call.CLOSE:
                    raise EngineGone(f"the console is leaving: {call} was not asked of the engine process")
                self._asked = (call, time.monotonic())
            try:
                wire.send(self.sock, (call, args))
            except OSError:
                self._gone = True
                raise EngineGone(self._ended()) from None
            said, value = self._answer(timeout)
            while said == Said.CONFIGURED:  # a close asked before the configuration came: its answer is next
                said, value = self._answer(timeout)
        finally:
            with self._state:
                self._asked = None
            self._lock.release()
        if said in (Said.RAISED, Said.FAILED) and isinstance(value, Raised):
            if said == Said.FAILED:
                self._gone = True
            raise value.error()
        if said != Said.RETURNED:
            raise IronpostError(f"the engine process said {said} to {call}")
        return value

    def start(self) -> SourceInfo:
        info: SourceInfo = self._call(Call.START)
        self.info = info
        return info

    def poll(self, timeout: float) -> Update:
        update: Update = self._call(Call.POLL, timeout)
        rules = self._table.decode(update.rules)  # as it crossed (wire.Table)
        if isinstance(rules, RulesHead):
            return replace(update, rules=None, rules_head=rules)
        return replace(update, rules=rules)

    def now(self) -> float:
        return time.time()

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        self._call(Call.ADD_RULE, rule, force)

    def update_rule(self, rule: FilterRule, force: bool = False, expected: FilterRule | None = None) -> None:
        self._call(Call.UPDATE_RULE, rule, force, expected)

    def delete_rule(self, rule_id: str) -> FilterRule:
        rule: FilterRule = self._call(Call.DELETE_RULE, rule_id)
        return rule

    def panic(self) -> list[FilterRule]:
        cleared: list[FilterRule] = self._call(Call.PANIC)
        return cleared

    def reload(self) -> None:
        self._call(Call.RELOAD)

    def keep_enforcing(self) -> str:
        """Refused at once by a silent engine process, and after SILENT_SECS behind a call in flight: the
        console's quit question waits for this (q does nothing meanwhile)."""
        silent = self.silent_for(time.monotonic())
        if silent:
            raise EngineGone(f"the engine process (pid {self.pid}) has not answered for {silent:.0f} s: "
                             "its program cannot be kept now")  # fmt: skip
        line: str = self._call(Call.KEEP_ENFORCING, lock_wait=SILENT_SECS)
        self.info = replace(self.info, on_exit=OnExit.KEEP)
        return line

    def close(self) -> None:
        """Ask the engine process to close the source (detach, unless kept) and wait for it to exit;
        one that does not within CLOSE_WAIT_SECS is killed (its link, and so the program, goes with it).
        One that is silent (a call in flight past its budget, or abandoned by end_wait) is not asked: its
        socket is closed and it is sent SIGCONT (a process that was stopped or only slow closes the source
        on seeing its socket closed, as it would have when asked), and it is killed unless it exits within
        SILENT_CLOSE_SECS.  A second close does nothing."""
        if self._closed:
            return
        self._closed = True
        failure: IronpostError | None = None
        silent = self._abandoned if self._abandoned is not None else self.silent_for(time.monotonic())
        stuck = silent > 0
        if stuck:
            log.warning("the engine process (pid %d) has not answered for %.0f s: not waiting for it to close",
                        self.pid, silent)  # fmt: skip
        elif not self._gone:
            try:
                self._call(Call.CLOSE, timeout=CLOSE_WAIT_SECS)
            except IronpostError as exc:  # said once the engine process is reaped (or killed)
                failure = exc
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        if stuck and self._status is None:
            try:
                os.kill(self.pid, signal.SIGCONT)
            except ProcessLookupError:
                pass
        if self._reap(timeout=SILENT_CLOSE_SECS if stuck else CLOSE_WAIT_SECS) is None:
            log.error("the engine process (pid %d) did not exit: killing it", self.pid)
            os.kill(self.pid, signal.SIGKILL)
            self._reap(timeout=None)
        self._reader.join(timeout=5.0)
        self.sock.close()
        if failure is not None and not isinstance(failure, EngineGone):
            raise failure  # closing failed (the recording's disk full...): the run's error, as in one process
        if failure is not None:
            log.warning("closing the engine: %s", failure.message)

    def _reap(self, timeout: float | None) -> int | None:
        """The engine process's wait status once it has exited (None: still running after ``timeout``)."""
        if self._status is not None:
            return self._status
        end = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                pid, status = os.waitpid(self.pid, 0 if end is None else os.WNOHANG)
            except ChildProcessError:  # reaped already: nothing left to wait for (said as exit status 0)
                self._status = 0
                return 0
            if pid == self.pid:
                self._status = status
                return status
            if end is not None and time.monotonic() >= end:
                return None
            time.sleep(0.02)
