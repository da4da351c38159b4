"""Anti-lockout: the addresses ironpost must never drop.

The operator's SSH client, the host's own addresses and the configured
`[safety] protect` list go into the kernel's allowlist (ALLOW4/ALLOW6),
which wins over every drop; a rule that would drop one of them is refused
unless forced.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.model import Action, FilterRule, IPNetwork

REASON_SSH_CLIENT = 1
REASON_HOST_ADDRESS = 2
REASON_PROTECT_LIST = 3
REASON_LABELS = {
    REASON_SSH_CLIENT: "your SSH client address",
    REASON_HOST_ADDRESS: "an address of this host",
    REASON_PROTECT_LIST: "the [safety] protect list",
}

_TCP_ESTABLISHED = "01"


@dataclass(frozen=True)
class Protected:
    network: IPNetwork
    reason: int

    def describe(self) -> str:
        return f"{self.network} ({REASON_LABELS.get(self.reason, 'protected')})"


def _host_net(addr: str) -> IPNetwork | None:
    try:
        ip = ipaddress.ip_address(addr.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped:
        ip = ip.ipv4_mapped
    return ipaddress.ip_network(ip)


def ssh_clients_from_env(env: Mapping[str, str]) -> set[IPNetwork]:
    out = set()
    for var in ("SSH_CONNECTION", "SSH_CLIENT"):
        value = env.get(var, "").split()
        if value:
            net = _host_net(value[0])
            if net is not None:
                out.add(net)
    return out


def _sshd_socket_inodes(proc: Path) -> set[str]:
    inodes = set()
    for pid_dir in proc.iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            if (pid_dir / "comm").read_text().strip() != "sshd":
                continue
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
        except OSError:
            continue
    return inodes


def _decode_proc_addr(hex_addr: str) -> str:
    raw = bytes.fromhex(hex_addr)
    if len(raw) == 4:
        return str(ipaddress.IPv4Address(raw[::-1]))
    # /proc/net/tcp6 prints the address as four host-order 32-bit words
    words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
    return str(ipaddress.IPv6Address(words))


def ssh_clients_from_sshd(proc: Path = Path("/proc")) -> set[IPNetwork]:
    """Peers of sshd's established TCP connections (sudo strips SSH_CONNECTION)."""
    inodes = _sshd_socket_inodes(proc)
    out: set[IPNetwork] = set()
    if not inodes:
        return out
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc / "net" / table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if len(cols) < 10 or cols[3] != _TCP_ESTABLISHED or cols[9] not in inodes:
                continue
            net = _host_net(_decode_proc_addr(cols[2].split(":")[0]))
            if net is not None:
                out.add(net)
    return out


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
) -> list[Protected]:
    """Everything to protect, most specific reason first for a shared prefix."""
    found: dict[IPNetwork, int] = {}
    if include_ssh:
        clients = ssh_clients_from_env(os.environ if env is None else env) or ssh_clients_from_sshd()
        for net in clients:
            found.setdefault(net, REASON_SSH_CLIENT)
    if include_host:
        for net in host_addresses():
            found.setdefault(net, REASON_HOST_ADDRESS)
    for net in protect:
        found.setdefault(net, REASON_PROTECT_LIST)
    return [Protected(net, reason) for net, reason in found.items()]


def violation(rule: FilterRule, protected: Iterable[Protected]) -> Protected | None:
    """The protection a drop rule would hit through its src_ip, if any.

    Rules without src_ip drop nothing protected: the kernel's allowlist lets
    protected sources through whatever the other fields say.
    """
    if rule.action is not Action.DROP or rule.src_ip is None:
        return None
    for p in protected:
        if p.network.version == rule.src_ip.version and p.network.overlaps(rule.src_ip):
            return p
    return None
