"""The Top pane's filter, in the events filter's syntax (ui/event_filter.py; Textual-free).

A row is an address (sources, destinations) or a protocol/port (ports).  ``src:NET`` keeps the
sources in NET, ``dst:NET`` the destinations in NET; ``proto:tcp`` and ``port:N``/``dport:N`` keep
the ports of that protocol or number, and the sources whose top destination ports or protocols
(their detail) include it; ``verdict:drop`` keeps rows with drops; any other word must appear in
the row.  A term for another list (``dst:`` on the sources) keeps nothing, so a list shown under
a filter that does not concern it says so by being empty.  ``sport:`` and ``rule:`` are not
counted per talker: an error, as is an unknown key.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui import filter_terms as ef
from ironpost_tui.model import IPNetwork, Verdict
from ironpost_tui.triage.values import SourceDetail, TopKind, TopRow
from ironpost_tui.ui import format as fmt

Test = Callable[[TopKind, TopRow, SourceDetail | None], bool]


@dataclass(frozen=True)
class TopFilter:
    text: str
    tests: tuple[Test, ...] = ()

    @classmethod
    def parse(cls, text: str) -> TopFilter:
        """ValueError with a one-line message for a term that cannot match anything, or a filter too big
        (filter_terms.words)."""
        return cls(text.strip(), tuple(_term(word) for word in ef.words(text)))

    def __bool__(self) -> bool:
        return bool(self.tests)

    def matches(self, kind: TopKind, row: TopRow, detail: SourceDetail | None = None) -> bool:
        return all(test(kind, row, detail) for test in self.tests)


# A row's address is read once for all the filter's src:/dst: terms and redraws, not once per term (32
# terms over 250 rows were some 50 ms a redraw).  Bounded: the keys are whatever sources the kernel counted.
@functools.lru_cache(maxsize=4096)
def _address(key: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(key)
    except ValueError:
        return None


def _in(net: IPNetwork, row: TopRow) -> bool:
    addr = _address(row.key)
    return addr is not None and addr.version == net.version and addr in net


def _port_parts(name: str) -> tuple[str, int]:
    proto, _, port = name.partition("/")
    return proto, int(port) if port.isdigit() else -1


def _term(word: str) -> Test:
    name, colon, value = ef.split(word)
    if not colon or name not in ef.FIELDS:
        needle = word.lower()
        return lambda _kind, row, _d: needle in row.key.lower()
    if not value:
        raise ValueError(f"'{word}': give a value after the colon")
    if name in ("src", "dst"):
        net = ef.network(word, value)
        want = TopKind.SOURCES if name == "src" else TopKind.DESTINATIONS
        return lambda kind, row, _d: kind is want and _in(net, row)
    if name == "proto":
        proto = fmt.protocol(ef.protocol(word, value))

        def by_proto(kind: TopKind, row: TopRow, d: SourceDetail | None) -> bool:
            if kind is TopKind.PORTS:
                return _port_parts(row.key)[0] == proto
            return d is not None and any(p == proto for p, _ in d.protocols)

        return by_proto
    if name in ("port", "dport"):
        port = ef.port(word, value)

        def by_port(kind: TopKind, row: TopRow, d: SourceDetail | None) -> bool:
            if kind is TopKind.PORTS:
                return _port_parts(row.key)[1] == port
            return d is not None and any(_port_parts(p)[1] == port for p, _ in d.ports)

        return by_port
    if name == "verdict":
        try:
            verdict = Verdict(value.lower())
        except ValueError:
            raise ValueError(f"'{word}': a verdict is pass, drop, monitor or protected") from None
        if verdict is Verdict.DROP:
            return lambda _kind, row, _d: row.drop_ps > 0
        if verdict is Verdict.PASS:
            return lambda _kind, row, _d: row.drop_ps < row.pps
        raise ValueError(f"'{word}': the top talkers count drops only: verdict:drop or verdict:pass")
    raise ValueError(f"'{word}': {name}: is not counted per talker: use src:, dst:, proto:, port:, verdict:")
