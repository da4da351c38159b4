"""How log records look on stdout: the text lines people read, or one JSON
object per line for log shippers (``--log-format json``).

Every JSON line has ``ts`` (RFC 3339, UTC), ``level``, ``event`` and
``message``.  What the record carries decides the rest:

* ``extra={"alert": Alert, "change": kind}`` (alert_lines.log_alert): event
  ``alert`` with ``change``, ``detector``, ``severity``, ``src_ip`` (the
  source, null when it is not an address: "many sources"), ``dst_ip`` (the
  address attacked most; null when none is known), ``dst_port`` (the port that
  took at least half its probes; null when none did or none is known),
  ``targets`` (every destination attacked, most first, as ``ADDRESS:PORT``,
  ``ADDRESS:*`` for many ports, ``[IPv6]:PORT``), ``source``, ``target``, ``count``, ``peak``,
  and the live fields a console row shows (detectors.alerts.live_fields):
  ``rate`` (per second over the window), ``last_seen`` (RFC 3339), ``state``
  (ACTIVE, blocked, resolved), ``blocked_until`` (RFC 3339 or null),
  ``time_left`` (seconds, null when not blocked or no expiry), ``dropped``
  (the block rule's drops), ``block_rule``.
* ``extra={"audit": dict}`` (audit.AuditLog): the audit entry itself (event
  ``rule_change``), as the audit file has it, its time as ``ts``.
* ``extra={"event": name, ...}``: that event name, and every other extra
  key as a field (ready, stopped, reload, panic, metrics, ...).
* anything else: event ``log``.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import sys
import time
from typing import Any

from ironpost_tui.detectors.alerts import live_fields
from ironpost_tui.text import json_safe, visible

TEXT_FORMAT = "%(asctime)s %(levelname)s %(message)s"
FORMATS = ("text", "json")

# What every LogRecord has: anything beyond it came in through ``extra``.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime", "taskName"}


def rfc3339(ts: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1000):03d}Z"


def _address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": rfc3339(record.created),
            "level": record.levelname.lower(),
            "event": "log",
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD}
        alert = extra.pop("alert", None)
        audit = extra.pop("audit", None)
        if alert is not None:
            out.update(
                event="alert",
                change=extra.pop("change", None),
                id=alert.id,
                detector=alert.detector,
                severity=alert.severity,
                src_ip=_address(alert.source),
                dst_ip=alert.dst_ip,
                dst_port=alert.dst_port,
                targets=[str(t) for t in alert.targets],
                source=alert.source,
                target=alert.target,
                count=alert.count,
                peak=alert.peak,
                window_secs=alert.window_secs,
                summary=alert.summary,
            )
            live = live_fields(alert, record.created)
            for key in ("last_seen", "blocked_until"):
                at = live[key]
                live[key] = rfc3339(at) if isinstance(at, float | int) else None
            out.update(live)
        if isinstance(audit, dict):
            entry = dict(audit)
            ts = entry.pop("ts", None)
            out.update(entry)
            if isinstance(ts, (int, float)):
                out["ts"] = rfc3339(float(ts))
        out.update(extra)
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:  # a record from the console's engine process: its traceback as text
            out["exception"] = record.exc_text
        # Letters of any script stay readable (ensure_ascii=False), but a control, format or
        # bidi character never reaches a terminal or a log viewer raw: json_safe writes it \uXXXX.
        return json_safe(json.dumps(out, default=str, ensure_ascii=False, separators=(",", ":")))


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT lines with control, format and bidi characters escaped visibly (ESC as \\x1b).

    Newlines are kept: a message of several lines (every error of a configuration) and a
    traceback read as they always did.
    """

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - logging's name
        return visible(super().formatMessage(record), keep="\n")

    def formatException(self, ei: Any) -> str:  # noqa: N802 - logging's name
        return visible(super().formatException(ei), keep="\n")


def formatter(name: str) -> logging.Formatter:
    if name == "json":
        return JsonFormatter()
    if name == "text":
        return TextFormatter()
    raise ValueError(f"unknown log format {name!r}: use one of {', '.join(FORMATS)}")


def configure(name: str) -> None:
    """Use format ``name`` for every handler of the root logger (stdout, as the CLI sets it up)."""
    fmt = formatter(name)
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.INFO, stream=sys.stdout)
    for handler in root.handlers:
        handler.setFormatter(fmt)
