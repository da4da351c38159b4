"""`c` on an events row (Pilot, in process, the real engine on a veth): the dialog asks duration, size
and file, the console's own program copies that source's packets, and the file has them with their
verdict and rule.  Needs root."""

from __future__ import annotations

import asyncio
import ipaddress
import struct
import time
from pathlib import Path

import pytest
from dpkt import pcapng
from support import netlab
from support.ui import TEST_SETTINGS, Messages
from test_ui_live import START_TIMEOUT, netlab_attached, ns_sender, send, wait_until
from textual.widgets import Input, Label

from ironpost_tui.config.store import RuleStore
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.ui.app import IronpostApp, make_app
from ironpost_tui.ui.capture_action import CaptureProgressed
from ironpost_tui.ui.messages import SourceFailed, SourceStarted
from ironpost_tui.ui.screens.capture import CaptureScreen
from ironpost_tui.ui.widgets.event_table import EventTable

pytestmark = pytest.mark.root


def packets(path: Path) -> list[tuple[bytes, str]]:
    """(bytes, comment) of each enhanced packet block, read with dpkt."""
    raw, off, out = path.read_bytes(), 0, []
    while off < len(raw):
        btype, blen = struct.unpack_from("<II", raw, off)
        if btype == pcapng.PCAPNG_BT_EPB:
            epb = pcapng.EnhancedPacketBlockLE(raw[off : off + blen])
            comment = next(o.data.decode() for o in epb.opts if o.code == pcapng.PCAPNG_OPT_COMMENT)
            out.append((bytes(epb.pkt_data[: epb.caplen]), comment))
        off += blen
    return out


def test_c_on_an_event_row_captures_that_source(lab: netlab.Lab, tmp_path: Path) -> None:
    """A monitor rule on the namespace's address makes events; `c` on one, a bad duration (the dialog
    stays, saying why), then 30s / 1MiB / a path: the datagrams sent next are in the file with
    verdict=monitor and the rule's id, the file is 0600; `c` again stops the capture (its end shows)."""
    store = RuleStore(tmp_path / "rules.toml")
    rule = FilterRule("mon-ns", Action.MONITOR, src_ip=ipaddress.ip_network(lab.ns_ip4))
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(rule,), store=store))
    source = LiveSource(engine, None)
    sender = ns_sender(lab)
    out = tmp_path / "ui.pcapng"

    async def main() -> None:
        messages = Messages()
        app = make_app(TEST_SETTINGS, source, cursor_blink=False)
        async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
            await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START_TIMEOUT)
            assert messages.count(SourceFailed) == 0
            assert isinstance(pilot.app, IronpostApp)
            send(sender, lab, 40999, b"before")
            await pilot.press("3")
            events = pilot.app.main.query_one(EventTable)
            # The tests' console redraws every 60 s (TEST_SETTINGS): the first data is drawn at once, and
            # the events may come after it (one CI run in three), so the pane is redrawn while waiting.
            end = time.monotonic() + 20
            while events.row_count == 0:
                assert time.monotonic() < end, "no event row within 20 s of datagrams the monitor rule matches"
                pilot.app.redraw()
                await asyncio.sleep(0.05)
            await pilot.pause()
            await pilot.press("c")
            dialog = pilot.app.screen
            assert isinstance(dialog, CaptureScreen)
            assert lab.ns_ip4 in str(dialog.query_one("#title", Label).render())
            # The default file is named whole, in the current directory (a bare name until session 25).
            shown = Path(dialog.query_one("#path", Input).value)
            assert shown.is_absolute() and shown.parent == Path.cwd(), shown
            dialog.query_one("#duration", Input).value = "forever"
            dialog.query_one("#path", Input).value = str(out)
            await pilot.press("enter")
            assert pilot.app.screen is dialog  # refused: stays open, says why
            assert "duration 'forever'" in str(dialog.query_one("#problem", Label).render())
            assert not out.exists()
            dialog.query_one("#duration", Input).value = "30s"
            dialog.query_one("#size", Input).value = "1MiB"
            seen = messages.count(CaptureProgressed)
            await pilot.press("enter")
            assert not isinstance(pilot.app.screen, CaptureScreen)
            await wait_until(pilot, lambda: out.exists(), timeout=20)
            await messages.wait(CaptureProgressed, pilot, after=seen, timeout=20)
            send(sender, lab, 40999, b"MARK-UI-CAPTURE", n=5)
            await wait_until(pilot, lambda: len(packets(out)) >= 5, timeout=20)
            # Its progress on the notice line, the count first: at 80 columns the line keeps its start (it read
            # "capturing to…" until session 25).
            await wait_until(pilot, lambda: any(n.startswith("capturing: ") for n in pilot.app.state.notices), 20)
            said = next(n for n in reversed(pilot.app.state.notices) if n.startswith("capturing: "))
            assert said.split(",")[0].endswith(" packets") and said.endswith(f"to {out}"), said
            ends = messages.count(CaptureProgressed)
            await pilot.press("3", "c")  # again: stops it
            await wait_until(pilot, lambda: pilot.app.capturing.running is None, timeout=20)
            assert messages.count(CaptureProgressed) > ends
            await pilot.press("q")

    try:
        asyncio.run(main())
    finally:
        source.close()
        sender.close()
    got = packets(out)
    marked = [(data, comment) for data, comment in got if b"MARK-UI-CAPTURE" in data]
    assert len(marked) == 5, got
    for _data, comment in marked:
        assert comment.startswith("ironpost verdict=monitor rule=mon-ns slot="), comment
    assert not any(b"before" in data for data, _ in got)  # sent before the capture
    assert out.stat().st_mode & 0o777 == 0o600
    assert not netlab_attached(lab)
