"""What the rule form's fields mean: text in, a FilterRule or per-field errors out (Textual-free)."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from ironpost_tui.config.check import quote
from ironpost_tui.config.durations import EXAMPLES, format_duration, parse_duration
from ironpost_tui.config.rules import MAX_DESCRIPTION_CHARS
from ironpost_tui.errors import RuleRefused
from ironpost_tui.model import Action, FilterRule, IPNetwork
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.text import escape, unsafe
from ironpost_tui.triage.values import TopKind
from ironpost_tui.ui import format as fmt

MAX_ID_CHARS = 64


@dataclass(frozen=True)
class RuleFields:
    """The form's text, as typed."""

    id: str = ""
    action: str = "drop"
    src_ip: str = ""
    dst_ip: str = ""
    dst_port: str = ""
    protocol: str = ""
    expires: str = ""  # a duration from now (10m, 1h); empty: never
    description: str = ""

    @classmethod
    def of(cls, rule: FilterRule, now: float) -> RuleFields:
        left = "" if rule.expires_at is None else format_duration(max(1.0, rule.expires_at - now))
        return cls(
            id=rule.id,
            action=rule.action.value,
            src_ip="" if rule.src_ip is None else str(rule.src_ip),
            dst_ip="" if rule.dst_ip is None else str(rule.dst_ip),
            dst_port="" if rule.dst_port is None else str(rule.dst_port),
            protocol="" if rule.protocol is None else fmt.protocol(rule.protocol),
            expires=left,
            description=rule.description,
        )


@dataclass
class RuleInputError(ValueError):
    """Every field that is wrong, with why; ``general`` for the rule as a whole."""

    fields: dict[str, str] = field(default_factory=dict)
    general: str = ""

    def __str__(self) -> str:
        return self.general or "; ".join(f"{k}: {v}" for k, v in self.fields.items())


def parse_rule(f: RuleFields, now: float, auto: bool = False) -> FilterRule:
    """A rule the kernel can hold, or RuleInputError saying what to change."""
    errors: dict[str, str] = {}
    rule_id = f.id.strip()
    if not rule_id:
        errors["id"] = "give the rule a name, like block-scanner"
    elif len(rule_id) > MAX_ID_CHARS or any(c.isspace() for c in rule_id):
        errors["id"] = f"at most {MAX_ID_CHARS} characters, no spaces"
    elif (bad := unsafe(rule_id)) is not None:
        errors["id"] = f"no control or format characters ({escape(bad)})"
    elif rule_id.startswith(kernel_rules.EXTERNAL_PREFIX):
        errors["id"] = f"{kernel_rules.EXTERNAL_PREFIX}… names other tools' BLOCKLIST entries"
    elif rule_id in kernel_rules.GROUP_RULE_IDS:
        errors["id"] = f"{rule_id} is reserved: a group of rules counts under it"
    if (bad := unsafe(f.description)) is not None:
        errors["description"] = f"no control or format characters ({escape(bad)})"
    elif len(f.description) > MAX_DESCRIPTION_CHARS:  # the file's limit, said here, not by the save failing
        errors["description"] = f"at most {MAX_DESCRIPTION_CHARS} characters ({len(f.description)})"
    try:
        action = Action(f.action.strip().lower() or "drop")
    except ValueError:
        errors["action"] = "drop or monitor"
        action = Action.DROP
    src = _address(f.src_ip, "src_ip", errors)
    dst = _address(f.dst_ip, "dst_ip", errors)
    port = _number(f.dst_port, "dst_port", 65535, errors, "a port is 0-65535")
    proto = _protocol(f.protocol, errors)
    expires_at = None
    if f.expires.strip():
        try:
            expires_at = now + parse_duration(f.expires.strip())
        except ValueError as exc:
            errors["expires"] = f"{quote(f.expires.strip(), SHOWN)} {exc}"
    if errors:
        raise RuleInputError(errors)
    rule = FilterRule(
        id=rule_id,
        action=action,
        src_ip=src,
        dst_ip=dst,
        dst_port=port,
        protocol=proto,
        description=f.description.strip(),
        expires_at=expires_at,
        auto=auto,
    )
    try:
        kernel_rules.place(rule)
    except RuleRefused as exc:
        raise RuleInputError(general=exc.message) from None
    return rule


SHOWN = 40  # characters of a field's text an error quotes (what follows is "...")


def _address(text: str, name: str, errors: dict[str, str]) -> IPNetwork | None:
    text = text.strip()
    if not text:
        return None
    try:
        return kernel_rules.network(text)
    except ValueError as exc:
        # ipaddress's message holds the text whole: a paste of 5,000 characters grew the form past the screen.
        why = str(exc) if len(text) <= SHOWN else f"{quote(text, SHOWN)} is not an address or prefix"
        errors[name] = f"{why}: write an address or prefix, like 198.51.100.7 or 2001:db8::/32"
        return None


def _number(text: str, name: str, top: int, errors: dict[str, str], why: str) -> int | None:
    text = text.strip()
    if not text:
        return None
    if not text.isdigit() or int(text) > top:
        errors[name] = f"{quote(text, SHOWN)}: {why}"
        return None
    return int(text)


def _protocol(text: str, errors: dict[str, str]) -> int | None:
    text = text.strip().lower()
    if text in fmt.PROTOCOL_NUMBERS:
        return fmt.PROTOCOL_NUMBERS[text]
    return _number(text, "protocol", 255, errors, "tcp, udp, icmp, icmpv6 or a number 0-255")


def block_rule(address: str, seconds: int | None, now: float, why: str) -> FilterRule:
    """A drop rule for one source address, expiring after ``seconds`` (None: never)."""
    net = kernel_rules.network(address)
    return FilterRule(
        id=f"block-{net.network_address}",
        action=Action.DROP,
        src_ip=net,
        description=why,
        expires_at=None if seconds is None else now + seconds,
    )


def monitor_rule(kind: TopKind, key: str, why: str) -> FilterRule:
    """A monitor rule for a top talker: its source address, its destination address, or its
    destination port and protocol ("tcp/22")."""
    if kind is TopKind.PORTS:
        proto, _, port = key.partition("/")
        number = fmt.PROTOCOL_NUMBERS.get(proto, int(proto) if proto.isdigit() else None)
        return FilterRule(
            id=f"monitor-{proto}-{port}", action=Action.MONITOR, dst_port=int(port), protocol=number, description=why
        )
    net = kernel_rules.network(key)
    side = "src" if kind is TopKind.SOURCES else "dst"
    rule = FilterRule(id=f"monitor-{side}-{net.network_address}", action=Action.MONITOR, description=why)
    return replace(rule, src_ip=net) if kind is TopKind.SOURCES else replace(rule, dst_ip=net)


__all__ = ["EXAMPLES", "RuleFields", "RuleInputError", "block_rule", "monitor_rule", "parse_rule"]
