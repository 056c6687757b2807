"""Every config example in the docs loads through the real config loader.

Why: a user copies the YAML from a connector page into ``wardwatch.yaml``. Three pages once showed
``connectors:`` as a mapping, which the loader rejects, so the first thing a reader met was an error. Each
```yaml block in ``docs/**/*.md`` and ``README.md`` whose top-level keys are config sections (``connectors:``,
``store:``, ``enrichment:``, ...) is a config (a fragment is a valid config: the defaults fill the rest), and
so is ``wardwatch.example.yaml``. Other YAML (Sigma rules) is left to the rule tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from engine.config import SCHEMA, load_config

ROOT = Path(__file__).resolve().parents[1]
_FENCE = re.compile(r"^```ya?ml[^\n]*\n(.*?)^```", re.S | re.M)


def _blocks() -> list[tuple[str, str]]:
    """(``file:line``, text) of every YAML block that looks like a Wardwatch config."""
    found = []
    for path in [*sorted((ROOT / "docs").rglob("*.md")), ROOT / "README.md"]:
        text = path.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            where = f"{path.relative_to(ROOT)}:{text[:match.start()].count(chr(10)) + 2}"
            body = match.group(1)
            try:
                docs = list(yaml.safe_load_all(body))
            except yaml.YAMLError as exc:
                pytest.fail(f"{where}: the YAML example does not parse: {exc}")
            if any(isinstance(d, dict) and set(d) & set(SCHEMA) for d in docs):
                found.append((where, body))
    return found


BLOCKS = _blocks()


def test_the_docs_have_config_examples():
    """Guards the scan itself: the connector pages, enrichment and alerts each show a config."""
    pages = {where.split(":")[0] for where, _ in BLOCKS}
    assert {"docs/connectors/ndjson.md", "docs/connectors/atna-syslog.md", "docs/connectors/ehr-csv.md",
            "docs/connectors/fhir-auditevent.md", "docs/connectors/fhir-auditevent-file.md",
            "docs/enrichment.md"} <= pages


@pytest.mark.parametrize("where,body", BLOCKS, ids=[where for where, _ in BLOCKS])
def test_config_example_loads(where: str, body: str, tmp_path: Path):
    path = tmp_path / "wardwatch.yaml"
    path.write_text(body, encoding="utf-8")
    load_config(path, environ={})  # raises ConfigError naming the key when the example is wrong


def test_example_config_file_loads():
    load_config(ROOT / "wardwatch.example.yaml", environ={})


def _enrichment_options() -> list[tuple[str, type]]:
    """(config section, options class) of every step ``enrichment:`` configures (engine/app.py builds them)."""
    from engine.baselines import BaselineOptions
    from engine.enrich.geoip import GeoipOptions
    from engine.enrich.identity import IdentityOptions
    from engine.enrich.privacy import PrivacyOptions
    from engine.enrich.time_context import WorkingHoursOptions

    return [("working_hours", WorkingHoursOptions), ("identity", IdentityOptions), ("privacy", PrivacyOptions),
            ("geoip", GeoipOptions), ("baselines", BaselineOptions)]


@pytest.mark.parametrize("section,options", _enrichment_options(), ids=[s for s, _ in _enrichment_options()])
def test_every_enrichment_option_is_named_in_full_in_the_docs(section: str, options: type):
    """Issue 11: the held-out site's config is written from docs/enrichment.md alone, so a knob the page
    does not name is a knob that site cannot find. "In full": the page once wrote
    ``patients_fhir_client_cert_file / _key_file``, which names no key a reader can copy."""
    import dataclasses

    text = (ROOT / "docs" / "enrichment.md").read_text(encoding="utf-8")
    missing = [f.name for f in dataclasses.fields(options)
               if not re.search(r"(?<![\w.])" + re.escape(f.name) + r"(?!\w)", text)]
    assert not missing, f"docs/enrichment.md does not name enrichment.{section} option(s) {missing}"


def test_every_privacy_placeholder_is_named_in_the_docs():
    """The role lists the shipped privacy rules expand (``|expand``, set in ``rules.placeholders``) are site
    knobs too: each must be findable in docs/enrichment.md, with its default."""
    text = (ROOT / "docs" / "enrichment.md").read_text(encoding="utf-8")
    used = {name for path in (ROOT / "rules" / "privacy").rglob("*.yml")
            for name in re.findall(r"%([a-z_]+)%", path.read_text(encoding="utf-8"))}
    assert used, "the scan found no placeholders in rules/privacy"
    assert sorted(name for name in used if name not in text) == []
