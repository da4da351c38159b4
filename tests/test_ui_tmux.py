"""The console end to end in a real terminal (tmux), on a veth lab's host side:
panes, live counts, a rule added with keystrokes that takes effect, q (then r, with a drop
rule in force) detaches.
Needs root."""

from __future__ import annotations

import os
import re
import select
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import netlab
from support.agents import IRONPOST, cleanup, wait_no_xdp, xdp_progs
from support.tmux import Session, sessions

from ironpost_tui.kernel import host

pytestmark = pytest.mark.root
START = 120.0


class Traffic:
    """UDP datagrams (to a host-side receiver) and ICMP echoes from the namespace, every 50 ms."""

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.recv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.recv.bind((lab.host_ip4, 0))
        self.recv.setblocking(False)
        self.port = self.recv.getsockname()[1]
        with netlab.in_netns(lab.ns):
            self.send = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self.ping = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
        self.stop = threading.Event()
        self.sent = 0
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        echo = bytes([8, 0, 0xF7, 0xFF, 0, 0, 0, 0])  # type 8, checksum of the zero rest
        while not self.stop.is_set():
            self.send.sendto(b"x%d" % self.sent, (self.lab.host_ip4, self.port))
            self.ping.sendto(echo, (self.lab.host_ip4, 0))
            self.sent += 1
            time.sleep(0.05)

    def received(self, settle: float = 0.5) -> int:
        n = 0
        end = time.monotonic() + settle
        while (left := end - time.monotonic()) > 0:
            select.select([self.recv], [], [], left)
            while True:
                try:
                    self.recv.recv(2048)
                    n += 1
                except BlockingIOError:
                    break
        return n

    def close(self) -> None:
        self.stop.set()
        self.thread.join(2)
        for s in (self.send, self.ping, self.recv):
            s.close()


@pytest.fixture
def console(lab: netlab.Lab, tmp_path: Path) -> Iterator[tuple[netlab.Lab, list[Session], list[str]]]:
    cfg = tmp_path / "ironpost.toml"
    cfg.write_text('[ebpf]\nxdp_mode = "native"\n')
    argv = [*IRONPOST, lab.host_if, "--config", str(cfg), "--state-dir", str(tmp_path / "state"),
            "--audit-log", str(tmp_path / "audit.log")]  # fmt: skip
    try:
        with sessions() as made:
            yield lab, made, argv
    finally:
        cleanup(lab.host_if)


def pkt_rate(screen: str, proto: str) -> float:
    """The traffic pane's pkt/s figure of ``proto`` (its row: "│ UDP  <spark>  19.7 <spark> ...")."""
    for line in screen.splitlines():
        m = re.search(rf"│ {proto.upper()}\s+[^\d│]*?\s(\d+(?:\.\d+)?)([kM]?)\s", line)
        if m:
            return float(m[1]) * {"": 1, "k": 1e3, "M": 1e6}[m[2]]
    return 0.0


def nonzero_rate(screen: str, proto: str) -> bool:
    return pkt_rate(screen, proto) > 0


def test_console_in_tmux_shows_live_panes_edits_a_rule_and_detaches_on_q(console) -> None:  # type: ignore[no-untyped-def]
    lab, made, argv = console
    check_cfg = Path(argv[argv.index("--config") + 1])
    check_cfg.write_text('[ebpf]\nxdp_mode = "native"\n')
    s = Session(argv, 160, 48)
    made.append(s)
    traffic = Traffic(lab)
    try:
        screen = s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
        assert lab.host_if in screen
        for title in ("Traffic", "Alerts", "Events", "Rules"):
            assert title in screen, f"{title} pane title missing:\n{screen}"
        assert xdp_progs(lab.ifindex), "nothing attached while the console says attached"
        screen = s.wait_screen(
            lambda t: nonzero_rate(t, "udp") and nonzero_rate(t, "icmp"), 15, "non-zero udp and icmp rates"
        )
        assert traffic.received() > 0

        s.keys("a")
        s.wait_screen(lambda t: "Add a rule" in t, 5, "the rule form")
        s.keys("tmux-block", literal=True)
        time.sleep(0.3)
        s.keys("Tab")
        time.sleep(0.3)
        s.keys(lab.ns_ip4, literal=True)
        time.sleep(0.3)
        form = s.capture()
        assert "tmux-block" in form and lab.ns_ip4 in form, form
        s.keys("Enter")
        screen = s.wait_screen(lambda t: "tmux-block" in t and "Add a rule" not in t, 10, "the new rule row")
        traffic.received(0.3)  # what was in flight
        assert traffic.received(1.0) == 0, "the namespace's datagrams still arrive"
        assert traffic.sent > 0

        s.keys("q")  # a drop rule is in force: it asks first (tests/test_ui_safe_quit.py)
        s.wait_screen(lambda t: "Quit with 1 drop rule" in t, 5, "the quit question")
        t0 = time.monotonic()
        s.keys("r")
        assert s.wait_exit(5), f"still running after q, r:\n{s.capture()}"
        wait_no_xdp(lab.ifindex, within=1.0, since=t0)
    finally:
        traffic.close()


def test_console_at_80x24_shows_without_errors(console) -> None:  # type: ignore[no-untyped-def]
    lab, made, argv = console
    s = Session(argv, 80, 24)
    made.append(s)
    screen = s.wait_screen(lambda t: "attached" in t, START, "attached at 80x24")
    time.sleep(1.5)
    screen = s.capture()
    for bad in ("Traceback", "Error", "error"):
        assert bad not in screen, screen
    assert any(t in screen for t in ("Traffic", "Alerts", "Events", "Rules")), screen
    t0 = time.monotonic()
    s.keys("q")
    assert s.wait_exit(5), s.capture()
    wait_no_xdp(lab.ifindex, within=1.0, since=t0)


@pytest.mark.parametrize("processes", ["engine process", "one process"])
def test_cleanup_while_the_console_runs_is_the_panic_and_the_console_stays(console, processes: str) -> None:  # type: ignore[no-untyped-def]
    """`ironpost-tui cleanup IFACE` while a console controls IFACE signals the interface lock's holder (SIGUSR2):
    the engine process, or the console itself with --one-process (the demo's way).  The drop rules are cleared
    within a second or two, the console stays, attached, and says so; q then quits at once (nothing dropped).
    Until session 24 the signal's default action killed that process: the console ended, or lost its engine.
    The control: the namespace's datagrams are dropped before."""
    lab, made, argv = console
    cfg = Path(argv[argv.index("--config") + 1])
    cfg.write_text(
        f'[ebpf]\nxdp_mode = "native"\n\n[[rules]]\nid = "panic-me"\nsrc_ip = "{lab.ns_ip4}"\naction = "drop"\n'
    )
    s = Session([*argv, "--one-process"] if processes == "one process" else argv, 100, 30)
    made.append(s)
    traffic = Traffic(lab)
    try:
        s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
        traffic.received(1.0)
        assert traffic.received(1.0) == 0, "the drop rule lets the namespace's datagrams through"  # the control
        said = cleanup(lab.host_if)
        assert said.returncode == 0 and "asked it to clear every drop rule (panic)" in said.stdout, said
        s.wait_screen(lambda t: "panic: cleared 1 drop rule" in t, 10, "the panic said in the console")
        traffic.received(0.5)
        assert traffic.received(1.0) > 0, "the datagrams still dropped after the panic"
        assert s.alive() and xdp_progs(lab.ifindex), "the console or its program went with the signal"
        t0 = time.monotonic()
        s.keys("q")  # no drop rule left: it quits without asking
        assert s.wait_exit(5), s.capture()
        wait_no_xdp(lab.ifindex, within=1.0, since=t0)
    finally:
        traffic.close()


@pytest.mark.parametrize("target", ["console", "engine process"])
def test_sigusr1_to_either_process_reloads_and_the_console_stays(console, target: str) -> None:  # type: ignore[no-untyped-def]
    """SIGUSR1 reloads the configuration, as `r` does: sent to the console's process (the pid file's) or to the
    engine process (the interface lock's holder).  Until session 24 its default action ended the one it reached,
    and with the console the program (an attacker's review).  The file is unchanged: the reload says so."""
    lab, made, argv = console
    s = Session(argv, 120, 30)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
    holder = host.InterfaceLock(lab.host_if).holder()
    assert holder is not None and holder != s.pid, "expected the engine process to hold the interface"
    os.kill(s.pid if target == "console" else holder, signal.SIGUSR1)
    said = lambda t: "nothing changed" in re.sub(r"[\s│▌]+", " ", t)  # noqa: E731  # the toast wraps it
    s.wait_screen(said, 10, "the reload's outcome")
    assert s.alive() and xdp_progs(lab.ifindex) and host.InterfaceLock(lab.host_if).holder() == holder
    t0 = time.monotonic()
    s.keys("q")
    assert s.wait_exit(5), s.capture()
    wait_no_xdp(lab.ifindex, within=1.0, since=t0)
