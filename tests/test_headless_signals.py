"""The headless agent with its metrics endpoint, run as an operator runs it
on a netlab veth pair:

- SIGTERM and SIGHUP detach and exit 0 with the metrics port released; with
  ``--persist`` the pinned program stays in force until ``cleanup``;
- a metrics port in use: exit 14, one line, nothing attached;
- ``--log-format json``: every stdout line a JSON object with event and ts;
- /healthz follows the attachment; ``--no-metrics`` listens nowhere.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import stat
import time
from pathlib import Path

import pytest
from support import bpftool, netlab
from support.agents import AgentPool, cleanup, one_error_line, pins, ready_info, wait_no_xdp, xdp_progs
from support.metrics_lab import MONITOR_UDP_9, AgentFiles, fetch, free_port, port_closed, sample, scrape, wait_until

from ironpost_tui.kernel.host import RUN_DIR

pytestmark = pytest.mark.root


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_detaches_exits_0_and_releases_the_port(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, sig: signal.Signals
) -> None:
    files = AgentFiles.make(tmp_path)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    mode, prog_id = ready_info(agent.wait_ready())
    assert fetch(f"http://127.0.0.1:{port}/healthz")[::2] == (200, b"ok\n")
    assert sample(scrape(port), "ironpost_xdp_attached", interface=lab.host_if, mode=mode) == 1

    t0 = time.monotonic()
    agent.send(sig)
    wait_no_xdp(lab.ifindex, within=1.0, since=t0)
    assert agent.wait() == 0, agent.describe()
    assert port_closed(port), "the metrics port is still open after exit"
    assert f"received {sig.name}" in agent.stdout and f"detached from {lab.host_if}" in agent.stdout
    assert agent.stderr == "", agent.describe()
    assert pins(lab.host_if) == []


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_with_persist_a_signal_leaves_the_program_until_cleanup(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, sig: signal.Signals
) -> None:
    files = AgentFiles.make(tmp_path)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
    mode, prog_id = ready_info(agent.wait_ready())
    agent.send(sig)
    assert agent.wait() == 0, agent.describe()
    assert "left the pinned program enforcing" in agent.stdout
    assert port_closed(port)
    time.sleep(0.3)
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]  # still in force, nobody running
    assert "link" in pins(lab.host_if)

    proc = cleanup(lab.host_if)
    assert proc.returncode == 0, proc
    wait_no_xdp(lab.ifindex, within=1.0)
    assert pins(lab.host_if) == []


def test_a_metrics_port_in_use_exits_14_with_nothing_attached(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    files = AgentFiles.make(tmp_path, rules=MONITOR_UDP_9)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = agents.run(lab.host_if, *files.args(), "--metrics-port", str(port))
    assert proc.returncode == 14, proc
    msg = one_error_line(proc.stderr)
    assert f"127.0.0.1:{port}" in msg and "in use" in msg and "--metrics-port" in msg
    assert "ready:" not in proc.stdout
    assert xdp_progs(lab.ifindex) == [] and pins(lab.host_if) == []
    assert not (RUN_DIR / f"{lab.host_if}.lock").exists()
    assert not files.audit_log.exists()  # not even the rules were loaded


def test_metrics_port_9100_when_asked_for(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    if not port_closed(9100):
        pytest.fail("something (node_exporter?) already listens on 9100 on this machine")
    files = AgentFiles.make(tmp_path)
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", "9100")
    agent.wait_ready()
    assert "metrics on http://127.0.0.1:9100/metrics" in agent.wait_for("metrics on")
    assert sample(scrape(9100), "ironpost_build_info") == 1
    agent.send(signal.SIGINT)
    assert agent.wait() == 0
    assert port_closed(9100)


def test_no_metrics_listens_nowhere(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    port = free_port()
    files = AgentFiles.make(tmp_path, extra=f"[metrics]\nport = {port}\n")
    agent = agents.start(lab.host_if, *files.args(), "--no-metrics")
    agent.wait_ready()
    assert "metrics: off" in agent.stdout
    assert port_closed(port)
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0


def test_port_and_address_from_the_config_file(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    agents.pick_metrics_port = False  # the file decides
    port = free_port()
    files = AgentFiles.make(tmp_path, extra=f'[metrics]\naddr = "127.0.0.1"\nport = {port}\n')
    agent = agents.start(lab.host_if, *files.args())
    mode, _ = ready_info(agent.wait_ready())
    assert sample(scrape(port), "ironpost_xdp_attached", interface=lab.host_if, mode=mode) == 1
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0


def test_json_logs_one_object_per_line(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    port = free_port()
    extra = '[general]\nlog_format = "json"\n[detectors.port_scan]\nport_threshold = 10\n'
    files = AgentFiles.make(tmp_path, rules=MONITOR_UDP_9, extra=extra)
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    agent.wait_ready()

    # A rule change (audit), a scan (alert), then stop.
    files.config.write_text(files.config.read_text().replace('action = "monitor"', 'action = "drop"'))
    agent.send(signal.SIGUSR1)
    agent.wait_for('"event":"reload"', timeout=10)
    with netlab.in_netns(lab.ns):
        for dport in range(1000, 1030):
            s = socket.socket()
            s.setblocking(False)
            try:
                s.connect_ex((lab.host_ip4, dport))
            finally:
                s.close()
    agent.wait_for('"event":"alert"', timeout=15)
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()

    records = [json.loads(line) for line in agent.out]  # every line is JSON
    for r in records:
        assert {"ts", "event", "level", "message"} <= set(r), r
    events = [r["event"] for r in records]
    for expected in ("metrics", "rule_change", "ready", "reload", "alert", "signal", "stopped"):
        assert expected in events, (expected, events)
    alert = next(r for r in records if r["event"] == "alert")
    assert alert["detector"] == "port_scan" and alert["change"] == "raised"
    assert alert["src_ip"] == lab.ns_ip4 and "dst_ip" in alert
    change = [r for r in records if r["event"] == "rule_change"]
    assert change[-1]["via"] in ("signal", "file change") and change[-1]["user"]  # whichever saw it first
    wait_until("stderr empty", lambda: agent.stderr == "", timeout=1)


def test_general_log_level_debug_and_pid_file(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """[general] log_level = "debug" gives debug lines; pid_file holds the agent's pid while it runs
    (a regular 0644 file put in place of a planted link, whose target stays as it was) and is gone
    after it stops.  The negative control of the level (info: no debug line) is in test_files.py."""
    victim = tmp_path / "victim"
    victim.write_text("not a pid file\n")
    pid_path = tmp_path / "run" / "agent.pid"
    pid_path.parent.mkdir()
    pid_path.symlink_to(victim)
    port = free_port()
    files = AgentFiles.make(tmp_path, extra=f'[general]\nlog_level = "debug"\npid_file = "{pid_path}"\n')
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    agent.wait_ready()
    st = pid_path.lstat()
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
    assert pid_path.read_text() == f"{agent.pid}\n"
    assert victim.read_text() == "not a pid file\n"
    scrape(port)  # the endpoint logs each request at debug level
    agent.wait_for(" DEBUG ", timeout=10)
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert not pid_path.exists() and not pid_path.is_symlink()
    assert victim.read_text() == "not a pid file\n"
    assert agent.stderr == "", agent.describe()


def test_healthz_says_when_the_engine_stalls(lab: netlab.Lab, monkeypatch: pytest.MonkeyPatch) -> None:
    """An agent whose tick stops (stuck in the kernel or on a lock) keeps its HTTP thread, and /healthz said
    "ok" over frozen figures for as long as it lasted: nothing expired, detected or pulled meanwhile.  Past
    STALE_SECS without a snapshot it says 503 "stalled"; a tick: 200 again (the control); before the start:
    "not attached".  The real endpoint (metrics/endpoint.serve) over a real engine, ticked by the test."""
    from ironpost_tui.engine import snapshot
    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.metrics import endpoint

    monkeypatch.setattr(snapshot, "STALE_SECS", 1.0)
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=()))
    with endpoint.serve(endpoint.EndpointOptions(port=0), lab.host_if, engine.snapshot) as server:
        assert server is not None
        url = f"http://127.0.0.1:{server.port}/healthz"
        assert fetch(url)[::2] == (503, b"not attached\n")
        engine.start()
        try:
            engine.tick(timeout_ms=0)
            assert fetch(url)[::2] == (200, b"ok\n")
            time.sleep(1.3)  # no tick, as a stuck one
            status, _, body = fetch(url)
            assert status == 503 and body.startswith(b"stalled: the engine has not sampled for"), body
            engine.tick(timeout_ms=0)  # a sample is due: a snapshot published
            assert fetch(url)[::2] == (200, b"ok\n")
        finally:
            engine.close()


def _link_of(ifindex: int, prog_id: int) -> int:
    from ironpost_tui.kernel.xdp_link import _xdp_links

    links = _xdp_links(ifindex)
    assert prog_id in links, f"no link holds prog {prog_id} on ifindex {ifindex}: {links}"
    return links[prog_id]


def test_a_link_detached_by_another_process_ends_the_agent_with_17(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """`bpftool link detach` by another root process leaves the interface unfiltered, while the agent,
    /healthz and ironpost_xdp_attached said attached over counters that stopped (read as traffic that
    stopped): the agent says so in one line and exits 17 within a sample or two."""
    import subprocess

    files = AgentFiles.make(tmp_path)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--metrics-port", str(port))
    mode, prog_id = ready_info(agent.wait_ready())
    assert fetch(f"http://127.0.0.1:{port}/healthz")[::2] == (200, b"ok\n")  # the control
    subprocess.run(["bpftool", "link", "detach", "id", str(_link_of(lab.ifindex, prog_id))], check=True)
    assert xdp_progs(lab.ifindex) == []
    assert agent.wait(timeout=10) == 17, agent.describe()
    line = one_error_line(agent.stderr)
    assert f"detached from {lab.host_if} by another process" in line and "not filtered" in line, line
    assert port_closed(port)


def test_persist_refuses_a_pinned_link_that_holds_nothing(lab: netlab.Lab, agents: AgentPool, tmp_path: Path) -> None:
    """A link pinned by --persist, then detached by another process: adopted, it would enforce nothing while
    the agent said it did.  Refused with exit 9 and the cleanup to run; after cleanup, a start attaches."""
    import subprocess

    files = AgentFiles.make(tmp_path)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
    mode, prog_id = ready_info(agent.wait_ready())
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]  # the control: pinned, enforcing
    try:
        subprocess.run(["bpftool", "link", "detach", "id", str(_link_of(lab.ifindex, prog_id))], check=True)
        assert xdp_progs(lab.ifindex) == [] and "link" in pins(lab.host_if)
        proc = agents.run(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
        assert proc.returncode == 9, proc
        line = one_error_line(proc.stderr)
        assert "no longer holds a program" in line and f"ironpost-tui cleanup {lab.host_if}" in line, line
        assert xdp_progs(lab.ifindex) == []
    finally:
        assert cleanup(lab.host_if).returncode == 0
    assert pins(lab.host_if) == []
    again = agents.start(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
    again.wait_ready()
    again.send(signal.SIGTERM)
    assert again.wait() == 0, again.describe()
    assert cleanup(lab.host_if).returncode == 0


def test_a_program_put_on_the_link_by_another_process_is_seen_at_the_next_sample(lab: netlab.Lab) -> None:
    """BPF_LINK_UPDATE through the link's id (root's) puts another program on ironpost's link: the interface
    still has an XDP program, on the same link and ifindex, but not ours.  Seen at the next sample: the tick
    says detached and the snapshot not attached (the control: before it, attached and up)."""
    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.kernel import libbpf
    from ironpost_tui.kernel.host import InterfaceState

    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=()))
    engine.start()
    other = -1
    try:
        time.sleep(1.1)
        tick = engine.tick(timeout_ms=0)  # a sample: checked
        assert tick.interface_state == InterfaceState.UP and engine.snapshot().attached
        [(_mode, ours)] = xdp_progs(lab.ifindex)
        insns = bytes([0xB7, 0, 0, 0, 2, 0, 0, 0, 0x95, 0, 0, 0, 0, 0, 0, 0])  # r0 = XDP_PASS; exit
        other = libbpf.prog_load(libbpf.BPF_PROG_TYPE_XDP, "other", "GPL", insns)
        link = libbpf.link_fd_by_id(_link_of(lab.ifindex, ours))
        try:
            libbpf.link_update(link, other)
        finally:
            os.close(link)
        assert [p for _, p in xdp_progs(lab.ifindex)] != [ours]
        time.sleep(1.1)
        tick = engine.tick(timeout_ms=0)
        assert tick.interface_state == InterfaceState.DETACHED and not engine.snapshot().attached
    finally:
        engine.close()
        if other >= 0:
            os.close(other)
    assert xdp_progs(lab.ifindex) == []  # ours closed: the link, with the other program, went


def test_with_persist_a_detached_link_exits_17_and_the_restart_attaches_again(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """--persist: the dead link's pin goes on the way out (the maps stay pinned), so that the restart (the
    systemd unit's: 17 is retried) attaches a new link to the pinned maps instead of refusing a dead pin."""
    import subprocess

    files = AgentFiles.make(tmp_path)
    port = free_port()
    agent = agents.start(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
    mode, prog_id = ready_info(agent.wait_ready())
    try:
        subprocess.run(["bpftool", "link", "detach", "id", str(_link_of(lab.ifindex, prog_id))], check=True)
        assert agent.wait(timeout=10) == 17, agent.describe()
        left = pins(lab.host_if)
        assert "link" not in left and left, left  # the maps kept
        again = agents.start(lab.host_if, *files.args(), "--persist", "--metrics-port", str(port))
        again.wait_ready()
        assert xdp_progs(lab.ifindex), "the restart did not attach"
        again.send(signal.SIGTERM)
        assert again.wait() == 0, again.describe()
    finally:
        assert cleanup(lab.host_if).returncode == 0


def test_a_snapshot_is_published_whole(lab: netlab.Lab) -> None:
    """A scrape in another thread reads whatever snapshot is published at that moment: one published in
    steps (built, then its tick times, then its CrowdSec status) showed a snapshot without them for a moment,
    and their series vanished from that scrape.  Read here at the moment the tick times are asked for,
    mid-publish: the one then published still has them (it was, in steps, the new one without)."""
    from ironpost_tui.engine.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=()))
    engine.start()
    try:
        engine.tick(timeout_ms=0)
        assert engine.snapshot().ticks is not None  # the control: a published one has them
        seen = []
        times = engine._tick_times
        original = times.snapshot

        def spy():  # type: ignore[no-untyped-def]
            seen.append(engine.snapshot())
            return original()

        times.snapshot = spy  # type: ignore[method-assign]
        engine.publish()
        assert seen and all(s.ticks is not None for s in seen), seen
    finally:
        engine.close()


def test_the_detection_read_holds_no_lock_a_panic_or_an_edit_needs(lab: netlab.Lab) -> None:
    """The detection tick's read of the sketches and top tables grows with the CPUs (3.7 s a tick measured on 64
    under a spoofed flood, an attacker's review of session 29), and under the engine's lock a panic, an edit and
    the command line waited for it.  Held up here in the detectors' run: another thread takes the engine's lock
    at once, and the tick then applies what it found.  The control: the tick's locked part (its alerts applied)
    held up, the lock is not free."""
    import threading

    from ironpost_tui.engine.engine import Engine, EngineOptions

    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), detect_interval=0.0))
    engine.start()
    try:
        engine.tick(timeout_ms=0)
        for where in ("detectors", "applied"):
            entered, release = threading.Event(), threading.Event()
            held = engine._detect if where == "detectors" else engine._alerts
            name = "tick" if where == "detectors" else "apply"
            real = getattr(held, name)

            def holding(*a: object, real: object = real, entered: threading.Event = entered,
                        release: threading.Event = release) -> object:  # fmt: skip
                entered.set()
                release.wait(10)
                return real(*a)  # type: ignore[operator]

            setattr(held, name, holding)
            ticking = threading.Thread(target=engine.tick, kwargs={"timeout_ms": 0})
            ticking.start()
            try:
                assert entered.wait(10), where
                got = engine.lock.acquire(timeout=1.0)
                if got:
                    engine.lock.release()
                assert got == (where == "detectors"), where
            finally:
                release.set()
                ticking.join(10)
                delattr(held, name)
            assert not ticking.is_alive()
    finally:
        engine.close()


def test_reloads_and_panics_asked_while_it_starts_are_kept_not_fatal(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    """One SIGUSR2 the moment the pid file names the agent, then SIGUSR1 every 2 ms until it is ready (systemd's
    ExecReload signals the main process as soon as it runs; a script reads the pid file): the agent starts,
    then runs the panic asked (the file's drop rule cleared from the kernel, once) and keeps running.  Until
    session 28 the pid file was written before the handlers were installed, and their default action ended the
    agent."""
    pid_path = tmp_path / "agent.pid"
    rules = '[[ebpf.rules]]\nid = "feed-1"\nsrc_ip = "198.19.254.7"\naction = "drop"\n'
    files = AgentFiles.make(tmp_path, rules=rules, extra=f'[general]\npid_file = "{pid_path}"\n')
    agent = agents.start(lab.host_if, *files.args())
    deadline = time.monotonic() + 60
    while not pid_path.exists():  # named by its pid file: signalled from now on
        assert agent.proc.poll() is None and time.monotonic() < deadline, agent.describe()
        time.sleep(0.0005)
    agent.send(signal.SIGUSR2)
    sent = 0
    while "ready:" not in agent.stdout and agent.proc.poll() is None and time.monotonic() < deadline:
        agent.send(signal.SIGUSR1)
        sent += 1
        time.sleep(0.002)
    assert agent.proc.poll() is None, f"the agent ended after {sent} SIGUSR1: {agent.describe()}"
    _mode, prog_id = ready_info(agent.wait_ready())
    # The panic asked as the start began cleared what the start put in: the rule is in the panic's line and gone
    # from the kernel; the agent goes on.
    agent.wait_for("panic: cleared 1 drop rule(s)", timeout=10)
    assert "feed-1" in agent.stdout.split("panic: cleared", 1)[1]
    blocklist = bpftool.prog_maps(prog_id, expect=("BLOCKLIST",))["BLOCKLIST"]
    assert json.loads(bpftool.map_dump(blocklist)) == []
    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    assert agent.stdout.count("panic: cleared") == 1, agent.stdout  # one asked, one run
    assert agent.stderr == "", agent.describe()
