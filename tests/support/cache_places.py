"""The places a cache file (cache_dir.py) may be made untrustworthy in, with the words its refusal says:
shared by the compiled-program cache's tests and the configuration parse cache's.  Each function is given
the path of a good file in a 0700 directory of root's under a directory of the test's."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path


def _group_writable(path: Path) -> None:
    os.chmod(path, 0o620)


def _other_owner(path: Path) -> None:
    os.chown(path, 65534, 65534)


def _symlink(path: Path) -> None:
    real = path.parent.parent / "elsewhere"
    real.mkdir(mode=0o700)
    os.rename(path, real / path.name)
    os.symlink(real / path.name, path)


def _fifo(path: Path) -> None:
    path.unlink()
    os.mkfifo(path, 0o600)


def _open_directory(path: Path) -> None:
    os.chmod(path.parent, 0o777)


def _linked_directory(path: Path) -> None:
    real = path.parent.parent / "real-cache"
    os.rename(path.parent, real)
    os.symlink(real, path.parent)


def _open_parent(path: Path) -> None:
    os.chmod(path.parent.parent, 0o777)


PLACE_CASES: dict[str, tuple[Callable[[Path], None], str]] = {
    "group-writable": (_group_writable, "writable by its group"),
    "owned by another uid": (_other_owner, "owned by uid 65534"),
    "a symbolic link": (_symlink, "symbolic link"),
    "a FIFO": (_fifo, "not a regular file"),
    "directory writable by all": (_open_directory, "writable by its group or by others"),
    "directory a symbolic link": (_linked_directory, "is a symbolic link"),
    "parent writable by all": (_open_parent, "a directory above it"),
}
