"""The wheel carries bpf/ and themes/ inside the package (and py.typed), and an installed
copy finds them in its own site-packages, not in the source tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from support.common import REPO

SYSTEM_PYTHON = "/usr/bin/python3"

pytestmark = pytest.mark.slow

PROBE = """
import json, sysconfig
import ironpost_tui, ironpost_tui.kernel.resources as r
print(json.dumps({
    "purelib": sysconfig.get_paths()["purelib"],
    "package": ironpost_tui.__file__,
    "bpf_source": str(r.bpf_source()),
    "common_h": str(r.bpf_dir() / "ironpost_common.h"),
    "themes": str(r.themes_dir()),
}))
"""


def _run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, **kw)  # type: ignore[call-overload]
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    return proc


def test_installed_wheel_finds_its_bpf_sources_and_themes(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    _run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(REPO)], cwd=tmp_path)
    (wheel,) = wheels.glob("ironpost_tui-*.whl")

    names = zipfile.ZipFile(wheel).namelist()
    assert "ironpost_tui/bpf/ironpost_xdp.c" in names
    assert "ironpost_tui/bpf/ironpost_common.h" in names
    assert "ironpost_tui/py.typed" in names  # the library API is typed (PEP 561)
    assert "ironpost_tui/version.py" in names
    sources = sorted(f.name for f in (REPO / "bpf").iterdir() if f.suffix in (".c", ".h"))
    assert len(sources) >= 9  # the program includes its headers by relative path: each one must travel
    assert [n for n in sources if f"ironpost_tui/bpf/{n}" not in names] == []
    assert any(n.startswith("ironpost_tui/themes/") for n in names)
    assert not [n for n in names if n.startswith(("bpf/", "themes/", "tests/"))]

    venv = tmp_path / "venv"
    _run([SYSTEM_PYTHON, "-m", "venv", "--system-site-packages", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)

    outside = tmp_path / "elsewhere"
    outside.mkdir()
    found = json.loads(_run([str(py), "-c", PROBE], cwd=outside).stdout)

    site = Path(found["purelib"]).resolve()
    assert site.is_relative_to(venv.resolve())
    for key in ("package", "bpf_source", "common_h", "themes"):
        path = Path(found[key])
        assert path.exists(), f"{key}: {path} is missing"
        assert path.resolve().is_relative_to(site), f"{key}: {path} is not inside {site}"
        assert not path.resolve().is_relative_to(REPO), f"{key}: {path} comes from the source tree"
    assert Path(found["bpf_source"]).name == "ironpost_xdp.c"
    assert Path(found["themes"]).is_dir()
