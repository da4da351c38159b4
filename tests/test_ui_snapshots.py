"""Snapshots of every screen of the console at 80×24 (SSH) and 160×48, fed by the lab
recording played to 6 s with a frozen clock: no wall-clock time, no cursor blink, UTC.

Review the SVG diff before `--snapshot-update`; each test says what must be visible.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import replace
from typing import Any

import pytest
from support.ui import play_to, replay_app
from textual.pilot import Pilot

from ironpost_tui.detectors import AlertChange, Block, ChangeKind
from ironpost_tui.ui.screens.block import BlockScreen
from ironpost_tui.ui.screens.quit import QuitScreen
from ironpost_tui.ui.widgets.rule_form import RuleForm

NARROW = (80, 24)
WIDE = (160, 48)
SIZES = pytest.mark.parametrize("size", [NARROW, WIDE], ids=["80x24", "160x48"])
AT = 6.0  # seconds into the recording: both alerts raised, block-scanner deleted, the telnet flood on

Steps = Callable[[Pilot[Any]], Awaitable[None]]


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Event and alert times are local time: make local time UTC."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def shoot(
    snap_compare: Any,
    size: tuple[int, int],
    *keys: str,
    then: Steps | None = None,
    theme: str | None = None,
    at: float = AT,
) -> bool:
    app, _source, clock = replay_app(theme=theme)

    async def run_before(pilot: Pilot[Any]) -> None:
        await play_to(pilot, clock, at)
        for key in keys:
            await pilot.press(key)
        if then is not None:
            await then(pilot)
        await pilot.pause()

    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


@SIZES
def test_main_view(snap_compare: Any, size: tuple[int, int]) -> None:
    """Status line 'replay of lab.ipr.gz │ 0:06.0/0:07.2 │ 1×' with lost events; tabs with
    '2 Alerts!' marked; at 160×48 the grid: traffic (TCP 101k pkt/s, TOTAL drops, sparkline
    headers 'max 101k pkt/s' and 'max 43.8Mb/s': one scale for all protocols, so UDP/ICMP/OTHER
    draw a flat baseline), the alerts pane with a red border (HIGH syn_flood at 198.18.141.141:23,
    MEDIUM port_scan at 198.18.141.141:*;
    below them alert 1's summary, count, first and last seen), events following the tail
    (drop-telnet, tcp, S), rules (watch-dns, drop-telnet, doc-net with about 59m55s left; below
    them watch-dns in full, three fields a line, and its nft command) and beside them the Top pane
    (198.18.141.142 26.3k pkt/s, its detail: dst ports tcp/23, tcp/443); at 80×24 the traffic pane
    alone, its sparklines three rows tall, and below them 'top talkers over 10 s (5: Top pane)':
    198.18.141.142 26.3k pkt/s · 11.4Mbit/s · syn_flood 166,181 · port_scan 101."""
    assert shoot(snap_compare, size)


@SIZES
def test_alerts_pane(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 2: the alerts pane has the keys (footer o Ack / un-ack): columns #, severity, source, target,
    count, state, detector before the times; alert 1 HIGH 198.18.141.142 198.18.141.141:23 166,181
    ACTIVE syn_flood (the flooded port), alert 2 MEDIUM 198.18.141.141:* port_scan (many ports); below
    the table alert 1 in full (summary, count
    within 10 s and its rate, first and last seen, lasted, peak, state, ...; at 160×48 as many as
    the short pane holds); the status line '2 active, 2 not acknowledged, 0 resolved'."""
    assert shoot(snap_compare, size, "2")


@SIZES
def test_alerts_acknowledged(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 2 then o: alert 1 shows 'acked' in muted colour, '1 not acknowledged'; the pane's
    red border is gone (the remaining alert is medium)."""
    assert shoot(snap_compare, size, "2", "o")


@SIZES
def test_alert_detail(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 2 then enter: alert 1's detail: 'Alert 1 · HIGH · syn_flood · ACTIVE', its fields in full
    (source 198.18.141.142, target, count and peak, first and last seen with the date, summary), 'rules
    on 198.18.141.142: none', the events of src:198.18.141.142 only; footer esc Back, o Ack, b/u hidden
    in a replay."""
    assert shoot(snap_compare, size, "2", "enter")


@SIZES
def test_events_pane(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 3: events, newest at the bottom with the cursor on it; columns time (UTC), source,
    verdict (drop in the error colour), rule (drop-telnet whole), proto, dport, flags: all on
    screen at 80×24; then destination, sport, len; each column as wide as the widest text it has
    drawn (at 80×24, 198.18.141.142 and drop-telnet with a blank each side: the older rows' wider
    texts were never on screen); the status line '5,000 shown of 5,180 kept · lost …'; footer
    with / Filter, b Block, u hidden in a replay."""
    assert shoot(snap_compare, size, "3")


@SIZES
def test_events_filtered(snap_compare: Any, size: tuple[int, int]) -> None:
    """At 3 s (before the telnet flood), key 3, '/', 'proto:udp', enter: only udp events to port
    53 (monitor, watch-dns) from the IPv6 lab address; the status line says 'filter: proto:udp'."""
    assert shoot(snap_compare, size, "3", "slash", *"proto:udp", "enter", at=3.0)


@SIZES
def test_events_paused(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 3 then space: the replay is paused: the status line shows PAUSED in a warning-coloured
    badge."""
    assert shoot(snap_compare, size, "3", "space")


@SIZES
def test_rules_pane(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 4: rules, columns id, hits, left, action, match, map (all on screen at 80×24), last
    hit (UTC): watch-dns 180 monitor udp/53 MATCH, drop-telnet 263,664, doc-net 0 59m55s drop
    src 2001:db8:ffff::/48 SRC6; watch-dns in full below the table (id, action, source any, ...,
    as nft: one a line at 80×24, three a line at 160×48); the status line '3 rules (2 drop) ·
    blocklist 0/10,000 · read-only replay'."""
    assert shoot(snap_compare, size, "4")


def test_rules_sorted(snap_compare: Any) -> None:
    """80×24, key 4 then s twice: sorted by hits, biggest first, the header says 'hits▼'
    (drop-telnet 263,664, watch-dns 180, doc-net 0); the status line adds 'sorted by hits ▼'."""
    assert shoot(snap_compare, NARROW, "4", "s", "s")


def test_events_zoomed(snap_compare: Any) -> None:
    """160×48, key 3 then z: the events pane maximised over the whole screen."""
    assert shoot(snap_compare, WIDE, "3", "z")


@SIZES
def test_help(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key ?: the help dialog listing keys by section (Anywhere: q Quit, tab, 1-4, z, space,
    a, g, m, !, r ..., j / k); the alerts pane's enter (detail) and o (ack); scrollable at 80×24."""
    assert shoot(snap_compare, size, "question_mark")


@SIZES
def test_chart(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 1, down twice (TOTAL -> TCP -> UDP), g: the chart screen: 'UDP · last minute · 6 samples', a
    packets/s and drops/s plot and a bits/s plot against seconds ago."""
    assert shoot(snap_compare, size, "1", "down", "down", "g")


def test_chart_ten_minutes_bytes(snap_compare: Any) -> None:
    """160×48, g, w, m: TOTAL over the last 10 minutes in bytes/s."""
    assert shoot(snap_compare, WIDE, "g", "w", "m")


async def _rule_form(pilot: Pilot[Any]) -> None:
    app = pilot.app
    doc_net = next(s.rule for s in app.state.rules if s.rule.id == "doc-net")
    await app.push_screen(RuleForm(doc_net, app.source.now, cursor_blink=False))


async def _rule_form_with_errors(pilot: Pilot[Any]) -> None:
    app = pilot.app
    await app.push_screen(RuleForm(None, app.source.now, cursor_blink=False))
    for key in ("b", "a", "d", "tab", *"10.0.0.1/8", "tab", "tab", *"99999", "tab", *"tcp", "enter"):
        await pilot.press(key)


@SIZES
def test_rule_form(snap_compare: Any, size: tuple[int, int]) -> None:
    """The edit form for doc-net: id (disabled), action drop selected, source 2001:db8:ffff::/48,
    expires in 59m55s, empty fields with example placeholders ('e.g. 203.0.113.0/24 (empty: any)'),
    buttons Save and Cancel; the replay shows behind it dimmed."""
    assert shoot(snap_compare, size, then=_rule_form)


@SIZES
def test_rule_form_errors(snap_compare: Any, size: tuple[int, int]) -> None:
    """The add form after enter with source 10.0.0.1/8 and port 99999: both fields marked invalid,
    and in red below them 'src_ip: 10.0.0.1/8 has host bits set…' and "dst_port: '99999': a port is 0-65535"."""
    assert shoot(snap_compare, size, then=_rule_form_with_errors)


async def _panic(pilot: Pilot[Any]) -> None:
    await pilot.app.push_screen(pilot.app.editing.panic_question())


@SIZES
def test_panic_confirm(snap_compare: Any, size: tuple[int, int]) -> None:
    """The panic question: 'Panic: clear every drop rule', 'Delete all 2 drop rule(s) now, on
    ipvb89cd2…', buttons 'Clear drops (y)' and 'Cancel (n)' (focused)."""
    assert shoot(snap_compare, size, then=_panic)


async def _block(pilot: Pilot[Any]) -> None:
    await pilot.app.push_screen(BlockScreen("198.18.141.142", "blocked from the console: alert 1 syn_flood"))


def test_block_duration(snap_compare: Any) -> None:
    """80×24: 'Block 198.18.141.142 for (1-4, enter; esc cancels):' with 1 10m (highlighted), 2 1h,
    3 24h, 4 permanent."""
    assert shoot(snap_compare, NARROW, then=_block)


async def _quit_question(pilot: Pilot[Any]) -> None:
    await pilot.app.push_screen(QuitScreen("12 drop rules", "eth0", keepable=True))


def test_quit_question(snap_compare: Any) -> None:
    """80×24: 'Quit with 12 drop rules on eth0?', what quitting does and what keeping does (pinned as
    --persist does, `ironpost-tui cleanup eth0`), buttons Quit and remove (r), Keep enforcing (k), and
    Stay (esc) focused."""
    assert shoot(snap_compare, NARROW, then=_quit_question)


@pytest.mark.parametrize("theme", ["ironpost-light", "ironpost-contrast"])
def test_themes(snap_compare: Any, theme: str) -> None:
    """160×48 main view in the light theme (unfocused borders grey, visible on the light
    background), and in the high-contrast one (black, white text, blue/orange/yellow,
    severities and verdicts in bold)."""
    assert shoot(snap_compare, WIDE, theme=theme)


def test_alerts_pane_blocked(snap_compare: Any) -> None:
    """Key 2 at 80×24 with alert 1's source blocked by a rule expiring in 9m59s that dropped
    239,400 of its packets: its row's state reads 'blocked 9m' (an 80-column pane: the
    compact form; the count, the source and the detector still on screen); below the table the state
    'blocked by block-flooder, until 20:25:30 (9m59s left), 239,400 dropped, not acknowledged';
    the status line '2 active (1 blocked), 2 not acknowledged, 0 resolved'."""

    async def block(pilot: Pilot[Any]) -> None:
        app = pilot.app
        alert = app.state.alerts[1]
        until = app.source.now() + 599
        blocked = replace(alert, block=Block("block-flooder", until, 239_400))
        app.state.change_alerts((AlertChange(ChangeKind.UPDATED, blocked),))
        app.redraw()
        await pilot.pause()

    assert shoot(snap_compare, NARROW, "2", then=block)
