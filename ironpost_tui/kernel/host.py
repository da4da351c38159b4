"""Facts about this host: privileges, interfaces, the per-interface lock."""

from __future__ import annotations

import fcntl
import os
import socket
from pathlib import Path

from ironpost_tui.errors import AlreadyRunning, BadInterfaceName, CaptureBusy, NoSuchInterface, NotPermitted
from ironpost_tui.model import StrEnum

CAP_NET_ADMIN = 12
CAP_SYS_ADMIN = 21
CAP_PERFMON = 38
CAP_BPF = 39

IFNAMSIZ = 16  # the kernel's limit, with the terminating NUL
RUN_DIR = Path("/run/ironpost")
PIN_ROOT = Path("/sys/fs/bpf/ironpost")


def check_iface_name(name: str) -> str:
    """``name`` if a Linux interface can have it, else BadInterfaceName.

    The kernel's own rule (``dev_valid_name``): 1 to 15 bytes, not ``.`` or ``..``, no ``/``,
    ``:`` or whitespace; and, since the name reaches paths, logs and terminals, no control or
    non-printable character.  Every name that becomes a path (pins, the lock, the state file)
    or a map key goes through here first.
    """
    size = len(name.encode("utf-8", "surrogateescape"))
    if (
        not 0 < size < IFNAMSIZ
        or name in (".", "..")
        or any(c in "/:" or not c.isprintable() or c.isspace() for c in name)
    ):
        raise BadInterfaceName(
            f"{name!r} is not an interface name (1-15 bytes; no '/', ':', whitespace or control characters)"
        )
    return name


def effective_caps() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("CapEff:"):
            return int(line.split()[1], 16)
    return 0


def check_privileges() -> None:
    caps = effective_caps()

    def has(cap: int) -> bool:
        return bool(caps & (1 << cap))

    if has(CAP_SYS_ADMIN) and has(CAP_NET_ADMIN):
        return
    if has(CAP_BPF) and has(CAP_NET_ADMIN) and has(CAP_PERFMON):
        return
    raise NotPermitted(
        "ironpost-tui needs root (or CAP_BPF, CAP_PERFMON and CAP_NET_ADMIN) to load XDP programs: run it with sudo"
    )


def ifindex(iface: str) -> int:
    try:
        return socket.if_nametoindex(check_iface_name(iface))
    except OSError:
        raise NoSuchInterface(f"interface '{iface}' not found: `ip link` lists the interfaces") from None


class InterfaceState(StrEnum):
    UP = "up"
    DOWN = "down"
    GONE = "gone"  # deleted, or replaced by another with the same name
    DETACHED = "detached"  # there, but the program's link was detached by another process (bpftool link detach)


def interface_state(iface: str, expected_index: int) -> InterfaceState:
    base = Path("/sys/class/net") / iface  # checked when the engine started (ifindex)
    try:
        if int((base / "ifindex").read_text()) != expected_index:
            return InterfaceState.GONE
        flags = int((base / "flags").read_text(), 16)
    except (OSError, ValueError):
        return InterfaceState.GONE
    return InterfaceState.UP if flags & 0x1 else InterfaceState.DOWN


def pin_dir(iface: str) -> Path:
    return PIN_ROOT / check_iface_name(iface)


def ensure_bpffs() -> None:
    """Mount bpffs at /sys/fs/bpf if nothing is mounted there."""
    mounts = Path("/proc/mounts").read_text().split("\n")
    if any(line.split(" ")[1:3] == ["/sys/fs/bpf", "bpf"] for line in mounts if line):
        return
    import subprocess

    subprocess.run(["mount", "-t", "bpf", "bpf", "/sys/fs/bpf"], check=True, capture_output=True)


class InterfaceLock:
    """One controller per interface: an flock on /run/ironpost/<iface>.lock.

    With ``purpose`` ("capture"), another lock of the same interface: <iface>.<purpose>.lock.
    """

    def __init__(self, iface: str, purpose: str = "") -> None:
        name = check_iface_name(iface) + (f".{purpose}" if purpose else "")
        self.path = RUN_DIR / f"{name}.lock"
        self._fd = -1
        self.iface = iface
        self.purpose = purpose

    def acquire(self) -> None:
        """Take the lock; CaptureBusy (a capture lock) or AlreadyRunning when another process holds it."""
        pid = self._take()
        if pid is None:
            return
        if self.purpose == "capture":
            raise CaptureBusy(f"another capture (pid {pid}) is running on {self.iface}: wait for it to end or stop it")
        raise AlreadyRunning(f"another ironpost-tui (pid {pid}) controls {self.iface}: stop it first")

    def try_acquire(self) -> bool:
        """Take the lock if nobody holds it (True), without waiting; False when another process holds it."""
        return self._take() is None

    def _take(self) -> str | None:
        """Take the lock: None, or the holder's pid as its file says ("?" unknown) when another holds it."""
        RUN_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)  # root's: the command-line sockets live here too
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                os.close(fd)
                return pid
            # The holder before us may have unlinked the file after we opened it:
            # only a lock on the file that is still at the path counts.
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return None

    def holder(self) -> int | None:
        """The pid of the live process holding the lock, or None."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            text = os.pread(fd, 32, 0).decode(errors="replace").strip()
            return int(text) if text.isdigit() else None
        else:
            return None
        finally:
            os.close(fd)

    def release(self) -> None:
        if self._fd >= 0:
            try:
                self.path.unlink()
            except FileNotFoundError:
                pass
            os.close(self._fd)
            self._fd = -1
