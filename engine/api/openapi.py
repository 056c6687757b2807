"""``python -m engine.api.openapi [PATH]``: write the API's OpenAPI document (default: docs/openapi.json).

The checked-in document is what client authors read; tests/test_api_openapi.py fails when it differs from
what the code generates, so run this after changing a route."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson

DOC_PATH = Path(__file__).resolve().parents[2] / "docs" / "openapi.json"


def document() -> dict[str, Any]:
    from engine.api.app import create_app

    return create_app(None).openapi()


def render() -> bytes:
    """The document as the checked-in file holds it: sorted keys, two-space indent, final newline."""
    return orjson.dumps(document(), option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS) + b"\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else DOC_PATH
    path.write_bytes(render())
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
