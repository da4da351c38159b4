"""EXACT4: the exact IPv4 source rules again, in buckets the XDP program reads without a call.

BLOCKLIST (a hash map, the seed's) stays the record of every exact IPv4 rule; what the program
looks up for them is EXACT4, an array of 8-way buckets (bpf/ironpost_common.h says why and how).
inline_ways.py keeps EXACT4's ways and the order of their writes.  An address that cannot be placed
stays in BLOCKLIST alone, which the program then looks up (ADDR_FILTER's FILTER_EXACT).
"""

from __future__ import annotations

import sys

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.rules.inline_ways import InlineWays

WAYS = abi.EXACT4_WAYS


def bucket_of(addr: bytes, seed: int, bits: int) -> int:
    """The bucket of a 4-byte address (match_exact4() in bpf/rule_match.h)."""
    return abi.hash_32(_u32(addr) ^ seed, bits)


class Exact4(InlineWays[int]):
    """EXACT4 of one Datapath, mirrored here: bucket -> [addr x 8, rank1 x 8, slot x 8]."""

    MAP = MapName.EXACT4
    WAYS = WAYS
    BUCKET = abi.EXACT4_BUCKET

    def __init__(self, dp: Datapath) -> None:
        super().__init__(dp, dp.cfg.exact4_buckets)

    def _key(self, key: bytes) -> int:
        return _u32(key)

    def _bucket_of(self, k: int) -> int:
        return abi.hash_32(k ^ self._seed, self._bits)


def _u32(addr: bytes) -> int:
    """The address as the program loads it: a u32 in host order."""
    return int.from_bytes(addr, sys.byteorder)
