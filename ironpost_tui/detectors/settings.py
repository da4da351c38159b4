"""Settings of the detectors ([detectors.syn_flood], [detectors.port_scan]; auto-block's limits in [detectors]);
the seed's names and defaults."""

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


@dataclass(frozen=True)
class AutoBlockLimits:
    """The keys of [detectors] itself.  How many sources auto-block may block (max_blocks_per_minute,
    max_auto_blocks, max_incident_sources); past a limit it blocks nothing more until the storm is
    over.  And how long an incident's source must stay silent before its alert is resolved
    (quiet_secs): until then an expired auto-block is renewed when the source sends again."""

    max_blocks_per_minute: int = 30  # new auto-blocks within any 60 s
    max_auto_blocks: int = 1_000  # auto-block rules in force at once
    max_incident_sources: int = 32  # distinct sources one detector raised within its window
    quiet_secs: float = 30  # an alert is resolved after its source sent nothing for this long (alerts.QUIET_SECS)


DetectorConfig = SynFloodConfig | PortScanConfig
