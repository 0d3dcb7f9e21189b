"""JSON from elsewhere, decoded strictly: values that can be passed on safely.

Provider answers (discovery, JWKS, introspection, userinfo, provider APIs)
and token segments are refused when they are not one plain JSON value:

- Lone surrogates (RFC 7493 §2.1). JSON's ``\\uXXXX`` escapes can spell half
  of a UTF-16 surrogate pair on its own (``"\\ud800"``). Python decodes that to
  a ``str`` holding a lone surrogate, which cannot be encoded as UTF-8: it
  would reach a `Principal`, then fail when a log line or a response is written
  (a 500), or be stored under a different spelling than the issuer meant.
  Strict UTF-8 input cannot contain a surrogate, so only an escape can produce
  one: the values are inspected only when the text has a ``\\u`` at all, which
  keeps the common path to one substring search.
- ``NaN``, ``Infinity``, ``-Infinity`` and numbers that overflow to infinity
  (``1e400``): not JSON (RFC 8259 §6), and no JSON encoder can write them back.
- Duplicate member names (RFC 7493 §2.3): ``{"active": false, "active": true}``
  means whatever the last parser to read it decides.
- Nesting deeper than `MAX_DEPTH`: nothing real nests that deep, and what does
  would fail later in whatever walks it recursively (serialisers, the app).
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "InvalidJSON",
    "UnencodableText",
    "has_lone_surrogate",
    "loads",
    "nested_deeper_than",
    "surrogate_escaped",
]

MAX_DEPTH = 128
"""Deepest nesting of objects and arrays accepted (``{}`` is 1, ``{"a": []}`` is 2).

Far beyond any real document, and well within what serialisers follow: pydantic
writes about 250 levels, so a `Principal` holding such claims is still a
response.
"""

_SURROGATE = re.compile("[\ud800-\udfff]")
_CONTAINERS = frozenset({dict, list})
_BOM = b"\xef\xbb\xbf"


class UnencodableText(ValueError):
    """JSON text decoded to a string that holds a lone surrogate."""


class InvalidJSON(ValueError):
    """JSON text that strict decoding refuses; the message is the reason code.

    ``duplicate_json_member``, ``non_finite_number`` or ``json_too_deep``.
    """


def has_lone_surrogate(value: Any) -> bool:
    """Whether any string in ``value`` (object keys included, at any depth) has a surrogate.

    The JSON decoder joins a properly paired escape (``"\\ud83d\\ude00"``) into one
    code point, so any surrogate left in a decoded string is a lone one. The
    walk uses an explicit stack: the decoder accepts nesting close to the
    recursion limit.
    """
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if not item.isascii() and _SURROGATE.search(item):
                return True
        elif isinstance(item, dict):
            for key, member in item.items():
                if not key.isascii() and _SURROGATE.search(key):
                    return True
                if not isinstance(member, int | float | bool) and member is not None:
                    stack.append(member)
        elif isinstance(item, list):
            stack.extend(item)
    return False


def surrogate_escaped(text: str, value: Any) -> bool:
    """Whether ``value``, decoded from the strict UTF-8 JSON ``text``, holds a lone surrogate.

    Only a ``\\u`` escape can put a surrogate in a value decoded from text that was
    itself decoded strictly from UTF-8; without one the answer is ``False`` at the
    cost of one substring search.
    """
    return "\\u" in text and has_lone_surrogate(value)


def nested_deeper_than(text: str, value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether ``value``, decoded from the JSON ``text``, nests more than ``limit`` levels.

    Each level takes an opening and a closing bracket: text no longer than
    twice ``limit``, or with no more than ``limit`` opening brackets (inside
    strings or not), cannot nest deeper, which settles the common case without
    looking at ``value``. Other values are walked one level at a time, without
    recursion.
    """
    if len(text) <= 2 * limit or text.count("{") + text.count("[") <= limit:
        return False
    level = [value] if type(value) in _CONTAINERS else []
    depth = 0
    while level:
        depth += 1
        if depth > limit:
            return True
        level = [
            member
            for item in level
            for member in (item.values() if type(item) is dict else item)
            if type(member) in _CONTAINERS
        ]
    return False


def _unique_members(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise InvalidJSON("duplicate_json_member")
    return obj


def _no_constant(name: str) -> Any:
    raise InvalidJSON("non_finite_number")  # NaN, Infinity, -Infinity


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):  # 1e400 overflows to inf
        raise InvalidJSON("non_finite_number")
    return value


# One decoder for all calls: json.loads with options builds a new one every time.
_DECODER = json.JSONDecoder(
    object_pairs_hook=_unique_members,
    parse_constant=_no_constant,
    parse_float=_finite_float,
)


def loads(data: bytes | str) -> Any:
    """Parse a JSON document received from elsewhere, strictly.

    Bytes must be UTF-8: a leading UTF-8 byte order mark is ignored (RFC 8259
    §8.1 allows it), other encodings are refused. Text (JSON carried inside
    another document as a string) is taken as it is. Refused as well: any
    string holding a lone surrogate, ``NaN`` and the infinities (also by
    overflow, ``1e400``), duplicate member names at any depth, and nesting
    deeper than `MAX_DEPTH`.

    Raises:
        UnencodableText: a string holds a lone surrogate (a subclass of
            ValueError).
        InvalidJSON: a duplicate member name, a non-finite number or nesting
            too deep (a subclass of ValueError).
        ValueError: the bytes are not UTF-8 or not one JSON value.
    """
    if isinstance(data, str):
        text = data
        if not text.isascii() and _SURROGATE.search(text):
            raise UnencodableText("lone_surrogate")
    else:
        # json.loads(bytes) would guess UTF-16/32 and decode with "surrogatepass",
        # letting encoded surrogates through without any escape.
        text = data.removeprefix(_BOM).decode("utf-8")
    try:
        value = _DECODER.decode(text)
    except RecursionError:
        raise InvalidJSON("json_too_deep") from None
    if nested_deeper_than(text, value):
        raise InvalidJSON("json_too_deep")
    if surrogate_escaped(text, value):
        raise UnencodableText("lone_surrogate")
    return value
