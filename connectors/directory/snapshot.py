"""The directory snapshot: every user and group as the last sync saw them, in one private file.

Why a file: the connector (which talks to the directory) and the identity enrichment (which runs on every
event, possibly in another process: ``wardwatch ingest`` vs the service) must not share memory, and the
enrichment must work with the directory down. The connector writes the file atomically (temp file + fsync +
rename, ``0600`` through :mod:`engine.private_files`: it maps staff logins to departments and groups); the
enrichment reloads it when it changes. An LDIF export can stand in for it (:func:`load_directory`).
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import orjson

from connectors.directory.attributes import AttributeValueError, normalise_dn
from connectors.directory.ldif_file import LdifProblem, read_ldif
from connectors.directory.model import (
    DirectoryGroup,
    DirectoryUser,
    group_from_entry,
    is_group,
    is_user_entry,
    user_from_entry,
)
from engine.private_files import create_private_fd, private_dir

SNAPSHOT_FORMAT = "wardwatch-directory-snapshot"
SNAPSHOT_VERSION = 2  # 2: users keyed by a hash of the DN (no names in the file)


@dataclass
class DirectorySnapshot:
    """Users keyed by :attr:`DirectoryUser.key`, groups by normalised DN. ``problems``: (line, reason) of
    LDIF records skipped."""

    users: dict[str, DirectoryUser] = field(default_factory=dict)
    groups: dict[str, DirectoryGroup] = field(default_factory=dict)
    #: users gone at the last full sync: (the user as last seen, when the delete was noticed)
    deleted: dict[str, tuple[DirectoryUser, str]] = field(default_factory=dict)
    source: str = ""
    synced_at: str | None = None
    problems: list[tuple[int, str]] = field(default_factory=list)

    def add_entry(self, dn: str, attrs: dict[str, Any], id_attributes: Iterable[str]) -> DirectoryUser | DirectoryGroup:
        """Decode one raw entry into the snapshot (a group or a user); :class:`AttributeValueError` if odd."""
        if is_group(attrs):
            group = group_from_entry(dn, attrs)
            self.groups[normalise_dn(dn)] = group
            return group
        user = user_from_entry(dn, attrs, id_attributes)
        self.users[user.key] = user
        return user

    def to_bytes(self) -> bytes:
        return orjson.dumps({
            "format": SNAPSHOT_FORMAT, "version": SNAPSHOT_VERSION, "source": self.source,
            "synced_at": self.synced_at,
            "users": [u.to_json() for u in self.users.values()],
            "groups": [{"dn": g.dn, "cn": g.cn, "member_of": list(g.member_of)} for g in self.groups.values()],
            "deleted": [{"user": u.to_json(), "noticed": noticed} for u, noticed in self.deleted.values()],
        })

    @classmethod
    def from_bytes(cls, data: bytes) -> "DirectorySnapshot":
        doc = orjson.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != SNAPSHOT_FORMAT:
            raise ValueError("not a Wardwatch directory snapshot")
        if doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError(f"directory snapshot version {doc.get('version')!r} "
                             f"(this Wardwatch reads {SNAPSHOT_VERSION})")
        snap = cls(source=doc.get("source") or "", synced_at=doc.get("synced_at"))
        for u in doc.get("users") or []:
            user = DirectoryUser.from_json(u)
            snap.users[user.key] = user
        for g in doc.get("groups") or []:
            snap.groups[normalise_dn(g["dn"])] = DirectoryGroup(g["dn"], g.get("cn"), tuple(g.get("member_of") or ()))
        for d in doc.get("deleted") or []:
            user = DirectoryUser.from_json(d["user"])
            snap.deleted[user.key] = (user, d["noticed"])
        return snap

    def save(self, path: str | os.PathLike[str]) -> None:
        """Atomically replace ``path`` (readers see the old or the new snapshot, never half of one)."""
        target = Path(path)
        private_dir(target.parent)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        try:
            out = create_private_fd(tmp, os.O_WRONLY | os.O_TRUNC)
            with os.fdopen(out, "wb") as fh:
                fh.write(self.to_bytes())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        try:  # the rename itself survives a power cut only once the directory is synced
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        except OSError:
            pass


def snapshot_from_ldif(path: str | os.PathLike[str],
                       id_attributes: Iterable[str] = ("employeeID",)) -> DirectorySnapshot:
    """An LDIF export as a snapshot; undecodable records are listed in ``problems`` with their line."""
    ids = tuple(id_attributes)
    snap = DirectorySnapshot(source=str(path))
    for record in read_ldif(path):
        if isinstance(record, LdifProblem):
            snap.problems.append((record.line, record.reason))
            continue
        if not (is_group(record.attrs) or is_user_entry(record.attrs)):
            continue  # OUs, containers, computers, contacts
        try:
            snap.add_entry(record.dn, record.attrs, ids)
        except AttributeValueError as exc:
            snap.problems.append((record.line, str(exc)))
    return snap


def load_directory(path: str | os.PathLike[str], id_attributes: Iterable[str] = ("employeeID",)) -> DirectorySnapshot:
    """A snapshot file (JSON, written by the connector) or an LDIF export, whichever ``path`` holds."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    if head.startswith(b"{"):
        return DirectorySnapshot.from_bytes(Path(path).read_bytes())
    return snapshot_from_ldif(path, id_attributes)
