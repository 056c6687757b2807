"""The alert record, shared by the alert builder, every store and every sink.

Kept apart from the code that *makes* alerts so a store can persist them without knowing how they are
made (data flows one way: evaluate -> alert -> store/sinks).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import orjson

EVIDENCE_CAP = 100


def canonical_json(value: Any) -> str:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


def alert_id(rule_id: str, group_key: str, anchor: str) -> str:
    """Rule id + group key + the episode's anchor (the start of its suppression period, see
    engine/alerts/episodes.py): a re-run, or a late event of the same period, lands on the same alert."""
    digest = hashlib.blake2b(digest_size=16)
    for part in (rule_id, group_key, anchor):
        digest.update(part.encode("utf-8"))
        digest.update(b"\x00")
    return digest.hexdigest()


@dataclass
class Alert:
    """One alert: a rule's verdict about one group over one window (an *episode* of triggers).

    ``revision`` grows when later evidence extends the same episode; sinks are handed every revision and
    deduplicate on ``(id, revision)``.
    """

    id: str
    rule_id: str
    rule_title: str
    rule_level: str
    rule_tags: list[str]
    kind: str  # "match" | "correlation"
    group: dict[str, Any]
    group_key: str
    window_start: str
    window_end: str
    first_trigger: str
    last_trigger: str
    metric: dict[str, Any] = field(default_factory=dict)
    evidence: list[str] = field(default_factory=list)
    evidence_total: int = 0
    triggers: int = 1
    status: str = "new"  # the triage status (engine/alerts/triage.py) where a reader overlaid it
    revision: int = 1
    rule_description: str = ""
    correlation_type: str | None = None
    #: who works on it (triage state, overlaid by readers and on delivery; never set by the evaluator)
    assignee: str | None = None

    def to_dict(self) -> dict[str, Any]:
        # Not dataclasses.asdict: its recursive deep copy was the main cost of committing many alerts.
        data = {name: getattr(self, name) for name in _FIELDS}
        data["rule_tags"] = list(self.rule_tags)
        data["group"] = dict(self.group)
        data["metric"] = dict(self.metric)
        data["evidence"] = list(self.evidence)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "Alert":
        return cls(**{k: v for k, v in data.items() if k in _FIELD_SET})

    def content_key(self) -> dict[str, Any]:
        """Everything that must be identical between two runs over the same data (no wall-clock times)."""
        return self.to_dict()


_FIELDS = tuple(Alert.__dataclass_fields__)
_FIELD_SET = frozenset(_FIELDS)
