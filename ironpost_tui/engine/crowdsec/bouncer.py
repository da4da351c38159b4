"""The bouncer: a thread pulls the decision stream, the engine's tick applies what it pulled.

The thread never touches the kernel: it puts each pull's Delta in a queue.  ``apply`` runs on the
tick (under the engine's lock) and works through the expiry heap and the queue until its time budget is
spent, so a 100,000-decision startup stream is applied over several ticks and no tick waits on it.  The
decisions are not rules of the table: they are one DecisionSet (rules/decision_set.py), one slot, one
``crowdsec`` row.  When the LAPI
is unreachable the rules in force stay until they expire; pulls back off (doubling, at most
MAX_BACKOFF) and the status says so.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace

from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.engine.crowdsec.decisions import (
    MAX_DESCRIPTION,
    RULE_PREFIX,
    Decision,
    Delta,
    Pulled,
    StreamParse,
    as_decision,
    printable,
    pulled_network,
)
from ironpost_tui.engine.crowdsec.lapi import LapiClient, LapiError
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus, LapiState, PullResult
from ironpost_tui.errors import IronpostError
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import Action, FilterRule, IPNetwork, RuleStatus
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.control import RuleController
from ironpost_tui.rules.decision_set import LEFTOVER_ID, DecisionSet
from ironpost_tui.rules.infrastructure import InfraAddress
from ironpost_tui.rules.protect import Protected

log = logging.getLogger(__name__)

ACTOR = Actor(user="crowdsec", ssh_client=None, via="crowdsec")
MAX_BACKOFF = 60.0
BUDGET = 0.01  # seconds of decisions applied per tick (a bulk goes on at the next tick, at once)
# A full pull (startup=true) this often as well as the deltas: the LAPI's delta can miss a decision written
# while a pull is answered (seen with bulk imports on crowdsec 1.4); a full pull puts the table right.
RESYNC_SECS = 60.0
# The decisions in force share this rule's slot (rules/decision_set.py): one row, one rule_id in /metrics.
SET_RULE = FilterRule("crowdsec", Action.DROP, description="CrowdSec decisions", crowdsec=True)
SET_MAPS = "BLOCKLIST/SRC4/SRC6"
# And once the deltas go quiet after changes (a bulk import done), at most this often: what the deltas
# missed is in force seconds after the import, not up to RESYNC_SECS later.
SETTLED_SECS = 5.0
REFUSED_LOG_SECS = 60.0  # decisions not applied (a map full): one line at most this often
AUDIT_EACH = 20  # changes in one tick audited one by one; more: one summary line
BULK_AUDIT_SECS = 10.0  # a bulk being applied: audited this often


@dataclass
class _Sweep:
    """After a full pull: the sources in it (``wanted``, as ``str(network)``); those held and not wanted go,
    a slice a tick."""

    wanted: frozenset[str]
    held: list[IPNetwork] | None = None  # what is left to look at (taken when the sweep starts)


class Bouncer:
    def __init__(
        self,
        settings: CrowdSecSettings,
        client: LapiClient,
        infra: Callable[[IPNetwork, float], InfraAddress | None] | None = None,
    ) -> None:
        self.settings = settings
        self._client = client
        # Infrastructure (gateways, resolvers, NTP, scrapers, SSH clients, the LAPI): skipped as protected
        # addresses are, so that a shared blocklist cannot cut this host off from what it runs on.
        self._infra = infra
        # Each pull's Delta, with a full pull's sources (built here, in the puller thread).
        self._queue: queue.Queue[tuple[Delta, frozenset[str] | None]] = queue.Queue()
        # Not applied yet: (True, decision) to apply, (False, decision) deleted, (False, sweep) after a full pull.
        self._ops: deque[Iterator[tuple[bool, Pulled | _Sweep]]] = deque()
        self._pending = 0  # decisions in self._ops
        self._set: DecisionSet | None = None  # the decisions in force (made on the first tick)
        self._warned: set[IPNetwork] = set()  # protected sources logged once
        self._protected_ids: set[int] = set()  # decisions skipped as protected, counted once each
        self._scenario_of: dict[IPNetwork, str] = {}  # the scenario of each decision held
        self._scenarios: Counter[str] = Counter()  # decisions held per scenario
        self._not_applied = 0  # decisions refused (a map full) since the last line that said so
        self._refused_since = 0.0
        self._refused_why = ("", "")
        self._bulk: Counter[str] = Counter()  # changes applied, not audited yet (the puller writes them)
        self._bulk_audit: AuditLog | None = None
        self._bulk_since = time.monotonic()
        self._bulk_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = LapiState.CONNECTING
        self.last_pull: float | None = None
        self.pulls = {PullResult.OK.value: 0, PullResult.ERROR.value: 0}
        self._last_status: RuleStatus | None = None  # rule_status()'s last row

    # --- the puller thread ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crowdsec-bouncer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout + 1)
        self._write_bulk(force=True)
        self._client.close()

    def _run(self) -> None:
        startup = True
        last_full = time.monotonic()
        backoff = self.settings.poll_interval
        changed = quiet = False  # a delta brought changes since the last full pull; the last one brought none
        while not self._stop.is_set():
            since = time.monotonic() - last_full
            full = startup or since >= RESYNC_SECS or (changed and quiet and since >= SETTLED_SECS)
            try:
                parse = StreamParse(self.settings)
                delta = replace(parse.delta(self._client.stream(full, parse.element)), full=full)
            except (LapiError, ValueError) as exc:
                self.pulls[PullResult.ERROR.value] += 1
                if self.state is not LapiState.DOWN:
                    log.warning(
                        "CrowdSec LAPI unreachable (%s): decisions in force stay until they expire; retrying",
                        exc,
                        extra={"event": "crowdsec_down"},
                    )
                self.state = LapiState.DOWN
                self._stop.wait(backoff)
                backoff = min(backoff * 2, MAX_BACKOFF)
                continue
            except Exception:
                log.exception("pulling the CrowdSec decision stream failed")
                self.pulls[PullResult.ERROR.value] += 1
                self.state = LapiState.DOWN
                self._stop.wait(backoff)
                continue
            if self.state is LapiState.DOWN:
                log.warning("CrowdSec LAPI reachable again", extra={"event": "crowdsec_up"})
            startup = False
            if full:
                last_full = time.monotonic()
                changed = False
            else:
                quiet = not (delta.new or delta.deleted)
                changed = changed or not quiet
            backoff = self.settings.poll_interval
            self.state = LapiState.UP
            self.last_pull = time.time()
            self.pulls[PullResult.OK.value] += 1
            if delta.malformed:
                log.warning("CrowdSec decision stream: %d malformed entries ignored", delta.malformed)
            if delta.new or delta.deleted or delta.full:
                self._queue.put((delta, frozenset(map(pulled_network, delta.new)) if full else None))
            self._write_bulk()
            self._stop.wait(self.settings.poll_interval)

    # --- on the tick ------------------------------------------------------------------
    def decision_set(self, control: RuleController) -> DecisionSet:
        """The decisions in force, in the kernel: one DecisionSet, made on first use."""
        if self._set is None:
            self._set = DecisionSet(control.table, SET_RULE)
            control.on_panic.append(self.panic)
            self._protect_leftovers(control, self._set)
        return self._set

    def _protect_leftovers(self, control: RuleController, decisions: DecisionSet) -> None:
        """The decisions a persisted run left, checked as a pulled one is (the protected addresses, the
        infrastructure): one on an address protected since goes now, not at its expiry."""
        now = time.time()
        for net in decisions.leftovers():
            hit = self._protection(FilterRule(SET_RULE.id, Action.DROP, src_ip=net), control, now)
            if hit is not None:
                decisions.remove(net)
                log.warning("CrowdSec decision on %s left by the last run removed: it would drop %s", net,
                            hit.describe(), extra={"event": "crowdsec_protected", "source": str(net)})  # fmt: skip

    def _protection(self, rule: FilterRule, control: RuleController, now: float) -> Protected | InfraAddress | None:
        """What a decision's drop ``rule`` would drop that must not be: a protected address, or this
        host's infrastructure."""
        assert rule.src_ip is not None
        hit: Protected | InfraAddress | None = protect.violation(rule, control.protected_spans)
        if hit is None and self._infra is not None:
            hit = self._infra(rule.src_ip, now)
        return hit

    def apply(self, control: RuleController, budget: float = BUDGET) -> bool:
        """Expire, then apply pulled decisions, until ``budget`` seconds are spent; True when the set changed."""
        decisions = self.decision_set(control)
        while True:
            try:
                delta, wanted = self._queue.get_nowait()
            except queue.Empty:
                break
            # Iterators, taken a slice a tick: no tick copies a 100,000-decision pull.
            self._ops.append((False, d) for d in delta.deleted)
            self._ops.append((True, d) for d in delta.new)
            self._pending += len(delta.deleted) + len(delta.new)
            if wanted is not None:  # a full pull: then what is held and no longer in force goes
                self._ops.append(iter([(False, _Sweep(wanted))]))
        t0 = time.monotonic()
        deadline = t0 + budget
        now = time.time()
        changes: list[tuple[str, Decision | IPNetwork]] = [("delete", n) for n in decisions.expire(now, deadline)]
        with decisions.batch() as batch:  # one write per map at the end of the slice
            self._slice(control, decisions, deadline, now, changes)
        if batch.failed:
            failed = set(batch.failed)
            changes = [
                c for c in changes if not (c[0] == "add" and isinstance(c[1], Decision) and c[1].network in failed)
            ]
            message = batch.error.message if isinstance(batch.error, IronpostError) else str(batch.error)
            self._refused(len(failed), str(batch.failed[0]), message)
        if not self.pending:
            self._report_refused()
        self._note_scenarios(changes)
        self._audit(control, changes, now)
        if len(changes) > AUDIT_EACH:
            # A bulk: the decisions just held live long.  Out of the collector's generations, so no full
            # collection walks 100,000 of them on some later tick (each would take hundreds of ms); they
            # are still freed by reference counting when they go.  A full collection first: the garbage
            # cycles of the oldest generation would otherwise be frozen with them, never to be freed, at
            # every bulk.  It walks only what came since the last freeze (frozen objects are not walked).
            gc.collect()
            gc.freeze()
        return bool(changes)

    def _slice(
        self,
        control: RuleController,
        decisions: DecisionSet,
        deadline: float,
        now: float,
        changes: list[tuple[str, Decision | IPNetwork]],
    ) -> None:
        """Pulled decisions applied (and swept) until ``deadline``; what changed appended to ``changes``."""
        while time.monotonic() < deadline:
            item = self._next_op()
            if item is None:
                break
            new, op = item
            if isinstance(op, _Sweep):  # after a full pull: what is held and was not in it goes
                if op.held is None:
                    op.held = decisions.networks()
                while op.held and time.monotonic() < deadline:
                    net = op.held.pop()
                    if str(net) not in op.wanted and decisions.remove(net):
                        changes.append(("delete", net))
                if op.held:
                    self._ops.appendleft(iter([(new, op)]))  # the rest next tick
                continue
            self._pending -= 1
            d = as_decision(op)  # made here, on the tick, a slice at a time (see Pulled)
            try:
                if not new:
                    if decisions.remove(d.network, d.id):
                        changes.append(("delete", d))
                    continue
                if decisions.ident(d.network) == d.id:
                    continue  # in force already (a full pull repeats it)
                hit = self._protection(d.rule(now), control, time.time())
                if hit is not None:
                    self._protected_ids.add(d.id)
                    if decisions.ident(d.network) == LEFTOVER_ID and decisions.remove(d.network):
                        changes.append(("delete", d.network))  # a persisted run's, protected since
                    if d.network not in self._warned:
                        self._warned.add(d.network)
                        log.warning("CrowdSec decision on %s skipped: it would drop %s", d.value, hit.describe(),
                                    extra={"event": "crowdsec_protected", "source": str(d.network)})  # fmt: skip
                    continue
                decisions.put(d.network, d.id, now + d.seconds)
                if d.network in decisions:  # held (put refuses a network whose entry another one holds)
                    changes.append(("add", d))
            except IronpostError as exc:  # a map full, or its reserve reached
                self._refused(1, d.value, exc.message)

    def _refused(self, n: int, example: str, why: str) -> None:
        """Decisions not applied (a map full, or its reserve reached): counted, and said in one line when
        the pulled decisions are all through (``_report_refused``), or every REFUSED_LOG_SECS of a longer
        bulk; a LAPI holding more than the maps take offers the same ones again at each full pull."""
        if not self._not_applied:
            self._refused_since, self._refused_why = time.monotonic(), (example, why)
        self._not_applied += n
        if time.monotonic() - self._refused_since >= REFUSED_LOG_SECS:
            self._report_refused()

    def _report_refused(self) -> None:
        if self._not_applied:
            example, why = self._refused_why
            log.warning("%d CrowdSec decision(s) not applied (%s among them): %s", self._not_applied, example, why,
                        extra={"event": "crowdsec_not_applied", "count": self._not_applied})  # fmt: skip
            self._not_applied = 0

    def _next_op(self) -> tuple[bool, Pulled | _Sweep] | None:
        while self._ops:
            try:
                return next(self._ops[0])
            except StopIteration:
                self._ops.popleft()
        return None

    def _audit(self, control: RuleController, changes: list[tuple[str, Decision | IPNetwork]], now: float) -> None:
        """A few changes one line each; a bulk (a startup stream, an import) one line with the counts, not
        100,000, written by the puller thread (an audit line is fsynced: no tick waits on the disk)."""
        if not changes:
            return
        with self._bulk_lock:
            if len(changes) <= AUDIT_EACH and not self._bulk:
                control.audit.record_changes(ACTOR, [(what, _as_rule(c, now)) for what, c in changes])
                return
            self._bulk_audit = control.audit
            for what, _ in changes:
                self._bulk[what] += 1

    def _write_bulk(self, force: bool = False) -> None:
        """The bulk's summary line, once the pulled decisions are applied (or every BULK_AUDIT_SECS)."""
        with self._bulk_lock:
            if not self._bulk or self._bulk_audit is None:
                return
            if self.pending and not force and time.monotonic() - self._bulk_since < BULK_AUDIT_SECS:
                return
            counts = {what: self._bulk[what] for what in ("add", "delete")}
            self._bulk.clear()
            self._bulk_since = time.monotonic()
            audit = self._bulk_audit
        audit.record("crowdsec-sync", ACTOR, None, **counts)

    @property
    def pending(self) -> bool:
        """Pulled decisions not applied yet (the tick should not wait for events before the next slice)."""
        return bool(self._ops) or not self._queue.empty()

    def panic(self) -> int:
        """Every decision out of the kernel (an operator's panic); the next full pull brings back those in force."""
        self._scenario_of.clear()
        self._scenarios.clear()
        return self._set.clear() if self._set is not None else 0

    def _note_scenarios(self, changes: list[tuple[str, Decision | IPNetwork]]) -> None:
        """The scenario of each decision held, counted: the ``crowdsec`` row's description names them."""
        for what, change in changes:
            net = change.network if isinstance(change, Decision) else change
            old = self._scenario_of.pop(net, None)
            if old is not None:
                self._scenarios[old] -= 1
                if not self._scenarios[old]:
                    del self._scenarios[old]
            if what == "add" and isinstance(change, Decision):
                scenario = printable(change.scenario)[:MAX_DESCRIPTION] or "no scenario"
                self._scenario_of[net] = scenario
                self._scenarios[scenario] += 1

    def status(self, control: RuleController) -> CrowdSecStatus:
        decisions = self.decision_set(control)
        return CrowdSecStatus(
            self.state,
            len(decisions),
            self.last_pull,
            dict(self.pulls),
            len(self._protected_ids),
            self._pending,
            decisions.written(MapName.BLOCKLIST),
        )

    def rule_status(self, control: RuleController) -> RuleStatus:
        """The rules pane's one ``crowdsec`` row: the decisions in force, their drops on the set's slot."""
        decisions = self.decision_set(control)
        packets, last = decisions.hits()
        n = len(decisions)
        rule = replace(SET_RULE, description=describe(n, self._scenarios))
        status = RuleStatus(rule, SET_MAPS, packets, last, decisions.slot)
        if status != self._last_status:  # the same row kept while it reads the same: an idle second
            self._last_status = status  # changes no status, and the snapshot gives back its last table
            return status
        return self._last_status or status


SCENARIOS_SHOWN = 3


def describe(n: int, scenarios: Counter[str]) -> str:
    """The ``crowdsec`` row's description: how many decisions, and their scenarios, most held first:
    ``3 CrowdSec decisions: crowdsecurity/ssh-bf 2, ironpost/port_scan 1``."""
    text = f"{n} CrowdSec decision{'' if n == 1 else 's'}"
    top = scenarios.most_common(SCENARIOS_SHOWN)
    if top:
        text += ": " + ", ".join(f"{scenario} {count:,}" for scenario, count in top)
        if len(scenarios) > SCENARIOS_SHOWN:
            text += f", {len(scenarios) - SCENARIOS_SHOWN} more"
    return text


def _as_rule(change: Decision | IPNetwork, now: float) -> FilterRule:
    if isinstance(change, Decision):
        return change.rule(now)
    return FilterRule(f"{RULE_PREFIX}{change}", Action.DROP, src_ip=change, crowdsec=True)
