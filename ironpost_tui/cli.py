"""Command line: `ironpost-tui IFACE`, `ironpost-tui cleanup IFACE`."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from . import __version__
from .errors import ExitStatus, IronpostError

SUBCOMMANDS = ("cleanup",)


def _run_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ironpost-tui",
        description="XDP packet filter and triage console. Subcommands: cleanup IFACE.",
    )
    p.add_argument("iface", help="network interface to attach to (e.g. eth0)")
    p.add_argument("--headless", action="store_true", help="run as an agent without the console")
    p.add_argument("--xdp-mode", choices=("auto", "native", "skb", "offload"), help="XDP attach mode (default auto)")
    p.add_argument("--persist", action="store_true", help="pin program and maps so filtering survives the process")
    p.add_argument("--config", type=Path, help="TOML configuration file")
    p.add_argument("--version", action="version", version=f"ironpost-tui {__version__}")
    return p


def _cleanup_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="ironpost-tui cleanup", description="remove ironpost's program and pins")
    p.add_argument("iface")
    return p


def _install_stop_signals(stop: threading.Event) -> None:
    def handler(signum: int, _frame: object) -> None:
        logging.getLogger("ironpost").info("received %s: stopping", signal.Signals(signum).name)
        stop.set()

    # SIGHUP: the SSH session dropped.  Its default action would kill us
    # without detaching; Textual installs no handler for it either.
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, handler)


def _cmd_run(argv: list[str]) -> ExitStatus:
    from . import config as config_mod
    from .engine import Engine, EngineOptions

    args = _run_parser().parse_args(argv)
    settings = config_mod.load(args.config) if args.config else config_mod.Settings()
    if not args.headless:
        raise IronpostError("the console is not built yet: run with --headless")
    options = EngineOptions(
        iface=args.iface,
        xdp_mode=args.xdp_mode or settings.ebpf.xdp_mode,
        persist=args.persist,
        datapath=settings.ebpf.datapath(),
        rules=settings.rules if args.config else None,
    )
    from . import headless

    stop = threading.Event()
    _install_stop_signals(stop)
    return headless.run(Engine(options), stop)


def _cmd_cleanup(argv: list[str]) -> ExitStatus:
    from .cleanup import cleanup

    args = _cleanup_parser().parse_args(argv)
    done = cleanup(args.iface)
    for line in done or [f"nothing to clean on {args.iface}"]:
        print(line)
    return ExitStatus.OK


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", stream=sys.stdout)
    try:
        if argv and argv[0] in SUBCOMMANDS:
            return int({"cleanup": _cmd_cleanup}[argv[0]](argv[1:]))
        return int(_cmd_run(argv))
    except IronpostError as exc:
        print(f"ironpost-tui: {exc.message}", file=sys.stderr)
        return int(exc.exit_status)
    except KeyboardInterrupt:
        return int(ExitStatus.CTRL_C)


if __name__ == "__main__":
    sys.exit(main())
