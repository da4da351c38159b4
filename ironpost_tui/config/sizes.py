"""Sizes as people write them in the configuration: KiB, the seed's unit, as a bare number (256) or
with the unit in a string ("256KiB", "1MiB")."""

from __future__ import annotations

import re

from ironpost_tui.config.check import CONTROL_HINT, Table, quote, show
from ironpost_tui.text import escape, unsafe

UNITS = {"kib": 1, "mib": 1024}  # in KiB; only powers of 1024: "KB" would say 1000
EXAMPLES = '256 (KiB), "256KiB" or "1MiB"'
# [ebpf] ring_buffer_size, in KiB (the seed's unit).  EVENTS is a power of two of pages; 64 MiB holds about a
# million events.  The maximum also tells bytes from KiB: 262144, the byte count an older file wrote for the
# seed's 256 KiB, would be 256 MiB in KiB, and is refused as bytes rather than taken.
RING_MIN_KIB, RING_MAX_KIB = 4, 64 * 1024

_SIZE = re.compile(r"([0-9]{1,9})\s*([A-Za-z]*)")


def parse_kib(text: str) -> int:
    """KiB in ``text``, a number and a unit (KiB or MiB, any case); ValueError saying what is wrong otherwise."""
    m = _SIZE.fullmatch(text.strip())
    if m is None:
        raise ValueError(f"is not a size: write {EXAMPLES}")
    number, unit = m.groups()
    if not unit:
        raise ValueError(f"has no unit: write {number} without quotes (KiB) or with one, like {number}KiB")
    scale = UNITS.get(unit.lower())
    if scale is None:
        raise ValueError(f"has the unit {unit!r}: sizes here are in KiB or MiB (powers of 1024), like {EXAMPLES}")
    return int(number) * scale


def _in_unit(kib: int) -> tuple[int, str]:
    return (kib // 1024, "MiB") if kib >= 1024 and kib % 1024 == 0 else (kib, "KiB")


def format_kib(kib: int) -> str:
    """``kib`` as parse_kib reads it back, in MiB when whole: 256KiB, 1MiB."""
    n, unit = _in_unit(kib)
    return f"{n}{unit}"


def _prose(kib: int) -> str:
    """``kib`` in a sentence: 256 KiB, 64 MiB."""
    n, unit = _in_unit(kib)
    return f"{n} {unit}"


def ring_buffer_kib(t: Table, default: int) -> int:
    """KiB: a bare integer (the seed's ``ring_buffer_size = 256``) or a string with a unit ("256KiB", "1MiB")."""
    key = "ring_buffer_size"
    value = t.typed(key, (int, str), f"a size in KiB: {EXAMPLES}")
    if value is None:
        return default
    if isinstance(value, str):
        bad = unsafe(value)
        if bad is not None:
            t.error(key, f"{t.name(key)} contains {escape(bad)}, {CONTROL_HINT}")
            return default
        try:
            kib = parse_kib(value)
        except ValueError as exc:
            t.error(key, f"{t.name(key)} {quote(value)} {exc}")
            return default
        name = f"{t.name(key)} {quote(value)}"
    else:
        kib = value
        name = f"{t.name(key)} {show(value).split(' ', 1)[-1]}"
    span = f"a power of two from {_prose(RING_MIN_KIB)} to {_prose(RING_MAX_KIB)}"
    if kib > RING_MAX_KIB and isinstance(value, int):
        # Only bytes make sense of it: say so, with the number it meant where there is one.
        meant = value // 1024 if value % 1024 == 0 else 0
        if RING_MIN_KIB <= meant <= RING_MAX_KIB and not meant & (meant - 1):
            fix = f'{value} bytes is {_prose(meant)}: write {meant} or "{format_kib(meant)}"'
        else:
            fix = f'{span}, like 256 or "1MiB"'
        t.error(key, f"{name} is too large: the unit is KiB, as in the seed (at most {RING_MAX_KIB}); {fix}")
    elif kib > RING_MAX_KIB:
        t.error(key, f"{name} is too large: {span}")
    elif kib < 0:
        t.error(key, f"{name} is negative: the unit is KiB, {span}")
    elif kib < RING_MIN_KIB:
        t.error(key, f"{name} is too small: {'the unit is KiB, ' if isinstance(value, int) else ''}{span}")
    elif kib & (kib - 1):
        low = 1 << (kib.bit_length() - 1)
        use = f"{low} or {low * 2} (KiB)" if isinstance(value, int) else f"{format_kib(low)} or {format_kib(low * 2)}"
        t.error(key, f"{name} is not a power of two: use {use}")
    else:
        return int(kib)
    return default
