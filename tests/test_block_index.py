"""BlockIndex (rules/blocking.py) finds the rules that drop a source by a dict read per prefix length in
use, not by a scan of every prefix rule per source (a storm of alerts against 1,000 prefix rules): the
same answers as that scan, on random rule sets and addresses, IPv4 and IPv6."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ironpost_tui.model import Action, FilterRule, IPNetwork, RuleStatus
from ironpost_tui.rules.blocking import BlockIndex


def scan(rules: list[RuleStatus], address: str) -> list[RuleStatus]:
    """The oracle: every source-only drop rule covering ``address``; the exact ones, else the narrowest."""
    addr = ipaddress.ip_address(address)
    mine = [s for s in rules if s.rule.action is Action.DROP and s.rule.src_ip is not None
            and s.rule.match_fields == ("src_ip",) and s.rule.src_ip.version == addr.version]  # fmt: skip
    exact = [
        s for s in mine if s.rule.src_ip is not None and s.rule.src_ip.num_addresses == 1 and addr in s.rule.src_ip
    ]
    if exact:
        return exact
    covering = [s for s in mine if s.rule.src_ip is not None and addr in s.rule.src_ip]
    if not covering:
        return []
    narrowest = max(s.rule.src_ip.prefixlen for s in covering if s.rule.src_ip is not None)
    return [s for s in covering if s.rule.src_ip is not None and s.rule.src_ip.prefixlen == narrowest]


def status(i: int, net: IPNetwork, action: Action = Action.DROP, dport: int | None = None) -> RuleStatus:
    return RuleStatus(FilterRule(f"r{i}", action, src_ip=net, dst_port=dport), "SRC4", i)


# A small corner of each family, so that rules overlap and addresses fall inside them.
V4 = st.builds(lambda a, n: ipaddress.ip_network(f"198.18.{a >> 8}.{a & 255}/{n}", strict=False),
               st.integers(0, 1023), st.integers(20, 32))  # fmt: skip
V6 = st.builds(lambda a, n: ipaddress.ip_network(f"2001:db8::{a:x}/{n}", strict=False),
               st.integers(0, 4095), st.integers(112, 128))  # fmt: skip
RULE = st.tuples(st.one_of(V4, V6), st.sampled_from([Action.DROP, Action.DROP, Action.MONITOR]), st.booleans())
ADDRESS = st.one_of(
    st.integers(0, 1023).map(lambda a: f"198.18.{a >> 8}.{a & 255}"),
    st.integers(0, 4095).map(lambda a: f"2001:db8::{a:x}"),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(RULE, max_size=40), st.lists(ADDRESS, min_size=1, max_size=20))
def test_the_same_rules_as_a_scan_of_every_rule(
    specs: list[tuple[IPNetwork, Action, bool]], addresses: list[str]
) -> None:
    rules = [status(i, net, action, 80 if with_port else None) for i, (net, action, with_port) in enumerate(specs)]
    index = BlockIndex(rules)
    for address in addresses:
        assert index.covering(address) == scan(rules, address), address


def test_narrowest_prefix_wins_and_rules_on_one_prefix_are_all_named() -> None:
    wide, narrow, twin = (status(1, ipaddress.ip_network("198.18.0.0/16")),
                          status(2, ipaddress.ip_network("198.18.4.0/24")),
                          status(3, ipaddress.ip_network("198.18.4.0/24")))  # fmt: skip
    index = BlockIndex([wide, narrow, twin])
    assert index.covering("198.18.4.9") == [narrow, twin]
    assert index.covering("198.18.5.9") == [wide]
    assert index.covering("198.19.0.1") == [] and index.covering("not an address") == []
    assert index.covering("2001:db8::1") == []  # the control: another family is never covered by IPv4
