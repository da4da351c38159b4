"""The top line: what the console is attached to, and how it is doing."""

from __future__ import annotations

from dataclasses import dataclass

from textual.content import Content
from textual.reactive import reactive
from textual.widget import Widget

from ironpost_tui.engine.crowdsec.status import CrowdSecStatus, LapiState
from ironpost_tui.kernel.host import InterfaceState
from ironpost_tui.ui import format as fmt


@dataclass(frozen=True)
class StatusView:
    title: str = "starting"  # live, starting, replay of FILE
    iface: str = ""
    mode: str = ""
    attached: bool = False
    silent: float = 0.0  # seconds the source has not answered, once the console says so (0: it answers)
    interface_state: InterfaceState = InterfaceState.UP
    uptime: float = 0.0
    blocklist_used: int = 0
    blocklist_capacity: int = 0
    events_lost: int = 0
    config_path: str = ""
    rules_path: str = ""  # where the operator's rules are kept (SourceInfo.rules_path)
    crowdsec: CrowdSecStatus | None = None  # None: no [crowdsec]
    now: float = 0.0  # wall-clock seconds, for the last pull's age
    replay: bool = False
    position: float = 0.0
    duration: float = 0.0
    speed: float = 1.0
    paused: bool = False  # the playback (replay) or the events (live)


class StatusBar(Widget):
    """One line; the screen sets ``view``.  What does not fit is left out, least useful first."""

    DEFAULT_CSS = """
    StatusBar {
        height: 1;
        background: $panel;
        color: $foreground;
        padding: 0 1;
    }
    StatusBar.-detached { background: $error 30%; }
    """

    view: reactive[StatusView] = reactive(StatusView)

    def watch_view(self, view: StatusView) -> None:
        detached = not view.attached and not view.replay and view.title != "starting"
        self.set_class(detached or view.silent > 0, "-detached")
        self.set_class(view.paused, "-paused")

    def render(self) -> Content:
        return render_status(self.view, self.content_size.width)


def lapi_part(cs: CrowdSecStatus, now: float) -> Content:
    """ "lapi up 1,234 · 3s ago": the LAPI's state, decisions in force, the last successful pull."""
    style = {LapiState.UP: "$success", LapiState.CONNECTING: "$warning", LapiState.DOWN: "$error bold"}[cs.state]
    ago = f" · {fmt.span(max(0.0, now - cs.last_pull))} ago" if cs.last_pull else " · never pulled"
    return Content("lapi ") + Content.styled(str(cs.state), style) + Content(f" {cs.decisions:,}{ago}")


def render_status(v: StatusView, width: int = 1000) -> Content:
    """The status line, dropping the parts with the highest rank number until it fits ``width``."""
    parts: list[tuple[int, Content]] = []  # (rank, part): rank 0 always stays
    paused = Content.styled(" PAUSED ", "bold $background on $warning")
    if v.replay:
        parts.append((0, Content.from_markup("[b]$title[/b]", title=fmt.text(v.title))))
        parts.append((0, Content(f"{fmt.position(v.position)}/{fmt.position(v.duration)}")))
        parts.append((0, paused if v.paused else Content(f"{v.speed:g}×")))
        parts.append((3, Content(fmt.text(f"{v.iface} {v.mode}"))))
    else:
        if v.title == "starting":
            link = Content.styled("starting…", "$warning")
        elif v.silent > 0:  # the figures are the last ones it gave: never shown as if live
            link = Content.styled(f"no answer {fmt.span(v.silent)}", "$error bold")
        elif v.attached and v.interface_state == InterfaceState.UP:
            link = Content.styled("attached", "$success")
        elif v.attached:
            link = Content.styled(f"attached, link {v.interface_state}", "$warning")
        else:
            link = Content.styled("detached", "$error bold")
        where = Content.from_markup("[b]$iface[/b] ", iface=fmt.text(v.iface)) + (
            Content(fmt.text(f"{v.mode} ")) if v.mode else Content("")
        )
        parts.append((0, where + link))
        if v.paused:
            parts.append((0, paused))
        parts.append((1, Content(f"up {fmt.span(v.uptime)}")))
    parts.append((2, Content(f"blocklist {fmt.count(v.blocklist_used)}/{fmt.count(v.blocklist_capacity)}")))
    if v.crowdsec is not None and not v.replay:
        parts.append((0, lapi_part(v.crowdsec, v.now)))
    lost = Content(f"lost {fmt.count(v.events_lost)}")
    parts.append((0, lost.stylize("$warning") if v.events_lost else lost))
    if not v.replay:
        # Where the rules are kept when no file is watched (the demo's state file), not a bare "no config file" while
        # the rule detail names the file (until session 25).
        kept_in = fmt.text(v.config_path) or (
            f"rules in {fmt.text(v.rules_path)}" if v.rules_path else "no config file"
        )
        parts.append((4, Content(kept_in)))
    sep = Content.styled(" │ ", "$text-muted")
    for drop in (None, 4, 3, 2, 1):
        kept = [part for rank, part in parts if drop is None or rank < drop]
        line = sep.join(kept)
        if line.cell_length <= width:
            return line
    return line
