"""One pyevtx-rs JSON record -> :class:`~connectors.windows.record.WindowsRecord`.

Why this flattening and not another: SigmaHQ rules are written against the names SigmaHQ's own tooling
produces from EVTX (its regression runner uses evtx-sigma-checker; Zircolite, Chainsaw and Hayabusa agree):

* ``<Data Name="X">v</Data>`` -> ``X`` (pyevtx-rs already renders those as ``EventData.X``);
* unnamed ``<Data>v</Data>`` -> ``Data`` (a list when there are several), also inside
  ``{"#attributes": ..., "Data": ...}`` and ``{"#text": [...]}`` shapes;
* UserData (and the other non-System payloads: ``ProcessingErrorData``, ``SubscriptionBookmarkEvent``,
  ``DebugData``) -> the names of their leaf elements (1102 ``UserData.LogFileCleared.SubjectUserName`` ->
  ``SubjectUserName``), first occurrence wins;
* ``{"#attributes": ..., "#text": v}`` (``EventID`` with ``Qualifiers``, a ``Data`` with attributes) -> ``v``.

System values Windows types as numbers (EventID, EventRecordID, Level, Task, Opcode, Version, ProcessID,
ThreadID) become ints even when a file renders them as strings (some re-exported files do); EventData
values keep the type pyevtx-rs gives (Sigma compares as text anyway, :mod:`engine.sigma.values`).

A record that has no usable System part (no EventID, no Computer, no time) raises :class:`EvtxRecordError`
naming the key: the connector turns that into a dead letter with the file and record position.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any, Mapping

from connectors.windows.record import WindowsRecord
from engine.events import parse_timestamp

#: Event children that are not payload: System is parsed separately, RenderingInfo only gives the message.
_NOT_PAYLOAD = frozenset({"System", "#attributes", "RenderingInfo", "EventData"})


class EvtxRecordError(ValueError):
    """A record this module cannot turn into a Windows event; the message names the key."""


def text_of(value: Any) -> Any:
    """``{"#attributes": ..., "#text": v}`` -> ``v``; anything else unchanged."""
    if type(value) is dict and "#text" in value:
        return value["#text"]
    return value


_NO_ATTRIBUTES: Mapping[str, Any] = {}


def _attributes(value: Any) -> Mapping[str, Any]:
    """``value["#attributes"]`` when that is a dict, else an empty mapping (``attribute`` for several names)."""
    if type(value) is dict:
        attrs = value.get("#attributes")
        if type(attrs) is dict:
            return attrs
    return _NO_ATTRIBUTES


def attribute(value: Any, name: str) -> Any:
    """``{"#attributes": {name: v}}`` -> ``v`` (None when absent or not that shape)."""
    return _attributes(value).get(name)


def as_int(value: Any, key: str | None = None) -> int | None:
    """A number Windows types as one; numeric strings (also ``0x..``) accepted. ``key`` set: required."""
    value = text_of(value)
    if type(value) is int:
        return value
    if type(value) is str:
        text = value.strip()
        try:
            return int(text, 16) if text[:2].lower() == "0x" else int(text)
        except ValueError:
            pass
    if key is not None:
        raise EvtxRecordError(f"System.{key}: not a number ({value!r})")
    return None


def _as_str(value: Any) -> str | None:
    value = text_of(value)
    if value is None or type(value) is dict or type(value) is list:
        return None
    return str(value)


def _unnamed_data(value: Any) -> Any:
    """The value(s) of unnamed ``<Data>`` elements: one scalar, or a list when several."""
    value = text_of(value)
    if type(value) is list:
        items = [text_of(item) for item in value]
        return [item for item in items if type(item) is not dict] if items else None
    if type(value) is dict:
        return None  # attributes only: an empty <Data/>
    return value


def _leaves(node: Mapping[str, Any], out: dict[str, Any]) -> None:
    """Leaf element names of a nested payload (UserData style); attributes are not elements."""
    for key, value in node.items():
        if key == "#attributes":
            continue
        if type(value) is dict:
            if "#text" in value:
                out.setdefault(key, value["#text"])
            else:
                _leaves(value, out)
        elif type(value) is list:
            if any(type(item) is dict for item in value):
                for item in value:
                    if type(item) is dict:
                        _leaves(item, out)
            else:
                out.setdefault(key, value)
        else:
            out.setdefault(key, value)


def event_data(event: Mapping[str, Any]) -> dict[str, Any]:
    """EventData + UserData (+ other payloads) of one ``Event`` as a flat ``name -> value`` mapping."""
    data: dict[str, Any] = {}
    payload = event.get("EventData")
    if type(payload) is dict:
        for key, value in payload.items():
            if key == "#attributes":
                continue
            if key == "Data":
                items = value if type(value) is list else [value]
                unnamed = []
                for item in items:
                    name = attribute(item, "Name")
                    if type(name) is str and name:
                        data.setdefault(name, text_of(item) if "#text" in item else None)
                    else:
                        found = _unnamed_data(item)
                        if type(found) is list:
                            unnamed.extend(found)
                        elif found is not None:
                            unnamed.append(found)
                if unnamed:
                    data["Data"] = unnamed[0] if len(unnamed) == 1 else unnamed
            elif type(value) is dict:
                if "#text" in value:
                    data[key] = value["#text"]
                else:
                    _leaves({key: value}, data)
            else:
                data[key] = value
    elif payload is not None:
        found = _unnamed_data(payload)
        if found is not None:
            data["Data"] = found
    for key, value in event.items():
        if key in _NOT_PAYLOAD:
            continue
        if type(value) is dict:
            _leaves(value, data)
        elif value is not None and type(value) is not list:
            data.setdefault(key, value)
    return data


def _message(event: Mapping[str, Any]) -> str | None:
    info = event.get("RenderingInfo")
    if type(info) is dict:
        message = _as_str(info.get("Message"))
        if message:
            return message
    return None


#: pyevtx-rs's SystemTime text, year 1000 and later (format_timestamp's f-string range).
_EVTX_TIME = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{6}Z\Z")


def _parsed_time(when: str) -> datetime:
    try:
        return parse_timestamp(when)
    except (ValueError, OverflowError) as exc:
        raise EvtxRecordError(f"System.TimeCreated.SystemTime: {exc}") from None


def record_from_evtx(doc: Any, header_time: str | None = None) -> WindowsRecord:
    """One ``json.loads(record["data"])`` -> a WindowsRecord. ``header_time`` (the record header's
    timestamp, pyevtx-rs ``record["timestamp"]``) is the time when System has no ``TimeCreated``."""
    if type(doc) is not dict or type(doc.get("Event")) is not dict:
        raise EvtxRecordError("Event: missing (not an EVTX event record)")
    event = doc["Event"]
    system = event.get("System")
    if type(system) is not dict:
        raise EvtxRecordError("Event.System: missing")
    event_id = as_int(system.get("EventID"), "EventID")
    computer = _as_str(system.get("Computer"))
    if not computer:
        raise EvtxRecordError("System.Computer: missing")
    when = attribute(system.get("TimeCreated"), "SystemTime") or header_time
    if type(when) is not str or not when:
        raise EvtxRecordError("System.TimeCreated.SystemTime: missing")
    when = when.removesuffix(" UTC")
    time: datetime | str
    if len(when) == 27 and _EVTX_TIME.match(when):
        # pyevtx-rs's own form (microseconds, Z): the canonical text is its first 23 characters + Z (the
        # milliseconds truncated, as format_timestamp does), once the date is checked to exist
        try:
            datetime.fromisoformat(when[:26])
            time = when[:23] + "Z"
        except ValueError:
            time = _parsed_time(when)  # raises the general path's error
    else:
        time = _parsed_time(when)
    get = system.get
    provider = _attributes(get("Provider"))
    execution = _attributes(get("Execution"))
    channel, record_id, level, task, opcode, keywords, version = (
        get("Channel"), get("EventRecordID"), get("Level"), get("Task"), get("Opcode"), get("Keywords"),
        get("Version"))
    name, guid = provider.get("Name"), provider.get("Guid")
    pid, tid = execution.get("ProcessID"), execution.get("ThreadID")
    sid = _attributes(get("Security")).get("UserID")
    # ``_as_str``/``as_int`` only where a value is not already a str/int: a dozen calls saved per record
    return WindowsRecord(
        channel=(channel if type(channel) is str else _as_str(channel)) or "",
        provider=(name if type(name) is str else _as_str(name)) or "",
        event_id=event_id,  # type: ignore[arg-type]  # as_int with a key never returns None
        record_id=record_id if type(record_id) is int else as_int(record_id),
        computer=computer,
        time=time,
        data=event_data(event),
        level=level if type(level) is int else as_int(level),
        task=task if type(task) is int else as_int(task),
        opcode=opcode if type(opcode) is int else as_int(opcode),
        keywords=keywords if type(keywords) is str else _as_str(keywords),
        version=version if type(version) is int else as_int(version),
        process_id=pid if type(pid) is int else as_int(pid),
        thread_id=tid if type(tid) is int else as_int(tid),
        user_sid=sid if type(sid) is str else _as_str(sid),
        provider_guid=guid if type(guid) is str else _as_str(guid),
        message=_message(event),
    )
