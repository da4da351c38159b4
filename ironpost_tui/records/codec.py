"""Plain-JSON forms of the engine's values, for recordings and exports.

The ``*_from_json`` side reads what a file says, so it trusts nothing: every
field is checked for its type and range (BadRecord names the first one wrong),
and every string is passed through ``text.visible``, so a rule id or an alert
field carrying ESC or a bidi override is shown escaped, never obeyed.
"""

from __future__ import annotations

import ipaddress
import math
from typing import Any, TypeVar

from ironpost_tui.detectors import Alert, AlertChange, Block, ChangeKind, Detector
from ironpost_tui.detectors.targets import Target
from ironpost_tui.model import (
    MAX_WALL_CLOCK,
    Action,
    FilterRule,
    PacketEvent,
    ProtoCounters,
    ProtoRates,
    RuleStatus,
    StatsSample,
    Verdict,
)
from ironpost_tui.text import visible

Json = dict[str, Any]
E = TypeVar("E")
MAX_COUNT = 2**64  # a kernel counter
SEVERITIES = ("low", "medium", "high", "critical")  # what detectors raise, and the console colours
MAX_TARGETS = 16  # addresses an alert names (the detectors name at most 4)


class BadRecord(ValueError):
    """A value of a recording that is not what the format says: which field, and why."""


def obj(value: object, what: str) -> Json:
    if not isinstance(value, dict):
        raise BadRecord(f"{what} must be a JSON object, got {_kind(value)}")
    return value


def array(value: object, what: str) -> list[Any]:
    if not isinstance(value, list):
        raise BadRecord(f"{what} must be a JSON array, got {_kind(value)}")
    return value


def string(d: Json, key: str, default: str | None = None) -> str:
    value = d.get(key, default)
    if not isinstance(value, str):
        raise BadRecord(f"{key} must be a string, got {_kind(value)}")
    return visible(value)


def integer(d: Json, key: str, lo: int = 0, hi: int = MAX_COUNT, default: int | None = None) -> int:
    value = d.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRecord(f"{key} must be an integer from {lo} to {hi}, got {_kind(value)}")
    return value


def number(d: Json, key: str, lo: float = -math.inf, hi: float = math.inf) -> float:
    value = d.get(key)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not lo <= value <= hi:
        raise BadRecord(f"{key} must be a number from {lo:g} to {hi:g}, got {_kind(value)}")
    if not math.isfinite(value):
        raise BadRecord(f"{key} must be a finite number")
    return float(value)


def optional_number(d: Json, key: str, lo: float = -math.inf, hi: float = math.inf) -> float | None:
    return None if d.get(key) is None else number(d, key, lo, hi)


def boolean(d: Json, key: str, default: bool | None = None) -> bool:
    value = d.get(key, default)
    if not isinstance(value, bool):
        raise BadRecord(f"{key} must be true or false, got {_kind(value)}")
    return value


def member(d: Json, key: str, enum: type[E], default: str | None = None) -> E:
    value = d.get(key, default)
    try:
        return enum(value)  # type: ignore[call-arg]
    except (ValueError, TypeError):
        raise BadRecord(f"{key} {visible(repr(value)[:40])} is not one of the known values") from None


def _severity(d: Json) -> str:
    value = d.get("severity")
    if value not in SEVERITIES:
        raise BadRecord(f"severity must be one of {', '.join(SEVERITIES)}")
    return str(value)


def _kind(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, (bool, int, float)):
        return f"{type(value).__name__} {str(value)[:30]}"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def _network(d: Json, key: str) -> Any:
    try:
        return ipaddress.ip_network(string(d, key)) if d.get(key) is not None else None
    except ValueError:
        raise BadRecord(f"{key} is not an address or prefix") from None


def _address(d: Json, key: str) -> Any:
    try:
        return ipaddress.ip_address(string(d, key))
    except ValueError:
        raise BadRecord(f"{key} is not an IP address") from None


def _numbers(value: object, what: str, n: int) -> list[float]:
    items = array(value, what)
    if len(items) != n:
        raise BadRecord(f"{what} must hold {n} numbers")
    return [number({what: v}, what, 0) for v in items]


def rule_to_json(rule: FilterRule) -> Json:
    out: Json = {"id": rule.id, "action": rule.action.value}
    for name in ("src_ip", "dst_ip"):
        value = getattr(rule, name)
        if value is not None:
            out[name] = str(value)
    for name in ("dst_port", "protocol", "expires_at"):
        value = getattr(rule, name)
        if value is not None:
            out[name] = value
    if rule.description:
        out["description"] = rule.description
    if rule.auto:
        out["auto"] = True
    if rule.external:
        out["external"] = True
    return out


def rule_from_json(value: object) -> FilterRule:
    d = obj(value, "rule")
    port = d.get("dst_port")
    proto = d.get("protocol")
    return FilterRule(
        id=string(d, "id"),
        action=member(d, "action", Action, "drop"),
        src_ip=_network(d, "src_ip"),
        dst_ip=_network(d, "dst_ip"),
        dst_port=None if port is None else integer(d, "dst_port", 0, 65535),
        protocol=None if proto is None else integer(d, "protocol", 0, 255),
        description=string(d, "description", ""),
        expires_at=optional_number(d, "expires_at", 0, MAX_WALL_CLOCK),
        auto=boolean(d, "auto", False),
        external=boolean(d, "external", False),
    )


def status_to_json(s: RuleStatus) -> Json:
    return {"rule": rule_to_json(s.rule), "map": s.map_name, "hits": s.hits, "last_hit": s.last_hit}


def status_from_json(value: object) -> RuleStatus:
    d = obj(value, "rule status")
    return RuleStatus(
        rule_from_json(d.get("rule")),
        string(d, "map"),
        integer(d, "hits"),
        optional_number(d, "last_hit", 0, MAX_WALL_CLOCK),
    )


def sample_to_json(s: StatsSample) -> Json:
    return {
        "at": s.at,
        "totals": {k: [v.packets, v.bytes, v.drops] for k, v in s.totals.items()},
        "rates": {k: [v.pps, v.bps, v.drops_ps] for k, v in s.rates.items()},
        "events_delivered": s.events_delivered,
        "events_lost": dict(s.events_lost),
    }


def sample_from_json(value: object) -> StatsSample:
    d = obj(value, "sample")
    totals = obj(d.get("totals"), "totals")
    rates = obj(d.get("rates"), "rates")
    lost = obj(d.get("events_lost"), "events_lost")
    return StatsSample(
        at=number(d, "at"),
        totals={visible(k): ProtoCounters(*(int(x) for x in _numbers(v, "totals", 3))) for k, v in totals.items()},
        rates={visible(k): ProtoRates(*_numbers(v, "rates", 3)) for k, v in rates.items()},
        events_delivered=integer(d, "events_delivered"),
        events_lost={visible(k): integer(lost, k) for k in lost},
    )


def event_to_json(e: PacketEvent) -> Json:
    ts, family, src, dst, sport, dport, proto, flags, length, verdict, rule_id = e  # an engine's event: one decode
    return {
        "ts": ts,
        "family": family,
        "src": str(src),
        "dst": str(dst),
        "sport": sport,
        "dport": dport,
        "proto": proto,
        "flags": flags,
        "len": length,
        "verdict": verdict.value,
        "rule": rule_id,
    }


def event_from_json(value: object) -> PacketEvent:
    d = obj(value, "event")
    rule = d.get("rule")
    return PacketEvent(
        ts=number(d, "ts", 0, MAX_WALL_CLOCK),
        family=integer(d, "family", 4, 6),
        src=_address(d, "src"),
        dst=_address(d, "dst"),
        src_port=integer(d, "sport", 0, 65535),
        dst_port=integer(d, "dport", 0, 65535),
        protocol=integer(d, "proto", 0, 255),
        tcp_flags=integer(d, "flags", 0, 255),
        length=integer(d, "len", 0, 2**32),
        verdict=member(d, "verdict", Verdict),
        rule_id=None if rule is None else string(d, "rule"),
    )


def alert_to_json(a: Alert) -> Json:
    return {
        "id": a.id,
        "detector": a.detector,
        "severity": a.severity,
        "source": a.source,
        "target": a.target,
        "count": a.count,
        "peak": a.peak,
        "window_secs": a.window_secs,
        "first_seen": a.first_seen,
        "last_seen": a.last_seen,
        "summary": a.summary,
        "resolved_at": a.resolved_at,
        "targets": [str(t) for t in a.targets],
        "block": None if a.block is None else block_to_json(a.block),
    }


def block_to_json(b: Block) -> Json:
    return {"rule_id": b.rule_id, "until": b.until, "dropped": b.dropped}


def _block(d: Json) -> Block | None:
    """An alert's block; absent in recordings made before alerts had one."""
    value = d.get("block")
    if value is None:
        return None
    b = obj(value, "block")
    return Block(string(b, "rule_id"), optional_number(b, "until", 0, MAX_WALL_CLOCK), integer(b, "dropped"))


def alert_from_json(value: object) -> Alert:
    d = obj(value, "alert")
    return Alert(
        id=integer(d, "id"),
        detector=member(d, "detector", Detector),
        severity=_severity(d),
        source=string(d, "source"),
        target=string(d, "target"),
        count=integer(d, "count"),
        peak=integer(d, "peak"),
        window_secs=number(d, "window_secs", 0),
        first_seen=number(d, "first_seen", 0, MAX_WALL_CLOCK),
        last_seen=number(d, "last_seen", 0, MAX_WALL_CLOCK),
        summary=string(d, "summary"),
        resolved_at=optional_number(d, "resolved_at", 0, MAX_WALL_CLOCK),
        targets=_targets(d),
        block=_block(d),
    )


def _targets(d: Json) -> tuple[Target, ...]:
    """An alert's destinations attacked (``ADDRESS``, ``ADDRESS:PORT``, ``ADDRESS:*``, IPv6 in
    brackets before a port; ports absent in recordings made before alerts had them); absent in
    recordings made before alerts had targets."""
    items = array(d.get("targets", []), "targets")
    if len(items) > MAX_TARGETS:
        raise BadRecord(f"targets must hold at most {MAX_TARGETS} addresses")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise BadRecord("targets must be strings")
        try:
            out.append(Target.parse(item))
        except ValueError as exc:
            raise BadRecord(f"targets: {exc}") from None
    return tuple(out)


def change_to_json(c: AlertChange) -> Json:
    return {"kind": c.kind, "alert": alert_to_json(c.alert)}


def change_from_json(value: object) -> AlertChange:
    d = obj(value, "alert change")
    return AlertChange(member(d, "kind", ChangeKind), alert_from_json(d.get("alert")))
