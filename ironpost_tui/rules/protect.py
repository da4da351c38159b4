"""Anti-lockout: the addresses ironpost must never drop.

The operator's SSH client, the clients of the other authenticated SSH
sessions, the host's own addresses and the configured `[safety] protect`
list go into the kernel's allowlist (ALLOW4/ALLOW6), which wins over every
drop; a rule that would drop one of them is refused unless forced.  How the
SSH clients are found, and why that way: ssh_sessions.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.model import Action, FilterRule, IPNetwork
from ironpost_tui.rules import ssh_sessions

REASON_SSH_CLIENT = 1
REASON_HOST_ADDRESS = 2
REASON_PROTECT_LIST = 3
REASON_SSH_SESSION = 4
REASON_LABELS = {
    REASON_SSH_CLIENT: "your SSH client address",
    REASON_HOST_ADDRESS: "an address of this host",
    REASON_PROTECT_LIST: "the [safety] protect list",
    REASON_SSH_SESSION: "the client of another authenticated SSH session",
}
NO_SSH_CLIENT = "no SSH client found: your own address is not protected; add it to [safety] protect"


@dataclass(frozen=True)
class Protected:
    network: IPNetwork
    reason: int

    def describe(self) -> str:
        return f"{self.network} ({REASON_LABELS.get(self.reason, 'protected')})"


def _host_net(addr: str) -> IPNetwork | None:
    return ssh_sessions.host_net(addr)


def ssh_clients_from_env(env: Mapping[str, str]) -> set[IPNetwork]:
    """The client named by SSH_CONNECTION/SSH_CLIENT: a claim, trusted only when a live session has it."""
    out = set()
    for var in ("SSH_CONNECTION", "SSH_CLIENT"):
        value = env.get(var, "").split()
        if value:
            net = _host_net(value[0])
            if net is not None:
                out.add(net)
    return out


def ssh_clients(env: Mapping[str, str], proc: Path = Path("/proc")) -> tuple[IPNetwork | None, set[IPNetwork]]:
    """(the operator's SSH client or None, the clients of the other authenticated SSH sessions)."""
    return ssh_sessions.find(env, proc).clients()


def host_addresses() -> set[IPNetwork]:
    """Every address configured on this host's interfaces (loopback excluded)."""
    try:
        out = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True, timeout=5)
        links = json.loads(out.stdout)
    except (OSError, subprocess.SubprocessError, ValueError):
        return set()
    nets = set()
    for link in links:
        for info in link.get("addr_info", []):
            net = _host_net(str(info.get("local", "")))
            if net is not None and not net.network_address.is_loopback:
                nets.add(net)
    return nets


def gather(
    protect: Iterable[IPNetwork],
    env: Mapping[str, str] | None = None,
    include_ssh: bool = True,
    include_host: bool = True,
    proc: Path = Path("/proc"),
) -> list[Protected]:
    """Everything to protect, most specific reason first for a shared prefix."""
    found: dict[IPNetwork, int] = {}
    if include_ssh:
        own, others = ssh_clients(os.environ if env is None else env, proc)
        if own is not None:
            found[own] = REASON_SSH_CLIENT
        for net in sorted(others, key=str):
            found.setdefault(net, REASON_SSH_SESSION)
    if include_host:
        for net in host_addresses():
            found.setdefault(net, REASON_HOST_ADDRESS)
    for net in protect:
        found.setdefault(net, REASON_PROTECT_LIST)
    return [Protected(net, reason) for net, reason in found.items()]


def own_client_missing(protected: Iterable[Protected]) -> bool:
    """Whether the operator's SSH client is not among the protections (say NO_SSH_CLIENT)."""
    return not any(p.reason == REASON_SSH_CLIENT for p in protected)


class Spans:
    """Protections as integer ranges, made once: a load checks each of 10,000 rules against every
    protection (the ranges made again for each rule were a tenth of a start)."""

    __slots__ = ("items",)

    def __init__(self, protected: Iterable[Protected]) -> None:
        self.items = tuple((p.network.version, *_span(p.network), p) for p in protected)


def violation(rule: FilterRule, protected: Iterable[Protected] | Spans) -> Protected | None:
    """The protection a drop rule would hit through its src_ip, if any.

    Rules without src_ip drop nothing protected: the kernel's allowlist lets
    protected sources through whatever the other fields say.
    """
    src = rule.src_ip
    if rule.action is not Action.DROP or src is None:
        return None
    # Two prefixes overlap when their address ranges do (ipaddress's overlaps(), as integers).
    first, last = _span(src)
    version = src.version
    for v, low, high, p in (protected if isinstance(protected, Spans) else Spans(protected)).items:
        if v == version and low <= last and first <= high:
            return p
    return None


def _span(net: IPNetwork) -> tuple[int, int]:
    """A prefix's first and last address as integers (its broadcast_address is a cached property made
    on first use: an object per rule of a load)."""
    first = int(net.network_address)
    return first, first | ((1 << (net.max_prefixlen - net.prefixlen)) - 1)
