"""A whole HTTP call's deadline, its TLS handshake and headers included.

httpx's timeouts are per read: a server that sends its TLS handshake, status line or headers a byte per read
(h11 takes up to 64 KiB of headers) holds a call for hours with every read on time.  ``CallDeadline`` takes a
duplicate of the connection's socket as httpcore makes it (the ``trace`` request extension's
``connection.connect_tcp.complete``) and shuts the connection down at the deadline: the read blocked in the
calling thread returns at once, and the call fails.  The duplicate is ours, closed when the call ends, so
the shutdown never reaches a descriptor number the system has given to something else since.

It sees only connections made for the call: the client must not reuse one (``max_keepalive_connections=0``).
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

CONNECTED = "connection.connect_tcp.complete"


class CallDeadline:
    """``with CallDeadline(seconds) as d: client.stream(..., extensions={"trace": d.trace})``; ``d.expired``
    says whether the deadline ended it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._ended = False
        self._timer = threading.Timer(seconds, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> CallDeadline:
        self._timer.start()
        return self

    def __exit__(self, _t: type[BaseException] | None, _e: BaseException | None, _tb: TracebackType | None) -> None:
        self._timer.cancel()
        with self._lock:
            self._ended = True
            for s in self._socks:
                s.close()
            self._socks.clear()

    def trace(self, event: str, info: dict[str, Any]) -> None:
        """httpcore's trace callback: keeps a duplicate of each connection's socket."""
        if event != CONNECTED:
            return
        sock = info["return_value"].get_extra_info("socket")
        if sock is None:
            return
        with self._lock:
            if self._ended:
                return
            dup = sock.dup()
            self._socks.append(dup)
            if self.expired:  # connected after the deadline: ended at once
                _shut(dup)

    def _expire(self) -> None:
        with self._lock:
            if self._ended:
                return
            self.expired = True
            for s in self._socks:
                _shut(s)


def _shut(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass  # the peer had closed it already
