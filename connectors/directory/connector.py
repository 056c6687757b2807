"""``ldap-directory``: Active Directory / LDAP users as ``directory.user`` events, plus the directory snapshot.

Each sync (one ``read`` that finds the buffer empty):

1. **Full** on the first read, and again every ``full_resync_interval`` (default 24 h): every user and group
   is read; users that disappeared since the previous snapshot become ``user-deleted`` events (AD's
   tombstones are not visible to an ordinary search, so a full listing is the only reliable way to see a
   delete). **Incremental** otherwise: only users with ``uSNChanged`` above the highest seen (AD), or
   ``whenChanged``/``modifyTimestamp`` at or after the latest seen (``change_attribute``).
2. The snapshot file (``snapshot``) is replaced atomically; the identity enrichment and the directory roster
   read it.
3. One event per user read: ``user-created`` (not in the previous snapshot), ``user-changed``, or, on a full
   sync, ``user-listed`` for users that did not change. ``event.id`` is a hash of the DN and uSNChanged (else
   whenChanged), so re-reading an unchanged user - a crash before the cursor commit, a full resync - stores
   nothing new, and every real change (an account disabled, a new Domain Admins member) is one new event a
   rule can see.

The events are buffered and handed out ``max_events`` at a time; the cursor moves only with the last part,
so a crash in between re-syncs (idempotently) instead of losing changes. With ``path:`` instead of ``url:``
the same happens over an LDIF export, re-read when the file changes.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, ClassVar, Literal, Mapping

from connectors.base import Batch, Connector, ConnectorConfigError, ConnectorError
from connectors.directory.attributes import (
    AttributeValueError,
    dn_cn,
    format_generalized,
    generalized_time,
    or_none,
    parse_int,
)
from connectors.directory.ldap_sync import (
    ChangeAttribute,
    DirectoryError,
    DirectoryUnavailable,
    LdapEndpoint,
    LdapReader,
    and_filter,
    change_filter,
    group_attributes,
    insecure_transport,
    user_attributes,
)
from connectors.directory.ldif_file import LdifProblem, read_ldif
from connectors.directory.model import DirectoryUser, is_group, is_user_entry
from connectors.directory.snapshot import DirectorySnapshot, load_directory
from engine.events import Event, format_timestamp, make_event_id
from engine.logs import get_logger
from engine.plugins import InvalidOption, duration_option, path_option
from engine.store.base import DeadLetter

log = get_logger("wardwatch.connectors.directory")

CURSOR_VERSION = 1
DATASET = "directory.user"
AD_USER_FILTER = "(&(objectClass=user)(!(objectClass=computer)))"
AD_GROUP_FILTER = "(objectClass=group)"


@dataclass
class LdapDirectoryOptions:
    """Options of ``ldap-directory`` (docs/connectors/ldap-directory.md)."""

    url: str | None = None  # ldaps://dc01.hospital.example or ldap://... with starttls: true
    path: str | None = path_option()  # an LDIF export instead of a server
    base_dn: str | None = None
    starttls: bool = False
    ca_file: str | None = path_option()
    bind_dn: str | None = None
    bind_password_file: str | None = path_option()
    bind_password_env: str | None = None
    #: plain ldap:// without StartTLS to a non-loopback host would send the password in clear text
    allow_insecure_ldap: bool = False
    user_filter: str = AD_USER_FILTER
    group_filter: str = AD_GROUP_FILTER
    change_attribute: Literal["uSNChanged", "whenChanged", "modifyTimestamp"] = "uSNChanged"
    full_resync_interval: float = duration_option(86_400.0)
    #: at most one sync per this interval (the engine polls every ingest_interval; a DC need not answer
    #: every 10 s); the first read of a process always syncs
    sync_interval: float = duration_option(300.0)
    paged_size: int = 500
    timeout: float = duration_option(10.0)
    #: identifier attributes kept per user (the EHR login is one of them: employeeID by default)
    id_attributes: list[str] = dataclasses.field(default_factory=lambda: ["employeeID"])
    #: the directory snapshot file the identity enrichment reads (private, replaced atomically)
    snapshot: str | None = path_option()
    #: ``user.domain`` of the events; default: the DNS domain of each user's DN (``hospital.example``)
    domain: str | None = None
    dataset: str = DATASET

    def __post_init__(self) -> None:
        if bool(self.url) == bool(self.path):
            raise InvalidOption("url", "give exactly one of url (an LDAP server) or path (an LDIF export)")
        if self.server_url:
            try:
                endpoint = LdapEndpoint(self.server_url, starttls=self.starttls)
                _host, _port, use_ssl = endpoint.parts
            except ValueError as exc:
                raise InvalidOption("url", str(exc)) from None
            if use_ssl and self.starttls:
                raise InvalidOption("starttls", "ldaps:// is TLS already; StartTLS is for ldap:// URLs")
            if not self.base_dn:
                raise InvalidOption("base_dn", "required with url (e.g. DC=hospital,DC=example)")
            if self.bind_password_file and self.bind_password_env:
                raise InvalidOption("bind_password_file", "give bind_password_file or bind_password_env, not both")
            if (self.bind_password_file or self.bind_password_env) and not self.bind_dn:
                raise InvalidOption("bind_dn", "required with a bind password")
            if self.bind_dn and not (self.bind_password_file or self.bind_password_env):
                raise InvalidOption("bind_password_file", "a bind_dn needs bind_password_file or bind_password_env")
        if self.sync_interval is not None and self.sync_interval < 0:
            raise InvalidOption("sync_interval", "must be a duration >= 0")
        if self.paged_size < 1:
            raise InvalidOption("paged_size", "must be a positive integer")
        if self.full_resync_interval is not None and self.full_resync_interval <= 0:
            raise InvalidOption("full_resync_interval", "must be a positive duration")
        for key in ("user_filter", "group_filter"):
            value = getattr(self, key).strip()
            if not (value.startswith("(") and value.endswith(")")):
                raise InvalidOption(key, "must be an LDAP filter in parentheses, e.g. (objectClass=user)")

    @property
    def server_url(self) -> str | None:
        """``url`` when it is an LDAP URL. ``wardwatch ingest ldap-directory users.ldif`` puts its one SOURCE
        argument into ``url``; without ``://`` it is an LDIF file (:attr:`ldif_path`)."""
        return self.url if self.url and "://" in self.url else None

    @property
    def ldif_path(self) -> str | None:
        return self.path or (self.url if self.url and not self.server_url else None)


class LdapDirectoryConnector(Connector):
    """Directory users (AD or OpenLDAP, or an LDIF export) -> ``directory.user`` events and a snapshot."""

    type_name = "ldap-directory"
    summary = "Active Directory / LDAP users (paged, LDAPS/StartTLS, incremental) or an LDIF export"
    source_option = "url"
    Options: ClassVar[type] = LdapDirectoryOptions

    def __init__(self, name: str, options: Mapping[str, Any], *, clock: Any = None):
        super().__init__(name, options)
        self.opts: LdapDirectoryOptions = self.settings
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._pending: list[Event] = []
        self._pending_dead: list[DeadLetter] = []
        self._pending_cursor: dict[str, Any] | None = None
        self._memory: DirectorySnapshot | None = None
        self.last_sync: dict[str, Any] = {}
        self._synced_at: float | None = None  # monotonic time of the last sync in this process

    # --- the contract -------------------------------------------------------------------------
    def read(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        if not self._pending and not self._pending_dead and self._pending_cursor is None:
            interval = self.opts.sync_interval or 0.0
            if self._synced_at is not None and time.monotonic() - self._synced_at < interval:
                return Batch(cursor=cursor, exhausted=True)  # not due yet
            self._synced_at = time.monotonic()
            try:
                self._sync(cursor)
            except DirectoryUnavailable as exc:
                return Batch(cursor=cursor, exhausted=True, unavailable=f"connector {self.name!r}: {exc}")
            except DirectoryError as exc:
                raise ConnectorError(f"connector {self.name!r}: {exc}") from None
        return self._hand_out(cursor, max_events)

    def _hand_out(self, cursor: dict[str, Any] | None, max_events: int) -> Batch:
        take = max(0, max_events)
        events, self._pending = self._pending[:take], self._pending[take:]
        dead = self._pending_dead if not self._pending else []
        if dead:
            self._pending_dead = []
        if self._pending:
            return Batch(events=events, cursor=cursor, exhausted=False)  # the old cursor: nothing is skipped
        new_cursor, self._pending_cursor = self._pending_cursor, None
        return Batch(events=events, dead_letters=dead, cursor=new_cursor or cursor, exhausted=True)

    # --- one sync -----------------------------------------------------------------------------
    def _previous(self) -> DirectorySnapshot:
        if self._memory is not None:
            return self._memory
        if self.opts.snapshot and os.path.exists(self.opts.snapshot):
            try:
                self._memory = load_directory(self.opts.snapshot, self.opts.id_attributes)
            except (OSError, ValueError) as exc:
                log.warning("directory snapshot unreadable; starting from an empty one", path=self.opts.snapshot,
                            error=type(exc).__name__)
                self._memory = DirectorySnapshot()
        else:
            self._memory = DirectorySnapshot()
        return self._memory

    def _sync(self, cursor: Mapping[str, Any] | None) -> None:
        state = dict(cursor) if cursor and cursor.get("v") == CURSOR_VERSION else {"v": CURSOR_VERSION}
        now = self.clock()
        previous = self._previous()
        started = time.monotonic()
        if self.opts.ldif_path:
            result = self._sync_ldif(state, previous)
        else:
            result = self._sync_ldap(state, previous, now)
        if result is None:
            self._pending_cursor = state
            return
        snapshot, read_users, full, dead, mark = result
        snapshot.synced_at = format_timestamp(now)
        if full:
            # Tombstones: users gone at a full sync whose cursor may not be committed yet. A crash after the
            # snapshot was saved but before the commit repeats the full sync, which then reports the delete
            # again (same id and time: the store keeps one copy) instead of losing it. A tombstone older than
            # the committed cursor's full sync has been delivered and is dropped.
            committed = str(state.get("full_at") or "")
            gone = {k: (u, format_timestamp(now)) for k, u in previous.users.items() if k not in snapshot.users}
            carried = {k: v for k, v in previous.deleted.items() if v[1] > committed and k not in snapshot.users}
            snapshot.deleted = {**carried, **gone}
        else:
            snapshot.deleted = dict(previous.deleted)
        if self.opts.snapshot:
            snapshot.save(self.opts.snapshot)
        events = [self._event(u, previous, full, now) for u in read_users]
        if full:
            events += [self._deleted_event(user, noticed) for user, noticed in snapshot.deleted.values()]
        self._memory = snapshot
        self._pending, self._pending_dead = events, dead
        if mark is not None:
            state["mark"] = mark
        if full:
            state["full_at"] = format_timestamp(now)
        self._pending_cursor = state
        self.last_sync = {"full": full, "users": len(read_users), "events": len(events), "dead": len(dead),
                          "seconds": round(time.monotonic() - started, 3)}
        log.info("directory synced", connector=self.name, **self.last_sync)  # counts only: no names

    def _sync_ldif(self, state: dict[str, Any], previous: DirectorySnapshot):
        path = self.opts.ldif_path
        assert path is not None
        try:
            st = os.stat(path)
        except OSError as exc:
            raise ConnectorError(f"connector {self.name!r}: path {path}: {exc.strerror}") from None
        stamp = [st.st_mtime_ns, st.st_size]
        if state.get("file") == stamp and previous.users:
            return None
        snapshot = DirectorySnapshot(source=str(path))
        read_users: list[DirectoryUser] = []
        dead: list[DeadLetter] = []
        for record in read_ldif(path):
            if isinstance(record, LdifProblem):
                dead.append(self._dead(f"{path}:{record.line}", record.reason, ""))
                continue
            if not (is_group(record.attrs) or is_user_entry(record.attrs)):
                continue  # an OU, a container, a computer, a contact: not a user
            try:
                item = snapshot.add_entry(record.dn, record.attrs, self.opts.id_attributes)
            except AttributeValueError as exc:
                dead.append(self._dead(f"{path}:{record.line}", str(exc), record.dn))
                continue
            if isinstance(item, DirectoryUser):
                read_users.append(item)
        state["file"] = stamp
        return snapshot, read_users, True, dead, None

    def _endpoint(self) -> LdapEndpoint:
        from connectors.fhir_auth import AuthError, read_secret_option

        try:
            password = read_secret_option(self.opts.bind_password_env, self.opts.bind_password_file)
        except AuthError as exc:
            raise ConnectorConfigError(f"connector {self.name!r}: bind password: {exc}") from None
        endpoint = LdapEndpoint(self.opts.server_url or "", starttls=self.opts.starttls, ca_file=self.opts.ca_file,
                                bind_dn=self.opts.bind_dn, password=password, timeout=self.opts.timeout or 10.0,
                                allow_insecure_ldap=self.opts.allow_insecure_ldap)
        if insecure_transport(endpoint):
            raise ConnectorConfigError(
                f"connector {self.name!r}: url {endpoint.url}: plain ldap:// would send the bind password in "
                "clear text; use ldaps://, starttls: true, or allow_insecure_ldap: true")
        if self.opts.ca_file and not os.path.isfile(self.opts.ca_file):
            raise ConnectorConfigError(f"connector {self.name!r}: ca_file {self.opts.ca_file}: no such file")
        return endpoint

    def _sync_ldap(self, state: dict[str, Any], previous: DirectorySnapshot, now: datetime):
        opts = self.opts
        full = _full_due(state, now, opts.full_resync_interval) or not previous.users
        attribute: ChangeAttribute = opts.change_attribute
        users_filter = and_filter(opts.user_filter, None if full else change_filter(attribute, state.get("mark")))
        snapshot = DirectorySnapshot(source=opts.url or "") if full else _copy(previous)
        snapshot.source = opts.url or ""
        read_users: list[DirectoryUser] = []
        dead: list[DeadLetter] = []
        assert opts.base_dn is not None
        with LdapReader(self._endpoint(), paged_size=opts.paged_size) as reader:
            if full:
                snapshot.groups = {}
            for dn, attrs in reader.entries(opts.base_dn, opts.group_filter, group_attributes(attribute)):
                try:
                    snapshot.add_entry(dn, {**attrs, "objectclass": ["group"]}, ())
                except AttributeValueError as exc:
                    dead.append(self._dead(f"{opts.url} group", str(exc), dn))
            wanted = user_attributes(attribute, tuple(opts.id_attributes))
            mark = ChangeMark(attribute, state.get("mark"))
            for dn, attrs in reader.entries(opts.base_dn, users_filter, wanted):
                mark.see(attrs)  # also for an entry that is dead-lettered: it must not come back every sync
                try:
                    item = snapshot.add_entry(dn, attrs, opts.id_attributes)
                except AttributeValueError as exc:
                    dead.append(self._dead(f"{opts.url} user", str(exc), dn))
                    continue
                if isinstance(item, DirectoryUser):
                    read_users.append(item)
        return snapshot, read_users, full, dead, mark.value

    # --- events -------------------------------------------------------------------------------
    def _event(self, user: DirectoryUser, previous: DirectorySnapshot, full: bool, now: datetime) -> Event:
        before = previous.users.get(user.key)
        if before is None:
            action, kind = ("user-listed", "info") if full and not previous.users else ("user-created", "creation")
        elif before.version == user.version and full:
            action, kind = "user-listed", "info"
        else:
            action, kind = "user-changed", "change"
        when = user.when_changed or now
        event: Event = {
            "@timestamp": format_timestamp(when),
            "event.dataset": self.opts.dataset,
            "event.kind": "event",
            "event.category": ["iam"],
            "event.type": ["user", kind],
            "event.action": action,
            "event.id": make_event_id("directory", f"{user.key}\x00{user.version}"),
            "user.name": user.identity,
            "wardwatch.identity": user.identity,
            "wardwatch.user.disabled": user.disabled_at(when),
            "directory.user.flags": user.flags,
        }
        domain = self.opts.domain or user.domain
        if domain:
            event["user.domain"] = domain.lower()
        if user.mail or user.upn:
            event["user.email"] = user.mail or user.upn
        groups = [cn for cn in (or_none(dn_cn, dn) for dn in user.member_of) if cn]
        if groups:
            event["user.roles"] = groups
        if user.department:
            event["wardwatch.user.department"] = user.department
        if user.title:
            event["directory.user.title"] = user.title
        if user.account_expires is not None:
            event["directory.user.account_expires"] = format_timestamp(user.account_expires)
        if user.usn_changed is not None:
            event["directory.user.usn_changed"] = user.usn_changed
        if before is not None and before.disabled != user.disabled:
            event["directory.user.disabled_changed"] = True
        if before is not None:
            names = lambda dns: {or_none(dn_cn, d) or d for d in dns}  # noqa: E731
            added = sorted(names(user.member_of) - names(before.member_of))
            if added:
                event["directory.user.groups_added"] = added
        return event

    def _deleted_event(self, user: DirectoryUser, noticed: str) -> Event:
        event: Event = {
            "@timestamp": noticed,
            "event.dataset": self.opts.dataset,
            "event.kind": "event",
            "event.category": ["iam"],
            "event.type": ["user", "deletion"],
            "event.action": "user-deleted",
            "event.id": make_event_id("directory", f"{user.key}\x00deleted\x00{user.version}"),
            "user.name": user.identity,
            "wardwatch.identity": user.identity,
        }
        domain = self.opts.domain or user.domain
        if domain:
            event["user.domain"] = domain.lower()
        return event

    def _dead(self, location: str, reason: str, dn: str) -> DeadLetter:
        return DeadLetter(source=self.source_identity, reason=reason, location=location, raw=dn,
                          received_at=format_timestamp(self.clock()))


def _copy(snapshot: DirectorySnapshot) -> DirectorySnapshot:
    return DirectorySnapshot(users=dict(snapshot.users), groups=dict(snapshot.groups), source=snapshot.source,
                             deleted=dict(snapshot.deleted))


def _full_due(state: Mapping[str, Any], now: datetime, interval: float | None) -> bool:
    if state.get("mark") is None or not state.get("full_at"):
        return True
    try:
        last = datetime.fromisoformat(str(state["full_at"]).replace("Z", "+00:00"))
    except ValueError:
        return True
    return interval is not None and (now - last).total_seconds() >= interval


class ChangeMark:
    """The highest value of the change attribute among the entries read (the raw attribute, not the model's
    ``when_changed``: an OpenLDAP entry may carry both whenChanged and modifyTimestamp). Never goes back."""

    def __init__(self, attribute: str, old: Any):
        self.attribute, self.key = attribute, attribute.lower()
        self.value: Any = old
        self._best: datetime | None = None

    def see(self, attrs: Mapping[str, Any]) -> None:
        raw = (attrs.get(self.key) or [None])[0]
        if raw is None:
            return
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        if self.attribute == "uSNChanged":
            number = or_none(lambda t: parse_int("uSNChanged", t), text)
            if number is not None and (self.value is None or number > int(self.value)):
                self.value = number
            return
        when = or_none(lambda t: generalized_time(self.attribute, t), text)
        if when is not None and (self._best is None or when > self._best):
            self._best = when
            mark = format_generalized(when)
            if not isinstance(self.value, str) or mark > self.value:
                self.value = mark
