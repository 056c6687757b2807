"""Injected privacy incidents, one generator per kind, each with its ground truth.

Why ground truth by audit id: every access of an incident gets an AuditEvent id ``inc-<kind>-<n>-<k>``, so
an alert is attributed to an incident exactly when its evidence holds one of those events: no guessing
from user names or time windows, and an alert that holds none is a false alert.
"""

from __future__ import annotations

import dataclasses
import random
from datetime import timedelta
from typing import Callable

from bench.hospital.activity import Access, ActiveIndex, shifts
from bench.hospital.population import EMERGENCY, Hospital, Staff, local_date, local_ts
from engine.enrich.privacy import PrivacyOptions

#: incident kind -> the rule (name) that is meant to catch it
EXPECTED_RULE = {
    "coworker": "ehr_privacy_coworker_record",
    "vip": "ehr_privacy_vip_record",
    "family_same_name": "ehr_privacy_same_last_name",
    "same_address": "ehr_privacy_same_address",
    "self": "ehr_privacy_self_access",
    "deceased_no_role": "ehr_privacy_deceased_patient",
    "terminated_user": "ehr_privacy_terminated_user",
    "bulk_access": "ehr_bulk_patient_record_access",
    "after_hours_day_worker": "ehr_after_hours_read",
    "btg_outside_emergency": "ehr_privacy_btg_outside_emergency",
    "name_search_sweep": "ehr_privacy_name_search_sweep",
    "bulk_export_print": "ehr_privacy_bulk_export_print",
    "many_users_one_patient": "ehr_privacy_many_users_one_patient",
}


@dataclasses.dataclass
class Incident:
    kind: str
    n: int
    users: list[str]
    patients: list[str]
    accesses: list[Access]

    def ground_truth(self) -> dict:
        return {"kind": self.kind, "n": self.n, "expected_rule": EXPECTED_RULE[self.kind], "users": self.users,
                "patients": sorted(set(self.patients)), "audit_ids": [a.audit_id for a in self.accesses],
                "start": min(a.ts for a in self.accesses), "end": max(a.ts for a in self.accesses)}


class Injector:
    def __init__(self, h: Hospital):
        self.h = h
        self.rng = random.Random(h.rng.random())
        self.index = ActiveIndex(h.encounters)
        self.clinical = [s for s in h.staff if s.role in ("physician", "nurse") and s.department != EMERGENCY
                         and not s.end_date]
        self.used: set[str] = set()   # one incident per actor keeps the attribution unambiguous

    def actor(self, pool: list[Staff] | None = None) -> tuple[Staff, float, float]:
        """A not yet used person from ``pool`` and one of their shifts (start, end)."""
        pool = pool or self.clinical
        for _ in range(1000):
            s = self.rng.choice(pool)
            if s.login in self.used:
                continue
            rota = shifts(s, self.h)
            if rota:
                self.used.add(s.login)
                start, end = self.rng.choice(rota)
                return s, start, end
        raise RuntimeError("no free actor for an incident: the hospital is too small")

    def reads(self, s: Staff, pid: str, t: float, count: int, **kw: object) -> list[Access]:
        return [Access(t + i * self.rng.uniform(30, 300), s.login, s.user_id, "read", pid, **kw)  # type: ignore[arg-type]
                for i in range(count)]

    def mid(self, start: float, end: float) -> float:
        return self.rng.uniform(start + 1800, max(start + 1801, end - 5400))

    # one method per kind: returns (users, patients, accesses)
    def coworker(self) -> tuple[list[Staff], list[str], list[Access]]:
        s, a, b = self.actor()
        colleagues = [o for o in self.h.staff if o.patient_id and o.department != s.department]
        target = self.rng.choice(colleagues)
        t = self.mid(a, b)
        for _ in range(100):  # a colleague in a bed on the snooper's own ward then is her patient: another one
            if not self.treats(s, target.patient_id, t):
                break
            target = self.rng.choice(colleagues)
        self.h.snoops.append((s.login, target.patient_id, t))
        return [s], [target.patient_id], self.reads(s, target.patient_id, t, 2)

    def treats(self, s: Staff, pid: str, t: float) -> bool:
        """Is ``pid`` the patient of ``s``'s ward or team around ``t`` (within the enricher's default grace
        hours before and after a stay; ``t + 600``: the incident's second read follows within 300 s)? Then
        opening the chart is care, not an incident: the rules spare the treating ward by design
        (docs/enrichment.md), and a seed that drew such a target (seed 9: a colleague admitted to the
        snooper's own ward) counted a miss no context could avoid."""
        before = PrivacyOptions.encounters_grace_before_hours * 3600
        after = PrivacyOptions.encounters_grace_after_hours * 3600
        return any(e.patient_id == pid and (e.department == s.department or s.login in e.participants)
                   and e.start - before <= t + 600 and t <= e.end + after for e in self.h.encounters)

    def vip(self):
        vips = [e for e in self.h.encounters if self.h.patients[e.patient_id].vip]
        enc = self.rng.choice(vips)
        s, a, b = self.actor([o for o in self.clinical if o.department != enc.department])
        t = self.mid(a, b)
        self.h.snoops.append((s.login, enc.patient_id, t))
        return [s], [enc.patient_id], self.reads(s, enc.patient_id, t, self.rng.randint(1, 3))

    def family_same_name(self):
        s, a, b = self.actor()
        s.family_name = self.h.names.rare_surname({p.family_name for p in self.h.patients.values()})
        if s.patient_id:
            self.h.patients[s.patient_id].family_name = s.family_name
        relative = self.h.new_patient(s.family_name, *self.h.names.address())
        return [s], [relative.patient_id], self.reads(s, relative.patient_id, self.mid(a, b), 2)

    def same_address(self):
        s, a, b = self.actor()
        housemate = self.h.new_patient(self.h.names.surname(), s.address, s.postal_code)
        while housemate.family_name == s.family_name:
            housemate.family_name = self.h.names.surname()
        return [s], [housemate.patient_id], self.reads(s, housemate.patient_id, self.mid(a, b), 2)

    def self(self):
        s, a, b = self.actor()
        if not s.patient_id:
            s.patient_id = self.h.new_patient(s.family_name, s.address, s.postal_code).patient_id
        return [s], [s.patient_id], self.reads(s, s.patient_id, self.mid(a, b), 1)

    def deceased_no_role(self):
        s, a, b = self.actor()
        t = self.mid(a, b)
        dead = [p for p in self.h.patients.values() if p.deceased_date and p.deceased_date < _day(t, -1)]
        p = self.rng.choice(dead)
        return [s], [p.patient_id], self.reads(s, p.patient_id, t, 1)

    def terminated_user(self):
        s, a, b = self.actor(self.clinical + [x for x in self.h.staff if x.end_date])
        # the account is used again 2-5 days after the last working day, in the daytime
        ends = self.h.start + timedelta(days=self.rng.randrange(0, max(1, self.h.days - 5)))
        s.end_date = ends.isoformat()
        t = local_ts(ends + timedelta(days=self.rng.randint(2, 4)), self.rng.uniform(9, 16))
        pids = [self.rng.choice(list(self.h.patients)) for _ in range(3)]
        return [s], pids, [x for i, pid in enumerate(pids) for x in self.reads(s, pid, t + i * 400, 1)]

    def bulk_access(self):
        s, a, b = self.actor()
        t = self.mid(a, b)
        pids = self.rng.sample(list(self.h.patients), self.rng.randint(60, 80))
        return [s], pids, [Access(t + self.rng.uniform(0, 2700), s.login, s.user_id, "read", p) for p in pids]

    def after_hours_day_worker(self):
        s, a, b = self.actor([o for o in self.h.staff if o.schedule == "office" and not o.end_date])
        day = self.h.start + timedelta(days=self.rng.randrange(self.h.days))
        while day.weekday() > 3:
            day -= timedelta(days=1)
        t = local_ts(day, self.rng.uniform(1.0, 3.5))
        pids = self.rng.sample(list(self.h.patients), self.rng.randint(3, 5))
        return [s], pids, [Access(t + i * self.rng.uniform(120, 600), s.login, s.user_id, "read", p)
                           for i, p in enumerate(pids)]

    def btg_outside_emergency(self):
        s, a, b = self.actor()
        other = [e for e in self.h.encounters if e.department != s.department and e.department != EMERGENCY]
        pid = self.rng.choice(other).patient_id
        t = self.mid(a, b)
        for _ in range(100):  # in the ED at that moment (another stay of the same patient), or her patient: redraw
            if not self.in_emergency(pid, t) and not self.treats(s, pid, t):
                break
            pid = self.rng.choice(other).patient_id
        return [s], [pid], self.reads(s, pid, t, 1, btg=True)

    def in_emergency(self, pid: str, t: float) -> bool:
        """Is ``pid`` in an emergency encounter at ``t``? A break-the-glass on such a patient is an expected
        override by design (``privacy_emergency_encounter_classes``, docs/enrichment.md): a physician called to
        the ED, so no rule should call it an incident (seed 8 with six incidents per kind drew one)."""
        return any(e.patient_id == pid and e.cls == "EMER" and e.start <= t < e.end for e in self.h.encounters)

    def name_search_sweep(self):
        s, a, b = self.actor()
        t = self.mid(a, b)
        acc = [Access(t + self.rng.uniform(0, 3000), s.login, s.user_id, "search-type")
               for _ in range(self.rng.randint(35, 45))]
        pid = self.rng.choice(list(self.h.patients))
        return [s], [pid], acc + self.reads(s, pid, t + 3100, 2)

    def bulk_export_print(self):
        s, a, b = self.actor()
        t = self.mid(a, b)
        pids = self.rng.sample(list(self.h.patients), self.rng.randint(12, 20))
        return [s], pids, [Access(t + self.rng.uniform(0, 2400), s.login, s.user_id,
                                  self.rng.choice(["print", "export"]), p) for p in pids]

    def many_users_one_patient(self):
        """A patient in the news: 18-22 people from all over the hospital open the chart within 50 min."""
        target = self.rng.choice([e for e in self.h.encounters if e.cls == "IMP"])
        t = max(target.start, local_ts(self.h.start, 10))
        users = []
        for _ in range(self.rng.randint(18, 22)):
            s = self.rng.choice([o for o in self.clinical if o.login not in self.used])
            self.used.add(s.login)
            users.append(s)
        return users, [target.patient_id], [Access(t + self.rng.uniform(0, 3000), s.login, s.user_id, "read",
                                                   target.patient_id) for s in users]


def _day(ts: float, delta: int) -> str:
    return (local_date(ts) + timedelta(days=delta)).isoformat()


def inject(h: Hospital, per_kind: int, kinds: list[str] | None = None) -> list[Incident]:
    """``per_kind`` incidents of every kind (or of ``kinds``), with audit ids ``inc-<kind>-<n>-<k>``."""
    injector = Injector(h)
    out = []
    for kind in kinds or list(EXPECTED_RULE):
        make: Callable = getattr(injector, kind)
        for n in range(per_kind):
            users, patients, accesses = make()
            for k, access in enumerate(accesses):
                access.audit_id = f"inc-{kind}-{n}-{k}"
                access.ip = f"10.30.{n}.{k % 250 + 1}"
            out.append(Incident(kind, n, [u.login for u in users], patients, accesses))
    return out
