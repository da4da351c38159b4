"""Which pane is shown (1-5) and the latest notice, on one line."""

from __future__ import annotations

from textual.content import Content
from textual.reactive import reactive
from textual.widgets import Static

from ironpost_tui.ui import format as fmt

PANE_TITLES = ("Traffic", "Alerts", "Events", "Rules", "Top")


class PaneTabs(Static):
    """The screen sets ``current``, ``alerting`` and ``notice``."""

    DEFAULT_CSS = """
    PaneTabs { height: 1; background: $surface; padding: 0 1; }
    """

    current: reactive[int] = reactive(0)
    alerting: reactive[bool] = reactive(False)
    notice: reactive[str] = reactive("")

    def render(self) -> Content:
        tabs: list[Content] = []
        for i, title in enumerate(PANE_TITLES):
            label = f" {i + 1} {title}{'!' if title == 'Alerts' and self.alerting else ''} "
            if i == self.current:
                tabs.append(Content.styled(label, "bold $text on $primary"))
            elif title == "Alerts" and self.alerting:
                tabs.append(Content.styled(label, "bold $error"))
            else:
                tabs.append(Content.styled(label, "$text-muted"))
        line = Content("").join(tabs)
        if self.notice:
            room = self.size.width - line.cell_length - 2
            text = fmt.fit(self.notice, room)  # shortened around its addresses, never through one
            if text:
                line = line + Content("  ") + Content.styled(text, "$text-muted italic")
        return line
