"""One decode per alert revision and delivery round, shared by the read-only internal consumers
(engine/alerts/sinks/delivery.py ``SHARED_DECODE_CONSUMERS``), and nothing else changed by it.

What a user would see go wrong: a sink that edits the alerts it is handed (a pseudonymising or enriching
plug-in) changing what the audit chain hashes or what a case holds; or cases and audit entries that differ
from a delivery without the sharing.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import engine.alerts.sinks.delivery as delivery
from engine import audit
from engine.alerts.cases import CaseBuilder, case_settings
from engine.alerts.model import Alert, alert_id, canonical_json
from engine.alerts.sinks import deliver_pending
from engine.audit.recorder import AuditRecorder, with_audit_recorder
from engine.store import open_store
from engine.store.base import RuleCheckpoint


def _alert(rule: str, user: str, hour: int, revision: int = 1, events: int = 1, patient: str | None = None) -> Alert:
    group: dict[str, Any] = {"user.name": user}
    if patient is not None:
        group["ehr.patient.id"] = patient
    key = canonical_json(group)
    first = f"2026-11-02T{hour:02d}:00:00.000Z"
    last = f"2026-11-02T{hour:02d}:{min(59, revision):02d}:00.000Z"
    return Alert(id=alert_id(rule, key, first), rule_id=rule, rule_title=f"Rule {rule}", rule_level="high",
                 rule_tags=["attack.t1078"], kind="match", group=group, group_key=key, window_start=first,
                 window_end=last, first_trigger=first, last_trigger=last,
                 evidence=[f"{rule}-{user}-{hour}-{i}" for i in range(events)], evidence_total=events,
                 triggers=revision, revision=revision, rule_description="Something happened.")


class Recording:
    """A plain sink (not internal) that keeps what it was handed, and optionally edits it in place."""

    def __init__(self, name: str, mutate: bool = False):
        self.name, self.mutate, self.seen = name, mutate, []

    def deliver(self, alerts: list[Alert]) -> None:
        self.seen.extend(alerts)
        if self.mutate:
            for a in alerts:
                a.group["user.name"] = "someone-else"
                a.evidence.append("forged")
                a.rule_level = "informational"
                a.rule_tags.clear()


def _sinks(store: Any, *middle: Any) -> list[Any]:
    """As ``build_app`` wires them: @audit (alerts), @cases, @audit (cases), then the configured sinks."""
    return with_audit_recorder(store, [CaseBuilder(store, case_settings({})), *middle])


def _outcome(store: Any) -> dict[str, Any]:
    cases = {c.id: c.to_dict() for c in store.list_cases()}
    chain = [(e.kind, e.subject, e.detail) for e in audit.entries(store)]
    return {"cases": cases, "audit": chain, "alerts": sorted(a.to_dict()["id"] for a in store.list_alerts())}


def _store(tmp_path: Any, name: str, alerts: list[Alert]) -> Any:
    store = open_store("sqlite", path=tmp_path / f"{name}.db")
    store.commit_rule_run(RuleCheckpoint("r"), alerts)
    return store


def _batch() -> list[Alert]:
    return [_alert("a", "kim", 9), _alert("b", "kim", 10, events=3, patient="P1"), _alert("a", "lee", 11)]


def test_the_internal_consumers_share_one_decode_and_a_plain_sink_gets_its_own(tmp_path):
    store = _store(tmp_path, "s", _batch())
    handed: dict[str, list[Alert]] = {}
    sinks = _sinks(store, Recording("jsonl"))
    for sink in sinks:
        original = sink.deliver

        def spy(alerts: list[Alert], _name: str = sink.name, _orig: Any = original) -> None:
            handed.setdefault(_name, []).extend(alerts)
            _orig(alerts)
        sink.deliver = spy
    deliver_pending(store, sinks)
    audit_ids = {id(a) for a in handed["@audit"]}
    assert len(handed["@audit"]) == len(handed["@cases"]) == len(handed["jsonl"]) == 3
    assert {id(a) for a in handed["@cases"]} == audit_ids  # one decode for both internal consumers
    assert not {id(a) for a in handed["jsonl"]} & audit_ids  # the plain sink's objects are its own


def test_a_sink_that_edits_what_it_is_handed_changes_no_case_and_no_audit_entry(tmp_path):
    """The editing sink sits between the alert half of @audit and @cases' rebuilds of later rounds, and a
    second round brings new revisions of the same alerts: if shared objects leaked to it, the cases and the
    chain's content hashes would carry its edits."""
    first = _batch()
    later = [_alert("a", "kim", 9, revision=2, events=2), _alert("c", "lee", 12)]
    outcomes = []
    for name, mutate in (("plain", False), ("editing", True)):
        store = _store(tmp_path, name, [copy.deepcopy(a) for a in first])
        editor = Recording("jsonl", mutate=mutate)
        sinks = [AuditRecorder(store, frozenset({"alerts"})), editor, CaseBuilder(store, case_settings({})),
                 AuditRecorder(store, frozenset({"cases"}))]
        deliver_pending(store, sinks)
        store.commit_rule_run(RuleCheckpoint("r"), [copy.deepcopy(a) for a in later])
        deliver_pending(store, sinks)
        assert len(editor.seen) == 5
        assert all(a.group["user.name"] == "someone-else" for a in editor.seen) is mutate
        outcomes.append(_outcome(store))
    assert outcomes[0] == outcomes[1]
    assert any(c["alerts"] and "forged" not in c["evidence"] for c in outcomes[1]["cases"].values())


def test_the_internal_consumers_leave_the_alerts_they_are_handed_as_they_were(tmp_path):
    """The sharing is safe only while @audit and @cases only read: hold them to it."""
    store = _store(tmp_path, "s", [])
    alerts = _batch() + [_alert("a", "kim", 9, revision=2, events=4)]
    before = [a.to_dict() for a in copy.deepcopy(alerts)]
    AuditRecorder(store).deliver(alerts)
    CaseBuilder(store, case_settings({})).deliver(alerts)
    assert [a.to_dict() for a in alerts] == before


def test_a_revision_stored_again_with_new_content_is_decoded_afresh(tmp_path):
    """The memo is keyed by the stored text, not by (id, revision): a re-run may refresh a revision."""
    store = _store(tmp_path, "s", [_alert("a", "kim", 9)])
    decoded: dict[str, Alert] = {}
    [one] = store.pending_deliveries("x", decoded=decoded)
    refreshed = _alert("a", "kim", 9, events=3)
    store.commit_rule_run(RuleCheckpoint("r"), [refreshed])  # same id and revision, more evidence
    [two] = store.pending_deliveries("x", decoded=decoded)
    assert two is not one and two.evidence == refreshed.evidence and len(decoded) == 2
    assert store.pending_deliveries("x", decoded=decoded)[0] is two


_alerts = st.lists(st.tuples(st.sampled_from("abc"), st.sampled_from(["kim", "lee", "ann"]), st.integers(0, 23),
                             st.integers(1, 3), st.integers(1, 4), st.sampled_from([None, "P1", "P2"])),
                   min_size=1, max_size=25)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rounds=st.lists(_alerts, min_size=1, max_size=3), batch=st.sampled_from([1, 2, 7, 1000]))
def test_delivery_with_shared_decodes_equals_delivery_without(tmp_path_factory, monkeypatch, rounds, batch):
    """Random rounds of alert revisions (repeats, later revisions, shared subjects), small fetch batches:
    cases, case revisions, audit entries with their content hashes and deliveries are those of a delivery
    in which every consumer decodes for itself."""
    tmp = tmp_path_factory.mktemp("shared")
    results = []
    for shared in (True, False):
        with monkeypatch.context() as m:
            if not shared:
                m.setattr(delivery, "SHARED_DECODE_CONSUMERS", frozenset())
            store = open_store("sqlite", path=tmp / f"{shared}.db")
            plain = Recording("jsonl")
            sinks = _sinks(store, plain)
            for spec in rounds:
                revs: dict[str, Alert] = {}
                for rule, user, hour, rev, events, patient in spec:
                    a = _alert(rule, user, hour, rev, events, patient)
                    if a.id not in revs or a.revision > revs[a.id].revision:
                        revs[a.id] = a
                store.commit_rule_run(RuleCheckpoint("r"), list(revs.values()))
                deliver_pending(store, sinks, batch=batch)
            out = _outcome(store)
            out["plain"] = [a.to_dict() for a in plain.seen]
            out["case_outbox"] = [(c.id, c.revision) for c in store.pending_case_deliveries("nobody", limit=10_000)]
            results.append(out)
            store.close()
    assert results[0] == results[1]


@pytest.mark.parametrize("cap", [0, 1])
def test_a_full_memo_starts_again_and_changes_nothing(tmp_path, monkeypatch, cap):
    monkeypatch.setattr(delivery, "SHARED_DECODE_CAP", cap)
    outs = []
    for name in ("capped", "reference"):
        if name == "reference":
            monkeypatch.setattr(delivery, "SHARED_DECODE_CAP", 20_000)
        store = _store(tmp_path, f"{name}{cap}", _batch())
        deliver_pending(store, _sinks(store), batch=1)
        outs.append(_outcome(store))
    assert outs[0] == outs[1]
