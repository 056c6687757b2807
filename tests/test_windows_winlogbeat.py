"""The ``winlogbeat`` connector as a user sees it: Winlogbeat 7/8, Elastic Agent and NXLog JSON of the same
Windows event become the same flat event; files are tailed; lines arrive over real TCP and TLS sockets;
bad lines are dead letters with their position; ``wardwatch parse winlogbeat`` prints events."""

from __future__ import annotations

import copy
from datetime import timezone
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.vpn.base import parse_timezone
from connectors.windows.record import normalise_record
from connectors.windows.winlogbeat_records import WinlogbeatDocumentError, record_from_document

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
    from engine.events import flatten
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
    assert event["ProcessID"] == 668 and event["ThreadID"] == 4120
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
    assert (event["Task"], event["Opcode"]) == (12544, 0)  # System fields, numeric as in EVTX, not "Info"


@pytest.mark.parametrize("flavour", sorted(FLAVOURS))
def test_dotted_and_elasticsearch_fields_spellings_map_the_same(flavour: str) -> None:
    from engine.events import flatten
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
