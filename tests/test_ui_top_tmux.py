"""The Top pane end to end in a real terminal (tmux, 80×24), on a veth lab: 5 shows the sources
ranked as sent, v the destinations, b on the top row blocks it (its drops show), q asks, r leaves.
Needs root."""

from __future__ import annotations

import ipaddress
import re
import time

import pytest
from support import paced
from support.agents import wait_no_xdp
from support.tmux import Session
from test_ui_tmux import START, console  # noqa: F401  (the fixture: a lab, tmux sessions, the argv)

pytestmark = pytest.mark.root


def first_row(screen: str) -> str:
    """The first row under the Top pane's header ("│ source   pkt/s ...")."""
    lines = screen.splitlines()
    for i, line in enumerate(lines):
        if re.search(r"(source|destination)\s+pkt/s", line):
            return lines[i + 1] if i + 1 < len(lines) else ""
    return ""


def test_top_pane_in_tmux_ranks_blocks_and_leaves(console) -> None:  # type: ignore[no-untyped-def]  # noqa: F811
    lab, made, argv = console
    base = ipaddress.ip_network(lab.net4).supernet(new_prefix=16)[0]
    other = str(base + 0xFA02)
    s = Session(argv, 80, 24)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t, START, "attached at 80x24")
    with paced.paced(lab, [(lab.ns_ip4, 2_000, 40.0), (other, 300, 40.0)]):
        s.keys("5")
        screen = s.wait_screen(lambda t: lab.ns_ip4 in first_row(t), 30, f"{lab.ns_ip4} on the Top pane's first row")
        assert other in screen and "sources over 10s" in screen, screen
        assert screen.index(lab.ns_ip4) < screen.index(other)
        s.keys("v")
        s.wait_screen(lambda t: lab.host_ip4 in first_row(t), 10, "the destinations, the host first")
        s.keys("v", "v")  # ports, then the sources again
        s.wait_screen(lambda t: lab.ns_ip4 in first_row(t), 10, "the sources again")
        s.keys("b")
        s.wait_screen(lambda t: f"Block {lab.ns_ip4} for" in t, 5, "the block-duration dialog")
        s.keys("1")
        s.wait_screen(lambda t: "block-" in t and "esc cancels" not in t, 10, "the block applied")

        def drops_shown(t: str) -> bool:
            row = first_row(t).split()
            return len(row) >= 6 and row[1] == lab.ns_ip4 and row[5] not in ("0", "│")

        s.wait_screen(drops_shown, 30, "drop/s on the blocked source's row")
    s.keys("q")
    s.wait_screen(lambda t: "Quit with 1 drop rule" in t, 5, "the quit question")
    t0 = time.monotonic()
    s.keys("r")
    assert s.wait_exit(5), s.capture()
    wait_no_xdp(lab.ifindex, within=1.0, since=t0)
