"""Who may write what ironpost trusts, checked as sshd's StrictModes does.

The configuration and the state file decide what a root process filters, whether SSH is protected
and whether ``/metrics`` is exposed: whoever can write them is as good as root.  So, before either
is read:

- the file must be a regular file (opened with ``O_NONBLOCK`` and judged by ``fstat``: a FIFO or a
  device swapped in for it never blocks start-up);
- it must be owned by root or by the user running ironpost, and writable by neither its group nor
  others;
- the directory it is in must pass the same test (a directory others can write lets them replace
  the file), except that a sticky directory owned by root (``/tmp``) is not the file's keeper;
- a symbolic link given for it must be owned by root (or that user), in a directory that passes too:
  whoever could replace the link would choose the file.

A refusal names the file, its owner and mode, and the command that makes it safe.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

TRUSTED_MODE_HINT = "chmod go-w"


def trusted_owners() -> tuple[int, ...]:
    """Root and the user this process runs as (a test run or check-config as a user)."""
    return (0,) if os.geteuid() == 0 else (0, os.geteuid())


def _owner_problem(st: os.stat_result, path: Path, what: str) -> str | None:
    """``what`` names the thing at the start of the message ("" when the message is already about it)."""
    mode = stat.filemode(st.st_mode)
    what = f"{what} {path} is" if what else "it is"
    if st.st_uid not in trusted_owners():
        owner = "root" if os.geteuid() == 0 else "root or uid " + str(os.geteuid())
        return (
            f"{what} owned by uid {st.st_uid} (mode {mode}), who could change what ironpost does "
            f"as root: it must be owned by {owner}: chown root:root {path} && {TRUSTED_MODE_HINT} {path}"
        )
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        return (
            f"{what} writable by its group or by others (mode {mode}): "
            f"make it writable only by its owner: {TRUSTED_MODE_HINT} {path}"
        )
    return None


def file_problem(st: os.stat_result, path: Path, kind: str = "TOML") -> str | None:
    """Why the opened file ``path`` (its ``fstat``) cannot be trusted, or None; the message goes after its name."""
    if not stat.S_ISREG(st.st_mode):
        return f"not a regular file: give the path of a {kind} file"
    problem = _owner_problem(st, path, "")
    if problem is not None:
        return problem
    real = Path(os.path.realpath(path))  # a link's target's directory is the one that keeps the file
    problem = directory_problem(real.parent, f"the directory of {real}")
    if problem is not None:
        return problem
    return _link_problem(path)


def _link_problem(path: Path) -> str | None:
    """When ``path`` is a symbolic link, whoever can replace the link chooses the file (any root file: a CA
    bundle for a client CA, say): the link must be a trusted owner's, in a directory that keeps it."""
    try:
        lst = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISLNK(lst.st_mode):
        return None
    if lst.st_uid not in trusted_owners():
        return (
            f"it is a symbolic link owned by uid {lst.st_uid}, who could point it at another file: chown -h root {path}"
        )
    given = Path(os.path.abspath(path)).parent
    return directory_problem(given, f"the directory of the link {path}")


def directory_problem(directory: Path, what: str = "the directory", sticky_ok: bool = True) -> str | None:
    """Why ``directory`` cannot keep a trusted file, or None (a missing one is not a problem here).

    ``sticky_ok``: a sticky directory owned by root (``/tmp``) may hold a trusted file, since others
    cannot replace it there; a state directory itself (``sticky_ok=False``) must be private.
    """
    try:
        st = os.stat(directory)
    except OSError:
        return None
    if not stat.S_ISDIR(st.st_mode):
        return f"{what} {directory} is not a directory"
    if sticky_ok and st.st_mode & stat.S_ISVTX and st.st_uid == 0:
        return None
    return _owner_problem(st, directory, what)
