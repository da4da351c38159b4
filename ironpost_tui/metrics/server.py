"""The HTTP(S) endpoint of the headless agent: ``/metrics`` and ``/healthz``.

The socket is bound when the server is made, so a port in use is found
before the engine attaches anything; requests are served from a daemon
thread (one short-lived thread per connection, at most MAX_CONNECTIONS).
With TLS the handshake happens in the connection's thread, never in the
accept loop, and a plain HTTP request gets a 400 saying so.
"""

from __future__ import annotations

import base64
import binascii
import errno
import gzip
import logging
import socket
import socketserver
import ssl
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from ironpost_tui.errors import IronpostError, MetricsPortInUse
from ironpost_tui.metrics.web_config import BasicAuth, WebConfig
from ironpost_tui.rules.infrastructure import RecentPeers

log = logging.getLogger("ironpost.http")

MAX_CONNECTIONS = 32
IDLE_TIMEOUT = 30.0  # seconds a connection may sit between requests
_PLAIN_TO_TLS = (
    b"HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"
    b"Client sent an HTTP request to an HTTPS server.\n"
)
_INDEX = b"ironpost-tui agent: /metrics (Prometheus), /healthz\n"


class MetricsServer(socketserver.ThreadingMixIn, HTTPServer):
    """Binds at construction; ``start()`` serves in a daemon thread; ``stop()`` releases the port."""

    daemon_threads = True
    block_on_close = False  # stop() does not wait for a slow client
    request_queue_size = 64

    def __init__(
        self,
        addr: str,
        port: int,
        registry: CollectorRegistry,
        healthy: Callable[[], bool],
        web: WebConfig | None = None,
        scrapers: RecentPeers | None = None,
    ) -> None:
        self.address_family = socket.AF_INET6 if ":" in addr else socket.AF_INET
        self.registry = registry
        self.healthy = healthy
        self.web = web or WebConfig()
        self.auth: BasicAuth | None = self.web.basic_auth()
        self.scrapers = scrapers  # who scraped /metrics (authorized requests only): never auto-blocked
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)
        self._thread: threading.Thread | None = None
        try:
            super().__init__((addr, port), _Handler)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise MetricsPortInUse(
                    f"metrics port {addr}:{port} is already in use: pick another with --metrics-port N "
                    "(or [metrics] port), or turn metrics off with --no-metrics"
                ) from None
            raise IronpostError(f"cannot listen on {addr}:{port} for metrics: {exc.strerror or exc}") from None

    @property
    def scheme(self) -> str:
        return "https" if self.web.tls is not None else "http"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self.serve_forever, kwargs={"poll_interval": 0.1}, name="metrics-http", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        """Stop serving and close the listening socket (the port is free when this returns)."""
        if self._thread is not None:
            self.shutdown()
            self._thread.join(5)
            self._thread = None
        self.server_close()

    # --- connections ---------------------------------------------------------
    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            self.shutdown_request(request)  # too many at once: the client retries at its next scrape
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._slots.release()

    def finish_request(self, request: Any, client_address: Any) -> None:
        tls = self.web.tls
        if tls is None:
            super().finish_request(request, client_address)
            return
        request.settimeout(IDLE_TIMEOUT)
        try:
            first = request.recv(1, socket.MSG_PEEK)
            if first and first != b"\x16":  # not a TLS handshake record: plain HTTP, most likely
                request.settimeout(1.0)
                request.recv(65536)  # read the request: closing on unread data would reset the answer away
                request.sendall(_PLAIN_TO_TLS)
                return
            conn = tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError) as exc:
            log.debug("TLS handshake with %s failed: %s", client_address[0], exc)
            return
        try:
            super().finish_request(conn, client_address)
        finally:
            conn.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        log.exception("metrics request from %s failed", client_address[0] if client_address else "?")


class _Handler(BaseHTTPRequestHandler):
    server: MetricsServer
    protocol_version = "HTTP/1.1"
    timeout = IDLE_TIMEOUT
    server_version = "ironpost-tui"
    sys_version = ""

    def do_GET(self) -> None:
        self._respond(body=True)

    def do_HEAD(self) -> None:
        self._respond(body=False)

    def _respond(self, body: bool) -> None:
        if not self._authorized():
            self._send(401, b"Unauthorized\n", "text/plain; charset=utf-8", body,
                       {"WWW-Authenticate": 'Basic realm="ironpost"'})  # fmt: skip
            return
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            if self.server.scrapers is not None:
                self.server.scrapers.record(str(self.client_address[0]))
            encoder, content_type = choose_encoder(self.headers.get("Accept", ""))
            output = encoder(self.server.registry)
            extra = {}
            if "gzip" in self.headers.get("Accept-Encoding", ""):
                output = gzip.compress(output)
                extra["Content-Encoding"] = "gzip"
            self._send(200, output, content_type, body, extra)
        elif path == "/healthz":
            ok = self.server.healthy()
            self._send(200 if ok else 503, b"ok\n" if ok else b"not attached\n", "text/plain; charset=utf-8", body)
        elif path == "/":
            self._send(200, _INDEX, "text/plain; charset=utf-8", body)
        else:
            self._send(404, b"Not found: try /metrics or /healthz\n", "text/plain; charset=utf-8", body)

    def _authorized(self) -> bool:
        auth = self.server.auth
        if auth is None:
            return True
        header = self.headers.get("Authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() != "basic":
            return False
        try:
            user, sep, password = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
        except (binascii.Error, UnicodeDecodeError):
            return False
        return bool(sep) and auth.check(user, password)

    def _send(self, status: int, data: bytes, content_type: str, body: bool,
              headers: dict[str, str] | None = None) -> None:  # fmt: skip
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        for name, value in {**self.server.web.headers, **(headers or {})}.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (the stdlib's name)
        log.debug("%s %s", self.address_string(), format % args)
