"""The top-talker and sketch readers skip what did not change a block at a time (a block of ways of a top
table, a set and then each CPU's ways of a sketch set) before they compare way by way.  Their deltas are
checked here against the same readers comparing every way (the blocks of one way; every CPU's ways), over
random reads of tables of 2 and of 64 CPUs: a few ways changed, none, many, a key taken over, a counter
grown.  No kernel: the readers' batch buffers are filled here as a read would fill them."""

from __future__ import annotations

import random

import pytest

from bench.read_cost import FakeDatapath as _Dp
from bench.read_cost import FilledBatch as _Batch
from bench.read_cost import WayMaker
from bench.read_cost import key_of as _key_of
from bench.read_cost import src_way as _src_way
from bench.read_cost import top_src_way as _top_way
from ironpost_tui.detectors import sketch
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.triage import reader


def _mutate(rng: random.Random, values: bytearray, way_size: int, make: WayMaker, changes: int, keys: int) -> None:
    """``changes`` random ways of ``values`` rewritten: a key taken over, or the same key's counters grown."""
    ways = len(values) // way_size
    for _ in range(changes):
        off = rng.randrange(ways) * way_size
        if values[off + 16] and rng.random() < 0.5:  # the same key, grown: keep its key, count on
            grown = bytearray(make(rng, keys, rng.randrange(2, 50)))
            grown[:20] = values[off : off + 20]
            values[off : off + way_size] = grown
        else:
            values[off : off + way_size] = make(rng, keys, rng.randrange(1, 50))


CHANGES = [0, 1, 3, 0, 40, 1, 5000, 2, 0, 7, 300]


@pytest.mark.parametrize("cpus", [2, 64])
def test_top_reads_by_blocks_give_what_way_by_way_gives(cpus: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = 16 if cpus == 64 else 20  # 20 sets of 2 CPUs' ways are 2.5 blocks: a short last block
    rng = random.Random(cpus)
    tables = [reader._Table(_Dp(cpus), MapName.TOP_SRC, abi.TOP_SRC_WAY, sets) for _ in range(2)]
    values = bytearray(len(tables[0].prev))
    for t in tables:
        t._batch = _Batch(values, sets)  # type: ignore[assignment]
    assert (sets * abi.TOP_WAYS * cpus) % reader.BLOCK_WAYS or cpus == 64
    compared = 0
    for changes in CHANGES:
        _mutate(rng, values, abi.TOP_SRC_WAY.size, _top_way, changes, keys=300)
        got: dict[bytes, tuple[int, ...]] = {}
        want: dict[bytes, tuple[int, ...]] = {}
        got_changed = tables[0].read(got)
        monkeypatch.setattr(reader, "BLOCK_WAYS", 1)  # every way its own block: compared one by one
        want_changed = tables[1].read(want)
        monkeypatch.undo()
        assert got == want and got_changed == want_changed, changes
        assert tables[0].prev == tables[1].prev
        compared += len(want)
    assert compared > 200  # the reads found growth to compare (the positive control)


@pytest.mark.parametrize("cpus", [2, 64])
def test_sketch_reads_by_sets_and_cpus_give_what_way_by_way_gives(cpus: int, monkeypatch: pytest.MonkeyPatch) -> None:
    sets = 64
    rng = random.Random(cpus + 1)
    sketches = [sketch._Sketch(_Dp(cpus), MapName.SRC_SKETCH, abi.SRC_WAY, sets, 4) for _ in range(2)]
    values = bytearray(len(sketches[0].prev))
    for s in sketches:
        s._batch = _Batch(values, sets)  # type: ignore[assignment]
    every = list(range(cpus * abi.SKETCH_WAYS))
    monkeypatch.setattr(sketches[1], "_changed_cpus_ways", lambda raw, base, pbase: every)
    compared = 0
    for changes in CHANGES:
        _mutate(rng, values, abi.SRC_WAY.size, _src_way, min(changes, 400), keys=200)
        everything = list(range(sets))  # more than an eighth of the sets: one whole read, as a flood's
        for fast, slow in zip(
            sketches[0].read_parts(everything, 16), sketches[1].read_parts(everything, 16), strict=True
        ):
            assert fast == slow, changes
            assert sketches[0].probes == sketches[1].probes and sketches[0].grown == sketches[1].grown
            compared += len(slow)
        assert sketches[0].prev == sketches[1].prev
    assert compared > 500  # the positive control


def test_a_change_in_one_cpus_ways_is_found_behind_clean_ones() -> None:
    """The negative control of the sketch's skips: one way of the last CPU of a set changed, every other
    CPU's ways of it as they were: found, and only it."""
    cpus, sets = 64, 64
    rng = random.Random(7)
    s = sketch._Sketch(_Dp(cpus), MapName.SRC_SKETCH, abi.SRC_WAY, sets, 4)
    values = bytearray(len(s.prev))
    s._batch = _Batch(values, sets)  # type: ignore[assignment]
    list(s.read_parts(list(range(sets)), sets))  # the first read: nothing held
    way = (5 * cpus + cpus - 1) * abi.SKETCH_WAYS + 3  # set 5, the last CPU, the last way
    values[way * abi.SRC_WAY.size : (way + 1) * abi.SRC_WAY.size] = _src_way(rng, 10, 9)
    (part,) = s.read_parts(list(range(sets)), sets)
    assert list(part.values()) == [(9, 9, 3, 0)] and s.grown == dict.fromkeys(part, 5)
    (part,) = s.read_parts(list(range(sets)), sets)
    assert part == {}  # read again, unchanged: nothing
    # A change in the set's last bytes alone (the last slot's port of its last CPU's last way): no delta, but
    # what the reader holds follows it (port_of reads it), as a way-by-way read's does.
    end = (way + 1) * abi.SRC_WAY.size
    values[end - 2 : end] = (443).to_bytes(2, "little")
    assert s.prev != values
    (part,) = s.read_parts(list(range(sets)), sets)
    assert part == {} and s.prev == values


def test_the_read_cost_tool_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m bench.read_cost``: a line per CPU count, its ways as the default sizes make them."""
    from bench import read_cost

    assert read_cost.main(["--cpus", "2,4", "--rounds", "1"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[1].split()[:2] == ["2", "8,192"] and lines[2].split()[:2] == ["4", "16,384"]


def test_a_few_marked_sets_read_one_by_one_give_what_way_by_way_gives(monkeypatch: pytest.MonkeyPatch) -> None:
    """A read of at most an eighth of the sets looks each one up (libbpf.map_lookup, here the set's bytes of
    the filled buffer): its offset in the read is 0, in what the reader holds the set's own."""
    cpus, sets = 64, 64
    rng = random.Random(11)
    sketches = [sketch._Sketch(_Dp(cpus), MapName.SRC_SKETCH, abi.SRC_WAY, sets, 4) for _ in range(2)]
    values = bytearray(len(sketches[0].prev))
    stride = sketches[0].stride
    monkeypatch.setattr(
        sketch.libbpf,
        "map_lookup",
        lambda fd, key, size: bytes(values[int.from_bytes(key, "little") * stride :][:size]),
    )
    every = list(range(cpus * abi.SKETCH_WAYS))
    monkeypatch.setattr(sketches[1], "_changed_cpus_ways", lambda raw, base, pbase: every)
    found = 0
    for _ in range(6):
        marked = sorted(rng.sample(range(sets), sets // 8))
        for s in marked:  # a few ways of the marked sets, on a few CPUs
            for _ in range(3):
                way = (s * cpus + rng.randrange(cpus)) * abi.SKETCH_WAYS + rng.randrange(abi.SKETCH_WAYS)
                values[way * abi.SRC_WAY.size : (way + 1) * abi.SRC_WAY.size] = _src_way(rng, 50, rng.randrange(1, 9))
        for fast, slow in zip(sketches[0].read_parts(marked, 4), sketches[1].read_parts(marked, 4), strict=True):
            assert fast == slow
            assert sketches[0].probes == sketches[1].probes and sketches[0].grown == sketches[1].grown
            found += len(slow)
        assert sketches[0].prev == sketches[1].prev
    assert found > 20  # the positive control


# New keys' counters (syn, tcp, new_tcp_ports, new_udp_ports) around the rule that credits no port to a tenure
# first seen holding one packet's one port: a UDP flood's way, a TCP packet that is no SYN, a port with no TCP
# packet counted, and ways that are credited (two TCP packets to one port, two ports, a SYN with no port).
ONE_PORT_WAYS = ((0, 0, 0, 1), (0, 1, 1, 0), (0, 0, 1, 0), (1, 2, 1, 0), (0, 2, 0, 1), (2, 2, 1, 1), (1, 1, 0, 0))


def _counted_way(rng: random.Random, counters: tuple[int, int, int, int]) -> bytes:
    """A new key's source way holding ``counters``, one probe to one destination."""
    slots = abi.TARGET_SLOTS
    dst = rng.randrange(4).to_bytes(4, "big") + bytes(12)
    hits = [1] + [0] * (slots - 1)
    return abi.SRC_WAY.pack(_key_of(rng, 1 << 30), *counters, 0, 0, dst * slots, *hits, *hits, *([53] * slots))


def _flood_or_real(rng: random.Random, values: bytearray, changes: int) -> None:
    """``changes`` ways rewritten as a spoofed flood and real sources write them: a new key of one packet to one
    port (the flood's), a key of a few hundred that comes back (into another way or its own, counting again
    from its packets), a key's counters grown in place, and now and then a way zeroed (family 0)."""
    size = abi.SRC_WAY.size
    ways = len(values) // size
    for _ in range(changes):
        off = rng.randrange(ways) * size
        r = rng.random()
        if r < 0.4:
            way = _src_way(rng, 1 << 30, 1, slots=1)  # the flood's: one SYN, one port, one destination
        elif r < 0.55:
            way = _counted_way(rng, rng.choice(ONE_PORT_WAYS))
        elif r < 0.75:
            way = _src_way(rng, 300, rng.randrange(1, 40))
        elif r < 0.97 and values[off + 16]:
            grown = bytearray(_src_way(rng, 300, rng.randrange(2, 60)))
            grown[:20] = values[off : off + 20]
            way = bytes(grown)
        else:
            way = bytes(size)
        values[off : off + size] = way


@pytest.mark.parametrize("cpus", [2, 16])
def test_a_new_keys_way_read_alone_gives_what_the_whole_way_gives(cpus: int) -> None:
    """A source way a key took since the last read is read as _FRESH_SRC's fields only (sketch.py's fast path,
    a flood's every way).  Against the same reader with that path off (every way unpacked whole and compared
    with what it held): the same deltas, probes, sets grown, bytes held and ports found, read after read."""
    sets = 32
    rng = random.Random(cpus * 3)
    fast, whole = (sketch._Sketch(_Dp(cpus), MapName.SRC_SKETCH, abi.SRC_WAY, sets, 4) for _ in range(2))
    values = bytearray(len(fast.prev))
    for s in (fast, whole):
        s._batch = _Batch(values, sets)  # type: ignore[assignment]
    whole._fresh = None
    everything = list(range(sets))
    new_keys = uncredited = credited_once = 0
    for changes in (0, 5, 400, 3000, 3000, 50, 0, 3000):
        _flood_or_real(rng, values, changes)
        for a, b in zip(fast.read_parts(everything, 8), whole.read_parts(everything, 8), strict=True):
            assert a == b, changes
            assert fast.probes == whole.probes and fast.grown == whole.grown
            for k in list(b)[:20]:
                for pair in [p for p in whole.probes if p[0] == k][:2]:
                    assert fast.port_of(k, pair[1]) == whole.port_of(k, pair[1])
            uncredited += sum(1 for d in b.values() if d[:2] == (1, 1) and d[2:] == (0, 0))
            credited_once += sum(1 for d in b.values() if d == (1, 2, 1, 0))  # two packets to one port
            new_keys += len(b)
        assert fast.prev == whole.prev
    # The flood's path was taken, its rule both ways (a credited one-port tenure among the deltas).
    assert new_keys > 800 and uncredited > 400 and credited_once > 20, (new_keys, uncredited, credited_once)


def test_a_new_keys_fields_are_the_whole_ways() -> None:
    """_FRESH_SRC reads at SRC_WAY's offsets: the key, the four counters, the slots' addresses and probes."""
    way = bytes(random.Random(5).randrange(256) for _ in range(abi.SRC_WAY.size))
    whole, fresh = abi.SRC_WAY.unpack(way), sketch._FRESH_SRC.unpack_from(way)
    slots = abi.TARGET_SLOTS
    assert fresh[:5] == whole[:5]
    assert fresh[5] == whole[-1 - 3 * slots] and fresh[6:] == whole[-3 * slots : -2 * slots]
    assert sketch._FRESH_SRC.size <= abi.SRC_WAY.size


@pytest.mark.parametrize(
    ("counters", "credited"),
    [
        ((1, 1, 1, 0), (1, 1, 0, 0)),  # a spoofed SYN's one port: not credited
        ((0, 0, 0, 1), None),  # a spoofed UDP packet's one port: nothing at all
        ((0, 1, 1, 0), (0, 1, 0, 0)),  # one TCP packet that is no SYN
        ((1, 2, 1, 0), (1, 2, 1, 0)),  # two TCP packets to one port: a real sender's, credited
        ((0, 2, 0, 1), (0, 2, 0, 1)),  # UDP's one port beside two TCP packets: credited
        ((2, 2, 1, 1), (2, 2, 1, 1)),  # two ports: credited
    ],
)
def test_a_new_tenures_one_port_is_credited_only_past_one_packet(
    counters: tuple[int, int, int, int], credited: tuple[int, int, int, int] | None
) -> None:
    """The rule both of the read's paths ask (sketch._one_packets_port), by what a read gives: a way a new key
    took, holding one packet's one port, counts its packets but not its port; anything more is credited."""
    rng = random.Random(3)
    s = sketch._Sketch(_Dp(2), MapName.SRC_SKETCH, abi.SRC_WAY, 8, 4)
    values = bytearray(len(s.prev))
    s._batch = _Batch(values, 8)  # type: ignore[assignment]
    way = _counted_way(rng, counters)
    values[: len(way)] = way
    (part,) = s.read_parts(list(range(8)), 8)
    assert part.get(way[:20]) == credited
