"""Telling the service manager how the agent stands (systemd's ``Type=notify``): ``READY=1`` once the program
is attached (or adopted) and filtering, and ``STOPPING=1`` when the agent leaves, each with a ``STATUS=`` line.
``systemctl start`` then returns when the interface is filtering, or fails with the agent's error; a reload
asked meanwhile waits for the start instead of reaching a process still starting.

The protocol is sd_notify(3)'s: one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract name after ``@``).  It is written here rather than by linking libsystemd, as that page's Notes
recommend (the protocol is the interface).  The variable is taken out of the environment when it is read,
so that no process the agent starts inherits it.

``READY=1`` is what systemd waits for (it stops a service that does not say it within ``TimeoutStartSec``,
and ``Restart=`` starts it again: an interface unfiltered at each turn).  So it is sent from a thread of its
own, the agent's loop running meanwhile, each try waiting up to SEND_TIMEOUT for room in the socket's queue
(one that its other writers keep full: it is open to every service), READY_TRIES tries a second apart.
The status lines after it, and ``STOPPING=1``, are sent at once or not at all (``MSG_DONTWAIT``).  A failure
is a warning: the agent never stops over its notification.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import MutableMapping
from dataclasses import dataclass

from ironpost_tui.text import visible

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
MAX_ADDRESS = 107  # sun_path's 108 bytes, less the NUL that ends a path
SEND_TIMEOUT = 5.0  # seconds a READY=1 waits for room in the queue, each try
READY_TRIES = 10
RETRY_PAUSE = 1.0


@dataclass(frozen=True)
class Notifier:
    address: str | bytes  # a path, or b"\0" and an abstract name

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

    def send(self, *fields: str, timeout: float | None = None, warn: bool = True) -> bool:
        """One datagram of ``fields`` (``KEY=value``, one a line), sent at once or (``timeout``) within that many
        seconds; False, said in a warning (``warn``), when it was not."""
        message = "\n".join(visible(f) for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                if timeout is None:
                    s.sendto(message, socket.MSG_DONTWAIT, self.address)
                else:
                    s.settimeout(timeout)
                    s.sendto(message, self.address)
        except OSError as exc:
            if not warn:
                return False
            log.warning(
                "telling the service manager %s failed: %s",
                fields[0],
                exc.strerror or exc or "timed out",
                extra={"event": "notify_failed"},
            )
            return False
        return True

    def ready_soon(self, status: str) -> threading.Thread:
        """``READY=1`` from a thread of its own, tried until it is sent (READY_TRIES at most); the thread."""
        t = threading.Thread(target=self._ready, args=(status,), name="notify-ready", daemon=True)
        t.start()
        return t

    def _ready(self, status: str) -> None:
        for attempt in range(READY_TRIES):
            if attempt:
                time.sleep(RETRY_PAUSE)
            if self.send("READY=1", f"STATUS={status}", timeout=SEND_TIMEOUT, warn=not attempt):
                return
        log.error(
            "the service manager was not told that the agent is ready (%d tries): systemd stops a Type=notify "
            "service that does not say so within its TimeoutStartSec",
            READY_TRIES,
            extra={"event": "notify_failed"},
        )

    def status(self, status: str) -> bool:
        return self.send(f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")
