"""Decoding EVENTS records into PacketEvent values."""

from __future__ import annotations

import gc
import ipaddress
from collections.abc import Callable

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.ringbuf import EventRecords
from ironpost_tui.model import FilterRule, IPAddress, PacketEvent, Verdict

_VERDICTS = {
    abi.VERDICT_PASS: Verdict.PASS,
    abi.VERDICT_DROP: Verdict.DROP,
    abi.VERDICT_MONITOR: Verdict.MONITOR,
    abi.VERDICT_PROTECTED: Verdict.PROTECTED,
}

# Address objects kept per family, by the record's 16 address bytes.  A flood from
# spoofed sources would grow the cache without end: when it is full it is emptied.
ADDRESS_CACHE_MAX = 4096

_new_event = tuple.__new__  # PacketEvent is a named tuple: built from one tuple, no __new__ in Python


class EventDecoder:
    """Turns raw records into PacketEvent; times become wall-clock seconds."""

    def __init__(self, clock_offset: float, rule_for_slot: Callable[[int], FilterRule | None]) -> None:
        self._offset = clock_offset
        self._rule_for_slot = rule_for_slot
        self._v4: dict[bytes, ipaddress.IPv4Address] = {}
        self._v6: dict[bytes, ipaddress.IPv6Address] = {}

    @property
    def cached_addresses(self) -> int:
        return len(self._v4) + len(self._v6)

    def decode(self, raw: bytes) -> PacketEvent:
        """One record (abi.PACKET_EVENT)."""
        return self.decode_all(EventRecords(raw, abi.PACKET_EVENT))[0]

    def decode_all(self, records: EventRecords) -> list[PacketEvent]:
        """Every record of a batch, in order.

        The cyclic garbage collector is held off while a batch is decoded: the loop makes thousands of
        objects (events, and addresses new to the cache under a spoofed flood) and no reference cycle, and
        the collector would otherwise run every 700 of them, a full collection of the whole heap whenever
        the surviving addresses add up (measured: about half the decoding time with rotating sources).
        It runs as usual once the batch is done."""
        if not gc.isenabled():
            return self._decode_all(records)
        gc.disable()
        try:
            return self._decode_all(records)
        finally:
            gc.enable()

    def _decode_all(self, records: EventRecords) -> list[PacketEvent]:
        offset = self._offset
        v4, v6 = self._v4, self._v6
        verdicts, pass_ = _VERDICTS, Verdict.PASS
        new_event, event = _new_event, PacketEvent
        v4_family = abi.FAMILY_V4
        cache_max, from_bytes = ADDRESS_CACHE_MAX, int.from_bytes
        ip4, ip6 = ipaddress.IPv4Address, ipaddress.IPv6Address
        rule_ids: dict[int, str | None] = {}  # slot -> rule id, for this batch (rules may change between batches)
        out: list[PacketEvent] = []
        append = out.append
        s: IPAddress | None
        d: IPAddress | None
        for ts_ns, src, dst, sport, dport, length, slot, family, proto, flags, verdict in records.fields():
            # A miss is handled inline (not by a method call): under a spoofed flood every source misses.
            if family == v4_family:
                s = v4.get(src)
                if s is None:
                    if len(v4) >= cache_max:
                        v4.clear()
                    s = v4[src] = ip4(from_bytes(src[:4], "big"))
                d = v4.get(dst)
                if d is None:
                    if len(v4) >= cache_max:
                        v4.clear()
                    d = v4[dst] = ip4(from_bytes(dst[:4], "big"))
            else:
                s = v6.get(src)
                if s is None:
                    if len(v6) >= cache_max:
                        v6.clear()
                    s = v6[src] = ip6(from_bytes(src, "big"))
                d = v6.get(dst)
                if d is None:
                    if len(v6) >= cache_max:
                        v6.clear()
                    d = v6[dst] = ip6(from_bytes(dst, "big"))
            if slot in rule_ids:
                rule_id = rule_ids[slot]
            else:
                rule = self._rule_for_slot(slot)
                rule_id = rule_ids[slot] = rule.id if rule else None
            append(new_event(event, (ts_ns / 1e9 + offset, family, s, d, sport, dport, proto, flags, length,
                                     verdicts.get(verdict, pass_), rule_id)))  # fmt: skip
        return out
