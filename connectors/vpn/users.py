"""One person, three spellings: ``jdoe``, ``HOSPITAL\\jdoe``, ``jdoe@hospital.example``.

Why here: every VPN vendor logs the name the user typed, so the same person would be three users to a
Sigma correlation. ECS splits it into ``user.name`` and ``user.domain``; we do that once for every vendor,
so rules (and later the directory join) can group on ``user.name``.
"""

from __future__ import annotations

from typing import Any


def split_user(raw: str | None, default_domain: str | None = None) -> dict[str, Any]:
    """``user.name``/``user.domain`` (and the untouched ``vpn.user.original``) from a logged user name.

    ``DOMAIN\\name`` and ``name@domain`` both give the bare name; the domain is kept lower-cased as ECS
    does not prescribe a case and the two spellings of one domain (``HOSPITAL`` vs ``hospital.example``)
    must at least compare equal in case. Empty names and placeholders vendors log for "no user yet"
    (``""``, ``"-"``, ``"(null)"``, ``"UNKNOWN"``) give no user fields.
    """
    if raw is None:
        return {}
    text = raw.strip().strip('"')
    if not text or text in ("-", "(null)", "UNKNOWN", "unknown", "*****"):
        return {}
    fields: dict[str, Any] = {"vpn.user.original": text}
    domain: str | None = None
    if "\\" in text:
        domain, _, name = text.partition("\\")
    elif "@" in text:
        name, _, domain = text.rpartition("@")
    else:
        name = text
    name = name.strip()
    if not name:
        return {}
    fields["user.name"] = name.lower()
    domain = (domain or default_domain or "").strip().lower()
    if domain:
        fields["user.domain"] = domain
    return fields
