"""Ward work (``ehr.relationship.worked_department``): staff working on a ward that is not their roster
department (a nurse sent to help, a resident covering it) open its patients; a snooper opens one chart there
and nothing else. The flag says the user opened at least ``encounters_ward_work_min_patients`` other patients
on the patient's current department in the ``encounters_ward_work_hours`` before the access.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from engine.enrich.privacy import PrivacyEnricher

ROOT = Path(__file__).resolve().parent.parent
FLAG = "ehr.relationship.worked_department"


@pytest.fixture
def site(tmp_path: Path) -> dict[str, Any]:
    """A cardiology nurse (U1), a surgery nurse who is also a patient there (U2, record P9), surgery patients."""
    (tmp_path / "roster.csv").write_text(
        "user_id,login,department,role,patient_id\nU1,cnurse,Cardiology,nurse,\nU2,snurse,General Surgery,nurse,P9\n",
        encoding="utf-8")
    rows = "".join(f"P{i},General Surgery,IMP,2026-03-01 08:00,2026-03-09 12:00\n" for i in range(1, 10))
    (tmp_path / "adt.csv").write_text("patient_id,department,class,start,end\n" + rows
                                      + "P20,Cardiology,IMP,2026-03-01 08:00,2026-03-09 12:00\n", encoding="utf-8")
    return {"roster_csv": str(tmp_path / "roster.csv"), "encounters_csv": str(tmp_path / "adt.csv"),
            "timezone": "Europe/Berlin"}


def read(user: str, patient: str, hh_mm: str, day: int = 4) -> dict[str, Any]:
    return {"@timestamp": f"2026-03-{day:02d}T{hh_mm}:00.000Z", "event.dataset": "ehr.audit",
            "event.id": f"{user}-{patient}-{day}-{hh_mm}", "event.action": "read", "user.name": user,
            "ehr.patient.id": patient}


def test_helping_on_another_ward_explains_the_colleagues_chart(site: dict[str, Any]) -> None:
    enricher = PrivacyEnricher.from_config(site)
    for patient, at in (("P1", "08:10"), ("P2", "08:40"), ("P1", "09:00")):
        enricher.enrich(read("cnurse", patient, at))   # ordinary reads: no flags, but remembered
    colleague = enricher.enrich(read("cnurse", "P9", "10:00"))
    assert colleague["ehr.relationship.patient_is_employee"] is True
    assert colleague[FLAG] is True and colleague["ehr.relationship.same_department"] is False


def test_one_chart_of_another_ward_stays_unexplained(site: dict[str, Any]) -> None:
    enricher = PrivacyEnricher.from_config(site)
    enricher.enrich(read("cnurse", "P20", "08:00"))    # own ward: not surgery
    assert enricher.enrich(read("cnurse", "P9", "09:00"))[FLAG] is False
    assert enricher.enrich(read("cnurse", "P9", "09:05"))[FLAG] is False   # the same chart again explains nothing
    enricher.enrich(read("cnurse", "P1", "09:10"))     # a later access never explains an earlier one
    assert FLAG not in enricher.enrich(read("snurse", "P1", "09:15"))      # P1 is no one's colleague: no flag


def test_more_ward_work_can_be_demanded(site: dict[str, Any]) -> None:
    two = PrivacyEnricher.from_config({**site, "encounters_ward_work_min_patients": 2})
    two.enrich(read("cnurse", "P1", "08:30"))
    assert two.enrich(read("cnurse", "P9", "09:00"))[FLAG] is False      # one other surgery patient: not enough
    two.enrich(read("cnurse", "P1", "09:10"))                              # the same one again: still one
    assert two.enrich(read("cnurse", "P9", "09:20"))[FLAG] is False
    two.enrich(read("cnurse", "P2", "09:30"))
    assert two.enrich(read("cnurse", "P9", "09:40"))[FLAG] is True


def test_only_the_hours_before_count(site: dict[str, Any]) -> None:
    enricher = PrivacyEnricher.from_config(site)
    enricher.enrich(read("cnurse", "P1", "00:30"))
    enricher.enrich(read("cnurse", "P2", "00:40"))
    assert enricher.enrich(read("cnurse", "P9", "09:00"))[FLAG] is False     # more than 8 h ago
    wider = PrivacyEnricher.from_config({**site, "encounters_ward_work_hours": 10})
    wider.enrich(read("cnurse", "P1", "00:30"))
    wider.enrich(read("cnurse", "P2", "00:40"))
    assert wider.enrich(read("cnurse", "P9", "09:00"))[FLAG] is True


def test_knobs(site: dict[str, Any]) -> None:
    off = PrivacyEnricher.from_config({**site, "encounters_ward_work_min_patients": 0})
    for patient, at in (("P1", "08:10"), ("P2", "08:40")):
        off.enrich(read("cnurse", patient, at))
    assert FLAG not in off.enrich(read("cnurse", "P9", "10:00"))
    with pytest.raises(ValueError, match="encounters_ward_work_hours"):
        PrivacyEnricher.from_config({**site, "encounters_ward_work_hours": 30})


@pytest.fixture(scope="module")
def ruleset() -> Any:
    from engine.config import DEFAULTS
    from engine.sigma import load_rules

    rs = load_rules([str(ROOT / "rules" / "privacy" / f"{name}.yml")
                     for name in ("ehr_privacy_coworker_record", "ehr_privacy_vip_record")]
                    + [str(ROOT / "rules" / "healthcare" / "ehr_after_hours_access.yml")],
                    placeholders=DEFAULTS["rules"]["placeholders"])
    assert not rs.errors, rs.errors
    return rs


def fires(ruleset: Any, name: str, event: dict[str, Any]) -> bool:
    return next(r for r in ruleset.rules.values() if r.name == name).matches(event)


def test_coworker_rule_spares_ward_work_but_not_the_lone_chart(site: dict[str, Any], ruleset: Any) -> None:
    enricher = PrivacyEnricher.from_config(site)
    snoop = enricher.enrich(read("cnurse", "P9", "07:00"))
    for patient, at in (("P1", "08:10"), ("P2", "08:40")):
        enricher.enrich(read("cnurse", patient, at))
    helping = enricher.enrich(read("cnurse", "P9", "10:00"))
    assert fires(ruleset, "ehr_privacy_coworker_record", snoop)
    assert not fires(ruleset, "ehr_privacy_coworker_record", helping)


def test_after_hours_rule_spares_ward_work(site: dict[str, Any], ruleset: Any) -> None:
    enricher = PrivacyEnricher.from_config(site)
    baseline = {"wardwatch.time.after_hours": True, "wardwatch.baseline.active_days": 9,
                "wardwatch.baseline.profile": "user", "wardwatch.baseline.unusual_hour": True}
    first = enricher.enrich({**read("cnurse", "P1", "01:00"), **baseline})
    enricher.enrich({**read("cnurse", "P2", "01:10"), **baseline})
    third = enricher.enrich({**read("cnurse", "P3", "01:20"), **baseline})
    assert fires(ruleset, "ehr_after_hours_read", first)
    assert not fires(ruleset, "ehr_after_hours_read", third)


def test_after_hours_rule_in_working_hours_needs_the_users_own_history(ruleset: Any) -> None:
    """Within the site's working hours a new user's role profile (a few days of a handful of colleagues) does
    not call an hour rare on its own; the user's own history does."""
    base = {**read("newnurse", "P1", "09:00"), "wardwatch.time.after_hours": False,
            "wardwatch.baseline.unusual_hour": True}
    new_user = {**base, "wardwatch.baseline.profile": "role", "wardwatch.baseline.active_days": 2}
    for share in (0.09, 0.0):   # even "nobody of the ward's nurses worked at 09:00" is chance in a small group
        assert not fires(ruleset, "ehr_after_hours_read", {**new_user, "wardwatch.baseline.role_hour_share": share})
    assert fires(ruleset, "ehr_after_hours_read",
                 {**base, "wardwatch.baseline.profile": "user", "wardwatch.baseline.active_days": 12})
    assert fires(ruleset, "ehr_after_hours_read",   # after hours the role's voice still decides for a new user
                 {**base, "wardwatch.time.after_hours": True, "wardwatch.baseline.profile": "role",
                  "wardwatch.baseline.active_days": 2})


def test_a_ward_service_role_on_an_admitted_colleague_is_its_job_but_not_before_or_after_the_stay(
        tmp_path: Path, ruleset: Any) -> None:
    """A hospital pharmacist checks the medication of admitted patients on every ward, a few per ward, so ward
    work rarely explains her. The shipped ``privacy_ward_service_roles`` spare her while the patient is
    admitted; the same colleague's chart weeks after discharge is an alert, as is a nurse's."""
    (tmp_path / "roster.csv").write_text(
        "user_id,login,department,role,patient_id\n"
        "U1,cnurse,Cardiology,nurse,\nU2,snurse,General Surgery,nurse,P9\n"
        "U3,apharm,Pharmacy,Clinical Pharmacist,\nU4,pnurse,Paediatrics,nurse,P30\n", encoding="utf-8")
    (tmp_path / "adt.csv").write_text(
        "patient_id,department,class,start,end\n"
        "P9,General Surgery,IMP,2026-03-01 08:00,2026-03-09 12:00\n"
        "P30,Neurology,IMP,2026-01-10 08:00,2026-01-20 12:00\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({"roster_csv": str(tmp_path / "roster.csv"),
                                            "encounters_csv": str(tmp_path / "adt.csv"), "timezone": "Europe/Berlin"})
    admitted = enricher.enrich(read("apharm", "P9", "09:00"))
    discharged = enricher.enrich(read("apharm", "P30", "09:10"))
    assert admitted["ehr.user.role"] == "Clinical Pharmacist" and admitted["ehr.patient.encounter_active"] is True
    assert admitted["ehr.relationship.worked_department"] is False   # her first chart on that ward today
    assert not fires(ruleset, "ehr_privacy_coworker_record", admitted)
    assert discharged["ehr.patient.encounter_active"] is False
    assert fires(ruleset, "ehr_privacy_coworker_record", discharged)
    assert fires(ruleset, "ehr_privacy_coworker_record", enricher.enrich(read("cnurse", "P9", "09:20")))
    vip = {**read("apharm", "P9", "09:30"), "ehr.patient.vip": True}
    assert not fires(ruleset, "ehr_privacy_vip_record", enricher.enrich(vip))
    assert fires(ruleset, "ehr_privacy_vip_record", enricher.enrich({**read("apharm", "P30", "09:40"),
                                                                     "ehr.patient.vip": True}))
