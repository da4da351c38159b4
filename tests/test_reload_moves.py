"""A reload that moves a blocked source between maps (exact -> prefix -> multi-field ...) never lets its
packets through, checked after every single kernel write of the move (RuleTable.replace_all against the
real program, verdicts through BPF_PROG_TEST_RUN).  The end-to-end version, under a trafgen flood with
the counts from STATS, is tests/test_rules_live.py's reload-under-fire test.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from support.packets import frame

from ironpost_tui.kernel import libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

XDP_DROP, XDP_PASS = 1, 2
SRC, DST = "198.18.44.6", "198.19.0.1"
WRITES = ("map_update", "map_replace", "map_delete")

FORMS: dict[str, Callable[[str], FilterRule]] = {
    "exact": lambda rid: FilterRule(rid, Action.DROP, src_ip=ipaddress.ip_network(f"{SRC}/32")),
    "prefix": lambda rid: FilterRule(rid, Action.DROP, src_ip=ipaddress.ip_network(f"{SRC}/31", strict=False)),
    "multi-field": lambda rid: FilterRule(rid, Action.DROP, src_ip=ipaddress.ip_network(f"{SRC}/32"), dst_port=53,
                                          protocol=17),
}  # fmt: skip


def verdict(dp: Datapath, src: str = SRC) -> int:
    return libbpf.prog_test_run(dp.prog_fd, frame(src, DST, 53, "udp")).retval


class Watch:
    """After each write the table makes to the maps, the source's verdict: the writes that let it pass."""

    def __init__(self, dp: Datapath, monkeypatch: pytest.MonkeyPatch) -> None:
        self.passes: list[str] = []
        self.writes = 0
        for name in WRITES:
            original = getattr(dp, name)

            def wrapped(*args: Any, _original: Any = original, _name: str = name) -> Any:
                out = _original(*args)
                self.writes += 1
                if verdict(dp) != XDP_DROP:
                    self.passes.append(f"{_name}({args[0]})")
                return out

            monkeypatch.setattr(dp, name, wrapped)


@pytest.fixture
def table() -> Iterator[tuple[Datapath, RuleTable]]:
    dp = Datapath(DatapathConfig())
    try:
        yield dp, RuleTable(dp, monotonic_to_wall_offset())
    finally:
        dp.close()


def test_moving_a_blocked_source_between_maps_leaves_no_write_that_lets_it_pass(
    table: tuple[Datapath, RuleTable], monkeypatch: pytest.MonkeyPatch
) -> None:
    dp, t = table
    other = FilterRule("other", Action.MONITOR, dst_port=22)  # a rule that stays across every reload
    t.replace_all([FORMS["exact"]("block-0"), other])
    assert verdict(dp) == XDP_DROP
    assert verdict(dp, "198.18.44.9") == XDP_PASS  # a neighbour outside every form passes
    watch = Watch(dp, monkeypatch)
    order = ["prefix", "multi-field", "exact", "multi-field", "prefix", "exact"]  # all six moves
    for n, form in enumerate(order, start=1):
        t.replace_all([FORMS[form](f"block-{n}"), other])
        assert [r.id for r in t.rules()] == [f"block-{n}", "other"]
        assert verdict(dp) == XDP_DROP, form
    assert watch.writes > 6 * 2, "the moves wrote nothing: the watch sees nothing"
    assert watch.passes == []
    # The control: a reload without the block lets the source through, and the watch sees it.
    t.replace_all([other])
    assert verdict(dp) == XDP_PASS
    assert watch.passes


def test_a_reload_that_fits_only_by_making_room_first_still_loads() -> None:
    """BLOCKLIST full, and a new set of as many other exact sources: the old ones go first (a gap only
    a full map forces), and the new set is in."""
    dp = Datapath(DatapathConfig(blocklist_max_entries=256))
    try:
        t = RuleTable(dp, monotonic_to_wall_offset())
        base = int(ipaddress.IPv4Address("198.18.0.0"))

        def rules(offset: int) -> list[FilterRule]:
            addrs = [ipaddress.IPv4Address(base + offset + i) for i in range(256)]
            return [
                FilterRule(f"x{offset + i}", Action.DROP, src_ip=ipaddress.ip_network(a)) for i, a in enumerate(addrs)
            ]

        t.replace_all(rules(0))
        assert verdict(dp, "198.18.0.5") == XDP_DROP
        t.replace_all(rules(1000))
        assert len(t) == 256
        assert verdict(dp, "198.18.0.5") == XDP_PASS
        assert verdict(dp, str(ipaddress.IPv4Address(base + 1005))) == XDP_DROP
    finally:
        dp.close()
