"""Infrastructure: the addresses auto-block never blocks, whatever a detector says.

A detector names a source from packets it cannot authenticate: a spoofed SYN flood "from" the
default gateway would otherwise cut the host off its network.  Never auto-blocked (an operator
can still block any of them by hand, with the usual confirmation where anti-lockout applies):

- the default routes' next hops, IPv4 and IPv6, multipath included (``ip -j route show default``);
- the resolvers in /etc/resolv.conf (``ip netns exec`` bind-mounts /etc/netns/NAME/resolv.conf
  there) and in systemd-resolved's upstream list;
- NTP servers configured as literal addresses in chrony, ntpd or systemd-timesyncd (a name is not
  resolved: resolving would be traffic of its own, and the answer can change);
- addresses that scraped /metrics within the hour (the endpoint records them in a RecentPeers);
- the clients of authenticated SSH connections (ssh_sessions), found again at each refresh;
- the anti-lockout protections (your SSH client, this host's addresses, ``[safety] protect``).

Discovery runs ``ip`` and reads files and /proc: the set is refreshed at most every
``refresh_secs``, never per alert.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ironpost_tui.model import IPNetwork, StrEnum
from ironpost_tui.rules import ssh_sessions
from ironpost_tui.rules.protect import REASON_LABELS, Protected

log = logging.getLogger(__name__)

PEER_MEMORY_SECS = 3600.0  # a /metrics scraper stays infrastructure this long after its last scrape
MAX_PEERS = 256  # scrapers remembered at most (the least recent go first)
REFRESH_SECS = 30.0

RESOLV_CONFS = (Path("/etc/resolv.conf"), Path("/run/systemd/resolve/resolv.conf"))
NTP_CONFS = (
    Path("/etc/chrony/chrony.conf"),
    Path("/etc/chrony.conf"),
    Path("/etc/chrony/conf.d"),
    Path("/etc/chrony/sources.d"),
    Path("/etc/ntp.conf"),
    Path("/etc/ntpsec/ntp.conf"),
    Path("/etc/systemd/timesyncd.conf"),
    Path("/etc/systemd/timesyncd.conf.d"),
)


class InfraReason(StrEnum):
    GATEWAY = "a default-route next hop"
    RESOLVER = "a DNS resolver"
    NTP = "a configured NTP server"
    SCRAPER = "scraped /metrics within the hour"
    SSH_CLIENT = "an authenticated SSH client"
    LAPI = "the CrowdSec LAPI"


@dataclass(frozen=True)
class InfraAddress:
    network: IPNetwork
    reason: str  # an InfraReason, or a protection's label

    def describe(self) -> str:
        return f"{self.network} ({self.reason})"


def _net(text: str) -> IPNetwork | None:
    return ssh_sessions.host_net(text.strip().strip("[]"))


# --------------------------------------------------------------------------- #
# default routes


def parse_routes(routes: Iterable[Mapping[str, Any]]) -> list[IPNetwork]:
    """Next hops of ``ip -j route show default`` entries: ``gateway``, ``via`` (an IPv4 next hop
    of an IPv6 route) and each of a multipath route's ``nexthops``."""
    out: list[IPNetwork] = []
    for route in routes:
        for hop in [route, *route.get("nexthops", [])]:
            if not isinstance(hop, Mapping):
                continue
            addrs = [hop.get("gateway")]
            via = hop.get("via")
            if isinstance(via, Mapping):
                addrs.append(via.get("host"))
            for addr in addrs:
                net = _net(addr) if isinstance(addr, str) else None
                if net is not None and net not in out:
                    out.append(net)
    return out


def _ip_json(*args: str) -> list[Mapping[str, Any]]:
    try:
        out = subprocess.run(["ip", "-j", *args], capture_output=True, text=True, check=True, timeout=5)
        data = json.loads(out.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return []
    return [d for d in data if isinstance(d, Mapping)] if isinstance(data, list) else []


def default_gateways(ip_json: Callable[..., list[Mapping[str, Any]]] = _ip_json) -> list[IPNetwork]:
    """The next hops of the default routes (IPv4 then IPv6), as ``ip`` shows them in this namespace."""
    routes = [*ip_json("route", "show", "default"), *ip_json("-6", "route", "show", "default")]
    return parse_routes(routes)


# --------------------------------------------------------------------------- #
# resolvers and NTP servers


def _read(path: Path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def parse_resolv_conf(text: str) -> list[IPNetwork]:
    """``nameserver ADDR`` lines (a zone index such as ``%eth0`` is dropped)."""
    out: list[IPNetwork] = []
    for line in text.splitlines():
        words = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(words) >= 2 and words[0] == "nameserver":
            net = _net(words[1])
            if net is not None and net not in out:
                out.append(net)
    return out


def parse_ntp_conf(text: str) -> list[IPNetwork]:
    """Literal addresses of chrony/ntpd ``server``, ``pool`` and ``peer`` lines and of
    timesyncd's ``NTP=`` and ``FallbackNTP=``; names are skipped, never resolved."""
    out: list[IPNetwork] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        words = line.split()
        if len(words) >= 2 and words[0] in ("server", "pool", "peer"):
            candidates = [words[1]]
        elif "=" in line and line.split("=", 1)[0].strip() in ("NTP", "FallbackNTP"):
            candidates = line.split("=", 1)[1].split()
        else:
            continue
        for word in candidates:
            net = _net(word)
            if net is not None and net not in out:
                out.append(net)
    return out


def _files(paths: Iterable[Path]) -> list[Path]:
    out = []
    for path in paths:
        if path.is_dir():
            try:
                out += sorted(p for p in path.iterdir() if p.suffix in (".conf", ".sources") and p.is_file())
            except OSError:
                continue
        elif path.is_file():
            out.append(path)
    return out


def resolvers(paths: Iterable[Path] = RESOLV_CONFS) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for path in _files(paths):
        out += [n for n in parse_resolv_conf(_read(path)) if n not in out]
    return out


def ntp_servers(paths: Iterable[Path] = NTP_CONFS) -> list[IPNetwork]:
    out: list[IPNetwork] = []
    for path in _files(paths):
        out += [n for n in parse_ntp_conf(_read(path)) if n not in out]
    return out


# --------------------------------------------------------------------------- #
# /metrics scrapers


class RecentPeers:
    """Addresses that scraped /metrics, with when they last did (thread-safe: the metrics
    server's request threads record, the engine reads).  At most ``limit`` are kept."""

    def __init__(self, limit: int = MAX_PEERS, clock: Callable[[], float] | None = None) -> None:
        self._clock = clock or time.monotonic
        self._limit = limit
        self._seen: dict[IPNetwork, float] = {}
        self._lock = threading.Lock()

    def record(self, addr: str) -> None:
        net = _net(addr)
        if net is None:
            return
        now = self._clock()
        with self._lock:
            self._seen.pop(net, None)  # re-inserted last: the dict's order is least recent first
            self._seen[net] = now
            while len(self._seen) > self._limit:
                del self._seen[next(iter(self._seen))]

    def recent(self, within: float = PEER_MEMORY_SECS) -> list[IPNetwork]:
        now = self._clock()
        with self._lock:
            return [net for net, at in self._seen.items() if now - at <= within]


# --------------------------------------------------------------------------- #
# the set


def url_host_addresses(url: str) -> tuple[IPNetwork, ...]:
    """The addresses of a URL's host (an address as it is; a name looked up once, here): () when none."""
    host = url.split("://", 1)[-1].split("/", 1)[0]
    host = host[1 : host.index("]")] if host.startswith("[") and "]" in host else host.rsplit(":", 1)[0]
    if not host:
        return ()
    try:
        return (ipaddress.ip_network(host),)
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError) as exc:
        log.warning("the CrowdSec LAPI's address %s could not be looked up (%s): not protected by address", host, exc)
        return ()
    return tuple(sorted({ipaddress.ip_network(str(i[4][0]).split("%", 1)[0]) for i in infos}, key=str))


def authenticated_ssh_clients(proc: Path = Path("/proc")) -> list[IPNetwork]:
    sessions = ssh_sessions.find(os.environ, proc)
    return sorted({c.peer for c in sessions.connections if c.authenticated}, key=str)


@dataclass(frozen=True)
class InfraSources:
    """Where infrastructure is looked for (tests point these into a lab)."""

    routes: Callable[[], list[IPNetwork]] = default_gateways
    resolv_confs: tuple[Path, ...] = RESOLV_CONFS
    ntp_confs: tuple[Path, ...] = NTP_CONFS
    ssh_clients: Callable[[], list[IPNetwork]] | None = authenticated_ssh_clients
    peers: RecentPeers | None = None
    refresh_secs: float = REFRESH_SECS
    # The CrowdSec LAPI's addresses (resolved once at start): a spoofed flood in its name must not get it
    # blocked here, nor banned on the whole fleet, which would cut every bouncer off from its unbans.
    lapi: tuple[IPNetwork, ...] = ()

    @classmethod
    def of(cls, protect_ssh_client: bool, **kw: Any) -> InfraSources:
        """The sources of a run: SSH clients only while they are protected (``[safety] protect_ssh_client``;
        off, no login exempts its address from anything)."""
        return cls(ssh_clients=authenticated_ssh_clients if protect_ssh_client else None, **kw)


def discover(sources: InfraSources, protected: Sequence[Protected] = ()) -> list[InfraAddress]:
    """Everything never auto-blocked, each address once with its first reason."""
    found: dict[IPNetwork, str] = {}
    for p in protected:
        found.setdefault(p.network, REASON_LABELS.get(p.reason, "protected"))
    groups: list[tuple[InfraReason, Callable[[], list[IPNetwork]]]] = [
        (InfraReason.GATEWAY, sources.routes),
        (InfraReason.RESOLVER, lambda: resolvers(sources.resolv_confs)),
        (InfraReason.NTP, lambda: ntp_servers(sources.ntp_confs)),
    ]
    if sources.peers is not None:
        groups.append((InfraReason.SCRAPER, sources.peers.recent))
    if sources.ssh_clients is not None:
        groups.append((InfraReason.SSH_CLIENT, sources.ssh_clients))
    if sources.lapi:
        groups.append((InfraReason.LAPI, lambda: list(sources.lapi)))
    for reason, get in groups:
        try:
            nets = get()
        except Exception:  # one source failing must not leave the others out
            log.exception("looking for infrastructure (%s) failed", reason)
            continue
        for net in nets:
            found.setdefault(net, reason)
    return [InfraAddress(net, reason) for net, reason in found.items()]


@dataclass
class Infrastructure:
    """The set, found again at most every ``sources.refresh_secs`` (by the clock passed in)."""

    sources: InfraSources = field(default_factory=InfraSources)
    protected: Callable[[], Sequence[Protected]] = tuple
    _at: float | None = None
    _exact: dict[IPNetwork, InfraAddress] = field(default_factory=dict)
    _prefixes: list[InfraAddress] = field(default_factory=list)

    def refresh(self, now: float) -> list[InfraAddress]:
        found = discover(self.sources, self.protected())
        self._exact = {a.network: a for a in found if a.network.num_addresses == 1}
        self._prefixes = [a for a in found if a.network.num_addresses > 1]
        self._at = now
        return found

    def invalidate(self) -> None:
        """Find the set again at the next look-up (the protections changed)."""
        self._at = None

    def current(self, now: float) -> list[InfraAddress]:
        if self._at is None or now - self._at >= self.sources.refresh_secs or now < self._at:
            self.refresh(now)
        return [*self._exact.values(), *self._prefixes]

    def find(self, addr: str, now: float) -> InfraAddress | None:
        """The infrastructure ``addr`` is (or falls inside), if any."""
        if self._at is None or now - self._at >= self.sources.refresh_secs or now < self._at:
            self.refresh(now)
        net = _net(addr)
        if net is None:
            return None
        hit = self._exact.get(net)
        if hit is not None:
            return hit
        ip = net.network_address
        for a in self._prefixes:
            if a.network.version == ip.version and ip in a.network:
                return a
        return None

    def overlapping(self, net: IPNetwork, now: float) -> InfraAddress | None:
        """The infrastructure a drop of ``net`` (an address or a range) would reach, if any: an address of
        it inside ``net``, or a range of it overlapping ``net``."""
        if net.num_addresses == 1:
            return self.find(str(net.network_address), now)
        for a in self.current(now):
            if a.network.version == net.version and a.network.overlaps(net):
                return a
        return None
