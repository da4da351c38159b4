"""ConfigSource.changed(): the watch that reloads a configuration file when it is edited; ConfigSource.load(): the
file read once, checked before it is read."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import pytest

from ironpost_tui.config import settings
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.watch import ConfigSource

ONE = '[[ebpf.rules]]\nid = "a"\nsrc_ip = "198.18.0.1"\naction = "drop"\n'
TWO = ONE.replace("198.18.0.1", "198.18.0.2")  # same size


def watched(tmp_path: Path) -> tuple[Path, ConfigSource]:
    path = tmp_path / "ironpost.toml"
    path.write_text(ONE)
    source = ConfigSource(path, "eth0", state_dir=tmp_path / "state")
    source.mark()
    return path, source


def test_an_untouched_file_has_not_changed(tmp_path: Path) -> None:
    _path, source = watched(tmp_path)
    assert not source.changed()


def test_an_edit_is_seen(tmp_path: Path) -> None:
    path, source = watched(tmp_path)
    path.write_text(ONE + "\n")
    assert source.changed()


def test_a_same_size_rewrite_within_one_clock_tick_is_seen(tmp_path: Path) -> None:
    """Inode, size and mtime all as they were (the rewrite landed in the same tick of the file
    system's clock): the content tells."""
    path, source = watched(tmp_path)
    st = os.stat(path)
    path.write_text(TWO)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (os.stat(path).st_ino, os.stat(path).st_size, os.stat(path).st_mtime_ns) == (
        st.st_ino,
        st.st_size,
        st.st_mtime_ns,
    )
    assert source.changed()
    source.mark()  # reloaded
    assert not source.changed()


def test_an_old_file_is_not_read_on_every_check(tmp_path: Path, monkeypatch) -> None:
    path, source = watched(tmp_path)
    old = time.time_ns() - 3600 * 10**9
    os.utime(path, ns=(old, old))
    source.mark()
    reads: list[Path] = []
    real = settings.read_bytes
    monkeypatch.setattr(settings, "read_bytes", lambda p: reads.append(p) or real(p))
    assert not source.changed()
    assert reads == []
    os.utime(path)  # the control: a recent mtime, the content is read
    source.mark()
    reads.clear()
    assert not source.changed()
    assert reads == [path]


def test_a_load_reads_the_file_once_and_remembers_it_as_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, source = watched(tmp_path)
    reads: list[Path] = []
    real = settings.read_bytes
    monkeypatch.setattr(settings, "read_bytes", lambda p: reads.append(p) or real(p))
    assert [r.id for r in source.load().rules] == ["a"]
    assert reads == [path]  # once (it was read once to be remembered, then again to be loaded)
    assert not source.changed()
    path.write_text(TWO)
    assert source.changed()


def _load_in_thread(source: ConfigSource) -> list[BaseException | None]:
    said: list[BaseException | None] = []

    def load() -> None:
        try:
            source.load()
            said.append(None)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            said.append(exc)

    t = threading.Thread(target=load, daemon=True)
    t.start()
    t.join(5)
    assert not t.is_alive(), "the load waited on the file"
    return said


@pytest.mark.parametrize("swapped", ["fifo", "/dev/zero", "too big"])
def test_a_file_swapped_for_what_cannot_be_a_configuration_is_refused_at_once(tmp_path: Path, swapped: str) -> None:
    """A FIFO at the path made the load wait for a writer, and a link to /dev/zero read until memory ran out: the
    load remembered the file with a plain read before the checked one (under the engine's lock on a reload; an
    attacker's review of session 29).  Now each is one ConfigError, and the watch neither waits nor reads on."""
    path, source = watched(tmp_path)
    path.unlink()
    if swapped == "fifo":
        os.mkfifo(path, 0o600)
    elif swapped == "/dev/zero":
        path.symlink_to("/dev/zero")
    else:
        path.write_bytes(b"#" * (settings.MAX_FILE_BYTES + 1))
    said = _load_in_thread(source)
    assert isinstance(said[0], ConfigError) and "\n" not in said[0].message, said
    assert ("more than the limit" if swapped == "too big" else "not a regular file") in said[0].message, said[0].message
    assert not source.changed()  # refused as it is: not reloaded again at every step
    path.unlink()
    path.write_text(ONE)  # the control: a configuration again is a change, and loads
    assert source.changed()
    assert _load_in_thread(source) == [None]
