"""The body of the console's poll worker: start the source if it must be, then poll
it until cancelled, turning each update into messages.  It never touches a widget."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from textual.message import Message

from ..errors import ExitStatus, InterfaceGone, IronpostError
from ..source import Source
from .messages import NoticePosted, SourceFailed, SourceStarted, messages_for
from .source_kinds import StartableSource

log = logging.getLogger(__name__)


def run_poll(source: Source, post: Callable[[Message], object], cancelled: Callable[[], bool], timeout: float) -> None:
    if isinstance(source, StartableSource) and not source.info.attached:
        try:
            info = source.start()  # compile + attach: seconds
        except IronpostError as exc:
            post(SourceFailed(exc.title, exc.message, int(exc.exit_status)))
            return
        except Exception as exc:
            log.exception("the engine failed to start")
            post(SourceFailed("Error", f"{type(exc).__name__}: {exc}", int(ExitStatus.ERROR)))
            return
        post(SourceStarted(info))
    interface = "up"
    pause = threading.Event()  # never set: a wait after a failed poll, so a failing source does not spin
    while not cancelled():
        try:
            update = source.poll(timeout)
        except IronpostError as exc:
            post(SourceFailed(exc.title, exc.message, int(exc.exit_status)))
            return
        except Exception:
            log.exception("polling the source failed; retrying")
            pause.wait(timeout)
            continue
        if cancelled():
            return
        if update.interface_state != interface:
            interface = update.interface_state
            if interface == "gone":
                gone = InterfaceGone(f"interface {source.info.iface} disappeared: the program went with it")
                post(SourceFailed(gone.title, gone.message, int(gone.exit_status)))
                return
            post(NoticePosted(f"interface {source.info.iface} is {interface}"))
        for message in messages_for(update):
            post(message)
