"""bpf/capture.h through BPF_PROG_TEST_RUN: what a capture configuration matches, what each copy carries,
and the counts (matched = captured + lost).  The copies are read from CAPTURE_PERF as a capture reads
them (kernel/capture.py)."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Dot1Q, Ether
from support.verdicts import Env, drop, open_env

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.capture import CaptureCounts, CaptureFilter, CaptureMaps, Copy

pytestmark = pytest.mark.root

SRC4, OTHER4, DST4 = "198.18.0.5", "198.18.1.5", "198.18.9.1"
SRC6, OTHER6, DST6 = "2001:db8:1::5", "2001:db8:2::5", "2001:db8:9::1"


def eth(l3: object) -> bytes:
    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / l3)


V4 = eth(IP(src=SRC4, dst=DST4) / UDP(sport=1000, dport=53) / b"v4")
V4_OTHER = eth(IP(src=OTHER4, dst=DST4) / UDP(sport=1000, dport=53) / b"other4")
V4_TCP = eth(IP(src=SRC4, dst=DST4) / TCP(sport=1000, dport=22) / b"tcp")
VLAN = eth(Dot1Q(vlan=7) / IP(src=SRC4, dst=DST4) / UDP(sport=1000, dport=53) / b"vlan")
V6 = eth(IPv6(src=SRC6, dst=DST6) / UDP(sport=1000, dport=53) / b"v6")
V6_OTHER = eth(IPv6(src=OTHER6, dst=DST6) / UDP(sport=1000, dport=53) / b"other6")
BIG = eth(IP(src=SRC4, dst=DST4) / UDP(sport=1000, dport=53) / (b"B" * 1000))
ALL = [V4, V4_OTHER, V4_TCP, VLAN, V6, V6_OTHER, BIG]


class Kernel:
    def __init__(self, env: Env) -> None:
        self.env = env
        self.maps = CaptureMaps(libbpf.prog_info(env.dp.prog_fd).id)
        self.copies: list[Copy] = []
        self.rings = self.maps.open_rings(self.copies.append, lambda n: None)

    def capture(self, filt: CaptureFilter | None, frames: list[bytes]) -> tuple[list[Copy], CaptureCounts]:
        self.copies.clear()
        self.maps.configure(None)
        self.maps.reset()
        self.maps.configure(filt)
        for frame in frames:
            self.env.run(frame)
        self.maps.configure(None)
        while self.rings.poll(50):
            pass
        return list(self.copies), self.maps.counts()

    def close(self) -> None:
        self.rings.close()
        self.maps.close()


@pytest.fixture(scope="module")
def kernel() -> Iterator[Kernel]:
    with open_env() as env:
        k = Kernel(env)
        try:
            yield k
        finally:
            k.close()


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


@pytest.mark.parametrize(
    ("filt", "expected"),
    [
        pytest.param(None, [], id="off"),
        pytest.param(CaptureFilter(src=net(f"{SRC4}/32")), [V4, V4_TCP, VLAN, BIG], id="src4-exact"),
        pytest.param(CaptureFilter(src=net("198.18.0.0/24")), [V4, V4_TCP, VLAN, BIG], id="src4-prefix"),
        pytest.param(CaptureFilter(src=net("198.18.0.0/23")), [V4, V4_OTHER, V4_TCP, VLAN, BIG], id="src4-wider"),
        pytest.param(CaptureFilter(src=net(f"{SRC6}/128")), [V6], id="src6-exact"),
        pytest.param(CaptureFilter(src=net("2001:db8:1::/48")), [V6], id="src6-prefix"),
        pytest.param(CaptureFilter(src=net("2001:db8::/32")), [V6, V6_OTHER], id="src6-wider"),
        pytest.param(CaptureFilter(dst=net(f"{DST6}/128")), [V6, V6_OTHER], id="dst6"),
        pytest.param(CaptureFilter(port=22), [V4_TCP], id="port"),
        pytest.param(CaptureFilter(protocol=6), [V4_TCP], id="protocol"),
        pytest.param(CaptureFilter(src=net(f"{SRC4}/32"), port=53, protocol=17), [V4, VLAN, BIG], id="and"),
    ],
)
def test_what_a_capture_matches(kernel: Kernel, filt: CaptureFilter | None, expected: list[bytes]) -> None:
    """Each frame is copied once when every field of the filter matches it, never when capture is off."""
    kernel.env.reset()
    copies, counts = kernel.capture(filt, ALL)
    assert sorted(c.data for c in copies) == sorted(f[: abi_snap(filt)] for f in expected)
    assert counts == CaptureCounts(matched=len(expected), captured=len(expected))
    for c in copies:
        assert c.verdict == abi.VERDICT_PASS and c.rule_slot is None


def abi_snap(filt: CaptureFilter | None) -> int:
    return filt.snaplen if filt is not None else 0


def test_copies_carry_the_verdict_rule_and_length_and_a_rule_filter_keeps_its_packets(kernel: Kernel) -> None:
    """A drop rule on SRC4: its packets are copied with verdict drop and its slot (before the drop takes
    effect); a filter on that slot takes only them; snap lengths cut at the snap length or the frame."""
    kernel.env.reset([drop("cap-drop", src=f"{SRC4}/32")])
    slot = next(s.slot for s in kernel.env.table.status() if s.rule.id == "cap-drop")
    assert slot is not None
    copies, counts = kernel.capture(CaptureFilter(rule_slot=slot, snaplen=64), ALL)
    assert sorted(c.data for c in copies) == sorted(f[:64] for f in (V4, V4_TCP, VLAN, BIG))
    assert all(c.verdict == abi.VERDICT_DROP and c.rule_slot == slot for c in copies)
    assert {c.pkt_len for c in copies} == {len(V4), len(V4_TCP), len(VLAN), len(BIG)}
    assert counts == CaptureCounts(matched=4, captured=4)
    copies, _ = kernel.capture(CaptureFilter(src=net(f"{OTHER4}/32"), snaplen=abi.CAPTURE_SNAPLEN_MAX), ALL)
    assert [c.data for c in copies] == [V4_OTHER]  # the whole frame, not more
    assert copies[0].verdict == abi.VERDICT_PASS and copies[0].rule_slot is None
    kernel.env.reset()


def test_the_rate_limit_counts_every_copy_it_refuses(kernel: Kernel) -> None:
    """A burst of 500 at 10 copies/s: at most the bucket's 10 (plus what refills) are copied, the rest
    are lost to the rate limit, and captured + lost = matched exactly; no limit (control): all 500."""
    kernel.env.reset()
    copies, counts = kernel.capture(CaptureFilter(src=net(f"{SRC4}/32"), rate=10), [V4] * 500)
    assert counts.matched == 500 and counts.captured + counts.lost_rate == 500 and counts.lost_perf == 0
    assert 1 <= counts.captured <= 20 and len(copies) == counts.captured
    copies, counts = kernel.capture(CaptureFilter(src=net(f"{SRC4}/32"), rate=0), [V4] * 500)
    assert counts == CaptureCounts(matched=500, captured=500) and len(copies) == 500
