"""The help screen's sections, built from the bindings themselves so no key is left out."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from textual.binding import Binding, BindingType

from ironpost_tui.ui.screens.alert_detail import AlertDetailScreen
from ironpost_tui.ui.screens.chart import ChartScreen
from ironpost_tui.ui.screens.help import KeyHelp
from ironpost_tui.ui.screens.main import MainScreen
from ironpost_tui.ui.screens.quit import QuitScreen
from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.top_pane import TopPane
from ironpost_tui.ui.widgets.traffic_pane import TrafficPane

REPLAY_ACTIONS = ("app.seek(-10)", "app.seek(10)", "app.speed(1)", "app.speed(-1)")


def help_sections(
    key_display: Callable[[Binding], str], app_bindings: Sequence[Binding]
) -> list[tuple[str, list[KeyHelp]]]:
    def keys(bindings: Iterable[BindingType | KeyHelp]) -> list[KeyHelp]:
        out: list[KeyHelp] = []
        for b in bindings:
            if isinstance(b, Binding):
                shown = ", ".join(key_display(Binding(k.strip(), b.action)) for k in b.key.split(","))
                out.append((shown, b.description))
            elif len(b) == 2 and isinstance(b[0], str) and isinstance(b[1], str):
                out.append((b[0], b[1]))
        return out

    main = [b for b in MainScreen.BINDINGS if isinstance(b, Binding)]
    return [
        (
            "Anywhere",
            keys(
                [
                    *(b for b in main if b.action not in REPLAY_ACTIONS),
                    *app_bindings,
                    ("ctrl+p", "Command palette: every action by name"),
                    ("j / k", "Down / up, in every table (as ↓ / ↑)"),
                    ("home / end", "The first (and first column) / last row, in every table"),
                    ("← / →", "A column left / right, in every table (live; a replay seeks)"),
                ]
            ),
        ),
        ("Traffic pane (1)", keys(TrafficPane.BINDINGS)),
        (
            "Alerts pane (2)",
            keys(AlertTable.BINDINGS),
        ),
        ("Alert detail (enter)", keys(AlertDetailScreen.BINDINGS)),
        ("Events pane (3)", keys(EventTable.BINDINGS)),
        ("Rules pane (4)", keys([("enter", "Edit"), *RulesPane.BINDINGS])),
        # Missing until session 24: the Top pane's m (a monitor rule, not Bits/bytes there), u, w, v, / and enter.
        ("Top pane (5)", keys(TopPane.BINDINGS)),
        (
            "Replay",
            keys([("space", "Pause / resume playback"), *(b for b in main if b.action in REPLAY_ACTIONS)]),
        ),
        ("Chart (g)", keys(ChartScreen.BINDINGS)),
        ("Quitting with drop rules in force (q, ctrl+c)", keys(QuitScreen.BINDINGS)),
        ("Block: how long (b)", keys([("1 2 3 4", "10m (the default), 1h, 24h, permanent")])),
        (
            "Forms and questions",
            [
                ("tab, shift+tab", "Next / previous field"),
                ("enter", "Save / choose"),
                ("ctrl+s", "Save the rule form"),
                ("y / n", "Confirm / cancel"),
                ("escape", "Cancel"),
            ],
        ),
    ]
