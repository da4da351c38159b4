"""Telling the service manager how the agent stands (systemd's ``Type=notify``): ``READY=1`` once the program
is attached (or adopted) and filtering, and ``STOPPING=1`` when the agent leaves, each with a ``STATUS=`` line.
``systemctl start`` then returns when the interface is filtering, or fails with the agent's error; a reload
asked meanwhile waits for the start instead of reaching a process still starting.

The protocol is sd_notify(3)'s: one datagram to the AF_UNIX socket named by ``$NOTIFY_SOCKET`` (a path, or an
abstract name after ``@``).  It is written here rather than by linking libsystemd, as that page's Notes
recommend (the protocol is the interface).  The variable is taken out of the environment when it is read,
so that no process the agent starts inherits it.  A datagram that cannot be sent, at once (``MSG_DONTWAIT``:
a full queue never holds the agent), is one warning: the agent never stops over its notification.
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import MutableMapping
from dataclasses import dataclass

from ironpost_tui.text import visible

log = logging.getLogger(__name__)

ENV = "NOTIFY_SOCKET"
MAX_ADDRESS = 107  # sun_path's 108 bytes, less the NUL that ends a path


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

    def send(self, *fields: str) -> bool:
        """One datagram of ``fields`` (``KEY=value``, one a line); False, said in a warning, when it could not
        be sent at once."""
        message = "\n".join(visible(f) for f in fields).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as s:
                s.sendto(message, socket.MSG_DONTWAIT, self.address)
        except OSError as exc:
            log.warning(
                "telling the service manager %s failed: %s",
                fields[0],
                exc.strerror or exc,
                extra={"event": "notify_failed"},
            )
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send("READY=1", f"STATUS={status}")

    def stopping(self, status: str) -> bool:
        return self.send("STOPPING=1", f"STATUS={status}")
