"""One directory user (and group), reduced to what detection needs.

Data minimisation: the directory knows staff names, phone numbers and photos. A rule needs none of them, so
a :class:`DirectoryUser` keeps logins, department, title, account state, group DNs and the configured
identifier attributes (``employeeID`` is the EHR login at most sites). ``displayName``, ``sn``,
``givenName`` and ``manager`` (a DN whose CN is a name) are never requested, and the user's own DN is kept
only as a hash (:func:`dn_key`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Iterable, Mapping

from connectors.directory.attributes import (
    AttributeValueError,
    dn_domain,
    filetime,
    generalized_time,
    normalise_dn,
    parse_int,
    uac_disabled,
    uac_flags,
)

#: Attributes a sync asks for (AD names). ``displayName``, ``manager`` and the name attributes are not
#: requested at all: what is never fetched cannot leak (see the module docstring).
USER_ATTRIBUTES = (
    "sAMAccountName", "userPrincipalName", "mail", "employeeID", "department", "title",
    "userAccountControl", "accountExpires", "whenChanged", "uSNChanged", "memberOf", "objectClass",
)
GROUP_ATTRIBUTES = ("cn", "sAMAccountName", "memberOf", "whenChanged", "uSNChanged", "objectClass")


@dataclass(frozen=True)
class DirectoryUser:
    """A user as the directory describes it now. ``identity`` is lower-cased sAMAccountName.

    ``key`` is a hash of the normalised DN, not the DN: a user's DN is usually ``CN=<full name>,...``, and the
    snapshot only needs to recognise the same entry again (changes, deletes, ``event.id``)."""

    key: str
    identity: str
    upn: str | None = None
    mail: str | None = None
    department: str | None = None
    title: str | None = None
    account_control: int = 0
    account_expires: datetime | None = None
    when_changed: datetime | None = None
    usn_changed: int | None = None
    member_of: tuple[str, ...] = ()
    #: the DNS domain of the DN's ``DC=`` parts (``hospital.example``)
    domain: str | None = None
    #: configured identifier attributes, keys lower-cased (``{"employeeid": "u0042"}``)
    ids: Mapping[str, str] = field(default_factory=dict)

    @property
    def disabled(self) -> bool:
        """userAccountControl ACCOUNTDISABLE (bit 2)."""
        return bool(self.account_control & 0x2)

    @property
    def flags(self) -> list[str]:
        return uac_flags(self.account_control)

    def disabled_at(self, when: datetime | None) -> bool:
        """Disabled, or expired (accountExpires at or before ``when``; None: now is not known -> only the bit)."""
        if self.disabled:
            return True
        return when is not None and self.account_expires is not None and self.account_expires <= when

    @property
    def version(self) -> str:
        """What changes when the entry changes: uSNChanged on AD, else whenChanged (for ``event.id``)."""
        if self.usn_changed is not None:
            return f"usn:{self.usn_changed}"
        if self.when_changed is not None:
            return f"when:{self.when_changed.isoformat()}"
        return "unversioned"

    def to_json(self) -> dict[str, Any]:
        return {
            "key": self.key, "identity": self.identity, "domain": self.domain, "upn": self.upn, "mail": self.mail,
            "department": self.department, "title": self.title, "uac": self.account_control,
            "expires": self.account_expires.isoformat() if self.account_expires else None,
            "changed": self.when_changed.isoformat() if self.when_changed else None,
            "usn": self.usn_changed, "member_of": list(self.member_of), "ids": dict(self.ids),
        }

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> "DirectoryUser":
        return cls(
            key=doc["key"], identity=doc["identity"], domain=doc.get("domain"), upn=doc.get("upn"), mail=doc.get("mail"),
            department=doc.get("department"), title=doc.get("title"), account_control=int(doc.get("uac") or 0),
            account_expires=datetime.fromisoformat(doc["expires"]) if doc.get("expires") else None,
            when_changed=datetime.fromisoformat(doc["changed"]) if doc.get("changed") else None,
            usn_changed=doc.get("usn"), member_of=tuple(doc.get("member_of") or ()), ids=dict(doc.get("ids") or {}),
        )


@dataclass(frozen=True)
class DirectoryGroup:
    """A group: only what nested membership needs (its own memberOf) and its CN for matching."""

    dn: str
    cn: str | None
    member_of: tuple[str, ...] = ()


def dn_key(dn: str) -> str:
    """The stable, name-free key of an entry: a hash of its normalised DN."""
    return hashlib.sha256(normalise_dn(dn).encode("utf-8")).hexdigest()[:32]


def end_date_of(user: DirectoryUser) -> datetime | None:
    """When the person stopped working, as far as the directory can tell (for the privacy roster).

    accountExpires is the instant the account stops working (ADUC's "end of 30 Nov" is 1 Dec 00:00), so the
    last working instant is just before it. A disabled account without expiry counts as ended when the entry
    last changed (the disable is usually that change); approximate, documented in docs/enrichment.md.
    """
    if user.account_expires is not None:
        ended: datetime | None = user.account_expires - timedelta(microseconds=1)
    else:
        ended = None
    if user.disabled and user.when_changed is not None:
        disabled_end = user.when_changed - timedelta(days=1)
        ended = disabled_end if ended is None else min(ended, disabled_end)
    return ended


# --- entry decoding ------------------------------------------------------------------------------
def _values(attrs: Mapping[str, Any], name: str) -> list[Any]:
    value = attrs.get(name.lower())
    if value is None:
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v not in (None, "", b"")]
    return [value] if value not in ("", b"") else []


def _text(attrs: Mapping[str, Any], name: str) -> str | None:
    values = _values(attrs, name)
    if not values:
        return None
    value = values[0]
    if isinstance(value, bytes):
        try:
            value = value.decode("utf-8")
        except UnicodeDecodeError:
            raise AttributeValueError(name, "not UTF-8 text") from None
    if isinstance(value, datetime):
        return value.strftime("%Y%m%d%H%M%S.0Z")
    text = str(value).strip()
    return text or None


def _when(attrs: Mapping[str, Any], name: str) -> datetime | None:
    raw = _values(attrs, name)
    if raw and isinstance(raw[0], datetime):  # ldap3 with schema info decodes GeneralizedTime itself
        return raw[0]
    text = _text(attrs, name)
    return generalized_time(name, text) if text else None


def _dns(attrs: Mapping[str, Any], name: str) -> tuple[str, ...]:
    out = []
    for value in _values(attrs, name):
        text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
        normalise_dn(text)  # raises AttributeValueError naming "dn" when it is not one
        out.append(text)
    return tuple(out)


def lower_keys(attrs: Mapping[str, Any]) -> dict[str, Any]:
    """LDAP attribute names are case-insensitive (``samaccountname`` == ``sAMAccountName``)."""
    return {str(k).lower(): v for k, v in attrs.items()}


def object_classes(attrs: Mapping[str, Any]) -> set[str]:
    return {str(v.decode() if isinstance(v, bytes) else v).lower() for v in _values(attrs, "objectClass")}


def is_group(attrs: Mapping[str, Any]) -> bool:
    return bool(object_classes(attrs) & {"group", "groupofnames", "groupofuniquenames", "posixgroup"})


def is_user_entry(attrs: Mapping[str, Any]) -> bool:
    """Whether an exported entry is a person's account: AD ``user`` (not ``computer``), or a generic
    person/inetOrgPerson/posixAccount with a login. OUs, containers and contacts are not."""
    classes = object_classes(attrs)
    if "computer" in classes:
        return False
    if "user" in classes:
        return True
    return bool(classes & {"person", "inetorgperson", "posixaccount"}) and bool(
        _values(attrs, "sAMAccountName") or _values(attrs, "uid"))


def user_from_entry(dn: str, attrs: Mapping[str, Any], id_attributes: Iterable[str] = ("employeeID",)) -> DirectoryUser:
    """A raw entry (attribute names lower-cased, values text or bytes) -> a :class:`DirectoryUser`.

    Raises :class:`AttributeValueError` naming the attribute when a value cannot be decoded, or when the
    entry has no ``sAMAccountName`` (or, for a generic LDAP directory, no ``uid``).
    """
    sam = _text(attrs, "sAMAccountName") or _text(attrs, "uid")
    if not sam:
        raise AttributeValueError("sAMAccountName", "missing (and no uid)")
    uac_text = _text(attrs, "userAccountControl")
    expires_text = _text(attrs, "accountExpires")
    usn_text = _text(attrs, "uSNChanged")
    if uac_text is not None:
        uac_disabled(uac_text)  # validates
    ids = {}
    for name in id_attributes:
        value = _text(attrs, name)
        if value:
            ids[name.lower()] = value
    return DirectoryUser(
        key=dn_key(dn),
        identity=sam.lower(),
        domain=dn_domain(dn),
        upn=(_text(attrs, "userPrincipalName") or "").lower() or None,
        mail=(_text(attrs, "mail") or "").lower() or None,
        department=_text(attrs, "department") or _text(attrs, "departmentNumber"),
        title=_text(attrs, "title"),
        account_control=parse_int("userAccountControl", uac_text) & 0xFFFFFFFF if uac_text else 0,
        account_expires=filetime("accountExpires", expires_text) if expires_text else None,
        when_changed=_when(attrs, "whenChanged") or _when(attrs, "modifyTimestamp"),
        usn_changed=parse_int("uSNChanged", usn_text) if usn_text else None,
        member_of=_dns(attrs, "memberOf"),
        ids=ids,
    )


def group_from_entry(dn: str, attrs: Mapping[str, Any]) -> DirectoryGroup:
    normalise_dn(dn)
    return DirectoryGroup(dn=dn, cn=_text(attrs, "cn"), member_of=_dns(attrs, "memberOf"))
