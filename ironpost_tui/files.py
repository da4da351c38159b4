"""The one way ironpost writes a file a user will read: exports, recordings, the pid file.

A new file is created under an unpredictable temporary name in the target's directory with
``O_CREAT|O_EXCL|O_NOFOLLOW`` (a link planted at any name is never followed, a file planted there
is never reused), its mode set whatever the umask (0600 by default), and renamed over the target:
a symbolic link at the target is replaced, never written through, and the file it pointed to is
left as it was.  Run as root under sudo, a file in a place the invoking user chose is given to
that user (``SUDO_UID``, ``SUDO_GID``), so the operator can read what they asked for, and only where
that user could have made it themselves (``replace_problem``): sudo lends root to run ironpost-tui, not
to replace /etc/passwd with a file the user then owns.  That is judged before the file is made and again
as it is renamed into place (``renameat2``: no replacing a name that appeared meanwhile, and what an
exchange took out put back if the user could not have replaced it), so a file another user makes at the
name in a sticky directory while ironpost writes is never replaced.

Sits at the bottom with ``errors`` and ``model``: imports nothing of the package, raises OSError.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import logging
import os
import pwd
import secrets
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

log = logging.getLogger(__name__)

_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_NO_ID = 0xFFFFFFFF  # (uid_t)-1: "unset" to the kernel, never a real owner
RENAME_NOREPLACE, RENAME_EXCHANGE = 1, 2  # renameat2(2)'s flags
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)  # glibc 2.28 and later


@dataclass(frozen=True)
class Owner:
    """Whom a new file is given to: a uid and a gid (-1 leaves the group as it is)."""

    uid: int
    gid: int = -1


def invoking_user(environ: Mapping[str, str] | None = None) -> Owner | None:
    """The user who ran ``sudo ironpost-tui``, when we run as root under sudo; else None.

    ``SUDO_UID`` must be a decimal uid other than 0 and (uid_t)-1; a ``SUDO_GID`` that is not a
    valid gid is left out (the group stays root's).  Only root can give a file away, so any other
    caller gets None.
    """
    env = os.environ if environ is None else environ
    if os.geteuid() != 0:
        return None
    uid = _id(env.get("SUDO_UID"))
    if uid is None or uid == 0:
        return None
    gid = _id(env.get("SUDO_GID"))
    return Owner(uid, -1 if gid is None else gid)


def _id(text: str | None) -> int | None:
    if not text or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value < _NO_ID else None


def writable_by(st: os.stat_result, owner: Owner) -> bool:
    """Whether ``owner`` may make and remove names in the directory ``st`` is of (write and search
    permission, by its owner's, group's or others' bits as the kernel picks them)."""
    return _may(st, owner, stat.S_IWUSR | stat.S_IXUSR)


def _may(st: os.stat_result, owner: Owner, need: int, groups: frozenset[int] | None = None) -> bool:
    """Whether ``owner`` (in ``groups``: ``_groups(owner)`` when not given) has the permissions ``need`` (as
    the owner's bits) on what ``st`` is of."""
    if st.st_uid == owner.uid:
        return st.st_mode & need == need
    if st.st_gid in (_groups(owner) if groups is None else groups):
        return st.st_mode & (need >> 3) == need >> 3
    return st.st_mode & (need >> 6) == need >> 6


def _groups(owner: Owner) -> frozenset[int]:
    """``owner``'s groups: with no SUDO_GID (gid -1), the passwd entry's, never root's group 0."""
    groups = {owner.gid}
    try:
        user = pwd.getpwuid(owner.uid)
        groups.update(os.getgrouplist(user.pw_name, owner.gid if owner.gid >= 0 else user.pw_gid))
    except (KeyError, OSError):
        pass
    return frozenset(groups)


def unreachable(directory: Path, owner: Owner) -> Path | None:
    """The first directory above ``directory`` (links resolved, as the kernel walks them) that ``owner`` may
    not search, or None: a directory it can write but not reach is not one it could put a file in."""
    groups = _groups(owner)  # read once for the whole walk (/etc/passwd, /etc/group)
    for above in reversed(Path(os.path.realpath(directory)).parents):
        try:
            st = os.stat(above)
        except OSError:
            return above
        if not _may(st, owner, stat.S_IXUSR, groups):
            return above
    return None


def replace_problem(directory: os.stat_result, target: os.stat_result | None, owner: Owner) -> str | None:
    """Why ``owner`` could not have put a file at a name of ``directory`` themselves, as rename(2) would judge
    them (None: they could).  ``target``: what the name holds now (lstat), None when nothing."""
    if not writable_by(directory, owner):
        return f"its directory is not writable by uid {owner.uid}, who ran sudo"
    return _sticky_problem(directory, target, owner)


def _sticky_problem(directory: os.stat_result, target: os.stat_result | None, owner: Owner) -> str | None:
    """replace_problem's judgement of what the name holds (no lookup of the user's groups: the part that is
    judged again between an exchange and its undoing, which must be short)."""
    if target is None:
        return None
    if directory.st_mode & stat.S_ISVTX and owner.uid not in (target.st_uid, directory.st_uid):
        return (
            f"it is uid {target.st_uid}'s, in a sticky directory: uid {owner.uid} (who ran sudo) could not replace it"
        )
    if stat.S_ISDIR(target.st_mode):
        return "it is a directory"
    return None


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600, owner: Owner | None = None) -> None:
    """Replace ``path`` with ``data``: the old content or the new, whatever happens (kill -9 too).

    Written and fsynced under a temporary name, then renamed over ``path``; the directory is
    fsynced after.  On any error the temporary file is removed and the OSError raised.  With an
    ``owner``, only where that user could have done it (``replace_problem``; PermissionError), and
    given to them once it is in place (until then it is root's: no one else can move it meanwhile).
    """
    dfd = _directory(path, owner)
    try:
        fd, tmp = _create_temp(path, mode, dfd)
        made: os.stat_result | None = None
        try:
            try:
                made = os.fstat(fd)
                view = memoryview(data)
                while view:
                    view = view[os.write(fd, view) :]
                os.fsync(fd)
                _rename(tmp, path, dfd, owner)
                if owner is not None:
                    os.fchown(fd, owner.uid, owner.gid)
            finally:
                os.close(fd)
        except BaseException:
            _unlink_if_ours(tmp, dfd, made)
            raise
        os.fsync(dfd)
    finally:
        os.close(dfd)


def create_replacing(path: Path, *, mode: int = 0o600, owner: Owner | None = None) -> BinaryIO:
    """A new, empty file at ``path``, open for writing, for a stream written over a long time.

    Created as ``write_atomic`` creates its file (exclusive, no-follow, ``mode``, ``owner``, only
    where the owner could have) and renamed over ``path`` at once, before anything is written: what
    was at ``path`` (a file, or a link, which is not followed) is replaced now, and what the stream
    has written so far is at its real name if the process dies.  The caller closes the file.
    """
    dfd = _directory(path, owner)
    try:
        fd, tmp = _create_temp(path, mode, dfd)
        made: os.stat_result | None = None
        try:
            made = os.fstat(fd)
            _rename(tmp, path, dfd, owner)
            if owner is not None:
                os.fchown(fd, owner.uid, owner.gid)
            os.fsync(dfd)
        except BaseException:
            os.close(fd)
            _unlink_if_ours(tmp, dfd, made)
            raise
    finally:
        os.close(dfd)
    return os.fdopen(fd, "wb")


def _directory(path: Path, owner: Owner | None) -> int:
    """A descriptor of ``path``'s directory, the one the file is made and renamed in (a directory swapped
    for a link after the check is not the one written in); with an ``owner``, judged for that user."""
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    if owner is None:
        return dfd
    try:
        try:
            target: os.stat_result | None = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
        except FileNotFoundError:
            target = None
        problem = replace_problem(os.fstat(dfd), target, owner)
        closed = unreachable(path.parent, owner) if problem is None else None
        if closed is not None:
            problem = f"uid {owner.uid}, who ran sudo, cannot reach it: {closed} is closed to them"
        if problem is not None:
            raise PermissionError(errno.EACCES, problem, str(path))
    except BaseException:
        os.close(dfd)
        raise
    return dfd


def create_new(
    path: Path,
    *,
    mode: int = 0o600,
    owner: Owner | None = None,
    check_dir: Callable[[os.stat_result], str | None] | None = None,
) -> BinaryIO:
    """A new file at ``path``, open for writing, never replacing anything (FileExistsError).

    Made through one descriptor of its directory, which ``check_dir`` judges first (its fstat: a reason
    to refuse, as PermissionError, or None): the directory checked is the one written in, even if its
    path is swapped (for a link to /etc, say) meanwhile.  Exclusive, no-follow, ``mode``, ``owner``.
    """
    dfd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        if check_dir is not None:
            problem = check_dir(os.fstat(dfd))
            if problem is not None:
                raise PermissionError(errno.EACCES, problem, str(path.parent))
        fd = os.open(path.name, _CREATE, mode, dir_fd=dfd)
        try:
            os.fchmod(fd, mode)  # whatever the umask
            if owner is not None:
                os.fchown(fd, owner.uid, owner.gid)
            os.fsync(dfd)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path.name, dir_fd=dfd)
            raise
    finally:
        os.close(dfd)
    return os.fdopen(fd, "wb")


def _create_temp(path: Path, mode: int, dfd: int) -> tuple[int, str]:
    """A new file under a temporary name in the directory ``dfd`` (``path``'s): (its fd, its name)."""
    for _ in range(100):
        tmp = f".{path.name}.{secrets.token_hex(8)}.tmp"
        try:
            fd = os.open(tmp, _CREATE, mode, dir_fd=dfd)
        except FileExistsError:
            continue
        try:
            os.fchmod(fd, mode)  # whatever the umask
        except BaseException:
            os.close(fd)
            _unlink_quietly(tmp, dfd)
            raise
        return fd, tmp
    raise FileExistsError(f"cannot create a temporary file in {path.parent}")  # pragma: no cover


def _rename(tmp: str, path: Path, dfd: int, owner: Owner | None) -> None:
    try:
        target: str | None = os.readlink(path.name, dir_fd=dfd)
    except OSError:  # not a link (or not there): the common case
        target = None
    if owner is None:
        os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)
    else:
        _rename_as(tmp, path, dfd, owner)
    if target is not None:
        log.warning(
            "%s was a symbolic link to %s: replaced it with a regular file (the file it pointed to is unchanged)",
            path,
            target,
        )


def _rename_as(tmp: str, path: Path, dfd: int, owner: Owner) -> None:
    """Rename ``tmp`` to ``path`` only if ``owner`` could have replaced what is there at this moment, not only
    when it was judged (``_directory``): a name that was free is taken only while it still is, and what an
    exchange takes out is put back if ``owner`` could not have replaced it.  The new file is root's until it is
    in place, so no one but root can move it meanwhile.  On a filesystem without renameat2's flags (NFS; exfat
    and cifs have no exchange), the name is judged just before a plain rename."""
    directory = os.fstat(dfd)
    problem = replace_problem(directory, None, owner)  # the user's groups looked up here, not in the exchange
    if problem is not None:
        raise PermissionError(errno.EACCES, problem, str(path))
    for _ in range(8):  # the name may come and go between the calls
        try:
            _rename2(dfd, tmp, path.name, RENAME_NOREPLACE)
            return
        except FileExistsError:
            pass
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            return _rename_judged(tmp, path, dfd, owner, directory)
        try:
            _rename2(dfd, tmp, path.name, RENAME_EXCHANGE)  # the new file at path, what was there at tmp
        except FileNotFoundError:
            continue  # gone since: take the free name
        except OSError as exc:
            if exc.errno not in _UNSUPPORTED:
                raise
            return _rename_judged(tmp, path, dfd, owner, directory)
        old = os.stat(tmp, dir_fd=dfd, follow_symlinks=False)
        problem = _sticky_problem(directory, old, owner)
        if problem is None:
            os.unlink(tmp, dir_fd=dfd)
            return
        _put_back(tmp, path, dfd)
        raise PermissionError(errno.EACCES, f"{problem} (it appeared there while the file was made)", str(path))
    raise FileExistsError(errno.EEXIST, "the name kept changing while the file was renamed into place", str(path))


_UNSUPPORTED = (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP)


def _rename_judged(tmp: str, path: Path, dfd: int, owner: Owner, directory: os.stat_result) -> None:
    """A plain rename, what the name holds judged just before (a filesystem without renameat2's flags)."""
    try:
        old: os.stat_result | None = os.stat(path.name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        old = None
    problem = _sticky_problem(directory, old, owner)
    if problem is not None:
        raise PermissionError(errno.EACCES, problem, str(path))
    os.rename(tmp, path.name, src_dir_fd=dfd, dst_dir_fd=dfd)


def _put_back(tmp: str, path: Path, dfd: int) -> None:
    """Undo an exchange: what it took out (now at ``tmp``) back at ``path``.  The new file at ``path`` is root's,
    so only root could have moved it; if the name holds something else all the same, what was taken out is left
    at ``tmp``, never removed, and the error names it."""
    try:
        _rename2(dfd, tmp, path.name, RENAME_EXCHANGE)
        return
    except OSError:
        pass
    try:
        _rename2(dfd, tmp, path.name, RENAME_NOREPLACE)
    except OSError as exc:
        raise PermissionError(
            errno.EACCES, f"a file another user made at {path.name} while it was written is left at {tmp}", str(path)
        ) from exc


def _rename2(dfd: int, old: str, new: str, flags: int) -> None:
    """renameat2(2) within the directory ``dfd``; OSError (ENOSYS without it in the C library)."""
    if _renameat2 is None:
        raise OSError(errno.ENOSYS, "renameat2 is not in the C library", new)
    if _renameat2(dfd, os.fsencode(old), dfd, os.fsencode(new), flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err), new)


def _unlink_quietly(name: str, dfd: int) -> None:
    try:
        os.unlink(name, dir_fd=dfd)
    except OSError:
        pass


def _unlink_if_ours(name: str, dfd: int, made: os.stat_result | None) -> None:
    """Remove the temporary file ``made`` was the fstat of, if ``name`` still is it: after an exchange undone
    only in part, it may be another user's file, which must stay.  ``made`` None: failed before its fstat,
    long before any rename."""
    if made is None:
        _unlink_quietly(name, dfd)
        return
    try:
        st = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except OSError:
        return
    if (st.st_dev, st.st_ino) == (made.st_dev, made.st_ino):
        _unlink_quietly(name, dfd)


__all__ = [
    "Owner",
    "create_new",
    "create_replacing",
    "invoking_user",
    "replace_problem",
    "unreachable",
    "writable_by",
    "write_atomic",
]
