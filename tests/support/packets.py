"""Ethernet frames for ``BPF_PROG_TEST_RUN`` (no network: the frames go to the program, not a wire),
and IP packets split the way attackers split them (to wrap in ``eth()`` or ``netlab.frame``).

Both MACs are given: scapy would otherwise resolve the destination, sending ARP or
NDP from this host (conftest refuses that).  Frames for a lab's veth pair, with
the lab's MACs, come from ``netlab.frame``.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import HBHOptUnknown, ICMPv6EchoRequest, IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, PadN
from scapy.layers.l2 import Ether
from scapy.packet import Packet, Raw

MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}
SPORT = 40000


def eth(**kw: object) -> Ether:
    """``Ether`` with the fixed MACs; ``kw`` overrides (``type=0x8100``)."""
    return Ether(**{**MAC, **kw})


def l4(proto: str, dport: int, sport: int = SPORT, v6: bool = False) -> Packet:
    """A TCP SYN, a UDP header, or (any other ``proto``) an ICMP or ICMPv6 echo request."""
    if proto == "tcp":
        return TCP(sport=sport, dport=dport, flags="S")
    if proto == "udp":
        return UDP(sport=sport, dport=dport)
    return ICMPv6EchoRequest() if v6 else ICMP()


def frame(src: str, dst: str, dport: int = 80, proto: str = "tcp", sport: int = SPORT) -> bytes:
    """eth / IPv4 or IPv6 (by ``src``) / ``l4(proto, dport, sport)``, as bytes."""
    v6 = ":" in src
    ip = IPv6(src=src, dst=dst) if v6 else IP(src=src, dst=dst)
    return bytes(eth() / ip / l4(proto, dport, sport, v6))


def syn_split_after_8_bytes(ip: Packet, dport: int, sport: int = SPORT, ident: int = 1) -> list[Packet]:
    """A TCP SYN in two fragments, the first holding 8 bytes of its TCP header (the ports, not the
    flags: RFC 1858's tiny fragment).  ``ip`` is an ``IP`` or ``IPv6`` with the addresses."""
    tcp = bytes(ip / TCP(sport=sport, dport=dport, flags="S", seq=1000))[len(bytes(ip)) :]
    if isinstance(ip, IPv6):
        return [
            ip.copy() / IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=ident) / Raw(tcp[:8]),
            ip.copy() / IPv6ExtHdrFragment(nh=6, offset=1, m=0, id=ident) / Raw(tcp[8:]),
        ]
    head = ip.copy()
    head.proto, head.id, head.flags, head.frag = 6, ident, "MF", 0
    tail = ip.copy()
    tail.proto, tail.id, tail.flags, tail.frag = 6, ident, 0, 1
    return [head / Raw(tcp[:8]), tail / Raw(tcp[8:])]


def udp6_cut_inside_extension_headers(
    src: str, dst: str, dport: int, payload: bytes, sport: int = SPORT, ident: int = 1, proto: int = 17
) -> list[IPv6]:
    """A UDP (or, ``proto`` 6, TCP SYN) datagram in two IPv6 fragments, the first ending inside a 512-byte
    destination-options header whose next header (another destination-options header, then the
    transport header) starts beyond it.  Linux 6.1 accepts such a first fragment (it checks that the
    upper header is whole only when it can walk the chain to it) and delivers the reassembled datagram;
    the XDP program cannot reach the ports."""
    upper = UDP(sport=sport, dport=dport) if proto == 17 else TCP(sport=sport, dport=dport, flags="S")
    # Two options of an unknown type whose top bits say "skip" (0x1e), 254 bytes each, and 2 of padding.
    big = [HBHOptUnknown(otype=0x1E, optdata=b"a" * 252), HBHOptUnknown(otype=0x1E, optdata=b"b" * 252), PadN()]
    chain = IPv6ExtHdrDestOpt(nh=60, options=big) / IPv6ExtHdrDestOpt(nh=proto, options=[PadN(optdata=b"\0" * 4)])
    part = bytes(IPv6(src=src, dst=dst) / chain / upper / payload)[40:]
    cut = 256  # a multiple of 8, inside the first destination-options header
    return [
        IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(nh=60, offset=0, m=1, id=ident) / Raw(part[:cut]),
        IPv6(src=src, dst=dst) / IPv6ExtHdrFragment(nh=60, offset=cut // 8, m=0, id=ident) / Raw(part[cut:]),
    ]
