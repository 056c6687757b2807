"""Configuration: defaults run the demo, typos are errors naming key and file, env overrides work."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.config import ConfigError, load_config, parse_duration

ROOT = Path(__file__).resolve().parent.parent


def test_builtin_defaults_run_the_demo_on_sqlite(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = load_config(None, environ={})
    assert config.source == "<built-in defaults>"
    assert config["store"]["kind"] == "sqlite"
    assert {c["type"] for c in config["connectors"]} == {"fhir-auditevent-file", "cisco-asa", "winlogbeat"}
    assert config["enrichment"]["identity"] is None  # no demo directory here
    monkeypatch.chdir(ROOT)
    assert load_config(None, environ={})["enrichment"]["identity"]["directory"] == "fixtures/directory/users.ldif"


def test_a_site_config_does_not_inherit_the_demo_directory(tmp_path):
    path = tmp_path / "wardwatch.yaml"
    path.write_text("store:\n  sqlite:\n    path: w.db\n")
    assert load_config(path, environ={})["enrichment"]["identity"] is None


def test_unknown_key_names_file_and_dotted_key(tmp_path):
    path = tmp_path / "wardwatch.yaml"
    path.write_text("store:\n  kind: sqlite\n  sqllite:\n    path: x.db\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    assert str(path) in str(error.value)
    assert "store.sqllite" in str(error.value)


def test_wrong_type_and_bad_choice_are_reported(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("scheduler:\n  batch_size: many\n")
    with pytest.raises(ConfigError, match=r"scheduler\.batch_size: expected int"):
        load_config(path, environ={})
    path.write_text("store:\n  kind: postgres\n")
    with pytest.raises(ConfigError, match=r"store\.kind: must be one of sqlite, elasticsearch"):
        load_config(path, environ={})


def test_invalid_yaml_names_the_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  kind: [sqlite\n")
    with pytest.raises(ConfigError, match="line"):
        load_config(path, environ={})


def test_env_overrides_nested_keys_and_parse_yaml_values(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  kind: sqlite\n")
    config = load_config(path, environ={
        "WARDWATCH_STORE__KIND": "elasticsearch",
        "WARDWATCH_STORE__ELASTICSEARCH__HOSTS": "[https://es1:9200, https://es2:9200]",
        "WARDWATCH_SCHEDULER__BATCH_SIZE": "250",
        "WARDWATCH_PSEUDONYM_KEY": "not-a-config-key",
    })
    assert config["store"]["kind"] == "elasticsearch"
    assert config["store"]["elasticsearch"]["hosts"] == ["https://es1:9200", "https://es2:9200"]
    assert config["scheduler"]["batch_size"] == 250


def test_bad_env_override_is_an_error_naming_the_environment(tmp_path):
    with pytest.raises(ConfigError, match=r"environment.*scheduler\.batch_size"):
        load_config(None, environ={"WARDWATCH_SCHEDULER__BATCH_SIZE": "lots"})


def test_connectors_need_unique_names(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("connectors:\n  - {name: a, type: ndjson, path: x}\n  - {name: a, type: ndjson, path: y}\n")
    with pytest.raises(ConfigError, match=r"connectors\[1\]\.name: duplicate"):
        load_config(path, environ={})


def test_relative_paths_resolve_against_the_config_file(tmp_path):
    path = tmp_path / "conf" / "c.yaml"
    path.parent.mkdir()
    path.write_text("store:\n  sqlite:\n    path: db/w.db\n")
    config = load_config(path, environ={})
    assert config.resolve_path(config["store"]["sqlite"]["path"]) == tmp_path / "conf" / "db" / "w.db"


@pytest.mark.parametrize("text,seconds", [("30s", 30), ("5m", 300), ("1h", 3600), ("250ms", 0.25), (2, 2)])
def test_durations(text, seconds):
    assert parse_duration(text) == seconds


def test_bad_duration():
    with pytest.raises(ValueError, match="not a duration"):
        parse_duration("soon")


def test_example_config_is_valid():
    example = Path(__file__).resolve().parent.parent / "wardwatch.example.yaml"
    config = load_config(example, environ={})
    assert config["store"]["kind"] == "sqlite"


from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(
        ["store", "kind", "sqlite", "path", "rules", "paths", "scheduler", "batch_size", "connectors", "name",
         "type", "alerts", "sinks", "suppression", "logging", "level", "x"]), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(document=st.dictionaries(st.sampled_from(["store", "rules", "scheduler", "connectors", "alerts",
                                                  "logging", "enrichment", "service", "bogus"]), _values,
                                max_size=4))
def test_any_yaml_document_is_either_a_config_or_a_config_error(tmp_path, document):
    import yaml as _yaml

    path = tmp_path / "fuzz.yaml"
    path.write_text(_yaml.safe_dump(document))
    try:
        load_config(path, environ={})
    except ConfigError as error:
        assert str(path) in str(error)


# --- secrets hygiene (issue 7, item 13) -------------------------------------------------------------

@pytest.mark.parametrize("key,instead", [("password", "password_file"), ("api_key", "api_key_file")])
def test_secret_literals_in_the_file_are_refused(tmp_path, key, instead):
    path = tmp_path / "c.yaml"
    path.write_text(f"store:\n  kind: elasticsearch\n  elasticsearch:\n    username: ww\n    {key}: hunter2\n")
    with pytest.raises(ConfigError) as error:
        load_config(path, environ={})
    message = str(error.value)
    assert f"store.elasticsearch.{key}: secrets never belong in the config file; use {instead}" in message
    assert "WARDWATCH_ES_" in message and "hunter2" not in message


def test_username_without_a_password_is_a_clear_error(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  kind: elasticsearch\n  elasticsearch:\n    username: ww\n")
    with pytest.raises(ConfigError, match=r"store\.elasticsearch\.username: a username needs a password"):
        load_config(path, environ={})
    assert load_config(path, environ={"WARDWATCH_ES_PASSWORD": "x"})["store"]["elasticsearch"]["username"] == "ww"


def test_missing_secret_file_is_one_line_naming_key_and_file(tmp_path):
    from engine.app import open_configured_store

    path = tmp_path / "c.yaml"
    path.write_text("store:\n  kind: elasticsearch\n  elasticsearch:\n    username: ww\n"
                    f"    password_file: {tmp_path}/nope\n")
    with pytest.raises(ConfigError) as error:
        open_configured_store(load_config(path, environ={}))
    assert str(error.value) == (f"{path}: store.elasticsearch.password_file: cannot read secret file "
                                f"{tmp_path}/nope: No such file or directory")


def test_short_pseudonymisation_key_is_refused(tmp_path, monkeypatch):
    from engine.app import build_pseudonymiser

    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  pseudonymise:\n    fields: [ehr.patient.id]\n    key_env: WW_KEY\n")
    monkeypatch.setenv("WW_KEY", "short-key")
    with pytest.raises(ConfigError, match=r"alerts\.pseudonymise: the pseudonymisation key is 9 bytes; "
                                          r"at least 32 are needed"):
        build_pseudonymiser(load_config(path, environ={}))
    monkeypatch.setenv("WW_KEY", "k" * 32)
    assert build_pseudonymiser(load_config(path, environ={})).fields == {"ehr.patient.id"}


def test_missing_pseudonymisation_key_file_names_key_and_file(tmp_path):
    from engine.app import build_pseudonymiser

    path = tmp_path / "c.yaml"
    path.write_text("alerts:\n  pseudonymise:\n    fields: [ehr.patient.id]\n    key_file: keys/pseudonym.key\n")
    with pytest.raises(ConfigError, match=r"alerts\.pseudonymise\.key_file: cannot read secret file .*"
                                          r"keys/pseudonym\.key: No such file"):
        build_pseudonymiser(load_config(path, environ={}))


def test_elasticsearch_credentials_never_go_over_plain_http_beyond_loopback(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("store:\n  kind: elasticsearch\n  elasticsearch:\n    hosts: [http://es.lan:9200]\n"
                    "    username: ww\n    password_file: /run/secrets/es\n")
    with pytest.raises(ConfigError, match=r"store\.elasticsearch\.hosts: http://es\.lan:9200 is plain http://"):
        load_config(path, environ={})
    path.write_text(path.read_text().replace("es.lan", "127.0.0.1"))
    assert load_config(path, environ={})["store"]["elasticsearch"]["username"] == "ww"  # loopback is fine
    path.write_text(path.read_text().replace("127.0.0.1", "es.lan") + "    allow_insecure_http: true\n")
    assert load_config(path, environ={})["store"]["elasticsearch"]["allow_insecure_http"] is True
