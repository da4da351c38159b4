"""Decoding EVENTS records into PacketEvent values (RecordEvents: decoded field by field when read)."""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from itertools import repeat
from operator import add

from ironpost_tui import collector
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.record_event import ADDRESS_CACHE_MAX, SLOT_OFFSET, Batch, RecordEvent
from ironpost_tui.kernel.ringbuf import EventRecords
from ironpost_tui.model import FilterRule, PacketEvent

__all__ = ["ADDRESS_CACHE_MAX", "EventDecoder", "RecordEvent"]

_new = tuple.__new__  # a RecordEvent from one (body, batch) tuple, in C: no __new__ in Python per event


def _record_layouts(layout: struct.Struct) -> tuple[struct.Struct, struct.Struct]:
    """For records in ``layout`` (abi.PACKET_EVENT's fields, maybe with a ring header and padding around
    them): one that yields each record's body as bytes, and one that yields only its rule slot."""
    fields = abi.PACKET_EVENT.format[1:]
    head, found, tail = layout.format.partition(fields)
    if not found:
        raise ValueError(f"records of layout {layout.format!r} are not packet events")
    bodies = struct.Struct(f"{head}{abi.PACKET_EVENT.size}s{tail}")
    before = struct.calcsize(head) + SLOT_OFFSET
    slots = struct.Struct(f"{head[0]}{before}xI{layout.size - before - 4}x")
    assert bodies.size == slots.size == layout.size
    return bodies, slots


class EventDecoder:
    """Turns raw records into PacketEvents; times become wall-clock seconds."""

    def __init__(self, clock_offset: float, rule_for_slot: Callable[[int], FilterRule | None]) -> None:
        self._offset = clock_offset
        self._rule_for_slot = rule_for_slot
        self._v4: dict[bytes, ipaddress.IPv4Address] = {}
        self._v6: dict[bytes, ipaddress.IPv6Address] = {}
        self._layouts: dict[str, tuple[struct.Struct, struct.Struct]] = {}

    def set_clock_offset(self, clock_offset: float) -> None:
        """The wall clock moved against CLOCK_MONOTONIC (RuleTable.follow_clock): batches from now on use this."""
        self._offset = clock_offset

    @property
    def cached_addresses(self) -> int:
        return len(self._v4) + len(self._v6)

    def decode(self, raw: bytes) -> PacketEvent:
        """One record (abi.PACKET_EVENT)."""
        return self.decode_all(EventRecords(raw, abi.PACKET_EVENT))[0]

    def decode_all(self, records: EventRecords) -> list[PacketEvent]:
        """Every record of a batch, in order, as RecordEvents.

        Per record, only a copy of its body and one tuple are made here (in C, through map); fields are
        decoded when read (kernel/record_event.py).  What cannot wait is done now, once per batch: the rule
        id of every slot the batch carries (rules may change before a field is read).  A record of the
        wrong size fails here as it always did (struct.error).

        The cyclic garbage collector is held off while a batch is built: the batch makes thousands of
        tuples and no reference cycle, and the collector would otherwise run every 700 of them."""
        layouts = self._layouts.get(records.layout.format)
        if layouts is None:
            layouts = self._layouts[records.layout.format] = _record_layouts(records.layout)
        bodies, slots = layouts
        data = records.data
        rule_ids: dict[int, str | None] = {}
        for (slot,) in set(slots.iter_unpack(data)):
            rule = self._rule_for_slot(slot)
            rule_ids[slot] = rule.id if rule else None
        batch = (Batch(self._offset, rule_ids, self._v4, self._v6),)
        with collector.held():
            return list(map(_new, repeat(RecordEvent), map(add, bodies.iter_unpack(data), repeat(batch))))
