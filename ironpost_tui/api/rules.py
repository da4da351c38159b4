"""The seed's ``FilterRule`` and ``RuleAction``: a rule as a library user writes it.

Addresses may be given as text or as ``ipaddress`` objects; the rule is checked when it is made,
by the same checks a rule of the configuration file passes (``config.rules``), so a rule that
exists is one the kernel can hold.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from dataclasses import dataclass
from typing import Any

from ironpost_tui.config import rules as config_rules
from ironpost_tui.config.check import Check
from ironpost_tui.errors import RuleRefused
from ironpost_tui.model import Action, IPAddress, IPNetwork, StrEnum
from ironpost_tui.model import FilterRule as _Rule

# What a rule's src_ip and dst_ip may be given as: "198.51.100.7", "2001:db8::/32", or ipaddress objects.
AddressLike = str | IPAddress | IPNetwork


class RuleAction(StrEnum):
    """The seed's ``RuleAction``: ``BLOCK`` drops the packet (``DROP`` is the same member), ``MONITOR``
    lets it pass; both report it as a ``PacketEvent``."""

    BLOCK = "drop"
    DROP = "drop"
    MONITOR = "monitor"


_ACTIONS = {RuleAction.BLOCK: Action.DROP, RuleAction.MONITOR: Action.MONITOR}


@dataclass(frozen=True, init=False)
class FilterRule:
    """One rule: the fields given are AND-ed, an absent one matches anything (the seed's ``FilterRule``).

    Raises ``RuleRefused`` (exit status 2) with every problem when the rule cannot be: no match field,
    an address with host bits set, a port past 65535, an id with a control character..."""

    id: str
    src_ip: IPNetwork | None
    dst_ip: IPNetwork | None
    dst_port: int | None
    protocol: int | None
    action: RuleAction
    description: str
    expires_at: float | None  # Unix time (seconds); None: never

    def __init__(
        self,
        id: str,
        src_ip: AddressLike | None = None,
        dst_ip: AddressLike | None = None,
        dst_port: int | None = None,
        protocol: int | None = None,
        action: RuleAction | str = RuleAction.BLOCK,
        description: str = "",
        expires_at: float | dt.datetime | None = None,
    ) -> None:
        raw: dict[str, Any] = {"id": id, "action": str(action), "description": description}
        for key, value in (("src_ip", src_ip), ("dst_ip", dst_ip), ("dst_port", dst_port), ("protocol", protocol)):
            if value is not None:
                raw[key] = _text(value) if key.endswith("_ip") else value
        if isinstance(expires_at, dt.datetime):
            raw["expires_at"] = expires_at
        elif expires_at is not None:
            raw["expires_at"] = _utc(expires_at, id)
        rule = _checked(raw)
        self._set(rule)

    def _set(self, rule: _Rule) -> None:
        for name in ("id", "src_ip", "dst_ip", "dst_port", "protocol", "description", "expires_at"):
            object.__setattr__(self, name, getattr(rule, name))
        object.__setattr__(self, "action", RuleAction(rule.action.value))

    @classmethod
    def of(cls, rule: _Rule) -> FilterRule:
        """A rule the engine holds (checked when it was made), as this type."""
        made = cls.__new__(cls)
        made._set(rule)
        return made

    def internal(self) -> _Rule:
        """The engine's own rule value."""
        return _Rule(
            id=self.id,
            action=_ACTIONS[self.action],
            src_ip=self.src_ip,
            dst_ip=self.dst_ip,
            dst_port=self.dst_port,
            protocol=self.protocol,
            description=self.description,
            expires_at=self.expires_at,
        )


def _text(value: object) -> object:
    """An address given as an ipaddress object, as the configuration file writes it; anything else as it is."""
    if isinstance(value, ipaddress.IPv4Address | ipaddress.IPv6Address | ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    return value


def _utc(seconds: object, rule_id: object) -> object:
    if isinstance(seconds, bool) or not isinstance(seconds, int | float):
        return seconds  # the check says what it must be
    try:
        return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)
    except (OverflowError, OSError, ValueError):
        raise RuleRefused(f"rule {rule_id!r}: expires_at {seconds} is out of range") from None


def _checked(raw: dict[str, Any]) -> _Rule:
    """The configuration file's checks on one rule; RuleRefused with every error, one per line."""
    check = Check()
    made = config_rules.rules(check, {"rules": [raw]}, config_rules.MAX_RULES, 0.0)
    if check.pending or check.dropped or not made:
        rule_id = raw.get("id")
        who = f"rule {rule_id!r}" if isinstance(rule_id, str) and rule_id.isprintable() else "rule"
        messages = [p.message for p in check.pending] or ["cannot be made"]
        raise RuleRefused("\n".join(f"{who}: {m}" for m in messages))
    return made[0]
