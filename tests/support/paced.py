"""Paced senders for the top-talker tests: trafgen in a lab's namespace, one process per source
address, each at its own rate, UDP (or TCP SYN) to the lab's host side.

Sources other than the lab's own address are spoofed, always from 198.18.0.0/15 or 2001:db8::/32
(checked), and the lab's policy routing (netlab) keeps any reply to them inside the lab.  Every
process is stopped and waited for when the ``with`` block ends, also on an exception.
"""

from __future__ import annotations

import contextlib
import ipaddress
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import netlab, trafgen


def _bytes(addr: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    return ", ".join(f"0x{b:02x}" for b in addr.packed)


def frame_cfg(lab: netlab.Lab, src: str, *, dport: int = 9, syn: bool = False, vlan: int | None = None,
              spoofed_low16: bool = False) -> str:  # fmt: skip
    """One trafgen packet from ``src`` to the lab's host address of the same family: UDP to ``dport``
    (or a TCP SYN).  ``vlan``: with an 802.1Q tag.  ``spoofed_low16``: the source's last two bytes
    random (drnd): 65,536 IPv4 sources of src's /16."""
    s = ipaddress.ip_address(src)
    dst = ipaddress.ip_address(lab.host_ip4 if s.version == 4 else lab.host_ip6)
    net = ipaddress.ip_network(f"{src}/{16 if spoofed_low16 else s.max_prefixlen}", strict=False)
    assert all(netlab.allowed_address(a) for a in (net[0], net[-1], dst)), (src, dst)
    etype = 0x0800 if s.version == 4 else 0x86DD
    eth = f"eth(da={lab.host_mac}, sa={lab.peer_mac}, type={'0x8100' if vlan is not None else f'0x{etype:04x}'})"
    tag = f", const16({vlan}), const16(0x{etype:04x})" if vlan is not None else ""
    l3 = 18 if vlan is not None else 14  # where the IP header starts
    saddr = _bytes(s) if not spoofed_low16 else ", ".join(f"0x{b:02x}" for b in s.packed[:2]) + ", drnd(2)"
    proto, l4len = (6, 20) if syn else (17, 8)
    if syn:
        l4 = (
            f"const16(40000), const16({dport}), drnd(4), const32(0), 0x50, 0x02, const16(64240), const16(0), const16(0)"
        )
    else:
        l4 = f"const16(40000), const16({dport}), const16({l4len}), const16(0)"
    if s.version == 4:
        ip = (f"0x45, 0x00, const16({20 + l4len}), drnd(2), 0x40, 0x00, 0x40, {proto}, "
              f"csumip({l3}, {l3 + 19}), {saddr}, {_bytes(dst)}")  # fmt: skip
    else:
        ip = f"0x60, 0x00, 0x00, 0x00, const16({l4len}), {proto}, 64, {saddr}, {_bytes(dst)}"
    return f"{{ {eth}{tag}, {ip}, {l4} }}\n"


@dataclass
class Sender:
    src: str
    rate: int  # packets/s asked of trafgen
    count: int  # packets it sends, then exits
    proc: subprocess.Popen[bytes]
    started: float
    ended: float | None = None

    @property
    def sent_rate(self) -> float:
        """What it sent per second, from its count and how long it ran (once it ended)."""
        assert self.ended is not None
        return self.count / (self.ended - self.started)


@dataclass
class Senders:
    senders: list[Sender] = field(default_factory=list)

    def running(self) -> bool:
        return all(s.proc.poll() is None for s in self.senders)

    def wait(self, timeout: float) -> None:
        """Wait for every sender to finish (up to timeout), noting when each did."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [s for s in self.senders if s.ended is None]
            if not pending:
                return
            for s in pending:
                if s.proc.poll() is not None:
                    s.ended = time.monotonic()
                    assert s.proc.returncode == 0, (s.src, s.proc.returncode)
            time.sleep(0.01)
        raise TimeoutError("trafgen senders still running")


@contextlib.contextmanager
def paced(lab: netlab.Lab, flows: Sequence[tuple[str, int, float]], **frame_kw: object) -> Iterator[Senders]:
    """One trafgen per (source, packets/s, seconds): started together, stopped on the way out."""
    out = Senders()
    with tempfile.TemporaryDirectory(prefix="ironpost-paced-") as tmp:
        try:
            for i, (src, rate, secs) in enumerate(flows):
                cfg = Path(tmp) / f"s{i}.cfg"
                cfg.write_text(frame_cfg(lab, src, **frame_kw))  # type: ignore[arg-type]
                count = int(rate * secs)
                argv = ["ip", "netns", "exec", lab.ns, "trafgen", "--dev", lab.peer_if, "--conf", str(cfg),
                        "--cpus", "1", "--no-sock-mem", "--notouch-irq", "--no-cpu-stats", "--rate",
                        f"{rate}pps", "-n", str(count)]  # fmt: skip
                proc = subprocess.Popen(
                    argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
                )  # stopped with its group: trafgen.stop
                out.senders.append(Sender(src, rate, count, proc, time.monotonic()))
            yield out
        finally:
            for s in out.senders:
                trafgen.stop(s.proc)
