"""Helpers for the console's tests (no tests here): a fake live source that records
rule calls and can refuse, a frozen clock for the recorded source, and waits on
messages and on the source's clock instead of sleeps."""

from __future__ import annotations

import asyncio
import ipaddress
import threading
from dataclasses import replace
from pathlib import Path

from textual.message import Message
from textual.pilot import Pilot

from ironpost_tui.config.settings import ConsoleSettings
from ironpost_tui.detectors import Alert, AlertChange
from ironpost_tui.engine.feed import OnExit, SourceInfo, Update, still_as_shown
from ironpost_tui.errors import BlocklistFull, IronpostError
from ironpost_tui.model import (
    Action,
    FilterRule,
    PacketEvent,
    ProtoCounters,
    ProtoRates,
    RuleStatus,
    StatsSample,
    Verdict,
)
from ironpost_tui.records.recording import ReplaySource
from ironpost_tui.rules.control import LockoutRefused
from ironpost_tui.ui.app import IronpostApp, make_app

from .common import REPO

RECORDING = REPO / "tests" / "recordings" / "lab.ipr.gz"
TOP_RECORDING = REPO / "tests" / "recordings" / "top.ipr.gz"  # top talkers (support/top_recording.py)
T0 = 1_800_000_000.0  # the fake source's wall clock at start
# No redraw from the timer while a test runs: tests call app.redraw() when they want one.
TEST_SETTINGS = ConsoleSettings(refresh_secs=60.0)
PROTECTED = ipaddress.ip_network("198.18.0.0/24")  # the fake's anti-lockout


class FrozenClock:
    """The replay's monotonic clock: moves only when a test says so."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def replay_app(
    speed: float = 1.0, theme: str | None = None, recording: Path = RECORDING
) -> tuple[IronpostApp, ReplaySource, FrozenClock]:
    clock = FrozenClock()
    source = ReplaySource(recording, speed=speed, clock=clock)
    return make_app(TEST_SETTINGS, source, theme=theme, cursor_blink=False), source, clock


async def until_at(app: IronpostApp, at: float, timeout: float = 10.0) -> None:
    """Wait until the app has been told the source's clock reached ``at`` (the advanced signal)."""
    if app.state.at >= at:
        return
    reached = asyncio.Event()

    def advanced(now: float) -> None:
        if now >= at:
            reached.set()

    app.advanced_signal.subscribe(app, advanced)
    try:
        await asyncio.wait_for(reached.wait(), timeout)
    finally:
        app.advanced_signal.unsubscribe(app)


async def play_to(pilot: Pilot[int], clock: FrozenClock, at: float, step: float = 1.0) -> None:
    """Play the recording to ``at`` in steps (each step's samples arrive as they did), then redraw."""
    app = pilot.app
    assert isinstance(app, IronpostApp)
    t = clock.t
    while t < at:
        t = min(at, t + step)
        clock.t = t
        await until_at(app, t)
    await pilot.pause()
    app.redraw()
    await pilot.pause()


Kind = type[Message] | tuple[type[Message], ...]


class Messages:
    """A run_test message_hook that lets a test wait for a message of a kind."""

    def __init__(self) -> None:
        self.seen: list[Message] = []
        self._waiting: list[tuple[Kind, asyncio.Event]] = []

    def __call__(self, message: Message) -> None:
        self.seen.append(message)
        for kind, event in self._waiting:
            if isinstance(message, kind):
                event.set()

    def count(self, kind: Kind) -> int:
        return sum(1 for m in self.seen if isinstance(m, kind))

    async def wait(self, kind: Kind, pilot: Pilot[int], after: int | None = None, timeout: float = 10) -> None:
        """Until one more ``kind`` than ``after`` (default: than now) has been handled."""
        base = self.count(kind) if after is None else after
        event = asyncio.Event()
        entry = (kind, event)
        self._waiting.append(entry)
        try:
            while self.count(kind) <= base:
                event.clear()
                await asyncio.wait_for(event.wait(), timeout)
        finally:
            self._waiting.remove(entry)
        await pilot.pause()  # the hook runs before the handler: let it run


def sample(pps: float = 100.0, drops: int = 5, lost: int = 0, at: float = 1.0) -> StatsSample:
    rates = {p: ProtoRates(pps, pps * 800, 1.0) for p in ("tcp", "udp", "icmp", "other", "total")}
    totals = {p: ProtoCounters(1000, 64000, drops) for p in ("tcp", "udp", "icmp", "other", "total")}
    return StatsSample(at=at, totals=totals, rates=rates, events_delivered=10, events_lost={"ringbuf_full": lost})


def event(
    src: str = "198.51.100.7", dport: int = 22, verdict: Verdict = Verdict.DROP, rule: str | None = "r1", proto: int = 6
) -> PacketEvent:
    addr = ipaddress.ip_address(src)
    dst = ipaddress.ip_address("203.0.113.1" if addr.version == 4 else "2001:db8::1")
    return PacketEvent(T0 + 50, addr.version, addr, dst, 40000, dport, proto, 0x02, 60, verdict, rule)


def alert(alert_id: int = 1, source: str = "198.51.100.7", severity: str = "high") -> Alert:
    return Alert(alert_id, "syn_flood", severity, source, "eth9", 500, 500, 10.0, T0 + 40, T0 + 50, "500 SYNs")


class FakeSource:
    """A live source in memory: rules in a dict, rule calls recorded, refusals on demand.

    It refuses (LockoutRefused) a drop rule whose src_ip overlaps PROTECTED unless forced,
    and (BlocklistFull) any add once ``full`` is set.  ``push`` queues an update for the
    next poll; a rule change makes the next poll send the table, as LiveSource does."""

    def __init__(self, rules: list[FilterRule] | None = None) -> None:
        self.info = SourceInfo(
            iface="eth9",
            mode="native",
            attached=True,
            started_at=T0,
            config_path="/etc/ironpost/ironpost.toml",
            blocklist_capacity=100,
            title="live",
            on_exit=OnExit.REMOVE,  # as LiveSource without --persist: quitting removes the drop rules
        )
        self.rules: dict[str, FilterRule] = {r.id: r for r in rules or []}
        self.keep_fails: str | None = None  # keep_enforcing raises IronpostError(this)
        self.calls: list[tuple[str, object, bool]] = []
        self.full = False
        self.reloads = 0
        self._queue: list[Update] = []
        self._changed = True
        self._lock = threading.Lock()
        self._wake = threading.Event()

    def now(self) -> float:
        return T0 + 100.0

    def push(self, update: Update) -> None:
        with self._lock:
            self._queue.append(update)
        self._wake.set()

    def poll(self, timeout: float) -> Update:
        self._wake.wait(timeout)
        with self._lock:
            self._wake.clear()
            update = self._queue.pop(0) if self._queue else Update(at=100.0)
            if self._changed:
                self._changed = False
                table = tuple(
                    RuleStatus(r, "BLOCKLIST" if r.match_fields == ("src_ip",) else "MATCH", 3, T0 + 90)
                    for r in self.rules.values()
                )
                update = replace(update, rules=table)
            return update

    def _check(self, rule: FilterRule, force: bool) -> None:
        src = rule.src_ip
        if rule.action is Action.DROP and src is not None and src.version == 4 and src.overlaps(PROTECTED):
            if not force:
                raise LockoutRefused(f"rule '{rule.id}' would drop {PROTECTED} (your SSH session): refused")

    def _changed_now(self) -> None:
        self._changed = True
        self._wake.set()

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        with self._lock:
            self.calls.append(("add", rule, force))
            if self.full:
                raise BlocklistFull("the blocklist is full (100 entries): delete rules or raise blocklist_max_entries")
            if rule.id in self.rules:
                raise IronpostError(f"a rule '{rule.id}' exists already")
            self._check(rule, force)
            self.rules[rule.id] = rule
            self._changed_now()

    def update_rule(self, rule: FilterRule, force: bool = False, expected: FilterRule | None = None) -> None:
        """``expected`` checked as LiveSource checks it (engine/feed.py still_as_shown)."""
        with self._lock:
            self.calls.append(("update", rule, force))
            if expected is not None and (why := still_as_shown(rule.id, self.rules.get(rule.id), expected)):
                raise IronpostError(why)
            self._check(rule, force)
            self.rules[rule.id] = rule
            self._changed_now()

    def delete_rule(self, rule_id: str) -> FilterRule:
        with self._lock:
            self.calls.append(("delete", rule_id, False))
            rule = self.rules.pop(rule_id)
            self._changed_now()
            return rule

    def panic(self) -> list[FilterRule]:
        with self._lock:
            self.calls.append(("panic", None, False))
            cleared = [r for r in self.rules.values() if r.action is Action.DROP]
            for r in cleared:
                del self.rules[r.id]
            self._changed_now()
            return cleared

    def reload(self) -> None:
        self.calls.append(("reload", None, False))
        self.reloads += 1

    def keep_enforcing(self) -> str:
        self.calls.append(("keep", None, False))
        if self.keep_fails is not None:
            raise IronpostError(self.keep_fails)
        drops = sum(1 for r in self.rules.values() if r.action is Action.DROP)
        return f"left {drops} drop rules enforcing on eth9: remove them with ironpost-tui cleanup eth9"

    def close(self) -> None:
        self.calls.append(("close", None, False))


class StartingSource(FakeSource):
    """A FakeSource that must start first: start() waits for ``go`` and then fails or attaches."""

    def __init__(self, fail: IronpostError | None = None) -> None:
        super().__init__()
        self.info = replace(self.info, attached=False, title="starting", mode="")
        self.go = threading.Event()
        self.fail = fail

    def start(self) -> SourceInfo:
        self.go.wait(10)
        if self.fail is not None:
            raise self.fail
        self.info = replace(self.info, attached=True, title="live", mode="native")
        return self.info


def live_app(source: FakeSource) -> IronpostApp:
    return make_app(TEST_SETTINGS, source, cursor_blink=False)


def lab_update(events: list[PacketEvent], alerts: list[Alert] | None = None) -> Update:
    return Update(
        events=tuple(events), sample=sample(), alerts=tuple(AlertChange("raised", a) for a in alerts or []), at=100.0
    )
