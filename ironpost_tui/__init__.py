"""ironpost-tui: an XDP packet filter and triage console for Linux hosts, and a library.

The names in ``__all__`` are the library API (README, "Use as a library", defined in
``ironpost_tui.api``) and the project's public surface: every module is internal.  They are
imported on first use (PEP 562), so the command line, which needs none of them, never pays for
them.  Type checkers see them through the ``TYPE_CHECKING`` import below.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ironpost_tui.version import __version__

if TYPE_CHECKING:
    from ironpost_tui.api import (
        Alert,
        AlertChange,
        AlreadyRunning,
        AutoBlockLimits,
        BadInterfaceName,
        BccMissing,
        BlocklistFull,
        ChangeKind,
        ConfigError,
        EbpfEngine,
        EbpfEngineBuilder,
        EngineConfig,
        ExitStatus,
        FilterRule,
        HeadersMissing,
        InterfaceGone,
        IronpostError,
        LibbpfMissing,
        LoadFailed,
        LockoutRefused,
        ModeUnsupported,
        NoSuchInterface,
        NotPermitted,
        NotRunning,
        PacketEvent,
        PinMismatch,
        PortScanConfig,
        PortScanDetector,
        ProgramDetached,
        ProtocolStats,
        Receiver,
        RuleAction,
        RuleRefused,
        StartReport,
        SynFloodConfig,
        SynFloodDetector,
        TrafficStats,
        Verdict,
        XdpBusy,
    )

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
    "PortScanConfig",
    "PortScanDetector",
    "ProgramDetached",
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
    "__version__",
]

if not TYPE_CHECKING:  # hidden from mypy, which would otherwise take any name as valid

    def __getattr__(name: str) -> object:
        if name in __all__:
            import importlib

            value = getattr(importlib.import_module("ironpost_tui.api"), name)
            globals()[name] = value  # once: later lookups do not come here
            return value
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(__all__))
