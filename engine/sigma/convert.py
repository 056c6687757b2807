"""A rule as the query a store is handed to narrow candidates (never to decide matches).

Each call re-parses the rule's YAML (and re-applies its Sigma filters): pySigma processing pipelines mutate
rule objects, so the ``CompiledRule.sigma`` object must never be given to a backend.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, Sequence

from sigma.collection import SigmaCollection
from sigma.filters import SigmaFilter
from sigma.processing.pipeline import ProcessingItem, ProcessingPipeline
from sigma.processing.transformations import (
    AddConditionTransformation,
    ValueListPlaceholderTransformation,
)
from sigma.rule import SigmaRule

from engine.events import DATASET
from engine.sigma.model import CompiledRule
from engine.sigma.taxonomy import TAXONOMY, LogsourceEntry, resolve_logsource


@dataclass
class ConvertedQuery:
    store: str
    query: str | None
    pushdown: bool
    note: str


def rule_source(rule: CompiledRule) -> str:
    """The YAML text of the rule's own document (for ``wardwatch rule show``)."""
    return rule.source


def dataset_pipeline(rule: CompiledRule, taxonomy: Sequence[LogsourceEntry] = TAXONOMY) -> ProcessingPipeline:
    """Our logsource -> dataset mapping as a pySigma pipeline: adds ``event.dataset`` (and, for a
    single-dataset logsource, its extra condition such as the Sysmon EventID) for the rule's own entry."""
    ls = rule.sigma.logsource
    entry = resolve_logsource({k: v for k, v in (("product", ls.product), ("category", ls.category),
                                       ("service", ls.service)) if v is not None}, taxonomy)
    conditions: dict[str, object] = {DATASET: list(rule.datasets)}
    if entry is not None and entry.datasets:
        # A field every dataset constrains narrows by the union of its values (process_creation: EventID
        # 1 or 4688): a superset of each dataset's own condition, which the engine still checks exactly.
        scopes = list(entry.datasets.values())
        for name in scopes[0]:
            if all(name in scope for scope in scopes):
                conditions[name] = list(dict.fromkeys(v for scope in scopes for v in scope[name]))
    item = ProcessingItem(AddConditionTransformation(conditions),  # type: ignore[arg-type]
                          identifier="wardwatch_logsource")
    return ProcessingPipeline(items=[item], name="wardwatch", priority=20)


def _fresh_rule(rule: CompiledRule) -> SigmaRule:
    fresh = SigmaRule.from_yaml(rule.source)
    for text in rule.filter_sources:
        sigma_filter = SigmaFilter.from_yaml(text)
        if sigma_filter._should_apply_on_rule(fresh):
            sigma_filter.apply_on_rule(fresh)
    return fresh


def _uses_modifier(rule: CompiledRule, modifier: type) -> bool:
    def walk(items: object) -> bool:
        for item in items:  # type: ignore[attr-defined]
            nested = getattr(item, "detection_items", None)
            if nested is not None:
                if walk(nested):
                    return True
            elif modifier in getattr(item, "modifiers", ()):
                return True
        return False

    return any(walk(d.detection_items) for d in rule.sigma.detection.detections.values())


def _not_on_elasticsearch(rule: CompiledRule) -> str | None:
    """Why ``rule`` must not be pushed down to Elasticsearch (a query that could miss a true match), or
    None. Keyword fields are indexed lowercased (Sigma's default case-insensitivity): Lucene regexps are not
    normalised, so a case-sensitive ``|re`` could miss; and addresses are keywords, not ``ip`` fields, so the
    Lucene backend's CIDR term (``DestinationIp:10.0.0.0/8``) matches nothing (issue 10,
    tests/test_es_pushdown_exact.py)."""
    from sigma.modifiers import SigmaCIDRModifier, SigmaRegularExpressionModifier

    if _uses_modifier(rule, SigmaRegularExpressionModifier):
        return "|re values are matched by the engine (regexps are not normalised on lowercased keyword fields)"
    if _uses_modifier(rule, SigmaCIDRModifier):
        return "|cidr values are matched by the engine (addresses are keyword fields, not ip: a CIDR term matches none)"
    return None


def convert_rule(rule: CompiledRule, store: Literal["sqlite", "elasticsearch"]) -> ConvertedQuery:
    """The narrowing query for ``store``; on any conversion failure, ``pushdown=False`` with the reason."""
    refusal = _not_on_elasticsearch(rule) if store == "elasticsearch" else None
    if refusal is not None:
        return ConvertedQuery(store, None, False, f"falls back to dataset + time-range scan: {refusal}")
    try:
        pipeline = dataset_pipeline(rule) + ProcessingPipeline(
            items=[ProcessingItem(ValueListPlaceholderTransformation(), identifier="wardwatch_placeholders")],
            priority=30, vars={k: list(v) for k, v in rule.placeholders.items()})
        if store == "elasticsearch":
            from sigma.backends.elasticsearch import LuceneBackend

            backend = LuceneBackend(processing_pipeline=pipeline)
        elif store == "sqlite":
            from sigma.backends.sqlite import sqliteBackend

            backend = sqliteBackend(processing_pipeline=pipeline)
        else:
            raise ValueError(f"unknown store {store!r}")
        queries = backend.convert(SigmaCollection([_fresh_rule(rule)]))
        if len(queries) != 1 or not isinstance(queries[0], str):
            raise ValueError(f"backend returned {len(queries)} queries")
        query = queries[0]
        prefix = "SELECT * FROM logs WHERE "
        if store == "sqlite" and query.startswith(prefix):
            query = query[len(prefix):]
        return ConvertedQuery(store, query, True, f"pySigma {type(backend).__name__}")
    except Exception as e:  # noqa: BLE001 - any backend limitation means "scan", never a crash
        reason = f"{type(e).__name__}: {e}".strip()
        return ConvertedQuery(store, None, False, f"falls back to dataset + time-range scan: {reason}")


def base_rules(correlation: Any, ruleset: Any) -> list[CompiledRule]:
    """The detection rules under ``correlation``, chained correlations expanded, each once, in order.

    A correlation has no query of its own: the store is handed its base rules' queries, and the engine
    groups and counts the matches (``wardwatch rules convert`` prints these).
    """
    found: dict[str, CompiledRule] = {}

    def walk(corr: Any) -> None:
        for ref in corr.spec.rules:
            if ref in ruleset.rules:
                found.setdefault(ref, ruleset.rules[ref])
            elif ref in ruleset.correlations:
                walk(ruleset.correlations[ref])

    walk(correlation)
    return list(found.values())
