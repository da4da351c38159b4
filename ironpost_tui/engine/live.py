"""The live engine as a Source: ticks, follows the configuration file, records."""

from __future__ import annotations

import threading
import time

from ironpost_tui.config.watch import ConfigSource, reload_into
from ironpost_tui.engine.engine import Engine
from ironpost_tui.engine.feed import SourceInfo, Update
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import FilterRule
from ironpost_tui.records.recording import Recorder
from ironpost_tui.rules.audit import Actor

RULES_REFRESH_SECS = 1.0


class LiveSource:
    """Wraps an Engine (started here) for the console.  Rule edits and polls may
    come from different threads: one lock keeps them in turn (a poll holds it
    for at most its timeout)."""

    def __init__(self, engine: Engine, config: ConfigSource | None, record: Recorder | None = None) -> None:
        self.engine = engine
        self.config = config
        self.recorder = record
        self._lock = threading.RLock()
        self._reload_requested = False
        self._t0 = time.monotonic()
        self._last_rules = 0.0
        self.info = SourceInfo(
            iface=engine.options.iface,
            mode="",
            attached=False,
            started_at=time.time(),
            config_path="",
            blocklist_capacity=0,
            title="starting",
        )

    def start(self) -> SourceInfo:
        """Compile and attach (seconds: call from a worker)."""
        with self._lock:
            report = self.engine.start()
            if self.config is not None:
                self.config.mark()
            control = self.engine.control
            self.info = SourceInfo(
                iface=report.iface,
                mode=report.mode,
                attached=True,
                started_at=time.time() - report.seconds,
                config_path=str(self.config.path) if self.config else "",
                blocklist_capacity=control.table.capacity()[MapName.BLOCKLIST],
                protected=tuple(p.describe() for p in control.protected),
                title="live",
            )
            if self.recorder is not None:
                self.recorder.start(self.info)
            return self.info

    def now(self) -> float:
        return time.time()

    def poll(self, timeout: float) -> Update:
        with self._lock:
            notices = self._maybe_reload()
            tick = self.engine.tick(timeout_ms=int(timeout * 1000))
            now = time.monotonic()
            rules = None
            if notices or now - self._last_rules >= RULES_REFRESH_SECS:
                self._last_rules = now
                rules = tuple(self.engine.control.status())
            update = Update(
                events=tick.events,
                sample=tick.sample,
                alerts=tick.alerts,
                rules=rules,
                interface_state=tick.interface_state,
                notices=tuple(notices),
                at=now - self._t0,
            )
            if self.recorder is not None:
                self.recorder.write(update)
            return update

    def _maybe_reload(self) -> list[str]:
        config = self.config
        if config is None or not (self._reload_requested or config.changed()):
            return []
        why = "console" if self._reload_requested else "file change"
        self._reload_requested = False
        result = reload_into(self.engine, config, why)
        if result.error is not None:
            return [f"reload refused, the previous rules stay in force: {result.error}"]
        return [f"reloaded {config.path}: {result.rules} rules"] if result.changed else []

    # --- rule edits (from the UI thread) ----------------------------------------
    def _recorded(self, what: str, rule: FilterRule) -> None:
        if self.recorder is not None:
            self.recorder.rule_change(what, rule)
        self._last_rules = 0.0  # the next poll sends the table

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        with self._lock:
            self.engine.control.add(rule, Actor.current("console"), force=force)
            self._recorded("add", rule)

    def update_rule(self, rule: FilterRule, force: bool = False) -> None:
        with self._lock:
            self.engine.control.update(rule, Actor.current("console"), force=force)
            self._recorded("update", rule)

    def delete_rule(self, rule_id: str) -> FilterRule:
        with self._lock:
            rule = self.engine.control.delete(rule_id, Actor.current("console"))
            self._recorded("delete", rule)
            return rule

    def panic(self) -> list[FilterRule]:
        with self._lock:
            cleared = self.engine.control.panic(Actor.current("console"))
            if self.config is not None:
                self.config.mark()
            for rule in cleared:
                self._recorded("panic-delete", rule)
            return cleared

    def reload(self) -> None:
        self._reload_requested = True

    def close(self) -> None:
        with self._lock:
            self.engine.close()
            if self.recorder is not None:
                self.recorder.close()
                self.recorder = None
