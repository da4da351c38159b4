"""The metrics endpoint's limits, one by one, each with the request just inside it (served) and
just outside it (refused): the head's lines and headers, the request deadline, connections per
source and in total, bodies on GET, malformed Authorization, failed logins per source and the
cache of successes, and what gets logged.  No root: a MetricsServer on loopback, clients from
127.0.0.x (distinct sources), times shrunk through ``Limits`` where waiting 10 s proves nothing more.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http import HTTPStatus
from pathlib import Path

import bcrypt
import pytest
from support.metrics_lab import RawClient, basic, bcrypt_hash, port_closed, request, self_signed, wait_until

from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.metrics import web_config
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.metrics.http import limits as http_limits
from ironpost_tui.metrics.http.head import HeadError, read_head
from ironpost_tui.metrics.http.limits import ConnectionCaps, Limits, Notices, Refusal, source_of
from ironpost_tui.metrics.http.login_guard import Credentials, LoginGuard, Verdict, parse_basic
from ironpost_tui.metrics.server import MetricsServer

SNAP = EngineSnapshot(at=1.0, iface="eth0", mode="native", attached=True)
PASSWORD = "s3cret"
GET = b"GET /metrics HTTP/1.1\r\nHost: agent\r\n"


def get(*headers: str, target: str = "/metrics", auth: bool = True) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: agent", *headers]
    if auth:
        lines.append(f"Authorization: {basic('prometheus', PASSWORD)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture(scope="module")
def users() -> dict[str, str]:
    return {"prometheus": bcrypt_hash(PASSWORD)}


def make_server(users: dict[str, str] | None = None, tls: bool = False, tmp_path: Path | None = None,
                **limits: float) -> MetricsServer:  # fmt: skip
    data: dict[str, object] = {}
    if users:
        data["basic_auth_users"] = users
    if tls:
        assert tmp_path is not None
        cert, key = self_signed(tmp_path)
        data["tls_server_config"] = {"cert_file": str(cert), "key_file": str(key)}
    web = web_config.parse(data, Path("web.yml")) if data else None
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: SNAP), lambda: None, web,
                        limits=replace(Limits(), **limits))  # fmt: skip
    srv.start()
    return srv


@pytest.fixture
def server(users: dict[str, str]) -> Iterator[MetricsServer]:
    srv = make_server(users)
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def bcrypt_calls(monkeypatch: pytest.MonkeyPatch) -> list[bytes]:
    """Every bcrypt check the process makes from now on (the hash it checked against)."""
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(hashed)
        return real(password, hashed)

    monkeypatch.setattr(web_config.bcrypt, "checkpw", counting)
    return calls


# --------------------------------------------------------------------------- #
# the head: lines and headers


def parse(data: bytes, **kw: int) -> object:
    async def run() -> object:
        reader = asyncio.StreamReader(limit=http_limits.MAX_LINE + 2)
        reader.feed_data(data)
        reader.feed_eof()
        return await read_head(reader, **kw)

    return asyncio.run(run())


def test_the_default_limits_are_the_documented_ones() -> None:
    lim = Limits()
    assert (lim.request_deadline, lim.max_line, lim.max_headers) == (10.0, 8192, 64)
    assert (lim.max_connections, lim.max_per_source, lim.max_header_bytes) == (256, 16, 64 * 1024)
    assert (lim.login_burst, lim.login_refill_secs, lim.login_cache_ttl) == (10, 6.0, 120.0)


def test_64_headers_pass_65_are_refused(server: MetricsServer) -> None:
    pad = [f"X-Pad-{i}: {i}" for i in range(61)]  # with Host, Authorization and the last one: 64
    status, _, body = request(server.port, get(*pad, "X-Last: 1"))
    assert status == 200 and b"ironpost_build_info" in body
    with RawClient(server.port) as c:
        c.send(get(*pad, "X-Last: 1", "X-One-Too-Many: 1"))
        status, headers, _ = c.response()
        assert status == HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE and headers["connection"] == "close"
        assert c.closed_by_peer(within=3)
    assert parse(get(*pad, "X-Last: 1")) is not None
    with pytest.raises(HeadError, match="more than 64 headers"):
        parse(get(*pad, "X-Last: 1", "X-One-Too-Many: 1"))


def test_1000_headers_are_refused_and_the_connection_closed(server: MetricsServer) -> None:
    with RawClient(server.port) as c:
        c.send(get(*(f"X-H{i}: v" for i in range(1000))))
        assert c.response()[0] == 431
        assert c.closed_by_peer(within=3)


def test_a_header_line_of_8_KiB_passes_one_byte_more_is_refused(server: MetricsServer) -> None:
    line = "X-Pad: " + "a" * (8192 - len("X-Pad: "))
    assert len(line) == 8192
    assert request(server.port, get(line))[0] == 200
    assert request(server.port, get(line + "a"))[0] == 431
    # The request line: 8192 bytes get an answer (404: no such path), 8193 get 414.
    target = "/" + "x" * (8192 - len("GET / HTTP/1.1"))
    assert len(f"GET {target} HTTP/1.1") == 8192
    assert request(server.port, get(target=target))[0] == 404
    assert request(server.port, get(target=target + "x"))[0] == 414


def test_the_whole_head_is_capped_at_64_KiB(server: MetricsServer) -> None:
    big = "X-Pad-{}: " + "a" * 7000
    assert request(server.port, get(*(big.format(i) for i in range(8))))[0] == 200  # 56 KiB
    assert request(server.port, get(*(big.format(i) for i in range(10))))[0] == 431  # 70 KiB


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (GET + b" X-Folded: continued\r\n\r\n", 400),  # obsolete line folding
        (GET + b"No colon here\r\n\r\n", 400),
        (GET + b"Space-Before-Colon : x\r\n\r\n", 400),
        (GET + b"X-Nul: a\0b\r\n\r\n", 400),
        (GET + b"X-Cr: a\rb\r\n\r\n", 400),
        (b"\x16\x03\x01\x02\x00garbage\r\n\r\n", 400),
        (b"GET /metrics HTTP/2.0\r\n\r\n", 505),
        (b"GET metrics HTTP/1.1\r\n\r\n", 400),
        (b"POST /metrics HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc", 405),
        (GET + b"Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        (GET + b"Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd", 400),
        (GET + b"Content-Length: -1\r\n\r\n", 400),
    ],
)
def test_malformed_heads_get_their_status_and_a_close(server: MetricsServer, raw: bytes, status: int) -> None:
    with RawClient(server.port) as c:
        c.send(raw)
        got, headers, _ = c.response()
        assert (got, headers.get("connection")) == (status, "close")
        assert c.closed_by_peer(within=3)


# --------------------------------------------------------------------------- #
# the request deadline


def dribble(c: RawClient, data: bytes, every: float) -> None:
    for i in range(len(data)):
        c.send(data[i : i + 1])
        time.sleep(every)


def test_a_request_must_arrive_whole_within_the_deadline() -> None:
    srv = make_server(request_deadline=1.5)
    try:
        # Inside: 20 bytes over ~0.5 s, then the rest at once.
        with RawClient(srv.port) as c:
            dribble(c, b"GET /metrics HTTP/1.1", 0.025)
            c.send(b"\r\nHost: x\r\n\r\n")
            assert c.response()[0] == 200
            # Kept alive: the next request gets its own deadline from its first byte, however long
            # the connection was idle before it.
            time.sleep(2.0)
            c.send(b"GET /healthz HTTP/1.1\r\n\r\n")
            assert c.response()[0] == 200
            # Outside: a byte every 0.2 s never ends; the server answers 408 and closes by the deadline.
            t0 = time.monotonic()
            stop = threading.Event()
            feeder = threading.Thread(target=lambda: [stop.wait(0.2) or c.send(b"X") for _ in range(30)])
            c.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
            feeder.start()
            try:
                status, headers, _ = c.response()
                assert status == 408 and headers["connection"] == "close"
                assert c.closed_by_peer(within=2)
            finally:
                stop.set()
                feeder.join()
            assert 1.3 < time.monotonic() - t0 < 3.5
    finally:
        srv.stop()


def test_a_tls_port_closes_a_connection_that_never_says_hello(tmp_path: Path) -> None:
    srv = make_server(tls=True, tmp_path=tmp_path, request_deadline=1.0)
    try:
        with RawClient(srv.port) as c:
            t0 = time.monotonic()
            assert c.closed_by_peer(within=4)
            assert 0.8 < time.monotonic() - t0 < 3
        with RawClient(srv.port) as c:  # negative control: plain HTTP at once is answered, not timed out
            c.send(b"GET /metrics HTTP/1.1\r\n\r\n")
            assert b"HTTP request to an HTTPS server" in c.sock.recv(4096)
    finally:
        srv.stop()


# --------------------------------------------------------------------------- #
# connections per source and in total


def held(port: int, source: str) -> RawClient:
    """A connection that is served (its first request answered) and stays open, idle."""
    c = RawClient(port, source)
    c.send(b"GET /healthz HTTP/1.1\r\n\r\n")
    assert c.response()[0] == 200
    return c


def refused(port: int, source: str) -> bool:
    """Whether a new connection from ``source`` is reset without an answer (the reset may come before
    connect() returns: on a loaded machine the server accepts and resets first)."""
    try:
        with RawClient(port, source, timeout=3) as c:
            c.send(b"GET /healthz HTTP/1.1\r\n\r\n")
            return c.sock.recv(4096) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True


def test_connections_are_capped_per_source_and_in_total_without_a_thread_each() -> None:
    srv = make_server(max_per_source=3, max_connections=5)
    clients: list[RawClient] = []
    try:
        threads = threading.active_count()
        clients += [held(srv.port, "127.0.0.2") for _ in range(3)]
        assert refused(srv.port, "127.0.0.2")  # a 4th from the same source
        clients += [held(srv.port, "127.0.0.3") for _ in range(2)]  # another source is served
        assert srv.caps.open == 5
        assert refused(srv.port, "127.0.0.4")  # 5 in all: a third source is refused too
        assert threading.active_count() == threads  # five open connections, no thread for any
        clients.pop(0).close()
        wait_until("a slot freed", lambda: srv.caps.open == 4, timeout=5, every=0.05)
        clients.append(held(srv.port, "127.0.0.4"))  # ... until one closes
        assert srv.caps.from_source("127.0.0.2") == 2
    finally:
        for c in clients:
            c.close()
        srv.stop()


def test_connection_caps_count_and_release() -> None:
    caps = ConnectionCaps(total=3, per_source=2)
    assert caps.admit("a") is None and caps.admit("a") is None
    assert caps.admit("a") is Refusal.SOURCE
    assert caps.admit("b") is None
    assert caps.admit("c") is Refusal.TOTAL and caps.open == 3
    caps.release("a")
    assert caps.admit("c") is None and caps.from_source("a") == 1
    caps.release("zzz")  # never admitted: nothing changes
    assert caps.open == 3


def test_an_ipv6_source_is_its_64_and_mapped_ipv4_is_ipv4() -> None:
    assert source_of("2001:db8:1:2::7") == source_of("2001:db8:1:2:ffff::1") == "2001:db8:1:2::/64"
    assert source_of("2001:db8:1:3::7") != source_of("2001:db8:1:2::7")
    assert source_of("::ffff:198.18.0.2") == source_of("198.18.0.2") == "198.18.0.2"
    assert source_of("198.18.0.3") != "198.18.0.2"


# --------------------------------------------------------------------------- #
# bodies on GET


def test_a_body_on_get_is_drained_never_read_as_a_second_request(server: MetricsServer) -> None:
    smuggled = b"GET /nothing HTTP/1.1\r\nHost: x\r\n\r\n"
    with RawClient(server.port) as c:
        c.send(get(f"Content-Length: {len(smuggled)}") + smuggled)
        status, _, body = c.response()
        assert status == 200 and b"ironpost_build_info" in body
        c.send(get(target="/healthz"))  # the next answer is this request's, not a 404 for /nothing
        assert c.response()[:3:2] == (200, b"ok\n")


def test_a_body_over_64_KiB_is_refused_and_a_chunked_one_closes(server: MetricsServer) -> None:
    with RawClient(server.port) as c:
        c.send(get(f"Content-Length: {64 * 1024}") + b"a" * (64 * 1024))  # the most a GET may carry
        assert c.response()[0] == 200
        c.send(get(f"Content-Length: {64 * 1024 + 1}"))
        status, headers, _ = c.response()
        assert (status, headers["connection"]) == (413, "close")
        assert c.closed_by_peer(within=4)
    with RawClient(server.port) as c:
        c.send(get("Transfer-Encoding: chunked") + b"5\r\nGET /\r\n0\r\n\r\n")
        status, headers, _ = c.response()
        assert (status, headers["connection"]) == (200, "close")  # answered, then closed: the body is never parsed
        assert c.closed_by_peer(within=4)


# --------------------------------------------------------------------------- #
# Authorization


@pytest.mark.parametrize(
    "value",
    [
        "Basic \xe9\xff\xfe",  # not ASCII
        "Basic !!!notbase64",
        "Basic " + "QUJD" * 300,  # over 1 KiB
        "Basic bm9jb2xvbg==",  # "nocolon"
        "Bearer abc",
        "Basic",
        basic("prometheus", "x" * 73),  # past bcrypt's 72 bytes
        "Basic " + "/w==",  # decodes to \xff: not UTF-8
    ],
)
def test_malformed_authorization_values(value: str) -> None:
    assert parse_basic(value) is Verdict.MALFORMED


def test_well_formed_authorization_values() -> None:
    assert parse_basic(None) is Verdict.MISSING
    assert parse_basic(basic("u", "a:b")) == Credentials("u", "a:b")
    assert parse_basic("basic  " + basic("u", "").split()[1] + " ") == Credentials("u", "")
    assert parse_basic(basic("prometheus", "x" * 72)) == Credentials("prometheus", "x" * 72)


def test_malformed_authorization_gets_401_without_bcrypt_and_counts_no_failure(
    server: MetricsServer, bcrypt_calls: list[bytes]
) -> None:
    bad = [b"Authorization: Basic \xc3\xa9\xff\xfe", b"Authorization: Basic !!!", b"Authorization: Basic bm9jb2xvbg==",
           b"Authorization: Basic " + b"QUJD" * 1000, b"Authorization: Bearer x"]  # fmt: skip
    for _ in range(5):  # 25 malformed: more than the burst of failures
        for line in bad:
            status, headers, _ = request(server.port, GET + line + b"\r\n\r\n", source="127.0.0.5")
            assert status == 401 and headers["www-authenticate"] == 'Basic realm="ironpost"'
    dup = GET + f"Authorization: {basic('prometheus', PASSWORD)}\r\n".encode() * 2 + b"\r\n"
    assert request(server.port, dup, source="127.0.0.5")[0] == 401  # two of them: malformed too
    assert bcrypt_calls == []
    assert request(server.port, get(), source="127.0.0.5")[0] == 200  # not limited: the right password works
    assert len(bcrypt_calls) == 1


def test_failed_logins_are_limited_per_source(users: dict[str, str], bcrypt_calls: list[bytes]) -> None:
    srv = make_server(users, login_burst=3, login_refill_secs=2.0)
    try:
        wrong = GET + f"Authorization: {basic('prometheus', 'guess')}\r\n\r\n".encode()
        assert [request(srv.port, wrong, "127.0.0.6")[0] for _ in range(3)] == [401] * 3
        assert len(bcrypt_calls) == 3
        status, headers, _ = request(srv.port, wrong, "127.0.0.6")
        assert (status, headers["retry-after"]) == (429, "2")
        assert request(srv.port, get(), "127.0.0.6")[0] == 429  # the right password too, while limited
        assert len(bcrypt_calls) == 3  # neither ran bcrypt
        assert request(srv.port, get(), "127.0.0.7")[0] == 200  # another source is not limited
        assert len(bcrypt_calls) == 4
        wait_until("the limit lifts", lambda: not srv.guard.limited("127.0.0.6"), timeout=5, every=0.1)  # type: ignore[union-attr]
        assert request(srv.port, get(), "127.0.0.6")[0] == 200  # only while limited
    finally:
        srv.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def guard(users: dict[str, str], clock: Clock, **kw: float) -> LoginGuard:
    auth = web_config.BasicAuth({u: h.encode() for u, h in users.items()})
    return LoginGuard(auth, clock=clock, **kw)  # type: ignore[arg-type]


def login(g: LoginGuard, source: str, password: str, user: str = "prometheus") -> Verdict:
    creds = Credentials(user, password)
    verdict = g.admit(source, creds)
    return g.verify(source, creds) if verdict is Verdict.CHECK else verdict


def test_the_login_guard(users: dict[str, str], bcrypt_calls: list[bytes]) -> None:
    clock = Clock()
    g = guard(users, clock, burst=3, refill_secs=10.0, cache_ttl=60.0)
    assert [login(g, "a", "guess") for _ in range(3)] == [Verdict.WRONG] * 3
    assert login(g, "a", "guess") is Verdict.LIMITED and len(bcrypt_calls) == 3
    assert login(g, "a", PASSWORD) is Verdict.LIMITED and len(bcrypt_calls) == 3
    assert login(g, "b", PASSWORD) is Verdict.OK and len(bcrypt_calls) == 4
    assert login(g, "b", PASSWORD) is Verdict.OK and len(bcrypt_calls) == 4  # remembered
    assert login(g, "b", "guess") is Verdict.WRONG and login(g, "b", "guess") is Verdict.WRONG
    assert len(bcrypt_calls) == 6  # a failure is never remembered: the same guess pays again
    clock.now += 10  # one token back for "a"
    assert login(g, "a", PASSWORD) is Verdict.OK and len(bcrypt_calls) == 6  # remembered from "b"
    assert login(g, "a", "guess") is Verdict.WRONG and login(g, "a", "guess") is Verdict.LIMITED
    # Remembered for cache_ttl after the last use, then bcrypt again.
    clock.now += 59
    assert login(g, "b", PASSWORD) is Verdict.OK and len(bcrypt_calls) == 7  # 59 s: still there
    clock.now += 61
    assert login(g, "b", PASSWORD) is Verdict.OK and len(bcrypt_calls) == 8
    assert g.cached == 1


def test_checks_sent_at_once_cannot_pass_the_allowance(users: dict[str, str]) -> None:
    g = guard(users, Clock(), burst=3, queue=100)
    creds = Credentials("prometheus", "guess")
    assert [g.admit("a", creds) for _ in range(4)] == [Verdict.CHECK] * 3 + [Verdict.LIMITED]
    g2 = guard(users, Clock(), burst=3, queue=1)
    assert g2.admit("a", creds) is Verdict.CHECK
    assert g2.admit("b", creds) is Verdict.BUSY  # one check waiting is the most
    assert g2.verify("a", creds) is Verdict.WRONG
    assert g2.admit("b", creds) is Verdict.CHECK  # and the BUSY cost "b" nothing


def test_successes_are_remembered_under_a_key_of_this_process(users: dict[str, str]) -> None:
    creds = Credentials("prometheus", PASSWORD)
    one, two = guard(users, Clock()), guard(users, Clock())
    assert one._digest(creds) != two._digest(creds)  # an HMAC under a random key, not a plain hash
    assert one._digest(creds) == one._digest(creds)
    assert one._digest(Credentials("prometheus:", "s3cret")) != one._digest(Credentials("prometheus", ":s3cret"))


# --------------------------------------------------------------------------- #
# what is logged


def test_client_faults_are_debug_lines_without_traceback(
    server: MetricsServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ironpost.http")
    with RawClient(server.port) as c:  # gone in the middle of the head
        c.send(b"GET /metrics HTTP/1.1\r\nHost: a")
    with RawClient(server.port) as c:  # gone in the middle of a body
        c.send(get("Content-Length: 100") + b"abc")
    with RawClient(server.port) as c:  # gone before reading the answer
        c.send(get())
    request(server.port, GET + b"Authorization: Basic \xff\xfe\r\n\r\n")  # the fault the issue found
    request(server.port, get(*(f"X-{i}: v" for i in range(100))))
    wait_until("the server saw them", lambda: sum("in the middle" in r.getMessage() for r in caplog.records) >= 2,
               timeout=5, every=0.05)  # fmt: skip
    records = [r for r in caplog.records if r.name == "ironpost.http"]
    assert records and all(r.levelno == logging.DEBUG for r in records), [r.getMessage() for r in records]
    assert not any(r.exc_info for r in records)
    assert "Traceback" not in caplog.text
    assert any("401" in r.getMessage() for r in records)


def test_refusals_are_a_warning_a_minute_with_counts(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    notices = Notices(logging.getLogger("ironpost.http"), every=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="ironpost.http"):
        for _ in range(50):
            notices.count(Refusal.SOURCE, "198.18.0.2")
        notices.count(Refusal.SOURCE, "198.18.0.3")
        assert len(caplog.records) == 1  # the first at once, the rest counted
        clock.now += 61
        notices.count(Refusal.SOURCE, "198.18.0.2")
        notices.count(Refusal.LOGINS, "198.18.0.9")  # another kind has its own minute
    lines = [r.getMessage() for r in caplog.records]
    assert lines == [
        "metrics endpoint: connections refused over the per-source cap: 1 (from 198.18.0.2)",
        "metrics endpoint: connections refused over the per-source cap: 51 in the last 60 s (50 from 198.18.0.2, "
        "2 sources)",
        "metrics endpoint: logins refused (429) after too many failures: 1 (from 198.18.0.9)",
    ]


def test_refusals_from_ever_new_sources_are_counted_in_bounded_memory(caplog: pytest.LogCaptureFixture) -> None:
    """100,000 refusals from as many sources within one minute: the first 1,024 sources are counted apart, the rest
    together (each new source used to hold an entry until the minute's line); the line still counts them all."""
    from ironpost_tui.metrics.http import limits

    clock = Clock()
    notices = Notices(logging.getLogger("ironpost.http"), every=60.0, clock=clock)
    with caplog.at_level(logging.WARNING, logger="ironpost.http"):
        notices.count(Refusal.TOTAL, "198.18.0.1")  # said at once; the minute starts
        for i in range(100_000):
            notices.count(Refusal.TOTAL, f"2001:db8:{i >> 16:x}:{i & 0xFFFF:x}::")
        assert len(notices._counts[Refusal.TOTAL]) == limits.NOTICE_SOURCES  # bounded
        clock.now += 61
        notices.count(Refusal.TOTAL, "198.18.0.1")
    assert [r.getMessage() for r in caplog.records][-1] == (
        "metrics endpoint: connections refused over the total cap: 100001 in the last 60 s "
        "(1 from 2001:db8:0:0::, over 1,024 sources)"
    )


def test_stop_does_not_wait_for_clients() -> None:
    srv = make_server()
    slow, idle = RawClient(srv.port, "127.0.0.8"), held(srv.port, "127.0.0.9")
    try:
        slow.send(b"GET /metrics HTTP/1.1\r\nX-Slow: ")
        wait_until("both connected", lambda: srv.caps.open == 2, timeout=5, every=0.05)
        t0 = time.monotonic()
        srv.stop()
        assert time.monotonic() - t0 < 2
        assert port_closed(srv.port)
        assert slow.closed_by_peer(within=2) and idle.closed_by_peer(within=2)
    finally:
        slow.close()
        idle.close()
        srv.stop()
