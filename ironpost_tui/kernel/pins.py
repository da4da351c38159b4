"""Handing a running program over to pins, as a ``--persist`` start would have made them.

The console's "keep enforcing" on quit: the maps and the link of a program attached without
``--persist`` are pinned under ``/sys/fs/bpf/ironpost/IFACE/`` with the names a ``--persist``
start uses, so the program outlives the process, ``ironpost-tui cleanup IFACE`` removes it, and
the next ``--persist`` start adopts it like any other.
"""

from __future__ import annotations

import contextlib
import subprocess
from pathlib import Path

from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel import abi, host, libbpf
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.kernel.xdp_link import XdpLink

LINK_PIN = "link"


def pin_running(dp: Datapath, link: XdpLink, pin_dir: Path) -> None:
    """Pin ``dp``'s maps, then ``link``, under ``pin_dir``: all of them or none.

    The link goes last: a pinned link is what marks the interface as persisted, so a
    failure part-way leaves nothing that a later start would take for a persisted run."""
    iface = pin_dir.name
    try:
        host.ensure_bpffs()
    except (OSError, subprocess.SubprocessError) as exc:
        raise IronpostError(f"bpffs could not be mounted at /sys/fs/bpf ({exc}): nothing was pinned") from exc
    if pin_dir.exists() and any(pin_dir.iterdir()):
        raise IronpostError(
            f"{pin_dir} holds pins already (another run's): nothing was pinned; "
            f"remove them with `ironpost-tui cleanup {iface}` after quitting"
        )
    pin_dir.mkdir(parents=True, exist_ok=True)
    made: list[Path] = []
    try:
        for name in abi.PINNED_MAPS:
            path = pin_dir / name
            libbpf.obj_pin(dp.map_fd(name), str(path))
            made.append(path)
        path = pin_dir / LINK_PIN
        link.pin(str(path))
        made.append(path)
    except OSError as exc:
        _undo(made, pin_dir)
        raise IronpostError(f"pinning the program under {pin_dir} failed ({exc}): nothing was pinned") from exc
    except BaseException:
        _undo(made, pin_dir)
        raise


def _undo(made: list[Path], pin_dir: Path) -> None:
    for path in reversed(made):
        with contextlib.suppress(OSError):
            path.unlink()
    with contextlib.suppress(OSError):
        pin_dir.rmdir()
