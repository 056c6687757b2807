"""Generate the winlogbeat connector's test fixtures: one morning of a hospital domain's Windows events,
written four times, as each shipper writes them.

    .venv/bin/python tests/data/winlogbeat/generate.py

Why one logical event list rendered four ways: the tests assert that Winlogbeat 7.x, Winlogbeat 8.x,
Elastic Agent (System integration) and NXLog ``im_msvistalog`` + ``to_json()`` lines of the same record
become the same flat event, so the four files must carry the same records. Field lists follow the vendors'
documentation (Elastic's winlogbeat exported fields, NXLog's im_msvistalog fields, Microsoft's Security
audit event pages); values are invented. Fixed seed: the files only change when this script does.

Scenarios among ordinary clinician logons/logoffs and process starts: a password spray from 10.20.30.40
against DC01 (4625 for many users), a brute force on one account ending in a lockout (4740), an account
created and added to Domain Admins (4720, 4728), the Security log cleared (1102, UserData), a service
installed (4697), Sysmon process and network events on an imaging workstation.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import orjson

HERE = Path(__file__).parent
SEED = 20261201
START = datetime(2026, 12, 1, 6, 30, tzinfo=timezone.utc)
#: NXLog writes EventTime in the Windows host's local time, without an offset
LOCAL = ZoneInfo("Europe/Berlin")
SECURITY = ("Security", "Microsoft-Windows-Security-Auditing", "{54849625-5478-4994-a5ba-3e3b0328c30d}")
SYSMON = ("Microsoft-Windows-Sysmon/Operational", "Microsoft-Windows-Sysmon",
          "{5770385f-c22a-43e0-bf4c-06f5698ffbd9}")
EVENTLOG = ("Security", "Microsoft-Windows-Eventlog", "{fc65ddd8-d6ef-4962-83d5-6e5cfe9ce148}")
DOMAIN = "HOSPITAL"
DC = "DC01.hospital.example"
HOSTS = ["WS-ICU-03.hospital.example", "WS-RAD-07.hospital.example", "WS-ER-12.hospital.example",
         "PACS-VIEW-02.hospital.example"]
USERS = ["jdoe", "asmith", "mkeller", "lbauer", "tnguyen", "rfischer", "schmidt.a", "dr.lindner", "nweber",
         "kmueller", "pwagner", "ehoffmann"]
TASKS = {4624: ("Logon", 12544), 4625: ("Logon", 12544), 4634: ("Logoff", 12545),
         4672: ("Special Logon", 12548), 4688: ("Process Creation", 13312), 4720: ("User Account Management", 13824),
         4728: ("Security Group Management", 13826), 4740: ("User Account Management", 13824),
         4697: ("Security System Extension", 12289), 1102: ("Log clear", 104),
         1: ("Process Create (rule: ProcessCreate)", 1), 3: ("Network connection detected (rule: NetworkConnect)", 3)}
MESSAGES = {4624: "An account was successfully logged on.", 4625: "An account failed to log on.",
            4634: "An account was logged off.", 4672: "Special privileges assigned to new logon.",
            4688: "A new process has been created.", 4720: "A user account was created.",
            4728: "A member was added to a security-enabled global group.",
            4740: "A user account was locked out.", 4697: "A service was installed in the system.",
            1102: "The audit log was cleared.", 1: "Process Create:", 3: "Network connection detected:"}


class Events:
    """The logical records, in time order; record numbers per (computer, channel) as Windows keeps them."""

    def __init__(self, rng: random.Random):
        self.rng = rng
        self.items: list[dict[str, Any]] = []
        self.record_ids: dict[tuple[str, str], int] = {}
        self.now = START

    def add(self, event_id: int, computer: str, data: dict[str, str], *, source=SECURITY, failure: bool = False,
            user_data: str | None = None, user_sid: str | None = None, gap: float = 0.0) -> None:
        self.now += timedelta(seconds=gap or self.rng.randint(3, 90))
        channel = source[0]
        key = (computer, channel)
        self.record_ids[key] = self.record_ids.get(key, self.rng.randint(100000, 900000)) + 1
        self.items.append({"event_id": event_id, "computer": computer, "channel": channel, "provider": source[1],
                           "guid": source[2], "time": self.now, "record_id": self.record_ids[key], "data": data,
                           "failure": failure, "user_data": user_data, "user_sid": user_sid,
                           "audit": channel == "Security", "pid": 668 if channel == "Security" else 3140,
                           "tid": self.rng.randint(1000, 9000)})


def sid(rng: random.Random) -> str:
    return f"S-1-5-21-3623811015-3361044348-30300820-{rng.randint(1100, 1900)}"


def logon_data(rng: random.Random, user: str, logon_type: str, ip: str, failure: bool) -> dict[str, str]:
    data = {"SubjectUserSid": "S-1-5-18" if not failure else "S-1-0-0", "SubjectUserName": "DC01$" if not failure else "-",
            "SubjectDomainName": DOMAIN if not failure else "-", "SubjectLogonId": "0x3e7" if not failure else "0x0",
            "TargetUserSid": sid(rng) if not failure else "S-1-0-0", "TargetUserName": user, "TargetDomainName": DOMAIN,
            "LogonType": logon_type, "LogonProcessName": "NtLmSsp " if logon_type == "3" else "User32 ",
            "AuthenticationPackageName": "NTLM" if logon_type == "3" else "Negotiate",
            "WorkstationName": rng.choice(HOSTS).split(".")[0], "TransmittedServices": "-", "LmPackageName": "-",
            "KeyLength": "0", "ProcessId": "0x0" if logon_type == "3" else "0x2d4",
            "ProcessName": "-" if logon_type == "3" else "C:\\Windows\\System32\\svchost.exe",
            "IpAddress": ip, "IpPort": str(rng.randint(49152, 65535))}
    if failure:
        data.update({"Status": "0xc000006d", "FailureReason": "%%2313", "SubStatus": "0xc000006a"})
    else:
        data.update({"TargetLogonId": f"0x{rng.randint(0x100000, 0xffffff):x}",
                     "LogonGuid": "{00000000-0000-0000-0000-000000000000}", "ImpersonationLevel": "%%1833",
                     "RestrictedAdminMode": "-", "VirtualAccount": "%%1843", "ElevatedToken": "%%1842"})
    return data


def build() -> list[dict[str, Any]]:
    rng = random.Random(SEED)
    ev = Events(rng)
    for _ in range(24):  # ordinary morning: clinicians log on at workstations, start programs, log off
        user, host = rng.choice(USERS), rng.choice(HOSTS)
        ip = f"10.40.{rng.randint(1, 20)}.{rng.randint(2, 250)}"
        ev.add(4624, DC, logon_data(rng, user, rng.choice(["3", "3", "10"]), ip, False))
        ev.add(4688, host, {"SubjectUserSid": sid(rng), "SubjectUserName": user, "SubjectDomainName": DOMAIN,
                            "SubjectLogonId": f"0x{rng.randint(0x100000, 0xffffff):x}",
                            "NewProcessId": f"0x{rng.randint(0x400, 0x4000):x}",
                            "NewProcessName": rng.choice(["C:\\Program Files\\Epic\\Hyperspace.exe",
                                                          "C:\\Program Files\\Agfa\\IMPAX\\impax.exe",
                                                          "C:\\Windows\\System32\\notepad.exe"]),
                            "TokenElevationType": "%%1938", "ProcessId": "0x1a2c",
                            "CommandLine": "", "TargetUserSid": "S-1-0-0", "TargetUserName": "-",
                            "TargetDomainName": "-", "TargetLogonId": "0x0",
                            "ParentProcessName": "C:\\Windows\\explorer.exe",
                            "MandatoryLabel": "S-1-16-8192"})
        if rng.random() < 0.5:
            ev.add(4634, DC, {"TargetUserSid": sid(rng), "TargetUserName": user, "TargetDomainName": DOMAIN,
                              "TargetLogonId": f"0x{rng.randint(0x100000, 0xffffff):x}", "LogonType": "3"})
    for user in USERS:  # password spray: one try per account, a few seconds apart, from one address
        ev.add(4625, DC, logon_data(rng, user, "3", "::ffff:10.20.30.40", True), failure=True, gap=4)
    for _ in range(8):  # brute force on one account, then the lockout
        ev.add(4625, DC, logon_data(rng, "admin.huber", "3", "10.20.30.41", True), failure=True, gap=2)
    ev.add(4740, DC, {"TargetUserName": "admin.huber", "TargetDomainName": "WS-ER-12", "TargetSid": sid(rng),
                      "SubjectUserSid": "S-1-5-18", "SubjectUserName": "DC01$", "SubjectDomainName": DOMAIN,
                      "SubjectLogonId": "0x3e7"}, gap=1)
    admin = sid(rng)  # a new account, straight into Domain Admins
    ev.add(4672, DC, {"SubjectUserSid": admin, "SubjectUserName": "svc.backup", "SubjectDomainName": DOMAIN,
                      "SubjectLogonId": "0x8d2f11",
                      "PrivilegeList": "SeBackupPrivilege\n\t\t\tSeRestorePrivilege\n\t\t\tSeDebugPrivilege"})
    new_sid = sid(rng)
    ev.add(4720, DC, {"TargetUserName": "helpdesk2", "TargetDomainName": DOMAIN, "TargetSid": new_sid,
                      "SubjectUserSid": admin, "SubjectUserName": "svc.backup", "SubjectDomainName": DOMAIN,
                      "SubjectLogonId": "0x8d2f11", "PrivilegeList": "-", "SamAccountName": "helpdesk2",
                      "DisplayName": "%%1793", "UserPrincipalName": "-", "UserAccountControl": "%%2080"})
    ev.add(4728, DC, {"MemberName": f"CN=helpdesk2,OU=Staff,DC=hospital,DC=example", "MemberSid": new_sid,
                      "TargetUserName": "Domain Admins", "TargetDomainName": DOMAIN,
                      "TargetSid": "S-1-5-21-3623811015-3361044348-30300820-512", "SubjectUserSid": admin,
                      "SubjectUserName": "svc.backup", "SubjectDomainName": DOMAIN, "SubjectLogonId": "0x8d2f11",
                      "PrivilegeList": "-"})
    ev.add(4697, DC, {"SubjectUserSid": admin, "SubjectUserName": "svc.backup", "SubjectDomainName": DOMAIN,
                      "SubjectLogonId": "0x8d2f11", "ServiceName": "PSEXESVC",
                      "ServiceFileName": "%SystemRoot%\\PSEXESVC.exe", "ServiceType": "0x10",
                      "ServiceStartType": "3", "ServiceAccount": "LocalSystem"})
    ev.add(1102, DC, {"SubjectUserSid": admin, "SubjectUserName": "svc.backup", "SubjectDomainName": DOMAIN,
                      "SubjectLogonId": "0x8d2f11"}, source=EVENTLOG, user_data="LogFileCleared")
    for _ in range(6):  # Sysmon on the PACS viewer: process starts and one outbound connection
        pid = str(rng.randint(2000, 9000))
        guid = f"{{6f1c2a9e-0a4b-{rng.randint(0x1000, 0xffff):04x}-0000-00100000{rng.randint(0x1000, 0xffff):04x}}}"
        ev.add(1, HOSTS[3], {"RuleName": "-", "UtcTime": "", "ProcessGuid": guid, "ProcessId": pid,
                             "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                             "FileVersion": "10.0.19041.546", "Description": "Windows PowerShell",
                             "Product": "Microsoft® Windows® Operating System", "Company": "Microsoft Corporation",
                             "OriginalFileName": "PowerShell.EXE",
                             "CommandLine": "powershell.exe -NoProfile -Command Get-Service",
                             "CurrentDirectory": "C:\\Users\\nweber\\", "User": f"{DOMAIN}\\nweber",
                             "LogonGuid": "{6f1c2a9e-0a4b-6560-3a2f-0f0000000000}", "LogonId": "0xf2f3a",
                             "TerminalSessionId": "1", "IntegrityLevel": "Medium",
                             "Hashes": f"SHA256={rng.getrandbits(256):064X}",
                             "ParentProcessGuid": "{6f1c2a9e-0a4b-6560-1b00-000000001000}",
                             "ParentProcessId": "5124", "ParentImage": "C:\\Windows\\explorer.exe",
                             "ParentCommandLine": "C:\\Windows\\Explorer.EXE", "ParentUser": f"{DOMAIN}\\nweber"},
               source=SYSMON, user_sid="S-1-5-18")
    ev.add(3, HOSTS[3], {"RuleName": "-", "UtcTime": "", "ProcessGuid": guid, "ProcessId": pid,
                         "Image": "C:\\Windows\\System32\\WindowsPowerShell\\v1.0\\powershell.exe",
                         "User": f"{DOMAIN}\\nweber", "Protocol": "tcp", "Initiated": "true",
                         "SourceIsIpv6": "false", "SourceIp": "10.40.7.31", "SourceHostname": "PACS-VIEW-02",
                         "SourcePort": "50544", "SourcePortName": "-", "DestinationIsIpv6": "false",
                         "DestinationIp": "203.0.113.80", "DestinationHostname": "-", "DestinationPort": "443",
                         "DestinationPortName": "https"}, source=SYSMON, user_sid="S-1-5-18")
    for item in ev.items:  # Sysmon writes the UTC time into the data
        if "UtcTime" in item["data"]:
            item["data"]["UtcTime"] = item["time"].strftime("%Y-%m-%d %H:%M:%S.000")
    return ev.items


def _keywords(item: dict[str, Any]) -> tuple[list[str], int]:
    if not item["audit"]:
        return [], 0x8000000000000000
    if item["failure"]:
        return ["Audit Failure"], 0x8010000000000000
    return ["Audit Success"], 0x8020000000000000


def winlogbeat(item: dict[str, Any], major: int) -> dict[str, Any]:
    names, _ = _keywords(item)
    task_name = TASKS[item["event_id"]][0]
    winlog: dict[str, Any] = {
        "channel": item["channel"], "computer_name": item["computer"], "provider_name": item["provider"],
        "provider_guid": item["guid"], "api": "wineventlog", "opcode": "Info", "task": task_name,
        "event_id": str(item["event_id"]) if major >= 8 else item["event_id"],
        "record_id": str(item["record_id"]) if major >= 8 else item["record_id"],
        "process": {"pid": item["pid"], "thread": {"id": item["tid"]}},
    }
    if names:
        winlog["keywords"] = names
    if item["user_sid"]:
        winlog["user"] = {"identifier": item["user_sid"], "domain": "NT AUTHORITY", "name": "SYSTEM",
                          "type": "Well Known Group"}
    if item["user_data"]:
        winlog["user_data"] = {"xml_name": item["user_data"], **item["data"]}
    else:
        winlog["event_data"] = dict(item["data"])
    if item["channel"] == "Microsoft-Windows-Sysmon/Operational":
        winlog["version"] = 5
    outcome = "failure" if item["failure"] else "success"
    return {
        "@timestamp": item["time"].strftime("%Y-%m-%dT%H:%M:%S.000Z"),
        "agent": {"type": "winlogbeat", "version": "8.15.3" if major >= 8 else "7.17.24",
                  "hostname": item["computer"].split(".")[0], "name": item["computer"].split(".")[0]},
        "ecs": {"version": "8.0.0" if major >= 8 else "1.12.0"},
        "event": {"code": str(item["event_id"]) if major >= 8 else item["event_id"], "kind": "event",
                  "provider": item["provider"], "created": item["time"].strftime("%Y-%m-%dT%H:%M:%S.412Z"),
                  **({"outcome": outcome} if item["audit"] else {})},
        "host": {"name": item["computer"].lower()},
        "log": {"level": "information"},
        "message": MESSAGES[item["event_id"]],
        "winlog": winlog,
    }


def elastic_agent(item: dict[str, Any]) -> dict[str, Any]:
    doc = winlogbeat(item, 8)
    dataset = "system.security" if item["channel"] == "Security" else "windows.sysmon_operational"
    doc["agent"] = {"type": "filebeat", "version": "8.15.3", "id": "0c9a8b5e-7a51-4a8b-9d6c-1f6a4b1d2e33",
                    "name": item["computer"].split(".")[0]}
    doc["data_stream"] = {"dataset": dataset, "namespace": "default", "type": "logs"}
    doc["event"].update({"dataset": dataset, "module": dataset.split(".")[0],
                         "ingested": item["time"].strftime("%Y-%m-%dT%H:%M:%S.988Z")})
    doc["input"] = {"type": "winlog"}
    doc["elastic_agent"] = {"id": doc["agent"]["id"], "snapshot": False, "version": "8.15.3"}
    return doc


def nxlog(item: dict[str, Any]) -> dict[str, Any]:
    _, bits = _keywords(item)
    local = item["time"].astimezone(LOCAL)
    task_name, task = TASKS[item["event_id"]]
    event_type = ("AUDIT_FAILURE" if item["failure"] else "AUDIT_SUCCESS") if item["audit"] else "INFO"
    doc: dict[str, Any] = {
        "EventTime": local.strftime("%Y-%m-%d %H:%M:%S"), "Hostname": item["computer"], "Keywords": str(bits),
        "EventType": event_type, "SeverityValue": 4 if item["failure"] else 2,
        "Severity": "ERROR" if item["failure"] else "INFO", "EventID": item["event_id"],
        "SourceName": item["provider"], "ProviderGuid": item["guid"].upper(),
        "Version": 5 if item["channel"].startswith("Microsoft-Windows-Sysmon") else 0, "Task": task,
        "OpcodeValue": 0, "RecordNumber": item["record_id"], "ExecutionProcessID": item["pid"],
        "ExecutionThreadID": item["tid"], "Channel": item["channel"], "Category": task_name, "Opcode": "Info",
    }
    if item["user_sid"]:
        doc.update({"Domain": "NT AUTHORITY", "AccountName": "SYSTEM", "UserID": item["user_sid"],
                    "AccountType": "Well Known Group"})
    doc["Message"] = MESSAGES[item["event_id"]]
    doc.update(item["data"])
    received = (local + timedelta(seconds=1)).strftime("%Y-%m-%d %H:%M:%S")
    doc.update({"EventReceivedTime": received, "SourceModuleName": "eventlog", "SourceModuleType": "im_msvistalog"})
    return doc


def write(name: str, docs: list[dict[str, Any]]) -> None:
    with open(HERE / name, "wb") as fh:
        for doc in docs:
            fh.write(orjson.dumps(doc) + b"\n")


def main() -> None:
    items = build()
    write("winlogbeat-7.ndjson", [winlogbeat(item, 7) for item in items])
    write("winlogbeat-8.ndjson", [winlogbeat(item, 8) for item in items])
    write("elastic-agent.ndjson", [elastic_agent(item) for item in items])
    write("nxlog.json", [nxlog(item) for item in items])
    print(f"{len(items)} records x 4 flavours in {HERE}")


if __name__ == "__main__":
    main()
