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

import datetime as dt
import fcntl
import logging
import math
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, cast

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, InlineTable, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from ironpost_tui import trust
from ironpost_tui.config import settings as config
from ironpost_tui.config.check import ConfigError
from ironpost_tui.config.rules import ACTIONS, network
from ironpost_tui.errors import BadInterfaceName, IronpostError
from ironpost_tui.kernel.host import check_iface_name
from ironpost_tui.model import Action, FilterRule, IPNetwork

log = logging.getLogger(__name__)

STATE_DIR = Path("/var/lib/ironpost")
FORMS = ("ebpf.rules", "rules")

_STATE_HEADER = """\
# ironpost-tui rule state for {iface}.
# ironpost-tui keeps here the rules added, changed and removed while it runs
# without --config (in the console or by the detectors), and loads them at the
# next start.  Same format as a configuration's rules; see README.md.
"""

Rules = AoT | Array  # [[ebpf.rules]] tables, or rules = [{...}, ...]
RuleTable = Table | InlineTable


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
        with self._edit() as doc:
            if _find(doc, rule.id) is not None:
                raise RuleStoreError(f"a rule with id '{rule.id}' exists already in {self.path}")
            _append(doc, self.form, rule)

    def update(self, rule: FilterRule) -> None:
        """Rewrite the rule with ``rule.id``, changing only the keys whose meaning changes."""
        with self._edit() as doc:
            found = _find(doc, rule.id)
            if found is None:
                raise RuleStoreError(f"no rule with id '{rule.id}' in {self.path}")
            _fill(found[2], rule)

    def delete(self, rule_id: str) -> None:
        with self._edit() as doc:
            found = _find(doc, rule_id)
            if found is None:
                raise RuleStoreError(f"no rule with id '{rule_id}' in {self.path}")
            _delete(doc, found[0], found[1])

    def replace_all(self, rules: Iterable[FilterRule]) -> None:
        """Make the file's rules exactly ``rules``, in this order."""
        wanted = list(rules)
        ids = [r.id for r in wanted]
        if len(set(ids)) != len(ids):
            raise RuleStoreError("replace_all: two rules share an id")
        by_id = {r.id: r for r in wanted}
        with self._edit() as doc:
            for form in FORMS:
                holder = _holder(doc, form)
                if holder is None:
                    continue
                for index in reversed(range(len(holder))):
                    rule_id = _table_id(holder[index])
                    if rule_id in by_id:
                        _fill(holder[index], by_id[rule_id])
                    else:
                        _delete(doc, form, index)
            present = {_table_id(t) for _, t in _tables(doc)}
            for rule in wanted:
                if rule.id not in present:
                    _append(doc, self.form, rule)
            if [_table_id(t) for _, t in _tables(doc)] != ids:
                _reorder(doc, self.form, ids)

    @contextmanager
    def _edit(self) -> Iterator[TOMLDocument]:
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
        """Writers of this directory one at a time (read, change, write is not atomic)."""
        fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
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


# --------------------------------------------------------------------------- #
# the document


def _holder(doc: TOMLDocument, form: str) -> Rules | None:
    if form == "rules":
        value: Any = doc.get("rules")
    else:
        ebpf = doc.get("ebpf")
        value = ebpf.get("rules") if isinstance(ebpf, Table | Container) else None
    return value if isinstance(value, AoT | Array) else None


def _tables(doc: TOMLDocument) -> Iterator[tuple[str, RuleTable]]:
    for form in FORMS:
        holder = _holder(doc, form)
        for table in holder or []:
            yield form, cast(RuleTable, table)


def _table_id(table: Any) -> str:
    return str(table.get("id", ""))


def _find(doc: TOMLDocument, rule_id: str) -> tuple[str, int, RuleTable] | None:
    for form in FORMS:
        holder = _holder(doc, form)
        for index, table in enumerate(holder or []):
            if _table_id(table) == rule_id:
                return form, index, cast(RuleTable, table)
    return None


def _primary(doc: TOMLDocument, default: str) -> str:
    for form in FORMS:
        if _holder(doc, form) is not None:
            return form
    return default


def _append(doc: TOMLDocument, default_form: str, rule: FilterRule) -> None:
    form = _primary(doc, default_form)
    holder = _holder(doc, form)
    if isinstance(holder, Array):
        inline = tomlkit.inline_table()
        _fill(inline, rule)
        holder.append(inline)
        return
    table = tomlkit.table()
    _fill(table, rule)
    if holder is None:
        if form == "ebpf.rules" and _followed(doc, "ebpf"):
            table.add(tomlkit.nl())  # a blank line before the next section
        holder = AoT([], parsed=True)  # parsed: no separators of its own, see _append
        holder.append(table)
        if form == "rules":
            doc["rules"] = holder
        elif "ebpf" in doc:
            cast(Table, doc["ebpf"])["rules"] = holder
        else:
            ebpf = tomlkit.table(is_super_table=True)
            ebpf["rules"] = holder
            doc["ebpf"] = ebpf
        return
    if len(holder):
        last = holder[-1]
        end = _take_trailing(last)
        _put_trailing(last, end if end else [tomlkit.nl()])
        _put_trailing(table, end)
    holder.append(table)


def _followed(doc: TOMLDocument, key: str) -> bool:
    """Whether another section comes after ``key`` in the document."""
    keys = list(doc.keys())
    return key in keys and keys[-1] != key


def _delete(doc: TOMLDocument, form: str, index: int) -> None:
    holder = _holder(doc, form)
    assert holder is not None
    if isinstance(holder, AoT) and index == len(holder) - 1 and len(holder) > 1:
        end = _take_trailing(holder[-1])
        before = holder[-2]
        _take_trailing(before)
        _put_trailing(before, end)
    del holder[index]
    if len(holder) == 0:
        if form == "rules":
            del doc["rules"]
        else:
            del cast(Table, doc["ebpf"])["rules"]


def _reorder(doc: TOMLDocument, default_form: str, ids: list[str]) -> None:
    """Put the rule tables in ``ids`` order, all in one array."""
    form = _primary(doc, default_form)
    tables = {_table_id(t): t for _, t in _tables(doc)}
    holder = _holder(doc, form)
    assert holder is not None
    if isinstance(holder, Array):
        fresh: Rules = tomlkit.array()
        for rule_id in ids:
            fresh.append(tables[rule_id])
    else:
        end = _take_trailing(holder[-1])
        fresh = AoT([], parsed=True)  # parsed: no separators of its own, see _append
        for n, rule_id in enumerate(ids):
            table = cast(Table, tables[rule_id])
            _take_trailing(table)
            _put_trailing(table, end if n == len(ids) - 1 else [tomlkit.nl()])
            fresh.append(table)
    for other in FORMS:
        if other != form and _holder(doc, other) is not None:
            if other == "rules":
                del doc["rules"]
            else:
                del cast(Table, doc["ebpf"])["rules"]
    if form == "rules":
        doc["rules"] = fresh
    else:
        cast(Table, doc["ebpf"])["rules"] = fresh


def _take_trailing(table: Table) -> list[Whitespace]:
    """Remove and return the blank lines at the end of ``table``."""
    body = table.value.body
    out: list[Whitespace] = []
    while body and body[-1][0] is None and isinstance(body[-1][1], Whitespace):
        out.insert(0, cast(Whitespace, body.pop()[1]))
    return out


def _put_trailing(table: Table, items: list[Whitespace]) -> None:
    for item in items:
        table.add(Whitespace(item.as_string()))


# --------------------------------------------------------------------------- #
# one rule <-> one table


def _address(net: IPNetwork) -> str:
    return str(net.network_address) if net.prefixlen == net.max_prefixlen else str(net)


def _timestamp(epoch: float) -> dt.datetime:
    stamp = dt.datetime.fromtimestamp(epoch, dt.timezone.utc)
    return stamp.replace(microsecond=0) if float(epoch).is_integer() else stamp


def _same(key: str, old: Any, new: Any) -> bool:
    """Whether the value in the file already means ``new``."""
    try:
        if key in ("src_ip", "dst_ip"):
            return bool(network(str(old)) == new)
        if key == "action":
            return ACTIONS.get(str(old).lower()) is new
        if key == "expires_at":
            if isinstance(old, str):
                old = dt.datetime.fromisoformat(old.replace("Z", "+00:00").replace("z", "+00:00"))
            return (
                isinstance(old, dt.datetime)
                and old.tzinfo is not None
                and math.isclose(old.timestamp(), new, abs_tol=1e-6)
            )
        if isinstance(new, bool) or isinstance(old, bool):
            return type(old) is type(new) and bool(old == new)
        return bool(old == new)
    except (ValueError, TypeError):
        return False


def _values(rule: FilterRule) -> dict[str, Any]:
    """The keys of ``rule``'s table, only those set, in the order written."""
    values: dict[str, Any] = {"id": rule.id}
    if rule.description:
        values["description"] = rule.description
    if rule.src_ip is not None:
        values["src_ip"] = rule.src_ip
    if rule.dst_ip is not None:
        values["dst_ip"] = rule.dst_ip
    if rule.dst_port is not None:
        values["dst_port"] = rule.dst_port
    if rule.protocol is not None:
        values["protocol"] = rule.protocol
    values["action"] = rule.action
    if rule.expires_at is not None:
        values["expires_at"] = rule.expires_at
    if rule.auto:
        values["auto"] = True
    return values


def _toml_value(key: str, value: Any) -> Any:
    if key in ("src_ip", "dst_ip"):
        return _address(value)
    if key == "action":
        return "drop" if value is Action.DROP else "monitor"
    if key == "expires_at":
        return _timestamp(value)
    return value


def _fill(table: RuleTable, rule: FilterRule) -> None:
    """Make ``table`` say ``rule``, leaving alone every key that already says it.

    A new (empty) table gets every key of the rule, the action included.
    """
    fresh = not table
    values = _values(rule)
    for key in [k for k in table if k not in values]:
        if _plain(table[key]) != _UNSET.get(key, ...):
            del table[key]
    for key, value in values.items():
        if key in table and _same(key, _plain(table[key]), value):
            continue
        if key == "action" and not fresh and key not in table and value is Action.DROP:
            continue  # no action is drop
        table[key] = _toml_value(key, value)


# Keys whose value here means the same as leaving them out: kept as written.
_UNSET: dict[str, Any] = {"auto": False, "description": ""}


def _plain(item: Any) -> Any:
    unwrap = getattr(item, "unwrap", None)
    return unwrap() if callable(unwrap) else item
