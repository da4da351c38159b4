"""A file of root's own cache directory (``/var/cache/ironpost-tui``), named by a key over what it was
made from: what the compiled-program cache (kernel/program_cache.py) and the parsed-configuration cache
(config/parse_cache.py) keep.

A process that runs as root acts on what these files hold, so a file is read only when nobody but root
could have written it: the directory and every directory above it pass trust.py's rules, the file is
opened with ``O_NOFOLLOW`` (a symbolic link is refused) and judged on the opened fd (a regular file, root's
own, written by nobody else), and it is read up to a size limit.  A file is written atomically (a
temporary name made with ``O_EXCL``, mode 0600, renamed over the target) into a directory created 0700,
and only the few of a kind used last are kept (a file read is touched).  What a file holds is the caller's to check.

Sits at the bottom with ``trust``: raises CacheRefused (one line: why the file is not used) and OSError.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import secrets
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from ironpost_tui import trust

log = logging.getLogger(__name__)

STALE_TEMP_NS = 3600 * 10**9  # a temporary file this old is a killed writer's
T = TypeVar("T")


class CacheRefused(ValueError):
    """A cache file that is not used: the message says why (one line)."""


class CacheFile:
    """The file ``{prefix}{key[:40]}{suffix}`` of ``directory``; the ``keep`` files of its kind used last stay."""

    def __init__(self, directory: Path, prefix: str, suffix: str, key: str, max_bytes: int, keep: int) -> None:
        self.directory = directory
        self.prefix = prefix
        self.suffix = suffix
        self.max_bytes = max_bytes
        self.keep = keep
        self.path = directory / f"{prefix}{key[:40]}{suffix}"
        self.untrusted = False  # the directory was refused on read: said once, not again on write

    def directory_problem(self) -> str | None:
        try:
            st = os.lstat(self.directory)
        except FileNotFoundError:
            return None
        except OSError as exc:
            return f"its directory cannot be examined ({exc.strerror})"
        if stat.S_ISLNK(st.st_mode):
            return f"its directory {self.directory} is a symbolic link"
        problem = trust.directory_problem(self.directory, "its directory", sticky_ok=False)
        for parent in self.directory.parents:
            problem = problem or trust.directory_problem(parent, "a directory above it")
        return problem

    def read(self, kind: str) -> bytes:
        """The file's bytes; FileNotFoundError when there is none, CacheRefused when it is not trusted
        (``kind`` names it in the message), another OSError when it cannot be read."""
        problem = self.directory_problem()
        if problem is not None:
            self.untrusted = True
            raise CacheRefused(problem)
        flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
        try:
            fd = os.open(self.path, flags)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise CacheRefused("it is a symbolic link") from None
            raise
        with os.fdopen(fd, "rb") as f:
            st = os.fstat(f.fileno())
            problem = trust.file_problem(st, self.path, kind)
            if problem is not None:
                raise CacheRefused(problem)
            if st.st_size > self.max_bytes:
                raise CacheRefused(f"it is {st.st_size} bytes, more than {self.max_bytes}")
            data = f.read(self.max_bytes + 1)
            with contextlib.suppress(OSError):
                os.utime(f.fileno())  # used now: the files kept are the ones used last (_prune)
        if len(data) > self.max_bytes:
            raise CacheRefused(f"it is more than {self.max_bytes} bytes")
        return data

    def load(self, kind: str, decode: Callable[[bytes], T], warn: Callable[[str], None]) -> T | None:
        """``decode`` of the file's bytes, or None: absent (silently), or refused, damaged (``decode`` raised
        CacheRefused) or unreadable, when ``warn`` is told why."""
        try:
            return decode(self.read(kind))
        except FileNotFoundError:
            return None
        except CacheRefused as exc:
            warn(str(exc))
        except OSError as exc:
            warn(f"{exc.strerror or exc}")
        return None

    def save(self, data: bytes, warn: Callable[[str], None], durable: bool = True) -> bool:
        """write() ``data``; a failure is one ``warn`` of why, never an error (nothing when the directory
        was refused on read: said then)."""
        if self.untrusted:
            log.debug("cache file %s not saved: its directory was refused", self.path)
            return False
        try:
            self.write(data, durable)
        except (CacheRefused, OSError) as exc:
            warn(str(exc) if isinstance(exc, CacheRefused) else f"{exc.strerror or exc}")
            return False
        return True

    def write(self, data: bytes, durable: bool = True) -> None:
        """Save ``data`` atomically (mode 0600), then keep the files of the kind used last; CacheRefused when
        the directory is not trusted, OSError when the write fails.  ``durable``: fsynced (file and
        directory) before and after the rename; a file whose content says when it is whole may skip it."""
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        problem = self.directory_problem()
        if problem is not None:
            raise CacheRefused(problem)
        tmp = self.directory / f".{self.prefix}{secrets.token_hex(8)}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                os.fchmod(f.fileno(), 0o600)
                f.write(data)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        if durable:
            dfd = os.open(self.directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        with contextlib.suppress(OSError):  # saved: a failure to tidy up is no failure of the write
            self._prune()

    def _prune(self) -> None:
        """Keep the ``keep`` files of this kind written or read last (other keys'); this one is the newest.
        A temporary file of the kind a killed process left (an hour old) goes too."""
        files = []
        stale = time.time_ns() - STALE_TEMP_NS
        for entry in os.scandir(self.directory):
            temp = entry.name.startswith(f".{self.prefix}") and entry.name.endswith(".tmp")
            if not temp and not (entry.name.startswith(self.prefix) and entry.name.endswith(self.suffix)):
                continue
            with contextlib.suppress(OSError):
                st = entry.stat(follow_symlinks=False)
                if not stat.S_ISREG(st.st_mode):
                    continue
                if not temp:
                    files.append((st.st_mtime_ns, entry.path))
                elif st.st_mtime_ns < stale:
                    os.unlink(entry.path)
        for _, path in sorted(files, reverse=True)[self.keep :]:
            with contextlib.suppress(OSError):
                os.unlink(path)
