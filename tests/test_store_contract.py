"""The store contract (engine.store.base.Store), run against every store kind.

Every store must pass this file unchanged: the engine's correctness (no gap, no duplicate, no lost alert)
rests on these properties, not on any one back-end.
"""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.store.base import CursorUpdate, DeadLetter, RuleCheckpoint, Store
from tests.store_fixtures import (  # noqa: F401 - `store` is a fixture
    covering_watermark,
    ehr_event,
    ids,
    make_alert,
    search_all,
    store,
    ts,
)

# --- events -------------------------------------------------------------------------------------------


def test_write_then_search_round_trip(store: Store) -> None:
    batch = [ehr_event(i, **{"source.ip": "10.0.0.7", "ehr.break_the_glass": i == 2, "tags": ["a", "b"],
                             "http.response.bytes": 1234, "score": 0.5, "empty": None}) for i in range(5)]
    result = store.write(batch)
    assert (result.written, result.duplicates) == (5, 0)

    found = search_all(store)
    assert ids(found) == ids(batch)
    for original, stored in zip(batch, found):
        ingested = stored.pop("event.ingested")
        assert isinstance(ingested, str) and ingested.endswith("Z") and len(ingested) == 24
        assert stored == original  # every value type survives unchanged
    assert "event.ingested" not in batch[0], "the caller's event dict must not be modified"


def test_write_is_idempotent(store: Store) -> None:
    batch = [ehr_event(i) for i in range(10)]
    assert store.write(batch).written == 10
    again = store.write(batch)
    assert (again.written, again.duplicates) == (0, 10)
    # duplicates inside one batch count too, and a half-new batch writes only the new half
    mixed = store.write([ehr_event(3), ehr_event(10), ehr_event(10), ehr_event(11)])
    assert (mixed.written, mixed.duplicates) == (2, 2)
    assert sorted(ids(search_all(store))) == sorted(ids([ehr_event(i) for i in range(12)]))


def test_duplicate_keeps_first_copy(store: Store) -> None:
    store.write([ehr_event(1, user="first")])
    store.write([ehr_event(1, user="second")])
    (only,) = search_all(store)
    assert only["user.name"] == "first"


@pytest.mark.parametrize("missing", ["@timestamp", "event.id", "event.dataset"])
def test_event_without_key_field_is_rejected(store: Store, missing: str) -> None:
    bad = ehr_event(2)
    del bad[missing]
    with pytest.raises(ValueError, match=missing):
        store.write([ehr_event(1), bad])
    assert search_all(store) == []


def test_empty_write(store: Store) -> None:
    assert (store.write([]).written, store.write([]).duplicates) == (0, 0)
    assert store.watermark() is None


def test_cursor_committed_with_batch(store: Store) -> None:
    assert store.get_cursor("ndjson:/var/log/ehr.jsonl") is None
    store.write([ehr_event(1)], CursorUpdate("ndjson:/var/log/ehr.jsonl", {"offset": 512, "inode": 42}))
    assert store.get_cursor("ndjson:/var/log/ehr.jsonl") == {"offset": 512, "inode": 42}
    store.write([ehr_event(2)], CursorUpdate("ndjson:/var/log/ehr.jsonl", {"offset": 1024, "inode": 42}))
    assert store.get_cursor("ndjson:/var/log/ehr.jsonl") == {"offset": 1024, "inode": 42}
    # a cursor may advance with no new events (everything in the chunk was a duplicate or filtered)
    store.write([], CursorUpdate("ndjson:/var/log/ehr.jsonl", {"offset": 2048, "inode": 42}))
    assert store.get_cursor("ndjson:/var/log/ehr.jsonl") == {"offset": 2048, "inode": 42}
    assert store.get_cursor("other") is None


def test_dead_letters_with_cursor(store: Store) -> None:
    records = [
        DeadLetter(source="ndjson:/var/log/ehr.jsonl", reason="invalid JSON", location="ehr.jsonl:7",
                   raw="{not json", received_at=ts(1)),
        DeadLetter(source="ndjson:/var/log/ehr.jsonl", reason="no timestamp", location="ehr.jsonl:9",
                   raw='{"user": "x"}'),
    ]
    store.dead_letter(records, CursorUpdate("ndjson:/var/log/ehr.jsonl", {"offset": 99}))
    assert store.get_cursor("ndjson:/var/log/ehr.jsonl") == {"offset": 99}
    listed = store.list_dead_letters()
    assert sorted((d.location, d.reason, d.raw) for d in listed) == sorted(
        (d.location, d.reason, d.raw) for d in records)
    by_location = {d.location: d for d in listed}
    assert by_location["ehr.jsonl:7"].received_at == ts(1)
    assert by_location["ehr.jsonl:9"].received_at, "the store stamps received_at when the caller did not"
    assert len(store.list_dead_letters(limit=1)) == 1


def test_the_newest_dead_letters_come_first_when_asked(store: Store) -> None:
    """``wardwatch status`` shows a few dead letters: those of today's failure, not the first ever kept. In
    commit order (several calls), newest first, the limit counting from the newest."""
    for n in range(5):
        store.dead_letter([DeadLetter(source="csv:ehr", reason="bad row", location=f"ehr.csv:{n}", raw=f"row {n}")])
    assert [d.location for d in store.list_dead_letters()] == [f"ehr.csv:{n}" for n in range(5)]
    assert [d.location for d in store.list_dead_letters(limit=2, newest=True)] == ["ehr.csv:4", "ehr.csv:3"]
    assert [d.location for d in store.list_dead_letters(newest=True)] == [f"ehr.csv:{n}" for n in reversed(range(5))]


def test_search_by_dataset_and_time_range(store: Store) -> None:
    ehr = [ehr_event(i) for i in range(10)]  # ts(0) .. ts(9)
    vpn = [ehr_event(100 + i, dataset="vpn.session", at=ts(i)) for i in range(10)]
    store.write(ehr + vpn)

    assert ids(search_all(store, datasets=["vpn.session"])) == ids(vpn)
    # start inclusive, end exclusive
    window = search_all(store, datasets=["ehr.audit"], start=ts(3), end=ts(6))
    assert [e["@timestamp"] for e in window] == [ts(3), ts(4), ts(5)]
    assert search_all(store, datasets=["ehr.audit"], start=ts(6), end=ts(6)) == []
    assert len(search_all(store, start=ts(8))) == 4
    assert len(search_all(store, end=ts(1))) == 2
    assert search_all(store, datasets=["no.such.dataset"]) == []
    assert search_all(store, datasets=[]) == []
    both = search_all(store, datasets=["vpn.session", "ehr.audit"], start=ts(2), end=ts(4))
    assert len(both) == 4 and {e["event.dataset"] for e in both} == {"ehr.audit", "vpn.session"}


def test_search_orders_by_timestamp_then_id(store: Store) -> None:
    # written out of order, several events sharing one timestamp, across two datasets
    events = [ehr_event(i, at=ts(10 - i // 3), dataset="ehr.audit" if i % 2 else "vpn.session")
              for i in range(30)]
    store.write(events[15:])
    store.write(events[:15])
    found = search_all(store)
    assert [(e["@timestamp"], e["event.id"]) for e in found] == sorted(
        (e["@timestamp"], e["event.id"]) for e in events)
    assert len(set(ids(found))) == 30


def test_fields_projection(store: Store) -> None:
    store.write([ehr_event(1, **{"source.ip": "10.1.2.3"})])
    (event,) = search_all(store, fields=["user.name", "source.ip", "not.there"])
    assert event == {"@timestamp": ts(1), "event.id": ehr_event(1)["event.id"], "event.dataset": "ehr.audit",
                     "user.name": "jdoe", "source.ip": "10.1.2.3"}
    (bare,) = search_all(store, fields=[])
    assert set(bare) == {"@timestamp", "event.id", "event.dataset"}


def test_fields_at_least_returns_every_asked_field_unchanged(store: Store) -> None:
    # the evaluator's query: a store may return more than asked (SQLite: the whole event), never less or other
    written = ehr_event(1, **{"source.ip": "10.1.2.3"})
    store.write([written])
    (event,) = search_all(store, fields=["user.name", "source.ip", "not.there"], fields_at_least=True)
    for key in ("@timestamp", "event.id", "event.dataset", "user.name", "source.ip"):
        assert event[key] == written[key]
    assert "not.there" not in event
    assert set(event) <= set(written) | {"event.ingested"}


def test_ingested_window_with_watermarks(store: Store) -> None:
    first = [ehr_event(i) for i in range(5)]
    second = [ehr_event(i) for i in range(5, 12)]
    # a late event: event time far before the first batch, ingested with the second
    late = ehr_event(99, at=ts(0, day=1))
    store.write(first)
    mark1 = covering_watermark(store, ids(first))
    store.write(second + [late])
    mark2 = covering_watermark(store, ids(second + [late]))

    assert ids(search_all(store, ingested_upto=mark1)) == ids(first)
    new = search_all(store, ingested_after=mark1, ingested_upto=mark2)
    assert ids(new) == ids([late] + second)  # ordered by event time, the late one first
    assert search_all(store, ingested_after=mark2, ingested_upto=mark2) == []
    # combined with a dataset and time filter
    assert ids(search_all(store, ingested_after=mark1, datasets=["ehr.audit"], start=ts(6))) == ids(second[1:])


def test_watermark_none_when_empty(store: Store) -> None:
    assert store.watermark() is None
    store.write([ehr_event(1)])
    assert covering_watermark(store, ids([ehr_event(1)])) is not None


def test_case_variants_stored_as_given(store: Store) -> None:
    store.write([ehr_event(1, user="ADMIN"), ehr_event(2, user="admin"), ehr_event(3, user="Admin")])
    assert [e["user.name"] for e in search_all(store)] == ["ADMIN", "admin", "Admin"]


def test_search_streams_many_pages(store: Store) -> None:
    events = [ehr_event(i, at=ts(i % 50)) for i in range(2500)]
    for chunk in range(0, len(events), 1000):
        store.write(events[chunk:chunk + 1000])
    found = search_all(store, datasets=["ehr.audit"], fields=[])
    assert len(found) == 2500 and len(set(ids(found))) == 2500
    assert [(e["@timestamp"], e["event.id"]) for e in found] == sorted(
        (e["@timestamp"], e["event.id"]) for e in events)


# --- checkpoints and alerts ----------------------------------------------------------------------------


def test_checkpoint_never_run_then_committed(store: Store) -> None:
    fresh = store.get_checkpoint("rule-1")
    assert (fresh.rule_id, fresh.watermark) == ("rule-1", None)
    store.commit_rule_run(RuleCheckpoint("rule-1", "17", {"open_windows": [1, 2]}), [])
    assert store.get_checkpoint("rule-1") == RuleCheckpoint("rule-1", "17", {"open_windows": [1, 2]})
    store.commit_rule_run(RuleCheckpoint("rule-1", "23"), [])
    assert store.get_checkpoint("rule-1").watermark == "23"
    assert store.get_checkpoint("rule-2").watermark is None


def test_commit_rule_run_upserts_alerts_by_id(store: Store) -> None:
    a1 = make_alert(first=ts(1), last=ts(5))
    store.commit_rule_run(RuleCheckpoint("rule-1", "10"), [a1])
    assert store.get_alert(a1.id) == a1

    a1_rev2 = replace(a1, last_trigger=ts(9), triggers=3, revision=2, evidence=["e0", "e1", "e2"])
    store.commit_rule_run(RuleCheckpoint("rule-1", "20"), [a1_rev2])
    assert store.get_alert(a1.id) == a1_rev2
    assert store.list_alerts() == [a1_rev2]  # upsert, not a second alert
    assert store.get_checkpoint("rule-1").watermark == "20"
    # a re-run that produces the same alert changes nothing
    store.commit_rule_run(RuleCheckpoint("rule-1", "20"), [a1_rev2])
    assert store.list_alerts() == [a1_rev2]
    assert store.get_alert("no-such-alert") is None


def test_list_alerts_order_and_filter(store: Store) -> None:
    late = make_alert("rule-1", "user.name=b", first=ts(30))
    early = make_alert("rule-2", "user.name=a", first=ts(10))
    middle = make_alert("rule-1", "user.name=c", first=ts(20))
    store.commit_rule_run(RuleCheckpoint("rule-1", "1"), [late, middle])
    store.commit_rule_run(RuleCheckpoint("rule-2", "1"), [early])
    assert store.list_alerts() == [early, middle, late]
    assert store.list_alerts(rule_id="rule-1") == [middle, late]
    assert store.list_alerts(limit=2) == [early, middle]
    # same first_trigger: ordered by id
    twins = [make_alert("rule-3", f"user.name={n}", first=ts(5)) for n in "xyz"]
    store.commit_rule_run(RuleCheckpoint("rule-3", "1"), twins)
    assert store.list_alerts(rule_id="rule-3") == sorted(twins, key=lambda a: a.id)


def test_latest_alert_by_last_trigger(store: Store) -> None:
    older = make_alert(first=ts(0), last=ts(40))
    newer = make_alert(first=ts(50, minute=20), last=ts(55, minute=20))
    other_group = make_alert(group_key="user.name=zz", first=ts(0, minute=40))
    store.commit_rule_run(RuleCheckpoint("rule-1", "1"), [newer, older, other_group])
    assert store.latest_alert("rule-1", "user.name=jdoe") == newer
    assert store.latest_alert("rule-1", "user.name=zz") == other_group
    assert store.latest_alert("rule-1", "user.name=nobody") is None
    assert store.latest_alert("rule-9", "user.name=jdoe") is None


def test_outbox_per_sink(store: Store) -> None:
    a = make_alert(first=ts(1))
    b = make_alert(group_key="user.name=b", first=ts(2))
    store.commit_rule_run(RuleCheckpoint("rule-1", "1"), [a, b])
    assert [x.id for x in store.pending_deliveries("jsonl")] == [a.id, b.id]

    store.mark_delivered("jsonl", [a])
    assert store.pending_deliveries("jsonl") == [b]
    # a sink seen for the first time gets everything
    assert [x.id for x in store.pending_deliveries("console")] == [a.id, b.id]

    # a new revision is pending again for every sink, the old revision stays delivered
    a2 = replace(a, revision=2, triggers=2, last_trigger=ts(8))
    store.commit_rule_run(RuleCheckpoint("rule-1", "2"), [a2])
    assert [(x.id, x.revision) for x in store.pending_deliveries("jsonl")] == [(b.id, 1), (a.id, 2)]
    assert store.pending_deliveries("jsonl")[1] == a2
    store.mark_delivered("jsonl", [b, a2])
    store.mark_delivered("jsonl", [b])  # acknowledging twice is harmless
    assert store.pending_deliveries("jsonl") == []
    assert [(x.id, x.revision) for x in store.pending_deliveries("console")] == [(a.id, 1), (b.id, 1),
                                                                                 (a.id, 2)]
    assert len(store.pending_deliveries("console", limit=2)) == 2
    # re-committing an already delivered revision does not deliver it again
    store.commit_rule_run(RuleCheckpoint("rule-1", "3"), [a2])
    assert store.pending_deliveries("jsonl") == []


def test_health(store: Store) -> None:
    health = store.health()
    assert health["ok"] is True and health["store"] == store.kind


def test_watermark_steps_slice_a_backlog_exactly(store: Store) -> None:
    """Stepping from nothing to the watermark in slices covers every event exactly once, and a slice
    holds fewer events than the backlog (the evaluator's bounded-memory slicing relies on this)."""
    import time

    from tests.store_fixtures import covering_watermark, ids, search_all

    written = []
    for batch in range(6):
        events = [ehr_event(batch * 10 + i) for i in range(10)]
        store.write(events)
        written += [e["event.id"] for e in events]
        time.sleep(0.01)  # distinct ingest times between batches on every store
    upto = covering_watermark(store, written)
    assert store.watermark_step(None, upto, 10**6) == upto
    seen: list[str] = []
    after = None
    slices = 0
    while after != upto:
        step = store.watermark_step(after, upto, 20)
        chunk = ids(search_all(store, ingested_after=after, ingested_upto=step, fields=[]))
        assert chunk, "a step must make progress"
        seen += chunk
        after, slices = step, slices + 1
    assert sorted(seen) == sorted(written)
    assert slices >= 2
