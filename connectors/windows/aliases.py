"""Sysmon-named alias fields for the non-Sysmon events that carry a generic Sigma category.

Why: SigmaHQ writes generic rules (``category: process_creation``) with Sysmon's field names (``Image``,
``ParentImage``, ``TargetObject`` …). The taxonomy also hands those rules the Windows audit events that
carry the same facts (Security 4688, 4657, 4663, 5156 …), whose fields are named differently. pySigma's
``windows_audit_pipeline`` and SigmaHQ's THOR config rename the *rule's* fields; we add the Sysmon names
to the *event* once, at normalise time, so SQLite, the Elasticsearch prefilters and ``rules explain`` all see
one event shape (docs/decisions.md). Original fields are kept, and an alias never overwrites a field the
event already has (4688's own ``ProcessId`` is the creator's id and stays so; the new process's id is only
under ``NewProcessId``).
"""

from __future__ import annotations

import re
from typing import Any, Callable, Mapping

from engine.events import DATASET, Event

_NONE = frozenset({"", "-", "(null)"})

#: Mandatory label SID (4688 ``MandatoryLabel``) -> Sysmon's ``IntegrityLevel`` wording.
_INTEGRITY = {
    "S-1-16-0": "Untrusted", "S-1-16-4096": "Low", "S-1-16-8192": "Medium", "S-1-16-8448": "Medium",
    "S-1-16-12288": "High", "S-1-16-16384": "System", "S-1-16-20480": "Protected",
}
#: 5156/5157 ``Direction`` (message id or rendered) -> Sysmon's ``Initiated``.
_INITIATED = {"%%14593": "true", "outbound": "true", "%%14592": "false", "inbound": "false"}
#: 4657 ``OperationType`` -> Sysmon's ``EventType``.
_REG_EVENT_TYPE = {
    "%%1904": "SetValue", "new registry value created": "SetValue",
    "%%1905": "SetValue", "existing registry value modified": "SetValue",
    "%%1906": "DeleteValue", "registry value deleted": "DeleteValue",
}
#: Registry paths as the audit log writes them -> the hive abbreviations Sysmon (and the rules) use.
_HIVES = (("\\REGISTRY\\MACHINE", "HKLM"), ("\\REGISTRY\\USER", "HKU"))


def _text(event: Event, name: str) -> str | None:
    value = event.get(name)
    if value is None:
        return None
    text = str(value)
    return None if text in _NONE else text


def _pid(value: Any) -> int | None:
    """Audit events log process ids in hex (``0x1a4``); Sysmon in decimal. Out of 0..2**63-1 (a corrupt
    record): None, so an alias can never make an event the stores cannot hold."""
    if type(value) is int:
        number = value
    else:
        try:
            text = str(value).strip()
            number = int(text, 16) if text.lower().startswith("0x") else int(text)
        except (TypeError, ValueError):
            return None
    return number if 0 <= number < 2**63 else None


#: Service accounts: the audit log names them by the machine account (``HOST$`` in ``WORKGROUP``) and the
#: SID / logon id; Sysmon's ``User`` (which SigmaHQ rules test, ``User|contains: AUTHORI``) by these names.
_WELL_KNOWN_SIDS = {"S-1-5-18": "NT AUTHORITY\\SYSTEM", "S-1-5-19": "NT AUTHORITY\\LOCAL SERVICE",
                    "S-1-5-20": "NT AUTHORITY\\NETWORK SERVICE"}
_WELL_KNOWN_LOGONS = {"0x3e7": "S-1-5-18", "0x3e5": "S-1-5-19", "0x3e4": "S-1-5-20"}


def _account(event: Event, prefix: str) -> str | None:
    """``DOMAIN\\user`` as Sysmon writes it, for the ``Subject``/``Target`` account of an audit event."""
    sid = _text(event, f"{prefix}UserSid")
    logon = (_text(event, f"{prefix}LogonId") or "").lower()
    known = _WELL_KNOWN_SIDS.get(sid or "") or _WELL_KNOWN_SIDS.get(_WELL_KNOWN_LOGONS.get(logon, ""))
    if known:
        return known
    name = _text(event, f"{prefix}UserName")
    if name is None or sid == "S-1-0-0":  # the NULL SID: no such account on this event
        return None
    domain = _text(event, f"{prefix}DomainName")
    return f"{domain}\\{name}" if domain else name


def _process_creation(event: Event) -> dict[str, Any]:
    """4688 -> Sysmon 1 names (pySigma audit pipeline: Image, ParentImage, LogonId; plus the rest)."""
    user = _account(event, "Target") or _account(event, "Subject")
    label = _text(event, "MandatoryLabel")
    return {
        "Image": _text(event, "NewProcessName"),
        "ParentImage": _text(event, "ParentProcessName"),
        "ParentProcessId": _decimal(event.get("ProcessId")),
        "User": user,
        "LogonId": _text(event, "SubjectLogonId"),
        "IntegrityLevel": _INTEGRITY.get(label.upper()) if label else None,
    }


def _process_termination(event: Event) -> dict[str, Any]:
    """4689 -> Sysmon 5 names."""
    return {"Image": _text(event, "ProcessName"), "User": _account(event, "Subject")}


def _decimal(value: Any) -> str | None:
    """A process id or port as Sysmon's events carry it (decimal text: ``"4312"``, ``"443"``), so one field has
    one type in every dataset (Elasticsearch maps per index, a rule reads across them)."""
    number = _pid(value)
    return None if number is None else str(number)


def _registry_path(event: Event) -> str | None:
    key = _text(event, "ObjectName")
    if key is None:
        return None
    for long, short in _HIVES:
        if key.upper().startswith(long):
            key = short + key[len(long):]
            break
    value = _text(event, "ObjectValueName")
    return f"{key}\\{value}" if value else key


def _registry_details(event: Event) -> str | None:
    value = _text(event, "NewValue")
    if value is None:
        return None
    kind = str(event.get("NewValueType") or "").upper()
    if kind in ("%%1876", "REG_DWORD"):  # Sysmon renders DWORDs as "DWORD (0x00000001)"
        number = _pid(value)
        if number is not None and 0 <= number <= 0xFFFFFFFF:
            return f"DWORD (0x{number:08x})"
    return value


def _registry(event: Event) -> dict[str, Any]:
    """4657 -> Sysmon 12/13 names (pySigma audit pipeline: Details <- NewValue)."""
    op = _text(event, "OperationType")
    return {
        "TargetObject": _registry_path(event),
        "Details": _registry_details(event),
        "EventType": _REG_EVENT_TYPE.get(op.lower()) if op else None,
        "Image": _text(event, "ProcessName"),
        "ProcessId": _decimal(event.get("ProcessId")),
    }


def _file_access(event: Event) -> dict[str, Any]:
    """4663 on a file -> the Kernel-File names file_access rules use (FileName, Image)."""
    if str(event.get("ObjectType") or "").casefold() != "file":
        return {}
    name = _text(event, "ObjectName")
    return {"FileName": name, "TargetFilename": name, "Image": _text(event, "ProcessName"),
            "ProcessId": _decimal(event.get("ProcessId")), "User": _account(event, "Subject")}


_DEVICE_VOLUME = re.compile(r"^\\device\\harddiskvolume\d+\\", re.IGNORECASE)


def _dos_path(path: str | None) -> str | None:
    """The Filtering Platform logs NT device paths (``\\device\\harddiskvolume2\\windows\\...``); Sysmon and
    the rules' filters (``Image: C:\\Windows\\System32\\lsass.exe``) use drive letters. Which letter a volume
    has is not in the event, so the volume is taken to be the system drive ``C:`` (``Application`` keeps
    the device path); without this every filter on a full path misses and lsass's Kerberos traffic alerts."""
    if path is None:
        return None
    return _DEVICE_VOLUME.sub("C:\\\\", path, count=1)


def _network(event: Event) -> dict[str, Any]:
    """5156/5157 (Filtering Platform) -> Sysmon 3 names. ``Protocol`` keeps the event's own number (6, 17):
    the field exists, and an alias never replaces a field."""
    direction = _text(event, "Direction")
    return {
        "Image": _dos_path(_text(event, "Application")),
        "ProcessId": _decimal(event.get("ProcessID")),
        "SourceIp": _text(event, "SourceAddress"),
        "SourcePort": _decimal(event.get("SourcePort")),
        "DestinationIp": _text(event, "DestAddress"),
        "DestinationPort": _decimal(event.get("DestPort")),
        "Initiated": _INITIATED.get(direction.lower()) if direction else None,
    }


def _antivirus(event: Event) -> dict[str, Any]:
    """Defender detections -> the ``antivirus`` category names (THOR: Signature <- ThreatName, Filename <- Path)."""
    return {"Signature": _text(event, "Threat Name") or _text(event, "ThreatName"),
            "Filename": _text(event, "Path")}


_DEFENDER_DETECTIONS = (1006, 1007, 1008, 1009, 1010, 1011, 1012, 1017, 1018, 1019, 1115, 1116)

#: (dataset, EventID) -> the function giving that event's alias fields.
ALIASES: Mapping[tuple[str, int], Callable[[Event], dict[str, Any]]] = {
    ("windows.security", 4688): _process_creation,
    ("windows.security", 4689): _process_termination,
    ("windows.security", 4657): _registry,
    ("windows.security", 4663): _file_access,
    ("windows.security", 5156): _network,
    ("windows.security", 5157): _network,
    **{("windows.windefend", eid): _antivirus for eid in _DEFENDER_DETECTIONS},
}


def add_aliases(event: Event) -> None:
    """Add the Sysmon-named fields of ``event``'s kind, in place; existing fields are never replaced."""
    make = ALIASES.get((str(event.get(DATASET)), _pid(event.get("EventID")) or -1))
    if make is None:
        return
    for name, value in make(event).items():
        if value is not None and name not in event:
            event[name] = value
