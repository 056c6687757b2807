"""The parsed-rule cache (engine/sigma/cache.py): it speeds up a reload and can never serve a stale rule."""

from __future__ import annotations

import os
import pickle
import stat
from pathlib import Path

import pytest
import yaml

from engine.events import DATASET
from engine.sigma import load_rules
from engine.sigma import cache as rule_cache
from engine.sigma.cache import CACHE_FILE, RuleCache
from engine.sigma.source import SAFE_LOADER, parse_documents

REPO = Path(__file__).resolve().parent.parent
SIGMAHQ = REPO.parent / "shared" / "datasets" / "sigmahq" / "rules" / "windows"
RID = "aaaaaaaa-0000-4000-8000-0000000000{:02d}"


def rule_text(n: int, action: str) -> str:
    return (f"title: Rule {n}\nid: {RID.format(n)}\nlogsource: {{product: ehr}}\n"
            f"detection:\n  sel:\n    ehr.action: {action}\n  condition: sel\n")


def event(action: str) -> dict:
    return {DATASET: "ehr.audit", "ehr.action": action}


def fires(ruleset, ev: dict) -> list[str]:
    return sorted(r.id for r in ruleset.rules.values() if r.matches(ev))


def cached_rule(tmp_path: Path, n: int, action: str = "read") -> tuple[Path, Path, Path]:
    """(rules dir, rule file, cache dir) of one rule loaded once, so that the cache holds it."""
    rules = tmp_path / "rules"
    rules.mkdir()
    path = rules / "r.yml"
    path.write_text(rule_text(n, action))
    cache_dir = tmp_path / "cache"
    load_rules([rules], cache_dir=cache_dir)
    return rules, path, cache_dir


def test_libyaml_is_used_when_present():
    assert SAFE_LOADER is (yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader)


def test_warm_load_hits_the_cache_and_gives_the_same_rules(tmp_path, monkeypatch):
    rules = tmp_path / "rules"
    rules.mkdir()
    for n in range(5):
        (rules / f"r{n}.yml").write_text(rule_text(n, f"act{n}"))
    cache_dir = tmp_path / "cache"
    cold = load_rules([rules], cache_dir=cache_dir)
    assert (cache_dir / CACHE_FILE).is_file()
    assert stat.S_IMODE((cache_dir / CACHE_FILE).stat().st_mode) == 0o600

    parsed: list[str] = []
    real = rule_cache.RuleCache.get

    def spy(self, path, digest):
        found = real(self, path, digest)
        parsed.append("hit" if found is not None else "miss")
        return found

    monkeypatch.setattr(rule_cache.RuleCache, "get", spy)
    warm = load_rules([rules], cache_dir=cache_dir)
    assert parsed == ["hit"] * 5
    assert sorted(warm.rules) == sorted(cold.rules)
    for rid in cold.rules:
        assert warm.rules[rid].source == cold.rules[rid].source
    for n in range(5):
        assert fires(warm, event(f"act{n}")) == fires(cold, event(f"act{n}")) == [RID.format(n)]


def test_changed_file_with_same_size_and_mtime_is_reread(tmp_path):
    rules, path, cache_dir = cached_rule(tmp_path, 1, "aaaa")
    before = path.stat()
    assert fires(load_rules([rules], cache_dir=cache_dir), event("aaaa")) == [RID.format(1)]

    path.write_text(rule_text(1, "bbbb"))  # same length
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_size == before.st_size and path.stat().st_mtime_ns == before.st_mtime_ns
    reloaded = load_rules([rules], cache_dir=cache_dir)
    assert fires(reloaded, event("bbbb")) == [RID.format(1)]
    assert fires(reloaded, event("aaaa")) == []


def test_placeholders_are_applied_after_the_cache(tmp_path):
    """A config change (placeholder values) takes effect although the rule file is cached."""
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(
        f"title: P\nid: {RID.format(7)}\nlogsource: {{product: ehr}}\n"
        "detection:\n  sel:\n    ehr.action|expand: '%acts%'\n  condition: sel\n")
    cache_dir = tmp_path / "cache"
    first = load_rules([rules], placeholders={"acts": ["read"]}, cache_dir=cache_dir)
    second = load_rules([rules], placeholders={"acts": ["delete"]}, cache_dir=cache_dir)
    assert fires(first, event("read")) == [RID.format(7)] and fires(first, event("delete")) == []
    assert fires(second, event("delete")) == [RID.format(7)] and fires(second, event("read")) == []


@pytest.mark.parametrize("damage", [b"", b"not a pickle at all", b"\x80\x05garbage",
                                    pickle.dumps({"key": "x"}), pickle.dumps([1, 2, 3])])
def test_corrupt_cache_is_ignored_and_rebuilt(tmp_path, damage):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(rule_text(2, "read"))
    cache_dir = tmp_path / "cache"
    cache_dir.mkdir(mode=0o700)
    (cache_dir / CACHE_FILE).write_bytes(damage)
    os.chmod(cache_dir / CACHE_FILE, 0o600)
    ruleset = load_rules([rules], cache_dir=cache_dir)
    assert not ruleset.errors and fires(ruleset, event("read")) == [RID.format(2)]
    assert RuleCache.open(cache_dir).entries  # rebuilt


def test_cache_entries_of_the_wrong_shape_are_misses(tmp_path):
    rules, path, cache_dir = cached_rule(tmp_path, 3)
    cache = RuleCache.open(cache_dir)
    digest = cache.entries[str(path)][0]
    cache.entries[str(path)] = (digest, [("not", "a", "document")])
    cache._dirty = True
    cache.save()
    assert fires(load_rules([rules], cache_dir=cache_dir), event("read")) == [RID.format(3)]


def test_cache_from_another_version_is_ignored(tmp_path, monkeypatch):
    rules, path, cache_dir = cached_rule(tmp_path, 4)
    # forge the cache: same bytes hash, other content, other version -> must not be used
    cache = RuleCache.open(cache_dir)
    digest = cache.entries[str(path)][0]
    forged = list(parse_documents(str(path), rule_text(4, "FORGED")))
    cache.put(str(path), digest, forged)
    cache.save()
    assert fires(load_rules([rules], cache_dir=cache_dir), event("FORGED")) == [RID.format(4)]  # forged hit

    monkeypatch.setattr(rule_cache, "_wardwatch_version", lambda: "999.0")
    reloaded = load_rules([rules], cache_dir=cache_dir)
    assert fires(reloaded, event("read")) == [RID.format(4)] and fires(reloaded, event("FORGED")) == []


def test_cache_writable_by_others_is_refused(tmp_path):
    _, _, cache_dir = cached_rule(tmp_path, 5)
    assert RuleCache.open(cache_dir).entries
    os.chmod(cache_dir / CACHE_FILE, 0o666)
    assert RuleCache.open(cache_dir).entries == {}


def test_unwritable_cache_dir_is_a_warning_not_an_error(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_text(rule_text(6, "read"))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    ruleset = load_rules([rules], cache_dir=blocker / "cache")  # parent is a file: cannot be created
    assert not ruleset.errors and fires(ruleset, event("read")) == [RID.format(6)]


def test_crlf_rule_files_read_as_before(tmp_path):
    rules = tmp_path / "rules"
    rules.mkdir()
    (rules / "r.yml").write_bytes(rule_text(8, "read").replace("\n", "\r\n").encode())
    ruleset = load_rules([rules], cache_dir=tmp_path / "cache")
    assert fires(ruleset, event("read")) == [RID.format(8)]
    assert "\r" not in ruleset.rules[RID.format(8)].source


@pytest.mark.slow
def test_sigmahq_warm_load_equals_cold(tmp_path):
    if not SIGMAHQ.is_dir():
        pytest.skip(f"{SIGMAHQ} not present")
    cache_dir = tmp_path / "cache"
    cold = load_rules([SIGMAHQ], cache_dir=cache_dir)
    warm = load_rules([SIGMAHQ], cache_dir=cache_dir)
    plain = load_rules([SIGMAHQ])
    assert len(cold.rules) > 2000
    assert sorted(cold.rules) == sorted(warm.rules) == sorted(plain.rules)
    assert [str(e) for e in cold.errors] == [str(e) for e in warm.errors] == [str(e) for e in plain.errors]
    for rid, rule in cold.rules.items():
        assert warm.rules[rid].source == rule.source and warm.rules[rid].fields == rule.fields


def test_cyclic_gc_is_paused_only_while_loading(tmp_path, monkeypatch):
    import gc

    from engine.sigma import loader

    seen: list[bool] = []
    real = loader.rule_files
    monkeypatch.setattr(loader, "rule_files", lambda paths: (seen.append(gc.isenabled()), real(paths))[1])
    cached_rule(tmp_path, 9)
    assert seen == [False] and gc.isenabled()

    def broken(paths):
        raise RuntimeError("boom")

    monkeypatch.setattr(loader, "rule_files", broken)
    with pytest.raises(RuntimeError):
        load_rules([tmp_path])
    assert gc.isenabled()


def test_cache_dir_comes_from_the_config_relative_to_it(tmp_path):
    from engine.config import load_config, rule_cache_dir

    (tmp_path / "on.yaml").write_text("rules: {paths: [rules]}\n")
    (tmp_path / "off.yaml").write_text("rules: {paths: [rules], cache_dir: null}\n")
    assert rule_cache_dir(load_config(tmp_path / "on.yaml", environ={})) == tmp_path / "data" / "cache"
    assert rule_cache_dir(load_config(tmp_path / "off.yaml", environ={})) is None
