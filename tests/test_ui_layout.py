"""The console at 80×24, where it is used over SSH: each table shows the columns a responder
reads first without scrolling, no pane leaves more than a quarter of its rows empty while it
has something to show, notices never cut an address, and the sparklines share one scale.

Read from what is drawn (the compositor's cells), on the lab recording played to 6 s.
"""

from __future__ import annotations

import asyncio
import dataclasses
import gzip
import io
import random
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from support.screen_cells import row_text, screen_cells
from support.ui import RECORDING, play_to, replay_app
from textual.color import Color
from textual.renderables.sparkline import Sparkline as TextualSparkline
from textual.widget import Widget

from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.app import IronpostApp
from ironpost_tui.ui.widgets.pane_tabs import PaneTabs
from ironpost_tui.ui.widgets.rule_form import FIELDS
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.scaled_sparkline import ScaledBars, ScaledSparkline
from ironpost_tui.ui.widgets.traffic_pane import ROWS, TrafficPane

NARROW = (80, 24)


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def pane_lines(app: IronpostApp, pane: Widget) -> list[str]:
    """The text of each row inside the pane's border."""
    cells = screen_cells(app)
    r = pane.content_region
    return [row_text(cells[y])[r.x : r.x + r.width] for y in range(r.y, r.y + r.height)]


def lines_at_80x24(keys: tuple[str, ...], recording: Path = RECORDING) -> dict[str, list[str]]:
    """For each pane key, the pane's rows at 80×24 once it is shown."""
    app, _source, clock = replay_app(recording=recording)
    out: dict[str, list[str]] = {}

    async def main() -> None:
        async with app.run_test(size=NARROW) as pilot:
            await play_to(pilot, clock, 6.0)
            for key in keys:
                await pilot.press(key)
                await pilot.pause()
                out[key] = pane_lines(app, app.main.panes[int(key) - 1])

    asyncio.run(main())
    return out


@pytest.fixture(scope="module")
def narrow() -> Iterator[dict[str, list[str]]]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        lines = lines_at_80x24(("1", "2", "3", "4"))
    time.tzset()
    yield lines


def in_order(line: str, words: list[str]) -> bool:
    at = 0
    for word in words:
        at = line.find(word, at)
        if at < 0:
            return False
        at += len(word)
    return True


RULES = ["id", "hits", "left", "action", "match", "map"]  # the action between the left and the match
EVENTS = ["time", "source", "verdict", "rule", "proto", "dport", "flags"]  # the rule (whole) before the flags
# Count before the times; the last seen is the next column, a scroll away at 80 columns once the target
# has its port ("198.18.0.1:23"), and in the detail below the table.
ALERTS = ["#", "severity", "source", "target", "count", "state", "detector"]


@pytest.mark.parametrize(
    ("key", "header", "row_with", "cells"),
    [
        ("4", RULES, "doc-net", ["0", "59m55s", "drop", "src 2001:db8:ffff::/48", "SRC6"]),
        ("3", EVENTS, "drop-telnet", ["198.18.141.142", "drop", "drop-telnet", "tcp", "23", "S"]),
        ("2", ALERTS, "syn_flood", ["HIGH", "198.18.141.142", "198.18.141.141:23", "166,181", "ACTIVE", "syn_flood"]),
    ],
    ids=["rules", "events", "alerts"],
)
def test_tables_show_the_first_columns_without_scrolling(
    narrow: dict[str, list[str]], key: str, header: list[str], row_with: str, cells: list[str]
) -> None:
    lines = narrow[key]
    assert in_order(lines[0], header), lines[0]
    row = next(line for line in lines[1:] if row_with in line)
    assert in_order(row, cells), row


def test_no_pane_is_more_than_a_quarter_empty(narrow: dict[str, list[str]]) -> None:
    """Traffic (with the top offenders), alerts and rules (with the selected row in full), events."""
    for key, lines in narrow.items():
        empty = sum(1 for line in lines if not line.strip())
        assert empty <= len(lines) / 4, f"pane {key}: {empty} of {len(lines)} rows empty:\n" + "\n".join(lines)


def test_the_detail_and_the_offenders_show_what_the_tables_cut(narrow: dict[str, list[str]]) -> None:
    traffic, alerts, rules = narrow["1"], narrow["2"], narrow["4"]
    assert any("top talkers over 10 s" in line for line in traffic)
    assert any("198.18.141.142" in line and "syn_flood 166,181" in line and "port_scan 101" in line for line in traffic)
    assert any(line.startswith("summary") and "166181 SYNs" in line for line in alerts)  # cut from the table
    assert any(line.startswith("first seen") for line in alerts)
    assert any(line.startswith("last seen") for line in alerts)
    assert any(line.startswith("target") and "198.18.141.141:23" in line for line in alerts)
    assert any(line.startswith("as nft") and "nft add rule" in line for line in rules)


def test_a_long_rule_id_is_cut_in_the_middle_and_whole_in_the_detail() -> None:
    from support.ui import FakeSource, Messages, live_app

    from ironpost_tui.model import Action, FilterRule
    from ironpost_tui.ui.messages import RulesRefreshed

    long_id = "auto-port_scan-2001:db8:200::66"
    source = FakeSource([FilterRule(long_id, Action.MONITOR, dst_port=22, protocol=6)])
    app = live_app(source)

    async def main() -> None:
        messages = Messages()
        async with app.run_test(size=NARROW, message_hook=messages) as pilot:
            await messages.wait(RulesRefreshed, pilot, after=0)
            app.redraw()
            await pilot.press("4")
            await pilot.pause()
            lines = pane_lines(app, app.main.query_one(RulesPane))
            assert lines[1].split()[0] == "auto-po…:200::66", lines[:3]  # the table's row: head and tail
            assert long_id not in lines[1]
            assert any(line.startswith("id ") and long_id in line for line in lines[2:])  # the detail

    asyncio.run(main())


# --- notices ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "width", "expected"),
    [
        ("auto-blocked 198.18.200.66 for 60 s", 80, "auto-blocked 198.18.200.66 for 60 s"),
        ("auto-blocked 198.18.200.66 for 60 s (port_scan alert 3)", 36, "auto-blocked 198.18.200.66 for 60 s…"),
        ("auto-blocked 198.18.200.66 for 60 s (port_scan alert 3)", 28, "auto-blocked 198.18.200.66…"),
        ("blocked 2001:db8:200::66 and 198.18.0.9 for 10m", 40, "blocked 2001:db8:200::66 and 198.18.0.9…"),
        ("refused: 198.18.200.1/32 is protected (the demo host)", 30, "refused: 198.18.200.1/32 is…"),
        ("rule add: watch-dns", 8, "rule…"),
        ("auto-blocked 2001:db8:200::66", 12, "…"),  # not even the address fits: none of it rather than half
    ],
)
def test_fit_shortens_around_addresses(line: str, width: int, expected: str) -> None:
    fitted = fmt.fit(line, width)
    assert fitted == expected
    assert len(fitted) <= width


@pytest.mark.parametrize(
    ("rule_id", "width", "expected"),
    [
        ("block-198.18.200.99", 16, "bl…198.18.200.99"),  # the address that ends an id kept whole
        ("block-198.18.200.66", 16, "bl…198.18.200.66"),  # so two blocks no longer read alike (block-198.18.20…)
        ("auto-port_scan-198.18.0.0/16", 16, "au…198.18.0.0/16"),
        ("block-2001:db8:abcd::1234:5678", 16, "block-2…234:5678"),  # the address longer: head and tail
        ("my-very-long-rule-name-1", 16, "my-very…e-name-1"),
        ("block-198.18.200.99", 19, "block-198.18.200.99"),  # the control: one that fits is whole
        ("block-198.18.200.99", 1, "…"),
        ("f" * 256, 16, "f" * 7 + "…" + "f" * 8),  # a file's longest id, all address characters: head and tail
        ("x-" + ":" * 12, 16, "x-" + ":" * 12),
        ("block-" + "1" * 250, 16, "block-1…" + "1" * 8),
    ],
)
def test_rule_ids_are_cut_in_the_middle(rule_id: str, width: int, expected: str) -> None:
    """Cut at the end, the console's own ids read alike at 16 cells: two blocks were both "block-198.18.20…",
    every auto-block "auto-port_scan-…" (session 24's drill)."""
    clipped = fmt.clip_id(rule_id, width)
    assert clipped == expected and len(clipped) <= width


def test_address_words() -> None:
    for word in ("198.18.0.5", "(2001:db8::1)", "198.18.0.5:22,", "2001:db8::/32", "[2001:db8::1]:22"):
        assert fmt.is_address_word(word), word
    for word in ("12:00:01", "auto-blocked", "3.5", "ipvb89cd2", "add:", "syn_flood"):
        assert not fmt.is_address_word(word), word


def test_a_notice_never_cuts_an_address_at_80x24() -> None:
    app, _source, clock = replay_app()
    notice = "auto-blocked 198.18.200.66 for 60 s: port_scan alert 3, 101 ports probed within 60 s"

    async def main() -> None:
        async with app.run_test(size=NARROW) as pilot:
            await play_to(pilot, clock, 6.0)
            tabs = app.main.query_one(PaneTabs)
            app.state.notice(notice)
            app.redraw()
            await pilot.pause()
            shown = str(tabs.render())
            assert len(shown) <= tabs.size.width < len(notice) + 40  # it had to be shortened
            # Whole, then the ellipsis (with five tabs the words after it no longer fit).
            assert re.search(r"198\.18\.200\.66( |…|$)", shown) and shown.rstrip().endswith("…")
            assert "198.18.200.6…" not in shown

    asyncio.run(main())


# --- sparklines ------------------------------------------------------------------------


def render(renderable: object, width: int) -> list[str]:
    console = Console(file=io.StringIO(), width=width, color_system=None, legacy_windows=False)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get().splitlines()


def test_sparklines_share_one_scale() -> None:
    """OTHER at 0.99 pkt/s beside TCP at 179,000: on the shared scale a flat baseline; Textual's
    own sparkline (scaled to itself) draws the same data full height."""
    other = [0.0, 0.99] * 10
    ours = render(ScaledBars(other, 179_000.0, 20, 2, Color(0, 0, 255), Color(255, 0, 0)), 20)
    assert "█" not in "".join(ours) and set(ours[-1]) == {"▁"}
    textual = render(TextualSparkline(other, width=20, height=2), 20)
    assert "█" in "".join(textual)
    full = render(ScaledBars([179_000.0] * 20, 179_000.0, 20, 2, Color(0, 0, 255), Color(255, 0, 0)), 20)
    assert full == ["█" * 20, "█" * 20]


def test_a_sparkline_redraws_when_its_bars_change_and_only_then() -> None:
    """``plot`` with data that draw the same bars (an idle history filling with zeros) does not redraw;
    with data that draw others it does; the data are kept either way, and a resize draws the last ones."""
    from textual.app import App, ComposeResult

    class One(App[None]):
        def compose(self) -> ComposeResult:
            yield ScaledSparkline([], id="s")

    app = One()

    async def main() -> None:
        async with app.run_test(size=(20, 2)) as pilot:
            spark = app.query_one(ScaledSparkline)
            spark.styles.width, spark.styles.height = 10, 1
            await pilot.pause()
            refreshed: list[int] = []
            real = spark.refresh

            def counted(*args: object, **kwargs: object) -> object:
                refreshed.append(1)
                return real(*args, **kwargs)

            spark.refresh = counted  # type: ignore[method-assign]
            spark.plot([0.0], 0.0)  # the first plot at this size: drawn
            assert len(refreshed) == 1
            for n in range(2, 8):  # zeros, more of them each second: the same baseline
                spark.plot([0.0] * n, 0.0)
            assert len(refreshed) == 1 and list(spark.data or []) == [0.0] * 7  # kept, not drawn
            spark.plot([0.0] * 6 + [5.0], 5.0)  # a packet: the right-hand bar rises
            assert len(refreshed) == 2
            spark.plot([0.0] * 6 + [5.0], 5.0)
            assert len(refreshed) == 2
            spark.plot([0.0] * 5 + [5.0, 0.0], 5.0)  # it moves one column left
            assert len(refreshed) == 3 and spark.scale == 5.0
            spark.refresh = real  # type: ignore[method-assign]
            spark.styles.width = 20  # a resize draws the kept data
            await pilot.pause()
            assert spark.render_line(0).text == "▁" * 18 + "█▁"

    asyncio.run(main())


def test_the_traffic_pane_scales_every_protocol_alike() -> None:
    app, _source, clock = replay_app()

    async def main() -> None:
        async with app.run_test(size=NARROW) as pilot:
            await play_to(pilot, clock, 6.0)
            traffic = app.main.query_one(TrafficPane)
            scales = {traffic.query_one(f"#pps-{p}", ScaledSparkline).scale for p in ROWS}
            top = max(r.pps for s in app.state.history for r in s.rates.values())
            assert scales == {top}
            assert str(traffic.query_one("#pps-head").render()) == f"max {fmt.si(top)} pkt/s"

    asyncio.run(main())


# --- the rule form ---------------------------------------------------------------------


def test_the_rule_forms_placeholders_read_as_examples() -> None:
    assert all(hint.startswith("e.g. ") for _name, _label, hint in FIELDS)


def test_a_list_of_addresses_is_cut_between_addresses_never_inside_one() -> None:
    assert fmt.whole_values(["198.18.0.1"], 21) == "198.18.0.1"
    assert fmt.whole_values(["198.18.0.1", "198.18.0.5"], 22) == "198.18.0.1, 198.18.0.5"  # fits
    assert fmt.whole_values(["198.18.0.1", "198.18.0.5"], 21) == "198.18.0.1 +1"
    long_first = ["2001:db8:ffff:ffff::1234", "198.18.0.5", "198.18.0.6"]
    assert fmt.whole_values(long_first, 10) == "2001:db8:ffff:ffff::1234 +2"
    assert fmt.whole_values(["1.1.1.1", "2.2.2.2", "3.3.3.3"], 20) == "1.1.1.1, 2.2.2.2 +1"
    assert fmt.whole_values(["ab", "cd"], 6) == "ab, cd" and fmt.whole_values(["规则", "cd"], 6) == "规则 +1"  # cells


def test_a_recording_without_top_talkers_shows_the_offenders_from_the_alerts(tmp_path: Path) -> None:
    """A recording made before the top talkers (the same one without its "top" records): the Traffic
    pane's offenders come from the alerts."""
    older = tmp_path / "older.ipr.gz"
    with gzip.open(RECORDING, "rt") as src, gzip.open(older, "wt") as dst:
        dst.writelines(line for line in src if not line.startswith('{"kind":"top"'))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TZ", "UTC")
        time.tzset()
        traffic = lines_at_80x24(("1",), older)["1"]
    time.tzset()
    assert any("top offenders (from the alerts)" in line for line in traffic), traffic
    assert any("198.18.141.142" in line and "syn_flood 166,181" in line for line in traffic), traffic


def test_the_rules_and_events_tables_cut_ids_in_the_middle() -> None:
    """Both tables' id cells go through clip_id: two blocks of the same /24 read apart."""
    from ironpost_tui.model import Action, FilterRule, RuleStatus
    from ironpost_tui.ui.widgets import event_grid, rule_rows

    ids = [
        rule_rows.cells(RuleStatus(FilterRule(f"block-198.18.200.{n}", Action.DROP), "BLOCKLIST"), 0.0)[0][0]
        for n in (66, 99)
    ]
    assert ids == ["bl…198.18.200.66", "bl…198.18.200.99"]
    from support.ui import event

    from ironpost_tui.model import Verdict

    shown = event_grid.cells(event("198.18.200.66", rule="block-198.18.200.66", verdict=Verdict.DROP))
    assert "bl…198.18.200.66" in shown


def test_an_offender_whose_alert_is_blocked_says_so_not_a_count_of_0() -> None:
    """A blocked flood's drops no longer reach its detector, whose count falls to 0: the offenders line read
    "635 pkt/s · syn_flood 0" (session 24's drill).  A blocked alert says "blocked"; the control: an open one its
    count."""
    from support.ui import alert

    from ironpost_tui.detectors.alerts import Block
    from ironpost_tui.ui.offenders import top_offenders

    blocked = dataclasses.replace(alert(1, "198.18.200.99"), count=0, block=Block("block-198.18.200.99", None, 9))
    active = dataclasses.replace(alert(2, "198.18.200.66"), count=13_750)
    lines = {o.source: o.found() for o in top_offenders(None, [blocked, active])}
    assert lines == {"198.18.200.99": "syn_flood blocked", "198.18.200.66": "syn_flood 13,750"}


def _fit_as_it_was(line: str, width: int) -> str:
    """fit() before session 29, word for word: the reference the bounded one must agree with."""
    if len(line) <= width:
        return line
    words = line.split(" ")
    keep = [fmt.is_address_word(w) for w in words]

    def render() -> str:
        out: list[str] = []
        for word, kept in zip(words, keep, strict=True):
            if kept:
                out.append(word)
            elif not out or out[-1] != "…":
                out.append("…")
        return " ".join(out).replace(" …", "…")

    for i, is_addr in enumerate(list(keep)):
        if is_addr:
            continue
        keep[i] = True
        if len(render()) > width:
            keep[i] = False
            break
    text = render()
    while len(text) > width and any(keep):
        last = max(i for i, k in enumerate(keep) if k)
        keep[last] = False
        text = render()
    return text if len(text) <= width else ""


def test_fit_agrees_with_the_unbounded_fit_on_random_lines() -> None:
    """The words fit() leaves out unread (past the first addresses and other words it could ever keep) change
    nothing: 3,000 random lines of addresses, words, empty words and ellipses, at widths 1-40."""
    rng = random.Random(29)
    vocab = ["::", "::1", "198.18.0.5", "2001:db8::1", "(198.18.0.9)", "198.18.0.0/16,", "a", "of", "…", "", "rule",
             "auto-blocked", "x" * 12, "…x", "1.2"]  # fmt: skip
    for _ in range(3000):
        width = rng.randint(1, 40)
        line = " ".join(rng.choice(vocab) for _ in range(rng.randint(1, 3 * width + 30)))
        assert fmt.fit(line, width) == _fit_as_it_was(line, width), (line, width)


def test_fit_of_a_notice_of_many_addresses_reads_each_word_once() -> None:
    """20,000 addresses (a replayed recording's notice: some 300 KB): fit() took over half a minute, on the
    console's event loop.  Counted in words classified, not timed: once each at most (the addresses past those
    that could be kept are not read at all)."""
    line = "warning: " + " ".join(f"198.18.{i // 256}.{i % 256}" for i in range(20_000))
    classified: list[str] = []
    real = fmt.is_address_word
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fmt, "is_address_word", lambda w: classified.append(w) or real(w))
        out = fmt.fit(line, 60)
    assert out == "… " + " ".join(f"198.18.0.{i}" for i in range(5)) + "…"  # the first addresses, whole
    assert len(classified) <= 2 * 60 + 6, len(classified)
    # The controls: an address after 20,000 other words is still read, and found where it fits.
    prose = " ".join(["word"] * 20_000) + " 198.18.0.77"
    assert fmt.fit(prose, 30) == _fit_as_it_was(prose, 30) == "word word word… 198.18.0.77"
    assert fmt.fit("word " * 5_000 + "198.18.0.77", 14) == "… 198.18.0.77"


def _is_address_word_as_it_was(word: str) -> bool:
    """is_address_word before session 29: a pattern that backtracked over every start of a long run."""
    import ipaddress
    import re

    for match in re.finditer(r"[0-9A-Fa-f:.]*[:.][0-9A-Fa-f:.]*(?:/\d{1,3})?", word):
        candidate = match.group().strip(".:")
        for text in (candidate, candidate.rpartition(":")[0]):
            try:
                ipaddress.ip_network(text, strict=False)
            except ValueError:
                continue
            return True
    return False


def test_an_address_word_is_found_as_before_and_now_also_one_that_starts_with_colons() -> None:
    """The linear scan finds every word the backtracking one found (20,000 random words of address characters and
    others), and more only where a run starts with '::' ('::1' was a word, dropped from a notice as any other)."""
    rng = random.Random(2929)
    alphabet = "0123456789abcdefg:./()-,x "
    for _ in range(20_000):
        word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 24)))
        old, new = _is_address_word_as_it_was(word), fmt.is_address_word(word)
        assert new or not old, word
        assert old or not new or "::" in word, word
    for word in ("::1", "(::1)", "::ffff:198.18.0.1,", "2001:db8::"):
        assert fmt.is_address_word(word) and not _is_address_word_as_it_was(word), word


def test_a_notice_of_one_long_word_is_read_once_not_over_every_start() -> None:
    """A 200,000-letter word of address characters without a ':' or '.' (a replayed notice): the pattern that
    looked for one inside the run backtracked over every start, quadratic (3 s at 20,000 letters: some five
    minutes here); one match per run now.  Judged by finishing at all within 60 s, a margin of thousands."""
    import threading

    done: list[str] = []
    word = "a" * 200_000
    t = threading.Thread(target=lambda: done.append(fmt.fit("x " + word + " 198.18.0.1", 40)), daemon=True)
    t.start()
    t.join(60)
    assert done == ["x… 198.18.0.1"], done
