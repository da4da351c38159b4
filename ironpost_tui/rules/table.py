"""The rules in force: writes them into the kernel maps, reads their hits.

Every change leaves the maps either as they were or fully changed: an entry
is written before anything that points at it, and removed after.
"""

from __future__ import annotations

import contextlib
import dataclasses
import operator
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from ironpost_tui.errors import RuleRefused
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.datapath import Datapath
from ironpost_tui.kernel.hit_reader import HitReader
from ironpost_tui.model import Action, FilterRule, IPNetwork, RuleStatus
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules import prefilter, prefixh
from ironpost_tui.rules.coverage import PrefixIndex
from ironpost_tui.rules.exact4 import Exact4
from ironpost_tui.rules.fragments import FragmentEntries, fragment_keys
from ironpost_tui.rules.matchh import MatchH
from ironpost_tui.rules.placement import Placement, Shape
from ironpost_tui.rules.prefilter import Atom, Prefilter
from ironpost_tui.rules.prefixh import PrefixH
from ironpost_tui.rules.wall_clock import WallOffset, monotonic_to_wall_offset

NO_SLOT = "no rule slot left: remove rules first"


@dataclass
class _Shown:
    """The rules as _view() last saw them (in dict order), sorted by priority, the position of each one's
    slot in that order, the slots to read, the statuses status() last gave, and counts by map."""

    insts: list[_Installed]
    order: list[_Installed]
    at_slot: dict[int, int]
    slots: int  # the highest slot in use, plus one: what is read
    out: list[RuleStatus]
    rules: list[FilterRule]  # in order
    counts: Counter[MapName]  # rules by the map that holds them
    next_expiry: float | None  # the soonest expires_at of the rules (wall clock); None: none expires


@dataclass
class _Installed:
    rule: FilterRule
    placement: Placement
    key: bytes  # the key as written (MATCH keys carry the shape index)
    slot: int
    priority: int
    shape_index: int | None
    atoms: list[Atom]  # what it set in the prefilter (prefilter.py)
    # The program finds the entry in an inline table: a BLOCKLIST entry in EXACT4 (exact4.py), a
    # SRC4/SRC6 entry in PREFIX4H/PREFIX6H (prefixh.py), a MATCH entry in MATCHH (matchh.py).
    exact4: bool = False


@dataclass(frozen=True)
class LeftoverDecision:
    """A CrowdSec decision's entry a persisted run left in a pinned map (RuleTable.adopt_existing)."""

    map_name: MapName
    key: bytes
    slot: int  # -1: none to keep (out of range, or a rule's)
    expires_at: float | None  # as the entry says (Unix seconds); None: an entry that does not say


class RuleTable:
    """Rules by id, as installed in one Datapath."""

    def __init__(self, datapath: Datapath, clock_offset: float) -> None:
        self._dp = datapath
        self._wall = WallOffset(clock_offset)  # wall time minus CLOCK_MONOTONIC, followed when the clock steps
        cfg = datapath.cfg
        self._free_slots = list(range(cfg.rule_slots - 1, -1, -1))
        # Slots whose RULE_HITS counters are known zero (new maps, a slot never taken): not cleared again.
        self._zeroed = bytearray(b"\x01") * cfg.rule_slots if datapath.take_zeroed_hits() else bytearray(cfg.rule_slots)
        self._next_priority = 0
        self._rules: dict[str, _Installed] = {}
        self._by_key: dict[tuple[MapName, bytes], str] = {}
        self._by_slot: dict[int, str] = {}
        # Source prefixes per LPM trie: network -> rule id (see _refresh_covered).
        self._lpm: dict[MapName, PrefixIndex] = {MapName.SRC4: PrefixIndex(), MapName.SRC6: PrefixIndex()}
        # Slots of removed rules: events still queued in the ring buffer name them by slot.
        self._retired: dict[int, FilterRule] = {}
        self._shapes: dict[Shape, tuple[int, int]] = {}  # shape -> (index, users)
        self._free_shapes = list(range(cfg.shapes_max - 1, -1, -1))
        self._n_shapes = 0
        self._allow: dict[IPNetwork, int] = {}
        self._pf = Prefilter(datapath)
        self._exact4 = Exact4(datapath)
        self._prefixh = PrefixH(datapath)
        self._matchh = MatchH(datapath)
        self._fragments = FragmentEntries(datapath)  # FRAG_MATCH, derived from the drop rules with a port
        self._match_ranks: dict[str, int] = {}  # rule id -> rank, for the rules in MATCH
        # Counts the writes to the rule maps: a reader of BLOCKLIST (external.py) knows when what it
        # last read and checked is still all there is to know.
        self.generation = 0
        self._statuses: dict[str, RuleStatus] = {}  # status(): the last one, by rule id
        self._shown: _Shown | None = None  # status(): the rules it last read, in order
        self._hit_reader = HitReader(datapath)
        # Source entries written beside the rules (decision_set.py): told when a rule's entry on a key
        # goes (map, key), and their BLOCKLIST entries (key -> value), which external.py expects there.
        self.on_removed: list[Callable[[MapName, bytes], None]] = []
        self.side_entries: dict[bytes, bytes] = {}
        self.side_counts: Counter[MapName] = Counter()  # their entries per map (the capacity checks count them)
        # The CrowdSec decisions a persisted run left in pinned maps (adopt_existing): in force, counted as
        # side entries, until the decision set takes them (take_leftover_decisions) or they are dropped.
        self._leftover_decisions: dict[IPNetwork, LeftoverDecision] = {}

    # --- reading ---------------------------------------------------------------
    def __len__(self) -> int:
        return len(self._rules)

    def __contains__(self, rule_id: str) -> bool:
        return rule_id in self._rules

    def rules(self) -> list[FilterRule]:
        """The rules in priority order."""
        return list(self._view().rules) if self._rules else []

    def next_expiry(self) -> float | None:
        """The soonest expiry of a rule (wall clock), None when none expires: what expiring looks at first,
        each second, instead of every rule."""
        return self._view().next_expiry if self._rules else None

    def get(self, rule_id: str) -> FilterRule | None:
        inst = self._rules.get(rule_id)
        return inst.rule if inst else None

    @property
    def datapath(self) -> Datapath:
        return self._dp

    @property
    def prefilter(self) -> Prefilter:
        return self._pf

    @property
    def clock_offset(self) -> float:
        return self._wall.offset

    def follow_clock(self, offset: float | None = None) -> float:
        """The wall clock's offset from CLOCK_MONOTONIC read again (``offset``, or read now) and followed if it
        stepped (rules/wall_clock.py): the step taken, 0.0 when none."""
        return self._wall.follow(monotonic_to_wall_offset() if offset is None else offset)

    def owner(self, map_name: MapName, key: bytes) -> str | None:
        """The id of the rule whose entry ``key`` of ``map_name`` is (source-only maps), or None."""
        return self._by_key.get((map_name, key))

    def reserve_slot(self, rule: FilterRule, slot: int | None = None) -> int:
        """A rule slot kept out of the table for good (decision_set.py), its hits zeroed; events that
        name it name ``rule``.  ``slot``: a leftover decisions' slot (take_leftover_decisions), kept with
        its hits."""
        if slot is not None:
            self._retired[slot] = rule
            return slot
        if not self._free_slots:
            raise RuleRefused(NO_SLOT)
        slot = self._free_slots.pop()
        self._clear_hits(slot)
        self._retired[slot] = rule
        return slot

    def _clear_hits(self, slot: int) -> None:
        """Zero ``slot``'s hit counters before anything points at it (unless they are zero already)."""
        if self._zeroed[slot]:
            self._zeroed[slot] = 0  # from now on something may count there
        else:
            self._dp.percpu_clear(MapName.RULE_HITS, slot)
            self._hit_reader.written()

    def capacity(self) -> dict[MapName, int]:
        cfg = self._dp.cfg
        return {
            MapName.BLOCKLIST: cfg.blocklist_max_entries,
            MapName.SRC4: cfg.cidr_max_entries,
            MapName.SRC6: cfg.cidr_max_entries,
            MapName.MATCH: cfg.match_max_entries,
        }

    def count(self, map_name: MapName) -> int:
        return self._view().counts[map_name] if self._rules else 0

    def status(self) -> list[RuleStatus]:
        """Every rule with its hits summed over CPUs and its last hit time, in priority order."""
        if not self._rules:
            self._statuses, self._shown = {}, None
            return []
        # A rule whose status did not change since the last call keeps its RuleStatus object: with 10,000
        # rules, most of them every second, and whoever compares statuses (the console, the snapshot)
        # can stop at `is`.  While the rules are the same, only the slots whose counters changed are
        # looked at (hit_reader.py); else every rule, in an order sorted again.
        shown = self._view()
        hits, changed = self._hit_reader.read(shown.slots)
        if changed is not None and shown.out:
            out = list(shown.out)
            for slot in changed:
                n = shown.at_slot.get(slot)
                if n is not None:
                    out[n] = self._status_of(shown.order[n], hits)
        else:
            out = [self._status_of(inst, hits) for inst in shown.order]
        shown.out = out
        return list(out)

    def _view(self) -> _Shown:
        """The rules sorted, counted and their slots placed, once per change of the rules (10,000 rules
        sorted for each call was most of what an idle second cost: the status, the expiry, the counts)."""
        insts = list(self._rules.values())
        shown = self._shown
        if shown is None or len(shown.insts) != len(insts) or not all(map(operator.is_, shown.insts, insts)):
            order = sorted(insts, key=lambda i: i.priority)
            shown = self._shown = _Shown(
                insts,
                order,
                {inst.slot: n for n, inst in enumerate(order)},
                # Slots are handed out lowest first: read up to the highest in use, not the whole map.
                max((i.slot for i in insts), default=-1) + 1,
                [],
                [inst.rule for inst in order],
                Counter(inst.placement.map_name for inst in insts),
                min((i.rule.expires_at for i in insts if i.rule.expires_at is not None), default=None),
            )
            self._statuses = {i.rule.id: s for i in insts if (s := self._statuses.get(i.rule.id)) is not None}
        return shown

    def _status_of(self, inst: _Installed, hits: list[tuple[int, int]]) -> RuleStatus:
        packets, last = hits[inst.slot]
        last_hit = last / 1e9 + self._wall.offset if last else None
        rule = inst.rule
        old = self._statuses.get(rule.id)
        if (
            old is None
            or old.rule is not rule
            or old.hits != packets
            or old.last_hit != last_hit
            or old.slot != inst.slot
            or old.map_name != inst.placement.map_name
        ):
            old = self._statuses[rule.id] = RuleStatus(rule, inst.placement.map_name, packets, last_hit, inst.slot)
        return old

    def blocklist(self) -> dict[bytes, tuple[FilterRule, bytes]]:
        """BLOCKLIST as the rules in force wrote it: key -> (rule, value)."""
        return {
            inst.key: (inst.rule, kernel_rules.value(inst.rule, inst.slot, inst.priority))
            for inst in self._rules.values()
            if inst.placement.map_name == MapName.BLOCKLIST
        }

    def read_blocklist(self) -> tuple[bytes, bytes, int]:
        """BLOCKLIST as the kernel holds it now, in one batch read: keys and values packed, their count."""
        return self._dp.map_dump(MapName.BLOCKLIST)

    def holder(self, rule: FilterRule) -> FilterRule | None:
        """The rule in force on exactly ``rule``'s match (its map entry), if any."""
        rule_id = self._holder_of(kernel_rules.place(rule))
        return self._rules[rule_id].rule if rule_id is not None else None

    def rule_for_slot(self, slot: int) -> FilterRule | None:
        rule_id = self._by_slot.get(slot)
        return self._rules[rule_id].rule if rule_id is not None else self._retired.get(slot)

    # --- changing --------------------------------------------------------------
    def add(self, rule: FilterRule) -> None:
        """Install a new rule; RuleRefused (nothing written) when it cannot be.  An operator's rule on the
        address of another tool's entry (external.py) takes that entry over; an auto-block does not (it
        would delete the tool's entry when it expires).  An operator's rule with exactly an auto-block's match
        takes the auto-block's entries over in place, with no gap, when it drops: blocking a source a detector
        blocked makes the block the operator's (until session 23 it was refused as a duplicate)."""
        if rule.id in self._rules:
            raise RuleRefused(f"a rule with id '{rule.id}' exists already")
        holder = self.holder(rule)
        mine = not rule.external and not rule.auto
        # A monitor rule never takes a drop over: that would lift it (the Top pane's m on a blocked source, an
        # auto-block's or another tool's); it is refused as a duplicate match.
        takes = (
            holder is not None
            and (holder.external or holder.auto)
            and (rule.action is Action.DROP or not self.drops_now(holder))
        )
        take_over = holder.id if holder is not None and takes and mine else None
        self._install(rule, self._take_priority(), take_over)

    def drops_now(self, rule: FilterRule) -> bool:
        """Whether ``rule``, in force, drops: its action; for another tool's entry also the action the map holds
        now (the tool may have made its monitor entry a drop since the last reconcile took it in)."""
        if rule.action is Action.DROP:
            return True
        inst = self._rules.get(rule.id)
        if not rule.external or inst is None:
            return False
        live = self.entry(inst.key)  # another tool's entries are BLOCKLIST's
        return live is not None and live[0] == abi.ACTION_DROP

    def hand_back(self, rule: FilterRule, holder_id: str) -> None:
        """Undo a take-over (``add``'s, when saving the new rule failed): ``rule`` back in place of ``holder_id``'s
        entries (the same match), with no moment without one.  An auto-block's entries are rewritten as they were.
        Another tool's entry is rewritten as it was taken in (its action kept) only while it still holds what
        ``holder_id`` wrote: if the tool deleted or rewrote it since, ``holder_id`` lets go of it, left as the tool
        has it for the next reconcile (an older value written over the tool's newer one would undo its change)."""
        if rule.id in self._rules:
            raise RuleRefused(f"a rule with id '{rule.id}' exists already")
        inst = self._rules[holder_id]
        if rule.external and self.entry(inst.key) != kernel_rules.value(inst.rule, inst.slot, inst.priority):
            self.forget(holder_id)
        elif not self._install(rule, self._take_priority(), take_over=holder_id):
            self.forget(holder_id)  # the tool deleted it in between: never re-created

    def entry(self, key: bytes) -> bytes | None:
        """BLOCKLIST's value for ``key`` now, as the kernel holds it."""
        return self._dp.map_lookup(MapName.BLOCKLIST, key)

    def restore_side(self, key: bytes) -> None:
        """Write a CrowdSec decision's BLOCKLIST entry again as the decision set wrote it (another tool overwrote or
        deleted it: ironpost's entries change through ironpost)."""
        self.generation += 1
        self._dp.map_update(MapName.BLOCKLIST, key, self.side_entries[key])

    def add_external(self, rule: FilterRule) -> bool:
        """Take in another tool's BLOCKLIST entry as ``rule`` (external.py): its value is replaced by this
        rule's, never re-created; False, nothing written, when the entry went first."""
        assert rule.external
        if rule.id in self._rules:
            raise RuleRefused(f"a rule with id '{rule.id}' exists already")
        return self._install(rule, self._take_priority())

    def forget(self, rule_id: str) -> FilterRule:
        """Let go of a rule whose BLOCKLIST entry another tool deleted or rewrote (an external rule's, or a
        take-over's being undone): its EXACT4 way and its filter bits go, the entry stays as the tool left it (a
        delete here could delete an entry the tool wrote since)."""
        inst = self._rules.pop(rule_id)
        self._remove_entries(inst, keep_entry=True)
        return inst.rule

    def restore(self, rule_id: str) -> None:
        """Write a rule's entry again as ironpost has it (another tool overwrote or deleted it)."""
        self._write(self._rules[rule_id])

    def delete_foreign(self, key: bytes) -> bool:
        """Delete a BLOCKLIST entry no rule holds (another tool's, refused)."""
        if (MapName.BLOCKLIST, key) in self._by_key:
            raise RuleRefused(f"BLOCKLIST entry {key.hex()} belongs to rule '{self._by_key[(MapName.BLOCKLIST, key)]}'")
        self.generation += 1
        return self._dp.map_delete(MapName.BLOCKLIST, key)

    def delete(self, rule_id: str) -> FilterRule:
        inst = self._rules.get(rule_id)
        if inst is None:
            raise RuleRefused(f"no rule with id '{rule_id}'")
        self._uninstall(inst)
        return inst.rule

    def update(self, rule: FilterRule) -> None:
        """Change a rule in place: the new entry is in force before the old goes; on an error
        nothing changed, here or in the kernel."""
        old = self._rules.get(rule.id)
        if old is None:
            raise RuleRefused(f"no rule with id '{rule.id}'")
        placement = kernel_rules.place(rule)
        if placement.map_name == old.placement.map_name and placement.key == old.placement.key:
            # Same match: overwrite the value, one atomic map update; the rule is ours once it is written.
            new = dataclasses.replace(old, rule=rule)
            self._write(new)
            self._rules[rule.id] = new
            return
        del self._rules[rule.id]
        try:
            self._install(rule, old.priority)
        except Exception:
            self._rules[rule.id] = old
            raise
        self._remove_entries(old)

    def replace_all(self, rules: list[FilterRule]) -> None:
        """Move to exactly ``rules`` with no gap for any match present in both sets."""
        wanted = {r.id for r in rules}
        # Rules that go stay in until the new ones are in: a rule that goes may drop the same packets
        # as a new rule in another map (an exact source becoming a prefix or a multi-field rule), and
        # deleting it first would let them through in between.  Only when the maps cannot hold both
        # do the rules that go (and whose match no wanted rule takes over) make room first.
        if not self._room_alongside(rules):
            taken_over = {self._holder_of(kernel_rules.place(r)) for r in rules}
            for rule_id in [rid for rid in self._rules if rid not in wanted and rid not in taken_over]:
                self.delete(rule_id)
        # Writes kept (the start's load into new maps): the filters' words written once, not per rule.
        kept = self._dp.writes_kept()
        with self._pf.deferred() if kept else contextlib.nullcontext():
            for rule in rules:
                current = self._rules.get(rule.id)
                if current is not None:
                    if current.rule != rule:
                        self.update(rule)
                    continue
                placement = kernel_rules.place(rule)
                holder = self._holder_of(placement)
                if holder is not None and holder not in wanted:
                    # Same match under a new id: hand the entry over in place.
                    self._install(rule, self._take_priority(), take_over=holder)
                elif kept and placement.map_name == MapName.BLOCKLIST and not rule.external:
                    self._install_exact(rule, placement, self._take_priority(), holder)
                else:
                    self._install(rule, self._take_priority())
        for rule_id in [rid for rid in self._rules if rid not in wanted]:
            self.delete(rule_id)
        self._renumber([r.id for r in rules])

    def _room_alongside(self, rules: list[FilterRule]) -> bool:
        """Whether the rules of ``rules`` not in yet fit beside every rule now in: map entries, slots
        and shapes (a match taken over under a new id is counted as new: at worst room is made first)."""
        placements = [kernel_rules.place(r) for r in rules if r.id not in self._rules]
        capacity = self.capacity()
        for name, n in Counter(p.map_name for p in placements).items():
            if self.count(name) + n > capacity.get(name, 0):
                return False
        shapes = {p.shape for p in placements if p.shape is not None and p.shape not in self._shapes}
        return len(placements) <= len(self._free_slots) and len(shapes) <= len(self._free_shapes)

    def _renumber(self, order: list[str]) -> None:
        """Make priorities follow ``order`` (the rule list), rewriting what changed."""
        tries = set()
        for position, rule_id in enumerate(order):
            inst = self._rules[rule_id]
            if inst.priority == position:
                continue
            inst.priority = position
            self._shown = None  # status() sorts again
            if inst.placement.map_name in self._lpm:
                tries.add(inst.placement.map_name)
            else:
                self._write(inst)
        for name in tries:
            for rule_id in list(self._lpm[name].values()):
                self._write(self._rules[rule_id])
        self._next_priority = len(order)

    def _holder_of(self, placement: Placement) -> str | None:
        if placement.shape is None:
            return self._by_key.get((placement.map_name, placement.key))
        entry = self._shapes.get(placement.shape)
        if entry is None:
            return None
        return self._by_key.get((placement.map_name, placement.match_key(entry[0])))

    # --- adopting pinned maps -----------------------------------------------
    def adopt_existing(self) -> list[FilterRule]:
        """Learn the rules already in pinned maps (ids are not kept in the kernel:
        they come back as pinned-N); returns them."""
        shapes: dict[int, Shape] = {}
        for raw_key, raw in self._dp.map_items(MapName.SHAPES):
            fields, family, _pm, _portm, smask, dmask = abi.RULE_SHAPE.unpack(raw)
            if fields & abi.SHAPE_UNUSED or not fields:
                continue
            index = int.from_bytes(raw_key, "little")
            shape = Shape(fields, family, _prefixlen(smask), _prefixlen(dmask))
            shapes[index] = shape
        found: list[FilterRule] = []
        in_blocklist: set[bytes] = set()
        in_tries: set[IPNetwork] = set()
        in_match: set[bytes] = set()
        for map_name in (MapName.BLOCKLIST, MapName.SRC4, MapName.SRC6, MapName.MATCH):
            for key, raw in self._dp.map_items(map_name):
                _act, action, origin, _act_slot, _act_prio, slot, priority = abi.BLOCKLIST_VALUE.unpack(raw)
                if action not in (abi.ACTION_DROP, abi.ACTION_MONITOR):
                    # Not written by ironpost (own_action 0: another tool's entry no controller took in):
                    # the first reconcile takes it in (external.py).
                    continue
                if (
                    _act_prio == abi.DECISION_PRIORITY  # the decision set's rank: never a rule's (acting or own)
                    and origin in (abi.ORIGIN_IRONPOST, abi.ORIGIN_DECISION)
                    and map_name != MapName.MATCH
                ):
                    self._keep_leftover(map_name, key, raw, slot)  # a CrowdSec decision's, not a rule
                    continue
                if map_name == MapName.BLOCKLIST and origin == abi.ORIGIN_EXTERNAL:
                    rule: FilterRule | None = kernel_rules.external_rule(key, action)
                else:
                    rule = kernel_rules.rule_from_entry(map_name, key, action, shapes, f"pinned-{len(found) + 1}")
                if rule is None:
                    continue
                placement = kernel_rules.place(rule)
                shape_index = None
                if placement.shape is not None:
                    shape_index = int.from_bytes(key[:4], "little")
                    index, users = self._shapes.get(placement.shape, (shape_index, 0))
                    self._shapes[placement.shape] = (index, users + 1)
                    if index in self._free_shapes:
                        self._free_shapes.remove(index)
                if slot in self._free_slots:
                    self._free_slots.remove(slot)
                fast, have, want = False, None, (_rank(rule, priority), slot)
                if map_name == MapName.BLOCKLIST:
                    in_blocklist.add(key)
                elif map_name in self._lpm and rule.src_ip is not None:
                    in_tries.add(rule.src_ip)
                elif map_name == MapName.MATCH:
                    in_match.add(key)
                if map_name in (MapName.BLOCKLIST, MapName.MATCH) or map_name in self._lpm:
                    # EXACT4/PREFIX*H/MATCHH as BLOCKLIST/the tries/MATCH say, whatever a stop between two
                    # writes left there.
                    have = self._inline_get(map_name, key, rule)
                    fast = have is not None and (have == want or self._inline_room(map_name, key, rule, slot))
                atoms = _atoms(rule, placement, shape_index, fast)
                self._pf.add(atoms)
                if fast and have != want:
                    self._inline_put(map_name, key, rule, *want)
                elif not fast and have is not None:
                    self._inline_remove(map_name, key, rule)  # the map alone now (its filter bit is set above)
                self._rules[rule.id] = _Installed(rule, placement, key, slot, priority, shape_index, atoms, fast)
                if map_name == MapName.MATCH:
                    self._match_ranks[rule.id] = _rank(rule, priority)
                self._by_key[(map_name, key)] = rule.id
                self._by_slot[slot] = rule.id
                if map_name in self._lpm and rule.src_ip is not None:
                    self._lpm[map_name][rule.src_ip] = rule.id
                self._next_priority = max(self._next_priority, priority + 1)
                found.append(rule)
        self._settle_leftover_slots()
        self._exact4.retain(in_blocklist)  # ways whose BLOCKLIST entry is gone (a stop mid-removal)
        self._prefixh.retain(in_tries)
        self._matchh.retain(in_match)
        for inst in self._rules.values():
            self._stand_for_fragments(inst)
        self._fragments.prune()  # entries of rules that are gone, before publish() clears their bits
        self._n_shapes = self._dp.read_config()[0]
        self._pf.set_n_shapes(self._n_shapes)
        self._pf.set_match_rank(min(self._match_ranks.values(), default=abi.NO_MATCH))
        self._pf.publish()
        return found

    def _keep_leftover(self, map_name: MapName, key: bytes, raw: bytes, slot: int) -> None:
        """A decision's entry left by a persisted run: kept in force (its filter bits counted in), counted
        and expected as the decision set's entries are; its slot settled once every rule is adopted."""
        found = kernel_rules.rule_from_entry(map_name, key, abi.ACTION_DROP, {}, kernel_rules.CROWDSEC_RULE_ID)
        if found is None or found.src_ip is None:
            return
        if found.src_ip in self._leftover_decisions:  # the same source in two maps: not ours to have written
            self.generation += 1
            self._dp.map_delete(map_name, key)
            return
        _act, _own, origin, _slot, _prio, _own_slot, own_priority = abi.BLOCKLIST_VALUE.unpack(raw)
        expires = float(own_priority) if origin == abi.ORIGIN_DECISION else None
        self._pf.add(prefilter.source_atoms(map_name, found.src_ip))
        self._leftover_decisions[found.src_ip] = LeftoverDecision(map_name, key, slot, expires)
        self.side_counts[map_name] += 1
        if map_name == MapName.BLOCKLIST:
            self.side_entries[key] = raw

    def _settle_leftover_slots(self) -> None:
        """The leftovers' slots out of the free ones, unless out of range or an adopted rule's (then none:
        the decision set credits them to its own)."""
        n = self._dp.cfg.rule_slots
        used = {e.slot for e in self._leftover_decisions.values()}  # one, but for a damaged map
        bad = {s for s in used if not 0 <= s < n or s in self._by_slot}
        for slot in used - bad:
            if slot in self._free_slots:
                self._free_slots.remove(slot)
        if bad:
            for net, entry in list(self._leftover_decisions.items()):
                if entry.slot in bad:
                    self._leftover_decisions[net] = dataclasses.replace(entry, slot=-1)

    def has_leftover_decisions(self) -> bool:
        return bool(self._leftover_decisions)

    def take_leftover_decisions(self) -> dict[IPNetwork, LeftoverDecision]:
        """The decisions' entries adopt_existing kept, handed to their new owner (decision_set.py), which
        then holds their filter bits, counts and slots."""
        taken, self._leftover_decisions = self._leftover_decisions, {}
        return taken

    def release_slot(self, slot: int) -> None:
        """A slot reserve_slot or adopt_existing kept, free again (reused last, as a removed rule's)."""
        self._retired.pop(slot, None)
        if slot not in self._free_slots:
            self._free_slots.insert(0, slot)

    def drop_leftover_decisions(self) -> int:
        """The decisions' entries adopt_existing kept, deleted (no decision set will hold them: [crowdsec]
        is off); how many."""
        left = self.take_leftover_decisions()
        for net, entry in left.items():
            self.generation += 1
            self._dp.map_delete(entry.map_name, entry.key)
            self._pf.remove(prefilter.source_atoms(entry.map_name, net))  # after the entry went
            self.side_counts[entry.map_name] -= 1
            if entry.map_name == MapName.BLOCKLIST:
                self.side_entries.pop(entry.key, None)
        for slot in {e.slot for e in left.values()} - {-1}:
            self.release_slot(slot)
        if left:
            self._pf.publish()
        return len(left)

    # --- allowlist -------------------------------------------------------------
    def set_allowlist(self, entries: dict[IPNetwork, int]) -> None:
        """Make ALLOW4/ALLOW6 hold exactly ``entries`` (prefix -> reason code)."""
        for net, reason in entries.items():
            if self._allow.get(net) != reason:
                name, key = kernel_rules.allow_key(net)
                if net not in self._allow:
                    self._pf.add(prefilter.source_atoms("ALLOW", net))
                self._dp.map_update(name, key, abi.ALLOW_VALUE.pack(reason))
        for net in [n for n in self._allow if n not in entries]:
            name, key = kernel_rules.allow_key(net)
            self._dp.map_delete(name, key)
            self._pf.remove(prefilter.source_atoms("ALLOW", net))
        self._allow = dict(entries)

    def allowlist(self) -> dict[IPNetwork, int]:
        return dict(self._allow)

    # --- internals -------------------------------------------------------------
    def _take_priority(self) -> int:
        p = self._next_priority
        self._next_priority += 1
        if self._next_priority >= abi.MONITOR_RANK:
            raise RuleRefused("rule priorities exhausted: restart to renumber")
        return p

    def _install(self, rule: FilterRule, priority: int, take_over: str | None = None) -> bool:
        """Write ``rule``'s entries; False only for an external rule whose entry went first."""
        placement = kernel_rules.place(rule)
        shape_index = None
        key = placement.key
        if placement.shape is not None:
            shape_index = self._acquire_shape(placement.shape, rule.id)
            key = placement.match_key(shape_index)
        try:
            holder = self._by_key.get((placement.map_name, key))
            if holder is not None and holder != take_over:
                raise RuleRefused(_same_match(rule.id, holder))
            if not self._free_slots:
                raise RuleRefused(NO_SLOT)
            slot = self._free_slots[-1]
            self._clear_hits(slot)
            acting = self._acting(placement.map_name, rule, slot, priority)
            # An exact IPv4 source goes into EXACT4 as well, a source prefix into PREFIX4H/PREFIX6H,
            # when there is room.
            fast = self._inline_room(placement.map_name, key, rule, slot)
            atoms = _atoms(rule, placement, shape_index, fast)
            self.generation += 1
            if rule.external:  # another tool's entry: replaced in place, never re-created
                value = kernel_rules.value(rule, slot, priority, acting)
                if not self._take_in(key, value, fast, _rank(rule, priority), slot, atoms):
                    return False
            else:
                self._write_new(placement, key, rule, slot, priority, acting, fast, atoms, take_over)
        except Exception:
            if placement.shape is not None:
                self._release_shape(placement.shape)
            raise
        self._free_slots.pop()
        self._rules[rule.id] = _Installed(rule, placement, key, slot, priority, shape_index, atoms, fast)
        if take_over is not None:
            old = self._rules.pop(take_over)
            del self._by_key[(placement.map_name, key)]  # overwritten above, not deleted
            if old.exact4 and not fast:
                self._inline_remove(placement.map_name, key, rule)  # no free way: the map alone decides now
            self._pf.remove(old.atoms)
            self._match_ranks.pop(take_over, None)
            if old.placement.shape is not None:
                self._release_shape(old.placement.shape)
            self._free_slots.insert(0, old.slot)  # reused last: see _remove_entries
            self._by_slot.pop(old.slot, None)
            self._retired[old.slot] = old.rule
        self._by_key[(placement.map_name, key)] = rule.id
        self._by_slot[slot] = rule.id
        self._retired.pop(slot, None)
        if placement.map_name == MapName.MATCH:
            self._match_ranks[rule.id] = _rank(rule, priority)
            self._sync_match_rank()
        if placement.map_name in self._lpm and rule.src_ip is not None:
            self._lpm[placement.map_name][rule.src_ip] = rule.id
            self._refresh_covered(placement.map_name, rule.src_ip)
        self._stand_for_fragments(self._rules[rule.id])
        if take_over is not None:
            self._fragments.set(take_over, ())  # after the new rule stands for the keys they share
        return True

    def _install_exact(self, rule: FilterRule, placement: Placement, priority: int, holder: str | None) -> None:
        """_install of an exact IPv4 source of ironpost's own (BLOCKLIST, taking nothing over), its writes kept
        (the start's load into new maps: 8,744 of the bench's 10,000 rules): the same state and the same
        writes in the same order (BLOCKLIST's entry, then EXACT4's way), in fewer steps.  No shape, no trie,
        no acting rule; EXACT4's way placed in one pass (try_put); nothing kept can fail before the block's
        end, so there is nothing to undo."""
        key = placement.key
        if holder is not None:
            raise RuleRefused(_same_match(rule.id, holder))
        if not self._free_slots:
            raise RuleRefused(NO_SLOT)
        slot = self._free_slots.pop()
        self._clear_hits(slot)
        self.generation += 1
        self._dp.map_update(MapName.BLOCKLIST, key, kernel_rules.value(rule, slot, priority))
        fast = self._exact4.try_put(key, _rank(rule, priority), slot)
        assert rule.src_ip is not None
        atoms = prefilter.source_atoms(MapName.EXACT4 if fast else MapName.BLOCKLIST, rule.src_ip)
        self._pf.add(atoms)
        inst = self._rules[rule.id] = _Installed(rule, placement, key, slot, priority, None, atoms, fast)
        self._by_key[(MapName.BLOCKLIST, key)] = rule.id
        self._by_slot[slot] = rule.id
        self._retired.pop(slot, None)
        if self._fragments.holds(rule.id):
            self._stand_for_fragments(inst)

    def _write_new(
        self,
        placement: kernel_rules.Placement,
        key: bytes,
        rule: FilterRule,
        slot: int,
        priority: int,
        acting: tuple[FilterRule, int, int] | None,
        fast: bool,
        atoms: list[Atom],
        take_over: str | None,
    ) -> None:
        """An entry of ironpost's own rule, and its inline way; on an error the entry is back as it was
        (``take_over``'s rewritten, or none)."""
        self._pf.add(atoms)  # the filters let the entry be found before it exists
        if placement.map_name == MapName.MATCH:
            self._pf.lower_match_rank(_rank(rule, priority))
        wrote = False
        try:
            self._dp.map_update(placement.map_name, key, kernel_rules.value(rule, slot, priority, acting))
            wrote = True
            if fast:
                self._inline_put(placement.map_name, key, rule, _rank(rule, priority), slot)
        except Exception:
            if wrote:  # the entry back as it was
                if take_over is None:
                    self._dp.map_delete(placement.map_name, key)
                else:
                    self._write(self._rules[take_over])
            self._pf.remove(atoms)
            self._sync_match_rank()
            raise

    def _take_in(self, key: bytes, value: bytes, fast: bool, rank: int, slot: int, atoms: list[Atom]) -> bool:
        """Another tool's BLOCKLIST entry, in force as it wrote it: ours replaces it (never re-creates it),
        then the EXACT4 way and the filter bits that lead the program to it.  Written the other way round,
        the program could read the tool's value in between: rank 0, crediting slot 0, another rule's."""
        if not self._dp.map_replace(MapName.BLOCKLIST, key, value):
            return False
        if fast:
            self._exact4.put(key, rank, slot)
        self._pf.add(atoms)
        return True

    def _write(self, inst: _Installed) -> None:
        acting = self._acting(inst.placement.map_name, inst.rule, inst.slot, inst.priority)
        match = inst.placement.map_name == MapName.MATCH
        if match:
            self._pf.lower_match_rank(_rank(inst.rule, inst.priority))
        self.generation += 1
        value = kernel_rules.value(inst.rule, inst.slot, inst.priority, acting)
        try:
            if not inst.rule.external:
                self._dp.map_update(inst.placement.map_name, inst.key, value)
            elif not self._dp.map_replace(inst.placement.map_name, inst.key, value):
                # Another tool's entry is replaced, never re-created: gone, the next reconcile forgets it.
                return
        except Exception:
            if match:
                self._sync_match_rank()  # the rank as the maps still hold it
            raise
        if inst.exact4:
            self._inline_put(inst.placement.map_name, inst.key, inst.rule, _rank(inst.rule, inst.priority), inst.slot)
        if match:
            self._match_ranks[inst.rule.id] = _rank(inst.rule, inst.priority)
            self._stand_for_fragments(inst)
            self._sync_match_rank()

    # The inline tables in front of BLOCKLIST (EXACT4), the tries (PREFIX4H, PREFIX6H) and MATCH (MATCHH).
    def _inline_get(self, map_name: MapName, key: bytes, rule: FilterRule) -> tuple[int, int] | None:
        if map_name == MapName.BLOCKLIST:
            return self._exact4.get(key)
        if map_name == MapName.MATCH:
            return self._matchh.get(key)
        assert rule.src_ip is not None
        return self._prefixh.get(rule.src_ip)

    def _inline_room(self, map_name: MapName, key: bytes, rule: FilterRule, slot: int) -> bool:
        if map_name == MapName.BLOCKLIST:
            return self._exact4.has_room(key, slot)
        if map_name == MapName.MATCH:
            return self._matchh.has_room(key, slot)
        if map_name in self._lpm and rule.src_ip is not None:
            return self._prefixh.has_room(rule.src_ip, slot)
        return False

    def _inline_put(self, map_name: MapName, key: bytes, rule: FilterRule, rank: int, slot: int) -> None:
        if map_name == MapName.BLOCKLIST:
            self._exact4.put(key, rank, slot)
        elif map_name == MapName.MATCH:
            self._matchh.put(key, rank, slot)
        else:
            assert rule.src_ip is not None
            self._prefixh.put(rule.src_ip, rank, slot)

    def _inline_remove(self, map_name: MapName, key: bytes, rule: FilterRule) -> None:
        if map_name == MapName.BLOCKLIST:
            self._exact4.remove(key)
        elif map_name == MapName.MATCH:
            self._matchh.remove(key)
        else:
            assert rule.src_ip is not None
            self._prefixh.remove(rule.src_ip)

    def _stand_for_fragments(self, inst: _Installed) -> None:
        """FRAG_MATCH as ``inst`` (the rule now installed under its id) says: written after its MATCH entry."""
        keys = fragment_keys(inst.rule, inst.key) if inst.placement.map_name == MapName.MATCH else ()
        if not keys and not self._fragments.holds(inst.rule.id):
            return  # none now, none before: nothing to write
        value = kernel_rules.value(inst.rule, inst.slot, inst.priority)
        self._fragments.set(inst.rule.id, keys, _rank(inst.rule, inst.priority), value)

    def _sync_match_rank(self) -> None:
        """Publish MATCH's best rank once the maps hold it (after a write or a removal)."""
        self._pf.set_match_rank(min(self._match_ranks.values(), default=abi.NO_MATCH))

    def _acting(
        self, map_name: MapName, rule: FilterRule, slot: int, priority: int
    ) -> tuple[FilterRule, int, int] | None:
        """In an LPM trie, the best-ranked rule among the prefixes covering ``rule``'s
        (drop before monitor, then list order); None when that is the rule itself."""
        index = self._lpm.get(map_name)
        if index is None or rule.src_ip is None:
            return None
        best = (_rank(rule, priority), rule, slot, priority)
        for rule_id in index.covering(rule.src_ip):
            if rule_id not in self._rules:
                continue  # the old prefix of a rule update() moves, about to go
            other = self._rules[rule_id]
            rank = _rank(other.rule, other.priority)
            if rank < best[0]:
                best = (rank, other.rule, other.slot, other.priority)
        return None if best[1] is rule else best[1:]

    def _refresh_covered(self, map_name: MapName, prefix: IPNetwork) -> None:
        """Rewrite the entries of prefixes strictly inside ``prefix``: their decider may have changed."""
        for rule_id in self._lpm[map_name].covered(prefix):
            self._write(self._rules[rule_id])

    def _uninstall(self, inst: _Installed) -> None:
        del self._rules[inst.rule.id]
        self._remove_entries(inst)

    def _remove_entries(self, inst: _Installed, keep_entry: bool = False) -> None:
        self.generation += 1
        name = inst.placement.map_name
        src = inst.rule.src_ip
        if name in self._lpm and src is not None and self._lpm[name].get(src) == inst.rule.id:
            # Narrower prefixes this one decided for get their new decider first.
            del self._lpm[name][src]
            self._refresh_covered(name, src)
        if self._by_key.get((inst.placement.map_name, inst.key)) == inst.rule.id:
            if inst.exact4:
                self._inline_remove(inst.placement.map_name, inst.key, inst.rule)  # what the program reads goes first
            if not keep_entry:
                self._dp.map_delete(inst.placement.map_name, inst.key)
            del self._by_key[(inst.placement.map_name, inst.key)]
        if inst.rule.id not in self._rules:  # else an update: the new rule stands for its keys already
            self._fragments.set(inst.rule.id, ())
        self._pf.remove(inst.atoms)  # after the entries are gone
        # An update installs the new entry under the same id before the old one goes: the rank kept
        # for that id is then the new entry's, and stays.
        current = self._rules.get(inst.rule.id)
        if current is None or current.placement.map_name != MapName.MATCH:
            if self._match_ranks.pop(inst.rule.id, None) is not None:
                self._sync_match_rank()
        else:
            self._sync_match_rank()
        if inst.placement.shape is not None:
            self._release_shape(inst.placement.shape)
        if self._by_slot.get(inst.slot) == inst.rule.id:
            del self._by_slot[inst.slot]
        # Events already in the ring buffer carry this slot: keep naming this rule, and give the
        # slot out again only after every other free one, or they would name the next rule added.
        self._retired[inst.slot] = inst.rule
        self._free_slots.insert(0, inst.slot)
        if not keep_entry and self._by_key.get((name, inst.key)) is None:
            for let_go in self.on_removed:  # the key is free: what waits for it is written now
                let_go(name, inst.key)

    def _acquire_shape(self, shape: Shape, rule_id: str) -> int:
        if shape in self._shapes:
            index, users = self._shapes[shape]
            self._shapes[shape] = (index, users + 1)
            return index
        if not self._free_shapes:
            raise RuleRefused(
                f"rule '{rule_id}' needs a new rule shape (fields and prefix lengths) but all "
                f"{self._dp.cfg.shapes_max} are in use: combine rules into fewer shapes"
            )
        index = self._free_shapes.pop()
        self._dp.map_update(MapName.SHAPES, index.to_bytes(4, "little"), shape.pack())
        self._shapes[shape] = (index, 1)
        if index + 1 > self._n_shapes:
            self._n_shapes = index + 1
            self._pf.set_n_shapes(self._n_shapes)
        return index

    def _release_shape(self, shape: Shape) -> None:
        index, users = self._shapes[shape]
        if users > 1:
            self._shapes[shape] = (index, users - 1)
            return
        del self._shapes[shape]
        self._dp.map_update(MapName.SHAPES, index.to_bytes(4, "little"), kernel_rules.UNUSED_SHAPE)
        self._free_shapes.append(index)
        self._free_shapes.sort(reverse=True)
        n = max((i for i, _ in self._shapes.values()), default=-1) + 1
        if n != self._n_shapes:
            self._n_shapes = n
            self._pf.set_n_shapes(n)


def _atoms(rule: FilterRule, placement: Placement, shape_index: int | None, exact4: bool = False) -> list[Atom]:
    """``exact4``: the entry is in an inline table too (EXACT4, PREFIX4H, PREFIX6H, MATCHH)."""
    if placement.shape is None:
        assert rule.src_ip is not None
        name = placement.map_name
        if exact4:
            name = MapName.EXACT4 if name == MapName.BLOCKLIST else prefixh.map_of(rule.src_ip)
        return prefilter.source_atoms(name, rule.src_ip)
    assert shape_index is not None
    return prefilter.shape_atoms(
        shape_index, placement.shape.family, rule.src_ip, rule.dst_ip, rule.dst_port, rule.protocol, exact4
    )


def _same_match(rule_id: str, holder: str) -> str:
    return (
        f"rule '{rule_id}' matches exactly the packets rule '{holder}' matches: change that rule "
        "(x switches drop and monitor in the console), or delete it first"
    )


def _rank(rule: FilterRule, priority: int) -> int:
    return priority if rule.action is Action.DROP else priority | abi.MONITOR_RANK


def _prefixlen(mask: bytes) -> int:
    return bin(int.from_bytes(mask, "big")).count("1")
