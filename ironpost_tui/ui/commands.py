"""The console's actions in the command palette (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.top_pane import TopPane

if TYPE_CHECKING:
    from ironpost_tui.ui.app import IronpostApp

SEEK_SECS = 10.0


def console_commands(app: IronpostApp) -> Iterator[SystemCommand]:
    """Every action a key does on the main screen, by name (the key in brackets)."""
    main = app.main

    def show_pane(index: int) -> Callable[[], None]:
        return lambda: main.action_pane(index)

    def alerts() -> AlertTable:
        main.action_pane(1)
        return main.query_one(AlertTable)

    def events() -> EventTable:
        main.action_pane(2)
        return main.query_one(EventTable)

    def rules() -> RulesPane:
        main.action_pane(3)
        return main.query_one(RulesPane)

    def top() -> TopPane:
        main.action_pane(4)
        return main.query_one(TopPane)

    def theme(name: str) -> Callable[[], None]:
        return lambda: app.use_theme(name)

    commands: list[tuple[str, str, Callable[[], object]]] = [
        ("Help: every key", "What each key does (?)", app.action_help),
        ("Quit", "Leave the console; asks first while drop rules are in force (q, ctrl+c)", app.leaving.request),
        ("Pause / resume", "The events (live) or the playback (replay) (space)", app.action_pause),
        ("Zoom the current pane", "Maximise it; z again restores (z)", main.action_zoom),
        ("Chart the selected protocol", "Packets/s, bits/s and drops/s, 1 or 10 minutes (g)", app.action_chart),
        ("Bits / bytes", "Volumes in bits or bytes per second (m)", app.action_units),
        ("Next theme", "ironpost-dark, -light, -contrast (t)", app.action_next_theme),
        (
            "Alert detail",
            "The selected alert: its fields, its source's events and rules (enter)",
            lambda: alerts().open_detail(),
        ),
        ("Acknowledge the selected alert", "Or take it back (o)", lambda: alerts().action_acknowledge()),
        ("Filter events", "Words, src:ADDR, proto:tcp, port:N (/)", lambda: events().action_filter()),
        ("Export events", "The events (as filtered) to CSV or JSON (E)", lambda: app.action_export("events")),
        ("Export alerts", "Every alert to CSV or JSON (A)", lambda: app.action_export("alerts")),
        ("Copy the rule as an nft command", "The selected rule, to the clipboard (c)", lambda: rules().action_copy()),
        ("Top talkers: next window", "1 s, 10 s, 60 s (w in top)", lambda: top().action_next_window()),
        ("Top talkers: next list", "Sources, destinations, ports (v in top)", lambda: top().action_next_list()),
        ("Top talker detail", "The selected row in full (enter in top)", lambda: top().action_open_detail()),
        ("Filter top talkers", "src:ADDR, dst:ADDR, proto:tcp, port:N (/ in top)", lambda: top().action_filter()),
        ("Export top talkers", "The list shown to CSV or JSON (E in top)", lambda: app.action_export("top")),
    ]
    commands += [(f"Theme: {name}", "Switch to this theme", theme(name)) for name in app.theme_names]
    for i, name in enumerate(("traffic", "alerts", "events", "rules", "top")):
        commands.append((f"Show the {name} pane", f"Key {i + 1}", show_pane(i)))
    if not app.read_only:
        commands += [
            ("Block the selected alert's source", "For 10m, 1h, 24h or for good (b in alerts)",
             lambda: alerts().action_block()),
            ("Unblock the selected alert's source", "Delete the drop rule on it (u in alerts)",
             lambda: alerts().action_unblock()),
            ("Block the selected event's source", "For 10m, 1h, 24h or for good (b in events)",
             lambda: events().action_block()),
            ("Unblock the selected event's source", "Delete the drop rule on it (u in events)",
             lambda: events().action_unblock()),
            ("Block the selected top talker", "For 10m, 1h, 24h or for good (b in top)",
             lambda: top().action_block()),
            ("Monitor the selected top talker", "A monitor rule on it (m in top)", lambda: top().action_monitor()),
            ("Capture the selected event's source", "Its packets, dropped ones too, to a pcapng file (c in events)",
             lambda: events().action_capture()),
            ("Capture the selected top talker", "Its packets, dropped ones too, to a pcapng file (c in top)",
             lambda: top().action_capture()),
            ("Add a rule", "Drop or monitor by address, port, protocol (a)", app.action_add_rule),
            ("Edit the selected rule", "In the rule form (e, enter in rules)", lambda: rules().action_edit()),
            ("Delete the selected rule", "After a confirmation (d in rules)", lambda: rules().action_delete()),
            ("Toggle the selected rule drop / monitor", "Switch its action (x in rules)",
             lambda: rules().action_switch()),
            ("Panic: clear every drop rule", "After a confirmation (!)", app.action_panic),
            ("Reload the configuration", "Re-read the rules file (r)", app.action_reload),
        ]  # fmt: skip
    if app.replay is not None:
        commands += [
            ("Seek back 10 s", "Replay (left)", lambda: app.action_seek(-SEEK_SECS)),
            ("Seek forward 10 s", "Replay (right)", lambda: app.action_seek(SEEK_SECS)),
            ("Faster", "Replay speed (+)", lambda: app.action_speed(1)),
            ("Slower", "Replay speed (-)", lambda: app.action_speed(-1)),
        ]
    for title, help_text, callback in commands:
        yield SystemCommand(title, help_text, callback)


def other_screen_commands(app: IronpostApp) -> Iterator[SystemCommand]:
    """Over a dialog or the detail: help and quit (the main screen's actions act on its panes)."""
    yield SystemCommand("Help: every key", "What each key does (?)", app.action_help)
    yield SystemCommand("Quit", "Leave the console; asks first while drop rules are in force", app.leaving.request)
