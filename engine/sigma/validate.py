"""Checks on the raw YAML document, before pySigma sees it, so each problem names its exact key and line.

pySigma reports many of these too, but without saying which key of which selection is at fault.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, Iterator, Mapping, Sequence

from sigma.modifiers import SigmaWideModifier, modifier_mapping

# The Sigma specification names UTF-16LE encoding `utf16le` (alias of `wide`); pySigma 1.5 only knows
# `wide`. Registering the alias lets SigmaHQ rules that use it load.
modifier_mapping.setdefault("utf16le", SigmaWideModifier)

LEVELS = ("informational", "low", "medium", "high", "critical")
STATUSES = ("stable", "test", "experimental", "deprecated", "unsupported")
_PLACEHOLDER = re.compile(r"%([A-Za-z0-9_.\-]+)%")


def check_meta(doc: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """(key, message) for title, id, level and status problems; shared by rules and correlations."""
    title = doc.get("title")
    if not isinstance(title, str) or not title.strip():
        yield "title", "missing or empty title"
    rule_id = doc.get("id")
    if rule_id is None:
        yield "id", "missing id (a UUID is required)"
    else:
        try:
            uuid.UUID(str(rule_id))
        except ValueError:
            yield "id", f"'{rule_id}' is not a UUID"
    if "level" in doc and doc["level"] not in LEVELS:
        yield "level", f"unknown level '{doc['level']}' (one of {', '.join(LEVELS)})"
    if "status" in doc and doc["status"] not in STATUSES:
        yield "status", f"unknown status '{doc['status']}' (one of {', '.join(STATUSES)})"
    name = doc.get("name")
    if name is not None and not isinstance(name, str):
        yield "name", "name must be a string"


def _flags(mods: Sequence[str]) -> int:
    flags = 0
    for m in mods:
        if m in ("i", "ignorecase"):
            flags |= re.IGNORECASE
        elif m in ("m", "multiline"):
            flags |= re.MULTILINE
        elif m in ("s", "dotall"):
            flags |= re.DOTALL
    return flags


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def check_detection(
    detection: Any, placeholders: Mapping[str, Sequence[str]]
) -> Iterator[tuple[str, str]]:
    """Unknown modifiers, invalid regexes and unconfigured ``|expand`` placeholders, by key."""
    if not isinstance(detection, Mapping):
        yield "detection", "detection must be a mapping"
        return
    if "condition" not in detection:
        yield "detection.condition", "missing condition"
    for name, definition in detection.items():
        if name == "condition":
            continue
        maps = [d for d in _as_list(definition) if isinstance(d, Mapping)]
        for mapping in maps:
            for key, value in mapping.items():
                yield from _check_key(f"detection.{name}.{key}", str(key), value, placeholders)


def _check_key(path: str, key: str, value: Any,
               placeholders: Mapping[str, Sequence[str]]) -> Iterator[tuple[str, str]]:
    _, *mods = key.split("|")
    for mod in mods:
        if mod not in modifier_mapping:
            yield path, f"unknown modifier '{mod}'"
            return
    if "re" in mods:
        for v in _as_list(value):
            try:
                re.compile(str(v), _flags(mods))
            except re.error as e:
                yield path, f"invalid regular expression {v!r}: {e}"
    if "expand" in mods:
        for v in _as_list(value):
            for name in _PLACEHOLDER.findall(str(v)):
                if name not in placeholders:
                    yield path, f"placeholder '%{name}%' is not configured"
