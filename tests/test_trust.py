"""The configuration, the state directory and the state file are trusted only when no other user can write them.

Whoever can write them decides what a root process filters, whether SSH is protected and whether
/metrics is exposed.  Each refusal is shown beside the same file made safe (the negative control).
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from support import agents

from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.store import RuleStore
from ironpost_tui.errors import ExitStatus

NOBODY = 65534
GOOD_TOML = '[general]\nlog_level = "info"\n'


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory of this user's, mode 0700, removed afterwards."""
    path = Path(tempfile.mkdtemp(prefix="ironpost-trust-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write(path: Path, mode: int = 0o644) -> Path:
    path.write_text(GOOD_TOML)
    path.chmod(mode)
    return path


def check_config(path: Path) -> subprocess.CompletedProcess[str]:
    return agents.run("check-config", str(path), timeout=30)


def test_a_group_or_world_writable_configuration_is_refused_with_the_mode_to_set(private_dir: Path) -> None:
    path = _write(private_dir / "ironpost.toml")
    assert check_config(path).returncode == 0  # the negative control: 0644 is fine
    for mode in (0o664, 0o646, 0o666):
        path.chmod(mode)
        done = check_config(path)
        assert done.returncode == ExitStatus.CONFIG_INVALID, done.stderr
        assert "it is writable by its group or by others" in done.stderr and f"chmod go-w {path}" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
        with pytest.raises(ConfigError, match="chmod go-w"):
            config.load(path)


def test_a_configuration_in_a_directory_others_can_write_is_refused(private_dir: Path) -> None:
    shared = private_dir / "shared"
    shared.mkdir()
    path = _write(shared / "ironpost.toml")
    shared.chmod(0o777)
    done = check_config(path)
    assert done.returncode == ExitStatus.CONFIG_INVALID and f"the directory of {path}" in done.stderr, done.stderr
    shared.chmod(0o755)
    assert check_config(path).returncode == 0  # the same file, its directory made safe


def test_a_sticky_directory_owned_by_root_may_hold_the_configuration(private_dir: Path) -> None:
    if os.stat("/tmp").st_uid != 0 or not os.stat("/tmp").st_mode & stat.S_ISVTX:
        pytest.fail("/tmp is expected to be root's, sticky")
    path = Path(tempfile.mkstemp(prefix="ironpost-trust-", suffix=".toml", dir="/tmp")[1])
    try:
        _write(path)
        assert check_config(path).returncode == 0
        path.chmod(0o666)  # sticky or not, the file itself must be safe
        assert check_config(path).returncode == ExitStatus.CONFIG_INVALID
    finally:
        path.unlink()


def test_a_fifo_in_place_of_the_configuration_does_not_block(private_dir: Path) -> None:
    fifo = private_dir / "ironpost.toml"
    os.mkfifo(fifo, 0o600)
    done = check_config(fifo)  # with a blocking open this waits for a writer, forever (timeout: 30 s)
    assert done.returncode == ExitStatus.CONFIG_INVALID and "not a regular file" in done.stderr, done.stderr
    with pytest.raises(ConfigError, match="not a regular file"):
        config.load(fifo)


@pytest.mark.root
def test_a_configuration_another_user_owns_is_refused(private_dir: Path) -> None:
    path = _write(private_dir / "ironpost.toml")
    os.chown(path, NOBODY, NOBODY)  # 0644: nobody could rewrite it
    done = check_config(path)
    assert done.returncode == ExitStatus.CONFIG_INVALID, done.stderr
    assert f"owned by uid {NOBODY}" in done.stderr and f"chown root:root {path}" in done.stderr
    link = private_dir / "link.toml"
    link.symlink_to(path)  # a link to it is judged by what it points to
    assert check_config(link).returncode == ExitStatus.CONFIG_INVALID
    os.chown(path, 0, 0)
    assert check_config(path).returncode == 0 and check_config(link).returncode == 0


@pytest.mark.root
def test_a_directory_another_user_owns_is_refused_even_at_0755(private_dir: Path) -> None:
    theirs = private_dir / "theirs"
    theirs.mkdir(mode=0o755)
    path = _write(theirs / "ironpost.toml")
    os.chown(theirs, NOBODY, NOBODY)  # nobody may rename our file away and put another in its place
    assert check_config(path).returncode == ExitStatus.CONFIG_INVALID
    os.chown(theirs, 0, 0)
    assert check_config(path).returncode == 0


def test_a_group_writable_state_directory_is_refused(private_dir: Path) -> None:
    state = private_dir / "state"
    state.mkdir(mode=0o770)
    state.chmod(0o770)  # mkdir's mode passes through the umask
    with pytest.raises(ConfigError, match="the state directory .* writable by its group") as exc:
        RuleStore.state_file("eth0", state)
    assert exc.value.exit_status == ExitStatus.CONFIG_INVALID
    assert list(state.iterdir()) == []  # nothing written there
    state.chmod(0o700)
    store = RuleStore.state_file("eth0", state)  # the control: the same directory, private
    assert store.path.exists() and store.rules() == ()


def test_a_state_file_others_can_write_is_refused(private_dir: Path) -> None:
    store = RuleStore.state_file("eth0", private_dir)
    store.path.chmod(0o666)  # anyone could turn SSH protection off here
    with pytest.raises(ConfigError, match="writable by its group or by others"):
        store.rules()
    store.path.chmod(0o600)
    assert store.rules() == ()


@pytest.mark.root
def test_a_run_with_a_group_writable_state_directory_stops_before_anything(private_dir: Path) -> None:
    state = private_dir / "state"
    state.mkdir()
    state.chmod(0o770)
    # An interface that does not exist: were the directory accepted, the run would stop at "no such
    # interface" (exit 6) before attaching anything, which is the negative control below.
    done = agents.run("ipnosuch0", "--headless", "--no-metrics", "--state-dir", str(state), timeout=60)
    assert done.returncode == ExitStatus.CONFIG_INVALID, done.stderr
    assert "chmod go-w" in done.stderr and list(state.iterdir()) == []
    state.chmod(0o700)
    done = agents.run("ipnosuch0", "--headless", "--no-metrics", "--state-dir", str(state), timeout=60)
    assert done.returncode == ExitStatus.NO_SUCH_INTERFACE, done.stderr


@pytest.mark.root
def test_a_link_another_user_can_replace_is_refused(private_dir: Path) -> None:
    """A root file reached through a link that another user owns, or that sits in a directory they can write, is
    theirs to choose (a CA bundle given as a client CA, another root file as the configuration)."""
    path = _write(private_dir / "ironpost.toml")
    theirs = private_dir / "theirs"
    theirs.mkdir(mode=0o755)
    link = theirs / "link.toml"
    link.symlink_to(path)
    assert check_config(link).returncode == 0  # the control: root's link in root's directory
    os.chown(theirs, NOBODY, NOBODY)  # they may replace the link
    done = check_config(link)
    assert done.returncode == ExitStatus.CONFIG_INVALID and f"the directory of the link {link}" in done.stderr
    os.chown(theirs, 0, 0)
    os.chown(link, NOBODY, NOBODY, follow_symlinks=False)  # the link theirs, in a sticky /tmp say
    done = check_config(link)
    assert done.returncode == ExitStatus.CONFIG_INVALID and f"symbolic link owned by uid {NOBODY}" in done.stderr
