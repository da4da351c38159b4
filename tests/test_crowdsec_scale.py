"""The CrowdSec scale case against a real LAPI: 100,000 decisions added in bulk (``cscli decisions import``)
are all in the kernel's maps within 30 s after the import returns; no tick of the agent takes more than
100 ms meanwhile, of its thread's CPU or of wall clock less its waits for a CPU the host gave to the LAPI
(``ironpost_tick_cpu_seconds`` and ``ironpost_tick_own_seconds``, two scrapes; the wall clock itself is
printed); and a block through the CLI still takes effect within 1 s (real datagrams over the lab's veth).

The decisions: 95,000 IPv4 addresses and 1,000 IPv4 /28 ranges in 198.18.0.0/15, 4,000 IPv6 addresses in
2001:db8::/32, none in the lab's own networks (its namespace host is the one the CLI blocks, its host side
is protected).  An address of this host elsewhere in 198.18.0.0/15 (another lab's veth) is protected: such a
decision is skipped and counted (``ironpost_crowdsec_protected_skipped_total``), so the maps must hold
100,000 minus the skipped ones.  The maps are counted with ``bpftool map dump`` of the agent's program's
BLOCKLIST, SRC4 and SRC6.
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path

import pytest
from support import bpftool, netlab
from support.agents import Agent, AgentPool, agent_env, ready_info
from support.agents import run as run_ironpost
from support.crowdsec import Lapi
from support.metrics_lab import AgentFiles, sample, scrape, wait_until
from support.traffic import Probe

from ironpost_tui.kernel import libbpf

pytestmark = pytest.mark.root

POLL = 1.0
V4_EXACT, V4_RANGES, V6_EXACT = 95_000, 1_000, 4_000
TOTAL = V4_EXACT + V4_RANGES + V6_EXACT
IN_MAPS_WITHIN = 30.0  # the issue's: all in the maps within 30 s after the import returns
TICK_BOUND = 0.1  # the issue's: no tick over 100 ms
BLOCK_WITHIN = 1.0  # the issue's: a block still takes effect within 1 s
RANGES = ipaddress.ip_network("198.19.192.0/18")  # the /28 ranges; the exact addresses are outside it
LAB4 = ipaddress.ip_network("198.18.0.0/15")
V6_NET = ipaddress.ip_network("2001:db8:ffff:ffff::/64")
BPF_MAP_TYPE_LPM_TRIE = 11


def decisions_csv(path: Path, lab: netlab.Lab) -> None:
    """The import file: ``duration,scope,value``, lab addresses only, none in the lab's own networks."""
    own4, own6 = ipaddress.ip_network(lab.net4), ipaddress.ip_network(lab.net6)
    rows = ["duration,scope,value"]
    ranges = [r for r in RANGES.subnets(new_prefix=28) if not r.overlaps(own4)][:V4_RANGES]
    rows += [f"1h,Range,{r}" for r in ranges]
    n = 0
    for addr in LAB4.hosts():
        if n == V4_EXACT:
            break
        if addr in RANGES or addr in own4:
            continue
        rows.append(f"1h,Ip,{addr}")
        n += 1
    v6 = V6_NET if not V6_NET.overlaps(own6) else ipaddress.ip_network("2001:db8:fffe:ffff::/64")
    rows += [f"1h,Ip,{v6[i + 1]}" for i in range(V6_EXACT)]
    assert len(rows) == TOTAL + 1
    for row in rows[1:]:
        net = ipaddress.ip_network(row.rsplit(",", 1)[1])
        assert netlab.allowed_address(str(net.network_address)) and not net.overlaps(own4 if net.version == 4 else own6)
    path.write_text("\n".join(rows) + "\n")


def map_count(map_id: int) -> int:
    """Entries in a map: a hash map in one batch read (libbpf), an LPM trie through ``bpftool map dump``."""
    fd = libbpf.map_fd_by_id(map_id)
    try:
        info = libbpf.map_info(fd)
        if info.type != BPF_MAP_TYPE_LPM_TRIE:
            return libbpf.map_lookup_batch(fd, info.key_size, info.value_size, info.max_entries)[2]
    finally:
        os.close(fd)
    return len(json.loads(bpftool.map_dump(map_id)))


def ticks_over(text: str, bound: float, name: str) -> tuple[float, float]:
    """(ticks so far, ticks so far longer than ``bound``) from the agent's histogram ``name`` in a scrape."""
    count = sample(text, f"{name}_count") or 0.0
    within = sample(text, f"{name}_bucket", le=str(bound)) or 0.0
    return count, count - within


def start(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, tmp_path: Path) -> tuple[Agent, int, int]:
    key = lapi.add_bouncer()
    files = AgentFiles.make(
        tmp_path,
        extra=f"""
[ebpf]
blocklist_max_entries = 131072

[crowdsec]
lapi_url = "{lapi.url}"
api_key_file = "{key}"
poll_interval = {POLL}
timeout = 10
""",
    )
    agent = agents.start(lab.host_if, *files.args(), env=agent_env())
    _mode, prog_id = ready_info(agent.wait_ready())
    port = int(agent.argv[agent.argv.index("--metrics-port") + 1])
    wait_until("the first pull", lambda: (sample(scrape(port), "ironpost_crowdsec_pulls_total", result="ok") or 0) >= 1)
    return agent, port, prog_id


def test_100k_decisions(agents: AgentPool, lab: netlab.Lab, lapi: Lapi, probe: Probe, tmp_path: Path) -> None:
    _agent, port, prog_id = start(agents, lab, lapi, tmp_path)
    maps = bpftool.prog_maps(prog_id, expect=("BLOCKLIST", "SRC4", "SRC6"))
    csv = tmp_path / "decisions.csv"
    decisions_csv(csv, lab)
    assert probe.burst() == 20  # negative control: none of the decisions is the lab's host
    assert sum(map_count(maps[m]) for m in ("BLOCKLIST", "SRC4", "SRC6")) == 0
    text0 = text = scrape(port)  # one scrape: the three histograms count the same ticks
    ticks0, slow0 = ticks_over(text, TICK_BOUND, "ironpost_tick_cpu_seconds")
    own_ticks0, own0 = ticks_over(text, TICK_BOUND, "ironpost_tick_own_seconds")
    _, wall0 = ticks_over(text, TICK_BOUND, "ironpost_tick_seconds")

    lapi.import_decisions(csv)
    imported = time.monotonic()
    # A block through the CLI while the decisions go in: in force within 1 s of the command's answer.
    blocked = run_ironpost("block", lab.host_if, lab.ns_ip4, env=agent_env())
    assert blocked.returncode == 0, blocked
    took = probe.until(passes=False, within=BLOCK_WITHIN)
    assert took <= BLOCK_WITHIN

    seen: list[object] = []

    def in_maps() -> bool:
        text = scrape(port)
        skipped = sample(text, "ironpost_crowdsec_protected_skipped_total") or 0.0
        counts = {m: map_count(maps[m]) for m in ("BLOCKLIST", "SRC4", "SRC6")}
        seen[:] = [counts, skipped, sample(text, "ironpost_crowdsec_decisions")]
        return sum(counts.values()) == TOTAL - skipped + 1  # + the CLI's block

    try:
        wait_until("every decision in the maps", in_maps, timeout=IN_MAPS_WITHIN, every=1.0)
    except AssertionError as exc:
        raise AssertionError(f"{exc}; maps, skipped, decisions: {seen}; agent: {_agent.stdout[-3000:]}") from None
    all_in = time.monotonic() - imported
    assert all_in <= IN_MAPS_WITHIN
    skipped = sample(scrape(port), "ironpost_crowdsec_protected_skipped_total") or 0.0
    assert skipped < 100, "most decisions skipped as protected: the host has addresses all over the lab range"
    assert V4_RANGES - skipped <= map_count(maps["SRC4"]) <= V4_RANGES
    # The gauge is the snapshot's, published each sample (1 s): it follows the maps.
    wait_until("the gauge", lambda: sample(scrape(port), "ironpost_crowdsec_decisions") == TOTAL - skipped, timeout=5)

    text = scrape(port)  # one scrape: the three histograms count the same ticks
    ticks1, slow1 = ticks_over(text, TICK_BOUND, "ironpost_tick_cpu_seconds")
    own_ticks1, own1 = ticks_over(text, TICK_BOUND, "ironpost_tick_own_seconds")
    _, wall1 = ticks_over(text, TICK_BOUND, "ironpost_tick_seconds")
    assert ticks1 > ticks0  # the histogram counts ticks (positive control)
    assert own_ticks1 - own_ticks0 == ticks1 - ticks0  # every tick's run delay read (this kernel keeps it)
    # No tick past 100 ms, by its thread's CPU time (the work it did) and by the wall clock less its waits for a
    # CPU (with its waits for the interpreter, i.e. the puller's and the surveyor's holds of it).  The wall clock
    # alone is the host's too: the LAPI writing 100,000 decisions shares the 2 CPUs (README, CrowdSec).
    # The three measures of the same ticks, in sum: CPU <= own (wall less the run queue) <= wall.
    sums = {n: (sample(text, f"{n}_sum") or 0.0) - (sample(text0, f"{n}_sum") or 0.0) for n in
            ("ironpost_tick_cpu_seconds", "ironpost_tick_own_seconds", "ironpost_tick_seconds")}  # fmt: skip
    cpu_s, own_s, wall_s = sums.values()
    assert 0 < cpu_s <= own_s * 1.02 + 0.01 and own_s <= wall_s * 1.0001, sums
    assert slow1 - slow0 == 0, f"{slow1 - slow0:.0f} ticks took over {TICK_BOUND * 1000:.0f} ms of CPU"
    assert own1 - own0 == 0, f"{own1 - own0:.0f} of {ticks1 - ticks0:.0f} ticks over 100 ms, less their waits for a CPU"
    longest = sample(text, "ironpost_tick_seconds_max") or 0.0
    half = [ticks_over(t, TICK_BOUND / 2, "ironpost_tick_own_seconds")[1] for t in (text0, text)]
    print(
        f"all in {all_in:.1f} s after the import; ticks: {ticks1 - ticks0:.0f}, {half[1] - half[0]:.0f} over 50 ms "
        f"less their waits for a CPU, {wall1 - wall0:.0f} over 100 ms of wall clock, longest {longest * 1000:.0f} ms; "
        f"CLI block in force {took:.2f} s after it returned; "
        f"CPU, own, wall in sum: {cpu_s:.2f}, {own_s:.2f}, {wall_s:.2f} s"
    )
    assert probe.burst() == 0  # the block is still in force
    text = scrape(port)
    assert (sample(text, "ironpost_rule_hits_total", rule_id="crowdsec") or 0.0) >= 0
    assert 'rule_id="crowdsec:' not in text  # one rule_id for the decisions, never per address
