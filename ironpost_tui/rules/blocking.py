"""Which drop rules block a source address: the console's unblock, and an alert's "blocked" state."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Mapping, Sequence

from ironpost_tui.detectors.alerts import Block
from ironpost_tui.model import Action, RuleStatus


class BlockIndex:
    """The drop rules on the source alone (what the kernel drops before counting a source), by the
    addresses they cover: host rules in a dict, prefixes in one dict per (family, length), so looking up
    the sources of a storm's thousands of alerts costs a few dict reads each (one per prefix length in
    use), however many prefix rules there are."""

    def __init__(self, rules: Iterable[RuleStatus]) -> None:
        self.rules = tuple(rules)
        self._hosts: dict[str, list[RuleStatus]] = {}
        # (version, prefix length) -> network address as an int -> the rules on that prefix
        self._prefixes: dict[tuple[int, int], dict[int, list[RuleStatus]]] = {}
        for s in self.rules:
            net = s.rule.src_ip
            rule = s.rule
            if rule.action is not Action.DROP or net is None:
                continue
            if rule.dst_ip is not None or rule.dst_port is not None or rule.protocol is not None:
                continue  # not on the source alone
            if net.prefixlen == net.max_prefixlen:
                self._hosts.setdefault(str(net.network_address), []).append(s)
            else:
                by_net = self._prefixes.setdefault((net.version, net.prefixlen), {})
                by_net.setdefault(int(net.network_address), []).append(s)
        # The lengths in use per family, longest (narrowest) first.
        self._lengths = {v: sorted((n for ver, n in self._prefixes if ver == v), reverse=True) for v in (4, 6)}

    def covering(self, address: str) -> list[RuleStatus]:
        """The rules that drop ``address``: the exact one(s) if any, else the narrowest prefix."""
        try:
            addr = ipaddress.ip_address(address)
        except ValueError:
            return []
        exact = self._hosts.get(str(addr))
        if exact:
            return list(exact)
        value, bits = int(addr), addr.max_prefixlen
        for length in self._lengths[addr.version]:
            shift = bits - length
            found = self._prefixes[(addr.version, length)].get(value >> shift << shift)
            if found:
                return list(found)
        return []

    def blocks(self, sources: Iterable[str], now: float) -> Mapping[str, Block]:
        """The block holding on each of ``sources`` (unexpired at ``now``; of several, the one
        lasting longest), with its drops."""
        out: dict[str, Block] = {}
        if not self._hosts and not self._prefixes:
            return out  # no source rule: nothing to look up (a storm's thousands of sources cost nothing)
        for source in sources:
            # Only prefixes need the address parsed; a host rule is found by its text (str(address)).
            found = self.covering(source) if self._prefixes else self._hosts.get(source, [])
            held = [s for s in found if s.rule.expires_at is None or s.rule.expires_at > now]
            if held:
                best = max(held, key=lambda s: float("inf") if s.rule.expires_at is None else s.rule.expires_at)
                out[source] = Block(best.rule.id, best.rule.expires_at, best.hits)
        return out


def blocking_rules(address: str, rules: Sequence[RuleStatus]) -> list[RuleStatus]:
    """The drop rules on the source alone that cover ``address``: the exact one(s) if any, else the
    narrowest prefix.  Empty when nothing blocks it that way."""
    return BlockIndex(rules).covering(address)
