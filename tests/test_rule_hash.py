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

from ironpost_tui.model import Action, FilterRule


def rule(**kw: object) -> FilterRule:
    base: dict[str, object] = {"id": "r", "src_ip": ipaddress.ip_network("198.18.0.0/24"), "dst_port": 22}
    return FilterRule(**(base | kw))  # type: ignore[arg-type]


def test_equal_rules_hash_alike_and_every_field_counts() -> None:
    a, b = rule(), rule()
    assert hash(a) == hash(b) and hash(a) == hash(a)  # computed, then kept
    assert "_hash" in a.__dict__
    assert {a: 1}[b] == 1
    # Negative controls: a rule differing in any one field is another key.
    for change in ({"id": "s"}, {"action": Action.MONITOR}, {"dst_port": 23}, {"description": "x"}, {"auto": True}):
        other = rule(**change)
        assert other != a and other not in {a}


def test_a_replaced_copy_or_a_pickle_does_not_carry_the_kept_hash() -> None:
    a = rule()
    hash(a)
    moved = dataclasses.replace(a, dst_port=80)
    assert "_hash" not in moved.__dict__ and hash(moved) != hash(a)
    for again in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert "_hash" not in again.__dict__ and again == a and hash(again) == hash(a)
    # In another process (another string hash seed) the pickle gives a rule whose hash is its own.
    code = (
        "import pickle, sys; r = pickle.loads(sys.stdin.buffer.read()); "
        "assert '_hash' not in r.__dict__; print(hash(r) == hash(pickle.loads(pickle.dumps(r))))"
    )
    out = subprocess.run([sys.executable, "-c", code], input=pickle.dumps(a), capture_output=True, check=True)
    assert out.stdout.strip() == b"True"


def test_a_rule_keeps_its_placement_and_a_copy_or_a_change_places_again() -> None:
    """rules/placement.py keeps a rule's placement on the rule (as its hash): placed once, the same
    object after; a changed copy is placed for what it is, a pickle or a copy leaves it behind, and a
    rule the kernel cannot hold is refused at each call, never kept."""
    import pytest

    from ironpost_tui.errors import RuleRefused
    from ironpost_tui.rules.placement import place

    a = rule()
    first = place(a)
    assert a.__dict__["_placement"] is first and place(a) is first
    assert place(rule()) == first  # an equal rule, placed on its own: the same map and key
    moved = dataclasses.replace(a, dst_port=80)
    assert "_placement" not in moved.__dict__ and place(moved).key != first.key  # the control
    exact = dataclasses.replace(a, src_ip=ipaddress.ip_network("198.18.0.7/32"), dst_port=None)
    assert place(exact).map_name != first.map_name  # BLOCKLIST, not MATCH: placed for what it is
    for again in (pickle.loads(pickle.dumps(a)), copy.copy(a), copy.deepcopy(a)):
        assert "_placement" not in again.__dict__ and place(again) == first
    bad = FilterRule(id="none")  # no match field
    for _ in range(2):
        with pytest.raises(RuleRefused, match="no match field"):
            place(bad)
    assert "_placement" not in bad.__dict__
