"""The compiled-program cache (kernel/program_cache.py): a start after the first loads the program BCC
compiled without compiling it, and it gives the same verdicts; anything else the compile depends on
misses; a cache file anyone but root could have written, or that is damaged, is ignored with one
warning line and the program compiled (never loaded from it).

Real compiles and loads, verdicts through ``BPF_PROG_TEST_RUN``; each cache directory is a temporary
one of the test's, removed however it ends.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from support import netlab
from support.cache_places import PLACE_CASES
from support.packets import frame
from support.verdicts import XDP_DROP, XDP_PASS, Env, check, drop, mon

from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.kernel import libbpf, program_cache, program_file, ringbuf
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig, PreparedDatapath
from ironpost_tui.kernel.xdp_link import occupants
from ironpost_tui.rules.table import RuleTable, monotonic_to_wall_offset

pytestmark = pytest.mark.root

REPO = Path(__file__).resolve().parent.parent
CFG = DatapathConfig(blocklist_max_entries=2048, event_rate=0)  # unlimited events: counts are exact
RULES = [
    drop("v4-exact", src="198.18.7.1/32"),
    drop("v6-prefix", src="2001:db8:7::/48"),
    mon("udp-mon", dport=5353, proto=17),
]
ALLOWED_V4 = frame("198.18.7.2", "198.18.0.1")
BLOCKED_V4 = frame("198.18.7.1", "198.18.0.1")
BLOCKED_V6 = frame("2001:db8:7::9", "2001:db8::1")
ALLOWED_V6 = frame("2001:db8:8::9", "2001:db8::1")
MONITORED = frame("198.18.7.3", "198.18.0.1", dport=5353, proto="udp")


@contextlib.contextmanager
def temp_dir(prefix: str = "ironpost-progcache-") -> Iterator[Path]:
    """A root-only directory (mkdtemp: 0700 under the sticky /tmp), removed even on failure."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def cache_dir() -> Iterator[Path]:
    with temp_dir() as d:
        yield d / "cache"


@contextlib.contextmanager
def datapath(cache: Path | None, cfg: DatapathConfig = CFG) -> Iterator[Datapath]:
    dp = Datapath(cfg, cache_dir=cache)
    try:
        yield dp
    finally:
        dp.close()


@contextlib.contextmanager
def env_of(dp: Datapath) -> Iterator[Env]:
    offset = monotonic_to_wall_offset()
    e = Env(dp, RuleTable(dp, offset), offset)
    dp.open_events()
    e.reset(RULES)
    yield e


def verdicts(e: Env) -> list[int]:
    """The program's verdicts on the frames, each checked with its counters, rule hit and event."""
    check(e, BLOCKED_V4, XDP_DROP, "tcp", credited="v4-exact")
    check(e, ALLOWED_V4, XDP_PASS, "tcp")
    check(e, BLOCKED_V6, XDP_DROP, "tcp", credited="v6-prefix")
    check(e, ALLOWED_V6, XDP_PASS, "tcp")
    check(e, MONITORED, XDP_PASS, "udp", credited="udp-mon")
    return [e.run(f) for f in (BLOCKED_V4, ALLOWED_V4, BLOCKED_V6, ALLOWED_V6, MONITORED)]


def cache_files(d: Path) -> list[Path]:
    return sorted(d.glob(f"{program_cache.FILE_PREFIX}*{program_cache.FILE_SUFFIX}"))


def test_a_cached_program_gives_the_compiled_programs_verdicts(cache_dir: Path) -> None:
    with datapath(cache_dir) as compiled, env_of(compiled) as e:
        assert not compiled.from_cache  # nothing cached yet: BCC compiled it, and it was saved
        (saved,) = cache_files(cache_dir)
        assert os.stat(saved).st_mode & 0o777 == 0o600 and os.stat(cache_dir).st_mode & 0o777 == 0o700
        want = verdicts(e)
        tag = bpftool_tag(compiled.prog_fd)
        verified = libbpf.prog_info(compiled.prog_fd).verified_insns
    with datapath(cache_dir) as cached, env_of(cached) as e:
        assert cached.from_cache and cached._bpf is None  # loaded through libbpf: no compile
        assert verdicts(e) == want == [XDP_DROP, XDP_PASS, XDP_DROP, XDP_PASS, XDP_PASS]
        # The same instructions (the tag hashes them, map fds left out), the same name.
        assert bpftool_tag(cached.prog_fd) == tag
        # The verifier walked it as it walked BCC's (with BTF): no more, no fewer instructions.
        info = libbpf.prog_info(cached.prog_fd)
        assert info.name == "ironpost_xdp" and info.verified_insns == verified > 0
        # The maps keep their BTF: bpftool formats their entries as it does BCC's.
        assert libbpf.map_info(cached.map_fd("BLOCKLIST")).btf_id != 0
        assert bpftool_dump(cached.map_fd("CONFIG"))[0]["formatted"]["value"]["abi_version"] > 0
        # A rule written through the Datapath's API now blocks the allowed source on the cached program.
        e.reset([*RULES, drop("late", src="198.18.7.2/32")])
        check(e, ALLOWED_V4, XDP_DROP, "tcp", credited="late")
    assert cache_files(cache_dir) == [saved]  # a hit writes nothing


def bpftool_tag(prog_fd: int) -> str:
    out = subprocess.run(
        ["bpftool", "-j", "prog", "show", "id", str(libbpf.prog_info(prog_fd).id)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    tag: str = json.loads(out.stdout)["tag"]
    return tag


def bpftool_dump(map_fd: int) -> list[dict[str, Any]]:
    out = subprocess.run(
        ["bpftool", "-j", "map", "dump", "id", str(libbpf.map_info(map_fd).id)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    entries: list[dict[str, Any]] = json.loads(out.stdout)
    return entries


HIT_SCRIPT = """
import sys, time
from pathlib import Path
from ironpost_tui.kernel.datapath import Datapath, DatapathConfig
t = time.monotonic()
dp = Datapath(DatapathConfig(blocklist_max_entries=2048, event_rate=0), cache_dir=Path(sys.argv[1]))
print(dp.from_cache, "bcc" in sys.modules, round(time.monotonic() - t, 3))
dp.close()
"""


def test_a_start_with_the_cache_never_imports_bcc_and_another_setting_misses(cache_dir: Path) -> None:
    with datapath(cache_dir):
        pass
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    out = subprocess.run([sys.executable, "-c", HIT_SCRIPT, str(cache_dir)], capture_output=True, text=True,
                         env=env, timeout=120, check=True)  # fmt: skip
    from_cache, bcc_imported, _secs = out.stdout.split()
    assert (from_cache, bcc_imported) == ("True", "False"), out
    # The negative control: another size of BLOCKLIST is another -D flag, so another program.
    with datapath(cache_dir, DatapathConfig(blocklist_max_entries=4096, event_rate=0)) as other:
        assert not other.from_cache
    assert len(cache_files(cache_dir)) == 2
    with datapath(cache_dir, DatapathConfig(blocklist_max_entries=4096, event_rate=0)) as other:
        assert other.from_cache


def test_events_of_a_cached_program_through_libbpfs_consumer(cache_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Where the mmap reader is not used (not x86), EVENTS is read through libbpf's ring_buffer."""
    with datapath(cache_dir):
        pass
    monkeypatch.setattr(ringbuf, "direct_read_supported", lambda: False)
    with datapath(cache_dir) as dp, env_of(dp) as e:
        assert dp.from_cache and dp._ring is None and dp._ringbuf is not None
        check(e, MONITORED, XDP_PASS, "udp", credited="udp-mon", n=3)
        for _ in range(5):
            e.run(MONITORED)
        assert len(dp.read_events(1000, max_events=2)) == 2  # the budget stops a poll
        assert len(dp.read_events(1000)) == 3


# --------------------------------------------------------------------------- #
# a hostile or damaged cache file: one warning, the program compiled, nothing loaded from it


def _doc(data: bytes) -> dict[str, object]:
    doc: dict[str, object] = json.loads(data[len(program_file.MAGIC) :])
    return doc


def _encode(doc: dict[str, object]) -> bytes:
    return program_file.MAGIC + json.dumps(doc).encode()


def _with_insns(data: bytes, change: Callable[[bytes], bytes], field: str = "insns") -> bytes:
    """The file with its instructions (or BTF) changed and their checksum made to match: only the
    checks that look at them (or the kernel) stand in the way."""
    doc = _doc(data)
    blob = change(base64.b64decode(str(doc[field])))
    doc[field] = base64.b64encode(blob).decode()
    doc[f"{field}_sha256"] = hashlib.sha256(blob).hexdigest()
    return _encode(doc)


def _unpatched(data: bytes) -> bytes:
    doc = _doc(data)
    maps = doc["maps"]
    assert isinstance(maps, list)
    maps[0]["insns"] = maps[0]["insns"][1:]  # one map load left with the old process's fd
    return _encode(doc)


def _without_map(name: str) -> Callable[[bytes], bytes]:
    def change(data: bytes) -> bytes:
        doc = _doc(data)
        maps = doc["maps"]
        assert isinstance(maps, list)
        [gone] = [m for m in maps if m["name"] == name]
        assert gone["insns"] == [], "the map to leave out must be one the program does not load"
        doc["maps"] = [m for m in maps if m is not gone]
        return _encode(doc)

    return change


def _bad_opcode(insns: bytes) -> bytes:
    return b"\xff" + insns[1:]  # no such instruction: the verifier refuses it


CONTENT_CASES: dict[str, tuple[Callable[[bytes], bytes], str]] = {
    "truncated": (lambda b: b[: len(b) // 2], "not valid JSON"),
    "garbage": (lambda b: os.urandom(4096), "no magic"),
    "bad magic": (lambda b: b"ironpost-xdp-progrAm\n" + b[len(program_file.MAGIC) :], "no magic"),
    "oversized": (lambda b: b + b" " * program_cache.MAX_FILE_BYTES, "more than"),
    "empty": (lambda b: b"", "no magic"),
    "checksum": (lambda b: _encode({**_doc(b), "insns_sha256": "0" * 64}), "checksum"),
    "length": (lambda b: _with_insns(b, lambda i: i[:-3]), "whole number"),
    "cut ld_imm64": (lambda b: _with_insns(b, lambda i: i + bytes([0x18]) + bytes(7)), "cut short"),
    "unpatched map load": (_unpatched, "belong to no map"),
    "another key": (lambda b: b.replace(b'"key":"', b'"key":"0', 1), "key differs"),
    "bool for an int": (lambda b: b.replace(b'"format":1', b'"format":true', 1), "not of type int"),
    "verifier refuses": (lambda b: _with_insns(b, _bad_opcode), "the kernel refused it"),
    # RATE_STATE: unused by a program without a rate limit (CFG's), and opened by the Datapath.
    "a map the Datapath opens left out": (_without_map("RATE_STATE"), "lacks the maps RATE_STATE"),
    "bad BTF": (lambda b: _with_insns(b, lambda btf: btf[:24] + os.urandom(len(btf) - 24), "btf"), "bpf_btf_load"),
    "BTF types without BTF": (lambda b: _with_insns(b, lambda btf: b"", "btf"), "no BTF"),
}


@pytest.fixture(scope="module")
def good_file() -> Iterator[tuple[str, bytes]]:
    """A valid cache file (its name and bytes), from a real compile."""
    with temp_dir() as d:
        with datapath(d / "cache"):
            pass
        (path,) = cache_files(d / "cache")
        yield path.name, path.read_bytes()


def start_warns_once_and_compiles(cache: Path, caplog: pytest.LogCaptureFixture, why: str) -> None:
    caplog.clear()
    with caplog.at_level(logging.WARNING), datapath(cache) as dp:
        assert not dp.from_cache and dp._bpf is not None  # compiled, nothing loaded from the file
        records = [r for r in caplog.records if r.levelno >= logging.WARNING]
        warnings = [r.getMessage() for r in records]
        assert len(warnings) == 1, warnings
        assert "compiled-program cache" in warnings[0] and why in warnings[0], warnings
        assert "\n" not in warnings[0]
        assert getattr(records[0], "event", None) == "program_cache" and why in getattr(records[0], "why", "")
        with env_of(dp) as e:
            check(e, BLOCKED_V4, XDP_DROP, "tcp", credited="v4-exact")


@pytest.mark.parametrize("case", CONTENT_CASES)
def test_a_damaged_cache_file_is_ignored_with_one_warning(
    case: str, good_file: tuple[str, bytes], cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, good = good_file
    change, why = CONTENT_CASES[case]
    cache_dir.mkdir(mode=0o700)
    (cache_dir / name).write_bytes(change(good))
    os.chmod(cache_dir / name, 0o600)
    start_warns_once_and_compiles(cache_dir, caplog, why)
    # The compile replaced it with a good one: the next start uses it, silently.
    caplog.clear()
    with caplog.at_level(logging.WARNING), datapath(cache_dir) as dp:
        assert dp.from_cache and not caplog.records


@pytest.mark.parametrize("case", PLACE_CASES)
def test_a_cache_file_others_could_have_written_is_ignored_with_one_warning(
    case: str, good_file: tuple[str, bytes], cache_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    name, good = good_file
    cache_dir.mkdir(mode=0o700)
    path = cache_dir / name
    path.write_bytes(good)
    os.chmod(path, 0o600)
    # The negative control: the same file, as root keeps it, is used.
    with datapath(cache_dir) as dp:
        assert dp.from_cache
    spoil, why = PLACE_CASES[case]
    spoil(path)
    start_warns_once_and_compiles(cache_dir, caplog, why)


# --------------------------------------------------------------------------- #
# the engine: a prepared datapath from the cache, attached as a compiled one is


def test_the_engine_attaches_a_program_from_the_cache(lab: netlab.Lab, cache_dir: Path) -> None:
    ids = []
    for _ in range(2):
        prepared = PreparedDatapath(CFG, cache_dir=cache_dir)
        engine = Engine(EngineOptions(iface=lab.host_if, xdp_mode="native", datapath=CFG, program_cache=cache_dir),
                        prepared=prepared)  # fmt: skip
        try:
            report = engine.start()
            dp = engine._dp
            assert dp is not None
            ids.append((dp.from_cache, report.prog_id))
            [occ] = occupants(lab.ifindex)
            assert occ.is_ironpost and occ.prog_id == report.prog_id and occ.link_id is not None
        finally:
            engine.close()
            prepared.close()
        assert occupants(lab.ifindex) == []
    assert [c for c, _ in ids] == [False, True]


# --------------------------------------------------------------------------- #
# where the cache is not used


def test_a_pinned_program_is_compiled_and_never_cached(cache_dir: Path) -> None:
    """--persist's maps are BCC's pinned ones (IRONPOST_PIN_DIR): compiled at every start, nothing saved."""
    pin_dir = Path(f"/sys/fs/bpf/ironpost-test-progcache-{os.getpid()}-{os.urandom(4).hex()}")
    pin_dir.mkdir(parents=True)
    try:
        for _ in range(2):
            dp = Datapath(CFG, pin_dir=pin_dir, cache_dir=cache_dir)
            try:
                assert not dp.from_cache and dp._bpf is not None
            finally:
                dp.close()
        assert not cache_dir.exists()
    finally:
        shutil.rmtree(pin_dir, ignore_errors=True)


def test_no_cache_on_the_command_line_turns_it_off() -> None:
    from ironpost_tui import cli

    assert cli._cache_dir(cli._run_parser().parse_args(["eth0"])) == program_cache.DEFAULT_DIR
    assert cli._cache_dir(cli._run_parser().parse_args(["eth0", "--no-cache"])) is None
