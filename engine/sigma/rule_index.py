"""The rule index: per index field, index key -> the entries (rules, or a scan's checks) it offers.

Why one piece for both users: ``RuleSet.candidates`` and the scan matcher (engine/sigma/scan.py) must offer
an event the same entries. The index is a necessary condition (a rule's discriminator: a field and the
values it must have), so a lookup that differed between the two would silently lose matches.
"""

from __future__ import annotations

from typing import Any, Callable, Generic, TypeVar

from engine.sigma import values as V
from engine.sigma.compiler import Discriminator

T = TypeVar("T")


class DiscriminatorIndex(Generic[T]):
    """Entries by their discriminator; those without one are offered to every event."""

    __slots__ = ("unindexed", "tables")

    def __init__(self) -> None:
        self.unindexed: list[T] = []
        #: index field -> index key (``values.index_key``) -> entries
        self.tables: dict[str, dict[str, list[T]]] = {}

    def add(self, disc: Discriminator | None, entry: T) -> None:
        if disc is None:
            self.unindexed.append(entry)
        else:
            table = self.tables.setdefault(disc[0], {})
            for key in disc[1]:
                table.setdefault(key, []).append(entry)

    def lookup(self, get: Callable[[str], Any]) -> list[T]:
        """The entries offered to an event whose field values ``get`` returns (duplicates possible)."""
        found = list(self.unindexed)
        for name, table in self.tables.items():
            value = get(name)
            if value is None:
                continue
            for item in (value if type(value) is list else (value,)):
                key = V.index_key(item)
                if key is not None:
                    hit = table.get(key)
                    if hit is not None:
                        found.extend(hit)
        return found
