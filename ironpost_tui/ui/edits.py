"""Rule changes the console asks of its source, applied in a worker thread (Textual-free)."""

from __future__ import annotations

from dataclasses import dataclass

from ironpost_tui.engine.feed import Source, cleared_ids
from ironpost_tui.model import FilterRule, StrEnum, assert_never
from ironpost_tui.ui import format as fmt


class EditKind(StrEnum):
    ADD = "add"
    UPDATE = "update"
    DELETE = "delete"
    PANIC = "panic"


class Origin(StrEnum):
    """Where the edit was asked for, and so where a refusal is shown."""

    FORM = "form"
    EVENTS = "events"
    ALERTS = "alerts"
    RULES = "rules"
    DETAIL = "detail"  # an alert's detail (shown in the alerts pane once it is closed)
    TOP = "top"  # the top talkers pane


@dataclass(frozen=True)
class Edit:
    kind: EditKind
    rule: FilterRule | None = None
    force: bool = False
    origin: Origin = Origin.RULES
    expected: FilterRule | None = None  # an update made from this rule as shown: refused if it is no longer so

    def describe(self) -> str:
        if self.kind is EditKind.PANIC:
            return "panic"
        assert self.rule is not None
        return f"{self.kind} rule '{self.rule.id}'"

    def forced(self) -> Edit:
        return Edit(self.kind, self.rule, True, self.origin, self.expected)

    def apply(self, source: Source) -> str:
        """Do it; the notice to show.  IronpostError (one-line .message) when refused."""
        rule = self.rule
        kind = self.kind
        if kind is EditKind.PANIC:
            cleared = source.panic()
            return f"panic: cleared {fmt.count(len(cleared))} drop rule(s): {cleared_ids(cleared)}"
        assert rule is not None
        if kind is EditKind.ADD:
            source.add_rule(rule, force=self.force)
            return f"added rule '{rule.id}'" + (" (forced)" if self.force else "")
        if kind is EditKind.UPDATE:
            source.update_rule(rule, force=self.force, expected=self.expected)
            return f"updated rule '{rule.id}'" + (" (forced)" if self.force else "")
        if kind is EditKind.DELETE:
            source.delete_rule(rule.id)
            return f"deleted rule '{rule.id}'"
        assert_never(kind)
