"""The one Windows event shape every transport produces, and its normalisation.

Why one module: Windows data reaches us as EVTX XML-turned-JSON, as Winlogbeat's nested ``winlog.*``, as
NXLog's flat keys and as documents already sitting in Elasticsearch. SigmaHQ rules are written against the
flat EventData names (``TargetUserName``, ``Image``) plus ``EventID``/``Channel``/``Provider_Name``; ECS
users search ``event.code``/``user.name``/``source.ip``. Doing the mapping once, here, is what makes the
same logon look identical to a rule whichever transport carried it.

Transports build a :class:`WindowsRecord` (the System part, already parsed) with the record's EventData
(or UserData) as a flat ``name -> value`` mapping and call :func:`normalise_record`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

from connectors.windows.aliases import add_aliases
from engine.events import DATASET, TIMESTAMP, Event, format_timestamp, normalise_timestamp

#: Channel (case-insensitive) -> ``event.dataset``: ``windows.`` + the Sigma ``service`` of the channel
#: (pySigma's ``windows_logsource_mapping`` / SigmaHQ's THOR config), so a rule's service names its dataset.
#: A channel not listed gets ``windows.<slug>`` (:func:`dataset_for_channel`), so nothing is dropped; the
#: taxonomy (``engine/sigma/taxonomy.py``) maps Sigma logsources onto these with the same function.
CHANNEL_DATASETS: dict[str, str] = {
    "security": "windows.security",
    "system": "windows.system",
    "application": "windows.application",
    "microsoft-windows-sysmon/operational": "windows.sysmon",
    # Operational (4103/4104) and classic (400/600/800) PowerShell are different logs: same EventID, other
    # meaning; keeping them apart is what lets ps_* categories pick the right one.
    "microsoft-windows-powershell/operational": "windows.powershell",
    "powershellcore/operational": "windows.powershell",
    "windows powershell": "windows.powershell-classic",
    "microsoft-windows-taskscheduler/operational": "windows.taskscheduler",
    "microsoft-windows-wmi-activity/operational": "windows.wmi",
    "dns server": "windows.dns-server",
    "microsoft-windows-dns-server/audit": "windows.dns-server-audit",
    "microsoft-windows-dns-server/analytical": "windows.dns-server-analytic",
    "microsoft-windows-dns client events/operational": "windows.dns-client",
    "microsoft-windows-driverframeworks-usermode/operational": "windows.driver-framework",
    "microsoft-windows-ntlm/operational": "windows.ntlm",
    "microsoft-windows-dhcp-server/operational": "windows.dhcp",
    "msexchange management": "windows.msexchange-management",
    "microsoft-windows-applocker/msi and script": "windows.applocker",
    "microsoft-windows-applocker/exe and dll": "windows.applocker",
    "microsoft-windows-applocker/packaged app-deployment": "windows.applocker",
    "microsoft-windows-applocker/packaged app-execution": "windows.applocker",
    "microsoft-windows-printservice/admin": "windows.printservice-admin",
    "microsoft-windows-printservice/operational": "windows.printservice-operational",
    "microsoft-windows-codeintegrity/operational": "windows.codeintegrity-operational",
    "microsoft-windows-smbclient/security": "windows.smbclient-security",
    "microsoft-windows-smbclient/connectivity": "windows.smbclient-connectivity",
    "microsoft-windows-smbserver/connectivity": "windows.smbserver-connectivity",
    "microsoft-windows-windows firewall with advanced security/firewall": "windows.firewall-as",
    "microsoft-windows-bits-client/operational": "windows.bits-client",
    "microsoft-windows-windows defender/operational": "windows.windefend",
    "microsoft-windows-terminalservices-localsessionmanager/operational":
        "windows.terminalservices-localsessionmanager",
    "microsoft-servicebus-client": "windows.servicebus-client",
    "microsoft-servicebus-client/admin": "windows.servicebus-client",
    "microsoft-servicebus-client/operational": "windows.servicebus-client",
    "microsoft-windows-ldap-client/debug": "windows.ldap",
    "microsoft-windows-security-mitigations/kernel mode": "windows.security-mitigations",
    "microsoft-windows-security-mitigations/user mode": "windows.security-mitigations",
    "microsoft-windows-diagnosis-scripted/operational": "windows.diagnosis-scripted",
    "microsoft-windows-shell-core/operational": "windows.shell-core",
    "openssh/operational": "windows.openssh",
    "microsoft-windows-bitlocker/bitlocker management": "windows.bitlocker",
    "microsoft-windows-vhdmp/operational": "windows.vhdmp",
    "microsoft-windows-appxdeploymentserver/operational": "windows.appxdeployment-server",
    "microsoft-windows-appxpackaging/operational": "windows.appxpackaging-om",
    "microsoft-windows-appmodel-runtime/admin": "windows.appmodel-runtime",
    "microsoft-windows-lsa/operational": "windows.lsa-server",
    "microsoft-windows-capi2/operational": "windows.capi2",
    "microsoft-windows-certificateservicesclient-lifecycle-system/operational":
        "windows.certificateservicesclient-lifecycle-system",
    "microsoft-iis-configuration/operational": "windows.iis-configuration",
    "microsoft-windows-kernel-shimengine/operational": "windows.kernel-shimengine",
    "microsoft-windows-kernel-shimengine/diagnostic": "windows.kernel-shimengine",
    "microsoft-windows-application-experience/program-telemetry": "windows.application-experience",
    "microsoft-windows-application-experience/program-compatibility-assistant": "windows.application-experience",
    "microsoft-windows-ntfs/operational": "windows.ntfs",
    "microsoft-windows-sense/operational": "windows.sense",
    "microsoft-windows-kernel-eventtracing": "windows.kernel-event-tracing",
    "microsoft-windows-hyper-v-worker": "windows.hyper-v-worker",
    # Kernel-File ETW (file_access / file_rename rules), when an ETW collector writes it to a channel
    "microsoft-windows-kernel-file/analytic": "windows.kernel-file",
}


def dataset_for_channel(channel: str) -> str:
    """``event.dataset`` of a channel: the known table, else ``windows.`` + a lower-case slug of it."""
    known = CHANNEL_DATASETS.get(channel.casefold())
    if known is not None:
        return known
    slug = re.sub(r"[^a-z0-9]+", "-", channel.casefold()).strip("-")
    return f"windows.{slug or 'unknown'}"


@dataclass
class WindowsRecord:
    """The System part of one Windows event, plus its EventData/UserData flattened to ``name -> value``.

    ``data`` keys are the names Windows gives (``TargetUserName``); nested UserData is flattened by the
    transport with its own element names (``LogFileCleared`` → ``SubjectUserName`` …, the leaf names only,
    as SigmaHQ's tooling does). Unnamed ``<Data>`` items arrive as one ``Data`` list.
    """

    channel: str
    provider: str
    event_id: int
    record_id: int | None
    computer: str
    time: datetime | str
    data: Mapping[str, Any] = field(default_factory=dict)
    level: int | None = None
    task: int | None = None
    opcode: int | None = None
    keywords: str | None = None
    version: int | None = None
    process_id: int | None = None
    thread_id: int | None = None
    user_sid: str | None = None
    provider_guid: str | None = None
    #: the rendered message, when the transport has one (Winlogbeat ``message``, NXLog ``Message``)
    message: str | None = None


# Audit Failure keyword bit (0x10000000000000); Audit Success is 0x20000000000000.
_AUDIT_FAILURE = 0x10000000000000
_AUDIT_SUCCESS = 0x20000000000000


def normalise_record(record: WindowsRecord) -> Event:
    """One flat event: SigmaHQ names (System fields + EventData) and the ECS fields Elastic sets.

    EventData names win over nothing: a data item named like a System field (rare) is kept under its own
    name only when the System field is absent, so ``EventID``/``Channel`` always mean the record's own.
    """
    event: Event = {}
    for name, value in record.data.items():
        if value is None:
            continue
        event[name] = value if type(value) is str else data_text(value)
    # text already in the canonical form (the EVTX transport's, evtx_records.py) is only checked, not
    # parsed to a datetime and formatted back: same text either way (engine.events.normalise_timestamp)
    ts = record.time
    event[TIMESTAMP] = format_timestamp(ts) if isinstance(ts, datetime) else normalise_timestamp(ts)
    event[DATASET] = dataset_for_channel(record.channel)
    event["EventID"] = record.event_id
    event["Channel"] = record.channel
    event["Provider_Name"] = record.provider
    event["Computer"] = record.computer
    if record.record_id is not None:
        event["EventRecordID"] = record.record_id
    for key, value in (("Level", record.level), ("Task", record.task), ("Opcode", record.opcode),
                       ("Keywords", record.keywords), ("Version", record.version),
                       ("ProcessID", record.process_id), ("ThreadID", record.thread_id),
                       ("UserID", record.user_sid), ("Provider_Guid", record.provider_guid)):
        if value is not None:
            # text, as EventData: a data item may share the name (RDP events carry a ``Version`` item
            # "0xa0301"), and one field must have one type in every event (an Elasticsearch mapping).
            # ``data_text`` of an int or a str, inline: nine fields of every event
            if key not in event:
                event[key] = value if type(value) is str else str(value) if type(value) is int else data_text(value)
    # ECS, as Winlogbeat / Elastic Agent set it
    event["event.code"] = str(record.event_id)
    event["event.provider"] = record.provider
    event["event.module"] = "windows" if event[DATASET] != "windows.security" else "security"
    event["host.name"] = record.computer.lower()
    event["winlog.channel"] = record.channel
    event["winlog.computer_name"] = record.computer
    if record.record_id is not None:
        event["winlog.record_id"] = record.record_id
    outcome = _outcome(record)
    if outcome is not None:
        event["event.outcome"] = outcome
    _user_fields(event)
    _source_fields(event)
    if record.message:
        event["message"] = record.message
    add_aliases(event)  # Sysmon names for 4688 & co., so generic-category rules read them (aliases.py)
    return event


def data_text(value: Any) -> Any:
    """An EventData/UserData value as text, as Windows renders it and Winlogbeat sends it (lists item by
    item). Why: pyevtx-rs types values from the template (``ProcessId`` is a number in Sysmon and ``0x1358``
    text in 4688), and a field that is a number in one event and text in the next is a mapping conflict in
    Elasticsearch (the second document is rejected); Sigma compares numbers and numeric text alike."""
    if type(value) is str or value is None:
        return value
    if type(value) is list:
        return [data_text(item) for item in value]
    if type(value) is bool:
        return "true" if value else "false"
    if type(value) is dict:
        return json.dumps(value, sort_keys=True, default=str)
    return str(value)


def _outcome(record: WindowsRecord) -> str | None:
    if record.keywords:
        try:
            bits = int(str(record.keywords), 16)
        except ValueError:
            bits = 0
        if bits & _AUDIT_FAILURE:
            return "failure"
        if bits & _AUDIT_SUCCESS:
            return "success"
    return None


_NO_VALUE = frozenset({"", "-", "%%1793", "(null)"})


def _user_fields(event: Event) -> None:
    """``user.name``/``user.domain``/``user.id``: the account the event is about (Target, else Subject)."""
    for prefix in ("Target", "Subject"):
        name = event.get(f"{prefix}UserName")
        if type(name) is not str or name in _NO_VALUE:
            continue
        domain = event.get(f"{prefix}DomainName")
        if "@" in name:  # Kerberos events log user@REALM
            name, _, realm = name.partition("@")
            domain = domain if type(domain) is str and domain not in _NO_VALUE else realm
        event["user.name"] = name.lower()
        if type(domain) is str and domain not in _NO_VALUE:
            event["user.domain"] = domain.lower()
        sid = event.get(f"{prefix}UserSid")
        if type(sid) is str and sid not in _NO_VALUE:
            event["user.id"] = sid
        return


_MAPPED_V4 = re.compile(r"^::ffff:(\d{1,3}(?:\.\d{1,3}){3})$", re.IGNORECASE)


def _source_fields(event: Event) -> None:
    """``source.ip``/``source.port`` from ``IpAddress``/``IpPort`` (IPv4-mapped IPv6 unwrapped, as Elastic does)."""
    for ip_key, port_key in (("IpAddress", "IpPort"), ("SourceAddress", "SourcePort"),
                             ("SourceNetworkAddress", "SourcePort")):
        ip = event.get(ip_key)
        if type(ip) is not str or ip in _NO_VALUE:
            continue
        m = _MAPPED_V4.match(ip)
        event["source.ip"] = m.group(1) if m else ip
        port = event.get(port_key)
        try:
            if port not in (None, "", "-", "0", 0):
                event["source.port"] = int(port)
        except (TypeError, ValueError):
            pass
        return
