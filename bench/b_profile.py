"""``prog-profile``: what costs what in ironpost_xdp.  Variants of the program (text substitutions on a
copy of bpf/, the product is not touched) loaded side by side with prog's rule load (bench/ruleset.py's
10,000 rules, read through the configuration path and put in by RuleTable, with the hash seed of prog's
overflow frame; no engine, so no allowlist) and measured by BPF_PROG_TEST_RUN on prog's frames
(bench/prog_frames.py, each by a short name) in the same rounds as an empty XDP program and a least-work
source filter (bench/least_filter.c).  A frame is run again and again, so the detector sketches' and top
tables' ways hit: what a new source costs is prog's rotating-source line.  Information only: the budgets
are ``prog``'s (bench/b_prog.py).
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import core, prog_frames, rig, ruleset
from .core import Report, median
from .prog_frames import XDP_DROP, XDP_PASS

NAME = "prog-profile"
LEAST = "least-work"
# bench/least_filter.c's tables (2^bits buckets) and hash multiplier, given to it as -D flags.
LEAST_BITS4, LEAST_BITS6, LEAST_MUL32 = 12, 10, 0x9E3779B1
# The frames profiled: prog's (bench/prog_frames.py), each by the short name the notes use.  Each frame is
# run again and again, so the sketches' and top tables' ways hit: what a new source costs is prog's
# rotating-source line.
FRAMES = {
    "ipv4 tcp syn (allowed)": "syn",
    "ipv4 udp (blocked, exact)": "exact drop",
    "icmp echo": "icmp",
    "ipv6 tcp syn": "v6 syn",
    "vlan ipv4 udp": "vlan udp",
    "ipv4 udp (blocked by a prefix)": "prefix drop",
    "near miss: ipv4 syn from a /24 with exact rules": "syn near exact",
    "near miss: ipv4 syn to port 80": "syn to :80",
    "ipv4 udp to a drop rule's port (multi-field)": "multi-field drop",
}


@dataclass(frozen=True)
class Workload:
    """prog's rule load, read through the configuration path (all of it, without its multi-field rules, or
    none), the hash seed of its overflow frame's load, and the frames profiled."""

    rules: dict[str, list[Any]]
    hash_seed: int
    frames: list[prog_frames.Frame]


def workload(seed: int) -> Workload:
    from ironpost_tui.config import settings as config

    from . import prog_ab  # it imports floor_prog from here

    rs = ruleset.build(seed)
    hash_seed, full = prog_ab.overflow_seed(rs)
    no_multi = ruleset.RuleSet(rs.seed, rs.exact, rs.prefix4, rs.prefix6, [])
    with tempfile.TemporaryDirectory(prefix="ironpost-bench-profile-") as td:
        rules = {
            "full": list(config.load(rs.write(Path(td) / "full.toml")).rules),
            "no-multi": list(config.load(no_multi.write(Path(td) / "no-multi.toml")).rules),
            "none": [],
        }
    probe = load_ironpost(rules["full"], hash_seed=hash_seed)
    try:
        frames = [f for f in prog_ab.frames_of(probe.dp, rs, full) if f.label in FRAMES]
    finally:
        probe.close()
    if [f.label for f in frames] != list(FRAMES):
        raise rig.BenchError(f"prog-profile: prog's frames changed: {sorted(set(FRAMES) - {f.label for f in frames})}")
    return Workload(rules, hash_seed, frames)


# --------------------------------------------------------------------------- #
# ironpost with its rule set


@dataclass
class Loaded:
    dp: Any
    table: Any
    workdir: Path | None

    @property
    def fd(self) -> int:
        return int(self.dp.prog_fd)

    def close(self) -> None:
        self.dp.close()
        if self.workdir is not None:
            shutil.rmtree(self.workdir, ignore_errors=True)


def load_ironpost(rules: list[Any], subs: list[tuple[str, str]] = (), hash_seed: int | None = None) -> Loaded:  # type: ignore[assignment]
    """The product's program (or a variant: ``subs`` applied to a copy of its source) with ``rules``, its hash
    seed ``hash_seed`` (None: the one drawn at its load)."""
    from ironpost_tui.detectors.sketch import SketchReader
    from ironpost_tui.kernel import resources
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

    cfg = DatapathConfig()
    workdir = None
    if subs:
        src_dir = resources.bpf_dir()
        workdir = Path(tempfile.mkdtemp(prefix="ironpost-bench-variant-"))
        try:
            dp = _variant(workdir, src_dir, subs, cfg)
        except BaseException:  # the variant's copy goes with it (the caller removes it after a success)
            shutil.rmtree(workdir, ignore_errors=True)
            raise
    else:
        dp = Datapath(cfg)
    if hash_seed is not None:
        set_hash_seed(dp, hash_seed)
    table = RuleTable(dp, monotonic_to_wall_offset())
    for r in rules:
        table.add(r)
    # What a running engine does each detection tick: publish TICK (the time and the DIRTY generation).
    SketchReader(dp).read(time.monotonic_ns())
    return Loaded(dp, table, workdir)


def set_hash_seed(dp: Any, seed: int) -> None:
    """The program's hash seed (CONFIG), written before any rule: EXACT4 and PREFIX4H place by it."""
    from ironpost_tui.kernel import abi

    raw = list(dp.read_config_raw())
    raw[3] = seed
    dp.write_config_raw(abi.CONFIG.pack(*raw))


def _variant(workdir: Path, src_dir: Path, subs: list[tuple[str, str]], cfg: Any) -> Any:
    """The program with ``subs`` applied to a copy of its source in ``workdir``, loaded."""
    from ironpost_tui.kernel import resources
    from ironpost_tui.kernel.datapath import Datapath

    for f in src_dir.iterdir():
        if f.suffix in (".h", ".c"):
            shutil.copy(f, workdir / f.name)
    texts = {f.name: f.read_text() for f in workdir.iterdir()}
    for old, new in subs:
        where = [name for name, text in texts.items() if old in text]
        if len(where) != 1:
            raise rig.BenchError(f"variant: {old!r} found in {where or 'no file'} of bpf/ (the program changed)")
        texts[where[0]] = texts[where[0]].replace(old, new)
    for name, text in texts.items():
        (workdir / name).write_text(text)
    original = resources.bpf_source
    resources.bpf_source = lambda: workdir / "ironpost_xdp.c"
    try:
        return Datapath(cfg)
    finally:
        resources.bpf_source = original


@contextlib.contextmanager
def floor_prog() -> Iterator[int]:
    """The floor: ``int f(struct xdp_md *c){return XDP_PASS;}`` compiled by BCC."""
    import bcc

    b = bcc.BPF(text=b"int f(struct xdp_md *c){return XDP_PASS;}")
    try:
        yield int(b.load_func(b"f", bcc.BPF.XDP).fd)
    finally:
        b.cleanup()


@contextlib.contextmanager
def least_filter_prog(blocked: ipaddress.IPv4Address, frames: list[prog_frames.Frame]) -> Iterator[int]:
    """bench/least_filter.c compiled by BCC, ``blocked`` in its table: the least a source filter does per
    packet.  Its verdicts are checked before it is measured: ``frames`` from ``blocked`` dropped, the rest
    passed."""
    import bcc

    cflags = [f"-DLEAST_BITS4={LEAST_BITS4}", f"-DLEAST_BITS6={LEAST_BITS6}", f"-DLEAST_MUL32={LEAST_MUL32:#x}U"]
    b = bcc.BPF(src_file=str(Path(__file__).with_name("least_filter.c")).encode(), cflags=cflags)
    try:
        src = int.from_bytes(blocked.packed, "little")  # as the program loads it from the packet
        table = b[b"LEAST_SRC4"]
        leaf = table.Leaf()
        leaf.addr[0] = src
        table[table.Key(((src * LEAST_MUL32) & 0xFFFFFFFF) >> (32 - LEAST_BITS4))] = leaf
        fd = int(b.load_func(b"least_filter", bcc.BPF.XDP).fd)
        for f in frames:
            check_verdict(f"least-work filter, {f.label}", fd, f.data, XDP_DROP if f.src == blocked else XDP_PASS)
        yield fd
    finally:
        b.cleanup()


# --------------------------------------------------------------------------- #
# measuring


def ns_per_packet(fd: int, frame: bytes, repeat: int) -> float:
    from ironpost_tui.kernel import libbpf

    return float(libbpf.prog_test_run(fd, frame, repeat=repeat).duration_ns)


def check_verdict(label: str, fd: int, frame: bytes, want: int) -> None:
    from ironpost_tui.kernel import libbpf

    got = libbpf.prog_test_run(fd, frame, repeat=1).retval
    if got != want:
        raise rig.BenchError(f"{label}: XDP action {got}, expected {want}")


def measure(progs: dict[str, int], fr: bytes, rounds: int, repeat: int) -> dict[str, Any]:
    """Median ns/packet of each program, the programs interleaved round by round."""
    runs: dict[str, list[float]] = {k: [] for k in progs}
    for fd in progs.values():
        ns_per_packet(fd, fr, repeat // 10)  # warm up
    for _ in range(rounds):
        for name, fd in progs.items():
            runs[name].append(ns_per_packet(fd, fr, repeat))
    out: dict[str, Any] = {k: median(v) for k, v in runs.items()}
    out.update({f"{k}_runs": v for k, v in runs.items()})
    return out


# --------------------------------------------------------------------------- #
# what costs what


NO_AGG = [("\t\taggregate(pp, tick, sc->seq, cfg->hash_seed);", "")]
NO_FILTER = [
    (
        "\t\tsrc_bits = filter_bits(filter_bucket(pp->src, pp->family));",
        "\t\tsrc_bits = 0xffffffffU; /* bench variant: every map looked up */",
    )
]
NO_DST = [
    (
        "\tif (!tcp)\n\t\treturn;\n\tset = hash_bucket(sketch_hash(p->dst",
        "\treturn;\n\tset = hash_bucket(sketch_hash(p->dst",
    )
]
NO_TOP = [("\ttop_count(pp, tick->gen, len, dropped, cfg->hash_seed, proto_idx, sc->seq);\n", "")]
NO_TARGETS = [("\t\t\tcount_target(w, p->dst, bpf_ntohs(p->dport));", "")]
CLOCK = [
    (
        "\tsc->seq += 1;\n",
        "\tsc->seq += bpf_ktime_get_coarse_ns() & 1; /* bench variant: a clock read */\n\tsc->seq += 1;\n",
    )
]

# name -> (description, substitutions, rules kind)
VARIANTS: dict[str, tuple[str, list[tuple[str, str]], str]] = {
    "product": ("the product as loaded above", [], "full"),
    "no-multi": ("no multi-field rules (0 shapes)", [], "no-multi"),
    "no-rules": ("no rules at all", [], "none"),
    "no-agg": ("detector sketches removed", NO_AGG, "full"),
    "no-agg-no-rules": ("sketches removed, no rules: parse, filters, STATS, top talkers", NO_AGG, "none"),
    "no-top": ("top talkers removed", NO_TOP, "full"),
    "no-agg-no-top": ("sketches and top talkers removed: parse, filters, rule maps, STATS", NO_AGG + NO_TOP, "full"),
    "bare": ("sketches and top talkers removed, no rules: parse, filters, STATS", NO_AGG + NO_TOP, "none"),
    "no-dst": ("per-destination sketch removed", NO_DST, "full"),
    "no-targets": ("per-source target slots removed (the alerts' addresses)", NO_TARGETS, "full"),
    "no-filter": ("ADDR_FILTER bypassed: every rule map looked up", NO_FILTER, "full"),
    "plus-clock": ("one bpf_ktime_get_coarse_ns() per packet added", CLOCK, "full"),
}


LEAST_DESCRIPTION = (
    "bench/least_filter.c, what any source filter pays: Ethernet (one VLAN tag) and IP parsed, the source looked up "
    "in one array bucket read inline, the packet counted once by protocol"
)


def run_profile(report: Report, opts: core.Options) -> None:
    """Every variant loaded at once and measured in the same rounds (frame by frame, program by
    program), so a busy moment hits them all alike; differences are taken within each round."""
    name = "prog-profile"
    rounds, repeat = (opts.reps(9, 3, 1), opts.reps(200_000, 100_000, 2_000))
    wl = workload(opts.seed)
    fr = {FRAMES[f.label]: f for f in wl.frames}
    out: dict[str, Any] = {"rounds": rounds, "repeat": repeat, "variants": {}, "frames": {f.label: short
                           for short, f in fr.items()}, "rules": {k: len(v) for k, v in wl.rules.items()}}  # fmt: skip
    report.figures[name] = out
    loaded: dict[str, Loaded] = {}
    exact_drop = fr["exact drop"].src
    try:
        for vname, (_desc, subs, kind) in VARIANTS.items():
            loaded[vname] = ld = load_ironpost(wl.rules[kind], subs, hash_seed=wl.hash_seed)
            if kind == "full":  # with prog's rules, prog's verdicts (no allowlist here: no frame needs one)
                for f in wl.frames:
                    check_verdict(f"{vname}, {f.label}", ld.fd, f.data, f.verdict)
        with floor_prog() as floor_fd, least_filter_prog(exact_drop, wl.frames) as least_fd:
            progs = {"floor": floor_fd, LEAST: least_fd} | {k: v.fd for k, v in loaded.items()}
            runs: dict[str, dict[str, list[float]]] = {k: {f: [] for f in fr} for k in progs}
            for f in fr.values():
                for fd in progs.values():
                    ns_per_packet(fd, f.data, repeat // 10)  # warm up
            order = list(progs.items())
            for _ in range(rounds):
                for short, f in fr.items():
                    report.rng.shuffle(order)
                    for k, fd in order:
                        runs[k][short].append(ns_per_packet(fd, f.data, repeat))
    finally:
        for ld in loaded.values():
            ld.close()
        gc.collect()
    out["runs_ns"] = runs

    def diff(a: str, b: str) -> dict[str, float]:
        """Per frame: the median over rounds of (a - b) within each round."""
        return {f: median(x - y for x, y in zip(runs[a][f], runs[b][f], strict=True)) for f in fr}

    def cells(per: dict[str, float]) -> str:
        return ", ".join(f"{short} {x:.0f}" for short, x in per.items())

    described = {LEAST: LEAST_DESCRIPTION} | {k: desc for k, (desc, _subs, _kind) in VARIANTS.items()}
    for vname, desc in described.items():
        above = diff(vname, "floor")
        out["variants"][vname] = {"description": desc, "ns_above_floor": above}
        total = {f: median(runs[vname][f]) / median(runs["floor"][f]) for f in fr}
        ratios = ", ".join(f"{short} {x:.1f}" for short, x in total.items())
        note = f"{desc}: {cells(above)}; times the floor: {ratios}"
        report.info(name, f"{vname}: ns above floor", median(above.values()), "ns", note=note)
    attribution = {
        "base: parse, filters, STATS (no rules, no sketches, no top talkers)": diff("bare", "floor"),
        "10k exact, 1k prefixes, 256 multi-field rules": diff("no-agg-no-top", "bare"),
        "top talkers (TOP_SRC every packet, TOP_DST and TOP_PORT one in 4)": diff("product", "no-top"),
        "detector sketches (SRC_SKETCH, DST_SKETCH)": diff("product", "no-agg"),
        "of which the per-destination sketch": diff("product", "no-dst"),
        "of which the per-source target slots": diff("product", "no-targets"),
        "saved by ADDR_FILTER": diff("no-filter", "product"),
        "a clock read (what TICK saves)": diff("plus-clock", "product"),
    }
    out["attribution_ns"] = attribution
    for what, per in attribution.items():
        report.info(name, what, median(per.values()), "ns", note=cells(per))
