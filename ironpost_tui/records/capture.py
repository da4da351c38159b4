"""One capture, from start to file: the kernel's copies (kernel/capture.py) into pcapng (pcapng_file.py).

Stops at whichever limit comes first: a packet count, a file size, a duration, or ``stop()``.  The
same run serves the command line (``ironpost-tui capture``) and the console's ``c``; progress is a
callback, so neither front end is imported here.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from ironpost_tui import files
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel import abi, host, libbpf
from ironpost_tui.kernel.capture import CaptureCounts, CaptureFilter, CaptureMaps, Copy
from ironpost_tui.model import StrEnum
from ironpost_tui.records.pcapng_file import PcapngFile

VERDICT_NAMES = {
    abi.VERDICT_PASS: "pass",
    abi.VERDICT_DROP: "drop",
    abi.VERDICT_MONITOR: "monitor",
    abi.VERDICT_PROTECTED: "protected",
}
DEFAULT_SECONDS = 60.0
DEFAULT_MAX_BYTES = 64 * 1024 * 1024
POLL_MS = 100
ATTACHED_CHECK_SECS = 1.0  # how often a capture checks that the program it reads is still attached
DRAIN_SECS = 0.2  # after CAPTURE_CFG says stop: copies of packets already past the check


class StopReason(StrEnum):
    """What ended a capture."""

    COUNT = "count"
    SIZE = "size"
    TIME = "time"
    STOPPED = "stopped"  # stop(): ctrl+c, SIGTERM, `c` again in the console
    DETACHED = "detached"  # the program it read left the interface
    WRITE_FAILED = "write failed"  # the disk refused the file (ENOSPC, EIO): CaptureWriteFailed says it


@dataclass(frozen=True)
class Limits:
    """Whichever comes first ends the capture (None: no such limit)."""

    count: int | None = None
    seconds: float | None = DEFAULT_SECONDS
    max_bytes: int | None = DEFAULT_MAX_BYTES


@dataclass(frozen=True)
class Progress:
    """Where a capture stands: packets and bytes in the file, the kernel's counts."""

    written: int
    size: int
    elapsed: float
    counts: CaptureCounts = field(default_factory=CaptureCounts)
    stopped_by: StopReason | None = None  # set once it has ended

    def describe(self) -> str:
        c = self.counts
        return (
            f"wrote {self.written} packets ({self.size} bytes) in {self.elapsed:.1f}s; kernel: matched {c.matched}"
            f" = captured {c.captured} + lost {c.lost} (rate limit {c.lost_rate}, buffer {c.lost_perf})"
        )


def comment(copy: Copy, rule_names: Mapping[int, str]) -> str:
    verdict = VERDICT_NAMES.get(copy.verdict, str(copy.verdict))
    if copy.rule_slot is None:
        return f"ironpost verdict={verdict} rule=none"
    name = rule_names.get(copy.rule_slot)
    rule = f"rule={name} slot={copy.rule_slot}" if name else f"rule=slot:{copy.rule_slot}"
    return f"ironpost verdict={verdict} {rule}"


def wall_offset_ns() -> int:
    """CLOCK_REALTIME minus CLOCK_MONOTONIC (bpf_ktime_get_ns()'s clock) in integer ns, read between two
    monotonic reads (rules.wall_clock.monotonic_to_wall_offset is a float of seconds: it cannot keep nanoseconds)."""
    before = time.monotonic_ns()
    wall = time.time_ns()
    after = time.monotonic_ns()
    return wall - (before + after) // 2


class Capture:
    """A capture on ``iface`` into ``path``; run() blocks until a limit or stop()."""

    def __init__(
        self,
        iface: str,
        filt: CaptureFilter,
        path: Path,
        limits: Limits,
        rule_names: Mapping[int, str] | None = None,
        owner: files.Owner | None = None,
    ) -> None:
        self.iface = iface
        self.filt = filt
        self.path = path
        self.limits = limits
        self.rule_names = dict(rule_names or {})
        self.owner = owner
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(
        self,
        on_progress: Callable[[Progress], None] | None = None,
        on_start: Callable[[int], None] | None = None,
    ) -> Progress:
        """Capture until a limit or stop(); ``on_start(prog_id)`` once the kernel copies."""
        lock = host.InterfaceLock(self.iface, "capture")
        # CaptureBusy when another capture runs here.  Held around every write of CAPTURE_CFG: the engine
        # takes CAPTURE_CFG on with this lock free for a killed capture's, and turns it off.
        lock.acquire()
        try:
            maps = CaptureMaps.on_interface(self.iface)
            try:
                return self._run(maps, on_progress, on_start)
            finally:
                maps.close()
        finally:
            lock.release()

    def _check_dir(self, st: os.stat_result) -> str | None:
        """The directory as it is opened to write in (check_output judged it by name, earlier)."""
        if self.owner is None or files.writable_by(st, self.owner):
            return None  # without sudo, the kernel's own permission check is the one
        return f"not writable by uid {self.owner.uid}"

    def _run(
        self,
        maps: CaptureMaps,
        on_progress: Callable[[Progress], None] | None,
        on_start: Callable[[int], None] | None,
    ) -> Progress:
        try:
            out = PcapngFile(self.path, self.iface, self.filt.snaplen, self.owner, self._check_dir)
        except FileExistsError:
            raise OutputRefused(f"{self.path} exists: give a new file name (a capture never replaces a file)") from None
        except OSError as exc:
            raise OutputRefused(f"{self.path}: {exc.strerror}") from None
        offset = wall_offset_ns()
        written = 0
        reason: StopReason | None = None

        def on_copy(copy: Copy) -> None:
            nonlocal written
            if out.failed is not None or self._full(written, out.size):
                return  # past a limit while draining, or the disk refused the file: counted by the kernel
            out.write(copy.ts_ns + offset, copy.data, copy.pkt_len, comment(copy, self.rule_names))
            written += 1

        start = time.monotonic()
        # Left in this order whatever each step meets (a full disk while draining left the rings and the file
        # open until session 29): the kernel's copies off, the rings drained, then closed, the file closed.
        with contextlib.ExitStack() as leaving:
            leaving.callback(_close_quietly, out)  # out.failed says what the disk refused
            maps.configure(None)
            # A full ring makes bpf_perf_event_output() fail, which the program counts (CAPSTAT_LOST_PERF):
            # the ring's own lost records tell the same again, so they are not counted twice.
            rings = maps.open_rings(on_copy, lambda _n: None)
            leaving.callback(rings.close)
            leaving.callback(_drain, rings)
            leaving.callback(maps.configure, None)
            maps.reset()
            maps.configure(self.filt)
            start = time.monotonic()
            if on_start is not None:
                on_start(maps.prog_id)
            last_report = last_check = 0.0
            while not reason:
                if rings.poll(POLL_MS):
                    with contextlib.suppress(OSError):  # the disk refused it: out.failed ends the capture
                        out.flush()
                now = time.monotonic()
                reason = StopReason.WRITE_FAILED if out.failed else self._reason(written, out.size, now - start)
                if not reason and now - last_check >= ATTACHED_CHECK_SECS:
                    last_check = now
                    reason = None if maps.attached() else StopReason.DETACHED
                if on_progress is not None and (reason or now - last_report >= 0.5) and not out.failed:
                    last_report = now
                    on_progress(Progress(written, out.size, now - start, maps.counts()))
        if out.failed is not None:
            raise CaptureWriteFailed(
                f"{self.path}: {out.failed.strerror or out.failed}: the capture stopped; the file holds the "
                f"{out.packets_on_disk:,} packets written before, every one whole"
            )
        done = Progress(written, out.size, time.monotonic() - start, maps.counts(), reason)
        if on_progress is not None:
            on_progress(done)
        return done

    def _full(self, written: int, size: int) -> bool:
        lim = self.limits
        return (lim.count is not None and written >= lim.count) or (lim.max_bytes is not None and size >= lim.max_bytes)

    def _reason(self, written: int, size: int, elapsed: float) -> StopReason | None:
        lim = self.limits
        if self._stop.is_set():
            return StopReason.STOPPED
        if lim.count is not None and written >= lim.count:
            return StopReason.COUNT
        if lim.max_bytes is not None and size >= lim.max_bytes:
            return StopReason.SIZE
        if lim.seconds is not None and elapsed >= lim.seconds:
            return StopReason.TIME
        return None


def _drain(rings: libbpf.PerfBuffer) -> None:
    """The copies already in the rings, for DRAIN_SECS (the kernel's copying is off)."""
    deadline = time.monotonic() + DRAIN_SECS
    while time.monotonic() < deadline:
        rings.poll(20)


def _close_quietly(out: PcapngFile) -> None:
    with contextlib.suppress(OSError):  # out.failed says it
        out.close()


class CaptureWriteFailed(IronpostError):
    """The disk refused the capture file mid-way (full, or an I/O error): the capture stopped, and the file
    holds the packets written before, whole."""

    title = "Capture stopped"


class OutputRefused(IronpostError):
    """-w names a file a capture will not write: bad input, nothing written."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Capture file refused"


def check_output(path: Path, owner: files.Owner | None) -> Path:
    """``path`` if a capture may create it: a new name, no ``..``, in a directory its owner can write.

    A capture never replaces a file (nor a link: it is not followed either, see files.py); the
    directory must be writable by whoever the file is for (the user who ran sudo, else us).
    """
    if ".." in path.parts:
        raise OutputRefused(f"{path}: a capture file's path has no '..' in it")
    if not path.name or path.name in (".", ".."):
        raise OutputRefused(f"{path}: not a file name")
    if os.path.lexists(path):
        raise OutputRefused(f"{path} exists: give a new file name (a capture never replaces a file)")
    directory = path.parent
    try:
        st = os.stat(directory)
    except OSError as exc:
        raise OutputRefused(f"{directory}: {exc.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise OutputRefused(f"{directory} is not a directory")
    if not files.writable_by(st, owner) if owner is not None else not os.access(directory, os.W_OK):
        who = f"uid {owner.uid}" if owner is not None else "this user"
        raise OutputRefused(f"{directory} is not writable by {who}: choose another directory")
    if owner is not None and (closed := files.unreachable(directory, owner)) is not None:
        raise OutputRefused(f"{directory} is out of uid {owner.uid}'s reach ({closed} is closed to them)")
    return path
