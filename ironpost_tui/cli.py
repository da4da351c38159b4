"""Command line: `ironpost-tui IFACE`, `ironpost-tui cleanup IFACE`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__, host
from .audit import DEFAULT_AUDIT_LOG
from .datapath import import_bcc
from .errors import ExitStatus, IronpostError

if TYPE_CHECKING:
    from . import headless

SUBCOMMANDS = ("cleanup", "check-config", "demo")


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironpost-tui",
        description="XDP packet filter and triage console. Subcommands: cleanup IFACE, check-config PATH.",
    )
    p.add_argument("iface", help="network interface to attach to (e.g. eth0)")
    p.add_argument("--headless", action="store_true", help="run as an agent without the console")
    p.add_argument("--xdp-mode", choices=("auto", "native", "skb", "offload"), help="XDP attach mode (default auto)")
    p.add_argument("--persist", action="store_true", help="pin program and maps so filtering survives the process")
    p.add_argument(
        "--config",
        type=Path,
        help="TOML configuration file (default /etc/ironpost/ironpost.toml if it exists, else the state file "
        "/var/lib/ironpost/IFACE.rules.toml)",
    )
    p.add_argument("--state-dir", type=Path, default=Path("/var/lib/ironpost"), help="where the state file lives")
    p.add_argument("--audit-log", type=Path, default=DEFAULT_AUDIT_LOG, help="audit trail of rule changes (JSON lines)")
    p.add_argument("--force", action="store_true", help="apply rules even if they would drop a protected address")
    p.add_argument("--version", action="version", version=f"ironpost-tui {__version__}")
    return p


def _cleanup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ironpost-tui cleanup", description="remove ironpost's program and pins")
    p.add_argument("iface")
    return p


def _install_signals(controls: headless.Controls) -> None:
    log = logging.getLogger("ironpost")

    def stop(signum: int, _frame: object) -> None:
        log.info("received %s: stopping", signal.Signals(signum).name)
        controls.stop.set()

    # SIGHUP: the SSH session dropped.  Its default action would kill us
    # without detaching; Textual installs no handler for it either.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, stop)
    signal.signal(signal.SIGUSR1, lambda *_: controls.reload.set())
    signal.signal(signal.SIGUSR2, lambda *_: controls.panic.set())


def _cmd_run(argv: list[str]) -> ExitStatus:
    args = _run_parser().parse_args(argv)
    host.check_privileges()  # before anything touches /var/lib/ironpost or /run/ironpost
    import_bcc()  # say "install python3-bpfcc" before anything else can fail

    from . import headless
    from .config_source import ConfigSource, protections
    from .engine import Engine, EngineOptions

    source = ConfigSource(args.config, args.iface, args.state_dir)
    settings = source.load()
    if not args.headless:
        raise IronpostError("the console is not built yet: run with --headless")
    mode = args.xdp_mode or settings.ebpf.xdp_mode
    options = EngineOptions(
        iface=args.iface,
        xdp_mode="offload" if mode == "hw" else mode,
        persist=args.persist,
        datapath=settings.ebpf.datapath(),
        rules=settings.rules,
        protected=tuple(protections(settings)),
        force=args.force,
        store=source.store,
        audit_log=args.audit_log,
        syn_flood=settings.syn_flood,
        port_scan=settings.port_scan,
    )
    controls = headless.Controls()
    _install_signals(controls)
    return headless.run(Engine(options), controls, source)


def _cmd_demo(argv: list[str]) -> ExitStatus:
    """The embedded lab: a namespace with hosts that browse, scan and flood."""
    p = argparse.ArgumentParser(prog="ironpost-tui demo", description="run ironpost-tui on an embedded demo lab")
    p.add_argument("--headless", action="store_true", help="the agent only, logging to stdout")
    args, rest = p.parse_known_args(argv)
    host.check_privileges()
    import_bcc()
    from . import demo, headless
    from .engine import Engine

    with demo.lab_running() as options:
        if args.headless:
            controls = headless.Controls()
            _install_signals(controls)
            return headless.run(Engine(options), controls, None)
        return _run_demo_console(options, rest)


def _run_demo_console(options: object, rest: list[str]) -> ExitStatus:
    raise IronpostError("the console is not built yet: run `ironpost-tui demo --headless`")


def _cmd_cleanup(argv: list[str]) -> ExitStatus:
    from .cleanup import cleanup

    args = _cleanup_parser().parse_args(argv)
    done = cleanup(args.iface)
    for line in done or [f"nothing to clean on {args.iface}"]:
        print(line)
    return ExitStatus.OK


def _cmd_check_config(argv: list[str]) -> ExitStatus:
    """Validate a configuration without root, BCC or the console: every error, one per line."""
    from . import config as config_mod

    p = argparse.ArgumentParser(prog="ironpost-tui check-config", description="validate a TOML configuration")
    p.add_argument("path", type=Path)
    args = p.parse_args(argv)
    try:
        settings = config_mod.load(args.path)
    except config_mod.ConfigError as exc:
        print(exc.message, file=sys.stderr)
        return ExitStatus.CONFIG_INVALID
    n = len(settings.rules)
    print(f"{args.path}: OK ({n} rule{'' if n == 1 else 's'})")
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            commands = {"cleanup": _cmd_cleanup, "check-config": _cmd_check_config, "demo": _cmd_demo}
            return int(commands[argv[0]](argv[1:]))
        return int(_cmd_run(argv))
    except IronpostError as exc:
        for line in exc.message.splitlines() or [""]:
            print(f"ironpost-tui: {line}", file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.CTRL_C)
    except OSError as exc:
        where = f" ({exc.filename})" if exc.filename else ""
        print(f"ironpost-tui: {exc.strerror or exc}{where}", file=sys.stderr)
        return int(ExitStatus.ERROR)


if __name__ == "__main__":
    sys.exit(main())
