"""The capture maps of a running ironpost program (bpf/capture.h), found by the interface.

A capture needs no program of its own: it finds the ironpost program attached to the interface
(whoever loaded it, a console or an agent), opens that program's CAPTURE_* maps by id, writes
CAPTURE_CFG and reads the copies from CAPTURE_PERF's per-CPU rings.  One capture per interface at
a time (an flock, ``host.InterfaceLock(iface, "capture")``): a second one would take the rings
over.
"""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Callable
from dataclasses import dataclass
from enum import IntEnum

from ironpost_tui.errors import IronpostError, NoController, NoSuchInterface
from ironpost_tui.kernel import abi, host, libbpf
from ironpost_tui.kernel.xdp_link import occupants

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_SNAPLEN = 256
# Copies per second per CPU unless told otherwise: a capture of a flooding source must not turn the flood
# into as many copies for this process to write (the rest are counted as lost, exactly).
DEFAULT_RATE = 10_000
PERF_PAGES = 64  # per CPU: 256 KiB, room for about a thousand 256-byte copies between two polls


class CaptureMap(IntEnum):
    """The capture maps; ``map_name`` is what the program calls each (within the kernel's 15 bytes)."""

    CFG = 0
    STATS = 1
    RATE = 2
    PERF = 3

    @property
    def map_name(self) -> str:
        return f"CAPTURE_{self.name}"


@dataclass(frozen=True)
class CaptureFilter:
    """What to capture: every field given must match; None (or 0) is "any"."""

    src: Network | None = None
    dst: Network | None = None
    port: int = 0
    protocol: int = 0
    rule_slot: int | None = None
    snaplen: int = DEFAULT_SNAPLEN
    rate: int = DEFAULT_RATE  # copies per second per CPU, 0: no limit

    def __post_init__(self) -> None:
        if self.src is not None and self.dst is not None and self.src.version != self.dst.version:
            raise ValueError("source and destination are of different IP versions")
        if not 1 <= self.snaplen <= abi.CAPTURE_SNAPLEN_MAX:
            raise ValueError(f"snap length {self.snaplen} is not 1 to {abi.CAPTURE_SNAPLEN_MAX}")

    def packed(self, enabled: bool = True) -> bytes:
        net = self.src or self.dst
        family = 0 if net is None else (abi.FAMILY_V4 if net.version == 4 else abi.FAMILY_V6)

        def addr(n: Network | None) -> bytes:
            return b"" if n is None else n.network_address.packed

        return abi.CAPTURE_CONFIG.pack(
            int(enabled),
            self.snaplen,
            self.rate,
            abi.CAPTURE_ANY_RULE if self.rule_slot is None else self.rule_slot,
            family,
            0 if self.src is None else self.src.prefixlen,
            0 if self.dst is None else self.dst.prefixlen,
            self.protocol,
            self.port,
            0,
            addr(self.src),
            addr(self.dst),
        )


@dataclass(frozen=True)
class CaptureCounts:
    """The kernel's counts since the capture began: captured + lost_rate + lost_perf = matched."""

    matched: int = 0
    captured: int = 0
    lost_rate: int = 0
    lost_perf: int = 0

    @property
    def lost(self) -> int:
        return self.lost_rate + self.lost_perf


@dataclass(frozen=True)
class Copy:
    """One copy from the kernel: its metadata and the bytes taken (cap_len of pkt_len)."""

    ts_ns: int  # CLOCK_MONOTONIC
    pkt_len: int
    rule_slot: int | None  # None: no rule matched
    verdict: int
    data: bytes


def parse_copy(raw: bytes) -> Copy | None:
    """A perf sample as the program wrote it (capture_meta, then the bytes); None if malformed."""
    size = abi.CAPTURE_META.size
    if len(raw) < size:
        return None
    ts, pkt_len, cap_len, slot, verdict = abi.CAPTURE_META.unpack_from(raw)
    data = raw[size : size + cap_len]
    if len(data) != cap_len:
        return None
    return Copy(ts, pkt_len, None if slot == abi.CAPTURE_NO_RULE else slot, verdict, data)


class CaptureMaps:
    """The CAPTURE_* maps of the ironpost program on one interface, open by fd."""

    def __init__(self, prog_id: int, where: str = "") -> None:
        """The maps of program ``prog_id`` (``where``: the interface, for messages)."""
        self.prog_id = prog_id
        self.ifindex = 0  # set by on_interface: attached() then checks the program is still there
        where = where or f"program {prog_id}"
        self._fds: dict[CaptureMap, int] = {}
        prog_fd = libbpf.prog_fd_by_id(self.prog_id)
        try:
            for map_id in libbpf.prog_map_ids(prog_fd):
                fd = libbpf.map_fd_by_id(map_id)
                name = libbpf.map_info(fd).name
                which = next((m for m in CaptureMap if m.map_name == name), None)
                if which is None or which in self._fds:
                    os.close(fd)
                else:
                    self._fds[which] = fd
        finally:
            os.close(prog_fd)
        if len(self._fds) != len(CaptureMap):
            self.close()
            raise IronpostError(
                f"the ironpost program on {where} (id {self.prog_id}) has no capture maps: it is older than "
                f"this version, restart it",
                title="No capture",
            )
        self._possible = _possible_cpus()

    @classmethod
    def on_interface(cls, iface: str) -> CaptureMaps:
        """The maps of the ironpost program attached to ``iface``; NoController when there is none."""
        host.check_iface_name(iface)
        try:
            ifindex = socket.if_nametoindex(iface)
        except OSError:
            raise NoSuchInterface(f"no interface {iface}") from None
        progs = [o for o in occupants(ifindex) if o.is_ironpost]
        if not progs:
            raise NoController(
                f"no ironpost program runs on {iface}: start `ironpost-tui {iface}` (or --headless) first"
            )
        maps = cls(progs[0].prog_id, iface)
        maps.ifindex = ifindex
        return maps

    def attached(self) -> bool:
        """Whether the program still runs on the interface (True when opened by program id alone)."""
        if not self.ifindex:
            return True
        try:
            return any(o.prog_id == self.prog_id for o in occupants(self.ifindex))
        except libbpf.BpfCallError:
            return False

    def fd(self, which: CaptureMap) -> int:
        return self._fds[which]

    def configure(self, filt: CaptureFilter | None) -> None:
        """Start (a filter) or stop (None) capturing: one write of CAPTURE_CFG."""
        value = filt.packed() if filt is not None else abi.CAPTURE_CONFIG.pack(0, 1, 0, 0, 0, 0, 0, 0, 0, 0, b"", b"")
        libbpf.map_update(self._fds[CaptureMap.CFG], _KEY0, value)

    def enabled(self) -> bool:
        """Whether CAPTURE_CFG asks the program for copies (its ``enabled`` field)."""
        raw = libbpf.map_lookup(self._fds[CaptureMap.CFG], _KEY0, abi.CAPTURE_CONFIG.size)
        return raw is not None and abi.CAPTURE_CONFIG.unpack(raw)[0] != 0

    def reset(self) -> None:
        """Zero the counts and the token buckets: a capture counts from its start."""
        for which, size in ((CaptureMap.STATS, 8), (CaptureMap.RATE, 16)):
            n = abi.CAPSTAT_MAX if which is CaptureMap.STATS else 1
            for key in range(n):
                libbpf.map_update(self._fds[which], key.to_bytes(4, "little"), bytes(size * self._possible))

    def counts(self) -> CaptureCounts:
        totals = []
        for key in range(abi.CAPSTAT_MAX):
            raw = libbpf.map_lookup(self._fds[CaptureMap.STATS], key.to_bytes(4, "little"), 8 * self._possible)
            values = raw or b""
            totals.append(sum(int.from_bytes(values[i : i + 8], "little") for i in range(0, len(values), 8)))
        return CaptureCounts(*totals)

    def open_rings(self, on_copy: Callable[[Copy], None], on_lost: Callable[[int], None]) -> libbpf.PerfBuffer:
        def sample(_cpu: int, raw: bytes) -> None:
            copy = parse_copy(raw)
            if copy is not None:
                on_copy(copy)

        return libbpf.PerfBuffer(self._fds[CaptureMap.PERF], PERF_PAGES, sample, lambda _cpu, n: on_lost(n))

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


_KEY0 = bytes(4)


def stop_orphaned(maps: CaptureMaps, iface: str) -> bool:
    """Turn CAPTURE_CFG off if it is on and no capture runs on ``iface``; True when it did.

    Every capture holds the interface's capture lock from before its first write of CAPTURE_CFG until
    after its last (records/capture.py): CAPTURE_CFG on with the lock free is a capture that died
    without turning it off (``kill -9``).  The lock is taken, not just tested, and CAPTURE_CFG read again
    under it: a capture that is starting (lock taken, CAPTURE_CFG not yet written), running or ending
    (off written, lock not yet released) holds the lock, so it is left alone; one that ended between
    the two reads left CAPTURE_CFG off; and none can start while this writes.  The lock is held for one
    map read and one write: a capture starting in that instant is refused (CaptureBusy) as beside any.
    """
    if not maps.enabled():
        return False
    lock = host.InterfaceLock(iface, "capture")
    if not lock.try_acquire():
        return False
    try:
        if not maps.enabled():
            return False
        maps.configure(None)
        return True
    finally:
        lock.release()


def _possible_cpus() -> int:
    """How many values a per-CPU map holds: the possible CPUs (/sys/devices/system/cpu/possible)."""
    with open("/sys/devices/system/cpu/possible") as f:
        text = f.read().strip()
    last = 0
    for part in text.split(","):
        last = max(last, int(part.split("-")[-1]))
    return last + 1
