"""A throw-away test network: one network namespace joined to the root
namespace by a veth pair.  Needs root.

    with veth_pair() as lab:
        send_frames(lab, [frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(dport=9))])

The host side (``lab.host_if``, ``lab.ifindex``) stays in the root namespace,
where the XDP program under test is attached; the peer (``lab.peer_if``) is
in the namespace ``lab.ns``.  Frames sent from the peer arrive on the host
side's receive path.

Network rule, no exceptions: only addresses in 198.18.0.0/15 and
2001:db8::/32, only inside namespaces made here.  ``frame()`` and
``send_frames()`` refuse frames with IPv4/IPv6/ARP addresses outside those
ranges.  Besides, every lab installs policy routing in the root namespace so
that nothing arriving on ``host_if`` is forwarded anywhere else and nothing
the host sends from ``host_ip4``/``host_ip6`` (replies to spoofed sources
included) leaves through any other interface: both can only reach the lab's
own /30 and /64, anything else is unreachable.

The link is quiet: no link-local IPv6 address, no DAD, no router
solicitations, no MLD reports (IFF_NOARP keeps the kernel from joining the
solicited-node groups), and permanent static neighbour entries both ways, so
no ARP or neighbour discovery ever appears.  Everything is removed when the
``with`` block ends, also on an exception.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import json
import os
import secrets
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ALLOWED_NETS = (ipaddress.ip_network("198.18.0.0/15"), ipaddress.ip_network("2001:db8::/32"))

CLONE_NEWNET = 0x40000000
ETH_P_ALL = 0x0003
_NETNS_DIR = Path("/run/netns")
_RULE_PRIORITY = 1000  # before the main table (32766)
_TABLE_BASE = 0x10000000  # + the lab's 24-bit id: a routing table per lab


@dataclass(frozen=True)
class Lab:
    ns: str
    host_if: str
    peer_if: str
    host_ip4: str
    ns_ip4: str
    host_ip6: str
    ns_ip6: str
    host_mac: str
    peer_mac: str
    ifindex: int
    net4: str  # the lab's /30
    net6: str  # the lab's /64
    table: int  # the lab's policy-routing table in the root namespace


# --------------------------------------------------------------------------- #
# commands


class NetlabError(RuntimeError):
    pass


def _run(*cmd: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise NetlabError(f"{' '.join(cmd)}: exit {proc.returncode}: {proc.stderr.strip()}")
    return proc


def ns_run(ns: str, *cmd: str, **kw: Any) -> subprocess.CompletedProcess[Any]:
    """``subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)``."""
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)


# --------------------------------------------------------------------------- #
# the address rule


def allowed_address(addr: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    ip = ipaddress.ip_address(addr)
    return any(ip.version == net.version and ip in net for net in ALLOWED_NETS)


def frame_addresses(data: bytes) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    """The IPv4/IPv6/ARP addresses of an Ethernet frame's outer headers (after any VLAN tags)."""
    off = 12
    if len(data) < off + 2:
        return []
    etype = int.from_bytes(data[off : off + 2], "big")
    while etype in (0x8100, 0x88A8, 0x9100) and len(data) >= off + 6:
        off += 4
        etype = int.from_bytes(data[off : off + 2], "big")
    l3 = off + 2
    if etype == 0x0800 and len(data) >= l3 + 20:
        return [ipaddress.IPv4Address(data[l3 + 12 : l3 + 16]), ipaddress.IPv4Address(data[l3 + 16 : l3 + 20])]
    if etype == 0x86DD and len(data) >= l3 + 40:
        return [ipaddress.IPv6Address(data[l3 + 8 : l3 + 24]), ipaddress.IPv6Address(data[l3 + 24 : l3 + 40])]
    if etype == 0x0806 and len(data) >= l3 + 28 and data[l3 + 4] == 6 and data[l3 + 5] == 4:
        return [ipaddress.IPv4Address(data[l3 + 14 : l3 + 18]), ipaddress.IPv4Address(data[l3 + 24 : l3 + 28])]
    return []


def check_frame(data: bytes) -> None:
    bad = [str(a) for a in frame_addresses(data) if not allowed_address(a)]
    if bad:
        raise ValueError(
            f"frame uses {', '.join(bad)}: only 198.18.0.0/15 and 2001:db8::/32 may appear in test traffic"
        )


# --------------------------------------------------------------------------- #
# namespaces

_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int, nstype: int) -> None:
    if _libc.setns(fd, nstype) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


@contextlib.contextmanager
def in_netns(ns: str) -> Iterator[None]:
    """Run the body with the CURRENT THREAD in network namespace ``ns``.

    Sockets made inside stay in ``ns`` after the block.  Threads started
    inside inherit ``ns``.  The thread always switches back, also on errors.
    """
    tid = threading.get_native_id()
    home = os.open(f"/proc/self/task/{tid}/ns/net", os.O_RDONLY | os.O_CLOEXEC)
    try:
        target = os.open(str(_NETNS_DIR / ns), os.O_RDONLY | os.O_CLOEXEC)
        try:
            _setns(target, CLONE_NEWNET)
        finally:
            os.close(target)
        try:
            yield
        finally:
            _setns(home, CLONE_NEWNET)
    finally:
        os.close(home)


# --------------------------------------------------------------------------- #
# the lab


def _random_mac() -> str:
    b = bytearray(secrets.token_bytes(6))
    b[0] = (b[0] & 0xFC) | 0x02  # unicast, locally administered
    return ":".join(f"{x:02x}" for x in b)


def _addresses_in_use() -> list[ipaddress.IPv4Interface | ipaddress.IPv6Interface]:
    out = _run("ip", "-o", "addr", "show").stdout
    found: list[ipaddress.IPv4Interface | ipaddress.IPv6Interface] = []
    for line in out.splitlines():
        parts = line.split()
        for fam in ("inet", "inet6"):
            if fam in parts:
                found.append(ipaddress.ip_interface(parts[parts.index(fam) + 1]))
    return found


def _pick_networks() -> tuple[ipaddress.IPv4Network, ipaddress.IPv6Network]:
    in_use = _addresses_in_use()
    base4 = int(ipaddress.IPv4Address("198.18.0.0"))
    for _ in range(100):
        net4 = ipaddress.IPv4Network((base4 + 4 * secrets.randbelow(2**17 // 4), 30))
        net6 = ipaddress.IPv6Network(f"2001:db8:{secrets.token_hex(2)}::/64")
        if not any(i.network.overlaps(net4) or i.network.overlaps(net6) for i in in_use if i.version in (4, 6)):
            return net4, net6
    raise NetlabError("no free test network found")


_IGNORABLE = ("Cannot find device", "No such file or directory", "No such process", "does not exist")


def _teardown(ns: str, host_if: str, table: int) -> list[str]:
    errors: list[str] = []

    def quiet(*cmd: str) -> None:
        proc = _run(*cmd, check=False)
        if proc.returncode != 0 and not any(s in proc.stderr for s in _IGNORABLE):
            errors.append(f"{' '.join(cmd)}: {proc.stderr.strip()}")

    # Best effort: a program attached through a BPF link refuses this, and goes with the device anyway.
    _run("ip", "link", "set", "dev", host_if, "xdp", "off", check=False)
    _run("ip", "link", "set", "dev", host_if, "xdpgeneric", "off", check=False)
    for fam in ("-4", "-6"):
        for _ in range(8):  # every rule pointing at the lab's table
            if _run("ip", fam, "rule", "del", "table", str(table), check=False).returncode != 0:
                break
        quiet("ip", fam, "route", "flush", "table", str(table))
    quiet("ip", "link", "del", "dev", host_if)
    if (_NETNS_DIR / ns).exists():
        quiet("ip", "netns", "del", ns)
    return errors


def _sysctls(dev: str) -> list[str]:
    return [
        f"net.ipv6.conf.{dev}.disable_ipv6=0",
        f"net.ipv6.conf.{dev}.accept_dad=0",
        f"net.ipv6.conf.{dev}.router_solicitations=0",
        f"net.ipv6.conf.{dev}.accept_ra=0",
        f"net.ipv6.conf.{dev}.addr_gen_mode=1",
    ]


@contextlib.contextmanager
def veth_pair() -> Iterator[Lab]:
    """Create a namespace ``ipt-<hex6>`` and a veth pair ``ipv<hex6>`` (root ns) / ``ipp<hex6>`` (in it)."""
    if os.geteuid() != 0:
        raise PermissionError("netlab needs root")
    for _ in range(100):
        tag = secrets.token_hex(3)
        if not (_NETNS_DIR / f"ipt-{tag}").exists() and not Path(f"/sys/class/net/ipv{tag}").exists():
            break
    ns, host_if, peer_if = f"ipt-{tag}", f"ipv{tag}", f"ipp{tag}"
    table = _TABLE_BASE + int(tag, 16)
    host_mac, peer_mac = _random_mac(), _random_mac()
    while peer_mac == host_mac:
        peer_mac = _random_mac()

    try:
        net4, net6 = _pick_networks()
        host_ip4, ns_ip4 = str(net4[1]), str(net4[2])
        host_ip6, ns_ip6 = str(net6[1]), str(net6[2])

        _run("ip", "netns", "add", ns)
        _run("ip", "link", "add", host_if, "address", host_mac, "type", "veth",
             "peer", "name", peer_if, "address", peer_mac, "netns", ns)  # fmt: skip
        # Before any link is up: no link-local address, no DAD, no RS.
        _run("sysctl", "-q", "-w", *_sysctls(host_if))
        _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", *_sysctls(peer_if))
        # IFF_NOARP as well: without it the kernel joins the solicited-node group of each
        # IPv6 address and sends MLDv2 reports (from ::) at link-up, sysctls or not.
        _run("ip", "link", "set", "dev", host_if, "arp", "off")
        _run("ip", "-n", ns, "link", "set", "dev", peer_if, "arp", "off")

        _run("ip", "addr", "add", f"{host_ip4}/30", "dev", host_if)
        _run("ip", "-6", "addr", "add", f"{host_ip6}/64", "dev", host_if, "nodad")
        _run("ip", "-n", ns, "addr", "add", f"{ns_ip4}/30", "dev", peer_if)
        _run("ip", "-n", ns, "-6", "addr", "add", f"{ns_ip6}/64", "dev", peer_if, "nodad")

        # Keep the lab's traffic in the lab (see the module's doc string): rules and the
        # "unreachable" default first; the route to the lab's own net once the link is up.
        for fam, host_ip in (("-4", host_ip4), ("-6", host_ip6)):
            _run("ip", fam, "route", "add", "unreachable", "default", "table", str(table))
            _run("ip", fam, "rule", "add", "iif", host_if, "table", str(table), "priority", str(_RULE_PRIORITY))
            _run("ip", fam, "rule", "add", "from", host_ip, "table", str(table), "priority", str(_RULE_PRIORITY))

        _run("ip", "-n", ns, "link", "set", "dev", "lo", "up")
        _run("ip", "-n", ns, "link", "set", "dev", peer_if, "up")
        _run("ip", "link", "set", "dev", host_if, "up")
        for fam, net, host_ip in (("-4", net4, host_ip4), ("-6", net6, host_ip6)):
            _run("ip", fam, "route", "add", str(net), "dev", host_if, "src", host_ip, "table", str(table))

        for dev, peer_ip4, peer_ip6, mac, prefix in (
            (host_if, ns_ip4, ns_ip6, peer_mac, ()),
            (peer_if, host_ip4, host_ip6, host_mac, ("-n", ns)),
        ):
            _run("ip", *prefix, "neigh", "replace", peer_ip4, "lladdr", mac, "dev", dev, "nud", "permanent")
            _run("ip", *prefix, "-6", "neigh", "replace", peer_ip6, "lladdr", mac, "dev", dev, "nud", "permanent")

        ifindex = int(Path(f"/sys/class/net/{host_if}/ifindex").read_text())
        lab = Lab(ns=ns, host_if=host_if, peer_if=peer_if, host_ip4=host_ip4, ns_ip4=ns_ip4,
                  host_ip6=host_ip6, ns_ip6=ns_ip6, host_mac=host_mac, peer_mac=peer_mac,
                  ifindex=ifindex, net4=str(net4), net6=str(net6), table=table)  # fmt: skip
        yield lab
    finally:
        errors = _teardown(ns, host_if, table)
        if errors:
            raise NetlabError("netlab clean-up: " + "; ".join(errors))


# --------------------------------------------------------------------------- #
# traffic


def frame(lab: Lab, l3l4: Any) -> bytes:
    """Ether(src=peer_mac, dst=host_mac) / l3l4 as bytes (scapy), checked against the address rule."""
    from scapy.layers.l2 import Ether

    data = bytes(Ether(src=lab.peer_mac, dst=lab.host_mac) / l3l4)
    check_frame(data)
    return data


def send_frames(lab: Lab, frames: Sequence[bytes], count: int = 1) -> None:
    """Send each raw Ethernet frame ``count`` times from the peer side (inside the namespace)."""
    for data in frames:
        check_frame(data)
    with in_netns(lab.ns):
        sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, 0)  # protocol 0: send only
    try:
        with in_netns(lab.ns):
            sock.bind((lab.peer_if, 0))
        for data in frames:
            for _ in range(count):
                sock.send(data)
    finally:
        sock.close()


def udp_receiver(addr: str, port: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to ``addr:port`` (IPv4 or IPv6 by ``addr``), with a 4 MiB receive buffer."""
    sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
    sock.bind((addr, port))
    sock.setblocking(False)
    return sock


def udp_sender(lab: Lab, addr: str) -> socket.socket:
    """A UDP socket made in the lab's namespace (it stays there), bound to ``addr`` (``lab.ns_ip4`` or ``ns_ip6``)."""
    with in_netns(lab.ns):
        sock = socket.socket(socket.AF_INET6 if ":" in addr else socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind((addr, 0))
    return sock


def peer_tx_packets(lab: Lab) -> int:
    """Packets the namespace side of the lab has sent (its veth's tx counter)."""
    out = subprocess.run(
        ["ip", "-n", lab.ns, "-j", "-s", "link", "show", "dev", lab.peer_if], capture_output=True, text=True, check=True
    ).stdout
    return int(json.loads(out)[0]["stats64"]["tx"]["packets"])
