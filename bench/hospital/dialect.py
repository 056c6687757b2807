"""The generated hospital's lookup files as a German site exports them (``detection_quality.py --dialect de``).

Why: issue 11's held-out scenario is configured "from docs/enrichment.md alone". Our own config
(``evaluate.build_config``) is written against files whose column names, role titles, department names,
encoding and date forms are the documented defaults, so it cannot show a knob the docs fail to explain. This
writes the same hospital (same people, patients, stays and AuditEvents: the ground truth is unchanged) the
way a German hospital's HR, patient administration and ADT systems hand it over:

* ``personal.csv``, ``patienten.csv``, ``faelle.csv`` and ``vip_patienten.csv`` instead of the English
  files (which are removed, so a config cannot read them by accident): semicolon-separated, Windows-1252
  (names outside it lose those letters, alike in every file),
  German column names, dates as ``dd.mm.yyyy``, ``J`` for yes, the full name as "Nachname, Vorname";
* German job titles and department names, none of them in the shipped role and department defaults but
  the pharmacists' ``Apotheker/in``, which the shipped ``privacy_ward_service_roles`` match (``*apothek*``,
  as ``*notaufnahme*`` is in the emergency roles);
* ward codes in the encounter extract (``KAR-1``, ``ZNA``), two or three per department, instead of the
  roster's department names, and ``stationär`` / ``Notfall`` as the encounter class;
* ``SITE.md``: what a site's IT would tell whoever configures Wardwatch (each file, each column, the ward
  codes, the jobs), and nothing about Wardwatch's own knobs.

The AuditEvents stay FHIR R4 as the EHR writes them (``audit/``), user ids and logins unchanged.
"""

from __future__ import annotations

import csv
import hashlib
from datetime import date, datetime
from pathlib import Path

from bench.hospital.output import _csv

ENCODING = "cp1252"

#: English job role -> the title on the German roster (HR's wording)
ROLES = {"physician": "Arzt/Ärztin", "nurse": "Gesundheits- und Krankenpfleger/in", "student": "PJ-Student/in",
         "billing": "Sachbearbeiter/in Patientenabrechnung", "him": "Dokumentationsassistent/in Archiv",
         "coding": "Kodierfachkraft", "research": "Studienkoordinator/in", "pharmacist": "Apotheker/in"}
#: English department -> the German organisational unit, and its ward codes in the encounter extract
DEPARTMENTS = {
    "Cardiology": ("Kardiologie", ["KAR-1", "KAR-2"]),
    "Internal Medicine": ("Innere Medizin", ["INN-3A", "INN-3B", "INN-4"]),
    "General Surgery": ("Allgemein- und Viszeralchirurgie", ["CHI-1", "CHI-2"]),
    "Orthopaedics": ("Orthopädie und Unfallchirurgie", ["ORT-1", "ORT-2"]),
    "Oncology": ("Hämatologie und Onkologie", ["ONK-1", "ONK-2"]),
    "Neurology": ("Neurologie", ["NEU-1", "NEU-SU"]),
    "Paediatrics": ("Klinik für Kinder- und Jugendmedizin", ["PAED-1", "PAED-2"]),
    "Gynaecology": ("Frauenklinik", ["GYN-1", "GYN-KS"]),
    "Intensive Care": ("Interdisziplinäre Intensivstation", ["ITS"]),
    "Emergency": ("Zentrale Notaufnahme", ["ZNA"]),
    "Nursing Float Pool": ("Pflegepool", []),
    "Billing": ("Patientenabrechnung", []),
    "Health Information Management": ("Zentralarchiv Patientenakten", []),
    "Medical Coding": ("Medizincontrolling", []),
    "Research": ("Studienzentrale", []),
    "Pharmacy": ("Krankenhausapotheke", []),
}
CLASSES = {"IMP": "stationär", "EMER": "Notfall"}


def _de_date(iso: str) -> str:
    return date.fromisoformat(iso).strftime("%d.%m.%Y") if iso else ""


def _de_time(iso: str) -> str:
    return datetime.fromisoformat(iso).strftime("%d.%m.%Y %H:%M") if iso else ""


def _ward_code(department: str, patient_id: str, start: str) -> str:
    """One of the department's wards, chosen by the stay (same stay, same ward: deterministic)."""
    codes = DEPARTMENTS[department][1]
    return codes[int(hashlib.sha1(f"{patient_id}|{start}".encode()).hexdigest(), 16) % len(codes)]


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8", newline="") as fh:
        return list(csv.DictReader(fh))


def _write(path: Path, header: list[str], rows: list[list[str]]) -> None:
    # errors="replace": a name outside Windows-1252 (Kovačević) comes out as "Kova?evi?", as from the real
    # export, and the same way in every file
    _csv(path, header, rows, encoding=ENCODING, errors="replace", delimiter=";", lineterminator="\r\n")


def write_german(out: Path, given_names: dict[str, str]) -> None:
    """Rewrite ``out``'s roster, patients, encounters and VIP list as the German site's extracts.
    ``given_names``: user id -> given name (the English roster has the family name only)."""
    roster = _rows(out / "roster.csv")
    _write(out / "personal.csv",
           ["PERSNR", "BENUTZERKENNUNG", "NAME", "ORGEINHEIT", "STELLENBEZEICHNUNG", "STRASSE", "PLZ",
            "EIGENE_PATNR", "AUSTRITTSDATUM"],
           [[r["user_id"], r["login"], f"{r['family_name']}, {given_names.get(r['user_id'], '')}".rstrip(", "),
             DEPARTMENTS[r["department"]][0], ROLES[r["role"]], r["address"], r["postal_code"], r["patient_id"],
             _de_date(r["end_date"])] for r in roster])
    patients = _rows(out / "patients.csv")
    _write(out / "patienten.csv", ["PATNR", "FAMILIENNAME", "ANSCHRIFT", "PLZ", "VIP_KZ", "SPERRVERMERK", "STERBEDATUM"],
           [[p["patient_id"], p["family_name"], p["address"], p["postal_code"], "J" if p["vip"] else "N",
             "J" if p["confidential"] else "N", _de_date(p["deceased_date"])] for p in patients])
    encounters = _rows(out / "encounters.csv")
    _write(out / "faelle.csv", ["FALLNR", "PATNR", "STATION", "FALLART", "AUFNAHME", "ENTLASSUNG", "BEHANDLER"],
           [[f"F{26000000 + i}", e["patient_id"], _ward_code(e["department"], e["patient_id"], e["start"]),
             CLASSES[e["class"]], _de_time(e["start"]), _de_time(e["end"]), e["participants"].replace(";", "|")]
            for i, e in enumerate(encounters)])
    vips = [line.strip() for line in (out / "vip.txt").read_text(encoding="utf-8").splitlines()
            if line.strip() and not line.startswith("#")]
    _write(out / "vip_patienten.csv", ["PATNR", "GRUND"], [[pid, "Person des öffentlichen Lebens"] for pid in vips])
    for name in ("roster.csv", "patients.csv", "encounters.csv", "vip.txt"):
        (out / name).unlink()
    (out / "SITE.md").write_text(SITE, encoding="utf-8")


_WARDS = "\n".join(f"| {', '.join(codes)} | {de} |" for _en, (de, codes) in DEPARTMENTS.items() if codes)
_JOBS = "\n".join(f"| {title} | {what} |" for title, what in (
    (ROLES["physician"], "physicians on the wards and in the emergency department"),
    (ROLES["nurse"], "nurses; ward nurses work rotating or night shifts, the Pflegepool nurses are sent "
                     "each shift to whichever ward is short-staffed"),
    (ROLES["student"], "final-year medical students (Praktisches Jahr) on the wards"),
    (ROLES["pharmacist"], "hospital pharmacists: check the medication orders of the admitted patients on every "
                          "ward, weekdays"),
    (ROLES["billing"], "patient billing: closes the bills of discharged and deceased patients"),
    (ROLES["him"], "the central medical records archive: completes and releases records, answers "
                   "requests for copies, including deceased patients' records"),
    (ROLES["coding"], "DRG coding of finished stays, including those of deceased patients"),
    (ROLES["research"], "study coordinators: registries and retrospective studies over past stays, which "
                        "include deceased patients; registry exports of many records at once")))

SITE = f"""# Klinikum Beispielstadt: extracts for the privacy monitoring

Written by the hospital's IT for whoever sets up the monitoring. All files are in this directory. The
hospital is in Germany (time zone Europe/Berlin). Office hours are Monday to Friday 07:00-19:00; the wards
and the emergency department work around the clock.

## EHR audit trail: `audit/`
FHIR R4 AuditEvent resources, one JSON object per line (NDJSON), as the EHR writes them. The user is
`agent.who.identifier.value` (the HR staff number, `PERSNR` below) with the login in `agent.altId`; the
patient is the `entity.what` reference `Patient/<PATNR>`. Break-the-glass accesses carry purpose of use
`BTG`, emergency treatment `ETREAT`.

## Staff roster (HR): `personal.csv`
Semicolon-separated, Windows-1252 (ANSI) encoding, one row per employee, exported nightly.

| column | meaning |
| --- | --- |
| PERSNR | staff number (the EHR logs it as the user id) |
| BENUTZERKENNUNG | EHR login |
| NAME | "Family name, Given name" |
| ORGEINHEIT | organisational unit the employee belongs to (see the departments below) |
| STELLENBEZEICHNUNG | job title (see the jobs below) |
| STRASSE, PLZ | home street address and postcode |
| EIGENE_PATNR | the employee's own patient number, when they have been a patient here |
| AUSTRITTSDATUM | last working day (dd.mm.yyyy) for staff who are leaving; empty otherwise |

Job titles:

| STELLENBEZEICHNUNG | who |
| --- | --- |
{_JOBS}

Organisational units of the clinical staff: the departments in the ward table below, plus `Pflegepool`
(the nursing float pool) and `Krankenhausapotheke` (the hospital pharmacy). Office staff belong to
`Patientenabrechnung`, `Zentralarchiv Patientenakten`, `Medizincontrolling` and `Studienzentrale`. The emergency department is `Zentrale Notaufnahme`.

## Patient directory (patient administration): `patienten.csv`
Semicolon-separated, Windows-1252.

| column | meaning |
| --- | --- |
| PATNR | patient number |
| FAMILIENNAME | family name |
| ANSCHRIFT, PLZ | street address and postcode |
| VIP_KZ | `J` if the patient is a person of public interest (VIP), else `N` |
| SPERRVERMERK | `J` if the record is restricted (confidential), else `N` |
| STERBEDATUM | date of death (dd.mm.yyyy), empty if alive |

The VIP patients are also listed on their own in `vip_patienten.csv` (semicolon-separated, Windows-1252,
columns `PATNR`, `GRUND`).

## Stays and transfers (ADT): `faelle.csv`
Semicolon-separated, Windows-1252, one row per stay on one ward; a row's times are local (Europe/Berlin).

| column | meaning |
| --- | --- |
| FALLNR | case (encounter) number |
| PATNR | patient number |
| STATION | ward code (table below) |
| FALLART | `stationär` (inpatient stay) or `Notfall` (emergency department visit) |
| AUFNAHME | admission to the ward (dd.mm.yyyy HH:MM) |
| ENTLASSUNG | discharge from the ward (dd.mm.yyyy HH:MM); empty while the patient is still there |
| BEHANDLER | logins of the treating physicians and nurses, separated by `|` |

Ward codes and the department (roster `ORGEINHEIT`) each ward belongs to:

| STATION | department |
| --- | --- |
{_WARDS}
"""
