"""Leaving the console: `q`, `ctrl+c`, `ctrl+q` and the palette's Quit.

Quitting detaches the program, and every drop rule goes with it.  So with drop rules in force
(and no ``--persist``, which leaves them anyway), the operator is asked first: quit and remove
them, keep them enforcing (the program pinned, as ``--persist`` does), or stay.  Without drop
rules, or in a replay, it quits at once.  Signals (SIGHUP, SIGTERM, SIGINT) never ask: a dropped
SSH session cannot answer.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ironpost_tui.engine.feed import OnExit, drop_rules
from ironpost_tui.errors import IronpostError
from ironpost_tui.ui.messages import EnforcementKept, KeepFailed
from ironpost_tui.ui.screens.quit import QuitChoice, QuitScreen
from ironpost_tui.ui.source_kinds import KeepableSource

if TYPE_CHECKING:
    from ironpost_tui.ui.app import IronpostApp

log = logging.getLogger(__name__)


class Leaving:
    """Owned by the app; ``farewell`` is what the CLI prints once the console has ended."""

    def __init__(self, app: IronpostApp) -> None:
        self.app = app
        self.farewell = ""
        self._keeping = False  # the keep worker runs: the question is answered

    def drops_at_stake(self) -> int:
        """The drop rules that quitting would remove from the interface (0: nothing to ask)."""
        info = self.app.info
        if info.on_exit not in (OnExit.REMOVE, OnExit.REMOVE_ONLY) or not info.attached:
            return 0
        return self.app.state.drop_rules()

    def request(self) -> None:
        app = self.app
        if self._keeping or isinstance(app.screen, QuitScreen):
            return  # asked already: a second ctrl+c does not answer for the operator
        drops = self.drops_at_stake()
        if not drops:
            app.exit()
            return
        keepable = app.info.on_exit is OnExit.REMOVE and isinstance(app.source, KeepableSource)
        app.push_screen(QuitScreen(drop_rules(drops), app.info.iface, keepable=keepable), self._answered)

    def _answered(self, choice: QuitChoice | None) -> None:
        app = self.app
        if choice is QuitChoice.REMOVE:
            app.exit()
        elif choice is QuitChoice.KEEP:
            self._keeping = True
            app.state.notice(f"pinning the program on {app.info.iface}…")
            app.run_worker(self._keep, thread=True, group="leave", exit_on_error=False)
        else:
            app.state.notice("stayed: the rules stay in force")
            app.redraw()

    def _keep(self) -> None:
        """In a worker thread: the source takes its lock (a poll holds it for at most its timeout)."""
        app = self.app
        source = app.source
        try:
            if not isinstance(source, KeepableSource):
                raise IronpostError("this source cannot keep its program enforcing")
            text = source.keep_enforcing()
        except IronpostError as exc:
            app.post_message(KeepFailed(exc.message))
        except Exception as exc:
            log.exception("keeping the program enforcing failed")
            app.post_message(KeepFailed(f"keeping the program enforcing failed: {exc}"))
        else:
            app.post_message(EnforcementKept(text))

    def kept(self, message: EnforcementKept) -> None:
        self.farewell = message.text
        self.app.exit()

    def failed(self, message: KeepFailed) -> None:
        self._keeping = False
        app = self.app
        app.notify(message.text, title="still running: nothing was pinned", severity="error", markup=False)
        app.state.notice(message.text)
        app.redraw()
