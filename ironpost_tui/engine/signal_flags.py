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


class Flag:
    """threading.Event's set/clear/is_set without its lock, for signal handlers to set.

    A Python signal handler runs in the main thread between two bytecodes, possibly in the
    middle of the loop's own Event.clear(), which holds the Event's non-reentrant lock: an
    Event.set() there waits for that lock forever, and the agent no longer reloads, panics or
    stops.  A plain attribute write is atomic under the GIL and never blocks.
    """

    __slots__ = ("_set",)

    def __init__(self) -> None:
        self._set = False

    def set(self) -> None:
        self._set = True

    def clear(self) -> None:
        self._set = False

    def is_set(self) -> bool:
        return self._set


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
        """(a reload asked, a panic asked) since ``hold``; called once the run's own handlers are in."""
        asked = self.reload.is_set(), self.panic.is_set()
        self.reload.clear()
        self.panic.clear()
        return asked
