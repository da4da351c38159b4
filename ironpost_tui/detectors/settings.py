"""Settings of the detectors ([detectors.syn_flood], [detectors.port_scan]); the seed's names and defaults."""

from __future__ import annotations

from dataclasses import dataclass

from ironpost_tui.model import StrEnum


class Detector(StrEnum):
    """The detectors, by the names alerts, metric labels and [detectors.X] tables use."""

    SYN_FLOOD = "syn_flood"
    PORT_SCAN = "port_scan"


@dataclass(frozen=True)
class SynFloodConfig:
    """A source is a SYN flood when, within ``window_secs``, it sends at least
    ``threshold`` TCP packets of which more than ``syn_ratio_threshold`` are SYNs
    without ACK (the seed's rule; a ratio exactly at the threshold is not a flood)."""

    window_secs: float = 10
    threshold: int = 100
    syn_ratio_threshold: float = 0.8
    auto_block: bool = False
    block_ttl: float = 600  # seconds an auto-block rule lives


@dataclass(frozen=True)
class PortScanConfig:
    """A source is scanning when it reaches ``port_threshold`` distinct
    destination ports within ``window_secs``."""

    window_secs: float = 60
    port_threshold: int = 20
    auto_block: bool = False
    block_ttl: float = 600  # seconds an auto-block rule lives


DetectorConfig = SynFloodConfig | PortScanConfig
