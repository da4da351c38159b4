"""The top talkers as plain JSON: what ``GET /top`` answers, what recordings and exports hold.

Rates are rounded to 0.1 (bits/s to whole bits); times are wall-clock seconds.  The reading side
(records/codec.py) checks every field of a file against this shape.
"""

from __future__ import annotations

from typing import Any

from ironpost_tui.triage.values import SourceDetail, TopKind, TopLists, TopRow, TopSnapshot

Json = dict[str, Any]


def row_to_json(row: TopRow) -> Json:
    return {
        "key": row.key,
        "pps": round(row.pps, 1),
        "bps": round(row.bps),
        "syn_ps": round(row.syn_ps, 1),
        "drop_ps": round(row.drop_ps, 1),
        "first_seen": round(row.first_seen, 3),
        "last_seen": round(row.last_seen, 3),
    }


def detail_to_json(d: SourceDetail) -> Json:
    return {
        "key": d.key,
        "ports": [[name, n] for name, n in d.ports],
        "protocols": [[name, n] for name, n in d.protocols],
        "first_seen": round(d.first_seen, 3),
        "last_seen": round(d.last_seen, 3),
    }


def lists_to_json(lists: TopLists) -> Json:
    out: Json = {"window": lists.window.value}
    for kind in TopKind:
        out[kind.value] = [row_to_json(r) for r in lists.rows(kind)]
    return out


def top_to_json(top: TopSnapshot) -> Json:
    """The whole snapshot: ``{"at": ..., "windows": [{"window": 1, "sources": [...], ...}, ...],
    "details": [...]}``, each list ranked by packets/s."""
    return {
        "at": round(top.at, 3),
        "windows": [lists_to_json(w) for w in top.windows],
        "details": [detail_to_json(d) for d in top.details],
    }
