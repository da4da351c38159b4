"""How numbers, times and rules read in the console (Textual-free)."""

from __future__ import annotations

import time

from ironpost_tui.config.durations import format_duration
from ironpost_tui.model import FilterRule
from ironpost_tui.text import visible

PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
PROTOCOL_NAMES = {n: name for name, n in PROTOCOL_NUMBERS.items()}
_TCP_FLAGS = "FSRPAUEC"  # FIN SYN RST PSH ACK URG ECE CWR, bit 0 first


def text(value: str) -> str:
    """Text from outside (a rule id, an alert field, a notice, an error) as the console shows it:
    control, format and bidi characters escaped visibly (ESC reads \\x1b), never sent to the terminal."""
    return visible(value)


def si(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; three significant digits."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            scaled = value / factor
            return f"{scaled:.3g}{prefix}{unit}" if scaled < 1000 else f"{scaled:.0f}{prefix}{unit}"
    return f"{value:.3g}{unit}" if value else f"0{unit}"


def count(n: int) -> str:
    return f"{n:,}"


def protocol(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


def tcp_flags(flags: int) -> str:
    return "".join(letter for bit, letter in enumerate(_TCP_FLAGS) if flags & (1 << bit))


def clock(ts: float) -> str:
    """Wall-clock seconds as local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def span(seconds: float) -> str:
    """A duration for people: 45s, 12m05s, 3h02m, 2d04h (two units at most)."""
    full = format_duration(max(0.0, seconds))
    # keep the two largest units: 1h2m3s -> 1h2m
    parts: list[str] = []
    number = ""
    for ch in full:
        number += ch
        if not ch.isdigit():
            parts.append(number)
            number = ""
    return "".join(parts[:2])


def position(seconds: float) -> str:
    m, s = divmod(max(0.0, seconds), 60)
    return f"{int(m)}:{s:04.1f}"


def rule_match(rule: FilterRule) -> str:
    """The rule's match fields in one short line: 'src 198.51.100.0/24 tcp/22'."""
    parts = []
    if rule.src_ip is not None:
        parts.append(f"src {_net(rule.src_ip)}")
    if rule.dst_ip is not None:
        parts.append(f"dst {_net(rule.dst_ip)}")
    if rule.protocol is not None and rule.dst_port is not None:
        parts.append(f"{protocol(rule.protocol)}/{rule.dst_port}")
    elif rule.dst_port is not None:
        parts.append(f"port {rule.dst_port}")
    elif rule.protocol is not None:
        parts.append(protocol(rule.protocol))
    return " ".join(parts) or "any"


def _net(net: object) -> str:
    text = str(net)
    return text.removesuffix("/32") if "." in text else text.removesuffix("/128")
