"""The alert lifecycle and suppression exceptions, on both stores (engine/alerts/triage.py, exceptions.py).

What an analyst relies on: a transition the lifecycle forbids is refused in one line; a new revision of an
alert never resets its triage; an exception holds back exactly the revisions it covers, marks them
suppressed, and stops by itself at its end; nothing in triage makes a sink see a revision twice.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine import audit
from engine.alerts import exceptions, triage
from engine.alerts.exceptions import SuppressionException, exception_applies
from engine.alerts.sinks import deliver_pending
from engine.alerts.sinks.base import Sink, SinkOptions, options_with
from engine.alerts.triage import AlertFilter, find_alerts
from engine.errors import InvalidTransition, NotFound, UsageError
from engine.store.base import RuleCheckpoint, StoreConflict
from tests.store_fixtures import ehr_event, make_alert, store, ts  # noqa: F401 - fixture

DAY = 86400.0


def commit(store: Any, *alerts: Any) -> None:
    store.commit_rule_run(RuleCheckpoint(rule_id=alerts[0].rule_id, watermark=None), list(alerts))


def kinds(store: Any, subject: str) -> list[str]:
    return [e.kind for e in audit.entries(store, subject=subject)]


# --- the store side ---------------------------------------------------------------------------------------

def test_triage_records_are_conditional_on_the_version_read(store):
    record = {"subject_id": "a1", "kind": "alert", "status": "acknowledged", "assignee": None, "comments": []}
    assert store.get_triage_record("a1") is None
    assert store.put_triage_record(record, 0) == 1
    with pytest.raises(StoreConflict):
        store.put_triage_record(record, 0)  # someone else created it first
    assert store.put_triage_record({**record, "status": "closed"}, 1) == 2
    with pytest.raises(StoreConflict):
        store.put_triage_record(record, 1)  # a stale writer
    got = store.get_triage_record("a1")
    assert got["status"] == "closed" and got["version"] == 2
    assert set(store.get_triage_records()) == {"a1"} and store.get_triage_records(["zz"]) == {}
    store.put_triage_record({**record, "subject_id": "a2", "assignee": "lee"}, 0)
    store.put_triage_record({**record, "subject_id": "a3", "assignee": "lee", "status": "closed"}, 0)
    assert set(store.open_assigned_triage_records()) == {"a2"}  # who may hear about a new revision


def test_marks_keep_their_first_value_and_exceptions_round_trip(store):
    store.put_triage_marks("suppressed", [("a1", 1, "x1"), ("a1", 2, "x1")])
    store.put_triage_marks("suppressed", [("a1", 1, "other"), ("b", 1, "x2")])
    assert store.get_triage_marks("suppressed", ["a1"]) == {"a1": {1: "x1", 2: "x1"}}
    assert store.get_triage_marks("suppressed") == {"a1": {1: "x1", 2: "x1"}, "b": {1: "x2"}}
    assert store.get_triage_marks("notified") == {}
    record = {"id": "e1", "rule_id": "r", "field": "user.name", "value": "kim", "created": ts(0),
              "until": ts(60), "justification": "j", "author": "a", "source": None}
    store.put_exception_record(record)
    assert store.list_exception_records() == [record]
    assert store.delete_exception_record("e1") is True and store.delete_exception_record("e1") is False
    assert store.list_exception_records() == []


def test_ids_resolve_by_unique_prefix_of_at_least_six_characters(store):
    one, two = (dataclasses.replace(make_alert(first=ts(i)), id=f"abcdef00{i}{i}" + "0" * 22) for i in (1, 2))
    commit(store, one, two)
    assert [a.id for a in store.records_with_id_prefix("alert", "abcdef00")] == [one.id, two.id]
    assert triage.resolve(store, "abcdef001").id == one.id and triage.resolve(store, two.id).id == two.id
    with pytest.raises(UsageError, match="alert id prefix 'abcdef00' matches 2 records"):
        triage.resolve(store, "abcdef00")
    with pytest.raises(NotFound):
        triage.resolve(store, "abcde")  # too short to stand for an id
    assert store.records_with_id_prefix("case", "abcdef") == []


# --- the lifecycle ----------------------------------------------------------------------------------------

def test_lifecycle_transitions_and_their_audit_history(store):
    alert = make_alert()
    commit(store, alert)
    assert triage.get_state(store, alert.id).status == "new"
    state = triage.acknowledge(store, alert.id[:8], actor="kim")  # a unique prefix is enough
    assert state.status == "acknowledged"
    with pytest.raises(InvalidTransition, match="already acknowledged"):
        triage.acknowledge(store, alert.id, actor="kim")
    triage.assign(store, alert.id, "lee", actor="kim")
    triage.comment(store, alert.id, "looked at the VPN log", actor="lee")
    with pytest.raises(UsageError, match="not a close reason"):
        triage.close(store, alert.id, "boring", actor="lee")
    state, exc = triage.close(store, alert.id, "false_positive", actor="lee", comment="test account")
    assert exc is None and (state.status, state.close_reason, state.assignee) == ("closed", "false_positive", "lee")
    assert [c["text"] for c in state.comments] == ["looked at the VPN log", "test account"]
    for action in (lambda: triage.comment(store, alert.id, "x", actor="lee"),
                   lambda: triage.assign(store, alert.id, "x", actor="lee"),
                   lambda: triage.close(store, alert.id, "benign", actor="lee")):
        with pytest.raises(InvalidTransition, match="closed; .* reopen is not supported"):
            action()
    assert kinds(store, alert.id) == ["triage.acknowledge", "triage.assign", "triage.comment", "triage.close"]
    assert [e.actor for e in audit.entries(store, subject=alert.id)] == ["kim", "kim", "lee", "lee"]


def test_new_closes_directly_and_unknown_ids_are_not_found(store):
    alert = make_alert()
    commit(store, alert)
    assert triage.close(store, alert.id, "duplicate", actor="kim")[0].status == "closed"
    with pytest.raises(NotFound, match="no alert or case with id 'ffffffffff'"):
        triage.acknowledge(store, "ffffffffff", actor="kim")


def test_a_new_revision_keeps_the_triage_state(store):
    first = make_alert(triggers=1)
    commit(store, first)
    triage.acknowledge(store, first.id, actor="kim")
    triage.assign(store, first.id, "lee", actor="kim")
    commit(store, make_alert(last=ts(30), triggers=2, revision=2))  # the evaluator rewrites the alert row
    [listed] = find_alerts(store, AlertFilter())
    assert (listed.id, listed.revision, listed.status, listed.assignee) == (first.id, 2, "acknowledged", "lee")
    assert store.get_alert(first.id).status == "new"  # the stored alert is the evaluator's; triage is overlaid


def test_two_analysts_at_once_keep_both_comments(store):
    """A write conditional on a version someone else has already replaced is retried on the new state."""
    alert = make_alert()
    commit(store, alert)
    put = store.put_triage_record
    raced = []

    def racing_put(record: dict[str, Any], expected: int) -> int:
        if not raced:  # the other analyst's comment lands between our read and our write
            raced.append(True)
            triage.comment(store, alert.id, "from lee", actor="lee")
        return put(record, expected)

    store.put_triage_record = racing_put
    try:
        state = triage.comment(store, alert.id, "from kim", actor="kim")
    finally:
        del store.put_triage_record
    assert [c["text"] for c in state.comments] == ["from lee", "from kim"]
    assert [c["text"] for c in triage.get_state(store, alert.id).comments] == ["from lee", "from kim"]
    assert kinds(store, alert.id) == ["triage.comment", "triage.comment"]  # one entry each, no lost write


def test_find_alerts_filters(store):
    a = make_alert("r1", "user.name=kim", first=ts(0))
    b = dataclasses.replace(make_alert("r2", "user.name=lee", first=ts(0, hour=11)), rule_level="low")
    commit(store, a)
    commit(store, b)
    triage.acknowledge(store, b.id, actor="x")

    def found(**kw: Any) -> list[str]:
        return [x.id for x in find_alerts(store, AlertFilter(**kw))]

    assert found() == [a.id, b.id]
    assert found(status="acknowledged") == [b.id] and found(status="new") == [a.id]
    assert found(level="low") == [b.id] and found(rule="r1") == [a.id]
    assert found(user="KIM") == [a.id]  # case-insensitive, like Sigma
    assert found(since=ts(0, hour=10)) == [b.id] and found(until=ts(0, hour=10)) == [a.id]
    assert found(patient="P0001") == []  # no patient field in the group, none in the (absent) evidence events
    with pytest.raises(UsageError, match="--status 'open'"):
        AlertFilter(status="open")


def test_user_and_patient_match_the_listed_evidence_when_the_group_has_no_such_field(store):
    events = [ehr_event(n, user="kim") for n in (1, 2)] + [ehr_event(3, user="lee")]
    store.write(events)
    by_ip = dataclasses.replace(make_alert("r1", "source.ip=10.0.0.1", first=ts(1), last=ts(2)),
                                group={"source.ip": "10.0.0.1"}, evidence=[e["event.id"] for e in events[:2]])
    commit(store, by_ip)

    def found(**kw: Any) -> list[str]:
        return [x.id for x in find_alerts(store, AlertFilter(**kw))]

    assert found(user="kim") == [by_ip.id] and found(patient=events[1]["ehr.patient.id"]) == [by_ip.id]
    assert found(user="lee") == []  # lee's event is in the window but not in the alert's evidence


# --- exceptions -------------------------------------------------------------------------------------------

class RecordingSink(Sink):
    """A sink that keeps what it is handed (every call), with notices on."""

    type_name = "recording"

    def __init__(self, name: str = "rec") -> None:
        super().__init__(options_with(SinkOptions, notices=True), name=name)
        self.alerts: list[dict[str, Any]] = []
        self.notices: list[dict[str, Any]] = []

    def send_alerts(self, payloads: Sequence[dict[str, Any]]) -> None:
        self.alerts.extend(payloads)

    def send_notice(self, notice: Any) -> None:
        self.notices.append(dict(notice))


def test_close_with_suppress_holds_back_that_rule_and_user_until_it_expires(store):
    sink = RecordingSink()
    first = make_alert("r1", "user.name=kim", first=ts(0))
    commit(store, first)
    deliver_pending(store, [sink])
    created = ts(0, hour=10)
    _, exc = triage.close(store, first.id, "benign", actor="lee", suppress_for=30 * DAY,
                          justification="kim tests the VPN", at=created)
    assert (exc.rule_id, exc.field, exc.value, exc.created) == ("r1", "user.name", "kim", created)
    assert exc.until == "2026-12-02T10:15:00.000Z" and kinds(store, exc.id) == ["exception.add"]

    inside = make_alert("r1", "user.name=kim", first=ts(0, day=20))  # another episode, same rule and user
    other_user = make_alert("r1", "user.name=lee", first=ts(0, day=20))
    other_rule = make_alert("r2", "user.name=kim", first=ts(0, day=20))
    after = make_alert("r1", "user.name=kim", first="2026-12-03T09:00:00.000Z")  # the exception has ended
    for alert in (inside, other_user, other_rule, after):
        commit(store, alert)
    deliver_pending(store, [sink])
    assert [p["id"] for p in sink.alerts] == [first.id, other_user.id, other_rule.id, after.id]
    assert [a.id for a in find_alerts(store, AlertFilter(status="suppressed"))] == [inside.id]
    assert deliver_pending(store, [sink]) == 0  # the suppressed revision was decided once, not retried

    later = "2026-12-05T00:00:00.000Z"
    assert exceptions.list_exceptions(store, at=later) == []  # expired: gone from the default listing
    assert [e.id for e in exceptions.list_exceptions(store, include_expired=True, at=later)] == [exc.id]
    exceptions.remove_exception(store, exc.id[:8], actor="lee")
    assert kinds(store, exc.id) == ["exception.add", "exception.remove"]
    with pytest.raises(NotFound):
        exceptions.remove_exception(store, exc.id, actor="lee")
    again = make_alert("r1", "user.name=kim", first=ts(0, day=25))
    commit(store, again)
    deliver_pending(store, [sink])
    assert sink.alerts[-1]["id"] == again.id  # removed: applies no more


def test_suppress_needs_a_justification_and_an_alert(store):
    alert = make_alert()
    commit(store, alert)
    with pytest.raises(UsageError, match="--justification"):
        triage.close(store, alert.id, "benign", actor="x", suppress_for=DAY)
    with pytest.raises(UsageError, match="--field 'host.name' is not a group field"):
        triage.close(store, alert.id, "benign", actor="x", suppress_for=DAY, justification="j", field="host.name")
    assert triage.get_state(store, alert.id).status == "new"  # a refused close changes nothing


def test_triage_between_deliveries_never_duplicates_and_payloads_carry_it(store):
    """ack, assign, comment, close between delivery rounds: each revision reaches the sink exactly once, with
    the status and assignee current at delivery; the assignee hears once about each new revision."""
    sink = RecordingSink()
    rev1 = make_alert(triggers=1)
    commit(store, rev1)
    deliver_pending(store, [sink])
    triage.acknowledge(store, rev1.id, actor="kim")
    deliver_pending(store, [sink])
    triage.assign(store, rev1.id, "lee", actor="kim")
    triage.comment(store, rev1.id, "on it", actor="lee")
    deliver_pending(store, [sink])
    commit(store, make_alert(last=ts(30), triggers=2, revision=2))
    deliver_pending(store, [sink])
    deliver_pending(store, [sink])
    triage.close(store, rev1.id, "true_positive", actor="lee")
    commit(store, make_alert(last=ts(50), triggers=3, revision=3))
    deliver_pending(store, [sink])
    deliver_pending(store, [sink])
    assert [(p["id"], p["revision"]) for p in sink.alerts] == [(rev1.id, 1), (rev1.id, 2), (rev1.id, 3)]
    assert [(p["status"], p["assignee"]) for p in sink.alerts] == [
        ("new", None), ("acknowledged", "lee"), ("closed", "lee")]
    assert [(n["kind"], n["subject"], n["to"], n["revision"]) for n in sink.notices] == [
        ("assignee_update", rev1.id, "lee", 2)]  # revision 3 came after the close: no news for the assignee


# --- exception_applies, as a property ----------------------------------------------------------------------

_times = st.integers(min_value=0, max_value=10_000)


@settings(max_examples=200, deadline=None)
@given(start=_times, length=st.integers(min_value=1, max_value=5000), at=_times,
       value=st.sampled_from(["kim", "KIM", "lee"]), rule=st.sampled_from(["r1", "r2"]))
def test_an_exception_applies_exactly_within_its_window_rule_and_value(start, length, at, value, rule):
    exc = SuppressionException("e", "r1", "user.name", "kim", ts(start), ts(start + length), "j", "a")
    alert = make_alert(rule, f"user.name={value}", first=ts(at))
    expected = rule == "r1" and value.casefold() == "kim" and start <= at < start + length
    assert exception_applies(exc, alert) is expected


def test_a_store_file_from_before_triage_gains_the_tables(tmp_path):
    import sqlite3

    from engine.store import open_store

    path = tmp_path / "old.db"
    with open_store("sqlite", path=path) as old:
        old.commit_rule_run(RuleCheckpoint("rule-1"), [make_alert()])
    conn = sqlite3.connect(path)  # what a file written before the lifecycle existed looks like
    assert not conn.execute("SELECT name FROM sqlite_master WHERE name LIKE 'triage%'").fetchall()
    conn.close()
    with open_store("sqlite", path=path) as store:
        [alert] = store.list_alerts()
        assert triage.acknowledge(store, alert.id, actor="kim").status == "acknowledged"
    with open_store("sqlite", path=path) as store:
        assert triage.get_state(store, alert.id).status == "acknowledged"
