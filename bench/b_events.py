"""3. The event pipeline: events per CPU-second of the consuming thread, from EVENTS through the
engine's own tick (ring-buffer read, EventDecoder, the detectors' tick, stats sampling) into a
console-like bounded buffer (a deque).

Events are injected by BPF_PROG_TEST_RUN on the attached program from another process (TCP SYNs from
sources a monitor rule matches, ``DatapathConfig(event_rate=0)``), one run per frame, so that each
event's source can differ.  Two lines: 65,536 rotating sources (198.18.0.0/16, each once per cycle: the
decoder's address cache cannot help), and one source (the cache always hits).  The floors, fed the same
frames by the same injector: a bare BCC ring buffer of the same size and record size whose callback
only casts and counts (the budget's floor), and the product's own mmap reader of that ring
(ironpost_tui/kernel/ringbuf.py) that only counts the records of each read.  Budget: >= 0.5x the BCC
floor per CPU-second, with rotating sources (goal 0.8x).  Events per wall second are in the JSON.
"""

from __future__ import annotations

import collections
import ctypes
import ipaddress
import random
import struct
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from . import core, rig
from .core import Report, median

NAME = "events"
SOURCES, DST = "198.18.0.0/16", "198.19.0.1"
ROTATING = 65_536


def syn_frames(n: int) -> list[bytes]:
    """SYNs from the first ``n`` addresses of SOURCES (n <= 65,536), in a shuffled but fixed order."""
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    base = bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src="198.18.0.0", dst=DST)
                 / TCP(sport=40000, dport=8080, flags="S"))  # fmt: skip
    idx = list(range(n))
    random.Random(n).shuffle(idx)
    out = []
    for i in idx:
        # 198.18.hi.lo: the source's last two bytes (offset 14 + 14), the IP checksum fixed up (RFC 1624).
        f = bytearray(base)
        f[28:30] = i.to_bytes(2, "big")
        f[24:26] = b"\0\0"
        words = sum(int.from_bytes(f[k : k + 2], "big") for k in range(14, 34, 2))
        while words >> 16:
            words = (words & 0xFFFF) + (words >> 16)
        f[24:26] = (~words & 0xFFFF).to_bytes(2, "big")
        out.append(bytes(f))
    return out


INJECT = r"""
import sys
from ironpost_tui.kernel import libbpf
fd = libbpf.prog_fd_by_id(int(sys.argv[1]))
data, size, repeat = open(sys.argv[2], "rb").read(), int(sys.argv[3]), int(sys.argv[4])
frames = [data[i : i + size] for i in range(0, len(data), size)]
print("injecting", flush=True)
while True:
    for f in frames:
        libbpf.prog_test_run(fd, f, repeat)
"""


class Injector:
    """A process running BPF_PROG_TEST_RUN on program ``fd``, frame after frame, until stopped: out of
    this process, so that it takes nothing from the consumer measured here (its GIL, its CPU time)."""

    def __init__(self, fd: int, frames: list[bytes], workdir: Path) -> None:
        from ironpost_tui.kernel import libbpf

        if len({len(f) for f in frames}) != 1:
            raise rig.BenchError("injector: frames of different sizes")
        path = workdir / f"frames-{time.monotonic_ns()}.bin"
        path.write_bytes(b"".join(frames))
        repeat = 1 if len(frames) > 1 else 200_000  # one source: runs of the same frame are the same events
        self.proc = rig.TimedProcess([rig.PY, "-c", INJECT, str(libbpf.prog_info(fd).id), str(path),
                                      str(len(frames[0])), str(repeat)])  # fmt: skip
        self.proc.wait_line("injecting", 60)

    def stop(self) -> None:
        alive = self.proc.proc.poll() is None
        self.proc.stop()
        if not alive:
            raise rig.BenchError(f"injector exited early:\n{self.proc.output()}")


@dataclass(frozen=True)
class Rate:
    per_wall_sec: float  # events/s
    per_cpu_sec: float  # events per CPU-second of the consuming thread (user + system)
    cpu_share: float  # the consuming thread's CPU time / wall time


def drain_for(secs: float, step: Callable[[], int]) -> Rate:
    """Run ``step`` (returns events handled) for ``secs`` after a short warm-up, on this thread."""
    end = time.monotonic() + 0.5
    while time.monotonic() < end:
        step()
    n = 0
    t0, c0 = time.monotonic(), time.thread_time()
    end = t0 + secs
    while True:
        n += step()
        now = time.monotonic()
        if now >= end:
            cpu = time.thread_time() - c0
            return Rate(n / (now - t0), n / cpu if cpu > 0 else 0.0, cpu / (now - t0))


FloorKind = Literal["bcc", "mmap"]


def floor_rate(kind: FloorKind, frames: list[bytes], secs: float, ring_pages: int, event_size: int,
               workdir: Path) -> Rate:  # fmt: skip
    """A bare ring buffer of the same size and record size, fed by the same injector; its consumer only
    counts: BCC's callback (``bcc``), or the product's mmap reader (``mmap``)."""
    import bcc

    from ironpost_tui.kernel import libbpf, ringbuf
    from ironpost_tui.kernel.datapath import MAX_EVENTS_PER_POLL

    text = f"""
    struct ev {{ char b[{event_size}]; }};
    BPF_RINGBUF_OUTPUT(EV, {ring_pages});
    int f(struct xdp_md *c) {{
        struct ev *e = EV.ringbuf_reserve(sizeof(*e));
        if (!e) return XDP_PASS;
        __builtin_memset(e, 0, sizeof(*e));
        EV.ringbuf_submit(e, 0);
        return XDP_PASS;
    }}
    """

    class Ev(ctypes.Structure):
        _fields_ = [("b", ctypes.c_char * event_size)]

    b = bcc.BPF(text=text.encode())
    reader: ringbuf.RingReader | None = None
    try:
        fd = int(b.load_func(b"f", bcc.BPF.XDP).fd)
        count = [0]
        ptr = ctypes.POINTER(Ev)
        step: Callable[[], int]
        if kind == "bcc":

            def cb(_ctx: Any, data: Any, _size: int) -> int:
                ctypes.cast(data, ptr)
                count[0] += 1
                return 0

            b[b"EV"].open_ring_buffer(cb)

            def step() -> int:
                before = count[0]
                b.ring_buffer_poll(100)
                return count[0] - before

        else:
            map_fd = int(b[b"EV"].map_fd)
            body = struct.Struct(f"<{event_size}s")
            reader = ringbuf.RingReader(map_fd, libbpf.map_info(map_fd).max_entries, body)
            r = reader

            def step() -> int:
                return len(r.read(100, MAX_EVENTS_PER_POLL))

        inj = Injector(fd, frames, workdir)
        try:
            return drain_for(secs, step)
        finally:
            inj.stop()
    finally:
        if reader is not None:
            reader.close()
        b.cleanup()


def pipeline_rate(lab: Any, frames: list[bytes], secs: float, workdir: Path) -> tuple[Rate, dict[str, Any]]:
    from support import engine as running  # tests/support: bench/__init__.py puts tests/ on sys.path

    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.kernel.datapath import DatapathConfig
    from ironpost_tui.model import Action, FilterRule

    rule = FilterRule("bench-monitor", Action.MONITOR, src_ip=ipaddress.ip_network(SOURCES))
    opts = EngineOptions(iface=lab.host_if, xdp_mode="auto", datapath=DatapathConfig(event_rate=0),
                         rules=(rule,), protected=())  # fmt: skip
    engine = Engine(opts)
    engine.start()
    try:
        console: collections.deque[Any] = collections.deque(maxlen=10_000)  # what a console keeps
        alerts = [0]
        ticks = [0]

        def step() -> int:
            ticks[0] += 1
            tick = engine.tick(timeout_ms=100)
            console.extend(tick.events)
            alerts[0] += len(tick.alerts)
            return len(tick.events)

        inj = Injector(running.datapath(engine).prog_fd, frames, workdir)
        try:
            t0 = time.monotonic()
            rate = drain_for(secs, step)
            ticks_per_sec = ticks[0] / (time.monotonic() - t0)
        finally:
            inj.stop()
        # Judged: the events are the frames', and as many distinct sources as were sent show (the
        # console keeps the last 10,000).
        if not console:
            raise rig.BenchError("no event reached the console buffer")
        e = console[-1]
        got = (str(e.dst), e.dst_port, e.rule_id)
        if got != (DST, 8080, "bench-monitor") or e.src not in ipaddress.ip_network(SOURCES):
            raise rig.BenchError(f"events decoded as {e.src} {got!r}, expected a source in {SOURCES} and "
                                 f"{(DST, 8080, 'bench-monitor')!r}")  # fmt: skip
        distinct = len({ev.src for ev in console})
        want = min(len(frames), len(console))
        if distinct < 0.9 * want:
            raise rig.BenchError(f"{distinct} distinct sources in the last {len(console)} events, expected ~{want}")
        snap = running.sample(engine)
        return rate, {"alerts": alerts[0], "ticks_per_sec": ticks_per_sec, "distinct_sources_seen": distinct,
                      "events_delivered_total": snap.events_delivered,
                      "events_lost_total": dict(snap.events_lost)}  # fmt: skip
    finally:
        engine.close()


def run(report: Report, opts: core.Options) -> None:
    from ironpost_tui.kernel import abi
    from ironpost_tui.kernel.datapath import DatapathConfig

    rounds, secs = opts.reps(3, 1, 1), (8.0 if not (opts.quick or opts.smoke) else 3.0 if opts.quick else 1.0)
    cfg = DatapathConfig(event_rate=0)
    cases = {"rotating": syn_frames(ROTATING), "single": syn_frames(1)}
    figs: dict[str, Any] = {"rounds": rounds, "secs": secs, "rotating_sources": ROTATING}
    report.figures[NAME] = figs
    with rig.lab() as lab, rig.tmpdir("events") as wd:
        for _ in range(rounds):
            for case, kind in core.shuffled([(c, k) for c in cases for k in ("pipeline", "bcc", "mmap")], report.rng):
                if kind == "pipeline":
                    rate, extra = pipeline_rate(lab, cases[case], secs, wd)
                    figs.setdefault(f"{case}:extra", []).append(extra)
                else:
                    rate = floor_rate(kind, cases[case], secs, cfg.ringbuf_pages, abi.PACKET_EVENT.size, wd)
                figs.setdefault(f"{case}:{kind}", []).append(asdict(rate))
    for case, what in (("rotating", f"{ROTATING:,} rotating sources"), ("single", "one source")):
        pc = median(r["per_cpu_sec"] for r in figs[f"{case}:pipeline"])
        bc = median(r["per_cpu_sec"] for r in figs[f"{case}:bcc"])
        mc = median(r["per_cpu_sec"] for r in figs[f"{case}:mmap"])
        pw = median(r["per_wall_sec"] for r in figs[f"{case}:pipeline"])
        report.budget(NAME, f"events per CPU-second, {what}", pc, "ev/cpu-s", pc >= 0.5 * bc,
                      ">= 0.5x BCC floor (goal 0.8x)", beside=f"BCC callback {bc:,.0f} ev/cpu-s", ratio=pc / bc,
                      note=f"mmap reader that only counts: {mc:,.0f} ev/cpu-s ({pc / mc:.2f}x); "
                      f"{pw:,.0f} ev/s wall")  # fmt: skip
