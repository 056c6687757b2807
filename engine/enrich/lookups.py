"""Lookup sources for privacy enrichment: staff roster, patient directory, VIP list.

They hold personal data (names, addresses) *only in memory*, to compute relationship flags; nothing here is
ever copied into an event or a log line (GDPR: the event gets booleans, never the names). Log messages name
files and counts, never a person or a patient identifier.

File sources reload themselves when the file changes (``refresh()`` compares mtime and size), and keep the
previous table if a reload fails, so a half-written roster never empties the lookups. The FHIR patient source
reads ``Patient/{id}`` over HTTP with a bounded TTL cache, so an access-log burst on one patient costs one
request.
"""

from __future__ import annotations

import csv
import logging
import os
import re
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass
from functools import lru_cache
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Callable, Hashable, Iterable, Mapping, Protocol

log = logging.getLogger(__name__)


# --- normalisation -------------------------------------------------------------------------------
_ADDRESS_ABBREVIATIONS = {
    "street": "st", "str": "st", "strasse": "st", "straße": "st", "road": "rd", "avenue": "ave", "av": "ave",
    "drive": "dr", "lane": "ln", "court": "ct", "place": "pl", "boulevard": "blvd", "square": "sq",
    "apartment": "apt", "suite": "ste", "floor": "fl", "north": "n", "south": "s", "east": "e", "west": "w",
    "weg": "wg", "gasse": "g", "platz": "pl", "allee": "al",
}


def fold(text: str) -> str:
    """Case- and accent-insensitive form: 'Müller' and 'MULLER' compare equal.

    Called per event by the privacy enrichment (``StaffRoster.member``: ~30% of it went here): ASCII text,
    nearly every login and id, has no decompositions and no combining marks, so NFKD leaves it unchanged
    and ``casefold`` alone gives the same result; the rest goes through the full form, cached."""
    if text.isascii():
        return text.casefold()
    return _fold_unicode(text)


@lru_cache(maxsize=65536)
def _fold_unicode(text: str) -> str:
    text = unicodedata.normalize("NFKD", text.replace("ß", "ss"))
    return "".join(c for c in text if not unicodedata.combining(c)).casefold()


def normalise_name(text: str | None) -> str:
    """A family name reduced to letters only ("O'Brien-Smith" -> "obriensmith")."""
    return re.sub(r"[^a-z]", "", fold(text or ""))


def name_parts(text: str | None) -> set[str]:
    """Components of a (possibly double-barrelled) family name, 3+ letters, for the same-last-name check."""
    parts = {re.sub(r"[^a-z]", "", p) for p in re.split(r"[\s\-]+", fold(text or ""))}
    return {p for p in parts if len(p) >= 3}


def normalise_address(line: str | None, postal_code: str | None = None) -> str:
    """A comparable address: folded, punctuation removed, common street words abbreviated, postcode appended.

    "12 Baker Street, Apt. 3" and "12 baker st apt 3" normalise to the same text. Not a geocoder: it catches
    the same household written the same way with cosmetic differences, which is what the rule needs.
    """
    text = fold(line or "")
    # Split glued German street suffixes: "hauptstrasse" -> "haupt strasse"
    text = re.sub(r"(\w)(strasse|str\.)(?=\s|\d|$)", r"\1 \2", text)
    tokens = [t for t in re.split(r"[^0-9a-z]+", text) if t]
    tokens = [_ADDRESS_ABBREVIATIONS.get(t, t) for t in tokens]
    if not tokens:
        return ""
    postal = re.sub(r"[^0-9a-z]", "", fold(postal_code or ""))
    return " ".join(tokens) + (f"|{postal}" if postal else "")


def contact_key(family_name: str, address: str) -> str | None:
    """How a ``Patient.contact`` (next of kin, emergency contact) is matched to a staff member: the same
    normalised family name at the same normalised address (R4 ``Patient.contact`` carries no identifier, and a
    roster carries no given names). None without both: a name alone, or an address alone, is no person."""
    return f"contact:{family_name}|{address}" if family_name and address else None


def fhir_contact_keys(resource: Mapping[str, Any]) -> frozenset[str]:
    """The ``contact_key`` of every ``contact[]`` of a FHIR ``Patient`` (next of kin, emergency contacts)
    that names both a family name and an address. A contact whose ``period`` has ended still counts, as a
    ``RelatedPerson`` does. Malformed elements are passed over: a bad contact must not lose the patient."""
    keys: set[str] = set()
    contacts = resource.get("contact")
    for contact in contacts if isinstance(contacts, list) else ():
        if not isinstance(contact, Mapping):
            continue
        name = contact.get("name") if isinstance(contact.get("name"), Mapping) else {}
        address = contact.get("address") if isinstance(contact.get("address"), Mapping) else {}
        key = contact_key(normalise_name(_string(name.get("family"))), _fhir_address(address))
        if key is not None:
            keys.add(key)
    return frozenset(keys)


def normalise_postcode(postal_code: str | None) -> str:
    """A comparable postcode: folded, letters and digits only ("SW1A 1AA" -> "sw1a1aa")."""
    return re.sub(r"[^0-9a-z]", "", fold(postal_code or ""))


def parse_date(value: Any) -> date | None:
    """Dates in rosters come as ISO dates, ISO datetimes or common local forms; unparseable -> None."""
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = str(value).strip()
    for fmt in ("%Y-%m-%d", "%d.%m.%Y", "%m/%d/%Y", "%Y%m%d", "%d/%m/%Y"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).date()
    except ValueError:
        return None


#: "yes" in an extract's flag columns: English, SAP's X, and German / Dutch J / ja (VIP_KZ, SPERRVERMERK)
TRUE_WORDS = frozenset({"1", "y", "yes", "true", "t", "x", "j", "ja", "vip", "confidential"})


def truthy(value: Any) -> bool:
    return str(value).strip().casefold() in TRUE_WORDS


# --- records -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class StaffMember:
    keys: tuple[str, ...]  # user id and login, folded
    family_name: str
    name_parts: frozenset[str]
    department: str | None
    address: str  # normalised
    patient_id: str | None  # the employee's own medical record number
    end_date: date | None
    role: str | None = None  # job role/title from the roster or directory -> ehr.user.role
    postal_code: str = ""  # normalised (normalise_postcode), for ehr.relationship.same_postcode


@dataclass(frozen=True)
class PatientFacts:
    family_name: str
    name_parts: frozenset[str]
    address: str  # normalised
    vip: bool = False
    confidential: bool = False
    deceased_date: date | None = None
    deceased: bool = False  # deceased without a known date
    postal_code: str = ""  # normalised (normalise_postcode)
    #: ``contact_key`` of each listed contact (FHIR ``Patient.contact``); None: the source lists no contacts
    contact_keys: frozenset[str] | None = None


# --- file-backed tables --------------------------------------------------------------------------
class LookupFileError(ValueError):
    """A lookup file the configuration cannot read as it stands; raised on the first load only (a later
    reload keeps the last good table and logs it). The message names the option, the file and where, never
    a row's content (rows hold personal data)."""


class ColumnMappingError(LookupFileError):
    """A configured column is not in the file's header: every row would silently lack that fact."""


def encoding_error(path: Path, encoding: str, option: str) -> LookupFileError:
    """The line naming where ``path`` stops being ``encoding`` text, and the option that says otherwise."""
    try:
        raw = path.read_bytes()
        raw.decode(encoding)
        where = ""
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        where = f" (line {line}, byte 0x{raw[exc.start]:02x})"
    except (OSError, LookupError):
        where = ""
    return LookupFileError(f"{option}: {path} is not {encoding} text{where}; set {option} to the file's "
                           f"encoding (Windows exports are often cp1252)")


@dataclass(frozen=True)
class LookupStatus:
    """One lookup as the service's ``/health`` and metrics show it (``engine.scheduler``).

    Why: a lookup that fails keeps serving its last table, or nothing, with one warning in the log. A
    roster that HR stopped exporting then ends nobody's contract, and nothing on a dashboard says so.
    ``ok`` is False when nothing is loaded or the last reload failed (the table is then stale)."""

    name: str  #: e.g. ``privacy.roster``
    source: str  #: the file or server it reads (``/health`` scrubs paths to their last component)
    loaded: bool
    entries: int | None
    #: Unix time of the last successful load, None before one
    loaded_at: float | None
    #: why the last load or reload failed, None when it did not
    error: str | None
    #: Unix time the loaded data was built, for a source that records it (a MaxMind database); else None
    built_at: float | None = None
    #: what is wrong with a table that still answers (a database past its licence's age), None when nothing
    #: is; unlike ``error`` it leaves ``ok`` true: the lookup works, and ``/health`` must not fail over it
    warning: str | None = None

    @property
    def ok(self) -> bool:
        return self.loaded and self.error is None

    def to_dict(self) -> dict[str, Any]:
        """As ``/health`` shows it: times in UTC ISO 8601, as connector health's ``since``; ``built_at`` and
        ``warning`` only for a source that knows when its data was built."""
        shown = {"ok": self.ok, "source": self.source, "loaded": self.loaded, "entries": self.entries,
                 "loaded_at": _iso(self.loaded_at), "error": self.error}
        if self.built_at is not None:
            shown |= {"built_at": _iso(self.built_at), "warning": self.warning}
        return shown


def _iso(epoch: float | None) -> str | None:
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat(timespec="seconds") if epoch is not None else None


#: ``extra`` of the warning a lookup logs when it has nothing loaded (the file is missing or unreadable on
#: its first load): ``wardwatch config check`` reports that lookup as unusable (engine/lookup_check.py)
UNAVAILABLE = {"lookup_unavailable": True}


def file_stamp(path: Path) -> tuple[int, int]:
    """What tells a file changed: its (mtime, size). Raises OSError when it cannot be read."""
    st = path.stat()
    return (st.st_mtime_ns, st.st_size)


class ReloadingFile:
    """A file-backed table that reloads when the file's (mtime, size) changes.

    Loading is a callable so each source only says how to parse; a failed reload keeps the last good table.
    A :class:`ColumnMappingError` on the *first* load is raised: it is a configuration mistake, and running
    on would mark every user as off the roster.

    Every lookup kept on disk goes through here, so that they all reload, keep their last good table and
    report it (``status``) the same way: ``stamp`` says what "changed" means when the lookup is more than
    one file (a directory of NDJSON files), ``close`` releases a replaced table that holds a resource (an
    open database reader), and ``describe`` says what a table without entries is.
    """

    def __init__(self, path: str | os.PathLike[str], loader: Callable[[Path], Any], what: str,
                 size: Callable[[Any], int | None] = len, encoding: tuple[str, str] | None = None,
                 stamp: Callable[[Path], Hashable] = file_stamp, close: Callable[[Any], None] | None = None,
                 describe: Callable[[Any], str] | None = None):
        self.path = Path(path)
        self.loader = loader
        self.what = what
        #: (codec, the option naming it): a file that does not decode names them (``encoding_error``)
        self.encoding = encoding
        #: how many entries a loaded table holds, for the "loaded: N entries" line (a table may be a dict
        #: of parts, so ``len`` of it would count the parts); None: the table cannot say
        self.size = size
        self.stamp, self.close = stamp, close
        #: what the "loaded" line says of a table that has no entry count (a database's type and build date)
        self.describe = describe
        self._stamp: Hashable | None = None
        self.table: Any = None
        #: for ``status``: the last good load (Unix time, entries), and why the last attempt failed
        self.loaded_at: float | None = None
        self.entries: int | None = None
        self.error: str | None = None
        self.refresh()

    def status(self, name: str) -> LookupStatus:
        return LookupStatus(name, str(self.path), self.table is not None, self.entries, self.loaded_at,
                            self.error)

    def refresh(self) -> bool:
        """Reload if changed. Returns True when a new table was loaded."""
        try:
            stamp = self.stamp(self.path)
        except OSError as exc:
            self.error = f"unavailable: {exc.strerror}"
            if self.table is None:
                log.warning("%s %s unavailable: %s", self.what, self.path, exc.strerror, extra=UNAVAILABLE)
            return False
        if stamp == self._stamp:
            if self.error is not None and self.error.startswith("unavailable"):
                self.error = None  # the file is back as it was
            return False
        try:
            try:
                table = self.loader(self.path)
            except UnicodeDecodeError:
                if self.encoding is None:
                    raise
                raise encoding_error(self.path, *self.encoding) from None
        except LookupFileError as exc:
            if self.table is None:
                raise
            self.error = f"not reloaded: {exc}"
            log.warning("%s not reloaded (%s); keeping the previous version", self.what, exc)
            return False
        except Exception as exc:  # noqa: BLE001 - a bad file must not stop ingest; the old table stays
            self.error = f"{'not loaded' if self.table is None else 'not reloaded'}: {type(exc).__name__}"
            if self.table is None:
                log.warning("%s %s not loaded (%s)", self.what, self.path, type(exc).__name__, extra=UNAVAILABLE)
            else:
                log.warning("%s %s not reloaded (%s); keeping the previous version", self.what, self.path,
                            type(exc).__name__)
            return False
        old, self.table, self._stamp = self.table, table, stamp
        entries = self.size(table)
        self.loaded_at, self.entries, self.error = time.time(), entries, None
        if entries is None:
            log.info("%s %s loaded%s", self.what, self.path,
                     f": {self.describe(table)}" if self.describe is not None else "")
        else:
            log.info("%s %s loaded: %d entries", self.what, self.path, entries, extra={"lookup_entries": entries})
        if old is not None and self.close is not None:
            self.close(old)
        return True


class FileBacked:
    """A lookup kept in one :class:`ReloadingFile` (``self.file``): the service reloads it and ``/health``
    asks how it stands, the same way for every file-backed source."""

    file: ReloadingFile

    def refresh(self) -> None:
        self.file.refresh()

    def status(self, name: str) -> LookupStatus:
        return self.file.status(name)


def _read_csv(path: Path, encoding: str, delimiter: str | None) -> Iterable[dict[str, str]]:
    with path.open(encoding=encoding, newline="") as fh:
        head = fh.readline()
        delim = delimiter or max((",", "\t", ";", "|"), key=head.count)
        fh.seek(0)
        for row in csv.DictReader(fh, delimiter=delim):
            # extra cells beyond the header come under key None as a list: dropped, never a crash
            yield {k.strip(): (v or "").strip() for k, v in row.items()
                   if isinstance(k, str) and not isinstance(v, list)}


def csv_header(path: Path, encoding: str, delimiter: str | None) -> list[str]:
    """The header row's column names (stripped), as :func:`_read_csv` sees them."""
    with path.open(encoding=encoding, newline="") as fh:
        head = fh.readline()
    delim = delimiter or max((",", "\t", ";", "|"), key=head.count)
    return [h.strip() for h in next(csv.reader([head], delimiter=delim), [])]


def check_columns(path: Path, header: list[str], option: str, configured: Mapping[str, str],
                  columns: Mapping[str, str], keys: tuple[str, ...]) -> None:
    """Every column the site configured must be in the header, and at least one key column must be.

    Default column names that are absent are fine (an extract without addresses gives no address flags)."""
    present = set(header)
    for key, column in configured.items():
        if column not in present:
            raise ColumnMappingError(f"{option}.{key}: column {column!r} is not in the header of {path}")
    if not any(columns.get(k, k) in present for k in keys):
        wanted = " or ".join(repr(columns.get(k, k)) for k in keys)
        raise ColumnMappingError(f"{option}: {path} has no {wanted} column (set {option} to name it)")


def _col(row: Mapping[str, str], columns: Mapping[str, str], key: str) -> str:
    return row.get(columns.get(key, key), "") or ""


ROSTER_COLUMNS = {
    "user_id": "user_id", "login": "login", "family_name": "family_name", "name": "name",
    "department": "department", "address": "address", "postal_code": "postal_code",
    "patient_id": "patient_id", "end_date": "end_date", "role": "role",
}


def _people(table: Mapping[str, Any]) -> int:
    """Distinct staff members in a roster table (each is keyed by user id *and* login)."""
    return len({id(member) for member in table["members"].values()})


class StaffRoster(FileBacked):
    """The staff roster (HR export) as a CSV: who a user is, where they work and live, when they left.

    Columns (renameable via ``columns``): ``user_id``, ``login``, ``family_name`` (or ``name`` as
    "Family, Given" / "Given Family"), ``department``, ``address``, ``postal_code``, ``patient_id`` (the
    employee's own medical record number), ``end_date`` (last day of employment; empty = employed),
    ``role`` (job role or title, for role-based rule filters: ``ehr.user.role``).
    """

    def __init__(self, path: str | os.PathLike[str], *, columns: Mapping[str, str] | None = None,
                 encoding: str = "utf-8-sig", delimiter: str | None = None):
        self.configured_columns = dict(columns or {})
        self.columns = {**ROSTER_COLUMNS, **self.configured_columns}
        self.encoding, self.delimiter = encoding, delimiter
        self.file = ReloadingFile(path, self._load, "staff roster", size=_people,
                                  encoding=(encoding, "roster_encoding"))

    def _load(self, path: Path) -> dict[str, Any]:
        check_columns(path, csv_header(path, self.encoding, self.delimiter), "roster_columns",
                      self.configured_columns, self.columns, ("user_id", "login"))
        by_key: dict[str, StaffMember] = {}
        employee_patients: set[str] = set()
        for row in _read_csv(path, self.encoding, self.delimiter):
            c = self.columns
            family = _col(row, c, "family_name") or _family_from_full_name(_col(row, c, "name"))
            keys = tuple(fold(k) for k in (_col(row, c, "user_id"), _col(row, c, "login")) if k)
            if not keys:
                continue
            member = StaffMember(
                keys=keys,
                family_name=normalise_name(family),
                name_parts=frozenset(name_parts(family)),
                department=_col(row, c, "department") or None,
                address=normalise_address(_col(row, c, "address"), _col(row, c, "postal_code")),
                patient_id=_col(row, c, "patient_id") or None,
                end_date=parse_date(_col(row, c, "end_date")),
                role=_col(row, c, "role") or None,
                postal_code=normalise_postcode(_col(row, c, "postal_code")),
            )
            for key in keys:
                by_key[key] = member
            if member.patient_id:
                employee_patients.add(member.patient_id)
        return {"members": by_key, "employee_patients": employee_patients}

    def __len__(self) -> int:
        """How many people: ``members`` maps both user id and login to the same member."""
        return _people(self.file.table) if self.file.table else 0

    def member(self, user: str | None) -> StaffMember | None:
        if not user or not self.file.table:
            return None
        return self.file.table["members"].get(fold(user))

    def is_employee_patient(self, patient_id: str) -> bool:
        return bool(self.file.table) and patient_id in self.file.table["employee_patients"]

    def members(self) -> list[StaffMember]:
        """Every staff member once (the table keys each by user id and by login): config check's lists."""
        table = self.file.table
        return list({id(m): m for m in table["members"].values()}.values()) if table else []

    @property
    def loaded(self) -> bool:
        return self.file.table is not None


def _family_from_full_name(name: str) -> str:
    name = name.strip()
    if "," in name:
        return name.split(",", 1)[0]
    return name.split()[-1] if name.split() else ""


PATIENT_COLUMNS = {
    "patient_id": "patient_id", "family_name": "family_name", "address": "address",
    "postal_code": "postal_code", "vip": "vip", "confidential": "confidential", "deceased_date": "deceased_date",
}


class PatientSource:
    """Interface: facts about one patient, or None when the source does not know the patient."""

    def get(self, patient_id: str) -> PatientFacts | None:  # pragma: no cover - interface
        raise NotImplementedError

    def refresh(self) -> None:  # noqa: B027 - optional
        pass


class CsvPatientDirectory(FileBacked, PatientSource):
    """Patient directory facts from a CSV (an MPI/ADT extract): ``patient_id``, ``family_name``, ``address``,
    ``postal_code``, ``vip``, ``confidential``, ``deceased_date`` (renameable via ``columns``)."""

    def __init__(self, path: str | os.PathLike[str], *, columns: Mapping[str, str] | None = None,
                 encoding: str = "utf-8-sig", delimiter: str | None = None):
        self.configured_columns = dict(columns or {})
        self.columns = {**PATIENT_COLUMNS, **self.configured_columns}
        self.encoding, self.delimiter = encoding, delimiter
        self._freq: SurnameFrequencies | None = None
        self._freq_for: Any = None  # the table _freq was counted from
        self.file = ReloadingFile(path, self._load, "patient directory", encoding=(encoding, "patients_encoding"))

    def _load(self, path: Path) -> dict[str, PatientFacts]:
        check_columns(path, csv_header(path, self.encoding, self.delimiter), "patients_columns",
                      self.configured_columns, self.columns, ("patient_id",))
        table: dict[str, PatientFacts] = {}
        c = self.columns
        for row in _read_csv(path, self.encoding, self.delimiter):
            pid = _col(row, c, "patient_id")
            if not pid:
                continue
            family = _col(row, c, "family_name")
            deceased_raw = _col(row, c, "deceased_date")
            deceased_date = parse_date(deceased_raw)
            table[pid] = PatientFacts(
                family_name=normalise_name(family),
                name_parts=frozenset(name_parts(family)),
                address=normalise_address(_col(row, c, "address"), _col(row, c, "postal_code")),
                vip=truthy(_col(row, c, "vip")),
                confidential=truthy(_col(row, c, "confidential")),
                deceased_date=deceased_date,
                deceased=deceased_date is None and truthy(deceased_raw),
                postal_code=normalise_postcode(_col(row, c, "postal_code")),
            )
        return table

    def get(self, patient_id: str) -> PatientFacts | None:
        return (self.file.table or {}).get(patient_id)

    def surname_frequencies(self) -> "SurnameFrequencies | None":
        """How many patients carry each family name (and name part), from the loaded extract.

        Recomputed once per (re)load, lazily: a directory of 1M patients takes about a second."""
        table = self.file.table
        if table is None:
            return None
        if self._freq_for is not table:
            self._freq = SurnameFrequencies.from_patients(table.values())
            self._freq_for = table
        return self._freq


def surname_keys(family_name: str, parts: Iterable[str]) -> set[str]:
    """The keys a family name is counted and compared under: the whole normalised name and each part."""
    return ({family_name} if family_name else set()) | set(parts)


@dataclass(frozen=True)
class SurnameFrequencies:
    """Patients per family name (whole normalised name or a part of a double-barrelled one), and the total.

    Why: "same last name" is evidence of family only when few patients carry the name; the share of the
    rarest name the user and the patient have in common decides (``ehr.relationship.same_last_name_rare``).
    A name missing from the table has count 0 (a census-style table lists only names it saw)."""

    counts: Mapping[str, int]
    total: int

    @classmethod
    def from_patients(cls, patients: Iterable[PatientFacts]) -> "SurnameFrequencies":
        counts: dict[str, int] = {}
        total = 0
        for facts in patients:
            total += 1
            for key in surname_keys(facts.family_name, facts.name_parts):
                counts[key] = counts.get(key, 0) + 1
        return cls(counts, total)

    def count(self, key: str) -> int:
        return self.counts.get(key, 0)


class SurnameFrequencySource(Protocol):
    """Anything that can say how common family names are among patients (a CSV directory, a counts file)."""

    def surname_frequencies(self) -> SurnameFrequencies | None: ...


class SurnameFrequencyFile(FileBacked):
    """``surname_frequencies_csv``: family-name counts for sites whose patient directory cannot be
    enumerated (FHIR reads one patient at a time). Columns ``family_name`` and ``count`` (renameable);
    the total is the sum of the counts unless given (a census table lists only the commoner names)."""

    def __init__(self, path: str | os.PathLike[str], *, total: int | None = None,
                 columns: Mapping[str, str] | None = None, encoding: str = "utf-8-sig",
                 delimiter: str | None = None):
        self.configured_columns = dict(columns or {})
        self.columns = {"family_name": "family_name", "count": "count", **self.configured_columns}
        self.total, self.encoding, self.delimiter = total, encoding, delimiter
        self.file = ReloadingFile(path, self._load, "surname frequencies", size=lambda t: len(t.counts))

    def _load(self, path: Path) -> SurnameFrequencies:
        header = csv_header(path, self.encoding, self.delimiter)
        for key in ("family_name", "count"):
            if self.columns[key] not in header:
                raise ColumnMappingError(f"surname_frequencies_columns.{key}: column {self.columns[key]!r} "
                                         f"is not in the header of {path}")
        counts: dict[str, int] = {}
        rows_total = 0
        for row in _read_csv(path, self.encoding, self.delimiter):
            name = _col(row, self.columns, "family_name")
            try:
                n = int(float(_col(row, self.columns, "count").replace(",", "")))
            except ValueError:
                continue  # a malformed count: the name stays unknown (count 0), never a crash
            rows_total += max(n, 0)
            for key in surname_keys(normalise_name(name), name_parts(name)):
                counts[key] = counts.get(key, 0) + max(n, 0)
        return SurnameFrequencies(counts, self.total or rows_total)

    def surname_frequencies(self) -> SurnameFrequencies | None:
        return self.file.table


class VipList(FileBacked):
    """Patient ids flagged VIP (celebrities, board members, staff's relatives on request).

    A text file with one id per line (``#`` comments), or a CSV with a ``patient_id`` column.
    """

    def __init__(self, path: str | os.PathLike[str], *, column: str = "patient_id", encoding: str = "utf-8-sig"):
        self.column, self.encoding = column, encoding
        self.file = ReloadingFile(path, self._load, "VIP list", encoding=(encoding, "vip_list_encoding"))

    def _load(self, path: Path) -> frozenset[str]:
        with path.open(encoding=self.encoding, newline="") as fh:
            lines = [ln.strip() for ln in fh]
        if lines and self.column in re.split(r"[,;\t|]", lines[0]):
            return frozenset(r[self.column] for r in _read_csv(path, self.encoding, None) if r.get(self.column))
        return frozenset(ln.split("#", 1)[0].strip() for ln in lines if ln.split("#", 1)[0].strip())

    def __contains__(self, patient_id: str) -> bool:
        return patient_id in (self.file.table or ())


# --- FHIR Patient over HTTP ----------------------------------------------------------------------
class FhirPatientDirectory(PatientSource):
    """``GET {base_url}/Patient/{id}`` with a TTL cache (hits and misses), for sites without an MPI extract.

    Flags come from FHIR itself: ``meta.security`` codes (v3 Confidentiality ``R``/``V`` -> confidential;
    ``CEL`` celebrity / ``VIP`` -> VIP; both configurable), ``deceasedDateTime``/``deceasedBoolean``.
    A server error is cached briefly (``error_ttl``) so an outage does not add a request per event; the
    event then simply gets no patient flags.
    """

    def __init__(
        self,
        base_url: str,
        *,
        client: Any = None,
        ttl_seconds: float = 3600.0,
        error_ttl_seconds: float = 60.0,
        max_entries: int = 100_000,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        verify: Any = True,
        confidential_codes: Iterable[str] = ("R", "V"),
        vip_codes: Iterable[str] = ("CEL", "VIP"),
        clock: Callable[[], float] = time.monotonic,
        allow_insecure_http: bool = False,
    ):
        import httpx

        from connectors.fhir_auth import check_credentials_transport

        self.base_url = base_url.rstrip("/")
        self.has_credentials = any(k.lower() == "authorization" for k in (headers or {}))
        if self.has_credentials:
            # Raises InsecureTransportError (an AuthError) for http:// beyond loopback unless allowed.
            check_credentials_transport(self.base_url, what="patients_fhir_base_url",
                                        flag="patients_fhir_allow_insecure_http",
                                        allow_insecure_http=allow_insecure_http)
        self.client = client or httpx.Client(timeout=timeout, verify=verify, headers=dict(headers or {}))
        self.ttl, self.error_ttl, self.max_entries = ttl_seconds, error_ttl_seconds, max_entries
        self.confidential_codes = {c.upper() for c in confidential_codes}
        self.vip_codes = {c.upper() for c in vip_codes}
        self.clock = clock
        self._cache: OrderedDict[str, tuple[float, PatientFacts | None]] = OrderedDict()
        self.requests = 0

    def get(self, patient_id: str) -> PatientFacts | None:
        now = self.clock()
        hit = self._cache.get(patient_id)
        if hit is not None and hit[0] > now:
            self._cache.move_to_end(patient_id)
            return hit[1]
        facts, ttl = self._fetch(patient_id)
        self._cache[patient_id] = (now + ttl, facts)
        self._cache.move_to_end(patient_id)
        while len(self._cache) > self.max_entries:
            self._cache.popitem(last=False)
        return facts

    def _fetch(self, patient_id: str) -> tuple[PatientFacts | None, float]:
        import httpx

        if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", patient_id):
            return None, self.ttl  # not a FHIR id: never put it into a URL
        # The client never follows redirects (httpx default), so a 3xx to http:// cannot receive the token.
        self.requests += 1
        try:
            resp = self.client.get(f"{self.base_url}/Patient/{patient_id}", headers={"Accept": "application/fhir+json"})
        except httpx.HTTPError as exc:
            log.warning("patient directory %s unreachable (%s)", self.base_url, type(exc).__name__)
            return None, self.error_ttl
        if resp.status_code in (404, 410):
            return None, self.ttl
        if resp.status_code != 200:
            log.warning("patient directory %s answered %d", self.base_url, resp.status_code)
            return None, self.error_ttl
        try:
            return patient_facts_from_fhir(resp.json(), self.confidential_codes, self.vip_codes), self.ttl
        except (ValueError, TypeError, AttributeError):
            log.warning("patient directory %s returned an unreadable Patient", self.base_url)
            return None, self.error_ttl

    def close(self) -> None:
        self.client.close()


def patient_facts_from_fhir(resource: Mapping[str, Any], confidential_codes: set[str], vip_codes: set[str]) -> PatientFacts:
    """Reduce a FHIR Patient (R4/R5) to the facts the privacy rules need.

    A malformed element counts as absent, and a lone object where FHIR has a list counts as that list's one
    item: a server's odd ``name`` must not cost the patient its VIP or deceased flag, which it did when one
    bad element made the whole Patient unreadable."""
    names = _objects(resource.get("name"))
    official = next((n for n in names if n.get("use") == "official"), names[0] if names else {})
    family = _string(official.get("family"))
    addr = next((a for a in _objects(resource.get("address")) if a.get("use") in (None, "home")), {})
    meta = resource.get("meta")
    security = {str(s.get("code", "")).upper()
                for s in _objects(meta.get("security") if isinstance(meta, Mapping) else None)}
    deceased_date = parse_date(resource.get("deceasedDateTime"))
    return PatientFacts(
        family_name=normalise_name(family),
        name_parts=frozenset(name_parts(family)),
        address=_fhir_address(addr),
        vip=bool(security & vip_codes),
        confidential=bool(security & confidential_codes),
        deceased_date=deceased_date,
        deceased=deceased_date is None and resource.get("deceasedBoolean") is True,
        postal_code=normalise_postcode(_string(addr.get("postalCode"))),
        contact_keys=fhir_contact_keys(resource),
    )


def _objects(value: Any) -> list[Mapping[str, Any]]:
    """The objects of a FHIR repeating element: a lone object is one, anything not an object is none."""
    if isinstance(value, Mapping):
        return [value]
    return [v for v in value if isinstance(v, Mapping)] if isinstance(value, list) else []


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _fhir_address(address: Mapping[str, Any]) -> str:
    """A FHIR ``Address`` (a Patient's home, a contact's) as ``normalise_address`` compares it: its ``line``
    strings and ``postalCode``; malformed parts count as absent."""
    lines = address.get("line")
    line = " ".join(x for x in lines if isinstance(x, str)) if isinstance(lines, list) else ""
    return normalise_address(line, _string(address.get("postalCode")) or None)
