"""`ironpost-tui cleanup IFACE`: remove ironpost's program and pins. Idempotent.

While an ironpost-tui controls the interface, cleanup is the panic button
instead: it asks that process (SIGUSR2) to clear every drop rule at once,
and leaves it running, in control.  One that lets go of the interface
within LEAVING_SECS of the signal was leaving (a console quitting with its
rules kept enforcing, which ignores a panic): then what it left is removed,
as when nobody controls the interface.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import stat
import time
from pathlib import Path

from ironpost_tui.errors import NoSuchInterface
from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.xdp_link import MODE_FLAGS, occupants

LEAVING_SECS = 1.5  # how long a signalled holder may take to let go of the interface, if it was leaving


def cleanup(iface: str) -> list[str]:
    """Detach every ironpost program from ``iface`` and remove its pins; says what it did."""
    host.check_privileges()
    # Another cleanup's panic finds this one holding the lock while it removes: never killed midway by it.
    ignored = None
    with contextlib.suppress(ValueError):  # not the main thread
        ignored = signal.signal(signal.SIGUSR2, signal.SIG_IGN)
    try:
        return _cleanup(iface)
    finally:
        if ignored is not None:
            signal.signal(signal.SIGUSR2, ignored)


def _cleanup(iface: str) -> list[str]:
    done: list[str] = []
    lock = host.InterfaceLock(iface)
    pid = _holder(lock)
    if pid is not None:
        if not _is_ironpost(pid):
            return [f"the lock of {iface} is held by pid {pid}, which is not ironpost-tui: nothing signalled"]
        os.kill(pid, signal.SIGUSR2)
        asked = f"ironpost-tui (pid {pid}) controls {iface}: asked it to clear every drop rule (panic)"
        deadline = time.monotonic() + LEAVING_SECS
        while lock.holder() is not None:
            if time.monotonic() > deadline:
                return [asked]
            time.sleep(0.05)
        done.append(f"ironpost-tui (pid {pid}) was leaving {iface}: what it left is removed")
    lock.acquire()
    try:
        try:
            index: int | None = host.ifindex(iface)
        except NoSuchInterface:
            index = None
        if index is not None:
            for occ in occupants(index):
                if not occ.is_ironpost:
                    continue
                if occ.link_id:
                    fd = libbpf.link_fd_by_id(occ.link_id)
                    try:
                        libbpf.link_detach(fd)
                    finally:
                        os.close(fd)
                    done.append(f"detached ironpost_xdp (prog id {occ.prog_id}, link id {occ.link_id}) from {iface}")
                else:
                    fd = libbpf.prog_fd_by_id(occ.prog_id)
                    try:
                        libbpf.xdp_detach(index, MODE_FLAGS[occ.mode], fd)
                    finally:
                        os.close(fd)
                    done.append(f"detached netlink-attached ironpost_xdp (prog id {occ.prog_id}) from {iface}")
        pins = host.pin_dir(iface)
        if pins.exists():
            shutil.rmtree(pins)
            done.append(f"removed pins under {pins}")
        # The command-line socket of a controller that was killed: we hold the lock, so nobody serves it.
        sock = host.RUN_DIR / f"{iface}.sock"
        try:
            if stat.S_ISSOCK(os.lstat(sock).st_mode):
                os.unlink(sock)
                done.append(f"removed {sock}, left by an ironpost-tui that has ended")
        except FileNotFoundError:
            pass
    finally:
        lock.release()
    return done


def _holder(lock: host.InterfaceLock) -> int | None:
    """The lock's holder, read again for a moment while its file names a process that is not ironpost-tui: a new
    holder writes its pid just after it takes the lock, and until then the file names its predecessor (whose pid
    may be another process's by now)."""
    pid = lock.holder()
    for _ in range(10):
        if pid is None or _is_ironpost(pid):
            break
        time.sleep(0.02)
        pid = lock.holder()
    return pid


def _is_ironpost(pid: int) -> bool:
    try:
        return b"ironpost" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
