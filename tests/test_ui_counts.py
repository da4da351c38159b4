"""The console's counts as a responder reads them with a threat feed's 10,000 rules: with thousands
separators in every summary (the status bar and the rule and alert panes), the rules pane's capacity
shown once the source says it (it can come after the rules), and a panic's notice that names some of
the cleared rules rather than all of them.  Pilot and pure functions, no root."""

from __future__ import annotations

import asyncio
import ipaddress

from textual.app import App, ComposeResult
from textual.widgets import Static

from bench import b_startup
from ironpost_tui.engine.feed import CLEARED_IDS_WIDTH
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.ui.edits import Edit, EditKind
from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.status_bar import StatusView, render_status

N = 10_000


def drop_rules(n: int) -> tuple[FilterRule, ...]:
    return tuple(
        FilterRule(f"feed-{i}", Action.DROP, src_ip=ipaddress.ip_network(f"198.18.{i // 256}.{i % 256}/32"))
        for i in range(n)
    )


class PaneApp(App[None]):
    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    def compose(self) -> ComposeResult:
        yield RulesPane()


def test_the_rules_pane_counts_with_separators_and_shows_a_capacity_that_comes_after_the_rules() -> None:
    """The console's start sets the pane's capacity when the source has started, which can be after the
    rules arrived: the status said "blocklist 8744/0" until the rules next changed (the bench's first
    live screen, session 22's run)."""
    seen: list[str] = []

    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(RulesPane)
            status = pane.query_one("#rule-status", Static)
            pane.rules = tuple(RuleStatus(r, "BLOCKLIST", 0, None) for r in drop_rules(N))
            await pilot.pause()
            seen.append(str(status.content))
            pane.capacity = 65_536  # the source has started: no change of the rules follows
            await pilot.pause()
            seen.append(str(status.content))

    asyncio.run(main())
    assert seen == [
        "10,000 rules (10,000 drop) · blocklist 10,000/0",
        "10,000 rules (10,000 drop) · blocklist 10,000/65,536",
    ]
    # The bench's start-up line waits for this count on the console's screen (it waited for "10000 rules (",
    # which the separators made never come): its condition, on the status the pane writes.
    screen = " ".join(("eth0 native attached", *b_startup.PANES, seen[-1]))
    assert b_startup.live(screen, N) and not b_startup.live(screen, N - 1)


def test_the_status_bar_counts_the_blocklist_with_separators() -> None:
    line = render_status(StatusView(title="live", iface="eth0", attached=True, blocklist_used=8_744,
                                    blocklist_capacity=10_000)).plain  # fmt: skip
    assert "blocklist 8,744/10,000" in line
    small = render_status(StatusView(title="live", iface="eth0", attached=True, blocklist_used=3,
                                     blocklist_capacity=100)).plain  # fmt: skip
    assert "blocklist 3/100" in small  # the control: nothing added below a thousand


class Panicked:
    """A source whose panic cleared ``cleared``: all Edit.apply asks of it."""

    def __init__(self, cleared: tuple[FilterRule, ...]) -> None:
        self.cleared = cleared

    def panic(self) -> tuple[FilterRule, ...]:
        return self.cleared


def test_a_panics_notice_names_the_first_rules_and_counts_the_rest() -> None:
    """10,000 cleared rules made one notice of some 90 KB (every id), kept whole for `n`."""
    said = Edit(EditKind.PANIC).apply(Panicked(drop_rules(N)))  # type: ignore[arg-type]
    head = "panic: cleared 10,000 drop rule(s): "
    assert said.startswith(head + "feed-0, feed-1, ")
    names, _, rest = said[len(head) :].rpartition(" +")
    assert len(names) <= CLEARED_IDS_WIDTH and names.count(", ") + 1 + int(rest) == N
    # The controls: a few rules are all named; none is said.
    assert Edit(EditKind.PANIC).apply(Panicked(drop_rules(2))) == (  # type: ignore[arg-type]
        "panic: cleared 2 drop rule(s): feed-0, feed-1"
    )
    assert Edit(EditKind.PANIC).apply(Panicked(())) == "panic: cleared 0 drop rule(s): none"  # type: ignore[arg-type]


def test_the_blocklists_use_counts_crowdsecs_decisions_beside_the_rules() -> None:
    """BLOCKLIST holds the rules' entries and CrowdSec's decisions' (one row in the rules pane for all of
    them): the status bar and the rules pane count both, so that a map the decisions filled does not read
    as room; without [crowdsec] the rules' alone (the control)."""
    from ironpost_tui.engine.crowdsec.status import CrowdSecStatus, LapiState
    from ironpost_tui.ui.state import ConsoleState

    state = ConsoleState()
    state.set_rules(tuple(RuleStatus(r, "BLOCKLIST", 0, None) for r in drop_rules(3)))
    assert state.blocklist_used() == 3
    state.crowdsec = CrowdSecStatus(LapiState.UP, 9_500, 1_000.0, {}, 0, 0, 9_000)
    assert state.blocklist_used() == 9_003
    seen: list[str] = []

    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(100, 30)) as pilot:
            pane = app.query_one(RulesPane)
            pane.capacity = 10_000
            pane.rules = state.rules
            await pilot.pause()
            seen.append(str(pane.query_one("#rule-status", Static).content))
            pane.decisions = state.decisions_in_blocklist()
            await pilot.pause()
            seen.append(str(pane.query_one("#rule-status", Static).content))

    asyncio.run(main())
    assert seen == ["3 rules (3 drop) · blocklist 3/10,000", "3 rules (3 drop) · blocklist 9,003/10,000"]
