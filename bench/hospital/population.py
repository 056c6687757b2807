"""Departments, staff, patients, encounters and VIPs of the synthetic hospital.

Why it is built this way: false alerts come from ordinary hospital life, so the population carries the
situations that make privacy rules noisy (see issue 11): night and rotating shifts, ED 12-hour shifts,
billing/HIM/coding staff who open discharged and deceased patients' charts, employees treated in their own
hospital by their colleagues, VIPs treated on a ward, relatives sharing a surname and an address, common
surnames everywhere. Everything comes from one ``random.Random(seed)``: same seed, same hospital.
"""

from __future__ import annotations

import dataclasses
import random
import unicodedata
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from bench.hospital.names import NamePool

TZ = ZoneInfo("Europe/Berlin")
EMERGENCY = "Emergency"
ICU = "Intensive Care"
FLOAT_POOL = "Nursing Float Pool"   # nurses sent each shift to whichever ward is short-staffed


@dataclasses.dataclass(frozen=True)
class Department:
    name: str
    beds: int          # inpatient beds per 1,000 staff (scaled with the staff count)
    clinical: bool = True


#: ~500 beds per 1,000 staff, as in a German general hospital (Destatis: ~2 full-time staff per bed)
WARDS = [Department("Cardiology", 64), Department("Internal Medicine", 96), Department("General Surgery", 72),
         Department("Orthopaedics", 56), Department("Oncology", 56), Department("Neurology", 48),
         Department("Paediatrics", 40), Department("Gynaecology", 40), Department(ICU, 26)]
OFFICES = ["Billing", "Health Information Management", "Medical Coding", "Research"]
#: role -> share of staff; clinical roles are spread over the wards and the ED
ROLE_SHARES = {"physician": 0.24, "nurse": 0.53, "student": 0.08, "pharmacist": 0.02, "billing": 0.04,
               "him": 0.03, "coding": 0.03, "research": 0.03}
OFFICE_OF_ROLE = {"billing": "Billing", "him": "Health Information Management", "coding": "Medical Coding",
                  "research": "Research"}
#: clinical services whose work spans every ward (weekday day shifts): hospital pharmacists check the
#: medication orders of admitted patients, a few per ward
SERVICE_OF_ROLE = {"pharmacist": "Pharmacy"}


@dataclasses.dataclass
class Staff:
    user_id: str
    login: str
    family_name: str
    given_name: str
    department: str
    role: str
    schedule: str          # office | day | rotating | night | ed12
    address: str
    postal_code: str
    patient_id: str = ""   # the employee's own medical record
    end_date: str = ""     # last working day (local), empty = employed
    offset: int = 0        # shift-rota phase


@dataclasses.dataclass
class Patient:
    patient_id: str
    family_name: str
    address: str
    postal_code: str
    vip: bool = False
    confidential: bool = False
    deceased_date: str = ""


@dataclasses.dataclass
class Encounter:
    patient_id: str
    department: str
    cls: str               # IMP (inpatient) | EMER (emergency)
    start: float           # epoch seconds (UTC)
    end: float
    participants: list[str] = dataclasses.field(default_factory=list)   # logins of the treating team


@dataclasses.dataclass
class Hospital:
    start: date
    days: int
    staff: list[Staff]
    patients: dict[str, Patient]
    encounters: list[Encounter]
    rng: random.Random
    names: NamePool
    seed: int = 0
    #: (login, patient id, epoch seconds) of every injected look at a co-worker's or VIP's chart: the ordinary
    #: activity never sends that user to help on the patient's ward on that shift (``activity.ordinary``)
    snoops: list[tuple[str, str, float]] = dataclasses.field(default_factory=list)

    def by_department(self) -> dict[str, list[Staff]]:
        out: dict[str, list[Staff]] = {}
        for s in self.staff:
            out.setdefault(s.department, []).append(s)
        return out

    def new_patient(self, family_name: str, address: str, postal_code: str) -> Patient:
        pid = f"P{100000 + len(self.patients)}"
        patient = Patient(pid, family_name, address, postal_code)
        self.patients[pid] = patient
        return patient


def local_ts(day: date, hour: float) -> float:
    """Epoch seconds of ``day`` at ``hour`` (may exceed 24) in the hospital's time zone."""
    # aware-datetime arithmetic is wall-clock arithmetic: 22:00 + 8 h is 06:00 local, across DST too
    return (datetime(day.year, day.month, day.day, tzinfo=TZ) + timedelta(hours=hour)).timestamp()


def local_date(ts: float) -> date:
    return datetime.fromtimestamp(ts, TZ).date()


def _ascii(name: str) -> str:
    folded = unicodedata.normalize("NFKD", name.replace("ß", "ss").replace("ı", "i"))
    return "".join(c for c in folded if c.isascii() and c.isalpha()).lower()


def build(staff_count: int, days: int, seed: int, start: date = date(2026, 11, 2)) -> Hospital:
    rng = random.Random(seed)
    names = NamePool(rng)
    staff = _staff(staff_count, rng, names)
    hospital = Hospital(start, days, staff, {}, [], rng, names, seed)
    patient_count = max(1500, staff_count * 20)
    for _ in range(patient_count):
        hospital.new_patient(names.surname(), *names.address())
    # relatives: a tenth of the staff have a household member (same surname and address) on file
    for s in staff:
        if rng.random() < 0.10:
            hospital.new_patient(s.family_name, s.address, s.postal_code)
    # employees treated in their own hospital: 4% have a medical record here
    for s in staff:
        if rng.random() < 0.04:
            s.patient_id = hospital.new_patient(s.family_name, s.address, s.postal_code).patient_id
    # staff leaving during the month (the rota stops after their end date)
    for s in rng.sample(staff, max(1, staff_count // 100)):
        s.end_date = (start + timedelta(days=rng.randrange(1, max(2, days)))).isoformat()
    _encounters(hospital, staff_count)
    return hospital


def _staff(count: int, rng: random.Random, names: NamePool) -> list[Staff]:
    roles = [role for role, share in ROLE_SHARES.items() for _ in range(round(share * count))]
    while len(roles) < count:
        roles.append("nurse")
    rng.shuffle(roles)
    ward_weights = [d.beds for d in WARDS]
    logins: set[str] = set()
    out = []
    for i, role in enumerate(roles[:count]):
        family, given = names.surname(), names.given()
        base = _ascii(given)[:1] + _ascii(family)
        login, n = base, 1
        while login in logins:
            n += 1
            login = f"{base}{n}"
        logins.add(login)
        if role in OFFICE_OF_ROLE:
            dept, schedule = OFFICE_OF_ROLE[role], "office"
        elif role in SERVICE_OF_ROLE:
            dept, schedule = SERVICE_OF_ROLE[role], "day"
        else:
            dept = EMERGENCY if rng.random() < 0.11 else rng.choices([d.name for d in WARDS], ward_weights)[0]
            if dept == EMERGENCY and role != "student":
                schedule = "ed12"
            elif role == "nurse":
                schedule = "night" if rng.random() < 0.2 else "rotating"
                if rng.random() < 0.06:
                    dept = FLOAT_POOL
            else:
                schedule = "day"
        out.append(Staff(f"U{10000 + i}", login, family, given, dept, role, schedule, *names.address(),
                         offset=rng.randrange(21)))
    return out


def _encounters(h: Hospital, staff_count: int) -> None:
    """Inpatient stays filling each ward's beds (from 10 days before the period), ED visits every day,
    deaths at the end of some stays, and the special patients: treated employees and VIPs."""
    rng, scale = h.rng, staff_count / 1000
    pids = list(h.patients)
    t0, t_end = local_ts(h.start, 0), local_ts(h.start, 24 * h.days)
    by_dept = h.by_department()
    for dept in WARDS:
        team = [s.login for s in by_dept.get(dept.name, []) if s.role in ("physician", "nurse")]
        for _bed in range(max(2, round(dept.beds * scale))):
            t = t0 - rng.uniform(0, 10) * 86400
            while t < t_end:
                los = min(21.0, 0.5 + rng.expovariate(1 / 4)) * 86400
                enc = Encounter(rng.choice(pids), dept.name, "IMP", t, t + los,
                                rng.sample(team, min(len(team), 4)))
                h.encounters.append(enc)
                t += los + rng.uniform(0.1, 1.0) * 86400
    ed_team = [s.login for s in by_dept.get(EMERGENCY, []) if s.role in ("physician", "nurse")]
    for day in range(-3, h.days):
        for _ in range(max(10, round(150 * scale))):
            start = t0 + day * 86400 + rng.uniform(0, 86400)
            h.encounters.append(Encounter(rng.choice(pids), EMERGENCY, "EMER", start,
                                          start + rng.uniform(2, 9) * 3600, rng.sample(ed_team, min(len(ed_team), 3))))
    # deaths: 3% of stays ending in the period end with the patient's death (billing/HIM follow up later);
    # and patients who died in the 60 days before the period, whose charts are still being closed
    # (only a patient's last encounter can end in death: nobody is admitted after dying)
    last: dict[str, Encounter] = {}
    for enc in h.encounters:
        if enc.patient_id not in last or enc.start > last[enc.patient_id].start:
            last[enc.patient_id] = enc
    for enc in h.encounters:
        if enc.cls == "IMP" and enc.end < t_end and last[enc.patient_id] is enc and rng.random() < 0.03:
            h.patients[enc.patient_id].deceased_date = local_date(enc.end).isoformat()
    for _ in range(max(5, round(25 * scale))):
        died = t0 - rng.uniform(1, 60) * 86400
        patient = h.new_patient(h.names.surname(), *h.names.address())
        patient.deceased_date = local_date(died).isoformat()
        h.encounters.append(Encounter(patient.patient_id, rng.choice(WARDS).name, "IMP", died - 5 * 86400, died))
    # employees treated here, often on their own ward (their colleagues open their chart)
    for s in h.staff:
        if s.patient_id and rng.random() < 0.35:
            dept = s.department if s.department in {d.name for d in WARDS} and rng.random() < 0.5 else \
                rng.choice(WARDS).name
            start = t0 + rng.uniform(0, max(1, h.days - 2)) * 86400
            h.encounters.append(Encounter(s.patient_id, dept, "IMP", start, start + rng.uniform(1, 5) * 86400))
    # VIPs on a ward: a few per 1,000 staff, plus a confidential (protected) patient or two
    for _ in range(max(2, round(5 * scale))):
        vip = h.new_patient(h.names.surname(), *h.names.address())
        vip.vip = True
        start = t0 + rng.uniform(0, max(1, h.days - 2)) * 86400
        h.encounters.append(Encounter(vip.patient_id, rng.choice(WARDS).name, "IMP", start,
                                      start + rng.uniform(2, 6) * 86400))
    for _ in range(max(1, round(2 * scale))):
        rng.choice(list(h.patients.values())).confidential = True
