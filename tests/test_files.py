"""Files a root process writes for a user (issue 15, faults 6 and 8; the audit's who and fsync).

- Exports and recordings go through the one writer (``ironpost_tui.files``): a link planted at
  the target, or at the temporary name the old code used (``.NAME.tmp``), is never written
  through; the result is a regular file, mode 0600; under sudo it belongs to the invoking user.
- ``[general]``: log_level sets the level, pid_file is written and removed, data_dir is refused
  unless it names the one directory ironpost uses.
- The audit: every line says the login uid and is fsynced.
"""

from __future__ import annotations

import errno
import gzip
import io
import json
import logging
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.ui import alert, event

from ironpost_tui import cli, files
from ironpost_tui.config import settings as config
from ironpost_tui.engine.feed import SourceInfo
from ironpost_tui.engine.pid_file import PidFileError, pid_file
from ironpost_tui.model import FilterRule
from ironpost_tui.records.export import ExportError, export_alerts, export_events
from ironpost_tui.records.reading import scan
from ironpost_tui.records.recording import Recorder, RecordingError
from ironpost_tui.rules import audit
from ironpost_tui.rules.audit import Actor, AuditLog, login_uid

VICTIM_TEXT = "root's file: must stay as it is\n"
INFO = SourceInfo(iface="lab0", mode="skb", attached=True, started_at=1.0, config_path="", blocklist_capacity=10)


@pytest.fixture
def victim(tmp_path: Path) -> Iterator[Path]:
    """A file a planted link points at; root-only, as /etc/shadow would be."""
    other = tmp_path / "elsewhere"
    other.mkdir()
    path = other / "victim"
    path.write_text(VICTIM_TEXT)
    path.chmod(0o600)
    yield path
    assert path.read_text() == VICTIM_TEXT, "the planted link was written through"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def regular_0600(path: Path) -> os.stat_result:
    st = os.lstat(path)
    assert stat.S_ISREG(st.st_mode), f"{path} is not a regular file"
    assert stat.S_IMODE(st.st_mode) == 0o600, oct(st.st_mode)
    return st


def record_one(path: Path) -> None:
    rec = Recorder(path)
    rec.start(INFO)
    rec._write({"kind": "notice", "text": "hello"})
    rec.close()


WRITERS = {
    "csv export": lambda p: export_events(p, [event()], "csv"),
    "json export": lambda p: export_alerts(p, [alert()], "json"),
    "recording": record_one,
}


# --- a planted symlink --------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS)
def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path, victim: Path, writer: str) -> None:
    out = tmp_path / "out.file"
    out.symlink_to(victim)
    WRITERS[writer](out)
    regular_0600(out)
    assert out.read_bytes() != VICTIM_TEXT.encode()
    assert not [p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


@pytest.mark.parametrize("writer", WRITERS)
def test_a_symlink_at_the_old_temporary_name_does_not_matter(tmp_path: Path, victim: Path, writer: str) -> None:
    out = tmp_path / "out.file"
    planted = tmp_path / f".{out.name}.tmp"  # the name the export used to write through
    planted.symlink_to(victim)
    WRITERS[writer](out)
    regular_0600(out)
    assert planted.is_symlink() and os.readlink(planted) == str(victim)


def test_negative_control_open_follows_a_planted_link(tmp_path: Path) -> None:
    """What the old code did (open(path, "w")) does write through the link: the fixture would see it."""
    target = tmp_path / "target"
    target.write_text(VICTIM_TEXT)
    (tmp_path / "link").symlink_to(target)
    with open(tmp_path / "link", "w") as f:
        f.write("overwritten")
    assert target.read_text() == "overwritten"


@pytest.mark.parametrize("writer", WRITERS)
def test_mode_is_0600_whatever_the_umask(tmp_path: Path, writer: str) -> None:
    old = os.umask(0)
    try:
        WRITERS[writer](tmp_path / "out.file")
    finally:
        os.umask(old)
    regular_0600(tmp_path / "out.file")


def test_a_recording_is_readable_under_its_name_while_it_is_written(tmp_path: Path) -> None:
    """Renamed into place at once: a run that dies keeps what it recorded so far."""
    out = tmp_path / "rec.ipr.gz"
    rec = Recorder(out)
    rec.start(INFO)
    assert out.exists() and not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    rec.close()
    with out.open("rb") as raw:
        info, duration = scan(out, raw)
    assert info.iface == "lab0" and duration == 0.0


def test_unwritable_places_are_one_error(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot record to"):
        Recorder(tmp_path / "missing" / "rec.ipr.gz")
    (tmp_path / "dir").mkdir()
    with pytest.raises(OSError):
        files.write_atomic(tmp_path / "dir", b"x")  # a directory at the target: refused, nothing left
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dir"]


# --- under sudo ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"SUDO_UID": "1000", "SUDO_GID": "1000"}, files.Owner(1000, 1000)),
        ({"SUDO_UID": "1000"}, files.Owner(1000, -1)),
        ({"SUDO_UID": "1000", "SUDO_GID": "x"}, files.Owner(1000, -1)),
        ({"SUDO_UID": "0", "SUDO_GID": "0"}, None),
        ({"SUDO_UID": "4294967295"}, None),
        ({"SUDO_UID": "-1"}, None),
        ({"SUDO_UID": "１２"}, None),  # fullwidth digits: str.isdigit says yes, a uid they are not
        ({"SUDO_UID": ""}, None),
    ],
)
def test_invoking_user_from_the_environment(env: dict[str, str], expected: files.Owner | None) -> None:
    if os.geteuid() != 0:
        expected = None  # only root can give a file away
    assert files.invoking_user(env) == expected


@pytest.fixture
def throwaway_user() -> Iterator[tuple[pwd.struct_passwd, Path]]:
    """A user made for the test, and a directory of theirs (the place they chose); both removed."""
    if os.geteuid() != 0:
        pytest.skip("needs root to create a user and give files away")
    name = f"ipt{uuid.uuid4().hex[:8]}"
    subprocess.run(["useradd", "--no-create-home", "--user-group", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)  # fmt: skip
    home = Path(tempfile.mkdtemp(prefix="ipt-files-"))  # /tmp: a pytest tmp_path is root's, 0700
    try:
        user = pwd.getpwnam(name)
        os.chown(home, user.pw_uid, user.pw_gid)
        yield user, home
    finally:
        shutil.rmtree(home)
        subprocess.run(["userdel", name], check=False, capture_output=True)
        try:
            pwd.getpwnam(name)
        except KeyError:
            pass
        else:  # pragma: no cover
            raise AssertionError(f"user {name} was not removed")


@pytest.mark.root
@pytest.mark.parametrize("writer", WRITERS)
def test_under_sudo_the_file_is_the_invoking_users(
    victim: Path, writer: str, throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    user, home = throwaway_user
    out = home / "out.file"
    out.symlink_to(victim)
    # Negative control: without sudo's variables the file is root's.
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.delenv("SUDO_GID", raising=False)
    WRITERS[writer](out)
    st = regular_0600(out)
    assert (st.st_uid, st.st_gid) == (0, 0)

    monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
    monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
    WRITERS[writer](out)
    st = regular_0600(out)
    assert (st.st_uid, st.st_gid) == (user.pw_uid, user.pw_gid)
    # ... and the user can read it (as that user, not as root).
    proc = subprocess.run(["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}",
                           "--clear-groups", "cat", str(out)], capture_output=True)  # fmt: skip
    assert proc.returncode == 0, proc.stderr


WRITE_ERRORS = (OSError, RecordingError, ExportError)


@pytest.mark.root
@pytest.mark.parametrize("writer", WRITERS)
def test_under_sudo_a_file_goes_only_where_the_invoking_user_could_put_it(
    writer: str, throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``sudo ironpost-tui --record /etc/passwd`` (or an export there) must not replace a root file with one the
    user then owns: a user allowed only to run ironpost-tui under sudo would own /etc/passwd."""
    user, home = throwaway_user
    etc = Path(tempfile.mkdtemp(prefix="ipt-etc-"))  # root's, as /etc is
    sticky = Path(tempfile.mkdtemp(prefix="ipt-sticky-"))  # as /tmp is
    try:
        etc.chmod(0o755)
        sticky.chmod(0o1777)
        passwd = etc / "passwd"
        passwd.write_text(VICTIM_TEXT)
        other = sticky / "others"  # someone else's file in a sticky directory
        other.write_text(VICTIM_TEXT)
        monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
        monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
        for target, why in ((passwd, "not writable by uid"), (etc / "new", "not writable by uid"),
                            (other, "in a sticky directory")):  # fmt: skip
            with pytest.raises(WRITE_ERRORS, match=why):
                WRITERS[writer](target)
        closed = Path(tempfile.mkdtemp(prefix="ipt-closed-", dir=etc))  # root's, 0700: the user cannot enter
        inner = closed / "open"
        inner.mkdir()
        inner.chmod(0o777)  # writable by all, but only through a directory closed to the user
        with pytest.raises(WRITE_ERRORS, match="cannot reach it"):
            WRITERS[writer](inner / "f")
        assert list(inner.iterdir()) == []
        shutil.rmtree(closed)
        assert passwd.read_text() == VICTIM_TEXT and os.stat(passwd).st_uid == 0
        assert other.read_text() == VICTIM_TEXT and os.stat(other).st_uid == 0
        assert sorted(p.name for p in etc.iterdir()) == ["passwd"]  # no temporary file left either
        assert sorted(p.name for p in sticky.iterdir()) == ["others"]
        # Positive controls: a new name in the sticky directory, and a file of the user's own there.
        WRITERS[writer](sticky / "mine")
        assert os.stat(sticky / "mine").st_uid == user.pw_uid
        WRITERS[writer](sticky / "mine")
        assert os.stat(sticky / "mine").st_uid == user.pw_uid
        # Negative control: root alone (no sudo) writes where root may, as before.
        monkeypatch.delenv("SUDO_UID")
        monkeypatch.delenv("SUDO_GID")
        WRITERS[writer](passwd)
        assert passwd.read_bytes() != VICTIM_TEXT.encode()
    finally:
        shutil.rmtree(etc)
        shutil.rmtree(sticky)


@pytest.mark.root
@pytest.mark.parametrize("writer", WRITERS)
def test_under_sudo_a_file_made_at_the_name_meanwhile_is_not_replaced(
    writer: str, throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The race of the check above: in a sticky directory, another user's file appears at the name after it was
    judged free (or the user's own file there is swapped for another's) and before the rename.  It stays, and
    the write fails; the controls are the same writes with nothing made meanwhile."""
    user, _home = throwaway_user
    sticky = Path(tempfile.mkdtemp(prefix="ipt-sticky-"))
    made_temp = files._create_temp
    try:
        sticky.chmod(0o1777)
        monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
        monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
        for name, before in (("free", False), ("users", True)):
            target = sticky / name
            if before:  # the user's own file, which they could replace
                WRITERS[writer](target)
                assert os.stat(target).st_uid == user.pw_uid
            WRITERS[writer](target)  # the control: nothing made meanwhile, the file written
            assert os.stat(target).st_uid == user.pw_uid
            if not before:
                target.unlink()

            def racing(path: Path, mode: int, dfd: int, target: Path = target) -> tuple[int, str]:
                made = made_temp(path, mode, dfd)  # after the directory was judged, before the rename
                assert os.fstat(made[0]).st_uid == 0  # root's until in place: the user cannot move it meanwhile
                target.unlink(missing_ok=True)
                target.write_text(VICTIM_TEXT)  # root's, as another user's would be
                return made

            monkeypatch.setattr(files, "_create_temp", racing)
            with pytest.raises(WRITE_ERRORS, match="in a sticky directory"):
                WRITERS[writer](target)
            monkeypatch.setattr(files, "_create_temp", made_temp)
            assert target.read_text() == VICTIM_TEXT and os.stat(target).st_uid == 0
            target.unlink()
        assert list(sticky.iterdir()) == []  # no temporary file left
    finally:
        shutil.rmtree(sticky)


@pytest.mark.root
@pytest.mark.parametrize("undo", ["exchange fails, name free", "exchange fails, name taken"])
def test_under_sudo_an_exchange_undone_in_part_never_removes_the_other_users_file(
    undo: str, throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """What an exchange took out is put back, or left where it is and named, and never removed with the
    temporary file: the cleanup removes only the file it made (a reviewer's race had root delete it)."""
    user, _home = throwaway_user
    sticky = Path(tempfile.mkdtemp(prefix="ipt-sticky-"))
    try:
        sticky.chmod(0o1777)
        target = sticky / "out.csv"
        monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
        monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
        made_temp, rename2 = files._create_temp, files._rename2
        exchanges = []

        def racing(path: Path, mode: int, dfd: int) -> tuple[int, str]:
            made = made_temp(path, mode, dfd)
            target.write_text(VICTIM_TEXT)  # another's file appears after the check
            return made

        def flaky(dfd: int, old: str, new: str, flags: int) -> None:
            if flags == files.RENAME_EXCHANGE:
                exchanges.append(old)
                if len(exchanges) == 2:  # the undoing
                    if undo == "exchange fails, name free":
                        os.unlink(new, dir_fd=dfd)  # as only root could: the new file gone
                    raise OSError(errno.EIO, "simulated")
            rename2(dfd, old, new, flags)

        monkeypatch.setattr(files, "_create_temp", racing)
        monkeypatch.setattr(files, "_rename2", flaky)
        with pytest.raises(WRITE_ERRORS) as err:
            export_events(target, [event()], "csv")
        monkeypatch.setattr(files, "_rename2", rename2)
        monkeypatch.setattr(files, "_create_temp", made_temp)
        names = sorted(p.name for p in sticky.iterdir())
        if undo == "exchange fails, name free":  # put back over the free name
            assert names == ["out.csv"] and target.read_text() == VICTIM_TEXT
        else:  # left at the temporary name, which the error says, and not removed
            tmp = sticky / exchanges[0]
            assert exchanges[0] in str(err.value) and tmp.read_text() == VICTIM_TEXT and os.stat(tmp).st_uid == 0
            assert os.stat(target).st_uid == 0  # the new file, root's: never given to the user
    finally:
        shutil.rmtree(sticky)


@pytest.mark.root
def test_under_sudo_without_exchange_the_name_is_judged_just_before_the_rename(
    throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A filesystem with RENAME_NOREPLACE but no RENAME_EXCHANGE (exfat, cifs: EINVAL): the user's own file is
    still replaced, and another's that appeared is still refused (judged at the last moment)."""
    user, _home = throwaway_user
    sticky = Path(tempfile.mkdtemp(prefix="ipt-sticky-"))
    rename2 = files._rename2

    def no_exchange(dfd: int, old: str, new: str, flags: int) -> None:
        if flags == files.RENAME_EXCHANGE:
            raise OSError(errno.EINVAL, "simulated: no exchange here")
        rename2(dfd, old, new, flags)

    try:
        sticky.chmod(0o1777)
        monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
        monkeypatch.setenv("SUDO_GID", str(user.pw_gid))
        monkeypatch.setattr(files, "_rename2", no_exchange)
        mine = sticky / "mine.csv"
        export_events(mine, [event()], "csv")
        export_events(mine, [event()], "csv")  # replacing the user's own file: no exchange needed to judge it
        assert os.stat(mine).st_uid == user.pw_uid
        made_temp = files._create_temp

        def racing(path: Path, mode: int, dfd: int) -> tuple[int, str]:
            made = made_temp(path, mode, dfd)
            mine.unlink()
            mine.write_text(VICTIM_TEXT)
            return made

        monkeypatch.setattr(files, "_create_temp", racing)
        with pytest.raises(WRITE_ERRORS, match="in a sticky directory"):
            export_events(mine, [event()], "csv")
        assert mine.read_text() == VICTIM_TEXT and sorted(p.name for p in sticky.iterdir()) == ["mine.csv"]
    finally:
        shutil.rmtree(sticky)


@pytest.mark.root
def test_under_sudo_a_link_that_appears_is_refused_without_saying_it_was_replaced(
    throwaway_user: tuple[pwd.struct_passwd, Path], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A root symlink to /etc/shadow appearing at the name is refused and stays; "replaced it" is said only of a
    link that was replaced."""
    user, _home = throwaway_user
    sticky = Path(tempfile.mkdtemp(prefix="ipt-sticky-"))
    made_temp = files._create_temp
    try:
        sticky.chmod(0o1777)
        target = sticky / "out.csv"
        monkeypatch.setenv("SUDO_UID", str(user.pw_uid))
        monkeypatch.setenv("SUDO_GID", str(user.pw_gid))

        def racing(path: Path, mode: int, dfd: int) -> tuple[int, str]:
            made = made_temp(path, mode, dfd)
            target.symlink_to("/etc/shadow")
            return made

        monkeypatch.setattr(files, "_create_temp", racing)
        with caplog.at_level(logging.WARNING), pytest.raises(WRITE_ERRORS, match="in a sticky directory"):
            export_events(target, [event()], "csv")
        assert os.readlink(target) == "/etc/shadow" and "was a symbolic link" not in caplog.text
        monkeypatch.setattr(files, "_create_temp", made_temp)
        monkeypatch.delenv("SUDO_UID")
        monkeypatch.delenv("SUDO_GID")
        with caplog.at_level(logging.WARNING):  # the control: root alone replaces the link, and says so
            export_events(target, [event()], "csv")
        assert not target.is_symlink() and "was a symbolic link to /etc/shadow" in caplog.text
    finally:
        shutil.rmtree(sticky)


def test_replace_problem_judges_as_rename_would() -> None:
    """The rule itself, on stat results: write and search on the directory; in a sticky one, the file's or the
    directory's owner only."""

    def st(mode: int, uid: int = 0, gid: int = 0) -> os.stat_result:
        return os.stat_result((mode, 0, 0, 1, uid, gid, 0, 0, 0, 0))

    me = files.Owner(4242, 4242)
    ok = files.replace_problem
    assert ok(st(stat.S_IFDIR | 0o755), None, me) is not None  # root's directory
    assert ok(st(stat.S_IFDIR | 0o775, gid=4242), None, me) is None  # by its group
    assert ok(st(stat.S_IFDIR | 0o765, gid=4242), None, me) is not None  # group can write but not search
    assert ok(st(stat.S_IFDIR | 0o777), st(stat.S_IFREG | 0o600), me) is None  # not sticky: any file
    assert ok(st(stat.S_IFDIR | 0o1777), st(stat.S_IFREG | 0o600), me) is not None  # sticky: root's file
    assert ok(st(stat.S_IFDIR | 0o1777), st(stat.S_IFREG | 0o600, uid=4242), me) is None  # sticky: my file
    assert ok(st(stat.S_IFDIR | 0o1700, uid=4242), st(stat.S_IFREG | 0o600), me) is None  # sticky: my directory
    assert ok(st(stat.S_IFDIR | 0o1777), None, me) is None  # sticky: a new name


# --- [general] ----------------------------------------------------------------------------


def test_log_levels_are_the_configurations() -> None:
    assert set(cli.LOG_LEVELS) == set(config.LOG_LEVELS)


@pytest.mark.parametrize(
    ("level", "shown"),
    [("trace", "DEBUG"), ("debug", "DEBUG"), ("info", "INFO"), ("warn", "WARNING"), ("error", "ERROR")],
)
def test_log_level_sets_the_level_of_ironposts_loggers(level: str, shown: str) -> None:
    root = logging.getLogger()
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s"))
    saved = (root.level, [(n, logging.getLogger(n).level) for n in ("ironpost", "ironpost_tui", "other")])
    root.addHandler(handler)
    try:
        cli.set_log_level(level)
        for name in ("ironpost_tui.engine.headless", "ironpost.audit", "other.library"):
            for lvl in (logging.DEBUG, logging.INFO, logging.WARNING, logging.ERROR):
                logging.getLogger(name).log(lvl, "x")
    finally:
        root.removeHandler(handler)
        root.setLevel(saved[0])
        for n, lvl in saved[1]:
            logging.getLogger(n).setLevel(lvl)
    lines = out.getvalue().splitlines()
    order = ["DEBUG", "INFO", "WARNING", "ERROR"]
    want = order[order.index(shown) :]
    for name in ("ironpost_tui.engine.headless", "ironpost.audit"):
        assert [ln.split()[0] for ln in lines if ln.endswith(name)] == want
    # other libraries: never their debug lines
    assert [ln.split()[0] for ln in lines if ln.endswith("other.library")] == order[max(1, order.index(shown)) :]


def test_data_dir_other_than_the_state_directory_is_refused() -> None:
    s = config.loads('[general]\ndata_dir = "/var/lib/ironpost"\n', "t")  # the seed's value: accepted
    assert s.general.data_dir == config.DATA_DIR
    with pytest.raises(config.ConfigError) as caught:
        config.loads('[general]\ndata_dir = "/srv/ironpost"\n', "t.toml")
    assert caught.value.message.startswith("t.toml:2:")
    assert "data_dir" in caught.value.message and "--state-dir" in caught.value.message


def test_the_state_directory_default_is_data_dir() -> None:
    args = cli._run_parser().parse_args(["eth0"])
    assert args.state_dir == config.GeneralSettings().data_dir == config.DATA_DIR


@pytest.mark.parametrize("value", ["run/x.pid", "/run/", "./x.pid"])
def test_pid_file_must_be_an_absolute_file_path(value: str) -> None:
    with pytest.raises(config.ConfigError, match="pid_file"):
        config.loads(f'[general]\npid_file = "{value}"\n', "t")


def test_no_pid_file_unless_configured() -> None:
    assert config.loads("", "t").general.pid_file is None
    assert config.loads('[general]\npid_file = ""\n', "t").general.pid_file is None


def test_pid_file_written_0644_and_removed(tmp_path: Path, victim: Path) -> None:
    path = tmp_path / "ironpost.pid"
    path.symlink_to(victim)
    with pid_file(path):
        st = os.lstat(path)
        assert stat.S_ISREG(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o644
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists() and not path.is_symlink()
    with pytest.raises(RuntimeError), pid_file(path):  # removed however the run ends
        raise RuntimeError
    assert not path.exists()


@pytest.mark.root
@pytest.mark.parametrize("ids", [["--reuid=65534"], ["--ruid=65534", "--euid=0"]], ids=["user", "set-uid"])
def test_a_pid_file_naming_another_users_process_is_taken_over(tmp_path: Path, ids: list[str]) -> None:
    """A local user starts a process with "ironpost-tui" in its arguments on a stale pid (or a set-uid program,
    sudo or su at its password prompt, whose effective uid is root's): it is not a running ironpost-tui, and the
    start takes the file over instead of being refused for ever."""
    path = tmp_path / "ironpost.pid"
    other = subprocess.Popen(["setpriv", *ids, "--regid=65534", "--clear-groups", sys.executable, "-c",
                              "import time; time.sleep(60)", "ironpost-tui"])  # fmt: skip
    try:
        deadline = time.monotonic() + 10
        while not Path(f"/proc/{other.pid}/cmdline").read_bytes().startswith(sys.executable.encode()):  # exec'd yet?
            assert time.monotonic() < deadline
            time.sleep(0.01)
        uids = next(ln.split()[1:3] for ln in Path(f"/proc/{other.pid}/status").read_text().splitlines()
                    if ln.startswith("Uid:"))  # fmt: skip
        assert uids == (["65534", "65534"] if len(ids) == 1 else ["65534", "0"])
        path.write_text(f"{other.pid}\n")
        with pid_file(path):
            assert path.read_text() == f"{os.getpid()}\n"
    finally:
        other.kill()
        other.wait()


def test_pid_file_of_a_running_ironpost_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "ironpost.pid"
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", "ironpost-tui"])
    try:
        deadline = time.monotonic() + 10
        while b"ironpost-tui" not in Path(f"/proc/{other.pid}/cmdline").read_bytes():  # exec'd yet?
            assert time.monotonic() < deadline
            time.sleep(0.01)
        path.write_text(f"{other.pid}\n")
        with pytest.raises(PidFileError, match=f"running ironpost-tui \\(pid {other.pid}\\)"), pid_file(path):
            pass
        assert path.read_text() == f"{other.pid}\n"  # left to its owner
    finally:
        other.kill()
        other.wait()
    # Its process gone (kill -9): the stale file is taken over.
    with pid_file(path):
        assert path.read_text() == f"{os.getpid()}\n"
    assert not path.exists()


def test_pid_file_left_alone_at_exit_if_it_names_another_process(tmp_path: Path) -> None:
    path = tmp_path / "ironpost.pid"
    with pid_file(path):
        path.write_text("1\n")  # someone rewrote it meanwhile
    assert path.read_text() == "1\n"


# --- the audit ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"), [("1000", 1000), ("0\n", 0), ("4294967295", None), ("", None), ("x", None)]
)
def test_login_uid(tmp_path: Path, text: str, expected: int | None) -> None:
    (tmp_path / "loginuid").write_text(text)
    assert login_uid(tmp_path / "loginuid") == expected
    assert login_uid(tmp_path / "missing") is None


def test_audit_line_has_the_login_uid_and_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log_path = tmp_path / "audit.log"
    synced: list[int] = []
    real_fsync = os.fsync

    def counting_fsync(fd: int) -> None:
        st = os.fstat(fd)
        if log_path.exists() and (st.st_dev, st.st_ino) == (log_path.stat().st_dev, log_path.stat().st_ino):
            synced.append(st.st_size)  # the size when synced: the line is in the file already
        real_fsync(fd)

    monkeypatch.setattr(audit.os, "fsync", counting_fsync)
    trail = AuditLog(log_path)
    trail.record("add", Actor.current("console"), FilterRule(id="r1"))
    trail.record("delete", Actor("alice", None, "console", loginuid=1000), FilterRule(id="r1"))
    lines = log_path.read_text().splitlines()
    assert len(synced) == 2 and synced[-1] == log_path.stat().st_size
    first, second = (json.loads(line) for line in lines)
    assert first["loginuid"] == login_uid()  # this process's, whatever it is (None when unset)
    assert (second["loginuid"], second["user"]) == (1000, "alice")
    assert second["login_user"] == _name(1000)
    # A panic's lines (one per cleared rule) are written and fsynced together: a thousand auto-blocks
    # cleared cost one fsync, not a second of them.
    trail.record_each("panic-delete", Actor.current("signal"), [FilterRule(id=f"auto-{i}") for i in range(500)])
    lines = log_path.read_text().splitlines()
    assert len(lines) == 502 and len(synced) == 3 and synced[-1] == log_path.stat().st_size
    assert [json.loads(line)["rule"]["id"] for line in lines[2:]] == [f"auto-{i}" for i in range(500)]


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


@pytest.mark.root
def test_loginuid_survives_a_changed_environment() -> None:
    """The login uid is the kernel's: a process whose environment claims another user still names the
    login (set here as pam_loginuid sets it, by writing /proc/self/loginuid before exec)."""
    code = (
        "import json; from ironpost_tui.rules.audit import Actor; "
        "a = Actor.current('x'); print(json.dumps([a.user, a.loginuid]))"
    )
    env = {**os.environ, "SUDO_USER": "mallory"}
    script = f'echo 4242 > /proc/self/loginuid && exec "$0" -c "{code}"'
    proc = subprocess.run(["sh", "-c", script, sys.executable], env=env, capture_output=True, text=True)
    if proc.returncode != 0 and "loginuid" in proc.stderr:
        pytest.skip(f"cannot set a login uid here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == ["mallory", 4242]
    # Negative control: a process with no login uid set says None (this one may have one: a child that
    # inherits it would then say that uid, so only the parsing is checked there).
    assert login_uid() is None or isinstance(login_uid(), int)


def test_gzip_of_a_recording_is_complete_after_close(tmp_path: Path) -> None:
    out = tmp_path / "r.ipr.gz"
    record_one(out)
    with gzip.open(out, "rt") as f:
        kinds = [json.loads(line)["kind"] for line in f]
    assert kinds == ["start", "notice"]
