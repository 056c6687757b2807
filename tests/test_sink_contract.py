"""The sink contract (engine/alerts/sinks/base.py), independent of any one destination.

* every sink registered under ``wardwatch.sinks`` is a :class:`Sink` with ``SinkOptions``-based options;
* the field policy holds on the wire: a dropped field never reaches the receiver, a pseudonymised one
  reaches it only as its pseudonym, evidence is capped (property test against a real local receiver);
* ``send_notice`` reaches exactly the sinks with ``notices: true``, a failing one not stopping the rest;
* the template sink works as documented.
"""

from __future__ import annotations

import io
import uuid
from importlib.metadata import entry_points

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.alerts.episodes import group_key_of
from engine.alerts.model import Alert
from engine.alerts.pseudonymise import Pseudonymiser
from engine.alerts.sinks import (ConsoleSink, FieldPolicy, Sink, SinkConfigError, SinkOptions, build_sinks,
                                 deliver_pending, send_notice, sink_class)
from engine.errors import SinkUnavailable
from engine.store.base import RuleCheckpoint
from tests.store_fixtures import make_alert, store_factory  # noqa: F401 - fixture
from tests.webhook_peer import Receiver

KEY = b"k" * 32
FIELDS = ["user.name", "ehr.patient.id", "source.ip", "host.name", "ehr.department"]


def test_every_registered_sink_implements_the_contract():
    names = sorted(ep.name for ep in entry_points(group="wardwatch.sinks"))
    assert {"jsonl", "console", "webhook", "slack", "teams"} <= set(names)
    for name in names:
        cls = sink_class(name)
        assert issubclass(cls, Sink) and issubclass(cls.Options, SinkOptions), name
        assert cls.type_name == name and cls.summary, name


def _alert(group: dict[str, str], evidence: int) -> Alert:
    return Alert(id=uuid.uuid4().hex, rule_id="r1", rule_title="T", rule_level="high", rule_tags=[],
                 kind="match", group=group, group_key=group_key_of(group), window_start="a",
                 window_end="b", first_trigger="a", last_trigger="b", evidence=[f"ev{i}" for i in range(evidence)],
                 evidence_total=evidence)


@st.composite
def policies(draw):
    keys = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=len(FIELDS), unique=True))
    group = {k: f"val-{k}-{draw(st.text('abcdef0123456789', max_size=8))}" for k in keys}
    drop = draw(st.lists(st.sampled_from(FIELDS + ["rule_description", "metric", "evidence"]), unique=True))
    pseudo = draw(st.lists(st.sampled_from(FIELDS), unique=True))
    cap = draw(st.none() | st.integers(0, 12))
    return group, drop, pseudo, cap, draw(st.integers(0, 30))


def test_no_dropped_or_clear_pseudonymised_field_ever_reaches_the_wire(monkeypatch):
    monkeypatch.setenv("WW_TEST_HOOK_SECRET", "contract-secret")
    with Receiver(secret=b"contract-secret") as receiver:

        @settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
        @given(policies())
        def check(case):
            group, drop, pseudo, cap, evidence = case
            [sink] = build_sinks([{"type": "webhook", "url": receiver.url, "secret_env": "WW_TEST_HOOK_SECRET",
                                   "drop": drop, "pseudonymise": pseudo, "evidence_cap": cap}],
                                 pseudonymiser=Pseudonymiser(KEY, ()))
            alert = _alert(group, evidence)
            before = len(receiver.requests)
            sink.deliver([alert])
            sink.close()
            [req] = receiver.requests[before:]
            wire, data = req.body.decode(), req.json["data"]
            assert req.signature_ok
            for name in drop:
                assert name not in data and name not in data["group"]
                if name in group:
                    assert group[name] not in wire
            for name in set(pseudo) - set(drop):
                if name in group:
                    assert group[name] not in wire and data["group"][name].startswith("pseud:")
            if "evidence" not in drop:
                assert len(data["evidence"]) == min(evidence, evidence if cap is None else cap)
                assert data["evidence_total"] == evidence
            assert data["id"] == alert.id and data["revision"] == 1  # never dropped: dedup needs them

        check()


def test_site_pseudonymised_fields_are_pseudonymised_once_by_every_sink():
    site = Pseudonymiser(KEY, ["ehr.patient.id"])
    policy = FieldPolicy(pseudonymiser=site)
    already = site.apply({"ehr.patient.id": "P1"})["ehr.patient.id"]  # the evaluator did it at alert time
    assert policy.apply({"group": {"ehr.patient.id": already}})["group"] == {"ehr.patient.id": already}
    assert policy.apply({"group": {"ehr.patient.id": "P1"}})["group"] == {"ehr.patient.id": already}


def test_pseudonymise_without_the_site_key_fails_the_start_naming_the_sink():
    with pytest.raises(SinkConfigError, match=r"sink console: pseudonymise: needs the site's pseudonymisation key"):
        build_sinks([{"type": "console", "pseudonymise": ["user.name"]}])


class Recording(Sink):
    type_name = "recording"
    summary = "test"

    def __init__(self, name: str, notices: bool, fail: bool = False):
        super().__init__({"notices": notices}, name=name)
        self.got: list[dict] = []
        self.fail = fail

    def send_alerts(self, payloads):
        self.got.extend(payloads)

    def send_notice(self, notice):
        if self.fail:
            raise SinkUnavailable("down")
        self.got.append(dict(notice))


def test_notices_reach_exactly_the_sinks_that_asked_for_them():
    quiet, down, loud = Recording("quiet", False), Recording("down", True, fail=True), Recording("loud", True)
    notice = {"kind": "assignee_update", "subject": "a" * 32, "to": "asmith", "text": "alert a… has a new revision"}
    assert send_notice([quiet, down, loud], notice) == 1
    assert quiet.got == [] and loud.got == [notice]


def test_the_template_sink_delivers_through_the_outbox(store_factory):  # noqa: F811
    from engine.alerts.sinks._template import MemorySink

    store = store_factory()
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [make_alert()])
    sink = MemorySink({"drop": ["evidence"]})
    assert deliver_pending(store, [sink]) == 1 and deliver_pending(store, [sink]) == 0
    [payload] = sink.received
    assert "evidence" not in payload and payload["group"] == {"user.name": "jdoe"}


def test_console_sink_prints_notices():
    out = io.StringIO()
    sink = ConsoleSink(out)
    sink.send_notice({"kind": "deadline_reminder", "text": "NIS2 early warning due in 2 h"})
    assert out.getvalue() == "NOTICE [deadline_reminder] NIS2 early warning due in 2 h\n"
