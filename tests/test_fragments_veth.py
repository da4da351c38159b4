"""Fragments over a veth pair (issue 15, fault 9): the real engine on the host side of a netlab
pair, datagrams sent from the namespace, real sockets in the root namespace as the receivers.

Each attack is first shown to work on this kernel with nothing to stop it (the stack reassembles the
fragments and delivers them, or answers), then shown not to reach its socket once a drop rule with
the port is in force, while what the rule does not concern still arrives.

"Everything sent before has been through the program" is known from a sentinel: veth queues the
frames of one sender on one ring drained in order (test_e2e_veth.py says more), so once an
unfragmented datagram sent last has reached its socket, a datagram reassembled from fragments sent
before it would have been delivered before it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import select
import socket
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6
from scapy.layers.l2 import Ether
from support import engine as running
from support import netlab, packets
from support.common import net

from ironpost_tui.engine.engine import Engine
from ironpost_tui.model import FRAGMENTS, Action, FilterRule, ProtoCounters

pytestmark = pytest.mark.root

IPPROTO_TCP, IPPROTO_UDP = 6, 17
BIG = 3000  # bytes of UDP payload: three fragments at the veth's MTU of 1500, two of them later ones
LATER_PER_BIG = 2


@pytest.fixture
def engine(lab: netlab.Lab) -> Iterator[Engine]:
    with running.on_lab(lab) as eng:
        yield eng


class Receiver:
    """A UDP socket bound on the host side; what it received, by payload."""

    def __init__(self, addr: str) -> None:
        self.sock = netlab.udp_receiver(addr)
        self.port: int = self.sock.getsockname()[1]
        self.received: list[bytes] = []

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                self.received.append(self.sock.recv(65535))

    def wait_for(self, payload: bytes, timeout: float = 3.0) -> None:
        deadline = time.monotonic() + timeout
        self.drain()
        while payload not in self.received:
            left = deadline - time.monotonic()
            assert left > 0, f"{payload!r} never reached {self.sock.getsockname()}"
            select.select([self.sock], [], [], left)
            self.drain()

    def take(self) -> list[bytes]:
        self.drain()
        got, self.received = self.received, []
        return got


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.sock.close()


def fragments(eng: Engine) -> ProtoCounters:
    return running.sample(eng).totals[FRAGMENTS]


def minus(a: ProtoCounters, b: ProtoCounters) -> tuple[int, int]:
    """(packets, drops) of a - b."""
    return a.packets - b.packets, a.drops - b.drops


def big(tag: bytes) -> bytes:
    return tag + b"." * (BIG - len(tag))


# --------------------------------------------------------------------------- #
# datagrams the namespace's own stack fragments


@pytest.mark.parametrize("family", [4, 6])
def test_fragmented_udp_to_a_dropped_port_never_reaches_its_socket(
    lab: netlab.Lab, engine: Engine, receivers: list[Receiver], family: int
) -> None:
    host_ip, ns_ip = (lab.host_ip4, lab.ns_ip4) if family == 4 else (lab.host_ip6, lab.ns_ip6)
    blocked, allowed = Receiver(host_ip), Receiver(host_ip)
    receivers += [blocked, allowed]
    with contextlib.closing(netlab.udp_sender(lab, ns_ip)) as tx:

        def send(r: Receiver, payload: bytes) -> None:
            tx.sendto(payload, (host_ip, r.port))

        def sentinel(tag: bytes) -> None:
            send(allowed, tag)
            allowed.wait_for(tag)

        # No rule: both big datagrams arrive, in fragments, none dropped (the lab reassembles).
        before = fragments(engine)
        send(blocked, big(b"open-blocked"))
        send(allowed, big(b"open-allowed"))
        sentinel(b"sentinel-1")
        assert blocked.take() == [big(b"open-blocked")]
        assert allowed.take() == [big(b"open-allowed"), b"sentinel-1"]
        assert minus(fragments(engine), before) == (2 * LATER_PER_BIG, 0)

        # A drop rule with the port, from the namespace's address, UDP.
        rule = FilterRule("udp-port", Action.DROP, src_ip=net(ns_ip), dst_port=blocked.port, protocol=IPPROTO_UDP)
        running.add_rule(engine, rule)
        before = fragments(engine)
        send(blocked, big(b"blocked"))  # the first fragment by its port, the later ones by the other fields
        send(allowed, b"small-allowed")  # positive control: another port, unfragmented
        send(allowed, big(b"big-allowed"))  # README, Fragments: its later fragments are dropped too
        sentinel(b"sentinel-2")
        assert blocked.take() == []
        assert allowed.take() == [b"small-allowed", b"sentinel-2"]
        assert minus(fragments(engine), before) == (2 * LATER_PER_BIG, 2 * LATER_PER_BIG)
        status = {s.rule.id: s.hits for s in running.rule_status(engine)}
        assert status == {"udp-port": 1 + 2 * LATER_PER_BIG}

        # Negative control: the same rule for another source concerns none of these.
        other = ipaddress.ip_address(ns_ip) + (4 if family == 4 else 1)  # outside the lab's /30; never sent to
        assert netlab.allowed_address(other)
        running.update_rule(engine, FilterRule("udp-port", Action.DROP, src_ip=net(str(other)), dst_port=blocked.port,
                                               protocol=IPPROTO_UDP))  # fmt: skip
        before = fragments(engine)
        send(blocked, big(b"other-source-rule"))
        send(allowed, big(b"big-allowed-again"))
        sentinel(b"sentinel-3")
        assert blocked.take() == [big(b"other-source-rule")]
        assert allowed.take() == [big(b"big-allowed-again"), b"sentinel-3"]
        assert minus(fragments(engine), before) == (2 * LATER_PER_BIG, 0)


# --------------------------------------------------------------------------- #
# fragments crafted to hide the ports from the first fragment


class Sniffer:
    """The TCP segments the host sends on the lab's host side (AF_PACKET sees outgoing frames too)."""

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(netlab.ETH_P_ALL))
        self.sock.bind((lab.host_if, netlab.ETH_P_ALL))
        self.sock.setblocking(False)
        self.seen: list[tuple[int, str]] = []  # (source port, flags), every segment read so far

    def _read(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while True:
                frame = Ether(self.sock.recv(65535))
                if frame.src == self.lab.host_mac and frame.haslayer(TCP):
                    self.seen.append((frame[TCP].sport, str(frame[TCP].flags)))

    def tcp_from(self, sport: int, timeout: float) -> list[str]:
        """The flags of the segments sent from ``sport``, waiting up to ``timeout`` for the first."""
        deadline = time.monotonic() + timeout
        while True:
            self._read()
            flags = [f for p, f in self.seen if p == sport]
            left = deadline - time.monotonic()
            if flags or left <= 0:
                return flags
            select.select([self.sock], [], [], left)


@pytest.fixture
def sniffer(lab: netlab.Lab) -> Iterator[Sniffer]:
    s = Sniffer(lab)
    try:
        yield s
    finally:
        s.sock.close()


def closed_tcp_port(addr: str) -> socket.socket:
    """Bound, not listening: a SYN that reaches it is answered with a RST."""
    s = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_STREAM)
    s.bind((addr, 0))
    return s


def test_a_syn_whose_first_fragment_holds_8_bytes_of_tcp_is_dropped_by_a_port_rule(
    lab: netlab.Lab, engine: Engine, sniffer: Sniffer
) -> None:
    ip = IP(src=lab.ns_ip4, dst=lab.host_ip4)
    with closed_tcp_port(lab.host_ip4) as target, closed_tcp_port(lab.host_ip4) as other:
        port, other_port = target.getsockname()[1], other.getsockname()[1]

        def split_syn(ident: int) -> list[bytes]:
            return [netlab.frame(lab, p) for p in packets.syn_split_after_8_bytes(ip, port, ident=ident)]

        # Nothing stops it: the stack reassembles the SYN and answers it.
        netlab.send_frames(lab, split_syn(1))
        assert sniffer.tcp_from(port, timeout=3.0) == ["RA"]
        sniffer.seen.clear()

        running.add_rule(engine, FilterRule("ssh", Action.DROP, src_ip=net(lab.ns_ip4), dst_port=port,
                                            protocol=IPPROTO_TCP))  # fmt: skip
        before = fragments(engine)
        netlab.send_frames(lab, split_syn(2))
        # Positive control and sentinel: a whole SYN to another port is answered.
        netlab.send_frames(lab, [netlab.frame(lab, ip / TCP(sport=40002, dport=other_port, flags="S"))])
        assert sniffer.tcp_from(other_port, timeout=3.0) == ["RA"]
        assert sniffer.tcp_from(port, timeout=0.2) == []
        assert minus(fragments(engine), before) == (2, 2)
        assert {s.rule.id: s.hits for s in running.rule_status(engine)} == {"ssh": 2}


def test_an_ipv6_datagram_whose_first_fragment_ends_inside_its_extension_headers_is_dropped(
    lab: netlab.Lab, engine: Engine, receivers: list[Receiver]
) -> None:
    blocked, allowed = Receiver(lab.host_ip6), Receiver(lab.host_ip6)
    receivers += [blocked, allowed]

    def cut(payload: bytes, ident: int) -> list[bytes]:
        split = packets.udp6_cut_inside_extension_headers(lab.ns_ip6, lab.host_ip6, blocked.port, payload, ident=ident)
        return [netlab.frame(lab, p) for p in split]

    def sentinel(tag: bytes) -> None:
        netlab.send_frames(lab, [netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / packets.l4(
            "udp", allowed.port, v6=True) / tag)])  # fmt: skip
        allowed.wait_for(tag)

    # Nothing stops it: Linux reassembles the datagram and delivers it.
    netlab.send_frames(lab, cut(b"open", 1))
    sentinel(b"sentinel-1")
    assert blocked.take() == [b"open"]

    running.add_rule(engine, FilterRule("udp-port", Action.DROP, src_ip=net(lab.ns_ip6), dst_port=blocked.port,
                                        protocol=IPPROTO_UDP))  # fmt: skip
    before = fragments(engine)
    netlab.send_frames(lab, cut(b"blocked", 2))
    sentinel(b"sentinel-2")
    assert blocked.take() == []
    # The first fragment hides the ports (protocol unknown) and is dropped; the later one says its
    # next header is destination options, no port to hide: it passes and waits for a first fragment
    # that never comes.
    assert minus(fragments(engine), before) == (1, 1)
    assert {s.rule.id: s.hits for s in running.rule_status(engine)} == {"udp-port": 1}
