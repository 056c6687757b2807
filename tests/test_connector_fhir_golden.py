"""Golden output of the FHIR AuditEvent mapping (and the time-context enrichment) on the EHR fixture.

Why: ``auditevent_to_event`` is tuned for speed (ingest target: 25k events/s/core) and its output is a field
contract (docs/schema.md). Every line of ``fixtures/ehr/auditevents.ndjson`` must map to exactly the event it
mapped to before the tuning: same keys in the same order, same values, same types. The golden file holds one
SHA-256 per line of ``repr(list(event.items()))`` (mapping alone, then after TimeContextEnricher), captured
from the implementation before the tuning. Regenerate only for a deliberate contract change:
``.venv/bin/python tests/test_connector_fhir_golden.py --write``.
"""

from __future__ import annotations

import hashlib
import sys
from datetime import datetime, time, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))

from connectors.fhir_file import FhirAuditEventFileConnector  # noqa: E402
from connectors.fhir_mapping import auditevent_to_event  # noqa: E402
from engine.enrich.time_context import TimeContextEnricher  # noqa: E402

FIXTURE = ROOT / "fixtures" / "ehr" / "auditevents.ndjson"
GOLDEN = Path(__file__).parent / "data" / "golden" / "fhir-auditevents.sha256"
SOURCE = "fhir-auditevent-file:golden"


def _digest(event: dict) -> str:
    return hashlib.sha256(repr(list(event.items())).encode("utf-8")).hexdigest()


def current() -> list[str]:
    enricher = TimeContextEnricher("Europe/Berlin", "07:00", "19:00", ["mon", "tue", "wed", "thu", "fri"])
    rows = []
    for number, line in enumerate(FIXTURE.read_bytes().splitlines(), 1):
        event = auditevent_to_event(orjson.loads(line), raw=line, position=f"line:{number}")
        mapped = _digest(event)
        enriched = _digest(enricher.enrich(dict(event)))
        rows.append(f"{number} {mapped} {enriched}")
    return rows


def test_every_fixture_line_maps_exactly_as_before() -> None:
    want = GOLDEN.read_text(encoding="utf-8").splitlines()
    got = current()
    assert len(got) == len(want)
    differing = [g.split()[0] for g, w in zip(got, want) if g != w]
    assert not differing, f"lines mapped differently from the golden output: {differing[:20]}"


def test_connector_output_equals_mapping_of_each_line(tmp_path: Path) -> None:
    path = tmp_path / "auditevents.ndjson"
    path.write_bytes(FIXTURE.read_bytes())
    connector = FhirAuditEventFileConnector("golden", {"path": str(path)})
    events, cursor = [], None
    while True:
        batch = connector.read(cursor, 400)
        assert not batch.dead_letters
        events += batch.events
        cursor = batch.cursor
        if batch.exhausted:
            break
    connector.close()
    lines = FIXTURE.read_bytes().splitlines()
    assert len(events) == len(lines)
    for number, (line, event) in enumerate(zip(lines, events), 1):
        expected = auditevent_to_event(orjson.loads(line), raw=line, position=f"line:{number}")
        assert list(event.items()) == list(expected.items())
        assert [type(v) for v in event.values()] == [type(v) for v in expected.values()]


@pytest.mark.parametrize("zone, day", [
    ("Europe/Berlin", datetime(2026, 3, 29, tzinfo=timezone.utc)),  # DST starts 01:00 UTC
    ("Europe/Berlin", datetime(2026, 10, 25, tzinfo=timezone.utc)),  # DST ends 01:00 UTC
    ("Africa/Monrovia", datetime(1972, 1, 7, tzinfo=timezone.utc)),  # offset -0:44:30 until 1972-01-07
    ("Australia/Lord_Howe", datetime(2026, 4, 5, tzinfo=timezone.utc)),  # 30-minute DST
])
def test_time_context_minute_cache_equals_per_event_computation(zone: str, day: datetime) -> None:
    """The enricher caches facts per UTC minute; every event must still get what its own instant gives."""
    cached = TimeContextEnricher(zone, "07:30", "19:00", ["mon", "tue", "wed", "thu", "fri"])
    moments = [day + timedelta(seconds=s, milliseconds=s % 1000) for s in range(0, 2 * 86400, 7)]
    for moment in moments:
        text = moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"
        local = moment.astimezone(ZoneInfo(zone))
        weekday = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")[local.weekday()]
        working = weekday in cached.days and time(7, 30) <= local.time() < time(19, 0)
        event = cached.enrich({"@timestamp": text})
        assert (event["wardwatch.time.local_hour"], event["wardwatch.time.weekday"],
                event["wardwatch.time.after_hours"]) == (local.hour, weekday, not working), text


if __name__ == "__main__" and "--write" in sys.argv:
    GOLDEN.parent.mkdir(parents=True, exist_ok=True)
    GOLDEN.write_text("\n".join(current()) + "\n", encoding="utf-8")
    print(f"wrote {GOLDEN}")
