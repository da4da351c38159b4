"""SYN-flood and port-scan detection over kernel-side aggregates.

The XDP program counts, per source and per destination, what the detectors
need (SRC_SKETCH, DST_SKETCH); these modules keep the windows and decide.
Pure functions of (aggregates, now): the clock is always passed in.  The sketch
reader (``sketch``) and the detectors' settings live here too.

May import: ``kernel``, ``errors``, ``model``.
"""

from ironpost_tui.detectors.alerts import Alert, AlertBook, AlertChange, AlertState, Block, ChangeKind, Finding, Live
from ironpost_tui.detectors.pipeline import DetectionPipeline
from ironpost_tui.detectors.port_scan import PortScanDetector
from ironpost_tui.detectors.settings import Detector
from ironpost_tui.detectors.syn_flood import SynFloodDetector
from ironpost_tui.detectors.window import WindowSums

__all__ = [
    "Alert",
    "AlertBook",
    "AlertChange",
    "AlertState",
    "Block",
    "ChangeKind",
    "DetectionPipeline",
    "Detector",
    "Finding",
    "Live",
    "PortScanDetector",
    "SynFloodDetector",
    "WindowSums",
]
