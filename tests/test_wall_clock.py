"""The wall clock's offset from CLOCK_MONOTONIC, followed when the clock steps (rules/wall_clock.py; no root).

tests/test_clock_step.py has the engine's events and last hits on a real lab; here the rule of following: a step
is followed once two reads in a row agree on it (one read apart from the others is a stall, a collection or a
starved thread, not the clock), small moves are not (each change restamps every rule), backwards as forwards."""

from __future__ import annotations

import time

from ironpost_tui.rules.wall_clock import STEP_SECS, WallOffset, monotonic_to_wall_offset

BASE = 1_800_000_000.0


def test_a_small_move_is_not_followed() -> None:
    wall = WallOffset(BASE)
    assert [wall.follow(BASE + d) for d in (0.1, -0.2, STEP_SECS)] == [0.0, 0.0, 0.0]
    assert wall.offset == BASE


def test_a_step_read_twice_is_followed_forwards_and_backwards() -> None:
    wall = WallOffset(BASE)
    assert wall.follow(BASE + 7.0) == 0.0 and wall.offset == BASE  # once: maybe a stall
    assert abs(wall.follow(BASE + 7.001) - 7.001) < 1e-6 and wall.offset == BASE + 7.001
    assert wall.follow(BASE - 3.0) == 0.0
    assert abs(wall.follow(BASE - 3.0) - (-10.001)) < 1e-6 and wall.offset == BASE - 3.0


def test_one_read_apart_from_the_others_is_a_stall_not_a_step() -> None:
    """The control of the rule above: a read 0.3 s off between two good ones changes nothing, nor do two reads that
    disagree with each other."""
    wall = WallOffset(BASE)
    assert [wall.follow(x) for x in (BASE - 0.3, BASE, BASE + 5.0, BASE + 9.0)] == [0.0, 0.0, 0.0, 0.0]
    assert wall.offset == BASE


def test_a_read_is_the_clocks_offset() -> None:
    read = monotonic_to_wall_offset()
    assert abs(read - (time.time() - time.clock_gettime(time.CLOCK_MONOTONIC))) < 0.05
