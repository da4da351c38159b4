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
from ironpost_tui.model import Action, FilterRule

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


def options(state_dir: Path) -> EngineOptions:
    """The demo's engine: its rules, quick detectors, port scanners blocked for a minute."""
    store = RuleStore.state_file(demo_lab.HOST_IF, state_dir)
    store.replace_all(list(DEMO_RULES))
    return EngineOptions(
        iface=demo_lab.HOST_IF,
        xdp_mode="auto",
        rules=DEMO_RULES,
        store=store,
        audit_log=state_dir / "audit.log",
        syn_flood=SynFloodConfig(window_secs=10),
        port_scan=PortScanConfig(window_secs=60, auto_block=True, block_ttl=60),
    )


@contextlib.contextmanager
def lab_running() -> Iterator[EngineOptions]:
    """Build the lab, start its hosts and services; always tear it all down."""
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
