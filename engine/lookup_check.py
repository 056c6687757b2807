"""``wardwatch config check``'s reading of the lookup files: each one loaded as a start loads it, one line each.

Why: a site writes its enrichment config from docs/enrichment.md alone, and the lookups are where it goes
wrong without a word. A start stops at the *first* column named wrong, and a patient file that is not there
(or every encounter row skipped by a wrong ``encounters_csv_time_format``) is only a warning in the service
log while every access is decided "could not tell". So the check loads every local lookup on its own, all
of them even when one fails, and says for each what it loaded, what it skipped and why it cannot be used.

Nothing here is a second reader: each lookup is built by the enricher's own ``from_config`` from the
config's own section, keeping one source option at a time (so one failing source does not hide the next),
and what it says is what it logs while loading, with the file, the line and the column, never a row's
content (rows hold personal data). A lookup that ends up with nothing loaded marks its warning with
``engine.enrich.lookups.UNAVAILABLE``: that is an error here, the rest are warnings. Servers (the FHIR
Patient and Encounter options) are not contacted: the check opens local files only. Then, when every
lookup loaded, ``engine.lookup_coverage`` says how the roster's and the encounters' names meet the config's
lists.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Iterator, Literal

from engine.config import Config, ConfigError

#: ``enrichment.privacy`` options that each name one local source (built one at a time)
PRIVACY_FILES = ("roster_csv", "roster_directory", "patients_csv", "vip_list_file", "surname_frequencies_csv",
                 "encounters_csv", "encounters_ndjson")
#: ``enrichment.privacy`` options that name a server: listed, not contacted
PRIVACY_SERVERS = ("patients_fhir_base_url", "encounters_fhir_base_url")
Level = Literal["ok", "warning", "error"]
#: the warnings shown per lookup (a bad extract can warn for every row: the first ones name the pattern)
WARNINGS_SHOWN = 5


@dataclass(frozen=True)
class LookupLine:
    """One thing the check says about one lookup: ``key`` is the config key it is about."""

    key: str
    level: Level
    message: str

    def __str__(self) -> str:
        return f"{self.level}: {self.key}: {self.message}" if self.level != "ok" else f"{self.key}: {self.message}"


def check_lookups(config: Config) -> list[LookupLine]:
    """Every configured lookup of ``config`` loaded on its own; what each one said, in config order."""
    from engine.enrich.geoip import GeoipEnricher, GeoipOptions
    from engine.enrich.identity import IdentityEnricher, IdentityOptions
    from engine.enrich.privacy import PrivacyEnricher, PrivacyOptions

    enrichment = config["enrichment"]
    lines: list[LookupLine] = []
    built: dict[str, Any] = {}  # privacy option -> the enricher built for it alone (None: it failed)
    try:
        for key, options_cls, enricher_cls in (("identity", IdentityOptions, IdentityEnricher),
                                               ("geoip", GeoipOptions, GeoipEnricher)):
            if enrichment.get(key):
                said, enricher = _build(config, f"enrichment.{key}", key, options_cls, enricher_cls, None)
                lines += said
                _close(enricher)
        privacy = enrichment.get("privacy") or {}
        sources = set(PRIVACY_FILES) | set(PRIVACY_SERVERS)
        for option in PRIVACY_FILES:
            if privacy.get(option):
                alone = {k: v for k, v in privacy.items() if k not in sources or k == option}
                said, built[option] = _build(config, f"enrichment.privacy.{option}", "privacy", PrivacyOptions,
                                             PrivacyEnricher, alone)
                lines += said
        for option in PRIVACY_SERVERS:
            if privacy.get(option):
                lines.append(LookupLine(f"enrichment.privacy.{option}", "ok",
                                        f"{privacy[option]}: a server, not contacted by config check"))
        if privacy and not any(line.level == "error" for line in lines):
            lines += _coverage(config, built)
    finally:
        for enricher in built.values():
            _close(enricher)
    return lines


def _coverage(config: Config, built: dict[str, Any]) -> list[LookupLine]:
    """How the roster's and the encounters' names meet the config's lists (``engine.lookup_coverage``), from
    the enrichers already built for them: the files are not read a second time."""
    from engine.lookup_coverage import coverage

    roster = next((o for o in ("roster_csv", "roster_directory") if built.get(o) is not None), None)
    encounters = next((o for o in ("encounters_csv", "encounters_ndjson") if built.get(o) is not None), None)
    if roster is None and encounters is None:
        return []
    return coverage(built.get(roster or ""), built.get(encounters or ""), config["rules"]["placeholders"],
                    f"enrichment.privacy.{roster}", f"enrichment.privacy.{encounters}")


def _close(enricher: Any) -> None:
    close = getattr(enricher, "close", None)
    if callable(close):
        close()


def _build(config: Config, where: str, key: str, options_cls: type, enricher_cls: Any,
           section: dict[str, Any] | None) -> tuple[list[LookupLine], Any]:
    """Build one enricher (``section``: a part of ``enrichment.<key>``): the lines about ``where`` (what it
    logged while loading, or the error that stopped it) and the enricher (None when it failed; the caller
    closes it)."""
    from engine.app import _declared_enricher

    lines: list[LookupLine] = []
    with _captured() as records:
        try:
            enricher = _declared_enricher(config, key, options_cls, enricher_cls, section)
        except ConfigError as exc:
            enricher = None
            lines.append(LookupLine(where, "error", exc.message))
    # the first few warnings about single records name the pattern; a load's own summary always shows
    single = [r for r in records if r.levelno >= logging.WARNING
              and not getattr(r, "lookup_unavailable", False) and getattr(r, "lookup_skipped", None) is None]
    for record in records:
        if record in single[WARNINGS_SHOWN:]:
            if record is single[WARNINGS_SHOWN]:
                lines.append(LookupLine(where, "warning", f"... and {len(single) - WARNINGS_SHOWN} more warning(s)"))
            continue
        lines.append(_line(where, record, any(r.levelno >= logging.WARNING for r in records)))
    if not lines:
        lines.append(LookupLine(where, "ok", "loaded"))
    return lines, enricher


def _line(where: str, record: logging.LogRecord, warned: bool) -> LookupLine:
    """What one logged record says about the lookup: nothing loaded is an error, and so is a load that
    skipped records and kept none (a wrong time format or delimiter skips every row); an empty file is a
    warning; any other warning stays one."""
    message = record.getMessage()
    if getattr(record, "lookup_unavailable", False):
        return LookupLine(where, "error", message)
    if record.levelno >= logging.WARNING:
        return LookupLine(where, "warning", message)
    if getattr(record, "lookup_entries", None) == 0:
        return (LookupLine(where, "error", f"{message}: every record was skipped (see above)") if warned
                else LookupLine(where, "warning", f"{message}: it holds no records"))
    return LookupLine(where, "ok", message)


class _Records(logging.Handler):
    """Keeps every record it is given, for ``_build`` to read once the lookup is built."""

    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class _captured:
    """What the enrichment loggers say inside the block, kept instead of going to the service log."""

    def __enter__(self) -> list[logging.LogRecord]:
        self.logger = logging.getLogger("engine.enrich")
        self.handler = _Records()
        self.saved = (self.logger.level, self.logger.propagate)
        self.logger.addHandler(self.handler)
        self.logger.setLevel(logging.INFO)
        self.logger.propagate = False
        return self.handler.records

    def __exit__(self, *exc: object) -> None:
        self.logger.removeHandler(self.handler)
        self.logger.setLevel(self.saved[0])
        self.logger.propagate = self.saved[1]


def problems(lines: list[LookupLine]) -> Iterator[LookupLine]:
    """The lines that make ``config check`` fail: a lookup a start would refuse, or run without."""
    return (line for line in lines if line.level == "error")
