"""The endpoint's answers, as bytes: a status line, a few headers, a body (none for HEAD)."""

from __future__ import annotations

from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
SERVER = "ironpost-tui"
INDEX = b"ironpost-tui agent: /metrics (Prometheus), /top (top talkers, JSON), /healthz\n"
PLAIN_TO_TLS = b"Client sent an HTTP request to an HTTPS server.\n"

# What an error says, for the statuses the endpoint gives (the reason phrase otherwise).
_BODIES = {
    HTTPStatus.UNAUTHORIZED: b"Unauthorized\n",
    HTTPStatus.NOT_FOUND: b"Not found: try /metrics, /top or /healthz\n",
    HTTPStatus.METHOD_NOT_ALLOWED: b"Only GET and HEAD\n",
    HTTPStatus.TOO_MANY_REQUESTS: b"Too many failed logins from your address: wait\n",
    HTTPStatus.SERVICE_UNAVAILABLE: b"Busy: try again\n",
}


@dataclass(frozen=True)
class Response:
    status: HTTPStatus
    body: bytes = b""
    content_type: str = TEXT
    headers: dict[str, str] = field(default_factory=dict)
    close: bool = False  # answer with Connection: close, then close

    @classmethod
    def error(cls, status: HTTPStatus, close: bool = False, headers: dict[str, str] | None = None) -> Response:
        body = _BODIES.get(status, f"{status.value} {status.phrase}\n".encode())
        return cls(status, body, headers=headers or {}, close=close)

    def encode(self, extra: dict[str, str], head_only: bool = False) -> bytes:
        """The whole answer; ``extra`` (the web config's security headers) goes after ours."""
        lines = [
            f"HTTP/1.1 {self.status.value} {self.status.phrase}",
            f"Server: {SERVER}",
            f"Date: {formatdate(usegmt=True)}",
            f"Content-Type: {self.content_type}",
            f"Content-Length: {len(self.body)}",
        ]
        lines += [f"{name}: {value}" for name, value in {**self.headers, **extra}.items()]
        if self.close:
            lines.append("Connection: close")
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        return head if head_only else head + self.body


def plain_to_tls() -> bytes:
    """The answer to plain HTTP on a TLS port (HTTP/1.0: the client may speak either)."""
    return (
        b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
        + PLAIN_TO_TLS
    )
