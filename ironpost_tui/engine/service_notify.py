"""Telling the service manager how the agent stands (systemd's ``Type=notify``): ``READY=1`` once the program
is attached (or adopted) and filtering, and ``STOPPING=1`` when the agent leaves, each with a ``STATUS=`` line.
``systemctl start`` then returns when the interface is filtering, or fails with the agent's error; a reload
asked meanwhile is folded into the start by systemd instead of reaching a process still starting.

The protocol is sd_notify(3)'s: one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract name after ``@``).  It is written here rather than by linking libsystemd, as that page's Notes
recommend (the protocol is the interface).  The variable is taken out of the environment when it is read,
so that no process the agent starts inherits it.

``READY=1`` is what systemd waits for (it stops a service that does not say it within ``TimeoutStartSec``,
and ``Restart=`` starts it again: an interface unfiltered at each turn).  So it is sent from a thread of its
own, the agent's loop running meanwhile, each try waiting up to SEND_TIMEOUT for room in the socket's queue
(one that its other writers keep full: it is open to every service), READY_TRIES tries a second apart.
Its status line is the latest (a panic or a reload while it waits changes it), it is never sent after
``STOPPING=1``, and a wait never spins (the socket is connected: the kernel then says it is writable only
with room in the queue; an unconnected datagram socket is always writable, and a timed send retried at
once, a CPU's worth).  The status lines after it, and ``STOPPING=1``, are sent at once or not at all
(``MSG_DONTWAIT``).  A failure is a warning: the agent never stops over its notification.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass, field

from ironpost_tui.text import visible

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
MAX_ADDRESS = 107  # sun_path's 108 bytes, less the NUL that ends a path
SEND_TIMEOUT = 5.0  # seconds a READY=1 waits for room in the queue, each try
SEND_SLICE = 0.25  # ... in waits this long, between which STOPPING=1 may go first
READY_TRIES = 10
RETRY_PAUSE = 1.0


@dataclass
class Notifier:
    address: str | bytes  # a path, or b"\0" and an abstract name
    _status: str = ""  # the latest status line
    _ready_sent: bool = False
    _stopping: threading.Event = field(default_factory=threading.Event)
    _send_lock: threading.Lock = field(default_factory=threading.Lock)

    @classmethod
    def from_environ(cls, environ: MutableMapping[str, str] | None = None) -> Notifier | None:
        """The service manager's socket, taken out of ``environ`` (os.environ); None when there is none, or
        when the value is no socket address (said in one warning)."""
        env = os.environ if environ is None else environ
        value = env.pop(ENV, None)
        if not value:
            return None
        raw = os.fsencode(value)
        if raw[:1] not in (b"/", b"@") or b"\0" in raw or len(raw) > MAX_ADDRESS:
            log.warning(
                "%s=%s is not a socket's path or @name of at most %d bytes: the service manager is not told "
                "when the agent is ready",
                ENV,
                visible(value[:120]),
                MAX_ADDRESS,
                extra={"event": "notify_socket_refused"},
            )
            return None
        return cls(b"\0" + raw[1:] if raw[:1] == b"@" else value)

    def send(self, *fields: str) -> bool:
        """One datagram of ``fields`` (``KEY=value``, one a line), sent at once; False, said in a warning, when it
        was not."""
        failed = self._send(fields, None)
        if failed is not None:
            self._warn(fields[0], failed)
        return failed is None

    def _send(self, fields: tuple[str, ...], timeout: float | None) -> OSError | None:
        """``fields`` sent at once (``timeout`` None) or within ``timeout`` seconds; the error, or None."""
        message = "\n".join(visible(f) for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.connect(self.address)  # connected: a timed send waits for room, it does not spin
                if timeout is None:
                    s.send(message, socket.MSG_DONTWAIT)
                else:
                    s.settimeout(timeout)
                    s.send(message)
        except OSError as exc:
            return exc
        return None

    @staticmethod
    def _warn(what: str, exc: OSError) -> None:
        log.warning("telling the service manager %s failed: %s", what, exc.strerror or exc,  # a timeout: "timed out"
                    extra={"event": "notify_failed"})  # fmt: skip

    def ready_soon(self, status: str) -> threading.Thread:
        """``READY=1`` from a thread of its own, tried until it is sent (READY_TRIES at most) or the agent
        stops; the thread."""
        self._status = status
        t = threading.Thread(target=self._ready, name="notify-ready", daemon=True)
        t.start()
        return t

    def _ready(self) -> None:
        for attempt in range(READY_TRIES):
            if attempt and self._stopping.wait(RETRY_PAUSE):
                return
            end = time.monotonic() + SEND_TIMEOUT
            while True:
                # A slice at a time, under the lock stopping() takes: never READY=1 after STOPPING=1.
                with self._send_lock:
                    if self._stopping.is_set():
                        return
                    sent = self._status
                    failed = self._send(("READY=1", f"STATUS={sent}"), SEND_SLICE)
                    if failed is None:
                        self._ready_sent = True
                if failed is None:
                    if self._status != sent:  # changed while it waited
                        self.status(self._status)
                    return
                if time.monotonic() >= end or not isinstance(failed, TimeoutError):
                    break
            if not attempt:
                self._warn("READY=1", failed)
        log.error(
            "the service manager was not told that the agent is ready (%d tries): systemd stops a Type=notify "
            "service that does not say so within its TimeoutStartSec",
            READY_TRIES,
            extra={"event": "notify_failed"},
        )

    def status(self, status: str) -> bool:
        """The status line, now; before READY=1 is sent, it goes with READY=1."""
        self._status = status
        if not self._ready_sent:
            return True
        return self.send(f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        with self._send_lock:  # a READY=1 in flight ends its slice first (SEND_SLICE at most)
            self._stopping.set()
        return self.send("STOPPING=1", f"STATUS={status}")
