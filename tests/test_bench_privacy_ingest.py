"""bench/bench_privacy_ingest.py (issue 11's ingest ratio on the FHIR path) runs from a fresh clone and
compares what it says it compares: the same events, no enrichment / the base privacy enrichment / every
documented context knob."""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

import pytest

from bench import bench_privacy_ingest as bench

ROOT = Path(__file__).resolve().parent.parent


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


@pytest.mark.slow
def test_against_another_checkout_reports_the_target_over_the_same_events(tmp_path: Path, capsys) -> None:
    """``--against TREE``: this checkout stands in for the older one (the child runs either the same way)."""
    assert bench.main(["--staff", "90", "--days", "3", "--seed", "7", "--incidents-per-kind", "1", "--repeat", "1",
                       "--work", str(tmp_path), "--against", str(ROOT), "--against-python", sys.executable]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert set(result["events_per_cpu_second"]) == {"plain", "base", "full", "then plain", "then base"}
    assert {"then base/plain", "target", "full/then base"} <= set(result["ratio"])
    assert result["ratio"]["target"] == pytest.approx(
        result["ratio"]["full/plain"] / result["ratio"]["then base/plain"], rel=0.01)
    assert "then base" in capsys.readouterr().out


def test_against_a_directory_that_is_no_checkout_is_one_clear_line(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="needs a Wardwatch checkout and its Python"):
        bench.main(["--staff", "90", "--days", "1", "--repeat", "1", "--work", str(tmp_path / "w"),
                    "--against", str(tmp_path)])


@pytest.mark.slow
def test_stages_are_timed_per_variant_and_the_parts_fit_in_their_stage(tmp_path: Path, capsys) -> None:
    assert bench.main(["--staff", "90", "--days", "2", "--seed", "7", "--incidents-per-kind", "1", "--repeat", "1",
                       "--work", str(tmp_path), "--stages"]) == 0
    stages = json.loads((tmp_path / "result.json").read_text())["stages_us_per_event"]
    assert set(stages) == {"plain", "base", "full"}
    full = stages["full"]
    assert {"read", "enrichment", "  PrivacyEnricher", "baselines", "store write", "  encode", "  insert"} <= set(full)
    assert "baselines" not in stages["base"] and "  PrivacyEnricher" not in stages["plain"]
    assert full["  encode"] + full["  insert"] <= full["store write"] + 0.1
    steps = [v for k, v in full.items() if k.startswith("  ") and k not in ("  encode", "  insert")]
    assert 0 < sum(steps) <= full["enrichment"] + 0.1
    assert "stages, us per event (best run)" in capsys.readouterr().out


def test_the_stage_table_shows_a_stage_a_tree_lacks_as_a_dash() -> None:
    table = bench.stage_table({"full": {"read": 10.0, "enrichment": 5.0, "  PrivacyEnricher": 4.0,
                                        "store write": 3.0, "  insert": 2.0},
                               "then base": {"read": 12.0, "enrichment": 6.0, "store write": 3.5}}).splitlines()
    assert [line.split()[0] for line in table[1:]] == ["read", "enrichment", "PrivacyEnricher", "store", "insert"]
    assert table[3].split()[-1] == "-" and table[5].split()[-1] == "-"


def test_ratios_are_also_taken_within_each_round_so_one_lucky_run_does_not_decide() -> None:
    # round 2's "then plain" ran on a quiet core: the best-of ratio takes it against other rounds' runs
    cpu = {"plain": [6.0, 6.2, 6.0], "base": [7.0, 7.2, 7.1], "full": [8.4, 8.6, 8.5],
           "then plain": [6.5, 4.8, 6.6], "then base": [9.0, 9.1, 9.2]}
    rounds = bench.paired_ratios(cpu)
    assert rounds["full/then base"] == [round(9.0 / 8.4, 3), round(9.1 / 8.6, 3), round(9.2 / 8.5, 3)]
    assert rounds["target"][0] == pytest.approx((6.0 / 8.4) / (6.5 / 9.0), abs=1e-3)
    # the lucky run flatters only its own round; the median is an ordinary round's
    assert rounds["target"][1] > 1.2 > max(rounds["target"][0], rounds["target"][2])
    assert statistics.median(rounds["target"]) in (rounds["target"][0], rounds["target"][2])
    assert set(rounds) == {"full/plain", "base/plain", "full/base", "then base/plain", "target", "full/then base"}


def test_the_mean_ratios_use_every_run_of_each_variant() -> None:
    cpu = {"plain": [4.0, 6.0], "base": [6.0, 6.0], "full": [7.0, 9.0], "then plain": [5.0, 5.0],
           "then base": [7.0, 8.0]}
    means = bench.mean_ratios(cpu)
    assert means["full/plain"] == pytest.approx(5.0 / 8.0)
    assert means["target"] == pytest.approx((5.0 / 8.0) / (5.0 / 7.5))
    assert means["full/then base"] == pytest.approx(7.5 / 8.0)


def test_a_run_of_several_rounds_reports_the_median_of_its_round_ratios(tmp_path: Path, capsys) -> None:
    assert bench.main(["--staff", "90", "--days", "2", "--seed", "7", "--incidents-per-kind", "1", "--repeat", "2",
                       "--work", str(tmp_path)]) == 0
    result = json.loads((tmp_path / "result.json").read_text())
    assert all(len(v) == 2 for v in result["round_ratios"].values())
    assert result["median_round_ratio"]["full/plain"] == pytest.approx(
        sum(result["round_ratios"]["full/plain"]) / 2, abs=1e-3)
    out = capsys.readouterr().out
    assert "the same ratios per round" in out and "mean CPU seconds over all rounds" in out
    assert set(result["mean_ratio"]) == set(result["ratio"])


def _fake_callgrind(bin_dir: Path, calls: Path) -> None:
    """A ``valgrind`` that runs its program and reports a fixed count, and a ``callgrind_control`` that logs
    its arguments: the bench's hand-over with its child (ready, instrumentation on, go) without valgrind's
    50x slowdown. By hand, the real one runs (docs/benchmarks.md, "instructions")."""
    valgrind = bin_dir / "valgrind"
    valgrind.write_text("#!/bin/sh\nwhile [ \"${1#--}\" != \"$1\" ]; do shift; done\n\"$@\"\nrc=$?\n"
                        "echo \"==1== Collected : 4242\" >&2\nexit $rc\n")
    control = bin_dir / "callgrind_control"
    control.write_text(f"#!/bin/sh\necho \"$@\" >> {calls}\n")
    for script in (valgrind, control):
        script.chmod(0o755)


def test_instructions_are_counted_per_variant_from_the_end_of_its_setup(tmp_path: Path, capsys, monkeypatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    calls = tmp_path / "calls.log"
    _fake_callgrind(bin_dir, calls)
    monkeypatch.setenv("PATH", f"{bin_dir}:{bench.os.environ['PATH']}")
    assert bench.main(["--staff", "90", "--days", "2", "--seed", "7", "--incidents-per-kind", "1",
                       "--work", str(tmp_path / "w"), "--instructions", "--max-batches", "1"]) == 0
    result = json.loads((tmp_path / "w" / "result-instructions.json").read_text())
    assert set(result["instructions"]) == {"plain", "base", "full"}
    assert result["instructions_per_event"]["full"] == round(4242 / result["events"])
    assert set(result["instruction_ratio"]) == {"full/plain", "base/plain", "full/base"}
    # each child was switched on once, by its pid, after it said it was ready (else the bench waits for ever)
    switched = calls.read_text().splitlines()
    assert len(switched) == 3 and all(line.startswith("--instr=on ") for line in switched)
    out = capsys.readouterr().out
    assert "first 1 batches" in out and "ratios on instructions" in out


def test_instructions_without_valgrind_is_one_clear_line(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SystemExit, match=r"--instructions needs valgrind \(apt-get install valgrind\)"):
        bench.main(["--staff", "90", "--days", "1", "--work", str(tmp_path / "w"), "--instructions"])


def test_max_batches_without_instructions_is_refused_before_generating(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="--max-batches limits --instructions runs only"):
        bench.main(["--staff", "90", "--days", "1", "--work", str(tmp_path / "w"), "--max-batches", "2"])
    assert not (tmp_path / "w").exists()
