"""Decoding EVENTS records into PacketEvent values."""

from __future__ import annotations

import ipaddress
from collections.abc import Callable

from . import abi
from .model import FilterRule, PacketEvent, Verdict

_VERDICTS = {
    abi.VERDICT_PASS: Verdict.PASS,
    abi.VERDICT_DROP: Verdict.DROP,
    abi.VERDICT_MONITOR: Verdict.MONITOR,
    abi.VERDICT_PROTECTED: Verdict.PROTECTED,
}


class EventDecoder:
    """Turns raw records into PacketEvent; times become wall-clock seconds."""

    def __init__(self, clock_offset: float, rule_for_slot: Callable[[int], FilterRule | None]) -> None:
        self._offset = clock_offset
        self._rule_for_slot = rule_for_slot
        self._unpack = abi.PACKET_EVENT.unpack

    def decode(self, raw: bytes) -> PacketEvent:
        ts_ns, src, dst, sport, dport, length, slot, family, proto, flags, verdict = self._unpack(raw)
        if family == abi.FAMILY_V4:
            src_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(src[:4])
            dst_ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.IPv4Address(dst[:4])
        else:
            src_ip, dst_ip = ipaddress.IPv6Address(src), ipaddress.IPv6Address(dst)
        rule = self._rule_for_slot(slot)
        return PacketEvent(
            ts=ts_ns / 1e9 + self._offset,
            family=family,
            src=src_ip,
            dst=dst_ip,
            src_port=sport,
            dst_port=dport,
            protocol=proto,
            tcp_flags=flags,
            length=length,
            verdict=_VERDICTS.get(verdict, Verdict.PASS),
            rule_id=rule.id if rule else None,
        )
