"""``[general] pid_file``: the process id, written when a run starts and removed when it ends.

Written with ironpost's one writer (a new file renamed into place, never through a link planted
at the path), mode 0644 so that a service manager or a script can read it.  A pid file naming
another live ironpost-tui is refused rather than taken over; one left by a run that died
(``kill -9``) is replaced.  At exit the file is removed only if it still names this process.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path

from ironpost_tui import files
from ironpost_tui.errors import IronpostError

log = logging.getLogger(__name__)
MODE = 0o644
PID_MAX = 4_194_304  # the kernel's ceiling for pid_max (2**22)


class PidFileError(IronpostError):
    title = "Pid file"


def _read_pid(path: Path) -> int | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:  # missing, a link (not followed), unreadable
        return None
    try:
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return None
    finally:
        os.close(fd)
    return int(text) if text.isdigit() and 0 < int(text) <= PID_MAX else None


def _is_ironpost(pid: int) -> bool:
    """Whether ``pid`` is a live ironpost-tui (a pid reused by another program does not count), run by this
    process's user: another user can start a process with "ironpost" in its arguments on a stale pid, and
    would otherwise keep every later start refused."""
    try:
        status = Path(f"/proc/{pid}/status").read_text(errors="replace")
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
    # The real uid: a set-uid program (sudo or su at its password prompt) runs with root's effective uid.
    real = next((line.split()[1:2] for line in status.splitlines() if line.startswith("Uid:")), [])
    return real == [str(os.getuid())] and b"ironpost" in cmdline


@contextlib.contextmanager
def pid_file(path: Path | None, pid: int | None = None) -> Iterator[None]:
    """Write this process's id (or ``pid``: the console's, from its engine process) to ``path`` for the
    duration (nothing when ``path`` is None)."""
    if path is None:
        yield
        return
    me = os.getpid() if pid is None else pid
    other = _read_pid(path)
    if other is not None and other != me and _is_ironpost(other):
        raise PidFileError(
            f"{path} names a running ironpost-tui (pid {other}): stop it, or give this run another [general] pid_file"
        )
    try:
        files.write_atomic(path, f"{me}\n".encode(), mode=MODE)
    except OSError as exc:
        raise PidFileError(f"cannot write the pid file {path}: {exc.strerror or exc}") from None
    try:
        yield
    finally:
        if _read_pid(path) == me:
            try:
                path.unlink()
            except OSError as exc:
                log.warning("cannot remove the pid file %s: %s", path, exc.strerror or exc)
