"""The seed's ``SynFloodDetector`` and ``PortScanDetector``, made with their configs.

They are the engine's own detectors (``detectors.syn_flood``, ``detectors.port_scan``), which
judge counts the kernel keeps per source and destination (exact whatever the event sampling
drops). Hand one to ``EbpfEngine.builder().detector(...)`` to run the engine with its settings;
its alerts come out of ``engine.alerts``. Bad settings raise ``ConfigError`` when it is made.
"""

from __future__ import annotations

from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.durations import MAX_SECONDS
from ironpost_tui.detectors import syn_flood
from ironpost_tui.detectors.settings import PortScanConfig, SynFloodConfig

# The configuration file's ranges ([detectors.syn_flood], [detectors.port_scan]: config.settings).
WINDOW_SECS = (0.1, 3600.0)
SYN_THRESHOLD = (1, 1_000_000_000)
PORT_THRESHOLD = (1, 65_535)


def _within(errors: list[str], name: str, value: object, lo: float, hi: float, whole: bool = False) -> None:
    number = isinstance(value, int) or (isinstance(value, float) and not whole)
    if isinstance(value, bool) or not isinstance(value, int | float) or not number:
        errors.append(f"{name} must be {'an integer' if whole else 'a number'}, got {value!r}")
    elif not lo <= value <= hi:  # NaN fails too
        errors.append(f"{name} {value} is out of range: it must be {lo:g} to {hi:g}")


def check_syn_flood(config: SynFloodConfig) -> None:
    errors: list[str] = []
    _within(errors, "SynFloodConfig.window_secs", config.window_secs, *WINDOW_SECS)
    _within(errors, "SynFloodConfig.threshold", config.threshold, *SYN_THRESHOLD, whole=True)
    _within(errors, "SynFloodConfig.syn_ratio_threshold", config.syn_ratio_threshold, 0.0, 1.0)
    _within(errors, "SynFloodConfig.block_ttl", config.block_ttl, 1e-9, MAX_SECONDS)
    if errors:
        raise ConfigError("\n".join(errors))


def check_port_scan(config: PortScanConfig) -> None:
    errors: list[str] = []
    _within(errors, "PortScanConfig.window_secs", config.window_secs, *WINDOW_SECS)
    _within(errors, "PortScanConfig.port_threshold", config.port_threshold, *PORT_THRESHOLD, whole=True)
    _within(errors, "PortScanConfig.block_ttl", config.block_ttl, 1e-9, MAX_SECONDS)
    if errors:
        raise ConfigError("\n".join(errors))


class SynFloodDetector:
    """Within ``window_secs``, at least ``threshold`` TCP packets of which more than
    ``syn_ratio_threshold`` are SYN without ACK (a ratio exactly at the threshold is not a flood)."""

    def __init__(self, config: SynFloodConfig | None = None) -> None:
        self.config = config if config is not None else SynFloodConfig()
        check_syn_flood(self.config)
        self._rule = syn_flood.SynFloodDetector(self.config)

    def is_flood(self, syn: int, tcp: int) -> bool:
        """The seed's rule on one window's counts: ``syn`` SYNs without ACK among ``tcp`` TCP packets."""
        return self._rule.flooding(syn, tcp)

    def __repr__(self) -> str:
        return f"SynFloodDetector({self.config!r})"


class PortScanDetector:
    """At least ``port_threshold`` newly probed destination ports within ``window_secs``."""

    def __init__(self, config: PortScanConfig | None = None) -> None:
        self.config = config if config is not None else PortScanConfig()
        check_port_scan(self.config)

    def is_scan(self, ports: int) -> bool:
        """The seed's rule on one window's count of probed destination ports."""
        return ports >= self.config.port_threshold  # as detectors.port_scan judges it

    def __repr__(self) -> str:
        return f"PortScanDetector({self.config!r})"
