"""The destinations a source probes most: what an alert names as the address attacked.

The kernel counts, per source way, the probes to each of TARGET_SLOTS destinations
(bpf/sketch.h count_target); the sketch reader turns them into deltas per (source, destination),
and here they are summed over about a detector's window (SourceTargets), for the sources that
detector watches only (a spoofed flood's one-packet sources cost nothing here).  An alert names the
destinations with at least a quarter of the probes of the most probed one, most probed first, at
most MAX_TARGETS, each with the port that took at least half its probes when one did (the sketch's
keep_port), or as probed on many ports: ``198.18.0.1:22``, ``[2001:db8::1]:443``, ``198.18.0.1:*``.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from typing import Any, NamedTuple

from ironpost_tui.kernel import abi

MAX_TARGETS = abi.TARGET_SLOTS  # named at most (a source holds this many in the kernel)
SHARE = 4  # a destination is named with at least 1/SHARE of the most probed one's probes
MAX_PER_SOURCE = 64  # destinations kept per source and epoch

# (source key, destination address as 16 bytes, in the source's family) -> probes
Probes = Mapping[tuple[Hashable, bytes], int]
# the same pairs -> the port that took at least half their probes, or MANY_PORTS (sketch.py)
ProbePorts = Mapping[tuple[Hashable, bytes], int]
MANY_PORTS = -1  # a destination's probes went to many ports, none took half


class Target(NamedTuple):
    """An address attacked, and its port: the one that took at least half the probes (None: not
    known, as in a recording older than ports, or many: the probes spread over ports, none took half)."""

    address: str
    port: int | None = None
    many_ports: bool = False

    def __str__(self) -> str:
        if self.port is None and not self.many_ports:
            return self.address
        host = f"[{self.address}]" if ":" in self.address else self.address
        return f"{host}:{'*' if self.many_ports else self.port}"

    @staticmethod
    def of(address: str, port: int | None) -> Target:
        """``port`` as the sketches give it: a port, MANY_PORTS, or None when not known."""
        if port is None:
            return Target(address)
        return Target(address, many_ports=True) if port == MANY_PORTS else Target(address, port)

    def scanned(self) -> Target:
        """This address as a port scan names it: probed on many ports, whichever took the most."""
        return Target(self.address, many_ports=True)

    @staticmethod
    def parse(text: str) -> Target:
        """``str()``'s inverse: ``ADDRESS``, ``ADDRESS:PORT``, ``ADDRESS:*``, an IPv6 address in
        brackets when a port follows.  ValueError (one line) for anything else."""
        host, port = text, None
        if text.startswith("["):
            end = text.find("]")
            if end < 0 or not text[end + 1 :].startswith(":"):
                raise ValueError(f"{text[:60]!r} is not ADDRESS, ADDRESS:PORT or [IPv6]:PORT")
            host, port = text[1:end], text[end + 2 :]
        elif text.count(":") == 1:
            host, port = text.split(":")
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"{host[:60]!r} is not an IP address") from None
        if text.startswith("[") and addr.version != 6:
            raise ValueError(f"{text[:60]!r}: brackets hold an IPv6 address")
        if port is None:
            return Target(str(addr))
        if port == "*":
            return Target(str(addr), many_ports=True)
        if not port.isdigit() or not port.isascii() or len(port) > 5 or int(port) > 65_535:
            raise ValueError(f"{port[:60]!r} is not a port (0-65535 or *)")
        return Target(str(addr), int(port))


@functools.lru_cache(maxsize=4096)  # few addresses are attacked, and named again every tick
def address_text(addr16: bytes, family: int) -> str:
    """An address as agg_key holds it (IPv4 in the first 4 bytes) in its usual form."""
    return str(ipaddress.IPv4Address(addr16[:4]) if family == abi.FAMILY_V4 else ipaddress.IPv6Address(addr16))


def _at(flat: list[Any], addr: bytes) -> int:
    """Where ``addr`` starts in a flat ``[address, probes, port, ...]`` (FLAT_MAX at most), or -1."""
    for k in range(0, len(flat), 3):
        if flat[k] == addr:
            return k
    return -1


def _get(dests: Destinations, addr: bytes) -> tuple[int, int | None] | None:
    """(probes, port) of ``addr`` among a source's destinations, or None."""
    if isinstance(dests, dict):
        cell = dests.get(addr)
        return None if cell is None else (cell[0], cell[1])
    k = _at(dests, addr)
    return None if k < 0 else (dests[k + 1], dests[k + 2])


def _put(dests: Destinations, addr: bytes, n: int, port: int | None) -> Destinations:
    """``addr`` holding ``n`` probes and ``port`` (new ones go last); the container to keep (a list of
    FLAT_MAX destinations becomes a dict when one more comes)."""
    if isinstance(dests, dict):
        dests[addr] = [n, port]
        return dests
    k = _at(dests, addr)
    if k >= 0:
        dests[k + 1], dests[k + 2] = n, port
        return dests
    if len(dests) < 3 * FLAT_MAX:
        dests += (addr, n, port)
        return dests
    grown = {dests[k]: [dests[k + 1], dests[k + 2]] for k in range(0, len(dests), 3)}
    grown[addr] = [n, port]
    return grown


def _set_port(dests: Destinations, addr: bytes, port: int) -> None:
    """``addr``'s port, when it is among the destinations."""
    if isinstance(dests, dict):
        cell = dests.get(addr)
        if cell is not None:
            cell[1] = port
        return
    k = _at(dests, addr)
    if k >= 0:
        dests[k + 2] = port


def _items(dests: Destinations) -> Iterator[tuple[bytes, int, int | None]]:
    if isinstance(dests, dict):
        for addr, (n, port) in dests.items():
            yield addr, n, port
        return
    for k in range(0, len(dests), 3):
        yield dests[k], dests[k + 1], dests[k + 2]


def _family(key: Hashable) -> int:
    assert isinstance(key, bytes)
    return key[16]  # agg_key.family


# A source's destinations in an epoch: up to FLAT_MAX as one flat list ``[address, probes, port, ...]``
# (most sources probe one destination, and a list of three takes a third of what a dict of one did); a
# source probing more (a scan of a network) has a dict, address -> [probes, port], so that a lookup costs
# the same however many destinations it holds (an attacker chooses them).
Destinations = list[Any] | dict[bytes, list[Any]]
FLAT_MAX = 4


class SourceTargets:
    """Per watched source, the probes to each destination within the last half to whole ``window``.

    Two epochs of half a window each, the current one and the one before: coarser than the detectors'
    sliding windows, and a few operations per (source, destination) and tick, which an alert storm
    (thousands of sources each raising its own alert) needs.  Memory: only sources a detector watches
    (its window keeps 4,096 at most), each with at most MAX_PER_SOURCE destinations (Destinations: a
    spoofed flood's port-scan window keeps a thousand sources or more, each here).  A pair's port is
    the one read last, in both epochs.
    """

    def __init__(self, window: float) -> None:
        self.epoch = window / 2
        self._since: float | None = None
        self._current: dict[Hashable, Destinations] = {}
        self._before: dict[Hashable, Destinations] = {}

    def add(
        self, probes: Probes, now: float, watched: Callable[[Hashable], bool], ports: ProbePorts | None = None
    ) -> None:
        """What each pair grew by this tick, for the sources ``watched`` says a detector keeps;
        ``ports``: each pair's port now (none: not known)."""
        if self._since is None or now - self._since >= self.epoch:
            # The epoch before is forgotten, whole; a gap of more than a window forgets both.
            stale = self._since is None or now - self._since >= 2 * self.epoch
            self._before, self._current = ({} if stale else self._current), {}
            self._since = now
        current, before = self._current, self._before
        for (source, addr), n in probes.items():
            if not n or not watched(source):
                continue
            dests = current.get(source)
            held = _get(dests, addr) if dests is not None else None
            old = before.get(source)
            port = ports.get((source, addr)) if ports is not None else None
            if port is None:  # not known now: the one read last, if any
                if held is not None:
                    port = held[1]
                elif old is not None and (was := _get(old, addr)) is not None:
                    port = was[1]
            elif old is not None:
                _set_port(old, addr, port)
            current[source] = dests = _put(dests if dests is not None else [], addr, n + (held[0] if held else 0), port)
            if isinstance(dests, dict) and len(dests) > MAX_PER_SOURCE:
                # A scan of a whole network: keep the most probed half.
                for dropped, _ in sorted(dests.items(), key=lambda item: item[1][0])[: MAX_PER_SOURCE // 2]:
                    del dests[dropped]

    def named(self, sources: Iterable[Hashable]) -> tuple[Target, ...]:
        """The destinations ``sources`` (together) probed most, most first, each with its port (the
        sources' one when they agree, many ports when they differ); () when none is known."""
        totals: dict[tuple[bytes, int], int] = {}
        ports: dict[tuple[bytes, int], int | None] = {}
        for source in sources:
            family = _family(source)
            for epoch in (self._current, self._before):
                dests = epoch.get(source)
                if dests is None:
                    continue
                for addr, n, port in _items(dests):
                    where = (addr, family)
                    totals[where] = totals.get(where, 0) + n
                    if where not in ports:
                        ports[where] = port
                    elif ports[where] != port:
                        ports[where] = MANY_PORTS if port is not None and ports[where] is not None else None
        if not totals:
            return ()
        ranked = sorted(totals.items(), key=lambda item: (-item[1], item[0]))
        top = ranked[0][1]
        return tuple(
            Target.of(address_text(addr, fam), ports[(addr, fam)])
            for (addr, fam), n in ranked[:MAX_TARGETS]
            if n * SHARE >= top
        )
