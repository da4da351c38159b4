"""3. The event pipeline: events per CPU-second of the process (every thread), from EVENTS through the
engine's own tick (ring-buffer read, EventDecoder, the detectors' tick, stats sampling) into a
console-like bounded buffer (a deque), the newest SHOWN events of each tick decoded whole, as a pane
shows them (every field, the addresses through the decoder's cache).

Events are TCP SYNs from sources a monitor rule matches (``DatapathConfig(event_rate=0)``), injected by
BPF_PROG_TEST_RUN, one run per frame so that each event's source can differ.  The engine runs as its own
process runs it (``own_process``: its start's objects frozen out of the cyclic collector's walks), and the
bench's own heap (scapy, the frames) is frozen before the first round: until session 33 each full collection
of the pipeline walked it, which no engine process does.  Two lines: 65,536 rotating
sources (198.18.0.0/16, in a fixed shuffled order, each once per cycle: the decoder's address cache, 4,096
entries, cannot help), and one source (the cache always hits).

Fill, then drain: a batch of frames (as many records as the ring holds, less a margin) is injected while
the consumer waits, then the consumer drains the ring; only the drains are timed (the process's
CPU time, every thread's).  So every consumer always meets a full ring, whatever the injection rate: a slow
injector would hand each poll a few records and hide a slow decoder behind the per-poll overhead that
the floors pay too.  The floors, fed the same batches of the same frames: a bare BCC ring buffer of the
same size and record size whose callback only casts and counts (the budget's floor), and the product's
own mmap reader of that ring (ironpost_tui/kernel/ringbuf.py) that only counts the records of each read.
Budget: >= 0.5x the BCC floor per CPU-second, with rotating sources (goal 0.8x).
"""

from __future__ import annotations

import collections
import ctypes
import gc
import ipaddress
import os
import random
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, Literal

from . import core, rig
from .core import Report, median

NAME = "events"
SOURCES, DST = "198.18.0.0/16", "198.19.0.1"
ROTATING = 65_536
SHOWN = 50  # events a pane shows: a screenful and more


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


@dataclass(frozen=True)
class Rate:
    events: int
    cpu_secs: float  # the process's CPU time (user + system, every thread) over the drains
    batches: int

    @property
    def per_cpu_sec(self) -> float:
        return self.events / self.cpu_secs if self.cpu_secs > 0 else 0.0


class Feeder:
    """Batches of frames for program ``fd``: ``batch`` frames at a time, going round ``frames``."""

    def __init__(self, fd: int, frames: list[bytes], batch: int) -> None:
        self.fd, self.frames, self.batch, self.pos = fd, frames, batch, 0

    def fill(self) -> None:
        from ironpost_tui.kernel import libbpf

        if len(self.frames) == 1:
            libbpf.prog_test_run(self.fd, self.frames[0], repeat=self.batch)
            return
        n = len(self.frames)
        for _ in range(self.batch):
            libbpf.prog_test_run(self.fd, self.frames[self.pos], repeat=1)
            self.pos = (self.pos + 1) % n


def drain_batches(feeder: Feeder, batches: int, step: Callable[[], int]) -> Rate:
    """``batches`` times: fill the ring (untimed), then ``step`` until the batch is drained (timed)."""
    feeder.fill()  # warm up
    got = 0
    while got < feeder.batch:
        got += step()
    events, cpu = 0, 0.0
    for _ in range(batches):
        feeder.fill()
        got = 0
        c0 = time.process_time()
        while got < feeder.batch:
            n = step()
            if n == 0:
                raise rig.BenchError(f"the ring held {got} records of a batch of {feeder.batch}")
            got += n
        cpu += time.process_time() - c0
        events += got
    return Rate(events, cpu, batches)


def batch_size(ring_bytes: int, event_size: int) -> int:
    """Records the ring holds (each with its 8-byte header, 8-aligned), less 10%: nothing is dropped."""
    return int(ring_bytes // ((8 + event_size + 7) // 8 * 8) * 0.9)


FloorKind = Literal["bcc", "mmap"]


def floor_rate(kind: FloorKind, frames: list[bytes], batches: int, ring_pages: int, event_size: int) -> Rate:
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
                b.ring_buffer_poll(0)
                return count[0] - before

        else:
            map_fd = int(b[b"EV"].map_fd)
            body = struct.Struct(f"<{event_size}s")
            reader = ringbuf.RingReader(map_fd, libbpf.map_info(map_fd).max_entries, body)
            r = reader

            def step() -> int:
                return len(r.read(0, MAX_EVENTS_PER_POLL))

        ring_bytes = ring_pages * os.sysconf("SC_PAGE_SIZE")
        return drain_batches(Feeder(fd, frames, batch_size(ring_bytes, event_size)), batches, step)
    finally:
        if reader is not None:
            reader.close()
        b.cleanup()


def pipeline_rate(lab: Any, frames: list[bytes], batches: int) -> tuple[Rate, dict[str, Any]]:
    from support import engine as running  # tests/support: bench/__init__.py puts tests/ on sys.path

    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.kernel import abi
    from ironpost_tui.kernel.datapath import DatapathConfig
    from ironpost_tui.model import Action, FilterRule

    rule = FilterRule("bench-monitor", Action.MONITOR, src_ip=ipaddress.ip_network(SOURCES))
    # own_process: the engine as its own process runs it (the agent's, the console's engine): the start's objects,
    # and with them this process's (scapy, the frames), frozen out of the collector's walks; the tick thread's
    # priority and the switch interval set.  Without it, each full collection walked the bench's own heap: an
    # eighth of the pipeline's time, which no engine process pays.
    opts = EngineOptions(iface=lab.host_if, xdp_mode="auto", datapath=DatapathConfig(event_rate=0),
                         rules=(rule,), protected=(), own_process=True)  # fmt: skip
    engine = Engine(opts)
    engine.start()
    try:
        console: collections.deque[Any] = collections.deque(maxlen=10_000)  # what a console keeps
        alerts = [0]
        ticks = [0]

        def step() -> int:
            ticks[0] += 1
            tick = engine.tick(timeout_ms=0)
            console.extend(tick.events)
            # What a pane shows: the newest screenful decoded whole, at every tick (a console redraws at
            # most a few times a second, so this is more than it decodes).
            for ev in tick.events[-SHOWN:]:
                ev.decoded()
            alerts[0] += len(tick.alerts)
            return len(tick.events)

        dp = running.datapath(engine)
        ring_bytes = dp.cfg.ringbuf_pages * os.sysconf("SC_PAGE_SIZE")
        feeder = Feeder(dp.prog_fd, frames, batch_size(ring_bytes, abi.PACKET_EVENT.size))
        rate = drain_batches(feeder, batches, step)
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
        return rate, {"alerts": alerts[0], "ticks": ticks[0], "distinct_sources_seen": distinct,
                      "events_delivered_total": snap.events_delivered,
                      "events_lost_total": dict(snap.events_lost)}  # fmt: skip
    finally:
        engine.close()
        # Its start froze what was alive then (start_gc.settle): the closed engine's cycles collected, the rest
        # (the bench's heap) set aside again, so that no round's leftovers pile up beyond the collector's reach.
        gc.unfreeze()
        gc.collect()
        gc.freeze()


def run(report: Report, opts: core.Options) -> None:
    from ironpost_tui.engine import switching
    from ironpost_tui.engine.engine import raise_priority
    from ironpost_tui.kernel import abi
    from ironpost_tui.kernel.datapath import DatapathConfig

    rounds, batches = opts.reps(7, 2, 1), opts.reps(100, 30, 4)  # 7: the rotating line's rounds spread 0.4-0.8x
    cfg = DatapathConfig(event_rate=0)
    cases = {"rotating": syn_frames(ROTATING), "single": syn_frames(1)}
    # What the bench itself holds (scapy's modules, the 65,537 frames) set aside from the collector's walks before
    # any round, as an engine process's start is (engine/start_gc.py): the floors and the pipeline then run on
    # the same heap, whichever comes first in the shuffled order.
    gc.collect()
    gc.freeze()
    # And what own_process sets for the process at an engine's start, set before any round rather than left
    # by the first pipeline round to the rounds after it: the switch interval, the ticking thread's priority.
    switching.shorten()
    raise_priority(threading.get_native_id())
    batch = batch_size(cfg.ringbuf_pages * os.sysconf("SC_PAGE_SIZE"), abi.PACKET_EVENT.size)
    figs: dict[str, Any] = {"rounds": rounds, "batches": batches, "rotating_sources": ROTATING, "batch": batch}
    report.figures[NAME] = figs
    with rig.lab() as lab:
        for _ in range(rounds):
            for case, kind in core.shuffled([(c, k) for c in cases for k in ("pipeline", "bcc", "mmap")], report.rng):
                if kind == "pipeline":
                    rate, extra = pipeline_rate(lab, cases[case], batches)
                    figs.setdefault(f"{case}:extra", []).append(extra)
                else:
                    rate = floor_rate(kind, cases[case], batches, cfg.ringbuf_pages, abi.PACKET_EVENT.size)
                figs.setdefault(f"{case}:{kind}", []).append({**asdict(rate), "per_cpu_sec": rate.per_cpu_sec})
    for case, what in (("rotating", f"{ROTATING:,} rotating sources"), ("single", "one source")):
        pc = median(r["per_cpu_sec"] for r in figs[f"{case}:pipeline"])
        bc = median(r["per_cpu_sec"] for r in figs[f"{case}:bcc"])
        mc = median(r["per_cpu_sec"] for r in figs[f"{case}:mmap"])
        report.budget(NAME, f"events per CPU-second, {what}", pc, "ev/cpu-s", pc >= 0.5 * bc,
                      ">= 0.5x BCC floor (goal 0.8x)", beside=f"BCC callback {bc:,.0f} ev/cpu-s", ratio=pc / bc,
                      note=f"mmap reader that only counts: {mc:,.0f} ev/cpu-s ({pc / mc:.2f}x); "
                      f"full-ring batches of {figs['batch']:,}")  # fmt: skip
