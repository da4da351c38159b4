"""Plain-JSON forms of the engine's values, for recordings and exports."""

from __future__ import annotations

import ipaddress
from typing import Any

from ironpost_tui.detectors import Alert, AlertChange, ChangeKind, Detector
from ironpost_tui.model import (
    Action,
    FilterRule,
    PacketEvent,
    ProtoCounters,
    ProtoRates,
    RuleStatus,
    StatsSample,
    Verdict,
)

Json = dict[str, Any]


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
    return out


def rule_from_json(d: Json) -> FilterRule:
    return FilterRule(
        id=d["id"],
        action=Action(d.get("action", "drop")),
        src_ip=ipaddress.ip_network(d["src_ip"]) if "src_ip" in d else None,
        dst_ip=ipaddress.ip_network(d["dst_ip"]) if "dst_ip" in d else None,
        dst_port=d.get("dst_port"),
        protocol=d.get("protocol"),
        description=d.get("description", ""),
        expires_at=d.get("expires_at"),
        auto=bool(d.get("auto", False)),
    )


def status_to_json(s: RuleStatus) -> Json:
    return {"rule": rule_to_json(s.rule), "map": s.map_name, "hits": s.hits, "last_hit": s.last_hit}


def status_from_json(d: Json) -> RuleStatus:
    return RuleStatus(rule_from_json(d["rule"]), d["map"], d["hits"], d.get("last_hit"))


def sample_to_json(s: StatsSample) -> Json:
    return {
        "at": s.at,
        "totals": {k: [v.packets, v.bytes, v.drops] for k, v in s.totals.items()},
        "rates": {k: [v.pps, v.bps, v.drops_ps] for k, v in s.rates.items()},
        "events_delivered": s.events_delivered,
        "events_lost": dict(s.events_lost),
    }


def sample_from_json(d: Json) -> StatsSample:
    return StatsSample(
        at=d["at"],
        totals={k: ProtoCounters(*v) for k, v in d["totals"].items()},
        rates={k: ProtoRates(*v) for k, v in d["rates"].items()},
        events_delivered=d["events_delivered"],
        events_lost=dict(d["events_lost"]),
    )


def event_to_json(e: PacketEvent) -> Json:
    return {
        "ts": e.ts,
        "family": e.family,
        "src": str(e.src),
        "dst": str(e.dst),
        "sport": e.src_port,
        "dport": e.dst_port,
        "proto": e.protocol,
        "flags": e.tcp_flags,
        "len": e.length,
        "verdict": e.verdict.value,
        "rule": e.rule_id,
    }


def event_from_json(d: Json) -> PacketEvent:
    return PacketEvent(
        ts=d["ts"],
        family=d["family"],
        src=ipaddress.ip_address(d["src"]),
        dst=ipaddress.ip_address(d["dst"]),
        src_port=d["sport"],
        dst_port=d["dport"],
        protocol=d["proto"],
        tcp_flags=d["flags"],
        length=d["len"],
        verdict=Verdict(d["verdict"]),
        rule_id=d.get("rule"),
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
    }


def alert_from_json(d: Json) -> Alert:
    return Alert(**{**d, "detector": Detector(d["detector"])})


def change_to_json(c: AlertChange) -> Json:
    return {"kind": c.kind, "alert": alert_to_json(c.alert)}


def change_from_json(d: Json) -> AlertChange:
    return AlertChange(ChangeKind(d["kind"]), alert_from_json(d["alert"]))
