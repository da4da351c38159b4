"""Snapshots of the Top pane (key 5) at 80×24 (SSH) and 160×48, fed by the top-talkers recording
(tests/support/top_recording.py) played to 12 s with a frozen clock, in UTC.

Review the SVG diff before `--snapshot-update`; each test says what must be visible.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from support.ui import TOP_RECORDING, play_to, replay_app
from textual.pilot import Pilot

SIZES = pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
AT = 12.0


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


def shoot(snap_compare: Any, size: tuple[int, int], *keys: str) -> bool:
    app, _source, clock = replay_app(recording=TOP_RECORDING)

    async def run_before(pilot: Pilot[Any]) -> None:
        await play_to(pilot, clock, AT)
        for key in keys:
            await pilot.press(key)
        await pilot.pause()

    return bool(snap_compare(app, terminal_size=size, run_before=run_before))


@SIZES
def test_top_pane(snap_compare: Any, size: tuple[int, int]) -> None:
    """Key 5: '5 Top' current in the tabs; the sources over 10 s ranked by pkt/s: x.y.250.5 (3.2k),
    .250.4 (1.6k), .250.3 (800), the IPv6 host 2001:db8:…::99 (600), .250.2 (400, as many drop/s: a
    rule drops it), the VLAN-tagged x.y.251.7 (300), .250.1 (200, as many syn/s); columns source,
    pkt/s, bit/s, syn/s, drop/s, last, first; below the table the top row in full (source, rates,
    dst ports udp/9, protocols udp); the status 'sources over 10s (w) · 8 shown (v: next list)'.
    At 160×48 the pane sits beside the rules, under the events."""
    assert shoot(snap_compare, size, "5")


@SIZES
def test_top_pane_ports_over_1s(snap_compare: Any, size: tuple[int, int]) -> None:
    """5, v, v, w, w: the destination ports over 1 s: udp/9 first, then tcp/443, udp/53, udp/123,
    tcp/22; the status says 'ports over 1s'."""
    assert shoot(snap_compare, size, "5", "v", "v", "w", "w")


def test_top_detail(snap_compare: Any) -> None:
    """5 then enter at 80×24: the top source in full in a dialog: source, rates over 10s, dst ports
    'udp/9 …', protocols 'udp …', first and last seen."""
    assert shoot(snap_compare, (80, 24), "5", "enter")
