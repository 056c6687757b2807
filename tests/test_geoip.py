"""GeoIP enrichment from the user's MaxMind databases: ECS source.geo.* / source.as.*, absent without a database.

The test writes its own small City and ASN databases with ``mmdb-writer`` (a dev dependency), so no MaxMind
data is shipped or downloaded; ``maxminddb`` then reads them exactly as it reads GeoLite2 files.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from engine.app import build_enrichment
from engine.config import ConfigError, load_config
from engine.enrich.geoip import GeoipEnricher

mmdb_writer = pytest.importorskip("mmdb_writer")
netaddr = pytest.importorskip("netaddr")

#: network -> (country, city, lat, lon); the addresses of tests/data/vpn_rules
CITIES = {
    "192.0.2.0/24": ("DE", "Berlin", 52.52, 13.405),
    "198.51.100.0/24": ("DE", "Munich", 48.137, 11.575),
    "203.0.113.0/24": ("RU", "Moscow", 55.755, 37.617),
    "198.18.0.0/15": ("US", "Chicago", 41.878, -87.629),
    "100.64.0.0/10": ("AT", "Vienna", 48.208, 16.373),
}
ASNS = {"192.0.2.0/24": (64500, "Example Broadband DE"), "203.0.113.0/24": (64501, "Example Hosting")}


def write_test_dbs(directory: Path, cities: dict[str, tuple[str, str, float, float]] | None = None,
                   asns: dict[str, tuple[int, str]] | None = None) -> tuple[Path, Path]:
    """A City and an ASN .mmdb in MaxMind's record layout (GeoLite2-City / GeoLite2-ASN keys), of ``cities``
    and ``asns`` (default: CITIES and ASNS, the addresses of tests/data/vpn_rules)."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    city = MMDBWriter(ip_version=4, database_type="GeoLite2-City", languages=["en"], description="wardwatch test")
    for net, (iso, name, lat, lon) in (CITIES if cities is None else cities).items():
        city.insert_network(IPSet([net]), {"country": {"iso_code": iso, "names": {"en": iso}},
                                           "city": {"names": {"en": name}},
                                           "location": {"latitude": lat, "longitude": lon}})
    asn = MMDBWriter(ip_version=4, database_type="GeoLite2-ASN", languages=["en"], description="wardwatch test")
    for net, (number, org) in (ASNS if asns is None else asns).items():
        asn.insert_network(IPSet([net]), {"autonomous_system_number": number,
                                          "autonomous_system_organization": org})
    city_path, asn_path = directory / "city.mmdb", directory / "asn.mmdb"
    city.to_db_file(str(city_path))
    asn.to_db_file(str(asn_path))
    return city_path, asn_path


def write_fixture_dbs(directory: Path) -> tuple[Path, Path]:
    """City and ASN databases placing the VPN vendor fixtures' addresses (fixtures/vpn_staff.py NETWORKS)."""
    from fixtures.vpn_staff import NETWORKS

    return write_test_dbs(directory, {net: row[:4] for net, row in NETWORKS.items()},
                          {net: row[4:] for net, row in NETWORKS.items()})


@pytest.fixture
def dbs(tmp_path: Path) -> tuple[Path, Path]:
    return write_test_dbs(tmp_path)


def test_fills_ecs_geo_and_as_fields(dbs: tuple[Path, Path]) -> None:
    enricher = GeoipEnricher.from_config({"city_db": str(dbs[0]), "asn_db": str(dbs[1])})
    event = enricher.enrich({"event.dataset": "vpn.auth", "source.ip": "203.0.113.50"})
    assert event["source.geo.country_iso_code"] == "RU"
    assert event["source.geo.city_name"] == "Moscow"
    assert event["source.geo.location.lat"] == pytest.approx(55.755)
    assert event["source.geo.location.lon"] == pytest.approx(37.617)
    assert event["source.as.number"] == 64501
    assert event["source.as.organization.name"] == "Example Hosting"
    # a network in the City database only: no AS fields, not empty ones
    us = enricher.enrich({"source.ip": "198.18.4.20"})
    assert us["source.geo.country_iso_code"] == "US" and "source.as.number" not in us


def test_unknown_private_and_odd_addresses_add_nothing(dbs: tuple[Path, Path]) -> None:
    enricher = GeoipEnricher.from_config({"city_db": str(dbs[0])})
    for value in ("10.1.2.3", "not an ip", "", None, 42, ["192.0.2.1"], "2001:db8::1", "999.1.1.1"):
        event = {"source.ip": value}
        assert enricher.enrich(dict(event)) == event


def test_the_gateways_own_country_is_kept(dbs: tuple[Path, Path]) -> None:
    enricher = GeoipEnricher.from_config({"city_db": str(dbs[0])})
    event = enricher.enrich({"source.ip": "192.0.2.7", "source.geo.country_iso_code": "AT"})
    assert event["source.geo.country_iso_code"] == "AT" and event["source.geo.city_name"] == "Berlin"


def test_without_a_database_configured_the_fields_are_absent(tmp_path: Path) -> None:
    config = load_config(None)
    chain = build_enrichment(config)
    assert not any(step.name == "geoip" for step in chain.enrichers)
    [event] = chain.enrich_all([{"@timestamp": "2026-11-03T10:00:00.000Z", "source.ip": "203.0.113.50"}])
    assert not any(key.startswith(("source.geo", "source.as")) for key in event)


def test_config_example_loads_and_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    write_test_dbs(tmp_path)
    path = tmp_path / "wardwatch.yaml"
    # the example of docs/enrichment.md, with the test's database names
    path.write_text(yaml.safe_dump({"enrichment": {"geoip": {"city_db": "city.mmdb", "asn_db": "asn.mmdb"}}}))
    chain = build_enrichment(load_config(str(path)))
    [event] = chain.enrich_all([{"@timestamp": "2026-11-03T10:00:00.000Z", "source.ip": "192.0.2.9"}])
    assert event["source.geo.country_iso_code"] == "DE" and event["source.as.number"] == 64500


def test_missing_database_or_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    for geoip in ({"city_db": "nope.mmdb"}, {"city_db": None}, {"citydb": "x.mmdb"}):
        path = tmp_path / "wardwatch.yaml"
        path.write_text(yaml.safe_dump({"enrichment": {"geoip": geoip}}))
        with pytest.raises(ConfigError) as info:
            build_enrichment(load_config(str(path)))
        assert "enrichment.geoip" in str(info.value)


def test_a_database_replaced_on_disk_is_reopened_and_a_broken_one_keeps_the_last(tmp_path: Path) -> None:
    """geoipupdate replaces the .mmdb weekly: the service must answer from the new file after ``refresh``. A
    broken or vanished file keeps the last good database, and ``/health`` (``lookups``) says why."""
    city, _asn = write_test_dbs(tmp_path)
    enricher = GeoipEnricher.from_config({"city_db": str(city)})
    assert enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"] == "Berlin"
    [status] = enricher.lookups()
    assert status.ok and status.error is None and status.loaded_at is not None

    (tmp_path / "download").mkdir()
    newer, _ = write_test_dbs(tmp_path / "download", {"192.0.2.0/24": ("DE", "Hamburg", 53.55, 9.99)})
    os.replace(newer, city)  # as geoipupdate does: a new file renamed over the old
    enricher.refresh()
    assert enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"] == "Hamburg"
    loaded_at = enricher.lookups()[0].loaded_at

    city.write_bytes(b"half a download")
    enricher.refresh()
    [broken] = enricher.lookups()
    assert enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"] == "Hamburg"
    assert not broken.ok and broken.loaded and broken.loaded_at == loaded_at
    assert broken.error == "not reloaded: InvalidDatabaseError"

    city.unlink()
    enricher.refresh()
    [gone] = enricher.lookups()
    assert enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"] == "Hamburg"
    assert not gone.ok and gone.loaded and gone.error == "unavailable: No such file or directory"


def test_the_load_names_the_database_and_warns_when_it_is_older_than_maxmind_allows(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """A database nobody updates misplaces addresses (impossible-travel alerts on a re-assigned range), and
    the GeoLite2 licence forbids using a database once an update has been out for 30 days. MaxMind updates
    at least weekly, so a database built more than 35 days ago is past that: the load says what it opened and
    when it was built, and warns then (``wardwatch config check`` shows both lines)."""
    import logging
    import time

    import engine.enrich.geoip as geoip

    def load(days_later: int) -> list[logging.LogRecord]:
        caplog.clear()
        monkeypatch.setattr(geoip, "_clock", lambda: time.time() + days_later * 86_400)
        with caplog.at_level(logging.INFO, logger="engine.enrich"):
            GeoipEnricher.from_config({"city_db": str(city)})
        return list(caplog.records)

    city, _asn = write_test_dbs(tmp_path)
    built = time.strftime("%Y-%m-%d", time.gmtime())
    fresh = load(0)
    assert f"geoip database {city} loaded: GeoLite2-City, built {built}" in [r.getMessage() for r in fresh]
    assert not [r for r in load(34) if r.levelno >= logging.WARNING]
    [warning] = [r.getMessage() for r in load(36) if r.levelno >= logging.WARNING]
    assert warning == (f"geoip database {city} was built on {built}, 36 days ago: MaxMind publishes one at "
                       "least weekly, and the GeoLite2 licence forbids using a database 30 days after its update "
                       "came out (run geoipupdate)")


def test_a_database_that_ages_past_the_limit_while_loaded_says_so_in_health_and_once_in_the_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """The load's warning only covers a database that was already old. A service loaded with a fresh one and
    a geoipupdate job that stopped runs on for months: ``/health`` names the build date and, past the limit,
    a warning (``ok`` stays true: lookups still answer, and a load balancer must not drop the service for
    it); ``wardwatch_lookup_built_timestamp_seconds`` lets the SOC alert on the age; the log says it once."""
    import logging
    import time

    import engine.enrich.geoip as geoip

    city, _asn = write_test_dbs(tmp_path)
    enricher = GeoipEnricher.from_config({"city_db": str(city)})
    city_before = enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"]
    [fresh] = enricher.lookups()
    built = fresh.built_at
    assert built is not None and abs(built - time.time()) < 86_400
    assert fresh.ok and fresh.warning is None
    assert fresh.to_dict()["built_at"] == time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(built))

    monkeypatch.setattr(geoip, "_clock", lambda: time.time() + 40 * 86_400)
    caplog.clear()  # the load's own lines (logged at info when an earlier test left the level there)
    with caplog.at_level(logging.WARNING, logger="engine.enrich"):
        [old] = enricher.lookups()
        [again] = enricher.lookups()
    day = time.strftime("%Y-%m-%d", time.gmtime(built))
    assert old.ok and old.warning == again.warning == (
        f"built on {day}, 40 days ago: past the GeoLite2 licence's 30 days after an update came out (run geoipupdate)")
    assert old.to_dict()["warning"] == old.warning
    told = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert told == [f"geoip database {city}: {old.warning}"]
    assert enricher.enrich({"source.ip": "192.0.2.7"})["source.geo.city_name"] == city_before  # still answers


def test_the_service_exports_each_databases_build_time(tmp_path: Path) -> None:
    from engine.metrics import Metrics
    from engine.scheduler import lookup_metrics

    city, asn = write_test_dbs(tmp_path)
    enricher = GeoipEnricher.from_config({"city_db": str(city), "asn_db": str(asn)})
    metrics = Metrics()
    lookup_metrics(metrics, enricher.lookups())
    for name, status in zip(("geoip.city", "geoip.asn"), enricher.lookups()):
        assert metrics.value("wardwatch_lookup_built_timestamp_seconds", lookup=name) == status.built_at
        assert metrics.value("wardwatch_lookup_up", lookup=name) == 1


def test_a_database_already_old_at_load_is_told_once_not_again_by_health(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    import logging
    import time

    import engine.enrich.geoip as geoip

    city, _asn = write_test_dbs(tmp_path)
    later = time.time() + 50 * 86_400
    monkeypatch.setattr(geoip, "_clock", lambda: later)
    monkeypatch.setattr(time, "time", lambda: later)  # loaded_at (the lookup's clock) 50 days on too
    with caplog.at_level(logging.WARNING, logger="engine.enrich"):
        enricher = GeoipEnricher.from_config({"city_db": str(city)})
        [status] = enricher.lookups()
    assert status.ok and status.warning is not None and "50 days ago" in status.warning
    [told] = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert "was built on" in told and "50 days ago" in told
