"""The destinations a source probes most: what an alert names as the address attacked.

The kernel counts, per source way, the probes to each of TARGET_SLOTS destinations
(bpf/sketch.h count_target); the sketch reader turns them into deltas per (source, destination),
and here they are summed over a detector's window, for the sources that detector watches only (a
spoofed flood's one-packet sources cost nothing here).  An alert names the destinations with at
least a quarter of the probes of the most probed one, most probed first, at most MAX_TARGETS.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Hashable, Iterable, Mapping

from ironpost_tui.detectors.window import WindowSums
from ironpost_tui.kernel import abi

MAX_TARGETS = abi.TARGET_SLOTS  # named at most (a source holds this many in the kernel)
SHARE = 4  # a destination is named with at least 1/SHARE of the most probed one's probes

# (source key, destination address as 16 bytes, in the source's family) -> probes
Probes = Mapping[tuple[Hashable, bytes], int]


def address_text(addr16: bytes, family: int) -> str:
    """An address as agg_key holds it (IPv4 in the first 4 bytes) in its usual form."""
    return str(ipaddress.IPv4Address(addr16[:4]) if family == abi.FAMILY_V4 else ipaddress.IPv6Address(addr16))


def _family(key: Hashable) -> int:
    assert isinstance(key, bytes)
    return int(abi.AGG_KEY.unpack(key)[1])


class SourceTargets:
    """Per (source, destination), the probes within the last ``window`` seconds."""

    def __init__(self, window: float) -> None:
        self._sums = WindowSums(window, width=1)
        self._by_source: dict[Hashable, list[tuple[bytes, int]]] | None = None

    def add(self, probes: Probes, now: float, watched: Callable[[Hashable], bool]) -> None:
        """What each pair grew by this tick, for the sources ``watched`` says a detector keeps."""
        self._sums.add({pair: (n,) for pair, n in probes.items() if n and watched(pair[0])}, now)
        self._by_source = None

    def named(self, sources: Iterable[Hashable]) -> tuple[str, ...]:
        """The destinations ``sources`` (together) probed most, most first; () when none is known."""
        if self._by_source is None:
            index: dict[Hashable, list[tuple[bytes, int]]] = {}
            for pair, (n,) in self._sums.sums.items():
                assert isinstance(pair, tuple)
                index.setdefault(pair[0], []).append((pair[1], n))
            self._by_source = index
        totals: dict[tuple[bytes, int], int] = {}
        for source in sources:
            family = _family(source)
            for addr, n in self._by_source.get(source, ()):
                totals[(addr, family)] = totals.get((addr, family), 0) + n
        if not totals:
            return ()
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        top = ranked[0][1]
        return tuple(address_text(addr, fam) for (addr, fam), n in ranked[:MAX_TARGETS] if n * SHARE >= top)
