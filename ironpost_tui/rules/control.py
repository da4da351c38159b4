"""Rule changes as an operator makes them: checked against the anti-lockout
protections, applied to the kernel, saved to the configuration, audited.

The console, the headless agent, signals and the detectors all change rules
through one RuleController.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable
from typing import Literal, Protocol

from ironpost_tui.errors import BlocklistFull, IronpostError, RuleRefused
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.external import ExternalEntries, Outcome
from ironpost_tui.rules.protect import Protected
from ironpost_tui.rules.table import RuleTable

log = logging.getLogger(__name__)


class LockoutRefused(RuleRefused):
    title = "Anti-lockout"


class RuleSink(Protocol):
    """Where edits are persisted (rule_store.RuleStore)."""

    def add(self, rule: FilterRule) -> None: ...
    def update(self, rule: FilterRule) -> None: ...
    def delete(self, rule_id: str) -> None: ...
    def replace_all(self, rules: list[FilterRule]) -> None: ...


class AutoSink(Protocol):
    """Where auto-blocks are kept (config.journal.AutoJournal): buffered, written by flush()."""

    def __contains__(self, rule_id: object) -> bool: ...
    def add(self, rule: FilterRule) -> None: ...
    def delete(self, rule_id: str) -> None: ...
    def flush(self) -> None: ...


TAKEN_OVER_KEPT = 4096  # take-overs remembered for the auto-blocker (one a renewed incident follows)


class RuleController:
    def __init__(
        self,
        table: RuleTable,
        audit: AuditLog,
        store: RuleSink | None = None,
        protected: list[Protected] | None = None,
        journal: AutoSink | None = None,
    ) -> None:
        self.table = table
        self.audit = audit
        self.store = store
        self.journal = journal  # auto-blocks go here, never to store (None: to store, as any rule)
        # auto-block id -> the operator's rule that took it over (add), for the auto-blocker to follow; bounded
        self.taken_over: dict[str, str] = {}
        self._protected: list[Protected] = []
        self.protected_spans = protect.Spans(())
        self.on_panic: list[Callable[[], int]] = []  # more to clear in a panic; each says how many went
        # Other tools' BLOCKLIST entries: rules of their own, never saved (external.py).
        self.external = ExternalEntries(table, audit, lambda: self.protected)
        self.set_protected(protected or [])

    # --- reading ---------------------------------------------------------------
    def rules(self) -> list[FilterRule]:
        return self.table.rules()

    def status(self) -> list[RuleStatus]:
        return self.table.status()

    # --- protections -----------------------------------------------------------
    @property
    def protected(self) -> list[Protected]:
        """A copy: the list changes only through the setter, which makes check()'s ranges again."""
        return list(self._protected)

    @protected.setter
    def protected(self, protected: list[Protected]) -> None:
        self._protected = list(protected)
        self.protected_spans = protect.Spans(self._protected)  # what check() compares each rule with

    def set_protected(self, protected: list[Protected], enforce: bool = True) -> None:
        """Protect ``protected`` in the kernel; ``enforce``: also refuse other tools' drops on them now
        (a reload does that once its rules are in, so a refused reload changes nothing)."""
        self.table.set_allowlist({p.network: p.reason for p in protected})
        self.protected = protected
        if enforce:
            self.external.enforce_protections()  # another tool's drop on an address now protected goes

    def reconcile_external(self) -> Outcome:
        """Take in what other tools changed in BLOCKLIST since the last call (the engine's tick)."""
        return self.external.reconcile()

    def check(self, rule: FilterRule, force: bool = False) -> None:
        """Refuse a drop rule whose src_ip covers or falls inside a protected address."""
        kernel_rules.place(rule)  # shape errors first
        hit = protect.violation(rule, self.protected_spans)
        if hit is not None and not force:
            raise LockoutRefused(
                f"rule '{rule.id}' would drop {hit.describe()}: refused; force it with --force or the "
                "console's confirmation (the kernel's allowlist still lets protected sources through)"
            )

    # --- single edits ----------------------------------------------------------
    def journaled(self, rule_id: str) -> bool:
        return self.journal is not None and rule_id in self.journal

    def add(self, rule: FilterRule, actor: Actor, force: bool = False) -> None:
        self.check(rule, force)
        holder = self.table.holder(rule)
        self.table.add(rule)
        # The rule it took over (gone from the table now): an auto-block's, or another tool's entry.
        gone = holder if holder is not None and self.table.get(holder.id) is None else None
        taken = gone if gone is not None and gone.auto else None
        if rule.auto and self.journal is not None:
            self.journal.add(rule)  # written by flush(), once per tick
        elif self.store is not None:
            try:
                self.store.add(rule)
            except Exception as exc:
                self._undo_add(rule, gone)
                raise IronpostError(f"rule '{rule.id}' not applied: saving it failed: {exc}") from exc
        if gone is not None and gone.external:
            log.info("rule '%s' takes over %s: its BLOCKLIST entry is ironpost's now", rule.id, gone.id)
            self.audit.record("delete", actor, gone)  # the tool's rule, as an auto-block taken over is
        if taken is not None:
            log.info("rule '%s' takes over the auto-block %s", rule.id, taken.id)
            self.taken_over[taken.id] = rule.id
            if len(self.taken_over) > TAKEN_OVER_KEPT:
                del self.taken_over[next(iter(self.taken_over))]  # the oldest: its incident long over
            if self.journaled(taken.id):
                assert self.journal is not None
                self.journal.delete(taken.id)
            elif self.store is not None:  # no journal: auto-blocks are kept in the file
                try:
                    self.store.delete(taken.id)
                except Exception:
                    log.exception("rule '%s' took over the auto-block %s, still in the file", rule.id, taken.id)
            self.audit.record("delete", actor, taken)
        self.audit.record("add", actor, rule, forced=force or None)

    def _undo_add(self, rule: FilterRule, gone: FilterRule | None) -> None:
        """An added rule whose save failed, out again: what it took over (an auto-block, another tool's entry) back
        in place, never out of force.  If that fails too, the rule stays in force, unsaved, and the error says so:
        a source is never let through for a failed undo."""
        try:
            if gone is None:
                self.table.delete(rule.id)
            else:
                self.table.hand_back(gone, rule.id)
        except Exception as exc:
            log.exception("rule '%s' could not be taken out again after its save failed", rule.id)
            raise IronpostError(
                f"rule '{rule.id}' is in force but not saved: saving it failed, and so did taking it out ({exc}); "
                "it goes at the next reload"
            ) from exc

    def update(self, rule: FilterRule, actor: Actor, force: bool = False) -> None:
        old = self.table.get(rule.id)
        if old is None:
            raise RuleRefused(f"no rule with id '{rule.id}'")
        if old.external:
            raise RuleRefused(
                f"rule '{rule.id}' is another tool's BLOCKLIST entry: change it with that tool, delete it, "
                "or add a rule of your own for the address (it takes the entry over)"
            )
        self.check(rule, force)
        self.table.update(rule)
        if self.journal is not None and self.journaled(rule.id):
            if rule.auto:
                self.journal.add(rule)
            else:  # an auto-block the operator made their own: from the journal to the file
                self.journal.delete(rule.id)
                self._save_new(rule, old)
        elif self.store is not None:
            try:
                self.store.update(rule)
            except Exception as exc:
                self.table.update(old)
                raise IronpostError(f"rule '{rule.id}' not changed: saving it failed: {exc}") from exc
        self.audit.record("update", actor, rule, forced=force or None)

    def delete(self, rule_id: str, actor: Actor) -> FilterRule:
        rule = self.table.delete(rule_id)
        if self.journal is not None and self.journaled(rule_id):
            self.journal.delete(rule_id)
        elif self.store is not None and not rule.external and not rule.crowdsec:
            try:
                self.store.delete(rule_id)
            except Exception as exc:
                self.table.add(rule)
                raise IronpostError(f"rule '{rule_id}' not deleted: saving failed: {exc}") from exc
        self.audit.record("delete", actor, rule)
        return rule

    def _save_new(self, rule: FilterRule, old: FilterRule) -> None:
        if self.store is None:
            return
        try:
            self.store.add(rule)
        except Exception as exc:
            self.table.update(old)
            assert self.journal is not None
            self.journal.add(old)
            raise IronpostError(f"rule '{rule.id}' not changed: saving it failed: {exc}") from exc

    def restore(self, rules: list[FilterRule], actor: Actor) -> list[FilterRule]:
        """Put back the auto-blocks a journal kept (at start): each checked and added on its own.

        One that now hits a protection, shares an id with another rule or does not fit is left
        out (and out of the journal) with a warning; one audit record for the lot."""
        restored = []
        for rule in rules:
            try:
                if rule.id in self.table:
                    raise RuleRefused(f"a rule with id '{rule.id}' exists already")
                self.check(rule)
                self.table.add(rule)
            except IronpostError as exc:
                log.warning("auto-block %s not restored: %s", rule.id, exc.message)
                if self.journal is not None:
                    self.journal.delete(rule.id)
                continue
            restored.append(rule)
        if restored:
            self.audit.record("restore", actor, None, rules=len(restored), ids=[r.id for r in restored])
        return restored

    def flush(self) -> None:
        """Write the auto-blocks changed since the last flush (one journal write); front ends call it once per tick."""
        if self.journal is not None:
            self.journal.flush()

    # --- whole sets ------------------------------------------------------------
    def replace_all(
        self, rules: list[FilterRule], actor: Actor, force: bool = False, what: Literal["load", "reload"] = "reload"
    ) -> None:
        """Move the kernel to ``rules`` (a load or reload); on any error the old set stays in force.

        Other tools' entries (external rules) stay, after ``rules``, unless a rule of ``rules`` is on
        the same address: that one takes the entry over."""
        for rule in rules:
            self.check(rule, force)
        ids = {r.id for r in rules}
        externals = [r for r in self.table.rules() if (r.external or r.crowdsec) and r.id not in ids]
        # Each rule's placement by its key, only when another tool's entries are there to meet (a start's load
        # has none: 10,000 placements hashed for nothing, 3 ms).
        placed = {kernel_rules.place(r): r for r in rules} if externals else {}
        kept: list[FilterRule] = []
        for rule in externals:
            mine = placed.get(kernel_rules.place(rule))
            if mine is None:
                kept.append(rule)
                continue
            if mine.action is not Action.DROP and self.table.drops_now(rule):
                # A monitor rule never takes another tool's drop over: it would lift it (as in add()).
                raise RuleRefused(f"rule '{mine.id}' is a monitor rule on {rule.id}'s drop: it would lift it")
            log.info("%s: a rule of the new set is on its address and takes its BLOCKLIST entry over", rule.id)
        rules = rules + kept
        self._check_capacity(rules)
        before = self.table.rules()
        try:
            self.table.replace_all(rules)
        except Exception:
            log.exception("reload failed half-way: restoring the previous rule set")
            self.table.replace_all(before)
            raise
        self.audit.record(what, actor, None, rules=len(ids), ids=[r.id for r in rules if r.id in ids])

    def load(self, rules: list[FilterRule], actor: Actor, force: bool = False) -> int:
        """The start's load of the file's rules (replace_all's "load"): the file wins over the CrowdSec
        decisions a persisted run left (RuleTable.adopt_existing): when the rules do not fit beside them,
        those go first (the LAPI's next full pull writes again the ones still in force, within the
        reserve); how many went."""
        try:
            self.replace_all(rules, actor, force=force, what="load")
            return 0
        except BlocklistFull:
            if not self.table.has_leftover_decisions():
                raise
        dropped = self.table.drop_leftover_decisions()
        self.replace_all(rules, actor, force=force, what="load")
        return dropped

    def _check_capacity(self, rules: list[FilterRule]) -> None:
        # replace_all() deletes the rules that go before it adds: the new set must fit.
        # The CrowdSec decisions' entries stay beside them: counted, so that a set that does not fit is
        # refused here in one line, not half-way through the kernel writes.
        per_map = Counter(kernel_rules.place(r).map_name for r in rules)
        cfg = self.table.capacity()
        side = self.table.side_counts
        for name, count in per_map.items():
            if count + side[name] > cfg[name]:
                beside = f" beside the {side[name]} CrowdSec decisions in it" if side[name] else ""
                raise BlocklistFull(
                    f"{name} would need {count} entries{beside} and holds {cfg[name]}: "
                    "rules refused, the current set stays in force"
                )

    def panic(self, actor: Actor) -> list[FilterRule]:
        """Clear every drop rule from the kernel first, then from the file and the journal.

        The file is written only when a drop rule of its own went: a panic that cleared
        auto-blocks alone leaves the operator's configuration as it was."""
        drops = [r for r in self.table.rules() if r.action is Action.DROP]
        for rule in drops:
            self.table.delete(rule.id)
        journaled = [r for r in drops if self.journaled(r.id)]
        for rule in journaled:
            assert self.journal is not None
            self.journal.delete(rule.id)
        try:
            self.flush()
        except Exception:
            log.exception("panic: the auto-blocks are out of the kernel, but saving the journal failed")
        saved = [r for r in drops if r not in journaled and not r.external and not r.crowdsec]  # the file's own
        if self.store is not None and saved:
            kept = [r for r in self.table.rules() if not self.journaled(r.id) and not r.external and not r.crowdsec]
            try:
                self.store.replace_all(kept)
            except Exception:
                log.exception("panic: the drop rules are out of the kernel, but saving the file failed")
        self.audit.record_each("panic-delete", actor, drops)
        for clear in self.on_panic:  # drops kept beside the table (the CrowdSec decisions)
            gone = clear()
            if gone:
                log.warning("panic: cleared %d CrowdSec decision(s) (back at the next full pull)", gone)
        return drops

    def expire(self, now: float, actor: Actor) -> list[FilterRule]:
        """Remove rules whose expiry has passed, from the kernel and the file."""
        soonest = self.table.next_expiry()
        if soonest is None or soonest > now:  # nothing due (a second of 10,000 rules looked at no rule)
            return []
        gone = [r for r in self.table.rules() if r.expires_at is not None and r.expires_at <= now]
        for rule in gone:
            try:
                self.delete(rule.id, actor)
            except IronpostError:
                log.exception("expiring rule %s failed", rule.id)
        return gone
