"""Text from outside (a recording, a configuration, a request) made safe for a terminal or a log.

A terminal obeys what it is sent: ESC starts a sequence that can set the window
title (OSC 0), write the clipboard (OSC 52) or redraw the screen; BEL, the C1
controls and the bidi overrides and isolates (U+202A-U+202E, U+2066-U+2069)
reorder or hide what the operator reads.  One rule decides what is unsafe:
Unicode categories Cc (controls: C0 but tab, DEL, C1), Cf (format: bidi marks,
overrides and isolates, zero-width characters), Cs (lone surrogates, which
cannot even be encoded), Zl and Zp (line and paragraph separators).  Letters
of any script, accents and symbols are text and stay as they are.

Configuration strings holding one are refused at load (``unsafe``); whatever
else is shown has them escaped visibly (``visible``: ESC reads ``\\x1b``).
"""

from __future__ import annotations

import ipaddress
import re
import unicodedata
from collections.abc import Sequence

UNSAFE_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Zl", "Zp"})
ALLOWED = frozenset("\t")


def is_unsafe(ch: str) -> bool:
    """Whether the character ``ch`` must not reach a terminal or a log as it is."""
    return ch not in ALLOWED and unicodedata.category(ch) in UNSAFE_CATEGORIES


def unsafe(text: str) -> str | None:
    """The first unsafe character of ``text``, or None when it has none."""
    if text.isprintable():  # no Cc, Cf, Cs, Zl, Zp (nor Zs but space, Co, Cn): the fast common case
        return None
    return next((ch for ch in text if is_unsafe(ch)), None)


def escape(ch: str) -> str:
    """One character as Python writes it in a string literal: \\x1b, \\u202e, \\U000e0001."""
    cp = ord(ch)
    if cp < 0x100:
        return f"\\x{cp:02x}"
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    return f"\\U{cp:08x}"


def visible(text: str, keep: str = "") -> str:
    """``text`` with every unsafe character escaped visibly (ESC -> ``\\x1b``); the characters
    in ``keep`` (e.g. a newline between the lines of a traceback) are left as they are.

    Text without any is returned unchanged, found by one str.isprintable (C speed).
    """
    if unsafe(text) is None:
        return text
    return "".join(escape(ch) if is_unsafe(ch) and ch not in keep else ch for ch in text)


def json_safe(line: str) -> str:
    """A JSON document (``json.dumps(..., ensure_ascii=False)``) with every unsafe character
    written as a JSON ``\\uXXXX`` escape (a surrogate pair beyond the BMP).

    Outside strings JSON has only ASCII punctuation, so this only touches string contents:
    the document stays valid and decodes to the same values.
    """
    if unsafe(line) is None:
        return line
    return "".join(_json_escape(ord(ch)) if is_unsafe(ch) else ch for ch in line)


def _json_escape(cp: int) -> str:
    if cp < 0x10000:
        return f"\\u{cp:04x}"
    cp -= 0x10000
    return f"\\u{0xD800 + (cp >> 10):04x}\\u{0xDC00 + (cp & 0x3FF):04x}"


def cells(text: str) -> int:
    """The terminal cells ``text`` takes: two for a wide or full-width character (East Asian Width W or F)."""
    return sum(2 if unicodedata.east_asian_width(c) in ("W", "F") else 1 for c in text)


def whole_values(values: Sequence[str], width: int) -> str:
    """Whole values (addresses, rule ids), as many as fit in ``width`` cells, then "+N" for the rest: a value is
    never cut."""
    shown = values[:1]
    for value in values[1:]:
        rest = len(values) - len(shown) - 1
        candidate = ", ".join([*shown, value]) + (f" +{rest}" if rest else "")
        if cells(candidate) > width:
            break
        shown = [*shown, value]
    hidden = len(values) - len(shown)
    return ", ".join(shown) + (f" +{hidden}" if hidden else "")


# A run of address characters (one match per run, so the scan is linear: a pattern that had to find a ':' or
# '.' inside the run backtracked over every start in it, and a 20,000-letter word took 2 s; an attacker's
# review of session 29), and a prefix length after it.
_ADDRESS_RUN = re.compile(r"[0-9A-Fa-f:.]+(?:/\d{1,3})?")


def holds_address(text: str) -> bool:
    """Whether ``text`` holds an IPv4 or IPv6 address or prefix, maybe with a port or punctuation around it:
    '198.18.0.5', '(2001:db8::1)', '198.18.0.5:22,', '::1', 'block-198.18.0.9', 'f2b-sshd-2001:db8::7'."""
    if "." not in text and ":" not in text:  # a run is looked at only when it holds one (below): most ids hold
        return False  # neither, and the first snapshot of 10,000 rules asks for each (hits_group): 8.7 -> 0.7 ms
    for match in _ADDRESS_RUN.finditer(text):
        run = match.group()
        if ":" not in run and "." not in run:
            continue
        candidate = run.strip(".:")
        for inner in (candidate, candidate.rpartition(":")[0], run.rstrip(".")):
            try:
                ipaddress.ip_network(inner, strict=False)
            except ValueError:
                continue
            return True
    return False
