"""Lookups over a directory snapshot: which directory user a logged name is, and their group closure.

One person logs in as ``HOSPITAL\\jdoe`` (Windows), ``jdoe@hospital.example`` (VPN) and ``u0042`` (EHR).
:meth:`DirectoryIndex.by_login` answers the first two from sAMAccountName and the local part of
userPrincipalName / mail; :meth:`DirectoryIndex.by_id` answers the third from a configured identifier
attribute (``employeeID`` by default). Ambiguous local parts (two users whose mail starts ``jdoe@``) are
dropped rather than guessed: a wrong identity joins the wrong person's events.
"""

from __future__ import annotations

from typing import Iterable

from connectors.directory.attributes import dn_cn, normalise_dn, or_none
from connectors.directory.model import DirectoryUser
from connectors.directory.snapshot import DirectorySnapshot
from engine.events import split_login


class DirectoryIndex:
    def __init__(self, snapshot: DirectorySnapshot, id_attribute: str = "employeeID"):
        self.snapshot = snapshot
        self.id_attribute = id_attribute.lower()
        self._login: dict[str, DirectoryUser] = {}
        self._ids: dict[str, DirectoryUser] = {}
        ambiguous: set[str] = set()
        # sAMAccountName wins over a UPN/mail local part of someone else.
        identities = set()
        for user in snapshot.users.values():
            self._login[user.identity] = user
            identities.add(user.identity)
        for user in snapshot.users.values():
            for address in (user.upn, user.mail):
                if not address:
                    continue
                self._login.setdefault(address, user)
                local = address.rpartition("@")[0]
                if not local or local in identities:
                    continue
                other = self._login.get(local)
                if other is not None and other is not user:
                    ambiguous.add(local)
                self._login.setdefault(local, user)
            value = user.ids.get(self.id_attribute)
            if value:
                self._ids[value.casefold()] = user
        for local in ambiguous:
            self._login.pop(local, None)
        self._closure: dict[str, frozenset[str]] = {}

    def __len__(self) -> int:
        return len(self.snapshot.users)

    def by_login(self, name: str) -> DirectoryUser | None:
        """A logged user name in any of its spellings; computer accounts (``WS01$``) never match."""
        if not name:
            return None
        full = name.strip().lower()
        local, _domain = split_login(full)
        if not local or local.endswith("$"):  # WS01$, WS01$@HOSPITAL.EXAMPLE (Kerberos), HOSPITAL\WS01$
            return None
        return self._login.get(full) or self._login.get(local)

    def by_id(self, value: str) -> DirectoryUser | None:
        return self._ids.get(value.strip().casefold()) if value else None

    def groups_of(self, user: DirectoryUser) -> frozenset[str]:
        """Every group DN (normalised) the user is in, directly or through nested groups (cycles are fine)."""
        key = user.key
        cached = self._closure.get(key)
        if cached is not None:
            return cached
        seen: set[str] = set()
        todo = [or_none(normalise_dn, dn) for dn in user.member_of]
        while todo:
            dn = todo.pop()
            if not dn or dn in seen:
                continue
            seen.add(dn)
            group = self.snapshot.groups.get(dn)
            if group is not None:
                todo.extend(or_none(normalise_dn, parent) for parent in group.member_of)
        result = frozenset(seen)
        self._closure[key] = result
        return result

    def group_names(self, dns: Iterable[str]) -> set[str]:
        """CNs (case-folded) of group DNs, for matching ``privileged_groups: [Domain Admins]``."""
        names = set()
        for dn in dns:
            group = self.snapshot.groups.get(dn)
            cn = group.cn if group is not None and group.cn else or_none(dn_cn, dn)
            if cn:
                names.add(cn.casefold())
        return names
