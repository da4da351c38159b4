#!/usr/bin/env python3
"""Screenshots of the console's main screens, SVG and PNG, from a recording.

The recording is played to ``--at`` seconds with a frozen clock, in UTC, without a
cursor blink, through Textual's headless ``run_test`` (no terminal needed); each
screen is exported with ``export_screenshot`` and converted to PNG with
``rsvg-convert`` (apt: librsvg2-bin) or, failing that, cairosvg.

    .venv/bin/python scripts/screenshots.py [--out screenshots] [--recording FILE]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ironpost_tui.config.settings import ConsoleSettings  # noqa: E402
from ironpost_tui.records.recording import ReplaySource  # noqa: E402
from ironpost_tui.ui.app import IronpostApp, make_app  # noqa: E402
from ironpost_tui.ui.widgets.rule_form import RuleForm  # noqa: E402

NARROW = (80, 24)
WIDE = (160, 48)
DEFAULT_RECORDING = ROOT / "tests" / "recordings" / "lab.ipr.gz"
TOP_RECORDING = ROOT / "tests" / "recordings" / "top.ipr.gz"  # top talkers (tests/support/top_recording.py)
TOP_AT = 12.0
SETTINGS = ConsoleSettings(refresh_secs=60.0)  # no timer redraws: the script redraws when it wants

Then = Callable[[IronpostApp], Awaitable[None]]


async def _rule_form(app: IronpostApp) -> None:
    rule = next((s.rule for s in app.state.rules if s.rule.id == "doc-net"), None)
    if rule is None and app.state.rules:
        rule = app.state.rules[0].rule
    await app.push_screen(RuleForm(rule, app.source.now, cursor_blink=False))


async def _export(app: IronpostApp) -> None:
    """The dialog's default path has today's date: show a fixed one so the picture stays the same."""
    from textual.widgets import Input

    app.screen.query_one(Input).value = "/home/op/ironpost-events-20270115-080006.csv"  # whole, as the dialog has it


@dataclass(frozen=True)
class Shot:
    name: str
    size: tuple[int, int]
    keys: tuple[str, ...] = ()
    then: Then | None = None
    what: str = ""
    recording: Path | None = None  # None: --recording, played to --at
    at: float | None = None


SHOTS = (
    Shot("main-160x48", WIDE, what="the main view: traffic, alerts, events, rules"),
    Shot("main-80x24", NARROW, what="the main view over SSH: one pane at a time"),
    Shot("rules-80x24", NARROW, ("4",), what="the rules pane focused"),
    Shot("alerts-80x24", NARROW, ("2",), what="the alerts pane"),
    Shot("events-80x24", NARROW, ("3",), what="the events pane over SSH"),
    Shot("alert-detail-80x24", NARROW, ("2", "enter"), what="an alert's detail: its fields, its source's events"),
    Shot("events-160x48", WIDE, ("3", "z"), what="the events pane zoomed"),
    Shot("help-160x48", WIDE, ("question_mark",), what="every key"),
    Shot("rule-form-160x48", WIDE, then=_rule_form, what="the rule form"),
    Shot("chart-160x48", WIDE, ("1", "down", "g"), what="the chart of TCP"),
    Shot("export-80x24", NARROW, ("3", "E"), _export, what="the export dialog"),
    Shot("top-80x24", NARROW, ("5",), what="the top talkers", recording=TOP_RECORDING, at=TOP_AT),
    Shot("top-160x48", WIDE, ("5", "z"), what="the top talkers zoomed", recording=TOP_RECORDING, at=TOP_AT),
)


class FrozenClock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


async def _play_to(app: IronpostApp, clock: FrozenClock, at: float, pause: Callable[[], Awaitable[Any]]) -> None:
    """Move the frozen clock in 1 s steps, waiting each time until the app has played it."""
    while clock.t < at:
        clock.t = min(at, clock.t + 1.0)
        reached = asyncio.Event()
        target = clock.t

        def advanced(now: float, target: float = target, reached: asyncio.Event = reached) -> None:
            if now >= target:
                reached.set()

        if app.state.at < target:
            app.advanced_signal.subscribe(app, advanced)
            try:
                await asyncio.wait_for(reached.wait(), 10)
            finally:
                app.advanced_signal.unsubscribe(app)
    await pause()
    app.redraw()
    await pause()


def shoot(shot: Shot, recording: Path, at: float, theme: str | None) -> str:
    """The SVG of one screen."""
    clock = FrozenClock()
    app = make_app(SETTINGS, ReplaySource(recording, clock=clock), theme=theme, cursor_blink=False)
    svg = ""

    async def run() -> None:
        nonlocal svg
        async with app.run_test(size=shot.size) as pilot:
            await _play_to(app, clock, at, pilot.pause)
            for key in shot.keys:
                await pilot.press(key)
            if shot.then is not None:
                await shot.then(app)
            await pilot.pause()
            await pilot.wait_for_scheduled_animations()
            svg = app.export_screenshot(title=f"ironpost-tui: {shot.what}")

    asyncio.run(run())
    return svg


def to_png(svg: Path, png: Path) -> None:
    """SVG -> PNG with rsvg-convert, else cairosvg; raises RuntimeError if neither is there."""
    if shutil.which("rsvg-convert"):
        subprocess.run(["rsvg-convert", "--format=png", "--output", str(png), str(svg)], check=True)
        return
    try:
        import cairosvg  # type: ignore[import-not-found]
    except ImportError:
        raise RuntimeError("no SVG converter: apt-get install librsvg2-bin (or pip install cairosvg)") from None
    cairosvg.svg2png(url=str(svg), write_to=str(png))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    p.add_argument("--recording", type=Path, default=DEFAULT_RECORDING, help="a console recording (.ipr.gz)")
    p.add_argument("--out", type=Path, default=ROOT / "screenshots", help="directory to write into")
    p.add_argument("--at", type=float, default=6.0, help="seconds into the recording (default 6)")
    p.add_argument("--theme", default=None, help="console theme (default ironpost-dark)")
    p.add_argument("--no-png", action="store_true", help="SVG only")
    p.add_argument("--only", nargs="*", default=None, help="names of the shots to take (default all)")
    args = p.parse_args(argv)

    os.environ["TZ"] = "UTC"  # the tables show local time: make it UTC
    time.tzset()
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for shot in SHOTS:
        if args.only and shot.name not in args.only:
            continue
        svg = args.out / f"{shot.name}.svg"
        recording, at = shot.recording or args.recording, shot.at if shot.at is not None else args.at
        svg.write_text(shoot(shot, recording, at, args.theme), encoding="utf-8")
        written.append(svg)
        if not args.no_png:
            png = svg.with_suffix(".png")
            try:
                to_png(svg, png)
            except (RuntimeError, subprocess.CalledProcessError) as exc:
                print(f"screenshots: {exc}", file=sys.stderr)
                return 1
            written.append(png)
    for path in written:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
