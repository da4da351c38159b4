"""The command line's end of a controller's socket: one request, one answer.

``ask`` is what ``ironpost-tui block|unblock|rules|alerts`` call, and what a script in Python
can call itself (the tests drive a thousand blocks through it).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from ironpost_tui.engine.control_socket.protocol import (
    MAX_ANSWER_BYTES,
    MAX_USER_CHARS,
    Command,
    Request,
    decode_answer,
    encode_request,
    socket_path,
)
from ironpost_tui.errors import ExitStatus, IronpostError, NoController, NotPermitted
from ironpost_tui.kernel.host import RUN_DIR
from ironpost_tui.rules.audit import ssh_client_of
from ironpost_tui.text import unsafe

ANSWER_SECS = 30.0  # a change is saved and fsynced before the answer: a slow disk, a big configuration


class Refused(IronpostError):
    """The controller refused the request; its exit status is the controller's."""

    def __init__(self, message: str, title: str, exit_status: int) -> None:
        super().__init__(message, title)
        self.exit_status = ExitStatus(exit_status)


def request(command: Command, environ: Mapping[str, str] | None = None) -> Request:
    """``command`` with what the caller says of itself, from its environment as the console's audit
    takes it (SUDO_USER or USER; SSH_CONNECTION's client); a value the controller would refuse is left out."""
    env = os.environ if environ is None else environ
    user = env.get("SUDO_USER") or env.get("USER") or None
    if user is not None and (len(user) > MAX_USER_CHARS or unsafe(user) is not None or not user.isprintable()):
        user = None
    return Request(command, user, ssh_client_of(env))


def ask(iface: str, req: Request | Command, *, run_dir: Path = RUN_DIR, timeout: float = ANSWER_SECS) -> dict[str, Any]:
    """Send ``req`` to the controller of ``iface``; its result.

    NoController (exit 15) when none runs; NotPermitted (exit 3) when the socket is not ours to
    use; Refused with the controller's exit status (2: bad input or anti-lockout, nothing
    applied) when it says no."""
    if not isinstance(req, Request):
        req = request(req)
    path = socket_path(iface, run_dir)
    line = encode_request(req)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as sock:
        sock.settimeout(timeout)
        try:
            sock.connect(str(path))
        except (FileNotFoundError, NotADirectoryError):
            raise NoController(
                f"no ironpost-tui controls {iface} ({path} does not exist): start `ironpost-tui {iface}` "
                f"or `ironpost-tui {iface} --headless` first"
            ) from None
        except ConnectionRefusedError:
            raise NoController(
                f"no ironpost-tui controls {iface}: {path} was left by one that has ended; start "
                f"`ironpost-tui {iface} --headless` (it replaces the socket)"
            ) from None
        except PermissionError:
            raise NotPermitted(f"permission denied on {path}: the command line is root's, run it with sudo") from None
        try:
            try:
                sock.sendall(line)
            except BrokenPipeError:
                pass  # refused before it was read (busy, not root): the refusal is there to read
            data = _read_answer(sock, time.monotonic() + timeout)
        except TimeoutError:
            raise IronpostError(f"the controller of {iface} did not answer within {timeout:.0f} s") from None
        except ConnectionResetError:
            data = b""
    if not data:
        raise IronpostError(f"the controller of {iface} closed the connection without an answer: see its log")
    answer = decode_answer(data)
    if not answer.ok:
        raise Refused(answer.error, answer.title, answer.exit)
    return answer.result


def _read_answer(sock: socket.socket, deadline: float) -> bytes:
    buf = bytearray()
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        sock.settimeout(left)
        chunk = sock.recv(1 << 16)
        if not chunk:
            return bytes(buf)
        end = chunk.find(b"\n")
        if end >= 0:
            return bytes(buf + chunk[:end])
        buf += chunk
        if len(buf) > MAX_ANSWER_BYTES:
            raise IronpostError(f"the controller's answer is longer than {MAX_ANSWER_BYTES} bytes")
