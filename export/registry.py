"""The one table of codec ids: id → model class and default configuration.

A codec family registers its variants where the model class is defined::

    @register_codec("s2c-conv", S2CConfig(spatial=("conv",) * 3), "S2C-Conv")
    class S2CFormer(HyperpriorCodec): ...

Configurations are frozen dataclasses. Any field can be changed for one
export or training run with ``key=value`` overrides (``--set`` on the command
line): tuples are written comma-separated, e.g. ``channels=32,32,32``.
"""

from __future__ import annotations

import dataclasses
import importlib
from dataclasses import dataclass
from typing import Any

from licrt.runtime.errors import ExportError

#: Modules that register codec families, imported on first lookup.
_FAMILIES = ("licrt.export.s2cformer.model", "licrt.export.entroformer.model", "licrt.export.econtextformer.model")


@dataclass(frozen=True)
class CodecEntry:
    codec_id: str
    model: type
    config: Any
    description: str


_REGISTRY: dict[str, CodecEntry] = {}


def register_codec(codec_id: str, config: Any, description: str):
    """Class decorator: register a codec variant under codec_id."""

    def decorate(model: type) -> type:
        if codec_id in _REGISTRY:
            raise ValueError(f"codec id {codec_id!r} is registered twice")
        _REGISTRY[codec_id] = CodecEntry(codec_id, model, config, description)
        return model

    return decorate


def codecs() -> dict[str, CodecEntry]:
    """All registered codecs by id."""
    for family in _FAMILIES:
        importlib.import_module(family)
    return dict(_REGISTRY)


def lookup(codec_id: str) -> CodecEntry:
    entries = codecs()
    if codec_id not in entries:
        raise ExportError(f"unknown codec {codec_id!r}; known codecs: {', '.join(sorted(entries))}")
    return entries[codec_id]


def make_config(codec_id: str, values: dict[str, Any] | None = None, overrides: dict[str, str] | None = None):
    """The variant's default config, updated by typed values, then by string overrides.

    Raises:
        ExportError: an unknown field or a value that does not parse or validate.
    """
    config = lookup(codec_id).config
    fields = {f.name for f in dataclasses.fields(config)}
    changes = dict(values or {})
    for key, text in (overrides or {}).items():
        if key not in fields:
            raise ExportError(f"{codec_id} has no setting {key!r}; settings: {', '.join(sorted(fields))}")
        changes[key] = _parse(text, getattr(config, key), key)
    unknown = set(changes) - fields
    if unknown:
        raise ExportError(f"{codec_id} has no setting(s) {', '.join(sorted(unknown))}")
    changes = {k: tuple(v) if isinstance(v, list) else v for k, v in changes.items()}
    try:
        return dataclasses.replace(config, **changes)
    except (TypeError, ValueError) as exc:
        raise ExportError(f"invalid {codec_id} configuration: {exc}") from None


def build(codec_id: str, config=None):
    """Instantiate a codec model (random weights) with the given or default config."""
    entry = lookup(codec_id)
    return entry.model(codec_id, config if config is not None else entry.config)


def parse_assignments(assignments: list[str]) -> dict[str, str]:
    """``["a=1", "b=2,3"]`` → ``{"a": "1", "b": "2,3"}``."""
    result = {}
    for item in assignments:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ExportError(f"--set expects key=value, got {item!r}")
        result[key.strip()] = value.strip()
    return result


def _parse(text: str, default: Any, key: str):
    try:
        if isinstance(default, tuple):
            kind = type(default[0]) if default else str
            return tuple(kind(part.strip()) for part in text.split(","))
        if isinstance(default, bool):
            return text.lower() in ("1", "true", "yes")
        return type(default)(text)
    except ValueError:
        raise ExportError(f"cannot read {key}={text!r} as {type(default).__name__}") from None
