"""The thread an ``EbpfEngine`` runs in: the agent's loop (``engine.supervisor``), fed to asyncio.

The Engine is confined to this thread: it is started, stepped and closed here, and rule changes
asked for from the event loop are queued and run here between two steps, so nothing needs a lock
around the engine and a slow consumer never holds it up.  Each step's events and alert changes go
into bounded channels that never wait (``channel``); each stats sample resolves the
``get_stats()`` calls waiting for one taken after they were made.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from ironpost_tui.api.channel import Receiver
from ironpost_tui.api.stats import TrafficStats
from ironpost_tui.detectors import AlertChange
from ironpost_tui.engine.alert_lines import AlertLines
from ironpost_tui.engine.engine import StartReport
from ironpost_tui.engine.headless import log_step
from ironpost_tui.engine.supervisor import Pending, Supervisor
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import PacketEvent

log = logging.getLogger("ironpost")

R = TypeVar("R")
POLL_MS = 100  # a step waits for events at most this long: also how long a queued call may wait


class NotRunning(IronpostError):
    """The engine is not running: not started yet, stopped, or stopped by an error (its ``__cause__``)."""

    title = "Engine not running"


class Runner(threading.Thread):
    def __init__(self, supervisor: Supervisor, events: Receiver[PacketEvent], alerts: Receiver[AlertChange]) -> None:
        super().__init__(name=f"ironpost-engine-{supervisor.engine.options.iface}", daemon=True)
        self.supervisor = supervisor
        self.events = events
        self.alerts = alerts
        self.started: concurrent.futures.Future[StartReport] = concurrent.futures.Future()
        self.stopped: concurrent.futures.Future[None] = concurrent.futures.Future()
        self.failure: BaseException | None = None
        self.latest = TrafficStats()
        self._stop = threading.Event()
        self._calls: queue.SimpleQueue[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = queue.SimpleQueue()
        self._waiters: list[tuple[float, asyncio.Future[TrafficStats]]] = []
        self._lock = threading.Lock()  # the waiters and the running state
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    def request_stop(self) -> None:
        self._stop.set()

    # --- from the event loop -------------------------------------------------
    def submit(self, call: Callable[[], R]) -> concurrent.futures.Future[R]:
        """Run ``call`` on the engine's thread before its next step."""
        done: concurrent.futures.Future[R] = concurrent.futures.Future()
        with self._lock:
            if not self._running:
                raise self.not_running()
            self._calls.put((call, done))
        return done

    def next_stats(self, since: float) -> asyncio.Future[TrafficStats]:
        """Resolved by the first sample taken at or after the monotonic time ``since``."""
        waiter: asyncio.Future[TrafficStats] = asyncio.get_running_loop().create_future()
        with self._lock:
            if self._running:
                self._waiters.append((since, waiter))
                return waiter
        waiter.set_result(self.latest)
        return waiter

    def not_running(self) -> NotRunning:
        error = NotRunning("the engine is not running: await engine.start() first (an engine starts once)")
        if self.failure is not None:
            error = NotRunning(f"the engine stopped on an error: {_describe(self.failure)}")
            error.__cause__ = self.failure
        return error

    # --- the thread ----------------------------------------------------------
    def run(self) -> None:
        engine = self.supervisor.engine
        try:
            report = self.supervisor.start()
        except BaseException as exc:
            self.failure = exc
            self.started.set_exception(exc)
            self._finish()
            return
        with self._lock:
            self._running = True
            self.latest = TrafficStats.of(engine.snapshot())
        self.started.set_result(report)
        alert_lines = AlertLines(report.iface)
        try:
            while not self._stop.is_set():
                edited = self._run_calls()
                step = self.supervisor.step(Pending(publish=edited), timeout_ms=POLL_MS)
                tick = step.tick
                self.events.put_many(tick.events)
                self.alerts.put_many(tick.alerts)
                if tick.sample is not None:
                    self._sampled(TrafficStats.of(engine.snapshot(), tick.sample), tick.sample.at)
                log_step(step, report.iface, alert_lines)  # reloads, panics and alerts logged; InterfaceGone raised
        except BaseException as exc:
            self.failure = exc
            if isinstance(exc, IronpostError):
                log.error("%s", exc.message)
            else:
                log.exception("the engine on %s stopped on an error", report.iface)
        finally:
            alert_lines.flush()
            with self._lock:
                self._running = False
            self._run_calls()  # those already queued are refused
            try:
                engine.close()
            except Exception:
                log.exception("closing the engine on %s failed", report.iface)
            self._finish()

    def _run_calls(self) -> bool:
        """Run the calls queued so far (refuse them once stopped); whether any ran."""
        ran = False
        while True:
            try:
                call, done = self._calls.get_nowait()
            except queue.Empty:
                return ran
            if not done.set_running_or_notify_cancel():
                continue
            if not self._running:
                done.set_exception(self.not_running())
                continue
            ran = True
            try:
                with self.supervisor.engine.lock:  # not in the middle of a command-line change (socket thread)
                    result = call()
                done.set_result(result)
            except BaseException as exc:
                done.set_exception(exc)

    def _sampled(self, stats: TrafficStats, at: float) -> None:
        with self._lock:
            self.latest = stats
            due = [w for since, w in self._waiters if since <= at]
            self._waiters = [(since, w) for since, w in self._waiters if since > at]
        for waiter in due:
            _resolve_soon(waiter, stats)

    def _finish(self) -> None:
        error = self.failure
        self.events.close(error)
        self.alerts.close(error)
        with self._lock:
            waiters, self._waiters = self._waiters, []
            latest = self.latest
        for _, waiter in waiters:
            _resolve_soon(waiter, latest)  # the last sample: no other is coming
        self.stopped.set_result(None)


def _describe(exc: BaseException) -> str:
    return exc.message if isinstance(exc, IronpostError) else f"{type(exc).__name__}: {exc}"


def _resolve_soon(waiter: asyncio.Future[TrafficStats], stats: TrafficStats) -> None:
    def resolve() -> None:
        if not waiter.done():
            waiter.set_result(stats)

    try:
        waiter.get_loop().call_soon_threadsafe(resolve)
    except RuntimeError:  # that loop has closed
        pass
