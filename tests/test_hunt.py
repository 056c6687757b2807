"""``wardwatch hunt``: rules and correlations over stored history, on SQLite and on the real cluster."""

from __future__ import annotations

import io
import sys

import pytest

from engine.app import build_app, load_ruleset
from engine.hunt import HUNT_CHECKPOINT_PREFIX, hunt
from tests.history_site import EHR_EVENTS, ROOT, drop_site, ehr_site, json_lines, write_site  # noqa: F401

RULES = str(ROOT / "rules/healthcare")
TITLES = ["EHR break-the-glass access", "Bulk patient-record access",
          "EHR patient record read outside working hours"]


def _hunt(site, capsys, *extra: str) -> list[dict]:
    capsys.readouterr()
    assert site.cli("hunt", RULES, "--format", "json", *extra) == 0
    return json_lines(capsys.readouterr().out)


def test_hunt_finds_the_scenarios_in_the_rules_test_contract(ehr_site, capsys):
    results = _hunt(ehr_site, capsys, "--from", "2026-11-01", "--to", "2026-11-04")
    assert [r["title"] for r in results] == TITLES
    assert all(set(r) == {"rule_id", "title", "kind", "event_ids", "group", "window"} for r in results)
    bulk = results[1]
    assert bulk["kind"] == "correlation" and bulk["group"] == {"user.name": "mkeller"} and len(bulk["event_ids"]) == 65


def test_hunt_bounds_are_event_time(ehr_site, capsys):
    # the bulk access runs 13:00-13:47 on Nov 2: a range ending at 13:00 sees only the break-the-glass
    assert [r["title"] for r in _hunt(ehr_site, capsys, "--from", "2026-11-02T00:00:00Z",
                                      "--to", "2026-11-02T13:00:00Z")] == [TITLES[0]]
    assert _hunt(ehr_site, capsys, "--from", "2027-01-01") == []


def test_hunt_without_alert_leaves_the_store_untouched(ehr_site, capsys):
    before = ehr_site.open_store()
    try:
        assert before.list_alerts() == []
        _hunt(ehr_site, capsys)
        assert before.list_alerts() == [] and before.pending_deliveries("any") == []
        app = build_app(ehr_site.config(), console=False)
        try:
            for job in app.jobs:
                assert before.get_checkpoint(job.id).watermark is None
                assert before.get_checkpoint(HUNT_CHECKPOINT_PREFIX + job.id).watermark is None
        finally:
            app.close()
    finally:
        before.close()


@pytest.mark.slow  # two fresh sites (one on the cluster)
def test_hunt_results_are_the_same_on_both_stores(tmp_path, capsys):
    found = {}
    for kind in ("sqlite", "elasticsearch"):
        (tmp_path / kind).mkdir()
        site = write_site(tmp_path / kind, kind)
        try:
            site.ingest_ehr()
            found[kind] = _hunt(site, capsys)
        finally:
            drop_site(site)
    assert found["sqlite"] == found["elasticsearch"] and len(found["sqlite"]) == 3


@pytest.mark.parametrize("kind", ["sqlite", "elasticsearch"])
def test_hunt_alert_twice_then_scheduler_never_duplicates(tmp_path, capsys, kind):
    site = write_site(tmp_path, kind)
    try:
        site.ingest_ehr()
        first = _hunt(site, capsys, "--alert")
        store = site.open_store()
        try:
            stored = sorted((a.id, a.revision) for a in store.list_alerts())
            assert len(stored) == len(first) == 3 and {r for _, r in stored} == {1}
            assert len(store.pending_deliveries("jsonl")) == 3  # each alert goes out once
            assert _hunt(site, capsys, "--alert") == first
            assert sorted((a.id, a.revision) for a in store.list_alerts()) == stored
            capsys.readouterr()
            assert site.cli("run", "--once") == 0
            assert "0 new or updated alert(s)" in capsys.readouterr().out
            assert sorted((a.id, a.revision) for a in store.list_alerts()) == stored
            assert len(store.pending_deliveries("jsonl")) == 3
            # a hunt starting inside the bulk-access episode sees only its end: it must not shrink the alert
            partial = _hunt(site, capsys, "--alert", "--from", "2026-11-02T13:04:00Z", "--to", "2026-11-02T14:00:00Z")
            assert partial and all(len(r["event_ids"]) < 65 for r in partial)
            assert sorted((a.id, a.revision) for a in store.list_alerts()) == stored
            assert max(a.evidence_total for a in store.list_alerts()) == 65
        finally:
            store.close()
    finally:
        drop_site(site)


def test_hunt_streams_in_slices_with_the_same_results(ehr_site):
    """Memory is bounded by the evaluator's slice: 200-event slices give the one-pass alerts."""
    app = build_app(ehr_site.config(), console=False)
    try:
        steps = []
        real_step = app.store.watermark_step

        def counting_step(after, upto, max_events):
            steps.append(max_events)
            return real_step(after, upto, max_events)

        app.store.watermark_step = counting_step  # type: ignore[method-assign]
        seen: list[int] = []
        sliced = hunt(app, app.ruleset, None, None, slice_events=200, progress=seen.append)
        assert len(steps) >= EHR_EVENTS // 200 - 1 if ehr_site.kind == "sqlite" else len(steps) >= 2
        whole = hunt(app, app.ruleset, None, None)
    finally:
        app.close()
    assert [(a.id, a.evidence) for a in sliced.alerts] == [(a.id, a.evidence) for a in whole.alerts]
    assert seen[-1] == sliced.scanned > 0


def test_hunt_on_elasticsearch_pushes_the_rules_down(ehr_site):
    """The cluster narrows a rule's candidates: an ES hunt for break-the-glass reads only those events,
    where SQLite scans the dataset and the engine decides (the same one alert either way)."""
    app = build_app(ehr_site.config(), console=False)
    try:
        result = hunt(app, load_ruleset(app.config, [str(ROOT / "rules/healthcare/ehr_break_the_glass.yml")]),
                      None, None)
    finally:
        app.close()
    assert [a.rule_title for a in result.alerts] == [TITLES[0]]
    if ehr_site.kind == "sqlite":
        assert result.scanned > EHR_EVENTS - 20  # a scan of every ehr.audit event
    else:
        assert result.scanned == 1, result.scanned


@pytest.mark.parametrize("argv,message", [
    (["--from", "yesterday-ish"], "error: --from: not a time: 'yesterday-ish'"),
    (["--from", "2026-11-03", "--to", "2026-11-02"], "error: --from 2026-11-03T00:00:00.000Z is not before --to"),
])
def test_hunt_bad_time_is_one_line(tmp_path, capsys, argv, message):
    site = write_site(tmp_path, "sqlite")
    assert site.cli("hunt", RULES, *argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(message) and err.count("\n") == 1


def test_hunt_bad_rule_path_is_one_line(tmp_path, capsys):
    site = write_site(tmp_path, "sqlite")
    empty = tmp_path / "norules"
    empty.mkdir()
    assert site.cli("hunt", str(empty)) == 2
    assert capsys.readouterr().err == f"error: {empty}: no rules found\n"


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_line_only_on_a_tty(ehr_site, capsys, monkeypatch):
    """A terminal sees "hunting: N events read" on stderr; a pipe or log file sees nothing extra."""
    _hunt(ehr_site, capsys)
    assert capsys.readouterr().err == ""
    fake = _Tty()
    monkeypatch.setattr(sys, "stderr", fake)
    monkeypatch.setattr("engine.hunt.PROGRESS_EVERY", 100)
    assert ehr_site.cli("hunt", RULES, "--format", "json") == 0
    assert "hunting" in fake.getvalue()
