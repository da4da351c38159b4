"""The TOML configuration, in the seed's format ([ebpf], [[ebpf.rules]])."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

from . import kernel_rules
from .datapath import DatapathConfig
from .errors import ExitStatus, IronpostError
from .model import Action, FilterRule

XDP_MODES = ("auto", "native", "skb", "offload")
ACTIONS = {"drop": Action.DROP, "block": Action.DROP, "monitor": Action.MONITOR}


class ConfigError(IronpostError):
    exit_status = ExitStatus.CONFIG_INVALID
    title = "Invalid configuration"


@dataclass(frozen=True)
class EbpfSettings:
    enabled: bool = True
    interface: str = ""
    xdp_mode: str = "auto"
    ring_buffer_size: int = 256  # KiB
    blocklist_max_entries: int = 10_000
    event_rate_limit: int = 10_000  # events/s per CPU

    def datapath(self) -> DatapathConfig:
        return DatapathConfig(
            blocklist_max_entries=self.blocklist_max_entries,
            ring_buffer_kib=self.ring_buffer_size,
            event_rate=self.event_rate_limit,
        )


@dataclass(frozen=True)
class Settings:
    ebpf: EbpfSettings = field(default_factory=EbpfSettings)
    rules: tuple[FilterRule, ...] = ()
    path: Path | None = None


def _rule(raw: dict[str, Any], where: str) -> FilterRule:
    try:
        rule_id = str(raw["id"])
    except KeyError:
        raise ConfigError(f"{where}: rule has no id") from None
    action = ACTIONS.get(str(raw.get("action", "drop")).lower())
    if action is None:
        raise ConfigError(f"{where}: rule '{rule_id}': unknown action {raw.get('action')!r} (drop, block or monitor)")
    try:
        return FilterRule(
            id=rule_id,
            action=action,
            src_ip=kernel_rules.network(raw["src_ip"]) if "src_ip" in raw else None,
            dst_ip=kernel_rules.network(raw["dst_ip"]) if "dst_ip" in raw else None,
            dst_port=int(raw["dst_port"]) if "dst_port" in raw else None,
            protocol=int(raw["protocol"]) if "protocol" in raw else None,
            description=str(raw.get("description", "")),
        )
    except (ValueError, TypeError) as exc:
        raise ConfigError(f"{where}: rule '{rule_id}': {exc}") from None


def load(path: Path) -> Settings:
    try:
        data = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    ebpf_raw = data.get("ebpf", {})
    known = EbpfSettings.__dataclass_fields__
    ebpf = EbpfSettings(**{k: v for k, v in ebpf_raw.items() if k in known and k != "rules"})
    if ebpf.xdp_mode not in XDP_MODES:
        raise ConfigError(f"{path}: [ebpf] xdp_mode {ebpf.xdp_mode!r}: use one of {', '.join(XDP_MODES)}")
    raw_rules = list(ebpf_raw.get("rules", [])) + list(data.get("rules", []))
    rules = tuple(_rule(r, str(path)) for r in raw_rules)
    return Settings(ebpf=ebpf, rules=rules, path=path)
