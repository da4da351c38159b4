"""Three small points of the console in an incident (issue 20), with Pilot: PAUSED in the status
line, an unknown filter key refused with the known ones listed, and `enter` on the export
dialog's format choice writing the file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from support.ui import FakeSource, Messages, event, lab_update, live_app, play_to, replay_app
from textual.widgets import Input

from ironpost_tui.ui.event_filter import FIELDS, EventFilter
from ironpost_tui.ui.messages import EventsReceived, ExportWritten, RulesRefreshed
from ironpost_tui.ui.screens.export import ExportScreen, FormatChoice
from ironpost_tui.ui.screens.main import MainScreen
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.status_bar import StatusBar


def test_paused_shows_in_the_status_line_live() -> None:
    """space pauses the events of a live console: the status line (not only the events pane)
    says PAUSED, whichever pane is shown; space again and it is gone."""
    source = FakeSource()
    app = live_app(source)

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=(80, 24), message_hook=messages) as pilot:
            await messages.wait(RulesRefreshed, pilot, after=0)
            status = app.main.query_one(StatusBar)
            assert "PAUSED" not in str(status.render())
            await pilot.press("1", "space")  # the traffic pane is shown, not the events
            await pilot.pause()
            assert app.main.query_one(EventTable).paused
            assert "PAUSED" in str(status.render())
            await pilot.press("space")
            await pilot.pause()
            assert "PAUSED" not in str(status.render())

    asyncio.run(main())


@pytest.mark.parametrize("word", ["srcip:1.2.3.4", "prot:tcp", "foo:bar"])
def test_an_unknown_filter_key_is_an_error_listing_the_keys(word: str) -> None:
    with pytest.raises(ValueError) as caught:
        EventFilter.parse(f"port:22 {word}")
    message = str(caught.value)
    assert f"'{word}'" in message and "unknown key" in message
    assert all(f"{key}:" in message for key in FIELDS)


@pytest.mark.parametrize("word", ["2001:db8::1", "dead:beef::1", "12:00:01", "drop-telnet", "src:198.18.0.0/15"])
def test_addresses_times_and_known_keys_still_filter(word: str) -> None:
    assert EventFilter.parse(word)  # a search word or a known key, not an error


def test_an_unknown_filter_key_in_the_console_changes_nothing() -> None:
    source = FakeSource()
    app = live_app(source)

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=(80, 24), message_hook=messages) as pilot:
            await messages.wait(RulesRefreshed, pilot, after=0)
            source.push(lab_update([event("198.51.100.7"), event("198.51.100.8")]))
            await messages.wait(EventsReceived, pilot, after=0)
            app.redraw()
            events = app.main.query_one(EventTable)
            await pilot.press("3", "slash", *"srcip:198.51.100.7", "enter")
            await pilot.pause()
            assert "unknown key 'srcip' (did you mean src:?)" in events.problem
            assert "src:, dst:, proto:, port:, sport:, dport:, verdict:, rule:" in events.problem
            assert events.filter_text == "" and events.row_count == 2  # not applied as a search word
            shown = str(events.query_one("#event-status").render())
            assert "unknown key" in shown
            events.query_one(Input).value = "src:198.51.100.7"
            await pilot.press("enter")
            await pilot.pause()
            assert events.filter_text == "src:198.51.100.7" and events.row_count == 1 and not events.problem

    asyncio.run(main())


def test_enter_on_the_format_choice_writes(tmp_path: Path) -> None:
    """E, then on the format choice: down highlights json, enter picks it and writes the file
    (a RadioSet's enter alone would only pick it, leaving the dialog open)."""
    app, _source, clock = replay_app()

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=(80, 24), message_hook=messages) as pilot:
            await play_to(pilot, clock, 3.0)
            await pilot.press("E")
            screen = app.screen
            assert isinstance(screen, ExportScreen)
            screen.query_one(Input).value = str(tmp_path / "events.csv")
            choice = screen.query_one(FormatChoice)
            choice.focus()
            await pilot.pause()
            await pilot.press("down", "enter")
            await messages.wait(ExportWritten, pilot, after=0)
            assert isinstance(app.screen, MainScreen)
            written = [m for m in messages.seen if isinstance(m, ExportWritten)]
            assert [(m.error, Path(m.path).name) for m in written] == [("", "events.json")]

    asyncio.run(main())
    assert isinstance(json.loads((tmp_path / "events.json").read_text()), list)
    assert not (tmp_path / "events.csv").exists()


def test_space_on_the_format_choice_only_picks(tmp_path: Path) -> None:
    """The negative control: space picks json (the path follows) and writes nothing."""
    app, _source, clock = replay_app()

    async def main() -> None:
        async with app.run_test(size=(80, 24)) as pilot:
            await play_to(pilot, clock, 3.0)
            await pilot.press("E")
            screen = app.screen
            assert isinstance(screen, ExportScreen)
            screen.query_one(Input).value = str(tmp_path / "events.csv")
            screen.query_one(FormatChoice).focus()
            await pilot.pause()
            await pilot.press("down", "space")
            await pilot.pause()
            assert app.screen is screen and screen.format == "json"
            assert screen.query_one(Input).value == str(tmp_path / "events.json")

    asyncio.run(main())
    assert list(tmp_path.iterdir()) == []
