"""FilterRule keeps its hash once computed (a rule is hashed again and again on its way in): equal rules
still hash alike, a changed copy does not carry the old hash, and a pickle leaves it behind (another
process hashes strings differently)."""

from __future__ import annotations

import copy
import dataclasses
import ipaddress
import pickle
import subprocess
import sys
from collections.abc import Callable

from ironpost_tui.model import Action, FilterRule


def rule(**kw: object) -> FilterRule:
    base: dict[str, object] = {"id": "r", "src_ip": ipaddress.ip_network("198.18.0.0/24"), "dst_port": 22}
    return FilterRule(**(base | kw))  # type: ignore[arg-type]


def test_equal_rules_hash_alike_and_every_field_counts() -> None:
    a, b = rule(), rule()
    assert hash(a) == hash(b) and hash(a) == hash(a)  # computed, then kept
    assert a.kept().hash == hash(a)
    assert {a: 1}[b] == 1
    # Negative controls: a rule differing in any one field is another key.
    for change in ({"id": "s"}, {"action": Action.MONITOR}, {"dst_port": 23}, {"description": "x"}, {"auto": True}):
        other = rule(**change)
        assert other != a and other not in {a}


def test_a_replaced_copy_or_a_pickle_does_not_carry_the_kept_hash() -> None:
    a = rule()
    hash(a)
    moved = dataclasses.replace(a, dst_port=80)
    assert "_kept" not in moved.__dict__ and hash(moved) != hash(a)
    for again in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert "_kept" not in again.__dict__ and again == a and hash(again) == hash(a)
    # In another process (another string hash seed) the pickle gives a rule whose hash is its own.
    code = (
        "import pickle, sys; r = pickle.loads(sys.stdin.buffer.read()); "
        "assert '_kept' not in r.__dict__; print(hash(r) == hash(pickle.loads(pickle.dumps(r))))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(a), capture_output=True, check=True)
    assert out.stdout.strip() == b"True"


def test_a_rule_keeps_its_placement_and_a_copy_or_a_change_places_again() -> None:
    """rules/placement.py keeps a rule's placement with the rule (FilterRule.kept, as its hash): placed
    once, the same object after; a changed copy is placed for what it is, a pickle or a copy leaves it
    behind, and a rule the kernel cannot hold is refused at each call, never kept."""
    import pytest

    from ironpost_tui.errors import RuleRefused
    from ironpost_tui.rules.placement import place

    a = rule()
    first = place(a)
    assert a.kept().placement is first and place(a) is first
    assert place(rule()) == first  # an equal rule, placed on its own: the same map and key
    moved = dataclasses.replace(a, dst_port=80)
    assert "_kept" not in moved.__dict__ and place(moved).key != first.key  # the control
    exact = dataclasses.replace(a, src_ip=ipaddress.ip_network("198.18.0.7/32"), dst_port=None)
    assert place(exact).map_name != first.map_name  # BLOCKLIST, not MATCH: placed for what it is
    for again in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert "_kept" not in again.__dict__ and place(again) == first
    bad = FilterRule(id="none")  # no match field
    for _ in range(2):
        with pytest.raises(RuleRefused, match="no match field"):
            place(bad)
    assert bad.kept().placement is None


def test_what_a_rule_keeps_is_one_attribute_so_rules_share_their_dicts_keys() -> None:
    """Hashed and placed in either order, every rule has the same attributes in the same order: CPython
    keeps one table of keys for all of them (a rule's dict 160 bytes; 832 with two kept attributes added
    in either order), so 10,000 rules of a file cost no more for what they keep."""
    import tracemalloc

    from ironpost_tui.rules.placement import place

    def retained_per_rule(keep: Callable[[FilterRule, int], None]) -> float:
        rules = [rule(id=f"r{i}", dst_port=i) for i in range(2_000)]
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for i, r in enumerate(rules):
                keep(r, i)
            return (tracemalloc.get_traced_memory()[0] - before) / len(rules)
        finally:
            tracemalloc.stop()

    def kept(r: FilterRule, i: int) -> None:  # half hashed first, half placed first
        if i % 2:
            hash(r)
            place(r)
        else:
            place(r)
            hash(r)

    def two_attributes(r: FilterRule, i: int) -> None:  # the control: the same values kept as two attributes
        h, p = hash(r), place(r)
        for name, value in (("_h", h), ("_p", p)) if i % 2 else (("_p", p), ("_h", h)):
            object.__setattr__(r, name, value)

    a, b = rule(id="a"), rule(id="b")
    kept(a, 0)
    kept(b, 1)
    assert list(a.__dict__) == list(b.__dict__)
    ours, control = retained_per_rule(kept), retained_per_rule(two_attributes)
    assert ours < control - 400, (ours, control)  # about 420 and 1,220 bytes a rule here
