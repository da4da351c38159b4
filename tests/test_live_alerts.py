"""Live alerts in the Textual-free core: every tick refreshes a row (count in the window, rate, last
seen, target); a block on the source shows as ``blocked`` with its time left and drops; the incident
is resolved only after the source was silent for ``[detectors] quiet_secs``, judged from the kernel's
counters (the sketch's per-source counts, the block rule's drop counter), not from findings alone.
Clock injected, no kernel: the kernel side is in tests/test_ui_live.py."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.detectors import AlertBook, AlertState, Block, DetectionPipeline, Finding, Live
from ironpost_tui.detectors.alerts import MANY_SOURCES, QUIET_SECS, live_fields
from ironpost_tui.detectors.settings import AutoBlockLimits, PortScanConfig, SynFloodConfig
from ironpost_tui.kernel import abi
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules.blocking import BlockIndex

A = abi.AGG_KEY.pack(bytes([198, 18, 0, 2]).ljust(16, b"\0"), abi.FAMILY_V4)
SRC = "198.18.0.2"
T1 = bytes([198, 18, 0, 1]).ljust(16, b"\0")


def pipeline(quiet: float = 20) -> DetectionPipeline:
    return DetectionPipeline(SynFloodConfig(window_secs=10, threshold=100), PortScanConfig(), "eth9", quiet_secs=quiet)


def test_a_flood_in_bursts_refreshes_count_rate_and_last_seen_every_tick_it_sends() -> None:
    """The reported bug: a row redrawn only when its count beat the peak.  Bursts of 300 SYNs every
    4 s: the count in a 10 s window stays at or under its peak, yet each burst refreshes the row."""
    p = pipeline()
    total, seen = 0, []
    for t in range(0, 40, 2):
        burst = 300 if t % 4 == 0 else 0
        total += burst
        changes = p.feed({A: (total, total, 0, 0)}, {}, now=float(t), wall=1000.0 + t, probes={(A, T1): burst})
        seen += [(t, c.kind, c.alert.count, c.alert.last_seen) for c in changes]
    bursts = [row for row in seen if row[0] % 4 == 0]
    assert [row[1] for row in bursts] == ["raised"] + ["updated"] * 9  # every burst, the peak long reached
    assert all(last == 1000.0 + t for t, _, _, last in bursts)  # last seen: the burst's tick
    (alert,) = p.book.active
    assert alert.peak == 900 and alert.count == 600 and alert.rate == 60.0  # two bursts in the window now
    assert tuple(map(str, alert.targets)) == ("198.18.0.1",) and alert.last_seen == 1036.0
    # The negative control: between bursts nothing was sent, and last seen did not move
    assert all(last < 1000.0 + t for t, _, _, last in seen if t % 4)


def test_blocked_while_the_rule_holds_with_time_left_and_drops_then_resolved_after_the_quiet_time() -> None:
    p = pipeline(quiet=20)
    p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0)
    # Blocked at t=1: the kernel stops counting the source (the sketch's counts stay), its rule drops
    hold = [(t, 1000 * t) for t in range(2, 31, 2)]  # drops rising until t=30
    for t, dropped in hold:
        block = Block("auto-syn_flood-198.18.0.2", 601.0, dropped)
        changes = p.feed({A: (500, 500, 0, 0)}, {}, now=float(t), wall=float(t), blocks={SRC: block})
        (alert,) = [c.alert for c in changes]
        assert (alert.state, alert.dropped, alert.last_seen) == (AlertState.BLOCKED, dropped, float(t))
        assert alert.time_left(float(t)) == 601.0 - t
    # Silent from t=30: the drop counter stops; the row still says blocked until the quiet time is over
    block = Block("auto-syn_flood-198.18.0.2", 601.0, 30_000)
    assert [c.kind for c in p.feed({A: (500, 500, 0, 0)}, {}, now=49.5, wall=49.5, blocks={SRC: block})] == []
    assert p.book.active[0].state == AlertState.BLOCKED and p.book.active[0].last_seen == 30.0
    (done,) = p.feed({A: (500, 500, 0, 0)}, {}, now=50.0, wall=50.0, blocks={SRC: block})
    assert (done.kind, done.alert.state, done.alert.dropped) == ("resolved", AlertState.RESOLVED, 30_000)


def test_a_blocked_source_no_detector_counts_anymore_is_not_resolved_while_its_drops_rise() -> None:
    """The negative control of the report's '"resolved" while 239,400 drops': without the block's
    counter the same ticks resolve the alert after the quiet time although the source still sends."""
    for with_block in (True, False):
        p = pipeline(quiet=10)
        p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0)
        kinds = []
        for t in range(1, 40):
            blocks = {SRC: Block("b", None, 5000 * t)} if with_block else None
            kinds += [c.kind for c in p.feed({A: (500, 500, 0, 0)}, {}, now=float(t), wall=float(t), blocks=blocks)]
        assert ("resolved" in kinds) is not with_block
        if with_block:
            (alert,) = p.book.active
            assert alert.time_left(39.0) is None and live_fields(alert, 39.0)["state"] == "blocked"


def test_a_source_still_sending_under_the_threshold_keeps_its_incident_open() -> None:
    p = pipeline(quiet=5)
    p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0)
    total = 500
    for t in range(1, 30):  # 5 SYNs a second: far under 100 in 10 s, but not silent
        total += 5
        changes = p.feed({A: (total, total, 0, 0)}, {}, now=float(t), wall=float(t))
        assert [c.kind for c in changes] == ["updated"]
    assert p.book.active[0].count < 100 and p.book.active[0].last_seen == 29.0
    assert [c.kind for c in p.feed({A: (total, total, 0, 0)}, {}, now=34.0, wall=34.0)] == ["resolved"]


def test_findings_alone_for_many_sources_refresh_when_the_count_grows() -> None:
    book = AlertBook(quiet_secs=3)
    f = Finding("syn_flood", (MANY_SOURCES, "198.18.0.1"), "critical", 5000, 10, "x")
    book.update([f], now=0.0)
    assert book.update([f], now=1.0) == []  # the same count: nothing sent that the book can see
    (c,) = book.update([Finding("syn_flood", (MANY_SOURCES, "198.18.0.1"), "critical", 6000, 10, "x")], now=2.0)
    assert (c.kind, c.alert.last_seen, c.alert.count) == ("updated", 2.0, 6000)
    assert book.update([], now=4.9) == []  # no finding, nothing known of many sources: as last said
    assert [c.kind for c in book.update([], now=5.0)] == ["resolved"]


def test_live_says_a_source_sent_even_when_no_finding_names_it() -> None:
    book = AlertBook(quiet_secs=3)
    book.update([Finding("port_scan", (SRC, "eth0"), "medium", 25, 60, "x")], now=0.0)
    (c,) = book.update([], now=1.0, live=lambda _d, _s: Live(True, 12))
    assert (c.alert.count, c.alert.last_seen) == (12, 1.0)
    assert book.update([], now=3.9, live=lambda _d, _s: Live(False, 12)) == []
    assert [c.kind for c in book.update([], now=4.0, live=lambda _d, _s: Live(False, 12))] == ["resolved"]


def _drop(rule_id: str, src: str, hits: int, expires: float | None = None) -> RuleStatus:
    import ipaddress

    rule = FilterRule(id=rule_id, action=Action.DROP, src_ip=ipaddress.ip_network(src), expires_at=expires)
    return RuleStatus(rule, "BLOCKLIST", hits)


def test_the_block_of_a_source_is_its_narrowest_unexpired_source_rule() -> None:
    index = BlockIndex(
        [
            _drop("net", "198.18.0.0/24", 7),
            _drop("host-old", "198.18.0.2/32", 3, expires=10.0),
            _drop("host", "198.18.0.2/32", 5, expires=100.0),
            _drop("other", "198.18.0.9/32", 1),
        ]
    )
    assert index.blocks([SRC, "198.18.0.3", "198.18.1.1", MANY_SOURCES], now=50.0) == {
        SRC: Block("host", 100.0, 5),
        "198.18.0.3": Block("net", None, 7),
    }
    assert index.blocks([SRC], now=100.0) == {}  # both host rules expired: the /24 is not the narrowest


def test_quiet_secs_default_range_and_one_line_errors() -> None:
    assert config.loads("", "t").auto_block.quiet_secs == QUIET_SECS == AutoBlockLimits().quiet_secs
    assert config.loads("[detectors]\nquiet_secs = 90\n", "t").auto_block.quiet_secs == 90.0
    for line, message in [
        ("quiet_secs = 0", "[detectors] quiet_secs 0 is out of range: it must be 1 to 86400"),
        ('quiet_secs = "1m"', "[detectors] quiet_secs must be a number"),
    ]:
        with pytest.raises(ConfigError) as exc:
            config.loads(f"[detectors]\n{line}\n", "t.toml")
        assert exc.value.message.splitlines()[0].startswith(f"t.toml:2:1: {message}"), exc.value.message


def test_an_alerts_block_round_trips_in_recordings_and_a_bad_one_is_refused() -> None:
    from ironpost_tui.records.codec import BadRecord, alert_from_json, alert_to_json

    alert = AlertBook().update([Finding("syn_flood", (SRC, "eth0"), "high", 500, 10, "x")], now=5.0)[0].alert
    blocked = replace(alert, block=Block("auto-syn_flood-198.18.0.2", 605.0, 239_400))
    assert alert_from_json(alert_to_json(blocked)) == blocked
    old = alert_to_json(alert)
    del old["block"]  # a recording made before alerts had one
    assert alert_from_json(old) == alert
    good = {"rule_id": "r", "until": None, "dropped": 1}
    for bad in (
        "x",
        {**good, "rule_id": 5},
        {**good, "until": -1},
        {**good, "dropped": -3},
        {**good, "until": math.nan},
    ):
        with pytest.raises(BadRecord):
            alert_from_json({**old, "block": bad})


def test_exports_json_logs_and_the_command_line_carry_the_same_live_fields() -> None:
    import json
    import logging

    from ironpost_tui.engine.control_socket.desk import alert_entry
    from ironpost_tui.metrics.log_format import JsonFormatter
    from ironpost_tui.records.export import alert_rows

    alert = AlertBook().update([Finding("syn_flood", (SRC, "eth0"), "high", 500, 10, "x")], now=1000.0)[0].alert
    blocked = replace(alert, block=Block("block-198.18.0.2", 1600.0, 239_400))
    (row,) = alert_rows([blocked], now=1060.0)
    assert (row["state"], row["count"], row["rate"], row["time_left"], row["dropped"], row["block_rule"]) == (
        "blocked",
        500,
        50.0,
        540.0,
        239_400,
        "block-198.18.0.2",
    )
    assert row["blocked_until"] == "1970-01-01T00:26:40.000Z" and row["last"] == "1970-01-01T00:16:40.000Z"
    (plain,) = alert_rows([alert], acknowledged={alert.id}, now=1060.0)
    assert (plain["state"], plain["time_left"], plain["dropped"], plain["blocked_until"]) == ("acked", None, 0, None)

    record = logging.LogRecord("t", logging.WARNING, "", 0, "alert", (), None)
    record.alert, record.change, record.created = blocked, "updated", 1060.0
    line = json.loads(JsonFormatter().format(record))
    assert {k: line[k] for k in ("state", "count", "rate", "time_left", "dropped", "block_rule")} == {
        "state": "blocked", "count": 500, "rate": 50.0, "time_left": 540.0, "dropped": 239_400,
        "block_rule": "block-198.18.0.2",
    }  # fmt: skip
    assert line["last_seen"] == "1970-01-01T00:16:40.000Z" and line["blocked_until"] == "1970-01-01T00:26:40.000Z"

    entry = alert_entry(blocked)
    assert (entry["state"], entry["dropped"], entry["block_rule"]) == ("blocked", 239_400, "block-198.18.0.2")
    assert (
        alert_entry(alert)["state"] == "active" and alert_entry(replace(alert, resolved_at=5.0))["state"] == "resolved"
    )


def test_a_renewed_block_counting_from_zero_again_is_still_the_source_sending() -> None:
    """The same rule id after a renewal (a later expiry, its hits from 0): its drops rising are
    activity although fewer than the old rule's; an unchanged counter is silence (the control)."""
    p = pipeline(quiet=5)
    p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0)
    rule = "auto-syn_flood-198.18.0.2"
    p.feed({A: (500, 500, 0, 0)}, {}, now=1.0, wall=1.0, blocks={SRC: Block(rule, 10.0, 50_000)})
    p.feed({A: (500, 500, 0, 0)}, {}, now=2.0, wall=2.0, blocks={SRC: Block(rule, 20.0, 100)})  # renewed
    (c,) = p.feed({A: (500, 500, 0, 0)}, {}, now=3.0, wall=3.0, blocks={SRC: Block(rule, 20.0, 900)})
    assert (c.kind, c.alert.last_seen, c.alert.dropped) == ("updated", 3.0, 900)
    assert p.feed({A: (500, 500, 0, 0)}, {}, now=7.9, wall=7.9, blocks={SRC: Block(rule, 20.0, 900)}) == []
    # Silent 5 s, but the detector's window still finds the flood until t=10: resolved once it is empty
    (done,) = p.feed({A: (500, 500, 0, 0)}, {}, now=10.5, wall=10.5, blocks={SRC: Block(rule, 20.0, 900)})
    assert (done.kind, done.alert.last_seen) == ("resolved", 3.0)


def test_an_update_says_when_it_moves_the_alert_between_active_and_blocked() -> None:
    p = pipeline(quiet=60)
    p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0)
    held = {SRC: Block("b", 100.0, 10)}
    ((c1,), (c2,), (c3,)) = (
        p.feed({A: (500, 500, 0, 0)}, {}, now=1.0, wall=1.0, blocks=held),
        p.feed({A: (500, 500, 0, 0)}, {}, now=2.0, wall=2.0, blocks={SRC: Block("b", 100.0, 20)}),
        p.feed({A: (600, 600, 0, 0)}, {}, now=3.0, wall=3.0),  # unblocked, and sending again
    )
    assert [(c.alert.state, c.restated) for c in (c1, c2, c3)] == [
        (AlertState.BLOCKED, True),
        (AlertState.BLOCKED, False),
        (AlertState.ACTIVE, True),
    ]


def test_only_a_detection_not_a_trickle_marks_an_update_as_found() -> None:
    """What renewal keys on (an attacker's trickle of spoofed packets in a victim's name must not keep
    it blocked): after a flood, one SYN a tick keeps the alert open and its last seen moving, but no
    update is ``found``; a flood over the threshold again is (the positive control)."""
    p = pipeline(quiet=60)
    total = 500
    (raised,) = p.feed({A: (total, total, 0, 0)}, {}, now=0.0, wall=0.0)
    assert raised.kind == "raised"
    trickle = []
    for t in range(11, 40):  # the flood's window (10 s) is over: from here the detector finds nothing
        total += 1
        trickle += p.feed({A: (total, total, 0, 0)}, {}, now=float(t), wall=float(t))
    assert trickle and all(c.kind == "updated" and not c.found for c in trickle)
    assert p.book.active[0].last_seen == 39.0  # still sending: open, as it should be
    total += 300
    (again,) = p.feed({A: (total, total, 0, 0)}, {}, now=40.0, wall=40.0)
    assert again.kind == "updated" and again.found
