"""Column encodings shared by the SQL aggregates: scope sets, JSON, rows to records."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any


def words(values: Iterable[str]) -> str:
    """A set of scopes (or grant types) as space-separated text, sorted.

    Raises:
        ValueError: a value is empty or contains whitespace (RFC 6749 §3.3
            scope tokens never do), so it could not be read back.
    """
    items = sorted(set(values))
    for item in items:
        if not item or any(char.isspace() for char in item):
            raise ValueError("scope and grant names must be non-empty and contain no whitespace")
    return " ".join(items)


def word_set(text: str) -> frozenset[str]:
    """The set written by `words`."""
    return frozenset(text.split())


def to_json(value: Any) -> str:
    """Compact JSON text of a JSON value."""
    return json.dumps(value, separators=(",", ":"), sort_keys=True, allow_nan=False)


def from_json(text: str) -> Any:
    """The value written by `to_json`."""
    return json.loads(text)


def json_object(text: str | None) -> dict[str, Any] | None:
    """A JSON object column (``None`` stays ``None``)."""
    if text is None:
        return None
    value = from_json(text)
    return value if isinstance(value, dict) else {}


def mapping_or_none(value: Mapping[str, Any] | None) -> str | None:
    """A mapping as JSON text, ``None`` as NULL."""
    return None if value is None else to_json(dict(value))
