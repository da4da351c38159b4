"""Signals held off the verifier's thread (ironpost_tui/kernel/signals_held.py): around the program's load
only, restored after it, and a failed load restores them too.  No root: the load is replaced."""

from __future__ import annotations

import signal
import subprocess

import pytest

from ironpost_tui.kernel import libbpf, program_cache
from ironpost_tui.kernel.program_file import CachedProgram
from ironpost_tui.kernel.signals_held import signals_held

HELD = {signal.SIGWINCH, signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD, signal.SIGTSTP}


def blocked() -> set[signal.Signals]:
    return set(signal.pthread_sigmask(signal.SIG_BLOCK, []))


def test_held_inside_and_given_back_after() -> None:
    assert not HELD & blocked()  # the control: none held before
    with signals_held():
        assert HELD <= blocked()
    assert not HELD & blocked()
    with pytest.raises(RuntimeError), signals_held():
        raise RuntimeError("a failed load")
    assert not HELD & blocked()


def test_the_cached_programs_load_runs_with_them_held_and_nothing_after_inherits_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen: list[set[signal.Signals]] = []

    def load(*_args: object) -> int:
        seen.append(blocked())
        raise OSError(11, "Resource temporarily unavailable")  # as an interrupted verifier says

    monkeypatch.setattr(libbpf, "prog_load", load)
    prog = CachedProgram(key="k", name="ironpost_xdp", license="GPL", insns=bytes(16), maps=())
    with pytest.raises(OSError):
        program_cache.load(prog)
    assert len(seen) == 1 and HELD <= seen[0]
    assert not HELD & blocked()
    # A process started after the load (ip, mount: the engine's start runs some) gets an empty mask.
    status = subprocess.run(["grep", "SigBlk", "/proc/self/status"], capture_output=True, text=True, check=True)
    assert int(status.stdout.split()[1], 16) == 0
