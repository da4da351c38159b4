"""Auto-block applied: a detector's raised alerts become expiring drop rules where the policy
(rules.auto_block) allows, and the blocks of an incident that grew too large are lifted.  A block
that expires while its incident is still open is renewed when the source sends again, within the
same policy (its caps count a renewal as a new block)."""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Callable, Sequence

from ironpost_tui.detectors.alerts import Alert, AlertChange, AlertState, ChangeKind
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
        self._blocked: dict[int, str] = {}  # open alerts auto-blocked in their incident -> the rule's id
        self._expired: set[str] = set()  # of those rules, the ones that expired (renewable: not deleted)

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
                held = control.table.get(rule_id)
                if held is None or not held.auto:  # gone, or the operator's now (edited in the form)
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
            rule = self._rule(alert, cfg)
            if control.table.get(rule.id) is not None:
                self._blocked[alert.id] = rule.id
                continue
            if not self._add(control, rule, actor, alert, now):
                continue
            live += 1
            log.warning("auto-blocked %s for %g s (%s), until %s", alert.source, cfg.block_ttl, alert.detector,
                        _clock(rule), extra={"event": "auto_blocked", "source": alert.source,
                                             "until": rule.expires_at})  # fmt: skip

    def expired(self, rules: Sequence[FilterRule]) -> None:
        """Rules that just expired: the auto-blocks among them may be renewed (a deleted one never is)."""
        if rules:  # only this run's open incidents' rules: the set stays as small as they are
            mine = set(self._blocked.values())  # auto-blocks, and operators' blocks that took one over
            # A drop's expiry only: a monitor rule that expires (an operator switched their block with x) never
            # brings the drop back.
            self._expired.update(r.id for r in rules if r.id in mine and r.action is Action.DROP)

    def renew(self, control: RuleController, changes: Sequence[AlertChange], now: float, wall: float) -> None:
        """Block again the sources of open incidents whose auto-block expired and that a detector finds again
        this tick, at or over its threshold, not merely sending (``changes``: this tick's; ``wall``: the time
        the detectors stamped it with)."""
        actor = Actor("ironpost", None, "detector")
        live: int | None = None
        for change in changes:
            alert = change.alert
            rule_id = self._blocked.get(alert.id)
            if rule_id is None:
                continue
            if change.kind is ChangeKind.RESOLVED:
                del self._blocked[alert.id]  # the incident is over: its block is not renewed
                self._expired.discard(rule_id)
                control.taken_over.pop(rule_id, None)
                continue
            if control.table.get(rule_id) is not None:
                self._expired.discard(rule_id)  # in force again (an id reused): its old expiry is not this one's
                continue  # still in force
            if rule_id not in self._expired:
                # An operator's block that took the auto-block over (RuleController.add says which, not a guess
                # from whoever holds the match now): it stands for it, and when it expires with the incident
                # open the source is blocked again, as an auto-block is renewed.
                successor = control.taken_over.pop(rule_id, None)
                held = control.table.get(successor) if successor is not None else None
                if held is not None and held.action is Action.DROP:
                    self._blocked[alert.id] = held.id
                    self._expired.discard(held.id)
                    continue
                del self._blocked[alert.id]  # deleted (by an operator, or lifted): never renewed
                continue
            if alert.state is not AlertState.ACTIVE or alert.last_seen != wall:
                continue  # silent since its block expired (or another rule blocks it)
            if not change.found:
                # Sending, but under the detector's threshold: a few packets in the source's name (spoofed,
                # or the victim's own retries) must not keep an address blocked for ever.
                continue
            cfg = self._config(alert.detector)
            if live is None:
                live = sum(1 for r in control.rules() if r.auto)
            decision = self.policy.decide(alert, now, live)
            if not decision.block:
                log.warning("auto-block of %s not renewed: %s", alert.source, decision.why_not)
                continue
            rule = self._rule(alert, cfg)
            if self._add(control, rule, actor, alert, now):
                self._expired.discard(rule_id)  # the operator's block it follows, if it was one: done with
                live += 1
                log.warning("auto-block of %s renewed for %g s, until %s: alert %d (%s) still active",
                            alert.source, cfg.block_ttl, _clock(rule), alert.id, alert.detector,
                            extra={"event": "auto_block_renewed", "source": alert.source,
                                   "until": rule.expires_at, "alert_id": alert.id})  # fmt: skip

    @staticmethod
    def _rule(alert: Alert, cfg: DetectorConfig) -> FilterRule:
        return FilterRule(
            id=f"auto-{alert.detector}-{alert.source}",
            action=Action.DROP,
            src_ip=ipaddress.ip_network(alert.source),
            description=f"auto-block: {alert.summary}",
            expires_at=time.time() + cfg.block_ttl,
            auto=True,
        )

    def _add(self, control: RuleController, rule: FilterRule, actor: Actor, alert: Alert, now: float) -> bool:
        try:
            control.add(rule, actor)
        except RuleRefused as exc:
            log.warning("auto-block of %s refused: %s", alert.source, exc.message)
            return False
        self.policy.blocked(alert, now)
        self._blocked[alert.id] = rule.id
        self._expired.discard(rule.id)
        return True


def _clock(rule: FilterRule) -> str:
    """The rule's expiry as local HH:MM:SS (what the header notice says)."""
    return time.strftime("%H:%M:%S", time.localtime(rule.expires_at or 0))
