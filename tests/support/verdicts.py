"""Verdicts through ``BPF_PROG_TEST_RUN``: a compiled program (never attached), its rule table, and
``check()``, which runs a frame and checks the XDP action, every STATS row, the rule credited and
the events.  Used by test_verdicts.py and test_fragments.py.

Frames come from ``packets`` (fixed MACs); addresses only from 198.18.0.0/15 and 2001:db8::/32.
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from ironpost_tui.kernel import abi, libbpf, stats
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.kernel.events import EventDecoder
from ironpost_tui.model import FRAGMENTS, Action, FilterRule, PacketEvent, Verdict
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

XDP_DROP, XDP_PASS = 1, 2
ROWS = ("tcp", "udp", "icmp", "other", "total")
RULE_MAPS = ("BLOCKLIST", "SRC4", "SRC6", "MATCH")


# --------------------------------------------------------------------------- #
# rules


def _net(text: str | None) -> ipaddress.IPv4Network | ipaddress.IPv6Network | None:
    return None if text is None else ipaddress.ip_network(text)


def rule(
    rid: str,
    action: Action = Action.DROP,
    src: str | None = None,
    dst: str | None = None,
    dport: int | None = None,
    proto: int | None = None,
) -> FilterRule:
    return FilterRule(rid, action, src_ip=_net(src), dst_ip=_net(dst), dst_port=dport, protocol=proto)


def drop(rid: str, **kw: object) -> FilterRule:
    return rule(rid, Action.DROP, **kw)  # type: ignore[arg-type]


def mon(rid: str, **kw: object) -> FilterRule:
    return rule(rid, Action.MONITOR, **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- #
# a datapath for a test module


@dataclass
class Env:
    dp: Datapath
    table: RuleTable
    offset: float
    events: list[tuple[Any, ...]] = field(default_factory=list)

    def reset(self, rules: Iterable[FilterRule] = (), allow: dict[str, int] | None = None) -> None:
        """Exactly ``rules`` (fresh slots, priorities in list order), exactly
        ``allow``, nothing else in the rule maps, an empty event list."""
        self.table.replace_all([])
        # What the table derives from its rules goes with them.
        assert list(self.dp.map_items(MapName.FRAG_MATCH)) == []
        for name in RULE_MAPS:  # entries written by hand by earlier tests
            for key, _ in list(self.dp.map_items(name)):
                self.dp.map_delete(name, key)
        self.table.replace_all(list(rules))
        self.table.set_allowlist({ipaddress.ip_network(k): v for k, v in (allow or {}).items()})
        self.drain()

    def run(self, frame: bytes, repeat: int = 1) -> int:
        return libbpf.prog_test_run(self.dp.prog_fd, frame, repeat=repeat).retval

    def totals(self) -> dict[str, tuple[int, int, int]]:
        return {k: (v.packets, v.bytes, v.drops) for k, v in stats.read_totals(self.dp).items()}

    def hits(self) -> dict[str, int]:
        return {s.rule.id: s.hits for s in self.table.status()}

    def poll(self, timeout_ms: int) -> int:
        records = self.dp.read_events(timeout_ms)
        self.events.extend(records.fields())
        return len(records)

    def drain(self) -> None:
        while self.poll(0):
            pass
        self.events.clear()

    def wait_events(self, count: int, timeout: float = 2.0) -> list[PacketEvent]:
        """The events now in the ring, once at least ``count`` arrived (then one more poll)."""
        end = time.monotonic() + timeout
        while len(self.events) < count and time.monotonic() < end:
            self.poll(100)
        self.poll(0)
        decoder = EventDecoder(self.offset, self.table.rule_for_slot)
        return [decoder.decode(abi.PACKET_EVENT.pack(*fields)) for fields in self.events]


@contextmanager
def open_env(cfg: DatapathConfig | None = None) -> Iterator[Env]:
    """A compiled program with unlimited events (counts are exact), its table and event ring."""
    dp = Datapath(cfg or DatapathConfig(event_rate=0))
    try:
        offset = monotonic_to_wall_offset()
        e = Env(dp, RuleTable(dp, offset), offset)
        dp.open_events()
        yield e
        e.reset()
    finally:
        dp.close()


# --------------------------------------------------------------------------- #
# checking a verdict


def delta(before: dict[str, tuple[int, int, int]], after: dict[str, tuple[int, int, int]]) -> dict:
    return {r: tuple(a - b for a, b in zip(after[r], before[r], strict=True)) for r in (*ROWS, FRAGMENTS)}


def expected_delta(row: str, length: int, dropped: bool, n: int = 1, hidden: bool = False) -> dict:
    d = {r: (0, 0, 0) for r in (*ROWS, FRAGMENTS)}
    d[row] = d["total"] = (n, n * length, n * int(dropped))
    if hidden:
        d[FRAGMENTS] = d[row]
    return d


def check(
    env: Env,
    frame: bytes,
    action: int,
    row: str,
    credited: str | None = None,
    n: int = 1,
    matched: bool | None = None,
    hidden: bool = False,
) -> list[PacketEvent]:
    """Run ``frame`` (n times), then check the action, every STATS row (``hidden``: the packet
    counts in the fragments row too, as judged without its ports), the rule hits and the events:
    one per run when a rule matched (``matched`` defaults to "a rule is credited"), none
    otherwise.  Returns the events."""
    matched = credited is not None if matched is None else matched
    env.drain()
    before = env.totals()
    hits_before = env.hits()
    for _ in range(n):
        assert env.run(frame) == action, "XDP action"
    assert delta(before, env.totals()) == expected_delta(row, len(frame), action == XDP_DROP, n, hidden)
    got = {rid: h - hits_before.get(rid, 0) for rid, h in env.hits().items()}
    assert got == {rid: (n if rid == credited else 0) for rid in got}, "rule credited with the hit"
    events = env.wait_events(n if matched else 0)
    assert len(events) == (n if matched else 0), "one event per matched packet"
    for e in events:
        assert (e.verdict is Verdict.DROP) == (action == XDP_DROP)
        assert e.rule_id == credited and e.length == len(frame)
    return events
