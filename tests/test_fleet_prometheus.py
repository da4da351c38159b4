"""The fleet story end to end: a headless agent on a veth pair, traffic and
an nmap SYN scan from the test namespace, and a real Prometheus (the
distribution's) scraping the agent every second with deploy/'s alert rules.

Checked through Prometheus' HTTP API: the target is up, the packet counters
rise with the traffic, the port-scan alert fires, and every query of the
Grafana dashboard is valid PromQL.  ``promtool check metrics`` finds nothing
to say about the agent's live output.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from support import netlab
from support.agents import AgentPool
from support.metrics_lab import DEPLOY, MONITOR_UDP_9, AgentFiles, free_port, prometheus, sample, scrape, wait_until

pytestmark = pytest.mark.root

SCAN_CONFIG = """
[detectors.port_scan]
window_secs = 10
port_threshold = 20

[[ebpf.rules]]
id = "drop-chargen"
dst_port = 19
protocol = 17
action = "drop"
"""


def udp_to(lab: netlab.Lab, port: int, count: int) -> None:
    """``count`` datagrams from the namespace to the host side's ``port``."""
    import socket

    with netlab.in_netns(lab.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        for _ in range(count):
            s.sendto(b"x" * 32, (lab.host_ip4, port))
    finally:
        s.close()


def ping(lab: netlab.Lab, count: int) -> None:
    proc = netlab.ns_run(lab.ns, "ping", "-q", "-c", str(count), "-i", "0.01", "-W", "1", lab.host_ip4,
                         capture_output=True, text=True)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_promtool_check_metrics_on_a_live_agent(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    files = AgentFiles.make(tmp_path, rules=MONITOR_UDP_9 + SCAN_CONFIG.split("\n\n", 1)[1])
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    agent.wait_ready()
    ping(lab, 10)
    udp_to(lab, 9, 25)
    udp_to(lab, 19, 15)

    def sampled() -> str | None:  # the engine samples once a second
        text = scrape(port)
        return text if sample(text, "ironpost_rule_hits_total", rule_id="drop-chargen") == 15 else None

    text = wait_until("rule hits in /metrics", sampled, timeout=10)
    assert sample(text, "ironpost_rule_hits_total", rule_id="watch-discard") == 25
    assert sample(text, "ironpost_dropped_packets_total", protocol="udp") == 15
    assert sample(text, "ironpost_packets_total", protocol="icmp") >= 10  # type: ignore[operator]
    assert sample(text, "ironpost_events_total") >= 40  # type: ignore[operator]
    proc = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    print(f"promtool check metrics: exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    assert proc.returncode == 0 and proc.stdout == "" and proc.stderr == "", proc


def test_prometheus_scrapes_the_agent_and_the_port_scan_alert_fires(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    files = AgentFiles.make(tmp_path, rules=SCAN_CONFIG)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    agent.wait_ready()
    target = f"127.0.0.1:{port}"
    (tmp_path / "prom").mkdir()
    with prometheus(tmp_path / "prom", [target], [DEPLOY / "ironpost-alerts.yml"]) as prom:
        wait_until("up == 1", lambda: prom.value(f'up{{job="ironpost",instance="{target}"}}') == 1)
        attached = f'ironpost_xdp_attached{{job="ironpost",interface="{lab.host_if}"}}'
        wait_until("attached == 1", lambda: prom.value(attached) == 1)
        query = 'sum(ironpost_packets_total{job="ironpost"})'
        before = wait_until("packets counted", lambda: prom.value(query) is not None and [prom.value(query)])[0]
        ping(lab, 50)
        udp_to(lab, 19, 30)
        wait_until("packet counters rise", lambda: prom.value(query) >= before + 80)  # type: ignore[operator]
        dropped = 'ironpost_dropped_packets_total{job="ironpost",protocol="udp"}'
        wait_until("drops seen", lambda: prom.value(dropped) == 30)
        assert prom.value('ironpost_rule_hits_total{rule_id="drop-chargen"}') == 30
        assert prom.query('ALERTS{alertname="IronpostPortScan"}') == []

        scan = netlab.ns_run(
            lab.ns, "nmap", "-sS", "-Pn", "-n", "--send-ip", "-T4", "--max-retries", "0", "-p", "1-200",
            lab.host_ip4, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert scan.returncode == 0, scan.stdout + scan.stderr
        agent.wait_for("port_scan raised", timeout=15)
        firing = 'ALERTS{alertname="IronpostPortScan",alertstate="firing"}'
        alerts = wait_until("the port-scan alert fires", lambda: prom.query(firing), timeout=60)
        labels = alerts[0]["metric"]
        assert labels["severity"] == "warning" and labels["service"] == "ironpost" and labels["category"] == "attack"
        assert labels["instance"] == target
        assert prom.query('ALERTS{alertname="IronpostXdpDetached"}') == []
        assert prom.value('ironpost_alerts_total{detector="port_scan"}') == 1

        # Every query of the dashboard is valid PromQL and finds data.
        dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
        for panel in dashboard["panels"]:
            for t in panel.get("targets", []):
                expr = t["expr"].replace("$__rate_interval", "1m").replace("$instance", ".*")
                assert prom.query(expr) != [] or "lost" in expr or "topk" in expr, (panel["title"], expr)
    assert prom.proc is not None and prom.proc.poll() is not None  # stopped and reaped
