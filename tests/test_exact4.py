"""EXACT4 (ironpost_tui/rules/exact4.py), the exact IPv4 sources in buckets the program reads inline,
against the real program through BPF_PROG_TEST_RUN.

The program looks in BLOCKLIST only for a bucket with ADDR_FILTER's FILTER_EXACT bit, which the
product sets only for an address EXACT4 had no room for; so a drop with that bit clear, or with
the BLOCKLIST entry deleted behind the table's back, is EXACT4's doing.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import prefilter
from ironpost_tui.rules.exact4 import bucket_of
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2
LAB4 = ipaddress.ip_network("198.18.0.0/15")


def verdict(dp: Datapath, src: str) -> int:
    return libbpf.prog_test_run(dp.prog_fd, frame(src, "198.19.0.1", 53, "udp")).retval


def exact(rid: str, addr: str, action: Action = Action.DROP) -> FilterRule:
    return FilterRule(rid, action, src_ip=ipaddress.ip_network(f"{addr}/32"))


def filter_bits(dp: Datapath, addr: str) -> int:
    bucket = prefilter.filter_bucket(ipaddress.IPv4Address(addr).packed.ljust(16, b"\0"), abi.FAMILY_V4)
    word = int.from_bytes(dp.map_lookup("ADDR_FILTER", (bucket >> 1).to_bytes(4, "little")) or bytes(8), "little")
    return (word >> ((bucket & 1) * 32)) & 0xFFFFFFFF


def ways_in_use(dp: Datapath) -> int:
    _keys, values, count = dp.map_dump("EXACT4")
    size, w = abi.EXACT4_BUCKET.size, abi.EXACT4_WAYS
    return sum(1 for i in range(count) for r in abi.EXACT4_BUCKET.unpack_from(values, i * size)[w : 2 * w] if r)


def same_bucket(dp: Datapath, n: int) -> list[str]:
    """n addresses of the lab range that share one EXACT4 bucket (under this map set's seed)."""
    seed, bits = dp.read_config_raw()[3], dp.cfg.exact4_buckets.bit_length() - 1
    by_bucket: dict[int, list[str]] = {}
    for a in LAB4.hosts():
        group = by_bucket.setdefault(bucket_of(a.packed, seed, bits), [])
        group.append(str(a))
        if len(group) == n:
            return group
    raise AssertionError("unreachable: 2^17 addresses over at most 2^18 buckets of a small map")


def same_slash24_other_bucket(dp: Datapath, addr: str) -> str:
    """An address of ``addr``'s /24 (so of its ADDR_FILTER bucket) in another EXACT4 bucket."""
    seed, bits = dp.read_config_raw()[3], dp.cfg.exact4_buckets.bit_length() - 1
    base = ipaddress.IPv4Address(addr)
    for other in ipaddress.ip_network(f"{addr}/24", strict=False).hosts():
        if bucket_of(other.packed, seed, bits) != bucket_of(base.packed, seed, bits):
            return str(other)
    raise AssertionError("a /24 within one bucket of 64")


def hits(table: RuleTable) -> dict[str, int]:
    return {s.rule.id: s.hits for s in table.status()}


@pytest.fixture
def small() -> Iterator[RuleTable]:
    """BLOCKLIST of 256: EXACT4 has 64 buckets of 8 ways."""
    dp = Datapath(DatapathConfig(blocklist_max_entries=256))
    try:
        assert dp.cfg.exact4_buckets == 64
        yield RuleTable(dp, monotonic_to_wall_offset())
    finally:
        dp.close()


def test_exact_sources_are_dropped_from_exact4_alone() -> None:
    dp = Datapath(DatapathConfig())
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        rng = random.Random(4)
        addrs = sorted({str(LAB4[rng.randrange(1, LAB4.num_addresses - 1)]) for _ in range(300)})
        for i, a in enumerate(addrs):
            table.add(exact(f"x{i}", a))
        assert ways_in_use(dp) == len(addrs)  # 300 in 4,096 buckets: none full
        for a in addrs:
            bits = filter_bits(dp, a)
            assert bits & abi.FILTER_EXACT4 and not bits & abi.FILTER_EXACT, a
        # BLOCKLIST emptied behind the table's back: EXACT4 still decides, in the bucket Python chose.
        for a in addrs:
            assert dp.map_delete("BLOCKLIST", ipaddress.IPv4Address(a).packed)
        assert all(verdict(dp, a) == XDP_DROP for a in addrs)
        near = [str(ipaddress.IPv4Address(a) + 1) for a in addrs]
        assert all(verdict(dp, a) == XDP_PASS for a in near if a not in addrs)
        for i in range(len(addrs)):
            table.delete(f"x{i}")
        assert ways_in_use(dp) == 0
        assert all(verdict(dp, a) == XDP_PASS for a in addrs)
    finally:
        dp.close()


def test_a_full_bucket_leaves_the_next_address_in_blocklist(small: RuleTable) -> None:
    dp = small._dp
    group = same_bucket(dp, 10)
    for i, a in enumerate(group):
        small.add(exact(f"g{i}", a))
    fast = [small._rules[f"g{i}"].exact4 for i in range(10)]
    assert fast == [True] * 8 + [False] * 2
    assert ways_in_use(dp) == 8
    assert filter_bits(dp, group[9]) & abi.FILTER_EXACT  # the 9th and 10th: looked up in BLOCKLIST
    for a in group:
        assert verdict(dp, a) == XDP_DROP, a
    # Each packet is credited to its own rule, whichever map found it.
    assert hits(small) == {f"g{i}": 1 for i in range(10)}

    # A rule elsewhere in g3's /24 keeps the program reading EXACT4 for it once g3 is gone.
    keeper = same_slash24_other_bucket(dp, group[3])
    small.add(exact("keeper", keeper))
    assert small._rules["keeper"].exact4
    small.delete("g3")  # a way frees
    assert filter_bits(dp, group[3]) & abi.FILTER_EXACT4  # so the program reads the bucket for g3
    assert verdict(dp, group[3]) == XDP_PASS
    assert all(verdict(dp, a) == XDP_DROP for i, a in enumerate(group) if i != 3)
    small.delete("keeper")
    small.delete("g9")  # a BLOCKLIST-only one
    assert verdict(dp, group[9]) == XDP_PASS
    assert verdict(dp, group[8]) == XDP_DROP
    small.add(exact("g3-again", group[3]))  # takes the free way
    assert small._rules["g3-again"].exact4 and ways_in_use(dp) == 8
    assert verdict(dp, group[3]) == XDP_DROP

    for rid in list(small._rules):
        small.delete(rid)
    assert ways_in_use(dp) == 0 and dp.map_len("BLOCKLIST") == 0
    assert filter_bits(dp, group[0]) == 0
    assert all(verdict(dp, a) == XDP_PASS for a in group)


def test_a_never_written_way_matches_no_address(small: RuleTable) -> None:
    """A new EXACT4 is all zeros; rank1 0 marks a free way, so address 0.0.0.0 is not matched
    by it.  (0.0.0.0 only appears in a BPF_PROG_TEST_RUN frame: nothing is sent.)"""
    dp = small._dp
    small.add(exact("near-zero", "0.0.0.5"))  # sets FILTER_EXACT4 for 0.0.0.0/24's bucket
    assert filter_bits(dp, "0.0.0.0") & abi.FILTER_EXACT4
    assert verdict(dp, "0.0.0.5") == XDP_DROP
    assert verdict(dp, "0.0.0.0") == XDP_PASS
    small.delete("near-zero")


def test_list_order_between_an_exact_source_and_a_prefix_follows_renumbering(small: RuleTable) -> None:
    dp = small._dp
    a, p = exact("exact", "198.18.9.9"), FilterRule("prefix", src_ip=ipaddress.ip_network("198.18.9.0/24"))
    small.replace_all([a, p])
    verdict(dp, "198.18.9.9")
    assert hits(small) == {"exact": 1, "prefix": 0}
    small.replace_all([p, a])  # the prefix first now: EXACT4's rank is rewritten
    verdict(dp, "198.18.9.9")
    assert hits(small) == {"exact": 1, "prefix": 1}
    small.replace_all([exact("exact", "198.18.9.9", Action.MONITOR), p])  # monitor ranks after any drop
    assert verdict(dp, "198.18.9.9") == XDP_DROP
    assert hits(small) == {"exact": 1, "prefix": 2}
    small.replace_all([exact("exact", "198.18.9.9", Action.MONITOR)])
    assert verdict(dp, "198.18.9.9") == XDP_PASS
    assert hits(small) == {"exact": 2}
    small.replace_all([])
    assert ways_in_use(dp) == 0


def test_a_new_id_for_the_same_address_takes_over_its_way(small: RuleTable) -> None:
    dp = small._dp
    small.replace_all([exact("old-id", "198.18.7.7")])
    small.replace_all([exact("new-id", "198.18.7.7")])
    assert ways_in_use(dp) == 1 and small._rules["new-id"].exact4
    assert verdict(dp, "198.18.7.7") == XDP_DROP
    assert hits(small) == {"new-id": 1}
    small.replace_all([])
    assert ways_in_use(dp) == 0


def test_a_removed_address_passes_while_its_slash24_still_has_rules(small: RuleTable) -> None:
    dp = small._dp
    a = "198.18.40.1"
    b = same_slash24_other_bucket(dp, a)
    small.replace_all([exact("a", a), exact("b", b)])
    small.delete("a")
    assert filter_bits(dp, a) & abi.FILTER_EXACT4  # the program still reads EXACT4 for a ...
    assert verdict(dp, a) == XDP_PASS  # ... and finds no way for it
    assert verdict(dp, b) == XDP_DROP
    assert ways_in_use(dp) == 1
    small.replace_all([])


def test_a_new_id_for_an_address_in_a_full_bucket_moves_it_to_blocklist(small: RuleTable) -> None:
    """No free way for the new rule: a way's slot is never rewritten in place (a packet could see
    the new rank with the old slot); the new rule is kept in BLOCKLIST and the old way retired."""
    dp = small._dp
    group = same_bucket(dp, 8)
    rules = [exact(f"g{i}", a) for i, a in enumerate(group)]
    small.replace_all(rules)
    assert ways_in_use(dp) == 8
    small.replace_all([*rules[:7], exact("renamed", group[7])])
    assert not small._rules["renamed"].exact4
    assert ways_in_use(dp) == 7
    assert filter_bits(dp, group[7]) & abi.FILTER_EXACT
    assert verdict(dp, group[7]) == XDP_DROP
    assert hits(small)["renamed"] == 1
    small.replace_all([])
    assert ways_in_use(dp) == 0 and dp.map_len("BLOCKLIST") == 0


def test_adopting_repairs_what_a_stop_between_two_writes_left_in_exact4(pin_dir: Path) -> None:
    """A stale rank and slot in a way, and a second live way for one address (a stop inside put):
    the adopting table makes EXACT4 say what BLOCKLIST says."""
    cfg = DatapathConfig(blocklist_max_entries=256)
    first = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(first, monotonic_to_wall_offset())
        group = same_bucket(first, 3)
        table.replace_all([exact("a", group[0]), exact("b", group[1]), exact("c", group[2], Action.MONITOR)])
        slot_c = table._rules["c"].slot
    finally:
        first.close()
    second = Datapath(cfg, pin_dir=pin_dir)
    try:
        seed, bits = second.read_config_raw()[3], cfg.exact4_buckets.bit_length() - 1
        key = bucket_of(ipaddress.IPv4Address(group[0]).packed, seed, bits).to_bytes(4, "little")
        ways = list(abi.EXACT4_BUCKET.unpack(second.map_lookup("EXACT4", key) or b""))
        w = abi.EXACT4_WAYS
        addr_a, addr_c = (int.from_bytes(ipaddress.IPv4Address(x).packed, "little") for x in (group[0], group[2]))
        ia, ic = ways[:w].index(addr_a), ways[:w].index(addr_c)
        ways[w + ic] = 1  # c, a monitor rule, as a drop of rank 0 ...
        ways[2 * w + ia] = slot_c  # ... and a credited to c's slot
        free = ways[w : 2 * w].index(0)
        ways[free], ways[w + free], ways[2 * w + free] = addr_a, 1, slot_c  # a second way for a
        second.map_update("EXACT4", key, abi.EXACT4_BUCKET.pack(*ways))
        assert verdict(second, group[2]) == XDP_DROP  # what the damage would do, unrepaired

        adopted = RuleTable(second, monotonic_to_wall_offset())
        ids = {str(r.src_ip.network_address): r.id for r in adopted.adopt_existing() if r.src_ip is not None}
        assert ways_in_use(second) == 3
        assert verdict(second, group[2]) == XDP_PASS  # a monitor rule again
        assert verdict(second, group[0]) == XDP_DROP
        # c: the damaged drop above and this monitor hit (RULE_HITS is pinned too); a: its own slot.
        assert hits(adopted) == {ids[group[0]]: 1, ids[group[1]]: 0, ids[group[2]]: 2}
        for rid in list(adopted._rules):
            adopted.delete(rid)
        assert ways_in_use(second) == 0
    finally:
        second.close()


def test_adopting_pinned_maps_learns_which_addresses_are_in_exact4(pin_dir: Path) -> None:
    cfg = DatapathConfig(blocklist_max_entries=256)
    first = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(first, monotonic_to_wall_offset())
        group = same_bucket(first, 9)
        for i, a in enumerate(group):
            table.add(exact(f"g{i}", a))
    finally:
        first.close()
    second = Datapath(cfg, pin_dir=pin_dir)
    try:
        assert second.reused_maps
        adopted = RuleTable(second, monotonic_to_wall_offset())
        rules = {str(r.src_ip.network_address): r.id for r in adopted.adopt_existing() if r.src_ip is not None}
        assert sorted(rules) == sorted(group)
        assert [adopted._rules[rules[a]].exact4 for a in group] == [True] * 8 + [False]
        assert all(verdict(second, a) == XDP_DROP for a in group)
        assert hits(adopted) == {rules[a]: 1 for a in group}
        for rid in list(adopted._rules):
            adopted.delete(rid)
        assert ways_in_use(second) == 0
        assert all(verdict(second, a) == XDP_PASS for a in group)
    finally:
        second.close()


def test_a_take_over_whose_last_exact4_write_fails_leaves_no_second_way(small: RuleTable) -> None:
    """An operator's block over an auto-block, whose EXACT4 write that retires the old way fails (after the new
    way is live): the rollback and a later delete leave no live way behind.  Until session 24 the rollback
    rewrote one of the two live ways and the other stayed: the address was dropped with no rule once a rule
    of its /24 set the filter bit, credited to whichever rule took that slot next (an attacker's review,
    by fault injection).  The control: the neighbour's rule alone drops only the neighbour."""
    dp = small._dp
    a = "198.18.44.4"
    neighbour = same_slash24_other_bucket(dp, a)
    auto = FilterRule("auto-syn_flood-" + a, Action.DROP, ipaddress.ip_network(a), auto=True)
    small.add(auto)
    real, calls = dp.map_update, []

    def failing(name: object, key: bytes, value: bytes) -> None:
        if name == "EXACT4":
            calls.append(key)
            if len(calls) == 3:  # key and slot, then the rank (live), then the old way retired: this one
                raise OSError(12, "Cannot allocate memory")
        real(name, key, value)  # type: ignore[arg-type]

    dp.map_update = failing  # type: ignore[method-assign]
    try:
        with pytest.raises(OSError):
            small.add(FilterRule("block-" + a, Action.DROP, ipaddress.ip_network(a)))
    finally:
        del dp.map_update
    assert [r.id for r in small.rules()] == [auto.id] and verdict(dp, a) == XDP_DROP and ways_in_use(dp) == 1
    small.delete(auto.id)
    small.add(exact("nb", neighbour))
    assert ways_in_use(dp) == 1 and verdict(dp, neighbour) == XDP_DROP
    assert verdict(dp, a) == XDP_PASS and hits(small) == {"nb": 1}
