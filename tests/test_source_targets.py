"""SourceTargets keeps each source's destinations in one flat list (memory: a spoofed flood's scan
window holds a thousand sources or more, each here).  The reference is the dict-of-dicts it replaced:
random sequences of ticks (sources watched or not, ports known, unknown or many, epochs passing, gaps,
scans of whole networks that overflow a source's list) name the same targets, with the same ports."""

from __future__ import annotations

import random
from collections.abc import Callable, Hashable, Iterable

import pytest

from ironpost_tui.detectors.targets import (
    FLAT_MAX,
    MANY_PORTS,
    MAX_PER_SOURCE,
    MAX_TARGETS,
    SHARE,
    ProbePorts,
    Probes,
    SourceTargets,
    Target,
    address_text,
)
from ironpost_tui.kernel import abi


class RefTargets:
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
        # (source, destination) -> its port as last read (a port or MANY_PORTS), for the pairs kept
        self._ports: dict[tuple[Hashable, bytes], int] = {}

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
            kept = self._before
            self._ports = {pair: p for pair, p in self._ports.items() if pair[1] in kept.get(pair[0], ())}
        current = self._current
        for (source, addr), n in probes.items():
            if not n or not watched(source):
                continue
            counts = current.get(source)
            if counts is None:
                counts = current[source] = {}
            counts[addr] = counts.get(addr, 0) + n
            port = ports.get((source, addr)) if ports is not None else None
            if port is not None:
                self._ports[(source, addr)] = port
            if len(counts) > MAX_PER_SOURCE:  # a scan of a whole network: keep the most probed half
                for dropped, _ in sorted(counts.items(), key=lambda item: item[1])[: MAX_PER_SOURCE // 2]:
                    del counts[dropped]
                    if dropped not in self._before.get(source, ()):
                        self._ports.pop((source, dropped), None)

    def named(self, sources: Iterable[Hashable]) -> tuple[Target, ...]:
        """The destinations ``sources`` (together) probed most, most first, each with its port (the
        sources' one when they agree, many ports when they differ); () when none is known."""
        totals: dict[tuple[bytes, int], int] = {}
        ports: dict[tuple[bytes, int], int | None] = {}
        for source in sources:
            family = source[16]
            for epoch in (self._current, self._before):
                for addr, n in epoch.get(source, {}).items():
                    where = (addr, family)
                    totals[where] = totals.get(where, 0) + n
                    port = self._ports.get((source, addr))
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


def source_key(i: int) -> bytes:
    return (0xC6120000 + i).to_bytes(4, "big").ljust(16, b"\0") + bytes([abi.FAMILY_V4, 0, 0, 0])


def dest(i: int) -> bytes:
    return (0xC6130000 + i).to_bytes(4, "big").ljust(16, b"\0")


@pytest.mark.parametrize("seed", range(12))
def test_the_flat_lists_name_what_the_dicts_named(seed: int) -> None:
    rng = random.Random(seed)
    got, want = SourceTargets(10.0), RefTargets(10.0)
    sources = [source_key(i) for i in range(8)]
    now = 0.0
    overflowed = 0
    for _ in range(150):
        now += rng.choice([0.5, 0.5, 0.5, 2.0, 7.0, 12.0])  # ticks, epochs passing, gaps of a window
        watched = set(rng.sample(sources, rng.randrange(1, len(sources))))
        probes: dict[tuple[Hashable, bytes], int] = {}
        ports: dict[tuple[Hashable, bytes], int] = {}
        for s in rng.sample(sources, rng.randrange(len(sources))):
            wide = rng.random() < 0.05  # a scan of a whole network: more than MAX_PER_SOURCE destinations
            for d in rng.sample(range(200), 80 if wide else rng.randrange(1, 4)):
                pair = (s, dest(d if wide else d % 6))
                probes[pair] = rng.choice([0, 1, 1, 2, 5, 40])
                if rng.random() < 0.7:
                    ports[pair] = rng.choice([22, 80, 443, MANY_PORTS])
            overflowed += wide
        given = ports if rng.random() < 0.8 else None
        got.add(probes, now, watched.__contains__, given)
        want.add(probes, now, watched.__contains__, given)
        for group in ([s] for s in sources), [rng.sample(sources, 3)]:
            for ss in group:
                assert got.named(ss) == want.named(ss)
    assert overflowed  # the sequences did overflow a source's list


def test_a_port_read_later_is_the_pairs_port_in_both_epochs_and_unknown_keeps_it() -> None:
    t = SourceTargets(10.0)
    a, d = source_key(1), dest(1)
    t.add({(a, d): 3}, 0.0, lambda _s: True, {(a, d): 22})
    t.add({(a, d): 3}, 5.0, lambda _s: True, {(a, d): 80})  # a new epoch: the pair in both
    assert t.named([a]) == (Target(address_text(d, abi.FAMILY_V4), 80),)
    t.add({(a, d): 3}, 5.5, lambda _s: True, None)  # not known now: the one read last
    assert t.named([a]) == (Target(address_text(d, abi.FAMILY_V4), 80),)
    # Negative control: an unwatched source is not kept.
    t.add({(source_key(2), d): 3}, 6.0, lambda s: s == a, None)
    assert t.named([source_key(2)]) == ()


def test_a_source_with_many_destinations_is_looked_up_in_a_dict_not_a_list() -> None:
    """Its destinations are the attacker's choice: past FLAT_MAX, a lookup must not walk a list."""
    t = SourceTargets(10.0)
    a = source_key(1)
    for i in range(FLAT_MAX):
        t.add({(a, dest(i)): 1}, 0.0, lambda _s: True)
    assert isinstance(t._current[a], list)  # control: few destinations, one flat list
    t.add({(a, dest(FLAT_MAX)): 1}, 0.0, lambda _s: True)
    assert isinstance(t._current[a], dict) and len(t._current[a]) == FLAT_MAX + 1
    for i in range(200):
        t.add({(a, dest(i)): 1}, 0.5, lambda _s: True)
    assert len(t._current[a]) <= MAX_PER_SOURCE
