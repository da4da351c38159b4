"""``[crowdsec]``: ironpost as a CrowdSec bouncer (LAPI decisions become drop rules) and sensor (detector
alerts pushed to the LAPI).  Checked here like every other table: each wrong value one line, nothing
taken.  The files it names (the bouncer key, the machine credentials, the CA) are read at start, with
the ownership and mode checks of trust.py (engine/crowdsec/credentials.py)."""

from __future__ import annotations

import ipaddress
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.config.check import Table, quote
from ironpost_tui.model import StrEnum


class Scope(StrEnum):
    """The decision scopes applied: an exact address, or a range (CIDR)."""

    IP = "ip"
    RANGE = "range"


KEYS = (
    "enabled",
    "lapi_url",
    "api_key_file",
    "api_key",
    "poll_interval",
    "timeout",
    "scopes",
    "origins",
    "scenarios",
    "ca_file",
    "push_alerts",
    "machine_credentials_file",
    "ban_duration",
)
_URL = re.compile(r"https?://[A-Za-z0-9.\-]{1,253}(:[0-9]{1,5})?/?|https?://\[[0-9A-Fa-f:.]{2,45}\](:[0-9]{1,5})?/?")
_FILTER = re.compile(r"[A-Za-z0-9_./:\-' ]{1,128}")


@dataclass(frozen=True)
class CrowdSecSettings:
    enabled: bool = False
    lapi_url: str = ""  # like http://127.0.0.1:8080/
    api_key_file: Path | None = None
    api_key: str = ""  # inline: refused when the configuration file is readable by others
    poll_interval: float = 10.0  # seconds between pulls of the decision stream
    timeout: float = 5.0  # seconds, every HTTP call
    scopes: tuple[Scope, ...] = (Scope.IP, Scope.RANGE)
    origins: tuple[str, ...] = ()  # empty: every origin
    scenarios: tuple[str, ...] = ()  # empty: every scenario
    ca_file: Path | None = None  # the LAPI's CA (https); None: the system's
    push_alerts: bool = False
    machine_credentials_file: Path | None = None  # login/password, as `cscli machines add -f` writes it
    ban_duration: float = 4 * 3600.0  # the ban pushed with an alert

    @property
    def url(self) -> str:
        return self.lapi_url.rstrip("/") + "/"


def _path(t: Table, key: str) -> Path | None:
    text = t.string(key, "")
    if not text:
        return None
    if not text.startswith("/") or text.endswith("/"):
        t.error(key, f"{t.name(key)} {quote(text)} is not an absolute file path")
        return None
    return Path(text)


def _names(t: Table, key: str) -> tuple[str, ...]:
    value = t.typed(key, (list,), "a list of strings")
    if value is None:
        return ()
    out = []
    for item in value:
        if not isinstance(item, str) or not _FILTER.fullmatch(item):
            t.error(key, f'{t.name(key)} holds {quote(str(item))}: each must be a name like "crowdsecurity/ssh-bf"')
            return ()
        out.append(item)
    return tuple(out)


def _scopes(t: Table) -> tuple[Scope, ...]:
    value = t.typed("scopes", (list,), 'a list like ["ip", "range"]')
    if value is None:
        return CrowdSecSettings.scopes
    known = [s.value for s in Scope]
    if not value or any(v not in known for v in value):
        t.error("scopes", f"{t.name('scopes')} must list one or both of ip, range, got {quote(str(value))}")
        return CrowdSecSettings.scopes
    return tuple(Scope(v) for v in dict.fromkeys(value))


def cleartext_ok(url: str) -> bool:
    """https, or http to this host only: over a network, plain HTTP gives the key to whoever listens and
    lets whoever sits in between ban what they like."""
    if url.lower().startswith("https://"):
        return True
    host = url.split("://", 1)[1].split("/", 1)[0]
    host = host[1 : host.index("]")] if host.startswith("[") else host.rsplit(":", 1)[0]
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def readable_by_others(path: Path | None) -> bool:
    """Whether the file's group or others may read it: the key files' rule (lapi.read_secret), so that a key
    inline in a configuration of mode 0640 is not read by every member of its group."""
    if path is None:
        return False
    try:
        return bool(os.stat(path).st_mode & (stat.S_IRGRP | stat.S_IROTH))
    except OSError:
        return False


def crowdsec_settings(t: Table, config_path: Path | None) -> CrowdSecSettings:
    t.unknown_keys()
    if not t.raw:
        return CrowdSecSettings()
    d = CrowdSecSettings()
    url = t.string("lapi_url", "")
    if url and not _URL.fullmatch(url):
        t.error("lapi_url", f"{t.name('lapi_url')} {quote(url)} is not a LAPI address like http://127.0.0.1:8080/")
        url = ""
    if url and not cleartext_ok(url):
        t.error(
            "lapi_url",
            f"{t.name('lapi_url')} {quote(url)} would send the bouncer key and the decisions in clear over the "
            "network: use https:// (with ca_file), or a LAPI on 127.0.0.1, ::1 or localhost",
        )
        url = ""
    key_file = _path(t, "api_key_file")
    api_key = t.string("api_key", "")
    if api_key and readable_by_others(config_path):
        t.error(
            "api_key",
            f"{t.name('api_key')} is in a configuration file its group or others can read: use api_key_file "
            "(mode 0600) or chmod go-r the configuration",
        )
        api_key = ""
    if api_key and not re.fullmatch(r"[A-Za-z0-9+/=_\-]{8,256}", api_key):
        t.error("api_key", f"{t.name('api_key')} is not a bouncer key (8-256 letters, digits, +/=_-)")
        api_key = ""
    enabled = t.boolean("enabled", True)
    if enabled and "lapi_url" not in t.raw:
        t.error("lapi_url", f"{t.name('lapi_url')} is missing: give the LAPI's address, or enabled = false")
    if enabled and not {"api_key_file", "api_key"} & t.raw.keys():
        t.error(
            "api_key_file",
            f"{t.name('api_key_file')} is missing: the file `cscli bouncers add NAME -o raw` printed into",
        )
    if key_file is not None and api_key:
        t.error("api_key", f"{t.name('api_key')} and api_key_file are both given: keep one")
    push = t.boolean("push_alerts", d.push_alerts)
    machine = _path(t, "machine_credentials_file")
    if push and "machine_credentials_file" not in t.raw:
        t.error(
            "machine_credentials_file",
            f"{t.name('machine_credentials_file')} is missing: push_alerts needs the file "
            "`cscli machines add NAME --auto -f FILE` writes",
        )
    poll = t.number("poll_interval", d.poll_interval, 0.5, 3600)
    timeout = t.number("timeout", d.timeout, 0.1, 60)
    return CrowdSecSettings(
        enabled=enabled and bool(url),
        lapi_url=url,
        api_key_file=key_file,
        api_key=api_key,
        poll_interval=poll,
        timeout=timeout,
        scopes=_scopes(t),
        origins=_names(t, "origins"),
        scenarios=_names(t, "scenarios"),
        ca_file=_path(t, "ca_file"),
        push_alerts=push and machine is not None,
        machine_credentials_file=machine,
        ban_duration=t.duration("ban_duration", d.ban_duration),
    )
