"""Textual's debugging and automation variables are dropped before Textual is imported when ironpost-tui runs
as root (TEXTUAL_PRESS pressed keys in the console: `!,y` is a panic; TEXTUAL_LOG wrote a file as root where
it said), with one line saying which; the variables that only change drawing are kept (an attacker's review,
session 26).  A subprocess as the command line runs, without an interface."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from support.common import REPO

from ironpost_tui.safe_env import DROPPED, KEPT, drop_textual_debugging

PROBE = """
import sys
from ironpost_tui import cli
status = cli.main(["check-config", sys.argv[1]])
import textual.constants as c
print(status, repr(c.PRESS), repr(c.LOG_FILE), repr(c.DRIVER), repr(c.COLOR_SYSTEM))
"""


def test_only_the_drawing_variables_are_kept() -> None:
    env = {"TEXTUAL": "devtools", "TEXTUAL_PRESS": "q", "TEXTUAL_DRIVER": "x:y", "TEXTUAL_FPS": "30", "PATH": "/bin",
           "TEXTUAL_SNAPSHOT_TEMPDIR": "/tmp/x"}  # fmt: skip
    assert drop_textual_debugging(env) == ["TEXTUAL", "TEXTUAL_DRIVER", "TEXTUAL_PRESS"]
    assert env == {"TEXTUAL_FPS": "30", "PATH": "/bin", "TEXTUAL_SNAPSHOT_TEMPDIR": "/tmp/x"} and "TEXTUAL_FPS" in KEPT


def test_every_variable_the_pinned_textual_reads_is_classified() -> None:
    """An upgrade's new variable fails here until it is put in DROPPED or KEPT."""
    import textual

    read = set()
    for path in Path(textual.__file__).parent.rglob("*.py"):
        read |= set(re.findall(r'"(TEXTUAL(?:_[A-Z_]+)?)"', path.read_text(encoding="utf-8")))
    assert {"TEXTUAL_PRESS", "TEXTUAL_LOG"} <= read  # the control: the scan finds what it looks for
    assert read - DROPPED - KEPT == set() and not DROPPED & KEPT


@pytest.mark.root
def test_as_root_the_command_line_drops_them_before_textual_reads_them(tmp_path: Path) -> None:
    assert os.geteuid() == 0
    cfg = tmp_path / "ironpost.toml"
    cfg.write_text('[[ebpf.rules]]\nid = "a"\nsrc_ip = "198.18.0.9"\naction = "drop"\n')
    cfg.chmod(0o600)
    log = tmp_path / "textual.log"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TEXTUAL_PRESS": "exclamation_mark,y", "TEXTUAL_LOG": str(log),
           "TEXTUAL_DRIVER": "os:system", "TEXTUAL_COLOR_SYSTEM": "truecolor"}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", PROBE, str(cfg)], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[-1] == "0 '' None None 'truecolor'"  # the drawing variable's control: kept
    assert out.stderr.splitlines()[0] == (
        "ironpost-tui: ignoring TEXTUAL_DRIVER, TEXTUAL_LOG, TEXTUAL_PRESS: Textual's debugging and automation "
        "variables are not honoured as root"
    )
    assert not log.exists()
