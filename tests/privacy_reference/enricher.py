"""The privacy enricher's per-access path as it was before the batch memories (issue 11, ingest cost).

A frozen copy of ``PrivacyEnricher._enrich`` and its helpers at 2670388, run event by event with no memory
between accesses: the oracle of tests/test_privacy_fast_path.py. It subclasses today's enricher only for its
constructor (the sources and options it holds); every method that decides a flag is the old one. Do not
change it to follow the new code: it is what the new code must agree with.
"""

from __future__ import annotations

from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any

from engine.enrich.lookups import PatientFacts, StaffMember, contact_key, fold
from engine.enrich.privacy import SENSITIVE_FLAGS, PrivacyEnricher
from engine.events import Event, timestamp_ms


def _sensitive(event: Event) -> bool:
    get = event.get
    for name in SENSITIVE_FLAGS:  # a loop, not any(genexpr): this runs for every access
        if get(name) is True:
            return True
    return False


class ReferencePrivacyEnricher(PrivacyEnricher):
    """Today's constructor, the old per-access decisions."""

    def __init__(self, **kwargs: Any):
        super().__init__(**kwargs)
        self._reference_state()

    @classmethod
    def beside(cls, enricher: PrivacyEnricher) -> "ReferencePrivacyEnricher":
        """The oracle over an enricher's sources and options (built by ``engine.app``, paths resolved). The
        ward-work memory is its own: the two must not feed each other's."""
        from tests.privacy_reference.ward_work import ReferenceWardWork

        ref = cls.__new__(cls)
        ref.__dict__.update(enricher.__dict__)
        if enricher._ward_work is not None:
            ref._ward_work = ReferenceWardWork(enricher._ward_work.window_ms)
        ref._reference_state()
        return ref

    def _reference_state(self) -> None:
        self._ref_local_date = lru_cache(maxsize=8192)(self._to_local_date)
        self._ref_minute_ms: dict[str, int] = {}

    def enrich_many(self, events: list[Event]) -> list[Event]:
        return [self.enrich(event) for event in events]

    def enrich(self, event: Event) -> Event:
        if self.datasets is not None and event.get("event.dataset") not in self.datasets:
            return event
        self._enrich(event)   # no try/except: the oracle must not hide its own errors
        return event

    def _to_local_date(self, timestamp: str) -> date:
        return self._to_local(timestamp).date()

    def _to_local(self, timestamp: str) -> datetime:
        dt = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(self.tz)

    def _past_grace(self, timestamp: str) -> bool:
        """On the day after the end date: is the access past the grace hours (local time)? Asked only then."""
        local = self._to_local(timestamp)
        return local.hour + local.minute / 60 + local.second / 3600 >= self.terminated_grace_hours

    def _member(self, event: Event) -> StaffMember | None:
        if self.roster is None:
            return None
        for value in self._user_values(event):
            member = self.roster.member(value)
            if member is not None:
                return member
        return None

    def _user_values(self, event: Event) -> list[str]:
        """The event's user: its non-empty string ``user_fields``, in their order (roster lookup, ward-work
        key, care-team keys all read the same)."""
        return [value for f in self.user_fields if isinstance(value := event.get(f), str) and value]

    def _patient(self, patient_id: str) -> PatientFacts | None:
        for source in self.patients:
            facts = source.get(patient_id)
            if facts is not None:
                return facts
        return None

    def _enrich(self, event: Event) -> None:
        ts = event.get("@timestamp")
        day = self._ref_local_date(ts) if isinstance(ts, str) and ts else None
        member = self._member(event)
        has_user = bool(self._user_values(event))
        if self.roster is not None and self.roster.loaded and has_user:
            event["ehr.user.on_roster"] = member is not None
        if member is not None:
            if member.role:
                event["ehr.user.role"] = member.role
            if member.department:
                event["ehr.user.department"] = member.department
                event["ehr.user.emergency_department"] = fold(member.department) in self.emergency_departments
            if day is not None:
                event["ehr.user.terminated"] = member.end_date is not None and day > member.end_date and (
                    (day - member.end_date).days > 1 or self._past_grace(ts))

        patient_id = event.get(self.patient_field)
        if not isinstance(patient_id, str) or not patient_id:
            return
        facts = self._patient(patient_id) if self.patients else None
        vip = facts.vip if facts else False
        if self.vip_list is not None and patient_id in self.vip_list:
            vip = True
        if facts is not None or self.vip_list is not None:
            event["ehr.patient.vip"] = vip
        if facts is not None:
            event["ehr.patient.confidential"] = facts.confidential
            if facts.deceased_date is not None and day is not None:
                event["ehr.patient.deceased"] = day > facts.deceased_date
                if day > facts.deceased_date:
                    event["ehr.patient.days_since_death"] = (day - facts.deceased_date).days
            elif facts.deceased:
                event["ehr.patient.deceased"] = True
            else:
                event["ehr.patient.deceased"] = False

        if self.roster is not None and self.roster.loaded and getattr(self.roster, "knows_patients", True):
            is_self = member is not None and member.patient_id == patient_id
            if member is not None:
                event["ehr.relationship.self"] = is_self
            event["ehr.relationship.patient_is_employee"] = (
                not is_self and self.roster.is_employee_patient(patient_id)
            )
        if member is not None and facts is not None:
            if member.family_name and facts.family_name:
                self._surname_flags(event, member, facts)
            if member.postal_code and facts.postal_code:
                event["ehr.relationship.same_postcode"] = member.postal_code == facts.postal_code
            if member.address and facts.address:
                event["ehr.relationship.same_address"] = member.address == facts.address
        if self.encounters and isinstance(ts, str) and ts:
            user = member.keys[0] if member is not None and member.keys else self._user_key(event)
            if self.encounter_flags_all or _sensitive(event):
                self._care_context(event, patient_id, ts, member, user)
            elif self._ward_work is not None and user:
                # every access of a roster user feeds the ward-work memory, flagged or not; the department
                # found for it is written too (held alerts look at where the user worked next: hold.py)
                ts_ms = self._timestamp_ms(ts)
                unit = self._current_unit(patient_id, ts_ms)
                if unit is not None:
                    event["ehr.patient.department"] = unit[0]
                self._ward_work.add(user, ts_ms, unit[1] if unit is not None else None, patient_id)

    def _surname_flags(self, event: Event, member: StaffMember, facts: PatientFacts) -> None:
        """``same_last_name`` as before, and ``same_last_name_rare`` when counts are known: the rarest name
        (whole or part) the two share is carried by at most ``max(rare_surname_max_count,
        rare_surname_max_share x patients)`` patients. Why the rarest: "Meyer-Kowalczyk" opening
        "Kowalczyk" is as telling as Kowalczyk itself, however common Meyer is."""
        # == surname_keys(member) & surname_keys(facts), without building two sets for every access
        shared = member.name_parts & facts.name_parts
        if member.family_name == facts.family_name:
            shared = shared | {member.family_name}
        event["ehr.relationship.same_last_name"] = bool(shared)
        if self.surname_frequencies is None:
            return
        freq = self.surname_frequencies.surname_frequencies()
        if freq is None or freq.total <= 0:
            return  # could not tell how common the name is: the flag stays absent
        if not shared:
            event["ehr.relationship.same_last_name_rare"] = False
            return
        limit = max(self.rare_surname_max_count, self.rare_surname_max_share * freq.total)
        event["ehr.relationship.same_last_name_rare"] = min(freq.count(k) for k in shared) <= limit

    def _timestamp_ms(self, ts: str) -> int:
        """``engine.events.timestamp_ms`` for the canonical form ingest gives every event, minus its regex check
        (a third of the encounter lookup's cost); anything else takes the general path."""
        if len(ts) == 24 and ts[19] == "." and ts[23] == "Z":
            minute = self._ref_minute_ms.get(ts[:16])
            if minute is None:
                if len(self._ref_minute_ms) > 100_000:
                    self._ref_minute_ms.clear()
                minute = self._ref_minute_ms[ts[:16]] = timestamp_ms(ts[:16] + ":00.000Z")
            try:
                return minute + int(ts[17:19]) * 1000 + int(ts[20:23])
            except ValueError:
                pass
        return timestamp_ms(ts)

    def _user_key(self, event: Event) -> str | None:
        """The event's user (first of ``user_fields``), folded: the ward-work memory's key off the roster."""
        values = self._user_values(event)
        return self._fold(values[0]) if values else None

    def _current_unit(self, patient_id: str, ts_ms: int) -> tuple[str, str] | None:
        """(mapped name, folded key) of the patient's latest-started segment covering ``ts_ms``."""
        best = None
        for source in self.encounters:
            if source.loaded:
                found = source.index.department_at(patient_id, ts_ms)
                if found is not None and (best is None or found[0] >= best[0]):
                    best = found
        return self._unit(best[1]) if best is not None else None

    def _care_context(self, event: Event, patient_id: str, ts: str, member: StaffMember | None,
                      user: str | None = None) -> None:
        """Encounter flags: where the patient is, and whether the user treats them (docs/enrichment.md).

        One pass over the patient's segments near the access (plain loops: this runs for every access)."""
        ts_ms = self._timestamp_ms(ts)
        near: list[Any] = []
        loaded = related = False
        for source in self.encounters:
            if source.loaded:
                loaded = True
                related = related or source.index.has_related
                near += source.index.active(patient_id, ts_ms, self.grace_before_ms, self.grace_after_ms)
        if not loaded:
            return  # could not tell: no encounter data yet
        user_dept = (member.department if member is not None else None) or event.get("wardwatch.user.department")
        mine = self._fold(user_dept) if isinstance(user_dept, str) and user_dept else None
        keys = set(member.keys) if member is not None else set()
        keys.update(map(self._fold, self._user_values(event)))
        active = same = team = False
        department, department_key, department_start = None, None, -1
        encounter_class, class_start = None, -1
        for seg in near:
            if seg.department:
                name, key = self._unit(seg.department)
                same = same or key == mine
            if not seg.care_team_only and (seg.start_ms <= ts_ms < seg.end_ms or seg.start_ms == seg.end_ms == ts_ms):
                active = True
                if seg.department and seg.start_ms >= department_start:
                    department, department_key, department_start = name, key, seg.start_ms
                if seg.encounter_class and seg.start_ms >= class_start:
                    encounter_class, class_start = seg.encounter_class, seg.start_ms
            team = team or not keys.isdisjoint(seg.participants)
        event["ehr.patient.encounter_active"] = active
        if not active:
            ends = [e for source in self.encounters if source.loaded
                    for e in [source.index.last_end(patient_id, ts_ms)] if e is not None]
            if ends:
                event["ehr.patient.days_since_discharge"] = (ts_ms - max(ends)) // 86_400_000
        if department is not None:
            event["ehr.patient.department"] = department
        if self._ward_work is not None and user:
            if department_key is not None:
                event["ehr.relationship.worked_department"] = self._ward_work.others(
                    user, ts_ms, department_key, patient_id, self.ward_work_min_patients) >= self.ward_work_min_patients
            self._ward_work.add(user, ts_ms, department_key, patient_id)
        if encounter_class is not None:
            event["ehr.patient.encounter_class"] = encounter_class
        if mine is not None:
            event["ehr.relationship.same_department"] = same or (active and self._floats(mine))
        if keys:
            event["ehr.relationship.care_team"] = team
            if related:
                if member is not None and member.patient_id:
                    keys.add(self._fold(member.patient_id))
                contact = contact_key(member.family_name, member.address) if member is not None else None
                if contact is not None:  # a Patient.contact (added with it: the reference follows)
                    keys.add(contact)
                event["ehr.relationship.related_person"] = any(
                    not keys.isdisjoint(source.index.related_keys(patient_id)) for source in self.encounters
                    if source.loaded)


