"""The library API on a veth lab (README, "Use as a library"): the real engine, real packets.

* The README's example, taken from the README by this test (so the two cannot drift) and run as
  the script it is, as root, on the lab: the rule it adds drops (a socket receives nothing, the
  kernel's drop counter says so), ``get_stats()`` counts every packet, ``to_prometheus()`` passes
  ``promtool check metrics``, and the event iterator yields exactly the matched packets.  It runs
  in a private mount namespace with a temporary directory bound over /var/log, so its audit log
  (the library's default, /var/log/ironpost/audit.log) lands where the test can read it and the
  host's /var/log is never touched.
* A consumer that does not keep up: the overflow is counted, the engine never waits, and its
  counters equal what the namespace sent.
* Anti-lockout through the API, the project's error type, nothing applied.
* A detector set through the builder raises its alert; an interface that disappears ends the
  event stream with the project's error; start() raises the project's errors, and a second engine
  on an interface is refused as a second agent is.

Traffic only between the lab's namespace and the host side of its veth (198.18.0.0/15, 2001:db8::/32).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import re
import select
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scapy.layers.inet import IP, TCP
from support import bpftool, netlab
from support.agents import Agent, xdp_progs
from support.common import REPO
from support.metrics_lab import sample

from ironpost_tui import (
    AlreadyRunning,
    ChangeKind,
    EbpfEngine,
    EngineConfig,
    FilterRule,
    InterfaceGone,
    LockoutRefused,
    NoSuchInterface,
    NotRunning,
    RuleAction,
    RuleRefused,
    SynFloodConfig,
    SynFloodDetector,
    Verdict,
)

pytestmark = pytest.mark.root

PAYLOAD = b"p" * 32  # frames of 74 bytes (IPv4) and 94 (IPv6): above Ethernet's minimum, nothing padded
FRAME4, FRAME6 = 14 + 20 + 8 + len(PAYLOAD), 14 + 40 + 8 + len(PAYLOAD)
START_TIMEOUT = 90.0  # BCC compiles at start: about a second alone, much more on a busy machine


def readme_example() -> str:
    """The first ```python block of the README's "Use as a library" section."""
    text = (REPO / "README.md").read_text()
    start = text.index("\n## Use as a library\n")
    section = text[start : text.index("\n## ", start + 1)]
    found = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert found is not None, "no python block in the README's Use as a library section"
    return found.group(1)


class Udp:
    """The namespace host sending datagrams to sockets bound on the host side."""

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.rx4 = netlab.udp_receiver(lab.host_ip4)
        self.rx6 = netlab.udp_receiver(lab.host_ip6)
        self.tx4 = netlab.udp_sender(lab, lab.ns_ip4)
        self.tx6 = netlab.udp_sender(lab, lab.ns_ip6)
        self.port4 = self.rx4.getsockname()[1]
        self.port6 = self.rx6.getsockname()[1]

    def send4(self, n: int = 1) -> None:
        for _ in range(n):
            self.tx4.sendto(PAYLOAD, (self.lab.host_ip4, self.port4))

    def send6(self, n: int = 1) -> None:
        for _ in range(n):
            self.tx6.sendto(PAYLOAD, (self.lab.host_ip6, self.port6))

    @staticmethod
    def drain(sock: socket.socket, wait: float = 0.0) -> int:
        """Datagrams waiting on ``sock`` (after waiting up to ``wait`` s for the first)."""
        n = 0
        if wait:
            select.select([sock], [], [], wait)
        while True:
            try:
                sock.recv(65535)
            except BlockingIOError:
                return n
            n += 1

    def received(self, sock: socket.socket, count: int, timeout: float = 3.0) -> int:
        """Until ``count`` datagrams have arrived (or the timeout): how many did."""
        got, end = 0, time.monotonic() + timeout
        while got < count and time.monotonic() < end:
            got += self.drain(sock, wait=min(0.1, max(0.0, end - time.monotonic())))
        return got

    def close(self) -> None:
        for s in (self.rx4, self.rx6, self.tx4, self.tx6):
            s.close()


@pytest.fixture
def udp(lab: netlab.Lab) -> Iterator[Udp]:
    u = Udp(lab)
    try:
        yield u
    finally:
        u.close()


def audit_lines(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def stats_map(prog_id: int) -> dict[int, tuple[int, int, int]]:
    """STATS as the kernel holds it (bpftool): row -> (packets, bytes, drops) summed over CPUs."""
    dump = json.loads(bpftool.map_dump(bpftool.prog_maps(prog_id, expect=("STATS",))["STATS"]))
    out = {}
    for entry in dump:
        cpus = [v["value"] for v in entry["formatted"]["values"]]
        out[entry["formatted"]["key"]] = tuple(sum(c[k] for c in cpus) for k in ("packets", "bytes", "drops"))
    return out


# --------------------------------------------------------------------------- #
# the README's example


def test_the_readme_library_example_on_a_veth(lab: netlab.Lab, udp: Udp, tmp_path: Path) -> None:
    n = 25
    script = tmp_path / "block.py"
    script.write_text(readme_example())
    var_log = tmp_path / "var-log"
    var_log.mkdir()

    udp.send4()  # before: the IPv4 socket works (the control for "receives nothing" below)
    assert udp.received(udp.rx4, 1) == 1

    argv = ["unshare", "--mount", "--propagation", "private", "--",
            "sh", "-c", 'mount --bind "$0" /var/log && exec "$@"', str(var_log),
            sys.executable, str(script), lab.host_if, lab.ns_ip4, str(n)]  # fmt: skip
    example = Agent(argv, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        example.wait_for(f"blocking {lab.ns_ip4} on {lab.host_if}", timeout=START_TIMEOUT)
        ((mode, prog_id),) = xdp_progs(lab.ifindex)
        assert mode == "native"
        tx_before = netlab.peer_tx_packets(lab)
        udp.send6()  # not the blocked address: passes, and is counted
        assert udp.received(udp.rx6, 1) == 1
        udp.send4(n)  # the blocked address
        assert example.wait(timeout=30) == 0, example.describe()
        sent = netlab.peer_tx_packets(lab) - tx_before
    finally:
        example.kill()
    assert sent == n + 1
    out = example.out

    # The event iterator yielded exactly the matched packets: the n blocked datagrams, not the IPv6 one.
    events = [line for line in out if line.startswith(("drop:", "monitor:", "protected:", "pass:"))]
    assert events == [f"drop: {lab.ns_ip4} -> {lab.host_ip4}:{udp.port4} (block_attacker)"] * n, example.describe()

    # The rule dropped: the socket got none of them (it got the one sent before, and gets one after).
    assert udp.drain(udp.rx4, wait=0.2) == 0
    assert xdp_progs(lab.ifindex) == []  # stop() detached on the way out of `async with`
    udp.send4()
    assert udp.received(udp.rx4, 1) == 1

    # get_stats() counted every packet since the attach: the IPv6 datagram and the n dropped ones.
    assert f"UDP bytes: {n * FRAME4 + FRAME6}" in out
    assert "TCP packets: 0" in out and "TCP PPS: 0.00" in out

    # to_prometheus(): the /metrics text, which promtool accepts, with the same counts.
    text = "\n".join(out[out.index("TCP PPS: 0.00") + 1 :]) + "\n"
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), (check, text)
    assert sample(text, "ironpost_packets_total", protocol="udp") == n + 1
    assert sum(sample(text, "ironpost_packets_total", protocol=p) or 0 for p in ("tcp", "udp", "icmp", "other")) == sent
    assert sample(text, "ironpost_dropped_packets_total", protocol="udp") == n
    assert sample(text, "ironpost_bytes_total", protocol="udp") == n * FRAME4 + FRAME6
    assert sample(text, "ironpost_rule_hits_total", rule_id="block_attacker") == n
    assert sample(text, "ironpost_events_total") == n
    assert sample(text, "ironpost_xdp_attached", interface=lab.host_if, mode="native") == 1
    assert prog_id > 0

    # The audit: the rule added and removed through the API, in the library's default audit log.
    entries = audit_lines(var_log / "ironpost" / "audit.log")
    changes = [(e["change"], e["via"], e["rule"]["id"] if "rule" in e else None) for e in entries]
    assert changes == [("load", "config", None), ("add", "api", "block_attacker"), ("delete", "api", "block_attacker")]


# --------------------------------------------------------------------------- #
# a slow consumer


def test_a_slow_consumer_counts_overflow_and_the_engine_counts_exactly(
    lab: netlab.Lab, udp: Udp, tmp_path: Path
) -> None:
    n, capacity = 1000, 16
    config = EngineConfig(
        interface=lab.host_if, xdp_mode="native", event_rate_limit=0, audit_log=tmp_path / "audit.log"
    )

    async def scenario() -> None:
        engine, events = EbpfEngine.builder().config(config).channel_capacity(capacity).build()
        async with engine:
            assert engine.report is not None
            prog_id = engine.report.prog_id
            await engine.add_rule(FilterRule(id="watch", src_ip=lab.ns_ip4, action=RuleAction.MONITOR))
            tx_before = netlab.peer_tx_packets(lab)
            udp.send4(n)  # nobody reads the events meanwhile
            # The engine goes on while the channel is full: samples keep coming, every event is counted.
            deadline = time.monotonic() + 10
            stats = await engine.get_stats()
            while stats.events_delivered < n and time.monotonic() < deadline:
                stats = await engine.get_stats()
            sent = netlab.peer_tx_packets(lab) - tx_before
            assert sent == n
            assert udp.received(udp.rx4, n) == n  # monitor: every datagram passed
            assert stats.udp.packets == n and stats.udp.drops == 0 and stats.total.packets == n
            assert stats.udp.bytes == n * FRAME4
            assert stats.events_delivered == n and dict(stats.events_lost) == {"ringbuf_full": 0, "rate_limited": 0}
            assert stats.rule_hits["watch"] == n
            assert stats_map(prog_id)[1] == (n, n * FRAME4, 0)  # STATS[UDP], read by bpftool: the same

            # The channel kept the first `capacity` events and counted the rest.
            assert events.sent == n and len(events) == capacity and events.dropped == n - capacity
            first = [await events.recv() for _ in range(capacity)]
            assert len(events) == 0
            assert all(e is not None and e.rule_id == "watch" and e.verdict is Verdict.MONITOR for e in first)
            stamps = [e.ts for e in first if e is not None]
            assert stamps == sorted(stamps)

            # Read from now on, nothing more is lost.
            udp.send4(5)
            more = [await asyncio.wait_for(events.recv(), 5) for _ in range(5)]
            assert all(e is not None and e.dst_port == udp.port4 for e in more)
            assert events.dropped == n - capacity and events.sent == n + 5
        assert not engine.running
        assert await events.recv() is None  # the stream ends with the engine

    asyncio.run(scenario())


# --------------------------------------------------------------------------- #
# anti-lockout


def test_anti_lockout_through_the_api(lab: netlab.Lab, udp: Udp, tmp_path: Path) -> None:
    audit = tmp_path / "audit.log"
    config = EngineConfig(interface=lab.host_if, xdp_mode="native", protect=[lab.ns_ip4], audit_log=audit)

    async def scenario() -> None:
        engine, events = EbpfEngine.builder().config(config).build()
        async with engine:
            assert engine.report is not None
            blocklist = bpftool.prog_maps(engine.report.prog_id, expect=("BLOCKLIST",))["BLOCKLIST"]
            for rule, why in (
                (FilterRule(id="lockout", src_ip=lab.ns_ip4), "the [safety] protect list"),
                (FilterRule(id="wide", src_ip="198.18.0.0/15"), ""),  # covers the lab's host side too
                (FilterRule(id="self", src_ip=lab.host_ip4), "an address of this host"),
            ):
                with pytest.raises(LockoutRefused) as refused:
                    await engine.add_rule(rule)
                assert isinstance(refused.value, RuleRefused) and refused.value.exit_status == 2
                assert f"rule '{rule.id}' would drop" in refused.value.message and why in refused.value.message
            assert await engine.get_rules() == []  # nothing applied
            assert bpftool.map_keys(blocklist) == []
            udp.send4()
            assert udp.received(udp.rx4, 1) == 1

            # The control: an address nobody protects is blocked.
            await engine.add_rule(FilterRule(id="v6", src_ip=lab.ns_ip6))
            udp.send6()
            assert udp.drain(udp.rx6, wait=0.3) == 0
            assert await engine.remove_rule("v6") == FilterRule(id="v6", src_ip=lab.ns_ip6)
            udp.send6()
            assert udp.received(udp.rx6, 1) == 1

            # Forced, the rule is in force, and the kernel's allowlist still lets the address through.
            await engine.add_rule(FilterRule(id="lockout", src_ip=lab.ns_ip4), force=True)
            udp.send4()
            assert udp.received(udp.rx4, 1) == 1
            seen = [await asyncio.wait_for(events.recv(), 5) for _ in range(2)]
            assert [(e.verdict, e.rule_id) for e in seen if e is not None] == [
                (Verdict.DROP, "v6"),  # the control, dropped
                (Verdict.PROTECTED, "lockout"),  # matched the forced rule, passed
            ]
            assert len(events) == 0
        with pytest.raises(NotRunning):
            await engine.add_rule(FilterRule(id="late", src_ip=lab.ns_ip6))

    asyncio.run(scenario())
    changes = [(e["change"], e["via"], e.get("forced")) for e in audit_lines(audit)]
    assert changes == [("load", "config", None), ("add", "api", None), ("delete", "api", None), ("add", "api", True)]


# --------------------------------------------------------------------------- #
# detectors and failures


def test_a_detector_given_to_the_builder_raises_its_alert(lab: netlab.Lab, tmp_path: Path) -> None:
    detector = SynFloodDetector(SynFloodConfig(window_secs=3, threshold=100, syn_ratio_threshold=0.8))
    config = EngineConfig(interface=lab.host_if, xdp_mode="native", audit_log=tmp_path / "audit.log")
    syn = netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / TCP(sport=40000, dport=9, flags="S"))

    async def scenario() -> None:
        engine, _ = EbpfEngine.builder().config(config).detector(detector).build()
        assert engine.config.syn_flood == detector.config
        async with engine:
            netlab.send_frames(lab, [syn], count=40)  # below the threshold: no alert
            with pytest.raises(asyncio.TimeoutError):
                await asyncio.wait_for(engine.alerts.recv(), 2.0)
            netlab.send_frames(lab, [syn], count=200)
            change = await asyncio.wait_for(engine.alerts.recv(), 5.0)
            assert change is not None and change.kind is ChangeKind.RAISED
            assert change.alert.detector == "syn_flood" and change.alert.source == lab.ns_ip4
            stats = await engine.get_stats()
            assert stats.tcp.packets == 240

    asyncio.run(scenario())


def test_an_interface_that_disappears_ends_the_stream_with_the_error(lab: netlab.Lab, tmp_path: Path) -> None:
    config = EngineConfig(interface=lab.host_if, xdp_mode="native", audit_log=tmp_path / "audit.log")

    async def scenario() -> None:
        engine, events = EbpfEngine.builder().config(config).build()
        await engine.start()
        try:
            assert engine.running and engine.failure is None
            subprocess.run(["ip", "link", "del", "dev", lab.host_if], check=True)
            with pytest.raises(InterfaceGone):
                await asyncio.wait_for(events.__anext__(), 5.0)
            assert isinstance(engine.failure, InterfaceGone) and not engine.running
            with pytest.raises(NotRunning) as late:
                await engine.get_rules()
            assert late.value.__cause__ is engine.failure
        finally:
            await engine.stop()

    asyncio.run(scenario())


def test_start_raises_the_projects_errors_and_one_engine_controls_an_interface(lab: netlab.Lab, tmp_path: Path) -> None:
    config = EngineConfig(interface=lab.host_if, xdp_mode="native", audit_log=tmp_path / "audit.log")

    async def scenario() -> None:
        missing, missing_events = (
            EbpfEngine.builder().config(dataclasses.replace(config, interface="ipx-nonexist0")).build()
        )
        with pytest.raises(NoSuchInterface) as gone:
            await missing.start()
        assert gone.value.exit_status == 6 and not missing.running
        with pytest.raises(NoSuchInterface):
            await missing_events.recv()

        first, _ = EbpfEngine.builder().config(config).build()
        async with first:
            second, _ = EbpfEngine.builder().config(config).build()
            with pytest.raises(AlreadyRunning) as busy:
                await second.start()
            assert busy.value.exit_status == 13 and str(os.getpid()) in busy.value.message
            assert first.running and len(xdp_progs(lab.ifindex)) == 1
            with pytest.raises(NotRunning, match="starts once"):
                await first.start()
        assert xdp_progs(lab.ifindex) == []

    asyncio.run(scenario())


def test_an_engine_built_from_a_configuration_file_follows_it(lab: netlab.Lab, udp: Udp, tmp_path: Path) -> None:
    """As the agent does: the file's rules at start, API edits saved into it, a rewrite of it reloaded."""
    path = tmp_path / "ironpost.toml"
    head = f'[ebpf]\ninterface = "{lab.host_if}"\nxdp_mode = "native"\n'
    v6_rule = f'\n[[ebpf.rules]]\nid = "v6"\nsrc_ip = "{lab.ns_ip6}"\naction = "drop"\n'
    path.write_text(head + v6_rule)
    config = dataclasses.replace(EngineConfig.from_file(path), audit_log=tmp_path / "audit.log")

    async def scenario() -> None:
        engine, _ = EbpfEngine.builder().config(config).build()
        async with engine:
            udp.send6()
            assert udp.drain(udp.rx6, wait=0.3) == 0  # the file's rule is in force
            await engine.add_rule(FilterRule(id="v4", src_ip=lab.ns_ip4, description="added through the API"))
            assert [r.id for r in EngineConfig.from_file(path).rules] == ["v6", "v4"]  # saved into the file

            tmp = path.with_name(".ironpost.toml.tmp")  # the file rewritten as editors do: without "v6"
            tmp.write_text(head + f'\n[[ebpf.rules]]\nid = "v4"\nsrc_ip = "{lab.ns_ip4}"\n')
            tmp.rename(path)
            deadline = time.monotonic() + 5
            while "v6" in [r.id for r in await engine.get_rules()] and time.monotonic() < deadline:
                await asyncio.sleep(0.1)
            assert [r.id for r in await engine.get_rules()] == ["v4"]
            udp.send6()
            assert udp.received(udp.rx6, 1) == 1  # reloaded: passes again
            udp.send4()
            assert udp.drain(udp.rx4, wait=0.3) == 0

    asyncio.run(scenario())
    changes = [(e["change"], e["via"]) for e in audit_lines(tmp_path / "audit.log")]
    assert changes == [("load", "config"), ("add", "api"), ("reload", "file change")]
