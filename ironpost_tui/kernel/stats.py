"""Per-protocol totals and rates from STATS and EVENT_STATS."""

from __future__ import annotations

from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.model import ProtoCounters, ProtoRates, StatsSample


def read_totals(dp: Datapath) -> dict[str, ProtoCounters]:
    """STATS summed over CPUs, by row name (tcp udp icmp other total, and fragments)."""
    totals = {}
    for index, name in abi.STATS_ROWS.items():
        packets = nbytes = drops = 0
        for raw in dp.percpu_entries(MapName.STATS, index):
            p, b, d = abi.PROTO_STATS.unpack(raw)
            packets += p
            nbytes += b
            drops += d
        totals[name] = ProtoCounters(packets, nbytes, drops)
    return totals


def read_event_counts(dp: Datapath) -> tuple[int, dict[str, int]]:
    """Events delivered, and events lost by reason, summed over CPUs."""

    def total(index: int) -> int:
        return sum(int.from_bytes(raw[:8], "little") for raw in dp.percpu_entries(MapName.EVENT_STATS, index))

    lost = {reason: total(index) for index, reason in abi.EVENT_LOSS_REASONS.items()}
    return total(abi.EVSTAT_DELIVERED), lost


class StatsSampler:
    """Turns successive readings into samples with rates over a monotonic clock."""

    def __init__(self) -> None:
        self._prev: StatsSample | None = None

    def sample(self, dp: Datapath, now: float) -> StatsSample:
        totals = read_totals(dp)
        delivered, lost = read_event_counts(dp)
        rates = {}
        prev = self._prev
        for name, cur in totals.items():
            if prev is None or now <= prev.at:
                rates[name] = ProtoRates()
                continue
            dt = now - prev.at
            old = prev.totals[name]
            rates[name] = ProtoRates(
                pps=(cur.packets - old.packets) / dt,
                bps=(cur.bytes - old.bytes) * 8 / dt,
                drops_ps=(cur.drops - old.drops) / dt,
            )
        sample = StatsSample(at=now, totals=totals, rates=rates, events_delivered=delivered, events_lost=lost)
        self._prev = sample
        return sample
