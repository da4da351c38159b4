"""CrowdSec decisions a persisted run left in pinned maps (rules/table.py ``adopt_existing``,
rules/decision_set.py): a restart does not take them for rules (they once came back as ``pinned-N`` rules
on one slot, which then owned the decisions' keys for good: the LAPI's deletions never reached the kernel);
they stay in force until the bouncer's first full pull sweeps those no longer in force, or are removed when
``[crowdsec]`` is off.  Real pinned maps, verdicts by BPF_PROG_TEST_RUN."""

from __future__ import annotations

import contextlib
import ipaddress
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.config.crowdsec import CrowdSecSettings, Scope
from ironpost_tui.engine.crowdsec.bouncer import SET_RULE, Bouncer
from ironpost_tui.engine.crowdsec.decisions import Decision, Delta, as_pulled
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.decision_set import LEFTOVER_HOLD_SECS, LEFTOVER_MAX_SECS, DecisionSet
from ironpost_tui.rules.protect import REASON_PROTECT_LIST, Protected
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

XDP_DROP, XDP_PASS = 1, 2
CFG = DatapathConfig(blocklist_max_entries=4096, event_rate=0)
A, RANGE, IN_RANGE, V6, OPERATOR = "198.18.7.1", "198.18.9.0/24", "198.18.9.77", "2001:db8:7::1", "198.18.7.2"

pytestmark = pytest.mark.root
LATER = time.time() + 600  # the first run's decisions' expiry


def verdict(dp: Datapath, src: str) -> int:
    dst = "2001:db8:7::99" if ":" in src else "198.19.0.1"
    return int(libbpf.prog_test_run(dp.prog_fd, frame(src, dst, 53, "udp")).retval)


@contextlib.contextmanager
def restarted(pin_dir: Path, cfg: DatapathConfig = CFG) -> Iterator[tuple[Datapath, RuleTable]]:
    """A --persist restart: the pinned maps reused, and a table that adopted them."""
    dp = Datapath(cfg, pin_dir=pin_dir)
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        table.adopt_existing()
        yield dp, table
    finally:
        dp.close()


def first_run(pin_dir: Path) -> int:
    """A persisted run: an operator's rule and three decisions (BLOCKLIST, SRC4, SRC6), stopped without
    letting go of them (as close() with --persist leaves them); the set's slot."""
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        table = RuleTable(dp, monotonic_to_wall_offset())
        table.add(FilterRule("op", Action.DROP, src_ip=ipaddress.ip_network(OPERATOR)))
        decisions = DecisionSet(table, SET_RULE)
        for i, n in enumerate((A, RANGE, V6)):
            decisions.put(ipaddress.ip_network(n), i + 1, LATER)
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
        assert {h.expires_at for h in decisions._held.values()} == {float(int(LATER))}  # kept in the entries

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


def test_leftovers_not_pulled_again_go_at_their_own_expiry(pin_dir: Path) -> None:
    """The LAPI down: a leftover goes at the expiry its entry kept, restart or not (not renewed)."""
    first_run(pin_dir)
    for _ in range(2):  # two restarts: the same expiry each time
        with restarted(pin_dir) as (dp, table):
            decisions = DecisionSet(table, SET_RULE)
            assert decisions.expire(LATER - 2, time.monotonic() + 5) == []  # negative control
            assert verdict(dp, V6) == XDP_DROP
    with restarted(pin_dir) as (dp, table):
        decisions = DecisionSet(table, SET_RULE)
        gone = decisions.expire(LATER + 1, time.monotonic() + 5)
        assert sorted(map(str, gone)) == sorted(str(ipaddress.ip_network(n)) for n in (A, RANGE, V6))
        assert all(verdict(dp, s) == XDP_PASS for s in (A, IN_RANGE, V6)) and verdict(dp, OPERATOR) == XDP_DROP


def test_an_older_versions_leftover_is_held_for_the_hold_once(pin_dir: Path) -> None:
    """An entry that keeps no expiry (written before ORIGIN_DECISION) is held LEFTOVER_HOLD_SECS, and the
    expiry is written into it: a second restart does not renew the hold."""
    first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        key = ipaddress.ip_address(A).packed
        old = abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")
        assert old[2] == abi.ORIGIN_DECISION and old[6] == int(LATER)
        slot = old[3]
        dp.map_update(MapName.BLOCKLIST, key, abi.BLOCKLIST_VALUE.pack(1, 1, abi.ORIGIN_IRONPOST, slot,
                                                                         abi.DECISION_PRIORITY, slot,
                                                                         abi.DECISION_PRIORITY))  # fmt: skip
    finally:
        dp.close()
    held = []
    for _ in range(2):
        with restarted(pin_dir) as (dp, table):
            t0 = time.time()
            decisions = DecisionSet(table, SET_RULE)
            until = decisions._held[ipaddress.ip_network(A)].expires_at
            held.append(until)
            assert t0 + LEFTOVER_HOLD_SECS - 5 < held[0] < t0 + LEFTOVER_HOLD_SECS + 5
            value = abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")
            assert value[2] == abi.ORIGIN_DECISION and value[6] == int(held[0])  # written into the entry
        time.sleep(1.1)
    assert int(held[1]) == int(held[0])  # not renewed by the second restart


def test_the_files_rules_win_over_leftovers_that_leave_no_room(pin_dir: Path, tmp_path: Path) -> None:
    """A file grown since the persisted run: its rules do not fit beside the leftovers, which go first
    (the next full pull writes again those in force, within the reserve); a file that fits keeps them."""
    small = DatapathConfig(blocklist_max_entries=256, event_rate=0)
    dp = Datapath(small, pin_dir=pin_dir)
    try:
        decisions = DecisionSet(RuleTable(dp, monotonic_to_wall_offset()), SET_RULE)
        nets = [ipaddress.ip_network(f"198.18.{40 + i // 250}.{1 + i % 250}") for i in range(150)]
        with decisions.batch():
            for i, n in enumerate(nets):
                decisions.put(n, i + 1, LATER)
        assert len(decisions) == 150
    finally:
        dp.close()
    rules = [FilterRule(f"r{i}", Action.DROP, src_ip=ipaddress.ip_network(f"198.19.9.{i}")) for i in range(1, 201)]
    for wanted, kept in ((rules[:50], 150), (rules, 0)):
        with restarted(pin_dir, small) as (dp, table):
            control = RuleController(table, AuditLog(tmp_path / "audit.log"))
            dropped = control.load(wanted, Actor("test", None, "test"))
            assert dropped == 150 - kept and len(table) == len(wanted)
            assert table.side_counts[MapName.BLOCKLIST] == kept == sum(1 for _ in range(kept))
            assert verdict(dp, "198.18.40.1") == (XDP_DROP if kept else XDP_PASS)
            assert verdict(dp, "198.19.9.7") == XDP_DROP


def test_a_leftover_on_a_protected_address_goes_when_the_bouncer_takes_it(pin_dir: Path, tmp_path: Path) -> None:
    first_run(pin_dir)
    with restarted(pin_dir) as (dp, table):
        assert verdict(dp, IN_RANGE) == XDP_DROP
        protected = [Protected(ipaddress.ip_network(f"{IN_RANGE}/32"), REASON_PROTECT_LIST)]
        control = RuleController(table, AuditLog(tmp_path / "audit.log"), protected=protected)
        bouncer = Bouncer(CrowdSecSettings(), None)  # type: ignore[arg-type]  # no LAPI
        decisions = bouncer.decision_set(control)
        assert ipaddress.ip_network(RANGE) not in decisions and len(decisions) == 2  # A and V6 stay
        assert verdict(dp, "198.18.9.1") == XDP_PASS and verdict(dp, A) == XDP_DROP


def test_a_leftover_on_a_bad_slot_is_credited_to_the_sets(pin_dir: Path) -> None:
    """A slot out of range (a damaged or foreign entry): not kept, the set takes a slot of its own and the
    entry is written on it."""
    first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        key = ipaddress.ip_address(A).packed
        bad = CFG.rule_slots + 5
        value = abi.BLOCKLIST_VALUE.pack(1, 1, abi.ORIGIN_DECISION, bad, abi.DECISION_PRIORITY, bad, int(LATER))
        dp.map_update(MapName.BLOCKLIST, key, value)
    finally:
        dp.close()
    with restarted(pin_dir) as (dp, table):
        decisions = DecisionSet(table, SET_RULE)
        value = abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")
        assert value[3] == decisions.slot != bad and value[5] == decisions.slot
        assert bad not in table._free_slots  # never handed to a rule (its counters are past the map's end)
        table.add(FilterRule("new", Action.DROP, src_ip=ipaddress.ip_network("198.18.77.1")))  # no IndexError


def test_with_crowdsec_off_the_leftovers_are_removed(pin_dir: Path) -> None:
    slot = first_run(pin_dir)
    with restarted(pin_dir) as (dp, table):
        assert verdict(dp, IN_RANGE) == XDP_DROP
        assert table.drop_leftover_decisions() == 3
        assert table.drop_leftover_decisions() == 0
        assert all(verdict(dp, s) == XDP_PASS for s in (A, IN_RANGE, V6)) and verdict(dp, OPERATOR) == XDP_DROP
        assert dp.map_len(MapName.BLOCKLIST) == 1 and dp.map_len(MapName.SRC4) == 0 == dp.map_len(MapName.SRC6)
        assert sum(table.side_counts.values()) == 0 and not table.side_entries
        assert slot in table._free_slots  # free again (adopt_existing had kept it)


def test_a_leftovers_far_expiry_and_a_source_in_two_maps(pin_dir: Path) -> None:
    """An entry that says it expires in 2106 is held at most a year (and says so from then on); the same
    source in two maps (not an entry the set writes) is kept once, the other deleted."""
    first_run(pin_dir)
    dp = Datapath(CFG, pin_dir=pin_dir)
    try:
        key = ipaddress.ip_address(A).packed
        slot = abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")[3]
        far = abi.BLOCKLIST_VALUE.pack(1, 1, abi.ORIGIN_DECISION, slot, abi.DECISION_PRIORITY, slot, 0xFFFFFFFF)
        dp.map_update(MapName.BLOCKLIST, key, far)
        dp.map_update(MapName.SRC4, abi.LPM_V4_KEY.pack(32, key), far)  # A again, as a /32 in SRC4
    finally:
        dp.close()
    with restarted(pin_dir) as (dp, table):
        assert dp.map_len(MapName.BLOCKLIST) + dp.map_len(MapName.SRC4) == 1 + 1 + 1  # A once, RANGE, OPERATOR
        decisions = DecisionSet(table, SET_RULE)
        until = decisions._held[ipaddress.ip_network(A)].expires_at
        assert until <= time.time() + LEFTOVER_MAX_SECS
        assert abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")[6] == int(until)
        assert len(decisions) == 3 and verdict(dp, A) == XDP_DROP
