"""PrivacyEnricher: relationship and sensitivity flags from roster, patient directory and VIP list."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.enrich import EnrichmentChain
from engine.enrich.lookups import FhirPatientDirectory, normalise_address, normalise_name
from engine.enrich.privacy import FIELDS, PrivacyEnricher
from tests.json_peer import PeerRequest, json_peer

ROOT = Path(__file__).resolve().parent.parent
FIX = ROOT / "fixtures" / "privacy"


def ev(user: str | None, patient: str | None, ts: str = "2026-03-10T09:00:00.000Z", **extra: Any) -> dict:
    event: dict[str, Any] = {"@timestamp": ts, "event.dataset": "ehr.audit", "event.id": "x", "event.action": "read"}
    if user:
        event["user.name"] = user
    if patient:
        event["ehr.patient.id"] = patient
    event.update(extra)
    return event


@pytest.fixture
def enricher() -> PrivacyEnricher:
    return PrivacyEnricher.from_config({
        "roster_csv": str(FIX / "roster.csv"),
        "patients_csv": str(FIX / "patients.csv"),
        "vip_list_file": str(FIX / "vip.txt"),
        "timezone": "Europe/Berlin",
    })


def flags(event: dict) -> dict:
    return {k: v for k, v in event.items() if k in FIELDS}


def test_self_access(enricher: PrivacyEnricher) -> None:
    out = enricher.enrich(ev("jmeyer", "P900"))
    assert out["ehr.relationship.self"] is True
    assert out["ehr.relationship.patient_is_employee"] is False  # one's own record is not a co-worker's
    assert out["ehr.user.department"] == "Cardiology"
    assert out["ehr.user.on_roster"] is True and out["ehr.user.terminated"] is False


def test_same_last_name_incl_double_barrelled(enricher: PrivacyEnricher) -> None:
    assert enricher.enrich(ev("jmeyer", "P910"))["ehr.relationship.same_last_name"] is True
    assert enricher.enrich(ev("lschulz", "P911"))["ehr.relationship.same_last_name"] is True  # Meyer-Schulz
    out = enricher.enrich(ev("jmeyer", "P940"))
    assert out["ehr.relationship.same_last_name"] is False and out["ehr.relationship.self"] is False


def test_same_address_normalised(enricher: PrivacyEnricher) -> None:
    # roster "Hauptstr. 5" vs directory "Hauptstraße 5", same postcode
    out = enricher.enrich(ev("lschulz", "P912"))
    assert out["ehr.relationship.same_address"] is True
    assert enricher.enrich(ev("lschulz", "P940"))["ehr.relationship.same_address"] is False
    assert normalise_address("12 Baker Street, Apt. 3", "NW1 6XE") == normalise_address("12 baker st apt 3", "nw16xe")
    assert normalise_name("O'Brien") == "obrien" and normalise_name("MÜLLER") == normalise_name("Muller")


def test_coworker_record_by_user_id_too(enricher: PrivacyEnricher) -> None:
    out = enricher.enrich(ev(None, "P901", **{"user.id": "U100"}))
    assert out["ehr.relationship.patient_is_employee"] is True
    assert out["ehr.relationship.self"] is False


def test_vip_confidential_deceased(enricher: PrivacyEnricher) -> None:
    assert enricher.enrich(ev("dwolf", "P920"))["ehr.patient.vip"] is True
    assert enricher.enrich(ev("dwolf", "P921"))["ehr.patient.confidential"] is True
    dead = enricher.enrich(ev("dwolf", "P930", ts="2026-03-10T09:00:00.000Z"))
    assert dead["ehr.patient.deceased"] is True and dead["ehr.patient.days_since_death"] == 54
    # on the day of death (local time) the access is not "after death"
    assert enricher.enrich(ev("dwolf", "P930", ts="2026-01-15T22:30:00.000Z"))["ehr.patient.deceased"] is False
    normal = enricher.enrich(ev("dwolf", "P940"))
    assert (normal["ehr.patient.vip"], normal["ehr.patient.confidential"], normal["ehr.patient.deceased"]) == (
        False, False, False)


def test_terminated_user_uses_local_date(enricher: PrivacyEnricher) -> None:
    # end date 2026-02-28 (last working day). 23:30 UTC on the 28th is already March 1st in Berlin: with
    # no grace that is after the end date.
    strict = PrivacyEnricher.from_config({"roster_csv": str(FIX / "roster.csv"), "timezone": "Europe/Berlin",
                                          "terminated_grace_hours": 0})
    assert strict.enrich(ev("tbauer", "P940", ts="2026-02-28T12:00:00.000Z"))["ehr.user.terminated"] is False
    assert strict.enrich(ev("tbauer", "P940", ts="2026-02-28T23:30:00.000Z"))["ehr.user.terminated"] is True


def test_a_night_shift_begun_on_the_last_day_is_in_the_grace_period(enricher: PrivacyEnricher) -> None:
    """terminated_grace_hours (default 8): until 08:00 local time on the day after the end date; the next
    working morning is flagged (a terminated user back at 08:30 is what the rule is for)."""
    def terminated(ts: str) -> bool:
        return enricher.enrich(ev("tbauer", "P940", ts=ts))["ehr.user.terminated"]

    assert terminated("2026-02-28T23:30:00.000Z") is False  # 00:30 on March 1st in Berlin: the night shift
    assert terminated("2026-03-01T05:30:00.000Z") is False  # 06:30: handing over
    assert terminated("2026-03-01T06:59:00.000Z") is False  # 07:59: still the grace
    assert terminated("2026-03-01T07:30:00.000Z") is True   # 08:30: past the grace, the next morning
    assert terminated("2026-03-02T01:00:00.000Z") is True   # any time on the days after


def test_a_bad_grace_names_the_option() -> None:
    from engine.plugins import InvalidOption

    with pytest.raises(InvalidOption, match="terminated_grace_hours"):
        PrivacyEnricher.from_config({"roster_csv": str(FIX / "roster.csv"), "terminated_grace_hours": 30})


def test_unknown_user_and_patient_set_no_relationship_flags(enricher: PrivacyEnricher) -> None:
    out = enricher.enrich(ev("ghost", "P-unknown"))
    assert out["ehr.user.on_roster"] is False
    assert "ehr.relationship.self" not in out and "ehr.relationship.same_last_name" not in out
    assert "ehr.patient.confidential" not in out  # the directory does not know the patient
    assert out["ehr.patient.vip"] is False  # the VIP list does answer: not on it


def test_no_names_or_addresses_in_events(enricher: PrivacyEnricher) -> None:
    texts = " ".join(json.dumps(enricher.enrich(ev(u, p))) for u in ("jmeyer", "lschulz", "dwolf")
                     for p in ("P900", "P910", "P912", "P930", "P920"))
    for secret in ("Meyer", "Hauptstr", "hauptst", "Wagner", "Hoffmann", "Am Park", "10115"):
        assert secret not in texts


def test_other_datasets_untouched_and_odd_input_never_raises(enricher: PrivacyEnricher) -> None:
    vpn = {"@timestamp": "2026-03-10T09:00:00.000Z", "event.dataset": "vpn.auth", "user.name": "jmeyer"}
    assert enricher.enrich(dict(vpn)) == vpn
    weird = ev("jmeyer", "P900", ts="not a time")
    weird["user.name"] = ["a", "list"]
    EnrichmentChain([enricher]).enrich_all([weird, ev(None, None), {"event.dataset": "ehr.audit"}])


def test_reload_on_change_and_bad_reload_keeps_old_table(tmp_path: Path) -> None:
    roster = tmp_path / "roster.csv"
    shutil.copy(FIX / "roster.csv", roster)
    enricher = PrivacyEnricher.from_config({"roster_csv": str(roster)})
    assert enricher.enrich(ev("newbie", "P1"))["ehr.user.on_roster"] is False
    with roster.open("a", encoding="utf-8") as fh:
        fh.write("U200,newbie,Neu,Emergency,,,,\n")
    os.utime(roster, ns=(1, 10**18))  # make sure the mtime differs even on coarse file systems
    enricher.refresh()
    out = enricher.enrich(ev("newbie", "P1"))
    assert out["ehr.user.on_roster"] is True and out["ehr.user.emergency_department"] is True
    roster.write_bytes(b"\xff\xfe broken \x00")  # not UTF-8: the reload fails, the old table stays
    os.utime(roster, ns=(1, 2 * 10**18))
    enricher.refresh()
    assert enricher.enrich(ev("newbie", "P1"))["ehr.user.on_roster"] is True


def test_unknown_option_is_an_error() -> None:
    with pytest.raises(ValueError, match="roster_file"):
        PrivacyEnricher.from_config({"roster_file": "x.csv"})


# --- FHIR Patient lookups over HTTP --------------------------------------------------------------
PATIENTS = {
    "P900": {"resourceType": "Patient", "id": "P900", "name": [{"use": "official", "family": "Meyer"}],
             "address": [{"use": "home", "line": ["Am Park 12"], "postalCode": "10119"}]},
    "P920": {"resourceType": "Patient", "id": "P920", "meta": {"security": [{"code": "CEL"}]},
             "name": [{"family": "Star"}]},
    "P921": {"resourceType": "Patient", "id": "P921", "meta": {"security": [{"code": "R"}]},
             "name": [{"family": "Richter"}]},
    "P930": {"resourceType": "Patient", "id": "P930", "name": [{"family": "Hoffmann"}],
             "deceasedDateTime": "2026-01-15T04:00:00+01:00"},
    # jmeyer's father-in-law: another name, another home, and jmeyer listed as his next of kin
    "P940": {"resourceType": "Patient", "id": "P940", "name": [{"family": "Brandt"}],
             "address": [{"line": ["Birkenallee 7"], "postalCode": "14467"}],
             "contact": [{"relationship": [{"coding": [{"code": "N"}]}], "name": {"family": "Meyer"},
                          "address": {"line": ["Am Park 12"], "postalCode": "10119"}}]},
}


@pytest.fixture
def patient_server() -> Iterator[tuple[str, list[str]]]:
    def answer(request: PeerRequest) -> tuple[int, Any]:
        pid = request.route.rsplit("/", 1)[-1]
        return (200, PATIENTS[pid]) if pid in PATIENTS else (404, {"resourceType": "OperationOutcome"})

    with json_peer(answer) as server:
        yield f"{server.base}/fhir", server.paths


def test_fhir_patient_directory_flags_and_ttl_cache(patient_server: tuple[str, list[str]]) -> None:
    base, hits = patient_server
    enricher = PrivacyEnricher.from_config({
        "roster_csv": str(FIX / "roster.csv"), "patients_fhir_base_url": base, "patients_fhir_ttl_seconds": 60,
    })
    out = enricher.enrich(ev("jmeyer", "P900"))
    assert out["ehr.relationship.same_last_name"] is True and out["ehr.relationship.same_address"] is True
    assert enricher.enrich(ev("dwolf", "P920"))["ehr.patient.vip"] is True
    assert enricher.enrich(ev("dwolf", "P921"))["ehr.patient.confidential"] is True
    assert enricher.enrich(ev("dwolf", "P930"))["ehr.patient.deceased"] is True
    assert "ehr.patient.vip" not in enricher.enrich(ev("dwolf", "P404"))
    for _ in range(50):
        enricher.enrich(ev("jmeyer", "P900"))
        enricher.enrich(ev("jmeyer", "P404"))  # misses are cached too
    assert len(hits) == 5
    assert "../" not in "".join(hits)


def test_a_contact_listed_in_the_fhir_patient_is_a_related_person(patient_server: tuple[str, list[str]]) -> None:
    """The patient directory reads ``Patient.contact`` as the encounter export does: a user whose family name
    and home are a listed contact's is that patient's related person. A Patient the server lists no contact
    for says "no relative of anyone"; a directory that lists no contacts at all (CSV) says nothing."""
    base, _hits = patient_server
    enricher = PrivacyEnricher.from_config({"roster_csv": str(FIX / "roster.csv"), "patients_fhir_base_url": base})
    relative = enricher.enrich(ev("jmeyer", "P940"))
    assert relative["ehr.relationship.related_person"] is True
    assert relative["ehr.relationship.same_last_name"] is False and relative["ehr.relationship.same_address"] is False
    assert enricher.enrich(ev("dwolf", "P940"))["ehr.relationship.related_person"] is False
    assert enricher.enrich(ev("jmeyer", "P920"))["ehr.relationship.related_person"] is False
    assert "ehr.relationship.related_person" not in enricher.enrich(ev("jmeyer", "P404"))
    csv = PrivacyEnricher.from_config({"roster_csv": str(FIX / "roster.csv"),
                                       "patients_csv": str(FIX / "patients.csv")})
    assert "ehr.relationship.related_person" not in csv.enrich(ev("jmeyer", "P900"))


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=8),
                     lambda inner: (st.lists(inner, max_size=3)
                                    | st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                     max_leaves=12)
_patient_element = st.sampled_from(["name", "address", "contact", "meta", "deceasedDateTime", "deceasedBoolean"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_patient_element, _json, max_size=6), st.lists(_json, max_size=3), st.integers(0, 3))
def test_the_fhir_patient_parser_reads_what_it_can_of_any_patient(fields: dict, contacts: list, at: int) -> None:
    """Whatever a server puts in a Patient, ``patient_facts_from_fhir`` gives facts (a malformed element
    counts as absent) and keeps the flags the well-formed elements give; a well-formed contact is found
    however malformed the contacts around it are. It used to raise KeyError on ``name: {}``, which no
    caller caught."""
    from engine.enrich.lookups import contact_key, patient_facts_from_fhir

    patient_facts_from_fhir({"resourceType": "Patient", **fields}, {"R"}, {"VIP"})  # no exception, whatever
    facts = patient_facts_from_fhir({"resourceType": "Patient", **fields, "meta": {"security": [{"code": "VIP"}]}},
                                    {"R"}, {"VIP"})
    assert facts.vip is True
    listed = {"name": {"family": "Meyer"}, "address": {"line": ["Am Park 12"], "postalCode": "10119"}}
    facts = patient_facts_from_fhir({"resourceType": "Patient", "contact": contacts[:at] + [listed] + contacts[at:]},
                                    set(), set())
    assert contact_key(normalise_name("Meyer"), normalise_address("Am Park 12", "10119")) in facts.contact_keys


def test_fhir_patient_errors_cached_briefly_then_retried() -> None:
    """A directory that is down (a real closed port) costs one connection attempt per error TTL, not one per
    event, and the event simply gets no patient flags."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()  # nothing listens there now: connection refused
    now = [0.0]
    directory = FhirPatientDirectory(f"http://127.0.0.1:{port}/fhir", error_ttl_seconds=10, timeout=1.0,
                                     clock=lambda: now[0])
    assert directory.get("P1") is None and directory.get("P1") is None
    assert directory.requests == 1
    now[0] = 11
    directory.get("P1")
    assert directory.requests == 2
    assert directory.get("../etc/passwd") is None and directory.requests == 2  # never put a non-id into a URL


def test_roster_load_logs_how_many_people_it_holds(tmp_path, caplog):
    """The load line counts staff members: not the table's two parts, nor user id and login twice each."""
    import logging

    from engine.enrich.lookups import StaffRoster

    roster = tmp_path / "roster.csv"
    rows = [f"U{n},login{n},Family{n},Cardiology,,,P{n}," for n in range(205)]
    roster.write_text("user_id,login,family_name,department,address,postal_code,patient_id,end_date\n"
                      + "\n".join(rows) + "\n", encoding="utf-8")
    with caplog.at_level(logging.INFO, logger="engine.enrich.lookups"):
        loaded = StaffRoster(roster)
    assert len(loaded) == 205
    assert [r.getMessage() for r in caplog.records if "loaded" in r.getMessage()] == [
        f"staff roster {roster} loaded: 205 entries"]


def test_a_german_patient_export_with_j_for_yes_flags_vip_and_confidential(tmp_path):
    """German and Dutch exports write J / ja for yes (VIP_KZ, SPERRVERMERK): read as "no", every restricted
    patient of such a site lost its confidential flag, so the VIP rule never saw them."""
    patients = tmp_path / "patienten.csv"
    patients.write_text("PATNR;FAMILIENNAME;VIP_KZ;SPERRVERMERK;STERBEDATUM\r\n"
                        "P1;Müller;J;N;\r\nP2;Groß;N;ja;03.11.2026\r\nP3;Weiß;N;N;\r\n", encoding="cp1252")
    enricher = PrivacyEnricher.from_config({
        "patients_csv": str(patients), "patients_encoding": "cp1252", "patients_delimiter": ";",
        "patients_columns": {"patient_id": "PATNR", "family_name": "FAMILIENNAME", "vip": "VIP_KZ",
                             "confidential": "SPERRVERMERK", "deceased_date": "STERBEDATUM"},
        "timezone": "Europe/Berlin"})
    got = {pid: (out["ehr.patient.vip"], out["ehr.patient.confidential"], out["ehr.patient.deceased"])
           for pid in ("P1", "P2", "P3") for out in [enricher.enrich(ev(None, pid, "2026-11-05T09:00:00.000Z"))]}
    assert got == {"P1": (True, False, False), "P2": (False, True, True), "P3": (False, False, False)}


@pytest.mark.parametrize("option, extra", [
    ("roster_csv", {}), ("patients_csv", {}), ("vip_list_file", {}),
    ("encounters_csv", {"encounters_csv_columns": {"patient_id": "PATNR", "start": "AUFNAHME"}})])
def test_a_lookup_file_in_another_encoding_stops_the_start_naming_file_line_and_option(tmp_path, option, extra):
    """A Windows-1252 export read as UTF-8 used to be logged as "not reloaded; keeping the previous version"
    on the first load, where there is no previous version: the service ran without the table."""
    path = tmp_path / "export.csv"
    header = {"roster_csv": "user_id;login;family_name", "patients_csv": "patient_id;family_name",
              "vip_list_file": "patient_id;reason", "encounters_csv": "PATNR;STATION;AUFNAHME"}[option]
    path.write_text(f"{header}\r\nU1;a;Maier\r\nU2;b;Müller\r\n", encoding="cp1252")
    key = {"roster_csv": "roster", "patients_csv": "patients", "vip_list_file": "vip_list",
           "encounters_csv": "encounters_csv"}[option]
    with pytest.raises(ValueError) as err:
        PrivacyEnricher.from_config({option: str(path), "timezone": "Europe/Berlin", **extra})
    message = str(err.value)
    assert f"{key}_encoding" in message and str(path) in message and "line 3" in message
    assert "Müller" not in message and "M\\xfcller" not in message  # a row's content never goes into the line
    fixed = PrivacyEnricher.from_config({option: str(path), f"{key}_encoding": "cp1252",
                                         "timezone": "Europe/Berlin", **extra})
    assert fixed is not None
