"""What tests (and benchmarks) reach for in a running Engine beyond its public surface
(start, tick, close, snapshot, control): an engine on a lab's veth, its datapath, a fresh
counters sample, its detectors, and rule edits as the API actor."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator

from ironpost_tui.detectors import DetectionPipeline
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.kernel import host
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.kernel.xdp_link import occupants
from ironpost_tui.model import FilterRule, RuleStatus, StatsSample
from ironpost_tui.rules.audit import Actor
from support import netlab


@contextlib.contextmanager
def on_lab(lab: netlab.Lab, cfg: DatapathConfig | None = None) -> Iterator[Engine]:
    """An engine attached natively to the lab's host side, with no rule; closed (and checked
    detached) on the way out."""
    eng = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", datapath=cfg or DatapathConfig(), rules=()))
    try:
        report = eng.start()
        assert report.mode == "native"
        yield eng
    finally:
        eng.close()
        # Detached at once (a BPF link, not a netlink attach that would outlive the engine).
        assert occupants(lab.ifindex) == []
        # The engine leaves its (unlocked) flock file behind; the interface is ours and goes away.
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()


def datapath(engine: Engine) -> Datapath:
    """The started engine's program and maps."""
    assert engine._dp is not None, "the engine is not started"
    return engine._dp


def sample(engine: Engine) -> StatsSample:
    """Read the counters now (the next tick's rates count from this sample)."""
    engine._last_sample = engine._sampler.sample(datapath(engine), time.monotonic())
    return engine._last_sample


def detection(engine: Engine) -> DetectionPipeline:
    return engine._detect


def add_rule(engine: Engine, rule: FilterRule, force: bool = False) -> None:
    engine.control.add(rule, Actor.current("api"), force=force)


def update_rule(engine: Engine, rule: FilterRule, force: bool = False) -> None:
    engine.control.update(rule, Actor.current("api"), force=force)


def delete_rule(engine: Engine, rule_id: str) -> FilterRule:
    return engine.control.delete(rule_id, Actor.current("api"))


def rules(engine: Engine) -> list[FilterRule]:
    return engine.control.rules()


def rule_status(engine: Engine) -> list[RuleStatus]:
    return engine.control.status()
