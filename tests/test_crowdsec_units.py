"""The CrowdSec pieces without a LAPI: the metrics from a snapshot (a fresh registry), the status bar's
LAPI part, the alert pushed for a detector's alert, and the sensor's guards (many sources, protected /
infrastructure, caps) as auto-block's."""

from __future__ import annotations

import contextlib
import gzip
import http.server
import ipaddress
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.detectors.alerts import MANY_SOURCES, Alert
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector
from ironpost_tui.engine.crowdsec import lapi as lapi_mod
from ironpost_tui.engine.crowdsec.alert_payload import payload
from ironpost_tui.engine.crowdsec.lapi import LapiClient, LapiError
from ironpost_tui.engine.crowdsec.sensor import Sensor
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus, LapiState
from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.metrics.collector import EngineCollector
from ironpost_tui.rules.infrastructure import InfraAddress
from ironpost_tui.ui.widgets.status_bar import StatusView, render_status

STATUS = CrowdSecStatus(LapiState.UP, 1234, 1_000.0, {"ok": 7, "error": 2}, 1, 0)


def test_metrics() -> None:
    registry = CollectorRegistry()
    registry.register(EngineCollector(lambda: EngineSnapshot(at=1.0, iface="x", mode="native", attached=True,
                                                             crowdsec=STATUS)))  # fmt: skip
    assert registry.get_sample_value("ironpost_crowdsec_decisions") == 1234
    assert registry.get_sample_value("ironpost_crowdsec_pulls_total", {"result": "ok"}) == 7
    assert registry.get_sample_value("ironpost_crowdsec_pulls_total", {"result": "error"}) == 2
    assert registry.get_sample_value("ironpost_crowdsec_last_pull_timestamp_seconds") == 1_000.0
    assert registry.get_sample_value("ironpost_crowdsec_protected_skipped_total") == 1
    none = CollectorRegistry()  # no [crowdsec]: no series
    none.register(EngineCollector(lambda: EngineSnapshot(at=1.0, iface="x", mode="native", attached=True)))
    assert none.get_sample_value("ironpost_crowdsec_decisions") is None


def test_status_bar() -> None:
    up = render_status(StatusView(title="live", iface="eth0", attached=True, crowdsec=STATUS, now=1_005.0)).plain
    assert "lapi up 1,234 · 5s ago" in up
    down = CrowdSecStatus(LapiState.DOWN, 3, None, {}, 0, 0)
    assert "lapi down 3 · never pulled" in render_status(StatusView(title="live", crowdsec=down)).plain
    assert "lapi" not in render_status(StatusView(title="live")).plain


def _alert(source: str, detector: Detector = Detector.PORT_SCAN) -> Alert:
    now = time.time()
    return Alert(1, detector, "medium", source, "198.18.0.1", 150, 150, 10.0, now - 3, now, "scan",
                 targets=("198.18.0.1",))  # fmt: skip


def test_payload() -> None:
    p = payload(_alert("198.18.0.2"), 600, "host-a")
    assert p["scenario"] == "ironpost/port_scan" and p["source"] == {"scope": "Ip", "value": "198.18.0.2",
                                                                      "ip": "198.18.0.2"}  # fmt: skip
    meta = {m["key"]: m["value"] for m in p["events"][0]["meta"]}
    assert meta["source_ip"] == "198.18.0.2" and meta["targets"] == "198.18.0.1" and meta["count"] == "150"
    assert meta["window_secs"] == "10"
    assert p["decisions"] == [{"duration": "600s", "origin": "ironpost", "scenario": "ironpost/port_scan",
                               "scope": "Ip", "type": "ban", "value": "198.18.0.2"}]  # fmt: skip


def _sensor(limits: AutoBlockLimits) -> Sensor:
    infra = InfraAddress(ipaddress.ip_network("198.18.9.9/32"), "a gateway")
    settings = CrowdSecSettings(lapi_url="http://127.0.0.1:9/")
    client = LapiClient(settings, "key")
    return Sensor(settings, client, ("m", "p"), limits, lambda a, _now: infra if a == "198.18.9.9" else None)


def test_sensor_guards() -> None:
    sensor = _sensor(AutoBlockLimits(max_blocks_per_minute=2, max_auto_blocks=10, max_incident_sources=50))
    sensor.offer([_alert(MANY_SOURCES, Detector.SYN_FLOOD)], 0.0)  # a spoofed flood: nothing
    sensor.offer([_alert("198.18.9.9")], 0.0)  # infrastructure: nothing
    assert sensor._queue.qsize() == 0
    sensor.offer([_alert(f"198.18.1.{i}") for i in range(5)], 1.0)  # the per-minute cap holds
    assert sensor._queue.qsize() == 2


class _Lapi(http.server.BaseHTTPRequestHandler):
    """A hostile LAPI: announces a huge body, sends one too big, or drips one."""

    mode = "ok"

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        if self.mode.startswith("headers"):  # the status line, then a header a byte at a time
            self._drip_headers(4000 if self.mode == "headers" else 8)
            return
        self.send_response(200)
        if self.mode == "announced":
            self.send_header("Content-Length", str(lapi_mod.MAX_BODY + 1))
            self.end_headers()
            return
        body = b'{"new": [], "deleted": null}'
        if self.mode == "empties":  # what would be 90 million dicts at MAX_BODY, if kept
            body = b'{"new": [' + b",".join([b"{}"] * 5000) + b'], "other": [' + b",".join([b"{}"] * 5000) + b"]}"
        if self.mode == "nested":  # one element that would be a list of lists
            body = b'{"new": [[' + b",".join([b"[]"] * 5000) + b"]]}"
        if self.mode == "long":  # one flat element longer than any decision
            body = b'{"new": [{"value": "' + b"x" * 20_000 + b'"}]}'
        if self.mode == "gzip":  # compressed, though identity was asked for: a bomb could hide in it
            body = gzip.compress(body)
            self.send_header("Content-Encoding", "gzip")
        if self.mode in ("huge", "drip"):
            body = b'{"new": [' + b" " * (4096 if self.mode == "huge" else 640) + b"]}"
        if self.mode == "latin-1":  # not UTF-8, and the bad byte past the first of the 64-byte writes
            body = b'{"new": [], "deleted": null, "padding": "' + b"p" * 80 + b'\xe9"}'
        if self.mode == "utf-8":  # a multi-byte character across two writes
            body = b'{"new": [], "deleted": null, "p": "' + b"p" * 27 + "\u20ac".encode() + b'"}'
        if self.mode != "huge":  # huge: no length said, the body runs to the connection's end
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        for i in range(0, len(body), 64):
            self.wfile.write(body[i : i + 64])
            self.wfile.flush()
            if self.mode == "drip":
                time.sleep(0.05)

    def _drip_headers(self, n: int) -> None:
        """``n`` bytes of one header, 20 a second: each read well within the timeout, the whole as long as
        ``n`` says; then a decision stream's empty body."""
        body = b'{"new": [], "deleted": null}'
        try:
            self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
            for _ in range(n):
                self.wfile.write(b"a")
                self.wfile.flush()
                time.sleep(0.05)
            self.wfile.write(b"\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        except OSError:
            pass  # the client ended the call

    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path.endswith("/alerts"):  # a 401 that announces a huge body: the status still counts
            self.send_response(401)
            self.send_header("Content-Length", str(lapi_mod.MAX_ANSWER + 1))
            self.end_headers()
            return
        self.send_response(200)  # the login, answering with a body past its limit
        self.end_headers()
        self.wfile.write(b'{"token": "' + b"t" * (lapi_mod.MAX_ANSWER + 10) + b'"}')

    def log_message(self, *_args: object) -> None:
        pass


@pytest.fixture
def hostile_lapi() -> Iterator[tuple[CrowdSecSettings, LapiClient]]:
    """A _Lapi on a free loopback port and a client of it; both closed afterwards."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Lapi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = CrowdSecSettings(lapi_url=f"http://127.0.0.1:{server.server_address[1]}/", timeout=2.0)
    client = LapiClient(settings, "key")
    try:
        yield settings, client
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_a_hostile_lapi_body_is_read_without_holding_what_it_holds(
    hostile_lapi: tuple[CrowdSecSettings, LapiClient],
) -> None:
    """The stream's entries are judged as they are decoded and only decisions are kept: 5,000 ``{}`` cost
    nothing after their turn; an element that is not a flat object of at most 16 KiB (a decision is a few
    hundred bytes) fails the pull before it is decoded; a login answer is bounded as the stream is."""
    from ironpost_tui.engine.crowdsec.decisions import StreamParse

    settings, client = hostile_lapi
    _Lapi.mode = "empties"
    assert len(client.stream(True)["new"]) == 5000  # the control: read whole, every element is held
    parse = StreamParse(settings)
    body = client.stream(True, parse.element)
    assert body == {"new": [], "other": []}
    assert (parse.malformed, parse.delta(body).new) == (5000, ())
    for mode in ("nested", "long"):
        _Lapi.mode = mode
        with pytest.raises(LapiError, match="not a flat object of at most 16384 bytes"):
            client.stream(True, StreamParse(settings).element)
        assert client.stream(True) is not None  # the control: without the judge, json reads it
    with pytest.raises(LapiError, match=f"login: more than {lapi_mod.MAX_ANSWER} bytes"):
        client.login("m", "p")
    assert not client.logged_in
    client._token = "stale"
    with pytest.raises(LapiError, match="HTTP 401") as err:
        client.push_alerts([])
    assert err.value.status == 401 and not client.logged_in  # the token forgotten: log in again
    _Lapi.mode = "gzip"
    with pytest.raises(LapiError, match="a body in 'gzip', which was not asked for"):
        client.stream(True)


@pytest.mark.parametrize(
    "shape",
    [
        '{"new": [%s]}',  # the entries themselves: judged one at a time, nothing kept
        "[%s]",  # not an object
        '{"x": {"a": [%s]}}',  # a nested value under another key
        '{"new": {"a": [%s]}}',  # under the stream's own key, not as its list
        '{"new": [[%s]]}',  # in one element
    ],
)
def test_no_hostile_body_shape_is_decoded_whole(shape: str) -> None:
    """What the hooked parse may decode at once is bounded whatever the body's shape: 1.5 MB of ``{}`` would be
    some 36 MB of objects decoded whole (the control, json.loads); read for the bouncer it stays under 1 MB."""
    bounded(shape % ",".join(["{}"] * 500_000))


@pytest.mark.parametrize("value", ["0", "[]", '"x"'])
def test_a_body_of_many_keys_is_refused_before_it_holds_them(value: str) -> None:
    """500,000 top-level keys, each with a scalar or an empty list: every one was kept in the parsed object (some
    60 MB for 6 MB of body, a gigabyte or more at the 256 MiB limit, every pull; until session 26, an attacker's
    review).  The stream has two keys: past MAX_KEYS the body is refused."""
    from ironpost_tui.engine.crowdsec import stream_json

    bounded("{" + ",".join(f'"k{i}": {value}' for i in range(500_000)) + "}")
    few = "{" + ",".join(f'"k{i}": {value}' for i in range(stream_json.MAX_KEYS)) + ', "new": []}'
    with pytest.raises(ValueError, match=f"more than {stream_json.MAX_KEYS} keys"):
        stream_json.loads(few, lambda _key, _value: stream_json.SKIP)
    assert len(stream_json.loads(few)) == stream_json.MAX_KEYS + 1  # the control: json's own reading keeps them


def bounded(text: str) -> None:
    """The hooked parse of ``text`` holds under 1 MB where json.loads holds over 20 MB (its control)."""
    import json
    import tracemalloc

    from ironpost_tui.engine.crowdsec import stream_json
    from ironpost_tui.engine.crowdsec.decisions import StreamParse

    tracemalloc.start()
    try:
        json.loads(text)
        whole = tracemalloc.get_traced_memory()[1]
        tracemalloc.reset_peak()
        parse = StreamParse(CrowdSecSettings())
        try:
            parse.delta(stream_json.loads(text, parse.element))
        except ValueError:
            pass  # refused: the point is what it held before
        hooked = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert whole > 20_000_000, whole
    assert hooked < 1_000_000, hooked


def test_the_stream_is_decoded_a_chunk_at_a_time() -> None:
    """The stream's text decoded chunk by chunk (a 13 MB body joined, then decoded, held the interpreter 17 ms
    with the engine's tick waiting): every split of multi-byte characters decodes as the whole does, a byte that
    is no UTF-8 or a character cut short at the end is an error, and the chunks are let go as they are read."""
    from ironpost_tui.engine.crowdsec.lapi import utf8_text

    text = '{"new": [{"scenario": "caf\u00e9 \u20ac \U0001d11e"}]}'
    raw = text.encode()
    for cut in range(1, len(raw)):  # every split, inside each multi-byte character too
        chunks = [raw[:cut], raw[cut:]]
        assert utf8_text(chunks) == text and chunks == []
    for bad in ([b'{"a": "\xc3', b'("}'], [b'{"a": "\xe2\x82']):
        with pytest.raises(UnicodeDecodeError):
            utf8_text(bad)


def test_a_lapi_body_not_in_utf8_is_one_error(hostile_lapi: tuple[CrowdSecSettings, LapiClient]) -> None:
    _settings, client = hostile_lapi
    _Lapi.mode = "utf-8"
    assert client.stream(True)["p"].endswith("\u20ac")  # the control: a character across two writes
    _Lapi.mode = "latin-1"
    with pytest.raises(LapiError, match="decision stream: the body is not what it should be: 'utf-8' codec"):
        client.stream(True)


def test_a_hostile_lapi_body_is_refused_by_size_and_deadline(
    monkeypatch: pytest.MonkeyPatch, hostile_lapi: tuple[CrowdSecSettings, LapiClient]
) -> None:
    _settings, client = hostile_lapi
    _Lapi.mode = "ok"
    assert client.stream(True) == {"new": [], "deleted": None}  # the control
    _Lapi.mode = "announced"
    with pytest.raises(LapiError, match="announced"):
        client.stream(True)
    monkeypatch.setattr(lapi_mod, "MAX_BODY", 1024)
    _Lapi.mode = "huge"
    with pytest.raises(LapiError, match="more than 1024 bytes"):
        client.stream(True)
    monkeypatch.setattr(lapi_mod, "MAX_BODY", 1 << 20)
    monkeypatch.setattr(lapi_mod, "STREAM_DEADLINE", 0.2)
    _Lapi.mode = "drip"  # each read well within the timeout, the whole far past the deadline
    with pytest.raises(LapiError, match="not whole after"):
        client.stream(True)


def test_a_lapi_that_drips_its_headers_is_ended_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, hostile_lapi: tuple[CrowdSecSettings, LapiClient]
) -> None:
    """httpx's timeout is per read: headers sent a byte every 50 ms (a 2 s timeout) would hold a pull for
    200 s; the call's deadline ends it, for the stream and for the sensor's login alike."""
    _settings, client = hostile_lapi
    _Lapi.mode = "headers-short"
    assert client.stream(True) == {"new": [], "deleted": None}  # the control: a slow header, whole in time
    monkeypatch.setattr(lapi_mod, "STREAM_DEADLINE", 0.5)
    _Lapi.mode = "headers"
    start = time.monotonic()
    with pytest.raises(LapiError, match="decision stream: not whole after 0.5 s"):
        client.stream(True)
    assert time.monotonic() - start < 10  # the drip's 200 s, ended at the deadline (not a figure: a bound)
    _Lapi.mode = "headers-short"
    assert client.stream(True) == {"new": [], "deleted": None}  # the client still works after an ended call


def test_a_tls_lapi_that_drips_its_headers_is_ended_at_the_deadline(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same over TLS, each header byte a record of its own: the deadline shuts the connection under the TLS
    socket the call reads.  (The handshake needs no deadline of ours: Python's ssl holds the whole handshake to
    the socket's timeout, the call's 2 s here.)  The control: a short drip, read whole."""
    import ssl

    from support.metrics_lab import self_signed

    cert, key = self_signed(tmp_path)
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(cert, key)

    class _Tls(http.server.ThreadingHTTPServer):
        def get_request(self) -> tuple[Any, Any]:  # the handshake in the handler's thread, not the server's
            sock, addr = self.socket.accept()
            return ctx.wrap_socket(sock, server_side=True, do_handshake_on_connect=False), addr

    server = _Tls(("127.0.0.1", 0), _Lapi)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    settings = CrowdSecSettings(lapi_url=f"https://localhost:{server.server_address[1]}/", ca_file=cert, timeout=2.0)
    client = LapiClient(settings, "key")
    try:
        _Lapi.mode = "headers-short"
        assert client.stream(True) == {"new": [], "deleted": None}
        monkeypatch.setattr(lapi_mod, "STREAM_DEADLINE", 0.5)
        _Lapi.mode = "headers"
        start = time.monotonic()
        with pytest.raises(LapiError, match="decision stream: not whole after 0.5 s"):
            client.stream(True)
        assert time.monotonic() - start < 10
    finally:
        client.close()
        server.shutdown()
        server.server_close()


def test_the_environments_proxy_never_sees_the_bouncer_key(
    monkeypatch: pytest.MonkeyPatch, hostile_lapi: tuple[CrowdSecSettings, LapiClient]
) -> None:
    """HTTP_PROXY (which sudo's pam_env or a unit file can set) would carry the key sent in clear to 127.0.0.1
    to another host: the client ignores the environment.  The control: an httpx client that trusts it does go
    through the proxy."""
    import socket

    import httpx

    settings, _client = hostile_lapi
    proxy = socket.create_server(("127.0.0.1", 0))
    proxy.settimeout(0.5)
    seen: list[bytes] = []

    def listen() -> None:
        try:
            conn, _ = proxy.accept()
            seen.append(conn.recv(4096))
            conn.close()
        except OSError:
            pass

    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.setenv("http_proxy", f"http://127.0.0.1:{proxy.getsockname()[1]}")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    _Lapi.mode = "ok"
    try:
        t = threading.Thread(target=listen)
        t.start()
        with httpx.Client(timeout=1.0) as trusting, contextlib.suppress(httpx.HTTPError):
            trusting.get(settings.url + "v1/decisions/stream", headers={"X-Api-Key": "SECRET"})
        t.join()
        assert seen and b"SECRET" in seen[0]  # the control: the environment's proxy got the key
        seen.clear()
        t = threading.Thread(target=listen)
        t.start()
        client = LapiClient(settings, "SECRET")  # made with the proxy in the environment
        try:
            assert client.stream(True) == {"new": [], "deleted": None}  # straight to the LAPI
        finally:
            client.close()
        t.join()
        assert seen == []
    finally:
        proxy.close()


def test_a_ca_file_others_can_write_is_refused(tmp_path: Path) -> None:
    """Whoever can write the LAPI's CA can be the LAPI: checked as the configuration is."""
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n")
    os.chmod(tmp_path, 0o755)
    os.chmod(ca, 0o664)
    settings = CrowdSecSettings(lapi_url="https://127.0.0.1:8443/", ca_file=ca)
    with pytest.raises(ConfigError, match="writable by its group or by others"):
        LapiClient(settings, "key")
    os.chmod(ca, 0o644)  # safe now: the next complaint is about its content, not its mode
    with pytest.raises(ConfigError, match="holds no usable CA"):
        LapiClient(settings, "key")
