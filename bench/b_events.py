"""3. The event pipeline: events/s from EVENTS through the engine's own tick (ring-buffer poll,
EventDecoder, the detectors' tick, stats sampling) into a console-like bounded buffer (a deque).

Events are injected by BPF_PROG_TEST_RUN on the attached program from a thread (a TCP SYN from a
source a monitor rule matches, ``DatapathConfig(event_rate=0)``): the ring buffer is kept full, so
what is measured is how fast user space drains it.  The floor: the same injection into a bare BCC
ring buffer of the same size and record size, whose callback only casts and counts (on the same
interpreter).  Budget: the pipeline >= 0.5x the floor.
"""

from __future__ import annotations

import collections
import contextlib
import ctypes
import ipaddress
import threading
import time
from collections.abc import Callable, Iterator
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
        from ironpost_tui import libbpf

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


def candidate_decoder(offset: float, rule_for_slot: Callable[[int], Any]) -> Any:
    """A proposal, measured here only: EventDecoder with its addresses and rule ids cached (bounded)
    and PacketEvent built without the frozen dataclass's per-field object.__setattr__."""
    from ironpost_tui import abi
    from ironpost_tui.events import _VERDICTS, EventDecoder
    from ironpost_tui.model import PacketEvent, Verdict

    names = tuple(PacketEvent.__dataclass_fields__)
    new = object.__new__
    v4 = ipaddress.IPv4Address
    v6 = ipaddress.IPv6Address

    class Candidate(EventDecoder):
        def __init__(self) -> None:
            super().__init__(offset, rule_for_slot)
            self._addrs: dict[bytes, Any] = {}
            self._ids: dict[int, str | None] = {}
            self._ids_at = 0

        def _addr(self, raw: bytes, family: int) -> Any:
            a = self._addrs.get(raw)
            if a is None:
                if len(self._addrs) >= 4096:  # a spoofed flood: bounded
                    self._addrs.clear()
                a = self._addrs[raw] = v4(raw[:4]) if family == abi.FAMILY_V4 else v6(raw)
            return a

        def decode(self, raw: bytes) -> Any:
            ts_ns, src, dst, sport, dport, length, slot, family, proto, flags, verdict = self._unpack(raw)
            rule = self._rule_for_slot(slot)
            e = new(PacketEvent)
            e.__dict__.update(zip(names, (ts_ns / 1e9 + self._offset, family, self._addr(src, family),
                                          self._addr(dst, family), sport, dport, proto, flags, length,
                                          _VERDICTS.get(verdict, Verdict.PASS), rule.id if rule else None),
                                  strict=True))  # fmt: skip
            return e

    return Candidate()


BOUNDED_EVENTS = 4096  # events per poll in the bounded-poll candidate


@contextlib.contextmanager
def bounded_poll() -> Iterator[None]:
    """A proposal, measured here only: Datapath's ring-buffer callback stops libbpf's consumption loop
    (returns -1) after BOUNDED_EVENTS records in one poll.  Without it, ring_buffer__poll returns only
    once the ring is empty: under an event rate the consumer cannot match, one engine tick never ends
    (no stats, no detection, no redraw) and its pending list grows without bound."""
    from ironpost_tui import abi
    from ironpost_tui.datapath import Datapath

    size = abi.PACKET_EVENT.size
    orig_open, orig_poll = Datapath.open_events, Datapath.poll_events

    def open_events(self: Any, on_event: Callable[[bytes], None]) -> None:
        left = self._bench_left = [BOUNDED_EVENTS]

        def callback(_ctx: Any, data: Any, _size: int) -> int:
            on_event(ctypes.string_at(data, size))
            left[0] -= 1
            return -1 if left[0] <= 0 else 0

        self._tables["EVENTS"].open_ring_buffer(callback)
        self._ringbuf_open = True

    def poll_events(self: Any, timeout_ms: int) -> None:
        if self._ringbuf_open:
            self._bench_left[0] = BOUNDED_EVENTS
            self._bpf.ring_buffer_poll(timeout_ms)

    Datapath.open_events, Datapath.poll_events = open_events, poll_events  # type: ignore[method-assign]
    try:
        yield
    finally:
        Datapath.open_events, Datapath.poll_events = orig_open, orig_poll  # type: ignore[method-assign]


def pipeline_rate(lab: Any, frame: bytes, secs: float, variant: str = "product") -> tuple[Rate, dict[str, Any]]:
    with bounded_poll() if "bounded" in variant else contextlib.nullcontext():
        return _pipeline_rate(lab, frame, secs, "decoder" in variant)


def _pipeline_rate(lab: Any, frame: bytes, secs: float, candidate: bool) -> tuple[Rate, dict[str, Any]]:
    from ironpost_tui.datapath import DatapathConfig
    from ironpost_tui.engine import Engine, EngineOptions
    from ironpost_tui.model import Action, FilterRule

    rule = FilterRule("bench-monitor", Action.MONITOR, src_ip=ipaddress.ip_network(SRC))
    opts = EngineOptions(iface=lab.host_if, xdp_mode="auto", datapath=DatapathConfig(event_rate=0),
                         rules=(rule,), protected=())  # fmt: skip
    engine = Engine(opts)
    engine.start()
    try:
        if candidate:
            real = engine._decoder
            assert real is not None
            engine._decoder = candidate_decoder(real._offset, real._rule_for_slot)
        console: collections.deque[Any] = collections.deque(maxlen=10_000)  # what a console keeps
        alerts = [0]
        ticks = [0]
        last_rule: list[str | None] = [None]

        def step() -> int:
            ticks[0] += 1
            tick = engine.tick(timeout_ms=100)
            console.extend(tick.events)
            alerts[0] += len(tick.alerts)
            if tick.events:
                last_rule[0] = tick.events[-1].rule_id
            return len(tick.events)

        inj = Injector(engine.datapath.prog_fd, frame)
        try:
            t0 = time.monotonic()
            rate = drain_for(secs, step)
            ticks_per_sec = ticks[0] / (time.monotonic() - t0)
        finally:
            inj.stop()
        if last_rule[0] != "bench-monitor":
            raise rig.BenchError(f"events decoded with rule {last_rule[0]!r}, expected 'bench-monitor'")
        snap = engine.sample()
        return rate, {"alerts": alerts[0], "ticks_per_sec": ticks_per_sec,
                      "events_delivered_total": snap.events_delivered,
                      "events_lost_total": dict(snap.events_lost)}  # fmt: skip
    finally:
        engine.close()


def run(report: Report, opts: core.Options) -> None:
    from ironpost_tui import abi
    from ironpost_tui.datapath import DatapathConfig

    rounds, secs = (1, 3.0) if opts.quick else (3, 8.0)
    frame = syn_frame()
    cfg = DatapathConfig(event_rate=0)
    variants = ("decoder", "bounded", "bounded+decoder")
    figs: dict[str, Any] = {"rounds": rounds, "secs": secs, "pipeline": [], "floor": [], "extra": [],
                            "candidates": {v: [] for v in variants}, "candidate_extra": {v: [] for v in variants}}
    report.figures[NAME] = figs
    with rig.lab() as lab:
        for _ in range(rounds):
            figs["floor"].append(floor_rate(frame, secs, cfg.ringbuf_pages, abi.PACKET_EVENT.size))
            rate, extra = pipeline_rate(lab, frame, secs)
            figs["pipeline"].append(rate)
            figs["extra"].append(extra)
            for v in variants:
                r, x = pipeline_rate(lab, frame, secs, v)
                figs["candidates"][v].append(r)
                figs["candidate_extra"][v].append(x)
    pw, fw = median(r.per_wall_sec for r in figs["pipeline"]), median(r.per_wall_sec for r in figs["floor"])
    pc, fc = median(r.per_cpu_sec for r in figs["pipeline"]), median(r.per_cpu_sec for r in figs["floor"])
    cand = {v: median(r.per_cpu_sec for r in rs) for v, rs in figs["candidates"].items()}
    cand_wall = {v: median(r.per_wall_sec for r in rs) for v, rs in figs["candidates"].items()}
    figs["candidates"] = {v: [asdict(r) for r in rs] for v, rs in figs["candidates"].items()}
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
                note="the product's poll returns only when the ring is empty: one tick can last the whole run")
    labels = {"decoder": "candidate: cached addresses, no frozen __setattr__",
              "bounded": f"candidate: at most {BOUNDED_EVENTS} events per poll",
              "bounded+decoder": "candidates together"}  # fmt: skip
    for v, cc in cand.items():
        ticks_v = median(x["ticks_per_sec"] for x in figs["candidate_extra"][v])
        report.info(NAME, labels[v], cc, "ev/cpu-s", beside=f"bare callback {fc:,.0f} ev/cpu-s", ratio=cc / fc,
                    note=f"a proposal, not the product: {cc / pc:.2f}x the product's; {cand_wall[v]:,.0f} ev/s "
                    f"wall ({cand_wall[v] / fw:.2f}x floor), {ticks_v:.0f} ticks/s")  # fmt: skip
