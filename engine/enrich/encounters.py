"""Care-relationship context: where is the patient, and who is treating them, at the time of an access?

Most accesses to a colleague's or a VIP's record are by the team treating them. An audit record cannot say
so; the encounters (ADT) can. This module reads them from three kinds of source and keeps an in-memory
interval index per patient, so the privacy enricher (``engine.enrich.privacy``) can answer in microseconds:

* a **CSV extract** (patient, department/unit, class, start, end, participants), columns renameable like the
  roster's (:data:`ENCOUNTER_COLUMNS`);
* **FHIR NDJSON** (a bulk ``$export``): ``Encounter``, and optionally ``CareTeam`` and ``RelatedPerson``;
* a **FHIR server** pulled incrementally: ``Encounter?_lastUpdated=ge<high water - overlap>`` paged through
  ``link[next]``; an update replaces the encounter by id, so re-reading the overlap is harmless.

An encounter is stored as *segments* (start, end, department): a transfer between wards (R4
``Encounter.location[].period``) is one segment per location, so "where the patient is" follows the transfer.
Participants (``Encounter.participant.individual``, R5 ``actor``; CareTeam ``participant.member``) are kept as
folded identifiers (reference id, identifier value) matched against the user's login/id and roster keys.
Nothing here is ever logged but file names, line numbers, keys and counts (encounters are PHI).
Field reference and options: ``docs/enrichment.md`` ("Care-relationship context").
"""

from __future__ import annotations

import bisect
import json
import logging
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from pathlib import Path
from typing import Any, Iterator, Mapping, Sequence
from urllib.parse import urlencode, urlsplit

from engine.enrich.lookups import (ColumnMappingError, FileBacked, LookupStatus, ReloadingFile, _read_csv,
                                   check_columns, csv_header, fhir_contact_keys, file_stamp, fold)
from engine.events import timestamp_ms

log = logging.getLogger(__name__)

#: an open encounter (no end yet) lasts until this instant (year 9999)
OPEN_END_MS = 253402300799000
#: FHIR statuses that never put a patient anywhere (a cancelled booking, a data-entry mistake)
VOID_STATUSES = frozenset({"cancelled", "entered-in-error"})

ENCOUNTER_COLUMNS = {
    "encounter_id": "encounter_id", "patient_id": "patient_id", "department": "department", "class": "class",
    "start": "start", "end": "end", "status": "status", "participants": "participants",
}


class EncounterFormatError(ValueError):
    """One record could not be read; the message names the key and never a value (values are PHI)."""


@dataclass(frozen=True)
class Segment:
    """A stretch of one encounter in one department: ``[start_ms, end_ms)``."""

    start_ms: int
    end_ms: int
    department: str | None  # as the source names it (ward, unit, service); mapped by the enricher
    encounter_id: str
    participants: frozenset[str]  # folded user keys
    encounter_class: str | None = None
    care_team_only: bool = False  # a CareTeam's membership, not a stay: never makes an encounter "active"


def _segment_order(segment: "Segment") -> tuple[int, int]:
    return segment.start_ms, segment.end_ms


@dataclass(frozen=True)
class Encounter:
    encounter_id: str
    patient_id: str
    segments: tuple[Segment, ...]


# --- time ------------------------------------------------------------------------------------------
#: tried in order after ISO 8601: German, HL7 v2 (``YYYYMMDDHHMM[SS]``), US month-first, year-month, year
TIME_FORMATS = ("%d.%m.%Y %H:%M", "%d.%m.%Y %H:%M:%S", "%d.%m.%Y", "%Y%m%d%H%M%S", "%Y%m%d%H%M",
                "%m/%d/%Y %H:%M", "%m/%d/%Y %H:%M:%S", "%m/%d/%Y", "%Y-%m", "%Y")


def parse_instant(value: Any, tz: tzinfo, *, end: bool = False, fmt: str | None = None) -> int:
    """A FHIR dateTime (or CSV date/time) as epoch ms. Naive values are local time in ``tz``; a bare date
    is the start of that local day (or, with ``end``, the start of the next day: the whole day counts).
    ``fmt`` (a ``strptime`` format, option ``encounters_csv_time_format``) replaces the guessing, for
    extracts whose day/month order is ambiguous (``03/04/2026``)."""
    text = str(value).strip()
    if not text:
        raise EncounterFormatError("empty")
    if fmt is not None:
        try:
            dt = datetime.strptime(text, fmt)
        except ValueError:
            raise EncounterFormatError(f"not a date/time in the format {fmt}") from None
        date_only = "%H" not in fmt and "%I" not in fmt
    else:
        dt = _guess_time(text)
        date_only = len(text) <= 10 and ":" not in text
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=tz)
    ms = timestamp_ms(dt.astimezone(timezone.utc))
    return ms + 86_400_000 if end and date_only else ms


def _guess_time(text: str) -> datetime:
    try:  # ISO 8601 first: FHIR's own form, and the cheapest to try
        return datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        pass
    for fmt in TIME_FORMATS:
        try:
            return datetime.strptime(text, fmt)
        except ValueError:
            continue
    raise EncounterFormatError("not a date/time")


# --- FHIR parsing ----------------------------------------------------------------------------------
def _list(value: Any) -> list[Any]:
    """A FHIR repeating element, or nothing: a malformed resource must not raise a TypeError."""
    return value if isinstance(value, list) else []


def _reference_id(ref: Any, resource_type: str | None = None) -> str | None:
    """``Patient/P1`` or ``https://x/fhir/Patient/P1/_history/2`` -> ``P1``; ``identifier.value`` as fallback."""
    if not isinstance(ref, Mapping):
        return None
    text = ref.get("reference")
    if isinstance(text, str) and text:
        parts = [p for p in text.split("/") if p]
        if "_history" in parts:
            parts = parts[: parts.index("_history")]
        if len(parts) >= 2 and (resource_type is None or parts[-2] == resource_type):
            return parts[-1]
        if len(parts) == 1 and not text.startswith("#"):
            return parts[0]
    ident = ref.get("identifier")
    if isinstance(ident, Mapping) and isinstance(ident.get("value"), str) and ident["value"]:
        return ident["value"]
    return None


def _person_keys(ref: Any) -> set[str]:
    """Every identifier a participant reference carries (reference id and identifier value), folded."""
    keys: set[str] = set()
    if isinstance(ref, Mapping):
        rid = _reference_id({"reference": ref.get("reference")})
        if rid:
            keys.add(fold(rid))
        ident = ref.get("identifier")
        if isinstance(ident, Mapping) and isinstance(ident.get("value"), str) and ident["value"]:
            keys.add(fold(ident["value"]))
    return keys


def _text_of(concept: Any) -> str | None:
    """A CodeableConcept's (or R5 CodeableReference's) text, else first coding display, else code."""
    if isinstance(concept, list):
        for item in concept:
            found = _text_of(item)
            if found:
                return found
        return None
    if not isinstance(concept, Mapping):
        return None
    if "concept" in concept:  # R5 CodeableReference
        return _text_of(concept.get("concept"))
    if isinstance(concept.get("text"), str) and concept["text"]:
        return concept["text"]
    for coding in _list(concept.get("coding")):
        if isinstance(coding, Mapping):
            for key in ("display", "code"):
                if isinstance(coding.get(key), str) and coding[key]:
                    return coding[key]
    return None


def _period(period: Any, tz: tzinfo, key: str) -> tuple[int | None, int | None]:
    if period is None:
        return None, None
    if not isinstance(period, Mapping):
        raise EncounterFormatError(f"{key}: not a Period")
    start = end = None
    try:
        if period.get("start"):
            start = parse_instant(period["start"], tz)
        if period.get("end"):
            end = parse_instant(period["end"], tz, end=True)
    except EncounterFormatError as exc:
        raise EncounterFormatError(f"{key}: {exc}") from None
    return start, end


#: where the department comes from, in the order tried (option ``encounters_fhir_department_from``)
DEFAULT_DEPARTMENT_FROM = ("location", "serviceType", "serviceProvider")


def _id_and_patient(resource: Mapping[str, Any], element: str) -> tuple[str, str]:
    """The resource's id and the patient its ``element`` references; both are required."""
    rid = resource.get("id")
    if not isinstance(rid, str) or not rid:
        raise EncounterFormatError("id: missing")
    patient = _reference_id(resource.get(element), "Patient")
    if not patient:
        raise EncounterFormatError(f"{element}: no Patient reference")
    return rid, patient


def encounter_from_fhir(resource: Mapping[str, Any], tz: tzinfo = timezone.utc,
                        department_from: Sequence[str] = DEFAULT_DEPARTMENT_FROM) -> Encounter | None:
    """Reduce a FHIR R4 (or R5) ``Encounter`` to segments. None: the encounter is void (cancelled, entered in
    error). Raises :class:`EncounterFormatError` naming the element when it cannot be read."""
    if not isinstance(resource, Mapping) or resource.get("resourceType") != "Encounter":
        raise EncounterFormatError("resourceType: not an Encounter")
    eid, patient = _id_and_patient(resource, "subject")
    status = resource.get("status") if isinstance(resource.get("status"), str) else None
    if status in VOID_STATUSES:
        return None
    start, end = _period(resource.get("period") or resource.get("actualPeriod"), tz, "period")
    cls = resource.get("class")
    cls_code = cls.get("code") if isinstance(cls, Mapping) else _text_of(cls)  # R4 Coding, R5 [CodeableConcept]
    cls_code = cls_code if isinstance(cls_code, str) else None
    if isinstance(cls, list):
        codes = [c.get("code") for item in cls if isinstance(item, Mapping)
                 for c in _list(item.get("coding")) if isinstance(c, Mapping)]
        cls_code = next((c for c in codes if isinstance(c, str)), cls_code)
    participants: set[str] = set()
    for p in _list(resource.get("participant")):
        if isinstance(p, Mapping):
            participants |= _person_keys(p.get("individual") or p.get("actor"))
    people = frozenset(participants)

    whole_dept = None
    for source in department_from:
        if source == "serviceType":
            whole_dept = _text_of(resource.get("serviceType"))
        elif source == "serviceProvider":
            sp = resource.get("serviceProvider")
            whole_dept = sp.get("display") if isinstance(sp, Mapping) and isinstance(sp.get("display"), str) else None
        if whole_dept:
            break

    locations = [loc for loc in _list(resource.get("location")) if isinstance(loc, Mapping)
                 and loc.get("status") != "planned"] if "location" in department_from else []
    if start is None:
        starts = [s for loc in locations for s in [_period(loc.get("period"), tz, "location.period")[0]] if s]
        if not starts:
            raise EncounterFormatError("period.start: missing")
        start = min(starts)
    if end is None:
        end = start if status == "finished" else OPEN_END_MS
    if end < start:
        raise EncounterFormatError("period: ends before it starts")

    segments: list[Segment] = []
    for loc in locations:
        name = (loc.get("location") or {}).get("display") if isinstance(loc.get("location"), Mapping) else None
        if not isinstance(name, str) or not name:
            continue
        s, e = _period(loc.get("period"), tz, "location.period")
        s = start if s is None else max(s, start)
        e = end if e is None else min(e, end)
        if e >= s:
            segments.append(Segment(s, e, name, eid, people, cls_code))
    if not segments:
        segments.append(Segment(start, end, whole_dept, eid, people, cls_code))
    return Encounter(eid, patient, tuple(sorted(segments, key=_segment_order)))


def care_team_from_fhir(resource: Mapping[str, Any], tz: tzinfo = timezone.utc) -> Encounter | None:
    """A FHIR ``CareTeam`` as one participant-only segment over its period (no department)."""
    cid, patient = _id_and_patient(resource, "subject")
    if str(resource.get("status")) in VOID_STATUSES | {"inactive"}:
        return None
    start, end = _period(resource.get("period"), tz, "period")
    people: set[str] = set()
    for p in _list(resource.get("participant")):
        if isinstance(p, Mapping):
            people |= _person_keys(p.get("member"))
    seg = Segment(start if start is not None else 0, end if end is not None else OPEN_END_MS, None,
                  f"CareTeam/{cid}", frozenset(people), care_team_only=True)
    return Encounter(f"CareTeam/{cid}", patient, (seg,))


def related_person_from_fhir(resource: Mapping[str, Any]) -> tuple[str, str, frozenset[str]] | None:
    """A FHIR ``RelatedPerson``: (its id, the patient, the person's identifier values folded). The roster links
    an identifier to a user (their user id, login, or own medical record number)."""
    rid, patient = _id_and_patient(resource, "patient")
    if resource.get("active") is False:
        return None
    keys = {fold(i["value"]) for i in _list(resource.get("identifier"))
            if isinstance(i, Mapping) and isinstance(i.get("value"), str) and i["value"]}
    return rid, patient, frozenset(keys)


def patient_contacts_from_fhir(resource: Mapping[str, Any]) -> tuple[str, str, frozenset[str]]:
    """A FHIR ``Patient``'s ``contact[]`` (next of kin, emergency contacts) as listed related persons: (an id
    for the index, the patient, the contacts' keys, ``engine.enrich.lookups.fhir_contact_keys``)."""
    pid = resource.get("id")
    if not isinstance(pid, str) or not pid:
        raise EncounterFormatError("Patient.id: missing")
    return f"Patient/{pid}#contact", pid, fhir_contact_keys(resource)


# --- the index -------------------------------------------------------------------------------------
class EncounterIndex:
    """Encounters by id, and per patient a start-sorted list of segments for interval lookups.

    Updates replace an encounter by id (a FHIR update, a re-read file), so the same record read twice is
    one encounter. Lookups bisect on start and scan back over the patient's few earlier segments."""

    def __init__(self) -> None:
        self.encounters: dict[str, Encounter] = {}
        self.related: dict[str, tuple[str, frozenset[str]]] = {}  # RelatedPerson id -> (patient, keys)
        self._by_patient: dict[str, tuple[list[int], list[Segment]]] = {}  # (starts, segments), start-sorted
        self._related_by_patient: dict[str, frozenset[str]] = {}
        self._dirty: set[str] = set()
        self._stale = False  # anything to rebuild before the next lookup
        #: counts every change: the enricher's care moments (engine/enrich/care_context.py) hold until it moves
        self.version = 0

    def put(self, encounter: Encounter) -> None:
        old = self.encounters.get(encounter.encounter_id)
        if old is not None:
            self._dirty.add(old.patient_id)
        self.encounters[encounter.encounter_id] = encounter
        self._dirty.add(encounter.patient_id)
        self._stale = True
        self.version += 1

    def remove(self, encounter_id: str) -> None:
        old = self.encounters.pop(encounter_id, None)
        if old is not None:
            self._dirty.add(old.patient_id)
            self._stale = True
            self.version += 1

    def put_related(self, rid: str, patient: str, keys: frozenset[str]) -> None:
        self.related[rid] = (patient, keys)
        self._related_by_patient = {}
        self._stale = True
        self.version += 1

    def remove_related(self, rid: str) -> None:
        if self.related.pop(rid, None) is not None:
            self._related_by_patient = {}
            self._stale = True
            self.version += 1

    def _rebuild(self) -> None:
        """Re-sort the segments of the patients changed since the last lookup (one pass per refresh)."""
        self._stale = False
        if self._dirty:
            dirty, self._dirty = self._dirty, set()
            acc: dict[str, list[Segment]] = {}
            for enc in self.encounters.values():
                if enc.patient_id in dirty:
                    acc.setdefault(enc.patient_id, []).extend(enc.segments)
            for pid in dirty:
                segments = sorted(acc.get(pid, ()), key=_segment_order)
                if segments:
                    self._by_patient[pid] = ([seg.start_ms for seg in segments], segments)
                else:
                    self._by_patient.pop(pid, None)
        if not self._related_by_patient and self.related:
            acc: dict[str, set[str]] = {}
            for patient, keys in self.related.values():
                acc.setdefault(patient, set()).update(keys)
            self._related_by_patient = {p: frozenset(k) for p, k in acc.items()}

    def _segments_of(self, patient_id: str) -> tuple[list[int], list[Segment]] | None:
        """(sorted starts, segments) of the patient, the index rebuilt first when a reload made it stale."""
        if self._stale:
            self._rebuild()
        return self._by_patient.get(patient_id)

    def segments_of(self, patient_id: str) -> Sequence[Segment]:
        """Every segment of the patient, start-sorted (where the enricher's care moments find their bounds)."""
        entry = self._segments_of(patient_id)
        return entry[1] if entry is not None else ()

    def active(self, patient_id: str, ts_ms: int, before_ms: int = 0, after_ms: int = 0) -> list[Segment]:
        """Segments of the patient that cover ``ts_ms`` (widened by the grace periods)."""
        entry = self._segments_of(patient_id)
        if entry is None:
            return []
        starts, segments = entry
        hi = bisect.bisect_right(starts, ts_ms + before_ms)
        return [s for s in segments[:hi] if s.end_ms + after_ms > ts_ms or s.end_ms == s.start_ms == ts_ms]

    def department_at(self, patient_id: str, ts_ms: int) -> tuple[int, str] | None:
        """(start, department) of the latest-started stay segment with a department covering ``ts_ms``
        exactly (no grace, CareTeams aside): where the patient is. For the ward-work memory, asked on every
        access, so no list is built."""
        entry = self._segments_of(patient_id)
        if entry is None:
            return None
        starts, segments = entry
        for i in range(bisect.bisect_right(starts, ts_ms) - 1, -1, -1):   # latest start first
            seg = segments[i]
            if seg.end_ms > ts_ms and seg.department and not seg.care_team_only:
                return seg.start_ms, seg.department
        return None

    def last_end(self, patient_id: str, ts_ms: int) -> int | None:
        """When the patient's latest encounter that ended at or before ``ts_ms`` ended (CareTeams aside)."""
        entry = self._segments_of(patient_id)
        if entry is None:
            return None
        starts, segments = entry
        ends = [s.end_ms for s in segments[:bisect.bisect_right(starts, ts_ms)]
                if s.end_ms <= ts_ms and not s.care_team_only]
        return max(ends) if ends else None

    def related_keys(self, patient_id: str) -> frozenset[str]:
        if self._stale:
            self._rebuild()
        return self._related_by_patient.get(patient_id, frozenset())

    def __len__(self) -> int:
        return len(self.encounters)

    @property
    def has_related(self) -> bool:
        return bool(self.related)


_EMPTY = EncounterIndex()


# --- sources ---------------------------------------------------------------------------------------
class EncounterSource:
    """Interface: an :class:`EncounterIndex` kept current by ``refresh()``; ``loaded`` once it has data."""

    index: EncounterIndex
    #: for ``status``: the last good load or pull (Unix time), and why the last attempt failed
    loaded_at: float | None = None
    error: str | None = None

    def refresh(self) -> None:  # noqa: B027 - optional
        pass

    @property
    def loaded(self) -> bool:
        return False

    def status(self, name: str) -> LookupStatus:
        """What ``/health`` shows of this source (``engine.enrich.lookups.LookupStatus``)."""
        source = getattr(self, "path", None) or getattr(self, "base_url", "")
        return LookupStatus(name, str(source), self.loaded, len(self.index) if self.loaded else None,
                            self.loaded_at, self.error)


def _warn_bad(where: str, exc: Exception, counter: list[int], limit: int = 20) -> None:
    """One line per bad record, naming file:line and key (never the value); quiet after ``limit``."""
    counter[0] += 1
    if counter[0] <= limit:
        log.warning("%s: %s; record skipped", where, exc)
    elif counter[0] == limit + 1:
        log.warning("%s: more bad records; further ones are counted, not logged", where.rsplit(":", 1)[0])


def _report_bad(where: str, counter: list[int], limit: int = 20) -> None:
    """After a load: the count ``_warn_bad`` stopped logging at (the lines above name the first ones)."""
    if counter[0] > limit:
        log.warning("%s: %d bad records skipped in all", where, counter[0], extra={"lookup_skipped": counter[0]})


class CsvEncounterSource(FileBacked, EncounterSource):
    """An encounter extract (ADT report) as CSV. Columns (rename with ``columns``): ``patient_id``,
    ``department`` (unit or ward), ``start``, ``end`` (empty: still admitted), optional ``encounter_id``,
    ``class``, ``status`` and ``participants`` (user ids/logins separated by ``;`` or ``|``)."""

    def __init__(self, path: str | os.PathLike[str], *, columns: Mapping[str, str] | None = None,
                 encoding: str = "utf-8-sig", delimiter: str | None = None, tz: tzinfo = timezone.utc,
                 time_format: str | None = None):
        self.configured_columns = dict(columns or {})
        self.columns = {**ENCOUNTER_COLUMNS, **self.configured_columns}
        self.encoding, self.delimiter, self.tz, self.time_format = encoding, delimiter, tz, time_format
        self.file = ReloadingFile(path, self._load, "encounter extract",
                                  encoding=(encoding, "encounters_csv_encoding"))

    @property  # type: ignore[override]
    def index(self) -> EncounterIndex:
        return self.file.table if self.file.table is not None else _EMPTY

    def _load(self, path: Path) -> EncounterIndex:
        header = csv_header(path, self.encoding, self.delimiter)
        check_columns(path, header, "encounters_csv_columns", self.configured_columns, self.columns, ("patient_id",))
        for key in ("start",):
            if self.columns[key] not in header:
                raise ColumnMappingError(f"encounters_csv_columns: {path} has no {self.columns[key]!r} column "
                                         f"(set encounters_csv_columns.{key} to name it)")
        index = EncounterIndex()
        c, bad = self.columns, [0]
        for n, row in enumerate(_read_csv(path, self.encoding, self.delimiter), start=2):
            try:
                enc = self._row(row, c, n)
            except EncounterFormatError as exc:
                _warn_bad(f"{path.name}:{n}", exc, bad)
                continue
            if enc is None:
                continue
            old = index.encounters.get(enc.encounter_id)
            if old is not None and old.patient_id == enc.patient_id:  # a transfer: one row per unit
                enc = Encounter(enc.encounter_id, enc.patient_id,
                                tuple(sorted(old.segments + enc.segments, key=_segment_order)))
            index.put(enc)
        _report_bad(path.name, bad)
        return index

    def _row(self, row: Mapping[str, str], c: Mapping[str, str], n: int) -> Encounter | None:
        def get(key: str) -> str:
            return row.get(c[key], "") or ""

        pid = get("patient_id")
        if not pid:
            raise EncounterFormatError(f"{c['patient_id']}: empty")
        if get("status").casefold() in VOID_STATUSES:
            return None
        try:
            start = parse_instant(get("start"), self.tz, fmt=self.time_format)
        except EncounterFormatError as exc:
            raise EncounterFormatError(f"{c['start']}: {exc}") from None
        try:
            end = parse_instant(get("end"), self.tz, end=True, fmt=self.time_format) if get("end") else OPEN_END_MS
        except EncounterFormatError as exc:
            raise EncounterFormatError(f"{c['end']}: {exc}") from None
        if end < start:
            raise EncounterFormatError(f"{c['end']}: before {c['start']}")
        eid = get("encounter_id") or f"csv:{n}"
        people = frozenset(fold(p.strip()) for p in get("participants").replace("|", ";").split(";") if p.strip())
        seg = Segment(start, end, get("department") or None, eid, people, get("class") or None)
        return Encounter(eid, pid, (seg,))

    @property
    def loaded(self) -> bool:
        return self.file.table is not None


def _ndjson_files(path: Path) -> list[Path]:
    return sorted(path.glob("*.ndjson")) if path.is_dir() else [path]


def _export_stamp(path: Path) -> tuple[tuple[str, int, int], ...]:
    """An export changed when any of its files did: (name, mtime, size) of each."""
    return tuple((f.name, *file_stamp(f)) for f in _ndjson_files(path))


class NdjsonEncounterSource(FileBacked, EncounterSource):
    """FHIR bulk-export NDJSON: one file, or a directory of ``*.ndjson`` files (``Encounter.ndjson``,
    ``CareTeam.ndjson``, ``RelatedPerson.ndjson``, ``Patient.ndjson`` for its contacts; other resource types
    are skipped and counted)."""

    def __init__(self, path: str | os.PathLike[str], *, tz: tzinfo = timezone.utc,
                 department_from: Sequence[str] = DEFAULT_DEPARTMENT_FROM):
        self.tz, self.department_from = tz, tuple(department_from)
        self.file = ReloadingFile(path, self._load, "encounter export", stamp=_export_stamp)

    @property  # type: ignore[override]
    def index(self) -> EncounterIndex:
        return self.file.table if self.file.table is not None else _EMPTY

    def _load(self, path: Path) -> EncounterIndex:
        index = EncounterIndex()
        for f in _ndjson_files(path):
            bad = [0]
            with f.open(encoding="utf-8") as fh:
                for n, line in enumerate(fh, start=1):
                    if not line.strip():
                        continue
                    try:
                        resource = json.loads(line)
                        if not isinstance(resource, dict):
                            raise EncounterFormatError("not a JSON object")
                        add_resource(index, resource, self.tz, self.department_from)
                    except json.JSONDecodeError:
                        _warn_bad(f"{f.name}:{n}", EncounterFormatError("not JSON"), bad)
                    except EncounterFormatError as exc:
                        _warn_bad(f"{f.name}:{n}", exc, bad)
            _report_bad(f.name, bad)
        return index

    @property
    def loaded(self) -> bool:
        return self.file.table is not None


def add_resource(index: EncounterIndex, resource: Mapping[str, Any], tz: tzinfo,
                 department_from: Sequence[str] = DEFAULT_DEPARTMENT_FROM) -> str:
    """Put one FHIR resource into ``index``; returns its type (other types are ignored)."""
    kind = resource.get("resourceType")
    if kind == "Encounter":
        enc = encounter_from_fhir(resource, tz, department_from)
        if enc is None:
            index.remove(str(resource.get("id")))
        else:
            index.put(enc)
    elif kind == "CareTeam":
        team = care_team_from_fhir(resource, tz)
        if team is None:
            index.remove(f"CareTeam/{resource.get('id')}")
        else:
            index.put(team)
    elif kind == "RelatedPerson":
        rel = related_person_from_fhir(resource)
        if rel is not None:
            index.put_related(*rel)
    elif kind == "Patient":  # its contacts; a Patient read again without them drops the old ones
        rid, patient, keys = patient_contacts_from_fhir(resource)
        if keys:
            index.put_related(rid, patient, keys)
        else:
            index.remove_related(rid)
    return str(kind)


class FhirEncounterSource(EncounterSource):
    """Encounters (and, with ``resource_types``, CareTeams, RelatedPersons and Patients' contacts) pulled from a
    FHIR server.

    Each ``refresh()`` searches ``{type}?_lastUpdated=ge{high_water - overlap}&_sort=_lastUpdated`` and
    follows ``link[next]`` (same origin only: a paging link must not take the token elsewhere). The high water
    is kept in memory; after a restart the first pull reads everything again (``params`` can bound it, e.g.
    ``{date: ge2026-01-01}``). A failed pull logs one line and keeps what it has; the next refresh retries.
    """

    def __init__(self, base_url: str, *, client: Any, tz: tzinfo = timezone.utc,
                 params: Mapping[str, Any] | None = None, page_size: int = 500, overlap_seconds: float = 300.0,
                 resource_types: Sequence[str] = ("Encounter",), max_pages: int = 10_000,
                 department_from: Sequence[str] = DEFAULT_DEPARTMENT_FROM):
        self.base_url = base_url.rstrip("/")
        self.client, self.tz = client, tz
        self.params = {str(k): str(v) for k, v in (params or {}).items()}
        self.page_size, self.overlap_ms, self.max_pages = page_size, int(overlap_seconds * 1000), max_pages
        self.resource_types = tuple(resource_types)
        self.department_from = tuple(department_from)
        self.index = EncounterIndex()
        self.high_water_ms: dict[str, int] = {}
        self.requests = 0
        self._pulled = False
        self.refresh()

    def _search_url(self, kind: str) -> str:
        q: dict[str, str] = {**self.params, "_sort": "_lastUpdated", "_count": str(self.page_size)}
        hw = self.high_water_ms.get(kind)
        if hw is not None:
            since = datetime.fromtimestamp((hw - self.overlap_ms) / 1000, tz=timezone.utc)
            q["_lastUpdated"] = "ge" + since.strftime("%Y-%m-%dT%H:%M:%S.") + f"{since.microsecond // 1000:03d}Z"
        return f"{self.base_url}/{kind}?{urlencode(q)}"

    def _pages(self, url: str) -> Iterator[Mapping[str, Any]]:
        from connectors.fhir_rest import _next_link

        origin = urlsplit(self.base_url)[:2]
        for _ in range(self.max_pages):
            self.requests += 1
            resp = self.client.get(url, headers={"Accept": "application/fhir+json"})
            if resp.status_code != 200:
                raise EncounterFormatError(f"server answered {resp.status_code}")
            bundle = resp.json()
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise EncounterFormatError("answer is not a Bundle")
            yield bundle
            url = _next_link(bundle)  # type: ignore[assignment]
            if not url:
                return
            if urlsplit(url)[:2] != origin:
                raise EncounterFormatError("next link leaves the server's origin; not followed")

    def refresh(self) -> None:
        import httpx

        failures: list[str] = []
        for kind in self.resource_types:
            bad, count, hw = [0], 0, self.high_water_ms.get(kind)
            try:
                for page in self._pages(self._search_url(kind)):
                    for n, entry in enumerate(_list(page.get("entry"))):
                        resource = entry.get("resource") if isinstance(entry, Mapping) else None
                        if not isinstance(resource, Mapping) or resource.get("resourceType") != kind:
                            continue
                        try:
                            add_resource(self.index, resource, self.tz, self.department_from)
                            count += 1
                        except EncounterFormatError as exc:
                            _warn_bad(f"{self.base_url}/{kind} entry {n}", exc, bad)
                        updated = (resource.get("meta") or {}).get("lastUpdated") if isinstance(
                            resource.get("meta"), Mapping) else None
                        if isinstance(updated, str):
                            try:
                                ms = parse_instant(updated, timezone.utc)
                            except EncounterFormatError:
                                continue
                            hw = ms if hw is None else max(hw, ms)
            except (httpx.HTTPError, ValueError) as exc:
                reason = str(exc) if isinstance(exc, EncounterFormatError) else type(exc).__name__
                log.warning("encounter server %s/%s: pull failed (%s); keeping %d encounters", self.base_url,
                            kind, reason, len(self.index))
                failures.append(f"{kind} pull failed: {reason}")
                continue
            _report_bad(f"{self.base_url}/{kind}", bad)
            if hw is not None:
                self.high_water_ms[kind] = hw
            self._pulled = True
            self.loaded_at = time.time()
            if count:
                log.info("encounter server %s/%s: %d resources pulled", self.base_url, kind, count)
        self.error = "; ".join(failures) or None

    @property
    def loaded(self) -> bool:
        return self._pulled

    def close(self) -> None:
        self.client.close()
