"""`ironpost-tui demo`: the product on its embedded lab (see demo_lab.py)."""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import Iterator
from pathlib import Path

from ironpost_tui.config.store import RuleStore
from ironpost_tui.demo import lab as demo_lab
from ironpost_tui.detectors.settings import PortScanConfig, SynFloodConfig
from ironpost_tui.engine.engine import EngineOptions
from ironpost_tui.errors import AlreadyRunning
from ironpost_tui.kernel import host
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules import protect

DEMO_RULES = (
    FilterRule(
        "watch-dns",
        Action.MONITOR,
        dst_port=demo_lab.DNS_PORT,
        protocol=17,
        description="DNS-like queries to the lab's resolver",
    ),
    FilterRule("no-telnet", Action.DROP, dst_port=23, protocol=6, description="nobody should telnet here"),
    FilterRule(
        "doc-range",
        Action.DROP,
        src_ip=ipaddress.ip_network("198.18.201.0/24"),
        description="a range that sends nothing good",
    ),
)


# The lab host's own addresses: what a real run protects by default (protect_host_addresses), named
# here too so that the demo protects them even where `ip -j addr` cannot be read.
HOST_ADDRESSES = (ipaddress.ip_network(demo_lab.HOST4), ipaddress.ip_network(demo_lab.HOST6))


def protections() -> tuple[protect.Protected, ...]:
    """The anti-lockout of a run with the default [safety]: the SSH clients, this host's addresses
    (the lab's 198.18.200.1 among them), so a rule that would drop one is refused as it would be."""
    return tuple(protect.gather(HOST_ADDRESSES))


def options(state_dir: Path) -> EngineOptions:
    """The demo's engine: its rules, quick detectors, port scanners blocked for a minute, and the
    anti-lockout protections a real run has."""
    store = RuleStore.state_file(demo_lab.HOST_IF, state_dir)
    store.replace_all(list(DEMO_RULES))
    return EngineOptions(
        iface=demo_lab.HOST_IF,
        xdp_mode="auto",
        rules=DEMO_RULES,
        protected=protections(),
        store=store,
        audit_log=state_dir / "audit.log",
        syn_flood=SynFloodConfig(window_secs=10),
        port_scan=PortScanConfig(window_secs=60, auto_block=True, block_ttl=60),
    )


@contextlib.contextmanager
def lab_running() -> Iterator[EngineOptions]:
    """Build the lab, start its hosts and services; always tear it all down.  One demo at a time: a second one is
    refused while the first runs (until session 24 it removed the first one's lab, and its cleanup signalled the
    first one's console, which the signal killed)."""
    running = host.InterfaceLock(demo_lab.HOST_IF, "demo")
    try:
        running.acquire()
    except AlreadyRunning:
        pid = running.holder()
        raise AlreadyRunning(
            f"another ironpost-tui demo{f' (pid {pid})' if pid else ''} is running: quit it first"
        ) from None
    try:
        with _lab_built() as built:
            yield built
    finally:
        running.release()


@contextlib.contextmanager
def _lab_built() -> Iterator[EngineOptions]:
    demo_lab.create()  # removes what a run killed with -9 left, its state directory included
    services = traffic = None
    try:
        services = demo_lab.DemoServices()
        traffic = demo_lab.start_traffic()
        yield options(demo_lab.STATE_DIR)
    finally:
        if traffic is not None:
            demo_lab.stop_traffic(traffic)
        if services is not None:
            services.stop()
        demo_lab.remove()
