"""``python -m bench [--quick | --smoke] [--only NAME,...] [--soak-secs N] [--out FILE]``: run, print the
table, write JSON."""

from __future__ import annotations

import argparse
import importlib
import os
import signal
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path

from . import core

# name -> (module, function, what it measures); run in this order.
BENCHES: dict[str, tuple[str, str, str]] = {
    "prog": ("b_prog", "run", "per-packet cost by BPF_PROG_TEST_RUN vs empty program and xdp-filter"),
    "prog-profile": ("b_profile", "run_profile", "what costs what in ironpost_xdp (program variants)"),
    "drop": ("b_drop", "run", "drop path under a veth flood: XDP native/generic, iptables, nftables"),
    "events": ("b_events", "run", "event pipeline throughput vs a bare ring-buffer callback"),
    "startup": ("b_startup", "run", "launch to attached (headless) and to first frame (console)"),
    "memory": ("b_memory", "run", "RSS after attach and after a flood soak"),
    "console-cpu": ("b_console", "run", "console CPU at idle and under a flood"),
    "detect": ("b_detect", "run", "detection latency: nmap -sS and an hping3 SYN flood"),
}


class Terminated(Exception):
    pass


def _on_signal(signum: int, _frame: object) -> None:
    # SIGTERM/SIGHUP become an exception so that every finally block (labs, rules, agents) runs.
    raise Terminated(signal.Signals(signum).name)


def parse(argv: list[str]) -> core.Options:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    p.add_argument("--quick", action="store_true", help="shorter runs: a smoke test, figures are rough")
    p.add_argument("--only", default="", help=f"comma-separated benchmarks out of: {', '.join(BENCHES)}")
    p.add_argument("--soak-secs", type=float, default=600.0, help="memory soak length (default 600, the issue's)")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a few repeats of every line: checks each line still runs and judges its frames; no figure holds",
    )
    p.add_argument("--seed", type=int, default=19, help="the rule set's seed (default 19)")
    p.add_argument("--out", type=Path, default=core.RESULTS / "latest.json", help="where the JSON goes")
    p.add_argument("--verbose", action="store_true")
    a = p.parse_args(argv)
    only = tuple(x.strip() for x in a.only.split(",") if x.strip())
    unknown = [x for x in only if x not in BENCHES]
    if unknown:
        p.error(f"unknown benchmark(s) {', '.join(unknown)}: choose from {', '.join(BENCHES)}")
    return core.Options(quick=a.quick, soak_secs=a.soak_secs, only=only, verbose=a.verbose, smoke=a.smoke,
                        seed=a.seed, out=a.out.resolve())  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    opts = parse(list(sys.argv[1:] if argv is None else argv))
    if os.geteuid() != 0:
        print("bench: must run as root (sudo make bench)", file=sys.stderr)
        return 2
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    report = core.Report(opts)
    m = core.machine()
    print(f"ironpost-tui benchmarks on {m['cpu_model']} x{m['nproc']}, kernel {m['kernel']}"
          f"{' (quick)' if opts.quick else ' (smoke: no figure holds)' if opts.smoke else ''}", flush=True)  # fmt: skip
    out = opts.out
    names = [n for n in BENCHES if not opts.only or n in opts.only]
    interrupted = False
    for name in names:
        module, func, what = BENCHES[name]
        print(f"\n== {name}: {what}", flush=True)
        t0, cpu0 = time.monotonic(), core.cpu_times()
        try:
            fn: Callable[[core.Report, core.Options], None] = getattr(
                importlib.import_module(f".{module}", __package__), func
            )
            fn(report, opts)
        except (KeyboardInterrupt, Terminated) as exc:
            report.error(name, f"interrupted ({type(exc).__name__} {exc})")
            interrupted = True
        except Exception as exc:  # one benchmark failing does not stop the others
            report.error(name, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}")
            if opts.verbose:
                traceback.print_exc()
            report.figures.setdefault("errors", {})[name] = traceback.format_exc()
        report.figures.setdefault("seconds", {})[name] = round(time.monotonic() - t0, 1)
        report.figures.setdefault("steal_pct", {})[name] = core.steal_pct(cpu0, core.cpu_times())
        report.write(out)  # after each benchmark: a crash later keeps what was measured
        if interrupted:
            break
    print("\n" + report.table())
    report.write(out)
    md = out.with_suffix(".md")
    md.write_text(report.markdown() + "\n")
    failed = report.failed
    verdict = f"{len(failed)} budget(s) failed" if failed else "all budgets met"
    print(f"\nwrote {out} and {md}; {verdict}")
    for ln in failed:
        print(f"FAILURE: {ln.bench}: {ln.name}: {'' if ln.value is None else core.fmt(ln.value)} {ln.unit} "
              f"{ln.budget} {ln.beside} {ln.note}".rstrip())  # fmt: skip
    return 130 if interrupted else (1 if failed else 0)


if __name__ == "__main__":
    sys.exit(main())
