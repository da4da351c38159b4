"""What the console draws, cell by cell, with the colours a terminal would show (no tests here).

The screen is rendered through Textual's own compositor (as ``export_screenshot`` does), so the
colours are those the theme's variables and the widgets' CSS resolve to, alpha and tints included.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.color import ColorTriplet
from textual.app import App
from textual.geometry import Region
from textual.widget import Widget

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Cell:
    char: str
    fg: RGB
    bg: RGB


def _rgb(triplet: ColorTriplet) -> RGB:
    return (triplet.red, triplet.green, triplet.blue)


def screen_cells(app: App[object]) -> list[list[Cell]]:
    """Every cell of the current screen, row by row, with reverse video resolved."""
    update = app.screen._compositor.render_full_update()  # the compositor's full frame, as screenshots take it
    rows: list[list[Cell]] = []
    for line in update.strips:
        row: list[Cell] = []
        for segment in (seg for strip in line for seg in strip):
            if segment.control:
                continue
            style = segment.style
            if style is None or style.bgcolor is None or (style.color is None and segment.text.strip()):
                raise AssertionError(f"a cell without a resolved colour: {segment!r}")
            bg = _rgb(style.bgcolor.get_truecolor())
            fg = bg if style.color is None else _rgb(style.color.get_truecolor())  # blanks: no ink
            if style.reverse:
                fg, bg = bg, fg
            row.extend(Cell(ch, fg, bg) for ch in segment.text)
        rows.append(row)
    return rows


def row_text(row: list[Cell]) -> str:
    return "".join(c.char for c in row)


def region_of(widget: Widget) -> Region:
    return widget.region


def find_cells(cells: list[list[Cell]], region: Region, text: str, *, in_row_with: str | None = None) -> list[Cell]:
    """The cells of the first ``text`` inside ``region`` (in the first row there that also
    holds ``in_row_with``, when given); AssertionError naming what is missing."""
    for y in range(region.y, region.y + region.height):
        line = row_text(cells[y])[region.x : region.x + region.width]
        if in_row_with is not None and in_row_with not in line:
            continue
        x = line.find(text)
        if x >= 0:
            return cells[y][region.x + x : region.x + x + len(text)]
    where = f" in a row with {in_row_with!r}" if in_row_with else ""
    raise AssertionError(f"{text!r}{where} not drawn in {region}")


def luminance(rgb: RGB) -> float:
    """WCAG 2 relative luminance."""

    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.04045 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(fg: RGB, bg: RGB) -> float:
    """WCAG 2 contrast ratio, 1 to 21."""
    light, dark = sorted((luminance(fg), luminance(bg)), reverse=True)
    return (light + 0.05) / (dark + 0.05)
