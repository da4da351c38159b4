"""``prog-profile``: what costs what in ironpost_xdp.  Variants of the program (text substitutions on a
copy of bpf/, the product is not touched) loaded side by side with a synthetic rule set (10,000 exact
sources, 1,000 prefixes, 256 multi-field rules in 8 shapes, through RuleTable) and measured by
BPF_PROG_TEST_RUN in the same rounds as an empty XDP program.  Information only: the budgets are
``prog``'s (bench/b_prog.py), whose rules come from a configuration file.
"""

from __future__ import annotations

import contextlib
import gc
import ipaddress
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import core, rig
from .core import Report, median

NAME = "prog-profile"
LEAST = "least-work"
XDP_DROP, XDP_PASS = 1, 2
BASE4 = int(ipaddress.IPv4Address("198.18.0.0"))
BLOCKED_SRC = str(ipaddress.IPv4Address(BASE4 + 20))  # one of the 10,000 exact sources
ALLOWED_SRC4, DST4 = "198.18.99.1", "198.19.99.1"
SRC6, DST6 = "2001:db8:99::1", "2001:db8:98::1"
MAC = {"src": "02:00:00:00:00:01", "dst": "02:00:00:00:00:02"}


def frames() -> dict[str, tuple[bytes, int]]:
    """name -> (frame, the XDP action both filters must return)."""
    from scapy.layers.inet import ICMP, IP, TCP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Dot1Q, Ether

    e = Ether(src=MAC["src"], dst=MAC["dst"])
    return {
        "ipv4 tcp syn (allowed)": (
            bytes(e / IP(src=ALLOWED_SRC4, dst=DST4) / TCP(sport=40000, dport=8080, flags="S")),
            XDP_PASS,
        ),  # fmt: skip
        "ipv4 udp (blocked)": (bytes(e / IP(src=BLOCKED_SRC, dst=DST4) / UDP(sport=40000, dport=53)), XDP_DROP),
        "icmp echo": (bytes(e / IP(src=ALLOWED_SRC4, dst=DST4) / ICMP()), XDP_PASS),
        "ipv6 tcp syn": (bytes(e / IPv6(src=SRC6, dst=DST6) / TCP(sport=40000, dport=8080, flags="S")), XDP_PASS),
        "vlan ipv4 udp": (
            bytes(e / Dot1Q(vlan=10) / IP(src=ALLOWED_SRC4, dst=DST4) / UDP(sport=40000, dport=8080)),
            XDP_PASS,
        ),  # fmt: skip
    }


def prefix_frames() -> dict[str, tuple[bytes, int]]:
    """Sources blocked by a prefix rule (one of rule_set()'s SRC4 and SRC6 entries): measured beside the
    floor only, as xdp-filter matches exact addresses alone; not in the issue's mix."""
    from scapy.layers.inet import IP, UDP
    from scapy.layers.inet6 import IPv6
    from scapy.layers.l2 import Ether

    e = Ether(src=MAC["src"], dst=MAC["dst"])
    udp = UDP(sport=40000, dport=53)
    return {
        "ipv4 udp (blocked by a /28)": (bytes(e / IP(src="198.19.0.5", dst=DST4) / udp), XDP_DROP),
        "ipv6 udp (blocked by a /48)": (bytes(e / IPv6(src="2001:db8:100::5", dst=DST6) / udp), XDP_DROP),
    }


# --------------------------------------------------------------------------- #
# ironpost with its rule set


def _shapes() -> list[Callable[[int], dict[str, Any]]]:
    net = ipaddress.ip_network
    return [
        lambda i: {"dst_ip": net(f"198.19.200.{i}/32"), "dst_port": 80, "protocol": 6},
        lambda i: {"dst_port": 10000 + i, "protocol": 17},
        lambda i: {"src_ip": net(f"198.19.{100 + i}.0/24"), "dst_port": 22},
        lambda i: {"dst_ip": net(f"2001:db8:ff:{i:x}::/64"), "dst_port": 443, "protocol": 6},
        lambda i: {"dst_ip": net(f"198.19.{i}.0/24"), "protocol": 1},
        lambda i: {"src_ip": net(f"2001:db8:fe:{i:x}::/64"), "protocol": 58},
        lambda i: {"dst_port": 20000 + i},
        lambda i: {"src_ip": net(f"198.18.250.{i}/32"), "dst_ip": net("198.19.250.1/32")},
    ]


def rule_set(exact: int = 10_000, prefixes: int = 1_000, multi: int = 256, n_shapes: int = 8) -> list[Any]:
    from ironpost_tui.model import Action, FilterRule

    rules = []
    for i in range(exact):
        addr = ipaddress.IPv4Address(BASE4 + 10 + i)  # 198.18.0.10 .. 198.18.39.25
        rules.append(FilterRule(f"exact-{i}", Action.DROP, src_ip=ipaddress.ip_network(addr)))
    for i in range(prefixes // 2):
        p4 = ipaddress.ip_network(f"198.19.{i // 16}.{i % 16 * 16}/28")
        rules.append(FilterRule(f"p4-{i}", Action.DROP, src_ip=p4))
        rules.append(FilterRule(f"p6-{i}", Action.DROP, src_ip=ipaddress.ip_network(f"2001:db8:{0x100 + i:x}::/48")))
    shapes = _shapes()[:n_shapes]
    for i in range(multi if n_shapes else 0):
        action = Action.DROP if i % 2 else Action.MONITOR
        rules.append(FilterRule(f"multi-{i}", action, **shapes[i % n_shapes](i // n_shapes)))
    return rules


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


def load_ironpost(rules: list[Any], subs: list[tuple[str, str]] = (), event_rate: int | None = None) -> Loaded:  # type: ignore[assignment]
    """The product's program (or a variant: ``subs`` applied to a copy of its source) with ``rules``."""
    from ironpost_tui.detectors.sketch import SketchReader
    from ironpost_tui.kernel import resources
    from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
    from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

    cfg = DatapathConfig() if event_rate is None else DatapathConfig(event_rate=event_rate)
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
    table = RuleTable(dp, monotonic_to_wall_offset())
    for r in rules:
        table.add(r)
    # What a running engine does each detection tick: publish TICK (the time and the DIRTY generation).
    SketchReader(dp).read(time.monotonic_ns())
    return Loaded(dp, table, workdir)


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
def least_filter_prog(blocked: str) -> Iterator[int]:
    """bench/least_filter.c compiled by BCC, ``blocked`` (an IPv4 source) in its table: the least a source
    filter does per packet.  Its verdicts on frames() are checked before it is measured."""
    import bcc

    b = bcc.BPF(src_file=str(Path(__file__).with_name("least_filter.c")).encode())
    try:
        src = int.from_bytes(ipaddress.IPv4Address(blocked).packed, "little")  # as the program loads it
        table = b[b"LEAST_SRC4"]
        leaf = table.Leaf()
        leaf.addr[0] = src
        table[table.Key(((src * 0x9E3779B1) & 0xFFFFFFFF) >> (32 - 12))] = leaf
        fd = int(b.load_func(b"least_filter", bcc.BPF.XDP).fd)
        for label, (frame, want) in frames().items():
            check_verdict(f"least-work filter, {label}", fd, frame, want)
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
    rules = {"full": rule_set(), "no-multi": rule_set(multi=0, n_shapes=0), "none": []}
    fr = {k: v[0] for k, v in frames().items()}
    out: dict[str, Any] = {"rounds": rounds, "repeat": repeat, "variants": {}}
    report.figures[name] = out
    loaded: dict[str, Loaded] = {}
    try:
        for vname, (_desc, subs, kind) in VARIANTS.items():
            loaded[vname] = load_ironpost(rules[kind], subs)
        with floor_prog() as floor_fd, least_filter_prog(BLOCKED_SRC) as least_fd:
            progs = {"floor": floor_fd, LEAST: least_fd} | {k: v.fd for k, v in loaded.items()}
            runs: dict[str, dict[str, list[float]]] = {k: {f: [] for f in fr} for k in progs}
            for frame in fr.values():
                for fd in progs.values():
                    ns_per_packet(fd, frame, repeat // 10)  # warm up
            for _ in range(rounds):
                for label, frame in fr.items():
                    for k, fd in progs.items():
                        runs[k][label].append(ns_per_packet(fd, frame, repeat))
    finally:
        for ld in loaded.values():
            ld.close()
        gc.collect()
    out["runs_ns"] = runs

    def diff(a: str, b: str) -> dict[str, float]:
        """Per frame: the median over rounds of (a - b) within each round."""
        return {f: median(x - y for x, y in zip(runs[a][f], runs[b][f], strict=True)) for f in fr}

    def cells(per: dict[str, float]) -> str:
        return ", ".join(f"{lbl.split(' (')[0]} {x:.0f}" for lbl, x in per.items())

    described = {LEAST: LEAST_DESCRIPTION} | {k: desc for k, (desc, _subs, _kind) in VARIANTS.items()}
    for vname, desc in described.items():
        above = diff(vname, "floor")
        out["variants"][vname] = {"description": desc, "ns_above_floor": above}
        total = {f: median(runs[vname][f]) / median(runs["floor"][f]) for f in fr}
        ratios = ", ".join(f"{lbl.split(' (')[0]} {x:.1f}" for lbl, x in total.items())
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
