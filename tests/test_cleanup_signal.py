"""`ironpost-tui cleanup IFACE` while a process holds IFACE's lock (kernel/cleanup.py), against stand-in holders:
small Python processes that take the real lock (no program, no interface: the lock is a file under /run/ironpost).
Needs root.

- a holder that stays: asked (SIGUSR2), and left in control;
- a holder that lets go within LEAVING_SECS of the signal (a console leaving with its rules kept, which ignores a
  panic): what it left is removed, as when nobody holds the interface (until session 24 cleanup said "asked" and
  left every drop enforced with nobody in control);
- a holder that is not ironpost-tui (its pid reused): never signalled."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
from support.common import REPO

from ironpost_tui.kernel import cleanup, host

pytestmark = pytest.mark.root
IFACE = "ipvcln0"  # no such interface: only its lock is used

HOLDER = """
import signal, sys, time
sys.path.insert(0, {repo!r})
from ironpost_tui.kernel import host
got = []
signal.signal(signal.SIGUSR2, lambda *_: got.append(time.monotonic()))
lock = host.InterfaceLock({iface!r})
lock.acquire()
print("held", flush=True)
leave_after = {leave_after!r}
while True:
    time.sleep(0.01)
    if got and leave_after is not None and time.monotonic() - got[0] >= leave_after:
        lock.release()
        print("left", flush=True)
        time.sleep(30)
"""


@pytest.fixture
def holders() -> Iterator[list[subprocess.Popen[str]]]:
    made: list[subprocess.Popen[str]] = []
    try:
        yield made
    finally:
        for p in made:
            p.kill()
            p.wait()
        (host.RUN_DIR / f"{IFACE}.lock").unlink(missing_ok=True)


def hold(made: list[subprocess.Popen[str]], leave_after: float | None, named: bool = True) -> subprocess.Popen[str]:
    """A holder of IFACE's lock; ``named``: its command line says ironpost (as every ironpost-tui's does)."""
    code = HOLDER.format(repo=str(REPO), iface=IFACE, leave_after=leave_after)
    argv = [sys.executable, "-c", code] if named else [sys.executable, "-"]
    p = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    made.append(p)
    if not named:
        assert p.stdin is not None
        p.stdin.write(code)
        p.stdin.close()
    assert p.stdout is not None and p.stdout.readline().strip() == "held"
    assert ("ironpost" in open(f"/proc/{p.pid}/cmdline").read()) is named
    return p


def test_a_holder_that_stays_is_asked_and_left_in_control(holders: list[subprocess.Popen[str]]) -> None:
    p = hold(holders, leave_after=None)
    said = cleanup.cleanup(IFACE)
    assert said == [f"ironpost-tui (pid {p.pid}) controls {IFACE}: asked it to clear every drop rule (panic)"]
    assert p.poll() is None and host.InterfaceLock(IFACE).holder() == p.pid


def test_a_holder_leaving_as_it_is_signalled_has_what_it_left_removed(holders: list[subprocess.Popen[str]]) -> None:
    p = hold(holders, leave_after=0.3)
    t0 = time.monotonic()
    said = cleanup.cleanup(IFACE)
    assert said[0] == f"ironpost-tui (pid {p.pid}) was leaving {IFACE}: what it left is removed", said
    assert time.monotonic() - t0 < cleanup.LEAVING_SECS + 1.0
    assert host.InterfaceLock(IFACE).holder() is None  # taken and let go by the removal


def test_a_holder_that_is_not_ironpost_is_never_signalled(holders: list[subprocess.Popen[str]]) -> None:
    p = hold(holders, leave_after=0.0, named=False)  # would leave at once if it were signalled
    said = cleanup.cleanup(IFACE)
    assert said == [f"the lock of {IFACE} is held by pid {p.pid}, which is not ironpost-tui: nothing signalled"]
    time.sleep(0.3)
    assert host.InterfaceLock(IFACE).holder() == p.pid  # never signalled: still holding
