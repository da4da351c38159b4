"""Durations as people write them in the configuration: 30s, 10m, 1h30m, 2d."""

from __future__ import annotations

import re

UNITS = {"d": 86_400, "h": 3_600, "m": 60, "s": 1}
MAX_SECONDS = 3650 * 86_400  # ten years: anything longer is a typo, and keeps the sums small
EXAMPLES = "30s, 10m, 1h30m or 2d"

# Units largest first, each at most once: "1h30m" yes, "30m1h" and "1h1h" no.
_DURATION = re.compile(r"(?:(\d{1,9})d)?(?:(\d{1,9})h)?(?:(\d{1,9})m)?(?:(\d{1,9})s)?")


def parse_duration(text: str) -> int:
    """Seconds in ``text``; ValueError saying what is wrong otherwise."""
    m = _DURATION.fullmatch(text)
    if not text or m is None:
        raise ValueError(f"is not a duration: write a number and a unit (d, h, m, s), like {EXAMPLES}")
    seconds = sum(int(n) * UNITS[u] for n, u in zip(m.groups(), "dhms", strict=True) if n is not None)
    if seconds <= 0:
        raise ValueError("must be longer than 0s")
    if seconds > MAX_SECONDS:
        raise ValueError(f"is longer than the limit of {MAX_SECONDS // 86_400}d")
    return seconds


def format_duration(seconds: float) -> str:
    """The shortest form parse_duration reads back (whole seconds; "0s" for nothing)."""
    left = max(0, int(round(seconds)))
    parts = []
    for unit, size in UNITS.items():
        n, left = divmod(left, size)
        if n:
            parts.append(f"{n}{unit}")
    return "".join(parts) or "0s"
