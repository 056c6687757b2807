"""AuditEvent -> event mapping: the field contract rules and fixtures are written against (docs/schema.md).

Fixtures in tests/data/fhir/ are hand-written JSON following the IHE BALP example instances
(../shared/datasets/balp-fsh); ``test_fixtures_follow_the_balp_examples`` checks that correspondence when
the shared datasets are present.
"""

from __future__ import annotations

import base64
import copy
import re
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.fhir_mapping import MappingError, auditevent_to_event
from engine.identity import fhir_id, record_id
from tests.conftest import SHARED_DATASETS

DATA = Path(__file__).parent / "data" / "fhir"
SOURCE = "https://fhir.klinikum.example/r4"


def load(name: str) -> dict[str, Any]:
    return orjson.loads((DATA / name).read_bytes())


def mapped(resource: dict[str, Any]) -> dict[str, Any]:
    return auditevent_to_event(resource, raw=orjson.dumps(resource), server=SOURCE)


def test_balp_patient_read_r4() -> None:
    resource = load("r4-patient-read-server.json")
    event = mapped(resource)
    assert event["@timestamp"] == "2020-04-29T09:49:00.000Z"
    assert event["event.dataset"] == "ehr.audit" and event["event.kind"] == "event"
    assert event["event.id"] == fhir_id(SOURCE, "AuditEvent", "ex-auditBasicReadServer")
    assert orjson.loads(event["event.original"]) == resource
    assert event["event.code"] == "rest"
    assert event["event.action"] == "read"
    assert event["event.type"] == ["access"]
    assert event["ehr.action"] == "R"
    assert event["event.outcome"] == "success" and event["ehr.outcome_code"] == "0"
    # BALP: the user agent (requestor) has only a display name; the client agent carries the IP.
    assert event["user.full_name"] == "John Smith"
    assert "user.id" not in event and "user.name" not in event
    assert event["user.roles"] == ["IRCP"]
    assert event["source.ip"] == "2001:db8:85a3::8a2e:370:7334"
    assert event["source.address"] == "2001:0db8:85a3:0000:0000:8a2e:0370:7334"
    assert event["ehr.patient.id"] == "ex-patient"
    assert event["ehr.patient.reference"] == "Patient/ex-patient"
    assert event["ehr.resource.type"] == "List"
    assert event["ehr.request_id"] == "76d148b6-586d-11ec-bf63-0242ac130002"
    assert event["ehr.break_the_glass"] is False and event["ehr.emergency"] is False
    assert event["observer.name"] == "Device/ex-device" and event["observer.type"] == "4"
    assert event["ehr.fhir.version"] == "R4" and event["ehr.audit.id"] == "ex-auditBasicReadServer"


def test_balp_patient_query_decodes_the_query() -> None:
    event = mapped(load("r4-patient-query-get.json"))
    assert event["event.action"] == "search" and event["event.type"] == ["start"] and event["ehr.action"] == "E"
    assert event["ehr.query"].startswith("GET test.fhir.org/r4/Observation?patient=ex-patient&")
    assert event["ehr.resource.type"] == "Observation"
    assert event["ehr.patient.id"] == "ex-patient"
    assert event["ehr.request_id"] == "cc6d168e-5871-11ec-bf63-0242ac130002"


def test_balp_create_update_delete_event_types() -> None:
    bundle = load("r4-bundle-create-update-delete.json")
    events = [mapped(e["resource"]) for e in bundle["entry"][:4] if e["resource"]["resourceType"] == "AuditEvent"]
    assert [(e["event.action"], e["ehr.action"], e["event.type"]) for e in events] == [
        ("create", "C", ["creation"]), ("update", "U", ["change"]), ("delete", "D", ["deletion"])]
    assert all(e["user.roles"] == ["AUT"] for e in events)


def test_balp_authz_deny_is_a_failure_with_the_users_purpose() -> None:
    event = mapped(load("r4-authz-consent-deny.json"))
    assert event["event.outcome"] == "failure" and event["ehr.outcome_code"] == "8"
    assert event["event.code"] == "110113" and event["event.action"] == "authz-consent"
    assert event["user.id"] == "ex-practitioner" and event["user.name"] == "ex-practitioner"
    assert event["ehr.purpose_of_use"] == ["PATRQT"]
    assert event["ehr.resource.type"] == "Consent"
    assert event["source.ip"] == "2001:db8:85a3::8a2e:370:7334"


def test_balp_disclosure_names_the_document_and_purpose() -> None:
    event = mapped(load("r4-disclosure-source.json"))
    assert event["event.code"] == "110106" and event["event.action"] == "disclose"
    assert event["ehr.document.id"] == "ex-documentreference"
    assert event["ehr.resource.type"] == "DocumentReference"
    assert event["ehr.purpose_of_use"] == ["PATRQT"]
    assert event["source.address"] == "myDevice.example.com" and "source.ip" not in event
    assert event["observer.name"] == "model number ABC, serial number 1234"


def test_break_the_glass_emergency_and_security_labels() -> None:
    event = mapped(load("r4-break-the-glass.json"))
    assert event["@timestamp"] == "2024-03-02T02:14:07.000Z"
    assert event["ehr.break_the_glass"] is True and event["ehr.emergency"] is True
    assert event["ehr.purpose_of_use"] == ["BTG", "ETREAT"]
    assert event["ehr.security_labels"] == ["R", "PSY"]
    assert event["user.id"] == "nurse.kim" and event["user.name"] == "kim" and event["user.full_name"] == "Kim Lee"
    assert event["user.roles"] == ["IRCP", "224535009"]
    assert event["source.ip"] == "10.20.30.40"
    assert event["ehr.patient.id"] == "4711" and event["ehr.resource.type"] == "Observation"


def test_dicom_emergency_override_type_is_break_the_glass() -> None:
    resource = load("r4-patient-read-server.json")
    resource["type"] = {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110127",
                        "display": "Emergency Override Started"}
    resource["subtype"] = []
    event = mapped(resource)
    assert event["ehr.break_the_glass"] is True
    assert event["event.code"] == "110127"
    assert event["event.action"] == "emergency override started"  # falls back to the type display


def test_r5_read_maps_to_the_same_fields() -> None:
    event = mapped(load("r5-patient-read.json"))
    assert event["ehr.fhir.version"] == "R5"
    assert event["@timestamp"] == "2024-06-01T08:00:01.250Z"
    assert event["event.code"] == "rest" and event["event.action"] == "read" and event["event.type"] == ["access"]
    assert event["event.outcome"] == "success" and event["ehr.outcome_code"] == "0"
    assert event["ehr.patient.id"] == "p-42" and event["ehr.patient.reference"] == "Patient/p-42"
    assert event["ehr.resource.type"] == "DiagnosticReport"
    assert event["user.id"] == "dr.house" and event["user.full_name"] == "Gregory House"
    assert event["user.roles"] == ["IRCP", "PHYS"]
    assert event["source.ip"] == "192.168.7.21"
    assert event["ehr.purpose_of_use"] == ["TREAT", "BTG"] and event["ehr.break_the_glass"] is True
    assert event["ehr.security_labels"] == ["V"]
    assert event["ehr.request_id"] == "0f3c1d9e-r5"
    assert event["observer.name"] == "ehr-fhir-01" and event["observer.type"] == "4"


def test_r5_failed_search() -> None:
    event = mapped(load("r5-search-failure.json"))
    assert event["ehr.fhir.version"] == "R5"
    assert event["event.outcome"] == "failure" and event["ehr.outcome_code"] == "4"
    assert event["event.action"] == "search-type"
    assert event["ehr.query"] == "GET /fhir/Observation?code=1234-5&_count=1000 HTTP/1.1"
    assert event["ehr.resource.type"] == "Observation"
    assert event["source.ip"] == "10.1.2.3" and event["user.id"] == "app-1"
    assert event["observer.name"] == "fhir-gw"


def test_missing_outcome_is_unknown_and_missing_id_hashes_the_raw_bytes() -> None:
    resource = {"resourceType": "AuditEvent", "recorded": "2024-01-01T00:00:00Z"}
    raw = orjson.dumps(resource)
    event = auditevent_to_event(resource, raw=raw, server=SOURCE, position="line:7")
    assert event["event.outcome"] == "unknown" and "ehr.outcome_code" not in event
    assert event["event.id"] == record_id(raw, "line:7")
    assert event["event.type"] == ["info"]


def test_invalid_base64_query_is_kept_as_text() -> None:
    resource = load("r5-search-failure.json")
    resource["entity"][0]["query"] = "not base64 at all!"
    assert mapped(resource)["ehr.query"] == "not base64 at all!"


def test_patient_by_identifier_and_absolute_reference() -> None:
    resource = load("r4-patient-read-server.json")
    resource["entity"][0]["what"] = {"identifier": {"system": "urn:mrn", "value": "MRN-77"}}
    assert mapped(resource)["ehr.patient.id"] == "MRN-77"
    resource["entity"][0]["what"] = {"reference": "https://ehr.example/fhir/Patient/123/_history/4"}
    assert mapped(resource)["ehr.patient.id"] == "123"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        (lambda r: r.pop("recorded"), "recorded"),
        (lambda r: r.__setitem__("recorded", "last tuesday"), "recorded"),
        (lambda r: r.__setitem__("recorded", 12), "recorded"),
        (lambda r: r.__setitem__("resourceType", "Patient"), "resourceType"),
        (lambda r: r.pop("resourceType"), "resourceType"),
    ],
)
def test_unmappable_resources_raise_mapping_error_naming_the_field(change: Any, field: str) -> None:
    resource = load("r4-patient-read-server.json")
    change(resource)
    with pytest.raises(MappingError) as info:
        mapped(resource)
    assert info.value.field == field and field in str(info.value)


def test_not_an_object_raises_mapping_error() -> None:
    with pytest.raises(MappingError) as info:
        auditevent_to_event([1], raw=b"[1]")  # type: ignore[arg-type]
    assert info.value.field == "$"


# --- no JSON crashes the mapping: every input is an event or a MappingError ---------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=25,
)
AUDIT_KEYS = ["type", "subtype", "category", "code", "action", "outcome", "purposeOfEvent", "authorization",
              "agent", "entity", "source", "patient", "id", "meta"]


def _mutations() -> st.SearchStrategy[dict[str, Any]]:
    base = [load(p.name) for p in sorted(DATA.glob("*.json")) if load(p.name)["resourceType"] == "AuditEvent"]

    def mutate(args: tuple[int, dict[str, Any], list[str]]) -> dict[str, Any]:
        index, garbage, drop = args
        resource = copy.deepcopy(base[index % len(base)])
        for key in drop:
            resource.pop(key, None)
        resource.update(garbage)
        return resource

    return st.tuples(
        st.integers(0, 100),
        st.dictionaries(st.sampled_from(AUDIT_KEYS), json_values, max_size=4),
        st.lists(st.sampled_from(AUDIT_KEYS + ["recorded"]), max_size=3),
    ).map(mutate)


@settings(max_examples=400, deadline=None)
@given(_mutations() | st.dictionaries(st.sampled_from(AUDIT_KEYS + ["resourceType", "recorded"]), json_values)
       | json_values)
def test_any_json_is_an_event_or_a_mapping_error(resource: Any) -> None:
    try:
        event = auditevent_to_event(resource, raw=b"{}")
    except MappingError as exc:
        assert exc.field
        return
    assert event["event.dataset"] == "ehr.audit" and event["@timestamp"].endswith("Z")
    assert event["ehr.fhir.version"] in ("R4", "R5")
    for key, value in event.items():
        assert isinstance(value, (str, bool, list)), key
        if isinstance(value, list):
            assert all(isinstance(v, str) for v in value), key
    orjson.dumps(event)


# --- the fixtures follow the BALP examples they are named after ------------------------------------------

def _fsh_instances() -> dict[str, str]:
    folder = SHARED_DATASETS / "balp-fsh"
    if not folder.is_dir():
        pytest.skip("shared BALP datasets not present (../shared/datasets/balp-fsh)")
    text = "\n".join(p.read_text(encoding="utf-8") for p in sorted(folder.glob("*.fsh")))
    return {m.group(1): m.group(2) for m in re.finditer(r"^Instance:\s*(\S+)\n(.*?)(?=^Instance:|\Z)", text,
                                                        re.M | re.S)}


def test_fixtures_follow_the_balp_examples() -> None:
    instances = _fsh_instances()
    checked = 0
    for path in sorted(DATA.glob("*.json")):
        doc = load(path.name)
        resources = [e["resource"] for e in doc.get("entry", [])] if doc["resourceType"] == "Bundle" else [doc]
        for resource in resources:
            body = instances.get(resource.get("id", ""))
            if body is None:
                continue
            checked += 1
            assert f"* action = #{resource['action']}" in body
            recorded = re.search(r"^\* recorded = (\S+)", body, re.M)
            assert recorded and recorded.group(1) == resource["recorded"]
            outcome = re.search(r"audit-event-outcome#(\d+)", body)
            assert outcome and outcome.group(1) == resource["outcome"]
            for what in re.findall(r"\.what = Reference\(([^)]+)\)", body):
                assert any(e.get("what", {}).get("reference") == what for e in resource["entity"]), what
            query = re.search(r'\.query = "([^"]+)"', body)
            if query:
                fixture_query = next(e["query"] for e in resource["entity"] if "query" in e)
                assert base64.b64decode(fixture_query) == base64.b64decode(query.group(1))
    assert checked >= 6
