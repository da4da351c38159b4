"""ironpost as a CrowdSec bouncer against a real LAPI (the distribution's crowdsec, run alone by the
``lapi`` fixture): ``cscli decisions add`` drops the lab namespace's datagrams within poll_interval + 1 s,
``cscli decisions delete`` lets them through again, a range drops the whole range, a short decision stops
dropping at its expiry, a decision on a protected address is skipped and counted, and a LAPI that goes
away leaves the decisions in force (a decision added after its restart is applied); with ``--persist`` a
decision stays in force while no agent runs, and the restarted agent follows the LAPI (one deleted meanwhile
goes at its first pull).

The agent is ``ironpost-tui IFACE --headless --config FILE`` with ``[crowdsec] poll_interval = 1`` on a
netlab veth; the traffic is UDP from the lab's namespace to the host side (support/traffic.py), whose IPv6
sentinel is the positive control: it always passes.
"""

from __future__ import annotations

import ipaddress
import signal
import time
from pathlib import Path

import pytest
from support import netlab
from support.agents import Agent, AgentPool, one_error_line, xdp_progs
from support.crowdsec import Lapi
from support.metrics_lab import AgentFiles, sample, scrape, wait_until
from support.traffic import Probe

pytestmark = pytest.mark.root

POLL = 1.0
BOUND = POLL + 1.0  # the issue's: within poll_interval + 1 s


def _start(
    agents: AgentPool, lab: netlab.Lab, lapi: Lapi, tmp_path: Path, extra: str = "", *args: str, key: Path | None = None
) -> tuple[Agent, int]:
    key = key or lapi.add_bouncer()
    files = AgentFiles.make(
        tmp_path,
        extra=f"""
[crowdsec]
lapi_url = "{lapi.url}"
api_key_file = "{key}"
poll_interval = {POLL}
timeout = 2
{extra}
""",
    )
    agent = agents.start(lab.host_if, *files.args(), *args)
    agent.wait_ready()
    port = int(agent.argv[agent.argv.index("--metrics-port") + 1])
    wait_until("the first pull", lambda: (sample(scrape(port), "ironpost_crowdsec_pulls_total", result="ok") or 0) >= 1)
    return agent, port


def _metric(port: int, name: str, **labels: str) -> float:
    return sample(scrape(port), name, **labels) or 0.0


def test_ban_unban(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    _agent, port = _start(agents, lab, lapi, tmp_path)
    assert probe.burst() == 20  # negative control: no decision, everything passes
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "1m")
    probe.until(passes=False, within=BOUND)
    assert probe.burst() == 0
    wait_until("one decision in force", lambda: _metric(port, "ironpost_crowdsec_decisions") == 1)
    wait_until("hits under rule_id crowdsec", lambda: _metric(port, "ironpost_rule_hits_total", rule_id="crowdsec") > 0)
    assert f'rule_id="crowdsec:{lab.ns_ip4}"' not in scrape(port)  # never per address
    lapi.cscli("decisions", "delete", "--ip", lab.ns_ip4)
    probe.until(passes=True, within=BOUND)
    assert probe.burst() == 20
    wait_until("no decision in force", lambda: _metric(port, "ironpost_crowdsec_decisions") == 0)


def test_range(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    _start(agents, lab, lapi, tmp_path)
    other = "198.18.250.0/24" if not lab.net4.startswith("198.18.250.") else "198.18.251.0/24"
    lapi.cscli("decisions", "add", "--range", other, "--duration", "1m")  # negative control: not the lab's range
    time.sleep(BOUND)  # a pull or more has happened: the range elsewhere changes nothing here
    assert probe.burst() == 20
    # The namespace's /31: the lab's /30 holds the host side's address, protected (an address of this host).
    pair = ipaddress.ip_network(f"{lab.ns_ip4}/31", strict=False)
    assert ipaddress.ip_address(lab.host_ip4) not in pair
    lapi.cscli("decisions", "add", "--range", str(pair), "--duration", "1m")
    probe.until(passes=False, within=BOUND)
    assert probe.burst() == 0


def test_expiry(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    _start(agents, lab, lapi, tmp_path)
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "6s")
    t0 = time.monotonic()
    probe.until(passes=False, within=BOUND)
    # It drops until its expiry (6 s from the add), then passes: within a sample interval of it.
    probe.until(passes=True, within=6.0 + 2.0)
    assert time.monotonic() - t0 >= 6.0 - BOUND, "passed again before the decision expired"


def test_protected(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    agent, port = _start(agents, lab, lapi, tmp_path, extra=f'\n[safety]\nprotect = ["{lab.ns_ip4}"]\n')
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "1m")
    agent.wait_for(f"CrowdSec decision on {lab.ns_ip4} skipped", timeout=BOUND + 5)
    assert probe.burst() == 20
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "2m")  # again: counted, not logged again
    time.sleep(BOUND + 1)
    assert probe.burst() == 20
    assert agent.stdout.count(f"CrowdSec decision on {lab.ns_ip4} skipped") == 1
    wait_until("both counted", lambda: _metric(port, "ironpost_crowdsec_protected_skipped_total") == 2)
    assert _metric(port, "ironpost_crowdsec_decisions") == 0


def test_outage(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    _agent, port = _start(agents, lab, lapi, tmp_path)
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "5m")
    probe.until(passes=False, within=BOUND)
    lapi.stop()
    wait_until("a failed pull", lambda: _metric(port, "ironpost_crowdsec_pulls_total", result="error") >= 2)
    assert probe.burst() == 0  # in force while the LAPI is away
    lapi.start()
    ok = _metric(port, "ironpost_crowdsec_pulls_total", result="ok")
    lapi.cscli("decisions", "add", "--ip", "198.18.253.7", "--duration", "5m")
    # Backoff is at most 60 s; the decision is applied at the first pull after the restart.
    wait_until("the new decision", lambda: _metric(port, "ironpost_crowdsec_decisions") == 2, timeout=90)
    assert _metric(port, "ironpost_crowdsec_pulls_total", result="ok") > ok
    assert probe.burst() == 0


def test_unsafe_key_file_stops_the_start(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, tmp_path: Path) -> None:
    key = lapi.add_bouncer()
    key.chmod(0o644)  # readable by others
    files = AgentFiles.make(tmp_path, extra=f'[crowdsec]\nlapi_url = "{lapi.url}"\napi_key_file = "{key}"\n')
    done = agents.run(lab.host_if, *files.args())
    assert done.returncode == 2, done.stderr
    line = one_error_line(done.stderr)
    assert f"api_key_file {key} is readable by its group or others" in line and "chmod 600" in line, line
    assert xdp_progs(lab.ifindex) == []  # refused before anything was attached
    key.chmod(0o600)  # the positive control: the same start goes through
    agent = agents.start(lab.host_if, *files.args())
    agent.wait_ready()


def test_a_persisted_restart_follows_the_lapi(
    agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path
) -> None:
    """The decisions a persisted run leaves pinned are held again as decisions, not adopted as rules (they
    came back as pinned-N rules on one slot, which the file's rules then replaced: the source passed until
    the LAPI answered, and the slot was freed once per decision)."""
    key = lapi.add_bouncer()
    first, _ = _start(agents, lab, lapi, tmp_path, "", "--persist", key=key)
    lapi.cscli("decisions", "add", "--ip", lab.ns_ip4, "--duration", "5m")
    probe.until(passes=False, within=BOUND)
    first.send(signal.SIGTERM)
    assert first.wait() == 0, first.describe()
    assert probe.burst() == 0  # the pinned program enforces it, no agent running

    lapi.stop()  # restarted while the LAPI is away: no pull says what is in force
    try:
        files = AgentFiles.make(tmp_path, extra=f"""
[crowdsec]
lapi_url = "{lapi.url}"
api_key_file = "{key}"
poll_interval = {POLL}
timeout = 2
""")  # fmt: skip
        second = agents.start(lab.host_if, *files.args(), "--persist")
        second.wait_ready()
        port = int(second.argv[second.argv.index("--metrics-port") + 1])
        wait_until("a failed pull", lambda: _metric(port, "ironpost_crowdsec_pulls_total", result="error") >= 1)
        assert probe.burst() == 0  # still in force
        assert _metric(port, "ironpost_crowdsec_decisions") == 1
        assert "pinned-" not in scrape(port)  # no rule made of it
    finally:
        lapi.start()
    second.send(signal.SIGTERM)
    assert second.wait() == 0, second.describe()

    lapi.cscli("decisions", "delete", "--ip", lab.ns_ip4)  # while no agent runs
    assert probe.burst() == 0
    _third, port = _start(agents, lab, lapi, tmp_path, "", "--persist", key=key)
    probe.until(passes=True, within=BOUND)  # the first full pull sweeps it
    assert probe.burst() == 20
    wait_until("no decision in force", lambda: _metric(port, "ironpost_crowdsec_decisions") == 0)
