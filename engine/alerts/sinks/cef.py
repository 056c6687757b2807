"""ArcSight CEF:0 for one alert or case revision, and the parser that reads it back.

``CEF:0|Wardwatch|Wardwatch|<version>|<rule id>|<title>|<severity 0-10>|<extension>``

Escaping differs between the two halves (ArcSight "Implementing ArcSight CEF", rev. 25):

* header fields: ``\\`` -> ``\\\\`` and ``|`` -> ``\\|``; a header cannot carry a line break, so CR/LF become
  a space (a title with a newline is a rule author's slip, not data worth breaking a SIEM's parser over);
* extension values: ``\\`` -> ``\\\\``, ``=`` -> ``\\=``, LF -> ``\\n``, CR -> ``\\r``; ``|`` stays as it is.

Why a parser here: the property tests prove the escaping by reading back what was written, for any text.
Keys are the standard CEF dictionary names (``suser``, ``src``, ``rt``, ``cnt``, ``msg``, ``externalId``) so
ArcSight, QRadar and Splunk's CEF add-on map them without a custom parser; what has no standard key goes
into labelled custom strings (``cs1``/``cs1Label`` = rule id, ...).
"""

from __future__ import annotations

import re

from engine.alerts.sinks.siem_facts import Facts

VENDOR = PRODUCT = "Wardwatch"

_HEADER_ESCAPE = str.maketrans({"\\": "\\\\", "|": "\\|", "\r": " ", "\n": " "})
_EXT_ESCAPE = str.maketrans({"\\": "\\\\", "=": "\\=", "\n": "\\n", "\r": "\\r"})
_EXT_UNESCAPE = {"\\": "\\", "=": "=", "n": "\n", "r": "\r"}
#: a key starts after a space (or at the start) and ends at an unescaped '='
_KEY = re.compile(r"(?:^| )([A-Za-z0-9_.\[\]]+)=")


def escape_header(text: str) -> str:
    return text.translate(_HEADER_ESCAPE)


def escape_extension(text: str) -> str:
    return text.translate(_EXT_ESCAPE)


def format_cef(facts: Facts, version: str) -> str:
    """One CEF line (no trailing newline) for ``facts``."""
    header = ["CEF:0", VENDOR, PRODUCT, version, facts.signature or "unknown", facts.name, str(facts.severity)]
    ext = " ".join(f"{k}={escape_extension(v)}" for k, v in extension(facts))
    return "|".join([header[0], *(escape_header(h) for h in header[1:])]) + "|" + ext


def extension(facts: Facts) -> list[tuple[str, str]]:
    """(key, raw value) pairs in a stable order; absent facts are left out, never written as empty."""
    pairs: list[tuple[str, str | int | None]] = [
        ("rt", facts.time_ms), ("start", facts.start_ms), ("end", facts.end_ms),
        ("suser", facts.user), ("src", facts.source_ip), ("duid", facts.patient),
        ("cnt", facts.evidence_total), ("msg", facts.name), ("externalId", facts.id),
        ("cat", facts.record), ("cn1Label", "revision"), ("cn1", facts.revision),
        ("cs1Label", "ruleId"), ("cs1", facts.rule_id), ("cs2Label", "status"), ("cs2", facts.status),
        ("cs3Label", "assignee"), ("cs3", facts.assignee),
    ]
    out = [(k, str(v)) for k, v in pairs if v is not None]
    # a label without its value means nothing to a SIEM: drop labels whose value is absent
    present = {k for k, _ in out}
    return [(k, v) for k, v in out if not k.endswith("Label") or k[: -len("Label")] in present]


def parse_cef(line: str) -> tuple[list[str], dict[str, str]]:
    """(``["CEF:0", vendor, product, version, signature, name, severity]`` unescaped, the extension).

    Raises ``ValueError`` for a line that is not CEF.
    """
    fields, rest = split_header(line, 7)
    if not fields[0].startswith("CEF:"):
        raise ValueError("not a CEF line: no CEF: prefix")
    return fields, parse_extension(line[rest:])


def split_header(line: str, count: int) -> tuple[list[str], int]:
    """The first ``count`` ``|``-terminated header fields (``\\|`` and ``\\\\`` unescaped) and where the
    rest of the line starts. Shared by the CEF and LEEF parsers: both escape their headers alike."""
    fields: list[str] = []
    current: list[str] = []
    i = 0
    while len(fields) < count:
        if i >= len(line):
            raise ValueError(f"not a CEF/LEEF line: fewer than {count + 1} '|'-separated parts")
        c = line[i]
        if c == "\\" and i + 1 < len(line) and line[i + 1] in "\\|":
            current.append(line[i + 1])
            i += 2
            continue
        if c == "|":
            fields.append("".join(current))
            current = []
        else:
            current.append(c)
        i += 1
    return fields, i


def parse_extension(text: str) -> dict[str, str]:
    """``k=v k2=v2`` with escaped values -> dict. A value runs up to the space before the next key."""
    keys = [m for m in _KEY.finditer(text) if not _escaped(text, m.end() - 1)]
    out: dict[str, str] = {}
    for n, match in enumerate(keys):
        end = keys[n + 1].start() if n + 1 < len(keys) else len(text)
        out[match.group(1)] = unescape(text[match.end():end])
    return out


def _escaped(text: str, pos: int) -> bool:
    """True when the character at ``pos`` is preceded by an odd number of backslashes."""
    count = 0
    while pos - 1 - count >= 0 and text[pos - 1 - count] == "\\":
        count += 1
    return count % 2 == 1


def unescape(value: str, table: dict[str, str] = _EXT_UNESCAPE) -> str:
    """Undo a backslash escaping: ``\\x`` -> ``table[x]``; a backslash before anything else stays."""
    out: list[str] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c == "\\" and i + 1 < len(value) and value[i + 1] in table:
            out.append(table[value[i + 1]])
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)
