"""Issue 15, faults 3 and 4: text from outside never drives the terminal or a log, and a replay
reads a hostile recording in bounded memory, letting out only RecordingError.

No root needed.  The pty tests run the real CLI and read the raw bytes it writes.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
import os
import pty
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ironpost_tui import cli
from ironpost_tui.config import settings as config
from ironpost_tui.metrics.log_format import JsonFormatter, TextFormatter
from ironpost_tui.records.reading import MAX_DECOMPRESSED_BYTES, MAX_LINE_BYTES
from ironpost_tui.records.recording import RecordingError, ReplaySource
from ironpost_tui.text import unsafe, visible

ROOT = Path(__file__).resolve().parent.parent
OSC0 = "\x1b]0;owned\x07"
OSC52 = "\x1b]52;c;b3duZWQ=\x07"
# One of each class that must never reach a terminal raw.
BAD = {
    "ESC": "\x1b",
    "BEL": "\x07",
    "DEL": "\x7f",
    "C1 CSI": "\x9b",
    "NEL": "\x85",
    "RLO": "\u202e",
    "LRI": "\u2066",
    "PDI": "\u2069",
    "ZWSP": "\u200b",
    "LINE SEPARATOR": "\u2028",
    "TAG": "\U000e0041",
}
RAW_UNSAFE = [c for c in BAD.values()]


def has_raw(text: str) -> list[str]:
    return [name for name, c in BAD.items() if c in text] + (["NUL"] if "\x00" in text else [])


# --------------------------------------------------------------------------- #
# the one function


def test_visible_escapes_each_class_and_keeps_letters() -> None:
    for name, c in BAD.items():
        out = visible(f"a{c}b")
        assert has_raw(out) == [], name
        assert out.startswith("a\\") and out.endswith("b"), (name, out)
    assert visible(OSC0) == "\\x1b]0;owned\\x07"
    assert visible("\u202eexe.txt") == "\\u202eexe.txt"
    for fine in ("Zugriff für Büro", "访问控制", "доступ", "tab\there", "emoji 🔥"):
        assert visible(fine) == fine and unsafe(fine) is None
    assert visible("a\nb", keep="\n") == "a\nb" and visible("a\nb") == "a\\x0ab"


# --------------------------------------------------------------------------- #
# configuration: refused at load, and errors never echo raw


def _check_config(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    status = cli.main(["check-config", str(path)])
    out, err = capsys.readouterr()
    return status, out, err


@pytest.mark.parametrize("name", sorted(BAD))
@pytest.mark.parametrize("where", ["id", "description", "key", "section", "string"])
def test_config_refuses_each_bad_character(
    name: str, where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    c = BAD[name]
    esc = json.dumps(c)  # a TOML basic string takes JSON's escapes (\u001b, \ud83f\udc41 aside)
    if ord(c) > 0xFFFF:
        esc = f'"\\U{ord(c):08X}"'
    rule = '[[rules]]\nid = "ok"\nprotocol = 6\n'
    text = {
        "id": f"[[rules]]\nid = {esc}\nprotocol = 6\n",
        "description": f"{rule}description = {esc}\n",
        "key": f"[general]\n{esc} = 1\n",
        "section": f"[{esc}]\nk = 1\n",
        "string": f'[console]\ntheme = "dark{esc[1:]}\n',
    }[where]
    path = tmp_path / "c.toml"
    path.write_text(text, encoding="utf-8")
    status, out, err = _check_config(path, capsys)
    assert status == 2, (where, name, out, err)
    assert err.strip() and not out
    lines = err.splitlines()
    assert all(has_raw(line) == [] for line in lines), (where, name, err)
    assert "\\" in err  # the character is named escaped, e.g. \x1b
    if where in ("id", "description", "string"):
        assert len(lines) == 1 and "control or format character" in err, err
        assert {"id": "id", "description": "description", "string": "[console] theme"}[where] in err


def test_config_accepts_letters_of_any_script(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Positive control: the check refuses controls, not non-ASCII text."""
    path = tmp_path / "c.toml"
    path.write_text('[[rules]]\nid = "büro-zugriff"\nprotocol = 6\ndescription = "Zugriff für Büro\tok"\n')
    status, out, err = _check_config(path, capsys)
    assert (status, err) == (0, ""), err
    (rule,) = config.load(path).rules
    assert rule.description == "Zugriff für Büro\tok"


def test_check_config_subprocess_unknown_section_with_esc(tmp_path: Path) -> None:
    path = tmp_path / "crafted.toml"
    path.write_text('["\\u001b]0;owned\\u0007"]\na = 1\n[general]\n"\\u001b]52;c;eA==\\u0007" = 1\n')
    proc = subprocess.run(
        [sys.executable, "-m", "ironpost_tui", "check-config", str(path)],
        capture_output=True,
        cwd=ROOT,
        timeout=60,
    )
    assert proc.returncode == 2
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr, proc.stderr
    assert b"unknown section [\\x1b]0;owned\\x07]" in proc.stderr, proc.stderr
    assert b"\\x1b]52;c;eA==\\x07" in proc.stderr


# --------------------------------------------------------------------------- #
# logs


def _record(msg: str, **extra: Any) -> logging.LogRecord:
    record = logging.LogRecord("ironpost", logging.WARNING, __file__, 1, msg, (), None)
    record.__dict__.update(extra)
    return record


def test_json_log_escapes_controls_and_bidi_and_stays_valid() -> None:
    rule_id = f"evil{OSC0}\u202egnp"
    line = JsonFormatter().format(_record(f"rule {rule_id} für Büro", event="rule", rule_id=rule_id))
    assert has_raw(line) == [], line
    assert "\\u001b" in line and "\\u202e" in line and "\\u0007" in line
    assert "für Büro" in line  # letters stay readable
    data = json.loads(line)
    assert data["rule_id"] == rule_id and data["message"] == f"rule {rule_id} für Büro"
    # negative control: what json.dumps alone lets through
    assert "\u202e" in json.dumps({"x": rule_id}, ensure_ascii=False)


def test_text_log_escapes_controls_but_keeps_lines() -> None:
    line = TextFormatter().format(_record(f"bad {OSC52}\u202e\nsecond line"))
    assert has_raw(line) == [] and "\\x1b]52;c;" in line and line.endswith("\nsecond line")


# --------------------------------------------------------------------------- #
# recordings: crafted, fuzzed, bombs

INFO = {
    "iface": "eth0",
    "mode": "native",
    "attached": True,
    "started_at": 1_700_000_000.0,
    "config_path": "",
    "blocklist_capacity": 10000,
    "protected": [],
}


START = {"kind": "start", "v": 1, "t": 0, "info": INFO}


def _write(path: Path, lines: list[Any]) -> Path:
    with gzip.open(path, "wb") as f:
        for obj in lines:
            f.write((obj if isinstance(obj, bytes) else json.dumps(obj).encode()) + b"\n")
    return path


def crafted_lines(payload: str) -> list[dict[str, Any]]:
    rule = {"id": f"r{payload}", "action": "drop", "src_ip": "198.18.0.9/32", "description": f"d{payload}"}
    alert = {
        "id": 1,
        "detector": "port_scan",
        "severity": "high",
        "source": f"s{payload}",
        "target": f"t{payload}",
        "count": 5,
        "peak": 5,
        "window_secs": 10.0,
        "first_seen": 1_700_000_000.5,
        "last_seen": 1_700_000_000.6,
        "summary": f"sum{payload}",
        "resolved_at": None,
    }
    event = {
        "ts": 1_700_000_000.7,
        "family": 4,
        "src": "198.18.0.9",
        "dst": "198.18.0.1",
        "sport": 4000,
        "dport": 22,
        "proto": 6,
        "flags": 2,
        "len": 60,
        "verdict": "drop",
        "rule": f"r{payload}",
    }
    return [
        {"kind": "start", "v": 1, "t": 0.0, "info": {**INFO, "iface": f"e{payload}", "mode": f"m{payload}"}},
        {"kind": "rules", "t": 0.1, "rules": [{"rule": rule, "map": "SRC4", "hits": 3, "last_hit": None}]},
        {"kind": "rule_change", "t": 0.2, "what": f"add{payload}", "rule": rule},
        {"kind": "alert", "t": 0.3, "change": {"kind": "raised", "alert": alert}},
        {"kind": "events", "t": 0.4, "events": [event]},
        {"kind": "notice", "t": 0.5, "text": f"notice{payload}"},
    ]


def _play_all(path: Path) -> list[Any]:
    source = ReplaySource(path, speed=1e9)
    try:
        updates = []
        for _ in range(10_000):
            u = source.poll(0)
            updates.append(u)
            if source.position >= source.duration and source._next is None:
                break
        source.seek(0)  # and again from the start
        updates.append(source.poll(0))
        return updates
    finally:
        source.close()


def test_crafted_recording_values_arrive_escaped(tmp_path: Path) -> None:
    payload = OSC0 + OSC52 + "\u202e"
    path = _write(tmp_path / "crafted.ipr.gz", crafted_lines(payload))
    source = ReplaySource(path)
    source.close()
    assert has_raw(repr(source.info)) == [] and source.info.iface.startswith("e\\x1b]0;owned")
    shown = repr(_play_all(path))
    # repr would escape raw ones itself: look at the values instead
    updates = _play_all(path)
    texts = [n for u in updates for n in u.notices]
    texts += [s.rule.id for u in updates for s in (u.rules or ())]
    texts += [s.rule.description for u in updates for s in (u.rules or ())]
    texts += [f"{c.alert.source}{c.alert.target}{c.alert.summary}" for u in updates for c in u.alerts]
    texts += [e.rule_id or "" for u in updates for e in u.events]
    assert len(texts) >= 7 and shown
    for text in texts:
        assert has_raw(text) == [] and "\\x1b]" in text, text


def test_a_replayed_tab_reaches_no_grid_cell(tmp_path: Path) -> None:
    """The rules and events grids write a cell's text to the terminal as it is: a tab there moved the cursor up
    to 8 columns past what the cell counted (a rule id "r<TAB><TAB><TAB>drop" read under the action's column; an
    attacker's review of session 29).  The tab is shown as \\x09, the rest of the value as it is."""
    from ironpost_tui.ui.widgets import event_grid, rule_rows

    lines = crafted_lines("\t\t\tdrop")
    lines[1]["rules"][0]["map"] = "SRC4\t\t"
    updates = _play_all(_write(tmp_path / "tabs.ipr.gz", lines))
    statuses = [st for u in updates for st in (u.rules or ())]
    events = [e for u in updates for e in u.events]
    assert statuses and events
    assert "\t" in statuses[0].rule.id and "\t" in (events[0].rule_id or "")  # the control: the values hold tabs
    shown = [text for st in statuses for text, _style in rule_rows.cells(st, 0.0)]
    shown += [text for e in events for text in event_grid.cells(e)]
    assert not [text for text in shown if "\t" in text], shown
    assert "SRC4\\x09\\x09" in shown and any("\\x09" in text and text.startswith("r") for text in shown), shown


@pytest.mark.parametrize(
    "lines",
    [
        [[1, 2]],  # a list as the first line
        crafted_lines("")[:3] + [{"kind": "alert", "t": 0.3, "change": {"kind": "raised", "alert": {}}}],
        [{"kind": "start", "v": 1, "t": 0, "info": None}],
        [{"kind": "start", "v": 1, "t": 0, "info": {**INFO, "started_at": "x"}}],
        [{"kind": "start", "v": True, "t": 0, "info": INFO}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "notice", "t": "1", "text": "x"}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "notice", "t": 1, "text": None}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "events", "t": 1, "events": [{"ts": 1}]}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "events", "t": 1, "events": {}}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "rules", "t": 1, "rules": [None]}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "sample", "t": 1, "sample": []}],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, {"kind": "alert", "t": 1, "change": {"kind": "x"}}],
        [
            {"kind": "start", "v": 1, "t": 0, "info": INFO},
            {"kind": "notice", "t": 2, "text": ""},
            {"kind": "x", "t": 1},
        ],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b"NaN"],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b'{"kind":"notice","t":Infinity,"text":""}'],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b"[" * 100_000 + b"]" * 100_000],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b'{"kind":"notice","t":1,"text":"a"}' + b"1" * 5000],
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b""],  # a blank line
        [{"kind": "start", "v": 1, "t": 0, "info": INFO}, b"\xff\xfe"],
    ],
)
def test_wrong_types_are_one_recording_error(lines: list[Any], tmp_path: Path) -> None:
    path = _write(tmp_path / "bad.ipr.gz", lines)
    with pytest.raises(RecordingError) as info:
        ReplaySource(path)
    assert "\n" not in info.value.message and info.value.exit_status == 2


def test_replay_cli_bad_recording_exits_2_in_one_line(tmp_path: Path) -> None:
    path = _write(tmp_path / f"bad{OSC0}.ipr.gz", [[1, 2]])
    proc = subprocess.run(
        [sys.executable, "-m", "ironpost_tui", "replay", str(path)], capture_output=True, cwd=ROOT, timeout=60
    )
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.splitlines()) == 1 and b"Traceback" not in proc.stderr
    assert b"\x1b" not in proc.stderr and b"\x07" not in proc.stderr, proc.stderr


def _mutate(lines: list[Any], path: list[Any], value: Any) -> list[Any]:
    out = json.loads(json.dumps(lines))
    target: Any = out
    for step in path[:-1]:
        target = target[step % len(target)] if isinstance(target, list) else target[step]
    last = path[-1]
    if isinstance(target, list):
        target[last % len(target)] = value
    else:
        target[last] = value
    return out


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner, max_size=3),
    max_leaves=6,
)
BASE = crafted_lines("x")


def _paths(obj: Any, prefix: list[Any]) -> list[list[Any]]:
    out = [prefix] if prefix else []
    if isinstance(obj, dict):
        for k, v in obj.items():
            out += _paths(v, [*prefix, k])
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            out += _paths(v, [*prefix, i])
    return out


PATHS = _paths(BASE, [])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(PATHS), json_values)
def test_fuzzed_fields_only_recording_error(tmp_path: Path, path: list[Any], value: Any) -> None:
    file = _write(tmp_path / "f.ipr.gz", _mutate(BASE, path, value))
    try:
        _play_all(file)
    except RecordingError:
        pass


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=400), st.integers(0, 2000), st.booleans())
def test_fuzzed_bytes_only_recording_error(tmp_path: Path, junk: bytes, at: int, compress: bool) -> None:
    good = b"\n".join(json.dumps(x).encode() for x in BASE) + b"\n"
    at = min(at, len(good))
    data = good[:at] + junk + good[at:]
    file = tmp_path / "b.ipr.gz"
    file.write_bytes(gzip.compress(data) if compress else data)
    try:
        _play_all(file)
    except RecordingError:
        pass


BOMB_PROBE = """
import sys, resource
from pathlib import Path
from ironpost_tui.records.recording import RecordingError, ReplaySource
def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
before = hwm()
try:
    ReplaySource(Path(sys.argv[1])).close()
    print("ACCEPTED", 0)
except RecordingError as exc:
    print("REFUSED", hwm() - before, exc.message)
"""


def _bomb(path: Path, first: bytes, chunk: bytes, total: int) -> Path:
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(first)
        written = 0
        while written < total:
            f.write(chunk)
            written += len(chunk)
    return path


@pytest.mark.parametrize("shape", ["one long line", "many 900 KiB lines"])
def test_gzip_bomb_refused_in_bounded_memory(shape: str, tmp_path: Path) -> None:
    start = json.dumps({"kind": "start", "v": 1, "t": 0, "info": INFO}).encode() + b"\n"
    if shape == "one long line":
        path = _bomb(tmp_path / "bomb.ipr.gz", start + b'{"kind":"notice","t":1,"text":"', b"A" * 2**20, 300 * 2**20)
    else:
        line = json.dumps({"kind": "notice", "t": 1, "text": "A" * (900 * 1024)}).encode() + b"\n"
        path = _bomb(tmp_path / "bomb.ipr.gz", start, line, MAX_DECOMPRESSED_BYTES + 2**20)
    assert path.stat().st_size < 2 * 2**20  # it really is a bomb: small on disk
    proc = subprocess.run(
        [sys.executable, "-c", BOMB_PROBE, str(path)], capture_output=True, text=True, cwd=ROOT, timeout=300
    )
    verdict, growth, *why = proc.stdout.split(" ", 2)
    assert verdict == "REFUSED", proc.stdout + proc.stderr
    assert int(growth) < 100 * 2**20, f"RSS grew by {int(growth) / 2**20:.0f} MiB"
    assert ("1 MiB" if shape == "one long line" else "256 MiB") in why[0]


def test_limits_positive_control(tmp_path: Path) -> None:
    """A line just under the cap plays: the limit is where the README says."""
    start = {"kind": "start", "v": 1, "t": 0, "info": INFO}
    text = "A" * (MAX_LINE_BYTES - 100)
    path = _write(tmp_path / "ok.ipr.gz", [start, {"kind": "notice", "t": 1, "text": text}])
    assert any(text in u.notices for u in _play_all(path))


# --------------------------------------------------------------------------- #
# through a pty: the raw bytes the terminal receives


def _send(fd: int, data: bytes) -> None:
    try:
        os.write(fd, data)
    except OSError:  # the program has exited already
        pass


def _pty_run(argv: list[str], keys: list[bytes], seconds: float) -> bytes:
    pid, fd = pty.fork()
    if pid == 0:  # the child: the CLI on the pty
        os.chdir(ROOT)
        env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "160", "LINES": "48"}
        os.execve(sys.executable, [sys.executable, "-m", "ironpost_tui", *argv], env)
    import fcntl
    import struct
    import termios

    fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 48, 160, 0, 0))
    out = io.BytesIO()
    deadline = time.monotonic() + seconds
    pending = list(keys)
    next_key = time.monotonic() + 2.0
    try:
        while True:
            now = time.monotonic()
            if now >= deadline:
                if pending is not None:
                    _send(fd, b"q")
                    pending = None  # type: ignore[assignment]
                    deadline = now + 10
                else:
                    break
            elif pending and now >= next_key:
                _send(fd, pending.pop(0))
                next_key = now + 0.8
            ready, _, _ = select.select([fd], [], [], 0.1)
            if ready:
                try:
                    data = os.read(fd, 65536)
                except OSError:
                    break
                if not data:
                    break
                out.write(data)
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        os.waitpid(pid, 0)
        os.close(fd)
    return out.getvalue()


def test_pty_crafted_recording_puts_no_osc_or_bel_on_the_terminal(tmp_path: Path) -> None:
    path = _write(tmp_path / "crafted.ipr.gz", crafted_lines(OSC0 + OSC52))
    raw = _pty_run(["replay", str(path)], [b"4", b"2", b"3", b"1"], seconds=7)
    assert b"\x1b[" in raw  # Textual drew something (negative control for the checks below)
    assert b"Traceback" not in raw and b"Error" not in raw, raw[-2000:]
    # Textual's own: OSC 22 (the mouse pointer's shape), ended by BEL.  Nothing else may be OSC or BEL.
    assert re.search(rb"\x1b\](0|52);", raw) is None
    rest = re.sub(rb"\x1b\]22;[a-z-]*\x07", b"", raw)
    assert b"\x1b]" not in rest, rest[rest.find(b"\x1b]") - 40 : rest.find(b"\x1b]") + 40]
    assert b"\x07" not in rest
    assert b"owned" in raw and b"\\x1b]0;owned\\x07" in raw, "the payload is not shown escaped"


def test_pty_crafted_config_puts_no_escape_on_the_terminal(tmp_path: Path) -> None:
    path = tmp_path / "crafted.toml"
    path.write_text('["\\u001b]0;owned\\u0007"]\na = 1\n[[rules]]\nid = "\\u001b]52;c;eA==\\u0007"\nprotocol = 6\n')
    raw = _pty_run(["check-config", str(path)], [], seconds=3)
    assert b"\x1b" not in raw and b"\x07" not in raw, raw
    assert b"\\x1b]0;owned\\x07" in raw
    assert all(c.encode() not in raw for c in RAW_UNSAFE)


def test_the_rule_form_refuses_control_characters_pasted_into_id_or_description() -> None:
    from ironpost_tui.ui.rule_fields import RuleFields, RuleInputError, parse_rule

    with pytest.raises(RuleInputError) as exc:
        parse_rule(RuleFields(id="x\x1b]0;owned\x07", src_ip="198.18.0.9", description="a\u202eb"), now=0.0)
    assert set(exc.value.fields) == {"id", "description"}
    assert "\x1b" not in str(exc.value) and "\u202e" not in str(exc.value)
    ok = parse_rule(RuleFields(id="büro-1", src_ip="198.18.0.9", description="Zugriff für Büro"), now=0.0)
    assert ok.description == "Zugriff für Büro"  # positive control: letters are not control characters


@pytest.mark.parametrize("field", ["src_ip", "dst_ip", "dst_port", "protocol", "expires"])
def test_the_rule_form_quotes_a_huge_paste_in_a_few_words(field: str) -> None:
    """5,000 characters pasted into a field: the error quotes their start, not all of them (the whole paste grew
    the form's dialog past the screen, Save and Cancel out of reach).  The control: a short bad value is quoted
    whole."""
    from ironpost_tui.ui.rule_fields import RuleFields, RuleInputError, parse_rule

    for text, whole in (("x" * 5000, False), ("x" * 12, True)):
        with pytest.raises(RuleInputError) as exc:
            parse_rule(RuleFields(**{"id": "r", "src_ip": "198.18.0.9", field: text}), now=0.0)
        said = exc.value.fields[field]
        assert (text in said) is whole and len(said) < 200, said


def test_the_rule_form_says_a_description_is_too_long_before_saving() -> None:
    """The file's limit (1,024 characters) said in the form, not as a save failing with the file's path and
    line.  The control: 1,024 characters are accepted."""
    from ironpost_tui.ui.rule_fields import RuleFields, RuleInputError, parse_rule

    with pytest.raises(RuleInputError) as exc:
        parse_rule(RuleFields(id="r", src_ip="198.18.0.9", description="d" * 5000), now=0.0)
    assert exc.value.fields == {"description": "at most 1024 characters (5000)"}
    assert parse_rule(RuleFields(id="r", src_ip="198.18.0.9", description="d" * 1024), now=0.0).description


@pytest.mark.parametrize("which", ["events", "top", "capture"])
def test_a_filter_pasted_whole_is_refused_in_one_line(which: str) -> None:
    """A paste into a filter: every event or row is judged by every word, and 10,000 words cost 23 ms an
    event, minutes for the 5,000 kept, with the console frozen (session 28).  More than MAX_WORDS words or
    MAX_TEXT characters is one line saying so; the controls: MAX_WORDS words and MAX_TEXT characters are
    taken."""
    from ironpost_tui.filter_terms import MAX_TEXT, MAX_WORDS
    from ironpost_tui.records.capture_expr import CaptureExpression
    from ironpost_tui.ui.event_filter import EventFilter
    from ironpost_tui.ui.top_filter import TopFilter

    parse = {"events": EventFilter.parse, "top": TopFilter.parse, "capture": CaptureExpression.parse}[which]
    word = "port:53" if which == "capture" else "."  # the capture takes no free words, and no term twice
    for text, said in ((" ".join([word] * 10_000), f"characters long: at most {MAX_TEXT}"),
                       (" ".join(["x"] * (MAX_WORDS + 1)), f"{MAX_WORDS + 1} words: at most {MAX_WORDS}"),
                       ("x" * (MAX_TEXT + 1), f"{MAX_TEXT + 1} characters long")):  # fmt: skip
        with pytest.raises(ValueError) as exc:
            parse(text)
        assert said in str(exc.value) and "\n" not in str(exc.value), str(exc.value)
    if which != "capture":
        assert parse(" ".join(["x"] * MAX_WORDS))
        assert parse("x" * MAX_TEXT)
    else:
        assert parse(f"port:53{' ' * (MAX_TEXT - 7)}") == CaptureExpression(port=53)


def test_the_events_filter_makes_a_rows_text_once_whatever_its_words(monkeypatch: pytest.MonkeyPatch) -> None:
    """Free words are looked for in the row's text, made once per event (it was made again for each word).
    The control: a field term and a word that does not match still make the event fail."""
    from support.ui import event

    from ironpost_tui.ui import event_filter
    from ironpost_tui.ui.event_filter import EventFilter

    made: list[object] = []
    original = event_filter.row_text
    monkeypatch.setattr(event_filter, "row_text", lambda e: made.append(e) or original(e))
    e = event(src="198.51.100.7", dport=22)
    assert EventFilter.parse("198.51 100.7 tcp drop r1 22").matches(e)
    assert len(made) == 1
    assert not EventFilter.parse("198.51 nowhere").matches(e)
    assert not EventFilter.parse("dport:23 198.51").matches(e)
    assert EventFilter.parse("dport:22 198.51").matches(e)


def test_the_events_pane_says_a_pasted_filter_is_too_big_and_keeps_its_own() -> None:
    """Through the pane: Enter on a 20 KB paste in the filter's field says why in the pane's status line, and
    the filter in force stays."""
    import asyncio

    from support.ui import event
    from textual.app import App, ComposeResult
    from textual.widgets import Input

    from ironpost_tui.ui.themes import VARIABLE_DEFAULTS
    from ironpost_tui.ui.widgets.event_table import EventTable

    class PaneApp(App[None]):
        def get_theme_variable_defaults(self) -> dict[str, str]:
            return dict(VARIABLE_DEFAULTS)

        def compose(self) -> ComposeResult:
            yield EventTable(cursor_blink=False)

    async def main() -> None:
        app = PaneApp()
        async with app.run_test(size=(100, 20)) as pilot:
            pane = app.query_one(EventTable)
            pane.add_events([event(src=f"198.51.100.{i}") for i in range(1, 200)])
            field = pane.query_one("#event-filter", Input)
            for text in ("src:198.51.100.7", " ".join(["."] * 10_000)):
                field.focus()
                field.value = text
                await pilot.press("enter")
                await pilot.pause()
            assert pane.problem.startswith("filter not applied: the filter is 19999 characters long"), pane.problem
            assert pane._filter.text == "src:198.51.100.7"  # the control: the first was applied, and stays

    asyncio.run(main())
