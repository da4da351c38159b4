"""A recording made on a veth with the live engine replays to what was seen
live: the same totals (the last sample), events and alerts.  Needs root."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import pytest
from scapy.layers.inet import ICMP, IP, TCP
from support import netlab
from support.common import net

from ironpost_tui.config.store import RuleStore
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.feed import Update
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.records.recording import Recorder, ReplaySource

pytestmark = pytest.mark.root


def test_recording_replays_to_the_live_totals_events_and_alerts(lab: netlab.Lab, tmp_path: Path) -> None:
    out = tmp_path / "live.ipr.gz"
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), store=RuleStore(tmp_path / "r.toml")))
    source = LiveSource(engine, None, Recorder(out))
    live: list[Update] = []
    stop = threading.Event()
    errors: list[BaseException] = []

    def poller() -> None:
        try:
            while not stop.is_set():
                live.append(source.poll(0.1))
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    t = threading.Thread(target=poller)
    with netlab.in_netns(lab.ns):
        udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    recv.bind((lab.host_ip4, 0))
    try:
        source.start()
        t.start()
        source.add_rule(FilterRule("block-ns", Action.DROP, src_ip=net(f"{lab.ns_ip4}/32")))
        source.add_rule(FilterRule("watch-icmp", Action.MONITOR, protocol=1))
        frames = [netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / ICMP(id=i)) for i in range(20)]
        frames += [
            netlab.frame(lab, IP(src=lab.ns_ip4, dst=lab.host_ip4) / TCP(sport=41000 + i, dport=443, flags="S"))
            for i in range(20)
        ]
        for _ in range(3):
            netlab.send_frames(lab, frames)
            for i in range(20):
                udp.sendto(b"d%d" % i, (lab.host_ip4, recv.getsockname()[1]))
            time.sleep(0.4)
        source.delete_rule("block-ns")
        nmap = netlab.ns_run(
            lab.ns, "nmap", "-n", "-Pn", "-sS", "-p", "1-200", "--max-retries", "0", "-T4", lab.host_ip4,
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert nmap.returncode == 0, nmap.stderr
        deadline = time.monotonic() + 10
        while not any(c.alert.detector == "port_scan" for u in live for c in u.alerts):
            assert time.monotonic() < deadline, "no port_scan alert from nmap"
            time.sleep(0.1)
        time.sleep(1.5)  # one more sample after the scan
    finally:
        stop.set()
        if t.is_alive():
            t.join()
        source.close()  # closes the recorder too
        udp.close()
        recv.close()
    assert not errors, errors

    live_events = [e for u in live for e in u.events]
    live_alerts = [c for u in live for c in u.alerts]
    live_samples = [u.sample for u in live if u.sample is not None]
    assert live_events and live_samples
    assert any(e.rule_id == "block-ns" for e in live_events), "no drop event"
    assert any(c.alert.detector == "port_scan" for c in live_alerts)
    assert live_samples[-1].totals["total"].drops > 0

    replay = ReplaySource(out, speed=1e6)
    replay.seek(replay.duration)
    played: list[Update] = []
    while True:
        u = replay.poll(0.0)
        played.append(u)
        if replay.position >= replay.duration and u.sample is None and not u.events and not u.alerts:
            break
        assert len(played) < 10_000
    r_events = [e for u in played for e in u.events]
    r_alerts = [c for u in played for c in u.alerts]
    r_samples = [u.sample for u in played if u.sample is not None]
    assert r_samples[-1].totals == live_samples[-1].totals
    assert r_samples[-1] == live_samples[-1]
    assert len(r_events) == len(live_events)
    assert r_events == live_events
    assert r_alerts == live_alerts
