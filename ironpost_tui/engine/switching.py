"""The interpreter's switch interval in a process of ours: how long a thread that wants the
interpreter waits for the one that holds it.

Each kernel call or socket read of a thread gives up the interpreter; with a busy thread beside it (the
console's rendering, a CrowdSec pull being parsed, the BLOCKLIST survey) it gets it back only when that
thread is asked to yield: after the switch interval, 5 ms by default, per call.  Measured: in the
100,000-decision case a sysfs read of two files took up to 56 ms of the engine's tick for 1 ms of its
CPU; in the console's process, the engine's answer to the start waited for the reader thread, then the
poll worker, behind a render each (the console's first live frame 0.655 -> 0.633 s with 1 ms, medians
of 8, bench/b_startup.py's condition).  1 ms in both until session 29, then 0.2 ms: a tick makes some fifty
kernel calls, and while 100,000 CrowdSec decisions were pulled and parsed beside it each waited up to the
interval for the interpreter (tests/test_crowdsec_scale.py, three runs each on the 2-core build VM: at 1 ms the
longest tick 90-98 ms less its waits for a CPU, 4-7 ticks over 50 ms, and the case failed in 2 of 7 runs and
one CI run over 100 ms; at 0.2 ms the longest 30-52 ms, at most one over 50 ms, its waits for the interpreter
over the import 1.3 s instead of 2.5).
"""

from __future__ import annotations

import sys

SWITCH_INTERVAL = 0.0002  # a process that runs the engine's ticks
# The console's own process (the engine in the other): its threads hand over an answer, not fifty kernel calls a
# tick, and its rendering is its CPU (the console's idle budget): 1 ms, as measured for its first live frame.
CONSOLE_SWITCH_INTERVAL = 0.001


def shorten(interval: float = SWITCH_INTERVAL) -> None:
    """The interval at ``interval``, or as it is when already shorter."""
    sys.setswitchinterval(min(sys.getswitchinterval(), interval))
