"""The cyclic garbage collector held off while a bulk of objects is made that live on (``held()``).

CPython's collector runs every 700 new container objects and, every tenth and hundredth run, walks
older generations: a batch of 10,000 rules or events made at once triggers dozens of runs that walk
the new objects again and again, and with them the process's heap (a console's: Textual's).  Held off
for the batch, the next run after it walks the batch once.  Nothing is lost: garbage made meanwhile is
collected by that run.  Used where one call makes such a batch: the event decoder's, a frame read from
the console's engine process, the rules pane's first table.
"""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def held() -> Iterator[None]:
    """The collector off within the block, then as it was (a caller that turned it off keeps it off)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()
