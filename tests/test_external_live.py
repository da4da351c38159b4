"""BLOCKLIST written by another tool while the agent runs: ``bpftool map update`` with the seed's layout
(key the IPv4 source in network order, value the action DROP 1 then zeros) drops that namespace host's
datagrams within 1 s, ``bpftool map delete`` lets them through again within 1 s; with and without
``--persist`` (then through the pinned map), and what happens with no controller running.

The agents are ``ironpost-tui IFACE --headless`` subprocesses on a netlab veth (tests/support/agents.py);
the receivers are UDP sockets on the host side, the senders sockets in the lab's namespace: the lab's
own address, and a second address of the namespace in the same /24 (so in the same ADDR_FILTER bucket)
that no write names, which must keep passing.  Each test kills its agents and runs ``ironpost-tui
cleanup`` at the end, also when it fails.
"""

from __future__ import annotations

import ipaddress
import json
import secrets
import select
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from support import bpftool, netlab
from support.agents import PIN_ROOT, Agent, AgentPool, agent_env, ready_info, xdp_progs
from support.metrics_lab import sample, scrape, wait_until

from ironpost_tui.kernel import abi

pytestmark = pytest.mark.root

DEADLINE = 1.0  # the issue's: an entry takes effect, or stops, within 1 s of the write


class Probe:
    """Datagrams to ``host_ip4`` from a namespace source, then a v6 sentinel: once the sentinel is at
    its socket every datagram before it went through the program (native XDP on veth keeps order)."""

    def __init__(self, lab: netlab.Lab, sources: list[str]) -> None:
        self.lab = lab
        self.rx4 = netlab.udp_receiver(lab.host_ip4)
        self.rx6 = netlab.udp_receiver(lab.host_ip6)
        self.tx = {src: netlab.udp_sender(lab, src) for src in sources}
        self.tx6 = netlab.udp_sender(lab, lab.ns_ip6)
        self._round = 0

    @staticmethod
    def _drain(sock: object) -> list[bytes]:
        got = []
        while True:
            try:
                got.append(sock.recv(2048))  # type: ignore[attr-defined]
            except BlockingIOError:
                return got

    def burst(self, src: str, n: int = 20, timeout: float = 3.0) -> int:
        """Send ``n`` datagrams from ``src``, then the sentinel; how many of the ``n`` arrived."""
        self._round += 1
        tag = b"%s-%d-" % (src.encode(), self._round)
        self._drain(self.rx4)
        for i in range(n):
            self.tx[src].sendto(tag + b"%d" % i, (self.lab.host_ip4, self.rx4.getsockname()[1]))
        sentinel = tag + b"sentinel"
        self.tx6.sendto(sentinel, (self.lab.host_ip6, self.rx6.getsockname()[1]))
        end = time.monotonic() + timeout
        while sentinel not in self._drain(self.rx6):
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError("the IPv6 sentinel never arrived")
            select.select([self.rx6], [], [], min(left, 0.05))
        return sum(1 for d in self._drain(self.rx4) if d.startswith(tag))

    def close(self) -> None:
        for s in (self.rx4, self.rx6, self.tx6, *self.tx.values()):
            s.close()


@pytest.fixture
def second(lab: netlab.Lab) -> Iterator[str]:
    """A second address of the lab's namespace, in its /24 but outside the lab's /30, unused on the host."""
    in_use = subprocess.run(["ip", "-j", "addr", "show"], capture_output=True, text=True, check=True).stdout
    used = {a["local"] for link in json.loads(in_use) for a in link.get("addr_info", []) if "local" in a}
    lab_net = ipaddress.ip_network(lab.net4)
    free = [
        str(a)
        for a in ipaddress.ip_network(f"{lab.ns_ip4}/24", strict=False).hosts()
        if a not in lab_net and str(a) not in used
    ]
    addr = secrets.choice(free)
    assert netlab.allowed_address(addr)
    netlab.ns_run(lab.ns, "ip", "addr", "add", f"{addr}/32", "dev", lab.peer_if, check=True)
    try:
        yield addr
    finally:  # goes with the namespace anyway
        netlab.ns_run(lab.ns, "ip", "addr", "del", f"{addr}/32", "dev", lab.peer_if, capture_output=True)


@pytest.fixture
def probe(lab: netlab.Lab, second: str) -> Iterator[Probe]:
    p = Probe(lab, [lab.ns_ip4, second])
    try:
        yield p
    finally:
        p.close()


def start(agents: AgentPool, lab: netlab.Lab, tmp_path: Path, persist: bool, protect: str = "") -> tuple[Agent, int]:
    config = tmp_path / "ironpost.toml"
    config.write_text(f"[safety]\nprotect_host_addresses = true\nprotect = [{protect and repr(protect)}]\n")
    args = ["--config", str(config), "--state-dir", str(tmp_path / "state"), "--audit-log", str(tmp_path / "audit.log")]
    agent = agents.start(lab.host_if, *args, *(["--persist"] if persist else []), env=agent_env())
    mode, prog_id = ready_info(agent.wait_ready())
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    return agent, prog_id


def handles(lab: netlab.Lab, prog_id: int, persist: bool) -> dict[str, tuple[str, str]]:
    """bpftool's handles of BLOCKLIST and STATS: the pinned files with --persist, else the map ids."""
    if persist:
        return {name: ("pinned", str(PIN_ROOT / lab.host_if / name)) for name in ("BLOCKLIST", "STATS")}
    maps = bpftool.prog_maps(prog_id, expect=("BLOCKLIST", "STATS"))
    return {name: ("id", str(maps[name])) for name in ("BLOCKLIST", "STATS")}


def drops(stats: tuple[str, str]) -> int:
    """STATS' drops, all protocols (the TOTAL row), summed over CPUs."""
    return bpftool.percpu_sums(stats, abi.PROTO_STATS)[abi.STATS_TOTAL][2]


def seconds_until(cond: Callable[[], bool], since: float, limit: float = DEADLINE + 4.0) -> float:
    """Seconds from ``since`` until ``cond()`` holds; AssertionError past ``limit``."""
    while not cond():
        if time.monotonic() - since > limit:
            raise AssertionError(f"not within {limit} s")
    return time.monotonic() - since


def audited(tmp_path: Path) -> list[tuple[str, str | None, str]]:
    path = tmp_path / "audit.log"
    lines = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
    return [(e["change"], e.get("rule", {}).get("id"), e["via"]) for e in lines]


def metrics_port(agent: Agent) -> int:
    return int(agent.argv[agent.argv.index("--metrics-port") + 1])


@pytest.mark.parametrize("persist", [False, True], ids=["running", "persist"])
def test_bpftool_update_drops_within_a_second_and_delete_lets_through_again(
    lab: netlab.Lab, agents: AgentPool, probe: Probe, second: str, tmp_path: Path, persist: bool
) -> None:
    agent, prog_id = start(agents, lab, tmp_path, persist)
    h = handles(lab, prog_id, persist)
    ns, rule_id = lab.ns_ip4, f"external:{lab.ns_ip4}"

    # Before the write: both namespace addresses pass.
    assert probe.burst(ns) == 20 and probe.burst(second) == 20
    dropped = drops(h["STATS"])

    t0 = time.monotonic()
    bpftool.blocklist_update(h["BLOCKLIST"], ns)  # the seed's key and value, nothing else written
    took = seconds_until(lambda: probe.burst(ns, 5) == 0, t0)
    assert took <= DEADLINE, f"dropped only {took:.2f} s after the write"
    before = drops(h["STATS"])
    assert before > dropped
    assert probe.burst(ns) == 0
    assert drops(h["STATS"]) - before == 20  # STATS counts each dropped datagram
    assert probe.burst(second) == 20  # another namespace address, same /24: still passes
    # The value is the rule's now: the action as written, marked as another tool's.
    value = bpftool.blocklist_lookup(h["BLOCKLIST"], ns)
    assert value is not None and value[0] == abi.ACTION_DROP and value[2] == abi.ORIGIN_EXTERNAL

    # In the audit, the log and /metrics.
    wait_until("the add in the audit", lambda: ("add", rule_id, "external") in audited(tmp_path), 2, 0.05)
    assert agent.wait_for(f"audit: add {rule_id} by unknown via external")
    port = metrics_port(agent)
    wait_until(
        "external hits in /metrics",
        lambda: (sample(scrape(port), "ironpost_rule_hits_total", rule_id="external") or 0) >= 20,
        timeout=5,
        every=0.2,
    )
    assert sample(scrape(port), "ironpost_rule_hits_total", rule_id=rule_id) is None  # no address as a label

    if persist:
        # A restart adopts the pinned maps: the entry is still another tool's (its value says so), in force
        # throughout, not taken in again, and still the tool's to delete.
        agent.send(signal.SIGTERM)
        assert agent.wait() == 0, agent.describe()
        assert probe.burst(ns) == 0
        agent, _prog = start(agents, lab, tmp_path, persist)
        assert probe.burst(ns) == 0 and probe.burst(second) == 20
        assert [c for c in audited(tmp_path) if c[1] == rule_id] == [("add", rule_id, "external")]

    t1 = time.monotonic()
    bpftool.blocklist_delete(h["BLOCKLIST"], ns)
    took = seconds_until(lambda: probe.burst(ns, 5) == 5, t1)
    assert took <= DEADLINE, f"still dropped {took:.2f} s after the delete"
    after = drops(h["STATS"])
    assert probe.burst(ns) == 20 and drops(h["STATS"]) == after
    wait_until("the delete in the audit", lambda: audited(tmp_path)[-1] == ("delete", rule_id, "external"), 2, 0.05)
    assert bpftool.blocklist_lookup(h["BLOCKLIST"], ns) is None  # nothing re-created

    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


def test_with_no_controller_other_writes_wait_for_the_next_persist_start(
    lab: netlab.Lab, agents: AgentPool, probe: Probe, second: str, tmp_path: Path
) -> None:
    """What the README says of a --persist interface whose controller is not running."""
    agent, prog_id = start(agents, lab, tmp_path, persist=True)
    h = handles(lab, prog_id, persist=True)
    ns = lab.ns_ip4
    bpftool.blocklist_update(h["BLOCKLIST"], ns)
    seconds_until(lambda: probe.burst(ns, 5) == 0, time.monotonic())
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert xdp_progs(lab.ifindex) != []  # the pinned program enforces on

    # No controller: a delete does not stop the drop (the program finds the source in EXACT4, which
    # only a controller writes), and a new entry drops nothing (no filter bit leads to it).
    bpftool.blocklist_delete(h["BLOCKLIST"], ns)
    bpftool.blocklist_update(h["BLOCKLIST"], second)
    time.sleep(DEADLINE + 0.5)
    assert probe.burst(ns) == 0
    assert probe.burst(second) == 20
    assert bpftool.blocklist_lookup(h["BLOCKLIST"], second) == bpftool.seed_value(abi.ACTION_DROP)

    # The next --persist start settles both before it says ready: what BLOCKLIST holds is what is enforced.
    agent, _prog = start(agents, lab, tmp_path, persist=True)
    assert probe.burst(ns) == 20 and probe.burst(second) == 0
    assert ("add", f"external:{second}", "external") in audited(tmp_path)
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()


def test_a_drop_written_for_a_protected_address_is_deleted_and_never_enforced(
    lab: netlab.Lab, agents: AgentPool, probe: Probe, second: str, tmp_path: Path
) -> None:
    """Anti-lockout for other writers: the entry for the protected source goes, with an audit line and a
    warning; the same write for another address of the namespace drops (the positive control)."""
    agent, prog_id = start(agents, lab, tmp_path, persist=False, protect=lab.ns_ip4)
    h = handles(lab, prog_id, persist=False)
    ns = lab.ns_ip4
    t0 = time.monotonic()
    bpftool.blocklist_update(h["BLOCKLIST"], ns)
    bpftool.blocklist_update(h["BLOCKLIST"], second)
    assert seconds_until(lambda: probe.burst(second, 5) == 0, t0) <= DEADLINE
    assert probe.burst(ns) == 20  # protected: passes
    assert agent.wait_for(f"BLOCKLIST entry for {ns} written by another tool refused: it would drop {ns}")
    assert bpftool.blocklist_lookup(h["BLOCKLIST"], ns) is None  # deleted: enforced by nobody, ever
    assert bpftool.blocklist_lookup(h["BLOCKLIST"], second) is not None
    changes = audited(tmp_path)
    assert ("refuse", f"external:{ns}", "external") in changes and ("add", f"external:{second}", "external") in changes
    assert probe.burst(ns) == 20 and probe.burst(second) == 0
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
