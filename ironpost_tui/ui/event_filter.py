"""The events pane's filter: free text, plus field:value terms (Textual-free).

``src:198.51.100.0/24``, ``dst:ADDR``, ``proto:tcp`` (or a number),
``port:53`` (either port), ``sport:N``, ``dport:N``, ``verdict:drop``,
``rule:ID``; any other word must appear somewhere in the row.  Terms are AND-ed.
A word that looks like ``key:value`` with a key not in that list (``srcip:1.2.3.4``) is an
error naming the keys, not a search word; an IPv6 address or a time (``2001:db8::1``,
``12:00``) is still a word.
"""

from __future__ import annotations

import difflib
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.model import IPNetwork, PacketEvent, Verdict
from ironpost_tui.ui import format as fmt

FIELDS = ("src", "dst", "proto", "port", "sport", "dport", "verdict", "rule")

Test = Callable[[PacketEvent], bool]


@dataclass(frozen=True)
class EventFilter:
    text: str
    tests: tuple[Test, ...] = ()

    @classmethod
    def parse(cls, text: str) -> EventFilter:
        """ValueError with a one-line message for a term that cannot match anything."""
        tests = [_term(word) for word in text.split()]
        return cls(text.strip(), tuple(tests))

    def __bool__(self) -> bool:
        return bool(self.tests)

    def matches(self, event: PacketEvent) -> bool:
        return all(test(event) for test in self.tests)


def row_text(e: PacketEvent) -> str:
    return " ".join(
        (
            str(e.src),
            str(e.src_port),
            str(e.dst),
            str(e.dst_port),
            fmt.protocol(e.protocol),
            fmt.tcp_flags(e.tcp_flags),
            e.verdict.value,
            e.rule_id or "",
        )
    ).lower()


def _term(word: str) -> Test:
    name, colon, value = word.partition(":")
    name = name.lower()
    check_key(word, name, colon)
    if not colon or name not in FIELDS:
        needle = word.lower()
        return lambda e: needle in row_text(e)
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


def check_key(word: str, name: str, colon: str) -> None:
    """ValueError for ``srcip:...``: a key that is none of FIELDS (not an address or a time)."""
    if colon and name not in FIELDS and _looks_like_key(name, word):
        close = difflib.get_close_matches(name, FIELDS, n=1)
        hint = f" (did you mean {close[0]}:?)" if close else ""
        raise ValueError(f"'{word}': unknown key '{name}'{hint}: the keys are {', '.join(k + ':' for k in FIELDS)}")


def _looks_like_key(name: str, word: str) -> bool:
    """``srcip:`` is a key someone mistyped; ``2001:db8::1`` or ``dead:beef::/32`` is an address."""
    if not name.isalpha():
        return False  # 12:00:01, ::1, fe80::1
    try:
        ipaddress.ip_network(word, strict=False)
    except ValueError:
        return True
    return False


def network(word: str, value: str) -> IPNetwork:
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise ValueError(f"'{word}': not an address or prefix (like 198.51.100.7 or 2001:db8::/32)") from None


def protocol(word: str, value: str) -> int:
    number = fmt.PROTOCOL_NUMBERS.get(value.lower())
    if number is not None:
        return number
    if value.isdigit() and int(value) <= 255:
        return int(value)
    raise ValueError(f"'{word}': a protocol is tcp, udp, icmp, icmpv6 or a number 0-255")


def port(word: str, value: str) -> int:
    if value.isdigit() and int(value) <= 65535:
        return int(value)
    raise ValueError(f"'{word}': a port is a number 0-65535")
