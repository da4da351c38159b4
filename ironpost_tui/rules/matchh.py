"""MATCHH: the multi-field rules' MATCH keys again, in buckets the XDP program reads without a call.

MATCH (a hash map of 40-byte keys) stays the record of every multi-field rule; what the program looks up
for them is MATCHH, an array of 4-way buckets that hold whole keys (bpf/ironpost_common.h says why and
how).  inline_ways.py keeps MATCHH's ways and the order of their writes.  A key whose bucket is full
stays in MATCH alone: its rule's atoms then hold its shape's bit of CONFIG.match_spill (prefilter.py), for
which the program looks that shape's keys up in MATCH (which holds them all) instead of here.
"""

from __future__ import annotations

import struct
import sys
from typing import Any

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.rules.inline_ways import InlineWays

WAYS = abi.MATCHH_WAYS
_U64 = (1 << 64) - 1
_WORDS = struct.Struct(f"={abi.MATCH_KEY_WORDS}Q")  # the key as the program loads it: host order
assert _WORDS.size == abi.MATCH_KEY.size and sys.byteorder == "little"


def bucket_of(key: bytes, seed: int, bits: int) -> int:
    """The bucket of a 40-byte MATCH key (matchh_bucket_of() in bpf/rule_match.h)."""
    x = seed
    for w in _WORDS.unpack(key):
        x = ((x ^ w) * abi.HASH_MUL64) & _U64
    return abi.hash_32((x & abi.U32_MASK) ^ (x >> 32), bits)


class MatchH(InlineWays[bytes]):
    """MATCHH of one Datapath, mirrored here: bucket -> [key x 4, rank1 x 4, slot x 4]."""

    MAP = MapName.MATCHH
    WAYS = WAYS
    BUCKET = abi.MATCHH_BUCKET

    def __init__(self, dp: Datapath) -> None:
        super().__init__(dp, dp.cfg.matchh_buckets)

    def _key(self, key: bytes) -> bytes:
        if len(key) != abi.MATCH_KEY.size:
            raise ValueError(f"a MATCH key is {abi.MATCH_KEY.size} bytes, not {len(key)}")
        return bytes(key)

    def _bucket_of(self, k: bytes) -> int:
        return bucket_of(k, self._seed, self._bits)

    def _pack(self, ways: list[Any]) -> bytes:
        return abi.MATCHH_BUCKET.pack(b"".join(ways[:WAYS]), *ways[WAYS:])

    def _unpack(self, raw: bytes) -> list[Any]:
        keys, *rest = abi.MATCHH_BUCKET.unpack(raw)
        size = abi.MATCH_KEY.size
        return [keys[i * size : (i + 1) * size] for i in range(WAYS)] + list(rest)
