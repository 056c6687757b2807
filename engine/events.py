"""The event model every module agrees on.

An event is a *flat* ``dict`` whose keys are dotted ECS field names (``"user.name"``, ``"@timestamp"``) or,
for Windows data, the flat field names the upstream SigmaHQ rules expect (``"EventID"``,
``"TargetUserName"``). Flat keys keep Sigma field look-ups a single dict access and map one-to-one onto
SQLite columns and Elasticsearch dotted fields. Values are ``str``, ``int``, ``float``, ``bool``, ``None``
or a list of those.

Every event carries ``@timestamp`` (event time, ISO 8601 UTC with milliseconds and ``Z``),
``event.dataset`` and ``event.id``. ``event.ingested`` is set by the store when it commits the event.
Field documentation for analysts lives in ``docs/schema.md``.
"""

from __future__ import annotations

import hashlib
import re
from datetime import datetime, timedelta, timezone
from typing import Any, Callable, Iterable, Mapping

Event = dict[str, Any]

TIMESTAMP = "@timestamp"
DATASET = "event.dataset"
EVENT_ID = "event.id"
INGESTED = "event.ingested"
ORIGINAL = "event.original"

_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
#: The canonical form, years 1000-9999 (``strftime("%Y")`` does not zero-pad smaller years on glibc, so
#: those are left to the general path). ASCII digits only: ``\d`` would also match other scripts' digits.
CANONICAL_TIMESTAMP = re.compile(r"[1-9][0-9]{3}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z\Z")


def make_event_id(source_identity: str, raw: bytes | str, *, cached: bool = True) -> str:
    """A deterministic id: the same record read twice from the same source gets the same id.

    That is what makes a replay (after a crash, a rotated file re-read, a re-sent syslog message) land on
    the existing copy instead of making a second one.
    """
    if isinstance(raw, str):
        raw = raw.encode("utf-8", "surrogatepass")
    # Called once per event, with few distinct identities (a file's ``fhir:``, ``windows``...): the hash
    # state after the identity prefix is kept and copied, the same digest for less work.
    prefix = _ID_PREFIXES.get(source_identity) if cached else None
    if prefix is None:
        prefix = hashlib.blake2b(digest_size=16)
        prefix.update(source_identity.encode("utf-8"))
        prefix.update(b"\x00")
        if not cached:  # a one-off identity (``record@line:N``): caching it would only churn the cache
            prefix.update(raw)
            return prefix.hexdigest()
        if len(_ID_PREFIXES) >= 1024:
            _ID_PREFIXES.clear()
        _ID_PREFIXES[source_identity] = prefix
    digest = prefix.copy()
    digest.update(raw)
    return digest.hexdigest()


_ID_PREFIXES: dict[str, Any] = {}


def parse_timestamp(value: Any) -> datetime:
    """Parse an ISO 8601 string (``Z`` or offset; naive means UTC) or epoch seconds/milliseconds.

    Raises ``ValueError`` with the offending value, so callers can dead-letter with a clear reason.
    """
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        seconds = value / 1000.0 if abs(value) > 1e11 else float(value)
        dt = datetime.fromtimestamp(seconds, tz=timezone.utc)
    elif isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            dt = datetime.fromisoformat(text)
        except ValueError:
            raise ValueError(f"not an ISO 8601 timestamp: {value!r}") from None
    else:
        raise ValueError(f"not a timestamp: {value!r}")
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=timezone.utc)
    return dt.astimezone(timezone.utc)


def format_timestamp(dt: datetime) -> str:
    """The one canonical text form: UTC, millisecond precision, ``Z``. Sorts lexically == chronologically."""
    dt = dt.astimezone(timezone.utc)
    if dt.year >= 1000:  # an f-string is ~3x cheaper than strftime and gives the same text for these years
        return (f"{dt.year}-{dt.month:02d}-{dt.day:02d}T{dt.hour:02d}:{dt.minute:02d}:{dt.second:02d}."
                f"{dt.microsecond // 1000:03d}Z")
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{dt.microsecond // 1000:03d}Z"


def normalise_timestamp(value: Any) -> str:
    """``format_timestamp(parse_timestamp(value))``. A value already in the canonical form (most sources'
    own output, and every re-read) is only validated, not re-formatted: ingest calls this once per event."""
    if type(value) is str and len(value) == 24 and CANONICAL_TIMESTAMP.match(value):
        try:
            datetime.fromisoformat(value[:-1])  # range check: month 13, Feb 30, hour 24...
            return value
        except ValueError:
            pass  # the general path raises its own, documented error
    return format_timestamp(parse_timestamp(value))


def timestamp_ms(value: str | datetime) -> int:
    """Milliseconds since the epoch, the unit correlation windows are computed in.

    Called for every matched event: a canonical timestamp reuses the parsed minute it starts with.
    """
    if type(value) is str and len(value) == 24 and CANONICAL_TIMESTAMP.match(value):
        return _canonical_ms(value)
    return (parse_timestamp(value) - _EPOCH) // timedelta(milliseconds=1)


def _canonical_ms(value: str) -> int:
    """``timestamp_ms`` of a stamp already matched against ``CANONICAL_TIMESTAMP``: the minute it starts
    with is parsed once and kept."""
    minute = _MINUTE_MS.get(value[:16])
    if minute is None:
        if len(_MINUTE_MS) > 100_000:
            _MINUTE_MS.clear()
        minute = _MINUTE_MS[value[:16]] = timestamp_ms(parse_timestamp(value[:16] + ":00Z"))
    return minute + int(value[17:19]) * 1000 + int(value[20:23])


_MINUTE_MS: dict[str, int] = {}


def timestamp_clock(*, canonical_only: bool = False) -> Callable[[Any], Any]:
    """``timestamp_ms`` for a stream of events whose stamps mostly repeat their minute: one scan's events
    (a store returns them in time order), one ingest batch's accesses.

    Why: ``timestamp_ms`` matches the whole canonical pattern for every value. The clock keeps the last
    ``YYYY-MM-DDTHH:MM:`` it validated (with the pattern, on ``head + "00.000Z"``) and its milliseconds;
    a stamp of the same minute only has its second and millisecond digits checked (ASCII, as the pattern's
    ``[0-9]``), its ``.`` and its ``Z``. A canonical stamp is the concatenation of a canonical head and such
    a tail, so the result is ``timestamp_ms``'s; anything else goes to ``timestamp_ms`` itself. The last
    minute is one tuple, replaced in one assignment: threads sharing a clock (the service's connectors
    share one enrichment chain) never see one minute's head with another's milliseconds.

    ``canonical_only``: None for a stamp that is not canonical, instead of ``timestamp_ms``'s answer (a
    caller with its own path for other forms, e.g. the privacy enricher's local dates).
    """
    last = ("", 0)
    other: Callable[[Any], Any] = _not_canonical if canonical_only else timestamp_ms

    def ms(stamp: Any) -> int:
        nonlocal last
        if stamp.__class__ is str and len(stamp) == 24 and stamp[19] == "." and stamp[23] == "Z":
            tail = stamp[17:19] + stamp[20:23]  # "SSmmm": as a number, seconds x 1000 + milliseconds
            if tail.isdigit() and tail.isascii():
                head, base = last
                if stamp[:17] != head:
                    start = stamp[:17] + "00.000Z"
                    if not CANONICAL_TIMESTAMP.match(start):
                        return other(stamp)
                    base = _canonical_ms(start)
                    last = (stamp[:17], base)
                return base + int(tail)
        return other(stamp)
    return ms


def _not_canonical(_stamp: Any) -> None:
    return None


def from_timestamp_ms(ms: int) -> datetime:
    return _EPOCH + timedelta(milliseconds=ms)


def flatten(document: Mapping[str, Any], prefix: str = "") -> Event:
    """Turn nested JSON objects into dotted keys. Lists are kept as values, as ECS keeps them.

    Ingest calls this once per event: exact type tests first (what ``orjson.loads`` returns), the slow ABC
    ``isinstance(…, Mapping)`` check only for other types, and one output dict is filled in place.
    """
    flat: Event = {}
    _flatten_into(flat, document, prefix)
    return flat


_PLAIN = frozenset({str, int, float, bool, type(None), list})


def _flatten_into(out: Event, document: Mapping[str, Any], prefix: str) -> None:
    for key, value in document.items():
        kind = type(value)
        if kind is dict or (kind not in _PLAIN and isinstance(value, Mapping)):
            if value:
                _flatten_into(out, value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = None
        else:
            out[f"{prefix}{key}"] = value


def unflatten(event: Mapping[str, Any]) -> dict[str, Any]:
    """Nest dotted keys again, for output formats that want ECS objects. Conflicts keep the flat key."""
    nested: dict[str, Any] = {}
    for key, value in event.items():
        parts = key.split(".") if not key.startswith("@") else [key]
        node = nested
        for part in parts[:-1]:
            child = node.get(part)
            if not isinstance(child, dict):
                if child is not None:
                    node = None  # type: ignore[assignment]
                    break
                child = node[part] = {}
            node = child
        if node is None:
            nested[key] = value
        else:
            node[parts[-1]] = value
    return nested


def iter_string_values(event: Mapping[str, Any]) -> Iterable[str]:
    """Every string value of an event (list members included): what Sigma keyword searches look at."""
    for value in event.values():
        if isinstance(value, str):
            yield value
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, str):
                    yield item


def split_login(name: str) -> tuple[str, str | None]:
    """``DOMAIN\\name`` -> (name, domain); ``name@domain`` -> (name, domain); both lower-cased.

    How every module compares account names: the directory index looks logins up with it, the identity
    enrichment reads the domain, and cases key a user by it (``engine/alerts/cases.py``)."""
    text = name.strip().lower()
    if "\\" in text:
        domain, _, user = text.partition("\\")
        return user, domain or None
    if "@" in text:
        user, _, domain = text.rpartition("@")
        return user, domain or None
    return text, None
