"""Declared options for plug-ins (connectors, sinks, enrichers): one parser, one error shape.

Why: a typo in a SIEM config (``datasett``, ``timezon``) or a wrong type (``page_size: lots``) silently
disables detection if each plug-in picks its options out of a dict by hand. So each plug-in declares an
``Options`` dataclass (the pySigma ``Transformation.from_dict`` idea: the dataclass *is* the schema) and
:func:`parse_options` turns a config mapping into it:

* an unknown key is an error listing the known ones;
* a key named like a secret (``password``, ``client_secret``, ``token``, ``api_key``) is refused with a pointer
  to its ``*_file``/``*_env`` form: secrets never belong in the YAML;
* a wrong type is an error naming the key; ``Literal`` fields list their choices;
* field metadata marks durations (``"30s"`` -> seconds) and paths (resolved against the config file);
* cross-field checks live in the dataclass's ``__post_init__`` (raise ``ValueError`` or :class:`InvalidOption`).

The parser constructs only the dataclass, never the plug-in, so ``engine/config.py`` can validate a whole
config without opening a file or a socket (``wardwatch config check``).
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from collections.abc import Mapping as AbcMapping
from typing import Any, Callable, Literal, Mapping, TypeVar, Union

import yaml

from engine.errors import OptionsError

T = TypeVar("T")

#: Field metadata keys.
PATH = "path"  # a filesystem path: relative ones are resolved against the config file
DURATION = "duration"  # "30s", "5m", "1h", "250ms" or a number of seconds -> float seconds
KEY = "key"  # the name users write, where the field's own name cannot be it (``from`` is a Python keyword)

_SECRET_NAME = re.compile(r"(^|_)(password|passwd|secret|token|api_key|apikey|client_secret)$")


class InvalidOption(OptionsError, ValueError):
    """One option is wrong. ``key`` is the option's name ("" for a cross-field problem).

    It is an :class:`engine.errors.OptionsError` without a file yet: ``engine/config.py`` re-raises it with
    the file and the full dotted key (``connectors[2].datasett``); a connector built directly turns it into
    a ``ConnectorConfigError`` naming the connector. It is a ``ValueError`` too, for callers of the
    ``from_config`` constructors that predate the parser."""

    def __init__(self, key: str, message: str):
        super().__init__(key, message)


def path_option(default: Any = None) -> Any:
    """A dataclass field holding a path (resolved against the config file's directory)."""
    return dataclasses.field(default=default, metadata={PATH: True})


def duration_option(default: Any = None) -> Any:
    """A dataclass field holding a duration (``"30s"``, ``"5m"``, or seconds); parsed to float seconds."""
    return dataclasses.field(default=default, metadata={DURATION: True})


def option_names(options_cls: type) -> list[str]:
    return sorted(f.name for f in dataclasses.fields(options_cls))


def looks_like_secret(key: str) -> bool:
    """``password``, ``client_secret``, ``patients_fhir_token`` ...; never ``token_file``/``token_env``."""
    return bool(_SECRET_NAME.search(key))


def secret_refusal(key: str) -> str:
    return (f"a secret must not be written in the config file; use {key}_file (a file only the service can "
            f"read) or {key}_env (the name of an environment variable)")


def parse_options(
    options_cls: type[T],
    values: Mapping[str, Any],
    *,
    resolve_path: Callable[[str], Any] | None = None,
    coerce_strings: bool = False,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> T:
    """``values`` -> an ``options_cls`` instance, or :class:`InvalidOption` naming the key.

    ``coerce_strings``: values given as text (``ingest -o page_size=50``) are read as YAML scalars when the
    declared type is not a string. ``ignore``: keys that belong to the caller (``name``, ``type``...).
    """
    if not isinstance(values, AbcMapping):
        raise InvalidOption("", f"expected a mapping of options, got {type(values).__name__}")
    fields = {f.metadata.get(KEY, f.name): f for f in dataclasses.fields(options_cls)}  # type: ignore[arg-type]
    hints = typing.get_type_hints(options_cls)
    kwargs: dict[str, Any] = {}
    for key, value in values.items():
        if key in ignore:
            continue
        key = str(key)
        if key not in fields:
            if looks_like_secret(key):
                raise InvalidOption(key, secret_refusal(key))
            raise InvalidOption(key, f"unknown option (known: {', '.join(sorted(fields))})")
        field = fields[key]
        kwargs[field.name] = _convert(key, value, hints[field.name], field.metadata, resolve_path, coerce_strings)
    missing = [name for name, f in fields.items() if f.name not in kwargs and _required(f)]
    if missing:
        raise InvalidOption(missing[0], "required option is missing")
    try:
        return options_cls(**kwargs)
    except InvalidOption:
        raise
    except (ValueError, TypeError) as exc:
        raise InvalidOption("", str(exc)) from None


def _required(field: dataclasses.Field[Any]) -> bool:
    return field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING


def _convert(key: str, value: Any, hint: Any, metadata: Mapping[str, Any],
             resolve_path: Callable[[str], Any] | None, coerce: bool) -> Any:
    if coerce and isinstance(value, str) and not _accepts_str(hint):
        try:
            value = yaml.safe_load(value) if value.strip() else None
        except yaml.YAMLError:
            pass
    if metadata.get(DURATION) and value is not None:
        from engine.config import parse_duration

        try:
            return parse_duration(value)
        except ValueError as exc:
            raise InvalidOption(key, str(exc)) from None
    try:
        checked = _check(value, hint)
    except _Mismatch as exc:
        raise InvalidOption(key, str(exc)) from None
    if metadata.get(PATH) and isinstance(checked, str) and resolve_path is not None:
        return str(resolve_path(checked))
    return checked


class _Mismatch(Exception):
    pass


def _describe(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if hint is type(None):
        return "null"
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(hint))
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(a) for a in typing.get_args(hint))
    if origin in (list, tuple):
        return f"a list of {_describe(typing.get_args(hint)[0])}" if typing.get_args(hint) else "a list"
    if origin in (dict, AbcMapping):
        return "a mapping"
    if hint is float:
        return "a number"
    if hint is int:
        return "an integer"
    if hint is bool:
        return "true or false"
    if hint is str:
        return "a string"
    return getattr(hint, "__name__", str(hint))


def _accepts_str(hint: Any) -> bool:
    if hint is str or hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        return any(_accepts_str(a) for a in typing.get_args(hint))
    if origin is Literal:
        return all(isinstance(a, str) for a in typing.get_args(hint))
    return False


def _check(value: Any, hint: Any) -> Any:
    """``value`` if it fits ``hint`` (ints widen to float), else :class:`_Mismatch` saying what was expected."""
    if hint is Any:
        return value
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _check(value, arg)
            except _Mismatch:
                continue
        raise _Mismatch(f"expected {_describe(hint)}, got {_got(value)}")
    if origin is Literal:
        if value in typing.get_args(hint) and not isinstance(value, bool):
            return value
        raise _Mismatch(f"must be {_describe(hint)}, got {value!r}")
    if origin in (list, tuple):
        if not isinstance(value, list):
            raise _Mismatch(f"expected {_describe(hint)}, got {_got(value)}")
        args = typing.get_args(hint)
        return [_check(v, args[0]) for v in value] if args else list(value)
    if origin in (dict, AbcMapping):
        if not isinstance(value, AbcMapping):
            raise _Mismatch(f"expected a mapping, got {_got(value)}")
        args = typing.get_args(hint)
        if not args:
            return dict(value)
        return {_check(k, args[0]): _check(v, args[1]) for k, v in value.items()}
    if hint is type(None):
        if value is None:
            return None
        raise _Mismatch(f"expected null, got {_got(value)}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is bool or hint is str:
        if isinstance(value, hint):
            return value
    elif isinstance(hint, type) and isinstance(value, hint):
        return value
    raise _Mismatch(f"expected {_describe(hint)}, got {_got(value)}")


def _got(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return f"{value!r}" if len(value) <= 40 else "a long string"
    return type(value).__name__


def options_dict(options: Any) -> dict[str, Any]:
    """A parsed options object back to a plain mapping (what a plug-in constructor accepts)."""
    return {f.name: getattr(options, f.name) for f in dataclasses.fields(options)}


def declared_options(plugin_cls: type) -> type | None:
    """The plug-in's ``Options`` dataclass, or None for a third-party plug-in that declares none."""
    options = getattr(plugin_cls, "Options", None)
    return options if options is not None and dataclasses.is_dataclass(options) else None


__all__ = [
    "DURATION", "PATH", "InvalidOption", "declared_options", "duration_option", "looks_like_secret",
    "option_names", "options_dict", "parse_options", "path_option", "secret_refusal",
]
