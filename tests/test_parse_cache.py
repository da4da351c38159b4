"""The configuration's parse kept between starts (config/parse_cache.py): a load of a text seen before
takes its tables from the cache, never from tomli, and builds the same settings; an edited text misses;
a cache file anyone but root could have written, or that is damaged or another text's, is ignored with
one warning and the file parsed; a parse JSON cannot hold as it is, or a file with errors, is not kept.

Each cache directory is a temporary one of the test's (0700 under /tmp), removed however it ends.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomli
from support.cache_places import PLACE_CASES

from ironpost_tui.config import parse_cache, settings
from ironpost_tui.config.settings import ConfigError
from ironpost_tui.config.watch import ConfigSource

REPO = Path(__file__).resolve().parent.parent
CORPUS = REPO / "tests" / "config_corpus"

TEXT = """\
[general]
log_level = "info"

[ebpf]
event_rate_limit = 250

[[ebpf.rules]]
id = "feed-1"
src_ip = "198.18.5.1"
action = "drop"

[[ebpf.rules]]
id = "web-mon"
dst_port = 443
protocol = 6
action = "monitor"
description = "grüße, 日本"
"""


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    base = Path(tempfile.mkdtemp(prefix="ironpost-parsecache-"))
    try:
        yield base / "cache"
    finally:
        shutil.rmtree(base, ignore_errors=True)


def files(d: Path) -> list[Path]:
    return sorted(d.glob(f"{parse_cache.FILE_PREFIX}*{parse_cache.FILE_SUFFIX}")) if d.exists() else []


class NoParse:
    """tomli's parse replaced by one that fails the test: a load that parses is seen."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        monkeypatch.setattr(settings.tomllib, "loads", self)

    def __call__(self, text: str) -> dict[str, Any]:
        self.calls += 1
        raise AssertionError("tomli parsed a text whose parse is cached")


def test_a_text_seen_before_is_not_parsed_again_and_builds_the_same_settings(
    cache_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)
    [kept] = files(cache_dir)
    assert os.stat(kept).st_mode & 0o777 == 0o600 and os.stat(cache_dir).st_mode & 0o777 == 0o700
    no_parse = NoParse(monkeypatch)
    again = settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)
    assert again == first and no_parse.calls == 0
    assert [r.id for r in again.rules] == ["feed-1", "web-mon"] and again.rules[1].description == "grüße, 日本"
    # The negative control: the cache gone, the same load parses (and the stand-in says so).
    kept.unlink()
    with pytest.raises(AssertionError, match="tomli parsed"):
        settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)


def test_an_edited_text_is_parsed_and_kept_under_another_name(cache_dir: Path) -> None:
    settings.loads(TEXT, "a.toml", cache_dir=cache_dir)
    edited = TEXT.replace("198.18.5.1", "198.18.5.2")
    got = settings.loads(edited, "a.toml", cache_dir=cache_dir)
    assert str(got.rules[0].src_ip) == "198.18.5.2/32"
    assert len(files(cache_dir)) == 2
    assert parse_cache.cache_key(TEXT, settings.MAX_DEPTH) != parse_cache.cache_key(edited, settings.MAX_DEPTH)


def test_the_checks_run_on_a_cached_parse(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the parse is kept: an ``expires_in`` counts from the time of the load that reads it."""
    timed = TEXT + '\n[[ebpf.rules]]\nid = "short"\nsrc_ip = "198.18.5.9"\nexpires_in = "1m"\n'
    settings.loads(timed, "a.toml", now=1000.0, cache_dir=cache_dir)
    assert files(cache_dir)
    no_parse = NoParse(monkeypatch)
    later = settings.loads(timed, "a.toml", now=5000.0, cache_dir=cache_dir)
    assert no_parse.calls == 0
    [rule] = [r for r in later.rules if r.id == "short"]
    assert rule.expires_at == 5060.0  # counted from this load's time, not the first's


def test_the_files_used_last_are_kept(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Past KEEP_FILES the file used longest ago goes: the file in use stays however many edits are tried
    beside it, each of its reads counting as a use (it is written once, then only read)."""
    settings.loads(TEXT, "a.toml", cache_dir=cache_dir)
    [in_use] = files(cache_dir)
    inode = in_use.stat().st_ino
    for i in range(parse_cache.KEEP_FILES + 3):
        os.utime(in_use, (1, 1))  # as if written long ago ...
        with monkeypatch.context() as m:
            no_parse = NoParse(m)  # type: ignore[arg-type]
            settings.loads(TEXT, "a.toml", cache_dir=cache_dir)  # ... and read now: touched
            assert no_parse.calls == 0
        settings.loads(TEXT + f"# edit {i}\n", "a.toml", cache_dir=cache_dir)  # another file, kept beside it
    assert len(files(cache_dir)) == parse_cache.KEEP_FILES and in_use.stat().st_ino == inode
    # The negative control: not read between the edits, it is the oldest and goes.
    os.utime(in_use, (1, 1))
    settings.loads(TEXT + "# another edit\n", "a.toml", cache_dir=cache_dir)
    assert not in_use.exists() and len(files(cache_dir)) == parse_cache.KEEP_FILES


@pytest.mark.parametrize(
    ("text", "refused"),
    [
        (TEXT + '\n[[ebpf.rules]]\nid = "t"\nsrc_ip = "198.18.5.7"\nexpires_at = 2030-01-01T00:00:00Z\n', False),
        (TEXT.replace('"info"', '"loud"'), True),
        ("[container]\n" + "".join(f"k{i} = 9e15\n" for i in range(2_000)), False),
    ],
    ids=["a date (JSON has none)", "a file with an error", "a parse whose JSON is over the limit"],
)
def test_what_is_not_kept(text: str, refused: bool, cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if not refused:
        monkeypatch.setattr(parse_cache, "MAX_FILE_BYTES", 40_000)  # the last case: some 44 KB of JSON
    if refused:
        with pytest.raises(ConfigError):
            settings.loads(text, "a.toml", cache_dir=cache_dir)
    else:
        settings.loads(text, "a.toml", cache_dir=cache_dir)
    assert files(cache_dir) == []
    settings.loads(TEXT, "a.toml", cache_dir=cache_dir)  # the positive control: a plain file is kept
    assert len(files(cache_dir)) == 1


class NoCache:
    """ParseCache replaced by one that fails the test: a load that would read or keep a parse is seen."""

    def __init__(self, *args: object) -> None:
        raise AssertionError("a parse cache was made")


def test_without_a_cache_directory_nothing_is_read_or_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The library's ConfigSource (no cache_dir) and check-config parse every time and keep nothing."""
    path = tmp_path / "ironpost.toml"
    path.write_text(TEXT)
    os.chmod(path, 0o600)
    source = ConfigSource(path, "eth0", state_dir=tmp_path / "state")
    assert source.cache_dir is None
    monkeypatch.setattr(settings, "ParseCache", NoCache)
    source.load(cached=True)
    settings.load(path)
    # The negative control: given a directory, a load makes one.
    with pytest.raises(AssertionError, match="a parse cache was made"):
        settings.load(path, cache_dir=tmp_path / "cache")


def test_config_source_keeps_the_parse_at_a_start_and_not_at_a_reload(tmp_path: Path, cache_dir: Path) -> None:
    """A start's load (cached=True) reads and keeps the parse; a reload (under the engine's lock) neither."""
    path = tmp_path / "ironpost.toml"
    path.write_text(TEXT)
    os.chmod(path, 0o600)
    source = ConfigSource(path, "eth0", state_dir=tmp_path / "state", cache_dir=cache_dir)
    source.load()  # a reload
    assert files(cache_dir) == []
    source.load(cached=True)
    assert len(files(cache_dir)) == 1


# --------------------------------------------------------------------------- #
# the JSON holds what tomli gave, type for type


def same(a: Any, b: Any) -> bool:
    """Equal and of the same types all the way down (1 == 1.0 == True in Python: not here)."""
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float):
        return a == b and math.copysign(1, a) == math.copysign(1, b)
    return bool(a == b)


def round_trip(text: str, cache_dir: Path) -> Any:
    cache = parse_cache.ParseCache(cache_dir, text, settings.MAX_DEPTH)
    encoded = cache.encode(tomli.loads(text))
    assert encoded is not None
    cache.put(encoded)
    return cache.get()


TYPED = """\
i = 1
f = 1.0
nz = -0.0
big = 1e300
tiny = 5e-324
t = true
n = 0
s = "a\\u0000b\\t\\"c\\" \\\\ é 😀"
lit = 'C:\\path'
ml = \"\"\"
two
lines\"\"\"
arr = [1, 2.5, "x", [true, []], {k = {}}]
hex = 0xff
[deep.er]
key = 9223372036854775807
neg = -9223372036854775808
"""


def test_the_json_gives_back_tomlis_values_type_for_type(cache_dir: Path) -> None:
    for text in [TYPED, *(p.read_text() for p in sorted(CORPUS.glob("*.toml")))]:
        parsed = tomli.loads(text)
        back = round_trip(text, cache_dir)
        assert same(back, parsed), text[:80]
    # The negative control: the comparison sees an int turned float.
    assert not same({"a": 1}, {"a": 1.0}) and not same({"a": True}, {"a": 1}) and not same([0.0], [-0.0])


def test_a_float_that_is_not_finite_is_not_kept(cache_dir: Path) -> None:
    cache = parse_cache.ParseCache(cache_dir, "x = inf", settings.MAX_DEPTH)
    assert cache.encode(tomli.loads("x = inf")) is None
    assert cache.encode(tomli.loads("x = nan")) is None
    assert cache.encode(tomli.loads("x = 1.5")) is not None


# --------------------------------------------------------------------------- #
# refused files: one warning, the file parsed, the settings as a fresh parse makes them


def load_warns_once_and_parses(cache_dir: Path, caplog: pytest.LogCaptureFixture, why: str) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        got = settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)
    records = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(records) == 1, [r.getMessage() for r in records]
    message = records[0].getMessage()
    assert "configuration cache" in message and "ignored, the file parsed instead" in message
    assert why in message, message
    assert getattr(records[0], "event", None) == "config_cache"
    assert "\n" not in message
    assert got == settings.loads(TEXT, "a.toml", now=1000.0)


def good_file(cache_dir: Path) -> Path:
    settings.loads(TEXT, "a.toml", cache_dir=cache_dir)
    [path] = files(cache_dir)
    return path


def _rewrite(path: Path, change: Any) -> None:
    path.write_bytes(change(path.read_bytes()))


def _header(change: Any) -> Any:
    def apply(raw: bytes) -> bytes:
        head, _, body = raw.partition(b"\n")
        header = json.loads(head)
        change(header)
        return json.dumps(header).encode() + b"\n" + body

    return apply


def _data(raw: bytes, body: bytes) -> bytes:
    """``raw``'s header over another data line, its digest made to match (what only root could write)."""
    head, _, _ = raw.partition(b"\n")
    header = json.loads(head)
    header["data_sha256"] = hashlib.sha256(body).hexdigest()
    return json.dumps(header).encode() + b"\n" + body


CONTENT_CASES: dict[str, tuple[Any, str]] = {
    "cut short": (lambda raw: raw[: len(raw) // 2], "does not match its digest"),
    "a value changed": (lambda raw: raw.replace(b"198.18.5.1", b"198.18.5.6"), "does not match its digest"),
    "no data line": (lambda raw: raw.partition(b"\n")[0], "not of this format"),
    "header not JSON": (lambda raw: b"{" + raw, "header is not JSON"),
    "data not as written": (lambda raw: _data(raw, b'{"x": NaN}'), "not JSON as this cache writes it"),
    "data nested past recursion": (lambda raw: _data(raw, b"[" * 100_000 + b"]" * 100_000), "not JSON as"),
    "another format": (_header(lambda h: h.update(format=99)), "not of this format"),
    "another text's": (_header(lambda h: h.update(key="0" * 64)), "another file's parse"),
    "oversized": (lambda raw: raw + b" " * parse_cache.MAX_FILE_BYTES, "more than"),
}


@pytest.mark.parametrize("case", CONTENT_CASES)
def test_a_damaged_cache_file_is_ignored_with_one_warning(
    case: str, cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = good_file(cache_dir)
    change, why = CONTENT_CASES[case]
    _rewrite(path, change)
    load_warns_once_and_parses(cache_dir, caplog, why)
    # Written again by that load: the next one uses it, silently.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)
    assert not caplog.records


def test_data_that_is_not_a_table_is_ignored(cache_dir: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = good_file(cache_dir)
    cache = parse_cache.ParseCache(cache_dir, TEXT, settings.MAX_DEPTH)
    body = b"[1, 2]"
    header = {"format": parse_cache.FORMAT, "key": cache.key, "data_sha256": hashlib.sha256(body).hexdigest()}
    path.write_bytes(json.dumps(header).encode() + b"\n" + body)
    load_warns_once_and_parses(cache_dir, caplog, "not a table")


@pytest.mark.root  # files of other owners
@pytest.mark.parametrize("case", PLACE_CASES)
def test_a_cache_file_others_could_have_written_is_ignored_with_one_warning(
    case: str, cache_dir: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = good_file(cache_dir)
    # The negative control: the same file, as root keeps it, is used (no parse).
    with monkeypatch.context() as m:
        NoParse(m)  # type: ignore[arg-type]
        settings.loads(TEXT, "a.toml", now=1000.0, cache_dir=cache_dir)
    spoil, why = PLACE_CASES[case]
    spoil(path)
    load_warns_once_and_parses(cache_dir, caplog, why)


def test_a_killed_writers_temporary_file_goes_at_the_next_write(cache_dir: Path) -> None:
    settings.loads(TEXT, "a.toml", cache_dir=cache_dir)
    old = cache_dir / f".{parse_cache.FILE_PREFIX}0123456789abcdef.tmp"
    fresh = cache_dir / f".{parse_cache.FILE_PREFIX}fedcba9876543210.tmp"
    other = cache_dir / ".ironpost_xdp-0123456789abcdef.tmp"  # the compiled program's kind: not this one's
    for p in (old, fresh, other):
        p.write_bytes(b"half")
    for p in (old, other):
        os.utime(p, (1, 1))
    settings.loads(TEXT + "# edited\n", "a.toml", cache_dir=cache_dir)
    assert not old.exists() and fresh.exists() and other.exists()
