"""What the encounters say about one patient at one instant, worked out once for the stretch of time it holds.

Why: the privacy enricher (``engine.enrich.privacy``) asks, for every access, where the patient is, whether
the stay is active and who is on the team. A record is opened again and again while nothing in the
patient's encounters changes: a chart open writes several audit events, a ward round opens the same
patients each morning. Every answer here changes only where one of the patient's segments starts or ends,
or where a grace period around it does. So one answer holds between two such boundaries. It is kept with
that interval ``[lo, hi)`` (a :class:`CareMoment`) and reused for every access inside it. What depends on
the user (same department, care team, related person) is a set test per access against the moment's sets.

The memory is one moment per patient: the one last asked for. :class:`CareMoments` is replaced, never
cleared, whenever a source refreshes (the enricher's ``refresh``): a thread still enriching with the old one
only fills a memory nobody reads again.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, Sequence

if TYPE_CHECKING:
    from engine.enrich.encounters import EncounterSource, Segment

#: before the first and after the last boundary of a patient
_NEVER, _FOREVER = -(2 ** 63), 2 ** 63


@dataclass(frozen=True, slots=True)
class CareMoment:
    """The patient's encounter facts for every access at ``lo <= ts_ms < hi``."""

    lo: int
    hi: int
    #: some encounter source has data: without it no flag is set ("could not tell")
    loaded: bool
    #: some loaded source holds RelatedPersons (``ehr.relationship.related_person`` is decided at all)
    related: bool
    #: folded department keys of the segments near the access (grace periods included)
    near_units: frozenset[str]
    #: every participant key of those segments (CareTeams included)
    participants: frozenset[str]
    #: the patient's listed related persons' keys, of every loaded source
    related_keys: frozenset[str]
    #: a stay covers the access (no grace)
    active: bool
    #: (mapped name, folded key) of the latest-started active stay with a department
    department: str | None
    department_key: str | None
    encounter_class: str | None
    #: when the latest stay ended at or before the access (``days_since_discharge`` when not active)
    last_end: int | None
    #: (mapped name, folded key) of the latest-started stay segment covering the access exactly (ward work)
    unit_at: tuple[str, str] | None


class CareMoments:
    """The last :class:`CareMoment` asked for, per patient, over the enricher's encounter sources."""

    def __init__(self, sources: Sequence[EncounterSource], unit: Callable[[str], tuple[str, str]],
                 before_ms: int, after_ms: int):
        self.sources, self.unit = sources, unit
        self.before_ms, self.after_ms = before_ms, after_ms
        self._last: dict[str, CareMoment] = {}

    def at(self, patient_id: str, ts_ms: int) -> CareMoment:
        moment = self._last.get(patient_id)
        if moment is not None and moment.lo <= ts_ms < moment.hi:
            return moment
        if len(self._last) >= 200_000:  # bounded: a year of distinct patients must not grow the memory
            self._last.clear()
        moment = self._last[patient_id] = self.compute(patient_id, ts_ms)
        return moment

    def compute(self, patient_id: str, ts_ms: int) -> CareMoment:
        """The moment around ``ts_ms``, from the sources themselves (``at`` remembers it)."""
        before, after = self.before_ms, self.after_ms
        lo, hi = _NEVER, _FOREVER
        near: list[Segment] = []
        related_keys: set[str] = set()
        loaded = related = False
        ends: list[int] = []
        best_unit: tuple[int, str] | None = None
        for source in self.sources:
            if not source.loaded:
                continue
            loaded = True
            index = source.index
            related = related or index.has_related
            near += index.active(patient_id, ts_ms, before, after)
            end = index.last_end(patient_id, ts_ms)
            if end is not None:
                ends.append(end)
            found = index.department_at(patient_id, ts_ms)
            if found is not None and (best_unit is None or found[0] >= best_unit[0]):
                best_unit = found
            related_keys |= index.related_keys(patient_id)
            # every predicate above is "ts_ms >= b" for one of these b: between two of them nothing changes
            for seg in index.segments_of(patient_id):
                for b in (seg.start_ms - before, seg.start_ms, seg.start_ms + 1, seg.end_ms, seg.end_ms + after):
                    if b <= ts_ms:
                        if b > lo:
                            lo = b
                    elif b < hi:
                        hi = b
        units: set[str] = set()
        participants: set[str] = set()
        active = False
        department = department_key = encounter_class = None
        department_start = class_start = -1
        for seg in near:
            if seg.department:
                name, key = self.unit(seg.department)
                units.add(key)
            if not seg.care_team_only and (seg.start_ms <= ts_ms < seg.end_ms or seg.start_ms == seg.end_ms == ts_ms):
                active = True
                if seg.department and seg.start_ms >= department_start:
                    department, department_key, department_start = name, key, seg.start_ms
                if seg.encounter_class and seg.start_ms >= class_start:
                    encounter_class, class_start = seg.encounter_class, seg.start_ms
            participants |= seg.participants
        return CareMoment(lo, hi, loaded, related, frozenset(units), frozenset(participants),
                          frozenset(related_keys), active, department, department_key, encounter_class,
                          max(ends) if ends else None, self.unit(best_unit[1]) if best_unit is not None else None)
