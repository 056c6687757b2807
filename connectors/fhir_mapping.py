"""FHIR AuditEvent (R4 and R5) -> one flat Wardwatch event.

This mapping is a contract: analysts write Sigma rules (``product: ehr``) and fixtures against the field
names produced here, and ``docs/schema.md`` documents each one. Every FHIR source (file, REST, bulk export)
uses this one function so an EHR audit record means the same thing whichever way it arrived.

Design choices, and why:

* Lenient on everything except the two things an event cannot exist without: ``resourceType`` must be
  ``AuditEvent`` and ``recorded`` must be a valid instant. Real servers emit partial AuditEvents; a missing
  agent network address must not cost the whole record. Elements of the wrong JSON type are ignored.
* The *requesting user* is the agent with ``requestor: true`` (else the first agent). Per IHE BALP the user
  agent carries no network address - the client application agent does - so ``source.*`` falls back to
  the first other agent whose address is an IP address or a host name (never a URI: that is the server).
* R5 renamed several elements (type->category, subtype->code, outcome -> {code, detail},
  purposeOfEvent->authorization, network{address,type} -> networkString/networkUri/networkReference) and
  added ``patient``. Both versions produce the same fields; ``ehr.fhir.version`` says which it was.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import re
from typing import Any, Iterable, Iterator, Mapping
from urllib.parse import urlsplit

from engine.events import Event, make_event_id, normalise_timestamp

DATASET = "ehr.audit"

#: ECS event.type per AuditEvent.action (C/R/U/D/E).
ACTION_EVENT_TYPE: dict[str, list[str]] = {
    "C": ["creation"],
    "R": ["access"],
    "U": ["change"],
    "D": ["deletion"],
    "E": ["start"],
}
DICOM_EMERGENCY_OVERRIDE_STARTED = "110127"
PATIENT_ROLE = "1"  # http://terminology.hl7.org/CodeSystem/object-role#1 "Patient"
X_REQUEST_ID_TYPE = "XrequestId"  # IHE BALP BasicAuditEntityType#XrequestId
_R4_ONLY = ("type", "subtype", "purposeOfEvent", "outcomeDesc")
_R5_ONLY = ("category", "code", "authorization", "patient", "severity", "occurredDateTime", "occurredPeriod",
            "basedOn", "encounter")
_ID_OF_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?/?$")
_QUERY_RESOURCE = re.compile(r"/([A-Z][A-Za-z]+)(?:/_search)?/?(?:[?#]|$)")


class MappingError(ValueError):
    """The resource cannot become an event. ``field`` is the JSON path at fault (e.g. ``"recorded"``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- small, total helpers: any JSON in, never an exception out ------------------------------------------

# Checks are against ``dict``, not ``typing.Mapping``: parsed JSON is always a dict, and an ABC isinstance
# check costs ~1 µs each — it was most of the mapping's time.
def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    if isinstance(value, list):
        return value
    return [] if value is None else [value]


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _codings(value: Any) -> Iterator[Mapping[str, Any]]:
    """Codings of a Coding, a CodeableConcept, or a list of either (R4 and R5 use all of these)."""
    for item in _list(value):
        item = _dict(item)
        if "coding" in item:
            for coding in _list(item.get("coding")):
                if isinstance(coding, dict):
                    yield coding
        elif item:
            yield item


def _codes(value: Any) -> list[str]:
    return [c for c in (_str(coding.get("code")) for coding in _codings(value)) if c]


def _first_code(value: Any) -> str | None:
    codes = _codes(value)
    return codes[0] if codes else None


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def reference_parts(reference: str) -> tuple[str | None, str]:
    """``"Patient/123"`` or ``"https://ehr/fhir/Patient/123/_history/2"`` -> ("Patient", "123").
    Anything else (``urn:uuid:...``, ``#contained``) -> (None, the reference unchanged)."""
    match = _ID_OF_REFERENCE.search(reference)
    if match:
        return match.group(1), match.group(2)
    return None, reference


def _reference(value: Any) -> str | None:
    return _str(_dict(value).get("reference"))


def _ip(address: str) -> str | None:
    """The canonical text of an IP address (IPv6 compressed), or None. Accepts ``[v6]`` and ``v4:port``."""
    text = address.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1 and "." in text:
        text = text.split(":", 1)[0]
    try:
        return str(ipaddress.ip_address(text))
    except ValueError:
        return None


def fhir_version(resource: Mapping[str, Any]) -> str:
    """"R5" or "R4", from which renamed elements are present (R4 when nothing tells: it is more common)."""
    r5 = sum(1 for key in _R5_ONLY if key in resource)
    r4 = sum(1 for key in _R4_ONLY if key in resource)
    if isinstance(resource.get("outcome"), dict):
        r5 += 1
    elif isinstance(resource.get("outcome"), str):
        r4 += 1
    for agent in _list(resource.get("agent")):
        agent = _dict(agent)
        if any(k in agent for k in ("networkString", "networkUri", "networkReference", "authorization")):
            r5 += 1
        if "network" in agent or "purposeOfUse" in agent or "altId" in agent or "name" in agent:
            r4 += 1
    return "R5" if r5 > r4 else "R4"


# --- agents --------------------------------------------------------------------------------------------

def _agent_network(agent: Mapping[str, Any], version: str) -> tuple[str | None, str | None]:
    """(address, R4 network type code) of an agent, from R4 ``network`` or R5 ``network[x]``."""
    network = _dict(agent.get("network"))
    address = _str(network.get("address"))
    if address:
        return address, _str(network.get("type"))
    if _str(agent.get("networkString")):
        return agent["networkString"], None
    uri = _str(agent.get("networkUri"))
    if uri:
        try:
            host = urlsplit(uri).hostname
        except ValueError:
            host = None
        return (host or uri), ("5" if not host else None)
    ref = _dict(agent.get("networkReference"))
    display = _str(ref.get("display"))
    if display:
        return display, None
    return None, None


def _source_address(agents: list[Mapping[str, Any]], requestor: Mapping[str, Any] | None, version: str
                    ) -> tuple[str | None, str | None]:
    """(source.address, source.ip): the requestor's own address, else the first agent with an IP or host.

    A network type "5" (URI) is the FHIR server's own endpoint in BALP, never the source of a request.
    """
    ordered = ([requestor] if requestor is not None else []) + [a for a in agents if a is not requestor]
    for agent in ordered:
        address, net_type = _agent_network(agent, version)
        if not address or net_type == "5" or "://" in address:
            continue
        ip = _ip(address)
        if agent is requestor or ip is not None or net_type in ("1", "2"):
            return address, ip
    return None, None


def _map_agent(event: Event, resource: Mapping[str, Any], version: str) -> list[str]:
    """user.*, source.*; returns agent-level purpose-of-use codes."""
    agents = [a for a in _list(resource.get("agent")) if isinstance(a, dict)]
    purposes: list[str] = []
    for agent in agents:
        purposes += _codes(agent.get("purposeOfUse")) + _codes(agent.get("authorization"))
    requestor = next((a for a in agents if a.get("requestor") is True), agents[0] if agents else None)
    if requestor is not None:
        who = _dict(requestor.get("who"))
        user_id = _str(_dict(who.get("identifier")).get("value"))
        if user_id is None and _reference(who):
            user_id = reference_parts(_reference(who) or "")[1]
        user_name = _str(requestor.get("altId")) or user_id
        full_name = _str(who.get("display")) or _str(requestor.get("name"))
        roles = _dedupe(_codes(requestor.get("type")) + _codes(requestor.get("role")))
        if user_id:
            event["user.id"] = user_id
        if user_name:
            event["user.name"] = user_name
        if full_name:
            event["user.full_name"] = full_name
        if roles:
            event["user.roles"] = roles
    address, ip = _source_address(agents, requestor, version)
    if address:
        event["source.address"] = address
    if ip:
        event["source.ip"] = ip
    return purposes


# --- entities ------------------------------------------------------------------------------------------

def _is_request_id_entity(entity: Mapping[str, Any]) -> str | None:
    """The X-Request-Id value when this entity carries one (BALP entity type, or a detail named so)."""
    if X_REQUEST_ID_TYPE in _codes(entity.get("type")) or X_REQUEST_ID_TYPE in _codes(entity.get("role")):
        value = _str(_dict(_dict(entity.get("what")).get("identifier")).get("value"))
        if value:
            return value
    for detail in _list(entity.get("detail")):
        detail = _dict(detail)
        dtype = detail.get("type")
        names = [dtype] if isinstance(dtype, str) else _codes(dtype) + [_str(_dict(dtype).get("text")) or ""]
        if any(isinstance(n, str) and n.lower() == "x-request-id" for n in names):
            value = _str(detail.get("valueString"))
            if value is None and _str(detail.get("valueBase64Binary")):
                value = _b64_text(detail["valueBase64Binary"])
            if value:
                return value
    return None


def _b64_text(value: str) -> str:
    """Decode base64 (padding optional, whitespace ignored); the text itself when it is not base64, so
    a malformed query is still visible to rules instead of being dropped."""
    compact = "".join(value.split())
    try:
        return base64.b64decode(compact + "=" * (-len(compact) % 4), validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        return value


def _entity_resource_type(entity: Mapping[str, Any]) -> str | None:
    ref = _reference(entity.get("what"))
    if ref:
        rtype, _ = reference_parts(ref)
        if rtype:
            return rtype
    for coding in _codings(entity.get("type")):
        code = _str(coding.get("code"))
        if code and (coding.get("system") == "http://hl7.org/fhir/resource-types" or code[:1].isupper()) \
                and code != X_REQUEST_ID_TYPE:
            return code
    return None


def _map_entities(event: Event, resource: Mapping[str, Any], version: str) -> None:
    entities = [e for e in _list(resource.get("entity")) if isinstance(e, dict)]
    patient_entity: Mapping[str, Any] | None = None
    patient_ref = _reference(resource.get("patient"))  # R5 only, but harmless to honour in R4
    patient_id: str | None = reference_parts(patient_ref)[1] if patient_ref else None
    for entity in entities:
        if PATIENT_ROLE in _codes(entity.get("role")):
            patient_entity = entity
            break
    if patient_entity is None:
        patient_entity = next(
            (e for e in entities if reference_parts(_reference(e.get("what")) or "")[0] == "Patient"), None
        )
    if patient_entity is not None and patient_ref is None:
        what = _dict(patient_entity.get("what"))
        patient_ref = _reference(what)
        if patient_ref:
            patient_id = reference_parts(patient_ref)[1]
        else:
            patient_id = _str(_dict(what.get("identifier")).get("value"))
    if patient_id:
        event["ehr.patient.id"] = patient_id
    if patient_ref:
        event["ehr.patient.reference"] = patient_ref

    labels: list[str] = []
    resource_type: str | None = None
    query_type: str | None = None
    for entity in entities:
        labels += _codes(entity.get("securityLabel"))
        request_id = _is_request_id_entity(entity)
        if request_id is not None:
            event.setdefault("ehr.request_id", request_id)
            continue
        query = _str(entity.get("query"))
        description = _str(entity.get("description"))
        is_query_role = "24" in _codes(entity.get("role"))  # object-role#24 "Query"
        if query is not None or (description is not None and is_query_role):
            # The raw request (base64) is authoritative; BALP's cleaned ``description`` is the fallback.
            text = _b64_text(query) if query is not None else description or ""
            event.setdefault("ehr.query", text)
            match = _QUERY_RESOURCE.search(text.split("\n", 1)[0].split(" HTTP/", 1)[0])
            if match and query_type is None:
                query_type = match.group(1)
        ref = _reference(entity.get("what"))
        rtype = _entity_resource_type(entity)
        if rtype == "DocumentReference" and ref and "ehr.document.id" not in event:
            event["ehr.document.id"] = reference_parts(ref)[1]
        if entity is patient_entity:
            continue
        if resource_type is None and rtype:
            resource_type = rtype
    resource_type = resource_type or query_type or ("Patient" if patient_entity is not None else None)
    if resource_type:
        event["ehr.resource.type"] = resource_type
    if labels:
        event["ehr.security_labels"] = _dedupe(labels)


# --- the mapping ---------------------------------------------------------------------------------------

def auditevent_to_event(resource: Mapping[str, Any], *, source_identity: str, raw: bytes) -> Event:
    """Map one AuditEvent resource (R4 or R5, parsed JSON) to a flat event. ``raw`` is its JSON text
    (``event.original``; the id input when the resource has no ``id``). Raises ``MappingError``."""
    if not isinstance(resource, Mapping):
        raise MappingError("$", f"not a JSON object (got {type(resource).__name__})")
    rtype = resource.get("resourceType")
    if rtype != "AuditEvent":
        raise MappingError("resourceType", f"expected 'AuditEvent', got {rtype!r}")
    recorded = resource.get("recorded")
    if recorded is None:
        raise MappingError("recorded", "missing")
    if not isinstance(recorded, str):
        raise MappingError("recorded", f"not an instant: {recorded!r}")
    try:
        timestamp = normalise_timestamp(recorded)
    except (ValueError, OverflowError, OSError) as exc:
        raise MappingError("recorded", str(exc)) from None

    version = fhir_version(resource)
    audit_id = _str(resource.get("id"))
    event: Event = {
        "@timestamp": timestamp,
        "event.dataset": DATASET,
        "event.kind": "event",
        "event.id": make_event_id(source_identity, "AuditEvent/" + audit_id if audit_id else raw),
        "event.original": raw.decode("utf-8", "replace"),
        "ehr.fhir.version": version,
    }
    if audit_id:
        event["ehr.audit.id"] = audit_id

    # What happened.
    if version == "R5":
        event_code = _first_code(_list(resource.get("category"))[:1])
        subtypes = _codes(resource.get("code"))
        type_codings = list(_codings(resource.get("category")))
    else:
        event_code = _first_code(resource.get("type"))
        subtypes = _codes(resource.get("subtype"))
        type_codings = list(_codings(resource.get("type")))
    if event_code:
        event["event.code"] = event_code
    action_name = subtypes[0] if subtypes else None
    if action_name is None and type_codings:
        action_name = _str(type_codings[0].get("display")) or _str(type_codings[0].get("code"))
    if action_name:
        event["event.action"] = action_name.lower()
    action = _str(resource.get("action"))
    if action:
        event["ehr.action"] = action
    event["event.type"] = list(ACTION_EVENT_TYPE.get(action or "", ["info"]))

    # Outcome: R4 a code string, R5 {code: Coding, detail}.
    outcome = resource.get("outcome")
    outcome_code = _str(outcome) if version == "R4" or isinstance(outcome, str) else \
        _str(_dict(_dict(outcome).get("code")).get("code"))
    if outcome_code is None:
        event["event.outcome"] = "unknown"
    else:
        event["ehr.outcome_code"] = outcome_code
        event["event.outcome"] = "success" if outcome_code == "0" else "failure"

    agent_purposes = _map_agent(event, resource, version)
    _map_entities(event, resource, version)

    purposes = _dedupe(
        _codes(resource.get("purposeOfEvent")) + _codes(resource.get("authorization")) + agent_purposes
    )
    if purposes:
        event["ehr.purpose_of_use"] = purposes
    all_type_codes = set(_codes(resource.get("type")) + _codes(resource.get("subtype"))
                         + _codes(resource.get("category")) + _codes(resource.get("code")))
    event["ehr.break_the_glass"] = "BTG" in purposes or DICOM_EMERGENCY_OVERRIDE_STARTED in all_type_codes
    event["ehr.emergency"] = "ETREAT" in purposes

    source = _dict(resource.get("source"))
    observer = _dict(source.get("observer"))
    observer_name = (_str(observer.get("display")) or _str(_dict(observer.get("identifier")).get("value"))
                     or _reference(observer))
    if observer_name is None and isinstance(source.get("site"), str):
        observer_name = _str(source.get("site"))
    if observer_name:
        event["observer.name"] = observer_name
    observer_type = _first_code(source.get("type"))
    if observer_type:
        event["observer.type"] = observer_type
    return event
