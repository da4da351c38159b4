"""`ironpost-tui cleanup IFACE`: remove ironpost's program and pins. Idempotent.

While an ironpost-tui controls the interface, cleanup is the panic button
instead: it asks that process (SIGUSR2) to clear every drop rule at once,
and leaves it running, in control.
"""

from __future__ import annotations

import os
import shutil
import signal
import stat

from ironpost_tui.errors import NoSuchInterface
from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.xdp_link import MODE_FLAGS, occupants


def cleanup(iface: str) -> list[str]:
    """Detach every ironpost program from ``iface`` and remove its pins; says what it did."""
    host.check_privileges()
    done: list[str] = []
    lock = host.InterfaceLock(iface)
    pid = lock.holder()
    if pid is not None:
        os.kill(pid, signal.SIGUSR2)
        return [f"ironpost-tui (pid {pid}) controls {iface}: asked it to clear every drop rule (panic)"]
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
