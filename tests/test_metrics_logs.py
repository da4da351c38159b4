"""Log lines on stdout: text as it always was, or one JSON object per line
(``--log-format json``, ``[general] log_format = "json"``) with ``event`` and
``ts``, and for alerts ``detector``, ``src_ip``, ``dst_ip``."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import re
from collections.abc import Iterator

import pytest

from ironpost_tui.config import settings as config
from ironpost_tui.detectors import Alert, AlertChange
from ironpost_tui.detectors.targets import Target
from ironpost_tui.engine import alert_lines
from ironpost_tui.metrics import log_format
from ironpost_tui.model import FilterRule
from ironpost_tui.rules.audit import Actor, AuditLog

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


@pytest.fixture
def captured() -> Iterator[tuple[io.StringIO, logging.Handler]]:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(log_format.JsonFormatter())
    root = logging.getLogger()
    old_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield out, handler
    finally:
        root.removeHandler(handler)
        root.setLevel(old_level)


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def _alert(source: str = "198.18.0.2", target: str = "198.18.0.1") -> Alert:
    return Alert(7, "syn_flood", "high", source, target, 500, 600, 10.0, 1_700_000_000.0, 1_700_000_001.0, "500 SYNs")


def test_an_alert_is_one_json_object_with_detector_and_addresses(captured: tuple[io.StringIO, object]) -> None:
    out, _ = captured
    alert_lines.log_alert(AlertChange("raised", _alert()))
    alert_lines.log_alert(AlertChange("resolved", _alert(source="many sources", target="eth0")))
    raised, resolved = lines(out)
    assert raised["event"] == "alert" and raised["change"] == "raised"
    assert raised["detector"] == "syn_flood" and raised["severity"] == "high"
    assert raised["src_ip"] == "198.18.0.2" and raised["dst_ip"] == "198.18.0.1"
    assert raised["level"] == "warning" and TS.match(str(raised["ts"]))
    assert "alert 7 syn_flood raised" in str(raised["message"])
    # Not an address: null, and the words in source / target.
    assert resolved["src_ip"] is None and resolved["source"] == "many sources"
    assert resolved["dst_ip"] is None and resolved["target"] == "eth0"


def test_an_alert_names_the_addresses_attacked(captured: tuple[io.StringIO, object]) -> None:
    """dst_ip is the address hit most, targets all of them; the text line says them with the interface."""
    out, _ = captured
    aimed = dataclasses.replace(_alert(target="eth0"), targets=(Target("198.18.0.5", 22), Target("198.18.0.1")))
    alert_lines.log_alert(AlertChange("raised", aimed))
    alert_lines.log_alert(AlertChange("raised", _alert(target="eth0")))  # none known: as before
    (one, two) = lines(out)
    assert (one["dst_ip"], one["dst_port"], one["targets"], one["target"]) == (
        "198.18.0.5",
        22,
        ["198.18.0.5:22", "198.18.0.1"],
        "eth0",
    )
    assert "198.18.0.2 -> 198.18.0.5:22, 198.18.0.1 on eth0: 500 SYNs" in str(one["message"])
    assert (two["dst_ip"], two["dst_port"], two["targets"]) == (None, None, [])
    assert "198.18.0.2 -> eth0: 500 SYNs" in str(two["message"])
    # An update is said when it names a new address, not when a count grows.
    alert_lines.log_alert(AlertChange("updated", aimed))
    alert_lines.log_alert(AlertChange("updated", aimed, retargeted=True))
    (three,) = [line for line in lines(out) if line.get("change") == "updated" and line["level"] == "warning"]
    assert (three["event"], three["targets"]) == ("alert", ["198.18.0.5:22", "198.18.0.1"])


def test_an_audit_record_is_the_audit_entry(captured: tuple[io.StringIO, object]) -> None:
    out, _ = captured
    AuditLog(None).record("add", Actor("alice", "198.18.0.9", "console"), FilterRule(id="r1"))
    (entry,) = lines(out)
    assert entry["event"] == "rule_change" and entry["change"] == "add"
    assert entry["user"] == "alice" and entry["ssh_client"] == "198.18.0.9" and entry["via"] == "console"
    assert entry["rule"] == {"id": "r1", "action": "drop"}
    assert TS.match(str(entry["ts"]))


def test_lifecycle_lines_have_event_names_and_plain_lines_are_log(captured: tuple[io.StringIO, object]) -> None:
    out, _ = captured
    log = logging.getLogger("ironpost")
    log.info("ready: attached", extra={"event": "ready", "iface": "eth0", "prog_id": 12})
    log.warning("something else")
    try:
        raise ValueError("boom")
    except ValueError:
        log.exception("it failed")
    ready, other, failed = lines(out)
    assert ready["event"] == "ready" and ready["iface"] == "eth0" and ready["prog_id"] == 12
    assert other["event"] == "log" and other["message"] == "something else"
    assert "ValueError: boom" in str(failed["exception"])


def test_text_stays_as_it_was() -> None:
    record = logging.LogRecord("ironpost", logging.INFO, __file__, 1, "ready: %s", ("x",), None)
    text = log_format.formatter("text").format(record)
    assert re.match(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO ready: x$", text)
    with pytest.raises(ValueError):
        log_format.formatter("yaml")


def test_configure_switches_every_root_handler(captured: tuple[io.StringIO, logging.Handler]) -> None:
    _, handler = captured
    saved = [(h, h.formatter) for h in logging.getLogger().handlers]
    try:
        log_format.configure("text")
        assert not isinstance(handler.formatter, log_format.JsonFormatter)
        log_format.configure("json")
        assert isinstance(handler.formatter, log_format.JsonFormatter)
    finally:
        for h, f in saved:
            h.setFormatter(f)


def test_the_config_file_can_ask_for_json() -> None:
    settings = config.loads('[general]\nlog_format = "json"\n', "ironpost.toml")
    assert settings.general.log_format == "json"
    assert config.loads('[general]\nlog_format = "pretty"\n', "ironpost.toml").general.log_format == "text"


def test_an_update_moving_an_alert_between_active_and_blocked_is_logged_with_its_live_fields(
    captured: tuple[io.StringIO, object],
) -> None:
    """Updates are debug lines, except a change of state (ACTIVE <-> blocked): an info line with the
    state, the block's time left and drops (the negative control: the same update without it is a debug line)."""
    from ironpost_tui.detectors import Block

    out, _ = captured
    blocked = dataclasses.replace(_alert(), block=Block("block-198.18.0.2", 4_000_000_000.0, 239_400))
    alert_lines.log_alert(AlertChange("updated", blocked))
    alert_lines.log_alert(AlertChange("updated", blocked, restated=True))
    debug, line = lines(out)
    assert (debug["level"], debug["event"]) == ("debug", "log")  # no alert event: a debug line only
    assert (line["level"], line["change"], line["state"], line["dropped"]) == ("info", "updated", "blocked", 239_400)
    assert line["block_rule"] == "block-198.18.0.2" and isinstance(line["time_left"], float)
    assert str(line["message"]).endswith("(severity high), now blocked")


def test_a_storm_of_alerts_is_100_lines_a_detector_a_minute_and_one_line_of_the_rest(
    captured: tuple[io.StringIO, object],
) -> None:
    """4,000 single-source SYN-flood alerts raised in one step, then resolved (a spoofed flood of real floods: some
    6,000 lines a second, an attacker's review of session 29; journald's default limit then drops every line of
    the unit, the interface gone or a panic included): 100 lines, and when the minute is over one line saying
    the 7,900 held by kind.  Another detector has its own 100.  The control: under the limit, every line."""
    out, _ = captured
    now = [1000.0]
    held = alert_lines.AlertLines("lab0", clock=lambda: now[0])
    for i in range(4000):
        held.log(AlertChange("raised", dataclasses.replace(_alert(source=f"198.18.{i // 250}.{i % 250}"), id=i)))
    for i in range(4000):
        held.log(AlertChange("resolved", dataclasses.replace(_alert(source=f"198.18.{i // 250}.{i % 250}"), id=i)))
    scan = Alert(9, "port_scan", "medium", "198.18.99.1", "198.18.0.1", 40, 40, 60.0, 1.0, 2.0, "40 ports")
    held.log(AlertChange("raised", scan))
    now[0] += 30
    held.roll()  # not yet a minute: nothing more said
    assert len(lines(out)) == 101
    now[0] += 31
    held.roll()
    said = lines(out)
    assert len(said) == 102 and sum(1 for s in said if s.get("event") == "alert") == 101
    summary = said[-1]
    assert summary["event"] == "alert_lines_held" and summary["count"] == 7900 and summary["detector"] == "syn_flood"
    assert summary["kinds"] == {"raised": 3900, "resolved": 4000}
    assert "7,900 more syn_flood alert line(s)" in str(summary["message"])
    held.log(AlertChange("raised", dataclasses.replace(scan, id=10)))  # a new window: said at once
    assert len(lines(out)) == 103
    held.flush()
    assert len(lines(out)) == 103  # nothing held: nothing more to say
