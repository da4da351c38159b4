"""The interpreter's switch interval in a process of ours: how long a thread that wants the
interpreter waits for the one that holds it.

Each kernel call or socket read of a thread gives up the interpreter; with a busy thread beside it (the
console's rendering, a CrowdSec pull being parsed, the BLOCKLIST survey) it gets it back only when that
thread is asked to yield: after the switch interval, 5 ms by default, per call.  Measured: in the
100,000-decision case a sysfs read of two files took up to 56 ms of the engine's tick for 1 ms of its
CPU; in the console's process, the engine's answer to the start waited for the reader thread, then the
poll worker, behind a render each (the console's first live frame 0.655 -> 0.633 s with 1 ms, medians
of 8, bench/b_startup.py's condition).  1 ms in both.
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL = 0.001


def shorten() -> None:
    """The interval at SWITCH_INTERVAL, or as it is when already shorter."""
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL))
