"""Packets that hide their ports (issue 15, fault 9), through BPF_PROG_TEST_RUN.

A TCP or UDP fragment without its ports (a later fragment, or a tiny first one whose transport header
is cut short) and IPv6 whose extension headers the program does not follow to the upper header are
judged by their addresses and protocol: a drop rule with a ``dst_port`` whose other fields match
drops them; nothing else that needs a port does.  Every case checks the XDP action, every STATS row
(the fragments row included), the rule credited and the events (support/verdicts.py).  FRAG_MATCH,
which the rule table derives from the drop rules with a port, is checked after every kind of edit and
after adopting pinned maps.  test_fragments_veth.py sends the same attacks to real sockets.

Addresses only from 198.18.0.0/15 and 2001:db8::/32; the frames never leave the test-run call.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrDestOpt, IPv6ExtHdrFragment, IPv6ExtHdrHopByHop
from scapy.packet import Packet, Raw
from support import packets
from support.packets import SPORT, eth
from support.verdicts import XDP_DROP, XDP_PASS, Env, check, drop, mon, open_env

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import FilterRule, Verdict
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

PORT, OTHER_PORT = 22, 8080
FRAG_ID = 4242


@dataclass(frozen=True)
class Family:
    """One IP version's addresses and frames: S the rule's source, S_B another, D the destination."""

    name: str
    S: str
    S_B: str
    D: str
    D_B: str
    plen: int

    @property
    def v6(self) -> bool:
        return self.name == "v6"

    def ip(self, src: str | None = None, dst: str | None = None) -> Packet:
        return IPv6(src=src or self.S, dst=dst or self.D) if self.v6 else IP(src=src or self.S, dst=dst or self.D)

    def frag(self, proto: int, offset: int, more: bool, payload: bytes, src: str | None = None) -> bytes:
        """A fragment: ``offset`` in 8-byte units, ``more`` = more fragments follow."""
        if self.v6:
            ip = IPv6(src=src or self.S, dst=self.D)
            return bytes(eth() / ip / IPv6ExtHdrFragment(nh=proto, offset=offset, m=int(more), id=FRAG_ID) / payload)
        ip = IP(src=src or self.S, dst=self.D, proto=proto, id=FRAG_ID, frag=offset, flags="MF" if more else 0)
        return bytes(eth() / ip / Raw(payload))

    def whole(self, l4: Packet, src: str | None = None, dst: str | None = None) -> bytes:
        return bytes(eth() / self.ip(src, dst) / l4)

    def src_rule(self, rid: str, **kw: object) -> FilterRule:
        return drop(rid, src=f"{self.S}/{self.plen}", **kw)


V4 = Family("v4", "198.18.7.1", "198.18.7.2", "198.19.7.1", "198.19.7.2", 32)
V6 = Family("v6", "2001:db8:7::1", "2001:db8:7::2", "2001:db8:8::1", "2001:db8:8::2", 128)
FAMILIES = [pytest.param(V4, id="v4"), pytest.param(V6, id="v6")]


def syn(dport: int = PORT) -> bytes:
    """A TCP SYN header (20 bytes) as it would be split into fragments."""
    return bytes(TCP(sport=SPORT, dport=dport, flags="S", seq=1000))


def tiny_first(f: Family, dport: int = PORT, src: str | None = None) -> bytes:
    """The first fragment of a SYN holding 8 bytes of its TCP header: the ports, not the flags."""
    return f.frag(6, 0, True, syn(dport)[:8], src)


def later(f: Family, proto: int = 6, src: str | None = None) -> bytes:
    """The fragment after the tiny first one: the rest of the TCP header, at offset 8 bytes."""
    return f.frag(proto, 1, False, syn()[8:], src)


def chain_cut_first_fragment(src: str, dst: str, dport: int = PORT, proto: int = 17) -> bytes:
    """An IPv6 first fragment that ends inside its extension headers (support/packets.py)."""
    first, _rest = packets.udp6_cut_inside_extension_headers(src, dst, dport, b"x" * 32, ident=FRAG_ID, proto=proto)
    return bytes(eth() / first)


@pytest.fixture(scope="module")
def env() -> Iterator[Env]:
    with open_env() as e:
        yield e


def frag_entries(env: Env) -> dict[bytes, str | None]:
    """FRAG_MATCH: key -> the rule it credits."""
    out = {}
    for key, raw in env.dp.map_items(MapName.FRAG_MATCH):
        action, _own, _origin, slot, _prio, _own_slot, _own_prio = abi.BLOCKLIST_VALUE.unpack(raw)
        assert action == abi.ACTION_DROP
        rule = env.table.rule_for_slot(slot)
        out[key] = rule.id if rule else None
    return out


# --------------------------------------------------------------------------- #
# what the issue asks: a tiny first fragment and a later one, dropped by a dst_port rule


@pytest.mark.parametrize("f", FAMILIES)
def test_tiny_first_fragment_and_later_fragment_are_dropped_by_a_port_rule_from_their_source(
    env: Env, f: Family
) -> None:
    env.reset([f.src_rule("ssh", dport=PORT, proto=6)])
    for frame in (tiny_first(f), later(f)):
        [event] = check(env, frame, XDP_DROP, "tcp", credited="ssh", hidden=True)
        # Judged without ports, and reported so: no port, no flag.
        assert (event.src, event.dst) == (ipaddress.ip_address(f.S), ipaddress.ip_address(f.D))
        assert (event.protocol, event.src_port, event.dst_port, event.tcp_flags) == (6, 0, 0, 0)
        assert event.verdict is Verdict.DROP
    # Without the rule both pass (and still count as fragments).
    env.reset([])
    for frame in (tiny_first(f), later(f)):
        check(env, frame, XDP_PASS, "tcp", hidden=True)


@pytest.mark.parametrize("f", FAMILIES)
def test_the_rule_without_a_protocol_drops_tcp_and_udp_fragments(env: Env, f: Family) -> None:
    env.reset([f.src_rule("port", dport=PORT)])
    check(env, later(f, proto=6), XDP_DROP, "tcp", credited="port", hidden=True)
    check(env, later(f, proto=17), XDP_DROP, "udp", credited="port", hidden=True)
    # An ICMP fragment has no ports to hide: no port rule concerns it.
    icmp = 58 if f.v6 else 1
    check(env, f.frag(icmp, 1, False, b"\0" * 16), XDP_PASS, "icmp")


# --------------------------------------------------------------------------- #
# negative controls: what the rule's other fields do not match, and packets that show their ports


@dataclass(frozen=True)
class Control:
    frame: bytes
    action: int
    row: str = "tcp"
    hidden: bool = False
    credited: str | None = None


def controls(f: Family) -> list:
    """Frames beside the rule ``ssh`` (drop: f.S, dst_port PORT, TCP)."""
    cases = {
        "later-from-another-source": Control(later(f, src=f.S_B), XDP_PASS, hidden=True),
        "tiny-first-from-another-source": Control(tiny_first(f, src=f.S_B), XDP_PASS, hidden=True),
        "later-udp-other-protocol": Control(later(f, proto=17), XDP_PASS, "udp", hidden=True),
        "whole-to-another-port": Control(f.whole(TCP(sport=SPORT, dport=OTHER_PORT, flags="S")), XDP_PASS),
        "whole-to-the-port": Control(f.whole(TCP(sport=SPORT, dport=PORT, flags="S")), XDP_DROP, credited="ssh"),
        # A first fragment with its whole TCP header is judged by its ports ...
        "complete-first-to-another-port": Control(f.frag(6, 0, True, syn(OTHER_PORT) + b"d" * 12), XDP_PASS),
        "complete-first-to-the-port": Control(f.frag(6, 0, True, syn() + b"d" * 12), XDP_DROP, credited="ssh"),
        # ... a tiny one by its addresses and protocol, whatever port its 8 bytes say.
        "tiny-first-to-another-port": Control(tiny_first(f, OTHER_PORT), XDP_DROP, hidden=True, credited="ssh"),
    }
    return [pytest.param(f, c, id=f"{f.name}-{name}") for name, c in cases.items()]


@pytest.mark.parametrize(("f", "c"), [*controls(V4), *controls(V6)])
def test_the_other_fields_still_decide(env: Env, f: Family, c: Control) -> None:
    env.reset([f.src_rule("ssh", dport=PORT, proto=6)])
    check(env, c.frame, c.action, c.row, credited=c.credited, hidden=c.hidden)


@pytest.mark.parametrize("f", FAMILIES)
def test_a_fragment_to_another_destination_passes(env: Env, f: Family) -> None:
    env.reset([drop("dst", dst=f"{f.D_B}/{f.plen}", dport=PORT, proto=6)])
    check(env, later(f), XDP_PASS, "tcp", hidden=True)
    env.reset([drop("dst", dst=f"{f.D}/{f.plen}", dport=PORT, proto=6)])
    check(env, later(f), XDP_DROP, "tcp", credited="dst", hidden=True)


@pytest.mark.parametrize("f", FAMILIES)
def test_a_later_fragment_of_a_datagram_whose_first_fragment_passed_is_dropped(env: Env, f: Family) -> None:
    """The conservative side (README, Fragments): the first fragment shows another port and passes,
    the next one cannot be told from a fragment of the blocked flow and is dropped."""
    env.reset([f.src_rule("ssh", dport=PORT, proto=6)])
    check(env, f.frag(6, 0, True, syn(OTHER_PORT) + b"d" * 12), XDP_PASS, "tcp")
    check(env, f.frag(6, 4, False, b"d" * 16), XDP_DROP, "tcp", credited="ssh", hidden=True)


# --------------------------------------------------------------------------- #
# monitor rules, the allowlist, ranking


@pytest.mark.parametrize("f", FAMILIES)
def test_monitor_rules_with_a_port_do_not_match_hidden_ports(env: Env, f: Family) -> None:
    watch = mon("watch", src=f"{f.S}/{f.plen}", dport=PORT, proto=6)
    env.reset([watch])
    assert frag_entries(env) == {}
    check(env, later(f), XDP_PASS, "tcp", hidden=True)
    check(env, tiny_first(f), XDP_PASS, "tcp", hidden=True)
    check(env, f.whole(TCP(sport=SPORT, dport=PORT, flags="S")), XDP_PASS, "tcp", credited="watch")
    # A monitor rule without a port matches a fragment by what it shows, as any packet.
    env.reset([mon("watch-src", src=f"{f.S}/{f.plen}", proto=6)])
    check(env, later(f), XDP_PASS, "tcp", credited="watch-src", hidden=True)


@pytest.mark.parametrize("f", FAMILIES)
def test_the_allowlist_protects_a_sources_fragments(env: Env, f: Family) -> None:
    env.reset([f.src_rule("ssh", dport=PORT, proto=6)], allow={f"{f.S}/{f.plen}": 1})
    [event] = check(env, later(f), XDP_PASS, "tcp", credited="ssh", hidden=True)
    assert event.verdict is Verdict.PROTECTED


@pytest.mark.parametrize("f", FAMILIES)
def test_rules_differing_only_in_their_port_share_an_entry_crediting_the_first(env: Env, f: Family) -> None:
    a, b = f.src_rule("a", dport=22, proto=6), f.src_rule("b", dport=23, proto=6)
    env.reset([a, b])
    keys = 2 if f.v6 else 1  # IPv6: the key again with protocol PROTO_UNKNOWN
    assert list(frag_entries(env).values()) == ["a"] * keys
    check(env, later(f), XDP_DROP, "tcp", credited="a", hidden=True)
    env.table.replace_all([b, a])  # b first now
    assert list(frag_entries(env).values()) == ["b"] * keys
    check(env, later(f), XDP_DROP, "tcp", credited="b", hidden=True)
    env.table.delete("b")
    assert list(frag_entries(env).values()) == ["a"] * keys
    check(env, later(f), XDP_DROP, "tcp", credited="a", hidden=True)
    env.table.update(mon("a", src=f"{f.S}/{f.plen}", dport=22, proto=6))  # same match, now a monitor
    assert frag_entries(env) == {}
    check(env, later(f), XDP_PASS, "tcp", hidden=True)
    env.table.update(a)  # and a drop again
    assert list(frag_entries(env).values()) == ["a"] * keys
    check(env, later(f), XDP_DROP, "tcp", credited="a", hidden=True)


def test_an_edit_that_moves_a_rule_moves_its_entry(env: Env) -> None:
    f = V4
    env.reset([f.src_rule("r", dport=PORT, proto=6)])
    [before] = frag_entries(env)
    env.table.update(drop("r", src=f"{f.S_B}/32", dport=PORT, proto=6))
    [after] = frag_entries(env)
    assert before != after
    check(env, later(f), XDP_PASS, "tcp", hidden=True)
    check(env, later(f, src=f.S_B), XDP_DROP, "tcp", credited="r", hidden=True)
    env.table.update(drop("r", src=f"{f.S_B}/32"))  # no port now: BLOCKLIST, no entry
    assert frag_entries(env) == {}
    check(env, later(f, src=f.S_B), XDP_DROP, "tcp", credited="r", hidden=True)
    env.table.delete("r")
    assert frag_entries(env) == {}


# --------------------------------------------------------------------------- #
# IPv6 of unknown protocol


@pytest.mark.parametrize("proto", [pytest.param(17, id="udp-rule"), pytest.param(6, id="tcp-rule"),
                                   pytest.param(None, id="rule-without-protocol")])  # fmt: skip
def test_an_ipv6_first_fragment_cut_inside_its_extension_headers_is_dropped(env: Env, proto: int | None) -> None:
    f = V6
    env.reset([f.src_rule("r", dport=PORT, proto=proto)])
    frame = chain_cut_first_fragment(f.S, f.D, proto=proto or 17)
    [event] = check(env, frame, XDP_DROP, "other", credited="r", hidden=True)
    assert event.protocol == abi.PROTO_UNKNOWN and event.dst_port == 0
    # Negative controls: another source; another port rule's source.
    check(env, chain_cut_first_fragment(f.S_B, f.D), XDP_PASS, "other", hidden=True)
    env.reset([drop("r", src=f"{f.S_B}/128", dport=PORT, proto=proto)])
    check(env, frame, XDP_PASS, "other", hidden=True)


def test_more_extension_headers_than_the_program_follows_hide_the_ports(env: Env) -> None:
    f = V6
    seven = [IPv6ExtHdrHopByHop(), *(IPv6ExtHdrDestOpt() for _ in range(6))]
    frame = bytes(eth() / f.ip() / seven[0] / seven[1] / seven[2] / seven[3] / seven[4] / seven[5] / seven[6]
                  / UDP(sport=SPORT, dport=OTHER_PORT))  # fmt: skip
    env.reset([f.src_rule("r", dport=PORT, proto=17)])
    check(env, frame, XDP_DROP, "other", credited="r", hidden=True)
    six = bytes(eth() / f.ip() / seven[0] / seven[1] / seven[2] / seven[3] / seven[4] / seven[5]
                / UDP(sport=SPORT, dport=OTHER_PORT))  # fmt: skip
    check(env, six, XDP_PASS, "udp")  # six are followed: the port shows, and it is another
    # An IPv4 rule has no unknown-protocol key, and IPv4 is never of unknown protocol.
    env.reset([V4.src_rule("r4", dport=PORT, proto=17)])
    assert len(frag_entries(env)) == 1
    check(env, frame, XDP_PASS, "other", hidden=True)


# --------------------------------------------------------------------------- #
# adopting pinned maps


def test_adopting_pinned_maps_rebuilds_frag_match(pin_dir: Path) -> None:
    """A restart with --persist adopts the rules; FRAG_MATCH then says what they stand for: an entry a
    stop left behind goes, one it did not write yet comes."""
    cfg = DatapathConfig(event_rate=0)
    f = V4
    first = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(first, monotonic_to_wall_offset())
        table.replace_all([f.src_rule("a", dport=PORT, proto=6), f.src_rule("b", dport=PORT, proto=17)])
        [(key_a, value_a), (key_b, _)] = sorted(first.map_items(MapName.FRAG_MATCH), key=lambda kv: kv[0][5])
        assert key_a[5] == 6 and key_b[5] == 17
        first.map_delete(MapName.FRAG_MATCH, key_b)  # not written yet
        stale = key_a[:8] + ipaddress.IPv4Address(f.S_B).packed + key_a[12:]
        first.map_update(MapName.FRAG_MATCH, stale, value_a)  # left by a rule that is gone
    finally:
        first.close()
    second = Datapath(cfg, pin_dir=pin_dir)
    try:
        assert second.reused_maps
        adopted = RuleTable(second, monotonic_to_wall_offset())
        ids = {r.protocol: r.id for r in adopted.adopt_existing()}
        have = dict(second.map_items(MapName.FRAG_MATCH))
        assert sorted(have) == sorted([key_a, key_b])
        assert libbpf.prog_test_run(second.prog_fd, later(f, proto=17)).retval == XDP_DROP
        assert libbpf.prog_test_run(second.prog_fd, later(f, proto=6, src=f.S_B)).retval == XDP_PASS
        for rid in ids.values():
            adopted.delete(rid)
        assert list(second.map_items(MapName.FRAG_MATCH)) == []
    finally:
        second.close()
