"""The auto-block journal (config/journal.py): auto-blocks kept in the state directory, never in the
configuration; one write per flush (per tick); compacted at start; a line cut short skipped; expired
blocks dropped; never opened through a symbolic link.

The unit tests need no root.  On the real engine (root, a veth lab): auto-blocks go to the journal and
the configuration stays byte for byte, a tick writes the journal once whatever it added, a restart puts
the live ones back, a reload keeps them, and a panic clears them from the kernel and the journal.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import ipaddress
import json
import logging
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import netlab

from ironpost_tui.config import journal as journal_mod
from ironpost_tui.config.journal import AutoJournal, JournalError, encode_add, journal_path
from ironpost_tui.config.watch import ConfigSource
from ironpost_tui.engine.engine import Engine, EngineOptions
from ironpost_tui.engine.reload import protections
from ironpost_tui.engine.supervisor import Pending, Supervisor
from ironpost_tui.kernel import host
from ironpost_tui.kernel.abi import MapName
from ironpost_tui.kernel.xdp_link import occupants
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.rules.audit import Actor, rule_dict


def auto(n: int, ttl: float = 600.0, now: float | None = None) -> FilterRule:
    addr = ipaddress.ip_network(f"198.19.{n // 256}.{n % 256}/32")
    return FilterRule(
        id=f"auto-port_scan-{addr.network_address}",
        action=Action.DROP,
        src_ip=addr,
        description=f"auto-block: {n} ports probed",
        expires_at=(now or time.time()) + ttl,
        auto=True,
    )


class CountingJournal(AutoJournal):
    """An AutoJournal on the real file that counts its writes and fsyncs."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.writes = 0
        self.fsyncs = 0

    def _write(self, data: bytes) -> None:
        self.writes += 1
        real_fsync = os.fsync

        def counted(fd: int) -> None:
            self.fsyncs += 1
            real_fsync(fd)

        journal_mod.os.fsync = counted  # type: ignore[assignment]
        try:
            super()._write(data)
        finally:
            journal_mod.os.fsync = real_fsync


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture
def state(tmp_path: Path) -> Path:
    d = tmp_path / "state"
    d.mkdir(mode=0o700)
    return d


# --------------------------------------------------------------------------- #
# the journal alone


def test_appended_edits_come_back_at_the_next_open(state: Path) -> None:
    path = journal_path(state, "lab0")
    j = AutoJournal(path)
    assert j.open(time.time()) == []
    rules = [auto(n) for n in range(3)]
    for r in rules:
        j.add(r)
    j.delete(rules[1].id)
    j.flush()
    assert [e["op"] for e in lines(path)] == ["add", "add", "add", "delete"]  # appended, not rewritten
    j.close()

    again = AutoJournal(path)
    assert again.open(time.time()) == [rules[0], rules[2]]  # the rules as they were, expiry and all
    assert rules[1].id not in again and rules[0].id in again
    again.close()


def test_a_flush_is_one_write_and_one_fsync_whatever_it_holds(state: Path) -> None:
    path = journal_path(state, "lab0")
    j = CountingJournal(path)
    j.open(time.time())
    for n in range(500):
        j.add(auto(n))
    for n in range(0, 500, 2):
        j.delete(auto(n).id)
    assert (j.writes, path.read_bytes()) == (0, b"")  # buffered until the flush
    j.flush()
    assert (j.writes, j.fsyncs) == (1, 1)
    assert len(lines(path)) == 750
    j.flush()  # nothing new: nothing written
    assert j.writes == 1
    j.add(auto(999))
    j.flush()
    assert (j.writes, j.fsyncs) == (2, 2)
    # A write's size is the batch's, not the journal's: the second wrote one line.
    assert len(lines(path)) == 751
    j.close()


def test_open_compacts_to_the_live_adds(state: Path) -> None:
    path = journal_path(state, "lab0")
    j = AutoJournal(path)
    j.open(time.time())
    for n in range(100):
        j.add(auto(n))
    for n in range(90):
        j.delete(auto(n).id)
    j.add(auto(95, ttl=1200))  # replaces the live one with the same id
    j.close()
    assert len(lines(path)) == 191

    live = AutoJournal(path).open(time.time())
    assert [r.id for r in live] == [auto(n).id for n in range(90, 100)]
    assert [r.expires_at for r in live if r.id == auto(95).id][0] > time.time() + 1000  # type: ignore[operator]
    assert lines(path) == [json.loads(encode_add(r)) for r in live]  # compacted: one add per live rule


def test_it_is_compacted_again_when_it_grows_past_k_times_the_live_set(
    state: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(journal_mod, "COMPACT_MIN_LINES", 40)
    path = journal_path(state, "lab0")
    j = AutoJournal(path)
    j.open(time.time())
    j.add(auto(0))
    for n in range(1, 30):  # add and delete: the live set stays at one
        j.add(auto(n))
        j.delete(auto(n).id)
        j.flush()
    assert len(lines(path)) <= 40, "never past the bound"
    assert [r.id for r in AutoJournal(path).open(time.time())] == [auto(0).id]


def test_a_line_cut_short_is_skipped_with_a_warning(state: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = journal_path(state, "lab0")
    j = AutoJournal(path)
    j.open(time.time())
    j.add(auto(1))
    j.add(auto(2))
    j.close()
    whole = encode_add(auto(3))
    with open(path, "ab") as f:  # kill -9 in the middle of a write: half a line, no newline
        f.write(whole[: len(whole) // 2])
    with open(path, "ab") as f:  # ...and lines that are no journal lines at all
        f.write(b"\n\x00\x00garbage\n" + json.dumps({"op": "add", "rule": {"id": 7}}).encode() + b"\n")

    caplog.set_level(logging.WARNING, logger="ironpost_tui.config.journal")
    again = AutoJournal(path)
    live = again.open(time.time())
    assert [r.id for r in live] == [auto(1).id, auto(2).id]
    assert again.skipped == 3
    assert sum("skipped" in r.getMessage() for r in caplog.records) == 3
    assert len(lines(path)) == 2  # the compaction left only good lines


def test_expired_blocks_are_dropped_at_open(state: Path) -> None:
    path = journal_path(state, "lab0")
    now = time.time()
    j = AutoJournal(path)
    j.open(now)
    j.add(auto(1, ttl=-1, now=now))  # expired already
    j.add(auto(2, ttl=600, now=now))
    j.close()
    assert [r.id for r in AutoJournal(path).open(now)] == [auto(2).id]
    assert [r.id for r in AutoJournal(path).open(now + 601)] == []  # and once its time is up, that one too
    assert lines(path) == []


def test_the_journal_is_0600_and_never_opened_through_a_symlink(state: Path, tmp_path: Path) -> None:
    path = journal_path(state, "lab0")
    elsewhere = tmp_path / "elsewhere.jsonl"
    planted = encode_add(auto(5))
    elsewhere.write_bytes(planted)
    os.symlink(elsewhere, path)

    j = AutoJournal(path)
    assert j.open(time.time()) == []  # not read through the link
    j.add(auto(6))
    j.close()
    assert elsewhere.read_bytes() == planted  # never written through it either
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600
    assert [e["rule"]["id"] for e in lines(path)] == [auto(6).id]  # type: ignore[index]

    # negative control: the same bytes in a regular file are read
    path.unlink()
    path.write_bytes(planted)
    assert [r.id for r in AutoJournal(path).open(time.time())] == [auto(5).id]


def test_a_directory_others_can_write_is_refused(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o777)
    with pytest.raises(JournalError, match="writable by another user"):
        AutoJournal(journal_path(shared, "lab0")).open(time.time())
    shared.chmod(0o700)
    AutoJournal(journal_path(shared, "lab0")).open(time.time())  # negative control


# --------------------------------------------------------------------------- #
# on the real engine (root)

QUIET = "[safety]\nprotect_ssh_client = false\nprotect_host_addresses = false\n"
CONFIG = QUIET + '\n# the operator\'s own\n[[ebpf.rules]]\nid = "drop-a"\nsrc_ip = "198.18.200.1"\naction = "drop"\n'


@contextlib.contextmanager
def engine_on(lab: netlab.Lab, config: ConfigSource, journal: type[AutoJournal] = AutoJournal) -> Iterator[Engine]:
    settings = config.load()
    engine = Engine(
        EngineOptions(
            iface=lab.host_if,
            xdp_mode="native",
            rules=settings.rules,
            protected=tuple(protections(settings)),
            store=config.store,
            auto_journal=config.journal_path,
            audit_log=config.path.parent / "audit.log",
        )
    )
    try:
        engine.start()
        yield engine
    finally:
        engine.close()
        assert occupants(lab.ifindex) == []
        with contextlib.suppress(FileNotFoundError):
            (host.RUN_DIR / f"{lab.host_if}.lock").unlink()


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.root
def test_auto_blocks_live_in_the_journal_and_the_configuration_stays_as_it_was(lab: netlab.Lab, tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(CONFIG)
    before = sha(path)
    config = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state")
    jpath = config.journal_path
    assert jpath == tmp_path / "state" / f"{lab.host_if}.auto.jsonl"
    actor = Actor("ironpost", None, "detector")
    with engine_on(lab, config) as engine:
        sup = Supervisor(engine, config)
        control = engine.control
        journal = control.journal
        assert isinstance(journal, AutoJournal)
        writes: list[int] = []
        real_write = journal._write

        def counted(data: bytes) -> None:
            writes.append(data.count(b"\n"))
            real_write(data)

        journal._write = counted  # type: ignore[method-assign]
        blocks = [auto(n) for n in range(50)]
        for r in blocks:
            control.add(r, actor)
        assert writes == [] and jpath.read_bytes() == b""  # nothing written until the tick
        engine.tick(timeout_ms=1)
        assert writes == [50]  # the tick's one write holds all fifty
        engine.tick(timeout_ms=1)
        assert writes == [50]  # a tick with nothing new writes nothing
        assert sha(path) == before, "an auto-block reached the configuration file"
        assert engine.control.table.count(MapName.BLOCKLIST) == 51

        # The operator deletes one by hand: out of the journal, the file untouched.
        control.delete(blocks[0].id, Actor.current("console"))
        engine.tick(timeout_ms=1)
        assert writes == [50, 1] and sha(path) == before

        # A reload (the file changed by the operator) keeps the auto-blocks.
        path.write_text(CONFIG + '\n[[ebpf.rules]]\nid = "drop-b"\nsrc_ip = "198.18.200.2"\naction = "drop"\n')
        step = sup.step(timeout_ms=1)
        assert step.reload is not None and step.reload.result.changed, step
        ids = [r.id for r in control.rules()]
        assert ids[:2] == ["drop-a", "drop-b"] and sorted(ids[2:]) == sorted(r.id for r in blocks[1:])
        path.write_text(CONFIG)
        sup.step(timeout_ms=1)
        before = sha(path)
        assert sorted(r.id for r in control.rules()) == sorted(["drop-a", *(r.id for r in blocks[1:])])

    # A restart puts the live ones back (the journal compacted to them), the file still as it was.
    assert len(lines(jpath)) == 51  # 50 adds and a delete, until the compaction at start
    with engine_on(lab, config) as engine:
        assert sorted(r.id for r in engine.control.rules()) == sorted(["drop-a", *(r.id for r in blocks[1:])])
        assert len(lines(jpath)) == 49
        sup = Supervisor(engine, config)
        step = sup.step(Pending(panic="signal"), timeout_ms=1)
        assert sorted(r.id for r in step.cleared or ()) == sorted(["drop-a", *(r.id for r in blocks[1:])])
        assert engine.control.table.count(MapName.BLOCKLIST) == 0
    assert "drop-a" not in path.read_text()  # the panic saved the file's own drop rule's removal...
    assert AutoJournal(jpath).open(time.time()) == []  # ...and cleared the journal


@pytest.mark.root
def test_an_operators_block_on_an_auto_blocked_source_moves_it_from_the_journal_to_the_file(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    """The auto-block taken over (rules/table.py add): out of the journal, the operator's rule in the file, and a
    restart brings back the operator's rule alone."""
    path = tmp_path / "ironpost.toml"
    path.write_text(CONFIG)
    config = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state")
    block = auto(7)
    own = FilterRule(
        "block-198.19.0.7", Action.DROP, src_ip=ipaddress.ip_network("198.19.0.7/32"), expires_at=time.time() + 3600
    )
    with engine_on(lab, config) as engine:
        control = engine.control
        control.add(block, Actor("ironpost", None, "detector"))
        engine.tick(timeout_ms=1)
        # Read, not opened (an open compacts the file under the engine's descriptor).
        assert lines(config.journal_path) == [{"op": "add", "rule": rule_dict(block)}]
        control.add(own, Actor.current("console"))
        engine.tick(timeout_ms=1)
        assert sorted(r.id for r in control.rules()) == ["block-198.19.0.7", "drop-a"]
        assert 'id = "block-198.19.0.7"' in path.read_text() and block.id not in path.read_text()
        assert lines(config.journal_path)[-1] == {"op": "delete", "id": block.id}
        # An auto-block edited in the form (auto false: the operator's): from the journal to the file, its id kept.
        edited = auto(8)
        control.add(edited, Actor("ironpost", None, "detector"))
        control.update(dataclasses.replace(edited, auto=False, expires_at=None), Actor.current("console"))
        engine.tick(timeout_ms=1)
        assert lines(config.journal_path)[-1] == {"op": "delete", "id": edited.id}
        assert f'id = "{edited.id}"' in path.read_text()
    assert AutoJournal(config.journal_path).open(time.time()) == []
    with engine_on(lab, config) as engine:
        rules = {r.id: r for r in engine.control.rules()}
        assert sorted(rules) == sorted(["block-198.19.0.7", "drop-a", edited.id]) and not rules[edited.id].auto


@pytest.mark.root
def test_a_reload_whose_file_drops_an_auto_blocked_source_takes_the_auto_block_over(
    lab: netlab.Lab, tmp_path: Path
) -> None:
    """A drop rule added to the file for a source a detector blocked: the reload takes the auto-block over (it
    was refused whole as a duplicate match, so an attacker who got an address auto-blocked could stall every
    change to the file that named it).  The control: a monitor rule there would lift the drop, and the reload
    is refused, the auto-block in force."""
    path = tmp_path / "ironpost.toml"
    path.write_text(CONFIG)
    config = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state")
    block = auto(9)
    with engine_on(lab, config) as engine:
        sup = Supervisor(engine, config)
        engine.control.add(block, Actor("ironpost", None, "detector"))
        engine.tick(timeout_ms=1)
        path.write_text(CONFIG + '\n[[ebpf.rules]]\nid = "watch-9"\nsrc_ip = "198.19.0.9"\naction = "monitor"\n')
        step = sup.step(timeout_ms=1)
        assert step.reload is not None and not step.reload.result.changed, step
        assert sorted(r.id for r in engine.control.rules()) == sorted(["drop-a", block.id])
        path.write_text(CONFIG + '\n[[ebpf.rules]]\nid = "file-9"\nsrc_ip = "198.19.0.9"\naction = "drop"\n')
        step = sup.step(timeout_ms=1)
        assert step.reload is not None and step.reload.result.changed, step
        assert sorted(r.id for r in engine.control.rules()) == ["drop-a", "file-9"]
        assert engine.control.taken_over == {block.id: "file-9"}
        engine.tick(timeout_ms=1)
        assert lines(config.journal_path)[-1] == {"op": "delete", "id": block.id}


AUTO_BLOCKS = 64


@pytest.mark.root
def test_a_panic_of_auto_blocks_alone_leaves_the_file_alone(lab: netlab.Lab, tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(QUIET + '\n[[ebpf.rules]]\nid = "watch"\ndst_port = 53\nprotocol = 17\naction = "monitor"\n')
    before = sha(path)
    config = ConfigSource(path, lab.host_if, state_dir=tmp_path / "state")
    with engine_on(lab, config) as engine:
        for n in range(AUTO_BLOCKS):
            engine.control.add(auto(n), Actor("ironpost", None, "detector"))
        cleared = engine.control.panic(Actor.current("signal"))
        assert len(cleared) == AUTO_BLOCKS
        assert [r.id for r in engine.control.rules()] == ["watch"]
        assert lines(config.journal_path)[-1] == {"op": "delete", "id": auto(AUTO_BLOCKS - 1).id}
    assert sha(path) == before
