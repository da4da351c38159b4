"""`ironpost-tui demo` end to end under tmux: live panes and an alert of each
detector; every way out (q then r, SIGHUP) removes the lab, the program and the pins;
after kill -9 the next run cleans the leftovers; the demo's host address is protected.  Needs root.

The demo uses fixed names (namespace ironpost-demo, veth ipdemo0): do not run
two of these tests at once on one machine."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.agents import IRONPOST, Agent, prog_exists
from support.metrics_lab import fetch, free_port
from support.tmux import Session, sessions

from ironpost_tui.demo import lab as demo_lab
from ironpost_tui.kernel import libbpf

pytestmark = pytest.mark.root
NS, HOST_IF = demo_lab.NS, demo_lab.HOST_IF
PIN_DIR = Path("/sys/fs/bpf/ironpost") / HOST_IF
START = 120.0


def netns_exists() -> bool:
    return NS in subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split()


def link_exists() -> bool:
    return subprocess.run(["ip", "link", "show", HOST_IF], capture_output=True).returncode == 0


def attached_progs() -> list[tuple[str, int]]:
    p = Path(f"/sys/class/net/{HOST_IF}/ifindex")
    if not p.exists():
        return []
    return libbpf.xdp_query(int(p.read_text())).prog_ids


def leftovers(prog_ids: list[int]) -> list[str]:
    found = []
    if netns_exists():
        found.append(f"namespace {NS}")
    if link_exists():
        found.append(f"link {HOST_IF}")
    if attached_progs():
        found.append(f"xdp on {HOST_IF}: {attached_progs()}")
    found += [f"prog id {i} still loaded" for i in prog_ids if prog_exists(i)]
    if PIN_DIR.exists():
        found.append(f"pins {sorted(p.name for p in PIN_DIR.iterdir())}")
    if demo_lab.STATE_DIR.exists():
        found.append(f"state directory {demo_lab.STATE_DIR}")
    return found


def temp_dirs() -> set[Path]:
    """The per-run state directories older versions made (and kill -9 left behind)."""
    return set(Path(tempfile.gettempdir()).glob("ironpost-demo-*"))


def wait_clean(prog_ids: list[int], timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while found := leftovers(prog_ids):
        if time.monotonic() > end:
            raise AssertionError(f"left behind: {found}")
        time.sleep(0.1)


@pytest.fixture
def demo() -> Iterator[list[Session]]:
    if netns_exists() or link_exists():
        pytest.fail("a demo lab exists already (another demo running?): not touching it")
    before = temp_dirs()
    try:
        with sessions() as made:
            yield made
    finally:
        demo_lab.remove()
        subprocess.run([*IRONPOST, "cleanup", HOST_IF], capture_output=True)
    assert temp_dirs() - before == set(), "the demo left a temporary directory behind"
    assert not demo_lab.STATE_DIR.exists()


def start(made: list[Session]) -> tuple[Session, list[int]]:
    s = Session([*IRONPOST, "demo"], 160, 48)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t and HOST_IF in t, START, "the demo console attached")
    progs = [pid for _mode, pid in attached_progs()]
    assert progs, "the console says attached, nothing is on ipdemo0"
    return s, progs


def test_demo_shows_traffic_events_and_both_detectors_then_q_removes_everything(demo) -> None:  # type: ignore[no-untyped-def]
    s, progs = start(demo)
    t0 = time.monotonic()
    screen = s.wait_screen(
        lambda t: "syn_flood" in t and "port_scan" in t, 30, "an alert of each detector (syn_flood, port_scan)"
    )
    assert time.monotonic() - t0 <= 30
    # traffic: some protocol row with a non-zero pkt/s; events: rows naming lab addresses
    assert re.search(r"│ (TCP|UDP|ICMP|TOTAL)\s+[^\d│]*?\s[1-9][\d.]*[kM]?\s", screen), screen
    assert len(re.findall(r"198\.18\.200\.\d+", screen)) >= 3, screen
    for title in ("Traffic", "Alerts", "Events", "Rules"):
        assert title in screen
    s.keys("q")  # the demo's drop rules are in force: it asks (remove, stay; nothing to keep them on)
    question = s.wait_screen(lambda t: f"drop rules on {HOST_IF}?" in t, 10, "the quit question")
    assert "Quit and remove (r)" in question and "Keep enforcing" not in question, question
    s.keys("r")
    assert s.wait_exit(15), s.capture()
    wait_clean(progs)


def test_a_second_demo_is_refused_and_leaves_the_first_one_running(demo) -> None:  # type: ignore[no-untyped-def]
    """Exit 13, one line, while a demo runs; the first one's lab, program and console untouched.  Until session 24
    the second one removed the first one's lab, and its cleanup's SIGUSR2 killed the first one's console."""
    s, progs = start(demo)
    proc = subprocess.run([*IRONPOST, "demo", "--headless"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 13 and "another ironpost-tui demo (pid " in proc.stderr, proc.stderr
    assert [pid for _mode, pid in attached_progs()] == progs and netns_exists() and s.alive()
    time.sleep(1.0)
    assert "attached" in s.capture()
    s.keys("q")
    s.wait_screen(lambda t: f"drop rules on {HOST_IF}?" in t, 10, "the quit question")
    s.keys("r")
    assert s.wait_exit(15), s.capture()
    wait_clean(progs)


def test_demo_killed_with_sighup_removes_everything(demo) -> None:  # type: ignore[no-untyped-def]
    s, progs = start(demo)
    time.sleep(1.0)
    os.kill(s.pid, signal.SIGHUP)
    assert s.wait_exit(15), s.capture()
    wait_clean(progs)


def test_demo_after_kill_9_the_next_run_cleans_the_leftovers(demo) -> None:  # type: ignore[no-untyped-def]
    s, progs = start(demo)
    traffic_pids = subprocess.run(["ip", "netns", "pids", NS], capture_output=True, text=True).stdout.split()
    assert traffic_pids, "no traffic generator in the namespace"
    os.kill(s.pid, signal.SIGKILL)
    assert s.wait_exit(5)
    time.sleep(0.5)
    assert netns_exists() and link_exists(), "kill -9 left nothing: expected leftovers"
    assert demo_lab.STATE_DIR.is_dir(), "kill -9 left no state directory: expected it as a leftover"
    assert any(Path(f"/proc/{p}").exists() for p in traffic_pids), "expected the traffic generator to survive"

    port = free_port()
    agent = Agent([*IRONPOST, "demo", "--headless", "--metrics-port", str(port)])
    try:
        line = agent.wait_for("ready:", START)
        new_progs = [int(m) for m in re.findall(r"prog id (\d+)", line)]
        assert netns_exists() and link_exists()
        # The agent on the lab serves its metrics as a real agent does (until session 23 it served none).
        status, _headers, body = fetch(f"http://127.0.0.1:{port}/metrics")
        assert status == 200 and f'ironpost_xdp_attached{{interface="{HOST_IF}"'.encode() in body, body[:300]
        for p in traffic_pids:
            assert not Path(f"/proc/{p}").exists() or _zombie(p), f"old traffic generator {p} still runs"
        agent.send(signal.SIGTERM)
        rc = agent.wait(30)
        assert rc == 0, agent.describe()
    finally:
        agent.kill()
    wait_clean(progs + new_progs)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--bogus"], "unrecognized arguments: --bogus"),
        (["--headless", "--theme", "ironpost-light"], "--theme: the console's, not the agent's"),
        (["--headless", "--record", "/tmp/x.ipr"], "--record: the console's, not the agent's"),
        (["--metrics-port", "9999"], "--metrics-port: the agent's (--headless), not the console's"),
        (["--headless", "--metrics-port", "0"], "--metrics-port"),
    ],
)
def test_demo_options_are_checked_before_the_lab_is_made(args: list[str], says: str) -> None:
    """A mistyped or misplaced option is one line and exit 2, and no lab is made (until session 23 the agent's
    demo ignored every option it did not know)."""
    if netns_exists() or link_exists():
        pytest.fail("a demo lab exists already (another demo running?): not touching it")
    proc = subprocess.run([*IRONPOST, "demo", *args], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and says in proc.stderr, proc.stderr
    assert not netns_exists() and not link_exists()


def test_demo_help_lists_the_options_of_both() -> None:
    out = subprocess.run([*IRONPOST, "demo", "--help"], capture_output=True, text=True, timeout=60).stdout
    for option in (
        "--headless",
        "--theme",
        "--refresh",
        "--record",
        "--metrics-port",
        "--metrics-addr",
        "--no-metrics",
    ):
        assert option in out, out


def _zombie(pid: str) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] == "Z"
    except OSError:
        return True


PLANTED = """
import pathlib
pathlib.Path({marker!r}).write_text("planted code ran")
"""


def test_the_traffic_child_never_runs_a_package_planted_in_the_current_directory(tmp_path: Path) -> None:
    """`cd /tmp; sudo ironpost-tui demo` must not run /tmp/ironpost_tui/demo/traffic.py as root."""
    if netns_exists() or link_exists():
        pytest.fail("a demo lab exists already (another demo running?): not touching it")
    planted = tmp_path / "cwd"
    marker = tmp_path / "marker"
    for pkg in ("ironpost_tui", "ironpost_tui/demo"):
        (planted / pkg).mkdir(parents=True)
        (planted / pkg / "__init__.py").write_text("")
    (planted / "ironpost_tui/demo/traffic.py").write_text(PLANTED.format(marker=str(marker)))
    here = Path.cwd()
    try:
        demo_lab.create()
        os.chdir(planted)
        # Positive control: the way the child used to be started does run the planted module.
        naive = subprocess.run(["ip", "netns", "exec", NS, sys.executable, "-m", "ironpost_tui.demo.traffic"],
                               capture_output=True, timeout=30)  # fmt: skip
        assert marker.exists(), naive.stderr
        marker.unlink()
        proc = demo_lab.start_traffic()
        try:
            time.sleep(2)  # the real generator runs until stopped; the planted one would have written at once
            assert proc.poll() is None, "the traffic generator should still be running"
        finally:
            demo_lab.stop_traffic(proc)
        assert not marker.exists(), "the planted module ran"
    finally:
        os.chdir(here)
        demo_lab.remove()


# --------------------------------------------------------------------------- #
# the demo's anti-lockout, in its console (Pilot, in process, on the real lab and engine)


def test_demo_console_refuses_a_rule_that_would_drop_the_demo_host_and_asks_before_quitting(demo) -> None:  # type: ignore[no-untyped-def]
    """The demo protects its host address (198.18.200.1) as a real run protects the host's own: a rule
    dropping it is refused in the form, one dropping a lab client is not (the control).  Quitting with
    the demo's drop rules asks, without offering to keep them (the lab goes with the demo)."""
    from support.ui import TEST_SETTINGS, Messages
    from textual.widgets import Input

    from ironpost_tui.demo import session
    from ironpost_tui.engine.engine import Engine
    from ironpost_tui.engine.live import LiveSource
    from ironpost_tui.ui.app import IronpostApp, make_app
    from ironpost_tui.ui.messages import EditApplied, EditRefused, RulesRefreshed, SourceFailed, SourceStarted
    from ironpost_tui.ui.screens.help import HelpScreen
    from ironpost_tui.ui.screens.quit import QuitScreen
    from ironpost_tui.ui.widgets.rule_form import RuleForm

    async def submit(pilot, messages: Messages, src: str) -> None:  # type: ignore[no-untyped-def]
        form = pilot.app.screen
        assert isinstance(form, RuleForm)
        form.query_one("#field-src_ip", Input).value = src
        await pilot.pause()
        done = messages.count(EditApplied) + messages.count(EditRefused)
        await pilot.press("ctrl+s")
        await messages.wait((EditApplied, EditRefused), pilot, after=done, timeout=15)

    with session.lab_running() as options:
        source = LiveSource(Engine(options), None, keepable=False)

        async def main() -> None:
            messages = Messages()
            app = make_app(TEST_SETTINGS, source, cursor_blink=False)
            async with app.run_test(size=(160, 48), message_hook=messages) as pilot:
                await messages.wait((SourceStarted, SourceFailed), pilot, after=0, timeout=START)
                assert messages.count(SourceFailed) == 0
                await messages.wait(RulesRefreshed, pilot, after=0)
                assert isinstance(pilot.app, IronpostApp)
                assert any(p.startswith(f"{demo_lab.HOST4}/32 (") for p in pilot.app.info.protected)
                # the rule detail names the demo's state file, not "the configuration" (until session 25)
                assert pilot.app.info.rules_path == str(options.store.path)  # type: ignore[union-attr]
                # r hears back, though the demo has no configuration file (until session 25: the request, then
                # nothing)
                await pilot.press("r")
                for _ in range(100):
                    if any("nothing to reload" in n for n in pilot.app.state.notices):
                        break
                    await pilot.pause(0.05)
                said = [n for n in pilot.app.state.notices if "nothing to reload" in n]
                assert said and str(options.store.path) in said[0], list(pilot.app.state.notices)  # type: ignore[union-attr]
                await pilot.press("question_mark")
                help_screen = pilot.app.screen
                assert isinstance(help_screen, HelpScreen)
                assert f"{demo_lab.HOST4}/32" in dict(dict(help_screen.sections)["Protected addresses"])
                await pilot.press("escape", "a")
                pilot.app.screen.query_one("#field-id", Input).value = "drop-the-host"
                await submit(pilot, messages, demo_lab.HOST4)
                form = pilot.app.screen
                assert isinstance(form, RuleForm), "the rule was not refused"
                assert f"would drop {demo_lab.HOST4}/32" in form.error and form.offer_force, form.error
                assert messages.count(EditApplied) == 0
                assert all(r.id != "drop-the-host" for r in source.engine.control.rules())
                # the control: a lab client is not protected
                await submit(pilot, messages, demo_lab.CLIENT4)
                assert messages.count(EditApplied) == 1, form.error
                assert any(r.id == "drop-the-host" for r in source.engine.control.rules())

                # the demo's drop rules are in force: q asks, with no "keep" (the lab goes with it)
                await pilot.press("q")
                question = pilot.app.screen
                assert isinstance(question, QuitScreen) and not question.keepable
                assert question.question.endswith(f"drop rules on {HOST_IF}?"), question.question
                await pilot.press("r")
                await pilot.pause()
                assert not pilot.app.is_running

        try:
            asyncio.run(main())
        finally:
            source.close()
