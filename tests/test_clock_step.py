"""A step of the wall clock (NTP, a resume, a VM restored or migrated) while the engine runs: events and rules'
last hits are stamped by the wall clock as it is after the step (root, a veth lab, real packets).

Until session 25 the offset between CLOCK_MONOTONIC (the kernel's stamps) and the wall clock was read once at
the start: after a step every event and last hit was off by it, beside a capture's right times (a drill saw
events 7 s early after the VM's clock stepped).  The step is made by the process's time.time, not by setting
this machine's clock."""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Callable

import pytest
from support import netlab
from support.traffic import Probe

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.model import Action, FilterRule, PacketEvent

pytestmark = pytest.mark.root

STEP = 7.0


def _hit(engine: Engine, probe: Probe) -> tuple[float, float, list[PacketEvent], float | None]:
    """One matched datagram; (before, after, its events, the rule's last hit) once both have been read."""
    engine.tick(timeout_ms=0, publish=True)  # what was waiting is drained
    t0 = time.time()
    assert probe.burst(1) == 1  # a monitor rule: it passes, and is an event
    t1 = time.time()
    events: list[PacketEvent] = []
    last_hit = None
    end = time.monotonic() + 5
    while (not events or last_hit is None or last_hit < t0 - 60) and time.monotonic() < end:
        tick = engine.tick(timeout_ms=50, publish=True)
        events += tick.events
        if tick.rules:
            last_hit = next(s.last_hit for s in tick.rules if s.rule.id == "watch-probe")
    return t0, t1, events, last_hit


def test_a_wall_clock_step_restamps_events_and_last_hits(
    lab: netlab.Lab, probe: Probe, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Before the step (the control) the event and the last hit are within half a second of the wall clock;
    after a 7 s step they are within half a second of the stepped clock, not 7 s away from it.  The step is said,
    with the timed rules it ends (expiries are wall-clock times): one here, expiring 5 s after the start."""
    rule = FilterRule("watch-probe", Action.MONITOR, src_ip=ipaddress.ip_network(f"{lab.ns_ip4}/32"))
    timed = FilterRule(
        "timed", Action.DROP, src_ip=ipaddress.ip_network("198.18.255.77/32"), expires_at=time.time() + 5
    )
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(rule, timed)))
    engine.start()
    try:
        t0, t1, events, last_hit = _hit(engine, probe)
        assert events and all(t0 - 0.5 <= e.ts <= t1 + 0.5 for e in events), (t0, [e.ts for e in events])
        assert last_hit is not None and t0 - 0.5 <= last_hit <= t1 + 0.5

        # A small move (NTP's slewing) is not followed: following restamps every rule, and sends the table again.
        rules = engine.control.table
        base = rules.clock_offset
        assert rules.follow_clock(base + 0.1) == 0.0 and rules.clock_offset == base

        real: Callable[[], float] = time.time
        monkeypatch.setattr(time, "time", lambda: real() + STEP)  # the wall clock, as the process reads it
        time.sleep(1.1)  # past the event rate limit's refill of the first
        t0, t1, events, last_hit = _hit(engine, probe)
        assert events and all(t0 - 0.5 <= e.ts <= t1 + 0.5 for e in events), (t0, [e.ts for e in events])
        assert last_hit is not None and t0 - 0.5 <= last_hit <= t1 + 0.5, (t0, last_hit)
        said = [r.getMessage() for r in caplog.records if "wall clock stepped" in r.getMessage()]
        assert len(said) == 1 and said[0].startswith("the wall clock stepped +7.0 s"), said
        assert said[0].endswith("; 1 timed rule(s) expire with it"), said
    finally:
        engine.close()
