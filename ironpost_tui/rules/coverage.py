"""Source prefixes of one LPM trie by network, with the two questions the rule table asks of them
answered without a scan of every prefix: which prefixes lie strictly inside a prefix (their decider
may change when it comes or goes) and which strictly cover one (who decides for it).

Networks are kept sorted by (version, network address, prefix length): the prefixes strictly inside
``p`` are exactly those whose address falls in ``p``'s range with a longer prefix length, one
contiguous run found by bisection.  The prefixes covering ``p`` are looked up once per prefix length
in use (at most 33 or 129 look-ups, whatever the number of prefixes).
"""

from __future__ import annotations

import bisect
from collections import Counter
from collections.abc import Iterator, MutableMapping

from ironpost_tui.model import IPNetwork

_Key = tuple[int, int, int]  # (version, network address, prefix length)


def _key(net: IPNetwork) -> _Key:
    return net.version, int(net.network_address), net.prefixlen


class PrefixIndex(MutableMapping[IPNetwork, str]):
    """network -> rule id, iterated in insertion order (as a dict), with covered() and covering()."""

    def __init__(self) -> None:
        self._ids: dict[IPNetwork, str] = {}
        self._by_key: dict[_Key, str] = {}
        self._sorted: list[_Key] = []
        self._seq: dict[_Key, int] = {}  # insertion order of each network present
        self._next_seq = 0
        self._lengths: Counter[tuple[int, int]] = Counter()  # (version, prefix length) -> networks

    def __getitem__(self, net: IPNetwork) -> str:
        return self._ids[net]

    def __setitem__(self, net: IPNetwork, rule_id: str) -> None:
        key = _key(net)
        if net not in self._ids:
            bisect.insort(self._sorted, key)
            self._seq[key] = self._next_seq
            self._next_seq += 1
            self._lengths[net.version, net.prefixlen] += 1
        self._ids[net] = rule_id
        self._by_key[key] = rule_id

    def __delitem__(self, net: IPNetwork) -> None:
        del self._ids[net]
        key = _key(net)
        del self._by_key[key]
        del self._seq[key]
        del self._sorted[bisect.bisect_left(self._sorted, key)]
        lengths = self._lengths
        lengths[net.version, net.prefixlen] -= 1
        if not lengths[net.version, net.prefixlen]:
            del lengths[net.version, net.prefixlen]

    def __iter__(self) -> Iterator[IPNetwork]:
        return iter(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def covered(self, prefix: IPNetwork) -> list[str]:
        """Rule ids of the networks strictly inside ``prefix``, in insertion order."""
        version, first, plen = _key(prefix)
        last = int(prefix.broadcast_address)
        lo = bisect.bisect_left(self._sorted, (version, first, plen + 1))
        hi = bisect.bisect_right(self._sorted, (version, last, prefix.max_prefixlen))
        # Between lo and hi: addresses inside the prefix; a network there with a prefix length no longer
        # than ``prefix``'s would start at ``first`` (the only suitably aligned address), skipped by lo.
        inside = [k for k in self._sorted[lo:hi] if k[2] > plen]
        inside.sort(key=self._seq.__getitem__)
        return [self._by_key[k] for k in inside]

    def covering(self, prefix: IPNetwork) -> Iterator[str]:
        """Rule ids of the networks strictly covering ``prefix``, shortest prefix first."""
        version, address, plen = _key(prefix)
        bits = prefix.max_prefixlen
        for v, length in sorted(self._lengths):
            if v != version or length >= plen:
                continue
            mask = ((1 << length) - 1) << (bits - length)
            rule_id = self._by_key.get((version, address & mask, length))
            if rule_id is not None:
                yield rule_id
