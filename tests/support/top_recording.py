"""Make tests/recordings/top.ipr.gz: a short recording of the live engine on a test lab with top
talkers: five IPv4 hosts at 200 to 3,200 packets/s (one sending SYNs, one dropped by a rule), an
IPv6 host and a VLAN-tagged one.  The Top pane's snapshot tests play it back.

    sudo .venv/bin/python tests/support/top_recording.py [OUT]
"""

from __future__ import annotations

import ipaddress
import sys
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: tests/ on sys.path, as pytest has it
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.records.recording import Recorder
from support import netlab, paced
from support.common import REPO, net

OUT = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "tests" / "recordings" / "top.ipr.gz"
SECS = 14.0


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
        base = ipaddress.ip_network(lab.net4).supernet(new_prefix=16)[0]
        hosts = [str(base + 0xFA00 + i + 1) for i in range(5)]
        v6 = str(ipaddress.ip_address(lab.ns_ip6) + 0x99)
        try:
            source.add_rule(FilterRule("drop-noisy", Action.DROP, src_ip=net(f"{hosts[1]}/32")))
            with (
                paced.paced(lab, list(zip(hosts[2:], (800, 1_600, 3_200), [SECS] * 3, strict=True))),
                paced.paced(lab, [(hosts[1], 400, SECS)], dport=53),
                paced.paced(lab, [(hosts[0], 200, SECS)], syn=True, dport=22),
                paced.paced(lab, [(v6, 600, SECS)], dport=443),
                paced.paced(lab, [(str(base + 0xFB07), 300, SECS)], vlan=100, dport=123),
            ):
                time.sleep(SECS - 1)
        finally:
            stop.set()
            t.join()
            source.close()
    print(f"wrote {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main()
