"""Command line: `ironpost-tui IFACE`, `ironpost-tui cleanup IFACE`, and the commands for scripts
(`block`, `unblock`, `rules`, `alerts`: ironpost_tui.ctl)."""

from __future__ import annotations

import argparse
import contextlib
import ipaddress
import logging
import os
import signal
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ironpost_tui import __version__
from ironpost_tui.engine.signal_flags import EarlyAsks
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel import host, libbpf
from ironpost_tui.kernel.datapath import PreparedDatapath, check_bcc
from ironpost_tui.kernel.program_cache import DEFAULT_DIR as PROGRAM_CACHE_DIR
from ironpost_tui.metrics import log_format
from ironpost_tui.rules.audit import DEFAULT_AUDIT_LOG
from ironpost_tui.safe_env import drop_textual_debugging
from ironpost_tui.text import visible

if TYPE_CHECKING:
    from ironpost_tui.config.settings import ConsoleSettings, EbpfSettings, Settings
    from ironpost_tui.config.watch import ConfigSource
    from ironpost_tui.engine import headless
    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.engine.feed import Source
    from ironpost_tui.engine.held_logs import HeldLogs
    from ironpost_tui.engine.served import Served

SUBCOMMANDS = ("cleanup", "check-config", "demo", "replay", "block", "unblock", "rules", "alerts", "capture")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironpost-tui",
        description="XDP packet filter and triage console. "
        "Subcommands: cleanup IFACE, check-config PATH, demo, replay FILE; and for scripts, talking to the "
        "running controller of IFACE: block IFACE ADDR[/LEN], unblock IFACE (ADDR | --id ID), rules IFACE, "
        "alerts IFACE, capture IFACE --src ADDR -w FILE.",
    )
    p.add_argument("iface", help="network interface to attach to (e.g. eth0)")
    p.add_argument("--headless", action="store_true", help="run as an agent without the console")
    p.add_argument("--xdp-mode", choices=("auto", "native", "skb", "offload"), help="XDP attach mode (default auto)")
    p.add_argument("--persist", action="store_true", help="pin program and maps so filtering survives the process")
    p.add_argument(
        "--no-cache",
        action="store_true",
        help="compile the program with BCC and parse the configuration at this start, neither reading nor "
        f"saving either in {PROGRAM_CACHE_DIR}",
    )
    p.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default /etc/ironpost/ironpost.toml if it exists, else the state file "
        "/var/lib/ironpost/IFACE.rules.toml)",
    )
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/ironpost"), help="where the state file lives")
    p.add_argument("--audit-log", type=Path, default=DEFAULT_AUDIT_LOG, help="audit trail of rule changes (JSON lines)")
    p.add_argument("--force", action="store_true", help="apply rules even if they would drop a protected address")
    p.add_argument("--metrics-port", type=_port, help="port of /metrics and /healthz (default 9717, or [metrics] port)")
    p.add_argument("--metrics-addr", type=_address, help="address to serve metrics on (default 127.0.0.1: loopback)")
    p.add_argument("--web-config", type=Path, help="TLS and basic auth for metrics (Prometheus exporter-toolkit YAML)")
    p.add_argument("--no-metrics", action="store_true", help="serve no metrics endpoint")
    p.add_argument("--log-format", choices=("text", "json"), help="stdout log lines: text, or one JSON object per line")
    _add_console_options(p)
    p.add_argument("--record", type=Path, help="record what the console shows to FILE (gzip JSON lines)")
    p.add_argument(
        "--one-process",
        action="store_true",
        help="run the console's engine in the console's own process (by default it runs in a process of its own)",
    )
    p.add_argument("--version", action="version", version=f"ironpost-tui {__version__}")
    return p


def _add_console_options(p: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    p.add_argument(
        "--theme", type=_theme_name, help="console theme: ironpost-dark (default), ironpost-light, ironpost-contrast"
    )
    p.add_argument("--refresh", type=_refresh_secs, metavar="SECS", help="console redraw interval (default 1)")


def _refresh_secs(text: str) -> float:
    try:
        secs = float(text)
    except ValueError:
        secs = -1.0
    if not 0.1 <= secs <= 60:
        raise argparse.ArgumentTypeError(f"{text!r} is not a refresh interval (0.1 to 60 seconds)")
    return secs


def _theme_name(text: str) -> str:
    """A theme the console has, checked before anything starts: a typo is refused with the names rather than found
    in the console as a notice (until session 24)."""
    from ironpost_tui.ui.themes import refusal

    why = refusal(text)
    if why is not None:
        raise argparse.ArgumentTypeError(why)
    return text


def _port(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port (1 to 65535)")
    return int(text)


def _address(text: str) -> str:
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an IP address (like 127.0.0.1, 0.0.0.0 or ::)") from None


def _cleanup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironpost-tui cleanup",
        description=f"remove ironpost's program and pins from IFACE (the cache of compiled programs and parsed "
        f"configurations, {PROGRAM_CACHE_DIR}, is kept: it holds no state and is checked before use; remove it "
        "with rm -r)",
    )
    p.add_argument("iface")
    return p


# [general] log_level: the level of ironpost's own loggers.  Python's logging has no level below
# debug that anything here uses, so trace is debug.  Other libraries stay at info or above.
LOG_LEVELS = {"trace": logging.DEBUG, "debug": logging.DEBUG, "info": logging.INFO,
              "warn": logging.WARNING, "error": logging.ERROR}  # fmt: skip


def set_log_level(name: str) -> None:
    level = LOG_LEVELS[name]
    for logger in ("ironpost", "ironpost_tui"):
        logging.getLogger(logger).setLevel(level)
    logging.getLogger().setLevel(max(level, logging.INFO))


def _install_signals(controls: headless.Controls, early: EarlyAsks | None = None) -> None:
    """The agent's handlers; then what ``early`` noted before them, asked of the loop's first step."""
    log = logging.getLogger("ironpost")

    def stop(signum: int, _frame: object) -> None:
        name = signal.Signals(signum).name
        log.info("received %s: stopping", name, extra={"event": "signal", "signal": name})
        controls.stop.set()

    # SIGHUP: the SSH session dropped.  Its default action would kill us
    # without detaching; Textual installs no handler for it either.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGUSR1, lambda *_: controls.reload.set())
    signal.signal(signal.SIGUSR2, lambda *_: controls.panic.set())
    if early is not None:
        early.hand_over(controls.reload.set, controls.panic.set)


def _cmd_run(argv: list[str]) -> ExitStatus:
    from ironpost_tui.engine import start_gc

    start_gc.hold()  # until the engine has started (Engine.start): engine/start_gc.py
    try:
        return _run(argv)
    finally:
        start_gc.release()


def _run(argv: list[str]) -> ExitStatus:
    args = _run_parser().parse_args(argv)
    # SIGUSR1 and SIGUSR2 noted from here until the agent or the console takes them over: the pid file names this
    # process before then, and their default action ended it (engine/signal_flags.py).  The two-process console
    # ignores them until it runs (_run_two_processes).
    early = EarlyAsks().hold() if args.headless or args.one_process else None
    host.check_iface_name(args.iface)  # before it becomes a path or a map key
    host.check_privileges()  # before anything touches /var/lib/ironpost or /run/ironpost
    check_bcc()  # say "install python3-bpfcc" before anything else can fail
    libbpf.check()  # and "install libbpf1"
    if args.headless or args.one_process:
        return _run_engine(args, early=early)
    return _run_two_processes(args)


def _run_engine(args: argparse.Namespace, served: Served | None = None, early: EarlyAsks | None = None) -> ExitStatus:
    """The configuration, then the agent, the console, or (``served``) the console's engine process."""
    from ironpost_tui.config.watch import ConfigSource
    from ironpost_tui.engine import switching
    from ironpost_tui.engine.pid_file import pid_file

    source = ConfigSource(args.config, args.iface, args.state_dir, cache_dir=_cache_dir(args))
    prepared: list[PreparedDatapath] = []
    if args.headless or served is not None:
        # A process of the engine's alone: its start's two threads (the rules checked and loaded, the program
        # loaded beside them) hand the interpreter over at each kernel call (engine/switching.py).
        switching.shorten()

    def compile_early(ebpf: EbpfSettings) -> None:
        """The program compiled while the rules are checked (the engine compiles pinned or offloaded ones)."""
        from ironpost_tui.kernel.libbpf import XdpMode
        from ironpost_tui.kernel.xdp_link import xdp_choice

        if not args.persist and xdp_choice(args.xdp_mode or ebpf.xdp_mode) != XdpMode.OFFLOAD:
            prepared.append(PreparedDatapath(ebpf.datapath(), cache_dir=_cache_dir(args)))

    try:
        settings = source.load(on_ebpf=compile_early, cached=True)
        set_log_level(settings.general.log_level)
        log_format.configure(args.log_format or settings.general.log_format)
        if args.headless and args.record is not None:
            raise IronpostError("--record records the console: leave out --headless (or replay a console recording)")
        # The pid file names the process the operator signals: the console's, when this is its engine's.
        with pid_file(settings.general.pid_file, served.console_pid if served else None):
            return _run_configured(args, settings, source, prepared[0] if prepared else None, served, early)
    finally:
        for p in prepared:  # unloaded unless the engine took it
            p.close()


def _run_two_processes(args: argparse.Namespace) -> ExitStatus:
    """The console in this process, its engine in a forked one (engine/served.py, engine/remote.py): the
    configuration's checks, the table's load and the program's attach run on one core while Textual
    loads and draws on the other."""
    from ironpost_tui.engine import remote, switching

    def engine_process(served: Served) -> int:
        try:
            return int(_run_engine(args, served))
        except IronpostError as exc:
            served.failed(exc)  # the console raises it: its message and exit status, as one process says them
            return int(exc.exit_status)
        except OSError as exc:  # one line, as main() says it in one process
            served.failed(IronpostError(_os_error_text(exc)))
            return int(ExitStatus.ERROR)
        except BaseException as exc:
            logging.getLogger("ironpost").exception("the engine process failed")
            served.failed(exc)
            return int(ExitStatus.ERROR)

    source = remote.spawn(engine_process)  # before any thread starts in this process
    # The pid file names this process: SIGUSR1 (reload) and SIGUSR2 (panic) are the console's once it runs, and
    # never this process's end before then (their default action).
    for sig in (signal.SIGUSR1, signal.SIGUSR2):
        signal.signal(sig, signal.SIG_IGN)
    switching.shorten(switching.CONSOLE_SWITCH_INTERVAL)  # the engine's answers reach it while it renders
    try:
        from ironpost_tui.ui import app as _app  # noqa: F401  # loaded while the engine process starts

        configured = source.configured()
        set_log_level(configured.log_level)
        log_format.configure(args.log_format or configured.log_format)
        # The collector stays held until the console has drawn its first attached frame (ui/app.py).
        with _logs_held() as held:
            return _console(source, _console_settings(args, configured.console), args.theme, held)
    finally:
        source.close()


def _run_configured(
    args: argparse.Namespace,
    settings: Settings,
    source: ConfigSource,
    prepared: PreparedDatapath | None = None,
    served: Served | None = None,
    early: EarlyAsks | None = None,
) -> ExitStatus:
    from ironpost_tui.engine.engine import Engine

    options = _engine_options(args, settings, source)
    if served is not None:
        return _serve_console(Engine(options, prepared=prepared), source, settings, args, served)
    if not args.headless:
        console = _console_settings(args, settings.console)
        return _run_console(Engine(options, prepared=prepared), source, console, args, early=early)
    # The agent's own modules, imported here: the console's engine has no metrics endpoint, and its start
    # waits for each import on its way (prometheus_client and http.server, 35 ms of it).
    from ironpost_tui.engine import headless
    from ironpost_tui.engine.service_notify import Notifier
    from ironpost_tui.metrics import endpoint as metrics_endpoint

    notifier = Notifier.from_environ()  # out of the environment before the engine starts anything
    controls = headless.Controls()
    _install_signals(controls, early)
    engine = Engine(options, prepared=prepared)
    scrapers = options.infrastructure.peers
    endpoint = metrics_endpoint.resolve(
        settings.metrics,
        settings.path,
        no_metrics=args.no_metrics,
        addr=args.metrics_addr,
        port=args.metrics_port,
        web_config_path=args.web_config,
    )
    with metrics_endpoint.serve(
        endpoint, args.iface, engine.snapshot, scrapers, engine.top
    ):  # bound before the engine attaches
        return headless.run(engine, controls, source, notifier)


def _engine_options(args: argparse.Namespace, settings: Settings, source: ConfigSource) -> EngineOptions:
    """The engine's options from the command line and the configuration: the console and the agent alike."""
    from ironpost_tui.engine.engine import EngineOptions
    from ironpost_tui.engine.reload import protections
    from ironpost_tui.kernel.xdp_link import xdp_choice
    from ironpost_tui.rules.infrastructure import InfraSources, RecentPeers, url_host_addresses
    from ironpost_tui.rules.protect import own_client_missing

    mode = args.xdp_mode or settings.ebpf.xdp_mode
    protected = tuple(protections(settings))
    return EngineOptions(
        iface=args.iface,
        xdp_mode=xdp_choice(mode),
        persist=args.persist,
        datapath=settings.ebpf.datapath(),
        program_cache=_cache_dir(args),
        rules=settings.rules,
        protected=protected,
        force=args.force,
        warn_no_ssh_client=settings.safety.protect_ssh_client and own_client_missing(protected),
        store=source.store,
        auto_journal=source.journal_path,
        audit_log=args.audit_log,
        syn_flood=settings.syn_flood,
        port_scan=settings.port_scan,
        auto_block=settings.auto_block,
        # The metrics endpoint records its scrapers in peers; the LAPI is never blocked (nor pushed).
        infrastructure=InfraSources.of(
            settings.safety.protect_ssh_client,
            peers=RecentPeers(),
            lapi=url_host_addresses(settings.crowdsec.lapi_url) if settings.crowdsec.enabled else (),
        ),
        crowdsec=settings.crowdsec,
        own_process=True,
    )


def _cache_dir(args: argparse.Namespace) -> Path | None:
    """The cache's directory, None with --no-cache: the compiled program (the engine uses it only for an
    unpinned, not offloaded program) and the configuration's parse (config/parse_cache.py)."""
    return None if args.no_cache else PROGRAM_CACHE_DIR


def _console_settings(args: argparse.Namespace, console: ConsoleSettings) -> ConsoleSettings:
    refresh = getattr(args, "refresh", None)
    return replace(console, refresh_secs=refresh) if refresh is not None else console


def _run_console(
    engine: Engine,
    config: ConfigSource | None,
    console: ConsoleSettings,
    args: argparse.Namespace,
    *,
    keepable: bool = True,
    early: EarlyAsks | None = None,
) -> ExitStatus:
    """The console on the live engine; the source is closed (the program detached, unless the
    operator chose to keep it enforcing) whatever happens."""
    from ironpost_tui.engine.live import LiveSource
    from ironpost_tui.records.recording import Recorder

    record = getattr(args, "record", None)
    live = LiveSource(engine, config, Recorder(record) if record is not None else None, keepable=keepable)
    # The engine compiles and attaches while the interface loads (Textual, the screens): what it logs
    # meanwhile is held, then goes where the console's own records go.
    # SIGUSR2 (`cleanup IFACE` signals the interface lock's holder: this process) is a panic from before the start
    # takes the lock; the console takes it over once it runs, and ignores it once it leaves.  Until session 24 its
    # default action killed a console signalled before it ran (an attacker's review).
    signal.signal(signal.SIGUSR2, lambda *_: live.panic_soon("signal"))
    signal.signal(signal.SIGUSR1, lambda *_: live.reload())  # as the console's r (a flag: the next tick reloads)
    if early is not None:  # asked before these handlers; a panic runs once the start is done (live.py)
        early.hand_over(live.reload, lambda: live.panic_soon("signal"))
    try:
        with _logs_held() as held:
            live.begin()
            return _console(live, console, getattr(args, "theme", None), held)
    finally:
        signal.signal(signal.SIGUSR2, signal.SIG_IGN)  # the leaving detaches (or keeps: then cleanup finds no holder)
        signal.signal(signal.SIGUSR1, signal.SIG_IGN)
        live.close()


@contextlib.contextmanager
def _logs_held() -> Iterator[HeldLogs]:
    """The root logger's records held until the console takes them (logging_to); those it never took
    (it failed to load) are said when the block ends, where they would have gone."""
    from ironpost_tui.engine.held_logs import HeldLogs

    root = logging.getLogger()
    saved, held = root.handlers[:], HeldLogs()
    root.handlers = [held]
    try:
        yield held
    finally:
        root.handlers = saved
        for record in held.held():
            root.handle(record)


def _serve_console(
    engine: Engine, config: ConfigSource, settings: Settings, args: argparse.Namespace, served: Served
) -> ExitStatus:
    """The console's engine process: start the engine, then answer the console until it closes it."""
    from ironpost_tui.engine.live import LiveSource
    from ironpost_tui.engine.wire import Configured
    from ironpost_tui.records.recording import Recorder

    if served.pending():  # the console was stopped while the configuration loaded: nothing is started
        served.refuse_start()
        return ExitStatus.OK
    live = LiveSource(engine, config, Recorder(args.record) if args.record is not None else None)
    served.will_serve(live)  # before the start takes the interface's lock: `cleanup` signals its holder
    live.begin()
    log_fmt = args.log_format or settings.general.log_format
    served.serve(live, Configured(settings.console, settings.general.log_level, log_fmt, live.info))
    return ExitStatus.OK


def _console(source: Source, console: ConsoleSettings, theme: str | None, held: HeldLogs | None = None) -> ExitStatus:
    """Run the console until it is quit; a failure it ended on becomes the process's error and exit code."""
    from ironpost_tui.ui.app import make_app
    from ironpost_tui.ui.log_handler import logging_to

    app = make_app(console, source, theme=theme)
    with logging_to(app, held):
        app.run()
    if app.farewell:  # what the operator left behind (a program kept enforcing) and how to remove it
        print(visible(app.farewell, keep="\n"))
    if app.failure is not None:
        error = IronpostError(app.failure.text, app.failure.title)
        error.exit_status = ExitStatus(app.failure.exit_status)
        raise error
    return ExitStatus(app.return_code or 0)


def _cmd_replay(argv: list[str]) -> ExitStatus:
    """Play a recording in the console: no root, no BCC."""
    from ironpost_tui.config.settings import ConsoleSettings
    from ironpost_tui.records.recording import ReplaySource

    p = argparse.ArgumentParser(prog="ironpost-tui replay", description="play a console recording back (read-only)")
    p.add_argument("file", type=Path, help="a recording made with --record (.ipr.gz)")
    p.add_argument("--speed", type=_speed, default=1.0, help="playback speed, e.g. 0.5, 2, 10 (default 1)")
    _add_console_options(p)
    args = p.parse_args(argv)
    source = ReplaySource(args.file, speed=args.speed)
    try:
        return _console(source, _console_settings(args, ConsoleSettings()), args.theme)
    finally:
        source.close()


def _speed(text: str) -> float:
    try:
        speed = float(text)
    except ValueError:
        speed = 0.0
    if not 0.01 <= speed <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a speed (0.01 to 1000)")
    return speed


def _demo_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ironpost-tui demo", description="run ironpost-tui on an embedded demo lab")
    p.add_argument("--headless", action="store_true", help="the agent only, logging to stdout, serving metrics")
    console = p.add_argument_group("the console (not with --headless)")
    _add_console_options(console)
    console.add_argument("--record", type=Path, help="record what the console shows to FILE")
    agent = p.add_argument_group("the agent (--headless)")
    agent.add_argument("--metrics-port", type=_port, help="port of /metrics and /healthz (default 9717)")
    agent.add_argument("--metrics-addr", type=_address, help="address to serve metrics on (default 127.0.0.1)")
    agent.add_argument("--no-metrics", action="store_true", help="serve no metrics endpoint")
    return p


def _cmd_demo(argv: list[str]) -> ExitStatus:
    """The embedded lab: a namespace with hosts that browse, scan and flood."""
    p = _demo_parser()
    args = p.parse_args(argv)  # every option checked before the lab is made
    console_only = [f"--{n}" for n in ("theme", "refresh", "record") if getattr(args, n) is not None]
    agent_only = [f"--{n.replace('_', '-')}" for n in ("metrics_port", "metrics_addr") if getattr(args, n) is not None]
    agent_only += ["--no-metrics"] if args.no_metrics else []
    if args.headless and console_only:
        p.error(f"{', '.join(console_only)}: the console's, not the agent's (--headless)")
    if not args.headless and agent_only:
        p.error(f"{', '.join(agent_only)}: the agent's (--headless), not the console's")
    host.check_privileges()
    check_bcc()
    libbpf.check()
    from ironpost_tui.demo import session as demo

    with demo.lab_running() as options:
        if args.headless:
            return _run_demo_agent(options, args)
        return _run_demo_console(options, args)


def _run_demo_agent(options: object, args: argparse.Namespace) -> ExitStatus:
    """The agent on the lab, its metrics served as a real agent's are ([metrics]'s defaults, the options over
    them)."""
    from ironpost_tui.config.settings import MetricsSettings
    from ironpost_tui.engine import headless
    from ironpost_tui.engine.engine import Engine, EngineOptions
    from ironpost_tui.metrics import endpoint as metrics_endpoint

    assert isinstance(options, EngineOptions)
    controls = headless.Controls()
    _install_signals(controls)
    engine = Engine(options)
    endpoint = metrics_endpoint.resolve(
        MetricsSettings(), None, no_metrics=args.no_metrics, addr=args.metrics_addr, port=args.metrics_port
    )
    with metrics_endpoint.serve(endpoint, options.iface, engine.snapshot, options.infrastructure.peers, engine.top):
        return headless.run(engine, controls, None)


def _run_demo_console(options: object, args: argparse.Namespace) -> ExitStatus:
    from ironpost_tui.config.settings import ConsoleSettings
    from ironpost_tui.engine.engine import Engine, EngineOptions

    assert isinstance(options, EngineOptions)
    # keepable=False: the lab (its interface with it) is removed when the demo ends.
    return _run_console(Engine(options), None, _console_settings(args, ConsoleSettings()), args, keepable=False)


def _cmd_cleanup(argv: list[str]) -> ExitStatus:
    from ironpost_tui.kernel.cleanup import cleanup

    args = _cleanup_parser().parse_args(argv)
    host.check_iface_name(args.iface)  # before it becomes a path: `cleanup ../x` touches nothing
    done = cleanup(args.iface)
    for line in done or [f"nothing to clean on {args.iface}"]:
        print(line)
    return ExitStatus.OK


def _cmd_check_config(argv: list[str]) -> ExitStatus:
    """Validate a configuration without root, BCC or the console: every error, one per line."""
    from ironpost_tui.config import settings as config_mod

    p = argparse.ArgumentParser(prog="ironpost-tui check-config", description="validate a TOML configuration")
    p.add_argument("path", type=Path)
    args = p.parse_args(argv)
    try:
        settings = config_mod.load(args.path)
    except config_mod.ConfigError as exc:
        print(visible(exc.message, keep="\n"), file=sys.stderr)
        return exc.exit_status  # 2; 8 when only the kernel's map capacity is exceeded, as a start says
    n = len(settings.rules)
    print(visible(f"{args.path}: OK ({n} rule{'' if n == 1 else 's'})"))
    return ExitStatus.OK


def _cmd_script(name: str) -> Callable[[list[str]], ExitStatus]:
    """``block``, ``unblock``, ``rules``, ``alerts``: a request to the running controller (ironpost_tui.ctl)."""

    def run(argv: list[str]) -> ExitStatus:
        from ironpost_tui.ctl import commands

        return commands.run(name, argv)

    return run


def _cmd_capture(argv: list[str]) -> ExitStatus:
    """``capture IFACE ... -w FILE``: a pcapng capture from the program running on IFACE (ironpost_tui.ctl.capture)."""
    from ironpost_tui.ctl import capture

    return capture.run(argv)


def _os_error_text(exc: OSError) -> str:
    """An OSError as its one line says it: the reason, then the file it was about."""
    where = f" ({exc.filename})" if exc.filename else ""
    return f"{exc.strerror or exc}{where}"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    stdout = logging.StreamHandler(sys.stdout)
    stdout.setFormatter(log_format.formatter("text"))  # control characters escaped
    logging.basicConfig(level=logging.INFO, handlers=[stdout])
    if os.geteuid() == 0:  # before Textual is imported: it reads them then (ironpost_tui/safe_env.py)
        dropped = drop_textual_debugging(os.environ)
        if dropped:
            print(visible(f"ironpost-tui: ignoring {', '.join(dropped)}: Textual's debugging and automation "
                          "variables are not honoured as root"), file=sys.stderr)  # fmt: skip
    try:
        if argv and argv[0] in SUBCOMMANDS:
            commands = {
                "cleanup": _cmd_cleanup,
                "check-config": _cmd_check_config,
                "demo": _cmd_demo,
                "replay": _cmd_replay,
                **{name: _cmd_script(name) for name in ("block", "unblock", "rules", "alerts")},
                "capture": _cmd_capture,
            }
            return int(commands[argv[0]](argv[1:]))
        return int(_cmd_run(argv))
    except IronpostError as exc:
        for line in exc.message.splitlines() or [""]:
            print(visible(f"ironpost-tui: {line}"), file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.CTRL_C)
    except OSError as exc:
        print(visible(f"ironpost-tui: {_os_error_text(exc)}"), file=sys.stderr)
        return int(ExitStatus.ERROR)


if __name__ == "__main__":
    sys.exit(main())
