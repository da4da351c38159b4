"""The event path: the ring-buffer reader (pure scan, and against a real ring) and the batch decoder."""

from __future__ import annotations

import ipaddress
import struct
import time
from collections.abc import Iterator
from typing import Any

import pytest

from ironpost_tui.kernel import abi, libbpf, ringbuf
from ironpost_tui.kernel.events import ADDRESS_CACHE_MAX, EventDecoder
from ironpost_tui.kernel.ringbuf import BUSY_BIT, DISCARD_BIT, EventRecords, scan
from ironpost_tui.model import Action, FilterRule, PacketEvent, Verdict
from ironpost_tui.records import codec

BODY = abi.PACKET_EVENT.size
STRIDE = (8 + BODY + 7) & ~7
HEADER = struct.pack("@I", BODY)


def record(n: int, flags: int = 0, body: int = BODY) -> bytes:
    size = (8 + body + 7) & ~7
    return struct.pack("@II", body | flags, 0) + n.to_bytes(8, "little").ljust(size - 8, b"\0")


# --- scan: which copied records are delivered, how far the consumer moves ---------


def test_scan_all_submitted_is_one_run() -> None:
    head = b"".join(record(i) for i in range(100))
    assert scan(head, STRIDE, HEADER) == ([(0, 100 * STRIDE)], 100 * STRIDE, 0)


def test_scan_stops_at_a_record_being_written() -> None:
    head = record(0) + record(1) + record(2, BUSY_BIT) + record(3)
    assert scan(head, STRIDE, HEADER) == ([(0, 2 * STRIDE)], 2 * STRIDE, 0)
    assert scan(record(0, BUSY_BIT), STRIDE, HEADER) == ([], 0, 0)


def test_scan_skips_discarded_and_foreign_records() -> None:
    small = record(9, body=8)  # 16 bytes: shifts every later header off the stride
    head = record(0) + record(1, DISCARD_BIT) + record(2) + small + record(3) + record(4)
    runs, pos, skipped = scan(head, STRIDE, HEADER)
    assert runs == [(0, STRIDE), (2 * STRIDE, 3 * STRIDE), (3 * STRIDE + 16, 5 * STRIDE + 16)]
    assert (pos, skipped) == (len(head), 2)


def test_scan_leaves_a_partial_record() -> None:
    head = record(0) + record(1)[:20]
    assert scan(head, STRIDE, HEADER) == ([(0, STRIDE)], STRIDE, 0)
    assert scan(b"", STRIDE, HEADER) == ([], 0, 0)


# --- the decoder ---------------------------------------------------------------------


def raw_event(src: str, dst: str, slot: int = 7, ts_ns: int = 2_500_000_000) -> bytes:
    s, d = ipaddress.ip_address(src), ipaddress.ip_address(dst)
    return abi.PACKET_EVENT.pack(
        ts_ns, s.packed.ljust(16, b"\0"), d.packed.ljust(16, b"\0"), 40000, 80, 60, slot, s.version, 6, 0x02, 1
    )


def framed(raws: list[bytes]) -> EventRecords:
    """Records as the ring holds them: header, body, padding."""
    layout = struct.Struct(f"<8x{abi.PACKET_EVENT.format[1:]}{STRIDE - 8 - BODY}x")
    return EventRecords(b"".join(struct.pack("@II", BODY, 0) + r.ljust(STRIDE - 8, b"\0") for r in raws), layout)


def test_decode_all_matches_decode_one_by_one() -> None:
    rule = FilterRule("r1", Action.DROP)
    decoder = EventDecoder(1000.0, lambda slot: rule if slot == 7 else None)
    raws = [raw_event("198.18.0.2", "198.18.0.1"), raw_event("2001:db8::2", "2001:db8::1", slot=3)] * 3
    batch = decoder.decode_all(framed(raws))
    assert batch == [EventDecoder(1000.0, lambda slot: rule if slot == 7 else None).decode(r) for r in raws]
    assert len(framed(raws)) == 6
    v4, v6 = batch[0], batch[1]
    assert (v4.ts, v4.src, v4.family, v4.verdict, v4.rule_id) == (
        1002.5,
        ipaddress.IPv4Address("198.18.0.2"),
        4,
        Verdict.DROP,
        "r1",
    )
    assert (v6.src, v6.dst, v6.family, v6.rule_id) == (
        ipaddress.IPv6Address("2001:db8::2"),
        ipaddress.IPv6Address("2001:db8::1"),
        6,
        None,
    )
    assert batch[2].src is v4.src  # cached


def test_rule_ids_are_looked_up_again_in_each_batch() -> None:
    rules = {7: FilterRule("old", Action.DROP)}
    decoder = EventDecoder(0.0, rules.get)
    assert decoder.decode(raw_event("198.18.0.2", "198.18.0.1")).rule_id == "old"
    rules[7] = FilterRule("new", Action.DROP)
    assert decoder.decode(raw_event("198.18.0.2", "198.18.0.1")).rule_id == "new"


def test_address_cache_is_bounded_under_spoofed_sources() -> None:
    decoder = EventDecoder(0.0, lambda slot: None)
    base = int(ipaddress.IPv4Address("198.18.0.0"))
    for start in range(0, 3 * ADDRESS_CACHE_MAX, 1000):
        raws = [raw_event(str(ipaddress.IPv4Address(base + i)), "198.19.0.1") for i in range(start, start + 1000)]
        events = decoder.decode_all(framed(raws))
        assert [int(e.src) for e in events] == list(range(base + start, base + start + 1000))
        assert decoder.cached_addresses <= 2 * ADDRESS_CACHE_MAX


def test_packet_event_is_an_immutable_value() -> None:
    ev = EventDecoder(0.0, lambda slot: None).decode(raw_event("198.18.0.2", "198.18.0.1"))
    with pytest.raises(AttributeError):
        ev.src_port = 1  # type: ignore[misc]
    same = PacketEvent(
        ev.ts, 4, ipaddress.ip_address("198.18.0.2"), ipaddress.ip_address("198.18.0.1"), 40000, 80, 6, 2, 60,
        Verdict.DROP, None,
    )  # fmt: skip
    assert ev == same and hash(ev) == hash(same)
    assert ev != same._replace(src_port=1)
    assert codec.event_from_json(codec.event_to_json(ev)) == ev


# --- against a real ring buffer ------------------------------------------------------

PROG = f"""
struct ev {{ u64 ts; char rest[{BODY - 8}]; }};
BPF_RINGBUF_OUTPUT(R, 1);
int f(struct xdp_md *c) {{
    u64 len = c->data_end - c->data;
    if (len == 62) {{
        u64 *x = R.ringbuf_reserve(sizeof(u64));
        if (x) {{ *x = 0; R.ringbuf_submit(x, 0); }}
        return XDP_PASS;
    }}
    struct ev *e = R.ringbuf_reserve(sizeof(*e));
    if (!e) return XDP_PASS;
    __builtin_memset(e, 0, sizeof(*e));
    e->ts = bpf_ktime_get_ns();
    if (len == 61) R.ringbuf_discard(e, 0); else R.ringbuf_submit(e, 0);
    return XDP_PASS;
}}
"""


@pytest.fixture
def ring() -> Iterator[tuple[Any, int, ringbuf.RingReader]]:
    import bcc

    b = bcc.BPF(text=PROG.encode())
    try:
        fd = int(b.load_func(b"f", bcc.BPF.XDP).fd)
        table = b[b"R"]
        reader = ringbuf.RingReader(int(table.map_fd), libbpf.map_info(int(table.map_fd)).max_entries, abi.PACKET_EVENT)
        try:
            yield b, fd, reader
        finally:
            reader.close()
    finally:
        b.cleanup()


def stamps(records: EventRecords) -> list[int]:
    return [f[0] for f in records.fields()]


@pytest.mark.root
@pytest.mark.skipif(not ringbuf.direct_read_supported(), reason="mmap reader is x86 only")
def test_reader_wraps_skips_and_limits(ring: tuple[Any, int, ringbuf.RingReader]) -> None:
    _, fd, reader = ring
    capacity = 4096 // STRIDE
    assert len(reader.read(0, 1000)) == 0
    t0 = time.monotonic()
    assert len(reader.read(50, 1000)) == 0
    assert time.monotonic() - t0 >= 0.04
    seen: list[int] = []
    for _ in range(5):  # 5 x 40 records through a ring of 64: it wraps
        libbpf.prog_test_run(fd, bytes(60), repeat=40)
        got = stamps(reader.read(100, 1000))
        assert len(got) == 40
        seen += got
    assert seen == sorted(seen) and len(set(seen)) == len(seen)

    for length in (60, 60, 61, 60, 62, 60):
        libbpf.prog_test_run(fd, bytes(length), repeat=1)
    before = reader.skipped
    got = stamps(reader.read(0, 1000))
    assert len(got) == 4 and got == sorted(got)
    assert reader.skipped - before == 2

    libbpf.prog_test_run(fd, bytes(60), repeat=3 * capacity)  # only a ring's worth fits
    assert len(reader.read(0, 10)) == 10
    assert 10 + len(reader.read(0, 1000)) in (capacity - 1, capacity)  # the kernel keeps one record free
    assert len(reader.read(0, 1000)) == 0
