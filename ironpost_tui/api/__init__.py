"""The library API: the seed's ``EbpfEngine`` and its values, on asyncio (README, "Use as a library").

What ``ironpost_tui`` exports at its top level comes from here, and is the project's public surface;
every other module is internal.  ``engine`` is the facade over the engine the console and the agent
run, ``runner`` the thread it runs in, ``channel`` the bounded event channel, ``config``, ``rules``,
``stats`` and ``detectors`` the seed's values.

May import: ``records``, ``metrics``, ``engine``, ``config``, ``rules``, ``detectors``, ``kernel``,
``errors``, ``model``, ``files``, ``text``.  Never ``ui``, Textual, Rich or plotext.
"""

import logging

from ironpost_tui.api.channel import Receiver
from ironpost_tui.api.config import EngineConfig
from ironpost_tui.api.detectors import PortScanDetector, SynFloodDetector
from ironpost_tui.api.engine import EbpfEngine, EbpfEngineBuilder
from ironpost_tui.api.rules import FilterRule, RuleAction
from ironpost_tui.api.runner import NotRunning
from ironpost_tui.api.stats import ProtocolStats, TrafficStats
from ironpost_tui.config.check import ConfigError
from ironpost_tui.detectors.alerts import Alert, AlertChange, ChangeKind
from ironpost_tui.detectors.settings import AutoBlockLimits, PortScanConfig, SynFloodConfig
from ironpost_tui.engine.engine import StartReport
from ironpost_tui.errors import (
    AlreadyRunning,
    BadInterfaceName,
    BccMissing,
    BlocklistFull,
    ExitStatus,
    HeadersMissing,
    InterfaceGone,
    IronpostError,
    LibbpfMissing,
    LoadFailed,
    ModeUnsupported,
    NoSuchInterface,
    NotPermitted,
    PinMismatch,
    ProgramDetached,
    RuleRefused,
    XdpBusy,
)
from ironpost_tui.model import PacketEvent, Verdict
from ironpost_tui.rules.control import LockoutRefused

# A library logs to whatever its user configured, and prints nothing when nothing is.
for _name in ("ironpost", "ironpost_tui"):
    logging.getLogger(_name).addHandler(logging.NullHandler())

__all__ = [
    "Alert",
    "AlertChange",
    "AlreadyRunning",
    "AutoBlockLimits",
    "BadInterfaceName",
    "BccMissing",
    "BlocklistFull",
    "ChangeKind",
    "ConfigError",
    "EbpfEngine",
    "EbpfEngineBuilder",
    "EngineConfig",
    "ExitStatus",
    "FilterRule",
    "HeadersMissing",
    "InterfaceGone",
    "IronpostError",
    "LibbpfMissing",
    "LoadFailed",
    "LockoutRefused",
    "ModeUnsupported",
    "NoSuchInterface",
    "NotPermitted",
    "NotRunning",
    "PacketEvent",
    "PinMismatch",
    "ProgramDetached",
    "PortScanConfig",
    "PortScanDetector",
    "ProtocolStats",
    "Receiver",
    "RuleAction",
    "RuleRefused",
    "StartReport",
    "SynFloodConfig",
    "SynFloodDetector",
    "TrafficStats",
    "Verdict",
    "XdpBusy",
]
