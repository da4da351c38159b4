"""capture --filter: the events filter's syntax, only what the kernel can evaluate (no root)."""

from __future__ import annotations

import ipaddress

import pytest

from ironpost_tui.records.capture_expr import CaptureExpression


def test_the_kernel_fields_are_taken() -> None:
    e = CaptureExpression.parse("src:198.18.0.7 dst:198.18.0.0/24 port:53 proto:udp rule:block-x")
    assert e.src == ipaddress.ip_network("198.18.0.7/32") and e.dst == ipaddress.ip_network("198.18.0.0/24")
    assert (e.port, e.protocol, e.rule_id) == (53, 17, "block-x")
    six = CaptureExpression.parse("SRC:2001:db8::/32 proto:58")
    assert six.src == ipaddress.ip_network("2001:db8::/32") and six.protocol == 58 and six.dst is None
    assert CaptureExpression.parse("port:22") == CaptureExpression(port=22)


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "empty"),
        ("198.18.0.7", "not words"),
        ("flood", "not words"),
        ("sport:53", "port: (either side)"),
        ("dport:53", "port: (either side)"),
        ("verdict:drop", "cannot select by verdict"),
        ("srcip:198.18.0.7", "unknown key"),
        ("src:", "give a value"),
        ("src:nonsense", "not an address"),
        ("src:198.18.0.1/33", "not an address"),
        ("port:70000", "0-65535"),
        ("port:0", "any port"),
        ("port:٣", "0-65535"),  # a digit, but not an ASCII one
        ("proto:bogus", "a protocol is"),
        ("proto:0", "any protocol"),
        ("src:198.18.0.1 src:198.18.0.2", "given twice"),
        ("src:198.18.0.1 dst:2001:db8::1", "different IP versions"),
        ("port:1 " * 600, "at most 1024"),
    ],
)
def test_what_the_kernel_cannot_evaluate_is_one_line(text: str, says: str) -> None:
    with pytest.raises(ValueError) as err:
        CaptureExpression.parse(text)
    message = str(err.value)
    assert says in message and "\n" not in message
