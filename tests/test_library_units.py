"""The library API without root: its names and how they are imported, the values it checks
(FilterRule, EngineConfig, the detectors), the bounded event channel, and TrafficStats'
Prometheus text against what the metrics endpoint serves for the same snapshot.

The engine itself, on a veth: tests/test_library.py."""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import ipaddress
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support.common import REPO
from support.metrics_lab import fetch, sample

import ironpost_tui
from ironpost_tui import (
    ConfigError,
    EbpfEngine,
    EngineConfig,
    FilterRule,
    NotRunning,
    PortScanConfig,
    PortScanDetector,
    ProtocolStats,
    Receiver,
    RuleAction,
    RuleRefused,
    SynFloodConfig,
    SynFloodDetector,
    TrafficStats,
)
from ironpost_tui.config import settings as config_settings
from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.metrics.server import MetricsServer
from ironpost_tui.model import Action, ProtoCounters, ProtoRates, StatsSample
from ironpost_tui.model import FilterRule as InternalRule

# --------------------------------------------------------------------------- #
# names and imports


def _python(code: str) -> str:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True).stdout


def test_importing_the_package_imports_no_api_until_a_name_is_used() -> None:
    out = _python(
        "import sys\n"
        "import ironpost_tui\n"
        "print(sorted(m for m in sys.modules if m.startswith(('ironpost_tui', 'bcc', 'prometheus_client'))))\n"
        "from ironpost_tui import EbpfEngine\n"
        "print('ironpost_tui.api' in sys.modules, EbpfEngine.__module__)\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'plotext')))\n"
    )
    before, after, ui = out.splitlines()
    assert before == "['ironpost_tui', 'ironpost_tui.version']"
    assert after == "True ironpost_tui.api.engine"
    assert ui == "[]"  # the API is below the console: no UI library


def test_the_command_line_start_does_not_import_the_api() -> None:
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "ironpost_tui", "--help"], cwd=REPO,
                          capture_output=True, text=True, check=True)  # fmt: skip
    imported = [line.rsplit("|", 1)[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "ironpost_tui.cli" in imported and "ironpost_tui" in imported
    assert [m for m in imported if m.startswith("ironpost_tui.api")] == []


def test_every_public_name_resolves_and_nothing_else_does() -> None:
    import ironpost_tui.api as api

    assert set(ironpost_tui.__all__) == set(api.__all__) | {"__version__"}
    for name in api.__all__:
        value = getattr(ironpost_tui, name)
        assert value is getattr(api, name)
        assert value.__module__.startswith("ironpost_tui."), name
    assert set(ironpost_tui.__all__) <= set(dir(ironpost_tui))
    with pytest.raises(AttributeError, match="no attribute 'EbpfEngin'"):
        ironpost_tui.EbpfEngin  # type: ignore[attr-defined]  # noqa: B018
    from ironpost_tui import files  # a submodule is still a submodule

    assert files.__name__ == "ironpost_tui.files"


def test_the_package_is_typed(tmp_path: Path) -> None:
    """A user's mypy (outside the repository, the package as installed) sees the lazily imported names
    with their types, and refuses a name that is not exported; without py.typed it would see Any."""
    assert (REPO / "ironpost_tui" / "py.typed").is_file()
    user = tmp_path / "user.py"
    user.write_text(
        "from ironpost_tui import EbpfEngine\nreveal_type(EbpfEngine.builder)\nfrom ironpost_tui import Nope\n"
    )
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(user)], cwd=tmp_path,
                          capture_output=True, text=True)  # fmt: skip
    assert 'Revealed type is "def () -> ironpost_tui.api.engine.EbpfEngineBuilder"' in proc.stdout, proc.stdout
    assert 'Module "ironpost_tui" has no attribute "Nope"' in proc.stdout, proc.stdout
    assert "py.typed" not in proc.stdout


# --------------------------------------------------------------------------- #
# FilterRule


def test_a_filter_rule_takes_text_or_ipaddress_values() -> None:
    rule = FilterRule(id="block_attacker", src_ip="192.0.2.100", action=RuleAction.BLOCK)
    assert rule.src_ip == ipaddress.ip_network("192.0.2.100/32") and rule.action is RuleAction.BLOCK
    assert FilterRule(id="block_attacker", src_ip=ipaddress.ip_address("192.0.2.100")) == rule  # BLOCK: the default
    assert RuleAction.DROP is RuleAction.BLOCK and RuleAction("drop") is RuleAction.BLOCK
    both = FilterRule(id="m", src_ip="2001:db8::/32", dst_ip="2001:db8:1::1", dst_port=22, protocol=6,
                      action="monitor", description="ssh from the lab")  # fmt: skip
    assert both.action is RuleAction.MONITOR and both.dst_ip == ipaddress.ip_network("2001:db8:1::1/128")
    internal = both.internal()
    assert internal.action is Action.MONITOR and internal.src_ip == ipaddress.ip_network("2001:db8::/32")
    assert FilterRule.of(internal) == both
    when = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc)
    assert FilterRule(id="t", dst_port=1, expires_at=when).expires_at == when.timestamp()
    assert FilterRule(id="t", dst_port=1, expires_at=1_900_000_000.5).expires_at == 1_900_000_000.5
    assert (
        FilterRule.of(InternalRule(id="auto-x", src_ip=ipaddress.ip_network("192.0.2.1/32"), auto=True)).id == "auto-x"
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(id="x"), "rule 'x': has no match field"),
        (dict(id="", src_ip="192.0.2.1"), "id is empty"),
        (dict(id="x", src_ip="10.0.0.1/8"), "has host bits set: did you mean 10.0.0.0/8?"),
        (dict(id="x", src_ip="eth0"), "is not an IPv4 or IPv6 address"),
        (dict(id="x", dst_port=65536), "dst_port 65536 is too large"),
        (dict(id="x", dst_port=True), "dst_port must be an integer, got boolean true"),
        (dict(id="x", protocol=256), "protocol 256 is too large"),
        (dict(id="x", dst_port=22, protocol=1), "dst_port matches TCP and UDP only"),
        (dict(id="x", src_ip="192.0.2.1", dst_ip="2001:db8::1"), "a rule matches one IP version"),
        (dict(id="x", dst_port=1, action="allow"), "action 'allow' is not one of drop, block (= drop), monitor"),
        (dict(id="a\x1b]0;pwned\x07", dst_port=1), "rule: id contains \\x1b, a control or format character"),
        (dict(id="x", dst_port=1, expires_at=dt.datetime(2030, 1, 1)), "has no UTC offset"),
    ],
)
def test_a_bad_filter_rule_is_refused_when_it_is_made(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(RuleRefused) as refused:
        FilterRule(**kwargs)  # type: ignore[arg-type]
    assert message in refused.value.message and refused.value.exit_status == 2
    assert "\x1b" not in refused.value.message


# --------------------------------------------------------------------------- #
# EngineConfig and the detectors


def test_engine_config_defaults_are_the_configuration_files() -> None:
    config = EngineConfig(interface="eth0")
    ebpf = config_settings.EbpfSettings()
    assert config.datapath() == ebpf.datapath()  # 256 KiB EVENTS, 10,000 BLOCKLIST entries, 10,000 events/s
    assert config.ring_buffer_size == 256  # KiB, as in the seed
    assert (config.syn_flood, config.port_scan) == (config_settings.Settings().syn_flood, PortScanConfig())
    assert config.audit_log == Path("/var/log/ironpost/audit.log")
    options = dataclasses.replace(config, protect_ssh_client=False, protect_host_addresses=False).options()
    assert options.iface == "eth0" and options.rules == () and options.protected == ()
    assert options.datapath.ring_buffer_kib == 256


def test_a_bad_engine_config_is_refused_with_every_error() -> None:
    with pytest.raises(ConfigError) as refused:
        EngineConfig(interface="eth0/x", xdp_mode="fast", ring_buffer_size=262144 * 2, event_rate_limit=-1,
                     syn_flood=SynFloodConfig(window_secs=0), protect=["10.0.0.1/8"],
                     rules=[FilterRule(id="a", dst_port=1), FilterRule(id="a", dst_port=2)])  # fmt: skip
    lines = refused.value.message.splitlines()
    assert len(lines) == 7, lines
    assert all(line.startswith("EngineConfig: ") for line in lines)
    for part in ("not an interface name", "xdp_mode 'fast'", "it is in KiB", "event_rate_limit -1",
                 "SynFloodConfig.window_secs 0", "host bits set", "two rules have the id 'a'"):  # fmt: skip
        assert any(part in line for line in lines), part
    with pytest.raises(ConfigError, match="interface is empty"):
        EbpfEngine.builder().build()
    EngineConfig(ring_buffer_size=4)  # the smallest ring, and no interface yet: fine until build()


def test_engine_config_from_a_configuration_file(tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(
        '[ebpf]\ninterface = "eth0"\nxdp_mode = "native"\nblocklist_max_entries = 500\n'
        '[[ebpf.rules]]\nid = "block_scanner"\nsrc_ip = "192.0.2.1"\naction = "drop"\n'
        "[detectors.port_scan]\nport_threshold = 30\n"
        '[safety]\nprotect = ["198.51.100.7"]\n'
    )
    config = EngineConfig.from_file(path)
    assert (config.interface, config.xdp_mode, config.blocklist_max_entries) == ("eth0", "native", 500)
    assert config.rules == (FilterRule(id="block_scanner", src_ip="192.0.2.1"),)
    assert config.port_scan.port_threshold == 30 and config.config_file == path
    assert EngineConfig.from_file(path, interface="eth1").interface == "eth1"
    path.write_text('[ebpf]\nxdp_mode = "fast"\n')
    with pytest.raises(ConfigError, match="xdp_mode 'fast' is not one of"):
        EngineConfig.from_file(path)


def test_the_detectors_judge_by_the_seeds_rules() -> None:
    syn = SynFloodDetector(SynFloodConfig(window_secs=10, threshold=100, syn_ratio_threshold=0.8))
    assert syn.is_flood(syn=81, tcp=100)
    assert not syn.is_flood(syn=80, tcp=100)  # a ratio exactly at the threshold is not a flood
    assert not syn.is_flood(syn=99, tcp=99)  # below the threshold
    scan = PortScanDetector(PortScanConfig(window_secs=60, port_threshold=20))
    assert scan.is_scan(20) and not scan.is_scan(19)
    with pytest.raises(ConfigError, match="SynFloodConfig.syn_ratio_threshold 1.5 is out of range"):
        SynFloodDetector(SynFloodConfig(syn_ratio_threshold=1.5))
    with pytest.raises(ConfigError, match="PortScanConfig.port_threshold must be an integer"):
        PortScanDetector(PortScanConfig(port_threshold=2.5))  # type: ignore[arg-type]
    engine, _ = EbpfEngine.builder().detector(scan).config(EngineConfig(interface="eth0")).detector(syn).build()
    assert (engine.config.syn_flood, engine.config.port_scan) == (syn.config, scan.config)


def test_an_engine_that_is_not_started() -> None:
    engine, events = EbpfEngine.builder().config(EngineConfig(interface="eth0")).channel_capacity(7).build()
    assert events.capacity == 7 and engine.events is events and not engine.running and engine.report is None

    async def scenario() -> None:
        with pytest.raises(NotRunning, match="await engine.start"):
            await engine.add_rule(FilterRule(id="x", dst_port=1))
        with pytest.raises(NotRunning):
            await engine.remove_rule("x")
        assert await engine.get_stats() == TrafficStats()
        await engine.stop()  # nothing to stop

    asyncio.run(scenario())
    with pytest.raises(ValueError, match="at least 1"):
        EbpfEngine.builder().channel_capacity(0)


# --------------------------------------------------------------------------- #
# the channel


def test_the_channel_keeps_what_fits_counts_the_rest_and_never_waits() -> None:
    async def scenario() -> None:
        channel: Receiver[int] = Receiver(3)
        channel.put_many([1, 2])
        channel.put_many([3, 4, 5])  # one fits
        assert (len(channel), channel.dropped, channel.sent) == (3, 2, 5)
        assert [await channel.recv(), channel.try_recv()] == [1, 2]
        channel.put_many([6, 7, 8])  # two fit
        assert channel.dropped == 3
        got = [await channel.recv() for _ in range(3)]
        assert got == [3, 6, 7] and channel.try_recv() is None

        # A value put from another thread wakes a consumer that waits.
        waiting = asyncio.ensure_future(channel.recv())
        await asyncio.sleep(0.05)
        assert not waiting.done()
        threading.Thread(target=channel.put_many, args=([9],)).start()
        assert await asyncio.wait_for(waiting, 5) == 9

        # Two consumers waiting at once: each value goes to one of them.
        both = [asyncio.ensure_future(channel.recv()) for _ in range(2)]
        await asyncio.sleep(0.05)
        threading.Thread(target=channel.put_many, args=([20, 21],)).start()
        assert sorted(await asyncio.wait_for(asyncio.gather(*both), 5)) == [20, 21]

        # Closed: what is left, then the end (or the error the engine stopped on).
        channel.put_many([10])
        channel.close()
        channel.put_many([11])  # too late: neither queued nor counted
        assert [v async for v in channel] == [10] and await channel.recv() is None and channel.sent == 12
        failed: Receiver[int] = Receiver(2)
        failed.put_many([1])
        failed.close(RuntimeError("gone"))
        assert await failed.recv() == 1
        with pytest.raises(RuntimeError, match="gone"):
            await failed.recv()

    asyncio.run(scenario())


# --------------------------------------------------------------------------- #
# stats


SNAP = EngineSnapshot(
    at=1_700_000_000.5,
    iface="eth0",
    mode="native",
    attached=True,
    totals={
        "tcp": ProtoCounters(100, 64_000, 7),
        "udp": ProtoCounters(50, 30_000, 0),
        "icmp": ProtoCounters(3, 294, 1),
        "other": ProtoCounters(2, 120, 0),
        "total": ProtoCounters(155, 94_414, 8),
    },
    events_delivered=42,
    events_lost={"ringbuf_full": 5, "rate_limited": 9},
    alerts_total={"syn_flood": 1, "port_scan": 2},
    rule_hits={"block_attacker": 17},
    blocklist_entries=1,
    blocklist_capacity=10_000,
)


def test_traffic_stats_are_the_seeds_and_their_text_is_what_metrics_serves() -> None:
    rates = {"tcp": ProtoRates(pps=12.5, bps=8000.0, drops_ps=1.0)}
    stats = TrafficStats.of(SNAP, StatsSample(at=5.0, totals=dict(SNAP.totals), rates=rates))
    assert (stats.tcp.packets, stats.udp.bytes, stats.tcp.pps) == (100, 30_000, 12.5)
    assert stats.total == ProtocolStats(155, 94_414, 8) and stats.udp.pps == 0.0
    assert (stats.events_delivered, stats.rule_hits["block_attacker"], stats.at) == (42, 17, SNAP.at)

    text = stats.to_prometheus()
    server = MetricsServer("127.0.0.1", 0, engine_registry(lambda: SNAP), lambda: None)
    server.start()
    try:
        status, _, body = fetch(f"http://127.0.0.1:{server.port}/metrics")
    finally:
        server.stop()
    assert status == 200 and body.decode() == text  # the same exposition, byte for byte
    assert sample(text, "ironpost_packets_total", protocol="tcp") == 100
    assert sample(text, "ironpost_rule_hits_total", rule_id="block_attacker") == 17
    check = subprocess.run(["promtool", "check", "metrics"], input=text, capture_output=True, text=True)
    assert check.returncode == 0 and not check.stdout.strip() and not check.stderr.strip(), check
    assert "ironpost_packets_total" in TrafficStats().to_prometheus()
