"""How numbers, times and rules read in the console (Textual-free)."""

from __future__ import annotations

import ipaddress
import time

from ironpost_tui.config.durations import format_duration
from ironpost_tui.filter_terms import PROTOCOL_NUMBERS as PROTOCOL_NUMBERS
from ironpost_tui.model import FilterRule
from ironpost_tui.text import holds_address as is_address_word
from ironpost_tui.text import visible
from ironpost_tui.text import whole_values as whole_values

PROTOCOL_NAMES = {n: name for name, n in PROTOCOL_NUMBERS.items()}
_TCP_FLAGS = "FSRPAUEC"  # FIN SYN RST PSH ACK URG ECE CWR, bit 0 first


def text(value: str) -> str:
    """Text from outside (a rule id, an alert field, a notice, an error) as the console shows it:
    control, format and bidi characters escaped visibly (ESC reads \\x1b), never sent to the terminal.
    A tab as well (\\x09): the rules and events grids write a cell's text to the terminal as it is, where a
    tab moves the cursor up to 8 columns past what the cell counted (a replayed rule id "x<TAB>drop" read
    as the action's column; an attacker's review of session 29)."""
    return visible(value).replace("\t", "\\x09")


def si(value: float, unit: str = "") -> str:
    """1234567 -> '1.23M'; three significant digits."""
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            scaled = value / factor
            return f"{scaled:.3g}{prefix}{unit}" if scaled < 1000 else f"{scaled:.0f}{prefix}{unit}"
    return f"{value:.3g}{unit}" if value else f"0{unit}"


def count(n: int) -> str:
    return f"{n:,}"


def short_count(n: int) -> str:
    """A count in at most 7 cells: 263,664 as is, 12,345,678 as 12.3M."""
    return count(n) if abs(n) < 1_000_000 else si(n)


def clip(value: str, width: int) -> str:
    """``value`` in at most ``width`` cells, cut with an ellipsis (for ids; never for addresses)."""
    return value if len(value) <= width else value[: max(0, width - 1)] + "…"


_ADDRESS_CHARS = frozenset("0123456789abcdefABCDEF:./")


def clip_id(value: str, width: int) -> str:
    """A rule id in at most ``width`` cells, cut in the middle: an address that ends it kept whole, else the head
    and the tail.  Cut at the end (until session 25) the console's own ids read alike: two blocks were both
    "block-198.18.20…", every auto-block "auto-port_scan-…".  Linear in the id (its address found by a scan from
    the end, not a search from every position: ids are up to 256 characters, tables 10,000 rules)."""
    if len(value) <= width:
        return value
    start = len(value)
    while start > 0 and value[start - 1] in _ADDRESS_CHARS:
        start -= 1
    tail = value[start:]
    if len(tail) + 2 > width or not _parses(tail):
        tail = value[-((width - 1) - (width - 1) // 2) :] if width > 1 else ""
    head = max(0, width - 1 - len(tail))
    return value[:head] + "…" + tail


def _parses(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return True


def fit(line: str, width: int) -> str:
    """``line`` in at most ``width`` cells without ever cutting an address: words that are not
    addresses are left out (an ellipsis where they were) from the end backwards; if the
    addresses alone do not fit, the last of them are left out whole."""
    if len(line) <= width:
        return line
    words, keep = _words_that_count(line.split(" "), width)

    def render() -> str:
        out: list[str] = []
        for word, kept in zip(words, keep, strict=True):
            if kept:
                out.append(word)
            elif not out or out[-1] != "…":
                out.append("…")
        return " ".join(out).replace(" …", "…")

    # Greedily put the other words back, first to last, while the line still fits.
    addresses_only = list(keep)
    for i, is_addr in enumerate(addresses_only):
        if is_addr:
            continue
        keep[i] = True
        if len(render()) > width:
            keep[i] = False
            break
    text = render()
    while len(text) > width and any(keep):
        last = max(i for i, k in enumerate(keep) if k)
        keep[last] = False
        text = render()
    return text if len(text) <= width else ""


def _words_that_count(words: list[str], width: int) -> tuple[list[str], list[bool]]:
    """fit()'s words, and which are addresses, as fit() can use them: the words past the first ``2 * width + 4``
    addresses, and each run of other words past the first ``2 * width + 4`` of them, stand as one word too long to
    fit (an ellipsis where they were).  None of those could be kept: a kept address costs at least 2 cells and a
    separator, and a word put back at least one cell, but for an empty word between two kept ones, at most one
    per address.  Without this a notice of thousands of addresses (a replayed recording's) took fit() seconds to
    minutes, on the console's event loop: it dropped one word at a time and wrote the line again after each
    (an attacker's review of session 29)."""
    cap = 2 * width + 4
    far = "…" * (width + 1)  # a word that never fits, never an address
    out: list[str] = []
    keep: list[bool] = []
    addresses = others = 0
    for word in words:
        if addresses > cap:
            out.append(far)  # whatever follows: an ellipsis after the last word kept
            keep.append(False)
            break
        is_address = is_address_word(word)
        if is_address:
            addresses += 1
        else:
            others += 1
            if others > cap:
                if keep[-1] is False and out[-1] == far:
                    continue  # the run goes on
                word = far
        out.append(word)
        keep.append(is_address)
    return out, keep


def protocol(number: int) -> str:
    return PROTOCOL_NAMES.get(number, str(number))


def tcp_flags(flags: int) -> str:
    return "".join(letter for bit, letter in enumerate(_TCP_FLAGS) if flags & (1 << bit))


def clock(ts: float) -> str:
    """Wall-clock seconds as local HH:MM:SS."""
    return time.strftime("%H:%M:%S", time.localtime(ts))


def moment(ts: float, now: float) -> str:
    """Wall-clock seconds as local HH:MM:SS on ``now``'s day, with the date on any other ("2026-12-07 16:45:14"): a
    24 h expiry shown as a time of day alone read as one in the past."""
    day = time.localtime(ts)
    if day[:3] == time.localtime(now)[:3]:
        return time.strftime("%H:%M:%S", day)
    return time.strftime("%Y-%m-%d %H:%M:%S", day)


def span(seconds: float, units: int = 2) -> str:
    """A duration for people: 45s, 12m05s, 3h02m, 2d04h (two units at most; ``units=1``: the largest alone, the
    rest dropped, as 1h for 1h59m)."""
    full = format_duration(max(0.0, seconds))
    # keep the two largest units: 1h2m3s -> 1h2m
    parts: list[str] = []
    number = ""
    for ch in full:
        number += ch
        if not ch.isdigit():
            parts.append(number)
            number = ""
    return "".join(parts[:units])


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
