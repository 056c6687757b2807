"""Privacy-monitoring enrichment: who is the user to the patient whose record they opened?

Hospitals must detect snooping: staff opening their own record, a relative's, a colleague's, a celebrity's, a
deceased patient's, or working after their contract ended. A Sigma rule can only compare fields of one
event, so those relationships are computed here, at ingest, from lookup sources (``engine.enrich.lookups``),
and written as **flags** - booleans and the user's department. Names and addresses are compared in memory and
never copied into the event (GDPR data minimisation: an alert must not spread the very data it protects).

A flag is set only when the sources could decide it: ``ehr.relationship.same_address`` is absent (not false)
when the patient's address is unknown, so "could not tell" is never mistaken for "no relationship".
Field reference: ``docs/enrichment.md``.
"""

from __future__ import annotations

import dataclasses
import logging
from contextlib import nullcontext
from dataclasses import dataclass
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Iterable, Literal, Mapping, Sequence
from zoneinfo import ZoneInfo

from engine.enrich import Enricher
from engine.enrich.lookups import (
    PATIENT_COLUMNS,
    ROSTER_COLUMNS,
    CsvPatientDirectory,
    FhirPatientDirectory,
    LookupStatus,
    PatientFacts,
    PatientSource,
    StaffMember,
    StaffRoster,
    SurnameFrequencyFile,
    SurnameFrequencySource,
    VipList,
    contact_key,
    fold,
)
from engine.enrich.care_context import CareMoments
from engine.enrich.ward_work import WardWork
from engine.events import Event, timestamp_clock
from engine.plugins import InvalidOption, options_dict, parse_options, path_option

if TYPE_CHECKING:
    from engine.enrich.encounters import EncounterSource

log = logging.getLogger(__name__)

#: Every field this enricher may set (docs/enrichment.md documents each).
FIELDS = (
    "ehr.user.department",
    "ehr.user.on_roster",
    "ehr.user.terminated",
    "ehr.user.emergency_department",
    "ehr.relationship.self",
    "ehr.user.role",
    "ehr.relationship.same_last_name",
    "ehr.relationship.same_last_name_rare",
    "ehr.relationship.same_postcode",
    "ehr.relationship.same_address",
    "ehr.relationship.patient_is_employee",
    "ehr.patient.vip",
    "ehr.patient.confidential",
    "ehr.patient.deceased",
    "ehr.patient.days_since_death",
    # care-relationship context (engine/enrich/encounters.py)
    "ehr.patient.department",
    "ehr.patient.encounter_active",
    "ehr.patient.encounter_class",
    "ehr.patient.days_since_discharge",
    "ehr.relationship.same_department",
    "ehr.relationship.care_team",
    "ehr.relationship.related_person",
    "ehr.relationship.worked_department",
)

#: ``encounters_flags: sensitive`` computes the care-relationship flags only on accesses carrying one of these
#: (the accesses a privacy rule can alert on and then filters by the treating team)
SENSITIVE_FLAGS = (
    "ehr.relationship.patient_is_employee", "ehr.relationship.self", "ehr.relationship.same_last_name",
    "ehr.relationship.same_address", "ehr.patient.vip", "ehr.patient.confidential", "ehr.patient.deceased",
    # an override is "expected" from the treating team or on the patient's ward (ehr_privacy_btg_outside_emergency)
    "ehr.break_the_glass",
    # outside the site's working hours (enrichment.working_hours runs first): ehr_after_hours_read spares the
    # treating team and the patient's ward
    "wardwatch.time.after_hours",
)



def _sensitive(event: Event) -> bool:
    get = event.get
    for name in SENSITIVE_FLAGS:  # a loop, not any(genexpr): this runs for every access
        if get(name) is True:
            return True
    return False


DEFAULT_EMERGENCY_DEPARTMENTS = ("emergency", "emergency department", "ed", "a&e", "er", "notaufnahme")
#: a surname is "rare" when at most this share of patients carries it (1 in 5,000; docs/enrichment.md) ...
DEFAULT_RARE_SURNAME_MAX_SHARE = 0.0002
#: ... or at most this many patients (small directories, where one patient is already more than 1 in 5,000)
DEFAULT_RARE_SURNAME_MAX_COUNT = 3


@dataclass
class PrivacyOptions:
    """``enrichment.privacy`` (docs/enrichment.md). Paths are resolved against the config file."""

    roster_csv: str | None = path_option()
    roster_columns: dict[str, str] = dataclasses.field(default_factory=dict)
    roster_delimiter: str | None = None
    roster_encoding: str = "utf-8-sig"
    #: the staff roster from the directory instead of a CSV: a snapshot of ldap-directory, or an LDIF export
    roster_directory: str | None = path_option()
    roster_directory_ehr_attribute: str = "employeeID"
    roster_directory_patient_attribute: str | None = None  # the employee's own record number, if kept there
    patients_csv: str | None = path_option()
    patients_columns: dict[str, str] = dataclasses.field(default_factory=dict)
    patients_delimiter: str | None = None
    patients_encoding: str = "utf-8-sig"
    patients_fhir_base_url: str | None = None
    patients_fhir_ttl_seconds: float = 3600.0
    patients_fhir_error_ttl_seconds: float = 60.0
    patients_fhir_token_env: str | None = None
    patients_fhir_token_file: str | None = path_option()
    patients_fhir_ca_file: str | None = path_option()
    patients_fhir_client_cert_file: str | None = path_option()
    patients_fhir_client_key_file: str | None = path_option()
    patients_fhir_timeout: float = 5.0
    patients_fhir_max_entries: int = 100_000
    #: send the token over http:// to a non-loopback host anyway (never across a network)
    patients_fhir_allow_insecure_http: bool = False
    vip_list_file: str | None = path_option()
    vip_list_column: str = "patient_id"
    vip_list_encoding: str = "utf-8-sig"
    #: the directory attribute holding the job role for ehr.user.role (read from the snapshot/LDIF)
    roster_directory_role_attribute: str = "title"
    # --- rare surnames (docs/enrichment.md "Roles and rare surnames") ---
    #: family-name counts when the patient directory cannot be enumerated (FHIR): family_name,count
    surname_frequencies_csv: str | None = path_option()
    surname_frequencies_columns: dict[str, str] = dataclasses.field(default_factory=dict)
    surname_frequencies_total: int | None = None  # patients the counts are out of (default: their sum)
    rare_surname_max_share: float = DEFAULT_RARE_SURNAME_MAX_SHARE
    rare_surname_max_count: int = DEFAULT_RARE_SURNAME_MAX_COUNT
    timezone: str = "UTC"
    user_fields: list[str] = dataclasses.field(default_factory=lambda: ["user.name", "user.id"])
    patient_field: str = "ehr.patient.id"
    emergency_departments: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_EMERGENCY_DEPARTMENTS))
    datasets: list[str] | None = dataclasses.field(default_factory=lambda: ["ehr.audit"])
    # --- care-relationship context: encounters (docs/enrichment.md "Care-relationship context") ---
    encounters_csv: str | None = path_option()
    encounters_csv_columns: dict[str, str] = dataclasses.field(default_factory=dict)
    encounters_csv_delimiter: str | None = None
    encounters_csv_encoding: str = "utf-8-sig"
    encounters_csv_time_format: str | None = None  # a strptime format; default: ISO 8601 and common forms
    #: a FHIR bulk export: one NDJSON file or a directory of them (Encounter, CareTeam, RelatedPerson)
    encounters_ndjson: str | None = path_option()
    encounters_fhir_base_url: str | None = None
    encounters_fhir_resource_types: list[str] = dataclasses.field(default_factory=lambda: ["Encounter"])
    encounters_fhir_params: dict[str, str] = dataclasses.field(default_factory=dict)
    encounters_fhir_page_size: int = 500
    encounters_fhir_overlap_seconds: float = 300.0
    encounters_fhir_token_env: str | None = None
    encounters_fhir_token_file: str | None = path_option()
    encounters_fhir_ca_file: str | None = path_option()
    encounters_fhir_client_cert_file: str | None = path_option()
    encounters_fhir_client_key_file: str | None = path_option()
    encounters_fhir_timeout: float = 30.0
    encounters_fhir_allow_insecure_http: bool = False
    encounters_fhir_department_from: list[str] = dataclasses.field(
        default_factory=lambda: ["location", "serviceType", "serviceProvider"])
    #: encounter unit/ward names -> roster department names (case/accent-insensitive keys)
    encounters_department_map: dict[str, str] = dataclasses.field(default_factory=dict)
    encounters_grace_before_hours: float = 1.0
    encounters_grace_after_hours: float = 24.0
    #: "sensitive": only on accesses a privacy rule may alert on (SENSITIVE_FLAGS); "all": on every access
    encounters_flags: Literal["sensitive", "all"] = "sensitive"
    #: roster departments whose staff count as the ward of *any* admitted patient (same_department);
    #: case-insensitive, * and ? wildcards. Empty by default: a float pool is sent to one ward at a time, and
    #: ward work (before) and the rules' holds (after) explain its charts there, without the blind spot of
    #: sparing a float nurse's snoop on any admitted colleague (docs/enrichment.md)
    encounters_float_departments: list[str] = dataclasses.field(default_factory=list)
    #: ehr.relationship.worked_department: the user opened at least this many *other* patients of the patient's
    #: current department in the last ``encounters_ward_work_hours`` (0 turns the flag off)
    encounters_ward_work_min_patients: int = 1
    encounters_ward_work_hours: float = 8.0
    #: ehr.user.terminated only after this many hours past the end of the roster end date (local time): a night
    #: shift begun on the last working day ends the next morning (docs/enrichment.md "Fields")
    terminated_grace_hours: float = 8.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.terminated_grace_hours <= 24.0:
            raise InvalidOption("terminated_grace_hours", "expected 0..24 hours after the end date")
        if not 0.0 <= self.rare_surname_max_share <= 1.0:
            raise InvalidOption("rare_surname_max_share", "must be a share between 0 and 1 (e.g. 0.0002)")
        if self.rare_surname_max_count < 0:
            raise InvalidOption("rare_surname_max_count", "must not be negative")
        unknown_freq = sorted(set(self.surname_frequencies_columns) - {"family_name", "count"})
        if unknown_freq:
            raise InvalidOption(f"surname_frequencies_columns.{unknown_freq[0]}",
                                "unknown column key (known: count, family_name)")
        if self.roster_csv and self.roster_directory:
            raise InvalidOption("roster_directory", "give roster_csv or roster_directory, not both")
        try:
            ZoneInfo(self.timezone)
        except (ValueError, KeyError):  # ZoneInfoNotFoundError is a KeyError
            raise InvalidOption("timezone", f"unknown time zone {self.timezone!r}") from None
        for key, columns in (("roster_columns", self.roster_columns), ("patients_columns", self.patients_columns)):
            known = ROSTER_COLUMNS if key == "roster_columns" else PATIENT_COLUMNS
            unknown = sorted(set(columns) - set(known))
            if unknown:
                raise InvalidOption(f"{key}.{unknown[0]}", f"unknown column key (known: {', '.join(sorted(known))})")
        for prefix in ("patients_fhir", "encounters_fhir"):
            url = getattr(self, f"{prefix}_base_url")
            if url and (getattr(self, f"{prefix}_token_env") or getattr(self, f"{prefix}_token_file")):
                from connectors.fhir_auth import AuthError, check_credentials_transport

                try:
                    check_credentials_transport(url, what=f"{prefix}_base_url", flag=f"{prefix}_allow_insecure_http",
                                                allow_insecure_http=getattr(self, f"{prefix}_allow_insecure_http"))
                except AuthError as exc:
                    raise InvalidOption(f"{prefix}_base_url", str(exc)) from None
        from engine.enrich.encounters import DEFAULT_DEPARTMENT_FROM, ENCOUNTER_COLUMNS

        unknown = sorted(set(self.encounters_csv_columns) - set(ENCOUNTER_COLUMNS))
        if unknown:
            raise InvalidOption(f"encounters_csv_columns.{unknown[0]}",
                                f"unknown column key (known: {', '.join(sorted(ENCOUNTER_COLUMNS))})")
        wrong = [d for d in self.encounters_fhir_department_from if d not in DEFAULT_DEPARTMENT_FROM]
        if wrong:
            raise InvalidOption("encounters_fhir_department_from",
                                f"unknown element {wrong[0]!r} (known: {', '.join(DEFAULT_DEPARTMENT_FROM)})")
        if self.encounters_ward_work_min_patients < 0:
            raise InvalidOption("encounters_ward_work_min_patients", "must not be negative (0 turns it off)")
        if not 0.0 <= self.encounters_ward_work_hours <= 24.0:
            raise InvalidOption("encounters_ward_work_hours", "expected 0..24 hours")
        for key in ("encounters_grace_before_hours", "encounters_grace_after_hours"):
            if getattr(self, key) < 0:
                raise InvalidOption(key, "must not be negative")


class PrivacyEnricher(Enricher):
    """Adds relationship, patient-sensitivity and user-status flags to EHR audit events.

    ``timezone`` is the site's zone: roster end dates and deceased dates are local calendar dates, so an
    access at 00:30 local time on the day after the end date counts as after it even though it is still the
    end date in UTC.
    """

    name = "privacy"

    def __init__(
        self,
        *,
        roster: StaffRoster | None = None,
        patients: Sequence[PatientSource] = (),
        vip_list: VipList | None = None,
        timezone_name: str = "UTC",
        user_fields: Sequence[str] = ("user.name", "user.id"),
        patient_field: str = "ehr.patient.id",
        emergency_departments: Iterable[str] = DEFAULT_EMERGENCY_DEPARTMENTS,
        datasets: Sequence[str] | None = ("ehr.audit",),
        surname_frequencies: "SurnameFrequencySource | None" = None,
        rare_surname_max_share: float = DEFAULT_RARE_SURNAME_MAX_SHARE,
        rare_surname_max_count: int = DEFAULT_RARE_SURNAME_MAX_COUNT,
        encounters: "Sequence[EncounterSource]" = (),
        department_map: Mapping[str, str] | None = None,
        grace_before_hours: float = 1.0,
        grace_after_hours: float = 24.0,
        encounter_flags: str = "sensitive",
        float_departments: Iterable[str] = (),
        terminated_grace_hours: float = 8.0,
        ward_work_min_patients: int = 1,
        ward_work_hours: float = 8.0,
    ):
        self.roster = roster
        self.patients = list(patients)
        self.vip_list = vip_list
        self.tz = ZoneInfo(timezone_name)
        self.user_fields = tuple(user_fields)
        self.patient_field = patient_field
        self.emergency_departments = {fold(d) for d in emergency_departments}
        self.datasets = set(datasets) if datasets else None
        self._local_date = lru_cache(maxsize=8192)(self._to_local_date)
        self.surname_frequencies = surname_frequencies
        self.rare_surname_max_share = rare_surname_max_share
        self.rare_surname_max_count = rare_surname_max_count
        self.encounters = list(encounters)
        self.department_map = {fold(k): v for k, v in (department_map or {}).items()}
        self.grace_before_ms = int(grace_before_hours * 3_600_000)
        self.grace_after_ms = int(grace_after_hours * 3_600_000)
        self.terminated_grace_hours = terminated_grace_hours
        # logins and unit names repeat endlessly: fold each once (fold is ~5 µs, an event has several)
        self._fold = lru_cache(maxsize=65536)(fold)
        self._unit = lru_cache(maxsize=8192)(self._map_unit)
        self._timestamp_ms = timestamp_clock()
        self._canonical_ms = timestamp_clock(canonical_only=True)
        self._minute_days: dict[int, date] = {}
        self._moments: CareMoments | None = None
        self._moments_stamp: tuple[Any, ...] = ()
        self.encounter_flags_all = encounter_flags == "all"
        self.float_departments = tuple(fold(d) for d in float_departments)
        self._floats = lru_cache(maxsize=1024)(self._is_float)
        self.ward_work_min_patients = ward_work_min_patients
        self.ward_work_ms = int(ward_work_hours * 3_600_000)
        self._ward_work = WardWork(self.ward_work_ms) if ward_work_min_patients > 0 and self.ward_work_ms > 0 else None

    @classmethod
    def from_config(cls, options: "Mapping[str, Any] | PrivacyOptions") -> "PrivacyEnricher":
        """Build from the flat ``enrichment.privacy`` config section (declared in :class:`PrivacyOptions`;
        the caller resolves paths against the config file by parsing with ``resolve_path``), e.g.::

            roster_csv: roster.csv            # roster_columns: {user_id: EMP_ID, login: LOGIN, ...}
            patients_csv: patients.csv        # patients_columns: {...}
            patients_fhir_base_url: https://fhir.example.org/r4
            patients_fhir_ttl_seconds: 3600
            patients_fhir_token_env: FHIR_TOKEN   # or patients_fhir_token_file; never the token itself
            patients_fhir_ca_file: ca.pem         # TLS verification stays on
            vip_list_file: vip.txt
            timezone: Europe/Berlin
            emergency_departments: [Emergency, Notaufnahme]

        Raises ValueError (:class:`InvalidOption`) naming the key when a source cannot be set up.
        """
        opts = options if isinstance(options, PrivacyOptions) else parse_options(PrivacyOptions, options)
        roster = None
        if opts.roster_csv:
            roster = StaffRoster(opts.roster_csv, columns=opts.roster_columns, encoding=opts.roster_encoding,
                                 delimiter=opts.roster_delimiter)
        elif opts.roster_directory:
            from engine.enrich.identity import DirectoryRoster

            roster = DirectoryRoster(opts.roster_directory, ehr_attribute=opts.roster_directory_ehr_attribute,
                                     patient_attribute=opts.roster_directory_patient_attribute,
                                     role_attribute=opts.roster_directory_role_attribute,
                                     timezone_name=opts.timezone)  # type: ignore[assignment]
        patients: list[PatientSource] = []
        if opts.patients_csv:
            patients.append(CsvPatientDirectory(opts.patients_csv, columns=opts.patients_columns,
                                                encoding=opts.patients_encoding, delimiter=opts.patients_delimiter))
        if opts.patients_fhir_base_url:
            patients.append(_fhir_patient_source(options_dict(opts)))
        vip = (VipList(opts.vip_list_file, column=opts.vip_list_column, encoding=opts.vip_list_encoding)
               if opts.vip_list_file else None)
        return cls(roster=roster, patients=patients, vip_list=vip, timezone_name=opts.timezone,
                   surname_frequencies=_surname_frequency_source(opts, patients),
                   rare_surname_max_share=opts.rare_surname_max_share,
                   rare_surname_max_count=opts.rare_surname_max_count,
                   user_fields=opts.user_fields, patient_field=opts.patient_field,
                   emergency_departments=opts.emergency_departments, datasets=opts.datasets,
                   encounters=_encounter_sources(opts), department_map=opts.encounters_department_map,
                   grace_before_hours=opts.encounters_grace_before_hours,
                   grace_after_hours=opts.encounters_grace_after_hours, encounter_flags=opts.encounters_flags,
                   float_departments=opts.encounters_float_departments,
                   terminated_grace_hours=opts.terminated_grace_hours,
                   ward_work_min_patients=opts.encounters_ward_work_min_patients,
                   ward_work_hours=opts.encounters_ward_work_hours)

    # --- the contract -------------------------------------------------------------------------
    def refresh(self) -> None:
        for source in (self.roster, self.vip_list, *self.patients, *self.encounters):
            if source is not None:
                source.refresh()
        if isinstance(self.surname_frequencies, SurnameFrequencyFile):
            self.surname_frequencies.refresh()
        self._moments = None  # after the sources changed: the next batch starts a new memory of them

    def lookups(self) -> list[LookupStatus]:
        """Each file-backed or pulled source (a FHIR Patient server is asked per patient: not listed)."""
        found: list[LookupStatus] = []
        seen: set[int] = set()  # the patient CSV is also the surname counts' source: listed once
        for name, source in (("privacy.roster", self.roster), ("privacy.vip_list", self.vip_list),
                             *((f"privacy.patients[{i}]", p) for i, p in enumerate(self.patients)),
                             ("privacy.surname_frequencies", self.surname_frequencies),
                             *((f"privacy.encounters[{i}]", e) for i, e in enumerate(self.encounters))):
            status = _status_of(source, name) if id(source) not in seen else None
            seen.add(id(source))
            if status is not None:
                found.append(status)
        return found

    def enrich(self, event: Event) -> Event:
        """One event on its own: no memory of other accesses but the ward work (see :meth:`enrich_many`)."""
        return self.enrich_many([event])[0]

    def enrich_many(self, events: list[Event]) -> list[Event]:
        """A batch, with memories of its users and patients that live as long as it does.

        Why: this runs for every access, and most of what it decides repeats. A user opens a few dozen
        records a day (nine in ten accesses of a batch are by a user-day already seen in it), and a record
        is opened in several audit events (eight in ten are of a patient-day already seen). So the user's
        flags are decided once per (user, local day) of the batch, and the patient's once per (patient,
        local day); only the relationship of the two is worked out per access. The care context is
        remembered per patient for as long as it holds (``engine.enrich.care_context``), until a source
        refreshes. A batch's memories are its own: a FHIR patient lookup's TTL and a refresh between
        batches work as they did before, and connectors sharing this enricher from several threads never
        share a memory one of them is filling.
        """
        users: dict[Any, _User] = {}
        patients: dict[Any, _Patient] = {}
        moments = self._care_moments() if self.encounters else None
        datasets = self.datasets
        with self._ward_work.lock if self._ward_work is not None else nullcontext():
            for event in events:
                if datasets is not None and event.get("event.dataset") not in datasets:
                    continue
                try:
                    self._enrich(event, users, patients, moments)
                except Exception as exc:  # noqa: BLE001 - an enricher never drops an event; the type only, no PHI
                    log.warning("privacy enrichment skipped an event: %s", type(exc).__name__)
        return events

    # --- internals ----------------------------------------------------------------------------
    def _care_moments(self) -> CareMoments:
        """The care-context memory, new when any encounter source was reloaded or pulled since the last one
        (a FHIR pull changes its index in place; a reloaded file is a new index)."""
        stamp = tuple((id(s.index), s.index.version, s.loaded) for s in self.encounters)
        moments = self._moments
        if moments is None or stamp != self._moments_stamp:
            moments = self._moments = CareMoments(self.encounters, self._unit, self.grace_before_ms,
                                                  self.grace_after_ms)
            self._moments_stamp = stamp
        return moments

    def _to_local(self, timestamp: str) -> datetime:
        dt = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(self.tz)

    def _to_local_date(self, timestamp: str) -> date:
        return self._to_local(timestamp).date()

    def _day(self, ts: str, ts_ms: int | None) -> date:
        """The access's local calendar date; ``ts_ms`` is the canonical clock's reading of ``ts`` (None: not
        canonical). A canonical stamp's minute is converted once: a minute whose first and last millisecond
        fall on the same local date (every minute but a zone change's, if one ever fell inside a minute) is
        all that date. Seconds 60-99 match the pattern but are no time: the general path says so."""
        if ts_ms is not None and ts[17] < "6":
            minute = ts_ms // 60_000
            day = self._minute_days.get(minute)
            if day is None:
                first = datetime.fromtimestamp(minute * 60, timezone.utc).astimezone(self.tz).date()
                last = datetime.fromtimestamp(minute * 60 + 59.999, timezone.utc).astimezone(self.tz).date()
                if first != last:  # the date changes inside this minute: the access's own, not remembered
                    return self._to_local_date(ts)
                day = first  # the access lies inside the minute, so its date is the minute's
                if len(self._minute_days) >= 100_000:
                    self._minute_days.clear()
                self._minute_days[minute] = day
            return day
        return self._local_date(ts)

    def _past_grace(self, timestamp: str) -> bool:
        """On the day after the end date: is the access past the grace hours (local time)? Asked only then."""
        local = self._to_local(timestamp)
        return local.hour + local.minute / 60 + local.second / 3600 >= self.terminated_grace_hours

    def _member(self, values: Sequence[str]) -> StaffMember | None:
        if self.roster is None:
            return None
        for value in values:
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

    def _user(self, event: Event, ts: Any, day: date | None) -> _User:
        """The user's side of an access on ``day``: who they are to the roster and their flags (written in
        the order they always were: a stored document reads the same)."""
        values = self._user_values(event)
        member = self._member(values)
        flags: Event = {}
        lasts = True
        if self.roster is not None and self.roster.loaded and values:
            flags["ehr.user.on_roster"] = member is not None
        if member is not None:
            if member.role:
                flags["ehr.user.role"] = member.role
            if member.department:
                flags["ehr.user.department"] = member.department
                flags["ehr.user.emergency_department"] = self._fold(member.department) in self.emergency_departments
            if day is not None:
                after = member.end_date is not None and day > member.end_date
                if after and (day - member.end_date).days == 1:  # type: ignore[operator]
                    lasts = False  # the day after the end date: the hour of the access decides
                flags["ehr.user.terminated"] = after and ((day - member.end_date).days > 1  # type: ignore[operator]
                                                          or self._past_grace(ts))
        keys = frozenset({*(member.keys if member is not None else ()), *map(self._fold, values)})
        ward_key = member.keys[0] if member is not None and member.keys else (self._fold(values[0]) if values else None)
        related = keys | {self._fold(member.patient_id)} if member is not None and member.patient_id else keys
        contact = contact_key(member.family_name, member.address) if member is not None else None
        if contact is not None:  # listed as a contact in the patient's FHIR Patient resource
            related = related | {contact}
        return _User(flags, lasts, member, ward_key, keys, related,
                     member.department if member is not None and member.department else None)

    def _patient_day(self, patient_id: str, day: date | None) -> _Patient:
        """The patient's side of an access on ``day``."""
        facts = self._patient(patient_id) if self.patients else None
        flags: Event = {}
        vip = facts.vip if facts else False
        if self.vip_list is not None and patient_id in self.vip_list:
            vip = True
        if facts is not None or self.vip_list is not None:
            flags["ehr.patient.vip"] = vip
        if facts is not None:
            flags["ehr.patient.confidential"] = facts.confidential
            if facts.deceased_date is not None and day is not None:
                flags["ehr.patient.deceased"] = day > facts.deceased_date
                if day > facts.deceased_date:
                    flags["ehr.patient.days_since_death"] = (day - facts.deceased_date).days
            elif facts.deceased:
                flags["ehr.patient.deceased"] = True
            else:
                flags["ehr.patient.deceased"] = False
        roster = self.roster
        knows = roster is not None and roster.loaded and getattr(roster, "knows_patients", True)
        return _Patient(flags, facts, knows, knows and roster.is_employee_patient(patient_id))  # type: ignore[union-attr]

    def _enrich(self, event: Event, users: dict[Any, _User], patients: dict[Any, _Patient],
                moments: CareMoments | None) -> None:
        ts = event.get("@timestamp")
        if isinstance(ts, str) and ts:
            ts_ms = self._canonical_ms(ts)
            day = self._day(ts, ts_ms)
        else:
            ts_ms = day = None
        key: Any = (day, *map(event.get, self.user_fields))
        try:
            user = users.get(key)
        except TypeError:  # a list or an object where a name was expected: decided without the memory
            user, key = None, None
        if user is None:
            user = self._user(event, ts, day)
            if key is not None and user.lasts:
                users[key] = user
        event.update(user.flags)

        patient_id = event.get(self.patient_field)
        if not isinstance(patient_id, str) or not patient_id:
            return
        patient = patients.get((day, patient_id))
        if patient is None:
            patient = patients[(day, patient_id)] = self._patient_day(patient_id, day)
        event.update(patient.flags)
        member, facts = user.member, patient.facts
        if patient.knows_employees:
            is_self = member is not None and member.patient_id == patient_id
            if member is not None:
                event["ehr.relationship.self"] = is_self
            event["ehr.relationship.patient_is_employee"] = not is_self and patient.employee
        if member is not None and facts is not None:
            if member.family_name and facts.family_name:
                self._surname_flags(event, member, facts)
            if member.postal_code and facts.postal_code:
                event["ehr.relationship.same_postcode"] = member.postal_code == facts.postal_code
            if member.address and facts.address:
                event["ehr.relationship.same_address"] = member.address == facts.address
        if facts is not None and facts.contact_keys is not None and user.keys:  # a FHIR Patient's contacts
            event["ehr.relationship.related_person"] = not user.related_keys.isdisjoint(facts.contact_keys)

        if moments is None or not isinstance(ts, str) or not ts:
            return
        if ts_ms is None:
            ts_ms = self._timestamp_ms(ts)  # not canonical: the general reading (or its error)
        if self.encounter_flags_all or _sensitive(event):
            self._care_context(event, patient_id, ts_ms, user, moments)
        elif self._ward_work is not None and user.ward_key:
            # every access of a roster user feeds the ward-work memory, flagged or not; the department
            # found for it is written too (held alerts look at where the user worked next: hold.py)
            unit = moments.at(patient_id, ts_ms).unit_at
            if unit is not None:
                event["ehr.patient.department"] = unit[0]
            self._ward_work.add(user.ward_key, ts_ms, unit[1] if unit is not None else None, patient_id)

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

    def _is_float(self, department: str) -> bool:
        """A (folded) roster department of staff sent to any ward (``encounters_float_departments``)."""
        from fnmatch import fnmatchcase

        return any(fnmatchcase(department, pattern) for pattern in self.float_departments)

    def _map_unit(self, unit: str) -> tuple[str, str]:
        """A unit/ward name -> (the roster department it maps to, that name folded for comparison)."""
        name = self.department_map.get(fold(unit), unit)
        return name, fold(name)

    def _care_context(self, event: Event, patient_id: str, ts_ms: int, user: _User, moments: CareMoments) -> None:
        """Encounter flags: where the patient is, and whether the user treats them (docs/enrichment.md).

        The patient's side comes from the care moment (``engine.enrich.care_context``); the user's side is
        a set test against it."""
        moment = moments.at(patient_id, ts_ms)
        if not moment.loaded:
            return  # could not tell: no encounter data yet
        user_dept = user.department or event.get("wardwatch.user.department")
        mine = self._fold(user_dept) if isinstance(user_dept, str) and user_dept else None
        active = moment.active
        event["ehr.patient.encounter_active"] = active
        if not active and moment.last_end is not None:
            event["ehr.patient.days_since_discharge"] = (ts_ms - moment.last_end) // 86_400_000
        if moment.department is not None:
            event["ehr.patient.department"] = moment.department
        if self._ward_work is not None and user.ward_key:
            if moment.department_key is not None:
                event["ehr.relationship.worked_department"] = self._ward_work.others(
                    user.ward_key, ts_ms, moment.department_key, patient_id,
                    self.ward_work_min_patients) >= self.ward_work_min_patients
            self._ward_work.add(user.ward_key, ts_ms, moment.department_key, patient_id)
        if moment.encounter_class is not None:
            event["ehr.patient.encounter_class"] = moment.encounter_class
        if mine is not None:
            event["ehr.relationship.same_department"] = mine in moment.near_units or (active and self._floats(mine))
        if user.keys:
            event["ehr.relationship.care_team"] = not user.keys.isdisjoint(moment.participants)
            if moment.related:  # listed by the encounter data, or already by the patient directory
                event["ehr.relationship.related_person"] = (
                    event.get("ehr.relationship.related_person") is True
                    or not user.related_keys.isdisjoint(moment.related_keys))


@dataclass(slots=True)
class _User:
    """What one batch knows of one user on one local day (the values of ``user_fields``, as they came)."""

    flags: Event
    #: the same for every access of that day: False on the day after the end date (the hour decides)
    lasts: bool
    member: StaffMember | None
    #: the ward-work memory's key: the roster's first key, else the first user value folded
    ward_key: str | None
    #: every key the user is known by (roster keys, user values folded): care-team membership
    keys: frozenset[str]
    #: ``keys`` and the user's own medical record number: listed related persons
    related_keys: frozenset[str]
    department: str | None


@dataclass(slots=True)
class _Patient:
    """What one batch knows of one patient on one local day."""

    flags: Event
    facts: PatientFacts | None
    #: the roster can tell employees' own records (``patient_is_employee`` is decided)
    knows_employees: bool
    employee: bool


def _status_of(source: Any, name: str) -> LookupStatus | None:
    """A source's ``status`` (``FileBacked``, the encounter sources, the directory roster); None for one that
    has none: the FHIR Patient lookup, asked per patient."""
    status = getattr(source, "status", None)
    return status(name) if callable(status) else None


def _surname_frequency_source(opts: PrivacyOptions,
                              patients: Sequence[PatientSource]) -> "SurnameFrequencySource | None":
    """Where surname counts come from: ``surname_frequencies_csv`` if set, else the first CSV patient
    directory (FHIR cannot be enumerated: without either, ``same_last_name_rare`` stays absent)."""
    if opts.surname_frequencies_csv:
        return SurnameFrequencyFile(opts.surname_frequencies_csv, total=opts.surname_frequencies_total,
                                    columns=opts.surname_frequencies_columns)
    return next((p for p in patients if isinstance(p, CsvPatientDirectory)), None)


def _fhir_client_settings(options: Mapping[str, Any], prefix: str) -> tuple[dict[str, str], Any]:
    """Headers and TLS context of a FHIR lookup (``patients_fhir_*`` or ``encounters_fhir_*``); the token comes
    from an env var or a file, never from the config text."""
    from connectors.fhir_auth import build_ssl_context, read_secret_option

    token = read_secret_option(options.get(f"{prefix}_token_env"), options.get(f"{prefix}_token_file"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = build_ssl_context(
        ca_file=options.get(f"{prefix}_ca_file"),
        client_cert=options.get(f"{prefix}_client_cert_file"),
        client_key=options.get(f"{prefix}_client_key_file"),
    )
    return headers, verify


def _encounter_sources(opts: PrivacyOptions) -> "list[EncounterSource]":
    """The configured encounter sources (CSV extract, NDJSON export, FHIR server), in that order."""
    from engine.enrich.encounters import CsvEncounterSource, FhirEncounterSource, NdjsonEncounterSource

    tz = ZoneInfo(opts.timezone)
    sources: list[EncounterSource] = []
    if opts.encounters_csv:
        sources.append(CsvEncounterSource(opts.encounters_csv, columns=opts.encounters_csv_columns, tz=tz,
                                          encoding=opts.encounters_csv_encoding,
                                          time_format=opts.encounters_csv_time_format,
                                          delimiter=opts.encounters_csv_delimiter))
    if opts.encounters_ndjson:
        sources.append(NdjsonEncounterSource(opts.encounters_ndjson, tz=tz,
                                             department_from=opts.encounters_fhir_department_from))
    if opts.encounters_fhir_base_url:
        import httpx

        headers, verify = _fhir_client_settings(options_dict(opts), "encounters_fhir")
        client = httpx.Client(timeout=opts.encounters_fhir_timeout, verify=verify, headers=headers,
                              follow_redirects=False)
        sources.append(FhirEncounterSource(
            opts.encounters_fhir_base_url, client=client, tz=tz, params=opts.encounters_fhir_params,
            page_size=opts.encounters_fhir_page_size, overlap_seconds=opts.encounters_fhir_overlap_seconds,
            resource_types=opts.encounters_fhir_resource_types,
            department_from=opts.encounters_fhir_department_from))
    return sources


def _fhir_patient_source(options: Mapping[str, Any]) -> FhirPatientDirectory:
    """The FHIR Patient source (see :func:`_fhir_client_settings` for its credentials)."""
    headers, verify = _fhir_client_settings(options, "patients_fhir")
    return FhirPatientDirectory(
        options["patients_fhir_base_url"],
        ttl_seconds=float(options.get("patients_fhir_ttl_seconds", 3600)),
        error_ttl_seconds=float(options.get("patients_fhir_error_ttl_seconds", 60)),
        max_entries=int(options.get("patients_fhir_max_entries", 100_000)),
        timeout=float(options.get("patients_fhir_timeout", 5.0)),
        headers=headers,
        verify=verify,
        allow_insecure_http=bool(options.get("patients_fhir_allow_insecure_http", False)),
    )
