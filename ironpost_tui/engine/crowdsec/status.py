"""The LAPI as the bouncer last saw it: values the status bar, /metrics and the snapshot carry.  Apart from
the bouncer, so that what only shows a status imports no HTTP client."""

from __future__ import annotations

from dataclasses import dataclass

from ironpost_tui.model import StrEnum


class LapiState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class PullResult(StrEnum):
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class CrowdSecStatus:
    """What the status bar and /metrics show."""

    state: LapiState
    decisions: int  # decisions in force (in the kernel, or held under an operator's rule on the same source)
    last_pull: float | None  # wall-clock seconds of the last successful pull
    pulls: dict[str, int]  # PullResult -> count
    skipped_protected: int
    pending: int  # decisions pulled, not applied yet
    blocklist: int = 0  # the decisions' entries in BLOCKLIST, beside the rules' (the status bar's room)
