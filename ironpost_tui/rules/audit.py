"""Audit trail: every rule change, with who made it, what, and when.

One JSON object per line, appended and fsynced (one fsync per change: rule changes are rare)."""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import pwd
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ironpost_tui.model import FilterRule

log = logging.getLogger("ironpost.audit")
DEFAULT_AUDIT_LOG = Path("/var/log/ironpost/audit.log")


LOGINUID = Path("/proc/self/loginuid")
_UNSET_LOGINUID = 4294967295  # (uid_t)-1: no login session (a daemon, or no pam_loginuid)


@dataclass(frozen=True)
class Peer:
    """The process at the other end of a Unix socket, from the kernel (SO_PEERCRED), not from what it says."""

    pid: int
    uid: int
    gid: int


@dataclass(frozen=True)
class Actor:
    """Who is behind a change: the login name (SUDO_USER when under sudo), the SSH client, and the
    kernel's login uid.

    The names come from the environment, which whoever starts the process sets; the login uid is the
    kernel's (``/proc/self/loginuid``, set by pam_loginuid when the login session opens and kept
    through sudo and su), so the audit names the person who logged in even when the environment lies.
    """

    user: str
    ssh_client: str | None
    via: str  # console, config, signal, detector, expiry, journal, external, api, cli
    loginuid: int | None = None  # None: unset (4294967295) or unreadable
    peer: Peer | None = None  # a change asked over the command-line socket: the caller, as the kernel says

    @classmethod
    def current(cls, via: str) -> Actor:
        user = os.environ.get("SUDO_USER") or os.environ.get("USER") or _uid_name()
        return cls(user=user, ssh_client=ssh_client_of(os.environ), via=via, loginuid=login_uid())

    @classmethod
    def caller(cls, peer: Peer, via: str, user: str | None = None, ssh_client: str | None = None) -> Actor:
        """Another process asking for a change (the command line over its socket).

        The kernel's word for its uid, pid and login uid (``/proc/PID/loginuid``, read while it waits
        for the answer, so the pid is still its own); its own word for the login name and the SSH
        client, which it takes from its environment as ``current`` does (the uid's name without one)."""
        loginuid = login_uid(Path(f"/proc/{peer.pid}/loginuid"))
        return cls(user or _uid_name(peer.uid), ssh_client, via, loginuid, peer)


def ssh_client_of(env: Mapping[str, str]) -> str | None:
    """SSH_CONNECTION's (or SSH_CLIENT's) client address, without a zone (sshd writes a link-local client's,
    fe80::1%eth0; the command-line socket refuses one); None without one, or when it is not an address."""
    words = env.get("SSH_CONNECTION", env.get("SSH_CLIENT", "")).split()
    if not words or len(words[0]) > 64:  # an IPv6 address (45) and a zone (an interface name, 15)
        return None
    try:
        return str(ipaddress.ip_address(words[0].partition("%")[0]))
    except ValueError:
        return None


def login_uid(path: Path = LOGINUID) -> int | None:
    """The login uid of this process (``/proc/self/loginuid``); None when unset or unreadable."""
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    if not text.isascii() or not text.isdigit() or int(text) >= _UNSET_LOGINUID:
        return None
    return int(text)


def _uid_name(uid: int | None = None) -> str:
    uid = os.getuid() if uid is None else uid
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


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
    if rule.external:
        out["external"] = True
    if rule.description:
        out["description"] = rule.description
    return out


class AuditLog:
    """Appends one JSON object per change to a file and logs it."""

    def __init__(self, path: Path | None = DEFAULT_AUDIT_LOG) -> None:
        self.path = path

    def record(self, what: str, actor: Actor, rule: FilterRule | None = None, **extra: Any) -> None:
        self._append([self._entry(what, actor, rule, **extra)])

    def record_each(self, what: str, actor: Actor, rules: list[FilterRule]) -> None:
        """One line per rule, written and fsynced once (a panic clearing a thousand auto-blocks)."""
        self._append([self._entry(what, actor, rule) for rule in rules])

    def record_changes(self, actor: Actor, changes: list[tuple[str, FilterRule]]) -> None:
        """One line per (change, rule), written and fsynced once (a tick's changes by other tools)."""
        self._append([self._entry(what, actor, rule) for what, rule in changes])

    def _entry(self, what: str, actor: Actor, rule: FilterRule | None = None, **extra: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "ts": time.time(),
            "event": "rule_change",
            "change": what,
            "user": actor.user,
            "ssh_client": actor.ssh_client,
            "via": actor.via,
            "loginuid": actor.loginuid,
            "login_user": None if actor.loginuid is None else _uid_name(actor.loginuid),
        }
        if actor.peer is not None:
            entry["uid"] = actor.peer.uid
            entry["pid"] = actor.peer.pid
        if rule is not None:
            entry["rule"] = rule_dict(rule)
        entry.update(extra)
        log.info(
            "audit: %s%s by %s%s via %s%s",
            what,
            f" {rule.id}" if rule else f" ({extra['rules']} rules)" if "rules" in extra else "",
            actor.user,
            f" from {actor.ssh_client}" if actor.ssh_client else "",
            actor.via,
            f" (uid {actor.peer.uid}, pid {actor.peer.pid})" if actor.peer is not None else "",
            extra={"audit": entry},
        )
        return entry

    def _append(self, entries: list[dict[str, Any]]) -> None:
        if self.path is None or not entries:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            with os.fdopen(fd, "a") as f:
                f.write("".join(json.dumps(e, sort_keys=True) + "\n" for e in entries))
                f.flush()
                os.fsync(f.fileno())  # on disk before the change counts as recorded (a crash keeps it)
        except OSError:
            log.exception("cannot append to the audit log %s", self.path)
