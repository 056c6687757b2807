"""Impossible travel on the vendor fixtures, and the four vendor fixtures in one store, as an operator runs them:
``wardwatch ingest TYPE FILE`` (vendor connector -> enrichment incl. GeoIP from a test-written MaxMind
database -> SQLite store), ``wardwatch run --once`` (the rule pack), ``wardwatch alerts list``.

The staff, their home addresses and every scenario time come from fixtures/vpn_staff.py, which the four
fixture generators share; the GeoIP database is written from its NETWORKS table (tests/test_geoip.py).
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from contextlib import closing
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from fixtures.vpn_staff import HOMES, NETWORKS, QUIET, TRAVEL, TRAVELLER, country_of
from tests.test_vpn_end_to_end import EXPECTED, FIXTURES, ROOT, TYPES, run_cli

pytest.importorskip("mmdb_writer")
from tests.test_geoip import write_fixture_dbs  # noqa: E402

TRAVEL_RULE = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a07"    # rules/vpn/vpn_impossible_travel.yml
WATCHED = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a08"        # rules/vpn/vpn_login_watched_country.yml
AFTER_HOURS = "0c6f1f4e-6a43-4b43-9d0e-6a1d1b7e2a09"    # rules/vpn/vpn_admin_after_hours.yml


def configure(tmp_path: Path, geoip: bool) -> Path:
    """A wardwatch.yaml in ``tmp_path`` (the working directory): SQLite store, the whole rule pack, GeoIP
    from the fixture database when ``geoip``."""
    enrichment = ""
    if geoip:
        city, asn = write_fixture_dbs(tmp_path)
        enrichment = f"enrichment:\n  geoip:\n    city_db: {city}\n    asn_db: {asn}\n"
    (tmp_path / "wardwatch.yaml").write_text(f"store:\n  sqlite:\n    path: {tmp_path}/w.db\n"
                                             f"rules:\n  paths: [{ROOT}/rules]\nconnectors: []\n"
                                             f"alerts:\n  sinks: []\nlogging:\n  level: warning\n{enrichment}")
    return tmp_path / "w.db"


def ingest_and_alerts(capsys, types: list[str]) -> list[dict[str, Any]]:
    """Ingest each vendor fixture, run the rules once, and return every alert (``alerts list``)."""
    for type_name in types:
        code, out, err = run_cli(capsys, "ingest", type_name, str(FIXTURES[type_name]), "-o",
                                 "timezone=Europe/Berlin")
        assert code == 0 and "0 dead letters" in out, err
    code, _, err = run_cli(capsys, "run", "--once")
    assert code == 0, err
    code, out, err = run_cli(capsys, "alerts", "list", "--alerts", "--format", "json")
    assert code == 0, err
    return [orjson.loads(line) for line in out.splitlines()]


def groups(alerts: list[dict[str, Any]], rule: str) -> list[dict[str, str]]:
    return sorted((a["group"] for a in alerts if a["rule_id"] == rule), key=lambda g: sorted(g.items()))


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def logins(db: Path, user: str) -> list[tuple[datetime, str, str | None]]:
    """(time, address, country) of ``user``'s successful VPN logins and session starts with an address in the
    store: what the travel base rule (vpn_login_success_geo) looks at."""
    with closing(sqlite3.connect(db)) as conn:
        rows = [orjson.loads(r[0]) for r in conn.execute("SELECT doc FROM events")]
    return sorted((datetime.fromisoformat(e["@timestamp"].replace("Z", "+00:00")), e["source.ip"],
                   e.get("source.geo.country_iso_code")) for e in rows
                  if e.get("user.name") == user and e.get("event.outcome") == "success" and e.get("source.ip")
                  and ("authentication" in as_list(e.get("event.category"))
                       or ("session" in as_list(e.get("event.category"))
                           and "start" in as_list(e.get("event.type")))))


@pytest.mark.parametrize("type_name", TYPES)
def test_impossible_travel_fires_for_the_traveller_only(type_name, tmp_path, capsys, monkeypatch):
    """Positive: home (DE), then ~40 minutes later the US or Russia. Negatives in the same fixture: home then a
    German mobile address 45 minutes later (one country); home then Chicago 11.5 hours later (time enough)."""
    monkeypatch.chdir(tmp_path)
    db = configure(tmp_path, geoip=True)
    alerts = ingest_and_alerts(capsys, [type_name])
    assert groups(alerts, TRAVEL_RULE) == [{"user.name": TRAVELLER[type_name]}]

    # the store holds what the scenario claims, so the negatives are real negatives: each user's logins
    # around the scenario are exactly its logins, with the countries the database gives
    users = list(dict.fromkeys(user for user, *_ in TRAVEL[type_name]))
    assert len(users) == 3
    for user in users:
        planned = [(start, ip) for u, start, ip, _ in TRAVEL[type_name] if u == user]
        seen = [row for row in logins(db, user) if any(abs(row[0] - start) <= QUIET for start, _ in planned)]
        # near the scenario: only the scenario's logins (each a few events within its first minute)
        assert all(any(ip == row[1] and timedelta(0) <= row[0] - start < timedelta(minutes=1)
                       for start, ip in planned) for row in seen), (user, seen)
        assert {ip for _, ip, _ in seen} == {ip for _, ip in planned}
        assert all(country == country_of(ip) for _, ip, country in seen)
        countries = [country_of(ip) for _, ip in planned]
        gap = planned[1][0] - planned[0][0]
        if user == TRAVELLER[type_name]:
            assert countries[0] != countries[1] and gap < timedelta(hours=1)
        elif countries == ["DE", "DE"]:  # the same-country negative: another address, within the hour
            assert planned[0][1] != planned[1][1] and gap < timedelta(hours=1)
        else:  # far apart, but time enough
            assert countries == ["DE", "US"] and gap > timedelta(hours=10)


@pytest.mark.parametrize("type_name", TYPES)
def test_without_a_geoip_database_travel_is_silent_and_nothing_fails(type_name, tmp_path, capsys, monkeypatch):
    """No database configured: no source.geo.* from Wardwatch, so the travel rule cannot fire, and ingest and
    rules still run cleanly. GlobalProtect is the exception by design: PAN-OS logs the client's source region
    itself (srcregion / 'Source region:'), which the parser maps to source.geo.country_iso_code."""
    monkeypatch.chdir(tmp_path)
    db = configure(tmp_path, geoip=False)
    alerts = ingest_and_alerts(capsys, [type_name])
    gateway_country = type_name == "globalprotect"
    assert groups(alerts, TRAVEL_RULE) == ([{"user.name": TRAVELLER[type_name]}] if gateway_country else [])
    with closing(sqlite3.connect(db)) as conn:
        keys = {key for (doc,) in conn.execute("SELECT doc FROM events") for key in orjson.loads(doc)}
    assert not any(key.startswith("source.as.") for key in keys)
    geo = {key for key in keys if key.startswith("source.geo.")}
    assert geo == ({"source.geo.country_iso_code"} if gateway_country else set())


@pytest.mark.slow
def test_four_vendor_fixtures_in_one_store_give_exactly_their_alerts(tmp_path, capsys, monkeypatch):
    """Each person has one home address on every gateway, so the four fixtures together alert exactly as the
    four alone: no concurrent sessions or travel made of one person's logins on two gateways."""
    monkeypatch.chdir(tmp_path)
    configure(tmp_path, geoip=True)
    combined = ingest_and_alerts(capsys, TYPES)
    def key(group: dict[str, str]) -> str:
        return orjson.dumps(group, option=orjson.OPT_SORT_KEYS).decode()

    alone: Counter[tuple[str, str]] = Counter()
    for type_name in TYPES:
        sub = tmp_path / type_name
        sub.mkdir()
        monkeypatch.chdir(sub)
        configure(sub, geoip=True)
        alone.update((a["rule_id"], key(a["group"])) for a in ingest_and_alerts(capsys, [type_name]))
    together = Counter((a["rule_id"], key(a["group"])) for a in combined)
    assert together == alone
    # and what they give is the scenarios, nothing else: the end-to-end expectations of each vendor, travel
    # (one user per vendor), the Moscow login (FortiGate lstark) on the watched-country list, and the
    # administrators' logins outside working hours (admin.huber's brute-forced logins at night on the ASA and
    # OpenVPN; admin.roth's early FortiGate GUI login)
    expected = Counter((rule, key(group)) for t in TYPES for rule, groups_ in EXPECTED[t].items()
                       for group in groups_)
    expected.update((TRAVEL_RULE, key({"user.name": user})) for user in TRAVELLER.values())
    expected[(WATCHED, key({"user.name": "lstark", "source.ip": "203.0.113.199"}))] += 1
    expected[(AFTER_HOURS, key({"user.name": "admin.huber"}))] += 2
    expected[(AFTER_HOURS, key({"user.name": "admin.roth"}))] += 1
    assert together == expected


def test_networks_cover_every_home_and_scenario_address() -> None:
    """Every address the fixtures use for a login is placed by the GeoIP table (no silent gaps)."""
    assert all(country_of(ip) for ip in HOMES.values())
    assert all(country_of(ip) for logins_ in TRAVEL.values() for _, _, ip, _ in logins_)
    assert set(NETWORKS)  # the table the database is written from
