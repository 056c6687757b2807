"""How the API is secured, as a security reviewer checks it: TLS with a certificate the test makes (and
client certificates when a CA is configured), the refusal of an open API beyond loopback, and the tokens
file read back exactly (a property test over names, roles and tokens)."""

from __future__ import annotations

import ssl
from pathlib import Path

import httpx
import orjson
import pytest
import trustme
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.api.auth import ROLES, Principal, load_tokens, token_sha256
from engine.api.settings import TlsOptions
from engine.config import ConfigError, load_config
from engine.store import open_store
from tests.api_peer import TOKENS, client, serving


@pytest.fixture
def pki(tmp_path: Path) -> dict[str, Path]:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, as PEM files."""
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    user = ca.issue_cert("soc-dashboard@example.org")
    files = {"ca": tmp_path / "ca.pem", "cert": tmp_path / "server.pem", "key": tmp_path / "server.key",
             "client": tmp_path / "client.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    server.cert_chain_pems[0].write_to_path(str(files["cert"]))
    server.private_key_pem.write_to_path(str(files["key"]))
    user.private_key_and_cert_chain_pem.write_to_path(str(files["client"]))
    return files


@pytest.fixture
def sqlite_store(tmp_path):
    s = open_store("sqlite", path=tmp_path / "w.db")
    yield s
    s.close()


def test_over_tls_a_client_that_trusts_the_ca_gets_in_and_plain_http_does_not(pki, sqlite_store):
    tls = TlsOptions(cert=str(pki["cert"]), key=str(pki["key"]))
    with serving(store=sqlite_store, tls=tls) as (url, _, _ctx):
        assert url.startswith("https://127.0.0.1:")
        with client(url, "viewer", verify=ssl.create_default_context(cafile=str(pki["ca"]))) as viewer:
            assert viewer.get("/api/v1/alerts").json() == {"count": 0, "alerts": []}
        with client(url, "viewer") as untrusting, pytest.raises(httpx.ConnectError):
            untrusting.get("/api/v1/alerts")  # the system trust store does not know this CA
        with client(url.replace("https://", "http://"), "viewer") as plain, pytest.raises(httpx.HTTPError):
            plain.get("/api/v1/alerts")


def test_with_a_client_ca_only_clients_with_a_certificate_connect(pki, sqlite_store):
    tls = TlsOptions(cert=str(pki["cert"]), key=str(pki["key"]), client_ca=str(pki["ca"]))
    with serving(store=sqlite_store, tls=tls) as (url, _, _ctx):
        with_cert = ssl.create_default_context(cafile=str(pki["ca"]))
        with_cert.load_cert_chain(str(pki["client"]))
        with client(url, "viewer", verify=with_cert) as dashboard:
            assert dashboard.get("/health").status_code == 200
        without = ssl.create_default_context(cafile=str(pki["ca"]))
        with client(url, "viewer", verify=without) as stranger, pytest.raises(httpx.HTTPError):
            stranger.get("/health")


def test_a_missing_certificate_file_is_one_line_naming_the_key(tmp_path, sqlite_store):
    tls = TlsOptions(cert=str(tmp_path / "nope.pem"), key=str(tmp_path / "nope.key"))
    with pytest.raises(ConfigError, match=r"service\.http\.tls: cannot load"):
        with serving(store=sqlite_store, tls=tls):
            pass


def write(tmp_path: Path, http: dict) -> Path:
    path = tmp_path / "wardwatch.yaml"
    path.write_text(yaml.safe_dump({"service": {"http": http}}))
    return path


@pytest.mark.parametrize("http,missing", [
    ({"host": "0.0.0.0", "port": 8443}, "service.http.tls and service.http.tokens_file"),
    ({"host": "10.1.2.3", "port": 8443, "tokens_file": "t.yaml"}, "service.http.tls "),
    ({"host": "", "port": 8443, "tls": {"cert": "c.pem", "key": "k.pem"}}, "service.http.tokens_file"),
])
def test_an_api_beyond_loopback_without_tls_and_tokens_is_refused_at_config_check(tmp_path, http, missing):
    with pytest.raises(ConfigError) as caught:
        load_config(write(tmp_path, http), environ={})
    assert "service.http.host:" in str(caught.value) and f"needs {missing}" in str(caught.value)
    assert "\n" not in str(caught.value)


def test_beyond_loopback_with_tls_and_tokens_or_on_loopback_the_config_loads(tmp_path):
    load_config(write(tmp_path, {"host": "0.0.0.0", "port": 8443, "tokens_file": "t.yaml",
                                 "tls": {"cert": "c.pem", "key": "k.pem", "client_ca": "ca.pem"}}), environ={})
    load_config(write(tmp_path, {"host": "::1", "port": 8080}), environ={})
    load_config(write(tmp_path, {"host": "0.0.0.0"}), environ={})  # no port: the API is off


def test_a_misspelt_tls_option_names_it(tmp_path):
    with pytest.raises(ConfigError, match=r"service\.http\.tls\.certfile: unknown option \(known: cert, client_ca, key\)"):
        load_config(write(tmp_path, {"port": 8080, "tls": {"certfile": "c.pem", "key": "k.pem"}}), environ={})
    with pytest.raises(ConfigError, match=r"service\.http\.max_hunt_jobs: must be at least 1"):
        load_config(write(tmp_path, {"max_hunt_jobs": 0}), environ={})


class _Config:
    source = "wardwatch.yaml"

    def __init__(self, base: Path):
        self.base = base

    def resolve_path(self, value: str) -> Path:
        return self.base / value


_names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
                 min_size=1, max_size=20).map(str.strip).filter(bool)
_tokens = st.text(st.characters(codec="ascii", min_codepoint=33, max_codepoint=126), min_size=8, max_size=64)


@settings(max_examples=60)
@given(entries=st.lists(st.tuples(_names, st.sampled_from(ROLES), _tokens), min_size=1, max_size=5,
                        unique_by=(lambda e: e[0], lambda e: e[2])),
       as_json=st.booleans(), stranger=_tokens)
def test_a_tokens_file_reads_back_every_principal_and_nothing_else(tmp_path_factory, entries, as_json, stranger):
    base = tmp_path_factory.mktemp("tokens")
    rows = [{"name": name, "role": role, "token_sha256": token_sha256(token)} for name, role, token in entries]
    (base / "tokens").write_bytes(orjson.dumps(rows) if as_json else yaml.safe_dump(rows).encode())
    book = load_tokens({"tokens_file": "tokens"}, _Config(base))
    for name, role, token in entries:
        assert book.authenticate(f"Bearer {token}") == Principal(name, role)
        assert book.authenticate(token) is None  # no scheme: not a bearer token
    if stranger not in {token for _, _, token in entries}:
        assert book.authenticate(f"Bearer {stranger}") is None


def test_the_single_legacy_token_is_an_admin_named_admin(tmp_path, monkeypatch):
    monkeypatch.setenv("WW_TOKEN", TOKENS["admin"])
    book = load_tokens({"token_env": "WW_TOKEN"}, _Config(tmp_path))
    assert book.authenticate(f"Bearer {TOKENS['admin']}") == Principal("admin", "admin")


def test_the_tokens_file_example_in_the_api_docs_loads(tmp_path):
    """docs/api.md's tokens file (a YAML list, which the config-example scan leaves alone) is a valid one."""
    import re

    text = (Path(__file__).resolve().parents[1] / "docs" / "api.md").read_text(encoding="utf-8")
    [block] = [b for b in re.findall(r"```yaml\n(.*?)```", text, re.S) if "token_sha256" in b]
    (tmp_path / "tokens.yaml").write_text(block)
    book = load_tokens({"tokens_file": "tokens.yaml"}, _Config(tmp_path))
    assert len(book) == 2


def test_a_port_in_use_fails_the_start_before_anything_serves(sqlite_store):
    import socket

    from engine.api.app import create_app
    from engine.api.server import ApiServer

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        with pytest.raises(OSError):
            ApiServer(create_app(None), "127.0.0.1", taken.getsockname()[1])


def test_wardwatch_api_token_makes_a_token_its_entry_admits(tmp_path, capsys):
    from engine.cli import main

    assert main(["api", "token", "kim.jansen", "--role", "analyst"]) == 0
    out, err = capsys.readouterr()
    token = out.strip()
    assert len(token) >= 40 and token not in err  # printed once, on stdout only
    entry = err[err.index("- name:"):]
    (tmp_path / "tokens.yaml").write_text(entry)
    book = load_tokens({"tokens_file": "tokens.yaml"}, _Config(tmp_path))
    assert book.authenticate(f"Bearer {token}") == Principal("kim.jansen", "analyst")
    with pytest.raises(SystemExit) as refused:  # argparse: an unknown role is a usage error
        main(["api", "token", "kim", "--role", "root"])
    assert refused.value.code == 2
