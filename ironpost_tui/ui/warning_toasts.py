"""The engine's warnings and errors (an auto-block, a renewal, a refused write, a clock step), said whole in a
toast as well as on the notice line: at 80 columns the line keeps some 29 cells of them ("warning:…
198.18.200.66…", session 24's drill), and a responder learnt of an auto-block only on a wide terminal.

At most one toast every GAP_SECS, each shown TOAST_SECS (so at most two at once): a storm of warnings (a spoofed
flood's auto-blocks, up to the policy's caps) is said as its latest with how many came since the last toast, not as
a column of toasts over the panes; an error among them is the one said (a review of session 25: an error followed
by a storm of warnings was never shown).  `n` lists them all (screens/notices.py)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ironpost_tui.ui import format as fmt

if TYPE_CHECKING:
    from textual.app import App
    from textual.timer import Timer

GAP_SECS = 5.0
TOAST_SECS = 6.0
LEVELS = ("warning", "error")  # NoticeHandler's prefixes (log_handler.py), "warning: TEXT"


class WarningToasts:
    def __init__(self, app: App[Any]) -> None:
        self.app = app
        self._last = float("-inf")  # when the last toast was shown (monotonic)
        self._held: list[str] = []  # notices since, to be said at the end of the gap
        self._timer: Timer | None = None

    def said(self, notice: str) -> None:
        """A notice posted: a toast if it is a warning or an error."""
        level, sep, _ = notice.partition(": ")
        if not sep or level not in LEVELS:
            return
        now = time.monotonic()
        if now - self._last >= GAP_SECS and not self._held:
            self._show([notice])
            return
        self._held.append(notice)
        if self._timer is None:
            self._timer = self.app.set_timer(max(0.0, self._last + GAP_SECS - now), self._flush)

    def _flush(self) -> None:
        self._timer = None
        held, self._held = self._held, []
        if held:
            self._show(held)

    def _show(self, notices: list[str]) -> None:
        self._last = time.monotonic()
        errors = [n for n in notices if n.startswith("error: ")]
        level, _, text = (errors or notices)[-1].partition(": ")  # the latest error, else the latest warning
        more = len(notices) - 1
        title = level if not more else f"{level} (and {more} more since the last: n lists them)"
        self.app.notify(
            fmt.text(text), title=title, severity="error" if errors else "warning", timeout=TOAST_SECS, markup=False
        )
