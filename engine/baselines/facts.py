"""Store adapter: baseline records travel as *fact events* in the dataset ``wardwatch.baseline``.

Why events and not a separate state table: a fact must commit in the same store call as the events (and the
connector cursor) it was learnt from, or a kill -9 between the two loses it or counts it twice. Every store
already commits ``write(events, cursor)`` atomically, on SQLite and Elasticsearch alike, so facts written
with the batch are restart-safe without a new store contract. A fact holds only what was *new* in its batch
for one local day (per user); records are rebuilt by merging facts (union / minimum), so a duplicate or
out-of-order fact changes nothing. No Sigma logsource maps to ``wardwatch.baseline``, so rules never see
these events. Patient ids are stored as short hashes: a distinct count needs no identifier.
"""

from __future__ import annotations

import hashlib
from typing import Iterator

import orjson

from engine.baselines.model import DayRecord
from engine.events import Event
from engine.store.base import SearchQuery, Store

DATASET = "wardwatch.baseline"
FACT = "wardwatch.baseline.fact"


def patient_hash(patient_id: str) -> str:
    """16 hex digits: enough to count distinct patients of one user-day without keeping the id."""
    return hashlib.blake2b(patient_id.encode(), digest_size=8).hexdigest()


def fact_event(day: str, day_start_utc: str, new: dict[str, DayRecord]) -> Event:
    """The event that records what one batch added to the records of local ``day`` (user -> new part).

    One fact per local day a batch touched (a time-ordered batch touches one or two), so facts add a few
    rows per batch, not one per user."""
    # keys sorted by orjson (in C; UTF-8 byte order is code-point order, so the bytes are those of sorting
    # in Python): the payload, and so the fact's id, depends only on what was learnt, not on dict order
    payload = orjson.dumps({"day": day, "users": {
        user: {"hours": sorted(r.hours), "patients": r.patients, "roles": sorted(r.roles)}
        for user, r in new.items()}}, option=orjson.OPT_SORT_KEYS)
    digest = hashlib.blake2b(payload, digest_size=16).hexdigest()
    return {"@timestamp": day_start_utc, "event.id": f"baseline-{digest}", "event.dataset": DATASET,
            "event.kind": "state", FACT: payload.decode()}


def read_facts(store: Store, start_utc: str, end_utc: str) -> Iterator[tuple[str, str, DayRecord]]:
    """(user, day, facts) of every fact event with ``start_utc <= @timestamp < end_utc``.

    Malformed facts (a hand-edited store) are skipped: a baseline that cannot use them is still correct for
    the rest."""
    for event in store.search(SearchQuery(datasets=[DATASET], start=start_utc, end=end_utc)):
        try:
            data = orjson.loads(event[FACT])
            day = str(data["day"])
            users = data["users"].items()
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError):
            continue
        for user, part in users:
            try:
                record = DayRecord(set(int(h) for h in part["hours"]),
                                   {str(k): str(v) for k, v in part["patients"].items()},
                                   set(str(r) for r in part["roles"]))
            except (KeyError, TypeError, ValueError, AttributeError):
                continue
            yield str(user), day, record
