"""Incident deadlines (engine.incidents): declaring starts the GDPR Art. 33 and NIS2 Art. 23 clocks.

What a user relies on: ``alerts incident ID`` records who declared what and when (in the audit chain), the
deadlines are the legal ones (72 h; 24 h / 72 h / one calendar month), time left goes negative when overdue,
``/metrics`` (read over HTTP from the real API server) carries the same numbers, and a sink with
``remind_before`` gets each reminder once, also across a restart. Reminders go to a real SMTP server
(aiosmtpd).
"""

from __future__ import annotations

import calendar
import re
import email
import email.policy
import socket
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Iterator

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine import audit
from engine.cli import main
from engine.errors import NotFound, UsageError
from engine.events import format_timestamp
from engine.incidents import add_month, deadlines, declare, send_reminders, service_round
from engine.metrics import Metrics
from engine.store import open_store
from engine.store.base import RuleCheckpoint
from tests.store_fixtures import configured_store, make_alert, ts  # noqa: F401 - fixture

aiosmtpd_controller = pytest.importorskip("aiosmtpd.controller")

DECLARED = "2026-11-02T10:00:00.000Z"


@pytest.fixture
def one_alert(tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    s = open_store("sqlite", path=tmp_path / "w.db")
    alert = make_alert("r1", "user.name=kim", first=ts(0))
    s.commit_rule_run(RuleCheckpoint("r1"), [alert])
    yield s, alert
    s.close()


# --- the rule for "one month" ---------------------------------------------------------------------------
@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 11, 30), timezones=st.just(timezone.utc)))
def test_one_month_is_the_same_day_next_month_clamped_to_its_end(when):
    later = add_month(when)
    assert (later.year * 12 + later.month) - (when.year * 12 + when.month) == 1
    assert later.day == min(when.day, calendar.monthrange(later.year, later.month)[1])
    assert later.time() == when.time() and later.tzinfo == when.tzinfo
    assert 28 <= (later - when).days <= 31


@pytest.mark.parametrize("declared,final", [
    ("2026-01-31T23:30:00.000Z", "2026-02-28T23:30:00.000Z"),
    ("2028-01-30T08:00:00.000Z", "2028-02-29T08:00:00.000Z"),  # leap year
    ("2026-12-15T12:00:00.000Z", "2027-01-15T12:00:00.000Z"),
])
def test_the_final_report_is_due_one_calendar_month_after_the_declaration(one_alert, declared, final):
    s, alert = one_alert
    declare(s, alert.id, actor="kim", regimes=("nis2",), at=declared)
    assert [d.due for d in deadlines(s, declared) if d.milestone == "final_report"] == [final]


# --- declare and deadlines --------------------------------------------------------------------------------
def test_declaring_starts_every_clock_and_is_recorded_once(one_alert):
    s, alert = one_alert
    incident = declare(s, alert.id[:8], actor="kim", at=DECLARED)
    assert (incident.subject, incident.record, incident.declared_at, incident.actor) == (alert.id, "alert",
                                                                                          DECLARED, "kim")
    again = declare(s, alert.id, actor="lee", at="2026-11-03T00:00:00.000Z")
    assert again == incident  # the first declaration is the one the clocks count from
    [entry] = audit.entries(s, kinds=["incident.declare"])
    assert (entry.subject, entry.actor, entry.at, entry.detail) == (
        alert.id, "kim", DECLARED, {"record": "alert", "regimes": ["gdpr", "nis2"]})

    now = "2026-11-03T12:00:00.000Z"  # 26 h after the declaration
    got = [(d.regime, d.milestone, d.due, d.remaining_seconds) for d in deadlines(s, now, subject=alert.id)]
    assert got == [
        ("nis2", "early_warning", "2026-11-03T10:00:00.000Z", -7200.0),
        ("gdpr", "authority_notification", "2026-11-05T10:00:00.000Z", 46 * 3600.0),
        ("nis2", "notification", "2026-11-05T10:00:00.000Z", 46 * 3600.0),
        ("nis2", "final_report", "2026-12-02T10:00:00.000Z", (28 * 24 + 22) * 3600.0),
    ]
    assert deadlines(s, now, subject="someone-else") == []


def test_bad_declarations_are_one_clear_error(one_alert):
    s, alert = one_alert
    with pytest.raises(NotFound, match="no alert or case with id 'nothing'"):
        declare(s, "nothing", actor="kim")
    with pytest.raises(UsageError, match="unknown regime hipaa"):
        declare(s, alert.id, actor="kim", regimes=("hipaa",))
    assert list(audit.entries(s)) == []


def test_the_deadline_gauge_counts_down_and_goes_negative(one_alert):
    s, alert = one_alert
    declare(s, alert.id, actor="kim", regimes=("nis2",), at=DECLARED)
    metrics = Metrics()
    service_round(s, [], metrics, now="2026-11-03T11:00:00.000Z")
    labels = {"subject": alert.id, "regime": "nis2"}
    assert metrics.value("wardwatch_incident_deadline_seconds", milestone="early_warning", **labels) == -3600.0
    assert metrics.value("wardwatch_incident_deadline_seconds", milestone="notification", **labels) == 47 * 3600.0
    assert (f'wardwatch_incident_deadline_seconds{{milestone="early_warning",regime="nis2",subject="{alert.id}"}} '
            "-3600.0") in metrics.render()


# --- the command line on both stores ----------------------------------------------------------------------
def run(capsys: Any, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_alerts_incident_and_deadlines_on_the_command_line(configured_store, capsys):
    c, s = configured_store
    alert = make_alert("r1", "user.name=kim", first=ts(0))
    s.commit_rule_run(RuleCheckpoint("r1"), [alert])
    code, out, err = run(capsys, *c, "alerts", "incident", alert.id[:8], "--actor", "kim")
    assert (code, err) == (0, "")
    assert out.startswith(f"alert {alert.id}: declared an incident at ") and "by kim" in out
    assert re.search(r"nis2 +early_warning +\S+ +(1d 00h|23h 59m) left", out) and "final_report" in out
    code, out, _ = run(capsys, *c, "alerts", "incident", alert.id, "--actor", "lee", "--format", "json")
    view = orjson.loads(out)
    assert (view["new"], view["actor"], len(view["deadlines"])) == (False, "kim", 4)
    code, out, _ = run(capsys, *c, "alerts", "deadlines", "--format", "json")
    assert [orjson.loads(line)["milestone"] for line in out.splitlines()] == [
        "early_warning", "authority_notification", "notification", "final_report"]
    code, out, err = run(capsys, *c, "alerts", "incident", "ffffffffff")
    assert code == 1 and out == "" and "no alert or case with id 'ffffffffff'" in err
    assert run(capsys, *c, "audit", "verify")[1] == "ok: 1 entries, chain intact\n"


# --- reminders, to a real SMTP server -----------------------------------------------------------------------
class Inbox:
    def __init__(self) -> None:
        self.messages: list[email.message.EmailMessage] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: N802 - aiosmtpd API
        self.messages.append(email.message_from_bytes(envelope.content, policy=email.policy.default))
        return "250 Message accepted"


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    inbox = Inbox()
    controller = aiosmtpd_controller.Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _mail_sink(port: int, **extra: Any) -> Any:
    from engine.alerts.sinks.smtp import EmailSink

    return EmailSink({"host": "127.0.0.1", "port": port, "tls": "none", "from": "wardwatch@hospital.example",
                      "to": ["soc@hospital.example"], "notices": True, **extra})


def _texts(inbox: Inbox) -> list[str]:
    return [" ".join(m.get_body(("plain",)).get_content().split()) for m in inbox.messages]


def test_each_reminder_is_sent_once_even_across_a_restart(one_alert, smtp):
    s, alert = one_alert
    inbox, port = smtp
    declared = datetime(2026, 11, 2, 10, tzinfo=timezone.utc)
    declare(s, alert.id, actor="kim", regimes=("nis2",), at=format_timestamp(declared))
    sinks = [_mail_sink(port, remind_before=["24h", "4h"]), _mail_sink(port, name="quiet")]  # no lead times

    at_21h = declared + timedelta(hours=21)  # early warning 3 h away: the 24 h and 4 h leads at once
    assert send_reminders(s, sinks, at_21h) == 1
    assert send_reminders(s, sinks, at_21h + timedelta(minutes=5)) == 0
    assert len(inbox.messages) == 1
    [text] = _texts(inbox)
    assert f"incident {alert.id[:12]}: nis2 early warning, 3h 00m left (due 2026-11-03T10:00:00.000Z)" in text

    restarted = [_mail_sink(port, remind_before=["24h", "4h"])]
    at_50h = declared + timedelta(hours=50)  # the 72 h notification is 22 h away; early warning overdue
    assert send_reminders(s, restarted, at_50h) == 1
    assert send_reminders(s, restarted, at_50h) == 0
    at_69h = declared + timedelta(hours=69)
    assert send_reminders(s, restarted, at_69h) == 1
    texts = _texts(inbox)
    assert len(texts) == 3 and "nis2 notification, 22h 00m left" in texts[1] and "3h 00m left" in texts[2]
    sent = [(e.detail["milestone"], e.detail["leads"]) for e in audit.entries(s, kinds=["incident.reminder"])]
    assert sent == [("early_warning", [14400, 86400]), ("notification", [86400]), ("notification", [14400])]
    assert audit.verify(s).ok


def test_a_reminder_no_sink_took_is_tried_again(one_alert, smtp):
    s, alert = one_alert
    inbox, port = smtp
    declare(s, alert.id, actor="kim", regimes=("gdpr",), at=DECLARED)
    with socket.socket() as probe:  # a port nobody listens on: the SMTP server is down
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    now = "2026-11-05T09:00:00.000Z"
    assert send_reminders(s, [_mail_sink(dead, remind_before=["4h"], timeout=2)], now) == 0
    assert send_reminders(s, [_mail_sink(port, remind_before=["4h"])], now) == 1
    assert "gdpr authority notification, 1h 00m left" in _texts(inbox)[0]


def test_remind_before_must_be_durations():
    from engine.alerts.sinks.base import SinkConfigError

    with pytest.raises(SinkConfigError, match=r"sink email: remind_before: not a duration: 'soon' .*\[24h, 4h\]"):
        _mail_sink(25, remind_before=["soon"])


def test_metrics_over_http_show_the_time_left(one_alert):
    from tests.api_peer import client, serving

    s, alert = one_alert
    declare(s, alert.id, actor="kim", regimes=("gdpr",), at=DECLARED)
    metrics = Metrics()
    service_round(s, [], metrics, now="2026-11-05T12:00:00.000Z")  # two hours overdue
    with serving(store=s, metrics=metrics) as (url, _, _), client(url, "viewer") as viewer:
        text = viewer.get("/metrics").text
    assert (f'wardwatch_incident_deadline_seconds{{milestone="authority_notification",regime="gdpr",'
            f'subject="{alert.id}"}} -7200.0') in text


def test_a_case_can_be_declared_too(one_alert):
    from engine.alerts.cases import CaseBuilder, case_settings

    s, alert = one_alert
    [case] = CaseBuilder(s, case_settings({})).update([alert])
    s.put_cases([case])
    incident = declare(s, case.id[:10], actor="kim", regimes=("gdpr",), at=DECLARED)
    assert (incident.subject, incident.record) == (case.id, "case")
    assert [d.milestone for d in deadlines(s, DECLARED, subject=case.id)] == ["authority_notification"]


@given(st.floats(min_value=-1e8, max_value=1e8, allow_nan=False))
def test_time_left_reads_as_days_or_hours_and_says_which_side_of_the_deadline(seconds):
    from engine.incidents import left_text

    text = left_text(seconds)
    assert text.endswith(" left" if seconds >= 0 else " overdue")
    first, second = text.split()[:2]
    if first.endswith("d"):
        shown = int(first[:-1]) * 86400 + int(second[:-1]) * 3600
        assert 0 <= abs(seconds) - shown < 3600
    else:
        shown = int(first[:-1]) * 3600 + int(second[:-1]) * 60
        assert 0 <= abs(seconds) - shown < 60 and abs(seconds) < 86400


@given(st.floats(min_value=-1e7, max_value=1e7, allow_nan=False), st.sampled_from([60, 3600, 4 * 3600, 86400]))
def test_a_reminder_names_the_subject_milestone_and_due_time_and_nothing_else(remaining, lead):
    from engine.incidents import Deadline, reminder_notice

    deadline = Deadline("0123456789abcdef", "nis2", "early_warning", "2026-11-03T10:00:00.000Z", remaining)
    notice = reminder_notice(deadline, lead)
    assert notice["kind"] == "deadline_reminder" and notice["subject"] == deadline.subject and notice["to"] is None
    assert notice["text"].startswith("incident 0123456789ab: nis2 early warning, ")
    assert notice["text"].endswith("(due 2026-11-03T10:00:00.000Z)")
    assert ("overdue" in notice["text"]) == (remaining < 0)
