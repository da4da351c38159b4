"""The agent loop written once (engine/supervisor.py), and what each front end makes of a step.

The step's own logic (which trigger reloads, why, panic before reload before tick, the
panic's write not taken for an edit, interface transitions, when the table is published) is
driven here with a stand-in engine: no kernel is under test in those.  The step on the real
engine, and the console's hit counts against /metrics, run on a veth lab (root).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
from support import netlab
from test_e2e_veth import udp4

from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.alert_lines import AlertLines
from ironpost_tui.engine.engine import Engine, EngineOptions, StartReport, Tick
from ironpost_tui.engine.headless import Controls, log_step
from ironpost_tui.engine.live import LiveSource, reload_notices
from ironpost_tui.engine.reload import ReloadResult, protections
from ironpost_tui.engine.snapshot import EngineSnapshot, SnapshotBuilder
from ironpost_tui.engine.supervisor import FILE_CHANGE, Pending, Reloaded, Step, Supervisor
from ironpost_tui.errors import InterfaceGone, IronpostError, RuleRefused
from ironpost_tui.kernel import host
from ironpost_tui.kernel.xdp_link import occupants
from ironpost_tui.metrics.collector import engine_registry
from ironpost_tui.model import Action, FilterRule, ProtoCounters, RuleStatus, StatsSample
from ironpost_tui.rules.audit import Actor
from ironpost_tui.rules.protect import Protected

# No protections from the environment: the host's addresses change as other labs come and go,
# and a reload would then change something for a reason this test does not control.
QUIET = "[safety]\nprotect_ssh_client = false\nprotect_host_addresses = false\n"


def config_text(*rules: tuple[str, str]) -> str:
    out = QUIET
    for rule_id, src in rules:
        out += f'\n[[ebpf.rules]]\nid = "{rule_id}"\nsrc_ip = "{src}"\naction = "drop"\n'
    return out


# --------------------------------------------------------------------------- #
# the step's logic, with a stand-in engine


class FakeControl:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine

    def panic(self, actor: Actor) -> list[FilterRule]:
        self.engine.calls.append(f"panic:{actor.via}")
        # The real controller saves the panic to the file: the supervisor must not take it for an edit.
        assert self.engine.config_path is not None
        self.engine.config_path.write_text(self.engine.config_path.read_text() + "# panic\n")
        return [FilterRule(id="d1", action=Action.DROP, src_ip=ipaddress.ip_network("198.18.0.9"))]


class FakeEngine:
    """Records what the supervisor asks, in order; ticks report the interface states given."""

    def __init__(self, states: list[str], config_path: Path | None = None) -> None:
        self.lock = threading.RLock()  # the Engine's: a step's panic and reload hold it
        self.calls: list[str] = []
        self.states = states
        self.config_path = config_path
        self.control = FakeControl(self)
        self.rule_sets: list[list[str]] = []

    def start(self) -> StartReport:
        self.calls.append("start")
        return StartReport("lab0", "native", 7, 0.1, False, None)

    def reload(self, rules: list[FilterRule], protected: list[Protected], actor: Actor) -> bool:
        self.calls.append(f"reload:{actor.via}")
        ids = [r.id for r in rules]
        changed = not self.rule_sets or self.rule_sets[-1] != ids
        self.rule_sets.append(ids)
        return changed

    def tick(self, timeout_ms: int = 100, events: bool = True, publish: bool = False) -> Tick:
        self.calls.append(f"tick:publish={publish}")
        state = self.states.pop(0) if self.states else "up"
        return Tick((), None, state, (), () if publish else None)


def fake_supervisor(tmp_path: Path, states: list[str] | None = None) -> tuple[Supervisor, FakeEngine, Path]:
    path = tmp_path / "ironpost.toml"
    path.write_text(config_text(("a", "198.18.0.1")))
    fake = FakeEngine(states or [], path)
    sup = Supervisor(fake, ConfigSource(path, "lab0", state_dir=tmp_path / "state"))  # type: ignore[arg-type]
    sup.start()
    return sup, fake, path


def test_a_started_supervisor_takes_the_file_as_loaded(tmp_path: Path) -> None:
    sup, fake, path = fake_supervisor(tmp_path)
    step = sup.step()
    assert step.reload is None and step.cleared is None and step.interface is None
    assert fake.calls == ["start", "tick:publish=False"]
    # negative control: an edit of the file is seen by the next step
    path.write_text(config_text(("a", "198.18.0.1"), ("b", "198.18.0.2")))
    step = sup.step()
    assert step.reload == Reloaded(path, FILE_CHANGE, ReloadResult(changed=True, rules=2))
    assert fake.calls[-2:] == ["reload:file change", "tick:publish=True"]  # the new table goes out at once
    assert step.tick.rules == ()
    assert sup.step().reload is None  # seen once


def test_a_requested_reload_says_who_asked_even_when_nothing_changed(tmp_path: Path) -> None:
    sup, fake, path = fake_supervisor(tmp_path)
    first = sup.step(Pending(reload="signal"))
    assert first.reload == Reloaded(path, "signal", ReloadResult(changed=True, rules=1))
    again = sup.step(Pending(reload="console"))
    assert again.reload == Reloaded(path, "console", ReloadResult(changed=False, rules=1))
    assert fake.calls[1:] == ["reload:signal", "tick:publish=True", "reload:console", "tick:publish=True"]


def test_a_bad_file_is_refused_with_its_errors_and_reaches_no_engine(tmp_path: Path) -> None:
    sup, fake, path = fake_supervisor(tmp_path)
    path.write_text(QUIET + '\n[[ebpf.rules]]\nid = "x"\nsrc_ip = "not-an-address"\naction = "drop"\n')
    step = sup.step()
    assert step.reload is not None and step.reload.why == FILE_CHANGE
    result = step.reload.result
    assert result.error is not None and "not-an-address" in result.error
    assert not result.changed and result.rules == 0
    assert not any(c.startswith("reload:") for c in fake.calls)


def test_panic_comes_first_and_its_own_write_is_no_reload(tmp_path: Path) -> None:
    sup, fake, path = fake_supervisor(tmp_path)
    step = sup.step(Pending(reload="signal", panic="signal"))
    assert [r.id for r in step.cleared or ()] == ["d1"]
    assert fake.calls[1:] == ["panic:signal", "reload:signal", "tick:publish=True"]
    assert "# panic" in path.read_text()
    step = sup.step()
    assert step.reload is None and step.cleared is None  # the panic's write was marked
    # negative control: without the supervisor's mark, the same write is a change
    sup.engine.control.panic(Actor.current("signal"))
    assert sup.step().reload is not None


def test_without_a_file_a_reload_request_does_nothing(tmp_path: Path) -> None:
    fake = FakeEngine([])
    sup = Supervisor(fake, None)  # type: ignore[arg-type]
    sup.start()
    step = sup.step(Pending(reload="signal"))
    assert step.reload is None
    assert fake.calls == ["start", "tick:publish=False"]
    assert sup.step(Pending(publish=True)).tick.rules == ()  # an edit publishes the table


def test_the_interface_state_is_reported_when_it_changes(tmp_path: Path) -> None:
    sup, _, _ = fake_supervisor(tmp_path, ["up", "down", "down", "up", "gone"])
    assert [sup.step().interface for _ in range(5)] == [None, "down", None, "up", "gone"]


# --------------------------------------------------------------------------- #
# what the front ends make of a step: the same lines and notices as before


def _step(**kw: object) -> Step:
    return Step(Tick((), None, "up"), **kw)  # type: ignore[arg-type]


def test_a_panic_of_a_feeds_rules_logs_one_short_line_and_every_id_in_its_field(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """10,000 cleared rules made a line of some 90 KB (every id), in the log and in the console's notices; now the
    ids that fit 160 cells and "+N", with every id in the record's ``cleared`` field (the JSON log's)."""
    caplog.set_level(logging.DEBUG, logger="ironpost")
    cleared = tuple(FilterRule(id=f"feed-{i}", action=Action.DROP) for i in range(10_000))
    log_step(_step(cleared=cleared), "lab0", AlertLines("lab0"))
    (record,) = caplog.records
    line = record.getMessage()
    assert line.startswith("panic: cleared 10,000 drop rule(s): feed-0, feed-1, ") and len(line) < 240
    shown, _, rest = line.partition("(s): ")[2].rpartition(" +")
    assert len(shown.split(", ")) + int(rest) == 10_000
    assert record.cleared == [r.id for r in cleared]  # type: ignore[attr-defined]


def test_headless_logs_a_step(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    caplog.set_level(logging.DEBUG, logger="ironpost")
    cleared = (FilterRule(id="d1", action=Action.DROP), FilterRule(id="d2", action=Action.DROP))
    log_step(_step(cleared=cleared, reload=Reloaded(path, "signal", ReloadResult(True, 3))), "lab0", AlertLines("lab0"))
    log_step(
        _step(reload=Reloaded(path, FILE_CHANGE, ReloadResult(error="line 1: bad\nline 2: worse"))),
        "lab0",
        AlertLines("lab0"),
    )
    log_step(
        _step(reload=Reloaded(path, FILE_CHANGE, ReloadResult(changed=False, rules=3))), "lab0", AlertLines("lab0")
    )  # nothing
    log_step(_step(interface="down"), "lab0", AlertLines("lab0"))
    assert [r.getMessage() for r in caplog.records] == [
        "panic: cleared 2 drop rule(s): d1, d2",
        f"reloaded {path} (signal): 3 rules in force",
        f"reload of {path} refused, the previous rules stay in force:",
        "  line 1: bad",
        "  line 2: worse",
        "interface lab0 is down",
    ]
    with pytest.raises(InterfaceGone, match="interface lab0 disappeared: the program went with it; exiting"):
        log_step(_step(interface="gone"), "lab0", AlertLines("lab0"))


def test_console_notices_of_a_reload(tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    assert reload_notices(None) == ()
    assert reload_notices(Reloaded(path, "console", ReloadResult(True, 2))) == (f"reloaded {path}: 2 rules",)
    assert reload_notices(Reloaded(path, FILE_CHANGE, ReloadResult(False, 2))) == ()
    # Asked for (r) and nothing changed: said all the same (until session 24 the operator heard nothing).
    assert reload_notices(Reloaded(path, "console", ReloadResult(False, 2))) == (
        f"reload: {path} is as in force: 2 rules, nothing changed",
    )
    assert reload_notices(Reloaded(path, "console", ReloadResult(error="bad"))) == (
        "reload refused, the previous rules stay in force: bad",
    )


def test_a_flag_taken_loses_no_set_and_the_early_asks_are_handed_over() -> None:
    """Flag.take counts (a check and then a clear lost a set between them); EarlyAsks notes SIGUSR1 and SIGUSR2
    from a run's first moments and hands them to the agent's handlers (cli._install_signals)."""
    import signal

    from ironpost_tui import cli
    from ironpost_tui.engine.signal_flags import EarlyAsks, Flag

    flag = Flag()
    assert not flag.take()
    flag.set()
    flag.set()
    assert flag.is_set() and flag.take() and not flag.take() and not flag.is_set()
    # A set between take's first statement (its read) and the rest, as a signal handler runs between two bytecodes
    # of the main thread: seen by the next take (a read, then a clear, lost it).
    import sys

    lines: list[int] = []

    def tracer(frame, event, _arg):  # type: ignore[no-untyped-def]
        if event == "call" and frame.f_code is Flag.take.__code__:

            def local(frame, event, _arg):  # type: ignore[no-untyped-def]
                if event == "line":
                    lines.append(frame.f_lineno)
                    if len(lines) == 2:
                        flag.set()
                return local

            return local
        return None

    flag.set()
    sys.settrace(tracer)
    try:
        first = flag.take()
    finally:
        sys.settrace(None)
    assert len(lines) >= 2 and first  # the set came after the read: this take saw the first only
    assert flag.take() and not flag.take()  # ... and the next one sees it
    old = {s: signal.getsignal(s) for s in (signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGTERM,
                                            signal.SIGHUP)}  # fmt: skip
    try:
        early = EarlyAsks().hold()
        signal.raise_signal(signal.SIGUSR2)  # before the agent's handlers: noted, the process goes on
        assert early.panic.is_set() and not early.reload.is_set()
        controls = Controls()
        cli._install_signals(controls, early)
        assert controls.take() == Pending(panic="signal")  # handed over, once
        assert early.take() == (False, False) and controls.take() == Pending()
        signal.raise_signal(signal.SIGUSR1)  # the agent's own handler from now on
        assert controls.take() == Pending(reload="signal") and early.take() == (False, False)
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def test_controls_take_what_the_signals_asked_once() -> None:
    controls = Controls()
    assert controls.take() == Pending()
    controls.reload.set()
    controls.panic.set()
    assert controls.take() == Pending(reload="signal", panic="signal")
    assert controls.take() == Pending()
    controls.stop.set()
    assert controls.take() == Pending() and controls.stop.is_set()  # stop is the loop's, not the step's


# --------------------------------------------------------------------------- #
# the snapshot: read-only, one table for the console and /metrics


def test_snapshot_mappings_are_read_only_copies() -> None:
    hits = {"a": 1}
    snap = EngineSnapshot(at=1.0, iface="lab0", mode="native", attached=True, rule_hits=hits)
    for name in ("totals", "events_lost", "alerts_total", "rule_hits"):
        mapping = getattr(snap, name)
        assert isinstance(mapping, MappingProxyType), name
        with pytest.raises(TypeError):
            mapping["x"] = 1
    hits["a"] = 99  # the caller's dict is not the snapshot's
    assert snap.rule_hits == {"a": 1}
    # negative control: the dict it was given is writable
    hits["b"] = 2
    assert hits == {"a": 99, "b": 2}


def test_the_snapshot_table_carries_the_monotonic_hits_of_rule_hits() -> None:
    builder = SnapshotBuilder("lab0")
    sample = StatsSample(at=1.0, totals={"total": ProtoCounters(1, 2, 3)})

    def build(*hits: tuple[str, int]) -> EngineSnapshot:
        statuses = [RuleStatus(FilterRule(id=rid), "MATCH", n) for rid, n in hits]
        return builder.build(sample, statuses, mode="native", attached=True, blocklist_entries=0,
                             blocklist_capacity=10, alerts_active=0)  # fmt: skip

    build(("a", 5), ("b", 1))
    snap = build(("a", 2), ("b", 3))  # "a" moved slot: its kernel counter started again
    assert {s.rule.id: s.hits for s in snap.rules} == dict(snap.rule_hits) == {"a": 7, "b": 3}


# --------------------------------------------------------------------------- #
# on the real engine (root)


@contextlib.contextmanager
def started(sup: Supervisor, lab: netlab.Lab) -> Iterator[StartReport]:
    try:
        yield sup.start()
    finally:
        sup.engine.close()
        assert occupants(lab.ifindex) == []
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()


def _ip(*args: str) -> None:
    import subprocess

    subprocess.run(["ip", *args], check=True, capture_output=True)


@pytest.mark.root
def test_a_step_on_the_real_engine(lab: netlab.Lab, tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(config_text(("drop-a", "198.18.200.1")))
    config = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state")
    settings = config.load()
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=settings.rules,
                                  protected=tuple(protections(settings)), store=config.store))  # fmt: skip
    sup = Supervisor(engine, config)
    with started(sup, lab):
        assert sup.step(timeout_ms=10).reload is None

        path.write_text(config_text(("drop-a", "198.18.200.1"), ("drop-b", "198.18.200.2")))
        step = sup.step(timeout_ms=10)
        assert step.reload == Reloaded(path, FILE_CHANGE, ReloadResult(changed=True, rules=2))
        assert [s.rule.id for s in step.tick.rules or ()] == ["drop-a", "drop-b"]  # published in the same tick
        assert step.tick.rules is engine.snapshot().rules

        path.write_text(QUIET + '\n[[ebpf.rules]]\nid = "x"\nsrc_ip = "198.18.200.3"\naction = "bounce"\n')
        step = sup.step(Pending(reload="signal"), timeout_ms=10)
        assert step.reload is not None and step.reload.result.error is not None
        assert [r.id for r in engine.control.rules()] == ["drop-a", "drop-b"]  # the set in force stays

        path.write_text(config_text(("drop-a", "198.18.200.1"), ("drop-b", "198.18.200.2")))
        sup.step(timeout_ms=10)
        step = sup.step(Pending(panic="signal"), timeout_ms=10)
        assert sorted(r.id for r in step.cleared or ()) == ["drop-a", "drop-b"]
        assert step.tick.rules == () and engine.control.rules() == []
        assert "drop-a" not in path.read_text()  # saved to the file...
        assert sup.step(timeout_ms=10).reload is None  # ...which is not taken for an edit

        _ip("link", "set", "dev", lab.host_if, "down")
        try:
            assert sup.step(timeout_ms=10).interface == "down"
        finally:
            _ip("link", "set", "dev", lab.host_if, "up")
        deadline = time.monotonic() + 5
        states = []
        while "up" not in states and time.monotonic() < deadline:
            states.append(sup.step(timeout_ms=10).interface)
        assert "up" in states


@pytest.mark.root
def test_console_hit_counts_equal_the_metrics_of_the_same_tick(lab: netlab.Lab, tmp_path: Path) -> None:
    """A monitor rule counts datagrams; it is then changed so that it moves to a new slot (its kernel
    counter starts again at 0): the console goes on showing what /metrics shows, not the raw counter."""
    watch = FilterRule(id="watch", action=Action.MONITOR, src_ip=ipaddress.ip_network(lab.ns_ip4))  # BLOCKLIST
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(watch,)))
    live = LiveSource(engine, None)
    registry = engine_registry(engine.snapshot)

    def poll_until(hits: int) -> tuple[RuleStatus, ...]:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            update = live.poll(0.05)
            if update.rules is not None:
                assert update.rules is engine.snapshot().rules  # the table of this very tick
                if next(s.hits for s in update.rules if s.rule.id == "watch") == hits:
                    return update.rules
        raise AssertionError(f"the console never showed {hits} hits: {engine.snapshot().rules}")

    def metrics_hits() -> float | None:
        return registry.get_sample_value("ironpost_rule_hits_total", {"rule_id": "watch"})

    try:
        live.start()
        netlab.send_frames(lab, [udp4(lab, 9, b"one")], count=7)
        rules = poll_until(7)
        assert metrics_hits() == 7 == next(s.hits for s in rules)

        wider = ipaddress.ip_network(f"{lab.ns_ip4}/30", strict=False)
        shown = next(s.rule for s in rules if s.rule.id == "watch")  # the rule as the console shows it
        # An update made from a copy that is no longer the rule in force is refused, and changes nothing (the
        # console's x and b carry the copy they were made from; until session 25 they wrote over a reload).
        stale = replace(shown, description="as before a reload")
        with pytest.raises(IronpostError, match="'watch' changed since the console showed it"):
            live.update_rule(FilterRule(id="watch", action=Action.DROP, src_ip=wider), expected=stale)
        assert next(r for r in engine.control.rules() if r.id == "watch") == shown
        live.update_rule(FilterRule(id="watch", action=Action.MONITOR, src_ip=wider), expected=shown)  # SRC4: new slot
        netlab.send_frames(lab, [udp4(lab, 9, b"two")], count=3)
        rules = poll_until(10)
        assert metrics_hits() == 10
        # negative control: the kernel's own counter for the rule's new slot started again
        assert next(s.hits for s in engine.control.table.status() if s.rule.id == "watch") == 3
    finally:
        live.close()
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()
    assert occupants(lab.ifindex) == []


@pytest.mark.root
def test_a_panic_waits_for_the_engines_lock_as_an_edit_does(lab: netlab.Lab, tmp_path: Path) -> None:
    """The command-line socket's edits and the external survey hold the engine's lock alone: a panic (the console's
    !, SIGUSR2) waits for it, as an edit does (until session 24 it ran beside them, over the table and the file:
    an attacker's review).  The control: once the lock is free the panic clears the drop rule."""
    block = FilterRule(id="block", action=Action.DROP, src_ip=ipaddress.ip_network(lab.ns_ip4))
    live = LiveSource(Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(block,))), None)
    cleared: list[list[FilterRule]] = []
    try:
        live.start()
        with live.engine.lock:  # a command-line edit in progress
            panic = threading.Thread(target=lambda: cleared.append(live.panic("signal")), daemon=True)
            panic.start()
            panic.join(0.5)
            assert panic.is_alive() and cleared == [], "the panic ran while an edit held the engine's lock"
        panic.join(10)
        assert [[r.id for r in c] for c in cleared] == [["block"]] and live.engine.control.rules() == []
    finally:
        live.close()
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()
    assert occupants(lab.ifindex) == []


@pytest.mark.root
def test_panics_asked_around_the_start_and_the_close_run_once_each_in_order(
    lab: netlab.Lab, caplog: pytest.LogCaptureFixture
) -> None:
    """panic_soon (a signal handler's): asked before the start, it runs once the start put the file's drop rule
    in (until session 28 its thread could run first, fail on the engine not started, and the rule then went in);
    asked a hundred times while one waits for the engine's lock, one thread runs them (there was one per signal);
    asked as the console closes, close() runs it before the engine goes (a program kept enforcing would keep the
    rules).  The controls: the rule is in the kernel before each panic runs."""
    block = FilterRule(id="block", action=Action.DROP, src_ip=ipaddress.ip_network(lab.ns_ip4))
    live = LiveSource(Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(block,))), None)

    def panics() -> list[str]:
        return [r.getMessage() for r in caplog.records if r.getMessage().startswith("panic: cleared")]

    def panic_threads() -> int:
        return sum(1 for t in threading.enumerate() if t.name == "panic")

    try:
        with caplog.at_level(logging.WARNING):
            live.panic_soon("signal")  # before the start: kept
            assert panic_threads() == 0 and panics() == []
            live.start()
            deadline = time.monotonic() + 10
            while not panics() and time.monotonic() < deadline:
                time.sleep(0.01)
            assert panics() == ["panic: cleared 1 drop rule(s) (SIGUSR2, ironpost-tui cleanup): block"], panics()
            assert live.engine.control.rules() == []
            live.add_rule(block)  # the control: in force again
            with live.engine.lock:  # a command-line edit in progress: the panic waits for it
                for _ in range(100):
                    live.panic_soon("signal")
                assert panic_threads() == 1
            deadline = time.monotonic() + 10
            while (panic_threads() or len(panics()) < 2) and time.monotonic() < deadline:
                time.sleep(0.01)
            assert panics()[1].startswith("panic: cleared 1 drop rule(s)") and live.engine.control.rules() == []
            assert len(panics()) <= 3  # the hundred asks: one run, and at most one more that found nothing
            live.add_rule(block)
            n = len(panics())
            with live._lock:  # the console closing: a panic asked now waits for the lock close() will hold
                live.panic_soon("signal")
            live.close()
            assert panics()[n:] == ["panic: cleared 1 drop rule(s) (SIGUSR2, ironpost-tui cleanup): block"], panics()
    finally:
        live.close()
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()
    assert occupants(lab.ifindex) == []


def test_reload_into_returns_a_refusal_as_its_error() -> None:
    """reload_into turns an engine's refusal into the result's error (not an exception)."""
    from ironpost_tui.engine.reload import reload_into

    class Refusing:
        def reload(self, *_: object) -> bool:
            raise RuleRefused("no rule slot left: remove rules first")

    class File:
        path = Path("/nonexistent")

        def load(self) -> object:
            from ironpost_tui.config.settings import Settings

            return Settings()

    result = reload_into(Refusing(), File(), "signal")  # type: ignore[arg-type]
    assert result == ReloadResult(error="no rule slot left: remove rules first")
