"""Top talkers through the real program (BPF_PROG_TEST_RUN) and ironpost_tui/triage: what a packet
counts in TOP_SRC/TOP_DST/TOP_PORT reaches user space as deltas and rates; the tables keep a heavy
hitter through a churn of one-packet sources; the rates' windows (the clock passed in); the Top
pane's filter; a recording's top records, hostile ones included; /top without a top source."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import pytest
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import Dot1Q
from support.packets import eth, frame
from support.verdicts import drop

from ironpost_tui.detectors.sketch import SketchReader
from ironpost_tui.kernel import abi, libbpf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
from ironpost_tui.records import codec
from ironpost_tui.records.top_codec import top_from_json
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset
from ironpost_tui.triage.json_form import top_to_json
from ironpost_tui.triage.rates import KEEP_PER_READ, SEEN_MAX, TopRates
from ironpost_tui.triage.reader import SourceTenure, TopDeltas, TopReader, way_growth
from ironpost_tui.triage.values import RateWindow, TopKind, TopRow
from ironpost_tui.ui.top_filter import TopFilter

SRC, DST = "198.18.7.1", "198.19.7.1"
XDP_DROP, XDP_PASS = 1, 2


def key(addr: str) -> bytes:
    """struct top_key of an IPv4 or IPv6 address."""
    import ipaddress

    a = ipaddress.ip_address(addr)
    return abi.TOP_KEY.pack(a.packed.ljust(16, b"\0"), a.version, 0, 0)


def port_key(proto: int, port: int, family: int = 4) -> bytes:
    return abi.TOP_KEY.pack(bytes(16), family, proto, port)


@pytest.fixture
def dp() -> Iterator[Datapath]:
    d = Datapath(DatapathConfig())
    try:
        yield d
    finally:
        d.close()


def run(dp: Datapath, data: bytes, n: int = 1) -> int:
    ret = 0
    for _ in range(n):
        ret = libbpf.prog_test_run(dp.prog_fd, data).retval
    return ret


def sampled(got: tuple[int, ...], want: tuple[int, ...], dp: Datapath) -> bool:
    """TOP_DST/TOP_PORT count one packet in 4 as 4, evenly spread (a Weyl sequence on each CPU's packet
    count): within one sample a CPU of the truth, for each counter."""
    step = 1 << abi.TOP_SAMPLE_LOG2
    slack = [step * dp.possible_cpus * (w // max(1, want[0]) or 1) for w in want]
    return all(abs(g - w) <= s for g, w, s in zip(got, want, slack, strict=True))


@pytest.mark.root
def test_a_packet_counts_by_source_destination_and_port_and_reads_give_deltas(dp: Datapath) -> None:
    reader = TopReader(dp)
    assert reader.read() == ({}, {}, {}, {})  # nothing yet
    syn = frame(SRC, DST, 22)  # a TCP SYN
    udp = frame(SRC, DST, 53, proto="udp")
    assert run(dp, syn, 300) == XDP_PASS and run(dp, udp, 200) == XDP_PASS
    got = reader.read()
    # Sources: every packet, exactly.
    assert got.sources == {key(SRC): (500, 300 * len(syn) + 200 * len(udp), 300, 0)}
    # Destinations and ports: sampled, within a sample of the truth.
    assert set(got.destinations) == {key(DST)}
    assert sampled(got.destinations[key(DST)], (500, 300 * len(syn) + 200 * len(udp), 300, 0), dp)
    assert set(got.ports) == {port_key(6, 22), port_key(17, 53)}
    assert sampled(got.ports[port_key(6, 22)], (300, 300 * len(syn), 300, 0), dp)
    assert sampled(got.ports[port_key(17, 53)], (200, 200 * len(udp), 0, 0), dp)
    tenure = got.tenures[key(SRC)]
    assert tenure.protocols == (300, 200, 0, 0)  # tcp, udp, icmp, other
    assert tenure.ports == {6 << 16 | 22: 300, 17 << 16 | 53: 200}
    # An ACK is no SYN; the next read gives what grew only.
    ack = bytes(eth() / IP(src=SRC, dst=DST) / TCP(dport=22, flags="A"))
    run(dp, ack)
    got = reader.read()
    assert got.sources == {key(SRC): (1, len(ack), 0, 0)}
    reader.read()
    assert reader.read() == ({}, {}, {}, {})  # idle: nothing


@pytest.mark.root
def test_drops_count_and_vlan_and_ipv6_sources_keep_their_real_addresses(dp: Datapath) -> None:
    rules = RuleTable(dp, monotonic_to_wall_offset())
    rules.add(drop("d", src=f"{SRC}/32"))
    reader = TopReader(dp)
    assert run(dp, frame(SRC, DST, 80), 4) == XDP_DROP
    tagged = bytes(eth(type=0x8100) / Dot1Q(vlan=100) / IP(src="198.18.9.9", dst=DST) / UDP(dport=9))
    assert run(dp, tagged, 2) == XDP_PASS
    assert run(dp, frame("2001:db8:7::1", "2001:db8:8::1", 443), 40) == XDP_PASS
    got = reader.read()
    assert got.sources[key(SRC)][3] == 4  # all four dropped
    assert got.sources[key("198.18.9.9")] == (2, 2 * len(tagged), 0, 0)  # the tag skipped, not read as address
    assert got.sources[key("2001:db8:7::1")][0] == 40
    assert abs(got.destinations[key("2001:db8:8::1")][0] - 40) <= 4 * dp.possible_cpus
    assert set(got.sources) == {key(SRC), key("198.18.9.9"), key("2001:db8:7::1")}


@pytest.mark.root
def test_a_heavy_sender_keeps_its_way_through_a_churn_of_one_packet_sources(dp: Datapath) -> None:
    """4 ways a set: 20,000 spoofed one-packet sources (about 40 a set) take the ways holding one
    packet each in turn; the heavy source, at 2 packets before the churn and one more every 50,
    always holds more and keeps its way, so its every packet is counted.  The tables' size is
    what it was at load."""
    reader = TopReader(dp)
    sizes = {n: libbpf.map_info(dp.map_fd(n)).max_entries for n in abi.TOP_MAPS}
    heavy = "198.18.250.1"
    sent = 0
    run(dp, frame(heavy, DST, 80), 2)
    sent += 2
    for i in range(20_000):
        run(dp, frame(f"198.19.{i // 250}.{i % 250 + 1}", DST, 80))
        if i % 50 == 0:
            run(dp, frame(heavy, DST, 80))
            sent += 1
    got = reader.read()
    assert got.sources[key(heavy)][0] == sent
    # The positive control: the churn was there (many spoofed sources seen), and no more than the ways hold.
    spoofed = [k for k in got.sources if k != key(heavy)]
    ways = dp.cfg.top_src_sets * abi.TOP_WAYS * dp.possible_cpus
    assert 1_000 < len(spoofed) <= ways
    assert {n: libbpf.map_info(dp.map_fd(n)).max_entries for n in abi.TOP_MAPS} == sizes


@pytest.mark.root
def test_a_silent_way_is_taken_first_once_stale(dp: Datapath) -> None:
    """A source silent for TOP_STALE_GENS ticks gives its way to a new one even with more packets."""
    # Fill one set: find 5 sources in the same TOP_SRC set on this CPU by trying (the seed is random).
    reader = TopReader(dp)
    sketch = SketchReader(dp)  # publishes TICK generations, as the engine does
    old = "198.18.1.1"
    run(dp, frame(old, DST, 80), 50)
    for _ in range(abi.TOP_STALE_GENS + 1):
        sketch.read(time.monotonic_ns())
    reader.read()
    # Packets from 20,000 other sources: with the old way stale, its set's first newcomer takes it.
    for i in range(20_000):
        run(dp, frame(f"198.19.{i // 250}.{i % 250 + 1}", DST, 80))
    reader.read()
    assert reader._src.ways_holding(key(old)) == 0  # gone: stale
    # Control: without the ticks, a 50-packet source keeps its way through the same churn.
    run(dp, frame("198.18.1.2", DST, 80), 50)
    for i in range(20_000):
        run(dp, frame(f"198.19.{i // 250}.{i % 250 + 1}", DST, 81))
    reader.read()
    assert reader._src.ways_holding(key("198.18.1.2"))


# --------------------------------------------------------------------------- #
# rates (pure: the clock passed in)


def deltas(sources: dict[str, tuple[int, ...]]) -> TopDeltas:
    return TopDeltas({key(a): c for a, c in sources.items()}, {}, {}, {})


def test_rates_over_each_window_divide_by_the_time_counted() -> None:
    rates = TopRates()
    rates.add(deltas({}), 100.0, 1_000.0)  # the baseline
    t = 100.0
    for i in range(120):  # 60 s of reads every 0.5 s: 1,000 pkt/s from A, then 3,000 in the last 10 s
        t += 0.5
        pkts = 1_500 if i >= 100 else 500
        rates.add(deltas({"198.18.0.1": (pkts, pkts * 100, 0, 0), "198.18.0.2": (50, 5_000, 10, 5)}), t, 1_000 + t)
    top = rates.snapshot(1_000 + t)
    one, ten, sixty = (top.lists(w).sources for w in RateWindow)
    assert [r.key for r in one] == ["198.18.0.1", "198.18.0.2"]
    assert one[0].pps == pytest.approx(3_000) and ten[0].pps == pytest.approx(3_000)
    assert sixty[0].pps == pytest.approx((100 * 500 + 20 * 1_500) / 60, rel=0.02)
    assert one[1].pps == pytest.approx(100) and one[1].bps == pytest.approx(100 * 100 * 8)
    assert one[1].syn_ps == pytest.approx(20) and one[1].drop_ps == pytest.approx(10)
    assert one[0].first_seen == pytest.approx(1_100.5) and one[0].last_seen == pytest.approx(1_000 + t)


def test_memory_is_bounded_under_many_keys() -> None:
    rates = TopRates()
    rates.add(deltas({}), 0.0, 0.0)
    for i in range(40):
        many = {f"198.19.{j // 250}.{j % 250 + 1}": (1, 60, 1, 0) for j in range(i * 1000, i * 1000 + 1000)}
        many["198.18.0.9"] = (100, 6_000, 0, 0)
        rates.add(deltas(many), i * 0.5 + 0.5, i * 0.5 + 0.5)
    assert rates._seen.held() <= SEEN_MAX
    assert max(rates._reads.lens) <= KEEP_PER_READ
    top = rates.snapshot(20.0)
    assert top.lists(RateWindow.S10).sources[0].key == "198.18.0.9"
    assert top.lists(RateWindow.S10).sources[0].first_seen == 0.5  # kept through the churn


def test_details_name_ports_and_protocols() -> None:
    rates = TopRates()
    rates.add(deltas({}), 0.0, 0.0)
    d = deltas({SRC: (10, 600, 0, 0)})
    d.tenures[key(SRC)] = SourceTenure((7, 3, 0, 0), {6 << 16 | 22: 7, 17 << 16 | 53: 3})
    rates.add(d, 1.0, 1.0)
    detail = rates.snapshot(1.0).detail(SRC)
    assert detail is not None and detail.ports == (("tcp/22", 7), ("udp/53", 3))
    assert detail.protocols == (("tcp", 7), ("udp", 3))


# --------------------------------------------------------------------------- #
# the pane's filter, the recording's records, /top's JSON


def row(key: str, drops: float = 0.0) -> TopRow:
    return TopRow(key, 100.0, 8e4, 0.0, drops, 1.0, 2.0)


def test_the_filter_takes_the_events_syntax() -> None:
    src = TopFilter.parse("src:198.18.0.0/16")
    assert src.matches(TopKind.SOURCES, row("198.18.3.4"))
    assert not src.matches(TopKind.SOURCES, row("198.19.3.4"))
    assert not src.matches(TopKind.DESTINATIONS, row("198.18.3.4"))  # a source term keeps no destination
    assert TopFilter.parse("port:22").matches(TopKind.PORTS, row("tcp/22"))
    assert not TopFilter.parse("proto:udp").matches(TopKind.PORTS, row("tcp/22"))
    assert TopFilter.parse("verdict:drop").matches(TopKind.SOURCES, row("198.18.0.1", drops=1))
    assert not TopFilter.parse("verdict:drop").matches(TopKind.SOURCES, row("198.18.0.1"))
    assert TopFilter.parse("2001:db8::1").matches(TopKind.SOURCES, row("2001:db8::1"))  # a word, not a key
    for bad, said in (("srcip:1.2.3.4", "did you mean src:"), ("rule:x", "not counted per talker"), ("port:x", "port")):
        with pytest.raises(ValueError, match=said):
            TopFilter.parse(bad)


def test_a_rows_address_is_read_once_for_every_address_term_and_redraw(monkeypatch: pytest.MonkeyPatch) -> None:
    """32 src:/dst: terms over 250 rows, drawn twice: each row's key parsed as an address once (it was once per
    term and per redraw: some 50 ms a redraw), and the matches are the same as each term's alone."""
    from ironpost_tui.ui import top_filter

    getattr(top_filter._address, "cache_clear", lambda: None)()  # the reads of earlier tests forgotten
    parsed: list[str] = []
    real = top_filter.ipaddress.ip_address

    def counted(key: str) -> object:
        parsed.append(key)
        return real(key)

    monkeypatch.setattr(top_filter.ipaddress, "ip_address", counted)
    rows = [row(f"198.18.{i}.{i % 7}") for i in range(250)]
    flt = TopFilter.parse(" ".join(["src:198.18.0.0/16"] * 16 + ["src:198.18.0.0/17"] * 16))
    for _ in range(2):
        kept = [r for r in rows if flt.matches(TopKind.SOURCES, r)]
    assert len(kept) == 128  # 198.18.0-127.x: the /17's
    assert len(parsed) == len(rows), len(parsed)  # without the cache: 12,340 (a parse per term and per draw)
    assert not TopFilter.parse("src:198.19.0.0/16").matches(TopKind.SOURCES, rows[0])  # read from the cache
    assert len(parsed) == len(rows)


def test_a_recordings_top_record_round_trips_and_hostile_ones_are_refused() -> None:
    rates = TopRates()
    rates.add(deltas({}), 0.0, 1e9)
    rates.add(deltas({SRC: (10, 600, 2, 1)}), 1.0, 1e9 + 1)
    top = rates.snapshot(1e9 + 1)
    back = top_from_json(json.loads(json.dumps(top_to_json(top))))
    assert back.lists(RateWindow.S1).sources[0].key == SRC
    assert back.lists(RateWindow.S1).sources[0].pps == pytest.approx(10)
    good = top_to_json(top)
    hostile = [
        {**good, "windows": "x"},
        {**good, "windows": [{"window": 7}]},
        {**good, "windows": [{"window": 1, "sources": [{"key": "a", "pps": -1}]}]},
        {**good, "windows": [{"window": 1, "sources": [{"key": "a", "pps": 1e300}]}]},
        {**good, "details": [{"key": "a", "ports": [["tcp/22"]]}]},
        {**good, "details": [{}] * 1_001},
        {**good, "at": "now"},
    ]
    for value in hostile:
        with pytest.raises(codec.BadRecord):
            top_from_json(value)
    # A key carrying ESC is shown escaped, never obeyed.
    evil = {**good, "windows": [{"window": 1, "sources": [{**good["windows"][0]["sources"][0], "key": "\x1b[2J"}]}]}
    assert "\x1b" not in top_from_json(evil).lists(RateWindow.S1).sources[0].key


def test_top_is_404_without_a_top_source_and_json_with_one() -> None:
    from support.metrics_lab import fetch

    from ironpost_tui.engine.snapshot import EngineSnapshot
    from ironpost_tui.metrics.collector import engine_registry
    from ironpost_tui.metrics.server import MetricsServer

    snap = EngineSnapshot(at=1.0, iface="eth0", mode="native", attached=True)
    rates = TopRates()
    rates.add(deltas({}), 0.0, 1e9)
    rates.add(deltas({SRC: (10, 600, 2, 1)}), 1.0, 1e9 + 1)
    for top, want in ((None, 404), (lambda: rates.snapshot(1e9 + 1), 200)):
        srv = MetricsServer("127.0.0.1", 0, engine_registry(lambda: snap), lambda: None, top=top)
        srv.start()
        try:
            status, headers, body = fetch(f"http://127.0.0.1:{srv.port}/top")
            assert status == want
            if want == 200:
                assert headers["Content-Type"] == "application/json"
                got = json.loads(body)
                assert [w["window"] for w in got["windows"]] == [1, 10, 60]
                assert got["windows"][0]["sources"][0]["key"] == SRC
            # No per-address label in Prometheus.
            assert SRC not in fetch(f"http://127.0.0.1:{srv.port}/metrics")[2].decode()
        finally:
            srv.stop()


def test_a_wrapped_u32_syn_or_drop_counter_is_growth_not_a_new_tenure() -> None:
    """syns and drops are u32 in the kernel's way: past 2^32 they wrap, and what they grew by is
    modulo 2^32; packets going down is a new tenure, counted whole (the control)."""
    before = (10_000_000_000, 600_000_000_000, 2**32 - 5, 2**32 - 1)
    after = (10_000_001_000, 600_000_060_000, 995, 9)
    assert way_growth(before, after) == (1_000, 60_000, 1_000, 10)
    assert way_growth(before, (500, 30_000, 500, 0)) == (500, 30_000, 500, 0)  # a new tenure
    assert way_growth(None, after) == after
