"""trafgen floods from a lab's namespace to its host side (tests and bench/ share them).

The frames are spelled in trafgen's configuration language: addresses only from the lab's own (or, for
a spoofed SYN flood, random sources in a /48 of 2001:db8::/32); a flood runs pinned to one CPU in a session
of its own and its whole group is killed when its ``with`` block ends.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

from support import netlab

ALLOWED = ipaddress.ip_network("198.18.0.0/15")


def trafgen_cfg(lab: netlab.Lab, *, proto: str = "udp", dport: int = 9, size: int = 64) -> str:
    """A trafgen packet from the lab's namespace to its host side (IPv4)."""
    src = ipaddress.ip_address(lab.ns_ip4)
    dst = ipaddress.ip_address(lab.host_ip4)
    assert src in ALLOWED and dst in ALLOWED
    saddr = ", ".join(f"0x{b:02x}" for b in src.packed)
    eth = f"eth(da={lab.host_mac}, sa={lab.peer_mac}, type=0x0800)"
    ip_hdr_fixed = "0x45, 0x00, const16({total}), drnd(2), 0x40, 0x00, 0x40, {proto}, csumip(14, 33)"
    l4len = 20 if proto == "tcp" else 8
    payload = max(0, size - 14 - 20 - l4len)
    total = 20 + l4len + payload
    ipnum = 6 if proto == "tcp" else 17
    head = ip_hdr_fixed.format(total=total, proto=ipnum)
    daddr = ", ".join(f"0x{b:02x}" for b in dst.packed)
    dp = f"const16({dport})"
    if proto == "tcp":
        l4 = f"const16(40000), {dp}, drnd(4), const32(0), 0x50, 0x02, const16(64240), csumtcp(14, 34), const16(0)"
    else:
        l4 = f"const16(40000), {dp}, const16({8 + payload}), const16(0)"
    fill = f", fill(0x00, {payload})" if payload else ""
    return f"{{ {eth}, {head}, {saddr}, {daddr}, {l4}{fill} }}\n"


ALLOWED6 = ipaddress.ip_network("2001:db8::/32")


def spoofed_syn6_cfg(lab: netlab.Lab, sources: ipaddress.IPv6Network, dport: int) -> str:
    """A TCP SYN from the lab's namespace to its host side's IPv6 address, port ``dport``, from a random source
    in ``sources`` (a /48 of 2001:db8::/32: its 80 host bits random in each packet, so that no source sends
    more than one packet in practice)."""
    dst = ipaddress.ip_address(lab.host_ip6)
    assert sources.prefixlen == 48 and sources.subnet_of(ALLOWED6) and dst in ALLOWED6  # type: ignore[arg-type]
    saddr = ", ".join(f"0x{b:02x}" for b in sources.network_address.packed[:6]) + ", drnd(10)"
    daddr = ", ".join(f"0x{b:02x}" for b in dst.packed)
    eth = f"eth(da={lab.host_mac}, sa={lab.peer_mac}, type=0x86dd)"
    ip6 = "0x60, 0x00, 0x00, 0x00, const16(20), 6, 64"  # version, class and flow; payload length; TCP; hop limit
    tcp = f"drnd(2), const16({dport}), drnd(4), const32(0), 0x50, 0x02, const16(64240), csumtcp6(14, 54), const16(0)"
    return f"{{ {eth}, {ip6}, {saddr}, {daddr}, {tcp} }}\n"


def argv(lab: netlab.Lab, cfg: Path, rate_pps: int | None = None) -> list[str]:
    out = ["ip", "netns", "exec", lab.ns, "trafgen", "--dev", lab.peer_if, "--conf", str(cfg), "--cpus", "1",
           "--no-sock-mem", "--notouch-irq", "--no-cpu-stats"]  # fmt: skip
    return out + (["--rate", f"{rate_pps}pps"] if rate_pps else [])


@contextlib.contextmanager
def flood(lab: netlab.Lab, cfg_text: str, workdir: Path, cpu: int = 0) -> Iterator[subprocess.Popen[bytes]]:
    """trafgen at full rate until the block ends (SIGINT, then SIGKILL of its group)."""
    cfg = workdir / f"trafgen-{time.monotonic_ns()}.cfg"
    cfg.write_text(f"cpu({cpu}): {cfg_text}")
    proc = subprocess.Popen(argv(lab, cfg), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, start_new_session=True)  # fmt: skip
    try:
        yield proc
    finally:
        stop(proc)
        cfg.unlink(missing_ok=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    """A trafgen started in a session of its own, stopped with its whole group: trafgen forks a worker per
    CPU, which a signal to the parent alone leaves sending (reparented to init) until its count is done."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(5)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # a worker that outlived its parent
