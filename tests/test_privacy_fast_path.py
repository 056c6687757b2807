"""The batch memories of the privacy enricher change no flag (issue 11, ingest cost).

``PrivacyEnricher.enrich_many`` decides a user's flags once per (user, local day) of a batch, a patient's
once per (patient, local day), and keeps each patient's care context for as long as it holds
(``engine.enrich.care_context``). The oracle is the per-access path as it was before
(tests/privacy_reference): both enrich the same events, and every event must come out with the same fields,
the same values, in the same order (a stored document must read the same).

Inputs: the encounter fixture's hospital (fixtures/privacy/encounters: roster, ADT extract, FHIR export
with CareTeams and RelatedPersons), with random users, patients, times (around transfers, discharges and
the grace periods, the day after a contract ended, odd and non-canonical stamps), overrides, after-hours
reads, batch cuts, both ``encounters_flags`` modes, and encounters added to the live index between
batches, as a FHIR pull does; and the generated hospital of bench/detection_quality.py.
"""

from __future__ import annotations

import json
import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.enrich.encounters import Encounter, NdjsonEncounterSource, Segment
from engine.enrich.privacy import PrivacyEnricher
from engine.events import Event
from tests.privacy_reference.enricher import ReferencePrivacyEnricher

ROOT = Path(__file__).resolve().parent.parent
ENC = ROOT / "fixtures" / "privacy" / "encounters"
CSV_COLUMNS = {"encounter_id": "ENC_ID", "patient_id": "PAT_MRN", "department": "UNIT", "class": "ENC_TYPE",
               "start": "IN_DTTM", "end": "OUT_DTTM", "status": "STATUS", "participants": "CARE_TEAM"}
T0 = datetime(2026, 3, 10, 9, tzinfo=timezone.utc)


def _staff() -> list[tuple[str, str]]:
    rows = (ENC / "staff.csv").read_text(encoding="utf-8").splitlines()[1:]
    return [(r.split(",")[0], r.split(",")[1]) for r in rows if r]


def _patients() -> list[str]:
    ids = {json.loads(line)["subject"]["reference"].split("/")[-1]
           for line in (ENC / "Encounter.ndjson").read_text(encoding="utf-8").splitlines() if line.strip()}
    return sorted(ids)


STAFF = _staff()
PATIENTS = _patients()


def _department_map() -> dict[str, str]:
    """The fixture generator's own unit -> department map (its truth, as in tests/test_enrich_encounters.py)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("encounters_generate", ENC / "generate.py")
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return dict(module.DEPARTMENT_MAP)


DEPARTMENT_MAP = _department_map()


def options(tmp_path: Path, flags: str, source: str) -> dict[str, Any]:
    opts: dict[str, Any] = {"roster_csv": str(ENC / "staff.csv"), "vip_list_file": str(ENC / "vip.txt"),
                            "timezone": "Europe/Berlin", "encounters_department_map": DEPARTMENT_MAP,
                            "encounters_flags": flags, "terminated_grace_hours": 8.0}
    if source in ("csv", "both"):
        opts |= {"encounters_csv": str(ENC / "encounters.csv"), "encounters_csv_columns": CSV_COLUMNS}
    if source in ("ndjson", "both"):
        opts["encounters_ndjson"] = str(ENC)
    return opts


def stamp(rng: random.Random) -> Any:
    when = T0 + timedelta(minutes=rng.randrange(-60 * 24 * 40, 60 * 24 * 10), seconds=rng.random() * 60)
    text = when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"
    odd = rng.random()
    if odd < 0.02:
        return when.astimezone(timezone(timedelta(hours=1))).isoformat()  # not the canonical form
    if odd < 0.03:
        return text.replace(".", ",")                                       # not a time at all
    if odd < 0.035:
        return None
    return text


def accesses(seed: int, count: int) -> list[Event]:
    rng = random.Random(seed)
    out: list[Event] = []
    for n in range(count):
        uid, login = rng.choice(STAFF + [("U9999", "nobody")])
        event: Event = {"@timestamp": stamp(rng), "event.dataset": "ehr.audit" if rng.random() < 0.97 else "vpn.log",
                        "event.id": f"e{n}", "event.action": "read"}
        who = rng.random()
        if who < 0.8:
            event["user.name"] = login
        elif who < 0.9:
            event["user.id"] = uid
        elif who < 0.95:
            event["user.name"], event["user.id"] = login, uid
        elif who < 0.97:
            event["user.name"] = ["a", "list"]   # unhashable: decided without the memory
        if rng.random() < 0.95:
            event["ehr.patient.id"] = rng.choice(PATIENTS + ["P900", "P901", "P_UNKNOWN"])
        event["ehr.break_the_glass"] = rng.random() < 0.05
        event["wardwatch.time.after_hours"] = rng.random() < 0.3
        if rng.random() < 0.05:
            event["wardwatch.user.department"] = rng.choice(["Cardiology", "Emergency", "ICU"])
        out.append(event)
    if rng.random() < 0.7:
        out.sort(key=lambda e: str(e["@timestamp"]))
    return out


def run_both(opts: dict[str, Any], events: list[Event], sizes: list[int],
             add_between: bool = False) -> tuple[list[list[tuple[str, Any]]], list[list[tuple[str, Any]]]]:
    new = PrivacyEnricher.from_config(opts)
    ref = ReferencePrivacyEnricher.from_config(opts)   # its own sources and ward-work memory
    got: list[list[tuple[str, Any]]] = []
    want: list[list[tuple[str, Any]]] = []
    pos = i = 0
    while pos < len(events):
        size = sizes[i % len(sizes)]
        batch = events[pos:pos + size]
        a, b = [dict(e) for e in batch], [dict(e) for e in batch]
        new.enrich_many(a)
        ref.enrich_many(b)
        got += [list(e.items()) for e in a]
        want += [list(e.items()) for e in b]
        if add_between:  # a FHIR pull puts encounters into the live index between two batches
            for enricher in (new, ref):
                for source in enricher.encounters:
                    if isinstance(source, NdjsonEncounterSource):
                        pid = PATIENTS[i % len(PATIENTS)]
                        start = int((T0 - timedelta(days=3)).timestamp() * 1000) + i * 3_600_000
                        seg = Segment(start, start + 5 * 3_600_000, "ICU", f"pulled-{i}", frozenset({"u100"}), "EMER")
                        source.index.put(Encounter(f"pulled-{i}", pid, (seg,)))
        pos, i = pos + size, i + 1
    return got, want


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32), count=st.integers(1, 600), flags=st.sampled_from(["sensitive", "all"]),
       source=st.sampled_from(["csv", "ndjson", "both"]), sizes=st.lists(st.integers(1, 300), min_size=1, max_size=3),
       add_between=st.booleans())
def test_random_accesses_get_the_reference_fields(tmp_path: Path, seed: int, count: int, flags: str, source: str,
                                                  sizes: list[int], add_between: bool) -> None:
    got, want = run_both(options(tmp_path, flags, source), accesses(seed, count), sizes, add_between)
    assert got == want


@pytest.mark.parametrize("flags", ["sensitive", "all"])
def test_the_fixture_fortnight_gets_the_reference_fields(tmp_path: Path, flags: str) -> None:
    events = [json.loads(line) for line in (ENC / "accesses.ndjson").read_text(encoding="utf-8").splitlines()
              if line.strip()]
    got, want = run_both(options(tmp_path, flags, "both"), events, [5000])
    assert any(("ehr.relationship.care_team", True) in fields for fields in got)
    assert got == want


def test_the_day_after_the_end_date_is_decided_by_the_hour_in_one_batch(tmp_path: Path) -> None:
    """The one user flag that is not the same all day: the memory must not give the morning's answer at
    night (grace hours: 8; Berlin is UTC+1 in March)."""
    (tmp_path / "staff.csv").write_text("user_id,login,department,end_date\nU1,leaver,Cardiology,2026-03-09\n",
                                        encoding="utf-8")
    enricher = PrivacyEnricher.from_config({"roster_csv": str(tmp_path / "staff.csv"), "timezone": "Europe/Berlin"})
    batch = [{"@timestamp": ts, "event.dataset": "ehr.audit", "user.name": "leaver", "ehr.patient.id": "P1"}
             for ts in ("2026-03-10T05:00:00.000Z", "2026-03-10T08:00:00.000Z", "2026-03-10T06:30:00.000Z")]
    enricher.enrich_many(batch)
    assert [e["ehr.user.terminated"] for e in batch] == [False, True, False]


@pytest.mark.slow
def test_the_generated_hospital_gets_the_reference_fields(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(ROOT))
    from bench.detection_quality import generate
    from bench.hospital.evaluate import build_config, optional_knobs
    from engine.app import build_connector, build_enrichment
    from engine.config import load_config
    import yaml

    out = tmp_path / "hospital"
    generate(out, 200, 3, 2, 1)
    data = build_config(out, optional_knobs())
    (out / "cfg.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    config = load_config(out / "cfg.yaml")
    connector = build_connector(config, config["connectors"][0])
    events, cursor = [], None
    while True:
        batch = connector.read(cursor, 5000)
        events += batch.events
        cursor = batch.cursor
        if batch.exhausted:
            break
    chain = build_enrichment(config)
    before = [s for s in chain.enrichers if s.name != "privacy"]
    for step in before:
        events = step.enrich_many(events)
    new = next(s for s in chain.enrichers if s.name == "privacy")
    ref = ReferencePrivacyEnricher.beside(next(s for s in build_enrichment(config).enrichers if s.name == "privacy"))
    got, want = [dict(e) for e in events], [dict(e) for e in events]
    for i in range(0, len(events), 5000):
        new.enrich_many(got[i:i + 5000])
        ref.enrich_many(want[i:i + 5000])
    assert len(got) > 10_000
    assert [list(e.items()) for e in got] == [list(e.items()) for e in want]


def test_an_encounter_pulled_between_batches_is_seen_by_the_next_one(tmp_path: Path) -> None:
    """A FHIR pull puts encounters into the index the enricher reads, in place: the care memory of the
    batch before must not hide them."""
    enricher = PrivacyEnricher.from_config(options(tmp_path, "all", "ndjson"))
    source = next(s for s in enricher.encounters if isinstance(s, NdjsonEncounterSource))
    read = {"@timestamp": "2026-02-20T10:00:00.000Z", "event.dataset": "ehr.audit", "user.name": "jmeyer",
            "ehr.patient.id": "P_NEW"}
    first = enricher.enrich_many([dict(read)])[0]
    assert first["ehr.patient.encounter_active"] is False
    start = int(datetime(2026, 2, 20, 8, tzinfo=timezone.utc).timestamp() * 1000)
    source.index.put(Encounter("pulled", "P_NEW", (Segment(start, start + 6 * 3_600_000, "CARD-3B", "pulled",
                                                           frozenset({"u100"}), "IMP"),)))
    second = enricher.enrich_many([dict(read)])[0]
    assert second["ehr.patient.encounter_active"] is True and second["ehr.relationship.care_team"] is True
