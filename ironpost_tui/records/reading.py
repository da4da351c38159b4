"""Reading a recording without trusting it: bounded, incremental, every record checked.

A recording is gzip-compressed JSON lines; a hostile one can expand a few
hundred kilobytes into gigabytes, hold one endless line, or put a list, a null
or a string where a record has an object or a number.  So it is read a line
at a time, never the whole decompressed file: at most MAX_LINE_BYTES a line and
MAX_DECOMPRESSED_BYTES in all (the Recorder stops before either), and each line
is decoded into the engine's values by ``codec``, which checks every field.
Whatever is wrong becomes one RecordingError: where (line N) and what.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from ironpost_tui.engine.feed import SourceInfo
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.model import MAX_WALL_CLOCK
from ironpost_tui.records import codec
from ironpost_tui.records.top_codec import top_from_json
from ironpost_tui.text import visible

FORMAT_VERSION = 1
MAX_DECOMPRESSED_BYTES = 256 * 1024 * 1024  # 256 MiB of JSON lines
MAX_LINE_BYTES = 1024 * 1024  # 1 MiB: a poll's events, many times over
MAX_DEPTH_ERRORS = (RecursionError, MemoryError)  # "[[[[..." nested a million deep


class RecordingError(IronpostError):
    title = "Recording"


class BadRecording(RecordingError):
    """A recording that cannot be played: the only error ``replay`` lets out (one line, exit 2)."""

    exit_status = ExitStatus.CONFIG_INVALID


@dataclass(frozen=True)
class Record:
    """One line after the start line, decoded: ``value`` is what its kind carries."""

    t: float  # seconds since the start of the recording
    kind: str  # sample, events, alert, rules, notice, rule_change; anything else is skipped
    value: Any = None


def _refuse_constant(name: str) -> float:
    raise ValueError(f"{name} is not a number a recording holds")


class RecordReader:
    """The records of an open recording, one at a time, from its start."""

    def __init__(self, path: Path, raw: IO[bytes]) -> None:
        self.path = path
        raw.seek(0)
        self._gz = gzip.GzipFile(fileobj=raw, mode="rb")
        self.line = 0
        self.size = 0
        self.last_t = 0.0
        self.info = self._start()

    def close(self) -> None:
        self._gz.close()

    def _fail(self, what: str) -> RecordingError:
        where = f" (line {self.line})" if self.line else ""
        return BadRecording(visible(f"{self.path} is not a readable ironpost recording{where}: {what}"))

    def _next_line(self) -> dict[str, Any] | None:
        try:
            data = self._gz.readline(MAX_LINE_BYTES + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise self._fail(str(exc) or type(exc).__name__) from None
        if not data:
            return None
        self.line += 1
        self.size += len(data)
        if len(data) > MAX_LINE_BYTES:
            raise self._fail(f"a line longer than {MAX_LINE_BYTES} bytes (1 MiB): refused")
        if self.size > MAX_DECOMPRESSED_BYTES:
            raise self._fail(f"more than {MAX_DECOMPRESSED_BYTES} bytes (256 MiB) uncompressed: refused")
        # No blank lines either (the Recorder writes none): millions of them would cost a call each.
        try:
            obj = json.loads(data, parse_constant=_refuse_constant)
        except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, too many digits, NaN
            raise self._fail(f"not JSON: {exc}") from None
        except MAX_DEPTH_ERRORS:
            raise self._fail("JSON nested too deeply") from None
        if not isinstance(obj, dict):
            raise self._fail("a record must be a JSON object")
        return obj

    def _start(self) -> SourceInfo:
        first = self._next_line()
        if first is None or first.get("kind") != "start":
            raise self._fail("it does not begin with a start record")
        if type(first.get("v")) is not int or first["v"] != FORMAT_VERSION:
            raise self._fail(
                f"format version {visible(repr(first.get('v'))[:20])}, this program reads {FORMAT_VERSION}"
            )
        try:
            d = codec.obj(first.get("info"), "info")
            protected = codec.array(d.get("protected", []), "protected")
            return SourceInfo(
                iface=codec.string(d, "iface"),
                mode=codec.string(d, "mode"),
                attached=codec.boolean(d, "attached"),
                started_at=codec.number(d, "started_at", 0, MAX_WALL_CLOCK),
                config_path=codec.string(d, "config_path", ""),
                blocklist_capacity=codec.integer(d, "blocklist_capacity"),
                protected=tuple(codec.string({"protected": p}, "protected") for p in protected),
                read_only=True,
                title=visible(f"replay of {self.path.name}"),
            )
        except codec.BadRecord as exc:
            raise self._fail(str(exc)) from None

    def next(self) -> Record | None:
        """The next record, checked and decoded; None at the end of the file."""
        rec = self._next_line()
        if rec is None:
            return None
        try:
            t = codec.number(rec, "t", 0)
            if t < self.last_t:
                raise codec.BadRecord(f"t goes back in time ({t} after {self.last_t})")
            self.last_t = t
            kind = rec.get("kind")
            if not isinstance(kind, str):
                raise codec.BadRecord("kind must be a string")
            return Record(t, kind, _decode(kind, rec))
        except codec.BadRecord as exc:
            raise self._fail(str(exc)) from None
        except MAX_DEPTH_ERRORS:
            raise self._fail("JSON nested too deeply") from None


def _decode(kind: str, rec: dict[str, Any]) -> Any:
    if kind == "sample":
        return codec.sample_from_json(rec.get("sample"))
    if kind == "events":
        return tuple(codec.event_from_json(e) for e in codec.array(rec.get("events"), "events"))
    if kind == "alert":
        return codec.change_from_json(rec.get("change"))
    if kind == "rules":
        return tuple(codec.status_from_json(s) for s in codec.array(rec.get("rules"), "rules"))
    if kind == "notice":
        return codec.string(rec, "text")
    if kind == "top":
        return top_from_json(rec.get("top"))
    if kind == "rule_change":
        return f"rule {codec.string(rec, 'what')}: {codec.string(codec.obj(rec.get('rule'), 'rule'), 'id')}"
    return None  # truncated, or a kind of a later version: nothing to show


def scan(path: Path, raw: IO[bytes]) -> tuple[SourceInfo, float]:
    """Check the whole recording once (every record, in bounded memory): its info and duration."""
    reader = RecordReader(path, raw)
    try:
        last = 0.0
        while (rec := reader.next()) is not None:
            last = rec.t
        return reader.info, last
    finally:
        reader.close()


__all__ = [
    "BadRecording",
    "FORMAT_VERSION",
    "MAX_DECOMPRESSED_BYTES",
    "MAX_LINE_BYTES",
    "Record",
    "RecordReader",
    "RecordingError",
]
