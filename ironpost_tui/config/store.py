"""Rule edits written back to the TOML file, keeping the rest of it as it was.

tomlkit keeps comments and layout; only the rule tables an edit is about
change.  Every save is atomic (a temporary file in the same directory,
fsync, rename over the target, fsync of the directory), so ``kill -9`` at
any moment leaves the old file or the new one; and what is saved is first
checked with config.loads, so the file is always one the loader accepts.

A symbolic link at the target is replaced by the new file, never written
through; the file it pointed to is left as it was.

Expiry is written as ``expires_at`` (UTC): a rule the store rewrites loses
its ``expires_in``, which would otherwise count again from every load.
"""

from __future__ import annotations

import fcntl
import logging
import os
import secrets
import stat
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from ironpost_tui import trust
from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.rules import FORMS
from ironpost_tui.errors import BadInterfaceName, IronpostError
from ironpost_tui.kernel.host import check_iface_name
from ironpost_tui.model import FilterRule

if TYPE_CHECKING:
    from tomlkit.toml_document import TOMLDocument

log = logging.getLogger(__name__)

STATE_DIR = Path("/var/lib/ironpost")
# Another writer of the same file (ironpost's own: no other user can open its lock) is waited for this long.
LOCK_WAIT_SECS = 5.0
LOCK_POLL_SECS = 0.02

_STATE_HEADER = """\
# ironpost-tui rule state for {iface}.
# ironpost-tui keeps here the rules added, changed and removed while it runs
# without --config (in the console or by the detectors), and loads them at the
# next start.  Same format as a configuration's rules; see README.md.
"""


class RuleStoreError(IronpostError):
    title = "Cannot save the rules"


class RuleStore:
    """The rules of one TOML file; each edit reads the file, changes it and saves it atomically."""

    def __init__(self, path: Path, form: str = "ebpf.rules") -> None:
        if form not in FORMS:
            raise ValueError(f"form must be one of {FORMS}")
        self.path = Path(path)
        self.form = form  # where new rules go when the file has none yet
        self.initial_text = ""  # the content of a file that does not exist yet

    @classmethod
    def state_file(cls, iface: str, directory: Path = STATE_DIR) -> RuleStore:
        """The rules of ``iface`` when no configuration is given: ``<directory>/<iface>.rules.toml``.

        The directory is made (mode 0700) and the file, with its comment header, if missing.
        """
        try:
            check_iface_name(iface)
        except BadInterfaceName as exc:
            raise RuleStoreError(exc.message) from None
        directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        problem = trust.directory_problem(directory, "the state directory", sticky_ok=False)
        if problem is not None:
            raise ConfigError(problem, title="Unsafe state directory")
        store = cls(directory / f"{iface}.rules.toml", form="rules")
        store.initial_text = _STATE_HEADER.format(iface=iface)
        if not store.path.exists():
            with store._locked():
                if not store.path.exists():
                    atomic_write(store.path, store.initial_text.encode())
        return store

    # --- reading ---------------------------------------------------------------
    def read_text(self) -> str:
        if not self.path.exists():  # a dangling link counts as missing
            return self.initial_text
        return config.read_text(self.path)

    def rules(self) -> tuple[FilterRule, ...]:
        return config.loads(self.read_text(), str(self.path)).rules

    # --- editing ---------------------------------------------------------------
    def add(self, rule: FilterRule) -> None:
        """Append ``rule``; RuleStoreError if its id is taken."""
        from ironpost_tui.config import toml_rules as tr  # a save's alone: _edit()

        with self._edit() as doc:
            if tr.find_rule(doc, rule.id) is not None:
                raise RuleStoreError(f"a rule with id '{rule.id}' exists already in {self.path}")
            tr.append_rule(doc, self.form, rule)

    def update(self, rule: FilterRule) -> None:
        """Rewrite the rule with ``rule.id``, changing only the keys whose meaning changes."""
        from ironpost_tui.config import toml_rules as tr  # a save's alone: _edit()

        with self._edit() as doc:
            found = tr.find_rule(doc, rule.id)
            if found is None:
                raise RuleStoreError(f"no rule with id '{rule.id}' in {self.path}")
            tr.fill_table(found[2], rule)

    def delete(self, rule_id: str) -> None:
        from ironpost_tui.config import toml_rules as tr  # a save's alone: _edit()

        with self._edit() as doc:
            found = tr.find_rule(doc, rule_id)
            if found is None:
                raise RuleStoreError(f"no rule with id '{rule_id}' in {self.path}")
            tr.delete_rule(doc, found[0], found[1])

    def replace_all(self, rules: Iterable[FilterRule]) -> None:
        """Make the file's rules exactly ``rules``, in this order."""
        from ironpost_tui.config import toml_rules as tr  # a save's alone: _edit()

        wanted = list(rules)
        ids = [r.id for r in wanted]
        if len(set(ids)) != len(ids):
            raise RuleStoreError("replace_all: two rules share an id")
        by_id = {r.id: r for r in wanted}
        with self._edit() as doc:
            for form in FORMS:
                holder = tr.rules_holder(doc, form)
                if holder is None:
                    continue
                for index in reversed(range(len(holder))):
                    rule_id = tr.table_id(holder[index])
                    if rule_id in by_id:
                        tr.fill_table(holder[index], by_id[rule_id])
                    else:
                        tr.delete_rule(doc, form, index)
            present = {tr.table_id(t) for _, t in tr.rule_tables(doc)}
            for rule in wanted:
                if rule.id not in present:
                    tr.append_rule(doc, self.form, rule)
            if [tr.table_id(t) for _, t in tr.rule_tables(doc)] != ids:
                tr.reorder_rules(doc, self.form, ids)

    @contextmanager
    def _edit(self) -> Iterator[TOMLDocument]:
        """The file as a tomlkit document (tomlkit and config/toml_rules.py are imported by a save, never
        by a start: 7 ms of each start's imports)."""
        import tomlkit

        with self._locked():
            before = self.read_text()
            try:
                doc = tomlkit.parse(before)
            except Exception as exc:  # tomlkit's errors share no base class worth naming
                config.loads(before, str(self.path))  # the file is invalid: its own errors
                raise RuleStoreError(f"{self.path}: cannot edit this file with tomlkit: {exc}") from exc
            yield doc
            after = tomlkit.dumps(doc)
            if not before.endswith("\n\n"):
                after = after.rstrip("\n") + "\n" if after.strip() else after
            try:
                config.loads(after, f"{self.path} (after this edit)")
            except config.ConfigError:
                config.loads(before, str(self.path))  # the file was invalid already: say so
                raise
            atomic_write(self.path, after.encode())

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Writers of this file one at a time (read, change, write is not atomic): an flock on ``.NAME.lock``
        beside it, a regular file of this user's that no one else may open.  Until session 29 the flock was on
        the directory, which any user who can read it can open and hold: every save, and the engine's lock
        with it, waited for as long as they liked (an attacker's review).  A lock held LOCK_WAIT_SECS is a
        RuleStoreError, not a wait without end."""
        lock = self.path.parent / f".{self.path.name}.lock"
        try:
            # Read-only: flock needs no more, and a lock made 0400 under a narrow umask still opens.
            fd = os.open(lock, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RuleStoreError(f"{self.path}: cannot open its lock {lock}: {exc.strerror}") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
                raise RuleStoreError(
                    f"{self.path}: its lock {lock} is not a file of uid {os.geteuid()} alone "
                    f"(uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}): remove it"
                )
            deadline = time.monotonic() + LOCK_WAIT_SECS
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        raise RuleStoreError(
                            f"{self.path}: another process has held its lock {lock} for {LOCK_WAIT_SECS:g} s: not saved"
                        ) from None
                    time.sleep(LOCK_POLL_SECS)
            yield
        finally:
            os.close(fd)


# --------------------------------------------------------------------------- #
# saving


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` (mode 0600): the old content or the new, whatever happens.

    A symlink at ``path`` is replaced, not followed; the temporary name is
    created with O_EXCL|O_NOFOLLOW, so a link planted there is never followed.
    """
    directory = path.parent
    for _ in range(100):
        tmp = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
            break
        except FileExistsError:
            continue
    else:  # pragma: no cover
        raise RuleStoreError(f"cannot create a temporary file in {directory}")
    try:
        try:
            os.fchmod(fd, 0o600)  # whatever the umask
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            os.fsync(fd)
        finally:
            os.close(fd)
        if path.is_symlink():
            log.warning(
                "%s was a symbolic link to %s: replaced it with a regular file (the file it pointed to is unchanged)",
                path,
                os.readlink(path),
            )
        os.rename(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)
