"""The faster baseline step sets exactly the fields the step it replaced set (issue 11, ingest cost).

The oracle is a frozen copy of the step before the cost work (tests/baselines_reference). Both run side
by side, each against its own real SQLite store, over the same batches; every event's
``wardwatch.baseline.*`` fields and every fact event must be identical. Inputs: random users, roles, hours,
patients, event orders and batch cuts (hypothesis), with a restart (``reset``: a new process's memory) in
the middle, and the four-week hospital fixture of tests/test_baselines.py.
"""

from __future__ import annotations

import random
import tempfile
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.baselines import FIELDS, BaselineOptions, Baselines
from engine.baselines.step import RULE_FIELDS
from engine.baselines.facts import FACT, fact_event
from engine.baselines.model import DayRecord, Profile, unusual_hours
from engine.events import Event, format_timestamp
from engine.store import open_store
from engine.store.base import Store
from tests.baselines_reference.step import BaselineOptions as ReferenceOptions
from tests.baselines_reference.step import Baselines as ReferenceBaselines
from tests.test_baselines import day29, hospital

START = datetime(2026, 10, 19, tzinfo=timezone.utc)  # spans the end of European summer time (Oct 25)


def side_by_side(tmp_path: Path, batches: list[list[Event]], options: dict[str, Any],
                 restart_at: int | None = None, explain: bool = True) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(new, reference) fields of every event, in batch order, plus the fact events as the last rows.

    With ``explain`` off the new step stores only the fields the rules read, so the reference's are cut
    down to those (RULE_FIELDS) before comparing."""
    stores: list[Store] = [open_store("sqlite", path=tmp_path / f"{name}.db") for name in ("new", "ref")]
    steps = [Baselines(BaselineOptions(**options, explain=explain)), ReferenceBaselines(ReferenceOptions(**options))]
    out: list[list[dict[str, Any]]] = [[], []]
    try:
        for n, batch in enumerate(batches):
            for side, (step, store) in enumerate(zip(steps, stores)):
                if n == restart_at:
                    step.reset()  # what a new process knows: only the store
                events = [dict(e) for e in batch]
                facts = step.apply(events, store)
                store.write(events + facts)
                names = FIELDS if explain else RULE_FIELDS
                out[side].extend({k: e[k] for k in names if k in e} for e in events)
                out[side].extend(facts)
    finally:
        for store in stores:
            store.close()
    return out[0], out[1]


def cut(events: list[Event], sizes: list[int]) -> list[list[Event]]:
    batches, pos, i = [], 0, 0
    while pos < len(events):
        size = sizes[i % len(sizes)]
        batches.append(events[pos:pos + size])
        pos, i = pos + size, i + 1
    return batches


def random_events(seed: int, users: int, count: int, days: int) -> list[Event]:
    """Events of a few users over ``days``, with odd hours, missing roles, repeated patients, departments,
    non-EHR events and events without a user: every path of the step."""
    rng = random.Random(seed)
    roles = [None, "nurse", "physician", "billing"]
    events: list[Event] = []
    for n in range(count):
        user = rng.randrange(users)
        kind = user % 3
        day = rng.randrange(days)
        hour = rng.uniform(8, 16) if kind == 0 else rng.uniform(22, 30) if kind == 1 else rng.uniform(0, 24)
        when = START + timedelta(days=day, hours=hour)
        event: Event = {"@timestamp": format_timestamp(when), "event.id": f"e{n}",
                        "event.dataset": "ehr.audit" if rng.random() < 0.95 else "vpn.log",
                        "ehr.patient.id": f"P{rng.randrange(1, 40)}"}
        if rng.random() < 0.97:
            event["user.name" if rng.random() < 0.9 else "user.id"] = f"u{user}"
        role = roles[(user + (rng.random() < 0.05)) % len(roles)]
        if role:
            event["ehr.user.role"] = role
        if rng.random() < 0.1:
            event["ehr.user.department"] = "ED"
        if rng.random() < 0.03:
            del event["ehr.patient.id"]
        events.append(event)
    return events


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), users=st.integers(1, 12), count=st.integers(1, 1500),
       days=st.integers(1, 45), shuffled=st.booleans(), sizes=st.lists(st.integers(1, 600), min_size=1, max_size=4),
       restart=st.integers(0, 6), explain=st.booleans(), clean=st.booleans(),
       options=st.fixed_dictionaries({
           "timezone": st.sampled_from(["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]),
           "window_days": st.integers(1, 30), "min_active_days": st.integers(1, 6),
           "min_role_days": st.integers(1, 12), "min_observed_days": st.integers(0, 3),
           "hour_tolerance": st.integers(0, 3), "unusual_share": st.sampled_from([0.0, 0.1, 0.25, 1.0])}))
def test_random_streams_get_the_same_fields_as_the_reference(tmp_path: Path, seed: int, users: int, count: int,
                                                             days: int, shuffled: bool, sizes: list[int],
                                                             restart: int, explain: bool, clean: bool,
                                                             options: dict[str, Any]) -> None:
    events = random_events(seed, users, count, days)
    if clean:  # the batches the step cuts into columns in C: one dataset, a user name and a role on every event
        events = [{k: v for k, v in e.items() if k != "ehr.user.department"} for e in events
                  if e["event.dataset"] == "ehr.audit" and "user.name" in e and "ehr.user.role" in e]
        if seed % 2:  # both peer-group fields on every event: "role / department"
            events = [{**e, "ehr.user.department": f"D{int(e['user.name'][1:]) % 2}"} for e in events]
    if not shuffled:
        events.sort(key=lambda e: (e["@timestamp"], e["event.id"]))
    batches = cut(events, sizes)
    with tempfile.TemporaryDirectory(dir=tmp_path) as run_dir:  # one fresh pair of stores per example
        new, reference = side_by_side(Path(run_dir), batches, options, restart_at=restart, explain=explain)
    assert new == reference


@pytest.mark.parametrize("explain", [True, False])
def test_the_fixture_month_gets_the_same_fields_as_the_reference(tmp_path: Path, explain: bool) -> None:
    events = hospital() + day29()
    new, reference = side_by_side(tmp_path, cut(events, [5000]), {}, explain=explain)
    assert any("wardwatch.baseline.unusual_hour" in fields for fields in new)  # the month really is judged
    assert new == reference


def test_the_fixture_month_shuffled_in_small_batches_gets_the_same_fields(tmp_path: Path) -> None:
    events = hospital(seed=3) + day29()
    random.Random(5).shuffle(events)
    new, reference = side_by_side(tmp_path, cut(events, [700, 130, 2900]), {"timezone": "Europe/Berlin"},
                                  restart_at=3)
    assert new == reference


def reference_fact_payload(day: str, new: dict[str, DayRecord]) -> bytes:
    """How facts.fact_event encoded a fact before it let orjson sort the keys (frozen, the oracle)."""
    return orjson.dumps({"day": day, "users": {
        user: {"hours": sorted(r.hours), "patients": dict(sorted(r.patients.items())), "roles": sorted(r.roles)}
        for user, r in sorted(new.items())}})


@given(new=st.dictionaries(st.text(), st.builds(
    DayRecord, st.sets(st.integers(0, 23)), st.dictionaries(st.text(), st.text()), st.sets(st.text())), max_size=6))
def test_fact_events_are_byte_for_byte_the_reference_encoding(new: dict[str, DayRecord]) -> None:
    """Any user names, patient hashes and roles (non-ASCII included): same payload, so the same fact id and
    a store written before the change deduplicates facts the same way."""
    event = fact_event("2026-11-02", "2026-11-02T00:00:00.000Z", new)
    assert event[FACT].encode() == reference_fact_payload("2026-11-02", new)


@given(sizes=st.tuples(st.integers(0, 300), st.integers(0, 300)), distinct=st.integers(1, 40),
       seed=st.integers(0, 2**32), hour=st.integers(0, 23), day_class=st.integers(0, 1))
def test_profile_shares_over_distinct_masks_are_the_plain_count(sizes: tuple[int, int], distinct: int, seed: int,
                                                                hour: int, day_class: int) -> None:
    """A role's pooled profile counts a share over its distinct masks (model._TALLY_FROM): the same share
    as counting every user-day's mask, for pools below and above that size."""
    rng = random.Random(seed)
    pool = [rng.randrange(2**24) for _ in range(distinct)]  # a role's user-days repeat a few shift patterns
    masks = ([rng.choice(pool) for _ in range(sizes[0])], [rng.choice(pool) for _ in range(sizes[1])])
    profile = Profile(sum(sizes), sizes, masks, None)
    total = sizes[day_class]
    plain = sum(1 for m in masks[day_class] if m >> hour & 1) / total if total else 0.0
    assert profile.shares(day_class, hour) == (plain, round(plain, 3))


@given(sizes=st.lists(st.integers(0, 300), min_size=4, max_size=4), seed=st.integers(0, 2**32),
       cut=st.sampled_from([0.0, 0.001, 0.1, 0.25, 1 / 3, 0.5, 0.9, 1.0]), day_class=st.integers(0, 1),
       voices=st.integers(1, 2))
def test_unusual_hours_are_the_hours_whose_shares_are_below_the_cut(sizes: list[int], seed: int, cut: float,
                                                                    day_class: int, voices: int) -> None:
    """``model.unusual_hours`` (every hour's verdict of a basis at once, step._basis, by lane arithmetic)
    says exactly what comparing each hour's share with the cut says, for the user's voice alone and with
    the peer group's as a second voice; the share is the plain count over the masks."""
    rng = random.Random(seed)
    pool = [rng.randrange(2**24) for _ in range(rng.randint(1, 30))]
    profiles, plain = [], []
    for n in range(voices):
        masks = ([rng.choice(pool) for _ in range(sizes[2 * n])], [rng.choice(pool) for _ in range(sizes[2 * n + 1])])
        profiles.append(Profile(sizes[2 * n] + sizes[2 * n + 1], (sizes[2 * n], sizes[2 * n + 1]), masks, None))
        total = len(masks[day_class])
        plain.append([(sum(1 for m in masks[day_class] if m >> h & 1) / total if total else 0.0) < cut
                      for h in range(24)])
    expected = [all(p[h] for p in plain) for h in range(24)]
    flags = unusual_hours(profiles[0], profiles[1] if voices == 2 else None, day_class, cut)
    assert list(flags) == [int(e) for e in expected]
    assert profiles[0].rare(day_class, cut) == sum(1 << h for h in range(24) if plain[0][h])


@given(merges=st.lists(st.dictionaries(st.sampled_from([f"p{i}" for i in range(12)]),
                                       st.sampled_from([f"2026-11-02T{h:02d}:00:00.000Z" for h in range(24)]),
                                       max_size=5), max_size=8),
       asked=st.lists(st.booleans(), min_size=8, max_size=8))
def test_first_access_times_kept_across_merges_are_the_sorted_times(merges: list[dict[str, str]],
                                                                    asked: list[bool]) -> None:
    """``DayRecord.firsts`` grown in place by ``merge`` (patients new to the day, at or after the last time)
    is always ``sorted(patients.values())``, whether or not it was asked between merges."""
    record = DayRecord()
    for patients, ask in zip(merges, asked):
        record.merge({1}, dict(patients), set())
        if ask:
            assert record.firsts() == sorted(record.patients.values())
    assert record.firsts() == sorted(record.patients.values())


def test_accesses_without_a_patient_keep_the_batch_on_the_column_path(tmp_path: Path, monkeypatch: Any) -> None:
    """A login or a search has no patient field at all. One such access used to send its whole batch event
    by event (``_columns_slowly``: about 2 µs more per event), which real EHR batches always contain."""
    events = [e for e in random_events(7, 6, 800, 10)
              if e["event.dataset"] == "ehr.audit" and "user.name" in e and "ehr.user.role" in e
              and "ehr.user.department" not in e]
    assert any("ehr.patient.id" not in e for e in events) and any("ehr.patient.id" in e for e in events)
    slow_batches: list[int] = []
    original = Baselines._columns_slowly

    def counting(self: Baselines, batch: list[Event]) -> Any:
        slow_batches.append(len(batch))
        return original(self, batch)

    monkeypatch.setattr(Baselines, "_columns_slowly", counting)
    new, reference = side_by_side(tmp_path, cut(sorted(events, key=lambda e: e["@timestamp"]), [300]), {})
    assert new == reference
    assert slow_batches == []
