"""kernel_rules: where each rule shape goes, under which key, and back again."""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st
from support.common import net

from ironpost_tui.errors import RuleRefused
from ironpost_tui.kernel import abi
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules.placement import Placement, Shape, place, prefix_mask, rule_from_entry

F_SRC, F_DST, F_PORT, F_PROTO = abi.FIELD_SRC, abi.FIELD_DST, abi.FIELD_DPORT, abi.FIELD_PROTO
V4, V6, ANY = abi.FAMILY_V4, abi.FAMILY_V6, abi.FAMILY_ANY
Z16 = bytes(16)


def rule(rid: str = "r", action: Action = Action.DROP, src=None, dst=None, dport=None, proto=None) -> FilterRule:
    return FilterRule(
        rid,
        action,
        src_ip=net(src) if src else None,
        dst_ip=net(dst) if dst else None,
        dst_port=dport,
        protocol=proto,
    )


def a16(addr: str) -> bytes:
    return ipaddress.ip_address(addr).packed.ljust(16, b"\0")


def mkey(family: int, proto: int, port: int, src: bytes = Z16, dst: bytes = Z16) -> bytes:
    return abi.MATCH_KEY.pack(0, family, proto, port.to_bytes(2, "big"), src, dst)


# (id, rule, map, key, shape)
SHAPES = [
    ("exact-v4-src", rule(src="198.18.0.1/32"), "BLOCKLIST", bytes([198, 18, 0, 1]), None),
    ("v4-src-prefix", rule(src="198.18.16.0/20"), "SRC4", abi.LPM_V4_KEY.pack(20, bytes([198, 18, 16, 0])), None),
    ("v4-src-any", rule(src="0.0.0.0/0"), "SRC4", abi.LPM_V4_KEY.pack(0, bytes(4)), None),
    ("v6-exact-src", rule(src="2001:db8::1/128"), "SRC6", abi.LPM_V6_KEY.pack(128, a16("2001:db8::1")), None),
    ("v6-src-prefix", rule(src="2001:db8:1::/48"), "SRC6", abi.LPM_V6_KEY.pack(48, a16("2001:db8:1::")), None),
    ("dst-ip-v4", rule(dst="198.19.0.1/32"), "MATCH", mkey(V4, 0, 0, dst=a16("198.19.0.1")), Shape(F_DST, V4, 0, 32)),
    (
        "dst-ip-v6",
        rule(dst="2001:db8:2::/64"),
        "MATCH",
        mkey(V6, 0, 0, dst=a16("2001:db8:2::")),
        Shape(F_DST, V6, 0, 64),
    ),
    ("dst-port", rule(dport=8080), "MATCH", mkey(ANY, 0, 8080), Shape(F_PORT, ANY, 0, 0)),
    ("protocol", rule(proto=1), "MATCH", mkey(ANY, 1, 0), Shape(F_PROTO, ANY, 0, 0)),
    ("protocol-0", rule(proto=0), "MATCH", mkey(ANY, 0, 0), Shape(F_PROTO, ANY, 0, 0)),
    (
        "src-dst-port",
        rule(src="198.18.48.0/24", dport=22),
        "MATCH",
        mkey(V4, 0, 22, src=a16("198.18.48.0")),
        Shape(F_SRC | F_PORT, V4, 24, 0),
    ),
    (
        "exact-src-dst-port",
        rule(src="198.18.0.1/32", dport=22),
        "MATCH",
        mkey(V4, 0, 22, src=a16("198.18.0.1")),
        Shape(F_SRC | F_PORT, V4, 32, 0),
    ),
    (
        "dst-proto-port",
        rule(dst="198.19.64.1/32", proto=6, dport=443),
        "MATCH",
        mkey(V4, 6, 443, dst=a16("198.19.64.1")),
        Shape(F_DST | F_PROTO | F_PORT, V4, 0, 32),
    ),
    (
        "src-dst-prefix",
        rule(src="198.18.80.0/22", dst="198.19.0.0/16"),
        "MATCH",
        mkey(V4, 0, 0, src=a16("198.18.80.0"), dst=a16("198.19.0.0")),
        Shape(F_SRC | F_DST, V4, 22, 16),
    ),
    (
        "v6-multi",
        rule(src="2001:db8:5::/64", dst="2001:db8:6::1/128", proto=17, dport=53),
        "MATCH",
        mkey(V6, 17, 53, src=a16("2001:db8:5::"), dst=a16("2001:db8:6::1")),
        Shape(F_SRC | F_DST | F_PROTO | F_PORT, V6, 64, 128),
    ),
    ("proto-port-udp", rule(proto=17, dport=53), "MATCH", mkey(ANY, 17, 53), Shape(F_PROTO | F_PORT, ANY, 0, 0)),
]
SHAPE_PARAMS = [pytest.param(r, m, k, s, id=i) for i, r, m, k, s in SHAPES]


@pytest.mark.parametrize(("r", "map_name", "key", "shape"), SHAPE_PARAMS)
def test_place(r: FilterRule, map_name: str, key: bytes, shape: Shape | None) -> None:
    p = place(r)
    assert p == Placement(map_name, key, shape)
    if map_name == "MATCH":
        assert len(p.key) == abi.MATCH_KEY.size
    elif map_name == "BLOCKLIST":
        assert len(p.key) == 4
    else:
        assert len(p.key) == (abi.LPM_V4_KEY.size if map_name == "SRC4" else abi.LPM_V6_KEY.size)


def test_action_does_not_change_placement() -> None:
    for _, r, *_ in SHAPES:
        assert place(r) == place(FilterRule(r.id, Action.MONITOR, r.src_ip, r.dst_ip, r.dst_port, r.protocol))


def test_match_key_carries_the_shape_index() -> None:
    p = place(rule(dst="198.19.0.1/32", proto=6))
    k = p.match_key(5)
    assert k[:4] == (5).to_bytes(4, "little") and k[4:] == p.key[4:]
    assert abi.MATCH_KEY.unpack(k)[0] == 5


@pytest.mark.parametrize(
    ("r", "words"),
    [
        pytest.param(FilterRule("r"), "no match field", id="no-match-field"),
        pytest.param(FilterRule("r", Action.MONITOR, description="x"), "no match field", id="no-match-field-monitor"),
        pytest.param(rule(src="198.18.0.1/32", dst="2001:db8::1/128"), "different IP versions", id="v4-src-v6-dst"),
        pytest.param(rule(src="2001:db8::/32", dst="198.19.0.0/16"), "different IP versions", id="v6-src-v4-dst"),
        pytest.param(rule(dport=80, proto=1), "dst_port only matches", id="port-with-icmp"),
        pytest.param(rule(dport=80, proto=58), "dst_port only matches", id="port-with-icmpv6"),
        pytest.param(rule(src="198.18.0.0/16", dport=80, proto=47), "dst_port only matches", id="port-with-gre"),
    ],
)
def test_place_refuses(r: FilterRule, words: str) -> None:
    with pytest.raises(RuleRefused, match=words):
        place(r)


@pytest.mark.parametrize("proto", [6, 17, None])
def test_port_with_tcp_udp_or_no_protocol_is_accepted(proto: int | None) -> None:
    assert place(rule(dport=80, proto=proto)).map_name == "MATCH"


@pytest.mark.parametrize(
    ("plen", "mask"),
    [
        (0, bytes(16)),
        (1, b"\x80" + bytes(15)),
        (8, b"\xff" + bytes(15)),
        (20, b"\xff\xff\xf0" + bytes(13)),
        (24, b"\xff\xff\xff" + bytes(13)),
        (32, b"\xff" * 4 + bytes(12)),
        (33, b"\xff" * 4 + b"\x80" + bytes(11)),
        (64, b"\xff" * 8 + bytes(8)),
        (127, b"\xff" * 15 + b"\xfe"),
        (128, b"\xff" * 16),
    ],
)
def test_prefix_mask(plen: int, mask: bytes) -> None:
    assert prefix_mask(plen) == mask


def test_shape_pack() -> None:
    raw = Shape(F_SRC | F_PROTO, V4, 24, 0).pack()
    assert abi.RULE_SHAPE.unpack(raw) == (F_SRC | F_PROTO, V4, 0xFF, 0, prefix_mask(24), bytes(16))
    raw = Shape(F_DST | F_PORT, V6, 0, 64).pack()
    assert abi.RULE_SHAPE.unpack(raw) == (F_DST | F_PORT, V6, 0, 0xFFFF, bytes(16), prefix_mask(64))
    fields, family, *_ = abi.RULE_SHAPE.unpack(kernel_rules.UNUSED_SHAPE)
    assert fields & abi.SHAPE_UNUSED and family not in (ANY, V4, V6)


def test_value() -> None:
    drop_rule = rule(src="198.18.0.1/32")
    own = abi.ORIGIN_IRONPOST
    assert abi.BLOCKLIST_VALUE.unpack(kernel_rules.value(drop_rule, 7, 9)) == (
        abi.ACTION_DROP,
        abi.ACTION_DROP,
        own,
        7,
        9,
        7,
        9,
    )
    r = rule(action=Action.MONITOR, dport=1)
    assert abi.BLOCKLIST_VALUE.unpack(kernel_rules.value(r, 0, 0)) == (
        abi.ACTION_MONITOR,
        abi.ACTION_MONITOR,
        own,
        0,
        0,
        0,
        0,
    )
    # Another rule decides for the entry (a covering drop prefix): it acts, the entry keeps its own.
    acting = abi.BLOCKLIST_VALUE.unpack(kernel_rules.value(r, 3, 4, acting=(drop_rule, 1, 2)))
    assert acting == (abi.ACTION_DROP, abi.ACTION_MONITOR, own, 1, 2, 3, 4)
    # Another tool's entry, taken in: marked so that a --persist restart knows it for one.
    external = replace(drop_rule, external=True)
    assert abi.BLOCKLIST_VALUE.unpack(kernel_rules.value(external, 5, 6))[:3] == (
        abi.ACTION_DROP,
        abi.ACTION_DROP,
        abi.ORIGIN_EXTERNAL,
    )


@pytest.mark.parametrize(
    ("text", "map_name", "key"),
    [
        ("198.18.0.1/32", "ALLOW4", abi.LPM_V4_KEY.pack(32, bytes([198, 18, 0, 1]))),
        ("198.18.0.0/15", "ALLOW4", abi.LPM_V4_KEY.pack(15, bytes([198, 18, 0, 0]))),
        ("2001:db8::/32", "ALLOW6", abi.LPM_V6_KEY.pack(32, a16("2001:db8::"))),
    ],
)
def test_allow_key(text: str, map_name: str, key: bytes) -> None:
    assert kernel_rules.allow_key(net(text)) == (map_name, key)


def test_network_is_strict() -> None:
    assert kernel_rules.network(" 198.18.0.0/24 ") == net("198.18.0.0/24")
    assert kernel_rules.network("2001:db8::1") == net("2001:db8::1/128")
    with pytest.raises(ValueError):
        kernel_rules.network("198.18.0.1/24")


def _round_trip(r: FilterRule, shape_index: int = 3) -> FilterRule | None:
    p = place(r)
    shapes = {shape_index: p.shape} if p.shape is not None else {}
    key = p.match_key(shape_index) if p.shape is not None else p.key
    return rule_from_entry(p.map_name, key, kernel_rules.action_code(r.action), shapes, r.id)


@pytest.mark.parametrize(("r", "map_name", "key", "shape"), SHAPE_PARAMS)
@pytest.mark.parametrize("action", [Action.DROP, Action.MONITOR])
def test_rule_from_entry_inverts_place(
    r: FilterRule, map_name: str, key: bytes, shape: Shape | None, action: Action
) -> None:
    r = FilterRule(r.id, action, r.src_ip, r.dst_ip, r.dst_port, r.protocol)
    back = _round_trip(r)
    assert back is not None
    assert back.same_match(r) and back.action is action and back.id == r.id
    assert place(back) == place(r)


def test_rule_from_entry_with_unknown_shape_is_none() -> None:
    p = place(rule(dport=80))
    assert rule_from_entry("MATCH", p.match_key(2), abi.ACTION_DROP, {}, "x") is None


_v4_nets = st.builds(
    lambda a, n: ipaddress.ip_network((a, n), strict=False),
    st.integers(0, 2**32 - 1).map(ipaddress.IPv4Address),
    st.integers(0, 32),
)
_v6_nets = st.builds(
    lambda a, n: ipaddress.ip_network((a, n), strict=False),
    st.integers(0, 2**128 - 1).map(ipaddress.IPv6Address),
    st.integers(0, 128),
)


@st.composite
def _rules(draw: st.DrawFn) -> FilterRule:
    nets = draw(st.sampled_from([_v4_nets, _v6_nets]))
    src = draw(st.none() | nets)
    dst = draw(st.none() | nets)
    proto = draw(st.none() | st.integers(0, 255))
    dport = draw(st.none() | st.integers(0, 65535)) if proto in (None, 6, 17) else None
    action = draw(st.sampled_from(list(Action)))
    r = FilterRule("r", action, src_ip=src, dst_ip=dst, dst_port=dport, protocol=proto)
    if not r.match_fields:
        r = FilterRule("r", action, protocol=6)
    return r


@given(_rules(), st.integers(0, 255))
def test_rule_from_entry_inverts_place_for_any_rule(r: FilterRule, shape_index: int) -> None:
    back = _round_trip(r, shape_index)
    assert back is not None and back.same_match(r) and back.action is r.action
