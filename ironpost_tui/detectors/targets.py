"""The destinations a source probes most: what an alert names as the address attacked.

The kernel counts, per source way, the probes to each of TARGET_SLOTS destinations
(bpf/sketch.h count_target); the sketch reader turns them into deltas per (source, destination),
and here they are summed over about a detector's window (SourceTargets), for the sources that
detector watches only (a spoofed flood's one-packet sources cost nothing here).  An alert names the
destinations with at least a quarter of the probes of the most probed one, most probed first, at
most MAX_TARGETS.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Hashable, Iterable, Mapping

from ironpost_tui.kernel import abi

MAX_TARGETS = abi.TARGET_SLOTS  # named at most (a source holds this many in the kernel)
SHARE = 4  # a destination is named with at least 1/SHARE of the most probed one's probes
MAX_PER_SOURCE = 64  # destinations kept per source and epoch

# (source key, destination address as 16 bytes, in the source's family) -> probes
Probes = Mapping[tuple[Hashable, bytes], int]


@functools.lru_cache(maxsize=4096)  # few addresses are attacked, and named again every tick
def address_text(addr16: bytes, family: int) -> str:
    """An address as agg_key holds it (IPv4 in the first 4 bytes) in its usual form."""
    return str(ipaddress.IPv4Address(addr16[:4]) if family == abi.FAMILY_V4 else ipaddress.IPv6Address(addr16))


def _family(key: Hashable) -> int:
    assert isinstance(key, bytes)
    return key[16]  # agg_key.family


class SourceTargets:
    """Per watched source, the probes to each destination within the last half to whole ``window``.

    Two epochs of half a window each, the current one and the one before: coarser than the detectors'
    sliding windows, and a few dict operations per (source, destination) and tick, which an alert storm
    (thousands of sources each raising its own alert) needs.  Memory: only sources a detector watches
    (its window keeps 4,096 at most), each with at most MAX_PER_SOURCE destinations.
    """

    def __init__(self, window: float) -> None:
        self.epoch = window / 2
        self._since: float | None = None
        self._current: dict[Hashable, dict[bytes, int]] = {}
        self._before: dict[Hashable, dict[bytes, int]] = {}

    def add(self, probes: Probes, now: float, watched: Callable[[Hashable], bool]) -> None:
        """What each pair grew by this tick, for the sources ``watched`` says a detector keeps."""
        if self._since is None or now - self._since >= self.epoch:
            # The epoch before is forgotten, whole; a gap of more than a window forgets both.
            stale = self._since is None or now - self._since >= 2 * self.epoch
            self._before, self._current = ({} if stale else self._current), {}
            self._since = now
        current = self._current
        for (source, addr), n in probes.items():
            if not n or not watched(source):
                continue
            counts = current.get(source)
            if counts is None:
                counts = current[source] = {}
            counts[addr] = counts.get(addr, 0) + n
            if len(counts) > MAX_PER_SOURCE:  # a scan of a whole network: keep the most probed half
                for dropped, _ in sorted(counts.items(), key=lambda item: item[1])[: MAX_PER_SOURCE // 2]:
                    del counts[dropped]

    def named(self, sources: Iterable[Hashable]) -> tuple[str, ...]:
        """The destinations ``sources`` (together) probed most, most first; () when none is known."""
        totals: dict[tuple[bytes, int], int] = {}
        for source in sources:
            family = _family(source)
            for epoch in (self._current, self._before):
                for addr, n in epoch.get(source, {}).items():
                    totals[(addr, family)] = totals.get((addr, family), 0) + n
        if len(totals) == 1:  # the usual case: one address
            ((addr, fam),) = totals
            return (address_text(addr, fam),)
        if not totals:
            return ()
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        top = ranked[0][1]
        return tuple(address_text(addr, fam) for (addr, fam), n in ranked[:MAX_TARGETS] if n * SHARE >= top)
