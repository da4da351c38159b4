"""The seed's ``EngineConfig``: what an engine is built with, checked when it is made.

Its fields are the configuration file's (``[ebpf]``, ``[[ebpf.rules]]``, ``[detectors.*]``,
``[safety]``) in the seed's units; ``from_file`` reads such a file, and an engine built from it
follows the file as the agent does. ``options()`` turns it into the engine's own options.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ironpost_tui.api.detectors import check_port_scan, check_syn_flood
from ironpost_tui.api.rules import AddressLike, FilterRule
from ironpost_tui.config import rules as config_rules
from ironpost_tui.config import settings as config_settings
from ironpost_tui.config.check import ConfigError
from ironpost_tui.detectors.settings import AutoBlockLimits, PortScanConfig, SynFloodConfig
from ironpost_tui.engine.engine import EngineOptions
from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel import host
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.kernel.xdp_link import xdp_choice
from ironpost_tui.model import IPNetwork
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import DEFAULT_AUDIT_LOG
from ironpost_tui.rules.infrastructure import InfraSources

RING_KIB = (4, 256 * 1024)  # EVENTS: a power of two from 4 KiB to 256 MiB
BLOCKLIST_ENTRIES = (1, 1_000_000)
EVENT_RATE = (0, 10_000_000)
STATS_INTERVAL = (0.1, 60.0)


@dataclass(frozen=True)
class EngineConfig:
    """Everything but ``interface`` has the configuration file's default.  Changing one field of a
    config: ``dataclasses.replace(config, xdp_mode="native")``."""

    interface: str = ""  # the seed's base.interface: required by build()
    xdp_mode: str = "auto"  # auto | native | skb | offload ("hw": the seed's offload)
    ring_buffer_size: int = 256  # KiB, as in the seed: EVENTS, a power of two from 4 to 262144
    blocklist_max_entries: int = 10_000  # capacity of BLOCKLIST
    event_rate_limit: int = 10_000  # events per second per CPU; 0 = unlimited
    rules: Sequence[FilterRule] = ()  # loaded at start (checked against the protections)
    syn_flood: SynFloodConfig = SynFloodConfig()
    port_scan: PortScanConfig = PortScanConfig()
    auto_block_limits: AutoBlockLimits = AutoBlockLimits()
    protect: Sequence[AddressLike] = ()  # [safety] protect: never dropped
    protect_ssh_client: bool = True  # the SSH clients of authenticated sessions: never dropped
    protect_host_addresses: bool = True  # this host's addresses: never dropped
    persist: bool = False  # pin program and maps: filtering outlives the process (as --persist)
    force: bool = False  # load rules that would drop a protected address (they still pass)
    audit_log: Path | None = DEFAULT_AUDIT_LOG  # every rule change, JSON lines; None: the log only
    auto_journal: Path | None = None  # where auto-blocks are kept across runs; None: in memory
    stats_interval: float = 1.0  # seconds between two samples of the counters (get_stats, rates)
    config_file: Path | None = None  # set by from_file: followed (reloads), and rule edits are saved to it
    _protect: tuple[IPNetwork, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        errors: list[str] = []
        if self.interface:
            try:
                host.check_iface_name(self.interface)
            except IronpostError as exc:
                errors.append(exc.message)
        try:
            xdp_choice(self.xdp_mode)
        except ValueError:
            errors.append(f"xdp_mode {self.xdp_mode!r} is not one of {', '.join(config_settings.XDP_MODES)}")
        size = self.ring_buffer_size
        if not _whole(size, *RING_KIB) or size & (size - 1):
            errors.append(
                f"ring_buffer_size {size!r} is not a power of two from {RING_KIB[0]} to {RING_KIB[1]}: it is in KiB "
                "(256 = 256 KiB)"
            )
        if not _whole(self.blocklist_max_entries, *BLOCKLIST_ENTRIES):
            errors.append(f"blocklist_max_entries {self.blocklist_max_entries!r}: it must be 1 to 1000000")
        if not _whole(self.event_rate_limit, *EVENT_RATE):
            errors.append(f"event_rate_limit {self.event_rate_limit!r}: it must be 0 (unlimited) to 10000000")
        interval = self.stats_interval
        if isinstance(interval, bool) or not isinstance(interval, int | float) or not 0.1 <= interval <= 60:
            errors.append(f"stats_interval {interval!r}: it must be 0.1 to 60 seconds")
        errors += _detector_errors(self.syn_flood, self.port_scan)
        rules = tuple(self.rules)
        errors += [f"rules: {r!r} is not a FilterRule" for r in rules if not isinstance(r, FilterRule)]
        ids = [r.id for r in rules if isinstance(r, FilterRule)]
        errors += [f"rules: two rules have the id {i!r}: give each rule its own id" for i in _repeated(ids)]
        protected = []
        for item in self.protect:
            try:
                protected.append(config_rules.network(str(item)))
            except ValueError as exc:
                errors.append(f"protect entry {exc}")
        if errors:
            raise ConfigError("\n".join(f"EngineConfig: {e}" for e in errors))
        object.__setattr__(self, "rules", rules)
        object.__setattr__(self, "protect", tuple(self.protect))
        object.__setattr__(self, "_protect", tuple(protected))

    @classmethod
    def from_file(cls, path: str | Path, interface: str = "") -> EngineConfig:
        """The configuration file ``path`` (the agent's TOML); ``interface`` overrides its ``[ebpf] interface``.

        ConfigError (every error of the file) when it is refused.  An engine built with it reloads
        the file when it changes, and saves rule edits into it, as the agent does."""
        path = Path(path)
        settings = config_settings.load(path)
        ebpf = settings.ebpf
        safety = settings.safety
        return cls(
            interface=interface or ebpf.interface,
            xdp_mode=str(ebpf.xdp_mode),
            ring_buffer_size=ebpf.datapath().ring_buffer_kib,
            blocklist_max_entries=ebpf.blocklist_max_entries,
            event_rate_limit=ebpf.event_rate_limit,
            rules=[FilterRule.of(r) for r in settings.rules],
            syn_flood=settings.syn_flood,
            port_scan=settings.port_scan,
            auto_block_limits=settings.auto_block,
            protect=safety.protect,
            protect_ssh_client=safety.protect_ssh_client,
            protect_host_addresses=safety.protect_host_addresses,
            config_file=path,
        )

    def datapath(self) -> DatapathConfig:
        return DatapathConfig(
            blocklist_max_entries=self.blocklist_max_entries,
            ring_buffer_kib=self.ring_buffer_size,
            event_rate=self.event_rate_limit,
        )

    def options(self) -> EngineOptions:
        """The engine's options: protections gathered now (SSH sessions, this host's addresses)."""
        if not self.interface:
            raise ConfigError('EngineConfig: interface is empty: name the interface to attach to, like "eth0"')
        protected = tuple(
            protect.gather(self._protect, include_ssh=self.protect_ssh_client, include_host=self.protect_host_addresses)
        )
        return EngineOptions(
            iface=self.interface,
            xdp_mode=xdp_choice(self.xdp_mode),
            persist=self.persist,
            datapath=self.datapath(),
            rules=tuple(r.internal() for r in self.rules),
            protected=protected,
            force=self.force,
            warn_no_ssh_client=self.protect_ssh_client and protect.own_client_missing(protected),
            auto_journal=self.auto_journal,
            audit_log=self.audit_log,
            sample_interval=float(self.stats_interval),
            syn_flood=self.syn_flood,
            port_scan=self.port_scan,
            auto_block=self.auto_block_limits,
            infrastructure=InfraSources.of(self.protect_ssh_client),
        )


def _detector_errors(syn: object, scan: object) -> list[str]:
    errors = []
    try:
        if not isinstance(syn, SynFloodConfig):
            errors.append(f"syn_flood must be a SynFloodConfig, got {syn!r}")
        else:
            check_syn_flood(syn)
    except ConfigError as exc:
        errors.append(exc.message)
    try:
        if not isinstance(scan, PortScanConfig):
            errors.append(f"port_scan must be a PortScanConfig, got {scan!r}")
        else:
            check_port_scan(scan)
    except ConfigError as exc:
        errors.append(exc.message)
    return errors


def _whole(value: object, lo: int, hi: int) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and lo <= value <= hi


def _repeated(ids: list[str]) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    for i in ids:
        if i in seen and i not in out:
            out.append(i)
        seen.add(i)
    return out
