"""rules/vpn and the VPN brute-force rule on their fixtures, through the engine as `wardwatch rules test` runs them.

Pipeline: tests/data/vpn_rules/*.ndjson (normalised vpn.auth events of four vendors, an ordinary day around
each scenario) -> the production enrichment chain (working hours Europe/Berlin, privacy roster with
datasets [ehr.audit, vpn.auth], GeoIP from the test's own mmdb) -> a throw-away SQLite store -> the engine's
Evaluator over every alerting rule. Each rule fires on its positive file and not on its negative one, and
the ordinary day alone fires nothing.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from engine.app import alerts_over_sample, build_enrichment
from engine.cli import main as cli_main
from engine.config import load_config
from engine.sigma import load_rules

pytest.importorskip("mmdb_writer")
from tests.test_geoip import write_test_dbs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "vpn_rules"
RULES = [ROOT / "rules" / "vpn", ROOT / "rules" / "healthcare" / "vpn_bruteforce_then_success.yml"]
SCENARIOS = sorted({p.name.split(".")[0] for p in DATA.glob("*.positive.ndjson")})


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    tmp = tmp_path_factory.mktemp("vpnrules")
    write_test_dbs(tmp)
    config_path = tmp / "wardwatch.yaml"
    config_path.write_text(yaml.safe_dump({"enrichment": {
        "working_hours": {"timezone": "Europe/Berlin", "start": "07:00", "end": "19:00",
                          "days": ["mon", "tue", "wed", "thu", "fri"]},
        "privacy": {"roster_csv": str(DATA / "roster.csv"), "timezone": "Europe/Berlin",
                    "datasets": ["ehr.audit", "vpn.auth"]},
        "geoip": {"city_db": "city.mmdb", "asn_db": "asn.mmdb"},
    }}))
    config = load_config(str(config_path))
    ruleset = load_rules([str(p) for p in RULES], placeholders=config["rules"]["placeholders"])
    assert not ruleset.errors, ruleset.errors
    return config, ruleset


def alerting_names(setup: tuple[Any, Any], name: str) -> set[str]:
    """Names of the rules that alert on fixture ``name`` (same engine path as ``wardwatch rules test``)."""
    config, ruleset = setup
    with (DATA / f"{name}.ndjson").open(encoding="utf-8") as fh:
        events = build_enrichment(config).enrich_all([json.loads(line) for line in fh if line.strip()])
    names = {item.id: item.name for item in [*ruleset.rules.values(), *ruleset.correlations.values()]}
    return {names[a.rule_id] for a in alerts_over_sample(ruleset, events)}


def test_at_least_eight_alerting_vpn_rules_each_with_fixtures(setup: tuple[Any, Any]) -> None:
    _, ruleset = setup
    alerting = [r.name for r in ruleset.rules.values() if r.level != "informational"]
    alerting += [c.name for c in ruleset.correlations.values() if c.name != "vpn_bruteforce"]
    assert len(alerting) >= 8
    assert sorted(alerting) == SCENARIOS
    for name in SCENARIOS:
        assert (DATA / f"{name}.negative.ndjson").is_file()


def test_an_ordinary_day_fires_nothing(setup: tuple[Any, Any]) -> None:
    assert alerting_names(setup, "background") == set()


@pytest.mark.parametrize("rule", SCENARIOS)
def test_positive_fires_negative_does_not(setup: tuple[Any, Any], rule: str) -> None:
    assert rule in alerting_names(setup, f"{rule}.positive")
    assert rule not in alerting_names(setup, f"{rule}.negative")


def test_rules_validate_loads_the_subdirectory(capsys: pytest.CaptureFixture[str]) -> None:
    """rules.paths defaults to ["rules"], which loads rules/vpn too (and the placeholder has a default)."""
    code = cli_main(["rules", "validate"])
    out = capsys.readouterr().out
    assert code == 0 and "0 error(s)" in out
    config = load_config(None)
    ruleset = load_rules([str(config.resolve_path(p)) for p in config["rules"]["paths"]],
                         placeholders=config["rules"]["placeholders"])
    assert "vpn_password_spray" in {c.name for c in ruleset.correlations.values()}
