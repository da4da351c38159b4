"""Add or edit a rule, with the reasons it cannot be applied shown in the form."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.reactive import reactive
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, RadioButton, RadioSet, Static

from ironpost_tui.config.durations import EXAMPLES
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.ui.messages import RuleRequest
from ironpost_tui.ui.rule_fields import RuleFields, RuleInputError, parse_rule

FIELDS = (  # placeholders are examples, never a value the form would save
    ("id", "id", "e.g. block-scanner"),
    ("src_ip", "source", "e.g. 198.51.100.7 or 2001:db8::/32"),
    ("dst_ip", "destination", "e.g. 203.0.113.0/24 (empty: any)"),
    ("dst_port", "dst port", "e.g. 22 (with tcp or udp; empty: any)"),
    ("protocol", "protocol", "e.g. tcp, udp, icmp or 0-255"),
    ("expires", "expires in", f"e.g. {EXAMPLES}; empty: never"),
    ("description", "description", "e.g. known scanner"),
)


class RuleForm(ModalScreen[None]):
    """Posts RuleSubmitted; the app sets ``error`` (and ``offer_force`` after an
    anti-lockout refusal) or dismisses the form when the rule is in force."""

    class RuleSubmitted(RuleRequest):
        """Save (or Force) with a rule that passed the form's checks."""

        rule: FilterRule

        def __init__(self, form: RuleForm, rule: FilterRule, editing: bool, force: bool) -> None:
            super().__init__(form, rule)
            self.editing = editing
            self.force = force

    BINDINGS = [
        Binding("escape", "cancel", "Cancel"),
        Binding("ctrl+s", "save", "Save"),
    ]

    DEFAULT_CSS = """
    RuleForm { align: center middle; }
    RuleForm #dialog {
        width: 76;
        max-width: 100%;
        height: auto;
        max-height: 100%;
        border: thick $primary;
        background: $surface;
        padding: 0 1;
    }
    RuleForm #title { text-style: bold; width: 100%; }
    RuleForm Grid {
        grid-size: 2;
        grid-columns: 13 1fr;
        grid-rows: 1;
        grid-gutter: 0 1;
        height: auto;
        margin: 1 0 0 0;
    }
    RuleForm Grid Label { color: $text-muted; }
    RuleForm RadioSet { layout: horizontal; height: 1; border: none; padding: 0; background: $surface; }
    RuleForm RadioButton { width: auto; padding: 0 2 0 0; background: $surface; }
    RuleForm #form-error { color: $error; text-style: bold; height: auto; margin: 1 0 0 0; }
    RuleForm #form-error.-empty { display: none; }
    RuleForm #buttons { height: auto; margin: 1 0 0 0; align-horizontal: right; }
    RuleForm Button { margin: 0 0 0 1; }
    RuleForm #force { display: none; }
    RuleForm.-force #force { display: block; }
    """

    error: reactive[str] = reactive("")
    offer_force: reactive[bool] = reactive(False)

    def __init__(
        self,
        rule: FilterRule | None,
        clock: Callable[[], float],
        *,
        latest: Callable[[str], FilterRule | None] | None = None,
        cursor_blink: bool = True,
    ) -> None:
        super().__init__()
        self.original = rule
        self.clock = clock  # the source's: an expiry counts from the save, not from the form's opening
        self.latest = latest  # the rule of an id as the table has it now (an untouched expiry is the table's)
        self._fields = RuleFields() if rule is None else RuleFields.of(rule, clock())
        self._cursor_blink = cursor_blink
        self._last: FilterRule | None = None

    @property
    def editing(self) -> bool:
        return self.original is not None

    def compose(self) -> ComposeResult:
        title = f"Edit rule {self.original.id}" if self.original else "Add a rule"
        with Vertical(id="dialog"):
            yield Label(title, id="title", markup=False)
            with Grid():
                yield Label("action")
                with RadioSet(id="action", compact=True):
                    yield RadioButton("drop", value=self._fields.action == "drop", id="action-drop", compact=True)
                    yield RadioButton(
                        "monitor", value=self._fields.action == "monitor", id="action-monitor", compact=True
                    )
                for name, label, hint in FIELDS:
                    yield Label(label)
                    yield Input(
                        getattr(self._fields, name),
                        placeholder=hint,
                        id=f"field-{name}",
                        compact=True,
                        disabled=name == "id" and self.editing,
                    )
            yield Static("", id="form-error", classes="-empty", markup=False)
            with Horizontal(id="buttons"):
                yield Button("Force", id="force", variant="error", compact=True)
                yield Button("Save", id="save", variant="primary", compact=True)
                yield Button("Cancel", id="cancel", compact=True)

    def on_mount(self) -> None:
        for box in self.query(Input):
            box.cursor_blink = self._cursor_blink
        first = "#field-src_ip" if self.editing else "#field-id"
        self.query_one(first, Input).focus()

    def fields(self) -> RuleFields:
        def text(name: str) -> str:
            return self.query_one(f"#field-{name}", Input).value

        monitor = self.query_one("#action-monitor", RadioButton).value
        return RuleFields(
            id=text("id"),
            action=Action.MONITOR.value if monitor else Action.DROP.value,
            src_ip=text("src_ip"),
            dst_ip=text("dst_ip"),
            dst_port=text("dst_port"),
            protocol=text("protocol"),
            expires=text("expires"),
            description=text("description"),
        )

    def watch_error(self, error: str) -> None:
        box = self.query_one("#form-error", Static)
        box.update(error)
        box.set_class(not error, "-empty")
        self.query_one("#save", Button).disabled = False

    def watch_offer_force(self, offer: bool) -> None:
        self.set_class(offer, "-force")

    def _submit(self, force: bool) -> None:
        for box in self.query(Input):
            box.remove_class("-invalid")
        try:
            # An auto-block the operator edits is theirs from then on (out of the journal, into the file:
            # control.update), as one they block over is (rules/table.py add); until session 23 it stayed an
            # auto-block, its new expiry included, and could be lifted with its incident.
            fields = self.fields()
            rule = parse_rule(fields, self.clock(), auto=False)
            if self.original is not None and fields.expires == self._fields.expires:
                # The expiry as it was shown, untouched: the rule's own as the table has it now (counted from the
                # save, minutes in the form would have lengthened it; the one shown would undo a re-block made
                # meanwhile from elsewhere, the command line's).
                now = self.latest(self.original.id) if self.latest is not None else None
                rule = replace(rule, expires_at=(now or self.original).expires_at)
        except RuleInputError as exc:
            for name in exc.fields:
                if name != "action":
                    self.query_one(f"#field-{name}", Input).add_class("-invalid")
            lines = [f"{name}: {why}" for name, why in exc.fields.items()]
            self.error = "\n".join(lines) or exc.general
            self.offer_force = False
            return
        if rule != self._last:
            self.offer_force = force and self.offer_force
        self._last = rule
        self.query_one("#save", Button).disabled = True
        self.post_message(self.RuleSubmitted(self, rule, self.editing, force))

    def went(self, rule_id: str, holder: FilterRule | None = None) -> None:
        """The rule edited is no longer in the table: said, and the form adds it from now on; or, another rule
        holding its match now (``holder``: a block that took an auto-block over), said, and nothing more."""
        self.query_one("#save", Button).disabled = False
        self.offer_force = False
        if holder is not None:
            self.error = (
                f"'{rule_id}' went while the form was open; '{holder.id}' ({holder.action.value}) holds its match now: "
                "edit that one (escape)"
            )
            return
        self.original = None
        self.query_one("#title", Label).update(f"Add rule {rule_id} again")
        self.error = (
            f"'{rule_id}' went while the form was open (it expired, or was deleted or lifted elsewhere): nothing of "
            "it is in force now. Save again to add it as shown."
        )

    def action_save(self) -> None:
        self._submit(force=False)

    def action_cancel(self) -> None:
        self.dismiss(None)

    @on(Input.Submitted)
    def _enter(self, message: Input.Submitted) -> None:
        message.stop()
        self._submit(force=False)

    @on(Button.Pressed, "#save")
    def _save(self) -> None:
        self._submit(force=False)

    @on(Button.Pressed, "#force")
    def _force(self) -> None:
        self._submit(force=True)

    @on(Button.Pressed, "#cancel")
    def _cancel(self) -> None:
        self.dismiss(None)
