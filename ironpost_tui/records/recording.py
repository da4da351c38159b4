"""Record what a source showed, and play it back: gzip-compressed JSON lines.

One object per line, each with ``kind`` and ``t`` (seconds since the start):
``start`` (the SourceInfo), ``sample``, ``events``, ``alert``, ``rules``,
``notice``, and a final ``truncated`` if a size bound was reached.  Playing
reads through ``reading``: bounded, incremental, every record checked.
"""

from __future__ import annotations

import dataclasses
import gzip
import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from ironpost_tui import files
from ironpost_tui.detectors import AlertChange
from ironpost_tui.engine.feed import SourceInfo, Update
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import FilterRule, PacketEvent, RuleStatus, StatsSample
from ironpost_tui.records import codec
from ironpost_tui.records.reading import (
    FORMAT_VERSION,
    MAX_DECOMPRESSED_BYTES,
    MAX_LINE_BYTES,
    BadRecording,
    Record,
    RecordingError,
    RecordReader,
    scan,
)
from ironpost_tui.triage.json_form import top_to_json
from ironpost_tui.triage.values import TopLists, TopSnapshot

log = logging.getLogger(__name__)
DEFAULT_MAX_BYTES = 100 * 1024 * 1024
# What one poll of a replay plays at most: the records due past either limit play at the next polls (which come at
# once: they are due).  A recording whose every record is at one instant was played in one poll, whole: 2 million
# events and some 800 MB from a file under 1 MB, until session 26 (an attacker's review).
MAX_EVENTS_PER_POLL = 20_000
MAX_RECORDS_PER_POLL = 5_000


TOP_EVERY = 1.0  # seconds between two top-talker records (the engine reads them twice a second)
TOP_ROWS = 20  # rows per list and window recorded: what the pane shows first


def _trimmed(top: TopSnapshot) -> TopSnapshot:
    def cut(lists: TopLists) -> TopLists:
        return TopLists(lists.window, lists.sources[:TOP_ROWS], lists.destinations[:TOP_ROWS], lists.ports[:TOP_ROWS])

    windows = tuple(cut(w) for w in top.windows)
    listed = {r.key for w in windows for r in w.sources}
    return TopSnapshot(top.at, windows, tuple(d for d in top.details if d.key in listed))


class Recorder:
    """Writes updates as they come; stops (with a last ``truncated`` line) at max_bytes.

    The file is made by ironpost's one writer (``ironpost_tui.files.create_replacing``): a new
    file, mode 0600, the invoking user's under sudo, renamed into place before the first line,
    so a link planted at the path is replaced, never followed, and a recording cut short by a
    crash is still there under its name.
    """

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self.path = path
        self.max_bytes = max_bytes
        try:
            self._raw: IO[bytes] = files.create_replacing(path, owner=files.invoking_user())
        except OSError as exc:
            raise RecordingError(f"cannot record to {path}: {exc.strerror or exc}") from None
        self._gz = gzip.GzipFile(fileobj=self._raw, mode="wb", compresslevel=6)
        self._t0 = time.monotonic()
        self._full = False
        self._top_at = -TOP_EVERY  # when the top talkers were last written
        self._plain = 0  # bytes before compression: a replay refuses more than MAX_DECOMPRESSED_BYTES

    def start(self, info: SourceInfo) -> None:
        """The first line: what was recorded.  Times count from here."""
        self._t0 = time.monotonic()
        self._write({"kind": "start", "v": FORMAT_VERSION, "info": dataclasses.asdict(info)})

    def _write(self, obj: dict[str, Any]) -> None:
        if self._full:
            return
        obj.setdefault("t", round(time.monotonic() - self._t0, 6))
        line = json.dumps(obj, separators=(",", ":")).encode() + b"\n"
        if len(line) > MAX_LINE_BYTES:
            events = obj.get("events")
            if obj["kind"] == "events" and isinstance(events, list) and len(events) > 1:
                # A replay refuses longer lines: a huge poll goes in two records (and those in two...).
                half = len(events) // 2
                self._write({**obj, "events": events[:half]})
                self._write({**obj, "events": events[half:]})
            else:
                self._stop(obj["t"], f"a {obj['kind']} record of {len(line)} bytes, more than a replay reads")
            return
        self._gz.write(line)
        self._plain += len(line)
        if self._raw.tell() >= self.max_bytes:
            self._stop(obj["t"], f"{self.max_bytes} bytes")
        elif self._plain >= MAX_DECOMPRESSED_BYTES - MAX_LINE_BYTES:
            self._stop(obj["t"], f"{self._plain} bytes uncompressed, near what a replay reads")

    def _stop(self, t: float, why: str) -> None:
        self._gz.write(json.dumps({"kind": "truncated", "t": t}).encode() + b"\n")
        self._full = True
        log.warning("recording %s reached %s: recording stopped", self.path, why)

    def write(self, update: Update) -> None:
        if update.sample is not None:
            self._write({"kind": "sample", "sample": codec.sample_to_json(update.sample)})
        if update.events:
            self._write({"kind": "events", "events": [codec.event_to_json(e) for e in update.events]})
        for change in update.alerts:
            self._write({"kind": "alert", "change": codec.change_to_json(change)})
        if update.rules is not None:
            self._write({"kind": "rules", "rules": [codec.status_to_json(s) for s in update.rules]})
        if update.top is not None and update.at - self._top_at >= TOP_EVERY:
            self._top_at = update.at
            self._write({"kind": "top", "top": top_to_json(_trimmed(update.top))})
        for notice in update.notices:
            self._write({"kind": "notice", "text": notice})

    def rule_change(self, what: str, rule: FilterRule) -> None:
        self._write({"kind": "rule_change", "what": what, "rule": codec.rule_to_json(rule)})

    def close(self) -> None:
        self._gz.close()
        self._raw.close()


class ReplaySource:
    """Plays a recording back at ``speed``× with pause and seek; read-only; no root.

    The file is checked whole once, in bounded memory (``reading.scan``), then
    read again as it plays: never all of it in memory.  A seek backwards reads
    from the start again.  Only RecordingError (BadRecording) leaves here.
    """

    def __init__(self, path: Path, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        try:
            self._raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - closed in close()
        except OSError as exc:
            raise BadRecording(f"cannot read {path}: {exc.strerror or exc}") from None
        try:
            self.info, self.duration = scan(path, self._raw)
            self._reader = RecordReader(path, self._raw)
            self._next = self._reader.next()
        except BaseException:
            self._raw.close()
            raise
        self.path = path
        self.speed = speed
        self._clock = clock
        self._at = 0.0  # recording time shown so far
        self._anchor = (clock(), 0.0)  # (clock, recording time) when playing (re)started
        self.paused = False
        self._reset = False
        self._lock = threading.Lock()
        self._wall0 = self.info.started_at

    # --- controls --------------------------------------------------------------
    def pause(self, paused: bool = True) -> None:
        with self._lock:
            if paused == self.paused:
                return
            self.paused = paused
            self._anchor = (self._clock(), self._at)

    def set_speed(self, speed: float) -> None:
        with self._lock:
            self._anchor = (self._clock(), self._at)
            self.speed = speed

    def seek(self, t: float) -> None:
        """Jump to recording time t (backwards too: the next update says reset)."""
        with self._lock:
            t = max(0.0, min(t, self.duration))
            if t < self._at:
                self._reset = True  # the next poll reads from the start
            self._at = t
            self._anchor = (self._clock(), t)

    @property
    def position(self) -> float:
        return self._at

    def now(self) -> float:
        return self._wall0 + self._at

    # --- Source ----------------------------------------------------------------
    def _target(self) -> float:
        if self.paused:
            return self._at
        clock0, at0 = self._anchor
        return min(self.duration, at0 + (self._clock() - clock0) * self.speed)

    def poll(self, timeout: float) -> Update:
        with self._lock:
            target = self._target()
            due = self._next is not None and self._next.t <= target
            if not due and not self._reset:
                # Nothing to play yet: wait like a live poll does.  Paused or at the
                # end, the whole timeout (returning at once would make a busy loop).
                wait = timeout
                if not self.paused and self._next is not None:
                    wait = min(timeout, (self._next.t - target) / max(self.speed, 1e-9))
                self._lock.release()
                try:
                    time.sleep(max(0.0, wait))
                finally:
                    self._lock.acquire()
                target = self._target()
            return self._play_until(target)

    def _play_until(self, target: float) -> Update:
        events: list[PacketEvent] = []
        alerts: list[AlertChange] = []
        notices: list[str] = []
        sample = None
        rules = None
        top = None
        # After a backward seek this plays from the start again: the update
        # carries the whole state as of target, and says reset.
        reset, self._reset = self._reset, False
        try:
            if reset:
                self._reader.close()
                self._reader = RecordReader(self.path, self._raw)
                self._next = self._reader.next()
            played = 0
            while self._next is not None and self._next.t <= target:
                rec = self._next
                self._next = self._reader.next()
                sample, rules = self._apply(rec, events, alerts, notices, sample, rules)
                top = rec.value if rec.kind == "top" else top
                played += 1
                if len(events) >= MAX_EVENTS_PER_POLL or played >= MAX_RECORDS_PER_POLL:
                    # The rest at the next polls: they are due, paused or not, since the position is the target
                    # (a position set back to the last record played left a paused seek short of its target).
                    break
        except RecordingError as exc:  # the file changed under us after the check
            log.warning("%s", exc.message)
            notices.append(f"replay stopped: {exc.message}")
            self._next = None
        self._at = target
        return Update(
            events=tuple(events),
            sample=sample,
            alerts=tuple(alerts),
            rules=rules,
            notices=tuple(notices),
            at=target,
            reset=reset,
            top=top,
        )

    @staticmethod
    def _apply(
        rec: Record,
        events: list[PacketEvent],
        alerts: list[AlertChange],
        notices: list[str],
        sample: StatsSample | None,
        rules: tuple[RuleStatus, ...] | None,
    ) -> tuple[StatsSample | None, tuple[RuleStatus, ...] | None]:
        if rec.kind == "sample":
            sample = rec.value
        elif rec.kind == "events":
            events.extend(rec.value)
        elif rec.kind == "alert":
            alerts.append(rec.value)
        elif rec.kind == "rules":
            rules = rec.value
        elif rec.kind in ("notice", "rule_change"):
            notices.append(rec.value)
        return sample, rules

    def _read_only(self) -> IronpostError:
        return IronpostError("a replay is read-only: rules cannot be changed")

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        raise self._read_only()

    def update_rule(self, rule: FilterRule, force: bool = False, expected: FilterRule | None = None) -> None:
        raise self._read_only()

    def delete_rule(self, rule_id: str) -> FilterRule:
        raise self._read_only()

    def panic(self) -> list[FilterRule]:
        raise self._read_only()

    def reload(self) -> None:
        raise self._read_only()

    def close(self) -> None:
        self._reader.close()
        self._raw.close()
