"""CrowdSec decisions a persisted run left in pinned maps (rules/table.py ``adopt_existing``,
rules/decision_set.py): a restart does not take them for rules (they once came back as ``pinned-N`` rules
on one slot, which then owned the decisions' keys for good: the LAPI's deletions never reached the kernel);
they stay in force until the bouncer's first full pull sweeps those no longer in force, or are removed when
``[crowdsec]`` is off.  Real pinned maps, verdicts by BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ipaddress
import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.config.crowdsec import CrowdSecSettings, Scope
from ironpost_tui.engine.crowdsec.bouncer import SET_RULE, Bouncer
from ironpost_tui.engine.crowdsec.decisions import Decision, Delta, as_pulled
from ironpost_tui.kernel import libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import AuditLog
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.decision_set import LEFTOVER_HOLD_SECS, DecisionSet
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

XDP_DROP, XDP_PASS = 1, 2
CFG = DatapathConfig(blocklist_max_entries=4096, event_rate=0)
A, RANGE, IN_RANGE, V6, OPERATOR = "198.18.7.1", "198.18.9.0/24", "198.18.9.77", "2001:db8:7::1", "198.18.7.2"

pytestmark = pytest.mark.root


@pytest.fixture
def pin_dir() -> Iterator[Path]:
    path = Path(f"/sys/fs/bpf/ironpost-test-leftovers-{random.getrandbits(32):08x}")
    path.mkdir(parents=True)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def verdict(dp: Datapath, src: str) -> int:
    dst = "2001:db8:7::99" if ":" in src else "198.19.0.1"
    return int(libbpf.prog_test_run(dp.prog_fd, frame(src, dst, 53, "udp")).retval)


def first_run(pin_dir: Path) -> int:
    """A persisted run: an operator's rule and three decisions (BLOCKLIST, SRC4, SRC6), stopped without
    letting go of them (as close() with --persist leaves them); the set's slot."""
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        table.add(FilterRule("op", Action.DROP, src_ip=ipaddress.ip_network(OPERATOR)))
        decisions = DecisionSet(table, SET_RULE)
        later = time.time() + 600
        for i, n in enumerate((A, RANGE, V6)):
            decisions.put(ipaddress.ip_network(n), i + 1, later)
        assert verdict(dp, A) == XDP_DROP  # counted once under the set's slot
        return decisions.slot
    finally:
        dp.close()


def test_a_restart_keeps_the_decisions_in_force_as_decisions_until_the_full_pull(pin_dir: Path, tmp_path: Path) -> None:
    slot = first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        assert dp.reused_maps
        table = RuleTable(dp, monotonic_to_wall_offset())
        assert [r.id for r in table.adopt_existing()] == ["pinned-1"]  # the operator's rule alone
        assert table.get("pinned-1") == FilterRule("pinned-1", Action.DROP, src_ip=ipaddress.ip_network(OPERATOR))
        for src in (A, IN_RANGE, V6, OPERATOR):
            assert verdict(dp, src) == XDP_DROP, src  # in force across the restart
        assert verdict(dp, "198.18.7.3") == XDP_PASS  # negative control
        control = RuleController(table, AuditLog(tmp_path / "audit.log"))
        bouncer = Bouncer(CrowdSecSettings(), None)  # type: ignore[arg-type]  # no LAPI: pulls are put by hand
        decisions = bouncer.decision_set(control)
        assert len(decisions) == 3 and decisions.slot == slot  # held, on the old slot with its hits
        assert decisions.hits()[0] == 4  # the first run's drop of A, and the three above
        assert table.rule_for_slot(slot) == SET_RULE
        assert table.side_counts[MapName.BLOCKLIST] == 1 == decisions.written(MapName.BLOCKLIST)
        assert table.capacity()[MapName.BLOCKLIST] - table.count(MapName.BLOCKLIST) - 1 > 0

        # The first full pull: A still in force (a new id), the others not: swept.
        kept = Decision(41, ipaddress.ip_network(A), Scope.IP, 600.0, "crowdsec", "crowdsecurity/ssh-bf")
        bouncer._queue.put((Delta((as_pulled(kept),), (), 0, 0, full=True), frozenset({str(kept.network)})))
        for _ in range(100):
            bouncer.apply(control)
            if not bouncer.pending:
                break
        assert decisions.networks() == [ipaddress.ip_network(A)] and decisions.ident(kept.network) == 41
        assert verdict(dp, A) == XDP_DROP and verdict(dp, OPERATOR) == XDP_DROP
        assert verdict(dp, IN_RANGE) == XDP_PASS and verdict(dp, V6) == XDP_PASS
        assert table.side_counts[MapName.SRC4] == 0 == table.side_counts[MapName.SRC6]
        decisions.clear()
        assert verdict(dp, A) == XDP_PASS and dp.map_len(MapName.BLOCKLIST) == 1  # the operator's entry stays
    finally:
        dp.close()


def test_leftovers_not_pulled_again_go_after_the_hold(pin_dir: Path) -> None:
    """The LAPI down: a leftover (its expiry unknown) is held for at most CrowdSec's default ban, then goes."""
    first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        table.adopt_existing()
        decisions = DecisionSet(table, SET_RULE)
        now = time.time()
        assert decisions.expire(now + LEFTOVER_HOLD_SECS - 60, time.monotonic() + 5) == []  # negative control
        assert verdict(dp, V6) == XDP_DROP
        gone = decisions.expire(now + LEFTOVER_HOLD_SECS + 1, time.monotonic() + 5)
        assert sorted(map(str, gone)) == sorted(str(ipaddress.ip_network(n)) for n in (A, RANGE, V6))
        assert all(verdict(dp, s) == XDP_PASS for s in (A, IN_RANGE, V6)) and verdict(dp, OPERATOR) == XDP_DROP
    finally:
        dp.close()


def test_with_crowdsec_off_the_leftovers_are_removed(pin_dir: Path) -> None:
    slot = first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        table.adopt_existing()
        assert verdict(dp, IN_RANGE) == XDP_DROP
        assert table.drop_leftover_decisions() == 3
        assert table.drop_leftover_decisions() == 0
        assert all(verdict(dp, s) == XDP_PASS for s in (A, IN_RANGE, V6)) and verdict(dp, OPERATOR) == XDP_DROP
        assert dp.map_len(MapName.BLOCKLIST) == 1 and dp.map_len(MapName.SRC4) == 0 == dp.map_len(MapName.SRC6)
        assert sum(table.side_counts.values()) == 0 and not table.side_entries
        assert slot in table._free_slots  # free again (adopt_existing had kept it)
    finally:
        dp.close()
