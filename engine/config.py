"""Configuration: one YAML file, environment overrides, validated once at start.

Lookup order: ``--config PATH``, else ``./wardwatch.yaml``, else the built-in defaults (which run the demo on
the embedded store against ``fixtures/``). Environment variables ``WARDWATCH_<SECTION>__<KEY>`` override any
key (double underscore descends one level; the value is read as YAML, so ``true``/``5``/``[a, b]`` work).

Validation is strict on purpose: an unknown or mistyped key is an error naming the key and the file, because
a typo in a SIEM config silently disables detection.
"""

from __future__ import annotations

import copy
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import yaml

from engine import errors
from engine.retention_policy import DEFAULT_SECTION as RETENTION_DEFAULTS
from engine.retention_policy import RetentionConfigError, parse_retention


class ConfigError(errors.ConfigError):
    """A configuration problem; ``str()`` names the file and the dotted key (see :mod:`engine.errors`)."""


class OptionsError(ConfigError, errors.OptionsError):
    """A plug-in option is wrong (``file: connectors[2].datasett: unknown option (known: ...)``)."""

    def __init__(self, key: str, message: str, source: str):
        errors.OptionsError.__init__(self, key, message, source)


#: rules/privacy (and ehr_after_hours_read's office-hours) role lists (docs/enrichment.md "Roles and rare
#: surnames"): matched case-insensitively against
#: ehr.user.role / ehr.user.department, Sigma wildcards allowed. A site sets its own job titles in
#: rules.placeholders (a key it sets replaces that whole list; the other lists keep these defaults).
PRIVACY_ROLE_PLACEHOLDERS: dict[str, list[str]] = {
    "privacy_deceased_allowed_roles": [
        "*billing*", "*biller*", "*patient account*", "*patient financial*", "*revenue cycle*",
        "him", "him *", "* him", "* him *", "*health information*", "*medical record*",
        "*release of information*", "*coding*", "*coder*", "*clinical documentation*", "*decedent*",
        "*research*"],
    "privacy_deceased_allowed_departments": [
        "*billing*", "*patient account*", "*patient financial*", "*revenue cycle*", "him", "him *", "* him",
        "*health information*", "*medical record*", "*release of information*", "*coding*", "*research*"],
    "privacy_emergency_roles": [
        "*emergency*", "ed", "ed *", "* ed", "* ed *", "a&e*", "* a&e*", "er", "er *", "* er",
        "*paramedic*", "*trauma*", "*resuscitation*", "*rapid response*", "*notaufnahme*", "*notarzt*"],
    # encounter classes (ehr.patient.encounter_class: HL7 v3-ActCode EMER, or a site's ADT code) of an emergency
    "privacy_emergency_encounter_classes": ["emer", "emergency", "ed", "er", "a&e", "*notfall*"],
    # roles that work office hours (ehr_after_hours_read judges them by the site clock until their baseline can
    # tell; clinical staff are never judged by the clock alone once baselines run)
    "privacy_office_roles": [
        "*billing*", "*patient account*", "*patient financial*", "*revenue cycle*", "*health information*",
        "*medical record*", "*release of information*", "*coding*", "*coder*", "*clinical documentation*",
        "*research*", "*secretar*", "*administrat*", "him", "him *", "* him", "* him *"],
    # hospital-wide clinical services whose job is the admitted patients of every ward (co-worker and VIP rules:
    # quiet while the patient is admitted, an alert once not; docs/enrichment.md "Roles and rare surnames")
    "privacy_ward_service_roles": [
        "*pharmac*", "*apothek*", "*radiolog*", "*radiograph*", "*sonograph*", "*laborator*", "*phlebotom*",
        "*physiotherap*", "*physical therap*", "*occupational therap*", "*respiratory therap*", "*speech therap*",
        "*dietit*", "*dietic*", "*nutrition*", "*social work*", "*case manag*", "*discharge plan*",
        "*infection prevent*", "*infection control*"],
    # roles that print/export records as their job (ROI, HIM, research registries): bulk export at 50/h, not 10/h
    "privacy_disclosure_roles": [
        "him", "him *", "* him", "* him *", "*health information*", "*medical record*", "*release of information*",
        "*research*"],
}

DEFAULTS: dict[str, Any] = {
    "store": {
        "kind": "sqlite",
        "sqlite": {"path": "data/wardwatch.db"},
        "elasticsearch": {
            "hosts": ["http://127.0.0.1:9200"],
            "api_key": None,
            "api_key_file": None,
            "username": None,
            "password": None,
            "password_file": None,
            "ca_certs": None,
            "ssl_assert_fingerprint": None,
            "verify_certs": True,
            "request_timeout": 30,
            "max_retries": 3,
            "index_prefix": "wardwatch",
            "ingest_lag_seconds": 0,
            "allow_insecure_http": False,
        },
    },
    # vpn_watched_countries: rules/vpn/vpn_login_watched_country.yml; a placeholder list, set your site's own.
    # cache_dir: parsed rule files keyed by content hash (engine/sigma/cache.py); null turns it off
    "rules": {"paths": ["rules"], "placeholders": {"vpn_watched_countries": ["KP", "IR", "RU", "BY"],
                                                   **PRIVACY_ROLE_PLACEHOLDERS},
              "cache_dir": "data/cache"},
    "scheduler": {
        "rule_interval": "60s",
        "rule_intervals": {},
        "ingest_interval": "10s",
        "batch_size": 5000,
        "ingest_batches_per_run": 100,
        # one-shot ingest (ingest, run --once): 1 parses in a worker process, "auto" when 2+ CPUs (engine/ingest_worker.py)
        "ingest_workers": 0,
        "delivery_interval": "5s",
        "enrichment_refresh_interval": "60s",
        "retention_interval": "1h",
    },
    "connectors": [
        {"name": "ehr-audit-demo", "type": "fhir-auditevent-file", "path": "fixtures/ehr"},
        {"name": "vpn-demo", "type": "cisco-asa", "path": "fixtures/vpn-cisco_asa/cisco_asa.log",
         "timezone": "Europe/Berlin"},
        {"name": "windows-demo", "type": "winlogbeat", "path": "fixtures/windows-winlogbeat"},
    ],
    "enrichment": {
        "working_hours": {
            "timezone": "Europe/Berlin",
            "start": "07:00",
            "end": "19:00",
            "days": ["mon", "tue", "wed", "thu", "fri"],
        },
        "identity": None,
        "privacy": None,
        "geoip": None,
        "baselines": None,
    },
    "alerts": {
        "sinks": [{"type": "jsonl", "path": "data/alerts.jsonl"}, {"type": "console"}],
        "suppression": {},
        "evidence_cap": 100,
        "pseudonymise": {"fields": [], "key_env": "WARDWATCH_PSEUDONYM_KEY", "key_file": None},
        # alerts about one subject in one period -> one case (engine/alerts/cases.py, docs/alerts.md "Cases")
        # min_level: alerts of less severe rules (informational review lists) stay out of cases
        # by None: user + patient; hold: rule id or name -> {for, min_patients} or false, over the rule files'
        # wardwatch.hold (engine/alerts/hold.py)
        "cases": {"enabled": True, "by": None, "period": "24h", "weights": {}, "min_level": "low", "hold": {}},
    },
    "logging": {"level": "info", "format": "auto"},
    # the HTTP API (engine/api, docs/api.md): off until a port is set; loopback unless TLS and tokens
    "service": {"http": {"host": "127.0.0.1", "port": None, "token_file": None, "token_env": None,
                         "tokens_file": None, "tls": None, "max_hunt_jobs": 2}},
    # GDPR storage limitation; shape and meaning in engine/retention_policy.py (default: keep everything)
    "retention": copy.deepcopy(RETENTION_DEFAULTS),
}

#: Demo defaults: the after-hours rules would otherwise raise one alert per record opened, and one per
#: event of a VPN login (an ASA logs the AAA success and the session start of one login).
DEFAULTS["alerts"]["suppression"] = {
    "ehr_after_hours_read": {"by": ["user.name"], "for": "1h"},
    "vpn_admin_after_hours": {"by": ["user.name"], "for": "1h"},
    # one DCSync is several 4662 records (one per replication right): one alert per account and hour
    "windows_dcsync": {"by": ["SubjectUserName"], "for": "1h"},
    "windows_disabled_account_logon": {"by": ["user.name"], "for": "1h"},
}

#: What only the built-in demo (`make run`, no config file) adds: the demo directory, who is who across
#: Windows, the VPN and the EHR (the cross-source chain joins on it). A site's own config never inherits it:
#: a directory path that exists only in the repo would be a warning on every start.
DEMO_ONLY: dict[str, Any] = {"enrichment": {"identity": {
    "directory": "fixtures/directory/users.ldif",
    "privileged_groups": ["Domain Admins", "Enterprise Admins", "Schema Admins", "Administrators",
                          "Account Operators", "Server Operators", "Backup Operators", "DnsAdmins",
                          "Group Policy Creator Owners"],
}}}

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, None: 1}


def parse_duration(value: Any) -> float:
    """Seconds from ``"90s"``, ``"5m"``, ``"1h"``, ``"250ms"`` or a bare number of seconds."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value < 0:
            raise ValueError("must not be negative")
        return float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise ValueError(f"not a duration: {value!r} (use e.g. 30s, 5m, 1h)")
    return float(match.group(1)) * _UNITS[match.group(2)]


# --- a small declarative schema -------------------------------------------------------------------
# Each node: dict -> nested section (exact keys), or a checker callable(value) raising ValueError.

def _type(*types: type, nullable: bool = False) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value is None and nullable:
            return
        if isinstance(value, bool) and bool not in types:
            raise ValueError(f"expected {'/'.join(t.__name__ for t in types)}, got a boolean")
        if not isinstance(value, types):
            raise ValueError(f"expected {'/'.join(t.__name__ for t in types)}, got {type(value).__name__}")
    return check


def _one_of(*choices: str) -> Callable[[Any], None]:
    def check(value: Any) -> None:
        if value not in choices:
            raise ValueError(f"must be one of {', '.join(choices)}, got {value!r}")
    return check


def _ingest_workers(value: Any) -> None:
    if value not in ("auto", 0, 1) or isinstance(value, bool):
        raise ValueError(f"must be 0, 1 or \"auto\", got {value!r}")


def _port(value: Any) -> None:
    """A TCP port, 0 (any free port) or None (off): anything else would only fail later, at bind time."""
    _type(int, nullable=True)(value)
    if value is not None and not 0 <= value <= 65535:
        raise ValueError(f"a port must be 0..65535, got {value}")


def _duration(value: Any) -> None:
    parse_duration(value)


def _str_list(value: Any) -> None:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError("expected a list of strings")


def _mapping(value: Any) -> None:
    if not isinstance(value, dict):
        raise ValueError(f"expected a mapping, got {type(value).__name__}")


_ANY = lambda value: None  # noqa: E731 - free-form (validated by the component that owns it)

SCHEMA: dict[str, Any] = {
    "store": {
        "kind": _one_of("sqlite", "elasticsearch"),
        "sqlite": {"path": _type(str)},
        "elasticsearch": {
            "hosts": _str_list,
            "api_key": _type(str, nullable=True),
            "api_key_file": _type(str, nullable=True),
            "username": _type(str, nullable=True),
            "password": _type(str, nullable=True),
            "password_file": _type(str, nullable=True),
            "ca_certs": _type(str, nullable=True),
            "ssl_assert_fingerprint": _type(str, nullable=True),
            "verify_certs": _type(bool),
            "request_timeout": _type(int, float),
            "max_retries": _type(int),
            "index_prefix": _type(str),
            "ingest_lag_seconds": _type(int, float),
            "allow_insecure_http": _type(bool),
        },
    },
    "rules": {"paths": _str_list, "placeholders": _mapping, "cache_dir": _type(str, nullable=True)},
    "scheduler": {
        "rule_interval": _duration,
        "rule_intervals": _mapping,
        "ingest_interval": _duration,
        "batch_size": _type(int),
        "ingest_batches_per_run": _type(int),
        "ingest_workers": _ingest_workers,
        "delivery_interval": _duration,
        "enrichment_refresh_interval": _duration,
        "retention_interval": _duration,
    },
    "connectors": _type(list),
    "enrichment": {
        "working_hours": _type(dict, nullable=True),  # declared: WorkingHoursOptions
        "identity": _type(dict, nullable=True),  # declared: IdentityOptions
        "privacy": _type(dict, nullable=True),  # declared: PrivacyOptions
        "geoip": _type(dict, nullable=True),  # declared: GeoipOptions
        "baselines": _type(dict, nullable=True),  # declared: engine.baselines.BaselineOptions
    },
    "alerts": {
        "sinks": _type(list),
        "suppression": _mapping,
        "evidence_cap": _type(int),
        "pseudonymise": {
            "fields": _str_list,
            "key_env": _type(str, nullable=True),
            "key_file": _type(str, nullable=True),
        },
        "cases": {"enabled": _type(bool), "by": _ANY, "period": _duration, "weights": _mapping,
                  "min_level": _one_of("informational", "low", "medium", "high", "critical"), "hold": _mapping},
    },
    "logging": {"level": _one_of("debug", "info", "warning", "error"), "format": _one_of("auto", "json", "console")},
    "service": {"http": {"host": _type(str), "port": _port,
                         "token_file": _type(str, nullable=True), "token_env": _type(str, nullable=True),
                         "tokens_file": _type(str, nullable=True), "tls": _type(dict, nullable=True),
                         "max_hunt_jobs": _type(int)}},  # tls and the host: engine.api.settings.check_http
    "retention": _ANY,  # dataset names are free keys: checked by _validate_retention
}


def _validate(node: Any, schema: Any, path: str, source: str) -> None:
    if isinstance(schema, dict):
        if not isinstance(node, dict):
            raise ConfigError(source, path, f"expected a mapping, got {type(node).__name__}")
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            if key not in schema:
                known = ", ".join(sorted(schema))
                raise ConfigError(source, child, f"unknown key (known here: {known})")
            _validate(value, schema[key], child, source)
    else:
        try:
            schema(node)
        except ValueError as exc:
            raise ConfigError(source, path, str(exc)) from None


#: Keys of a connector entry that belong to the engine, not to the connector's declared options.
CONNECTOR_META_KEYS = frozenset({"name", "type", "interval", "enabled"})
SINK_META_KEYS = frozenset({"type"})


def _check_plugin_options(plugin_cls: type, entry: Mapping[str, Any], where: str, source: str,
                          meta: frozenset[str]) -> None:
    """Parse ``entry`` into the plug-in's declared ``Options`` (nothing is constructed or opened)."""
    from engine.plugins import InvalidOption, declared_options, looks_like_secret, parse_options, secret_refusal

    options_cls = declared_options(plugin_cls)
    if options_cls is None:  # a third-party plug-in without declared options: it checks its own at start
        for key in entry:
            if key not in meta and looks_like_secret(str(key)):
                raise ConfigError(source, f"{where}.{key}", secret_refusal(str(key)))
        return
    try:
        parse_options(options_cls, entry, ignore=meta)
    except InvalidOption as exc:
        raise OptionsError(f"{where}.{exc.key}" if exc.key else where, exc.message, source) from None


def _validate_connectors(connectors: list[Any], source: str) -> None:
    from connectors.base import ConnectorError, connector_class

    names: set[str] = set()
    for i, entry in enumerate(connectors):
        where = f"connectors[{i}]"
        if not isinstance(entry, dict):
            raise ConfigError(source, where, "expected a mapping with at least name and type "
                                             "(connectors is a list: '- name: ...')")
        for key in ("name", "type"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise ConfigError(source, f"{where}.{key}", "required string")
        if entry["name"] in names:
            raise ConfigError(source, f"{where}.name", f"duplicate connector name {entry['name']!r}")
        names.add(entry["name"])
        if "interval" in entry:
            try:
                parse_duration(entry["interval"])
            except ValueError as exc:
                raise ConfigError(source, f"{where}.interval", str(exc)) from None
        if "enabled" in entry and not isinstance(entry["enabled"], bool):
            raise ConfigError(source, f"{where}.enabled", "expected true or false")
        try:
            cls = connector_class(entry["type"])
        except ConnectorError as exc:
            raise ConfigError(source, f"{where}.type", str(exc)) from None
        _check_plugin_options(cls, entry, where, source, CONNECTOR_META_KEYS)


def _validate_sinks(sinks: list[Any], source: str) -> None:
    from engine.alerts.sinks import sink_class

    names: set[str] = set()
    for i, sink in enumerate(sinks):
        where = f"alerts.sinks[{i}]"
        if not isinstance(sink, dict) or not isinstance(sink.get("type"), str):
            raise ConfigError(source, f"{where}.type", "required string (jsonl, console, ...)")
        try:
            cls = sink_class(sink["type"])
        except LookupError as exc:
            raise ConfigError(source, f"{where}.type", str(exc)) from None
        _check_plugin_options(cls, sink, where, source, SINK_META_KEYS)
        if isinstance(sink.get("name"), str):  # the name is the sink's outbox: two sinks cannot share one
            if sink["name"] in names:
                raise ConfigError(source, f"{where}.name", f"duplicate sink name {sink['name']!r}")
            names.add(sink["name"])


def _validate_enrichment(section: Mapping[str, Any], source: str) -> None:
    """Each enrichment block parses into its declared options (no lookup file is opened here)."""
    from engine.enrich.privacy import PrivacyOptions
    from engine.enrich.time_context import WorkingHoursOptions

    _validate_block(section.get("working_hours"), WorkingHoursOptions, "enrichment.working_hours", source)
    _validate_block(section.get("privacy"), PrivacyOptions, "enrichment.privacy", source)
    from engine.enrich.identity import IdentityOptions

    _validate_block(section.get("identity"), IdentityOptions, "enrichment.identity", source)
    from engine.enrich.geoip import GeoipOptions

    _validate_block(section.get("geoip"), GeoipOptions, "enrichment.geoip", source)
    from engine.baselines import BaselineOptions

    _validate_block(section.get("baselines"), BaselineOptions, "enrichment.baselines", source)


def _validate_block(section: Mapping[str, Any] | None, options_cls: type, where: str, source: str) -> None:
    if not section:
        return
    from engine.plugins import InvalidOption, parse_options

    try:
        parse_options(options_cls, section)
    except InvalidOption as exc:
        raise OptionsError(f"{where}.{exc.key}" if exc.key else where, exc.message, source) from None


#: Secrets the file may name only by file or environment variable: key -> how to give it instead.
_SECRET_KEYS = {
    ("store", "elasticsearch", "password"): "password_file or the environment variable WARDWATCH_ES_PASSWORD",
    ("store", "elasticsearch", "api_key"): "api_key_file or the environment variable WARDWATCH_ES_API_KEY",
}


def _refuse_secret_literals(user: Mapping[str, Any], source: str) -> None:
    """A password or API key written into the YAML ends up in backups, tickets and git: refuse it."""
    for path, instead in _SECRET_KEYS.items():
        node: Any = user
        for part in path:
            node = node.get(part) if isinstance(node, Mapping) else None
        if node not in (None, ""):
            raise ConfigError(source, ".".join(path), f"secrets never belong in the config file; use {instead}")


def _check_source_store_prefix(data: Mapping[str, Any], source: str) -> None:
    """An ``elasticsearch-source`` refuses the store's indices by prefix: it must know the configured one."""
    if data["store"]["kind"] != "elasticsearch":
        return
    prefix = data["store"]["elasticsearch"]["index_prefix"]
    for i, entry in enumerate(data["connectors"]):
        if entry.get("type") == "elasticsearch-source" and entry.get("store_index_prefix", "wardwatch") != prefix:
            raise ConfigError(source, f"connectors[{i}].store_index_prefix",
                              f"must equal store.elasticsearch.index_prefix ({prefix!r}), so that this "
                              f"connector never reads the store's own indices")


def _check_es_credentials(data: Mapping[str, Any], source: str, environ: Mapping[str, str]) -> None:
    """A username needs a password; credentials never go over plain http:// beyond loopback."""
    es = data["store"]["elasticsearch"]
    if data["store"]["kind"] != "elasticsearch":
        return
    if es.get("username") and not (es.get("password") or es.get("password_file")
                                   or environ.get("WARDWATCH_ES_PASSWORD")):
        raise ConfigError(source, "store.elasticsearch.username",
                          "a username needs a password: set password_file or the environment variable "
                          "WARDWATCH_ES_PASSWORD")
    credentials = es.get("username") or es.get("api_key") or es.get("api_key_file") \
        or environ.get("WARDWATCH_ES_API_KEY")
    if credentials and not es.get("allow_insecure_http"):
        from connectors.fhir_auth import InsecureTransportError, check_credentials_transport

        for host in es["hosts"]:
            try:
                check_credentials_transport(host, what="store.elasticsearch.hosts", allow_insecure_http=False)
            except InsecureTransportError as exc:
                raise ConfigError(source, "store.elasticsearch.hosts", str(exc)) from None


def _validate_http(section: Mapping[str, Any], source: str) -> None:
    """The API's TLS block, and no API beyond loopback without TLS and tokens (no FastAPI import here)."""
    from engine.api.settings import check_http

    check_http(section, source)


def _validate_retention(section: Any, source: str) -> None:
    try:
        parse_retention(section)
    except RetentionConfigError as exc:
        raise ConfigError(source, f"retention.{exc.key}" if exc.key != "retention" else "retention",
                          exc.message) from None


def _validate_cases(section: Mapping[str, Any], source: str) -> None:
    from engine.alerts.cases import CaseConfigError, case_settings
    from engine.alerts.hold import site_holds

    try:
        case_settings(section)
        site_holds(section.get("hold") or {})
    except CaseConfigError as exc:
        key, _, message = str(exc).partition(": ")
        raise ConfigError(source, key, message) from None


def _validate_suppression(rules: Mapping[str, Any], source: str) -> None:
    for rule_id, spec in rules.items():
        where = f"alerts.suppression.{rule_id}"
        if not isinstance(spec, dict) or set(spec) - {"by", "for"}:
            raise ConfigError(source, where, "expected {by: [fields], for: duration}")
        try:
            _str_list(spec.get("by", []))
            parse_duration(spec.get("for", "1h"))
        except ValueError as exc:
            raise ConfigError(source, where, str(exc)) from None


def deep_merge(base: dict[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """``WARDWATCH_STORE__KIND=elasticsearch`` -> ``{"store": {"kind": "elasticsearch"}}``."""
    result: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("WARDWATCH_"):
            continue
        parts = [p.lower() for p in name[len("WARDWATCH_"):].split("__")]
        if len(parts) < 2 or parts[0] not in SCHEMA:
            continue  # e.g. WARDWATCH_PSEUDONYM_KEY: a secret read elsewhere, not a config key
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError:
            value = raw
        node = result
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node[parts[-1]] = value
    return result


@dataclass
class Config:
    """The validated configuration. ``data`` is the merged dict; ``source`` is where it came from."""

    data: dict[str, Any]
    source: str
    base_dir: Path

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def resolve_path(self, value: str) -> Path:
        """Relative paths in a config file are relative to that file (defaults: to the working dir)."""
        path = Path(value)
        return path if path.is_absolute() else self.base_dir / path


def rule_cache_dir(config: Config) -> Path | None:
    """Where ``load_rules`` keeps its parsed-rule cache (``rules.cache_dir``, relative to the config)."""
    value = config["rules"].get("cache_dir")
    return None if value is None else config.resolve_path(value)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    environ = os.environ if environ is None else environ
    if path is None and Path("wardwatch.yaml").is_file():
        path = "wardwatch.yaml"
    if path is None:
        source, base_dir, user = "<built-in defaults>", Path.cwd(), {}
    else:
        source, base_dir = str(path), Path(path).resolve().parent
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(source, "", f"cannot read: {exc.strerror}") from None
        try:
            user = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"line {mark.line + 1}" if mark else ""
            raise ConfigError(source, where, f"invalid YAML: {getattr(exc, 'problem', exc)}") from None
        if not isinstance(user, dict):
            raise ConfigError(source, "", "the top level must be a mapping")
    _validate(user, SCHEMA, "", source)
    overrides = env_overrides(environ)
    _validate(overrides, SCHEMA, "", "environment (WARDWATCH_*)")
    # Lists (connectors, sinks) given by the user replace the defaults instead of merging into them.
    # the demo directory only where the demo is (the repository): elsewhere the built-in defaults would
    # warn on every command about a file that was never meant to be there
    demo = path is None and (base_dir / DEMO_ONLY["enrichment"]["identity"]["directory"]).is_file()
    data = deep_merge(deep_merge(DEFAULTS, DEMO_ONLY) if demo else DEFAULTS, user)
    data = deep_merge(data, overrides)
    _validate(data, SCHEMA, "", source)
    _refuse_secret_literals(user, source)
    _validate_connectors(data["connectors"], source)
    _validate_sinks(data["alerts"]["sinks"], source)
    _validate_enrichment(data["enrichment"], source)
    _validate_suppression(data["alerts"]["suppression"], source)
    _validate_cases(data["alerts"]["cases"], source)
    _validate_retention(data["retention"], source)
    _validate_http(data["service"]["http"], source)
    _check_es_credentials(data, source, environ)
    _check_source_store_prefix(data, source)
    return Config(data=data, source=source, base_dir=base_dir)


def read_secret(value: str | None, file: str | None, env_name: str | None = None, *,
                source: str = "", key: str = "") -> str | None:
    """Secrets come from a file or the environment rather than the YAML, so the config can be shared.

    A secret file that cannot be read is a :class:`ConfigError` naming the key and the file (one line,
    no traceback): a missing mounted secret is an operator's mistake, not a crash.
    """
    if file:
        try:
            return Path(file).read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ConfigError(source or "config", key, f"cannot read secret file {file}: "
                                                       f"{exc.strerror or exc}") from None
    if env_name and os.environ.get(env_name):
        return os.environ[env_name]
    return value


def check_config(config: Config) -> str:
    """The summary ``wardwatch config check`` prints for a config that loaded (it is validated already)."""
    from engine.sigma import load_rules

    rule_paths = [str(config.resolve_path(p)) for p in config["rules"]["paths"]]
    ruleset = load_rules(rule_paths, placeholders=config["rules"]["placeholders"],
                         cache_dir=rule_cache_dir(config))
    rules = len(ruleset.rules) + len(ruleset.correlations)
    refused = f" ({len(ruleset.errors)} refused: see wardwatch rules validate)" if ruleset.errors else ""
    return (f"ok: {len(config['connectors'])} connectors, {len(config['alerts']['sinks'])} sinks, "
            f"{rules} rules{refused}")
