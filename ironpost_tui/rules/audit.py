"""Audit trail: every rule change, with who made it, what, and when."""

from __future__ import annotations

import json
import logging
import os
import pwd
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironpost_tui.model import FilterRule

log = logging.getLogger("ironpost.audit")
DEFAULT_AUDIT_LOG = Path("/var/log/ironpost/audit.log")


@dataclass(frozen=True)
class Actor:
    """Who is behind a change: the login name (SUDO_USER when under sudo) and the SSH client."""

    user: str
    ssh_client: str | None
    via: str  # console, config, signal, detector, api

    @classmethod
    def current(cls, via: str) -> Actor:
        user = os.environ.get("SUDO_USER") or os.environ.get("USER") or _uid_name()
        ssh = os.environ.get("SSH_CONNECTION", os.environ.get("SSH_CLIENT", "")).split()
        return cls(user=user, ssh_client=ssh[0] if ssh else None, via=via)


def _uid_name() -> str:
    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def rule_dict(rule: FilterRule) -> dict[str, Any]:
    out: dict[str, Any] = {"id": rule.id, "action": rule.action.value}
    for name in ("src_ip", "dst_ip", "dst_port", "protocol"):
        value = getattr(rule, name)
        if value is not None:
            out[name] = str(value) if name.endswith("_ip") else value
    if rule.expires_at is not None:
        out["expires_at"] = rule.expires_at
    if rule.auto:
        out["auto"] = True
    if rule.description:
        out["description"] = rule.description
    return out


class AuditLog:
    """Appends one JSON object per change to a file and logs it."""

    def __init__(self, path: Path | None = DEFAULT_AUDIT_LOG) -> None:
        self.path = path

    def record(self, what: str, actor: Actor, rule: FilterRule | None = None, **extra: Any) -> None:
        entry: dict[str, Any] = {
            "ts": time.time(),
            "event": "rule_change",
            "change": what,
            "user": actor.user,
            "ssh_client": actor.ssh_client,
            "via": actor.via,
        }
        if rule is not None:
            entry["rule"] = rule_dict(rule)
        entry.update(extra)
        log.info(
            "audit: %s%s by %s%s via %s",
            what,
            f" {rule.id}" if rule else f" ({extra['rules']} rules)" if "rules" in extra else "",
            actor.user,
            f" from {actor.ssh_client}" if actor.ssh_client else "",
            actor.via,
            extra={"audit": entry},
        )
        if self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write(json.dumps(entry, sort_keys=True) + "\n")
        except OSError:
            log.exception("cannot append to the audit log %s", self.path)
