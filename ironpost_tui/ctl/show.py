"""What the command line prints: a line for people after a change, tables of rules and alerts, or
JSON for scripts.  Everything the controller sends is shown with control and format characters
escaped (text) or written as ``\\uXXXX`` (JSON): an id or a comment cannot rewrite the terminal."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any

from ironpost_tui.config.durations import format_duration
from ironpost_tui.text import cells, json_safe, visible

PROTOCOL_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6"}


def as_json(value: Any) -> str:
    return json_safe(json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str))


def blocked(result: dict[str, Any], now: float | None = None) -> str:
    rule = result.get("rule") or {}
    verb = "blocked" if result.get("change") == "add" else "blocked again (rule updated)"
    forced = " (forced past the anti-lockout protection)" if result.get("forced") else ""
    return visible(f"{verb}: {_addr(rule.get('src_ip'))} as rule '{rule.get('id')}', {_expiry(rule, now)}{forced}")


def unblocked(result: dict[str, Any]) -> str:
    rules = result.get("deleted") or []
    names = ", ".join(f"'{r.get('id')}' ({_match(r)})" for r in rules)
    return visible(f"unblocked: deleted rule{'s' if len(rules) != 1 else ''} {names}")


def rules_table(rules: Sequence[dict[str, Any]], now: float | None = None) -> str:
    if not rules:
        return "no rules"
    rows = [
        [
            str(r.get("id")),
            str(r.get("action")),
            _match(r),
            str(r.get("map")),
            str(r.get("hits")),
            _expiry(r, now, short=True),
            ("auto " if r.get("auto") else "") + str(r.get("description") or ""),
        ]
        for r in rules
    ]
    return _table(["ID", "ACTION", "MATCH", "MAP", "HITS", "EXPIRES", "DESCRIPTION"], rows)


def alerts_table(alerts: Sequence[dict[str, Any]]) -> str:
    if not alerts:
        return "no alerts"
    rows = [
        [
            str(a.get("id")),
            str(a.get("state")),
            str(a.get("severity")),
            str(a.get("detector")),
            str(a.get("source")),
            _targets(a),
            str(a.get("count")),
            str(a.get("peak")),
            _clock(a.get("last_seen")),
            str(a.get("summary")),
        ]
        for a in alerts
    ]
    return _table(["ID", "STATE", "SEVERITY", "DETECTOR", "SOURCE", "TARGET", "COUNT", "PEAK", "LAST SEEN",
                   "SUMMARY"], rows)  # fmt: skip


def _targets(a: dict[str, Any]) -> str:
    """The destinations attacked (``198.18.0.1:22, 198.18.0.5:*``), or the target when none is known."""
    targets = a.get("targets")
    if isinstance(targets, list) and targets:
        return ", ".join(map(str, targets))
    return str(a.get("target"))


def _table(head: list[str], rows: list[list[str]]) -> str:
    """Columns padded to the terminal cells their texts take (a wide character takes two: padded by len(), a
    description in Chinese pushed the rows after it out of line)."""
    texts = [head, *[[visible(c).replace("\t", "\\x09") for c in row] for row in rows]]  # a tab: 1 to 8 cells
    widths = [max(cells(row[i]) for row in texts) for i in range(len(head))]
    return "\n".join(
        "  ".join(c + " " * (w - cells(c)) for c, w in zip(row, widths, strict=True)).rstrip() for row in texts
    )


def _addr(net: object) -> str:
    text = str(net)
    return text.removesuffix("/32") if "." in text else text.removesuffix("/128")


def _match(rule: dict[str, Any]) -> str:
    parts = []
    if rule.get("src_ip") is not None:
        parts.append(f"src {_addr(rule['src_ip'])}")
    if rule.get("dst_ip") is not None:
        parts.append(f"dst {_addr(rule['dst_ip'])}")
    if rule.get("protocol") is not None:
        proto = rule["protocol"]
        parts.append(f"proto {PROTOCOL_NAMES.get(proto, proto)}")
    if rule.get("dst_port") is not None:
        parts.append(f"port {rule['dst_port']}")
    return " ".join(parts) or "any"


def _expiry(rule: dict[str, Any], now: float | None, short: bool = False) -> str:
    at = rule.get("expires_at")
    if not isinstance(at, (int, float)) or isinstance(at, bool):
        return "-" if short else "until unblocked"
    left = format_duration(max(0.0, at - (time.time() if now is None else now)))
    return f"in {left}" if short else f"until {_clock(at)} (in {left})"


def _clock(ts: object) -> str:
    if not isinstance(ts, (int, float)) or isinstance(ts, bool):
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ts))
