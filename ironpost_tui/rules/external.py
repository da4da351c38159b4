"""BLOCKLIST as a contract for other writers: entries another tool adds, changes or deletes.

The seed's BLOCKLIST is a hash map any tool with CAP_BPF may write (``bpftool map update``): key the
IPv4 source, 4 bytes in network order; value the seed's BlocklistValue, action first (DROP 1, MONITOR
2, PASS 0) and the other bytes 0.  The XDP program finds an exact source through ADDR_FILTER and
EXACT4 (bpf/ironpost_common.h), which such a tool does not write; so on the engine's tick the
controller reads BLOCKLIST in one batch and compares it with what the rules in force wrote there and
what it knows of the other tools' entries (``diff``), then:

- a new DROP or MONITOR entry becomes the rule ``external:ADDRESS``, found by the program as ironpost's
  own are (an EXACT4 way, a filter bit), its value rewritten with the rule's slot and rank, action
  kept, marked ORIGIN_EXTERNAL; audited ``add`` via external;
- an entry of such a rule whose action changed: ``update``; changed to PASS or an unknown action, or
  deleted: the rule goes, the entry stays as the tool left it (``delete``);
- a DROP entry on a protected address (anti-lockout, protect.py) is deleted from BLOCKLIST: audited
  ``refuse`` and logged as a warning.  An external write never locks the operator out;
- an entry of ironpost's own rules that another tool overwrote or deleted is written back (``revert``,
  a warning): ironpost's rules change through ironpost.

The per-packet cost does not change: a taken-in entry is found as ironpost's own are.  The cost is
here: one batch read of BLOCKLIST per reconcile; when neither the map nor the rule table changed since
the last one (the bytes read compare equal, the table's generation is the same), nothing else.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel import abi
from ironpost_tui.model import Action, FilterRule, StrEnum
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.protect import Protected
from ironpost_tui.rules.table import RuleTable

log = logging.getLogger(__name__)

INTERVAL = 0.25  # seconds between reconciles: an entry takes effect, or stops, within INTERVAL + a tick
MAX_CHANGES = 1_000  # entries handled per reconcile, so a tool writing thousands never holds up the loop
# The kernel does not say which process wrote a map: the audit names the way, not the writer.
EXTERNAL_ACTOR = Actor(user="unknown", ssh_client=None, via="external")
_ACTIONS = {abi.ACTION_DROP: Action.DROP, abi.ACTION_MONITOR: Action.MONITOR}
_KEY = 4
_VALUE = abi.BLOCKLIST_VALUE.size


class EntryChange(StrEnum):
    ADDED = "added"
    CHANGED = "changed"
    REMOVED = "removed"


@dataclass(frozen=True)
class Change:
    """One BLOCKLIST entry that differs from what was expected there."""

    kind: EntryChange
    key: bytes
    value: bytes | None  # as BLOCKLIST holds it now; None when removed


@dataclass(frozen=True)
class Survey:
    """BLOCKLIST read and compared with what the table expected at ``generation``."""

    generation: int
    changes: list[Change]
    seen: tuple[bytes, bytes, int] | None  # the read, when it needs nothing done (None: nothing new read)


@dataclass
class Outcome:
    """What one reconcile did, rule by rule."""

    added: list[FilterRule] = field(default_factory=list)
    updated: list[FilterRule] = field(default_factory=list)
    removed: list[FilterRule] = field(default_factory=list)
    refused: list[FilterRule] = field(default_factory=list)  # would drop a protected address: deleted
    reverted: list[FilterRule] = field(default_factory=list)  # ironpost's own, written back
    ignored: list[bytes] = field(default_factory=list)  # keys whose action is no rule (PASS, unknown)

    @property
    def rules_changed(self) -> bool:
        return bool(self.added or self.updated or self.removed or self.refused)


def entries(keys: bytes, values: bytes, count: int) -> dict[bytes, bytes]:
    """A BLOCKLIST batch read as key -> value."""
    return {keys[i * _KEY : (i + 1) * _KEY]: values[i * _VALUE : (i + 1) * _VALUE] for i in range(count)}


def diff(expected: Mapping[bytes, bytes], found: Mapping[bytes, bytes]) -> list[Change]:
    """What differs between what BLOCKLIST should hold and what it holds, in key order.

    Loops of bytecode, no single C call over the whole map: with 100,000 entries it runs in the surveyor
    thread, and the tick's thread gets the interpreter between iterations."""
    keys = [k for k, v in found.items() if expected.get(k) != v]
    keys += [k for k in expected if k not in found]
    out = []
    for key in sorted(keys):
        want, have = expected.get(key), found.get(key)
        if want is None:
            out.append(Change(EntryChange.ADDED, key, have))
        elif have is None:
            out.append(Change(EntryChange.REMOVED, key, None))
        else:
            out.append(Change(EntryChange.CHANGED, key, have))
    return out


def action_of(value: bytes) -> Action | None:
    """The rule action an entry's value asks for; None for PASS or an action ironpost does not know."""
    return _ACTIONS.get(value[0])


def _address(key: bytes) -> str:
    return str(ipaddress.IPv4Address(key))


class ExternalEntries:
    """Keeps the rule table in step with what other tools write into BLOCKLIST."""

    def __init__(self, table: RuleTable, audit: AuditLog, protected: Callable[[], list[Protected]]) -> None:
        self._table = table
        self._audit = audit
        self._protected = protected
        # Other tools' entries that are no rule (PASS, an unknown action, or refused by the table), as
        # last seen: expected as they are, so they are looked at again only when they change.
        self._ignored: dict[bytes, bytes] = {}
        self._seen: tuple[bytes, bytes, int] | None = None  # the last read that needed nothing done

    def reconcile(self) -> Outcome:
        """Read BLOCKLIST once and act on what other tools changed since the last reconcile."""
        return self.apply(self.survey(*self.expected()))

    # A reconcile in three steps, for a BLOCKLIST of 100,000 entries (CrowdSec's decisions): ``expected``
    # under the engine's lock (a dict copy), ``survey`` anywhere (the batch read and the diff: tens of ms
    # that no tick pays when another thread does it), ``apply`` under the lock again, where a survey taken
    # before the table last wrote a rule map is stale and dropped (the next one sees the write).
    def expected(self) -> tuple[dict[bytes, bytes], int]:
        """What BLOCKLIST should hold now, and the table's generation it stands for."""
        held = self._table.blocklist()
        self._ignored = {k: v for k, v in self._ignored.items() if k not in held}
        # The decision set's entries (decision_set.py) as it wrote them; a rule's entry wins its key.
        want = self._table.side_entries | {key: value for key, (_rule, value) in held.items()} | self._ignored
        return want, self._table.generation

    @property
    def generation(self) -> int:
        """The table's write count: a survey taken at another one is stale."""
        return self._table.generation

    def read(self) -> tuple[bytes, bytes, int]:
        """BLOCKLIST in one batch read: (keys, values, count)."""
        return self._table.read_blocklist()

    def unchanged(self, read: tuple[bytes, bytes, int], generation: int) -> bool:
        """Whether ``read`` is what the last survey that needed nothing done read, at the same generation:
        then there is nothing to compare, and no expected set to build (8,744 entries of a threat feed,
        four times a second, were a tenth of a core)."""
        return self._seen == (read[0], read[1], generation)

    def survey(
        self, expected: dict[bytes, bytes], generation: int, read: tuple[bytes, bytes, int] | None = None
    ) -> Survey:
        """Compare BLOCKLIST (``read``, or read now) with ``expected``; touches no state but the map it reads."""
        keys, values, count = read if read is not None else self._table.read_blocklist()
        seen = (keys, values, generation)
        if self._seen == seen:
            return Survey(generation, [], None)
        changes = diff(expected, entries(keys, values, count))
        return Survey(generation, changes, seen)

    def apply(self, survey: Survey) -> Outcome:
        """Act on a survey's changes, unless the table wrote since it was taken."""
        out = Outcome()
        if survey.generation != self._table.generation:
            return out
        if not survey.changes:
            if survey.seen is not None:
                self._seen = survey.seen
            return out
        self._seen = None  # read again in full next time: what was written now, and what is left
        held = self._table.blocklist()
        protected = self._protected()
        for change in survey.changes[:MAX_CHANGES]:
            rule, want = held.get(change.key, (None, None))
            ours = (rule is not None and not rule.external) or (rule is None and change.key in self._table.side_entries)
            if not ours:
                # Another tool's entry is acted on as it is now, read again: the survey's value may be stale (a
                # tool that changes its mind at once), and writing what it read over the tool's newer value
                # undid the tool's change for good.  Ours are written back whatever the value, so a tool that
                # writes a new value each time cannot keep one from being written back (an attacker's review).
                now = self._table.entry(change.key)
                if now != change.value:
                    if now == (want if want is not None else self._ignored.get(change.key)):
                        continue  # back as expected: nothing to do
                    change = replace(change, value=now)
            try:
                self._apply(change, rule, protected, out)
            except IronpostError as exc:
                log.warning("BLOCKLIST entry for %s written by another tool: %s", _address(change.key), exc.message)
                if change.value is not None:
                    self._ignored[change.key] = change.value
        self._record(out, protected)
        return out

    def enforce_protections(self) -> list[FilterRule]:
        """Refuse the external drop rules that now hit a protection (the protections changed)."""
        protected = self._protected()
        out = Outcome()
        for rule in self._table.rules():
            if rule.external and protect.violation(rule, protected) is not None:
                self._refuse(rule, out, held=True)
        self._record(out, protected)
        return out.refused

    # --- one change ------------------------------------------------------------------
    def _apply(self, change: Change, rule: FilterRule | None, protected: list[Protected], out: Outcome) -> None:
        key, value = change.key, change.value
        if rule is not None and not rule.external:
            self._table.restore(rule.id)  # ironpost's own: written back as ironpost has it
            out.reverted.append(rule)
            return
        if rule is None and key in self._table.side_entries:
            # A CrowdSec decision's entry (decision_set.py) is ironpost's too: written back as the decision set
            # has it.  Taken in as another tool's, it would outlive the decision.
            self._table.restore_side(key)
            log.warning(
                "BLOCKLIST entry for %s (a CrowdSec decision) was changed by another tool: written back",
                _address(key),
                extra={"event": "external_reverted", "source": _address(key)},
            )
            return
        self._ignored.pop(key, None)
        action = action_of(value) if value is not None else None
        if rule is not None:  # an entry taken in before
            if action is None:  # deleted, or no rule any more (PASS, an unknown action)
                out.removed.append(self._table.forget(rule.id))
                if value is not None:
                    self._ignore(key, value, out)
            elif action is rule.action:
                self._table.restore(rule.id)  # the tool wrote the same action again: the rule's value back
            elif protect.violation(replace(rule, action=action), protected) is not None:
                self._refuse(rule, out, held=True)
            else:
                updated = replace(rule, action=action)
                self._table.update(updated)
                out.updated.append(updated)
            return
        if value is None:  # an entry that was no rule went
            return
        if action is None:
            self._ignore(key, value, out)
            return
        new = kernel_rules.external_rule(key, value[0])
        if protect.violation(new, protected) is not None:
            self._refuse(new, out, held=False)
        elif self._table.add_external(new):
            out.added.append(new)

    def _ignore(self, key: bytes, value: bytes, out: Outcome) -> None:
        self._ignored[key] = value
        out.ignored.append(key)
        what = "PASS (0)" if value[0] == abi.ACTION_PASS else f"{value[0]}, which ironpost does not know"
        level = logging.INFO if value[0] == abi.ACTION_PASS else logging.WARNING
        log.log(level, "BLOCKLIST entry for %s written by another tool has action %s: no rule, ignored",
                _address(key), what)  # fmt: skip

    def _refuse(self, rule: FilterRule, out: Outcome, held: bool) -> None:
        """Anti-lockout: the entry is deleted from BLOCKLIST (and the rule, if there was one, forgotten)."""
        assert rule.src_ip is not None
        key = rule.src_ip.network_address.packed
        if held:
            self._table.forget(rule.id)
        self._table.delete_foreign(key)
        out.refused.append(rule)

    # --- the record --------------------------------------------------------------------
    def _record(self, out: Outcome, protected: list[Protected]) -> None:
        """One audit write for the lot, then a warning for each refusal and each revert."""
        changes = [
            *(("add", r) for r in out.added),
            *(("update", r) for r in out.updated),
            *(("delete", r) for r in out.removed),
            *(("refuse", r) for r in out.refused),
            *(("revert", r) for r in out.reverted),
        ]
        self._audit.record_changes(EXTERNAL_ACTOR, changes)
        for rule in out.refused:
            hit = protect.violation(replace(rule, action=Action.DROP), protected)
            why = hit.describe() if hit is not None else "a protected address"
            log.warning(
                "BLOCKLIST entry for %s written by another tool refused: it would drop %s; deleted from BLOCKLIST",
                rule.src_ip.network_address if rule.src_ip else rule.id,
                why,
                extra={"event": "external_refused", "source": str(rule.src_ip), "why": why},
            )
        for rule in out.reverted:
            log.warning(
                "BLOCKLIST entry of rule '%s' (%s) was changed by another tool: written back "
                "(change ironpost's rules through ironpost)",
                rule.id,
                rule.src_ip,
                extra={"event": "external_reverted", "rule_id": rule.id, "source": str(rule.src_ip)},
            )
