"""From alerts to cases: every alert about one user (or one patient) within one period becomes one case.

An analyst drowning in twenty alerts about the same nurse on the same day wants one thing to open: the
case, with every access, every rule and every reason in it, and a risk score saying why it comes first.

How it stays exactly-once and restart-safe: the case builder is an ordinary consumer of the store's alert
outbox (sink name ``@cases``, placed before every real sink). For each alert revision it receives it finds
the alert's cases (one per ``by`` field the alert's group carries, in the period containing the alert's
first trigger), recomputes each case from *all* of its member alerts at their latest revisions, and upserts
the cases with their own outbox entry per (case, revision). Only then is the alert revision acknowledged.
A crash in between repeats the step, which recomputes the same content and adds no revision. The case id is
``blake2b(subject field, subject, period start)``, so a re-run, a restart or a late alert lands on the same
case, whatever order its alerts arrived in.

The risk score is a sum of documented parts (``Case.score_parts``), each naming its signal and its points,
so "why is this case first?" always has an answer: see docs/alerts.md ("Cases").
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence

import yaml

from engine.alerts.case_model import GROUP_SUBJECT, Case, case_id
from engine.alerts.episodes import episode_anchor, iso
from engine.alerts.model import Alert, canonical_json
from engine.events import split_login, timestamp_ms
from engine.store.base import Store

#: The outbox consumer name of the case builder (a name no configured sink can have: sinks are named by
#: type and path).
CASE_BUILDER = "@cases"
#: Event ids kept in a case (its alerts keep their own evidence lists).
CASE_EVIDENCE_CAP = 1000
#: Rule levels from least to most severe (Sigma's levels).
LEVELS = ("informational", "low", "medium", "high", "critical")
# GROUP_SUBJECT (engine/alerts/case_model.py) is the subject kind of a case for alerts whose group names none
# of the ``by`` fields: one case per rule and group, so no alert is ever left out of the case view.

#: Who a case is about, by default: the person acting (EHR user, VPN/AD account, the identity the directory
#: resolved it to) and the patient whose record was touched.
DEFAULT_BY: dict[str, tuple[str, ...]] = {
    "user": ("user.name", "wardwatch.identity", "SubjectUserName"),
    "patient": ("ehr.patient.id",),
}

DEFAULT_WEIGHTS: dict[str, Any] = {
    "levels": {"informational": 0.5, "low": 1.0, "medium": 3.0, "high": 6.0, "critical": 10.0},
    "repeat": 0.5,
    "repeat_cap": 10,
    "breadth": 2.0,
    "evidence": 1.0,
    "rules": {},
    "tags": {},
}


class CaseConfigError(ValueError):
    """A bad ``alerts.cases`` section or ``wardwatch:`` rule field: the message names the key."""


@dataclass(frozen=True)
class CaseSettings:
    """How alerts become cases. ``rule_by`` holds per-rule ``wardwatch.case_by`` overrides (rule id ->
    fields); ``weights`` has the shape of ``DEFAULT_WEIGHTS`` (rule names already resolved to ids)."""

    #: subject kind -> the fields naming it, first present wins (``user``: user.name, then wardwatch.identity)
    by: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: dict(DEFAULT_BY))
    period_ms: int = 86_400_000
    weights: Mapping[str, Any] = field(default_factory=lambda: dict(DEFAULT_WEIGHTS))
    rule_by: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    #: per rule, fields its ``case_by`` assigns to a kind by name (``case_by: {user: [TargetUserName]}``)
    rule_kinds: Mapping[str, Mapping[str, str]] = field(default_factory=dict)
    #: alerts of rules below this level never join a case (``alerts.cases.min_level``): an informational
    #: review list (every break-the-glass) is read as alerts, and would otherwise open a case per override
    min_level: str = "low"

    def in_cases(self, alert: Alert) -> bool:
        """Does this alert go into cases at all? (A rule's level is fixed, so the answer never changes
        between an alert's revisions: membership stays a pure function of the alert.)"""
        return _level_rank(alert.rule_level) >= LEVELS.index(self.min_level)


# --- rule-file defaults ----------------------------------------------------------------------------
def rule_objects(ruleset: Any) -> list[Any]:
    """Every rule and correlation of a rule set (or of a stand-in with only some of the two)."""
    return list(getattr(ruleset, "rules", {}).values()) + list(getattr(ruleset, "correlations", {}).values())


def ids_by_reference(ruleset: Any) -> dict[str, str]:
    """Rule id or name -> rule id: how the site config names a rule (``alerts.suppression``, weights, holds)."""
    objects = rule_objects(ruleset)
    ids = {obj.id: obj.id for obj in objects}
    ids.update({obj.name: obj.id for obj in objects if getattr(obj, "name", None)})
    return ids


def rule_defaults(ruleset: Any) -> dict[str, dict[str, Any]]:
    """``wardwatch:`` custom fields of every rule and correlation: rule id -> {case_by, suppress}.

    Sigma allows custom top-level attributes; ours is ``wardwatch: {case_by: [fields], suppress: {by:
    [fields], for: 1h}}``. A malformed one is an error naming the rule file, never silently ignored.
    """
    found: dict[str, dict[str, Any]] = {}
    for obj in rule_objects(ruleset):
        custom = _custom_field(obj)
        if custom is None:
            continue
        where = f"{getattr(obj, 'path', '?')}: rule {obj.id}: wardwatch"
        if not isinstance(custom, dict) or set(custom) - {"case_by", "suppress", "hold"}:  # hold: engine/alerts/hold.py
            raise CaseConfigError(f"{where}: expected {{case_by: [fields], suppress: {{by: [fields], for: 1h}}}}")
        entry: dict[str, Any] = {}
        if "case_by" in custom:
            entry.update(_case_by(custom["case_by"], f"{where}.case_by"))
        if "suppress" in custom:
            spec = custom["suppress"]
            if not isinstance(spec, dict) or set(spec) - {"by", "for"}:
                raise CaseConfigError(f"{where}.suppress: expected {{by: [fields], for: duration}}")
            from engine.config import parse_duration

            try:
                parse_duration(spec.get("for", "1h"))
            except ValueError as exc:
                raise CaseConfigError(f"{where}.suppress.for: {exc}") from None
            entry["suppress"] = {"by": _fields(spec.get("by", []), f"{where}.suppress.by", allow_empty=True),
                                 "for": spec.get("for", "1h")}
        found[obj.id] = entry
    return found


def _case_by(spec: Any, where: str) -> dict[str, Any]:
    """``case_by: [fields]`` (each keeps the kind ``alerts.cases.by`` gives it), or ``{kind: [fields]}``: this
    rule's fields that name that kind of subject. Why the second form: a Windows correlation grouped by
    ``TargetUserName`` names the requesting account, but for most events that field is a group or a target,
    so no site-wide ``by`` can list it; the rule that knows says so."""
    if not isinstance(spec, dict):
        return {"case_by": tuple(_fields(spec, where))}
    if not spec or not all(isinstance(kind, str) and kind for kind in spec):
        raise CaseConfigError(f"{where}: expected a list of field names, or subject kinds with their fields")
    kinds = {f: kind for kind, fields in spec.items() for f in _fields(fields, f"{where}.{kind}")}
    return {"case_by": tuple(kinds), "case_kinds": kinds}


def _custom_field(obj: Any) -> Any:
    sigma = getattr(obj, "sigma", None)
    custom = getattr(sigma, "custom_attributes", None) if sigma is not None else None
    if isinstance(custom, dict) and "wardwatch" in custom:
        return custom["wardwatch"]
    source = getattr(obj, "source", "")
    if not source or "wardwatch" not in source:
        return None
    try:
        for doc in yaml.safe_load_all(source):
            if isinstance(doc, dict) and "wardwatch" in doc and str(doc.get("id")) == str(obj.id):
                return doc["wardwatch"]
            if isinstance(doc, dict) and "wardwatch" in doc and "id" not in doc:
                return doc["wardwatch"]
    except yaml.YAMLError:
        return None
    return None


def _fields(value: Any, where: str, *, allow_empty: bool = False) -> list[str]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value) or (
            not value and not allow_empty):
        raise CaseConfigError(f"{where}: expected a list of field names")
    return list(value)


def merged_suppression(ruleset: Any, configured: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """Rule-file ``wardwatch.suppress`` defaults under the site's ``alerts.suppression`` (the site wins: it
    may name a rule by id or by name)."""
    merged: dict[str, Any] = {}
    names = {obj.id: getattr(obj, "name", None) for obj in rule_objects(ruleset)}
    for rule_id, entry in rule_defaults(ruleset).items():
        if "suppress" in entry and rule_id not in configured and names.get(rule_id) not in configured:
            merged[rule_id] = entry["suppress"]
    merged.update(configured)
    return merged


# --- settings --------------------------------------------------------------------------------------
def case_settings(section: Mapping[str, Any], ruleset: Any = None) -> CaseSettings:
    """``alerts.cases`` (already validated for shape by engine/config.py) plus the rules' ``case_by``."""
    from engine.config import parse_duration

    weights = {**DEFAULT_WEIGHTS, **{k: v for k, v in (section.get("weights") or {}).items() if k != "levels"}}
    weights["levels"] = {**DEFAULT_WEIGHTS["levels"], **((section.get("weights") or {}).get("levels") or {})}
    for key in ("repeat", "breadth", "evidence", "repeat_cap"):
        if not isinstance(weights[key], (int, float)) or isinstance(weights[key], bool) or weights[key] < 0:
            raise CaseConfigError(f"alerts.cases.weights.{key}: expected a number >= 0")
    for group in ("levels", "rules", "tags"):
        if not isinstance(weights[group], dict) or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in weights[group].values()):
            raise CaseConfigError(f"alerts.cases.weights.{group}: expected a mapping of names to numbers")
    unknown = set(weights["levels"]) - set(LEVELS)
    if unknown:
        raise CaseConfigError(f"alerts.cases.weights.levels: unknown level {sorted(unknown)[0]!r} "
                              f"(levels: {', '.join(LEVELS)})")
    rule_by: dict[str, tuple[str, ...]] = {}
    rule_kinds: dict[str, dict[str, str]] = {}
    if ruleset is not None:
        ids = ids_by_reference(ruleset)
        weights["rules"] = {ids.get(k, k): v for k, v in weights["rules"].items()}
        defaults = rule_defaults(ruleset)
        rule_by = {rid: e["case_by"] for rid, e in defaults.items() if "case_by" in e}
        rule_kinds = {rid: e["case_kinds"] for rid, e in defaults.items() if "case_kinds" in e}
    period = section.get("period", "24h")
    try:
        period_ms = int(parse_duration(period) * 1000)
    except ValueError as exc:
        raise CaseConfigError(f"alerts.cases.period: {exc}") from None
    if period_ms <= 0:
        raise CaseConfigError("alerts.cases.period: must be longer than 0")
    min_level = section.get("min_level", "low")
    if min_level not in LEVELS:
        raise CaseConfigError(f"alerts.cases.min_level: expected one of {', '.join(LEVELS)}, got {min_level!r}")
    return CaseSettings(by=parse_by(section.get("by")), period_ms=period_ms, weights=weights, rule_by=rule_by,
                        rule_kinds=rule_kinds, min_level=min_level)


def parse_by(value: Any) -> dict[str, tuple[str, ...]]:
    """``by`` as a list (each field its own subject kind) or a mapping kind -> fields (first present wins)."""
    if value is None:
        return dict(DEFAULT_BY)
    if isinstance(value, dict):
        if not value:
            raise CaseConfigError("alerts.cases.by: name at least one subject")
        return {str(kind): tuple(_fields(fields, f"alerts.cases.by.{kind}")) for kind, fields in value.items()}
    return {f: (f,) for f in _fields(value, "alerts.cases.by")}


# --- membership and content -------------------------------------------------------------------------
def memberships(alert: Alert, settings: CaseSettings) -> list[tuple[str, str, int, str, str]]:
    """(subject kind, subject, period start ms, case id, field) of every case the alert belongs to: one per
    subject kind whose fields its group carries (pseudonymised values stay pseudonymised), else one for its
    rule and group alone. A rule's ``wardwatch.case_by`` fields replace ``by`` for its alerts (a field of a
    configured kind keeps that kind, so it still meets the other alerts about the same person, unless the
    rule names its kind). A ``user`` subject is an account name (``account_name``)."""
    anchor, start = _period(alert.first_trigger, settings.period_ms)
    kinds = settings.by
    if alert.rule_id in settings.rule_by:
        kind_of = {f: kind for kind, fields in settings.by.items() for f in fields}
        kind_of.update(settings.rule_kinds.get(alert.rule_id, {}))
        kinds = {}
        for f in settings.rule_by[alert.rule_id]:
            kinds.setdefault(kind_of.get(f, f), ())
            kinds[kind_of.get(f, f)] += (f,)
    found = []
    group = alert.group
    for kind, fields in kinds.items():
        for name in fields:  # the first field the group carries a value for
            value = group.get(name)
            if value is not None and value != "":
                subject = account_name(value) if kind == ACCOUNT_KIND and isinstance(value, str) else _subject(value)
                found.append((kind, subject, anchor, _case_id(kind, subject, start), name))
                break
    if not found:
        subject = canonical_json(alert.group) if alert.group else "-"
        found = [(GROUP_SUBJECT, subject, anchor, case_id(f"{GROUP_SUBJECT}:{alert.rule_id}", subject, start),
                  GROUP_SUBJECT)]
    return found


@lru_cache(maxsize=4096)
def _period(first_trigger: str, period_ms: int) -> tuple[int, str]:
    """(start ms, start ISO) of the period containing a trigger time (cached: alerts share periods)."""
    anchor = episode_anchor(timestamp_ms(first_trigger), period_ms)
    return anchor, iso(anchor)


#: ``case_id`` per (kind, subject, period start), cached: the alerts of one case share it (issue 10: 6,621
#: blake2b digests for 818 cases in a SigmaHQ first run)
_case_id = lru_cache(maxsize=8192)(case_id)


#: the subject kind whose values are account names (``account_name``)
ACCOUNT_KIND = "user"


def account_name(value: str) -> str:
    """One account however a source writes it: ``KLINIKUM\\pwagner``, ``pwagner@KLINIKUM.EXAMPLE`` and
    ``PWagner`` are all ``pwagner`` (``split_login``, as the directory index compares logins). Why: a
    Kerberoasting correlation (``TargetUserName``), a VPN gateway and the EHR each spell the same person's
    account their own way, and one person must be one case. A name already plain and lower-case is itself,
    so the ids of such cases never change; a value with no name part (``KLINIKUM\\``) stays whole."""
    return split_login(value)[0] or value.strip().lower()


def _subject(value: Any) -> str:
    return value if isinstance(value, str) else canonical_json(value)


def build_case(cid: str, kind: str, subject: str, anchor_ms: int, members: Sequence[Alert],
               settings: CaseSettings, fields: Mapping[str, str] | None = None) -> Case:
    """A case whose content is a pure function of its members and the settings (not of arrival order)."""
    members = sorted(members, key=lambda a: (a.first_trigger, a.id))
    by_rule: dict[str, list[Alert]] = {}
    for alert in members:
        by_rule.setdefault(alert.rule_id, []).append(alert)
    evidence: list[str] = []
    seen: set[str] = set()
    hidden = 0
    for alert in members:
        for eid in alert.evidence:
            if eid not in seen:
                seen.add(eid)
                evidence.append(eid)
        hidden += max(0, alert.evidence_total - len(alert.evidence))
    rules = []
    for rule_id, alerts in by_rule.items():
        events = len({e for a in alerts for e in a.evidence}) + sum(
            max(0, a.evidence_total - len(a.evidence)) for a in alerts)
        first = alerts[0]
        rules.append({"id": rule_id, "title": first.rule_title, "level": first.rule_level,
                      "alerts": len(alerts), "events": events, "tags": list(first.rule_tags),
                      "description": first.rule_description})
    rules.sort(key=lambda r: (-_level_rank(r["level"]), r["title"], r["id"]))
    parts, reasons = score(rules, len(seen) + hidden, settings.weights)
    # the field that named the subject in the earliest member (user.name, or wardwatch.identity, ...)
    # ``fields``: member alert id -> that field, when the caller already knows it
    if fields is None:
        fields = {a.id: m[4] for a in members for m in memberships(a, settings) if m[3] == cid}
    subject_field = next((fields[a.id] for a in members if a.id in fields), kind)
    return Case(
        id=cid,
        subject_kind=kind,
        subject_field=subject_field,
        subject=subject,
        period_start=iso(anchor_ms),
        period_end=iso(anchor_ms + settings.period_ms),
        first_trigger=min(a.first_trigger for a in members),
        last_trigger=max(a.last_trigger for a in members),
        level=rules[0]["level"],
        score=round(sum(p["points"] for p in parts), 2),
        score_parts=parts,
        reasons=reasons,
        rules=[{k: v for k, v in r.items() if k not in ("tags", "description")} for r in rules],
        alerts=sorted(a.id for a in members),
        evidence=evidence[:CASE_EVIDENCE_CAP],
        evidence_total=len(seen) + hidden,
    )


def _level_rank(level: str) -> int:
    return LEVELS.index(level) if level in LEVELS else LEVELS.index("medium")


def score(rules: Sequence[Mapping[str, Any]], events: int,
          weights: Mapping[str, Any]) -> tuple[list[dict[str, Any]], list[str]]:
    """The score's parts and the case's reasons. Each part is one documented signal:

    - ``level``: each distinct rule adds its level's weight (``weights.levels``);
    - ``repeat``: each further alert of a rule adds ``weights.repeat`` (at most ``repeat_cap`` per rule:
      a flood of one rule must not outrank a critical finding);
    - ``breadth``: each distinct rule beyond the first adds ``weights.breadth`` (different signals about the
      same subject corroborate each other);
    - ``evidence``: ``weights.evidence * log10(events)`` (many accesses weigh more, with diminishing returns);
    - ``rule`` / ``tag``: site-chosen extra points per rule id/name and per Sigma tag.
    """
    parts: list[dict[str, Any]] = []
    reasons: list[str] = []
    levels = weights["levels"]
    for rule in rules:
        level = rule["level"] if rule["level"] in levels else "medium"
        parts.append({"signal": "level", "detail": f"{rule['title']} [{rule['level']}]",
                      "points": float(levels[level])})
        if rule["alerts"] > 1 and weights["repeat"]:
            repeats = min(rule["alerts"] - 1, int(weights["repeat_cap"]))
            parts.append({"signal": "repeat", "detail": f"{rule['title']}: {rule['alerts']} alerts",
                          "points": round(repeats * float(weights["repeat"]), 2)})
        if rule["id"] in weights["rules"]:
            parts.append({"signal": "rule", "detail": rule["id"], "points": float(weights["rules"][rule["id"]])})
        for tag in rule.get("tags", ()):
            if tag in weights["tags"]:
                parts.append({"signal": "tag", "detail": f"{rule['title']}: {tag}",
                              "points": float(weights["tags"][tag])})
        why = f" ({_first_sentence(rule.get('description', ''))})" if rule.get("description") else ""
        reasons.append(f"{rule['title']} [{rule['level']}]: {rule['alerts']} alert(s), "
                       f"{rule['events']} event(s){why}")
    if len(rules) > 1 and weights["breadth"]:
        parts.append({"signal": "breadth", "detail": f"{len(rules)} different rules",
                      "points": round((len(rules) - 1) * float(weights["breadth"]), 2)})
        reasons.append(f"{len(rules)} different rules fired about this subject in the period")
    if events > 1 and weights["evidence"]:
        parts.append({"signal": "evidence", "detail": f"{events} events",
                      "points": round(float(weights["evidence"]) * math.log10(events), 2)})
    return parts, reasons


def _first_sentence(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    cut = text.find(". ")
    text = text[: cut + 1] if cut >= 0 else text
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --- the builder (an outbox consumer) ----------------------------------------------------------------
class CaseBuilder:
    """Consumes alert revisions from the store's outbox and keeps the cases in the store up to date.

    Looks like a sink to ``deliver_pending`` (name ``@cases``, placed first), so cases are built by the same
    at-least-once loop that feeds the sinks and acknowledged only after they are stored.
    """

    name = CASE_BUILDER
    wants = frozenset({"alerts"})

    #: Memberships remembered across batches (cleared when full): a case's earlier members are read back
    #: from the store in every batch that touches the case again, and their memberships do not change.
    MEMBERSHIP_CACHE = 50_000
    #: Alert revisions fetched per batch (the delivery loop's default is 1,000): each batch rebuilds every case
    #: it touches from all of its members, so a case about one busy account was rebuilt, its earlier members
    #: read back from the store, and stored as one more revision, once per 1,000 alerts (issue 10: the
    #: SigmaHQ first run, 6,720 alerts in 7 batches, made 890 case revisions of 818 cases and read 5,577
    #: members back). Memory stays bounded by this batch.
    fetch_size = 10_000

    def __init__(self, store: Store, settings: CaseSettings):
        self.store = store
        self.settings = settings
        self._memberships: dict[tuple[str, int, str, str], list[tuple[str, str, int, str, str]]] = {}

    def deliver(self, alerts: Sequence[Alert]) -> None:
        cases = self.update(alerts)
        if cases:
            self.store.put_cases(cases)

    def update(self, alerts: Iterable[Alert]) -> list[Case]:
        """The cases the given alert revisions touch, recomputed from all of their members. Unchanged
        cases are returned too (same revision): storing them again is idempotent and repairs an outbox
        entry a crash may have lost."""
        fresh: dict[str, Alert] = {}
        for alert in alerts:
            if not self.settings.in_cases(alert):
                continue
            if alert.id not in fresh or alert.revision >= fresh[alert.id].revision:
                fresh[alert.id] = alert
        touched: dict[str, tuple[str, str, int, set[str]]] = {}
        known = self._memberships
        if len(known) > self.MEMBERSHIP_CACHE:
            known.clear()

        def member_of(alert: Alert) -> list[tuple[str, str, int, str, str]]:
            # what memberships() reads of an alert: its rule, group and first trigger (the group key names
            # the group; the id and revision make a stale entry impossible even if a store were replaced)
            key = (alert.id, alert.revision, alert.first_trigger, alert.group_key)
            found = known.get(key)
            if found is None:
                found = known[key] = memberships(alert, self.settings)
            return found

        for alert in fresh.values():
            for kind, subject, anchor, cid, _ in member_of(alert):
                touched.setdefault(cid, (kind, subject, anchor, set()))[3].add(alert.id)
        out: list[Case] = []
        found = self.store.get_cases(sorted(touched))  # one read for the batch (818 queries in a SigmaHQ run)
        stored_cases = {cid: found.get(cid) for cid in sorted(touched)}
        # A member of this batch is taken as handed over (a newer revision of it, if any, is still in the
        # outbox and updates the case in its turn, so the final content is the same); the members this batch
        # did not hand over are read from the store, all in one ``get_alerts`` (issue 10: a SigmaHQ first
        # run read 5,577 of them one ``get_alert`` at a time).
        elsewhere = sorted({aid for case in stored_cases.values() if case is not None
                            for aid in case.alerts if aid not in fresh})
        earlier = self.store.get_alerts(elsewhere) if elsewhere else {}
        for cid, (kind, subject, anchor, new_ids) in sorted(touched.items()):
            stored = stored_cases[cid]
            member_ids = set(new_ids) | set(stored.alerts if stored else ())
            members = []
            fields: dict[str, str] = {}
            for aid in sorted(member_ids):
                alert = fresh.get(aid) or earlier.get(aid)
                # a member whose latest revision moved to another period (a late earlier trigger) leaves
                name = next((m[4] for m in member_of(alert) if m[3] == cid), None) if alert else None
                if alert is not None and name is not None:
                    members.append(alert)
                    fields[aid] = name
            if not members:
                continue
            case = build_case(cid, kind, subject, anchor, members, self.settings, fields)
            if stored is not None:
                case.status, case.revision = stored.status, stored.revision
                if case.to_dict() != stored.to_dict():
                    case.revision = stored.revision + 1
            out.append(case)
        return out

    def close(self) -> None:
        pass


def with_case_builder(config: Mapping[str, Any], store: Store, ruleset: Any, sinks: list[Any]) -> list[Any]:
    """The configured sinks, preceded by the case builder when ``alerts.cases.enabled`` (the default)."""
    section = config["alerts"].get("cases") or {}
    if not section.get("enabled", True):
        return sinks
    from engine.alerts.hold import HoldingCaseBuilder, hold_specs

    settings, holds = case_settings(section, ruleset), hold_specs(ruleset, section.get("hold"))
    return [HoldingCaseBuilder(store, settings, holds) if holds else CaseBuilder(store, settings), *sinks]
