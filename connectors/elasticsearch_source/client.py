"""The Elasticsearch connection of an ``elasticsearch-source``: hosts, credentials from files, TLS.

Why not the store's config block: the cluster a hospital ships Winlogbeat into is usually not the one
Wardwatch stores into (and may be read with a read-only API key). The same rules apply, reused from where
they live: secrets only through ``*_file``/``*_env`` (:func:`connectors.fhir_auth.read_secret_option`; a
literal ``password``/``api_key`` is refused by :func:`engine.plugins.parse_options`), no credential over
plain ``http://`` beyond loopback (:func:`connectors.fhir_auth.check_credentials_transport`), and the
store's transport that talks to 8.x and 9.x servers alike.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from typing import Any

from elasticsearch import Elasticsearch
from elasticsearch.serializer import OrjsonSerializer

from connectors.fhir_auth import AuthError, InsecureTransportError, check_credentials_transport
from connectors.fhir_auth import read_secret_option
from engine.plugins import InvalidOption, duration_option, path_option
from engine.store.elasticsearch import _CompatTransport, _redact


@dataclass(kw_only=True)
class ConnectionOptions:
    """The connection keys of every plug-in that talks to an Elasticsearch cluster of its own (the
    ``elasticsearch-source`` connector, the ``elasticsearch`` sink): one schema, checked by
    :func:`check_connection_options` and used by :func:`build_client`."""

    hosts: list[str] = dataclasses.field(default_factory=lambda: ["http://127.0.0.1:9200"])
    username: str | None = None
    password_file: str | None = path_option(None)
    password_env: str | None = None
    api_key_file: str | None = path_option(None)
    api_key_env: str | None = None
    ca_certs: str | None = path_option(None)
    ssl_assert_fingerprint: str | None = None
    verify_certs: bool = True
    request_timeout: float = duration_option(30.0)
    #: send credentials over http:// to a non-loopback host anyway (never across a network)
    allow_insecure_http: bool = False


def check_connection_options(opts: Any) -> None:
    """Cross-field checks that need no network: a username needs a password, credentials need TLS."""
    if not opts.hosts:
        raise InvalidOption("hosts", "needs at least one URL")
    for host in opts.hosts:
        if "://" not in host:
            raise InvalidOption("hosts", f"{host!r} is not a URL (use https://host:9200)")
    if opts.username and not (opts.password_file or opts.password_env):
        raise InvalidOption("username", "a username needs password_file or password_env")
    if (opts.api_key_file or opts.api_key_env) and opts.username:
        raise InvalidOption("api_key_file", "give either an API key or username + password, not both")
    credentials = opts.username or opts.api_key_file or opts.api_key_env
    if credentials and not opts.allow_insecure_http:
        for host in opts.hosts:
            try:
                check_credentials_transport(host, what="hosts", allow_insecure_http=False)
            except InsecureTransportError as exc:
                raise InvalidOption("hosts", str(exc)) from None


def build_client(opts: Any) -> Elasticsearch:
    """The client; secrets and the CA file are read here (at start, not when the config is checked), so a
    missing file is one line naming its option."""
    if opts.ca_certs and not os.path.isfile(opts.ca_certs):  # the TLS error would not name the file
        raise InvalidOption("ca_certs", f"{opts.ca_certs}: no such file")
    options: dict[str, Any] = {
        "request_timeout": opts.request_timeout,
        "max_retries": 0,  # a failed read is reported unavailable and retried on the next poll, cursor intact
        "retry_on_timeout": False,
        "transport_class": _CompatTransport,
        "verify_certs": opts.verify_certs,
        "serializer": OrjsonSerializer(),  # pages of documents: decoding them is a tenth of the read
    }
    try:
        api_key = read_secret_option(opts.api_key_env, opts.api_key_file)
        password = read_secret_option(opts.password_env, opts.password_file) if opts.username else None
    except AuthError as exc:
        key = "api_key_file" if (opts.api_key_file or opts.api_key_env) else "password_file"
        raise InvalidOption(key, str(exc)) from None
    if api_key:
        # "id:key" as Kibana shows it, or its base64 "encoded" form (which never holds a colon)
        key_id, sep, key = api_key.partition(":")
        options["api_key"] = (key_id, key) if sep else api_key
    if opts.username:
        options["basic_auth"] = (opts.username, password or "")
    if opts.ca_certs:
        options["ca_certs"] = opts.ca_certs
    if opts.ssl_assert_fingerprint:
        options["ssl_assert_fingerprint"] = opts.ssl_assert_fingerprint
    try:
        return Elasticsearch(list(opts.hosts), **options)
    except (ValueError, TypeError) as exc:
        raise InvalidOption("hosts", f"invalid connection settings: {exc}") from None


def where(hosts: list[str]) -> str:
    """The hosts for a message: never a credential embedded in a URL."""
    return ", ".join(_redact(h) for h in hosts)
