"""ADDR_FILTER, PORT_FILTER and CONFIG's masks (ironpost_tui/rules/prefilter.py) against the real program.

For every way a rule can reach the filters (a bucket, up to 256 buckets, a wild flag or mask) the
packets it covers are dropped and a neighbour outside it passes, through BPF_PROG_TEST_RUN; and once
the rules are gone the filters are empty again: no bit outlives its rules.
"""

from __future__ import annotations

import contextlib
import ipaddress
import random
from collections.abc import Callable, Iterator

import pytest
from support.packets import frame

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.prefilter import Atom, Prefilter, _word_bit, source_atoms
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2


@pytest.fixture(scope="module")
def table() -> Iterator[RuleTable]:
    dp = Datapath(DatapathConfig())
    try:
        yield RuleTable(dp, monotonic_to_wall_offset())
    finally:
        dp.close()


def verdict(table: RuleTable, data: bytes) -> int:
    return libbpf.prog_test_run(table._dp.prog_fd, data).retval


def filters_empty(table: RuleTable) -> bool:
    dp = table._dp
    words = [dp.map_dump(name)[1] for name in ("ADDR_FILTER", "PORT_FILTER")]
    config = dp.read_config_raw()
    return (
        not any(any(w) for w in words)
        and config[2] == 0
        and config[4] == abi.NO_MATCH
        and config[5:8] == (0, 0, 0)
        and not any(config[8])
    )


def r(rid: str, **kw: object) -> FilterRule:
    nets = {k: ipaddress.ip_network(v) for k, v in kw.items() if k in ("src_ip", "dst_ip")}
    rest = {k: v for k, v in kw.items() if k not in ("src_ip", "dst_ip")}
    return FilterRule(rid, Action.DROP, **nets, **rest)  # type: ignore[arg-type]


# (rule, a packet it drops, a packet it passes)
CASES = [
    pytest.param(
        r("exact", src_ip="198.18.5.7/32"),
        frame("198.18.5.7", "198.19.0.1"),
        frame("198.18.5.8", "198.19.0.1"),
        id="v4-exact-one-bucket",
    ),  # fmt: skip
    pytest.param(
        r("p24", src_ip="198.18.6.0/24"),
        frame("198.18.6.200", "198.19.0.1"),
        frame("198.18.7.1", "198.19.0.1"),
        id="v4-/24-one-bucket",
    ),  # fmt: skip
    pytest.param(
        r("p20", src_ip="198.18.16.0/20"),
        frame("198.18.31.9", "198.19.0.1"),
        frame("198.18.32.9", "198.19.0.1"),
        id="v4-/20-16-buckets",
    ),  # fmt: skip
    pytest.param(
        r("p16", src_ip="198.18.0.0/16"),
        frame("198.18.255.1", "198.19.0.1"),
        frame("198.19.0.9", "198.19.0.1"),
        id="v4-/16-256-buckets",
    ),  # fmt: skip
    pytest.param(
        r("p15", src_ip="198.18.0.0/15"),
        frame("198.19.200.1", "198.18.0.1"),
        frame("198.20.0.1", "198.18.0.1"),
        id="v4-/15-wild-flag",
    ),  # fmt: skip
    pytest.param(
        r("v6-128", src_ip="2001:db8::7/128"),
        frame("2001:db8::7", "2001:db8:1::1"),
        frame("2001:db8::8", "2001:db8:1::1"),
        id="v6-exact",
    ),  # fmt: skip
    pytest.param(
        r("v6-44", src_ip="2001:db8:10::/44"),
        frame("2001:db8:1f::1", "2001:db8:1::1"),
        frame("2001:db8:20::1", "2001:db8:1::1"),
        id="v6-/44-16-buckets",
    ),  # fmt: skip
    pytest.param(
        r("v6-32", src_ip="2001:db8::/32"),
        frame("2001:db8:ffff::1", "2001:db9::1"),
        frame("2001:db9::1", "2001:db8::1"),
        id="v6-/32-wild-flag",
    ),  # fmt: skip
    pytest.param(
        r("m-src", src_ip="198.18.40.0/22", dst_port=443, protocol=6),
        frame("198.18.43.1", "198.19.0.1", 443),
        frame("198.18.44.1", "198.19.0.1", 443),
        id="shape-src-buckets",
    ),  # fmt: skip
    pytest.param(
        r("m-src-wild", src_ip="198.16.0.0/12", dst_port=443),
        frame("198.18.0.1", "198.19.0.1", 443),
        frame("198.18.0.1", "198.19.0.1", 444),
        id="shape-src-wild",
    ),  # fmt: skip
    pytest.param(
        r("m-dst", dst_ip="198.19.8.0/24", protocol=17),
        frame("198.18.0.1", "198.19.8.9", 53, "udp"),
        frame("198.18.0.1", "198.19.8.9", 53),
        id="shape-dst-and-protocol",
    ),  # fmt: skip
    pytest.param(
        r("m-dst-wild", dst_ip="2001:db8::/33", dst_port=22),
        frame("2001:db9::1", "2001:db8::5", 22),
        frame("2001:db9::1", "2001:db8:8000::5", 22),
        id="shape-v6-dst-wild",
    ),  # fmt: skip
    pytest.param(
        r("m-port", dst_port=8443),
        frame("198.18.0.1", "198.19.0.1", 8443),
        frame("198.18.0.1", "198.19.0.1", 8444),
        id="shape-port-only",
    ),  # fmt: skip
]


@pytest.mark.parametrize(("rule", "dropped", "passed"), CASES)
def test_each_way_into_the_filters_drops_what_it_should_and_leaves_nothing(
    table: RuleTable, rule: FilterRule, dropped: bytes, passed: bytes
) -> None:
    assert filters_empty(table)
    assert verdict(table, dropped) == XDP_PASS
    table.add(rule)
    try:
        assert verdict(table, dropped) == XDP_DROP
        assert verdict(table, passed) == XDP_PASS
    finally:
        table.delete(rule.id)
    assert verdict(table, dropped) == XDP_PASS
    assert filters_empty(table)


def test_allowlist_buckets_and_wild_allow(table: RuleTable) -> None:
    table.add(r("any", src_ip="0.0.0.0/0"))
    try:
        data = frame("198.18.9.9", "198.19.0.1")
        assert verdict(table, data) == XDP_DROP
        for protected in ("198.18.9.0/24", "198.16.0.0/12"):  # buckets; wild (CFG_WILD_ALLOW4)
            table.set_allowlist({ipaddress.ip_network(protected): 1})
            assert verdict(table, data) == XDP_PASS, protected
            table.set_allowlist({})
            assert verdict(table, data) == XDP_DROP, protected
    finally:
        table.delete("any")
    assert filters_empty(table)


def test_many_overlapping_rules_in_any_order_leave_the_filters_empty(table: RuleTable) -> None:
    rng = random.Random(7)
    nets = ["198.18.0.0/16", "198.18.4.0/22", "198.18.4.7/32", "198.18.4.8/32", "198.18.0.0/15", "2001:db8::/40",
            "2001:db8::/48", "2001:db8::1/128"]  # fmt: skip
    rules = [r(f"s{i}", src_ip=n) for i, n in enumerate(nets)]
    rules += [r(f"m{i}", src_ip=n, dst_port=1000 + i % 3) for i, n in enumerate(nets)]
    for _ in range(3):
        rng.shuffle(rules)
        for rule in rules:
            table.add(rule)
        assert verdict(table, frame("198.18.4.7", "198.19.0.1", 1000)) == XDP_DROP
        rng.shuffle(rules)
        for rule in rules:
            table.delete(rule.id)
        assert filters_empty(table)


def test_bucket_function_matches_the_program_for_random_addresses(table: RuleTable) -> None:
    """A prefix rule set through the filter is found for addresses all over the space (a Python/C
    disagreement in filter_bucket would leave the right bucket empty and the packet passing)."""
    rng = random.Random(11)
    for _ in range(40):
        a4 = ipaddress.IPv4Address(rng.getrandbits(32))
        a6 = ipaddress.IPv6Address((0x20010DB8 << 96) | rng.getrandbits(96))
        rules = [r("r4", src_ip=f"{a4}/32"), r("r6", src_ip=f"{a6}/128")]
        for rule in rules:
            table.add(rule)
        try:
            assert verdict(table, frame(str(a4), "198.19.0.1")) == XDP_DROP, a4
            assert verdict(table, frame(str(a6), "2001:db8::1")) == XDP_DROP, a6
        finally:
            for rule in rules:
                table.delete(rule.id)


UDP9 = r("m", dst_port=9, protocol=17)


@pytest.mark.parametrize(
    "first, second",
    [
        pytest.param(UDP9, r("m", dst_port=9, protocol=17, src_ip="198.18.9.2/32"), id="narrowed"),
        pytest.param(UDP9, r("m", dst_port=10, protocol=17), id="other-port"),
    ],
)
def test_a_match_rule_moved_to_another_match_entry_still_matches(
    table: RuleTable, first: FilterRule, second: FilterRule
) -> None:
    """An update that moves a MATCH rule to a new MATCH key installs the new entry under the same id
    before the old goes; removing the old entry must not take the new one's rank out of the published
    best MATCH rank (CONFIG.match_rank), or the program skips the shapes and the rule matches nothing."""
    port = first.dst_port or 0
    hit = frame("198.18.9.2", "198.19.0.1", second.dst_port or 0, "udp")
    miss = frame("198.18.9.3", "198.19.0.1", second.dst_port or 0, "udp") if second.src_ip else None
    table.add(first)
    try:
        assert verdict(table, frame("198.18.9.2", "198.19.0.1", port, "udp")) == XDP_DROP
        table.update(second)
        assert table._dp.read_config_raw()[4] != abi.NO_MATCH
        assert verdict(table, hit) == XDP_DROP
        if miss is not None:
            assert verdict(table, miss) == XDP_PASS  # the narrowed rule no longer drops the others
    finally:
        table.delete("m")
    assert filters_empty(table)


def test_deferred_writes_each_word_once_at_the_end_and_keeps_a_remove_in_order() -> None:
    """Prefilter.deferred() (the start's batched load): the words the adds change are written when the
    block ends, not per add (the control: the same adds outside it write per add); a bit added and taken
    away inside ends clear, one still counted ends set; the words end as the plain adds leave them."""
    nets = [ipaddress.ip_network(f"198.18.{i}.9/32") for i in range(40)]
    atoms = [source_atoms(abi.MapName.BLOCKLIST, n) for n in nets]
    ends: list[bytes] = []
    for deferred in (False, True):
        dp = Datapath(DatapathConfig())
        try:
            pf = Prefilter(dp)
            writes: list[bytes] = []
            dp.map_update = _recording(dp.map_update, writes)  # type: ignore[method-assign]
            with pf.deferred() if deferred else contextlib.nullcontext():
                for a in atoms:
                    pf.add(a)
                assert (writes == []) == deferred  # nothing yet inside the block; a write per add outside
                pf.add(atoms[0])  # a second rule on the first bucket
                pf.remove(atoms[0])
                pf.remove(atoms[1])  # counted in, then out: its bit ends clear
            ends.append(dp.map_dump(abi.MapName.ADDR_FILTER)[1])
            assert word_bit_set(dp, atoms[0][0]) and not word_bit_set(dp, atoms[1][0])
            if deferred:
                assert len(writes) == len(set(writes))  # each word once
            else:
                assert len(writes) == len(atoms) + 1 > len(set(writes))  # the control: per add and remove
        finally:
            dp.close()
    assert ends[0] == ends[1]


def _recording(
    write: Callable[[MapName, bytes, bytes], None], keys: list[bytes]
) -> Callable[[MapName, bytes, bytes], None]:
    def recorded(name: MapName, key: bytes, value: bytes) -> None:
        keys.append(key)
        write(name, key, value)

    return recorded


def word_bit_set(dp: Datapath, atom: Atom) -> bool:
    name, idx, mask = _word_bit(atom)
    word = dp.map_lookup(name, idx.to_bytes(4, "little")) or bytes(8)
    return bool(int.from_bytes(word, "little") & mask)


def test_deferred_writes_what_waits_when_the_block_ends_in_an_error() -> None:
    """The filters stay a superset of the maps: an error inside deferred() still writes the counted bits."""
    dp = Datapath(DatapathConfig())
    try:
        pf = Prefilter(dp)
        a = source_atoms(abi.MapName.BLOCKLIST, ipaddress.ip_network("198.18.7.7/32"))
        with pytest.raises(RuntimeError), pf.deferred():
            pf.add(a)
            assert not word_bit_set(dp, a[0])  # waiting
            raise RuntimeError("a rule refused half-way")
        assert word_bit_set(dp, a[0])
    finally:
        dp.close()


def test_another_threads_add_during_deferred_is_written_at_once() -> None:
    """deferred() belongs to its thread, as the Datapath's kept writes do: another thread's add() is
    written when it is made (the control: the deferring thread's own add waits for the block's end)."""
    import threading

    dp = Datapath(DatapathConfig())
    try:
        pf = Prefilter(dp)
        mine, theirs = (
            source_atoms(abi.MapName.BLOCKLIST, ipaddress.ip_network(a)) for a in ("198.18.8.8", "198.18.9.9")
        )
        with pf.deferred():
            pf.add(mine)
            other = threading.Thread(target=pf.add, args=(theirs,))
            other.start()
            other.join()
            assert word_bit_set(dp, theirs[0]) and not word_bit_set(dp, mine[0])
        assert word_bit_set(dp, mine[0])
    finally:
        dp.close()
