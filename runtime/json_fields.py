"""Reading JSON that may be hostile: bounded size and nesting, typed fields, errors that name the field.

Example:
    >>> root = parse_json('{"buckets": [{"height": 512}]}', "manifest.json")
    >>> root["buckets"].list(max_items=8)[0]["height"].int(1, 4096)
    512
    >>> root["buckets"].list(max_items=8)[0]["height"].int(1, 256)
    Traceback (most recent call last):
    ...
    licrt.runtime.errors.BundleError: manifest.json: buckets[0].height must be an integer in [1, 256], got 512
"""

from __future__ import annotations

import json
import re
from itertools import accumulate

from .errors import BundleError

_STRINGS = re.compile(r'"(?:[^"\\]|\\.)*"')
_BRACKETS = re.compile(r"[\[\]{}]")


def json_depth(text: str) -> int:
    """How deeply arrays and objects nest in JSON text (strings ignored)."""
    steps = (1 if char in "[{" else -1 for char in _BRACKETS.findall(_STRINGS.sub("", text)))
    return max(accumulate(steps), default=0)


def parse_json(text: str, source: str, max_depth: int = 32) -> Field:
    """Parse JSON text no deeper than max_depth; raises :class:`BundleError` naming source."""
    if json_depth(text) > max_depth:
        raise BundleError(f"{source} nests deeper than {max_depth} levels")
    try:
        return Field(json.loads(text), "", source)
    except ValueError as exc:  # JSONDecodeError, or an integer too long to convert
        raise BundleError(f"{source} is not valid JSON ({exc})") from None


class Field:
    """One value inside parsed JSON, and where it is (``buckets[0].stages.g_a``)."""

    def __init__(self, value, path: str, source: str):
        self.value = value
        self.path = path
        self.source = source

    def error(self, message: str) -> BundleError:
        return BundleError(f"{self.source}: {self.path or 'the top level'} {message}")

    def _got(self) -> str:
        text = json.dumps(self.value) if isinstance(self.value, (int, float, str, bool, type(None))) else (
            "an array" if isinstance(self.value, list) else "an object")
        return text if len(text) <= 40 else text[:37] + "..."

    def _child(self, value, key: str | int) -> Field:
        where = f"{self.path}[{key}]" if isinstance(key, int) else f"{self.path}.{key}" if self.path else key
        return Field(value, where, self.source)

    def _object(self) -> dict:
        if not isinstance(self.value, dict):
            raise self.error(f"must be an object, got {self._got()}")
        return self.value

    def __getitem__(self, key: str) -> Field:
        data = self._object()
        if key not in data:
            raise self._child(None, key).error("is missing")
        return self._child(data[key], key)

    def get(self, key: str, default=None) -> Field:
        """The member key, or a field holding default where it is absent."""
        data = self._object()
        return self._child(data.get(key, default), key)

    def items(self, max_items: int) -> list[tuple[str, Field]]:
        """Members of an object of at most max_items members."""
        data = self._object()
        if len(data) > max_items:
            raise self.error(f"has {len(data):,} members, more than {max_items:,}")
        return [(key, self._child(value, key)) for key, value in data.items()]

    def list(self, max_items: int, min_items: int = 0) -> list[Field]:
        """Elements of an array of min_items to max_items elements."""
        if not isinstance(self.value, list):
            raise self.error(f"must be an array, got {self._got()}")
        if not min_items <= len(self.value) <= max_items:
            raise self.error(f"must have {min_items} to {max_items:,} elements, got {len(self.value):,}")
        return [self._child(value, index) for index, value in enumerate(self.value)]

    def int(self, low: int, high: int) -> int:
        """An integer (not a float, not a boolean) in [low, high]."""
        if isinstance(self.value, bool) or not isinstance(self.value, int) or not low <= self.value <= high:
            raise self.error(f"must be an integer in [{low:,}, {high:,}], got {self._got()}")
        return self.value

    def float(self, low: float, high: float) -> float:
        """A number (integer or float, not a boolean) in [low, high]."""
        if isinstance(self.value, bool) or not isinstance(self.value, (int, float)) or not low <= self.value <= high:
            raise self.error(f"must be a number in [{low:g}, {high:g}], got {self._got()}")
        return float(self.value)

    def str(self, pattern: str = r"[\x20-\x7e]{1,255}", choices: tuple[str, ...] | None = None) -> str:
        """A string matching pattern (printable ASCII by default), or one of choices."""
        if not isinstance(self.value, str):
            raise self.error(f"must be a string, got {self._got()}")
        if choices is not None and self.value not in choices:
            raise self.error(f"must be one of {', '.join(choices)}, got {self._got()}")
        if choices is None and not re.fullmatch(pattern, self.value):
            raise self.error(f"is not a valid value here, got {self._got()}")
        return self.value
