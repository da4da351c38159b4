"""What the console can ask of a source beyond the Source protocol (Textual-free)."""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from ironpost_tui.engine.feed import SourceInfo


@runtime_checkable
class StartableSource(Protocol):
    """A source that must compile and attach first (LiveSource)."""

    def start(self) -> SourceInfo: ...


@runtime_checkable
class PlaybackSource(Protocol):
    """A source that plays a recording (ReplaySource): pause, seek, speed."""

    paused: bool
    speed: float
    duration: float

    @property
    def position(self) -> float: ...
    def pause(self, paused: bool = True) -> None: ...
    def seek(self, t: float) -> None: ...
    def set_speed(self, speed: float) -> None: ...


@runtime_checkable
class KeepableSource(Protocol):
    """A source whose program can be left enforcing when the console ends (LiveSource)."""

    def keep_enforcing(self) -> str: ...  # pin it; what to tell the operator.  IronpostError: nothing pinned


@runtime_checkable
class SilenceAwareSource(Protocol):
    """A source whose calls wait for another process (RemoteSource): it says how long the call in flight
    has gone unanswered past that call's budget, and on the console's way out it stops asking and gives
    the call in flight until its budget before abandoning it (end_wait), so the console can end and
    close it."""

    def silent_for(self, now: float) -> float: ...
    def end_wait(self) -> None: ...
