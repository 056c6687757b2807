"""An event's identity is what the source says it is, never the connector's name (issue 7, item 2).

The same log ingested twice - under another connector name, by the service and then the CLI, after a
copy, rename or rotation, into SQLite or Elasticsearch - is stored once; two byte-identical records at
different places of one stream are two events.
"""

from __future__ import annotations

import shutil
import sqlite3
import uuid
from pathlib import Path
from typing import Iterator

import orjson
import pytest

from connectors.atna_syslog import AtnaSyslogConnector
from connectors.ehr_csv import EhrCsvConnector
from connectors.fhir_file import FhirAuditEventFileConnector
from connectors.fhir_mapping import auditevent_to_event
from connectors.ndjson import NdjsonFileConnector
from connectors.syslog.spool import Spool, SpoolRecord
from engine.cli import main
from engine.store import open_store
from tests.conftest import read_all, require_elasticsearch

ROOT = Path(__file__).resolve().parent.parent
VPN = ROOT / "fixtures/vpn"


# --- the CLI and the service, on both stores ----------------------------------------------------------

@pytest.fixture(params=["sqlite", "elasticsearch"])
def store_yaml(request, tmp_path: Path) -> Iterator[str]:
    """The ``store:`` block of a config for each store kind (Elasticsearch: a fresh index prefix)."""
    if request.param == "sqlite":
        yield f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
        return
    url = require_elasticsearch()
    prefix = f"wwtest-ids-{uuid.uuid4().hex[:8]}"
    yield f"store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [{url}]\n    index_prefix: {prefix}\n"
    store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    store.delete_all()
    store.close()


def _config(tmp_path: Path, store_yaml: str, connectors: str = "[]") -> None:
    (tmp_path / "wardwatch.yaml").write_text(
        store_yaml + f"rules:\n  paths: [{ROOT}/rules/healthcare]\nconnectors: {connectors}\n"
        "alerts:\n  sinks: []\n")


def _cli(capsys, *argv: str) -> str:
    assert main(list(argv)) == 0
    return capsys.readouterr().out


def test_same_file_under_two_connector_names_is_stored_once(tmp_path, capsys, monkeypatch, store_yaml):
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, store_yaml)
    out = _cli(capsys, "ingest", "ndjson", str(VPN), "-o", "dataset=vpn.auth", "--name", "vpn-a")
    assert "66 events read, 66 stored, 0 duplicates" in out
    out = _cli(capsys, "ingest", "ndjson", str(VPN), "-o", "dataset=vpn.auth", "--name", "vpn-b")
    assert "66 events read, 0 stored, 66 duplicates" in out


def test_cli_ingest_after_the_service_stores_nothing_new_and_raises_no_alert(tmp_path, capsys, monkeypatch,
                                                                            store_yaml):
    """`make run` (connector vpn-demo) then `wardwatch ingest ndjson fixtures/vpn -o dataset=vpn.auth`."""
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, store_yaml, f"[{{name: vpn-demo, type: ndjson, path: {VPN}, dataset: vpn.auth}}]")
    assert "1 new or updated alert(s)" in _cli(capsys, "run", "--once")
    out = _cli(capsys, "ingest", "ndjson", "fixtures/vpn" if (tmp_path / "fixtures").exists() else str(VPN),
               "-o", "dataset=vpn.auth")
    assert "66 events read, 0 stored, 66 duplicates" in out
    assert "0 new or updated alert(s)" in _cli(capsys, "run", "--once")


# --- the record rule: raw bytes + position in their stream ---------------------------------------------

LINE = b'{"@timestamp":"2026-11-02T05:31:47.000Z","event.outcome":"failure","user.name":"eengel"}'


def _ids(connector) -> list[str]:
    try:
        return [e["event.id"] for e in read_all(connector).events]
    finally:
        connector.close()


def test_identical_lines_in_one_file_are_distinct_events(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(LINE + b"\n" + LINE + b"\n")
    ids = _ids(NdjsonFileConnector("x", {"path": str(tmp_path)}))
    assert len(ids) == 2 and len(set(ids)) == 2


def test_copied_renamed_or_rotated_file_keeps_its_ids(tmp_path):
    live, copy = tmp_path / "live", tmp_path / "copy"
    live.mkdir()
    copy.mkdir()
    shutil.copy(VPN / "vpn-auth.ndjson", live / "vpn.log.ndjson")
    first = _ids(NdjsonFileConnector("service", {"path": str(live)}))
    shutil.copy(live / "vpn.log.ndjson", copy / "renamed.ndjson")
    (live / "vpn.log.ndjson").rename(live / "vpn.log.1.ndjson")  # rotated, still matched by the path
    assert _ids(NdjsonFileConnector("cli-ndjson", {"path": str(copy)})) == first
    assert _ids(NdjsonFileConnector("other", {"path": str(live)})) == first


def test_a_resume_from_the_cursor_gives_the_same_ids_as_one_read(tmp_path):
    path = tmp_path / "a.ndjson"
    path.write_bytes((LINE + b"\n") * 5)
    whole = _ids(NdjsonFileConnector("x", {"path": str(path)}))
    conn = NdjsonFileConnector("y", {"path": str(path)})
    first = conn.read(None, 2)
    rest = read_all(conn, first.cursor)
    conn.close()
    assert [e["event.id"] for e in first.events + rest.events] == whole


# --- Windows: Computer + Channel + EventRecordID --------------------------------------------------------

def test_windows_record_id_is_its_identity(tmp_path):
    record = {"@timestamp": "2026-11-01T23:05:40.670Z", "EventID": 4625, "Channel": "Security",
              "Computer": "dc01.klinikum.example", "EventRecordID": 8400000}
    (tmp_path / "a.ndjson").write_bytes(orjson.dumps(record) + b"\n")
    # another export of the same record: other field order, an extra field, another line
    other = {"EventRecordID": 8400000, "Computer": "dc01.klinikum.example", "Channel": "Security",
             "EventID": 4625, "@timestamp": "2026-11-01T23:05:40.670Z", "Provider_Name": "x"}
    (tmp_path / "b.ndjson").write_bytes(LINE + b"\n" + orjson.dumps(other) + b"\n")
    a = _ids(NdjsonFileConnector("one", {"path": str(tmp_path / "a.ndjson")}))
    b = _ids(NdjsonFileConnector("two", {"path": str(tmp_path / "b.ndjson")}))
    assert a[0] == b[1]
    next_record = dict(record, EventRecordID=8400001)
    (tmp_path / "c.ndjson").write_bytes(orjson.dumps(next_record) + b"\n")
    assert _ids(NdjsonFileConnector("one", {"path": str(tmp_path / "c.ndjson")}))[0] != a[0]


def test_windows_records_that_share_a_record_id_but_not_a_time_are_two_events(tmp_path):
    """A rebuilt machine (same name) numbers its records from 1 again: computer + channel + record id alone
    would make its new 4625 a duplicate of the old one in Elasticsearch (ids are unique) and not in SQLite
    (time + id), so the two stores would hold different events. The time (to the second: NXLog logs no
    fractions) is part of the identity."""
    record = {"@timestamp": "2020-03-01T10:00:00.120Z", "EventID": 4625, "Channel": "Security",
              "Computer": "ws01", "EventRecordID": 17}
    rebuilt = dict(record, **{"@timestamp": "2021-06-05T08:30:00.000Z"})
    same_second = dict(record, **{"@timestamp": "2020-03-01T10:00:00.999Z"})
    (tmp_path / "a.ndjson").write_bytes(b"".join(orjson.dumps(r) + b"\n" for r in (record, rebuilt, same_second)))
    ids = _ids(NdjsonFileConnector("one", {"path": str(tmp_path / "a.ndjson")}))
    assert ids[0] != ids[1]
    assert ids[0] == ids[2]


# --- FHIR: server + AuditEvent id ------------------------------------------------------------------------

AUDIT = {"resourceType": "AuditEvent", "id": "ae-1", "recorded": "2026-11-02T10:00:00Z",
         "type": {"code": "rest"}, "agent": [{"who": {"identifier": {"value": "u1"}}, "requestor": True}],
         "source": {"observer": {"display": "ehr"}}}


def test_fhir_auditevent_id_from_any_file_or_connector_name(tmp_path):
    (tmp_path / "a.ndjson").write_bytes(orjson.dumps(AUDIT) + b"\n")
    (tmp_path / "b.ndjson").write_bytes(orjson.dumps(dict(AUDIT, meta={"versionId": "1"})) + b"\n")
    a = _ids(FhirAuditEventFileConnector("ehr", {"path": str(tmp_path / "a.ndjson")}))
    b = _ids(FhirAuditEventFileConnector("cli-fhir", {"path": str(tmp_path / "b.ndjson")}))
    assert a == b


def test_fhir_server_is_part_of_the_identity():
    raw = orjson.dumps(AUDIT)
    one = auditevent_to_event(AUDIT, raw=raw, server="https://fhir.klinikum.example/r4/")
    same = auditevent_to_event(AUDIT, raw=raw, server="HTTPS://fhir.klinikum.example/r4")
    other = auditevent_to_event(AUDIT, raw=raw, server="https://fhir.other.example/r4")
    assert one["event.id"] == same["event.id"] != other["event.id"]


# --- syslog spool: a re-drain lands on the same ids ------------------------------------------------------

ATNA = (b'<AuditMessage><EventIdentification EventActionCode="R" EventDateTime="2024-03-01T12:00:00Z"'
        b' EventOutcomeIndicator="4"><EventID csd-code="110114" codeSystemName="DCM" originalText="User Auth"/>'
        b'</EventIdentification><ActiveParticipant UserID="u1" UserIsRequestor="true"/>'
        b'<AuditSourceIdentification AuditSourceID="ehr"/></AuditMessage>')


def test_spool_redrain_by_the_cli_stores_nothing_new(tmp_path):
    spool = Spool(tmp_path / "spool")
    spool.open_writer()
    message = b"<110>1 2024-03-01T12:00:00.000Z host ehr 1 - - " + ATNA
    spool.append([SpoolRecord(message, "tcp:10.0.0.1:5000", 1.0), SpoolRecord(message, "tcp:10.0.0.1:5000", 1.0)])
    spool.close()
    service = _ids(AtnaSyslogConnector("atna1", {"spool_dir": str(tmp_path / "spool")}))
    cli = _ids(AtnaSyslogConnector("cli-atna-syslog", {"spool_dir": str(tmp_path / "spool")}))
    assert service == cli and len(set(service)) == 2  # two identical messages are two events


# --- CSV: a copied or renamed export does not double -----------------------------------------------------

CSV = (b"timestamp,user,patient,action\n2026-11-02T10:00:00Z,u1,P1,read\n2026-11-02T10:00:00Z,u1,P1,read\n")
CSV_OPTIONS = {"columns": {"timestamp": "@timestamp", "user": "user.name", "patient": "ehr.patient.id",
                           "action": "ehr.action"}}


def test_csv_copy_under_another_name_keeps_its_ids(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "a/audit_2026-11-02.csv").write_bytes(CSV)
    (tmp_path / "b/export-copy.csv").write_bytes(CSV)
    a = _ids(EhrCsvConnector("ehr-a", dict(CSV_OPTIONS, path=str(tmp_path / "a"))))
    b = _ids(EhrCsvConnector("ehr-b", dict(CSV_OPTIONS, path=str(tmp_path / "b"))))
    assert a == b and len(set(a)) == 2


# --- existing stores with connector-named ids ------------------------------------------------------------

def test_sqlite_store_with_scheme_1_ids_is_refused_with_what_to_do(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _config(tmp_path, f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n")
    _cli(capsys, "ingest", "ndjson", str(VPN), "-o", "dataset=vpn.auth")
    with sqlite3.connect(tmp_path / "w.db") as conn:  # what a store written before scheme 2 looks like
        conn.execute("DELETE FROM meta WHERE key = 'event_id_scheme'")
    assert main(["ingest", "ndjson", str(VPN), "-o", "dataset=vpn.auth"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(f"{tmp_path}/w.db: events were written with connector-named ids (scheme 1); "
                            "delete the store and ingest again (see docs/sqlite.md)")
    assert "Traceback" not in "\n".join(err)


def test_elasticsearch_store_with_scheme_1_ids_is_refused(tmp_path):
    url = require_elasticsearch()
    prefix = f"wwtest-ids-{uuid.uuid4().hex[:8]}"
    store = open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    try:
        event = {"@timestamp": "2026-11-02T10:00:00.000Z", "event.dataset": "vpn.auth", "event.id": "x"}
        store.write([event])
        store.es.delete(index=store.names["state"], id="meta:event_id_scheme", refresh=True)
        store.es.indices.refresh(index=f"{prefix}-*")
        with pytest.raises(Exception, match=r"connector-named ids \(scheme 1\)"):
            open_store("elasticsearch", hosts=[url], index_prefix=prefix)
    finally:
        store.delete_all()
        store.close()
