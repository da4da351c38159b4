"""The live engine as a Source: ticks, follows the configuration file, records."""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import replace
from pathlib import Path

from ironpost_tui.config.store import RuleStore
from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.engine import Engine
from ironpost_tui.engine.feed import (
    RELOAD_NOTICE,
    OnExit,
    SourceInfo,
    Update,
    UpdateSink,
    drop_rules,
    log_panic,
    still_as_shown,
)
from ironpost_tui.engine.supervisor import FILE_CHANGE, Pending, Reloaded, Supervisor
from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import Actor

log = logging.getLogger(__name__)


class LiveSource:
    """Wraps an Engine (started here) for the console.  Rule edits and polls may
    come from different threads: one lock keeps them in turn (a poll holds it
    for at most its timeout)."""

    def __init__(
        self, engine: Engine, config: ConfigSource | None, record: UpdateSink | None = None, *, keepable: bool = True
    ) -> None:
        """``keepable``: the program can be kept enforcing after the console (not in the demo,
        whose interface goes with it)."""
        self.engine = engine
        self.config = config
        self.recorder = record
        self._supervisor = Supervisor(engine, config, command_line=True)
        self._lock = threading.RLock()
        self._reload_requested = False
        self._t0 = time.monotonic()
        self._rules_edited = True  # the first poll sends the table
        self.info = SourceInfo(
            iface=engine.options.iface,
            mode="",
            attached=False,
            started_at=time.time(),
            config_path="",
            blocklist_capacity=0,
            title="starting",
            on_exit=self._on_exit(keepable),
        )
        self._keepable = keepable
        self._early: threading.Thread | None = None
        self._early_result: SourceInfo | BaseException | None = None
        self._started = False  # a panic asked before the start waits for it (panic_soon)
        self._closed = False
        self._panic_asked: str | None = None  # a panic asked (how), not yet run: taken under _lock
        self._panic_gate = threading.Lock()  # held by the one panic thread

    def begin(self) -> None:
        """Compile and attach from now on, in a thread of its own (the console's interface loads
        meanwhile); start() then waits for it and says how it went."""
        if self._early is None:
            self._early = threading.Thread(target=self._start_early, name="engine-start", daemon=True)
            self._early.start()

    def _start_early(self) -> None:
        try:
            self._early_result = self._start()
        except BaseException as exc:  # raised again by start(), in the thread that asks
            self._early_result = exc

    def start(self) -> SourceInfo:
        """Compile and attach (seconds: call from a worker), or wait for begin()'s start to end;
        once attached, only say so (never a second start)."""
        if self._early is None:
            with self._lock:
                if self.info.attached:
                    return self.info
                return self._start()
        self._early.join()
        result = self._early_result
        if isinstance(result, BaseException):
            raise result
        assert result is not None
        return result

    def _rules_path(self) -> str:
        """Where the operator's rules are saved: the configuration (or the state file it stands for), or the store
        the engine was given (the demo's state file)."""
        if self.config is not None:
            return str(self.config.path)
        store = self.engine.options.store
        return str(store.path) if isinstance(store, RuleStore) else ""

    def _start(self) -> SourceInfo:
        with self._lock:
            report = self._supervisor.start()
            self._started = True
            try:
                control = self.engine.control
                self.info = SourceInfo(
                    iface=report.iface,
                    mode=report.mode,
                    attached=True,
                    started_at=time.time() - report.seconds,
                    config_path=str(self.config.path) if self.config else "",
                    rules_path=self._rules_path(),
                    blocklist_capacity=control.table.capacity()[MapName.BLOCKLIST],
                    protected=protected_list(self.engine),
                    title="live",
                    on_exit=self._on_exit(self._keepable),
                )
                if self.recorder is not None:
                    self.recorder.start(self.info)
                return self.info
            finally:
                if self._panic_asked is not None:  # asked during the start: it clears what the start put in
                    self._spawn_panic()

    def now(self) -> float:
        return time.time()

    def poll(self, timeout: float) -> Update:
        with self._lock:
            asked = self._reload_requested
            pending = Pending(reload="console" if asked else None, publish=self._rules_edited)
            self._reload_requested = self._rules_edited = False
            step = self._supervisor.step(pending, timeout_ms=int(timeout * 1000))
            tick = step.tick
            for change in step.remote:  # the command line's edits: recorded, and said in the status line
                if self.recorder is not None:
                    self.recorder.rule_change(change.what, change.rule)
            update = Update(
                events=tick.events,
                sample=tick.sample,
                alerts=tick.alerts,
                rules=tick.rules,  # the snapshot's table: the hit counts /metrics shows
                interface_state=tick.interface_state,
                notices=reload_notices(step.reload)
                + (self._nothing_to_reload() if asked and self.config is None else ())
                + tuple(c.describe() for c in step.remote),
                at=time.monotonic() - self._t0,
                top=tick.top,
                crowdsec=self.engine.snapshot().crowdsec,
            )
            if self.recorder is not None:
                self.recorder.write(update)
            return update

    # --- rule edits (from the UI thread) ----------------------------------------
    def _recorded(self, what: str, rule: FilterRule) -> None:
        if self.recorder is not None:
            self.recorder.rule_change(what, rule)
        self._rules_edited = True  # the next poll sends the table

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        with self._lock, self.engine.lock:
            self.engine.control.add(rule, Actor.current("console"), force=force)
            self._recorded("add", rule)

    def update_rule(self, rule: FilterRule, force: bool = False, expected: FilterRule | None = None) -> None:
        """``expected``: the rule as the console showed it, which the change was made from; refused if the rule in
        force is no longer that (compared here, under the engine's lock: feed.still_as_shown)."""
        with self._lock, self.engine.lock:
            if expected is not None:
                current = self.engine.control.table.get(rule.id)
                # Not for what is not the operator's (CrowdSec's row changes each pull): its own refusal says why.
                theirs = current is not None and (current.crowdsec or current.external)
                if not theirs and (why := still_as_shown(rule.id, current, expected)) is not None:
                    raise IronpostError(why)
            self.engine.control.update(rule, Actor.current("console"), force=force)
            self._recorded("update", rule)

    def delete_rule(self, rule_id: str) -> FilterRule:
        with self._lock, self.engine.lock:
            rule = self.engine.control.delete(rule_id, Actor.current("console"))
            self._recorded("delete", rule)
            return rule

    def panic(self, via: str = "console") -> list[FilterRule]:
        # The engine's lock too, as an edit takes it: the command-line socket's edits and the external survey hold
        # only that one (until session 24 a panic ran beside them).
        with self._lock, self.engine.lock:
            cleared = self._supervisor.panic(via)
            for rule in cleared:
                self._recorded("panic-delete", rule)
            return list(cleared)

    def panic_soon(self, via: str = "signal") -> None:
        """A panic in a thread of its own, its outcome logged: what a signal handler may start (it runs between two
        bytecodes of the main thread, which may hold the locks the panic waits for).

        Asked before the engine started, it runs once the start is done and clears what the start put in (until
        session 28 its thread could take the lock first, fail on an engine not started, and the start then put
        the file's drop rules in).  Asked again while one runs, that one runs it again: one thread at most,
        however many signals come (there was one per signal)."""
        self._panic_asked = via
        if self._started:
            self._spawn_panic()

    def _spawn_panic(self) -> None:
        if not self._panic_gate.acquire(blocking=False):  # never blocks: a signal handler may call this
            return  # the thread running sees this ask (its loop, or its last look)
        try:
            threading.Thread(target=self._panic_worker, name="panic", daemon=True).start()
        except RuntimeError as exc:  # no thread to be had: said, never raised into a signal handler's caller
            self._panic_gate.release()
            log.error("SIGUSR2 (panic): the drop rules could not be cleared (%s): ask again", exc)

    def _panic_worker(self) -> None:
        try:
            while self._run_asked_panic():
                pass
        finally:
            self._panic_gate.release()
        if self._panic_asked is not None and not self._closed:  # asked between the last look and the release
            self._spawn_panic()

    def _run_asked_panic(self) -> bool:
        """The panic asked, if any, taken and run under the lock (close() runs one it finds there first);
        whether one ran."""
        with self._lock:
            via = self._panic_asked
            if via is None or self._closed:
                return False
            self._panic_asked = None
            self._panic_logged(via)
            return True

    def _panic_logged(self, via: str) -> None:
        try:
            cleared = self.panic(via)
        except Exception:
            log.exception("SIGUSR2 (panic): clearing the drop rules failed")
            return
        log_panic(log, cleared, " (SIGUSR2, ironpost-tui cleanup)")

    def reload(self) -> None:
        self._reload_requested = True

    def _nothing_to_reload(self) -> tuple[str, ...]:
        """What `r` (or SIGUSR1) hears when no configuration is watched: the demo's rules, kept in a state file the
        console writes (until session 25 the request was said and then nothing, where the README says `r` always
        hears back)."""
        where = f" its rules are kept in {self.info.rules_path}, changed from here" if self.info.rules_path else ""
        return (f"{RELOAD_NOTICE}: nothing to reload: this run has no configuration file;{where}",)

    # --- leaving -------------------------------------------------------------------
    def _on_exit(self, keepable: bool) -> OnExit:
        if self.engine.options.persist:
            return OnExit.KEEP
        return OnExit.REMOVE if keepable else OnExit.REMOVE_ONLY

    def keep_enforcing(self) -> str:
        """Pin the program so it outlives the console (as --persist does); what to tell the operator."""
        if not self._keepable:
            raise IronpostError("this program cannot be kept: its interface goes when the console ends")
        with self._lock:
            pins = self.engine.keep_enforcing()
            drops = sum(1 for r in self.engine.control.rules() if r.action is Action.DROP)
        iface = self.engine.options.iface
        self.info = replace(self.info, on_exit=OnExit.KEEP)
        return kept_line(iface, drops, pins)

    def close(self) -> None:
        if self._early is not None:
            self._early.join()  # a start under way ends before the engine is closed, never after
        with self._lock:
            if self._started and not self._closed:
                # A panic asked and not yet run: before the engine closes (a program kept enforcing would keep
                # the drop rules the operator asked to clear).
                self._run_asked_panic()
            self._closed = True
            self._supervisor.close()
            if self.recorder is not None:
                self.recorder.close()
                self.recorder = None


def protected_list(engine: Engine) -> tuple[str, ...]:
    """Each protected address with its reason: the anti-lockout's (never dropped), then, with
    auto-block on, the infrastructure it never blocks."""
    protected = engine.control.protected
    out = [p.describe() for p in protected]
    if engine.auto_blocking:
        have = {p.network for p in protected}
        infra = [a for a in engine.infrastructure() if a.network not in have]
        out += [f"{a.network} (never auto-blocked: {a.reason})" for a in infra]
    return tuple(out)


def reload_notices(reloaded: Reloaded | None) -> tuple[str, ...]:
    """A reload's outcome as the console's notices: none for a file change that changed nothing (an editor's
    save of the same text); an operator's `r` always hears back (until session 24 it heard nothing then)."""
    if reloaded is None:
        return ()
    result = reloaded.result
    if result.error is not None:
        return (f"{RELOAD_NOTICE} refused, the previous rules stay in force: {result.error}",)
    if result.changed:
        return (f"{RELOAD_NOTICE}ed {reloaded.path}: {result.rules} rules",)
    if reloaded.why == FILE_CHANGE:
        return ()
    return (f"{RELOAD_NOTICE}: {reloaded.path} is as in force: {result.rules} rules, nothing changed",)


def kept_line(iface: str, drops: int, pins: Path) -> str:
    """What the console prints on leaving a program enforcing: what stays, and how to remove it (two lines)."""
    return (
        f"left {drop_rules(drops)} enforcing on {iface}: the program is pinned under {pins} (rules no longer "
        "expire and nothing is detected until ironpost runs again)\n"
        f"remove them with: ironpost-tui cleanup {iface}   (or take over with: ironpost-tui {iface} --persist)"
    )
