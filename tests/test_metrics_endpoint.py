"""The metrics HTTP endpoint without root: a MetricsServer over a hand-made
snapshot on a free loopback port; how the command line and [metrics] decide
where it listens; the start-up line."""

from __future__ import annotations

import gzip
import logging
import socket
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from support.metrics_lab import fetch, free_port, port_closed, sample

from ironpost_tui.config.settings import MetricsSettings
from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.errors import ExitStatus, MetricsPortInUse
from ironpost_tui.metrics import endpoint as metrics_endpoint
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.metrics.server import MetricsServer

SNAP = EngineSnapshot(at=1.0, iface="eth0", mode="skb", attached=True, events_delivered=3)


@pytest.fixture
def state() -> dict[str, EngineSnapshot]:
    return {"snap": SNAP}


@pytest.fixture
def server(state: dict[str, EngineSnapshot]) -> Iterator[MetricsServer]:
    def unhealthy() -> str | None:
        return None if state["snap"].attached else "not attached"

    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: state["snap"]), unhealthy)
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def test_metrics_healthz_and_the_rest(server: MetricsServer, state: dict[str, EngineSnapshot]) -> None:
    base = f"http://127.0.0.1:{server.port}"
    status, headers, body = fetch(f"{base}/metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain; version=0.0.4")
    assert sample(body.decode(), "ironpost_events_total") == 3
    assert fetch(f"{base}/healthz")[::2] == (200, b"ok\n")
    assert fetch(f"{base}/")[0] == 200
    assert fetch(f"{base}/nothing")[0] == 404

    from dataclasses import replace

    state["snap"] = replace(SNAP, attached=False, events_delivered=4)
    assert fetch(f"{base}/healthz")[0] == 503
    assert sample(fetch(f"{base}/metrics")[2].decode(), "ironpost_events_total") == 4


def test_gzip_and_openmetrics_as_prometheus_asks(server: MetricsServer) -> None:
    status, headers, body = fetch(
        f"http://127.0.0.1:{server.port}/metrics",
        headers={
            "Accept": "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            "Accept-Encoding": "gzip",
        },  # fmt: skip
    )
    assert status == 200 and headers["Content-Encoding"] == "gzip"
    assert headers["Content-Type"].startswith("application/openmetrics-text")
    assert gzip.decompress(body).decode().endswith("# EOF\n")


def test_keep_alive_serves_several_requests_on_one_connection(server: MetricsServer) -> None:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for _ in range(3):
            conn.request("GET", "/metrics")
            resp = conn.getresponse()
            assert resp.status == 200 and b"ironpost_build_info" in resp.read()
    finally:
        conn.close()


def test_stop_releases_the_port(state: dict[str, EngineSnapshot]) -> None:
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: state["snap"]), lambda: None)
    srv.start()
    port = srv.port
    assert fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
    srv.stop()
    assert port_closed(port)
    MetricsServer("127.0.0.1", port, engine_registry(lambda: SNAP), lambda: None).stop()  # bindable again


def test_a_port_in_use_is_one_clear_error_with_its_exit_code() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(MetricsPortInUse) as err:
            MetricsServer("127.0.0.1", port, engine_registry(lambda: SNAP), lambda: None)
    assert err.value.exit_status == ExitStatus.METRICS_PORT_IN_USE == 14
    assert f"127.0.0.1:{port}" in err.value.message and "--metrics-port" in err.value.message
    assert "\n" not in err.value.message


def test_ipv6_loopback(state: dict[str, EngineSnapshot]) -> None:
    srv = MetricsServer("::1", 0, engine_registry(lambda: state["snap"]), lambda: None)
    srv.start()
    try:
        assert fetch(f"http://[::1]:{srv.port}/healthz")[0] == 200
        level, line = metrics_endpoint.describe(srv, "::1")
        assert f"http://[::1]:{srv.port}/metrics" in line and "loopback only" in line
    finally:
        srv.stop()


# --------------------------------------------------------------------------- #
# where it listens


def test_defaults_come_from_the_config_and_the_command_line_overrides_them(tmp_path: Path) -> None:
    resolve = metrics_endpoint.resolve
    default = resolve(MetricsSettings(), None)
    assert (default.enabled, default.addr, default.port, default.web_config) == (True, "127.0.0.1", 9717, None)
    cfg = MetricsSettings(enabled=True, addr="0.0.0.0", port=9200, web_config=Path("web.yml"))
    from_file = resolve(cfg, tmp_path / "ironpost.toml")
    assert (from_file.addr, from_file.port, from_file.web_config) == ("0.0.0.0", 9200, tmp_path / "web.yml")
    cli = resolve(cfg, tmp_path / "ironpost.toml", addr="127.0.0.1", port=9100, web_config_path=Path("/x.yml"))
    assert (cli.addr, cli.port, cli.web_config) == ("127.0.0.1", 9100, Path("/x.yml"))
    assert not resolve(cfg, None, no_metrics=True).enabled
    off = MetricsSettings(enabled=False)
    assert not resolve(off, None).enabled
    assert resolve(off, None, port=9100).enabled  # asking for a port on the command line turns them on


def test_the_start_up_line_says_where_and_how_to_expose_it(state: dict[str, EngineSnapshot]) -> None:
    port = free_port()
    srv = MetricsServer("127.0.0.1", port, engine_registry(lambda: SNAP), lambda: None)
    try:
        level, line = metrics_endpoint.describe(srv, "127.0.0.1")
    finally:
        srv.stop()
    assert level == logging.INFO
    assert line == (
        f"metrics on http://127.0.0.1:{port}/metrics (loopback only: use --metrics-addr 0.0.0.0 with "
        "--web-config for TLS and basic auth to expose it)"
    )
    srv = MetricsServer("0.0.0.0", 0, engine_registry(lambda: SNAP), lambda: None)
    try:
        level, line = metrics_endpoint.describe(srv, "0.0.0.0")
    finally:
        srv.stop()
    assert level == logging.WARNING and "without TLS or authentication" in line and "--web-config" in line


def test_serve_binds_first_and_closes_at_the_end(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    opts = metrics_endpoint.EndpointOptions(port=port)
    fresh = replace(SNAP, sampled=time.monotonic())  # SNAP's never sampled: stalled, as the last assertion shows
    with caplog.at_level(logging.INFO), metrics_endpoint.serve(opts, "ipx-none0", lambda: fresh) as srv:
        assert srv is not None
        assert fetch(f"http://127.0.0.1:{port}/healthz")[0] == 200
        fresh = SNAP
        assert fetch(f"http://127.0.0.1:{port}/healthz")[0] == 503
    assert port_closed(port)
    assert any(f"metrics on http://127.0.0.1:{port}/metrics" in r.getMessage() for r in caplog.records)
    with metrics_endpoint.serve(metrics_endpoint.EndpointOptions(enabled=False), "x", lambda: SNAP) as none:
        assert none is None


def test_scrapers_of_metrics_are_recorded_for_auto_block(state: dict[str, EngineSnapshot]) -> None:
    """Who scraped /metrics (authorized) is remembered, so auto-block spares the Prometheus server;
    /healthz, other paths and a request that fails basic auth record nothing."""
    from support.metrics_lab import bcrypt_hash

    from ironpost_tui.metrics import web_config
    from ironpost_tui.rules.infrastructure import RecentPeers

    web = web_config.parse({"basic_auth_users": {"prom": bcrypt_hash("pw")}}, Path("web.yml"))
    scrapers = RecentPeers()
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: state["snap"]), lambda: None, web, scrapers)
    srv.start()
    try:
        base = f"http://127.0.0.1:{srv.port}"
        assert fetch(f"{base}/metrics", auth=("prom", "wrong"))[0] == 401
        assert fetch(f"{base}/healthz", auth=("prom", "pw"))[0] == 200
        assert scrapers.recent() == []
        assert fetch(f"{base}/metrics", auth=("prom", "pw"))[0] == 200
        assert [str(n) for n in scrapers.recent()] == ["127.0.0.1/32"]
    finally:
        srv.stop()


def test_an_open_endpoint_records_no_scraper(state: dict[str, EngineSnapshot], tmp_path: Path) -> None:
    """Without basic auth or a required client certificate, anyone who reaches /metrics would make its address
    infrastructure (spared by auto-block and by CrowdSec decisions on a range holding it) with one GET: such an
    endpoint records nobody.  The control above (basic auth) records; so does a verified client certificate."""
    from support.metrics_lab import client_context, self_signed

    from ironpost_tui.metrics import web_config
    from ironpost_tui.rules.infrastructure import RecentPeers

    scrapers = RecentPeers()
    srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: state["snap"]), lambda: None, None, scrapers)
    srv.start()
    try:
        assert fetch(f"http://127.0.0.1:{srv.port}/metrics")[0] == 200
        assert scrapers.recent() == []
    finally:
        srv.stop()
    cert, key = self_signed(tmp_path)
    tls = {"cert_file": str(cert), "key_file": str(key)}
    client = client_context(cert)
    client.load_cert_chain(cert, key)  # the self-signed certificate is its own CA: a client certificate too
    vouched, recorded = {}, {}
    for name, conf in {
        "tls only": {"tls_server_config": tls},
        "client cert if given": {"tls_server_config": {**tls, "client_ca_file": str(cert),
                                                        "client_auth_type": "VerifyClientCertIfGiven"}},
        "client cert required": {"tls_server_config": {**tls, "client_ca_file": str(cert),
                                                        "client_auth_type": "RequireAndVerifyClientCert"}},
    }.items():  # fmt: skip
        web = web_config.parse(conf, tmp_path / "web.yml")
        peers = RecentPeers()
        srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: state["snap"]), lambda: None, web, peers)
        srv.start()
        try:
            assert fetch(f"https://localhost:{srv.port}/metrics", context=client)[0] == 200
            vouched[name], recorded[name] = srv.vouched, [str(n) for n in peers.recent()]
        finally:
            srv.stop()
    assert vouched == {"tls only": False, "client cert if given": False, "client cert required": True}
    assert recorded == {"tls only": [], "client cert if given": [], "client cert required": ["127.0.0.1/32"]}


def test_unhealthy_says_not_attached_and_stalled_by_the_last_samples_age() -> None:
    from dataclasses import replace

    from ironpost_tui.engine.snapshot import STALE_SECS, unhealthy

    fresh = replace(SNAP, at=1.0, sampled=1_000.0)  # the wall clock's time is not what counts
    assert unhealthy(fresh, 1_000.0 + STALE_SECS - 0.5) is None  # the control
    stalled = unhealthy(fresh, 1_000.0 + STALE_SECS + 2)
    assert stalled == f"stalled: the engine has not sampled for {STALE_SECS + 2:.0f} s"
    assert unhealthy(replace(fresh, attached=False), 1_000.0) == "not attached"
