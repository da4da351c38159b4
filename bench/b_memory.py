"""5. Memory of the headless agent with the 10,000-rule file (bench/ruleset.py): RSS after attach,
then every second of a flood soak (``--soak-secs``: 600 s by default, the issue's 10 minutes; the
smoke mode's few seconds).

Two soaks, each with a fresh agent, trafgen at full speed:
* one source: UDP from the lab's namespace address, dropped by a source rule (events flow);
* spoofed sources: IPv6 TCP SYNs to port 443 of the host side from random sources in a /48 of
  2001:db8::/32 that no rule and no lab address covers (80 random bits a packet: at a million packets a
  second for ten minutes a source sends one packet, as in a flood spoofed from the whole address space;
  the lab's IPv4 /15 is too small for that: its 2^17 sources would each send some 8 SYNs a second, which by
  the detectors' own thresholds makes each a flooder), with ``auto_block`` on for both detectors, as an
  operator who wants it would run: the sketches churn, the windows fill to their bounds, and the alerts are
  judged.  A drop rule on the host side's /64, TCP port 443 (the shape of the rule set's own IPv6 rules),
  keeps the host from answering the spoofed sources (and its replies could not leave the lab).

Budgets: RSS after attach <= 1.5x the floor process's RSS (python3 + BCC + an empty XDP program compiled
and attached, measured here too); flat: the *peak* over each soak within 5% of RSS after attach; the
spoofed flood raises no single-source alert (no source sends more than one packet: an alert naming one is
false, and with auto_block on it blocks an innocent address) and auto-blocks nothing, and raises the
many-sources alert it is (the control: a run that raised no alert at all, or whose alert lines were no longer
read, fails).
"""

from __future__ import annotations

import collections
import ipaddress
import re
import time
from pathlib import Path
from typing import Any

from . import b_startup, core, rig, ruleset
from .core import Report, median

NAME = "memory"


ALERT = re.compile(r"alert (\d+) (\S+) (\S+): (.+?) -> ")
DETECTORS_AUTO_BLOCK = """
[detectors.syn_flood]
auto_block = true

[detectors.port_scan]
auto_block = true
"""


SPOOF_PORT = 443
SPOOF_CANDIDATES = [ipaddress.IPv6Network(f"2001:db8:{0x1000 + i:x}::/48") for i in range(16)]


def spoof_sources(lab: Any, rs: ruleset.RuleSet) -> ipaddress.IPv6Network:
    """The spoofed flood's /48: outside every rule of the set, the lab's /64 and every address in use."""
    taken = [ipaddress.ip_network(f"{lab.host_ip6}/64", strict=False), *rs.prefix6, ruleset.MULTI6,
             *ruleset.addresses_in_use()]  # fmt: skip
    for net in SPOOF_CANDIDATES:
        if not any(net.overlaps(t) for t in taken if t.version == 6):
            return net
    raise rig.BenchError("no free /48 in 2001:db8:1000::/44 for the spoofed sources")


def soak_once(lab: Any, workdir: Path, soak: float, random_src: bool, seed: int) -> dict[str, Any]:
    """One agent, one flood of ``soak`` seconds; RSS after attach, every second, and after; its alerts."""
    # Built now, not once for the run: no rule may cover an address in use when the agent starts (another
    # lab's, on a shared machine), or the agent refuses the file.
    rs = ruleset.build(seed)
    out: dict[str, Any] = {"samples": [], "auto_block": random_src}
    if random_src:
        sources = spoof_sources(lab, rs)
        out["spoofed_sources"] = str(sources)
        # dst_ip /64 + dst_port + protocol: the shape of the rule set's IPv6 rules, so the 8 shapes suffice.
        host64 = str(ipaddress.ip_network(f"{lab.host_ip6}/64", strict=False))
        rules = [{"id": "bench-soak-drop", "dst_ip": host64, "dst_port": SPOOF_PORT, "protocol": 6, "action": "drop"}]
        cfg = rig.spoofed_syn6_cfg(lab, sources, SPOOF_PORT)
    else:
        rules = [{"id": "bench-soak-drop", "src_ip": lab.ns_ip4, "action": "drop"}]
        cfg = rig.trafgen_cfg(lab, proto="udp", dport=9)
    head = rig.agent_config(rules) + (DETECTORS_AUTO_BLOCK if random_src else "")
    # The file's limit is 10,000 rules: the soak's own rule takes the place of the last multi-field rule.
    rs = ruleset.RuleSet(rs.seed, rs.exact, rs.prefix4, rs.prefix6, rs.multi[: len(rs.multi) - len(rules)])
    with rig.agent(lab.host_if, workdir, rs.toml(head=head)) as ag:
        ag.wait_line("ready:", 120)
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
        raised = [m for _, ln in ag.lines if (m := ALERT.search(ln)) and m[3] == "raised"]
        out["alerts_raised"] = len(raised)
        out["alerts_by_detector"] = dict(collections.Counter(m[2] for m in raised))
        single = [m[0] for m in raised if m[4] != "many sources"]
        out["single_source_alerts"] = len(single)
        out["single_source_alert_lines"] = single[:10]
        out["auto_blocked"] = sum(1 for _, ln in ag.lines if "auto-blocked " in ln)
    samples = out["samples"]
    out["peak_rss_mib"] = max([out["attach_rss_mib"], out["end_rss_mib"]] + [rss for _, rss in samples])
    return out


def run(report: Report, opts: core.Options) -> None:
    rig.need("trafgen")
    soak = 5.0 if opts.smoke else min(opts.soak_secs, 20.0) if opts.quick else opts.soak_secs
    figs: dict[str, Any] = {"soak_secs": soak}
    report.figures[NAME] = figs
    with rig.tmpdir("memory") as wd, rig.lab() as lab:
        floor_samples = [b_startup.floor_once(lab.host_if)[1] for _ in range(3)]
        floor_rss = median(floor_samples)
        figs["floor_rss_mib"], figs["floor_rss_samples_mib"] = floor_rss, floor_samples
        for key in core.shuffled(("one_source", "spoofed"), report.rng):
            figs[key] = rig.retry_host_address_race(
                lambda key=key: soak_once(lab, wd / key, soak, key == "spoofed", opts.seed)  # type: ignore[misc]
            )
    first = True
    for key, what in (("one_source", "one-source UDP flood"), ("spoofed", "spoofed SYN flood, auto_block on")):
        f = figs[key]
        attach, peak = f["attach_rss_mib"], f["peak_rss_mib"]
        if first:
            ok = attach <= 1.5 * floor_rss
            report.budget(NAME, "RSS after attach, 10,000 rules", attach, "MiB", ok, "<= 1.5x floor RSS",
                          beside=f"floor {floor_rss:.1f} MiB", ratio=attach / floor_rss,
                          note=f"the floor's RSS, 3 runs: {', '.join(f'{x:.1f}' for x in floor_samples)} MiB; the "
                          "floor that compiles nothing (a startup line) holds far less: no LLVM")  # fmt: skip
            first = False
        growth = peak / attach - 1
        # Where the peak was reached: within the first minute (the bounded tables filling: the detectors'
        # and top talkers' windows are a minute at most) or after it (what a leak would look like).
        early = [rss for t, rss in f["samples"] if t <= 60]
        late = [rss for t, rss in f["samples"] if t > 60]
        when = (f"; peak in the first 60 s {max(early):.0f} MiB, after it {max(late):.0f} MiB"
                if early and late else "")  # fmt: skip
        report.budget(NAME, f"RSS peak over {soak:.0f} s of a {what}", peak, "MiB",
                      abs(growth) <= 0.05 and peak <= 1.5 * floor_rss, "peak within 5% of attach, <= 1.5x floor",
                      beside=f"attach {attach:.0f} MiB", ratio=peak / attach,
                      note=f"end {f['end_rss_mib']:.0f} MiB; {f['pps']:,.0f} pkt/s; "
                      f"{f['alerts_raised']} alerts raised {f['alerts_by_detector']}{when}")  # fmt: skip
    f = figs["spoofed"]
    bad = f["single_source_alerts"] + f["auto_blocked"]
    many = f["alerts_raised"] - f["single_source_alerts"]
    report.budget(NAME, "false single-source alerts in the spoofed flood", f["single_source_alerts"], "",
                  bad == 0 and many > 0, "0 (and 0 auto-blocks), the flood's many-sources alert raised",
                  note=f"{f['auto_blocked']} auto-blocked; {many} alerts on many sources (true); sources random in "
                  f"{f['spoofed_sources']}, {f['pps']:,.0f} pkt/s")  # fmt: skip
