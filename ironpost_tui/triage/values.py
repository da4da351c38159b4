"""What the top-talker counting publishes: frozen values, plain numbers and strings."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum

from ironpost_tui.model import StrEnum


class RateWindow(IntEnum):
    """The windows rates are computed over, in seconds."""

    S1 = 1
    S10 = 10
    S60 = 60

    @property
    def label(self) -> str:
        return f"{self.value}s"


class TopKind(StrEnum):
    """What a top list ranks."""

    SOURCES = "sources"
    DESTINATIONS = "destinations"
    PORTS = "ports"


class TopColumn(StrEnum):
    """The rates a row has, each a column of the pane and a key of /top."""

    PPS = "pps"
    BPS = "bps"
    SYN_PS = "syn_ps"
    DROP_PS = "drop_ps"


@dataclass(frozen=True)
class TopRow:
    """One address (or "tcp/22" for a port) with its rates over one window."""

    key: str  # an address as ipaddress prints it, or protocol/port
    pps: float  # packets/s
    bps: float  # bits/s
    syn_ps: float  # TCP SYN (without ACK)/s
    drop_ps: float  # packets dropped by the program/s
    first_seen: float  # wall-clock seconds the counting first saw it
    last_seen: float  # wall-clock seconds it last sent (as of the last read)

    def rate(self, column: TopColumn) -> float:
        return float(getattr(self, column.value))


@dataclass(frozen=True)
class SourceDetail:
    """The selected source: its destination ports and protocols (packets counted in the kernel's
    tenure of its way), and when it was first and last seen."""

    key: str
    ports: tuple[tuple[str, int], ...]  # ("tcp/22", packets), most first
    protocols: tuple[tuple[str, int], ...]  # ("tcp", packets), most first
    first_seen: float
    last_seen: float


@dataclass(frozen=True)
class TopLists:
    """The lists over one window, each ranked by packets/s (most first)."""

    window: RateWindow
    sources: tuple[TopRow, ...] = ()
    destinations: tuple[TopRow, ...] = ()
    ports: tuple[TopRow, ...] = ()

    def rows(self, kind: TopKind) -> tuple[TopRow, ...]:
        return tuple(getattr(self, kind.value))


@dataclass(frozen=True)
class TopSnapshot:
    """Every window's lists as of one read, and the details of the sources listed."""

    at: float  # wall-clock seconds
    windows: tuple[TopLists, ...] = ()  # one per RateWindow, in its order
    details: tuple[SourceDetail, ...] = ()

    def lists(self, window: RateWindow) -> TopLists:
        for lists in self.windows:
            if lists.window == window:
                return lists
        return TopLists(window)

    def detail(self, key: str) -> SourceDetail | None:
        for d in self.details:
            if d.key == key:
                return d
        return None
