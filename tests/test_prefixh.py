"""PREFIX4H/PREFIX6H (ironpost_tui/rules/prefixh.py), the source prefixes in hashed buckets the program
reads inline, against the real program through BPF_PROG_TEST_RUN.

The program looks in SRC4/SRC6 only for a bucket with ADDR_FILTER's FILTER_PREFIX bit (or a wild
prefix), which the product sets only for a prefix the hashed tables had no room for; so a drop with
that bit clear, or with the trie's entry deleted behind the table's back, is the hashed table's doing.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule, IPNetwork
from ironpost_tui.rules import prefilter, prefixh
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2
DST4, DST6 = "198.19.0.1", "2001:db8:ff::1"


def verdict(dp: Datapath, src: str) -> int:
    return libbpf.prog_test_run(dp.prog_fd, frame(src, DST6 if ":" in src else DST4, 53, "udp")).retval


def rule(rid: str, net: str, action: Action = Action.DROP) -> FilterRule:
    return FilterRule(rid, action, src_ip=ipaddress.ip_network(net))


def filter_bits(dp: Datapath, addr: str) -> int:
    a = ipaddress.ip_address(addr)
    family = abi.FAMILY_V4 if a.version == 4 else abi.FAMILY_V6
    bucket = prefilter.filter_bucket(a.packed.ljust(16, b"\0"), family)
    word = int.from_bytes(dp.map_lookup("ADDR_FILTER", (bucket >> 1).to_bytes(4, "little")) or bytes(8), "little")
    return (word >> ((bucket & 1) * 32)) & 0xFFFFFFFF


def ways_in_use(dp: Datapath) -> int:
    n = 0
    for name, st in ((MapNameV4, abi.PREFIX4H_BUCKET), (MapNameV6, abi.PREFIX6H_BUCKET)):
        _keys, values, count = dp.map_dump(name)
        w = abi.PREFIXH_WAYS
        for i in range(count):
            fields = st.unpack_from(values, i * st.size)
            n += sum(1 for r in fields[2 : 2 + w] if r)  # addr[], mask[], then rank1[]
    return n


MapNameV4, MapNameV6 = abi.MapName.PREFIX4H, abi.MapName.PREFIX6H


def probed(dp: Datapath) -> tuple[set[int], set[int]]:
    raw = dp.read_config_raw()
    return {b for b in raw[9] if b}, {b for b in raw[10] if b}


def hits(table: RuleTable) -> dict[str, int]:
    return {s.rule.id: s.hits for s in table.status()}


def empty_tries_behind_the_tables_back(dp: Datapath) -> None:
    for name in ("SRC4", "SRC6"):
        for key, _value in dp.map_items(name):
            dp.map_delete(name, key)


@pytest.fixture
def table() -> Iterator[RuleTable]:
    """CIDR maps of 256: PREFIX4H/PREFIX6H have 64 buckets of 8 ways."""
    dp = Datapath(DatapathConfig(cidr_max_entries=256))
    try:
        assert dp.cfg.prefixh_buckets == 64
        yield RuleTable(dp, monotonic_to_wall_offset())
    finally:
        dp.close()


def test_prefixes_v4_and_v6_are_dropped_from_the_hashed_tables_alone(table: RuleTable) -> None:
    dp = table._dp
    rules = [
        rule("v4-24", "198.18.10.0/24"),
        rule("v4-30", "198.18.20.4/30"),
        rule("v6-48", "2001:db8:10::/48"),
        rule("v6-64", "2001:db8:20:1::/64"),
        rule("v6-128", "2001:db8:30::7/128"),
    ]
    table.replace_all(rules)
    assert all(table._rules[r.id].exact4 for r in rules)
    assert ways_in_use(dp) == 5
    assert probed(dp) == ({24, 28}, {48, 64})  # the probe lengths: /30 under 28, /128 under 64
    inside = ["198.18.10.77", "198.18.20.5", "2001:db8:10:ffff::1", "2001:db8:20:1:abcd::9", "2001:db8:30::7"]
    for a in inside:
        bits = filter_bits(dp, a)
        assert bits & abi.FILTER_PREFIXH and not bits & abi.FILTER_PREFIX, a
    empty_tries_behind_the_tables_back(dp)  # the hashed tables alone decide now
    assert [verdict(dp, a) for a in inside] == [XDP_DROP] * 5
    assert hits(table) == {"v4-24": 1, "v4-30": 1, "v6-48": 1, "v6-64": 1, "v6-128": 1}
    # Near misses: beside each prefix, in the same ADDR_FILTER bucket (/24, /48) where one exists.
    near = ["198.18.11.1", "198.18.20.8", "198.18.20.3", "2001:db8:11::1", "2001:db8:20:2::1", "2001:db8:30::8"]
    assert [verdict(dp, a) for a in near] == [XDP_PASS] * 6
    table.replace_all([])
    assert ways_in_use(dp) == 0 and probed(dp) == (set(), set())
    assert [verdict(dp, a) for a in inside] == [XDP_PASS] * 5


def _expected(rules: list[FilterRule], addr: str) -> tuple[int, str | None]:
    """The verdict and the rule credited, by list order (drop before monitor): the contract."""
    a = ipaddress.ip_address(addr)
    best: tuple[int, str] | None = None
    for position, r in enumerate(rules):
        assert r.src_ip is not None
        if a.version == r.src_ip.version and a in r.src_ip:
            rank = position if r.action is Action.DROP else position | abi.MONITOR_RANK
            if best is None or rank < best[0]:
                best = (rank, r.id)
    if best is None:
        return XDP_PASS, None
    return (XDP_DROP if best[0] < abi.MONITOR_RANK else XDP_PASS), best[1]


def _check(table: RuleTable, rules: list[FilterRule], addrs: list[str]) -> None:
    before = hits(table)
    for a in addrs:
        want, credited = _expected(rules, a)
        assert verdict(table._dp, a) == want, a
        after = hits(table)
        moved = {rid for rid in after if after[rid] != before.get(rid, 0)}
        assert moved == ({credited} if credited else set()), (a, moved)
        before = after


def test_overlapping_prefixes_of_different_lengths_rank_as_before(table: RuleTable) -> None:
    """Nested prefixes, drop and monitor, hashed and not (a wild /12 stays in the trie), several under one
    probe length: the best rank wins, as with the trie alone, and the rule credited is that one."""
    rules = [
        rule("mon-30", "198.18.5.4/30", Action.MONITOR),
        rule("drop-24", "198.18.5.0/24"),
        rule("mon-16", "198.18.0.0/16", Action.MONITOR),
        rule("drop-28", "198.18.5.16/28"),
        rule("wild-12", "198.16.0.0/12", Action.MONITOR),
        rule("drop-27", "198.18.6.32/27"),
        rule("drop-26", "198.18.7.0/26"),
        rule("v6-mon-64", "2001:db8:1:1::/64", Action.MONITOR),
        rule("v6-drop-48", "2001:db8:1::/48"),
        rule("v6-drop-120", "2001:db8:1:1::100/120"),
    ]
    table.replace_all(rules)
    dp = table._dp
    assert not table._rules["wild-12"].exact4 and dp.read_config_raw()[2] & abi.CFG_WILD_PREFIX4
    assert probed(dp) == ({16, 24, 28}, {48, 64})
    hashed = {rid for rid, inst in table._rules.items() if inst.exact4}
    assert hashed == {r.id for r in rules} - {"wild-12"}
    addrs = ["198.18.5.5", "198.18.5.20", "198.18.5.200", "198.18.6.40", "198.18.7.9", "198.18.9.9", "198.17.0.1"]
    addrs += ["198.19.0.1", "2001:db8:1:1::5", "2001:db8:1:1::150", "2001:db8:1:2::1", "2001:db8:2::1"]
    _check(table, rules, addrs)
    reordered = [rules[2], rules[4], *rules[5:], rules[0], rules[1], rules[3]]  # monitors first now
    table.replace_all(reordered)
    _check(table, reordered, addrs)
    flipped = [rule(r.id, str(r.src_ip), Action.DROP) for r in reordered]  # every rule a drop
    table.replace_all(flipped)
    _check(table, flipped, addrs)
    table.replace_all([])
    assert ways_in_use(dp) == 0 and probed(dp) == (set(), set())


def test_the_allowlist_still_wins_over_a_hashed_prefix(table: RuleTable) -> None:
    dp = table._dp
    table.replace_all([rule("p4", "198.18.3.0/24"), rule("p6", "2001:db8:3::/48")])
    assert verdict(dp, "198.18.3.9") == XDP_DROP and verdict(dp, "2001:db8:3::9") == XDP_DROP
    table.set_allowlist({ipaddress.ip_network("198.18.3.9/32"): 1, ipaddress.ip_network("2001:db8:3::9/128"): 1})
    assert verdict(dp, "198.18.3.9") == XDP_PASS and verdict(dp, "2001:db8:3::9") == XDP_PASS
    assert verdict(dp, "198.18.3.10") == XDP_DROP and verdict(dp, "2001:db8:3::10") == XDP_DROP
    table.set_allowlist({})
    table.replace_all([])


def same_bucket(dp: Datapath, plen: int, n: int) -> list[str]:
    """n IPv4 prefixes of length ``plen`` (a probe length) in the lab range that share one PREFIX4H bucket."""
    seed, bits = dp.read_config_raw()[3], dp.cfg.prefixh_buckets.bit_length() - 1
    by_bucket: dict[int, list[str]] = {}
    for net in ipaddress.ip_network("198.18.0.0/15").subnets(new_prefix=plen):
        group = by_bucket.setdefault(prefixh.bucket_of(net.network_address.packed, plen, seed, bits), [])
        group.append(str(net))
        if len(group) == n:
            return group
    raise AssertionError("unreachable: 2^13 prefixes over 64 buckets")


def test_a_full_bucket_leaves_the_ninth_prefix_in_the_trie(table: RuleTable) -> None:
    dp = table._dp
    group = same_bucket(dp, 28, 9)
    rules = [rule(f"g{i}", n) for i, n in enumerate(group)]
    table.replace_all(rules)
    assert [table._rules[r.id].exact4 for r in rules] == [True] * 8 + [False]
    assert ways_in_use(dp) == 8
    last = str(ipaddress.ip_network(group[8])[3])
    assert filter_bits(dp, last) & abi.FILTER_PREFIX
    assert verdict(dp, last) == XDP_DROP and hits(table)["g8"] == 1
    table.delete("g3")  # a way frees: a new id for g8's prefix takes it
    table.replace_all([*rules[:3], *rules[4:8], rule("g8-new", group[8])])
    assert table._rules["g8-new"].exact4 and ways_in_use(dp) == 8
    assert verdict(dp, last) == XDP_DROP and hits(table)["g8-new"] == 1
    table.replace_all([])
    assert ways_in_use(dp) == 0 and dp.map_len("SRC4") == 0


def test_moves_between_exact_prefix_and_hashed_prefix_leave_no_gap(table: RuleTable) -> None:
    """One address blocked across reloads as an exact source, a hashed prefix, a prefix of a new id,
    a longer prefix: never passes in between (each step checked right after it)."""
    dp = table._dp
    steps: list[list[FilterRule]] = [
        [FilterRule("a", src_ip=ipaddress.ip_network("198.18.44.4/32"))],
        [rule("a", "198.18.44.0/24")],
        [rule("b", "198.18.44.0/24")],
        [rule("b", "198.18.44.4/30")],
        [rule("c", "198.18.44.4/31"), rule("b", "198.18.44.4/30")],
        [FilterRule("d", src_ip=ipaddress.ip_network("198.18.44.4/32"), dst_port=53, protocol=17)],
        [rule("a", "198.18.44.0/24")],
    ]
    for rules in steps:
        table.replace_all(rules)
        assert verdict(dp, "198.18.44.4") == XDP_DROP, rules
    table.replace_all([])
    assert verdict(dp, "198.18.44.4") == XDP_PASS and ways_in_use(dp) == 0


def test_adopting_pinned_maps_keeps_the_hashed_prefixes_and_drops_stale_ways(pin_dir: Path) -> None:
    cfg = DatapathConfig(cidr_max_entries=256)
    first = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(first, monotonic_to_wall_offset())
        table.replace_all(
            [rule("p4", "198.18.50.0/24"), rule("p6", "2001:db8:50::/48"), rule("gone", "198.18.51.0/25")]
        )
        gone: IPNetwork = ipaddress.ip_network("198.18.51.0/25")
        # A stop mid-removal: the trie entry went, the way stayed.
        first.map_delete("SRC4", abi.LPM_V4_KEY.pack(25, gone.network_address.packed))
    finally:
        first.close()
    second = Datapath(cfg, pin_dir=pin_dir)
    try:
        adopted = RuleTable(second, monotonic_to_wall_offset())
        found = adopted.adopt_existing()
        assert sorted(str(r.src_ip) for r in found) == ["198.18.50.0/24", "2001:db8:50::/48"]
        assert all(inst.exact4 for inst in adopted._rules.values())
        assert ways_in_use(second) == 2 and probed(second) == ({24}, {48})
        assert verdict(second, "198.18.50.1") == XDP_DROP and verdict(second, "2001:db8:50::1") == XDP_DROP
        assert verdict(second, "198.18.51.1") == XDP_PASS
        adopted.replace_all([])
        assert ways_in_use(second) == 0
    finally:
        second.close()
