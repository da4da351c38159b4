"""Reading a BPF ring buffer from user space through mmap, many records at a time.

libbpf's consumer calls back into Python once per record (through ctypes), which
costs more than decoding the record.  This reader copies whatever the ring holds
in one slice and hands it over as fixed-size records that ``struct.iter_unpack``
walks in C.  Layout (kernel/bpf/ringbuf.c, libbpf's ringbuf.c): page 0 holds the
consumer position (ours to write), page 1 the producer position, then the data
pages, mapped twice in a row so a run of records is contiguous across the wrap.
Each record has an 8-byte header: its length with a BUSY bit (reserved, not yet
submitted) and a DISCARD bit, and a page offset; records are 8-byte aligned.
"""

from __future__ import annotations

import mmap
import os
import select
import struct
from dataclasses import dataclass
from typing import Any

BUSY_BIT = 1 << 31
DISCARD_BIT = 1 << 30
HEADER_SIZE = 8

# Native layout on purpose: "@Q" reads and writes the 8-byte positions with one
# machine load/store (memcpy of a constant size); the "<" formats go byte by byte,
# and the kernel must never see a torn consumer position.
_POS = struct.Struct("@Q")
_LEN = struct.Struct("@I")


def direct_read_supported() -> bool:
    """Plain loads and stores are enough only where the CPU keeps loads in order with
    loads and stores with stores (x86's TSO): libbpf uses acquire/release there, and
    Python has no barriers.  Elsewhere libbpf's own consumer is used."""
    # os.uname(), not the platform module (2 ms of every start's imports for the same field).
    return os.uname().machine.lower() in ("x86_64", "amd64") and hasattr(select, "epoll")


@dataclass(frozen=True)
class EventRecords:
    """Records of one layout packed back to back: ``layout.iter_unpack(data)`` yields their fields."""

    data: bytes
    layout: struct.Struct

    def __len__(self) -> int:
        return len(self.data) // self.layout.size

    def fields(self) -> Any:
        """An iterator of one field tuple per record."""
        return self.layout.iter_unpack(self.data)


class RingReader:
    """The consumer side of one BPF_MAP_TYPE_RINGBUF whose records all carry ``body`` (a struct)."""

    def __init__(self, map_fd: int, size: int, body: struct.Struct) -> None:
        if size <= 0 or size & (size - 1):
            raise ValueError(f"ring buffer size {size} is not a power of two")
        page = mmap.PAGESIZE
        self._mask = size - 1
        self._stride = (HEADER_SIZE + body.size + 7) & ~7
        # Each record as the ring holds it: header skipped, body, padding skipped.
        pad = self._stride - HEADER_SIZE - body.size
        self.layout = struct.Struct(f"{body.format[0]}{HEADER_SIZE}x{body.format[1:]}{pad}x")
        # The header of a submitted record of this size, byte by byte (little- or big-endian).
        self._header = _LEN.pack(body.size)
        self._cons = mmap.mmap(map_fd, page, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=0)
        try:
            self._prod = mmap.mmap(map_fd, page + 2 * size, mmap.MAP_SHARED, mmap.PROT_READ, offset=page)
        except BaseException:
            self._cons.close()
            raise
        self._data = page  # offset of the data pages in self._prod
        self._epoll = select.epoll()
        self._epoll.register(map_fd, select.EPOLLIN)
        self.skipped = 0  # discarded records, and records of another size (never written by our program)

    def _avail(self) -> tuple[int, int]:
        cons = _POS.unpack_from(self._cons, 0)[0]
        return cons, _POS.unpack_from(self._prod, 0)[0] - cons

    def read(self, timeout_ms: int, max_records: int) -> EventRecords:
        """Submitted records (at most max_records), waiting up to timeout_ms for the first."""
        cons, avail = self._avail()
        if avail == 0 and timeout_ms != 0:
            self._epoll.poll(timeout_ms / 1000 if timeout_ms > 0 else -1)
            cons, avail = self._avail()
        if avail == 0:
            return EventRecords(b"", self.layout)
        stride = self._stride
        start = self._data + (cons & self._mask)
        limit = min(avail, max(1, max_records) * stride)
        # First copy: which records are submitted.  memcpy may load a record's body before
        # its header, so a body copied while it was being written can sit beside a header
        # that says submitted: bodies are copied again below, after their headers were
        # seen submitted (x86 keeps loads in order).
        head = self._prod[start : start + limit]
        runs, pos, skipped = scan(head, stride, self._header)
        if pos == 0 and limit < avail and not runs:  # a record longer than the limit: not ours, skip it
            head = self._prod[start : start + avail]
            runs, pos, skipped = scan(head, stride, self._header)
        self.skipped += skipped
        data = b"".join(self._prod[start + a : start + b] for a, b in runs)
        # After the copy: x86 does not move a store before earlier loads.
        _POS.pack_into(self._cons, 0, cons + pos)
        return EventRecords(data, self.layout)

    def close(self) -> None:
        self._epoll.close()
        self._prod.close()
        self._cons.close()


def scan(head: bytes, stride: int, header: bytes) -> tuple[list[tuple[int, int]], int, int]:
    """Walk the records copied in ``head`` (from the consumer position on).

    Returns the byte ranges of submitted records whose header is ``header`` (all
    ``stride`` bytes long), how many bytes may be consumed (up to the first record
    still being written), and how many records were skipped (discarded, or of
    another size)."""
    runs: list[tuple[int, int]] = []
    limit = len(head)
    pos = skipped = 0
    while pos < limit:
        n = _run(head, pos, (limit - pos) // stride, stride, header)
        if n:
            runs.append((pos, pos + n * stride))
            pos += n * stride
        if pos + HEADER_SIZE > limit:
            break
        length = _LEN.unpack_from(head, pos)[0]
        if length & BUSY_BIT:
            break  # not submitted yet: the records after it wait too (as in libbpf)
        size = (HEADER_SIZE + (length & ~(BUSY_BIT | DISCARD_BIT)) + 7) & ~7
        if pos + size > limit:
            break
        skipped += 1  # consumed, not delivered
        pos += size
    return runs, pos, skipped


def _run(head: bytes, pos: int, count: int, stride: int, header: bytes) -> int:
    """How many records from ``pos`` on (at most count) have ``header``, byte column by column.

    Exact, not a guess: the header at pos is a header; if it is ours, the next one
    starts a stride further, and so on."""
    n = count
    end = pos + count * stride
    for i, byte in enumerate(header):
        column = head[pos + i : end : stride]
        same = len(column) - len(column.lstrip(bytes((byte,))))
        n = min(n, same)
    return n
