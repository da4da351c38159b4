"""A detector's alert as the LAPI's ``POST /v1/alerts`` takes it (crowdsec's models.Alert), with a ban
decision for its source: scenarios ``ironpost/syn_flood`` and ``ironpost/port_scan``; the source,
target(s), counts and window as event metadata."""

from __future__ import annotations

import datetime
import ipaddress
from typing import Any

from ironpost_tui.detectors.alerts import Alert
from ironpost_tui.version import __version__

SCENARIO_PREFIX = "ironpost/"


def scenario(alert: Alert) -> str:
    return f"{SCENARIO_PREFIX}{alert.detector}"


def _rfc3339(t: float) -> str:
    return datetime.datetime.fromtimestamp(t, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _go_seconds(seconds: float) -> str:
    return f"{int(seconds)}s"


def payload(alert: Alert, ban_seconds: float, machine: str) -> dict[str, Any]:
    """One alert with its ban; ``alert.source`` must be one address (never "many sources")."""
    src = ipaddress.ip_address(alert.source)
    name = scenario(alert)
    meta = {
        "source_ip": str(src),
        "target": alert.target,
        "targets": ",".join(map(str, alert.targets)) or alert.target,
        "count": str(alert.count),
        "peak": str(alert.peak),
        "window_secs": f"{alert.window_secs:g}",
        "detector": str(alert.detector),
        "severity": alert.severity,
    }
    return {
        "scenario": name,
        "scenario_hash": "",
        "scenario_version": __version__,
        "message": f"{machine}: {alert.summary}"[:1024],
        "events_count": max(1, alert.count),
        "start_at": _rfc3339(alert.first_seen),
        "stop_at": _rfc3339(alert.last_seen),
        "capacity": 0,
        "leakspeed": "0s",
        "simulated": False,
        "remediation": True,
        "events": [{"timestamp": _rfc3339(alert.last_seen), "meta": [{"key": k, "value": v} for k, v in meta.items()]}],
        "source": {"scope": "Ip", "value": str(src), "ip": str(src)},
        "decisions": [
            {
                "duration": _go_seconds(ban_seconds),
                "origin": "ironpost",
                "scenario": name,
                "scope": "Ip",
                "type": "ban",
                "value": str(src),
            }
        ],
    }
