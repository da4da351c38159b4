"""The rule detail's fields (ui/details.py, Textual-free; no root): an expiry on another day shows its date, and
each rule names where it comes from."""

from __future__ import annotations

import dataclasses
import ipaddress
import time

from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.ui.details import rule_fields

NOON = time.mktime((2026, 12, 6, 12, 0, 0, 0, 0, -1))  # local noon: +1 h is today, +24 h tomorrow


def field(rule: FilterRule, name: str, rules_path: str = "/etc/ironpost/ironpost.toml") -> str:
    return dict(rule_fields(RuleStatus(rule, "BLOCKLIST"), NOON, rules_path))[name]


def test_an_expiry_on_another_day_shows_its_date_one_today_its_time() -> None:
    """A 24 h block read "expires 16:45:14, in 23h58m", a time that seemed past (until session 24)."""
    src = ipaddress.ip_network("198.18.0.9")
    tomorrow = field(FilterRule("b", Action.DROP, src, expires_at=NOON + 86_400), "expires")
    assert tomorrow == "2026-12-07 12:00:00, in 1d"
    assert field(FilterRule("b", Action.DROP, src, expires_at=NOON + 3_600), "expires") == "13:00:00, in 1h"


def test_each_rule_names_where_it_comes_from() -> None:
    """Until session 24 every rule said "rules file": other tools' entries and CrowdSec decisions too; until
    session 25 the operator's said "the configuration" also when kept in a state file (the demo's, a run with no
    -c): the file they are saved in is named."""
    src = ipaddress.ip_network("198.18.0.9")
    mine = FilterRule("mine", Action.DROP, src)
    assert field(mine, "origin") == "the operator's (saved in /etc/ironpost/ironpost.toml)"
    state = "/var/lib/ironpost/veth-ipd0.rules.toml"
    assert field(mine, "origin", state) == f"the operator's (saved in {state})"
    assert field(mine, "origin", "") == "the operator's"  # a replay
    assert "journal" in field(FilterRule("auto-x", Action.DROP, src, auto=True), "origin")
    assert "another tool's" in field(FilterRule("external:198.18.0.9", Action.DROP, src, external=True), "origin")
    assert "CrowdSec" in field(FilterRule("crowdsec", Action.DROP, src, crowdsec=True), "origin")


def test_a_resolved_alert_lasted_from_its_first_packet_to_its_last() -> None:
    """Until session 25 "lasted" ran to the resolution, [detectors] quiet_secs after the last packet (1m11s for a
    41 s attack); its resolution stays in the state.  The alert table's "last" column is the last packet too."""
    from ironpost_tui.detectors.alerts import Alert
    from ironpost_tui.ui.details import alert_fields
    from ironpost_tui.ui.widgets.alert_table import AlertTable

    over = Alert(1, "syn_flood", "high", "198.18.0.9", "eth9", 500, 500, 10.0, NOON, NOON + 41, "500 SYNs")
    over = dataclasses.replace(over, resolved_at=NOON + 71)
    fields = dict(alert_fields(over, False, NOON + 100))
    assert fields["lasted"] == "41s" and fields["state"].startswith("resolved at 12:01:11")
    assert AlertTable()._sort_keys()["last"](over) == NOON + 41


def test_a_blocked_alerts_compact_state_is_never_wider_than_blocked_59m() -> None:
    """At 80 columns the state is compact so that the detector stays on screen; "blocked 1h59m" (13 cells) pushed
    it past the edge ("port_sca", session 24's drill).  Now the largest unit alone ("blocked 2h"), never wider
    than "blocked 59m"; the exact time left is in the detail.  The control: 9m reads as before."""
    from ironpost_tui.detectors.alerts import Alert, Block
    from ironpost_tui.ui.details import state_text

    alert = Alert(1, "syn_flood", "high", "198.18.0.9", "eth9", 500, 500, 10.0, NOON, NOON + 41, "500 SYNs")

    def compact(left: float) -> str:
        return state_text(dataclasses.replace(alert, block=Block("b", NOON + left, 7)), False, NOON, compact=True)

    assert compact(599) == "blocked 9m"
    assert compact(2 * 3600 - 60) == "blocked 2h"  # the nearest hour, not 1h (a review)
    assert compact(3600 + 29 * 60) == "blocked 1h" and compact(86_400 + 13 * 3600) == "blocked 2d"
    assert max(len(compact(left)) for left in range(1, 10 * 86_400, 37)) <= len("blocked 59m")
