"""One exception hierarchy and one table of exit codes for the whole program."""

from __future__ import annotations

from enum import IntEnum


class ExitStatus(IntEnum):
    """Process exit codes; each error a user meets has its own."""

    OK = 0
    ERROR = 1
    CONFIG_INVALID = 2
    NOT_PERMITTED = 3
    BCC_MISSING = 4
    HEADERS_MISSING = 5
    NO_SUCH_INTERFACE = 6
    MODE_UNSUPPORTED = 7
    BLOCKLIST_FULL = 8
    XDP_BUSY = 9
    PIN_MISMATCH = 10
    INTERFACE_GONE = 11
    LOAD_FAILED = 12
    ALREADY_RUNNING = 13
    METRICS_PORT_IN_USE = 14
    NO_CONTROLLER = 15
    CAPTURE_BUSY = 16
    PROGRAM_DETACHED = 17
    CTRL_C = 130


class IronpostError(Exception):
    """An error with a one-line message that tells the user what to do."""

    exit_status = ExitStatus.ERROR
    title = "Error"

    def __init__(self, message: str, title: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        if title is not None:
            self.title = title


class NotPermitted(IronpostError):
    exit_status = ExitStatus.NOT_PERMITTED
    title = "Not permitted"


class BccMissing(IronpostError):
    exit_status = ExitStatus.BCC_MISSING
    title = "BCC missing"


class LibbpfMissing(BccMissing):
    """libbpf.so.1 (1.0 or newer) is not on the host, or lacks a call ironpost makes."""

    title = "libbpf missing"


class HeadersMissing(IronpostError):
    exit_status = ExitStatus.HEADERS_MISSING
    title = "Kernel headers missing"


class BadInterfaceName(IronpostError):
    """A name that no Linux interface can have: refused before it becomes a path or a map key."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Bad interface name"


class NoSuchInterface(IronpostError):
    exit_status = ExitStatus.NO_SUCH_INTERFACE
    title = "No such interface"


class ModeUnsupported(IronpostError):
    exit_status = ExitStatus.MODE_UNSUPPORTED
    title = "XDP mode unsupported"


class RuleRefused(IronpostError):
    """A rule could not be applied; nothing of it is in the kernel."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Rule refused"


class BlocklistFull(RuleRefused):
    exit_status = ExitStatus.BLOCKLIST_FULL
    title = "Blocklist full"


class XdpBusy(IronpostError):
    exit_status = ExitStatus.XDP_BUSY
    title = "Interface busy"


class PinMismatch(IronpostError):
    exit_status = ExitStatus.PIN_MISMATCH
    title = "Pinned state from another version"


class InterfaceGone(IronpostError):
    exit_status = ExitStatus.INTERFACE_GONE
    title = "Interface gone"


class ProgramDetached(IronpostError):
    """The program's link was detached from the interface by another process while this one ran."""

    exit_status = ExitStatus.PROGRAM_DETACHED
    title = "Program detached"


def detached_message(iface: str) -> str:
    return (f"the program was detached from {iface} by another process (bpftool link detach or update?): "
            f"{iface} is not filtered by ironpost; start ironpost-tui again to attach it")  # fmt: skip


class LoadFailed(IronpostError):
    exit_status = ExitStatus.LOAD_FAILED
    title = "Load failed"


class AlreadyRunning(IronpostError):
    exit_status = ExitStatus.ALREADY_RUNNING
    title = "Already running"


class MetricsPortInUse(IronpostError):
    """The metrics endpoint cannot listen: found before anything is attached."""

    exit_status = ExitStatus.METRICS_PORT_IN_USE
    title = "Metrics port in use"


class WebConfigInvalid(IronpostError):
    """The --web-config file (TLS, basic auth) is unusable."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Invalid web configuration"


class CaptureBusy(IronpostError):
    """Another capture runs on the interface: one writer of the capture configuration at a time."""

    exit_status = ExitStatus.CAPTURE_BUSY
    title = "Capture busy"


class NoController(IronpostError):
    """The command line found no running ironpost-tui controlling the interface."""

    exit_status = ExitStatus.NO_CONTROLLER
    title = "No controller"
