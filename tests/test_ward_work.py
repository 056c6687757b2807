"""The ward-work memory (``ehr.relationship.worked_department``) kept per patient agrees with the per-access one.

``engine.enrich.ward_work.WardWork`` keeps the latest access per (user, department, patient) instead of every
access (issue 11's ingest cost). In time order, which is how ingest adds a stream, it must answer exactly as
the per-access memory it replaced (tests/privacy_reference/ward_work.py) and as a brute-force count over every
access added before; out of order it may count fewer patients, never one the user did not open there.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import engine.enrich.ward_work as ward_work_module
from engine.enrich.ward_work import WardWork
from tests.privacy_reference.ward_work import ReferenceWardWork

WINDOW = 10
USERS = st.sampled_from(["anna", "ben"])
DEPARTMENTS = st.sampled_from(["cardiology", "icu", None])
PATIENTS = st.sampled_from(["P1", "P2", "P3", "P4"])
#: (time step or time, user, department, patient, ask before adding it)
STEP = st.tuples(st.integers(0, 6), USERS, DEPARTMENTS, PATIENTS, st.booleans())


def brute_force(added: list[tuple[str, int, str | None, str]], user: str, ts: int, department: str,
                patient: str, enough: int) -> int:
    """Distinct other patients of the department the user opened in [ts - WINDOW, ts], from every access."""
    found = {p for u, t, d, p in added if u == user and d == department and p != patient and ts - WINDOW <= t <= ts}
    return min(len(found), enough)


@pytest.fixture(params=[20_000, 3], ids=["sweep-rarely", "sweep-every-3-adds"])
def sweep_every(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setattr(ward_work_module, "_SWEEP_EVERY", request.param)
    return request.param


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(STEP, max_size=60))
def test_in_time_order_it_answers_as_every_access_would(steps: list[Any]) -> None:
    for every in (20_000, 3):  # without and with sweeps of the old entries between the questions
        ward_work_module._SWEEP_EVERY = every
        try:
            new, old = WardWork(WINDOW), ReferenceWardWork(WINDOW)
            added: list[tuple[str, int, str | None, str]] = []
            ts = 0
            for step, user, department, patient, ask in steps:
                ts += step
                if ask and department is not None:
                    for enough in (1, 2, 3):
                        expected = brute_force(added, user, ts, department, patient, enough)
                        assert new.others(user, ts, department, patient, enough) == expected
                        assert old.others(user, ts, department, patient, enough) == expected
                new.add(user, ts, department, patient)
                old.add(user, ts, department, patient)
                added.append((user, ts, department, patient))
        finally:
            ward_work_module._SWEEP_EVERY = 20_000


@settings(max_examples=150, deadline=None)
@given(steps=st.lists(st.tuples(st.integers(0, 40), USERS, DEPARTMENTS, PATIENTS, st.booleans()), max_size=60))
def test_out_of_order_it_never_counts_a_patient_not_opened_there_in_the_window(steps: list[Any]) -> None:
    new = WardWork(WINDOW)
    added: list[tuple[str, int, str | None, str]] = []
    for ts, user, department, patient, ask in steps:
        if ask and department is not None:
            for enough in (1, 2, 3):
                assert new.others(user, ts, department, patient, enough) <= brute_force(
                    added, user, ts, department, patient, enough)
        new.add(user, ts, department, patient)
        added.append((user, ts, department, patient))


def test_a_user_idle_for_a_whole_window_is_forgotten(sweep_every: int) -> None:
    memory = WardWork(WINDOW)
    memory.add("anna", 0, "icu", "P1")
    for t in range(1, 5):
        memory.add("ben", 100 + t, "icu", f"P{t}")
    assert memory.others("ben", 105, "icu", "P9", 9) == 4
    # swept (every 3 adds): anna's access is older than every window from the newest access on, so a late
    # question about her finds nothing; unswept it is still held
    assert memory.others("anna", 5, "icu", "P9", 1) == (0 if sweep_every == 3 else 1)
