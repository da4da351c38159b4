"""3. The event pipeline: events/s from EVENTS through the engine's own tick (ring-buffer poll,
EventDecoder, the detectors' tick, stats sampling) into a console-like bounded buffer (a deque).

Events are injected by BPF_PROG_TEST_RUN on the attached program from a thread (a TCP SYN from a
source a monitor rule matches, ``DatapathConfig(event_rate=0)``): the ring buffer is kept full, so
what is measured is how fast user space drains it.  The floor: the same injection into a bare BCC
ring buffer of the same size and record size, whose callback only casts and counts (on the same
interpreter).  Budget: the pipeline >= 0.5x the floor.

Where the product reads EVENTS through its own mmap (x86, ironpost_tui/kernel/ringbuf.py) it pays no
per-record callback, so it can pass the floor: the floor stays what BCC's own consumer costs.
"""

from __future__ import annotations

import collections
import ctypes
import ipaddress
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from . import core, rig
from .core import Report, median

NAME = "events"
SRC, DST = "198.18.0.1", "198.19.0.1"


def syn_frame() -> bytes:
    from scapy.layers.inet import IP, TCP
    from scapy.layers.l2 import Ether

    return bytes(Ether(src="02:00:00:00:00:01", dst="02:00:00:00:00:02") / IP(src=SRC, dst=DST)
                 / TCP(sport=40000, dport=8080, flags="S"))  # fmt: skip


class Injector:
    """A thread running BPF_PROG_TEST_RUN on ``fd`` in batches until stopped (ctypes releases the GIL)."""

    def __init__(self, fd: int, frame: bytes, batch: int = 200_000) -> None:
        from ironpost_tui.kernel import libbpf

        self._stop = threading.Event()
        self.runs = 0
        self.error: BaseException | None = None

        def loop() -> None:
            try:
                while not self._stop.is_set():
                    libbpf.prog_test_run(fd, frame, repeat=batch)
                    self.runs += batch
            except BaseException as exc:  # reported by stop()
                self.error = exc

        self._thread = threading.Thread(target=loop, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(30)
        if self.error is not None:
            raise rig.BenchError(f"injector: {self.error}")


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


def floor_rate(frame: bytes, secs: float, ring_pages: int, event_size: int) -> Rate:
    import bcc

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
    try:
        fd = int(b.load_func(b"f", bcc.BPF.XDP).fd)
        count = [0]
        ptr = ctypes.POINTER(Ev)

        def cb(_ctx: Any, data: Any, _size: int) -> int:
            ctypes.cast(data, ptr)
            count[0] += 1
            return 0

        b[b"EV"].open_ring_buffer(cb)

        def step() -> int:
            before = count[0]
            b.ring_buffer_poll(100)
            return count[0] - before

        inj = Injector(fd, frame)
        try:
            return drain_for(secs, step)
        finally:
            inj.stop()
    finally:
        b.cleanup()


def pipeline_rate(lab: Any, frame: bytes, secs: float) -> tuple[Rate, dict[str, Any]]:
    from support import engine as running  # tests/support: bench/__init__.py puts tests/ on sys.path

    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.kernel.datapath import DatapathConfig
    from ironpost_tui.model import Action, FilterRule

    rule = FilterRule("bench-monitor", Action.MONITOR, src_ip=ipaddress.ip_network(SRC))
    opts = EngineOptions(iface=lab.host_if, xdp_mode="auto", datapath=DatapathConfig(event_rate=0),
                         rules=(rule,), protected=())  # fmt: skip
    engine = Engine(opts)
    engine.start()
    try:
        console: collections.deque[Any] = collections.deque(maxlen=10_000)  # what a console keeps
        alerts = [0]
        ticks = [0]
        last: list[Any] = [None]

        def step() -> int:
            ticks[0] += 1
            tick = engine.tick(timeout_ms=100)
            console.extend(tick.events)
            alerts[0] += len(tick.alerts)
            if tick.events:
                last[0] = tick.events[-1]
            return len(tick.events)

        inj = Injector(running.datapath(engine).prog_fd, frame)
        try:
            t0 = time.monotonic()
            rate = drain_for(secs, step)
            ticks_per_sec = ticks[0] / (time.monotonic() - t0)
        finally:
            inj.stop()
        e = last[0]
        got = (str(e.src), str(e.dst), e.dst_port, e.rule_id) if e is not None else None
        if got != (SRC, DST, 8080, "bench-monitor"):
            raise rig.BenchError(f"events decoded as {got!r}, expected {(SRC, DST, 8080, 'bench-monitor')!r}")
        snap = running.sample(engine)
        return rate, {"alerts": alerts[0], "ticks_per_sec": ticks_per_sec,
                      "events_delivered_total": snap.events_delivered,
                      "events_lost_total": dict(snap.events_lost)}  # fmt: skip
    finally:
        engine.close()


def run(report: Report, opts: core.Options) -> None:
    from ironpost_tui.kernel import abi
    from ironpost_tui.kernel.datapath import MAX_EVENTS_PER_POLL, DatapathConfig

    rounds, secs = (1, 3.0) if opts.quick else (3, 8.0)
    frame = syn_frame()
    cfg = DatapathConfig(event_rate=0)
    figs: dict[str, Any] = {"rounds": rounds, "secs": secs, "pipeline": [], "floor": [], "extra": []}
    report.figures[NAME] = figs
    with rig.lab() as lab:
        for _ in range(rounds):
            figs["floor"].append(floor_rate(frame, secs, cfg.ringbuf_pages, abi.PACKET_EVENT.size))
            rate, extra = pipeline_rate(lab, frame, secs)
            figs["pipeline"].append(rate)
            figs["extra"].append(extra)
    pw, fw = median(r.per_wall_sec for r in figs["pipeline"]), median(r.per_wall_sec for r in figs["floor"])
    pc, fc = median(r.per_cpu_sec for r in figs["pipeline"]), median(r.per_cpu_sec for r in figs["floor"])
    ticks = median(x["ticks_per_sec"] for x in figs["extra"])
    figs["pipeline"] = [asdict(r) for r in figs["pipeline"]]
    figs["floor"] = [asdict(r) for r in figs["floor"]]
    report.budget(NAME, "events/s through decode, detectors, console buffer", pw, "ev/s", pw >= 0.5 * fw,
                  ">= 0.5x floor", beside=f"bare callback {fw:,.0f} ev/s", ratio=pw / fw,
                  note="wall clock: both consumers share 2 CPUs with the injector and the machine")  # fmt: skip
    report.budget(NAME, "events per CPU-second of the consuming thread", pc, "ev/cpu-s", pc >= 0.5 * fc,
                  ">= 0.5x floor", beside=f"bare callback {fc:,.0f} ev/cpu-s", ratio=pc / fc,
                  note="the same, per CPU time the consumer got: robust to a busy machine")  # fmt: skip
    report.info(NAME, "engine ticks per second while draining", ticks, "/s",
                note=f"a poll delivers at most {MAX_EVENTS_PER_POLL} events, so a tick ends under a flood")  # fmt: skip
