"""Auto-block applied: a detector's raised alerts become expiring drop rules where the policy
(rules.auto_block) allows, and the blocks of an incident that grew too large are lifted."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence

from ironpost_tui.detectors.alerts import Alert
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector, DetectorConfig
from ironpost_tui.errors import IronpostError, RuleRefused
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import Actor
from ironpost_tui.rules.auto_block import AutoBlockPolicy, Refusal
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.infrastructure import InfraSources, Infrastructure
from ironpost_tui.rules.protect import Protected

log = logging.getLogger(__name__)


class AutoBlocker:
    def __init__(
        self,
        config: Callable[[Detector], DetectorConfig],
        limits: AutoBlockLimits,
        sources: InfraSources,
        protected: Callable[[], Sequence[Protected]],
    ) -> None:
        self._config = config
        self.infra = Infrastructure(sources, protected)
        self.policy = AutoBlockPolicy(limits, self.infra.find)

    @property
    def enabled(self) -> bool:
        """Whether any detector is set to auto-block."""
        return any(self._config(d).auto_block for d in Detector)

    def apply(self, control: RuleController, raised: list[Alert], now: float) -> None:
        """Block raised alerts' sources for block_ttl where the detector is set to and the policy allows."""
        live = sum(1 for r in control.rules() if r.auto)
        actor = Actor("ironpost", None, "detector")
        for alert in raised:
            cfg = self._config(alert.detector)
            if not cfg.auto_block:
                continue
            decision = self.policy.decide(alert, now, live)
            if decision.incident is not None:
                log.warning(decision.incident, extra={"event": "auto_block_stopped", "why": decision.refusal})
            for source in decision.revoke:
                rule_id = f"auto-{alert.detector}-{source}"
                if control.table.get(rule_id) is None:
                    continue
                try:
                    control.delete(rule_id, actor)
                except IronpostError:
                    log.exception("lifting the auto-block of %s failed", source)
                    continue
                live -= 1
                log.warning("auto-block of %s lifted: %s", source, decision.why_not)
            if not decision.block:
                if decision.refusal is Refusal.INFRASTRUCTURE:
                    log.warning("auto-block of %s refused: %s", alert.source, decision.why_not,
                                extra={"event": "auto_block_refused", "source": alert.source})  # fmt: skip
                continue
            rule = FilterRule(
                id=f"auto-{alert.detector}-{alert.source}",
                action=Action.DROP,
                src_ip=ipaddress.ip_network(alert.source),
                description=f"auto-block: {alert.summary}",
                expires_at=time.time() + cfg.block_ttl,
                auto=True,
            )
            if control.table.get(rule.id) is not None:
                continue
            try:
                control.add(rule, actor)
            except RuleRefused as exc:
                log.warning("auto-block of %s refused: %s", alert.source, exc.message)
                continue
            self.policy.blocked(alert, now)
            live += 1
            log.warning("auto-blocked %s for %g s (%s)", alert.source, cfg.block_ttl, alert.detector)
