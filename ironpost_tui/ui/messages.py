"""Messages named for what happened.

Up from the poll worker: what the source said; from the edit and export workers: how
it went.  What the operator asks for comes up from the widgets, as the messages they
define (``EventTable.BlockRequested``...).  Widgets never call each other.
"""

from __future__ import annotations

from collections.abc import Iterator

from textual.message import Message
from textual.widget import Widget

from ironpost_tui.detectors import AlertChange
from ironpost_tui.engine.crowdsec.status import CrowdSecStatus
from ironpost_tui.engine.feed import RulesHead, SourceInfo, Update
from ironpost_tui.model import FilterRule, PacketEvent, RuleStatus, StatsSample
from ironpost_tui.triage.values import TopSnapshot
from ironpost_tui.ui.edits import Edit

# --- bases of the widgets' own requests -------------------------------------------


class WidgetRequest(Message):
    """What a widget asks of the app; ``control`` is that widget."""

    def __init__(self, widget: Widget) -> None:
        super().__init__()
        self.widget = widget

    @property
    def control(self) -> Widget:
        return self.widget


class RuleRequest(WidgetRequest):
    """A request about one rule (or, for a new one, none)."""

    def __init__(self, widget: Widget, rule: FilterRule | None) -> None:
        super().__init__(widget)
        self.rule = rule


class BlockSource(WidgetRequest):
    """Block this source address (the app asks for how long)."""

    def __init__(self, widget: Widget, address: str, why: str) -> None:
        super().__init__(widget)
        self.address = address
        self.why = why


class UnblockSource(WidgetRequest):
    """Delete the rule that blocks this source address."""

    def __init__(self, widget: Widget, address: str) -> None:
        super().__init__(widget)
        self.address = address


class CaptureSource(WidgetRequest):
    """Capture this source address's packets (the app asks for how long, how much and where)."""

    def __init__(self, widget: Widget, address: str) -> None:
        super().__init__(widget)
        self.address = address


# --- from the poll worker ----------------------------------------------------------


class SourceStarted(Message):
    """The engine compiled and attached (or the recording opened)."""

    def __init__(self, info: SourceInfo) -> None:
        super().__init__()
        self.info = info


class SourceFailed(Message):
    """The source could not start, or stopped for good (the interface went away)."""

    def __init__(self, title: str, text: str, exit_status: int) -> None:
        super().__init__()
        self.title = title
        self.text = text
        self.exit_status = exit_status


class StatsSampled(Message):
    """A new counters sample; a later one makes a queued one stale."""

    def __init__(self, sample: StatsSample) -> None:
        super().__init__()
        self.sample = sample

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, StatsSampled)


class EventsReceived(Message):
    """A batch of packet events; never replaced or dropped."""

    def __init__(self, events: tuple[PacketEvent, ...]) -> None:
        super().__init__()
        self.events = events


class AlertsChanged(Message):
    def __init__(self, changes: tuple[AlertChange, ...]) -> None:
        super().__init__()
        self.changes = changes


class RulesRefreshed(Message):
    """The whole rule table, as the kernel holds it; a later one supersedes it."""

    def __init__(self, rules: tuple[RuleStatus, ...]) -> None:
        super().__init__()
        self.rules = rules

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, RulesRefreshed)


class RulesHeadShown(Message):
    """The first rows of a long table and its counts; the whole table follows (a RulesRefreshed)."""

    def __init__(self, head: RulesHead) -> None:
        super().__init__()
        self.head = head


class TopSampled(Message):
    """The latest top-talker lists; a later one makes a queued one stale."""

    def __init__(self, top: TopSnapshot) -> None:
        super().__init__()
        self.top = top

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, TopSampled)


class LapiReported(Message):
    """The CrowdSec LAPI's state as the bouncer last saw it; a later one supersedes it."""

    def __init__(self, status: CrowdSecStatus) -> None:
        super().__init__()
        self.status = status

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, LapiReported)


class NoticePosted(Message):
    """A line for the operator: a reload, an expiry, a refusal, the interface state."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class PlaybackRewound(Message):
    """A replay went back in time: forget what was shown, the whole state follows."""


class SourceAdvanced(Message):
    """The source's clock reached ``at`` (every poll, events or not)."""

    def __init__(self, at: float) -> None:
        super().__init__()
        self.at = at

    def can_replace(self, message: Message) -> bool:
        return isinstance(message, SourceAdvanced)


def messages_for(update: Update) -> Iterator[Message]:
    """The messages one poll's update turns into, in the order they must be applied."""
    if update.reset:
        yield PlaybackRewound()
    if update.rules_head is not None:
        yield RulesHeadShown(update.rules_head)
    if update.rules is not None:
        yield RulesRefreshed(update.rules)
    if update.sample is not None:
        yield StatsSampled(update.sample)
    if update.events:
        yield EventsReceived(update.events)
    if update.alerts:
        yield AlertsChanged(update.alerts)
    if update.top is not None:
        yield TopSampled(update.top)
    if update.crowdsec is not None:
        yield LapiReported(update.crowdsec)
    for text in update.notices:
        yield NoticePosted(text)
    yield SourceAdvanced(update.at)


# --- from the edit worker -----------------------------------------------------------


class EditApplied(Message):
    """A rule change is in force (the next RulesRefreshed shows it)."""

    def __init__(self, edit: Edit, text: str) -> None:
        super().__init__()
        self.edit = edit
        self.text = text


class EditRefused(Message):
    """A rule change was refused; nothing of it applied.  ``lockout``: it would drop a
    protected address, and may be forced."""

    def __init__(self, edit: Edit, text: str, lockout: bool) -> None:
        super().__init__()
        self.edit = edit
        self.text = text
        self.lockout = lockout


# --- from the export worker --------------------------------------------------------------


class ExportWritten(Message):
    """The export worker wrote ``count`` rows to ``path`` (or failed: ``error``)."""

    def __init__(self, kind: str, path: str, count: int, error: str = "") -> None:
        super().__init__()
        self.kind = kind
        self.path = path
        self.count = count
        self.error = error


# --- from the keep-enforcing worker (quitting) ---------------------------------------------


class EnforcementKept(Message):
    """The program is pinned and keeps enforcing after the console: ``text`` says what and how to remove it."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text


class KeepFailed(Message):
    """The program could not be pinned: nothing changed, the console stays."""

    def __init__(self, text: str) -> None:
        super().__init__()
        self.text = text
