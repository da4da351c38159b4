"""ironpost_tui/kernel/abi.py against bpf/ironpost_common.h, and the compiled maps against
DatapathConfig.expected_maps()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ironpost_tui.kernel import abi, datapath, libbpf, resources
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.rules import table as rule_table

HEADER = resources.bpf_dir() / "ironpost_common.h"
PROGRAM = resources.bpf_source()
RULE_MATCH = resources.bpf_dir() / "rule_match.h"

# Object-like macros only: a function-like one has "(" right after its name.
_DEFINE = re.compile(r"^\s*#\s*define\s+(\w+)(?![\w(])(?:\s+(.*?))?\s*$")
_INT = re.compile(r"^(0[xX][0-9a-fA-F]+|\d+)[uUlL]*$")
_BPF_MAP_TYPE_RINGBUF = 27


def _strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//.*", "", text)


def defines(path) -> dict[str, str | None]:
    """Every object-like #define of ``path``: name -> value text (None when empty)."""
    out: dict[str, str | None] = {}
    for line in _strip_comments(path.read_text()).splitlines():
        m = _DEFINE.match(line)
        if m:
            out[m.group(1)] = m.group(2) or None
    return out


def int_defines(path) -> dict[str, int]:
    return {name: int(_INT.match(v).group(1), 0) for name, v in defines(path).items() if v and _INT.match(v)}


def test_header_defines_are_all_integers_or_the_include_guard() -> None:
    """So a new non-integer #define cannot slip past the comparison below."""
    odd = {n: v for n, v in defines(HEADER).items() if not (v and _INT.match(v))}
    assert odd == {"IRONPOST_COMMON_H": None}


def test_every_header_constant_matches_abi_py() -> None:
    consts = int_defines(HEADER)
    assert len(consts) >= 20 and "IRONPOST_ABI_VERSION" in consts
    missing = sorted(n for n in consts if not hasattr(abi, n))
    assert missing == [], f"abi.py lacks {missing}"
    differ = {n: (v, getattr(abi, n)) for n, v in consts.items() if getattr(abi, n) != v}
    assert differ == {}, "name: (header, abi.py)"


def test_capture_header_constants_and_layouts_match_abi_py() -> None:
    """bpf/capture.h's constants (all integers, save the guard) are abi.py's; the two structs' sizes too."""
    header = resources.bpf_dir() / "capture.h"
    odd = {n: v for n, v in defines(header).items() if not (v and _INT.match(v))}
    assert odd == {"IRONPOST_CAPTURE_H": None}
    consts = int_defines(header)
    assert {"CAPTURE_ANY_RULE", "CAPSTAT_MAX"} <= set(consts)
    differ = {n: (v, getattr(abi, n, None)) for n, v in consts.items() if getattr(abi, n, None) != v}
    assert differ == {}, "name: (header, abi.py)"
    assert abi.CAPTURE_CONFIG.size == 56 and abi.CAPTURE_META.size == 24


def test_rank_constants_are_defined_in_the_header_only() -> None:
    assert {"MONITOR_RANK", "NO_MATCH"} <= set(int_defines(HEADER))
    others = [p for p in resources.bpf_dir().iterdir() if p.suffix in (".c", ".h") and p != HEADER]
    assert PROGRAM in others and RULE_MATCH in others
    assert [p.name for p in others if not {"MONITOR_RANK", "NO_MATCH"}.isdisjoint(defines(p))] == []
    assert not hasattr(rule_table, "MONITOR_RANK") and not hasattr(rule_table, "NO_MATCH")


# The numbers both sides compute with, by value: a literal copy of one in a C file or in Python
# beside its name is the drift the shared header exists to prevent.
SHARED_NUMBERS = {
    "HASH_MUL32": 0x9E3779B1,
    "HASH_MIX32": 0x85EBCA6B,
    "HASH_SALT32": 0x7F4A7C15,
    "NSEC_PER_SEC": 1_000_000_000,
    "FILTER_GRANULE4": 24,
    "FILTER_GRANULE6": 48,
}


def test_shared_numbers_are_named_in_the_header_and_abi_py() -> None:
    consts = int_defines(HEADER)
    assert {n: consts.get(n) for n in SHARED_NUMBERS} == SHARED_NUMBERS
    assert {n: getattr(abi, n, None) for n in SHARED_NUMBERS} == SHARED_NUMBERS


def _hex_literals(text: str) -> set[int]:
    return {int(m, 16) for m in re.findall(r"0[xX][0-9a-fA-F_]+", text.replace("_", ""))}


@pytest.mark.parametrize("name", ["HASH_MUL32", "HASH_MIX32", "HASH_SALT32"])
def test_hash_constants_are_written_once(name: str) -> None:
    """Every other BPF source and every Python module uses the name (negative control: the header itself
    holds the literal, so the search finds what it looks for)."""
    value = SHARED_NUMBERS[name]
    assert value in _hex_literals(_strip_comments(HEADER.read_text()))
    sources = [p for p in resources.bpf_dir().iterdir() if p.suffix in (".c", ".h") and p != HEADER]
    assert len(sources) >= 7
    in_c = [p.name for p in sources if value in _hex_literals(_strip_comments(p.read_text()))]
    assert in_c == []
    package = Path(abi.__file__).resolve().parent.parent
    in_py = [
        str(p.relative_to(package))
        for p in package.rglob("*.py")
        if p.name != "abi.py" and value in _hex_literals(p.read_text())
    ]
    assert in_py == []


def test_hash_32_is_the_multiplicative_hash() -> None:
    # Worked by hand: 1 * 0x9E3779B1 keeps its top 4 bits 0x9; 2 * it wraps to 0x3C6EF362 (0x3).
    assert abi.hash_32(1, 4) == 0x9
    assert abi.hash_32(2, 4) == 0x3
    assert abi.hash_32(0, 18) == 0
    assert abi.hash_32(0xFFFFFFFF, 32) == (0xFFFFFFFF * 0x9E3779B1) & 0xFFFFFFFF


def test_struct_sizes_follow_the_header_layouts() -> None:
    # The program checks four of these with _Static_assert; the rest are map key/value
    # sizes, checked against the kernel's map info in test_compiled_map_layouts.
    assert abi.PROTO_STATS.size == 24
    assert abi.BLOCKLIST_VALUE.size == 20
    assert abi.LPM_V4_KEY.size == 8 and abi.LPM_V6_KEY.size == 20
    assert abi.ALLOW_VALUE.size == 4
    assert abi.RULE_SHAPE.size == 40
    assert abi.MATCH_KEY.size == 40
    assert abi.MATCHH_BUCKET.size == 192
    assert abi.RULE_HIT.size == 16
    assert abi.CONFIG.size == 548
    assert abi.SRC_WAY.size == 224 and abi.DST_WAY.size == 48
    assert abi.PACKET_EVENT.size == 56


@pytest.mark.root
@pytest.mark.parametrize(
    "cfg",
    [
        pytest.param(DatapathConfig(), id="default"),
        pytest.param(
            DatapathConfig(
                blocklist_max_entries=64,
                cidr_max_entries=32,
                match_max_entries=16,
                shapes_max=3,
                allow_max_entries=8,
                ring_buffer_kib=64,
                event_rate=0,
            ),
            id="small",
        ),
    ],
)
def test_compiled_map_layouts(cfg: DatapathConfig) -> None:
    dp = Datapath(cfg)
    try:
        have = {}
        for name in cfg.expected_maps():
            info = libbpf.map_info(dp.map_fd(name))
            assert info.name == name
            have[name] = (info.type, info.key_size, info.value_size, info.max_entries)
        assert have == cfg.expected_maps()
        assert set(have) == set(abi.PINNED_MAPS)
        events = libbpf.map_info(dp.map_fd("EVENTS"))
        assert events.type == _BPF_MAP_TYPE_RINGBUF
        assert events.max_entries == cfg.ring_buffer_kib * 1024
        assert dp.read_config() == (0, abi.IRONPOST_ABI_VERSION)
    finally:
        dp.close()


# The per-CPU tables that hold an entry per address, per CPU and in all, as the design sizes them for two CPUs.
_TABLES = {
    "SRC_SKETCH": ("src_sketch_sets", abi.SKETCH_WAYS),
    "DST_SKETCH": ("dst_sketch_sets", abi.SKETCH_WAYS),
    "TOP_SRC": ("top_src_sets", abi.TOP_WAYS),
    "TOP_DST": ("top_dst_sets", abi.TOP_WAYS),
    "TOP_PORT": ("top_port_sets", abi.TOP_WAYS),
}


@pytest.mark.parametrize("cpus", [1, 2, 3, 4, 8, 16, 64, 256, 4096])
def test_per_cpu_tables_share_the_two_cpu_design_among_the_cpus(cpus: int) -> None:
    """A host of more CPUs than two holds, in all, what two do (each CPU a share, a power of two), down to
    each table's least; never more per CPU than on two."""
    design = DatapathConfig().for_cpus(2)
    sized = DatapathConfig().for_cpus(cpus)
    for field, (per_design, least) in datapath.PER_CPU_TABLES.items():
        per_cpu, total = getattr(sized, field), getattr(sized, field) * cpus
        assert getattr(design, field) == per_design
        assert per_cpu & (per_cpu - 1) == 0 and least <= per_cpu <= per_design, (field, per_cpu)
        if per_cpu > least and cpus > 1:  # above the least: between half the design's total and all of it
            assert per_design < total <= per_design * 2, (field, per_cpu, cpus)
    if cpus >= 64:  # at the least: 64 source sets a CPU, where a fixed size would hold cpus / 2 times the design's
        assert sized.src_sketch_sets == 64 and sized.top_src_sets == 16


def test_a_table_size_given_is_kept_whatever_the_cpus() -> None:
    given = DatapathConfig(src_sketch_sets=256, top_dst_sets=32)
    sized = given.for_cpus(64)
    assert (sized.src_sketch_sets, sized.top_dst_sets) == (256, 32)  # as given
    assert (sized.dst_sketch_sets, sized.top_src_sets, sized.top_port_sets) == (64, 16, 16)  # sized
    assert given.for_cpus(2).src_sketch_sets == 256 and given.for_cpus(2).top_src_sets == 512


@pytest.mark.root
def test_the_loaded_tables_are_sized_for_the_hosts_cpus_and_for_a_64_cpu_one() -> None:
    """What the kernel allocated: this host's sizes, from its possible CPUs; and a configuration sized for 64
    CPUs loads with the least sets (the DIRTY words, the readers' buffers follow the loaded sizes)."""
    from ironpost_tui.detectors.sketch import SketchReader
    from ironpost_tui.triage.reader import TopReader

    for cfg, cpus in ((DatapathConfig(), libbpf.possible_cpus()), (DatapathConfig().for_cpus(64), 64)):
        want = DatapathConfig().for_cpus(cpus)
        dp = Datapath(cfg)
        try:
            assert dp.cfg == want
            for name, (field, _ways) in _TABLES.items():
                assert libbpf.map_info(dp.map_fd(name)).max_entries == getattr(want, field), name
            reader, top = SketchReader(dp), TopReader(dp)
            reader.read(1)
            top.read()
            assert len(reader._src.prev) == want.src_sketch_sets * abi.SRC_WAY.size * abi.SKETCH_WAYS * dp.possible_cpus
            assert len(top._src.prev) == want.top_src_sets * abi.TOP_SRC_WAY.size * abi.TOP_WAYS * dp.possible_cpus
        finally:
            dp.close()
