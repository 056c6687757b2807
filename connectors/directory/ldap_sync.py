"""Reading users and groups from an LDAP server (Active Directory or OpenLDAP) with ``ldap3``.

* Transport: ``ldaps://`` (TLS from the first byte) or ``ldap://`` + StartTLS; the certificate is always
  verified (``ssl.CERT_REQUIRED``) against ``ca_file`` or the system CAs, and the host name is checked.
  Plain ``ldap://`` without StartTLS sends the bind password in clear text: refused unless the server is
  loopback or ``allow_insecure_ldap`` says the path is protected otherwise.
* Bind: simple bind with a DN (or ``user@domain``) and a password read from a file or an environment
  variable, never from the YAML; or anonymous.
* Search: RFC 2696 paged results (``paged_size`` entries per round trip), so a directory larger than the
  server's size limit (AD: 1,000; our test slapd: 500) is read completely.
* Incremental: ``(uSNChanged>=N+1)`` on AD (every change bumps the DC-local USN), or
  ``(whenChanged>=T)`` / ``(modifyTimestamp>=T)`` on directories without USNs.

Foreign exceptions stop here: an unreachable server is :class:`DirectoryUnavailable` (retry later), a
refused certificate or bind is :class:`DirectoryRefused` (fix the config); both carry one line naming the URL.
"""

from __future__ import annotations

import ipaddress
import math
import ssl
from dataclasses import dataclass
from typing import Any, Iterator, Literal
from urllib.parse import urlsplit

from connectors.directory.attributes import format_generalized
from connectors.directory.model import GROUP_ATTRIBUTES, USER_ATTRIBUTES, lower_keys

ChangeAttribute = Literal["uSNChanged", "whenChanged", "modifyTimestamp"]


class DirectoryError(Exception):
    """Base: one line, naming the URL; never the password."""


class DirectoryUnavailable(DirectoryError):
    """The server could not be reached or dropped the connection: try again next poll."""


class DirectoryRefused(DirectoryError):
    """TLS verification or the bind failed, or the search was rejected: retrying will not help."""


@dataclass(frozen=True)
class LdapEndpoint:
    url: str
    starttls: bool = False
    ca_file: str | None = None
    bind_dn: str | None = None
    password: str | None = None
    timeout: float = 10.0
    allow_insecure_ldap: bool = False

    @property
    def parts(self) -> tuple[str, int, bool]:
        """(host, port, use_ssl) from the URL; ValueError naming what is wrong."""
        split = urlsplit(self.url)
        if split.scheme not in ("ldap", "ldaps") or not split.hostname:
            raise ValueError(f"{self.url!r} is not an ldap:// or ldaps:// URL with a host")
        use_ssl = split.scheme == "ldaps"
        return split.hostname, split.port or (636 if use_ssl else 389), use_ssl


def insecure_transport(endpoint: LdapEndpoint) -> bool:
    """Plain LDAP to a host that is not loopback, with a password: the password would cross the network."""
    host, _port, use_ssl = endpoint.parts
    if use_ssl or endpoint.starttls or not endpoint.password or endpoint.allow_insecure_ldap:
        return False
    if host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


class LdapReader:
    """One connection to the directory; :meth:`entries` streams (dn, lower-cased raw attributes)."""

    def __init__(self, endpoint: LdapEndpoint, *, paged_size: int = 500):
        self.endpoint = endpoint
        self.paged_size = paged_size
        self.conn: Any = None
        self.pages = 0

    def __enter__(self) -> "LdapReader":
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def open(self) -> None:
        import ldap3
        from ldap3.core import exceptions as lexc

        ep = self.endpoint
        host, port, use_ssl = ep.parts
        tls = ldap3.Tls(validate=ssl.CERT_REQUIRED, ca_certs_file=ep.ca_file, version=ssl.PROTOCOL_TLS_CLIENT)
        server = ldap3.Server(host, port=port, use_ssl=use_ssl, tls=tls, get_info=ldap3.NONE,
                              connect_timeout=ep.timeout)
        conn = ldap3.Connection(server, user=ep.bind_dn, password=ep.password,
                                receive_timeout=max(1, math.ceil(ep.timeout)),  # ldap3 packs it as an int
                                authentication=ldap3.SIMPLE if ep.bind_dn else ldap3.ANONYMOUS,
                                read_only=True, raise_exceptions=False)
        try:
            conn.open()
            if ep.starttls and not use_ssl:
                if not conn.start_tls():
                    raise DirectoryRefused(f"{ep.url}: StartTLS refused by the server ({_result(conn)})")
            if not conn.bind():
                raise DirectoryRefused(f"{ep.url}: bind as {ep.bind_dn or 'anonymous'} refused ({_result(conn)})")
        except DirectoryError:
            _quiet_unbind(conn)
            raise
        except lexc.LDAPException as exc:
            _quiet_unbind(conn)
            raise translate(ep.url, exc, ep.ca_file) from None
        self.conn = conn

    def close(self) -> None:
        if self.conn is not None:
            _quiet_unbind(self.conn)
            self.conn = None

    def entries(self, base_dn: str, search_filter: str,
                attributes: tuple[str, ...]) -> Iterator[tuple[str, dict[str, list[Any]]]]:
        """Every entry under ``base_dn`` matching ``search_filter``, page by page (RFC 2696)."""
        from ldap3 import SUBTREE
        from ldap3.core import exceptions as lexc

        conn = self.conn
        cookie: Any = None
        while True:
            try:
                ok = conn.search(base_dn, search_filter, search_scope=SUBTREE, attributes=list(attributes),
                                 paged_size=self.paged_size, paged_cookie=cookie)
            except lexc.LDAPException as exc:
                raise translate(self.endpoint.url, exc, self.endpoint.ca_file) from None
            self.pages += 1
            if not ok and conn.result.get("result") not in (0, None):
                raise DirectoryRefused(f"{self.endpoint.url}: search under {base_dn} failed ({_result(conn)})")
            for item in conn.response or ():
                if item.get("type") != "searchResEntry":
                    continue
                yield item["dn"], lower_keys({k: [_text(v) for v in vs] for k, vs in item["raw_attributes"].items()})
            controls = (conn.result.get("controls") or {}).get("1.2.840.113556.1.4.319") or {}
            cookie = (controls.get("value") or {}).get("cookie")
            if not cookie:
                return


def _text(value: bytes) -> str | bytes:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return value  # binary (objectSid, a photo): kept as bytes, as the LDIF path does


def change_filter(attribute: ChangeAttribute, mark: int | str | None) -> str | None:
    """The incremental clause: entries changed after ``mark`` (a USN or a GeneralizedTime), or None."""
    if mark is None:
        return None
    if attribute == "uSNChanged":
        return f"(uSNChanged>={int(mark) + 1})"
    return f"({attribute}>={mark})"


def and_filter(*clauses: str | None) -> str:
    parts = [c for c in clauses if c]
    return parts[0] if len(parts) == 1 else "(&" + "".join(parts) + ")"


def user_attributes(change_attribute: ChangeAttribute, extra: tuple[str, ...]) -> tuple[str, ...]:
    names = list(USER_ATTRIBUTES)
    for name in (change_attribute, *extra):
        if name not in names:
            names.append(name)
    return tuple(names)


def group_attributes(change_attribute: ChangeAttribute) -> tuple[str, ...]:
    return GROUP_ATTRIBUTES if change_attribute in GROUP_ATTRIBUTES else (*GROUP_ATTRIBUTES, change_attribute)


def _result(conn: Any) -> str:
    result = conn.result or {}
    description = result.get("description") or "error"
    message = (result.get("message") or "").strip()
    return f"{description}: {message}"[:200] if message else str(description)


def _quiet_unbind(conn: Any) -> None:
    try:
        conn.unbind()
    except Exception:  # noqa: BLE001 - closing a broken connection must not hide why it broke
        pass


def translate(url: str, exc: Exception, ca_file: str | None) -> DirectoryError:
    """ldap3's exceptions -> ours, one line. TLS trust problems are refusals (a retry gives the same answer)."""
    from ldap3.core import exceptions as lexc

    text = str(exc)
    lowered = text.lower()
    if isinstance(exc, lexc.LDAPCertificateError) or ("doesn't match any name" in lowered):
        return DirectoryRefused(f"{url}: TLS certificate does not name this host")
    if "certificate verify failed" in lowered or "certificate_verify_failed" in lowered:
        trust = f"ca_file {ca_file}" if ca_file else "the system CAs"
        return DirectoryRefused(f"{url}: TLS certificate not trusted by {trust} (certificate verify failed)")
    if isinstance(exc, lexc.LDAPStartTLSError) or "ssl" in lowered or "tls" in lowered:
        return DirectoryRefused(f"{url}: TLS failed ({text.splitlines()[0][:160] if text else type(exc).__name__})")
    if isinstance(exc, (lexc.LDAPInvalidCredentialsResult, lexc.LDAPBindError)):
        return DirectoryRefused(f"{url}: bind refused (invalid credentials)")
    if isinstance(exc, lexc.LDAPInvalidFilterError):
        return DirectoryRefused(f"{url}: invalid search filter ({text[:160]})")
    if isinstance(exc, (lexc.LDAPSocketOpenError, lexc.LDAPSocketReceiveError, lexc.LDAPSocketSendError,
                        lexc.LDAPSessionTerminatedByServerError, lexc.LDAPCommunicationError)):
        return DirectoryUnavailable(f"{url}: server unreachable ({_short(text)})")
    return DirectoryUnavailable(f"{url}: {type(exc).__name__} ({_short(text)})")


def _short(text: str) -> str:
    """ldap3 wraps socket errors in lists and tuples; keep the innermost sentence."""
    line = text.splitlines()[0] if text else "no detail"
    for marker in ("[Errno", "timed out"):
        i = line.find(marker)
        if i >= 0:
            end = line.find("]", i + 6) if marker == "[Errno" else -1
            tail = line[i:].split("'")[0].split(")")[0]
            return tail.strip(" ,(") if end < 0 else tail.strip(" ,(")
    return line[:160]


__all__ = [
    "DirectoryError", "DirectoryRefused", "DirectoryUnavailable", "LdapEndpoint", "LdapReader", "and_filter",
    "change_filter", "format_generalized", "group_attributes", "insecure_transport", "user_attributes",
]
