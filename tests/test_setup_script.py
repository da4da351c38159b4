"""scripts/setup.sh (the README's two commands start with it) on a host with no libbpf.so.1, as Ubuntu 22.04 is
(its only libbpf is 0.5): one line that says why and what to use, and a failure, not a warning followed by a
product that cannot start.  The host is made to look so by an ``ldconfig`` first on PATH that hides libbpf
from ``ldconfig -p``, the script's own test, and an ``apt-get`` that changes nothing (libbpf1 is installed
already: there is nothing it could add)."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
from support.common import REPO

pytestmark = pytest.mark.root

SETUP = REPO / "scripts" / "setup.sh"


def _setup(path_first: Path | None) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if path_first is not None:
        env["PATH"] = f"{path_first}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
    return subprocess.run(["bash", str(SETUP)], capture_output=True, text=True, env=env, timeout=900)


def test_setup_stops_in_one_line_on_a_host_without_libbpf_1(tmp_path: Path) -> None:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "ldconfig").write_text("#!/bin/sh\n/sbin/ldconfig \"$@\" | grep -v 'libbpf\\.so'\n")
    # apt-get changes nothing and needs no network: what set-up would install is not this test's.
    (fake / "apt-get").write_text(f'#!/bin/sh\necho "$*" >> {tmp_path / "apt-get.log"}\n')
    for tool in ("ldconfig", "apt-get"):
        (fake / tool).chmod(0o755)
    assert "libbpf.so.1" in subprocess.run(["/sbin/ldconfig", "-p"], capture_output=True, text=True).stdout

    hidden = _setup(fake)
    assert hidden.returncode == 1, hidden
    last = hidden.stderr.strip().splitlines()[-1]
    assert last.startswith("setup: ERROR: libbpf.so.1 (libbpf 1.0 or newer), which ironpost-tui needs"), last
    assert "Ubuntu 22.04 packages only libbpf 0.5" in last and "Debian 12 or Ubuntu 24.04+" in last
    assert "ready:" not in hidden.stdout  # stopped there, before the venv

    # The control: the same script with the host's own ldconfig gets to the end.
    found = _setup(None)
    assert found.returncode == 0, found
    assert "setup: ready:" in found.stdout
