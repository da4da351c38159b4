"""The detector sketches through the real program (BPF_PROG_TEST_RUN) and ironpost_tui/detectors/sketch.py.

What a packet counts in SRC_SKETCH/DST_SKETCH reaches user space as deltas, also for packets that
arrived before the first read (TICK still zero), and an idle read finds nothing.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from support.packets import eth, frame

from ironpost_tui.detectors.sketch import SketchReader
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig

pytestmark = pytest.mark.root

SRC, DST = "198.18.7.1", "198.19.7.1"


def key(addr: str) -> bytes:
    return abi.AGG_KEY.pack(bytes(int(x) for x in addr.split(".")).ljust(16, b"\0"), abi.FAMILY_V4)


def syn(dport: int, src: str = SRC) -> bytes:
    return frame(src, DST, dport)


@pytest.fixture
def dp() -> Iterator[Datapath]:
    d = Datapath(DatapathConfig())
    try:
        yield d
    finally:
        d.close()


def test_packets_before_the_first_read_count_and_reads_give_deltas(dp: Datapath) -> None:
    assert dp.map_lookup("TICK", bytes(4)) == bytes(abi.TICK.size)  # nobody published a tick yet
    for port in (1, 2, 3):
        assert libbpf.prog_test_run(dp.prog_fd, syn(port)).retval == 2  # XDP_PASS
    reader = SketchReader(dp)
    sources, targets = reader.read(time.monotonic_ns())
    assert sources == {key(SRC): (3, 3, 3, 0)}
    assert targets == {key(DST): (3, 3)}
    # The same port again is no new port; an ACK is TCP but no SYN; UDP from a service port to an
    # ephemeral one is a reply, not a probe.
    libbpf.prog_test_run(dp.prog_fd, syn(1))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / TCP(dport=4, flags="A")))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / UDP(sport=53, dport=40000)))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / UDP(sport=40000, dport=53)))
    sources, targets = reader.read(time.monotonic_ns())
    assert sources == {key(SRC): (1, 2, 0, 1)}
    assert targets == {key(DST): (1, 2)}
    # Idle: nothing touched, nothing read.
    assert reader.read(time.monotonic_ns()) == ({}, {})
    tick = abi.TICK.unpack(dp.map_lookup("TICK", bytes(4)) or b"")
    assert tick[0] == 3 and tick[1] > 0


def test_many_sources_each_counted_once(dp: Datapath) -> None:
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    sources = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(300)]
    for s in sources:
        libbpf.prog_test_run(dp.prog_fd, syn(80, src=s))
    got, targets = reader.read(time.monotonic_ns())
    # 300 sources in 1,024 sets of 4 ways per CPU: a set would need 5 of them to lose one.  Each way
    # holds one packet's one port, first seen: that port is not credited (what a spoofed source's
    # fresh ways look like; detectors/sketch.py says why).
    assert got == {key(s): (1, 1, 0, 0) for s in sources}
    assert targets == {key(DST): (300, 300)}

    # A second packet in the same way: from then on every port counts, the first one included.
    for s in sources[:10]:
        libbpf.prog_test_run(dp.prog_fd, syn(81, src=s))
    got, _ = reader.read(time.monotonic_ns())
    assert got == {key(s): (1, 1, 1, 0) for s in sources[:10]}


def test_a_way_first_seen_with_two_ports_is_credited_both(dp: Datapath) -> None:
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.1"))
    libbpf.prog_test_run(dp.prog_fd, syn(81, src="198.18.9.1"))
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.2"))
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.2"))  # two packets, one port: credited
    got, _ = reader.read(time.monotonic_ns())
    assert got == {key("198.18.9.1"): (2, 2, 2, 0), key("198.18.9.2"): (2, 2, 1, 0)}
