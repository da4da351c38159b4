"""The body of the console's poll worker: start the source if it must be, then poll
it until cancelled, turning each update into messages.  It never touches a widget."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

from textual.message import Message

from ironpost_tui.engine.feed import Answers, Source
from ironpost_tui.errors import ExitStatus, InterfaceGone, IronpostError, ProgramDetached, detached_message
from ironpost_tui.kernel.host import InterfaceState
from ironpost_tui.ui.messages import NoticePosted, SourceFailed, SourceStarted, messages_for
from ironpost_tui.ui.source_kinds import StartableSource

log = logging.getLogger(__name__)

# Under an event flood a poll returns as soon as one event is waiting: thousands of polls a
# second, each with its own messages and handler calls.  After a poll that brought a few
# events, the worker waits until BATCH_SECS after that poll began, so events arrive in
# batches (about 20 a second).  The ring buffer (256 KiB: 4,096 events) holds a batch at
# up to 80,000 events/s; a poll that brought BIG_BATCH or more events is followed at once.
BATCH_SECS = 0.05
BIG_BATCH = 1_024
# Updates posted and not yet applied by the console: past this the worker waits before its next poll.  Textual's
# queue for messages from a thread has no bound, and a poll that brought a big batch is followed at once: a replay
# of a file whose records are all at one instant (or a flood the console cannot keep up with) filled it without
# limit until session 26.
MAX_IN_FLIGHT = 8


class InFlight:
    """The updates the worker has posted and the console has not applied yet (each ends with SourceAdvanced)."""

    def __init__(self, most: int = MAX_IN_FLIGHT) -> None:
        self.most = most
        self._n = 0
        self._cond = threading.Condition()

    def posted(self) -> None:
        with self._cond:
            self._n += 1

    def applied(self) -> None:
        with self._cond:
            self._n = max(0, self._n - 1)
            self._cond.notify_all()

    def full(self) -> bool:
        return self._n >= self.most

    def wait_for_room(self, cancelled: Callable[[], bool]) -> None:
        with self._cond:
            while self._n >= self.most and not cancelled():
                self._cond.wait(0.1)


def run_poll(
    source: Source,
    post: Callable[[Message], object],
    cancelled: Callable[[], bool],
    timeout: float,
    *,
    must_start: bool = False,
    answers: Answers | None = None,
    in_flight: InFlight | None = None,
) -> None:
    """``must_start``: the console shows its starting screen and waits for SourceStarted (or
    SourceFailed), whatever ``source.info`` says by the time this runs: a start begun before the
    console (LiveSource.begin) may have ended meanwhile, and start() then only says how it went.

    The first poll does not wait for events, and after a start SourceStarted is posted after that
    poll's messages: the console says "attached" with the rules table and the counters already there,
    never over an empty table ("0 rules" for a moment would read as rules lost).  A poll that brought a
    long table's head only (feed.RulesHead) is followed at once by the poll that brings the whole.

    ``answers`` is told each time a poll returns (with an update or an error): the console says when the
    source stops answering (feed.SILENT_SECS).  With ``in_flight``, the worker asks nothing more while MAX_IN_FLIGHT
    updates wait to be applied (the console's handler of SourceAdvanced says when one is); that wait is no silence
    of the source."""
    answers = answers if answers is not None else Answers()
    started: SourceStarted | None = None
    if must_start and isinstance(source, StartableSource):
        try:
            started = SourceStarted(source.start())  # compile + attach: seconds
        except IronpostError as exc:
            post(SourceFailed(exc.title, exc.message, int(exc.exit_status)))
            return
        except Exception as exc:
            log.exception("the engine failed to start")
            post(SourceFailed("Error", f"{type(exc).__name__}: {exc}", int(ExitStatus.ERROR)))
            return
    interface = InterfaceState.UP
    pause = threading.Event()  # never set: a wait after a failed poll, so a failing source does not spin
    wait = 0.0  # the first poll's
    while not cancelled():
        if in_flight is not None and in_flight.full():
            answers.hold()
            in_flight.wait_for_room(cancelled)
            answers.release()
            if cancelled():
                return
        began = time.monotonic()
        try:
            update = source.poll(wait)
        except IronpostError as exc:
            post(SourceFailed(exc.title, exc.message, int(exc.exit_status)))
            return
        except Exception as exc:  # said on screen (the notice line) with what failed, then retried
            answers.answered()  # an answer all the same: the source is not silent, its poll failed
            log.exception("polling the source failed, retrying: %s: %s", type(exc).__name__, exc)
            if started is not None:  # attached all the same: the console leaves its starting screen
                post(started)
                started = None
            pause.wait(timeout)
            continue
        answers.answered()
        wait = 0.0 if update.rules_head is not None else timeout  # the whole table is owed: at once
        if cancelled():
            return
        said: list[Message] = []
        if update.interface_state != interface:
            interface = update.interface_state
            if interface in (InterfaceState.GONE, InterfaceState.DETACHED):  # the run is over: said, then ended
                iface = source.info.iface
                end: IronpostError = (
                    InterfaceGone(f"interface {iface} disappeared: the program went with it")
                    if interface == InterfaceState.GONE
                    else ProgramDetached(detached_message(iface))
                )
                post(SourceFailed(end.title, end.message, int(end.exit_status)))
                return
            said.append(NoticePosted(f"interface {source.info.iface} is {interface}"))
        messages = [*said, *messages_for(update)]  # the last one SourceAdvanced, which the console counts applied
        if in_flight is not None:
            in_flight.posted()  # before any of them is posted: the console may apply them before this line would run
        if started is not None:
            # The first poll's table and counters, then attached, then what it said (an interface down, a
            # reload's refusal), which "attached to ..." would otherwise cover on the notice line.
            notices: list[Message] = [m for m in messages if isinstance(m, NoticePosted)]
            for message in messages:
                if not isinstance(message, NoticePosted):
                    post(message)
            post(started)
            started = None
            messages = notices
        for message in messages:
            post(message)
        if 0 < len(update.events) < BIG_BATCH and update.rules_head is None:
            rest = BATCH_SECS - (time.monotonic() - began)
            if rest > 0:
                pause.wait(min(rest, timeout))
