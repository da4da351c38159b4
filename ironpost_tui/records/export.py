"""The console's events, alerts and top talkers written to CSV or JSON (Textual-free).

Fields are the tables' columns, in their order; times are ISO 8601 in UTC
(the tables show local HH:MM:SS, a file needs the date and the zone).  Alerts add
``dst_ip``, ``dst_port`` and ``targets`` (as the JSON log has them): the address attacked most,
the port that took at least half its probes (null when none did or none is known), and every
destination as ``ADDRESS:PORT`` (``ADDRESS:*`` for many ports), a JSON array (in CSV, separated by
spaces); and the live fields
the row shows, as the JSON log has them: ``rate`` (per second over the window),
``blocked_until``, ``time_left`` (seconds at the time of the export), ``dropped``
(the block rule's drops) and ``block_rule``.
"""

from __future__ import annotations

import csv
import io
import json
import time
from collections.abc import Collection, Iterable, Sequence
from datetime import datetime, timezone
from pathlib import Path

from ironpost_tui import files
from ironpost_tui.detectors import Alert, AlertState
from ironpost_tui.detectors.alerts import live_fields
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import PacketEvent
from ironpost_tui.triage.values import TopRow

FORMATS = ("csv", "json")
KINDS = ("events", "alerts", "top")
EVENT_FIELDS = ("time", "source", "sport", "destination", "dport", "proto", "verdict", "rule", "flags", "len")
ALERT_FIELDS = (
    "#", "severity", "source", "detector", "count", "state", "last", "peak", "first", "target", "summary",
    "dst_ip", "dst_port", "targets", "rate", "blocked_until", "time_left", "dropped", "block_rule", "resolved",
)  # fmt: skip

TOP_FIELDS = ("list", "window", "key", "pps", "bps", "syn_ps", "drop_ps", "first", "last")

_PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}
_TCP_FLAGS = "FSRPAUEC"  # FIN SYN RST PSH ACK URG ECE CWR, bit 0 first

Row = dict[str, str | int | float | list[str] | None]


class ExportError(IronpostError):
    title = "Export"


def iso_utc(ts: float) -> str:
    """Wall-clock seconds as ``2027-01-15T08:00:06.123Z``."""
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def event_rows(events: Iterable[PacketEvent]) -> list[Row]:
    rows: list[Row] = []
    for e in events:
        icmp = e.protocol in (1, 58)
        flags = "".join(c for bit, c in enumerate(_TCP_FLAGS) if e.tcp_flags & (1 << bit)) if e.protocol == 6 else ""
        rows.append(
            {
                "time": iso_utc(e.ts),
                "source": str(e.src),
                "sport": None if icmp else e.src_port,
                "destination": str(e.dst),
                "dport": None if icmp else e.dst_port,
                "proto": _PROTOCOL_NAMES.get(e.protocol, str(e.protocol)),
                "verdict": e.verdict.value,
                "rule": e.rule_id,
                "flags": flags,
                "len": e.length,
            }
        )
    return rows


def alert_state(a: Alert, acknowledged: bool) -> str:
    """resolved, blocked, acked (an open alert the operator acknowledged) or ACTIVE."""
    if a.state is not AlertState.ACTIVE:
        return str(a.state)
    return "acked" if acknowledged else str(AlertState.ACTIVE)


def alert_rows(alerts: Iterable[Alert], acknowledged: Collection[int] = (), now: float | None = None) -> list[Row]:
    """``now``: when ``time_left`` is counted from (default: now)."""
    at = time.time() if now is None else now
    rows: list[Row] = []
    for a in alerts:
        state = alert_state(a, a.id in acknowledged)
        last = a.last_seen  # when the source last sent (until session 25 a resolved alert's resolution)
        live = live_fields(a, at)
        rows.append(
            {
                "#": a.id,
                "severity": a.severity.upper(),
                "source": a.source,
                "detector": a.detector,
                "count": a.count,
                "state": state,
                "last": iso_utc(last),
                "peak": a.peak,
                "first": iso_utc(a.first_seen),
                "target": a.target_text,
                "summary": a.summary,
                "dst_ip": a.dst_ip,
                "dst_port": a.dst_port,
                "targets": [str(t) for t in a.targets],
                "rate": live["rate"],
                "blocked_until": None if a.blocked_until is None else iso_utc(a.blocked_until),
                "time_left": live["time_left"],
                "dropped": a.dropped,
                "block_rule": live["block_rule"],
                "resolved": None if a.resolved_at is None else iso_utc(a.resolved_at),
            }
        )
    return rows


def top_rows(kind: str, window: int, rows: Iterable[TopRow]) -> list[Row]:
    """The Top pane's rows as shown (list, window in seconds, rates per second, bits/s for bps)."""
    return [
        {
            "list": kind,
            "window": window,
            "key": r.key,
            "pps": round(r.pps, 1),
            "bps": round(r.bps),
            "syn_ps": round(r.syn_ps, 1),
            "drop_ps": round(r.drop_ps, 1),
            "first": iso_utc(r.first_seen) if r.first_seen else None,
            "last": iso_utc(r.last_seen) if r.last_seen else None,
        }
        for r in rows
    ]


def default_path(kind: str, fmt: str, now: float | None = None, directory: Path | None = None) -> Path:
    """``/CWD/ironpost-events-20270115-080006.csv``: the kind, the local time, the format, in the current directory
    named whole (a dialog showed a bare file name until session 25: where it went was a guess)."""
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(time.time() if now is None else now))
    return (directory if directory is not None else here()) / f"ironpost-{kind}-{stamp}.{fmt}"


def here() -> Path:
    """The current directory, whole; ``.`` if it cannot be named (removed since the start)."""
    try:
        return Path.cwd()
    except OSError:
        return Path(".")


def format_of(path: Path, default: str = "csv") -> str:
    suffix = path.suffix.lower().lstrip(".")
    return suffix if suffix in FORMATS else default


def write_rows(path: Path, rows: Sequence[Row], fields: Sequence[str], fmt: str) -> Path:
    """Write ``rows`` to ``path`` as CSV (header line, empty cells for none) or JSON (an array
    of objects, null for none).  Raises ExportError with what went wrong.

    Written with ironpost's one writer (``ironpost_tui.files``): a new file, mode 0600, renamed
    over ``path``, so a failed write leaves no half file and a link planted at ``path`` or at any
    temporary name is never written through.  Under sudo the file is the invoking user's."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}: csv or json")
    path = path.expanduser()
    out = io.StringIO(newline="")
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=list(fields), extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: " ".join(v) if isinstance(v, list) else v for k, v in row.items()} for row in rows)
    else:
        json.dump([{f: row.get(f) for f in fields} for row in rows], out, indent=1, ensure_ascii=False)
        out.write("\n")
    try:
        files.write_atomic(path, out.getvalue().encode("utf-8"), owner=files.invoking_user())
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path


def export_events(path: Path, events: Iterable[PacketEvent], fmt: str) -> int:
    rows = event_rows(events)
    write_rows(path, rows, EVENT_FIELDS, fmt)
    return len(rows)


def export_alerts(
    path: Path, alerts: Iterable[Alert], fmt: str, acknowledged: Collection[int] = (), now: float | None = None
) -> int:
    rows = alert_rows(alerts, acknowledged, now)
    write_rows(path, rows, ALERT_FIELDS, fmt)
    return len(rows)


__all__ = [
    "ALERT_FIELDS",
    "EVENT_FIELDS",
    "FORMATS",
    "ExportError",
    "alert_rows",
    "alert_state",
    "default_path",
    "event_rows",
    "export_alerts",
    "export_events",
    "format_of",
    "iso_utc",
    "write_rows",
]
