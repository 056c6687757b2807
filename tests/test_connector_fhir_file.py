"""The FHIR AuditEvent file connector on real files: single resources, Bundles and followed NDJSON."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import connector_class
from connectors.fhir_file import FhirAuditEventFileConnector
from tests.conftest import read_all

DATA = Path(__file__).parent / "data" / "fhir"
OLD = (1_000_000_000, 1_000_000_000)  # an mtime well past settle_seconds


def resource(name: str) -> dict[str, Any]:
    return orjson.loads((DATA / name).read_bytes())


def ndjson_line(res: dict[str, Any]) -> bytes:
    return orjson.dumps(res) + b"\n"




def copy_data(target: Path, *names: str) -> None:
    target.mkdir(parents=True, exist_ok=True)
    for name in names:
        shutil.copy(DATA / name, target / name)
        os.utime(target / name, OLD)


def test_registered_under_its_entry_point() -> None:
    assert connector_class("fhir-auditevent-file") is FhirAuditEventFileConnector


def test_single_resources_and_bundles_from_a_directory(tmp_path: Path) -> None:
    copy_data(tmp_path / "in", "r4-patient-read-server.json", "r5-patient-read.json",
              "r4-bundle-create-update-delete.json")
    conn = FhirAuditEventFileConnector("ehr", {"path": str(tmp_path / "in")})
    batch = read_all(conn)
    assert sorted(e["ehr.audit.id"] for e in batch.events) == sorted([
        "ex-auditBasicReadServer", "r5-read-1", "ex-auditBasicCreateServer", "ex-auditBasicUpdate1",
        "ex-auditBasicDeleteServer"])
    # The Patient entry is skipped silently; the AuditEvent without `recorded` is a dead letter.
    [dead] = batch.dead_letters
    assert dead.location == f"{tmp_path / 'in' / 'r4-bundle-create-update-delete.json'}#entry[4]"
    assert "'recorded'" in dead.reason and dead.source == "fhir-auditevent-file:ehr"
    again = read_all(conn, batch.cursor)
    assert again.events == [] and again.dead_letters == []


def test_bundle_is_resumed_across_small_batches(tmp_path: Path) -> None:
    copy_data(tmp_path, "r4-bundle-create-update-delete.json")
    conn = FhirAuditEventFileConnector("ehr", {"path": str(tmp_path)})
    cursor, ids = None, []
    for _ in range(10):
        batch = conn.read(json.loads(json.dumps(cursor)) if cursor else None, 1)
        ids += [e["ehr.audit.id"] for e in batch.events]
        cursor = batch.cursor
        if batch.exhausted:
            break
    assert ids == ["ex-auditBasicCreateServer", "ex-auditBasicUpdate1", "ex-auditBasicDeleteServer"]


def test_a_changed_json_file_is_read_again_with_the_same_ids(tmp_path: Path) -> None:
    copy_data(tmp_path, "r4-patient-read-server.json")
    conn = FhirAuditEventFileConnector("ehr", {"path": str(tmp_path)})
    first = read_all(conn)
    path = tmp_path / "r4-patient-read-server.json"
    path.write_bytes(orjson.dumps(resource("r4-patient-read-server.json"), option=orjson.OPT_INDENT_2))
    os.utime(path, (OLD[0] + 5, OLD[1] + 5))
    second = read_all(conn, first.cursor)
    assert [e["event.id"] for e in second.events] == [e["event.id"] for e in first.events]


def test_a_file_still_being_written_waits(tmp_path: Path) -> None:
    path = tmp_path / "new.json"
    path.write_bytes(b'{"resourceType": "AuditEvent", "recor')
    conn = FhirAuditEventFileConnector("ehr", {"path": str(tmp_path), "settle_seconds": 60})
    batch = read_all(conn)
    assert batch.events == [] and batch.dead_letters == []
    path.write_bytes(ndjson_line(resource("r4-patient-read-server.json")))
    os.utime(path, OLD)
    assert len(read_all(conn, batch.cursor).events) == 1


def test_ndjson_export_is_followed_with_line_numbers_in_dead_letters(tmp_path: Path) -> None:
    path = tmp_path / "AuditEvent.ndjson"
    patient = {"resourceType": "Patient", "id": "p"}
    path.write_bytes(ndjson_line(resource("r4-patient-read-server.json")) + b"{broken\n" + ndjson_line(patient))
    conn = FhirAuditEventFileConnector("bulk", {"path": str(tmp_path)})
    first = read_all(conn)
    assert [e["ehr.audit.id"] for e in first.events] == ["ex-auditBasicReadServer"]
    assert [(d.location, d.reason.split(":")[0]) for d in first.dead_letters] == [
        (f"{path}:2", "invalid JSON"), (f"{path}:3", "field 'resourceType'")]
    with path.open("ab") as f:  # appended later, the last line still being written
        f.write(ndjson_line(resource("r5-patient-read.json")) + b'{"resourceType": "Audit')
    second = read_all(conn, first.cursor)
    assert [e["ehr.audit.id"] for e in second.events] == ["r5-read-1"] and second.dead_letters == []
    bundle_line = ndjson_line(resource("r4-bundle-create-update-delete.json"))
    with path.open("ab") as f:
        f.write(b'Event"}\n' + bundle_line)
    third = read_all(conn, second.cursor)
    assert len(third.events) == 3
    assert sorted(d.location for d in third.dead_letters) == [f"{path}:5", f"{path}:6#entry[4]"]


def test_ndjson_rotation_and_truncation(tmp_path: Path) -> None:
    path = tmp_path / "audit.ndjson"
    conn = FhirAuditEventFileConnector("bulk", {"path": str(path)})
    path.write_bytes(ndjson_line(resource("r4-patient-read-server.json")))
    cursor = read_all(conn).cursor
    path.rename(tmp_path / "audit.ndjson.1")
    path.write_bytes(ndjson_line(resource("r5-patient-read.json")))
    batch = read_all(conn, cursor)
    assert [e["ehr.audit.id"] for e in batch.events] == ["r5-read-1"]
    with path.open("r+b") as f:
        f.truncate(0)
    with path.open("ab") as f:
        f.write(ndjson_line(resource("r5-search-failure.json")))
    assert [e["ehr.audit.id"] for e in read_all(conn, batch.cursor).events] == ["r5-search-2"]


def test_rereading_gives_the_same_event_ids(tmp_path: Path) -> None:
    path = tmp_path / "audit.ndjson"
    no_id = resource("r4-patient-read-server.json")
    del no_id["id"]
    path.write_bytes(ndjson_line(resource("r5-patient-read.json")) + ndjson_line(no_id))
    first = read_all(FhirAuditEventFileConnector("bulk", {"path": str(path)}))
    second = read_all(FhirAuditEventFileConnector("bulk", {"path": str(path)}))
    assert [e["event.id"] for e in first.events] == [e["event.id"] for e in second.events]
    assert len({e["event.id"] for e in first.events}) == 2


def test_invalid_single_json_file_is_one_dead_letter(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"\xff\xfe not json")
    os.utime(path, OLD)
    batch = read_all(FhirAuditEventFileConnector("ehr", {"path": str(tmp_path)}))
    assert [d.location for d in batch.dead_letters] == [str(path)]
    assert batch.events == []


# --- properties: no input crashes the connector ----------------------------------------------------------

resource_like = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=10),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(
        st.sampled_from(["resourceType", "recorded", "entry", "resource", "agent", "entity", "what", "type",
                         "code", "outcome", "id", "x"]), c, max_size=4),
    max_leaves=20,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.binary(max_size=200).map(lambda b: b.replace(b"\n", b"")) |
                resource_like.map(lambda r: orjson.dumps(r)), min_size=1, max_size=6),
       st.booleans())
def test_arbitrary_files_become_events_or_dead_letters(lines: list[bytes], as_json_file: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        if as_json_file:
            path = Path(tmp) / "doc.json"
            path.write_bytes(lines[0])
            os.utime(path, OLD)
        else:
            path = Path(tmp) / "export.ndjson"
            path.write_bytes(b"".join(l + b"\n" for l in lines))
        batch = read_all(FhirAuditEventFileConnector("fuzz", {"path": tmp}), max_events=2)
        for dead in batch.dead_letters:
            assert dead.location.startswith(str(path)) and dead.reason
            assert not dead.reason.startswith("internal error"), dead.reason
        for event in batch.events:
            assert event["event.dataset"] == "ehr.audit"
        orjson.dumps(batch.cursor)
