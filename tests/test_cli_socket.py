"""The command-line socket's server, on its own (a handler that records what reached it), as an
attacker would try it: loosened permissions and a non-root peer, a planted link, a stale socket,
a request too long, a client too slow, too many clients.  Root: the peer check admits uid 0 only,
and the unprivileged peer is made with setpriv."""

from __future__ import annotations

import json
import os
import shutil
import socket
import stat
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from ironpost_tui.engine.control_socket import server as server_mod
from ironpost_tui.engine.control_socket.protocol import MAX_REQUEST_BYTES, encode_answer
from ironpost_tui.engine.control_socket.server import SocketRefused, SocketServer
from ironpost_tui.rules.audit import Peer

pytestmark = pytest.mark.root

NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# Run as nobody: connect, send a block, print the answer (or the errno of a refused connect).
PEER_SCRIPT = """
import socket, sys
s = socket.socket(socket.AF_UNIX)
try:
    s.connect(sys.argv[1])
except OSError as e:
    print("connect:", e.errno)
    sys.exit(0)
try:
    s.sendall(b'{"v":1,"op":"block","addr":"198.18.0.9"}\\n')
except BrokenPipeError:
    pass  # refused before it was read: the refusal is there to read
print(s.makefile("rb").readline().decode().strip())
"""


class Recorder:
    """The handler: answers {"echo": line} and keeps every (line, peer) it was given."""

    def __init__(self) -> None:
        self.calls: list[tuple[bytes, Peer]] = []
        self.lock = threading.Lock()

    def __call__(self, line: bytes, peer: Peer) -> bytes:
        with self.lock:
            self.calls.append((line, peer))
        return encode_answer({"echo": line.decode(errors="replace")})


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A directory nobody could enter if its mode let them (tmp_path's parents are root's 0700)."""
    top = Path(tempfile.mkdtemp(prefix="ipt-cli-"))
    os.chmod(top, 0o755)
    d = top / "run"
    d.mkdir()
    os.chmod(d, 0o755)
    try:
        yield d
    finally:
        shutil.rmtree(top)


@pytest.fixture
def served(run_dir: Path) -> Iterator[tuple[SocketServer, Recorder]]:
    handler = Recorder()
    srv = SocketServer(run_dir / "lab0.sock", handler)
    srv.start()
    try:
        yield srv, handler
    finally:
        srv.close()


def ask(path: Path, data: bytes, timeout: float = 5.0) -> dict[str, object]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(str(path))
        try:
            s.sendall(data)
        except BrokenPipeError:
            pass  # refused before it was read: the refusal is still there to read
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            if not chunk:
                break
            buf += chunk
    answer = json.loads(buf)
    assert isinstance(answer, dict)
    return answer


def test_the_socket_is_roots_alone_and_answers_root(served: tuple[SocketServer, Recorder], run_dir: Path) -> None:
    srv, handler = served
    st = os.lstat(srv.path)
    assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600 and st.st_uid == 0
    assert stat.S_IMODE(os.stat(run_dir).st_mode) == 0o700  # narrowed from 0755
    assert not [p for p in run_dir.iterdir() if p.name.startswith(".")]  # no temporary name left behind
    assert ask(srv.path, b'{"v":1,"op":"rules"}\n') == {"v": 1, "ok": True, "result": {"echo": '{"v":1,"op":"rules"}'}}
    [(line, peer)] = handler.calls
    assert peer == Peer(pid=os.getpid(), uid=0, gid=os.getgid())


def test_a_non_root_peer_is_refused_even_when_the_permissions_let_it_in(
    served: tuple[SocketServer, Recorder], run_dir: Path
) -> None:
    srv, handler = served
    script = PEER_SCRIPT
    as_nobody = [*NOBODY, "/usr/bin/python3", "-c", script, str(srv.path)]
    # As made: the directory keeps nobody out before the socket is even reached.
    proc = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30, cwd="/")
    assert proc.stdout.strip() == "connect: 13", proc  # EACCES
    # Loosened by someone: nobody reaches the socket, and the server still says no.
    os.chmod(run_dir, 0o755)
    os.chmod(srv.path, 0o666)
    proc = subprocess.run(as_nobody, capture_output=True, text=True, timeout=30, cwd="/")
    answer = json.loads(proc.stdout)
    assert answer["ok"] is False and answer["exit"] == 3, answer
    assert "uid 65534 is not root" in answer["error"]
    assert handler.calls == []  # the request never reached the handler
    # positive control: root, through the same loosened path, is served
    assert ask(srv.path, b'{"v":1,"op":"rules"}\n')["ok"] is True
    assert len(handler.calls) == 1


def test_a_stale_socket_is_replaced_and_a_planted_link_is_not_followed(run_dir: Path, tmp_path: Path) -> None:
    path = run_dir / "lab0.sock"
    # a controller that died: its socket file is left, nobody listens
    dead = socket.socket(socket.AF_UNIX)
    dead.bind(str(path))
    dead.close()
    with pytest.raises(ConnectionRefusedError):
        ask(path, b"{}\n")
    handler = Recorder()
    srv = SocketServer(path, handler)
    srv.start()
    try:
        assert ask(path, b"x\n")["ok"] is True
    finally:
        srv.close()
    assert not path.exists()  # removed at close
    # a link planted at the path, pointing at a file that must not change
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    os.chmod(target, 0o644)
    path.symlink_to(target)
    srv = SocketServer(path, handler)
    srv.start()
    try:
        assert stat.S_ISSOCK(os.lstat(path).st_mode)
        assert ask(path, b"y\n")["ok"] is True
    finally:
        srv.close()
    assert target.read_text() == "keep me\n" and stat.S_IMODE(os.stat(target).st_mode) == 0o644


def test_what_cannot_be_made_safe_is_refused(tmp_path: Path) -> None:
    # a directory at the socket's path
    d = tmp_path / "a"
    (d / "lab0.sock").mkdir(parents=True)
    with pytest.raises(SocketRefused, match="is a directory"):
        SocketServer(d / "lab0.sock", Recorder()).start()
    # the run directory a link (to a directory anyone could prepare)
    real = tmp_path / "elsewhere"
    real.mkdir()
    (tmp_path / "linked").symlink_to(real)
    with pytest.raises(SocketRefused, match="not a directory"):
        SocketServer(tmp_path / "linked" / "lab0.sock", Recorder()).start()
    assert list(real.iterdir()) == []
    # the run directory another user's
    theirs = tmp_path / "theirs"
    theirs.mkdir()
    os.chown(theirs, 65534, 65534)
    with pytest.raises(SocketRefused, match="belongs to uid 65534"):
        SocketServer(theirs / "lab0.sock", Recorder()).start()
    assert list(theirs.iterdir()) == []


def test_close_removes_only_its_own_socket(run_dir: Path) -> None:
    srv = SocketServer(run_dir / "lab0.sock", Recorder())
    srv.start()
    # replaced meanwhile (by hand, or by a newer controller after a lost lock): not ours to remove
    os.unlink(srv.path)
    other = socket.socket(socket.AF_UNIX)
    other.bind(str(srv.path))
    try:
        srv.close()
        assert stat.S_ISSOCK(os.lstat(srv.path).st_mode)
    finally:
        other.close()


def test_a_request_too_long_is_refused_unread(served: tuple[SocketServer, Recorder]) -> None:
    srv, handler = served
    answer = ask(srv.path, b"x" * (MAX_REQUEST_BYTES + 1) + b"\n")
    assert answer["ok"] is False and answer["exit"] == 2 and "longer than" in str(answer["error"])
    # without a newline at all: cut off at the limit too
    answer = ask(srv.path, b"y" * (4 * MAX_REQUEST_BYTES))
    assert answer["ok"] is False and answer["exit"] == 2
    assert handler.calls == []
    # negative control: exactly at the limit is a request
    assert ask(srv.path, b"z" * MAX_REQUEST_BYTES + b"\n")["ok"] is True


def test_a_slow_client_is_cut_off_and_does_not_hold_up_the_others(
    served: tuple[SocketServer, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, handler = served
    monkeypatch.setattr(server_mod, "REQUEST_SECS", 1.0)
    slow = socket.socket(socket.AF_UNIX)
    slow.connect(str(srv.path))
    t0 = time.monotonic()
    closed = None
    try:
        # a byte every 0.1 s, never a newline: each byte arrives in time, the whole line never does
        for i in range(40):
            try:
                slow.send(b"{")
            except (BrokenPipeError, ConnectionResetError):
                closed = time.monotonic() - t0
                break
            if i == 2:  # meanwhile another client is answered
                assert ask(srv.path, b"fast\n", timeout=2.0)["ok"] is True
            time.sleep(0.1)
    finally:
        slow.close()
    assert closed is not None, "the slow client was never cut off"
    assert 0.9 <= closed < 3.0, closed  # cut off at its 1 s (liveness), not before
    assert [line for line, _ in handler.calls] == [b"fast"]


def test_a_client_whose_thread_cannot_start_is_told_busy_and_the_socket_still_serves(
    served: tuple[SocketServer, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Thread.start() raising (a process's thread limit, no memory) ended the accept loop, and with it the command
    line, for good (a review of session 29).  Now that client is told busy, and the next one is served."""
    import threading

    srv, handler = served
    real_start = threading.Thread.start
    failed: list[str] = []

    def start_once_failing(self: threading.Thread) -> None:
        if self.name == "ironpost-cli client" and not failed:
            failed.append(self.name)
            raise RuntimeError("can't start new thread")
        real_start(self)

    monkeypatch.setattr(threading.Thread, "start", start_once_failing)
    answer = ask(srv.path, b"first\n")
    assert answer["ok"] is False and "cannot start a thread" in str(answer["error"]), answer
    assert ask(srv.path, b"second\n")["ok"] is True
    assert failed and [line for line, _ in handler.calls] == [b"second"]


def test_beyond_the_client_limit_a_client_is_told_busy(
    served: tuple[SocketServer, Recorder], monkeypatch: pytest.MonkeyPatch
) -> None:
    srv, handler = served
    monkeypatch.setattr(server_mod, "MAX_CLIENTS", 2)
    holders = []
    try:
        for _ in range(2):
            s = socket.socket(socket.AF_UNIX)
            s.connect(str(srv.path))
            holders.append(s)
        time.sleep(0.2)  # both accepted and in their threads
        answer = ask(srv.path, b"third\n")
        assert answer["ok"] is False and "serving 2 requests" in str(answer["error"])
    finally:
        for s in holders:
            s.close()
    # once they have gone, a client is served again
    end = time.monotonic() + 5
    while True:
        answer = ask(srv.path, b"fourth\n")
        if answer["ok"] or time.monotonic() > end:
            break
        time.sleep(0.05)
    assert answer["ok"] is True
    assert [line for line, _ in handler.calls] == [b"fourth"]
