"""The LAPI's decision stream as values: what to ban, for how long, and why."""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from ironpost_tui.config.crowdsec import CrowdSecSettings, Scope
from ironpost_tui.config.rules import network as read_network
from ironpost_tui.engine.crowdsec.stream_json import SKIP
from ironpost_tui.model import Action, FilterRule, IPNetwork

RULE_PREFIX = "crowdsec:"  # the ids of the rules decisions stand for (reserved)
MAX_DESCRIPTION = 80
_GO_DURATION = re.compile(r"(-?)((?:[0-9]+(?:\.[0-9]*)?(?:h|m|s|ms|us|µs|ns))+)")
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?)(h|ms|m|s|us|µs|ns)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9}
_SCOPES = {"ip": Scope.IP, "range": Scope.RANGE}
# A decision lasts at most this long here (a year): "9999...9h" is not for ever, nor an overflow.
MAX_SECONDS = 365 * 86400.0
# The broadest range applied: a LAPI (or whoever can write to it) banning 0.0.0.0/1 or 2000::/3 would
# drop half the Internet, resolvers and upstreams included; broader ranges are refused as malformed.
MIN_PREFIX = {4: 16, 6: 32}


@dataclass(frozen=True)
class Decision:
    id: int
    network: IPNetwork
    scope: Scope
    seconds: float  # remaining when pulled
    origin: str
    scenario: str

    @property
    def value(self) -> str:
        """The address or range as the LAPI names it."""
        return str(self.network.network_address if self.scope is Scope.IP else self.network)

    @property
    def rule_id(self) -> str:
        return f"{RULE_PREFIX}{self.value}"

    def rule(self, now: float) -> FilterRule:
        """The drop rule this decision stands for, expiring when the decision does."""
        return FilterRule(
            self.rule_id,
            Action.DROP,
            src_ip=self.network,
            description=printable(self.scenario)[:MAX_DESCRIPTION],
            expires_at=now + self.seconds,
            crowdsec=True,
        )


# A checked stream entry, as the puller keeps it until the tick applies it: a plain tuple of strings and
# numbers, (id, network with its length, scope value, seconds remaining when pulled, origin, scenario).
# An exact tuple of atomic values is untracked by the cyclic garbage collector once a young collection has
# seen it (a NamedTuple is not: only exact tuples are untracked), so a pull of 100,000 of them never feeds
# the old generation, whose collection holds the interpreter lock (the tick waits) for tens of ms per
# 100,000 objects it walks; Decision objects (a dataclass, an ip_network) are tracked while they live.
# The tick makes the Decision (``as_decision``) when it applies the entry, a slice at a time.
Pulled = tuple[int, str, str, float, str, str]


def as_pulled(d: Decision) -> Pulled:
    return (d.id, str(d.network), d.scope.value, d.seconds, d.origin, d.scenario)


def as_decision(p: Pulled) -> Decision:
    ident, network, scope, seconds, origin, scenario = p
    return Decision(ident, ipaddress.ip_network(network), Scope(scope), seconds, origin, scenario)


def pulled_network(p: Pulled) -> str:
    """``str(network)`` of the decision: what a full pull's sweep compares with the held networks."""
    return p[1]


@dataclass(frozen=True)
class Delta:
    new: tuple[Pulled, ...]
    deleted: tuple[Pulled, ...]
    malformed: int  # entries dropped (bad JSON shape, address, duration)
    skipped: int  # well-formed but not for us (type, scope, origin, scenario filters)
    full: bool = False  # a startup=true pull: every decision in force, nothing else is


def go_duration(text: str) -> float:
    """A Go duration ("59m59.25s", "-51.7ms") in seconds; ValueError otherwise."""
    m = _GO_DURATION.fullmatch(text)
    if m is None:
        raise ValueError(f"not a duration: {text[:40]!r}")
    total = sum(float(n) * _UNIT[u] for n, u in _PART.findall(m.group(2)))
    return -total if m.group(1) else total


def printable(text: str) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)


def decision(raw: Any) -> Decision | None:
    """One stream entry as a Decision; None when malformed."""
    if not isinstance(raw, dict):
        return None
    value, scope, duration = raw.get("value"), raw.get("scope"), raw.get("duration")
    ident = raw.get("id", 0)
    origin, scenario = raw.get("origin", ""), raw.get("scenario", "")
    if not (
        isinstance(value, str)
        and isinstance(scope, str)
        and isinstance(duration, str)
        and isinstance(origin, str)
        and isinstance(scenario, str)
        and isinstance(ident, int)
    ):
        return None
    kind = _SCOPES.get(scope.lower())
    if kind is None or len(value) > 64:
        return None
    try:
        # As a rule's address is read: no zone (ip_network() took "2001:db8::1%a" and "%b" as two networks placed
        # in one SRC6 entry, and the first one's removal took the other's drop with it, until session 26), no
        # IPv4-mapped IPv6 address (IPv4 packets are matched as IPv4), no host bits.
        net = read_network(value)
        seconds = go_duration(duration)
    except ValueError:
        return None
    if kind is Scope.IP and net.num_addresses != 1:
        # A prefix under scope Ip: what ``cscli decisions import`` (1.4) makes of a CSV's ranges (it ignores
        # the file's scope column).  Taken as the range it names, under the ``range`` scope filter.
        kind = Scope.RANGE
    if net.prefixlen < MIN_PREFIX[net.version] or not math.isfinite(seconds):
        return None
    seconds = max(-MAX_SECONDS, min(seconds, MAX_SECONDS))
    return Decision(ident, net, kind, seconds, origin[:64], scenario[:256])


class StreamParse:
    """The decision stream read into a Delta: ``element`` is stream_json's hook (each entry judged as it is
    decoded, and only what is kept, a Pulled, held), ``delta`` the result from the parsed object."""

    PARTS = ("new", "deleted")

    def __init__(self, settings: CrowdSecSettings) -> None:
        self.settings = settings
        self.malformed = self.skipped = 0

    def element(self, part: str, raw: Any) -> Any:
        if part not in self.PARTS:
            return SKIP  # no other array is read
        d = decision(raw)
        if d is None:
            self.malformed += 1
        elif part == "new" and d.seconds <= 0:
            self.skipped += 1  # expired already: nothing to enforce (a deleted one may say so, rightly)
        elif not wanted(raw, d, self.settings):
            self.skipped += 1
        else:
            return as_pulled(d)  # d and its ip_network freed here: nothing tracked is kept
        return SKIP

    def delta(self, body: Any) -> Delta:
        """The Delta of ``body``, the stream's JSON object with its entries through ``element`` already."""
        if not isinstance(body, dict):
            raise ValueError("the decision stream is not a JSON object")
        out: dict[str, tuple[Pulled, ...]] = {}
        for part in self.PARTS:
            entries = body.get(part)
            if entries is not None and not isinstance(entries, list):
                raise ValueError(f"the decision stream's {part!r} is not a list")
            out[part] = tuple(entries or ())
        return Delta(out["new"], out["deleted"], self.malformed, self.skipped)


def parse_stream(body: Any, settings: CrowdSecSettings) -> Delta:
    """``GET /v1/decisions/stream``'s JSON ({"new": [...], "deleted": [...]}, either may be null), already
    decoded whole (the LAPI client reads it through StreamParse.element instead)."""
    parse = StreamParse(settings)
    if isinstance(body, dict):
        body = {
            part: [p for raw in entries if (p := parse.element(part, raw)) is not SKIP]
            if part in parse.PARTS and isinstance(entries, list) else entries
            for part, entries in body.items()
        }  # fmt: skip
    return parse.delta(body)


def wanted(raw: dict[str, Any], d: Decision, settings: CrowdSecSettings) -> bool:
    if str(raw.get("type", "ban")).lower() != "ban" or d.scope not in settings.scopes:
        return False
    if settings.origins and d.origin not in settings.origins:
        return False
    return not settings.scenarios or d.scenario in settings.scenarios


def by_rule(decisions: Iterable[Decision]) -> dict[str, Decision]:
    """The last decision per rule id (several decisions may name one address)."""
    return {d.rule_id: d for d in decisions}
