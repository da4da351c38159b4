"""Prometheus metrics: a collector that reads the engine's latest snapshot at
scrape time (the library's ``TrafficStats.to_prometheus()`` uses it too).

The metric names are a contract (README, "Metrics"): dashboards and alert
rules in deploy/ depend on them.  No label ever carries an IP address: a
flood from spoofed sources must not become a flood of time series.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from ironpost_tui.detectors import Detector
from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.model import FRAGMENTS, PROTOCOLS, ProtoCounters

DETECTORS = tuple(Detector)
LOSS_REASONS = ("ringbuf_full", "rate_limited")

# name (as exposed), type, labels, meaning: the README's table is checked against this.
METRICS: tuple[tuple[str, str, tuple[str, ...], str], ...] = (
    ("ironpost_packets_total", "counter", ("protocol",), "Packets seen by the XDP program"),
    ("ironpost_bytes_total", "counter", ("protocol",), "Bytes of the packets seen (whole frames)"),
    ("ironpost_dropped_packets_total", "counter", ("protocol",), "Packets dropped by a rule"),
    (
        "ironpost_fragments_total",
        "counter",
        (),
        "Packets judged without their ports: TCP/UDP fragments that do not carry them, IPv6 of unknown protocol",
    ),
    ("ironpost_fragments_dropped_total", "counter", (), "Packets judged without their ports that were dropped"),
    ("ironpost_events_total", "counter", (), "Events of matched packets delivered to user space"),
    ("ironpost_events_lost_total", "counter", ("reason",), "Events of matched packets not delivered"),
    ("ironpost_alerts_total", "counter", ("detector",), "Alerts raised (one per incident)"),
    ("ironpost_alerts_active", "gauge", (), "Alerts open now"),
    ("ironpost_rule_hits_total", "counter", ("rule_id",), "Packets credited to each rule in force"),
    ("ironpost_blocklist_entries", "gauge", (), "Entries in the BLOCKLIST map"),
    ("ironpost_blocklist_capacity", "gauge", (), "Capacity of the BLOCKLIST map"),
    ("ironpost_xdp_attached", "gauge", ("interface", "mode"), "1 while the program is attached, else 0"),
    ("ironpost_last_sample_timestamp_seconds", "gauge", (), "When the engine last read its counters"),
    ("ironpost_build_info", "gauge", ("version",), "Always 1; the version in a label"),
    (
        "ironpost_tick_seconds",
        "histogram",
        (),
        "How long the engine's ticks took: their work (rules, decisions, detectors), not their wait for events",
    ),
    (
        "ironpost_tick_cpu_seconds",
        "histogram",
        (),
        "CPU time of the engine's tick thread per tick: the tick's own work, without waits for a CPU",
    ),
    (
        "ironpost_tick_own_seconds",
        "histogram",
        (),
        "How long the engine's ticks took (wall clock) less their thread's wait for a CPU the host gave to other work",
    ),
    ("ironpost_tick_seconds_max", "gauge", (), "The longest tick since the engine started (wall clock)"),
    ("ironpost_crowdsec_decisions", "gauge", (), "CrowdSec LAPI decisions in force as drop rules"),
    ("ironpost_crowdsec_pulls_total", "counter", ("result",), "Pulls of the CrowdSec decision stream, by result"),
    (
        "ironpost_crowdsec_protected_skipped_total",
        "counter",
        (),
        "CrowdSec decisions skipped because they would drop a protected address",
    ),
    (
        "ironpost_crowdsec_last_pull_timestamp_seconds",
        "gauge",
        (),
        "When the CrowdSec decision stream was last pulled successfully",
    ),
)
_HELP = {name: meaning for name, _, _, meaning in METRICS}


def _counter(name: str, labels: tuple[str, ...] = ()) -> CounterMetricFamily:
    # prometheus_client adds the _total suffix back on exposition.
    return CounterMetricFamily(name.removesuffix("_total"), _HELP[name], labels=list(labels))


def _gauge(name: str, labels: tuple[str, ...] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, _HELP[name], labels=list(labels))


def protocol_families(totals: Mapping[str, ProtoCounters]) -> list[Metric]:
    """Packets, bytes and drops by protocol (tcp udp icmp other; 'total' is left to sum())."""
    packets = _counter("ironpost_packets_total", ("protocol",))
    nbytes = _counter("ironpost_bytes_total", ("protocol",))
    drops = _counter("ironpost_dropped_packets_total", ("protocol",))
    for proto in PROTOCOLS:
        c = totals.get(proto, ProtoCounters())
        packets.add_metric([proto], c.packets)
        nbytes.add_metric([proto], c.bytes)
        drops.add_metric([proto], c.drops)
    return [packets, nbytes, drops]


def fragment_families(totals: Mapping[str, ProtoCounters]) -> list[Metric]:
    """The packets judged without their ports (STATS' fragments row), and the drops among them."""
    c = totals.get(FRAGMENTS, ProtoCounters())
    seen = _counter("ironpost_fragments_total")
    seen.add_metric([], c.packets)
    dropped = _counter("ironpost_fragments_dropped_total")
    dropped.add_metric([], c.drops)
    return [seen, dropped]


class EngineCollector(Collector):
    """Reads ``snapshot()`` (an immutable EngineSnapshot, safe from any thread) at each scrape."""

    def __init__(self, snapshot: Callable[[], EngineSnapshot]) -> None:
        self._snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self._snapshot()
        yield from protocol_families(snap.totals)
        yield from fragment_families(snap.totals)

        events = _counter("ironpost_events_total")
        events.add_metric([], snap.events_delivered)
        yield events
        lost = _counter("ironpost_events_lost_total", ("reason",))
        for reason in LOSS_REASONS:
            lost.add_metric([reason], snap.events_lost.get(reason, 0))
        yield lost

        alerts = _counter("ironpost_alerts_total", ("detector",))
        for detector in DETECTORS:
            alerts.add_metric([detector], snap.alerts_total.get(detector, 0))
        yield alerts
        active = _gauge("ironpost_alerts_active")
        active.add_metric([], snap.alerts_active)
        yield active

        hits = _counter("ironpost_rule_hits_total", ("rule_id",))
        for rule_id, n in sorted(snap.rule_hits.items()):
            hits.add_metric([rule_id], n)
        yield hits

        entries = _gauge("ironpost_blocklist_entries")
        entries.add_metric([], snap.blocklist_entries)
        yield entries
        capacity = _gauge("ironpost_blocklist_capacity")
        capacity.add_metric([], snap.blocklist_capacity)
        yield capacity

        attached = _gauge("ironpost_xdp_attached", ("interface", "mode"))
        attached.add_metric([snap.iface, snap.mode or "none"], 1 if snap.attached else 0)
        yield attached
        sampled = _gauge("ironpost_last_sample_timestamp_seconds")
        sampled.add_metric([], snap.at)
        yield sampled

        if snap.ticks is not None:
            for name, hist in (
                ("ironpost_tick_seconds", snap.ticks.wall),
                ("ironpost_tick_cpu_seconds", snap.ticks.cpu),
                ("ironpost_tick_own_seconds", snap.ticks.own),
            ):
                if hist is None:  # no run delay kept by this kernel: no own seconds
                    continue
                family = HistogramMetricFamily(name, _HELP[name])
                buckets = [(str(le), float(n)) for le, n in hist.buckets] + [("+Inf", float(hist.count))]
                family.add_metric([], buckets, hist.total)
                yield family
            longest = _gauge("ironpost_tick_seconds_max")
            longest.add_metric([], snap.ticks.wall.longest)
            yield longest

        info = _gauge("ironpost_build_info", ("version",))
        info.add_metric([snap.version], 1)
        yield info
        if snap.crowdsec is not None:  # only with [crowdsec]
            cs = snap.crowdsec
            decisions = _gauge("ironpost_crowdsec_decisions")
            decisions.add_metric([], cs.decisions)
            yield decisions
            pulls = _counter("ironpost_crowdsec_pulls_total", ("result",))
            for result, n in sorted(cs.pulls.items()):
                pulls.add_metric([result], n)
            yield pulls
            skipped = _counter("ironpost_crowdsec_protected_skipped_total")
            skipped.add_metric([], cs.skipped_protected)
            yield skipped
            last = _gauge("ironpost_crowdsec_last_pull_timestamp_seconds")
            last.add_metric([], cs.last_pull or 0.0)
            yield last


def engine_registry(snapshot: Callable[[], EngineSnapshot]) -> CollectorRegistry:
    """A registry of its own (not the global one): only ironpost's metrics, nothing of the process."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(EngineCollector(snapshot))
    return registry
