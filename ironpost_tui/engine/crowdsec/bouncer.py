"""The bouncer: a thread pulls the decision stream, the engine's tick applies what it pulled.

The thread never touches the rule table: it puts each pull's Delta in a queue.  ``apply`` runs on the
tick (under the engine's lock) and works through the queue until its time budget is spent, so a
100,000-decision startup stream is applied over several ticks and no tick waits on it.  When the LAPI
is unreachable the rules in force stay until they expire; pulls back off (doubling, at most
MAX_BACKOFF) and the status says so.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from dataclasses import dataclass, replace

from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.engine.crowdsec.decisions import Decision, Delta, parse_stream
from ironpost_tui.engine.crowdsec.lapi import LapiClient, LapiError
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import FilterRule, StrEnum
from ironpost_tui.rules import protect
from ironpost_tui.rules.audit import Actor
from ironpost_tui.rules.control import RuleController

log = logging.getLogger(__name__)

ACTOR = Actor(user="crowdsec", ssh_client=None, via="crowdsec")
MAX_BACKOFF = 60.0
BUDGET = 0.02  # seconds of rule writes per tick
# A full pull (startup=true) this often as well as the deltas: the LAPI's delta can miss a decision written
# while a pull is answered (seen with bulk imports on crowdsec 1.4); a full pull puts the table right.
RESYNC_SECS = 60.0
AUDIT_EACH = 20  # changes in one tick audited one by one; more: one summary line


class LapiState(StrEnum):
    CONNECTING = "connecting"
    UP = "up"
    DOWN = "down"


class PullResult(StrEnum):
    OK = "ok"
    ERROR = "error"


@dataclass(frozen=True)
class CrowdSecStatus:
    """What the status bar and /metrics show."""

    state: LapiState
    decisions: int  # rules in force from the LAPI
    last_pull: float | None  # wall-clock seconds of the last successful pull
    pulls: dict[str, int]  # PullResult -> count
    skipped_protected: int
    pending: int  # decisions pulled, not applied yet


class Bouncer:
    def __init__(self, settings: CrowdSecSettings, client: LapiClient) -> None:
        self.settings = settings
        self._client = client
        self._queue: queue.Queue[Delta] = queue.Queue()
        # Not applied yet: (True, decision) to apply, (False, decision) deleted, (False, rule id) gone from a full pull.
        self._ops: deque[tuple[bool, Decision | str]] = deque()
        self._held: dict[str, int] = {}  # rule id -> the decision id it stands for
        self._warned: set[str] = set()  # protected values logged once
        self._protected_ids: set[int] = set()  # decisions skipped as protected, counted once each
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.state = LapiState.CONNECTING
        self.last_pull: float | None = None
        self.pulls = {PullResult.OK.value: 0, PullResult.ERROR.value: 0}

    # --- the puller thread ----------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="crowdsec-bouncer", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.settings.timeout + 1)
        self._client.close()

    def _run(self) -> None:
        startup = True
        last_full = time.monotonic()
        backoff = self.settings.poll_interval
        while not self._stop.is_set():
            full = startup or time.monotonic() - last_full >= RESYNC_SECS
            try:
                body = self._client.stream(full)
                delta = replace(parse_stream(body, self.settings), full=full)
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
            backoff = self.settings.poll_interval
            self.state = LapiState.UP
            self.last_pull = time.time()
            self.pulls[PullResult.OK.value] += 1
            if delta.malformed:
                log.warning("CrowdSec decision stream: %d malformed entries ignored", delta.malformed)
            if delta.new or delta.deleted or delta.full:
                self._queue.put(delta)
            self._stop.wait(self.settings.poll_interval)

    # --- on the tick ------------------------------------------------------------------
    def apply(self, control: RuleController, budget: float = BUDGET) -> bool:
        """Apply pulled decisions until ``budget`` seconds are spent; True when rules changed."""
        while True:
            try:
                delta = self._queue.get_nowait()
            except queue.Empty:
                break
            if delta.full:  # what is held and no longer in force goes
                wanted = {d.rule_id for d in delta.new}
                self._ops.extend((False, rule_id) for rule_id in self._held if rule_id not in wanted)
            self._ops.extend((False, d) for d in delta.deleted)
            self._ops.extend((True, d) for d in delta.new)
        if not self._ops:
            return False
        t0 = time.monotonic()
        now = time.time()
        changes: list[tuple[str, FilterRule]] = []
        table = control.table
        while self._ops and time.monotonic() - t0 < budget:
            new, op = self._ops.popleft()
            if isinstance(op, str):  # held, absent from a full pull
                if op in self._held and table.get(op) is not None:
                    changes.append(("delete", table.delete(op)))
                self._held.pop(op, None)
                continue
            d = op
            rule_id = d.rule_id
            try:
                if not new:
                    if self._held.get(rule_id) == d.id and table.get(rule_id) is not None:
                        changes.append(("delete", table.delete(rule_id)))
                    if self._held.get(rule_id) == d.id:
                        del self._held[rule_id]
                    continue
                if self._held.get(rule_id) == d.id and rule_id in table:
                    continue  # in force already (a full pull repeats it)
                rule = d.rule(now)
                hit = protect.violation(rule, control.protected)
                if hit is not None:
                    self._protected_ids.add(d.id)
                    if rule_id not in self._warned:
                        self._warned.add(rule_id)
                        log.warning("CrowdSec decision on %s skipped: it would drop %s", d.value, hit.describe(),
                                    extra={"event": "crowdsec_protected", "source": str(d.network)})  # fmt: skip
                    continue
                old = table.get(rule_id)
                if old is not None and not old.crowdsec:
                    continue  # an operator's rule of that id: theirs
                if old is not None:
                    table.update(rule)
                    changes.append(("update", rule))
                else:
                    table.add(rule)
                    changes.append(("add", rule))
                self._held[rule_id] = d.id
            except IronpostError as exc:
                log.warning("CrowdSec decision on %s not applied: %s", d.value, exc.message)
        self._audit(control, changes)
        return bool(changes)

    @staticmethod
    def _audit(control: RuleController, changes: list[tuple[str, FilterRule]]) -> None:
        """A few changes one line each; a bulk (a startup stream) one line with the counts, not 100,000."""
        if len(changes) <= AUDIT_EACH:
            control.audit.record_changes(ACTOR, changes)
        elif changes:
            counts = {what: sum(1 for w, _ in changes if w == what) for what in ("add", "update", "delete")}
            control.audit.record("crowdsec-sync", ACTOR, None, **counts)

    @property
    def pending(self) -> bool:
        """Pulled decisions not applied yet (the tick should not wait for events before the next slice)."""
        return bool(self._ops) or not self._queue.empty()

    def forget(self, gone: list[FilterRule]) -> None:
        """Rules that went without a decision's deletion (expired, panic, deleted by an operator)."""
        for rule in gone:
            if rule.crowdsec:
                self._held.pop(rule.id, None)

    def status(self, control: RuleController) -> CrowdSecStatus:
        """What is in force: the decisions' rules still in the table (a panic or an operator may have
        deleted some; a membership test each, no walk of the whole table)."""
        table = control.table
        decisions = sum(1 for rule_id in self._held if rule_id in table)
        return CrowdSecStatus(
            self.state, decisions, self.last_pull, dict(self.pulls), len(self._protected_ids), len(self._ops)
        )
