"""The console's command line: `replay FILE` needs no root and no BCC; a console that
ended on a failure exits with the failure's code and says it on one line."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from support.common import REPO
from support.ui import RECORDING, StartingSource
from textual.app import App
from textual.pilot import Pilot

from ironpost_tui import cli
from ironpost_tui.config.settings import ConsoleSettings
from ironpost_tui.errors import ExitStatus, IronpostError, NoSuchInterface
from ironpost_tui.ui.app import IronpostApp
from ironpost_tui.ui.screens.error import ErrorScreen


def headless_run(keys: tuple[str, ...], until: type | None = None) -> Any:
    """IronpostApp.run, headless, pressing ``keys`` (after ``until`` is the active screen)."""

    def run(self: IronpostApp) -> Any:
        async def pilot(p: Pilot[Any]) -> None:
            if until is not None:
                for _ in range(2000):
                    if isinstance(p.app.screen, until):
                        break
                    await p.pause(0.01)
            await p.press(*keys)

        return App.run(self, headless=True, size=(80, 24), auto_pilot=pilot)

    return run


def test_replay_runs_the_console_and_quits_with_0(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(IronpostApp, "run", headless_run(("q",)))
    assert cli.main(["replay", str(RECORDING), "--speed", "4", "--theme", "contrast", "--refresh", "0.5"]) == 0


def test_replay_of_something_else_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "not.ipr.gz"
    bad.write_text("hello")
    assert cli.main(["replay", str(bad)]) == ExitStatus.CONFIG_INVALID  # issue 15: a bad recording is exit 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ironpost-tui: ") and "not a readable ironpost recording" in err[0]


def test_a_start_failure_ends_the_console_with_its_exit_code(monkeypatch: pytest.MonkeyPatch) -> None:
    source = StartingSource(fail=NoSuchInterface("interface eth9 does not exist"))
    source.go.set()
    monkeypatch.setattr(IronpostApp, "run", headless_run(("enter",), until=ErrorScreen))
    with pytest.raises(IronpostError) as raised:
        cli._console(source, ConsoleSettings(), None)
    assert raised.value.exit_status == ExitStatus.NO_SUCH_INTERFACE
    assert "eth9 does not exist" in raised.value.message


@pytest.mark.parametrize("bad", ["0", "61", "soon"])
def test_refresh_is_checked(bad: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError):
        cli._refresh_secs(bad)


@pytest.mark.parametrize("parse", ["run", "demo", "replay"])
def test_an_unknown_theme_is_refused_before_anything_starts(
    parse: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Exit 2 with the themes named, the name quoted with its escape sequences shown, not sent to the terminal
    (until session 24 the console started and said so in a notice).  The parsers only: the check runs
    before any command does (a failing check must not start a console on a real interface).  The controls:
    ours, their short names and Textual's own are taken."""
    bad = ["--theme", "nosuch\x1b[31m"]
    with pytest.raises(SystemExit) as leaving:
        if parse == "run":
            cli._run_parser().parse_args(["eth0", *bad])
        elif parse == "demo":
            cli._demo_parser().parse_args(bad)
        else:
            cli.main(["replay", str(tmp_path / "none.ipr.gz"), *bad])  # no file: refused either way, later
    assert leaving.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "no theme 'nosuch\\x1b[31m'" in err and "ironpost-dark" in err and "\x1b" not in err
    for name in ("ironpost-contrast", "light", "textual-light"):
        assert cli._theme_name(name) == name


def test_console_options_are_on_the_run_command() -> None:
    args = cli._run_parser().parse_args(["eth0", "--theme", "light", "--refresh", "2", "--record", "x.ipr.gz"])
    assert (args.theme, args.refresh, args.record) == ("light", 2.0, Path("x.ipr.gz"))
    assert cli._console_settings(args, ConsoleSettings()).refresh_secs == 2.0


def test_the_console_modules_pull_in_no_bcc() -> None:
    code = (
        "import sys, ironpost_tui.cli, ironpost_tui.ui.app, ironpost_tui.records.recording; print('bcc' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
