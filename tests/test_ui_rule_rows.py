"""The rules pane's table (ironpost_tui/ui/widgets/rule_rows.py) with a threat feed's 10,000 rules: it
formats a row when the row changes, the clock column of the rules that expire each second, and draws
the rows on screen only; the cursor stays on its rule.  Pilot, no root; counts, not timings."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import Awaitable, Callable
from dataclasses import replace

import pytest
from textual.app import App, ComposeResult
from textual.pilot import Pilot

from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
from ironpost_tui.ui.widgets import rule_rows
from ironpost_tui.ui.widgets.rules_pane import RulesPane

N = 10_000
NOW = 1_800_000_000.0


def statuses(n: int = N, expiring: int = 0) -> tuple[RuleStatus, ...]:
    out = []
    for i in range(n):
        expires = NOW + 600 + i if i < expiring else None
        rule = FilterRule(f"feed-{i}", Action.DROP, src_ip=ipaddress.ip_network(f"198.18.{i // 256}.{i % 256}/32"),
                          expires_at=expires)  # fmt: skip
        out.append(RuleStatus(rule, "BLOCKLIST", 0, None))
    return tuple(out)


class PaneApp(App[None]):
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def compose(self) -> ComposeResult:
        yield RulesPane()


def count_drawn(monkeypatch: pytest.MonkeyPatch, grid: rule_rows.RuleRows) -> list[int]:
    """The lines ``grid`` draws from now on (y of each render_line call)."""
    drawn: list[int] = []
    render_line = grid.render_line

    def counted(y: int):  # type: ignore[no-untyped-def]
        drawn.append(y)
        return render_line(y)

    monkeypatch.setattr(grid, "render_line", counted)
    return drawn


Scenario = Callable[[Pilot[None], RulesPane, list[str]], Awaitable[None]]


def run(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> None:
    formatted: list[str] = []  # the rule ids whose rows were formatted, in order
    cells = rule_rows.cells

    def counted(s: RuleStatus, now: float) -> tuple[rule_rows.Cell, ...]:
        formatted.append(s.rule.id)
        return cells(s, now)

    monkeypatch.setattr(rule_rows, "cells", counted)

    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(RulesPane)
            pane.grid.focus()
            await pilot.pause()
            await scenario(pilot, pane, formatted)

    asyncio.run(main())


def test_a_tick_formats_only_the_rows_whose_status_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        table = statuses()
        pane.now = NOW
        pane.rules = table
        await pilot.pause()
        assert len(formatted) == N and pane.grid.row_count == N  # the first table: every row once
        formatted.clear()
        ticked = list(table)
        for i in (3, 4_000, 9_999):
            ticked[i] = replace(ticked[i], hits=7, last_hit=NOW)
        pane.rules = tuple(ticked)
        await pilot.pause()
        assert formatted == ["feed-3", "feed-4000", "feed-9999"]
        assert pane.grid.cell("feed-4000", "hits") == "7"
        formatted.clear()
        pane.rules = tuple(ticked)  # the control: the same table again formats nothing
        await pilot.pause()
        assert formatted == []

    run(scenario, monkeypatch)


class CountedGets(dict):  # type: ignore[type-arg]
    """A dict that counts its get() calls: the rows set_rows looked at."""

    gets = 0

    def get(self, key, default=None):  # type: ignore[no-untyped-def,override]
        CountedGets.gets += 1
        return super().get(key, default)


def test_a_tick_looks_only_at_the_rows_whose_status_changed_while_every_rule_keeps_its_place(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One rule's hits changed (a flood's second): set_rows looks at that row alone, and the pane's counts
    follow without counting 10,000 rows.  The controls: a rule replaced in another's place, and a row that
    gains an expiry, show as they would from scratch (the rows looked at again, the clock column kept)."""

    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        table = statuses()
        pane.now = NOW
        pane.rules = table
        await pilot.pause()
        grid = pane.grid
        grid._made = CountedGets(grid._made)
        CountedGets.gets = 0
        ticked = list(table)
        ticked[4_000] = replace(ticked[4_000], hits=9, last_hit=NOW)
        ticked[17] = replace(ticked[17], rule=replace(ticked[17].rule, action=Action.MONITOR), map_name="SRC4")
        pane.rules = tuple(ticked)
        await pilot.pause()
        assert CountedGets.gets == 2 and grid.cell("feed-4000", "hits") == "9"
        assert str(pane.query_one("#rule-status").render()).startswith("10,000 rules (9,999 drop) · blocklist 9,999/")
        CountedGets.gets = 0
        other = list(ticked)
        other[5] = RuleStatus(FilterRule("other", Action.DROP, src_ip=ipaddress.ip_network("198.19.0.1/32"),
                                         expires_at=NOW + 120), "BLOCKLIST", 3, None)  # fmt: skip
        pane.rules = tuple(other)
        await pilot.pause()
        assert type(grid._made) is dict  # another rule in a place: the rows made again from the table, whole
        assert grid.keys[5] == "other" and grid.cell("other", "left") == "2m" and "feed-5" not in grid.keys
        expiring = list(other)
        expiring[9] = replace(other[9], rule=replace(other[9].rule, expires_at=NOW + 60))
        pane.rules = tuple(expiring)
        await pilot.pause()
        assert grid.cell("feed-9", "left") == "1m"
        pane.now = NOW + 30  # the clock column of both expiring rules moves with the clock
        await pilot.pause()
        assert grid.cell("feed-9", "left") == "30s" and grid.cell("other", "left") == "1m30s"

    run(scenario, monkeypatch)


def test_table_counts_follow_any_change_as_a_full_count_does() -> None:
    """TableCounts against counting whole, over random changes in place and changes of length."""
    import random

    from ironpost_tui.engine.feed import count_drops, count_in_blocklist
    from ironpost_tui.ui.widgets.rules_pane import TableCounts

    rng = random.Random(33)
    counts = TableCounts()
    rows = list(statuses(300))
    for _ in range(200):
        what = rng.random()
        if what < 0.6:
            i = rng.randrange(len(rows))
            rows[i] = replace(rows[i], rule=replace(rows[i].rule, action=rng.choice(list(Action))),
                              map_name=rng.choice(["BLOCKLIST", "SRC4", "SRC6", "MATCH"]))  # fmt: skip
        elif what < 0.8:
            rows.insert(rng.randrange(len(rows) + 1), statuses(1)[0])
        elif rows:
            del rows[rng.randrange(len(rows))]
        table = tuple(rows)
        assert counts.of(table) == (count_in_blocklist(table), count_drops(table))


def test_the_clock_changes_only_the_time_left_of_the_rules_that_expire(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        pane.now = NOW
        pane.rules = statuses(expiring=2)
        await pilot.pause()
        assert pane.grid.cell("feed-0", "left") == "10m"
        formatted.clear()
        pane.now = NOW + 60
        await pilot.pause()
        assert formatted == []  # no row formatted again: the clock cells alone
        assert pane.grid.cell("feed-0", "left") == "9m"
        assert pane.grid.cell("feed-1", "left") == "9m1s"
        assert pane.grid.cell("feed-2", "left") == ""  # never expires

    run(scenario, monkeypatch)


def test_only_the_rows_on_screen_are_drawn_and_the_cursor_keeps_its_rule(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        pane.now = NOW
        pane.rules = statuses()
        await pilot.pause()
        grid = pane.grid
        drawn = count_drawn(monkeypatch, grid)
        grid.refresh()
        await pilot.pause()
        assert 0 < len(drawn) <= 2 * grid.size.height  # not 10,000 rows
        drawn.clear()
        pane.rules = tuple(pane.rules)  # an idle second's table: the same statuses
        await pilot.pause()
        assert drawn == []  # nothing drawn again
        pane.rules = (replace(pane.rules[0], hits=5), *pane.rules[1:])  # the control: a row changed
        await pilot.pause()
        assert drawn
        await pilot.press("down", "down", "pagedown")
        assert grid.cursor_row > 2
        at = grid.selected
        assert at is not None and pane.selected() == at.rule
        table = list(pane.rules)
        del table[0]  # a rule above the cursor goes: the cursor stays on its rule, one row up
        pane.rules = tuple(table)
        await pilot.pause()
        assert grid.selected is not None and grid.selected.rule.id == at.rule.id
        await pilot.press("end")
        assert grid.selected is not None and grid.selected.rule.id == "feed-9999"

    run(scenario, monkeypatch)


def test_columns_line_up_by_terminal_cells_with_wide_characters_in_an_id(monkeypatch: pytest.MonkeyPatch) -> None:
    """A rule id of CJK characters (two cells each: printable, so the file accepts it) widens its column by
    cells, not characters: the next columns start at the same cell on every row."""
    from rich.cells import cell_len

    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        rules = [
            RuleStatus(
                FilterRule("規則ブロック", Action.DROP, src_ip=ipaddress.ip_network("198.18.1.1/32")), "BLOCKLIST"
            ),
            RuleStatus(
                FilterRule("ascii-2", Action.MONITOR, src_ip=ipaddress.ip_network("198.18.1.2/32")), "BLOCKLIST"
            ),
        ]
        pane.now = NOW
        pane.rules = tuple(rules)
        await pilot.pause()
        grid = pane.grid
        rows = [grid.render_line(y).text for y in (1, 2)]
        at = [cell_len(row[: row.index(word)]) for row, word in zip(rows, ("drop", "monitor"), strict=True)]
        assert at[0] == at[1], rows
        assert cell_len(rows[0]) == cell_len(rows[1])

    run(scenario, monkeypatch)


def test_an_expiring_rule_redraws_the_table_when_its_time_left_changes_only(monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario(pilot: Pilot[None], pane: RulesPane, formatted: list[str]) -> None:
        pane.now = NOW
        pane.rules = statuses(n=50, expiring=1)
        await pilot.pause()
        grid = pane.grid
        drawn = count_drawn(monkeypatch, grid)
        pane.rules = tuple(pane.rules)  # the same table at the same time: nothing to draw
        await pilot.pause()
        assert drawn == []
        pane.now = NOW + 1  # the control: its time left changes
        await pilot.pause()
        assert drawn and grid.cell("feed-0", "left") == "9m59s"

    run(scenario, monkeypatch)
