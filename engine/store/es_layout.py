"""Index layout of the Elasticsearch store: names, the composable template for events, and the mappings of
the state indices. Kept apart from the store so the ingest benchmark's bare ``helpers.bulk`` baseline writes
into exactly the same template (a fair ratio needs the same mappings). Rationale: docs/elasticsearch.md.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

#: Bump when a mapping below changes; the template carries it so an upgrade is visible in ``_meta``.
#: Version 2: events go to monthly indices (``events_index``) so that retention drops whole indices.
LAYOUT_VERSION = 2

#: Keyword values longer than this (characters) are kept in ``_source`` but not indexed: Lucene's term
#: limit is 32766 bytes, and 8191 four-byte characters fit. See docs/elasticsearch.md ("gaps").
IGNORE_ABOVE = 8191

_KW = {"type": "keyword", "normalizer": "lowercase", "ignore_above": IGNORE_ABOVE}
_EXACT = {"type": "keyword"}
_IP = {"type": "ip", "ignore_malformed": True}
_DATE = {"type": "date", "format": "strict_date_optional_time||epoch_millis"}
_OPAQUE = {"type": "keyword", "index": False, "doc_values": False}

_INDEX_NAME_BAD = re.compile(r"[^a-z0-9_.\-]")


def events_pattern(prefix: str) -> str:
    return f"{prefix}-events-*"


def dataset_base(prefix: str, dataset: str) -> str:
    """The per-dataset part of every event index name. Index names must be lowercase and avoid a few
    characters; a dataset whose name had to be changed gets a short hash so two datasets never share an index
    by accident (sharing would still be correct, the search filters on ``event.dataset`` too).

    Layout 1 stores kept each dataset in exactly this index; layout 2 appends ``-YYYY.MM``."""
    safe = _INDEX_NAME_BAD.sub("_", dataset.lower()).lstrip("-_+.") or "_"
    if safe != dataset:
        safe = f"{safe[:80]}-{hashlib.blake2b(dataset.encode(), digest_size=4).hexdigest()}"
    return f"{prefix}-events-{safe[:180]}"


def events_index(prefix: str, dataset: str, timestamp: str) -> str:
    """The monthly index an event lives in: ``<prefix>-events-<dataset>-YYYY.MM`` of its ``@timestamp``.

    A pure function of the event (dataset and event time, never the ingest time), so a replayed event lands
    on the same index and its ``create`` answers 409: writes stay exactly-once. Monthly, not daily: one shard
    per index, and 400 days of daily indices per dataset would be thousands of shards. Retention drops an
    index once its whole month has expired and trims the one boundary month with a delete-by-query.
    ``timestamp`` is canonical (``2026-11-02T09:15:30.123Z``), so the month is its first 7 characters."""
    return f"{dataset_base(prefix, dataset)}-{timestamp[0:4]}.{timestamp[5:7]}"


def dataset_pattern(prefix: str, dataset: str) -> str:
    """Every monthly index of ``dataset`` (a layout-1 store adds its plain ``dataset_base`` index). It can also
    match a dataset whose name extends this one (``a`` vs ``a-b``); searches filter on ``event.dataset``."""
    return f"{dataset_base(prefix, dataset)}-*"


_MONTHLY = re.compile(r"^(?P<base>.+)-(?P<year>\d{4})\.(?P<month>\d{2})$")


def index_month(name: str) -> tuple[str, int, int] | None:
    """(base, year, month) of a monthly event index name, None for any other name (a layout-1 index)."""
    match = _MONTHLY.match(name)
    if not match or not 1 <= int(match["month"]) <= 12:
        return None
    return match["base"], int(match["year"]), int(match["month"])


def state_indices(prefix: str) -> dict[str, str]:
    return {
        "state": f"{prefix}-state",
        "alerts": f"{prefix}-alerts",
        "outbox": f"{prefix}-outbox",
        "deliveries": f"{prefix}-deliveries",
        "dead_letters": f"{prefix}-dead-letters",
        "cases": f"{prefix}-cases",
        "case_outbox": f"{prefix}-case-outbox",
        "case_deliveries": f"{prefix}-case-deliveries",
    }


def template_name(prefix: str) -> str:
    return f"{prefix}-events"


def events_mappings() -> dict[str, Any]:
    return {
        "dynamic": True,
        # "2026-11-02" in a free-text field must not turn the field into a date for all later events
        "date_detection": False,
        "numeric_detection": False,
        "dynamic_templates": [
            # every string, anywhere: a keyword that matches case-insensitively (Sigma) while _source keeps
            # the original case
            {"strings_as_keywords": {"match_mapping_type": "string", "mapping": dict(_KW)}},
        ],
        "properties": {
            "@timestamp": dict(_DATE),
            "event": {
                "properties": {
                    "ingested": dict(_DATE),
                    "created": dict(_DATE),
                    # store keys: exact, case-sensitive (a dataset filter or an id look-up is not Sigma)
                    "id": dict(_EXACT),
                    "dataset": dict(_EXACT),
                    # ECS: kept in _source only, never searchable (raw records may carry identifiers)
                    "original": dict(_OPAQUE),
                }
            },
            "source": {"properties": {"ip": dict(_IP)}},
            "destination": {"properties": {"ip": dict(_IP)}},
            "client": {"properties": {"ip": dict(_IP)}},
            "server": {"properties": {"ip": dict(_IP)}},
            "host": {"properties": {"ip": dict(_IP)}},
        },
    }


def events_template(prefix: str, replicas: int) -> dict[str, Any]:
    return {
        "index_patterns": [events_pattern(prefix)],
        # Overlapping patterns of equal priority are rejected; a longer prefix is more specific and wins.
        "priority": 200 + len(prefix),
        "version": LAYOUT_VERSION,
        "_meta": {"managed_by": "wardwatch", "layout_version": LAYOUT_VERSION},
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": 1,
                    "number_of_replicas": replicas,
                    # Sigma keyword searches (no field) look at every field
                    "query": {"default_field": ["*"]},
                    "mapping": {"total_fields": {"limit": 5000}},
                }
            },
            "mappings": events_mappings(),
        },
    }


def state_mappings() -> dict[str, dict[str, Any]]:
    """Mappings of the non-event indices. ``dynamic: false``: free-form parts (alert groups, cursor values)
    stay in ``_source`` and can never cause a mapping conflict."""
    return {
        "state": {"dynamic": False, "properties": {
            "kind": _EXACT, "key": _EXACT, "value_json": _OPAQUE, "updated": _DATE}},
        "alerts": {"dynamic": False, "properties": {
            "id": _EXACT, "rule_id": _EXACT, "group_key": _EXACT, "first_trigger": _EXACT,
            "last_trigger": _EXACT, "revision": {"type": "long"}, "status": _EXACT, "rule_level": _EXACT}},
        "outbox": {"dynamic": False, "properties": {
            "alert_id": _EXACT, "revision": {"type": "long"}, "ordinal": {"type": "long"},
            "alert_json": _OPAQUE}},
        "deliveries": {"dynamic": False, "properties": {
            "sink": _EXACT, "alert_id": _EXACT, "revision": {"type": "long"}}},
        "dead_letters": {"dynamic": False, "properties": {
            "source": _EXACT, "reason": {"type": "keyword", "ignore_above": 1024}, "location": _EXACT,
            "raw": _OPAQUE, "received_at": _EXACT, "ordinal": {"type": "long"}}},
        "cases": {"dynamic": False, "properties": {
            "id": _EXACT, "subject_kind": _EXACT, "subject": _EXACT, "period_start": _EXACT,
            "first_trigger": _EXACT, "last_trigger": _EXACT, "revision": {"type": "long"}, "score": {"type": "double"},
            "level": _EXACT}},
        "case_outbox": {"dynamic": False, "properties": {
            "case_id": _EXACT, "revision": {"type": "long"}, "ordinal": {"type": "long"}, "case_json": _OPAQUE}},
        "case_deliveries": {"dynamic": False, "properties": {
            "sink": _EXACT, "case_id": _EXACT, "revision": {"type": "long"}}},
    }
