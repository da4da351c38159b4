"""MATCHH (ironpost_tui/rules/matchh.py), the multi-field rules' keys in buckets the program reads inline,
against the real program through BPF_PROG_TEST_RUN.

The program looks in MATCH (instead of MATCHH) only for a shape whose bit of CONFIG.match_spill is set, which
the product sets only while a key of that shape found its MATCHH bucket full; so a drop with that bit clear,
or with the MATCH entry deleted behind the table's back, is MATCHH's doing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.matchh import bucket_of
from ironpost_tui.rules.placement import place
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2
SRC, DST = "198.18.0.5", "198.19.0.1"
W = abi.MATCHH_WAYS


def verdict(dp: Datapath, port: int) -> int:
    return libbpf.prog_test_run(dp.prog_fd, frame(SRC, DST, port, "udp")).retval


def to_port(rid: str, port: int, action: Action = Action.DROP) -> FilterRule:
    """A multi-field rule: UDP to DST, port ``port`` (one shape for every port)."""
    return FilterRule(rid, action, dst_ip=ipaddress.ip_network(f"{DST}/32"), dst_port=port, protocol=17)


def ways_in_use(dp: Datapath) -> int:
    _keys, values, count = dp.map_dump(MapName.MATCHH)
    size = abi.MATCHH_BUCKET.size
    return sum(1 for i in range(count) for r in abi.MATCHH_BUCKET.unpack_from(values, i * size)[1 : 1 + W] if r)


def spill(dp: Datapath) -> int:
    return int(dp.read_config_raw()[11])


def bucket(dp: Datapath, rule: FilterRule, shape: int) -> int:
    seed, bits = dp.read_config_raw()[3], dp.cfg.matchh_buckets.bit_length() - 1
    return bucket_of(place(rule).match_key(shape), seed, bits)


def same_bucket(dp: Datapath, shape: int, n: int) -> list[int]:
    """n destination ports whose rules (to_port) share one MATCHH bucket in shape slot ``shape``."""
    by_bucket: dict[int, list[int]] = {}
    for port in range(1, 65536):
        group = by_bucket.setdefault(bucket(dp, to_port("probe", port), shape), [])
        group.append(port)
        if len(group) == n:
            return group
    raise AssertionError("unreachable: 65,535 ports over a small map's buckets")


@pytest.fixture
def small() -> Iterator[RuleTable]:
    """MATCH of 64: MATCHH has 64 buckets of 4 ways."""
    dp = Datapath(DatapathConfig(match_max_entries=64))
    try:
        assert dp.cfg.matchh_buckets == 64
        yield RuleTable(dp, monotonic_to_wall_offset())
    finally:
        dp.close()


def test_multi_field_rules_are_matched_from_matchh_alone() -> None:
    dp = Datapath(DatapathConfig())
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        ports = range(20000, 20300, 3)
        for p in ports:
            table.add(to_port(f"p{p}", p, Action.DROP if p % 2 else Action.MONITOR))
        shape = table._rules["p20000"].shape_index
        assert shape is not None and all(table._rules[f"p{p}"].shape_index == shape for p in ports)
        assert ways_in_use(dp) == len(ports) and spill(dp) == 0  # 100 keys in 1,024 buckets: none full
        assert all(table._rules[f"p{p}"].exact4 for p in ports)
        # MATCH emptied behind the table's back: MATCHH still decides, in the bucket Python chose.
        for p in ports:
            assert dp.map_delete(MapName.MATCH, table._rules[f"p{p}"].key)
        assert [verdict(dp, p) for p in ports] == [XDP_DROP if p % 2 else XDP_PASS for p in ports]
        assert {s.rule.id: s.hits for s in table.status()} == {f"p{p}": 1 for p in ports}  # monitors credited too
        assert all(verdict(dp, p + 1) == XDP_PASS for p in ports)  # a port no rule names
        for p in ports:
            table.delete(f"p{p}")
        assert ways_in_use(dp) == 0
        assert all(verdict(dp, p) == XDP_PASS for p in ports)
    finally:
        dp.close()


def test_the_program_hashes_a_key_to_the_bucket_python_chose(small: RuleTable) -> None:
    """A way moved to a neighbouring bucket is not found: the program reads the one bucket_of() names."""
    dp = small._dp
    small.add(to_port("r", 53))
    inst = small._rules["r"]
    assert inst.shape_index is not None and inst.exact4
    dp.map_delete(MapName.MATCH, inst.key)  # MATCHH alone decides
    b = bucket(dp, inst.rule, inst.shape_index)
    raw = dp.map_lookup(MapName.MATCHH, b.to_bytes(4, "little"))
    assert raw is not None and verdict(dp, 53) == XDP_DROP
    dp.map_update(MapName.MATCHH, b.to_bytes(4, "little"), bytes(abi.MATCHH_BUCKET.size))
    dp.map_update(MapName.MATCHH, ((b + 1) % 64).to_bytes(4, "little"), raw)
    assert verdict(dp, 53) == XDP_PASS
    dp.map_update(MapName.MATCHH, b.to_bytes(4, "little"), raw)
    assert verdict(dp, 53) == XDP_DROP


def test_a_full_bucket_spills_the_next_key_to_match(small: RuleTable) -> None:
    dp = small._dp
    small.add(to_port("first", 1))
    shape = small._rules["first"].shape_index
    assert shape is not None
    small.delete("first")
    group = same_bucket(dp, shape, W + 1)
    for p in group:
        small.add(to_port(f"g{p}", p))
    fast = [small._rules[f"g{p}"].exact4 for p in group]
    assert fast == [True] * W + [False]
    assert ways_in_use(dp) == W and spill(dp) == 1 << shape
    assert all(verdict(dp, p) == XDP_DROP for p in group)
    # The spill bit is what sends the program to MATCH: cleared by hand, the spilled key goes unmatched.
    config = list(dp.read_config_raw())
    config[11] = 0
    dp.write_config_raw(abi.CONFIG.pack(*config))
    assert [verdict(dp, p) for p in group] == [XDP_DROP] * W + [XDP_PASS]
    config[11] = 1 << shape
    dp.write_config_raw(abi.CONFIG.pack(*config))
    # And a spilled shape is looked up in MATCH alone (which holds every key): a way in MATCHH whose MATCH
    # entry is gone is not found while the bit is set, and found again once it is clear.
    first = small._rules[f"g{group[0]}"]
    value = dp.map_lookup(MapName.MATCH, first.key)
    assert value is not None and dp.map_delete(MapName.MATCH, first.key)
    assert verdict(dp, group[0]) == XDP_PASS
    config[11] = 0
    dp.write_config_raw(abi.CONFIG.pack(*config))
    assert verdict(dp, group[0]) == XDP_DROP
    config[11] = 1 << shape
    dp.write_config_raw(abi.CONFIG.pack(*config))
    dp.map_update(MapName.MATCH, first.key, value)
    assert verdict(dp, group[0]) == XDP_DROP
    # A key that left its bucket's way frees it, but the spilled rule stays in MATCH (a way is taken only
    # when a rule is written): its bit stays while it is there, and goes with it.
    small.delete(f"g{group[0]}")
    assert spill(dp) == 1 << shape and verdict(dp, group[-1]) == XDP_DROP
    small.delete(f"g{group[-1]}")
    assert spill(dp) == 0 and verdict(dp, group[-1]) == XDP_PASS
    assert all(verdict(dp, p) == XDP_DROP for p in group[1:-1])
    for p in group[1:-1]:
        small.delete(f"g{p}")
    assert ways_in_use(dp) == 0 and dp.map_len(MapName.MATCH) == 0


def way_of(dp: Datapath, key: bytes) -> tuple[int, int, int]:
    """(bucket, way, rank1) of ``key``'s live way in MATCHH."""
    seed, bits = dp.read_config_raw()[3], dp.cfg.matchh_buckets.bit_length() - 1
    b = bucket_of(key, seed, bits)
    fields = abi.MATCHH_BUCKET.unpack(dp.map_lookup(MapName.MATCHH, b.to_bytes(4, "little")) or b"")
    live = [j for j in range(W) if fields[1 + j] and fields[0][j * 40 : (j + 1) * 40] == key]
    assert len(live) == 1, live
    return b, live[0], fields[1 + live[0]]


def test_an_action_change_rewrites_the_way_in_place(small: RuleTable) -> None:
    """The same rule (id and key) changed from monitor to drop: its way's rank1 is rewritten, in the same
    way of the same bucket, crediting the same slot; no second way is taken."""
    dp = small._dp
    small.replace_all([to_port("r", 53, Action.MONITOR), FilterRule("wide", Action.DROP, protocol=17, dst_port=53)])
    assert verdict(dp, 53) == XDP_DROP  # a drop outranks a monitor, whatever the order
    small.replace_all([to_port("r", 53, Action.MONITOR)])
    assert verdict(dp, 53) == XDP_PASS  # the monitor rule alone: counted, passed
    inst = small._rules["r"]
    slot, (b, way, rank1) = inst.slot, way_of(dp, inst.key)
    assert rank1 - 1 == inst.priority | abi.MONITOR_RANK
    small.replace_all([to_port("r", 53, Action.DROP)])
    inst = small._rules["r"]
    assert inst.slot == slot and inst.exact4 and spill(dp) == 0
    assert way_of(dp, inst.key) == (b, way, inst.priority + 1)
    assert ways_in_use(dp) == 1
    assert verdict(dp, 53) == XDP_DROP
    assert {s.rule.id: s.hits for s in small.status()} == {"r": 2}


def test_adopting_pinned_maps_puts_matchh_back_as_match_says(pin_dir: Path) -> None:
    """A stop between a MATCH write and its MATCHH way, and one between a way's retirement and the MATCH
    delete after it: the adopting table finds the first rule through MATCH (its shape spilled), and retires
    the way whose MATCH entry is gone."""
    cfg = DatapathConfig(match_max_entries=64)
    first = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(first, monotonic_to_wall_offset())
        table.replace_all([to_port("a", 53), to_port("b", 123), to_port("gone", 161)])
        keys = {rid: table._rules[rid].key for rid in ("a", "b", "gone")}
        shape = table._rules["a"].shape_index
        assert shape is not None
    finally:
        first.close()
    second = Datapath(cfg, pin_dir=pin_dir)
    try:
        seed, bits = second.read_config_raw()[3], cfg.matchh_buckets.bit_length() - 1
        # a: its way lost (a stop before the MATCHH write); gone: its MATCH entry deleted, its way kept.
        b_a = bucket_of(keys["a"], seed, bits).to_bytes(4, "little")
        fields = list(abi.MATCHH_BUCKET.unpack(second.map_lookup(MapName.MATCHH, b_a) or b""))
        way = [fields[0][i * 40 : (i + 1) * 40] for i in range(W)].index(keys["a"])
        fields[1 + way] = 0
        second.map_update(MapName.MATCHH, b_a, abi.MATCHH_BUCKET.pack(*fields))
        assert second.map_delete(MapName.MATCH, keys["gone"])
        assert verdict(second, 53) == XDP_PASS and verdict(second, 161) == XDP_DROP  # the damage, unrepaired

        adopted = RuleTable(second, monotonic_to_wall_offset())
        adopted.adopt_existing()
        assert verdict(second, 53) == XDP_DROP and verdict(second, 123) == XDP_DROP
        assert verdict(second, 161) == XDP_PASS
        # a: in MATCH alone now, found through its shape's spill bit (the way is written only on a rule's write).
        assert ways_in_use(second) == 1 and spill(second) == 1 << shape
        assert not adopted._rules[next(r for r, i in adopted._rules.items() if i.key == keys["a"])].exact4
        for rid in list(adopted._rules):
            adopted.delete(rid)
        assert ways_in_use(second) == 0 and spill(second) == 0
    finally:
        second.close()


def test_ipv6_and_prefix_keys_are_matched_from_matchh_alone(small: RuleTable) -> None:
    """Keys whose words carry IPv6 addresses and masked prefixes (a source /64, a destination /120): the
    program hashes and compares them as Python wrote them, with MATCH emptied; the next address out of each
    prefix is not matched."""
    dp = small._dp
    rules = [
        FilterRule(
            "v6",
            Action.DROP,
            src_ip=ipaddress.ip_network("2001:db8:1:2::/64"),
            dst_ip=ipaddress.ip_network("2001:db8:ff::/120"),
            dst_port=443,
            protocol=6,
        ),
        FilterRule("v4", Action.DROP, src_ip=ipaddress.ip_network("198.18.7.0/24"), dst_port=8443, protocol=6),
    ]
    small.replace_all(rules)
    assert all(small._rules[r.id].exact4 for r in rules) and spill(dp) == 0
    for r in rules:
        assert dp.map_delete(MapName.MATCH, small._rules[r.id].key)

    def v(src: str, dst: str, port: int) -> int:
        return libbpf.prog_test_run(dp.prog_fd, frame(src, dst, port, "tcp")).retval

    assert v("2001:db8:1:2:dead:beef::1", "2001:db8:ff::7f", 443) == XDP_DROP
    assert v("2001:db8:1:3::1", "2001:db8:ff::7f", 443) == XDP_PASS  # the next /64
    assert v("2001:db8:1:2::1", "2001:db8:ff::100", 443) == XDP_PASS  # the next /120
    assert v("2001:db8:1:2::1", "2001:db8:ff::7f", 444) == XDP_PASS
    assert v("198.18.7.200", "198.19.0.1", 8443) == XDP_DROP
    assert v("198.18.8.1", "198.19.0.1", 8443) == XDP_PASS
    assert {s.rule.id: s.hits for s in small.status()} == {"v6": 1, "v4": 1}


def test_a_rule_renamed_on_its_key_moves_its_way_to_the_new_slot(small: RuleTable) -> None:
    """The same key under a new id (a reload that renames a rule): one way is left, crediting the new rule's
    slot (the order of the writes, new way before the old one's retirement, is inline_ways.py's, which
    test_exact4 checks for both tables)."""
    dp = small._dp
    small.replace_all([to_port("old", 53)])
    old_slot = small._rules["old"].slot
    small.replace_all([to_port("new", 53)])
    inst = small._rules["new"]
    assert "old" not in small._rules and inst.exact4 and inst.slot != old_slot
    assert ways_in_use(dp) == 1 and spill(dp) == 0
    dp.map_delete(MapName.MATCH, inst.key)  # MATCHH alone decides
    assert verdict(dp, 53) == XDP_DROP
    assert {s.rule.id: s.hits for s in small.status()} == {"new": 1}
