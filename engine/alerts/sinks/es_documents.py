"""What the ``elasticsearch`` sink writes: the two index mappings and one document per alert or case.

Why explicit mappings (``dynamic: false``): Kibana's data view, filters and visualisations need stable
types - ``keyword`` for ids, levels, users and statuses, ``date`` for every time - and an alert's ``group``
holds dotted field names (``user.name``) that dynamic mapping would explode into objects and, with a new
rule, new fields. ``group`` and ``metric`` are ``flattened``: every key is searchable as
``group.user.name: "j.smit"`` without one mapping entry per key. The analyst's first fields (``user``,
``source_ip``, ``patient``) are lifted to the top level from the same facts CEF and LEEF use.

``_meta.wardwatch`` marks an index as this sink's, so the sink refuses to write into the store's own
``<prefix>-alerts`` (same names, other mapping) when someone gives both the same prefix.
"""

from __future__ import annotations

from typing import Any, Mapping

from engine.alerts.sinks.siem_facts import facts

META = {"wardwatch": "alert-sink", "layout": 1}
_KW = {"type": "keyword"}
_DATE = {"type": "date"}
_LONG = {"type": "long"}
_TITLE = {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 1024}}}
_COMMON = {"@timestamp": _DATE, "id": _KW, "revision": _LONG, "record": _KW, "level": _KW,
           "status": _KW, "assignee": _KW, "user": _KW, "source_ip": {"type": "ip", "ignore_malformed": True},
           "patient": _KW, "first_trigger": _DATE, "last_trigger": _DATE, "evidence": _KW,
           "evidence_total": _LONG, "indexed_at": _DATE}

ALERT_PROPERTIES: dict[str, Any] = {
    **_COMMON, "rule_id": _KW, "rule_title": _TITLE, "rule_level": _KW, "rule_tags": _KW, "kind": _KW,
    "group": {"type": "flattened"}, "group_key": _KW, "window_start": _DATE, "window_end": _DATE,
    "metric": {"type": "flattened"}, "triggers": _LONG, "rule_description": {"type": "text"},
    "correlation_type": _KW,
}
CASE_PROPERTIES: dict[str, Any] = {
    **_COMMON, "subject_kind": _KW, "subject": _KW, "subject_field": _KW, "period_start": _DATE,
    "period_end": _DATE, "score": {"type": "float"}, "score_parts": {"type": "object", "enabled": False},
    "reasons": {"type": "text"}, "rules": {"type": "flattened"}, "alerts": _KW,
}


def index_body(properties: Mapping[str, Any]) -> dict[str, Any]:
    """Settings and mapping for one of the sink's indices."""
    return {"settings": {"index": {"number_of_shards": 1}},
            "mappings": {"dynamic": False, "_meta": META, "properties": dict(properties)}}


def document(payload: Mapping[str, Any], indexed_at: str) -> dict[str, Any]:
    """The payload (after the field policy) plus the lifted facts; ``level`` is the one level field both
    record kinds share, so one Kibana filter covers alerts and cases."""
    f = facts(payload)
    doc = dict(payload)
    doc.update({"@timestamp": payload.get("last_trigger"), "record": f.record, "level": f.level,
                "user": f.user, "source_ip": f.source_ip, "patient": f.patient, "indexed_at": indexed_at})
    return {k: v for k, v in doc.items() if v is not None}
