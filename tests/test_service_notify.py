"""The service manager's notification (engine/service_notify.py, systemd's ``Type=notify``): the datagrams reach
a real AF_UNIX socket, by path and by abstract name; a value that is no socket address, a socket that is not
there and one whose queue is full are each a warning, never an error or a wait; and the live agent says
``READY=1`` only once its program is attached to the lab's interface, and ``STOPPING=1`` when it leaves.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import netlab
from support.agents import AgentPool, agent_env, ready_info, xdp_progs
from support.metrics_lab import AgentFiles

from ironpost_tui.engine.service_notify import ENV, MAX_ADDRESS, Notifier


@pytest.fixture
def manager(tmp_path: Path) -> Iterator[tuple[socket.socket, str]]:
    """A socket bound where a service manager's would be, and its path."""
    path = str(tmp_path / "notify")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind(path)
        s.settimeout(60)
        yield s, path


def test_the_datagram_reaches_the_socket_named_and_the_variable_goes(manager: tuple[socket.socket, str]) -> None:
    sock, path = manager
    env = {ENV: path, "OTHER": "x"}
    notifier = Notifier.from_environ(env)
    assert notifier is not None and env == {"OTHER": "x"}  # taken out: no child of the agent inherits it
    notifier.ready_soon("filtering on eth0").join(10)
    assert sock.recv(4096) == b"READY=1\nSTATUS=filtering on eth0"
    assert notifier.stopping("leaving\x1b[2J")  # a status with an escape sequence goes escaped, on one line
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=leaving\\x1b[2J"


def test_an_abstract_name(tmp_path: Path) -> None:
    name = f"ironpost-test-{os.getpid()}-{tmp_path.name}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.bind("\0" + name)
        s.settimeout(10)
        notifier = Notifier.from_environ({ENV: "@" + name})
        assert notifier is not None and notifier.send("STATUS=ok")
        assert s.recv(4096) == b"STATUS=ok"


def test_no_variable_no_notifier() -> None:
    assert Notifier.from_environ({}) is None
    assert Notifier.from_environ({ENV: ""}) is None


@pytest.mark.parametrize(
    "value",
    ["relative/notify", "notify", "/" + "x" * MAX_ADDRESS, "\x1b]0;owned\x07/run/notify"],
    ids=["relative", "bare-name", "too-long", "escape-sequence"],
)
def test_a_value_that_is_no_socket_address_is_one_warning(value: str, caplog: pytest.LogCaptureFixture) -> None:
    env = {ENV: value}
    with caplog.at_level(logging.WARNING):
        assert Notifier.from_environ(env) is None
    assert env == {}  # taken out all the same
    assert len(caplog.records) == 1 and "\x1b" not in caplog.records[0].getMessage()


def test_a_socket_not_there_is_a_warning_and_ready_gives_up_in_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ironpost_tui.engine import service_notify

    monkeypatch.setattr(service_notify, "RETRY_PAUSE", 0.0)
    notifier = Notifier.from_environ({ENV: str(tmp_path / "gone")})
    assert notifier is not None
    with caplog.at_level(logging.WARNING):
        notifier.ready_soon("x").join(30)
    said = [r.getMessage() for r in caplog.records]
    # Tried READY_TRIES times: the first failure and the giving up said, not each try.
    assert len(said) == 2 and "READY=1" in said[0] and "not told that the agent is ready" in said[1], said
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        assert notifier.stopping("x") is False
    assert len(caplog.records) == 1 and "STOPPING=1" in caplog.records[0].getMessage()


def fill(path: str) -> None:
    """The manager's queue filled (the control: one datagram was refused at once)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as filler:
        filler.setblocking(False)
        with pytest.raises(BlockingIOError):
            for _ in range(100_000):
                filler.sendto(b"x" * 1024, path)


def drain_until(sock: socket.socket, prefix: bytes) -> list[bytes]:
    """What the manager reads, the filler's datagrams left out, until one that starts with ``prefix``."""
    got: list[bytes] = []
    while not got or not got[-1].startswith(prefix):
        d = sock.recv(4096)
        if d != b"x" * 1024:
            got.append(d)
    return got


def test_ready_waits_for_room_without_spinning_with_the_latest_status(manager: tuple[socket.socket, str]) -> None:
    """A queue kept full (the notify socket is open to every service): READY=1, which systemd waits for, is
    sent from a thread that waits for room (without a CPU's worth of retries: an unconnected socket's timed send
    spun), and says the status as it is when it goes; a status line sent on its own goes at once or not at all."""
    sock, path = manager
    notifier = Notifier.from_environ({ENV: path})
    assert notifier is not None
    fill(path)
    done: list[bool] = []
    t = threading.Thread(target=lambda: done.append(notifier.send("STATUS=busy")), daemon=True)
    t.start()
    t.join(30)
    assert done == [False], "a status line waited on a full queue"  # a blocking send never returns here
    cpu0 = time.process_time()
    ready = notifier.ready_soon("filtering, 1 rules")
    notifier.status("filtering, 0 rules")  # a panic while READY=1 waits
    time.sleep(1.0)
    assert ready.is_alive()  # waiting for room: the agent's loop is not
    assert time.process_time() - cpu0 < 0.3, "READY=1 spun while it waited"
    got = drain_until(sock, b"READY=1")  # the manager reads again: READY=1 after the filler
    if got[-1] != b"READY=1\nSTATUS=filtering, 0 rules":  # the try in flight had the first status: the new follows
        assert got[-1] == b"READY=1\nSTATUS=filtering, 1 rules" and sock.recv(4096) == b"STATUS=filtering, 0 rules"
    ready.join(10)
    assert not ready.is_alive()


def test_no_ready_after_stopping(manager: tuple[socket.socket, str]) -> None:
    """The agent stops while READY=1 waits for room: STOPPING=1 is the last word (READY=1 after it would have a
    process that is leaving taken for one that started).  The control: without the stop, READY=1 goes."""
    sock, path = manager
    notifier = Notifier.from_environ({ENV: path})
    assert notifier is not None
    fill(path)
    ready = notifier.ready_soon("filtering")
    time.sleep(0.5)
    notifier.stopping("leaving")  # the queue is full: not sent, and READY=1 no longer goes
    sock.settimeout(1.0)  # the manager reads again at once: room for a READY=1 still trying
    with pytest.raises(TimeoutError):
        drain_until(sock, b"READY=1")
    ready.join(10)
    assert not ready.is_alive()
    control = Notifier.from_environ({ENV: path})
    assert control is not None
    control.ready_soon("filtering").join(10)
    assert drain_until(sock, b"READY=1")[-1] == b"READY=1\nSTATUS=filtering"


@pytest.mark.root
def test_the_agent_says_ready_once_filtering_and_stopping_when_it_leaves(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, manager: tuple[socket.socket, str]
) -> None:
    """READY=1 once the program is attached (read from the kernel as the datagram arrives), its status's rule
    count again after a panic, STOPPING=1 at SIGTERM."""
    sock, path = manager
    files = AgentFiles.make(tmp_path, rules='[[ebpf.rules]]\nid = "feed-1"\nsrc_ip = "198.19.254.7"\naction = "drop"\n')
    assert xdp_progs(lab.ifindex) == []  # the control: nothing attached before
    agent = agents.start(lab.host_if, *files.args(), env=agent_env(**{ENV: path}))
    message = sock.recv(4096).decode()
    progs = xdp_progs(lab.ifindex)  # read as soon as READY=1 arrives: attached already
    lines = message.split("\n")
    assert lines[0] == "READY=1" and lines[1].startswith(f"STATUS=filtering on {lab.host_if} "), message
    mode, prog_id = ready_info(agent.wait_ready())
    assert progs == [(mode, prog_id)], progs
    assert f"prog id {prog_id}" in lines[1] and lines[1].endswith(", 1 rules"), lines
    agent.send(signal.SIGUSR2)
    status = sock.recv(4096).decode()
    assert status.startswith(f"STATUS=filtering on {lab.host_if} ") and status.endswith(", 0 rules"), status
    agent.send(signal.SIGTERM)
    assert sock.recv(4096) == b"STOPPING=1\nSTATUS=leaving: detaching"
    assert agent.wait() == 0, agent.describe()
    assert agent.stderr == "", agent.describe()


@pytest.mark.root
def test_a_start_that_fails_says_nothing_ready(
    lab: netlab.Lab, agents: AgentPool, tmp_path: Path, manager: tuple[socket.socket, str]
) -> None:
    """A configuration refused (exit 2): no READY=1 (systemd then says the start failed, with the agent's line)."""
    sock, path = manager
    files = AgentFiles.make(tmp_path, extra='[ebpf]\nxdp_mode = "nonsense"\n')
    agent = agents.start(lab.host_if, *files.args(), env=agent_env(**{ENV: path}))
    assert agent.wait() == 2, agent.describe()
    sock.settimeout(0.5)
    with pytest.raises(TimeoutError):
        sock.recv(4096)
