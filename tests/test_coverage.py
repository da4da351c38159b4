"""rules/coverage.py: PrefixIndex's covered() and covering() against a brute-force scan of every
prefix, on random sequences of additions, re-assignments and removals (IPv4 and IPv6 mixed)."""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from ironpost_tui.model import IPNetwork
from ironpost_tui.rules.coverage import PrefixIndex

V4 = ipaddress.ip_network("198.18.0.0/15")
V6 = ipaddress.ip_network("2001:db8::/32")


@st.composite
def networks(draw: st.DrawFn) -> IPNetwork:
    """Prefixes of the lab ranges, few distinct lengths and addresses so that they nest often."""
    base = draw(st.sampled_from([V4, V6]))
    plen = draw(st.sampled_from([base.prefixlen, base.prefixlen + 1, base.prefixlen + 3, base.prefixlen + 4,
                                 base.max_prefixlen - 1, base.max_prefixlen]))  # fmt: skip
    offset = draw(st.integers(0, 63)) << (base.max_prefixlen - base.prefixlen - 6)
    offset |= draw(st.integers(0, 3))
    address = int(base.network_address) + offset
    return ipaddress.ip_network((address, base.max_prefixlen)).supernet(new_prefix=plen)


def brute_covered(ref: dict[IPNetwork, str], prefix: IPNetwork) -> list[str]:
    return [rid for net, rid in ref.items()
            if net != prefix and net.version == prefix.version and net.subnet_of(prefix)]  # type: ignore[arg-type]  # fmt: skip


def brute_covering(ref: dict[IPNetwork, str], prefix: IPNetwork) -> list[str]:
    found = [(net.prefixlen, rid) for net, rid in ref.items()
             if net != prefix and net.version == prefix.version and prefix.subnet_of(net)]  # type: ignore[arg-type]  # fmt: skip
    return [rid for _, rid in sorted(found)]


ops = st.lists(st.tuples(st.sampled_from(["set", "del"]), networks(), st.integers(0, 5)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(ops, st.lists(networks(), min_size=1, max_size=10))
def test_matches_brute_force(operations: list[tuple[str, IPNetwork, int]], probes: list[IPNetwork]) -> None:
    index = PrefixIndex()
    ref: dict[IPNetwork, str] = {}
    for i, (op, net, tag) in enumerate(operations):
        if op == "set":
            index[net] = ref[net] = f"r{i}-{tag}"
        elif net in ref:
            del index[net], ref[net]
        for probe in [net, *probes]:
            assert index.covered(probe) == brute_covered(ref, probe)
            assert list(index.covering(probe)) == brute_covering(ref, probe)
    assert dict(index.items()) == ref
    assert list(index) == list(ref)  # insertion order, as a dict keeps it
    assert len(index) == len(ref)


def test_controls() -> None:
    index = PrefixIndex()
    wide, mid, narrow = (ipaddress.ip_network(n) for n in ("198.18.0.0/16", "198.18.4.0/24", "198.18.4.128/25"))
    beside = ipaddress.ip_network("198.18.5.0/24")
    v6 = ipaddress.ip_network("2001:db8::/32")
    for name, net in (("narrow", narrow), ("wide", wide), ("beside", beside), ("mid", mid), ("v6", v6)):
        index[net] = name
    assert index.covered(wide) == ["narrow", "beside", "mid"]  # insertion order
    assert index.covered(mid) == ["narrow"]
    assert index.covered(narrow) == []  # not itself
    assert index.covered(beside) == []  # a neighbour is not inside
    assert list(index.covering(narrow)) == ["wide", "mid"]  # shortest first
    assert list(index.covering(wide)) == []
    assert list(index.covering(ipaddress.ip_network("2001:db8:1::/48"))) == ["v6"]  # other version apart
    del index[mid]
    assert index.covered(wide) == ["narrow", "beside"]
    assert list(index.covering(narrow)) == ["wide"]
    assert "mid" not in index.values()
