"""IHE ATNA audit messages (DICOM PS3.15 A.5 ``AuditMessage`` and its RFC 3881 ancestor) -> flat event.

The two dialects differ mainly in how coded values are spelled: DICOM writes ``csd-code`` +
``originalText``, RFC 3881 writes ``code`` + ``displayName`` (and may put ``AuditSourceID`` in a child
element). One reader handles both; ``ehr.atna.format`` records which one it saw.

Safety: ATNA XML arrives from the network, so it is parsed with ``defusedxml`` with DTDs forbidden outright
(no external entities, no entity-expansion bombs - a DOCTYPE is never legitimate in an audit message) and a
size limit checked *before* parsing. Every failure is an :class:`AtnaParseError` with a reason fit for a
dead letter; patient identifiers never appear in the reason.

Field names follow ``connectors/fhir_mapping.py`` so rules work on ATNA and FHIR AuditEvent alike; the
table is in ``docs/connectors/atna-syslog.md``.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
import xml.etree.ElementTree as ET
from datetime import datetime
from typing import Any, Iterable

import defusedxml
import defusedxml.ElementTree as SafeET

from connectors.fhir_mapping import ACTION_EVENT_TYPE
from engine.events import Event, normalise_timestamp

DATASET = "ehr.audit"
DEFAULT_MAX_BYTES = 1024 * 1024
#: DICOM "Emergency Override Started" (EventID or EventTypeCode) and the HL7 PurposeOfUse for it.
BREAK_THE_GLASS_EVENT = "110127"
BREAK_THE_GLASS_PURPOSES = frozenset({"BTG"})

#: ParticipantObjectTypeCodeRole (RFC 3881 5.5.2 / DICOM PS3.15 A.5.3.5), named like FHIR resource types.
OBJECT_ROLES = {
    "1": "Patient", "2": "Location", "3": "Report", "4": "Resource", "5": "MasterFile", "6": "User",
    "7": "List", "8": "Doctor", "9": "Subscriber", "10": "Guarantor", "11": "SecurityUser",
    "12": "SecurityGroup", "13": "SecurityResource", "14": "SecurityGranularity", "15": "Provider",
    "16": "DataDestination", "17": "DataRepository", "18": "Schedule", "19": "Customer", "20": "Job",
    "21": "JobStream", "22": "Table", "23": "RoutingCriteria", "24": "Query",
}
#: Same rule as connectors.fhir_mapping: a FHIR search URL names the resource type it queries.
_QUERY_RESOURCE = re.compile(r"/([A-Z][A-Za-z]+)(?:/_search)?/?(?:[?#]|$)")
_CANONICAL_TS = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z\Z")
_FRACTION = re.compile(r"(\.\d{6})\d+")
_WS = re.compile(rb"\s+")


class AtnaParseError(ValueError):
    """The payload is not a usable ATNA audit message. The message is the dead-letter reason."""


def _local(tag: Any) -> str:
    if not isinstance(tag, str):
        return ""  # comments / processing instructions
    return tag if tag[0] != "{" else tag.rsplit("}", 1)[-1]


def _children(element: ET.Element, name: str) -> Iterable[ET.Element]:
    return (child for child in element if _local(child.tag) == name)


def _child(element: ET.Element, name: str) -> ET.Element | None:
    return next(iter(_children(element, name)), None)


def _code(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return element.get("csd-code") or element.get("code") or None


def _display(element: ET.Element | None) -> str | None:
    if element is None:
        return None
    return element.get("displayName") or element.get("originalText") or None


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("true", "1")


def strip_identifier(value: str) -> str:
    """The bare id of a patient identifier: HL7 v2 CX ``id^^^AUTH&oid&ISO^PI`` -> ``id``; FHIR token
    ``system|value`` -> ``value``. The full form stays in ``ehr.patient.identifier``."""
    value = value.strip()
    if "^" in value:
        return value.split("^", 1)[0]
    if "|" in value:
        return value.rsplit("|", 1)[-1]
    return value


def decode_query(text: str) -> str:
    """ParticipantObjectQuery is base64 (xs:base64Binary); some senders put plain text there anyway."""
    raw = _WS.sub(b"", text.encode("utf-8", "replace"))
    try:
        decoded = base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError):
        return text.strip()
    return decoded.decode("utf-8", "replace")


def _timestamp(value: str | None) -> str:
    if not value:
        raise AtnaParseError("EventIdentification has no EventDateTime")
    if len(value) == 24 and _CANONICAL_TS.match(value):
        # Already canonical (most senders): a range check is enough, re-formatting costs 3x more.
        try:
            datetime.fromisoformat(value[:-1])
            return value
        except ValueError:
            raise AtnaParseError(f"EventDateTime is not a valid timestamp: {value!r}") from None
    try:
        return normalise_timestamp(_FRACTION.sub(r"\1", value.strip()))
    except (ValueError, OverflowError):
        raise AtnaParseError(f"EventDateTime is not an ISO 8601 timestamp: {value[:64]!r}") from None


def parse_xml(payload: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> ET.Element:
    """Parse untrusted XML: size-limited, no DTD, no entities, no external references."""
    size = len(payload.encode("utf-8", "surrogatepass") if isinstance(payload, str) else payload)
    if size > max_bytes:
        raise AtnaParseError(f"XML payload of {size} bytes exceeds the limit of {max_bytes}")
    try:
        return SafeET.fromstring(payload, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except defusedxml.DTDForbidden:
        raise AtnaParseError("XML with a DOCTYPE/DTD is refused (entity expansion and XXE protection)") from None
    except defusedxml.DefusedXmlException as exc:
        raise AtnaParseError(f"unsafe XML refused: {type(exc).__name__}") from None
    except ET.ParseError as exc:
        raise AtnaParseError(f"not well-formed XML: {exc}") from None
    except (ValueError, TypeError, UnicodeError) as exc:
        raise AtnaParseError(f"unreadable XML: {type(exc).__name__}") from None


def parse_atna(payload: bytes | str, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Event:
    """One ATNA ``AuditMessage`` -> event fields (everything except ``event.id`` and syslog header fields,
    which the transport adds). ``event.original`` is the payload text."""
    root = parse_xml(payload, max_bytes=max_bytes)
    if _local(root.tag) != "AuditMessage":
        raise AtnaParseError(f"root element is <{_local(root.tag)[:64]}>, not <AuditMessage>")
    ident = _child(root, "EventIdentification")
    if ident is None:
        raise AtnaParseError("AuditMessage has no EventIdentification")
    event_id_el = _child(ident, "EventID")
    if event_id_el is None or not _code(event_id_el):
        raise AtnaParseError("EventIdentification has no coded EventID")

    text = payload if isinstance(payload, str) else payload.decode("utf-8", "replace")
    event: Event = {
        "@timestamp": _timestamp(ident.get("EventDateTime")),
        "event.dataset": DATASET,
        "event.kind": "event",
        "event.original": text,
        "ehr.atna.format": "dicom" if event_id_el.get("csd-code") else "rfc3881",
    }
    _event_identification(event, ident, event_id_el)
    _participants(event, root)
    _audit_source(event, root)
    _objects(event, root)
    return event


def _event_identification(event: Event, ident: ET.Element, event_id_el: ET.Element) -> None:
    event_code = _code(event_id_el)
    event["event.code"] = event_code
    type_codes = list(_children(ident, "EventTypeCode"))
    type_code_values = [c for c in (_code(t) for t in type_codes) if c]
    if type_code_values:
        event["ehr.atna.event_type_codes"] = type_code_values
    action = next((d for d in (_display(t) for t in type_codes) if d), None) or _display(event_id_el)
    if action:
        event["event.action"] = action.lower()
    action_code = (ident.get("EventActionCode") or "").strip()
    if action_code:
        event["ehr.action"] = action_code
    event["event.type"] = list(ACTION_EVENT_TYPE.get(action_code, ["info"]))
    outcome = ident.get("EventOutcomeIndicator")
    if outcome is None or not outcome.strip():
        event["event.outcome"] = "unknown"
    else:
        event["ehr.outcome_code"] = outcome.strip()
        event["event.outcome"] = "success" if outcome.strip() == "0" else "failure"
    description = _child(ident, "EventOutcomeDescription")
    if description is not None and (description.text or "").strip():
        event["ehr.outcome_description"] = description.text.strip()  # type: ignore[union-attr]
    purposes = [c for c in (_code(p) for p in _children(ident, "PurposeOfUse")) if c]
    if purposes:
        event["ehr.purpose_of_use"] = purposes
    event["ehr.break_the_glass"] = (
        event_code == BREAK_THE_GLASS_EVENT
        or BREAK_THE_GLASS_EVENT in type_code_values
        or any(p.upper() in BREAK_THE_GLASS_PURPOSES for p in purposes)
    )
    event["ehr.emergency"] = any(p.upper() == "ETREAT" for p in purposes)


def _participants(event: Event, root: ET.Element) -> None:
    requestor = next((p for p in _children(root, "ActiveParticipant") if _truthy(p.get("UserIsRequestor"))), None)
    if requestor is None:
        return  # e.g. application start/stop (110100) may name no requesting user
    user_id = (requestor.get("UserID") or "").strip()
    alt = (requestor.get("AlternativeUserID") or "").strip()
    full_name = (requestor.get("UserName") or "").strip()
    if user_id:
        event["user.id"] = user_id
    if alt or user_id:
        event["user.name"] = alt or user_id
    if full_name:
        event["user.full_name"] = full_name
    roles = [c for c in (_code(r) for r in _children(requestor, "RoleIDCode")) if c]
    if roles:
        event["user.roles"] = roles
    address = (requestor.get("NetworkAccessPointID") or "").strip()
    if address:
        event["source.address"] = address
        kind = (requestor.get("NetworkAccessPointTypeCode") or "").strip()
        if kind == "2":
            try:
                event["source.ip"] = str(ipaddress.ip_address(address))
            except ValueError:
                pass
        elif kind == "1":
            event["source.domain"] = address


def _audit_source(event: Event, root: ET.Element) -> None:
    source = _child(root, "AuditSourceIdentification")
    if source is None:
        return
    source_id = source.get("AuditSourceID")
    if not source_id:
        child = _child(source, "AuditSourceID")
        source_id = (child.text or "") if child is not None else ""
    if source_id.strip():
        event["observer.name"] = source_id.strip()
    source_type = _code(_child(source, "AuditSourceTypeCode"))
    if source_type:
        event["observer.type"] = source_type
    site = source.get("AuditEnterpriseSiteID")
    if site is None:
        child = _child(source, "AuditEnterpriseSiteID")
        site = child.text if child is not None else None
    if site and site.strip():
        event["ehr.atna.enterprise_site_id"] = site.strip()


def _objects(event: Event, root: ET.Element) -> None:
    """Patient, query and resource type from ParticipantObjectIdentification.

    ``ehr.resource.type`` is the first object that is neither the patient nor the query itself (named by
    its role, e.g. ``Report``); else the resource a FHIR search URL in the query names; else ``Patient``
    when a patient is involved - the same precedence as the FHIR mapping.
    """
    patients: list[str] = []
    resource_type: str | None = None
    query: str | None = None
    for obj in _children(root, "ParticipantObjectIdentification"):
        role = (obj.get("ParticipantObjectTypeCodeRole") or "").strip()
        object_id = (obj.get("ParticipantObjectID") or "").strip()
        if role == "1":
            if object_id:
                patients.append(object_id)
        elif role != "24" and resource_type is None and role in OBJECT_ROLES:
            resource_type = OBJECT_ROLES[role]
        query_el = _child(obj, "ParticipantObjectQuery")
        if query is None and query_el is not None and (query_el.text or "").strip():
            query = decode_query(query_el.text or "")
    if patients:
        event["ehr.patient.id"] = strip_identifier(patients[0])
        event["ehr.patient.identifier"] = patients[0]
        if len(patients) > 1:
            event["ehr.patient.ids"] = [strip_identifier(p) for p in patients]
    if query is not None:
        event["ehr.query"] = query
        if resource_type is None:
            match = _QUERY_RESOURCE.search(query.split("\n", 1)[0].split(" HTTP/", 1)[0])
            if match:
                resource_type = match.group(1)
    if resource_type is None and patients:
        resource_type = "Patient"
    if resource_type:
        event["ehr.resource.type"] = resource_type
