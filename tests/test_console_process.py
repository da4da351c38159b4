"""The console and its engine process (engine/remote.py, engine/served.py, engine/wire.py).

What crosses the socket: errors keep their class and exit status (never a class from outside
ironpost_tui), the rule table crosses whole once and then as its changes, events keep their
record's bytes, networks rebuild equal.  End to end (root, a veth lab, tmux): whichever of the
two processes is killed, nothing is left filtering the interface and no process is left behind;
the pid file names the console; a refused configuration says what one process said, with its
exit status."""

from __future__ import annotations

import ipaddress
import json
import os
import random
import signal
import time
from dataclasses import replace
from itertools import islice
from pathlib import Path

import pytest
from support import bpftool, netlab
from support.agents import IRONPOST, cleanup, wait_no_xdp, xdp_progs
from support.tmux import Session, sessions

from ironpost_tui.config.check import ConfigError
from ironpost_tui.engine import wire
from ironpost_tui.engine.feed import RulesHead
from ironpost_tui.errors import ExitStatus, IronpostError
from ironpost_tui.kernel import abi
from ironpost_tui.kernel.record_event import Batch, RecordEvent
from ironpost_tui.model import Action, FilterRule, RuleStatus
from ironpost_tui.rules.control import LockoutRefused

START = 120.0


def crossed(value: object) -> object:
    """``value`` as the other end reads it."""
    import pickle

    return pickle.loads(wire.dumps(value))


# --- errors ---------------------------------------------------------------------------------------
def test_an_error_crosses_with_its_class_title_and_exit_status() -> None:
    exc = crossed(wire.Raised.of(LockoutRefused("would drop your SSH client")))
    assert isinstance(exc, wire.Raised)
    err = exc.error()
    assert type(err) is LockoutRefused  # the rule editor offers to force on this class only
    assert (err.message, err.title, err.exit_status) == (
        "would drop your SSH client",
        "Anti-lockout",
        LockoutRefused.exit_status,
    )
    cfg = wire.Raised.of(ConfigError("line 3: not a rule")).error()
    assert type(cfg) is ConfigError and cfg.exit_status == ExitStatus.CONFIG_INVALID


def test_an_error_names_no_class_from_outside_ironpost_tui() -> None:
    for module, name in (("os", "system"), ("subprocess", "Popen"), ("ironpost_tui.errors", "ExitStatus"),
                         ("ironpost_tui.errors", "IronpostError.__init__"), ("ironpost_tui.nope", "X")):  # fmt: skip
        err = wire.Raised(module, name, "m", "t", 99).error()
        assert type(err) is IronpostError, (module, name)
        assert err.exit_status == ExitStatus.ERROR  # 99 is no exit status of ours
    plain = wire.Raised.of(ValueError("boom")).error()  # no IronpostError: a plain Exception (a poll is retried)
    assert type(plain) is wire.EngineFault and not isinstance(plain, IronpostError) and str(plain) == "ValueError: boom"
    # the positive control: the same path gives the class when it is one of ours
    assert type(wire.Raised("ironpost_tui.rules.control", "LockoutRefused", "m", "t", 1).error()) is LockoutRefused


# --- the rule table -------------------------------------------------------------------------------
def _status(i: int) -> RuleStatus:
    net = ipaddress.ip_network(f"198.18.{i // 256 % 256}.{i % 256}/32" if i % 3 else f"2001:db8::{i:x}/128")
    return RuleStatus(FilterRule(id=f"r{i}", src_ip=net), "SRC4" if net.version == 4 else "SRC6", i, None, i)


@pytest.mark.parametrize("seed", range(5))
def test_the_rule_table_crosses_whole_then_as_its_changes(seed: int) -> None:
    rng = random.Random(seed)
    sender, receiver = wire.TableSender(), wire.TableReceiver()
    table = tuple(_status(i) for i in range(500))
    first = sender.encode(table)
    assert first is table  # whole, the first time
    got = receiver.decode(crossed(first))  # type: ignore[arg-type]
    assert got == table
    n = 500
    for _ in range(30):
        rows = list(table)
        for _ in range(rng.randrange(0, 6)):  # hits counted, rules added and removed, order moved
            what = rng.random()
            if what < 0.4 and rows:
                k = rng.randrange(len(rows))
                rows[k] = RuleStatus(rows[k].rule, rows[k].map_name, rows[k].hits + 1, time.time(), rows[k].slot)
            elif what < 0.7:
                rows.insert(rng.randrange(len(rows) + 1), _status(n))
                n += 1
            elif rows:
                del rows[rng.randrange(len(rows))]
        new = tuple(rows) if rows != list(table) else table
        sent = sender.encode(new)
        if isinstance(sent, wire.TablePatch):  # the same rules in the same places: the changed statuses alone
            assert 1 <= len(sent.changes) <= 6 and len(new) == len(table)
        else:
            assert isinstance(sent, wire.TableChange)
            assert sum(not isinstance(x, int) for x in sent.items or ()) <= 6  # only what changed crosses as a status
        before = got
        got = receiver.decode(crossed(sent))  # type: ignore[arg-type]
        assert got == new
        if new is table:
            assert got is before  # nothing changed: the very tuple the console has
        table = new
    assert receiver.decode(None) is None and sender.encode(None) is None


def test_an_empty_table_crosses_as_empty_and_unchanged_as_the_same() -> None:
    """After a panic the table is empty: the console must not keep showing the rules it had."""
    sender, receiver = wire.TableSender(), wire.TableReceiver()
    table = tuple(_status(i) for i in range(20))
    shown = receiver.decode(crossed(sender.encode(table)))  # type: ignore[arg-type]
    assert shown == table
    assert receiver.decode(crossed(sender.encode(table))) is shown  # type: ignore[arg-type]  # unchanged
    assert receiver.decode(crossed(sender.encode(()))) == ()  # type: ignore[arg-type]  # emptied
    assert receiver.decode(crossed(sender.encode(table))) == table  # type: ignore[arg-type]  # and back


def test_the_same_table_again_is_sent_as_unchanged_without_counting_its_rows_again() -> None:
    """An idle second publishes the table the snapshot kept: the positions of its 10,000 rows are the ones
    already known (making them again was most of what the sender cost an idle console); a table of the
    same rows in new objects is a change, with its positions made anew (the control)."""
    sender = wire.TableSender(head_rows=20_000)
    table = tuple(_status(i) for i in range(10_000))
    assert sender.encode(table) is table
    assert sender.encode(table) == wire.TableChange(None) and sender._at is None  # no position counted
    again = tuple(replace(s) for s in table)
    change = sender.encode(again)
    assert isinstance(change, wire.TableChange) and change.items == again


def test_a_few_statuses_changed_in_place_cross_alone_and_anything_else_as_positions() -> None:
    """A flood's second: one rule's hits changed, the rules the same and in the same places.  Only that
    status crosses, with its position (not 10,000 positions).  The controls: a rule replaced by another in
    the same place, a reorder, and most statuses changed cross as positions and statuses, and every one
    reads back as the table sent."""
    sender, receiver = wire.TableSender(head_rows=20_000), wire.TableReceiver()
    table = tuple(_status(i) for i in range(10_000))
    assert receiver.decode(crossed(sender.encode(table))) == table  # type: ignore[arg-type]
    hit = list(table)
    hit[7_321] = replace(table[7_321], hits=table[7_321].hits + 5)
    sent = crossed(sender.encode(tuple(hit)))
    assert sent == wire.TablePatch(((7_321, hit[7_321]),))
    got = receiver.decode(sent)  # type: ignore[arg-type]
    assert got == tuple(hit) and got[7_321].hits == table[7_321].hits + 5  # type: ignore[index,union-attr]
    other = list(hit)
    other[5] = _status(50_000)  # another rule in rule 5's place
    sent = crossed(sender.encode(tuple(other)))
    assert isinstance(sent, wire.TableChange)
    assert receiver.decode(sent) == tuple(other)  # type: ignore[arg-type]
    swapped = list(other)
    swapped[0], swapped[1] = swapped[1], swapped[0]
    sent = crossed(sender.encode(tuple(swapped)))
    assert isinstance(sent, wire.TableChange)
    assert receiver.decode(sent) == tuple(swapped)  # type: ignore[arg-type]
    assert sender.encode(tuple(swapped)) == wire.TableChange(None)  # the same statuses in a new tuple: unchanged
    assert receiver.decode(wire.TableChange(None)) == tuple(swapped)
    most = tuple(replace(s, hits=s.hits + 1) if i % 4 else s for i, s in enumerate(swapped))
    sent = crossed(sender.encode(most))
    assert isinstance(sent, wire.TableChange)
    assert receiver.decode(sent) == most  # type: ignore[arg-type]


def test_a_change_read_against_another_table_is_not_the_table() -> None:
    """The negative control: positions mean the last table sent; read against another one, they give
    other rules (what the encoding relies on: one sender and one receiver, in order, per console)."""
    sender = wire.TableSender()
    a = tuple(_status(i) for i in range(10))
    sender.encode(a)
    change = sender.encode(a[1:] + (_status(99),))
    other = wire.TableReceiver()
    other.decode(tuple(_status(i) for i in range(100, 110)))
    assert other.decode(change) != a[1:] + (_status(99),)  # type: ignore[arg-type]


def _mixed(n: int) -> tuple[RuleStatus, ...]:
    """``n`` statuses: every third a drop rule, every other one in BLOCKLIST."""
    return tuple(
        replace(
            _status(i),
            rule=replace(_status(i).rule, action=Action.DROP if i % 3 == 0 else Action.MONITOR),
            map_name="BLOCKLIST" if i % 2 else "SRC4",
        )
        for i in range(n)
    )


def test_a_long_first_table_crosses_as_its_head_and_the_whole_follows_at_the_next_poll() -> None:
    """The first attached frame waits for the rows a screen shows and the counts, not for the whole table:
    the whole goes at the next poll even when the table has not changed since (the engine's poll then
    brings no table)."""
    sender, receiver = wire.TableSender(head_rows=50), wire.TableReceiver()
    table = _mixed(200)
    first = crossed(sender.encode(table))
    assert isinstance(first, RulesHead)
    assert first.rows == table[:50] and first.total == 200
    assert first.drops == sum(1 for s in table if s.rule.action is Action.DROP) == 67
    assert first.blocklist == sum(1 for s in table if s.map_name == "BLOCKLIST") == 100
    assert receiver.decode(first) is first  # type: ignore[arg-type]
    rest = crossed(sender.encode(None))  # the poll after: the table unchanged, so the engine sent none
    assert isinstance(rest, wire.TableChange) and rest.items is not None
    assert rest.items[:50] == tuple(range(50))  # the head's rows as their positions: only the rest crosses
    assert receiver.decode(rest) == table  # type: ignore[arg-type]
    assert sender.encode(None) is None  # nothing owed any more
    # changed between the head and the next poll (a rule expired): the new table, whole
    sender, receiver = wire.TableSender(head_rows=50), wire.TableReceiver()
    receiver.decode(crossed(sender.encode(table)))  # type: ignore[arg-type]
    changed = table[:10] + table[11:]
    assert receiver.decode(crossed(sender.encode(changed))) == changed  # type: ignore[arg-type]
    assert sender.encode(None) is None  # the head's table is owed no more: the new one went
    # emptied between the head and the next poll (a panic from the command line): empty, not the head's rows
    sender, receiver = wire.TableSender(head_rows=50), wire.TableReceiver()
    receiver.decode(crossed(sender.encode(table)))  # type: ignore[arg-type]
    assert receiver.decode(crossed(sender.encode(()))) == ()  # type: ignore[arg-type]
    assert sender.encode(None) is None
    # the control: a table no longer than the head crosses whole, with nothing owed
    short, fifty = wire.TableSender(head_rows=50), table[:50]
    assert short.encode(fifty) is fifty and short.encode(None) is None


def test_the_first_of_10000_rules_crosses_in_a_fraction_of_the_whole() -> None:
    table = _mixed(10_000)
    head = wire.TableSender().encode(table)
    assert isinstance(head, RulesHead) and len(head.rows) == wire.HEAD_ROWS and head.total == 10_000
    assert len(wire.dumps(head)) * 10 < len(wire.dumps(table))


# --- events and networks ----------------------------------------------------------------------------
def _records(n: int) -> tuple[tuple[RecordEvent, ...], Batch]:
    cache = {i.to_bytes(16, "big"): ipaddress.IPv4Address(i) for i in range(4096)}  # a full address cache
    batch = Batch(1_700_000_000.0, {7: "rule-7"}, cache, {})  # type: ignore[arg-type]
    events = []
    for i in range(n):
        src = bytes([198, 18, i // 256 % 256, i % 256]) + bytes(12)
        body = abi.PACKET_EVENT.pack(i * 1000, src, bytes([198, 18, 0, 1]) + bytes(12), 1000 + i, 53, 60, 7,
                                     abi.FAMILY_V4, 17, 0, abi.VERDICT_DROP)  # fmt: skip
        events.append(tuple.__new__(RecordEvent, (body, batch)))
    return tuple(events), batch


def test_events_cross_as_their_records_and_read_the_same() -> None:
    events, batch = _records(300)
    data = wire.dumps(events)
    assert len(data) < 300 * (abi.PACKET_EVENT.size + 40)  # the records, not the batch's 4,096 cached addresses
    back = crossed(events)
    assert isinstance(back, tuple) and all(type(e) is RecordEvent for e in back)
    assert [e.decoded() for e in back] == [e.decoded() for e in events]
    assert back[5].rule_id == "rule-7" and str(back[5].src) == "198.18.0.5"
    assert len({id(tuple.__getitem__(e, 1)) for e in back}) == 1  # one batch for all, as sent


def test_networks_rebuild_equal() -> None:
    for text in ("198.18.0.0/15", "198.18.3.4/32", "198.18.3.4/31", "0.0.0.0/0", "2001:db8::/32",
                 "2001:db8::1/128", "2001:db8::/127"):  # fmt: skip
        net = ipaddress.ip_network(text)
        back = crossed(net)
        assert back == net and type(back) is type(net)
        assert list(islice(back.hosts(), 3)) == list(islice(net.hosts(), 3))  # /31, /32, /127: special in hosts()


# --- frames -------------------------------------------------------------------------------------------
def test_a_frame_too_long_is_refused_and_a_cut_one_is_the_end() -> None:
    import socket
    import struct

    for what in ("whole", "too long", "cut head", "cut body"):
        a, b = socket.socketpair()
        try:
            if what == "whole":  # the positive control
                wire.send(a, ("x", 1))
            elif what == "too long":
                a.sendall(struct.pack("!I", wire.FRAME_MAX + 1) + b"\0" * 64)
            elif what == "cut head":
                a.sendall(b"\0\0")
            else:
                a.sendall(struct.pack("!I", 100) + b"\x80" * 10)
            if what != "whole":
                a.shutdown(socket.SHUT_WR)
            if what == "too long":
                with pytest.raises(IronpostError, match="frame of"):
                    wire.recv(b)
            else:
                assert wire.recv(b) == (("x", 1) if what == "whole" else None), what
        finally:
            a.close()
            b.close()


# --- the engine process's end ---------------------------------------------------------------------
def test_a_close_before_the_start_starts_nothing_and_is_answered() -> None:
    import socket

    from ironpost_tui.engine.served import Served

    for what in ("close", "gone", "nothing"):
        ours, theirs = socket.socketpair()
        served = Served(theirs, os.getpid())
        if what == "close":
            wire.send(ours, (wire.Call.CLOSE, ()))
        elif what == "gone":
            ours.close()
        assert served.pending() is (what != "nothing"), what
        if what != "nothing":
            served.refuse_start()
        if what == "close":
            said, value = wire.recv(ours)
            assert (said, value) == (wire.Said.RETURNED, None)
        for s in (ours, theirs):
            s.close()


def test_the_console_process_hands_over_within_the_short_switch_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """The engine's answers reach the console's interface through two threads (the reader, the poll
    worker) while it renders: the console's process runs at engine/switching.py's interval from its
    fork on, not Python's 5 ms."""
    import argparse
    import sys

    from ironpost_tui import cli
    from ironpost_tui.engine import remote, switching

    class Stopped:  # the engine process's stand-in: its configuration refused, so the console stops
        def configured(self) -> None:
            raise IronpostError("refused")

        def close(self) -> None:
            pass

    monkeypatch.setattr(remote, "spawn", lambda run: Stopped())
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        assert sys.getswitchinterval() == pytest.approx(0.005)  # the control: Python's default here
        with pytest.raises(IronpostError, match="refused"):
            cli._run_two_processes(argparse.Namespace())
        assert sys.getswitchinterval() == pytest.approx(switching.CONSOLE_SWITCH_INTERVAL)
    finally:
        sys.setswitchinterval(old)


def test_a_forwarded_record_keeps_its_extras_and_escapes_its_traceback() -> None:
    import logging

    from ironpost_tui.metrics.log_format import JsonFormatter, TextFormatter

    try:
        raise ValueError("evil \x1b[2J name")
    except ValueError:
        import sys

        record = logging.LogRecord("ironpost.x", logging.ERROR, __file__, 1, "failed %s", ("here",), sys.exc_info())
    record.audit = {"action": "add", "rule": "r1"}
    record.thing = object()  # pickles, but is no plain value: crosses as itself or as text, never breaks the record
    attrs = crossed(wire.record_attrs(record))
    back = logging.makeLogRecord(attrs)  # type: ignore[arg-type]
    assert back.getMessage() == "failed here" and back.levelno == logging.ERROR
    assert "\x1b" not in back.exc_text and "ValueError" in back.exc_text  # escaped, as the text format escapes it
    assert back.audit == {"action": "add", "rule": "r1"}
    assert "\x1b" not in TextFormatter().format(back)
    line = JsonFormatter().format(back)
    assert '"exception"' in line and '"action":"add"' in line
    # the negative control: the record as it was, unescaped, would carry the escape
    assert "\x1b" in logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]


def test_what_the_engine_process_prints_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    from ironpost_tui.engine.served import _LogWriter

    w = _LogWriter(30)
    with caplog.at_level(10):
        w.write("one line\npart")
        w.write("ial\n\n")
    assert [r.getMessage() for r in caplog.records] == ["one line", "partial"]


# --- end to end: two processes, a real kernel ---------------------------------------------------------
def _children(pid: int) -> list[int]:
    try:
        text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    except OSError:
        return []
    return [int(p) for p in text.split()]


def _gone(pid: int, within: float) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:  # a zombie of a dead parent is reaped by init soon; counted as gone
            if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.05)
    return False


@pytest.fixture
def two(lab: netlab.Lab, tmp_path: Path):  # type: ignore[no-untyped-def]
    cfg = tmp_path / "ironpost.toml"
    pid_path = tmp_path / "run" / "ironpost.pid"
    pid_path.parent.mkdir()
    cfg.write_text(f'[general]\npid_file = "{pid_path}"\n\n[ebpf]\nxdp_mode = "native"\n')
    argv = [*IRONPOST, lab.host_if, "--config", str(cfg), "--state-dir", str(tmp_path / "state"),
            "--audit-log", str(tmp_path / "audit.log")]  # fmt: skip
    try:
        with sessions() as made:
            yield lab, made, argv, pid_path
    finally:
        cleanup(lab.host_if)


def _both_ended(lab: netlab.Lab, s: Session, engine: int, since: float, detached_within: float) -> None:
    """The console exited, nothing is attached to the lab's interface, its engine process is gone."""
    assert s.wait_exit(10), s.capture()
    wait_no_xdp(lab.ifindex, within=detached_within, since=since)
    assert _gone(engine, 5), "the engine process outlived the console"


def _attached(made: list[Session], argv: list[str]) -> tuple[Session, int]:
    s = Session(argv, 160, 48)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
    kids = _children(s.pid)
    assert len(kids) == 1, f"the console has {kids} child processes, not its one engine process"
    return s, kids[0]


@pytest.mark.root
def test_a_long_table_shows_its_counts_at_attached_and_its_last_rule_once_whole(two) -> None:  # type: ignore[no-untyped-def]
    """Through the real engine process: a table longer than its head (wire.HEAD_ROWS rows) is counted whole
    on the attached frame, and its last rule, 100 rows past the head, reaches the rules pane (the head
    alone ends at r499; a console that dropped the rows past it fails here)."""
    lab, made, argv, _pid_path = two
    n = wire.HEAD_ROWS + 100
    cfg = Path(argv[argv.index("--config") + 1])
    rules = "".join(
        f'\n[[ebpf.rules]]\nid = "r{i}"\naction = "monitor"\nsrc_ip = "198.19.{200 + i // 256}.{i % 256}"\n'
        for i in range(n)
    )
    cfg.write_text(cfg.read_text() + rules)
    s, _engine = _attached(made, argv)
    s.wait_screen(lambda t: f"{n} rules (0 drop)" in t, 10, "the whole table's count")
    s.keys("4")

    def at_the_end(screen: str) -> bool:  # End again until the table's end is its last rule's
        if f"r{n - 1} " in screen:
            return True
        s.keys("End")
        return False

    s.wait_screen(at_the_end, 10, "the table's last rule, past the head")


@pytest.mark.root
def test_one_process_keeps_the_reloads_and_panics_asked_while_it_starts(two) -> None:  # type: ignore[no-untyped-def]
    """``--one-process``: one SIGUSR2 the moment the pid file names the console, then SIGUSR1 every 2 ms until it
    says attached.  The console starts, runs the panic asked once the start is done (the file's drop rule cleared
    from the kernel) and keeps running.  Until session 28 the pid file was written before the console's handlers
    were installed, and their default action ended it; and a panic asked before the engine's start began ran
    first, failed on the engine not started, and the start then put the rule in."""
    lab, made, argv, pid_path = two
    cfg = Path(argv[argv.index("--config") + 1])
    cfg.write_text(cfg.read_text() + '\n[[ebpf.rules]]\nid = "feed-1"\nsrc_ip = "198.19.254.7"\naction = "drop"\n')
    s = Session([*argv, "--one-process"], 160, 48)
    made.append(s)
    deadline = time.monotonic() + START
    while not pid_path.exists():
        assert time.monotonic() < deadline, s.capture()
        time.sleep(0.0005)
    pid, sent = int(pid_path.read_text()), 0
    os.kill(pid, signal.SIGUSR2)  # one panic, asked as the start begins
    while time.monotonic() < deadline and "attached" not in s.capture():
        os.kill(pid, signal.SIGUSR1)
        sent += 1
        time.sleep(0.002)
    s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
    s.wait_screen(lambda t: "0 rules (0 drop)" in t, 10, "the panic's empty table")
    audit = [json.loads(line) for line in Path(argv[argv.index("--audit-log") + 1]).read_text().splitlines()]
    changes = [(a["change"], a.get("via")) for a in audit if "feed-1" in json.dumps(a)]
    assert changes == [("load", "config"), ("panic-delete", "signal")], audit  # put in by the start, then cleared
    progs = xdp_progs(lab.ifindex)
    assert len(progs) == 1, progs
    blocklist = bpftool.prog_maps(progs[0][1], expect=("BLOCKLIST",))["BLOCKLIST"]
    assert json.loads(bpftool.map_dump(blocklist)) == []
    assert os.path.exists(f"/proc/{pid}"), "the console ended"
    s.keys("q")
    if not s.wait_exit(5):
        s.keys("y")  # the quit's question (filtering stops): yes
    assert s.wait_exit(10), s.capture()
    wait_no_xdp(lab.ifindex, within=2.0)


@pytest.mark.root
def test_the_pid_file_names_the_console_and_quit_leaves_nothing(two) -> None:  # type: ignore[no-untyped-def]
    lab, made, argv, pid_path = two
    s, engine = _attached(made, argv)
    assert int(pid_path.read_text()) == s.pid  # the process the operator signals, not its engine's
    assert xdp_progs(lab.ifindex)
    t0 = time.monotonic()
    s.keys("q")
    _both_ended(lab, s, engine, t0, 1.0), "the engine process outlived the console"
    assert not pid_path.exists()


@pytest.mark.root
def test_a_console_killed_leaves_no_program_and_no_engine_process(two) -> None:  # type: ignore[no-untyped-def]
    lab, made, argv, _ = two
    s, engine = _attached(made, argv)
    assert xdp_progs(lab.ifindex)
    t0 = time.monotonic()
    os.kill(s.pid, signal.SIGKILL)  # no handler runs: the engine process sees its socket close
    wait_no_xdp(lab.ifindex, within=10.0, since=t0)
    assert _gone(engine, 10), "the engine process outlived a killed console"


@pytest.mark.root
def test_an_engine_process_killed_is_said_and_the_console_exits(two) -> None:  # type: ignore[no-untyped-def]
    lab, made, argv, _ = two
    s, engine = _attached(made, argv)
    t0 = time.monotonic()
    os.kill(engine, signal.SIGKILL)
    wait_no_xdp(lab.ifindex, within=5.0, since=t0)  # its link went with it
    s.wait_screen(lambda t: "Engine ended" in t and "SIGKILL" in t, 15, "the console saying its engine ended")
    s.keys("Enter")
    assert s.wait_exit(10), s.capture()


@pytest.mark.root
def test_the_engine_process_ignores_the_terminals_signals(two) -> None:  # type: ignore[no-untyped-def]
    """SIGHUP to the whole group (a dropped SSH session): the console detaches, the engine process
    waits for it to close, then exits; SIGINT to the engine alone changes nothing."""
    lab, made, argv, _ = two
    s, engine = _attached(made, argv)
    os.kill(engine, signal.SIGINT)
    time.sleep(0.5)
    assert not _gone(engine, 0.2) and xdp_progs(lab.ifindex), "SIGINT to the engine process stopped it"
    t0 = time.monotonic()
    os.killpg(os.getpgid(s.pid), signal.SIGHUP)
    _both_ended(lab, s, engine, t0, 2.0)


@pytest.mark.root
def test_sigterm_to_the_engine_process_stops_the_console_as_its_own(two) -> None:  # type: ignore[no-untyped-def]
    """``kill`` of the pid the interface's lock names: the console detaches and exits, then its engine."""
    lab, made, argv, _ = two
    s, engine = _attached(made, argv)
    t0 = time.monotonic()
    os.kill(engine, signal.SIGTERM)
    _both_ended(lab, s, engine, t0, 2.0)


def _threads(pid: int) -> int:
    return len(list(Path(f"/proc/{pid}/task").iterdir()))


@pytest.mark.root
def test_a_sigcont_it_did_not_stop_for_changes_nothing(two) -> None:  # type: ignore[no-untyped-def]
    """ui/driver.py: Textual's driver resumed on any SIGCONT (a hangup sends one), starting a second output
    thread; the console's does not: no thread more, and it still answers its keys (q quits)."""
    lab, made, argv, _ = two
    s, engine = _attached(made, argv)
    time.sleep(1.0)  # its workers started
    before = _threads(s.pid)
    os.kill(s.pid, signal.SIGCONT)
    time.sleep(0.5)
    assert _threads(s.pid) == before, "another thread (a second output thread) after a stray SIGCONT"
    t0 = time.monotonic()
    s.keys("q")
    _both_ended(lab, s, engine, t0, 1.0)


@pytest.mark.root
def test_an_engine_process_that_stops_answering_is_said_and_q_still_ends_it(two) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP to the engine process (stuck as it could be in the kernel or a lock): its last figures must not
    stay under "attached", as if the traffic had stopped.  Within seconds the status bar says "no answer";
    SIGCONT: attached again (the control), and said so.  Stopped again, q: the console ends within seconds
    (it used to wait for ever, asyncio waiting for the poll worker's thread), saying why it did not wait, and
    the engine process, continued, detaches its program and exits."""
    from ironpost_tui.engine import remote

    lab, made, argv, _ = two
    s, engine = _attached(made, argv)

    def top(screen: str) -> str:
        return screen.splitlines()[0] if screen else ""

    try:
        assert "attached" in top(s.capture())
        os.kill(engine, signal.SIGSTOP)
        screen = s.wait_screen(lambda t: "no answer" in top(t), 20, "the status bar saying the engine is silent")
        assert "attached" not in top(screen) and "engine not answering" in screen
        os.kill(engine, signal.SIGCONT)
        screen = s.wait_screen(lambda t: "attached" in top(t), 20, "attached again")
        assert "answers again" in screen
        os.kill(engine, signal.SIGSTOP)
        time.sleep(0.5)  # q comes before the console has seen any silence: the worst case
        t0 = time.monotonic()
        s.keys("q")
        assert s.wait_exit(30), s.capture()
        took = time.monotonic() - t0
        assert took < remote.SILENT_SECS + remote.SILENT_CLOSE_SECS + 5, took
        assert not xdp_progs(lab.ifindex), "the console ended with its program still attached"
        assert _gone(engine, 5), "the stopped engine process outlived the console"
        said = s.scrollback(60)
        # Sent SIGCONT once its socket was closed, the engine process closed the engine itself: not killed.
        assert "not waiting for it to close" in said and "killing it" not in said, said
    finally:
        try:
            os.kill(engine, signal.SIGCONT)  # a failed test leaves no stopped process: it sees its console gone
        except ProcessLookupError:
            pass


@pytest.mark.root
def test_a_link_detached_by_another_process_is_said_and_ends_the_console_with_17(two) -> None:  # type: ignore[no-untyped-def]
    """`bpftool link detach` by another root process: the interface is not filtered any more, and the
    console said attached over counters that stopped (read as traffic that stopped).  It says so on its
    error screen and exits 17, its engine process with it.  (Under a shell that says the exit status:
    tmux reports a pane's own only once it has reaped it, and here it did not always.)"""
    import subprocess

    from ironpost_tui.kernel.xdp_link import _xdp_links

    lab, made, argv, _ = two
    s = Session(["sh", "-c", '"$@"; echo "exited with $?"', "sh", *argv], 160, 48)
    made.append(s)
    s.wait_screen(lambda t: "attached" in t, START, "the status bar says attached")
    [console] = _children(s.pid)
    [engine] = _children(console)
    [(_mode, prog)] = xdp_progs(lab.ifindex)
    subprocess.run(["bpftool", "link", "detach", "id", str(_xdp_links(lab.ifindex)[prog])], check=True)
    screen = s.wait_screen(lambda t: "Program detached" in t, 15, "the console saying its program was detached")
    assert "by another process" in screen and "not filtered" in screen, screen
    s.keys("Enter")
    s.wait_screen(lambda t: "exited with" in t, 15, "the console's end")
    assert "exited with 17" in s.capture(), s.capture()
    assert _gone(engine, 5), "the engine process outlived the console"


@pytest.mark.root
def test_a_terminal_that_goes_detaches_and_ends_both_processes(two) -> None:  # type: ignore[no-untyped-def]
    """The session killed (SIGHUP, then SIGCONT, to the foreground group; the terminal gone): the console
    detaches and exits, its engine with it.  Three times: before ui/driver.py a quarter of these hung."""
    from support.tmux import tmux

    lab, made, argv, _ = two
    for _ in range(3):
        s, engine = _attached(made, argv)
        t0 = time.monotonic()
        tmux("kill-session", "-t", s.name)
        _both_ended(lab, s, engine, t0, 5.0)


@pytest.mark.root
def test_a_refused_configuration_is_said_as_one_process_says_it(lab: netlab.Lab, tmp_path: Path) -> None:
    from support.agents import run

    cfg = tmp_path / "bad.toml"
    cfg.write_text('[[rules]]\nid = "x"\nsrc_ip = "not an address"\n')
    outs = []
    for extra in ([], ["--one-process"]):
        proc = run(lab.host_if, "--config", str(cfg), "--state-dir", str(tmp_path / "s"),
                   "--audit-log", str(tmp_path / "a.log"), *extra, timeout=60)  # fmt: skip
        outs.append((proc.returncode, proc.stderr.strip()))
    assert outs[0] == outs[1], outs
    assert outs[0][0] == ExitStatus.CONFIG_INVALID and "not an address" in outs[0][1], outs
    assert not xdp_progs(lab.ifindex)


# --- an engine process that stops answering ---------------------------------------------------------
class _Engine:
    """The engine process's end of the socket, in a thread: records each call and answers those that
    ``answering`` allows when it is set (a close: answered, then the stand-in process ends by SIGTERM)."""

    def __init__(self, sock: object, child: object, answering: object, polled: object = None) -> None:
        import threading

        self.sock, self.child, self.answering, self.polled = sock, child, answering, polled
        self.calls: list[wire.Call] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        from ironpost_tui.engine.feed import OnExit, SourceInfo, Update

        while (request := wire.recv(self.sock)) is not None:  # type: ignore[arg-type]
            call = wire.Call(request[0])
            self.calls.append(call)
            if not self.answering.wait(10):  # type: ignore[attr-defined]
                continue
            info = SourceInfo("lab0", "native", True, 0.0, "", 10, on_exit=OnExit.REMOVE)
            value = {wire.Call.POLL: Update(), wire.Call.START: info}.get(call)
            if call == wire.Call.POLL and self.polled is not None:
                value = self.polled()  # type: ignore[operator]
            try:
                wire.send(self.sock, (wire.Said.RETURNED, value))  # type: ignore[arg-type]
            except OSError:  # the console's end closed (an abandoned call answered late)
                return
            if call == wire.Call.CLOSE:
                self.child.terminate()  # type: ignore[attr-defined]
                return


def _remote(answering: object, polled: object = None):  # type: ignore[no-untyped-def]
    import socket
    import subprocess
    import sys

    from ironpost_tui.engine import remote

    ours, theirs = socket.socketpair()
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    return remote.RemoteSource(ours, child.pid), _Engine(theirs, child, answering, polled), child, theirs


def _end(src, child, theirs) -> None:  # type: ignore[no-untyped-def]
    if src._status is None:  # not reaped by the source: still ours to end
        child.kill()
        child.wait()
    theirs.close()


def _budgets(monkeypatch: pytest.MonkeyPatch, **secs: float) -> None:
    """remote's budgets shortened for a test: poll (SILENT_SECS), edit, start, close."""
    from ironpost_tui.engine import remote

    names = {"poll": "SILENT_SECS", "edit": "EDIT_SILENT_SECS", "start": "START_SILENT_SECS",
             "close": "SILENT_CLOSE_SECS"}  # fmt: skip
    for key, value in secs.items():
        monkeypatch.setattr(remote, names[key], value)


def _until(cond, what: str, within: float = 10.0) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + within
    while not cond():
        assert time.monotonic() < end, what
        time.sleep(0.01)


def _in_thread(fn, *args):  # type: ignore[no-untyped-def]
    """Run ``fn`` in a thread; returns the thread and a list that gets its result or what it raised."""
    import threading

    out: list[object] = []

    def run() -> None:
        try:
            out.append(fn(*args))
        except BaseException as exc:  # noqa: BLE001 - what the worker would get
            out.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return thread, out


def test_a_call_not_answered_is_abandoned_on_the_way_out_and_the_close_neither_asks_nor_waits(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A stopped or stuck engine process: the console's poll worker would wait for its answer for ever, and
    asyncio waits for that thread before the console can end (q did nothing).  end_wait abandons the call
    once it has waited its budget (its thread gets EngineGone); close then does not ask (the engine serves
    one call at a time), sends SIGCONT and kills the process once SILENT_CLOSE_SECS have passed."""
    import threading

    from ironpost_tui.engine import remote

    _budgets(monkeypatch, poll=0.3, close=0.5)
    silent = threading.Event()  # never set: nothing is answered
    src, engine, child, theirs = _remote(silent)
    try:
        poller, raised = _in_thread(src.poll, 0.1)
        _until(lambda: engine.calls, "the poll reached the engine")
        assert src.silent_for(time.monotonic()) == 0.0  # within its budget: not silent yet
        _until(lambda: src.silent_for(time.monotonic()) > 0, "silent past the poll's budget")
        src.end_wait()
        poller.join(5)
        assert not poller.is_alive() and isinstance(raised[0], remote.EngineGone), raised
        assert "did not answer" in raised[0].message
        t0 = time.monotonic()
        src.close()
        assert time.monotonic() - t0 < 5  # not CLOSE_WAIT_SECS (30) twice
        assert engine.calls == [wire.Call.POLL]  # no close asked
        assert src._status is not None and os.WTERMSIG(src._status) == signal.SIGKILL
    finally:
        silent.set()
        _end(src, child, theirs)


def test_a_call_queued_behind_the_silent_one_is_never_sent_and_keep_is_refused(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On the way out, a call waiting behind the silent one (an edit, the quit question's keep) would take
    the lock once the silent call is abandoned, ask, and wait for ever in its turn: it is refused unsent.
    And keeping the program enforcing is refused at once by a silent engine process (the quit question
    waits for it)."""
    import threading

    from ironpost_tui.engine import remote

    _budgets(monkeypatch, poll=0.3, close=0.5)
    silent = threading.Event()
    src, engine, child, theirs = _remote(silent)
    try:
        poller, _ = _in_thread(src.poll, 0.1)
        _until(lambda: src.silent_for(time.monotonic()) > 0, "silent past the poll's budget")
        with pytest.raises(remote.EngineGone, match="cannot be kept"):
            src.keep_enforcing()
        rule = FilterRule("r1", Action.DROP, src_ip=ipaddress.ip_network("198.51.100.1/32"))
        editor, edited = _in_thread(src.add_rule, rule)
        time.sleep(0.1)
        assert editor.is_alive()  # waiting behind the poll
        src.end_wait()
        poller.join(5)
        editor.join(5)
        assert not editor.is_alive() and isinstance(edited[0], remote.EngineGone), edited
        assert "leaving" in edited[0].message
        assert engine.calls == [wire.Call.POLL]  # neither the keep nor the edit was asked
        src.close()
    finally:
        silent.set()
        _end(src, child, theirs)


def test_the_console_reads_a_long_first_table_as_its_head_then_the_whole_at_the_next_poll() -> None:
    """RemoteSource.poll, answered as the engine process answers (engine/served.py: LiveSource's update with
    its table encoded by a TableSender): the first poll is an update with the head (no table), the next the
    whole table, though LiveSource sent it once, and then nothing."""
    import threading

    from ironpost_tui.engine.feed import Update

    table = _mixed(wire.HEAD_ROWS + 100)
    sender, tables = wire.TableSender(), [table]

    def polled() -> Update:
        return Update(rules=sender.encode(tables.pop() if tables else None))  # type: ignore[arg-type]

    answering = threading.Event()
    answering.set()
    src, _engine, child, theirs = _remote(answering, polled)
    try:
        first = src.poll(0.0)
        assert first.rules is None and isinstance(first.rules_head, RulesHead)
        assert first.rules_head.rows == table[: wire.HEAD_ROWS] and first.rules_head.total == len(table)
        whole = src.poll(0.0)
        assert whole.rules == table and whole.rules_head is None
        again = src.poll(0.0)
        assert again.rules is None and again.rules_head is None
        src.close()
    finally:
        _end(src, child, theirs)


def test_a_call_answered_in_time_is_not_abandoned_and_the_close_asks_and_waits() -> None:
    """The control: an engine that answers; end_wait with nothing in flight returns at once, the close is
    asked and answered, and the process ends by itself (SIGTERM from the stand-in), not killed."""
    import threading

    answering = threading.Event()
    answering.set()
    src, engine, child, theirs = _remote(answering)
    try:
        src.poll(0.1)
        assert src.keep_enforcing() is None  # the stand-in's answer: asked and answered
        t0 = time.monotonic()
        src.end_wait()
        assert time.monotonic() - t0 < 1.0
        src.close()
        assert engine.calls == [wire.Call.POLL, wire.Call.KEEP_ENFORCING, wire.Call.CLOSE]
        assert src._status is not None and os.WTERMSIG(src._status) == signal.SIGTERM
    finally:
        _end(src, child, theirs)


def test_an_edit_has_a_longer_budget_than_a_poll(monkeypatch: pytest.MonkeyPatch) -> None:
    """An edit with 10,000 rules saves the file and checks the anti-lockout (seconds): while it is in flight
    the poll waits behind it, and the engine process is not silent until the edit's own budget has passed."""
    import threading

    _budgets(monkeypatch, poll=0.1, edit=1.0, close=0.5)
    answering = threading.Event()
    src, engine, child, theirs = _remote(answering)
    try:
        editor, _ = _in_thread(src.delete_rule, "r1")
        _until(lambda: engine.calls, "the edit reached the engine")
        time.sleep(0.3)
        assert src.silent_for(time.monotonic()) == 0.0  # past a poll's budget, within an edit's
        _until(lambda: src.silent_for(time.monotonic()) > 0, "silent past the edit's budget")
        answering.set()
        editor.join(5)
        assert src.silent_for(time.monotonic()) == 0.0  # answered: nothing in flight
        src.close()
    finally:
        answering.set()
        _end(src, child, theirs)


def test_the_start_has_its_own_longer_budget(monkeypatch: pytest.MonkeyPatch) -> None:
    """A first start compiles for seconds, with the starting screen counting them: silence only past
    START_SILENT_SECS, and then q on the starting screen still ends the console (the start abandoned)."""
    import threading

    from ironpost_tui.engine import remote

    _budgets(monkeypatch, poll=0.1, start=1.0, close=0.5)
    answering = threading.Event()
    src, engine, child, theirs = _remote(answering)
    try:
        starter, started = _in_thread(src.start)
        _until(lambda: engine.calls, "the start reached the engine")
        time.sleep(0.3)
        assert src.silent_for(time.monotonic()) == 0.0  # past a poll's budget, within the start's
        t0 = time.monotonic()
        src.end_wait()
        assert 0.5 < time.monotonic() - t0 < 3.0
        starter.join(5)
        assert not starter.is_alive() and isinstance(started[0], remote.EngineGone), started
        src.close()
        assert engine.calls == [wire.Call.START]
    finally:
        answering.set()
        _end(src, child, theirs)


def test_a_panic_signal_reaches_the_engine_from_before_its_start() -> None:
    """SIGUSR2 in the engine process (`cleanup IFACE` signals the interface lock's holder): a panic of the engine
    about to start, from before the start takes the lock (session 24's first version took it only once serving:
    one between the two was dropped, an attacker's review).  The control: with no engine yet, nothing is asked."""
    import socket

    from ironpost_tui.engine.served import Served

    ours, theirs = socket.socketpair()
    asked: list[str] = []

    class Live:
        def panic_soon(self, via: str) -> None:
            asked.append(via)

    try:
        served = Served(theirs, os.getpid())
        served._on_panic(signal.SIGUSR2, None)
        assert asked == []
        served.will_serve(Live())  # type: ignore[arg-type]
        served._on_panic(signal.SIGUSR2, None)
        assert asked == ["signal"]
    finally:
        ours.close()
        theirs.close()


@pytest.mark.parametrize(
    ("headless", "served", "short"), [(True, False, True), (False, True, True), (False, False, False)]
)
def test_an_engine_of_its_own_process_starts_at_the_short_switch_interval(
    headless: bool, served: bool, short: bool, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The agent's start and the console's engine process: two threads (the file's rules checked and
    loaded, the program loaded beside them) that hand the interpreter over at each kernel call, from the
    file's load on.  The console in one process keeps Python's interval through its start (its interface
    renders beside the engine's start: engine/engine.py)."""
    import argparse
    import sys

    from ironpost_tui import cli
    from ironpost_tui.config.watch import ConfigSource
    from ironpost_tui.engine import switching

    seen: list[tuple[float, bool]] = []

    def load(self: ConfigSource, on_ebpf: object = None, cached: bool = False) -> None:
        seen.append((sys.getswitchinterval(), cached))
        raise IronpostError("stop here")

    monkeypatch.setattr(ConfigSource, "load", load)
    args = argparse.Namespace(config=tmp_path / "ironpost.toml", iface="lab0", state_dir=tmp_path / "state",
                              no_cache=True, headless=headless)  # fmt: skip
    old = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)
        with pytest.raises(IronpostError, match="stop here"):
            cli._run_engine(args, object() if served else None)  # type: ignore[arg-type]
    finally:
        sys.setswitchinterval(old)
    # The start's load reads and keeps the file's parse (config/parse_cache.py; a reload does not).
    assert seen == [(pytest.approx(switching.SWITCH_INTERVAL if short else 0.005), True)]
