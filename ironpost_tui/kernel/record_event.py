"""RecordEvent: a PacketEvent still in its EVENTS record's bytes, decoded field by field when read.

Events come by the hundred thousand per second and most are never looked at: a console draws a
screenful, a filter or a JSON line reads a few more.  Decoding every record at once (two address objects,
a float, an enum per event) cost several times what reading the ring did; a RecordEvent costs one bytes
copy of the record and one tuple, built in C for a whole batch (EventDecoder.decode_all).

It is a PacketEvent (a subclass of the named tuple) and behaves as one value: its fields, equality and
hash with any PacketEvent of the same fields, iteration, indexing, ``_replace`` (which gives a plain
PacketEvent), ``repr`` and pickling all go through the decoded fields.  Its own storage, the record's body
and its batch, is seen only through ``tuple.__getitem__``.  What must not wait for a read is fixed when
the batch is decoded: the rule id of each slot (rules change between batches) and the clock offset.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import repeat
from operator import attrgetter, is_, itemgetter
from typing import Any, SupportsIndex, overload

from ironpost_tui.kernel import abi
from ironpost_tui.model import IPAddress, PacketEvent, Verdict

# Address objects kept per family, by the record's 16 address bytes.  A flood from
# spoofed sources would grow the cache without end: when it is full it is emptied.
ADDRESS_CACHE_MAX = 4096

_VERDICTS = {
    abi.VERDICT_PASS: Verdict.PASS,
    abi.VERDICT_DROP: Verdict.DROP,
    abi.VERDICT_MONITOR: Verdict.MONITOR,
    abi.VERDICT_PROTECTED: Verdict.PROTECTED,
}
# By the record's verdict byte; an unknown value reads as PASS (as it always did).
_VERDICT_OF = tuple(_VERDICTS.get(v, Verdict.PASS) for v in range(256))


def _offsets(layout: struct.Struct) -> list[int]:
    """Where each field of an unpadded ("<") layout starts."""
    out, pos = [], 0
    for count, code in re.findall(r"(\d*)([a-zA-Z?])", layout.format):
        if code == "x":
            pos += int(count or 1)
            continue
        for _ in range(1 if code == "s" else int(count or 1)):
            out.append(pos)
            pos += struct.calcsize(f"<{count if code == 's' else ''}{code}")
    return out


(_TS, _SRC, _DST, _SPORT, _DPORT, _LEN, _SLOT, _FAMILY, _PROTO, _FLAGS, _VERDICT) = _offsets(abi.PACKET_EVENT)
SLOT_OFFSET = _SLOT  # where a record's rule slot (u32) starts in its body
_U64, _U32, _U16 = struct.Struct("<Q"), struct.Struct("<I"), struct.Struct("<H")
# The stored (body, batch): RecordEvent's own __getitem__ shows the fields.  Typed Any: mypy reads
# PacketEvent's field types into the stored items.
_get: Callable[[tuple[Any, ...], int], Any] = tuple.__getitem__
_new_event = tuple.__new__  # a PacketEvent from one tuple, in C (no __new__ in Python)
# For verdict_mask: a body's verdict byte; per verdict, bytes.translate's table from that byte to 1 or 0.
_verdict_byte: Callable[[bytes], int] = itemgetter(_VERDICT)
_IS_VERDICT = {v: bytes(_VERDICT_OF[b] is v for b in range(256)) for v in Verdict}
_verdict_of: Callable[[PacketEvent], Verdict] = attrgetter("verdict")


class Batch:
    """What the records of one ring read share: the clock offset, the rule id of each slot they carry
    (looked up when the batch was decoded) and the decoder's address caches."""

    __slots__ = ("offset", "rule_ids", "v4", "v6")

    def __init__(
        self,
        offset: float,
        rule_ids: dict[int, str | None],
        v4: dict[bytes, ipaddress.IPv4Address],
        v6: dict[bytes, ipaddress.IPv6Address],
    ) -> None:
        self.offset, self.rule_ids, self.v4, self.v6 = offset, rule_ids, v4, v6

    def address(self, family: int, raw: bytes) -> IPAddress:
        """The address in a record's 16 bytes: IPv4 in the first four when family is 4, else IPv6.

        Called from whichever thread reads the event (the console's, a recorder's): each get, set and
        clear of a cache is atomic, and a race at worst makes one address twice or empties the cache early.
        """
        if family == abi.FAMILY_V4:
            v4 = self.v4
            a4 = v4.get(raw)
            if a4 is None:
                if len(v4) >= ADDRESS_CACHE_MAX:
                    v4.clear()
                a4 = v4[raw] = ipaddress.IPv4Address(int.from_bytes(raw[:4], "big"))
            return a4
        v6 = self.v6
        a6 = v6.get(raw)
        if a6 is None:
            if len(v6) >= ADDRESS_CACHE_MAX:
                v6.clear()
            a6 = v6[raw] = ipaddress.IPv6Address(int.from_bytes(raw, "big"))
        return a6


class RecordEvent(PacketEvent):
    """A PacketEvent kept as (record body, Batch); built only by EventDecoder.decode_all."""

    __slots__ = ()

    def __new__(cls, *fields: Any, **named: Any) -> PacketEvent:  # type: ignore[misc]
        """Called with fields (``type(e)(*values)``, as dataclasses.asdict rebuilds named tuples): a
        plain PacketEvent of them.  decode_all builds RecordEvents through tuple.__new__, not this."""
        return PacketEvent(*fields, **named)

    @classmethod
    def _make(cls, iterable: Iterable[Any]) -> PacketEvent:  # type: ignore[override]
        return PacketEvent._make(iterable)

    # --- the fields, decoded when read ----------------------------------------------
    @property
    def ts(self) -> float:
        batch: Batch = _get(self, 1)
        ts_ns: int = _U64.unpack_from(_get(self, 0), _TS)[0]
        return ts_ns / 1e9 + batch.offset  # as the eager decoder did: the same float

    @property
    def family(self) -> int:
        raw: bytes = _get(self, 0)
        return raw[_FAMILY]

    @property
    def src(self) -> IPAddress:
        raw: bytes = _get(self, 0)
        batch: Batch = _get(self, 1)
        return batch.address(raw[_FAMILY], raw[_SRC : _SRC + 16])

    @property
    def dst(self) -> IPAddress:
        raw: bytes = _get(self, 0)
        batch: Batch = _get(self, 1)
        return batch.address(raw[_FAMILY], raw[_DST : _DST + 16])

    @property
    def src_port(self) -> int:
        value: int = _U16.unpack_from(_get(self, 0), _SPORT)[0]
        return value

    @property
    def dst_port(self) -> int:
        value: int = _U16.unpack_from(_get(self, 0), _DPORT)[0]
        return value

    @property
    def protocol(self) -> int:
        raw: bytes = _get(self, 0)
        return raw[_PROTO]

    @property
    def tcp_flags(self) -> int:
        raw: bytes = _get(self, 0)
        return raw[_FLAGS]

    @property
    def length(self) -> int:
        value: int = _U32.unpack_from(_get(self, 0), _LEN)[0]
        return value

    @property
    def verdict(self) -> Verdict:
        raw: bytes = _get(self, 0)
        return _VERDICT_OF[raw[_VERDICT]]

    @property
    def rule_id(self) -> str | None:
        batch: Batch = _get(self, 1)
        slot: int = _U32.unpack_from(_get(self, 0), _SLOT)[0]
        return batch.rule_ids.get(slot)

    def decoded(self) -> PacketEvent:
        """The same event as a plain PacketEvent, every field decoded."""
        return _new_event(PacketEvent, self._values())

    def _values(self) -> tuple[Any, ...]:
        """Every field, decoded at once (one unpack), as a plain tuple in PacketEvent's order."""
        raw: bytes = _get(self, 0)
        batch: Batch = _get(self, 1)
        ts_ns, src, dst, sport, dport, length, slot, family, proto, flags, verdict = abi.PACKET_EVENT.unpack(raw)
        address = batch.address
        return (ts_ns / 1e9 + batch.offset, family, address(family, src), address(family, dst), sport, dport,
                proto, flags, length, _VERDICT_OF[verdict], batch.rule_ids.get(slot))  # fmt: skip

    # --- a value like any PacketEvent: everything below goes through the decoded fields ---
    def __eq__(self, other: object) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() == o

    def __ne__(self, other: object) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() != o

    def __lt__(self, other: tuple[Any, ...]) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() < o

    def __le__(self, other: tuple[Any, ...]) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() <= o

    def __gt__(self, other: tuple[Any, ...]) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() > o

    def __ge__(self, other: tuple[Any, ...]) -> bool:
        o = _plain(other)
        return NotImplemented if o is None else self._values() >= o

    def __hash__(self) -> int:
        return hash(self._values())

    def __iter__(self) -> Iterator[Any]:
        return iter(self._values())

    def __len__(self) -> int:
        return len(PacketEvent._fields)

    def __contains__(self, value: object) -> bool:
        return value in self._values()

    @overload
    def __getitem__(self, index: SupportsIndex) -> Any: ...
    @overload
    def __getitem__(self, index: slice) -> tuple[Any, ...]: ...
    def __getitem__(self, index: SupportsIndex | slice) -> Any:
        return self._values()[index]

    def __repr__(self) -> str:
        return repr(self.decoded())

    def __reduce__(self) -> tuple[Callable[..., PacketEvent], tuple[Any, ...]]:
        return PacketEvent, self._values()

    def _asdict(self) -> dict[str, Any]:
        return self.decoded()._asdict()

    def _replace(self, **changes: Any) -> PacketEvent:  # type: ignore[override]  # a plain PacketEvent, not a record
        return self.decoded()._replace(**changes)


def _plain(other: object) -> tuple[Any, ...] | None:
    """``other``'s items as a plain tuple (a RecordEvent's decoded fields, not its storage); None: not a
    tuple (the comparison is NotImplemented, as a tuple's is)."""
    if isinstance(other, RecordEvent):
        return other._values()
    return tuple(other) if isinstance(other, tuple) else None


def verdict_mask(events: Sequence[PacketEvent], verdict: Verdict) -> bytes:
    """One byte per event, 1 where its verdict is ``verdict``, else 0 (selectors for itertools.compress).

    A batch of RecordEvents is read from their records' verdict bytes in C loops: no property call and
    nothing decoded per event (a console splits every event it is sent by verdict).  Any other events (a
    recording's plain PacketEvents, a test's, a mix) are read through their ``verdict``."""
    if all(map(is_, map(type, events), repeat(RecordEvent))):
        return bytes(map(_verdict_byte, map(_get, events, repeat(0)))).translate(_IS_VERDICT[verdict])
    return bytes(map(is_, map(_verdict_of, events), repeat(verdict)))
