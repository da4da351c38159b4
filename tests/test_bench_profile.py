"""prog-profile's parts (bench/b_profile.py): its variants still apply to the program, and its least-work
reference filter (bench/least_filter.c) does what its line says, through BPF_PROG_TEST_RUN."""

from __future__ import annotations

import ipaddress
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import b_profile, prog_frames, rig  # noqa: E402


def test_every_variant_changes_the_program_at_one_place() -> None:
    """A substitution that no longer matches (the program changed) would time the product under a variant's
    name: each must match exactly once in bpf/."""
    texts = [p.read_text() for p in sorted((REPO / "bpf").iterdir()) if p.suffix in (".c", ".h")]
    for name, (_desc, subs, _kind) in b_profile.VARIANTS.items():
        for old, _new in subs:
            assert sum(t.count(old) for t in texts) == 1, (name, old)


def _frame(src: str, proto: str, dport: int | None, verdict: int, vlan: int | None = None) -> prog_frames.Frame:
    a = ipaddress.ip_address(src)
    dst = prog_frames.QUIET_DST4 if a.version == 4 else prog_frames.DST6
    data = prog_frames.build(a, dst, proto, dport, vlan=vlan)  # type: ignore[arg-type]
    return prog_frames.Frame(f"{src} {proto}", data, verdict, False, a, proto, dport, "")  # type: ignore[arg-type]


@pytest.mark.root
def test_the_least_work_filter_drops_its_source_and_passes_the_rest() -> None:
    from ironpost_tui.kernel import libbpf

    blocked = ipaddress.IPv4Address("198.18.5.9")
    drop, passed = b_profile.XDP_DROP, b_profile.XDP_PASS
    frames = [
        _frame(str(blocked), "udp", 53, drop),
        _frame(str(blocked), "udp", 53, drop, vlan=10),  # through its VLAN tag
        _frame("198.18.5.10", "tcp", 80, passed),  # its neighbour: the control
        _frame("2001:db8:5::9", "tcp", 80, passed),
        _frame(str(prog_frames.QUIET_SRC4), "icmp", None, passed),
    ]
    with b_profile.least_filter_prog(blocked, frames) as fd:
        for f in frames:
            assert libbpf.prog_test_run(fd, f.data, repeat=1).retval == f.verdict, f.label
        # The check it runs before timing fails on a verdict that is not the one expected.
        with pytest.raises(rig.BenchError, match="XDP action 1, expected 2"):
            b_profile.check_verdict("least-work filter", fd, frames[0].data, passed)


def test_a_multi_field_drop_rule_on_a_source_in_use_here_monitors_instead() -> None:
    """The anti-lockout refuses a drop rule over the host's own address: the bench's rule set (built per run,
    around the addresses in use) makes that one a monitor rule, and the file loads."""
    from bench import ruleset

    def action_of(avoid: list[ipaddress.IPv4Network]) -> object:
        rs = ruleset.build(19, avoid=list(avoid))
        return next(r["action"] for r in rs.multi if r.get("src_ip") == "198.19.161.0/24")

    assert action_of([]) == "drop"  # the control: a drop rule of its shape
    assert action_of([ipaddress.IPv4Network("198.19.161.4/30")]) == "monitor"
