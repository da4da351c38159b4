"""Run a command in a detached tmux session of its own server socket and read its screen.
Helpers for test_ui_tmux.py and test_demo.py (no tests here)."""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import signal
import subprocess
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

SOCKET = "ironpost-tests"


def socket_dir() -> Path:
    """Where tmux puts its servers' sockets for this user."""
    return Path(os.environ.get("TMUX_TMPDIR", "/tmp")) / f"tmux-{os.getuid()}"


def remove_server_if_idle() -> None:
    """The tests' tmux server's socket removed once no session is left in it (a server whose last session
    ends exits and leaves its socket behind), and the directory tmux made for it if nothing else is in it;
    a session of another run beside this one keeps them."""
    if tmux("list-sessions", check=False).returncode == 0:
        return
    tmux("kill-server", check=False)
    (socket_dir() / SOCKET).unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # tmux's directory of sockets, when no other socket is left in it
        socket_dir().rmdir()


def tmux(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(["tmux", "-L", SOCKET, *args], capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"tmux {' '.join(args)}: {proc.stderr.strip()}")
    return proc


class Session:
    def __init__(self, argv: Sequence[str], width: int = 160, height: int = 48) -> None:
        self.name = f"ipt-{secrets.token_hex(4)}"
        # pytest (a plugin) sets COLUMNS/LINES=80x24 in os.environ while a test runs: the
        # tmux server inherits them and Textual would believe them over the real pane size.
        cmd = "exec env -u COLUMNS -u LINES " + " ".join(shlex.quote(a) for a in argv)
        # The pane gets its size first; the command starts in it afterwards (respawn-pane),
        # so it never sees a resize it could miss before its SIGWINCH handler is in place.
        tmux("new-session", "-d", "-s", self.name, "-x", str(width), "-y", str(height), "sleep 600")
        tmux("set-option", "-t", self.name, "remain-on-exit", "on", check=False)
        size = tmux("display", "-p", "-t", self.name, "#{window_width}x#{window_height}").stdout.strip()
        assert size == f"{width}x{height}", size
        tmux("respawn-pane", "-k", "-t", self.name, cmd)
        # the command's pid (exec: env, then the command itself, keep it), read after the respawn
        self.pid = int(tmux("list-panes", "-t", self.name, "-F", "#{pane_pid}").stdout.split()[0])
        assert self.alive(), f"{argv[0]} did not start"
        self.last = ""

    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        # a zombie is not alive
        try:
            with open(f"/proc/{self.pid}/stat") as f:
                return f.read().split(") ", 1)[1].split()[0] != "Z"
        except OSError:
            return False

    def capture(self) -> str:
        proc = tmux("capture-pane", "-p", "-t", self.name, check=False)
        if proc.returncode == 0:
            self.last = proc.stdout
        return self.last

    def scrollback(self, lines: int = 200) -> str:
        """The pane with its history, wrapped lines joined (what a command printed after the console)."""
        return tmux("capture-pane", "-p", "-J", "-S", f"-{lines}", "-t", self.name, check=False).stdout

    def keys(self, *keys: str, literal: bool = False) -> None:
        tmux("send-keys", "-t", self.name, *(["-l"] if literal else []), *keys)

    def wait_screen(self, cond: Callable[[str], bool], timeout: float, what: str) -> str:
        end = time.monotonic() + timeout
        while True:
            screen = self.capture()
            if cond(screen):
                return screen
            if time.monotonic() > end:
                raise AssertionError(f"{what}: not on screen within {timeout} s:\n{screen}")
            time.sleep(0.2)

    def wait_exit(self, timeout: float) -> bool:
        end = time.monotonic() + timeout
        while self.alive():
            if time.monotonic() > end:
                return False
            time.sleep(0.02)
        return True

    def kill(self) -> None:
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
            self.wait_exit(5)
        tmux("kill-session", "-t", self.name, check=False)


@contextlib.contextmanager
def sessions() -> Iterator[list[Session]]:
    made: list[Session] = []
    try:
        yield made
    finally:
        for s in made:
            s.kill()
