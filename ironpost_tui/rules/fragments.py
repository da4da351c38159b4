"""FRAG_MATCH: what a TCP or UDP packet that hides its ports is judged by (bpf/rule_match.h).

A fragment without its ports (a later fragment, or a first one whose transport header is cut short)
and an IPv6 packet whose extension headers the program did not follow to the upper header cannot be
shown to lie outside a flow that a drop rule with a ``dst_port`` blocks, and the stack would
reassemble (or follow) them behind the filter.  So each such rule stands for FRAG_MATCH keys: its
MATCH key with the port 0, and, when it names a protocol, that key again with PROTO_UNKNOWN.  Rules
that differ only in their port share a key, whose entry is the best-ranked of them (the rule
credited).  Monitor rules stand for none: they report what a packet shows, and these show no port.

The entries are derived: RuleTable says, rule by rule, which keys a rule stands for, and this writes
what changed.  A key is written before a rule that stands for it goes, so a key shared by two rules
is never missing while one replaces the other.
"""

from __future__ import annotations

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.model import Action, FilterRule

NO_PORT = bytes(2)


def fragment_keys(rule: FilterRule, match_key: bytes) -> tuple[bytes, ...]:
    """The FRAG_MATCH keys ``rule``, in MATCH under ``match_key`` (shape index included), stands for."""
    if rule.action is not Action.DROP or rule.dst_port is None:
        return ()
    shape, family, protocol, _port, src, dst = abi.MATCH_KEY.unpack(match_key)
    portless = abi.MATCH_KEY.pack(shape, family, protocol, NO_PORT, src, dst)
    if rule.protocol is None or family == abi.FAMILY_V4:
        # Without a protocol the kernel masks it away: one key for TCP, UDP and unknown.  Only IPv6
        # packets are of unknown protocol.
        return (portless,)
    return portless, abi.MATCH_KEY.pack(shape, family, abi.PROTO_UNKNOWN, NO_PORT, src, dst)


class FragmentEntries:
    """FRAG_MATCH of one Datapath, kept equal to the keys the rules in force stand for."""

    def __init__(self, dp: Datapath) -> None:
        self._dp = dp
        self._keys: dict[str, tuple[bytes, ...]] = {}  # rule id -> the keys it stands for
        self._members: dict[bytes, dict[str, tuple[int, bytes]]] = {}  # key -> rule id -> (rank, value)
        self._written: dict[bytes, bytes] = {}  # key -> the value in the map

    def __len__(self) -> int:
        return len(self._written)

    def holds(self, rule_id: str) -> bool:
        """Whether rule ``rule_id`` stands for any key now."""
        return rule_id in self._keys

    def set(self, rule_id: str, keys: tuple[bytes, ...], rank: int = 0, value: bytes = b"") -> None:
        """Rule ``rule_id`` now stands for ``keys`` with this rank and MATCH value (no keys: for none)."""
        old = self._keys.pop(rule_id, ())
        for key in old:
            members = self._members[key]
            del members[rule_id]
            if not members:
                del self._members[key]
        if keys:
            self._keys[rule_id] = keys
            for key in keys:
                self._members.setdefault(key, {})[rule_id] = (rank, value)
        for key in dict.fromkeys((*keys, *old)):  # the new keys first: written before the old go
            self._sync(key)

    def prune(self) -> None:
        """Remove the entries no rule stands for (after adopting pinned maps: left by rules now gone)."""
        for key, _value in list(self._dp.map_items(MapName.FRAG_MATCH)):
            if key not in self._written:
                self._dp.map_delete(MapName.FRAG_MATCH, key)

    def _sync(self, key: bytes) -> None:
        members = self._members.get(key)
        if members:
            _rank, value = min(members.values())
            if self._written.get(key) != value:
                self._dp.map_update(MapName.FRAG_MATCH, key, value)
                self._written[key] = value
        elif key in self._written:
            self._dp.map_delete(MapName.FRAG_MATCH, key)
            del self._written[key]
