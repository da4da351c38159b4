"""config.load/loads: the seed's file, defaults, every key, rules, expiry, errors and positions."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pytest
from support.common import net

from ironpost_tui.config import settings as config
from ironpost_tui.config.durations import format_duration, parse_duration
from ironpost_tui.config.locate import SourceMap, too_deep
from ironpost_tui.config.settings import ConfigError, ConfigIssue, Settings
from ironpost_tui.detectors.settings import AutoBlockLimits, PortScanConfig, SynFloodConfig
from ironpost_tui.errors import ExitStatus
from ironpost_tui.model import Action, FilterRule

SEED = Path(__file__).resolve().parent / "config_corpus" / "ironpost.toml"
# The seed document's own TOML example, copied verbatim (its code block under "TOML 예시").
SEED_EXAMPLE = SEED.with_name("seed-example.toml")
NOW = 1_700_000_000.0


def errors_of(text: str, path: str = "t.toml") -> list[str]:
    with pytest.raises(ConfigError) as info:
        config.loads(text, path, now=NOW)
    return info.value.message.splitlines()


# --------------------------------------------------------------------------- #
# the seed's file


def test_seed_file_loads_unchanged_and_means_what_the_seed_means() -> None:
    before = SEED.read_bytes()
    s = config.load(SEED)
    assert SEED.read_bytes() == before
    assert s.path == SEED
    assert s.ebpf.enabled is True
    assert s.ebpf.interface == "eth0"
    assert s.ebpf.xdp_mode == "skb"
    assert s.ebpf.ring_buffer_size == 256  # KiB, as the seed says
    dp = s.ebpf.datapath()
    assert dp.ring_buffer_kib == 256
    assert dp.blocklist_max_entries == s.ebpf.blocklist_max_entries == 10_000
    assert s.general == config.GeneralSettings("info", "json", Path("/var/lib/ironpost"), Path("/var/run/ironpost.pid"))
    assert s.rules == ()


def test_seed_xdp_mode_hw_is_offload_and_pretty_is_text() -> None:
    text = SEED.read_text().replace('xdp_mode = "skb"', 'xdp_mode = "hw"').replace('"json"', '"pretty"')
    s = config.loads(text, "seed")
    assert s.ebpf.xdp_mode == "offload"
    assert s.general.log_format == "text"


@pytest.mark.parametrize("mode", ["auto", "native", "skb", "offload"])
def test_xdp_modes(mode: str) -> None:
    assert config.loads(f'[ebpf]\nxdp_mode = "{mode}"\n', "t").ebpf.xdp_mode == mode
    assert mode in config.XDP_MODES


def test_seed_rules_file_forms() -> None:
    text = (
        '[[ebpf.rules]]\nid = "a"\nsrc_ip = "10.0.0.50"\naction = "block"\ndescription = "Known port scanner"\n\n'
        '[[rules]]\nid = "b"\nsrc_ip = "192.168.1.100"\ndst_port = 443\nprotocol = 6\naction = "monitor"\n'
    )
    s = config.loads(text, "t")
    assert s.rules == (
        FilterRule("a", Action.DROP, src_ip=net("10.0.0.50/32"), description="Known port scanner"),
        FilterRule("b", Action.MONITOR, src_ip=net("192.168.1.100/32"), dst_port=443, protocol=6),
    )
    assert config.ACTIONS["block"] is Action.DROP


# --------------------------------------------------------------------------- #
# defaults and every key


def test_defaults() -> None:
    s = config.loads("", "empty.toml")
    assert s == Settings(path=Path("empty.toml"))
    assert s.ebpf == config.EbpfSettings(True, "", "auto", 256, 10_000, 10_000)
    assert s.ebpf.datapath().ring_buffer_kib == 256
    assert s.ebpf.datapath().event_rate == 10_000
    assert s.general == config.GeneralSettings("info", "text", Path("/var/lib/ironpost"), None)
    assert s.metrics == config.MetricsSettings(True, "127.0.0.1", 9717, None)
    assert s.safety == config.SafetySettings((), True, True)
    assert s.console == config.ConsoleSettings(1.0, "dark")


def test_detector_defaults_are_the_seeds() -> None:
    s = config.loads("", "t")
    assert s.syn_flood == SynFloodConfig(window_secs=10, threshold=100, syn_ratio_threshold=0.8)
    assert (s.syn_flood.window_secs, s.syn_flood.threshold, s.syn_flood.syn_ratio_threshold) == (10, 100, 0.8)
    assert (s.syn_flood.auto_block, s.syn_flood.block_ttl) == (False, 600)
    assert s.port_scan == PortScanConfig(window_secs=60, port_threshold=20, auto_block=False, block_ttl=600)


EVERY_KEY = """
[general]
log_level = "debug"
log_format = "text"
data_dir = "/var/lib/ironpost"
pid_file = "/run/ironpost-test.pid"

[ebpf]
enabled = true
interface = "ens3"
xdp_mode = "native"
ring_buffer_size = "1MiB"
blocklist_max_entries = 50000
event_rate_limit = 0

[detectors]
max_blocks_per_minute = 10
max_auto_blocks = 200
max_incident_sources = 4

[detectors.syn_flood]
window_secs = 5
threshold = 500
syn_ratio_threshold = 0.9
auto_block = true
block_ttl = "1h30m"

[detectors.port_scan]
window_secs = 30.5
port_threshold = 50
auto_block = true
block_ttl = 120

[metrics]
enabled = false
addr = "::"
port = 9100
web_config = "/etc/ironpost/web.yml"

[safety]
protect = ["192.0.2.10", "198.51.100.0/24", "2001:db8::/32"]
protect_ssh_client = false
protect_host_addresses = false

[console]
refresh_secs = 0.5
theme = "light"

[log_pipeline]
anything = { goes = [1, "two"] }
[container]
[sbom]
enabled = false
"""


def test_every_key() -> None:
    s = config.loads(EVERY_KEY, "t")
    assert s.general == config.GeneralSettings(
        "debug", "text", Path("/var/lib/ironpost"), Path("/run/ironpost-test.pid")
    )
    assert s.ebpf == config.EbpfSettings(True, "ens3", "native", 1024, 50_000, 0)
    dp = s.ebpf.datapath()
    assert (dp.ring_buffer_kib, dp.blocklist_max_entries, dp.event_rate) == (1024, 50_000, 0)
    assert s.syn_flood == SynFloodConfig(5, 500, 0.9, True, 5400)
    assert s.port_scan == PortScanConfig(30.5, 50, True, 120)
    assert s.auto_block == AutoBlockLimits(10, 200, 4)
    assert s.metrics == config.MetricsSettings(False, "::", 9100, Path("/etc/ironpost/web.yml"))
    assert s.safety == config.SafetySettings(
        (net("192.0.2.10/32"), net("198.51.100.0/24"), net("2001:db8::/32")), False, False
    )
    assert s.console == config.ConsoleSettings(0.5, "light")


def test_the_seed_example_loads_unchanged() -> None:
    """The seed document's TOML example, verbatim: ring_buffer_size = 256 is 256 KiB."""
    s = config.load(SEED_EXAMPLE, now=NOW)
    assert (s.ebpf.enabled, s.ebpf.interface, s.ebpf.xdp_mode) == (True, "eth0", "native")
    assert s.ebpf.ring_buffer_size == 256
    assert s.ebpf.datapath().ring_buffer_kib == 256
    assert s.ebpf.blocklist_max_entries == 10_000
    assert [(r.id, r.action) for r in s.rules] == [("block_scanner", Action.DROP), ("monitor_ssh", Action.MONITOR)]
    assert str(s.rules[0].src_ip) == "10.0.0.1/32"
    assert (s.rules[1].dst_port, s.rules[1].protocol) == (22, 6)


@pytest.mark.parametrize(
    ("value", "kib"),
    [
        ("4", 4),
        ("256", 256),
        ("512", 512),  # the seed's troubleshooting: "256 -> 512 KiB"
        ("65536", 65536),
        ('"4KiB"', 4),
        ('"256KiB"', 256),
        ('"256 KiB"', 256),
        ('"256kib"', 256),
        ('"1MiB"', 1024),
        ('"64MiB"', 65536),
    ],
)
def test_ring_buffer_size_is_in_kib(value: str, kib: int) -> None:
    s = config.loads(f"[ebpf]\nring_buffer_size = {value}\n", "t")
    assert s.ebpf.ring_buffer_size == kib
    assert s.ebpf.datapath().ring_buffer_kib == kib


@pytest.mark.parametrize(
    ("value", "message"),
    [
        # Bare numbers above the maximum in KiB only make sense as bytes: refused, saying the unit is KiB.
        (
            "262144",
            "ring_buffer_size 262144 is too large: the unit is KiB, as in the seed (at most 65536); "
            '262144 bytes is 256 KiB: write 256 or "256KiB"',
        ),
        (
            "1048576",
            "ring_buffer_size 1048576 is too large: the unit is KiB, as in the seed (at most 65536); "
            '1048576 bytes is 1 MiB: write 1024 or "1MiB"',
        ),
        (
            "1000000",
            "ring_buffer_size 1000000 is too large: the unit is KiB, as in the seed (at most 65536); "
            'a power of two from 4 KiB to 64 MiB, like 256 or "1MiB"',
        ),
        ("2", "ring_buffer_size 2 is too small: the unit is KiB, a power of two from 4 KiB to 64 MiB"),
        ("0", "ring_buffer_size 0 is too small: the unit is KiB, a power of two from 4 KiB to 64 MiB"),
        ("-4", "ring_buffer_size -4 is negative: the unit is KiB, a power of two from 4 KiB to 64 MiB"),
        ("300", "ring_buffer_size 300 is not a power of two: use 256 or 512 (KiB)"),
        ('"300KiB"', "ring_buffer_size '300KiB' is not a power of two: use 256KiB or 512KiB"),
        ('"128MiB"', "ring_buffer_size '128MiB' is too large: a power of two from 4 KiB to 64 MiB"),
        ('"2KiB"', "ring_buffer_size '2KiB' is too small: a power of two from 4 KiB to 64 MiB"),
        ('"256"', "ring_buffer_size '256' has no unit: write 256 without quotes (KiB) or with one, like 256KiB"),
        (
            '"256KB"',
            "ring_buffer_size '256KB' has the unit 'KB': sizes here are in KiB or MiB (powers of 1024), "
            'like 256 (KiB), "256KiB" or "1MiB"',
        ),
        ('"big"', 'ring_buffer_size \'big\' is not a size: write 256 (KiB), "256KiB" or "1MiB"'),
        ("256.0", 'ring_buffer_size must be a size in KiB: 256 (KiB), "256KiB" or "1MiB", got float 256.0'),
    ],
)
def test_ring_buffer_size_refused_in_one_line(value: str, message: str) -> None:
    assert errors_of(f"[ebpf]\nring_buffer_size = {value}\n") == [f"t.toml:2:1: [ebpf] {message}"]


@pytest.mark.parametrize(("value", "ok"), [(1, True), (1_000_000, True), (0, False), (1_000_001, False)])
def test_blocklist_max_entries_range(value: int, ok: bool) -> None:
    text = f"[ebpf]\nblocklist_max_entries = {value}\n"
    if ok:
        assert config.loads(text, "t").ebpf.blocklist_max_entries == value
    else:
        assert len(errors_of(text)) == 1


@pytest.mark.parametrize(("value", "ok"), [(0.1, True), (60, True), (0.09, False), (61, False)])
def test_console_refresh_range(value: float, ok: bool) -> None:
    text = f"[console]\nrefresh_secs = {value}\n"
    if ok:
        assert config.loads(text, "t").console.refresh_secs == value
    else:
        assert errors_of(text) == [f"t.toml:2:1: [console] refresh_secs {value} is out of range: it must be 0.1 to 60"]


# --------------------------------------------------------------------------- #
# rules


def test_rule_with_every_field_cidr_and_ipv6() -> None:
    text = """
[[ebpf.rules]]
id = "v6-web"
description = "IPv6 web from a lab prefix"
src_ip = "2001:db8:1::/48"
dst_ip = "2001:db8::80"
dst_port = 443
protocol = 6
action = "drop"
expires_at = 2030-01-01T00:00:00Z
auto = true

[[ebpf.rules]]
id = "v4-prefix"
src_ip = "198.18.0.0/15"
action = "monitor"
"""
    a, b = config.loads(text, "t").rules
    assert a == FilterRule(
        "v6-web",
        Action.DROP,
        src_ip=net("2001:db8:1::/48"),
        dst_ip=net("2001:db8::80/128"),
        dst_port=443,
        protocol=6,
        description="IPv6 web from a lab prefix",
        expires_at=dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc).timestamp(),
        auto=True,
    )
    assert b == FilterRule("v4-prefix", Action.MONITOR, src_ip=net("198.18.0.0/15"))


def test_inline_array_of_rules() -> None:
    s = config.loads('[ebpf]\nrules = [{id = "a", dst_port = 22, action = "monitor"}]\n', "t")
    assert s.rules == (FilterRule("a", Action.MONITOR, dst_port=22),)


def test_host_bits_error_suggests_the_network() -> None:
    assert errors_of('[[rules]]\nid = "x"\nsrc_ip = "198.18.0.1/24"\naction = "drop"\n') == [
        "t.toml:3:1: rule 'x': src_ip 198.18.0.1/24 has host bits set: did you mean 198.18.0.0/24?"
    ]


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('"::ffff:192.0.2.1"', "is an IPv4-mapped IPv6 address: write the IPv4 address 192.0.2.1"),
        ('"2001:db8::/129"', "prefix length /129 is too long for IPv6 (at most /128)"),
        ('"10.0.0.0/x"', "has no valid prefix length after the /"),
        ("5", "src_ip must be a string with an address or prefix"),
    ],
)
def test_address_errors(value: str, message: str) -> None:
    (line,) = errors_of(f'[[rules]]\nid = "x"\nsrc_ip = {value}\naction = "drop"\n')
    assert message in line


def test_port_and_protocol_errors_are_distinct() -> None:
    text = (
        '[[rules]]\nid = "a"\ndst_port = 65536\naction = "drop"\n'
        '[[rules]]\nid = "b"\ndst_port = -1\naction = "drop"\n'
        '[[rules]]\nid = "c"\ndst_port = "80"\naction = "drop"\n'
        '[[rules]]\nid = "d"\ndst_port = true\naction = "drop"\n'
        '[[rules]]\nid = "e"\nprotocol = "udp"\naction = "drop"\n'
        '[[rules]]\nid = "f"\nprotocol = 256\naction = "drop"\n'
        '[[rules]]\nid = "g"\ndst_port = 53\nprotocol = 1\naction = "drop"\n'
    )
    assert errors_of(text) == [
        "t.toml:3:1: rule 'a': dst_port 65536 is too large: a port is 0 to 65535",
        "t.toml:7:1: rule 'b': dst_port -1 is negative: a port is 0 to 65535",
        "t.toml:11:1: rule 'c': dst_port must be an integer, got string '80': write dst_port = 80 without quotes",
        "t.toml:15:1: rule 'd': dst_port must be an integer, got boolean true",
        "t.toml:19:1: rule 'e': protocol must be an integer, got string 'udp': use protocol = 17 for udp",
        "t.toml:23:1: rule 'f': protocol 256 is too large: an IP protocol number is 0 to 255 (6 tcp, 17 udp, 1 icmp)",
        "t.toml:27:1: rule 'g': dst_port matches TCP and UDP only: use protocol 6 (tcp), 17 (udp) or none, not 1",
    ]


def test_port_zero_and_protocol_zero_are_valid() -> None:
    (rule,) = config.loads('[[rules]]\nid = "z"\ndst_port = 0\nprotocol = 6\naction = "drop"\n', "t").rules
    assert (rule.dst_port, rule.protocol) == (0, 6)


def test_id_and_description_limits() -> None:
    long_id = "i" * 257
    text = (
        f'[[rules]]\nid = "{"i" * 256}"\nprotocol = 1\naction = "drop"\ndescription = "{"d" * 1024}"\n'
        f'[[rules]]\nid = "{long_id}"\nprotocol = 2\naction = "drop"\n'
        f'[[rules]]\nid = "ok"\nprotocol = 3\naction = "drop"\ndescription = "{"d" * 1025}"\n'
        '[[rules]]\nid = ""\nprotocol = 4\naction = "drop"\n'
        '[[rules]]\nid = "tab\\there"\nprotocol = 5\naction = "drop"\n'
        '[[rules]]\nprotocol = 7\naction = "drop"\n'
    )
    assert errors_of(text) == [
        "t.toml:7:1: rule #2: id is 257 characters long, more than 256: shorten it",
        "t.toml:14:1: rule 'ok': description is 1025 characters long, more than 1024: shorten it",
        't.toml:16:1: rule #4: id is empty: give the rule a unique id, like id = "block-scanner"',
        "t.toml:20:1: rule #5: id contains a control character (tab, newline...): use letters, digits, - and _",
        't.toml:23:1: rule #6: has no id: add id = "..." (unique in the file, up to 256 characters)',
    ]


def test_missing_action_means_drop() -> None:
    assert config.loads('[[rules]]\nid = "a"\nprotocol = 1\n', "t").rules == (FilterRule("a", Action.DROP, protocol=1),)


def test_duplicate_ids_say_where_the_first_is() -> None:
    text = '[[rules]]\nid = "x"\nprotocol = 1\naction = "drop"\n\n[[rules]]\nid = "x"\nprotocol = 2\naction = "drop"\n'
    with pytest.raises(ConfigError) as info:
        config.loads(text, "t.toml")
    assert info.value.errors == [
        ConfigIssue("t.toml", 7, 1, "x", "duplicate id 'x' (first at line 2): give each rule its own id")
    ]


def test_rules_the_kernel_would_refuse() -> None:
    text = (
        "[ebpf]\nblocklist_max_entries = 1\n"
        '[[ebpf.rules]]\nid = "a"\nsrc_ip = "192.0.2.1"\naction = "drop"\n'
        '[[ebpf.rules]]\nid = "b"\nsrc_ip = "192.0.2.1"\naction = "monitor"\n'
        '[[ebpf.rules]]\nid = "c"\nsrc_ip = "192.0.2.2"\naction = "drop"\n'
        '[[ebpf.rules]]\nid = "d"\nsrc_ip = "192.0.2.3"\ndst_ip = "2001:db8::1"\naction = "drop"\n'
    )
    assert errors_of(text) == [
        "t.toml:7:1: rule 'b': matches exactly the packets rule 'a' matches (line 3): remove one of them",
        "t.toml:11:1: rule 'c': is rule 2 for the kernel's BLOCKLIST map, which holds 1: "
        "raise [ebpf] blocklist_max_entries",
        "t.toml:18:1: rule 'd': src_ip is IPv4 and dst_ip is IPv6: a rule matches one IP version",
    ]


def test_a_ninth_rule_shape_is_refused() -> None:
    rules = "".join(
        f'[[rules]]\nid = "s{n}"\ndst_ip = "198.18.0.0/{16 + n}"\ndst_port = 80\naction = "drop"\n' for n in range(9)
    )
    (line,) = errors_of(rules)
    assert line.startswith("t.toml:41:1: rule 's8': needs a rule shape")


# --------------------------------------------------------------------------- #
# expiry


def test_expires_in_counts_from_load() -> None:
    text = '[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_in = "1h30m"\n'
    assert config.loads(text, "t", now=NOW).rules[0].expires_at == NOW + 5400
    seconds = text.replace('"1h30m"', "90")
    assert config.loads(seconds, "t", now=NOW).rules[0].expires_at == NOW + 90


def test_load_takes_now(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_in = "2d"\n')
    assert config.load(path, now=100.0).rules[0].expires_at == 100.0 + 2 * 86400


@pytest.mark.parametrize(
    "value",
    ["2030-01-01T01:00:00+01:00", '"2030-01-01T00:00:00Z"', '"2030-01-01t01:00:00+01:00"', '"2030-01-01 00:00:00z"'],
)
def test_expires_at_forms(value: str) -> None:
    text = f'[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_at = {value}\n'
    expected = dt.datetime(2030, 1, 1, tzinfo=dt.timezone.utc).timestamp()
    assert config.loads(text, "t").rules[0].expires_at == expected


@pytest.mark.parametrize(
    ("fraction", "micros"),
    [
        (".5", 500_000),
        (".25", 250_000),
        (".1234", 123_400),
        (".1234567", 123_456),
        (".0", 0),
        ("." + "9" * 100_000, 999_999),
    ],
)
def test_expires_at_with_any_digits_of_a_second(fraction: str, micros: int) -> None:
    """RFC 3339 allows any number of the second's digits; Python 3.10's fromisoformat() reads three or six
    only (the oldest Python the package supports), so the string is read as six: cut (100,000 digits too), or filled."""
    text = f'[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_at = "2030-01-01T00:00:00{fraction}Z"\n'
    expected = dt.datetime(2030, 1, 1, microsecond=micros, tzinfo=dt.timezone.utc).timestamp()
    assert config.loads(text, "t").rules[0].expires_at == expected


def test_expires_at_past_what_a_recording_holds_is_refused_and_the_latest_taken_is_replayed() -> None:
    """A rule expiring in the year 3000 was taken (dates to 9999 were), and a recording of it could not be
    replayed (its times stop at 2^34 s, the year 2514); the latest date taken is recorded and replayed."""
    from ironpost_tui.model import MAX_WALL_CLOCK, RuleStatus
    from ironpost_tui.records.codec import status_from_json, status_to_json

    rule = '[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_at = {}\n'
    assert errors_of(rule.format("3000-01-01T00:00:00Z")) == [
        "t.toml:5:1: rule 'a': expires_at 3000-01-01T00:00:00+00:00 is after 2514-05-30: leave it out for a rule that "
        "never expires"
    ]
    assert errors_of(rule.format("1969-12-31T23:59:59Z")) == [
        "t.toml:5:1: rule 'a': expires_at 1969-12-31T23:59:59+00:00 is before 1970-01-01: leave it out, or write a "
        "date after"
    ]
    (first,) = config.loads(rule.format("1970-01-01T00:00:00Z"), "t").rules  # the control: 0 s, in the past
    assert first.expires_at == 0.0
    (latest,) = config.loads(rule.format("2514-05-30T01:53:04Z"), "t").rules  # the control: 2^34 s, to the second
    assert latest.expires_at == MAX_WALL_CLOCK
    status = RuleStatus(latest, "PROTO", 0, None)
    assert status_from_json(json.loads(json.dumps(status_to_json(status)))) == status


def test_expires_at_in_the_past_is_kept() -> None:
    text = '[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_at = 2001-01-01T00:00:00Z\n'
    assert config.loads(text, "t", now=NOW).rules[0].expires_at == 978_307_200.0


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2030-01-01T00:00:00", "expires_at 2030-01-01T00:00:00 has no UTC offset: add one, like 2030-01-01T00:00:00Z"),
        ('"2030-01-01T00:00:00"', "expires_at '2030-01-01T00:00:00' has no UTC offset: add one"),
        ('"tomorrow"', "is not an RFC 3339 date-time"),
        ('"2030-02-30T00:00:00Z"', "is not a valid date and time"),
        ("2030-01-01", "must be a date-time with a UTC offset, like 2030-01-01T00:00:00Z, got local date 2030-01-01"),
    ],
)
def test_expires_at_errors(value: str, message: str) -> None:
    (line,) = errors_of(f'[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_at = {value}\n')
    assert message in line


def test_expires_in_and_at_together_refused() -> None:
    text = '[[rules]]\nid = "a"\nprotocol = 1\naction = "drop"\nexpires_in = "1h"\nexpires_at = 2030-01-01T00:00:00Z\n'
    assert errors_of(text) == ["t.toml:6:1: rule 'a': give expires_in or expires_at, not both"]


@pytest.mark.parametrize(("text", "seconds"), [("30s", 30), ("10m", 600), ("1h30m", 5400), ("2d", 172800)])
def test_durations(text: str, seconds: int) -> None:
    assert parse_duration(text) == seconds
    assert format_duration(seconds) == text
    assert parse_duration(format_duration(seconds)) == seconds


@pytest.mark.parametrize("text", ["", "10", "1.5h", "30m1h", "1h1h", "0s", "-1m", " 1m", "1 m", "99999d"])
def test_bad_durations(text: str) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


# --------------------------------------------------------------------------- #
# unknown keys, types


def test_unknown_keys_at_every_level_with_suggestions() -> None:
    text = (
        "ebfp = 1\n[genral]\n[ebpf]\nxdp_mod = 'skb'\n[detectors]\nsyn = 1\n[detectors.syn_flood]\nwindow = 1\n"
        '[[ebpf.rules]]\nid = "a"\nscr_ip = "192.0.2.1"\nsrc_ip = "192.0.2.1"\naction = "drop"\nzzz = 1\n'
    )
    assert errors_of(text) == [
        "t.toml:1:1: unknown key 'ebfp' at the top level (did you mean 'ebpf'?)",
        "t.toml:2:1: unknown section [genral] (did you mean [general]?)",
        "t.toml:4:1: unknown key 'xdp_mod' in [ebpf] (did you mean 'xdp_mode'?)",
        "t.toml:6:1: unknown key 'syn' in [detectors]: the known keys are syn_flood, port_scan, "
        "max_blocks_per_minute, max_auto_blocks, max_incident_sources, quiet_secs",
        "t.toml:8:1: unknown key 'window' in [detectors.syn_flood] (did you mean 'window_secs'?)",
        "t.toml:11:1: rule 'a': unknown key 'scr_ip' (did you mean 'src_ip'?)",
        "t.toml:14:1: rule 'a': unknown key 'zzz': the known keys are id, description, src_ip, dst_ip, dst_port, "
        "protocol, action, expires_in, expires_at, auto",
    ]


def test_wrong_types() -> None:
    text = "ebpf = 3\nrules = 'x'\n[console]\ntheme = 1.5\n[metrics]\nenabled = 'yes'\n"
    assert errors_of(text) == [
        "t.toml:1:1: ebpf must be a table ([ebpf]), got integer 3",
        "t.toml:2:1: rules must be an array of tables ([[rules]]), got string 'x'",
        "t.toml:4:1: [console] theme must be a string, got float 1.5",
        "t.toml:6:1: [metrics] enabled must be true or false, got string 'yes'",
    ]


# --------------------------------------------------------------------------- #
# the error object, reading, limits


def test_config_error_has_structured_errors_in_line_order() -> None:
    text = '[ebpf]\nxdp_mode = 1\n[[rules]]\nid = "r"\ndst_port = 70000\naction = "drop"\n[console]\ntheme = ""\n'
    with pytest.raises(ConfigError) as info:
        config.loads(text, "c.toml")
    err = info.value
    assert err.exit_status == ExitStatus.CONFIG_INVALID and int(err.exit_status) == 2
    assert [(e.path, e.line, e.col, e.rule_id) for e in err.errors] == [
        ("c.toml", 2, 1, None),
        ("c.toml", 5, 1, "r"),
        ("c.toml", 8, 1, None),
    ]
    assert err.message.splitlines() == [str(e) for e in err.errors]
    assert err.errors[1].message == "dst_port 70000 is too large: a port is 0 to 65535"


def test_a_file_with_an_error_is_refused_whole() -> None:
    with pytest.raises(ConfigError):
        config.loads('[[rules]]\nid = "ok"\nprotocol = 6\naction = "drop"\n[console]\ntheme = 3\n', "t")


def test_syntax_error_position() -> None:
    assert errors_of("[ebpf]\nxdp_mode = = 'skb'\n") == ["t.toml:2:12: TOML syntax error: invalid value"]
    assert errors_of("a = [1, 2") == ["t.toml:1:10: TOML syntax error: unclosed array"]


def test_huge_integer_is_a_config_error() -> None:
    (line,) = errors_of("[ebpf]\nevent_rate_limit = " + "9" * 5000 + "\n")
    assert line == "t.toml:2:20: a number has thousands of digits: no setting needs that"


def test_too_deep_is_refused_before_tomllib() -> None:
    assert errors_of("x = " + "[" * 5000) == [
        "t.toml:1:21: tables and arrays nest deeper than 16 levels: flatten the file"
    ]
    assert errors_of("a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r = 1") == [
        "t.toml:1:1: tables and arrays nest deeper than 16 levels: flatten the file"
    ]
    # 16 levels is fine (accepted under an ignored section)
    config.loads("[log_pipeline]\nx = " + "[" * 15 + "]" * 15 + "\n", "t")


def test_errors_past_the_cap_are_counted() -> None:
    text = "".join(f"k{i} = 1\n" for i in range(1500))
    lines = errors_of(text)
    assert len(lines) == 1001
    assert lines[-1] == "t.toml:1001:1: 500 more errors not listed: fix these first"


def test_load_checks_the_size_before_reading(tmp_path: Path) -> None:
    path = tmp_path / "sparse.toml"
    with path.open("wb") as f:
        f.truncate(10 * 1024 * 1024 + 1)  # NUL bytes: not TOML, so any parse would complain too
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert [e.message for e in info.value.errors] == [
        "the file is 10485761 bytes, more than the limit of 10485760 bytes (10 MiB): check that it is the right file"
    ]


def test_load_exactly_10_mib_is_read(tmp_path: Path) -> None:
    path = tmp_path / "ten.toml"
    path.write_text("#" * (10 * 1024 * 1024 - 1) + "\n")
    assert config.load(path).rules == ()


def test_load_not_utf8_and_not_regular(tmp_path: Path) -> None:
    path = tmp_path / "latin1.toml"
    path.write_bytes(b'[ebpf]\ninterface = "caf\xe9"\n')
    with pytest.raises(ConfigError) as info:
        config.load(path)
    assert info.value.message == f"{path}:2:17: not UTF-8 text (byte 0xe9): save the file as UTF-8"
    with pytest.raises(ConfigError) as info:
        config.load(tmp_path)
    assert info.value.message == f"{tmp_path}:1:1: not a regular file: give the path of a TOML file"
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError):
        config.load(fifo)  # refused without opening it (an open would block)


# --------------------------------------------------------------------------- #
# the locator


LOCATE = """\
# comment [not.a.table]
[ebpf]
xdp_mode = "skb"  # [[nor.this]]
"quoted.key" = 1
'lit' = 2
a.b."c d" = 3
s = '''
[[not.a.header]]
'''

[[ebpf.rules]]
id = "one"

[[ebpf.rules]]
  id = "two"
  inline = { k = [1, {deep = 2}] }

[[x]]
[[x.y]]
[[x]]
[[x.y]]
[[x.y]]
q = 1
"""


@pytest.mark.parametrize(
    ("loc", "where"),
    [
        (("ebpf",), (2, 1)),
        (("ebpf", "xdp_mode"), (3, 1)),
        (("ebpf", "quoted.key"), (4, 1)),
        (("ebpf", "lit"), (5, 1)),
        (("ebpf", "a", "b", "c d"), (6, 5)),
        (("ebpf", "rules", 0), (11, 1)),
        (("ebpf", "rules", 1, "id"), (15, 3)),
        (("ebpf", "rules", 1, "inline", "k", 1, "deep"), (16, 23)),
        (("x", 1, "y", 1, "q"), (23, 1)),
        (("x", 1, "y", 1), (22, 1)),
        (("ebpf", "rules", 1, "missing"), (14, 1)),  # falls back to the table header
        (("ebpf", "rules", 7, "id"), (11, 1)),  # then to the array
        (("nowhere", "at", "all"), (1, 1)),  # then 1:1
    ],
)
def test_locator(loc: tuple[str | int, ...], where: tuple[int, int]) -> None:
    assert SourceMap(LOCATE, [loc]).find(loc) == where


def test_too_deep_counts_levels() -> None:
    assert too_deep(LOCATE, 16) is None
    assert too_deep("[[a.b.c]]", 4) is None  # table a.b.c[0] is at level 4
    assert too_deep("[[a.b.c]]", 3) == (1, 1)
    assert too_deep('x = "[[[[[[[["', 2) is None  # brackets in strings do not count
    assert too_deep("x = [[[", 2) == (1, 7)


def test_ebpf_enabled_false_is_refused_not_ignored() -> None:
    """The seed's ``[ebpf] enabled``: ironpost-tui only runs to attach its program, so ``false`` cannot be honoured by
    running; ignored, a host told not to filter would filter.  Refused, in one line at the key, before anything."""
    with pytest.raises(config.ConfigError) as err:
        config.loads("[ebpf]\nenabled = false\n", "x.toml")
    assert err.value.message.startswith("x.toml:2:1: [ebpf] enabled = false: ironpost-tui runs only to attach"), err
    assert err.value.exit_status == 2
    assert config.loads("[ebpf]\nenabled = true\n", "x.toml").ebpf.enabled  # the control
