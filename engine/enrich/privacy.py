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

import logging
from datetime import date, datetime, timezone
from functools import lru_cache
from typing import Any, Iterable, Mapping, Sequence
from zoneinfo import ZoneInfo

from engine.enrich import Enricher
from engine.enrich.lookups import (
    CsvPatientDirectory,
    FhirPatientDirectory,
    PatientFacts,
    PatientSource,
    StaffMember,
    StaffRoster,
    VipList,
    fold,
)
from engine.events import Event

log = logging.getLogger(__name__)

#: Every field this enricher may set (docs/enrichment.md documents each).
FIELDS = (
    "ehr.user.department",
    "ehr.user.on_roster",
    "ehr.user.terminated",
    "ehr.user.emergency_department",
    "ehr.relationship.self",
    "ehr.relationship.same_last_name",
    "ehr.relationship.same_address",
    "ehr.relationship.patient_is_employee",
    "ehr.patient.vip",
    "ehr.patient.confidential",
    "ehr.patient.deceased",
    "ehr.patient.days_since_death",
)

DEFAULT_EMERGENCY_DEPARTMENTS = ("emergency", "emergency department", "ed", "a&e", "er", "notaufnahme")


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

    @classmethod
    def from_config(cls, options: Mapping[str, Any]) -> "PrivacyEnricher":
        """Build from the flat ``enrichment.privacy`` config section (keys ending ``_csv``/``_file`` are
        paths, resolved against the config file by the caller), e.g.::

            roster_csv: roster.csv            # roster_columns: {user_id: EMP_ID, login: LOGIN, ...}
            patients_csv: patients.csv        # patients_columns: {...}
            patients_fhir_base_url: https://fhir.example.org/r4
            patients_fhir_ttl_seconds: 3600
            patients_fhir_token_env: FHIR_TOKEN   # or patients_fhir_token_file; never the token itself
            patients_fhir_ca_file: ca.pem         # TLS verification stays on
            vip_list_file: vip.txt
            timezone: Europe/Berlin
            emergency_departments: [Emergency, Notaufnahme]

        Raises ValueError naming the key when a source cannot be set up.
        """
        known = {
            "roster_csv", "roster_columns", "roster_delimiter", "roster_encoding",
            "patients_csv", "patients_columns", "patients_delimiter", "patients_encoding",
            "patients_fhir_base_url", "patients_fhir_ttl_seconds", "patients_fhir_error_ttl_seconds",
            "patients_fhir_token_env", "patients_fhir_token_file", "patients_fhir_ca_file",
            "patients_fhir_client_cert_file", "patients_fhir_client_key_file", "patients_fhir_timeout",
            "patients_fhir_max_entries", "vip_list_file", "vip_list_column", "timezone", "user_fields",
            "patient_field", "emergency_departments", "datasets",
        }
        unknown = sorted(set(options) - known)
        if unknown:
            raise ValueError(f"unknown privacy enrichment option(s) {unknown}; known: {sorted(known)}")
        roster = None
        if options.get("roster_csv"):
            roster = StaffRoster(
                options["roster_csv"], columns=options.get("roster_columns"),
                encoding=options.get("roster_encoding", "utf-8-sig"), delimiter=options.get("roster_delimiter"),
            )
        patients: list[PatientSource] = []
        if options.get("patients_csv"):
            patients.append(CsvPatientDirectory(
                options["patients_csv"], columns=options.get("patients_columns"),
                encoding=options.get("patients_encoding", "utf-8-sig"), delimiter=options.get("patients_delimiter"),
            ))
        if options.get("patients_fhir_base_url"):
            patients.append(_fhir_patient_source(options))
        vip = None
        if options.get("vip_list_file"):
            vip = VipList(options["vip_list_file"], column=options.get("vip_list_column", "patient_id"))
        kwargs: dict[str, Any] = {k: options[k] for k in
                                  ("user_fields", "patient_field", "emergency_departments", "datasets") if k in options}
        try:
            return cls(roster=roster, patients=patients, vip_list=vip,
                       timezone_name=options.get("timezone", "UTC"), **kwargs)
        except (ValueError, KeyError) as exc:  # ZoneInfoNotFoundError is a KeyError
            raise ValueError(f"timezone: unknown time zone {options.get('timezone')!r}") from exc

    # --- the contract -------------------------------------------------------------------------
    def refresh(self) -> None:
        for source in (self.roster, self.vip_list, *self.patients):
            if source is not None:
                source.refresh()

    def enrich(self, event: Event) -> Event:
        if self.datasets is not None and event.get("event.dataset") not in self.datasets:
            return event
        try:
            self._enrich(event)
        except Exception as exc:  # noqa: BLE001 - an enricher never drops an event; the type only, no PHI
            log.warning("privacy enrichment skipped an event: %s", type(exc).__name__)
        return event

    # --- internals ----------------------------------------------------------------------------
    def _to_local_date(self, timestamp: str) -> date:
        dt = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
        if dt.tzinfo is None:
            dt = dt.replace(tzinfo=timezone.utc)
        return dt.astimezone(self.tz).date()

    def _member(self, event: Event) -> StaffMember | None:
        if self.roster is None:
            return None
        for f in self.user_fields:
            value = event.get(f)
            if isinstance(value, str) and value:
                member = self.roster.member(value)
                if member is not None:
                    return member
        return None

    def _patient(self, patient_id: str) -> PatientFacts | None:
        for source in self.patients:
            facts = source.get(patient_id)
            if facts is not None:
                return facts
        return None

    def _enrich(self, event: Event) -> None:
        ts = event.get("@timestamp")
        day = self._local_date(ts) if isinstance(ts, str) and ts else None
        member = self._member(event)
        has_user = any(isinstance(event.get(f), str) and event.get(f) for f in self.user_fields)
        if self.roster is not None and self.roster.loaded and has_user:
            event["ehr.user.on_roster"] = member is not None
        if member is not None:
            if member.department:
                event["ehr.user.department"] = member.department
                event["ehr.user.emergency_department"] = fold(member.department) in self.emergency_departments
            if day is not None:
                event["ehr.user.terminated"] = member.end_date is not None and day > member.end_date

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

        if self.roster is not None and self.roster.loaded:
            is_self = member is not None and member.patient_id == patient_id
            if member is not None:
                event["ehr.relationship.self"] = is_self
            event["ehr.relationship.patient_is_employee"] = (
                not is_self and self.roster.is_employee_patient(patient_id)
            )
        if member is not None and facts is not None:
            if member.family_name and facts.family_name:
                event["ehr.relationship.same_last_name"] = member.family_name == facts.family_name or bool(
                    member.name_parts & facts.name_parts
                )
            if member.address and facts.address:
                event["ehr.relationship.same_address"] = member.address == facts.address


def _fhir_patient_source(options: Mapping[str, Any]) -> FhirPatientDirectory:
    """The FHIR Patient source; its token comes from an env var or a file, never from the config text."""
    from connectors.fhir_auth import build_ssl_context, read_secret_option

    token = read_secret_option(options.get("patients_fhir_token_env"), options.get("patients_fhir_token_file"))
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    verify = build_ssl_context(
        ca_file=options.get("patients_fhir_ca_file"),
        client_cert=options.get("patients_fhir_client_cert_file"),
        client_key=options.get("patients_fhir_client_key_file"),
    )
    return FhirPatientDirectory(
        options["patients_fhir_base_url"],
        ttl_seconds=float(options.get("patients_fhir_ttl_seconds", 3600)),
        error_ttl_seconds=float(options.get("patients_fhir_error_ttl_seconds", 60)),
        max_entries=int(options.get("patients_fhir_max_entries", 100_000)),
        timeout=float(options.get("patients_fhir_timeout", 5.0)),
        headers=headers,
        verify=verify,
    )
