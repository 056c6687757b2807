"""Windows audit events get the Sysmon field names generic SigmaHQ rules use, at normalise time.

What a user sees: a Security 4688 raises the same ``process_creation`` alert a Sysmon 1 would; a 4657 the
``registry_set`` one; classic and Operational PowerShell are told apart. The events are written from
Microsoft's event documentation (4688, 4657, 4663, 5156, Defender 1116, PowerShell 400/4104).
"""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.windows.aliases import ALIASES, add_aliases
from connectors.windows.record import WindowsRecord, normalise_record
from engine.app import alerts_over_sample
from engine.events import make_event_id
from engine.sigma import load_rules

SECURITY = "Microsoft-Windows-Security-Auditing"

# 4688 by SYSTEM (logon id 0x3e7, machine account), as on a Windows Server 2019 with command line auditing
_4688 = {
    "SubjectUserSid": "S-1-5-18", "SubjectUserName": "RAD-WS07$", "SubjectDomainName": "HOSPITAL",
    "SubjectLogonId": "0x3e7", "NewProcessId": "0x1f3c", "NewProcessName": "C:\\Windows\\System32\\whoami.exe",
    "TokenElevationType": "%%1936", "ProcessId": "0x8a4", "CommandLine": "whoami /all",
    "TargetUserSid": "S-1-0-0", "TargetUserName": "-", "TargetDomainName": "-", "TargetLogonId": "0x0",
    "ParentProcessName": "C:\\Windows\\System32\\cmd.exe", "MandatoryLabel": "S-1-16-16384",
}


def record(event_id: int, data: dict[str, Any], channel: str = "Security", provider: str = SECURITY,
           n: int = 1) -> WindowsRecord:
    return WindowsRecord(channel=channel, provider=provider, event_id=event_id, record_id=1000 + n,
                         computer="RAD-WS07.hospital.example", time=f"2026-12-01T08:15:{n:02d}.000Z",
                         data=data, keywords="0x8020000000000000")


def event_of(rec: WindowsRecord, n: int = 1) -> dict[str, Any]:
    event = normalise_record(rec)
    event["event.id"] = make_event_id("test:aliases", str(n))
    return event


def rules(tmp_path: Path, *texts: str) -> Any:
    for i, text in enumerate(texts):
        (tmp_path / f"r{i}.yml").write_text(textwrap.dedent(text))
    ruleset = load_rules([tmp_path])
    assert not ruleset.errors, [str(e) for e in ruleset.errors]
    return ruleset


# A SigmaHQ-style generic rule (as proc_creation_win_whoami_execution_from_high_priv_process.yml)
_WHOAMI_AS_SYSTEM = """\
    title: Whoami run by a service account
    id: 0c5b5ef6-6a43-4c3e-9b9e-1a0c1f0e0001
    logsource: {category: process_creation, product: windows}
    detection:
      selection_img:
        - OriginalFileName: whoami.exe
        - Image|endswith: '\\\\whoami.exe'
      selection_user:
        User|contains: [AUTHORI, AUTORI, TrustedInstaller]
      selection_parent:
        ParentImage|endswith: '\\\\cmd.exe'
      condition: all of selection_*
    level: high
"""


def test_security_4688_gets_sysmon_names_and_keeps_its_own() -> None:
    event = event_of(record(4688, _4688))
    assert event["Image"] == "C:\\Windows\\System32\\whoami.exe"
    assert event["ParentImage"] == "C:\\Windows\\System32\\cmd.exe"
    assert event["User"] == "NT AUTHORITY\\SYSTEM"  # not the machine account HOSPITAL\RAD-WS07$
    assert event["IntegrityLevel"] == "System"
    assert event["LogonId"] == "0x3e7"
    assert event["ParentProcessId"] == str(0x8A4)  # decimal text, as Sysmon events carry ids
    # originals stay; 4688's ProcessId (the creator's, hex) is not overwritten by an alias
    assert event["NewProcessName"] == _4688["NewProcessName"] and event["ProcessId"] == "0x8a4"


def test_a_4688_raises_the_process_creation_alert_a_sysmon_1_raises(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, _WHOAMI_AS_SYSTEM)
    sysmon = record(1, {"Image": "C:\\Windows\\System32\\whoami.exe", "User": "NT AUTHORITY\\SYSTEM",
                        "ParentImage": "C:\\Windows\\System32\\cmd.exe", "CommandLine": "whoami /all"},
                    channel="Microsoft-Windows-Sysmon/Operational", provider="Microsoft-Windows-Sysmon", n=2)
    ordinary = dict(_4688, NewProcessName="C:\\Windows\\System32\\notepad.exe")
    user_run = dict(_4688, SubjectUserSid="S-1-5-21-1-2-3-1104", SubjectUserName="jdoe",
                    SubjectLogonId="0x5d2a1")
    events = [event_of(record(4688, _4688), 1), event_of(sysmon, 2), event_of(record(4688, ordinary, n=3), 3),
              event_of(record(4688, user_run, n=4), 4)]
    alerts = alerts_over_sample(ruleset, events)
    hit = sorted(e for a in alerts for e in a.evidence)
    assert hit == sorted([events[0]["event.id"], events[1]["event.id"]])


def test_a_4688_without_the_fields_a_rule_needs_does_not_match(tmp_path: Path) -> None:
    # the alias is the only way Image appears: remove NewProcessName and nothing matches
    ruleset = rules(tmp_path, _WHOAMI_AS_SYSTEM)
    data = {k: v for k, v in _4688.items() if k != "NewProcessName"}
    assert alerts_over_sample(ruleset, [event_of(record(4688, data))]) == []


def test_4657_is_a_registry_set_with_sysmon_hive_names_and_dword_details(tmp_path: Path) -> None:
    data = {"SubjectUserSid": "S-1-5-21-1-2-3-500", "SubjectUserName": "admin", "SubjectDomainName": "HOSPITAL",
            "SubjectLogonId": "0x7a3f1", "ObjectName": "\\REGISTRY\\MACHINE\\SYSTEM\\CurrentControlSet\\Control"
            "\\Lsa", "ObjectValueName": "DisableRestrictedAdmin", "HandleId": "0x1c8", "OperationType": "%%1905",
            "OldValueType": "%%1876", "OldValue": "1", "NewValueType": "%%1876", "NewValue": "0",
            "ProcessId": "0x1a2c", "ProcessName": "C:\\Windows\\regedit.exe"}
    event = event_of(record(4657, data))
    assert event["TargetObject"] == "HKLM\\SYSTEM\\CurrentControlSet\\Control\\Lsa\\DisableRestrictedAdmin"
    assert event["Details"] == "DWORD (0x00000000)" and event["EventType"] == "SetValue"
    assert event["Image"] == "C:\\Windows\\regedit.exe" and event["ProcessId"] == "0x1a2c"
    ruleset = rules(tmp_path, """\
        title: RestrictedAdmin enabled
        id: 0c5b5ef6-6a43-4c3e-9b9e-1a0c1f0e0002
        logsource: {category: registry_set, product: windows}
        detection:
          sel: {TargetObject|endswith: '\\\\Control\\\\Lsa\\\\DisableRestrictedAdmin', Details: DWORD (0x00000000)}
          condition: sel
        level: high
    """)
    created = dict(data, OperationType="%%1904")  # a new value is registry_add, not registry_set
    alerts = alerts_over_sample(ruleset, [event, event_of(record(4657, created, n=2), 2)])
    assert [a.evidence for a in alerts] == [[event["event.id"]]]


def test_5156_has_sysmon_network_connection_names() -> None:
    data = {"ProcessID": "4312", "Application": "\\device\\harddiskvolume3\\windows\\system32\\rundll32.exe",
            "Direction": "%%14593", "SourceAddress": "10.20.7.41", "SourcePort": "50112",
            "DestAddress": "185.220.101.4", "DestPort": "443", "Protocol": "6", "FilterRTID": "70254",
            "LayerName": "%%14611", "LayerRTID": "48"}
    event = event_of(record(5156, data))
    assert (event["Image"], event["DestinationIp"], event["DestinationPort"], event["SourceIp"],
            event["Initiated"], event["ProcessId"]) == ("C:\\windows\\system32\\rundll32.exe", "185.220.101.4", "443",
                                                        "10.20.7.41", "true", "4312")
    assert event["Application"] == data["Application"]  # the device path stays
    assert event["Protocol"] == "6"  # the event's own field: never replaced by an alias
    assert event_of(record(5156, dict(data, Direction="%%14592")))["Initiated"] == "false"


def test_lsass_kerberos_traffic_in_5156_is_filtered_like_sysmon_3(tmp_path: Path) -> None:
    # as SigmaHQ's net_connection_win_susp_outbound_kerberos_connection.yml: full-path filters must work
    ruleset = rules(tmp_path, """\
        title: Uncommon outbound Kerberos connection
        id: 0c5b5ef6-6a43-4c3e-9b9e-1a0c1f0e0006
        logsource: {category: network_connection, product: windows}
        detection:
          selection: {DestinationPort: 88, Initiated: 'true'}
          filter_main_lsass: {Image: 'C:\\Windows\\System32\\lsass.exe'}
          condition: selection and not 1 of filter_main_*
        level: medium
    """)
    base = {"ProcessID": "668", "Direction": "%%14593", "SourceAddress": "10.20.7.41", "SourcePort": "50113",
            "DestAddress": "10.20.0.10", "DestPort": "88", "Protocol": "6"}
    volume = "\\device\\harddiskvolume2\\"
    lsass = event_of(record(5156, dict(base, Application=volume + "windows\\system32\\lsass.exe")), 1)
    tool = event_of(record(5156, dict(base, ProcessID="5120", Application=volume + "users\\jdoe\\rubeus.exe"),
                           n=2), 2)
    alerts = alerts_over_sample(ruleset, [lsass, tool])
    assert [a.evidence for a in alerts] == [[tool["event.id"]]]


def test_4663_on_a_file_is_a_file_access_and_on_a_key_is_not() -> None:
    data = {"SubjectUserSid": "S-1-5-21-1-2-3-1104", "SubjectUserName": "jdoe", "SubjectDomainName": "HOSPITAL",
            "SubjectLogonId": "0x5d2a1", "ObjectServer": "Security", "ObjectType": "File",
            "ObjectName": "C:\\Users\\jdoe\\AppData\\Roaming\\Microsoft\\Protect\\CREDHIST", "HandleId": "0x9c4",
            "AccessList": "%%4416", "AccessMask": "0x1", "ProcessId": "0x2210",
            "ProcessName": "C:\\Users\\jdoe\\Downloads\\tool.exe"}
    event = event_of(record(4663, data))
    assert event["FileName"] == data["ObjectName"] and event["Image"] == data["ProcessName"]
    assert event["User"] == "HOSPITAL\\jdoe"
    key = event_of(record(4663, dict(data, ObjectType="Key")))
    assert "FileName" not in key and "Image" not in key


def test_defender_detection_gets_the_antivirus_names() -> None:
    data = {"Product Name": "Microsoft Defender Antivirus", "Threat Name": "HackTool:Win64/Mimikatz!pz",
            "Severity Name": "High", "Path": "file:_C:\\Users\\jdoe\\Downloads\\mimikatz.exe",
            "Detection User": "HOSPITAL\\jdoe"}
    event = event_of(record(1116, data, channel="Microsoft-Windows-Windows Defender/Operational",
                            provider="Microsoft-Windows-Windows Defender"))
    assert event["event.dataset"] == "windows.windefend"
    assert event["Signature"] == "HackTool:Win64/Mimikatz!pz" and event["Filename"] == data["Path"]


def _contains_rule(n: int, title: str, category: str, field: str, value: str) -> str:
    """A one-selection ``field|contains: value`` rule on ``category``."""
    return (f"title: {title}\nid: 0c5b5ef6-6a43-4c3e-9b9e-1a0c1f0e000{n}\n"
            f"logsource: {{category: {category}, product: windows}}\n"
            f"detection:\n  sel: {{{field}|contains: '{value}'}}\n  condition: sel\nlevel: high\n")


_PS_RULES = (
    _contains_rule(3, "Classic PowerShell engine start with an encoded command", "ps_classic_start", "Data", " -enc"),
    _contains_rule(4, "Script block with Invoke-Mimikatz", "ps_script", "ScriptBlockText", "Invoke-Mimikatz"),
    _contains_rule(5, "Module logging of Invoke-Mimikatz", "ps_module", "Payload", "Invoke-Mimikatz"),
)


def test_classic_and_operational_powershell_are_told_apart(tmp_path: Path) -> None:
    ruleset = rules(tmp_path, *_PS_RULES)
    classic = "Windows PowerShell"
    operational = "Microsoft-Windows-PowerShell/Operational"
    engine_start = {"Data": ["Available", "None", "\tNewEngineState=Available\r\n\tHostApplication=powershell"
                             ".exe -nop -w hidden -enc SQBFAFgA\r\n\tEngineVersion=5.1.19041.1"]}
    block = {"MessageNumber": "1", "MessageTotal": "1", "ScriptBlockText": "Invoke-Mimikatz -DumpCreds",
             "ScriptBlockId": "5c1f2d3e-0000-4000-8000-000000000001", "Path": ""}
    module = {"ContextInfo": "Host Application = powershell.exe", "UserData": "",
              "Payload": "CommandInvocation(Invoke-Mimikatz): \"Invoke-Mimikatz\""}
    events = {
        "classic 400": event_of(record(400, engine_start, classic, "PowerShell", 1), 1),
        "400 on Operational": event_of(record(400, engine_start, operational,
                                              "Microsoft-Windows-PowerShell", 2), 2),
        "Operational 4104": event_of(record(4104, block, operational, "Microsoft-Windows-PowerShell", 3), 3),
        "4104 on classic": event_of(record(4104, block, classic, "PowerShell", 4), 4),
        "Operational 4103": event_of(record(4103, module, operational, "Microsoft-Windows-PowerShell", 5), 5),
        "PowerShell 7 4104": event_of(record(4104, block, "PowerShellCore/Operational", "PowerShellCore", 6), 6),
    }
    assert events["classic 400"]["event.dataset"] == "windows.powershell-classic"
    assert events["Operational 4104"]["event.dataset"] == "windows.powershell"
    by_id = {e["event.id"]: name for name, e in events.items()}
    alerts = alerts_over_sample(ruleset, list(events.values()))
    fired = sorted((a.rule_title, by_id[e]) for a in alerts for e in a.evidence)
    assert fired == [
        ("Classic PowerShell engine start with an encoded command", "classic 400"),
        ("Module logging of Invoke-Mimikatz", "Operational 4103"),
        ("Script block with Invoke-Mimikatz", "Operational 4104"),
        ("Script block with Invoke-Mimikatz", "PowerShell 7 4104"),
    ]


_values = st.one_of(st.none(), st.integers(-2**70, 2**70), st.text(max_size=30),
                    st.sampled_from(["0x3e7", "-", "%%1905", "%%1876", "S-1-5-18", "S-1-16-12288", "File",
                                     "\\REGISTRY\\USER\\S-1-5-21", "%%14593", "6"]))
_names = st.sampled_from(sorted({"NewProcessName", "ParentProcessName", "ProcessId", "SubjectUserSid",
                                 "SubjectUserName", "SubjectDomainName", "SubjectLogonId", "TargetUserSid",
                                 "TargetUserName", "MandatoryLabel", "ObjectName", "ObjectValueName",
                                 "OperationType", "NewValueType", "NewValue", "ObjectType", "ProcessName",
                                 "Application", "Direction", "Protocol", "SourcePort", "DestPort", "ProcessID",
                                 "Threat Name", "Path", "Image"}))


@settings(max_examples=200, deadline=None)
@given(kind=st.sampled_from(sorted(ALIASES)), data=st.dictionaries(_names, _values, max_size=10))
def test_aliases_never_fail_and_never_change_a_field_the_event_has(kind: tuple[str, int],
                                                                   data: dict[str, Any]) -> None:
    event: dict[str, Any] = {"event.dataset": kind[0], "EventID": kind[1], **data}
    before = dict(event)
    add_aliases(event)
    assert {k: event[k] for k in before} == before
    orjson.dumps({k: v for k, v in event.items() if k not in before})  # every alias is storable


def test_every_sigma_service_channel_is_stored_under_the_dataset_its_rules_read() -> None:
    from connectors.windows.record import CHANNEL_DATASETS, dataset_for_channel
    from engine.sigma.taxonomy import SERVICE_CHANNELS, resolve_logsource

    for service, channels in SERVICE_CHANNELS.items():
        entry = resolve_logsource({"product": "windows", "service": service})
        assert entry is not None, service
        for channel in channels:
            assert channel.casefold() in CHANNEL_DATASETS, f"{service}: {channel} falls back to a slug"
            assert dataset_for_channel(channel) in entry.datasets
    # the classic PowerShell log is not the Operational one
    assert dataset_for_channel("Windows PowerShell") != dataset_for_channel("Microsoft-Windows-PowerShell/Operational")
