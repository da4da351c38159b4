"""Auto-blocks kept across restarts: an append-only journal in the state directory, never the configuration.

``<state-dir>/<iface>.auto.jsonl``, one JSON object per line::

    {"op": "add", "rule": {"id": "auto-port_scan-198.18.0.9", "action": "drop", "src_ip": "198.18.0.9/32",
                           "expires_at": 1714565000.5, "auto": true, "description": "auto-block: ..."}}
    {"op": "delete", "id": "auto-port_scan-198.18.0.9"}

An add of an id already live replaces it.  Edits are buffered and written by ``flush()``: one
``write`` and one ``fsync`` per call, whatever the number of lines, so a save costs what the
batch holds, not what the journal holds.  ``open()`` (at start) reads the journal, drops expired
and deleted rules and lines it cannot read (a line cut short by ``kill -9`` mid-write: skipped with
a warning, never a failed start), and rewrites it atomically with only the live adds (compaction);
it is compacted again when it grows past ``COMPACT_FACTOR`` times the live set.

The file is created mode 0600 and never opened through a symbolic link (``O_NOFOLLOW``): a link at
the journal's path is not read and is replaced by a regular file.  The directory must belong to
this user and be writable by nobody else.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import os
import stat
from pathlib import Path
from typing import Any

from ironpost_tui.config.store import atomic_write
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import rule_dict

log = logging.getLogger(__name__)

COMPACT_FACTOR = 4  # compact when the journal holds this many lines per live rule...
COMPACT_MIN_LINES = 4_096  # ...and at least this many


class JournalError(IronpostError):
    title = "Auto-block journal"


def journal_path(state_dir: Path, iface: str) -> Path:
    return state_dir / f"{iface}.auto.jsonl"


def encode_add(rule: FilterRule) -> bytes:
    return json.dumps({"op": "add", "rule": rule_dict(rule)}, sort_keys=True, separators=(",", ":")).encode() + b"\n"


def encode_delete(rule_id: str) -> bytes:
    return json.dumps({"op": "delete", "id": rule_id}, separators=(",", ":")).encode() + b"\n"


def decode_rule(d: dict[str, Any]) -> FilterRule:
    """A rule from ``rules.audit.rule_dict``'s form; ValueError/TypeError/KeyError when it is not one."""

    def net(key: str) -> Any:
        value = d.get(key)
        return None if value is None else ipaddress.ip_network(str(value), strict=False)

    def integer(key: str) -> int | None:
        value = d.get(key)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool):
            raise TypeError(f"{key} is not an integer")
        return value

    rule_id = d["id"]
    expires = d.get("expires_at")
    if not isinstance(rule_id, str) or not rule_id:
        raise TypeError("id is not a string")
    if expires is not None and (not isinstance(expires, int | float) or isinstance(expires, bool)):
        raise TypeError("expires_at is not a number")
    return FilterRule(
        id=rule_id,
        action=Action(d.get("action", "drop")),
        src_ip=net("src_ip"),
        dst_ip=net("dst_ip"),
        dst_port=integer("dst_port"),
        protocol=integer("protocol"),
        description=str(d.get("description", "")),
        expires_at=None if expires is None else float(expires),
        auto=bool(d.get("auto", False)),
    )


class AutoJournal:
    """The live auto-blocks of one interface and the journal that keeps them."""

    def __init__(self, path: Path | None) -> None:
        self.path = None if path is None else Path(path)  # None: kept in memory only
        self._live: dict[str, FilterRule] = {}
        self._buffer: list[bytes] = []
        self._fd: int | None = None
        self._lines = 0  # lines in the file
        self._torn = False  # a write failed part-way: the next flush rewrites the journal whole
        self.skipped = 0  # unreadable lines found by open()

    # --- reading ---------------------------------------------------------------
    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._live

    def __len__(self) -> int:
        return len(self._live)

    def rules(self) -> list[FilterRule]:
        return list(self._live.values())

    # --- lifecycle -------------------------------------------------------------
    def open(self, now: float) -> list[FilterRule]:
        """Read what the journal holds, compact it, and return the rules live at ``now``."""
        self._live = {}
        self.skipped = 0
        if self.path is None:
            return []
        self._check_directory()
        for number, line in enumerate(self._read_lines(), 1):
            try:
                entry = json.loads(line)
                if entry["op"] == "add":
                    rule = decode_rule(entry["rule"])
                    self._live[rule.id] = rule
                elif entry["op"] == "delete":
                    self._live.pop(str(entry["id"]), None)
                else:
                    raise ValueError(f"unknown op {entry['op']!r}")
            except (ValueError, TypeError, KeyError, AttributeError) as exc:
                self.skipped += 1
                log.warning("%s line %d skipped (cut short or not a journal line): %s", self.path, number, exc)
        expired = [rid for rid, r in self._live.items() if r.expires_at is not None and r.expires_at <= now]
        for rule_id in expired:
            del self._live[rule_id]
        self._compact()
        return self.rules()

    def close(self) -> None:
        try:
            self.flush()
        finally:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None

    def _check_directory(self) -> None:
        assert self.path is not None
        directory = self.path.parent
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        st = os.stat(directory)
        if st.st_uid != os.geteuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
            raise JournalError(
                f"{directory} is writable by another user than this one (owner uid {st.st_uid}, mode "
                f"{stat.filemode(st.st_mode)}): the auto-block journal is not kept there; "
                "use a directory only this user can write (chmod 700), or another --state-dir"
            )

    def _read_lines(self) -> list[bytes]:
        assert self.path is not None
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK)  # a FIFO never blocks
        except FileNotFoundError:
            return []
        except OSError as exc:  # ELOOP: a symbolic link
            log.warning("%s is not a regular file (%s): not read; replaced by a new journal", self.path, exc)
            return []
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                log.warning("%s is not a regular file: not read; replaced by a new journal", self.path)
                return []
            data = f.read()
        return [line for line in data.split(b"\n") if line.strip()]

    def _compact(self) -> None:
        """Rewrite the journal as the live adds only (atomic), and reopen it for appending."""
        assert self.path is not None
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        lines = [encode_add(r) for r in self._live.values()]
        atomic_write(self.path, b"".join(lines))  # a link at the path is replaced, never followed
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC)
        os.fchmod(self._fd, 0o600)
        self._lines = len(lines)
        self._buffer = []

    # --- editing ---------------------------------------------------------------
    def add(self, rule: FilterRule) -> None:
        """Keep ``rule`` (replacing a live one with its id), written at the next flush()."""
        self._live[rule.id] = rule
        if self.path is not None:
            self._buffer.append(encode_add(rule))

    def delete(self, rule_id: str) -> None:
        if self._live.pop(rule_id, None) is not None and self.path is not None:
            self._buffer.append(encode_delete(rule_id))

    def flush(self) -> None:
        """Write what was edited since the last flush: one write and one fsync, nothing when nothing changed."""
        if not (self._buffer or self._torn) or (self._fd is None and not self._torn):
            return
        data = b"".join(self._buffer)
        self._buffer = []
        try:
            if self._torn:
                self._compact()
            else:
                self._write(data)
                self._lines += data.count(b"\n")
                if self._lines > max(COMPACT_MIN_LINES, COMPACT_FACTOR * len(self._live)):
                    self._compact()
            self._torn = False
        except OSError as exc:
            self._torn = True
            raise JournalError(f"cannot write the auto-block journal {self.path}: {exc}") from exc

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        view = memoryview(data)
        while view:
            view = view[os.write(self._fd, view) :]
        os.fsync(self._fd)
