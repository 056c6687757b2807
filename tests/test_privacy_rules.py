"""rules/privacy against fixtures/privacy: every positive fixture fires, no negative one does.

Pipeline as in production, minus the store: flat events (or FHIR AuditEvents through the shared mapping, or an
access-log CSV through ehr-csv) -> PrivacyEnricher (roster.csv, patients.csv, vip.txt) -> the engine's Sigma
evaluator -> for correlation rules, the engine's correlation over the base rule's matches.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.enrich.privacy import PrivacyEnricher
from engine.events import timestamp_ms

sigma = pytest.importorskip("engine.sigma", reason="the Sigma evaluator (engine.sigma.load_rules) is not there yet")
correlation = pytest.importorskip("engine.correlation")

ROOT = Path(__file__).resolve().parent.parent
RULES = ROOT / "rules" / "privacy"
FIX = ROOT / "fixtures" / "privacy"
EVENTS = FIX / "events"
SCENARIOS = sorted({p.name.split(".")[0] for p in EVENTS.glob("*.ndjson")})


@pytest.fixture(scope="module")
def ruleset() -> Any:
    from engine.config import DEFAULTS  # the shipped role lists (privacy_* placeholders)

    rs = sigma.load_rules([str(RULES)], placeholders=DEFAULTS["rules"]["placeholders"])
    assert not rs.errors, rs.errors
    return rs


@pytest.fixture(scope="module")
def enricher() -> PrivacyEnricher:
    return PrivacyEnricher.from_config({
        "roster_csv": str(FIX / "roster.csv"),
        "patients_csv": str(FIX / "patients.csv"),
        "vip_list_file": str(FIX / "vip.txt"),
        "timezone": "Europe/Berlin",
    })


def by_name(ruleset: Any, name: str) -> Any:
    for item in list(ruleset.rules.values()) + list(ruleset.correlations.values()):
        if item.name == name:
            return item
    raise KeyError(name)


def fires(ruleset: Any, name: str, events: list[dict]) -> bool:
    """True if rule ``name`` alerts on ``events``: a detection matches one, or the correlation triggers."""
    item = by_name(ruleset, name)
    if name in {r.name for r in ruleset.rules.values()}:
        return any(item.matches(e) for e in events)
    spec = item.spec
    matches = []
    for rule_id in spec.rules:
        rule = ruleset.rules[rule_id]
        matches += [correlation.Match(rule_id=rule_id, ts_ms=timestamp_ms(e["@timestamp"]), event_id=e["event.id"],
                                      fields=e) for e in events if rule.matches(e)]
    return bool(correlation.evaluate_correlation(spec, matches))


def load(path: Path, enricher: PrivacyEnricher) -> list[dict]:
    with path.open(encoding="utf-8") as fh:
        return [enricher.enrich(json.loads(line)) for line in fh if line.strip()]


def test_every_rule_has_metadata_and_fixtures(ruleset: Any) -> None:
    alerting = [r for r in ruleset.rules.values() if r.level != "informational"]
    alerting += list(ruleset.correlations.values())
    assert len(alerting) == 13
    for item in alerting:
        assert "wardwatch.privacy" in item.tags, item.name
        assert item.name in SCENARIOS, f"no fixtures for {item.name}"
        assert item.description and item.level


@pytest.mark.parametrize("name", SCENARIOS)
def test_positive_fixture_fires(ruleset: Any, enricher: PrivacyEnricher, name: str) -> None:
    assert fires(ruleset, name, load(EVENTS / f"{name}.positive.ndjson", enricher))


@pytest.mark.parametrize("name", SCENARIOS)
def test_negative_fixture_stays_quiet(ruleset: Any, enricher: PrivacyEnricher, name: str) -> None:
    assert not fires(ruleset, name, load(EVENTS / f"{name}.negative.ndjson", enricher))


def test_positive_fixtures_do_not_trip_unrelated_detections(ruleset: Any, enricher: PrivacyEnricher) -> None:
    """Each single-event positive fixture fires its own rule and no other relationship rule."""
    single = [r for r in ruleset.rules.values() if r.level != "informational"]
    for name in SCENARIOS:
        events = load(EVENTS / f"{name}.positive.ndjson", enricher)
        fired = {r.name for r in single if any(r.matches(e) for e in events)}
        assert fired <= {name}, (name, fired)


def test_fhir_auditevents_through_mapping(ruleset: Any, enricher: PrivacyEnricher) -> None:
    from connectors.fhir_mapping import auditevent_to_event

    def mapped(path: Path) -> list[dict]:
        return [enricher.enrich(auditevent_to_event(json.loads(line), raw=line.encode()))
                for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]

    assert fires(ruleset, "ehr_privacy_btg_outside_emergency", mapped(FIX / "btg_auditevents.positive.ndjson"))
    assert not fires(ruleset, "ehr_privacy_btg_outside_emergency", mapped(FIX / "btg_auditevents.negative.ndjson"))


def test_access_log_csv_through_ehr_csv(ruleset: Any, enricher: PrivacyEnricher, tmp_path: Path) -> None:
    from connectors.ehr_csv import EhrCsvConnector

    shutil.copy(FIX / "access_log.csv", tmp_path)
    conn = EhrCsvConnector("epic", {
        "path": str(tmp_path), "timestamp_format": "%d.%m.%Y %H:%M:%S", "timezone": "Europe/Berlin",
        "columns": {"ACCESS_TIME": "@timestamp", "USER_ID": "user.name", "PAT_ID": "ehr.patient.id",
                    "METRIC_NAME": "event.action", "WORKSTATION_ID": "host.name"},
        "value_maps": {"METRIC_NAME": {"Chart Review": "read"}},
    })
    events = [enricher.enrich(e) for e in conn.read(None, 100).events]
    rule = by_name(ruleset, "ehr_privacy_self_access")
    assert [rule.matches(e) for e in events] == [True, False]


@pytest.mark.parametrize("name", ["ehr_privacy_vip_record", "ehr_privacy_coworker_record",
                                  "ehr_privacy_deceased_patient", "ehr_privacy_self_access"])
def test_repeated_reads_of_one_chart_are_one_alert_per_hour_in_the_users_case(
        ruleset: Any, enricher: PrivacyEnricher, name: str) -> None:
    """A chart open writes several audit events: each read was an alert of its own, so one look at a VIP's
    chart was four alerts in the user's case. The rule file now declares one alert per user, patient and
    UTC hour, with every read of the hour as evidence, and keeps it in the user's case (not a patient case too)."""
    from engine.alerts.cases import case_settings, memberships, merged_suppression
    from engine.app import alerts_over_sample
    from engine.config import DEFAULTS

    first = load(EVENTS / f"{name}.positive.ndjson", enricher)[0]
    assert first["@timestamp"] == "2026-03-10T09:00:00.000Z"

    def read(ts: str) -> dict:
        raw = {k: v for k, v in first.items() if not k.startswith(("ehr.user.", "ehr.relationship.", "ehr.patient."))
               or k == "ehr.patient.id"}
        return enricher.enrich(raw | {"@timestamp": ts, "event.id": f"{name}-{ts}"})

    chart_open = [read(f"2026-03-10T09:0{i}:1{i}.000Z") for i in range(4)]   # one look: four audit events
    later = [read("2026-03-10T10:40:00.000Z")]                                 # the next hour: its own alert
    rule = by_name(ruleset, name)
    alerts = [a for a in alerts_over_sample(ruleset, chart_open + later,   # the service's jobs, as `rules test` runs them
                                            suppression=merged_suppression(ruleset, DEFAULTS["alerts"]["suppression"]))
              if a.rule_id == rule.id]
    assert sorted((a.first_trigger, sorted(a.evidence)) for a in alerts) == [
        ("2026-03-10T09:00:10.000Z", sorted(e["event.id"] for e in chart_open)),
        ("2026-03-10T10:40:00.000Z", [later[0]["event.id"]])]
    assert all(a.group == {"user.name": first["user.name"], "ehr.patient.id": first["ehr.patient.id"]}
               for a in alerts)
    settings = case_settings(DEFAULTS["alerts"]["cases"], ruleset)
    assert {m[:2] for a in alerts for m in memberships(a, settings)} == {("user", first["user.name"])}
