"""ironpost_tui/kernel/abi.py against bpf/ironpost_common.h, and the compiled maps against
DatapathConfig.expected_maps()."""

from __future__ import annotations

import re

import pytest

from ironpost_tui.kernel import abi, libbpf, resources
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.rules import table as rule_table

HEADER = resources.bpf_dir() / "ironpost_common.h"
PROGRAM = resources.bpf_source()

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


def test_rank_constants_are_defined_in_the_header_only() -> None:
    assert {"MONITOR_RANK", "NO_MATCH"} <= set(int_defines(HEADER))
    assert {"MONITOR_RANK", "NO_MATCH"}.isdisjoint(defines(PROGRAM))
    assert not hasattr(rule_table, "MONITOR_RANK") and not hasattr(rule_table, "NO_MATCH")


def test_struct_sizes_follow_the_header_layouts() -> None:
    # The program checks four of these with _Static_assert; the rest are map key/value
    # sizes, checked against the kernel's map info in test_compiled_map_layouts.
    assert abi.PROTO_STATS.size == 24
    assert abi.BLOCKLIST_VALUE.size == 20
    assert abi.LPM_V4_KEY.size == 8 and abi.LPM_V6_KEY.size == 20
    assert abi.ALLOW_VALUE.size == 4
    assert abi.RULE_SHAPE.size == 40
    assert abi.MATCH_KEY.size == 40
    assert abi.RULE_HIT.size == 16
    assert abi.CONFIG.size == 536
    assert abi.SRC_WAY.size == 120 and abi.DST_WAY.size == 40
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
