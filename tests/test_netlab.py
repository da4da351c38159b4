"""The test network itself works, is quiet, and leaves nothing behind."""

from __future__ import annotations

import os
import select
import socket
import subprocess
import threading
import time

import pytest
from scapy.layers.inet import IP, UDP
from scapy.layers.inet6 import IPv6
from support import netlab

pytestmark = pytest.mark.root

PACKET_OUTGOING = 4


def _capture(sock: socket.socket, ifname: str, seconds: float) -> list[bytes]:
    """Frames received (not sent) on ifname within ``seconds``."""
    frames: list[bytes] = []
    end = time.monotonic() + seconds
    while (left := end - time.monotonic()) > 0:
        ready, _, _ = select.select([sock], [], [], left)
        if not ready:
            break
        data, addr = sock.recvfrom(65535)
        if addr[0] == ifname and addr[2] != PACKET_OUTGOING:
            frames.append(data)
    return frames


def _host_socket(lab: netlab.Lab) -> socket.socket:
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(netlab.ETH_P_ALL))
    sock.bind((lab.host_if, netlab.ETH_P_ALL))
    return sock


def _udp_dport(data: bytes) -> int | None:
    etype = int.from_bytes(data[12:14], "big")
    if etype == 0x0800 and data[14 + 9] == 17:
        ihl = (data[14] & 0x0F) * 4
        return int.from_bytes(data[14 + ihl + 2 : 14 + ihl + 4], "big")
    if etype == 0x86DD and data[14 + 6] == 17:
        return int.from_bytes(data[54 + 2 : 54 + 4], "big")
    return None


def _leftovers(lab: netlab.Lab) -> list[str]:
    found = []
    if lab.ns in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True).stdout:
        found.append(f"netns {lab.ns}")
    links = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=True).stdout
    found += [f"link {name}" for name in (lab.host_if, lab.peer_if) if name in links]
    for fam in ("-4", "-6"):
        rules = subprocess.run(["ip", fam, "rule", "show"], capture_output=True, text=True, check=True).stdout
        if str(lab.table) in rules or lab.host_if in rules:
            found.append(f"ip {fam} rule for table {lab.table}")
        routes = subprocess.run(
            ["ip", fam, "route", "show", "table", str(lab.table)], capture_output=True, text=True
        ).stdout
        if routes.strip():
            found.append(f"ip {fam} routes in table {lab.table}")
    return found


def test_frames_from_the_namespace_arrive_on_the_host_side() -> None:
    with netlab.veth_pair() as lab:
        assert lab.ifindex == int(open(f"/sys/class/net/{lab.host_if}/ifindex").read())
        port4, port6 = 40000 + os.getpid() % 10000, 50000 + os.getpid() % 10000
        v4 = [netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(sport=1234, dport=port4) / f"v4-{i}")
              for i in range(5)]  # fmt: skip
        v6 = [netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / UDP(sport=1234, dport=port6) / f"v6-{i}")
              for i in range(5)]  # fmt: skip
        with _host_socket(lab) as sock:
            netlab.send_frames(lab, v4 + v6)
            got = _capture(sock, lab.host_if, 1.0)
        assert [f for f in got if _udp_dport(f) == port4] == v4
        assert [f for f in got if _udp_dport(f) == port6] == v6
        # A quiet link: nothing but our frames (no ARP, ND, MLD or RS).
        assert [f.hex() for f in got if _udp_dport(f) not in (port4, port6)] == []
    assert _leftovers(lab) == []


def test_count_repeats_each_frame() -> None:
    with netlab.veth_pair() as lab:
        port = 41000 + os.getpid() % 10000
        frames = [netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(dport=port) / b"x")]
        with _host_socket(lab) as sock:
            netlab.send_frames(lab, frames, count=3)
            got = [f for f in _capture(sock, lab.host_if, 0.5) if _udp_dport(f) == port]
        assert got == frames * 3


def test_the_link_stays_quiet() -> None:
    with netlab.veth_pair() as lab, _host_socket(lab) as sock:
        assert [f.hex() for f in _capture(sock, lab.host_if, 2.5)] == []


def test_sockets_work_across_the_pair_v4_and_v6() -> None:
    with netlab.veth_pair() as lab:
        for family, host_ip, ns_ip in ((socket.AF_INET, lab.host_ip4, lab.ns_ip4),
                                       (socket.AF_INET6, lab.host_ip6, lab.ns_ip6)):  # fmt: skip
            with socket.socket(family, socket.SOCK_DGRAM) as server:
                server.bind((host_ip, 0))
                server.settimeout(2)
                with netlab.in_netns(lab.ns):
                    client = socket.socket(family, socket.SOCK_DGRAM)
                with client:
                    client.sendto(b"ping", (host_ip, server.getsockname()[1]))
                    data, peer = server.recvfrom(100)
                assert data == b"ping" and peer[0] == ns_ip


def test_in_netns_switches_the_thread_and_back() -> None:
    def current() -> str:
        return os.readlink(f"/proc/self/task/{threading.get_native_id()}/ns/net")

    home = current()
    with netlab.veth_pair() as lab:
        lab_ino = os.stat(f"/run/netns/{lab.ns}").st_ino
        with netlab.in_netns(lab.ns):
            assert current() == f"net:[{lab_ino}]"
        assert current() == home
        with pytest.raises(ZeroDivisionError), netlab.in_netns(lab.ns):
            1 / 0  # noqa: B018
        assert current() == home


def test_ns_run_runs_inside_the_namespace() -> None:
    with netlab.veth_pair() as lab:
        out = netlab.ns_run(lab.ns, "ip", "-o", "link", "show", capture_output=True, text=True, check=True).stdout
        assert lab.peer_if in out and lab.host_if not in out


def test_everything_is_removed_after_an_exception() -> None:
    with pytest.raises(RuntimeError, match="boom"), netlab.veth_pair() as lab:
        assert _leftovers(lab) != []
        raise RuntimeError("boom")
    assert _leftovers(lab) == []


def test_xdp_is_detached_on_exit() -> None:
    from bcc import BPF  # from the distribution (python3-bpfcc)

    prog = BPF(text=b"int pass_all(struct xdp_md *ctx) { return XDP_PASS; }")
    try:
        with netlab.veth_pair() as lab:
            prog.attach_xdp(lab.host_if.encode(), prog.load_func(b"pass_all", BPF.XDP), 1 << 1)  # XDP_FLAGS_SKB_MODE
            shown = subprocess.run(["ip", "link", "show", "dev", lab.host_if], capture_output=True, text=True).stdout
            assert "xdpgeneric" in shown
    finally:
        prog.cleanup()
    assert _leftovers(lab) == []


def test_addresses_outside_the_test_ranges_are_refused() -> None:
    with netlab.veth_pair() as lab:
        with pytest.raises(ValueError, match="192.0.2.1"):
            netlab.frame(lab, IP(src=lab.ns_ip4, dst="192.0.2.1") / UDP(dport=9))
        with pytest.raises(ValueError, match="2001:db9::1"):
            netlab.frame(lab, IPv6(src="2001:db9::1", dst=lab.host_ip6) / UDP(dport=9))
        raw = bytearray(netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(dport=9)))
        raw[14 + 16 : 14 + 20] = bytes([203, 0, 113, 1])
        with pytest.raises(ValueError, match="203.0.113.1"):
            netlab.send_frames(lab, [bytes(raw)])


def test_a_frame_without_macs_is_refused_not_resolved() -> None:
    """conftest's guard: building Ether()/IP(dst=...) would make scapy send ARP from this host."""
    from scapy.layers.l2 import Ether

    with pytest.raises(AssertionError, match="resolve a MAC"):
        bytes(Ether() / IP(dst="198.19.0.1"))
    with pytest.raises(AssertionError, match="resolve a MAC"):
        bytes(Ether() / IPv6(dst="2001:db8::1"))
