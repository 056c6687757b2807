"""One Winlogbeat, Elastic Agent or NXLog ``im_msvistalog`` JSON document -> a :class:`WindowsRecord`.

Why one function for three shippers: they carry the same Windows record, only spelled differently.
Winlogbeat 7.x/8.x and Elastic Agent (``system.security``, ``windows.*`` integrations) nest it under
``winlog.*`` (``winlog.event_data.TargetUserName``); NXLog's ``to_json()`` puts its own fields
(``EventID``, ``Hostname``, ``EventReceivedTime`` ...) and the record's EventData flat side by side at the
top level. The flavour is detected per document, so one listener can take both shippers.

Accepted spellings of the same document (the Elasticsearch-source connector relies on all three):

* nested JSON as the shipper sends it, or as Elasticsearch returns it in ``_source``;
* dotted keys (``"winlog.event_data.TargetUserName": "bob"``), as some pipelines store them;
* dotted keys with every value in a list, as a search returns them under ``fields``.

Values the shipper typed differently between versions (``winlog.event_id`` a string in 8.x and a number in
7.x, ``winlog.record_id`` likewise) are read either way. EventData values are passed on as the shipper
typed them; :func:`normalise_record` makes them text, so a ``LogonType`` is the same whichever shipper
carried it.

A document that is not a Windows record (no event id, no channel, no computer, no time) raises
:class:`WinlogbeatDocumentError` naming the missing or bad key but never quoting its value: the reason of a
dead letter is logged, and logs carry no PHI (the raw line is kept in the dead letter itself).
"""

from __future__ import annotations

from datetime import datetime, timezone, tzinfo
from typing import Any, Mapping

from connectors.windows.record import WindowsRecord
from engine.events import flatten, parse_timestamp

__all__ = ["WinlogbeatDocumentError", "record_from_document", "flavour_of"]

WINLOGBEAT = "winlogbeat"
NXLOG = "nxlog"


class WinlogbeatDocumentError(ValueError):
    """The document is not a Windows record we can read; the message names the key."""


# Keyword bits Windows sets on Security events (winmeta.xml): Winlogbeat sends their names,
# NXLog's ``EventType`` says AUDIT_SUCCESS / AUDIT_FAILURE.
_KEYWORD_BITS: dict[str, int] = {
    "audit failure": 0x8010000000000000,
    "audit success": 0x8020000000000000,
    "classic": 0x0080000000000000,
    "correlation hint": 0x0040000000000000,
    "sqm": 0x0008000000000000,
    "wdi context": 0x0002000000000000,
    "wdi diagnostic": 0x0004000000000000,
    "response time": 0x0001000000000000,
}
_EVENT_TYPE_BITS = {"audit_failure": _KEYWORD_BITS["audit failure"], "audit_success": _KEYWORD_BITS["audit success"]}
_OUTCOME_BITS = {"failure": _KEYWORD_BITS["audit failure"], "success": _KEYWORD_BITS["audit success"]}
# Winlogbeat's ``log.level`` names -> the Windows level number. (NXLog's ``Severity`` is its own scale,
# derived from EventType - AUDIT_FAILURE is "ERROR" - so it is not the record's Level and is not used.)
_LEVELS = {"critical": 1, "error": 2, "warning": 3, "information": 4, "info": 4, "verbose": 5, "debug": 5}
_OPCODES = {"info": 0, "start": 1, "stop": 2, "datacollection": 3, "datacollectionstart": 3,
            "datacollectionstop": 4}

#: Fields NXLog's im_msvistalog (and its core) sets itself; every other top-level key is EventData.
NXLOG_OWN_FIELDS: frozenset[str] = frozenset({
    "EventTime", "EventTimeWritten", "EventReceivedTime", "Hostname", "Keywords", "EventType",
    "SeverityValue", "Severity", "EventID", "SourceName", "ProviderGuid", "Version", "Task", "OpcodeValue",
    "Opcode", "RecordNumber", "ActivityID", "RelatedActivityID", "ExecutionProcessID", "ExecutionThreadID",
    "Channel", "Domain", "AccountName", "UserID", "AccountType", "Category", "Message", "Level",
    "LevelValue", "SourceModuleName", "SourceModuleType", "EventXML", "MessageSourceAvailable",
    "raw_event", "ERRORLEVEL",
})
#: NXLog's look-up of the System UserID; without a UserID these names can only be EventData (7045's AccountName)
_NXLOG_ACCOUNT = frozenset({"Domain", "AccountName", "AccountType"})
_NXLOG_OWN_WITHOUT_ACCOUNT = NXLOG_OWN_FIELDS - _NXLOG_ACCOUNT
#: Any of these at the top level (with ``EventID``) marks an NXLog document.
_NXLOG_MARKERS = ("SourceModuleType", "EventReceivedTime", "SourceName", "Hostname", "RecordNumber")
_EVENT_DATA = "winlog.event_data."
_MAX_INT = 1 << 63
#: the top-level objects a Winlogbeat document's record is read from
_WINLOGBEAT_PARTS = ("@timestamp", "message", "log", "event", "host", "winlog")
_USER_DATA = "winlog.user_data."


def flavour_of(flat: Mapping[str, Any]) -> str:
    """``winlogbeat`` (also Elastic Agent) or ``nxlog`` for a flattened document; ``""`` when neither."""
    if "winlog.event_id" in flat or "winlog.channel" in flat:
        return WINLOGBEAT
    if "EventID" in flat and any(key in flat for key in _NXLOG_MARKERS):
        return NXLOG
    return ""


def record_from_document(doc: Mapping[str, Any], tz: tzinfo = timezone.utc) -> WindowsRecord:
    """The Windows record in one shipper document (nested, dotted, or dotted with list values).

    ``tz`` is the zone of NXLog's ``EventTime``, which ``to_json()`` writes as local time without an offset;
    a time that carries an offset (Winlogbeat's ``@timestamp``, an NXLog pipeline writing ISO 8601) keeps it.
    """
    if not isinstance(doc, Mapping):
        raise WinlogbeatDocumentError(f"not a JSON object (got {type(doc).__name__})")
    winlog = doc.get("winlog")
    event_data = None
    if type(winlog) is dict and not any("." in key for key in doc if key != "@timestamp"):
        # Nested Winlogbeat/Agent, the common case: only the parts read below are flattened (not agent.*,
        # ecs.*, data_stream.* ...), and a flat event_data is taken as it is. Same result, ~15% less CPU
        # for the mapping (docs/benchmarks.md).
        doc = {key: doc[key] for key in _WINLOGBEAT_PARTS if key in doc}
        candidate = winlog.get("event_data")
        if type(candidate) is dict and not any(type(value) is dict for value in candidate.values()):
            doc["winlog"] = {key: value for key, value in winlog.items() if key != "event_data"}
            event_data = candidate
    flat = _unwrap(flatten(doc))
    flavour = flavour_of(flat)
    if flavour == WINLOGBEAT:
        return _from_winlogbeat(flat, event_data)
    if flavour == NXLOG:
        return _from_nxlog(flat, tz)
    raise WinlogbeatDocumentError("not a Winlogbeat/Elastic Agent (winlog.event_id) or NXLog (EventID with "
                                  "SourceName/Hostname) Windows event")


def _unwrap(flat: dict[str, Any]) -> dict[str, Any]:
    """Elasticsearch ``fields`` put every value in a list: a one-element list is its element."""
    for key, value in flat.items():
        if type(value) is list and len(value) == 1 and key != "winlog.keywords":
            flat[key] = value[0]
    return flat


def _one(value: Any) -> Any:
    return value[0] if type(value) is list and len(value) == 1 else value


def _from_winlogbeat(flat: Mapping[str, Any], event_data: Mapping[str, Any] | None) -> WindowsRecord:
    event_id = _int(flat, "winlog.event_id", required=True)
    data: dict[str, Any] = {}
    if event_data is not None:
        data = {key: _one(value) for key, value in event_data.items()}
    for key, value in flat.items():
        if key.startswith(_EVENT_DATA):
            data[key[len(_EVENT_DATA):]] = value
        elif key.startswith(_USER_DATA):
            leaf = key.rpartition(".")[2]
            if leaf != "xml_name":  # Winlogbeat's name of the UserData element, not a data item
                data.setdefault(leaf, value)
    keywords = _keywords_from_names(flat.get("winlog.keywords"))
    if keywords is None:
        keywords = _keywords_from_outcome(flat.get("event.outcome"))
    return WindowsRecord(
        channel=_str(flat, "winlog.channel", required=True),
        provider=_str(flat, "winlog.provider_name") or _str(flat, "event.provider") or "",
        event_id=event_id,  # type: ignore[arg-type]
        record_id=_int(flat, "winlog.record_id"),
        computer=_str(flat, "winlog.computer_name") or _str(flat, "host.name", required=True),
        time=_time(flat, "@timestamp", timezone.utc),
        data=data,
        level=_named(flat.get("log.level"), _LEVELS),
        opcode=_named(flat.get("winlog.opcode"), _OPCODES),
        keywords=keywords,
        version=_int(flat, "winlog.version"),
        process_id=_int(flat, "winlog.process.pid"),
        thread_id=_int(flat, "winlog.process.thread.id"),
        user_sid=_str(flat, "winlog.user.identifier"),
        provider_guid=_guid(_str(flat, "winlog.provider_guid")),
        message=_str(flat, "message"),
    )


def _from_nxlog(flat: Mapping[str, Any], tz: tzinfo) -> WindowsRecord:
    own = NXLOG_OWN_FIELDS if "UserID" in flat else _NXLOG_OWN_WITHOUT_ACCOUNT
    data = {key: value for key, value in flat.items() if key not in own}
    keywords = _keywords_from_number(flat.get("Keywords"))
    if keywords is None:
        keywords = _keywords_from_names([str(flat.get("EventType") or "").replace("_", " ")])
    return WindowsRecord(
        channel=_str(flat, "Channel", required=True),
        provider=_str(flat, "SourceName") or "",
        event_id=_int(flat, "EventID", required=True),  # type: ignore[arg-type]
        record_id=_int(flat, "RecordNumber"),
        computer=_str(flat, "Hostname", required=True),
        time=_time(flat, "EventTime", tz),
        data=data,
        task=_int(flat, "Task"),
        opcode=_int(flat, "OpcodeValue"),
        keywords=keywords,
        version=_int(flat, "Version"),
        process_id=_int(flat, "ExecutionProcessID"),
        thread_id=_int(flat, "ExecutionThreadID"),
        user_sid=_str(flat, "UserID"),
        provider_guid=_guid(_str(flat, "ProviderGuid")),
        message=_str(flat, "Message"),
    )


# --- value readers: each names the key it failed on --------------------------------------------------------
def _str(flat: Mapping[str, Any], key: str, required: bool = False) -> str | None:
    value = flat.get(key)
    if type(value) is str and value:
        return value
    if value is None or value == "":
        if required:
            raise WinlogbeatDocumentError(f"field {key!r}: required, missing")
        return None
    if type(value) in (int, float):
        return str(value)
    raise WinlogbeatDocumentError(f"field {key!r}: expected text, got {type(value).__name__}")


def _int(flat: Mapping[str, Any], key: str, required: bool = False) -> int | None:
    """A whole number 0 <= n < 2**63 (ids, pids, record numbers): larger cannot be stored or indexed."""
    value = flat.get(key)
    if value is None or value == "":
        if required:
            raise WinlogbeatDocumentError(f"field {key!r}: required, missing")
        return None
    number: int | None = None
    if type(value) is int:
        number = value
    elif type(value) is str and value.strip().isdecimal() and value.isascii():
        number = int(value)
    elif type(value) is float and value.is_integer():
        number = int(value)
    if number is None or not 0 <= number < _MAX_INT:
        raise WinlogbeatDocumentError(f"field {key!r}: expected a whole number 0..2^63-1 "
                                      f"(got {_kind(value)})")
    return number


def _time(flat: Mapping[str, Any], key: str, tz: tzinfo) -> datetime:
    value = flat.get(key)
    if value is None or value == "":
        raise WinlogbeatDocumentError(f"field {key!r}: required, missing")
    if type(value) is str:
        text = value.strip()
        if len(text) > 10 and text[10] == " ":  # NXLog's "2026-12-01 08:15:02"
            text = text[:10] + "T" + text[11:]
        try:
            dt = datetime.fromisoformat(text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text)
        except ValueError:
            raise WinlogbeatDocumentError(f"field {key!r}: not an ISO 8601 time") from None
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=tz)
        return dt.astimezone(timezone.utc)
    if type(value) is int and abs(value) > 10**14:  # NXLog's integer($EventTime): microseconds since 1970
        value = value / 1_000_000
    try:
        return parse_timestamp(value)
    except (ValueError, OverflowError, OSError) as exc:
        raise WinlogbeatDocumentError(f"field {key!r}: not a time (got {_kind(value)}, "
                                      f"{type(exc).__name__})") from None


def _kind(value: Any) -> str:
    """What a bad value was, without the value: reasons are logged, and logs never carry PHI."""
    if type(value) is int:
        return "a number out of range"
    if type(value) is float:
        return "a fractional number"
    if type(value) is str:
        return f"text of {len(value)} characters"
    return type(value).__name__


def _named(value: Any, table: Mapping[str, int]) -> int | None:
    if type(value) is int:
        return value
    if type(value) is str:
        return table.get(value.strip().casefold().replace(" ", ""))
    return None


def _guid(text: str | None) -> str | None:
    """GUIDs as the EVTX XML renders them (``{54849625-...-3E3B0328C30D}``): shippers differ in case."""
    return text.upper() if text else None


def _hex(bits: int) -> str:
    return f"0x{bits:x}"


def _keywords_from_names(names: Any) -> str | None:
    if type(names) is str:
        names = [names]
    if type(names) is not list:
        return None
    bits = 0
    for name in names:
        if type(name) is str:
            bits |= _KEYWORD_BITS.get(name.strip().casefold(), 0)
    return _hex(bits) if bits else None


def _keywords_from_number(value: Any) -> str | None:
    """NXLog writes ``Keywords`` as a (signed or unsigned) 64-bit integer, or its decimal/hex text."""
    if type(value) is str:
        text = value.strip()
        try:
            value = int(text, 16) if text[:2].lower() == "0x" else int(text)
        except ValueError:
            return None
    if type(value) is not int or not value:
        return None
    return _hex(value & 0xFFFFFFFFFFFFFFFF)


def _keywords_from_outcome(outcome: Any) -> str | None:
    bits = _OUTCOME_BITS.get(outcome) if type(outcome) is str else None
    return _hex(bits) if bits else None
