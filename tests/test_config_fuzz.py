"""Fuzzing config.loads: whatever the text, it returns Settings or raises ConfigError, nothing else.

Two sources: random text (plain, and from an alphabet of TOML's punctuation so
that brackets, quotes and headers are common), and structured documents of
plausible keys with values of random types, serialised with tomlkit.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import tomlkit
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ironpost_tui.config import settings as config
from ironpost_tui.config.locate import SourceMap, _simple_depth, scan_too_deep, too_deep

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def check(text: str) -> None:
    try:
        result = config.loads(text, "fuzz.toml", now=1_700_000_000.0)
    except config.ConfigError as exc:
        lines = exc.message.split("\n")
        assert len(lines) == len(exc.errors) >= 1
        for line, err in zip(lines, exc.errors, strict=True):
            assert line == str(err)
            assert line.startswith("fuzz.toml:")
            assert err.line >= 1 and err.col >= 1
    else:
        assert isinstance(result, config.Settings)
        assert len(result.rules) <= config.MAX_RULES


TOML_ALPHABET = st.sampled_from(list("[]{}=.,\"'#\n \t\\-_:+0123456789abcdeftruflsnixpTZ") + ['"""', "'''", "\r\n"])


@FUZZ
@given(st.text(max_size=400))
def test_random_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.lists(TOML_ALPHABET, max_size=300).map("".join))
def test_random_toml_punctuation(text: str) -> None:
    check(text)


# --------------------------------------------------------------------------- #
# structured documents

PLAUSIBLE = st.sampled_from(
    [
        "drop",
        "block",
        "monitor",
        "DROP",
        "198.18.0.1",
        "198.18.0.1/24",
        "198.18.0.0/24",
        "2001:db8::/32",
        "2001:db8::1/64",
        "::ffff:1.2.3.4",
        "fe80::1%eth0",
        "999.1.1.1",
        "10.0.0.0/33",
        "10m",
        "1h30m",
        "0s",
        "2d",
        "skb",
        "hw",
        "native",
        "json",
        "pretty",
        "80",
        "-1",
        "tcp",
        "2030-01-01T00:00:00Z",
        "2030-01-01T00:00:00",
        "",
    ]
)
SCALARS = st.one_of(
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([0, 1, 6, 17, 255, 256, 4096, 65535, 65536, 262144, 10_000, 10_001]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.text(max_size=20),
    PLAUSIBLE,
    st.datetimes(timezones=st.none() | st.just(dt.timezone.utc)),
    st.dates(),
    st.times(),
)
KEYS = st.sampled_from(
    [
        *config.TOP_KEYS,
        "ebfp",
        "xdp_mode",
        "ring_buffer_size",
        "blocklist_max_entries",
        "event_rate_limit",
        "interface",
        "enabled",
        "rules",
        "syn_flood",
        "port_scan",
        "protect",
        "theme",
        "refresh_secs",
        "log_format",
        "x",
    ]
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3),
    max_leaves=8,
)
RULE_VALUE = st.one_of(PLAUSIBLE, SCALARS)
RULE = st.dictionaries(
    st.sampled_from(
        [
            "id",
            "description",
            "src_ip",
            "dst_ip",
            "dst_port",
            "protocol",
            "action",
            "expires_in",
            "expires_at",
            "auto",
            "scr_ip",
            "zzz",
        ]
    ),
    RULE_VALUE,
    max_size=8,
)
RULES = st.lists(RULE, max_size=6)
SECTION = st.dictionaries(KEYS, VALUES, max_size=5)


@st.composite
def documents(draw: st.DrawFn) -> dict[str, Any]:
    doc: dict[str, Any] = draw(st.dictionaries(KEYS, VALUES, max_size=4))
    for name in draw(st.sets(st.sampled_from(["general", "ebpf", "metrics", "safety", "console", "detectors"]))):
        doc[name] = draw(SECTION)
    if draw(st.booleans()):
        ebpf: dict[str, Any] = doc["ebpf"] if isinstance(doc.get("ebpf"), dict) else {}
        ebpf["rules"] = draw(RULES)
        doc["ebpf"] = ebpf
    if draw(st.booleans()):
        doc["rules"] = draw(RULES)
    if draw(st.booleans()):
        doc["detectors"] = {"syn_flood": draw(SECTION), "port_scan": draw(SECTION)}
    return doc


@FUZZ
@given(documents())
def test_structured_documents(doc: dict[str, Any]) -> None:
    try:
        text = tomlkit.dumps(doc)
    except Exception:  # a value tomlkit cannot write (e.g. a lone surrogate): not our input
        assume(False)
        return
    check(text)


@FUZZ
@given(
    st.text(max_size=300) | st.lists(TOML_ALPHABET, max_size=200).map("".join),
    st.lists(st.lists(st.sampled_from(["a", "b", "rules", 0, 1, 2]), min_size=1, max_size=5).map(tuple), max_size=5),
)
def test_locator_never_fails(text: str, locs: list[tuple[str | int, ...]]) -> None:
    where = SourceMap(text, locs)
    for loc in locs:
        line, col = where.find(loc)
        assert 1 <= line <= text.count("\n") + 1
        assert col >= 1
    deep = too_deep(text, 3)
    assert deep is None or deep[0] >= 1


_KEY = st.sampled_from(["a", "b", "rules", "ebpf", "x-1", '"q.k"', "c . d"])
_VALUES = [
    '"198.18.0.1"',
    "80",
    "'lit'",
    "true",
    '"a#b"',
    "[1, [2]]",
    "{ a = { b = 1 } }",
    '"""x',
    "1979-05-27T07:32:00Z",
]
_LINE = st.one_of(
    st.tuples(st.sampled_from(["[", "[[", " [ "]), st.lists(_KEY, min_size=1, max_size=7)).map(
        lambda t: f"{t[0]}{'.'.join(t[1])}{']]' if t[0] == '[[' else ']'}"
    ),
    st.tuples(_KEY, st.sampled_from(_VALUES)).map(lambda t: f"{t[0]} = {t[1]}"),
    st.sampled_from(["", "# comment ]]", "  ", "\r", "x = 1 # [[ ]]", "[a.b] # c"]),
    st.text(max_size=10),
)


@FUZZ
@given(st.lists(_LINE, max_size=30).map("\n".join), st.integers(1, 8))
def test_too_deep_fast_path_agrees_with_scanner(text: str, limit: int) -> None:
    """too_deep() skips the scanner on a file of usual lines only: same answer as the scanner."""
    assert too_deep(text, limit) == scan_too_deep(text, limit)


def test_rule_file_takes_the_fast_path() -> None:
    usual = "[metrics]\nport = 9717\n\n" + '[[ebpf.rules]]\nid = "r"\nsrc_ip = "198.18.0.1"\n\n' * 3
    assert _simple_depth(usual) == 4  # [[ebpf.rules]]: tables at level 3, one more for a margin
    assert too_deep(usual, 4) is None and scan_too_deep(usual, 4) is None
    assert _simple_depth(usual + "x = [[1]]\n") is None  # an array value: the scanner decides
    assert too_deep(usual.replace("[[ebpf.rules]]", "[[ebpf.rules.a.b]]"), 4) == (4, 1)  # positive control


def _ip_or_error(read: Any, text: str) -> object:
    try:
        return read(text)
    except ValueError:
        return ValueError


ADDRESS_LIKE = st.one_of(
    st.ip_addresses().map(str),
    st.ip_addresses().map(lambda a: str(a).upper()),
    st.ip_addresses(v=6).map(lambda a: a.exploded),  # not canonical: the slow path
    st.text(alphabet="0123456789abcdefABCDEF.:%x ", max_size=45),  # near misses: leading zeros, zones, junk
)


@FUZZ
@given(ADDRESS_LIKE)
def test_address_fast_path_reads_what_ipaddress_reads(text: str) -> None:
    """config.rules._ip reads a canonical address in C (inet_pton, checked by inet_ntop): for any text it
    gives ipaddress.ip_address's address (the same type and value), or fails where it fails."""
    import ipaddress

    from ironpost_tui.config.rules import _ip

    got, want = _ip_or_error(_ip, text), _ip_or_error(ipaddress.ip_address, text)
    assert got == want and type(got) is type(want)


def test_address_fast_path_controls() -> None:
    """Positive and negative controls of the property above: a leading zero, a zone and a short form are
    refused or read as ipaddress does, not as inet_pton alone would."""
    import ipaddress

    from ironpost_tui.config.rules import _ip

    assert _ip("198.18.0.1") == ipaddress.IPv4Address("198.18.0.1")
    assert _ip("2001:DB8::1") == ipaddress.IPv6Address("2001:db8::1")
    assert _ip("fe80::1%eth0").scope_id == "eth0"  # type: ignore[union-attr]
    for bad in ("198.018.0.1", "1.2.3", "0x1.2.3.4", "1.2.3.4 ", ""):
        assert _ip_or_error(_ip, bad) is ValueError


_V4 = st.ip_addresses(v=4, network="198.18.0.0/15").map(str)
_V6 = st.ip_addresses(v=6, network="2001:db8::/32").map(str)
_ADDRESS = st.one_of(
    _V4, _V6, ADDRESS_LIKE,
    st.sampled_from(
        ["198.18.0.0/24", "198.18.0.1/24", "2001:db8::/32", "198.18.0.0/33", "198.18.0.0/", "::ffff:1.2.3.4"]
    ),
    st.just(7),
)  # fmt: skip
# Tables that are mostly rules of the common kind, a key now and then of another value or type, and now
# and then a key the common kind has not.
_OK_ID = st.sampled_from(["r1", "r2", "r3", "r4", "é"])
_OK_ADDRESS = st.one_of(_V4, _V4, _V6)
_PLAIN_TABLE = st.fixed_dictionaries(
    {"id": st.one_of(_OK_ID, _OK_ID, st.sampled_from(["auto", "crowdsec", "external:x", "", "a\x1bb", "x" * 257, 7]))},
    optional={
        "action": st.one_of(st.sampled_from(["drop", "block", "MONITOR", "monitor"]), st.sampled_from(["allow", 3])),
        "src_ip": st.one_of(_OK_ADDRESS, _OK_ADDRESS, _ADDRESS),
        "dst_ip": st.one_of(_OK_ADDRESS, _OK_ADDRESS, _ADDRESS),
        "dst_port": st.one_of(st.sampled_from([22, 80, 0, 65535]), st.sampled_from([65536, -1, True, "22"])),
        "protocol": st.one_of(
            st.sampled_from([6, 17]), st.sampled_from([1, 58, 0, 255]), st.sampled_from([256, "tcp", True])
        ),
        "description": st.one_of(st.sampled_from(["", "ok"]), st.sampled_from(["a\x1bb", "a\u202eb", "d" * 1025])),
    },
)  # fmt: skip
_SPOILER = st.sampled_from([("expires_in", "1h"), ("expires_in", "soon"), ("auto", True), ("sourc_ip", "198.18.0.1")])
_RULE_TABLE = st.one_of(_PLAIN_TABLE, _PLAIN_TABLE, _PLAIN_TABLE, st.tuples(_PLAIN_TABLE, _SPOILER).map(
    lambda ts: {**ts[0], ts[1][0]: ts[1][1]}
))  # fmt: skip


def _rules_of(items: list[dict[str, Any]], plain: bool) -> tuple[object, object]:
    from ironpost_tui.config import check as config_check
    from ironpost_tui.config import rules as config_rules

    saved = config_rules._plain
    if not plain:
        config_rules._plain = lambda *_a: None  # type: ignore[assignment]
    try:
        chk = config_check.Check()
        got = config_rules.rules(chk, {"ebpf": {"rules": items}}, 10_000, 1_700_000_000.0)
        return got, chk.pending
    finally:
        config_rules._plain = saved


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_RULE_TABLE, max_size=6))
def test_the_plain_rule_path_builds_what_the_checked_path_builds(items: list[dict[str, Any]]) -> None:
    """config.rules._plain, the common rule built without the checker's per-key reads: for any tables,
    the same rules and the same errors as the checked path alone."""
    assert _rules_of(items, plain=True) == _rules_of(items, plain=False)


def test_the_plain_rule_path_controls() -> None:
    """It takes the common rule (the bench's feed rules) and leaves the rest to the checked path."""
    from ironpost_tui.config import rules as config_rules

    taken = config_rules._plain({"id": "f", "src_ip": "198.18.0.7", "action": "drop"}, ("ebpf", "rules", 0), 1, {})
    assert taken is not None and str(taken[0].src_ip) == "198.18.0.7/32"
    for raw in (
        {"id": "f", "src_ip": "198.18.0.7", "expires_in": "1h"},  # expiry: checked path
        {"id": "f", "src_ip": "198.018.0.7"},  # a bad address: the checked path says what is wrong
        {"id": "f", "dst_port": 22, "protocol": 1},
        {"id": "f", "dst_port": True},
        {"id": "auto", "src_ip": "198.18.0.7"},
        {"id": "f"},
    ):
        assert config_rules._plain(raw, ("ebpf", "rules", 0), 1, {}) is None, raw
    assert config_rules._plain({"id": "f", "src_ip": "198.18.0.7"}, (), 2, {"f": ()}) is None  # a duplicate id
