"""A set of source drops that share one rule slot: the CrowdSec LAPI's decisions, 100,000 of them.

Each decision is a source (an address or a range) written straight into the kernel's source maps as
placement.py places a source-only rule: an exact IPv4 address into BLOCKLIST, an IPv4 range into SRC4,
an IPv6 address or range into SRC6.  Every entry credits the one slot the set reserved (its RULE_HITS
counts for all of them) with the last drop priority (``PRIORITY``), so a packet is counted once, under
the set, and the rule table stays the size of the operator's rules: reading the hits, the expiry scan
and the snapshot cost what they cost without the set.

- Not in EXACT4: an EXACT4 way's slot is never rewritten in place (exact4.py), so a way of the set's
  could keep deciding for an address an operator's rule took over.  The program finds the set's
  addresses through ADDR_FILTER's FILTER_EXACT bit and BLOCKLIST, the seed's path.
- An operator's rule wins: a decision on a key a rule of the table holds (same map, same key) is
  recorded, not written; when that rule's entry goes (the table's ``on_removed``), the decision is
  written again.  A decision never deletes an entry the table holds.
- Expiry from a heap (O(log n) a decision); a decision replaced or deleted leaves a stale heap item
  that is skipped when it surfaces.
- The filter bits (prefilter.py) are counted in before an entry is written and out after it is deleted.
- A reserve: the set never fills a map past ``capacity - reserved(capacity)``, so that a LAPI holding
  more decisions than the map holds (or whoever can write decisions into it) cannot leave the operator
  unable to block: the decisions past it are refused (``DecisionsFull``), counted and logged by the bouncer.
- Batched writes: inside ``batch()``, puts are written at its end, one BPF_MAP_UPDATE_BATCH per map (a
  tick's slice of a 100,000-decision pull is a few syscalls, not thousands); a decision whose write
  failed (a map full) is let go, and the batch names it.

Anti-lockout is the caller's (the bouncer checks each decision with protect.violation): the kernel's
allowlist wins over these drops as over every other.
"""

from __future__ import annotations

import heapq
import logging
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ironpost_tui.errors import BlocklistFull
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.model import Action, FilterRule, IPNetwork
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import prefilter
from ironpost_tui.rules.table import LeftoverDecision, RuleTable

log = logging.getLogger(__name__)

# The last drop rank: any operator drop ranks before it, and every drop before any monitor.
PRIORITY = abi.DECISION_PRIORITY
# Entries of each map kept for the operator's rules and the auto-blocks: 1/32 of it, at least 64.
RESERVE_SHARE, RESERVE_MIN = 32, 64
# A decision a persisted run left in the pinned maps (its id is not in the kernel) is held under this id until
# a full pull of the LAPI sweeps it or finds it in force, or until the expiry its entry keeps; an entry of an
# older version, which keeps none, is held CrowdSec's default ban duration (4 h) once.
LEFTOVER_ID = 0
LEFTOVER_HOLD_SECS = 4 * 3600
# An expiry read back from an entry is held at most a year on, as a pulled decision lasts at most a year
# (engine/crowdsec/decisions.py MAX_SECONDS): an entry that says 2106 is not for ever.
LEFTOVER_MAX_SECS = 365 * 86400
# A decision's entry keeps its expiry for a restart: written again when a new decision on the source moves
# it by more than this (a full pull recomputes every expiry from the time left: seconds apart each time).
EXPIRY_SLACK_SECS = 60


def reserved(capacity: int) -> int:
    return max(RESERVE_MIN, capacity // RESERVE_SHARE)


class DecisionsFull(BlocklistFull):
    """A decision refused: its map holds as many decisions as it may beside the reserve."""


@dataclass
class _Held:
    ident: int  # the decision's id
    expires_at: float  # wall-clock seconds
    map_name: MapName
    key: bytes
    written: bool  # False: the table holds the key (an operator's rule wins)


@dataclass
class Batch:
    """What a ``DecisionSet.batch()`` could not write: those decisions are not held; the first error."""

    failed: list[IPNetwork] = field(default_factory=list)
    error: Exception | None = None


class DecisionSet:
    """Source drops keyed by network, one decision each, all crediting ``rule``'s slot."""

    def __init__(self, table: RuleTable, rule: FilterRule) -> None:
        assert rule.action is Action.DROP
        self.rule = rule
        self._table = table
        self._dp = table.datapath
        leftovers = table.take_leftover_decisions()
        slots = Counter(e.slot for e in leftovers.values() if e.slot >= 0)
        self.slot = table.reserve_slot(rule, slots.most_common(1)[0][0] if slots else None)
        self._held: dict[IPNetwork, _Held] = {}
        self._by_key: dict[tuple[MapName, bytes], IPNetwork] = {}
        # (expires_at, a sequence number that keeps networks from being compared, decision id, network)
        self._heap: list[tuple[float, int, int, IPNetwork]] = []
        self._seq = 0
        self._written: Counter[MapName] = table.side_counts  # shared: the controller's capacity check counts them
        self._room: dict[MapName, int] = {}  # inside batch(): entries each map may still take
        self._pending: dict[tuple[MapName, bytes], _Held] | None = None  # inside batch(): writes to make
        table.on_removed.append(self._table_let_go)
        if leftovers:
            self._hold_leftovers(leftovers, set(slots) - {self.slot})

    def _value(self, expires_at: float) -> bytes:
        """An entry of the set: its slot and rank, and (ORIGIN_DECISION) the decision's expiry in
        own_priority, which a --persist restart reads back (the program reads neither)."""
        until = min(max(int(expires_at), 0), 0xFFFFFFFF)
        code = abi.ACTION_DROP
        return abi.BLOCKLIST_VALUE.pack(code, code, abi.ORIGIN_DECISION, self.slot, PRIORITY, self.slot, until)

    def _hold_leftovers(self, leftovers: dict[IPNetwork, LeftoverDecision], other_slots: set[int]) -> None:
        """Hold the entries a persisted run left (already in force, filter bits and counts the table's
        until now) as decisions of unknown id, until the expiry their entry keeps (or, an entry of an
        older version that keeps none, ``LEFTOVER_HOLD_SECS`` from now, written into it so that a later
        restart does not renew it), unless a full pull sweeps them first.  An entry on another slot, or
        without its expiry, is written again (not one a rule of the table holds now: that rule's entry
        stays, and the decision is written back when it goes, as put() does)."""
        now = time.time()
        hold, longest = now + LEFTOVER_HOLD_SECS, now + LEFTOVER_MAX_SECS
        rewrite: dict[MapName, list[tuple[bytes, bytes]]] = {}
        for net, entry in leftovers.items():
            until = min(entry.expires_at, longest) if entry.expires_at is not None else hold
            self._seq += 1
            heapq.heappush(self._heap, (until, self._seq, LEFTOVER_ID, net))
            self._held[net] = _Held(LEFTOVER_ID, until, entry.map_name, entry.key, written=True)
            self._by_key[(entry.map_name, entry.key)] = net
            if self._table.owner(entry.map_name, entry.key) is not None:
                continue
            value = self._value(until)
            if entry.slot != self.slot or entry.expires_at != until:
                rewrite.setdefault(entry.map_name, []).append((entry.key, value))
            if entry.map_name == MapName.BLOCKLIST:
                self._table.side_entries[entry.key] = value
        for map_name, entries in rewrite.items():
            self._table.generation += 1
            self._dp.map_update_batch(map_name, entries)  # an entry that failed keeps what it said
        for slot in other_slots:
            self._table.release_slot(slot)
        log.info(
            "%d CrowdSec decisions left in the pinned maps by the last run held until their expiry or the LAPI's "
            "full pull",
            len(leftovers),
            extra={"event": "crowdsec_leftovers", "count": len(leftovers)},
        )

    def leftovers(self) -> list[IPNetwork]:
        """The decisions held from a persisted run's entries, no pull having said their id yet."""
        return [net for net, held in self._held.items() if held.ident == LEFTOVER_ID]

    # --- reading -------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._held)

    def __contains__(self, net: object) -> bool:
        return net in self._held

    def ident(self, net: IPNetwork) -> int | None:
        """The id of the decision held on ``net``, or None."""
        held = self._held.get(net)
        return held.ident if held is not None else None

    def networks(self) -> list[IPNetwork]:
        return list(self._held)

    def written(self, map_name: MapName) -> int:
        """Entries the set has in ``map_name`` now (not the decisions an operator's rule overrides)."""
        return self._written[map_name]

    def hits(self) -> tuple[int, float | None]:
        """(packets, wall-clock seconds of the last one or None) the set's slot counted: one entry read."""
        packets = last = 0
        for raw in self._dp.percpu_entries(MapName.RULE_HITS, self.slot):
            p, t = abi.RULE_HIT.unpack_from(raw)
            packets += p
            last = max(last, t)
        return packets, (last / 1e9 + self._table.clock_offset if last else None)

    # --- changing ------------------------------------------------------------------
    def put(self, net: IPNetwork, ident: int, expires_at: float) -> bool:
        """Hold decision ``ident`` on ``net`` until ``expires_at``; True when the kernel changed."""
        held = self._held.get(net)
        if held is not None and held.ident == ident:
            return False  # in force already (a full pull repeats it)
        if held is None:
            placement = kernel_rules.place(FilterRule(self.rule.id, Action.DROP, src_ip=net))
            if (placement.map_name, placement.key) in self._by_key:
                # Another network held here places the same entry (decision() reads no two such): one entry, one
                # decision, or the first one's removal would take the other's drop with it.  Not held, not timed.
                return False
        self._seq += 1
        heapq.heappush(self._heap, (expires_at, self._seq, ident, net))
        if held is not None:  # another decision on the same source: the same entry, its expiry kept in it
            before = int(held.expires_at)
            held.ident, held.expires_at = ident, expires_at
            moved = abs(int(expires_at) - before) > EXPIRY_SLACK_SECS
            if held.written and moved and self._table.owner(held.map_name, held.key) is None:
                if self._pending is not None and (held.map_name, held.key) in self._pending:
                    return False  # written at the batch's end, with the expiry it has then
                value = self._value(expires_at)
                self._table.generation += 1  # a survey of BLOCKLIST taken before this write is stale (external.py)
                self._dp.map_update(held.map_name, held.key, value)
                if held.map_name == MapName.BLOCKLIST:
                    self._table.side_entries[held.key] = value
            return False
        key = placement.key
        held = _Held(ident, expires_at, placement.map_name, key, written=False)
        atoms = self._atoms(net, placement.map_name)
        self._table.prefilter.add(atoms)  # before the entry: the filters stay a superset of the maps
        try:
            self._write(held)
        except Exception:
            self._table.prefilter.remove(atoms)
            raise
        self._held[net] = held
        self._by_key[(placement.map_name, key)] = net
        return held.written

    def remove(self, net: IPNetwork, ident: int | None = None) -> bool:
        """Let go of the decision on ``net`` (only if it is decision ``ident``, when given); True when held."""
        held = self._held.get(net)
        if held is None or (ident is not None and held.ident != ident):
            return False
        del self._held[net]
        if self._by_key.get((held.map_name, held.key)) == net:
            del self._by_key[(held.map_name, held.key)]
        if held.map_name == MapName.BLOCKLIST:
            self._table.side_entries.pop(held.key, None)
        if held.written:
            self._written[held.map_name] -= 1
            # Inside batch() it may not be written yet: then there is nothing to delete.
            unwritten = self._pending is not None and self._pending.pop((held.map_name, held.key), None) is not None
            if not unwritten and self._table.owner(held.map_name, held.key) is None:
                self._table.generation += 1
                self._dp.map_delete(held.map_name, held.key)
        self._table.prefilter.remove(self._atoms(net, held.map_name))  # after the entry went
        return True

    def expire(self, now: float, deadline: float) -> list[IPNetwork]:
        """Remove the decisions whose expiry has passed, until ``deadline`` (time.monotonic())."""
        gone = []
        heap = self._heap
        while heap and heap[0][0] <= now and time.monotonic() < deadline:
            expires_at, _seq, ident, net = heapq.heappop(heap)
            held = self._held.get(net)
            if held is not None and held.ident == ident and held.expires_at == expires_at:
                self.remove(net)
                gone.append(net)
        if len(heap) > 2 * len(self._held) + 1024:  # mostly stale items (replaced, deleted): rebuilt
            self._heap = []
            for n, h in self._held.items():
                self._seq += 1
                self._heap.append((h.expires_at, self._seq, h.ident, n))
            heapq.heapify(self._heap)
        return gone

    def clear(self) -> int:
        """Remove every decision (a panic); how many went."""
        nets = list(self._held)
        for net in nets:
            self.remove(net)
        self._heap = []
        return len(nets)

    @contextmanager
    def batch(self) -> Iterator[Batch]:
        """The writes of the puts inside, made at its end (also when it raises), one syscall per map."""
        assert self._pending is None, "batches do not nest"
        self._pending = {}
        self._room = {}
        out = Batch()
        try:
            yield out
        finally:
            pending, self._pending = self._pending, None
            self._flush(pending, out)

    # --- internals -----------------------------------------------------------------
    def _flush(self, pending: dict[tuple[MapName, bytes], _Held], out: Batch) -> None:
        by_map: dict[MapName, list[_Held]] = {}
        for (map_name, _key), held in pending.items():
            by_map.setdefault(map_name, []).append(held)
        for map_name, helds in by_map.items():
            self._table.generation += 1
            done, error = self._dp.map_update_batch(map_name, [(h.key, self._value(h.expires_at)) for h in helds])
            if error is None:
                continue
            out.error = out.error or error
            for held in helds[done:]:  # not in the kernel: not held either
                held.written = False
                self._written[map_name] -= 1
                net = self._by_key[(map_name, held.key)]
                self.remove(net)
                out.failed.append(net)

    def _write(self, held: _Held) -> None:
        """Write ``held``'s entry unless a rule of the table holds its key (then it waits: _table_let_go)."""
        if held.written or self._table.owner(held.map_name, held.key) is not None:
            return
        self._claim(held.map_name)
        self._table.generation += 1  # a survey of BLOCKLIST taken before this write is stale (external.py)
        value = self._value(held.expires_at)
        if self._pending is not None:
            self._pending[(held.map_name, held.key)] = held  # written at the batch's end
        else:
            self._dp.map_update(held.map_name, held.key, value)
        held.written = True
        self._written[held.map_name] += 1
        if held.map_name == MapName.BLOCKLIST:
            self._table.side_entries[held.key] = value  # expected there by external.py

    def _claim(self, map_name: MapName) -> None:
        """One more entry in ``map_name``, or DecisionsFull when the reserve would be reached.  The rules'
        count is taken once per batch (it is a walk of the table) and kept up to date by the claims."""
        room = self._room.get(map_name) if self._pending is not None else None
        if room is None:
            capacity = self._table.capacity()[map_name]
            room = capacity - reserved(capacity) - self._table.count(map_name) - self._written[map_name]
        if room <= 0:
            capacity = self._table.capacity()[map_name]
            raise DecisionsFull(
                f"{map_name} holds {self._written[map_name]} CrowdSec decisions and keeps {reserved(capacity)} of its "
                f"{capacity} entries for the operator's rules: decision not applied (raise its size in [ebpf])"
            )
        if self._pending is not None:
            self._room[map_name] = room - 1

    def _table_let_go(self, map_name: MapName, key: bytes) -> None:
        """A rule of the table deleted its entry on ``key``: a decision held there is written again."""
        net = self._by_key.get((map_name, key))
        if net is not None:
            held = self._held[net]
            if held.written:  # written before the rule took the key over: the rule's entry went with it
                held.written = False
                self._written[map_name] -= 1
            self._write(held)

    @staticmethod
    def _atoms(net: IPNetwork, map_name: MapName) -> list[prefilter.Atom]:
        return prefilter.source_atoms(map_name, net)
