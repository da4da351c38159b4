"""The rules of a configuration: ``[[ebpf.rules]]`` (and the seed's rules-file form ``[[rules]]``).

Each rule is checked on its own (types, ranges, addresses, expiry), then the
set: unique ids, at most MAX_RULES, and what the kernel would refuse at
start-up (two rules matching the same packets, more rule shapes or map
entries than the datapath holds).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import re
import socket
from collections import Counter
from typing import Any

from ironpost_tui.config.check import CAPACITY_MARK, CONTROL_HINT, Check, RuleRef, Table, quote, show
from ironpost_tui.config.locate import Loc
from ironpost_tui.errors import RuleRefused
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import DatapathConfig
from ironpost_tui.model import MAX_WALL_CLOCK, Action, FilterRule, IPNetwork
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.text import escape, unsafe

MAX_RULES = 10_000
MAX_ID_CHARS = 256
MAX_DESCRIPTION_CHARS = 1024
ACTIONS = {"drop": Action.DROP, "block": Action.DROP, "monitor": Action.MONITOR}
PROTOCOL_NAMES = {"icmp": 1, "tcp": 6, "udp": 17, "gre": 47, "esp": 50, "ah": 51, "icmpv6": 58, "sctp": 132}
MATCH_KEYS = ("src_ip", "dst_ip", "dst_port", "protocol")
RULE_KEYS = ("id", "description", *MATCH_KEYS, "action", "expires_in", "expires_at", "auto")
FORMS = ("ebpf.rules", "rules")  # where a file's rules are: [[ebpf.rules]] (the seed's), or [[rules]]

_PREFIX_LEN = re.compile(r"[0-9]{1,3}")
_RFC3339 = re.compile(
    r"([0-9]{4}-[0-9]{2}-[0-9]{2})[Tt ]([0-9]{2}:[0-9]{2}:[0-9]{2})(\.[0-9]+)?([Zz]|[+-][0-9]{2}:[0-9]{2})?"
)
_GROUP_WHAT = {
    kernel_rules.AUTO_RULE_ID: "auto-block",
    kernel_rules.EXTERNAL_RULE_ID: "other tool's BLOCKLIST entry",
    kernel_rules.CROWDSEC_RULE_ID: "CrowdSec decision",
    kernel_rules.ADDRESSED_RULE_ID: "rule whose id holds an address",
}
_ADDRESS_EXAMPLES = "like 198.51.100.7, 198.51.100.0/24 or 2001:db8::/32"


def _ip(addr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """ipaddress.ip_address(addr), its common case in C: an address that inet_pton reads and inet_ntop
    writes back as it was given (a canonical address, what a feed writes) is the address ipaddress reads
    in it; anything else is read by ipaddress, with its rules and its errors.  (ipaddress parses in
    Python: a third of the load of a 10,000-rule file.)"""
    for family, of in ((socket.AF_INET, ipaddress.IPv4Address), (socket.AF_INET6, ipaddress.IPv6Address)):
        try:
            packed = socket.inet_pton(family, addr)
        except OSError:
            continue
        if socket.inet_ntop(family, packed) == addr:
            return of(packed)
        break
    return ipaddress.ip_address(addr)


def network(text: str) -> IPNetwork:
    """An address or prefix; ValueError with a message beginning with what was given."""
    addr, slash, plen = text.strip().partition("/")
    try:
        ip = _ip(addr)
    except ValueError:
        raise ValueError(f"{quote(text)} is not an IPv4 or IPv6 address: write one {_ADDRESS_EXAMPLES}") from None
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.scope_id:
            raise ValueError(f"{quote(text)} has a zone (%{ip.scope_id}): leave it out")
        if ip.ipv4_mapped is not None:
            raise ValueError(f"{quote(text)} is an IPv4-mapped IPv6 address: write the IPv4 address {ip.ipv4_mapped}")
    # Built from the address's integer: ip_network() of a string or an address parses it again (five
    # times the cost, in a load of 10,000 rules).
    network_of = ipaddress.IPv4Network if isinstance(ip, ipaddress.IPv4Address) else ipaddress.IPv6Network
    if not slash:
        return network_of((int(ip), ip.max_prefixlen))
    if not _PREFIX_LEN.fullmatch(plen):
        raise ValueError(f"{quote(text)} has no valid prefix length after the /: write one {_ADDRESS_EXAMPLES}")
    width = ip.max_prefixlen
    if int(plen) > width:
        raise ValueError(
            f"{quote(text)}: prefix length /{int(plen)} is too long for IPv{ip.version} (at most /{width})"
        )
    net = network_of((int(ip), int(plen)), strict=False)
    if net.network_address != ip:
        raise ValueError(f"{ip}/{int(plen)} has host bits set: did you mean {net}?")
    return net


def rules(check: Check, data: dict[str, Any], ebpf_blocklist_max: int, now: float) -> tuple[FilterRule, ...]:
    """Every rule of the file, ``[[ebpf.rules]]`` first; errors go to ``check``."""
    sources: list[tuple[Loc, Any]] = []
    ebpf = data.get("ebpf")
    if isinstance(ebpf, dict) and "rules" in ebpf:
        sources.append((("ebpf", "rules"), ebpf["rules"]))
    if "rules" in data:
        sources.append((("rules",), data["rules"]))
    total = sum(len(raw) for _, raw in sources if isinstance(raw, list))
    built: list[tuple[FilterRule, Loc, int]] = []  # a rule, where it is, its number (RuleRef: on an error)
    first_id: dict[str, Loc] = {}
    n = 0
    for loc, raw in sources:
        name = ".".join(map(str, loc))
        if not isinstance(raw, list):
            check.error(loc, f"{name} must be an array of tables ([[{name}]]), got {show(raw)}")
            continue
        for i, item in enumerate(raw):
            n += 1
            rule_loc = (*loc, i)
            if n == MAX_RULES + 1:
                check.error(
                    rule_loc,
                    f"too many rules: the file has {total}, at most {MAX_RULES} are allowed (this is rule #{n}): "
                    "cover many addresses with one prefix",
                )
            if not isinstance(item, dict):
                check.error(rule_loc, f"{name} must hold tables, got {show(item)}", RuleRef(None, n))
                continue
            rule = _rule(check, item, rule_loc, n, now, first_id)
            if rule is not None:
                built.append(rule)
    if total <= MAX_RULES:
        _kernel_fit(check, built, ebpf_blocklist_max)
    return tuple(rule for rule, _, _ in built)


# The keys of a rule of the common kind (what a feed or an operator writes: no expiry, no auto flag).
_PLAIN_KEYS = frozenset(("id", "description", "action", *MATCH_KEYS))


def _plain(raw: dict[str, Any], loc: Loc, n: int, first_id: dict[str, Loc]) -> tuple[FilterRule, Loc, int] | None:
    """A rule of the common kind whose every value is well formed, built without the checker's reads of
    each key (a third of the load of a 10,000-rule file); None when anything is otherwise, and then
    _rule's checked path builds it or says what is wrong.  It builds what the checked path builds
    (tests/test_config_fuzz.py compares the two)."""
    if not _PLAIN_KEYS.issuperset(raw):
        return None
    rule_id = raw.get("id")
    if (
        type(rule_id) is not str
        or not 0 < len(rule_id) <= MAX_ID_CHARS
        or not rule_id.isprintable()
        or rule_id in first_id
        or rule_id in kernel_rules.GROUP_RULE_IDS
        or rule_id.startswith(kernel_rules.EXTERNAL_PREFIX)
    ):
        return None
    description = raw.get("description", "")
    if type(description) is not str or len(description) > MAX_DESCRIPTION_CHARS or unsafe(description) is not None:
        return None
    word = raw.get("action", "drop")
    action = ACTIONS.get(word.lower()) if type(word) is str else None
    port, proto = raw.get("dst_port"), raw.get("protocol")
    if (
        action is None
        or (port is not None and (type(port) is not int or not 0 <= port <= 65535))
        or (proto is not None and (type(proto) is not int or not 0 <= proto <= 255))
        or (port is not None and proto is not None and proto not in (6, 17))
    ):
        return None
    src_text, dst_text = raw.get("src_ip"), raw.get("dst_ip")
    try:
        src = network(src_text) if type(src_text) is str else None
        dst = network(dst_text) if type(dst_text) is str else None
    except ValueError:
        return None
    if (src is None and src_text is not None) or (dst is None and dst_text is not None):
        return None
    if src is None and dst is None and port is None and proto is None:
        return None
    if src is not None and dst is not None and src.version != dst.version:
        return None
    first_id[rule_id] = (*loc, "id")
    rule = FilterRule(
        id=rule_id, action=action, src_ip=src, dst_ip=dst, dst_port=port, protocol=proto, description=description
    )
    return rule, loc, n


def _rule(
    check: Check, raw: dict[str, Any], loc: Loc, n: int, now: float, first_id: dict[str, Loc]
) -> tuple[FilterRule, Loc, int] | None:
    plain = _plain(raw, loc, n, first_id)
    if plain is not None:
        return plain
    errors_before = len(check.pending) + check.dropped
    rule_id = raw.get("id")
    id_ok = isinstance(rule_id, str) and 0 < len(rule_id) <= MAX_ID_CHARS and rule_id.isprintable()
    ref = RuleRef(rule_id if id_ok else None, n)
    t = Table(check, raw, loc, RULE_KEYS, ref)
    t.unknown_keys()

    if "id" not in raw:
        t.error(None, 'has no id: add id = "..." (unique in the file, up to 256 characters)')
    elif t.typed("id", (str,), "a string") is None:
        pass
    elif not rule_id:
        t.error("id", 'id is empty: give the rule a unique id, like id = "block-scanner"')
    elif len(rule_id) > MAX_ID_CHARS:
        t.error("id", f"id is {len(rule_id)} characters long, more than {MAX_ID_CHARS}: shorten it")
    elif unsafe(rule_id) is not None:
        t.error("id", f"id contains {escape(str(unsafe(rule_id)))}, {CONTROL_HINT}")
    elif not rule_id.isprintable():
        t.error("id", "id contains a control character (tab, newline...): use letters, digits, - and _")
    elif rule_id.startswith(kernel_rules.EXTERNAL_PREFIX):
        t.error("id", f"ids starting with {quote(kernel_rules.EXTERNAL_PREFIX)} name other tools' BLOCKLIST entries: "
                "choose another id")  # fmt: skip
    elif rule_id in kernel_rules.GROUP_RULE_IDS:
        t.error("id", f"id {quote(rule_id)} is reserved: the hits of every {_GROUP_WHAT[rule_id]} count under it "
                "(/metrics' rule_id): choose another id")  # fmt: skip
    elif rule_id in first_id:
        check.error(
            (*loc, "id"),
            f"duplicate id {quote(rule_id)} (first at line ",
            ref,
            first_id[rule_id],
            "): give each rule its own id",
        )
    else:
        first_id[rule_id] = (*loc, "id")

    description = t.string("description", "")
    if len(description) > MAX_DESCRIPTION_CHARS:
        t.error(
            "description",
            f"description is {len(description)} characters long, more than {MAX_DESCRIPTION_CHARS}: shorten it",
        )

    action = Action.DROP  # no action: drop, as ironpost-tui always did (the seed requires one)
    word = t.typed("action", (str,), 'a string: "drop", "block" or "monitor"')
    if word is not None and word.lower() not in ACTIONS:
        t.error("action", f"action {quote(word)} is not one of drop, block (= drop), monitor")
    elif word is not None:
        action = ACTIONS[word.lower()]

    src, dst = _address(t, "src_ip"), _address(t, "dst_ip")
    port = t.integer("dst_port", -1, 0, 65535, "a port is 0 to 65535") if "dst_port" in raw else None
    proto = None
    if "protocol" in raw:
        named = raw["protocol"]
        number = PROTOCOL_NAMES.get(named.lower()) if isinstance(named, str) else None
        hint = f": use protocol = {number} for {named.lower()}" if number is not None else ""
        proto = t.integer("protocol", -1, 0, 255, "an IP protocol number is 0 to 255 (6 tcp, 17 udp, 1 icmp)", hint)
    if not any(k in raw for k in MATCH_KEYS):
        t.error(None, "has no match field: give at least one of src_ip, dst_ip, dst_port, protocol")
    if src is not None and dst is not None and src.version != dst.version:
        t.error("dst_ip", f"src_ip is IPv{src.version} and dst_ip is IPv{dst.version}: a rule matches one IP version")
    if port is not None and port >= 0 and proto is not None and proto >= 0 and proto not in (6, 17):
        t.error("dst_port", f"dst_port matches TCP and UDP only: use protocol 6 (tcp), 17 (udp) or none, not {proto}")

    expires_at = None
    if "expires_in" in raw and "expires_at" in raw:
        t.error("expires_at", "give expires_in or expires_at, not both")
    elif "expires_in" in raw:
        expires_at = now + t.duration("expires_in", 0)
    elif "expires_at" in raw:
        expires_at = _expires_at(t)
    auto = t.boolean("auto", False)

    if len(check.pending) + check.dropped != errors_before:
        return None
    assert isinstance(rule_id, str)
    rule = FilterRule(
        id=rule_id,
        action=action,
        src_ip=src,
        dst_ip=dst,
        dst_port=port,
        protocol=proto,
        description=description,
        expires_at=expires_at,
        auto=auto,
    )
    return rule, loc, n


def _address(t: Table, key: str) -> IPNetwork | None:
    text = t.typed(key, (str,), f"a string with an address or prefix, {_ADDRESS_EXAMPLES}")
    if text is None:
        return None
    try:
        return network(text)
    except ValueError as exc:
        t.error(key, f"{key} {exc}")
        return None


def _datetime(day: str, clock: str, frac: str | None, offset: str) -> dt.datetime:
    """The parts of an RFC 3339 date-time (``_RFC3339``'s groups) as a datetime; ValueError for no such day or
    time.  The second's fraction is read as six digits (cut, or filled with zeros): Python 3.10's
    fromisoformat() reads three or six only (3.11 reads any), and RFC 3339 allows any."""
    offset = "+00:00" if offset in ("Z", "z") else offset
    micros = f".{(frac[1:] + '000000')[:6]}" if frac else ""
    return dt.datetime.fromisoformat(f"{day}T{clock}{micros}{offset}")


def rfc3339(text: str) -> dt.datetime:
    """An RFC 3339 date-time with its UTC offset; ValueError for anything else."""
    m = _RFC3339.fullmatch(text)
    if m is None or m.group(4) is None:
        raise ValueError(f"{quote(text)} is not an RFC 3339 date-time with a UTC offset")
    day, clock, frac, offset = m.groups()
    return _datetime(day, clock, frac, offset)


def _expires_at(t: Table) -> float | None:
    value = t.raw["expires_at"]
    example = "2030-01-01T00:00:00Z"
    if isinstance(value, str):
        m = _RFC3339.fullmatch(value)
        if m is None:
            t.error("expires_at", f"expires_at {quote(value)} is not an RFC 3339 date-time: write one like {example}")
            return None
        day, clock, frac, offset = m.groups()
        if offset is None:
            t.error("expires_at", f"expires_at {quote(value)} has no UTC offset: add one, like {day}T{clock}Z")
            return None
        try:
            value = _datetime(day, clock, frac, offset)
        except ValueError:
            t.error("expires_at", f"expires_at {quote(value)} is not a valid date and time")
            return None
    elif isinstance(value, dt.datetime) and value.tzinfo is None:
        t.error("expires_at", f"expires_at {value.isoformat()} has no UTC offset: add one, like {value.isoformat()}Z")
        return None
    elif not isinstance(value, dt.datetime):
        t.error("expires_at", f"expires_at must be a date-time with a UTC offset, like {example}, got {show(value)}")
        return None
    try:
        stamp = value.timestamp()
    except (OverflowError, ValueError, OSError):
        t.error("expires_at", f"expires_at {value.isoformat()} is out of range")
        return None
    if stamp < 0:  # a recording holds times from 1970 on: such a rule made the run's recording unplayable
        later = "leave it out, or write a date after"
        t.error("expires_at", f"expires_at {value.isoformat()} is before 1970-01-01: {later}")
        return None
    if stamp > MAX_WALL_CLOCK:
        latest = dt.datetime.fromtimestamp(MAX_WALL_CLOCK, dt.timezone.utc).strftime("%Y-%m-%d")
        t.error(
            "expires_at",
            f"expires_at {value.isoformat()} is after {latest}: leave it out for a rule that never expires",
        )
        return None
    return stamp


def _kernel_fit(check: Check, built: list[tuple[FilterRule, Loc, int]], blocklist_max: int) -> None:
    """What the datapath would refuse when these rules are installed, said now."""
    dp = DatapathConfig(blocklist_max_entries=blocklist_max)
    capacity = {
        MapName.BLOCKLIST: dp.blocklist_max_entries,
        MapName.SRC4: dp.cidr_max_entries,
        MapName.SRC6: dp.cidr_max_entries,
    }
    capacity[MapName.MATCH] = dp.match_max_entries
    raise_it = {MapName.BLOCKLIST: ": raise [ebpf] blocklist_max_entries"}
    held: dict[tuple[object, ...], tuple[str, Loc]] = {}
    shapes: set[kernel_rules.Shape] = set()
    counts: Counter[str] = Counter()
    for rule, loc, n in built:
        try:
            placement = kernel_rules.place(rule)
        except RuleRefused as exc:
            check.error(loc, exc.message, RuleRef(rule.id, n))
            continue
        key = (placement.map_name, placement.shape, placement.key)
        if key in held:
            other, other_loc = held[key]
            check.error(
                loc,
                f"matches exactly the packets rule {quote(other)} matches (line ",
                RuleRef(rule.id, n),
                other_loc,
                "): remove one of them",
            )
            continue
        held[key] = (rule.id, loc)
        if placement.shape is not None and placement.shape not in shapes:
            if len(shapes) == dp.shapes_max:
                check.error(
                    loc,
                    f"needs a rule shape (the fields and prefix lengths it matches on) beyond the {dp.shapes_max} "
                    "the kernel holds: make it match on the same fields as other rules",
                    RuleRef(rule.id, n),
                )
                continue
            shapes.add(placement.shape)
        counts[placement.map_name] += 1
        cap = capacity[placement.map_name]
        if counts[placement.map_name] == cap + 1:
            check.error(
                loc,
                f"is rule {cap + 1} for the kernel's {placement.map_name} {CAPACITY_MARK} {cap}"
                f"{raise_it.get(placement.map_name, ': use fewer rules of this kind')}",
                RuleRef(rule.id, n),
            )
