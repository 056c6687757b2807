"""Decoding Active Directory attribute values (as LDAP and LDIF exports give them: text).

Why by hand: these are a handful of fixed encodings (a flag integer, Windows FILETIME, X.680
GeneralizedTime, DN first-RDN values) that ldap3 only decodes when it has read the server's schema, and an
LDIF export has no schema at all. One decoder for both paths keeps a server sync and an LDIF file identical.

Every function raises :class:`AttributeValueError` (a ``ValueError``) naming the attribute on bad input, so
a caller turns one odd entry into one dead letter instead of a traceback.
"""

from __future__ import annotations

import re
from functools import lru_cache
from datetime import datetime, timedelta, timezone
from typing import Callable, TypeVar

T = TypeVar("T")

#: userAccountControl flags (MS-ADTS 2.2.16), the ones a security analyst reads.
UAC_FLAGS = {
    0x0001: "SCRIPT",
    0x0002: "ACCOUNTDISABLE",
    0x0008: "HOMEDIR_REQUIRED",
    0x0010: "LOCKOUT",
    0x0020: "PASSWD_NOTREQD",
    0x0040: "PASSWD_CANT_CHANGE",
    0x0080: "ENCRYPTED_TEXT_PWD_ALLOWED",
    0x0100: "TEMP_DUPLICATE_ACCOUNT",
    0x0200: "NORMAL_ACCOUNT",
    0x0800: "INTERDOMAIN_TRUST_ACCOUNT",
    0x1000: "WORKSTATION_TRUST_ACCOUNT",
    0x2000: "SERVER_TRUST_ACCOUNT",
    0x10000: "DONT_EXPIRE_PASSWORD",
    0x20000: "MNS_LOGON_ACCOUNT",
    0x40000: "SMARTCARD_REQUIRED",
    0x80000: "TRUSTED_FOR_DELEGATION",
    0x100000: "NOT_DELEGATED",
    0x200000: "USE_DES_KEY_ONLY",
    0x400000: "DONT_REQ_PREAUTH",
    0x800000: "PASSWORD_EXPIRED",
    0x1000000: "TRUSTED_TO_AUTH_FOR_DELEGATION",
    0x4000000: "PARTIAL_SECRETS_ACCOUNT",
}
ACCOUNTDISABLE = 0x0002

#: accountExpires / lastLogon: 100-ns intervals since 1601-01-01 UTC. 0 and 0x7FFFFFFFFFFFFFFF mean "never".
FILETIME_NEVER = 0x7FFFFFFFFFFFFFFF
_FILETIME_EPOCH = datetime(1601, 1, 1, tzinfo=timezone.utc)

# RFC 4517 3.3.13: YYYYMMDDHH[MM[SS]][(.|,)fraction](Z|+hh[mm]|-hh[mm]); AD writes "20261130101500.0Z".
_GENERALIZED = re.compile(
    r"(?P<y>\d{4})(?P<mo>\d{2})(?P<d>\d{2})(?P<h>\d{2})(?P<mi>\d{2})?(?P<s>\d{2})?"
    r"(?:[.,](?P<frac>\d+))?(?P<tz>Z|[+-]\d{2}(?:\d{2})?)$"
)


class AttributeValueError(ValueError):
    """One attribute value cannot be decoded; ``attribute`` names it (never the value: it may be personal)."""

    def __init__(self, attribute: str, message: str):
        super().__init__(f"attribute {attribute}: {message}")
        self.attribute = attribute


def parse_int(attribute: str, value: str | int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    text = str(value).strip()
    if not re.fullmatch(r"[+-]?\d{1,20}", text):
        raise AttributeValueError(attribute, "not an integer")
    return int(text)


def uac_flags(value: str | int) -> list[str]:
    """userAccountControl -> the names of its set flags (unknown bits as ``0x...``), sorted by bit."""
    number = parse_int("userAccountControl", value) & 0xFFFFFFFF  # AD stores it as a signed 32-bit int
    names = []
    bit = 1
    while bit <= number:
        if number & bit:
            names.append(UAC_FLAGS.get(bit, f"0x{bit:X}"))
        bit <<= 1
    return names


def uac_disabled(value: str | int) -> bool:
    return bool(parse_int("userAccountControl", value) & ACCOUNTDISABLE)


def filetime(attribute: str, value: str | int) -> datetime | None:
    """A FILETIME attribute -> aware UTC datetime; None for "never" (0, 0x7FFFFFFFFFFFFFFF, past year 9999)."""
    number = parse_int(attribute, value)
    if number < 0:
        raise AttributeValueError(attribute, "negative FILETIME")
    if number in (0, FILETIME_NEVER):
        return None
    try:
        return _FILETIME_EPOCH + timedelta(microseconds=number // 10)
    except OverflowError:
        return None  # beyond datetime's range: no real expiry date is that far away


def to_filetime(when: datetime) -> int:
    """The inverse of :func:`filetime` (fixtures, tests and the LDAP test server use it)."""
    delta = when.astimezone(timezone.utc) - _FILETIME_EPOCH
    return (delta.days * 86_400 + delta.seconds) * 10_000_000 + delta.microseconds * 10


def generalized_time(attribute: str, value: str) -> datetime:
    """GeneralizedTime (``20261130101500.0Z``, ``2026113010Z``, ``20261130101500+0100``) -> aware UTC."""
    match = _GENERALIZED.match(str(value).strip())
    if not match:
        raise AttributeValueError(attribute, "not a GeneralizedTime (YYYYMMDDHHMMSS[.f]Z)")
    g = match.groupdict()
    try:
        dt = datetime(int(g["y"]), int(g["mo"]), int(g["d"]), int(g["h"]), int(g["mi"] or 0), int(g["s"] or 0))
    except ValueError as exc:
        raise AttributeValueError(attribute, f"invalid date or time ({exc})") from None
    if g["frac"]:
        # The fraction applies to the last unit given (RFC 4517): of a second, a minute or an hour.
        unit = 1 if g["s"] else 60 if g["mi"] else 3600
        dt += timedelta(seconds=unit * float("0." + g["frac"][:9]))
    tz = g["tz"]
    offset = timedelta(0)
    if tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        hours, minutes = int(tz[1:3]), int(tz[3:5] or 0)
        if hours > 23 or minutes > 59:
            raise AttributeValueError(attribute, "invalid time zone offset")
        offset = sign * timedelta(hours=hours, minutes=minutes)
    try:
        return dt.replace(tzinfo=timezone(offset)).astimezone(timezone.utc)
    except (OverflowError, ValueError):
        raise AttributeValueError(attribute, "time out of range") from None


def format_generalized(when: datetime) -> str:
    """AD's own form, ``YYYYMMDDHHMMSS.0Z`` (what an incremental ``whenChanged>=`` filter is written in)."""
    return when.astimezone(timezone.utc).strftime("%Y%m%d%H%M%S.0Z")


def _unescape_rdn_value(value: str) -> str:
    """RFC 4514 escapes: ``\\,`` -> ``,``, ``\\2C`` -> ``,`` (hex pairs are UTF-8 bytes)."""
    if "\\" not in value:
        return value
    out = bytearray()
    i = 0
    while i < len(value):
        ch = value[i]
        if ch == "\\" and i + 1 < len(value):
            pair = value[i + 1:i + 3]
            if len(pair) == 2 and all(c in "0123456789abcdefABCDEF" for c in pair):
                out.append(int(pair, 16))
                i += 3
                continue
            out += value[i + 1].encode("utf-8")
            i += 2
            continue
        out += ch.encode("utf-8")
        i += 1
    return out.decode("utf-8", "replace")


@lru_cache(maxsize=65_536)
def split_dn(dn: str) -> tuple[tuple[str, str], ...]:
    """A DN -> ((attribute type lower-cased, unescaped value), ...), with ldap3's RFC 4514 parser.

    Cached: a sync meets the same group DNs in every member's memberOf, and the same user DN several times."""
    from ldap3.core.exceptions import LDAPInvalidDnError
    from ldap3.utils.dn import parse_dn

    try:
        parts = parse_dn(dn, escape=False, strip=True)
    except (LDAPInvalidDnError, ValueError, IndexError, TypeError):
        raise AttributeValueError("dn", "not a distinguished name") from None
    return tuple((attr.lower(), _unescape_rdn_value(value)) for attr, value, _sep in parts)


@lru_cache(maxsize=65_536)
def normalise_dn(dn: str) -> str:
    """The comparable form of a DN: types and values lower-cased, no spaces around separators."""
    return ",".join(f"{attr}={value.casefold()}" for attr, value in split_dn(dn))


def dn_cn(dn: str) -> str | None:
    """``CN=Domain Admins,CN=Users,DC=x`` -> ``Domain Admins``; None when the first RDN is not a CN."""
    parts = split_dn(dn)
    if parts and parts[0][0] == "cn":
        return parts[0][1]
    return None


def dn_domain(dn: str) -> str | None:
    """The DNS domain of a DN's ``DC=`` parts (``...,DC=hospital,DC=example`` -> ``hospital.example``)."""
    labels = [value.lower() for attr, value in split_dn(dn) if attr == "dc"]
    return ".".join(labels) or None


def or_none(decode: Callable[[str], T], value: str) -> T | None:
    """``decode(value)``, or None where the value cannot be decoded (a DN from another entry's memberOf:
    the entry is still good, that one reference is just not usable)."""
    try:
        return decode(value)
    except AttributeValueError:
        return None
