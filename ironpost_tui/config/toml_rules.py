"""The rule tables of a TOML document, edited with tomlkit (config/store.py's saves): found, appended,
filled, deleted and reordered, the rest of the document kept as it was.

A module of its own so that tomlkit is imported only by a save: every start reads the file with tomli
and never edits it (tomlkit's import was 7 ms of each start's).
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Iterator
from typing import Any, cast

import tomlkit
from tomlkit.container import Container
from tomlkit.items import AoT, Array, InlineTable, Table, Whitespace
from tomlkit.toml_document import TOMLDocument

from ironpost_tui.config.rules import ACTIONS, FORMS, network, rfc3339
from ironpost_tui.model import Action, FilterRule, IPNetwork

Rules = AoT | Array  # [[ebpf.rules]] tables, or rules = [{...}, ...]
RuleTable = Table | InlineTable


def rules_holder(doc: TOMLDocument, form: str) -> Rules | None:
    if form == "rules":
        value: Any = doc.get("rules")
    else:
        ebpf = doc.get("ebpf")
        value = ebpf.get("rules") if isinstance(ebpf, Table | Container) else None
    return value if isinstance(value, AoT | Array) else None


def rule_tables(doc: TOMLDocument) -> Iterator[tuple[str, RuleTable]]:
    for form in FORMS:
        holder = rules_holder(doc, form)
        for table in holder or []:
            yield form, cast(RuleTable, table)


def table_id(table: Any) -> str:
    return str(table.get("id", ""))


def find_rule(doc: TOMLDocument, rule_id: str) -> tuple[str, int, RuleTable] | None:
    for form in FORMS:
        holder = rules_holder(doc, form)
        for index, table in enumerate(holder or []):
            if table_id(table) == rule_id:
                return form, index, cast(RuleTable, table)
    return None


def _primary(doc: TOMLDocument, default: str) -> str:
    for form in FORMS:
        if rules_holder(doc, form) is not None:
            return form
    return default


def append_rule(doc: TOMLDocument, default_form: str, rule: FilterRule) -> None:
    form = _primary(doc, default_form)
    holder = rules_holder(doc, form)
    if isinstance(holder, Array):
        inline = tomlkit.inline_table()
        fill_table(inline, rule)
        holder.append(inline)
        return
    table = tomlkit.table()
    fill_table(table, rule)
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


def delete_rule(doc: TOMLDocument, form: str, index: int) -> None:
    holder = rules_holder(doc, form)
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


def reorder_rules(doc: TOMLDocument, default_form: str, ids: list[str]) -> None:
    """Put the rule tables in ``ids`` order, all in one array."""
    form = _primary(doc, default_form)
    tables = {table_id(t): t for _, t in rule_tables(doc)}
    holder = rules_holder(doc, form)
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
        if other != form and rules_holder(doc, other) is not None:
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
                old = rfc3339(old)  # as the file's check read it (any digits of a second, on 3.10 too)
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


def fill_table(table: RuleTable, rule: FilterRule) -> None:
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
