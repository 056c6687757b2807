"""Reading a directory export in LDIF (RFC 2849): ``ldifde -f users.ldif`` or ``ldapsearch -LLL``.

Parsing is the maintained ``ldif`` package (python-ldap's LDIF module, split out): folding, base64 (``::``)
values, comments. We split the file into records ourselves first, only so each record keeps its line number
and one broken record becomes one :class:`LdifProblem` instead of ending the whole file (``ldif``'s parser
stops at the first error). Decoding attribute values is :mod:`connectors.directory.model`'s job.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Iterator

import ldif

from connectors.directory.model import lower_keys


@dataclass(frozen=True)
class LdifEntry:
    dn: str
    attrs: dict[str, list[Any]]  # attribute names lower-cased; values str (UTF-8) or bytes (binary)
    line: int  # first line of the record


@dataclass(frozen=True)
class LdifProblem:
    line: int
    reason: str


def _records(stream: BinaryIO) -> Iterator[tuple[int, bytes]]:
    """(first line number, record bytes) per blank-line separated record; comment-only records dropped."""
    start, lines = 0, []
    for number, raw in enumerate(stream, start=1):
        if raw.strip(b"\r\n") == b"" and not raw.startswith(b" "):
            if lines:
                yield start, b"".join(lines)
            lines = []
            continue
        if not lines:
            start = number
        lines.append(raw if raw.endswith(b"\n") else raw + b"\n")
    if lines:
        yield start, b"".join(lines)


def _parse_record(data: bytes) -> tuple[str | None, dict[str, list[Any]]]:
    parser = ldif.LDIFParser(io.BytesIO(data.replace(b"\r\n", b"\n")), strict=True)
    records = list(parser.parse())
    if not records:
        return None, {}
    if len(records) != 1:  # cannot happen: the record has no blank line
        raise ValueError("several records in one block")
    return records[0]


def iter_ldif(stream: BinaryIO) -> Iterator[LdifEntry | LdifProblem]:
    """Every record of an LDIF stream, in order: entries, or a problem naming the record's line."""
    for line, data in _records(stream):
        if all(ln.startswith(b"#") or ln.strip() == b"" for ln in data.splitlines()):
            continue  # comments only
        try:
            dn, entry = _parse_record(data)
        except (ValueError, UnicodeDecodeError) as exc:  # binascii.Error is a ValueError too
            yield LdifProblem(line, f"not an LDIF record ({type(exc).__name__}: {str(exc)[:120]})")
            continue
        if dn is None and not entry:
            if data.lstrip().lower().startswith(b"version:"):
                continue  # a lone "version: 1" header record
            yield LdifProblem(line, "not an LDIF record (no dn: line)")
            continue
        if dn is None:
            yield LdifProblem(line, "record does not start with dn:")
            continue
        attrs = lower_keys(entry)
        changetype = attrs.pop("changetype", None)
        if changetype and str(changetype[0]).lower() != "add":
            yield LdifProblem(line, f"change record ({changetype[0]}), not an export entry")
            continue
        yield LdifEntry(dn=dn, attrs=attrs, line=line)


def read_ldif(path: str | Path) -> Iterator[LdifEntry | LdifProblem]:
    with open(path, "rb") as fh:
        yield from iter_ldif(fh)
