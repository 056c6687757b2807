"""Ordinary EHR accesses: who works when, and which charts they open on a shift.

Why shifts first: after-hours, bulk and many-users rules are judged against the rhythm of real work, so
accesses are generated inside each person's shifts (early/late/night rota, permanent nights, ED 12-hour
shifts, office hours, weekend duty) and on the patients their department has in a bed at that time.
Office roles open discharged and deceased patients' charts (billing, HIM, coding follow-up), research
runs an occasional registry export: all legitimate, all things a privacy rule may trip on.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Collection, Iterable

from bench.hospital.population import EMERGENCY, FLOAT_POOL, WARDS, Encounter, Hospital, Staff, local_ts
from engine.enrich.privacy import PrivacyOptions


#: share of physicians' consults whose request names the consultant in the encounter (the rest: nobody)
CONSULT_RECORDED = 0.7


@dataclasses.dataclass
class Access:
    ts: float                      # epoch seconds, UTC
    login: str
    user_id: str
    action: str                    # read | search-type | print | export
    patient_id: str | None = None
    btg: bool = False
    emergency: bool = False        # purpose of use ETREAT
    audit_id: str = ""
    ip: str = "10.20.0.1"


def shifts(s: Staff, h: Hospital) -> list[tuple[float, float]]:
    """The shifts (start, end in epoch seconds) ``s`` works in the period, from the rota."""
    rng = random.Random(f"{h.seed}-{s.user_id}")  # per person: incidents ask for the same rota again
    out = []
    for i in range(h.days):
        day = h.start + timedelta(days=i)
        if s.end_date and day.isoformat() > s.end_date:
            break
        if rng.random() < 0.08:  # leave, sickness, training
            continue
        weekday, phase = day.weekday(), (i + s.offset)
        start_hour: float | None = None
        length = 8.0
        if s.schedule == "office":
            if weekday < 5:
                start_hour, length = rng.uniform(7.25, 9.0), rng.uniform(7.5, 8.5)
        elif s.schedule == "day":
            if weekday < 5:
                start_hour, length = rng.uniform(7.25, 8.25), rng.uniform(8.5, 10.0)
                if s.role == "physician" and rng.random() < 0.1:   # late duty until 21:00
                    start_hour, length = 12.0, 9.0
                if s.role == "student":
                    length = 7.0
            elif s.role == "physician" and rng.random() < 0.1:    # weekend duty
                start_hour, length = 8.0, 10.0
        elif s.schedule == "rotating":
            if phase % 7 not in (5, 6):
                start_hour = (6.0, 14.0, 22.0)[(phase // 7) % 3]
        elif s.schedule == "night":
            if phase % 7 not in (4, 5, 6):
                start_hour, length = 21.75, 8.5
        elif s.schedule == "ed12":
            slot = phase % 7
            if slot < 4:
                start_hour, length = (7.0 if slot < 2 else 19.0), 12.0
        if start_hour is not None:
            start = local_ts(day, start_hour)
            out.append((start, start + length * 3600))
    return out


class ActiveIndex:
    """Encounters by department, for "who is in a bed on this ward at this time"."""

    def __init__(self, encounters: list[Encounter]):
        self.by_dept: dict[str, list[Encounter]] = {}
        for e in encounters:
            self.by_dept.setdefault(e.department, []).append(e)
        self.discharged = sorted((e for e in encounters if e.cls == "IMP"), key=lambda e: e.end)

    def active(self, dept: str, start: float, end: float) -> list[Encounter]:
        return [e for e in self.by_dept.get(dept, ()) if e.start < end and e.end > start]

    def recently_discharged(self, ts: float, days: float = 21) -> list[Encounter]:
        return [e for e in self.discharged if ts - days * 86400 < e.end < ts]


def ordinary(h: Hospital) -> list[Access]:
    """Every ordinary access of the period, unsorted."""
    rng = random.Random(h.rng.random())
    index = ActiveIndex(h.encounters)
    depts = list(index.by_dept)
    out: list[Access] = []
    on_shift: dict[str, list[tuple[Staff, float, float]]] = {}
    snoops: dict[str, list[tuple[str, float]]] = {}
    for login, pid, t in h.snoops:
        snoops.setdefault(login, []).append((pid, t))
    for s in h.staff:
        ip = f"10.20.{rng.randrange(256)}.{rng.randrange(1, 255)}"   # the user's usual workstation
        for start, end in shifts(s, h):
            on_shift.setdefault(s.department, []).append((s, start, end))
            avoid = _snooped_wards(h, snoops.get(s.login, ()), start, end)
            out += _shift(s, start, end, index, [d for d in depts if d not in avoid] if avoid else depts, h, rng, ip,
                          avoid)
    out += _trauma_teams(h, index, on_shift, rng)
    return out


def _snooped_wards(h: Hospital, snoops: Iterable[tuple[str, float]], start: float, end: float) -> set[str]:
    """The wards where the patients this user snoops on during the shift ``start``-``end``, or within the
    enricher's ward-work hours after it, lie then (with its grace hours around a stay).

    Why: a nurse sent to help on that ward opens its patients as her work, and the snooped chart among them
    is care by every sign the logs hold (``ehr.relationship.worked_department``; docs/enrichment.md spares
    it by design). An incident no context can tell from care would count a miss against the rules (seed 8
    with six incidents per kind drew one), so she is sent to help elsewhere on that shift."""
    before = PrivacyOptions.encounters_grace_before_hours * 3600
    after = PrivacyOptions.encounters_grace_after_hours * 3600
    reach = PrivacyOptions.encounters_ward_work_hours * 3600   # how long ward work counts afterwards
    wards: set[str] = set()
    for pid, t in snoops:
        if start <= t <= end + reach:
            wards.update(e.department for e in h.encounters
                         if e.patient_id == pid and e.start - before <= t <= e.end + after)
    return wards


def _at(rng: random.Random, start: float, end: float) -> float:
    return rng.uniform(start + 600, max(start + 601, end - 300))


def _shift(s: Staff, start: float, end: float, index: ActiveIndex, depts: list[str], h: Hospital,
           rng: random.Random, ip: str, avoid: Collection[str] = ()) -> list[Access]:
    """One shift's accesses; ``depts`` (where to help or consult) and a float nurse's ward leave out the
    wards in ``avoid`` (``_snooped_wards``)."""
    acc: list[Access] = []

    def add(action: str, pid: str | None, ts: float | None = None, **kw: object) -> None:
        acc.append(Access(ts if ts is not None else _at(rng, start, end), s.login, s.user_id, action, pid,
                          ip=ip, **kw))  # type: ignore[arg-type]

    if s.role in ("physician", "nurse", "student"):
        # an employee in a bed on their own ward is not on its rota at the same time
        ward = rng.choice([w for w in WARDS if w.name not in avoid] if avoid else WARDS).name \
            if s.department == FLOAT_POOL else s.department
        # a patient is someone's on the shift when in a bed for at least 45 minutes of it (an admission at
        # 13:50 is the late shift's, not squeezed into the early shift's last ten minutes)
        active = [e for e in index.active(ward, start, end) if e.patient_id != s.patient_id
                  and min(end, e.end) - max(start, e.start) >= 2700]
        k = {"physician": rng.randint(8, 20), "nurse": rng.randint(6, 12), "student": rng.randint(2, 6)}[s.role]
        ed = s.department == EMERGENCY
        for enc in rng.sample(active, min(k, len(active))):
            for _ in range(rng.randint(2, 5) if ed else rng.randint(1, 4)):
                lo, hi = max(start, enc.start), min(end, enc.end)
                ts = rng.uniform(lo, hi) if hi > lo else _at(rng, start, end)
                if ed and rng.random() < 0.04:          # ED override, usually with an emergency purpose
                    add("read", enc.patient_id, ts, btg=True, emergency=rng.random() < 0.6)
                elif not ed and rng.random() < 0.002:    # rapid-response call on a ward
                    add("read", enc.patient_id, ts, btg=True, emergency=True)
                else:
                    add("read", enc.patient_id, ts)
        for _ in range(rng.randint(0, 3)):
            add("search-type", None)
        if s.role == "physician" and rng.random() < 0.2:   # consult on another department's patient
            other = index.active(rng.choice(depts), start, end)
            if other:
                enc = rng.choice(other)
                # the ward's consult request names the consultant (FHIR Encounter.participant, type CON) on
                # most consults; a curbside look or a read before the request is filed names nobody
                if rng.random() < CONSULT_RECORDED:
                    enc.participants.append(s.login)
                add("read", enc.patient_id)
        elif s.role == "nurse" and rng.random() < 0.2:   # sent to help another ward for part of the shift
            help_start = rng.uniform(start, max(start, end - 4 * 3600))
            help_end = help_start + rng.uniform(2, 4) * 3600
            other = [e for e in index.active(rng.choice(depts), help_start, help_end) if e.patient_id != s.patient_id]
            for enc in rng.sample(other, min(len(other), rng.randint(3, 6))):
                for _ in range(rng.randint(1, 3)):
                    lo, hi = max(help_start, enc.start), min(help_end, enc.end)
                    add("read", enc.patient_id, rng.uniform(lo, hi) if hi > lo else rng.uniform(help_start, help_end))
        if active and s.role == "physician" and rng.random() < 0.3:   # discharge letters
            for enc in rng.sample(active, min(len(active), rng.randint(1, 4))):
                lo, hi = max(start, enc.start), min(end, enc.end)   # while the patient is on the ward
                add("print", enc.patient_id, rng.uniform(lo, hi) if hi > lo else None)
    elif s.role == "pharmacist":   # medication review: admitted patients of every ward, a few per ward
        admitted = [e for d in depts for e in index.active(d, start, end)
                    if e.cls == "IMP" and e.patient_id != s.patient_id and min(end, e.end) - max(start, e.start) >= 2700]
        for enc in rng.sample(admitted, min(len(admitted), rng.randint(30, 60))):
            for _ in range(rng.randint(1, 2)):
                lo, hi = max(start, enc.start), min(end, enc.end)
                add("read", enc.patient_id, rng.uniform(lo, hi) if hi > lo else None)
        for _ in range(rng.randint(0, 3)):
            add("search-type", None)
    else:
        pool = index.recently_discharged(start)
        if s.role == "research":   # a study cohort: past stays; a deceased patient's chart only now and then
            pool = [e for e in index.discharged if e.end < start and
                    (not h.patients[e.patient_id].deceased_date or rng.random() < 0.05)][-3000:]
        k = {"billing": rng.randint(40, 70), "him": rng.randint(25, 45), "coding": rng.randint(40, 70),
             "research": rng.randint(15, 40)}[s.role]
        pool = [e for e in pool if e.patient_id != s.patient_id]   # nobody's work queue holds their own chart
        picks = rng.sample(pool, min(k, len(pool)))
        if s.role in ("him", "billing"):   # deceased patients' charts are closed and billed too
            dead = [e for e in pool if h.patients[e.patient_id].deceased_date]
            picks += rng.sample(dead, min(len(dead), rng.randint(1, 4)))
        for enc in picks:
            for _ in range(rng.randint(1, 2)):
                add("read", enc.patient_id)
        if s.role == "him" and picks:      # release of information
            for enc in rng.sample(picks, min(len(picks), rng.randint(1, 5))):
                add("print", enc.patient_id)
        if s.role == "research" and picks and rng.random() < 0.15:   # a registry export, one hour
            t = _at(rng, start, end - 3600)
            for enc in picks[:rng.randint(10, 14)]:
                add("export", enc.patient_id, t + rng.uniform(0, 3000))
        for _ in range(rng.randint(0, 6)):
            add("search-type", None)
    return acc


def _trauma_teams(h: Hospital, index: ActiveIndex, on_shift: dict[str, list[tuple[Staff, float, float]]],
                  rng: random.Random) -> list[Access]:
    """Once a day a trauma-room case: 8-12 ED staff open one patient within 40 minutes (below the
    many-users threshold of 15, as a real team is)."""
    out = []
    ed = on_shift.get(EMERGENCY, [])
    for i in range(h.days):
        t = local_ts(h.start + timedelta(days=i), rng.uniform(8, 20))
        team = [s for s, a, b in ed if a <= t <= b - 2400]
        cases = index.active(EMERGENCY, t, t + 1)
        if len(team) < 3 or not cases:
            continue
        pid = rng.choice(cases).patient_id
        for s in rng.sample(team, min(len(team), rng.randint(8, 12))):
            out.append(Access(t + rng.uniform(0, 2400), s.login, s.user_id, "read", pid, btg=rng.random() < 0.3,
                              emergency=True))
    return out
