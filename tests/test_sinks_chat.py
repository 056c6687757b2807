"""Slack and Teams sinks against a real local HTTP receiver: the body has the documented shape.

Block Kit (https://api.slack.com/reference/block-kit/blocks): ``blocks`` of header (plain_text <= 150),
section (<= 10 mrkdwn fields, text <= 3000) and context. Teams Workflows: a ``message`` whose one attachment
is ``application/vnd.microsoft.card.adaptive`` with ``content.type == "AdaptiveCard"``, a ``version`` and a
``body``. The webhook URL is a credential: only ``url_file``/``url_env``.
"""

from __future__ import annotations

from pathlib import Path

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.alerts.case_model import Case
from engine.alerts.sinks import build_sinks, deliver_pending
from engine.config import ConfigError, load_config
from engine.store.base import RuleCheckpoint
from tests.store_fixtures import make_alert, store, store_factory  # noqa: F401 - fixture (SQLite and Elasticsearch)
from tests.webhook_peer import Receiver


def chat_sink(kind: str, receiver: Receiver, tmp_path: Path, **options: object):
    url_file = tmp_path / f"{kind}.url"
    url_file.write_text(receiver.url + "\n")
    [sink] = build_sinks([{"type": kind, "url_file": str(url_file), "deliver": "alerts", **options}])
    return sink


def check_block_kit(body: dict) -> None:
    assert isinstance(body["text"], str) and body["text"]
    kinds = [b["type"] for b in body["blocks"]]
    assert kinds[0] == "header" and set(kinds) <= {"header", "section", "context"}
    for block in body["blocks"]:
        if block["type"] == "header":
            assert block["text"]["type"] == "plain_text" and len(block["text"]["text"]) <= 150
        if block["type"] == "section":
            assert ("text" in block) != ("fields" in block)
            for f in block.get("fields", []):
                assert f["type"] == "mrkdwn" and len(f["text"]) <= 2000
            assert len(block.get("fields", [])) <= 10
            assert len(block.get("text", {}).get("text", "")) <= 3000
        if block["type"] == "context":
            assert all(e["type"] == "mrkdwn" for e in block["elements"])


def check_adaptive_card(body: dict) -> dict:
    assert body["type"] == "message"
    [attachment] = body["attachments"]
    assert attachment["contentType"] == "application/vnd.microsoft.card.adaptive"
    card = attachment["content"]
    assert card["type"] == "AdaptiveCard" and card["version"] == "1.4"
    assert card["$schema"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    assert card["body"] and {e["type"] for e in card["body"]} <= {"TextBlock", "FactSet"}
    return card


def test_slack_alert_is_block_kit_with_escaped_values(store, tmp_path):  # noqa: F811
    alert = make_alert(group_key="user.name=<!channel> & co")
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [alert])
    with Receiver() as receiver:
        assert deliver_pending(store, [chat_sink("slack", receiver, tmp_path)]) == 1
    [body] = receiver.bodies()
    check_block_kit(body)
    fields = [f["text"] for f in body["blocks"][1]["fields"]]
    assert "*user.name*\n&lt;!channel&gt; &amp; co" in fields  # no mention, no link
    assert "[HIGH] Test rule" in body["blocks"][0]["text"]["text"]
    assert body["blocks"][-1]["elements"][0]["text"] == f"Wardwatch alert {alert.id} revision 1"
    assert receiver.requests[0].path == "/hook/T000/SECRETPATH"


def test_slack_invalid_blocks_is_dead_lettered_naming_slacks_error(store_factory, tmp_path):  # noqa: F811
    store = store_factory()
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [make_alert()])
    with Receiver(script=[400]) as receiver:
        deliver_pending(store, [chat_sink("slack", receiver, tmp_path)])
    getattr(store, "refresh", lambda: None)()
    [dead] = [d for d in store.list_dead_letters() if d.source.startswith("sink:")]
    assert dead.source == "sink:slack" and "HTTP 400" in dead.reason and "(invalid_payload)" in dead.reason
    assert store.pending_deliveries("slack") == []


def test_teams_alert_is_an_adaptive_card_in_a_workflows_message(store, tmp_path, monkeypatch):  # noqa: F811
    alert = make_alert(group_key="user.name=jdoe")
    store.commit_rule_run(RuleCheckpoint("rule-1", None), [alert])
    with Receiver(ok_status=202, ok_body=b"") as receiver:
        monkeypatch.setenv("WW_TEST_TEAMS_URL", receiver.url)
        [sink] = build_sinks([{"type": "teams", "url_env": "WW_TEST_TEAMS_URL", "deliver": "alerts"}])
        assert deliver_pending(store, [sink]) == 1
    card = check_adaptive_card(receiver.bodies()[0])
    facts = {f["title"]: f["value"] for f in card["body"][1]["facts"]}
    assert facts["user.name"] == "jdoe" and facts["Level"] == "HIGH" and facts["Events"] == "1"


def _case() -> Case:
    return Case(id="c" * 32, subject_kind="user", subject="jdoe", period_start="2026-11-02", period_end="2026-11-03",
                first_trigger="2026-11-02T09:00:00.000Z", last_trigger="2026-11-02T10:00:00.000Z", level="high",
                score=7.5, reasons=["Rule A: 2 alerts", "Rule B: 1 alert"], alerts=["a1", "a2"],
                evidence=[f"e{i}" for i in range(40)], evidence_total=40, subject_field="user.name")


@pytest.mark.parametrize("kind", ["slack", "teams"])
def test_cases_and_notices_have_the_same_shape(kind, tmp_path):
    with Receiver() as receiver:
        sink = chat_sink(kind, receiver, tmp_path, deliver="cases", notices=True)
        sink.deliver_cases([_case()])
        sink.send_notice({"kind": "deadline_reminder", "subject": "c" * 32, "to": "asmith",
                          "text": "GDPR Art. 33 notification due in 6 h"})
    case_body, notice_body = receiver.bodies()
    check = check_block_kit if kind == "slack" else check_adaptive_card
    check(case_body)
    check(notice_body)
    assert "Rule A: 2 alerts" in str(case_body) and "jdoe" in str(case_body)
    assert "GDPR Art. 33 notification due in 6 h" in str(notice_body)


@pytest.mark.parametrize("sink, error", [
    ("{type: slack, url: 'https://hooks.slack.com/services/T/B/X'}",
     r"alerts\.sinks\[0\]\.url: this webhook URL is a credential .*use url_file or url_env"),
    ("{type: teams}", r"alerts\.sinks\[0\]\.url_file: required"),
    ("{type: teams, url_env: T, evidence_cap: -1}", r"alerts\.sinks\[0\]\.evidence_cap: must be >= 0"),
    ("{type: slack, url_env: T, deliver: everything}", r"alerts\.sinks\[0\]\.deliver: expected one of"),
])
def test_config_errors_name_the_key(tmp_path, sink, error):
    path = tmp_path / "wardwatch.yaml"
    path.write_text(f"alerts:\n  sinks:\n    - {sink}\n")
    with pytest.raises(ConfigError, match=error):
        load_config(path, environ={})


def test_a_plain_http_url_beyond_loopback_in_the_url_file_fails_the_start(tmp_path):
    (tmp_path / "u").write_text("http://hooks.example.org/services/x\n")
    from engine.alerts.sinks import SinkConfigError

    with pytest.raises(SinkConfigError, match=r"sink slack: url_file: http://hooks\.example\.org is plain http://"):
        build_sinks([{"type": "slack", "url_file": str(tmp_path / "u")}])


_text = st.text(max_size=400)


@settings(max_examples=200, deadline=None)
@given(title=_text, level=st.sampled_from(["low", "high", "critical", ""]), description=st.text(max_size=5000),
       group=st.dictionaries(st.text(min_size=1, max_size=60), _text, max_size=15))
def test_any_alert_formats_within_the_documented_limits(title, level, description, group):
    from engine.alerts.sinks.chat import message
    from engine.alerts.sinks.slack import blocks
    from engine.alerts.sinks.teams import workflow_message

    payload = {"id": "a" * 32, "revision": 3, "rule_title": title, "rule_level": level, "rule_id": "r",
               "rule_description": description, "group": group, "window_start": "s", "window_end": "e",
               "evidence_total": 4}
    slack = blocks(message("alert", payload))
    check_block_kit(slack)
    for block in slack["blocks"]:
        texts = [f["text"] for f in block.get("fields", [])] + [block.get("text", {}).get("text", "")]
        if block["type"] == "section":
            assert all("<" not in t and ">" not in t for t in texts)  # escaped: no mention, no link
    check_adaptive_card(workflow_message(message("alert", payload)))
    orjson.dumps(slack)  # always serialisable


def test_a_case_without_its_subject_still_formats():
    from engine.alerts.sinks.chat import message
    from engine.alerts.sinks.slack import blocks

    payload = {k: v for k, v in _case().to_dict().items() if k != "subject"}  # drop: [user.name]
    body = blocks(message("case", payload))
    check_block_kit(body)
    assert "jdoe" not in str(body)
