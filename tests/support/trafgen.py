"""trafgen floods from a lab's namespace to its host side (tests and bench/ share them).

The frames are spelled in trafgen's configuration language: addresses only from the lab's own (or,
with ``random_src``, random sources in 198.18.0.0/16, inside the lab's /15); a flood runs pinned to one
CPU in a session of its own and its whole group is killed when its ``with`` block ends.
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


def trafgen_cfg(lab: netlab.Lab, *, proto: str = "udp", dport: int = 9, random_src: bool = False,
                random_dport: bool = False, size: int = 64) -> str:  # fmt: skip
    """A trafgen packet from the lab's namespace to its host side.  ``random_src``: a random source in
    198.18.0.0/16 (the lab's /15 only, checked); ``random_dport``: a random port 1024-65535."""
    src = ipaddress.ip_address(lab.ns_ip4)
    dst = ipaddress.ip_address(lab.host_ip4)
    assert src in ALLOWED and dst in ALLOWED
    if random_src:
        # 198.18.x.y: the first two bytes fixed inside the allowed /15, the last two random.
        saddr = "0xc6, 0x12, drnd(2)"
    else:
        saddr = ", ".join(f"0x{b:02x}" for b in src.packed)
    eth = f"eth(da={lab.host_mac}, sa={lab.peer_mac}, type=0x0800)"
    ip_hdr_fixed = "0x45, 0x00, const16({total}), drnd(2), 0x40, 0x00, 0x40, {proto}, csumip(14, 33)"
    l4len = 20 if proto == "tcp" else 8
    payload = max(0, size - 14 - 20 - l4len)
    total = 20 + l4len + payload
    ipnum = 6 if proto == "tcp" else 17
    head = ip_hdr_fixed.format(total=total, proto=ipnum)
    daddr = ", ".join(f"0x{b:02x}" for b in dst.packed)
    dp = "drnd(2)" if random_dport else f"const16({dport})"
    if proto == "tcp":
        l4 = f"const16(40000), {dp}, drnd(4), const32(0), 0x50, 0x02, const16(64240), csumtcp(14, 34), const16(0)"
    else:
        l4 = f"const16(40000), {dp}, const16({8 + payload}), const16(0)"
    fill = f", fill(0x00, {payload})" if payload else ""
    return f"{{ {eth}, {head}, {saddr}, {daddr}, {l4}{fill} }}\n"


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
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGINT)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
        cfg.unlink(missing_ok=True)
