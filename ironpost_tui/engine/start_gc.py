"""The cyclic garbage collector over a process's start.

A start builds a configuration and rule tables of hundreds of thousands of objects (10,000 rules),
nearly all of which live as long as the process, and few reference cycles.  The collector, run
every 700 allocations, walks them again and again while they are built: about a tenth of a
headless start with 10,000 rules (bench/b_startup.py).  ``hold()``, first thing in the command
line's run, keeps it off; ``settle()``, once the engine has started (Engine.start, however it ends),
sets what exists then aside from later collections (``gc.freeze``: they are not walked again, by the
next full collection nor by any after it) and turns the collector back on; ``release()``, when the run
ends, turns it back on if nothing settled it (a run that ended before its engine started).  The
console's own process (the engine in the other one) settles once it has drawn its first attached frame
with the rules table (ui/app.py), after one full collection: its start is Textual's and the first table's
(10,000 rows), off the path to that frame.

What the freeze costs: the garbage cycles of the start itself (under a thousand objects with the
bench's 10,000 rules, in the agent and in the console) are never collected, and an object alive at
the freeze that later ends up in a cycle is never collected either (reference counting still frees
every other one).  Both are bounded by the start's heap, once.  (The CrowdSec bouncer freezes again
after a bulk of decisions, after a full collection: engine/crowdsec/bouncer.py.)  Only a process the
engine owns does this (EngineOptions.own_process): a library's caller keeps its collector as it is.
"""

from __future__ import annotations

import gc

from ironpost_tui import collector

_held: list[bool] = []  # hold()'s collector state, until settle() or release()


def hold() -> None:
    """The collector off until settle() (or release(), when the engine never started)."""
    _held[:] = [collector.enabled()]
    collector.disable()


def settle(collect: bool = False) -> None:
    """What the start built set aside (gc.freeze), and the collector on again; with ``collect``, the start's
    garbage collected first (one full collection), so that it is not set aside with what lives on."""
    _held.clear()
    if collect:
        gc.collect()
    gc.freeze()
    collector.enable()


def holding() -> bool:
    """Whether hold() holds the collector off still (nothing has settled it)."""
    return bool(_held)


def release() -> None:
    """After the run: the collector as hold() found it, if nothing settled it (a run that ended before
    the engine started: an error, or the command line called in-process by a test)."""
    if _held:
        if _held.pop():
            collector.enable()
