"""The webhook sink against a real HTTP receiver the test starts, on both stores (the outbox is the store's).

What an integrator relies on: every POST is signed (the receiver recomputes the HMAC), a 500 is retried
after its backoff and delivered once, a 400 is dead-lettered without blocking the alerts behind it, a poison
alert stops blocking after ``retry.attempts`` rounds, and a crash between send and acknowledge re-sends
the revision with the same ``Idempotency-Key``.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.alerts.sinks import build_sinks, deliver_pending
from engine.alerts.sinks.webhook import WebhookSink
from engine.config import ConfigError, load_config
from engine.store.base import RuleCheckpoint
from tests.store_fixtures import make_alert, store, store_factory, ts  # noqa: F401 - fixtures (SQLite and Elasticsearch)
from tests.webhook_peer import Receiver

SECRET = b"s3cret-shared-with-the-receiver"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def sqlite_store(store_factory):  # noqa: F811
    """For what is the sink's own behaviour (signature, TLS, connection refused), not the outbox's."""
    return store_factory()


def webhook(receiver: Receiver, monkeypatch: pytest.MonkeyPatch, **options: object) -> WebhookSink:
    monkeypatch.setenv("WW_TEST_HOOK_SECRET", SECRET.decode())
    [sink] = build_sinks([{"type": "webhook", "name": "hooks", "url": receiver.url,
                           "secret_env": "WW_TEST_HOOK_SECRET", **options}])
    return sink


def commit(store, *alerts) -> None:  # noqa: F811 - the fixture's name
    store.commit_rule_run(RuleCheckpoint("rule-1", None), list(alerts))


def dead_letters(store) -> list:  # noqa: F811
    refresh = getattr(store, "refresh", None)
    if callable(refresh):
        refresh()
    return [d for d in store.list_dead_letters() if d.source.startswith("sink:")]


def test_each_revision_is_one_signed_post_with_its_idempotency_key(store, monkeypatch):  # noqa: F811
    alert = make_alert(group_key="user.name=jdoe")
    commit(store, alert)
    with Receiver(secret=SECRET) as receiver:
        sink = webhook(receiver, monkeypatch)
        assert deliver_pending(store, [sink]) == 1
        sink.close()
    [req] = receiver.requests
    assert req.signature_ok is True and req.status == 200
    assert req.headers["idempotency-key"] == f"{alert.id}:1"
    assert req.headers["content-type"] == "application/json"
    body = req.json
    assert body["type"] == "alert" and body["data"]["id"] == alert.id and body["data"]["group"] == {"user.name": "jdoe"}
    assert int(req.headers["x-wardwatch-timestamp"]) > 1_700_000_000 and body["sent_at"].endswith("Z")
    assert store.pending_deliveries("hooks") == []


def test_a_wrong_secret_is_refused_by_the_receiver_and_the_revision_dead_lettered(sqlite_store, monkeypatch):  # noqa: F811
    store = sqlite_store
    commit(store, make_alert())
    with Receiver(secret=b"another-secret") as receiver:
        sink = webhook(receiver, monkeypatch)
        deliver_pending(store, [sink])
    assert [r.signature_ok for r in receiver.requests] == [False]
    [dead] = dead_letters(store)
    assert dead.source == "sink:hooks" and "HTTP 401" in dead.reason


def test_500_is_retried_after_its_backoff_and_delivered_once(store, monkeypatch):  # noqa: F811
    alert = make_alert()
    commit(store, alert)
    clock = Clock()
    with Receiver(secret=SECRET, script=[500]) as receiver:
        sink = webhook(receiver, monkeypatch, retry={"attempts": 5, "backoff": "60s"})
        assert deliver_pending(store, [sink], clock=clock) == 0
        clock.now += 30  # still backing off: the peer is not asked again
        assert deliver_pending(store, [sink], clock=clock) == 0
        assert len(receiver.requests) == 1
        clock.now += 31
        assert deliver_pending(store, [sink], clock=clock) == 1
    assert [r.status for r in receiver.requests] == [500, 200]
    assert list(receiver.accepted) == [f"{alert.id}:1"]
    assert store.pending_deliveries("hooks") == [] and dead_letters(store) == []


def test_429_waits_for_the_receivers_retry_after(sqlite_store, monkeypatch):
    store = sqlite_store
    commit(store, make_alert())
    clock = Clock()
    with Receiver(secret=SECRET, script=[429], error_headers={"Retry-After": "120"}) as receiver:
        sink = webhook(receiver, monkeypatch, retry={"backoff": "1s", "max_backoff": "10m"})
        assert deliver_pending(store, [sink], clock=clock) == 0
        clock.now += 61  # the backoff alone (1 s) has passed; the receiver's 120 s have not
        assert deliver_pending(store, [sink], clock=clock) == 0 and len(receiver.requests) == 1
        clock.now += 60
        assert deliver_pending(store, [sink], clock=clock) == 1
    assert [r.status for r in receiver.requests] == [429, 200]


def test_400_is_dead_lettered_without_patient_data_and_the_outbox_moves_on(store, monkeypatch):  # noqa: F811
    refused = make_alert("rule-1", "ehr.patient.id=P-4711", first=ts(0))
    fine = make_alert("rule-1", "user.name=jdoe", first=ts(5))
    commit(store, refused, fine)
    with Receiver(secret=SECRET, answer=lambda r: 400 if r.json["data"]["id"] == refused.id else 200) as receiver:
        deliver_pending(store, [webhook(receiver, monkeypatch)])
    assert [b["data"]["id"] for b in receiver.accepted.values()] == [fine.id]
    [dead] = dead_letters(store)
    assert dead.source == "sink:hooks" and dead.location == f"alert {refused.id} revision 1"
    assert dead.reason.startswith("rejected: HTTP 400 from http://127.0.0.1:")
    assert "P-4711" not in dead.reason + dead.raw and "SECRETPATH" not in dead.reason  # no PHI, no URL path
    assert store.pending_deliveries("hooks") == []


def test_a_poison_alert_is_dead_lettered_after_its_attempts_and_stops_blocking(store, monkeypatch):  # noqa: F811
    poison = make_alert("rule-1", "user.name=poison", first=ts(0))
    behind = make_alert("rule-1", "user.name=jdoe", first=ts(5))
    commit(store, poison, behind)
    clock = Clock()
    with Receiver(secret=SECRET, answer=lambda r: 500 if r.json["data"]["id"] == poison.id else 200) as receiver:
        sink = webhook(receiver, monkeypatch, retry={"attempts": 3, "backoff": "1s", "max_backoff": "2s"})
        for _ in range(3):
            assert deliver_pending(store, [sink], clock=clock) == 0
            clock.now += 2
        assert deliver_pending(store, [sink], clock=clock) == 1
    assert [r.status for r in receiver.requests] == [500, 500, 500, 200]
    [dead] = dead_letters(store)
    assert dead.reason.startswith("undeliverable after 3 attempts: HTTP 500")
    assert store.pending_deliveries("hooks") == []


def test_a_crash_between_send_and_acknowledge_resends_the_same_idempotency_key(store, monkeypatch):  # noqa: F811
    alert = make_alert()
    commit(store, alert)
    with Receiver(secret=SECRET) as receiver:
        def crash(*args: object, **kwargs: object) -> None:
            raise KeyboardInterrupt("killed after the POST, before the outbox was acknowledged")

        with monkeypatch.context() as m:
            m.setattr(store, "mark_delivered", crash)
            with pytest.raises(KeyboardInterrupt):
                deliver_pending(store, [webhook(receiver, monkeypatch)])
        assert deliver_pending(store, [webhook(receiver, monkeypatch)]) == 1  # the restarted service
    keys = [r.headers["idempotency-key"] for r in receiver.requests]
    assert keys == [f"{alert.id}:1", f"{alert.id}:1"]
    assert len(receiver.accepted) == 1  # the receiver's dedup made it exactly once
    assert store.pending_deliveries("hooks") == []


def test_an_unreachable_receiver_keeps_the_revision_in_the_outbox(sqlite_store, monkeypatch):  # noqa: F811
    store = sqlite_store
    commit(store, make_alert())
    receiver = Receiver(secret=SECRET)
    receiver.stop()  # nothing listens on that port any more
    sink = webhook(receiver, monkeypatch)
    assert deliver_pending(store, [sink]) == 0
    assert len(store.pending_deliveries("hooks")) == 1 and dead_letters(store) == []
    assert sink.retry_state["alert"].failures == 1


def test_https_receiver_with_the_hospital_ca(sqlite_store, monkeypatch, tmp_path):  # noqa: F811
    store = sqlite_store
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    commit(store, make_alert())
    with Receiver(secret=SECRET, tls=ca) as receiver:
        assert receiver.url.startswith("https://")
        assert deliver_pending(store, [webhook(receiver, monkeypatch, ca_file=str(tmp_path / "ca.pem"))]) == 1
        untrusted = webhook(receiver, monkeypatch, name="untrusted")  # system CAs: the cert is not trusted
        commit(store, make_alert(first=ts(30)))
        assert deliver_pending(store, [untrusted]) == 0
    assert len(receiver.accepted) == 1


def _config(tmp_path: Path, sink: str) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(f"alerts:\n  sinks:\n    - {sink}\n")
    return path


@pytest.mark.parametrize("sink, error", [
    ("{type: webhook, url: 'http://soar.example.org/hook', secret_env: S}",
     r"alerts\.sinks\[0\]\.url: http://soar\.example\.org is plain http:// beyond loopback: use https://"),
    ("{type: webhook, url: 'https://soar.example.org/hook', secret: hunter2}",
     r"alerts\.sinks\[0\]\.secret: a secret must not be written in the config file; use secret_file"),
    ("{type: webhook, url: 'https://soar.example.org/hook'}", r"alerts\.sinks\[0\]\.secret_file: required"),
    ("{type: webhook, url: 'https://soar.example.org/hook', secret_env: S, retry: {attempts: 0}}",
     r"alerts\.sinks\[0\]\.retry\.attempts: must be at least 1"),
    ("{type: webhook, url: 'https://soar.example.org/hook', secret_env: S, drop: [id]}",
     r"alerts\.sinks\[0\]\.drop: 'id' cannot be dropped"),
])
def test_config_errors_name_the_sink_key(tmp_path, sink, error):
    with pytest.raises(ConfigError, match=error):
        load_config(_config(tmp_path, sink), environ={})


def test_run_once_on_the_demo_posts_every_alert_and_case_once(tmp_path, monkeypatch):
    import yaml

    from engine.cli import main
    from tests.conftest import demo_connectors

    root = Path(__file__).resolve().parents[1]
    monkeypatch.setenv("WW_TEST_HOOK_SECRET", SECRET.decode())
    with Receiver(secret=SECRET) as receiver:
        config = {"rules": {"paths": [str(root / "rules")]}, "store": {"sqlite": {"path": str(tmp_path / "w.db")}},
                  "connectors": demo_connectors(),
                  "alerts": {"sinks": [{"type": "webhook", "url": receiver.url, "secret_env": "WW_TEST_HOOK_SECRET",
                                        "deliver": "both"}]}}
        path = tmp_path / "wardwatch.yaml"
        path.write_text(yaml.safe_dump(config))
        assert main(["--config", str(path), "run", "--once"]) == 0
        first = len(receiver.requests)
        assert main(["--config", str(path), "run", "--once"]) == 0  # nothing new: nothing re-sent
    types = [r.json["type"] for r in receiver.requests]
    assert first == len(receiver.requests) and "alert" in types and "case" in types
    assert all(r.signature_ok and r.status == 200 for r in receiver.requests)
    assert len(receiver.accepted) == first  # every Idempotency-Key once
    assert all(len(r.json["data"]["evidence"]) <= 10 for r in receiver.requests)  # the HTTP sinks' default cap


def test_two_sinks_with_one_name_are_refused_when_the_config_loads(tmp_path):
    path = tmp_path / "wardwatch.yaml"
    path.write_text("alerts:\n  sinks:\n"
                    "    - {type: webhook, name: soar, url: 'https://a.example.org/h', secret_env: S}\n"
                    "    - {type: webhook, name: soar, url: 'https://b.example.org/h', secret_env: S}\n")
    with pytest.raises(ConfigError, match=r"alerts\.sinks\[1\]\.name: duplicate sink name 'soar'"):
        load_config(path, environ={})
