"""A capture killed with ``kill -9`` leaves CAPTURE_CFG on; the agent that owns the program turns it off.

The engine checks at each stats sample: CAPTURE_CFG on while nobody holds the interface's capture
lock is a capture whose process is gone.  Real agent, real capture processes, CAPTURE_CFG read from
the kernel with bpftool; the agent's samples are counted through its /metrics
(``ironpost_last_sample_timestamp_seconds``), so "a few samples later" is what it says.
"""

from __future__ import annotations

import os
import re
import signal
import sys
from pathlib import Path

import pytest
from scapy.layers.inet import IP, UDP
from support import bpftool, netlab
from support.agents import IRONPOST, Agent, AgentPool, agent_env, ready_info
from support.metrics_lab import free_port, sample, scrape, wait_until
from support.verdicts import open_env

from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.capture import CaptureFilter, CaptureMaps, stop_orphaned

pytestmark = pytest.mark.root

PORT = 40125
WRITTEN = re.compile(r"wrote (?P<written>\d+) packets .* captured (?P<captured>\d+) ")


def capture_cfg_enabled(map_id: int) -> bool:
    """CAPTURE_CFG's ``enabled`` (its first u32) as the kernel holds it."""
    found = bpftool.run_json("map", "lookup", "id", str(map_id), "key", *bpftool.hexbytes(bytes(4)))
    value = bytes(int(b, 16) for b in found["value"])
    return int.from_bytes(value[:4], "little") != 0


def last_sample(port: int) -> float:
    value = sample(scrape(port), "ironpost_last_sample_timestamp_seconds")
    assert value is not None
    return value


def wait_samples(port: int, n: int, timeout: float = 30.0) -> None:
    """Until the agent has taken ``n`` more stats samples (each one also checks for an orphaned capture)."""
    seen = {last_sample(port)}
    wait_until(f"{n} more stats samples", lambda: seen.add(last_sample(port)) or len(seen) > n, timeout)


def start_capture(lab: netlab.Lab, out: Path, *limits: str) -> Agent:
    return Agent([*IRONPOST, "capture", lab.host_if, "--port", str(PORT), *limits, "-w", str(out)], env=agent_env())


def test_a_killed_capture_is_turned_off_by_the_agent(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """While a capture runs, CAPTURE_CFG stays on over several samples (negative control); after its process
    is killed (SIGKILL: no clean-up of its own), the agent turns CAPTURE_CFG off within seconds and says so
    once; a new capture afterwards captures and exits 0, and leaves CAPTURE_CFG off without another warning."""
    metrics = free_port()
    agent = agents.start(lab.host_if, "--state-dir", str(tmp_path / "state"), "--audit-log", str(tmp_path / "audit"),
                         "--metrics-port", str(metrics), env=agent_env())  # fmt: skip
    _, prog_id = ready_info(agent.wait_ready())
    cfg = bpftool.prog_maps(prog_id, expect=("CAPTURE_CFG",))["CAPTURE_CFG"]
    warning = f"capture on {lab.host_if} left running by a process that is gone (killed?): stopped"
    assert not capture_cfg_enabled(cfg)

    doomed = start_capture(lab, tmp_path / "killed.pcapng", "--seconds", "120")
    try:
        doomed.wait_for(f"capturing on {lab.host_if} (program {prog_id})", timeout=30)
        assert capture_cfg_enabled(cfg)
        wait_samples(metrics, 3)  # negative control: a live capture holds its lock
        assert capture_cfg_enabled(cfg), agent.describe()
        assert doomed.proc.poll() is None, doomed.describe()
        assert warning not in agent.stdout

        doomed.send(signal.SIGKILL)
        assert doomed.wait(10) == -signal.SIGKILL
    finally:
        doomed.kill()
    wait_until("CAPTURE_CFG off after the capture was killed", lambda: not capture_cfg_enabled(cfg), timeout=10)
    agent.wait_for(warning, timeout=10)

    n = 5
    frames = [
        netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / UDP(sport=6000 + i, dport=PORT) / b"after")
        for i in range(n)
    ]
    again = start_capture(lab, tmp_path / "again.pcapng", "--count", str(n), "--seconds", "60")
    try:
        again.wait_for(f"capturing on {lab.host_if} (program {prog_id})", timeout=30)
        assert capture_cfg_enabled(cfg)
        wait_samples(metrics, 2)  # the new capture holds the lock: left alone
        assert capture_cfg_enabled(cfg), agent.describe()
        netlab.send_frames(lab, frames)
        assert again.wait(60) == 0, again.describe()
    finally:
        again.kill()
    done = WRITTEN.search(again.stdout)
    assert done and int(done["written"]) == int(done["captured"]) == n, again.describe()
    assert not capture_cfg_enabled(cfg)
    wait_samples(metrics, 2)
    assert agent.stdout.count(warning) == 1, agent.describe()
    assert agent.proc.poll() is None, agent.describe()


HOLD_LOCK = """
import sys, time
from ironpost_tui.kernel import host
host.InterfaceLock(sys.argv[1], "capture").acquire()
print("held", flush=True)
time.sleep(300)
"""


def test_capture_cfg_is_left_alone_while_any_process_holds_the_capture_lock() -> None:
    """stop_orphaned against a real program's CAPTURE_CFG, the capture lock held by another live process (as
    a capture holds it from before its first write of CAPTURE_CFG to after its last): left on, however often
    asked.  Once that process is killed: off, exactly once, and the lock free again."""
    iface = f"ipo{os.getpid() % 100_000}"  # the lock is by name: no interface needed, none shared with a test beside
    with open_env() as env:
        maps = CaptureMaps(libbpf.prog_info(env.dp.prog_fd).id)
        holder = Agent([sys.executable, "-c", HOLD_LOCK, iface], env=agent_env())
        try:
            holder.wait_for("held", timeout=30)
            assert host.InterfaceLock(iface, "capture").holder() == holder.pid
            maps.configure(CaptureFilter(port=PORT))
            assert [stop_orphaned(maps, iface) for _ in range(3)] == [False] * 3
            assert maps.enabled()
            holder.send(signal.SIGKILL)
            assert holder.wait(10) == -signal.SIGKILL
            assert stop_orphaned(maps, iface)
            assert not maps.enabled()
            assert not stop_orphaned(maps, iface)  # off already: nothing to do
            assert host.InterfaceLock(iface, "capture").holder() is None
        finally:
            holder.kill()
            maps.configure(None)
            maps.close()
            host.InterfaceLock(iface, "capture").path.unlink(missing_ok=True)
