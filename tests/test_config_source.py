"""ConfigSource.changed(): the watch that reloads a configuration file when it is edited."""

from __future__ import annotations

import os
import time
from pathlib import Path

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
    reads = []
    monkeypatch.setattr(Path, "read_bytes", lambda self: reads.append(self) or b"")
    assert not source.changed()
    assert reads == []
