"""The ``winlogbeat`` connector as a user sees it: Winlogbeat 7/8, Elastic Agent and NXLog JSON of the same
Windows event become the same flat event; files are tailed; lines arrive over real TCP and TLS sockets;
bad lines are dead letters with their position; ``wardwatch parse winlogbeat`` prints events."""

from __future__ import annotations

import copy
import os
import sqlite3
from contextlib import closing
from datetime import timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.base import Batch, ConnectorConfigError, connector_class
from connectors.tailing import Line
from connectors.vpn.base import parse_timezone
from connectors.windows.record import normalise_record
from connectors.windows.winlogbeat import WinlogbeatConnector
from connectors.windows.winlogbeat_records import WinlogbeatDocumentError, record_from_document
from engine.cli import main
from engine.errors import SourceUnavailable
from engine.events import flatten
from tests.net_helpers import read_until, send_tcp_lines, send_tls_lines, server_cert_files

# --- one failed logon (4625, bad password from 10.20.30.40) as each shipper writes it ---------------------
_EVENT_DATA = {
    "SubjectUserSid": "S-1-0-0", "SubjectUserName": "-", "SubjectDomainName": "-", "SubjectLogonId": "0x0",
    "TargetUserSid": "S-1-0-0", "TargetUserName": "JDoe", "TargetDomainName": "HOSPITAL",
    "Status": "0xc000006d", "FailureReason": "%%2313", "SubStatus": "0xc000006a", "LogonType": "3",
    "LogonProcessName": "NtLmSsp ", "AuthenticationPackageName": "NTLM", "WorkstationName": "WS-RAD-07",
    "TransmittedServices": "-", "LmPackageName": "-", "KeyLength": "0", "ProcessId": "0x0",
    "ProcessName": "-", "IpAddress": "::ffff:10.20.30.40", "IpPort": "51234",
}
WINLOGBEAT_8 = {
    "@timestamp": "2026-12-01T08:15:02.123Z",
    "agent": {"type": "winlogbeat", "version": "8.15.0"},
    "event": {"code": "4625", "kind": "event", "provider": "Microsoft-Windows-Security-Auditing",
              "action": "logon-failed", "outcome": "failure", "category": ["authentication"]},
    "log": {"level": "information"},
    "host": {"name": "dc01.hospital.example"},
    "message": "An account failed to log on.",
    "winlog": {
        "channel": "Security", "computer_name": "DC01.hospital.example", "event_id": "4625",
        "provider_name": "Microsoft-Windows-Security-Auditing",
        "provider_guid": "{54849625-5478-4994-a5ba-3e3b0328c30d}", "record_id": "918273",
        "keywords": ["Audit Failure"], "opcode": "Info", "task": "Logon", "api": "wineventlog",
        "process": {"pid": 668, "thread": {"id": 4120}}, "event_data": dict(_EVENT_DATA),
    },
}
WINLOGBEAT_7 = copy.deepcopy(WINLOGBEAT_8)
WINLOGBEAT_7["agent"]["version"] = "7.17.9"
WINLOGBEAT_7["winlog"]["event_id"] = 4625
WINLOGBEAT_7["winlog"]["record_id"] = 918273
ELASTIC_AGENT = copy.deepcopy(WINLOGBEAT_8)
ELASTIC_AGENT["agent"] = {"type": "filebeat", "version": "8.15.0"}
ELASTIC_AGENT["data_stream"] = {"dataset": "system.security", "namespace": "default", "type": "logs"}
ELASTIC_AGENT["event"]["dataset"] = "system.security"
ELASTIC_AGENT["event"]["module"] = "system"
NXLOG = {
    "EventTime": "2026-12-01 09:15:02", "Hostname": "DC01.hospital.example",
    "Keywords": str(0x8010000000000000),  # NXLog: the keyword mask as an unsigned 64-bit number
    "EventType": "AUDIT_FAILURE", "SeverityValue": 4, "Severity": "ERROR", "EventID": 4625,
    "SourceName": "Microsoft-Windows-Security-Auditing",
    "ProviderGuid": "{54849625-5478-4994-A5BA-3E3B0328C30D}", "Version": 0, "Task": 12544, "OpcodeValue": 0,
    "RecordNumber": 918273, "ExecutionProcessID": 668, "ExecutionThreadID": 4120, "Channel": "Security",
    "Category": "Logon", "Opcode": "Info", "Message": "An account failed to log on.",
    "EventReceivedTime": "2026-12-01 09:15:03", "SourceModuleName": "eventlog",
    "SourceModuleType": "im_msvistalog", **_EVENT_DATA,
}
FLAVOURS = {"winlogbeat-7": WINLOGBEAT_7, "winlogbeat-8": WINLOGBEAT_8, "elastic-agent": ELASTIC_AGENT,
            "nxlog": NXLOG}
#: NXLog writes local time: the DC is in Berlin
TZ = {"nxlog": parse_timezone("Europe/Berlin")}


def flat_event(doc: dict, flavour: str = "") -> dict[str, Any]:
    return normalise_record(record_from_document(doc, TZ.get(flavour, timezone.utc)))


def es_fields(doc: dict) -> dict[str, list]:
    """A document as an Elasticsearch search returns it under ``fields``: dotted keys, values in lists."""
    return {k: (v if isinstance(v, list) else [v]) for k, v in flatten(doc).items()}


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_every_flavour_gives_the_same_flat_event(flavour: str) -> None:
    event = flat_event(FLAVOURS[flavour], flavour)
    assert event["EventID"] == 4625
    assert event["Channel"] == "Security"
    assert event["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
    assert event["Computer"] == "DC01.hospital.example"
    assert event["EventRecordID"] == 918273
    assert event["TargetUserName"] == "JDoe"
    assert event["LogonType"] == "3"
    assert event["@timestamp"] == ("2026-12-01T08:15:02.000Z" if flavour == "nxlog" else "2026-12-01T08:15:02.123Z")
    assert event["event.code"] == "4625"
    assert event["event.outcome"] == "failure"
    assert event["event.dataset"] == "windows.security"
    assert (event["user.name"], event["user.domain"]) == ("jdoe", "hospital")
    assert (event["source.ip"], event["source.port"]) == ("10.20.30.40", 51234)
    assert event["host.name"] == "dc01.hospital.example"
    assert event["ProcessID"] == "668" and event["ThreadID"] == "4120"
    assert event["message"] == "An account failed to log on."


def test_flavours_agree_on_every_sigma_field() -> None:
    events = {name: flat_event(doc, name) for name, doc in FLAVOURS.items()}
    reference = events["winlogbeat-8"]
    for name, event in events.items():
        for key in list(_EVENT_DATA) + ["EventID", "Channel", "Computer", "EventRecordID", "user.name",
                                         "source.ip", "event.outcome", "Keywords"]:
            assert event[key] == reference[key], (name, key)


def test_nxlog_own_fields_are_not_event_data() -> None:
    event = flat_event(NXLOG, "nxlog")
    for own in ("EventReceivedTime", "SourceModuleName", "SourceModuleType", "Category",
                "ExecutionProcessID", "SeverityValue", "Hostname", "RecordNumber"):
        assert own not in event, own
    assert (event["Task"], event["Opcode"]) == ("12544", "0")  # System fields as EVTX numbers them, not "Info"
    # an NXLog that typed an EventData item as a number still gives the text Winlogbeat sends
    assert flat_event(dict(NXLOG, LogonType=3, KeyLength=0), "nxlog")["LogonType"] == "3"


def test_nxlog_account_lookup_is_dropped_only_when_it_is_nxlogs() -> None:
    service = {"EventTime": "2026-12-01 09:00:00", "Hostname": "WS-ER-12", "EventID": 7045, "Channel": "System",
               "SourceName": "Service Control Manager", "RecordNumber": 77, "SourceModuleType": "im_msvistalog",
               "ServiceName": "PSEXESVC", "ImagePath": "%SystemRoot%\\PSEXESVC.exe", "AccountName": "LocalSystem"}
    assert flat_event(service)["AccountName"] == "LocalSystem"  # no UserID: EventData
    with_lookup = dict(service, UserID="S-1-5-18", Domain="NT AUTHORITY", AccountType="User")
    event = flat_event(with_lookup)
    assert "AccountName" not in event and "Domain" not in event and event["UserID"] == "S-1-5-18"


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_dotted_and_elasticsearch_fields_spellings_map_the_same(flavour: str) -> None:
    doc = FLAVOURS[flavour]
    expected = flat_event(doc, flavour)
    assert flat_event(flatten(doc), flavour) == expected
    assert flat_event(es_fields(doc), flavour) == expected


def test_user_data_leaf_names_and_audit_success() -> None:
    doc = {"@timestamp": "2026-12-01T10:00:00Z",
           "winlog": {"channel": "Security", "computer_name": "WS-ICU-03", "event_id": 1102, "record_id": 5,
                      "provider_name": "Microsoft-Windows-Eventlog", "keywords": ["Audit Success"],
                      "user_data": {"xml_name": "LogFileCleared", "SubjectUserSid": "S-1-5-21-1-2-3-1104",
                                    "SubjectUserName": "mallory", "SubjectDomainName": "HOSPITAL"}}}
    event = flat_event(doc)
    assert event["SubjectUserName"] == "mallory" and "xml_name" not in event
    assert event["event.outcome"] == "success"
    assert (event["user.name"], event["user.id"]) == ("mallory", "S-1-5-21-1-2-3-1104")


def test_outcome_from_ecs_when_keywords_are_absent() -> None:
    doc = copy.deepcopy(WINLOGBEAT_8)
    del doc["winlog"]["keywords"]
    assert flat_event(doc)["event.outcome"] == "failure"


def test_nxlog_time_with_an_offset_keeps_it_and_signed_keywords_work() -> None:
    doc = dict(NXLOG, EventTime="2026-12-01T09:15:02+01:00", Keywords=0x8010000000000000 - (1 << 64))
    doc.pop("EventType")
    event = flat_event(doc, "nxlog")
    assert event["@timestamp"] == "2026-12-01T08:15:02.000Z"
    assert event["event.outcome"] == "failure"


@pytest.mark.parametrize("stamp", [1796112902, 1796112902000, 1796112902000000])
def test_nxlog_epoch_times_in_seconds_milliseconds_or_microseconds(stamp: int) -> None:
    """``Exec $EventTime = integer($EventTime);`` gives microseconds; some configs divide to s or ms."""
    assert flat_event(dict(NXLOG, EventTime=stamp))["@timestamp"] == "2026-12-01T08:15:02.000Z"


@pytest.mark.parametrize("doc, key", [
    ({"message": "hello"}, "not a Winlogbeat"),
    ({"winlog": {"channel": "Security"}, "@timestamp": "2026-12-01T00:00:00Z"}, "winlog.event_id"),
    ({"winlog": {"event_id": "46x25", "channel": "Security", "computer_name": "a"},
      "@timestamp": "2026-12-01T00:00:00Z"}, "winlog.event_id"),
    ({"winlog": {"event_id": 1, "channel": "Security", "computer_name": "a"}}, "@timestamp"),
    ({"winlog": {"event_id": 1, "channel": "Security", "computer_name": "a"}, "@timestamp": "yesterday"},
     "@timestamp"),
    ({"winlog": {"event_id": 1, "channel": "Security"}, "@timestamp": "2026-12-01T00:00:00Z"}, "host.name"),
    (dict(NXLOG, EventTime="01/12/2026"), "EventTime"),
    ({k: v for k, v in NXLOG.items() if k != "Channel"}, "Channel"),
])
def test_bad_documents_name_the_key(doc: dict, key: str) -> None:
    with pytest.raises(WinlogbeatDocumentError, match=key):
        record_from_document(doc)


@pytest.mark.parametrize("key, value", [("EventTime", "Mueller, Anna 01/12/2026"), ("EventID", "Mueller"),
                                        ("RecordNumber", ["Mueller"]), ("EventTime", {"patient": "Mueller"})])
def test_reasons_name_the_key_but_never_quote_the_value(key: str, value: Any) -> None:
    """Dead-letter reasons are logged (engine/ingest.py); a value may be anything, a patient's name too."""
    with pytest.raises(WinlogbeatDocumentError, match=key) as err:
        record_from_document(dict(NXLOG, **{key: value}))
    assert "Mueller" not in str(err.value)


_json_scalars = st.none() | st.booleans() | st.integers(-(2**64), 2**64) | st.floats() | st.text(max_size=12)
_json = st.recursive(_json_scalars, lambda inner: st.lists(inner, max_size=3)
                     | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)
_keys = st.sampled_from(sorted({*NXLOG, "winlog", "@timestamp", "event", "message", "host"}))


@settings(max_examples=200, deadline=None)
@given(base=st.sampled_from(sorted(FLAVOURS)), changes=st.dictionaries(_keys, _json, max_size=4))
def test_fuzzed_documents_give_a_record_or_one_clear_error(base: str, changes: dict) -> None:
    doc = dict(copy.deepcopy(FLAVOURS[base]), **changes)
    try:
        event = flat_event(doc, base)
    except WinlogbeatDocumentError as exc:
        assert "\n" not in str(exc) and len(str(exc)) < 300
        return
    assert type(event["EventID"]) is int and type(event["Channel"]) is str
    orjson.dumps(event)  # the store can take it


@settings(max_examples=200, deadline=None)
@given(data=st.dictionaries(st.text(min_size=1, max_size=10), _json, max_size=6))
def test_fuzzed_winlog_sections_never_raise_anything_else(data: dict) -> None:
    doc = copy.deepcopy(WINLOGBEAT_8)
    doc["winlog"].update(data)
    try:
        record_from_document(doc)
    except WinlogbeatDocumentError:
        pass


# --- the fixtures: 93 records of one morning, written by each shipper ---------------------------------------

DATA = Path(__file__).parent / "data" / "winlogbeat"
FILES = {"winlogbeat-7": "winlogbeat-7.ndjson", "winlogbeat-8": "winlogbeat-8.ndjson",
         "elastic-agent": "elastic-agent.ndjson", "nxlog": "nxlog.json"}
#: What only one kind of shipper knows: NXLog has the numeric Task and a zero Version, and sends keyword masks
#: without audit bits that Winlogbeat leaves out; Winlogbeat's log.level is the Windows Level.
SHIPPER_ONLY = {"Task", "Version", "Keywords", "Level", "event.original"}


def connector(**options: Any) -> WinlogbeatConnector:
    return WinlogbeatConnector("wlb", options)


def read_all(conn: WinlogbeatConnector, cursor: dict | None = None) -> Batch:
    return conn.read(cursor, 10000)


def fixture_events(flavour: str) -> list[dict[str, Any]]:
    conn = connector(path=str(DATA / FILES[flavour]), timezone="Europe/Berlin")
    conn.read_to_end()
    batch = read_all(conn)
    assert batch.dead_letters == []
    return batch.events


def test_the_type_is_registered() -> None:
    assert connector_class("winlogbeat") is WinlogbeatConnector


def test_four_fixture_files_give_the_same_events() -> None:
    events = {flavour: fixture_events(flavour) for flavour in FILES}
    reference = [{k: v for k, v in e.items() if k not in SHIPPER_ONLY} for e in events["winlogbeat-8"]]
    assert len(reference) == 93
    for flavour, found in events.items():
        assert [{k: v for k, v in e.items() if k not in SHIPPER_ONLY} for e in found] == reference, flavour
    # the scenarios are there, in SigmaHQ and ECS terms
    spray = [e for e in reference if e["EventID"] == 4625 and e["source.ip"] == "10.20.30.40"]
    assert len(spray) == 12 and len({e["user.name"] for e in spray}) == 12
    assert all(e["event.outcome"] == "failure" and e["LogonType"] == "3" for e in spray)
    (cleared,) = [e for e in reference if e["EventID"] == 1102]
    assert cleared["SubjectUserName"] == "svc.backup" and cleared["Provider_Name"] == "Microsoft-Windows-Eventlog"
    sysmon = [e for e in reference if e["event.dataset"] == "windows.sysmon"]
    assert {e["EventID"] for e in sysmon} == {1, 3} and all(e["UserID"] == "S-1-5-18" for e in sysmon)
    assert [e["TargetUserName"] for e in reference if e["EventID"] == 4728] == ["Domain Admins"]
    # one record, one id, whichever shipper carried it (engine.identity: Computer + Channel + RecordID)
    assert len({e["event.id"] for e in reference}) == 93


def test_nxlog_local_time_follows_the_timezone_option() -> None:
    utc = connector(path=str(DATA / "nxlog.json"))
    utc.read_to_end()
    first = read_all(utc).events[0]
    assert first["@timestamp"] == "2026-12-01T07:30:20.000Z"  # read as UTC: an hour late
    assert fixture_events("nxlog")[0]["@timestamp"] == "2026-12-01T06:30:20.000Z"
    assert fixture_events("winlogbeat-8")[0]["@timestamp"] == "2026-12-01T06:30:20.000Z"


@pytest.mark.parametrize("options, key", [
    ({}, "path"),
    ({"path": "/x", "spool_dir": "/y"}, "path"),
    ({"path": "/x", "timezone": "Mars/Olympus"}, "timezone"),
    ({"path": "/x", "listen": [{"protocol": "tcp", "port": 0}]}, "spool_dir"),
    ({"spool_dir": "/y", "listen": [{"port": 5140}]}, "certfile"),  # TLS by default
    ({"spool_dir": "/y", "listen": [{"protocol": "udp", "port": 5140}]}, r"listen\[0\].protocol"),
    ({"path": "/x", "dataset": "windows"}, "dataset"),
    ({"path": "/x", "max_message_bytes": 0}, "max_message_bytes"),
])
def test_bad_options_name_the_key(options: dict, key: str) -> None:
    with pytest.raises(ConnectorConfigError, match=key):
        connector(**options)


def lines_of(flavour: str) -> list[bytes]:
    return (DATA / FILES[flavour]).read_bytes().splitlines()


def test_tail_rotation_and_resume_give_the_same_ids(tmp_path: Path) -> None:
    lines = lines_of("winlogbeat-8")
    log = tmp_path / "winlogbeat.ndjson"
    log.write_bytes(b"\n".join(lines[:60]) + b"\n")
    conn = connector(path=str(log))
    first = conn.read(None, 25)
    assert len(first.events) == 25 and not first.exhausted
    rest = read_all(conn, first.cursor)
    assert len(rest.events) == 35 and rest.exhausted
    with log.open("ab") as fh:  # tail: one more line, and half of the next (the writer is mid-line)
        fh.write(lines[60] + b"\n" + lines[61][:40])
    appended = read_all(conn, rest.cursor)
    assert [e["EventRecordID"] for e in appended.events] == [int(orjson.loads(lines[60])["winlog"]["record_id"])]
    with log.open("ab") as fh:
        fh.write(lines[61][40:] + b"\n")
    appended2 = read_all(conn, appended.cursor)
    assert len(appended2.events) == 1
    os.rename(log, tmp_path / "winlogbeat.ndjson.1")  # Winlogbeat's file output rotates by renaming
    log.write_bytes(lines[62] + b"\n")
    rotated = read_all(conn, appended2.cursor)
    assert len(rotated.events) == 1
    conn.close()
    assert read_all(connector(path=str(log)), rotated.cursor).events == []  # resume: nothing twice
    seen = {e["event.id"] for b in (first, rest, appended, appended2, rotated) for e in b.events}
    assert len(seen) == 63
    reread = read_all(connector(path=str(tmp_path / "winlogbeat.ndjson*")))
    assert {e["event.id"] for e in reread.events} == seen  # a re-read lands on the stored copies


def test_bad_lines_are_dead_letters_with_file_and_line(tmp_path: Path) -> None:
    good = lines_of("nxlog")[0]
    log = tmp_path / "nxlog.json"
    log.write_bytes(b"\n".join([
        good, b"{not json", b"[1, 2]", b'{"EventID": 4625, "Hostname": "DC01", "EventTime": "2026-12-01 08:00:00"}',
        b"", b'{"message": "hello"}', b"\xff\xfe{}", b"2W\x00\x00\x00\x01", good.replace(b'"EventTime":"2026', b'"EventTime":"20x6'),
        good,
    ]) + b"\n")
    conn = connector(path=str(log), max_line_bytes=4096)
    batch = read_all(conn)
    assert len(batch.events) == 2
    reasons = {d.location.rpartition(":")[2]: d.reason for d in batch.dead_letters}
    assert all(d.location.startswith(str(log) + ":") for d in batch.dead_letters)
    assert reasons["2"].startswith("invalid JSON")
    assert reasons["3"] == "not a JSON object (got list)"
    assert "'Channel'" in reasons["4"]
    assert "not a Winlogbeat" in reasons["6"]
    assert reasons["7"].startswith("invalid UTF-8")
    assert "lumberjack" in reasons["8"]
    assert "'EventTime'" in reasons["9"]
    assert set(reasons) == {"2", "3", "4", "6", "7", "8", "9"}  # line 5 is blank: skipped
    assert all("\n" not in r for r in reasons.values())


def test_missing_file_is_one_source_unavailable_line(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailable, match=r"connector 'wlb': path .*nope.ndjson does not exist"):
        read_all(connector(path=str(tmp_path / "nope.ndjson")))


def _listener(tmp_path: Path, entry: dict[str, Any], **options: Any) -> WinlogbeatConnector:
    return connector(spool_dir=str(tmp_path / "spool"), listen=[entry], timezone="Europe/Berlin", **options)


def test_tcp_listener_takes_nxlog_om_tcp_lines(tmp_path: Path) -> None:
    lines = lines_of("nxlog")[:30]
    conn = _listener(tmp_path, {"protocol": "tcp", "port": 0})
    conn.start()
    try:
        (protocol, host, port), = conn.addresses
        assert protocol == "tcp"
        send_tcp_lines(host, port, lines[:15] + [b"{oops"] + lines[15:])
        batch = read_until(lambda: conn.read(None, 1000), 31)
        assert len(batch.events) == 30
        (dead,) = batch.dead_letters
        assert dead.location.startswith("spool:") and dead.reason.startswith("invalid JSON")
        assert dead.raw == "{oops"
        expected = fixture_events("nxlog")[:30]
        assert [e["event.id"] for e in batch.events] == [e["event.id"] for e in expected]
        assert all(e["log.source.address"].startswith("127.0.0.1") for e in batch.events)
        # the engine commits the cursor; a restart drains from there and gets nothing twice
        assert conn.read(batch.cursor, 1000).events == []
    finally:
        conn.close()


def test_a_line_over_max_message_bytes_is_one_dead_letter_and_the_next_line_still_arrives(tmp_path: Path) -> None:
    small = min(lines_of("nxlog"), key=len)
    big = max(lines_of("winlogbeat-8"), key=len)
    conn = _listener(tmp_path, {"protocol": "tcp", "port": 0}, max_message_bytes=len(small) + 10)
    assert len(big) > len(small) + 10
    conn.start()
    try:
        (_, host, port), = conn.addresses
        send_tcp_lines(host, port, [big, small])
        batch = read_until(lambda: conn.read(None, 100), 2)
        assert [e["EventRecordID"] for e in batch.events] == [orjson.loads(small)["RecordNumber"]]
        (dead,) = batch.dead_letters
        assert dead.reason.startswith(f"LF-terminated frame exceeds max_message_bytes={len(small) + 10}")
        assert dead.location.startswith("tcp:127.0.0.1:")  # the sender, as for every listener's framing error
    finally:
        conn.close()


def test_tls_listener_takes_winlogbeat_and_nxlog_lines_alike(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    certfile, keyfile = server_cert_files(ca, tmp_path, split_key=True)
    conn = _listener(tmp_path, {"port": 0, "certfile": certfile, "keyfile": keyfile})  # TLS: the default
    conn.start()
    try:
        (protocol, host, port), = conn.addresses
        assert protocol == "tls"
        send_tls_lines(host, port, lines_of("winlogbeat-8")[:20], ca)
        send_tls_lines(host, port, lines_of("nxlog")[20:40], ca)
        batch = read_until(lambda: conn.read(None, 1000), 40)
        assert batch.dead_letters == []
        assert [e["EventRecordID"] for e in batch.events] == [e["EventRecordID"] for e in fixture_events("winlogbeat-8")[:40]]
        assert conn.read(None, 1000).events[0]["event.id"] == batch.events[0]["event.id"]  # re-drain: same id
    finally:
        conn.close()


def test_a_plain_tcp_client_on_the_tls_port_is_refused_not_spooled(tmp_path: Path) -> None:
    trustme = pytest.importorskip("trustme")
    certfile, _ = server_cert_files(trustme.CA(), tmp_path)
    conn = _listener(tmp_path, {"port": 0, "certfile": certfile, "handshake_timeout": 2})
    conn.start()
    try:
        (_, host, port), = conn.addresses
        send_tcp_lines(host, port, lines_of("nxlog")[:3])
        batch = read_until(lambda: conn.read(None, 100), 3, timeout=1.5)
        assert batch.events == []  # plaintext JSON never reaches the spool of a TLS listener
    finally:
        conn.close()


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_wardwatch_parse_prints_the_flat_events(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # no ./wardwatch.yaml: the built-in defaults
    code, out, err = run_cli(capsys, "parse", "winlogbeat", str(DATA / "nxlog.json"), "--format", "json",
                             "--timezone", "Europe/Berlin")
    assert code == 0 and err == ""
    events = [orjson.loads(line) for line in out.splitlines()]
    assert events == [{k: v for k, v in e.items() if k != "event.ingested"} for e in fixture_events("nxlog")]
    bad = tmp_path / "bad.ndjson"
    bad.write_bytes(lines_of("winlogbeat-7")[0] + b"\n{broken\n")
    code, out, err = run_cli(capsys, "parse", "winlogbeat", str(bad), "--format", "json")
    assert code == 0 and len(out.splitlines()) == 1
    assert f"dead letter: {bad}:2: invalid JSON" in err


def test_ingest_stores_a_record_once_whichever_shipper_sent_it(tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\nlogging:\n  level: warning\n")
    code, out, _ = run_cli(capsys, "ingest", "winlogbeat", str(DATA / "nxlog.json"), "-o", "timezone=Europe/Berlin")
    assert code == 0 and "93 events read, 93 stored, 0 duplicates, 0 dead letters" in out
    code, out, _ = run_cli(capsys, "ingest", "winlogbeat", str(DATA / "winlogbeat-8.ndjson"))
    assert code == 0 and "93 events read, 0 stored, 93 duplicates" in out
    with closing(sqlite3.connect(tmp_path / "w.db")) as db:
        assert db.execute("SELECT count(*) FROM events").fetchone() == (93,)


_line_bytes = st.binary(max_size=120) | st.text(max_size=120).map(str.encode)


@settings(max_examples=200, deadline=None)
@given(st.sampled_from(sorted(FLAVOURS)), st.integers(0, 400), _line_bytes)
def test_fuzzed_lines_become_an_event_or_a_one_line_dead_letter(flavour: str, cut: int, noise: bytes) -> None:
    """Truncated, spliced and random lines: never an exception, always an event or a reason."""
    line = orjson.dumps(FLAVOURS[flavour])
    data = (line[:cut] + noise + line[cut:]).replace(b"\n", b" ")
    conn = WinlogbeatConnector("fuzz", {"path": "/nonexistent", "timezone": "Europe/Berlin"})
    outcome = conn.line_to_event(Line("/x.ndjson", 7, data))
    if outcome is None:
        assert data.strip() == b""
    elif type(outcome) is dict:
        assert type(outcome["EventID"]) is int and outcome["event.id"]
    else:
        assert outcome.location == "/x.ndjson:7" and "\n" not in outcome.reason
