"""Rule edits as the operator makes them: the questions asked first (duration, confirm,
force), the edit in a worker thread, and where a refusal is shown (the form or the pane)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from ironpost_tui.errors import IronpostError
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules.blocking import blocking_rules
from ironpost_tui.rules.control import LockoutRefused
from ironpost_tui.ui import format as fmt
from ironpost_tui.ui.edits import Edit, EditKind, Origin
from ironpost_tui.ui.messages import EditApplied, EditRefused
from ironpost_tui.ui.rule_fields import block_rule
from ironpost_tui.ui.screens.alert_detail import AlertDetailScreen
from ironpost_tui.ui.screens.block import BlockScreen
from ironpost_tui.ui.screens.confirm import ConfirmScreen
from ironpost_tui.ui.state import TABLE_ARRIVING
from ironpost_tui.ui.widgets.alert_table import AlertTable
from ironpost_tui.ui.widgets.event_table import EventTable
from ironpost_tui.ui.widgets.rule_form import RuleForm
from ironpost_tui.ui.widgets.rules_pane import RulesPane
from ironpost_tui.ui.widgets.top_pane import TopPane

if TYPE_CHECKING:
    from ironpost_tui.ui.app import IronpostApp

log = logging.getLogger(__name__)

FORCE_HINT = "\nForce applies it anyway (the allowlist still lets protected sources through)."
SAID_SECS = 12.0  # a refusal stays in its pane's status line (and its toast) this long


class RuleEditing:
    """Owned by the app; the app's message handlers hand over to it."""

    def __init__(self, app: IronpostApp) -> None:
        self.app = app
        self._said = 0  # refusals said in a pane's status line: a timer clears only the last one
        self.form: RuleForm | None = None

    # --- asking ---------------------------------------------------------------------
    def open_form(self, rule: FilterRule | None) -> None:
        app = self.app
        if app.read_only:
            return
        form = RuleForm(
            rule,
            app.source.now,
            latest=self._current,
            cursor_blink=app.cursor_blink,
        )
        self.form = form

        def closed(_: None) -> None:
            self.form = None

        app.push_screen(form, closed)

    def submit(self, rule: FilterRule, editing: bool, force: bool) -> None:
        if editing and not self.app.state.rules_pending and self._current(rule.id) is None and self.form is not None:
            # Gone while the form was open (it expired, or was deleted or lifted elsewhere): said as such, and the
            # next save adds it back (until session 25 the save was refused as "no rule with id", which did not say
            # that what the rule dropped was passing again).
            holder = next((s.rule for s in self.app.state.rules if s.rule.same_match(rule)), None)
            self.form.went(rule.id, holder)
            return
        self.run(Edit(EditKind.UPDATE if editing else EditKind.ADD, rule, force, Origin.FORM))

    def switch(self, rule: FilterRule, shown: FilterRule) -> None:
        """``x``: the rule as ``rule`` says, drop or monitor (``shown``: as the pane had it, which the engine checks
        is still in force).  A drop made monitor lifts enforcement, as a delete does: asked first (until session
        23 one key on the wrong row let a blocked source through)."""
        edit = Edit(EditKind.UPDATE, rule, origin=Origin.RULES, expected=shown)
        if rule.action is not Action.MONITOR:
            self.run(edit)
            return
        self._asked(
            edit,
            ConfirmScreen(
                f"Stop dropping with {rule.id}",
                f"Make '{rule.id}' a monitor rule? What it drops passes from now on (its matches are still shown).",
                "Monitor",
            ),
        )

    def delete(self, rule: FilterRule) -> None:
        self._asked(
            Edit(EditKind.DELETE, rule, origin=Origin.RULES),
            ConfirmScreen(
                f"Delete rule {rule.id}",
                f"Delete '{rule.id}' ({rule.action.value})? It stops matching at once.",
                "Delete",
            ),
        )

    def _asked(self, edit: Edit, question: ConfirmScreen) -> None:
        """``edit``, once the operator says yes to ``question``.  An update carries the rule it was made from
        (``expected``): the engine refuses it if the rule in force is no longer that, whatever happened while the
        question was open or before the console's copy caught up (engine/feed.py still_as_shown)."""

        def answered(yes: bool | None) -> None:
            if yes:
                self.run(edit)

        self.app.push_screen(question, answered)

    def _current(self, rule_id: str) -> FilterRule | None:
        """The console's copy of the rule ``rule_id``, as the last table said it."""
        return next((s.rule for s in self.app.state.rules if s.rule.id == rule_id), None)

    def panic_question(self) -> ConfirmScreen:
        app = self.app
        drops = app.state.drop_rules()
        return ConfirmScreen(
            "Panic: clear every drop rule",
            f"Delete all {fmt.count(drops)} drop rule(s) now, on {app.info.iface} and in the configuration? "
            "Monitor rules stay. Use it when a rule locked the wrong people out.",
            "Clear drops",
        )

    def panic(self) -> None:
        if self.app.read_only:
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.run(Edit(EditKind.PANIC, origin=Origin.RULES))

        self.app.push_screen(self.panic_question(), answered)

    def block(self, address: str, why: str, origin: Origin) -> None:
        app = self.app
        if app.read_only:
            return

        def chosen(seconds: int | None) -> None:
            if seconds is None:
                return
            now = app.source.now()
            rule = block_rule(address, seconds or None, now, why)
            existing = self._current(rule.id)
            if existing is None and (other := _own_rule_on(rule, app.state.rules)) is not None:
                # The operator's rule of another id on exactly this source (the file's, the form's): blocking it is
                # that rule's change (until session 24 refused as a duplicate match, pointing at x).
                existing, rule = other, replace(other, action=Action.DROP, expires_at=rule.expires_at)
            if existing is None:
                edit = Edit(EditKind.ADD, rule, origin=origin)
            else:  # made from the rule as shown: the engine refuses it if that is no longer the rule in force
                edit = Edit(EditKind.UPDATE, rule, origin=origin, expected=existing)
            if existing is None or (existing.action is Action.DROP and not _sooner(rule, existing)):
                self.run(edit)
                return
            for_ = "permanently" if rule.expires_at is None else f"for {fmt.span(rule.expires_at - now)}"
            if existing.action is not Action.DROP:
                self._asked(
                    edit,
                    ConfirmScreen(
                        f"Block {address}",
                        f"'{existing.id}' watches {address} (monitor). Make it a drop {for_}, from now?",
                        "Block",
                    ),
                )
                return
            # Blocking again for less than is left would shorten the block: said and asked (it was done silently:
            # a permanent block became 10 minutes with "updated rule").
            left = "permanently" if existing.expires_at is None else f"for {fmt.span(existing.expires_at - now)} more"
            self._asked(
                edit,
                ConfirmScreen(
                    f"Shorten the block on {address}",
                    f"{address} is blocked {left} ('{existing.id}'). Block it {for_} instead, from now?",
                    "Shorten",
                ),
            )

        app.push_screen(BlockScreen(address, why), chosen)

    def unblock(self, address: str, origin: Origin) -> None:
        app = self.app
        if app.read_only:
            return
        if app.state.rules_pending:
            self.pane(origin).problem = TABLE_ARRIVING
            return
        found = blocking_rules(address, app.state.rules)
        if not found:
            self._say(origin, f"no drop rule on the source alone blocks {address}")
            return
        names = ", ".join(f"'{s.rule.id}'" for s in found)

        def answered(yes: bool | None) -> None:
            if yes:
                for status in found:
                    self.run(Edit(EditKind.DELETE, status.rule, origin=origin))

        app.push_screen(
            ConfirmScreen(f"Unblock {address}", f"Delete {names}, which blocks {address}?", "Unblock"), answered
        )

    # --- doing: a worker thread, the result as a message ---------------------------------
    def run(self, edit: Edit) -> None:
        # A panic clears every drop rule in the engine, whatever the console's copy of the table holds.
        if self.app.state.rules_pending and edit.kind is not EditKind.PANIC:
            self.refused(edit, TABLE_ARRIVING, lockout=False)
            return
        self.app.run_worker(lambda: self._apply(edit), thread=True, group="edit", exit_on_error=False)

    def _apply(self, edit: Edit) -> None:
        app = self.app
        try:
            text = edit.apply(app.source)
        except LockoutRefused as exc:
            app.post_message(EditRefused(edit, exc.message, lockout=True))
        except IronpostError as exc:
            app.post_message(EditRefused(edit, exc.message, lockout=False))
        except Exception as exc:
            log.exception("%s failed", edit.describe())
            app.post_message(EditRefused(edit, f"{edit.describe()} failed: {exc}", lockout=False))
        else:
            app.post_message(EditApplied(edit, text))

    # --- the outcome ---------------------------------------------------------------------
    def add(self, rule: FilterRule, origin: Origin) -> None:
        """Add a rule made for the operator (a monitor rule from the Top pane), or update the one of its id."""
        if self.app.read_only:
            return
        exists = any(s.rule.id == rule.id for s in self.app.state.rules)
        self.run(Edit(EditKind.UPDATE if exists else EditKind.ADD, rule, origin=origin))

    def table_arrived(self) -> None:
        """The whole table is here: the panes that said it was still arriving stop saying so."""
        for origin in (Origin.TOP, Origin.EVENTS, Origin.DETAIL, Origin.ALERTS, Origin.RULES):
            pane = self.pane(origin)
            if pane.problem == TABLE_ARRIVING:
                pane.problem = ""
        if self.form is not None and self.form.error == TABLE_ARRIVING:
            self.form.error = ""

    def pane(self, origin: Origin) -> EventTable | AlertTable | RulesPane | AlertDetailScreen | TopPane:
        main = self.app.main
        if origin is Origin.TOP:
            return main.query_one(TopPane)
        if origin is Origin.EVENTS:
            return main.query_one(EventTable)
        if origin is Origin.DETAIL and self.app.detail is not None:
            return self.app.detail
        if origin in (Origin.ALERTS, Origin.DETAIL):
            return main.query_one(AlertTable)
        return main.query_one(RulesPane)

    def applied(self, edit: Edit, text: str) -> None:
        app = self.app
        app.state.notice(text)
        # Whole, in a toast, too: at 80 columns the notice line has some 29 cells, and cut there "added" and
        # "deleted" read alike ("… 'block-198.18.200.99'").
        app.notify(fmt.text(text), title="rules", timeout=6, markup=False)
        if edit.origin is Origin.FORM:
            if self.form is not None and app.screen is self.form:
                self.form.dismiss(None)
        else:
            self.pane(edit.origin).problem = ""
        app.redraw()

    def refused(self, edit: Edit, text: str, lockout: bool) -> None:
        if edit.origin is Origin.FORM:
            if self.form is not None:
                self.form.error = text + (FORCE_HINT if lockout else "")
                self.form.offer_force = lockout
            return
        if lockout and not edit.force:

            def answered(yes: bool | None) -> None:
                if yes:
                    self.run(edit.forced())

            self.app.push_screen(ConfirmScreen("Anti-lockout", text, "Force"), answered)
            return
        self._say(edit.origin, text)
        # The pane's status line is one line: the reason whole in a toast (at 80 columns the line kept only its
        # start, without the rule it names).
        self.app.notify(fmt.text(text), title="refused", severity="warning", timeout=SAID_SECS, markup=False)

    def _say(self, origin: Origin, text: str) -> None:
        """A refusal in the pane's status line for SAID_SECS, then the pane's own status again (its filter, its
        counts): until session 24 a refusal stayed there until the next successful edit, long after it was true."""
        pane = self.pane(origin)
        pane.problem = text
        self._said += 1
        said = self._said

        def over() -> None:
            # Not a later refusal's (of the same text, too), and never on a pane gone since (the alert detail,
            # closed: its watcher raised there and ended the console, an attacker's review).
            if said == self._said and pane.is_attached and pane.problem == text:
                pane.problem = ""

        pane.set_timer(SAID_SECS, over)  # the pane's: it ends with the pane


def _own_rule_on(block: FilterRule, rules: Sequence[RuleStatus]) -> FilterRule | None:
    """The operator's rule with exactly ``block``'s match (the source alone), under another id; auto-blocks and other
    tools' entries are taken over by the block itself (rules/table.py add)."""
    for status in rules:
        r = status.rule
        if (
            r.id != block.id
            and r.src_ip == block.src_ip
            and (r.dst_ip, r.dst_port, r.protocol) == (None, None, None)
            and not (r.auto or r.external or r.crowdsec)
        ):
            return r
    return None


def _sooner(rule: FilterRule, existing: FilterRule) -> bool:
    """Whether ``rule`` expires before ``existing`` does (never expiring is the latest)."""
    if rule.expires_at is None:
        return False
    return existing.expires_at is None or rule.expires_at < existing.expires_at
