"""``python -m bench.prog_ab --base DIR [--var NAME=DIR ...] [--paired N]``: the XDP program of the worktree
(``B``) beside other copies of bpf/ (``A`` from ``--base``, e.g. ``git archive HEAD bpf | tar -x -C DIR``, and any
``--var``), for a change to the program that must not change what it does.  Not part of ``python -m bench``:
a tool for one who changes bpf/.

1. Equivalence (with ``--base``): the same rules (bench/ruleset.py's 10,000, through ``RuleTable``), the
   same hash seed, the same TICK steps (generations far enough apart for the top tables' ways to go stale),
   and one mixed sequence of 30,000 frames run through every program, one at a time on CPU 0; then every
   map the program counts in (STATS, RULE_HITS, EVENT_STATS, RATE_STATE, the sketches, DIRTY, the top
   tables) is compared byte for byte.  A verdict that differs, or a byte, fails the run.
2. Timing: bench/prog_frames.py's frames on an empty program (the floor) and every program, rounds
   interleaved in a shuffled order, median ns per frame; the rotating-source stream as single runs
   (``repeat=1``, less the floor's single runs) beside one fixed source.  The rules are the same as
   ``prog``'s, but no engine runs and the allowlist is empty: figures are for comparing programs within one
   run, not for the budgets (``--only prog`` says those).

``--small`` loads sketches and top tables of 64 and 16 sets, which stay in the cache: the rotating stream then
times the instructions of a way's replacement, without the cache misses of the real sizes.

``--paired N`` times instead in pairs: for each frame, N pairs of runs of ``A`` and another program back to
back (of ``--repeat`` runs each, the order alternating), and the median of the pairs' differences.  The
build machines are shared: their speed drifts within seconds, and the medians of separate rounds of two
copies of one program differ by 3-17 ns.  A drift meets both runs of a pair, so the paired difference of two
copies of one program reads 0-3 ns (session 20: ``--var A2=`` the base itself, 31 to 61 pairs of 20,000 runs),
and a change of a few ns can be seen.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import random
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from . import prog_frames, ruleset
from .b_profile import floor_prog, set_hash_seed

COMPARED = ("STATS", "RULE_HITS", "EVENT_STATS", "RATE_STATE", "SRC_SKETCH", "DST_SKETCH", "DIRTY", "TOP_SRC",
            "TOP_DST", "TOP_PORT")  # fmt: skip
EXACT4_BITS = 12  # DatapathConfig()'s EXACT4: 4,096 buckets for 10,000 BLOCKLIST entries


def load(bpf_dir: Path | None, rules: list[Any], seed: int, small: bool) -> Any:
    """The program of ``bpf_dir`` (None: the worktree's) with ``rules``, its hash seed ``seed``."""
    from ironpost_tui.kernel import resources
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

    cfg = DatapathConfig(src_sketch_sets=64, top_src_sets=16, top_dst_sets=16, top_port_sets=16) if small else None
    original = resources.bpf_source
    if bpf_dir is not None:
        resources.bpf_source = lambda: bpf_dir / "ironpost_xdp.c"
    try:
        dp = Datapath(cfg or DatapathConfig())
    finally:
        resources.bpf_source = original
    set_hash_seed(dp, seed)
    table = RuleTable(dp, monotonic_to_wall_offset())
    for r in rules:
        table.add(r)
    set_tick(dp, 1, 10_000_000_000)
    return dp


def set_tick(dp: Any, gen: int, now_ns: int) -> None:
    from ironpost_tui.kernel import abi, libbpf
    from ironpost_tui.kernel.abi import MapName

    libbpf.map_update(dp.map_fd(MapName.TICK), bytes(4), abi.TICK.pack(gen, now_ns))


def run_once(fd: int, data: bytes) -> Any:
    from ironpost_tui.kernel import libbpf

    return libbpf.prog_test_run(fd, data, repeat=1)


def ns_per_packet(fd: int, data: bytes, repeat: int) -> float:
    from ironpost_tui.kernel import libbpf

    return float(libbpf.prog_test_run(fd, data, repeat=repeat).duration_ns)


def snapshot(dp: Any) -> dict[str, tuple[bytes, bytes, int]]:
    from ironpost_tui.kernel.abi import MapName

    return {n: dp.map_dump(MapName(n)) for n in COMPARED}


def overflow_seed(rs: ruleset.RuleSet) -> tuple[int, list[list[ipaddress.IPv4Address]]]:
    """A hash seed under which some EXACT4 bucket has more than its ways (for the overflow frame)."""
    from ironpost_tui.rules.exact4 import WAYS, bucket_of

    rng = random.Random(5)
    while True:
        seed = rng.getrandbits(32)
        buckets: dict[int, list[ipaddress.IPv4Address]] = {}
        for a in rs.exact:
            buckets.setdefault(bucket_of(a.packed, seed, EXACT4_BITS), []).append(a)
        full = [v for v in buckets.values() if len(v) > WAYS]
        if full:
            return seed, full


def frames_of(dp: Any, rs: ruleset.RuleSet, full: list[list[ipaddress.IPv4Address]]) -> list[prog_frames.Frame]:
    from ironpost_tui.kernel import abi
    from ironpost_tui.kernel.abi import MapName

    _keys, values, count = dp.map_dump(MapName.EXACT4)
    w = abi.EXACT4_WAYS
    live: set[int] = set()
    for i in range(count):
        ways = abi.EXACT4_BUCKET.unpack_from(values, i * abi.EXACT4_BUCKET.size)
        live.update(ways[j] for j in range(w) if ways[w + j])

    def u32(a: ipaddress.IPv4Address) -> int:
        return int.from_bytes(a.packed, sys.byteorder)

    in_exact4 = next(a for a in rs.exact if u32(a) in live)
    over = next(a for bucket in full for a in bucket if u32(a) not in live)
    return prog_frames.frames(rs, in_exact4, over)


def equivalence(progs: dict[str, Any], frames: list[prog_frames.Frame]) -> list[str]:
    """Differences between the programs after one mixed sequence (empty: none)."""
    rng = random.Random(1)
    extra = prog_frames.rotating(6000)
    seq: list[bytes] = []
    for _ in range(30_000):
        r = rng.random()
        if r < 0.4:
            seq.append(rng.choice(frames).data)
        elif r < 0.9:
            seq.append(rng.choice(extra).data)
        else:
            src = ipaddress.IPv4Address("198.19.128.0") + rng.randrange(1 << 14)
            dst = ipaddress.IPv4Address("198.19.192.0") + rng.randrange(64)
            proto = rng.choice(["tcp", "udp", "icmp"])
            port = rng.choice([22, 80, 8080, 20001, 10003, 53]) if proto != "icmp" else None
            seq.append(prog_frames.build(src, dst, proto, port))  # type: ignore[arg-type]
    gen, now = 1, 10_000_000_000
    names = list(progs)
    for i, data in enumerate(seq):
        if i % 3000 == 0:  # 4 generations a step: ways go stale (TOP_STALE_GENS) within the run
            gen += 4
            now += 7_000_000_000 if i % 9000 == 0 else 500_000_000  # past PORT_MEMORY_NS now and then
            for dp in progs.values():
                set_tick(dp, gen, now)
        got = {n: run_once(dp.prog_fd, data).retval for n, dp in progs.items()}
        if len(set(got.values())) != 1:
            return [f"frame {i}: actions {got}"]
    snaps = {n: snapshot(dp) for n, dp in progs.items()}
    ref = snaps[names[0]]
    return [f"{n}: {m}" for n in names[1:] for m in COMPARED if snaps[n][m] != ref[m]]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.prog_ab", description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, help="a copy of bpf/ to compare with (A)")
    ap.add_argument("--var", action="append", default=[], help="NAME=DIR: another copy of bpf/")
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--repeat", type=int, default=100_000)
    ap.add_argument("--rot", type=int, default=4000, help="rotating sources (0: no stream)")
    ap.add_argument("--only", default="", help="comma-separated parts of the labels of the frames timed")
    ap.add_argument("--no-equiv", action="store_true", help="time only")
    ap.add_argument("--small", action="store_true", help="sketches and top tables that stay in the cache")
    ap.add_argument(
        "--paired",
        type=int,
        default=0,
        metavar="N",
        help="time each program against A in N pairs of back-to-back runs (needs --base)",
    )
    a = ap.parse_args(argv)
    for opt in ("rounds", "repeat"):
        if getattr(a, opt) < 1:
            ap.error(f"--{opt} must be at least 1")
    for opt in ("rot", "paired"):
        if getattr(a, opt) < 0:
            ap.error(f"--{opt} must be 0 or more")
    if a.paired and a.base is None:
        ap.error("--paired compares with A: give --base")
    os.sched_setaffinity(0, {0})  # the per-CPU maps compared are CPU 0's

    from ironpost_tui.config import settings as config
    from ironpost_tui.kernel import libbpf

    rs = ruleset.build(19)
    seed, full = overflow_seed(rs)
    with tempfile.TemporaryDirectory() as td:
        rules = list(config.load(rs.write(Path(td) / "rules.toml")).rules)
    dirs: dict[str, Path | None] = {}
    if a.base is not None:
        dirs["A"] = a.base
    for v in a.var:
        name, _, d = v.partition("=")
        dirs[name] = Path(d)
    dirs["B"] = None
    progs: dict[str, Any] = {}
    try:
        for name, d in dirs.items():
            progs[name] = load(d, rules, seed, a.small)
            print(f"{name}: verified_insns {libbpf.prog_info(progs[name].prog_fd).verified_insns}")
        frames = frames_of(progs["B"], rs, full)
        if len(progs) > 1 and not a.no_equiv:
            diff = equivalence(progs, frames)
            print("equivalence:", "every map alike" if not diff else f"DIFFERS: {diff}")
            if diff:
                return 1
        (_paired if a.paired else _time)(progs, frames, a)
    finally:
        for dp in progs.values():
            dp.close()
    return 0


def _selected(frames: list[prog_frames.Frame], only: str) -> list[prog_frames.Frame]:
    """The frames whose labels hold one of the comma-separated parts of ``only`` (all when it is empty)."""
    return [f for f in frames if not only or any(o in f.label for o in only.split(","))]


def _time(progs: dict[str, Any], frames: list[prog_frames.Frame], a: argparse.Namespace) -> None:
    rot = prog_frames.rotating(a.rot) if a.rot else []
    sel = _selected(frames, a.only)
    med = statistics.median
    with floor_prog() as floor_fd:
        fds = {"floor": floor_fd} | {n: dp.prog_fd for n, dp in progs.items()}
        for f in sel:
            for fd in fds.values():
                ns_per_packet(fd, f.data, a.repeat // 10)  # warm up
        runs: dict[str, dict[str, list[float]]] = {f.label: {n: [] for n in fds} for f in sel}
        rotating: dict[str, list[float]] = {n: [] for n in fds}
        fixed: dict[str, list[float]] = {n: [] for n in fds}
        order = list(fds.items())
        for _ in range(a.rounds):
            for f in sel:
                random.shuffle(order)
                for n, fd in order:
                    runs[f.label][n].append(ns_per_packet(fd, f.data, a.repeat))
            if rot:
                random.shuffle(order)
                for n, fd in order:
                    rotating[n].append(statistics.mean(run_once(fd, r.data).duration_ns for r in rot))
                    fixed[n].append(statistics.mean(run_once(fd, rot[0].data).duration_ns for _ in rot))
    names = list(fds)
    print(f"{'frame':58s} " + " ".join(f"{n:>8s}" for n in names) + "   ratio to the floor")
    for label, r in runs.items():
        m = {n: med(v) for n, v in r.items()}
        print(f"{label[:58]:58s} " + " ".join(f"{m[n]:8.1f}" for n in names) + "   "
              + " ".join(f"{n} {m[n] / m['floor']:.2f}" for n in names if n != "floor"))  # fmt: skip
    if rot:
        fl = med(rotating["floor"])
        print(f"{'rotating-source syn, single runs less the floor':58s} "
              + " ".join(f"{med(rotating[n]) - fl:8.1f}" for n in names))  # fmt: skip
        print(f"{'one fixed source, single runs less the floor':58s} "
              + " ".join(f"{med(fixed[n]) - fl:8.1f}" for n in names))  # fmt: skip


def _paired(progs: dict[str, Any], frames: list[prog_frames.Frame], a: argparse.Namespace) -> None:
    """Each program beside A, frame by frame: ``a.paired`` pairs of back-to-back runs, the order alternating;
    the median of each, the median of the pairs' differences, and in how many pairs the program was faster."""
    sel = _selected(frames, a.only)
    base = progs["A"].prog_fd
    others = {n: dp.prog_fd for n, dp in progs.items() if n != "A"}
    med = statistics.median
    print(f"{'frame':52s} {'A':>7s} " + " ".join(f"{n:>7s} {'-A':>6s} {'faster':>7s}" for n in others))
    for f in sel:
        for fd in (base, *others.values()):
            ns_per_packet(fd, f.data, a.repeat // 10)  # warm up
        cells = []
        a_runs: list[float] = []
        for fd in others.values():
            ours, diffs = [], []
            for i in range(a.paired):
                if i % 2:
                    x = ns_per_packet(base, f.data, a.repeat)
                    y = ns_per_packet(fd, f.data, a.repeat)
                else:
                    y = ns_per_packet(fd, f.data, a.repeat)
                    x = ns_per_packet(base, f.data, a.repeat)
                a_runs.append(x)
                ours.append(y)
                diffs.append(y - x)
            faster = sum(d < 0 for d in diffs)
            cells.append(f"{med(ours):7.1f} {med(diffs):+6.1f} {faster:>3d}/{a.paired:<3d}")
        print(f"{f.label[:52]:52s} {med(a_runs):7.1f} " + " ".join(cells))


if __name__ == "__main__":
    sys.exit(main())
