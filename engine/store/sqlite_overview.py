"""What ``wardwatch rules list`` reads from the SQLite store (``engine/rules_overview.py`` decides what it
means): when each rule's checkpoint last moved, the ingest time a watermark stands for, the newest ingest time,
and alert counts.

Why a mixin of read-only queries: the overview must not widen the store contract that the evaluator and
P10's commit paths rely on, and it needs three aggregate reads the contract has no call for (listing every
alert of every rule to count the last day's would read the whole table).
"""

from __future__ import annotations

from typing import Any, Sequence


class SqliteOverviewMixin:
    def checkpoint_updated(self, rule_ids: Sequence[str]) -> dict[str, str]:
        """rule id -> the wall-clock time its checkpoint was last committed (rules never run are absent)."""
        found: dict[str, str] = {}
        ids = list(rule_ids)
        for i in range(0, len(ids), 500):  # SQLite caps bound parameters per statement
            chunk = ids[i:i + 500]
            rows = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
                f"SELECT rule_id, updated FROM checkpoints WHERE rule_id IN ({','.join('?' * len(chunk))})",
                chunk).fetchall())
            found.update({rule_id: updated for rule_id, updated in rows})
        return found

    def watermark_time(self, watermark: str | None) -> str | None:
        """The ingest time (``event.ingested``) of the last event a watermark (a commit sequence) covers."""
        if watermark is None:
            return None
        row = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            "SELECT ingested FROM events WHERE seq <= ? ORDER BY seq DESC LIMIT 1", (int(watermark),)).fetchone())
        return None if row is None else str(row[0])

    def newest_ingested(self) -> str | None:
        """The ingest time of the newest stored event (None: no events)."""
        row = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            "SELECT ingested FROM events ORDER BY seq DESC LIMIT 1").fetchone())
        return None if row is None else str(row[0])

    def alert_counts(self, since: str) -> dict[str, int]:
        """rule id -> alerts whose last trigger (event time) is at or after ``since``."""
        rows: list[Any] = self._read(lambda c: c.execute(  # type: ignore[attr-defined]
            "SELECT rule_id, count(*) FROM alerts WHERE last_trigger >= ? GROUP BY rule_id", (since,)).fetchall())
        return {rule_id: int(n) for rule_id, n in rows}
