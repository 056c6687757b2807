"""The ``evtx`` connector as a user sees it: real ``.evtx`` files (the evtx-samples corpus: Security, Sysmon,
PowerShell, System, Application, Defender ...) become flat events with SigmaHQ's names and the ECS fields;
re-reads, renamed copies and restarts add nothing; a drop-in folder picks up new exports; a growing file
loses nothing; broken files and chunks are dead letters naming the file and position; ``wardwatch parse
evtx`` prints the events. The samples are third-party data: the tests skip when they are absent."""

from __future__ import annotations

import io
import json
import os
import shutil
from contextlib import redirect_stderr, redirect_stdout
from datetime import datetime
from pathlib import Path
from typing import Any

import evtx
import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.base import Batch, connector_class
from connectors.windows.evtx import EvtxConnector
from connectors.windows.evtx_records import EvtxRecordError, record_from_evtx
from connectors.windows.record import WindowsRecord, normalise_record
from engine.events import format_timestamp, parse_timestamp
from engine.identity import windows_id
from tests.conftest import read_all

SAMPLES = Path(__file__).resolve().parents[1].parent / "shared" / "datasets" / "evtx-samples"
needs_samples = pytest.mark.skipif(not SAMPLES.is_dir(), reason="../shared/datasets/evtx-samples not present")

DEEPBLUE = SAMPLES / "DeepBlueCLI"
APPLICATION = DEEPBLUE / "many-events-application.evtx"  # 2216 records, 34 chunks, 125 in the first
CHUNK = 65536
HEADER = 4096


def sample(relative: str) -> Path:
    path = SAMPLES / relative
    if not path.is_file():
        pytest.skip(f"{path} not present")
    return path


def connector(path: Path | str, one_shot: bool = True, **options: Any) -> EvtxConnector:
    conn = EvtxConnector("test-evtx", {"path": str(path), **options})
    if one_shot:
        conn.read_to_end()
    return conn


def drain(conn: EvtxConnector, cursor: dict[str, Any] | None = None, batch: int = 100000) -> Batch:
    """Read until exhausted; one Batch with everything and the last cursor."""
    return read_all(conn, cursor, batch)


def items_of(path: Path) -> int:
    """What pyevtx-rs yields for a file: records plus unparseable chunks."""
    count = 0
    items = evtx.PyEvtxParser(str(path)).records_json()
    while True:
        try:
            next(items)
        except StopIteration:
            return count
        except Exception:  # noqa: BLE001 - a bad chunk is one item
            pass
        count += 1


def by_id(events: list[dict[str, Any]], event_id: int) -> list[dict[str, Any]]:
    return [e for e in events if e["EventID"] == event_id]


# --- record shapes, written from the pyevtx-rs JSON of each EVTX construct (run without the samples) ------


def system_part(event_id: Any, **extra: Any) -> dict[str, Any]:
    system = {"Provider": {"#attributes": {"Name": "Microsoft-Windows-Security-Auditing",
                                           "Guid": "54849625-5478-4994-A5BA-3E3B0328C30D"}},
              "EventID": event_id, "Version": 2, "Level": 0, "Task": 12544, "Opcode": 0,
              "Keywords": "0x8010000000000000",
              "TimeCreated": {"#attributes": {"SystemTime": "2026-12-01T07:15:02.1234567Z"}},
              "EventRecordID": 918273, "Correlation": None,
              "Execution": {"#attributes": {"ProcessID": 668, "ThreadID": 4120}},
              "Channel": "Security", "Computer": "DC01.hospital.example", "Security": None}
    system.update(extra)
    return system


def test_failed_logon_record_gives_sigma_and_ecs_fields():
    doc = {"Event": {"#attributes": {"xmlns": "http://schemas.microsoft.com/win/2004/08/events/event"},
                     "System": system_part(4625),
                     "EventData": {"SubjectUserSid": "S-1-0-0", "SubjectUserName": "-", "TargetUserName": "JDoe",
                                   "TargetDomainName": "HOSPITAL", "Status": "0xc000006d", "LogonType": 3,
                                   "IpAddress": "::ffff:10.20.30.40", "IpPort": 51234, "KeyLength": 0}}}
    event = normalise_record(record_from_evtx(doc))
    assert (event["EventID"], event["event.code"], event["event.outcome"]) == (4625, "4625", "failure")
    assert (event["user.name"], event["user.domain"]) == ("jdoe", "hospital")
    assert (event["source.ip"], event["source.port"]) == ("10.20.30.40", 51234)
    assert (event["LogonType"], event["IpPort"], event["KeyLength"]) == ("3", "51234", "0")
    assert (event["ProcessID"], event["ThreadID"], event["EventRecordID"]) == ("668", "4120", 918273)
    assert event["@timestamp"] == "2026-12-01T07:15:02.123Z" and event["Provider_Guid"].startswith("5484")


def test_record_shapes_flatten_as_sigmahq_tooling_does():
    cleared = {"Event": {"System": system_part(1102), "UserData": {"LogFileCleared": {
        "#attributes": {"xmlns": "http://manifests.microsoft.com/win/2004/08/windows/eventlog"},
        "SubjectUserSid": "S-1-5-21-1-2-3-1104", "SubjectUserName": "it.admin", "SubjectDomainName": "HOSPITAL"}}}}
    assert dict(record_from_evtx(cleared).data) == {
        "SubjectUserSid": "S-1-5-21-1-2-3-1104", "SubjectUserName": "it.admin", "SubjectDomainName": "HOSPITAL"}
    service = {"Event": {"System": system_part({"#attributes": {"Qualifiers": 16384}, "#text": 7045},
                                           Channel="System", Provider={"#attributes": {"Name": "Service Control Manager"}}),
                         "EventData": {"ServiceName": "PACS Sync", "ImagePath": "C:\\pacs\\sync.exe"}}}
    record = record_from_evtx(service)
    assert (record.event_id, record.provider, record.data["ServiceName"]) == (7045, "Service Control Manager", "PACS Sync")
    unnamed = {"Event": {"System": system_part(1004, Channel="Application"),
                         "EventData": {"Data": {"#text": ["Windows(TM) - PPD License", "63f7d6b3"]}, "Binary": None}}}
    assert record_from_evtx(unnamed).data["Data"] == ["Windows(TM) - PPD License", "63f7d6b3"]
    one = {"Event": {"System": system_part(1004), "EventData": {"Data": "only one"}}}
    assert record_from_evtx(one).data["Data"] == "only one"
    with_attrs = {"Event": {"System": system_part(1530), "EventData": {
        "#attributes": {"Name": "EVENT_HIVE_LEAK"}, "Detail": "1 user registry handles leaked"}}}
    assert dict(record_from_evtx(with_attrs).data) == {"Detail": "1 user registry handles leaked"}
    named_items = {"Event": {"System": system_part(4688), "EventData": {"Data": [
        {"#attributes": {"Name": "NewProcessName"}, "#text": "C:\\Windows\\cmd.exe"}, "loose"]}}}
    assert dict(record_from_evtx(named_items).data) == {"NewProcessName": "C:\\Windows\\cmd.exe", "Data": "loose"}
    texts = {"Event": {"System": system_part("1116", EventRecordID="171", Level="3", Version="0",
                                         Execution={"#attributes": {"ProcessID": "4172", "ThreadID": "4384"}}),
                       "EventData": {"Threat Name": "HackTool:Win64/Mikatz!dha"}}}
    record = record_from_evtx(texts)
    assert (record.event_id, record.record_id, record.level, record.process_id) == (1116, 171, 3, 4172)
    forwarded = {"Event": {"System": system_part(4624), "EventData": {"TargetUserName": "a"},
                           "RenderingInfo": {"#attributes": {"Culture": "en-US"}, "Message": "An account was logged on.",
                                             "Level": "Information"}}}
    record = record_from_evtx(forwarded)
    assert record.message == "An account was logged on." and "Level" not in record.data
    bookmark = {"Event": {"System": {"Provider": {"#attributes": {"Name": "Microsoft-Windows-EventForwarder"}},
                                     "EventID": "111", "Computer": "wec01.hospital.example",
                                     "TimeCreated": {"#attributes": {"SystemTime": "2026-12-01T07:00:00.983Z"}}},
                          "SubscriptionBookmarkEvent": {"SubscriptionId": None}}}
    record = record_from_evtx(bookmark)
    assert (record.channel, record.event_id) == ("", 111)
    assert normalise_record(record)["event.dataset"] == "windows.unknown"


@pytest.mark.parametrize("doc,key", [
    ({"Event": {"EventData": {}}}, "Event.System"),
    ({"Event": {"System": system_part("four")}}, "System.EventID"),
    ({"Event": {"System": system_part(4624, Computer=None)}}, "System.Computer"),
    ({"Event": {"System": system_part(4624, TimeCreated=None)}}, "System.TimeCreated.SystemTime"),
    ({"Event": {"System": system_part(4624, TimeCreated={"#attributes": {"SystemTime": "yesterday"}})}},
     "System.TimeCreated.SystemTime"),
    (["not", "an", "event"], "Event"),
])
def test_records_without_a_usable_system_part_name_the_key(doc: Any, key: str):
    with pytest.raises(EvtxRecordError, match=f"^{key}: "):
        record_from_evtx(doc)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(), st.sampled_from(["", " UTC"]))
def test_pyevtx_time_text_gives_the_general_paths_timestamp(when: datetime, suffix: str):
    """pyevtx-rs's ``...ffffffZ`` text skips the datetime round trip (evtx_records.py); same text as parsing."""
    text = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when:%H:%M:%S}.{when.microsecond:06d}Z"
    doc = {"Event": {"System": system_part(4624, TimeCreated={"#attributes": {"SystemTime": text + suffix}})}}
    expected = format_timestamp(parse_timestamp(text))
    assert normalise_record(record_from_evtx(doc))["@timestamp"] == expected


@pytest.mark.parametrize("text", ["2026-02-30T07:15:02.123456Z", "2026-12-01T24:00:00.000000Z",
                                  "2026-13-01T07:15:02.123456Z"])
def test_pyevtx_time_text_of_no_real_time_is_a_named_error(text: str):
    doc = {"Event": {"System": system_part(4624, TimeCreated={"#attributes": {"SystemTime": text}})}}
    with pytest.raises(EvtxRecordError, match="^System.TimeCreated.SystemTime: "):
        record_from_evtx(doc)


# --- every real file ------------------------------------------------------------------------------------


@needs_samples
@pytest.mark.slow
def test_every_sample_record_becomes_an_event_or_a_dead_letter():
    files = sorted(SAMPLES.rglob("*.evtx"))
    assert len(files) > 500
    totals = {"events": 0, "dead": 0}
    kinds: dict[str, set[str]] = {}
    for path in files:
        got = drain(connector(path))
        assert len(got.events) + len(got.dead_letters) == items_of(path), path
        for event in got.events:
            assert type(event["EventID"]) is int and event["event.code"] == str(event["EventID"])
            assert event["@timestamp"].endswith("Z") and event["event.dataset"].startswith("windows.")
            assert event["event.id"] and "Computer" in event
            for key, value in event.items():
                item = value[0] if type(value) is list and value else value
                kinds.setdefault(key, set()).add(type(item).__name__)
        for letter in got.dead_letters:
            assert letter.location.startswith(f"{path}: ")
        totals["events"] += len(got.events)
        totals["dead"] += len(got.dead_letters)
    assert totals["events"] > 24000
    # one JSON type per field over all channels and providers: one Elasticsearch mapping takes them all
    # (pyevtx-rs types ProcessId as a number in Sysmon and as 0x.. text in 4688)
    conflicts = {key for key, k in kinds.items() if len(k) > 1}
    assert not conflicts, conflicts
    assert kinds["CommandLine"] == {"str"} and kinds["LogonType"] == {"str"} and kinds["EventID"] == {"int"}


@needs_samples
def test_a_directory_reads_every_channel_once():
    got = drain(connector(DEEPBLUE))
    datasets = {e["event.dataset"] for e in got.events}
    assert {"windows.security", "windows.system", "windows.application", "windows.powershell"} <= datasets
    assert not got.dead_letters
    ids = [e["event.id"] for e in got.events]
    assert len(ids) == len(set(ids))


# --- SigmaHQ flattening on real records ------------------------------------------------------------------


@needs_samples
def test_security_logons_carry_sigma_and_ecs_fields():
    got = drain(connector(sample("DeepBlueCLI/smb-password-guessing-security.evtx")))
    failed = by_id(got.events, 4625)
    assert len(failed) > 3000
    first = failed[0]
    assert first["event.code"] == "4625" and first["event.outcome"] == "failure"
    assert first["TargetUserName"] and first["user.name"] == first["TargetUserName"].lower()
    assert first["source.ip"] == first["IpAddress"] and first["source.ip"] not in ("-", "")
    assert first["Channel"] == "Security" and first["Provider_Name"] == "Microsoft-Windows-Security-Auditing"
    assert first["event.module"] == "security" and first["event.dataset"] == "windows.security"
    ok = by_id(drain(connector(sample("EVTX-ATTACK-SAMPLES/Command and Control/DE_RDP_Tunneling_4624.evtx"))).events,
               4624)
    remote = [e for e in ok if e["IpAddress"] not in ("-", "::1", "127.0.0.1")]
    assert remote and remote[0]["event.outcome"] == "success" and remote[0]["user.name"]
    assert remote[0]["source.ip"] == remote[0]["IpAddress"] and remote[0]["source.port"] == int(remote[0]["IpPort"])
    assert "source.ip" not in [e for e in ok if e["IpAddress"] == "-"][0]
    # pyevtx-rs types LogonType as a number: EventData is text, as Winlogbeat sends it (one ES mapping)
    assert ok[0]["LogonType"] in {"2", "3", "5", "10"} and ok[0]["KeyLength"] == "0"


@needs_samples
def test_user_data_becomes_its_leaf_names():
    cleared = by_id(drain(connector(sample("DeepBlueCLI/eventlog-dac.evtx"))).events, 1102)
    assert cleared
    assert cleared[0]["SubjectUserName"] == "Sec504" and cleared[0]["SubjectDomainName"] == "SEC504STUDENT"
    assert "LogFileCleared" not in cleared[0] and "UserData" not in json.dumps(list(cleared[0]))
    system = by_id(drain(connector(sample("DeepBlueCLI/disablestop-eventlog.evtx"))).events, 104)
    assert system and system[0]["SubjectUserName"] == "jwrig"
    assert system[0]["Channel"] == "System"  # the record's own channel, not UserData's


@needs_samples
def test_event_id_with_qualifiers_and_service_install():
    installs = by_id(drain(connector(sample("DeepBlueCLI/metasploit-psexec-native-target-system.evtx"))).events,
                     7045)
    assert installs
    event = installs[0]
    assert event["EventID"] == 7045 and event["Provider_Name"] == "Service Control Manager"
    assert event["ServiceName"] and event["ImagePath"]
    assert event["event.dataset"] == "windows.system"


@needs_samples
def test_unnamed_data_is_one_data_list_and_attributes_are_dropped():
    events = drain(connector(APPLICATION)).events
    spp = [e for e in events if e["EventID"] == 1004 and e["Provider_Name"] == "Microsoft-Windows-Security-SPP"]
    assert spp and isinstance(spp[0]["Data"], list) and len(spp[0]["Data"]) == 2
    leak = by_id(events, 1530)
    assert leak and leak[0]["Detail"].startswith("1 user registry handles leaked")
    assert "#attributes" not in leak[0] and "Name" not in leak[0]
    restart = by_id(events, 10005)
    assert restart and restart[0]["nApplications"] == "3" and restart[0]["Application_1"]


@needs_samples
def test_sysmon_and_string_typed_system_values():
    sysmon = by_id(drain(connector(sample(
        "EVTX-ATTACK-SAMPLES/AutomatedTestingTools/Malware/DE_timestomp_and_dll_sideloading_and_RunPersist.evtx"))).events, 1)
    assert sysmon and sysmon[0]["event.dataset"] == "windows.sysmon" and sysmon[0]["Image"] and sysmon[0]["CommandLine"]
    defender = drain(connector(sample("EVTX-to-MITRE-Attack/Antivirus/ID1116-1117-Defender threat detected.evtx"))).events
    detected = by_id(defender, 1116)
    assert detected  # the file renders EventID/EventRecordID/Level as strings: they are numbers here
    assert type(detected[0]["EventRecordID"]) is int and detected[0]["Level"] == "3"
    assert detected[0]["Threat Name"] == "HackTool:Win64/Mikatz!dha"


@needs_samples
def test_event_id_is_computer_channel_record_id():
    event = drain(connector(sample("DeepBlueCLI/eventlog-dac.evtx"))).events[0]
    assert event["event.id"] == windows_id(event["Computer"], event["Channel"], event["EventRecordID"],
                                        event["@timestamp"][:19])


@needs_samples
def test_channel_filters_and_dataset_override(tmp_path: Path):
    for name in ("smb-password-guessing-security.evtx", "metasploit-psexec-native-target-system.evtx"):
        shutil.copy(DEEPBLUE / name, tmp_path / name)
    only = drain(connector(tmp_path, include_channels=["security"])).events
    assert only and {e["Channel"] for e in only} == {"Security"}
    rest = drain(connector(tmp_path, exclude_channels=["SECURITY"])).events
    assert rest and {e["Channel"] for e in rest} == {"System"}
    tagged = drain(connector(tmp_path, dataset="windows.dc01")).events
    assert {e["event.dataset"] for e in tagged} == {"windows.dc01"}
    assert len(tagged) == len(only) + len(rest)


# --- cursor: no doubles, resume, copies, drop-in, growth ---------------------------------------------------


@needs_samples
def test_reading_again_from_the_cursor_gives_nothing(tmp_path: Path):
    shutil.copy(APPLICATION, tmp_path / "app.evtx")
    first = drain(connector(tmp_path))
    assert len(first.events) == 2216
    again = drain(connector(tmp_path), json.loads(json.dumps(first.cursor)))  # the cursor survives JSON
    assert not again.events and not again.dead_letters


@needs_samples
def test_killed_mid_way_resumes_without_loss_or_doubles(tmp_path: Path):
    shutil.copy(APPLICATION, tmp_path / "app.evtx")
    shutil.copy(DEEPBLUE / "eventlog-dac.evtx", tmp_path / "dac.evtx")
    whole = [e["event.id"] for e in drain(connector(tmp_path)).events]
    seen: list[str] = []
    cursor = None
    for _ in range(10):  # a new process (connector) per batch: nothing held in memory survives
        got = connector(tmp_path).read(cursor, 300)
        seen += [e["event.id"] for e in got.events]
        cursor = json.loads(json.dumps(got.cursor))
    rest = drain(connector(tmp_path), cursor, batch=500)
    seen += [e["event.id"] for e in rest.events]
    assert seen == whole


def test_max_events_is_respected_and_batches_continue(tmp_path: Path):
    if not APPLICATION.is_file():
        pytest.skip("samples absent")
    shutil.copy(APPLICATION, tmp_path / "app.evtx")
    conn = connector(tmp_path)
    got = conn.read(None, 7)
    assert len(got.events) == 7 and not got.exhausted
    more = conn.read(got.cursor, 7)
    assert [e["EventRecordID"] for e in more.events] == [e["EventRecordID"] + 7 for e in got.events]


@needs_samples
def test_a_renamed_or_copied_export_is_not_read_again(tmp_path: Path):
    shutil.copy(APPLICATION, tmp_path / "app.evtx")
    first = drain(connector(tmp_path))
    os.rename(tmp_path / "app.evtx", tmp_path / "renamed.evtx")
    shutil.copy(tmp_path / "renamed.evtx", tmp_path / "copy-of-renamed.evtx")
    later = drain(connector(tmp_path), first.cursor)
    assert not later.events and not later.dead_letters


@needs_samples
def test_two_exports_starting_with_the_same_record_both_count(tmp_path: Path):
    """Two exports of one log that share their first chunk and then differ (the log filtered two ways, or
    exported before and after a wrap): same identity, but the second file's own records are not lost."""
    data = APPLICATION.read_bytes()
    (tmp_path / "a.evtx").write_bytes(data[:HEADER + 2 * CHUNK])  # chunks 1, 2
    first = drain(connector(tmp_path))
    (tmp_path / "b.evtx").write_bytes(data[:HEADER + CHUNK] + data[HEADER + 4 * CHUNK:HEADER + 5 * CHUNK])  # 1, 5
    second = drain(connector(tmp_path), first.cursor)
    expected = {e["event.id"] for e in drain(connector(tmp_path / "b.evtx")).events} - {e["event.id"] for e in first.events}
    assert len(expected) == 107
    assert expected <= {e["event.id"] for e in second.events}  # the shared chunk again, at worst: the store drops it
    assert not drain(connector(tmp_path), second.cursor).events  # and both are settled now
    (tmp_path / "a.evtx").write_bytes(data[:HEADER + 3 * CHUNK])  # the first export grows: it continues
    grown = drain(connector(tmp_path), second.cursor)
    three = [e["EventRecordID"] for e in drain(connector(tmp_path / "a.evtx")).events]
    assert [e["EventRecordID"] for e in grown.events] == three[len(first.events):]


@needs_samples
def test_files_dropped_into_the_directory_are_picked_up(tmp_path: Path):
    drop = tmp_path / "exports"
    drop.mkdir()
    conn = connector(drop, one_shot=False, settle_seconds=0)
    got = conn.read(None, 1000)
    assert not got.events and got.exhausted
    shutil.copy(DEEPBLUE / "eventlog-dac.evtx", drop / "dc01-2026-12-01.evtx")
    got = conn.read(got.cursor, 1000)
    assert got.events and {e["Computer"] for e in got.events} == {"Sec504Student"}
    (drop / "2026-12").mkdir()
    shutil.copy(DEEPBLUE / "smb-password-guessing-security.evtx", drop / "2026-12" / "dc02.EVTX")
    (drop / "notes.txt").write_text("not a log")
    newer = drain(conn, got.cursor, batch=1000)
    assert len(newer.events) == items_of(DEEPBLUE / "smb-password-guessing-security.evtx")
    assert not newer.dead_letters
    flat = drain(connector(drop, recursive=False))
    assert {e["Computer"] for e in flat.events} == {"Sec504Student"}


@needs_samples
def test_a_file_still_being_written_loses_nothing(tmp_path: Path):
    data = APPLICATION.read_bytes()
    live = tmp_path / "live.evtx"
    whole = [e["event.id"] for e in drain(connector(APPLICATION)).events]
    conn = connector(tmp_path, one_shot=False, settle_seconds=0)
    seen: list[str] = []
    cursor = None
    for cut in (HEADER + CHUNK + 3000, HEADER + 3 * CHUNK, HEADER + 3 * CHUNK + 100, HEADER + 10 * CHUNK + 7,
                len(data)):
        live.write_bytes(data[:cut])  # a partial chunk at the end, as a writer mid-way leaves it
        got = drain(conn, cursor, batch=250)
        assert not got.dead_letters
        seen += [e["event.id"] for e in got.events]
        cursor = got.cursor
    assert seen == whole


@needs_samples
def test_a_broken_chunk_waits_while_the_file_settles_then_is_a_dead_letter(tmp_path: Path):
    data = bytearray(APPLICATION.read_bytes()[:HEADER + 3 * CHUNK])
    data[HEADER + CHUNK + 600:HEADER + CHUNK + 800] = b"A" * 200  # the second chunk's records
    live = tmp_path / "live.evtx"
    live.write_bytes(bytes(data))
    waiting = connector(tmp_path, one_shot=False, settle_seconds=3600)
    got = drain(waiting)
    assert not got.dead_letters and len(got.events) == 125  # the first chunk; the rest waits
    settled = connector(tmp_path, one_shot=False, settle_seconds=0)
    rest = drain(settled, got.cursor)
    assert len(rest.dead_letters) == 1
    letter = rest.dead_letters[0]
    assert letter.location == f"{live}: item 126 (after record 125)" and "unreadable chunk" in letter.reason
    assert rest.events and rest.events[0]["event.dataset"] == "windows.application"  # the third chunk
    assert not drain(settled, rest.cursor).dead_letters  # reported once


@needs_samples
def test_a_truncated_or_foreign_file_is_one_dead_letter_and_the_rest_is_read(tmp_path: Path):
    (tmp_path / "a-truncated.evtx").write_bytes((DEEPBLUE / "eventlog-dac.evtx").read_bytes()[:2000])
    (tmp_path / "b-not-evtx.evtx").write_bytes(b"<Events><Event>an XML export, not EVTX</Event></Events>\n" * 2000)
    shutil.copy(DEEPBLUE / "eventlog-dac.evtx", tmp_path / "c-good.evtx")
    got = drain(connector(tmp_path))
    assert sorted(d.location for d in got.dead_letters) == [f"{tmp_path / 'a-truncated.evtx'}: file header",
                                                           f"{tmp_path / 'b-not-evtx.evtx'}: file header"]
    assert all("not a readable EVTX file" in d.reason for d in got.dead_letters)
    assert got.events and not drain(connector(tmp_path), got.cursor).dead_letters


def test_a_missing_path_is_reported_not_silent(tmp_path: Path):
    from engine.errors import SourceUnavailable

    with pytest.raises(SourceUnavailable, match="does not exist"):
        connector(tmp_path / "nope").read(None, 10)


def test_options_are_checked():
    from connectors.base import ConnectorConfigError

    with pytest.raises(ConnectorConfigError, match="include_channels"):
        EvtxConnector("x", {"path": "/tmp", "include_channels": [""]})
    with pytest.raises(ConnectorConfigError, match="parser_threads"):
        EvtxConnector("x", {"path": "/tmp", "parser_threads": -1})
    assert connector_class("evtx") is EvtxConnector


# --- the CLI ----------------------------------------------------------------------------------------------


@needs_samples
def test_wardwatch_parse_evtx_prints_json_events(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    source = DEEPBLUE / "smb-password-guessing-security.evtx"
    err = io.StringIO()

    class _Bin(io.StringIO):
        buffer = io.BytesIO()

    stdout = _Bin()
    with redirect_stdout(stdout), redirect_stderr(err):
        assert main(["parse", "evtx", str(source), "--format", "json"]) == 0
    lines = stdout.buffer.getvalue().splitlines()
    assert len(lines) == items_of(source) and not err.getvalue()
    event = orjson.loads(lines[0])
    assert event["Channel"] == "Security" and "event.ingested" not in event


@needs_samples
def test_wardwatch_parse_evtx_names_a_broken_file_on_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    broken = tmp_path / "cut.evtx"
    broken.write_bytes((DEEPBLUE / "eventlog-dac.evtx").read_bytes()[:3000])

    class _Bin(io.StringIO):
        buffer = io.BytesIO()

    err = io.StringIO()
    with redirect_stdout(_Bin()), redirect_stderr(err):
        assert main(["parse", "evtx", str(broken)]) == 1  # every record rejected
    assert err.getvalue().startswith(f"dead letter: {broken}: file header: not a readable EVTX file")
    assert "Traceback" not in err.getvalue() and len(err.getvalue().splitlines()) == 1


@needs_samples
def test_wardwatch_ingest_evtx_twice_stores_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    shutil.copy(DEEPBLUE / "eventlog-dac.evtx", tmp_path / "dac.evtx")
    err = io.StringIO()
    with redirect_stderr(err), redirect_stdout(io.StringIO()) as out:
        assert main(["ingest", "evtx", str(tmp_path / "dac.evtx")]) == 0
        assert main(["ingest", "evtx", str(tmp_path / "dac.evtx")]) == 0
    text = out.getvalue() + err.getvalue()
    assert "0 dead letters" in text and " 0 events read" in text.splitlines()[-1]


# --- fuzzing ----------------------------------------------------------------------------------------------

_scalar = st.one_of(st.none(), st.booleans(), st.integers(-2**70, 2**70), st.text(max_size=12))
_json = st.recursive(_scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=8), inner, max_size=4)),
                     max_leaves=20)
_number = st.one_of(st.integers(0, 2**40), st.integers(0, 99999).map(str), _json,
                    st.builds(lambda n, q: {"#attributes": {"Qualifiers": q}, "#text": n},
                              st.integers(0, 65535), st.integers(0, 65535)))
_attrs = lambda name, value: st.builds(lambda v: {"#attributes": {name: v}}, value)  # noqa: E731
_system = st.fixed_dictionaries({}, optional={
    "EventID": _number, "EventRecordID": _number, "Level": _number, "Task": _number, "Version": _number,
    "Channel": st.one_of(st.sampled_from(["Security", "System", "Microsoft-Windows-Sysmon/Operational"]), _json),
    "Computer": st.one_of(st.text(min_size=1, max_size=12), _json), "Keywords": st.one_of(st.text(max_size=18), _json),
    "TimeCreated": st.one_of(_attrs("SystemTime", st.one_of(
        st.datetimes().map(lambda d: d.isoformat() + "Z"), st.text(max_size=30))), _json),
    "Provider": st.one_of(_attrs("Name", st.text(max_size=20)), _json),
    "Execution": st.one_of(_attrs("ProcessID", _number), _json),
    "Security": st.one_of(_attrs("UserID", st.text(max_size=20)), _json),
})
_record = st.one_of(
    _json,
    st.fixed_dictionaries({"Event": st.fixed_dictionaries({"System": _system}, optional={
        "EventData": _json, "UserData": _json, "RenderingInfo": _json, "ProcessingErrorData": _json})}),
)


@settings(max_examples=200, deadline=None)
@given(_record, st.one_of(st.none(), st.text(max_size=30)))
def test_fuzz_records_are_events_or_named_errors(doc: Any, header_time: str | None):
    try:
        record = record_from_evtx(doc, header_time)
    except EvtxRecordError as exc:
        assert str(exc).split(":")[0].startswith(("Event", "System"))
        return
    assert isinstance(record, WindowsRecord) and type(record.event_id) is int
    event = normalise_record(record)
    assert event["EventID"] == record.event_id and event["event.code"] == str(record.event_id)
    orjson.dumps(event)  # storable as it is


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.from_regex(r"[A-Za-z][A-Za-z0-9_]{0,15}", fullmatch=True), st.text(max_size=20),
                       max_size=12))
def test_fuzz_named_data_keeps_every_name_and_value(data: dict[str, str]):
    doc = {"Event": {"System": {"EventID": 4688, "Computer": "WS1", "Channel": "Security",
                                "TimeCreated": {"#attributes": {"SystemTime": "2026-12-01T08:00:00.1234567Z"}}},
                     "EventData": data}}
    assert dict(record_from_evtx(doc).data) == data


@needs_samples
@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.binary(max_size=6000),
                 st.lists(st.tuples(st.integers(0, HEADER + 2 * CHUNK - 1), st.integers(0, 255)), min_size=1,
                          max_size=40)))
def test_fuzz_connector_on_random_and_damaged_files(tmp_path_factory: pytest.TempPathFactory, damage: Any):
    folder = tmp_path_factory.mktemp("fuzz")
    path = folder / "x.evtx"
    if isinstance(damage, bytes):
        path.write_bytes(damage)
    else:
        data = bytearray(APPLICATION.read_bytes()[:HEADER + 2 * CHUNK])
        for offset, value in damage:
            data[offset] = value
        path.write_bytes(bytes(data))
    got = drain(connector(folder), batch=64)
    for letter in got.dead_letters:
        assert letter.location.startswith(f"{path}: ")
    for event in got.events:
        assert event["event.id"] and type(event["EventID"]) is int
    assert not drain(connector(folder), got.cursor).events  # and a re-read adds nothing


# --- the service ------------------------------------------------------------------------------------------


@needs_samples
@pytest.mark.slow
def test_the_service_watches_a_drop_in_directory(tmp_path: Path):
    """A real service: an export dropped into the folder is stored; a renamed copy of it adds nothing."""
    import sqlite3
    import time

    import yaml

    from engine.app import build_app
    from engine.config import load_config
    from engine.scheduler import Service

    drop = tmp_path / "drop"
    drop.mkdir()
    config = {
        "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
        "connectors": [{"name": "dc-exports", "type": "evtx", "path": str(drop), "settle_seconds": 0}],
        "scheduler": {"ingest_interval": "100ms", "rule_interval": "1h", "delivery_interval": "1h"},
    }
    (tmp_path / "wardwatch.yaml").write_text(yaml.safe_dump(config))
    service = Service(build_app(load_config(tmp_path / "wardwatch.yaml", environ={}), console=False))

    def stored() -> int:
        with sqlite3.connect(tmp_path / "w.db") as db:
            return db.execute("select count(*) from events").fetchone()[0]

    def wait_for(count: int) -> int:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and stored() < count:
            time.sleep(0.1)
        return stored()

    service.start()
    try:
        shutil.copy(DEEPBLUE / "eventlog-dac.evtx", drop / "dc01.evtx")
        first = items_of(DEEPBLUE / "eventlog-dac.evtx")
        assert wait_for(first) == first
        shutil.copy(DEEPBLUE / "smb-password-guessing-security.evtx", drop / "dc02.evtx")
        os.rename(drop / "dc01.evtx", drop / "dc01-renamed.evtx")
        total = first + items_of(DEEPBLUE / "smb-password-guessing-security.evtx")
        assert wait_for(total) == total
        time.sleep(0.5)  # a few more polls: the renamed file is known, not re-read (no duplicates offered)
        assert stored() == total
        assert 'wardwatch_events_duplicate_total{connector="dc-exports"}' not in service.metrics.render() or \
            'wardwatch_events_duplicate_total{connector="dc-exports"} 0' in service.metrics.render()
    finally:
        service.stop()


@needs_samples
def test_a_file_still_being_copied_in_waits_instead_of_a_dead_letter(tmp_path: Path):
    data = (DEEPBLUE / "eventlog-dac.evtx").read_bytes()
    part = tmp_path / "incoming.evtx"
    part.write_bytes(data[:1500])  # the copy has not reached the end of the file header yet
    conn = connector(tmp_path, one_shot=False, settle_seconds=3600)
    got = drain(conn)
    assert not got.events and not got.dead_letters
    part.write_bytes(data)  # the copy finished
    done = drain(conn, got.cursor)
    assert len(done.events) == items_of(DEEPBLUE / "eventlog-dac.evtx") and not done.dead_letters


# --- the ingest worker (engine/ingest_worker.py) -----------------------------------------------------------


@needs_samples
def test_a_forked_worker_stores_what_one_process_stores(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``scheduler.ingest_workers: 1`` over EVTX: the same events, dead letters and cursor, batch cuts crossing
    files (30 sample files, a copy of one with a damaged chunk for dead letters, batches of 250)."""
    import engine.ingest_worker as ingest_worker
    from engine.enrich import EnrichmentChain
    from engine.ingest import ingest_connector
    from engine.store.base import SearchQuery
    from engine.store.sqlite import SqliteStore

    folder = tmp_path / "in"
    folder.mkdir()
    for n, path in enumerate(sorted(SAMPLES.rglob("*.evtx"))[:30]):
        shutil.copy(path, folder / f"{n:02d}_{path.name}")
    damaged = bytearray(APPLICATION.read_bytes()[:HEADER + 3 * CHUNK])
    damaged[HEADER + CHUNK + 700:HEADER + CHUNK + 900] = bytes(200)  # the second chunk's records
    (folder / "zz_damaged.evtx").write_bytes(bytes(damaged))
    runs: list[int] = []
    real = ingest_worker.run_worker_pipeline
    monkeypatch.setattr("engine.ingest.run_worker_pipeline", lambda *a, **k: (runs.append(1), real(*a, **k)))
    results = {}
    for workers in (0, 1):
        store = SqliteStore(tmp_path / f"w{workers}.db")
        connector = EvtxConnector("src", {"path": str(folder)})
        connector.read_to_end()
        stats = ingest_connector(store, connector, EnrichmentChain([]), 250, workers=workers)
        docs = [{k: v for k, v in e.items() if k != "event.ingested"} for e in store.search(SearchQuery())]
        letters = sorted((d.reason, d.location) for d in store.list_dead_letters(limit=10_000))
        results[workers] = (docs, letters, store.get_cursor("src"), stats.events, stats.dead_letters)
        store.close()
    assert runs == [1]  # the worker ran (the equality below cannot pass by never using it)
    assert results[1] == results[0]
    assert len(results[0][0]) > 500 and results[0][1]


# --- one hash per tip, not per record (issue 10) ------------------------------------------------------------


class _Every:
    def __contains__(self, position: object) -> bool:
        return True


def _steps(folder: Path, budgets: list[int], fresh: list[bool]) -> list[Any]:
    """What a user's runs see: events, dead letters and the committed cursor after each read."""
    out: list[Any] = []
    conn, cursor = connector(folder), None
    for budget, new in zip(budgets, fresh):
        if new:
            conn = connector(folder)  # a restart: nothing held in memory survives
        got = conn.read(cursor, budget)
        cursor = json.loads(json.dumps(got.cursor))
        out.append(([e["event.id"] for e in got.events], [(d.location, d.reason) for d in got.dead_letters],
                     cursor, got.exhausted))
    return out


@needs_samples
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(exports=st.lists(st.lists(st.integers(2, 6), max_size=3), min_size=1, max_size=3),
       broken=st.booleans(), budgets=st.lists(st.integers(1, 400), min_size=1, max_size=8),
       fresh=st.lists(st.booleans(), min_size=8, max_size=8))
def test_tips_hashed_lazily_equal_one_hash_per_record(tmp_path_factory: pytest.TempPathFactory,
                                                       monkeypatch: pytest.MonkeyPatch, exports: list[list[int]],
                                                       broken: bool, budgets: list[int], fresh: list[bool]):
    """Exports of one log sharing their first chunk (same identity, so their tips share one list), copies,
    a broken chunk, random batch sizes and restarts: the lazily hashed read gives the same events, dead
    letters and cursors (tips, their order, positions and digests) as hashing every record."""
    data = APPLICATION.read_bytes()
    folder = tmp_path_factory.mktemp("lazy")
    for n, chunks in enumerate(exports):
        body = data[:HEADER + CHUNK] + b"".join(data[HEADER + (c - 1) * CHUNK:HEADER + c * CHUNK] for c in chunks)
        if broken and n == 0 and chunks:
            body = bytearray(body)
            body[HEADER + CHUNK + 600:HEADER + CHUNK + 800] = b"A" * 200
            body = bytes(body)
        (folder / f"export-{n}.evtx").write_bytes(body)
    (folder / "copy.evtx").write_bytes((folder / "export-0.evtx").read_bytes())
    budgets = budgets + [100_000]
    lazy = _steps(folder, budgets, fresh + [False])
    monkeypatch.setattr("connectors.windows.evtx._hash_stops", lambda tips: _Every())
    eager = _steps(folder, budgets, fresh + [False])
    assert lazy == eager
    assert lazy[-1][3]  # the last read reached the end of every file


@needs_samples
def test_a_mapping_error_mid_batch_leaves_the_parser_where_its_records_went(tmp_path: Path,
                                                                             monkeypatch: pytest.MonkeyPatch):
    """An unexpected error out of one record's mapping ends the read; the held parser must still know how far
    its iterator went (the unhashed records settled on the way out), or the next read would skip records."""
    shutil.copy(APPLICATION, tmp_path / "app.evtx")
    whole = [e["event.id"] for e in drain(connector(tmp_path)).events]
    conn = connector(tmp_path)
    first = conn.read(None, 10)
    real, calls = EvtxConnector._to_event, {"n": 0}

    def flaky(self: EvtxConnector, path: str, record: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 5:
            raise MemoryError("boom")
        return real(self, path, record)

    monkeypatch.setattr(EvtxConnector, "_to_event", flaky)
    with pytest.raises(MemoryError):
        conn.read(first.cursor, 10)
    monkeypatch.setattr(EvtxConnector, "_to_event", real)
    rest = drain(conn, first.cursor)
    assert [e["event.id"] for e in first.events] + [e["event.id"] for e in rest.events] == whole
