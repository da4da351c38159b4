"""`ironpost-tui cleanup IFACE`: remove ironpost's program and pins. Idempotent."""

from __future__ import annotations

import os
import shutil

from . import host, libbpf
from .errors import NoSuchInterface
from .xdp_link import MODE_FLAGS, occupants


def cleanup(iface: str) -> list[str]:
    """Detach every ironpost program from ``iface`` and remove its pins; says what it did."""
    host.check_privileges()
    done: list[str] = []
    lock = host.InterfaceLock(iface)
    lock.acquire()  # refuses while a live ironpost-tui controls iface
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
    finally:
        lock.release()
    return done
