"""The console's actions in the command palette (ctrl+p)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from textual.app import SystemCommand

from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.rules_pane import RulesPane

if TYPE_CHECKING:
    from ironpost_tui.ui.app import IronpostApp

SEEK_SECS = 10.0


def console_commands(app: IronpostApp) -> Iterator[SystemCommand]:
    main = app.main

    def show_pane(index: int) -> Callable[[], None]:
        return lambda: main.action_pane(index)

    def copy_rule() -> None:
        main.action_pane(3)
        main.query_one(RulesPane).action_copy()

    def filter_events() -> None:
        main.action_pane(2)
        main.query_one(EventTable).action_filter()

    commands: list[tuple[str, str, Callable[[], object]]] = [
        ("Help: every key", "What each key does (?)", app.action_help),
        ("Pause / resume", "The events (live) or the playback (replay) (space)", app.action_pause),
        ("Chart the selected protocol", "Packets/s, bits/s and drops/s, 1 or 10 minutes (g)", app.action_chart),
        ("Bits / bytes", "Volumes in bits or bytes per second (m)", app.action_units),
        ("Next theme", "ironpost-dark, -light, -contrast (t)", app.action_next_theme),
        ("Filter events", "Words, src:ADDR, proto:tcp, port:N (/)", filter_events),
        ("Zoom the current pane", "Maximise it; z again restores (z)", main.action_zoom),
        ("Export events", "The events (as filtered) to CSV or JSON (E)", lambda: app.action_export("events")),
        ("Export alerts", "Every alert to CSV or JSON (A)", lambda: app.action_export("alerts")),
        ("Copy the rule as an nft command", "The selected rule, to the clipboard (c)", copy_rule),
        ("Quit", "Leave the console, detaching from the interface (q)", app.exit),
    ]
    for i, name in enumerate(("traffic", "alerts", "events", "rules")):
        commands.append((f"Show the {name} pane", f"Key {i + 1}", show_pane(i)))
    if not app.read_only:
        commands += [
            ("Add a rule", "Drop or monitor by address, port, protocol (a)", app.action_add_rule),
            ("Panic: clear every drop rule", "After a confirmation (!)", app.action_panic),
            ("Reload the configuration", "Re-read the rules file (r)", app.action_reload),
        ]
    if app.replay is not None:
        commands += [
            ("Seek back 10 s", "Replay (left)", lambda: app.action_seek(-SEEK_SECS)),
            ("Seek forward 10 s", "Replay (right)", lambda: app.action_seek(SEEK_SECS)),
            ("Faster", "Replay speed (+)", lambda: app.action_speed(1)),
            ("Slower", "Replay speed (-)", lambda: app.action_speed(-1)),
        ]
    for title, help_text, callback in commands:
        yield SystemCommand(title, help_text, callback)
