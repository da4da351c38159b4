"""A selected row in full, as (label, value) pairs, most useful first (Textual-free): the tables
cut ids and long values to keep the columns that matter on an 80-column screen; these show them."""

from __future__ import annotations

from ironpost_tui.detectors import Alert
from ironpost_tui.model import FilterRule, RuleStatus
from ironpost_tui.records.export import alert_state
from ironpost_tui.rules.nft import nft_command
from ironpost_tui.ui import format as fmt

Fields = list[tuple[str, str]]


def _origin(rule: FilterRule, rules_path: str) -> str:
    """Where a rule comes from and is kept (every one was "rules file" until session 24: other tools' entries and
    CrowdSec decisions too; the operator's said "the configuration" until session 25, also when they are kept in a
    state file, the demo's among them)."""
    if rule.auto:
        return "auto-block by a detector (journal)"
    if rule.external:
        return "another tool's BLOCKLIST entry (never saved)"
    if rule.crowdsec:
        return "a CrowdSec decision (never saved)"
    if not rules_path:
        return "the operator's"  # a replay: where the live run kept them is not recorded
    return f"the operator's (saved in {fmt.text(rules_path)})"


def rule_fields(s: RuleStatus, now: float, rules_path: str = "") -> Fields:
    """(label, value) for the rule detail, most useful first; values shown as they are
    (ids and descriptions uncut: the table cuts them).  ``rules_path``: where the operator's rules are saved."""
    rule = s.rule
    if rule.expires_at is None:
        expires = "never"
    else:
        left = rule.expires_at - now
        when = fmt.moment(rule.expires_at, now)
        expires = f"{when}, in {fmt.span(left)}" if left > 0 else f"{when} (expired)"
    return [
        ("id", fmt.text(rule.id)),
        ("action", rule.action.value),
        ("source", str(rule.src_ip) if rule.src_ip is not None else "any"),
        ("destination", str(rule.dst_ip) if rule.dst_ip is not None else "any"),
        ("dst port", str(rule.dst_port) if rule.dst_port is not None else "any"),
        ("protocol", f"{fmt.protocol(rule.protocol)} ({rule.protocol})" if rule.protocol is not None else "any"),
        ("kernel map", fmt.text(s.map_name)),
        ("hits", fmt.count(s.hits)),
        ("last hit", fmt.clock(s.last_hit) if s.last_hit else "never"),
        ("expires", expires),
        ("origin", _origin(rule, rules_path)),
        ("description", fmt.text(rule.description) or "—"),
        ("as nft", fmt.text(nft_command(rule))),
    ]


def state_text(alert: Alert, acknowledged: bool, now: float, compact: bool = False) -> str:
    """The state as a row shows it: ``blocked · 9m left · 239k dropped`` while a block holds (the
    seconds only in the last minute); ``compact`` (an 80-column pane, where the detector column must
    stay on screen): ``blocked 9m``, the largest unit alone (``blocked 2h`` for 1h59m, to the nearest hour or day:
    ``blocked 1h59m`` pushed the detector past the edge until session 25), the drops and the exact time left in the
    detail below the table."""
    state = alert_state(alert, acknowledged)
    if alert.block is None or alert.resolved:
        return state
    left = alert.time_left(now)
    if left is not None and left >= 60:
        left = left // 60 * 60  # whole minutes past the first one: the row stays narrow and calm
    dropped = f"{fmt.si(alert.dropped)} dropped"
    if compact:
        if left is None:
            return state
        # The nearest hour or day (1h59m is "2h", not "1h": a review of session 25), the minutes as below.
        near = left + (43_200 if left >= 86_400 else 1_800 if left >= 3_600 else 0)
        return f"{state} {fmt.span(near, units=1)}"
    return " · ".join([state, *([f"{fmt.span(left)} left"] if left is not None else []), dropped])


def alert_fields(a: Alert, acknowledged: bool, now: float | None = None) -> Fields:
    """(label, value) for the alert detail, most useful first (``now``: what time left counts from)."""
    ack = "acknowledged" if acknowledged else "not acknowledged"
    if a.resolved_at is not None:
        state = f"resolved at {fmt.clock(a.resolved_at)}"
    elif a.block is not None:
        left = a.time_left(a.last_seen if now is None else now)
        shown = fmt.moment(a.block.until, a.last_seen if now is None else now) if a.block.until else ""
        until = f"until {shown} ({fmt.span(left or 0)} left)" if a.block.until else "no expiry"
        state = f"blocked by {fmt.text(a.block.rule_id)}, {until}, {fmt.count(a.dropped)} dropped, {ack}"
    else:
        state = f"ACTIVE, {ack}"
    rate = a.rate
    # What the table cuts at 80 columns first (the times, the summary), then the rest.
    return [
        ("summary", fmt.text(a.summary)),
        ("count", f"{fmt.count(a.count)} within {a.window_secs:g} s ({fmt.si(rate)}/s)"),
        ("first seen", fmt.clock(a.first_seen)),
        ("last seen", fmt.clock(a.last_seen)),
        # From the first packet to the last, not to the resolution quiet_secs later (until session 25).
        ("lasted", fmt.span(a.last_seen - a.first_seen)),
        ("peak", fmt.count(a.peak)),
        ("state", state),
        ("source", fmt.text(a.source)),
        ("target", fmt.text(a.target_text)),
        ("alert", str(a.id)),
        ("severity", a.severity.upper()),
        ("detector", str(a.detector)),
    ]
