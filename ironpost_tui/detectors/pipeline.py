"""One detection tick: read the aggregates, slide the windows, judge, keep the alerts."""

from __future__ import annotations

import ipaddress
from collections.abc import Hashable

from .. import abi
from ..datapath import Datapath
from ..detector_config import PortScanConfig, SynFloodConfig
from .alerts import AlertBook, AlertChange
from .port_scan import PortScanDetector
from .syn_flood import SynFloodDetector
from .window import Counts, WindowSums

TCP, NEW_TCP, NEW_UDP = 1, 2, 3  # positions in an aggregate's counts


def read_aggregates(dp: Datapath, name: str) -> dict[Hashable, Counts]:
    """An aggregate map as {raw key: (syn, tcp, new_tcp_ports, new_udp_ports)}, in one batch read."""
    keys, values, count = dp.map_dump(name)
    ks, vs = abi.AGG_KEY.size, abi.AGG_VALUE.size
    out: dict[Hashable, Counts] = {}
    for i in range(count):
        out[keys[i * ks : (i + 1) * ks]] = abi.AGG_VALUE.unpack_from(values, i * vs)[:4]
    return out


def address_of(key: Hashable) -> str:
    assert isinstance(key, bytes)
    addr, family = abi.AGG_KEY.unpack(key)
    return str(ipaddress.IPv4Address(addr[:4]) if family == abi.FAMILY_V4 else ipaddress.IPv6Address(addr))


class DetectionPipeline:
    def __init__(self, syn_flood: SynFloodConfig, port_scan: PortScanConfig, target: str) -> None:
        self.syn_flood = SynFloodDetector(syn_flood, target)
        self.port_scan = PortScanDetector(port_scan, target)
        self._syn_src = WindowSums(syn_flood.window_secs)
        self._syn_dst = WindowSums(syn_flood.window_secs)
        self._scan_src = WindowSums(port_scan.window_secs)
        self.book = AlertBook()

    def feed(
        self, sources: dict[Hashable, Counts], targets: dict[Hashable, Counts], now: float, wall: float
    ) -> list[AlertChange]:
        """One tick from aggregate snapshots; ``now`` is monotonic, ``wall`` the time to stamp alerts with."""
        # A source is windowed only once its counters since it entered the map
        # reach a quarter of a threshold: a spoofed flood's one-packet sources
        # (a new one per packet) cost a comparison each, not a window each.
        # (What a source sent before it became interesting is credited at once,
        # so a slow source can reach a threshold up to a quarter early.)
        syn_min = max(1, self.syn_flood.config.threshold // 4)
        port_min = max(1, self.port_scan.config.port_threshold // 4)
        self._syn_src.update({k: v for k, v in sources.items() if v[TCP] >= syn_min}, now)
        self._syn_dst.update(targets, now)
        self._scan_src.update({k: v for k, v in sources.items() if v[NEW_TCP] + v[NEW_UDP] >= port_min}, now)
        scanners = self.port_scan.scanners(self._scan_src)
        findings = self.syn_flood.evaluate(self._syn_src, self._syn_dst, address_of, scanners)
        findings += self.port_scan.evaluate(self._scan_src, address_of)
        return self.book.update(findings, wall)

    def tick(self, dp: Datapath, now: float, wall: float) -> list[AlertChange]:
        return self.feed(read_aggregates(dp, "SRC_AGG"), read_aggregates(dp, "DST_AGG"), now, wall)
