"""Care-relationship context: encounters (CSV extract, FHIR NDJSON export, FHIR server pull) -> flags.

Fixtures: fixtures/privacy/encounters/ (``generate.py``): a fortnight of encounters around the privacy fixture
people, the accesses of their care teams and ward colleagues, and injected snooping with the alerts expected.
The FHIR server is a real HTTP server in a thread (search by ``_lastUpdated``, paging by ``link[next]``).
"""

from __future__ import annotations

import json
import logging
import shutil
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlencode

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.enrich.encounters import (
    OPEN_END_MS,
    EncounterFormatError,
    EncounterIndex,
    add_resource,
    encounter_from_fhir,
    parse_instant,
)
from engine.enrich.privacy import FIELDS, PrivacyEnricher
from engine.events import timestamp_ms
from tests.json_peer import PeerRequest, json_peer

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "privacy"
ENC = FIX / "encounters"
CARE = ("ehr.patient.department", "ehr.patient.encounter_active", "ehr.relationship.same_department",
        "ehr.relationship.care_team")
T0 = "2026-03-10T09:00:00.000Z"

import sys  # noqa: E402 - the generator's constants (department map) are the fixtures' own truth

sys.path.insert(0, str(ENC))
from generate import DEPARTMENT_MAP  # type: ignore  # noqa: E402

sys.path.remove(str(ENC))

CSV_COLUMNS = {"encounter_id": "ENC_ID", "patient_id": "PAT_MRN", "department": "UNIT", "class": "ENC_TYPE",
               "start": "IN_DTTM", "end": "OUT_DTTM", "status": "STATUS", "participants": "CARE_TEAM"}


def ev(user: str | None, patient: str | None, ts: str = T0) -> dict:
    event: dict[str, Any] = {"@timestamp": ts, "event.dataset": "ehr.audit", "event.id": "x", "event.action": "read"}
    if user:
        event["user.name"] = user
    if patient:
        event["ehr.patient.id"] = patient
    return event


def config(**extra: Any) -> dict[str, Any]:
    return {"roster_csv": str(ENC / "staff.csv"), "vip_list_file": str(ENC / "vip.txt"),
            "timezone": "Europe/Berlin", "encounters_department_map": DEPARTMENT_MAP, "encounters_flags": "all",
            **extra}


@pytest.fixture(scope="module")
def from_csv() -> PrivacyEnricher:
    return PrivacyEnricher.from_config(config(encounters_csv=str(ENC / "encounters.csv"),
                                              encounters_csv_columns=CSV_COLUMNS))


@pytest.fixture(scope="module")
def from_ndjson() -> PrivacyEnricher:
    return PrivacyEnricher.from_config(config(encounters_ndjson=str(ENC)))


def care(event: dict) -> dict:
    return {k: event[k] for k in CARE if k in event}


def at(hours: float) -> str:
    dt = datetime(2026, 3, 10, 9, tzinfo=timezone.utc) + timedelta(hours=hours)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.000Z")


# --- the flags -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("source", ["from_csv", "from_ndjson"])
def test_designed_relationships_at_t0(source: str, request: pytest.FixtureRequest) -> None:
    enricher: PrivacyEnricher = request.getfixturevalue(source)
    # jmeyer (Cardiology) treats lschulz, an inpatient on CARD-3B
    assert care(enricher.enrich(ev("jmeyer", "P903"))) == {
        "ehr.patient.department": "Cardiology", "ehr.patient.encounter_active": True,
        "ehr.relationship.same_department": True, "ehr.relationship.care_team": True}
    # dwolf works on Internal Medicine, where tbauer lies, but is not on the encounter
    assert care(enricher.enrich(ev("dwolf", "P902"))) == {
        "ehr.patient.department": "Internal Medicine", "ehr.patient.encounter_active": True,
        "ehr.relationship.same_department": True, "ehr.relationship.care_team": False}
    # akoch's ED visit ended weeks ago: no encounter, no relationship
    assert care(enricher.enrich(ev("jmeyer", "P901"))) == {
        "ehr.patient.encounter_active": False, "ehr.relationship.same_department": False,
        "ehr.relationship.care_team": False}
    # the VIP moved from the ICU to the ward 6 h before T0: the department follows the transfer
    before = enricher.enrich(ev("dwolf", "P920", at(-7)))
    assert care(before)["ehr.patient.department"] == "Cardiology"
    assert care(enricher.enrich(ev("dwolf", "P920")))["ehr.relationship.care_team"] is False
    # a cancelled booking and an entered-in-error stay never place P940 anywhere
    late = enricher.enrich(ev("dwolf", "P940", at(24)))
    assert late["ehr.patient.encounter_active"] is False and "ehr.patient.department" not in late


@pytest.mark.parametrize("source", ["from_csv", "from_ndjson"])
def test_grace_after_discharge_counts_for_the_team_not_as_active(source: str, request: pytest.FixtureRequest) -> None:
    enricher: PrivacyEnricher = request.getfixturevalue(source)
    # P940's ED visit ends at T0+5h; akoch (on it) writes the letter at T0+10h, and again 3 days later
    letter = enricher.enrich(ev("akoch", "P940", at(10)))
    assert letter["ehr.patient.encounter_active"] is False and letter["ehr.relationship.care_team"] is True
    assert letter["ehr.relationship.same_department"] is True
    later = enricher.enrich(ev("akoch", "P940", at(72)))
    assert later["ehr.relationship.care_team"] is False and later["ehr.relationship.same_department"] is False


def test_csv_and_ndjson_export_agree_on_every_access(from_csv: PrivacyEnricher, from_ndjson: PrivacyEnricher) -> None:
    events = [json.loads(line) for line in (ENC / "accesses.ndjson").read_text(encoding="utf-8").splitlines()]
    assert len(events) > 2000
    differ = []
    for e in events:
        a, b = care(from_csv.enrich(dict(e))), care(from_ndjson.enrich(dict(e)))
        # CareTeams exist only in the FHIR export: their members are care_team there, not in the CSV
        if a != b and not (b.get("ehr.relationship.care_team") and not a.get("ehr.relationship.care_team")):
            differ.append((e["event.id"], a, b))
    assert not differ, differ[:3]
    actives = sum(1 for e in events if from_csv.enrich(dict(e)).get("ehr.patient.encounter_active"))
    assert actives > len(events) // 2  # the accesses really are around the encounters


def test_related_person_and_care_team_from_the_export(from_ndjson: PrivacyEnricher) -> None:
    out = from_ndjson.enrich(ev("jmeyer", "P910"))  # jmeyer is P910's listed contact (RelatedPerson)
    assert out["ehr.relationship.related_person"] is True
    assert from_ndjson.enrich(ev("dwolf", "P910"))["ehr.relationship.related_person"] is False
    team = json.loads((ENC / "CareTeam.ndjson").read_text(encoding="utf-8").splitlines()[0])
    patient = team["subject"]["reference"].split("/")[1]
    member = team["participant"][0]["member"]["reference"].split("/")[1]
    login = next(line.split(",")[1] for line in (ENC / "staff.csv").read_text(encoding="utf-8").splitlines()
                 if line.startswith(member + ","))
    # a CareTeam member is on the team for its whole period, with or without an encounter
    out = from_ndjson.enrich(ev(login, patient, "2026-02-01T03:00:00.000Z"))
    assert out["ehr.relationship.care_team"] is True and out["ehr.patient.encounter_active"] is False


def test_only_documented_fields_and_no_phi(from_ndjson: PrivacyEnricher) -> None:
    out = from_ndjson.enrich(ev("jmeyer", "P903"))
    added = set(out) - set(ev("jmeyer", "P903"))
    assert added <= set(FIELDS)
    assert not any("U2" in str(v) or "enc-" in str(v) for v in out.values())  # no participants, no ids


def test_no_encounter_data_means_absent_flags(tmp_path: Path) -> None:
    enricher = PrivacyEnricher.from_config(config(encounters_csv=str(tmp_path / "not-yet.csv")))
    out = enricher.enrich(ev("jmeyer", "P903"))
    assert not set(CARE) & set(out)
    assert "ehr.relationship.related_person" not in out  # no RelatedPerson data at all


# --- the co-worker and VIP rules with the encounter filters ---------------------------------------------
@pytest.fixture(scope="module")
def ruleset() -> Any:
    sigma = pytest.importorskip("engine.sigma")
    from engine.config import DEFAULTS  # the shipped role lists (privacy_* placeholders)

    rs = sigma.load_rules([str(ROOT / "rules" / "privacy" / f"{name}.yml")
                           for name in ("ehr_privacy_coworker_record", "ehr_privacy_vip_record")],
                          placeholders=DEFAULTS["rules"]["placeholders"])
    assert not rs.errors, rs.errors
    return rs


def alerts(ruleset: Any, name: str, events: list[dict]) -> set[str]:
    rule = next(r for r in ruleset.rules.values() if r.name == name)
    return {e["event.id"] for e in events if rule.matches(e)}


@pytest.mark.parametrize("flags", ["sensitive", "all"])
def test_rules_alert_on_snooping_not_on_the_treating_team(ruleset: Any, flags: str) -> None:
    raw = [json.loads(line) for line in (ENC / "accesses.ndjson").read_text(encoding="utf-8").splitlines()]
    expected = json.loads((ENC / "expected.json").read_text(encoding="utf-8"))
    enricher = PrivacyEnricher.from_config(config(encounters_ndjson=str(ENC), encounters_flags=flags))
    with_context = [enricher.enrich(dict(e)) for e in raw]
    without = PrivacyEnricher.from_config({k: v for k, v in config().items() if not k.startswith("encounters")})
    plain = [without.enrich(dict(e)) for e in raw]
    for name in ("ehr_privacy_coworker_record", "ehr_privacy_vip_record"):
        assert alerts(ruleset, name, with_context) == set(expected[name]), name
        # without the encounters, the same rule also fires on every access of the treating teams
        assert len(alerts(ruleset, name, plain)) > 3 * len(expected[name]), name


def test_sensitive_mode_sets_the_flags_only_where_a_rule_can_alert() -> None:
    """The default: ordinary accesses (most of them) carry no care flags. Only where the patient is
    (``ehr.patient.department``), which the ward-work memory looks up on every access anyway: held alerts
    (engine/alerts/hold.py) read where the user worked next from it. Without ward work, not even that."""
    enricher = PrivacyEnricher.from_config({**config(encounters_ndjson=str(ENC)), "encounters_flags": "sensitive"})
    coworker = enricher.enrich(ev("jmeyer", "P903"))  # lschulz's own record: patient_is_employee
    assert coworker["ehr.relationship.care_team"] is True and coworker["ehr.patient.encounter_active"] is True
    ordinary = enricher.enrich(ev("akoch", "P940"))
    assert set(CARE) & set(ordinary) == {"ehr.patient.department"}
    every = PrivacyEnricher.from_config({**config(encounters_ndjson=str(ENC)), "encounters_flags": "all"})
    assert ordinary["ehr.patient.department"] == every.enrich(ev("akoch", "P940"))["ehr.patient.department"]
    assert "ehr.relationship.related_person" not in ordinary
    no_ward_work = PrivacyEnricher.from_config({**config(encounters_ndjson=str(ENC)), "encounters_flags": "sensitive",
                                                "encounters_ward_work_min_patients": 0})
    assert not set(CARE) & set(no_ward_work.enrich(ev("akoch", "P940")))


def test_overrides_and_after_hours_reads_get_the_care_context_and_the_encounter_class(tmp_path: Path) -> None:
    """Sensitive mode also covers break-the-glass and after-hours (clock) reads: the rules that spare the
    treating team and the patient's ward need the flags there; an emergency encounter's class is on the event."""
    roster = tmp_path / "roster.csv"
    roster.write_text("user_id,login,department,role\nU1,wnurse,Cardiology,Nurse\n", encoding="utf-8")
    adt = tmp_path / "adt.csv"
    adt.write_text("patient_id,department,class,start,end\nP7,Emergency,EMER,2026-03-03 08:00,2026-03-03 12:00\n"
                   "P8,Cardiology,IMP,2026-03-01 08:00,2026-03-09 12:00\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({"roster_csv": str(roster), "encounters_csv": str(adt),
                                            "timezone": "Europe/Berlin"})
    btg = enricher.enrich({**ev("wnurse", "P7", "2026-03-03T09:00:00.000Z"), "ehr.break_the_glass": True})
    assert btg["ehr.patient.encounter_class"] == "EMER" and btg["ehr.patient.department"] == "Emergency"
    night = enricher.enrich({**ev("wnurse", "P8", "2026-03-04T01:00:00.000Z"), "wardwatch.time.after_hours": True})
    assert night["ehr.relationship.same_department"] is True and night["ehr.patient.encounter_active"] is True
    assert night["ehr.patient.encounter_class"] == "IMP"
    day = enricher.enrich({**ev("wnurse", "P8", "2026-03-04T09:00:00.000Z"), "wardwatch.time.after_hours": False})
    assert "ehr.relationship.same_department" not in day and "ehr.patient.encounter_class" not in day


def test_privacy_fixture_positives_still_fire_with_encounters(ruleset: Any) -> None:
    """The encounters are consistent with fixtures/privacy: with them loaded, no positive is lost."""
    enricher = PrivacyEnricher.from_config({
        "roster_csv": str(FIX / "roster.csv"), "patients_csv": str(FIX / "patients.csv"),
        "vip_list_file": str(FIX / "vip.txt"), "timezone": "Europe/Berlin",
        "encounters_ndjson": str(ENC), "encounters_department_map": DEPARTMENT_MAP})
    for name in ("ehr_privacy_coworker_record", "ehr_privacy_vip_record"):
        lines = (FIX / "events" / f"{name}.positive.ndjson").read_text(encoding="utf-8").splitlines()
        events = [enricher.enrich(json.loads(line)) for line in lines]
        assert alerts(ruleset, name, events), name
    treated = enricher.enrich(ev("jmeyer", "P903"))  # the same rule is quiet for lschulz's own doctor
    assert treated["ehr.relationship.patient_is_employee"] is True
    assert not alerts(ruleset, "ehr_privacy_coworker_record", [{**treated, "event.id": "t"}])


def test_records_staff_after_discharge_are_spared_for_30_days(ruleset: Any, tmp_path: Path) -> None:
    """Billing/coding/HIM open a co-worker's or VIP's record after the stay as their job: not alerted within 30
    days of discharge (``ehr.patient.days_since_discharge``); a nurse is, and so is billing after 30 days."""
    roster = tmp_path / "roster.csv"
    roster.write_text("user_id,login,department,role,patient_id\nU1,bclerk,Patient Accounts,Billing Clerk,\n"
                      "U2,nnurse,Surgery,Nurse,\nU3,colleague,Radiology,Radiographer,P7\n", encoding="utf-8")
    adt = tmp_path / "adt.csv"
    adt.write_text("patient_id,department,start,end\nP7,Cardiology,2026-03-01 08:00,2026-03-05 12:00\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({"roster_csv": str(roster), "encounters_csv": str(adt),
                                            "timezone": "Europe/Berlin"})
    five_days = enricher.enrich({**ev("bclerk", "P7", "2026-03-10T09:00:00.000Z"), "event.id": "a"})
    assert five_days["ehr.patient.days_since_discharge"] == 4 and five_days["ehr.patient.encounter_active"] is False
    late = enricher.enrich({**ev("bclerk", "P7", "2026-04-20T09:00:00.000Z"), "event.id": "b"})
    nurse = enricher.enrich({**ev("nnurse", "P7", "2026-03-10T09:00:00.000Z"), "event.id": "c"})
    assert alerts(ruleset, "ehr_privacy_coworker_record", [five_days, late, nurse]) == {"b", "c"}
    during = enricher.enrich({**ev("bclerk", "P7", "2026-03-03T09:00:00.000Z"), "event.id": "d"})
    assert "ehr.patient.days_since_discharge" not in during  # still admitted: concurrent coding, interim bill
    assert not alerts(ruleset, "ehr_privacy_coworker_record", [during])


def test_a_float_pool_nurse_opening_a_colleague_on_a_ward_she_does_not_work_is_alerted(ruleset: Any,
                                                                                     tmp_path: Path) -> None:
    """Float pool staff are sent to any ward, but not to every ward at once. Counting them as the ward of every
    admitted patient (the old default) hid a float nurse's snoop on a colleague admitted anywhere (seed 4 of
    bench/detection_quality.py: one of three co-worker incidents missed). What explains their work is what
    explains anyone's on a ward not their own: the ward work before the chart (``worked_department``) and
    the rule's hold after it."""
    roster = tmp_path / "roster.csv"
    roster.write_text("user_id,login,department,patient_id\nU1,fnurse,Nursing Float Pool,\n"
                      "U2,colleague,Radiology,P7\n", encoding="utf-8")
    adt = tmp_path / "adt.csv"
    adt.write_text("patient_id,department,start,end\nP7,Cardiology,2026-03-01 08:00,2026-03-05 12:00\n"
                   "P8,Cardiology,2026-03-02 08:00,2026-03-06 12:00\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({"roster_csv": str(roster), "encounters_csv": str(adt),
                                            "timezone": "Europe/Berlin"})
    snoop = enricher.enrich({**ev("fnurse", "P7", "2026-03-03T09:00:00.000Z"), "event.id": "snoop"})
    assert snoop["ehr.relationship.same_department"] is False
    assert alerts(ruleset, "ehr_privacy_coworker_record", [snoop]) == {"snoop"}
    # sent to Cardiology that morning: she opened another Cardiology patient first, so the chart is her work
    enricher.enrich({**ev("fnurse", "P8", "2026-03-04T07:10:00.000Z"), "event.id": "work"})
    worked = enricher.enrich({**ev("fnurse", "P7", "2026-03-04T07:40:00.000Z"), "event.id": "worked"})
    assert worked["ehr.relationship.worked_department"] is True
    assert not alerts(ruleset, "ehr_privacy_coworker_record", [worked])


def test_float_departments_a_site_names_count_as_the_ward_of_any_admitted_patient(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    roster.write_text("user_id,login,department\nU1,fnurse,Nursing Float Pool\nU2,springer,Springerpool\n",
                      encoding="utf-8")
    adt = tmp_path / "adt.csv"
    adt.write_text("patient_id,department,start,end\nP7,Cardiology,2026-03-01 08:00,2026-03-05 12:00\n", encoding="utf-8")
    admitted, later = "2026-03-03T09:00:00.000Z", "2026-03-20T09:00:00.000Z"
    default = PrivacyEnricher.from_config({"roster_csv": str(roster), "encounters_csv": str(adt),
                                           "encounters_flags": "all", "timezone": "Europe/Berlin"})
    assert default.enrich(ev("fnurse", "P7", admitted))["ehr.relationship.same_department"] is False
    site = PrivacyEnricher.from_config({"roster_csv": str(roster), "encounters_csv": str(adt),
                                        "encounters_flags": "all", "encounters_float_departments": ["*float*"]})
    assert site.enrich(ev("fnurse", "P7", admitted))["ehr.relationship.same_department"] is True
    assert site.enrich(ev("fnurse", "P7", later))["ehr.relationship.same_department"] is False
    assert site.enrich(ev("springer", "P7", admitted))["ehr.relationship.same_department"] is False


# --- bad input, reload, options -------------------------------------------------------------------------
def test_bad_csv_rows_one_line_each_naming_file_line_and_column(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "adt.csv"
    path.write_text("patient_id,department,start,end\n"
                    "P1,Cardiology,2026-03-10 08:00,\n"
                    "P2,Cardiology,gestern,\n"
                    ",Cardiology,2026-03-10 08:00,\n"
                    "P3,Cardiology,2026-03-10 08:00,2026-03-09 08:00\n"
                    "P4,Cardiology,2026-03-10 08:00,2026-03-11\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        enricher = PrivacyEnricher.from_config(config(encounters_csv=str(path)))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["adt.csv:3: start: not a date/time; record skipped",
                     "adt.csv:4: patient_id: empty; record skipped",
                     "adt.csv:5: end: before start; record skipped"]
    assert "gestern" not in caplog.text and "P3" not in caplog.text  # values never reach the log
    assert enricher.enrich(ev("jmeyer", "P1"))["ehr.patient.encounter_active"] is True
    # a bare end date is the whole day: still admitted at 23:30 Berlin on the 11th
    assert enricher.enrich(ev("jmeyer", "P4", "2026-03-11T22:30:00.000Z"))["ehr.patient.encounter_active"] is True
    assert enricher.enrich(ev("jmeyer", "P4", "2026-03-11T23:30:00.000Z"))["ehr.patient.encounter_active"] is False


def test_bad_ndjson_lines_one_line_each(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    good = json.loads((ENC / "Encounter.ndjson").read_text(encoding="utf-8").splitlines()[0])
    no_subject = {**good, "id": "x2"}
    del no_subject["subject"]
    bad_period = {**good, "id": "x3", "period": {"start": "soon"}}
    (tmp_path / "Encounter.ndjson").write_text(
        "\n".join([json.dumps(good), "{not json", json.dumps(no_subject), json.dumps(bad_period), "[1]",
                   json.dumps({"resourceType": "Patient", "id": "p"})]) + "\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        enricher = PrivacyEnricher.from_config(config(encounters_ndjson=str(tmp_path)))
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert lines == ["Encounter.ndjson:2: not JSON; record skipped",
                     "Encounter.ndjson:3: subject: no Patient reference; record skipped",
                     "Encounter.ndjson:4: period: not a date/time; record skipped",
                     "Encounter.ndjson:5: not a JSON object; record skipped"]
    assert enricher.enrich(ev("jmeyer", "P903"))["ehr.relationship.care_team"] is True


def test_reload_on_change_and_a_broken_header_keeps_the_old_table(tmp_path: Path) -> None:
    path = tmp_path / "adt.csv"
    path.write_text("patient_id,department,start,end,participants\nP1,Cardiology,2026-03-10 08:00,,U104\n",
                    encoding="utf-8")
    enricher = PrivacyEnricher.from_config(config(encounters_csv=str(path)))
    assert enricher.enrich(ev("dwolf", "P1"))["ehr.relationship.care_team"] is True
    path.write_text("patient_id,department,start,end,participants\nP1,Cardiology,2026-03-10 08:00,,U100\n"
                    "P2,Internal Medicine,2026-03-10 08:00,,\n", encoding="utf-8")
    enricher.refresh()
    assert enricher.enrich(ev("dwolf", "P1"))["ehr.relationship.care_team"] is False
    assert enricher.enrich(ev("dwolf", "P2"))["ehr.relationship.same_department"] is True
    path.write_text("who,where\nP1,Cardiology\n", encoding="utf-8")
    enricher.refresh()
    assert enricher.enrich(ev("dwolf", "P2"))["ehr.relationship.same_department"] is True


@pytest.mark.parametrize(("options", "key"), [
    ({"encounters_csv_columns": {"admission": "ADM"}}, "encounters_csv_columns.admission"),
    ({"encounters_fhir_department_from": ["ward"]}, "encounters_fhir_department_from"),
    ({"encounters_grace_after_hours": -1}, "encounters_grace_after_hours"),
    ({"encounter_csv": "x.csv"}, "encounter_csv"),
    ({"encounters_fhir_base_url": "http://fhir.hospital.example/r4", "encounters_fhir_token_env": "T"},
     "encounters_fhir_base_url"),
])
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        PrivacyEnricher.from_config(options)


def test_missing_mapped_column_stops_the_start(tmp_path: Path) -> None:
    shutil.copy(ENC / "encounters.csv", tmp_path / "adt.csv")
    with pytest.raises(ValueError, match=r"encounters_csv_columns\.start: column 'ADMIT' is not in the header"):
        PrivacyEnricher.from_config(config(encounters_csv=str(tmp_path / "adt.csv"),
                                           encounters_csv_columns={**CSV_COLUMNS, "start": "ADMIT"}))


# --- FHIR server ----------------------------------------------------------------------------------------
class EncounterServer:
    """``GET /fhir/{type}?_lastUpdated=ge..&_sort=_lastUpdated&_count=N`` with ``link[next]`` paging (the
    answer of a ``json_peer``; ``base`` is set once it runs)."""

    def __init__(self, token: str | None = None):
        self.resources: dict[str, dict] = {}
        self.queries: list[dict[str, list[str]]] = []
        self.fail = 0
        self.token = token
        self.base = ""
        self.next_base: str | None = None  # a paging link to another origin (a misconfigured proxy)

    def put(self, resource: dict) -> None:
        self.resources[resource["resourceType"] + "/" + resource["id"]] = resource

    def answer(self, request: PeerRequest) -> tuple[int, dict]:
        q = request.query
        self.queries.append({**q, "path": [request.route]})
        if self.fail:
            self.fail -= 1
            return 500, {"resourceType": "OperationOutcome"}
        if self.token and request.headers.get("Authorization") != f"Bearer {self.token}":
            return 401, {"resourceType": "OperationOutcome"}
        kind = request.route.rsplit("/", 1)[-1]
        items = sorted((r for r in self.resources.values() if r["resourceType"] == kind),
                       key=lambda r: (r["meta"]["lastUpdated"], r["id"]))
        for cond in q.get("_lastUpdated", []):
            bound = cond[2:]
            items = [r for r in items if (r["meta"]["lastUpdated"] >= bound if cond[:2] == "ge"
                                          else r["meta"]["lastUpdated"] > bound)]
        count, offset = int(q.get("_count", ["50"])[0]), int(q.get("_offset", ["0"])[0])
        bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset", "link": [],
                                  "entry": [{"resource": r} for r in items[offset:offset + count]]}
        if offset + count < len(items):
            nq = {k: v[0] for k, v in q.items()} | {"_offset": str(offset + count)}
            bundle["link"].append({"relation": "next",
                                   "url": f"{self.next_base or self.base}{request.route}?{urlencode(nq)}"})
        return 200, bundle


@pytest.fixture
def fhir_server() -> Iterator[EncounterServer]:
    server = EncounterServer(token="s3cret")
    with json_peer(server.answer) as peer:
        server.base = peer.base
        yield server


def export(name: str) -> list[dict]:
    return [json.loads(line) for line in (ENC / name).read_text(encoding="utf-8").splitlines()]


def test_fhir_pull_pages_then_increments(fhir_server: EncounterServer, monkeypatch: pytest.MonkeyPatch,
                                         caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ENC_TOKEN", "s3cret")
    for resource in export("Encounter.ndjson") + export("RelatedPerson.ndjson"):
        fhir_server.put(resource)
    enricher = PrivacyEnricher.from_config(config(
        encounters_fhir_base_url=fhir_server.base + "/fhir", encounters_fhir_token_env="ENC_TOKEN",
        encounters_fhir_page_size=50, encounters_fhir_resource_types=["Encounter", "RelatedPerson"]))
    first = len(fhir_server.queries)
    assert first >= 430 // 50 + 1  # every page of the first search
    assert "_lastUpdated" not in fhir_server.queries[0]
    assert care(enricher.enrich(ev("jmeyer", "P903")))["ehr.relationship.care_team"] is True
    assert enricher.enrich(ev("jmeyer", "P910"))["ehr.relationship.related_person"] is True
    assert enricher.enrich(ev("dwolf", "P902"))["ehr.relationship.care_team"] is False

    # tbauer's encounter gets dwolf as a participant; lschulz's is found to be entered in error
    p902 = next(r for r in export("Encounter.ndjson") if r["subject"]["reference"] == "Patient/P902")
    p903 = next(r for r in export("Encounter.ndjson") if r["subject"]["reference"] == "Patient/P903")
    later = {"versionId": "2", "lastUpdated": "2026-03-12T07:00:00.000Z"}
    fhir_server.put({**p902, "meta": later, "participant": p902["participant"] + [
        {"individual": {"reference": "Practitioner/U104"}}]})
    fhir_server.put({**p903, "meta": later, "status": "entered-in-error"})
    del fhir_server.queries[:]
    enricher.refresh()
    since = {q["path"][0]: q["_lastUpdated"][0] for q in fhir_server.queries}
    # from the greatest lastUpdated seen, less the 5 min overlap: what changed, and the overlap read again
    assert since == {"/fhir/Encounter": "ge2026-03-12T05:55:00.000Z",
                     "/fhir/RelatedPerson": "ge2026-02-08T08:55:00.000Z"}
    assert len(fhir_server.queries) < first // 2
    assert enricher.enrich(ev("dwolf", "P902"))["ehr.relationship.care_team"] is True
    assert enricher.enrich(ev("jmeyer", "P903"))["ehr.patient.encounter_active"] is False

    fhir_server.fail = 5  # an outage: one line, the index stays
    with caplog.at_level(logging.WARNING):
        enricher.refresh()
    assert "pull failed (server answered 500)" in caplog.text and "s3cret" not in caplog.text
    assert enricher.enrich(ev("dwolf", "P902"))["ehr.relationship.care_team"] is True


def test_fhir_token_refused_adds_nothing(fhir_server: EncounterServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ENC_TOKEN", "wrong")
    fhir_server.put(export("Encounter.ndjson")[0])
    enricher = PrivacyEnricher.from_config(config(encounters_fhir_base_url=fhir_server.base + "/fhir",
                                                  encounters_fhir_token_env="ENC_TOKEN"))
    assert not set(CARE) & set(enricher.enrich(ev("jmeyer", "P903")))  # never pulled: could not tell


# --- properties -----------------------------------------------------------------------------------------
json_value = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner,
                                                                                      max_size=3), max_leaves=12)
element = st.sampled_from(["id", "status", "subject", "period", "class", "participant", "location",
                           "serviceType", "serviceProvider", "actualPeriod"])


@settings(max_examples=200, deadline=None)
@given(st.dictionaries(element, json_value, max_size=8), st.booleans())
def test_encounter_parser_never_raises_anything_else(fields: dict, real_subject: bool) -> None:
    resource = {"resourceType": "Encounter", **fields}
    if real_subject:
        resource["subject"] = {"reference": "Patient/P1"}
        resource.setdefault("id", "e1")
    try:
        enc = encounter_from_fhir(resource)
    except EncounterFormatError:
        return
    if enc is not None:
        assert enc.patient_id and enc.segments
        assert all(s.end_ms >= s.start_ms for s in enc.segments)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(["CareTeam", "RelatedPerson", "Encounter", "Patient"]),
       st.dictionaries(st.sampled_from(["id", "status", "subject", "patient", "period", "participant",
                                        "identifier", "active", "contact"]), json_value, max_size=6))
def test_care_team_and_related_person_parsers_never_raise_anything_else(kind: str, fields: dict) -> None:
    index = EncounterIndex()
    try:
        add_resource(index, {"resourceType": kind, **fields}, timezone.utc)
    except EncounterFormatError:
        return
    index.active("P1", 0)
    index.related_keys("P1")


instants = st.integers(min_value=1_700_000_000_000, max_value=1_800_000_000_000)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(instants, st.integers(min_value=0, max_value=10 * 86_400_000), st.booleans()),
                min_size=1, max_size=6), instants)
def test_index_lookup_matches_brute_force(stays: list[tuple[int, int, bool]], probe: int) -> None:
    index = EncounterIndex()
    resources = []
    for i, (start, length, open_ended) in enumerate(stays):
        period = {"start": datetime.fromtimestamp(start / 1000, tz=timezone.utc).isoformat()}
        if not open_ended:
            period["end"] = datetime.fromtimestamp((start + length) / 1000, tz=timezone.utc).isoformat()
        resources.append({"resourceType": "Encounter", "id": f"e{i}", "status": "in-progress",
                          "subject": {"reference": "Patient/P1"}, "period": period})
    for r in resources:
        enc = encounter_from_fhir(r)
        assert enc is not None
        index.put(enc)
    got = {s.encounter_id for s in index.active("P1", probe)}
    want = set()
    for i, (start, length, open_ended) in enumerate(stays):
        s_ms = timestamp_ms(datetime.fromtimestamp(start / 1000, tz=timezone.utc))
        e_ms = OPEN_END_MS if open_ended else timestamp_ms(
            datetime.fromtimestamp((start + length) / 1000, tz=timezone.utc))
        if s_ms <= probe < e_ms or s_ms == e_ms == probe:
            want.add(f"e{i}")
    assert got == want


def test_parse_instant_local_and_offset_forms() -> None:
    from zoneinfo import ZoneInfo

    berlin = ZoneInfo("Europe/Berlin")
    assert parse_instant("10.03.2026 10:00", berlin) == timestamp_ms("2026-03-10T09:00:00.000Z")
    assert parse_instant("2026-03-10T10:00:00+01:00", timezone.utc) == timestamp_ms("2026-03-10T09:00:00.000Z")
    assert parse_instant("2026-03-10", berlin, end=True) == timestamp_ms("2026-03-10T23:00:00.000Z")
    with pytest.raises(EncounterFormatError):
        parse_instant("next tuesday", berlin)
    assert parse_instant("202603101000", berlin) == timestamp_ms("2026-03-10T09:00:00.000Z")  # HL7 v2 TS
    assert parse_instant("03/10/2026 10:00", berlin) == timestamp_ms("2026-03-10T09:00:00.000Z")  # US order
    assert parse_instant("10/03/2026 10:00", berlin, fmt="%d/%m/%Y %H:%M") == timestamp_ms("2026-03-10T09:00:00.000Z")
    assert parse_instant("10/03/2026", berlin, end=True, fmt="%d/%m/%Y") == timestamp_ms("2026-03-10T23:00:00.000Z")


def test_csv_time_format_option(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / "adt.csv"
    path.write_text("patient_id,department,start,end\nP1,Cardiology,09/03/2026 08:00,11/03/2026 12:00\n"
                    "P2,Cardiology,2026-03-09 08:00,\n", encoding="utf-8")
    with caplog.at_level(logging.WARNING):
        enricher = PrivacyEnricher.from_config(config(encounters_csv=str(path),
                                                      encounters_csv_time_format="%d/%m/%Y %H:%M"))
    assert enricher.enrich(ev("jmeyer", "P1"))["ehr.patient.encounter_active"] is True  # 9 to 11 March
    assert "adt.csv:3: start: not a date/time in the format %d/%m/%Y %H:%M; record skipped" in caplog.text


@settings(max_examples=200, deadline=None)
@given(st.datetimes(min_value=datetime(1990, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(timezone.utc)))
def test_fast_timestamp_path_equals_the_engine_parser(dt: datetime) -> None:
    enricher = PrivacyEnricher()
    ts = dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"
    assert enricher._timestamp_ms(ts) == timestamp_ms(ts)
    assert enricher._timestamp_ms("2026-03-10T10:00:00+01:00") == timestamp_ms("2026-03-10T09:00:00.000Z")


def test_fhir_params_are_sent_and_a_foreign_next_link_is_not_followed(
        fhir_server: EncounterServer, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setenv("ENC_TOKEN", "s3cret")
    for resource in export("Encounter.ndjson"):
        fhir_server.put(resource)
    fhir_server.next_base = "http://localhost:1"  # same host, another origin: the token must not go there
    with caplog.at_level(logging.WARNING):
        enricher = PrivacyEnricher.from_config(config(
            encounters_fhir_base_url=fhir_server.base + "/fhir", encounters_fhir_token_env="ENC_TOKEN",
            encounters_fhir_page_size=100, encounters_fhir_params={"date": "ge2026-02-01"}))
    assert fhir_server.queries[0]["date"] == ["ge2026-02-01"] and len(fhir_server.queries) == 1
    assert "next link leaves the server's origin; not followed" in caplog.text
    # the first page was kept, but the pull did not complete: it is retried from the start next time
    assert enricher.encounters[0].index and not enricher.encounters[0].loaded


@pytest.mark.parametrize(("rule", "flag"), [("ehr_privacy_deceased_patient", {"ehr.patient.deceased": True}),
                                            ("ehr_privacy_btg_outside_emergency", {"ehr.break_the_glass": True}),
                                            ("ehr_privacy_same_last_name", {"ehr.relationship.same_last_name": True,
                                                                            "ehr.relationship.same_last_name_rare": True})])
def test_every_rule_that_spares_the_patients_ward_spares_its_ward_work_too(rule: str, flag: dict) -> None:
    """The float nurse sent to Paediatrics who had opened other Paediatrics patients before this one (the death
    notes of a patient who died on the ward, a rapid-response override, a namesake) works there, as anyone on
    the ward's roster does. Without it, 5 of 7 false cases of the 200-staff seed 1 were such charts."""
    sigma = pytest.importorskip("engine.sigma")
    from engine.config import DEFAULTS

    rs = sigma.load_rules([str(ROOT / "rules" / "privacy" / f"{rule}.yml")],
                          placeholders=DEFAULTS["rules"]["placeholders"])
    assert not rs.errors, rs.errors
    base = {**ev("fnurse", "P7"), "event.id": "w", "ehr.user.role": "nurse", "ehr.user.department": "Nursing Float Pool",
            "ehr.user.on_roster": True, "ehr.patient.encounter_active": True, "ehr.patient.department": "Paediatrics",
            "ehr.relationship.same_department": False, "ehr.relationship.care_team": False, **flag}
    assert alerts(rs, rule, [{**base, "ehr.relationship.worked_department": False, "event.id": "snoop"}]) == {"snoop"}
    assert alerts(rs, rule, [{**base, "ehr.relationship.worked_department": True}]) == set()
    discharged = {**base, "ehr.patient.encounter_active": False, "ehr.relationship.worked_department": True,
                  "event.id": "after"}  # ward work counts only while the patient is on that ward
    assert alerts(rs, rule, [discharged]) == {"after"}


def test_a_patients_listed_contact_from_the_fhir_patient_resource(tmp_path: Path) -> None:
    """``Patient.contact`` (next of kin) is how most EHR exports list relatives. R4 gives a contact no
    identifier, so a staff member is the contact when the family name and the address are hers: akoch,
    Lindenweg 3, 10117 on the roster. A Patient exported again without the contact drops it."""
    export = tmp_path / "export"
    export.mkdir()
    encounter = {"resourceType": "Encounter", "id": "E-777", "status": "in-progress",
                 "subject": {"reference": "Patient/P777"}, "period": {"start": "2026-03-09T08:00:00Z"},
                 "location": [{"location": {"display": "Station 5"}}]}
    (export / "Encounter.ndjson").write_text(json.dumps(encounter) + "\n", encoding="utf-8")
    patient = {"resourceType": "Patient", "id": "P777", "name": [{"family": "Koch", "given": ["Erich"]}],
               "contact": [{"relationship": [{"coding": [{"code": "N"}]}],
                            "name": {"family": "KOCH", "given": ["Anna"]},
                            "address": {"line": ["Lindenweg  3"], "postalCode": "10117"}},
                           {"name": {"family": "Wolf"}}]}  # no address: matches nobody
    (export / "Patient.ndjson").write_text(json.dumps(patient) + "\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config(config(encounters_ndjson=str(export)))
    assert enricher.enrich(ev("akoch", "P777"))["ehr.relationship.related_person"] is True
    assert enricher.enrich(ev("jmeyer", "P777"))["ehr.relationship.related_person"] is False
    assert enricher.enrich(ev("dwolf", "P777"))["ehr.relationship.related_person"] is False
    # the daughter shares neither the patient's home nor, married, need she share his name: the listed-relative
    # rule alerts on her read alone
    from engine.app import alerts_over_sample
    from engine.sigma import load_rules

    reads = [dict(enricher.enrich(ev(user, "P777")), **{"event.id": user}) for user in ("akoch", "jmeyer")]
    ruleset = load_rules([str(ROOT / "rules" / "privacy" / "ehr_privacy_listed_relative.yml")])
    assert [a.evidence for a in alerts_over_sample(ruleset, reads)] == [["akoch"]]

    del patient["contact"]
    (export / "Patient.ndjson").write_text(json.dumps(patient) + "\n", encoding="utf-8")
    enricher.refresh()
    assert "ehr.relationship.related_person" not in enricher.enrich(ev("akoch", "P777"))  # none listed anywhere
