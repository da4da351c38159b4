"""SYN-flood and port-scan detection over kernel-side aggregates.

The XDP program counts, per source and per destination, what the detectors
need (SRC_SKETCH, DST_SKETCH); these modules keep the windows and decide.
Pure functions of (aggregates, now): the clock is always passed in.
"""

from .alerts import Alert, AlertBook, AlertChange, Finding
from .pipeline import DetectionPipeline
from .port_scan import PortScanDetector
from .syn_flood import SynFloodDetector
from .window import WindowSums

__all__ = [
    "Alert",
    "AlertBook",
    "AlertChange",
    "DetectionPipeline",
    "Finding",
    "PortScanDetector",
    "SynFloodDetector",
    "WindowSums",
]
