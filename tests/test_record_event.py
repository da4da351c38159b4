"""RecordEvent, the decoder's lazy PacketEvent: the same fields as the eager decoder gave for the same
bytes, hostile records handled as before, value semantics of a PacketEvent, fields decoded only when read."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import pickle
import random
import struct
from typing import Any

import pytest

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.events import EventDecoder, RecordEvent
from ironpost_tui.kernel.record_event import verdict_mask
from ironpost_tui.kernel.ringbuf import HEADER_SIZE, EventRecords
from ironpost_tui.model import Action, FilterRule, PacketEvent, Verdict

BODY = abi.PACKET_EVENT.size
STRIDE = (HEADER_SIZE + BODY + 7) & ~7
RING = struct.Struct(f"<{HEADER_SIZE}x{abi.PACKET_EVENT.format[1:]}{STRIDE - HEADER_SIZE - BODY}x")
RULES = {7: FilterRule("r7", Action.DROP), 9: FilterRule("r9", Action.MONITOR)}
OFFSET = 1_700_000_000.25
EAGER_VERDICTS = {0: Verdict.PASS, 1: Verdict.DROP, 2: Verdict.MONITOR, 3: Verdict.PROTECTED}


def eager(raw: bytes) -> PacketEvent:
    """The eager decoder as it was before RecordEvent (its per-field rules), for one record body."""
    ts_ns, src, dst, sport, dport, length, slot, family, proto, flags, verdict = abi.PACKET_EVENT.unpack(raw)
    if family == abi.FAMILY_V4:
        s: Any = ipaddress.IPv4Address(int.from_bytes(src[:4], "big"))
        d: Any = ipaddress.IPv4Address(int.from_bytes(dst[:4], "big"))
    else:
        s, d = ipaddress.IPv6Address(int.from_bytes(src, "big")), ipaddress.IPv6Address(int.from_bytes(dst, "big"))
    rule = RULES.get(slot)
    return PacketEvent(ts_ns / 1e9 + OFFSET, family, s, d, sport, dport, proto, flags, length,
                       EAGER_VERDICTS.get(verdict, Verdict.PASS), rule.id if rule else None)  # fmt: skip


def body(src: str, dst: str, *, family: int | None = None, proto: int = 6, flags: int = 0x02, verdict: int = 1,
         slot: int = 7, ts_ns: int = 2_500_000_123, sport: int = 40000, dport: int = 443,
         length: int = 60) -> bytes:  # fmt: skip
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    fam = s.version if family is None else family
    return abi.PACKET_EVENT.pack(ts_ns, s.packed.ljust(16, b"\0"), d.packed.ljust(16, b"\0"), sport, dport, length,
                                 slot, fam, proto, flags, verdict)  # fmt: skip


def ring(bodies: list[bytes]) -> EventRecords:
    """Records as the ring reader hands them over: header, body, padding."""
    return EventRecords(b"".join(struct.pack("@II", BODY, 0) + b.ljust(STRIDE - 8, b"\0") for b in bodies), RING)


@dataclasses.dataclass(frozen=True)
class Holder:
    event: PacketEvent


def decoder() -> EventDecoder:
    return EventDecoder(OFFSET, RULES.get)


def fields(e: PacketEvent) -> tuple[Any, ...]:
    return tuple(getattr(e, name) for name in PacketEvent._fields)


CASES = [
    body("198.18.0.2", "198.19.0.1"),
    body("2001:db8::2", "2001:db8::1", slot=9, verdict=2),
    *(body("198.18.1.1", "198.19.0.1", proto=p, flags=0) for p in (1, 6, 17, 47, 58, 59, 132, 255)),
    *(body("2001:db8::5", "2001:db8::6", proto=p, flags=0) for p in (1, 6, 17, 58, 59)),
    *(body("198.18.0.9", "198.19.0.9", verdict=v) for v in (0, 1, 2, 3, 4, 200, 255)),  # 4+: unknown, PASS
    *(body("198.18.0.9", "198.19.0.9", flags=f) for f in (0, 0x01, 0x02, 0x12, 0x14, 0x29, 0xFF)),
    body("198.18.0.3", "198.19.0.3", slot=0),  # no rule
    body("198.18.0.3", "198.19.0.3", slot=0xFFFFFFFF),
    body("198.18.0.3", "198.19.0.3", ts_ns=0, sport=0, dport=0, length=0),
    body("198.18.0.3", "198.19.0.3", ts_ns=2**64 - 1, sport=65535, dport=65535, length=2**32 - 1),
    # unknown families read as IPv6 from the 16 bytes, as the eager decoder did
    *(body("2001:db8::7", "2001:db8::8", family=f) for f in (0, 5, 7, 255)),
    body("198.18.0.4", "198.19.0.4", family=0),  # an IPv4 record with a bad family: an IPv6 address
]


@pytest.mark.parametrize("layout", ["ring", "plain"])
def test_fields_are_the_eager_decoders(layout: str) -> None:
    """IPv4, IPv6, each protocol, verdict, flag pattern, family and slot (VLAN-tagged frames give the
    same record: the tag is not in it)."""
    records = ring(CASES) if layout == "ring" else EventRecords(b"".join(CASES), abi.PACKET_EVENT)
    events = decoder().decode_all(records)
    assert [type(e) for e in events] == [RecordEvent] * len(CASES)
    for e, raw in zip(events, CASES, strict=True):
        want = eager(raw)
        assert fields(e) == tuple(want)
        assert e == want and e.decoded() == want and type(e.decoded()) is PacketEvent
        assert type(e.src) is type(want.src) and type(e.dst) is type(want.dst)


def test_random_records_decode_as_the_eager_decoder() -> None:
    """Hostile bodies: any bytes at all (garbage after an IPv4 address, any family, verdict or slot)."""
    rng = random.Random(19)
    raws = [rng.randbytes(BODY) for _ in range(2_000)]
    raws += [r[:52] + bytes([4]) + r[53:] for r in raws[:500]]  # as many with family 4
    for e, raw in zip(decoder().decode_all(ring(raws)), raws, strict=True):
        assert fields(e) == tuple(eager(raw))


def test_truncated_records_fail_as_before() -> None:
    """A batch that is not whole records raises struct.error with the eager decoder's message; an empty
    one gives no events."""
    eager_error = struct.error
    for data, layout in ((b"".join(CASES[:3])[:-1], abi.PACKET_EVENT), (ring(CASES[:3]).data[:-8], RING)):
        with pytest.raises(eager_error) as eager_raised:
            list(layout.iter_unpack(data))  # what the eager decoder's loop read
        with pytest.raises(eager_error) as lazy_raised:
            decoder().decode_all(EventRecords(data, layout))
        assert str(lazy_raised.value) == str(eager_raised.value)
    with pytest.raises(struct.error):
        decoder().decode(CASES[0][:-1])
    assert decoder().decode_all(EventRecords(b"", RING)) == []
    with pytest.raises(IndexError):
        decoder().decode(b"")


def test_records_of_another_layout_are_refused() -> None:
    with pytest.raises(ValueError, match="not packet events"):
        decoder().decode_all(EventRecords(bytes(56), struct.Struct("<56s")))


def test_rule_ids_are_those_of_the_batch_not_of_the_read() -> None:
    """Rules change between a batch and the reading of its events: the event keeps the rule that matched."""
    rules = {7: FilterRule("old", Action.DROP)}
    dec = EventDecoder(0.0, rules.get)
    first = dec.decode_all(ring([body("198.18.0.2", "198.19.0.1")]))[0]
    rules[7] = FilterRule("new", Action.DROP)
    second = dec.decode_all(ring([body("198.18.0.2", "198.19.0.1")]))[0]
    del rules[7]
    assert (first.rule_id, second.rule_id) == ("old", "new")
    assert dec.decode(body("198.18.0.2", "198.19.0.1")).rule_id is None


def test_each_distinct_slot_is_looked_up_once_per_batch() -> None:
    asked: list[int] = []

    def rule_for_slot(slot: int) -> FilterRule | None:
        asked.append(slot)
        return RULES.get(slot)

    dec = EventDecoder(0.0, rule_for_slot)
    dec.decode_all(ring([body("198.18.0.2", "198.19.0.1", slot=s) for s in (7, 9, 7, 7, 3, 9)]))
    assert sorted(asked) == [3, 7, 9]


def test_fields_are_decoded_only_when_read() -> None:
    """Building a batch makes no address object; reading one field makes only what it needs.  Negative
    control: decoded() (the eager path) makes both addresses at once."""
    dec = decoder()
    events = dec.decode_all(ring([body(f"198.18.0.{i}", "198.19.0.1") for i in range(1, 101)]))
    assert dec.cached_addresses == 0
    assert [e.src_port for e in events] == [40000] * 100 and [e.verdict for e in events] == [Verdict.DROP] * 100
    assert dec.cached_addresses == 0
    assert str(events[0].src) == "198.18.0.1"
    assert dec.cached_addresses == 1
    assert events[0].src is events[0].src  # the cache
    events[1].decoded()
    assert dec.cached_addresses == 3  # events[1]'s source, and the destination they share


def test_verdict_mask_reads_a_batch_of_records_verdict_bytes_without_their_property(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """verdict_mask gives, per event, whether its verdict is the one asked (unknown verdict bytes read as
    PASS, as the property does) and reads a batch of RecordEvents without one ``verdict`` call.  Negative
    control: with one plain PacketEvent in the batch, the same mask comes through each event's property
    (the counter counts, so its zero above is not vacuous)."""
    events = decoder().decode_all(ring(CASES))
    want = {v: bytes(e.verdict is v for e in events) for v in Verdict}
    assert want[Verdict.PASS].count(1) == 4  # verdict byte 0, and 4, 200 and 255 (unknown)
    reads = 0
    read = RecordEvent.verdict.fget
    assert read is not None

    def counting(e: RecordEvent) -> Verdict:
        nonlocal reads
        reads += 1
        return read(e)

    monkeypatch.setattr(RecordEvent, "verdict", property(counting))
    assert {v: verdict_mask(events, v) for v in Verdict} == want
    assert reads == 0
    mixed = [*events, events[0].decoded()]
    assert verdict_mask(mixed, Verdict.DROP) == want[Verdict.DROP] + bytes([events[0].verdict is Verdict.DROP])
    assert reads == len(events) + 1  # the batch's RecordEvents through the property, and events[0] above
    assert verdict_mask([], Verdict.DROP) == b""


def test_a_record_event_is_a_packet_event_value() -> None:
    """Equality, hash, order, iteration, indexing, repr, _replace, _asdict, copy and pickle: as the plain
    PacketEvent of the same fields, never the record's storage."""
    e = decoder().decode(CASES[0])
    plain = eager(CASES[0])
    assert isinstance(e, PacketEvent) and isinstance(e, tuple)
    assert e == plain and plain == e and not (e != plain) and not (plain != e)
    assert hash(e) == hash(plain) and len({e, plain}) == 1
    assert e != plain._replace(src_port=1) and plain._replace(src_port=1) != e
    assert (e < plain._replace(ts=plain.ts + 1)) and (plain._replace(ts=plain.ts + 1) > e)
    assert e <= plain and e >= plain and not (e < plain)
    assert len(e) == 11 and list(e) == list(plain) and tuple(e) == tuple(plain)
    assert e[0] == plain.ts and e[-1] == "r7" and e[2:4] == (plain.src, plain.dst)
    ts, family, *_rest, rule_id = e
    assert (ts, family, rule_id) == (plain.ts, 4, "r7")
    assert plain.src in e and b"" not in e
    assert repr(e) == repr(plain)
    assert e._asdict() == plain._asdict()
    changed = e._replace(dst_port=22)
    assert type(changed) is PacketEvent and changed == plain._replace(dst_port=22)
    for clone in (copy.copy(e), copy.deepcopy(e), pickle.loads(pickle.dumps(e))):
        assert type(clone) is PacketEvent and clone == plain
    assert e != 1 and e != "x" and e != (1, 2)
    with pytest.raises(TypeError):
        e < 1  # noqa: B015
    with pytest.raises(AttributeError):
        e.src_port = 1  # type: ignore[misc]
    for rebuilt in (type(e)(*e), type(e)._make(e), dataclasses.asdict(Holder(e))["event"]):
        assert type(rebuilt) is PacketEvent and rebuilt == plain  # not a RecordEvent holding fields
    same_batch = decoder().decode_all(ring([CASES[0], CASES[0]]))
    assert same_batch[0] == same_batch[1] and same_batch[0] is not same_batch[1]
