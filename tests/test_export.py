"""Exports (CSV/JSON of events and alerts) and rules as nft commands: the Textual-free
functions, then the keys E, A and c driven with Pilot on the lab recording."""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import json
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from support.common import net
from support.ui import T0, Messages, alert, event, play_to, replay_app
from textual.widgets import Input, RadioSet

from ironpost_tui.detectors.targets import Target
from ironpost_tui.model import Action, FilterRule, Verdict
from ironpost_tui.records.codec import BadRecord, alert_from_json, alert_to_json
from ironpost_tui.records.export import (
    ALERT_FIELDS,
    EVENT_FIELDS,
    ExportError,
    alert_rows,
    default_path,
    event_rows,
    export_alerts,
    export_events,
    iso_utc,
)
from ironpost_tui.rules.nft import log_prefix, nft_command, nft_rule
from ironpost_tui.ui.messages import ExportWritten
from ironpost_tui.ui.screens.export import ExportScreen
from ironpost_tui.ui.screens.main import MainScreen
from ironpost_tui.ui.widgets.rules_pane import RulesPane

PREFIX = "nft add rule inet filter input "

# --- nft: every rule shape ---------------------------------------------------------------

SHAPES = [
    (FilterRule("a", src_ip=net("198.18.0.5/32")), "ip saddr 198.18.0.5 drop"),
    (FilterRule("a", src_ip=net("198.18.0.0/24")), "ip saddr 198.18.0.0/24 drop"),
    (FilterRule("a", src_ip=net("2001:db8::1/128")), "ip6 saddr 2001:db8::1 drop"),
    (FilterRule("a", src_ip=net("2001:db8::/32")), "ip6 saddr 2001:db8::/32 drop"),
    (FilterRule("a", dst_ip=net("203.0.113.9/32")), "ip daddr 203.0.113.9 drop"),
    (FilterRule("a", dst_ip=net("2001:db8:ffff::/48")), "ip6 daddr 2001:db8:ffff::/48 drop"),
    (
        FilterRule("a", src_ip=net("198.18.0.5/32"), dst_port=22, protocol=6),
        "ip saddr 198.18.0.5 tcp dport 22 drop",
    ),
    (FilterRule("a", dst_port=53, protocol=17), "udp dport 53 drop"),
    (FilterRule("a", dst_port=23), "meta l4proto { tcp, udp } th dport 23 drop"),
    (FilterRule("a", dst_port=9, protocol=132), "meta l4proto 132 th dport 9 drop"),
    (FilterRule("a", protocol=1), "meta l4proto icmp drop"),
    (FilterRule("a", protocol=58), "meta l4proto ipv6-icmp drop"),
    (FilterRule("a", protocol=47), "meta l4proto 47 drop"),
    (
        FilterRule("a", src_ip=net("198.18.0.0/16"), dst_ip=net("203.0.113.0/24"), dst_port=443, protocol=6),
        "ip saddr 198.18.0.0/16 ip daddr 203.0.113.0/24 tcp dport 443 drop",
    ),
    (FilterRule("a"), "drop"),
    (
        FilterRule("ssh-watch", Action.MONITOR, dst_port=22, protocol=6),
        "tcp dport 22 log prefix '\"ironpost monitor ssh-watch: \"' counter",
    ),
    (
        FilterRule("watch all", Action.MONITOR, src_ip=net("2001:db8::/64")),
        "ip6 saddr 2001:db8::/64 log prefix '\"ironpost monitor watch_all: \"' counter",
    ),
]


@pytest.mark.parametrize(("rule", "tail"), SHAPES, ids=[t for _r, t in SHAPES])
def test_nft_command_for_every_rule_shape(rule: FilterRule, tail: str) -> None:
    assert nft_command(rule) == PREFIX + tail


def test_nft_table_and_chain_and_the_nft_file_form() -> None:
    rule = FilterRule("m", Action.MONITOR, dst_port=53)
    assert nft_command(rule, "ip6 fw", "in").startswith("nft add rule ip6 fw in ")
    assert nft_rule(rule).endswith('log prefix "ironpost monitor m: " counter')


def test_log_prefix_is_safe_and_fits_the_kernel() -> None:
    long = FilterRule("x" * 256 + "'\"$`;", Action.MONITOR)
    prefix = log_prefix(long)
    assert len(prefix) <= 127 and prefix.endswith(": ")
    assert not set("'\"$`;") & set(prefix)


NFT_CHECK = [s for s in SHAPES if s[0].action is Action.MONITOR or s[0].src_ip is not None][:6] + [
    SHAPES[8],
    SHAPES[11],
]


@pytest.mark.root
@pytest.mark.skipif(shutil.which("nft") is None, reason="nft not installed (apt-get install nftables)")
def test_nft_accepts_the_commands_in_a_throwaway_namespace() -> None:
    """`nft -c` (check only) of the shell commands, inside a namespace that has
    `table inet filter` with an `input` chain; the namespace is removed afterwards."""
    ns = f"ipx-{uuid.uuid4().hex[:8]}"
    subprocess.run(["ip", "netns", "add", ns], check=True)
    try:
        setup = "add table inet filter\nadd chain inet filter input { type filter hook input priority 0; }\n"
        subprocess.run(["ip", "netns", "exec", ns, "nft", "-f", "-"], input=setup, text=True, check=True)
        for rule, _tail in NFT_CHECK:
            command = nft_command(rule).replace("nft ", "nft -c ", 1)
            done = subprocess.run(["ip", "netns", "exec", ns, "bash", "-c", command], capture_output=True, text=True)
            assert done.returncode == 0, (command, done.stderr)
        rules = "".join(nft_rule(r) + "\n" for r, _ in NFT_CHECK)
        done = subprocess.run(
            ["ip", "netns", "exec", ns, "nft", "-c", "-f", "-"], input=rules, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr
    finally:
        subprocess.run(["ip", "netns", "del", ns], check=False)


# --- export: rows, files -----------------------------------------------------------------


def test_iso_utc() -> None:
    assert iso_utc(0.25) == "1970-01-01T00:00:00.250Z"


def test_event_rows_are_the_tables_columns() -> None:
    rows = event_rows([event("2001:db8::5", dport=443), event(proto=1, verdict=Verdict.MONITOR, rule=None)])
    assert list(rows[0]) == list(EVENT_FIELDS)
    assert rows[0] == {
        "time": iso_utc(T0 + 50),
        "source": "2001:db8::5",
        "sport": 40000,
        "destination": "2001:db8::1",
        "dport": 443,
        "proto": "tcp",
        "verdict": "drop",
        "rule": "r1",
        "flags": "S",
        "len": 60,
    }
    assert rows[1]["sport"] is None and rows[1]["proto"] == "icmp" and rows[1]["rule"] is None
    assert rows[1]["flags"] == ""


def test_alert_rows_state_and_times() -> None:
    rows = alert_rows([alert(1), alert(2, severity="medium")], acknowledged={2})
    assert list(rows[0]) == list(ALERT_FIELDS)
    assert rows[0]["state"] == "ACTIVE" and rows[1]["state"] == "acked"
    assert rows[0]["severity"] == "HIGH" and rows[0]["first"] == iso_utc(T0 + 40)


def test_a_resolved_alerts_last_is_when_its_source_last_sent_and_its_resolution_a_field_of_its_own() -> None:
    """Until session 25 a resolved alert's "last" was its resolution, [detectors] quiet_secs after the source's
    last packet: a timeline built from the export stretched every attack by 30 s.  The control: an open alert
    has no resolution."""
    over = dataclasses.replace(alert(1), resolved_at=T0 + 80)
    rows = alert_rows([over, alert(2)])
    assert (rows[0]["last"], rows[0]["resolved"]) == (iso_utc(T0 + 50), iso_utc(T0 + 80))
    assert (rows[1]["last"], rows[1]["resolved"]) == (iso_utc(T0 + 50), None)


def test_csv_and_json_files(tmp_path: Path) -> None:
    events = [event(), event("198.51.100.9", dport=80)]
    assert export_events(tmp_path / "e.csv", events, "csv") == 2
    with open(tmp_path / "e.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == list(EVENT_FIELDS) and table[1]["dport"] == "80"
    export_alerts(tmp_path / "a.json", [alert()], "json")
    loaded = json.loads((tmp_path / "a.json").read_text())
    assert loaded[0]["#"] == 1 and loaded[0]["count"] == 500 and loaded[0]["last"].endswith("Z")
    assert not list(tmp_path.glob(".*.tmp"))


def test_alerts_carry_the_addresses_attacked(tmp_path: Path) -> None:
    aimed = dataclasses.replace(alert(1), targets=(Target("198.18.0.1", 22), Target("198.18.0.5", many_ports=True)))
    rows = alert_rows([aimed, alert(2)])
    assert [(r["target"], r["dst_ip"], r["dst_port"], r["targets"]) for r in rows] == [
        ("198.18.0.1:22, 198.18.0.5:*", "198.18.0.1", 22, ["198.18.0.1:22", "198.18.0.5:*"]),
        ("eth9", None, None, []),
    ]
    export_alerts(tmp_path / "a.json", [aimed, alert(2)], "json")
    loaded = json.loads((tmp_path / "a.json").read_text())
    assert [(a["dst_ip"], a["dst_port"], a["targets"]) for a in loaded] == [
        ("198.18.0.1", 22, ["198.18.0.1:22", "198.18.0.5:*"]),
        (None, None, []),
    ]
    export_alerts(tmp_path / "a.csv", [aimed, alert(2)], "csv")
    with open(tmp_path / "a.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["dst_ip"], r["dst_port"], r["targets"]) for r in table] == [
        ("198.18.0.1", "22", "198.18.0.1:22 198.18.0.5:*"),
        ("", "", ""),
    ]


def test_a_recorded_alert_keeps_its_targets_and_an_older_one_has_none() -> None:
    ports = (Target("198.18.0.1", 22), Target("2001:db8::1", 443), Target("198.18.0.9", many_ports=True))
    aimed = dataclasses.replace(alert(1), targets=ports)
    assert alert_from_json(json.loads(json.dumps(alert_to_json(aimed)))) == aimed
    # A recording made before ports: its addresses, no port known.
    before_ports = alert_to_json(alert(1)) | {"targets": ["198.18.0.1", "2001:db8::1"]}
    assert alert_from_json(before_ports).targets == (Target("198.18.0.1"), Target("2001:db8::1"))
    older = alert_to_json(alert(2))
    del older["targets"]
    assert alert_from_json(older).targets == ()
    for bad in (
        "198.18.0.1", ["not an address"], [1], ["198.18.0.1"] * 17, ["198.18.0.1:70000"], ["[198.18.0.1]:22"],
        ["198.18.0.1:22\x1b[2J"], ["../x:22"],
    ):  # fmt: skip
        with pytest.raises(BadRecord, match="targets"):
            alert_from_json(alert_to_json(alert(3)) | {"targets": bad})


def test_unwritable_path_is_one_error(tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="cannot write"):
        export_events(tmp_path / "missing" / "e.csv", [event()], "csv")
    with pytest.raises(ExportError, match="format"):
        export_events(tmp_path / "e.xml", [event()], "xml")


def test_default_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """In the current directory, named whole (the dialog showed a bare name until session 25); "." when the current
    directory cannot be named."""
    monkeypatch.chdir(tmp_path)
    path = default_path("events", "csv", T0)
    assert path.parent == tmp_path and path.name.startswith("ironpost-events-") and path.suffix == ".csv"
    gone = tmp_path / "gone"
    gone.mkdir()
    monkeypatch.chdir(gone)
    gone.rmdir()
    assert default_path("events", "csv", T0).parent == Path(".")
    assert len(path.stem) == len("ironpost-events-YYYYmmdd-HHMMSS")


def test_export_and_nft_do_not_import_textual() -> None:
    code = (
        "import sys, ironpost_tui.records.export, ironpost_tui.rules.nft; "
        "print([m for m in sys.modules if m.startswith(('textual', 'rich'))])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


# --- the keys, on the lab recording (read-only: exports and copies still work) --------------


def test_E_exports_events_and_A_exports_alerts_as_json(tmp_path: Path) -> None:
    app, _source, clock = replay_app()

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
            await play_to(pilot, clock, 3.0)
            await pilot.press("E")
            screen = app.screen
            assert isinstance(screen, ExportScreen) and screen.kind == "events"
            shown = Path(screen.query_one(Input).value)  # in the current directory, named whole (session 25)
            assert shown.name.startswith("ironpost-events-") and shown.parent == Path.cwd(), shown
            screen.query_one(Input).value = str(tmp_path / "events.csv")
            await pilot.press("enter")
            await messages.wait(ExportWritten, pilot, after=0)
            assert isinstance(app.screen, MainScreen)
            await pilot.press("A")
            screen = app.screen
            assert isinstance(screen, ExportScreen)
            screen.query_one(Input).value = str(tmp_path / "alerts.csv")
            screen.query_one(RadioSet).action_next_button()
            screen.query_one(RadioSet).action_toggle_button()
            await pilot.pause()
            assert screen.query_one(Input).value == str(tmp_path / "alerts.json")
            await pilot.press("enter")
            await messages.wait(ExportWritten, pilot, after=1)
            written = [m for m in messages.seen if isinstance(m, ExportWritten)]
            assert [m.error for m in written] == ["", ""]
            assert written[0].count > 0
            # A path typed with .json while csv is picked: written as JSON, to that name (until session 24 it was
            # written as CSV, to alerts.csv).
            await pilot.press("A")
            screen = app.screen
            assert isinstance(screen, ExportScreen) and screen.format == "csv"
            screen.query_one(Input).value = str(tmp_path / "typed.JSON")
            await pilot.press("enter")
            await messages.wait(ExportWritten, pilot, after=2)
            assert isinstance(json.loads((tmp_path / "typed.json").read_text()), list)
            assert not (tmp_path / "typed.csv").exists() and not (tmp_path / "typed.JSON").exists()
            await pilot.press("E", "escape")
            assert isinstance(app.screen, MainScreen)

    asyncio.run(main())
    with open(tmp_path / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and rows[0]["time"].endswith("Z") and rows[0]["verdict"] in ("drop", "monitor", "protected")
    alerts = json.loads((tmp_path / "alerts.json").read_text())
    assert isinstance(alerts, list)


def test_c_copies_the_rule_as_nft_and_shows_it() -> None:
    app, _source, clock = replay_app()

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await play_to(pilot, clock, 6.0)
            await pilot.press("4", "c")
            await pilot.pause()
            rule = app.main.query_one(RulesPane).selected()
            assert rule is not None
            assert app.clipboard == nft_command(rule)
            assert any(n.message == app.clipboard for n in app._notifications)

    asyncio.run(main())
