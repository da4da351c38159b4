"""Where things are in a TOML source text, which tomllib does not say.

A small tolerant scanner over the text (never an exception, whatever the
input) that serves two purposes:

* before tomllib sees a file: how deep its tables and arrays nest, since
  tomllib parses nested values recursively and a deep enough file would hit
  RecursionError;
* after a file failed validation: the line and column of each key named by a
  location, a tuple of table keys and array indices like
  ``("ebpf", "rules", 3, "dst_port")``.

It understands ``[a.b]``, ``[[a.b]]`` (counting the elements of each array
of tables, per parent element), ``key = value``, quoted and dotted keys,
strings of all four kinds, comments, and arrays and inline tables spanning
lines.  On an invalid text it still terminates with a best effort.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

Key = str | int
Loc = tuple[Key, ...]

_BLANK = re.compile(r"[ \t\r]*")
_BLANK_LINES = re.compile(r"(?:[ \t\r\n]|#[^\n]*)*")
_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")
_BASIC = re.compile(r'"(?:[^"\\\n]|\\.)*"?')
_LITERAL = re.compile(r"'[^'\n]*'?")
_SCALAR = re.compile(r"[^,\]}#\n]*")
_ESCAPE = re.compile(r"\\(?:u([0-9A-Fa-f]{4})|U([0-9A-Fa-f]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {"b": "\b", "t": "\t", "n": "\n", "f": "\f", "r": "\r", "e": "\x1b", '"': '"', "\\": "\\"}


def _unescape(body: str) -> str:
    def one(m: re.Match[str]) -> str:
        code = m.group(1) or m.group(2)
        if code is not None:
            n = int(code, 16)
            return chr(n) if n < 0x110000 else m.group(0)
        return _SIMPLE_ESCAPES.get(m.group(3), m.group(0))

    return _ESCAPE.sub(one, body)


@dataclass
class _Frame:
    loc: Loc
    is_array: bool
    index: int = 0


@dataclass
class _Scan:
    text: str
    limit: int
    wanted: set[Loc] | None
    positions: dict[Loc, int] = field(default_factory=dict)
    too_deep_at: int | None = None
    i: int = 0

    # --- helpers ---------------------------------------------------------------
    def record(self, loc: Loc, offset: int) -> None:
        if self.wanted is None or loc in self.wanted:
            self.positions.setdefault(loc, offset)

    def deep(self, depth: int, offset: int) -> bool:
        if depth > self.limit:
            self.too_deep_at = offset
            return True
        return False

    def skip(self, pattern: re.Pattern[str]) -> None:
        m = pattern.match(self.text, self.i)
        if m is not None:
            self.i = m.end()

    def to_line_end(self) -> None:
        j = self.text.find("\n", self.i)
        self.i = len(self.text) if j < 0 else j + 1

    def key(self) -> list[tuple[str, int]]:
        """A dotted key at i: its parts and the offset of each ([] if none)."""
        parts: list[tuple[str, int]] = []
        text = self.text
        while True:
            self.skip(_BLANK)
            start = self.i
            c = text[start] if start < len(text) else ""
            m: re.Match[str] | None
            if c == '"':
                m = _BASIC.match(text, start)
                assert m is not None  # the pattern matches the quote at least
                part = _unescape(m.group(0)[1:-1] if m.group(0).endswith('"') and m.end() > start + 1 else "")
            elif c == "'":
                m = _LITERAL.match(text, start)
                assert m is not None
                part = m.group(0)[1:-1]
            else:
                m = _BARE_KEY.match(text, start)
                if m is None:
                    return parts
                part = m.group(0)
            parts.append((part, start))
            self.i = m.end()
            if len(parts) > self.limit + 1:
                return parts  # deeper than the limit already: the caller says so
            self.skip(_BLANK)
            if not text.startswith(".", self.i):
                return parts
            self.i += 1

    # --- values ----------------------------------------------------------------
    def value(self, loc: Loc, stack: list[_Frame]) -> None:
        """One value at i; an array or inline table is pushed for the main loop to walk."""
        text, i = self.text, self.i
        if text.startswith('"""', i) or text.startswith("'''", i):
            quote = text[i : i + 3]
            j = i + 3
            while True:
                j = text.find(quote, j)
                if j < 0:
                    self.i = len(text)
                    return
                if quote == '"""':
                    k = j
                    while text[k - 1] == "\\":
                        k -= 1
                    if (j - k) % 2:  # an escaped quote
                        j += 1
                        continue
                end = j + 3
                while end < len(text) and end < j + 5 and text[end] == quote[0]:
                    end += 1
                self.i = end
                return
        c = text[i] if i < len(text) else ""
        if c in "[{":
            self.i = i + 1
            if not self.deep(len(loc), i):
                stack.append(_Frame(loc, is_array=c == "["))
            return
        pattern = _BASIC if c == '"' else _LITERAL if c == "'" else _SCALAR
        m = pattern.match(text, i)
        self.i = m.end() if m is not None and m.end() > i else i + 1

    # --- the main loop ---------------------------------------------------------
    def run(self) -> None:
        text = self.text
        n = len(text)
        table: Loc = ()
        aot_count: dict[Loc, int] = {}
        stack: list[_Frame] = []

        def resolve(names: list[str]) -> Loc:
            loc: Loc = ()
            for name in names:
                loc = (*loc, name)
                if loc in aot_count:
                    loc = (*loc, aot_count[loc] - 1)
            return loc

        while self.too_deep_at is None:
            if stack:
                frame = stack[-1]
                self.skip(_BLANK_LINES)
                if self.i >= n:
                    return
                c = text[self.i]
                if c in ("]" if frame.is_array else "}"):
                    stack.pop()
                    self.i += 1
                elif c == ",":
                    frame.index += 1
                    self.i += 1
                elif frame.is_array:
                    loc = (*frame.loc, frame.index)
                    self.record(loc, self.i)
                    self.value(loc, stack)
                else:
                    self.key_value(frame.loc, stack)
                continue

            self.skip(_BLANK_LINES)
            if self.i >= n:
                return
            start = self.i
            if text.startswith("[", start):
                is_aot = text.startswith("[[", start)
                self.i += 2 if is_aot else 1
                parts = self.key()
                names = [p for p, _ in parts]
                if not names:
                    self.to_line_end()
                    continue
                if self.deep(len(names) + int(is_aot), start):
                    return
                if is_aot:
                    array = (*resolve(names[:-1]), names[-1])
                    aot_count[array] = aot_count.get(array, 0) + 1
                    table = (*array, aot_count[array] - 1)
                else:
                    table = resolve(names)
                for k in range(1, len(table) + 1):
                    self.record(table[:k], start)
                if self.deep(len(table), start):
                    return
                self.skip(_BLANK)
                if text.startswith("]]" if is_aot else "]", self.i):
                    self.i += 2 if is_aot else 1
                continue
            self.key_value(table, stack)
            if not stack and self.i == start:
                self.to_line_end()

    def key_value(self, base: Loc, stack: list[_Frame]) -> None:
        start = self.i
        parts = self.key()
        if not parts:
            self.i = start + 1  # not a key: step over the character
            return
        if self.deep(len(base) + len(parts) - 1, start):
            return
        loc = base
        for name, offset in parts:
            loc = (*loc, name)
            self.record(loc, offset)
        self.skip(_BLANK)
        if not self.text.startswith("=", self.i):
            return
        self.i += 1
        self.skip(_BLANK)
        self.value(loc, stack)


class SourceMap:
    """Line and column of locations in one text (1-based, columns in characters)."""

    def __init__(self, text: str, wanted: Iterable[Loc] = (), limit: int = 64) -> None:
        self.text = text
        want: set[Loc] = set()
        for loc in wanted:
            want.update(loc[:k] for k in range(1, len(loc) + 1))
        scan = _Scan(text, limit=limit, wanted=want)
        scan.run()
        self._positions = scan.positions
        self._line_starts: list[int] | None = None

    def line_col(self, offset: int) -> tuple[int, int]:
        """1-based line and column of a character offset."""
        if self._line_starts is None:
            self._line_starts = [0] + [m.end() for m in re.finditer("\n", self.text)]
        line = bisect.bisect_right(self._line_starts, offset)
        return line, offset - self._line_starts[line - 1] + 1

    def find(self, loc: Loc) -> tuple[int, int]:
        """Where ``loc`` is, else where the nearest enclosing table is, else 1:1."""
        for k in range(len(loc), 0, -1):
            offset = self._positions.get(loc[:k])
            if offset is not None:
                return self.line_col(offset)
        return 1, 1


def too_deep(text: str, limit: int) -> tuple[int, int] | None:
    """Line and column where tables and arrays first nest deeper than ``limit``, or None.

    The document is level 0; ``[a]`` is a table at level 1, ``[[a.b]]`` an
    array at level 2 holding tables at level 3, ``x = [[1]]`` in ``[a]`` an
    array at level 2 holding one at level 3.
    """
    bound = _simple_depth(text)
    if bound is not None and bound <= limit:
        return None
    return scan_too_deep(text, limit)


# A line of the usual kind: blank, a comment, a header of bare keys, or ``bare_key = scalar``, the scalar
# on the line (a one-line string without escapes, a number, a boolean, a date).  A file of such lines
# alone nests no deeper than its deepest header.
_SIMPLE_LINE = re.compile(
    r"[ \t]*(?:(?P<aot>\[\[?)[ \t]*(?P<header>[A-Za-z0-9_-]+(?:[ \t]*\.[ \t]*[A-Za-z0-9_-]+)*)[ \t]*\]\]?"
    r"|[A-Za-z0-9_-]+[ \t]*=[ \t]*(?:\"[^\"\\\n]*\"|'[^'\n]*'|[A-Za-z0-9_.:+-]+))?"
    r"[ \t]*(?:#[^\n]*)?\r?"
)


def _simple_depth(text: str) -> int | None:
    """An upper bound of how deep a file of usual lines only nests (one level more than its deepest
    header); None when a line is of another kind (then the scanner decides)."""
    deepest = 0
    for line in text.split("\n"):
        m = _SIMPLE_LINE.fullmatch(line)
        if m is None:
            return None
        header = m.group("header")
        if header is not None:
            deepest = max(deepest, header.count(".") + 1 + len(m.group("aot")) - 1)
    return deepest + 1


def scan_too_deep(text: str, limit: int) -> tuple[int, int] | None:
    """too_deep() by the scanner, whatever the lines."""
    scan = _Scan(text, limit=limit, wanted=set())
    scan.run()
    if scan.too_deep_at is None:
        return None
    return line_col(text, scan.too_deep_at)


def line_col(text: str, offset: int) -> tuple[int, int]:
    """1-based line and column of one character offset in ``text``."""
    line_start = text.rfind("\n", 0, offset) + 1
    return text.count("\n", 0, offset) + 1, offset - line_start + 1
