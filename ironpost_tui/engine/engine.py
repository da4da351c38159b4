"""The engine: one interface, one program, its rules, its events and stats.

Textual-free; the console and the headless agent both drive it through
start(), tick() and close(), read snapshot(), and change rules through control
(what tests need beyond that is in tests/support/engine.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ironpost_tui.config.crowdsec import CrowdSecSettings
from ironpost_tui.config.journal import AutoJournal
from ironpost_tui.detectors import Alert, AlertChange, Block, ChangeKind, DetectionPipeline
from ironpost_tui.detectors.alerts import MANY_SOURCES
from ironpost_tui.detectors.settings import AutoBlockLimits, Detector, DetectorConfig, PortScanConfig, SynFloodConfig
from ironpost_tui.engine import start_gc, switching
from ironpost_tui.engine.alert_history import AlertHistory
from ironpost_tui.engine.auto_blocker import AutoBlocker
from ironpost_tui.engine.snapshot import EngineSnapshot, SnapshotBuilder
from ironpost_tui.engine.tick_times import TickSpan, TickTimes
from ironpost_tui.errors import IronpostError, LoadFailed, ModeUnsupported, XdpBusy
from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.capture import CaptureMaps, stop_orphaned
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig, PreparedDatapath, check_pins
from ironpost_tui.kernel.events import EventDecoder
from ironpost_tui.kernel.libbpf import XdpMode
from ironpost_tui.kernel.pins import LINK_PIN, pin_running
from ironpost_tui.kernel.ringbuf import EventRecords
from ironpost_tui.kernel.stats import StatsSampler
from ironpost_tui.kernel.xdp_link import XdpChoice, XdpLink, occupants
from ironpost_tui.model import Action, FilterRule, PacketEvent, RuleStatus, StatsSample, assert_never
from ironpost_tui.rules import external, protect
from ironpost_tui.rules import placement as kernel_rules
from ironpost_tui.rules.audit import Actor, AuditLog
from ironpost_tui.rules.blocking import BlockIndex
from ironpost_tui.rules.control import RuleController, RuleSink
from ironpost_tui.rules.external import Survey
from ironpost_tui.rules.infrastructure import InfraAddress, InfraSources
from ironpost_tui.rules.protect import NO_SSH_CLIENT, Protected
from ironpost_tui.rules.table import RuleTable
from ironpost_tui.rules.wall_clock import monotonic_to_wall_offset
from ironpost_tui.triage.rates import TopRates
from ironpost_tui.triage.reader import TopReader
from ironpost_tui.triage.values import TopSnapshot

if TYPE_CHECKING:  # imported where the LAPI is used (start)
    from ironpost_tui.engine.crowdsec.bouncer import Bouncer
    from ironpost_tui.engine.crowdsec.sensor import Sensor

log = logging.getLogger(__name__)
# The tick is a control loop, and each of its kernel calls gives up the interpreter: the switch interval is
# shortened in a process the engine owns (engine/switching.py).
# And the thread that ticks runs at this nice value (as root; otherwise as it is): on a host whose CPUs are
# busy (a LAPI writing 100,000 decisions beside it, a console, a flood's softirqs), it waits less for one.
TICK_NICE = -5


def raise_priority(tid: int) -> None:
    """Thread ``tid`` at TICK_NICE, if this process may (CAP_SYS_NICE); left as it is otherwise."""
    try:
        if os.getpriority(os.PRIO_PROCESS, tid) > TICK_NICE:
            os.setpriority(os.PRIO_PROCESS, tid, TICK_NICE)
    except OSError as exc:
        log.debug("the tick's thread keeps its priority: %s", exc)


@dataclass(frozen=True)
class EngineOptions:
    iface: str
    xdp_mode: XdpChoice = "auto"
    persist: bool = False
    datapath: DatapathConfig = field(default_factory=DatapathConfig)
    # The compiled-program cache (kernel/program_cache.py) for an unpinned, not offloaded program; None:
    # BCC compiles it at every start.
    program_cache: Path | None = None
    rules: tuple[FilterRule, ...] | None = None  # None: keep what pinned maps hold
    protected: tuple[Protected, ...] = ()  # anti-lockout: into ALLOW4/ALLOW6
    force: bool = False  # start even if a configured rule would drop a protected address
    warn_no_ssh_client: bool = False  # say at start that the operator's SSH client was not found
    store: RuleSink | None = None  # where rule edits are saved
    auto_journal: Path | None = None  # where auto-blocks are kept (config.journal); None: in memory
    audit_log: Path | None = None  # None: audit to the log only
    sample_interval: float = 1.0
    syn_flood: SynFloodConfig = field(default_factory=SynFloodConfig)
    port_scan: PortScanConfig = field(default_factory=PortScanConfig)
    detect_interval: float = 0.5  # seconds between detection ticks
    external_interval: float = external.INTERVAL  # seconds between reads of BLOCKLIST for other tools' entries
    auto_block: AutoBlockLimits = field(default_factory=AutoBlockLimits)
    infrastructure: InfraSources = field(default_factory=InfraSources)  # never auto-blocked; where to find it
    crowdsec: CrowdSecSettings = field(default_factory=CrowdSecSettings)  # [crowdsec]: the LAPI's decisions
    # The engine owns its process (the agent, the console, the demo): it sets the interpreter's switch
    # interval and its ticking thread's priority.  Not as a library: a caller's process is left as it is.
    own_process: bool = False

    def detector(self, name: Detector) -> DetectorConfig:
        """A detector's settings (a Detector without a case here fails mypy: assert_never)."""
        if name is Detector.SYN_FLOOD:
            return self.syn_flood
        if name is Detector.PORT_SCAN:
            return self.port_scan
        assert_never(name)


@dataclass(frozen=True)
class StartReport:
    iface: str
    mode: XdpMode
    prog_id: int
    seconds: float
    adopted: bool
    pin_dir: Path | None


@dataclass(frozen=True)
class Tick:
    events: tuple[PacketEvent, ...]
    sample: StatsSample | None
    interface_state: host.InterfaceState
    alerts: tuple[AlertChange, ...] = ()
    rules: tuple[RuleStatus, ...] | None = None  # the table as this tick published it (hits as in /metrics)
    top: TopSnapshot | None = None  # the top talkers, when this tick read them


@dataclass(frozen=True)
class _Detected:
    """A detection tick's findings, made off the engine's lock (Engine._detect_if_due)."""

    now: float  # monotonic
    wall: float
    alerts: tuple[AlertChange, ...]
    top: TopSnapshot | None


class Engine:
    def __init__(
        self,
        options: EngineOptions,
        notice: Callable[[str], None] | None = None,
        prepared: PreparedDatapath | None = None,
    ) -> None:
        self.options = options
        self._notice = notice or log.warning
        self._lock = host.InterfaceLock(options.iface)
        self._dp: Datapath | None = None
        # Compiled while the configuration was checked (cli): taken at start when it fits, closed otherwise.
        self._prepared = prepared
        self._link: XdpLink | None = None
        self._link_lost = False  # another process detached the link (checked at each sample): never attached again
        self._rules: RuleTable | None = None
        self._control: RuleController | None = None
        self._sampler = StatsSampler()
        self._last_sample: StatsSample | None = None
        self._ifindex = 0
        self._decoder: EventDecoder | None = None
        self._detect = DetectionPipeline(
            options.syn_flood, options.port_scan, options.iface, options.auto_block.quiet_secs
        )
        self._block_index = BlockIndex(())
        self._snapshots = SnapshotBuilder(options.iface)
        self._snapshot = EngineSnapshot(at=time.time(), iface=options.iface, mode="", attached=False)
        self._last_detect = 0.0
        self._survey: Survey | None = None  # the surveyor thread's latest, taken by the next tick
        self._stop_survey = threading.Event()
        self._surveyor: threading.Thread | None = None
        self._journal: AutoJournal | None = None
        self._blocker = AutoBlocker(
            options.detector, options.auto_block, options.infrastructure, lambda: self.control.protected
        )
        self._alerts = AlertHistory()
        self._top_reader: TopReader | None = None
        self._top_rates = TopRates()
        self._top = TopSnapshot(at=time.time())
        self._bouncer: Bouncer | None = None
        self._tick_times = TickTimes()
        self._tick_thread = 0  # the native id of the thread that ticks, once its priority is set
        self._just_expired: list[FilterRule] = []  # the rules the last sample ended (a clock step says them)
        self._sensor: Sensor | None = None
        self._capture: CaptureMaps | None = None  # the program's CAPTURE_* maps: a killed capture's CAPTURE_CFG
        self.report: StartReport | None = None
        # Rule changes from another thread (the command-line socket, the console's edits) and the
        # loop's own (expiry, auto-blocks, reload, panic) take turns on this lock.  A tick holds it
        # only after its wait for events, so a change never waits for the ring buffer's timeout.
        self.lock = threading.RLock()

    # --- lifecycle -------------------------------------------------------------
    def start(self) -> StartReport:
        t0 = time.monotonic()
        opts = self.options
        try:
            host.check_privileges()
            if opts.warn_no_ssh_client:  # in the console, a log warning becomes the status line's notice
                log.warning(NO_SSH_CLIENT, extra={"event": "no_ssh_client"})
            self._ifindex = host.ifindex(opts.iface)
            self._lock.acquire()
            try:
                return self._start(t0)
            except BaseException:
                self.close()
                raise
        finally:
            if opts.own_process:
                # Once the start has ended, however it ended: during it the console's interface and the
                # engine's start are both busy, and a 1 ms interval hands the interpreter from one to the
                # other a thousand times a second (the console's first live frame 1.24 -> 1.13 s with it
                # set here rather than first).
                switching.shorten()
                start_gc.settle()  # the collector back on, the start's objects out of its walks

    def _start(self, t0: float) -> StartReport:
        opts = self.options
        pins = host.pin_dir(opts.iface)
        link_pin = pins / LINK_PIN
        adopting = link_pin.exists()
        adopted_prog = 0
        if adopting:
            if not opts.persist:
                raise XdpBusy(
                    f"ironpost is persisted on {opts.iface} (pinned at {pins}): start with --persist to take it "
                    f"over, or run `ironpost-tui cleanup {opts.iface}` to remove it"
                )
            fd = libbpf.obj_get(str(link_pin))
            try:
                pinned = libbpf.link_info(fd)
            finally:
                os.close(fd)
            if pinned.ifindex != self._ifindex:  # adopted, it would enforce nothing while saying it does
                raise XdpBusy(
                    f"the link pinned at {pins} no longer holds a program on {opts.iface} (detached by another "
                    f"process, or the interface was made again): run `ironpost-tui cleanup {opts.iface}`, then start"
                )
            adopted_prog = pinned.prog_id
        for occ in occupants(self._ifindex):
            if occ.prog_id == adopted_prog:
                continue
            how = f"link id {occ.link_id}" if occ.link_id else "netlink"
            if occ.is_ironpost:
                raise XdpBusy(
                    f"a stale ironpost program (prog id {occ.prog_id}, {occ.mode} mode, {how}) from an older run is "
                    f"attached to {opts.iface}: run `ironpost-tui cleanup {opts.iface}`"
                )
            raise XdpBusy(
                f"{opts.iface} already has a foreign XDP program (prog id {occ.prog_id}, '{occ.name}', {occ.mode} "
                f"mode, {how}): ironpost will not replace it; detach it first"
            )
        # The LAPI's credentials first: a bad key file stops the start before anything is attached.  The
        # CrowdSec client (httpx, yaml: some 30 ms of imports) only when it is used.
        key, creds = "", None
        if opts.crowdsec.enabled:
            from ironpost_tui.engine.crowdsec.lapi import bouncer_key, machine_credentials

            key = bouncer_key(opts.crowdsec)
            creds = machine_credentials(opts.crowdsec) if opts.crowdsec.push_alerts else None
        maps_pinned = False
        if opts.persist:
            host.ensure_bpffs()
            pins.mkdir(parents=True, exist_ok=True)
            maps_pinned = check_pins(pins, opts.datapath)
        offload = opts.xdp_mode == XdpMode.OFFLOAD
        prepared, self._prepared = self._prepared, None
        try:
            if prepared is not None and prepared.cfg == opts.datapath and not opts.persist and not offload:
                self._dp = prepared.take()
            else:
                if prepared is not None:
                    prepared.close()
                self._dp = Datapath(
                    opts.datapath,
                    pin_dir=pins if opts.persist else None,
                    offload_dev=opts.iface if offload else None,
                    cache_dir=opts.program_cache,
                )
        except LoadFailed as exc:
            if offload:
                raise ModeUnsupported(
                    f"{opts.iface} cannot run the program offloaded to its NIC ({exc.message.split(': ', 1)[-1]}): "
                    "use --xdp-mode native, skb or auto"
                ) from exc
            raise
        offset = monotonic_to_wall_offset()
        self._rules = RuleTable(self._dp, offset)
        if adopting or maps_pinned:
            # Pinned maps without a link (a start that failed or was killed after the
            # maps were pinned) still hold entries: learn them, or they would be
            # enforced but invisible, and fill the maps.
            self._rules.adopt_existing()
            if not opts.crowdsec.enabled:
                _leftovers_removed(self._rules.drop_leftover_decisions(), "[crowdsec] is off")
        self._journal = AutoJournal(opts.auto_journal)
        kept = self._journal.open(time.time())
        self._control = RuleController(
            self._rules, AuditLog(opts.audit_log), opts.store, list(opts.protected), journal=self._journal
        )
        if opts.rules is not None:
            # New maps that no attached program reads yet take the load in one batch write per map (ten
            # thousand rules are some fifty thousand writes); pinned ones may be in force.  The writes are
            # kept by this thread alone (Datapath.writes_batched), and rule changes wait for the lock.
            fresh = not (adopting or maps_pinned)
            with self.lock, self._dp.writes_batched() if fresh else contextlib.nullcontext():
                dropped = self._control.load(list(opts.rules), Actor.current("config"), force=opts.force)
            _leftovers_removed(
                dropped, "the file's rules need their room (the LAPI's next full pull writes again those in force)"
            )
        if kept:
            self._control.restore(kept, Actor("ironpost", None, "journal"))
            self._control.flush()
        # Other tools' entries already in BLOCKLIST (written while no controller ran: pinned maps, or maps
        # this start pinned, which a tool can open by their path) are in force before the program is
        # attached or swapped in.  New maps never pinned hold what this start wrote: the surveyor's first
        # read meets an entry written meanwhile (a read and a compare of the whole table, a twentieth of a
        # start with 10,000 rules, not paid on the start's path).
        if adopting or maps_pinned or opts.persist:
            self._reconcile_external()
        self._stop_survey = threading.Event()
        self._surveyor = threading.Thread(target=self._survey_loop, name="blocklist-survey", daemon=True)
        self._surveyor.start()
        self._decoder = EventDecoder(offset, self._rules.rule_for_slot)
        if self.auto_blocking:
            self._blocker.infra.refresh(time.monotonic())
        self._detect.start(self._dp)  # publishes TICK: packets are counted from the first one
        self._top_reader = TopReader(self._dp)
        self._read_top(time.monotonic())  # the baseline the first rates count from
        self._capture = CaptureMaps(libbpf.prog_info(self._dp.prog_fd).id, opts.iface)
        self._dp.open_events()
        if adopting:
            self._link = XdpLink.adopt(str(link_pin), self._ifindex)
            self._link.update(self._dp.prog_fd)  # atomic: the old program enforces until here
        elif opts.xdp_mode == "auto":
            self._link = XdpLink.attach_auto(self._dp.prog_fd, self._ifindex, opts.iface, self._notice)
        else:
            self._link = XdpLink.attach(self._dp.prog_fd, self._ifindex, opts.iface, opts.xdp_mode)
        if opts.persist and not adopting:
            self._link.pin(str(link_pin))
        if opts.crowdsec.enabled:
            from ironpost_tui.engine.crowdsec.bouncer import Bouncer
            from ironpost_tui.engine.crowdsec.lapi import LapiClient
            from ironpost_tui.engine.crowdsec.sensor import Sensor

            self._bouncer = Bouncer(opts.crowdsec, LapiClient(opts.crowdsec, key), self._blocker.infra.overlapping)
            self._bouncer.start()
            self._bouncer.decision_set(self._control)  # takes the decisions a persisted run left (decision_set.py)
            if creds is not None:
                client = LapiClient(opts.crowdsec, key)
                self._sensor = Sensor(opts.crowdsec, client, creds, opts.auto_block, self._blocker.infra.find)
                self._sensor.start()
        self._last_sample = self._sampler.sample(self._dp, time.monotonic())
        self._publish(self._last_sample)
        self.report = StartReport(
            iface=opts.iface,
            mode=self._link.mode,
            prog_id=self._link.prog_id,
            seconds=time.monotonic() - t0,
            adopted=adopting,
            pin_dir=pins if opts.persist else None,
        )
        return self.report

    def keep_enforcing(self) -> Path:
        """Hand the running program over to pins, as ``--persist`` would have made them: it
        keeps enforcing after close(), until ``ironpost-tui cleanup IFACE`` or a ``--persist``
        start that adopts it.  Returns the pin directory; IronpostError (nothing pinned) if not."""
        opts = self.options
        pins = host.pin_dir(opts.iface)
        if opts.persist:
            return pins
        assert self._dp is not None and self._link is not None, "keep_enforcing before start"
        pin_running(self._dp, self._link, pins)
        self.options = replace(opts, persist=True)  # close() leaves it attached
        if self.report is not None:
            self.report = replace(self.report, pin_dir=pins)
        log.info(
            "pinned under %s: the program keeps enforcing after this process; remove it with `ironpost-tui cleanup %s`",
            pins,
            opts.iface,
            extra={"event": "kept_enforcing", "iface": opts.iface},
        )
        return pins

    def close(self) -> None:
        """Detach (unless persisted) and release everything; safe to call twice."""
        self._stop_survey.set()
        if self._surveyor is not None and self._surveyor is not threading.current_thread():
            self._surveyor.join(timeout=5)  # its read of BLOCKLIST done before the maps close
            self._surveyor = None
        with self.lock:  # not in the middle of another thread's rule change
            self._close()

    def _close(self) -> None:
        if self._prepared is not None:  # a start that stopped before it took the compiled program
            self._prepared.close()
            self._prepared = None
        self._stop_survey.set()
        if self._bouncer is not None:
            self._bouncer.stop()
            self._bouncer = None
        if self._sensor is not None:
            self._sensor.stop()
            self._sensor = None
        if self._link is not None:
            try:
                if not self.options.persist:
                    self._link.detach()
                elif self._link_lost:
                    # Pinned, it holds nothing of ours: unpinned, so that the next --persist start attaches a new
                    # link to the pinned maps (a dead pin would refuse it: exit 9).
                    (host.pin_dir(self.options.iface) / LINK_PIN).unlink(missing_ok=True)
            except OSError:
                log.exception("detaching from %s failed", self.options.iface)
            finally:
                self._link.close()
                self._link = None
        if self._journal is not None:
            try:
                self._journal.close()
            except (OSError, IronpostError):
                log.exception("saving the auto-block journal %s failed", self._journal.path)
            self._journal = None
        if self._capture is not None:
            self._capture.close()
            self._capture = None
        if self._dp is not None:
            self._dp.close()
            self._dp = None
        self._snapshot = replace(self._snapshot, attached=False)
        self._lock.release()

    # --- the poll loop ---------------------------------------------------------
    def tick(self, timeout_ms: int = 100, events: bool = True, publish: bool = False) -> Tick:
        """Drain events (waiting at most timeout_ms), and sample stats when due.

        events=False: the events are drained but not decoded (Tick.events stays empty),
        for a front end that has no use for them.  A tick that samples publishes a snapshot,
        reading the rules' hit counters once; publish=True publishes one even when no
        sample is due (the rules just changed), with the last sample's totals."""
        assert self._dp is not None and self._decoder is not None
        if self._tick_thread != threading.get_native_id():
            self._tick_thread = threading.get_native_id()
            if self.options.own_process:
                raise_priority(self._tick_thread)
        if self._bouncer is not None and self._bouncer.pending:
            timeout_ms = min(timeout_ms, 1)  # decisions waiting: the next slice at once, not after an idle wait
        records = self._dp.read_events(timeout_ms)  # only this thread reads the ring: no lock while waiting
        span = TickSpan()
        with span.part():
            detected = self._detect_if_due()  # off the lock: only this thread reads the sketches and top tables
        with self.lock:
            try:
                with span.part():
                    return self._tick(records, events, publish, detected)
            finally:
                self._tick_times.observe(span.wall, span.cpu, span.waited)

    def _detect_if_due(self) -> _Detected | None:
        """The detection tick, when due: the sketches and the top-talker tables read, and the detectors run, off
        the engine's lock.  Their read grows with the CPUs (every CPU's ways: measured in an attacker's review
        of session 29 at 3.7 s a tick on 64 CPUs under a spoofed flood, against 0.07 s on 2), and under the lock
        a panic, an edit and the command line waited for it.  Only this thread reads those maps and holds the
        detectors' state; what the alerts change (the history, auto-blocks, the sensor) is applied under the
        lock (_tick).  The rules the detectors see blocking a source are the last published ones, as before."""
        assert self._dp is not None
        now = time.monotonic()
        if now - self._last_detect < self.options.detect_interval:
            return None
        self._last_detect = now
        wall = time.time()
        alerts = tuple(self._detect.tick(self._dp, now, wall, self._blocks(wall)))
        return _Detected(now, wall, alerts, self._read_top(now))

    def _tick(self, records: EventRecords, events: bool, publish: bool, detected: _Detected | None = None) -> Tick:
        assert self._dp is not None and self._decoder is not None and self._rules is not None
        if step := self._rules.follow_clock():  # the wall clock stepped: events and last hits stamped by it now
            self._decoder.set_clock_offset(self._rules.clock_offset)
            # Expiries are wall-clock times: a step forward ends the timed rules it passes (a review of session 25:
            # said, so that a responder sees why blocks went).
            wall = time.time()
            # The tick that first read the step (it is followed once a second read agrees) may have ended some.
            seen = [*self._rules.rules(), *self._just_expired]
            ended = sum(1 for r in seen if r.expires_at and wall - step < r.expires_at <= wall)
            log.warning("the wall clock stepped %+.1f s: times from now on are stamped by it%s", step,
                        f"; {ended} timed rule(s) expire with it" if ended else "",
                        extra={"event": "clock_step", "seconds": round(step, 3), "expiring": ended})  # fmt: skip
            publish = True
        decoded = tuple(self._decoder.decode_all(records)) if events else ()
        now = time.monotonic()
        sample = None
        if self._last_sample is None or now - self._last_sample.at >= self.options.sample_interval:
            sample = self._last_sample = self._sampler.sample(self._dp, now)
            if self._control is not None:
                gone = self._control.expire(time.time(), Actor("ironpost", None, "expiry"))
                self._blocker.expired(gone)
                self._just_expired = gone  # for a clock step's warning, which may be read a tick later
            self._stop_orphaned_capture()
        survey, self._survey = self._survey, None
        if survey is not None:  # the surveyor's read of BLOCKLIST: acted on here, under the lock
            publish = self._apply_survey(survey) or publish
        if self._bouncer is not None:
            try:
                # In force at once; shown at the next sample (publishing reads every rule's hits: not each tick).
                self._bouncer.apply(self.control)
            except Exception:  # logged, the rest applied next tick
                log.exception("applying CrowdSec decisions failed")
        alerts: tuple[AlertChange, ...] = ()
        top = None
        if detected is not None:
            alerts, top = detected.alerts, detected.top
            self._snapshots.count_alerts(alerts)
            self._alerts.apply(alerts)
            raised = [c.alert for c in alerts if c.kind == ChangeKind.RAISED]
            if raised and self.auto_blocking:
                self._blocker.apply(self.control, raised, detected.now)
            if self.auto_blocking:
                self._blocker.renew(self.control, alerts, detected.now, detected.wall)
            if raised and self._sensor is not None:
                self._sensor.offer(raised, detected.now)
        self._flush()
        if sample is not None and self._link is not None and not self._link_lost and not self._link.holds():
            self._link_lost = True  # the front ends say it and end (headless.log_step, ui/poll_loop.py)
        state = host.interface_state(self.options.iface, self._ifindex)
        if self._link_lost and state != host.InterfaceState.GONE:
            state = host.InterfaceState.DETACHED
        rules = None
        if sample is not None or publish:
            assert self._last_sample is not None
            rules = self._publish(self._last_sample).rules
        return Tick(decoded, sample, state, alerts, rules, top)

    def _stop_orphaned_capture(self) -> None:
        """Turn off a capture whose process is gone (``kill -9``): otherwise CAPTURE_CFG stays on, every
        packet pays its filter, and the copies go to a perf buffer nobody reads."""
        if self._capture is None:
            return
        iface = self.options.iface
        try:
            stopped = stop_orphaned(self._capture, iface)
        except Exception:  # a failed read or write: logged, tried again next sample
            log.exception("checking for a capture left running on %s failed", iface)
            return
        if stopped:
            log.warning(
                "capture on %s left running by a process that is gone (killed?): stopped",
                iface,
                extra={"event": "capture_orphan_stopped", "iface": iface},
            )

    def _read_top(self, now: float) -> TopSnapshot | None:
        """Read the top-talker tables (each detection tick, after it moved TICK's generation, which
        ages their ways) and publish their rates."""
        if self._top_reader is None:
            return None
        try:
            wall = time.time()
            self._top_rates.add(self._top_reader.read(), now, wall)
            self._top = self._top_rates.snapshot(wall)
        except Exception:  # a failed read: logged, tried again next tick
            log.exception("reading the top-talker tables failed")
            return None
        return self._top

    def top(self) -> TopSnapshot:
        """The latest top-talker lists; safe to call from any thread."""
        return self._top

    def _blocks(self, wall: float) -> Mapping[str, Block]:
        """The drop rule holding on each open alert's source, with its drops, as the last published
        rules say (at most a sample old: the rules' hit counters are read once per sample)."""
        sources = [s for s in self._detect.book.sources() if s != MANY_SOURCES]  # a distributed flood's: no rule
        if not sources:
            return {}  # no open alert on a source: no index of 10,000 rules to build (1.5 MiB of it)
        rules = self._snapshot.rules
        if rules is not self._block_index.rules:
            self._block_index = BlockIndex(rules)
        return self._block_index.blocks(sources, wall)

    def _survey_loop(self) -> None:
        """Read BLOCKLIST for other tools' changes every external_interval, off the tick: with 100,000
        CrowdSec decisions in it, the read and the compare take longer than a tick may."""
        while not self._stop_survey.wait(self.options.external_interval):
            try:
                with self.lock:
                    if self._stop_survey.is_set() or self._control is None:
                        return
                    external = self._control.external
                    generation = external.generation
                read = external.read()
                if external.unchanged(read, generation):
                    continue  # the same bytes at the same generation as the last survey: nothing to do
                with self.lock:
                    if self._stop_survey.is_set():
                        return
                    expected, now = external.expected()
                if now == generation:  # else the table wrote meanwhile: the next survey sees it
                    self._survey = external.survey(expected, generation, read)
            except Exception:  # a failed read: logged, tried again next time
                log.exception("reading BLOCKLIST for other tools' entries failed")

    def _apply_survey(self, survey: Survey) -> bool:
        """Other tools' changes to BLOCKLIST into the rules; True when the rules changed."""
        try:
            return self.control.external.apply(survey).rules_changed
        except Exception:  # a failed write: logged, tried again next time
            log.exception("taking in other tools' BLOCKLIST entries failed")
            return False

    def _reconcile_external(self) -> bool:
        """Other tools' changes to BLOCKLIST into the rules; True when the rules changed."""
        try:
            return self.control.reconcile_external().rules_changed
        except Exception:  # a failed read or write: logged, tried again next time
            log.exception("reading BLOCKLIST for other tools' entries failed")
            return False

    def _publish(self, sample: StatsSample) -> EngineSnapshot:
        table = self.control.table
        rules = table.status()
        entries = table.count(MapName.BLOCKLIST)
        if self._bouncer is not None:  # the decisions: one row, their entries beside the rules'
            rules.append(self._bouncer.rule_status(self.control))
            entries += self._bouncer.decision_set(self.control).written(MapName.BLOCKLIST)
        snap = self._snapshots.build(
            sample,
            rules,
            mode=self._link.mode if self._link else "",
            attached=self._link is not None and not self._link_lost,
            blocklist_entries=entries,
            blocklist_capacity=table.capacity()[MapName.BLOCKLIST],
            alerts_active=len(self._detect.book.active),
        )
        crowdsec = self._bouncer.status(self.control) if self._bouncer is not None else None
        # Published whole, once: a reader in another thread (a scrape) never sees one without its ticks or
        # its CrowdSec status, whose series would vanish from /metrics for that scrape.
        self._snapshot = replace(snap, ticks=self._tick_times.snapshot(), crowdsec=crowdsec)
        return self._snapshot

    def snapshot(self) -> EngineSnapshot:
        """The latest published state; safe to call from any thread."""
        return self._snapshot

    def publish(self) -> EngineSnapshot:
        """Publish a snapshot now (the rules just changed), with the last sample's totals."""
        with self.lock:
            assert self._last_sample is not None, "the engine is not started"
            return self._publish(self._last_sample)

    def alerts(self) -> tuple[Alert, ...]:
        """The open alerts and the most recent resolved ones, oldest first, as the detectors last said."""
        with self.lock:
            return self._alerts.alerts()

    @property
    def running(self) -> bool:
        """Started and not closed: its rules can be changed."""
        return self._dp is not None and self._control is not None

    @property
    def auto_blocking(self) -> bool:
        """Whether any detector is set to auto-block."""
        return self._blocker.enabled

    def infrastructure(self) -> list[InfraAddress]:
        """What auto-block never blocks, as last found (each with its reason)."""
        return self._blocker.infra.current(time.monotonic())

    def _flush(self) -> None:
        """This tick's auto-block changes to the journal: one write."""
        if self._control is None:
            return
        try:
            self._control.flush()
        except IronpostError as exc:
            log.error("%s (the auto-blocks stay in force; retried next tick)", exc.message)

    # --- rules -----------------------------------------------------------------
    @property
    def control(self) -> RuleController:
        """Checked, saved and audited rule changes: what front ends use."""
        assert self._control is not None
        return self._control

    def reload(self, rules: list[FilterRule], protected: list[Protected], actor: Actor) -> bool:
        """Move to a new rule set and protections; False when nothing changed.

        On an error the previous set stays in force and the error is raised.
        """
        control = self.control
        # Auto-blocks (in the journal, not the file) stay across a reload, after the file's rules.
        autos = [r for r in control.rules() if control.journaled(r.id)]
        same_rules = rules == [
            r for r in control.rules() if not control.journaled(r.id) and not r.external and not r.crowdsec
        ]
        same_protection = {(p.network, p.reason) for p in protected} == {
            (p.network, p.reason) for p in control.protected
        }
        if same_rules and same_protection:
            return False
        ids = {r.id for r in rules}
        # The file's rule wins an id, and a drop rule of the file with an auto-block's match takes it over in
        # place (as an operator's block does: until session 23 the whole reload was refused as a duplicate
        # match); an auto-block the new protections cover goes.
        claims = {kernel_rules.place(r): r.id for r in rules if r.action is Action.DROP}
        taken = {a.id: claims[p] for a in autos if (p := kernel_rules.place(a)) in claims}
        dropped = [a for a in autos if a.id in ids or a.id in taken or protect.violation(a, protected) is not None]
        kept = [a for a in autos if a not in dropped]
        old_protected = list(control.protected)
        if not same_protection:
            control.set_protected(protected, enforce=False)
            self._blocker.infra.invalidate()
        try:
            control.replace_all(rules + kept, actor, force=self.options.force)
        except BaseException:
            if not same_protection:  # a refused reload changes nothing, the allowlist included
                control.set_protected(old_protected, enforce=False)
            raise
        if not same_protection:
            control.external.enforce_protections()  # other tools' drops on what is now protected go
        if control.journal is not None:
            for rule in dropped:
                control.journal.delete(rule.id)
        control.taken_over.update(taken)  # the auto-blocker follows them as it follows an operator's block
        return True


def _leftovers_removed(count: int, why: str) -> None:
    """Said when a start removed CrowdSec decisions a persisted run left in the pinned maps."""
    if count:
        log.warning(
            "%d CrowdSec decisions left in the pinned maps by the last run removed: %s",
            count,
            why,
            extra={"event": "crowdsec_leftovers_removed", "count": count},
        )
