"""The HTTP(S) endpoint of the headless agent: ``/metrics``, ``/top`` (the top talkers as JSON) and
``/healthz``, built to hold under abuse.

The socket is bound when the server is made, so a port in use is found before the engine
attaches anything.  ``start()`` runs an asyncio loop in one daemon thread: every connection is
a coroutine, not a thread, so a few hundred slow or idle clients cost a few kilobytes each and
never take a scraper's place.  Only the slow work leaves the loop, to small fixed pools: bcrypt
(``AUTH_WORKERS`` threads) and rendering the registry (one thread).

The limits (``http/limits.py``, listed in the README's "Security") are checked in this order:
connections per source and in total at accept (beyond them the socket is reset, before any
buffer or task exists); the whole request, TLS handshake included, within ``REQUEST_DEADLINE``
(a slowloris gets 408 and is closed); the head's lines, count and size (414, 431, 400); the body
of a GET drained up to ``MAX_BODY_DRAINED``, else 413 and a close; then ``http/login_guard.py``'s
basic auth.  Clients' faults, disconnects and timeouts are logged at debug level without a
traceback; a refusal by a limit is a warning at most once a minute per kind (``Notices``).  A
traceback is logged only for a fault of ours.

Python's standard library is the server: of the libraries one could install, waitress has no TLS,
cheroot and http.server read a request with a thread per connection, and neither aiohttp nor
uvicorn bounds the time to receive the headers or counts connections per source; all would need
these checks added, on top of more dependencies in a root process.
"""

from __future__ import annotations

import asyncio
import errno
import gzip
import json
import logging
import socket
import ssl
import struct
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import CollectorRegistry

from ironpost_tui.errors import IronpostError, MetricsPortInUse
from ironpost_tui.metrics.http import response
from ironpost_tui.metrics.http.head import HeadError, RequestHead, read_head
from ironpost_tui.metrics.http.limits import ConnectionCaps, Limits, Notices, Refusal, peer_address, source_of
from ironpost_tui.metrics.http.login_guard import LoginGuard, Verdict, parse_basic
from ironpost_tui.metrics.http.response import Response
from ironpost_tui.metrics.web_config import BasicAuth, WebConfig
from ironpost_tui.rules.infrastructure import RecentPeers
from ironpost_tui.triage.json_form import top_to_json
from ironpost_tui.triage.values import TopSnapshot

log = logging.getLogger("ironpost.http")

LISTEN_BACKLOG = 128
_TIMEOUTS = (asyncio.TimeoutError, TimeoutError)  # one class from Python 3.11, two before
_CLIENT_FAULTS = (OSError, EOFError, asyncio.IncompleteReadError, *_TIMEOUTS)  # ssl.SSLError is an OSError
_UNAUTHORIZED = {"WWW-Authenticate": 'Basic realm="ironpost"'}


class _Deadline(Exception):
    """The request was not received in time."""


class MetricsServer:
    """Binds at construction; ``start()`` serves in a daemon thread; ``stop()`` releases the port."""

    def __init__(
        self,
        addr: str,
        port: int,
        registry: CollectorRegistry,
        unhealthy: Callable[[], str | None],
        web: WebConfig | None = None,
        scrapers: RecentPeers | None = None,
        limits: Limits | None = None,
        top: Callable[[], TopSnapshot] | None = None,
    ) -> None:
        self.registry = registry
        self.top = top  # the top talkers for /top (None: 404)
        self.unhealthy = unhealthy  # why /healthz says 503 (None: 200 ok)
        self.web = web or WebConfig()
        self.scrapers = scrapers  # who scraped /metrics, when it can tell who (``vouched``): never auto-blocked
        self.limits = limits or Limits()
        self.auth: BasicAuth | None = self.web.basic_auth()
        lim = self.limits
        self.guard = (
            LoginGuard(self.auth, burst=lim.login_burst, refill_secs=lim.login_refill_secs,
                       cache_ttl=lim.login_cache_ttl, queue=lim.auth_queue)
            if self.auth is not None else None
        )  # fmt: skip
        # A request's address counts as a scraper's (infrastructure: spared by auto-block and by CrowdSec's
        # decisions on a range that holds it) only when the endpoint knows who asks: basic auth passed, or a
        # client certificate verified on every connection.  Open to anyone, anyone who reaches it would
        # exempt the address, and any range around it, by one GET.
        tls = self.web.tls
        self.vouched = self.guard is not None or (tls is not None and tls.verify_mode == ssl.CERT_REQUIRED)
        self.caps = ConnectionCaps(lim.max_connections, lim.max_per_source)
        self.notices = Notices(log)
        self._sock = _listen(addr, port)
        self.server_address: tuple[Any, ...] = self._sock.getsockname()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._thread: threading.Thread | None = None
        self._auth_pool: ThreadPoolExecutor | None = None
        self._render_pool: ThreadPoolExecutor | None = None
        self._closing = False
        self._transports: set[asyncio.WriteTransport] = set()  # of the connections open now

    @property
    def scheme(self) -> str:
        return "https" if self.web.tls is not None else "http"

    @property
    def port(self) -> int:
        return int(self.server_address[1])

    def start(self) -> None:
        ready = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(ready,), name="metrics-http", daemon=True)
        self._thread.start()
        ready.wait(10)

    def stop(self) -> None:
        """Stop serving and close the listening socket (the port is free when this returns)."""
        loop, stopping, thread = self._loop, self._stopping, self._thread
        if loop is not None and stopping is not None and thread is not None and thread.is_alive():
            loop.call_soon_threadsafe(stopping.set)
            thread.join(5)
        self._thread = None
        self._sock.close()

    # --- the loop --------------------------------------------------------------
    def _run(self, ready: threading.Event) -> None:
        loop = asyncio.new_event_loop()
        loop.set_exception_handler(_loop_exception)
        self._loop = loop
        try:
            loop.run_until_complete(self._serve(ready))
        finally:
            loop.close()

    async def _serve(self, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        self._auth_pool = ThreadPoolExecutor(self.limits.auth_workers, thread_name_prefix="metrics-auth")
        self._render_pool = ThreadPoolExecutor(1, thread_name_prefix="metrics-render")
        tasks: set[asyncio.Task[None]] = set()
        accepting = asyncio.get_running_loop().create_task(self._accept(tasks))
        ready.set()
        try:
            await self._stopping.wait()
        finally:
            # Connections are aborted, not closed gracefully: stop() waits on no client.  The transports
            # go first: a read or write on them ends at once, even in a task whose cancellation
            # asyncio.wait_for swallowed (it can, before Python 3.12, when the wait ends as it is cancelled).
            self._closing = True
            for transport in list(self._transports):
                transport.abort()
            for task in (accepting, *tasks):
                task.cancel()
            await asyncio.wait({accepting, *tasks}, timeout=2)
            self._auth_pool.shutdown(wait=False, cancel_futures=True)
            self._render_pool.shutdown(wait=False, cancel_futures=True)
            self.notices.flush()

    async def _accept(self, tasks: set[asyncio.Task[None]]) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, peer = await loop.sock_accept(self._sock)
            except OSError as exc:  # out of file descriptors, or the client left before accept
                self.notices.count(Refusal.ACCEPT, errno.errorcode.get(exc.errno or 0, str(exc)))
                await asyncio.sleep(0.1)
                continue
            source = source_of(peer[0])
            refused = self.caps.admit(source)
            if refused is not None:
                _reset(conn)  # no buffer, no task: the client retries at its next scrape
                self.notices.count(refused, source)
                log.debug("metrics: refused a connection from %s: %s", peer_address(peer[0]), refused.value)
                continue
            task = loop.create_task(self._connection(conn, peer_address(peer[0]), source))
            tasks.add(task)
            task.add_done_callback(self._finished(tasks, source))

    def _finished(self, tasks: set[asyncio.Task[None]], source: str) -> Callable[[asyncio.Task[None]], None]:
        def done(task: asyncio.Task[None]) -> None:
            tasks.discard(task)
            self.caps.release(source)

        return done

    # --- one connection --------------------------------------------------------
    async def _connection(self, conn: socket.socket, host: str, source: str) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.limits.request_deadline
        writer: asyncio.StreamWriter | None = None
        try:
            tls = self.web.tls
            if tls is not None and not await self._tls_hello(conn, host, deadline):
                return
            reader = asyncio.StreamReader(limit=self.limits.max_line + 2)  # a line never buffers past its limit
            protocol = asyncio.StreamReaderProtocol(reader)
            left = max(deadline - loop.time(), 0.01)
            tls_args: dict[str, Any] = {"ssl": tls, "ssl_handshake_timeout": left} if tls is not None else {}
            transport, _ = await asyncio.wait_for(
                loop.connect_accepted_socket(lambda: protocol, conn, **tls_args), left + 1
            )
            writer = asyncio.StreamWriter(transport, protocol, reader, loop)
            self._transports.add(transport)
            await self._requests(reader, writer, host, source, deadline)
        except _Deadline:
            log.debug("metrics: %s: request not received within %.0f s: closed", host, self.limits.request_deadline)
        except _CLIENT_FAULTS as exc:
            log.debug("metrics: %s: %s", host, _describe(exc))
        except Exception:  # a fault of ours, not the client's
            log.exception("metrics: serving %s failed", host)
        finally:
            if writer is None:
                conn.close()
            else:
                self._transports.discard(writer.transport)
                await self._close(writer)

    async def _requests(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                        host: str, source: str, deadline: float) -> None:  # fmt: skip
        loop = asyncio.get_running_loop()
        lim = self.limits
        first = b""
        while True:
            try:
                head = await asyncio.wait_for(
                    read_head(reader, lim.max_line, lim.max_headers, lim.max_header_bytes, first),
                    deadline - loop.time(),
                )
            except _TIMEOUTS:
                await self._send(writer, Response.error(HTTPStatus.REQUEST_TIMEOUT, close=True))
                raise _Deadline from None
            except HeadError as exc:
                log.debug("metrics: %s: %s: %d", host, exc.why, exc.status.value)
                await self._send(writer, Response.error(exc.status, close=True))
                await self._linger(reader, writer)
                return
            if head is None:
                return  # closed between requests
            answer = await self._body(reader, head, deadline)
            if answer is None:
                answer = await self._answer(head, host, source)
            close = answer.close or not head.keep_alive or head.chunked
            await self._send(writer, replace(answer, close=close), head_only=head.method == "HEAD")
            log.debug('metrics: %s "%s %s %s" %d', host, head.method, head.target, head.version, answer.status.value)
            if close:
                if head.chunked or answer.status == HTTPStatus.REQUEST_ENTITY_TOO_LARGE:
                    await self._linger(reader, writer)  # the body is unread: let the client read the answer
                return
            # Kept alive: wait for the next request's first byte, then it has the deadline to arrive whole.
            try:
                first = await asyncio.wait_for(reader.read(1), lim.idle_timeout)
            except _TIMEOUTS:
                log.debug("metrics: %s: idle for %.0f s: closed", host, lim.idle_timeout)
                return
            if not first:
                return
            deadline = loop.time() + lim.request_deadline

    async def _body(self, reader: asyncio.StreamReader, head: RequestHead, deadline: float) -> Response | None:
        """Drain a (bounded) body, or the answer that refuses the request; None to serve it."""
        if head.method not in ("GET", "HEAD"):
            return Response.error(HTTPStatus.METHOD_NOT_ALLOWED, close=True, headers={"Allow": "GET, HEAD"})
        length = head.content_length
        if length > self.limits.max_body_drained:
            return Response.error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, close=True)
        if length:  # read and thrown away: never parsed as the next request
            loop = asyncio.get_running_loop()
            try:
                await asyncio.wait_for(reader.readexactly(length), deadline - loop.time())
            except _TIMEOUTS:
                raise _Deadline from None
        return None

    async def _answer(self, head: RequestHead, host: str, source: str) -> Response:
        if self.guard is not None:
            verdict = await self._authorize(head, source)
            if verdict is Verdict.LIMITED:
                retry = str(max(1, round(self.limits.login_refill_secs)))
                return Response.error(HTTPStatus.TOO_MANY_REQUESTS, close=True, headers={"Retry-After": retry})
            if verdict is Verdict.BUSY:
                return Response.error(HTTPStatus.SERVICE_UNAVAILABLE, close=True, headers={"Retry-After": "1"})
            if verdict is not Verdict.OK:
                log.debug("metrics: %s: 401: %s", host, verdict.value)
                return Response.error(HTTPStatus.UNAUTHORIZED, headers=_UNAUTHORIZED)
        path = head.path
        if path == "/metrics":
            if self.scrapers is not None and self.vouched:
                self.scrapers.record(host)
            loop = asyncio.get_running_loop()
            accept, encoding = head.get("accept"), head.get("accept-encoding")
            return await loop.run_in_executor(self._render_pool, self._render, accept, encoding)
        if path == "/healthz":
            why = self.unhealthy()
            if why is None:
                return Response(HTTPStatus.OK, b"ok\n")
            return Response(HTTPStatus.SERVICE_UNAVAILABLE, why.encode() + b"\n")
        if path == "/top" and self.top is not None:
            # The lists are a few hundred rows at most: encoded on the loop.
            body = json.dumps(top_to_json(self.top()), separators=(",", ":")).encode() + b"\n"
            return Response(HTTPStatus.OK, body, response.JSON)
        if path == "/":
            return Response(HTTPStatus.OK, response.INDEX)
        return Response.error(HTTPStatus.NOT_FOUND)

    async def _authorize(self, head: RequestHead, source: str) -> Verdict:
        assert self.guard is not None
        values = head.values("authorization")
        creds = parse_basic(values[0] if values else None) if len(values) <= 1 else Verdict.MALFORMED
        if isinstance(creds, Verdict):
            return creds
        verdict = self.guard.admit(source, creds)
        if verdict is Verdict.CHECK:
            loop = asyncio.get_running_loop()
            verdict = await loop.run_in_executor(self._auth_pool, self.guard.verify, source, creds)
        elif verdict is Verdict.LIMITED:
            self.notices.count(Refusal.LOGINS, source)
        elif verdict is Verdict.BUSY:
            self.notices.count(Refusal.AUTH_BUSY, source)
        return verdict

    def _render(self, accept: str, encoding: str) -> Response:
        encoder, content_type = choose_encoder(accept)
        output = encoder(self.registry)
        if "gzip" in encoding:
            return Response(HTTPStatus.OK, gzip.compress(output), content_type, {"Content-Encoding": "gzip"})
        return Response(HTTPStatus.OK, output, content_type)

    # --- writing and closing ---------------------------------------------------
    async def _send(self, writer: asyncio.StreamWriter, answer: Response, head_only: bool = False) -> None:
        writer.write(answer.encode(self.web.headers, head_only))
        await asyncio.wait_for(writer.drain(), self.limits.write_timeout)

    async def _linger(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Before closing on a request that is still coming: stop writing, then read and discard
        for a moment, so the client reads the answer instead of a reset (RFC 9112 9.6)."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.limits.linger_secs
        try:
            if writer.can_write_eof():
                writer.write_eof()
            while await asyncio.wait_for(reader.read(65536), max(end - loop.time(), 0)):
                pass
        except _CLIENT_FAULTS:
            pass

    async def _close(self, writer: asyncio.StreamWriter) -> None:
        if self._closing:
            writer.transport.abort()
            return
        writer.close()
        try:
            await asyncio.wait_for(writer.wait_closed(), self.limits.write_timeout)
        except _CLIENT_FAULTS:
            writer.transport.abort()

    async def _tls_hello(self, conn: socket.socket, host: str, deadline: float) -> bool:
        """Whether the client starts a TLS handshake; plain HTTP gets a 400 saying what to use."""
        loop = asyncio.get_running_loop()
        while True:
            try:
                first = conn.recv(1, socket.MSG_PEEK)
                break
            except BlockingIOError:
                readable: asyncio.Future[None] = loop.create_future()
                loop.add_reader(conn.fileno(), _resolve, readable)
                try:
                    await asyncio.wait_for(readable, max(deadline - loop.time(), 0))
                except _TIMEOUTS:
                    raise _Deadline from None
                finally:
                    loop.remove_reader(conn.fileno())
        if first == b"\x16" or not first:  # a TLS handshake record, or the end
            return bool(first)
        log.debug("metrics: %s: plain HTTP on the TLS port: 400", host)
        # Read the request first: closing on unread data would reset the answer away.
        await asyncio.wait_for(loop.sock_recv(conn, 65536), 1.0)
        await asyncio.wait_for(loop.sock_sendall(conn, response.plain_to_tls()), self.limits.write_timeout)
        return False


def _listen(addr: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((addr, port))
        sock.listen(LISTEN_BACKLOG)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise MetricsPortInUse(
                f"metrics port {addr}:{port} is already in use: pick another with --metrics-port N "
                "(or [metrics] port), or turn metrics off with --no-metrics"
            ) from None
        raise IronpostError(f"cannot listen on {addr}:{port} for metrics: {exc.strerror or exc}") from None
    return sock


def _reset(conn: socket.socket) -> None:
    """Close with a reset (SO_LINGER 0): nothing lingers in TIME_WAIT for a refused client."""
    try:
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    except OSError:
        pass
    conn.close()


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():
        future.set_result(None)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, _TIMEOUTS):
        return "timed out"
    if isinstance(exc, asyncio.IncompleteReadError):
        return "closed in the middle of a request body"
    return str(exc) or type(exc).__name__


def _loop_exception(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """What asyncio itself reports: a client's fault at debug level, without a traceback; anything
    else is a fault of ours and gets one."""
    exc = context.get("exception")
    if isinstance(exc, _CLIENT_FAULTS):
        log.debug("metrics: %s: %s", context.get("message", "connection"), _describe(exc))
    else:
        log.error("metrics: %s", context.get("message", "event loop error"), exc_info=exc)
