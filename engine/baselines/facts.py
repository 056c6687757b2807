"""Store adapter: baseline records travel as *fact events* in the dataset ``wardwatch.baseline``.

Why events and not a separate state table: a fact must commit in the same store call as the events (and the
connector cursor) it was learnt from, or a kill -9 between the two loses it or counts it twice. Every store
already commits ``write(events, cursor)`` atomically, on SQLite and Elasticsearch alike, so facts written
with the batch are restart-safe without a new store contract. A fact holds only what was *new* in its batch
for one (user, local day); records are rebuilt by merging facts (union / minimum), so a duplicate or
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


def fact_event(user: str, day: str, day_start_utc: str, new: DayRecord) -> Event:
    """The event that records ``new`` (what one batch added to ``user``'s record of ``day``)."""
    payload = orjson.dumps({"user": user, "day": day, "hours": sorted(new.hours),
                            "patients": dict(sorted(new.patients.items())), "roles": sorted(new.roles)})
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
            record = DayRecord(set(int(h) for h in data["hours"]),
                               {str(k): str(v) for k, v in data["patients"].items()},
                               set(str(r) for r in data["roles"]))
            yield str(data["user"]), str(data["day"]), record
        except (KeyError, TypeError, ValueError, AttributeError, orjson.JSONDecodeError):
            continue
