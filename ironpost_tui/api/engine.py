"""The seed's ``EbpfEngine`` and its builder, on asyncio.

A facade over the engine the console and the agent run (``engine.engine``, stepped by
``engine.supervisor``): the same program, rule table, anti-lockout, audit (``via api``),
detectors and snapshot.  It runs in a thread of its own (``runner``); its coroutines wait on it
without blocking the event loop.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import Callable
from types import TracebackType
from typing import TypeVar

from ironpost_tui.api.channel import Receiver
from ironpost_tui.api.config import EngineConfig
from ironpost_tui.api.detectors import PortScanDetector, SynFloodDetector
from ironpost_tui.api.rules import FilterRule
from ironpost_tui.api.runner import NotRunning, Runner
from ironpost_tui.api.stats import TrafficStats
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.detectors import AlertChange
from ironpost_tui.engine.engine import Engine, StartReport
from ironpost_tui.engine.supervisor import Supervisor
from ironpost_tui.errors import RuleRefused
from ironpost_tui.model import PacketEvent
from ironpost_tui.rules.audit import Actor

R = TypeVar("R")
VIA = "api"  # how the audit names changes made through this API
DEFAULT_CHANNEL_CAPACITY = 1024
ALERT_CAPACITY = 1024  # alert changes waiting in engine.alerts at most


class EbpfEngineBuilder:
    """``EbpfEngine.builder().config(config).channel_capacity(1024).build()``."""

    def __init__(self) -> None:
        self._config = EngineConfig()
        self._capacity = DEFAULT_CHANNEL_CAPACITY
        self._syn_flood: SynFloodDetector | None = None
        self._port_scan: PortScanDetector | None = None

    def config(self, config: EngineConfig) -> EbpfEngineBuilder:
        if not isinstance(config, EngineConfig):
            raise ConfigError(f"config() takes an EngineConfig, got {config!r}")
        self._config = config
        return self

    def channel_capacity(self, capacity: int) -> EbpfEngineBuilder:
        """How many events may wait for the consumer; more are dropped and counted (``events.dropped``)."""
        Receiver[PacketEvent](capacity)  # refuses a bad capacity now
        self._capacity = capacity
        return self

    def detector(self, detector: SynFloodDetector | PortScanDetector) -> EbpfEngineBuilder:
        """Run the engine with this detector's settings (instead of the config's)."""
        if isinstance(detector, SynFloodDetector):
            self._syn_flood = detector
        elif isinstance(detector, PortScanDetector):
            self._port_scan = detector
        else:
            raise ConfigError(f"detector() takes a SynFloodDetector or a PortScanDetector, got {detector!r}")
        return self

    def build(self) -> tuple[EbpfEngine, Receiver[PacketEvent]]:
        """The engine (not started) and the receiver of its events; ConfigError when the config cannot run."""
        config = self._config
        if self._syn_flood is not None:
            config = dataclasses.replace(config, syn_flood=self._syn_flood.config)
        if self._port_scan is not None:
            config = dataclasses.replace(config, port_scan=self._port_scan.config)
        if not config.interface:
            raise ConfigError('EngineConfig: interface is empty: name the interface to attach to, like "eth0"')
        events = Receiver[PacketEvent](self._capacity)
        return EbpfEngine(config, events), events


class EbpfEngine:
    """One interface, filtered: ``await start()``, rules, stats, events, ``await stop()``.

    ``async with engine:`` starts it and stops it however the block ends.  An engine starts once.
    Without ``stop()`` the program is still detached when the process ends (a BPF link), unless
    ``persist`` pinned it."""

    def __init__(self, config: EngineConfig, events: Receiver[PacketEvent]) -> None:
        self._config = config
        self._events = events
        self.alerts: Receiver[AlertChange] = Receiver(ALERT_CAPACITY)
        """The detectors' alerts as they are raised, updated and resolved (``AlertChange``)."""
        self._runner: Runner | None = None
        self._report: StartReport | None = None

    @staticmethod
    def builder() -> EbpfEngineBuilder:
        return EbpfEngineBuilder()

    @property
    def config(self) -> EngineConfig:
        return self._config

    @property
    def events(self) -> Receiver[PacketEvent]:
        """The receiver ``build()`` returned."""
        return self._events

    @property
    def running(self) -> bool:
        return self._runner is not None and self._runner.running

    @property
    def report(self) -> StartReport | None:
        """How it attached (interface, mode, prog id, seconds, adopted pins); None before start()."""
        return self._report

    @property
    def failure(self) -> BaseException | None:
        """The error the engine stopped on (the interface disappeared...), if it did."""
        return self._runner.failure if self._runner is not None else None

    # --- lifecycle -----------------------------------------------------------
    async def start(self) -> StartReport:
        """Compile, load and attach (about a second): the configured rules are in force when it returns.

        Raises the project's errors: ``NotPermitted``, ``NoSuchInterface``, ``XdpBusy``, ``LockoutRefused``..."""
        if self._runner is not None:
            raise NotRunning("this engine was started already: an engine starts once, build another one")
        config = self._config
        options = await asyncio.to_thread(config.options)  # finds the SSH sessions and this host's addresses
        source = None
        if config.config_file is not None:
            source = ConfigSource(config.config_file, config.interface)
            options = dataclasses.replace(options, store=source.store)
        runner = self._runner = Runner(Supervisor(Engine(options), source), self._events, self.alerts)
        runner.start()
        try:
            self._report = await asyncio.wrap_future(runner.started)
        except asyncio.CancelledError:
            runner.request_stop()  # it detaches as soon as it has attached
            raise
        return self._report

    async def stop(self) -> None:
        """Detach (unless persisted) and end the event stream; safe to call twice, or on an engine that failed."""
        runner = self._runner
        if runner is None:
            return
        runner.request_stop()
        await asyncio.shield(asyncio.wrap_future(runner.stopped))

    async def __aenter__(self) -> EbpfEngine:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    # --- rules ---------------------------------------------------------------
    async def add_rule(self, rule: FilterRule, *, force: bool = False) -> None:
        """Put ``rule`` in force (in the kernel when this returns), audited ``via api``.

        ``RuleRefused`` when it cannot be (its id is taken, it needs more room than the maps have);
        ``LockoutRefused`` when it would drop a protected address, unless ``force`` (the address
        still passes: the kernel's allowlist wins)."""
        internal = _rule(rule).internal()
        await self._call(lambda: self._supervisor().engine.control.add(internal, Actor.current(VIA), force=force))

    async def update_rule(self, rule: FilterRule, *, force: bool = False) -> None:
        """Replace the rule with ``rule.id``: the new one is in force before the old one goes."""
        internal = _rule(rule).internal()
        await self._call(lambda: self._supervisor().engine.control.update(internal, Actor.current(VIA), force=force))

    async def remove_rule(self, rule_id: str) -> FilterRule:
        """Take the rule ``rule_id`` out of force; it is returned.  ``RuleRefused`` if there is none."""
        removed = await self._call(lambda: self._supervisor().engine.control.delete(rule_id, Actor.current(VIA)))
        return FilterRule.of(removed)

    async def get_rules(self) -> list[FilterRule]:
        """The rules in force, in their order (auto-blocks included)."""
        rules = await self._call(lambda: self._supervisor().engine.control.rules())
        return [FilterRule.of(r) for r in rules]

    async def panic(self) -> list[FilterRule]:
        """Clear every drop rule at once (the console's ``!``); the rules cleared."""
        cleared = await self._call(lambda: self._supervisor().panic(VIA))
        return [FilterRule.of(r) for r in cleared]

    # --- stats ---------------------------------------------------------------
    async def get_stats(self, fresh: bool = True) -> TrafficStats:
        """The counters of a sample taken after this call (within ``stats_interval``, 1 s by default).

        ``fresh=False``: the latest sample at once.  A stopped engine returns its last sample."""
        runner = self._runner
        if runner is None:
            return TrafficStats()
        if not fresh:
            return runner.latest
        return await runner.next_stats(time.monotonic())

    # --- the engine's thread -------------------------------------------------
    def _supervisor(self) -> Supervisor:
        assert self._runner is not None
        return self._runner.supervisor

    async def _call(self, call: Callable[[], R]) -> R:
        runner = self._runner
        if runner is None:
            raise NotRunning("the engine is not running: await engine.start() first")
        return await asyncio.wrap_future(runner.submit(call))


def _rule(rule: object) -> FilterRule:
    if not isinstance(rule, FilterRule):
        raise RuleRefused(f"a rule is an ironpost_tui.FilterRule, got {rule!r}")
    return rule
