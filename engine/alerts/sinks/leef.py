"""IBM QRadar LEEF 2.0 for one alert or case revision, and the parser that reads it back.

``LEEF:2.0|Wardwatch|Wardwatch|<version>|<event id>|x09|key=value<TAB>key=value...``

The attribute delimiter is a tab, declared in the header's delimiter field as ``x09`` (LEEF 2.0 allows a
hex form, which keeps the header printable). QRadar's predefined keys are used where they exist
(``devTime``/``devTimeFormat``, ``sev`` 1-10, ``usrName``, ``src``, ``cat``); the rest are custom keys that
a QRadar custom property can pick up.

LEEF defines no escaping, so we define the least that makes a line unambiguous, and the parser below
proves it for any text: in the header ``\\`` -> ``\\\\`` and ``|`` -> ``\\|``, CR/LF become a space; in values
``\\`` -> ``\\\\``, TAB -> ``\\t``, LF -> ``\\n``, CR -> ``\\r``. ``=`` needs no escape: a key ends at the first one.
"""

from __future__ import annotations

from datetime import datetime, timezone

from engine.alerts.sinks.cef import escape_header, split_header, unescape
from engine.alerts.sinks.siem_facts import Facts

VENDOR = PRODUCT = "Wardwatch"
DELIMITER = "\t"
DEV_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSX"  # Java SimpleDateFormat, what QRadar reads devTime with

_VALUE_ESCAPE = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_VALUE_UNESCAPE = {"\\": "\\", "t": "\t", "n": "\n", "r": "\r"}


def escape_value(text: str) -> str:
    return text.translate(_VALUE_ESCAPE)


def format_leef(facts: Facts, version: str) -> str:
    """One LEEF 2.0 line (no trailing newline) for ``facts``."""
    header = "|".join(["LEEF:2.0", *(escape_header(h) for h in (VENDOR, PRODUCT, version,
                                                                 facts.signature or "unknown")), "x09"])
    attrs = DELIMITER.join(f"{k}={escape_value(v)}" for k, v in attributes(facts))
    return f"{header}|{attrs}"


def attributes(facts: Facts) -> list[tuple[str, str]]:
    """(key, raw value) pairs in a stable order; absent facts are left out."""
    pairs: list[tuple[str, str | int | None]] = [
        ("devTime", _iso(facts.time_ms)), ("devTimeFormat", DEV_TIME_FORMAT if facts.time_ms is not None else None),
        ("sev", max(1, facts.severity)), ("cat", facts.record), ("usrName", facts.user), ("src", facts.source_ip),
        ("patientId", facts.patient), ("ruleId", facts.rule_id), ("ruleName", facts.name),
        ("alertId", facts.id), ("revision", facts.revision), ("evidenceTotal", facts.evidence_total),
        ("status", facts.status), ("assignee", facts.assignee),
    ]
    return [(k, str(v)) for k, v in pairs if v is not None]


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    dt = datetime.fromtimestamp(ms / 1000, tz=timezone.utc)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def parse_leef(line: str) -> tuple[list[str], dict[str, str]]:
    """(header fields ``["LEEF:2.0", vendor, product, version, event id, delimiter]``, attributes).

    Raises ``ValueError`` for a line that is not LEEF 2.0 with a tab delimiter.
    """
    fields, rest = split_header(line, 6)
    if fields[0] != "LEEF:2.0" or fields[5] not in ("x09", "0x09", "\t"):
        raise ValueError("not a LEEF 2.0 line with a tab delimiter")
    attrs: dict[str, str] = {}
    for item in line[rest:].split(DELIMITER) if line[rest:] else []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"LEEF attribute without '=': {key[:40]!r}")
        attrs[key] = unescape(value, _VALUE_UNESCAPE)
    return fields, attrs
