"""Detector window logic with an injected clock: no kernel, no waiting.

The aggregates are what the kernel's SRC_SKETCH/DST_SKETCH ways hold: cumulative
(syn, tcp, new_tcp_ports, new_udp_ports) per address key.
"""

from __future__ import annotations

import ipaddress
from dataclasses import replace

import pytest

from ironpost_tui.detectors import AlertBook, DetectionPipeline, Finding, WindowSums, alerts
from ironpost_tui.detectors.alerts import MANY_SOURCES, MAX_OPEN, Block, ChangeKind, Live
from ironpost_tui.detectors.pipeline import address_of
from ironpost_tui.detectors.settings import Detector, PortScanConfig, SynFloodConfig
from ironpost_tui.detectors.targets import MANY_PORTS, SourceTargets, Target
from ironpost_tui.kernel import abi

A = abi.AGG_KEY.pack(bytes([198, 18, 0, 2]).ljust(16, b"\0"), abi.FAMILY_V4)
B = abi.AGG_KEY.pack(bytes([198, 18, 0, 3]).ljust(16, b"\0"), abi.FAMILY_V4)
HOST = abi.AGG_KEY.pack(bytes([198, 18, 0, 1]).ljust(16, b"\0"), abi.FAMILY_V4)
V6 = abi.AGG_KEY.pack(bytes.fromhex("20010db8000000000000000000000002"), abi.FAMILY_V6)


def pipeline(**kw: float) -> DetectionPipeline:
    return DetectionPipeline(SynFloodConfig(**kw), PortScanConfig(), "eth9")  # type: ignore[arg-type]


def test_address_names() -> None:
    assert address_of(A) == "198.18.0.2"
    assert address_of(V6) == "2001:db8::2"


def test_window_sums_deltas_and_expiry() -> None:
    w = WindowSums(10.0)
    w.update({A: (5, 10, 0, 0)}, now=0.0)
    w.update({A: (15, 30, 0, 0)}, now=4.0)
    assert w.sums[A] == [15, 30, 0, 0]
    w.update({A: (15, 30, 0, 0)}, now=10.0)  # the t=0 delta is exactly at the edge: gone
    assert w.sums[A] == [10, 20, 0, 0]
    w.update({A: (15, 30, 0, 0)}, now=14.0)  # the t=4 delta leaves too
    assert A not in w.sums


def test_window_boundary_is_exclusive_of_the_old_edge() -> None:
    w = WindowSums(10.0)
    w.update({A: (1, 1, 0, 0)}, now=100.0)
    w.update({A: (1, 1, 0, 0)}, now=109.999)
    assert w.sums[A] == [1, 1, 0, 0]
    w.update({A: (1, 1, 0, 0)}, now=110.0)
    assert A not in w.sums


def test_counters_going_backwards_are_a_restart() -> None:
    # An LRU eviction and a new entry, or a wrap: the new value is all new.
    w = WindowSums(10.0)
    w.update({A: (1000, 1000, 0, 0)}, now=0.0)
    w.update({A: (3, 4, 0, 0)}, now=1.0)
    assert w.sums[A] == [1003, 1004, 0, 0]


def test_sources_age_out_and_evicted_keys_keep_their_window() -> None:
    w = WindowSums(5.0)
    w.update({A: (1, 1, 0, 0), B: (2, 2, 0, 0)}, now=0.0)
    w.update({A: (2, 2, 0, 0)}, now=1.0)  # B evicted from the map: its past stays counted
    assert w.sums[B] == [2, 2, 0, 0]
    w.update({A: (2, 2, 0, 0)}, now=5.5)
    assert B not in w.sums and w.sums[A] == [1, 1, 0, 0]
    w.update({}, now=6.5)
    assert len(w) == 0


def test_syn_flood_threshold_and_ratio_exactly_at_threshold() -> None:
    p = pipeline(threshold=100, syn_ratio_threshold=0.8)
    # 100 TCP packets, 80 SYNs: ratio exactly 0.8 is not more than 0.8: no alert (the seed's rule)
    assert p.feed({A: (80, 100, 0, 0)}, {}, now=0.0, wall=1000.0) == []
    # one more SYN-only packet: 81/101 > 0.8 -> alert
    changes = p.feed({A: (81, 101, 0, 0)}, {}, now=1.0, wall=1001.0)
    assert [(c.kind, c.alert.detector, c.alert.source, c.alert.count) for c in changes] == [
        ("raised", "syn_flood", "198.18.0.2", 81)
    ]


def test_syn_flood_needs_the_threshold_in_packets() -> None:
    p = pipeline(threshold=100)
    assert p.feed({A: (99, 99, 0, 0)}, {}, now=0.0, wall=0.0) == []
    assert [c.kind for c in p.feed({A: (100, 100, 0, 0)}, {}, now=0.5, wall=0.5)] == ["raised"]


def test_benign_busy_client_is_not_a_flood() -> None:
    # 300 short HTTP connections: a SYN, then ACKs, data and FINs: ratio ~0.2
    p = pipeline()
    assert p.feed({A: (300, 1500, 0, 0)}, {HOST: (300, 1500, 0, 0)}, now=0.0, wall=0.0) == []


def test_one_alert_per_incident_refreshed_every_tick_it_sends_then_resolved_after_the_quiet_time() -> None:
    p = DetectionPipeline(SynFloodConfig(window_secs=10), PortScanConfig(), "eth9", quiet_secs=15)
    raised = p.feed({A: (200, 200, 0, 0)}, {}, now=0.0, wall=0.0)
    assert [c.kind for c in raised] == ["raised"]
    same = p.feed({A: (200, 200, 0, 0)}, {}, now=1.0, wall=1.0)  # it sent nothing: nothing to say
    assert same == []
    grown = p.feed({A: (500, 500, 0, 0)}, {}, now=2.0, wall=2.0)
    assert [(c.kind, c.alert.id, c.alert.count, c.alert.last_seen) for c in grown] == [
        ("updated", raised[0].alert.id, 500, 2.0)
    ]
    # The flood stops; its window empties at t=12: the row says so (count 0), last seen stays at 2
    (empty,) = p.feed({A: (500, 500, 0, 0)}, {}, now=12.0, wall=12.0)
    assert (empty.kind, empty.alert.count, empty.alert.last_seen, empty.alert.state) == ("updated", 0, 2.0, "ACTIVE")
    assert p.feed({A: (500, 500, 0, 0)}, {}, now=16.9, wall=16.9) == []  # silent 14.9 s: not yet over
    resolved = p.feed({A: (500, 500, 0, 0)}, {}, now=17.0, wall=17.0)
    assert [(c.kind, c.alert.id, c.alert.peak) for c in resolved] == [("resolved", raised[0].alert.id, 500)]
    assert resolved[0].alert.resolved_at == 17.0
    # A new flood later is a new incident
    again = p.feed({A: (800, 800, 0, 0)}, {}, now=30.0, wall=30.0)
    assert [c.kind for c in again] == ["raised"] and again[0].alert.id != raised[0].alert.id


def test_spoofed_flood_is_judged_per_target() -> None:
    p = pipeline()
    sources = {abi.AGG_KEY.pack(i.to_bytes(4, "big").ljust(16, b"\0"), 4): (1, 1, 0, 0) for i in range(5000)}
    changes = p.feed(sources, {HOST: (5000, 5000, 0, 0)}, now=0.0, wall=0.0)
    assert [(c.alert.detector, c.alert.source, c.alert.target, c.alert.severity) for c in changes] == [
        ("syn_flood", MANY_SOURCES, "198.18.0.1", "critical")
    ]


def test_single_source_flood_is_not_also_a_many_sources_alert() -> None:
    p = pipeline()
    changes = p.feed({A: (1000, 1000, 0, 0)}, {HOST: (1000, 1000, 0, 0)}, now=0.0, wall=0.0)
    assert [c.alert.source for c in changes] == ["198.18.0.2"]


def test_port_scan_threshold_and_window() -> None:
    p = pipeline()
    assert p.feed({A: (0, 0, 19, 0)}, {}, now=0.0, wall=0.0) == []
    changes = p.feed({A: (0, 0, 19, 1)}, {}, now=30.0, wall=30.0)  # 20 ports within 60 s
    assert [(c.kind, c.alert.detector, c.alert.source, c.alert.target, c.alert.count) for c in changes] == [
        ("raised", "port_scan", "198.18.0.2", "eth9", 20)
    ]
    assert "TCP and UDP" in changes[0].alert.summary


def test_port_scan_spread_over_more_than_the_window_is_not_a_scan() -> None:
    p = pipeline()
    assert p.feed({A: (0, 0, 15, 0)}, {}, now=0.0, wall=0.0) == []
    assert p.feed({A: (0, 0, 30, 0)}, {}, now=61.0, wall=61.0) == []  # only 15 within 60 s


def test_syn_scan_is_a_scan_not_a_flood() -> None:
    # nmap -sS: one SYN per port, hundreds of ports: port_scan only, and no 'many sources' either
    p = pipeline()
    changes = p.feed({A: (1000, 1000, 1000, 0)}, {HOST: (1000, 1000, 0, 0)}, now=0.0, wall=0.0)
    assert [c.alert.detector for c in changes] == ["port_scan"]


def test_alert_book_keys_incidents_by_detector_and_parties() -> None:
    book = AlertBook()
    f1 = Finding("port_scan", ("198.18.0.2", "eth0"), "medium", 25, 60, "x")
    f2 = Finding("port_scan", ("198.18.0.3", "eth0"), "medium", 30, 60, "y")
    first = book.update([f1, f2], now=0.0)
    assert [c.alert.id for c in first] == [1, 2]
    assert book.update([f1, f2], now=1.0) == []
    assert [a.source for a in book.active] == ["198.18.0.2", "198.18.0.3"]


def test_a_long_spoofed_flood_keeps_the_windows_small() -> None:
    # A new source per packet for 60 s of 0.5 s reads: only the target is windowed.
    p = pipeline()
    total = 0
    for tick in range(120):
        sources = {
            abi.AGG_KEY.pack((tick * 4096 + i).to_bytes(4, "big").ljust(16, b"\0"), 4): (1, 1, 1, 0)
            for i in range(4096)
        }
        total += 4096
        p.feed(sources, {HOST: (total, total, 0, 0)}, now=tick * 0.5, wall=tick * 0.5)
    assert len(p._syn_src) == 0 and len(p._scan_src) == 0
    assert len(p._syn_dst) == 1
    assert [a.source for a in p.book.active] == [MANY_SOURCES]


def test_window_sums_shed_the_smallest_keys_past_the_cap() -> None:
    w = WindowSums(10.0, max_keys=100)
    w.update({i: (i, 0) for i in range(101)}, now=0.0)
    assert len(w) == 75
    assert min(k for k in w.sums) == 26  # the 26 smallest totals went


def test_a_distributed_scan_is_one_incident_not_an_alert_storm() -> None:
    p = pipeline()
    sources = {
        abi.AGG_KEY.pack((0xC6120000 + i).to_bytes(4, "big").ljust(16, b"\0"), 4): (0, 0, 25, 0) for i in range(500)
    }
    changes = p.feed(sources, {}, now=0.0, wall=0.0)
    assert [(c.alert.detector, c.alert.source, c.alert.severity) for c in changes] == [
        ("port_scan", MANY_SOURCES, "high")
    ]
    assert changes[0].alert.count == 500 * 25


def test_every_detector_has_its_settings_and_metric_label() -> None:
    """A detector is added in one place (Detector); EngineOptions.detector must then give its own
    settings (mypy's assert_never), not another detector's."""
    from ironpost_tui.detectors import Detector
    from ironpost_tui.detectors.settings import PortScanConfig, SynFloodConfig
    from ironpost_tui.engine.engine import EngineOptions
    from ironpost_tui.metrics.collector import DETECTORS

    opts = EngineOptions(iface="lo", syn_flood=SynFloodConfig(block_ttl=1), port_scan=PortScanConfig(block_ttl=2))
    assert {d: opts.detector(d) for d in Detector} == {"syn_flood": opts.syn_flood, "port_scan": opts.port_scan}
    assert DETECTORS == tuple(Detector) and [str(d) for d in DETECTORS] == ["syn_flood", "port_scan"]


# --------------------------------------------------------------------------- #
# the addresses attacked (targets)

T1, T2, T3 = (bytes([198, 18, 0, n]).ljust(16, b"\0") for n in (1, 5, 9))


def names(ts: tuple[Target, ...]) -> tuple[str, ...]:
    return tuple(map(str, ts))


def targets(*texts: str) -> tuple[Target, ...]:
    return tuple(map(Target.parse, texts))


def test_a_one_source_flood_names_the_address_it_hits() -> None:
    p = pipeline()
    changes = p.feed({A: (1000, 1000, 0, 0)}, {HOST: (1000, 1000, 0, 0)}, now=0.0, wall=0.0, probes={(A, T1): 1000})
    (alert,) = [c.alert for c in changes]
    assert (alert.source, alert.target, names(alert.targets), alert.dst_ip) == (
        "198.18.0.2",
        "eth9",
        ("198.18.0.1",),
        "198.18.0.1",
    )
    assert alert.where == "198.18.0.1 on eth9"


def test_two_addresses_hit_alike_are_both_named_most_hit_first_and_a_stray_is_not() -> None:
    p = pipeline()
    probes = {(A, T1): 400, (A, T2): 600, (A, T3): 3}  # T3: a few SYNs elsewhere, under a quarter of the top
    changes = p.feed({A: (1003, 1003, 0, 0)}, {}, now=0.0, wall=0.0, probes=probes)
    (alert,) = [c.alert for c in changes]
    assert names(alert.targets) == ("198.18.0.5", "198.18.0.1") and alert.dst_ip == "198.18.0.5"


def test_targets_are_summed_over_the_window_and_forget_what_left_it() -> None:
    p = pipeline(window_secs=10)
    p.feed({A: (500, 500, 0, 0)}, {}, now=0.0, wall=0.0, probes={(A, T1): 500})
    changes = p.feed({A: (1500, 1500, 0, 0)}, {}, now=6.0, wall=6.0, probes={(A, T2): 1000})
    assert [names(c.alert.targets) for c in changes if c.kind == "updated"] == [("198.18.0.5", "198.18.0.1")]
    # T1's probes left the window (t=0 is 11 s back): only T2 is named now; the same incident.
    changes = p.feed({A: (2500, 2500, 0, 0)}, {}, now=11.0, wall=11.0, probes={(A, T2): 1000})
    assert [(c.alert.id, names(c.alert.targets)) for c in changes] == [(1, ("198.18.0.5",))]


def test_a_flood_with_no_probes_seen_names_no_address() -> None:
    """The negative control: without the kernel's target counts the alert says the interface, as before."""
    p = pipeline()
    (alert,) = [c.alert for c in p.feed({A: (1000, 1000, 0, 0)}, {}, now=0.0, wall=0.0)]
    assert (names(alert.targets), alert.dst_ip, alert.where) == ((), None, "eth9")


def test_probes_of_sources_no_detector_watches_are_not_kept() -> None:
    p = pipeline()
    sources = {abi.AGG_KEY.pack(i.to_bytes(4, "big").ljust(16, b"\0"), 4): (1, 1, 0, 0) for i in range(5000)}
    changes = p.feed(sources, {HOST: (5000, 5000, 0, 0)}, now=0.0, wall=0.0, probes={(k, T1): 1 for k in sources})
    assert [(c.alert.source, names(c.alert.targets)) for c in changes] == [(MANY_SOURCES, ("198.18.0.1",))]
    assert not p._syn_targets._current and not p._scan_targets._current


def test_a_port_scan_names_the_scanned_host() -> None:
    p = pipeline()
    changes = p.feed({A: (0, 0, 25, 0)}, {}, now=0.0, wall=0.0, probes={(A, T3): 25})
    assert [(c.alert.detector, c.alert.target, names(c.alert.targets)) for c in changes] == [
        ("port_scan", "eth9", ("198.18.0.9:*",))
    ]


def test_a_distributed_scan_names_the_host_its_sources_scan_together() -> None:
    p = pipeline()
    keys = [abi.AGG_KEY.pack((0xC6120100 + i).to_bytes(4, "big").ljust(16, b"\0"), 4) for i in range(40)]
    probes = {(k, T3): 25 for k in keys} | {(keys[0], T1): 5}
    changes = p.feed({k: (0, 0, 25, 0) for k in keys}, {}, now=0.0, wall=0.0, probes=probes)
    assert [(c.alert.source, names(c.alert.targets)) for c in changes] == [(MANY_SOURCES, ("198.18.0.9:*",))]


def test_an_ipv6_source_names_ipv6_targets() -> None:
    p = pipeline()
    t6 = bytes.fromhex("20010db8000000000000000000000001")
    (alert,) = [c.alert for c in p.feed({V6: (1000, 1000, 0, 0)}, {}, now=0.0, wall=0.0, probes={(V6, t6): 1000})]
    assert names(alert.targets) == ("2001:db8::1",)


def test_a_new_target_updates_the_alert_and_the_same_ones_reordered_do_not() -> None:
    book = AlertBook()
    f = Finding("syn_flood", ("198.18.0.2", "eth0"), "high", 500, 10, "x", targets("198.18.0.1"))
    assert [c.kind for c in book.update([f], now=0.0)] == ["raised"]
    two = Finding("syn_flood", ("198.18.0.2", "eth0"), "high", 500, 10, "x", targets("198.18.0.1", "198.18.0.5"))
    (change,) = book.update([two], now=1.0)
    assert (
        change.kind == "updated" and names(change.alert.targets) == ("198.18.0.1", "198.18.0.5") and change.retargeted
    )
    swapped = Finding("syn_flood", ("198.18.0.2", "eth0"), "high", 500, 10, "x", targets("198.18.0.5", "198.18.0.1"))
    assert book.update([swapped], now=2.0) == []
    assert names(book.active[0].targets) == ("198.18.0.5", "198.18.0.1")
    none = Finding("syn_flood", ("198.18.0.2", "eth0"), "high", 500, 10, "x")
    assert book.update([none], now=3.0) == [] and names(book.active[0].targets) == ("198.18.0.5", "198.18.0.1")
    grown = Finding("syn_flood", ("198.18.0.2", "eth0"), "high", 900, 10, "x", targets("198.18.0.1"))
    (change,) = book.update([grown], now=4.0)  # grown, and fewer addresses: an update, not a new target
    assert change.kind == "updated" and not change.retargeted


def test_a_source_probing_a_whole_network_keeps_a_bounded_count_of_destinations() -> None:
    p = pipeline()
    probes = {(A, (0xC6130000 + i).to_bytes(4, "big").ljust(16, b"\0")): 1 + (i == 7) * 100 for i in range(5000)}
    changes = p.feed({A: (0, 0, 5000, 0)}, {}, now=0.0, wall=0.0, probes=probes)
    assert [names(c.alert.targets) for c in changes] == [("198.19.0.7:*",)]
    assert len(p._scan_targets._current[A]) <= 64


# --------------------------------------------------------------------------- #
# the ports attacked: each target as ADDRESS:PORT


def test_a_flood_names_its_target_with_the_port_that_took_half_its_probes() -> None:
    p = pipeline()
    changes = p.feed({A: (1000, 1000, 0, 0)}, {}, now=0.0, wall=0.0, probes={(A, T1): 1000}, probe_ports={(A, T1): 22})
    (alert,) = [c.alert for c in changes]
    assert (names(alert.targets), alert.dst_ip, alert.dst_port) == (("198.18.0.1:22",), "198.18.0.1", 22)
    assert alert.where == "198.18.0.1:22 on eth9"


def test_a_scan_over_many_ports_names_its_target_with_a_star_and_no_port() -> None:
    p = pipeline()
    changes = p.feed({A: (0, 0, 25, 0)}, {}, now=0.0, wall=0.0, probes={(A, T3): 25}, probe_ports={(A, T3): MANY_PORTS})
    (alert,) = [c.alert for c in changes]
    assert (names(alert.targets), alert.dst_ip, alert.dst_port) == (("198.18.0.9:*",), "198.18.0.9", None)


def test_a_distributed_flood_names_its_target_with_the_port_of_its_syns() -> None:
    p = pipeline()
    sources = {abi.AGG_KEY.pack(i.to_bytes(4, "big").ljust(16, b"\0"), 4): (1, 1, 0, 0) for i in range(5000)}
    changes = p.feed(sources, {HOST: (5000, 5000)}, now=0.0, wall=0.0, destination_ports={HOST: 443})
    assert [(c.alert.source, names(c.alert.targets)) for c in changes] == [(MANY_SOURCES, ("198.18.0.1:443",))]
    # The control: without the sketch's port the same flood names the address alone.
    q = pipeline()
    changes = q.feed(sources, {HOST: (5000, 5000)}, now=0.0, wall=0.0)
    assert [names(c.alert.targets) for c in changes] == [("198.18.0.1",)]


def test_sources_that_hit_one_address_on_different_ports_name_it_with_a_star() -> None:
    keys = [abi.AGG_KEY.pack((0xC6120100 + i).to_bytes(4, "big").ljust(16, b"\0"), 4) for i in range(4)]
    probes = {(k, T3): 25 for k in keys}
    same, mixed = SourceTargets(10), SourceTargets(10)
    same.add(probes, 0.0, lambda _k: True, dict.fromkeys(probes, 80))
    mixed.add(probes, 0.0, lambda _k: True, {pair: 80 + i % 2 for i, pair in enumerate(probes)})
    assert names(same.named(keys)) == ("198.18.0.9:80",)
    assert names(mixed.named(keys)) == ("198.18.0.9:*",)
    assert names(mixed.named(keys[:1])) == ("198.18.0.9:80",)  # one source: its own port


def test_a_scan_names_many_ports_whatever_port_took_the_most_and_a_flood_names_that_port() -> None:
    """nmap then a flood at one port, from one source at one host: the port scan's target is the host
    on many ports (a scan is), the SYN flood's the host at the flooded port."""
    p = pipeline()
    changes = p.feed({A: (1000, 1000, 25, 0)}, {}, now=0.0, wall=0.0, probes={(A, T1): 1000}, probe_ports={(A, T1): 23})
    assert sorted((c.alert.detector, names(c.alert.targets)) for c in changes) == [
        ("port_scan", ("198.18.0.1:*",)),
        ("syn_flood", ("198.18.0.1:23",)),
    ]


def test_an_ipv6_target_with_a_port_is_bracketed() -> None:
    p = pipeline()
    t6 = bytes.fromhex("20010db8000000000000000000000001")
    changes = p.feed(
        {V6: (1000, 1000, 0, 0)}, {}, now=0.0, wall=0.0, probes={(V6, t6): 1000}, probe_ports={(V6, t6): 443}
    )
    (alert,) = [c.alert for c in changes]
    assert (names(alert.targets), alert.dst_ip, alert.dst_port) == (("[2001:db8::1]:443",), "2001:db8::1", 443)


def test_a_new_port_updates_the_row_but_is_not_a_new_target() -> None:
    p = pipeline()
    p.feed({A: (1000, 1000, 0, 0)}, {}, now=0.0, wall=0.0, probes={(A, T1): 1000}, probe_ports={(A, T1): 22})
    (change,) = p.feed(
        {A: (1100, 1100, 0, 0)}, {}, now=1.0, wall=1.0, probes={(A, T1): 100}, probe_ports={(A, T1): MANY_PORTS}
    )
    assert names(change.alert.targets) == ("198.18.0.1:*",) and not change.retargeted


def test_target_text_round_trips_and_hostile_text_is_refused() -> None:
    for text in ("198.18.0.1", "198.18.0.1:22", "198.18.0.1:*", "[2001:db8::1]:443", "[2001:db8::1]:*", "2001:db8::1"):
        assert str(Target.parse(text)) == text
    assert Target.parse("198.18.0.1:0") == Target("198.18.0.1", 0)
    for bad in (
        "198.18.0.1:65536", "198.18.0.1:-1", "198.18.0.1:", "198.18.0.1:٢٢", "198.18.0.1:0x16", "[198.18.0.1]:22",
        "[2001:db8::1]", "[2001:db8::1]22", "eth0", "198.18.0.1:22:1", "../x", "198.18.0.1:22\x1b[2J", "",
        "198.18.0.1:" + "9" * 10_000,
    ):  # fmt: skip
        try:
            Target.parse(bad)
        except ValueError as exc:
            assert "\n" not in str(exc) and len(str(exc)) < 200
        else:
            raise AssertionError(f"{bad!r} parsed")


def _flood_findings(first: int, n: int, count: int = 150) -> list[Finding]:
    """``n`` one-source SYN-flood findings, sources first .. first + n - 1 (addresses of 198.18.0.0/15)."""
    return [
        Finding(Detector.SYN_FLOOD, (str(ipaddress.IPv4Address(0xC6120000 + i)), "lab0"), "high", count, 10.0, "s")
        for i in range(first, first + n)
    ]


def _sending(_detector: object, _source: str) -> Live:
    return Live(True)  # every source keeps sending (below any threshold): its alert stays open


def test_a_source_found_with_the_book_full_takes_the_place_of_one_only_kept_open() -> None:
    """An attacker keeps MAX_OPEN spoofed alerts open with a packet now and then (never found again): a real
    flooder found then still gets its own alert (auto-block acts on it); the spoofed alert silent longest is
    resolved early, and the book never holds more than MAX_OPEN."""
    book = AlertBook(quiet_secs=30.0)
    book.update(_flood_findings(0, 2_000), now=0.0, live=_sending)
    book.update(_flood_findings(2_000, MAX_OPEN - 2_000), now=5.0, live=_sending)
    assert len(book.active) == MAX_OPEN
    real = _flood_findings(MAX_OPEN + 7, 1, count=400)
    changes = book.update(real, now=6.0, live=lambda _d, s: Live(s != "198.18.0.0"))
    raised = [c.alert for c in changes if c.kind is ChangeKind.RAISED]
    early = [c for c in changes if c.kind is ChangeKind.RESOLVED]
    assert [(a.source, a.count) for a in raised] == [(real[0].key[0], 400)]
    assert len(early) == 1 and early[0].early and early[0].alert.resolved_at == 6.0
    assert early[0].alert.source in {f.key[0] for f in _flood_findings(0, 2_000)}  # one of the longest silent
    assert len(book.active) == MAX_OPEN and MANY_SOURCES not in set(book.sources())
    # The negative control: with room, nothing is resolved early.
    book2 = AlertBook(quiet_secs=30.0)
    book2.update(_flood_findings(0, 10), now=0.0, live=_sending)
    assert not [c for c in book2.update(real, now=6.0, live=_sending) if c.kind is ChangeKind.RESOLVED]


def test_a_blocked_attackers_alert_is_the_last_to_make_room() -> None:
    """Resolving the alert of a source a drop rule holds would end its block's renewal (auto_blocker.py): the
    open alerts of unblocked sources make room first, however long the blocked one has been silent."""
    book = AlertBook(quiet_secs=30.0)
    blocked = _flood_findings(0, 1)
    blocks = {blocked[0].key[0]: Block("auto-block-1", 1_000.0, 5)}
    book.update(blocked, now=0.0, live=_sending, blocks=blocks)
    book.update(_flood_findings(1, MAX_OPEN - 1), now=5.0, live=_sending, blocks=blocks)
    changes = book.update(_flood_findings(MAX_OPEN, 3), now=6.0, live=_sending, blocks=blocks)
    early = {c.alert.source for c in changes if c.kind is ChangeKind.RESOLVED}
    assert len(early) == 3 and blocked[0].key[0] not in early
    # The negative control: without its block, the same alert (silent longest) is the first to go.
    book = AlertBook(quiet_secs=30.0)
    book.update(blocked, now=0.0, live=_sending)
    book.update(_flood_findings(1, MAX_OPEN - 1), now=5.0, live=_sending)
    changes = book.update(_flood_findings(MAX_OPEN, 3), now=6.0, live=_sending)
    assert blocked[0].key[0] in {c.alert.source for c in changes if c.kind is ChangeKind.RESOLVED}


def test_when_every_open_alert_is_found_new_sources_are_one_many_sources_alert(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Not reachable with the real detectors (they find at most 4,128 sources a tick, MAX_OPEN is 10,000):
    with a limit of 10, the largest counts take the room left and the rest are one alert of their detector,
    updated while they come, resolved as any many-sources incident."""
    monkeypatch.setattr(alerts, "MAX_OPEN", 10)
    book = AlertBook(quiet_secs=30.0)
    book.update(_flood_findings(0, 6), now=0.0)
    new = [replace(f, count=100 + i) for i, f in enumerate(_flood_findings(100, 7))]  # counts 100 .. 106
    changes = book.update(_flood_findings(0, 6) + new, now=0.5)
    raised = [c.alert for c in changes if c.kind is ChangeKind.RAISED]
    assert sorted(a.count for a in raised if a.source != MANY_SOURCES) == [103, 104, 105, 106]
    [many] = [a for a in raised if a.source == MANY_SOURCES]
    assert (many.detector, many.target, many.severity, many.count) == (Detector.SYN_FLOOD, "lab0", "high", 303)
    assert "3 more sources" in many.summary
    assert not [c for c in changes if c.kind is ChangeKind.RESOLVED]  # every open alert was found: none goes
    # They stop: it resolves after the quiet time, as any many-sources incident.
    changes = book.update(_flood_findings(0, 6) + new[3:], now=31.0)
    assert [c.kind for c in changes if c.alert.source == MANY_SOURCES] == [ChangeKind.RESOLVED]


def test_a_distributed_scan_open_takes_the_held_back_scanners_in(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(alerts, "MAX_OPEN", 2)
    scan = [Finding(Detector.PORT_SCAN, (f"198.18.9.{i}", "lab0"), "medium", 30 + i, 60.0, "s") for i in range(4)]
    distributed = Finding(Detector.PORT_SCAN, (MANY_SOURCES, "lab0"), "high", 9_999, 60.0, "d")
    book = AlertBook()
    book.update([*scan[:2], distributed], now=0.0)
    changes = book.update([*scan, distributed], now=0.5)
    assert not [c for c in changes if c.kind is ChangeKind.RAISED]
    [many] = [a for a in book.active if a.source == MANY_SOURCES]
    assert (many.count, many.summary) == (9_999, "d")  # the detector's own incident, not the fold's


def test_the_agents_log_says_an_alert_resolved_early_and_why(caplog: pytest.LogCaptureFixture) -> None:
    from ironpost_tui.engine import headless
    from ironpost_tui.engine.alert_lines import log_alert

    book = AlertBook(quiet_secs=30.0)
    book.update(_flood_findings(0, MAX_OPEN), now=0.0, live=_sending)
    changes = book.update(_flood_findings(MAX_OPEN, 1), now=1.0, live=_sending)
    [early] = [c for c in changes if c.kind is ChangeKind.RESOLVED]
    [raised] = [c for c in changes if c.kind is ChangeKind.RAISED]
    with caplog.at_level("INFO"), caplog.at_level("INFO", logger=headless.log.name):
        log_alert(early)
        log_alert(raised)
    said_early, said_raised = (r.getMessage() for r in caplog.records)
    assert said_early.endswith("early: 10,000 alerts were open") and " resolved: " in said_early
    assert "early" not in said_raised  # the control: a raise says nothing of it
