"""RuleStore: edits written back with the rest of the file kept, atomic saves, symlinks, the state file."""

from __future__ import annotations

import datetime as dt
import fcntl
import logging
import os
import random
import signal
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from support.common import REPO, net

from ironpost_tui.config import settings as config
from ironpost_tui.config.settings import ConfigError
from ironpost_tui.config.store import RuleStore, RuleStoreError, atomic_write
from ironpost_tui.model import Action, FilterRule

HEAD = """\
# Ironpost configuration: a comment at the top
[general]
log_level = "info"   # a trailing comment
log_format = "json"

[ebpf]
interface = "eth0"
xdp_mode = "skb"      # native, skb, hw
ring_buffer_size = 256

"""
RULES = """\
# the rules
[[ebpf.rules]]
id = "scanner"   # seen on the 12th
src_ip = "198.51.100.50"
action = "block"
description = "Known port scanner"

[[ebpf.rules]]
# DNS to watch
id = "dns"
dst_port = 53
protocol = 17
action = "monitor"

"""
TAIL = """\
[log_pipeline]
# untouched by rule edits
sources = ["syslog", "journald"]

[log_pipeline.storage]
retention_days = 90

[sbom]
enabled = true
"""


SCANNER = FilterRule("scanner", Action.DROP, src_ip=net("198.51.100.50/32"), description="Known port scanner")
DNS = FilterRule("dns", Action.MONITOR, dst_port=53, protocol=17)
NEW = FilterRule("lab", Action.DROP, src_ip=net("2001:db8:1::/48"), dst_ip=net("2001:db8::80/128"), dst_port=443)


@pytest.fixture
def cfg(tmp_path: Path) -> Path:
    path = tmp_path / "ironpost.toml"
    path.write_text(HEAD + RULES + TAIL)
    return path


def test_the_fixture_loads(cfg: Path) -> None:
    assert config.load(cfg).rules == (SCANNER, DNS)


def test_add_keeps_everything_else_byte_for_byte(cfg: Path) -> None:
    RuleStore(cfg).add(NEW)
    text = cfg.read_text()
    assert text.startswith(HEAD + RULES)
    assert text.endswith(TAIL)
    assert text[len(HEAD + RULES) : -len(TAIL)] == (
        '[[ebpf.rules]]\nid = "lab"\nsrc_ip = "2001:db8:1::/48"\ndst_ip = "2001:db8::80"\ndst_port = 443\n'
        'action = "drop"\n\n'
    )
    assert config.load(cfg).rules == (SCANNER, DNS, NEW)


def test_update_changes_only_what_changed(cfg: Path) -> None:
    RuleStore(cfg).update(FilterRule("dns", Action.MONITOR, dst_port=5353, protocol=17))
    assert cfg.read_text() == HEAD + RULES.replace("dst_port = 53\n", "dst_port = 5353\n") + TAIL
    # "block" already means drop: the word in the file is kept
    RuleStore(cfg).update(SCANNER)
    assert cfg.read_text() == HEAD + RULES.replace("dst_port = 53\n", "dst_port = 5353\n") + TAIL


def test_update_adds_and_removes_keys(cfg: Path) -> None:
    expires = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc).timestamp()
    RuleStore(cfg).update(FilterRule("scanner", Action.MONITOR, src_ip=net("198.51.100.0/24"), expires_at=expires))
    text = cfg.read_text()
    assert text.startswith(HEAD) and text.endswith(TAIL)
    assert (
        '[[ebpf.rules]]\nid = "scanner"   # seen on the 12th\nsrc_ip = "198.51.100.0/24"\naction = "monitor"\n'
        "expires_at = 2030-01-02T03:04:05Z\n\n[[ebpf.rules]]\n# DNS to watch\n"
    ) in text
    (rule, _) = config.load(cfg).rules
    assert rule == FilterRule("scanner", Action.MONITOR, src_ip=net("198.51.100.0/24"), expires_at=expires)


def test_delete(cfg: Path) -> None:
    store = RuleStore(cfg)
    store.delete("scanner")
    assert cfg.read_text() == HEAD + "# the rules\n" + RULES.split("\n\n", 1)[1] + TAIL
    store.delete("dns")
    assert cfg.read_text() == HEAD + "# the rules\n" + TAIL
    assert config.load(cfg).rules == ()
    store.add(DNS)
    assert config.load(cfg).rules == (DNS,)


def test_delete_the_last_keeps_the_spacing(cfg: Path) -> None:
    RuleStore(cfg).delete("dns")
    assert cfg.read_text() == HEAD + RULES.split("[[ebpf.rules]]\n# DNS")[0] + TAIL


def test_replace_all_with_the_same_rules_changes_nothing(cfg: Path) -> None:
    RuleStore(cfg).replace_all([SCANNER, DNS])
    assert cfg.read_text() == HEAD + RULES + TAIL


@pytest.mark.parametrize(
    "written", ['"2030-01-01T00:00:00.5Z"', '"2030-01-01t01:00:00.1234567+01:00"', "2030-01-01T00:00:00Z"]
)
def test_a_saved_expiry_that_means_the_same_is_left_as_written(tmp_path: Path, written: str) -> None:
    """A save leaves a value that already means the rule's as the operator wrote it, whatever the digits of its
    second (Python 3.10's fromisoformat() reads three or six: the file's check and the save read it alike)."""
    path = tmp_path / "c.toml"
    text = f'[[ebpf.rules]]\nid = "a"\nprotocol = 1\nexpires_at = {written}  # mine\n'
    path.write_text(text)
    store = RuleStore(path)
    (rule,) = store.rules()
    store.replace_all([rule])
    assert path.read_text() == text


def test_replace_all_reorders_adds_and_removes(cfg: Path) -> None:
    store = RuleStore(cfg)
    store.replace_all([NEW, DNS, SCANNER])
    assert config.load(cfg).rules == (NEW, DNS, SCANNER)
    text = cfg.read_text()
    assert text.startswith(HEAD) and text.endswith(TAIL)
    assert "# DNS to watch" in text and "# seen on the 12th" in text
    assert "\n\n\n" not in text
    store.replace_all([DNS])
    assert config.load(cfg).rules == (DNS,)
    store.replace_all([])
    assert config.load(cfg).rules == ()
    assert cfg.read_text().endswith(TAIL)


def test_fields_are_written_only_when_set(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    store = RuleStore(path)
    store.add(FilterRule("p", Action.DROP, protocol=1))
    store.add(
        FilterRule("auto-192.0.2.7", Action.DROP, src_ip=net("192.0.2.7/32"), expires_at=1_900_000_000.0, auto=True)
    )
    assert path.read_text() == (
        '[[ebpf.rules]]\nid = "p"\nprotocol = 1\naction = "drop"\n\n'
        '[[ebpf.rules]]\nid = "auto-192.0.2.7"\nsrc_ip = "192.0.2.7"\naction = "drop"\n'
        "expires_at = 2030-03-17T17:46:40Z\n"
        "auto = true\n"
    )
    assert store.rules()[1].expires_at == 1_900_000_000.0


def test_rules_form_is_kept(tmp_path: Path) -> None:
    path = tmp_path / "rules.toml"
    path.write_text('# the seed\'s rules file\n[[rules]]\nid = "a"\nsrc_ip = "10.0.0.50"\naction = "block"\n')
    RuleStore(path).add(DNS)
    assert path.read_text() == (
        '# the seed\'s rules file\n[[rules]]\nid = "a"\nsrc_ip = "10.0.0.50"\naction = "block"\n\n'
        '[[rules]]\nid = "dns"\ndst_port = 53\nprotocol = 17\naction = "monitor"\n'
    )


def test_new_rules_in_a_file_without_any(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text(HEAD + TAIL)
    RuleStore(path).add(DNS)
    text = path.read_text()
    assert text == HEAD + '[[ebpf.rules]]\nid = "dns"\ndst_port = 53\nprotocol = 17\naction = "monitor"\n\n' + TAIL


def test_expires_in_is_pinned_when_the_rule_is_written(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[[rules]]\nid = "t"\nprotocol = 1\naction = "drop"\nexpires_in = "1h"\n')
    (rule,) = config.load(path, now=1000.0).rules
    RuleStore(path).update(rule)
    assert "expires_in" not in path.read_text()
    assert config.load(path).rules == (rule,)


def test_refusals_leave_the_file_alone(cfg: Path) -> None:
    before = cfg.read_bytes()
    store = RuleStore(cfg)
    with pytest.raises(RuleStoreError, match="exists already"):
        store.add(SCANNER)
    with pytest.raises(RuleStoreError, match="no rule with id 'nope'"):
        store.update(FilterRule("nope", Action.DROP, protocol=1))
    with pytest.raises(RuleStoreError, match="no rule with id 'nope'"):
        store.delete("nope")
    with pytest.raises(ConfigError) as info:
        store.add(FilterRule("empty", Action.DROP))
    assert "(after this edit)" in info.value.message and "has no match field" in info.value.message
    with pytest.raises(ConfigError, match="matches exactly the packets rule 'scanner' matches"):
        store.add(FilterRule("twin", Action.DROP, src_ip=net("198.51.100.50/32")))
    assert cfg.read_bytes() == before
    # No temporary file left: the writers' lock alone, which stays (it is a lock only while a save holds it).
    assert sorted(p.name for p in cfg.parent.iterdir()) == [".ironpost.toml.lock", "ironpost.toml"]


def test_an_invalid_file_is_reported_as_it_is(cfg: Path) -> None:
    cfg.write_text(HEAD.replace('xdp_mode = "skb"', "xdp_mode = 5") + RULES + TAIL)
    with pytest.raises(ConfigError) as info:
        RuleStore(cfg).add(NEW)
    assert info.value.message == f"{cfg}:8:1: [ebpf] xdp_mode must be a string, got integer 5"


# --------------------------------------------------------------------------- #
# saving


def test_file_ends_0600(cfg: Path) -> None:
    cfg.chmod(0o644)
    old = os.umask(0)
    try:
        RuleStore(cfg).add(NEW)
    finally:
        os.umask(old)
    assert stat.S_IMODE(cfg.stat().st_mode) == 0o600


def test_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    real = tmp_path / "real.toml"
    real.write_text(HEAD + RULES + TAIL)
    real.chmod(0o644)
    link = tmp_path / "ironpost.toml"
    link.symlink_to(real)
    with caplog.at_level(logging.WARNING, logger="ironpost_tui.config.store"):
        RuleStore(link).add(NEW)
    assert real.read_text() == HEAD + RULES + TAIL  # the link's target is unchanged
    assert stat.S_IMODE(real.stat().st_mode) == 0o644
    assert not link.is_symlink() and link.is_file()
    assert config.load(link).rules == (SCANNER, DNS, NEW)
    assert any("was a symbolic link" in r.message and "replaced it" in r.message for r in caplog.records)


def test_a_symlink_at_the_temporary_name_is_not_followed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    names = iter(["planted", "fresh"])
    monkeypatch.setattr("ironpost_tui.config.store.secrets.token_hex", lambda _n: next(names))
    (tmp_path / ".c.toml.planted.tmp").symlink_to(victim)
    atomic_write(tmp_path / "c.toml", b"x = 1\n")
    assert victim.read_text() == "precious\n"
    assert (tmp_path / "c.toml").read_bytes() == b"x = 1\n"
    assert (tmp_path / ".c.toml.planted.tmp").is_symlink()


def test_a_failed_write_leaves_no_temporary_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "c.toml"
    path.write_text("old\n")

    def broken(_fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr("ironpost_tui.config.store.os.fsync", broken)
    with pytest.raises(OSError):
        atomic_write(path, b"new\n")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.toml"]


# --------------------------------------------------------------------------- #
# crash safety

SAVE_LOOP = """
import ipaddress, sys
from pathlib import Path
from ironpost_tui.model import Action, FilterRule
from ironpost_tui.config.store import RuleStore

def rules(n, action):
    return [FilterRule(f"r{i}", action, src_ip=ipaddress.ip_network(f"10.0.{i // 250}.{i % 250}"),
                       description="x" * 200) for i in range(n)]

store = RuleStore(Path(sys.argv[1]))
a, b = rules(3, Action.DROP), rules(60, Action.MONITOR)
store.replace_all(a)
print("ready", flush=True)
while True:
    store.replace_all(b)
    print("b", flush=True)
    store.replace_all(a)
    print("a", flush=True)
"""


def _set(n: int, action: Action) -> tuple[FilterRule, ...]:
    return tuple(
        FilterRule(f"r{i}", action, src_ip=net(f"10.0.{i // 250}.{i % 250}/32"), description="x" * 200)
        for i in range(n)
    )


@pytest.mark.slow
def test_kill_9_at_any_moment_leaves_the_old_file_or_the_new(tmp_path: Path) -> None:
    path = tmp_path / "ironpost.toml"
    path.write_text(HEAD + TAIL)
    sets = {_set(3, Action.DROP): "a", _set(60, Action.MONITOR): "b"}
    seen: dict[str, int] = {"a": 0, "b": 0}
    rng = random.Random(1234)
    for _ in range(100):
        child = subprocess.Popen(
            [sys.executable, "-c", SAVE_LOOP, str(path)], cwd=REPO, stdout=subprocess.PIPE, text=True
        )
        try:
            assert child.stdout is not None
            assert child.stdout.readline() == "ready\n"
            # Let 0 to 2 saves finish first, then kill within 20 ms: the kills land at various points of
            # the loop whatever the machine's load (a fixed delay alone missed every save on a busy one).
            for _ in range(rng.randint(0, 2)):
                assert child.stdout.readline() in ("a\n", "b\n")
            time.sleep(rng.uniform(0, 0.02))
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait()
            if child.stdout is not None:
                child.stdout.close()
        assert child.returncode == -signal.SIGKILL
        settings = config.load(path)  # exists and parses...
        assert settings.rules in sets  # ...to one of the two sets, never anything else
        seen[sets[settings.rules]] += 1
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        text = path.read_text()
        assert text.startswith(HEAD) and text.endswith(TAIL)
        leftovers = [p for p in tmp_path.iterdir() if p.name not in ("ironpost.toml", ".ironpost.toml.lock")]
        assert len(leftovers) <= 1, leftovers  # at most the one save in flight
        assert all(p.name.startswith(".ironpost.toml.") and p.name.endswith(".tmp") for p in leftovers)
        for p in leftovers:
            p.unlink()
    assert seen["a"] and seen["b"], seen  # the kills landed at various points of the loop


# --------------------------------------------------------------------------- #
# the state file


def test_state_file(tmp_path: Path) -> None:
    base = tmp_path / "lib" / "ironpost"
    store = RuleStore.state_file("eth0", base)
    assert store.path == base / "eth0.rules.toml"
    assert stat.S_IMODE(base.stat().st_mode) == 0o700
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    header = store.path.read_text()
    assert header.startswith("# ironpost-tui rule state for eth0.\n")
    assert config.load(store.path).rules == ()
    store.add(DNS)
    store.add(SCANNER)
    assert store.path.read_text().startswith(header)
    assert "[[rules]]" in store.path.read_text() and "ebpf" not in store.path.read_text()
    assert config.load(store.path).rules == (DNS, SCANNER)
    again = RuleStore.state_file("eth0", base)  # an existing state file is kept
    assert again.rules() == (DNS, SCANNER)
    store.delete("dns")
    store.delete("scanner")
    assert store.path.read_text() == header


@pytest.mark.parametrize("iface", ["", "..", "a/b", "x" * 16, "eth 0"])
def test_state_file_refuses_odd_interface_names(tmp_path: Path, iface: str) -> None:
    with pytest.raises(RuleStoreError):
        RuleStore.state_file(iface, tmp_path)


def test_keys_meaning_their_default_are_left_as_written(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    text = '[[rules]]\nid = "a"\nprotocol = 1\ndescription = ""\nauto = false\n'  # no action: drop
    path.write_text(text)
    RuleStore(path).update(FilterRule("a", Action.DROP, protocol=1))
    assert path.read_text() == text


def test_inline_array_of_rules_is_edited_in_place(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('[ebpf]\nrules = [{id = "a", dst_port = 22, action = "monitor"}]\n\n[sbom]\nx = 1\n')
    store = RuleStore(path)
    store.add(FilterRule("b", Action.DROP, protocol=1))
    assert path.read_text() == (
        '[ebpf]\nrules = [{id = "a", dst_port = 22, action = "monitor"}, {id = "b", protocol = 1, action = "drop"}]\n'
        "\n[sbom]\nx = 1\n"
    )
    store.replace_all([FilterRule("b", Action.DROP, protocol=1), FilterRule("a", Action.MONITOR, dst_port=22)])
    assert [r.id for r in store.rules()] == ["b", "a"]


# --------------------------------------------------------------------------- #
# the writers' lock


LOCKED = FilterRule("locked", Action.DROP, src_ip=net("198.51.100.60/32"))
LATER = FilterRule("later", Action.DROP, src_ip=net("198.51.100.61/32"))


def _save_in_thread(store: RuleStore, rule: FilterRule) -> tuple[threading.Thread, list[BaseException | None]]:
    said: list[BaseException | None] = []

    def save() -> None:
        try:
            store.add(rule)
            said.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            said.append(exc)

    t = threading.Thread(target=save, daemon=True)
    t.start()
    return t, said


def test_another_users_flock_on_the_directory_does_not_hold_a_save(cfg: Path) -> None:
    """Any user who can read the configuration's directory could flock it: every save waited on it, under the
    engine's lock (an attacker's review of session 29).  The directory held, as such a user would: the save
    goes through.  The control: the lock beside the file, held, holds the save."""
    held = os.open(cfg.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        t, said = _save_in_thread(RuleStore(cfg), LOCKED)
        t.join(5)
        assert not t.is_alive() and said == [None], said
    finally:
        os.close(held)
    assert LOCKED in config.load(cfg).rules
    lock = cfg.parent / f".{cfg.name}.lock"
    assert stat.S_IMODE(lock.stat().st_mode) == 0o600 and lock.stat().st_uid == os.geteuid()
    held = os.open(lock, os.O_RDONLY)
    try:
        fcntl.flock(held, fcntl.LOCK_EX)
        t, said = _save_in_thread(RuleStore(cfg), LATER)
        t.join(0.5)
        assert t.is_alive()  # waits for the other writer
    finally:
        os.close(held)
    t.join(5)
    assert said == [None] and LATER in config.load(cfg).rules


def test_a_writer_holding_the_lock_too_long_is_an_error_not_a_wait_without_end(
    cfg: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("ironpost_tui.config.store.LOCK_WAIT_SECS", 0.3)
    before = cfg.read_bytes()
    lock = cfg.parent / f".{cfg.name}.lock"
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        t, said = _save_in_thread(RuleStore(cfg), LOCKED)
        t.join(5)
        assert not t.is_alive()
    finally:
        os.close(fd)
    assert isinstance(said[0], RuleStoreError) and "held its lock" in said[0].message, said
    assert cfg.read_bytes() == before


@pytest.mark.parametrize("planted", ["symlink", "fifo", "mode 0644", "another user's"])
def test_a_lock_planted_beside_the_file_is_refused_in_one_line_and_nothing_changes(
    tmp_path: Path, cfg: Path, planted: str
) -> None:
    """Whoever could put a file at the lock's name could hold it: a lock that is not a regular file of this user's
    alone is refused, and the file is not saved.  (Another user's needs root, to give it away: CI runs as root.)"""
    if planted == "another user's" and os.geteuid() != 0:
        pytest.skip("giving a file to another user needs root")
    before = cfg.read_bytes()
    lock = cfg.parent / f".{cfg.name}.lock"
    target = tmp_path / "elsewhere"
    target.write_text("left as it is\n")
    if planted == "symlink":
        lock.symlink_to(target)
    elif planted == "fifo":
        os.mkfifo(lock, 0o600)
    else:
        lock.write_text("")
        lock.chmod(0o644 if planted == "mode 0644" else 0o600)
        if planted == "another user's":
            os.chown(lock, 65534, 65534)
    t, said = _save_in_thread(RuleStore(cfg), LOCKED)
    t.join(5)
    assert not t.is_alive()
    assert isinstance(said[0], RuleStoreError) and "\n" not in said[0].message, said
    assert str(lock) in said[0].message
    assert cfg.read_bytes() == before and target.read_text() == "left as it is\n"
