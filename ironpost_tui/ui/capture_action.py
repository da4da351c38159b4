"""The console's captures: `c` asks (CaptureScreen), a worker captures, the status shows how far.

Reusable by any pane: ``Capturing.ask(filter, what)`` with what to capture (a source address from an
events row, or the Top pane's selected source).  One capture at a time: `c` during one stops it.
The copies come from the console's own program through the same maps as ``ironpost-tui capture``
(records/capture.py), so a capture from the command line beside the console is refused (exit 16)
while one runs here, and the other way round.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING

from textual.message import Message

from ironpost_tui import files
from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel.capture import CaptureFilter
from ironpost_tui.records.capture import Capture, Limits, Progress
from ironpost_tui.records.export import here
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.screens.capture import CaptureOrder, CaptureScreen

if TYPE_CHECKING:
    from ironpost_tui.ui.app import IronpostApp

log = logging.getLogger(__name__)
PROGRESS_SECS = 1.0


class CaptureProgressed(Message):
    """A capture's progress (``done``: its end), or its failure (``error``)."""

    def __init__(self, path: str, progress: Progress | None, error: str = "") -> None:
        super().__init__()
        self.path = path
        self.progress = progress
        self.error = error


def default_path(what: str, now: float) -> Path:
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(now))
    safe = "".join(c if c.isalnum() else "-" for c in what)[:48]
    return here() / f"ironpost-capture-{safe}-{stamp}.pcapng"  # named whole in the dialog: where it goes


class Capturing:
    def __init__(self, app: IronpostApp) -> None:
        self.app = app
        self.running: Capture | None = None

    def ask(self, filt: CaptureFilter, what: str) -> None:
        app = self.app
        if app.read_only:
            app.state.notice("capture: a replay has no packets to capture")
            app.redraw()
            return
        if self.running is not None:
            self.running.stop()
            app.state.notice(f"capture: stopping the capture to {self.running.path}")
            app.redraw()
            return

        def chosen(order: CaptureOrder | None) -> None:
            if order is not None:
                self.start(filt, order)

        app.push_screen(CaptureScreen(what, default_path(what, time.time()), cursor_blink=app.cursor_blink), chosen)

    def start(self, filt: CaptureFilter, order: CaptureOrder) -> None:
        app = self.app
        # The rules' names, as labels of the packets they matched (a long table's head's only, in the moment
        # after the start when only its first rows are here: the others' packets are labelled by slot).
        names = {s.slot: s.rule.id for s in app.state.rules if s.slot is not None}
        limits = Limits(count=None, seconds=float(order.seconds), max_bytes=order.max_bytes)
        cap = Capture(app.info.iface, filt, order.path, limits, names, files.invoking_user())
        self.running = cap
        app.run_worker(lambda: self._run(cap), thread=True, group="capture", exit_on_error=False)

    def _run(self, cap: Capture) -> None:
        path = str(cap.path)
        last = 0.0

        def progress(p: Progress) -> None:
            nonlocal last
            if p.stopped_by is not None or time.monotonic() - last >= PROGRESS_SECS:
                last = time.monotonic()
                self.app.post_message(CaptureProgressed(path, p))

        try:
            cap.run(progress)
        except IronpostError as exc:
            self.app.post_message(CaptureProgressed(path, None, exc.message))
        except OSError as exc:
            self.app.post_message(CaptureProgressed(path, None, f"{path}: {exc.strerror or exc}"))
        except Exception as exc:
            log.exception("capture to %s failed", path)
            self.app.post_message(CaptureProgressed(path, None, f"{path}: {exc}"))

    def show(self, message: CaptureProgressed) -> None:
        app = self.app
        p = message.progress
        if message.error:
            self.running = None
            app.notify(message.error, title="capture failed", severity="error", markup=False)
        elif p is not None and p.stopped_by is not None:
            self.running = None
            app.notify(f"{message.path}: {p.describe()}", title=f"capture done ({p.stopped_by})", markup=False)
            app.state.notice(f"capture done: {fmt.count(p.written)} packets to {message.path}")
        elif p is not None:
            # The count first: at 80 columns the notice line keeps its start ("capturing to…" until session 25).
            app.state.notice(f"capturing: {p.written:,} packets, {p.counts.lost:,} lost, to {message.path}")
        app.redraw()

    def stop(self) -> None:
        if self.running is not None:
            self.running.stop()
