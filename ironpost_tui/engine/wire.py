"""The console's two processes talk over one socket pair: what crosses it and how.

The console (engine/remote.py) asks, the engine process (engine/served.py) answers, and logs what it
logs meanwhile.  Each message is a frame: a 4-byte length, then a pickle.  Both ends are the same
program, forked from one process; the socket pair is made before the fork, is reachable by no other
process (an unnamed pair, closed on exec) and is the only input either end reads from the other.

A frame's value is one of:
* from the console, a Call and its arguments;
* from the engine, a Said (what the frame is) and its value.

Errors cross as ``Raised`` (their class's name, message, title, exit status), not pickled: the
console raises the same IronpostError class (LockoutRefused stays LockoutRefused, so the rule editor
offers to force), and never a class from outside ironpost_tui.
"""

from __future__ import annotations

import copyreg
import importlib
import io
import ipaddress
import logging
import pickle
import socket
import struct
from dataclasses import dataclass
from typing import Any

from ironpost_tui import collector
from ironpost_tui.config.settings import ConsoleSettings
from ironpost_tui.engine.feed import RulesHead, SourceInfo, replaced_at
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel.record_event import Batch, RecordEvent
from ironpost_tui.model import RuleStatus, StrEnum
from ironpost_tui.text import visible

_LENGTH = struct.Struct("!I")
FRAME_MAX = 256 * 1024 * 1024  # far above any poll's events (a ring holds 4,096); a longer one is a broken peer


class Call(StrEnum):
    """What the console asks of the engine process: the Source protocol and the console's extras."""

    START = "start"
    POLL = "poll"
    ADD_RULE = "add_rule"
    UPDATE_RULE = "update_rule"
    DELETE_RULE = "delete_rule"
    PANIC = "panic"
    RELOAD = "reload"
    KEEP_ENFORCING = "keep_enforcing"
    CLOSE = "close"


class Said(StrEnum):
    """What a frame from the engine process is."""

    CONFIGURED = "configured"  # the configuration is loaded and the engine is starting: Configured
    FAILED = "failed"  # the run ended before that: Raised
    RETURNED = "returned"  # a Call's value
    RAISED = "raised"  # a Call's error: Raised
    LOG = "log"  # a log record's attributes


@dataclass(frozen=True)
class Configured:
    """What the console needs from the configuration the engine process loaded."""

    console: ConsoleSettings
    log_level: str
    log_format: str
    info: SourceInfo


class EngineFault(Exception):
    """An error in the engine process that was no IronpostError (its type and message), raised in the
    console as a plain Exception, as one process raised it: a poll that fails so is retried."""


@dataclass(frozen=True)
class Raised:
    module: str
    name: str
    message: str
    title: str
    exit_status: int

    @classmethod
    def of(cls, exc: BaseException) -> Raised:
        if isinstance(exc, IronpostError):
            kind = type(exc)
            return cls(kind.__module__, kind.__qualname__, exc.message, exc.title, int(exc.exit_status))
        return cls("", "", f"{type(exc).__name__}: {exc}", "Error", int(ExitStatus.ERROR))

    def error(self) -> Exception:
        """The same IronpostError class when it is one of ironpost_tui's; IronpostError for another name;
        EngineFault for an error that was no IronpostError (the console retries a poll on those)."""
        if not self.module:
            return EngineFault(self.message)
        kind: type[IronpostError] = IronpostError
        if self.module.startswith("ironpost_tui.") and "." not in self.name:
            try:
                found = getattr(importlib.import_module(self.module), self.name, None)
            except ImportError:
                found = None
            if isinstance(found, type) and issubclass(found, IronpostError):
                kind = found
        exc = kind.__new__(kind)  # not kind(...): a subclass's __init__ may take other arguments
        IronpostError.__init__(exc, self.message, self.title)
        exc.exit_status = ExitStatus(self.exit_status) if self.exit_status in set(ExitStatus) else ExitStatus.ERROR
        return exc


# --- the rule table: its head first, then whole, then what changed -------------------------
# A poll's Update carries the whole table at each sample (10,000 rules: a megabyte of pickle, a tenth
# of a second to make and read), and between two samples nearly every status is the very object it
# was (engine/snapshot.py keeps them).  After the first, a table crosses as a sequence of positions
# in the last one sent (an int) and new statuses; the table itself when nothing changed at all.  When
# the same rules are in the same places and a few statuses changed (a flood's rule counting hits, each
# second), only those cross, with their positions (TablePatch): 10,000 positions made, pickled and read
# each second were most of what a flood's table cost both processes.
#
# The first table, when long, crosses as its head (feed.RulesHead: the rows a screen shows and the
# counts), and the whole is owed to the next poll, which the console makes at once: the first attached
# frame is drawn while the rest crosses (10,000 rules: some 0.12 s sooner, the bench's console line).
HEAD_ROWS = 500  # more than a maximized rules pane shows on a tall terminal


@dataclass(frozen=True)
class TableChange:
    items: tuple[int | RuleStatus, ...] | None  # per rule: its position in the last table, or its new
    # status; None: the last table itself (an empty tuple is an empty table: after a panic)


@dataclass(frozen=True)
class TablePatch:
    """The last table with the statuses at these positions replaced (the same rule's, in the same place)."""

    changes: tuple[tuple[int, RuleStatus], ...]


Table = tuple[RuleStatus, ...] | TableChange | TablePatch | RulesHead | None  # a table as it crosses


class TableSender:
    """The engine process's side: the last table sent, by object."""

    def __init__(self, head_rows: int = HEAD_ROWS) -> None:
        self._head_rows = head_rows
        self._last: tuple[RuleStatus, ...] | None = None
        self._at: dict[int, int] | None = None  # id() of each status of the last table -> its position (made
        # when a change needs them)
        self._owed: tuple[RuleStatus, ...] | None = None  # a head was sent: the whole goes next

    def encode(self, rules: tuple[RuleStatus, ...] | None) -> Table:
        if rules is None:
            rules = self._owed  # the poll after a head: the table it came from, unchanged since
            if rules is None:
                return None
        self._owed = None
        if self._last is None and len(rules) > self._head_rows:
            head = RulesHead.of(rules, self._head_rows)
            self._last, self._at = head.rows, {id(r): i for i, r in enumerate(head.rows)}
            self._owed = rules
            return head
        last, at = self._last, self._at
        if rules is last:  # the table the snapshot kept (nothing changed): its positions are known already
            return TableChange(None)
        self._last, self._at = rules, None
        if last is None:
            return rules
        if len(rules) == len(last):
            changed = replaced_at(rules, last)
            if not changed:  # the same statuses in a new tuple: the console keeps the one it has
                return TableChange(None)
            if len(changed) <= len(rules) // 2 and all(rules[i].rule.id == last[i].rule.id for i in changed):
                return TablePatch(tuple((i, rules[i]) for i in changed))
        if at is None:
            at = {id(r): i for i, r in enumerate(last)}
        get = at.get
        return TableChange(tuple(r if (i := get(id(r))) is None else i for r in rules))


class TableReceiver:
    """The console's side: the table rebuilt from the last one; the same tuple when nothing changed; a
    head as itself (the whole follows)."""

    def __init__(self) -> None:
        self._last: tuple[RuleStatus, ...] = ()

    def decode(self, value: Table) -> tuple[RuleStatus, ...] | RulesHead | None:
        if value is None:
            return None
        if isinstance(value, RulesHead):
            self._last = value.rows
            return value
        if isinstance(value, TableChange):
            if value.items is None:
                return self._last
            last = self._last
            value = tuple(last[x] if isinstance(x, int) else x for x in value.items)
        elif isinstance(value, TablePatch):
            rows = list(self._last)
            for i, status in value.changes:
                rows[i] = status
            value = tuple(rows)
        self._last = value
        return value


# --- log records ---------------------------------------------------------------------------
_PLAIN = (str, int, float, bool, type(None))


_NOT_SENT = frozenset({"args", "exc_info", "msg", "stack_info"})


def record_attrs(record: logging.LogRecord) -> dict[str, Any]:
    """A record as values the console can read: the message formatted, the traceback as text (control
    characters escaped, as the text format escapes a traceback), each extra (an alert, an audit entry)
    as itself when it pickles, else as text."""
    attrs: dict[str, Any] = {}
    for key, value in vars(record).items():
        if key in _NOT_SENT:
            continue
        if not isinstance(value, _PLAIN):
            try:
                dumps(value)
            except Exception:
                value = str(value)
        attrs[key] = value
    attrs["msg"], attrs["args"] = record.getMessage(), None
    text = record.exc_text or (logging.Formatter().formatException(record.exc_info) if record.exc_info else None)
    if text:
        attrs["exc_text"] = visible(text, keep="\n")
    if record.stack_info:
        attrs["stack_info"] = visible(record.stack_info, keep="\n")
    return attrs


# --- events: kept as their records' bytes across the socket ----------------------------------
def _record_event(body: bytes, batch: Batch) -> RecordEvent:
    event: RecordEvent = tuple.__new__(RecordEvent, (body, batch))
    return event


def _reduce_record(event: RecordEvent) -> tuple[Any, tuple[Any, ...]]:
    return _record_event, (tuple.__getitem__(event, 0), tuple.__getitem__(event, 1))


def _reduce_batch(batch: Batch) -> tuple[Any, tuple[Any, ...]]:
    """A batch once per frame (pickle's memo), without its address caches: the console makes its own."""
    return Batch, (batch.offset, batch.rule_ids, {}, {})


# Networks as (integer, prefix length): rebuilt without parsing text (a third of a 10,000-rule table's read).
def _network4(packed: tuple[int, int]) -> ipaddress.IPv4Network:
    return ipaddress.IPv4Network(packed)


def _network6(packed: tuple[int, int]) -> ipaddress.IPv6Network:
    return ipaddress.IPv6Network(packed)


def _reduce_network4(net: ipaddress.IPv4Network) -> tuple[Any, tuple[Any, ...]]:
    return _network4, ((int(net.network_address), net.prefixlen),)


def _reduce_network6(net: ipaddress.IPv6Network) -> tuple[Any, tuple[Any, ...]]:
    return _network6, ((int(net.network_address), net.prefixlen),)


_TABLE = copyreg.dispatch_table.copy()
_TABLE[RecordEvent] = _reduce_record
_TABLE[Batch] = _reduce_batch
_TABLE[ipaddress.IPv4Network] = _reduce_network4
_TABLE[ipaddress.IPv6Network] = _reduce_network6


def dumps(value: object) -> bytes:
    out = io.BytesIO()
    p = pickle.Pickler(out, protocol=pickle.HIGHEST_PROTOCOL)
    p.dispatch_table = _TABLE
    p.dump(value)
    return out.getvalue()


# --- frames ----------------------------------------------------------------------------------
def send(sock: socket.socket, value: object) -> None:
    data = dumps(value)
    sock.sendall(_LENGTH.pack(len(data)) + data)


def recv(sock: socket.socket) -> Any:
    """The next frame's value; None when the other end has closed (or died)."""
    head = _exactly(sock, _LENGTH.size)
    if head is None:
        return None
    (n,) = _LENGTH.unpack(head)
    if n > FRAME_MAX:
        raise IronpostError(f"the other process sent a frame of {n:,} bytes (at most {FRAME_MAX:,}): stopping")
    body = _exactly(sock, n)
    if body is None:
        return None
    # The cyclic collector held off while a frame's objects are made: a 10,000-rule table is some 60,000
    # (rules, networks, addresses), nearly all kept, and the collector would walk them and the console's
    # heap every 700 of them (the console's first table: 70-110 ms to read with it on, 25 ms off).
    with collector.held():
        return pickle.loads(body)  # from our own forked process only (see the module's docstring)


def _exactly(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray()
    while len(buf) < n:
        try:
            chunk = sock.recv(min(n - len(buf), 1 << 20))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return bytes(buf)
