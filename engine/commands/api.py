"""``wardwatch api token NAME --role ROLE``: make an API token and the tokens-file entry that admits it.

The token is printed once and stored nowhere: the entry holds only its SHA-256 (engine/api/auth.py). Paste
the entry into ``service.http.tokens_file`` and restart the service; give the token to NAME over a private
channel. NAME is the actor the audit chain records for everything done with the token.
"""

from __future__ import annotations

import argparse
import secrets
import sys
from typing import Any

import yaml

from engine.errors import EXIT_OK, UsageError


def register(sub: "argparse._SubParsersAction[argparse.ArgumentParser]", groups: Any) -> None:
    from engine.api.auth import ROLES

    api = sub.add_parser("api", help="the HTTP API (docs/api.md)")
    api_sub = api.add_subparsers(dest="api_command", required=True)
    token = api_sub.add_parser("token", help="make a token and its service.http.tokens_file entry")
    token.add_argument("name", help="who (or which system) uses it: the actor in the audit chain")
    token.add_argument("--role", choices=ROLES, required=True, help="viewer < analyst < admin")
    token.set_defaults(func=cmd_api_token)


def cmd_api_token(args: argparse.Namespace) -> int:
    from engine.api.auth import token_sha256

    name = args.name.strip()
    if not name:
        raise UsageError("the token NAME must not be empty (it is the audit actor)")
    token = secrets.token_urlsafe(32)
    entry = yaml.safe_dump([{"name": name, "role": args.role, "token_sha256": token_sha256(token)}],
                           sort_keys=False, allow_unicode=True)
    sys.stdout.write(f"{token}\n")
    sys.stdout.flush()  # the token first, then the instructions on stderr
    sys.stderr.write(f"the line above is {name}'s {args.role} token: give it over a private channel, it is not "
                     "stored anywhere.\nadd this entry to service.http.tokens_file and restart the service:\n")
    sys.stderr.write(entry)
    return EXIT_OK
