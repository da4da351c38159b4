"""The frames ``prog`` times, each with what it must meet in ironpost (its verdict, and whether a rule
counts it) and the numbers a peer needs to say its own verdict.  Addresses come from the rule set
(bench/ruleset.py) and the loaded program (which sources sit in ``EXACT4``); every one is in
198.18.0.0/15 or 2001:db8::/32, and the frames are only ever test-run, never sent.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from .ruleset import RuleSet

XDP_DROP, XDP_PASS = 1, 2
Proto = Literal["tcp", "udp", "icmp", "icmpv6"]
Addr = ipaddress.IPv4Address | ipaddress.IPv6Address
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}

# A /24 no rule concerns (bench/ruleset.py leaves 198.19.128.0/19 but its shapes' /24s free) and its peer.
QUIET_SRC4 = ipaddress.IPv4Address("198.19.130.1")
QUIET_DST4 = ipaddress.IPv4Address("198.19.131.1")
SRC6 = ipaddress.IPv6Address("2001:db8:1::1")
DST6 = ipaddress.IPv6Address("2001:db8:2::1")
RULE_DST4 = ipaddress.IPv4Address("198.19.200.5")  # a destination of a TCP/80 multi-field rule (shape 0)
ROTATING_NETS = [ipaddress.ip_network(f"198.19.{n}.0/24") for n in range(132, 160)]  # no rule in these


@dataclass(frozen=True)
class Frame:
    label: str
    data: bytes
    verdict: int  # ironpost's XDP action
    hit: bool  # a rule of ironpost's counts this packet
    src: Addr
    proto: Proto
    dport: int | None
    why: str  # what it meets in ironpost


def build(src: Addr, dst: Addr, proto: Proto, dport: int | None = None, vlan: int | None = None) -> bytes:
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
    from scapy.layers.l2 import Dot1Q, Ether

    pkt = Ether(src=MAC["src"], dst=MAC["dst"])
    if vlan is not None:
        pkt = pkt / Dot1Q(vlan=vlan)
    l3 = IP(src=str(src), dst=str(dst)) if src.version == 4 else IPv6(src=str(src), dst=str(dst))
    if proto == "tcp":
        l4 = TCP(sport=40000, dport=dport, flags="S")
    elif proto == "udp":
        l4 = UDP(sport=40000, dport=dport)
    elif proto == "icmp":
        l4 = ICMP()
    else:
        l4 = ICMPv6EchoRequest()
    return bytes(pkt / l3 / l4)


def _middle(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Addr:
    return net.network_address + net.num_addresses // 2


def frames(rs: RuleSet, in_exact4: ipaddress.IPv4Address, overflowed: ipaddress.IPv4Address | None) -> list[Frame]:
    """The issue's five, the prefix-blocked, the overflowed, the near misses (a rotating stream is apart)."""
    exact = set(rs.exact)
    for a in (QUIET_SRC4, QUIET_DST4, SRC6, DST6, RULE_DST4):
        if a in exact or rs.blocked_by_prefix(a):
            raise AssertionError(f"{a} is covered by the bench's rule set: the frames need another address")
    p4 = next((n for n in rs.prefix4 if n.prefixlen == 28), rs.prefix4[0])
    p6 = next((n for n in rs.prefix6 if n.prefixlen == 48), rs.prefix6[0])
    net24 = ipaddress.ip_network(f"{in_exact4}/24", strict=False)
    near = next(a for a in net24.hosts() if a not in exact and a != in_exact4)
    out = [
        Frame("ipv4 tcp syn (allowed)", build(QUIET_SRC4, QUIET_DST4, "tcp", 8080), XDP_PASS, False,
              QUIET_SRC4, "tcp", 8080, "a source and port no rule concerns"),
        Frame("ipv4 udp (blocked, exact)", build(in_exact4, QUIET_DST4, "udp", 53), XDP_DROP, True,
              in_exact4, "udp", 53, f"{in_exact4}: an exact source found in its EXACT4 bucket"),
        Frame("icmp echo", build(QUIET_SRC4, QUIET_DST4, "icmp"), XDP_PASS, False, QUIET_SRC4, "icmp", None,
              "no rule concerns it"),
        Frame("ipv6 tcp syn", build(SRC6, DST6, "tcp", 8080), XDP_PASS, False, SRC6, "tcp", 8080,
              "no rule concerns it"),
        Frame("vlan ipv4 udp", build(QUIET_SRC4, QUIET_DST4, "udp", 8080, vlan=10), XDP_PASS, False,
              QUIET_SRC4, "udp", 8080, "802.1Q tag, no rule concerns it"),
        Frame("ipv4 udp (blocked by a prefix)", build(_middle(p4), QUIET_DST4, "udp", 53), XDP_DROP, True,
              _middle(p4), "udp", 53, f"inside {p4} (SRC4)"),
        Frame("ipv6 udp (blocked by a prefix)", build(_middle(p6), DST6, "udp", 53), XDP_DROP, True,
              _middle(p6), "udp", 53, f"inside {p6} (SRC6)"),
        Frame("near miss: ipv4 syn from a /24 with exact rules", build(near, QUIET_DST4, "tcp", 8080), XDP_PASS,
              False, near, "tcp", 8080, f"{near}: no rule, but {net24} holds exact sources (EXACT4 bucket read)"),
        Frame("near miss: ipv4 syn to port 80", build(QUIET_SRC4, QUIET_DST4, "tcp", 80), XDP_PASS, False,
              QUIET_SRC4, "tcp", 80, "port 80 is a multi-field rule's (to other destinations): shapes looked up"),
        Frame("near miss: ipv4 udp to port 22", build(QUIET_SRC4, QUIET_DST4, "udp", 22), XDP_PASS, False,
              QUIET_SRC4, "udp", 22, "port 22 is multi-field rules' (from other sources): shapes looked up"),
        Frame("near miss: icmp to a rule's address", build(QUIET_SRC4, RULE_DST4, "icmp"), XDP_PASS, False,
              QUIET_SRC4, "icmp", None, f"{RULE_DST4} is a TCP/80 rule's destination: shapes looked up"),
        Frame("ipv4 udp to a monitor rule's port", build(QUIET_SRC4, QUIET_DST4, "udp", 20000), XDP_PASS, True,
              QUIET_SRC4, "udp", 20000, "a monitor rule (dst_port 20000) matches: counted, an event, passed"),
        Frame("ipv4 udp to a drop rule's port (multi-field)", build(QUIET_SRC4, QUIET_DST4, "udp", 20001),
              XDP_DROP, True, QUIET_SRC4, "udp", 20001,
              "a multi-field drop rule (dst_port 20001) matches: the allowlist consulted, counted, an event, dropped"),
    ]  # fmt: skip
    if overflowed is not None:
        out.insert(2, Frame("ipv4 udp (blocked, exact, overflowed EXACT4 bucket)",
                            build(overflowed, QUIET_DST4, "udp", 53), XDP_DROP, True, overflowed, "udp", 53,
                            f"{overflowed}: its EXACT4 bucket is full, so BLOCKLIST is looked up"))  # fmt: skip
    return out


def rotating(count: int) -> list[Frame]:
    """``count`` SYNs from distinct sources no rule concerns: each one new to the detector sketches."""
    srcs = [a for net in ROTATING_NETS for a in net.hosts()]
    if count > len(srcs):
        raise ValueError(f"at most {len(srcs)} rotating sources")
    step = len(srcs) // count
    return [Frame("rotating-source syn", build(s, QUIET_DST4, "tcp", 8080), XDP_PASS, False, s, "tcp", 8080,
                  "a new source each packet: sketch replacement") for s in srcs[::step][:count]]  # fmt: skip
