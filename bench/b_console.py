"""6. Console CPU: ``ironpost-tui IFACE`` (the Textual console, in a private tmux server) attached to
the lab's host side with the 10,000-rule file (bench/ruleset.py: the rules pane holds them all, their
hits published every second), its process's CPU time (user + system, all threads) over a window, as a
share of one core: at idle, then under a 100,000 packets/s flood (trafgen, rate-limited) that a drop
rule matches, so events flow (at the default event rate limit).  Budgets: 5% and 15% of a core.
Skipped when ironpost_tui/ui does not exist.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ironpost_tui.config.settings import EbpfSettings

from . import b_startup, core, rig, ruleset
from .core import Report

NAME = "console-cpu"
FLOOD_PPS = 100_000


def attached(ifindex: int) -> bool:
    from ironpost_tui.kernel import libbpf

    return bool(libbpf.xdp_query(ifindex).prog_ids)


WINDOWS = 3  # each figure: the median of this many consecutive windows, every one kept


def cpu_shares(pid: int, secs: float) -> list[float]:
    """The console's CPU share over WINDOWS consecutive windows of ``secs`` / WINDOWS each."""
    return [cpu_share(pid, secs / WINDOWS) for _ in range(WINDOWS)]


def cpu_share(pid: int, secs: float) -> float:
    pids = rig.tree_pids(pid)
    c0 = sum(rig.proc_cpu_secs(p) for p in pids)
    t0 = time.monotonic()
    time.sleep(secs)
    c1 = sum(rig.proc_cpu_secs(p) for p in pids if Path(f"/proc/{p}").exists())
    return (c1 - c0) / (time.monotonic() - t0)


def run(report: Report, opts: core.Options) -> None:
    if not b_startup.console_available():
        report.skip(NAME, "console CPU at idle", "console: not built yet")
        report.skip(NAME, f"console CPU under {FLOOD_PPS:,} pkt/s", "console: not built yet")
        return
    rig.need("trafgen", "tmux")
    secs = 2.0 if opts.smoke else 5.0 if opts.quick else 15.0
    figs: dict[str, Any] = {"window_secs": secs}
    report.figures[NAME] = figs
    with rig.tmpdir("console") as wd, rig.lab() as lab:

        def measure() -> tuple[float, float]:
            # The flood's drop rule takes the place of the file's last multi-field rule (10,000 at most);
            # built at each attempt, as no rule may cover an address in use on the host.
            rules = [{"id": "bench-flood", "src_ip": lab.ns_ip4, "action": "drop"}]
            rs = ruleset.build(opts.seed)
            rs = ruleset.RuleSet(rs.seed, rs.exact, rs.prefix4, rs.prefix6, rs.multi[: len(rs.multi) - len(rules)])
            with b_startup.console(lab.host_if, wd / "console", rs.toml(head=rig.agent_config(rules))) as t:
                b_startup.wait_first_frame(t, rules=rs.count + len(rules))
                end = time.monotonic() + 120
                while not attached(lab.ifindex):
                    if time.monotonic() > end or not t.alive():
                        raise rig.BenchError(f"the console did not attach:\n{t.capture()}")
                    time.sleep(0.1)
                time.sleep(3.0)  # settle: first samples, first redraws
                pid = t.pane_pid()
                idles = cpu_shares(pid, secs)
                idle = core.median(idles)
                figs["idle_core_share"], figs["idle_core_shares"] = idle, idles
                cfg = rig.trafgen_cfg(lab, proto="udp", dport=9)
                with rig.flood(lab, cfg, wd, rate_pps=FLOOD_PPS, settle=2.0) as fl:
                    tx0 = rig.peer_tx(lab)[0]
                    t0 = time.monotonic()
                    busies = cpu_shares(pid, secs)
                    busy = core.median(busies)
                    figs["flood_pps"] = (rig.peer_tx(lab)[0] - tx0) / (time.monotonic() - t0)
                    fl.check_running()
                figs["flood_core_share"], figs["flood_core_shares"] = busy, busies
                figs["screen_under_flood"] = t.capture()
                return idle, busy

        idle, busy = rig.retry_host_address_race(measure)
        pps = figs["flood_pps"]
    spread = [f"{x * 100:.1f}" for x in figs["idle_core_shares"]]
    report.budget(NAME, "console CPU at idle, 10,000 rules", idle * 100, "% core", idle <= 0.05, "<= 5% of a core",
                  note=f"median of {WINDOWS} windows of {secs / WINDOWS:g} s: {', '.join(spread)} %")  # fmt: skip
    spread = [f"{x * 100:.1f}" for x in figs["flood_core_shares"]]
    rate = EbpfSettings().event_rate_limit
    report.budget(NAME, f"console CPU under {FLOOD_PPS // 1000}k pkt/s with events, 10,000 rules", busy * 100, "% core",
                  busy <= 0.15, "<= 15% of a core",
                  note=f"median of {WINDOWS} windows of {secs / WINDOWS:g} s: {', '.join(spread)} %; flood measured at "
                  f"{pps:,.0f} pkt/s, every packet a rule's match; events reach the console at the default "
                  f"event_rate_limit, {rate:,}/s per CPU, the rest counted as lost")  # fmt: skip
