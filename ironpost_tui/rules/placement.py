"""Where each rule lives in the kernel, and the keys and values it is written as.

Pure functions, no map access: rule_table.py writes what these compute.

- an exact IPv4 source alone: BLOCKLIST, key = the address (network order);
- an IPv4 source prefix alone: SRC4, an LPM trie;
- an IPv6 source (prefix or exact) alone: SRC6, an LPM trie;
- anything with dst_ip, dst_port or protocol: MATCH, keyed by the packet's
  fields masked by the rule's shape (which fields, which prefix lengths).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ironpost_tui.errors import RuleRefused
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import Action, FilterRule, IPNetwork

TCP, UDP = 6, 17


@dataclass(frozen=True)
class Shape:
    fields: int
    family: int
    src_prefixlen: int
    dst_prefixlen: int

    def pack(self) -> bytes:
        proto_mask = 0xFF if self.fields & abi.FIELD_PROTO else 0
        port_mask = 0xFFFF if self.fields & abi.FIELD_DPORT else 0
        return abi.RULE_SHAPE.pack(
            self.fields,
            self.family,
            proto_mask,
            port_mask,
            prefix_mask(self.src_prefixlen) if self.fields & abi.FIELD_SRC else bytes(16),
            prefix_mask(self.dst_prefixlen) if self.fields & abi.FIELD_DST else bytes(16),
        )


UNUSED_SHAPE = abi.RULE_SHAPE.pack(abi.SHAPE_UNUSED, 0xFF, 0, 0, bytes(16), bytes(16))


@dataclass(frozen=True)
class Placement:
    """Which map a rule goes into and under which key (MATCH keys need a shape index)."""

    map_name: MapName
    key: bytes = b""
    shape: Shape | None = None

    def match_key(self, shape_index: int) -> bytes:
        return shape_index.to_bytes(4, "little") + self.key[4:]


def prefix_mask(prefixlen: int) -> bytes:
    bits = (1 << 128) - (1 << (128 - prefixlen)) if prefixlen else 0
    return bits.to_bytes(16, "big")


def _addr16(net: IPNetwork) -> bytes:
    return net.network_address.packed.ljust(16, b"\0")


def _family(net: IPNetwork) -> int:
    return abi.FAMILY_V4 if net.version == 4 else abi.FAMILY_V6


def action_code(action: Action) -> int:
    return abi.ACTION_DROP if action is Action.DROP else abi.ACTION_MONITOR


def value(rule: FilterRule, slot: int, priority: int, acting: tuple[FilterRule, int, int] | None = None) -> bytes:
    """An entry for ``rule``; ``acting`` (rule, slot, priority) when another rule decides for it."""
    act_rule, act_slot, act_priority = acting or (rule, slot, priority)
    origin = abi.ORIGIN_EXTERNAL if rule.external else abi.ORIGIN_IRONPOST
    return abi.BLOCKLIST_VALUE.pack(
        action_code(act_rule.action), action_code(rule.action), origin, act_slot, act_priority, slot, priority
    )


def place(rule: FilterRule) -> Placement:
    """The map and key for ``rule``; RuleRefused when the kernel cannot hold it.

    A rule is placed several times on its way in (the file's check, the controller's, the table's): its
    placement is kept with the rule, as its hash is (FilterRule.kept: a frozen dataclass, its fields never
    change, and a copy or a pickle leaves it behind).  A cache keyed by the rule hashed it at each call:
    a tenth of the table's load of 10,000 rules."""
    kept = rule.kept()
    got: Placement | None = kept.placement
    if got is None:
        got = kept.placement = _place(rule)
    return got


def _place(rule: FilterRule) -> Placement:
    # The fields read once: each of rule.match_fields' calls builds a tuple (two calls: a tenth of this).
    src, dst, port, proto = rule.src_ip, rule.dst_ip, rule.dst_port, rule.protocol
    if src is None and dst is None and port is None and proto is None:
        raise RuleRefused(f"rule '{rule.id}' has no match field: give src_ip, dst_ip, dst_port or protocol")
    if src is not None and dst is not None and src.version != dst.version:
        raise RuleRefused(f"rule '{rule.id}': src_ip and dst_ip are of different IP versions")
    if port is not None and proto not in (None, TCP, UDP):
        raise RuleRefused(f"rule '{rule.id}': dst_port only matches with protocol 6 (tcp), 17 (udp) or none")
    if src is not None and dst is None and port is None and proto is None:  # a source alone
        if src.version == 4 and src.prefixlen == 32:
            return Placement(MapName.BLOCKLIST, src.network_address.packed)
        if src.version == 4:
            return Placement(MapName.SRC4, abi.LPM_V4_KEY.pack(src.prefixlen, src.network_address.packed))
        return Placement(MapName.SRC6, abi.LPM_V6_KEY.pack(src.prefixlen, src.network_address.packed))

    fields = 0
    family = abi.FAMILY_ANY
    src_bytes = dst_bytes = bytes(16)
    src_len = dst_len = 0
    if src is not None:
        fields |= abi.FIELD_SRC
        family, src_bytes, src_len = _family(src), _addr16(src), src.prefixlen
    if dst is not None:
        fields |= abi.FIELD_DST
        family, dst_bytes, dst_len = _family(dst), _addr16(dst), dst.prefixlen
    if port is not None:
        fields |= abi.FIELD_DPORT
    if proto is not None:
        fields |= abi.FIELD_PROTO
    shape = Shape(fields, family, src_len, dst_len)
    key = abi.MATCH_KEY.pack(
        0,
        family,
        proto or 0,
        (port or 0).to_bytes(2, "big"),
        src_bytes,
        dst_bytes,
    )
    return Placement(MapName.MATCH, key, shape)


def rule_from_entry(
    map_name: MapName, key: bytes, action: int, shapes: dict[int, Shape], rule_id: str
) -> FilterRule | None:
    """The rule a map entry stands for (the inverse of place), or None if unknown."""
    act = Action.DROP if action == abi.ACTION_DROP else Action.MONITOR
    if map_name == MapName.BLOCKLIST:
        return FilterRule(rule_id, act, src_ip=ipaddress.ip_network(ipaddress.IPv4Address(key[:4])))
    if map_name in (MapName.SRC4, MapName.SRC6):
        plen = int.from_bytes(key[:4], "little")
        addr = ipaddress.ip_address(key[4:])
        return FilterRule(rule_id, act, src_ip=ipaddress.ip_network(f"{addr}/{plen}"))
    _shape, family, proto, port, src, dst = abi.MATCH_KEY.unpack(key)
    shape = shapes.get(int.from_bytes(key[:4], "little"))
    if shape is None:
        return None
    width = 4 if family == abi.FAMILY_V4 else 16

    def net(raw: bytes, plen: int) -> IPNetwork:
        return ipaddress.ip_network(f"{ipaddress.ip_address(raw[:width])}/{plen}")

    return FilterRule(
        rule_id,
        act,
        src_ip=net(src, shape.src_prefixlen) if shape.fields & abi.FIELD_SRC else None,
        dst_ip=net(dst, shape.dst_prefixlen) if shape.fields & abi.FIELD_DST else None,
        dst_port=int.from_bytes(port, "big") if shape.fields & abi.FIELD_DPORT else None,
        protocol=proto if shape.fields & abi.FIELD_PROTO else None,
    )


EXTERNAL_PREFIX = "external:"  # the ids of rules another tool wrote into BLOCKLIST (reserved)
# The rule ids the hit counts of groups of rules go under (engine/snapshot.py, /metrics' rule_id): every
# auto-block, every other tool's BLOCKLIST entry, every CrowdSec decision, and every other rule whose id holds
# an address (the console's and the command line's block-ADDR, fail2ban's f2b-JAIL-ADDR: one series per ban
# until session 29).  Reserved: a rule of the file by one of these names would add its hits to a group's (or
# count twice beside the CrowdSec row).
AUTO_RULE_ID, EXTERNAL_RULE_ID, CROWDSEC_RULE_ID, ADDRESSED_RULE_ID = "auto", "external", "crowdsec", "addresses"
GROUP_RULE_IDS = (AUTO_RULE_ID, EXTERNAL_RULE_ID, CROWDSEC_RULE_ID, ADDRESSED_RULE_ID)
EXTERNAL_DESCRIPTION = "written into BLOCKLIST by another tool"


def external_rule(key: bytes, action: int) -> FilterRule:
    """The rule another tool's BLOCKLIST entry stands for (action DROP or MONITOR): id ``external:ADDRESS``."""
    addr = ipaddress.IPv4Address(key[:4])
    act = Action.DROP if action == abi.ACTION_DROP else Action.MONITOR
    return FilterRule(
        f"{EXTERNAL_PREFIX}{addr}",
        act,
        src_ip=ipaddress.ip_network(addr),
        description=EXTERNAL_DESCRIPTION,
        external=True,
    )


def allow_key(net: IPNetwork) -> tuple[MapName, bytes]:
    """ALLOW4/ALLOW6 map name and LPM key for a protected prefix."""
    if net.version == 4:
        return MapName.ALLOW4, abi.LPM_V4_KEY.pack(net.prefixlen, net.network_address.packed)
    return MapName.ALLOW6, abi.LPM_V6_KEY.pack(net.prefixlen, net.network_address.packed)


def network(text: str) -> IPNetwork:
    """An address or prefix; host bits set in a prefix are an error, not masked away."""
    return ipaddress.ip_network(text.strip(), strict=True)
