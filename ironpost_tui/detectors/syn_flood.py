"""SYN floods: from one source, or from many (spoofed) sources at one target."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable

from ironpost_tui.detectors.alerts import MANY_SOURCES, Finding
from ironpost_tui.detectors.settings import Detector, SynFloodConfig
from ironpost_tui.detectors.targets import Target
from ironpost_tui.detectors.window import WindowSums

# Aggregate counter positions (abi.AGG_VALUE order).
SYN, TCP = 0, 1
# A scanner sends one or two SYNs per port; a flood hammers few ports.
SYNS_PER_PORT_FLOOD = 10


class SynFloodDetector:
    """The seed's rule: within ``window_secs`` at least ``threshold`` TCP packets,
    more than ``syn_ratio_threshold`` of them SYN without ACK.  Judged per source
    and, for spoofed floods no single source explains, per destination."""

    name = Detector.SYN_FLOOD

    def __init__(self, config: SynFloodConfig, target: str = "this host") -> None:
        self.config = config
        self.target = target

    def flooding(self, syn: int, tcp: int) -> bool:
        cfg = self.config
        return tcp >= cfg.threshold and tcp > 0 and syn / tcp > cfg.syn_ratio_threshold

    def evaluate(
        self,
        by_source: WindowSums,
        by_target: WindowSums,
        name: Callable[[Hashable], str],
        scanners: dict[Hashable, int] | None = None,
        targets: Callable[[Iterable[Hashable]], tuple[Target, ...]] = lambda _keys: (),
        port: Callable[[Hashable], int | None] = lambda _key: None,
    ) -> list[Finding]:
        """``scanners``: sources the port-scan detector flags, with their probed ports.
        A source sending about one SYN per port is scanning, not flooding: it gets
        the port-scan alert only.  ``targets``: the destinations some sources probed
        most (SourceTargets.named), named by a one-source alert.  ``port``: the port that took at least
        half a destination's SYNs (MANY_PORTS: none did; None: not known), named by a many-sources alert."""
        cfg = self.config
        found = []
        explained = 0
        scanners = scanners or {}
        for key, ports in scanners.items():
            counts = by_source.get(key)
            if counts is not None and counts[SYN] < ports * SYNS_PER_PORT_FLOOD:
                explained += counts[SYN]  # a scanner's SYNs: its own incident, not a flood
        # A flood is at least ``threshold`` TCP packets: the window's other keys are not looked at.
        for key, counts in by_source.at_least((TCP,), cfg.threshold):
            syn, tcp = counts[SYN], counts[TCP]
            ports = scanners.get(key, 0)
            if ports and syn < ports * SYNS_PER_PORT_FLOOD:
                continue  # a scanner's (counted above)
            if self.flooding(syn, tcp):
                explained += syn
                found.append(
                    Finding(
                        self.name,
                        (name(key), self.target),
                        "high",
                        syn,
                        cfg.window_secs,
                        f"{syn} SYNs in {tcp} TCP packets within {cfg.window_secs:g} s",
                        targets([key]),
                    )
                )
        for key, counts in by_target.at_least((TCP,), cfg.threshold):
            syn, tcp = counts[SYN], counts[TCP]
            # A target whose SYNs mostly come from sources already flagged is
            # the same incident; otherwise the sources are many (spoofed).
            if self.flooding(syn, tcp) and explained * 2 < syn:
                found.append(
                    Finding(
                        self.name,
                        (MANY_SOURCES, name(key)),
                        "critical",
                        syn,
                        cfg.window_secs,
                        f"{syn} SYNs from many sources in {tcp} TCP packets within {cfg.window_secs:g} s",
                        (Target.of(name(key), port(key)),),
                    )
                )
        return found
