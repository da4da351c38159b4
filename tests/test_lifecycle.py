"""The agent's life on an interface, run as an operator runs it: the
``ironpost-tui`` command in a subprocess on the host side of a netlab veth pair.

- every way it can be stopped leaves nothing attached within a second;
- ``--persist`` keeps filtering across ``kill -9`` and a restart that adopts
  the pinned link, with traffic flowing the whole time and not one packet
  getting through; what it refuses to do with pins it did not make;
- programs that are not its own are left alone, stale ones of its own are
  named and cleaned;
- the interface going down or away under it.

Each test kills what it started and runs ``ironpost-tui cleanup IFACE`` at the
end (the ``agents`` fixture), before the lab's namespace and veth pair go.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import netlab
from support.agents import (
    PIN_ROOT,
    AgentPool,
    cleanup,
    one_error_line,
    pinned_link,
    pinned_map,
    pinned_map_dump,
    pins,
    ready_info,
    wait_no_xdp,
    wait_prog_gone,
    xdp_progs,
)

from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import DatapathConfig

pytestmark = pytest.mark.root


# --------------------------------------------------------------------------- #
# stopping


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=lambda s: s.name)
def test_signal_stops_detaches_and_exits_0(lab: netlab.Lab, agents: AgentPool, sig: signal.Signals) -> None:
    agent = agents.start(lab.host_if)
    mode, prog_id = ready_info(agent.wait_ready())
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]

    t0 = time.monotonic()
    agent.send(sig)
    took = wait_no_xdp(lab.ifindex, within=1.0, since=t0)
    rc = agent.wait()
    assert rc == 0, agent.describe()
    assert f"received {sig.name}" in agent.stdout
    assert f"detached from {lab.host_if}" in agent.stdout, agent.describe()
    assert agent.stderr == "", agent.describe()
    assert took <= 1.0
    assert pins(lab.host_if) == []


def test_kill_9_detaches_without_persist(lab: netlab.Lab, agents: AgentPool) -> None:
    """A BPF link dies with its last fd: no handler runs, and still nothing stays attached."""
    agent = agents.start(lab.host_if)
    _, prog_id = ready_info(agent.wait_ready())
    t0 = time.monotonic()
    agent.send(signal.SIGKILL)
    wait_no_xdp(lab.ifindex, within=1.0, since=t0)
    assert agent.wait() == -signal.SIGKILL
    wait_prog_gone(prog_id)
    assert pins(lab.host_if) == []


# --------------------------------------------------------------------------- #
# --persist


class UdpFlow:
    """UDP datagrams from the namespace (lab.ns_ip4) to a socket on the host side (lab.host_ip4:port).

    ``start()`` sends continuously from a thread until ``stop()``; ``burst()``
    sends a paced batch.  ``sent`` counts datagrams the kernel accepted,
    ``received()`` drains the host socket and returns the running total.
    """

    def __init__(self, lab: netlab.Lab) -> None:
        self.lab = lab
        self.rx = netlab.udp_receiver(lab.host_ip4)
        self.port = self.rx.getsockname()[1]
        assert netlab.allowed_address(lab.ns_ip4) and netlab.allowed_address(lab.host_ip4)
        self.tx = netlab.udp_sender(lab, lab.ns_ip4)
        self.sent = 0
        self.send_errors = 0
        self._received = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def _send_one(self) -> None:
        try:
            self.tx.sendto(b"ironpost-lifecycle %d" % self.sent, (self.lab.host_ip4, self.port))
            self.sent += 1
        except OSError:
            self.send_errors += 1

    def burst(self, count: int) -> None:
        for i in range(count):
            self._send_one()
            if i % 10 == 9:
                time.sleep(0.001)

    def _run(self) -> None:
        while not self._stop.is_set():
            for _ in range(10):
                self._send_one()
            time.sleep(0.002)  # ~4,000/s at most: steady, without starving the agent's compile

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)

    def received(self) -> int:
        while True:
            try:
                self.rx.recv(2048)
            except BlockingIOError:
                return self._received
            self._received += 1

    def close(self) -> None:
        self.stop()
        self.tx.close()
        self.rx.close()


def write_config(tmp_path: Path, text: str, name: str = "ironpost.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def flow(lab: netlab.Lab) -> Iterator[UdpFlow]:
    f = UdpFlow(lab)
    try:
        yield f
    finally:
        f.close()


def wait_received(flow: UdpFlow, at_least: int, timeout: float = 3.0) -> int:
    end = time.monotonic() + timeout
    while (got := flow.received()) < at_least and time.monotonic() < end:
        time.sleep(0.02)
    return got


def test_persist_keeps_filtering_across_kill_9_and_an_adopting_restart(
    lab: netlab.Lab, agents: AgentPool, flow: UdpFlow, tmp_path: Path
) -> None:
    config = write_config(
        tmp_path,
        f"""\
        [[ebpf.rules]]
        id = "drop-ns-udp"
        src_ip = "{lab.ns_ip4}"
        protocol = 17
        dst_port = {flow.port}
        action = "drop"
        """,
    )
    # Without the rule the datagrams arrive: the flow itself works.
    flow.burst(50)
    assert wait_received(flow, 50) == 50, "the UDP flow does not work even without ironpost"

    first = agents.start(lab.host_if, "--persist", "--config", str(config))
    mode, prog_id = ready_info(first.wait_ready())
    link_before = pinned_link(lab.host_if)
    assert link_before.prog_id == prog_id and link_before.ifindex == lab.ifindex

    base_rx = flow.received()
    tx0, sent0 = netlab.peer_tx_packets(lab), flow.sent
    flow.start()
    time.sleep(0.5)
    sent_before_kill = flow.sent

    first.send(signal.SIGKILL)
    assert first.wait() == -signal.SIGKILL
    # Still filtering with nobody holding it but the pin.
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    time.sleep(0.3)
    sent_at_restart = flow.sent

    second = agents.start(lab.host_if, "--persist", "--config", str(config))
    ready = second.wait_ready()
    sent_at_adopted = flow.sent
    assert "adopted" in ready, second.describe()
    mode2, prog_id2 = ready_info(ready)
    assert mode2 == mode
    assert prog_id2 != prog_id  # a new program, swapped in ...
    link_after = pinned_link(lab.host_if)
    assert link_after.id == link_before.id  # ... on the same link: bpf_link_update, no detach
    assert link_after.prog_id == prog_id2
    assert xdp_progs(lab.ifindex) == [(mode, prog_id2)]

    time.sleep(1.0)
    flow.stop()
    sent = flow.sent
    tx = netlab.peer_tx_packets(lab) - tx0

    # The sender really sent, in every phase, and the frames went onto the wire ...
    assert sent_before_kill > 100
    assert sent_at_restart > sent_before_kill  # while no process held the program
    assert sent_at_adopted > sent_at_restart  # while the new one compiled and adopted
    assert sent > sent_at_adopted + 100  # after the adoption
    assert flow.send_errors == 0
    assert tx >= sent - sent0
    # ... and not one got through.
    time.sleep(0.2)
    assert flow.received() - base_rx == 0

    # Stopping the adopted agent leaves the pinned program enforcing.
    second.send(signal.SIGTERM)
    assert second.wait() == 0, second.describe()
    assert "left the pinned program enforcing" in second.stdout
    assert xdp_progs(lab.ifindex) == [(mode, prog_id2)]

    # cleanup removes it, and then the same datagrams arrive.
    done = cleanup(lab.host_if)
    assert done.returncode == 0, done.stderr
    assert f"prog id {prog_id2}" in done.stdout and "removed pins" in done.stdout
    wait_no_xdp(lab.ifindex)
    assert not (PIN_ROOT / lab.host_if).exists()
    before = flow.received()
    flow.burst(100)
    assert wait_received(flow, before + 100) - before == 100

    again = cleanup(lab.host_if)
    assert again.returncode == 0
    assert again.stdout.strip() == f"nothing to clean on {lab.host_if}"


def test_non_persist_start_on_a_persisted_interface_is_refused(lab: netlab.Lab, agents: AgentPool) -> None:
    first = agents.start(lab.host_if, "--persist")
    mode, prog_id = ready_info(first.wait_ready())
    first.send(signal.SIGINT)
    assert first.wait() == 0
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    pinned = pins(lab.host_if)
    assert "link" in pinned

    proc = agents.run(lab.host_if)
    assert proc.returncode == 9, proc
    msg = one_error_line(proc.stderr)
    assert "--persist" in msg and f"ironpost-tui cleanup {lab.host_if}" in msg
    assert "ready:" not in proc.stdout
    # Nothing changed.
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    assert pins(lab.host_if) == pinned
    assert pinned_link(lab.host_if).prog_id == prog_id


def test_pins_of_another_layout_are_refused_and_left_as_they_are(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path
) -> None:
    small = write_config(
        tmp_path,
        f"""\
        [ebpf]
        blocklist_max_entries = 1000

        [[ebpf.rules]]
        id = "one"
        src_ip = "{lab.ns_ip4}"
        """,
        "small.toml",
    )
    big = write_config(tmp_path, "[ebpf]\nblocklist_max_entries = 2000\n", "big.toml")

    first = agents.start(lab.host_if, "--persist", "--config", str(small))
    mode, prog_id = ready_info(first.wait_ready())
    first.send(signal.SIGTERM)
    assert first.wait() == 0
    pinned = pins(lab.host_if)
    link = pinned_link(lab.host_if)
    blocklist = pinned_map(lab.host_if, "BLOCKLIST")
    content = pinned_map_dump(lab.host_if, "BLOCKLIST")
    assert blocklist.max_entries == 1000

    proc = agents.run(lab.host_if, "--persist", "--config", str(big))
    assert proc.returncode == 10, proc  # PIN_MISMATCH
    msg = one_error_line(proc.stderr)
    assert "BLOCKLIST" in msg and "layout" in msg
    assert "1000" in msg and "2000" in msg
    assert f"ironpost-tui cleanup {lab.host_if}" in msg
    assert "ready:" not in proc.stdout

    # Nothing attached, detached or changed.
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    assert pins(lab.host_if) == pinned
    assert pinned_link(lab.host_if) == link
    assert pinned_map(lab.host_if, "BLOCKLIST") == blocklist
    assert pinned_map_dump(lab.host_if, "BLOCKLIST") == content

    # The same settings still adopt it.
    again = agents.start(lab.host_if, "--persist", "--config", str(small))
    assert "adopted" in again.wait_ready()
    again.send(signal.SIGTERM)
    assert again.wait() == 0


def test_an_incomplete_set_of_pins_is_refused(lab: netlab.Lab, agents: AgentPool) -> None:
    first = agents.start(lab.host_if, "--persist")
    mode, prog_id = ready_info(first.wait_ready())
    first.send(signal.SIGTERM)
    assert first.wait() == 0
    gone = "CONFIG" if "CONFIG" in DatapathConfig().expected_maps() else sorted(DatapathConfig().expected_maps())[0]
    (PIN_ROOT / lab.host_if / gone).unlink()  # the map lives on: the program holds it
    pinned = pins(lab.host_if)
    link = pinned_link(lab.host_if)

    proc = agents.run(lab.host_if, "--persist")
    assert proc.returncode == 10, proc  # PIN_MISMATCH
    msg = one_error_line(proc.stderr)
    assert "incomplete" in msg and gone in msg and f"ironpost-tui cleanup {lab.host_if}" in msg
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    assert pins(lab.host_if) == pinned
    assert pinned_link(lab.host_if) == link


def test_pins_of_an_older_abi_are_refused_by_their_version(lab: netlab.Lab, agents: AgentPool) -> None:
    """A set pinned by an older version lacks this version's new maps (ABI 6's had no MATCHH): the refusal
    names the version and the cleanup, not the maps it lacks (the incomplete-set test above is the control:
    the same version with a map missing is called incomplete)."""
    first = agents.start(lab.host_if, "--persist")
    mode, prog_id = ready_info(first.wait_ready())
    first.send(signal.SIGTERM)
    assert first.wait() == 0
    fd = libbpf.obj_get(str(PIN_ROOT / lab.host_if / "CONFIG"))
    try:
        size = libbpf.map_info(fd).value_size
        raw = bytearray(libbpf.map_lookup(fd, bytes(4), size) or b"")
        old = abi.IRONPOST_ABI_VERSION - 1
        raw[4:8] = old.to_bytes(4, "little")
        libbpf.map_update(fd, bytes(4), bytes(raw))
    finally:
        os.close(fd)
    (PIN_ROOT / lab.host_if / "MATCHH").unlink()  # the map lives on: the program holds it
    pinned = pins(lab.host_if)

    proc = agents.run(lab.host_if, "--persist")
    assert proc.returncode == 10, proc  # PIN_MISMATCH
    msg = one_error_line(proc.stderr)
    assert f"ABI version {old}" in msg and "incomplete" not in msg, msg
    assert f"ironpost-tui cleanup {lab.host_if}" in msg
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    assert pins(lab.host_if) == pinned


# --------------------------------------------------------------------------- #
# programs on the interface that are not ours, or not from this run

_FOREIGN_HELPER = textwrap.dedent(
    """\
    import sys
    from bcc import BPF
    b = BPF(text=b"int foreign_pass(struct xdp_md *ctx) { return XDP_PASS; }")
    fn = b.load_func(b"foreign_pass", BPF.XDP)
    BPF.attach_xdp(sys.argv[1], fn, int(sys.argv[2]))  # netlink: stays after this process
    """
)

_STALE_HELPER = textwrap.dedent(
    """\
    import sys
    import bcc
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    dp = Datapath(DatapathConfig())
    bcc.BPF.attach_xdp(sys.argv[1], dp._fn, int(sys.argv[2]))  # netlink, as an old version did
    """
)

MODES = {"native": libbpf.XDP_FLAGS_DRV_MODE, "skb": libbpf.XDP_FLAGS_SKB_MODE}
_IP_XDP_OFF = {"native": "xdpdrv", "skb": "xdpgeneric"}


def netlink_attach(helper: str, lab: netlab.Lab, mode: str) -> int:
    """Run a helper that netlink-attaches a program in ``mode`` and exits; the prog id."""
    proc = subprocess.run(
        [sys.executable, "-c", helper, lab.host_if, str(MODES[mode])], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    progs = xdp_progs(lab.ifindex)
    assert len(progs) == 1 and progs[0][0] == mode, progs
    return progs[0][1]


def netlink_detach(lab: netlab.Lab, mode: str) -> None:
    subprocess.run(["ip", "link", "set", "dev", lab.host_if, _IP_XDP_OFF[mode], "off"], capture_output=True)


@pytest.mark.parametrize("mode", ["native", "skb"])
def test_a_foreign_program_is_left_untouched(lab: netlab.Lab, agents: AgentPool, mode: str) -> None:
    prog_id = netlink_attach(_FOREIGN_HELPER, lab, mode)
    try:
        for args in ((), ("--persist",), ("--xdp-mode", "skb"), ("--xdp-mode", "native")):
            proc = agents.run(lab.host_if, *args)
            assert proc.returncode == 9, (args, proc)
            msg = one_error_line(proc.stderr)
            assert f"prog id {prog_id}" in msg and "foreign" in msg and "foreign_pass" in msg, msg
            assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
        assert pins(lab.host_if) == []

        done = cleanup(lab.host_if)
        assert done.returncode == 0, done.stderr
        assert done.stdout.strip() == f"nothing to clean on {lab.host_if}"
        assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    finally:
        netlink_detach(lab, mode)
    wait_no_xdp(lab.ifindex)


@pytest.mark.parametrize("mode", ["native", "skb"])
def test_a_stale_ironpost_program_is_named_and_cleaned(lab: netlab.Lab, agents: AgentPool, mode: str) -> None:
    prog_id = netlink_attach(_STALE_HELPER, lab, mode)
    try:
        proc = agents.run(lab.host_if)
        assert proc.returncode == 9, proc
        msg = one_error_line(proc.stderr)
        assert "stale ironpost program" in msg and f"prog id {prog_id}" in msg and "netlink" in msg, msg
        assert f"ironpost-tui cleanup {lab.host_if}" in msg
        assert xdp_progs(lab.ifindex) == [(mode, prog_id)]

        done = cleanup(lab.host_if)
        assert done.returncode == 0, done.stderr
        assert f"detached netlink-attached ironpost_xdp (prog id {prog_id})" in done.stdout, done.stdout
        wait_no_xdp(lab.ifindex, within=1.0)
        wait_prog_gone(prog_id)

        again = cleanup(lab.host_if)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip() == f"nothing to clean on {lab.host_if}"

        # And now it starts.
        agent = agents.start(lab.host_if)
        ready_info(agent.wait_ready())
        agent.send(signal.SIGTERM)
        assert agent.wait() == 0
    finally:
        netlink_detach(lab, mode)
    wait_no_xdp(lab.ifindex)


# --------------------------------------------------------------------------- #
# the interface under it


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True)


def test_interface_down_and_up_while_running(lab: netlab.Lab, agents: AgentPool) -> None:
    agent = agents.start(lab.host_if)
    mode, prog_id = ready_info(agent.wait_ready())

    _ip("link", "set", "dev", lab.host_if, "down")
    agent.wait_for(f"interface {lab.host_if} is down", timeout=3)
    time.sleep(0.3)
    assert agent.proc.poll() is None, agent.describe()
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]

    _ip("link", "set", "dev", lab.host_if, "up")
    agent.wait_for(f"interface {lab.host_if} is up", timeout=3)
    assert agent.proc.poll() is None, agent.describe()

    agent.send(signal.SIGTERM)
    assert agent.wait() == 0, agent.describe()
    wait_no_xdp(lab.ifindex)
    assert "Traceback" not in agent.stdout + agent.stderr
    assert agent.stderr == ""


def test_interface_deleted_while_running_exits_11(lab: netlab.Lab, agents: AgentPool) -> None:
    agent = agents.start(lab.host_if)
    _, prog_id = ready_info(agent.wait_ready())

    _ip("link", "del", "dev", lab.host_if)
    rc = agent.wait(timeout=5)
    assert rc == 11, agent.describe()  # INTERFACE_GONE
    msg = one_error_line(agent.stderr)
    assert lab.host_if in msg and "disappeared" in msg
    assert "Traceback" not in agent.stdout
    wait_prog_gone(prog_id)
    assert not [i for i in libbpf.link_ids() if _link_prog(i) == prog_id]
    assert pins(lab.host_if) == []


def _link_prog(link_id: int) -> int:
    try:
        fd = libbpf.link_fd_by_id(link_id)
    except libbpf.BpfCallError:
        return 0
    try:
        return libbpf.link_info(fd).prog_id
    finally:
        os.close(fd)


def test_second_agent_on_the_same_interface_is_refused(lab: netlab.Lab, agents: AgentPool) -> None:
    first = agents.start(lab.host_if)
    mode, prog_id = ready_info(first.wait_ready())
    proc = agents.run(lab.host_if)
    assert proc.returncode == 13, proc  # ALREADY_RUNNING
    msg = one_error_line(proc.stderr)
    assert f"pid {first.pid}" in msg
    assert xdp_progs(lab.ifindex) == [(mode, prog_id)]
    first.send(signal.SIGINT)
    assert first.wait() == 0
