"""1. Per-packet cost of ironpost_xdp by BPF_PROG_TEST_RUN, beside an empty XDP program (the floor) and
xdp-filter (the peer), measured in the same run, rounds shuffled.

The rule load is a configuration file of 10,000 rules (bench/ruleset.py: 8,744 exact sources scattered
at random, seeded; 1,000 IPv4 and IPv6 prefixes; 256 multi-field rules), read and loaded through the
product's own path (``config.settings.load``, the engine's options as ``cli`` builds them, ``Engine``
attached natively to a lab veth), with the host's addresses (IPv6 ones included: the host's, and the
lab's own) in the allowlist, as on a real host.

Every frame is judged before it is timed: its verdict in ironpost and in each peer, and whether a rule
of ironpost's counted it (``RULE_HITS``), so a frame that does not do what its name says fails the line
(bench/prog_frames.py lists them).  The exact source of the overflow frame is found by computing each
source's ``EXACT4`` bucket as the product does (``rules.exact4.bucket_of`` with the map's seed) and
reading ``EXACT4``: a source of a bucket with more than 8 that has no way there.

The rotating-source SYN stream: BPF_PROG_TEST_RUN with ``repeat`` runs one frame again and again, so
the detector sketches would always hit.  Instead every frame of the stream (thousands of distinct
sources, more than the sketches' ways) is run once (``repeat=1``), on ironpost, the floor and the peer
alike.  A single run's duration includes the kernel's timer reads (tens of ns), which the floor's single
runs measure: the line's figure is ``floor (repeat) + (program's single runs - floor's single runs)``,
and the raw means are in the note and the JSON.  Beside it, the same single runs with one fixed source
say what the replacement costs.

Budgets, every frame: <= 2.5x the floor and <= 0.5x xdp-filter (``xdpfilt_alw_all`` without libxdp's
dispatcher: it filters ports as ironpost does).  ``xdpfilt_alw_ip`` (addresses only) and the dispatcher's
cost are in each peer line's note.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import core, prog_frames, rig, ruleset, xdp_filter
from .core import Report, median
from .prog_frames import XDP_DROP, XDP_PASS, Frame

NAME = "prog"
FLOOR, IRONPOST = "floor", "ironpost"
LOAD_ATTEMPTS = 20  # EXACT4's seed is drawn per load: about 1 load in 3 has an overflowed bucket here


@dataclass
class Product:
    engine: Any
    fd: int
    load_secs: float
    in_exact4: set[int]  # EXACT4's live ways, as the program loads an address (u32, host order)
    seed: int
    bits: int
    allow: dict[str, int]

    def hits(self) -> int:
        return sum(s.hits for s in self.engine.control.status())


def _u32(addr: Any) -> int:
    return int.from_bytes(addr.packed, sys.byteorder)


@contextlib.contextmanager
def product(lab: Any, rs: ruleset.RuleSet, workdir: Path) -> Iterator[Product]:
    """The engine on ``lab``'s host side, its rules from a file of ``rs``, through the product's path."""
    from ironpost_tui.config import settings as config
    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.engine.reload import protections
    from ironpost_tui.kernel import abi, host
    from ironpost_tui.kernel.abi import MapName

    path = rs.write(workdir / "ironpost.toml", head='[ebpf]\nxdp_mode = "native"\n')
    t0 = time.monotonic()
    s = config.load(path)
    opts = EngineOptions(iface=lab.host_if, xdp_mode="native", datapath=s.ebpf.datapath(), rules=s.rules,
                         protected=tuple(protections(s)), syn_flood=s.syn_flood, port_scan=s.port_scan,
                         auto_block=s.auto_block)  # fmt: skip
    engine = Engine(opts)
    try:
        engine.start()
        engine.tick(timeout_ms=0)  # TICK published, as each tick does
        load_secs = time.monotonic() - t0
        from support import engine as running  # tests/support: bench/__init__.py puts tests/ on sys.path

        dp = running.datapath(engine)
        keys, values, count = dp.map_dump(MapName.EXACT4)
        w = abi.EXACT4_WAYS
        live: set[int] = set()
        for i in range(count):
            ways = abi.EXACT4_BUCKET.unpack_from(values, i * abi.EXACT4_BUCKET.size)
            live.update(ways[j] for j in range(w) if ways[w + j])
        allow = {"ALLOW4": dp.map_len(MapName.ALLOW4), "ALLOW6": dp.map_len(MapName.ALLOW6)}
        yield Product(engine, int(dp.prog_fd), load_secs, live, int(dp.read_config_raw()[3]),
                      dp.cfg.exact4_buckets.bit_length() - 1, allow)  # fmt: skip
    finally:
        engine.close()
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()


def overflow_source(rs: ruleset.RuleSet, p: Product) -> tuple[Any, dict[str, Any]] | tuple[None, dict[str, Any]]:
    """An exact source whose EXACT4 bucket (computed as the product does) is full, and that has no way."""
    from ironpost_tui.rules.exact4 import WAYS, bucket_of

    buckets: dict[int, list[Any]] = {}
    for a in rs.exact:
        buckets.setdefault(bucket_of(a.packed, p.seed, p.bits), []).append(a)
    full = {b: v for b, v in buckets.items() if len(v) > WAYS}
    info: dict[str, Any] = {"buckets_over_8": len(full), "sources_past_8": sum(len(v) - WAYS for v in full.values())}
    for b, addrs in sorted(full.items()):
        out = [a for a in addrs if _u32(a) not in p.in_exact4]
        if out:
            info.update(bucket=b, bucket_sources=len(addrs), source=str(out[0]))
            return out[0], info
    return None, info


@contextlib.contextmanager
def floor_prog() -> Iterator[int]:
    """The floor: ``int f(struct xdp_md *c){return XDP_PASS;}`` compiled by BCC."""
    import bcc

    b = bcc.BPF(text=b"int f(struct xdp_md *c){return XDP_PASS;}")
    try:
        yield int(b.load_func(b"f", bcc.BPF.XDP).fd)
    finally:
        b.cleanup()


# --------------------------------------------------------------------------- #
# judging and timing


def ns_per_packet(fd: int, frame: bytes, repeat: int) -> float:
    from ironpost_tui.kernel import libbpf

    return float(libbpf.prog_test_run(fd, frame, repeat=repeat).duration_ns)


def verdict(fd: int, frame: bytes) -> int:
    from ironpost_tui.kernel import libbpf

    return int(libbpf.prog_test_run(fd, frame, repeat=1).retval)


def judge(f: Frame, p: Product, peer: xdp_filter.Loaded | None, peer_fd: int | None) -> None:
    """The frame does what its name says, in ironpost (verdict and rule hit) and in the peer (verdict)."""
    before = p.hits()
    got = verdict(p.fd, f.data)
    counted = p.hits() > before
    if got != f.verdict or counted != f.hit:
        raise rig.BenchError(f"{f.label}: ironpost gave action {got}, {'a' if counted else 'no'} rule hit; "
                             f"expected {f.verdict}, {'a' if f.hit else 'no'} rule hit ({f.why})")  # fmt: skip
    if peer is not None and peer_fd is not None:
        want = XDP_DROP if peer.verdict_drops(f.src, f.proto, f.dport) else XDP_PASS
        got = verdict(peer_fd, f.data)
        if got != want:
            raise rig.BenchError(f"{f.label}: xdp-filter {peer.variant} gave action {got}, expected {want}")


def single_runs(fd: int, frames: list[Frame], want: int | None) -> float:
    """Mean ns of one run of each frame (repeat=1); every verdict checked against ``want``."""
    from ironpost_tui.kernel import libbpf

    total = 0
    for f in frames:
        r = libbpf.prog_test_run(fd, f.data, repeat=1)
        if want is not None and r.retval != want:
            raise rig.BenchError(f"{f.label} from {f.src}: action {r.retval}, expected {want}")
        total += r.duration_ns
    return total / len(frames)


# --------------------------------------------------------------------------- #
# the run


def _phase(report: Report, progs: dict[str, int], frames: list[Frame], rot: list[Frame], rounds: int,
           repeat: int, samples: dict[str, dict[str, list[float]]]) -> None:  # fmt: skip
    """``rounds`` rounds: each frame on each program (both orders shuffled), then the rotating stream."""
    for f in frames:
        for fd in progs.values():
            ns_per_packet(fd, f.data, max(1, repeat // 10))  # warm up
    fixed = [rot[0]] * len(rot)
    for _ in range(rounds):
        for f in core.shuffled(frames, report.rng):
            for name, fd in core.shuffled(progs.items(), report.rng):
                samples.setdefault(name, {}).setdefault(f.label, []).append(ns_per_packet(fd, f.data, repeat))
        for name, fd in core.shuffled(progs.items(), report.rng):
            want = XDP_PASS if name in (FLOOR, IRONPOST) else None
            s = samples.setdefault(name, {})
            s.setdefault("rotating:single", []).append(single_runs(fd, rot, want))
            s.setdefault("rotating:repeat", []).append(ns_per_packet(fd, rot[0].data, repeat))
            if name == IRONPOST:
                s.setdefault("fixed:single", []).append(single_runs(fd, fixed, want))


def run(report: Report, opts: core.Options) -> None:
    from ironpost_tui.kernel import libbpf

    rounds, repeat = opts.reps(9, 3, 1), opts.reps(1_000_000, 200_000, 1_000)
    n_rot = opts.reps(7_000, 4_000, 300)
    figs: dict[str, Any] = {"rounds": rounds, "repeat": repeat, "rotating_sources": n_rot, "seed": opts.seed}
    report.figures[NAME] = figs
    with rig.tmpdir("prog") as wd, rig.lab() as lab:
        rig.retry_host_address_race(lambda: _run_on(report, opts, lab, wd, figs, rounds, repeat, n_rot, libbpf))


def _run_on(report: Report, opts: core.Options, lab: Any, wd: Path, figs: dict[str, Any], rounds: int, repeat: int,
            n_rot: int, libbpf: Any) -> None:  # fmt: skip
    rs = ruleset.build(opts.seed)
    figs["rules"] = {"exact": len(rs.exact), "prefix4": len(rs.prefix4), "prefix6": len(rs.prefix6),
                     "multi_field": len(rs.multi), "total": rs.count}  # fmt: skip
    for attempt in range(1, LOAD_ATTEMPTS + 1):
        with product(lab, rs, wd) as p:
            over, info = overflow_source(rs, p)
            info["attempt"] = attempt
            figs["exact4"] = info
            if over is None and attempt < LOAD_ATTEMPTS:
                continue  # a new load draws a new EXACT4 seed
            if over is None:
                report.error(
                    NAME, f"no EXACT4 bucket overflowed in {LOAD_ATTEMPTS} loads: the overflow frame is left out"
                )
            _measure(report, opts, p, rs, over, figs, rounds, repeat, n_rot, libbpf)
            return


def _measure(report: Report, opts: core.Options, p: Product, rs: ruleset.RuleSet, over: Any,
             figs: dict[str, Any], rounds: int, repeat: int, n_rot: int, libbpf: Any) -> None:  # fmt: skip
    figs["load_secs"] = p.load_secs
    figs["allowlist_entries"] = p.allow
    if p.allow["ALLOW6"] == 0:
        raise rig.BenchError("ALLOW6 is empty: the host's IPv6 addresses are not in the allowlist")
    in_exact4 = next(a for a in rs.exact if _u32(a) in p.in_exact4)
    frames = prog_frames.frames(rs, in_exact4, over)
    rot = prog_frames.rotating(n_rot)
    figs["frames"] = {f.label: f.why for f in frames}
    samples_by_variant: dict[str, dict[str, dict[str, list[float]]]] = {}
    with floor_prog() as floor_fd:
        for variant in core.shuffled(xdp_filter.Variant, report.rng):
            try:
                with xdp_filter.loaded(variant, rs.exact, ruleset.SHAPE_PORTS) as peer:
                    peer_fd = libbpf.prog_fd_by_id(peer.prog_id)
                    try:
                        for f in frames:
                            judge(f, p, peer, peer_fd)
                        # the stream: no rule counts any of it
                        before = p.hits()
                        single_runs(p.fd, rot, XDP_PASS)
                        if p.hits() != before:
                            raise rig.BenchError("rotating-source syn: a rule counted some of the stream")
                        progs = {IRONPOST: p.fd, FLOOR: floor_fd, "peer": peer_fd}
                        samples: dict[str, dict[str, list[float]]] = {}
                        _phase(report, progs, frames, rot, rounds, repeat, samples)
                        samples_by_variant[str(variant)] = samples
                    finally:
                        os.close(peer_fd)
            except xdp_filter.DispatcherUnavailable as exc:
                report.info(NAME, "xdp-filter through libxdp's dispatcher", None, "", note=str(exc))
            except (rig.BenchError, OSError) as exc:
                report.error(NAME, f"xdp-filter {variant}: {exc}")
    figs["samples_ns"] = samples_by_variant
    _lines(report, frames, rot, samples_by_variant)


def _ns(x: float) -> str:
    """A figure as the ratio beside it is computed: 22.5 reads 22.5, not 22 (a reader divides what is shown)."""
    return f"{x:.0f}" if x == round(x) else f"{x:.1f}"


def _pooled(by_variant: dict[str, dict[str, dict[str, list[float]]]], prog: str, key: str) -> list[float]:
    return [x for s in by_variant.values() for x in s.get(prog, {}).get(key, [])]


def _rotating(s: dict[str, dict[str, list[float]]], prog: str) -> float:
    """The stream's ns/packet: the floor's repeat figure plus the program's single runs above the floor's."""
    return (
        median(s[FLOOR]["rotating:repeat"]) + median(s[prog]["rotating:single"]) - median(s[FLOOR]["rotating:single"])
    )


def _lines(report: Report, frames: list[Frame], rot_frames: list[Frame],
           by: dict[str, dict[str, dict[str, list[float]]]]) -> None:  # fmt: skip
    if not by:
        raise rig.BenchError("no phase measured (xdp-filter could not be loaded in any variant)")
    labels = [f.label for f in frames]
    main = by.get(str(xdp_filter.Variant.ALW_ALL))
    alw_ip = by.get(str(xdp_filter.Variant.ALW_IP))
    disp = by.get(str(xdp_filter.Variant.ALW_ALL_DISPATCHER))
    for label in [*labels, "rotating-source syn"]:
        if label == "rotating-source syn":
            ip = median(_rotating(s, IRONPOST) for s in by.values())
            fl = median(median(s[FLOOR]["rotating:repeat"]) for s in by.values())
            fixed = median(
                median(s[IRONPOST]["fixed:single"]) - median(s[FLOOR]["rotating:single"]) for s in by.values()
            )
            raw = median(median(s[IRONPOST]["rotating:single"]) for s in by.values())
            raw_fl = median(median(s[FLOOR]["rotating:single"]) for s in by.values())
            n = len(rot_frames)
            note = (f"{n} distinct sources, each run once (repeat=1); "
                    f"raw single runs: ironpost {raw:.0f} ns, floor {raw_fl:.0f} ns; one fixed source instead: "
                    f"{fixed + fl:.0f} ns (a new source costs {ip - fixed - fl:.0f} ns more: the detector "
                    "sketches' and the top tables' ways replaced, with cold caches)")  # fmt: skip
            peer_of = _rotating
        else:
            ip = median(_pooled(by, IRONPOST, label))
            fl = median(_pooled(by, FLOOR, label))
            note = ""

            def peer_of(s: dict[str, dict[str, list[float]]], prog: str, lbl: str = label) -> float:
                return median(s[prog][lbl])

        report.budget(NAME, f"{label}: vs floor", ip, "ns", ip <= 2.5 * fl, "<= 2.5x floor",
                      beside=f"floor {_ns(fl)} ns", ratio=ip / fl, note=note)  # fmt: skip
        if main is None:
            continue
        ip_m, xf = peer_of(main, IRONPOST), peer_of(main, "peer")
        extra = []
        if alw_ip is not None:
            ip_i, xi = peer_of(alw_ip, IRONPOST), peer_of(alw_ip, "peer")
            extra.append(f"xdpfilt_alw_ip {_ns(xi)} ns (ironpost {_ns(ip_i)}, {ip_i / xi:.2f}x)")
        if disp is not None:
            extra.append(f"alw_all through libxdp's dispatcher {peer_of(disp, 'peer'):.0f} ns")
        report.budget(NAME, f"{label}: vs xdp-filter", ip_m, "ns", ip_m <= 0.5 * xf, "<= 0.5x xdp-filter",
                      beside=f"xdpfilt_alw_all {_ns(xf)} ns", ratio=ip_m / xf, note="; ".join(extra))  # fmt: skip
