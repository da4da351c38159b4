"""Rule changes the console asks of its source, applied in a worker thread (Textual-free)."""

from __future__ import annotations

from dataclasses import dataclass

from ironpost_tui.engine.feed import Source
from ironpost_tui.model import FilterRule


@dataclass(frozen=True)
class Edit:
    kind: str  # add | update | delete | panic
    rule: FilterRule | None = None
    force: bool = False
    origin: str = "rules"  # where a refusal is shown: form | events | alerts | rules

    def describe(self) -> str:
        if self.kind == "panic":
            return "panic"
        assert self.rule is not None
        return f"{self.kind} rule '{self.rule.id}'"

    def forced(self) -> Edit:
        return Edit(self.kind, self.rule, True, self.origin)

    def apply(self, source: Source) -> str:
        """Do it; the notice to show.  IronpostError (one-line .message) when refused."""
        rule = self.rule
        if self.kind == "panic":
            cleared = source.panic()
            names = ", ".join(r.id for r in cleared) or "none"
            return f"panic: cleared {len(cleared)} drop rule(s): {names}"
        assert rule is not None
        if self.kind == "add":
            source.add_rule(rule, force=self.force)
            return f"added rule '{rule.id}'" + (" (forced)" if self.force else "")
        if self.kind == "update":
            source.update_rule(rule, force=self.force)
            return f"updated rule '{rule.id}'" + (" (forced)" if self.force else "")
        if self.kind == "delete":
            source.delete_rule(rule.id)
            return f"deleted rule '{rule.id}'"
        raise ValueError(f"unknown edit {self.kind}")
