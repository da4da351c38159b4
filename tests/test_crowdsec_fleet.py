"""A fleet of two on one machine, one real CrowdSec LAPI: agent A is a sensor (``push_alerts``), agent B a
bouncer, each on a lab veth of its own.  An nmap scan against A's side becomes an ``ironpost/port_scan``
alert in the LAPI (``cscli alerts list -o json``) with a ban for the scanner, and B drops that scanner's
packets within poll_interval + 1 s of the alert being there.  A spoofed-source flood against A (a
many-sources incident) pushes nothing.

Network rule: the scan and the flood go from lab A's namespace to lab A's host side; the scanner's
packets at B are raw frames sent from lab B's namespace with lab A's namespace address as source
(198.18.0.0/15 both).  The spoofed flood runs behind the two guards of test_detection_live.py: the lab's
policy routing (nothing from the host side address leaves lab A's /30) and a drop rule for the flood's
port with no allowlist exception, so every spoofed SYN is dropped in XDP before the stack could answer.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from support import netlab
from support.agents import Agent, AgentPool
from support.crowdsec import Lapi
from support.metrics_lab import AgentFiles, free_port, sample, scrape, wait_until

pytestmark = pytest.mark.root

POLL = 1.0
BOUND = POLL + 1.0


@pytest.fixture
def lab_b() -> Iterator[netlab.Lab]:
    """The second lab (set up before ``agents``, so torn down after them)."""
    with netlab.veth_pair() as lab:
        yield lab


def _crowdsec(lapi: Lapi, key: Path, extra: str = "") -> str:
    return f'[crowdsec]\nlapi_url = "{lapi.url}"\napi_key_file = "{key}"\npoll_interval = {POLL}\ntimeout = 2\n{extra}'


def _start(agents: AgentPool, lab: netlab.Lab, tmp: Path, config: str) -> tuple[Agent, int]:
    tmp.mkdir()
    files = AgentFiles.make(tmp, extra=config)
    agent = agents.start(lab.host_if, *files.args())
    agent.wait_ready()
    return agent, int(agent.argv[agent.argv.index("--metrics-port") + 1])


def _metric(port: int, name: str, **labels: str) -> float:
    return sample(scrape(port), name, **labels) or 0.0


def _port_scans(lapi: Lapi) -> list[dict[str, object]]:
    return [a for a in lapi.alerts() if a.get("scenario") == "ironpost/port_scan"]


def test_fleet_of_two(lab_b: netlab.Lab, lab: netlab.Lab, agents: AgentPool, lapi: Lapi, tmp_path: Path) -> None:
    lab_a = lab
    flood_port = free_port(lab_a.host_ip4)
    sensor = lapi.add_machine("host-a")
    config_a = _crowdsec(
        lapi, lapi.add_bouncer("host-a"), f'push_alerts = true\nmachine_credentials_file = "{sensor}"\n'
    ) + (
        "\n[safety]\nprotect_host_addresses = false\nprotect_ssh_client = false\n"
        f'\n[[ebpf.rules]]\nid = "guard"\ndst_port = {flood_port}\nprotocol = 6\naction = "drop"\n'
    )
    agent_a, _port_a = _start(agents, lab_a, tmp_path / "a", config_a)
    _agent_b, port_b = _start(agents, lab_b, tmp_path / "b", _crowdsec(lapi, lapi.add_bouncer("host-b")))
    wait_until("B's first pull", lambda: _metric(port_b, "ironpost_crowdsec_pulls_total", result="ok") >= 1)

    # The scanner's datagrams at B pass before any decision (the negative control).
    scanner = lab_a.ns_ip4
    frames = [netlab.frame(lab_b, IP(src=scanner, dst=lab_b.host_ip4) / UDP(sport=40000, dport=9))]
    dropped = _metric(port_b, "ironpost_dropped_packets_total", protocol="udp")
    netlab.send_frames(lab_b, frames, count=20)
    time.sleep(0.5)
    assert _metric(port_b, "ironpost_dropped_packets_total", protocol="udp") == dropped

    # The spoofed-source flood first: a many-sources incident, nothing pushed.
    flood = subprocess.Popen(
        ["ip", "netns", "exec", lab_a.ns, "hping3", "-q", "-S", "-p", str(flood_port), "--flood", "--rand-source",
         lab_a.host_ip4],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        agent_a.wait_for("many sources", timeout=30)
    finally:
        flood.kill()
        flood.wait(10)
    time.sleep(BOUND)
    assert lapi.alerts() == [], "a spoofed flood was pushed"

    # The scan: an ironpost/port_scan alert in the LAPI, with the scanner as source and its metadata.
    nmap = subprocess.run(
        ["ip", "netns", "exec", lab_a.ns, "nmap", "-n", "-Pn", "-sS", "-p", "1-200", "--max-retries", "0", "-T4",
         lab_a.host_ip4],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert nmap.returncode == 0, nmap.stderr
    scans = wait_until("the port_scan alert in the LAPI", lambda: _port_scans(lapi), timeout=30)
    t0 = time.monotonic()
    alert = scans[0]
    assert alert["source"]["value"] == scanner, json.dumps(alert)  # type: ignore[index]
    meta = {m["key"]: m["value"] for e in alert["events"] for m in e["meta"]}  # type: ignore[attr-defined]
    assert meta["source_ip"] == scanner and meta["targets"] == f"{lab_a.host_ip4}:*", meta  # many ports
    assert int(meta["count"]) > 0 and float(meta["window_secs"]) > 0, meta
    assert [d["value"] for d in alert["decisions"]] == [scanner]  # type: ignore[attr-defined]

    # B drops the scanner within poll_interval + 1 s.
    while _metric(port_b, "ironpost_crowdsec_decisions") < 1:
        assert time.monotonic() - t0 < BOUND, "B did not apply the scanner's ban in time"
        time.sleep(0.05)
    hits = _metric(port_b, "ironpost_rule_hits_total", rule_id="crowdsec")
    dropped = _metric(port_b, "ironpost_dropped_packets_total", protocol="udp")
    netlab.send_frames(lab_b, frames, count=20)
    wait_until(
        "B drops the scanner", lambda: _metric(port_b, "ironpost_rule_hits_total", rule_id="crowdsec") >= hits + 20
    )
    assert _metric(port_b, "ironpost_dropped_packets_total", protocol="udp") >= dropped + 20
    assert len(_port_scans(lapi)) == 1 and len(lapi.alerts()) == 1  # the flood still pushed nothing
