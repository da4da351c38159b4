"""A top-talker row in full, as (label, value) pairs, most useful first (Textual-free)."""

from __future__ import annotations

from ironpost_tui.triage.values import RateWindow, SourceDetail, TopKind, TopRow
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
