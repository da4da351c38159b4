"""``python -m bench.prog_ab --paired N``: a copy of the program beside the work tree's, timed in pairs.

No figure is asserted (this machine is loaded): the run ends, says the equivalence of the two programs,
and prints a row per frame asked for with both programs' medians and in how many of the N pairs the work
tree's was faster.  Without ``--base`` the paired mode has nothing to pair with and says so.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parents[1]


def _prog_ab(*args: str) -> subprocess.CompletedProcess[str]:
    # A process of its own: main() pins itself to CPU 0 (the per-CPU maps compared are CPU 0's).
    return subprocess.run(
        [sys.executable, "-m", "bench.prog_ab", *args], cwd=REPO, capture_output=True, text=True, timeout=600
    )


def test_paired_rows_for_the_frames_asked_for() -> None:
    with tempfile.TemporaryDirectory(prefix="ironpost-test-prog-ab-") as d:
        # bpf/ as the work tree has it: the same program twice (a copy, as `git archive HEAD bpf` gives one).
        shutil.copytree(REPO / "bpf", Path(d) / "bpf")
        done = _prog_ab("--base", str(Path(d) / "bpf"), "--paired", "3", "--repeat", "200", "--only", "icmp echo")
    assert done.returncode == 0, done.stderr[-2000:]
    out = done.stdout
    assert "equivalence: every map alike" in out
    rows = [line for line in out.splitlines() if line.startswith("icmp echo")]
    assert len(rows) == 1, out
    # A's median, then B's, its difference from A and the pairs it was faster in, of 3.
    assert re.fullmatch(r"icmp echo\s+[0-9.]+\s+[0-9.]+\s+[+-][0-9.]+\s+[0-3]/3\s*", rows[0]), rows[0]
    assert not any(line.startswith("ipv4 tcp syn") for line in out.splitlines())  # --only: that frame alone


def test_paired_without_a_base_is_refused() -> None:
    done = _prog_ab("--paired", "3")
    assert done.returncode == 2
    assert "--paired compares with A: give --base" in done.stderr


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (("--paired", "-3", "--base", "."), "--paired must be 0 or more"),
        (("--rounds", "0"), "--rounds must be at least 1"),
        (("--repeat", "-1"), "--repeat must be at least 1"),
        (("--rot", "-5"), "--rot must be 0 or more"),
    ],
)
def test_a_count_out_of_range_is_refused_in_one_line(args: tuple[str, ...], says: str) -> None:
    done = _prog_ab(*args)
    assert done.returncode == 2
    assert done.stderr.strip().splitlines()[-1].endswith(says), done.stderr
    assert not done.stdout  # refused before any program was loaded
