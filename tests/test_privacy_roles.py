"""Roles in privacy policy and meaningful surnames (issue 11 items 2 and 4), as a privacy officer sees them.

A hospital of 6,000 patients (300 Smiths, two Kowalczyks, everyone else with a unique name), a roster with a
``role`` column, events enriched by ``PrivacyEnricher`` and judged by the shipped ``rules/privacy`` with the
shipped placeholder lists (``engine.config.DEFAULTS``): billing/HIM/coding opening a deceased patient is
quiet, a nurse is not; an ED role may break the glass; "Smith opens Smith" is quiet unless the postcode or a
listed relationship says family, "Kowalczyk opens Kowalczyk" alerts.
"""

from __future__ import annotations

import csv
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.config import DEFAULTS, ConfigError, load_config
from engine.enrich.lookups import (
    ColumnMappingError,
    PatientFacts,
    PatientSource,
    SurnameFrequencies,
    SurnameFrequencyFile,
    name_parts,
    normalise_name,
)
from engine.enrich.privacy import PrivacyEnricher
from engine.plugins import InvalidOption
from engine.sigma import load_rules

ROOT = Path(__file__).resolve().parent.parent
TS = "2026-03-10T09:00:00.000Z"

ROSTER = [
    # user_id, login, family_name, department, JOB_TITLE, postal_code
    ("U1", "asmith", "Smith", "Cardiology", "Staff Nurse", "10115"),
    ("U2", "bkowalczyk", "Kowalczyk", "Oncology", "Physician", "20001"),
    ("U3", "cweber", "Weber", "Patient Financial Services", "Billing Specialist", "20002"),
    ("U4", "dnovak", "Novak", "Cardiology", "Clinical Coder", "20003"),
    ("U5", "ebrandt", "Brandt", "Health Information Management", "", "20004"),
    ("U6", "ffischer", "Fischer", "Cardiology", "ED Physician", "20005"),
    ("U7", "gokafor", "Okafor", "Oncology", "Nurse", "20006"),
    ("U8", "hhuber", "Huber-Kowalczyk", "Radiology", "Radiographer", "20007"),
    ("U9", "iito", "Ito", "Clinical Trials Unit", "Research Associate", "20008"),
]


def filler_name(i: int) -> str:
    """A unique, letters-only family name for patient ``i`` (normalisation keeps letters only)."""
    letters = ""
    i += 26 * 26
    while i:
        i, r = divmod(i, 26)
        letters += string.ascii_lowercase[r]
    return "Q" + letters


def write_patients(path: Path, total: int = 6000) -> None:
    rows = [("P-SMITH-0", "Smith", "10115", "")]  # a Smith in asmith's postcode
    rows += [(f"P-SMITH-{i}", "Smith", f"3{i:04d}", "") for i in range(1, 300)]
    rows += [("P-KOW-1", "Kowalczyk", "40001", ""), ("P-KOW-2", "Kowalczyk", "40002", "")]
    rows += [("P-DEAD", "Zeller", "40003", "2026-01-01")]
    rows += [(f"P-{i}", filler_name(i), "50000", "") for i in range(total - len(rows))]
    with path.open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["patient_id", "family_name", "postal_code", "deceased_date"])
        w.writerows(rows)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("roles")
    with (root / "roster.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["user_id", "login", "family_name", "department", "JOB_TITLE", "postal_code"])
        w.writerows(ROSTER)
    write_patients(root / "patients.csv")
    return root


@pytest.fixture(scope="module")
def enricher(site: Path) -> PrivacyEnricher:
    return PrivacyEnricher.from_config({"roster_csv": str(site / "roster.csv"), "roster_columns": {"role": "JOB_TITLE"},
                                        "patients_csv": str(site / "patients.csv"), "timezone": "Europe/Berlin"})


@pytest.fixture(scope="module")
def rules() -> Any:
    rs = load_rules([str(ROOT / "rules" / "privacy")], placeholders=DEFAULTS["rules"]["placeholders"])
    assert not rs.errors, rs.errors
    return {r.name: r for r in rs.rules.values()}


def access(enricher: PrivacyEnricher, user: str, patient: str, **extra: Any) -> dict:
    event = {"@timestamp": TS, "event.dataset": "ehr.audit", "event.action": "read", "user.name": user,
             "ehr.patient.id": patient, **extra}
    return enricher.enrich(event)


def alerts(rules: Any, event: dict) -> set[str]:
    return {name for name, rule in rules.items() if rule.level != "informational" and rule.matches(event)}


# --- roles -------------------------------------------------------------------------------------------------
def test_role_comes_from_the_mapped_roster_column(enricher: PrivacyEnricher) -> None:
    assert access(enricher, "cweber", "P-1")["ehr.user.role"] == "Billing Specialist"
    assert "ehr.user.role" not in access(enricher, "ebrandt", "P-1")  # empty role: could not tell
    assert "ehr.user.role" not in access(enricher, "nobody", "P-1")


@pytest.mark.parametrize("user", ["cweber", "dnovak", "ebrandt", "iito"])
def test_billing_coding_and_him_open_deceased_records_quietly(enricher, rules, user: str) -> None:
    event = access(enricher, user, "P-DEAD")
    assert event["ehr.patient.deceased"] is True
    assert "ehr_privacy_deceased_patient" not in alerts(rules, event)


@pytest.mark.parametrize("user", ["gokafor", "asmith", "nobody"])
def test_clinical_and_unknown_users_opening_deceased_records_alert(enricher, rules, user: str) -> None:
    assert "ehr_privacy_deceased_patient" in alerts(rules, access(enricher, user, "P-DEAD"))


def test_the_treating_team_finishing_the_notes_is_quiet(enricher, rules) -> None:
    """The day after death the stay is often still open: its ward and care team write the death summary."""
    ward = access(enricher, "gokafor", "P-DEAD", **{"ehr.relationship.same_department": True,
                                                     "ehr.patient.encounter_active": True})
    care_team = access(enricher, "gokafor", "P-DEAD", **{"ehr.relationship.care_team": True})
    closed = access(enricher, "gokafor", "P-DEAD", **{"ehr.relationship.same_department": True,
                                                       "ehr.patient.encounter_active": False})
    assert "ehr_privacy_deceased_patient" not in alerts(rules, ward) | alerts(rules, care_team)
    assert "ehr_privacy_deceased_patient" in alerts(rules, closed)


def test_a_site_list_replaces_the_default_list_only(tmp_path: Path, enricher, site: Path) -> None:
    """rules.placeholders.privacy_deceased_allowed_roles set by the site: billing is no longer allowed by role,
    the department list and the other placeholders keep their defaults."""
    cfg = tmp_path / "wardwatch.yaml"
    cfg.write_text("rules:\n  placeholders:\n    privacy_deceased_allowed_roles: [Decedent Affairs Officer]\n",
                   encoding="utf-8")
    placeholders = load_config(str(cfg))["rules"]["placeholders"]
    assert placeholders["privacy_deceased_allowed_roles"] == ["Decedent Affairs Officer"]
    assert placeholders["privacy_emergency_roles"] == DEFAULTS["rules"]["placeholders"]["privacy_emergency_roles"]
    rs = load_rules([str(ROOT / "rules" / "privacy")], placeholders=placeholders)
    site_rules = {r.name: r for r in rs.rules.values()}
    assert "ehr_privacy_deceased_patient" in alerts(site_rules, access(enricher, "dnovak", "P-DEAD"))  # coder
    assert "ehr_privacy_deceased_patient" not in alerts(site_rules, access(enricher, "ebrandt", "P-DEAD"))  # HIM dept


def test_emergency_role_may_break_the_glass(enricher, rules) -> None:
    btg = {"ehr.break_the_glass": True, "ehr.emergency": False}
    assert "ehr_privacy_btg_outside_emergency" not in alerts(rules, access(enricher, "ffischer", "P-1", **btg))
    assert "ehr_privacy_btg_outside_emergency" in alerts(rules, access(enricher, "gokafor", "P-1", **btg))
    assert "ehr_privacy_btg_outside_emergency" not in alerts(
        rules, access(enricher, "gokafor", "P-1", **{"ehr.break_the_glass": True, "ehr.emergency": True}))


# --- surnames ----------------------------------------------------------------------------------------------
def test_common_surname_alone_is_quiet(enricher, rules) -> None:
    event = access(enricher, "asmith", "P-SMITH-7")  # 300 of 6,000 patients are Smiths (5 %)
    assert event["ehr.relationship.same_last_name"] is True
    assert event["ehr.relationship.same_last_name_rare"] is False
    assert event["ehr.relationship.same_postcode"] is False
    assert "ehr_privacy_same_last_name" not in alerts(rules, event)


def test_rare_surname_alerts(enricher, rules) -> None:
    event = access(enricher, "bkowalczyk", "P-KOW-1")  # 2 of 6,000
    assert event["ehr.relationship.same_last_name_rare"] is True
    assert alerts(rules, event) == {"ehr_privacy_same_last_name"}


def test_rare_part_of_a_double_barrelled_name_counts(enricher, rules) -> None:
    assert "ehr_privacy_same_last_name" in alerts(rules, access(enricher, "hhuber", "P-KOW-2"))


def test_common_surname_with_same_postcode_or_listed_relationship_alerts(enricher, rules) -> None:
    same_postcode = access(enricher, "asmith", "P-SMITH-0")
    assert same_postcode["ehr.relationship.same_postcode"] is True
    assert "ehr_privacy_same_last_name" in alerts(rules, same_postcode)
    related = access(enricher, "asmith", "P-SMITH-8", **{"ehr.relationship.related_person": True})
    assert "ehr_privacy_same_last_name" in alerts(rules, related)


def test_the_treating_team_is_not_alerted_on_a_rare_shared_name(enricher, rules) -> None:
    """As for co-workers and VIPs: a care-team member, or the ward while the patient is admitted there."""
    care_team = access(enricher, "bkowalczyk", "P-KOW-1", **{"ehr.relationship.care_team": True})
    ward = access(enricher, "bkowalczyk", "P-KOW-1", **{"ehr.relationship.same_department": True,
                                                         "ehr.patient.encounter_active": True})
    discharged = access(enricher, "bkowalczyk", "P-KOW-1", **{"ehr.relationship.same_department": True,
                                                               "ehr.patient.encounter_active": False})
    assert "ehr_privacy_same_last_name" not in alerts(rules, care_team) | alerts(rules, ward)
    assert "ehr_privacy_same_last_name" in alerts(rules, discharged)


def test_different_names_are_never_rare(enricher, rules) -> None:
    event = access(enricher, "bkowalczyk", "P-SMITH-3")
    assert event["ehr.relationship.same_last_name"] is False
    assert event["ehr.relationship.same_last_name_rare"] is False
    assert "ehr_privacy_same_last_name" not in alerts(rules, event)


class _OnePatientAtATime(PatientSource):
    """A FHIR-like source: it answers for one patient but cannot say how common a name is."""

    def get(self, patient_id: str) -> PatientFacts | None:
        return PatientFacts(family_name=normalise_name("Smith"), name_parts=frozenset(name_parts("Smith")), address="")


def test_without_counts_the_flag_is_absent_and_the_name_alone_alerts(site: Path, rules) -> None:
    from engine.enrich.lookups import StaffRoster

    roster = StaffRoster(site / "roster.csv", columns={"role": "JOB_TITLE"})
    enricher = PrivacyEnricher(roster=roster, patients=[_OnePatientAtATime()])
    event = access(enricher, "asmith", "X1")
    assert "ehr.relationship.same_last_name_rare" not in event
    assert "ehr_privacy_same_last_name" in alerts(rules, event)  # could not tell: as before


def test_surname_frequencies_csv_gives_counts_for_a_fhir_site(site: Path, tmp_path: Path, rules) -> None:
    (tmp_path / "names.csv").write_text("SURNAME;N\nSmith;2,442,977\nKowalczyk;1200\nbad;lots\n", encoding="utf-8")
    enricher = PrivacyEnricher.from_config({
        "roster_csv": str(site / "roster.csv"), "patients_fhir_base_url": "https://fhir.example.org/r4",
        "surname_frequencies_csv": str(tmp_path / "names.csv"), "surname_frequencies_total": 330_000_000,
        "surname_frequencies_columns": {"family_name": "SURNAME", "count": "N"}})
    enricher.patients = [_OnePatientAtATime()]  # no network in this test
    event = access(enricher, "asmith", "X1")
    assert event["ehr.relationship.same_last_name_rare"] is False  # 0.74 % of the population
    assert "ehr_privacy_same_last_name" not in alerts(rules, event)


@pytest.mark.parametrize(("count", "total", "rare"), [
    (3, 100, True),        # small directory: the count floor (3) decides
    (4, 100, False),
    (4, 20_000, True),     # 4 / 20,000 = 1 in 5,000: the share decides
    (5, 20_000, False),
])
def test_threshold_is_the_larger_of_the_count_floor_and_the_share(count: int, total: int, rare: bool) -> None:
    class Counts:
        def surname_frequencies(self) -> SurnameFrequencies:
            return SurnameFrequencies({"kowalczyk": count}, total)

    from engine.enrich.lookups import StaffMember

    enricher = PrivacyEnricher(surname_frequencies=Counts())
    member = StaffMember(keys=("u",), family_name="kowalczyk", name_parts=frozenset({"kowalczyk"}), department=None,
                         address="", patient_id=None, end_date=None)
    facts = PatientFacts(family_name="kowalczyk", name_parts=frozenset({"kowalczyk"}), address="")
    event: dict = {}
    enricher._surname_flags(event, member, facts)
    assert event["ehr.relationship.same_last_name_rare"] is rare


@pytest.mark.parametrize(("options", "key"), [
    ({"rare_surname_max_share": 1.5}, "enrichment.privacy.rare_surname_max_share"),
    ({"rare_surname_max_count": -1}, "enrichment.privacy.rare_surname_max_count"),
    ({"surname_frequencies_columns": {"surname": "X"}}, "enrichment.privacy.surname_frequencies_columns.surname"),
    ({"roster_columns": {"job": "X"}}, "enrichment.privacy.roster_columns.job"),
])
def test_bad_options_name_the_key(tmp_path: Path, options: dict, key: str) -> None:
    import yaml

    cfg = tmp_path / "wardwatch.yaml"
    cfg.write_text(yaml.safe_dump({"enrichment": {"privacy": {"timezone": "UTC", **options}}}), encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_config(str(cfg))
    assert key in str(err.value)


def test_frequency_file_without_its_columns_names_the_column(tmp_path: Path) -> None:
    (tmp_path / "names.csv").write_text("name,n\nSmith,3\n", encoding="utf-8")
    with pytest.raises(ColumnMappingError, match="surname_frequencies_columns.family_name: column 'family_name'"):
        SurnameFrequencyFile(tmp_path / "names.csv")
    with pytest.raises(InvalidOption):
        PrivacyEnricher.from_config({"rare_surname_max_share": -0.1})


# --- the directory as roster -------------------------------------------------------------------------------
LDIF = """version: 1

dn: CN=Weber\\, Carla,OU=Staff,DC=hospital,DC=example
objectClass: user
sAMAccountName: cweber
employeeID: u0003
department: Patient Financial Services
title: Billing Specialist
employeeType: Revenue Cycle Analyst
userAccountControl: 512
"""


def test_directory_roster_role_from_title_or_a_configured_attribute(tmp_path: Path, rules) -> None:
    (tmp_path / "d.ldif").write_text(LDIF, encoding="utf-8")
    by_title = PrivacyEnricher.from_config({"roster_directory": str(tmp_path / "d.ldif"),
                                            "patients_csv": str(ROOT / "fixtures/privacy/patients.csv")})
    event = access(by_title, "cweber", "P930")  # P930: deceased in the shared privacy fixtures
    assert event["ehr.user.role"] == "Billing Specialist"
    assert event["ehr.patient.deceased"] is True
    assert "ehr_privacy_deceased_patient" not in alerts(rules, event)
    by_type = PrivacyEnricher.from_config({"roster_directory": str(tmp_path / "d.ldif"),
                                           "roster_directory_role_attribute": "employeeType"})
    member = by_type.roster.member("cweber")
    assert member is not None and member.role == "Revenue Cycle Analyst"
    assert "revenue cycle analyst" not in member.keys  # a role never becomes a login key


# --- properties --------------------------------------------------------------------------------------------
NAMES = st.sampled_from(["Smith", "Kowalczyk", "Meyer-Schulz", "Schulz", "O'Brien", "Li", "Müller", "Muller"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=NAMES, patient=NAMES, directory=st.lists(NAMES, min_size=1, max_size=40),
       share=st.floats(0, 1), floor=st.integers(0, 10))
def test_rare_implies_same_name_and_grows_with_the_threshold(user, patient, directory, share, floor) -> None:
    from engine.enrich.lookups import StaffMember

    freq = SurnameFrequencies.from_patients(
        PatientFacts(family_name=normalise_name(n), name_parts=frozenset(name_parts(n)), address="") for n in directory)

    class Counts:
        def surname_frequencies(self) -> SurnameFrequencies:
            return freq

    member = StaffMember(keys=("u",), family_name=normalise_name(user), name_parts=frozenset(name_parts(user)),
                         department=None, address="", patient_id=None, end_date=None)
    facts = PatientFacts(family_name=normalise_name(patient), name_parts=frozenset(name_parts(patient)), address="")
    strict, loose = {}, {}
    PrivacyEnricher(surname_frequencies=Counts(), rare_surname_max_share=share,
                    rare_surname_max_count=floor)._surname_flags(strict, member, facts)
    PrivacyEnricher(surname_frequencies=Counts(), rare_surname_max_share=min(1.0, share * 2),
                    rare_surname_max_count=floor + 1)._surname_flags(loose, member, facts)
    if strict["ehr.relationship.same_last_name_rare"]:
        assert strict["ehr.relationship.same_last_name"] and loose["ehr.relationship.same_last_name_rare"]
    assert strict["ehr.relationship.same_last_name"] == (normalise_name(user) == normalise_name(patient)
                                                         or bool(name_parts(user) & name_parts(patient)))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.text(alphabet=st.sampled_from(list("Smith,;\t|\"\n0123456789-.é ")), max_size=200))
def test_frequency_file_parser_never_crashes(tmp_path: Path, body: str) -> None:
    path = tmp_path / "names.csv"
    path.write_text("family_name,count\n" + body, encoding="utf-8")
    freq = SurnameFrequencyFile(path).surname_frequencies()
    assert freq is not None and freq.total >= 0 and all(v >= 0 for v in freq.counts.values())
