"""The cyclic garbage collector over a process's start.

A start builds a configuration and rule tables of hundreds of thousands of objects (10,000 rules),
nearly all of which live as long as the process, and few reference cycles.  The collector, run
every 700 allocations, walks them again and again while they are built: about a tenth of a
headless start with 10,000 rules (bench/b_startup.py).  ``hold()``, first thing in the command
line's run, keeps it off; ``settle()``, once the engine has started, sets what exists then aside
from later collections (``gc.freeze``: they are not walked again, by the next full collection nor
by any after it) and turns the collector back on.

What the freeze costs: the garbage cycles of the start itself (under a thousand objects with the
bench's 10,000 rules) are never collected, and an object alive at the freeze that later ends up in
a cycle is never collected either (reference counting still frees every other one).  Both are
bounded by the start's heap, once: nothing made after the freeze is set aside.  Only a process the
engine owns does this (EngineOptions.own_process): a library's caller keeps its collector as it is.
"""

from __future__ import annotations

import gc


def hold() -> None:
    """The collector off until settle()."""
    gc.disable()


def settle() -> None:
    """What the start built set aside (gc.freeze), and the collector on again."""
    gc.freeze()
    gc.enable()
