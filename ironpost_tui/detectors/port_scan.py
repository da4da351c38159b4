"""Port scans: one source probing many destination ports (TCP SYN, connect,
FIN, NULL and Xmas scans; UDP scans)."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from ironpost_tui.detectors.alerts import MANY_SOURCES, Finding
from ironpost_tui.detectors.settings import Detector, PortScanConfig
from ironpost_tui.detectors.targets import Target
from ironpost_tui.detectors.window import WindowSums

# Aggregate counter positions (abi.AGG_VALUE order).
NEW_TCP_PORTS, NEW_UDP_PORTS = 2, 3
# More scanning sources than this at once are one distributed scan.
MAX_SCANNERS = 32


class PortScanDetector:
    """The seed's rule: at least ``port_threshold`` distinct destination ports
    within ``window_secs``.  The kernel counts a (source, port) pair once per
    window, and only for probes: TCP without ACK, UDP not answering from a
    service port, so a busy client's replies never look like a scan."""

    name = Detector.PORT_SCAN

    def __init__(self, config: PortScanConfig, target: str) -> None:
        self.config = config
        self.target = target

    def scanners(self, by_source: WindowSums) -> dict[Hashable, int]:
        """Sources at or over the threshold, with their probed-port counts."""
        at_least = by_source.at_least((NEW_TCP_PORTS, NEW_UDP_PORTS), self.config.port_threshold)
        return {key: counts[NEW_TCP_PORTS] + counts[NEW_UDP_PORTS] for key, counts in at_least}

    def evaluate(
        self,
        by_source: WindowSums,
        name: Callable[[Hashable], str],
        targets: Callable[[Iterable[Hashable]], tuple[Target, ...]] = lambda _keys: (),
    ) -> list[Finding]:
        """``targets``: the destinations some sources probed most (SourceTargets.named): the
        scanned host(s), of one scanner or of a distributed scan's sources together, each named as
        probed on many ports (``ADDRESS:*``: a scan is; the port most probed is a flood's news)."""
        cfg = self.config
        scanners = self.scanners(by_source)
        if len(scanners) > MAX_SCANNERS:
            # A distributed (or spoofed) scan: one incident, not an alert storm.
            ports = sum(scanners.values())
            return [
                Finding(
                    self.name,
                    (MANY_SOURCES, self.target),
                    "high",
                    ports,
                    cfg.window_secs,
                    f"{len(scanners)} sources probed {ports} ports within {cfg.window_secs:g} s",
                    tuple(t.scanned() for t in targets(scanners)),
                )
            ]
        found = []
        for key, counts in by_source.at_least((NEW_TCP_PORTS, NEW_UDP_PORTS), cfg.port_threshold):
            tcp_ports, udp_ports = counts[NEW_TCP_PORTS], counts[NEW_UDP_PORTS]
            ports = tcp_ports + udp_ports
            kinds = " and ".join(k for k, n in (("TCP", tcp_ports), ("UDP", udp_ports)) if n)
            found.append(
                Finding(
                    self.name,
                    (name(key), self.target),
                    "medium",
                    ports,
                    cfg.window_secs,
                    f"{ports} {kinds} ports probed within {cfg.window_secs:g} s",
                    tuple(t.scanned() for t in targets([key])),
                )
            )
        return found
