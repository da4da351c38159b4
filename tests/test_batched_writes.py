"""Datapath.writes_batched(): the start's rule load written as one BPF_MAP_UPDATE_BATCH per map.

The same 1,505 rules (scattered exact sources, ten of them in one EXACT4 bucket of 8 ways, IPv4 and IPv6
prefixes, multi-field and monitor rules) loaded into three fresh programs, one write at a time and batched
twice: every map ends byte for byte the same, and so do the tables' own records, the verdicts
(BPF_PROG_TEST_RUN) are the same, and a batched load makes a handful of write syscalls where the other
makes thousands.  One batched load puts the exact sources in by RuleTable._install_exact (the writes kept:
fewer steps), the other two by _install; both batched loads write the maps in the same order.  Inside the
block a read, a delete or an fd sees the writes kept.
"""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import random
import threading
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from support.packets import frame

from ironpost_tui.errors import BlocklistFull, RuleRefused
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import AS_CREATED_MAX, DATAPATH_MAPS, Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import exact4
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2
DST = "198.19.255.1"


def rules(seed: int, bits: int) -> list[FilterRule]:
    """The load, with ten exact sources in one EXACT4 bucket of the hash ``seed`` (2^``bits`` buckets): two
    of them go to BLOCKLIST alone."""
    rnd = random.Random(20)
    lab = ipaddress.ip_network("198.18.0.0/15")
    exact = sorted({lab[rnd.randrange(1, lab.num_addresses - 1)] for _ in range(1200)})
    used = {bucket(a, seed, bits) for a in exact}
    empty = min(set(range(1 << bits)) - used)  # a bucket none of them is in (the hash seed is drawn per load)
    crowded = [a for a in lab.hosts() if bucket(a, seed, bits) == empty][:10]
    assert len(crowded) == 10
    exact += crowded
    out = [FilterRule(f"x{i}", Action.DROP, src_ip=ipaddress.ip_network(f"{a}/32")) for i, a in enumerate(exact)]
    out += [FilterRule(f"p{i}", Action.DROP, src_ip=ipaddress.ip_network(f"198.19.{i}.0/28")) for i in range(100)]
    out += [FilterRule(f"v6-{i}", Action.DROP, src_ip=ipaddress.ip_network(f"2001:db8:{i:x}::/48")) for i in range(100)]
    out += [FilterRule(f"m{i}", Action.DROP, dst_port=20000 + i, protocol=17) for i in range(64)]
    out += [FilterRule(f"mon{i}", Action.MONITOR, dst_port=30000 + i, protocol=6) for i in range(36)]
    return out


def bucket(addr: ipaddress.IPv4Address, seed: int, bits: int) -> int:
    return exact4.bucket_of(addr.packed, seed, bits)


LOOKUPS: dict[str, int] = {}  # load()'s single-entry reads, per kind of load
TABLES: dict[str, RuleTable] = {}  # each kind's table
INSTALLS: dict[str, Counter[str]] = {}  # each kind's rules by how RuleTable put them in
FLUSHED: dict[str, list[MapName]] = {}  # each batched kind's maps in the order their kept writes went in
KINDS = ("plain", "batched", "batched-long")  # batched-long: the exact sources by _install as well


def load(dp: Datapath, kind: str) -> int:
    """Load rules() into ``dp``'s fresh maps: the write syscalls it took (single updates, batch calls);
    its single-entry reads go to LOOKUPS."""
    batched = kind != "plain"
    calls = 0
    reads = 0
    single, batch, lookup = libbpf.map_update, libbpf.map_update_batch, libbpf.map_lookup
    install, install_exact = RuleTable._install, RuleTable._install_exact
    installs: Counter[str] = Counter()

    def counted_install(self: RuleTable, *a: Any, **k: Any) -> Any:
        installs["_install"] += 1
        return install(self, *a, **k)

    def counted_install_exact(self: RuleTable, rule: FilterRule, placement: Any, priority: int, holder: Any) -> Any:
        if kind == "batched-long":
            return counted_install(self, rule, priority)
        installs["_install_exact"] += 1
        return install_exact(self, rule, placement, priority, holder)

    flushed: list[MapName] = []
    flush = Datapath._flush

    def recorded_flush(self: Datapath, name: MapName) -> None:
        flushed.append(name)
        flush(self, name)

    def counted_lookup(*a: Any, **k: Any) -> Any:
        nonlocal reads
        reads += 1
        return lookup(*a, **k)

    def counted_single(*a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        return single(*a, **k)

    def counted_batch(*a: Any, **k: Any) -> Any:
        nonlocal calls
        calls += 1
        return batch(*a, **k)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(libbpf, "map_update", counted_single)
        mp.setattr(libbpf, "map_update_batch", counted_batch)
        mp.setattr(libbpf, "map_lookup", counted_lookup)
        mp.setattr(RuleTable, "_install", counted_install)
        mp.setattr(RuleTable, "_install_exact", counted_install_exact)
        mp.setattr(Datapath, "_flush", recorded_flush)
        table = RuleTable(dp, monotonic_to_wall_offset())
        config = dp.read_config_raw()
        with dp.writes_batched() if batched else contextlib.nullcontext():
            table.replace_all(rules(config[3], dp.cfg.exact4_buckets.bit_length() - 1))
    LOOKUPS[kind], TABLES[kind], INSTALLS[kind], FLUSHED[kind] = reads, table, installs, flushed
    return calls


@pytest.fixture(scope="module")
def loaded() -> Iterator[dict[str, tuple[Datapath, int]]]:
    """Three programs with the same rules: ``plain`` one write at a time, ``batched`` and ``batched-long``;
    each with its count of write syscalls."""
    out: dict[str, tuple[Datapath, int]] = {}
    seed = None
    try:
        for kind in KINDS:
            dp = Datapath(DatapathConfig())
            out[kind] = (dp, 0)
            config = list(dp.read_config_raw())
            if seed is None:
                seed = config[3]
            else:  # the hash seed the buckets of EXACT4, PREFIX4H and PREFIX6H are chosen by: the same
                config[3] = seed
                dp.write_config_raw(abi.CONFIG.pack(*config))
            out[kind] = (dp, load(dp, kind))
        yield out
    finally:
        for dp, _ in out.values():
            dp.close()


def contents(dp: Datapath, name: MapName) -> list[tuple[bytes, bytes]]:
    return sorted(dp.map_items(name))


@pytest.mark.parametrize("name", [n for n in DATAPATH_MAPS if n != MapName.EVENTS])
def test_every_map_ends_the_same(loaded: dict[str, tuple[Datapath, int]], name: MapName) -> None:
    plain, batched, long = (loaded[kind][0] for kind in KINDS)
    assert contents(batched, name) == contents(plain, name)
    assert contents(long, name) == contents(plain, name)


def test_the_short_path_writes_the_maps_in_the_same_order(loaded: dict[str, tuple[Datapath, int]]) -> None:
    assert FLUSHED["plain"] == []  # the control: nothing kept
    assert FLUSHED["batched"] == FLUSHED["batched-long"]
    assert FLUSHED["batched"].index(MapName.BLOCKLIST) < FLUSHED["batched"].index(MapName.EXACT4)


def test_the_tables_record_the_same(loaded: dict[str, tuple[Datapath, int]]) -> None:
    """What each table keeps of the rules it put in (slots, priorities, keys, filter atoms, inline ways),
    and the mirrors of the inline tables and the filter: alike, the overflowed bucket's two in BLOCKLIST
    alone in both."""
    plain = TABLES["plain"]
    for kind in ("batched", "batched-long"):
        assert TABLES[kind].status() == plain.status()
        mine, theirs = records(TABLES[kind]), records(plain)
        assert [name for name in mine if mine[name] != theirs[name]] == [], kind
    alone = alone_in_blocklist(plain)
    assert len(alone) == 2, alone  # the control: the bucket overflowed
    assert alone == alone_in_blocklist(TABLES["batched"])


def records(table: RuleTable) -> dict[str, Any]:
    """What a table keeps of its rules, its slots and the maps' mirrors."""
    names = ("_rules", "_by_key", "_by_slot", "_free_slots", "_retired", "_shapes", "_free_shapes", "_match_ranks")
    out = {name: getattr(table, name) for name in names}
    out.update(
        generation=table.generation,
        next_priority=table._next_priority,
        zeroed=bytes(table._zeroed),
        lpm={name: (dict(index._ids), list(index._sorted), dict(index._seq)) for name, index in table._lpm.items()},
        fragments=(table._fragments._keys, table._fragments._members, table._fragments._written),
        exact4=table._exact4._buckets,
        prefixh={name: {b: bk.pack() for b, bk in d.items()} for name, d in table._prefixh._buckets.items()},
        matchh=table._matchh._buckets,
        filter=table._pf._refs,
    )
    return out


def alone_in_blocklist(table: RuleTable) -> list[FilterRule]:
    """The exact sources in BLOCKLIST alone (no EXACT4 way: their bucket was full)."""
    return [i.rule for i in table._rules.values() if i.placement.map_name == MapName.BLOCKLIST and not i.exact4]


def test_the_batched_load_puts_the_exact_sources_in_by_the_short_path(loaded: dict[str, tuple[Datapath, int]]) -> None:
    n = len(TABLES["plain"]._rules)
    exact = sum(1 for i in TABLES["plain"]._rules.values() if i.placement.map_name == MapName.BLOCKLIST)
    assert exact > 1000 and n - exact == 300
    assert INSTALLS["plain"] == Counter({"_install": n})  # the control: each rule by _install
    assert INSTALLS["batched-long"] == Counter({"_install": n})
    assert INSTALLS["batched"] == Counter({"_install": n - exact, "_install_exact": exact})


def test_the_verdicts_are_the_same(loaded: dict[str, tuple[Datapath, int]]) -> None:
    first = TABLES["plain"].rules()[0]
    alone = alone_in_blocklist(TABLES["plain"])[0]
    cases = [
        (str(first.src_ip.network_address), 53, XDP_DROP),  # type: ignore[union-attr]
        (str(alone.src_ip.network_address), 53, XDP_DROP),  # type: ignore[union-attr]  # BLOCKLIST alone
        ("198.19.7.9", 53, XDP_DROP),  # a /28
        ("198.19.200.9", 20005, XDP_DROP),  # a multi-field rule's port
        ("198.19.200.9", 19999, XDP_PASS),  # its neighbour
    ]
    for dp, _ in loaded.values():
        got = [libbpf.prog_test_run(dp.prog_fd, frame(src, DST, port, "udp")).retval for src, port, _ in cases]
        assert got == [want for _, _, want in cases]


def test_the_batched_load_writes_per_map_not_per_entry(loaded: dict[str, tuple[Datapath, int]]) -> None:
    plain, batched = loaded["plain"][1], loaded["batched"][1]
    assert plain > 3000, plain  # the control: a write per entry (and per rule's hit counters)
    assert batched <= len(DATAPATH_MAPS), batched


def test_the_batched_load_reads_the_filter_words_from_one_read_of_each_array(
    loaded: dict[str, tuple[Datapath, int]],
) -> None:
    """The prefilter's read-modify-writes (a lookup per ADDR_FILTER word it sets) come from one batch
    read of the array in the block; the maps end the same (test_every_map_ends_the_same)."""
    assert LOOKUPS["plain"] > 500, LOOKUPS  # the control: a lookup per word
    assert LOOKUPS["batched"] <= 10, LOOKUPS


@pytest.fixture
def dp() -> Iterator[Datapath]:
    d = Datapath(DatapathConfig(blocklist_max_entries=64))
    try:
        yield d
    finally:
        d.close()


def test_inside_the_block_a_read_a_delete_and_an_fd_see_the_writes_kept(dp: Datapath) -> None:
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    lpm = ipaddress.ip_address("198.18.3.4").packed  # BLOCKLIST: the seed's map, by IPv4 address
    with dp.writes_batched():
        dp.map_update(MapName.BLOCKLIST, lpm, value)
        assert dp.map_lookup(MapName.BLOCKLIST, lpm) == value  # written before the read
        dp.map_update(MapName.BLOCKLIST, lpm, value)
        assert dp.map_delete(MapName.BLOCKLIST, lpm)
        dp.map_update(MapName.BLOCKLIST, lpm, value)
        assert libbpf.map_lookup(dp.map_fd(MapName.BLOCKLIST), lpm, len(value)) == value  # the fd: written
    assert dp.map_lookup(MapName.BLOCKLIST, lpm) == value


def test_only_the_batching_thread_keeps_writes_and_writes_them(dp: Datapath) -> None:
    """Another thread during the block neither writes the kept entries (a read of the map from it
    sees the map as it is) nor has its own writes kept; the keeping thread still reads its own."""
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    kept, direct = bytes([198, 18, 3, 4]), bytes([198, 18, 3, 5])
    seen: dict[str, object] = {}

    def other() -> None:
        try:
            seen["kept"] = dp.map_lookup(MapName.BLOCKLIST, kept)
            seen["len"] = dp.map_len(MapName.BLOCKLIST)
            dp.map_update(MapName.BLOCKLIST, direct, value)
            seen["direct"] = libbpf.map_lookup(dp.map_fd(MapName.BLOCKLIST), direct, len(value))
            with dp.writes_batched():
                pass
        except Exception as exc:
            seen["error"] = exc

    with dp.writes_batched():
        dp.map_update(MapName.BLOCKLIST, kept, value)
        thread = threading.Thread(target=other)
        thread.start()
        thread.join()
        assert seen["kept"] is None and seen["len"] == 0  # not written by the other thread's uses
        assert seen["direct"] == value  # its own write went in at once
        assert isinstance(seen["error"], RuntimeError)  # no second batch from another thread
        assert libbpf.map_lookup(dp.map_fd(MapName.BLOCKLIST), kept, len(value)) == value  # this thread: written
    # The control: the same reads after the block see both.
    assert dp.map_lookup(MapName.BLOCKLIST, kept) == value and dp.map_len(MapName.BLOCKLIST) == 2


def test_in_the_block_an_array_is_read_whole_once_under_the_writes_kept(
    dp: Datapath, monkeypatch: pytest.MonkeyPatch
) -> None:
    word = abi.MapName.ADDR_FILTER
    other_tools_bit, ours = (1 << 40).to_bytes(8, "little"), (1 << 3).to_bytes(8, "little")
    # Before the block, through the map's fd (another tool's write, as the ABI lets it): in the map, and
    # the array no longer known as created (test_an_array_as_created_is_known_without_a_read).
    libbpf.map_update(dp.map_fd(word), (5).to_bytes(4, "little"), other_tools_bit)
    calls = {"single": 0, "whole": 0}
    single, whole = libbpf.map_lookup, libbpf.map_lookup_batch

    def counted_single(*a: Any, **k: Any) -> Any:
        calls["single"] += 1
        return single(*a, **k)

    def counted_whole(*a: Any, **k: Any) -> Any:
        calls["whole"] += 1
        return whole(*a, **k)

    monkeypatch.setattr(libbpf, "map_lookup", counted_single)
    monkeypatch.setattr(libbpf, "map_lookup_batch", counted_whole)
    size = abi.ADDR_FILTER_WORDS
    with dp.writes_batched():
        assert dp.map_lookup(word, (5).to_bytes(4, "little")) == other_tools_bit  # the map's own
        assert dp.map_lookup(word, (6).to_bytes(4, "little")) == bytes(8)
        dp.map_update(word, (6).to_bytes(4, "little"), ours)
        assert dp.map_lookup(word, (6).to_bytes(4, "little")) == ours  # the write kept comes first
        assert dp.map_lookup(word, size.to_bytes(4, "little")) is None  # past the end, as the kernel says
        assert calls == {"single": 0, "whole": 1}
        dp.map_fd(word)  # writes what is kept: the whole read is stale now ...
        assert dp.map_lookup(word, (6).to_bytes(4, "little")) == ours  # ... and is made again
        assert calls == {"single": 0, "whole": 2}
    assert dp.map_lookup(word, (6).to_bytes(4, "little")) == ours
    assert calls == {"single": 1, "whole": 2}  # the control: outside the block, one lookup per read


def _whole(dp: Datapath, name: MapName) -> bytes:
    """The kernel's whole read of an array, values only."""
    m = dp._maps[name]
    _keys, values, count = libbpf.map_lookup_batch(m.fd, 4, m.value_bytes, m.max_entries)
    assert count == m.max_entries
    return values


def whole_reads(monkeypatch: pytest.MonkeyPatch) -> dict[str, int]:
    """{"whole": the kernel's whole reads of a map (map_lookup_batch) from now on}."""
    reads = {"whole": 0}
    whole = libbpf.map_lookup_batch

    def counted(*a: Any, **k: Any) -> Any:
        reads["whole"] += 1
        return whole(*a, **k)

    monkeypatch.setattr(libbpf, "map_lookup_batch", counted)
    return reads


@pytest.mark.parametrize("seed", range(4))
def test_an_array_as_created_is_known_without_a_read(dp: Datapath, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    """New maps, never pinned: a whole read of a plain array in the block is built from zeros and the
    writes this Datapath made since (single, batched, replaced), with no syscall, and is what the kernel
    reads (checked word by word against a real batch read, at random)."""
    rnd = random.Random(seed)
    word, size = MapName.ADDR_FILTER, abi.ADDR_FILTER_WORDS
    index = lambda i: i.to_bytes(4, "little")  # noqa: E731
    value = lambda: rnd.getrandbits(64).to_bytes(8, "little")  # noqa: E731
    for _ in range(200):
        how = rnd.randrange(3)
        if how == 0:
            dp.map_update(word, index(rnd.randrange(size)), value())
        elif how == 1:
            dp.map_update_batch(word, [(index(rnd.randrange(size)), value()) for _ in range(rnd.randrange(1, 9))])
        else:
            assert dp.map_replace(word, index(rnd.randrange(size)), value())
    assert word in dp._as_created
    kernel = _whole(dp, word)
    assert any(kernel), "the writes above reached the map"
    reads = whole_reads(monkeypatch)
    with dp.writes_batched():
        for i in [*rnd.sample(range(size), 300), *(int.from_bytes(k, "little") for k in dp._as_created[word])]:
            assert dp.map_lookup(word, index(i)) == kernel[i * 8 : i * 8 + 8], i
    assert reads == {"whole": 0}


def test_an_array_not_known_as_created_is_read(dp: Datapath, monkeypatch: pytest.MonkeyPatch) -> None:
    """The controls: the fd handed out (whoever holds it may write), a write the kernel refused, more
    writes than are followed: the array is read from the kernel."""
    reads = whole_reads(monkeypatch)
    one = (1).to_bytes(8, "little")
    # An fd handed out: another tool's write through it is read, not assumed zero.
    libbpf.map_update(dp.map_fd(MapName.ADDR_FILTER), (7).to_bytes(4, "little"), one)
    # More writes than are followed: the array is read.
    many = [(i.to_bytes(4, "little"), one) for i in range(AS_CREATED_MAX + 1)]
    assert dp.map_update_batch(MapName.PORT_FILTER, many) == (len(many), None)
    # A write the kernel refused (past the end): whatever it did, the array is read.
    with pytest.raises(BlocklistFull):
        dp.map_update(MapName.SHAPES, (1 << 20).to_bytes(4, "little"), bytes(dp._maps[MapName.SHAPES].value_bytes))
    with dp.writes_batched():
        assert dp.map_lookup(MapName.ADDR_FILTER, (7).to_bytes(4, "little")) == one
        assert dp.map_lookup(MapName.PORT_FILTER, AS_CREATED_MAX.to_bytes(4, "little")) == one
        assert dp.map_lookup(MapName.SHAPES, (0).to_bytes(4, "little")) == bytes(dp._maps[MapName.SHAPES].value_bytes)
        assert not {MapName.ADDR_FILTER, MapName.PORT_FILTER, MapName.SHAPES} & set(dp._as_created)
        assert dp.map_lookup(MapName.EXACT4, (0).to_bytes(4, "little")) == bytes(dp._maps[MapName.EXACT4].value_bytes)
        assert reads == {"whole": 3}  # the positive control: EXACT4, which nothing touched, was not read
    # After the first block (the start's load) no array is followed: a whole read is the kernel's.
    assert dp._as_created == {}
    with dp.writes_batched():
        dp.map_lookup(MapName.EXACT4, (0).to_bytes(4, "little"))
    assert reads == {"whole": 4}


def test_a_map_type_without_batch_writes_gets_the_kept_writes_one_by_one(
    dp: Datapath, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A kernel without BPF_MAP_UPDATE_BATCH for a map type answers EOPNOTSUPP having written nothing:
    the flush writes the entries one at a time (they were kept again, and lost, before)."""
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    keys = [bytes([198, 18, 6, i]) for i in range(1, 6)]
    batch = libbpf.map_update_batch

    def unsupported(*_args: Any, **_kw: Any) -> None:
        raise libbpf.BatchError("bpf_map_update_batch", errno.EOPNOTSUPP, 0)

    monkeypatch.setattr(libbpf, "map_update_batch", unsupported)
    with dp.writes_batched():
        for k in keys:
            dp.map_update(MapName.BLOCKLIST, k, value)
    monkeypatch.setattr(libbpf, "map_update_batch", batch)
    assert sorted(k for k, _ in dp.map_items(MapName.BLOCKLIST)) == keys


def test_a_batch_write_or_a_replace_in_the_block_is_seen_by_the_next_lookup(dp: Datapath) -> None:
    """The whole read of an array is dropped by any write to it, not only by the writes kept."""
    word = MapName.ADDR_FILTER
    index, one, two = (9).to_bytes(4, "little"), (1).to_bytes(8, "little"), (2).to_bytes(8, "little")
    with dp.writes_batched():
        assert dp.map_lookup(word, index) == bytes(8)  # read whole now
        dp.map_update_batch(word, [(index, one)])
        assert dp.map_lookup(word, index) == one
        assert dp.map_replace(word, index, two)
        assert dp.map_lookup(word, index) == two


def test_a_map_too_small_for_the_batch_is_said_as_a_full_map(dp: Datapath) -> None:
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    with pytest.raises(BlocklistFull, match="BLOCKLIST is full"), dp.writes_batched():
        for i in range(65):
            dp.map_update(MapName.BLOCKLIST, bytes([198, 18, 9, i]), value)
    assert dp.map_len(MapName.BLOCKLIST) == 64  # what fits is in


def test_a_batch_entry_of_the_wrong_size_is_refused_whole(dp: Datapath) -> None:
    """The kernel reads a batch's keys end to end: an 8-byte key among 4-byte ones would shift every
    entry after it (the control: the same entries one at a time are refused as well)."""
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    entries = [(bytes([198, 18, 9, 1]), value), (bytes(8), value), (bytes([198, 18, 9, 2]), value)]
    with pytest.raises(ValueError, match="wrong size"):
        dp.map_update_batch(MapName.BLOCKLIST, entries)
    assert dp.map_len(MapName.BLOCKLIST) == 0
    with pytest.raises(ValueError, match="key of 8 bytes"):
        dp.map_update(MapName.BLOCKLIST, bytes(8), value)


def test_a_batch_reader_reads_into_the_same_buffers_each_time(dp: Datapath) -> None:
    """BatchReader (the sketch and top-talker readers'): every entry, as map_lookup_batch copies them,
    into bytearrays allocated once; a map that shrank reads fewer, the rest of the buffer unread."""
    fd = dp.map_fd(MapName.BLOCKLIST)
    value = abi.BLOCKLIST_VALUE.pack(abi.ACTION_DROP, abi.ACTION_DROP, 0, 1, 1, 1, 1)
    keys = [ipaddress.IPv4Address(f"198.18.3.{i}").packed for i in range(1, 41)]
    for k in keys:
        libbpf.map_update(fd, k, value)
    m = dp._maps[MapName.BLOCKLIST]
    reader = libbpf.BatchReader(fd, 4, m.value_bytes, m.max_entries)
    buffers = (reader.keys, reader.values)
    assert reader.read() == 40
    got = {bytes(reader.keys[i * 4 : i * 4 + 4]) for i in range(40)}
    assert got == set(keys)
    copied = libbpf.map_lookup_batch(fd, 4, m.value_bytes, m.max_entries)
    assert copied[2] == 40 and set(copied[0][i : i + 4] for i in range(0, 160, 4)) == got
    for k in keys[10:]:
        libbpf.map_delete(fd, k)
    assert reader.read() == 10  # fewer: only the first 10 keys' room is written
    assert {bytes(reader.keys[i * 4 : i * 4 + 4]) for i in range(10)} == set(keys[:10])
    assert reader.keys is buffers[0] and reader.values is buffers[1]
    assert reader.values[: m.value_bytes] == value.ljust(m.value_bytes, b"\0")[: m.value_bytes]


def test_rule_hits_are_cleared_only_where_they_may_not_be_zero(dp: Datapath, monkeypatch: pytest.MonkeyPatch) -> None:
    """New maps: the first table's rules take slots the kernel created zero, with no write; a slot a rule
    counted in, taken again (here by a second table on the same maps), is zeroed before it counts."""
    cleared: list[int] = []
    real = dp.percpu_clear
    monkeypatch.setattr(dp, "percpu_clear", lambda name, index: (cleared.append(index), real(name, index))[1])
    src = "198.18.5.9"
    first = RuleTable(dp, monotonic_to_wall_offset())
    first.add(FilterRule("a", Action.DROP, src_ip=ipaddress.ip_network(src)))
    first.add(FilterRule("b", Action.DROP, src_ip=ipaddress.ip_network("198.18.5.10")))
    assert cleared == []  # new maps: nothing to zero
    libbpf.prog_test_run(dp.prog_fd, frame(src, "198.19.0.1", 53, "udp"))
    slot = first._rules["a"].slot
    assert sum(libbpf_hits(dp, slot)) == 1
    first.replace_all([])
    second = RuleTable(dp, monotonic_to_wall_offset())  # the maps' hits are no longer as created
    second.add(FilterRule("c", Action.DROP, src_ip=ipaddress.ip_network("198.18.5.11")))
    assert second._rules["c"].slot == slot and cleared == [slot]
    assert sum(libbpf_hits(dp, slot)) == 0  # a's drop is not c's
    second.replace_all([])


def libbpf_hits(dp: Datapath, slot: int) -> list[int]:
    return [abi.RULE_HIT.unpack(raw)[0] for raw in dp.percpu_entries(MapName.RULE_HITS, slot)]


def test_inline_ways_try_put_is_for_kept_writes_and_changes_nothing_without_room(dp: Datapath) -> None:
    """try_put (has_room and put in one pass) only where the writes are kept: their order is not kept. A
    ninth key of a full 8-way bucket gets False and leaves the bucket as it was; a key's own slot again
    changes its rank in place."""
    ways = exact4.Exact4(dp)
    seed, bits = dp.read_config_raw()[3], dp.cfg.exact4_buckets.bit_length() - 1
    lab = ipaddress.ip_network("198.18.0.0/15")
    first = next(lab.hosts())
    same = [a for a in lab.hosts() if bucket(a, seed, bits) == bucket(first, seed, bits)][:9]
    with pytest.raises(RuntimeError, match="outside kept writes"):
        ways.try_put(same[0].packed, 0, 0)
    assert ways.get(same[0].packed) is None  # refused: nothing changed
    with dp.writes_batched():
        assert [ways.try_put(a.packed, i, i) for i, a in enumerate(same[:8])] == [True] * 8
        before = {b: list(w) for b, w in ways._buckets.items()}
        assert not ways.has_room(same[8].packed, 8)  # the control: has_room says the same
        assert ways.try_put(same[8].packed, 8, 8) is False
        assert ways._buckets == before
        assert ways.try_put(same[3].packed, 42, 3) is True  # its own slot: the rank changes in place
    want = [(i, i) for i in range(8)]
    want[3] = (42, 3)
    assert [ways.get(a.packed) for a in same] == [*want, None]
    bucket_raw = dp.map_lookup(MapName.EXACT4, bucket(first, seed, bits).to_bytes(4, "little"))
    assert bucket_raw == abi.EXACT4_BUCKET.pack(*ways._buckets[bucket(first, seed, bits)])  # written at the block's end


class _KeptMaps:
    """Just what an inline table asks of its Datapath, the writes kept: the hash seed, and the last value
    written per bucket."""

    def __init__(self, buckets: int, seed: int) -> None:
        self.cfg = DatapathConfig(blocklist_max_entries=buckets * abi.EXACT4_WAYS)
        self.seed = seed
        self.reused_maps = False
        self.written: dict[bytes, bytes] = {}

    def read_config_raw(self) -> tuple[int, ...]:
        return (0, 0, 0, self.seed)

    def writes_kept(self) -> bool:
        return True

    def map_update(self, name: MapName, key: bytes, value: bytes) -> None:
        assert name == MapName.EXACT4
        self.written[key] = value


@pytest.mark.parametrize("seed", range(6))
def test_try_put_is_has_room_then_put(seed: int) -> None:
    """Two mirrors of one small EXACT4 given the same random puts (keys of a few crowded buckets, slots and
    ranks drawn again and again, so that keys come back under their own and under other slots), one by
    has_room then put, one by try_put: the same answers, the same ways, the same last writes.  Each
    starts with a bucket holding two live ways of one key (a put stopped half-way) that the puts meet."""
    rnd = random.Random(seed)
    maps = [_KeptMaps(16, 0x9E3779B9 + seed) for _ in range(2)]
    tables = [exact4.Exact4(m) for m in maps]  # type: ignore[arg-type]
    bits = maps[0].cfg.exact4_buckets.bit_length() - 1
    lab = ipaddress.ip_network("198.18.0.0/22")  # some 90 keys for 24 ways
    keys = [a.packed for a in lab.hosts() if exact4.bucket_of(a.packed, maps[0].seed, bits) < 3]
    twice = keys[0]
    for t in tables:  # two live ways of one key, slots 7 and 9, a third way free
        b = exact4.bucket_of(twice, maps[0].seed, bits)
        ways = t._empty()
        w = abi.EXACT4_WAYS
        ways[0], ways[w], ways[2 * w] = t._key(twice), 5, 7
        ways[1], ways[w + 1], ways[2 * w + 1] = t._key(twice), 6, 9
        t._buckets[b] = ways
    # That bucket full: the key's second way (slot 9) credited again has no room, as has_room says (it looks
    # at the key's first way); its first (slot 7) has, and the second way goes.
    b = exact4.bucket_of(twice, maps[0].seed, bits)
    others = [k for k in keys if k != twice and exact4.bucket_of(k, maps[0].seed, bits) == b][: abi.EXACT4_WAYS - 2]
    for t in tables:
        with_room = [t.try_put(k, 1, 30 + i) for i, k in enumerate(others)]
        assert with_room == [True] * len(others) and t._free(t._buckets[b]) is None
    assert tables[0].has_room(twice, 9) is False and tables[1].try_put(twice, 3, 9) is False
    assert tables[1]._buckets == tables[0]._buckets
    assert tables[0].has_room(twice, 7) is True and tables[1].try_put(twice, 3, 7) is True
    tables[0].put(twice, 3, 7)
    assert tables[1]._buckets == tables[0]._buckets and tables[1].get(twice) == (3, 7)
    answers: list[list[bool]] = [[], []]
    for _ in range(600):
        key, rank, slot = rnd.choice(keys), rnd.randrange(100), rnd.choice([7, 8, 9, *range(20, 40)])
        room = tables[0].has_room(key, slot)
        if room:
            tables[0].put(key, rank, slot)
        answers[0].append(room)
        answers[1].append(tables[1].try_put(key, rank, slot))
        assert tables[1]._buckets == tables[0]._buckets
    assert answers[0] == answers[1]
    assert True in answers[0] and False in answers[0]  # the control: both answers were met
    assert maps[1].written == maps[0].written


def test_a_kept_load_takes_an_entry_over_and_refuses_a_second_rule_on_one_source(dp: Datapath) -> None:
    """In kept writes the short path is for a new exact source alone: a new id on a source a going rule holds
    takes its entry over (by _install), and two rules on one source are refused as one at a time refuses
    them."""
    table = RuleTable(dp, monotonic_to_wall_offset())
    net = ipaddress.ip_network("198.18.7.1/32")
    table.add(FilterRule("a", Action.DROP, src_ip=net))
    with dp.writes_batched():
        table.replace_all([FilterRule("b", Action.DROP, src_ip=net)])
    assert [r.id for r in table.rules()] == ["b"]
    assert dp.map_lookup(MapName.BLOCKLIST, net.network_address.packed) is not None
    twice = [FilterRule(i, Action.DROP, src_ip=ipaddress.ip_network("198.18.7.3/32")) for i in ("c", "d")]
    with pytest.raises(RuleRefused, match="rule 'd' matches exactly the packets rule 'c' matches"):
        with dp.writes_batched():
            table.replace_all([*table.rules(), *twice])
    plain = RuleTable(dp, monotonic_to_wall_offset())
    with pytest.raises(RuleRefused, match="rule 'd' matches exactly the packets rule 'c' matches"):
        plain.replace_all(twice)  # the control: one write at a time refuses it alike


def test_a_batch_of_values_of_the_wrong_size_or_of_keys_all_of_another_size_is_refused(dp: Datapath) -> None:
    value = abi.BLOCKLIST_VALUE.pack(0, 0, 0, 0, 0, 0, 0)
    short = [(bytes([198, 18, 9, 1]), value), (bytes([198, 18, 9, 2]), value[:-1])]
    with pytest.raises(ValueError, match="wrong size"):
        dp.map_update_batch(MapName.BLOCKLIST, short)
    with pytest.raises(ValueError, match="wrong size"):
        dp.map_update_batch(MapName.BLOCKLIST, [(bytes(8), value), (bytes(8), value)])
    assert dp.map_len(MapName.BLOCKLIST) == 0
    assert dp.map_update_batch(MapName.BLOCKLIST, short[:1]) == (1, None)  # the control: the right sizes go in
