"""The console (Pilot, in process) against the real engine on a veth: a rule
added through the form drops the namespace's datagrams; deleting it (d + y)
lets them through again.  Needs root."""

from __future__ import annotations

import asyncio
import ipaddress
import json
import select
import socket
import time
from pathlib import Path

import pytest
from support import bpftool, netlab
from support import engine as running
from support.ui import TEST_SETTINGS, Messages
from textual.pilot import Pilot
from textual.widgets import Input

from ironpost_tui.config.store import RuleStore
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.live import LiveSource
from ironpost_tui.ui.app import IronpostApp, make_app
from ironpost_tui.ui.messages import EditApplied, EditRefused, RulesRefreshed, SourceFailed, SourceStarted
from ironpost_tui.ui.screens.confirm import ConfirmScreen
from ironpost_tui.ui.widgets.rule_form import RuleForm
from ironpost_tui.ui.widgets.rules_pane import RulesPane

pytestmark = pytest.mark.root
START_TIMEOUT = 120.0


class Receiver:
    def __init__(self, addr: str) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((addr, 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.got: list[bytes] = []

    def drain(self, settle: float = 0.3) -> list[bytes]:
        end = time.monotonic() + settle
        while True:
            left = end - time.monotonic()
            if left <= 0:
                break
            select.select([self.sock], [], [], left)
            while True:
                try:
                    self.got.append(self.sock.recv(2048))
                except BlockingIOError:
                    break
        got, self.got = self.got, []
        return got


def ns_sender(lab: netlab.Lab) -> socket.socket:
    with netlab.in_netns(lab.ns):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    return s


def send(sock: socket.socket, lab: netlab.Lab, port: int, tag: bytes, n: int = 5) -> None:
    for i in range(n):
        sock.sendto(tag + b"-%d" % i, (lab.host_ip4, port))


async def wait_until(pilot: Pilot[int], cond, timeout: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > end:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.05)
    await pilot.pause()


def test_console_adds_and_deletes_a_drop_rule_on_the_real_engine(lab: netlab.Lab, tmp_path: Path) -> None:
    store = RuleStore(tmp_path / "rules.toml")
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), store=store))
    source = LiveSource(engine, None)
    recv = Receiver(lab.host_ip4)
    sender = ns_sender(lab)
    key = ipaddress.IPv4Address(lab.ns_ip4).packed

    async def main() -> None:
        messages = Messages()
        app = make_app(TEST_SETTINGS, source, cursor_blink=False)
        async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
            await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START_TIMEOUT)
            assert messages.count(SourceFailed) == 0, [m for m in messages.seen if isinstance(m, SourceFailed)]
            assert isinstance(pilot.app, IronpostApp) and pilot.app.info.attached

            # control: before any rule, datagrams arrive
            send(sender, lab, recv.port, b"before")
            before = recv.drain()
            assert len(before) == 5, before

            await pilot.press("a")
            form = pilot.app.screen
            assert isinstance(form, RuleForm)
            form.query_one("#field-id", Input).value = "ui-block-ns"
            form.query_one("#field-src_ip", Input).value = lab.ns_ip4
            await pilot.pause()
            assert form.query_one("#action-drop").value  # type: ignore[attr-defined]
            done = messages.count(EditApplied) + messages.count(EditRefused)
            tables = messages.count(RulesRefreshed)
            await pilot.press("ctrl+s")
            await messages.wait((EditApplied, EditRefused), pilot, after=done, timeout=15)
            assert messages.count(EditRefused) == 0, [m for m in messages.seen if isinstance(m, EditRefused)]
            assert not isinstance(pilot.app.screen, RuleForm)

            assert running.datapath(engine).map_lookup("BLOCKLIST", key) is not None
            send(sender, lab, recv.port, b"blocked")
            assert recv.drain(0.5) == []

            await messages.wait(RulesRefreshed, pilot, after=tables, timeout=10)
            pilot.app.redraw()
            await pilot.pause()
            rules = pilot.app.main.query_one(RulesPane)
            assert "ui-block-ns" in rules.grid.keys

            await pilot.press("4")
            assert rules.selected() is not None and rules.selected().id == "ui-block-ns"  # type: ignore[union-attr]
            done = messages.count(EditApplied) + messages.count(EditRefused)
            await pilot.press("d")
            assert isinstance(pilot.app.screen, ConfirmScreen)
            await pilot.press("y")
            await messages.wait((EditApplied, EditRefused), pilot, after=done, timeout=15)
            assert messages.count(EditRefused) == 0

            assert running.datapath(engine).map_lookup("BLOCKLIST", key) is None
            send(sender, lab, recv.port, b"after")
            after = recv.drain()
            assert len(after) == 5, after
            await pilot.press("q")

    try:
        asyncio.run(main())
    finally:
        source.close()
        sender.close()
        recv.sock.close()
    assert not netlab_attached(lab)


def test_another_tools_blocklist_entry_shows_in_the_rules_pane_and_d_deletes_it(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    """``bpftool map update`` behind the console's back: the rules pane shows the entry as a rule of
    another tool (``external:ADDRESS``, marked ``external``), which the form does not edit and ``d`` deletes."""
    audit = tmp_path / "audit.log"
    engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", rules=(), store=RuleStore(tmp_path / "r.toml"),
                                  audit_log=audit))  # fmt: skip
    source = LiveSource(engine, None)
    recv = Receiver(lab.host_ip4)
    sender = ns_sender(lab)
    rule_id = f"external:{lab.ns_ip4}"

    async def main() -> None:
        messages = Messages()
        app = make_app(TEST_SETTINGS, source, cursor_blink=False)
        async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
            await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START_TIMEOUT)
            assert messages.count(SourceFailed) == 0
            assert isinstance(pilot.app, IronpostApp) and engine.report is not None
            rules = pilot.app.main.query_one(RulesPane)
            send(sender, lab, recv.port, b"before")
            assert len(recv.drain()) == 5
            assert rules.grid.row_count == 0

            handle = ("id", str(bpftool.prog_maps(engine.report.prog_id)["BLOCKLIST"]))
            bpftool.blocklist_update(handle, lab.ns_ip4)

            def shown() -> bool:
                pilot.app.redraw()  # the console redraws on its refresh timer: draw what arrived
                return rule_id in rules.grid.keys

            await wait_until(pilot, shown)
            assert rules.grid.cell(rule_id, "source") == "external"
            assert rules.grid.cell(rule_id, "map") == "BLOCKLIST"
            send(sender, lab, recv.port, b"blocked")
            assert recv.drain(0.5) == []

            await pilot.press("4")
            await pilot.press("e")  # another tool's: no form, a word on what to do
            assert not isinstance(pilot.app.screen, RuleForm)
            assert "another tool's BLOCKLIST entry" in rules.problem
            done = messages.count(EditApplied) + messages.count(EditRefused)
            await pilot.press("d")
            assert isinstance(pilot.app.screen, ConfirmScreen)
            await pilot.press("y")
            await messages.wait((EditApplied, EditRefused), pilot, after=done, timeout=15)
            assert messages.count(EditRefused) == 0
            assert bpftool.blocklist_lookup(handle, lab.ns_ip4) is None
            send(sender, lab, recv.port, b"after")
            assert len(recv.drain()) == 5
            await pilot.press("q")

    try:
        asyncio.run(main())
    finally:
        source.close()
        sender.close()
        recv.sock.close()
    changes = [json.loads(line) for line in audit.read_text().splitlines()]
    assert [(c["change"], c["rule"]["id"], c["via"]) for c in changes if "rule" in c] == [
        ("add", rule_id, "external"),
        ("delete", rule_id, "console"),
    ]


def netlab_attached(lab: netlab.Lab) -> list[tuple[str, int]]:
    from ironpost_tui.kernel import libbpf

    return libbpf.xdp_query(lab.ifindex).prog_ids
