"""Flags that signal handlers set, and the reload and panic asked in a run's first moments.

``EarlyAsks`` notes SIGUSR1 (reload) and SIGUSR2 (panic) from the start of a run of the agent or the
one-process console, until the agent's loop or the console takes them over: systemd's ``ExecReload``
signals the main process as soon as it runs, and a script as soon as the pid file names it.  Until session
28 their default action ended a process signalled before its handlers were installed (after the pid file
was written).  Whoever takes them over installs its own handlers first, then acts on what ``take`` says was
asked meanwhile: a reload once the start is done, a panic that clears the rules the start put in.
"""

from __future__ import annotations

import signal
from collections.abc import Callable


class Flag:
    """threading.Event's set/is_set without its lock, for signal handlers to set, and a ``take`` that loses no
    ``set``.

    A Python signal handler runs in the main thread between two bytecodes, possibly in the
    middle of the loop's own Event.clear(), which holds the Event's non-reentrant lock: an
    Event.set() there waits for that lock forever, and the agent no longer reloads, panics or
    stops.  So ``set`` counts (an attribute write, which never blocks), and ``take`` compares the count with
    the one it saw last: a ``set`` between its read and its write is seen at the next ``take`` (a check, then a
    clear, lost it until session 28).
    """

    __slots__ = ("_seen", "_sets")

    def __init__(self) -> None:
        self._sets = 0
        self._seen = 0

    def set(self) -> None:
        self._sets += 1

    def is_set(self) -> bool:
        """Set since the last ``take`` (a stop, which is never taken: set at all)."""
        return self._sets != self._seen

    def take(self) -> bool:
        """Whether it was set since the last ``take``; from now on, only a new ``set`` counts."""
        sets = self._sets
        fired = sets != self._seen
        self._seen = sets
        return fired


class EarlyAsks:
    """SIGUSR1 and SIGUSR2 noted (``hold``) until their handlers for the run are installed (``take``)."""

    def __init__(self) -> None:
        self.reload = Flag()
        self.panic = Flag()

    def hold(self) -> EarlyAsks:
        signal.signal(signal.SIGUSR1, lambda *_: self.reload.set())
        signal.signal(signal.SIGUSR2, lambda *_: self.panic.set())
        return self

    def take(self) -> tuple[bool, bool]:
        """(a reload asked, a panic asked) since ``hold`` or the last ``take``."""
        return self.reload.take(), self.panic.take()

    def hand_over(self, reload: Callable[[], object], panic: Callable[[], object]) -> None:
        """What was asked since ``hold``, to the run's own handlers (installed first, so that nothing asked falls
        between the two)."""
        asked_reload, asked_panic = self.take()
        if asked_reload:
            reload()
        if asked_panic:
            panic()
