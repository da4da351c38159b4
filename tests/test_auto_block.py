"""Auto-block's decision without root or waiting: the clock is passed in.

Caps (per minute, in force), the once-only storm line, incidents with more than
max_incident_sources sources, infrastructure refused with its reason, and the negative
controls (an ordinary source under the limits is blocked).  Then the parsers behind the
infrastructure set, the /metrics scrapers' recorder, the [detectors] keys, and /metrics
counting auto-blocks under one rule_id with deleted rules pruned.
"""

from __future__ import annotations

import ipaddress
import re
import threading
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.detectors.alerts import MANY_SOURCES, Alert
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector
from ironpost_tui.engine.snapshot import AUTO_RULE_ID, EngineSnapshot, SnapshotBuilder
from ironpost_tui.metrics.collector import EngineCollector
from ironpost_tui.model import Action, FilterRule, ProtoCounters, RuleStatus, StatsSample
from ironpost_tui.rules import infrastructure as infra
from ironpost_tui.rules.auto_block import QUIET_SECS, AutoBlockPolicy, Refusal
from ironpost_tui.rules.infrastructure import InfraAddress, InfraReason, InfraSources, Infrastructure, RecentPeers
from ironpost_tui.rules.protect import REASON_PROTECT_LIST, Protected


def net(text: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    return ipaddress.ip_network(text)


def alert(source: str, detector: Detector = Detector.SYN_FLOOD, window: float = 10.0, n: int = 1) -> Alert:
    return Alert(n, detector, "high", source, "198.18.0.1", 150, 150, window, 0.0, 0.0, "150 SYNs")


def source(i: int) -> str:
    return str(ipaddress.IPv4Address("198.18.100.0") + i)


class Clock:
    """Drives a policy: each ask at its own time, blocks counted as the engine counts them."""

    def __init__(self, policy: AutoBlockPolicy) -> None:
        self.policy = policy
        self.live = 0
        self.incidents: list[str] = []

    def ask(self, a: Alert, now: float) -> bool:
        d = self.policy.decide(a, now, self.live)
        if d.incident is not None:
            self.incidents.append(d.incident)
        self.live -= len(d.revoke)
        if d.block:
            self.policy.blocked(a, now)
            self.live += 1
        return d.block


# --------------------------------------------------------------------------- #
# the caps


def test_at_most_max_blocks_per_minute_then_one_storm_line() -> None:
    run = Clock(AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=30, max_incident_sources=10_000)))
    # 40 sources over 40 s: the first 30 are blocked, the rest are not, and the storm is said once.
    blocked = [run.ask(alert(source(i), n=i), now=float(i)) for i in range(40)]
    assert blocked == [True] * 30 + [False] * 10
    assert len(run.incidents) == 1
    assert "max_blocks_per_minute" in run.incidents[0] and "many sources" in run.incidents[0]
    assert run.policy.storm is Refusal.PER_MINUTE


def test_the_per_minute_cap_slides_and_the_storm_ends_after_a_quiet_minute() -> None:
    run = Clock(AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=3, max_incident_sources=10_000)))
    assert [run.ask(alert(source(i)), now=0.0) for i in range(4)] == [True, True, True, False]
    # A minute later the window is empty, but the storm goes on while sources keep asking.
    assert not run.ask(alert(source(10)), now=30.0)
    assert not run.ask(alert(source(11)), now=61.0)
    assert run.policy.storm is Refusal.PER_MINUTE
    # A quiet minute (nobody asked): over; the next source is blocked (the negative control).
    assert run.ask(alert(source(12)), now=61.0 + QUIET_SECS)
    assert run.policy.storm is None
    assert len(run.incidents) == 1


def test_at_most_max_auto_blocks_in_force() -> None:
    policy = AutoBlockPolicy(AutoBlockLimits(max_auto_blocks=5, max_blocks_per_minute=1000))
    assert policy.decide(alert(source(1)), 0.0, live=4).block
    d = policy.decide(alert(source(2)), 0.0, live=5)
    assert not d.block and d.refusal is Refusal.LIVE and d.incident is not None and "max_auto_blocks" in d.incident
    again = policy.decide(alert(source(3)), 1.0, live=5)
    assert not again.block and again.incident is None  # said once, not per refused source


def test_an_incident_of_more_than_32_sources_blocks_none_of_them() -> None:
    """40 sources raised by one detector within its window (the issue's 40 spoofed addresses): once the
    33rd arrives, no more are blocked and the 32 blocked before are lifted (revoke)."""
    policy = AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=1000))
    live: set[str] = set()
    incidents = []
    for i in range(40):
        a = alert(source(i))
        d = policy.decide(a, now=i * 0.1, live=len(live))
        live -= set(d.revoke)
        if d.incident:
            incidents.append(d.incident)
        if d.block:
            policy.blocked(a, i * 0.1)
            live.add(a.source)
    assert live == set()
    assert len(incidents) == 1 and "33 sources" in incidents[0] and "max_incident_sources (32)" in incidents[0]


def test_32_sources_in_a_window_or_33_spread_over_windows_are_blocked() -> None:
    """Negative controls of the incident count: exactly the limit, and sources that are not one incident."""
    policy = AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=1000))
    assert all(policy.decide(alert(source(i)), 0.0, i).block for i in range(32))
    for i in range(32):
        policy.blocked(alert(source(i)), 0.0)
    spread = AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=1000))
    for i in range(40):  # one new source every 11 s: never more than one within a 10 s window
        a = alert(source(i))
        assert spread.decide(a, i * 11.0, i).block
        spread.blocked(a, i * 11.0)


def test_incidents_are_counted_per_detector() -> None:
    policy = AutoBlockPolicy(AutoBlockLimits(max_blocks_per_minute=1000, max_incident_sources=2))
    assert policy.decide(alert(source(1), Detector.SYN_FLOOD), 0.0, 0).block
    assert policy.decide(alert(source(2), Detector.SYN_FLOOD), 0.0, 0).block
    assert policy.decide(alert(source(3), Detector.PORT_SCAN, window=60), 0.0, 0).block
    assert not policy.decide(alert(source(4), Detector.SYN_FLOOD), 0.0, 0).block


def test_many_sources_is_never_blocked() -> None:
    d = AutoBlockPolicy(AutoBlockLimits()).decide(alert(MANY_SOURCES), 0.0, 0)
    assert not d.block and d.refusal is Refusal.MANY_SOURCES and "198.18.0.1" in d.why_not


def test_infrastructure_is_refused_with_its_reason() -> None:
    gateway = InfraAddress(net("198.18.0.1/32"), InfraReason.GATEWAY)
    table = {"198.18.0.1": gateway}
    policy = AutoBlockPolicy(AutoBlockLimits(), lambda addr, _now: table.get(addr))
    d = policy.decide(alert("198.18.0.1"), 0.0, 0)
    assert not d.block and d.refusal is Refusal.INFRASTRUCTURE
    assert d.why_not == "198.18.0.1 is infrastructure (a default-route next hop)"
    assert d.incident is None  # one refusal is not a storm
    assert policy.decide(alert("198.18.0.2"), 0.0, 0).block  # the negative control


# --------------------------------------------------------------------------- #
# the infrastructure set


def test_the_crowdsec_lapi_is_infrastructure() -> None:
    """A spoofed flood in the LAPI's name must not get it blocked here nor banned fleet-wide (cutting every
    bouncer off from its unbans): its addresses, from lapi_url, are infrastructure; another is not."""
    assert infra.url_host_addresses("http://127.0.0.1:8080/") == (net("127.0.0.1/32"),)
    assert infra.url_host_addresses("https://[2001:db8::9]:8443/") == (net("2001:db8::9/128"),)
    assert net("127.0.0.1/32") in infra.url_host_addresses("http://localhost:8080/")
    sources = InfraSources(routes=list, resolv_confs=(), ntp_confs=(), ssh_clients=None, lapi=(net("198.18.0.9/32"),))
    found = Infrastructure(sources)
    found.refresh(0.0)
    lapi = found.find("198.18.0.9", 0.0)
    assert lapi is not None and lapi.reason == InfraReason.LAPI
    assert found.find("198.18.0.10", 0.0) is None
    policy = AutoBlockPolicy(AutoBlockLimits(), found.find)
    d = policy.decide(alert("198.18.0.9"), 0.0, 0)
    assert not d.block and d.why_not == "198.18.0.9 is infrastructure (the CrowdSec LAPI)"


def test_routes_gateways_multipath_and_ipv6() -> None:
    routes: list[dict[str, Any]] = [
        {"dst": "default", "gateway": "198.18.0.1", "dev": "eth0"},
        {"dst": "default", "nexthops": [{"gateway": "198.18.1.1", "dev": "a"}, {"gateway": "198.18.2.1"}]},
        {"dst": "default", "gateway": "fe80::1", "dev": "eth0"},
        {"dst": "default", "via": {"family": "inet", "host": "198.18.3.1"}},
        {"dst": "default", "dev": "wg0"},  # a device route: no next hop
    ]
    assert infra.parse_routes(routes) == [
        net("198.18.0.1/32"),
        net("198.18.1.1/32"),
        net("198.18.2.1/32"),
        net("fe80::1/128"),
        net("198.18.3.1/32"),
    ]


def test_resolv_conf_nameservers() -> None:
    text = "# comment\nsearch lab\nnameserver 198.18.0.53\nnameserver 2001:db8::53%eth0 # x\nnameserver bogus\n"
    assert infra.parse_resolv_conf(text) == [net("198.18.0.53/32"), net("2001:db8::53/128")]


def test_ntp_servers_literal_addresses_only() -> None:
    chrony = "pool 2.debian.pool.ntp.org iburst\nserver 198.18.0.123 iburst\npeer 2001:db8::123\n# server 198.18.9.9\n"
    timesyncd = "[Time]\nNTP=198.18.0.124 time.example.org\nFallbackNTP=2001:db8::124\n"
    assert infra.parse_ntp_conf(chrony) == [net("198.18.0.123/32"), net("2001:db8::123/128")]
    assert infra.parse_ntp_conf(timesyncd) == [net("198.18.0.124/32"), net("2001:db8::124/128")]


def test_recent_peers_expire_after_the_hour_and_are_bounded() -> None:
    now = [0.0]
    peers = RecentPeers(limit=3, clock=lambda: now[0])
    peers.record("::ffff:198.18.0.9")  # an IPv4 scraper seen on an IPv6 socket
    now[0] = 100.0
    for i in range(3):
        peers.record(f"198.18.0.{10 + i}")
    assert net("198.18.0.9/32") not in peers.recent()  # the least recent went past the limit
    assert len(peers.recent()) == 3
    now[0] = 100.0 + infra.PEER_MEMORY_SECS + 1
    assert peers.recent() == []
    threads = [threading.Thread(target=peers.record, args=(f"198.18.1.{i}",)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(peers.recent()) == 3


def test_discovery_reasons_and_refresh_at_most_every_n_seconds(tmp_path: Path) -> None:
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 198.18.0.53\n")
    ntp = tmp_path / "chrony.conf"
    ntp.write_text("server 198.18.0.123\n")
    peers = RecentPeers()
    peers.record("198.18.0.90")
    calls = []

    def routes() -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
        calls.append(1)
        return [net("198.18.0.1/32")]

    sources = InfraSources(
        routes=routes,
        resolv_confs=(resolv,),
        ntp_confs=(ntp,),
        ssh_clients=lambda: [net("198.18.0.22/32")],
        peers=peers,
        refresh_secs=30,
    )
    found = Infrastructure(sources, lambda: [Protected(net("198.18.8.0/24"), REASON_PROTECT_LIST)])
    reasons = {a.describe() for a in found.current(0.0)}
    assert reasons == {
        "198.18.0.1/32 (a default-route next hop)",
        "198.18.0.53/32 (a DNS resolver)",
        "198.18.0.123/32 (a configured NTP server)",
        "198.18.0.90/32 (scraped /metrics within the hour)",
        "198.18.0.22/32 (an authenticated SSH client)",
        "198.18.8.0/24 (the [safety] protect list)",
    }
    hit = found.find("198.18.8.77", 1.0)
    assert hit is not None and hit.reason == "the [safety] protect list"
    assert found.find("198.18.9.1", 2.0) is None  # the negative control
    for t in range(100):  # many alerts within the refresh interval: one discovery
        found.find("198.18.0.1", 3.0 + t * 0.1)
    assert len(calls) == 1
    resolv.write_text("nameserver 198.18.0.54\n")
    assert found.find("198.18.0.54", 29.0) is None
    assert found.find("198.18.0.54", 31.0) is not None  # refreshed after refresh_secs
    assert len(calls) == 2
    found.invalidate()  # a reload changed the protections: found again at the next look-up
    assert found.find("198.18.0.54", 32.0) is not None and len(calls) == 3


# --------------------------------------------------------------------------- #
# configuration


def test_detectors_limits_defaults_and_keys() -> None:
    assert config.loads("", "t").auto_block == AutoBlockLimits(30, 1000, 32)
    text = "[detectors]\nmax_blocks_per_minute = 5\nmax_auto_blocks = 50\nmax_incident_sources = 8\n"
    assert config.loads(text, "t").auto_block == AutoBlockLimits(5, 50, 8)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("max_blocks_per_minute = -1", "[detectors] max_blocks_per_minute -1 is negative: it must be 0 to 100000"),
        ("max_auto_blocks = 2000000", "[detectors] max_auto_blocks 2000000 is too large: it must be 0 to 1000000"),
        ("max_incident_sources = 0", "[detectors] max_incident_sources 0 is too small: it must be 1 to 100000"),
        ("max_auto_blocks = 1.5", "[detectors] max_auto_blocks must be an integer, got float 1.5"),
        ("max_incident = 3", "unknown key 'max_incident' in [detectors] (did you mean 'max_incident_sources'?)"),
    ],
)
def test_detectors_limits_refused_with_one_line(line: str, message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        config.loads(f"[detectors]\n{line}\n", "t.toml")
    assert exc.value.message.splitlines() == [f"t.toml:2:1: {message}"]


# --------------------------------------------------------------------------- #
# /metrics


def _rule(rule_id: str, auto: bool = False, src: str | None = None) -> FilterRule:
    return FilterRule(id=rule_id, action=Action.DROP, src_ip=net(src) if src else None, auto=auto)


def test_auto_blocks_count_under_one_rule_id_and_deleted_rules_are_pruned() -> None:
    builder = SnapshotBuilder("eth0")
    sample = StatsSample(at=1.0, totals={"tcp": ProtoCounters(1, 1, 1)})
    current: list[EngineSnapshot] = []
    registry = CollectorRegistry()
    registry.register(EngineCollector(lambda: current[-1]))

    def publish(*statuses: tuple[FilterRule, int]) -> None:
        rules = [RuleStatus(rule=r, map_name="BLOCKLIST", hits=h) for r, h in statuses]
        current.append(
            builder.build(
                sample, rules, mode="native", attached=True, blocklist_entries=1, blocklist_capacity=9, alerts_active=0
            )
        )

    def hits(rule_id: str) -> float | None:
        return registry.get_sample_value("ironpost_rule_hits_total", {"rule_id": rule_id})

    a1 = _rule("auto-syn_flood-198.18.0.7", auto=True, src="198.18.0.7/32")
    a2 = _rule("auto-port_scan-2001:db8::7", auto=True, src="2001:db8::7/128")
    manual = _rule("drop-telnet")
    publish((a1, 10), (a2, 5), (manual, 3))
    assert hits(AUTO_RULE_ID) == 15 and hits("drop-telnet") == 3
    assert hits(a1.id) is None and hits(a2.id) is None
    text = generate_latest(registry).decode()
    assert not re.search(r'rule_id="[^"]*(198\.18|2001:db8)', text)
    # a1 expires: its hits stay in "auto" (a counter never goes back); the manual rule is deleted: pruned.
    publish((a2, 6))
    assert hits(AUTO_RULE_ID) == 16
    assert hits("drop-telnet") is None
    assert "drop-telnet" not in current[-1].rule_hits
    # The console still sees each auto-block with its own count.
    assert [(s.rule.id, s.hits) for s in current[-1].rules] == [(a2.id, 6)]
    # The builder forgets pruned rules' per-id state (bounded by the rules in force and RETIRED_MAX).
    assert a1.id not in builder._hits_last and a1.id not in builder._hits_base
    publish()
    assert hits(AUTO_RULE_ID) == 16


def test_rules_whose_ids_hold_addresses_count_under_one_rule_id() -> None:
    """fail2ban's f2b-JAIL-ADDR and the block command's block-ADDR: one /metrics series per ban until session 29 (an
    attacker's review: 10,000 bans, 10,000 series, each an attacker's address as a label).  They count under
    rule_id="addresses"; the control: ids without an address keep their own series (a version number is none)."""
    builder = SnapshotBuilder("eth0")
    sample = StatsSample(at=1.0, totals={"tcp": ProtoCounters(1, 1, 1)})
    registry = CollectorRegistry()
    current: list[EngineSnapshot] = []
    registry.register(EngineCollector(lambda: current[-1]))
    bans = [_rule(f"f2b-sshd-198.18.{i // 250}.{i % 250}", src=f"198.18.{i // 250}.{i % 250}/32") for i in range(500)]
    named = [
        _rule("block-2001:db8::7", src="2001:db8::7/128"),
        _rule("drop-telnet"),
        _rule("feed-v1.2"),
        _rule("block-scanner"),
    ]
    rules = [RuleStatus(rule=r, map_name="BLOCKLIST", hits=2) for r in bans + named]
    current.append(builder.build(sample, rules, mode="native", attached=True, blocklist_entries=1,
                                 blocklist_capacity=9, alerts_active=0))  # fmt: skip
    text = generate_latest(registry).decode()
    series = re.findall(r'^ironpost_rule_hits_total\{rule_id="([^"]*)"\}', text, re.M)
    assert sorted(series) == ["addresses", "block-scanner", "drop-telnet", "feed-v1.2"], series
    assert registry.get_sample_value("ironpost_rule_hits_total", {"rule_id": "addresses"}) == 2 * 501
    assert not re.search(r'rule_id="[^"]*(198\.18|2001:db8)', text)


# --------------------------------------------------------------------------- #
# the console's protected list


class _Control:
    protected = [Protected(net("198.18.8.0/24"), REASON_PROTECT_LIST)]


class _Engine:
    control = _Control()

    def __init__(self, auto_blocking: bool) -> None:
        self.auto_blocking = auto_blocking

    def infrastructure(self) -> list[InfraAddress]:
        return [
            InfraAddress(net("198.18.8.0/24"), "the [safety] protect list"),
            InfraAddress(net("198.18.0.1/32"), InfraReason.GATEWAY),
        ]


def test_the_consoles_protected_list_names_each_reason() -> None:
    from ironpost_tui.engine.live import protected_list

    assert protected_list(_Engine(True)) == (  # type: ignore[arg-type]
        "198.18.8.0/24 (the [safety] protect list)",
        "198.18.0.1/32 (never auto-blocked: a default-route next hop)",
    )
    # Without auto-block, infrastructure means nothing: only the anti-lockout protections.
    assert protected_list(_Engine(False)) == ("198.18.8.0/24 (the [safety] protect list)",)  # type: ignore[arg-type]


@pytest.mark.parametrize("protect_ssh_client", [True, False])
def test_ssh_clients_are_infrastructure_only_while_protected(tmp_path: Path, protect_ssh_client: bool) -> None:
    """``[safety] protect_ssh_client = false`` is how a host whose logins are not all operators' keeps them from
    exempting their addresses: then an SSH client is not spared by auto-block and CrowdSec either."""
    from ironpost_tui import cli
    from ironpost_tui.config.watch import ConfigSource

    path = tmp_path / "ironpost.toml"
    path.write_text(f"[safety]\nprotect_ssh_client = {str(protect_ssh_client).lower()}\n")
    args = cli._run_parser().parse_args(["lab0", "--config", str(path), "--state-dir", str(tmp_path)])
    source = ConfigSource(path, "lab0", tmp_path)
    opts = cli._engine_options(args, source.load(), source)
    expected = infra.authenticated_ssh_clients if protect_ssh_client else None
    assert opts.infrastructure.ssh_clients is expected
    # The library's way to the same options.
    from ironpost_tui.api import EngineConfig

    lib = EngineConfig(interface="lab0", protect_ssh_client=protect_ssh_client, protect_host_addresses=False)
    assert lib.options().infrastructure.ssh_clients is expected


class _Table:
    def __init__(self) -> None:
        self.by_id: dict[str, FilterRule] = {}

    def get(self, rule_id: str) -> FilterRule | None:
        return self.by_id.get(rule_id)


class _Control:
    """What AutoBlocker uses of a RuleController, rules in a dict."""

    def __init__(self) -> None:
        self.table = _Table()
        self.taken_over: dict[str, str] = {}

    def take_over(self, auto_id: str, rule: FilterRule) -> None:
        """What RuleController.add does when an operator's drop has an auto-block's match."""
        del self.table.by_id[auto_id]
        self.table.by_id[rule.id] = rule
        self.taken_over[auto_id] = rule.id

    def rules(self) -> list[FilterRule]:
        return list(self.table.by_id.values())

    def add(self, rule: FilterRule, _actor: Any) -> None:
        self.table.by_id[rule.id] = rule

    def delete(self, rule_id: str, _actor: Any) -> FilterRule:
        return self.table.by_id.pop(rule_id)


def test_an_incident_grown_too_large_lifts_its_auto_blocks_but_not_one_the_operator_made_their_own() -> None:
    """The 33rd source of an incident lifts the 32 auto-blocks before it, by their ids; one the operator changed
    in the form (the same id, ``auto`` false: theirs now) stays (until session 23 it was lifted too).  The
    control: the 31 others are lifted."""
    from ironpost_tui.detectors.settings import SynFloodConfig
    from ironpost_tui.engine.auto_blocker import AutoBlocker

    blocker = AutoBlocker(
        lambda _d: SynFloodConfig(auto_block=True),
        AutoBlockLimits(max_blocks_per_minute=1000),
        InfraSources(),
        lambda: [],
    )
    control = _Control()
    for i in range(32):
        blocker.apply(control, [alert(source(i), n=i + 1)], 0.1 * i)  # type: ignore[arg-type]
    assert len(control.rules()) == 32 and all(r.auto for r in control.rules())
    kept_id = f"auto-syn_flood-{source(5)}"
    kept = FilterRule(kept_id, Action.DROP, src_ip=net(source(5)), description="the operator's now")
    control.table.by_id[kept_id] = kept  # as the form's update leaves it: auto false
    blocker.apply(control, [alert(source(32), n=33)], 3.3)  # type: ignore[arg-type]
    assert control.rules() == [kept]


def _renewal_world() -> tuple[Any, _Control, Alert, str, list[Any]]:
    from ironpost_tui.detectors.alerts import AlertChange, ChangeKind
    from ironpost_tui.detectors.settings import SynFloodConfig
    from ironpost_tui.engine.auto_blocker import AutoBlocker

    blocker = AutoBlocker(lambda _d: SynFloodConfig(auto_block=True), AutoBlockLimits(), InfraSources(), lambda: [])
    control = _Control()
    a = alert(source(1))
    blocker.apply(control, [a], 0.0)  # type: ignore[arg-type]
    auto_id = f"auto-syn_flood-{source(1)}"
    assert [r.id for r in control.rules()] == [auto_id]
    return blocker, control, a, auto_id, [AlertChange(ChangeKind.UPDATED, a, found=True)]


def _taken_over_then_expired(blocker: Any, control: _Control, a: Alert, auto_id: str, again: list[Any]) -> FilterRule:
    """The operator's block-ADDR takes the auto-block over, stands for it a tick, then expires."""
    own = _block()
    control.take_over(auto_id, own)
    blocker.renew(control, again, 1.0, a.last_seen)
    del control.table.by_id[own.id]
    blocker.expired([own])
    return own


def _block(action: Action = Action.DROP) -> FilterRule:
    return FilterRule(f"block-{source(1)}", action, src_ip=net(source(1)), expires_at=600.0)


@pytest.mark.parametrize("ended", ["expired", "deleted"])
def test_an_operators_block_that_took_an_auto_block_over_is_renewed_when_it_expires_not_when_deleted(
    ended: str,
) -> None:
    """The operator blocks an auto-blocked source for 10m (the take-over, rules/table.py add).  When that block
    expires with the incident open and the detector finding the source again, the source is blocked again as an
    auto-block would have been (until session 23 the flood then passed, the incident still open).  The control:
    a block the operator deleted (unblocked) is never renewed."""
    blocker, control, a, auto_id, again = _renewal_world()
    own = _block()
    control.take_over(auto_id, own)
    blocker.renew(control, again, 1.0, a.last_seen)  # type: ignore[arg-type]
    assert [r.id for r in control.rules()] == [own.id]  # the operator's block stands for it: nothing added
    del control.table.by_id[own.id]
    if ended == "expired":
        blocker.expired([own])
    blocker.renew(control, again, 700.0, a.last_seen)  # type: ignore[arg-type]
    ids = [r.id for r in control.rules()]
    assert ids == ([auto_id] if ended == "expired" else []), ids


def test_a_block_id_used_again_is_never_renewed_when_deleted() -> None:
    """block-ADDR expires and is followed by an auto-block; the operator blocks again under the same id (a new
    take-over), then unblocks: not renewed (the first expiry, remembered, had made the delete look like one)."""
    blocker, control, a, auto_id, again = _renewal_world()
    own = _taken_over_then_expired(blocker, control, a, auto_id, again)
    blocker.renew(control, again, 700.0, a.last_seen)  # type: ignore[arg-type]
    assert [r.id for r in control.rules()] == [auto_id]  # followed by an auto-block, as it should be
    control.take_over(auto_id, own)  # blocked again under the same id
    blocker.renew(control, again, 701.0, a.last_seen)  # type: ignore[arg-type]
    del control.table.by_id[own.id]  # u: deleted
    blocker.renew(control, again, 702.0, a.last_seen)  # type: ignore[arg-type]
    assert control.rules() == []


def test_a_monitor_rule_that_expires_never_brings_the_drop_back() -> None:
    """The operator's block switched to monitor (x), then expiring: nothing is blocked again."""
    blocker, control, a, auto_id, again = _renewal_world()
    control.take_over(auto_id, _block())
    blocker.renew(control, again, 1.0, a.last_seen)  # type: ignore[arg-type]
    watch = _block(Action.MONITOR)
    control.table.by_id[watch.id] = watch  # x: the same id, monitor
    del control.table.by_id[watch.id]
    blocker.expired([watch])
    blocker.renew(control, again, 700.0, a.last_seen)  # type: ignore[arg-type]
    assert control.rules() == []


def test_a_block_made_after_an_unblock_is_not_taken_for_the_incidents() -> None:
    """The operator unblocks the auto-block (u), then blocks the source for 10m: that is no take-over, so its
    expiry renews nothing (the successor was once guessed from whoever held the match)."""
    blocker, control, a, auto_id, again = _renewal_world()
    del control.table.by_id[auto_id]  # u
    own = _block()
    control.table.by_id[own.id] = own  # b, later: an add, not a take-over
    blocker.renew(control, again, 1.0, a.last_seen)  # type: ignore[arg-type]
    del control.table.by_id[own.id]
    blocker.expired([own])
    blocker.renew(control, again, 700.0, a.last_seen)  # type: ignore[arg-type]
    assert control.rules() == []


def test_a_block_made_again_after_its_expiry_and_then_deleted_is_not_renewed() -> None:
    """block-ADDR (a take-over) expires while the source is quiet (nothing renewed); the operator blocks it again
    under the same id, then unblocks it: the old expiry is not this rule's, nothing is renewed."""
    from ironpost_tui.detectors.alerts import AlertChange, ChangeKind

    blocker, control, a, auto_id, again = _renewal_world()
    own = _taken_over_then_expired(blocker, control, a, auto_id, again)
    quiet = [AlertChange(ChangeKind.UPDATED, a, found=False)]
    blocker.renew(control, quiet, 700.0, a.last_seen)  # type: ignore[arg-type]
    assert control.rules() == []  # under the threshold: not renewed yet
    control.table.by_id[own.id] = own  # b again, same id
    blocker.renew(control, again, 701.0, a.last_seen)  # type: ignore[arg-type]
    del control.table.by_id[own.id]  # u
    blocker.renew(control, again, 702.0, a.last_seen)  # type: ignore[arg-type]
    assert control.rules() == []
