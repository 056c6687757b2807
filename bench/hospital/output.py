"""Files the product reads: FHIR R4 AuditEvent NDJSON (the shape ``fhir-auditevent-file`` maps, as in
``fixtures/ehr``), the roster, patient directory, encounter CSV and VIP list, plus ``ground_truth.json``.

Why FHIR and not flat events: the benchmark must measure the product as a site runs it, through the real
connector and its mapping (user from ``agent.who.identifier``/``altId``, BTG/ETREAT from ``purposeOfUse``).
"""

from __future__ import annotations

import base64
import csv
import json
from datetime import datetime, timezone
from pathlib import Path

from bench.hospital.activity import Access
from bench.hospital.incidents import Incident
from bench.hospital.population import TZ, Hospital

_REST = "http://terminology.hl7.org/CodeSystem/audit-event-type"
_INTERACTION = "http://hl7.org/fhir/restful-interaction"
_ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
_ACTION = {"read": "R", "search-type": "E", "print": "R", "export": "R"}


def _instant(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def auditevent(a: Access) -> dict:
    purposes = ["BTG"] if a.btg else []
    purposes.append("ETREAT" if a.emergency else "TREAT")
    agent = {"who": {"identifier": {"value": a.user_id}}, "altId": a.login, "requestor": True,
             "network": {"address": a.ip, "type": "2"},
             "purposeOfUse": [{"coding": [{"system": _ACT_REASON, "code": p}]} for p in purposes]}
    entity: list[dict] = []
    if a.patient_id:
        entity.append({"what": {"reference": f"Patient/{a.patient_id}"},
                       "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"}})
    if a.action == "search-type":
        query = base64.b64encode(b"Patient?family=...&birthdate=...").decode()
        entity.append({"type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
                       "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24"},
                       "query": query})
    return {"resourceType": "AuditEvent", "id": a.audit_id,
            "type": {"system": _REST, "code": "rest"},
            "subtype": [{"system": _INTERACTION, "code": a.action}], "action": _ACTION[a.action],
            "recorded": _instant(a.ts), "outcome": "0", "agent": [agent],
            "source": {"observer": {"display": "ehr.hospital.example"}}, "entity": entity}


def write_all(h: Hospital, accesses: list[Access], incidents: list[Incident], out: Path) -> dict:
    """Write everything under ``out``; returns counts for the report."""
    (out / "audit").mkdir(parents=True, exist_ok=True)
    accesses.sort(key=lambda a: (a.ts, a.login))
    for i, a in enumerate(accesses):
        if not a.audit_id:
            a.audit_id = f"a{i:08d}"
    with (out / "audit" / "auditevents.ndjson").open("w", encoding="utf-8") as fh:
        for a in accesses:
            fh.write(json.dumps(auditevent(a), separators=(",", ":"), ensure_ascii=False) + "\n")
    _csv(out / "roster.csv", ["user_id", "login", "family_name", "department", "role", "address", "postal_code",
                              "patient_id", "end_date"],
         ([s.user_id, s.login, s.family_name, s.department, s.role, s.address, s.postal_code, s.patient_id,
           s.end_date] for s in h.staff))
    _csv(out / "patients.csv", ["patient_id", "family_name", "address", "postal_code", "vip", "confidential",
                                "deceased_date"],
         ([p.patient_id, p.family_name, p.address, p.postal_code, "Y" if p.vip else "", "Y" if p.confidential
           else "", p.deceased_date] for p in h.patients.values()))
    _csv(out / "encounters.csv", ["patient_id", "department", "class", "start", "end", "participants"],
         ([e.patient_id, e.department, e.cls, _local(e.start), _local(e.end), ";".join(e.participants)]
          for e in h.encounters))
    (out / "vip.txt").write_text("# VIP patients (generated)\n" + "".join(
        f"{p.patient_id}\n" for p in h.patients.values() if p.vip), encoding="utf-8")
    truth = [i.ground_truth() for i in incidents]
    (out / "ground_truth.json").write_text(json.dumps(truth, indent=1), encoding="utf-8")
    return {"accesses": len(accesses), "staff": len(h.staff), "patients": len(h.patients),
            "encounters": len(h.encounters), "incidents": len(incidents)}


def _local(ts: float) -> str:
    return datetime.fromtimestamp(ts, TZ).isoformat(timespec="seconds")


def _csv(path: Path, header: list[str], rows, *, encoding: str = "utf-8",  # type: ignore[no-untyped-def]
         errors: str = "strict", **dialect: str) -> None:
    """One CSV extract; ``encoding``, ``errors`` and the ``csv`` dialect keywords (``delimiter``,
    ``lineterminator``) let ``dialect.py`` write a site's own export format through the same code."""
    with path.open("w", encoding=encoding, errors=errors, newline="") as fh:
        w = csv.writer(fh, **dialect)
        w.writerow(header)
        w.writerows(rows)
