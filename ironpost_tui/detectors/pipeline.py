"""One detection tick: read the kernel's sketches, slide the windows, judge, keep the alerts."""

from __future__ import annotations

import functools
import ipaddress
import time
from collections.abc import Callable, Hashable, Mapping

from ironpost_tui.detectors.alerts import QUIET_SECS, AlertBook, AlertChange, Block, Live
from ironpost_tui.detectors.counters import Counts
from ironpost_tui.detectors.pending import PendingCounts
from ironpost_tui.detectors.port_scan import PortScanDetector
from ironpost_tui.detectors.settings import Detector, PortScanConfig, SynFloodConfig
from ironpost_tui.detectors.sketch import SketchReader
from ironpost_tui.detectors.syn_flood import SynFloodDetector
from ironpost_tui.detectors.targets import ProbePorts, Probes, SourceTargets
from ironpost_tui.detectors.window import WindowSums, diff_counts
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.datapath import Datapath

SYN, TCP, NEW_TCP, NEW_UDP = 0, 1, 2, 3  # positions in a source's counts: (syn, tcp, new_tcp_ports, new_udp_ports)
PENDING_MAX = 16_384  # sources not yet interesting, remembered at most (per detector)


def address_of(key: Hashable) -> str:
    assert isinstance(key, bytes)
    addr, family = abi.AGG_KEY.unpack(key)
    return str(ipaddress.IPv4Address(addr[:4]) if family == abi.FAMILY_V4 else ipaddress.IPv6Address(addr))


@functools.lru_cache(maxsize=65_536)  # the sources of open alerts (a storm's too), looked up every tick
def key_of(address: str) -> bytes | None:
    """An address as the sketches key it (address_of's inverse); None for what is not one."""
    try:
        addr = ipaddress.ip_address(address)
    except ValueError:
        return None
    family = abi.FAMILY_V4 if addr.version == 4 else abi.FAMILY_V6
    return abi.AGG_KEY.pack(addr.packed.ljust(16, b"\0"), family)


class _Admission:
    """Deltas of a key reach its window only once the key has sent ``minimum`` (by ``metric``) within
    one window: a spoofed flood's one-packet sources (a new one per packet) cost a way each of a table
    made with the pipeline (detectors/pending.py), not a window each, nor memory.  What a key sent before
    it became interesting is credited at once, so a slow source can reach a threshold up to a quarter early."""

    def __init__(self, window: WindowSums, minimum: int, metric: Callable[[Counts], int]) -> None:
        self.window = window
        self.minimum = minimum
        self.metric = metric
        self._pending = PendingCounts(PENDING_MAX, metric)
        self._since = 0.0

    def add(self, deltas: dict[Hashable, Counts], now: float) -> None:
        if now - self._since > self.window.window:
            self._pending.clear()
            self._since = now
        admitted: dict[Hashable, Counts] = {}
        add, tracks, metric, minimum = self._pending.add, self.window.tracks, self.metric, self.minimum
        for key, delta in deltas.items():  # a spoofed flood's every source: as few steps as can be
            if tracks(key):
                admitted[key] = delta
                continue
            assert isinstance(key, bytes)  # the sketches' struct agg_key
            total = add(key, delta, minimum)  # not held once it reaches the minimum
            if metric(total) >= minimum:
                admitted[key] = total
        self.window.add(admitted, now)


class DetectionPipeline:
    def __init__(
        self, syn_flood: SynFloodConfig, port_scan: PortScanConfig, target: str, quiet_secs: float = QUIET_SECS
    ) -> None:
        self.syn_flood = SynFloodDetector(syn_flood, target)
        self.port_scan = PortScanDetector(port_scan, target)
        self._syn_src = WindowSums(syn_flood.window_secs)
        self._syn_dst = WindowSums(syn_flood.window_secs, width=2)
        self._scan_src = WindowSums(port_scan.window_secs)
        self._syn_admit = _Admission(self._syn_src, max(1, syn_flood.threshold // 4), lambda c: c[TCP])
        self._scan_admit = _Admission(
            self._scan_src, max(1, port_scan.port_threshold // 4), lambda c: c[NEW_TCP] + c[NEW_UDP]
        )
        # The destinations each watched source probes, over each detector's window: what its alerts name.
        self._syn_targets = SourceTargets(syn_flood.window_secs)
        self._scan_targets = SourceTargets(port_scan.window_secs)
        # Each destination's SYN port as last read (a port or MANY_PORTS), for those its window keeps.
        self._dst_ports: dict[Hashable, int] = {}
        self._prev: tuple[dict[Hashable, Counts], dict[Hashable, Counts]] = ({}, {})
        self._reader: SketchReader | None = None
        self.book = AlertBook(quiet_secs)

    def feed(
        self,
        sources: dict[Hashable, Counts],
        targets: dict[Hashable, Counts],
        now: float,
        wall: float,
        probes: Probes | None = None,
        blocks: Mapping[str, Block] | None = None,
        probe_ports: ProbePorts | None = None,
        destination_ports: Mapping[Hashable, int] | None = None,
    ) -> list[AlertChange]:
        """One tick from snapshots of cumulative counters (a replay, the tests); ``now`` is
        monotonic, ``wall`` the time to stamp alerts with; ``probes``: what each (source,
        destination) probed since the last tick; the ports as feed_deltas takes them."""
        deltas = tuple(diff_counts(prev, cur) for prev, cur in zip(self._prev, (sources, targets), strict=True))
        self._prev = (dict(sources), dict(targets))
        return self.feed_deltas(deltas[0], deltas[1], now, wall, probes, blocks, probe_ports, destination_ports)

    def feed_deltas(
        self,
        sources: dict[Hashable, Counts],
        targets: dict[Hashable, Counts],
        now: float,
        wall: float,
        probes: Probes | None = None,
        blocks: Mapping[str, Block] | None = None,
        probe_ports: ProbePorts | None = None,
        destination_ports: Mapping[Hashable, int] | None = None,
    ) -> list[AlertChange]:
        """One tick from what each source and target sent since the last; ``blocks``: the drop
        rule holding on each source address, with its drops (what the sketches no longer count);
        ``probe_ports``, ``destination_ports``: the ports the sketch read names (SketchDeltas)."""
        self._expire(now)
        self._admit(sources, targets, now, probes, probe_ports, destination_ports)
        return self._evaluate(sources, now, wall, blocks)

    def _expire(self, now: float) -> None:
        """What left the windows, before a tick's admission: a read fed whole or in parts meets the same
        windows (a key whose last bucket leaves now is no longer watched, in every part)."""
        for window in (self._syn_src, self._syn_dst, self._scan_src):
            window.expire(now)

    def _admit(
        self,
        sources: dict[Hashable, Counts],
        targets: dict[Hashable, Counts],
        now: float,
        probes: Probes | None,
        probe_ports: ProbePorts | None,
        destination_ports: Mapping[Hashable, int] | None,
    ) -> None:
        """Deltas into the windows: a tick's whole, or a part of its read (each key whole in one part)."""
        self._syn_admit.add(sources, now)
        self._scan_admit.add({k: v for k, v in sources.items() if v[NEW_TCP] or v[NEW_UDP]}, now)
        self._syn_dst.add(targets, now)
        # After admission: a source admitted this tick has this tick's destinations counted.
        self._syn_targets.add(probes or {}, now, self._syn_src.tracks, probe_ports)
        self._scan_targets.add(probes or {}, now, self._scan_src.tracks, probe_ports)
        if destination_ports:
            self._dst_ports.update(destination_ports)

    def _evaluate(
        self, sent: Mapping[Hashable, Counts], now: float, wall: float, blocks: Mapping[str, Block] | None
    ) -> list[AlertChange]:
        """The windows judged, once a tick; ``sent``: this tick's deltas of (at least) the sources of
        the open alerts."""
        if len(self._dst_ports) > len(self._syn_dst):
            tracked = self._syn_dst.tracks
            self._dst_ports = {k: p for k, p in self._dst_ports.items() if tracked(k)}
        scanners = self.port_scan.scanners(self._scan_src)
        findings = self.syn_flood.evaluate(
            self._syn_src, self._syn_dst, address_of, scanners, self._syn_targets.named, self._dst_ports.get
        )
        findings += self.port_scan.evaluate(self._scan_src, address_of, self._scan_targets.named)
        syn_window, scan_window = self._syn_src, self._scan_src

        def live(detector: Detector, source: str) -> Live | None:
            key = key_of(source)
            if key is None:
                return None
            delta = sent.get(key)
            sending = delta is not None and any(delta)
            if detector is Detector.SYN_FLOOD:
                counts = syn_window.get(key)
                return Live(sending, counts[SYN] if counts is not None else 0)
            counts = scan_window.get(key)
            return Live(sending, counts[NEW_TCP] + counts[NEW_UDP] if counts is not None else 0)

        return self.book.update(findings, wall, live, blocks)

    def start(self, dp: Datapath) -> None:
        """Read ``dp``'s sketches from now on; a first read publishes TICK before traffic is attached."""
        self._reader = SketchReader(dp)
        self._reader.read(time.monotonic_ns())

    def tick(
        self, dp: Datapath, now: float, wall: float, blocks: Mapping[str, Block] | None = None
    ) -> list[AlertChange]:
        if self._reader is None:
            self.start(dp)
        assert self._reader is not None
        # The read a part at a time (SketchReader.read_parts): a spoofed flood changes every way of the
        # sketch each read, and a part's objects are freed before the next part's are made.
        # A source shed from a full window by an earlier part is new to a later one (pending again), where a
        # whole read would have put it back at once: either way its window's history is gone.
        alerting = {k for a in self.book.sources() if (k := key_of(a)) is not None}
        sent: dict[Hashable, Counts] = {}
        self._expire(now)
        for part in self._reader.read_parts(time.monotonic_ns()):
            self._admit(part.sources, part.destinations, now, part.probes, part.probe_ports, part.destination_ports)
            got = part.sources
            if len(alerting) < len(got):
                sent.update((k, d) for k in alerting if (d := got.get(k)) is not None)
            else:
                sent.update((k, d) for k, d in got.items() if k in alerting)
            del part, got  # the part freed before the next is made
        return self._evaluate(sent, now, wall, blocks)
