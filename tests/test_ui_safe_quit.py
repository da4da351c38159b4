"""A safe quit, end to end in a real terminal (tmux) on a veth lab: with a drop rule in force
`q` asks; "keep enforcing" leaves the program and its rule on the interface (seen by bpftool,
and by datagrams that still do not arrive) until `ironpost-tui cleanup IFACE` removes them;
"quit and remove" leaves nothing; without a drop rule `q` quits at once.  Needs root."""

from __future__ import annotations

import errno
import ipaddress
import select
import signal
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import bpftool, netlab
from support.agents import (
    IRONPOST,
    PIN_ROOT,
    AgentPool,
    cleanup,
    pinned_map_dump,
    pins,
    ready_info,
    wait_no_xdp,
    xdp_progs,
)
from support.tmux import Session, sessions

pytestmark = pytest.mark.root
START = 120.0


class Datagrams:
    """UDP datagrams from the namespace (lab.ns_ip4) to a socket on the host side."""

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.rx = netlab.udp_receiver(lab.host_ip4)
        self.port = self.rx.getsockname()[1]
        self.tx = netlab.udp_sender(lab, lab.ns_ip4)

    def through(self, n: int = 20) -> int:
        """Send ``n`` datagrams; how many arrived."""
        self._drain(0.0)
        for i in range(n):
            self.tx.sendto(b"safe-quit %d" % i, (self.lab.host_ip4, self.port))
        return self._drain(0.5)

    def _drain(self, settle: float) -> int:
        got = 0
        end = time.monotonic() + settle
        while True:
            select.select([self.rx], [], [], max(0.0, end - time.monotonic()))
            while True:
                try:
                    self.rx.recv(2048)
                    got += 1
                except BlockingIOError:
                    break
            if time.monotonic() >= end:
                return got

    def close(self) -> None:
        self.tx.close()
        self.rx.close()


@pytest.fixture
def console(lab: netlab.Lab, tmp_path: Path) -> Iterator[tuple[netlab.Lab, list[Session], Path, Datagrams]]:
    flow = Datagrams(lab)
    try:
        with sessions() as made:
            yield lab, made, tmp_path, flow
    finally:
        flow.close()
        cleanup(lab.host_if)


def start(lab: netlab.Lab, made: list[Session], tmp_path: Path, rules: str) -> Session:
    cfg = tmp_path / "ironpost.toml"
    cfg.write_text('[ebpf]\nxdp_mode = "native"\n' + textwrap.dedent(rules))
    argv = [*IRONPOST, lab.host_if, "--config", str(cfg), "--state-dir", str(tmp_path / "state"),
            "--audit-log", str(tmp_path / "audit.log")]  # fmt: skip
    s = Session(argv, 160, 48)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
    s.wait_screen(lambda t: "drop-ns" in t or "watch-ns" in t, 10, "the rule in the rules pane")
    return s


def drop_rule(lab: netlab.Lab) -> str:
    return f"""
    [[ebpf.rules]]
    id = "drop-ns"
    src_ip = "{lab.ns_ip4}"
    action = "drop"
    """


def ask(s: Session, lab: netlab.Lab) -> str:
    s.keys("q")
    question = s.wait_screen(lambda t: f"Quit with 1 drop rule on {lab.host_if}?" in t, 10, "the quit question")
    assert "Quit and remove (r)" in question and "Keep enforcing (k)" in question and "Stay" in question
    return question


def test_q_asks_and_keep_enforcing_leaves_the_program_and_its_rule_until_cleanup(console) -> None:  # type: ignore[no-untyped-def]
    lab, made, tmp_path, flow = console
    assert flow.through() == 20, "the datagrams do not arrive even without ironpost"
    s = start(lab, made, tmp_path, drop_rule(lab))
    assert flow.through() == 0, "the drop rule does not drop"

    ask(s, lab)
    s.keys("Escape")  # stay: the question goes, the console and its rule stay
    s.wait_screen(lambda t: "Quit with" not in t, 5, "the console again")
    assert s.alive() and flow.through() == 0

    ask(s, lab)
    s.keys("k")
    assert s.wait_exit(15), f"still running after keep:\n{s.capture()}"
    said = s.scrollback()
    assert f"left 1 drop rule enforcing on {lab.host_if}" in said, said
    assert f"remove them with: ironpost-tui cleanup {lab.host_if}" in said, said

    # Nobody runs, and the program and its rule are still on the interface ...
    progs = bpftool.net_xdp(lab.host_if)
    assert len(progs) == 1 and xdp_progs(lab.ifindex) == [("native", progs[0])], progs
    assert "link" in pins(lab.host_if) and "BLOCKLIST" in pins(lab.host_if)
    key = ipaddress.IPv4Address(lab.ns_ip4).packed
    assert key in bpftool.dump_keys(pinned_map_dump(lab.host_if, "BLOCKLIST"))
    assert flow.through() == 0, "the kept rule does not drop"

    # ... kept as --persist keeps it: a --persist start adopts it (the same link, a new program)
    pool = AgentPool()
    try:
        state = ("--state-dir", str(tmp_path / "state"), "--audit-log", str(tmp_path / "audit.log"))
        agent = pool.start(lab.host_if, "--persist", "--config", str(tmp_path / "ironpost.toml"), *state)
        ready = agent.wait_ready()
        assert "adopted" in ready, agent.describe()
        assert ready_info(ready)[1] != progs[0]
        assert flow.through() == 0
        agent.send(signal.SIGTERM)  #: a --persist agent leaves it enforcing
        assert agent.wait() == 0, agent.describe()
    finally:
        for a in pool.agents:
            a.kill()
    assert bpftool.net_xdp(lab.host_if) and flow.through() == 0

    # cleanup removes them: nothing on the interface, no pins, and the datagrams arrive again.
    done = cleanup(lab.host_if)
    assert done.returncode == 0 and "removed pins" in done.stdout, done
    wait_no_xdp(lab.ifindex)
    assert bpftool.net_xdp(lab.host_if) == []
    assert not (PIN_ROOT / lab.host_if).exists()
    assert flow.through() == 20


def test_q_then_quit_and_remove_leaves_nothing(console) -> None:  # type: ignore[no-untyped-def]
    lab, made, tmp_path, flow = console
    s = start(lab, made, tmp_path, drop_rule(lab))
    assert flow.through() == 0
    ask(s, lab)
    s.keys("r")
    assert s.wait_exit(15), s.capture()
    wait_no_xdp(lab.ifindex, within=1.0)
    assert bpftool.net_xdp(lab.host_if) == []
    assert pins(lab.host_if) == []
    assert "enforcing on" not in s.scrollback()
    assert flow.through() == 20


def test_q_without_a_drop_rule_quits_at_once(console) -> None:  # type: ignore[no-untyped-def]
    """The negative control: a monitor rule alone, nothing enforcing to lose."""
    lab, made, tmp_path, flow = console
    s = start(lab, made, tmp_path, f"""
    [[ebpf.rules]]
    id = "watch-ns"
    src_ip = "{lab.ns_ip4}"
    action = "monitor"
    """)  # fmt: skip
    assert flow.through() == 20
    s.keys("q")
    assert s.wait_exit(5), f"q did not quit at once:\n{s.capture()}"
    assert "Quit with" not in s.capture()
    wait_no_xdp(lab.ifindex, within=1.0)
    assert bpftool.net_xdp(lab.host_if) == [] and pins(lab.host_if) == []


# --------------------------------------------------------------------------- #
# the hand-over itself (kernel/pins.py), on a running engine: all of it or nothing


class UnpinnableLink:
    """A link whose pin fails, after the maps were pinned: the hand-over must undo them."""

    def pin(self, path: str) -> None:
        raise OSError(errno.EPERM, "refused for the test")


def test_a_hand_over_that_fails_part_way_leaves_no_pin_and_the_engine_still_detaches(lab: netlab.Lab) -> None:
    from support import engine as running
    from support.agents import in_process_engine

    from ironpost_tui.engine.engine import EngineOptions
    from ironpost_tui.errors import IronpostError
    from ironpost_tui.kernel import host, libbpf
    from ironpost_tui.kernel.abi import MapName
    from ironpost_tui.kernel.pins import pin_running

    pin_dir = host.pin_dir(lab.host_if)
    try:
        with in_process_engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=())) as engine:
            dp = running.datapath(engine)
            with pytest.raises(IronpostError, match="nothing was pinned"):
                pin_running(dp, UnpinnableLink(), pin_dir)  # type: ignore[arg-type]
            assert not pin_dir.exists(), sorted(p.name for p in pin_dir.iterdir())

            # Pins another run left are refused before anything is pinned, and left as they were.
            pin_dir.mkdir(parents=True)
            libbpf.obj_pin(dp.map_fd(MapName.CONFIG), str(pin_dir / "CONFIG"))
            with pytest.raises(IronpostError, match="holds pins already"):
                engine.keep_enforcing()
            assert pins(lab.host_if) == ["CONFIG"]
            assert not engine.options.persist  # close() still detaches
        assert xdp_progs(lab.ifindex) == [], "the engine left its program attached after a failed hand-over"
    finally:
        cleanup(lab.host_if)
    assert xdp_progs(lab.ifindex) == [] and pins(lab.host_if) == []
