"""A top-talker row in full, as (label, value) pairs, most useful first (Textual-free)."""

from __future__ import annotations

from ironpost_tui.triage.values import RateWindow, SourceDetail, TopKind, TopRow, TopSnapshot
from ironpost_tui.ui import format as fmt

Fields = list[tuple[str, str]]


def _counted(items: tuple[tuple[str, int], ...]) -> str:
    return ", ".join(f"{name} {fmt.count(n)}" for name, n in items) or "—"


def top_fields(kind: TopKind, window: RateWindow, row: TopRow, detail: SourceDetail | None) -> Fields:
    rates = (
        f"{fmt.si(row.pps)} pkt/s, {fmt.si(row.bps)}bit/s, {fmt.si(row.syn_ps)} syn/s, "
        f"{fmt.si(row.drop_ps)} drop/s over {window.label}"
    )
    fields: Fields = [(kind.value.rstrip("s"), fmt.text(row.key)), ("rates", rates)]
    if detail is not None:
        fields += [("dst ports", _counted(detail.ports)), ("protocols", _counted(detail.protocols))]
    if row.first_seen:
        fields += [("first seen", fmt.clock(row.first_seen)), ("last seen", fmt.clock(row.last_seen))]
    return fields


def source_talker(top: TopSnapshot | None, source: str, window: RateWindow = RateWindow.S10) -> Fields:
    """What the top talkers counted of ``source`` (for an alert's detail, which has its address and times
    already): its rates over ``window``, its destination ports and protocols; nothing when it is not listed."""
    if top is None:
        return []
    names = {"rates": "traffic", "dst ports": "ports", "protocols": "protocols"}
    for row in top.lists(window).sources:
        if row.key == source:
            return [
                (names[k], v) for k, v in top_fields(TopKind.SOURCES, window, row, top.detail(source)) if k in names
            ]
    return []
