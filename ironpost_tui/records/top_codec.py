"""The top talkers read back from a recording: every field of triage/json_form.py's shape checked
(codec.BadRecord names the first one wrong), every string passed through ``text.visible``."""

from __future__ import annotations

from ironpost_tui.model import MAX_WALL_CLOCK
from ironpost_tui.records import codec
from ironpost_tui.triage.values import RateWindow, SourceDetail, TopKind, TopLists, TopRow, TopSnapshot

MAX_ROWS = 1_000  # rows per list, details per snapshot: more is no recording of ours
MAX_RATE = 1e15  # per second: beyond any link
_WINDOWS = {w.value: w for w in RateWindow}


def _row(value: object) -> TopRow:
    d = codec.obj(value, "top row")
    pps, bps, syn_ps, drop_ps = (codec.number(d, k, 0, MAX_RATE) for k in ("pps", "bps", "syn_ps", "drop_ps"))
    first = codec.number(d, "first_seen", 0, MAX_WALL_CLOCK)
    last = codec.number(d, "last_seen", 0, MAX_WALL_CLOCK)
    return TopRow(codec.string(d, "key")[:64], pps, bps, syn_ps, drop_ps, first, last)


def _counted(value: object, what: str) -> tuple[tuple[str, int], ...]:
    out = []
    for item in _bounded(value, what):
        pair = codec.array(item, what)
        if len(pair) != 2:
            raise codec.BadRecord(f"{what} must hold [name, count] pairs")
        d = {"name": pair[0], "count": pair[1]}
        out.append((codec.string(d, "name")[:32], codec.integer(d, "count")))
    return tuple(out)


def _bounded(value: object, what: str) -> list[object]:
    items = codec.array(value, what)
    if len(items) > MAX_ROWS:
        raise codec.BadRecord(f"{what} holds more than {MAX_ROWS} items")
    return items


def _detail(value: object) -> SourceDetail:
    d = codec.obj(value, "top detail")
    return SourceDetail(
        codec.string(d, "key")[:64],
        _counted(d.get("ports"), "ports"),
        _counted(d.get("protocols"), "protocols"),
        codec.number(d, "first_seen", 0, MAX_WALL_CLOCK),
        codec.number(d, "last_seen", 0, MAX_WALL_CLOCK),
    )


def _lists(value: object) -> TopLists:
    d = codec.obj(value, "top window")
    window = _WINDOWS.get(codec.integer(d, "window", 1, 3600))
    if window is None:
        raise codec.BadRecord(f"window must be one of {', '.join(str(w) for w in _WINDOWS)}")
    rows = {k: tuple(_row(r) for r in _bounded(d.get(k.value, []), k.value)) for k in TopKind}
    return TopLists(window, rows[TopKind.SOURCES], rows[TopKind.DESTINATIONS], rows[TopKind.PORTS])


def top_from_json(value: object) -> TopSnapshot:
    d = codec.obj(value, "top")
    windows = tuple(_lists(w) for w in codec.array(d.get("windows"), "windows")[: len(RateWindow)])
    details = tuple(_detail(x) for x in _bounded(d.get("details", []), "details"))
    return TopSnapshot(codec.number(d, "at", 0, MAX_WALL_CLOCK), windows, details)
