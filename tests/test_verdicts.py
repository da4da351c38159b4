"""The verdict matrix: crafted frames through BPF_PROG_TEST_RUN.

One compiled program for the whole module (never attached to an interface).
Every test first puts the rule maps, the allowlist and the event ring into
the state it needs (``Env.reset``), so the order of tests does not matter.
Each case checks the XDP action, the exact STATS deltas of every row
(packets, bytes, drops) and which rule, if any, was credited with the hit.

Addresses only from 198.18.0.0/15 and 2001:db8::/32; the frames never leave
the test-run call.
"""

from __future__ import annotations

import errno
import ipaddress
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import pytest
from scapy.layers.inet import IP, TCP, UDP, IPOption
from scapy.layers.inet6 import (
    ICMPv6EchoRequest,
    IPv6,
    IPv6ExtHdrDestOpt,
    IPv6ExtHdrFragment,
    IPv6ExtHdrHopByHop,
    IPv6ExtHdrRouting,
    PadN,
)
from scapy.layers.ipsec import AH
from scapy.layers.l2 import ARP, Dot1AD, Dot1Q
from scapy.packet import Packet, Raw
from support import packets
from support.packets import SPORT, eth
from support.verdicts import XDP_DROP, XDP_PASS, Env, check, delta, drop, expected_delta, mon, open_env

from ironpost_tui.kernel import abi, hit_reader, libbpf, stats
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.model import FilterRule, Verdict
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import prefilter

pytestmark = pytest.mark.root


# Addresses: S* sources, D* destinations, N* "neutral" (in no rule unless said).
S4, S4_B = "198.18.0.1", "198.18.0.2"
D4 = "198.19.0.1"
N4_SRC, N4_DST = "198.18.99.1", "198.19.99.1"
S6, S6_B = "2001:db8:1::1", "2001:db8:1::2"
D6 = "2001:db8:2::1"
N6_SRC, N6_DST = "2001:db8:99::1", "2001:db8:98::1"
PORT = 8080
OTHER_PORT = 1000


# --------------------------------------------------------------------------- #
# frames


def v4(proto: str = "tcp", src: str = S4, dst: str = D4, dport: int = OTHER_PORT, sport: int = SPORT) -> bytes:
    return packets.frame(src, dst, dport, proto, sport)


def v6(proto: str = "tcp", src: str = S6, dst: str = D6, dport: int = OTHER_PORT, sport: int = SPORT) -> bytes:
    return packets.frame(src, dst, dport, proto, sport)


def v4_proto(proto: int, src: str = S4, dst: str = D4) -> bytes:
    """IPv4 carrying an arbitrary protocol number and a few bytes of payload."""
    return bytes(eth() / IP(src=src, dst=dst, proto=proto) / Raw(b"\0" * 16))


def tcp_bytes(dport: int = PORT) -> bytes:
    """A TCP header whose destination port a rule would match, as raw payload."""
    return bytes(TCP(sport=SPORT, dport=dport, flags="S"))


def udp_bytes(dport: int = PORT) -> bytes:
    return bytes(UDP(sport=SPORT, dport=dport))


def ah(nh: int) -> Packet:
    # 12 fixed bytes + 12 bytes ICV = 24 bytes; payloadlen = 24 / 4 - 2.
    return AH(nh=nh, payloadlen=4, spi=0x100, seq=1, icv=b"\0" * 12)


# --------------------------------------------------------------------------- #
# rules


R_SRC4 = drop("src4", src=f"{S4}/32")
R_SRC6 = drop("src6", src=f"{S6}/128")
R_PORT = drop("port", dport=PORT)
R_ANY4 = drop("any4", src="0.0.0.0/0")  # SRC4 /0: every parsed IPv4 packet
R_ANY6 = drop("any6", src="::/0")  # SRC6 /0: every parsed IPv6 packet
CATCH_ALL = (R_ANY4, R_ANY6, R_PORT, drop("tcp", proto=6), drop("udp", proto=17))


# --------------------------------------------------------------------------- #
# the module's datapath


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with open_env() as e:
        yield e


# --------------------------------------------------------------------------- #
# parsing: every frame kind, its STATS row, and whether ports were found (or hidden: a TCP or UDP
# fragment without them, or IPv6 of unknown protocol, judged by its addresses and protocol and
# counted in the fragments row; test_fragments.py has the rest of that story)


@dataclass(frozen=True)
class Case:
    frame: bytes
    rules: tuple[FilterRule, ...]
    action: int
    row: str
    credited: str | None = None
    hidden: bool = False


def case(
    id: str,
    frame: bytes,
    rules: Iterable[FilterRule],
    action: int,
    row: str,
    credited: str | None = None,
    hidden: bool = False,
):
    return pytest.param(Case(frame, tuple(rules), action, row, credited, hidden), id=id)


PROTO_ROW = {"tcp": "tcp", "udp": "udp", "icmp": "icmp"}

BASIC = [
    *(case(f"v4-{p}/pass-no-rule", v4(p), (), XDP_PASS, PROTO_ROW[p]) for p in PROTO_ROW),
    *(case(f"v4-{p}/drop-src", v4(p), [R_SRC4], XDP_DROP, PROTO_ROW[p], "src4") for p in PROTO_ROW),
    *(case(f"v4-{p}/pass-other-src", v4(p, src=S4_B), [R_SRC4], XDP_PASS, PROTO_ROW[p]) for p in PROTO_ROW),
    *(case(f"v6-{p}/pass-no-rule", v6(p), (), XDP_PASS, PROTO_ROW[p]) for p in PROTO_ROW),
    *(case(f"v6-{p}/drop-src", v6(p), [R_SRC6], XDP_DROP, PROTO_ROW[p], "src6") for p in PROTO_ROW),
    *(case(f"v6-{p}/pass-other-src", v6(p, src=S6_B), [R_SRC6], XDP_PASS, PROTO_ROW[p]) for p in PROTO_ROW),
    case("v4-tcp/drop-port", v4("tcp", dport=PORT), [R_PORT], XDP_DROP, "tcp", "port"),
    case("v4-udp/drop-port", v4("udp", dport=PORT), [R_PORT], XDP_DROP, "udp", "port"),
    case("v6-tcp/drop-port", v6("tcp", dport=PORT), [R_PORT], XDP_DROP, "tcp", "port"),
    case("v6-udp/drop-port", v6("udp", dport=PORT), [R_PORT], XDP_DROP, "udp", "port"),
    case("v4-tcp/pass-sport-is-port", v4("tcp", sport=PORT), [R_PORT], XDP_PASS, "tcp"),
    case("v4-icmp/pass-port-rule", v4("icmp"), [R_PORT], XDP_PASS, "icmp"),
    case("v4-gre/drop-src-counted-other", v4_proto(47), [R_SRC4], XDP_DROP, "other", "src4"),
    case("v4-sctp/pass-port-rule", v4_proto(132), [R_PORT], XDP_PASS, "other"),
    case(
        "v6-nonext-59/drop-src-counted-other",
        bytes(eth() / IPv6(src=S6, dst=D6, nh=59) / Raw(b"\0" * 8)),
        [R_SRC6],
        XDP_DROP,
        "other",
        "src6",
    ),
]


def vlan_frames() -> list:
    ip4 = IP(src=N4_SRC, dst=D4) / TCP(sport=SPORT, dport=PORT, flags="S")
    ip6 = IPv6(src=S6, dst=D6) / TCP(sport=SPORT, dport=OTHER_PORT, flags="S")
    return [
        case("vlan-8021q/drop-port", bytes(eth() / Dot1Q(vlan=10) / ip4), [R_PORT], XDP_DROP, "tcp", "port"),
        case("vlan-8021ad/drop-port", bytes(eth() / Dot1AD(vlan=10) / ip4), [R_PORT], XDP_DROP, "tcp", "port"),
        case(
            "qinq-88a8-8100/drop-port",
            bytes(eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / ip4),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
        ),
        case(
            "qinq-8100-8100/drop-port",
            bytes(eth() / Dot1Q(vlan=10) / Dot1Q(vlan=20) / ip4),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
        ),
        case("vlan-8021q-v6/drop-src", bytes(eth() / Dot1Q(vlan=10) / ip6), [R_SRC6], XDP_DROP, "tcp", "src6"),
        case(
            "qinq-v6-udp/drop-src",
            bytes(eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / IPv6(src=S6, dst=D6) / UDP(dport=OTHER_PORT)),
            [R_SRC6],
            XDP_DROP,
            "udp",
            "src6",
        ),
        case("vlan-8021q/pass-no-rule", bytes(eth() / Dot1Q(vlan=10) / ip4), (), XDP_PASS, "tcp"),
        # A third tag is beyond VLAN_MAX_DEPTH: not parsed as IP at all.
        case(
            "vlan-three-tags/pass-other",
            bytes(eth() / Dot1AD(vlan=10) / Dot1Q(vlan=20) / Dot1Q(vlan=30) / ip4),
            CATCH_ALL,
            XDP_PASS,
            "other",
        ),
        case("vlan-truncated-tag/pass-other", bytes(eth(type=0x8100)) + b"\x00\x0a", CATCH_ALL, XDP_PASS, "other"),
    ]


def ipv4_frames() -> list:
    tcp = TCP(sport=SPORT, dport=PORT, flags="S")
    opts = [IPOption(b"\x94\x04\x00\x00")]  # router alert: ihl=6
    first = IP(src=N4_SRC, dst=D4, flags="MF", frag=0)
    nonfirst = IP(src=S4, dst=D4, frag=185, proto=6)  # offset 1480 bytes
    nonfirst_udp = IP(src=S4, dst=D4, frag=185, proto=17)
    ihl4 = IP(src=S4, dst=D4, ihl=4) / tcp
    ihl15 = IP(src=S4, dst=D4, ihl=15) / tcp  # 60-byte header claimed, 20 present
    return [
        case(
            "v4-options/drop-port",
            bytes(eth() / IP(src=N4_SRC, dst=D4, options=opts) / tcp),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
        ),
        case(
            "v4-options/drop-src",
            bytes(eth() / IP(src=S4, dst=D4, options=opts) / tcp),
            [R_SRC4],
            XDP_DROP,
            "tcp",
            "src4",
        ),
        case("v4-frag-first/drop-port", bytes(eth() / first / tcp), [R_PORT], XDP_DROP, "tcp", "port"),
        case("v4-frag-first-udp/drop-port", bytes(eth() / first / UDP(dport=PORT)), [R_PORT], XDP_DROP, "udp", "port"),
        # A later fragment hides its ports: a drop rule with a port drops it by its other fields.
        case(
            "v4-frag-nonfirst/drop-port",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst-udp/drop-port",
            bytes(eth() / nonfirst_udp / Raw(udp_bytes())),
            [R_PORT],
            XDP_DROP,
            "udp",
            "port",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst/drop-src",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [R_SRC4],
            XDP_DROP,
            "tcp",
            "src4",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst/drop-src-prefix",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [drop("p16", src="198.18.0.0/16")],
            XDP_DROP,
            "tcp",
            "p16",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst/drop-dst-proto",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [drop("dp", dst=f"{D4}/32", proto=6)],
            XDP_DROP,
            "tcp",
            "dp",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst/drop-dst-proto-port",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [drop("dpp", dst=f"{D4}/32", proto=6, dport=PORT)],
            XDP_DROP,
            "tcp",
            "dpp",
            hidden=True,
        ),
        case(
            "v4-frag-nonfirst/pass-other-dst-proto-port",
            bytes(eth() / nonfirst / Raw(tcp_bytes())),
            [drop("dpp", dst=f"{N4_DST}/32", proto=6, dport=PORT)],
            XDP_PASS,
            "tcp",
            hidden=True,
        ),
        case("v4-ihl4/pass-other", bytes(eth() / ihl4), CATCH_ALL, XDP_PASS, "other"),
        case("v4-ihl-beyond-frame/pass-other", bytes(eth() / ihl15), CATCH_ALL, XDP_PASS, "other"),
        case(
            "v4-truncated-header/pass-other",
            bytes(eth(type=0x0800)) + bytes(IP(src=S4, dst=D4) / tcp)[:19],
            CATCH_ALL,
            XDP_PASS,
            "other",
        ),
        case(
            "v4-truncated-tcp/pass-port",
            bytes(eth() / IP(src=S4, dst=D4, proto=6) / Raw(tcp_bytes()[:10])),
            [R_PORT],
            XDP_PASS,
            "tcp",
        ),
        case(
            "v4-truncated-tcp/drop-src",
            bytes(eth() / IP(src=S4, dst=D4, proto=6) / Raw(tcp_bytes()[:10])),
            [R_SRC4],
            XDP_DROP,
            "tcp",
            "src4",
        ),
        case(
            "v4-truncated-udp/pass-port",
            bytes(eth() / IP(src=S4, dst=D4, proto=17) / Raw(udp_bytes()[:6])),
            [R_PORT],
            XDP_PASS,
            "udp",
        ),
        case(
            "v4-truncated-udp/drop-src",
            bytes(eth() / IP(src=S4, dst=D4, proto=17) / Raw(udp_bytes()[:6])),
            [R_SRC4],
            XDP_DROP,
            "udp",
            "src4",
        ),
        case(
            "v4-truncated-udp/drop-proto",
            bytes(eth() / IP(src=S4, dst=D4, proto=17) / Raw(udp_bytes()[:6])),
            [drop("udp", proto=17)],
            XDP_DROP,
            "udp",
            "udp",
        ),
    ]


def ipv6_frames() -> list:
    def six(*ext: Packet, src: str = N6_SRC) -> Packet:
        pkt = eth() / IPv6(src=src, dst=D6)
        for e in ext:
            pkt = pkt / e
        return pkt

    tcp = TCP(sport=SPORT, dport=PORT, flags="S")
    frag_first = IPv6ExtHdrFragment(nh=6, offset=0, m=1, id=7)
    frag_nonfirst = IPv6ExtHdrFragment(nh=6, offset=185, m=0, id=7)
    frag_nonfirst_udp = IPv6ExtHdrFragment(nh=17, offset=185, m=1, id=7)
    out = []
    for name, ext in (
        ("hop-by-hop", IPv6ExtHdrHopByHop()),
        ("routing", IPv6ExtHdrRouting()),
        ("dest-opts", IPv6ExtHdrDestOpt()),
        ("ah", ah(6)),
        ("frag-first", frag_first),
    ):
        out.append(case(f"v6-{name}/drop-port", bytes(six(ext, tcp)), [R_PORT], XDP_DROP, "tcp", "port"))
    out += [
        case(
            "v6-hop-by-hop-udp/drop-port",
            bytes(six(IPv6ExtHdrHopByHop(), UDP(dport=PORT))),
            [R_PORT],
            XDP_DROP,
            "udp",
            "port",
        ),
        case("v6-ah-udp/drop-port", bytes(six(ah(17), UDP(dport=PORT))), [R_PORT], XDP_DROP, "udp", "port"),
        case(
            "v6-long-dest-opts/drop-port",  # hdrlen 2: 24 bytes of options
            bytes(six(IPv6ExtHdrDestOpt(options=[PadN(optdata=b"\0" * 20)]), tcp)),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
        ),
        case(
            "v6-hop-by-hop-icmpv6/drop-src",
            bytes(six(IPv6ExtHdrHopByHop(), ICMPv6EchoRequest(), src=S6)),
            [R_SRC6],
            XDP_DROP,
            "icmp",
            "src6",
        ),
        case(
            "v6-six-ext-headers/drop-port",
            bytes(
                six(
                    IPv6ExtHdrHopByHop(),
                    IPv6ExtHdrDestOpt(),
                    IPv6ExtHdrRouting(),
                    ah(60),
                    IPv6ExtHdrDestOpt(),
                    IPv6ExtHdrFragment(nh=6, offset=0, m=1),
                    tcp,
                )
            ),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
        ),
        # One more than IPV6_EXT_MAX: the upper protocol is never reached, and unknown (counted
        # as other), the ports hidden: a drop rule with a port drops it by its other fields.
        case(
            "v6-seven-ext-headers/drop-port-unknown-protocol",
            bytes(six(IPv6ExtHdrHopByHop(), *(IPv6ExtHdrDestOpt() for _ in range(6)), tcp)),
            [R_PORT],
            XDP_DROP,
            "other",
            "port",
            hidden=True,
        ),
        case(
            "v6-frag-nonfirst/drop-port",
            bytes(six(frag_nonfirst, Raw(tcp_bytes()))),
            [R_PORT],
            XDP_DROP,
            "tcp",
            "port",
            hidden=True,
        ),
        case(
            "v6-frag-nonfirst-udp/drop-port",
            bytes(six(frag_nonfirst_udp, Raw(udp_bytes()))),
            [R_PORT],
            XDP_DROP,
            "udp",
            "port",
            hidden=True,
        ),
        case(
            "v6-frag-nonfirst/drop-src",
            bytes(six(frag_nonfirst, Raw(tcp_bytes()), src=S6)),
            [R_SRC6],
            XDP_DROP,
            "tcp",
            "src6",
            hidden=True,
        ),
        case(
            "v6-frag-nonfirst/drop-proto",
            bytes(six(frag_nonfirst, Raw(tcp_bytes()))),
            [drop("tcp", proto=6)],
            XDP_DROP,
            "tcp",
            "tcp",
            hidden=True,
        ),
        case(
            "v6-truncated-ext/drop-port-unknown-protocol",
            bytes(eth() / IPv6(src=N6_SRC, dst=D6, nh=0)) + b"\x06",
            [R_PORT],
            XDP_DROP,
            "other",
            "port",
            hidden=True,
        ),
        case(
            "v6-truncated-ext/drop-src-other",
            bytes(eth() / IPv6(src=S6, dst=D6, nh=0)) + b"\x06",
            [R_SRC6],
            XDP_DROP,
            "other",
            "src6",
            hidden=True,
        ),
        case(
            "v6-truncated-frag-ext/drop-port-unknown-protocol",
            bytes(eth() / IPv6(src=N6_SRC, dst=D6, nh=44)) + b"\x06\x00\x00\x00",
            [R_PORT],
            XDP_DROP,
            "other",
            "port",
            hidden=True,
        ),
        # No Next Header (59) said by the packet itself: nothing is hidden.
        case(
            "v6-nonext-59/pass-port",
            bytes(eth() / IPv6(src=N6_SRC, dst=D6, nh=59) / Raw(b"\0" * 8)),
            [R_PORT],
            XDP_PASS,
            "other",
        ),
        case(
            "v6-truncated-tcp/pass-port",
            bytes(eth() / IPv6(src=N6_SRC, dst=D6, nh=6) / Raw(tcp_bytes()[:12])),
            [R_PORT],
            XDP_PASS,
            "tcp",
        ),
        case(
            "v6-truncated-udp-after-hbh/drop-src",
            bytes(six(IPv6ExtHdrHopByHop(nh=17), Raw(udp_bytes()[:4]), src=S6)),
            [R_SRC6],
            XDP_DROP,
            "udp",
            "src6",
        ),
        case(
            "v6-truncated-header/pass-other",
            bytes(eth(type=0x86DD)) + bytes(IPv6(src=S6, dst=D6) / tcp)[:39],
            CATCH_ALL,
            XDP_PASS,
            "other",
        ),
    ]
    return out


NON_IP = [
    case("arp/pass-other", bytes(eth(dst="ff:ff:ff:ff:ff:ff") / ARP(psrc=S4, pdst=D4)), CATCH_ALL, XDP_PASS, "other"),
    case("lldp-ethertype/pass-other", bytes(eth(type=0x88CC)) + b"\0" * 46, CATCH_ALL, XDP_PASS, "other"),
    case("ethernet-only-ipv4-type/pass-other", bytes(eth(type=0x0800)), CATCH_ALL, XDP_PASS, "other"),
    case("ethernet-only-ipv6-type/pass-other", bytes(eth(type=0x86DD)), CATCH_ALL, XDP_PASS, "other"),
    case("all-zero-frame/pass-other", bytes(60), CATCH_ALL, XDP_PASS, "other"),
]


@pytest.mark.parametrize("c", [*BASIC, *vlan_frames(), *ipv4_frames(), *ipv6_frames(), *NON_IP])
def test_parse_matrix(env: Env, c: Case) -> None:
    env.reset(c.rules)
    check(env, c.frame, c.action, c.row, c.credited, hidden=c.hidden)


@pytest.mark.parametrize("length", [0, 1, 6, 12, 13])
def test_frame_shorter_than_ethernet_is_refused_by_test_run(env: Env, length: int) -> None:
    """BPF_PROG_TEST_RUN itself refuses XDP input shorter than ETH_HLEN, so the
    program never sees a truncated Ethernet header here (a 14-byte frame is the
    shortest it can be given: see ethernet-only-* in the parse matrix)."""
    env.reset(CATCH_ALL)
    before = env.totals()
    with pytest.raises(libbpf.BpfCallError) as info:
        env.run(bytes(eth(type=0x0800))[:length])
    assert info.value.errno == errno.EINVAL
    assert env.totals() == before


# --------------------------------------------------------------------------- #
# every rule shape, alone: where it is placed, what it matches, what it does not


@dataclass(frozen=True)
class Shape:
    rule: FilterRule
    map_name: str
    hits: tuple[tuple[str, bytes, str], ...]  # (id, frame, row): dropped, credited
    misses: tuple[tuple[str, bytes, str], ...]  # (id, frame, row): passed


SHAPES = {
    "exact-v4-src": Shape(
        drop("exact-v4-src", src="198.18.0.1/32"),
        "BLOCKLIST",
        (("tcp", v4("tcp", src="198.18.0.1"), "tcp"), ("udp", v4("udp", src="198.18.0.1"), "udp")),
        (
            ("next-address", v4("tcp", src="198.18.0.2"), "tcp"),
            ("as-dst", v4("tcp", src=N4_SRC, dst="198.18.0.1"), "tcp"),
        ),
    ),
    "v4-src-prefix": Shape(
        drop("v4-src-prefix", src="198.18.16.0/20"),
        "SRC4",
        (("first", v4("tcp", src="198.18.16.0"), "tcp"), ("last", v4("udp", src="198.18.31.255"), "udp")),
        (("below", v4("tcp", src="198.18.15.255"), "tcp"), ("above", v4("tcp", src="198.18.32.0"), "tcp")),
    ),
    "v6-exact-src": Shape(
        drop("v6-exact-src", src="2001:db8:0:1::1/128"),
        "SRC6",
        (("tcp", v6("tcp", src="2001:db8:0:1::1"), "tcp"), ("udp", v6("udp", src="2001:db8:0:1::1"), "udp")),
        (("next-address", v6("tcp", src="2001:db8:0:1::2"), "tcp"),),
    ),
    "v6-src-prefix": Shape(
        drop("v6-src-prefix", src="2001:db8:0:2::/64"),
        "SRC6",
        (("tcp", v6("tcp", src="2001:db8:0:2:ffff::1"), "tcp"),),
        (("next-prefix", v6("tcp", src="2001:db8:0:3::1"), "tcp"),),
    ),
    "dst-ip-v4": Shape(
        drop("dst-ip-v4", dst="198.19.32.1/32"),
        "MATCH",
        (
            ("tcp", v4("tcp", src=N4_SRC, dst="198.19.32.1"), "tcp"),
            ("udp", v4("udp", src=N4_SRC, dst="198.19.32.1"), "udp"),
        ),
        (
            ("next-address", v4("tcp", src=N4_SRC, dst="198.19.32.2"), "tcp"),
            ("as-src", v4("tcp", src="198.19.32.1", dst=N4_DST), "tcp"),
        ),
    ),
    "dst-ip-v6-prefix": Shape(
        drop("dst-ip-v6-prefix", dst="2001:db8:0:3::/64"),
        "MATCH",
        (("tcp", v6("tcp", src=N6_SRC, dst="2001:db8:0:3::5"), "tcp"),),
        (("next-prefix", v6("tcp", src=N6_SRC, dst="2001:db8:0:4::5"), "tcp"),),
    ),
    "dst-port": Shape(
        drop("dst-port", dport=PORT),
        "MATCH",
        (
            ("v4-tcp", v4("tcp", src=N4_SRC, dst=N4_DST, dport=PORT), "tcp"),
            ("v4-udp", v4("udp", src=N4_SRC, dst=N4_DST, dport=PORT), "udp"),
            ("v6-tcp", v6("tcp", src=N6_SRC, dst=N6_DST, dport=PORT), "tcp"),
            ("v6-udp", v6("udp", src=N6_SRC, dst=N6_DST, dport=PORT), "udp"),
        ),
        (
            ("other-port", v4("tcp", src=N4_SRC, dst=N4_DST, dport=PORT + 1), "tcp"),
            ("as-sport", v4("udp", src=N4_SRC, dst=N4_DST, sport=PORT), "udp"),
            ("icmp", v4("icmp", src=N4_SRC, dst=N4_DST), "icmp"),
        ),
    ),
    "protocol": Shape(
        drop("protocol", proto=1),
        "MATCH",
        (("icmp", v4("icmp", src=N4_SRC, dst=N4_DST), "icmp"),),
        (
            ("icmpv6", v6("icmp", src=N6_SRC, dst=N6_DST), "icmp"),
            ("tcp", v4("tcp", src=N4_SRC, dst=N4_DST), "tcp"),
        ),
    ),
    "protocol-other": Shape(
        drop("protocol-other", proto=132),
        "MATCH",
        (("sctp-v4", v4_proto(132, src=N4_SRC, dst=N4_DST), "other"),),
        (("gre", v4_proto(47, src=N4_SRC, dst=N4_DST), "other"),),
    ),
    "src-dst-port": Shape(
        drop("src-dst-port", src="198.18.48.0/24", dport=22),
        "MATCH",
        (
            ("tcp", v4("tcp", src="198.18.48.9", dport=22), "tcp"),
            ("udp", v4("udp", src="198.18.48.9", dport=22), "udp"),
        ),
        (
            ("other-src", v4("tcp", src="198.18.49.9", dport=22), "tcp"),
            ("other-port", v4("tcp", src="198.18.48.9", dport=23), "tcp"),
        ),
    ),
    "dst-proto-port": Shape(
        drop("dst-proto-port", dst="198.19.64.1/32", proto=6, dport=443),
        "MATCH",
        (("tcp", v4("tcp", src=N4_SRC, dst="198.19.64.1", dport=443), "tcp"),),
        (
            ("udp", v4("udp", src=N4_SRC, dst="198.19.64.1", dport=443), "udp"),
            ("other-port", v4("tcp", src=N4_SRC, dst="198.19.64.1", dport=80), "tcp"),
            ("other-dst", v4("tcp", src=N4_SRC, dst="198.19.64.2", dport=443), "tcp"),
        ),
    ),
    "src-dst-prefix": Shape(
        drop("src-dst-prefix", src="198.18.80.0/22", dst="198.19.80.0/24"),
        "MATCH",
        (
            ("tcp", v4("tcp", src="198.18.83.1", dst="198.19.80.200"), "tcp"),
            ("udp", v4("udp", src="198.18.80.1", dst="198.19.80.1"), "udp"),
        ),
        (
            ("src-outside", v4("tcp", src="198.18.84.1", dst="198.19.80.200"), "tcp"),
            ("dst-outside", v4("tcp", src="198.18.83.1", dst="198.19.81.1"), "tcp"),
            ("swapped", v4("tcp", src="198.19.80.200", dst="198.18.83.1"), "tcp"),
        ),
    ),
    "v6-multi": Shape(
        drop("v6-multi", src="2001:db8:0:5::/64", dst="2001:db8:0:6::/64", proto=17, dport=53),
        "MATCH",
        (("udp", v6("udp", src="2001:db8:0:5::9", dst="2001:db8:0:6::9", dport=53), "udp"),),
        (
            ("tcp", v6("tcp", src="2001:db8:0:5::9", dst="2001:db8:0:6::9", dport=53), "tcp"),
            ("other-port", v6("udp", src="2001:db8:0:5::9", dst="2001:db8:0:6::9", dport=54), "udp"),
            ("src-outside", v6("udp", src="2001:db8:0:7::9", dst="2001:db8:0:6::9", dport=53), "udp"),
            ("dst-outside", v6("udp", src="2001:db8:0:5::9", dst="2001:db8:0:7::9", dport=53), "udp"),
        ),
    ),
}

SHAPE_HITS = [pytest.param(s, f, r, id=f"{s}/{h}") for s, sh in SHAPES.items() for h, f, r in sh.hits]
SHAPE_MISSES = [pytest.param(s, f, r, id=f"{s}/{m}") for s, sh in SHAPES.items() for m, f, r in sh.misses]
# Packets no shape matches (v4 ICMP is left out: the "protocol" shape takes all of it).
NEUTRAL = [
    pytest.param(v4("tcp", src=N4_SRC, dst=N4_DST), "tcp", id="v4-tcp"),
    pytest.param(v4("udp", src=N4_SRC, dst=N4_DST), "udp", id="v4-udp"),
    pytest.param(v4_proto(47, src=N4_SRC, dst=N4_DST), "other", id="v4-gre"),
    *(pytest.param(v6(p, src=N6_SRC, dst=N6_DST), PROTO_ROW[p], id=f"v6-{p}") for p in PROTO_ROW),
]


@pytest.mark.parametrize("shape", SHAPES)
def test_shape_placement(env: Env, shape: str) -> None:
    env.reset([SHAPES[shape].rule])
    [status] = env.table.status()
    assert status.map_name == SHAPES[shape].map_name
    [(key, value)] = list(env.dp.map_items(status.map_name))
    placement = kernel_rules.place(SHAPES[shape].rule)
    if placement.shape is None:
        assert key == placement.key  # BLOCKLIST: the address in network order; SRC4/6: LPM key
    else:
        assert key[4:] == placement.key[4:]
    assert abi.BLOCKLIST_VALUE.unpack(value)[0] == abi.ACTION_DROP


@pytest.mark.parametrize(("shape", "frame", "row"), SHAPE_HITS)
def test_shape_drops_what_it_matches(env: Env, shape: str, frame: bytes, row: str) -> None:
    env.reset([SHAPES[shape].rule])
    check(env, frame, XDP_DROP, row, credited=shape)


@pytest.mark.parametrize(("shape", "frame", "row"), SHAPE_MISSES)
def test_shape_passes_what_it_does_not_match(env: Env, shape: str, frame: bytes, row: str) -> None:
    env.reset([SHAPES[shape].rule])
    check(env, frame, XDP_PASS, row)


@pytest.mark.parametrize(("shape", "frame", "row"), SHAPE_HITS)
def test_every_shape_installed_each_drops_its_own(env: Env, shape: str, frame: bytes, row: str) -> None:
    env.reset([s.rule for s in SHAPES.values()])
    check(env, frame, XDP_DROP, row, credited=shape)


@pytest.mark.parametrize(("frame", "row"), NEUTRAL)
def test_every_shape_installed_unmatched_packet_passes(env: Env, frame: bytes, row: str) -> None:
    env.reset([s.rule for s in SHAPES.values()])
    # Every shape slot is in use (SHAPES_MAX is 8 by default).
    n_shapes = len({kernel_rules.place(s.rule).shape for s in SHAPES.values()} - {None})
    assert n_shapes == env.dp.cfg.shapes_max
    assert env.dp.read_config()[0] == n_shapes
    check(env, frame, XDP_PASS, row)


# --------------------------------------------------------------------------- #
# monitor rules, precedence between rules


MONITORS = [
    pytest.param(mon("m", src=f"{S4}/32"), v4("tcp"), "tcp", id="exact-v4"),
    pytest.param(mon("m", src="198.18.0.0/24"), v4("udp"), "udp", id="v4-prefix"),
    pytest.param(mon("m", src=f"{S6}/128"), v6("tcp"), "tcp", id="v6-exact"),
    pytest.param(mon("m", src="2001:db8:1::/48"), v6("icmp"), "icmp", id="v6-prefix"),
    pytest.param(mon("m", dport=PORT), v4("tcp", dport=PORT), "tcp", id="dst-port"),
    pytest.param(mon("m", dst=f"{D6}/128", proto=17, dport=PORT), v6("udp", dport=PORT), "udp", id="v6-multi"),
]


@pytest.mark.parametrize(("r", "frame", "row"), MONITORS)
def test_monitor_rule_passes_and_counts_no_drop(env: Env, r: FilterRule, frame: bytes, row: str) -> None:
    env.reset([r])
    check(env, frame, XDP_PASS, row, credited="m")
    [event] = env.wait_events(1)
    assert event.verdict is Verdict.MONITOR and event.rule_id == "m"


PRECEDENCE = [
    # (rules in sync order, frame, expected action, credited)
    pytest.param(
        [mon("mon", src=f"{S4}/32"), drop("drop", dport=PORT)],
        v4(dport=PORT),
        XDP_DROP,
        "drop",
        id="drop-beats-earlier-monitor",
    ),
    pytest.param(
        [drop("drop", dport=PORT), mon("mon", src=f"{S4}/32")],
        v4(dport=PORT),
        XDP_DROP,
        "drop",
        id="drop-beats-later-monitor",
    ),
    pytest.param(
        [mon("mon", src="198.18.0.0/16"), drop("drop", dst=f"{D4}/32")],
        v4(),
        XDP_DROP,
        "drop",
        id="match-drop-beats-lpm-monitor",
    ),
    pytest.param(
        [mon("mon", dst=f"{D6}/128"), drop("drop", src="2001:db8:1::/64")],
        v6(),
        XDP_DROP,
        "drop",
        id="v6-lpm-drop-beats-match-monitor",
    ),
    pytest.param(
        [drop("first", dport=PORT), drop("second", src=f"{S4}/32")],
        v4(dport=PORT),
        XDP_DROP,
        "first",
        id="earlier-drop-match-vs-blocklist",
    ),
    pytest.param(
        [drop("first", src=f"{S4}/32"), drop("second", dport=PORT)],
        v4(dport=PORT),
        XDP_DROP,
        "first",
        id="earlier-drop-blocklist-vs-match",
    ),
    pytest.param(
        [drop("first", src="198.18.0.0/24"), drop("second", src=f"{S4}/32")],
        v4(),
        XDP_DROP,
        "first",
        id="earlier-drop-src4-vs-blocklist",
    ),
    pytest.param(
        [drop("first", src=f"{S4}/32"), drop("second", src="198.18.0.0/24")],
        v4(),
        XDP_DROP,
        "first",
        id="earlier-drop-blocklist-vs-src4",
    ),
    pytest.param(
        [drop("first", proto=6), drop("second", dst=f"{D4}/32", dport=PORT), drop("third", dport=PORT)],
        v4(dport=PORT),
        XDP_DROP,
        "first",
        id="earlier-drop-across-three-shapes",
    ),
    pytest.param(
        [drop("first", dst=f"{D4}/32", dport=PORT), drop("second", proto=6)],
        v4(dport=PORT),
        XDP_DROP,
        "first",
        id="earlier-drop-across-shapes-reversed",
    ),
    pytest.param(
        [mon("first", src="198.18.0.0/24"), mon("second", dport=PORT)],
        v4(dport=PORT),
        XDP_PASS,
        "first",
        id="earlier-monitor-credited",
    ),
    pytest.param(
        [mon("first", dport=PORT), mon("second", src="198.18.0.0/24")],
        v4(dport=PORT),
        XDP_PASS,
        "first",
        id="earlier-monitor-credited-reversed",
    ),
    pytest.param(
        [
            mon("first", src=f"{S6}/128"),
            drop("second", src="2001:db8::/32", dst=f"{D6}/128"),
            drop("third", dport=PORT),
        ],
        v6(dport=PORT),
        XDP_DROP,
        "second",
        id="v6-first-drop-after-a-monitor",
    ),
]


@pytest.mark.parametrize(("rules", "frame", "action", "credited"), PRECEDENCE)
def test_precedence(env: Env, rules: list[FilterRule], frame: bytes, action: int, credited: str) -> None:
    env.reset(rules)
    check(env, frame, action, "tcp", credited)


# --------------------------------------------------------------------------- #
# overlapping prefixes: BLOCKLIST next to SRC4, and longest-prefix inside SRC4

NET16_DROP = drop("net16-drop", src="198.18.0.0/16")
NET24_MON = mon("net24-mon", src="198.18.7.0/24")
HOST_DROP = drop("host32-drop", src="198.18.7.7/32")
HOST_MON = mon("host32-mon", src="198.18.7.7/32")

OVERLAP = [
    # /16 drop, /24 monitor, /32 exact drop
    pytest.param([HOST_DROP, NET24_MON, NET16_DROP], "198.18.7.7", XDP_DROP, "host32-drop", id="exact-first/in-32"),
    pytest.param([NET16_DROP, NET24_MON, HOST_DROP], "198.18.8.8", XDP_DROP, "net16-drop", id="16-24-32/only-in-16"),
    pytest.param([NET16_DROP, NET24_MON, HOST_DROP], "198.19.7.7", XDP_PASS, None, id="16-24-32/outside"),
    # /32 exact monitor next to a /16 drop: BLOCKLIST and SRC4 are both consulted
    pytest.param([HOST_MON, NET16_DROP], "198.18.7.7", XDP_DROP, "net16-drop", id="exact-monitor-vs-16-drop"),
    pytest.param([NET16_DROP, HOST_MON], "198.18.7.7", XDP_DROP, "net16-drop", id="16-drop-vs-exact-monitor"),
    # exact BLOCKLIST drop and an LPM drop both drop; the earlier one is credited
    pytest.param([NET16_DROP, HOST_DROP], "198.18.7.7", XDP_DROP, "net16-drop", id="16-drop-then-exact-drop"),
    pytest.param([HOST_DROP, NET16_DROP], "198.18.7.7", XDP_DROP, "host32-drop", id="exact-drop-then-16-drop"),
    # longest prefix inside SRC4: /16 monitor and /24 drop
    pytest.param(
        [mon("net16-mon", src="198.18.0.0/16"), drop("net24-drop", src="198.18.7.0/24")],
        "198.18.7.8",
        XDP_DROP,
        "net24-drop",
        id="16-mon-24-drop/in-24",
    ),
    pytest.param(
        [mon("net16-mon", src="198.18.0.0/16"), drop("net24-drop", src="198.18.7.0/24")],
        "198.18.8.8",
        XDP_PASS,
        "net16-mon",
        id="16-mon-24-drop/only-in-16",
    ),
    pytest.param(
        [drop("net24-drop", src="198.18.7.0/24"), mon("net16-mon", src="198.18.0.0/16")],
        "198.18.7.8",
        XDP_DROP,
        "net24-drop",
        id="24-drop-16-mon/in-24",
    ),
    # v6 longest prefix inside SRC6
    pytest.param(
        [mon("net48-mon", src="2001:db8:1::/48"), drop("net64-drop", src="2001:db8:1:2::/64")],
        "2001:db8:1:2::1",
        XDP_DROP,
        "net64-drop",
        id="v6-48-mon-64-drop/in-64",
    ),
    pytest.param(
        [mon("net48-mon", src="2001:db8:1::/48"), drop("net64-drop", src="2001:db8:1:2::/64")],
        "2001:db8:1:3::1",
        XDP_PASS,
        "net48-mon",
        id="v6-48-mon-64-drop/only-in-48",
    ),
]

OVERLAP_SEMANTICS = [
    # By 'drop beats monitor' the /16 drop should win for an address in the /24 monitor.
    pytest.param(
        [NET16_DROP, NET24_MON, HOST_DROP],
        "198.18.7.8",
        XDP_DROP,
        "net16-drop",
        id="16-drop-hidden-by-24-monitor",
    ),
    # By 'the earlier rule is credited' the /16 drop should be credited, not the /32.
    pytest.param(
        [NET16_DROP, NET24_MON, HOST_DROP],
        "198.18.7.7",
        XDP_DROP,
        "net16-drop",
        id="16-drop-credit-hidden-by-24-monitor",
    ),
    pytest.param(
        [NET16_DROP, drop("net24-drop", src="198.18.7.0/24")],
        "198.18.7.8",
        XDP_DROP,
        "net16-drop",
        id="earlier-16-drop-credit-hidden-by-24-drop",
    ),
    pytest.param(
        [drop("net48-drop", src="2001:db8:1::/48"), mon("net64-mon", src="2001:db8:1:2::/64")],
        "2001:db8:1:2::1",
        XDP_DROP,
        "net48-drop",
        id="v6-48-drop-hidden-by-64-monitor",
    ),
]


def _frame_from(src: str) -> bytes:
    return v6("tcp", src=src, dst=N6_DST) if ":" in src else v4("tcp", src=src, dst=N4_DST)


@pytest.mark.parametrize(("rules", "src", "action", "credited"), OVERLAP)
def test_cidr_overlap(env: Env, rules: list[FilterRule], src: str, action: int, credited: str | None) -> None:
    env.reset(rules)
    check(env, _frame_from(src), action, "tcp", credited)


@pytest.mark.parametrize(("rules", "src", "action", "credited"), OVERLAP_SEMANTICS)
def test_cidr_overlap_drop_beats_monitor_across_nested_prefixes(
    env: Env, rules: list[FilterRule], src: str, action: int, credited: str | None
) -> None:
    env.reset(rules)
    check(env, _frame_from(src), action, "tcp", credited)


# --------------------------------------------------------------------------- #
# the allowlist


HAND_SLOT_OFFSET = 1  # slot rule_slots - 1: the table hands out slots from 0


def _hand_blocklist(env: Env, addr: str) -> int:
    """Write a BLOCKLIST drop entry directly, as an operator tool might; returns its slot."""
    slot = env.dp.cfg.rule_slots - HAND_SLOT_OFFSET
    env.dp.percpu_clear("RULE_HITS", slot)
    key = ipaddress.IPv4Address(addr).packed
    # The ABI asks a tool writing BLOCKLIST to set its address's ADDR_FILTER bit first.
    bucket = prefilter.filter_bucket(key.ljust(16, b"\0"), abi.FAMILY_V4)
    word_key = (bucket >> 1).to_bytes(4, "little")
    word = int.from_bytes(env.dp.map_lookup("ADDR_FILTER", word_key) or bytes(8), "little")
    word |= abi.FILTER_EXACT << ((bucket & 1) * 32)
    env.dp.map_update("ADDR_FILTER", word_key, word.to_bytes(8, "little"))
    env.dp.map_update("BLOCKLIST", key, abi.BLOCKLIST_VALUE.pack(abi.ACTION_DROP, abi.ACTION_DROP, 0, slot, 0, slot, 0))
    return slot


def _slot_hits(env: Env, slot: int) -> int:
    return sum(abi.RULE_HIT.unpack(raw)[0] for raw in env.dp.percpu_entries("RULE_HITS", slot))


PROTECT_V4 = [pytest.param(f"{S4}/32", id="protect-exact"), pytest.param("198.18.0.0/24", id="protect-prefix")]
DROPS_V4 = [
    pytest.param([drop("r", src=f"{S4}/32")], id="blocklist-rule"),
    pytest.param([drop("r", src="198.18.0.0/16")], id="cidr-rule"),
    pytest.param([drop("r", src="198.18.0.0/16", dport=PORT)], id="multi-field-src-port"),
    pytest.param([drop("r", dst=f"{D4}/32", proto=6, dport=PORT)], id="multi-field-dst-proto-port"),
    pytest.param([drop("r", dport=PORT)], id="dst-port-rule"),
]


@pytest.mark.parametrize("allow", PROTECT_V4)
def test_allowlist_beats_hand_written_blocklist_entry(env: Env, allow: str) -> None:
    env.reset([], allow={allow: 7})
    slot = _hand_blocklist(env, S4)
    try:
        frame = v4(dport=PORT)
        before = env.totals()
        assert env.run(frame) == XDP_PASS
        assert delta(before, env.totals()) == expected_delta("tcp", len(frame), dropped=False)
        assert _slot_hits(env, slot) == 1
        [event] = env.wait_events(1)
        assert event.verdict is Verdict.PROTECTED and event.rule_id is None and event.src == ipaddress.ip_address(S4)
        # Without the allowlist the same entry drops.
        env.table.set_allowlist({})
        check(env, frame, XDP_DROP, "tcp", matched=True)
        assert _slot_hits(env, slot) == 2
    finally:
        env.dp.map_delete("BLOCKLIST", ipaddress.IPv4Address(S4).packed)


@pytest.mark.parametrize("rules", DROPS_V4)
@pytest.mark.parametrize("allow", PROTECT_V4)
def test_allowlist_beats_drop_rules(env: Env, allow: str, rules: list[FilterRule]) -> None:
    env.reset(rules, allow={allow: 1})
    check(env, v4(dport=PORT), XDP_PASS, "tcp", credited="r")
    [event] = env.wait_events(1)
    assert event.verdict is Verdict.PROTECTED and event.rule_id == "r"


@pytest.mark.parametrize("rules", DROPS_V4)
@pytest.mark.parametrize(
    "allow", [pytest.param(f"{S4_B}/32", id="other-exact"), pytest.param("198.18.1.0/24", id="other-prefix")]
)
def test_allowlist_of_other_sources_does_not_protect(env: Env, allow: str, rules: list[FilterRule]) -> None:
    env.reset(rules, allow={allow: 1})
    check(env, v4(dport=PORT), XDP_DROP, "tcp", credited="r")


@pytest.mark.parametrize(
    "rules",
    [
        pytest.param([drop("r", src=f"{S6}/128")], id="v6-exact-rule"),
        pytest.param([drop("r", src="2001:db8:1::/48")], id="v6-prefix-rule"),
        pytest.param([drop("r", src="2001:db8:1::/64", dst=f"{D6}/128", proto=6, dport=PORT)], id="v6-multi-field"),
    ],
)
@pytest.mark.parametrize(
    "allow", [pytest.param(f"{S6}/128", id="protect-exact"), pytest.param("2001:db8:1::/64", id="protect-prefix")]
)
def test_allowlist_beats_v6_drop_rules(env: Env, allow: str, rules: list[FilterRule]) -> None:
    env.reset(rules, allow={allow: 1})
    check(env, v6(dport=PORT), XDP_PASS, "tcp", credited="r")
    [event] = env.wait_events(1)
    assert event.verdict is Verdict.PROTECTED


def test_v4_allowlist_does_not_protect_v6_and_back(env: Env) -> None:
    env.reset([R_SRC4, R_SRC6], allow={"::/0": 1})
    check(env, v4(), XDP_DROP, "tcp", credited="src4")
    env.reset([R_SRC4, R_SRC6], allow={"0.0.0.0/0": 1})
    check(env, v6(), XDP_DROP, "tcp", credited="src6")


def test_allowlist_leaves_monitor_verdicts_alone(env: Env) -> None:
    env.reset([mon("m", src=f"{S4}/32")], allow={f"{S4}/32": 1})
    check(env, v4(), XDP_PASS, "tcp", credited="m")
    [event] = env.wait_events(1)
    assert event.verdict is Verdict.MONITOR


def test_allowlisted_source_with_no_rule_is_a_plain_pass(env: Env) -> None:
    env.reset([], allow={f"{S4}/32": 1})
    check(env, v4(), XDP_PASS, "tcp")
    assert env.wait_events(0) == []


# --------------------------------------------------------------------------- #
# per-rule hit counters


@pytest.mark.parametrize("n", [1, 5])
def test_hit_counters(env: Env, n: int) -> None:
    rules = [drop("a", src=f"{S4}/32"), drop("b", dport=PORT), mon("c", src="2001:db8:1::/48")]
    env.reset(rules)
    t0 = time.time()
    check(env, v4(), XDP_DROP, "tcp", credited="a", n=n)
    t1 = time.time()
    status = {s.rule.id: s for s in env.table.status()}
    assert status["a"].hits == n
    assert status["a"].last_hit is not None and t0 - 0.5 <= status["a"].last_hit <= t1 + 0.5
    for other in ("b", "c"):
        assert status[other].hits == 0 and status[other].last_hit is None
    check(env, v6(), XDP_PASS, "tcp", credited="c", n=2)
    assert {s.rule.id: s.hits for s in env.table.status()} == {"a": n, "b": 0, "c": 2}


def test_hit_counters_only_changed_statuses_are_new(env: Env) -> None:
    """status() reads RULE_HITS whole but builds a RuleStatus again only for the slots whose counters
    changed (kernel/hit_reader.py): the rest are the last call's very objects, and an idle read gives
    them all back.  300 rules span five blocks of slots compared at once; the hit one is in the last."""
    rules = [drop(f"r{i}", src=f"198.19.{i // 200}.{i % 200 + 1}/32") for i in range(300)]
    env.reset(rules)
    first = env.table.status()
    again = env.table.status()
    assert [s.rule.id for s in first] == [r.id for r in rules]
    assert all(a is b for a, b in zip(first, again, strict=True))  # nothing sent: the same objects
    hit = 287
    check(env, v4("udp", src=f"198.19.1.{hit % 200 + 1}"), XDP_DROP, "udp", credited=f"r{hit}", n=3)
    after = env.table.status()
    changed = [s.rule.id for s, b in zip(after, again, strict=True) if s is not b]
    assert changed == [f"r{hit}"]
    assert after[hit].hits == 3 and after[hit].last_hit is not None
    # What a full read sums, slot by slot, is what the statuses say.
    summed = env.table.datapath.percpu_hits()
    assert [s.hits for s in after] == [summed[s.slot][0] for s in after if s.slot is not None]
    # The hit rule deleted and added again: its slot's counters are cleared, and its status says so
    # (not the last one kept); the others are still the same objects.
    env.table.delete(f"r{hit}")
    env.table.add(rules[hit])
    readded = {s.rule.id: s for s in env.table.status()}
    assert readded[f"r{hit}"].hits == 0 and readded[f"r{hit}"].last_hit is None
    assert all(readded[s.rule.id] is s for s in after if s.rule.id != f"r{hit}")


def test_every_rule_match_counts_one_event_delivered_or_lost(env: Env) -> None:
    """EVENT_STATS' total grows by one for each packet a rule matches, whether its event was delivered, found
    the ring full, or was rate-limited (the next test), and not for a packet no rule matched: what lets the hit
    reader skip reading RULE_HITS while the total stands (kernel/hit_reader.py)."""
    env.reset([drop("a", src=f"{S4}/32")])
    before, lost_before = env.dp.rule_matches(), stats.read_event_counts(env.dp)[1]
    n = 20_000  # more events than the ring holds: most are lost with ringbuf_full
    assert env.run(v4(), repeat=n) == XDP_DROP
    assert env.dp.rule_matches() - before == n == env.hits()["a"]
    lost = stats.read_event_counts(env.dp)[1]
    assert lost["ringbuf_full"] - lost_before["ringbuf_full"] > 0
    env.drain()
    matched = env.dp.rule_matches()
    assert env.run(v4(src=S4_B), repeat=50) == XDP_PASS  # no rule: nothing counted
    assert env.dp.rule_matches() == matched


def test_a_rate_limited_match_counts_one_event_lost() -> None:
    with open_env(DatapathConfig(event_rate=1)) as limited:
        limited.reset([mon("m", src=f"{S4}/32")])
        before, lost_before = limited.dp.rule_matches(), stats.read_event_counts(limited.dp)[1]
        assert limited.run(v4(), repeat=500) == XDP_PASS
        lost = stats.read_event_counts(limited.dp)[1]
        assert lost["rate_limited"] - lost_before["rate_limited"] >= 498
        assert limited.dp.rule_matches() - before == 500 == limited.hits()["m"]


def test_a_hits_read_is_skipped_until_a_rule_matches(env: Env, monkeypatch: pytest.MonkeyPatch) -> None:
    """status() reads RULE_HITS only when EVENT_STATS' total moved since its last read: an idle second
    costs three small lookups, not a batch read of every slot; a match, or a slot user space cleared, reads."""
    rules = [drop(f"k{i}", src=f"198.19.7.{i + 1}/32") for i in range(3)]
    env.reset(rules)
    reads: list[int] = []
    real = env.dp.percpu_hits_raw

    def counted(slots: int) -> tuple[bytes, int]:
        reads.append(slots)
        return real(slots)

    monkeypatch.setattr(env.dp, "percpu_hits_raw", counted)
    first = env.table.status()
    assert len(reads) == 1
    again = env.table.status()
    assert len(reads) == 1 and all(a is b for a, b in zip(first, again, strict=True))
    assert env.run(v4(src=S4_B), repeat=5) == XDP_PASS  # traffic no rule matches: still no read
    env.table.status()
    assert len(reads) == 1
    assert env.run(v4("udp", src="198.19.7.2"), repeat=4) == XDP_DROP  # a match: read, and the slot's hits
    after = {s.rule.id: s.hits for s in env.table.status()}
    assert len(reads) == 2 and after == {"k0": 0, "k1": 4, "k2": 0}
    env.table.status()
    assert len(reads) == 2
    monkeypatch.setattr(hit_reader, "FULL_EVERY", 0.0)  # the longest a read is skipped, passed: read
    env.table.status()
    assert len(reads) == 3


def test_a_slot_cleared_for_a_new_rule_is_read_again() -> None:
    """A freed slot is taken again once no other is free, its counters cleared by user space (no packet, so
    EVENT_STATS' total stands): the next status() reads RULE_HITS all the same, and says 0 hits, not the old
    rule's.  Seven slots, so that the free list runs out."""
    with open_env(DatapathConfig(blocklist_max_entries=4, cidr_max_entries=1, match_max_entries=1)) as small:
        rules = [drop(f"k{i}", src=f"198.19.7.{i + 1}/32") for i in range(3)]
        small.reset(rules)
        for n in range(4):  # the other four slots, held as a decision set holds one
            small.table.reserve_slot(drop(f"held{n}", src=f"198.19.8.{n + 1}/32"))
        assert small.run(v4("udp", src="198.19.7.2"), repeat=4) == XDP_DROP
        before = {s.rule.id: (s.hits, s.slot) for s in small.table.status()}
        assert {rid: hits for rid, (hits, _slot) in before.items()} == {"k0": 0, "k1": 4, "k2": 0}
        small.table.delete("k1")
        small.table.add(drop("k1-new", src="198.19.7.9/32"))  # the one slot free: k1's
        after = {s.rule.id: (s.hits, s.slot) for s in small.table.status()}
        assert after["k1-new"] == (0, before["k1"][1])


def test_rules_order_and_counts_follow_a_reorder(env: Env) -> None:
    """The table's sorted view (rules(), status(), count()) is kept while the rules are the same objects;
    a reorder changes only priorities, in place, and the view follows it all the same."""
    rules = [drop(f"o{i}", src=f"198.19.2.{i + 1}/32") for i in range(5)] + [drop("o-net", src="198.19.3.0/24")]
    env.reset(rules)
    assert [r.id for r in env.table.rules()] == [r.id for r in rules]
    assert env.table.count(MapName.BLOCKLIST) == 5 and env.table.count(MapName.SRC4) == 1
    backwards = list(reversed(rules))
    env.table.replace_all(backwards)
    assert [r.id for r in env.table.rules()] == [r.id for r in backwards]
    assert [s.rule.id for s in env.table.status()] == [r.id for r in backwards]
    env.table.delete("o-net")
    assert env.table.count(MapName.SRC4) == 0 and len(env.table.rules()) == 5


def test_hit_counters_with_test_run_repeat(env: Env) -> None:
    env.reset([drop("a", dport=PORT)])
    frame = v4("udp", dport=PORT)
    before = env.totals()
    assert env.run(frame, repeat=25) == XDP_DROP
    assert delta(before, env.totals()) == expected_delta("udp", len(frame), True, n=25)
    assert env.hits() == {"a": 25}


def test_reinstalled_rule_starts_from_zero_hits(env: Env) -> None:
    env.reset([drop("a", src=f"{S4}/32")])
    check(env, v4(), XDP_DROP, "tcp", credited="a", n=3)
    env.reset([drop("b", src=f"{S4}/32")])
    assert env.hits() == {"b": 0}
    check(env, v4(), XDP_DROP, "tcp", credited="b")


# --------------------------------------------------------------------------- #
# events


def test_event_for_dropped_v4_tcp_syn(env: Env) -> None:
    env.reset([drop("v4-block", src=f"{S4}/32")])
    frame = bytes(eth() / IP(src=S4, dst=D4) / TCP(sport=SPORT, dport=PORT, flags="S"))
    delivered_before, lost_before = stats.read_event_counts(env.dp)
    t0 = time.time()
    assert env.run(frame) == XDP_DROP
    t1 = time.time()
    [e] = env.wait_events(1)
    assert (e.family, e.src, e.dst) == (4, ipaddress.ip_address(S4), ipaddress.ip_address(D4))
    assert (e.src_port, e.dst_port, e.protocol, e.tcp_flags) == (SPORT, PORT, 6, 0x02)
    assert e.length == len(frame)
    assert e.verdict is Verdict.DROP and e.rule_id == "v4-block"
    assert t0 - 0.5 <= e.ts <= t1 + 0.5
    delivered, lost = stats.read_event_counts(env.dp)
    assert delivered - delivered_before == 1 and lost == lost_before


def test_event_for_dropped_v6_tcp_syn(env: Env) -> None:
    env.reset([drop("v6-block", src="2001:db8:1::/64")])
    frame = bytes(eth() / IPv6(src=S6, dst=D6) / TCP(sport=SPORT, dport=PORT, flags="S"))
    assert env.run(frame) == XDP_DROP
    [e] = env.wait_events(1)
    assert (e.family, e.src, e.dst) == (6, ipaddress.ip_address(S6), ipaddress.ip_address(D6))
    assert (e.src_port, e.dst_port, e.protocol, e.tcp_flags) == (SPORT, PORT, 6, 0x02)
    assert e.length == len(frame)
    assert e.verdict is Verdict.DROP and e.rule_id == "v6-block"


def test_event_for_protected_source(env: Env) -> None:
    env.reset([drop("v4-block", dport=PORT)], allow={"198.18.0.0/24": 3})
    frame = bytes(eth() / IP(src=S4, dst=D4) / TCP(sport=SPORT, dport=PORT, flags="SA"))
    assert env.run(frame) == XDP_PASS
    [e] = env.wait_events(1)
    assert e.verdict is Verdict.PROTECTED and e.rule_id == "v4-block"
    assert (e.src, e.dst_port, e.tcp_flags) == (ipaddress.ip_address(S4), PORT, 0x12)


def test_event_for_udp_and_fragment_has_no_tcp_flags_or_ports(env: Env) -> None:
    env.reset([drop("src", src=f"{S4}/32")])
    udp = v4("udp", dport=PORT)
    frag = bytes(eth() / IP(src=S4, dst=D4, frag=185, proto=6) / Raw(tcp_bytes()))
    assert env.run(udp) == XDP_DROP
    assert env.run(frag) == XDP_DROP
    e_udp, e_frag = env.wait_events(2)
    assert (e_udp.protocol, e_udp.src_port, e_udp.dst_port, e_udp.tcp_flags) == (17, SPORT, PORT, 0)
    assert (e_frag.protocol, e_frag.src_port, e_frag.dst_port, e_frag.tcp_flags) == (6, 0, 0, 0)
    assert e_frag.length == len(frag)


def test_no_event_for_unmatched_packets(env: Env) -> None:
    env.reset([drop("src", src=f"{S4}/32")])
    for frame in (v4(src=S4_B), v6(), bytes(eth() / ARP(psrc=S4, pdst=D4))):
        assert env.run(frame) == XDP_PASS
    assert env.wait_events(0) == []


def test_one_event_per_matched_packet(env: Env) -> None:
    env.reset([drop("d", src=f"{S4}/32"), mon("m", src=f"{S6}/128")])
    for _ in range(10):
        env.run(v4())
        env.run(v6())
    events = env.wait_events(20)
    assert len(events) == 20
    assert sorted(e.verdict.value for e in events) == ["drop"] * 10 + ["monitor"] * 10


def test_sync_reorder_changes_precedence(env: Env) -> None:
    first, second = drop("a", src=f"{S4}/32"), drop("b", dport=PORT)
    env.reset([first, second])
    env.table.replace_all([second, first])
    check(env, v4(dport=PORT), XDP_DROP, "tcp", credited="b")


def test_every_map_lookup_is_inlined_or_direct(env: Env) -> None:
    """No lookup goes through the generic bpf_map_lookup_elem() helper: the verifier inlines a lookup (or
    calls the map's own function directly) only where the call's map is known.  clang once merged
    MATCH's and FRAG_MATCH's lookups into one call on a map chosen at run time (rule_match.h
    match_shapes()): an indirect call, ~10 ns more per multi-field rule looked up."""
    import re

    from support import bpftool

    fdinfo = open(f"/proc/self/fdinfo/{env.dp.prog_fd}").read()
    prog_id = re.search(r"^prog_id:\s*(\d+)", fdinfo, re.M)
    assert prog_id is not None, fdinfo
    xlated = bpftool.run("prog", "dump", "xlated", "id", prog_id.group(1))
    assert "call __htab_map_lookup_elem" in xlated  # the dump names the calls, as expected
    assert "call bpf_map_lookup_elem" not in xlated
