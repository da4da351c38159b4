"""Collecting configuration errors, and typed reads of TOML tables that report wrong values.

Errors are gathered with the location of the key they are about (a tuple of
table keys and array indices) and given a line and column only at the end,
from the source text (config_locate), so a valid file costs no locating.
"""

from __future__ import annotations

import datetime as dt
import difflib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from ironpost_tui.config.durations import EXAMPLES, MAX_SECONDS, parse_duration
from ironpost_tui.config.locate import Loc, SourceMap
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.text import escape, unsafe, visible

MAX_REPORTED = 1000  # errors listed one by one; the rest are counted
# Said of a string refused for a control or format character (ironpost_tui.text).
CONTROL_HINT = "a control or format character: remove it (such characters can rewrite the operator's terminal)"


# --------------------------------------------------------------------------- #
# errors


@dataclass(frozen=True)
class ConfigIssue:
    """One error: where it is and what to do about it."""

    path: str
    line: int
    col: int
    rule_id: str | None
    message: str
    rule_index: int | None = None  # 1-based, for a rule that has no usable id

    def __str__(self) -> str:
        if self.rule_id is not None:
            rule = f"rule {quote(self.rule_id)}: "
        elif self.rule_index is not None:
            rule = f"rule #{self.rule_index}: "
        else:
            rule = ""
        # Every part may come from the file or the command line: no control character reaches the terminal.
        return visible(f"{self.path}:{self.line}:{self.col}: {rule}{self.message}")


# Said by every "more rules than the kernel map holds" error (config_rules._kernel_fit).
CAPACITY_MARK = "map, which holds"


class ConfigError(IronpostError):
    """A configuration refused; ``message`` has every error, one per line."""

    exit_status = ExitStatus.CONFIG_INVALID
    title = "Invalid configuration"

    def __init__(self, message: str, title: str | None = None, errors: Sequence[ConfigIssue] = ()) -> None:
        super().__init__(message, title)
        self.errors: list[ConfigIssue] = list(errors)

    @classmethod
    def from_issues(cls, issues: Sequence[ConfigIssue]) -> ConfigError:
        error = cls("\n".join(str(i) for i in issues), errors=issues)
        if issues and all(CAPACITY_MARK in i.message for i in issues):
            # Only the kernel's capacity is exceeded: the file is fine, the maps are full.
            error.exit_status = ExitStatus.BLOCKLIST_FULL
        return error


def quote(text: str, limit: int = 60) -> str:
    return repr(text if len(text) <= limit else text[:limit] + "...")


def show(value: object) -> str:
    """A value as the message names it: its TOML type, and the value when short."""
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return f"integer {value}" if len(str(value)) <= 30 else "integer"
    if isinstance(value, float):
        return f"float {value}"
    if isinstance(value, str):
        return f"string {quote(value)}"
    if isinstance(value, dt.datetime):
        return f"{'offset' if value.tzinfo else 'local'} date-time {value.isoformat()}"
    if isinstance(value, dt.date):
        return f"local date {value.isoformat()}"
    if isinstance(value, dt.time):
        return f"local time {value.isoformat()}"
    if isinstance(value, list):
        return "array"
    return "table"


@dataclass(frozen=True)
class RuleRef:
    id: str | None
    index: int  # 1-based


@dataclass(frozen=True)
class Pending:
    loc: Loc
    message: str
    rule: RuleRef | None
    see: Loc | None = None  # message + line of `see` + after
    after: str = ""


@dataclass
class Check:
    pending: list[Pending] = field(default_factory=list)
    dropped: int = 0

    @property
    def full(self) -> bool:
        """Whether further errors are only counted (callers may skip composing them)."""
        return len(self.pending) > MAX_REPORTED

    def error(
        self, loc: Loc, message: str, rule: RuleRef | None = None, see: Loc | None = None, after: str = ""
    ) -> None:
        if self.full:
            self.dropped += 1
        else:  # keeps one more than shown: where the unlisted ones start
            self.pending.append(Pending(loc, message, rule, see, after))

    def resolve(self, path: str, text: str) -> list[ConfigIssue]:
        shown = self.pending[:MAX_REPORTED]
        wanted = [p.loc for p in self.pending] + [p.see for p in shown if p.see is not None]
        where = SourceMap(text, wanted)
        issues = []
        for p in shown:
            line, col = where.find(p.loc)
            message = p.message if p.see is None else f"{p.message}{where.find(p.see)[0]}{p.after}"
            rule_id = p.rule.id if p.rule else None
            rule_index = p.rule.index if p.rule and p.rule.id is None else None
            issues.append(ConfigIssue(path, line, col, rule_id, message, rule_index))
        issues.sort(key=lambda i: (i.line, i.col))
        hidden = len(self.pending) - len(shown) + self.dropped
        if hidden:
            line, col = where.find(self.pending[MAX_REPORTED].loc)
            issues.append(ConfigIssue(path, line, col, None, f"{hidden} more errors not listed: fix these first"))
        return issues


class Table:
    """Typed reads of one table's keys; a wrong value is reported and its default returned."""

    def __init__(
        self, check: Check, raw: dict[str, Any], loc: Loc, known: Sequence[str], rule: RuleRef | None = None
    ) -> None:
        self.check, self.raw, self.loc, self.known, self.rule = check, raw, loc, known, rule
        self.label = "[" + ".".join(str(k) for k in loc) + "]" if loc and rule is None else ""

    def name(self, key: str) -> str:
        return f"{self.label} {key}" if self.label else key

    def error(self, key: str | None, message: str) -> None:
        self.check.error(self.loc if key is None else (*self.loc, key), message, self.rule)

    def unknown_keys(self) -> None:
        for key, value in self.raw.items():
            if key in self.known:
                continue
            if self.check.full:
                self.check.dropped += 1
                continue
            close = difflib.get_close_matches(key, self.known, n=1, cutoff=0.6)
            if isinstance(value, dict):
                where = visible(".".join(str(k) for k in (*self.loc, key)))
                hint = f"did you mean [{'.'.join(str(k) for k in (*self.loc, close[0]))}]?" if close else ""
                what = f"unknown section [{where}]"
            else:
                hint = f"did you mean {quote(close[0])}?" if close else ""
                what = f"unknown key {quote(key)}" + (f" in {self.label}" if self.label else "")
                if not self.loc:
                    what += " at the top level"
            known = ", ".join(self.known)
            self.error(key, f"{what} ({hint})" if hint else f"{what}: the known keys are {known}")

    def typed(self, key: str, kinds: tuple[type, ...], expected: str, hint: str = "") -> Any:
        """The value if present and of one of ``kinds`` (bool is never an int here), else None."""
        if key not in self.raw:
            return None
        value = self.raw[key]
        if isinstance(value, kinds) and not (isinstance(value, bool) and bool not in kinds):
            return value
        self.error(key, f"{self.name(key)} must be {expected}, got {show(value)}{hint}")
        return None

    def string(self, key: str, default: str, choices: Sequence[str] = (), nonempty: bool = False) -> str:
        value = self.typed(key, (str,), "a string")
        if value is None:
            return default
        bad = unsafe(value)
        if bad is not None:
            self.error(key, f"{self.name(key)} contains {escape(bad)}, {CONTROL_HINT}")
            return default
        if choices and value not in choices:
            self.error(key, f"{self.name(key)} {quote(value)} is not one of {', '.join(choices)}")
            return default
        if nonempty and not value:
            self.error(key, f"{self.name(key)} is empty: give a value or leave the key out")
            return default
        return str(value)

    def boolean(self, key: str, default: bool) -> bool:
        value = self.typed(key, (bool,), "true or false")
        return default if value is None else bool(value)

    def integer(self, key: str, default: int, lo: int, hi: int, span: str = "", hint: str = "") -> int:
        raw = self.raw.get(key)
        if not hint and isinstance(raw, str) and re.fullmatch(r"-?[0-9]{1,20}", raw):
            hint = f": write {key} = {raw} without quotes"
        value = self.typed(key, (int,), "an integer", hint)
        if value is None:
            return default
        span = span or f"it must be {lo} to {hi}"
        if value < 0 <= lo:
            self.error(key, f"{self.name(key)} {value} is negative: {span}")
        elif value < lo:
            self.error(key, f"{self.name(key)} {value} is too small: {span}")
        elif value > hi:
            self.error(key, f"{self.name(key)} {show(value).split(' ', 1)[-1]} is too large: {span}")
        else:
            return int(value)
        return default

    def number(self, key: str, default: float, lo: float, hi: float) -> float:
        value = self.typed(key, (int, float), "a number")
        if value is None:
            return default
        if not lo <= value <= hi:  # NaN fails too
            self.error(key, f"{self.name(key)} {value} is out of range: it must be {lo:g} to {hi:g}")
            return default
        return float(value)

    def duration(self, key: str, default: float) -> float:
        value = self.typed(key, (str, int, float), f"a duration like {EXAMPLES}")
        if value is None:
            return default
        if isinstance(value, str):
            try:
                return float(parse_duration(value))
            except ValueError as exc:
                self.error(key, f"{self.name(key)} {quote(value)} {exc}")
                return default
        if not 0 < value <= MAX_SECONDS:  # seconds
            self.error(key, f"{self.name(key)} {value} is out of range: more than 0 and at most {MAX_SECONDS} seconds")
            return default
        return float(value)

    def subtable(self, key: str, known: Sequence[str]) -> Table:
        value = self.raw.get(key, {})
        if not isinstance(value, dict):
            header = ".".join(map(str, (*self.loc, key)))
            self.error(key, f"{self.name(key)} must be a table ([{header}]), got {show(value)}")
            value = {}
        return Table(self.check, value, (*self.loc, key), known, self.rule)
