"""The engine and the headless path never import the UI libraries."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

CORE = [
    "ironpost_tui.engine",
    "ironpost_tui.headless",
    "ironpost_tui.cli",
    "ironpost_tui.cleanup",
    "ironpost_tui.config",
    "ironpost_tui.datapath",
    "ironpost_tui.rule_table",
]


def test_core_imports_no_textual_or_rich() -> None:
    code = (
        "import sys\n"
        + "".join(f"import {m}\n" for m in CORE)
        + "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'plotext'))\n"
        + "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "", f"core modules pulled in UI libraries: {out.stdout.strip()}"
