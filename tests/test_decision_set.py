"""The CrowdSec decision set (rules/decision_set.py) in a real datapath, verdicts by BPF_PROG_TEST_RUN:
a decision drops its source and credits the set's one slot; an operator's rule on the same source wins
and, when it goes, the decision is back; a decision removed or expired stops dropping and never deletes
an operator's entry; the external reconcile takes the set's BLOCKLIST entries for what they are (not
another tool's); and the decision stream's JSON is parsed as json.loads parses it, hostile input refused.
"""

from __future__ import annotations

import ipaddress
import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.packets import frame

from ironpost_tui.config.crowdsec import CrowdSecSettings, Scope
from ironpost_tui.engine.crowdsec import stream_json
from ironpost_tui.engine.crowdsec.bouncer import Bouncer
from ironpost_tui.engine.crowdsec.decisions import Decision, Delta, as_pulled
from ironpost_tui.errors import BlocklistFull
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.decision_set import DecisionSet, DecisionsFull
from ironpost_tui.rules.infrastructure import InfraReason, InfraSources, Infrastructure
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

XDP_DROP, XDP_PASS = 1, 2
A, B = "198.18.7.1", "198.18.7.2"
RANGE = "198.18.9.0/24"
V6 = "2001:db8:7::1"
SET_RULE = FilterRule("crowdsec", Action.DROP, crowdsec=True)


@pytest.fixture(scope="module")
def datapath() -> Iterator[Datapath]:
    dp = Datapath(DatapathConfig(blocklist_max_entries=4096, event_rate=0))
    try:
        yield dp
    finally:
        dp.close()


@pytest.fixture
def world(datapath: Datapath, tmp_path: Path) -> Iterator[tuple[RuleTable, RuleController, DecisionSet]]:
    table = RuleTable(datapath, monotonic_to_wall_offset())
    control = RuleController(table, AuditLog(tmp_path / "audit.log"))
    decisions = DecisionSet(table, SET_RULE)
    try:
        yield table, control, decisions
    finally:
        decisions.clear()
        table.replace_all([])


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def verdict(dp: Datapath, src: str) -> int:
    dst = "2001:db8:7::99" if ":" in src else "198.19.0.1"
    return libbpf.prog_test_run(dp.prog_fd, frame(src, dst, 53, "udp")).retval


pytestmark_root = pytest.mark.root


@pytestmark_root
def test_a_decision_drops_its_source_on_the_sets_slot(world: tuple[RuleTable, RuleController, DecisionSet]) -> None:
    table, _control, decisions = world
    dp = table.datapath
    assert verdict(dp, A) == XDP_PASS and verdict(dp, V6) == XDP_PASS  # negative control
    later = time.time() + 60
    assert decisions.put(net(A), 1, later) and decisions.put(net(RANGE), 2, later) and decisions.put(net(V6), 3, later)
    assert verdict(dp, A) == XDP_DROP and verdict(dp, "198.18.9.77") == XDP_DROP and verdict(dp, V6) == XDP_DROP
    assert verdict(dp, B) == XDP_PASS  # not a decision
    assert len(table) == 0  # no rule of the table: one slot for all
    assert decisions.hits()[0] == 3
    assert decisions.written(MapName.BLOCKLIST) == 1 and table.rule_for_slot(decisions.slot) == SET_RULE
    assert not decisions.put(net(A), 1, later)  # the same decision again: nothing written
    assert decisions.remove(net(A), ident=9) is False  # another decision's deletion: this one stays
    assert decisions.remove(net(A), ident=1) and verdict(dp, A) == XDP_PASS


@pytestmark_root
def test_two_networks_that_place_one_entry_are_one_decision(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """Networks that differ by an IPv6 zone compare unequal and place one SRC6 entry: the second is not held
    (the stream reader refuses zones; this is the set's own guard).  Until session 26 both were held on one
    entry: the first one's removal took the second's drop with it, and the second's raised KeyError."""
    table, _control, decisions = world
    dp = table.datapath
    later = time.time() + 60
    zone_a, zone_b = ipaddress.ip_network("2001:db8:7::1%a"), ipaddress.ip_network("2001:db8:7::1%b")
    assert zone_a != zone_b
    assert decisions.put(zone_a, 1, later) and verdict(dp, V6) == XDP_DROP
    heap = len(decisions._heap)
    assert decisions.put(zone_b, 2, later) is False and zone_b not in decisions and len(decisions) == 1
    assert len(decisions._heap) == heap  # not timed either: nothing left to expire for it
    assert decisions.remove(zone_b) is False and verdict(dp, V6) == XDP_DROP  # the held one still drops
    assert decisions.remove(zone_a) and verdict(dp, V6) == XDP_PASS and len(decisions) == 0
    assert decisions.put(net(V6), 3, later) and verdict(dp, V6) == XDP_DROP  # the entry is free again


@pytestmark_root
def test_an_operators_rule_on_the_same_source_wins(world: tuple[RuleTable, RuleController, DecisionSet]) -> None:
    table, _control, decisions = world
    dp = table.datapath
    later = time.time() + 60
    table.add(FilterRule("watch-a", Action.MONITOR, src_ip=net(A)))
    decisions.put(net(A), 1, later)  # recorded, not written: the operator's monitor rule decides
    assert verdict(dp, A) == XDP_PASS and table.status()[0].hits == 1
    assert decisions.written(MapName.BLOCKLIST) == 0
    table.delete("watch-a")  # the operator's rule goes: the decision is written again
    assert verdict(dp, A) == XDP_DROP and decisions.written(MapName.BLOCKLIST) == 1
    table.add(FilterRule("watch-a", Action.MONITOR, src_ip=net(A)))  # a rule over a written decision
    assert verdict(dp, A) == XDP_PASS
    decisions.remove(net(A))  # never deletes the operator's entry
    assert verdict(dp, A) == XDP_PASS and table.status()[0].hits >= 2
    table.delete("watch-a")
    assert verdict(dp, A) == XDP_PASS  # nothing held any more


@pytestmark_root
def test_expiry_removes_only_what_expired(world: tuple[RuleTable, RuleController, DecisionSet]) -> None:
    table, _control, decisions = world
    now = time.time()
    decisions.put(net(A), 1, now + 5)
    decisions.put(net(B), 2, now + 60)
    decisions.put(net(A), 3, now + 120)  # a later decision on A: the first one's expiry no longer counts
    assert decisions.expire(now + 10, time.monotonic() + 1) == []
    assert verdict(table.datapath, A) == XDP_DROP
    assert decisions.expire(now + 61, time.monotonic() + 1) == [net(B)]
    assert verdict(table.datapath, B) == XDP_PASS and verdict(table.datapath, A) == XDP_DROP
    assert decisions.expire(now + 121, time.monotonic() + 1) == [net(A)] and len(decisions) == 0


@pytestmark_root
def test_the_external_reconcile_expects_the_sets_entries(world: tuple[RuleTable, RuleController, DecisionSet]) -> None:
    table, control, decisions = world
    for i in range(200):
        decisions.put(net(f"198.18.8.{i}"), i, time.time() + 60)
    out = control.reconcile_external()
    assert not out.added and not out.removed and all(not r.external for r in table.rules())
    # Positive control: another tool's entry beside them is taken in.
    table.datapath.map_update(MapName.BLOCKLIST, net(B).network_address.packed, bytes([1]) + bytes(19))
    assert [r.id for r in control.reconcile_external().added] == [f"external:{B}"]


@pytestmark_root
def test_a_decisions_entry_another_tool_changes_is_written_back_and_never_taken_in(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """A decision's entry is ironpost's: another tool's delete or overwrite is written back, as a rule's is.
    Taken in as ``external:ADDR`` (until session 24, for a change), it outlived the decision.  And a decision whose
    expiry moved makes a survey of BLOCKLIST taken before the write stale (the generation moves with it)."""
    table, control, decisions = world
    dp, k = table.datapath, net(A).network_address.packed
    later = time.time() + 60
    decisions.put(net(A), 1, later)
    written = dp.map_lookup(MapName.BLOCKLIST, k)
    dp.map_delete(MapName.BLOCKLIST, k)
    out = control.reconcile_external()
    assert not out.rules_changed and dp.map_lookup(MapName.BLOCKLIST, k) == written and verdict(dp, A) == XDP_DROP
    dp.map_update(MapName.BLOCKLIST, k, bytes([2]) + bytes(19))  # rewritten as a monitor entry
    out = control.reconcile_external()
    assert not out.added and all(not r.external for r in table.rules())
    assert dp.map_lookup(MapName.BLOCKLIST, k) == written
    # Rewritten again between the survey and its apply, with a new value each time: written back all the same.
    ext = control.external
    dp.map_update(MapName.BLOCKLIST, k, bytes([0, 1]) + bytes(18))
    survey = ext.survey(*ext.expected())
    dp.map_update(MapName.BLOCKLIST, k, bytes([0, 2]) + bytes(18))
    ext.apply(survey)
    assert dp.map_lookup(MapName.BLOCKLIST, k) == written and verdict(dp, A) == XDP_DROP
    generation = table.generation
    decisions.put(net(A), 2, later + 3600)  # another decision, an hour later: the entry rewritten
    assert table.generation > generation and dp.map_lookup(MapName.BLOCKLIST, k) != written
    assert decisions.remove(net(A), ident=2) and dp.map_lookup(MapName.BLOCKLIST, k) is None
    assert verdict(dp, A) == XDP_PASS and len(table) == 0  # gone with its decision


def test_stream_json_parses_as_json_loads_and_refuses_what_it_refuses() -> None:
    good = [
        '{"new": [{"id": 1, "value": "198.18.0.1"}, {"id": 2, "value": "x]},{"}], "deleted": null}',
        "  {}  ",
        '{"new": [], "deleted": [ ] }',
        '{"a": {"b": [1, 2]}, "c": "d"}',
        "[1, 2]",
        "null",
    ]
    for text in good:
        assert stream_json.loads(text) == json.loads(text), text
    bad = ['{"new": [1,]}', '{"new": [1]', '{"a" 1}', "{1: 2}", '{"a": 1} x', "", "{", '{"new": [1 2]}', "\x00"]
    for text in bad:
        with pytest.raises(ValueError):
            json.loads(text)
        with pytest.raises(ValueError):
            stream_json.loads(text)


@pytestmark_root
def test_a_decision_on_infrastructure_is_skipped_as_a_protected_one_is(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """A shared blocklist must not cut this host off from what it runs on: a decision on a gateway, a
    resolver or the LAPI (or a range holding one) is skipped and counted; the others are applied (the
    control), through the bouncer's own apply on the tick."""
    table, control, _ = world
    found = Infrastructure(InfraSources(routes=list, resolv_confs=(), ntp_confs=(), ssh_clients=None, lapi=(net(B),)))
    bouncer = Bouncer(CrowdSecSettings(), None, found.overlapping)  # type: ignore[arg-type]  # no LAPI: no pull
    new = (
        Decision(1, net(B), Scope.IP, 60.0, "cscli", "x"),  # the LAPI itself
        Decision(2, net("198.18.7.0/24"), Scope.RANGE, 60.0, "cscli", "x"),  # a range holding it
        Decision(3, net(A), Scope.IP, 60.0, "cscli", "x"),  # neither: applied
    )
    bouncer._queue.put((Delta(tuple(map(as_pulled, new)), (), 0, 0), None))
    bouncer.apply(control)
    assert verdict(table.datapath, A) == XDP_DROP and verdict(table.datapath, B) == XDP_PASS
    assert bouncer.status(control).skipped_protected == 2
    assert found.overlapping(net(B), 0.0).reason == InfraReason.LAPI  # type: ignore[union-attr]
    bouncer.decision_set(control).clear()


@pytestmark_root
def test_the_status_counts_the_decisions_entries_in_blocklist_as_the_kernel_holds_them(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """The console's "blocklist N/MAX" is the map's room: the decisions' exact IPv4 addresses are BLOCKLIST
    entries beside the rules' (a range and an IPv6 address are not), and the status says how many, as the
    kernel's map holds them.  Until session 30 the console counted the rules' alone."""
    table, control, _ = world
    table.replace_all([FilterRule("own", Action.DROP, src_ip=net("198.18.7.50/32"))])
    bouncer = Bouncer(CrowdSecSettings(), None, lambda _n, _now: None)  # type: ignore[arg-type]  # no LAPI: no pull
    new = (
        Decision(1, net(A), Scope.IP, 60.0, "cscli", "x"),
        Decision(2, net(B), Scope.IP, 60.0, "cscli", "x"),
        Decision(3, net(RANGE), Scope.RANGE, 60.0, "cscli", "x"),
        Decision(4, net(V6), Scope.IP, 60.0, "cscli", "x"),
    )
    bouncer._queue.put((Delta(tuple(map(as_pulled, new)), (), 0, 0), None))
    bouncer.apply(control)
    status = bouncer.status(control)
    in_map = sum(1 for _ in table.datapath.map_items("BLOCKLIST"))
    assert status.decisions == 4 and status.blocklist == 2
    assert in_map == table.count(MapName.BLOCKLIST) + status.blocklist == 3
    bouncer.decision_set(control).clear()
    assert bouncer.status(control).blocklist == 0


class _Counting:
    """The real datapath's writes, counted (every write still goes to the kernel)."""

    def __init__(self, dp: Datapath) -> None:
        self.dp, self.single, self.batches = dp, 0, []  # type: ignore[var-annotated]

    def __getattr__(self, name: str) -> object:
        return getattr(self.dp, name)

    def map_update(self, name: MapName, key: bytes, value: bytes) -> None:
        self.single += 1
        self.dp.map_update(name, key, value)

    def map_update_batch(self, name: MapName, entries: list[tuple[bytes, bytes]]) -> tuple[int, Exception | None]:
        self.batches.append((name, len(entries)))
        return self.dp.map_update_batch(name, entries)


def many(n: int, base: str = "198.18.64.0") -> list[ipaddress.IPv4Network]:
    first = int(ipaddress.ip_address(base))
    return [ipaddress.ip_network(ipaddress.ip_address(first + i)) for i in range(n)]


@pytestmark_root
def test_a_batch_writes_each_map_once(world: tuple[RuleTable, RuleController, DecisionSet]) -> None:
    """Inside batch(), 1,000 addresses, 20 ranges and 20 IPv6 addresses are three writes (one per map),
    all dropping after it; a decision put and removed inside the same batch is never written.  Control:
    outside a batch, each put is its own write."""
    table, _control, decisions = world
    counting = _Counting(table.datapath)
    decisions._dp = counting  # type: ignore[assignment]
    later = time.time() + 60
    addrs = many(1000)
    ranges = [ipaddress.ip_network(f"198.19.{i}.0/24") for i in range(20)]
    v6 = [ipaddress.ip_network(f"2001:db8:8::{i + 1:x}") for i in range(20)]
    gone = ipaddress.ip_network("198.18.99.1")
    assert verdict(table.datapath, str(addrs[500].network_address)) == XDP_PASS
    with decisions.batch() as batch:
        for i, n in enumerate([*addrs, *ranges, *v6, gone]):
            decisions.put(n, i + 1, later)
        decisions.remove(gone)
        assert verdict(table.datapath, str(addrs[500].network_address)) == XDP_PASS  # not yet: at the end
    assert batch.failed == [] and batch.error is None
    assert sorted(counting.batches) == sorted([(MapName.BLOCKLIST, 1000), (MapName.SRC4, 20), (MapName.SRC6, 20)])
    assert counting.single == 0
    for n in (addrs[0], addrs[500], addrs[-1], ipaddress.ip_network("198.19.19.0/24"), v6[-1]):
        assert verdict(table.datapath, str(n.network_address + (7 if n.num_addresses > 1 else 0))) == XDP_DROP
    assert verdict(table.datapath, "198.18.99.1") == XDP_PASS and gone not in decisions
    assert len(decisions) == 1040 and decisions.written(MapName.BLOCKLIST) == 1000
    decisions.put(ipaddress.ip_network("198.18.99.2"), 5000, later)  # the control: no batch, one write
    assert counting.single == 1 and len(counting.batches) == 3


@pytestmark_root
def test_decisions_leave_the_operator_a_reserve_and_a_full_map_is_named(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """BLOCKLIST holds 4,096 entries here, 128 of them kept for the operator (1/32): the decisions stop
    at 3,968, each one past it refused with a one-line reason (as the bouncer catches it), and an
    operator's block still goes in.  And when the kernel's map is fuller than the set knows (another
    tool's 100 entries), the batch writes what fits and names the rest, which are not held."""
    table, control, decisions = world
    later = time.time() + 60
    addrs = many(4000, "198.18.128.0")
    refused: list[str] = []
    with decisions.batch() as batch:
        for i, n in enumerate(addrs):
            try:
                decisions.put(n, i + 1, later)
            except DecisionsFull as exc:
                refused.append(exc.message)
    assert batch.failed == [] and len(decisions) == 3968 == decisions.written(MapName.BLOCKLIST)
    assert len(refused) == 32 and "keeps 128 of its 4096 entries for the operator's rules" in refused[0]
    assert verdict(table.datapath, str(addrs[3967].network_address)) == XDP_DROP
    assert verdict(table.datapath, str(addrs[3999].network_address)) == XDP_PASS
    # The reserve is the operator's: a block goes in.
    block = FilterRule("op-block", Action.DROP, src_ip=net("198.18.250.1"))
    control.add(block, Actor("op", None, "test"))
    assert verdict(table.datapath, "198.18.250.1") == XDP_DROP
    # The controller counts the decisions: a rule set needing more than what is left is refused in one line.
    with pytest.raises(BlocklistFull, match="beside the 3968 CrowdSec decisions"):
        control._check_capacity(
            [FilterRule(f"x{i}", Action.DROP, src_ip=n) for i, n in enumerate(many(200, "198.18.240.0"))]
        )
    decisions.clear()
    # Another tool's entries the set does not know of: the kernel's map is full before the set's room.
    foreign = many(300, "198.18.60.0")
    dp = table.datapath
    value = decisions._value(later)  # a drop entry as any tool would write one
    for n in foreign:
        dp.map_update(MapName.BLOCKLIST, n.network_address.packed, value)
    room = 4096 - 128 - table.count(MapName.BLOCKLIST)  # the set's view (the operator's block included)
    kernel_room = room + 128 - 300  # the kernel's
    try:
        with decisions.batch() as batch:
            for i, n in enumerate(addrs[:room]):
                decisions.put(n, i + 1, later)
        assert batch.failed == addrs[kernel_room:room]
        assert "BLOCKLIST is full" in str(batch.error)
        assert len(decisions) == kernel_room and all(n not in decisions for n in batch.failed)
        assert verdict(dp, str(addrs[kernel_room - 1].network_address)) == XDP_DROP
        assert verdict(dp, str(addrs[kernel_room].network_address)) == XDP_PASS
    finally:
        for n in foreign:
            dp.map_delete(MapName.BLOCKLIST, n.network_address.packed)


@pytestmark_root
def test_the_bouncer_reports_decisions_past_the_reserve_in_one_line(
    world: tuple[RuleTable, RuleController, DecisionSet], caplog: pytest.LogCaptureFixture
) -> None:
    """4,000 decisions pulled into a 4,096-entry BLOCKLIST (128 kept): 3,968 applied over the ticks it
    takes, the 32 others reported in one warning with their count, not one line per decision or tick."""
    table, control, _ = world
    bouncer = Bouncer(CrowdSecSettings(), None)  # type: ignore[arg-type]  # no LAPI: no pull
    new = tuple(
        as_pulled(Decision(i + 1, n, Scope.IP, 600.0, "cscli", "x")) for i, n in enumerate(many(4000, "198.18.128.0"))
    )
    bouncer._queue.put((Delta(new, (), 0, 0), None))
    caplog.set_level("WARNING")
    for _ in range(1000):
        bouncer.apply(control)
        if not bouncer.pending:
            break
    assert not bouncer.pending
    assert len(bouncer.decision_set(control)) == 3968 == table.datapath.map_dump(MapName.BLOCKLIST)[2]
    lines = [r.getMessage() for r in caplog.records if "not applied" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("32 CrowdSec decision(s) not applied"), lines
    bouncer.decision_set(control).clear()


@pytestmark_root
def test_the_crowdsec_row_names_the_scenarios_of_the_decisions_held(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """The rules pane's one ``crowdsec`` row says how many decisions and their scenarios, most held first,
    kept up to date as decisions go; a scenario's control characters are shown as ``?``."""
    _table, control, _ = world
    bouncer = Bouncer(CrowdSecSettings(), None)  # type: ignore[arg-type]  # no LAPI: no pull
    addrs = many(4, "198.18.20.0")
    made = [
        Decision(1, addrs[0], Scope.IP, 600.0, "crowdsec", "crowdsecurity/ssh-bf"),
        Decision(2, addrs[1], Scope.IP, 600.0, "crowdsec", "crowdsecurity/ssh-bf"),
        Decision(3, addrs[2], Scope.IP, 600.0, "ironpost", "ironpost/port_scan"),
        Decision(4, addrs[3], Scope.IP, 600.0, "cscli", "\x1b[31mevil"),
    ]
    bouncer._queue.put((Delta(tuple(map(as_pulled, made)), (), 0, 0), None))
    bouncer.apply(control)
    row = bouncer.rule_status(control)
    assert row.rule.description == "4 CrowdSec decisions: crowdsecurity/ssh-bf 2, ironpost/port_scan 1, ?[31mevil 1"
    assert bouncer.rule_status(control) is row  # nothing changed: the same row (the snapshot stops at `is`)
    bouncer._queue.put((Delta((), (as_pulled(made[0]), as_pulled(made[2])), 0, 0), None))
    bouncer.apply(control)
    assert bouncer.rule_status(control) is not row  # changed: a new row
    assert bouncer.rule_status(control).rule.description == "2 CrowdSec decisions: crowdsecurity/ssh-bf 1, ?[31mevil 1"
    bouncer.panic()
    assert bouncer.rule_status(control).rule.description == "0 CrowdSec decisions"


@pytestmark_root
def test_an_entry_keeps_its_decisions_expiry_for_a_restart(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """The entry's own_priority holds the expiry (ORIGIN_DECISION): written again when a new decision on the
    source moves it by more than a minute, not for the seconds a full pull's recomputed expiry differs by."""
    table, _control, decisions = world
    dp = table.datapath
    key = ipaddress.ip_address(A).packed
    t = time.time() + 600

    def kept() -> tuple[int, int]:
        value = abi.BLOCKLIST_VALUE.unpack(dp.map_lookup(MapName.BLOCKLIST, key) or b"")
        return value[2], value[6]

    assert decisions.put(net(A), 1, t)
    assert kept() == (abi.ORIGIN_DECISION, int(t))
    decisions.put(net(A), 2, t + 10)  # another decision, seconds apart: the entry as it was
    assert kept() == (abi.ORIGIN_DECISION, int(t))
    decisions.put(net(A), 3, t + 3600)  # an hour more: written
    assert kept() == (abi.ORIGIN_DECISION, int(t + 3600))
    assert table.side_entries[key] == dp.map_lookup(MapName.BLOCKLIST, key)  # what external.py expects


@pytestmark_root
def test_a_bulk_of_decisions_frees_the_garbage_cycles_before_it_freezes(
    world: tuple[RuleTable, RuleController, DecisionSet],
) -> None:
    """After a bulk the bouncer freezes what is alive (gc.freeze: 100,000 decisions out of later full
    collections); garbage in the collector's oldest generation is collected first, not frozen for good at
    every bulk (the control: the same cycle is still there after a young collection and a freeze)."""
    import gc
    import weakref

    class Node:
        other: object = None

    def old_garbage_cycle() -> weakref.ref[Node]:
        a, b = Node(), Node()
        a.other, b.other = b, a
        held = [a]
        gc.collect()  # survives: now in the oldest generation
        ref = weakref.ref(a)
        held.clear()
        del a, b
        return ref

    _table, control, _ = world
    try:
        control_ref = old_garbage_cycle()
        gc.collect(1)
        gc.freeze()  # what the bulk did before: the cycle frozen with the rest
        gc.collect()
        assert control_ref() is not None  # frozen: never freed
        gc.unfreeze()
        gc.collect()
        assert control_ref() is None

        ref = old_garbage_cycle()
        bouncer = Bouncer(CrowdSecSettings(), None)  # type: ignore[arg-type]  # no LAPI: no pull
        new = tuple(
            as_pulled(Decision(i + 1, n, Scope.IP, 600.0, "cscli", "x")) for i, n in enumerate(many(40, "198.18.60.0"))
        )
        bouncer._queue.put((Delta(new, (), 0, 0), None))
        bouncer.apply(control)
        assert len(bouncer.decision_set(control)) == 40  # a bulk (more than AUDIT_EACH changes)
        assert ref() is None
        bouncer.decision_set(control).clear()
    finally:
        gc.unfreeze()
