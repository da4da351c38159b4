"""ironpost_tui/kernel/abi.py against bpf/ironpost_common.h, and the compiled maps against
DatapathConfig.expected_maps()."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from ironpost_tui.kernel import abi, libbpf, resources
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
