"""The headless agent's metrics endpoint: where it listens (the config's
``[metrics]``, overridden by the command line), bound before the engine
attaches, served while the agent runs, closed when it ends.

The default port is 9717, not 9100: 9100 is node_exporter's, which most
fleets already run on every host (Prometheus keeps a list of exporters'
default ports; taking a free one is the convention).  ``--metrics-port 9100``
still works for whoever wants it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ironpost_tui.config.settings import MetricsSettings
from ironpost_tui.engine.snapshot import EngineSnapshot, unhealthy
from ironpost_tui.errors import AlreadyRunning
from ironpost_tui.kernel.host import InterfaceLock
from ironpost_tui.metrics import web_config
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.metrics.server import MetricsServer
from ironpost_tui.rules.infrastructure import RecentPeers
from ironpost_tui.triage.values import TopSnapshot

log = logging.getLogger("ironpost")


@dataclass(frozen=True)
class EndpointOptions:
    enabled: bool = True
    addr: str = "127.0.0.1"
    port: int = 9717
    web_config: Path | None = None


def resolve(
    settings: MetricsSettings,
    config_path: Path | None,
    *,
    no_metrics: bool = False,
    addr: str | None = None,
    port: int | None = None,
    web_config_path: Path | None = None,
) -> EndpointOptions:
    """The config's [metrics], with the command line's options over it.

    Giving an address, port or web config on the command line turns metrics
    on even if the file turns them off; ``--no-metrics`` turns them off.
    A relative ``web_config`` in the file is relative to the file.
    """
    path = settings.web_config
    if path is not None and not path.is_absolute() and config_path is not None:
        path = config_path.parent / path
    asked = addr is not None or port is not None or web_config_path is not None
    return EndpointOptions(
        enabled=not no_metrics and (settings.enabled or asked),
        addr=addr if addr is not None else settings.addr,
        port=port if port is not None else settings.port,
        web_config=web_config_path if web_config_path is not None else path,
    )


def url(server: MetricsServer, addr: str) -> str:
    host = f"[{addr}]" if ":" in addr else addr
    return f"{server.scheme}://{host}:{server.port}/metrics"


def describe(server: MetricsServer, addr: str) -> tuple[int, str]:
    """The start-up line (and its level): where it listens and how to expose it safely."""
    web = server.web
    where = f"metrics on {url(server, addr)}"
    users = len(web.users)
    guards = ["TLS"] if web.tls else []
    if users:
        guards.append(f"basic auth ({users} user{'s' * (users != 1)})")
    if ipaddress.ip_address(addr).is_loopback:
        if guards:
            return logging.INFO, f"{where} (loopback only; {', '.join(guards)})"
        return logging.INFO, (
            f"{where} (loopback only: use --metrics-addr 0.0.0.0 with --web-config for TLS and basic auth to expose it)"
        )
    if web.tls and users:
        return logging.INFO, f"{where} ({', '.join(guards)})"
    if web.tls:
        return logging.WARNING, f"{where} (TLS, but anyone who can connect may scrape: add basic_auth_users)"
    if users:
        return logging.WARNING, f"{where} (basic auth over plain HTTP: passwords in the clear; add tls_server_config)"
    return logging.WARNING, (
        f"{where}, open to the network without TLS or authentication: add --web-config FILE "
        "with tls_server_config and basic_auth_users"
    )


@contextlib.contextmanager
def serve(
    options: EndpointOptions,
    iface: str,
    snapshot: Callable[[], EngineSnapshot],
    scrapers: RecentPeers | None = None,
    top: Callable[[], TopSnapshot] | None = None,
) -> Iterator[MetricsServer | None]:
    """Check the web config and bind (errors here come before anything is attached), then serve until the end.

    ``scrapers``: where the addresses of authorized /metrics requests are recorded (auto-block spares them)."""
    if not options.enabled:
        log.info("metrics: off", extra={"event": "metrics", "enabled": False})
        yield None
        return
    web = web_config.load(options.web_config) if options.web_config is not None else None
    holder = InterfaceLock(iface).holder()
    if holder is not None:  # the engine would refuse it too: say that, not "port in use" by that same agent
        raise AlreadyRunning(f"another ironpost-tui (pid {holder}) controls {iface}: stop it first")
    server = MetricsServer(
        options.addr,
        options.port,
        engine_registry(snapshot),
        lambda: unhealthy(snapshot(), time.monotonic()),
        web,
        scrapers,
        top=top,
    )
    level, line = describe(server, options.addr)
    tls, users = web is not None and web.tls is not None, web is not None and bool(web.users)
    log.log(level, line, extra={"event": "metrics", "url": url(server, options.addr), "tls": tls, "basic_auth": users})
    server.start()
    try:
        yield server
    finally:
        server.stop()
