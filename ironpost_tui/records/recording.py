"""Record what a source showed, and play it back: gzip-compressed JSON lines.

One object per line, each with ``kind`` and ``t`` (seconds since the start):
``start`` (the SourceInfo), ``sample``, ``events``, ``alert``, ``rules``,
``notice``, and a final ``truncated`` if the size bound was reached.
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
from ironpost_tui.engine.feed import SourceInfo, Update
from ironpost_tui.errors import IronpostError
from ironpost_tui.model import FilterRule
from ironpost_tui.records import codec

log = logging.getLogger(__name__)
FORMAT_VERSION = 1
DEFAULT_MAX_BYTES = 100 * 1024 * 1024


class RecordingError(IronpostError):
    title = "Recording"


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

    def start(self, info: SourceInfo) -> None:
        """The first line: what was recorded.  Times count from here."""
        self._t0 = time.monotonic()
        self._write({"kind": "start", "v": FORMAT_VERSION, "info": dataclasses.asdict(info)})

    def _write(self, obj: dict[str, Any]) -> None:
        if self._full:
            return
        obj.setdefault("t", round(time.monotonic() - self._t0, 6))
        self._gz.write(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
        if self._raw.tell() >= self.max_bytes:
            self._gz.write(json.dumps({"kind": "truncated", "t": obj["t"]}).encode() + b"\n")
            self._full = True
            log.warning("recording %s reached %d bytes: recording stopped", self.path, self.max_bytes)

    def write(self, update: Update) -> None:
        if update.sample is not None:
            self._write({"kind": "sample", "sample": codec.sample_to_json(update.sample)})
        if update.events:
            self._write({"kind": "events", "events": [codec.event_to_json(e) for e in update.events]})
        for change in update.alerts:
            self._write({"kind": "alert", "change": codec.change_to_json(change)})
        if update.rules is not None:
            self._write({"kind": "rules", "rules": [codec.status_to_json(s) for s in update.rules]})
        for notice in update.notices:
            self._write({"kind": "notice", "text": notice})

    def rule_change(self, what: str, rule: FilterRule) -> None:
        self._write({"kind": "rule_change", "what": what, "rule": codec.rule_to_json(rule)})

    def close(self) -> None:
        self._gz.close()
        self._raw.close()


def read_recording(path: Path) -> tuple[SourceInfo, list[dict[str, Any]]]:
    try:
        with gzip.open(path, "rt") as f:
            lines = [json.loads(line) for line in f if line.strip()]
    except (OSError, EOFError, ValueError) as exc:
        raise RecordingError(f"{path} is not a readable ironpost recording: {exc}") from None
    if not lines or lines[0].get("kind") != "start" or lines[0].get("v") != FORMAT_VERSION:
        raise RecordingError(f"{path} is not an ironpost recording (version {FORMAT_VERSION})")
    info = SourceInfo(**{**lines[0]["info"], "read_only": True, "title": f"replay of {path.name}"})
    return info, lines[1:]


class ReplaySource:
    """Plays a recording back at ``speed``× with pause and seek; read-only; no root."""

    def __init__(self, path: Path, speed: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.info, self._records = read_recording(path)
        self.duration = self._records[-1]["t"] if self._records else 0.0
        self.speed = speed
        self._clock = clock
        self._pos = 0  # next record to play
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
                self._pos = 0
                self._reset = True
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
            due = self._pos < len(self._records) and self._records[self._pos]["t"] <= target
            if not due and not self._reset:
                # Nothing to play yet: wait like a live poll does.  Paused or at the
                # end, the whole timeout (returning at once would make a busy loop).
                wait = timeout
                if not self.paused and self._pos < len(self._records):
                    wait = min(timeout, (self._records[self._pos]["t"] - target) / max(self.speed, 1e-9))
                self._lock.release()
                try:
                    time.sleep(max(0.0, wait))
                finally:
                    self._lock.acquire()
                target = self._target()
            return self._play_until(target)

    def _play_until(self, target: float) -> Update:
        events: list[Any] = []
        alerts = []
        notices = []
        sample = None
        rules = None
        # After a backward seek this plays from the start again: the update
        # carries the whole state as of target, and says reset.
        reset, self._reset = self._reset, False
        while self._pos < len(self._records) and self._records[self._pos]["t"] <= target:
            rec = self._records[self._pos]
            self._pos += 1
            kind = rec["kind"]
            if kind == "sample":
                sample = codec.sample_from_json(rec["sample"])
            elif kind == "events":
                events.extend(codec.event_from_json(e) for e in rec["events"])
            elif kind == "alert":
                alerts.append(codec.change_from_json(rec["change"]))
            elif kind == "rules":
                rules = tuple(codec.status_from_json(s) for s in rec["rules"])
            elif kind == "notice":
                notices.append(rec["text"])
            elif kind == "rule_change":
                notices.append(f"rule {rec['what']}: {rec['rule']['id']}")
        self._at = target
        return Update(
            events=tuple(events),
            sample=sample,
            alerts=tuple(alerts),
            rules=rules,
            notices=tuple(notices),
            at=target,
            reset=reset,
        )

    def _read_only(self) -> IronpostError:
        return IronpostError("a replay is read-only: rules cannot be changed")

    def add_rule(self, rule: FilterRule, force: bool = False) -> None:
        raise self._read_only()

    def update_rule(self, rule: FilterRule, force: bool = False) -> None:
        raise self._read_only()

    def delete_rule(self, rule_id: str) -> FilterRule:
        raise self._read_only()

    def panic(self) -> list[FilterRule]:
        raise self._read_only()

    def reload(self) -> None:
        raise self._read_only()

    def close(self) -> None:
        pass
