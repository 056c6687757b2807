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

from engine.events import Event, normalise_timestamp
from engine.identity import fhir_id, record_id

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
_R4_KEYS, _R5_KEYS = frozenset(_R4_ONLY), frozenset(_R5_ONLY)
_ID_OF_REFERENCE = re.compile(r"(?:^|/)([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})(?:/_history/[^/]*)?/?$")
#: The common ``Type/id`` form: where it matches, ``_ID_OF_REFERENCE.search`` finds the same two groups (at
#: position 0), just slower (it tries every start position).
_SIMPLE_REFERENCE = re.compile(r"([A-Z][A-Za-z]+)/([A-Za-z0-9\-.]{1,64})")
_QUERY_RESOURCE = re.compile(r"/([A-Z][A-Za-z]+)(?:/_search)?/?(?:[?#]|$)")


class MappingError(ValueError):
    """The resource cannot become an event. ``field`` is the JSON path at fault (e.g. ``"recorded"``)."""

    def __init__(self, field: str, message: str):
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


# --- small, total helpers: any JSON in, never an exception out ------------------------------------------
#
# Speed notes (ingest target: 25k events/s/core, parse to committed row; the mapping was most of the cost):
# * checks are against ``dict``/``list``, not ``typing.Mapping``: parsed JSON is always plain dicts and lists,
#   and an ABC isinstance check costs ~1 µs each;
# * ``_codes`` walks a Coding / CodeableConcept / list of either in one loop (no generators), and each
#   element's codes are computed once per resource, not once per question asked about them;
# * agents and entities are each walked once; the canonical ``recorded`` form skips re-formatting
#   (``engine.events.normalise_timestamp`` fast path); IP addresses seen before come from a small cache.
# ``tests/test_connector_fhir_golden.py`` pins the output on the fixture and
# ``bench/profile_mapping_equivalence.py`` compares against an older copy on mutated resources.

_EMPTY: Mapping[str, Any] = {}  # read-only stand-in for a missing object; never written to


def _dict(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, dict) else _EMPTY


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
    """The non-empty ``code`` strings of ``_codings(value)``, in order (one loop, no generators)."""
    if isinstance(value, list):
        items = value
    elif isinstance(value, dict):
        items = (value,)
    else:
        return []  # None, or a scalar: no codings
    out: list[str] = []
    for item in items:
        if not isinstance(item, dict):
            continue
        if "coding" in item:
            coding = item["coding"]
            if isinstance(coding, list):
                for one in coding:
                    if isinstance(one, dict):
                        code = one.get("code")
                        if isinstance(code, str) and code:
                            out.append(code)
            elif isinstance(coding, dict):
                code = coding.get("code")
                if isinstance(code, str) and code:
                    out.append(code)
        else:
            code = item.get("code")
            if isinstance(code, str) and code:
                out.append(code)
    return out


def _first_code(value: Any) -> str | None:
    codes = _codes(value)
    return codes[0] if codes else None


def _dedupe(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def reference_parts(reference: str) -> tuple[str | None, str]:
    """``"Patient/123"`` or ``"https://ehr/fhir/Patient/123/_history/2"`` -> ("Patient", "123").
    Anything else (``urn:uuid:...``, ``#contained``) -> (None, the reference unchanged)."""
    match = _SIMPLE_REFERENCE.fullmatch(reference) or _ID_OF_REFERENCE.search(reference)
    if match:
        return match.group(1), match.group(2)
    return None, reference


def _reference(value: Any) -> str | None:
    if isinstance(value, dict):
        ref = value.get("reference")
        if isinstance(ref, str) and ref:
            return ref
    return None


_IP_CACHE: dict[str, str | None] = {}
_IP_CACHE_MAX = 8192


def _ip(address: str) -> str | None:
    """The canonical text of an IP address (IPv6 compressed), or None. Accepts ``[v6]`` and ``v4:port``.

    Cached: a hospital has a few thousand workstations, and ``ipaddress`` parsing was ~10% of the mapping."""
    try:
        return _IP_CACHE[address]
    except KeyError:
        pass
    text = address.strip()
    if text.startswith("[") and "]" in text:
        text = text[1 : text.index("]")]
    elif text.count(":") == 1 and "." in text:
        text = text.split(":", 1)[0]
    try:
        ip: str | None = str(ipaddress.ip_address(text))
    except ValueError:
        ip = None
    if len(_IP_CACHE) >= _IP_CACHE_MAX:
        _IP_CACHE.clear()
    _IP_CACHE[address] = ip
    return ip


def fhir_version(resource: Mapping[str, Any]) -> str:
    """"R5" or "R4", from which renamed elements are present (R4 when nothing tells: it is more common)."""
    keys = resource.keys()  # a set intersection counts the renamed elements present, in C
    r5 = len(keys & _R5_KEYS)
    r4 = len(keys & _R4_KEYS)
    outcome = resource.get("outcome")
    if isinstance(outcome, dict):
        r5 += 1
    elif isinstance(outcome, str):
        r4 += 1
    agents = resource.get("agent")
    for agent in (agents if isinstance(agents, list) else _list(agents)):
        if not isinstance(agent, dict):
            continue
        if "networkString" in agent or "networkUri" in agent or "networkReference" in agent \
                or "authorization" in agent:
            r5 += 1
        if "network" in agent or "purposeOfUse" in agent or "altId" in agent or "name" in agent:
            r4 += 1
    return "R5" if r5 > r4 else "R4"


# --- agents --------------------------------------------------------------------------------------------

def _agent_network(agent: Mapping[str, Any], version: str) -> tuple[str | None, str | None]:
    """(address, R4 network type code) of an agent, from R4 ``network`` or R5 ``network[x]``."""
    network = agent.get("network")
    if isinstance(network, dict):
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
    if requestor is not None:
        address, net_type = _agent_network(requestor, version)
        if address and net_type != "5" and "://" not in address:
            return address, _ip(address)
    for agent in agents:
        if agent is requestor:
            continue
        address, net_type = _agent_network(agent, version)
        if not address or net_type == "5" or "://" in address:
            continue
        ip = _ip(address)
        if ip is not None or net_type in ("1", "2"):
            return address, ip
    return None, None


def _map_agent(event: Event, resource: Mapping[str, Any], version: str) -> list[str]:
    """user.*, source.*; returns agent-level purpose-of-use codes."""
    value = resource.get("agent")
    agents: list[Mapping[str, Any]] = []
    purposes: list[str] = []
    requestor: Mapping[str, Any] | None = None
    for agent in (value if isinstance(value, list) else _list(value)):
        if not isinstance(agent, dict):
            continue
        agents.append(agent)
        value = agent.get("purposeOfUse")
        if value is not None:
            purposes += _codes(value)
        value = agent.get("authorization")
        if value is not None:
            purposes += _codes(value)
        if requestor is None and agent.get("requestor") is True:
            requestor = agent
    if requestor is None and agents:
        requestor = agents[0]
    if requestor is not None:
        who = requestor.get("who")
        if not isinstance(who, dict):
            who = _EMPTY
        identifier = who.get("identifier")
        user_id = identifier.get("value") if isinstance(identifier, dict) else None
        if not isinstance(user_id, str) or not user_id:
            user_id = None
            who_ref = _reference(who)
            if who_ref:
                user_id = reference_parts(who_ref)[1]
        user_name = _str(requestor.get("altId")) or user_id
        full_name = _str(who.get("display")) or _str(requestor.get("name"))
        roles = _codes(requestor.get("type"))
        value = requestor.get("role")
        if value is not None:
            roles += _codes(value)
        if len(roles) > 1:
            roles = _dedupe(roles)
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

def _is_request_id_entity(entity: Mapping[str, Any], type_codes: list[str] | None = None,
                          role_codes: list[str] | None = None) -> str | None:
    """The X-Request-Id value when this entity carries one (BALP entity type, or a detail named so).
    ``type_codes``/``role_codes``: the entity's codes when the caller already has them."""
    if type_codes is None:
        type_codes = _codes(entity.get("type"))
    if role_codes is None:
        role_codes = _codes(entity.get("role"))
    if X_REQUEST_ID_TYPE in type_codes or X_REQUEST_ID_TYPE in role_codes:
        value = _str(_dict(_dict(entity.get("what")).get("identifier")).get("value"))
        if value:
            return value
    details = entity.get("detail")
    if details is None:
        return None
    for detail in _list(details):
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


def _resource_type_code(value: Any) -> str | None:
    """A resource-type code among an entity's ``type`` codings (not the BALP X-Request-Id type)."""
    if value is None:
        return None
    for coding in _codings(value):
        code = _str(coding.get("code"))
        if code and (coding.get("system") == "http://hl7.org/fhir/resource-types" or code[:1].isupper()) \
                and code != X_REQUEST_ID_TYPE:
            return code
    return None


def _map_entities(event: Event, resource: Mapping[str, Any], version: str) -> None:
    value = resource.get("entity")
    # Per entity, once: its what.reference, the (type, id) parsed from it, its role codes.
    entities: list[Mapping[str, Any]] = []
    refs: list[str | None] = []
    parts: list[tuple[str | None, str] | None] = []
    roles: list[list[str]] = []
    patient_index = -1
    for entity in (value if isinstance(value, list) else _list(value)):
        if not isinstance(entity, dict):
            continue
        index = len(entities)
        entities.append(entity)
        ref = _reference(entity.get("what"))
        refs.append(ref)
        parts.append(reference_parts(ref) if ref else None)
        role = entity.get("role")
        role_codes = _codes(role) if role is not None else []
        roles.append(role_codes)
        if patient_index < 0 and PATIENT_ROLE in role_codes:
            patient_index = index
    if patient_index < 0:
        for index, ref_parts in enumerate(parts):
            if ref_parts is not None and ref_parts[0] == "Patient":
                patient_index = index
                break
    patient_entity = entities[patient_index] if patient_index >= 0 else None

    value = resource.get("patient")  # R5 only, but harmless to honour in R4
    patient_ref = _reference(value) if value is not None else None
    patient_id: str | None = reference_parts(patient_ref)[1] if patient_ref else None
    if patient_entity is not None and patient_ref is None:
        patient_ref = refs[patient_index]
        if patient_ref:
            patient_id = parts[patient_index][1]  # type: ignore[index]
        else:
            what = _dict(patient_entity.get("what"))
            patient_id = _str(_dict(what.get("identifier")).get("value"))
    if patient_id:
        event["ehr.patient.id"] = patient_id
    if patient_ref:
        event["ehr.patient.reference"] = patient_ref

    labels: list[str] = []
    resource_type: str | None = None
    query_type: str | None = None
    for index, entity in enumerate(entities):
        value = entity.get("securityLabel")
        if value is not None:
            labels += _codes(value)
        role_codes = roles[index]
        etype = entity.get("type")
        type_codes = _codes(etype) if etype is not None else []
        if X_REQUEST_ID_TYPE in type_codes or X_REQUEST_ID_TYPE in role_codes or "detail" in entity:
            request_id = _is_request_id_entity(entity, type_codes, role_codes)
            if request_id is not None:
                event.setdefault("ehr.request_id", request_id)
                continue
        query = _str(entity.get("query"))
        description = _str(entity.get("description"))
        if query is not None or (description is not None and "24" in role_codes):  # object-role#24 "Query"
            # The raw request (base64) is authoritative; BALP's cleaned ``description`` is the fallback.
            text = _b64_text(query) if query is not None else description or ""
            event.setdefault("ehr.query", text)
            match = _QUERY_RESOURCE.search(text.split("\n", 1)[0].split(" HTTP/", 1)[0])
            if match and query_type is None:
                query_type = match.group(1)
        ref = refs[index]
        ref_parts = parts[index]
        rtype = ref_parts[0] if ref_parts is not None and ref_parts[0] else _resource_type_code(etype)
        if rtype == "DocumentReference" and ref and "ehr.document.id" not in event:
            event["ehr.document.id"] = ref_parts[1]  # type: ignore[index]
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

def auditevent_to_event(resource: Mapping[str, Any], *, raw: bytes, server: str = "",
                        position: str = "") -> Event:
    """Map one AuditEvent resource (R4 or R5, parsed JSON) to a flat event. Raises ``MappingError``.

    ``raw`` is its JSON text (``event.original``). ``event.id`` is the AuditEvent's own identity: ``server``
    (the FHIR base URL it was read from; ``""`` for files, which name no server) + its ``id``. A resource
    without an ``id`` is known only by ``raw`` + ``position`` (where it sits in its stream, e.g. ``line:3``).
    """
    if not isinstance(resource, dict) and not isinstance(resource, Mapping):
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
        "event.id": fhir_id(server, "AuditEvent", audit_id) if audit_id else record_id(raw, position),
        "event.original": raw.decode("utf-8", "replace"),
        "ehr.fhir.version": version,
    }
    if audit_id:
        event["ehr.audit.id"] = audit_id

    # What happened. Each element's codes once: they answer event.code, event.action and break-the-glass.
    get = resource.get
    type_value, subtype_value = get("type"), get("subtype")
    category_value, code_value = get("category"), get("code")
    # (an absent element - R5's in an R4 resource and vice versa - skips the call: ``_codes(None)`` is [])
    type_codes = _codes(type_value) if type_value is not None else []
    subtype_codes = _codes(subtype_value) if subtype_value is not None else []
    category_codes = _codes(category_value) if category_value is not None else []
    code_codes = _codes(code_value) if code_value is not None else []
    if version == "R5":
        event_code = _first_code(_list(category_value)[:1])
        subtypes = code_codes
        kind_value = category_value
    else:
        event_code = type_codes[0] if type_codes else None
        subtypes = subtype_codes
        kind_value = type_value
    if event_code:
        event["event.code"] = event_code
    action_name = subtypes[0] if subtypes else None
    if action_name is None:
        first_coding = next(_codings(kind_value), None)
        if first_coding is not None:
            action_name = _str(first_coding.get("display")) or _str(first_coding.get("code"))
    if action_name:
        event["event.action"] = action_name.lower()
    action = _str(get("action"))
    if action:
        event["ehr.action"] = action
    event["event.type"] = list(ACTION_EVENT_TYPE.get(action or "", ["info"]))

    # Outcome: R4 a code string, R5 {code: Coding, detail}.
    outcome = get("outcome")
    outcome_code = _str(outcome) if version == "R4" or isinstance(outcome, str) else \
        _str(_dict(_dict(outcome).get("code")).get("code"))
    if outcome_code is None:
        event["event.outcome"] = "unknown"
    else:
        event["ehr.outcome_code"] = outcome_code
        event["event.outcome"] = "success" if outcome_code == "0" else "failure"

    agent_purposes = _map_agent(event, resource, version)
    _map_entities(event, resource, version)

    value = get("purposeOfEvent")
    purposes = _codes(value) if value is not None else []
    value = get("authorization")
    if value is not None:
        purposes += _codes(value)
    purposes += agent_purposes
    if len(purposes) > 1:
        purposes = _dedupe(purposes)
    if purposes:
        event["ehr.purpose_of_use"] = purposes
    override = DICOM_EMERGENCY_OVERRIDE_STARTED
    emergency_type = (override in type_codes or override in subtype_codes or override in category_codes
                      or override in code_codes)
    event["ehr.break_the_glass"] = "BTG" in purposes or emergency_type
    event["ehr.emergency"] = "ETREAT" in purposes

    source = _dict(get("source"))
    observer = _dict(source.get("observer"))
    observer_name = (_str(observer.get("display")) or _str(_dict(observer.get("identifier")).get("value"))
                     or _reference(observer))
    if observer_name is None and isinstance(source.get("site"), str):
        observer_name = _str(source.get("site"))
    if observer_name:
        event["observer.name"] = observer_name
    value = source.get("type")
    observer_type = _first_code(value) if value is not None else None
    if observer_type:
        event["observer.type"] = observer_type
    return event
