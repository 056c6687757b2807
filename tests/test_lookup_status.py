"""How each lookup stands, as ``/health`` and the metrics show it (``engine.enrich.lookups.LookupStatus``).

A failing lookup serves its last table, or nothing. The service must say which, and why, and say it again
once the source works: tests/test_blindness.py watches the service do it; these follow each kind of source
through its states.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx

from engine.enrich.encounters import FhirEncounterSource, NdjsonEncounterSource
from engine.enrich.lookups import StaffRoster
from engine.enrich.privacy import PrivacyEnricher
from tests.json_peer import json_peer

ROSTER = "user_id,login,department\nU1,anna,Cardiology\nU2,ben,Emergency\n"
ENCOUNTER = {"resourceType": "Encounter", "id": "E1", "status": "in-progress", "subject": {"reference": "Patient/P1"},
             "period": {"start": "2026-11-02T08:00:00Z"}, "location": [{"location": {"display": "Cardiology"}}]}


def test_a_roster_file_through_missing_loaded_gone_back_and_broken(tmp_path: Path) -> None:
    path = tmp_path / "roster.csv"
    roster = StaffRoster(path)
    status = roster.file.status("privacy.roster")
    assert (status.ok, status.loaded, status.entries, status.loaded_at) == (False, False, None, None)
    assert status.error == "unavailable: No such file or directory"

    path.write_text(ROSTER, encoding="utf-8")
    roster.refresh()
    status = roster.file.status("privacy.roster")
    assert (status.ok, status.entries, status.error) == (True, 2, None) and status.loaded_at is not None

    moved = path.rename(tmp_path / "elsewhere.csv")
    roster.refresh()
    stale = roster.file.status("privacy.roster")
    assert (stale.ok, stale.loaded, stale.entries) == (False, True, 2)  # the old table is served: stale
    assert stale.error == "unavailable: No such file or directory" and stale.loaded_at == status.loaded_at

    moved.rename(path)  # back as it was: nothing to reload, and nothing wrong any more
    roster.refresh()
    assert roster.file.status("privacy.roster").ok

    path.write_bytes("user_id,login,department\nU3,Jürgen,Kardiologie\n".encode("cp1252"))
    roster.refresh()
    broken = roster.file.status("privacy.roster")
    assert not broken.ok and broken.entries == 2 and broken.error.startswith("not reloaded: roster_encoding: ")


def test_an_encounter_export_directory(tmp_path: Path) -> None:
    export = tmp_path / "export"
    source = NdjsonEncounterSource(export)
    assert source.status("privacy.encounters[0]").error == "unavailable: No such file or directory"
    export.mkdir()
    (export / "Encounter.ndjson").write_text(json.dumps(ENCOUNTER) + "\n", encoding="utf-8")
    source.refresh()
    status = source.status("privacy.encounters[0]")
    assert (status.ok, status.entries, status.source) == (True, 1, str(export))
    # a file added to the export is a change of the export: read again, with both files
    (export / "Encounter-2.ndjson").write_text(json.dumps({**ENCOUNTER, "id": "E2"}) + "\n", encoding="utf-8")
    source.refresh()
    assert source.status("privacy.encounters[0]").entries == 2 and len(source.index) == 2
    # a file that no longer decodes keeps the last good index, and says so
    (export / "Encounter-2.ndjson").write_bytes(b'{"resourceType": "Encounter", "id": "E\xe9"}\n')
    source.refresh()
    broken = source.status("privacy.encounters[0]")
    assert (broken.ok, broken.loaded, broken.entries) == (False, True, 2) and len(source.index) == 2
    assert broken.error == "not reloaded: UnicodeDecodeError"


def test_an_encounter_server_whose_pull_fails_then_works() -> None:
    answers = [500]
    bundle = {"resourceType": "Bundle", "entry": [{"resource": ENCOUNTER}]}
    with json_peer(lambda _request: (answers[0], bundle)) as server:
        url = f"{server.base}/r4"
        source = FhirEncounterSource(url, client=httpx.Client(timeout=5))
        status = source.status("privacy.encounters[0]")
        assert (status.ok, status.loaded, status.source) == (False, False, url)
        assert status.error == "Encounter pull failed: server answered 500"
        answers[0] = 200
        source.refresh()
        status = source.status("privacy.encounters[0]")
        assert (status.ok, status.entries, status.error) == (True, 1, None)
        source.close()


def test_the_privacy_enricher_lists_each_source_once(tmp_path: Path) -> None:
    """The patient CSV is also where the surname counts come from: one entry, not two."""
    (tmp_path / "roster.csv").write_text(ROSTER, encoding="utf-8")
    (tmp_path / "patients.csv").write_text("patient_id,family_name\nP1,Meyer\n", encoding="utf-8")
    (tmp_path / "vip.txt").write_text("P1\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({
        "roster_csv": str(tmp_path / "roster.csv"), "patients_csv": str(tmp_path / "patients.csv"),
        "vip_list_file": str(tmp_path / "vip.txt"), "encounters_ndjson": str(tmp_path / "none")})
    assert [(s.name, s.ok, s.entries) for s in enricher.lookups()] == [
        ("privacy.roster", True, 2), ("privacy.vip_list", True, 1), ("privacy.patients[0]", True, 1),
        ("privacy.encounters[0]", False, None)]
