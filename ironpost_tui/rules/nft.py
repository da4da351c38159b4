"""A rule as the equivalent nftables command, for operators who want it outside XDP.

Textual-free.  ``nft_rule`` is the rule in nft's own syntax (for ``nft -f``);
``nft_command`` is a shell command line: the monitor's log prefix is single-quoted
so the shell keeps nft's double quotes.
"""

from __future__ import annotations

import ipaddress
import re

from ironpost_tui.model import Action, FilterRule

# nft's names for the protocols the console names; others stay numbers (nft accepts both)
_L4_NAMES = {1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp"}
_PREFIX_MAX = 127  # NF_LOG_PREFIXLEN (128) with its NUL
_UNSAFE = re.compile(r"[^A-Za-z0-9._:/@+=-]")


def _address(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    """198.18.0.5 for a host, 198.18.0.0/24 for a prefix."""
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _family(net: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str:
    return "ip" if net.version == 4 else "ip6"


def _protocol(number: int) -> str:
    return _L4_NAMES.get(number, str(number))


def log_prefix(rule: FilterRule) -> str:
    """``ironpost monitor <id>: `` with the id reduced to characters safe in any quoting."""
    prefix = f"ironpost monitor {_UNSAFE.sub('_', rule.id)}: "
    if len(prefix) > _PREFIX_MAX:
        prefix = prefix[: _PREFIX_MAX - 2] + ": "
    return prefix


def _matches(rule: FilterRule) -> list[str]:
    parts: list[str] = []
    if rule.src_ip is not None:
        parts.append(f"{_family(rule.src_ip)} saddr {_address(rule.src_ip)}")
    if rule.dst_ip is not None:
        parts.append(f"{_family(rule.dst_ip)} daddr {_address(rule.dst_ip)}")
    if rule.dst_port is not None:
        if rule.protocol in (6, 17):
            parts.append(f"{_protocol(rule.protocol)} dport {rule.dst_port}")
        elif rule.protocol is None:  # ironpost's port rules match TCP and UDP
            parts.append(f"meta l4proto {{ tcp, udp }} th dport {rule.dst_port}")
        else:
            parts.append(f"meta l4proto {_protocol(rule.protocol)} th dport {rule.dst_port}")
    elif rule.protocol is not None:
        parts.append(f"meta l4proto {_protocol(rule.protocol)}")
    return parts


def nft_rule(rule: FilterRule, table: str = "inet filter", chain: str = "input", *, shell: bool = False) -> str:
    """``add rule TABLE CHAIN MATCHES VERDICT`` in nft syntax (``shell``: quoted for a shell)."""
    parts = [f"add rule {table} {chain}", *_matches(rule)]
    if rule.action is Action.MONITOR:
        quoted = f'"{log_prefix(rule)}"'
        parts += [f"log prefix '{quoted}'" if shell else f"log prefix {quoted}", "counter"]
    else:
        parts.append("drop")
    return " ".join(parts)


def nft_command(rule: FilterRule, table: str = "inet filter", chain: str = "input") -> str:
    """The shell command that adds the rule's equivalent to nftables, e.g.
    ``nft add rule inet filter input ip saddr 198.18.0.5 tcp dport 22 drop``."""
    return "nft " + nft_rule(rule, table, chain, shell=True)


__all__ = ["log_prefix", "nft_command", "nft_rule"]
