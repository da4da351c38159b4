"""Other tools' BLOCKLIST entries (ironpost_tui/rules/external.py): what a reconcile adds, removes,
changes, refuses and writes back, against the real program through BPF_PROG_TEST_RUN.

The foreign writes are ``bpftool map update`` / ``map delete`` with the seed's layout (key the IPv4
source in network order, value the action then zeros), as another tool makes them.  One program for
the module, never attached; each test gets a fresh rule table and controller on it and leaves the
rule maps empty.  The pure parts (``diff``, ``entries``) need no root.

Addresses: 198.18.0.0/15 only; frames never leave the test-run call.
"""

from __future__ import annotations

import ipaddress
import json
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from support import bpftool
from support.packets import frame

from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.engine.snapshot import AUTO_RULE_ID, EXTERNAL_RULE_ID, EngineSnapshot, SnapshotBuilder
from ironpost_tui.errors import IronpostError, RuleRefused
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.metrics.collector import EngineCollector
from ironpost_tui.model import Action, FilterRule, ProtoCounters, RuleStatus, StatsSample
from ironpost_tui.rules import external, prefilter
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.exact4 import bucket_of
from ironpost_tui.rules.external import Change, EntryChange, diff, entries
from ironpost_tui.rules.protect import REASON_SSH_CLIENT, Protected
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

XDP_DROP, XDP_PASS = 1, 2
A, B = "198.18.7.1", "198.18.7.2"  # one /24: one ADDR_FILTER bucket
OTHER = "198.18.9.9"
OPERATOR = Actor("operator", None, "console")


def key(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def val(action: int, rest: int = 0) -> bytes:
    return bytes([action]) + bytes([rest]) * 19


# --------------------------------------------------------------------------- #
# the pure parts


def test_diff_names_what_was_added_removed_and_changed_in_key_order() -> None:
    expected = {key(A): val(1), key(B): val(1), key(OTHER): val(2)}
    found = {key(A): val(1), key(OTHER): val(1), key("198.18.0.1"): val(1)}
    assert diff(expected, found) == [
        Change(EntryChange.ADDED, key("198.18.0.1"), val(1)),
        Change(EntryChange.REMOVED, key(B), None),
        Change(EntryChange.CHANGED, key(OTHER), val(1)),
    ]
    assert diff(expected, dict(expected)) == []  # negative control: the same map, no change
    assert diff({}, {}) == []


def test_entries_reads_a_batch_of_packed_keys_and_values() -> None:
    keys = key(A) + key(B)
    values = val(1) + val(2, 7)
    assert entries(keys, values, 2) == {key(A): val(1), key(B): val(2, 7)}
    assert entries(b"", b"", 0) == {}


def test_action_of_knows_drop_and_monitor_only() -> None:
    assert external.action_of(val(1)) is Action.DROP
    assert external.action_of(val(2)) is Action.MONITOR
    assert external.action_of(val(0)) is None  # PASS: no rule
    assert external.action_of(val(9)) is None


def test_external_hits_count_under_one_rule_id_apart_from_auto_and_the_operators() -> None:
    """/metrics: no label holds an address; what a deleted external rule counted stays counted."""
    builder = SnapshotBuilder("eth0")
    sample = StatsSample(at=1.0, totals={"tcp": ProtoCounters(1, 1, 1)})
    registry = CollectorRegistry()
    current: list[EngineSnapshot] = []
    registry.register(EngineCollector(lambda: current[-1]))

    def publish(*statuses: tuple[FilterRule, int]) -> None:
        rules = [RuleStatus(rule=r, map_name="BLOCKLIST", hits=h) for r, h in statuses]
        current.append(builder.build(sample, rules, mode="native", attached=True, blocklist_entries=1,
                                     blocklist_capacity=9, alerts_active=0))  # fmt: skip

    def hits(rule_id: str) -> float | None:
        return registry.get_sample_value("ironpost_rule_hits_total", {"rule_id": rule_id})

    e1, e2 = kernel_rules.external_rule(key(A), 1), kernel_rules.external_rule(key(B), 2)
    auto = FilterRule("auto-syn_flood-198.18.0.7", src_ip=ipaddress.ip_network("198.18.0.7"), auto=True)
    mine = FilterRule("mine", src_ip=ipaddress.ip_network(OTHER))
    publish((e1, 4), (e2, 3), (auto, 2), (mine, 1))
    assert (hits(EXTERNAL_RULE_ID), hits(AUTO_RULE_ID), hits("mine")) == (7, 2, 1)
    assert hits(e1.id) is None and A not in generate_latest(registry).decode()
    publish((e2, 5), (auto, 2), (mine, 1))  # e1 deleted by its tool
    assert hits(EXTERNAL_RULE_ID) == 9
    assert [s.rule.id for s in current[-1].rules] == [e2.id, auto.id, "mine"]  # the console: each its own


def test_ids_of_other_tools_entries_are_reserved_in_the_configuration() -> None:
    text = '[[rules]]\nid = "external:198.18.0.2"\nsrc_ip = "198.18.0.2"\n'
    with pytest.raises(ConfigError) as info:
        config.loads(text, "t.toml")
    assert [e.message for e in info.value.errors] == [
        "ids starting with 'external:' name other tools' BLOCKLIST entries: choose another id"
    ]
    assert config.loads(text.replace("external:", "extern-"), "t.toml").rules  # negative control


# --------------------------------------------------------------------------- #
# against the kernel


@dataclass
class World:
    dp: Datapath
    table: RuleTable
    control: RuleController
    audit: Path
    handle: tuple[str, str]  # bpftool's handle of BLOCKLIST: ("id", N)

    def verdict(self, src: str) -> int:
        return libbpf.prog_test_run(self.dp.prog_fd, frame(src, "198.19.0.1", 53, "udp")).retval

    def write(self, addr: str, action: int = abi.ACTION_DROP) -> None:
        bpftool.blocklist_update(self.handle, addr, action)

    def delete(self, addr: str) -> None:
        bpftool.blocklist_delete(self.handle, addr)

    def value(self, addr: str) -> bytes | None:
        return self.dp.map_lookup("BLOCKLIST", key(addr))

    def hits(self) -> dict[str, int]:
        return {s.rule.id: s.hits for s in self.table.status()}

    def audited(self) -> list[tuple[str, str | None, str]]:
        if not self.audit.exists():
            return []
        lines = [json.loads(line) for line in self.audit.read_text().splitlines()]
        return [(e["change"], e.get("rule", {}).get("id"), e["via"]) for e in lines]


@pytest.fixture(scope="module")
def datapath() -> Iterator[Datapath]:
    if libbpf.available():
        dp = Datapath(DatapathConfig(blocklist_max_entries=4096, event_rate=0))
        try:
            yield dp
        finally:
            dp.close()


@pytest.fixture
def world(datapath: Datapath, tmp_path: Path) -> Iterator[World]:
    table = RuleTable(datapath, monotonic_to_wall_offset())
    audit = tmp_path / "audit.log"
    control = RuleController(table, AuditLog(audit))
    map_id = libbpf.map_info(datapath.map_fd("BLOCKLIST")).id
    try:
        yield World(datapath, table, control, audit, ("id", str(map_id)))
    finally:
        control.set_protected([])
        table.replace_all([r for r in table.rules() if not r.external])
        for rule in [r for r in table.rules() if r.external]:
            table.delete(rule.id)
        table.replace_all([])
        for k, _ in list(datapath.map_items("BLOCKLIST")):  # what the tests' "other tool" left
            datapath.map_delete("BLOCKLIST", k)


def filter_bits(dp: Datapath, addr: str) -> int:
    bucket = prefilter.filter_bucket(key(addr).ljust(16, b"\0"), abi.FAMILY_V4)
    word = int.from_bytes(dp.map_lookup("ADDR_FILTER", (bucket >> 1).to_bytes(4, "little")) or bytes(8), "little")
    return (word >> ((bucket & 1) * 32)) & 0xFFFFFFFF


pytestmark_root = pytest.mark.root


@pytestmark_root
def test_a_seed_entry_drops_only_once_taken_in_and_is_credited_to_its_own_rule(world: World) -> None:
    assert world.verdict(A) == XDP_PASS
    world.write(A)
    # The contract's fault: the program does not find an entry nobody set a filter bit for.
    assert world.verdict(A) == XDP_PASS
    assert world.value(A) == bpftool.seed_value(abi.ACTION_DROP)

    out = world.control.reconcile_external()
    rule_id = f"external:{A}"
    assert [r.id for r in out.added] == [rule_id] and out.rules_changed
    assert not (out.removed or out.updated or out.refused or out.reverted)
    [rule] = world.table.rules()
    assert rule.external and rule.action is Action.DROP and rule.src_ip == ipaddress.ip_network(A)
    assert world.verdict(A) == XDP_DROP
    assert world.verdict(B) == XDP_PASS  # the same /24 (filter bucket), another address: passes
    assert world.verdict(OTHER) == XDP_PASS
    assert world.hits()[rule_id] == 1  # credited to its own slot, not slot 0 as the seed's value says
    # The value is the rule's now: the action as the tool wrote it, the rule's slot, marked external.
    action, own_action, origin, slot, _prio, own_slot, _own = abi.BLOCKLIST_VALUE.unpack(world.value(A) or b"")
    assert (action, own_action, origin) == (abi.ACTION_DROP, abi.ACTION_DROP, abi.ORIGIN_EXTERNAL)
    assert slot == own_slot and world.table.rule_for_slot(slot) == rule
    assert filter_bits(world.dp, A) & abi.FILTER_EXACT4  # found inline, as ironpost's own exact rules
    assert world.audited() == [("add", rule_id, "external")]

    # Nothing changed since: the next reconcile reads and does nothing.
    generation = world.table.generation
    again = world.control.reconcile_external()
    assert not again.rules_changed and not again.reverted and world.table.generation == generation
    again = world.control.reconcile_external()  # the read that finds the map as last seen: nothing
    assert not again.rules_changed and world.table.generation == generation
    assert world.audited() == [("add", rule_id, "external")]


@pytestmark_root
def test_a_deleted_entry_stops_dropping_and_leaves_no_filter_bit(world: World) -> None:
    world.write(A)
    world.control.reconcile_external()
    assert world.verdict(A) == XDP_DROP
    world.delete(A)
    assert world.verdict(A) == XDP_DROP  # its EXACT4 way still drops until the reconcile
    out = world.control.reconcile_external()
    assert [r.id for r in out.removed] == [f"external:{A}"]
    assert world.verdict(A) == XDP_PASS
    assert world.table.rules() == []
    assert filter_bits(world.dp, A) == 0
    assert world.audited() == [("add", f"external:{A}", "external"), ("delete", f"external:{A}", "external")]


@pytestmark_root
def test_a_changed_action_changes_the_rule_and_pass_makes_it_no_rule(world: World) -> None:
    rule_id = f"external:{A}"
    world.write(A, abi.ACTION_MONITOR)
    out = world.control.reconcile_external()
    assert [(r.id, r.action) for r in out.added] == [(rule_id, Action.MONITOR)]
    assert world.verdict(A) == XDP_PASS and world.hits()[rule_id] == 1  # monitored: passes, counted

    world.write(A, abi.ACTION_DROP)
    out = world.control.reconcile_external()
    assert [(r.id, r.action) for r in out.updated] == [(rule_id, Action.DROP)]
    assert world.verdict(A) == XDP_DROP

    # The tool writes the same action again (its seed value over ours): the same rule, ours back, no audit.
    before = world.audited()
    world.write(A, abi.ACTION_DROP)
    out = world.control.reconcile_external()
    assert not out.rules_changed and not out.reverted
    assert abi.BLOCKLIST_VALUE.unpack(world.value(A) or b"")[2] == abi.ORIGIN_EXTERNAL
    assert world.audited() == before

    # PASS (0): no rule any more; the entry stays as the tool wrote it, and is not looked at again.
    world.write(A, abi.ACTION_PASS)
    out = world.control.reconcile_external()
    assert [r.id for r in out.removed] == [rule_id] and out.ignored == [key(A)]
    assert world.verdict(A) == XDP_PASS and world.table.rules() == []
    assert world.value(A) == bpftool.seed_value(abi.ACTION_PASS)
    assert not world.control.reconcile_external().ignored
    # An action ironpost does not know: the same.
    world.write(A, 7)
    out = world.control.reconcile_external()
    assert out.ignored == [key(A)] and not out.rules_changed and world.verdict(A) == XDP_PASS
    # And back to DROP: a rule again.
    world.write(A, abi.ACTION_DROP)
    assert [r.id for r in world.control.reconcile_external().added] == [rule_id]
    assert world.verdict(A) == XDP_DROP
    assert [c for c, _, _ in world.audited()] == ["add", "update", "delete", "add"]


@pytestmark_root
def test_a_drop_on_a_protected_address_is_deleted_with_an_audit_line_and_a_warning(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    world.control.set_protected([Protected(ipaddress.ip_network(A), REASON_SSH_CLIENT)])
    world.write(A)
    world.write(OTHER)
    with caplog.at_level(logging.WARNING):
        out = world.control.reconcile_external()
    assert [r.id for r in out.refused] == [f"external:{A}"]
    assert [r.id for r in out.added] == [f"external:{OTHER}"]  # negative control: not protected, taken in
    assert world.value(A) is None  # gone from BLOCKLIST: never enforced, with or without a controller
    assert world.verdict(A) == XDP_PASS and world.verdict(OTHER) == XDP_DROP
    assert [r.id for r in world.table.rules()] == [f"external:{OTHER}"]
    [warning] = [r for r in caplog.records if getattr(r, "event", None) == "external_refused"]
    assert A in warning.getMessage() and "your SSH client address" in warning.getMessage()
    assert ("refuse", f"external:{A}", "external") in world.audited()

    # A monitor entry on the protected address drops nothing: taken in.
    world.write(A, abi.ACTION_MONITOR)
    assert [r.id for r in world.control.reconcile_external().added] == [f"external:{A}"]
    # Switched to DROP: refused, deleted.
    world.write(A, abi.ACTION_DROP)
    out = world.control.reconcile_external()
    assert [r.id for r in out.refused] == [f"external:{A}"] and world.value(A) is None
    assert world.verdict(A) == XDP_PASS

    # A protection that comes later (a reload, a new SSH session) takes a drop already in force away.
    assert world.verdict(OTHER) == XDP_DROP
    world.control.set_protected([Protected(ipaddress.ip_network(f"{OTHER}/32"), REASON_SSH_CLIENT)])
    assert world.value(OTHER) is None and world.table.rules() == []
    assert world.verdict(OTHER) == XDP_PASS
    assert world.audited()[-1] == ("refuse", f"external:{OTHER}", "external")


@pytestmark_root
def test_ironposts_own_entry_overwritten_or_deleted_by_another_tool_is_written_back(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    own = FilterRule("mine", Action.DROP, src_ip=ipaddress.ip_network(A))
    world.control.add(own, OPERATOR)
    ours = world.value(A)
    assert world.verdict(A) == XDP_DROP

    world.write(A, abi.ACTION_PASS)  # another tool's idea of "unblock"
    with caplog.at_level(logging.WARNING):
        out = world.control.reconcile_external()
    assert out.reverted == [own] and not out.rules_changed
    assert world.value(A) == ours and world.table.rules() == [own]
    world.delete(A)
    out = world.control.reconcile_external()
    assert out.reverted == [own] and world.value(A) == ours
    assert world.verdict(A) == XDP_DROP and world.hits()["mine"] == 2
    assert sum(1 for r in caplog.records if getattr(r, "event", None) == "external_reverted") == 2
    assert [c for c, rid, _ in world.audited() if rid == "mine"] == ["add", "revert", "revert"]


@pytestmark_root
def test_an_operators_monitor_rule_never_takes_another_tools_drop_over(world: World) -> None:
    """The Top pane's m on a source another tool blocks would lift the tool's drop: refused, the entry in force.
    The control: on the tool's monitor entry, the operator's monitor rule takes it over."""
    world.write(A)
    world.write(B, abi.ACTION_MONITOR)
    world.control.reconcile_external()
    watch = FilterRule("monitor-src-" + A, Action.MONITOR, src_ip=ipaddress.ip_network(A))
    with pytest.raises(RuleRefused, match=f"external:{A}"):
        world.control.add(watch, OPERATOR)
    assert world.verdict(A) == XDP_DROP
    # Nor from the file at a reload: refused before any write, the tool's drop in force.
    with pytest.raises(RuleRefused, match=f"monitor rule on external:{A}'s drop"):
        world.control.replace_all([watch], OPERATOR)
    assert world.verdict(A) == XDP_DROP and f"external:{A}" in [r.id for r in world.table.rules()]
    world.control.add(FilterRule("monitor-src-" + B, Action.MONITOR, src_ip=ipaddress.ip_network(B)), OPERATOR)
    assert sorted(r.id for r in world.table.rules()) == [f"external:{A}", "monitor-src-" + B]


@pytestmark_root
def test_an_operators_rule_on_the_same_address_takes_the_entry_over(world: World) -> None:
    world.write(A, abi.ACTION_MONITOR)
    world.control.reconcile_external()
    # An auto-block does not take it over: it would delete the tool's entry when it expires.
    auto = FilterRule("auto-port_scan-" + A, Action.DROP, src_ip=ipaddress.ip_network(A), auto=True)
    with pytest.raises(RuleRefused, match=f"external:{A}"):
        world.control.add(auto, Actor("ironpost", None, "detector"))
    assert [r.id for r in world.table.rules()] == [f"external:{A}"] and world.verdict(A) == XDP_PASS
    own = FilterRule("mine", Action.DROP, src_ip=ipaddress.ip_network(A))
    world.control.add(own, OPERATOR)
    assert world.table.rules() == [own]
    # Audited as an auto-block taken over is: the tool's rule deleted, the operator's added (session 24).
    assert world.audited()[-2:] == [("delete", f"external:{A}", "console"), ("add", "mine", "console")]
    assert abi.BLOCKLIST_VALUE.unpack(world.value(A) or b"")[2] == abi.ORIGIN_IRONPOST
    assert not world.control.reconcile_external().rules_changed
    assert world.verdict(A) == XDP_DROP and world.hits() == {"mine": 1}
    # Deleting it deletes the entry: ironpost's now.
    world.control.delete("mine", OPERATOR)
    assert world.value(A) is None and world.verdict(A) == XDP_PASS


@pytestmark_root
def test_an_operators_block_takes_an_auto_block_over_in_place(world: World) -> None:
    """Blocking a source a detector blocked makes the block the operator's: the entry is rewritten in place
    (never absent), the hits are the new rule's, the auto-block leaves (audited).  Until session 23 it was
    refused ("matches exactly the packets rule 'auto-…' matches"), and the operator had to delete the
    auto-block, unblocking the source, to block it for longer.  The control: two operator rules on one match
    are still refused."""
    detector = Actor("ironpost", None, "detector")
    auto = FilterRule("auto-syn_flood-" + A, Action.DROP, src_ip=ipaddress.ip_network(A), auto=True)
    world.control.add(auto, detector)
    assert world.verdict(A) == XDP_DROP and world.hits() == {auto.id: 1}
    # A monitor rule on it (the Top pane's m) would lift the drop: refused, the auto-block stays.
    watch = FilterRule("monitor-src-" + A, Action.MONITOR, src_ip=ipaddress.ip_network(A))
    with pytest.raises(RuleRefused, match=f"matches exactly the packets rule '{auto.id}' matches"):
        world.control.add(watch, OPERATOR)
    assert world.table.rules() == [auto] and world.verdict(A) == XDP_DROP
    before = world.value(A)
    own = FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A))
    world.control.add(own, OPERATOR)
    assert world.table.rules() == [own] and world.value(A) is not None and world.value(A) != before
    assert world.verdict(A) == XDP_DROP and world.hits() == {own.id: 1}
    assert world.audited()[-2:] == [("delete", auto.id, "console"), ("add", own.id, "console")]
    assert world.control.taken_over == {auto.id: own.id}  # for the auto-blocker to follow
    with pytest.raises(RuleRefused, match=f"matches exactly the packets rule '{own.id}' matches"):
        world.control.add(FilterRule("again", Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    # An auto-block never takes an operator's rule over: the detector's block is refused, the rule stays.
    with pytest.raises(RuleRefused, match="matches exactly"):
        world.control.add(auto, detector)
    assert world.table.rules() == [own]


class _FailingStore:
    """A configuration file whose save fails (a full disk)."""

    def add(self, rule: FilterRule) -> None:
        raise OSError(28, "No space left on device")

    def update(self, rule: FilterRule) -> None:
        raise OSError(28, "No space left on device")

    def delete(self, rule_id: str) -> None:
        raise OSError(28, "No space left on device")


@pytestmark_root
def test_a_take_over_whose_save_fails_hands_the_auto_block_back_in_place(world: World) -> None:
    """The operator's rule could not be saved: the auto-block is back, its entry rewritten in place (never
    deleted: the source is never let through), the new rule gone, nothing audited."""
    control = RuleController(world.table, AuditLog(world.audit), store=_FailingStore())  # type: ignore[arg-type]
    auto = FilterRule("auto-syn_flood-" + A, Action.DROP, src_ip=ipaddress.ip_network(A), auto=True)
    world.table.add(auto)
    deleted: list[bytes] = []
    real_delete = world.dp.map_delete

    def watched(name: Any, key: bytes) -> Any:
        deleted.append(key)
        return real_delete(name, key)

    world.dp.map_delete = watched  # type: ignore[method-assign]
    try:
        with pytest.raises(Exception, match="saving it failed"):
            control.add(FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    finally:
        del world.dp.map_delete
    assert world.table.rules() == [auto] and world.verdict(A) == XDP_DROP
    assert key(A) not in deleted and world.audited() == []


@pytestmark_root
@pytest.mark.parametrize("tool_action", [abi.ACTION_DROP, abi.ACTION_MONITOR])
def test_a_take_over_whose_save_fails_hands_the_tools_entry_back(world: World, tool_action: int) -> None:
    """The operator's rule on another tool's address could not be saved: the tool's entry is back as it was taken
    in (its action, marked the tool's), never deleted: the tool's block never lapses and stays the tool's to
    lift.  Until session 24 the failed add deleted the entry with the rule.  The control: the same failed save
    with no entry under it leaves nothing behind."""
    world.write(A, tool_action)
    world.control.reconcile_external()
    taken_in = world.value(A)
    assert taken_in is not None and abi.BLOCKLIST_VALUE.unpack(taken_in)[2] == abi.ORIGIN_EXTERNAL
    before, audited = world.verdict(A), world.audited()
    assert before == (XDP_DROP if tool_action == abi.ACTION_DROP else XDP_PASS)
    control = RuleController(world.table, AuditLog(world.audit), store=_FailingStore())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="saving it failed"):
        control.add(FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    assert [r.id for r in world.table.rules()] == [f"external:{A}"]
    back = world.value(A)
    assert back is not None and world.verdict(A) == before
    # The tool's action, marked the tool's (its slot and rank are the rule's new ones).
    assert abi.BLOCKLIST_VALUE.unpack(back)[:3] == abi.BLOCKLIST_VALUE.unpack(taken_in)[:3]
    assert not world.control.reconcile_external().rules_changed and world.audited() == audited
    # The tool lifts its entry: the rule goes, as any entry the tool deletes.
    world.delete(A)
    assert [r.id for r in world.control.reconcile_external().removed] == [f"external:{A}"]
    # Control: no entry under it, the failed save leaves no rule and no entry.
    with pytest.raises(Exception, match="saving it failed"):
        control.add(FilterRule("block-" + B, Action.DROP, src_ip=ipaddress.ip_network(B)), OPERATOR)
    assert world.table.rules() == [] and world.value(B) is None and world.verdict(B) == XDP_PASS


@pytestmark_root
def test_a_failed_take_over_whose_entry_the_tool_deleted_meanwhile_leaves_nothing(world: World) -> None:
    """The tool deletes its entry while the operator's rule is being saved, and the save fails: nothing to hand
    back (an entry is never re-created for a tool), so the new rule goes too and the map holds nothing."""
    world.write(A)
    world.control.reconcile_external()

    class _Racing(_FailingStore):
        def add(self, rule: FilterRule) -> None:
            world.delete(A)  # the tool lifts its block meanwhile
            super().add(rule)

    control = RuleController(world.table, AuditLog(world.audit), store=_Racing())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="saving it failed"):
        control.add(FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    assert world.table.rules() == [] and world.value(A) is None and world.verdict(A) == XDP_PASS


@pytestmark_root
@pytest.mark.parametrize(("read", "then"), [(abi.ACTION_DROP, abi.ACTION_PASS), (abi.ACTION_MONITOR, abi.ACTION_DROP)])
def test_a_reconcile_never_writes_over_what_the_tool_wrote_after_the_survey(world: World, read: int, then: int) -> None:
    """The survey reads the map (outside the engine's lock), the tool writes again, then the survey is applied: the
    value read is stale, and writing it (the taken-in value, its action) over the tool's newer one undid the tool's
    change for good (until session 24: a block the tool lifted, or a drop it made, lost).  The entry is acted on
    as it is now."""
    ext = world.control.external
    world.write(A, read)
    survey = ext.survey(*ext.expected())
    world.write(A, then)
    out = ext.apply(survey)
    if then == abi.ACTION_PASS:
        assert not out.added and world.table.rules() == [] and world.verdict(A) == XDP_PASS
    else:
        assert [r.action for r in out.added] == [Action.DROP] and world.verdict(A) == XDP_DROP
    assert not world.control.reconcile_external().rules_changed
    # Control: a survey applied with nothing written since takes the entry in.
    world.write(B)
    assert [r.id for r in ext.apply(ext.survey(*ext.expected())).added] == [f"external:{B}"]


@pytestmark_root
def test_a_tool_writing_a_new_value_each_time_cannot_keep_ironposts_entry_from_being_written_back(world: World) -> None:
    """ironpost's own entry overwritten with PASS and a counter in its last bytes, again between each survey and its
    apply: written back each time, and warned (session 24's first re-read skipped an entry whose value had moved,
    so a tool writing a new value each time kept it from ever being written back: an attacker's review)."""
    ext = world.control.external
    mine = FilterRule("mine", Action.DROP, src_ip=ipaddress.ip_network(A))
    world.control.add(mine, OPERATOR)
    written = world.value(A)
    for n in range(1, 4):
        world.dp.map_update("BLOCKLIST", key(A), val(abi.ACTION_PASS, n))
        survey = ext.survey(*ext.expected())
        world.dp.map_update("BLOCKLIST", key(A), val(abi.ACTION_PASS, n + 100))
        assert [r.id for r in ext.apply(survey).reverted] == ["mine"]
        assert world.value(A) == written and world.verdict(A) == XDP_DROP


@pytestmark_root
def test_a_monitor_rule_never_takes_over_a_drop_the_tool_made_since_the_last_reconcile(world: World) -> None:
    """The tool's monitor entry, taken in, then made a drop (not yet reconciled): the operator's monitor rule on it
    is refused, from the console and from the file, as on a drop taken in (until session 24 it took the entry over
    and lifted the drop).  The control: on the monitor entry as it was, the monitor rule takes it over."""
    world.write(A, abi.ACTION_MONITOR)
    world.control.reconcile_external()
    world.write(A, abi.ACTION_DROP)
    watch = FilterRule("monitor-src-" + A, Action.MONITOR, src_ip=ipaddress.ip_network(A))
    with pytest.raises(RuleRefused, match="matches exactly"):
        world.control.add(watch, OPERATOR)
    with pytest.raises(RuleRefused, match="monitor rule on"):
        world.control.replace_all([watch], OPERATOR)
    assert [r.id for r in world.table.rules()] == [f"external:{A}"]
    assert [r.action for r in world.control.reconcile_external().updated] == [Action.DROP]
    assert world.verdict(A) == XDP_DROP  # the tool's drop in force: nothing lifted it
    world.write(B, abi.ACTION_MONITOR)
    world.control.reconcile_external()
    world.control.add(FilterRule("monitor-src-" + B, Action.MONITOR, src_ip=ipaddress.ip_network(B)), OPERATOR)
    assert "monitor-src-" + B in [r.id for r in world.table.rules()]


@pytestmark_root
@pytest.mark.parametrize("tool_then", [abi.ACTION_PASS, abi.ACTION_MONITOR])
def test_a_failed_take_over_never_hands_back_a_value_the_tool_has_changed_since(world: World, tool_then: int) -> None:
    """The tool rewrites its entry while the operator's rule is being saved, and the save fails: the value taken in
    is not written back over the tool's newer one (until session 24 it was: a block the tool had lifted came back
    for good); the operator's rule lets go of the entry, left as the tool wrote it, and the next reconcile takes it
    as the tool has it."""
    world.write(A)
    world.control.reconcile_external()

    class _Racing(_FailingStore):
        def add(self, rule: FilterRule) -> None:
            world.write(A, tool_then)  # the tool changes its mind meanwhile
            super().add(rule)

    control = RuleController(world.table, AuditLog(world.audit), store=_Racing())  # type: ignore[arg-type]
    with pytest.raises(Exception, match="saving it failed"):
        control.add(FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    assert world.table.rules() == [] and (world.value(A) or b"\xff")[0] == tool_then
    out = world.control.reconcile_external()
    if tool_then == abi.ACTION_PASS:
        assert world.table.rules() == [] and world.verdict(A) == XDP_PASS
    else:
        assert [r.action for r in out.added] == [Action.MONITOR] and world.verdict(A) == XDP_PASS


@pytestmark_root
def test_a_take_over_whose_undo_fails_too_stays_in_force_and_says_so(world: World) -> None:
    """The save fails and handing the tool's entry back fails as well: the operator's rule stays in force (the
    source is never let through for a failed undo) and the error says it is in force, not saved."""
    world.write(A)
    world.control.reconcile_external()
    control = RuleController(world.table, AuditLog(world.audit), store=_FailingStore())  # type: ignore[arg-type]

    def broken(*_args: Any) -> None:
        raise OSError(12, "Cannot allocate memory")

    world.table.hand_back = broken  # type: ignore[method-assign]
    try:
        with pytest.raises(IronpostError, match="is in force but not saved"):
            control.add(FilterRule("block-" + A, Action.DROP, src_ip=ipaddress.ip_network(A)), OPERATOR)
    finally:
        del world.table.hand_back
    assert [r.id for r in world.table.rules()] == ["block-" + A] and world.verdict(A) == XDP_DROP


@pytestmark_root
def test_a_reload_keeps_other_tools_entries_and_a_panic_clears_them(world: World) -> None:
    world.write(A)
    world.control.reconcile_external()
    file_rule = FilterRule("file", Action.DROP, src_ip=ipaddress.ip_network(OTHER))
    world.control.replace_all([file_rule], OPERATOR)
    assert [r.id for r in world.table.rules()] == ["file", f"external:{A}"]  # after the file's rules
    assert world.verdict(A) == XDP_DROP and world.verdict(OTHER) == XDP_DROP
    assert not world.control.reconcile_external().rules_changed  # rewritten with its new rank: expected
    # An operator's edit of another tool's entry is refused: it changes with that tool.
    with pytest.raises(Exception, match="another tool's BLOCKLIST entry"):
        world.control.update(FilterRule(f"external:{A}", Action.MONITOR, src_ip=ipaddress.ip_network(A)), OPERATOR)
    cleared = world.control.panic(OPERATOR)
    assert {r.id for r in cleared} == {"file", f"external:{A}"}
    assert world.value(A) is None and world.verdict(A) == XDP_PASS
    assert not world.control.reconcile_external().rules_changed


@pytestmark_root
def test_an_entry_whose_exact4_bucket_is_full_drops_through_blocklist_with_its_own_slot(world: World) -> None:
    """The path where the program reads BLOCKLIST's value itself: it must be the rule's by then."""
    seed, bits = world.dp.read_config_raw()[3], world.dp.cfg.exact4_buckets.bit_length() - 1
    group: list[str] = []
    for a in ipaddress.ip_network("198.18.0.0/15").hosts():
        if bucket_of(a.packed, seed, bits) == bucket_of(key(A), seed, bits) and str(a) != A:
            group.append(str(a))
            if len(group) == abi.EXACT4_WAYS:
                break
    own = [FilterRule(f"own-{i}", Action.DROP, src_ip=ipaddress.ip_network(a)) for i, a in enumerate(group)]
    world.control.replace_all(own, OPERATOR)  # the bucket's 8 ways
    world.write(A)
    assert [r.id for r in world.control.reconcile_external().added] == [f"external:{A}"]
    assert filter_bits(world.dp, A) & abi.FILTER_EXACT
    assert world.verdict(A) == XDP_DROP and world.hits()[f"external:{A}"] == 1
    assert all(h == 0 for rid, h in world.hits().items() if rid != f"external:{A}")
    world.delete(A)
    world.control.reconcile_external()
    assert world.verdict(A) == XDP_PASS


@pytestmark_root
def test_a_thousand_entries_at_once_are_taken_in_over_two_reconciles(world: World) -> None:
    addrs = [str(a) for a in list(ipaddress.ip_network("198.18.64.0/21").hosts())[: external.MAX_CHANGES + 200]]
    for a in addrs:
        world.dp.map_update("BLOCKLIST", key(a), bpftool.seed_value(abi.ACTION_DROP))  # a tool's batch
    first = world.control.reconcile_external()
    assert len(first.added) == external.MAX_CHANGES
    second = world.control.reconcile_external()
    assert len(second.added) == 200
    assert {r.id for r in world.table.rules()} == {f"external:{a}" for a in addrs}
    assert all(world.verdict(a) == XDP_DROP for a in (addrs[0], addrs[-1], addrs[len(addrs) // 2]))
    assert world.verdict("198.18.72.1") == XDP_PASS
    lines = world.audited()
    assert len(lines) == len(addrs) and {(c, v) for c, _, v in lines} == {("add", "external")}


@pytestmark_root
def test_a_read_that_found_nothing_new_is_known_unchanged_until_the_map_or_the_table_changes(world: World) -> None:
    """The engine's surveyor builds the expected BLOCKLIST (every entry of the rules) only when a read
    differs from the last one that needed nothing done, at the same table generation."""
    world.table.add(FilterRule("own", Action.DROP, src_ip=ipaddress.ip_network(B)))
    ext = world.control.external
    ext.reconcile()  # the first survey: its read is the one known
    generation = ext.generation
    assert ext.unchanged(ext.read(), generation)
    world.write(A)  # another tool's entry: the bytes differ
    read = ext.read()
    assert not ext.unchanged(read, generation)
    expected, now = ext.expected()
    assert now == generation
    outcome = ext.apply(ext.survey(expected, generation, read))
    assert [r.id for r in outcome.added] == [f"{kernel_rules.EXTERNAL_PREFIX}{A}"]  # the read was acted on
    assert not ext.unchanged(ext.read(), ext.generation)  # taken in: read in full again next time
    ext.reconcile()
    assert ext.unchanged(ext.read(), ext.generation)
    assert not ext.unchanged(ext.read(), ext.generation + 1)  # the table wrote: not the same survey


@pytestmark_root
def test_expiry_looks_at_no_rule_until_the_soonest_is_due(world: World, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each second the engine expires timed rules: with none due, the table's soonest expiry says so and no
    rule is looked at (10,000 rules were listed and filtered every second); due, they go, soonest first."""
    table, control = world.table, world.control
    actor = Actor("ironpost", None, "expiry")
    table.replace_all([
        FilterRule("kept", Action.DROP, src_ip=ipaddress.ip_network("198.18.7.1/32")),
        FilterRule("later", Action.DROP, src_ip=ipaddress.ip_network("198.18.7.2/32"), expires_at=2000.0),
        FilterRule("sooner", Action.DROP, src_ip=ipaddress.ip_network("198.18.7.3/32"), expires_at=1000.0),
    ])  # fmt: skip
    assert table.next_expiry() == 1000.0

    def listed() -> list[FilterRule]:
        raise AssertionError("the rules were listed with none due")

    with monkeypatch.context() as m:
        m.setattr(table, "rules", listed)
        assert control.expire(999.0, actor) == []
    # An edit of a timed rule moves its expiry, shorter or longer: the soonest follows it.
    later = table.get("later")
    assert later is not None
    control.update(replace(later, expires_at=1200.0), actor)
    assert table.next_expiry() == 1000.0
    assert [r.id for r in control.expire(1100.0, actor)] == ["sooner"]
    assert table.next_expiry() == 1200.0
    control.update(replace(later, expires_at=5000.0), actor)
    assert table.next_expiry() == 5000.0 and control.expire(3000.0, actor) == []
    assert [r.id for r in control.expire(5000.0, actor)] == ["later"]
    assert table.next_expiry() is None and [r.id for r in table.rules()] == ["kept"]
    table.replace_all([])
    assert table.next_expiry() is None
