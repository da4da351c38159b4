"""The events pane's filter: free text, plus field:value terms (Textual-free).

``src:198.51.100.0/24``, ``dst:ADDR``, ``proto:tcp`` (or a number),
``port:53`` (either port), ``sport:N``, ``dport:N``, ``verdict:drop``,
``rule:ID``; any other word must appear somewhere in the row.  Terms are AND-ed.
A word that looks like ``key:value`` with a key not in that list (``srcip:1.2.3.4``) is an
error naming the keys, not a search word; an IPv6 address or a time (``2001:db8::1``,
``12:00``) is still a word.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.filter_terms import FIELDS, network, port, protocol, split, words
from ironpost_tui.model import PacketEvent, Verdict
from ironpost_tui.ui import format as fmt

__all__ = ["FIELDS", "EventFilter", "row_text"]

Test = Callable[[PacketEvent], bool]


@dataclass(frozen=True)
class EventFilter:
    text: str
    tests: tuple[Test, ...] = ()  # the field:value terms
    needles: tuple[str, ...] = ()  # the free words, lower case: each must appear in the row's text

    @classmethod
    def parse(cls, text: str) -> EventFilter:
        """ValueError with a one-line message for a term that cannot match anything, or a filter too big
        (filter_terms.words)."""
        tests, needles = [], []
        for word in words(text):
            name, colon, _value = split(word)  # ValueError for a key that is none of FIELDS
            if colon and name in FIELDS:
                tests.append(_term(word))
            else:
                needles.append(word.lower())
        return cls(text.strip(), tuple(tests), tuple(needles))

    def __bool__(self) -> bool:
        return bool(self.tests or self.needles)

    def matches(self, event: PacketEvent) -> bool:
        if not all(test(event) for test in self.tests):
            return False
        if not self.needles:
            return True
        row = row_text(event)  # once an event, whatever the number of words
        return all(needle in row for needle in self.needles)


def row_text(e: PacketEvent) -> str:
    _ts, _family, src, dst, sport, dport, proto, flags, _length, verdict, rule_id = e  # an engine's event: one decode
    return " ".join(
        (
            str(src),
            str(sport),
            str(dst),
            str(dport),
            fmt.protocol(proto),
            fmt.tcp_flags(flags),
            verdict.value,
            rule_id or "",
        )
    ).lower()


def _term(word: str) -> Test:
    """The test of a field:value word (a free word is a needle: EventFilter.parse)."""
    name, _colon, value = split(word)
    if not value:
        raise ValueError(f"'{word}': give a value after the colon")
    if name in ("src", "dst"):
        net = network(word, value)
        if name == "src":
            return lambda e: e.src.version == net.version and e.src in net
        return lambda e: e.dst.version == net.version and e.dst in net
    if name == "proto":
        number = protocol(word, value)
        return lambda e: e.protocol == number
    if name in ("port", "sport", "dport"):
        number = port(word, value)
        if name == "sport":
            return lambda e: e.src_port == number
        if name == "dport":
            return lambda e: e.dst_port == number
        return lambda e: number in (e.src_port, e.dst_port)
    if name == "verdict":
        try:
            verdict = Verdict(value.lower())
        except ValueError:
            raise ValueError(f"'{word}': a verdict is pass, drop, monitor or protected") from None
        return lambda e: e.verdict is verdict
    rule_id = value
    return lambda e: e.rule_id == rule_id
