"""The console: one poll worker feeds a state; a timer redraws the panes from it.

The worker (a thread) only talks to the source and posts messages; the
handlers only record what they say; ``redraw`` (every ``refresh_secs``) sets
the widgets' attributes.  Rule edits run in their own worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import time
from collections import deque
from collections.abc import Iterable
from pathlib import Path

from textual import work
from textual.app import App, ScreenStackError, SystemCommand
from textual.await_complete import AwaitComplete
from textual.binding import Binding
from textual.css.query import NoMatches
from textual.notifications import SeverityLevel
from textual.screen import ModalScreen, Screen
from textual.signal import Signal
from textual.widgets import Input
from textual.worker import get_current_worker

from ironpost_tui.config.settings import ConsoleSettings
from ironpost_tui.detectors import Alert
from ironpost_tui.engine import start_gc
from ironpost_tui.engine.feed import RELOAD_NOTICE, SILENT_SECS, Answers, Source
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel.capture import CaptureFilter
from ironpost_tui.records.export import (
    ALERT_FIELDS,
    EVENT_FIELDS,
    TOP_FIELDS,
    Row,
    alert_rows,
    default_path,
    event_rows,
    top_rows,
    write_rows,
)
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.alert_scope import event_filter, matching_rules
from ironpost_tui.ui.capture_action import CaptureProgressed, Capturing
from ironpost_tui.ui.commands import console_commands, other_screen_commands
from ironpost_tui.ui.driver import DRIVER
from ironpost_tui.ui.edits import Edit, EditKind, Origin
from ironpost_tui.ui.key_help import help_sections
from ironpost_tui.ui.leaving import Leaving
from ironpost_tui.ui.messages import (
    AlertsChanged,
    EditApplied,
    EditRefused,
    EnforcementKept,
    EventsReceived,
    ExportWritten,
    KeepFailed,
    LapiReported,
    NoticePosted,
    PlaybackRewound,
    RulesHeadShown,
    RulesRefreshed,
    SourceAdvanced,
    SourceFailed,
    SourceStarted,
    StatsSampled,
    TopSampled,
)
from ironpost_tui.ui.offenders import top_offenders
from ironpost_tui.ui.poll_loop import InFlight, run_poll
from ironpost_tui.ui.rule_editing import RuleEditing
from ironpost_tui.ui.screens.alert_detail import AlertDetailScreen, AlertView
from ironpost_tui.ui.screens.chart import ChartScreen
from ironpost_tui.ui.screens.error import ErrorScreen
from ironpost_tui.ui.screens.export import ExportScreen
from ironpost_tui.ui.screens.help import HelpScreen, KeyHelp
from ironpost_tui.ui.screens.main import MainScreen
from ironpost_tui.ui.screens.notices import NoticesScreen
from ironpost_tui.ui.screens.starting import StartingScreen
from ironpost_tui.ui.screens.top_detail import TopDetailScreen
from ironpost_tui.ui.source_kinds import PlaybackSource, SilenceAwareSource, StartableSource
from ironpost_tui.ui.state import ConsoleState
from ironpost_tui.ui.themes import DEFAULT_THEME, VARIABLE_DEFAULTS, load_themes, resolve
from ironpost_tui.ui.top_details import source_talker
from ironpost_tui.ui.warning_toasts import WarningToasts
from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.pane_tabs import PaneTabs
from ironpost_tui.ui.widgets.rule_form import RuleForm
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.status_bar import StatusBar, StatusView
from ironpost_tui.ui.widgets.top_pane import TopPane
from ironpost_tui.ui.widgets.traffic_pane import SPARK_SAMPLES, TrafficPane

log = logging.getLogger(__name__)
HELD_TOASTS = 20  # toasts held while a dialog is open (the oldest go first; `n` lists every notice)

SPEEDS = (0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0)
# The console's process holds its garbage collector off through its start, until this long after its first
# attached frame: then one full collection and the start's objects set aside (engine/start_gc.py).
SETTLE_AFTER_SECS = 0.5
SETTLE_AT_THE_LATEST_SECS = 30.0  # after the console's mount, if its start has not ended by then
MAX_POLL_SECS = 0.25  # the worker's poll timeout: how soon it sees a cancel, and how long an edit may wait


class IronpostApp(App[int]):
    """The console over a Source.  ``make_app`` builds it for the CLI, tests and snapshots."""

    CSS_PATH = "app.tcss"
    TITLE = "ironpost-tui"

    BINDINGS = [
        Binding("ctrl+c", "quit", "Quit", priority=True, show=False),
        Binding("question_mark", "help", "Help"),
        Binding("t", "next_theme", "Next theme", show=False),
    ]

    def __init__(
        self,
        settings: ConsoleSettings,
        source: Source,
        *,
        theme: str | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__(driver_class=DRIVER)  # ui/driver.py: no resume on a hangup's SIGCONT
        self.settings = settings
        self.source = source
        self.info = source.info
        self.state = ConsoleState()
        self.cursor_blink = cursor_blink
        self.started = False
        self.answers = Answers()  # when the source last answered a poll (the worker says)
        self.in_flight = InFlight()  # the updates the worker posted that are not applied yet (it waits past a few)
        self._silent_since: float | None = None  # the last answer before a silence the console has said
        self.failure: SourceFailed | None = None  # why the console ended, for the CLI to print
        self.bits = True
        self.main = MainScreen(cursor_blink=cursor_blink)
        self.advanced_signal: Signal[float] = Signal(self, "advanced")  # the source's clock, after each poll
        self._poll_timeout = min(MAX_POLL_SECS, settings.refresh_secs)
        self._drawn_sample: object = None
        self._drawn_alerts = -1
        self._drawn_rules = -1
        self._drawn_top = -1
        self._shown_data = False
        self.editing = RuleEditing(self)
        self.warnings = WarningToasts(self)
        # Toasts asked for while a dialog is open, shown when it closes: a toast's time runs from when it is made,
        # and behind a dialog (Help, a question, the quit screen) one expired unseen (a review of session 25).
        self._held_toasts: deque[tuple[str, str, SeverityLevel, float | None, bool]] = deque(maxlen=HELD_TOASTS)
        self.capturing = Capturing(self)
        self.leaving = Leaving(self)
        self.detail: AlertDetailScreen | None = None  # an alert's detail, while open
        self._chart: ChartScreen | None = None
        self._signals: list[signal.Signals] = []
        themes = load_themes()
        self._themes = [t.name for t in themes]
        for loaded in themes:
            self.register_theme(loaded)
        wanted = theme or settings.theme
        chosen = resolve(wanted, list(self.available_themes))
        if chosen is None:
            chosen = DEFAULT_THEME if DEFAULT_THEME in self.available_themes else "textual-dark"
            self.state.notice(f"theme '{wanted}' not found: using {chosen}")
        self.theme = chosen

    # --- set-up -------------------------------------------------------------------
    def get_default_screen(self) -> Screen[None]:
        return self.main

    def get_theme_variable_defaults(self) -> dict[str, str]:
        return dict(VARIABLE_DEFAULTS)

    @property
    def replay(self) -> PlaybackSource | None:
        return self.source if isinstance(self.source, PlaybackSource) else None

    @property
    def read_only(self) -> bool:
        return self.info.read_only

    @property
    def farewell(self) -> str:
        """What to print once the console has ended (a program left enforcing, how to remove it)."""
        return self.leaving.farewell

    def on_mount(self) -> None:
        self._install_signal_handlers()

    def on_ready(self) -> None:
        """The main screen is composed: wire it to the source and start polling."""
        main = self.main
        for pane in (
            main.query_one(EventTable),
            main.query_one(AlertTable),
            main.query_one(RulesPane),
            main.query_one(TopPane),
        ):
            pane.read_only = self.read_only
        rules = self.main.query_one(RulesPane)
        rules.capacity, rules.rules_path = self.info.blocklist_capacity, self.info.rules_path
        self.set_interval(self.settings.refresh_secs, self.redraw)
        # Decided once, here: the starting screen and the worker's start go together (the source's own
        # info may say attached by the time the worker looks, when a start begun early has ended).
        must_start = isinstance(self.source, StartableSource) and not self.info.attached
        if must_start:
            self.push_screen(StartingScreen(self.info.iface))
            self.set_timer(SETTLE_AT_THE_LATEST_SECS, self._settle)  # a start that does not end
        else:
            self.started = True
            self._settle_soon()
        self.redraw()
        self.poll_source(must_start)

    def _settle_soon(self) -> None:
        """The console's own process (its engine in the other) lets its garbage collector go once its start
        has ended, however it ended: engine/start_gc.py."""
        if start_gc.holding():
            self.set_timer(SETTLE_AFTER_SECS, self._settle)

    def _settle(self) -> None:
        if start_gc.holding():
            start_gc.settle(collect=True)

    def _install_signal_handlers(self) -> None:
        # A dropped SSH session sends SIGHUP, whose default action would kill us
        # without the CLI's finally (the detach); Textual installs no handler.
        # (Ctrl+C in the terminal is a key in raw mode; SIGINT here is `kill -INT`.)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            try:
                loop.add_signal_handler(sig, self._on_signal, sig)
            except (NotImplementedError, RuntimeError, ValueError):  # not the main thread
                continue
            self._signals.append(sig)
        # SIGUSR2 is the panic (`ironpost-tui cleanup IFACE` sends it to the process that holds the interface, this
        # one or the engine process, which passes it here): every drop rule cleared at once, without a question.
        # Its default action killed the console until session 24 (the demo's console, and the engine process).
        # SIGUSR1 reloads the configuration, as `r` does and as it does for the agent: the README says to signal
        # the console's process; its default action ended the console until session 24 (an attacker's review).
        for sig, act in ((signal.SIGUSR2, self._on_panic_signal), (signal.SIGUSR1, self._on_reload_signal)):
            try:
                loop.add_signal_handler(sig, act)
            except (NotImplementedError, RuntimeError, ValueError):
                return
            self._signals.append(sig)

    def _on_signal(self, sig: signal.Signals) -> None:
        log.info("received %s: leaving the console", sig.name)
        self.exit(return_code=int(ExitStatus.OK))

    def _on_reload_signal(self) -> None:
        if not self.read_only:
            log.info("received SIGUSR1: reloading the configuration")
            self.action_reload()

    def _on_panic_signal(self) -> None:
        if self.read_only:
            return  # a replay controls nothing
        log.warning("received SIGUSR2 (ironpost-tui cleanup): clearing every drop rule (panic)")
        self.editing.run(Edit(EditKind.PANIC, origin=Origin.RULES))

    async def on_unmount(self) -> None:
        self.workers.cancel_group(self, "poll")
        self.capturing.stop()
        if isinstance(self.source, SilenceAwareSource):
            # asyncio waits for the worker threads before the console can end, and one may wait for an
            # answer that is not coming (a stopped or stuck engine): see end_wait.  The CLI closes the
            # source after that, without waiting long on a silent engine process.
            await asyncio.to_thread(self.source.end_wait)
        loop = asyncio.get_running_loop()
        for sig in self._signals:
            loop.remove_signal_handler(sig)
        self._signals.clear()
        # A panic asked while the console leaves: the leaving detaches (or keeps, and then `cleanup` finds nobody
        # holding the interface and removes the program); never the default action, killing the leaving midway.
        with contextlib.suppress(ValueError):  # not the main thread
            signal.signal(signal.SIGUSR2, signal.SIG_IGN)
            signal.signal(signal.SIGUSR1, signal.SIG_IGN)

    # --- the poll worker (a thread: talks to the source, posts messages, nothing else) ---
    @work(thread=True, exclusive=True, exit_on_error=False, group="poll")
    def poll_source(self, must_start: bool) -> None:
        worker = get_current_worker()
        run_poll(self.source, self.post_message, lambda: worker.is_cancelled, self._poll_timeout,
                 must_start=must_start, answers=self.answers, in_flight=self.in_flight)  # fmt: skip

    # --- what the worker says -----------------------------------------------------
    def on_source_started(self, message: SourceStarted) -> None:
        self.info = message.info
        self.started = True
        rules = self.main.query_one(RulesPane)
        rules.capacity, rules.rules_path = message.info.blocklist_capacity, message.info.rules_path
        if isinstance(self.screen, StartingScreen):
            self.screen.dismiss(None)
        self.state.notice(f"attached to {message.info.iface} ({message.info.mode} mode)")
        self.redraw()
        self._settle_soon()

    def on_source_failed(self, message: SourceFailed) -> None:
        self.failure = message
        self._settle_soon()
        if isinstance(self.screen, StartingScreen):
            self.screen.dismiss(None)
        self.push_screen(
            ErrorScreen(message.title, message.text, message.exit_status),
            lambda _: self.exit(return_code=message.exit_status),
        )

    def on_stats_sampled(self, message: StatsSampled) -> None:
        self.state.add_sample(message.sample)

    def on_events_received(self, message: EventsReceived) -> None:
        self.state.add_events(message.events)

    def on_alerts_changed(self, message: AlertsChanged) -> None:
        self.state.change_alerts(message.changes)

    def on_top_sampled(self, message: TopSampled) -> None:
        self.state.set_top(message.top)

    def on_rules_refreshed(self, message: RulesRefreshed) -> None:
        pending = self.state.rules_pending
        self.state.set_rules(message.rules)
        if pending:
            self.editing.table_arrived()

    def on_rules_head_shown(self, message: RulesHeadShown) -> None:
        self.state.set_rules_head(message.head)

    def on_lapi_reported(self, message: LapiReported) -> None:
        self.state.crowdsec = message.status

    def on_notice_posted(self, message: NoticePosted) -> None:
        self.state.notice(message.text)
        self.warnings.said(message.text)
        if message.text.startswith(RELOAD_NOTICE):
            # A reload's outcome (r, SIGHUP, the file changed): at 80 columns the notice line kept its first words.
            self.notify(fmt.text(message.text), title="configuration", timeout=12, markup=False)

    def on_playback_rewound(self, _message: PlaybackRewound) -> None:
        self.state.reset()

    def on_source_advanced(self, message: SourceAdvanced) -> None:
        self.in_flight.applied()  # each update's last message: the worker may ask again
        self.state.at = message.at
        if not self._shown_data and self.state.version:
            self._shown_data = True  # the first data shows at once, not at the next tick
            self.redraw()
        self.advanced_signal.publish(message.at)

    # --- the redraw: attributes down ----------------------------------------------
    def redraw(self) -> None:
        """Apply what the source said since the last redraw to the widgets."""
        main = self.main
        if not main.is_mounted:
            return
        try:
            events = main.query_one(EventTable)
            alerts = main.query_one(AlertTable)
            rules = main.query_one(RulesPane)
        except NoMatches:
            return  # mounted, its panes not yet: the data arrived first; the next redraw shows it
        state = self.state
        now = self.source.now()
        silent = self._silence()
        if state.reset_pending:
            state.reset_pending = False
            events.reset()
            alerts.acknowledged.clear()
        if state.sample is not self._drawn_sample:
            self._drawn_sample = state.sample
            history = tuple(state.history)
            main.query_one(TrafficPane).samples = history[-SPARK_SAMPLES:]
            if self._chart is not None:
                self._chart.samples = history
        if state.pending:
            new, evicted = state.take_events()
            events.add_events(new, evicted)
            if self.detail is not None:
                self.detail.add_events(new)
        events.lost = state.events_lost()
        alerts.now = now
        top_changed = state.top_version != self._drawn_top
        if top_changed:
            self._drawn_top = state.top_version
            if state.top is not None:
                main.query_one(TopPane).top = state.top
        if state.alerts_version != self._drawn_alerts or top_changed:
            self._drawn_alerts = state.alerts_version
            alerts.capped = state.alerts_capped
            alerts.alerts = tuple(state.alerts.values())
            main.query_one(TrafficPane).offenders = top_offenders(state.top, state.alerts.values())
        if state.rules_version != self._drawn_rules:
            self._drawn_rules = state.rules_version
            rules.head = state.rules_head
            rules.rules = state.rules
        rules.decisions = state.decisions_in_blocklist()
        rules.now = now
        if self.detail is not None:
            self.detail.view = self._alert_view(self.detail.view.alert if self.detail.view else None, now)
        tabs = main.query_one(PaneTabs)
        tabs.alerting = alerts.has_class("-critical")
        if state.notices:
            tabs.notice = state.notices[-1]
        main.query_one(StatusBar).view = self._status(now, silent)

    def _silence(self) -> float:
        """How long the source has not answered, once that is SILENT_SECS or more (else 0), said on the
        notice line when it begins and when it ends.  A stopped or stuck engine would otherwise leave its
        last figures on screen under "attached", as if the traffic had stopped."""
        if not self.started or self.replay is not None or self.failure is not None:
            return 0.0
        now = time.monotonic()
        if isinstance(self.source, SilenceAwareSource):  # the call in flight past its own budget (an edit's is longer)
            silent = self.source.silent_for(now)
        else:
            silent = self.answers.silent_for(now)
            silent = silent if silent >= SILENT_SECS else 0.0
        if silent > 0:
            if self._silent_since is None:
                self._silent_since = self.answers.at
                self.state.notice(f"engine not answering for {fmt.span(silent)}: the figures are stale (q quits)")
            return silent
        if self._silent_since is not None:
            at = self.answers.at or self._silent_since
            self.state.notice(f"the engine answers again (no answer for {fmt.span(at - self._silent_since)})")
            self._silent_since = None
        return 0.0

    def _status(self, now: float, silent: float = 0.0) -> StatusView:
        info = self.info
        replay = self.replay
        return StatusView(
            title=info.title,
            iface=info.iface,
            mode=info.mode,
            attached=info.attached,
            silent=silent,
            uptime=now - info.started_at if self.started else 0.0,
            blocklist_used=self.state.blocklist_used(),
            blocklist_capacity=info.blocklist_capacity,
            events_lost=self.state.events_lost(),
            config_path=info.config_path,
            rules_path=info.rules_path,
            crowdsec=self.state.crowdsec,
            now=now,
            replay=replay is not None,
            position=replay.position if replay else 0.0,
            duration=replay.duration if replay else 0.0,
            speed=replay.speed if replay else 1.0,
            paused=replay.paused if replay else self.main.query_one(EventTable).paused,
        )

    # --- actions --------------------------------------------------------------------
    async def action_quit(self) -> None:
        """q, ctrl+c, ctrl+q, the palette: at once, or ask first when drop rules would go (leaving.py)."""
        self.leaving.request()

    def on_enforcement_kept(self, message: EnforcementKept) -> None:
        self.leaving.kept(message)

    def on_keep_failed(self, message: KeepFailed) -> None:
        self.leaving.failed(message)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("seek", "speed"):
            # Not while a filter is typed: left and right move its cursor (they are priority keys, and took the
            # arrows from the filter until session 25).
            return self.replay is not None and self.screen is self.main and not isinstance(self.focused, Input)
        if action in ("add_rule", "panic", "reload"):
            return not self.read_only
        return True

    # --- toasts: never over a dialog, never lost behind one ---------------------------------
    def notify(
        self,
        message: str,
        *,
        title: str = "",
        severity: SeverityLevel = "information",
        timeout: float | None = None,
        markup: bool = True,
    ) -> None:
        if self._dialog_open():
            self._held_toasts.append((message, title, severity, timeout, markup))
            return
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def _dialog_open(self) -> bool:
        """A dialog is on top (the starting screen is not one: the start's warnings are said over it)."""
        try:
            screen = self.screen
        except ScreenStackError:
            return False
        return isinstance(screen, ModalScreen) and not isinstance(screen, StartingScreen)

    def pop_screen(self) -> AwaitComplete:
        done = super().pop_screen()
        self.call_later(self._show_held_toasts)  # the dialog is gone once this runs
        return done

    def _show_held_toasts(self) -> None:
        while self._held_toasts and not self._dialog_open():
            message, title, severity, timeout, markup = self._held_toasts.popleft()
            super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.help_sections()))

    def action_notices(self) -> None:
        """n: the last notices, whole and timed (the notice line keeps some 29 cells at 80 columns, a toast some
        seconds; until session 25 a warning missed was gone)."""
        if not isinstance(self.screen, NoticesScreen):
            self.push_screen(NoticesScreen(self.state.said))

    @property
    def theme_names(self) -> list[str]:
        """ironpost's own themes (from themes/), in the order `t` cycles them."""
        return list(self._themes)

    def action_next_theme(self) -> None:
        names = self._themes or ["textual-dark", "textual-light"]
        current = names.index(self.theme) if self.theme in names else -1
        self.use_theme(names[(current + 1) % len(names)])

    def use_theme(self, name: str) -> None:
        self.theme = name
        self.state.notice(f"theme: {self.theme}")
        self.redraw()

    def action_pause(self) -> None:
        replay = self.replay
        if replay is not None:
            replay.pause(not replay.paused)
        else:
            events = self.main.query_one(EventTable)
            events.paused = not events.paused
        self.redraw()

    def action_units(self) -> None:
        self.bits = not self.bits
        self.main.query_one(TrafficPane).bits = self.bits

    def action_chart(self) -> None:
        protocol = self.main.query_one(TrafficPane).selected
        chart = ChartScreen(protocol, tuple(self.state.history), self.bits)
        self._chart = chart

        def closed(_: None) -> None:
            self._chart = None

        self.push_screen(chart, closed)

    def action_seek(self, delta: float) -> None:
        replay = self.replay
        if replay is not None:
            replay.seek(replay.position + delta)
            self.redraw()

    def action_speed(self, step: int) -> None:
        replay = self.replay
        if replay is None:
            return
        faster = [s for s in SPEEDS if s > replay.speed]
        slower = [s for s in SPEEDS if s < replay.speed]
        if step > 0 and faster:
            replay.set_speed(faster[0])
        elif step < 0 and slower:
            replay.set_speed(slower[-1])
        self.redraw()

    def action_add_rule(self) -> None:
        self.editing.open_form(None)

    def action_panic(self) -> None:
        self.editing.panic()

    def action_reload(self) -> None:
        """r: in a worker thread (the source's call waits for the one in flight: a silent engine's for ever)."""
        self.run_worker(self._reload, thread=True, group="reload", exit_on_error=False)

    def _reload(self) -> None:
        try:
            self.source.reload()
        except IronpostError as exc:
            self.post_message(NoticePosted(f"reload: {exc.message}"))
        else:
            self.post_message(NoticePosted("reload of the configuration requested"))

    def action_export(self, kind: str) -> None:
        """E / A: ask where, then write the events (as filtered) or the alerts in a worker."""
        fields: tuple[str, ...]
        if kind == "events":
            rows, fields = event_rows(self.main.query_one(EventTable).exportable()), EVENT_FIELDS
        elif kind == "top":
            pane = self.main.query_one(TopPane)
            rows, fields = top_rows(pane.kind.value, pane.window.value, pane.rows()), TOP_FIELDS
        else:
            acked = self.main.query_one(AlertTable).acknowledged
            rows, fields = alert_rows(self.state.alerts.values(), acked, self.source.now()), ALERT_FIELDS
        screen = ExportScreen(kind, len(rows), default_path(kind, "csv", time.time()), cursor_blink=self.cursor_blink)

        def chosen(answer: tuple[str, Path] | None) -> None:
            if answer is not None:
                self._write_export(kind, answer[0], answer[1], rows, fields)

        self.push_screen(screen, chosen)

    @work(thread=True, exit_on_error=False, group="export")
    def _write_export(self, kind: str, fmt: str, path: Path, rows: list[Row], fields: tuple[str, ...]) -> None:
        try:
            written = write_rows(path, rows, fields, fmt)
        except IronpostError as exc:
            self.post_message(ExportWritten(kind, str(path), 0, exc.message))
        else:
            self.post_message(ExportWritten(kind, str(written.resolve()), len(rows)))

    def on_export_written(self, message: ExportWritten) -> None:
        if message.error:
            self.notify(fmt.text(message.error), title="export failed", severity="error", markup=False)
        else:
            self.notify(fmt.text(message.path), title=f"exported {message.count:,} {message.kind}", markup=False)

    def on_rules_pane_copy_requested(self, message: RulesPane.CopyRequested) -> None:
        self.copy_to_clipboard(message.text)
        self.notify(fmt.text(message.text), title=fmt.text(message.title), timeout=20, markup=False)

    # --- what the widgets ask: rule edits (see rule_editing.py) -------------------------
    def on_rules_pane_rule_form_requested(self, message: RulesPane.RuleFormRequested) -> None:
        self.editing.open_form(message.rule)

    def on_rule_form_rule_submitted(self, message: RuleForm.RuleSubmitted) -> None:
        self.editing.submit(message.rule, message.editing, message.force)

    def on_rules_pane_rule_changed(self, message: RulesPane.RuleChanged) -> None:
        self.editing.switch(message.rule, message.shown)

    def on_rules_pane_rule_delete_requested(self, message: RulesPane.RuleDeleteRequested) -> None:
        self.editing.delete(message.rule)

    def on_event_table_block_requested(self, message: EventTable.BlockRequested) -> None:
        self.editing.block(message.address, message.why, Origin.EVENTS)

    def on_alert_table_block_requested(self, message: AlertTable.BlockRequested) -> None:
        self.editing.block(message.address, message.why, Origin.ALERTS)

    def on_event_table_capture_requested(self, message: EventTable.CaptureRequested) -> None:
        self.capture_source(message.address)

    def capture_source(self, address: str) -> None:
        """`c`: ask how long, how much and where, then capture ``address``'s packets (any pane may call it)."""
        self.capturing.ask(CaptureFilter(src=ipaddress.ip_network(address)), address)

    def on_capture_progressed(self, message: CaptureProgressed) -> None:
        self.capturing.show(message)

    def on_event_table_unblock_requested(self, message: EventTable.UnblockRequested) -> None:
        self.editing.unblock(message.address, Origin.EVENTS)

    def on_alert_table_unblock_requested(self, message: AlertTable.UnblockRequested) -> None:
        self.editing.unblock(message.address, Origin.ALERTS)

    def on_top_pane_block_requested(self, message: TopPane.BlockRequested) -> None:
        self.editing.block(message.address, message.why, Origin.TOP)

    def on_top_pane_unblock_requested(self, message: TopPane.UnblockRequested) -> None:
        self.editing.unblock(message.address, Origin.TOP)

    def on_top_pane_monitor_requested(self, message: TopPane.MonitorRequested) -> None:
        self.editing.add(message.rule, Origin.TOP)

    def on_top_pane_capture_requested(self, message: TopPane.CaptureRequested) -> None:
        self.capturing.ask(message.filt, message.what)

    def on_top_pane_detail_requested(self, message: TopPane.DetailRequested) -> None:
        if not isinstance(self.screen, TopDetailScreen):
            self.push_screen(TopDetailScreen(message.title, message.fields))

    def on_edit_applied(self, message: EditApplied) -> None:
        self.editing.applied(message.edit, message.text)

    def on_edit_refused(self, message: EditRefused) -> None:
        self.editing.refused(message.edit, message.text, message.lockout)

    def on_alert_table_alert_acknowledged(self, message: AlertTable.AlertAcknowledged) -> None:
        what = "acknowledged" if message.acknowledged else "no longer acknowledged"
        self.state.notice(f"alert {message.alert_id} {what}")
        self.redraw()

    # --- an alert's detail (enter on an alert) ---------------------------------------------
    def _alert_view(self, alert: Alert | None, now: float) -> AlertView | None:
        if alert is None:
            return None
        alert = self.state.alerts.get(alert.id, alert)  # the latest of it
        acked = alert.id in self.main.query_one(AlertTable).acknowledged
        kept = self.main.query_one(EventTable).kept_count
        talker = tuple(source_talker(self.state.top, alert.source))
        return AlertView(alert, acked, tuple(matching_rules(alert, self.state.rules)), kept, now, talker)

    def on_alert_table_detail_requested(self, message: AlertTable.DetailRequested) -> None:
        self.open_detail(message.alert)

    def open_detail(self, alert: Alert) -> None:
        view = self._alert_view(alert, self.source.now())
        if view is None or self.detail is not None:
            return
        events = self.main.query_one(EventTable).kept_matching(event_filter(alert))
        detail = AlertDetailScreen(view, events, read_only=self.read_only)
        self.detail = detail

        def closed(_: None) -> None:
            self.detail = None

        self.push_screen(detail, closed)

    def on_alert_detail_screen_acknowledge_requested(self, message: AlertDetailScreen.AcknowledgeRequested) -> None:
        self.main.query_one(AlertTable).toggle_acknowledged(message.alert_id)

    def on_alert_detail_screen_block_requested(self, message: AlertDetailScreen.BlockRequested) -> None:
        self.editing.block(message.address, message.why, Origin.DETAIL)

    def on_alert_detail_screen_unblock_requested(self, message: AlertDetailScreen.UnblockRequested) -> None:
        self.editing.unblock(message.address, Origin.DETAIL)

    # --- help and the command palette ---------------------------------------------------
    def help_sections(self) -> list[tuple[str, list[KeyHelp]]]:
        sections = help_sections(self.get_key_display, [b for b in self.BINDINGS if isinstance(b, Binding)])
        if self.info.protected:  # "ADDRESS (reason)" each
            entries = [p.partition(" (") for p in self.info.protected]
            listed = [(addr, why.removesuffix(")") or "protected") for addr, _, why in entries]
            sections.append(("Protected addresses", listed))
        return sections

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        """Ours alone: not Textual's (its theme picker offers its own themes, its Quit would be a
        second one, its screenshot writes files outside ironpost's writer)."""
        if screen is self.main:
            yield from console_commands(self)
        else:
            yield from other_screen_commands(self)


def make_app(
    settings: ConsoleSettings, source: Source, *, theme: str | None = None, cursor_blink: bool = True
) -> IronpostApp:
    """The console over ``source``: the CLI, the Pilot tests and the snapshots all build it here."""
    return IronpostApp(settings, source, theme=theme, cursor_blink=cursor_blink)


__all__ = ["IronpostApp", "make_app"]
