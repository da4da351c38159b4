"""The cyclic garbage collector held off while a bulk of objects is made that live on (``held()``).

CPython's collector runs every 700 new container objects and, every tenth and hundredth run, walks
older generations: a batch of 10,000 rules or events made at once triggers dozens of runs that walk
the new objects again and again, and with them the process's heap (a console's: Textual's).  Held off
for the batch, the next run after it walks the batch once.  Nothing is lost: garbage made meanwhile is
collected by that run.  Used where one call makes such a batch: the event decoder's, a frame read from
the console's engine process, the rules pane's new table.

The collector's switch is the process's, and several threads hold it (the console's: the engine's reader,
the interface's): who turns it off and who turns it back on is counted under one lock, so that it is on
again when the last holder lets go, if it was on when the first took it, whatever the order of the
threads.  ``disable()`` and ``enable()`` (engine/start_gc.py, over a start) go through the same count: an
``enable()`` while a block holds the collector takes effect when the block ends.
"""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

_lock = threading.Lock()
_depth = 0  # blocks holding the collector off now
_restore = False  # whether it goes back on when the last of them ends


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The collector off within the block, then as it was (a caller that turned it off keeps it off)."""
    global _depth, _restore
    with _lock:
        if _depth == 0:
            _restore = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _restore:
                gc.enable()


def disable() -> None:
    """The collector off until enable(), blocks or no blocks."""
    global _restore
    with _lock:
        _restore = False
        gc.disable()


def enable() -> None:
    """The collector on: now, or when the blocks holding it end."""
    global _restore
    with _lock:
        if _depth:
            _restore = True
        else:
            gc.enable()


def enabled() -> bool:
    """Whether the collector is on, or will be when the blocks holding it end."""
    with _lock:
        return _restore if _depth else gc.isenabled()
