"""The seed's ``TrafficStats``: what ``get_stats()`` returns, and its Prometheus text.

One sample of the kernel's counters (``STATS``, ``EVENT_STATS``) with the rates since the sample
before, and the engine snapshot published with it: ``to_prometheus()`` is exactly what the
agent's ``/metrics`` serves for that snapshot (the same collector, ``metrics.collector``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from prometheus_client import generate_latest

from ironpost_tui.engine.snapshot import EngineSnapshot
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.model import ProtoCounters, ProtoRates, StatsSample


@dataclass(frozen=True)
class ProtocolStats:
    """One protocol's counters since the program was loaded, and its rates over the last sample interval."""

    packets: int = 0
    bytes: int = 0
    drops: int = 0
    pps: float = 0.0  # packets per second
    bps: float = 0.0  # bits per second
    drops_ps: float = 0.0  # drops per second

    @classmethod
    def of(cls, counters: ProtoCounters, rates: ProtoRates) -> ProtocolStats:
        return cls(counters.packets, counters.bytes, counters.drops, rates.pps, rates.bps, rates.drops_ps)


@dataclass(frozen=True)
class TrafficStats:
    """``stats.tcp.packets``, ``stats.udp.bytes``, ``stats.tcp.pps``... (``icmp`` counts ICMPv6 too;
    ``total`` is every packet), the events, the rules' hits, and ``to_prometheus()``."""

    tcp: ProtocolStats = ProtocolStats()
    udp: ProtocolStats = ProtocolStats()
    icmp: ProtocolStats = ProtocolStats()
    other: ProtocolStats = ProtocolStats()
    total: ProtocolStats = ProtocolStats()
    events_delivered: int = 0  # events of matched packets the kernel handed to the engine
    events_lost: Mapping[str, int] = field(default_factory=dict)  # by reason: ringbuf_full, rate_limited
    rule_hits: Mapping[str, int] = field(default_factory=dict)  # by /metrics' rule_id (its groups summed) -> packets
    at: float = 0.0  # Unix time of the sample
    snapshot: EngineSnapshot | None = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, snapshot: EngineSnapshot, sample: StatsSample | None = None) -> TrafficStats:
        """From a published snapshot; ``sample`` (the one it was published with) adds the rates."""
        rates = sample.rates if sample is not None else {}

        def proto(name: str) -> ProtocolStats:
            return ProtocolStats.of(snapshot.totals.get(name, ProtoCounters()), rates.get(name, ProtoRates()))

        return cls(
            tcp=proto("tcp"),
            udp=proto("udp"),
            icmp=proto("icmp"),
            other=proto("other"),
            total=proto("total"),
            events_delivered=snapshot.events_delivered,
            events_lost=snapshot.events_lost,
            rule_hits=snapshot.rule_hits,
            at=snapshot.at,
            snapshot=snapshot,
        )

    def to_prometheus(self) -> str:
        """The Prometheus text exposition of this moment: the agent's ``/metrics`` body for it."""
        snapshot = self.snapshot
        if snapshot is None:
            snapshot = EngineSnapshot(at=self.at, iface="", mode="", attached=False)
        return generate_latest(engine_registry(lambda: snapshot)).decode("utf-8")
