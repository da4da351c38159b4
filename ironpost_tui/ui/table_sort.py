"""Sorting a table by any of its columns, as htop and k9s do (Textual-free).

``s`` moves the sort to the next column (after the last: back to the table's own order, the
rules file's order, arrival or alert number), ``S`` turns it the other way.  The header shows it
with an arrow on the column's label.  Numbers sort biggest first, words A to Z.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

T = TypeVar("T")

ASCENDING = "▲"
DESCENDING = "▼"


@dataclass(frozen=True)
class Column:
    """A column of a table: its header, its key, and which way it sorts first."""

    label: str
    key: str
    numeric: bool = False  # sorts biggest first
    right: bool = False  # right-justified


@dataclass(frozen=True)
class SortOrder:
    key: str | None = None  # None: the table's own order
    descending: bool = False

    def next(self, columns: Sequence[Column]) -> SortOrder:
        """The next column (the first after the table's own order; after the last, back to it)."""
        keys = [c.key for c in columns]
        at = 0 if self.key is None else keys.index(self.key) + 1
        if at >= len(columns):
            return SortOrder()
        return SortOrder(columns[at].key, columns[at].numeric)

    def reversed(self) -> SortOrder:
        return SortOrder(self.key, not self.descending)

    def label(self, column: Column) -> str:
        """The column's header, with an arrow when the table is sorted by it."""
        if column.key != self.key:
            return column.label
        return f"{column.label}{DESCENDING if self.descending else ASCENDING}"

    def describe(self, columns: Sequence[Column], own: str) -> str:
        """'sorted by hits ▼', or the table's own order named ``own`` (and 'reversed')."""
        if self.key is None:
            return f"{own}, reversed" if self.descending else own
        label = next(c.label for c in columns if c.key == self.key)
        return f"sorted by {label} {DESCENDING if self.descending else ASCENDING}"

    def apply(self, rows: Iterable[T], keys: Mapping[str, Callable[[T], Any]]) -> list[T]:
        """``rows`` in this order (stable: rows that compare equal keep the table's own order)."""
        if self.key is None:
            out = list(rows)
            if self.descending:
                out.reverse()
            return out
        return sorted(rows, key=keys[self.key], reverse=self.descending)


def address_key(text: str) -> tuple[int, int, int, str]:
    """Addresses in numeric order, IPv4 before IPv6, anything else ('many sources') after."""
    try:
        addr = ipaddress.ip_address(text)
    except ValueError:
        return (1, 0, 0, text)
    return (0, addr.version, int(addr), "")


def maybe(value: float | None) -> tuple[bool, float]:
    """A number that may be missing: missing ones sort as the smallest."""
    return (value is not None, value if value is not None else 0.0)
