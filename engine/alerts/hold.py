"""Held alerts: look-ahead for rules whose false positives are only explained by what the user does next.

A nurse sent to help on another ward opens a co-worker's or a VIP's chart there first: at ingest only the
past is known, so ``ehr.relationship.worked_department`` is false and the rule fires. A rule that declares
``wardwatch: {hold: {for: 2h, min_patients: 1}}`` has its alerts *held* out of cases until the store's
event time has passed the alert's last trigger by ``for``; then each is decided on the stored events:
*spared* (kept out of cases) when, after every evidence access, the same user opened at least
``min_patients`` other patients of that access's ``ehr.patient.department`` within ``for``; released into
its cases otherwise. Why here and not at ingest: enrichment flows one way and cannot wait for the future;
the alert is already stored, so holding it loses nothing.

Guarantees. The alert itself is stored, in ``alerts list`` and in every alert sink as before; only case
membership waits. The held ids live in the store (checkpoint row ``@hold``) and are written before the
delivery loop acknowledges them, so a restart decides them later. "Event time has passed" means the store
holds an event of the rule's datasets at or after ``last_trigger + for`` (never wall time): the same events
give the same decisions. ``run --once`` decides the rest with the events it has (``decide_held``). Anything
uncertain is released, never spared: no department, capped evidence, an evidence event not found, an alert
already in a case. Spared alerts stay out of cases unless a later revision (new evidence) is decided otherwise.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping, Sequence

from engine.alerts.cases import (CaseBuilder, CaseConfigError, CaseSettings, _custom_field, ids_by_reference,
                                 memberships, rule_objects)
from engine.alerts.model import Alert
from engine.events import format_timestamp, from_timestamp_ms, timestamp_ms
from engine.logs import get_logger
from engine.store.base import RuleCheckpoint, SearchQuery, Store

log = get_logger("wardwatch.cases")

#: the checkpoint row that keeps the held alert ids (no rule has this id)
HOLD_ROW = "@hold"
USER, PATIENT, DEPARTMENT = "user.name", "ehr.patient.id", "ehr.patient.department"


@dataclass(frozen=True)
class HoldSpec:
    """A rule's ``wardwatch.hold``: how long after the last trigger, how many other patients spare it."""

    for_ms: int
    min_patients: int
    #: the rule's datasets: whose event time decides that the hold has passed (empty: any dataset's)
    datasets: tuple[str, ...] = field(default=(), compare=False)


def _parse_spec(spec: Any, where: str) -> HoldSpec:
    """One ``{for: 2h, min_patients: 1}``, from a rule file or the site config; ``where`` names it in errors."""
    from engine.config import parse_duration

    if not isinstance(spec, dict) or set(spec) - {"for", "min_patients"}:
        raise CaseConfigError(f"{where}: expected {{for: 2h, min_patients: 1}}")
    try:
        for_ms = int(parse_duration(spec.get("for", "2h")) * 1000)
    except ValueError as exc:
        raise CaseConfigError(f"{where}.for: {exc}") from None
    n = spec.get("min_patients", 1)
    if not isinstance(n, int) or isinstance(n, bool) or n < 1 or for_ms <= 0:
        raise CaseConfigError(f"{where}: for must be longer than 0 and min_patients an integer >= 1")
    return HoldSpec(for_ms, n)


def site_holds(section: Mapping[str, Any]) -> dict[str, HoldSpec | None]:
    """``alerts.cases.hold``: rule id or name -> its hold, or None for ``false`` (no hold for that rule).

    Why in the site config as well as in the rule file: a site tunes or switches off a shipped rule's hold
    without editing (and then maintaining) its own copy of the rule, as ``alerts.suppression`` does for
    ``wardwatch.suppress``."""
    found: dict[str, HoldSpec | None] = {}
    for key, spec in section.items():
        where = f"alerts.cases.hold.{key}"
        if spec is False or spec is None:
            found[str(key)] = None
        elif spec is True:
            raise CaseConfigError(f"{where}: expected {{for: 2h, min_patients: 1}} or false")
        else:
            found[str(key)] = _parse_spec(spec, where)
    return found


def hold_specs(ruleset: Any, site: Mapping[str, Any] | None = None) -> dict[str, HoldSpec]:
    """Rule id -> its hold: the rule files' ``wardwatch: {hold: {for: 2h, min_patients: 1}}``, under the
    site's ``alerts.cases.hold`` (the site wins; it names a rule by id or by name). A site entry naming no
    loaded rule is an error: a typo must not leave a hold silently on (or off)."""
    found: dict[str, HoldSpec] = {}
    for obj in rule_objects(ruleset):
        custom = _custom_field(obj)
        if not isinstance(custom, dict) or "hold" not in custom:
            continue
        found[obj.id] = _parse_spec(custom["hold"], f"{getattr(obj, 'path', '?')}: rule {obj.id}: wardwatch.hold")
    ids = ids_by_reference(ruleset)
    for key, spec in site_holds(site or {}).items():
        if key not in ids:
            raise CaseConfigError(f"alerts.cases.hold.{key}: no loaded rule or correlation has this id or name")
        if spec is None:
            found.pop(ids[key], None)
        else:
            found[ids[key]] = spec
    datasets_for = getattr(ruleset, "datasets_for", None)
    if datasets_for is not None:   # a lagging EHR feed must not be overtaken by the VPN feed's clock
        found = {rid: HoldSpec(spec.for_ms, spec.min_patients, tuple(datasets_for(rid))) for rid, spec in found.items()}
    return found


class HoldingCaseBuilder(CaseBuilder):
    """The case builder with held rules: their alerts reach cases only once decided (module docstring)."""

    def __init__(self, store: Store, settings: CaseSettings, holds: Mapping[str, HoldSpec]):
        super().__init__(store, settings)
        self.holds = dict(holds)
        self._held: set[str] | None = None   # loaded from the store on first use
        self._spared: dict[str, dict[str, Any]] = {}   # alert id -> why it was spared (``alerts show``)

    # -- persistence -------------------------------------------------------------------------------
    def _held_ids(self) -> set[str]:
        if self._held is None:
            row = self.store.get_checkpoints([HOLD_ROW]).get(HOLD_ROW)
            extra = (row.extra or {}) if row is not None else {}
            self._held = set(extra.get("held", []))
            self._spared = dict(extra.get("spared", {}))
        return self._held

    def _save(self) -> None:
        extra = {"held": sorted(self._held_ids()), "spared": dict(sorted(self._spared.items()))}
        self.store.commit_rule_runs([(RuleCheckpoint(HOLD_ROW, None, extra), [])])

    # -- the delivery loop's hooks -----------------------------------------------------------------
    def deliver(self, alerts: Sequence[Alert]) -> None:
        held = self._held_ids()
        passed: list[Alert] = []
        changed = False
        for alert in alerts:
            if alert.rule_id in self.holds and self.settings.in_cases(alert) and not self._in_a_case(alert):
                if alert.id not in held:
                    held.add(alert.id)
                    changed = True
            else:
                passed.append(alert)
        if changed:
            self._save()   # before the loop acknowledges: a crash now re-delivers, never drops
        super().deliver(passed)
        self._decide(final=False)

    def ready(self, record: str) -> bool:
        """Called by the delivery loop every round before it fetches: decides the held alerts whose hold
        has passed even when no new alert arrives. Never blocks the outbox (always True)."""
        if record == "alert" and self._held_ids():
            self._decide(final=False)
        return True

    def decide_held(self) -> None:
        """``run --once``: decide every held alert with the events the store has now."""
        self._decide(final=True)

    # -- decisions -----------------------------------------------------------------------------------
    def _decide(self, final: bool) -> None:
        held = self._held_ids()
        if not held:
            return
        latest = self.store.get_alerts(sorted(held))
        release: list[Alert] = []
        done: set[str] = set()
        spared = 0
        not_before: int | None = None   # a hold end the store has not reached: none later is reached either

        def end_of(aid: str) -> int:
            alert, spec = latest.get(aid), None
            if alert is not None:
                spec = self.holds.get(alert.rule_id)
            return timestamp_ms(alert.last_trigger) + spec.for_ms if alert is not None and spec else 0

        for aid in sorted(held, key=lambda a: (end_of(a), a)):   # earliest hold end first
            alert = latest.get(aid)
            if alert is None:            # purged by retention: nothing left to decide
                done.add(aid)
                continue
            spec = self.holds.get(alert.rule_id)
            if spec is None:             # the rule lost its hold: release
                release.append(alert)
                done.add(aid)
                continue
            if not final:
                end = timestamp_ms(alert.last_trigger) + spec.for_ms
                if not_before is not None and end >= not_before or not self._passed(alert, spec):
                    not_before = end if not_before is None else min(not_before, end)
                    continue
            done.add(aid)
            accesses = self._spare(alert, spec)
            if accesses:
                spared += 1
                self._spared[aid] = {"revision": alert.revision, "hold_seconds": spec.for_ms // 1000,
                                     "min_patients": spec.min_patients, "accesses": accesses}
            else:
                self._spared.pop(aid, None)
                release.append(alert)
        if not done:
            return
        if release:
            super().deliver(release)
        held -= done
        if self._spared:   # forget the reasons of alerts retention has removed since
            kept = self.store.get_alerts(sorted(self._spared))
            self._spared = {aid: why for aid, why in self._spared.items() if aid in kept}
        self._save()
        log.info("held alerts decided", released=len(release), spared=spared, still_held=len(held))

    def _in_a_case(self, alert: Alert) -> bool:
        for _kind, _subject, _anchor, cid, _name in memberships(alert, self.settings):
            case = self.store.get_case(cid)
            if case is not None and alert.id in case.alerts:
                return True
        return False

    def _passed(self, alert: Alert, spec: HoldSpec) -> bool:
        """Has the store's event time passed the hold? (an event of the rule's datasets at or after last
        trigger + for: another feed running ahead says nothing about the accesses still to come)"""
        after = format_timestamp(from_timestamp_ms(timestamp_ms(alert.last_trigger) + spec.for_ms))
        query = SearchQuery(datasets=spec.datasets or None, start=after, fields=[])
        return next(iter(self.store.search(query)), None) is not None

    def _spare(self, alert: Alert, spec: HoldSpec) -> int:
        """How many accesses the user's later ward work explains: all of the alert's, or 0 (release it)."""
        if not alert.evidence or alert.evidence_total > len(alert.evidence):
            return 0
        end = format_timestamp(from_timestamp_ms(timestamp_ms(alert.last_trigger) + spec.for_ms + 1))
        evidence = set(alert.evidence)
        found: dict[str, tuple[int, Any, Any, Any]] = {}
        reads: list[tuple[int, Any, Any, Any]] = []    # (ms, user, department, patient)
        query = SearchQuery(datasets=spec.datasets or None, start=alert.first_trigger, end=end,
                            fields=[USER, PATIENT, DEPARTMENT], fields_at_least=True)
        for event in self.store.search(query):
            row = (timestamp_ms(event["@timestamp"]), event.get(USER), event.get(DEPARTMENT), event.get(PATIENT))
            if event.get("event.id") in evidence:
                found[event["event.id"]] = row
            if row[1] and row[2]:
                reads.append(row)
        if len(found) < len(evidence):
            return 0
        return len(found) if all(_worked_after(row, reads, spec) for row in found.values()) else 0


def hold_state(store: Store, alert_id: str) -> dict[str, Any] | None:
    """What the hold did with an alert, for ``alerts show``: ``{"state": "held"}`` while it waits, ``{"state":
    "spared", "revision", "hold_seconds", "min_patients", "accesses"}`` once kept out of cases, else None
    (released into its cases, or never held). A decision explains itself: a privacy officer must be able to
    ask why an alert about a colleague's chart is in no case."""
    row = store.get_checkpoints([HOLD_ROW]).get(HOLD_ROW)
    extra = (row.extra or {}) if row is not None else {}
    if alert_id in set(extra.get("held", [])):
        return {"state": "held"}
    why = extra.get("spared", {}).get(alert_id)
    return {"state": "spared", **why} if why else None


def _worked_after(access: tuple[int, Any, Any, Any], reads: Iterable[tuple[int, Any, Any, Any]],
                  spec: HoldSpec) -> bool:
    """Did the user open ``min_patients`` other patients of the access's department within the hold after it?"""
    ts, user, dept, patient = access
    if not user or not dept:
        return False
    others = {p for t, u, d, p in reads if u == user and d == dept and p != patient and ts < t <= ts + spec.for_ms}
    return len(others) >= spec.min_patients
