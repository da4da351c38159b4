"""What belongs to an alert in its detail: the events filter of its source, the rules on it (Textual-free).

An alert from one source scopes to ``src:ADDRESS`` (the events pane's own filter syntax, so the
operator can type the same); one from many sources (a spoofed flood) to its target, ``dst:ADDRESS``.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from ironpost_tui.detectors import Alert
from ironpost_tui.model import IPAddress, RuleStatus
from ironpost_tui.ui.event_filter import EventFilter


def address(text: str) -> IPAddress | None:
    """An address as an alert names it (``198.18.0.5``, ``198.18.0.5:80``, ``[2001:db8::1]:80``); None if not one."""
    for candidate in (text, text.rpartition(":")[0].strip("[]")):
        try:
            return ipaddress.ip_address(candidate)
        except ValueError:
            continue
    return None


def event_filter(alert: Alert) -> EventFilter:
    """The events filter that shows the alert's packets; an empty one (nothing to scope to) when
    neither its source nor its target is an address."""
    source = address(alert.source)
    if source is not None:
        return EventFilter.parse(f"src:{source}")
    target = address(alert.target)
    if target is not None:
        return EventFilter.parse(f"dst:{target}")
    return EventFilter("")


def matching_rules(alert: Alert, rules: Iterable[RuleStatus]) -> list[RuleStatus]:
    """The rules whose source prefix covers the alert's source (for many sources: whose destination
    prefix covers its target).  Rules without that field match every source and are left out."""
    source = address(alert.source)
    if source is not None:
        return [
            s for s in rules if s.rule.src_ip is not None and s.rule.src_ip.version == source.version
            and source in s.rule.src_ip
        ]  # fmt: skip
    target = address(alert.target)
    if target is not None:
        return [
            s for s in rules if s.rule.dst_ip is not None and s.rule.dst_ip.version == target.version
            and target in s.rule.dst_ip
        ]  # fmt: skip
    return []
