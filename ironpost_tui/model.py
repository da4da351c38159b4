"""Values that cross from the engine to its front ends: frozen, no handles."""

from __future__ import annotations

import ipaddress
import operator
from dataclasses import dataclass, field, fields
from enum import Enum
from typing import Any, NamedTuple, NoReturn

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

PROTOCOLS = ("tcp", "udp", "icmp", "other")
# The counters' row, beside the protocols and "total", of the packets the XDP program judged without their
# ports (a TCP/UDP fragment that does not carry them, IPv6 of unknown protocol); they count under theirs too.
FRAGMENTS = "fragments"


class StrEnum(str, Enum):
    """A closed set of strings (enum.StrEnum, which needs Python 3.11): a member is its
    value when printed, formatted, logged or serialised (JSON, TOML, metric labels)."""

    def __str__(self) -> str:
        return str(self.value)


def assert_never(value: NoReturn) -> NoReturn:
    """The branch mypy proves unreachable once every member of a closed set is handled
    (typing.assert_never, which needs Python 3.11)."""
    raise AssertionError(f"unhandled value: {value!r}")


class Action(StrEnum):
    DROP = "drop"
    MONITOR = "monitor"


class Verdict(StrEnum):
    PASS = "pass"
    DROP = "drop"
    MONITOR = "monitor"
    PROTECTED = "protected"  # a drop rule matched a protected source: passed


class Kept:
    """What a FilterRule keeps once computed (FilterRule.kept): never compared, hashed or pickled."""

    __slots__ = ("hash", "placement")

    def __init__(self) -> None:
        self.hash: int | None = None
        self.placement: Any = None  # rules/placement.py's Placement


# The latest wall-clock time ironpost keeps (seconds since 1970, in the year 2514: what time.localtime can show):
# a recording's times are checked against it, and a rule's expires_at is refused past it, so that every rule a
# run holds can be recorded and replayed (the configuration took dates to the year 9999 until session 26, and a
# recording of such a rule could not be replayed).
MAX_WALL_CLOCK = 2.0**34


@dataclass(frozen=True)
class FilterRule:
    """One rule; its match fields are AND-ed, an absent field matches anything."""

    id: str
    action: Action = Action.DROP
    src_ip: IPNetwork | None = None
    dst_ip: IPNetwork | None = None
    dst_port: int | None = None
    protocol: int | None = None
    description: str = ""
    expires_at: float | None = None  # wall-clock seconds, None = never
    auto: bool = False  # added by a detector's auto-block
    external: bool = False  # written into BLOCKLIST by another tool (rules/external.py); never saved
    crowdsec: bool = False  # a CrowdSec LAPI decision (engine/crowdsec/); never saved

    def __hash__(self) -> int:
        # The fields' hash, as the dataclass would give it, kept once computed: a rule is hashed again
        # and again on its way in (the table's and the controller's dicts), and hashing its networks is
        # Python code (a tenth of a 10,000-rule load).
        kept: Kept | None = self.__dict__.get("_kept")
        if kept is not None and kept.hash is not None:
            return kept.hash
        kept = self.kept()
        kept.hash = hash(_rule_fields(self))
        return kept.hash

    def kept(self) -> Kept:
        """What this rule keeps once computed (its hash; its placement: rules/placement.py), in one
        attribute: every rule's attributes stay the same keys in the same order, so their dicts share
        them (a rule's dict grew from 160 to 832 bytes with a second kept attribute, added in either
        order)."""
        kept: Kept | None = self.__dict__.get("_kept")
        if kept is None:
            kept = Kept()
            object.__setattr__(self, "_kept", kept)
        return kept

    def __getstate__(self) -> dict[str, object]:
        # A pickle or a copy leaves what was kept behind: another process hashes strings differently,
        # and a placement is made again where it is needed.
        return {k: v for k, v in self.__dict__.items() if k != "_kept"}

    @property
    def match_fields(self) -> tuple[str, ...]:
        names = ("src_ip", "dst_ip", "dst_port", "protocol")
        return tuple(n for n in names if getattr(self, n) is not None)

    def same_match(self, other: FilterRule) -> bool:
        return (self.src_ip, self.dst_ip, self.dst_port, self.protocol) == (
            other.src_ip,
            other.dst_ip,
            other.dst_port,
            other.protocol,
        )


_rule_fields = operator.attrgetter(*(f.name for f in fields(FilterRule)))  # a rule's fields, as a tuple


@dataclass(frozen=True)
class RuleStatus:
    """A rule as the kernel holds it, with its hit counters."""

    rule: FilterRule
    map_name: str  # BLOCKLIST, SRC4, SRC6 or MATCH
    hits: int = 0
    last_hit: float | None = None  # wall-clock seconds
    slot: int | None = None  # its RULE_HITS slot: what events and captures name it by


@dataclass(frozen=True)
class ProtoCounters:
    packets: int = 0
    bytes: int = 0
    drops: int = 0


@dataclass(frozen=True)
class ProtoRates:
    pps: float = 0.0
    bps: float = 0.0  # bits per second
    drops_ps: float = 0.0


@dataclass(frozen=True)
class StatsSample:
    """Totals since attach and rates since the previous sample, per protocol."""

    at: float  # monotonic seconds
    totals: dict[str, ProtoCounters] = field(default_factory=dict)  # tcp udp icmp other total, and FRAGMENTS
    rates: dict[str, ProtoRates] = field(default_factory=dict)
    events_delivered: int = 0
    events_lost: dict[str, int] = field(default_factory=dict)  # reason -> count


class PacketEvent(NamedTuple):
    """One packet that matched a drop or monitor rule (EVENTS ring buffer).

    A named tuple rather than a frozen dataclass: events come by the hundred
    thousand per second, and a tuple is built in a fraction of the time (no
    per-field object.__setattr__), holds a quarter of the memory and is just as
    immutable, hashable and comparable field by field.  The engine's events are
    ``kernel.record_event.RecordEvent``, a subclass that keeps the record's bytes and
    decodes each field when it is read; it compares, hashes and iterates as this.
    """

    ts: float  # wall-clock seconds
    family: int  # 4 or 6
    src: IPAddress
    dst: IPAddress
    src_port: int
    dst_port: int
    protocol: int
    tcp_flags: int
    length: int
    verdict: Verdict
    rule_id: str | None
