"""End to end on a veth pair: the real engine (BCC-compiled program, BPF link
in native mode) on the host side of a netlab veth pair, real frames sent from
the namespace, and real sockets in the root namespace as the receivers.

Each test gets a fresh lab and a fresh engine; the engine fixture depends on
the lab fixture, so pytest closes (detaches) the engine before the lab is torn
down, also when a test fails.

How "all frames have been processed" is known without sleeping blindly:
with an XDP program attached natively, veth queues every frame on one
ptr_ring drained by one NAPI instance, so frames are seen in the order they
were sent.  A test either waits until the STATS totals reach the expected
count (then checks a little later that nothing more came), or sends a last
"sentinel" frame that is known to pass and waits for it at a socket: once it
is there, every frame sent before it has been through the program.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP, UDP, IPOption_NOP, fragment
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrHopByHop, IPv6ExtHdrRouting
from scapy.layers.l2 import Dot1AD, Dot1Q
from support import engine as running
from support import netlab
from support.common import net

from ironpost_tui.engine.engine import Engine
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.model import Action, FilterRule, PacketEvent, ProtoCounters, StatsSample, Verdict

pytestmark = pytest.mark.root

PROTOS = ("tcp", "udp", "icmp", "other", "total")
TCP_SYN = 0x02
IPPROTO_TCP, IPPROTO_UDP, IPPROTO_ICMP, IPPROTO_ICMPV6 = 6, 17, 1, 58
IPPROTO_EXPERIMENTAL = 253  # RFC 3692: counts under "other"
SETTLE = 0.15  # seconds to wait after the expected count was reached, to see that nothing more comes


# --------------------------------------------------------------------------- #
# the engine


running_engine = running.on_lab


@pytest.fixture
def engine(lab: netlab.Lab) -> Iterator[Engine]:
    with running_engine(lab) as eng:
        yield eng


@pytest.fixture
def engine_with(lab: netlab.Lab) -> Iterator[Callable[[DatapathConfig], Engine]]:
    """A factory: start one engine on the lab with the given DatapathConfig."""
    stack = contextlib.ExitStack()

    def start(cfg: DatapathConfig) -> Engine:
        return stack.enter_context(running_engine(lab, cfg))

    with stack:
        yield start


# --------------------------------------------------------------------------- #
# stats helpers


def delta(after: StatsSample, before: StatsSample) -> dict[str, ProtoCounters]:
    return {
        name: ProtoCounters(
            after.totals[name].packets - before.totals[name].packets,
            after.totals[name].bytes - before.totals[name].bytes,
            after.totals[name].drops - before.totals[name].drops,
        )
        for name in PROTOS
    }


def settle(eng: Engine, before: StatsSample, packets: int, timeout: float = 5.0) -> dict[str, ProtoCounters]:
    """Wait until the program has counted ``packets`` more in total, then a little longer; the deltas."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if running.sample(eng).totals["total"].packets - before.totals["total"].packets >= packets:
            break
        time.sleep(0.01)
    time.sleep(SETTLE)
    return delta(running.sample(eng), before)


def hits(eng: Engine, rule_id: str) -> int:
    return next(s.hits for s in running.rule_status(eng) if s.rule.id == rule_id)


# --------------------------------------------------------------------------- #
# frames


def udp4(lab: netlab.Lab, dport: int, payload: bytes = b"", sport: int = 40000, src: str | None = None) -> bytes:
    return netlab.frame(lab, IP(src=src or lab.ns_ip4, dst=lab.host_ip4) / UDP(sport=sport, dport=dport) / payload)


def udp6(lab: netlab.Lab, dport: int, payload: bytes = b"", sport: int = 40000) -> bytes:
    return netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / UDP(sport=sport, dport=dport) / payload)


def syn4(lab: netlab.Lab, dport: int, sport: int = 40001) -> bytes:
    return netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / TCP(sport=sport, dport=dport, flags="S", seq=1000))


def syn6(lab: netlab.Lab, dport: int, sport: int = 40001) -> bytes:
    return netlab.frame(
        lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / TCP(sport=sport, dport=dport, flags="S", seq=1000)
    )


# --------------------------------------------------------------------------- #
# receivers in the root namespace


class UdpReceiver:
    """A UDP socket bound on the host side, counting the datagrams it gets."""

    def __init__(self, addr: str, port: int = 0) -> None:
        self.sock = netlab.udp_receiver(addr, port)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []

    def drain(self) -> int:
        while True:
            try:
                self.received.append(self.sock.recv(65535))
            except BlockingIOError:
                return len(self.received)

    def wait_for(self, payload: bytes, timeout: float = 3.0) -> None:
        """Until a datagram with exactly ``payload`` has arrived (the sentinel)."""
        deadline = time.monotonic() + timeout
        while payload not in self.received:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{payload!r} never reached {self.sock.getsockname()}")
            select.select([self.sock], [], [], left)
            self.drain()

    def take(self) -> list[bytes]:
        """Everything received so far (after a short settle), then forget it."""
        time.sleep(0.05)
        self.drain()
        got, self.received = self.received, []
        return got

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def receivers() -> Iterator[Callable[..., UdpReceiver]]:
    made: list[UdpReceiver] = []

    def make(addr: str, port: int = 0) -> UdpReceiver:
        made.append(UdpReceiver(addr, port))
        return made[-1]

    yield make
    for r in made:
        r.close()


def rp_filter_off(dev: str) -> bool:
    conf = Path("/proc/sys/net/ipv4/conf")
    return all(int((conf / d / "rp_filter").read_text()) == 0 for d in ("all", dev))


def closed_tcp_port(addr: str, port: int = 0) -> socket.socket:
    """A TCP socket bound but not listening: nobody else can listen on its port, SYNs to it get a RST."""
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    s = socket.socket(family, socket.SOCK_STREAM)
    s.bind((addr, port))
    return s


# --------------------------------------------------------------------------- #
# 1. per-protocol counters


def test_per_protocol_counts_and_bytes_are_exact(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    # Nothing may come back to the host from the namespace: the UDP receivers never answer, the
    # unknown protocol gets an ICMP error, SYNs to a bound-but-not-listening port get RSTs, echo
    # requests get echo replies; the namespace answers none of these.
    r4, r6 = receivers(lab.host_ip4), receivers(lab.host_ip6)
    with closed_tcp_port(lab.host_ip4) as t4, closed_tcp_port(lab.host_ip6) as t6:
        frames = {
            "udp4": [udp4(lab, r4.port, b"x" * i) for i in range(0, 70, 7)],  # 10 frames, 42..105 bytes
            "syn4": [syn4(lab, t4.getsockname()[1], sport=41000 + i) for i in range(7)],
            "icmp4": [
                netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / ICMP(id=7, seq=i) / (b"p" * i))
                for i in range(5)
            ],
            "udp6": [udp6(lab, r6.port, b"y" * i) for i in range(0, 33, 4)],  # 9 frames
            "syn6": [syn6(lab, t6.getsockname()[1], sport=42000 + i) for i in range(3)],
            "icmp6": [
                netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / ICMPv6EchoRequest(id=8, seq=i))
                for i in range(4)
            ],
            "other4": [
                netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4, proto=IPPROTO_EXPERIMENTAL) / b"zz")
                for _ in range(2)
            ],
        }
        # veth does not pad: a frame shorter than the Ethernet minimum of 60 bytes (without FCS)
        # reaches the program as sent (padding is a NIC driver's/PHY's job, and veth has neither),
        # so the smallest UDP frame here is counted as 42 bytes, not 60.
        assert len(frames["udp4"][0]) == 42
        assert min(len(f) for f in frames["icmp4"]) == 42
        reps = 3
        before = running.sample(engine)
        netlab.send_frames(lab, [f for fs in frames.values() for f in fs], count=reps)

        def count(*keys: str) -> ProtoCounters:
            fs = [f for k in keys for f in frames[k]]
            return ProtoCounters(packets=reps * len(fs), bytes=reps * sum(len(f) for f in fs), drops=0)

        want = {
            "tcp": count("syn4", "syn6"),
            "udp": count("udp4", "udp6"),
            "icmp": count("icmp4", "icmp6"),
            "other": count("other4"),
            "total": count(*frames),
        }
        got = settle(engine, before, want["total"].packets)
        assert got == want
        assert len(r4.take()) == reps * len(frames["udp4"])
        assert len(r6.take()) == reps * len(frames["udp6"])
        # No rule: no events.
        assert engine.tick(0).events == ()
        after = running.sample(engine)
        assert after.events_delivered == before.events_delivered
        assert after.events_lost == before.events_lost


# --------------------------------------------------------------------------- #
# 2. runtime rules, proven with real receivers


def test_runtime_v4_source_rule_drops_that_host_only_and_removal_restores(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    r4, r6 = receivers(lab.host_ip4), receivers(lab.host_ip6)
    n = 20

    def burst(tag: bytes) -> None:
        """n v4 and n v6 datagrams, then a v6 sentinel (v6 is never blocked here)."""
        netlab.send_frames(lab, [udp4(lab, r4.port, tag + b"-4-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp6(lab, r6.port, tag + b"-6-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp6(lab, r6.port, tag + b"-sentinel")])
        r6.wait_for(tag + b"-sentinel")

    # No rule: everything arrives.
    before = running.sample(engine)
    burst(b"open")
    assert len(r4.take()) == n
    assert len(r6.take()) == n + 1
    assert delta(running.sample(engine), before)["total"].drops == 0

    # Block the namespace's IPv4 address (an exact /32: the BLOCKLIST hash).
    running.add_rule(engine, FilterRule("block-ns4", Action.DROP, src_ip=net(lab.ns_ip4)))
    assert running.rule_status(engine)[0].map_name == "BLOCKLIST"
    before = running.sample(engine)
    burst(b"blocked")
    assert r4.take() == []
    assert len(r6.take()) == n + 1  # same host, other source address: untouched
    d = delta(running.sample(engine), before)
    assert d["udp"] == ProtoCounters(packets=2 * n + 1, bytes=d["udp"].bytes, drops=n)
    assert d["total"].drops == n
    assert hits(engine, "block-ns4") == n

    # Another IPv4 source (in the test range, outside the lab's /30) is not dropped either.
    other_src = str(ipaddress.IPv4Address(lab.ns_ip4) + 4)
    before = running.sample(engine)
    netlab.send_frames(lab, [udp4(lab, r4.port, b"spoofed-%d" % i, src=other_src) for i in range(n)])
    d = settle(engine, before, n)
    assert d["udp"].packets == n and d["total"].drops == 0
    if rp_filter_off(lab.host_if):  # else the stack drops them (unroutable source), after the program passed them
        assert len(r4.take()) == n

    # Remove it: delivery comes back.
    assert running.delete_rule(engine, "block-ns4").id == "block-ns4"
    before = running.sample(engine)
    burst(b"reopened")
    assert len(r4.take()) == n
    assert len(r6.take()) == n + 1
    assert delta(running.sample(engine), before)["total"].drops == 0


def test_runtime_v6_source_rule_drops_v6_only(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    r4, r6 = receivers(lab.host_ip4), receivers(lab.host_ip6)
    n = 15

    def burst(tag: bytes) -> None:
        """n v6 and n v4 datagrams, then a v4 sentinel (v4 is never blocked here)."""
        netlab.send_frames(lab, [udp6(lab, r6.port, tag + b"-6-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp4(lab, r4.port, tag + b"-4-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp4(lab, r4.port, tag + b"-sentinel")])
        r4.wait_for(tag + b"-sentinel")

    running.add_rule(engine, FilterRule("block-ns6", Action.DROP, src_ip=net(lab.ns_ip6)))
    assert running.rule_status(engine)[0].map_name == "SRC6"
    before = running.sample(engine)
    burst(b"blocked")
    assert r6.take() == []
    assert len(r4.take()) == n + 1
    d = delta(running.sample(engine), before)
    assert d["udp"].drops == n and d["total"].drops == n
    assert hits(engine, "block-ns6") == n

    # ICMPv6 from the same source is dropped too (a source rule matches every protocol).
    before = running.sample(engine)
    netlab.send_frames(
        lab,
        [netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / ICMPv6EchoRequest(id=9, seq=i)) for i in range(3)],
    )
    d = settle(engine, before, 3)
    assert d["icmp"] == ProtoCounters(3, d["icmp"].bytes, 3)

    running.delete_rule(engine, "block-ns6")
    before = running.sample(engine)
    burst(b"reopened")
    assert len(r6.take()) == n
    assert len(r4.take()) == n + 1
    assert delta(running.sample(engine), before)["total"].drops == 0


def test_runtime_multi_field_rule_drops_only_that_port_and_protocol(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    blocked4, open4 = receivers(lab.host_ip4), receivers(lab.host_ip4)
    port = blocked4.port
    blocked6 = receivers(lab.host_ip6, port)  # the same port number on the v6 address
    n = 12
    # UDP to that port, from any address of either family: a MATCH rule with no address.
    running.add_rule(engine, FilterRule("udp-port", Action.DROP, dst_port=port, protocol=IPPROTO_UDP))
    assert running.rule_status(engine)[0].map_name == "MATCH"

    # TCP to the same port number passes (TCP and UDP ports are separate spaces: the bind works).
    with closed_tcp_port(lab.host_ip4, port) as tcp_sock:
        tcp_port = tcp_sock.getsockname()[1]
        assert tcp_port == port
        before = running.sample(engine)
        netlab.send_frames(lab, [udp4(lab, blocked4.port, b"b4-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp6(lab, blocked6.port, b"b6-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [udp4(lab, open4.port, b"o4-%d" % i) for i in range(n)])
        netlab.send_frames(lab, [syn4(lab, tcp_port)])
        netlab.send_frames(lab, [udp4(lab, open4.port, b"sentinel")])
        open4.wait_for(b"sentinel")
        assert blocked4.take() == []
        assert blocked6.take() == []
        assert len(open4.take()) == n + 1
        d = delta(running.sample(engine), before)
        assert d["udp"].drops == 2 * n
        assert d["tcp"] == ProtoCounters(1, d["tcp"].bytes, 0)
        assert d["total"].drops == 2 * n
        assert hits(engine, "udp-port") == 2 * n

    running.delete_rule(engine, "udp-port")
    before = running.sample(engine)
    netlab.send_frames(lab, [udp4(lab, blocked4.port, b"b4-%d" % i) for i in range(n)])
    netlab.send_frames(lab, [udp6(lab, blocked6.port, b"b6-%d" % i) for i in range(n)])
    netlab.send_frames(lab, [udp4(lab, open4.port, b"sentinel2")])
    open4.wait_for(b"sentinel2")
    assert len(blocked4.take()) == n
    assert len(blocked6.take()) == n
    assert delta(running.sample(engine), before)["total"].drops == 0


def test_rules_see_through_vlan_tags_ip_options_and_ipv6_extension_headers(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    r4, r6 = receivers(lab.host_ip4), receivers(lab.host_ip6)
    port = r4.port
    running.add_rule(engine, FilterRule("udp-port", Action.DROP, dst_port=port, protocol=IPPROTO_UDP))
    v4, v6 = IP(src=lab.ns_ip4, dst=lab.host_ip4), IPv6(src=lab.ns_ip6, dst=lab.host_ip6)
    dropped = [
        netlab.frame(lab, Dot1Q(vlan=7) / v4 / UDP(sport=1, dport=port) / b"vlan"),
        netlab.frame(lab, Dot1AD(vlan=8) / Dot1Q(vlan=9) / v4 / UDP(sport=1, dport=port) / b"qinq"),
        netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4, options=[IPOption_NOP()] * 4) / UDP(dport=port)),
        netlab.frame(lab, v6 / IPv6ExtHdrHopByHop() / IPv6ExtHdrDestOpt() / UDP(sport=1, dport=port) / b"ext"),
        netlab.frame(lab, v6 / IPv6ExtHdrRouting() / UDP(sport=1, dport=port) / b"rt"),
    ]
    # The first fragment carries the UDP header and is dropped by its port; the later ones hide it and are
    # dropped by the rule's other fields (any source and destination, UDP: see test_fragments_veth.py).
    first, *rest = fragment(v4 / UDP(sport=1, dport=port) / (b"f" * 64), fragsize=32)  # type: ignore[no-untyped-call]
    dropped.append(netlab.frame(lab, first))
    dropped += [netlab.frame(lab, f) for f in rest]
    # What the rule does not concern passes: TCP, with its ports or without.
    passed = [
        netlab.frame(lab, v4 / TCP(sport=1, dport=port, flags="S")),
        netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4, proto=IPPROTO_TCP, frag=4) / b"later-tcp"),
    ]
    before = running.sample(engine)
    netlab.send_frames(lab, dropped + passed)
    d = settle(engine, before, len(dropped) + len(passed))
    assert d["udp"] == ProtoCounters(len(dropped), sum(len(f) for f in dropped), len(dropped))
    assert d["tcp"] == ProtoCounters(len(passed), sum(len(f) for f in passed), 0)
    assert d["total"].drops == len(dropped)
    assert hits(engine, "udp-port") == len(dropped)
    assert r4.take() == [] and r6.take() == []


# --------------------------------------------------------------------------- #
# 3. events


def collect_events(eng: Engine, count: int, timeout: float = 3.0) -> list[PacketEvent]:
    """Tick until ``count`` events arrived, then once more briefly to see that no more come."""
    events: list[PacketEvent] = []
    deadline = time.monotonic() + timeout
    while len(events) < count and time.monotonic() < deadline:
        events += eng.tick(50).events
    time.sleep(SETTLE)
    events += eng.tick(0).events
    return events


def test_events_carry_the_packets_fields_for_drop_and_monitor_v4_and_v6(
    lab: netlab.Lab, engine: Engine, receivers: Callable[..., UdpReceiver]
) -> None:
    r4, r6 = receivers(lab.host_ip4), receivers(lab.host_ip6)
    ns4, host4 = ipaddress.IPv4Address(lab.ns_ip4), ipaddress.IPv4Address(lab.host_ip4)
    ns6, host6 = ipaddress.IPv6Address(lab.ns_ip6), ipaddress.IPv6Address(lab.host_ip6)
    with closed_tcp_port(lab.host_ip4) as t4, closed_tcp_port(lab.host_ip6) as t6:
        tport4, tport6 = t4.getsockname()[1], t6.getsockname()[1]
        rules = [
            FilterRule("drop-syn4", Action.DROP, dst_port=tport4, protocol=IPPROTO_TCP),  # MATCH
            FilterRule("drop-ns6-tcp", Action.DROP, src_ip=net(lab.ns_ip6), protocol=IPPROTO_TCP),  # MATCH, v6
            FilterRule("mon-ns4", Action.MONITOR, src_ip=net(lab.ns_ip4)),  # BLOCKLIST, monitor
            FilterRule("mon-ns6", Action.MONITOR, src_ip=net(lab.ns_ip6)),  # SRC6, monitor
        ]
        for rule in rules:
            running.add_rule(engine, rule)
        frames = [
            syn4(lab, tport4, sport=43210),  # drop-syn4 (a drop outranks the monitor match of mon-ns4)
            syn6(lab, tport6, sport=43211),  # drop-ns6-tcp (outranks mon-ns6)
            udp4(lab, r4.port, b"monitored-4", sport=43212),  # mon-ns4: passes
            udp6(lab, r6.port, b"monitored-6", sport=43213),  # mon-ns6: passes
            netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / ICMP(id=1, seq=1)),  # mon-ns4, no ports
            netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / ICMPv6EchoRequest(id=1, seq=1)),  # mon-ns6
        ]
        engine.tick(0)
        t0 = time.time()
        before = running.sample(engine)
        netlab.send_frames(lab, frames)
        events = collect_events(engine, len(frames))
        t1 = time.time()

    want = [
        (4, ns4, host4, 43210, tport4, IPPROTO_TCP, TCP_SYN, len(frames[0]), Verdict.DROP, "drop-syn4"),
        (6, ns6, host6, 43211, tport6, IPPROTO_TCP, TCP_SYN, len(frames[1]), Verdict.DROP, "drop-ns6-tcp"),
        (4, ns4, host4, 43212, r4.port, IPPROTO_UDP, 0, len(frames[2]), Verdict.MONITOR, "mon-ns4"),
        (6, ns6, host6, 43213, r6.port, IPPROTO_UDP, 0, len(frames[3]), Verdict.MONITOR, "mon-ns6"),
        (4, ns4, host4, 0, 0, IPPROTO_ICMP, 0, len(frames[4]), Verdict.MONITOR, "mon-ns4"),
        (6, ns6, host6, 0, 0, IPPROTO_ICMPV6, 0, len(frames[5]), Verdict.MONITOR, "mon-ns6"),
    ]
    got = [
        (e.family, e.src, e.dst, e.src_port, e.dst_port, e.protocol, e.tcp_flags, e.length, e.verdict, e.rule_id)
        for e in events
    ]
    assert got == want  # one CPU's NAPI, in order
    for e in events:
        assert t0 - 1.0 <= e.ts <= t1 + 1.0
    assert [e.ts for e in events] == sorted(e.ts for e in events)

    # The monitored datagrams were delivered; the dropped SYNs were counted as drops.
    r4.wait_for(b"monitored-4")
    r6.wait_for(b"monitored-6")
    after = running.sample(engine)
    d = delta(after, before)
    assert d["tcp"] == ProtoCounters(2, len(frames[0]) + len(frames[1]), 2)
    assert d["total"].drops == 2
    assert after.events_delivered - before.events_delivered == len(frames)
    assert after.events_lost == before.events_lost
    assert {s.rule.id: s.hits for s in running.rule_status(engine)} == {
        "drop-syn4": 1, "drop-ns6-tcp": 1, "mon-ns4": 2, "mon-ns6": 2,
    }  # fmt: skip


def test_a_tick_without_events_drains_them_undecoded(lab: netlab.Lab, engine: Engine) -> None:
    # The headless agent's tick: the ring is emptied (nothing is lost to a full ring), nothing decoded.
    running.add_rule(engine, FilterRule("mon", Action.MONITOR, src_ip=net(lab.ns_ip4)))
    engine.tick(0)
    before = running.sample(engine)
    netlab.send_frames(lab, [udp4(lab, 9, b"undecoded")], count=5)
    time.sleep(SETTLE)
    assert engine.tick(50, events=False).events == ()
    assert engine.tick(0).events == ()  # consumed by the tick before
    after = running.sample(engine)
    assert after.events_delivered - before.events_delivered == 5
    assert after.events_lost == before.events_lost


def test_queued_events_keep_their_rule_when_rules_change_before_the_next_tick(lab: netlab.Lab, engine: Engine) -> None:
    # Events wait in the ring buffer until a tick decodes them, and decoding names the rule by its
    # hit-counter slot.  A rule removed and another added in between must not take over the
    # removed rule's events (the new rule matches none of these packets).
    running.add_rule(engine, FilterRule("first", Action.DROP, src_ip=net(lab.ns_ip4)))
    engine.tick(0)
    netlab.send_frames(lab, [udp4(lab, 9, b"queued")], count=5)
    settle(engine, running.sample(engine), 0)  # a pause: the frames have been through the program
    running.delete_rule(engine, "first")
    running.add_rule(engine, FilterRule("second", Action.MONITOR, src_ip=net(lab.ns_ip6)))
    events = collect_events(engine, 5)
    ns4 = ipaddress.IPv4Address(lab.ns_ip4)
    assert [(e.src, e.verdict, e.rule_id) for e in events] == [(ns4, Verdict.DROP, "first")] * 5
    assert hits(engine, "second") == 0


def test_unmatched_packets_make_no_events(lab: netlab.Lab, engine: Engine) -> None:
    other_host = net(str(ipaddress.IPv4Address(lab.ns_ip4) + 4))
    running.add_rule(engine, FilterRule("other-host", Action.DROP, src_ip=other_host))
    before = running.sample(engine)
    netlab.send_frames(lab, [udp4(lab, 9), udp6(lab, 9)], count=10)
    d = settle(engine, before, 20)
    assert d["total"] == ProtoCounters(20, d["total"].bytes, 0)
    assert collect_events(engine, 0, timeout=0) == []
    assert running.sample(engine).events_delivered == before.events_delivered


# --------------------------------------------------------------------------- #
# 4. floods: lost events are counted, verdicts never depend on event delivery


def drain_events(eng: Engine) -> int:
    """Tick until the ring buffer is empty; how many events came out."""
    n = 0
    while True:
        got = len(eng.tick(50).events)
        if not got:
            return n
        n += got


def test_flood_into_a_tiny_ring_buffer_loses_events_but_drops_every_packet(
    lab: netlab.Lab, engine_with: Callable[[DatapathConfig], Engine]
) -> None:
    eng = engine_with(DatapathConfig(ring_buffer_kib=4, event_rate=0))
    running.add_rule(eng, FilterRule("flood", Action.DROP, src_ip=net(lab.ns_ip4)))
    n = 5000
    f = udp4(lab, 9, b"flood")
    before = running.sample(eng)
    netlab.send_frames(lab, [f], count=n)  # nobody ticks: nobody drains the ring buffer
    d = settle(eng, before, n)
    after = running.sample(eng)
    delivered = after.events_delivered - before.events_delivered
    lost = {k: after.events_lost[k] - before.events_lost[k] for k in ("ringbuf_full", "rate_limited")}
    assert d["udp"] == ProtoCounters(n, n * len(f), n)
    assert d["total"] == ProtoCounters(n, n * len(f), n)
    assert hits(eng, "flood") == n
    assert lost["rate_limited"] == 0
    assert lost["ringbuf_full"] > 0
    assert delivered + lost["ringbuf_full"] == n
    # 4 KiB holds a few dozen records (56 bytes + an 8-byte header each).
    assert 0 < delivered <= 4096 // 64
    # What the counter calls delivered is exactly what user space reads out.
    assert drain_events(eng) == delivered

    # Drained, the ring buffer takes events again.
    before = running.sample(eng)
    netlab.send_frames(lab, [f], count=10)
    events = collect_events(eng, 10)
    assert len(events) == 10 and all(e.verdict is Verdict.DROP and e.rule_id == "flood" for e in events)
    assert running.sample(eng).events_delivered - before.events_delivered == 10


def test_event_rate_limit_loses_events_but_drops_every_packet(
    lab: netlab.Lab, engine_with: Callable[[DatapathConfig], Engine]
) -> None:
    rate = 100
    eng = engine_with(DatapathConfig(event_rate=rate))
    running.add_rule(eng, FilterRule("flood", Action.DROP, src_ip=net(lab.ns_ip4)))
    n = 1000
    f = udp4(lab, 9, b"flood")
    before = running.sample(eng)
    t0 = time.monotonic()
    netlab.send_frames(lab, [f], count=n)
    sent_in = time.monotonic() - t0
    d = settle(eng, before, n)
    after = running.sample(eng)
    delivered = after.events_delivered - before.events_delivered
    lost = {k: after.events_lost[k] - before.events_lost[k] for k in ("ringbuf_full", "rate_limited")}
    assert d["total"] == ProtoCounters(n, n * len(f), n)
    assert hits(eng, "flood") == n
    assert lost["ringbuf_full"] == 0
    assert lost["rate_limited"] > 0
    assert delivered + lost["rate_limited"] == n
    # A bucket per CPU, starting full (one second's worth), refilled at `rate` per second.
    cpus = running.datapath(eng).possible_cpus
    assert rate <= delivered <= cpus * (rate + rate * (sent_in + SETTLE + 1.0))
    assert drain_events(eng) == delivered


# --------------------------------------------------------------------------- #
# 5. real TCP connections


def listener(addr: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, 0))
    s.listen(8)
    s.settimeout(3.0)
    return s


def connect_from_ns(lab: netlab.Lab, addr: str, port: int, timeout: float) -> socket.socket:
    """A TCP connection from inside the namespace (the socket stays there)."""
    with netlab.in_netns(lab.ns):
        c = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    c.settimeout(timeout)
    try:
        c.connect((addr, port))
    except BaseException:
        c.close()
        raise
    return c


def accept(listening: socket.socket) -> socket.socket:
    conn, _ = listening.accept()
    conn.settimeout(3.0)
    return conn


def echo_once(client: socket.socket, server: socket.socket, data: bytes) -> None:
    """client -> server -> client, every byte through the XDP program (client to server)."""
    client.sendall(data)
    got = b""
    while len(got) < len(data):
        chunk = server.recv(65536)
        assert chunk, "server side closed"
        got += chunk
    assert got == data
    server.sendall(data[::-1])
    back = b""
    while len(back) < len(data):
        chunk = client.recv(65536)
        assert chunk, "client side closed"
        back += chunk
    assert back == data[::-1]


def test_tcp_connections_and_a_dst_port_rule(lab: netlab.Lab, engine: Engine) -> None:
    with contextlib.ExitStack() as stack:
        blocked_l = stack.enter_context(listener(lab.host_ip4))
        other_l = stack.enter_context(listener(lab.host_ip4))
        blocked_port, other_port = blocked_l.getsockname()[1], other_l.getsockname()[1]

        # No rule: a connection to either port works both ways.
        c1 = stack.enter_context(connect_from_ns(lab, lab.host_ip4, blocked_port, timeout=3.0))
        s1 = stack.enter_context(accept(blocked_l))
        assert s1.getpeername()[0] == lab.ns_ip4
        echo_once(c1, s1, b"hello over a port that is about to be blocked" * 10)
        # Close both ends now, so no packet of this connection to blocked_port is left to come
        # after the rule is in (the last ACK goes out with the close).
        c1.close()
        assert s1.recv(1) == b""
        s1.close()
        time.sleep(0.05)

        established = stack.enter_context(connect_from_ns(lab, lab.host_ip4, other_port, timeout=3.0))
        served = stack.enter_context(accept(other_l))
        echo_once(established, served, b"before the rule")

        # Drop TCP to blocked_port: a new connection cannot be made...
        running.add_rule(engine, FilterRule("no-tcp-port", Action.DROP, dst_port=blocked_port, protocol=IPPROTO_TCP))
        before = running.sample(engine)
        with pytest.raises(TimeoutError):
            connect_from_ns(lab, lab.host_ip4, blocked_port, timeout=0.7)
        blocked_l.settimeout(0)
        with pytest.raises(BlockingIOError):
            blocked_l.accept()
        d = delta(running.sample(engine), before)
        assert d["tcp"].drops == 1  # the SYN; its first retransmission would come after the 1 s initial RTO
        assert d["total"].drops == d["tcp"].drops
        assert hits(engine, "no-tcp-port") == d["tcp"].drops

        # ...while the established connection to the other port keeps working, nothing of it dropped.
        before = running.sample(engine)
        echo_once(established, served, b"after the rule" * 1000)
        d = delta(running.sample(engine), before)
        assert d["tcp"].packets > 0 and d["total"].drops == 0

        # Removing the rule lets new connections through again.
        running.delete_rule(engine, "no-tcp-port")
        blocked_l.settimeout(3.0)
        c2 = stack.enter_context(connect_from_ns(lab, lab.host_ip4, blocked_port, timeout=3.0))
        s2 = stack.enter_context(accept(blocked_l))
        echo_once(c2, s2, b"unblocked")
