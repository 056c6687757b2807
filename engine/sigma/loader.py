"""``load_rules``: files -> validated, filtered, compiled rules and correlations, errors collected.

Order of work, and why:
1. every YAML document of every file is read with key line numbers (``source``);
2. rules, correlations and Sigma filters are validated on the raw YAML so errors name key and line;
3. pySigma parses the rules (no pipeline), Sigma filters are applied to the rules they target;
4. each rule is compiled to closures; correlations are resolved against the whole set (ids or names).
A bad document becomes a ``RuleLoadError`` and never stops the others from loading.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import yaml
from sigma.exceptions import SigmaError, SigmaRuleLocation
from sigma.filters import SigmaFilter
from sigma.rule import SigmaRule
from sigma.types import SigmaNumber, SigmaString

from engine.correlation.spec import CorrelationSpec
from engine.events import DATASET
from engine.gc_pause import cyclic_gc_paused
from engine.sigma import validate
from engine.sigma.cache import RuleCache, digest
from engine.sigma.compiler import BoolNode, CompileError, DetectionCompiler, ItemNode, Node
from engine.sigma.correlation import (
    CorrelationError,
    RawCorrelation,
    parse_correlation,
    rewrite_condition,
)
from engine.sigma.errors import RuleLoadError
from engine.sigma.model import CompiledCorrelation, CompiledRule
from engine.sigma.ruleset import RuleSet
from engine.sigma.source import RuleDocument, parse_documents, rule_files
from engine.sigma.taxonomy import TAXONOMY, LogsourceEntry, resolve_logsource

#: pySigma exception class name fragment -> the rule key it is about
_ERROR_KEYS = (
    ("Title", "title"), ("Identifier", "id"), ("Level", "level"), ("Status", "status"),
    ("Logsource", "logsource"), ("Modifier", "detection"), ("RegularExpression", "detection"),
    ("Condition", "detection.condition"), ("Detection", "detection"), ("Date", "date"),
    ("Modified", "modified"), ("Tag", "tags"), ("Related", "related"), ("Filter", "filter"),
)


def _sigma_error_key(error: Exception) -> str | None:
    name = type(error).__name__
    for fragment, key in _ERROR_KEYS:
        if fragment in name:
            return key
    return None


def _error(doc: RuleDocument, key: str | None, message: str) -> RuleLoadError:
    return RuleLoadError(doc.path, key, message, doc.line_of(key))


@dataclass
class _PendingRule:
    doc: RuleDocument
    sigma: SigmaRule
    entry: LogsourceEntry
    filters: list[str] = field(default_factory=list)


def load_rules(
    paths: Sequence[str | Path],
    placeholders: Mapping[str, Sequence[str]] | None = None,
    taxonomy: Sequence[LogsourceEntry] = TAXONOMY,
    cache_dir: str | Path | None = None,
) -> RuleSet:
    """Load every ``*.yml``/``*.yaml`` under ``paths``. Invalid documents go to ``RuleSet.errors``.

    ``cache_dir``: where the parsed-YAML cache lives (``engine.sigma.cache``); ``None`` parses every file.
    """
    with cyclic_gc_paused():  # loading frees almost nothing: half its CPU time went to the collector
        return _load_rules(paths, placeholders, taxonomy, cache_dir)


def _load_rules(
    paths: Sequence[str | Path],
    placeholders: Mapping[str, Sequence[str]] | None,
    taxonomy: Sequence[LogsourceEntry],
    cache_dir: str | Path | None,
) -> RuleSet:
    placeholders = {k: tuple(str(x) for x in v) for k, v in (placeholders or {}).items()}
    errors: list[RuleLoadError] = []
    docs: list[RuleDocument] = []
    digests: dict[str, str] = {}
    cache = RuleCache.open(cache_dir)
    for path in rule_files(paths):
        docs.extend(_read(path, errors, cache, digests))
    cache.save()

    seen_ids: dict[str, str] = {}
    pending: list[_PendingRule] = []
    filters: list[tuple[RuleDocument, SigmaFilter]] = []
    correlations: list[tuple[RuleDocument, RawCorrelation]] = []
    for doc in docs:
        data = doc.data
        if not isinstance(data, Mapping):
            errors.append(_error(doc, None, "a rule document must be a YAML mapping"))
            continue
        if "action" in data:
            errors.append(_error(doc, "action", "'action' collections (global/reset/repeat) are not "
                                                "supported; write each rule in full"))
            continue
        problems = list(validate.check_meta(data))
        if "correlation" in data:
            kind = "correlation"
        elif "filter" in data:
            kind = "filter"
            problems += validate.check_detection(
                {**dict(data["filter"]), "condition": "x"} if isinstance(data["filter"], Mapping)
                else data["filter"], placeholders)
            problems = [(k.replace("detection.", "filter.", 1), m) for k, m in problems]
        else:
            kind = "rule"
            problems += _check_logsource(data, taxonomy)
            problems += validate.check_detection(data.get("detection"), placeholders)
        if not problems and kind != "filter":
            rule_id = str(data["id"])
            if rule_id in seen_ids:
                problems.append(("id", f"duplicate id {rule_id} (already used in {seen_ids[rule_id]})"))
            else:
                seen_ids[rule_id] = doc.path
        if problems:
            errors.extend(_error(doc, k, m) for k, m in problems)
            continue
        source = SigmaRuleLocation(doc.path, doc.line)
        try:
            if kind == "rule":
                entry = resolve_logsource(data["logsource"], taxonomy)
                assert entry is not None
                pending.append(_PendingRule(doc, SigmaRule.from_dict(dict(data), source=source), entry))
            elif kind == "filter":
                filters.append((doc, SigmaFilter.from_dict(dict(data), source=source)))
            else:
                correlations.append((doc, parse_correlation(data["correlation"])))
        except CorrelationError as e:
            seen_ids.pop(str(data["id"]), None)
            errors.append(_error(doc, e.key, e.message))
        except (SigmaError, ValueError, TypeError, KeyError) as e:
            seen_ids.pop(str(data.get("id")), None)
            errors.append(_error(doc, _sigma_error_key(e), _message(e)))

    _apply_filters(filters, pending, errors)
    rules: dict[str, CompiledRule] = {}
    for p in pending:
        try:
            rule = _compile(p, placeholders)
        except CompileError as e:
            errors.append(_error(p.doc, e.key, e.message))
            continue
        except (SigmaError, ValueError, TypeError) as e:
            errors.append(_error(p.doc, _sigma_error_key(e) or "detection", _message(e)))
            continue
        rules[rule.id] = rule
    compiled_correlations = _resolve_correlations(correlations, rules, errors)
    return RuleSet(rules, compiled_correlations, errors, file_digests=digests)


def _message(e: Exception) -> str:
    text = str(e)
    return text.split(" in ", 1)[0] if isinstance(e, SigmaError) and " in /" in text else text


def _read(path: Path, errors: list[RuleLoadError], cache: RuleCache, digests: dict[str, str]) -> list[RuleDocument]:
    try:
        raw = path.read_bytes()
        file_digest = digests[str(path)] = digest(raw)
        cached = cache.get(str(path), file_digest)
        if cached is not None:
            return cached
        # what Path.read_text did: strict UTF-8, universal newlines (document text and lines depend on it)
        text = raw.decode("utf-8").replace("\r\n", "\n").replace("\r", "\n")
        docs = list(parse_documents(str(path), text))
        cache.put(str(path), file_digest, docs)
        return docs
    except (OSError, UnicodeDecodeError) as e:
        errors.append(RuleLoadError(str(path), None, f"cannot read rule file: {e}"))
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        errors.append(RuleLoadError(str(path), None, f"invalid YAML: {getattr(e, 'problem', e)}", line))
    return []


def _check_logsource(data: Mapping[str, Any], taxonomy: Sequence[LogsourceEntry]) -> list[tuple[str, str]]:
    logsource = data.get("logsource")
    if not isinstance(logsource, Mapping):
        return [("logsource", "missing logsource")]
    if resolve_logsource(logsource, taxonomy) is None:
        shown = ", ".join(f"{k}: {logsource[k]}" for k in ("product", "category", "service") if k in logsource)
        return [("logsource", f"unknown logsource ({shown or 'empty'}); see the taxonomy in docs/rules.md")]
    return []


def _apply_filters(filters: list[tuple[RuleDocument, SigmaFilter]], pending: list[_PendingRule],
                   errors: list[RuleLoadError]) -> None:
    """Sigma meta filters: ``filter.rules`` (ids/names or ``any``) plus logsource choose the targets."""
    for doc, sigma_filter in filters:
        refs = sigma_filter.filter.rules
        if isinstance(refs, list):
            known = {str(p.sigma.id) for p in pending} | {p.sigma.name for p in pending if p.sigma.name}
            missing = [r.reference for r in refs if r.reference not in known]
            if missing:
                errors.append(_error(doc, "filter.rules", f"unknown rule reference(s): {', '.join(missing)}"))
        for p in pending:
            try:
                if sigma_filter._should_apply_on_rule(p.sigma):
                    sigma_filter.apply_on_rule(p.sigma)
                    p.filters.append(doc.text)
            except SigmaError as e:
                errors.append(_error(doc, "filter", _message(e)))


def _scope_node(conditions: Mapping[str, tuple[Any, ...]]) -> Node | None:
    """The taxonomy's extra condition for one dataset (e.g. Sysmon EventID 1) as an evaluable node."""
    items: list[Node] = []
    for name, allowed in conditions.items():
        values = [SigmaNumber(v) if isinstance(v, (int, float)) else SigmaString(str(v)) for v in allowed]
        items.append(ItemNode(f"logsource.{name}", name, [], [values], "or", False))
    if not items:
        return None
    return items[0] if len(items) == 1 else BoolNode("and", items)


def _compile(p: _PendingRule, placeholders: Mapping[str, tuple[str, ...]]) -> CompiledRule:
    compiled = DetectionCompiler(p.sigma.detection, placeholders).compile()
    scope_nodes = {ds: _scope_node(cond) for ds, cond in p.entry.datasets.items()}
    extra_fields = {f for cond in p.entry.datasets.values() for f in cond}
    data = p.doc.data
    status = data.get("status")
    return CompiledRule(
        id=str(data["id"]),
        name=data.get("name"),
        title=str(data["title"]),
        level=str(data.get("level", "medium")),
        status=None if status is None else str(status),
        description=str(data.get("description") or ""),
        tags=[str(t) for t in data.get("tags") or []],
        path=p.doc.path,
        datasets=tuple(p.entry.datasets),
        fields=compiled.fields | extra_fields | {DATASET},
        reads_every_field=compiled.reads_every_field,
        sigma=p.sigma,
        source=p.doc.text,
        filter_sources=tuple(p.filters),
        placeholders=placeholders,
        _scope={ds: (n.fn if n is not None else None) for ds, n in scope_nodes.items()},
        _scope_nodes=scope_nodes,
        _conditions=compiled.conditions,
        _fn=compiled.fn,
    )


def _resolve_correlations(
    raws: list[tuple[RuleDocument, RawCorrelation]],
    rules: Mapping[str, CompiledRule],
    errors: list[RuleLoadError],
) -> dict[str, CompiledCorrelation]:
    """Resolve references by id or name; a correlation may build on another (chaining), never a cycle."""
    names: dict[str, str] = {r.name: r.id for r in rules.values() if r.name}
    names.update({str(doc.data["name"]): str(doc.data["id"]) for doc, _ in raws if doc.data.get("name")})
    accepted: dict[str, CompiledCorrelation] = {}
    remaining = list(raws)
    progress = True
    while remaining and progress:
        progress = False
        for item in list(remaining):
            doc, raw = item
            resolved = [_resolve(ref, rules, accepted, names) for ref in raw.rules]
            if any(r is None for r in resolved):
                continue
            remaining.remove(item)
            progress = True
            try:
                accepted[str(doc.data["id"])] = _build_correlation(doc, raw, rules, accepted, names)
            except CorrelationError as e:
                errors.append(_error(doc, e.key, e.message))
    for doc, raw in remaining:
        bad = [ref for ref in raw.rules if _resolve(ref, rules, accepted, names) is None]
        errors.append(_error(doc, "correlation.rules",
                             f"references unknown, invalid or cyclic rule(s): {', '.join(bad)}"))
    return accepted


def _resolve(ref: str, rules: Mapping[str, Any], correlations: Mapping[str, Any],
             names: Mapping[str, str]) -> str | None:
    for candidate in (ref, names.get(ref)):
        if candidate is not None and (candidate in rules or candidate in correlations):
            return candidate
    return None


def _build_correlation(doc: RuleDocument, raw: RawCorrelation, rules: Mapping[str, CompiledRule],
                       accepted: Mapping[str, CompiledCorrelation],
                       names: Mapping[str, str]) -> CompiledCorrelation:
    ids = tuple(_resolve(r, rules, accepted, names) for r in raw.rules)
    mapping = dict(zip(raw.rules, ids))
    aliases: dict[str, dict[str, str]] = {}
    for alias, per_rule in raw.aliases.items():
        aliases[alias] = {}
        for ref, fieldname in per_rule.items():
            rid = mapping.get(ref) or _resolve(ref, rules, accepted, names)
            if rid is None or rid not in ids:
                raise CorrelationError(f"correlation.aliases.{alias}",
                                       f"alias refers to '{ref}', which this correlation does not use")
            aliases[alias][rid] = fieldname
    data = doc.data
    spec = CorrelationSpec(
        id=str(data["id"]),
        type=raw.type,
        rules=ids,  # type: ignore[arg-type]
        group_by=raw.group_by,
        timespan_ms=raw.timespan_ms,
        aliases=aliases,
        condition=dict(raw.condition),
        condition_field=raw.condition_field,
        percentile=raw.percentile,
        extended_condition=(rewrite_condition(raw.extended_condition, mapping)  # type: ignore[arg-type]
                            if raw.extended_condition else None),
        generate=raw.generate,
    )
    fields = set(raw.group_by) | {f for m in aliases.values() for f in m.values()}
    if raw.condition_field:
        fields.add(raw.condition_field)
    return CompiledCorrelation(
        id=spec.id,
        name=data.get("name"),
        title=str(data["title"]),
        level=str(data.get("level", "medium")),
        description=str(data.get("description") or ""),
        tags=[str(t) for t in data.get("tags") or []],
        path=doc.path,
        spec=spec,
        fields=frozenset(fields),
        source=doc.text,
    )
