"""5. Memory of the headless agent: RSS after attach, then during and after a soak of flood traffic.

Two soaks, each with a fresh agent and the default event rate limit, trafgen at full speed:
* one source: UDP from the lab's namespace address, dropped by a source rule (events flow);
* spoofed sources: TCP SYNs from random sources in 198.18.0.0/16 to random ports of the host side,
  with a drop rule on them (nothing protected, so the host never answers): the detectors'
  sketches (SRC_SKETCH, DST_SKETCH: fixed size) churn and the windows fill to their bounds.

Budgets: RSS after each soak within 5% of RSS after attach (flat), and <= 1.5x the floor process's
RSS (python3 + BCC + an empty XDP program compiled and attached, measured here too).  The growth
over the second half of each soak (where a leak would show, once the maps are full) is beside.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from . import b_startup, core, rig
from .core import Report, median

NAME = "memory"


def soak_once(lab: Any, workdir: Path, soak: float, random_src: bool) -> dict[str, Any]:
    """One agent, one flood of ``soak`` seconds; RSS after attach, every second, and after."""
    if random_src:
        rules = [{"id": "bench-soak-drop", "dst_ip": lab.host_ip4, "protocol": 6, "action": "drop"}]
        cfg = rig.trafgen_cfg(lab, proto="tcp", random_src=True, random_dport=True)
    else:
        rules = [{"id": "bench-soak-drop", "src_ip": lab.ns_ip4, "action": "drop"}]
        cfg = rig.trafgen_cfg(lab, proto="udp", dport=9)
    out: dict[str, Any] = {"samples": []}
    with rig.agent(lab.host_if, workdir, rig.agent_config(rules, allowlist=False)) as ag:
        ag.wait_line("ready:", 120)
        ag.wait_line("rules:", 10)
        time.sleep(2.0)
        out["attach_rss_mib"] = rig.proc_rss_mib(ag.pid)
        t0 = time.monotonic()
        with rig.flood(lab, cfg, workdir) as fl:
            tx0 = rig.peer_tx(lab)[0]
            while (elapsed := time.monotonic() - t0) < soak:
                time.sleep(min(1.0, max(0.0, soak - elapsed)))
                out["samples"].append((round(time.monotonic() - t0, 1), rig.proc_rss_mib(ag.pid)))
                fl.check_running()
                if ag.proc.poll() is not None:
                    raise rig.BenchError(f"the agent exited during the soak:\n{ag.output()}")
            out["pps"] = (rig.peer_tx(lab)[0] - tx0) / (time.monotonic() - t0)
        time.sleep(1.0)
        out["end_rss_mib"] = rig.proc_rss_mib(ag.pid)
        raised = [ln for _, ln in ag.lines if " raised: " in ln]
        out["alerts_raised"] = len(raised)
        out["alert_lines"] = raised[:5]
    samples = out["samples"]
    half = [rss for t, rss in samples if t >= soak / 2]
    out["mid_rss_mib"] = half[0] if half else out["attach_rss_mib"]
    out["peak_rss_mib"] = max([out["attach_rss_mib"], out["end_rss_mib"]] + [rss for _, rss in samples])
    return out


def run(report: Report, opts: core.Options) -> None:
    rig.need("trafgen")
    soak = max(10.0, opts.soak_secs if not opts.quick else min(opts.soak_secs, 20.0))
    figs: dict[str, Any] = {"soak_secs": soak}
    report.figures[NAME] = figs
    with rig.tmpdir("memory") as wd, rig.lab() as lab:
        floor_rss = median(b_startup.floor_once(lab.host_if)[1] for _ in range(2))
        figs["floor_rss_mib"] = floor_rss
        figs["one_source"] = soak_once(lab, wd / "one", soak, random_src=False)
        figs["spoofed"] = soak_once(lab, wd / "spoofed", soak, random_src=True)
    first = True
    for key, what in (("one_source", "one-source UDP flood"), ("spoofed", "random-source SYN flood")):
        f = figs[key]
        attach, end = f["attach_rss_mib"], f["end_rss_mib"]
        if first:
            report.budget(NAME, "RSS after attach", attach, "MiB", attach <= 1.5 * floor_rss, "<= 1.5x floor RSS",
                          beside=f"floor {floor_rss:.0f} MiB", ratio=attach / floor_rss)  # fmt: skip
            first = False
        report.budget(NAME, f"RSS after {soak:.0f} s of a {what}", end, "MiB", end <= 1.5 * floor_rss,
                      "<= 1.5x floor RSS", beside=f"floor {floor_rss:.0f} MiB", ratio=end / floor_rss,
                      note=f"peak {f['peak_rss_mib']:.0f} MiB; {f['pps']:,.0f} pkt/s; "
                      f"{f['alerts_raised']} alerts raised")  # fmt: skip
        growth = end / attach - 1
        late = end / f["mid_rss_mib"] - 1
        report.budget(NAME, f"RSS growth over the {what}", growth * 100, "%", abs(growth) <= 0.05, "within 5%",
                      beside=f"attach {attach:.0f} MiB", ratio=end / attach,
                      note=f"second half of the soak: {late * 100:+.1f}%")  # fmt: skip
