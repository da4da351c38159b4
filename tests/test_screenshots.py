"""scripts/screenshots.py makes every screenshot the README shows, as valid SVG and PNG,
and the committed ones in screenshots/ are there and valid too."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "scripts" / "screenshots.py"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def referenced() -> list[str]:
    """Every screenshots/NAME.svg|png the README links to."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"screenshots/([\w.-]+\.(?:svg|png))", text)))


def valid(path: Path) -> None:
    assert path.is_file() and path.stat().st_size > 0, path
    head = path.read_bytes()[:512]
    if path.suffix == ".png":
        assert head.startswith(PNG_MAGIC), path
    else:
        assert b"<svg" in head, path


def test_the_readme_shows_screenshots() -> None:
    names = referenced()
    assert any(n.startswith("main-") and n.endswith(".png") for n in names), names


def test_committed_screenshots_are_valid() -> None:
    for name in referenced():
        valid(ROOT / "screenshots" / name)


@pytest.mark.skipif(
    shutil.which("rsvg-convert") is None, reason="rsvg-convert not installed (apt-get install librsvg2-bin)"
)
def test_the_script_makes_every_referenced_screenshot(tmp_path: Path) -> None:
    names = referenced()
    shots = sorted({Path(n).stem for n in names})
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--out", str(tmp_path), "--only", *shots],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    listed = {Path(line).name for line in done.stdout.split()}
    for name in names:
        assert name in listed, (name, done.stdout)
        valid(tmp_path / name)
