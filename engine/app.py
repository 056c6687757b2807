"""Wiring: from a validated Config to the running parts (store, rules, jobs, connectors, enrichment, sinks).

Everything the CLI and the scheduler need is built here once, so there is exactly one way a config turns
into behaviour.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from connectors.base import Connector, connector_class
from engine.config import CONNECTOR_META_KEYS, Config, ConfigError, parse_duration, read_secret
from engine.enrich import EnrichmentChain, Enricher
from engine.enrich.time_context import TimeContextEnricher
from engine.evaluation import Evaluator, RuleJob, build_jobs
from engine.logs import get_logger
from engine.private_files import private_dir, sqlite_files, tighten
from engine.plugins import InvalidOption, declared_options, options_dict, parse_options
from engine.alerts.pseudonymise import Pseudonymiser
from engine.alerts.cases import merged_suppression, with_case_builder
from engine.audit.recorder import with_audit_recorder
from engine.audit.rules import record_rule_loads
from engine.alerts.sinks import Sink, build_sinks
from engine.store.base import Store

_log = get_logger("wardwatch.app")


def open_configured_store(config: Config, *, reader: bool = False) -> Store:
    """The configured store, after making what Wardwatch owns private (every command opens the store).

    ``reader``: a command that only reads (``status``, ``alerts list``) opens a SQLite file with pre-scheme-2
    event ids instead of being refused; the store then refuses writes and says why in ``store.refusal``."""
    from engine.store import open_store

    tighten_owned_files(config)
    section = config["store"]
    if section["kind"] == "sqlite":
        path = config.resolve_path(section["sqlite"]["path"])
        private_dir(path.parent)
        return open_store("sqlite", path=path, refuse_old_ids=not reader)
    es = section["elasticsearch"]
    password = read_secret(es["password"], es["password_file"], "WARDWATCH_ES_PASSWORD",
                           source=config.source, key="store.elasticsearch.password_file")
    api_key = read_secret(es["api_key"], es["api_key_file"], "WARDWATCH_ES_API_KEY",
                          source=config.source, key="store.elasticsearch.api_key_file")
    if es["ca_certs"] and not Path(es["ca_certs"]).is_file():  # the TLS error would not name the file
        raise ConfigError(config.source, "store.elasticsearch.ca_certs", f"{es['ca_certs']}: no such file")
    options: dict[str, Any] = {
        "hosts": es["hosts"],
        "api_key": api_key,
        "basic_auth": (es["username"], password) if es["username"] else None,
        "ca_certs": es["ca_certs"],
        "ssl_assert_fingerprint": es["ssl_assert_fingerprint"],
        "verify_certs": es["verify_certs"],
        "request_timeout": es["request_timeout"],
        "max_retries": es["max_retries"],
        "index_prefix": es["index_prefix"],
        "ingest_lag_seconds": es["ingest_lag_seconds"],
    }
    return open_store("elasticsearch", **options)


def owned_paths(config: Config) -> list[tuple[str, list[Path]]]:
    """(config key, paths) of everything Wardwatch writes that already exists or will: all of it holds PHI.

    The store's directory itself is not listed: it may be an operator's directory (a store path of
    ``./w.db``), and a directory Wardwatch creates is 0700 from the start.
    """
    owned: list[tuple[str, list[Path]]] = []
    if config["store"]["kind"] == "sqlite":
        owned.append(("store.sqlite.path", sqlite_files(config.resolve_path(config["store"]["sqlite"]["path"]))))
    for i, sink in enumerate(config["alerts"]["sinks"]):
        if isinstance(sink, dict) and sink.get("type") == "jsonl" and isinstance(sink.get("path"), str):
            owned.append((f"alerts.sinks[{i}].path", [config.resolve_path(sink["path"])]))
    for i, entry in enumerate(config["connectors"]):
        if isinstance(entry, dict) and isinstance(entry.get("spool_dir"), str):
            owned.append((f"connectors[{i}].spool_dir", [config.resolve_path(entry["spool_dir"])]))
    return owned


def tighten_owned_files(config: Config) -> list[str]:
    """Make what an older (or hand-made) install left group/world-readable private, and say what changed."""
    changed: list[str] = []
    for key, paths in owned_paths(config):
        try:
            results = tighten(paths)
        except PermissionError as exc:
            raise ConfigError(config.source, key, str(exc)) from None
        for result in results:
            _log.warning("tightened file mode", path=result.path, old_mode=result.old_mode,
                         new_mode=result.new_mode, key=key)
            changed.append(result.path)
    return changed


def load_ruleset(config: Config, paths: list[str] | None = None) -> Any:
    from engine.config import rule_cache_dir
    from engine.sigma import load_rules

    rule_paths = [str(config.resolve_path(p)) for p in (paths or config["rules"]["paths"])]
    return load_rules(rule_paths, placeholders=config["rules"]["placeholders"], cache_dir=rule_cache_dir(config))


def connector_options(cls: type[Connector], entry: dict[str, Any], resolve_path: Callable[[str], Any],
                      *, coerce_strings: bool = False) -> dict[str, Any]:
    """The entry's options parsed against the connector's declared ``Options``, paths resolved.

    Raises :class:`InvalidOption` naming the key. A connector without declared options gets the raw
    mapping (it checks its own)."""
    options = {k: v for k, v in entry.items() if k not in CONNECTOR_META_KEYS}
    options_cls = declared_options(cls)
    if options_cls is None:
        if coerce_strings:
            import yaml

            return {k: yaml.safe_load(v) if isinstance(v, str) else v for k, v in options.items()}
        return options
    parsed = parse_options(options_cls, options, resolve_path=resolve_path, coerce_strings=coerce_strings)
    values = options_dict(parsed)
    return {k: values[k] for k in options}  # only what was given: the connector applies its defaults


def build_connector(config: Config, entry: dict[str, Any]) -> Connector:
    cls = connector_class(entry["type"])
    try:
        options = connector_options(cls, entry, config.resolve_path)
    except InvalidOption as exc:
        index = next((i for i, e in enumerate(config["connectors"]) if e is entry), None)
        where = f"connectors[{index}]" if index is not None else f"connector {entry['name']!r}"
        raise ConfigError(config.source, f"{where}.{exc.key}" if exc.key else where, exc.message) from None
    return cls(entry["name"], options)


def build_enrichment(config: Config) -> EnrichmentChain:
    steps: list[Enricher] = []
    section = config["enrichment"]
    if section.get("working_hours"):
        try:
            steps.append(TimeContextEnricher.from_config(section["working_hours"]))
        except ValueError as exc:
            raise ConfigError(config.source, "enrichment.working_hours", str(exc)) from None
    from engine.enrich.geoip import GeoipEnricher, GeoipOptions
    from engine.enrich.identity import IdentityEnricher, IdentityOptions
    from engine.enrich.privacy import PrivacyEnricher, PrivacyOptions

    # identity before privacy: the roster may key on wardwatch.identity
    for key, options_cls, enricher_cls in (("identity", IdentityOptions, IdentityEnricher),
                                           ("privacy", PrivacyOptions, PrivacyEnricher),
                                           ("geoip", GeoipOptions, GeoipEnricher)):
        if section.get(key):
            steps.append(_declared_enricher(config, key, options_cls, enricher_cls))
    chain = EnrichmentChain(steps)
    if section.get("baselines"):
        # not a per-event step: it runs per batch after the chain and reads store-held history (ingest.py)
        from engine.baselines import BaselineOptions, Baselines

        chain.baselines = _declared_enricher(config, "baselines", BaselineOptions, Baselines)
    return chain


def _declared_enricher(config: Config, key: str, options_cls: type, enricher_cls: Any,
                       section: Mapping[str, Any] | None = None) -> Enricher:
    """``enrichment.<key>`` (or ``section``, a part of it: engine/lookup_check.py) parsed into its declared
    options, then built; any problem names the key."""
    try:
        options = parse_options(options_cls, config["enrichment"][key] if section is None else section,
                                resolve_path=config.resolve_path)
        return enricher_cls.from_config(options)
    except InvalidOption as exc:
        where = f"enrichment.{key}.{exc.key}" if exc.key else f"enrichment.{key}"
        raise ConfigError(config.source, where, exc.message) from None
    except ValueError as exc:  # e.g. a configured CSV column missing from the file's header
        raise ConfigError(config.source, f"enrichment.{key}", str(exc)) from None


def build_pseudonymiser(config: Config) -> Pseudonymiser:
    section = config["alerts"]["pseudonymise"]
    key = read_secret(None, section.get("key_file") and str(config.resolve_path(section["key_file"])),
                      section.get("key_env"), source=config.source, key="alerts.pseudonymise.key_file")
    try:
        return Pseudonymiser(key.encode() if key else None, section["fields"])
    except ValueError as exc:
        raise ConfigError(config.source, "alerts.pseudonymise", str(exc)) from None


def store_pushdown(store: Store) -> Callable[[Any], str | None] | None:
    """Elasticsearch narrows candidates with each rule as Lucene; SQLite scans (see docs/sqlite.md)."""
    if store.kind != "elasticsearch":
        return None
    from engine.sigma import convert_rule

    unindexed = getattr(store, "unindexed_fields", frozenset())

    def pushdown(rule: Any) -> str | None:
        if rule.fields & unindexed:
            return None  # the query would miss every match: let the store scan and the evaluator decide
        return convert_rule(rule, "elasticsearch").query

    return pushdown


def alerts_over_sample(ruleset: Any, events: Iterable[dict[str, Any]], batch_size: int = 5000,
                       suppression: Mapping[str, Mapping[str, Any]] | None = None) -> list[Any]:
    """Every alert ``ruleset`` raises over ``events``: what ``wardwatch rules test`` prints.

    The events go through a throw-away embedded store, so a rule test exercises the same search,
    correlation and episode path as the service; evidence is uncapped so a test sees every event.
    ``suppression`` is the jobs' suppression, as ``build_app`` gives the service's (the CLI passes the rule
    files' ``wardwatch.suppress`` under the site's ``alerts.suppression``): a rule test shows the alerts the
    service would raise, not one per matching event where the rule says one per user and day.
    ``events`` may be any iterable and is consumed ``batch_size`` events at a time: memory is bounded by
    the batch (and the evaluator's slice), not by the sample, so a million-event sample file is fine.
    """
    import tempfile
    from itertools import islice
    from pathlib import Path

    from engine.evaluation import iter_alerts, run_all
    from engine.store import open_store

    with tempfile.TemporaryDirectory(prefix="wardwatch-test-") as tmp:
        store = open_store("sqlite", path=Path(tmp) / "test.db")
        try:
            source = iter(events)
            while batch := list(islice(source, batch_size)):
                store.write(batch)
            evaluator = Evaluator(store, evidence_cap=10**9, candidates=ruleset.candidates)
            return list(iter_alerts(run_all(evaluator, build_jobs(ruleset, suppression))))
        finally:
            store.close()


@dataclass
class App:
    config: Config
    store: Store
    ruleset: Any
    jobs: list[RuleJob]
    evaluator: Evaluator
    enrichment: EnrichmentChain
    sinks: list[Sink] = field(default_factory=list)

    def connectors(self) -> list[tuple[dict[str, Any], Connector]]:
        return [
            (entry, build_connector(self.config, entry))
            for entry in self.config["connectors"]
            if entry.get("enabled", True)
        ]

    def rule_interval(self, job: RuleJob) -> float:
        overrides = self.config["scheduler"]["rule_intervals"]
        value = overrides.get(job.id) or self.config["scheduler"]["rule_interval"]
        return parse_duration(value)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.store.close()


def build_app(config: Config, console: bool = True, *, reader: bool = False) -> App:
    ruleset = load_ruleset(config)
    store = open_configured_store(config, reader=reader)
    jobs = build_jobs(ruleset, merged_suppression(ruleset, config["alerts"]["suppression"]))
    pseudonymiser = build_pseudonymiser(config)
    evaluator = Evaluator(store, config["alerts"]["evidence_cap"], pseudonymiser,
                          candidates=ruleset.candidates, pushdown=store_pushdown(store))
    sinks = with_audit_recorder(store, with_case_builder(
        config, store, ruleset, build_sinks(config["alerts"]["sinks"], config.resolve_path, console=console,
                                            pseudonymiser=pseudonymiser)))
    if not reader:
        record_rule_loads(store, ruleset)  # the chain's rule.loaded entries: only rules whose file changed
    return App(config, store, ruleset, jobs, evaluator, build_enrichment(config), sinks)

