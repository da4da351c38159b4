"""The terms of the events filter's syntax (``src:ADDR``, ``dst:ADDR``, ``proto:tcp``, ``port:N``,
``sport:N``, ``dport:N``, ``verdict:drop``, ``rule:ID``), checked one at a time: shared by the console's
events filter and the capture's ``--filter`` (which takes those the kernel can evaluate).  Textual-free.

Every check raises ValueError with a one-line message naming the word.
"""

from __future__ import annotations

import difflib
import ipaddress

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network  # as ironpost_tui.model's (a sibling module)

FIELDS = ("src", "dst", "proto", "port", "sport", "dport", "verdict", "rule")
PROTOCOL_NUMBERS = {"icmp": 1, "tcp": 6, "udp": 17, "icmpv6": 58}
# A filter's size: the capture's, the events pane's, the Top pane's.  Every event or row is judged by every word:
# a paste of 10,000 words into the events filter cost 23 ms an event, some two minutes for the 5,000 kept
# (session 28), and the console froze with it.
MAX_TEXT = 1024  # characters
MAX_WORDS = 32


def words(text: str) -> list[str]:
    """The words of a filter; ValueError, one line, for a filter longer than MAX_TEXT or of more than MAX_WORDS."""
    if len(text) > MAX_TEXT:
        raise ValueError(f"the filter is {len(text)} characters long: at most {MAX_TEXT}")
    found = text.split()
    if len(found) > MAX_WORDS:
        raise ValueError(f"the filter has {len(found)} words: at most {MAX_WORDS}")
    return found


def split(word: str) -> tuple[str, str, str]:
    """``key``, ``:`` (or "" for a plain word) and the value, the key in lower case; ValueError for an
    unknown key that looks like one (``srcip:1.2.3.4``)."""
    name, colon, value = word.partition(":")
    name = name.lower()
    check_key(word, name, colon)
    return name, colon, value


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
    number = PROTOCOL_NUMBERS.get(value.lower())
    if number is not None:
        return number
    if value.isascii() and value.isdigit() and int(value) <= 255:
        return int(value)
    raise ValueError(f"'{word}': a protocol is tcp, udp, icmp, icmpv6 or a number 0-255")


def port(word: str, value: str) -> int:
    if value.isascii() and value.isdigit() and int(value) <= 65535:
        return int(value)
    raise ValueError(f"'{word}': a port is a number 0-65535")
