"""Identity enrichment: one ``wardwatch.identity`` per person, whatever the source calls them.

The same nurse is ``HOSPITAL\\jdoe`` in a Windows 4624, ``jdoe@hospital.example`` on the VPN and ``u0042``
in the EHR's audit trail. A Sigma correlation can only group by a field, so it cannot join those three on
its own. This enricher looks each event's user up in the directory (the snapshot the ``ldap-directory``
connector writes, or an LDIF export) and writes the directory's canonical identity - the lower-cased
sAMAccountName - into ``wardwatch.identity`` on every source, plus what rules ask of a user: department,
disabled-or-expired at event time, and membership (direct or nested) in the configured privileged groups.

Lookups, first hit wins: on EHR datasets the EHR login (``user.id``, then ``user.name``) against the
``ehr_user_attribute`` (``employeeID``); then ``user.name``, ``TargetUserName``, ``SubjectUserName`` (as
logged: ``DOMAIN\\name`` and ``name@domain`` both work) against sAMAccountName and the local part of
userPrincipalName and mail. Computer accounts (``WS01$``) and ``-`` never resolve. Nothing is written when
the user is unknown (absent means "not in the directory"), and an enricher never drops an event.

:class:`DirectoryRoster` serves the privacy enrichment from the same directory (``roster_directory``).
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any, Mapping, Sequence
from zoneinfo import ZoneInfo

from connectors.directory.attributes import AttributeValueError, normalise_dn
from connectors.directory.index import DirectoryIndex
from connectors.directory.model import DirectoryUser, end_date_of
from connectors.directory.snapshot import load_directory
from engine.enrich import Enricher
from engine.enrich.lookups import FileBacked, LookupStatus, ReloadingFile, StaffMember, fold
from engine.events import Event, split_login
from engine.plugins import InvalidOption, parse_options, path_option

log = logging.getLogger(__name__)

#: Every field this enricher may set (docs/schema.md "Directory identity").
FIELDS = ("wardwatch.identity", "wardwatch.user.department", "wardwatch.user.disabled", "wardwatch.user.privileged")
DEFAULT_USER_FIELDS = ("user.name", "TargetUserName", "SubjectUserName")
#: Windows logs "-" for "no account", and names some built-in principals; none of them is a person.
_NOT_A_USER = frozenset({"-", "", "system", "anonymous logon", "local service", "network service"})


@dataclass
class IdentityOptions:
    """``enrichment.identity`` (docs/enrichment.md)."""

    directory: str = path_option(dataclasses.MISSING)  # snapshot written by ldap-directory, or an LDIF export
    privileged_groups: list[str] = dataclasses.field(default_factory=list)  # CNs or DNs
    ehr_user_attribute: str = "employeeID"
    ehr_datasets: list[str] = dataclasses.field(default_factory=lambda: ["ehr.audit"])
    ehr_user_fields: list[str] = dataclasses.field(default_factory=lambda: ["user.id", "user.name"])
    user_fields: list[str] = dataclasses.field(default_factory=lambda: list(DEFAULT_USER_FIELDS))
    #: ``user.domain`` values that are this directory (e.g. [hospital, hospital.example]); None: any
    domains: list[str] | None = None
    datasets: list[str] | None = None  # None: every dataset

    def __post_init__(self) -> None:
        if not self.directory:
            raise InvalidOption("directory", "must name the directory snapshot or an LDIF export")
        for group in self.privileged_groups:
            if "=" in group:
                try:
                    normalise_dn(group)
                except AttributeValueError:
                    raise InvalidOption("privileged_groups", f"{group!r} is not a DN (or write just the CN)") from None
        if not self.ehr_user_attribute.strip():
            raise InvalidOption("ehr_user_attribute", "must be an attribute name such as employeeID")


class DirectoryFile(FileBacked):
    """The directory as a reloading lookup table: a new snapshot (or LDIF) replaces the index atomically;
    a failed reload keeps the previous one."""

    def __init__(self, path: str | Path, id_attribute: str = "employeeID", extra_ids: Sequence[str] = ()):
        self.id_attribute = id_attribute
        self.id_attributes = tuple(dict.fromkeys([id_attribute, *extra_ids]))
        self.file = ReloadingFile(path, self._load, "directory", size=len)

    def _load(self, path: Path) -> DirectoryIndex:
        snapshot = load_directory(path, self.id_attributes)
        if snapshot.problems:
            log.warning("directory %s: %d records skipped (first at line %d)", path, len(snapshot.problems),
                        snapshot.problems[0][0])
        return DirectoryIndex(snapshot, self.id_attribute)

    @property
    def index(self) -> DirectoryIndex | None:
        return self.file.table


class IdentityEnricher(Enricher):
    name = "identity"

    def __init__(self, directory: DirectoryFile, *, privileged_groups: Sequence[str] = (),
                 ehr_datasets: Sequence[str] = ("ehr.audit",),
                 ehr_user_fields: Sequence[str] = ("user.id", "user.name"),
                 user_fields: Sequence[str] = DEFAULT_USER_FIELDS, domains: Sequence[str] | None = None,
                 datasets: Sequence[str] | None = None):
        self.directory = directory
        self.privileged_dns = {normalise_dn(g) for g in privileged_groups if "=" in g}
        self.privileged_cns = {g.strip().casefold() for g in privileged_groups if "=" not in g}
        self.ehr_datasets = set(ehr_datasets)
        self.ehr_user_fields = tuple(ehr_user_fields)
        self.user_fields = tuple(user_fields)
        self.domains = {d.casefold() for d in domains} if domains else None
        self.datasets = set(datasets) if datasets else None
        self._privileged: dict[str, bool] = {}
        self._index_seen: Any = None

    @classmethod
    def from_config(cls, options: "Mapping[str, Any] | IdentityOptions") -> "IdentityEnricher":
        opts = options if isinstance(options, IdentityOptions) else parse_options(IdentityOptions, options)
        return cls(DirectoryFile(opts.directory, opts.ehr_user_attribute), privileged_groups=opts.privileged_groups,
                   ehr_datasets=opts.ehr_datasets, ehr_user_fields=opts.ehr_user_fields, user_fields=opts.user_fields,
                   domains=opts.domains, datasets=opts.datasets)

    def refresh(self) -> None:
        self.directory.refresh()

    def lookups(self) -> list[LookupStatus]:
        return [self.directory.status("identity.directory")]

    def enrich(self, event: Event) -> Event:
        if self.datasets is not None and event.get("event.dataset") not in self.datasets:
            return event
        index = self.directory.index
        if index is None:
            return event
        try:
            user = self.resolve(index, event)
            if user is not None:
                self._annotate(index, user, event)
        except Exception as exc:  # noqa: BLE001 - never drop an event; the type only, no user names
            log.warning("identity enrichment skipped an event: %s", type(exc).__name__)
        return event

    # --- internals ----------------------------------------------------------------------------
    def resolve(self, index: DirectoryIndex, event: Mapping[str, Any]) -> DirectoryUser | None:
        if event.get("event.dataset") in self.ehr_datasets:
            for f in self.ehr_user_fields:
                value = event.get(f)
                if isinstance(value, str) and value:
                    user = index.by_id(value)
                    if user is not None:
                        return user
        for f in self.user_fields:
            value = event.get(f)
            if not isinstance(value, str) or value.strip().casefold() in _NOT_A_USER:
                continue
            if self.domains is not None and not self._domain_ok(event, f, value):
                continue
            user = index.by_login(value)
            if user is not None:
                return user
        return None

    def _domain_ok(self, event: Mapping[str, Any], f: str, value: str) -> bool:
        _name, domain = split_login(value)
        if domain is None:
            field = {"user.name": "user.domain", "TargetUserName": "TargetDomainName",
                     "SubjectUserName": "SubjectDomainName"}.get(f)
            logged = event.get(field) if field else None
            domain = logged.casefold() if isinstance(logged, str) and logged and logged != "-" else None
        return domain is None or domain in self.domains  # type: ignore[operator]

    def _annotate(self, index: DirectoryIndex, user: DirectoryUser, event: Event) -> None:
        event["wardwatch.identity"] = user.identity
        if user.department:
            event["wardwatch.user.department"] = user.department
        event["wardwatch.user.disabled"] = user.disabled_at(_event_time(event.get("@timestamp")))
        if self.privileged_dns or self.privileged_cns:
            event["wardwatch.user.privileged"] = self._is_privileged(index, user)

    def _is_privileged(self, index: DirectoryIndex, user: DirectoryUser) -> bool:
        if index is not self._index_seen:  # a reload: group memberships may have changed
            self._privileged, self._index_seen = {}, index
        cached = self._privileged.get(user.identity)
        if cached is None:
            groups = index.groups_of(user)
            cached = bool(groups & self.privileged_dns) or bool(index.group_names(groups) & self.privileged_cns)
            self._privileged[user.identity] = cached
        return cached


def _event_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        dt = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)


class DirectoryRoster:
    """The privacy enrichment's staff roster (``StaffRoster`` interface) served from the directory.

    ``department`` from the directory; ``end_date`` from accountExpires, or - for a disabled account - the
    day before it last changed (see :func:`connectors.directory.model.end_date_of`), as a calendar date in
    the site's time zone; ``terminated`` then follows as for a CSV roster. The directory holds no family
    names, addresses or employees' own record numbers (unless ``patient_attribute`` names one), so the
    same-last-name and same-address flags stay absent ("could not tell"), never false.
    """

    def __init__(self, path: str | Path, *, ehr_attribute: str = "employeeID", patient_attribute: str | None = None,
                 timezone_name: str = "UTC", role_attribute: str | None = "title"):
        self.patient_attribute = patient_attribute.lower() if patient_attribute else None
        #: ehr.user.role: ``title`` is kept for every user; any other attribute is loaded as an extra id
        self.role_attribute = role_attribute.lower() if role_attribute else None
        extra = [a for a in (patient_attribute, role_attribute) if a and a.lower() != "title"]
        self.directory = DirectoryFile(path, ehr_attribute, extra)
        self.tz = ZoneInfo(timezone_name)
        self._members: dict[str, StaffMember] = {}
        self._index_seen: Any = None
        self._patients: set[str] = set()

    @property
    def loaded(self) -> bool:
        return self.directory.index is not None

    @property
    def knows_patients(self) -> bool:
        """Whether ``is_employee_patient`` can answer (the privacy enricher writes no flag otherwise)."""
        return self.patient_attribute is not None

    def __len__(self) -> int:
        return len(self.directory.index or ())

    def refresh(self) -> None:
        self.directory.refresh()

    def status(self, name: str) -> LookupStatus:
        return self.directory.status(name)

    def _sync(self) -> DirectoryIndex | None:
        index = self.directory.index
        if index is not self._index_seen:
            self._members, self._index_seen = {}, index
            self._patients = set()
            if index is not None and self.patient_attribute:
                self._patients = {u.ids[self.patient_attribute] for u in index.snapshot.users.values()
                                  if u.ids.get(self.patient_attribute)}
        return index

    def member(self, user: str | None) -> StaffMember | None:
        index = self._sync()
        if not user or index is None:
            return None
        found = index.by_id(user) or index.by_login(user)
        if found is None:
            return None
        member = self._members.get(found.identity)
        if member is None:
            member = self._member(found)
            self._members[found.identity] = member
        return member

    def _member(self, user: DirectoryUser) -> StaffMember:
        ids = {k: v for k, v in user.ids.items() if k != self.role_attribute}  # a role is no login key
        keys = tuple(dict.fromkeys(fold(k) for k in (user.identity, user.upn, user.mail, *ids.values()) if k))
        role = user.title if self.role_attribute == "title" else user.ids.get(self.role_attribute or "")
        ended = end_date_of(user)
        end_date: date | None = ended.astimezone(self.tz).date() if ended is not None else None
        patient_id = user.ids.get(self.patient_attribute) if self.patient_attribute else None
        return StaffMember(keys=keys, family_name="", name_parts=frozenset(), department=user.department,
                           address="", patient_id=patient_id, end_date=end_date, role=role or None)

    def members(self) -> list[StaffMember]:
        """Every directory user as a staff member (``wardwatch config check`` lists their roles)."""
        index = self._sync()
        return [self.member(u.identity) or self._member(u) for u in index.snapshot.users.values()] if index else []

    def is_employee_patient(self, patient_id: str) -> bool:
        self._sync()
        return patient_id in self._patients
