"""Ethernet frames for ``BPF_PROG_TEST_RUN`` (no network: the frames go to the program, not a wire).

Both MACs are given: scapy would otherwise resolve the destination, sending ARP or
NDP from this host (conftest refuses that).  Frames for a lab's veth pair, with
the lab's MACs, come from ``netlab.frame``.
"""

from __future__ import annotations

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import ICMPv6EchoRequest, IPv6
from scapy.layers.l2 import Ether
from scapy.packet import Packet

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
