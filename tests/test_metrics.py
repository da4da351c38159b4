"""The metrics contract without root: the collector over hand-built
snapshots (a fresh CollectorRegistry each, values read with
get_sample_value), counters that never go back across a reload, and every
name used by the README, the alert rules and the dashboard being one the
collector exports.  (The library's TrafficStats.to_prometheus: test_library_units.)"""

from __future__ import annotations

import ipaddress
import json
import re
import subprocess
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics
from support.common import REPO
from support.metrics_lab import DEPLOY

from ironpost_tui.detectors import Alert, AlertChange
from ironpost_tui.engine.snapshot import EngineSnapshot, SnapshotBuilder
from ironpost_tui.metrics.collector import METRICS, EngineCollector, engine_registry
from ironpost_tui.model import FilterRule, ProtoCounters, RuleStatus, StatsSample

TOTALS = {
    "tcp": ProtoCounters(100, 64_000, 7),
    "udp": ProtoCounters(50, 30_000, 0),
    "icmp": ProtoCounters(3, 294, 1),
    "other": ProtoCounters(2, 120, 0),
    "total": ProtoCounters(155, 94_414, 8),
    "fragments": ProtoCounters(6, 9_000, 2),  # not a protocol: packets judged without their ports
}


def snapshot(**kw: object) -> EngineSnapshot:
    base: dict[str, object] = dict(
        at=1_700_000_000.5,
        iface="eth0",
        mode="native",
        attached=True,
        totals=TOTALS,
        events_delivered=42,
        events_lost={"ringbuf_full": 5, "rate_limited": 9},
        alerts_total={"syn_flood": 1, "port_scan": 2},
        alerts_active=1,
        rule_hits={"block-scanner": 17, "watch-dns": 4},
        blocklist_entries=3,
        blocklist_capacity=10_000,
        version="1.2.3",
    )
    base.update(kw)
    return EngineSnapshot(**base)  # type: ignore[arg-type]


def registry_for(snap: EngineSnapshot) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(EngineCollector(lambda: snap))
    return registry


def test_every_metric_and_label_from_a_snapshot() -> None:
    r = registry_for(snapshot())
    v = r.get_sample_value
    for proto in ("tcp", "udp", "icmp", "other"):
        c = TOTALS[proto]
        assert v("ironpost_packets_total", {"protocol": proto}) == c.packets
        assert v("ironpost_bytes_total", {"protocol": proto}) == c.bytes
        assert v("ironpost_dropped_packets_total", {"protocol": proto}) == c.drops
    assert v("ironpost_packets_total", {"protocol": "total"}) is None  # sum() is Prometheus' job
    assert v("ironpost_packets_total", {"protocol": "fragments"}) is None  # a row of its own, below
    assert v("ironpost_fragments_total") == 6
    assert v("ironpost_fragments_dropped_total") == 2
    assert v("ironpost_events_total") == 42
    assert v("ironpost_events_lost_total", {"reason": "ringbuf_full"}) == 5
    assert v("ironpost_events_lost_total", {"reason": "rate_limited"}) == 9
    assert v("ironpost_alerts_total", {"detector": "syn_flood"}) == 1
    assert v("ironpost_alerts_total", {"detector": "port_scan"}) == 2
    assert v("ironpost_alerts_active") == 1
    assert v("ironpost_rule_hits_total", {"rule_id": "block-scanner"}) == 17
    assert v("ironpost_rule_hits_total", {"rule_id": "watch-dns"}) == 4
    assert v("ironpost_blocklist_entries") == 3
    assert v("ironpost_blocklist_capacity") == 10_000
    assert v("ironpost_xdp_attached", {"interface": "eth0", "mode": "native"}) == 1
    assert v("ironpost_last_sample_timestamp_seconds") == 1_700_000_000.5
    assert v("ironpost_build_info", {"version": "1.2.3"}) == 1


def test_zeros_are_exported_before_anything_happens() -> None:
    """Every series exists from the start (at 0), so increase() sees the first alert and the first loss."""
    empty = EngineSnapshot(at=0.0, iface="eth1", mode="", attached=False)
    v = registry_for(empty).get_sample_value
    assert v("ironpost_packets_total", {"protocol": "udp"}) == 0
    assert v("ironpost_fragments_total") == 0 and v("ironpost_fragments_dropped_total") == 0
    assert v("ironpost_events_lost_total", {"reason": "ringbuf_full"}) == 0
    assert v("ironpost_alerts_total", {"detector": "syn_flood"}) == 0
    assert v("ironpost_alerts_total", {"detector": "port_scan"}) == 0
    assert v("ironpost_xdp_attached", {"interface": "eth1", "mode": "none"}) == 0


def test_no_label_carries_an_address() -> None:
    text = generate_latest(registry_for(snapshot(rule_hits={"r1": 1}))).decode()
    labels = set(re.findall(r"[{,]([a-z_]+)=", text))
    assert labels == {"protocol", "reason", "detector", "rule_id", "interface", "mode", "version"}


def test_the_collector_reads_the_latest_snapshot_at_each_scrape() -> None:
    current = [snapshot(events_delivered=1)]
    registry = engine_registry(lambda: current[0])
    assert registry.get_sample_value("ironpost_events_total") == 1
    current[0] = snapshot(events_delivered=2, attached=False)
    assert registry.get_sample_value("ironpost_events_total") == 2
    assert registry.get_sample_value("ironpost_xdp_attached", {"interface": "eth0", "mode": "native"}) == 0
    # A registry of its own: nothing of the process or the platform.
    names = {m.name for m in registry.collect()}
    assert not {n for n in names if not n.startswith("ironpost_")}


def _status(rule_id: str, hits: int) -> RuleStatus:
    return RuleStatus(rule=FilterRule(id=rule_id), map_name="BLOCKLIST", hits=hits)


def _build(builder: SnapshotBuilder, statuses: list[RuleStatus]) -> EngineSnapshot:
    sample = StatsSample(at=1.0, totals=TOTALS)
    return builder.build(sample, statuses, mode="native", attached=True, blocklist_entries=1,
                         blocklist_capacity=10, alerts_active=0)  # fmt: skip


def test_snapshot_counts_only_what_changed_and_agrees_with_a_full_count() -> None:
    """The builder counts again only the statuses that are not the last call's objects (a second of
    10,000 rules changes a few): nothing changed gives the very same table and counts; a changed
    status, a counter reset, an auto-block rule (a group) each give what a builder counting everything
    afresh from the same history gives."""
    auto = FilterRule(id="auto-198.18.0.9", src_ip=ipaddress.ip_network("198.18.0.9/32"), auto=True)
    rows = [_status(f"r{i}", i) for i in range(50)] + [RuleStatus(auto, "BLOCKLIST", 4)]
    history: list[list[RuleStatus]] = [list(rows)]
    builder = SnapshotBuilder("eth0")
    first = _build(builder, rows)
    same = _build(builder, list(rows))
    assert same.rules is first.rules and same.rule_hits is first.rule_hits  # nothing counted again
    for step in (
        lambda r: r.__setitem__(7, _status("r7", 70)),  # more hits
        lambda r: r.__setitem__(3, _status("r3", 1)),  # its counter restarted (a reload moved it)
        lambda r: r.__setitem__(50, RuleStatus(auto, "BLOCKLIST", 9)),  # the group's rule
        lambda r: r.__setitem__(3, _status("r3", 5)),
        lambda r: r.pop(10),  # deleted: counted afresh
    ):
        step(rows)
        history.append(list(rows))
        got = _build(builder, list(rows))
        fresh = SnapshotBuilder("eth0")
        for h in history:
            want = _build(fresh, h)
        assert got.rules == want.rules and dict(got.rule_hits) == dict(want.rule_hits)
    assert dict(got.rule_hits)["r3"] == 3 + 5 and dict(got.rule_hits)["auto"] == 9
    assert "r10" not in got.rule_hits and got.rule_hits["r7"] == 70
    assert got.rules is not first.rules


def _raised(detector: str, n: int) -> tuple[AlertChange, ...]:
    alert = Alert(n, detector, "medium", "198.18.0.2", "eth0", 30, 30, 10.0, 0.0, 0.0, "x")
    return (AlertChange("raised", alert),)


def test_counters_stay_monotonic_across_a_simulated_reload() -> None:
    """A reload that moves a rule to another slot resets its kernel counter; the exported one goes on."""
    builder = SnapshotBuilder("eth0")
    sample = StatsSample(at=1.0, totals=TOTALS)
    current: list[EngineSnapshot] = []
    registry = engine_registry(lambda: current[-1])

    def publish(statuses: list[RuleStatus]) -> dict[str, float | None]:
        current.append(
            builder.build(
                sample,
                statuses,
                mode="native",
                attached=True,
                blocklist_entries=1,
                blocklist_capacity=10,
                alerts_active=0,
            )  # fmt: skip
        )
        return {rid: registry.get_sample_value("ironpost_rule_hits_total", {"rule_id": rid}) for rid in ("a", "b")}

    assert publish([_status("a", 10), _status("b", 5)]) == {"a": 10, "b": 5}
    assert publish([_status("a", 25), _status("b", 5)]) == {"a": 25, "b": 5}
    # Reload: "a" changed in place (its kernel counter restarts), "b" removed.
    assert publish([_status("a", 0)]) == {"a": 25, "b": None}
    assert publish([_status("a", 3)]) == {"a": 28, "b": None}
    # Another reload brings "b" back: a new rule, counting from 0 (until session 24 it took on its old count, and
    # a source blocked again showed the earlier blocks' drops as its own).
    assert publish([_status("a", 3), _status("b", 0)]) == {"a": 28, "b": 0}
    assert publish([_status("a", 4), _status("b", 2)]) == {"a": 29, "b": 2}

    builder.count_alerts(_raised("port_scan", 1))
    builder.count_alerts((AlertChange("updated", _raised("port_scan", 1)[0].alert),))
    publish([_status("a", 4)])
    assert registry.get_sample_value("ironpost_alerts_total", {"detector": "port_scan"}) == 1
    builder.count_alerts(_raised("port_scan", 2))
    publish([_status("a", 4)])
    assert registry.get_sample_value("ironpost_alerts_total", {"detector": "port_scan"}) == 2
    assert registry.get_sample_value("ironpost_alerts_total", {"detector": "syn_flood"}) == 0


def test_promtool_finds_no_problem_in_the_exposition() -> None:
    registry = registry_for(snapshot(rule_hits={"block-scanner": 17, 'ünïcode "rule"': 1}))
    proc = subprocess.run(["promtool", "check", "metrics"], input=generate_latest(registry), capture_output=True)
    print(proc.stdout.decode(), proc.stderr.decode())
    assert proc.returncode == 0 and not proc.stdout.strip() and not proc.stderr.strip()


def test_the_openmetrics_exposition_parses_back() -> None:
    """Prometheus asks for OpenMetrics first; promtool reads only the text format, the parser reads this."""
    from prometheus_client.openmetrics.parser import text_string_to_metric_families

    text = generate_openmetrics(registry_for(snapshot())).decode()
    assert text.endswith("# EOF\n")
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["ironpost_packets"].type == "counter"
    assert families["ironpost_xdp_attached"].type == "gauge"


# --------------------------------------------------------------------------- #
# the names are a contract: README, alert rules and dashboard use only these

EXPORTED = {name for name, *_ in METRICS}
PROMETHEUS_OWN = {"up", "ALERTS"}


def _names_in(text: str) -> set[str]:
    return set(re.findall(r"\bironpost_[a-z_]+", text))


def test_the_readme_documents_every_metric_with_its_type_and_labels() -> None:
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Metrics", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) >= 4 and cells[0].startswith("`ironpost_"):
            rows[cells[0].strip("`")] = (cells[1], cells[2])
    assert set(rows) == EXPORTED
    for name, kind, labels, _ in METRICS:
        assert rows[name][0] == kind, name
        assert set(re.findall(r"`([a-z_]+)`", rows[name][1])) == set(labels), name


def test_alert_rules_and_dashboard_use_only_exported_metrics() -> None:
    rules = (DEPLOY / "ironpost-alerts.yml").read_text()
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = _names_in(rules) | _names_in("\n".join(exprs))
    assert used <= EXPORTED, used - EXPORTED
    # Prometheus adds _total to nothing: every counter in an expression is used by its exposed name.
    for name in used:
        assert name in EXPORTED
    for needed in ("ironpost_packets_total", "ironpost_bytes_total", "ironpost_dropped_packets_total",
                   "ironpost_events_lost_total", "ironpost_alerts_total", "ironpost_rule_hits_total",
                   "ironpost_xdp_attached"):  # fmt: skip
        assert needed in _names_in("\n".join(exprs)), needed


def test_the_dashboard_is_importable_json_with_the_panels_asked_for() -> None:
    dashboard = json.loads((DEPLOY / "grafana-dashboard.json").read_text())
    titles = {p["title"] for p in dashboard["panels"]}
    assert {"Packets/s by protocol", "Bits/s by protocol", "Drops/s by protocol", "Events/s: delivered and lost",
            "Alerts raised", "Top 10 rules by hits/s", "XDP attached"} <= titles  # fmt: skip
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    assert dashboard["uid"] and dashboard["schemaVersion"] >= 30
    assert any("topk(" in t["expr"] for p in dashboard["panels"] for t in p.get("targets", []))


def test_promtool_checks_and_unit_tests_the_alert_rules() -> None:
    check = subprocess.run(["promtool", "check", "rules", str(DEPLOY / "ironpost-alerts.yml")],
                           capture_output=True, text=True)  # fmt: skip
    print(check.stdout, check.stderr)
    assert check.returncode == 0, check.stdout + check.stderr
    assert "SUCCESS" in check.stdout
    unit = subprocess.run(["promtool", "test", "rules", "ironpost-alerts.test.yml"], cwd=DEPLOY,
                          capture_output=True, text=True)  # fmt: skip
    print(unit.stdout, unit.stderr)
    assert unit.returncode == 0, unit.stdout + unit.stderr


def test_the_deployed_scrape_config_is_valid(tmp_path: Path) -> None:
    """Syntax of deploy/prometheus.yml as shipped; in full with its /etc/prometheus files made in tmp_path."""
    shipped = DEPLOY / "prometheus.yml"
    syntax = subprocess.run(["promtool", "check", "config", "--syntax-only", str(shipped)],
                            capture_output=True, text=True)  # fmt: skip
    assert syntax.returncode == 0, syntax.stdout + syntax.stderr
    etc = tmp_path / "etc-prometheus"
    (etc / "ironpost-targets").mkdir(parents=True)
    (etc / "ironpost-alerts.yml").write_text((DEPLOY / "ironpost-alerts.yml").read_text())
    (etc / "ironpost-scrape.password").write_text("secret\n")
    (etc / "ironpost-targets" / "lab.yml").write_text('- targets: ["fw1.example.internal:9717"]\n')
    from support.metrics_lab import self_signed

    cert, _ = self_signed(tmp_path)
    (etc / "ironpost-ca.crt").write_text(cert.read_text())
    config = tmp_path / "prometheus.yml"
    config.write_text(shipped.read_text().replace("/etc/prometheus/", f"{etc}/"))
    full = subprocess.run(["promtool", "check", "config", str(config)], capture_output=True, text=True)
    print(full.stdout, full.stderr)
    assert full.returncode == 0, full.stdout + full.stderr


def test_the_systemd_unit_verifies_and_has_the_hardening_asked_for(tmp_path: Path) -> None:
    unit = (DEPLOY / "ironpost-tui@.service").read_text()
    settings: dict[str, list[str]] = {}
    for line in unit.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            settings.setdefault(key.strip(), []).append(value.strip())
    assert settings["Restart"] == ["on-failure"]
    # Started when filtering (READY=1, engine/service_notify.py): a reload waits for the start.
    assert settings["Type"] == ["notify"] and settings["NotifyAccess"] == ["main"]
    assert settings["ExecReload"] == ["/bin/kill -USR1 $MAINPID"]
    caps = {"CAP_BPF", "CAP_NET_ADMIN", "CAP_PERFMON", "CAP_SYS_ADMIN"}
    assert set(settings["CapabilityBoundingSet"][0].split()) == caps
    assert set(settings["AmbientCapabilities"][0].split()) == caps
    assert settings["ProtectSystem"] == ["strict"] and settings["NoNewPrivileges"] == ["yes"]
    rw = settings["ReadWritePaths"][0].split()
    assert {"/sys/fs/bpf", "/var/lib/ironpost", "/var/log/ironpost", "/run/ironpost"} <= set(rw)
    assert "--headless" in settings["ExecStart"][0]
    # systemd itself (when it is installed): the template instantiated, ExecStart on this venv's program.
    import shutil

    from support.agents import IRONPOST

    if shutil.which("systemd-analyze") is None:
        print("systemd-analyze is not installed: the unit was checked by its keys only")
        return
    instance = tmp_path / "ironpost-tui@eth0.service"
    instance.write_text(unit.replace("/opt/ironpost-tui/bin/ironpost-tui", " ".join(IRONPOST)))
    proc = subprocess.run(["systemd-analyze", "verify", "--man=no", str(instance)], capture_output=True, text=True)
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0 and "ironpost" not in proc.stderr, proc.stderr
