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
from ironpost_tui.detectors.targets import MANY_PORTS
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig

pytestmark = pytest.mark.root

SRC, DST = "198.18.7.1", "198.19.7.1"


def key(addr: str) -> bytes:
    return abi.AGG_KEY.pack(bytes(int(x) for x in addr.split(".")).ljust(16, b"\0"), abi.FAMILY_V4)


def addr16(addr: str) -> bytes:
    """An IPv4 address as agg_key.addr and the target slots hold it."""
    return bytes(int(x) for x in addr.split(".")).ljust(16, b"\0")


def syn(dport: int, src: str = SRC, dst: str = DST) -> bytes:
    return frame(src, dst, dport)


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
    sources, targets, probes, *_ = reader.read(time.monotonic_ns())
    assert sources == {key(SRC): (3, 3, 3, 0)}
    assert targets == {key(DST): (3, 3)}
    assert probes == {(key(SRC), addr16(DST)): 3}
    # The same port again is no new port; an ACK is TCP but no SYN; UDP from a service port to an
    # ephemeral one is a reply, not a probe.
    libbpf.prog_test_run(dp.prog_fd, syn(1))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / TCP(dport=4, flags="A")))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / UDP(sport=53, dport=40000)))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=DST) / UDP(sport=40000, dport=53)))
    sources, targets, probes, *_ = reader.read(time.monotonic_ns())
    assert sources == {key(SRC): (1, 2, 0, 1)}
    assert targets == {key(DST): (1, 2)}
    assert probes == {(key(SRC), addr16(DST)): 2}  # the SYN and the UDP query; not the ACK, not the reply
    # Idle: nothing touched, nothing read.
    assert reader.read(time.monotonic_ns()) == ({}, {}, {}, {}, {})
    tick = abi.TICK.unpack(dp.map_lookup("TICK", bytes(4)) or b"")
    assert tick[0] == 3 and tick[1] > 0


def test_many_sources_each_counted_once(dp: Datapath) -> None:
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    sources = [f"198.18.{i // 250}.{i % 250 + 1}" for i in range(120)]
    for s in sources:
        libbpf.prog_test_run(dp.prog_fd, syn(80, src=s))
    got, targets, probes, *_ = reader.read(time.monotonic_ns())
    # 120 sources in 1,024 sets of 4 ways per CPU: a set would need 5 of them to lose one (about one run in
    # 5,000 with the random hash seed; 300 sources lost one in about 70).  Each way
    # holds one packet's one port, first seen: that port is not credited (what a spoofed source's
    # fresh ways look like; detectors/sketch.py says why).
    assert got == {key(s): (1, 1, 0, 0) for s in sources}
    assert targets == {key(DST): (120, 120)}
    assert probes == {(key(s), addr16(DST)): 1 for s in sources}

    # A second packet in the same way: from then on every port counts, the first one included.
    for s in sources[:10]:
        libbpf.prog_test_run(dp.prog_fd, syn(81, src=s))
    got, *_ = reader.read(time.monotonic_ns())
    assert got == {key(s): (1, 1, 1, 0) for s in sources[:10]}


def test_a_way_first_seen_with_two_ports_is_credited_both(dp: Datapath) -> None:
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.1"))
    libbpf.prog_test_run(dp.prog_fd, syn(81, src="198.18.9.1"))
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.2"))
    libbpf.prog_test_run(dp.prog_fd, syn(80, src="198.18.9.2"))  # two packets, one port: credited
    got, *_ = reader.read(time.monotonic_ns())
    assert got == {key("198.18.9.1"): (2, 2, 2, 0), key("198.18.9.2"): (2, 2, 1, 0)}


def test_a_sources_targets_are_counted_per_destination(dp: Datapath) -> None:
    """Probes per (source, destination) from the way's target slots: two destinations each get their
    own; a fifth destination takes the slot with the fewest probes and starts from one."""
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    a, b = "198.19.7.1", "198.19.7.2"
    for port in range(1, 31):
        libbpf.prog_test_run(dp.prog_fd, syn(port, dst=a))
        if port % 3 == 0:
            libbpf.prog_test_run(dp.prog_fd, syn(port, dst=b))
    _, targets, probes, *_ = reader.read(time.monotonic_ns())
    assert probes == {(key(SRC), addr16(a)): 30, (key(SRC), addr16(b)): 10}
    assert targets == {key(a): (30, 30), key(b): (10, 10)}

    # Four slots: c and d take the free ones; e takes the one with the fewest probes (d's, whose one
    # probe is lost with it), and a's and b's stay, counting on.
    c, d, e = "198.19.7.3", "198.19.7.4", "198.19.7.5"
    for dst in (c, c, d, e, a):
        libbpf.prog_test_run(dp.prog_fd, syn(99, dst=dst))
    _, _, probes, *_ = reader.read(time.monotonic_ns())
    assert probes == {(key(SRC), addr16(c)): 2, (key(SRC), addr16(e)): 1, (key(SRC), addr16(a)): 1}
    libbpf.prog_test_run(dp.prog_fd, syn(98, dst=d))  # d lost its slot: it comes back in e's (1 probe)
    libbpf.prog_test_run(dp.prog_fd, syn(98, dst=b))
    _, _, probes, *_ = reader.read(time.monotonic_ns())
    assert probes == {(key(SRC), addr16(d)): 1, (key(SRC), addr16(b)): 1}
    # Replies and acknowledgements are no probes: nothing for the slots.
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=a) / TCP(dport=4, flags="SA")))
    libbpf.prog_test_run(dp.prog_fd, bytes(eth() / IP(src=SRC, dst=a) / UDP(sport=53, dport=40000)))
    _, _, probes, *_ = reader.read(time.monotonic_ns())
    assert probes == {}


def test_each_target_keeps_the_port_that_took_half_its_probes(dp: Datapath) -> None:
    """The port kept per target slot (and per destination way, of its SYNs): a port with at least half
    the probes is named; probes spread over ports name none (MANY_PORTS)."""
    reader = SketchReader(dp)
    reader.read(time.monotonic_ns())
    a, b, c = "198.19.8.1", "198.19.8.2", "198.19.8.3"
    for port in [22] * 6 + [80, 443, 8080]:  # a: 22 took 6 of 9
        libbpf.prog_test_run(dp.prog_fd, syn(port, dst=a))
    for port in range(1000, 1020):  # b: 20 ports once each, a scan
        libbpf.prog_test_run(dp.prog_fd, syn(port, dst=b))
    libbpf.prog_test_run(dp.prog_fd, syn(53, dst=c))  # c: one probe, its port
    read = reader.read(time.monotonic_ns())
    assert read.probe_ports == {
        (key(SRC), addr16(a)): 22,
        (key(SRC), addr16(b)): MANY_PORTS,
        (key(SRC), addr16(c)): 53,
    }
    assert read.destination_ports == {key(a): 22, key(b): MANY_PORTS, key(c): 53}
    # The counts go on across reads: 22 keeps a (10 of 17); b's scan stays many.
    for port in [22] * 4 + [9, 10, 11, 12]:
        libbpf.prog_test_run(dp.prog_fd, syn(port, dst=a))
    libbpf.prog_test_run(dp.prog_fd, syn(2000, dst=b))
    read = reader.read(time.monotonic_ns())
    assert read.probe_ports == {(key(SRC), addr16(a)): 22, (key(SRC), addr16(b)): MANY_PORTS}
    # Then a's probes move to 3389, more than all the rest: it is named (control: not 22).
    for _ in range(40):
        libbpf.prog_test_run(dp.prog_fd, syn(3389, dst=a))
    read = reader.read(time.monotonic_ns())
    assert read.probe_ports == {(key(SRC), addr16(a)): 3389}
    assert read.destination_ports == {key(a): 3389}
    # A read's ports are found when asked for, from what that read left: asked after the next read,
    # they would be another read's; refused (control: asked in time, the port).
    d, e = "198.19.8.4", "198.19.8.5"
    libbpf.prog_test_run(dp.prog_fd, syn(25, dst=d))
    stale = reader.read(time.monotonic_ns()).probe_ports
    libbpf.prog_test_run(dp.prog_fd, syn(25, dst=e))
    fresh = reader.read(time.monotonic_ns()).probe_ports
    with pytest.raises(RuntimeError):
        stale[(key(SRC), addr16(d))]
    assert fresh[(key(SRC), addr16(e))] == 25
