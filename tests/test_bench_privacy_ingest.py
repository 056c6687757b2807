"""bench/bench_privacy_ingest.py (issue 11's ingest ratio on the FHIR path) runs from a fresh clone and
compares what it says it compares: the same events, no enrichment / the base privacy enrichment / every
documented context knob."""

from __future__ import annotations

import json
from pathlib import Path

from bench import bench_privacy_ingest as bench


def test_the_three_variants_differ_only_in_their_enrichment(tmp_path: Path) -> None:
    configs = bench.variants(tmp_path)
    assert configs["plain"]["enrichment"] == {}
    assert set(configs["base"]["enrichment"]) == {"working_hours", "privacy"}
    assert "baselines" in configs["full"]["enrichment"]
    assert configs["full"]["enrichment"]["privacy"].get("encounters_csv") == "encounters.csv"
    strip = [{k: v for k, v in c.items() if k != "enrichment"} for c in configs.values()]
    assert strip[0] == strip[1] == strip[2]


def test_a_small_run_reports_every_ratio_over_the_same_events(tmp_path: Path, capsys) -> None:
    assert bench.main(["--staff", "90", "--days", "3", "--seed", "7", "--incidents-per-kind", "1", "--repeat", "1",
                       "--work", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert result["events"] == result["accesses"] > 0
    assert set(result["ratio"]) == {"full/plain", "base/plain", "full/base"}
    assert all(0 < v for v in result["ratio"].values())
    assert "ratios: full/plain" in capsys.readouterr().out
