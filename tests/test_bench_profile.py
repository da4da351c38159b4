"""prog-profile's parts (bench/b_profile.py): its variants still apply to the program, and its least-work
reference filter (bench/least_filter.c) does what its line says, through BPF_PROG_TEST_RUN."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import b_profile, rig  # noqa: E402


def test_every_variant_changes_the_program_at_one_place() -> None:
    """A substitution that no longer matches (the program changed) would time the product under a variant's
    name: each must match exactly once in bpf/."""
    texts = [p.read_text() for p in sorted((REPO / "bpf").iterdir()) if p.suffix in (".c", ".h")]
    for name, (_desc, subs, _kind) in b_profile.VARIANTS.items():
        for old, _new in subs:
            assert sum(t.count(old) for t in texts) == 1, (name, old)


@pytest.mark.root
def test_the_least_work_filter_drops_its_source_and_passes_the_rest() -> None:
    from ironpost_tui.kernel import libbpf

    frames = b_profile.frames()
    assert {want for _frame, want in frames.values()} == {b_profile.XDP_DROP, b_profile.XDP_PASS}
    with b_profile.least_filter_prog(b_profile.BLOCKED_SRC) as fd:
        for label, (frame, want) in frames.items():
            assert libbpf.prog_test_run(fd, frame, repeat=1).retval == want, label
    # Control: with another source in its table, the blocked frame passes, and the check before timing says so.
    with pytest.raises(rig.BenchError, match="least-work filter, ipv4 udp"):
        with b_profile.least_filter_prog("198.18.200.1"):
            pass
