"""Late events (recorded long before they arrive) must not split an episode into overlapping alerts.

Issue 7, item 6: in a live run a record of 00:50 arrived after 01:00 and 01:20 had been evaluated, and one
after-hours alert came out as two overlapping alerts while a batch run over the same data gave one. The
final alert set must not depend on arrival order nor on how the runs were cut; both stores.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from engine.config import DEFAULTS
from engine.evaluation import Evaluator, RuleJob, build_jobs
from engine.events import Event, make_event_id
from engine.sigma import load_rules
from engine.store import open_store
from engine.store.base import Store
from tests.store_fixtures import covering_watermark, store  # noqa: F401  (pytest fixture)

ROOT = Path(__file__).resolve().parent.parent
AFTER_HOURS = ROOT / "rules" / "healthcare" / "ehr_after_hours_access.yml"


def after_hours_jobs() -> list[RuleJob]:
    """The shipped after-hours rule with the shipped demo suppression (per user, 1h)."""
    ruleset = load_rules([str(AFTER_HOURS)], placeholders=DEFAULTS["rules"]["placeholders"])
    return build_jobs(ruleset, DEFAULTS["alerts"]["suppression"])


def read_at(n: int, when: str, user: str = "jschmidt") -> Event:
    return {
        "@timestamp": when,
        "event.dataset": "ehr.audit",
        "event.id": make_event_id("test:late", str(n)),
        "event.action": "read",
        "wardwatch.time.after_hours": True,
        "user.name": user,
        "ehr.patient.id": f"P{n:04d}",
    }


def evaluate(store: Store, jobs: Sequence[RuleJob], written: Sequence[Event], **options: Any) -> None:
    """One scheduler tick: evaluate everything the store has made visible so far."""
    mark = covering_watermark(store, [e["event.id"] for e in written])
    Evaluator(store, **options).run_many(jobs, upto=mark)


def final_alerts(store: Store) -> dict[str, dict[str, Any]]:
    """What an analyst ends up with: each alert at its latest revision (revision number aside)."""
    return {a.id: {**a.to_dict(), "revision": None} for a in store.list_alerts()}


def assert_no_overlap(alerts: dict[str, dict[str, Any]]) -> None:
    """No event is evidence of two alerts of one rule and group: that would be one episode told twice."""
    seen: dict[tuple[str, str, str], str] = {}
    for alert_id, alert in alerts.items():
        for eid in alert["evidence"]:
            key = (alert["rule_id"], alert["group_key"], eid)
            assert key not in seen, f"event {eid} is in alerts {seen[key]} and {alert_id}"
            seen[key] = alert_id


def test_late_after_hours_read_joins_its_episode_instead_of_a_second_alert(store: Store, tmp_path: Path) -> None:
    jobs = after_hours_jobs()
    on_time = [read_at(1, "2026-11-03T01:00:00.000Z"), read_at(2, "2026-11-03T01:20:00.000Z")]
    late = read_at(3, "2026-11-03T00:20:00.000Z")  # recorded 60 min before the last read it follows
    store.write(on_time)
    evaluate(store, jobs, on_time)
    store.write([late])
    evaluate(store, jobs, [*on_time, late])
    live = final_alerts(store)

    batch_store = open_store("sqlite", path=tmp_path / "batch.db")
    try:
        batch_store.write([late, *on_time])
        evaluate(batch_store, jobs, [late, *on_time])
        batch = final_alerts(batch_store)
    finally:
        batch_store.close()

    assert_no_overlap(live)
    assert live == batch
    assert sorted(eid for a in live.values() for eid in a["evidence"]) == sorted(
        e["event.id"] for e in [late, *on_time])
    # one alert per user and clock hour (the suppression period): the late read has its own hour
    assert sorted((a["first_trigger"], a["last_trigger"]) for a in live.values()) == [
        ("2026-11-03T00:20:00.000Z", "2026-11-03T00:20:00.000Z"),
        ("2026-11-03T01:00:00.000Z", "2026-11-03T01:20:00.000Z")]


def test_late_read_in_an_alerted_hour_is_a_new_revision_of_that_alert(store: Store) -> None:
    jobs = after_hours_jobs()
    first = [read_at(1, "2026-11-03T01:10:00.000Z"), read_at(2, "2026-11-03T01:40:00.000Z")]
    late = read_at(3, "2026-11-03T01:05:00.000Z")
    store.write(first)
    evaluate(store, jobs, first)
    (before,) = store.list_alerts()
    store.write([late])
    evaluate(store, jobs, [*first, late])
    (after,) = store.list_alerts()
    assert after.id == before.id and after.revision == before.revision + 1
    assert after.first_trigger == "2026-11-03T01:05:00.000Z" and after.evidence_total == 3
