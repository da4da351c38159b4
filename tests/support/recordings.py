"""Make tests/recordings/lab.ipr.gz: a short recording of the live engine on a
test lab (traffic of every protocol, rules of every kind, drops, events and an
alert of each detector).  The console's snapshot tests play it back.

    sudo .venv/bin/python tests/support/recordings.py [OUT]
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: tests/ on sys.path, as pytest has it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from scapy.layers.inet import ICMP, IP, TCP, UDP
from scapy.layers.inet6 import IPv6

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.records.recording import Recorder
from support import netlab
from support.common import REPO, net

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "recordings" / "lab.ipr.gz"


def main() -> None:
    with netlab.veth_pair() as lab:
        engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=()))
        source = LiveSource(engine, None, Recorder(OUT))
        source.start()
        stop = threading.Event()

        def poller() -> None:
            while not stop.is_set():
                source.poll(0.1)

        t = threading.Thread(target=poller)
        t.start()
        try:
            source.add_rule(
                FilterRule("block-scanner", Action.DROP, src_ip=net(f"{lab.ns_ip4}/32"), description="lab scanner")
            )
            source.add_rule(FilterRule("watch-dns", Action.MONITOR, dst_port=53, protocol=17))
            source.add_rule(FilterRule("drop-telnet", Action.DROP, dst_port=23, protocol=6))
            source.add_rule(
                FilterRule("doc-net", Action.DROP, src_ip=net("2001:db8:ffff::/48"), expires_at=time.time() + 3600)
            )
            frames = []
            for i in range(30):
                frames.append(netlab.frame(lab, IPv6(src=lab.ns_ip6, dst=lab.host_ip6) / UDP(sport=5000 + i, dport=53)))
                frames.append(netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / ICMP()))
                frames.append(
                    netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / TCP(sport=40000 + i, dport=443, flags="S"))
                )
            for _ in range(6):
                netlab.send_frames(lab, frames)
                time.sleep(0.5)
            source.delete_rule("block-scanner")
            subprocess.run(
                [
                    "ip",
                    "netns",
                    "exec",
                    lab.ns,
                    "nmap",
                    "-n",
                    "-Pn",
                    "-sS",
                    "-p",
                    "1-100",
                    "--max-retries",
                    "0",
                    "-T4",
                    lab.host_ip4,
                ],
                capture_output=True,
                check=False,
            )
            subprocess.run(
                ["ip", "netns", "exec", lab.ns, "timeout", "1.5", "hping3", "-S", "-p", "23", "--flood", lab.host_ip4],
                capture_output=True,
                check=False,
            )
            time.sleep(2.0)
        finally:
            stop.set()
            t.join()
            source.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
